//! The IOMMU protection domain: owns the SMMU, brings it up in default-deny order
//! before any driver PD can start a DMA, and serves every driver PD's requests through
//! the service core with the policy generated from the system description.
//!
//! Which SMMU is the board's (build.rs, from `iommu-sdf`'s board table): an SMMUv3
//! (`smmuv3_hw`, QEMU virt) or an Arm MMU-500, an SMMUv2 (`mmu500`, with `cfg(mmu500)`:
//! ZynqMP and i.MX8QXP). Each backend module brings its SMMU up, fails it closed, reads
//! its faults and says what it holds for a stream; the rest (the policy, the service, the
//! clients, their faults and crashes) is the same on both.
//!
//! Its memory comes from the description: the SMMU's registers (a device region at the
//! SMMU's physical address) and the regions for the stream table, queues, context
//! descriptors and page tables, whose physical addresses the Microkit tool patches into
//! the `*_paddr` symbols (`setvar region_paddr`).
#![no_std]
#![no_main]

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use iommu_pd::lines::{self, Budget, LineLimit, Lines, Unsaid, Verdict};
use iommu_pd::poll::PollTimer;
use iommu_pd::{FaultPolicy, RegionConfig, Routed, Service};
use sel4_microkit::{
    debug_println, memory_region_symbol, protection_domain, with_msg_regs, with_msg_regs_mut, Channel, Child, Handler,
    Infallible, MessageInfo,
};

#[cfg(feature = "measure-batch")]
mod batch_timing;
mod pci;
#[cfg(feature = "inject-function-away")]
mod pci_away;
mod queues;
mod wake_ups;

mod policy {
    include!(env!("IOMMU_POLICY_RS"));
}

/// Which interrupts the description gives this PD: the policy's `IOMMU_PD_IRQS`, those of
/// the PD `<iommu pd>` names (one definition of which PD that is, `iommu-sdf`'s), and the
/// board's facts (build.rs).
mod irqs {
    include!(concat!(env!("OUT_DIR"), "/irqs.rs"));

