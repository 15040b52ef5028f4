//! The driver proper: initialisation in default-deny order, stream and domain
//! management, mapping with confirmed invalidation, command errors, global errors and
//! the event queue.

use core::fmt;
use core::ptr::NonNull;

use tock_registers::LocalRegisterCopy;

use crate::addr::{Asid, DmaRegion, Iova, PhysAddr, StreamId, Vmid};
use crate::barrier;
use crate::cd::{ips_from_oas, Cd, Stage1Context, CD_SIZE, CD_WORDS};
use crate::cmd::{Command, Opcode, TlbiRange, CMD_SIZE};
use crate::coherency::{CacheOps, Coherency, Maintenance};
use crate::device::{
    CMDQ_CONS, CR0, CR1, CR2, EVENTQ_CONS, EVENTQ_PROD, GBPA, GERROR, IDR0, IRQ_CTRL, Q_BASE, STRTAB_BASE,
    STRTAB_BASE_CFG,
};
use crate::entry::{self, EntryTarget, SteKind};
use crate::errata;
use crate::event::{Event, EventRecord, EVT_SIZE};
use crate::mmio::{reg, Mmio};
use crate::pagetable::{Leaf, MemType, PageTable, PageTableError, Perm, Stage, TablePool};
use crate::probe::{self, Features, IdRegs, Needs, Unsupported};
use crate::queue::Ring;
use crate::ste::{l1_desc, Stage2Context, Ste, STE_SIZE, STE_WORDS, STRTAB_L1_DESC_L2PTR, STRTAB_L1_DESC_SPAN};
use crate::tlbi::LeafInvalidation;

/// Translation contexts (domains) the driver can hold at once: the IOMMU service gives
/// each of its up to 64 devices a domain of its own.
pub const MAX_DOMAINS: usize = 64;
// `Smmu::deferred_domains` has a bit per domain.
const _: () = assert!(MAX_DOMAINS <= 64);
/// Streams that can be attached at once: a device may have several, sharing its domain
/// (8 bytes each in the driver).
pub const MAX_STREAMS: usize = 512;
/// Above this many leaves in one unmap, one CMD_TLBI_NH_ASID replaces per-page TLBIs.
pub const TLBI_ASID_THRESHOLD: usize = 64;
/// StreamIDs per level-2 stream table (SMMU_STRTAB_BASE_CFG.SPLIT), as Linux uses.
const STRTAB_SPLIT: u32 = 8;

/// Everything that can go wrong, by layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The SMMU lacks something this driver needs.
    Unsupported(Unsupported),
    /// A memory region handed to `init` is too small or misaligned; names which.
    BadMemory(&'static str),
    /// A memory region handed to `init` is not aligned as the SMMU needs: it ignores the
    /// address bits below this alignment, so it would read another entry or padding.
    Misaligned {
        /// Which region.
        what: &'static str,
        /// The alignment it needs, in bytes.
        align: u64,
    },
    /// The hardware did not respond within the poll bound; names what was awaited.
    Timeout(&'static str),
    /// The SMMU rejected a command (SMMU_CMDQ_CONS.ERR), now skipped and acknowledged.
    CommandError {
        /// The CERROR code (1 = CERROR_ILL, 2 = CERROR_ABT, 3 = CERROR_ATC_INV_SYNC).
        code: u32,
        /// Opcode of the rejected command.
        opcode: u8,
    },
    /// SMMU_GERROR.SFM_ERR: the SMMU entered service failure mode and must be reset. The
    /// driver has failed it closed (`Smmu::failure` says whether that took) and refuses
    /// everything that would use it from then on.
    ServiceFailure,
    /// A page-table operation was refused; nothing changed.
    PageTable(PageTableError),
    /// The physical range overlaps the SMMU's own tables or queues.
    ProtectedMemory(PhysAddr),
    /// The StreamID is beyond what the stream table covers.
    StreamOutOfRange(StreamId),
    /// No room for another level-2 stream table.
    StreamTableFull,
    /// Every stream slot is in use.
    TooManyStreams,
    /// Every domain slot (or CD slot) is in use.
    TooManyDomains,
    /// No domain with that handle.
    NoSuchDomain,
    /// The domain still has streams attached.
    DomainInUse,
    /// The stream is not attached.
    NotAttached(StreamId),
    /// The StreamID is already another device's (or listed twice): a stream has one STE,
    /// so two devices on it would share an address space.
    StreamInUse(StreamId),
    /// SMMU_GBPA.ABORT did not read back set (an SMMU without GBPA, such as QEMU 7.2's):
    /// a disabled SMMU would pass every transaction, so `fail_closed` left it as it was.
    NoGlobalAbort,
}

impl From<PageTableError> for Error {
    fn from(e: PageTableError) -> Self {
        Error::PageTable(e)
    }
}

impl From<Unsupported> for Error {
    fn from(e: Unsupported) -> Self {
        Error::Unsupported(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unsupported(u) => write!(f, "unsupported SMMU: {u}"),
            Error::BadMemory(what) => write!(f, "memory for the {what} is too small or misaligned"),
            Error::Misaligned { what, align } => {
                write!(f, "the {what} must be aligned to {align:#x} bytes (the SMMU ignores lower address bits)")
            }
            Error::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Error::CommandError { code, opcode } => {
                write!(f, "SMMU rejected command {opcode:#x} with CERROR {code}")
            }
            Error::ServiceFailure => write!(f, "SMMU in service failure mode"),
            Error::PageTable(e) => write!(f, "page table: {e:?}"),
            Error::ProtectedMemory(pa) => write!(f, "{pa} is the SMMU's own memory"),
            Error::StreamOutOfRange(sid) => write!(f, "stream {sid} is outside the stream table"),
            Error::StreamTableFull => write!(f, "no room for another level-2 stream table"),
            Error::TooManyStreams => write!(f, "too many attached streams"),
            Error::TooManyDomains => write!(f, "too many domains"),
            Error::NoSuchDomain => write!(f, "no such domain"),
            Error::DomainInUse => write!(f, "domain has streams attached"),
            Error::NotAttached(sid) => write!(f, "stream {sid} is not attached"),
            Error::StreamInUse(sid) => write!(f, "stream {sid} is already another device's"),
            Error::NoGlobalAbort => write!(
                f,
                "SMMU_GBPA.ABORT does not take on this SMMU: it was not disabled, which would let DMA through"
            ),
        }
    }
}

/// Memory the driver is given; it never allocates. Every region must stay unreachable
/// by devices (the driver refuses to map it). If the SMMU does not snoop this CPU's
/// caches for it (`Coherency::NonCoherent`), the driver cleans and invalidates it through
/// `Config::cache`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// The stream table: a linear table of 64-byte STEs if it holds 2^SIDSIZE of them,
    /// otherwise a level-1 table followed by level-2 tables. 64 KiB aligned.
    pub stream_table: DmaRegion,
    /// The command queue (16-byte entries), aligned to its size.
    pub cmdq: DmaRegion,
    /// The event queue (32-byte entries), aligned to its size.
    pub eventq: DmaRegion,
    /// Context descriptors, 64 bytes each, one per domain.
    pub cds: DmaRegion,
    /// The page-table pool: 4 KiB pages.
    pub tables: DmaRegion,
}

/// A monotonic clock, for bounding waits on the SMMU in time. The driver knows no timer
/// of its own (it runs on any SMMU, under any system, and on the host model): the system
/// gives it one (the IOMMU PD: the Arm generic timer; host tests: a fake clock).
pub trait Clock: Sync {
    /// The count now; never goes back.
    fn now(&self) -> u64;
    /// Counts per second.
    fn hz(&self) -> u64;
}

impl fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({} Hz)", self.hz())
    }
}

/// What bounds every wait on the SMMU (a CMD_SYNC, room in the command queue, CR0ACK,
/// IRQ_CTRLACK, GBPA.UPDATE): a wait that passes it is `Error::Timeout`, never a hang.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    /// At most this many register reads. What the hardware may take is time, not reads:
    /// a read costs anything from a few nanoseconds to microseconds (under an emulator,
    /// more), so this is for systems with no clock (and tests of the count itself).
    Polls(u32),
    /// Until `us` microseconds have passed on `clock`, however many reads that is.
    /// Linux waits `ARM_SMMU_POLL_TIMEOUT_US`, one second ([`Bound::LINUX_US`]).
    Time {
        /// The clock.
        clock: &'static dyn Clock,
        /// How long a wait may last, in microseconds.
        us: u64,
    },
}

impl Bound {
    /// Linux's bound on every SMMUv3 wait (`ARM_SMMU_POLL_TIMEOUT_US`): one second.
    pub const LINUX_US: u64 = 1_000_000;

    /// Start a wait now.
    fn start(self) -> Deadline {
        match self {
            Bound::Polls(n) => Deadline::Polls { left: n },
            Bound::Time { clock, us } => {
                let ticks = (u128::from(us) * u128::from(clock.hz()) / 1_000_000).min(u128::from(u64::MAX)) as u64;
                Deadline::Time { clock, at: clock.now().saturating_add(ticks) }
            }
        }
    }
}

/// One wait in progress: what is left of its bound.
enum Deadline {
    Polls { left: u32 },
    Time { clock: &'static dyn Clock, at: u64 },
}

impl Deadline {
    /// Called once per unsuccessful poll: true when the wait is over.
    fn passed(&mut self) -> bool {
        match self {
            Deadline::Polls { left } => match left.checked_sub(1) {
                Some(l) => {
                    *left = l;
                    false
                }
                None => true,
            },
            Deadline::Time { clock, at } => clock.now() >= *at,
        }
    }
}

/// Fixed choices made at initialisation.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Width of the IOVA space of every domain (25..=48).
    pub ias_bits: u32,
    /// Widest StreamID the platform will use, in bits.
    pub sid_bits: u32,
    /// How long a wait on the SMMU may last before it is declared timed out.
    pub bound: Bound,
    /// Enable the event-queue and global-error interrupts.
    pub interrupts: bool,
    /// What the platform says of the SMMU's own accesses (its tables and queues): true
    /// only if the board's device tree marks the SMMU `dma-coherent` AND the CPU maps that
    /// memory shareable as the SMMU accesses it (seL4 maps user pages Non-shareable on a
    /// kernel without SMP). Combined with SMMU_IDR0.COHACC (`Coherency::of`): either one
    /// saying no makes the driver clean and invalidate.
    pub platform_coherent: bool,
    /// What the platform says of the devices behind the SMMU: true if their accesses
    /// snoop the CPUs' caches as the CPUs map memory. Decides the attributes of their
    /// mappings (`Smmu::dma_memory`).
    pub devices_coherent: bool,
    /// The CPU's cache maintenance, for an SMMU that is not coherent; without it such an
    /// SMMU is refused (`Unsupported::NotCoherent`).
    pub cache: Option<&'static dyn CacheOps>,
}

impl Default for Config {
    /// A million register reads: the driver has no clock of its own; a system that has
    /// one should give it (`Bound::Time`). A coherent platform with no cache maintenance:
    /// an SMMU with COHACC = 0 is refused; a system that is not coherent says so.
    fn default() -> Self {
        Self {
            ias_bits: 48,
            sid_bits: 16,
            bound: Bound::Polls(1_000_000),
            interrupts: true,
            platform_coherent: true,
            devices_coherent: true,
            cache: None,
        }
    }
}

/// A domain: one stage-1 address space, shared by the streams attached to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(u16);

impl DomainId {
    /// The slot number.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// How a domain translates, and the tag its TLB entries carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// Stage 1 through the domain's CD, entries tagged with its ASID (and VMID 0).
    Stage1 {
        /// The ASID.
        asid: Asid,
    },
    /// Stage 2 only (stage 1 bypassed), entries tagged with its VMID: how a hypervisor
    /// gives a virtual machine's device the VM's guest-physical address space.
    Stage2 {
        /// The VMID: never 0, which every stage-1 stream carries (STE.S2VMID = 0 in their
        /// STEs), so that no CMD_TLBI_S12_VMALL of a stage-2 domain touches them.
        vmid: Vmid,
    },
}

impl Translation {
    /// The command that drops every TLB and walk-cache entry of the domain:
    /// CMD_TLBI_NH_ASID at stage 1, CMD_TLBI_S12_VMALL at stage 2 (as Linux's
    /// `arm_smmu_tlb_inv_context`).
    pub const fn invalidate_all(self) -> Command {
        match self {
            Translation::Stage1 { asid } => Command::tlbi_nh_asid(asid),
            Translation::Stage2 { vmid } => Command::tlbi_s12_vmall(vmid),
        }
    }

    /// The command that drops the last-level entry for `iova` (no table was removed):
    /// CMD_TLBI_NH_VA at stage 1, CMD_TLBI_S2_IPA at stage 2 (as Linux's
    /// `arm_smmu_tlb_inv_range_domain`; a stage-2-only stream caches no stage-1 entry
    /// for S12_VMALL to remove).
    pub const fn invalidate_leaf(self, iova: Iova) -> Command {
        match self {
            Translation::Stage1 { asid } => Command::tlbi_nh_va(asid, iova, true, None),
            Translation::Stage2 { vmid } => Command::tlbi_s2_ipa(vmid, iova, true),
        }
    }

    /// The range command that drops the last-level entries of `range` from `iova` (no
    /// table was removed), on an SMMU with range invalidation (SMMU_IDR3.RIL):
    /// CMD_TLBI_NH_VA at stage 1, CMD_TLBI_S2_IPA at stage 2, each with NUM, SCALE, TG
    /// and TTL (as Linux's `__arm_smmu_tlb_inv_range`).
    #[inline]
    pub const fn invalidate_range(self, iova: Iova, range: TlbiRange) -> Command {
        match self {
            Translation::Stage1 { asid } => Command::tlbi_nh_va_range(asid, iova, true, range),
            Translation::Stage2 { vmid } => Command::tlbi_s2_ipa_range(vmid, iova, true, range),
        }
    }
}

