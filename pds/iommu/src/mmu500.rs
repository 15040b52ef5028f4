//! An Arm MMU-500 (SMMUv2: ZynqMP's and i.MX8QXP's) as this PD's SMMU: `smmuv2::Smmu`
//! under `smmuv2_service`'s backend, one stage-1 context bank per device, its faults read
//! from the fault registers on the SMMU's one interrupt line, each stream's state read
//! back from the stream match registers.
//!
//! Where it is and what it has are the board's (`iommu-sdf`'s board table, through
//! build.rs): the register frame (ZynqMP: 0xfd800000, 128 KiB; i.MX8QXP: 0x51400000,
//! 256 KiB, checked against the layout IDR1 describes), the interrupt (ZynqMP's SPI 155,
//! i.MX8QXP's SPI 32: global and context faults on one line, id 10) and the SMR mask
//! (i.MX8QXP's 0x7f80).
//!
//! Not run on an MMU-500 yet: the boards' images build, and QEMU's xlnx-zcu102 has no
//! SMMU at all (see images/zcu102.expect). What a first bring-up must check is listed in
//! `drivers/smmuv2`'s crate documentation.

use core::fmt;
use core::ptr::NonNull;

use iommu_pd::poll::{Deadline, Drained, PollTimer};
use sel4_microkit::{debug_println, var, Channel, ChannelSet};
use smmuv2::mmio::{reg, Mmio, MmioRegisters};
use smmuv2::{Config, Fault, Implementation, Memory, Smmu};
use smmuv2_service::Smmuv2Backend;

use crate::{irqs, policy, Svc, Why, POLL_US};

#[cfg(feature = "measure-bypass")]
compile_error!("the bypass-vs-service measurement is built for the SMMUv3 (qemu_virt_aarch64) only");

/// The service's hardware here.
pub type Hw = Smmuv2Backend<MmioRegisters>;
/// What the driver reports.
pub type Error = smmuv2::Error;

/// What a successful `fail_closed` leaves.
pub const CLOSED: &str =
    "MMU-500 closed: sCR0.USFCFG = 1 and CLIENTPD = 0, every S2CR faulting and every SMR invalid, read back";

/// Whether the platform keeps the MMU-500's table walks and the devices coherent with
/// how this PD maps memory: as for the SMMUv3 (`smmuv3_hw::PLATFORM_COHERENT`), the board
/// must say `dma-coherent` (neither ZynqMP's nor i.MX8QXP's device tree does, and the
/// board table follows them) AND seL4 must map this PD's pages shareable, which it does
/// only with SMP. Otherwise the driver cleans every table write to the PoC, walks
/// Non-cacheable, and maps devices' buffers Non-cacheable.
const PLATFORM_COHERENT: bool = irqs::BOARD_COHERENT && sel4::sel4_cfg_bool!(ENABLE_SMP_SUPPORT);

/// This CPU's cache maintenance (`dc cvac`, `dc civac`, `dsb`), for walks that are not
/// coherent.
static CACHE: smmuv3::ArmCacheOps = smmuv3::ArmCacheOps;

/// The MMU-500's fault interrupt: its global fault and every context bank's, on one line.
const FAULT_IRQ: Channel = Channel::new(10);

/// Register reads a wait on the SMMU may take (a TLBSYNC, the global sync) before it is
/// an error: `smmuv2` counts polls, not time. At the ~100 ns a device register read takes
/// on these SoCs, about 0.1 s; the driver's bound until it takes a clock as `smmuv3` does.
const POLL_LIMIT: u32 = 1_000_000;

/// The register frame at `base`, as big as the board's.
///
/// # Safety
/// No other access to those registers may be live while the value is.
unsafe fn registers(base: NonNull<u8>) -> MmioRegisters {
    // SAFETY: the description maps the board's frame there, uncached (`iommu-sdf check`
    // holds `smmu_regs` to the board's address and size); the caller's contract.
    unsafe { MmioRegisters::new(base, irqs::MMU500_FRAME.1) }
}

