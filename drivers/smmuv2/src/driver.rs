//! The driver proper: default-deny bring-up, stage-1 domains in context banks, stream
//! attachment through SMR + S2CR, mapping with confirmed invalidation, and faults.

use core::fmt;

use smmuv3::barrier;
use smmuv3::cd::MAIR;
use smmuv3::coherency::Maintenance;
use smmuv3::pagetable::{Leaf, MemType, PageTable, PageTableError, Perm, TablePool};
use smmuv3::{Asid, CacheOps, Coherency, DmaRegion, Iova, PhysAddr, StreamId};

use crate::errata::{self, Errata, Implementation};
use crate::fault::{fsr, sgfsr, ContextFault, Fault, GlobalFault};
use crate::gr0::{MAX_SMRG, S2CR, SCR0, SMR};
use crate::gr1::{CBA2R, CBAR, MAX_CB};
use crate::mmio::{reg, Mmio};
use crate::probe::{self, Features, IdRegs, Needs, Unsupported};

/// Above this many leaves in one unmap, one TLBIASID replaces per-page TLBIVALs.
pub const TLBI_ASID_THRESHOLD: usize = 64;

const fn field(f: tock_registers::fields::Field<u32, impl tock_registers::RegisterLongName>, v: u32) -> u32 {
    (v & f.mask) << f.shift
}

/// Everything that can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The SMMU lacks something this driver needs.
    Unsupported(Unsupported),
    /// The table pool is not 4 KiB aligned.
    BadMemory(&'static str),
    /// The hardware did not respond within `Config::poll_limit`; names what was awaited.
    Timeout(&'static str),
    /// sCR0 or an S2CR did not read back as written: the SMMU is not known to deny.
    NotClosed(&'static str),
    /// A page-table operation was refused; nothing changed.
    PageTable(PageTableError),
    /// The physical range overlaps the driver's own table pool.
    ProtectedMemory(PhysAddr),
    /// Every stage-1 context bank holds a domain: a domain per device needs one bank
    /// each, and this SMMU has `banks` for domains (its stage-1 banks but the sink).
    ContextBanksExhausted {
        /// Stage-1 context banks for domains (NUMCB - NUMS2CB - 1: the sink is reserved).
        banks: usize,
    },
    /// Every stream mapping register group is in use: `groups` StreamID patterns can be
    /// attached at once.
    SmrsExhausted {
        /// IDR0.NUMSMRG.
        groups: usize,
    },
    /// The StreamID pattern overlaps one already attached: both SMRs would match some
    /// StreamID, which the architecture makes UNPREDICTABLE (IHI 0062D 2.4: a stream
    /// match conflict). Names the pattern in the way.
    SmrConflict {
        /// The attached StreamID.
        sid: StreamId,
        /// Its mask.
        mask: u16,
    },
    /// The StreamID (or mask) is wider than IDR0.NUMSIDB / the SMR's implemented bits.
    StreamIdTooWide(StreamId),
    /// No domain with that handle.
    NoSuchDomain,
    /// The domain still has streams attached.
    DomainInUse,
    /// The stream is not attached.
    NotAttached(StreamId),
    /// This exact StreamID pattern is attached already.
    StreamInUse(StreamId),
    /// The SMMU was failed closed while serving (`Smmu::failure` says why and whether
    /// every stream now faults): nothing that would use it is done from then on.
    Failed,
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
            Error::BadMemory(what) => write!(f, "the {what} is too small or misaligned"),
            Error::Timeout(what) => write!(f, "timed out waiting for {what}"),
            Error::NotClosed(what) => write!(f, "{what} did not read back: the SMMU is not known to deny"),
            Error::PageTable(e) => write!(f, "page table: {e:?}"),
            Error::ProtectedMemory(pa) => write!(f, "{pa} is the SMMU's own memory"),
            Error::ContextBanksExhausted { banks } => {
                write!(f, "all {banks} stage-1 context banks for domains are in use (one more is the sink)")
            }
            Error::SmrsExhausted { groups } => write!(f, "all {groups} stream match registers are in use"),
            Error::SmrConflict { sid, mask } => write!(f, "overlaps the attached StreamID {sid} mask {mask:#x}"),
            Error::StreamIdTooWide(sid) => write!(f, "StreamID {sid} is wider than the SMMU's"),
            Error::NoSuchDomain => write!(f, "no such domain"),
            Error::DomainInUse => write!(f, "domain has streams attached"),
            Error::NotAttached(sid) => write!(f, "stream {sid} is not attached"),
            Error::StreamInUse(sid) => write!(f, "stream {sid} is attached already"),
            Error::Failed => write!(f, "the SMMU was failed closed"),
        }
    }
}

/// Memory the driver is given; it never allocates.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// The page-table pool: 4 KiB pages, coherent with the SMMU's walks, never mapped
    /// for a device.
    pub tables: DmaRegion,
}

/// Fixed choices made at initialisation.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Width of every domain's IOVA space (25..=48, and no wider than IDR2.UBS).
    pub ias_bits: u32,
    /// Register polls before a wait is declared timed out.
    pub poll_limit: u32,
    /// Which implementation this is (the device tree's `compatible`): selects errata.
    pub implementation: Implementation,
    /// Bytes of register file mapped, checked against IDR1's layout (`None`: trust it).
    pub register_span: Option<usize>,
    /// What the platform says of the SMMU's table walks: true only if the board's device
    /// tree marks the SMMU `dma-coherent` AND the CPU maps the table pool shareable as
    /// the walks access it (seL4 maps user pages Non-shareable on a kernel without SMP).
    /// With IDR0.CTTW (`Coherency::of`), either one saying no makes the driver clean
    /// every table write to the PoC and walk Non-cacheable, as the SMMUv3 driver does.
    pub platform_coherent: bool,
    /// The CPU's cache maintenance, for walks that are not coherent; without it such an
    /// SMMU is refused (`Unsupported::NonCoherentWalk`).
    pub cache: Option<&'static dyn CacheOps>,
}

impl Default for Config {
    /// A coherent platform with no cache maintenance: an SMMU whose CTTW reads 0 is
    /// refused; a platform that is not coherent says so.
    fn default() -> Self {
        Self {
            ias_bits: 48,
            poll_limit: 1_000_000,
            implementation: Implementation::Mmu500,
            register_span: None,
            platform_coherent: true,
            cache: None,
        }
    }
}

/// A domain: one stage-1 context bank and its address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(u8);

impl DomainId {
    /// The context bank number.
    pub fn cb(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug)]
struct Domain {
    asid: Asid,
    table: PageTable,
    attached: u32,
    /// Entries left the tables (or a stream was detached) without a confirmed
    /// invalidation: the TLB may still hold them, so a TLBIASID and a TLBSYNC go before
    /// anything else is done with the domain.
    stale: bool,
}

/// One stream mapping register group as the driver programmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sme {
    sid: StreamId,
    mask: u16,
    /// The domain's bank.
    cb: u8,
    /// Routed to the sink bank (`Smmu::block`) instead of `cb`, its SMR still valid.
    blocked: bool,
}

/// Counters, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// TLB invalidations written (TLBIVAL, TLBIASID, TLBIALLNSNH).
    pub invalidations: u64,
    /// TLBSYNC / sTLBGSYNC that completed.
    pub syncs: u64,
    /// Waits that hit the poll bound.
    pub timeouts: u64,
    /// Context faults read and cleared.
    pub context_faults: u64,
    /// Global faults read and cleared.
    pub global_faults: u64,
}