#[derive(Debug)]
struct Domain {
    tag: Translation,
    table: PageTable,
    attached: u32,
    /// Entries left its tables without a confirmed invalidation (an unmap whose TLBI or
    /// CMD_SYNC failed, or tables `reclaim_tables` unlinked): the TLB and walk caches may
    /// still hold them, so a TLBI by ASID and a sync go before anything else is done with
    /// the domain (and only then do unlinked tables go back to the pool).
    stale: bool,
    /// The IOVAs `[lo, hi)` spanning its unmaps whose invalidation was queued by
    /// `unmap_deferred` and not yet confirmed by `sync_deferred`: a map that overlaps them
    /// waits for that confirmation first (break-before-make).
    deferred: Option<(u64, u64)>,
}

/// Counters, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Commands written to the queue.
    pub commands: u64,
    /// CMD_SYNCs completed.
    pub syncs: u64,
    /// Commands the SMMU rejected (CERROR_ILL), each replaced by a CMD_SYNC.
    pub command_errors: u64,
    /// Command fetches that aborted (CERROR_ABT) or ATC invalidations that timed out
    /// (CERROR_ATC_INV_SYNC): acknowledged, and the same command retried.
    pub command_retries: u64,
    /// Waits that hit the poll bound.
    pub timeouts: u64,
    /// Event records read.
    pub events: u64,
    /// Times the event queue overflowed (records were lost by the hardware).
    pub event_overflows: u64,
    /// Global errors acknowledged, of every kind.
    pub global_errors: u64,
}

/// What one pass over the event queue found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Records delivered.
    pub events: u32,
    /// The queue had overflowed since the last pass: some records were lost.
    pub overflowed: bool,
    /// Records are still waiting (a queue's worth was delivered and more came): call
    /// again. The SMMU raises no new interrupt for them (it signals a queue going from
    /// empty to non-empty).
    pub remaining: bool,
}

/// Global errors active at one check (SMMU_GERROR ^ SMMU_GERRORN), now acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GlobalErrors(pub u32);

impl GlobalErrors {
    /// No error was active.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[derive(Debug, Clone, Copy)]
enum StreamTable {
    Linear { log2: u32 },
    TwoLevel { l1_entries: usize, l2_base: usize, l2_slots: usize, l2_used: usize },
}

/// The driver for one SMMUv3.
#[derive(Debug)]
pub struct Smmu<M: Mmio> {
    regs: M,
    features: Features,
    config: Config,
    mem: Memory,
    strtab: StreamTable,
    cmdq: CommandQueue,
    eventq_ring: Ring,
    eventq_cons: u32,
    pool: TablePool,
    domains: [Option<Domain>; MAX_DOMAINS],
    max_domains: usize,
    /// The domains (bit n: domain n) that may have a `Domain::deferred` range, so that
    /// `sync_deferred` visits those and not every slot (`MAX_DOMAINS` fits).
    deferred_domains: u64,
    streams: [Option<(StreamId, DomainId)>; MAX_STREAMS],
    stats: Stats,
    gbpa_aborts: bool,
    /// Whether the SMMU's accesses snoop this CPU's caches, and the maintenance done
    /// when they do not.
    coherency: Coherency,
    maint: Maintenance,
    reject_next_invalidation: RejectNext,
}

/// Fault injection: the next unmap's first invalidation goes out as a command the SMMU
/// rejects (CERROR_ILL), as a failing SMMU might refuse or lose it. Without the feature it
/// holds nothing and never rejects.
#[derive(Debug, Default)]
struct RejectNext(#[cfg(feature = "fault-injection")] bool);

impl RejectNext {
    /// Whether the next unmap's first invalidation is to be rejected.
    fn armed(&self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.0;
        #[cfg(not(feature = "fault-injection"))]
        false
    }

    /// Disarms it, returning what an unmap passes each invalidation command through: the
    /// command itself, or in place of the first, if it was armed, one the SMMU rejects.
    fn take(&mut self) -> impl FnMut(Command) -> Command {
        #[cfg(feature = "fault-injection")]
        let mut armed = core::mem::take(&mut self.0);
        #[cfg(not(feature = "fault-injection"))]
        let mut armed = false;
        move |cmd| if core::mem::take(&mut armed) { Command([0x7f, 0]) } else { cmd }
    }
}

/// The per-leaf (or per-range) TLBIs of one unmap or permission drop: pushed while there
/// are at most `TLBI_ASID_THRESHOLD` of them and the queue takes them; past that, or
/// after a push failed, none more, and one TLBI by ASID (or VMID) must cover the domain.
#[derive(Debug)]
struct LeafTlbis {
    pushed: usize,
    need_all: bool,
}

impl LeafTlbis {
    /// `wanted` false: the unmap is too large for per-leaf commands from the start.
    const fn new(wanted: bool) -> Self {
        Self { pushed: 0, need_all: !wanted }
    }

    #[inline]
    fn push(&mut self, cmd: Command, push: impl FnOnce(Command) -> Result<(), Error>) {
        if self.need_all {
            return;
        }
        if self.pushed == TLBI_ASID_THRESHOLD || push(cmd).is_err() {
            self.need_all = true;
            return;
        }
        self.pushed += 1;
    }

    /// Whether the domain needs its TLBI by ASID (or VMID) after all.
    const fn need_all(&self) -> bool {
        self.need_all
    }
}

// SAFETY: the driver exclusively owns its registers and memory regions (by `init`'s
// contract); moving it between threads moves that ownership.
unsafe impl<M: Mmio + Send> Send for Smmu<M> {}

/// What `Smmu::init`'s first part leaves for the second.
struct Reset {
    /// SMMU_IDR0.ATS, as probed: `start` sets CR0.ATSCHK.
    ats: bool,
    pool: TablePool,
    gbpa_aborts: bool,
}

/// What `Smmu::init` learns before it writes anything: the probe, and the memory checked
/// against it.
#[derive(Clone, Copy)]
struct Checked {
    idr0: u32,
    features: Features,
    coherency: Coherency,
    maint: Maintenance,
    strtab: StreamTable,
    cmdq_log2: u32,
    eventq_log2: u32,
    max_domains: usize,
    commands_per_sync: u32,
}

/// The stream table `checked` laid out, every entry aborting, written and given to the
/// SMMU (SMMU_STRTAB_BASE, which may be written only while SMMUEN is 0: the caller has
/// disabled it).
fn install_aborting_stream_table(regs: &impl Mmio, mem: &Memory, config: &Config, checked: &Checked) {
    write_aborting_stream_table(&mem.stream_table, &checked.strtab);
    // Every aborting STE (or invalid level-1 descriptor) at the PoC before the SMMU is
    // told where the table is.
    checked.maint.clean(mem.stream_table.va, mem.stream_table.len);
    let (strtab_log2, fmt, split) = match checked.strtab {
        StreamTable::Linear { log2 } => (log2, STRTAB_BASE_CFG::FMT::Linear, 0),
        StreamTable::TwoLevel { .. } => (config.sid_bits, STRTAB_BASE_CFG::FMT::TwoLevel, STRTAB_SPLIT),
    };
    barrier::wmb();
    regs.write64(reg::STRTAB_BASE, (STRTAB_BASE::RA::SET + STRTAB_BASE::ADDR.val(mem.stream_table.pa.0 >> 6)).value);
    regs.write32(
        reg::STRTAB_BASE_CFG,
        (fmt + STRTAB_BASE_CFG::LOG2SIZE.val(strtab_log2) + STRTAB_BASE_CFG::SPLIT.val(split)).value,
    );
}

impl Checked {
    /// SMMU_CR0.ATSCHK if the SMMU has ATS (SMMU_IDR0.ATS; the bit is RES0 otherwise),
    /// else nothing.
    fn atschk(&self) -> u32 {
        let ats = LocalRegisterCopy::<u32, IDR0::Register>::new(self.idr0).read(IDR0::ATS) == 1;
        if ats {
            CR0::ATSCHK::SET.value
        } else {
            0
        }
    }
}

/// SMMU_CR1 and SMMU_CR2, on a disabled SMMU (both may be written only while SMMUEN is
/// 0; CR1's queue fields only with the queues off too). Table and queue accesses (CR1,
/// IHI 0070 6.3.11, which resets UNKNOWN): write-back cacheable, inner shareable when
/// coherent, as Linux sets them. When not, Non-cacheable (the Arm ARM makes Normal
/// Non-cacheable memory outer shareable, so SH says so): the SMMU then reads and writes
/// the PoC, which is where the driver cleans its writes to and invalidates the SMMU's
/// records from; a cacheable access by an SMMU that does not snoop could be served by,
/// or allocate in, a cache the CPU's maintenance does not reach.
fn set_access_attributes(regs: &impl Mmio, coherency: Coherency) {
    regs.write32(reg::CR1, cr1(coherency));
    // Record C_BAD_STREAMID; ignore broadcast TLB maintenance (the ASIDs are ours).
    regs.write32(reg::CR2, (CR2::RECINVSID::SET + CR2::PTM::SET).value);
}

/// A queue's registers: base, producer and consumer index.
struct QueueRegs(usize, usize, usize);

impl QueueRegs {
    const COMMAND: Self = QueueRegs(reg::CMDQ_BASE, reg::CMDQ_PROD, reg::CMDQ_CONS);
    const EVENT: Self = QueueRegs(reg::EVENTQ_BASE, reg::EVENTQ_PROD, reg::EVENTQ_CONS);
}

/// Point a queue's registers at `region` (`log2` entries), empty: PROD == CONS == 0. Only
/// while the queue is disabled (its CR0 enable acknowledged 0).
fn set_queue(regs: &impl Mmio, QueueRegs(base, prod, cons): QueueRegs, region: &DmaRegion, log2: u32) {
    let value = Q_BASE::ALLOCATE::SET + Q_BASE::ADDR.val(region.pa.0 >> 5) + Q_BASE::LOG2SIZE.val(log2 as u64);
    regs.write64(base, value.value);
    regs.write32(prod, 0);
    regs.write32(cons, 0);
}

/// What `Smmu::init` leaves when it fails after checking the memory, wherever it stopped:
/// every transaction aborting, best effort. Disabled when GBPA.ABORT is in effect
/// (`gbpa_aborts`: `init` read it back set). Otherwise (no GBPA, QEMU 7.2's, or an update
/// that never completes) a disabled SMMU passes every transaction, so it translates
/// instead, queues off, through the aborting stream table, written again here since the
/// failure may have come before it was in place: disabled first (SMMU_STRTAB_BASE may be
/// written only while SMMUEN is 0; a successful `init` opens the same window), and left
/// as it is if that disable is not acknowledged.
///
/// While SMMUEN is 0 the SMMU uses no cached entry, but a change of SMMUEN need not
/// invalidate them (IHI 0070 6.3.9.6): enabled again, it could go on with an earlier
/// owner's cached STE (a bypassing one) or TLB entry, whatever the table now says. So
/// before it is enabled, every cached entry is invalidated through the command queue
/// (maintenance completed while SMMUEN is 0 guarantees the entries are gone, 6.3.9.6),
/// best effort: if the queue is what failed, it is enabled all the same, and the README
/// says where this stops.
///
/// On an SMMU with ATS, SMMU_CR0.ATSCHK is set with the queue's enable, before the
/// invalidation (the bit may be cached with STEs, IHI 0070 6.3.9.2), and kept with SMMUEN:
/// with ATSCHK = 0 an enabled SMMU lets ATS-translated traffic through with no stream
/// table lookup, every STE aborting or not (disabled, it aborts such traffic, 6.3.9.6).
fn fail_onto_aborting_table(
    regs: &impl Mmio,
    mem: &Memory,
    config: &Config,
    checked: &Checked,
    gbpa_aborts: bool,
) -> Result<(), Error> {
    if let Ok(true) = gbpa_abort_in_effect(regs, config.bound, gbpa_aborts) {
        return disable(regs, config.bound);
    }
    disable(regs, config.bound)?;
    // The failure may have come before `reset` wrote them.
    set_access_attributes(regs, checked.coherency);
    install_aborting_stream_table(regs, mem, config, checked);
    let atschk = checked.atschk();
    let _ = invalidate_while_disabled(regs, mem, config, checked, atschk);
    enable_on_aborting_table(regs, config.bound, atschk)
}

/// On a disabled SMMU (SMMUEN and CMDQEN acknowledged 0): the command queue set up afresh
/// in `mem`, every cached entry invalidated (`CommandQueue::invalidate_everything`), and
/// the queue left on (`enable_on_aborting_table` turns it off), with the CR0 bits `keep`.
fn invalidate_while_disabled(
    regs: &impl Mmio,
    mem: &Memory,
    config: &Config,
    checked: &Checked,
    keep: u32,
) -> Result<(), Error> {
    // The failure may have come before `reset` acknowledged them.
    acknowledge_stale_errors(regs);
    set_queue(regs, QueueRegs::COMMAND, &mem.cmdq, checked.cmdq_log2);
    let cmdqen = write_cr0(regs, keep | CR0::CMDQEN::SET.value);
    wait(config.bound, "SMMU_CR0ACK (command queue, to invalidate)", || regs.read32(reg::CR0ACK) == cmdqen)?;
    let mut cmdq = CommandQueue::new(mem, config, checked, false);
    cmdq.invalidate_everything(regs, &mut Stats::default())
}

/// Acknowledge every global error left active from before (a warm re-init, or firmware's
/// driver): GERRORN := GERROR (IHI 0070 6.3.17). Such errors survive queue enables, and
/// while CMDQ_ERR is active the SMMU consumes no command; CMDQ_CONS.ERR may keep the
/// earlier owner's code through a write of CONS (6.3.28), so its error would be taken for
/// the rejection of this driver's first command, and that command replaced. Before any
/// command, on a disabled SMMU.
fn acknowledge_stale_errors(regs: &impl Mmio) {
    let active = regs.read32(reg::GERROR) ^ regs.read32(reg::GERRORN);
    if active != 0 {
        regs.write32(reg::GERRORN, regs.read32(reg::GERRORN) ^ active);
    }
}

/// Make every incoming transaction abort, best effort: SMMU_GBPA.ABORT = 1 (written only
/// while GBPA.UPDATE is 0, and confirmed by UPDATE clearing), then SMMU_CR0 = 0 with
/// SMMU_CR0ACK waited for. What `Smmu::init` does first on every error, and what a system
/// that cannot run its IOMMU service does before anything else, so that no device's DMA
/// runs as firmware left it (GBPA's reset value is IMPLEMENTATION DEFINED and often
/// bypass, IHI 0070 6.3.14; firmware may have left its own tables on).
///
/// `Ok` means the SMMU reported both: every transaction now aborts. The SMMU is disabled
/// only once GBPA.ABORT reads back set: on an SMMU whose GBPA does not take the write
/// (QEMU 7.2 has none; or an update that never completes), disabling it would let every
/// transaction through untranslated, so it is left enabled or disabled as it was (a
/// running SMMU keeps its stream table) and `Err(NoGlobalAbort)` (or the `Timeout` of the
/// GBPA update) says that DMA is not known to be stopped.
pub fn fail_closed(regs: &impl Mmio, bound: Bound) -> Result<(), Error> {
    fail_closed_knowing(regs, bound, Known::NOTHING)
}

/// What a driver had established that failing its SMMU closed again without it must not
/// lose (the IOMMU PD's panic hook has the registers, not the driver, which may be in the
/// middle of anything): `Smmu::known`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    /// `init` read SMMU_GBPA.ABORT back set (`Smmu::gbpa_aborts`).
    pub gbpa_aborts: bool,
    /// The driver failed the SMMU closed already, with every transaction aborting
    /// (`Smmu::failure` is `Some(Ok(()))`).
    pub closed: bool,
}

impl Known {
    /// Nothing: an SMMU no `init` of this driver brought up.
    pub const NOTHING: Known = Known { gbpa_aborts: false, closed: false };

