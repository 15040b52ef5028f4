//! The SMMUv3 (QEMU virt's) as this PD's SMMU: `smmuv3::Smmu` under `smmuv3_service`'s
//! backend, its event queue drained by `smmuv3_service::events::pump`, each stream's
//! state read back from the stream table.

use core::fmt;
use core::ptr::NonNull;

use iommu_pd::poll::{Deadline, Drained, PollTimer};
use iommu_pd::Routed;
use sel4_microkit::{debug_println, Channel, ChannelSet};
use smmuv3::{Bound, Config, Memory, MmioRegisters, Smmu, StreamId};
use smmuv3_service::events::{self, EventSink, Rearm};
use smmuv3_service::SmmuBackend;

use crate::{irqs, policy, Svc, Why, POLL_US};

/// The SMMU's registers as the driver reaches them: directly, or in a measurement build
/// timed (`crate::batch_timing`).
#[cfg(not(feature = "measure-batch"))]
type Regs = MmioRegisters;
#[cfg(feature = "measure-batch")]
type Regs = crate::batch_timing::TimedMmio;

/// The service's hardware here.
#[cfg(not(feature = "measure-batch"))]
pub type Hw = SmmuBackend<Regs>;
#[cfg(feature = "measure-batch")]
pub type Hw = crate::batch_timing::Timed<SmmuBackend<Regs>>;
/// What the driver reports.
pub type Error = smmuv3::Error;

/// What a successful `fail_closed` leaves.
pub const CLOSED: &str = "SMMU disabled with GBPA.ABORT set";

/// The SMMU's event-queue and global-error interrupts.
const EVENTQ_IRQ: Channel = Channel::new(10);
const GERROR_IRQ: Channel = Channel::new(11);

/// Event records taken from the SMMU per pass, and passes per interrupt.
const EVENT_BUFFER: usize = 256;
const EVENT_ROUNDS: usize = 16;

/// The Arm generic timer, which bounds every wait on the SMMU.
struct GenericTimer;

impl smmuv3::Clock for GenericTimer {
    fn now(&self) -> u64 {
        generic_timer::ticks()
    }
    fn hz(&self) -> u64 {
        generic_timer::hz()
    }
}

static CLOCK: GenericTimer = GenericTimer;

/// Every wait on the SMMU lasts at most a second of the generic timer, as Linux waits
/// (a count of register reads would be anything from milliseconds to hours).
pub const BOUND: Bound = Bound::Time { clock: &CLOCK, us: Bound::LINUX_US };

/// Whether the platform keeps the SMMU and the devices coherent with how this PD's memory
/// is mapped: the board must say `dma-coherent` (its table in `iommu-sdf`), AND seL4 must
/// map this PD's pages Inner Shareable, as the SMMU and the devices access them. seL4
/// maps cacheable user pages Non-shareable on a kernel without SMP support (Microkit's
/// `debug` and `release`), and hardware does not keep accesses with mismatched
/// shareability coherent (Arm ARM, "Mismatched memory attributes"): then the driver
/// cleans and invalidates, and devices' mappings are Non-cacheable.
const PLATFORM_COHERENT: bool = irqs::BOARD_COHERENT && sel4::sel4_cfg_bool!(ENABLE_SMP_SUPPORT);

/// This CPU's cache maintenance (`dc cvac`, `dc civac`, `dsb`), for a non-coherent SMMU.
#[cfg(not(feature = "measure-batch"))]
static CACHE: smmuv3::ArmCacheOps = smmuv3::ArmCacheOps;
#[cfg(feature = "measure-batch")]
static CACHE: crate::batch_timing::CountedCache = crate::batch_timing::CountedCache(smmuv3::ArmCacheOps);