    /// This PD has an interrupt with channel `id`, and, if `irq` says, that interrupt.
    const fn has(id: u64, irq: Option<u64>) -> bool {
        let irqs = super::policy::IOMMU_PD_IRQS;
        let mut i = 0;
        while i < irqs.len() {
            let (own_id, own_irq) = irqs[i];
            if own_id == id && (irq.is_none() || matches!(irq, Some(n) if n == own_irq)) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// The SMMU's interrupts reach this PD: ids 10 and 11 (an SMMUv3's event queue and
    /// global errors), or 10 alone on an MMU-500, which raises every fault on one line.
    pub const WIRED: bool = has(10, None) && (MMU500 || has(11, None));
    /// The physical timer's interrupt reaches this PD (irq 30, channel 12).
    pub const TIMER: bool = has(12, Some(30));
    /// The physical timer's registers, where its interrupt is this PD's: the one way this
    /// PD reaches them, so a path that would program the timer on a board whose kernel
    /// does not export it (a fault, in the middle of failing closed) has no timer to use.
    pub const PHYSICAL_TIMER: Option<generic_timer::PhysicalTimer> = if TIMER {
        // SAFETY: `iommu-sdf check` refuses irq 30 on every board whose SDK kernel does
        // not export the physical timer to EL0 (its board table, held to the SDK's
        // configurations), so a description that gives this PD irq 30 is one whose
        // kernel exports it.
        Some(unsafe { generic_timer::PhysicalTimer::exported() })
    } else {
        None
    };
    // An MMU-500's line is the board's, or this PD would wait on an interrupt that never
    // comes (`iommu-sdf check` refuses another first).
    const _: () =
        assert!(!(MMU500 && WIRED) || has(10, Some(MMU500_IRQ)), "id 10 is not the board's MMU-500 interrupt");
}

/// The programs this PD may restart a client from (build.rs: the libmicrokit programs),
/// by file name, with their entry points.
mod restart {
    include!(concat!(env!("OUT_DIR"), "/restart.rs"));
}

/// Restarts of one client, at most: a driver that crashes on every start is left
/// stopped after this many, and costs no more than that.
const MAX_RESTARTS: u8 = 3;

/// Where the Microkit tool starts every PD's stack: one page (a guard) below its IPC
/// buffer, the last page of the user address space (its report.txt: `IPC Buffer:
/// 0xfffffff000`, `SP: 0xffffffe000` on qemu_virt_aarch64).
const STACK_TOP: u64 = (sel4::sys::seL4_UserVSpaceTop & !0xfff) - 0x1000;

/// A region's virtual address (`setvar_vaddr`), size (`setvar_size`) and physical address
/// (`setvar region_paddr`), as the description has the Microkit tool write them
/// (`iommu-sdf check` refuses a description that leaves one out).
macro_rules! region {
    ($va:ident, $size:ident, $pa:ident) => {{
        let va: NonNull<u8> = sel4_microkit::memory_region_symbol!($va: *mut u8);
        let len = *sel4_microkit::var!($size: usize = 0);
        let pa = *sel4_microkit::var!($pa: usize = 0) as u64;
        smmuv3::DmaRegion { pa: smmuv3::PhysAddr(pa), va, len }
    }};
}

/// The board's SMMU.
#[cfg(not(mmu500))]
#[path = "smmuv3_hw.rs"]
mod backend;
#[cfg(mmu500)]
#[path = "mmu500.rs"]
mod backend;

/// Storage that `init` fills once and the handler then owns for the life of the PD.
struct Once<T>(UnsafeCell<MaybeUninit<T>>);

// SAFETY: a Microkit PD is one thread; `take` runs once, in `init`.
unsafe impl<T> Sync for Once<T> {}

impl<T> Once<T> {
    const fn new() -> Self {
        Self(UnsafeCell::new(MaybeUninit::uninit()))
    }

    /// # Safety
    /// Call at most once.
    // A `&'static mut` from `&'static self` is what this type is for: the one call hands
    // out the only reference there will ever be.
    #[allow(clippy::mut_from_ref)]
    unsafe fn take(&'static self, value: T) -> &'static mut T {
        // SAFETY: the caller calls this once, so no other reference exists.
        unsafe { (*self.0.get()).write(value) }
    }
}

static STORAGE: Once<policy::PolicyStorage> = Once::new();
static REGIONS: Once<[RegionConfig; policy::REGIONS.len()]> = Once::new();

/// This PD's end of client `i`'s channel is id `i + 1` (the description's convention).
fn client_of(channel: Channel) -> Option<usize> {
    let i = channel.index();
    (1..=policy::CLIENTS.len()).contains(&i).then(|| i - 1)
}

/// The EL1 physical timer's interrupt (irq 30), when the description gives it: polls an
/// SMMU whose interrupts are not wired here, and wakes this PD again when a wake-up left
/// records in the queue.
const TIMER_IRQ: Channel = Channel::new(12);
/// How often an SMMU without wired interrupts is polled.
const POLL_US: u64 = 10_000;

/// What a client may cost on the console (the debug configuration's; a release build
/// prints nothing), each client on its own budgets (`iommu_pd::lines`): its refused
/// requests and apart from them its STOPs' reports (`lines::REQUESTS`), its devices'
/// faults (`lines::FAULTS`), all within its share of the console (`lines::CONSOLE`). A line costs the IOMMU PD a kernel call per character, a
/// refusal, a STOP without a reset or a fault record microseconds, so a flood printed in
/// full would slow every client's calls, and at priority 254 hold the system (a STOP's
/// two lines made a STOP loop do so however its resets were rationed; a device faulting
/// just under its storm limit, a line per wake-up, would too).
fn line_limit(budget: Budget) -> LineLimit {
    budget.limit(generic_timer::ticks_from_us)
}

/// One line of `client`'s of one kind (its account in `accounts`, on `budget`) asked for
/// now, within its share of the console (its account in `shares`, on `lines::CONSOLE`'s
/// share for each client), so that all clients together cost the console at most
/// `lines::CONSOLE`, however many the description has. `None` for no such client.
fn ask_line(accounts: &mut [Lines], client: usize, budget: Budget, shares: &mut [Lines]) -> Option<Verdict> {
    let (account, share) = (accounts.get_mut(client)?, shares.get_mut(client)?);
    let share_limit = line_limit(lines::CONSOLE.share(policy::CLIENTS.len()));
    Some(account.ask_within(generic_timer::ticks(), line_limit(budget), share, share_limit))
}

pub(crate) type Svc = Service<'static, backend::Hw>;

/// A client stopped one of its devices: say what the SMMU now holds for it, read back
/// (its stream table entry, and how many pages are still mapped for it: none), and what
/// was done to its PCI function (`function`, STOP's reply); `quiet`, the client's STOPs
/// before it not reported (its budget of lines), and `reported` counts the reports.
fn report_stop(
    service: &mut Svc,
    client: usize,
    reported: &mut u64,
    device: usize,
    function: u64,
    quiet: u64,
    ecam: Option<&mut pci::Ecam>,
) {
    let Some(dev) = policy::DEVICES.get(device) else { return };
    *reported += 1;
    let name = policy::CLIENTS.get(client).map_or("?", |c| c.name);
    let mut left = 0u64;
    service.for_each_mapped_page(|d, _, _, _| left += (d == device) as u64);
    let state = backend::stream_state(service.hw_mut(), dev.stream);
    debug_println!(
        "iommu: {name} stopped {} (stream {:#x}), confirmed: {state}; {left} page(s) left mapped for it{}",
        dev.name,
        dev.stream,
        Unsaid(quiet, "STOP(s) before it not reported")
    );
    if let Some(ecam) = ecam {
        pci::report_function_stop(ecam, device, iommu_pd::pci::Stopped(function), None);
    }
}

/// Where the description maps the SMMU's registers (`setvar_vaddr="smmu_regs"`).
fn smmu_regs() -> NonNull<u8> {
    memory_region_symbol!(smmu_regs: *mut u8)
}

/// What this PD does when it panics, before it faults and stops for good (its panic is an
/// abort, and it has no parent to restart it): every device's DMA aborts, as when the SMMU
/// fails (`backend::fail_closed`), and every client is told (`faults::panicked`: the
/// SERVICE_FAILED record, the ring's `failed` word with what failing closed confirmed, and
/// a notification), and the client whose call it was serving, if any, is answered
/// `SERVICE_FAILED` (before, it stayed blocked in that call for good). Before (found
/// 2026-12-07), a panic left the SMMU serving every mapping as it was, with no one left to
/// remove any, and no client was told.
fn fail_closed_on_panic(info: &core::panic::PanicInfo) {
    // sel4-panicking without thread-local storage (this target) calls the hook again on a
    // panic inside it; once is all it gets, and the abort follows the second.
    static ENTERED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if ENTERED.swap(true, core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    debug_println!("iommu: PANICKED: {info}");
    let regs = smmu_regs();
    // SAFETY: panics abort (pds/Cargo.toml): nothing that was under way when this PD
    // panicked ever runs again, so the driver's register accesses are over for good and
    // this is the only one from now on.
    let closed = unsafe { backend::fail_closed(regs, KNOWN.load(core::sync::atomic::Ordering::Relaxed)) };
    match &closed {
        Ok(()) => debug_println!("iommu: PANICKED: {}: every device's DMA aborts", backend::CLOSED),
        Err(e) => debug_println!("iommu: PANICKED: DMA NOT KNOWN TO BE STOPPED: {e}"),
    }
    // SAFETY: as above, the service's reference to the rings is never used again.
    tell_clients(iommu_pd::faults::panicked(unsafe { fault_rings() }, closed.is_ok()));
    // Last: a client's call this PD was serving is answered, or its caller would stay
    // blocked in it for good. A passive PD runs on that caller's scheduling context,
    // which the reply gives back (seL4's MCS `doReplyTransfer`, `reply_remove`), so it
    // never runs again after it: not even its abort, and it faults no more. One with a
    // scheduling context of its own (system.xml's) goes on to its abort and faults.
    // Only a client's call (`protected`): the reply object also holds a faulting child's
    // message in `fault`, and a reply with a label there would restart it.
    if SERVING_CALL.load(core::sync::atomic::Ordering::Relaxed) {
        let failed = iommu_protocol::ErrorCode::ServiceFailed;
        debug_println!("iommu: PANICKED in a client's call: answering it {failed}");
        send_without_ipc_buffer(REPLY_CAP, failed as u64);
    }
}

/// What the driver has established (`backend::known`: on an SMMUv3, whether `init` read
/// GBPA.ABORT back set and whether a failure was failed closed with every transaction
/// aborting), kept for the panic hook, which has the registers and not the driver: without
/// it, the hook stopped at a GBPA update that never completes and left the SMMU enabled,
/// where the driver's own failure path disables it, and said DMA was not known to be
/// stopped after the driver had confirmed that it was.
static KNOWN: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// Keep what the driver has established for the panic hook (`KNOWN`).
pub(crate) fn remember_known(known: u8) {
    KNOWN.store(known, core::sync::atomic::Ordering::Relaxed);
}

/// Whether this PD is serving a client's call (`protected`), whose caller waits in it.
static SERVING_CALL: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The reply object Microkit gives every PD, at slot 4 of its CSpace (rust-sel4's
/// `sel4-microkit/base/src/ipc.rs`, `REPLY_CAP`, private there): where the caller of the
/// call being served waits. seL4's Send on it with no caller waiting does nothing
/// (`doReplyTransfer`: "nothing to do").
const REPLY_CAP: u64 = 4;

/// seL4_Signal on client `client`'s channel, without the IPC buffer a signal does not use
/// (`send_without_ipc_buffer`).
fn signal_without_ipc_buffer(client: usize) {
    send_without_ipc_buffer(Channel::new(client + 1).notification().cptr().bits(), 0);
}

/// seL4_Send of a message with `label` and no registers to capability `cptr`, as
/// rust-sel4's own `sys_send_null` makes it (sel4-sys, aarch64), without the IPC buffer:
/// to a notification it is a signal, to a reply object a reply. Not rust-sel4's
/// `Channel::notify` or `reply`: a panic inside one of rust-sel4's borrows of the IPC
/// buffer (a fault message decoded, a message register read) leaves it borrowed for good,
/// and those borrow it too, so the panic hook would panic there and no one would be told.
fn send_without_ipc_buffer(cptr: u64, label: u64) {
    // seL4_MessageInfo: the label above bit 12; no caps, no registers (length 0), so the
    // kernel copies no message register and reads no IPC buffer.
    let info = label << 12;
    // SAFETY: seL4's Send: the kernel reads the capability in x0 and the message info in
    // x1 and, with no registers and no caps, touches no memory of this PD's.
    unsafe {
        core::arch::asm!("svc 0", in("x7") sel4::sys::syscall_id::Send as u64, in("x0") cptr, in("x1") info);
    }
}

#[protection_domain]
fn init() -> IommuPd {
    sel4_microkit::panicking::set_hook(&fail_closed_on_panic);
    let regs = smmu_regs();
    // Configuration space first: every bus master off before anything else, whatever
    // becomes of the SMMU (a device that cannot master the bus does no DMA at all).
    let mut ecam = pci::Ecam::mapped();
    match ecam.as_mut() {
        Some(e) => pci::take_ownership(e),
        None => {
            debug_println!("iommu: no PCI configuration space mapped here: configuration calls answer NoConfigSpace")
        }
    }
    match start(regs) {
        Ok(service) => {
            debug_println!("iommu: serving {} client(s), {} device(s)", policy::CLIENTS.len(), policy::DEVICES.len());
            let mut poll = PollTimer::default();
            let keeping = ecam.as_ref().is_some_and(pci::Ecam::keeps_functions);
            match (irqs::WIRED, irqs::TIMER) {
                (true, true) if keeping => debug_println!(
                    "iommu: SMMU interrupts wired; the timer wakes this PD when records are left, and every {} ms to keep PCI functions owned",
                    POLL_US / 1000
                ),
                (true, true) => {
                    debug_println!("iommu: SMMU interrupts wired; the timer wakes this PD when records are left")
                }
                (true, false) if keeping => {
                    debug_println!("iommu: SMMU interrupts wired; no timer: a flood is drained in one wake-up, and a PCI function that resets itself is put back only at the next call or SMMU interrupt")
                }
                (true, false) => {
                    debug_println!("iommu: SMMU interrupts wired; no timer: a flood is drained in one wake-up")
                }
                (false, true) => debug_println!(
                    "iommu: no SMMU interrupt wired here: polling the event queue every {} ms",
                    POLL_US / 1000
                ),
                (false, false) => {
                    debug_println!("iommu: NO SMMU INTERRUPT AND NO TIMER: faults are read only when a request comes")
                }
            }
            // The first poll, where the timer polls the SMMU or keeps PCI functions owned
            // (`iommu_pd::poll`); later ones are set after each drain.
            if !irqs::WIRED || keeping {
                if let (Some(timer), Some(at)) = (
                    &irqs::PHYSICAL_TIMER,
                    poll.poll_within(generic_timer::ticks(), generic_timer::ticks_from_us(POLL_US)),
                ) {
                    timer.set_deadline(at);
                }
            }
            IommuPd::new(Ok(service), ecam, poll)
        }
        Err(why) => {
            // First, before even saying why: the SMMU may be as firmware left it (GBPA
            // often bypass, or firmware's tables), or hold what start-up did so far, and
            // Microkit starts the drivers whatever this PD does. Every device's DMA
            // aborts from here (`Smmu::init` did this already on its own errors; again
            // is harmless).
            // SAFETY: `start` has returned, and the driver and register access it made are
            // gone with it: this is the only access to the registers from now on.
            let closed = unsafe { backend::fail_closed(regs, KNOWN.load(core::sync::atomic::Ordering::Relaxed)) };
            debug_println!("iommu: NOT SERVING: {why}");
            match closed {
                Ok(()) => debug_println!("iommu: {}: every device's DMA aborts", backend::CLOSED),
                Err(e) => debug_println!("iommu: DMA NOT KNOWN TO BE STOPPED: {e}"),
            }
            debug_println!("iommu: every request is refused (Unavailable)");
            // Every client is told as after a failure while serving (`fail_service`), so
            // that one waiting for a notification before it calls learns it too.
            // SAFETY: the service `start` made, the rings' one other user, was dropped when
            // it returned.
            let told = iommu_pd::faults::start_failed(unsafe { fault_rings() }, closed.is_ok());
            tell_clients(told);
            // Its mapping queues are never served: nothing is, with no service.
            IommuPd::new(Err(Down { why, closed }), ecam, PollTimer::default())
        }
    }
}

/// Bring the SMMU up and the service on it; `Err` says what stopped start-up. Every
/// value it made, the driver included, is dropped when it returns.
fn start(regs: NonNull<u8>) -> Result<Svc, Why> {
    let backend = backend::start(regs)?;
    let paddrs = policy::region_paddrs();
    let regions = core::array::from_fn(|i| RegionConfig { pa: paddrs[i], ..policy::REGIONS[i] });
    // SAFETY: `init` runs once.
    let regions = unsafe { REGIONS.take(regions) };
    // SAFETY: as above.
    let storage = unsafe { STORAGE.take(policy::PolicyStorage::default()) };
    // SAFETY: `init` runs once, and this is the rings' first use.
    let rings = unsafe { fault_rings() };
    // The description's storm policy, its window in this board's timer ticks, and in the
    // milliseconds of `Clock::now_ms` for the ration of RESUMEs after a storm.
    let faults = FaultPolicy {
        window: generic_timer::ticks_from_us(policy::FAULT_WINDOW_US),
        max_faults: policy::MAX_FAULTS,
        resume_rest_ms: policy::FAULT_WINDOW_US.div_ceil(1000),
    };
    Service::new(backend, policy::config(regions, faults), storage.storage_with_rings(rings)).map_err(Why::Policy)
}

/// The fault rings: one page per client, each shared read-only with its client, mapped
/// here at consecutive addresses from `fault_rings`. (A system with no client, only
/// devices with the description's iomaps, has none.)
///
/// # Safety
/// No other reference to the rings may be live: `start`'s service holds one until it is
/// dropped.
unsafe fn fault_rings() -> &'static mut [iommu_pd::FaultRing] {
    if policy::CLIENTS.is_empty() {
        return &mut [];
    }
    let rings: NonNull<iommu_pd::FaultRing> = memory_region_symbol!(fault_rings: *mut iommu_pd::FaultRing);
    // SAFETY: the description maps one ring page per client there, for this PD to write;
    // the caller vouches that no other reference to them is live.
    unsafe { core::slice::from_raw_parts_mut(rings.as_ptr(), policy::CLIENTS.len()) }
}

/// What stopped start-up.
enum Why {
    /// `Smmu::init` refused the SMMU or failed.
    Smmu(backend::Error),
    /// The devices' domains could not be made.
    Devices(backend::Error),
    /// A device's other StreamIDs could not be set up.
    Streams(&'static str, backend::Error),
    /// The service refused the policy.
    Policy(iommu_pd::ConfigError),
    /// The SMMU entered service failure mode (SMMU_GERROR.SFM_ERR) while serving.
    #[cfg(not(mmu500))]
    ServiceFailure,
    /// The SMMU stopped answering while serving: two waits on its command queue timed
    /// out with no CMD_SYNC completed between them.
    Unanswered,
    /// The MMU-500 failed otherwise while serving (`smmuv2::Failure`).
    #[cfg(mmu500)]
    Mmu500(smmuv2::Failure),
}

impl core::fmt::Display for Why {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Why::Smmu(e) => write!(f, "SMMU not brought up: {e}"),
            Why::Devices(e) => write!(f, "devices not set up: {e}"),
            Why::Streams(name, e) => write!(f, "the other StreamIDs of {name} not set up: {e}"),
            Why::Policy(e) => write!(f, "policy refused: {e:?}"),
            #[cfg(not(mmu500))]
            Why::ServiceFailure => write!(f, "the SMMU entered service failure mode (SMMU_GERROR.SFM_ERR)"),
            Why::Unanswered => write!(f, "the SMMU stopped answering (two CMD_SYNC waits timed out in a row)"),
            #[cfg(mmu500)]
            Why::Mmu500(failure) => write!(f, "{failure}"),
        }
    }
}

/// A PD that could not start: why, and whether every device's DMA now aborts.
struct Down {
    why: Why,
    closed: Result<(), backend::Error>,
}

impl core::fmt::Display for Down {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.closed {
            Ok(()) => write!(f, "{}; every device's DMA aborts", self.why),
            Err(e) => write!(f, "{}; DMA not known to be stopped: {e}", self.why),
        }
    }
}

struct IommuPd {
    service: Option<Svc>,
    /// The clients' mapping queues, served when their clients notify.
    queues: queues::Queues,
    /// Why there is no service, when there is none.
    down: Option<Down>,
    /// Requests refused for want of a service.
    refused: u64,
    /// PCI configuration space, if the description maps it here: drivers reach their own
    /// function's through CONFIG_READ and CONFIG_WRITE.
    ecam: Option<pci::Ecam>,
    /// Each client's refused requests: how many, and its budget of console lines.
    refusals: [Lines; policy::CLIENTS.len()],
    /// Each client's STOPs that were confirmed: how many, and its budget of lines for
    /// their reports.
    stops: [Lines; policy::CLIENTS.len()],
    /// How many of each client's STOPs were reported (`report_stop` counts them).
    stops_reported: [u64; policy::CLIENTS.len()],
    /// Each client's wake-ups that found new fault records for it: how many, and its
    /// budget of lines for them.
    faults: [Lines; policy::CLIENTS.len()],
    /// Each client's share of the console, which all its kinds of line above come out of
    /// too (`ask_line`).
    console: [Lines; policy::CLIENTS.len()],
    /// How many times each client was restarted after a fault.
    restarts: [u8; policy::CLIENTS.len()],
    /// Each device's quarantines said on the console (`Service::times_quarantined`).
    quarantines_said: [u32; policy::DEVICES.len()],
    /// This PD's own wake-ups, timed.
    wake_ups: wake_ups::WakeUps,
    /// The timer's deadline while it polls the SMMU (`iommu_pd::poll`).
    poll: PollTimer,
}

impl Handler for IommuPd {
    type Error = Infallible;

    // Each wake-up is timed, start to end (`wake_ups`), for a measurement build to tell.

    fn notified(&mut self, channels: sel4_microkit::ChannelSet) -> Result<(), Self::Error> {
        #[cfg(feature = "inject-panic")]
        if (1..=policy::CLIENTS.len()).any(|id| channels.contains(Channel::new(id))) {
            panic!("injected at a client's notification (feature inject-panic, images/iommu-panic.xml)");
        }
        let began = wake_ups::now();
        let r = self.on_notified(channels);
        self.wake_ups.ended(began);
        r
    }

    fn fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<Option<MessageInfo>, Self::Error> {
        let began = wake_ups::now();
        let r = self.on_fault(child, msg_info);
        // A client's teardown waits on the SMMU too (its unmaps' and blocks' syncs), so it
        // may find the SMMU failed: the service stops here, every client told, not at the
        // next request or notification (which may never come).
        if self.service.as_mut().is_some_and(|s| backend::failure(s.hw_mut()).is_some()) {
            self.fail_service();
        }
        self.wake_ups.ended(began);
        r
    }

    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        use core::sync::atomic::Ordering::Relaxed;
        let began = wake_ups::now();
        SERVING_CALL.store(true, Relaxed);
        #[cfg(feature = "inject-panic-in-call")]
        if client_of(channel).is_some() && msg_info.label() == iommu_protocol::Op::Unmap as u64 {
            panic!("injected in a client's UNMAP call (feature inject-panic-in-call, images/iommu-panic-call.xml)");
        }
        let r = self.on_protected(channel, msg_info);
        SERVING_CALL.store(false, Relaxed);
        self.wake_ups.ended(began);
        r
    }
}

impl IommuPd {
    /// The PD at the end of `init`: serving (`Ok`), or down and why (`Err`), with nothing
    /// refused, logged, reported or restarted yet.
    fn new(service: Result<Svc, Down>, ecam: Option<pci::Ecam>, poll: PollTimer) -> IommuPd {
        let (service, down) = match service {
            Ok(s) => (Some(s), None),
            Err(d) => (None, Some(d)),
        };
        IommuPd {
            service,
            queues: queues::Queues::mapped(),
            down,
            refused: 0,
            ecam,
            refusals: [Lines::default(); policy::CLIENTS.len()],
            stops: [Lines::default(); policy::CLIENTS.len()],
            faults: [Lines::default(); policy::CLIENTS.len()],
            console: [Lines::default(); policy::CLIENTS.len()],
            stops_reported: [0; policy::CLIENTS.len()],
            restarts: [0; policy::CLIENTS.len()],
            quarantines_said: [0; policy::DEVICES.len()],
            wake_ups: Default::default(),
            poll,
        }
    }