    /// As two bits, for a static the panic hook reads.
    pub const fn bits(self) -> u8 {
        self.gbpa_aborts as u8 | (self.closed as u8) << 1
    }

    /// From `bits`.
    pub const fn from_bits(bits: u8) -> Known {
        Known { gbpa_aborts: bits & 1 != 0, closed: bits & 2 != 0 }
    }
}

/// `fail_closed` by a caller that knows what the driver had established (`known`): a
/// GBPA update that never completes still disables the SMMU when `init` read ABORT back
/// set, as the driver's own failure path does (GBPA changes only through an update, so
/// that ABORT is still in effect); and an SMMU the driver had already failed closed with
/// every transaction aborting stays reported so, since nothing here can undo it (GBPA.ABORT
/// set again, SMMUEN = 0 only with ABORT in effect). Without GBPA (`gbpa_aborts` false) it
/// is `fail_closed`: a disable would pass everything.
pub fn fail_closed_knowing(regs: &impl Mmio, bound: Bound, known: Known) -> Result<(), Error> {
    match close(regs, bound, known.gbpa_aborts) {
        Err(_) if known.closed => Ok(()),
        closed => closed,
    }
}

/// `fail_closed` on an SMMU whose GBPA.ABORT `init` read back set (`gbpa_aborts`), or
/// not known to be.
fn close(regs: &impl Mmio, bound: Bound, gbpa_aborts: bool) -> Result<(), Error> {
    if !gbpa_abort_in_effect(regs, bound, gbpa_aborts)? {
        return Err(Error::NoGlobalAbort);
    }
    disable(regs, bound)
}

/// Sets GBPA.ABORT (`set_gbpa_abort`) and says whether it is in effect. GBPA changes only
/// through an update (IHI 0070 6.3.14): an ABORT that `init` read back set (`gbpa_aborts`)
/// is still the value in effect when an update to set it again never completes, so the
/// SMMU may still be disabled safely. Without that, such a timeout is the error.
fn gbpa_abort_in_effect(regs: &impl Mmio, bound: Bound, gbpa_aborts: bool) -> Result<bool, Error> {
    match set_gbpa_abort(regs, bound) {
        Ok(aborts) => Ok(aborts),
        Err(_) if gbpa_aborts => Ok(true),
        Err(e) => Err(e),
    }
}

/// SMMU_GBPA.ABORT = 1: transactions abort while the SMMU is disabled. GBPA may be
/// written only while UPDATE is 0, the write takes effect when UPDATE clears again, and
/// its other fields (memory attribute overrides) are kept: read-modify-write (IHI 0070
/// 6.3.14). Returns whether ABORT reads back set (QEMU 7.2 has no GBPA: it reads as zero
/// and ignores writes).
fn set_gbpa_abort(regs: &impl Mmio, bound: Bound) -> Result<bool, Error> {
    let update = GBPA::UPDATE.mask << GBPA::UPDATE.shift;
    let abort = GBPA::ABORT.mask << GBPA::ABORT.shift;
    wait(bound, "SMMU_GBPA.UPDATE", || regs.read32(reg::GBPA) & update == 0)?;
    regs.write32(reg::GBPA, regs.read32(reg::GBPA) | abort | update);
    wait(bound, "SMMU_GBPA.UPDATE", || regs.read32(reg::GBPA) & update == 0)?;
    Ok(regs.read32(reg::GBPA) & abort != 0)
}

/// SMMU_CR0 = 0 (translation, queues and ATS checks off), waiting for SMMU_CR0ACK; a
/// field whose last Update is not complete keeps the value written (`write_cr0`), and is
/// waited for too.
fn disable(regs: &impl Mmio, bound: Bound) -> Result<(), Error> {
    let off = write_cr0(regs, 0);
    wait(bound, "SMMU_CR0ACK (disable)", || regs.read32(reg::CR0ACK) == off)?;
    if off & CR0::SMMUEN::SET.value != 0 {
        // Translation's enable was still in its Update: it stays, and the SMMU is enabled.
        return Err(Error::Timeout("SMMU_CR0ACK (translation's enable, not to be undone before it completes)"));
    }
    Ok(())
}

/// SMMU_CR0 := `want`, but for each field whose last Update is not complete (SMMU_CR0 and
/// SMMU_CR0ACK differ there): it keeps the value written, since changing a field again
/// before its Update completes is CONSTRAINED UNPREDICTABLE, the Update then completing
/// with either value or ceasing (IHI 0070 6.3.9, "Additional information"); a write of the
/// same value is permitted. What a failure path after an acknowledgement that never came
/// writes (an enable of a queue or of translation, or the disable itself). Returns the
/// value written, which CR0ACK reads once every field is Updated.
fn write_cr0(regs: &impl Mmio, want: u32) -> u32 {
    let written = regs.read32(reg::CR0);
    let pending = written ^ regs.read32(reg::CR0ACK);
    let value = (want & !pending) | (written & pending);
    regs.write32(reg::CR0, value);
    value
}

/// SMMU_CR0 = SMMUEN and `keep` (ATSCHK or nothing: queues off), waiting for
/// SMMU_CR0ACK: translation through the stream table `init` wrote, whose every entry
/// aborts. What an `init` that fails after disabling an SMMU on which GBPA.ABORT does not
/// take leaves, since disabled it would pass every transaction.
fn enable_on_aborting_table(regs: &impl Mmio, bound: Bound, keep: u32) -> Result<(), Error> {
    let smmuen = write_cr0(regs, keep | CR0::SMMUEN::SET.value);
    wait(bound, "SMMU_CR0ACK (enable on the aborting table)", || regs.read32(reg::CR0ACK) == smmuen)
}

/// Write `layout` (from `stream_table_layout`, so it fits `table`) with every stream
/// aborting, for `init`: a linear table's STEs aborting, a two-level table's level-1
/// descriptors invalid (its streams terminated, recorded as C_BAD_STREAMID, until a
/// stream in the range is first configured).
fn write_aborting_stream_table(table: &DmaRegion, layout: &StreamTable) {
    match *layout {
        StreamTable::Linear { .. } => abort_every_ste(table, layout),
        StreamTable::TwoLevel { l1_entries, .. } => {
            for i in 0..l1_entries {
                // SAFETY: the level-1 table fits (`stream_table_layout`). Span = 0: invalid.
                unsafe { table.va.cast::<u64>().add(i).write_volatile(0) };
            }
        }
    }
}

/// Make every STE of `layout` abort where it is, the table in use by the SMMU: each
/// STE's first word (V = 1, Config = abort) is written first, so that every mixture the
/// SMMU may read meanwhile aborts. A two-level table's level-1 descriptors are left as
/// they are and every level-2 table they point at is rewritten, so a stream reads an
/// aborting STE, not a missing one.
fn abort_every_ste(table: &DmaRegion, layout: &StreamTable) {
    let abort_all = |va: NonNull<u8>, entries: usize| {
        for sid in 0..entries {
            // SAFETY: the caller's table of `entries` STEs at `va` lies inside `table`.
            unsafe { write_ste_raw(va, sid, &Ste::abort()) };
        }
    };
    match *layout {
        // Inside the region (`stream_table_layout`).
        StreamTable::Linear { log2 } => abort_all(table.va, 1 << log2),
        StreamTable::TwoLevel { l1_entries, .. } => {
            for i in 0..l1_entries {
                // SAFETY: the level-1 table fits (`stream_table_layout`).
                let desc = unsafe { table.va.cast::<u64>().add(i).read_volatile() };
                if STRTAB_L1_DESC_SPAN.get(desc) == 0 {
                    continue;
                }
                // The driver placed every level-2 table inside the region (`ste_ptr`).
                let off = ((desc & STRTAB_L1_DESC_L2PTR.mask()) - table.pa.0) as usize;
                // SAFETY: as above: `off` is a level-2 table's offset in the region.
                abort_all(unsafe { table.va.add(off) }, 1 << STRTAB_SPLIT);
            }
        }
    }
}

/// The command queue: producer index and the memory it writes.
#[derive(Debug)]
struct CommandQueue {
    base: NonNull<[u64; 2]>,
    ring: Ring,
    prod: u32,
    /// CMDQ_CONS as last read. The SMMU only moves it forward, so a stale copy only
    /// underestimates the room: the register is read again only when this says full.
    /// Each register access is an uncached device access (a trap into the emulator
    /// under QEMU), and an UNMAP is on a driver's per-request path.
    cons: u32,
    bound: Bound,
    /// Set once the SMMU reported service failure (SMMU_GERROR.SFM_ERR) or stopped
    /// answering (`timed_out`), with what `fail_closed` then gave: no command is
    /// queued again.
    failed: Option<Result<(), Error>>,
    /// Why `failed` is set: the SMMU stopped answering, rather than reporting SFM_ERR.
    unanswered: bool,
    /// The stream table and its layout (as `init` wrote it), for `fail` to make every
    /// stream abort in it.
    stream_table: DmaRegion,
    layout: StreamTable,
    /// GBPA.ABORT read back set by `init`.
    gbpa_aborts: bool,
    /// The SMMU has stage 2 (`Features::hyp`): an invalidation of everything includes
    /// the EL2 TLB entries.
    hyp: bool,
    /// `Stats::syncs` when a wait on the queue last timed out: a second timeout with the
    /// count unchanged had no sync complete in between. Kept off the hot path: a
    /// completed sync already counts itself, and nothing is reset there.
    timed_out_at: Option<u64>,
    /// Commands queued since the last CMD_SYNC, and how many the implementation allows
    /// (`errata::Errata::commands_per_sync`; `u32::MAX` for no limit).
    since_sync: u32,
    commands_per_sync: u32,
    /// Cleans each command to the PoC before the doorbell, for a non-coherent SMMU.
    maint: Maintenance,
    /// Invalidations `unmap_deferred` queued that `sync_deferred` has not confirmed.
    deferred: bool,
    /// A sync failed while there were: any of those invalidations may have been the
    /// command it failed on (rejected, or never reached), so none counts as confirmed by
    /// a later sync. The first such error, for `sync_deferred` to report.
    deferred_failed: Option<Error>,
    /// The last run of leaves the deferred unmaps removed, not yet sent: the next deferred
    /// unmap of the same domain may extend it (`tlbi::LeafInvalidation`). Sent before
    /// every CMD_SYNC (`sync_once`), so no sync confirms less than was removed before it,
    /// and before another domain's deferred unmap takes its place.
    open: Option<LeafInvalidation>,
    /// Fault injection (`Smmu::withhold_doorbell`): CMDQ_PROD is no longer written.
    #[cfg(feature = "fault-injection")]
    doorbell_withheld: bool,
}

/// SMMU_CMDQ_CONS.ERR values (IHI 0070 7.1).
const CERROR_NONE: u32 = 0;
const CERROR_ABT: u32 = 2;
const CERROR_ATC_INV_SYNC: u32 = 3;

impl CommandQueue {
    /// The queue in `mem`, empty (PROD == CONS == 0), as `init` sets it up.
    fn new(mem: &Memory, config: &Config, checked: &Checked, gbpa_aborts: bool) -> Self {
        CommandQueue {
            base: mem.cmdq.va.cast(),
            ring: Ring { log2: checked.cmdq_log2 },
            prod: 0,
            cons: 0,
            bound: config.bound,
            failed: None,
            unanswered: false,
            stream_table: mem.stream_table,
            layout: checked.strtab,
            gbpa_aborts,
            hyp: checked.features.hyp,
            timed_out_at: None,
            since_sync: 0,
            commands_per_sync: checked.commands_per_sync,
            maint: checked.maint,
            deferred: false,
            deferred_failed: None,
            open: None,
            #[cfg(feature = "fault-injection")]
            doorbell_withheld: false,
        }
    }