/// The driver for one SMMUv2.
#[derive(Debug)]
pub struct Smmu<M: Mmio> {
    regs: M,
    features: Features,
    config: Config,
    errata: Errata,
    pool: TablePool,
    domains: [Option<Domain>; MAX_CB],
    smes: [Option<Sme>; MAX_SMRG],
    /// SMRn.ID and SMRn.MASK bits that are implemented (probed as Linux's
    /// `arm_smmu_test_smr_masks` does).
    smr_id_mask: u16,
    smr_mask_mask: u16,
    prefetch_disabled: bool,
    coherency: Coherency,
    /// The sink bank (`sink_bank`).
    sink: usize,
    /// sCR0.GFIE cleared by `drain_faults` (`global_interrupt_paced`).
    global_paced: bool,
    /// Set once the driver failed the SMMU closed while serving: why, and what
    /// `deny_all` gave. Nothing is written to the SMMU again.
    failed: Option<(Failure, Result<(), Error>)>,
    /// `Stats::syncs` when a sync wait last timed out, and the bank whose sync it was: a
    /// second timeout with the count unchanged and that sync still active had no sync
    /// complete in between (`timed_out`).
    timed_out_at: Option<(u64, usize)>,
    stats: Stats,
}

// SAFETY: the driver exclusively owns its registers and its table pool (by `init`'s
// contract); moving it between threads moves that ownership.
unsafe impl<M: Mmio + Send> Send for Smmu<M> {}

fn wait(limit: u32, what: &'static str, mut done: impl FnMut() -> bool) -> Result<(), Error> {
    for _ in 0..=limit {
        if done() {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(Error::Timeout(what))
}

/// S2CR of type fault: a matched stream's transactions fault (IHI 0062D 10.6.29).
const S2CR_FAULT: u32 = 2 << 16;

/// TLBIALLNSNH, then sTLBGSYNC and a bounded wait for sTLBGSTATUS.GSACTIVE to clear
/// (IHI 0062D 10.6.21-22, the global sync Linux's `arm_smmu_tlb_sync_global` does). The
/// written value is ignored by the SMMU; Linux writes a non-zero one (`QCOM_DUMMY_VAL`)
/// for a hypervisor that mishandles XZR stores; so does this.
///
/// A global sync still active (one that timed out before: `fail_closed` after `init`'s)
/// is waited for first, and nothing is written while it is: see `Smmu::sync_idle`.
fn invalidate_all(regs: &impl Mmio, poll_limit: u32) -> Result<(), Error> {
    let idle = || regs.read32(reg::STLBGSTATUS) & 1 == 0;
    wait(poll_limit, "SMMU_sTLBGSTATUS.GSACTIVE", idle)?;
    barrier::wmb();
    regs.write32(reg::TLBIALLNSNH, u32::MAX);
    regs.write32(reg::STLBGSYNC, u32::MAX);
    wait(poll_limit, "SMMU_sTLBGSTATUS.GSACTIVE", idle)
}

/// Make every client transaction fault, best effort: what `Smmu::init` does first on
/// every error (a refused probe included), and what a system that cannot run its IOMMU
/// service does before anything else. Mirrors the SMMUv3 driver's `fail_closed`.
///
/// Each write only narrows what a device can reach, whatever state firmware left:
/// 1. sCR0.USFCFG = 1 (read-modify-write, CLIENTPD untouched): unmatched streams fault;
/// 2. every S2CR (as many as IDR0.NUMSMRG says, at most 128) of type fault: a matched
///    stream faults;
/// 3. every SMR invalid (with stream matching): every stream is unmatched;
/// 4. sCR0.CLIENTPD = 0 (with USFCFG = 1 and SMCFCFG = 1): client transactions go
///    through the stream mapping table, which faults them all. CLIENTPD = 1 (bypass)
///    is often the reset value, so this is the write that ends bypass;
/// 5. TLBIALLNSNH and a bounded global sync, so nothing firmware's contexts cached is
///    used afterwards.
///
/// Then it reads back sCR0 and every S2CR. `Ok` means every transaction now faults.
/// Nothing here depends on a probe succeeding: only global space 0 is touched.
pub fn fail_closed(regs: &impl Mmio, poll_limit: u32) -> Result<(), Error> {
    let denied = deny_all(regs);
    let synced = invalidate_all(regs, poll_limit);
    denied?;
    synced
}

/// `fail_closed` by a caller that knows the driver had already failed the SMMU closed
/// with every stream faulting (`closed`: `Smmu::failure` was `Some((_, Ok(())))`, the IOMMU
/// PD's panic hook after a failure while serving): that stays reported so. Nothing here
/// routes a stream anywhere but to a fault, and the sync that no longer completes (often
/// the very failure, `Failure::Unanswered`) does not undo it.
pub fn fail_closed_knowing(regs: &impl Mmio, poll_limit: u32, closed: bool) -> Result<(), Error> {
    match fail_closed(regs, poll_limit) {
        Err(_) if closed => Ok(()),
        again => again,
    }
}

/// `fail_closed`'s steps 1 to 4 and the read-back, without the invalidation: every
/// client transaction faults once this returns `Ok`, whatever the TLBs hold, since no
/// stream is routed to a context bank any more.
fn deny_all(regs: &impl Mmio) -> Result<(), Error> {
    let idr0 = regs.read32(reg::IDR0);
    let sms = idr0 >> 27 & 1 == 1;
    let groups = if sms {
        (idr0 & 0xff) as usize
    } else {
        // Stream indexing: S2CRn is StreamID n; cover what the array holds.
        1usize << ((idr0 >> 9) & 0xf)
    }
    .min(MAX_SMRG);
    let usfcfg = field(SCR0::USFCFG, 1);
    regs.write32(reg::SCR0, regs.read32(reg::SCR0) | usfcfg);
    for i in 0..groups {
        regs.write32(reg::s2cr(i), S2CR_FAULT);
    }
    if sms {
        for i in 0..groups {
            regs.write32(reg::smr(i), 0);
        }
    }
    let scr0 = (regs.read32(reg::SCR0) & !field(SCR0::CLIENTPD, 1)) | usfcfg | field(SCR0::SMCFCFG, 1);
    regs.write32(reg::SCR0, scr0);
    check_closed(regs, groups, sms)
}

/// sCR0.CLIENTPD = 0 and USFCFG = 1, no S2CR of type bypass, and no stream routed to a
/// context bank: each group's SMR invalid or its S2CR of type fault (with stream
/// indexing, every S2CR of type fault). A group whose SMR and S2CR both kept a
/// translating value (writes that did not take) routes its streams to a bank, which
/// `init` left with stage 1 off: untranslated.
fn check_closed(regs: &impl Mmio, groups: usize, sms: bool) -> Result<(), Error> {
    let scr0 = regs.read32(reg::SCR0);
    if scr0 & field(SCR0::CLIENTPD, 1) != 0 || scr0 & field(SCR0::USFCFG, 1) == 0 {
        return Err(Error::NotClosed("SMMU_sCR0"));
    }
    let routed = |i: usize| {
        let s2cr_type = (regs.read32(reg::s2cr(i)) >> 16) & 0b11;
        s2cr_type == 1 || (s2cr_type == 0 && (!sms || regs.read32(reg::smr(i)) >> 31 == 1))
    };
    if (0..groups).any(routed) {
        return Err(Error::NotClosed("SMMU_S2CRn"));
    }
    Ok(())
}

/// Why the driver failed the SMMU closed while serving (`Smmu::failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Two waits on a TLB sync in a row timed out with no sync completed between them:
    /// no invalidation can be confirmed, so nothing unmapped is known gone.
    Unanswered,
    /// A global fault that the driver's stream mapping cannot raise (an invalid or
    /// unimplemented context bank, a stream-match conflict, an unimplemented context
    /// interrupt): the SMMU's configuration is no longer what the driver wrote.
    Configuration {
        /// sGFSR as read (`fault::sgfsr::CONFIGURATION` names the bits).
        sgfsr: u32,
    },
    /// A write that routes a stream away from its domain (block, detach) did not read
    /// back: the SMMU does not take the driver's writes.
    WriteNotTaken(&'static str),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unanswered => write!(f, "the SMMU stopped answering (two TLB sync waits timed out in a row)"),
            Failure::Configuration { sgfsr } => {
                write!(f, "the SMMU reported a fault of its own configuration (sGFSR {sgfsr:#x})")
            }
            Failure::WriteNotTaken(what) => write!(f, "a write to {what} did not take"),
        }
    }
}