/// Bring the MMU-500 up and make the devices' context banks; `Err` says what stopped
/// start-up. Every stream faults when it returns (none is attached until the service
/// enables its device), read back and printed.
// Inlined into `crate::start`, so the backend is built where the service takes it rather
// than returned through a frame of its own: out of line, the copy took images/iommu-boot.xml's
// 128 KiB stack past its end (by about 1 KiB, on QEMU virt).
#[inline(always)]
pub fn start(regs: NonNull<u8>) -> Result<Hw, Why> {
    let (pa, size) = irqs::MMU500_FRAME;
    // Said before the first access: on a machine with nothing at that address (QEMU's
    // xlnx-zcu102), that access is an external abort and this is the last line.
    debug_println!("iommu: MMU-500 ({}) at {pa:#x}, {size:#x} bytes: reading its ID registers", irqs::MMU500_SOC);
    let tables = region!(smmu_tables, smmu_tables_size, smmu_tables_paddr);
    // The SMMUv3's regions, which `iommu-sdf build` writes for every IOMMU PD: an
    // MMU-500 keeps its stream mapping in registers and has no queues or context
    // descriptors, so they go unused here (read, so that their symbols stay for the
    // Microkit tool to patch).
    let unused = *var!(smmu_strtab_size: usize = 0)
        + *var!(smmu_cmdq_size: usize = 0)
        + *var!(smmu_eventq_size: usize = 0)
        + *var!(smmu_cds_size: usize = 0);
    let _ = (
        *var!(smmu_strtab: usize = 0),
        *var!(smmu_cmdq: usize = 0),
        *var!(smmu_eventq: usize = 0),
        *var!(smmu_cds: usize = 0),
        *var!(smmu_strtab_paddr: usize = 0),
        *var!(smmu_cmdq_paddr: usize = 0),
        *var!(smmu_eventq_paddr: usize = 0),
        *var!(smmu_cds_paddr: usize = 0),
    );
    // An MMU-500's IDR0 is never 0 (S1TS, S2TS, SMS and NUMSMRG are set) nor all ones
    // (bit 31, SES, is RES0 in the Non-secure view): either means nothing decodes this
    // address, as on QEMU's xlnx-zcu102, which models no SMMU and reads unassigned
    // addresses as 0. Said plainly; `init` then refuses it and fails closed as for any
    // other refusal (writes that reach nothing).
    // SAFETY: the frame is mapped here; this read ends before `init` takes the registers.
    let idr0 = unsafe { registers(regs) }.read32(reg::IDR0);
    if idr0 == 0 || idr0 == u32::MAX {
        debug_println!("iommu: no MMU-500 at {pa:#x}: its IDR0 reads {idr0:#x}; nothing there translates or stops DMA");
    }
    let config = Config {
        ias_bits: policy::IOVA_BITS,
        poll_limit: POLL_LIMIT,
        implementation: Implementation::Mmu500,
        register_span: Some(size),
        platform_coherent: PLATFORM_COHERENT,
        cache: Some(&CACHE),
    };
    // SAFETY: the description maps the SMMU's registers into this PD only, uncached, and
    // gives it the table pool alone; `init` runs once.
    let smmu = unsafe { Smmu::init(registers(regs), Memory { tables }, config) }.map_err(Why::Smmu)?;
    let f = *smmu.features();
    debug_println!(
        "iommu: MMU-500 r{}p{} up: {} stage-1 context banks (bank {} the sink for blocked streams), {} stream match registers, {}-bit StreamIDs, {}-bit output; errata {:?}, prefetch off {}; walks {:?}",
        f.revision.0,
        f.revision.1,
        f.stage1_banks(),
        smmu.sink_bank(),
        f.num_smrg,
        f.sid_bits,
        f.oas_bits,
        smmu.errata(),
        smmu.prefetch_disabled(),
        smmu.coherency()
    );
    debug_println!("iommu: {unused:#x} bytes of SMMUv3 stream table and queue regions are unused on an MMU-500");
    let streams: [u32; policy::DEVICES.len()] = core::array::from_fn(|i| policy::DEVICES[i].stream);
    let mut backend = Smmuv2Backend::new(smmu, &streams).map_err(Why::Devices)?;
    for (i, d) in policy::DEVICES.iter().enumerate() {
        backend.add_streams(i, d.extra_streams).map_err(|e| Why::Streams(d.name, e))?;
    }
    if irqs::MMU500_SMR_MASK != 0 {
        backend.set_smr_mask(irqs::MMU500_SMR_MASK).map_err(Why::Devices)?;
        debug_println!("iommu: StreamIDs matched under the SoC's mask {:#x}", irqs::MMU500_SMR_MASK);
    }
    // Default deny, read back from the SMRs before the service lets any device translate.
    for d in policy::DEVICES {
        debug_println!("iommu: stream {:#x} ({}): {}", d.stream, d.name, stream_state(&mut backend, d.stream));
    }
    Ok(backend)
}