    /// Drop every cached configuration and TLB entry (CMD_CFGI_ALL, the TLBIs of every
    /// regime used) and wait for it (CMD_SYNC).
    fn invalidate_everything(&mut self, regs: &impl Mmio, stats: &mut Stats) -> Result<(), Error> {
        for cmd in self.everything() {
            self.push(regs, stats, cmd)?;
        }
        self.sync(regs, stats)
    }

    /// The commands that drop every cached configuration and TLB entry: CMD_CFGI_ALL,
    /// then the TLBIs of every regime used (EL2's only with stage 2), none if absent.
    fn everything(&self) -> impl Iterator<Item = Command> {
        [Some(Command::cfgi_all()), self.hyp.then(Command::tlbi_el2_all), Some(Command::tlbi_nsnh_all())]
            .into_iter()
            .flatten()
    }

    fn write_slot(&mut self, cmd: Command) {
        let slot = self.ring.slot(self.prod) as usize;
        // SAFETY: `slot < entries`, and the queue region holds `entries` commands.
        unsafe { self.base.add(slot).write_volatile(cmd.0) };
        // The doorbell (CMDQ_PROD) is what tells the SMMU to read it: the command is at
        // the PoC before then.
        // SAFETY: as above.
        self.maint.clean(unsafe { self.base.add(slot) }, CMD_SIZE);
    }

    /// Add a command, waiting (bounded) for room. The doorbell is not rung, unless the
    /// implementation needs a CMD_SYNC first (see `errata`).
    fn push(&mut self, regs: &impl Mmio, stats: &mut Stats, cmd: Command) -> Result<(), Error> {
        if self.failed.is_some() {
            return Err(Error::ServiceFailure);
        }
        let is_sync = cmd.opcode() == Opcode::Sync as u8;
        if !is_sync && self.since_sync >= self.commands_per_sync {
            self.sync(regs, stats)?;
        }
        let mut deadline = None;
        while self.ring.is_full(self.prod, self.cons) {
            self.cons = self.ring.index(regs.read32(reg::CMDQ_CONS));
            if !self.ring.is_full(self.prod, self.cons) {
                break;
            }
            // Let the SMMU see what is already there, then wait for it to make room.
            self.doorbell(regs);
            self.check_error(regs, stats)?;
            // The clock is read only once the queue was found full.
            if deadline.get_or_insert_with(|| self.bound.start()).passed() {
                return Err(self.timed_out(regs, stats, "command queue space"));
            }
        }
        self.write_slot(cmd);
        self.prod = self.ring.next(self.prod);
        stats.commands += 1;
        self.since_sync = if is_sync { 0 } else { self.since_sync + 1 };
        Ok(())
    }

    fn doorbell(&self, regs: &impl Mmio) {
        #[cfg(feature = "fault-injection")]
        if self.doorbell_withheld {
            return;
        }
        // Commands must be in memory before the SMMU learns of them.
        barrier::wmb();
        regs.write32(reg::CMDQ_PROD, self.prod);
    }

    /// If the SMMU stopped at a command (SMMU_GERROR.CMDQ_ERR), deal with it by its
    /// CERROR and acknowledge, so the queue goes on (IHI 0070 7.1, Linux's
    /// `arm_smmu_cmdq_skip_err`):
    /// - CERROR_ILL: the command is malformed and will never execute; it is replaced by a
    ///   CMD_SYNC and reported as `CommandError`.
    /// - CERROR_ABT: fetching a valid command aborted; it is left in place, so the SMMU
    ///   fetches it again once acknowledged: a TLBI or CFGI is never dropped silently.
    /// - CERROR_ATC_INV_SYNC: an ATC invalidation did not complete before its CMD_SYNC;
    ///   CONS is at the CMD_SYNC, which is retried the same way.
    /// - CERROR_NONE: CMDQ_ERR is active but no error is recorded against the command at
    ///   CONS; it is left in place and acknowledged, as Linux does. Replacing it would
    ///   drop a valid TLBI or CFGI with no one told.
    ///
    /// A command that keeps failing to be fetched ends, like any wait, at the poll bound.
    fn check_error(&mut self, regs: &impl Mmio, stats: &mut Stats) -> Result<(), Error> {
        let active = regs.read32(reg::GERROR) ^ regs.read32(reg::GERRORN);
        if active & (GERROR::SFM_ERR.mask << GERROR::SFM_ERR.shift) != 0 {
            // The SMMU will not consume this command or any other: stop waiting for it.
            self.fail(regs);
            return Err(Error::ServiceFailure);
        }
        if active & GERROR::CMDQ_ERR.mask == 0 {
            return Ok(());
        }
        let cons = LocalRegisterCopy::<u32, CMDQ_CONS::Register>::new(regs.read32(reg::CMDQ_CONS));
        let code = cons.read(CMDQ_CONS::ERR);
        let slot = self.ring.slot(cons.read(CMDQ_CONS::RD)) as usize;
        // SAFETY: `slot < entries`; the SMMU has stopped and is not reading the queue.
        let bad = unsafe { self.base.add(slot).read_volatile() };
        if code == CERROR_NONE {
            regs.write32(reg::GERRORN, regs.read32(reg::GERRORN) ^ GERROR::CMDQ_ERR.mask);
            stats.global_errors += 1;
            return Ok(());
        }
        let retry = matches!(code, CERROR_ABT | CERROR_ATC_INV_SYNC);
        if !retry {
            // SAFETY: as above.
            unsafe { self.base.add(slot).write_volatile(Command::sync().0) };
            // The SMMU fetches it again once the error is acknowledged.
            // SAFETY: as above.
            self.maint.clean(unsafe { self.base.add(slot) }, CMD_SIZE);
            barrier::wmb();
        }
        // Acknowledge by making GERRORN.CMDQ_ERR equal GERROR.CMDQ_ERR.
        regs.write32(reg::GERRORN, regs.read32(reg::GERRORN) ^ GERROR::CMDQ_ERR.mask);
        stats.global_errors += 1;
        if retry {
            stats.command_retries += 1;
            return Ok(());
        }
        stats.command_errors += 1;
        Err(Error::CommandError { code, opcode: Command(bad).opcode() })
    }

    /// The SMMU is in service failure mode: it may no longer translate, invalidate or
    /// report as configured (IHI 0070 12.3), so a confirmation from it would mean nothing;
    /// or it no longer answers (`timed_out`), so none will come.
    /// Make every transaction abort (`fail_closed`: GBPA.ABORT, then SMMUEN = 0 with
    /// CR0ACK waited for), once, and refuse every later command.
    ///
    /// The stream table first, every entry aborting: where the SMMU cannot be disabled
    /// safely (no GBPA, QEMU 7.2's; or an acknowledgement that never comes), it stays
    /// enabled, and every STE it fetches from then on aborts. Memory only: the queue that
    /// would invalidate the STEs it has cached is what failed.
    ///
    /// Where that leaves the SMMU translating (no GBPA, so it is not disabled; or a
    /// disable whose CR0ACK never comes, so it may be either: IHI 0070 6.3.9 says a
    /// change of SMMUEN is complete when CR0ACK shows it, and nothing before that), the
    /// aborting table covers only what it fetches from now on: what it cached it may go
    /// on using. Then one last invalidation of everything cached (`last_invalidation`):
    /// a slow SMMU that completes it uses aborting STEs alone from then on (with
    /// GBPA.ABORT, whichever way the disable went), and `failed` says every transaction
    /// aborts; otherwise it keeps the error that says why DMA is not known to be stopped.
    fn fail(&mut self, regs: &impl Mmio) {
        if self.failed.is_none() {
            abort_every_ste(&self.stream_table, &self.layout);
            self.maint.clean(self.stream_table.va, self.stream_table.len);
            barrier::wmb();
            let closed = close(regs, self.bound, self.gbpa_aborts);
            // Set before the last invalidation: nothing it does may fail the SMMU again.
            self.failed = Some(closed);
            if closed.is_err() && self.last_invalidation(regs).is_ok() {
                self.failed = Some(Ok(()));
            }
        }
    }

    /// `invalidate_everything` once the queue has failed: its commands and a CMD_SYNC
    /// written where there is room (no wait for room: the queue may be what failed; no
    /// command error handled: one ends it), the doorbell rung, and the sync waited for
    /// within the bound. `Ok` only if the SMMU consumed the sync, so every command
    /// before it completed (IHI 0070 4.7.3).
    fn last_invalidation(&mut self, regs: &impl Mmio) -> Result<(), Error> {
        self.cons = self.ring.index(regs.read32(reg::CMDQ_CONS));
        for cmd in self.everything().chain([Command::sync()]) {
            if self.ring.is_full(self.prod, self.cons) {
                return Err(Error::Timeout("command queue space (last invalidation)"));
            }
            self.write_slot(cmd);
            self.prod = self.ring.next(self.prod);
        }
        let target = self.sync_target();
        self.doorbell(regs);
        let ring = self.ring;
        wait(self.bound, "CMD_SYNC completion (last invalidation)", || {
            ring.consumed(target, ring.index(regs.read32(reg::CMDQ_CONS)))
        })
    }

    /// The index of the command queued last (a CMD_SYNC to wait for), as CMDQ_CONS
    /// reads once the SMMU consumed it.
    fn sync_target(&self) -> u32 {
        if self.ring.slot(self.prod) == 0 && self.ring.wrap(self.prod) == 0 {
            // prod wrapped to 0 with wrap 0: the sync sat in the last slot of wrap 1.
            (self.ring.entries() << 1) - 1
        } else {
            self.ring.index(self.prod.wrapping_sub(1))
        }
    }

    /// A wait on the queue (a CMD_SYNC's completion, room in the queue) passed its bound:
    /// counted, and if the last one did too with no CMD_SYNC completed since, the SMMU no
    /// longer answers, and nothing it was asked to invalidate is known gone: failed
    /// closed, as for SFM_ERR. One timeout is survivable (the domain is marked stale and
    /// invalidated by ASID before its next use); a second in a row means no invalidation
    /// can be confirmed at all. (Linux's arm-smmu-v3 only logs "CMD_SYNC timeout" and
    /// goes on; see the README.) The caller still gets the `Timeout`; every later
    /// operation `ServiceFailure`.
    #[cold]
    fn timed_out(&mut self, regs: &impl Mmio, stats: &mut Stats, what: &'static str) -> Error {
        stats.timeouts += 1;
        let again = self.timed_out_at == Some(stats.syncs);
        self.timed_out_at = Some(stats.syncs);
        if again && self.failed.is_none() {
            self.unanswered = true;
            self.fail(regs);
        }
        Error::Timeout(what)
    }

    /// Queue the commands of the deferred unmaps' open run, if any. Should one not be
    /// queued, one TLBI by ASID (or VMID) of its domain covers it instead, as in an unmap;
    /// should that fail too, the deferred unmaps count as failed (`deferred_failed`), so
    /// `sync_deferred` reports it and leaves their domains stale.
    fn send_open_run(&mut self, regs: &impl Mmio, stats: &mut Stats) {
        let Some(mut run) = self.open.take() else { return };
        let mut failed = false;
        run.finish(&mut |cmd| failed = failed || self.push(regs, stats, cmd).is_err());
        if failed {
            if let Err(e) = self.push(regs, stats, run.tag().invalidate_all()) {
                self.deferred_failed.get_or_insert(e);
            }
        }
    }

    /// Queue CMD_SYNC, ring the doorbell and wait until the SMMU has consumed it, which
    /// it does only once every earlier command has completed (IHI 0070 4.7.3). A failed
    /// sync while deferred invalidations are queued marks them failed: the error (a
    /// rejected command replaced by a CMD_SYNC, a timeout) may be theirs, and it is
    /// reported to this caller, not to theirs.
    #[inline]
    fn sync(&mut self, regs: &impl Mmio, stats: &mut Stats) -> Result<(), Error> {
        // One test of one flag on a plain unmap's path, as before the open run existed.
        if self.deferred {
            return self.sync_with_deferred(regs, stats);
        }
        self.sync_once(regs, stats)
    }

    /// `sync` while deferred invalidations are queued: their open run goes first, and a
    /// failure counts against them.
    fn sync_with_deferred(&mut self, regs: &impl Mmio, stats: &mut Stats) -> Result<(), Error> {
        self.send_open_run(regs, stats);
        let r = self.sync_once(regs, stats);
        if let Err(e) = r {
            self.deferred_failed.get_or_insert(e);
        }
        r
    }