/// Bring the SMMU up and make the devices' domains and streams; `Err` says what stopped
/// start-up. Every stream aborts when it returns, read back and printed.
// Inlined into `crate::start`, so the backend is built where the service takes it rather
// than returned through a frame of its own: out of line, the copy took images/iommu-boot.xml's
// 128 KiB stack past its end (by about 1 KiB, on QEMU virt).
#[inline(always)]
pub fn start(regs: NonNull<u8>) -> Result<Hw, Why> {
    let mem = Memory {
        stream_table: region!(smmu_strtab, smmu_strtab_size, smmu_strtab_paddr),
        cmdq: region!(smmu_cmdq, smmu_cmdq_size, smmu_cmdq_paddr),
        eventq: region!(smmu_eventq, smmu_eventq_size, smmu_eventq_paddr),
        cds: region!(smmu_cds, smmu_cds_size, smmu_cds_paddr),
        tables: region!(smmu_tables, smmu_tables_size, smmu_tables_paddr),
    };
    // As wide as the description needs, no wider; the probe refuses an SMMU narrower.
    let config = Config {
        ias_bits: policy::IOVA_BITS,
        sid_bits: policy::STREAM_ID_BITS,
        bound: BOUND,
        // Enabled either way: a wired interrupt that reaches no one costs nothing.
        interrupts: true,
        platform_coherent: PLATFORM_COHERENT,
        devices_coherent: PLATFORM_COHERENT,
        cache: Some(&CACHE),
    };
    // SAFETY: the description maps the SMMU's registers into this PD only, uncached, and
    // gives it the table and queue regions alone; `init` runs once.
    let regs = unsafe { MmioRegisters::new(regs) };
    #[cfg(feature = "measure-batch")]
    let regs = crate::batch_timing::TimedMmio(regs);
    // SAFETY: as above.
    let smmu = unsafe { Smmu::init(regs, mem, config) }.map_err(Why::Smmu)?;
    crate::remember_known(smmu.known().bits());
    let f = *smmu.features();
    debug_println!(
        "iommu: SMMUv3.{} up: {}-bit StreamIDs, {}-bit output, two-level stream table {}",
        f.arch_minor,
        f.sid_bits,
        f.oas_bits,
        f.two_level_strtab
    );
    debug_println!(
        "iommu: SMMU_IDR0.COHACC {}, board dma-coherent {}, kernel SMP {}: {:?}, devices mapped {:?}",
        f.coherent_access as u8,
        irqs::BOARD_COHERENT as u8,
        sel4::sel4_cfg_bool!(ENABLE_SMP_SUPPORT) as u8,
        smmu.coherency(),
        smmu.dma_memory()
    );
    debug_println!(
        "iommu: set up for {}-bit StreamIDs and {}-bit IOVAs, as the description needs",
        policy::STREAM_ID_BITS,
        policy::IOVA_BITS
    );
    debug_println!(
        "iommu: GBPA.ABORT {}; every stream aborts until its driver maps memory",
        if smmu.gbpa_aborts() { "set" } else { "not implemented by this SMMU" }
    );
    #[cfg(feature = "measure-bypass")]
    debug_println!("iommu: MEASUREMENT BUILD: a driver may put its own device in bypass; not for products");
    #[cfg(feature = "measure-batch")]
    crate::batch_timing::calibrate(&CACHE);
    let streams: [u32; policy::DEVICES.len()] = core::array::from_fn(|i| policy::DEVICES[i].stream);
    // A device passed through to a virtual machine: stage 2 where this SMMU has it, with
    // the input size its guest's RAM needs.
    let mut backend = SmmuBackend::with_vms(smmu, &streams, &policy::DEVICE_IPA_BITS).map_err(Why::Devices)?;
    for (i, d) in policy::DEVICES.iter().enumerate() {
        backend.add_streams(i, d.extra_streams).map_err(|e| Why::Streams(d.name, e))?;
        if policy::DEVICE_IPA_BITS[i] != 0 {
            say_stage(&backend, i);
        }
    }
    // Default deny, read back from the stream table before the service lets any device
    // translate: every described device's stream, and one no description names.
    let smmu = backend.smmu();
    // The highest StreamID the stream table covers that no device has.
    // (Not `0..1 << STREAM_ID_BITS`: that overflows at 32 bits.)
    let last = StreamId::highest(policy::STREAM_ID_BITS).0;
    let named_by_none = |s: &u32| !streams.contains(s) && policy::DEVICES.iter().all(|d| !d.extra_streams.contains(s));
    let unnamed = StreamId((0..=last).rev().find(named_by_none).unwrap_or(0));
    let _ = smmu.prepare_stream(unnamed);
    let named = policy::DEVICES.iter().map(|d| (StreamId(d.stream), d.name));
    for (sid, name) in named.chain(named_by_none(&unnamed.0).then_some((unnamed, "no device"))) {
        debug_println!("iommu: stream {sid} ({name}): {}", ste_of(smmu, sid));
    }
    #[cfg(feature = "measure-batch")]
    let backend = crate::batch_timing::Timed(backend);
    Ok(backend)
}