/// Every device's DMA faults, best effort (`smmuv2::fail_closed`: USFCFG first, every
/// S2CR faulting, every SMR invalid, then CLIENTPD = 0; read back).
///
/// # Safety
/// No other access to the registers at `regs` may be live.
/// `known`, `known`'s bits (`smmuv3::Known`'s layout; an MMU-500 has no GBPA): a failure
/// the driver had already closed with every stream faulting stays reported so
/// (`smmuv2::fail_closed_knowing`).
pub unsafe fn fail_closed(regs: NonNull<u8>, known: u8) -> Result<(), Error> {
    let closed = smmuv3::Known::from_bits(known).closed;
    // SAFETY: the caller's contract.
    smmuv2::fail_closed_knowing(&unsafe { registers(regs) }, POLL_LIMIT, closed)
}

/// What the driver has established, as bits for `fail_closed`: whether it failed the
/// MMU-500 closed with every stream faulting.
pub fn known(hw: &mut Hw) -> u8 {
    smmuv3::Known { gbpa_aborts: false, closed: matches!(failure(hw), Some(Ok(()))) }.bits()
}

/// What the SMMU does with `stream`, read back from its registers: the stream match
/// register that matches it and what its S2CR says, or that none does and what sCR0 does
/// with an unmatched stream.
pub fn stream_state(hw: &mut Hw, stream: u32) -> SmrState {
    let smmu = hw.smmu_ref();
    let regs = smmu.regs();
    let matched = (0..smmu.features().num_smrg).find_map(|i| {
        let smr = regs.read32(reg::smr(i));
        let (valid, mask, id) = (smr >> 31 == 1, (smr >> 16) & 0x7fff, smr & 0x7fff);
        (valid && (id ^ stream) & !mask & 0x7fff == 0).then(|| (i, smr, regs.read32(reg::s2cr(i))))
    });
    match matched {
        Some((i, smr, s2cr)) => SmrState::Matched { i, smr, s2cr },
        None => SmrState::Unmatched { scr0: regs.read32(reg::SCR0) },
    }
}

/// A stream's state in the stream match table, read back.
pub enum SmrState {
    /// SMRn matches the stream; its S2CR.
    Matched { i: usize, smr: u32, s2cr: u32 },
    /// No SMR matches; sCR0 decides.
    Unmatched { scr0: u32 },
}

impl fmt::Display for SmrState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SmrState::Matched { i, smr, s2cr } => {
                write!(f, "SMR{i} {:#x} mask {:#x}, S2CR ", smr & 0x7fff, (smr >> 16) & 0x7fff)?;
                match (s2cr >> 16) & 0b11 {
                    0 => write!(f, "translate in context bank {}", s2cr & 0xff),
                    1 => write!(f, "BYPASS"),
                    _ => write!(f, "fault"),
                }
            }
            // USFCFG (bit 10) = 1 and CLIENTPD (bit 0) = 0: an unmatched stream faults.
            SmrState::Unmatched { scr0 } if scr0 & (1 << 10) != 0 && scr0 & 1 == 0 => {
                write!(f, "no SMR matches: faults (sCR0.USFCFG = 1, CLIENTPD = 0)")
            }
            SmrState::Unmatched { scr0 } => write!(f, "no SMR matches, and sCR0 {scr0:#x} does NOT fault it"),
        }
    }
}