    fn sync_once(&mut self, regs: &impl Mmio, stats: &mut Stats) -> Result<(), Error> {
        self.push(regs, stats, Command::sync())?;
        let target = self.sync_target();
        self.doorbell(regs);
        let mut first_error = None;
        // Started lazily: a sync that completes at the first read (the usual case, and the
        // one on every UNMAP's path) reads no clock.
        let mut deadline = None;
        loop {
            // CONS first: the SMMU stops at a command in error (CONS stays on it until
            // GERROR.CMDQ_ERR is acknowledged), so CONS past our sync means no error among
            // the commands before it, and the error registers need not be read: one
            // register read for a sync that completed.
            self.cons = self.ring.index(regs.read32(reg::CMDQ_CONS));
            if self.ring.consumed(target, self.cons) {
                break;
            }
            match self.check_error(regs, stats) {
                // Nothing more will be consumed: no use waiting.
                Err(Error::ServiceFailure) => return Err(Error::ServiceFailure),
                // Keep waiting for our sync: the queue goes on after the bad command.
                Err(e) => {
                    first_error.get_or_insert(e);
                }
                Ok(()) => {}
            }
            if deadline.get_or_insert_with(|| self.bound.start()).passed() {
                return Err(self.timed_out(regs, stats, "CMD_SYNC completion"));
            }
        }
        stats.syncs += 1;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Writes one STE or CD word by word, invalidating through the command queue.
struct Target<'a, M: Mmio, const N: usize> {
    entry: NonNull<u64>,
    regs: &'a M,
    cmdq: &'a mut CommandQueue,
    stats: &'a mut Stats,
    invalidate: &'a [Command],
    maint: Maintenance,
}

impl<M: Mmio, const N: usize> EntryTarget<N> for Target<'_, M, N> {
    fn read(&self, i: usize) -> u64 {
        // SAFETY: `entry` points at an N-word entry in driver-owned memory.
        unsafe { self.entry.add(i).read_volatile() }
    }
    fn write(&mut self, i: usize, value: u64) {
        // Earlier words of this update must be visible before this one.
        barrier::dma_wmb();
        // SAFETY: as for `read`; an aligned 64-bit store is single-copy atomic.
        unsafe { self.entry.add(i).write_volatile(value) };
        // At the PoC before the CFGI and CMD_SYNC of `invalidate` make the SMMU read it.
        // SAFETY: as above.
        self.maint.clean(unsafe { self.entry.add(i) }, 8);
    }
    fn invalidate(&mut self) -> Result<(), Error> {
        for cmd in self.invalidate {
            self.cmdq.push(self.regs, self.stats, *cmd)?;
        }
        self.cmdq.sync(self.regs, self.stats)
    }
}

impl<M: Mmio> Smmu<M> {
    /// Bring the SMMU up in default-deny order (IHI 0070 6.3.9.6 and Linux's
    /// `arm_smmu_device_reset`): incoming transactions abort while disabled (GBPA), the
    /// stream table is written with every entry aborting, queues are set up, caches are
    /// invalidated, and only then is translation enabled.
    ///
    /// On any error, a refused probe included, the SMMU is first left failing closed
    /// (`fail_closed`, best effort): the caller gets the error, and no device's traffic
    /// passes in the meantime. An error after the SMMU was disabled, on an SMMU whose
    /// GBPA.ABORT does not take, leaves it enabled on its aborting stream table instead.
    ///
    /// # Safety
    /// The regions in `mem` must be memory that only this driver uses from now on, seen
    /// by the SMMU at their `pa`, and `regs` must be the only access to the registers.
    pub unsafe fn init(regs: M, mem: Memory, config: Config) -> Result<Self, Error> {
        // Firmware may have left the SMMU disabled with GBPA in bypass, or running its own
        // tables: neither may stay when this driver does not take over.
        let checked = match Self::check(&regs, &mem, &config) {
            Ok(c) => c,
            Err(e) => {
                // Nothing written yet, and no memory to put a table in: GBPA.ABORT alone.
                let _ = fail_closed(&regs, config.bound);
                return Err(e);
            }
        };
        // SAFETY: `init`'s contract, passed on.
        let reset = match unsafe { Self::reset(&regs, &mem, &config, &checked) } {
            Ok(r) => r,
            Err(e) => {
                let _ = fail_onto_aborting_table(&regs, &mem, &config, &checked, false);
                return Err(e);
            }
        };
        let mut smmu = Smmu {
            regs,
            features: checked.features,
            config,
            mem,
            strtab: checked.strtab,
            cmdq: CommandQueue::new(&mem, &config, &checked, reset.gbpa_aborts),
            eventq_ring: Ring { log2: checked.eventq_log2 },
            eventq_cons: 0,
            pool: reset.pool,
            domains: [const { None }; MAX_DOMAINS],
            max_domains: checked.max_domains,
            deferred_domains: 0,
            streams: [None; MAX_STREAMS],
            stats: Stats::default(),
            gbpa_aborts: reset.gbpa_aborts,
            coherency: checked.coherency,
            maint: checked.maint,
            reject_next_invalidation: RejectNext::default(),
        };
        if let Err(e) = smmu.start(reset.ats) {
            let _ = fail_onto_aborting_table(&smmu.regs, &mem, &config, &checked, smmu.gbpa_aborts);
            return Err(e);
        }
        Ok(smmu)
    }

    /// What `init` needs to know before it writes anything: the probe, and the memory
    /// checked against it. Reads the ID registers only: should it refuse, the SMMU is
    /// still as it was.
    fn check(regs: &M, mem: &Memory, config: &Config) -> Result<Checked, Error> {
        let id = IdRegs {
            idr: [
                regs.read32(reg::IDR0),
                regs.read32(reg::IDR1),
                regs.read32(reg::IDR2),
                regs.read32(reg::IDR3),
                regs.read32(reg::IDR4),
                regs.read32(reg::IDR5),
            ],
            iidr: regs.read32(reg::IIDR),
            aidr: regs.read32(reg::AIDR),
        };
        let regions = [mem.stream_table, mem.cmdq, mem.eventq, mem.cds, mem.tables];
        let pa_top = regions.iter().map(|r| r.pa.0 + r.len as u64).max().unwrap_or(0);
        let pa_bits = 64 - pa_top.saturating_sub(1).leading_zeros();
        let max_domains = (mem.cds.len / CD_SIZE).min(MAX_DOMAINS);
        let needs = Needs {
            sid_bits: config.sid_bits,
            contexts: max_domains,
            pa_bits,
            ias_bits: config.ias_bits,
            cache_maintenance: config.cache.is_some(),
        };
        let features = probe::probe(&id, &needs)?;
        // Coherent only if both the SMMU (COHACC) and the platform say so.
        let coherency = Coherency::of(features.coherent_access, config.platform_coherent);
        if coherency == Coherency::NonCoherent && config.cache.is_none() {
            return Err(Error::Unsupported(Unsupported::NotCoherent));
        }
        let maint = Maintenance::new(coherency, config.cache);

        // The memory, checked before any register is written: should it be refused, the
        // SMMU is still as it was. (Disabled first, an SMMU without GBPA, QEMU 7.2's, would
        // pass every transaction, and `fail_closed` could not close it again.) Written only
        // once the SMMU is disabled: a warm re-init may find it running on this memory.
        let strtab = Self::stream_table_layout(mem, &features, config.sid_bits)?;
        let cmdq_log2 = queue_log2(&mem.cmdq, CMD_SIZE, features.cmdq_log2).ok_or(Error::BadMemory("command queue"))?;
        let eventq_log2 =
            queue_log2(&mem.eventq, EVT_SIZE, features.eventq_log2).ok_or(Error::BadMemory("event queue"))?;
        check_queue_alignment(&mem.cmdq, CMD_SIZE, cmdq_log2, "command queue")?;
        check_queue_alignment(&mem.eventq, EVT_SIZE, eventq_log2, "event queue")?;
        // STE.S1ContextPtr keeps address bits [51:6] only.
        if !mem.cds.pa.is_aligned(64) {
            return Err(Error::Misaligned { what: "context descriptors", align: 64 });
        }
        if !TablePool::usable(&mem.tables) {
            return Err(Error::BadMemory("page-table pool"));
        }
        Ok(Checked {
            idr0: id.idr[0],
            features,
            coherency,
            maint,
            strtab,
            cmdq_log2,
            eventq_log2,
            max_domains,
            commands_per_sync: errata::for_iidr(id.iidr).commands_per_sync.unwrap_or(u32::MAX),
        })
    }

    /// `init`'s first part, up to the queues' registers: abort and disable, the aborting
    /// stream table, the queues, the page-table pool and the CDs. On an error, `init`
    /// puts the aborting table in itself (`fail_onto_aborting_table`): the memory is
    /// checked, and the error may come before the table is in place.
    ///
    /// # Safety
    /// As for `init`.
    unsafe fn reset(regs: &M, mem: &Memory, config: &Config, checked: &Checked) -> Result<Reset, Error> {
        let Checked { idr0, coherency, maint, cmdq_log2, eventq_log2, .. } = *checked;

        // 1. Abort incoming transactions while the SMMU is (re)configured, then disable.
        // Some implementations lack GBPA (QEMU 7.2 reads it as zero and ignores writes):
        // then a disabled SMMU lets DMA through, and only the aborting stream table below
        // closes that window. Record whether the abort took, for the system to report.
        let poll = config.bound;
        let gbpa_aborts = set_gbpa_abort(regs, poll)?;
        regs.write32(reg::IRQ_CTRL, 0);
        wait(poll, "SMMU_IRQ_CTRLACK", || regs.read32(reg::IRQ_CTRLACK) == 0)?;
        // The MSI address registers reset UNKNOWN, and an SMMU with MSIs writes to a
        // non-zero address when the interrupt fires: clear them while interrupts are off
        // (this driver uses wired interrupts) (IHI 0070 6.3.18, 6.3.31, 6.3.34).
        regs.write64(reg::GERROR_IRQ_CFG0, 0);
        regs.write64(reg::EVENTQ_IRQ_CFG0, 0);
        let idr0 = LocalRegisterCopy::<u32, IDR0::Register>::new(idr0);
        if idr0.read(IDR0::PRI) == 1 {
            regs.write64(reg::PRIQ_IRQ_CFG0, 0);
        }
        disable(regs, poll)?;
        acknowledge_stale_errors(regs);

        // 2. Table and queue accesses, and what CR2 controls.
        set_access_attributes(regs, coherency);

        // 3. The stream table, every entry aborting.
        install_aborting_stream_table(regs, mem, config, checked);

        // 4. The queues (checked above).
        set_queue(regs, QueueRegs::COMMAND, &mem.cmdq, cmdq_log2);
        set_queue(regs, QueueRegs::EVENT, &mem.eventq, eventq_log2);

        // SAFETY: `init`'s contract: the table pool is ours alone.
        let mut pool = unsafe { TablePool::new(mem.tables) }.ok_or(Error::BadMemory("page-table pool"))?;
        pool.set_maintenance(maint);
        // Its free-list links, written before it knew of the maintenance.
        maint.clean(mem.tables.va, mem.tables.len);
        for i in 0..mem.cds.len / 8 {
            // SAFETY: inside the CD region; every CD starts invalid.
            unsafe { mem.cds.va.cast::<u64>().add(i).write_volatile(0) };
        }
        maint.clean(mem.cds.va, mem.cds.len);
        // The SMMU writes event records straight to the PoC: no dirty line of this CPU's
        // may be written back over one later (the driver never writes the queue again).
        maint.clean(mem.eventq.va, mem.eventq.len);
        Ok(Reset { ats: idr0.read(IDR0::ATS) == 1, pool, gbpa_aborts })
    }

    /// `init`'s second part: the queues on, caches invalidated, interrupts, translation.
    fn start(&mut self, ats: bool) -> Result<(), Error> {
        // 5. Command queue on; drop anything cached from before (config and TLBs).
        self.enable(CR0::CMDQEN::SET.value)?;
        self.cmdq.invalidate_everything(&self.regs, &mut self.stats)?;

        // 6. Event queue, interrupts, and finally translation.
        self.enable(CR0::EVENTQEN::SET.value)?;
        let poll = self.config.bound;
        if self.config.interrupts {
            self.regs.write32(reg::IRQ_CTRL, (IRQ_CTRL::GERROR_IRQEN::SET + IRQ_CTRL::EVENTQ_IRQEN::SET).value);
            let want = self.regs.read32(reg::IRQ_CTRL);
            let regs = &self.regs;
            wait(poll, "SMMU_IRQ_CTRLACK", || regs.read32(reg::IRQ_CTRLACK) == want)?;
        }
        // With ATS, SMMU_CR0.ATSCHK resets to 0, and then ATS-translated PCIe traffic
        // passes with no stream table or TLB lookup, whatever STE.EATS says: have the
        // SMMU check it against the STE before translation is on (IHI 0070 6.3.9.3).
        if ats {
            self.enable(CR0::ATSCHK::SET.value)?;
        }
        self.enable(CR0::SMMUEN::SET.value)
    }

    fn enable(&mut self, bits: u32) -> Result<(), Error> {
        let cr0 = write_cr0(&self.regs, self.regs.read32(reg::CR0) | bits);
        let regs = &self.regs;
        wait(self.config.bound, "SMMU_CR0ACK", || regs.read32(reg::CR0ACK) == cr0)
    }

    /// The stream table `mem` can hold for `sid_bits`, linear if it fits, or why none.
    /// Writes nothing.
    fn stream_table_layout(mem: &Memory, features: &Features, sid_bits: u32) -> Result<StreamTable, Error> {
        let st = &mem.stream_table;
        let linear_bytes = STE_SIZE.checked_shl(sid_bits).unwrap_or(usize::MAX);
        if sid_bits < 32 && linear_bytes <= st.len {
            // The SMMU aligns STRTAB_BASE to the table's size, ignoring the bits below
            // (IHI 0070 6.3.23): a table elsewhere would be read from the wrong place.
            let align = (linear_bytes as u64).max(64);
            if !st.pa.is_aligned(align) {
                return Err(Error::Misaligned { what: "linear stream table", align });
            }
            return Ok(StreamTable::Linear { log2: sid_bits });
        }
        if !features.two_level_strtab || sid_bits <= STRTAB_SPLIT {
            return Err(Error::BadMemory("stream table"));
        }
        let l1_entries = 1usize << (sid_bits - STRTAB_SPLIT);
        let l2_bytes = STE_SIZE << STRTAB_SPLIT;
        // The level-1 table is aligned to its size like a linear one, and each level-2
        // table to its own size (L1STD.L2Ptr ignores the bits below, IHI 0070 5.1): the
        // level-2 tables are placed at multiples of their size from the region's start,
        // so the region must be aligned to the larger of the two.
        let align = ((l1_entries * 8) as u64).max(l2_bytes as u64).max(64);
        if !st.pa.is_aligned(align) {
            return Err(Error::Misaligned { what: "two-level stream table", align });
        }
        // Level-2 tables are aligned to their size.
        let l2_base = (l1_entries * 8).div_ceil(l2_bytes) * l2_bytes;
        if l2_base >= st.len {
            return Err(Error::BadMemory("stream table"));
        }
        Ok(StreamTable::TwoLevel { l1_entries, l2_base, l2_slots: (st.len - l2_base) / l2_bytes, l2_used: 0 })
    }