impl<M: Mmio> Smmu<M> {
    /// Bring the SMMU up denying everything, then stay that way until `attach`:
    ///
    /// 1. probe the ID registers (refusal: `fail_closed`, then the typed error);
    /// 2. sCR0.USFCFG = 1, every S2CR faulting, every SMR invalid, then sCR0.CLIENTPD = 0
    ///    with USFCFG = 1 (`fail_closed`'s order, each write only narrowing): from here
    ///    every client transaction faults;
    /// 3. every context bank disabled (SCTLR = 0) and its FSR cleared; the last one
    ///    programmed as the sink (`sink_bank`), which no stream reaches yet; sGFSR
    ///    cleared; MMU-500's errata (`errata`);
    /// 4. TLBIALLNSNH and a confirmed global sync, so no translation firmware's contexts
    ///    left in the TLBs survives;
    /// 5. sCR0 as Linux's `arm_smmu_device_reset` leaves it, and stricter: global fault
    ///    reporting and interrupts on (GFRE, GFIE, GCFGFRE, GCFGFIE), USFCFG = 1,
    ///    SMCFCFG = 1 (a stream-match conflict faults instead of being UNPREDICTABLE),
    ///    VMIDPNE and PTM (TLBs private: only this driver's invalidations reach them),
    ///    FB = 0, BSU = 0, CLIENTPD = 0. Read back.
    ///
    /// seL4's kernel driver (`smmu_dev_reset`) instead writes every S2CR as
    /// translate-to-context-bank-0 at reset; this driver never routes a stream until it
    /// is attached to a domain whose context bank is fully programmed.
    ///
    /// On any error the SMMU is left by `fail_closed` (best effort) and the error
    /// returned.
    ///
    /// # Safety
    /// `mem.tables` must be memory only this driver uses from now on, seen by the SMMU
    /// at its `pa` (coherently, or through `Config::cache`'s cleaning), and `regs` must
    /// be the only access to the registers.
    pub unsafe fn init(regs: M, mem: Memory, config: Config) -> Result<Self, Error> {
        match Self::bring_up(&regs, mem, config) {
            Ok((features, pool, (smr_id_mask, smr_mask_mask), prefetch_disabled, coherency)) => Ok(Self {
                sink: features.num_cb - 1,
                regs,
                features,
                errata: errata::for_revision(config.implementation, features_idr7(&features)),
                config,
                pool,
                domains: [const { None }; MAX_CB],
                smes: [None; MAX_SMRG],
                smr_id_mask,
                smr_mask_mask,
                prefetch_disabled,
                coherency,
                global_paced: false,
                failed: None,
                timed_out_at: None,
                stats: Stats { invalidations: 1, syncs: 1, ..Stats::default() },
            }),
            Err(e) => {
                // Best effort: the caller learns the first error; `fail_closed` can be
                // called again to learn whether the SMMU now denies.
                let _ = fail_closed(&regs, config.poll_limit);
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn bring_up(
        regs: &M,
        mem: Memory,
        config: Config,
    ) -> Result<(Features, TablePool, (u16, u16), bool, Coherency), Error> {
        let id = IdRegs::read(regs);
        let pool_end = mem.tables.pa.0.saturating_add(mem.tables.len as u64);
        let needs = Needs {
            ias_bits: config.ias_bits,
            oas_bits: 64 - pool_end.saturating_sub(1).leading_zeros(),
            register_span: config.register_span,
        };
        let features = probe::probe(id, needs)?;
        // The sink takes one stage-1 bank; domains need at least one more.
        if features.domain_banks() == 0 {
            return Err(Error::ContextBanksExhausted { banks: 0 });
        }
        let coherency = Coherency::of(features.coherent_walk, config.platform_coherent);
        if coherency == Coherency::NonCoherent && config.cache.is_none() {
            return Err(Unsupported::NonCoherentWalk.into());
        }
        // SAFETY: `init`'s contract: the pool's memory is the driver's alone.
        let mut pool = unsafe { TablePool::new(mem.tables) }.ok_or(Error::BadMemory("page-table pool"))?;
        // Before any table is made: every page handed out and every entry written is
        // then at the PoC before a walk can reach it.
        pool.set_maintenance(Maintenance::new(coherency, config.cache));
        // Its free-list links, written before it knew of the maintenance (as the SMMUv3
        // driver's `init`): the whole pool is at the PoC as written from here on.
        if let (Coherency::NonCoherent, Some(cache)) = (coherency, config.cache) {
            cache.clean(mem.tables.va.cast(), mem.tables.len);
        }
        if pool.total_pages() == 0 {
            return Err(Error::BadMemory("page-table pool"));
        }
        fail_closed(regs, config.poll_limit)?;
        // From here every transaction faults. Which SMR bits are implemented: SMR0 is
        // invalid, so writing its ID and MASK fields matches nothing (Linux's
        // `arm_smmu_test_smr_masks`).
        let id_field = field(SMR::ID, u32::MAX);
        regs.write32(reg::smr(0), id_field);
        let smr_id_mask = (regs.read32(reg::smr(0)) & id_field) as u16 & sid_mask(features.sid_bits);
        let mask_field = field(SMR::MASK, u32::MAX);
        regs.write32(reg::smr(0), mask_field);
        let smr_mask_mask = ((regs.read32(reg::smr(0)) & mask_field) >> 16) as u16 & sid_mask(features.sid_bits);
        regs.write32(reg::smr(0), 0);

        let layout = features.layout;
        let errata = errata::for_revision(config.implementation, id.idr7);
        if errata.clear_cache_lock || errata.bypass_tlb_enable {
            let mut acr = regs.read32(reg::SACR);
            if errata.clear_cache_lock {
                acr &= !errata::ACR_CACHE_LOCK;
            }
            if errata.bypass_tlb_enable {
                acr |= errata::ACR_S2CRB_TLBEN | errata::ACR_SMTNMB_TLBEN;
            }
            regs.write32(reg::SACR, acr);
        }
        let mut prefetch_disabled = true;
        for n in 0..features.num_cb {
            regs.write32(layout.cb(n, reg::CB_SCTLR), 0);
            regs.write32(layout.cb(n, reg::CB_FSR), fsr::ALL);
            if errata.disable_prefetch {
                let actlr = regs.read32(layout.cb(n, reg::CB_ACTLR));
                regs.write32(layout.cb(n, reg::CB_ACTLR), actlr & !errata::ACTLR_CPRE);
                prefetch_disabled &= regs.read32(layout.cb(n, reg::CB_ACTLR)) & errata::ACTLR_CPRE == 0;
            }
        }
        program_sink(regs, &features, config.ias_bits)?;
        regs.write32(reg::SGFSR, regs.read32(reg::SGFSR));
        invalidate_all(regs, config.poll_limit)?;
        let scr0 = field(SCR0::GFRE, 1)
            | field(SCR0::GFIE, 1)
            | field(SCR0::GCFGFRE, 1)
            | field(SCR0::GCFGFIE, 1)
            | field(SCR0::USFCFG, 1)
            | field(SCR0::SMCFCFG, 1)
            | field(SCR0::VMIDPNE, 1)
            | field(SCR0::PTM, 1);
        regs.write32(reg::SCR0, scr0);
        check_closed(regs, features.num_smrg, true)?;
        Ok((features, pool, (smr_id_mask, smr_mask_mask), prefetch_disabled, coherency))
    }

    /// What the probe found.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The errata applied.
    pub fn errata(&self) -> Errata {
        self.errata
    }

    /// Every context bank's ACTLR.CPRE read back clear (errata 841119/826419 worked
    /// around). False on an MMU-500 whose Secure sACR.CACHE_LOCK is still set.
    pub fn prefetch_disabled(&self) -> bool {
        self.prefetch_disabled
    }

    /// Whether the table walks see this CPU's writes without cache maintenance.
    pub fn coherency(&self) -> Coherency {
        self.coherency
    }

    /// The memory type devices' buffers are mapped with: write-back where the platform
    /// is coherent, Normal Non-cacheable where it is not (the devices' drivers then
    /// clean and invalidate to the PoC, and the devices' accesses must go there), as
    /// the SMMUv3 driver's `dma_memory`. The platform's one word (`Config::
    /// platform_coherent`) stands for the devices as for the walks, as the IOMMU PD
    /// gives it to both drivers.
    pub fn dma_memory(&self) -> MemType {
        match self.coherency {
            Coherency::Coherent => MemType::Normal,
            Coherency::NonCoherent => MemType::NormalNonCacheable,
        }
    }

    /// The sink: the last context bank, reserved at `init` for blocked streams
    /// (`block`). Stage 1 on with nothing to walk (TCR.EPD0 = EPD1 = 1), so every
    /// transaction routed to it is a translation fault, terminated (CFCFG = 0) with an
    /// abort to the device (CFRE = 1), recorded in its FSR and never interrupting
    /// (CFIE = 0). Nothing reads or clears that FSR: a fault it holds changes nothing but
    /// the sink's own transactions (HUPCF = 0: terminated while one is outstanding),
    /// which all fault anyway.
    pub fn sink_bank(&self) -> usize {
        self.sink
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The registers (for tests and diagnostics).
    pub fn regs(&self) -> &M {
        &self.regs
    }

    /// The driver's own memory, which no device may reach.
    pub fn own_memory(&self) -> DmaRegion {
        *self.pool.region()
    }

    /// Free pages in the table pool.
    pub fn free_table_pages(&self) -> usize {
        self.pool.free_pages()
    }

    /// SMRs attached.
    pub fn smrs_in_use(&self) -> usize {
        self.smes[..self.features.num_smrg].iter().filter(|s| s.is_some()).count()
    }

    fn cb_reg(&self, cb: usize, offset: usize) -> usize {
        self.features.layout.cb(cb, offset)
    }

    fn domain(&self, d: DomainId) -> Result<&Domain, Error> {
        self.domains.get(d.cb()).and_then(Option::as_ref).ok_or(Error::NoSuchDomain)
    }

    fn domain_mut(&mut self, d: DomainId) -> Result<&mut Domain, Error> {
        self.domains.get_mut(d.cb()).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)
    }

    /// A new stage-1 domain in a free context bank (NUMS2CB..NUMCB), its context bank
    /// programmed and enabled but reached by no stream yet. Register order as Linux's
    /// `arm_smmu_write_context_bank`: SCTLR = 0 first, CBA2R, CBAR, TCR2, TCR, TTBR0,
    /// MAIRs, then a TLBIASID confirmed by TLBSYNC (the bank may hold a previous domain's
    /// entries if their invalidation failed), and SCTLR last.
    pub fn create_domain(&mut self) -> Result<DomainId, Error> {
        self.check_usable()?;
        let f = self.features;
        let cb = (f.num_s2cb..self.sink)
            .find(|&n| self.domains[n].is_none())
            .ok_or(Error::ContextBanksExhausted { banks: f.domain_banks() })?;
        let table = PageTable::new(&mut self.pool, self.config.ias_bits, f.oas_bits)?;
        // The ASID is the bank number, unique among the banks: MMU-500 implements
        // SCTLR.ASIDPNE as RAZ/WI, so every stage-1 bank here (CBAR.VMID = 0) shares one
        // ASID namespace and a TLB entry is named by its ASID alone (the model tags them
        // so: `two_domains_at_one_iova_reach_only_their_own_pages`).
        let asid = Asid(cb as u16);
        let layout = f.layout;
        let regs = &self.regs;
        regs.write32(self.cb_reg(cb, reg::CB_SCTLR), 0);
        stage1_bank(regs, layout, cb);
        let pasize = match f.oas_bits {
            32 => 0,
            36 => 1,
            40 => 2,
            42 => 3,
            44 => 4,
            _ => 5,
        };
        // AS = 0: 8-bit ASIDs, enough for 128 banks.
        regs.write32(self.cb_reg(cb, reg::CB_TCR2), field(crate::cb::TCR2::PASIZE, pasize) | TCR2_SEP_UPSTREAM);
        // 4 KiB granule, TTBR1 disabled (EPD1). Walks Inner Shareable write-back where
        // they are coherent; otherwise Non-cacheable (and so Outer Shareable, whatever SH
        // says), reading what the pool's maintenance cleaned to the PoC, as the SMMUv3
        // driver's CD.IR0/OR0/SH0 on such a platform.
        let (rgn, sh) = match self.coherency {
            Coherency::Coherent => (1, 3),
            Coherency::NonCoherent => (0, 2),
        };
        let tcr = field(crate::cb::TCR::T0SZ, 64 - self.config.ias_bits)
            | field(crate::cb::TCR::IRGN0, rgn)
            | field(crate::cb::TCR::ORGN0, rgn)
            | field(crate::cb::TCR::SH0, sh)
            | field(crate::cb::TCR::EPD1, 1);
        regs.write32(self.cb_reg(cb, reg::CB_TCR), tcr);
        regs.write64(self.cb_reg(cb, reg::CB_TTBR0), ((asid.0 as u64) << 48) | table.root().0);
        regs.write64(self.cb_reg(cb, reg::CB_TTBR1), 0);
        // The attribute indices `smmuv3::pagetable` writes into its descriptors.
        regs.write32(self.cb_reg(cb, reg::CB_MAIR0), MAIR as u32);
        regs.write32(self.cb_reg(cb, reg::CB_MAIR1), (MAIR >> 32) as u32);
        regs.write32(self.cb_reg(cb, reg::CB_FSR), fsr::ALL);
        if let Err(e) = self.tlbi_asid_sync(cb, asid) {
            self.regs.write32(self.cb_reg(cb, reg::CB_SCTLR), 0);
            table.destroy(&mut self.pool);
            return Err(e);
        }
        // Translation on; faults recorded (CFRE) and interrupting (CFIE), terminating
        // rather than stalling (CFCFG = 0); AFE and TRE as Linux; ASIDPNE as Linux
        // writes it, where the SMMU implements it.
        let sctlr = field(crate::cb::SCTLR::M, 1)
            | field(crate::cb::SCTLR::TRE, 1)
            | field(crate::cb::SCTLR::AFE, 1)
            | field(crate::cb::SCTLR::CFRE, 1)
            | field(crate::cb::SCTLR::CFIE, 1)
            | field(crate::cb::SCTLR::ASIDPNE, 1);
        self.regs.write32(self.cb_reg(cb, reg::CB_SCTLR), sctlr);
        self.domains[cb] = Some(Domain { asid, table, attached: 0, stale: false });
        Ok(DomainId(cb as u8))
    }

    /// The domain's ASID.
    pub fn asid(&self, d: DomainId) -> Result<Asid, Error> {
        Ok(self.domain(d)?.asid)
    }

    /// Remove a domain with no stream attached: its context bank is disabled, its ASID
    /// invalidated and synced, and only then do its tables go back to the pool. If the
    /// invalidation fails, the domain stays (stale) and the error is returned.
    pub fn destroy_domain(&mut self, d: DomainId) -> Result<(), Error> {
        self.check_usable()?;
        let dom = self.domain(d)?;
        if dom.attached > 0 {
            return Err(Error::DomainInUse);
        }
        let asid = dom.asid;
        self.regs.write32(self.cb_reg(d.cb(), reg::CB_SCTLR), 0);
        if let Err(e) = self.tlbi_asid_sync(d.cb(), asid) {
            self.domain_mut(d)?.stale = true;
            return Err(e);
        }
        if let Some(dom) = self.domains[d.cb()].take() {
            dom.table.destroy(&mut self.pool);
        }
        Ok(())
    }

    /// Attach the stream `sid` (exact match) to domain `d`.
    pub fn attach(&mut self, sid: StreamId, d: DomainId) -> Result<(), Error> {
        self.attach_masked(sid, 0, d)
    }

    /// Attach every StreamID that equals `sid` in the bits `mask` leaves clear (SMRn.ID
    /// and SMRn.MASK, IHI 0062D 2.4): for a description that names a group of streams.
    /// Refused when the pattern overlaps an attached one (a stream-match conflict), when
    /// every SMR is in use, or when the bits are wider than the SMR implements.
    ///
    /// S2CRn is written before SMRn is made valid (Linux's `arm_smmu_write_sme`), so the
    /// group never routes anywhere but `d`'s fully programmed context bank.
    pub fn attach_masked(&mut self, sid: StreamId, mask: u16, d: DomainId) -> Result<(), Error> {
        self.check_usable()?;
        let cb = d.cb();
        self.domain(d)?;
        if sid.0 > self.smr_id_mask as u32 || sid.0 as u16 & !self.smr_id_mask != 0 {
            return Err(Error::StreamIdTooWide(sid));
        }
        if mask & !self.smr_mask_mask != 0 {
            return Err(Error::StreamIdTooWide(StreamId(mask as u32)));
        }
        // A stream `block` routed to the sink goes back to its own bank: one S2CR write
        // (CBNDX), its SMR valid throughout, so it is never unmatched, bypassed or
        // matched twice, even between two writes.
        if let Some(i) = self.smes.iter().position(|s| s.is_some_and(|s| s.sid == sid && s.mask == mask && s.blocked)) {
            if self.smes[i].is_some_and(|s| s.cb as usize == cb) {
                if self.domain(d)?.stale {
                    self.invalidate_domain(d)?;
                }
                self.regs.write32(reg::s2cr(i), field(S2CR::TYPE, 0) | field(S2CR::CBNDX, cb as u32));
                if let Some(s) = self.smes[i].as_mut() {
                    s.blocked = false;
                }
                return Ok(());
            }
        }
        for s in self.smes.iter().flatten() {
            if s.sid == sid && s.mask == mask {
                return Err(Error::StreamInUse(sid));
            }
            // Two patterns share a StreamID when they agree on every bit neither masks.
            if (s.sid.0 as u16 ^ sid.0 as u16) & !(s.mask | mask) == 0 {
                return Err(Error::SmrConflict { sid: s.sid, mask: s.mask });
            }
        }
        let groups = self.features.num_smrg;
        let i = (0..groups).find(|&i| self.smes[i].is_none()).ok_or(Error::SmrsExhausted { groups })?;
        if self.domain(d)?.stale {
            self.invalidate_domain(d)?;
        }
        self.regs.write32(reg::s2cr(i), field(S2CR::TYPE, 0) | field(S2CR::CBNDX, cb as u32));
        self.regs.write32(reg::smr(i), field(SMR::VALID, 1) | field(SMR::MASK, mask as u32) | field(SMR::ID, sid.0));
        self.smes[i] = Some(Sme { sid, mask, cb: cb as u8, blocked: false });
        self.domain_mut(d)?.attached += 1;
        Ok(())
    }

    /// The domain `sid` (attached exactly, or by a pattern that matches it) reaches;
    /// `None` while it is blocked (routed to the sink).
    pub fn stream_domain(&self, sid: StreamId) -> Option<DomainId> {
        self.smes
            .iter()
            .flatten()
            .find(|s| (s.sid.0 as u16 ^ sid.0 as u16) & !s.mask == 0 && sid.0 <= 0xffff)
            .filter(|s| !s.blocked)
            .map(|s| DomainId(s.cb))
    }

    /// Block the pattern `sid` was attached with: its S2CR routes it to the sink bank
    /// (`sink_bank`) instead of its domain's, in one write (CBNDX), its SMR valid
    /// throughout, so the stream is never unmatched, bypassed or matched twice; then the
    /// domain's ASID is invalidated and synced, so nothing the stream cached in its
    /// bank survives. From then on its transactions fault in the sink, which records
    /// them without an interrupt: a blocked device that keeps sending does not wake the
    /// IOMMU PD (an unmatched stream raised a global fault, and an interrupt, per drain).
    /// `attach`ing the same pattern to the same domain routes it back. If the sync
    /// fails, the stream is blocked but the domain stale, and the error says so.
    pub fn block(&mut self, sid: StreamId) -> Result<(), Error> {
        self.check_usable()?;
        let i = self.smes.iter().position(|s| s.is_some_and(|s| s.sid == sid)).ok_or(Error::NotAttached(sid))?;
        let Some(sme) = self.smes[i].as_mut() else { return Err(Error::NotAttached(sid)) };
        sme.blocked = true;
        let d = DomainId(sme.cb);
        let sink = field(S2CR::TYPE, 0) | field(S2CR::CBNDX, self.sink as u32);
        self.regs.write32(reg::s2cr(i), sink);
        // The one write that takes the stream out of its domain: read back, since a
        // block reported done while the S2CR still names the domain's bank would leave
        // the device translating through everything it had mapped.
        if self.regs.read32(reg::s2cr(i)) != sink {
            self.fail(Failure::WriteNotTaken("SMMU_S2CRn (block)"));
            return Err(Error::Failed);
        }
        let asid = self.domain(d)?.asid;
        if let Err(e) = self.tlbi_asid_sync(d.cb(), asid) {
            self.domain_mut(d)?.stale = true;
            return Err(e);
        }
        Ok(())
    }

    /// Whether the pattern `sid` was attached with is blocked (routed to the sink).
    pub fn is_blocked(&self, sid: StreamId) -> bool {
        self.smes.iter().flatten().any(|s| s.sid == sid && s.blocked)
    }

    /// Detach the pattern `sid` was attached with (`attach` or `attach_masked`): SMRn is
    /// made invalid first (the streams are unmatched: with USFCFG = 1 they fault), then
    /// S2CRn faults; then the domain's ASID is invalidated and synced so no entry the
    /// streams used survives. If that sync fails, the streams are detached (they fault)
    /// but the domain is stale, and the error says so.
    pub fn detach(&mut self, sid: StreamId) -> Result<(), Error> {
        self.check_usable()?;
        let i = self.smes.iter().position(|s| s.is_some_and(|s| s.sid == sid)).ok_or(Error::NotAttached(sid))?;
        let Some(sme) = self.smes[i].take() else { return Err(Error::NotAttached(sid)) };
        self.regs.write32(reg::smr(i), 0);
        self.regs.write32(reg::s2cr(i), S2CR_FAULT);
        // Read back, as for `block`: either write alone takes the streams out of the
        // domain (unmatched, they fault with USFCFG = 1; matched, the S2CR faults them).
        let unmatched = self.regs.read32(reg::smr(i)) >> 31 == 0;
        if !unmatched && (self.regs.read32(reg::s2cr(i)) >> 16) & 0b11 != 2 {
            self.fail(Failure::WriteNotTaken("SMMU_SMRn and S2CRn (detach)"));
            return Err(Error::Failed);
        }
        let d = DomainId(sme.cb);
        let dom = self.domain_mut(d)?;
        dom.attached -= 1;
        let asid = dom.asid;
        if let Err(e) = self.tlbi_asid_sync(d.cb(), asid) {
            self.domain_mut(d)?.stale = true;
            return Err(e);
        }
        Ok(())
    }

    /// Map `[iova, iova + len)` to `[pa, pa + len)` in domain `d`. Refused, changing
    /// nothing, if the range overlaps a mapping or the driver's table pool. No
    /// invalidation: an invalid descriptor is never cached (Arm ARM D8.16). When the
    /// table pool runs short, empty tables are reclaimed (`reclaim_tables`) and the map
    /// tried once more.
    pub fn map(
        &mut self,
        d: DomainId,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        perm: Perm,
        mem: MemType,
    ) -> Result<(), Error> {
        self.check_usable()?;
        if self.pool.region().overlaps(pa, len) {
            return Err(Error::ProtectedMemory(pa));
        }
        // A TLB entry an unconfirmed unmap left could shadow the new mapping: finish that
        // invalidation first (as the SMMUv3 driver does).
        if self.domain(d)?.stale {
            self.invalidate_domain(d)?;
        }
        let cb = d.cb();
        let dom = self.domains.get_mut(cb).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)?;
        match dom.table.map(&mut self.pool, iova, pa, len, perm, mem) {
            // Tables other unmaps left empty (in any domain) hold what this map needs: take
            // them back, then try once more. So what the pool must hold is bounded by what
            // is mapped at once, not by how many places anything was ever mapped at (the
            // sizing `iommu-sdf` gives the pool assumes this, for either SMMU).
            Err(PageTableError::PoolExhausted { .. }) => {
                self.reclaim_tables()?;
                let dom = self.domains.get_mut(cb).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)?;
                dom.table.map(&mut self.pool, iova, pa, len, perm, mem)?;
            }
            r => r?,
        }
        Ok(())
    }

    /// Return to the pool every page table, in every domain, that maps nothing; returns
    /// how many. Break-before-make, as the SMMUv3 driver's `reclaim_tables`: each such
    /// table is unlinked from its parent; then each context bank that lost one gets a
    /// TLBIASID and a TLBSYNC confirmed (SMMU_CBn_TLBIASID invalidates the ASID's
    /// entries "at all levels", including walk-cache entries that point at the unlinked
    /// tables: IHI 0062D 10.8.22, and MMU-500 caches table walks, DDI 0517 3.4); a page
    /// goes back to the pool only once that sync completed, so no walk the SMMU cached
    /// can lead into a page reused as another table. If a sync does not complete, that
    /// domain's unlinked pages stay out of the pool (its limbo, holding only invalid
    /// descriptors), the domain is marked stale, and its next confirmed invalidation
    /// (`invalidate_domain`) returns them.
    pub fn reclaim_tables(&mut self) -> Result<usize, Error> {
        self.check_usable()?;
        let mut freed = 0;
        let mut first_error = None;
        for cb in 0..self.domains.len() {
            let Some(dom) = self.domains[cb].as_mut() else { continue };
            dom.table.prune(&mut self.pool);
            if dom.table.limbo_pages() == 0 {
                continue;
            }
            // Until the invalidation is confirmed, its walk caches may be stale.
            dom.stale = true;
            let asid = dom.asid;
            match self.tlbi_asid_sync(cb, asid) {
                Ok(()) => {
                    if let Some(dom) = self.domains[cb].as_mut() {
                        freed += dom.table.release_limbo(&mut self.pool);
                        dom.stale = false;
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(freed),
        }
    }

    /// Call `f` for every mapping of domain `d` (what its tables hold, not its TLB).
    pub fn for_each_mapping(&self, d: DomainId, f: impl FnMut(Leaf)) -> Result<(), Error> {
        self.domain(d)?.table.for_each_leaf(&self.pool, f);
        Ok(())
    }

    /// The leaf `iova` translates through in `d`, if any.
    pub fn translate(&self, d: DomainId, iova: Iova) -> Result<Option<Leaf>, Error> {
        Ok(self.domain(d)?.table.translate(&self.pool, iova))
    }

    /// Unmap `[iova, iova + len)` (exactly covered by mappings) and return the number of
    /// leaves removed, only once the SMMU has confirmed their invalidation: a TLBIVAL per
    /// leaf (last level: the tables stay), or one TLBIASID above
    /// `TLBI_ASID_THRESHOLD`, then TLBSYNC and a bounded wait for TLBSTATUS.SACTIVE to
    /// clear (IHI 0062D 10.8.26-27, Linux's `arm_smmu_tlb_sync_context`).
    ///
    /// If the sync does not complete, the entries are out of the tables but may still be
    /// in the TLB: the domain is marked stale (`has_stale_entries`), the error returned,
    /// and the service blocks the device until `invalidate_domain` succeeds.
    pub fn unmap(&mut self, d: DomainId, iova: Iova, len: u64) -> Result<usize, Error> {
        self.check_usable()?;
        let cb = d.cb();
        if self.domain(d)?.stale {
            self.invalidate_domain(d)?;
        }
        let dom = self.domains.get_mut(cb).and_then(Option::as_mut).ok_or(Error::NoSuchDomain)?;
        let asid = dom.asid;
        let mut leaves = [Iova(0); TLBI_ASID_THRESHOLD];
        let mut n = 0usize;
        let removed = dom.table.unmap(&mut self.pool, iova, len, |leaf| {
            if let Some(slot) = leaves.get_mut(n) {
                *slot = leaf.iova;
            }
            n += 1;
        })?;
        // Nothing written over a sync still running (`sync_idle`); the entries are out
        // of the tables, so the domain is stale until an invalidation is confirmed.
        if let Err(e) = self.sync_idle(cb) {
            if let Some(dom) = self.domains[cb].as_mut() {
                dom.stale = true;
            }
            return Err(e);
        }
        // The cleared descriptors must be visible to the walker before the TLBI.
        barrier::wmb();
        if n > TLBI_ASID_THRESHOLD {
            self.regs.write32(self.cb_reg(cb, reg::CB_TLBIASID), asid.0 as u32);
            self.stats.invalidations += 1;
        } else {
            for va in &leaves[..n] {
                // AArch64 format: VA[55:12] in [43:0], ASID in [63:48] (IHI 0062D 10.8.23).
                self.regs.write64(self.cb_reg(cb, reg::CB_TLBIVAL), (va.0 >> 12) | ((asid.0 as u64) << 48));
                self.stats.invalidations += 1;
            }
        }
        if let Err(e) = self.tlb_sync(cb) {
            if let Some(dom) = self.domains[cb].as_mut() {
                dom.stale = true;
            }
            return Err(e);
        }
        Ok(removed)
    }

    /// TLBIASID and a confirmed TLBSYNC for domain `d`; clears the stale mark.
    pub fn invalidate_domain(&mut self, d: DomainId) -> Result<(), Error> {
        self.check_usable()?;
        let asid = self.domain(d)?.asid;
        self.tlbi_asid_sync(d.cb(), asid)?;
        if let Some(dom) = self.domains[d.cb()].as_mut() {
            dom.stale = false;
            // Tables a failed `reclaim_tables` unlinked: this invalidation covers their
            // walk-cache entries too, so they may be reused now.
            dom.table.release_limbo(&mut self.pool);
        }
        Ok(())
    }

    /// Whether `d` has entries whose invalidation was not confirmed.
    pub fn has_stale_entries(&self, d: DomainId) -> Result<bool, Error> {
        Ok(self.domain(d)?.stale)
    }

    fn tlbi_asid_sync(&mut self, cb: usize, asid: Asid) -> Result<(), Error> {
        self.sync_idle(cb)?;
        barrier::wmb();
        self.regs.write32(self.cb_reg(cb, reg::CB_TLBIASID), asid.0 as u32);
        self.stats.invalidations += 1;
        self.tlb_sync(cb)
    }

    /// Bank `cb`'s TLBSTATUS.SACTIVE reads 0: no sync of the bank is still running. A
    /// sync that timed out may still be: what a TLBSYNC written over it does is not
    /// something this driver relies on (SACTIVE could then be the old sync's, which
    /// covers none of the invalidations written since, and a vendor tree of Linux,
    /// Qualcomm's, saw a TBU's queue fill and the next sync write stall the CPU). So
    /// nothing is written to the bank, invalidation or sync, until the old one is seen
    /// completed (bounded by `Config::poll_limit`, a timeout otherwise).
    fn sync_idle(&mut self, cb: usize) -> Result<(), Error> {
        let status = self.cb_reg(cb, reg::CB_TLBSTATUS);
        let regs = &self.regs;
        let idle = wait(self.config.poll_limit, "SMMU_CBn_TLBSTATUS.SACTIVE", || regs.read32(status) & 1 == 0);
        match idle {
            // The sync that last timed out, if it was this bank's, has completed since:
            // the SMMU answers.
            Ok(()) if self.timed_out_at.is_some_and(|(_, at)| at == cb) => self.timed_out_at = None,
            Ok(()) => {}
            Err(e) => return Err(self.timed_out(e, cb)),
        }
        Ok(())
    }

    fn tlb_sync(&mut self, cb: usize) -> Result<(), Error> {
        self.sync_idle(cb)?;
        let sync = self.cb_reg(cb, reg::CB_TLBSYNC);
        let status = self.cb_reg(cb, reg::CB_TLBSTATUS);
        self.regs.write32(sync, u32::MAX);
        let regs = &self.regs;
        match wait(self.config.poll_limit, "SMMU_CBn_TLBSTATUS.SACTIVE", || regs.read32(status) & 1 == 0) {
            Ok(()) => {
                self.stats.syncs += 1;
                Ok(())
            }
            Err(e) => Err(self.timed_out(e, cb)),
        }
    }

    /// A wait on bank `cb`'s TLB sync passed its bound: counted, and if the last one did
    /// too with no sync completed since (none waited on completed, and the sync that
    /// timed out then still reads active), the SMMU no longer answers and nothing it was
    /// asked to invalidate is known gone: failed closed (as the SMMUv3 driver's
    /// escalation). One timeout stays survivable (the domain is stale, invalidated before
    /// its next use). The caller still gets the `Timeout`; every later operation `Failed`.
    #[cold]
    fn timed_out(&mut self, e: Error, cb: usize) -> Error {
        self.stats.timeouts += 1;
        let syncs = self.stats.syncs;
        let again = self
            .timed_out_at
            .is_some_and(|(at, prev)| at == syncs && self.regs.read32(self.cb_reg(prev, reg::CB_TLBSTATUS)) & 1 != 0);
        self.timed_out_at = Some((syncs, cb));
        if again {
            self.fail(Failure::Unanswered);
        }
        e
    }

    /// Every client transaction faults from here (`deny_all`: USFCFG, every S2CR
    /// faulting, every SMR invalid, CLIENTPD = 0, read back), once; nothing is written
    /// to the SMMU again. No invalidation is waited for: no stream is routed to a context
    /// bank any more, so nothing the TLBs hold is used, and a sync may be what failed.
    fn fail(&mut self, why: Failure) {
        if self.failed.is_none() {
            self.failed = Some((why, deny_all(&self.regs)));
        }
    }

    /// `Err(Failed)` once the SMMU was failed closed.
    fn check_usable(&self) -> Result<(), Error> {
        match self.failed {
            Some(_) => Err(Error::Failed),
            None => Ok(()),
        }
    }

    /// Whether the driver failed the SMMU closed while serving, and if so why and what
    /// failing it closed gave: `Ok` when every stream now faults (read back), or the
    /// register that did not read back.
    pub fn failure(&self) -> Option<(Failure, Result<(), Error>)> {
        self.failed
    }

    /// The fault recorded in `d`'s context bank, if any, decoded and cleared (FSR is
    /// write-1-to-clear: the value read is written back, so a fault recorded in between
    /// stays for the next call).
    pub fn context_fault(&mut self, d: DomainId) -> Result<Option<ContextFault>, Error> {
        self.domain(d)?;
        Ok(self.read_context_fault(d.cb()))
    }

    fn read_context_fault(&mut self, cb: usize) -> Option<ContextFault> {
        let fsr_reg = self.cb_reg(cb, reg::CB_FSR);
        let fsr = self.regs.read32(fsr_reg);
        if fsr & fsr::ALL == 0 {
            return None;
        }
        let far = self.regs.read64(self.cb_reg(cb, reg::CB_FAR));
        let fsynr0 = self.regs.read32(self.cb_reg(cb, reg::CB_FSYNR0));
        let cbfrsynra = self.regs.read32(self.features.layout.gr1(reg::cbfrsynra(cb)));
        self.regs.write32(fsr_reg, fsr);
        self.stats.context_faults += 1;
        ContextFault::decode(cb as u8, fsr, far, fsynr0, cbfrsynra)
    }

    /// The global fault recorded, if any, decoded and cleared.
    pub fn global_fault(&mut self) -> Option<GlobalFault> {
        self.take_global_fault().flatten()
    }

    /// `None` if sGFSR held nothing; else the fault decoded (if it decodes), cleared.
    fn take_global_fault(&mut self) -> Option<Option<GlobalFault>> {
        let sgfsr = self.regs.read32(reg::SGFSR);
        if sgfsr & sgfsr::ALL == 0 {
            return None;
        }
        let fault = GlobalFault::decode(
            sgfsr,
            self.regs.read64(reg::SGFAR),
            self.regs.read32(reg::SGFSYNR0),
            self.regs.read32(reg::SGFSYNR1),
        );
        self.regs.write32(reg::SGFSR, sgfsr);
        self.stats.global_faults += 1;
        Some(fault)
    }

    /// Every fault recorded (global, then each domain's context bank), each decoded,
    /// cleared and passed to `f`; returns how many. What the IOMMU PD calls on the
    /// SMMU's global or context interrupt (MMU-500 may share one line for all).
    ///
    /// **The global interrupt is paced.** A stream no SMR matches (a StreamID nobody
    /// described, sGFSR.USF) faults globally, and sGFSR holds one fault at a time (a
    /// later one only sets MULTI, IHI 0062D 10.6.14): cleared at each drain, it would
    /// raise the (level) interrupt again with the next transaction, so a device sending
    /// on an undescribed StreamID would wake the IOMMU PD once per drain for as long as
    /// it sends. So a drain that finds a global fault clears sCR0.GFIE (faults are still
    /// recorded, and still abort: GFRE), and GFIE is set again only by a drain that finds
    /// sGFSR empty, which is a wake-up for another reason (a context fault, or the
    /// caller's poll). **While `global_interrupt_paced`, the caller must poll**: the
    /// interrupt no longer tells it of a global fault, and no drain it does not make
    /// turns GFIE on again. Global faults then cost at most one wake-up per poll, plus
    /// one for each wake-up of another cause that found sGFSR empty; the drains in
    /// between still read them, one record (with MULTI) each. Context faults are not paced: a described
    /// device's faults reach its owner as before.
    pub fn drain_faults(&mut self, mut f: impl FnMut(Fault)) -> u32 {
        // Failed closed: every stream faults, globally; nothing is read or written again.
        if self.failed.is_some() {
            return 0;
        }
        let mut n = 0;
        let global = self.take_global_fault();
        if let Some(Some(g)) = global {
            f(Fault::Global(g));
            n += 1;
            if g.sgfsr & sgfsr::CONFIGURATION != 0 {
                self.fail(Failure::Configuration { sgfsr: g.sgfsr });
                return n;
            }
        }
        self.pace_global_interrupt(global.is_some());
        for cb in 0..self.features.num_cb {
            if self.domains[cb].is_some() {
                if let Some(c) = self.read_context_fault(cb) {
                    f(Fault::Context(c));
                    n += 1;
                }
            }
        }
        n
    }

    /// sCR0.GFIE off while global faults keep coming (`drain_faults`), on again once a
    /// drain found none. sCR0 is read, modified and written: nothing else changes.
    fn pace_global_interrupt(&mut self, recorded: bool) {
        if recorded == self.global_paced {
            return;
        }
        let gfie = field(SCR0::GFIE, 1);
        let scr0 = self.regs.read32(reg::SCR0);
        self.regs.write32(reg::SCR0, if recorded { scr0 & !gfie } else { scr0 | gfie });
        self.global_paced = recorded;
    }

    /// Whether `drain_faults` has the global fault interrupt off (sCR0.GFIE = 0) because
    /// the last drain found a global fault.
    pub fn global_interrupt_paced(&self) -> bool {
        self.global_paced
    }
}

/// TCR2.SEP = 0b111: sign extension from the upstream bus's top bit (Linux's
/// `ARM_SMMU_TCR2_SEP_UPSTREAM`).
const TCR2_SEP_UPSTREAM: u32 = 0b111 << 15;

/// Context bank `cb` made an AArch64 (CBA2R.VA64) stage-1 bank with stage 2 bypassed
/// (CBAR.TYPE = 1), with the bypass attributes Linux uses (outer non-shareable,
/// write-back), which apply to nothing stage 1 maps: every domain's bank and the sink.
fn stage1_bank(regs: &impl Mmio, layout: crate::mmio::Layout, cb: usize) {
    regs.write32(layout.gr1(reg::cba2r(cb)), field(CBA2R::VA64, 1));
    regs.write32(layout.gr1(reg::cbar(cb)), field(CBAR::TYPE, 1) | field(CBAR::BPSHCFG, 3) | field(CBAR::MEMATTR, 0xf));
}

/// Program the sink bank (the last one, `Smmu::sink_bank`) while no stream can reach it
/// (every SMR invalid or routed elsewhere): SCTLR = 0 first, then the registers as for a
/// domain (Linux's `arm_smmu_write_context_bank` order), and SCTLR last. Each field, IHI
/// 0062D 10.8 and Linux's `arm-smmu.h`:
/// - CBAR.TYPE = stage 1 with stage 2 bypassed, CBA2R.VA64 = 1 (AArch64 format);
/// - TCR.EPD0 = EPD1 = 1: a TLB miss on either range is a translation fault, no walk (as
///   TCR_EL1.EPD0/1); TTBR0 = 0 is never read. Its ASID is its bank number, which no
///   domain uses, so it hits nothing a domain cached;
/// - SCTLR.M = 1 (with M = 0 the bank would pass transactions through untranslated),
///   CFCFG = 0 (terminate, never stall), CFRE = 1 (the device gets an abort, as the
///   global fault of an unmatched stream gives it with sCR0.GFRE = 1, rather than reads
///   of zero and dropped writes), CFIE = 0 (no interrupt: the point of the sink).
///
/// Then SCTLR, TCR, CBAR and CBA2R are read back: a sink that does not translate (M, EPD0,
/// EPD1, stage 1 in AArch64 format) would let every blocked stream through, so `init`
/// fails closed instead (`Error::NotClosed`).
fn program_sink(regs: &impl Mmio, f: &Features, ias_bits: u32) -> Result<(), Error> {
    let (layout, cb) = (f.layout, f.num_cb - 1);
    regs.write32(layout.cb(cb, reg::CB_SCTLR), 0);
    stage1_bank(regs, layout, cb);
    regs.write32(layout.cb(cb, reg::CB_TCR2), TCR2_SEP_UPSTREAM);
    let tcr =
        field(crate::cb::TCR::T0SZ, 64 - ias_bits) | field(crate::cb::TCR::EPD0, 1) | field(crate::cb::TCR::EPD1, 1);
    regs.write32(layout.cb(cb, reg::CB_TCR), tcr);
    regs.write64(layout.cb(cb, reg::CB_TTBR0), (cb as u64) << 48);
    regs.write64(layout.cb(cb, reg::CB_TTBR1), 0);
    regs.write32(layout.cb(cb, reg::CB_FSR), fsr::ALL);
    let sctlr = field(crate::cb::SCTLR::M, 1) | field(crate::cb::SCTLR::CFRE, 1);
    regs.write32(layout.cb(cb, reg::CB_SCTLR), sctlr);
    let m = field(crate::cb::SCTLR::M, 1);
    let epd = field(crate::cb::TCR::EPD0, 1) | field(crate::cb::TCR::EPD1, 1);
    let stage1 = field(CBAR::TYPE, 3);
    if regs.read32(layout.cb(cb, reg::CB_SCTLR)) & m != m
        || regs.read32(layout.cb(cb, reg::CB_TCR)) & epd != epd
        || regs.read32(layout.gr1(reg::cbar(cb))) & stage1 != field(CBAR::TYPE, 1)
        || regs.read32(layout.gr1(reg::cba2r(cb))) & field(CBA2R::VA64, 1) == 0
    {
        return Err(Error::NotClosed("the sink context bank"));
    }
    Ok(())
}

fn features_idr7(f: &Features) -> u32 {
    ((f.revision.0 as u32) << 4) | f.revision.1 as u32
}

fn sid_mask(bits: u32) -> u16 {
    if bits >= 16 {
        u16::MAX
    } else {
        ((1u32 << bits) - 1) as u16
    }
}