/// Whether the driver failed the MMU-500 closed while serving (`smmuv2::Smmu::failure`:
/// its TLB syncs stopped completing, a global fault of its own configuration, or a write
/// routing a stream away that did not take), and if so whether every stream now faults.
pub fn failure(hw: &mut Hw) -> Option<Result<(), Error>> {
    hw.smmu_ref().failure().map(|(_, closed)| closed)
}

/// What failing the MMU-500 closed gave, for a service that stops: the driver's
/// `failure`, or, where it recorded none, `smmuv2::fail_closed` on its registers now.
pub fn fail_closed_now(hw: &mut Hw) -> Result<(), Error> {
    match failure(hw) {
        Some(closed) => closed,
        None => smmuv2::fail_closed(hw.smmu_ref().regs(), POLL_LIMIT),
    }
}

/// Why the driver failed it (`failure` is `Some`).
pub fn why_failed(hw: &mut Hw) -> Why {
    match hw.smmu_ref().failure() {
        Some((smmuv2::Failure::Unanswered, _)) | None => Why::Unanswered,
        Some((other, _)) => Why::Mmu500(other),
    }
}

/// Whether `channels` holds the SMMU's interrupt.
pub fn interrupted(channels: ChannelSet) -> bool {
    channels.contains(FAULT_IRQ)
}

/// Acknowledge the SMMU's interrupt (level-triggered: after its faults were cleared).
pub fn ack_interrupts() {
    FAULT_IRQ.irq_ack().ok();
}

/// Read and clear every fault the SMMU recorded (the global one, then each context
/// bank's), routing each to its device's owner; the clients to notify, and whether the
/// SMMU failed in the pass (a global fault of its own configuration, `smmuv2::Failure`). Without
/// the interrupt, or while the global interrupt is paced, the timer polls again.
pub fn take_faults(service: &mut Svc, poll: &mut PollTimer, keeping: bool) -> (u64, bool) {
    // One time stamp for the pass: the registers carry none, and what the storm window
    // needs is when this PD learnt of them.
    let now = generic_timer::ticks();
    // Context faults go to the device's owner, global ones (a blocked device's unmatched
    // stream...) are counted as stream events, each named by the StreamID the description
    // gave its device (`smmuv2_service::Recorded`).
    let mut notify = 0u64;
    smmuv2_service::take_faults(service, now, |fault, routed| {
        if let iommu_pd::Routed::Client(client) = routed {
            notify |= 1 << client.0;
        } else {
            crate::say_unrouted(routed, &Shown(fault));
        }
    });
    // With the interrupt wired, the timer polls while the drain left the global
    // interrupt paced (`Smmuv2Backend::poll_owed`): nothing else would read the next
    // global fault or turn sCR0.GFIE on again; and while PCI functions are kept owned
    // (`iommu_pd::poll`). Otherwise it is stopped, as a deadline that passed keeps its
    // (level) interrupt asserted.
    if let Some(timer) = &irqs::PHYSICAL_TIMER {
        let drained = if !irqs::WIRED || service.hw_mut().poll_owed() { Drained::Poll } else { Drained::Quiet };
        let now = generic_timer::ticks();
        match poll.after_drain(now, generic_timer::ticks_from_us(POLL_US), drained, keeping) {
            Deadline::At(at) => timer.set_deadline(at),
            Deadline::Keep => {}
            Deadline::Stop => timer.stop(),
        }
    }
    // A global fault of the SMMU's own configuration fails it closed in the drain.
    (notify, service.hw_mut().smmu_ref().failure().is_some())
}

/// An MMU-500 fault, for the console.
struct Shown<'a>(&'a Fault);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Fault::Context(c) => write!(
                f,
                "context fault {:?} in bank {} (FSR {:#x}): stream {:#x} {:?} at iova {:#x}",
                c.kind, c.cb, c.fsr, c.sid.0, c.access, c.iova.0
            ),
            Fault::Global(g) => {
                write!(f, "global fault {:?}: stream {:#x} {:?} at {:#x}", g.kind, g.sid.0, g.access, g.iova.0)
            }
        }
    }
}