    /// Whether the SMMU's accesses snoop this CPU's caches (SMMU_IDR0.COHACC and the
    /// platform's word together), which decides the driver's cache maintenance.
    pub fn coherency(&self) -> Coherency {
        self.coherency
    }

    /// The memory type devices' buffers are mapped with, as their coherency calls for:
    /// write-back inner shareable for devices that snoop the CPUs' caches, Normal
    /// Non-cacheable for those that do not (their drivers clean and invalidate to the
    /// PoC, and their accesses must then go there, not to a cache), as Linux maps with
    /// or without IOMMU_CACHE (`dma_info_to_prot`).
    pub fn dma_memory(&self) -> MemType {
        if self.config.devices_coherent {
            MemType::Normal
        } else {
            MemType::NormalNonCacheable
        }
    }

    /// What the SMMU reported at probe.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// True if SMMU_GBPA.ABORT took effect: were the SMMU disabled (by a reset or a
    /// later `init`), incoming transactions would abort rather than bypass.
    pub fn gbpa_aborts(&self) -> bool {
        self.gbpa_aborts
    }

    /// What this driver has established, for a caller that may have to fail the SMMU
    /// closed again without it (`fail_closed_knowing`).
    pub fn known(&self) -> Known {
        Known { gbpa_aborts: self.gbpa_aborts, closed: self.failure() == Some(Ok(())) }
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Records the event queue holds (the size `init` chose).
    pub fn eventq_entries(&self) -> u32 {
        self.eventq_ring.entries()
    }

    /// The memory the SMMU itself uses; no device may be given any of it.
    pub fn own_memory(&self) -> [DmaRegion; 5] {
        let m = &self.mem;
        [m.stream_table, m.cmdq, m.eventq, m.cds, m.tables]
    }

    /// Free pages in the page-table pool.
    pub fn free_table_pages(&self) -> usize {
        self.pool.free_pages()
    }

    /// The STE slot for `sid`, installing its level-2 table (all aborting) if needed.
    fn ste_ptr(&mut self, sid: StreamId) -> Result<NonNull<u64>, Error> {
        if self.config.sid_bits < 32 && sid.0 >> self.config.sid_bits != 0 {
            return Err(Error::StreamOutOfRange(sid));
        }
        let st = self.mem.stream_table;
        match &mut self.strtab {
            StreamTable::Linear { .. } => {
                // SAFETY: `sid` is in range, so its STE lies inside the linear table.
                Ok(unsafe { st.va.cast::<u64>().add(sid.0 as usize * STE_WORDS) })
            }
            StreamTable::TwoLevel { l1_entries, l2_base, l2_slots, l2_used } => {
                let l1 = (sid.0 >> STRTAB_SPLIT) as usize;
                if l1 >= *l1_entries {
                    return Err(Error::StreamOutOfRange(sid));
                }
                // SAFETY: `l1 < l1_entries`, inside the level-1 table.
                let desc_ptr = unsafe { st.va.cast::<u64>().add(l1) };
                // SAFETY: as above.
                let desc = unsafe { desc_ptr.read_volatile() };
                let l2_off = if STRTAB_L1_DESC_SPAN.get(desc) == 0 {
                    if *l2_used == *l2_slots {
                        return Err(Error::StreamTableFull);
                    }
                    let off = *l2_base + *l2_used * (STE_SIZE << STRTAB_SPLIT);
                    *l2_used += 1;
                    for i in 0..1usize << STRTAB_SPLIT {
                        // SAFETY: the level-2 table at `off` lies inside the region.
                        unsafe { write_ste_raw(st.va.add(off), i, &Ste::abort()) };
                    }
                    // SAFETY: as above.
                    self.maint.clean(unsafe { st.va.add(off) }, STE_SIZE << STRTAB_SPLIT);
                    // The aborting entries must be visible before the descriptor is.
                    barrier::dma_wmb();
                    // SAFETY: as above.
                    unsafe { desc_ptr.write_volatile(l1_desc(PhysAddr(st.pa.0 + off as u64), STRTAB_SPLIT)) };
                    self.maint.clean(desc_ptr, 8);
                    // The SMMU may have cached the invalid descriptor (a C_BAD_STREAMID
                    // lookup): a non-leaf CFGI_STE drops it, and the level-2 table is in
                    // use only once the sync completes (IHI 0070 4.3.1).
                    self.cmdq.push(&self.regs, &mut self.stats, Command::cfgi_ste(sid, false))?;
                    self.cmdq.sync(&self.regs, &mut self.stats)?;
                    off
                } else {
                    ((desc & STRTAB_L1_DESC_L2PTR.mask()) - st.pa.0) as usize
                };
                let index = sid.0 as usize & ((1 << STRTAB_SPLIT) - 1);
                // SAFETY: inside the level-2 table.
                Ok(unsafe { st.va.add(l2_off).cast::<u64>().add(index * STE_WORDS) })
            }
        }
    }

    /// Make sure `sid`'s traffic is aborted silently (rather than recorded as
    /// C_BAD_STREAMID) by giving it an aborting STE now. Attach does this too.
    pub fn prepare_stream(&mut self, sid: StreamId) -> Result<(), Error> {
        self.ste_ptr(sid).map(|_| ())
    }

    /// The STE the SMMU would now use for `sid`, if the table covers it.
    pub fn ste(&mut self, sid: StreamId) -> Result<Ste, Error> {
        let p = self.ste_ptr(sid)?;
        let mut ste = Ste::default();
        for (i, w) in ste.0.iter_mut().enumerate() {
            // SAFETY: an STE slot inside the stream table.
            *w = unsafe { p.add(i).read_volatile() };
        }
        Ok(ste)
    }

    fn write_ste(&mut self, sid: StreamId, new: &Ste) -> Result<(), Error> {
        // After a failure every STE already aborts in memory (`CommandQueue::fail`), so an
        // update to abort would need no command and look confirmed: nothing is, any more.
        self.check_usable()?;
        let entry = self.ste_ptr(sid)?;
        // The STE may point at a CD: drop cached copies of both.
        let invalidate = [Command::cfgi_ste(sid, true), Command::cfgi_cd_all(sid)];
        let mut target: Target<'_, M, STE_WORDS> = Target {
            entry,
            regs: &self.regs,
            cmdq: &mut self.cmdq,
            stats: &mut self.stats,
            invalidate: &invalidate,
            maint: self.maint,
        };
        entry::update::<SteKind, STE_WORDS>(&mut target, &new.0).map(|_| ())
    }

    /// Create an empty stage-2 domain of `ipa_bits` input bits with its own VMID: stage 1
    /// bypassed, the device's addresses (a VM's guest-physical ones) translated by stage-2
    /// tables, as a hypervisor's SMMU driver gives a VM's device. Its input size is its
    /// own (what the VM's guest-physical memory needs), not `Config::ias_bits`. Refused
    /// (`Unsupported`) on an SMMU without stage 2 (SMMU_IDR0.S2P = 0), or when `ipa_bits`
    /// is wider than its output size or needs a level-0 start it does not allow
    /// (`probe::stage2_start_level`); `TooManyDomains` when its slots, or its VMIDs, are
    /// used up. The VMID is the domain's slot + 1, so no two domains share one (one VMID
    /// tags one set of tables) and none is 0.
    pub fn create_stage2_domain(&mut self, ipa_bits: u32) -> Result<DomainId, Error> {
        self.check_usable()?;
        if !self.features.stage2 {
            return Err(Error::Unsupported(Unsupported::NoStage2));
        }
        let (ias, oas) = (ipa_bits, self.features.oas_bits);
        let start = probe::stage2_start_level(ias, oas)?;
        let index = (0..self.max_domains).find(|&i| self.domains[i].is_none()).ok_or(Error::TooManyDomains)?;
        let vmid = index as u64 + 1;
        if vmid >> self.features.vmid_bits != 0 {
            return Err(Error::TooManyDomains);
        }
        let table = PageTable::new_at(&mut self.pool, Stage::Stage2, ias, oas)?;
        // The table's geometry and the STE's S2SL0 must agree: one computation each side.
        debug_assert_eq!(table.start_level(), start);
        let tag = Translation::Stage2 { vmid: Vmid(vmid as u16) };
        self.domains[index] = Some(Domain { tag, table, attached: 0, stale: false, deferred: None });
        Ok(DomainId(index as u16))
    }

    /// Create an empty domain (address space) with its own ASID and CD.
    pub fn create_domain(&mut self) -> Result<DomainId, Error> {
        self.check_usable()?;
        let index = (0..self.max_domains).find(|&i| self.domains[i].is_none()).ok_or(Error::TooManyDomains)?;
        let table = PageTable::new(&mut self.pool, self.config.ias_bits, self.features.oas_bits)?;
        // ASID 0 is never used: a zeroed CD can never alias a live context.
        let asid = Asid(index as u16 + 1);
        let cd = Cd::stage1_for(
            &Stage1Context {
                asid,
                ttb0: table.root(),
                ias_bits: self.config.ias_bits,
                ips: ips_from_oas(self.features.oas),
            },
            self.coherency,
        );
        // No STE refers to this slot (its last users were detached with CFGI_CD_ALL),
        // so the CD can be written without invalidation.
        let p = self.cd_ptr(index);
        for (i, w) in cd.0.iter().enumerate() {
            // SAFETY: CD slot `index` lies inside the CD region (`index < max_domains`).
            unsafe { p.add(i).write_volatile(*w) };
        }
        // At the PoC before an STE points at it (that STE's CFGI and sync come later).
        self.maint.clean(p, CD_SIZE);
        barrier::dma_wmb();
        let tag = Translation::Stage1 { asid };
        self.domains[index] = Some(Domain { tag, table, attached: 0, stale: false, deferred: None });
        Ok(DomainId(index as u16))
    }

    fn cd_ptr(&self, index: usize) -> NonNull<u64> {
        // SAFETY: callers pass `index < max_domains`, and the region holds that many CDs.
        unsafe { self.mem.cds.va.cast::<u64>().add(index * CD_WORDS) }
    }

    fn cd_pa(&self, index: usize) -> PhysAddr {
        PhysAddr(self.mem.cds.pa.0 + (index * CD_SIZE) as u64)
    }

    fn domain(&self, d: DomainId) -> Result<&Domain, Error> {
        self.domains.get(d.index()).and_then(Option::as_ref).ok_or(Error::NoSuchDomain)
    }

    /// The ASID of a stage-1 domain (`NoSuchDomain` for a stage-2 one, which has none).
    pub fn asid(&self, d: DomainId) -> Result<Asid, Error> {
        match self.domain(d)?.tag {
            Translation::Stage1 { asid } => Ok(asid),
            Translation::Stage2 { .. } => Err(Error::NoSuchDomain),
        }
    }

    /// How a domain translates: its stage and the ASID or VMID it is tagged with.
    pub fn translation(&self, d: DomainId) -> Result<Translation, Error> {
        Ok(self.domain(d)?.tag)
    }

    /// The CD a domain's streams use, as the SMMU reads it.
    pub fn cd(&self, d: DomainId) -> Result<Cd, Error> {
        self.domain(d)?;
        let p = self.cd_ptr(d.index());
        let mut cd = Cd::default();
        for (i, w) in cd.0.iter_mut().enumerate() {
            // SAFETY: a CD slot inside the CD region.
            *w = unsafe { p.add(i).read_volatile() };
        }
        Ok(cd)
    }

    /// Destroy an empty domain: its TLB entries are invalidated and its tables returned.
    pub fn destroy_domain(&mut self, d: DomainId) -> Result<(), Error> {
        let dom = self.domain(d)?;
        if dom.attached != 0 {
            return Err(Error::DomainInUse);
        }
        let tag = dom.tag;
        self.cmdq.push(&self.regs, &mut self.stats, tag.invalidate_all())?;
        self.cmdq.sync(&self.regs, &mut self.stats)?;
        let p = self.cd_ptr(d.index());
        for i in 0..CD_WORDS {
            // SAFETY: a CD slot inside the CD region, unused by every STE.
            unsafe { p.add(i).write_volatile(0) };
        }
        self.maint.clean(p, CD_SIZE);
        if let Some(dom) = self.domains[d.index()].take() {
            dom.table.destroy(&mut self.pool);
        }
        Ok(())
    }

    fn stream_slot(&self, sid: StreamId) -> Option<usize> {
        self.streams.iter().position(|s| matches!(s, Some((x, _)) if *x == sid))
    }