/// Say at which stage the SMMU translates VM device `i`, and why.
fn say_stage(backend: &SmmuBackend<Regs>, i: usize) {
    let (name, vm, ipa) = (policy::DEVICES[i].name, policy::DEVICE_VMS[i], policy::DEVICE_IPA_BITS[i]);
    match backend.translation_of(i) {
        Some(smmuv3::Translation::Stage2 { vmid }) => {
            debug_println!("iommu: device {name} (VM {vm}): stage 2, VMID {}, {ipa}-bit IPA = guest-physical", vmid.0)
        }
        Some(smmuv3::Translation::Stage1 { asid }) => match smmuv3_service::stage2_refusal(backend.smmu_ref(), ipa) {
            Some(why) => debug_println!("iommu: device {name} (VM {vm}): stage 1, ASID {} ({why})", asid.0),
            None => debug_println!("iommu: device {name} (VM {vm}): stage 1, ASID {}", asid.0),
        },
        None => {}
    }
}

/// Every device's DMA aborts, best effort: GBPA.ABORT, then SMMUEN = 0, knowing what the
/// driver had established (`known`, `known`'s bits: `smmuv3::fail_closed_knowing`).
///
/// # Safety
/// No other access to the registers at `regs` may be live.
pub unsafe fn fail_closed(regs: NonNull<u8>, known: u8) -> Result<(), Error> {
    // SAFETY: the caller's contract; the description maps the registers here.
    smmuv3::fail_closed_knowing(&unsafe { MmioRegisters::new(regs) }, BOUND, smmuv3::Known::from_bits(known))
}

/// What the driver has established, as bits for `fail_closed` (`Smmu::known`).
pub fn known(hw: &mut Hw) -> u8 {
    hw.smmu().known().bits()
}

/// What the stream table holds for `stream`.
pub fn stream_state(hw: &mut Hw, stream: u32) -> SteState {
    ste_of(hw.smmu(), StreamId(stream))
}

/// Whether the SMMU failed while serving (SFM_ERR, or it stopped answering), and whether
/// it was failed closed.
pub fn failure(hw: &mut Hw) -> Option<Result<(), Error>> {
    hw.smmu().failure()
}

/// What failing the SMMU closed gave, for a service that stops: the driver's `failure`, or
/// the SMMU failed closed now where it recorded none (`Smmu::fail_closed_now`).
pub fn fail_closed_now(hw: &mut Hw) -> Result<(), Error> {
    hw.smmu().fail_closed_now()
}

/// Why the driver failed it (`failure` is `Some`): it stopped answering (two waits on its
/// command queue timed out with no CMD_SYNC completed between them), or SFM_ERR.
pub fn why_failed(hw: &mut Hw) -> Why {
    if hw.smmu().unanswered() {
        Why::Unanswered
    } else {
        Why::ServiceFailure
    }
}