    fn on_notified(&mut self, channels: sel4_microkit::ChannelSet) -> Result<(), Infallible> {
        let Some(service) = self.service.as_mut() else { return Ok(()) };
        // A device the SMMU would not block may still reach what was taken from it: any
        // wake-up is a chance to retry, not only a request (`handle` retries first too).
        service.retry_blocks();
        // Mapping queues first: a client waits on its completions, and a fault report
        // can wait a batch. A batch is a request: the SMMU may show that it failed there.
        self.queues.serve(service, channels);
        if backend::failure(service.hw_mut()).is_some() {
            self.fail_service();
            return Ok(());
        }
        let timer = irqs::TIMER && channels.contains(TIMER_IRQ);
        if backend::interrupted(channels) || timer || !irqs::WIRED {
            // Every fault the SMMU recorded, routed to its device's owner (`notify`: the
            // clients to tell, told even when the pass ended in the SMMU failing, which
            // the backend then failed closed: their records are in their rings).
            let keeping = self.ecam.as_ref().is_some_and(pci::Ecam::keeps_functions);
            let (notify, failed) = backend::take_faults(service, &mut self.poll, keeping);
            report_faults(service, notify, &mut self.faults, &mut self.console, &mut self.quarantines_said);
            if failed {
                self.fail_service();
                return Ok(());
            }
            if irqs::WIRED {
                backend::ack_interrupts();
            }
            if timer {
                TIMER_IRQ.irq_ack().ok();
            }
            // A function that reset itself (through a device register its driver wrote)
            // decodes nothing until what this PD keeps on is put back; its driver may
            // make no configuration call (which puts it back too) before its next load
            // from its BAR. On the SMMU's and the timer's wake-ups (the timer polls every
            // 10 ms while there are functions to keep, `take_faults`), not on every one:
            // a mapping queue's are its hot path.
            if let Some(ecam) = self.ecam.as_mut().filter(|_| timer || backend::interrupted(channels)) {
                service.keep_functions_owned(ecam, |_| {});
            }
        }
        Ok(())
    }