    /// Point `sid` at domain `d` (from abort, or from another domain without passing
    /// through a wider state). Returns when the SMMU has the new entry.
    pub fn attach(&mut self, sid: StreamId, d: DomainId) -> Result<(), Error> {
        self.domain(d)?;
        let slot = match self.stream_slot(sid) {
            Some(slot) => slot,
            None => self.streams.iter().position(Option::is_none).ok_or(Error::TooManyStreams)?,
        };
        // The stream's STE slot first: a StreamID outside the table, or one whose level-2
        // table cannot be installed, fails here with no STE word written (at most an
        // aborting level-2 table), so the SMMU cannot point at `d` and the books stay as
        // they are. Failing inside the update below, it would count as pinning `d`.
        self.ste_ptr(sid)?;
        self.flush_stale(d)?;
        let new = match self.domain(d)?.tag {
            Translation::Stage1 { .. } => Ste::stage1_for(self.cd_pa(d.index()), self.coherency),
            Translation::Stage2 { vmid } => {
                let table = &self.domain(d)?.table;
                let ctx = Stage2Context {
                    vmid,
                    s2ttb: table.root(),
                    ias_bits: table.ias_bits(),
                    start_level: table.start_level(),
                    ps: ips_from_oas(self.features.oas),
                };
                Ste::stage2(&ctx, self.coherency)
            }
        };
        if let Err(e) = self.write_ste(sid, &new) {
            // The STE may now hold the old entry, the new one, or the blocking one the
            // update passes through: make it abort, and keep the books to what the SMMU
            // may still use, so that no domain it may point at is destroyed.
            if self.write_ste(sid, &Ste::abort()).is_ok() {
                if let Some((_, old)) = self.streams[slot].take() {
                    if let Some(dom) = self.domains[old.index()].as_mut() {
                        dom.attached -= 1;
                    }
                }
            } else if let Some(dom) = self.domains[d.index()].as_mut() {
                // Counted against `d` as well, for good: it is never destroyed.
                dom.attached += 1;
            }
            return Err(e);
        }
        if let Some((_, old)) = self.streams[slot] {
            if let Some(dom) = self.domains[old.index()].as_mut() {
                dom.attached -= 1;
            }
        }
        self.streams[slot] = Some((sid, d));
        if let Some(dom) = self.domains[d.index()].as_mut() {
            dom.attached += 1;
        }
        Ok(())
    }

    /// Put `sid` back to abort. Returns when the SMMU has the aborting entry.
    pub fn detach(&mut self, sid: StreamId) -> Result<(), Error> {
        self.write_ste(sid, &Ste::abort())?;
        if let Some(slot) = self.stream_slot(sid) {
            if let Some((_, d)) = self.streams[slot].take() {
                if let Some(dom) = self.domains[d.index()].as_mut() {
                    dom.attached -= 1;
                }
            }
        }
        Ok(())
    }

    /// Let `sid` through untranslated. For measurement and explicitly trusted devices
    /// only; the stream must not be attached to a domain.
    pub fn bypass(&mut self, sid: StreamId) -> Result<(), Error> {
        if self.stream_slot(sid).is_some() {
            return Err(Error::DomainInUse);
        }
        self.write_ste(sid, &Ste::bypass())
    }

    /// The domain `sid` is attached to.
    pub fn stream_domain(&self, sid: StreamId) -> Option<DomainId> {
        self.stream_slot(sid).and_then(|s| self.streams[s]).map(|(_, d)| d)
    }

    fn check_not_own_memory(&self, pa: PhysAddr, len: u64) -> Result<(), Error> {
        for r in self.own_memory() {
            if r.overlaps(pa, len) {
                return Err(Error::ProtectedMemory(pa));
            }
        }
        Ok(())
    }