/// Fault injection (feature `inject-unanswered`): the driver rings the SMMU's doorbell no
/// more, so the SMMU consumes no command from here on (`Smmu::withhold_doorbell`).
#[cfg(feature = "inject-unanswered")]
pub fn withhold_doorbell(hw: &mut Hw) {
    hw.smmu().withhold_doorbell()
}

/// Whether `channels` holds one of the SMMU's interrupts.
pub fn interrupted(channels: ChannelSet) -> bool {
    channels.contains(EVENTQ_IRQ) || channels.contains(GERROR_IRQ)
}

/// Acknowledge the SMMU's interrupts.
pub fn ack_interrupts() {
    EVENTQ_IRQ.irq_ack().ok();
    GERROR_IRQ.irq_ack().ok();
}

/// Drain the event queue, routing each fault; the clients to notify (those whose rings
/// took a record or a loss), and whether the SMMU failed in the pass (the driver failed
/// it closed). Sets the timer for the next wake-up (`keeping`: PCI functions are kept
/// owned, `PollTimer::after_drain`).
pub fn take_faults(service: &mut Svc, poll: &mut PollTimer, keeping: bool) -> (u64, bool) {
    // One time stamp for the drain: the records carry none, what the storm window needs
    // is when the IOMMU PD learnt of them, and `events_lost` tells a drain's records by it.
    let mut sink = Faults { service, notify: 0, now: generic_timer::ticks() };
    let mut pass = events::pump::<_, _, EVENT_BUFFER>(&mut sink, irqs::WIRED, EVENT_ROUNDS);
    let mut overflowed = pass.overflowed;
    // Records left, and nothing will announce them (the interrupt marks empty to
    // non-empty): with the timer, be woken again at once, after whatever else is
    // waiting; without, keep going here until the queue is empty. That ends when
    // the storm limit quarantines a flooding client's device; a flood the limit
    // cannot stop (a device no client owns, a StreamID no description names) would
    // keep this PD here: such a system should give it the timer.
    while pass.rearm == Rearm::Now && !irqs::TIMER {
        pass = events::pump::<_, _, EVENT_BUFFER>(&mut sink, irqs::WIRED, EVENT_ROUNDS);
        overflowed |= pass.overflowed;
    }
    // The SMMU lost records, anyone's (one device's storm can overflow the queue with
    // another's fault in it): every client is told (`Service::events_lost`).
    if overflowed {
        let queue = sink.service.hw_mut().smmu().eventq_entries();
        sink.notify |= sink.service.events_lost(sink.now, queue);
    }
    if let Some(timer) = &irqs::PHYSICAL_TIMER {
        let drained = match pass.rearm {
            Rearm::Now => Some(Drained::Now),
            Rearm::Poll => Some(Drained::Poll),
            Rearm::Interrupt => Some(Drained::Quiet),
            Rearm::Stop => None,
        };
        // A poll within the period, not a period from now: every wake-up comes here, a
        // client's notification too; and while PCI functions are kept owned, a poll
        // however quiet the SMMU (`iommu_pd::poll`).
        let now = generic_timer::ticks();
        match drained.map(|d| poll.after_drain(now, generic_timer::ticks_from_us(POLL_US), d, keeping)) {
            Some(Deadline::At(at)) => timer.set_deadline(at),
            Some(Deadline::Keep) => {}
            Some(Deadline::Stop) | None => {
                timer.stop();
                poll.set(None);
            }
        }
    }
    (sink.notify, pass.failure.is_some())
}

/// What the stream table holds for `sid`, read back, not what was asked for; printed as
/// the entry's configuration or the reason it could not be read.
fn ste_of(smmu: &mut Smmu<Regs>, sid: StreamId) -> SteState {
    SteState(smmu.ste(sid).map(|ste| ste.config()))
}

/// Where the event records go: each fault is attributed by the service and routed to the
/// client that owns the device; `notify` collects the clients to tell.
struct Faults<'a> {
    service: &'a mut Svc,
    notify: u64,
    /// The drain's time stamp (`iommu_pd::FaultInput::now`).
    now: u64,
}