    /// A driver PD faulted (the driver PDs are this PD's children, child i + 1 being
    /// client i): its devices stop and its mappings go, confirmed by the SMMU, before
    /// anything else is served; the PD stays stopped (no reply), its capabilities kept,
    /// so a supervisor that restarts it would call `client_ready`.
    ///
    /// Stopped means suspended, not merely unanswered: the kernel delivered the fault as a
    /// call whose reply sits in this PD's one reply object, and the next receive on that
    /// object, with the reply still pending, would make a debug kernel print "Reply object
    /// already has unexecuted reply!" as it cancels it. Suspending the child (its TCB
    /// cap is a parent's, libmicrokit's `microkit_pd_stop`) cancels the pending reply
    /// first, so nothing is printed, and leaves the child as a supervisor would restart
    /// it.
    fn on_fault(&mut self, child: Child, msg_info: MessageInfo) -> Result<Option<MessageInfo>, Infallible> {
        let name = child.index().checked_sub(1).and_then(|c| policy::CLIENTS.get(c)).map(|c| c.name);
        let what = place::FaultKind::of(&msg_info);
        // A child this PD restarts is not suspended: it is restarted by the reply to its
        // fault, which also gives it back its scheduling context (this PD is passive: it
        // runs on the faulting child's until it replies; suspending the child would
        // cancel the reply and leave the context here, and the child could never run).
        let client = child.index().checked_sub(1);
        // Its program, as the policy names it (the client's `program_image path`).
        let program = client.and_then(|c| policy::CLIENT_PROGRAMS.get(c));
        let entry = program.and_then(|p| restart::ENTRIES.iter().find(|(file, _)| file == p)).map(|&(_, e)| e);
        let restart = match (client, entry) {
            (Some(c), Some(e)) if self.service.is_some() && self.restarts.get(c).is_some_and(|&r| r < MAX_RESTARTS) => {
                Some((c, e))
            }
            _ => None,
        };
        // After reading the fault (an invocation reuses the message registers). A parent
        // holds its children's TCB caps; should the kernel refuse, the fault goes
        // unanswered and the child stays blocked all the same.
        if restart.is_none() {
            let _ = child.tcb().tcb_suspend();
        }
        let Some(name) = name else {
            debug_println!("iommu: child {} faulted ({what}); it is not a client", child.index());
            return Ok(None);
        };
        let Some(service) = self.service.as_mut() else {
            if let Some(down) = &self.down {
                debug_println!("iommu: {name} faulted ({what}); not serving: {down}");
            }
            return Ok(None);
        };
        service.retry_blocks();
        let client = child.index() - 1;
        self.say_refusals(client, name);
        self.queues.report(client);
        let Some(service) = self.service.as_mut() else { return Ok(None) };
        let owned = |d: usize| policy::DEVICES[d].owner == client;
        let mut pages = 0;
        service.for_each_mapped_page(|d, _, _, _| pages += owned(d) as u64);
        // Blocked and emptied first, confirmed; then each of its PCI functions stopped
        // (Bus Master off, FLR where it has one), said below.
        let mut functions = [iommu_pd::pci::Stopped::default(); policy::DEVICES.len()];
        let torn_down = match self.ecam.as_mut() {
            Some(ecam) => {
                #[cfg(feature = "inject-function-away")]
                let ecam = &mut pci_away::AwayAtTeardown::new(ecam, client);
                service.client_torn_down_with(client, ecam, |d, done| functions[d] = done)
            }
            None => service.client_torn_down(client),
        };
        match torn_down {
            Ok(()) => {
                let mut left = 0;
                service.for_each_mapped_page(|d, _, _, _| left += owned(d) as u64);
                debug_println!(
                    "iommu: {name} faulted ({what}): its devices are blocked and {pages} mapped page(s) removed, confirmed; {left} left"
                );
                for dev in policy::DEVICES.iter().filter(|d| d.owner == client) {
                    let state = backend::stream_state(service.hw_mut(), dev.stream);
                    debug_println!("iommu: {} (stream {:#x}): {state}", dev.name, dev.stream);
                }
            }
            Err(e) => {
                // Every device was tried; those the SMMU would not block are retried before
                // the next request is served.
                debug_println!(
                    "iommu: {name} faulted ({what}); the SMMU did not confirm its teardown ({e:?}); devices not yet blocked: {:#x}",
                    service.unblocked_devices()
                )
            }
        }
        if let Some(ecam) = self.ecam.as_mut() {
            for (d, done) in functions.iter().enumerate().filter(|(d, _)| policy::DEVICES[*d].owner == client) {
                pci::report_function_stop(ecam, d, *done, Some(name));
            }
        }
        match restart {
            Some((client, entry)) if torn_down.is_ok() => Ok(self.restart(child, client, name, entry)),
            Some(_) => {
                // Not restarted on a teardown the SMMU did not confirm: stopped instead.
                let _ = child.tcb().tcb_suspend();
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn on_protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Infallible> {
        let Some(service) = self.service.as_mut() else {
            // Nothing is served, ever: a typed refusal, and the reason on the console at
            // the first refusal and then at powers of two, so a caller that retries in a
            // loop cannot flood it.
            self.refused += 1;
            if let Some(down) = self.down.as_ref().filter(|_| self.refused.is_power_of_two()) {
                debug_println!(
                    "iommu: request {} on channel {} refused ({} so far): not serving: {down}",
                    msg_info.label(),
                    channel.index(),
                    self.refused
                );
            }
            return Ok(MessageInfo::new(iommu_protocol::ErrorCode::Unavailable as u64, 0));
        };
        let bad_client = MessageInfo::new(iommu_protocol::ErrorCode::BadClient as u64, 0);
        let Some(client) = client_of(channel) else {
            // A call on a channel that is no client's: refused by the service, so that it
            // counts among the refusals like any other.
            let _ = service.handle(usize::MAX, msg_info.label(), &[]);
            return Ok(bad_client);
        };
        let n = msg_info.count().min(iommu_protocol::MAX_MRS);
        let mut mrs = [0u64; iommu_protocol::MAX_MRS];
        with_msg_regs(|regs| {
            for (d, s) in mrs.iter_mut().zip(regs.iter()).take(n) {
                *d = *s;
            }
        });
        // The mapping queue's doorbell: one batch of the caller's queue, and the reply.
        if msg_info.label() == iommu_protocol::queue::SERVE {
            #[cfg(feature = "measure-batch")]
            let began = generic_timer::ticks();
            #[cfg(feature = "measure-batch")]
            if n > 0 && mrs[0] == iommu_protocol::measure::BATCH_REPORT {
                batch_timing::report();
            }
            #[cfg(feature = "measure-batch")]
            batch_timing::serve_begins(if n > 0 { mrs[0] } else { 0 });
            service.retry_blocks();
            #[cfg(feature = "measure-batch")]
            let serving = generic_timer::ticks();
            let served = self.queues.serve_one(service, client);
            #[cfg(feature = "measure-batch")]
            {
                let now = generic_timer::ticks();
                batch_timing::serve_ends(served.unwrap_or(0), now - serving, now - began);
            }
            if backend::failure(service.hw_mut()).is_some() {
                self.fail_service();
            }
            return Ok(match served {
                Some(n) => {
                    with_msg_regs_mut(|regs| regs[0] = n as u64);
                    MessageInfo::new(0, 1)
                }
                None => MessageInfo::new(iommu_protocol::ErrorCode::UnknownOp as u64, 0),
            });
        }
        #[cfg(feature = "measure-wake-ups")]
        if msg_info.label() == iommu_protocol::measure::WAKE_UP {
            let told = self.wake_ups.take();
            with_msg_regs_mut(|regs| regs[..told.len()].copy_from_slice(&told));
            return Ok(MessageInfo::new(0, told.len()));
        }
        #[cfg(feature = "measure-bypass")]
        if msg_info.label() == iommu_protocol::measure::BYPASS {
            let label = backend::measure_bypass(service, client, &mrs[..n]).map_or_else(|e| e as u64, |()| 0);
            return Ok(MessageInfo::new(label, 0));
        }
        // images/smmu-failure.xml's injected failure: this UNMAP finds the SMMU not
        // answering.
        #[cfg(all(feature = "inject-unanswered", not(mmu500)))]
        if msg_info.label() == iommu_protocol::Op::Unmap as u64 {
            backend::withhold_doorbell(service.hw_mut());
        }
        let reply = match self.ecam.as_mut() {
            Some(ecam) => service.handle_with(client, msg_info.label(), &mrs[..n], ecam),
            // No ECAM, but the rations still need a clock.
            None => service.handle_with(
                client,
                msg_info.label(),
                &mrs[..n],
                &mut iommu_pd::pci::NoConfigSpaceClocked(pci::now_ms),
            ),
        };
        // A request is where a failed SMMU may show first (a CMD_SYNC that finds SFM_ERR):
        // this one is answered as the service answered it (`Hardware`), the next ones are
        // refused.
        let failed = backend::failure(service.hw_mut()).is_some();
        if let (true, iommu_protocol::Reply::Ok { values, .. }) =
            (msg_info.label() == iommu_protocol::Op::Stop as u64, &reply)
        {
            let asked = ask_line(&mut self.stops, client, lines::REQUESTS, &mut self.console);
            if let (Some(Verdict::Log { quiet }), Some(reported)) = (asked, self.stops_reported.get_mut(client)) {
                report_stop(service, client, reported, mrs[0] as usize, values[0], quiet, self.ecam.as_mut());
            }
        }
        if failed {
            self.fail_service();
        }
        match reply {
            iommu_protocol::Reply::Ok { values, n } => {
                with_msg_regs_mut(|regs| {
                    for (d, s) in regs.iter_mut().zip(values.iter()).take(n) {
                        *d = *s;
                    }
                });
                Ok(MessageInfo::new(0, n))
            }
            iommu_protocol::Reply::Err(e) => {
                self.log_refusal(client, msg_info.label(), &mrs[..n], e);
                Ok(MessageInfo::new(e as u64, 0))
            }
        }
    }
}

/// A fault or stream event no client is told of (`routed` says why): this PD says it, the
/// first and then at powers of two (a device that faults in a loop would flood the
/// console and keep this PD here). `what` is the SMMU's record of it.
fn say_unrouted(routed: Routed, what: &dyn core::fmt::Display) {
    if !routed.printed() {
        return;
    }
    match routed {
        Routed::Unnamed { n } => {
            debug_println!("iommu: {what}: a StreamID no description names ({n} such so far)")
        }
        Routed::Unowned { device, n } => debug_println!(
            "iommu: {what}: {}, a device no client drives ({n} such so far)",
            policy::DEVICES.get(device).map_or("?", |d| d.name)
        ),
        Routed::StreamEvent { device, n } => debug_println!(
            "iommu: {what}: the stream of {} ({n} such so far)",
            policy::DEVICES.get(device).map_or("?", |d| d.name)
        ),
        Routed::Client(_) => {}
    }
}

/// Tell each client in `notify` of its new fault records, printing the last of each
/// within the client's budget of lines (`accounts`, one per client) and its share of the
/// console (`shares`). A quarantine
/// is said whatever the budget: it comes once per storm, and a device's RESUMEs after
/// one are rationed (or refused) by the service.
fn report_faults(
    service: &mut Svc,
    notify: u64,
    accounts: &mut [Lines],
    shares: &mut [Lines],
    quarantines_said: &mut [u32],
) {
    for client in 0..policy::CLIENTS.len() {
        if notify & (1 << client) == 0 {
            continue;
        }
        if let Some(r) = service.faults(client).and_then(|ring| ring.pending().last()) {
            let asked = ask_line(accounts, client, lines::FAULTS, shares);
            let device = policy::DEVICES.get(r.device as usize).map(|d| d.name).unwrap_or("?");
            let region = policy::REGIONS.get(r.region as usize).map(|g| g.name);
            // A device passed through to a VM: its client is the VMM; say which VM.
            let vm = policy::DEVICE_VMS.get(r.device as usize).copied().unwrap_or("");
            if let Some(Verdict::Log { quiet }) = asked {
                debug_println!(
                    "iommu: fault for {}: device {device}{}{vm} (stream {:#x}) {} at iova {:#x}..={:#x}, {}{}{}",
                    policy::CLIENTS[client].name,
                    if vm.is_empty() { "" } else { " of virtual machine " },
                    r.stream,
                    if r.write == 1 { "write" } else { "read" },
                    r.iova,
                    r.iova_last,
                    match region {
                        Some(name) if r.near == 1 => place::Near(name, r.offset),
                        Some(name) => place::In(name, r.offset),
                        None => place::Nowhere,
                    },
                    if r.quarantined == 1 { "; device quarantined" } else { "" },
                    Unsaid(quiet, "fault line(s) before it not printed")
                );
            }
        }
        notify_client(client);
    }
    // Every quarantine since the last pass, each said once whatever the budget. Not read
    // from a client's last record: two devices of one owner, one quarantined and the other
    // faulting after it in the same pass, left the quarantine unsaid.
    for (d, said) in quarantines_said.iter_mut().enumerate() {
        let Some(n) = service.times_quarantined(d).filter(|&n| n != *said) else { continue };
        *said = n;
        let device = policy::DEVICES.get(d).map(|d| d.name).unwrap_or("?");
        let recent = service.recent_faults(d).unwrap_or(0);
        let window = policy::FAULT_WINDOW_US / 1000;
        if recent > policy::MAX_FAULTS {
            debug_println!(
                "iommu: {device} quarantined: {recent} faults within {window} ms, over the limit of {}",
                policy::MAX_FAULTS
            );
        } else {
            debug_println!("iommu: {device} quarantined: at an event-queue overflow its records, with other devices' on probation, were a quarter of the queue ({recent} faults within {window} ms)");
        }
    }
}

/// Notify `client` (on its channel, id client + 1): its ring has something new.
fn notify_client(client: usize) {
    Channel::new(client + 1).notify();
}

/// The IOMMU service failed for good, and the rings of `told` (a client mask) say so:
/// notify each of those clients, and say it. Each failure path comes here once, the panic
/// hook too, so the signal is the one that needs no IPC buffer.
fn tell_clients(told: u64) {
    (0..policy::CLIENTS.len()).filter(|c| told & (1 << c) != 0).for_each(signal_without_ipc_buffer);
    debug_println!("iommu: every client told (SERVICE_FAILED in its fault ring)");
}

impl IommuPd {
    /// Restart a client whose teardown is confirmed, from its program's entry point, as
    /// a supervisor would: its devices run again with no mappings (`client_ready`), and
    /// the reply to its fault (returned here) starts it at `entry`, where it maps again.
    /// The stack pointer goes back to where the Microkit tool starts every PD's (Microkit's
    /// own `microkit_pd_restart` writes the pc alone, and libmicrokit's `_start` does not
    /// set it, so each restart would lose the stack the crash had used). `None` (no reply;
    /// the child suspended) if any step is refused.
    fn restart(&mut self, child: Child, client: usize, name: &str, entry: u64) -> Option<MessageInfo> {
        let service = self.service.as_mut()?;
        self.restarts[client] += 1;
        let ready = service.client_ready(client);
        // What it posted died with it; its queue starts over where the service now is.
        self.queues.restart(service, client);
        let mut regs = sel4::UserContext::default();
        *regs.pc_mut() = entry;
        *regs.sp_mut() = STACK_TOP;
        // The first two registers (pc, sp), not resumed: the reply below resumes it.
        let written = ready.is_ok().then(|| child.tcb().tcb_write_registers(false, 2, &mut regs));
        debug_println!(
            "iommu: restarting {name} at its entry {entry:#x} (restart {} of at most {MAX_RESTARTS}): client_ready {ready:?}, pc and sp written {}",
            self.restarts[client],
            match written {
                Some(Ok(())) => "Ok",
                Some(Err(_)) => "REFUSED",
                None => "not tried",
            }
        );
        if matches!(written, Some(Ok(()))) {
            // Label 0: the kernel restarts the faulting thread, from the pc just written.
            return Some(MessageInfo::new(0, 0));
        }
        let _ = child.tcb().tcb_suspend();
        None
    }

    /// A request the service refused: name the client, the request and the reason, within
    /// the client's budget of lines (`line_limit`).
    fn log_refusal(&mut self, client: usize, label: u64, mrs: &[u64], e: iommu_protocol::ErrorCode) {
        if let Some(Verdict::Log { quiet }) = ask_line(&mut self.refusals, client, lines::REQUESTS, &mut self.console) {
            let shown = iommu_protocol::show::Shown { label, mrs };
            let name = policy::CLIENTS[client].name;
            debug_println!("iommu: refused {name}'s {shown}: {e:?}{}", Unsaid(quiet, "refused before it not logged"));
        }
    }

    /// How many of a client's requests were refused and how many of those were logged,
    /// how many of its STOPs were confirmed and how many of those reported, and how many
    /// of its wake-ups with new fault records were printed.
    fn say_refusals(&self, client: usize, name: &str) {
        let (Some(l), Some(s), Some(reported), Some(f)) = (
            self.refusals.get(client),
            self.stops.get(client),
            self.stops_reported.get(client),
            self.faults.get(client),
        ) else {
            return;
        };
        debug_println!(
            "iommu: {name}: {} request(s) refused, {} logged ({})",
            l.asked,
            l.logged,
            Rate(lines::REQUESTS)
        );
        debug_println!(
            "iommu: {name}: all its lines within its share of the console ({}, of every client's {})",
            Rate(lines::CONSOLE.share(policy::CLIENTS.len())),
            Rate(lines::CONSOLE)
        );
        if s.asked > 0 {
            debug_println!("iommu: {name}: {} STOP(s) confirmed, {reported} reported (a budget of their own)", s.asked);
        }
        if f.asked > 0 {
            debug_println!(
                "iommu: {name}: {} wake-up(s) with new fault records, {} printed ({}; every record is in its ring)",
                f.asked,
                f.logged,
                Rate(lines::FAULTS)
            );
        }
    }

    /// The SMMU failed while serving (SMMU_GERROR.SFM_ERR, or it stopped answering): the
    /// driver has failed it closed as far as it could (GBPA.ABORT, then SMMUEN = 0); from
    /// here on this PD is as one that could not start, every request refused with
    /// `Unavailable`, and says so, to every client too, with whether every device's DMA
    /// now aborts (the driver's `failure`).
    fn fail_service(&mut self) {
        let Some(mut service) = self.service.take() else { return };
        // What failing closed gave, never a default: where the driver recorded no failure
        // (a caller that gives up on the SMMU on its own), it is failed closed now. Before,
        // `failure().unwrap_or(Ok(()))` read "no failure recorded" as "every device's DMA
        // aborts", and told every client so, with the SMMU still translating.
        let closed = backend::fail_closed_now(service.hw_mut());
        remember_known(backend::known(service.hw_mut()));
        let why = backend::why_failed(service.hw_mut());
        if let Some(timer) = &irqs::PHYSICAL_TIMER {
            timer.stop();
            self.poll.set(None);
        }
        let down = Down { why, closed };
        debug_println!("iommu: NOT SERVING: {down}");
        debug_println!("iommu: every request is refused (Unavailable)");
        // A client waiting on its queue's completions or on a removal would wait for
        // ever: each is told, by a SERVICE_FAILED record in its ring (and its ring's
        // `failed`, which a ring too full for the record gets too) and a notification.
        tell_clients(service.service_failed(down.closed.is_ok()));
        self.down = Some(down);
    }
}

/// A budget of lines as the console says it: `at most 8 at once, then one per 100 ms`.
struct Rate(Budget);

impl core::fmt::Display for Rate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "at most {} at once, then one per {} ms", self.0.burst, self.0.every_us / 1000)
    }
}

/// Where a fault falls, what a child's fault was, and what a stream table entry holds, for
/// the console.
mod place {
    use core::fmt;