    /// Map `[iova, iova + len)` in domain `d` to `[pa, pa + len)`. 2 MiB blocks are used
    /// where both addresses are aligned. Device memory is never executable (nor is
    /// anything else). Refused, changing nothing, if any page is already mapped.
    pub fn map(
        &mut self,
        d: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        perm: Perm,
        mem: MemType,
    ) -> Result<(), Error> {
        // Nothing is translated any more: a mapping would be a promise the SMMU cannot keep.
        self.check_usable()?;
        self.check_not_own_memory(pa, len)?;
        // A stale TLB entry for this range would shadow the new mapping.
        self.flush_stale(d)?;
        // Likewise one whose invalidation is queued but not confirmed: break before make.
        let end = iova.0.saturating_add(len);
        if self.domain(d)?.deferred.is_some_and(|(lo, hi)| iova.0 < hi && lo < end) {
            // Confirm them now, but leave them the batch's: `sync_deferred` still reports
            // on them, and a failure here stays recorded against them (`deferred_failed`,
            // kept by the sync while any are deferred), so it is not lost to this map
            // (the range may be another domain's). This domain is then invalidated whole
            // before anything is mapped in it, and so it is after any failure recorded
            // against them: whose invalidation failed is unknown, and a sync that consumed
            // it (an earlier map's) leaves this one completing with this domain's old
            // entries still cached.
            let synced = self.cmdq.sync(&self.regs, &mut self.stats);
            if synced.is_err() || self.cmdq.deferred_failed.is_some() {
                if let Some(dom) = self.domains.get_mut(d.index()).and_then(Option::as_mut) {
                    dom.stale = true;
                }
            } else {
                // Every deferred unmap so far is confirmed: their spans hold no later map
                // back (a later failure is its own unmaps', whose domains it marks).
                for dom in self.domains.iter_mut().flatten() {
                    dom.deferred = None;
                }
            }
            self.flush_stale(d)?;
        }
        let dom = self.domains.get_mut(d.index()).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)?;
        match dom.table.map(&mut self.pool, iova, pa, len, perm, mem) {
            // Tables other unmaps left empty (in any domain) hold what this map needs: take
            // them back, then try once more. So what the pool must hold is bounded by what
            // is mapped at once, not by how many places anything was ever mapped at.
            Err(PageTableError::PoolExhausted { .. }) => {
                self.reclaim_tables()?;
                let dom = self.domains.get_mut(d.index()).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)?;
                dom.table.map(&mut self.pool, iova, pa, len, perm, mem)?;
            }
            r => r?,
        }
        Ok(())
    }

    /// Return to the pool every page table, in every domain, that maps nothing; returns
    /// how many. Break-before-make: each such table is unlinked from its parent, then each
    /// domain that lost one gets a CMD_TLBI_NH_ASID (which drops its walk-cache entries as
    /// well as its translations), then one CMD_SYNC; a page goes back to the pool only once
    /// that sync completed, so no walk the SMMU cached can lead into a page reused as
    /// another table. If the invalidation fails, the unlinked pages stay out of the pool
    /// (in their domain's limbo, holding only invalid descriptors) and the domain is marked
    /// stale: its next confirmed invalidation returns them.
    pub fn reclaim_tables(&mut self) -> Result<usize, Error> {
        let (regs, cmdq, stats, pool) = (&self.regs, &mut self.cmdq, &mut self.stats, &mut self.pool);
        let mut waiting = false;
        for dom in self.domains.iter_mut().flatten() {
            dom.table.prune(pool);
            if dom.table.limbo_pages() > 0 {
                // Until the invalidation is confirmed, its walk caches may be stale.
                dom.stale = true;
                cmdq.push(regs, stats, dom.tag.invalidate_all())?;
                waiting = true;
            }
        }
        if !waiting {
            return Ok(0);
        }
        cmdq.sync(regs, stats)?;
        let mut freed = 0;
        for dom in self.domains.iter_mut().flatten() {
            if dom.table.limbo_pages() > 0 {
                freed += dom.table.release_limbo(pool);
                dom.stale = false;
            }
        }
        Ok(freed)
    }

    /// The leaf mapping `iova` in domain `d`, if any.
    pub fn translate(&self, d: DomainId, iova: Iova) -> Result<Option<Leaf>, Error> {
        Ok(self.domain(d)?.table.translate(&self.pool, iova))
    }

    /// Call `f` for every mapping of domain `d`.
    pub fn for_each_mapping(&self, d: DomainId, f: impl FnMut(Leaf)) -> Result<(), Error> {
        self.domain(d)?.table.for_each_leaf(&self.pool, f);
        Ok(())
    }

    /// Unmap `[iova, iova + len)`; returns when the SMMU has confirmed that no TLB holds
    /// the old translations.
    pub fn unmap(&mut self, d: DomainId, iova: Iova, len: u64) -> Result<usize, Error> {
        self.unmap_batch(d, &[(iova, len)])
    }

    /// Unmap several ranges with one CMD_SYNC. Every range must be exactly covered by
    /// mappings and no two may overlap; otherwise nothing changes.
    pub fn unmap_batch(&mut self, d: DomainId, ranges: &[(Iova, u64)]) -> Result<usize, Error> {
        self.flush_stale(d)?;
        let dom = self.domains.get_mut(d.index()).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)?;
        let mut leaves = 0;
        for (i, &(iova, len)) in ranges.iter().enumerate() {
            leaves += dom.table.check_unmap(&self.pool, iova, len)?;
            for &(other, other_len) in &ranges[..i] {
                if iova.0 < other.0 + other_len && other.0 < iova.0 + len {
                    return Err(Error::PageTable(PageTableError::NotMapped(iova)));
                }
            }
        }
        let tag = dom.tag;
        let ranges_ok = self.features.range_invalidation;
        let per_page = ranges_ok || leaves <= TLBI_ASID_THRESHOLD;
        let mut invalidation = self.reject_next_invalidation.take();
        let (regs, cmdq, stats, pool) = (&self.regs, &mut self.cmdq, &mut self.stats, &mut self.pool);
        let mut leaf_tlbis = LeafTlbis::new(per_page);
        let mut inv = LeafInvalidation::new(tag, ranges_ok);
        // From here the tables change: until the invalidation is confirmed, the domain's
        // TLB entries may be stale.
        dom.stale = true;
        {
            let mut emit = |cmd| leaf_tlbis.push(cmd, |cmd| cmdq.push(regs, stats, invalidation(cmd)));
            // Every range was checked above, and they do not overlap.
            for &(iova, len) in ranges {
                dom.table.unmap_checked(pool, iova, len, |leaf| inv.add(&leaf, &mut emit));
            }
            inv.finish(&mut emit);
        }
        if leaf_tlbis.need_all() {
            // One command covers every entry of the ASID.
            cmdq.push(regs, stats, invalidation(tag.invalidate_all()))?;
        }
        cmdq.sync(regs, stats)?;
        dom.stale = false;
        Ok(leaves)
    }

    /// Unmap `[iova, iova + len)` (exactly covered by mappings, or nothing changes) and
    /// queue its invalidation without waiting for it: `sync_deferred` confirms every
    /// deferred unmap with one CMD_SYNC, whatever their domains. Until then the SMMU may
    /// still translate the range; a `map` over it waits for the confirmation first. `Err`
    /// after the tables changed (a command could not be queued) leaves the domain stale,
    /// as a failed `unmap` does. Returns the leaves removed.
    pub fn unmap_deferred(&mut self, d: DomainId, iova: Iova, len: u64) -> Result<usize, Error> {
        self.flush_stale(d)?;
        let dom = self.domains.get_mut(d.index()).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)?;
        let leaves = dom.table.check_unmap(&self.pool, iova, len)?;
        let tag = dom.tag;
        let ranges_ok = self.features.range_invalidation;
        let per_page = ranges_ok || leaves <= TLBI_ASID_THRESHOLD;
        // The last run stays open for the next deferred unmap to extend, unless the
        // injected rejection must fall on this unmap's own first command.
        let keep_open = ranges_ok && !self.reject_next_invalidation.armed();
        let mut invalidation = self.reject_next_invalidation.take();
        let (regs, cmdq, stats, pool) = (&self.regs, &mut self.cmdq, &mut self.stats, &mut self.pool);
        // Before the first command: a sync that a full queue or an erratum forces in
        // `push` and that fails must count against this unmap too.
        cmdq.deferred = true;
        let end = iova.0 + len;
        dom.deferred = Some(dom.deferred.map_or((iova.0, end), |(lo, hi)| (lo.min(iova.0), hi.max(end))));
        self.deferred_domains |= 1 << d.index();
        // Another domain's open run cannot take these leaves: it goes out first, on its
        // own account (a failure there is its domain's, not this unmap's).
        if cmdq.open.as_ref().is_some_and(|open| open.tag() != tag) {
            cmdq.send_open_run(regs, stats);
        }
        let mut inv = cmdq.open.take().unwrap_or(LeafInvalidation::new(tag, ranges_ok));
        let mut leaf_tlbis = LeafTlbis::new(per_page);
        {
            let mut emit = |cmd| leaf_tlbis.push(cmd, |cmd| cmdq.push(regs, stats, invalidation(cmd)));
            // Checked above (`check_unmap`). A run this unmap closes goes out here.
            dom.table.unmap_checked(pool, iova, len, |leaf| inv.add(&leaf, &mut emit));
            if !keep_open {
                inv.finish(&mut emit);
            }
        }
        if keep_open && !leaf_tlbis.need_all() {
            cmdq.open = Some(inv);
        }
        let queued = if leaf_tlbis.need_all() {
            // One command covers every entry of the ASID.
            cmdq.push(regs, stats, invalidation(tag.invalidate_all())).map(|()| leaves)
        } else {
            Ok(leaves)
        };
        if queued.is_err() {
            dom.stale = true;
        }
        queued
    }

    /// Confirm every `unmap_deferred` since the last call with one CMD_SYNC (none if there
    /// was none). `Err` if the sync, or any sync since the first of them, failed: then
    /// every domain with a deferred unmap is stale (its next use invalidates it whole
    /// first), as after a failed `unmap`.
    pub fn sync_deferred(&mut self) -> Result<(), Error> {
        if !self.cmdq.deferred {
            return Ok(());
        }
        let synced = self.cmdq.sync(&self.regs, &mut self.stats);
        let result = match self.cmdq.deferred_failed.take() {
            Some(e) => Err(e),
            None => synced,
        };
        self.cmdq.deferred = false;
        let mut left = core::mem::take(&mut self.deferred_domains);
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            if let Some(dom) = self.domains[i].as_mut() {
                if dom.deferred.take().is_some() && result.is_err() {
                    dom.stale = true;
                }
            }
        }
        result
    }

    /// Invalidate every TLB entry of domain `d` (CMD_TLBI_NH_ASID, then CMD_SYNC);
    /// returns when the SMMU has confirmed. What finishes an unmap whose invalidation
    /// failed: the entries are gone from the tables, and this removes any cached copy.
    pub fn invalidate_domain(&mut self, d: DomainId) -> Result<(), Error> {
        let tag = self.domain(d)?.tag;
        self.cmdq.push(&self.regs, &mut self.stats, tag.invalidate_all())?;
        self.cmdq.sync(&self.regs, &mut self.stats)?;
        if let Some(dom) = self.domains[d.index()].as_mut() {
            dom.stale = false;
            // Tables a failed `reclaim_tables` unlinked: this invalidation covers their
            // walk-cache entries too, so they may be reused now.
            dom.table.release_limbo(&mut self.pool);
        }
        Ok(())
    }

    /// True if an unmap in `d` left entries whose invalidation is not yet confirmed.
    pub fn has_stale_entries(&self, d: DomainId) -> Result<bool, Error> {
        Ok(self.domain(d)?.stale)
    }

    /// Finish an earlier failed invalidation of `d` before doing anything else with it.
    fn flush_stale(&mut self, d: DomainId) -> Result<(), Error> {
        if self.domain(d)?.stale {
            self.invalidate_domain(d)?;
        }
        Ok(())
    }

    /// Change the permission of `[iova, iova + len)` (exactly covered by mappings);
    /// returns when the SMMU has confirmed the invalidation of the old entries.
    pub fn protect(&mut self, d: DomainId, iova: Iova, len: u64, perm: Perm) -> Result<usize, Error> {
        self.flush_stale(d)?;
        let dom = self.domains.get_mut(d.index()).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)?;
        let tag = dom.tag;
        let (regs, cmdq, stats, pool) = (&self.regs, &mut self.cmdq, &mut self.stats, &mut self.pool);
        let mut leaf_tlbis = LeafTlbis::new(true);
        let mut inv = LeafInvalidation::new(tag, self.features.range_invalidation);
        // As for unmap: a narrowed entry may stay cached wider until confirmed.
        dom.stale = true;
        let changed = {
            let mut emit = |cmd| leaf_tlbis.push(cmd, |cmd| cmdq.push(regs, stats, cmd));
            let changed = dom.table.protect(pool, iova, len, perm, |leaf| inv.add(&leaf, &mut emit));
            inv.finish(&mut emit);
            changed
        }?;
        if leaf_tlbis.need_all() {
            cmdq.push(regs, stats, tag.invalidate_all())?;
        }
        if changed > 0 {
            cmdq.sync(regs, stats)?;
        }
        dom.stale = false;
        Ok(changed)
    }

    /// `Err(ServiceFailure)` once the SMMU has reported service failure.
    fn check_usable(&self) -> Result<(), Error> {
        match self.cmdq.failed {
            Some(_) => Err(Error::ServiceFailure),
            None => Ok(()),
        }
    }

    /// Whether the SMMU has failed (SMMU_GERROR.SFM_ERR, or it stopped answering: see
    /// `unanswered`), and if so what failing it closed gave: `Ok` when GBPA.ABORT took
    /// and the SMMU is disabled (every transaction aborts), otherwise why DMA is not known
    /// to be stopped. `None` while it works.
    pub fn failure(&self) -> Option<Result<(), Error>> {
        self.cmdq.failed
    }

    /// What failing the SMMU closed gave, for a caller that stops using it: the
    /// `failure` the driver recorded, or, where it recorded none (a caller that gives up
    /// on an SMMU the driver still takes for working), the SMMU failed closed now, as
    /// SFM_ERR fails it (every STE aborting, GBPA.ABORT, SMMUEN = 0, the last
    /// invalidation where the disable is not known to have taken). Never `Ok` for an SMMU
    /// left translating; from then on every operation is refused, as after any failure.
    pub fn fail_closed_now(&mut self) -> Result<(), Error> {
        self.cmdq.fail(&self.regs);
        self.cmdq.failed.unwrap_or(Err(Error::ServiceFailure))
    }

    /// Whether the failure (`failure`) is an SMMU that stopped answering: waits on its
    /// command queue timed out twice in a row with no CMD_SYNC completed between them.
    pub fn unanswered(&self) -> bool {
        self.cmdq.unanswered
    }

    /// Check SMMU_GERROR: recover from a command error, count and acknowledge the rest.
    /// `Err(ServiceFailure)` if the SMMU needs a reset: then it has been failed closed
    /// (`failure`), and every later operation that would use it is refused.
    pub fn check_global_errors(&mut self) -> Result<GlobalErrors, Error> {
        let active = self.regs.read32(reg::GERROR) ^ self.regs.read32(reg::GERRORN);
        if active == 0 {
            return Ok(GlobalErrors(0));
        }
        if active & GERROR::CMDQ_ERR.mask != 0 {
            // Reported to whoever waits on the queue; here it is only recovered from.
            let _ = self.cmdq.check_error(&self.regs, &mut self.stats);
        }
        let rest = active & !GERROR::CMDQ_ERR.mask;
        if rest != 0 {
            self.regs.write32(reg::GERRORN, self.regs.read32(reg::GERRORN) ^ rest);
            self.stats.global_errors += rest.count_ones() as u64;
        }
        if active & (GERROR::SFM_ERR.mask << GERROR::SFM_ERR.shift) != 0 {
            self.cmdq.fail(&self.regs);
            return Err(Error::ServiceFailure);
        }
        Ok(GlobalErrors(active))
    }

    /// Deliver every event record, decoded, to `f`, and hand the slots back. The event
    /// interrupt marks the queue going from empty to non-empty, so records the SMMU writes
    /// while this runs raise none: it reads PROD again after handing slots back and goes
    /// on until PROD equals CONS, or until it has delivered one queue's worth (then
    /// `remaining` says to call again). An overflow (EVENTQ_PROD.OVFLG) is reported and
    /// acknowledged (IHI 0070 7.4).
    pub fn drain_events(&mut self, f: impl FnMut(Event)) -> Drained {
        self.drain_events_upto(usize::MAX, f)
    }

    /// `drain_events`, delivering at most `limit` records (for a caller that buffers them
    /// in a fixed array): the rest stay in the queue, and `remaining` says so.
    pub fn drain_events_upto(&mut self, limit: usize, mut f: impl FnMut(Event)) -> Drained {
        let ring = self.eventq_ring;
        let base = self.mem.eventq.va.cast::<[u64; 4]>();
        let mut drained = Drained::default();
        let mut budget = (ring.entries() as usize).min(limit);
        loop {
            let prod_reg = LocalRegisterCopy::<u32, EVENTQ_PROD::Register>::new(self.regs.read32(reg::EVENTQ_PROD));
            let prod = ring.index(prod_reg.read(EVENTQ_PROD::WR));
            // Records must be read after PROD says they are there.
            barrier::rmb();
            while budget > 0 && !ring.is_empty(prod, self.eventq_cons) {
                let slot = ring.slot(self.eventq_cons) as usize;
                // The SMMU wrote the record to the PoC (a non-coherent one bypasses this
                // CPU's caches, which may hold the slot from an earlier lap, or have
                // fetched it early): read it from there.
                // SAFETY: `slot < entries`, inside the event queue region.
                self.maint.invalidate(unsafe { base.add(slot) }, EVT_SIZE);
                // SAFETY: as above.
                let raw = unsafe { base.add(slot).read_volatile() };
                self.eventq_cons = ring.next(self.eventq_cons);
                budget -= 1;
                drained.events += 1;
                f(EventRecord(raw).decode());
            }
            let overflow = prod_reg.read(EVENTQ_PROD::OVFLG);
            let cons_reg = self.regs.read32(reg::EVENTQ_CONS);
            let acked = LocalRegisterCopy::<u32, EVENTQ_CONS::Register>::new(cons_reg).read(EVENTQ_CONS::OVACKFLG);
            if overflow != acked {
                drained.overflowed = true;
                self.stats.event_overflows += 1;
            }
            // The slots go back to the SMMU only once their records have been read.
            barrier::mb();
            // Acknowledge the overflow (OVACKFLG := OVFLG) with the new read index.
            self.regs.write32(
                reg::EVENTQ_CONS,
                (EVENTQ_CONS::RD.val(self.eventq_cons) + EVENTQ_CONS::OVACKFLG.val(overflow)).value,
            );
            let now = LocalRegisterCopy::<u32, EVENTQ_PROD::Register>::new(self.regs.read32(reg::EVENTQ_PROD));
            if ring.is_empty(ring.index(now.read(EVENTQ_PROD::WR)), self.eventq_cons) {
                break;
            }
            if budget == 0 {
                drained.remaining = true;
                break;
            }
        }
        self.stats.events += drained.events as u64;
        drained
    }

    /// The interrupt handler's work: global errors first, then the event queue.
    pub fn handle_interrupt(&mut self, f: impl FnMut(Event)) -> Result<Drained, Error> {
        self.handle_interrupt_upto(usize::MAX, f)
    }

    /// `handle_interrupt`, delivering at most `limit` event records (see
    /// `drain_events_upto`).
    pub fn handle_interrupt_upto(&mut self, limit: usize, f: impl FnMut(Event)) -> Result<Drained, Error> {
        self.check_global_errors()?;
        Ok(self.drain_events_upto(limit, f))
    }

    /// Issue CMD_SYNC and wait for it (for callers that queued nothing but want to know
    /// the SMMU is responsive).
    pub fn sync(&mut self) -> Result<(), Error> {
        self.cmdq.sync(&self.regs, &mut self.stats)
    }

    /// Fault injection: the next unmap's invalidation is rejected by the SMMU, after the
    /// entries left the tables; what a failing SMMU does to a driver that trusts it.
    #[cfg(feature = "fault-injection")]
    pub fn reject_next_invalidation(&mut self) {
        self.reject_next_invalidation.0 = true;
    }

    /// Fault injection: from now on the driver does not ring the doorbell (SMMU_CMDQ_PROD
    /// is not written again), so the SMMU consumes no command queued after this: to the
    /// driver, an SMMU that stopped answering, on real hardware. Every CMD_SYNC then times
    /// out, and the second in a row fails the SMMU closed (`unanswered`).
    #[cfg(feature = "fault-injection")]
    pub fn withhold_doorbell(&mut self) {
        self.cmdq.doorbell_withheld = true;
    }

    /// Queue `cmd` as it is and wait for a CMD_SYNC: for tests that provoke command
    /// errors on real hardware.
    #[cfg(feature = "fault-injection")]
    pub fn submit_unchecked(&mut self, cmd: Command) -> Result<(), Error> {
        self.cmdq.push(&self.regs, &mut self.stats, cmd)?;
        self.cmdq.sync(&self.regs, &mut self.stats)
    }

    /// The register interface (for diagnostics and tests).
    pub fn regs(&self) -> &M {
        &self.regs
    }
}

/// SMMU_CR1 for `coherency` (IHI 0070 6.3.11): table and queue accesses write-back
/// inner shareable when they snoop the CPU's caches, Non-cacheable outer shareable when
/// they do not.
pub fn cr1(coherency: Coherency) -> u32 {
    match coherency {
        Coherency::Coherent => {
            (CR1::QUEUE_IC::WriteBackAllocate
                + CR1::QUEUE_OC::WriteBackAllocate
                + CR1::QUEUE_SH::Inner
                + CR1::TABLE_IC::WriteBackAllocate
                + CR1::TABLE_OC::WriteBackAllocate
                + CR1::TABLE_SH::Inner)
                .value
        }
        Coherency::NonCoherent => {
            (CR1::QUEUE_IC::NonCacheable
                + CR1::QUEUE_OC::NonCacheable
                + CR1::QUEUE_SH::Outer
                + CR1::TABLE_IC::NonCacheable
                + CR1::TABLE_OC::NonCacheable
                + CR1::TABLE_SH::Outer)
                .value
        }
    }
}

/// Poll `done` until it holds or `bound` has passed.
fn wait(bound: Bound, what: &'static str, mut done: impl FnMut() -> bool) -> Result<(), Error> {
    let mut deadline = bound.start();
    loop {
        if done() {
            return Ok(());
        }
        if deadline.passed() {
            return Err(Error::Timeout(what));
        }
        core::hint::spin_loop();
    }
}

/// log2 of the entries a queue region holds, capped at the hardware's maximum; the
/// region must be aligned to its used size (IHI 0070 6.3.26).
fn queue_log2(region: &DmaRegion, entry: usize, max_log2: u32) -> Option<u32> {
    let entries = region.len / entry;
    if entries == 0 {
        return None;
    }
    let log2 = (usize::BITS - 1 - entries.leading_zeros()).min(max_log2);
    Some(log2)
}

/// A queue's base must be aligned to the queue's size (Q_BASE.ADDR ignores the bits
/// below, IHI 0070 6.3.26): `Misaligned` otherwise.
fn check_queue_alignment(region: &DmaRegion, entry: usize, log2: u32, what: &'static str) -> Result<(), Error> {
    let align = ((entry << log2) as u64).max(32);
    if region.pa.is_aligned(align) {
        Ok(())
    } else {
        Err(Error::Misaligned { what, align })
    }
}

/// Store all words of an STE, for tables no stream uses yet.
///
/// # Safety
/// `base` + `index` * 64 must be a writable STE slot owned by the driver.
unsafe fn write_ste_raw(base: NonNull<u8>, index: usize, ste: &Ste) {
    let p = base.cast::<u64>();
    for (i, w) in ste.0.iter().enumerate() {
        // SAFETY: the caller guarantees the slot.
        unsafe { p.add(index * STE_WORDS + i).write_volatile(*w) };
    }
}