impl EventSink<Regs> for Faults<'_> {
    fn smmu(&mut self) -> &mut Smmu<Regs> {
        self.service.hw_mut().smmu()
    }

    fn take(&mut self, batch: &[Option<smmuv3::Event>]) {
        let (service, now) = (&mut *self.service, self.now);
        for e in batch.iter().flatten() {
            // A fault (a translation fault, or a transaction the device chose that the SMMU
            // refused: `events::fault_input`) is placed and routed to the device's owner,
            // and counts towards its storm; an event that names a stream but is not the
            // device's doing (C_BAD_STREAMID for a StreamID the stream table does not
            // cover, C_BAD_STE...) is counted for this PD to report. Only events that name
            // no stream at all (implementation-defined ones, a VMS fetch abort) are left
            // out: there is no device to say anything of.
            if let Some(f) = e.fault().filter(|f| f.stage2) {
                say_stage2_fault(f);
            }
            let routed = match (events::fault_input(e, now), e.stream_id()) {
                (Some(input), _) => service.route_fault(input),
                (None, Some(sid)) => service.route_stream_event(sid.0),
                (None, None) => continue,
            };
            if let Routed::Client(client) = routed {
                self.notify |= 1 << client.0;
                continue;
            }
            // No client to tell.
            crate::say_unrouted(routed, e);
        }
    }
}

/// What the SMMU itself says of a stage-2 fault (S2 = 1 in its record, with the IPA):
/// the first two, then at powers of two, so a flood does not fill the console.
fn say_stage2_fault(f: &smmuv3::event::Fault) {
    static SEEN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    let n = SEEN.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
    if n <= 2 || n.is_power_of_two() {
        debug_println!(
            "iommu: stage-2 fault (S2 = 1) on stream {:#x} at IPA {:#x}, input address {:#x} ({n} so far)",
            f.txn.sid.0,
            f.ipa,
            f.txn.iova.0
        );
    }
}

/// The measurement build's bypass switch (`iommu_protocol::measure::BYPASS`): the caller's
/// own device, and only while it may run; its mappings stay as they are for the way back.
#[cfg(feature = "measure-bypass")]
pub fn measure_bypass(service: &mut Svc, client: usize, mrs: &[u64]) -> Result<(), iommu_protocol::ErrorCode> {
    use iommu_protocol::{DeviceId, ErrorCode};
    let &[device, on] = mrs else {
        return Err(if mrs.len() < 2 { ErrorCode::Truncated } else { ErrorCode::Malformed });
    };
    let device = u32::try_from(device).map_err(|_| ErrorCode::Malformed)?;
    let bypass = match on {
        0 => false,
        1 => true,
        _ => return Err(ErrorCode::Malformed),
    };
    let d = service.running_device_of(client, DeviceId(device))?;
    service.hw_mut().set_bypass_for_measurement(d, bypass).map_err(|_| ErrorCode::Hardware)?;
    // A measurement switches thousands of times: say so at the first of each kind and
    // then at powers of two, so the console shows it without slowing it down.
    static SWITCHES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    let n = SWITCHES.fetch_add(1, core::sync::atomic::Ordering::Relaxed) + 1;
    if n <= 2 || n.is_power_of_two() {
        let dev = &policy::DEVICES[d];
        let state = ste_of(service.hw_mut().smmu(), StreamId(dev.stream));
        debug_println!(
            "iommu: MEASUREMENT: device {} (stream {:#x}) {} (switch {n}; STE {state})",
            dev.name,
            dev.stream,
            if bypass {
                "in bypass: untranslated, it reaches all memory"
            } else {
                "translated again through its mappings"
            }
        );
    }
    Ok(())
}

/// What a stream table entry holds, for the console.
pub struct SteState(pub Result<smmuv3::ste::SteConfig, smmuv3::Error>);

impl fmt::Display for SteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Ok(config) => write!(f, "{config:?}"),
            Err(e) => write!(f, "{e}"),
        }
    }
}