    pub enum FaultKind {
        Vm {
            addr: u64,
            pc: u64,
        },
        Exception,
        /// A breakpoint or other debug exception: what a Rust PD's panic (its abort is a
        /// `brk`) and C's `__builtin_trap` come to on a kernel with the hardware debug API,
        /// as Microkit's debug kernels have.
        Debug,
        Other(u64),
    }

    sel4::sel4_cfg_if! {
        if #[sel4_cfg(HARDWARE_DEBUG_API)] {
            /// The DebugException fault's label, on a kernel with the hardware debug API.
            const DEBUG_EXCEPTION: Option<u64> = Some(sel4::sys::seL4_Fault_tag::seL4_Fault_DebugException);
        } else {
            /// A kernel without the hardware debug API (zcu102's configuration in the
            /// SDK) has no DebugException label.
            const DEBUG_EXCEPTION: Option<u64> = None;
        }
    }

    impl FaultKind {
        /// What a child's fault message says, from its label alone before anything else
        /// is read: rust-sel4's `Fault::new` panics on a label it does not decode
        /// (DebugException, on this configuration), and a client whose fault panicked
        /// this PD would take the whole IOMMU service down with it (found 2026-12-07: a
        /// Rust driver's panic did).
        pub fn of(msg_info: &sel4_microkit::MessageInfo) -> Self {
            use sel4::sys::seL4_Fault_tag as tag;
            match msg_info.label() {
                // A child holds its own fault endpoint (Microkit puts it in the child's
                // CSpace), so it can send a "fault" of any label and length: rust-sel4
                // asserts a VM fault's length, so only one of the kernel's length is
                // decoded.
                tag::seL4_Fault_VMFault
                    if msg_info.count() == sel4::sys::seL4_VMFault_Msg::seL4_VMFault_Length as usize =>
                {
                    match msg_info.fault() {
                        sel4::Fault::VmFault(f) => FaultKind::Vm { addr: f.addr(), pc: f.ip() },
                        _ => FaultKind::Other(tag::seL4_Fault_VMFault),
                    }
                }
                tag::seL4_Fault_UserException => FaultKind::Exception,
                label if Some(label) == DEBUG_EXCEPTION => FaultKind::Debug,
                label => FaultKind::Other(label),
            }
        }
    }

    impl fmt::Display for FaultKind {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                FaultKind::Vm { addr, pc } => write!(f, "VM fault at {addr:#x}, pc {pc:#x}"),
                FaultKind::Exception => write!(f, "user exception"),
                FaultKind::Debug => write!(f, "debug exception: a breakpoint, as a panic or a trap makes"),
                FaultKind::Other(label) => write!(f, "fault of label {label}"),
            }
        }
    }

    pub enum Where {
        In(&'static str, u64),
        Near(&'static str, u64),
        Nowhere,
    }

    pub use Where::*;

    impl fmt::Display for Where {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                In(name, off) => write!(f, "in region {name} at offset {off:#x}"),
                Near(name, off) => write!(f, "next to region {name} (offset {off:#x})"),
                Nowhere => write!(f, "in no region it was given"),
            }
        }
    }
}
