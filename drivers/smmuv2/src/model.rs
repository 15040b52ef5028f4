//! A strict host model of an SMMUv2 as MMU-500 implements it (feature `model`), for
//! tests of code that drives it.
//!
//! It implements `Mmio` and behaves as the architecture (IHI 0062D) *allows*, not as one
//! implementation happens to:
//! - registers as the ID profile says: IDRs read-only, sGFSR and CBn_FSR
//!   write-1-to-clear, SMR ID/MASK bits above IDR0.NUMSIDB not implemented, writes to
//!   registers past NUMSMRG/NUMCB or into IMPLEMENTATION DEFINED pages recorded as
//!   violations; sCR0 resets with CLIENTPD = 1 (bypass) and SMRs/S2CRs as the profile's
//!   reset values (UNKNOWN in the architecture: tests can preset anything);
//! - a transaction is matched against every valid SMR (`(StreamID ^ ID) & !MASK == 0`,
//!   2.4); **two matches are a stream-match conflict, which the architecture leaves
//!   UNPREDICTABLE unless sCR0.SMCFCFG = 1: the model answers `Outcome::Unpredictable`
//!   (with SMCFCFG = 1, a global fault, sGFSR.SMCF) and records a violation**,
//!   as it does the moment two valid SMRs can match one StreamID; no match with
//!   USFCFG = 1 faults and records sGFSR.USF with the StreamID; one match goes where its
//!   S2CR says (fault, bypass, or a context bank);
//! - a context bank with SCTLR.M = 0 passes the transaction through untranslated (its
//!   stage 1 is off), which is what makes routing to an unprogrammed bank dangerous;
//!   with M = 1 it looks up its TLB and otherwise walks the AArch64 4 KiB tables in
//!   memory (TTBR0, TCR.T0SZ), decoding descriptors with literal bit positions from the
//!   Arm ARM, not the driver's constants; a valid leaf is cached in the TLB, and every
//!   table descriptor the walk read in a walk cache (a later walk starts from the deepest
//!   table cached for the address, reading whatever that page holds by then), **each
//!   until an invalidation that covers it completes**: TLBIASID and TLBIVA every level,
//!   TLBIVAL the last level only, so a table unlinked under a TLBIVAL alone stays
//!   reachable;
//! - entries are tagged by VMID (CBAR.VMID) and ASID (TTBR0, 8 bits unless TCR2.AS), and
//!   by bank only with SCTLR.ASIDPNE = 1, which MMU-500 implements as RAZ/WI: banks with
//!   one VMID share the ASID namespace, and one bank's entry is hit from another that
//!   uses the same ASID; a TLBI names entries by the bank's tag when it is written;
//! - with CBn_ACTLR.CPRE = 1 (MMU-500's next-page prefetcher, on at reset) a TLB miss
//!   also caches the next page's translation;
//! - TLBIVA(L)/TLBIASID/TLBIALLNSNH are queued; they take effect only when a TLBSYNC
//!   (for that bank) or sTLBGSYNC (for the global ones) completes, which is after a few
//!   status reads (TLBSTATUS.SACTIVE / sTLBGSTATUS.GSACTIVE read 1 until then), or never
//!   once `stall_syncs` is set: a driver that does not wait, or does not invalidate,
//!   leaves a translation tests can see;
//! - faults are recorded as the architecture says: FSR (MULTI when one is already
//!   recorded), FAR, FSYNR0 (PLVL, WNR, PNU), CBFRSYNRAn.StreamID; sGFSR/sGFSYNR0/1/sGFAR;
//!   whatever SCTLR.CFRE says: CFRE only decides whether the client gets an abort
//!   (`Outcome::ContextFault`) or a read-as-zero/write-ignored termination
//!   (`Outcome::RazWi`) (SMMU_CBn_SCTLR.CFRE, "Context fault report enable: 0 = do not
//!   return an abort when a context fault occurs"; GFRE likewise for global faults);
//! - an interrupt is raised (`interrupts`) when a fault is recorded into a status
//!   register that held none, in a context bank with SCTLR.CFIE = 1 or globally with
//!   sCR0.GFIE = 1 ("0 = do not raise an interrupt when a context fault occurs"): the
//!   line is level, asserted while the status register holds a fault, so the IOMMU PD
//!   is woken once per fault recorded after it cleared the last (a fault that finds the
//!   register full only sets MULTI);
//! - a context bank with TCR.EPD0 = 1 walks nothing for TTBR0's range: a TLB miss there
//!   is a translation fault (as TCR_EL1.EPD0); an address whose sign bit (TCR2.SEP: the
//!   upstream bus's top bit, IDR2.UBS) is set is in TTBR1's range, where EPD1 = 1 faults
//!   likewise and a walk (EPD1 = 0) is a violation, since the driver builds no TTBR1
//!   tables; a walk from a table address of 0 is one too (`Outcome::Unpredictable`);
//! - a sync covers the invalidations written before it and none after; one written
//!   while the bank's (or the global) sync is still running is ignored (`start_sync`);
//! - the interrupt is level (`interrupt_asserted`), and setting GFIE or CFIE while the
//!   status register holds a fault raises it;
//! - MMU-500: CBn_ACTLR writes do not take while sACR.CACHE_LOCK = 1 (DDI 0517), and
//!   ACTLR.CPRE resets to 1.
//!
//! Memory is the host's: physical addresses are host pointers (as in `smmuv3::model`).
//! Not modelled: stalling, stage 2, the errata themselves (only the prefetcher they are
//! worked around by), and what an S2CR of type fault records (the transaction is
//! terminated; recording it is IMPLEMENTATION DEFINED enough that the model records
//! nothing).

extern crate std;

use core::cell::RefCell;
use std::collections::HashMap;
use std::format;
use std::string::String;
use std::vec::Vec;

use crate::mmio::{reg, Block, Layout, Mmio};

/// ID registers and implementation-defined reset values of one SMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// For messages.
    pub name: &'static str,
    /// SMMU_IDR0.
    pub idr0: u32,
    /// SMMU_IDR1.
    pub idr1: u32,
    /// SMMU_IDR2.
    pub idr2: u32,
    /// SMMU_IDR7.
    pub idr7: u32,
    /// MMU-500's sACR reset value (CACHE_LOCK set from r2p0, DDI 0517).
    pub sacr: u32,
}

const fn idr0(num_smrg: u32, sid_bits: u32, num_irpt: u32) -> u32 {
    // S1TS | S2TS | NTS | SMS (bits 30..27), ATOSNS = 0, PTFS = 0 (both AArch32 formats),
    // CTTW (14), BTM (13).
    (1 << 30)
        | (1 << 29)
        | (1 << 28)
        | (1 << 27)
        | (num_irpt << 16)
        | (1 << 14)
        | (1 << 13)
        | (sid_bits << 9)
        | num_smrg
}

/// Xilinx Zynq UltraScale+ MPSoC's MMU-500 (zcu102, ultra96v2, kria_k26). Sources:
/// - address 0xfd800000, `reg` size 0x20000 (128 KiB), one global and 16 context
///   interrupts: Linux's `arch/arm64/boot/dts/xilinx/zynqmp.dtsi` (`smmu: iommu@fd800000`,
///   `compatible = "arm,mmu-500"`). 128 KiB = 2 x NUMPAGE x 4 KiB: PAGESIZE = 0,
///   NUMPAGENDXB = 3 (NUMPAGE = 16), and 16 context banks (NUMCB = 16, NUMIRPT = 16);
/// - SMR ID and MASK 15 bits wide (NUMSIDB = 15): Xilinx UG1087, SMMU_SMRn (SMMU500);
///   StreamIDs are TBU number [14:10] and master ID [9:0] (UG1085, "SMMU Architecture");
/// - AArch64 tables up to a 49-bit VA and 48-bit PA (UBS = 49, OAS = 48): UG1085,
///   "SMMU Architecture"; IAS taken as 48;
/// - 48 stream match register groups: UG1085's SMMU chapter (not re-checked here
///   against a register dump: a bring-up reads IDR0.NUMSMRG);
/// - not found in a published source, assumed and to be checked at bring-up: NUMS2CB =
///   0, CTTW = 1 (walks coherent through the CCI), BTM = 1, revision r2p1
///   (IDR7 = 0x21), PTFSV8_4KB and _64KB.
pub const ZYNQMP: Profile = Profile {
    name: "ZynqMP MMU-500",
    idr0: idr0(48, 15, 16),
    idr1: (3 << 28) | 16,
    idr2: (1 << 14) | (1 << 12) | (5 << 8) | (5 << 4) | 5,
    idr7: 0x21,
    sacr: 1 << 26,
};

/// NXP i.MX8QXP's MMU-500 (tqma8xqp1gb). Sources:
/// - address 0x51400000, 0x40000 bytes: NXP's i.MX8 device trees
///   (`smmu: iommu@51400000`, `compatible = "arm,mmu-500"`), mapped the same by
///   Kernkonzept's Fiasco i.MX8 BSP (`iommu-arm-smmu-500-imx.cpp`), which also shows the
///   SMR mask NXP's StreamIDs use (0x7f80: the SCU assigns 7-bit IDs). 256 KiB with
///   4 KiB pages: NUMPAGENDXB = 4 (NUMPAGE = 32), so at most 32 context banks, taken as
///   NUMCB = 32;
/// - not found in a published source, assumed and to be checked at bring-up: NUMSMRG
///   = 32, NUMSIDB = 15 (MMU-500's maximum), OAS = 48, UBS = 49, NUMS2CB = 0, CTTW = 1,
///   revision r2p4 (IDR7 = 0x24).
pub const IMX8QXP: Profile = Profile {
    name: "i.MX8QXP MMU-500",
    idr0: idr0(32, 15, 32),
    idr1: (4 << 28) | 32,
    idr2: (1 << 14) | (1 << 12) | (5 << 8) | (5 << 4) | 5,
    idr7: 0x24,
    sacr: 1 << 26,
};

/// What a transaction through the model gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Translated by a context bank to this physical address.
    Translated(u64),
    /// Passed through untranslated (CLIENTPD = 1, USFCFG = 0, an S2CR of type bypass,
    /// or a context bank with SCTLR.M = 0).
    Bypass(u64),
    /// Terminated by context bank `cb` without an abort (SCTLR.CFRE = 0): a read returns
    /// zeros, a write is dropped; the fault is recorded all the same.
    RazWi {
        /// The bank.
        cb: usize,
        /// The FSR bit recorded.
        fsr: u32,
    },
    /// Faulted in context bank `cb` (FSR bit), an abort returned to the client.
    ContextFault {
        /// The bank.
        cb: usize,
        /// The FSR bit recorded.
        fsr: u32,
    },
    /// Faulted globally (sGFSR bit), such as an unmatched stream with USFCFG = 1.
    GlobalFault(u32),
    /// Terminated by an S2CR of type fault.
    Terminated,
    /// Two SMRs matched: UNPREDICTABLE (a violation is recorded).
    Unpredictable,
}

impl Outcome {
    /// The transaction reached memory.
    pub fn reached_memory(&self) -> bool {
        matches!(self, Outcome::Translated(_) | Outcome::Bypass(_))
    }
}

/// What a TLB or walk-cache entry is tagged with: the bank's VMID (CBAR.VMID) and the
/// ASID (TTBR0.ASID, 8 bits with TCR2.AS = 0), and the bank only when SCTLR.ASIDPNE = 1
/// made the ASID private to it. MMU-500 implements ASIDPNE as RAZ/WI (the SMMU_CBn_SCTLR
/// maps of MMU-500 integrations list it read-only 0, e.g. Intel's Stratix 10 HPS register
/// map): there, banks with one VMID share the ASID namespace, and an entry one bank
/// cached is one another bank with that VMID and ASID hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    vmid: u16,
    asid: u16,
    bank: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
struct TlbEntry {
    tag: Tag,
    va: u64,
    size: u64,
    pa: u64,
    writable: bool,
}

/// A walk-cache entry: a table descriptor the walk read, kept until an invalidation that
/// covers it completes (IHI 0062D: TLBIASID and TLBIVA invalidate every level, TLBIVAL
/// only the last; MMU-500 caches walks, DDI 0517). `base` is the first IOVA the table
/// at `table` translates, `level` its level.
#[derive(Debug, Clone, Copy)]
struct WalkEntry {
    tag: Tag,
    level: u64,
    base: u64,
    table: u64,
}

impl WalkEntry {
    fn covers(&self, va: u64) -> bool {
        va >> table_span_shift(self.level) == self.base >> table_span_shift(self.level)
    }
}

/// log2 of the IOVA span one table of `level` (1..=3) translates, 4 KiB granule.
const fn table_span_shift(level: u64) -> u64 {
    12 + 9 * (4 - level)
}

#[derive(Debug, Clone, Copy)]
enum Inval {
    Asid(Tag),
    Va { tag: Tag, va: u64, last_level: bool },
}

/// A sync written and not yet completed.
#[derive(Debug, Default)]
struct SyncOp {
    reads_left: u32,
    /// A context bank's: the invalidations queued when it was written.
    covers: Vec<Inval>,
    /// The global one's: whether a TLBIALLNSNH was queued when it was written.
    covers_all: bool,
}

#[derive(Debug, Default)]
struct State {
    regs: HashMap<usize, u64>,
    tlb: Vec<TlbEntry>,
    walks: Vec<WalkEntry>,
    pending_global: bool,
    pending_cb: Vec<(usize, Inval)>,
    /// Syncs running, per bank (`None` key: global): status reads left before it
    /// completes, and the invalidations it covers (those written before it).
    syncing: HashMap<Option<usize>, SyncOp>,
    stall_syncs: bool,
    /// Registers whose writes do not take (`ignore_writes`).
    stuck: Vec<usize>,
    /// Memory as a non-coherent SMMU sees it (`non_coherent`).
    poc: Option<&'static smmuv3::model::PocMemory>,
    violations: Vec<String>,
    writes: Vec<(usize, u64)>,
    /// Interrupts raised (`Mmu500Model::interrupts`).
    interrupts: u64,
}

/// The model. Interior mutability: `Mmio` takes `&self`, like real registers.
#[derive(Debug)]
pub struct Mmu500Model {
    profile: Profile,
    layout: Layout,
    state: RefCell<State>,
}

/// Where a stream's transactions go (`Mmu500Model::route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Untranslated: sCR0.CLIENTPD, an unmatched stream with sCR0.USFCFG = 0, an S2CR of
    /// type bypass, or a context bank with stage 1 off.
    Bypass,
    /// Faulted without a translation: an unmatched stream with USFCFG = 1, an S2CR of
    /// type fault, or one naming a bank the SMMU does not have.
    Fault,
    /// Through this context bank, stage 1 on.
    Bank(usize),
    /// More than one valid SMR matches it.
    Unpredictable,
}

/// What the stream-mapping registers make of one StreamID.
enum Matched {
    ClientPd,
    Unmatched { fault: bool },
    S2cr(u64),
    Many(Vec<usize>),
}

/// Status reads a sync reports busy before it completes.
const SYNC_READS: u32 = 2;

const SCR0_CLIENTPD: u64 = 1;
const SCR0_GFIE: u64 = 1 << 2;
const SCR0_USFCFG: u64 = 1 << 10;
const SCR0_SMCFCFG: u64 = 1 << 21;
const SCTLR_CFRE: u64 = 1 << 5;
const SCTLR_CFIE: u64 = 1 << 6;
const TCR_EPD0: u64 = 1 << 7;
const TCR_EPD1: u64 = 1 << 23;
/// TTBRn's table address bits.
const TTBR_BADDR: u64 = 0x0000_ffff_ffff_f000;

impl Mmu500Model {
    /// A model with `profile`'s ID registers, as at reset: sCR0.CLIENTPD = 1 (every
    /// transaction bypasses), SMRs invalid, S2CRs zero, CBn_ACTLR.CPRE = 1.
    pub fn new(profile: Profile) -> Self {
        let layout = Layout::from_idr1(profile.idr1);
        let model = Self { profile, layout, state: RefCell::new(State::default()) };
        {
            let mut s = model.state.borrow_mut();
            s.regs.insert(reg::SCR0, SCR0_CLIENTPD);
            s.regs.insert(reg::SACR, profile.sacr as u64);
            for n in 0..model.num_cb() {
                s.regs.insert(layout.cb(n, reg::CB_ACTLR), crate::errata::ACTLR_CPRE as u64);
            }
        }
        model
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The register layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn num_smrg(&self) -> usize {
        (self.profile.idr0 & 0xff) as usize
    }

    fn num_cb(&self) -> usize {
        (self.profile.idr1 & 0xff) as usize
    }

    fn sid_mask(&self) -> u64 {
        (1 << ((self.profile.idr0 >> 9) & 0xf)) - 1
    }

    /// Set a register without side effects (firmware's leftovers).
    pub fn preset(&self, offset: usize, value: u64) {
        self.state.borrow_mut().regs.insert(offset, value);
    }

    /// A register's current value, without side effects.
    pub fn peek(&self, offset: usize) -> u64 {
        self.state.borrow().regs.get(&offset).copied().unwrap_or(0)
    }

    /// From now on no TLBSYNC or sTLBGSYNC completes (status reads 1 forever) and no
    /// queued invalidation takes effect: an SMMU that lost a sync.
    pub fn stall_syncs(&self, stall: bool) {
        self.state.borrow_mut().stall_syncs = stall;
    }

    /// Time passes: every sync still running completes, its invalidations taking effect
    /// (an SMMU that held its syncs and works again).
    pub fn finish_syncs(&self) {
        let running: Vec<SyncOp> = self.state.borrow_mut().syncing.drain().map(|(_, sync)| sync).collect();
        for sync in running {
            self.complete_sync(sync);
        }
    }

    /// From now on writes to the register at `offset` do not take: it keeps its value (a
    /// register Secure software owns, or one that did not reset as the driver assumes).
    pub fn ignore_writes(&self, offset: usize) {
        self.state.borrow_mut().stuck.push(offset);
    }

    /// From now on the SMMU's walks do not snoop the CPU's caches: they read `poc`, the
    /// memory at the point of coherency, which changes only when the CPU cleans a line
    /// to it (through `poc` as the driver's `CacheOps`) or a line is evicted (a test
    /// calling `poc`'s `clean` itself). So it is on a board whose device tree does not
    /// say `dma-coherent`, or where seL4 maps the tables Non-shareable (no SMP).
    pub fn non_coherent(&self, poc: &'static smmuv3::model::PocMemory) {
        self.state.borrow_mut().poc = Some(poc);
    }

    /// Rules of the architecture the driver broke, in order.
    pub fn violations(&self) -> Vec<String> {
        self.state.borrow().violations.clone()
    }

    /// Every register write so far, in order.
    pub fn writes(&self) -> Vec<(usize, u64)> {
        self.state.borrow().writes.clone()
    }

    /// Interrupts the SMMU raised so far, global and context (on ZynqMP all on one line):
    /// each is a wake-up of the IOMMU PD. Raised when a fault is recorded into an empty
    /// sGFSR with sCR0.GFIE = 1, or an empty CBn_FSR with SCTLR.CFIE = 1.
    pub fn interrupts(&self) -> u64 {
        self.state.borrow().interrupts
    }

    /// Whether the interrupt line is asserted now: MMU-500's fault interrupts are level
    /// (the ZynqMP device tree gives SPI 155 as level-high), asserted while sGFSR holds a
    /// fault with sCR0.GFIE = 1, or a context bank's FSR holds one with SCTLR.CFIE = 1.
    /// A handler that acknowledges the interrupt while this holds is woken again at once:
    /// tests count the IOMMU PD's wake-ups by it, not by `interrupts` alone.
    pub fn interrupt_asserted(&self) -> bool {
        let l = self.layout;
        let global =
            self.peek(reg::SGFSR) & crate::fault::sgfsr::ALL as u64 != 0 && self.peek(reg::SCR0) & SCR0_GFIE != 0;
        global
            || (0..self.num_cb()).any(|n| {
                self.peek(l.cb(n, reg::CB_FSR)) & crate::fault::fsr::ALL as u64 != 0
                    && self.peek(l.cb(n, reg::CB_SCTLR)) & SCTLR_CFIE != 0
            })
    }

    /// Translations the TLB holds.
    pub fn tlb_entries(&self) -> usize {
        self.state.borrow().tlb.len()
    }

    fn violation(&self, what: String) {
        self.state.borrow_mut().violations.push(what);
    }

    /// Valid SMRs as (index, id, mask).
    fn valid_smrs(&self) -> Vec<(usize, u64, u64)> {
        (0..self.num_smrg())
            .filter_map(|i| {
                let v = self.peek(reg::smr(i));
                (v >> 31 & 1 == 1).then_some((i, v & 0x7fff, (v >> 16) & 0x7fff))
            })
            .collect()
    }

    /// Whether `sid` could be matched by two valid SMRs at once.
    fn check_conflicts(&self) {
        let smrs = self.valid_smrs();
        for (a, &(i, id_i, mask_i)) in smrs.iter().enumerate() {
            for &(j, id_j, mask_j) in &smrs[a + 1..] {
                if (id_i ^ id_j) & !(mask_i | mask_j) & self.sid_mask() == 0 {
                    self.violation(format!("SMR{i} and SMR{j} both match StreamID {id_i:#x}: UNPREDICTABLE"));
                }
            }
        }
    }

    /// A device on stream `sid` reads (`write` = false) or writes `iova`: what the SMMU
    /// does with the transaction, recording faults as the hardware would.
    pub fn access(&self, sid: u32, iova: u64, write: bool) -> Outcome {
        let sid = sid as u64 & self.sid_mask();
        match self.matched(sid) {
            Matched::ClientPd | Matched::Unmatched { fault: false } => Outcome::Bypass(iova),
            Matched::Unmatched { fault: true } => {
                self.record_global(crate::fault::sgfsr::USF, sid, iova, write);
                Outcome::GlobalFault(crate::fault::sgfsr::USF)
            }
            Matched::S2cr(s2cr) => match (s2cr >> 16) & 0b11 {
                0 => self.translate((s2cr & 0xff) as usize, sid, iova, write),
                1 => Outcome::Bypass(iova),
                _ => Outcome::Terminated,
            },
            // With sCR0.SMCFCFG = 1 a stream-match conflict is a global fault (SMCF), the
            // transaction terminated; only with 0 is it UNPREDICTABLE (IHI 0062D 10.6.1).
            // Either way the registers hold a conflict, which the driver must never write.
            Matched::Many(matches) if self.peek(reg::SCR0) & SCR0_SMCFCFG != 0 => {
                self.violation(format!("StreamID {sid:#x} matched SMRs {matches:?}: a stream-match conflict"));
                self.record_global(crate::fault::sgfsr::SMCF, sid, iova, write);
                Outcome::GlobalFault(crate::fault::sgfsr::SMCF)
            }
            Matched::Many(matches) => {
                self.violation(format!("StreamID {sid:#x} matched SMRs {matches:?}: UNPREDICTABLE"));
                Outcome::Unpredictable
            }
        }
    }

    /// Where a transaction of `sid` would go now, read from the registers with no
    /// transaction made (nothing recorded, nothing cached): for tests of the stream
    /// mapping itself rather than of what a device reaches.
    pub fn route(&self, sid: u32) -> Route {
        match self.matched(sid as u64 & self.sid_mask()) {
            Matched::ClientPd | Matched::Unmatched { fault: false } => Route::Bypass,
            Matched::Unmatched { fault: true } => Route::Fault,
            Matched::S2cr(s2cr) => match (s2cr >> 16) & 0b11 {
                0 => {
                    let cb = (s2cr & 0xff) as usize;
                    if cb >= self.num_cb() {
                        Route::Fault
                    } else if self.peek(self.layout.cb(cb, reg::CB_SCTLR)) & 1 == 0 {
                        // Stage 1 off, stage 2 bypassed: untranslated.
                        Route::Bypass
                    } else {
                        Route::Bank(cb)
                    }
                }
                1 => Route::Bypass,
                _ => Route::Fault,
            },
            Matched::Many(_) => Route::Unpredictable,
        }
    }

    /// Which stream-mapping entry `sid` (already masked to the StreamID width) meets.
    fn matched(&self, sid: u64) -> Matched {
        let scr0 = self.peek(reg::SCR0);
        if scr0 & SCR0_CLIENTPD != 0 {
            return Matched::ClientPd;
        }
        let matches: Vec<usize> = self
            .valid_smrs()
            .into_iter()
            .filter(|&(_, id, mask)| (sid ^ id) & !mask & self.sid_mask() == 0)
            .map(|(i, _, _)| i)
            .collect();
        match matches.as_slice() {
            [] => Matched::Unmatched { fault: scr0 & SCR0_USFCFG != 0 },
            [i] => Matched::S2cr(self.peek(reg::s2cr(*i))),
            _ => Matched::Many(matches),
        }
    }

    fn record_global(&self, bit: u32, sid: u64, iova: u64, write: bool) {
        let mut s = self.state.borrow_mut();
        let sgfsr = s.regs.get(&reg::SGFSR).copied().unwrap_or(0);
        if sgfsr & crate::fault::sgfsr::ALL as u64 != 0 {
            s.regs.insert(reg::SGFSR, sgfsr | crate::fault::sgfsr::MULTI as u64);
            return;
        }
        s.regs.insert(reg::SGFSR, bit as u64);
        if s.regs.get(&reg::SCR0).copied().unwrap_or(0) & SCR0_GFIE != 0 {
            s.interrupts += 1;
        }
        s.regs.insert(reg::SGFSYNR0, if write { 1 << 1 } else { 0 });
        s.regs.insert(reg::SGFSYNR1, sid);
        s.regs.insert(reg::SGFAR, iova);
    }

    fn record_context(&self, cb: usize, bit: u32, sid: u64, iova: u64, write: bool, level: u64) {
        let sctlr = self.peek(self.layout.cb(cb, reg::CB_SCTLR));
        let fsr_off = self.layout.cb(cb, reg::CB_FSR);
        let mut s = self.state.borrow_mut();
        let fsr = s.regs.get(&fsr_off).copied().unwrap_or(0);
        if fsr & crate::fault::fsr::ALL as u64 != 0 {
            s.regs.insert(fsr_off, fsr | crate::fault::fsr::MULTI as u64);
            return;
        }
        s.regs.insert(fsr_off, bit as u64);
        if sctlr & SCTLR_CFIE != 0 {
            s.interrupts += 1;
        }
        s.regs.insert(self.layout.cb(cb, reg::CB_FAR), iova);
        s.regs.insert(self.layout.cb(cb, reg::CB_FSYNR0), (if write { 1 << 4 } else { 0 }) | (level & 3));
        s.regs.insert(self.layout.gr1(reg::cbfrsynra(cb)), sid);
    }

    fn translate(&self, cb: usize, sid: u64, iova: u64, write: bool) -> Outcome {
        if cb >= self.num_cb() {
            self.record_global(crate::fault::sgfsr::UCBF, sid, iova, write);
            return Outcome::GlobalFault(crate::fault::sgfsr::UCBF);
        }
        let l = self.layout;
        let sctlr = self.peek(l.cb(cb, reg::CB_SCTLR));
        if sctlr & 1 == 0 {
            // Stage 1 off, stage 2 bypassed: the address goes out untranslated.
            return Outcome::Bypass(iova);
        }
        if (self.peek(l.gr1(reg::cbar(cb))) >> 16) & 0b11 != 1 {
            self.violation(format!("CB{cb} routed and enabled but CBAR.TYPE is not stage 1 / stage 2 bypass"));
        }
        if self.peek(l.gr1(reg::cba2r(cb))) & 1 == 0 {
            self.violation(format!("CB{cb} enabled with CBA2R.VA64 = 0 (AArch32 format)"));
        }
        let tcr = self.peek(l.cb(cb, reg::CB_TCR));
        let ttbr0 = self.peek(l.cb(cb, reg::CB_TTBR0));
        let tag = self.tag(cb, (ttbr0 >> 48) as u16);
        let t0sz = tcr & 0x3f;
        if (tcr >> 14) & 0b11 != 0 {
            self.violation(format!("CB{cb}: TCR.TG0 is not 4 KiB"));
        }
        if self.in_ttbr1_range(cb, iova) {
            return self.translate_ttbr1(cb, sid, iova, write, tcr);
        }
        let ias = 64 - t0sz;
        if !(25..=48).contains(&ias) || iova >> ias != 0 {
            return self.context_fault(cb, crate::fault::fsr::TF, sid, iova, write, 0);
        }
        let entry = match self.lookup(tag, iova) {
            Some(e) => e,
            // EPD0: no walk through TTBR0, whatever it holds.
            None if tcr & TCR_EPD0 != 0 => return self.context_fault(cb, crate::fault::fsr::TF, sid, iova, write, 0),
            None if ttbr0 & TTBR_BADDR == 0 => {
                self.violation(format!("CB{cb} walks TTBR0 = {ttbr0:#x}: no table at physical address 0"));
                return Outcome::Unpredictable;
            }
            None => match self.walk(tag, ttbr0, ias, iova) {
                Ok(e) => {
                    self.state.borrow_mut().tlb.push(e);
                    // MMU-500's next-page prefetcher (CBn_ACTLR.CPRE, on at reset): a
                    // miss also fills the TLB with the next page's translation, if it
                    // has one. Any valid translation may be cached at any time; this is
                    // the one the hardware is known to fetch unasked.
                    let next = (iova | 0xfff) + 1;
                    let cpre = self.peek(l.cb(cb, reg::CB_ACTLR)) & crate::errata::ACTLR_CPRE as u64 != 0;
                    if cpre && next >> ias == 0 && self.lookup(tag, next).is_none() {
                        if let Ok(n) = self.walk(tag, ttbr0, ias, next) {
                            self.state.borrow_mut().tlb.push(n);
                        }
                    }
                    e
                }
                Err((bit, level)) => return self.context_fault(cb, bit, sid, iova, write, level),
            },
        };
        if write && !entry.writable {
            return self.context_fault(cb, crate::fault::fsr::PF, sid, iova, write, 3);
        }
        Outcome::Translated(entry.pa + (iova - entry.va))
    }

    /// Whether bank `cb` translates `iova` through TTBR1: the upstream bus carries
    /// IDR2.UBS address bits, and the bank sign-extends them from the bit TCR2.SEP names
    /// (0b111: the bus's top bit, Linux's `ARM_SMMU_TCR2_SEP_UPSTREAM`; 0..=5: bit 31, 35,
    /// 39, 41, 43, 47), so an address with that bit set is in the upper range, TTBR1's
    /// (as VA[55] selects TTBR1 for TCR_EL1). An address wider than the bus is not a
    /// transaction a device can send; the model leaves it to TTBR0's range check, which
    /// faults it.
    fn in_ttbr1_range(&self, cb: usize, iova: u64) -> bool {
        let ubs = match (self.profile.idr2 >> 8) & 0xf {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            _ => 49,
        };
        let sign_bit = match (self.peek(self.layout.cb(cb, reg::CB_TCR2)) >> 15) & 0b111 {
            0 => 31,
            1 => 35,
            2 => 39,
            3 => 41,
            4 => 43,
            5 => 47,
            _ => ubs - 1,
        };
        iova >> ubs == 0 && (iova >> sign_bit) & 1 == 1
    }

    /// A transaction in TTBR1's range: with TCR.EPD1 = 1 a translation fault, no walk (as
    /// EPD0 for TTBR0; nothing a TTBR0 walk cached covers a sign-extended address). The
    /// driver builds no TTBR1 tables, so a walk there reads memory nobody wrote for it:
    /// a violation, and `Unpredictable` (so is a T1SZ outside 16..=39, which AArch64
    /// leaves CONSTRAINED UNPREDICTABLE with a 4 KiB granule).
    fn translate_ttbr1(&self, cb: usize, sid: u64, iova: u64, write: bool, tcr: u64) -> Outcome {
        if tcr & TCR_EPD1 != 0 {
            return self.context_fault(cb, crate::fault::fsr::TF, sid, iova, write, 0);
        }
        let t1sz = (tcr >> 16) & 0x3f;
        let ttbr1 = self.peek(self.layout.cb(cb, reg::CB_TTBR1));
        if !(16..=39).contains(&t1sz) {
            self.violation(format!("CB{cb}: {iova:#x} is in TTBR1's range, EPD1 = 0 and T1SZ = {t1sz}"));
        } else {
            self.violation(format!("CB{cb}: {iova:#x} walks TTBR1 = {ttbr1:#x}, which holds no table"));
        }
        Outcome::Unpredictable
    }

    /// A context fault in bank `cb`: recorded, and an abort for the client only with
    /// SCTLR.CFRE = 1.
    fn context_fault(&self, cb: usize, bit: u32, sid: u64, iova: u64, write: bool, level: u64) -> Outcome {
        self.record_context(cb, bit, sid, iova, write, level);
        if self.peek(self.layout.cb(cb, reg::CB_SCTLR)) & SCTLR_CFRE != 0 {
            Outcome::ContextFault { cb, fsr: bit }
        } else {
            Outcome::RazWi { cb, fsr: bit }
        }
    }

    /// The tag of a translation bank `cb` makes with `asid` (as TTBR0 holds it).
    fn tag(&self, cb: usize, asid: u16) -> Tag {
        let l = self.layout;
        let asid16 = self.peek(l.cb(cb, reg::CB_TCR2)) & (1 << 4) != 0;
        Tag {
            vmid: (self.peek(l.gr1(reg::cbar(cb))) & 0xff) as u16,
            asid: if asid16 { asid } else { asid & 0xff },
            bank: (self.peek(l.cb(cb, reg::CB_SCTLR)) & (1 << 12) != 0).then_some(cb),
        }
    }

    fn lookup(&self, tag: Tag, iova: u64) -> Option<TlbEntry> {
        self.state.borrow().tlb.iter().copied().find(|e| e.tag == tag && iova >= e.va && iova - e.va < e.size)
    }

    /// Walk the AArch64 4 KiB-granule tables (Arm ARM D8.3): literal bit positions. The
    /// walk starts from the deepest table the walk cache holds for `iova` (whatever that
    /// page holds now), and caches every table descriptor it reads.
    fn walk(&self, tag: Tag, ttbr0: u64, ias: u64, iova: u64) -> Result<TlbEntry, (u32, u64)> {
        let levels = (ias - 12).div_ceil(9);
        let mut level = 4 - levels;
        let mut table = ttbr0 & 0x0000_ffff_ffff_f000;
        let cached = self
            .state
            .borrow()
            .walks
            .iter()
            .filter(|w| w.tag == tag && w.covers(iova))
            .max_by_key(|w| w.level)
            .copied();
        if let Some(w) = cached {
            (level, table) = (w.level, w.table);
        }
        loop {
            let shift = 12 + 9 * (3 - level);
            let index = (iova >> shift) & 0x1ff;
            let poc = self.state.borrow().poc;
            let desc = match poc {
                Some(poc) => poc.read(table + index * 8),
                // SAFETY: the model's physical addresses are host pointers into tables
                // the test allocated (TTBR0 and table descriptors written by the driver
                // under test); a wrong address here is the driver's bug the test is
                // looking for.
                None => unsafe { ((table + index * 8) as *const u64).read_volatile() },
            };
            if desc & 1 == 0 {
                return Err((crate::fault::fsr::TF, level));
            }
            let is_table = desc & 2 != 0;
            if level < 3 && is_table {
                table = desc & 0x0000_ffff_ffff_f000;
                level += 1;
                let base = iova & !((1 << table_span_shift(level)) - 1);
                self.state.borrow_mut().walks.push(WalkEntry { tag, level, base, table });
                continue;
            }
            if level == 3 && !is_table {
                // Level 3 with bits[1:0] = 0b01 is reserved: a translation fault.
                return Err((crate::fault::fsr::TF, level));
            }
            if level < 1 {
                return Err((crate::fault::fsr::TF, level));
            }
            if desc & (1 << 10) == 0 {
                return Err((crate::fault::fsr::AFF, level));
            }
            if desc & (1 << 6) == 0 {
                // AP[1] = 0: no unprivileged access; device transactions are
                // unprivileged (S2CR.PRIVCFG = 0, the default).
                return Err((crate::fault::fsr::PF, level));
            }
            let size = 1u64 << shift;
            let pa = desc & 0x0000_ffff_ffff_f000 & !(size - 1);
            return Ok(TlbEntry { tag, va: iova & !(size - 1), size, pa, writable: desc & (1 << 7) == 0 });
        }
    }

    /// The device on `sid` writes `value` at `iova`: written to memory if the SMMU let
    /// it through.
    pub fn dma_write_u64(&self, sid: u32, iova: u64, value: u64) -> Outcome {
        let out = self.access(sid, iova, true);
        if let Outcome::Translated(pa) | Outcome::Bypass(pa) = out {
            // SAFETY: physical addresses are host pointers to memory the test mapped;
            // a bypass writes where the test pointed the IOVA.
            unsafe { (pa as *mut u64).write_volatile(value) };
        }
        out
    }

    /// A TLBSYNC (`bank`) or sTLBGSYNC (`None`) written: it covers the invalidations
    /// queued before it, and no later one. Written while one is still running (SACTIVE
    /// reads 1), it is ignored: the status goes on reporting the older sync, which
    /// covers none of the invalidations written since. The text of IHI 0062D for a sync
    /// written over an active one was not at hand; this is the reading that makes a
    /// driver relying on it wrong (Arm's register descriptions say TLBSTATUS reports
    /// "operations issued before the most recent TLBSYNC", and Qualcomm's Linux tree saw
    /// such a write stall the CPU), so a driver must not write one.
    fn start_sync(&self, bank: Option<usize>) {
        let mut s = self.state.borrow_mut();
        if s.syncing.contains_key(&bank) {
            return;
        }
        let sync = match bank {
            None => SyncOp {
                reads_left: SYNC_READS,
                covers: Vec::new(),
                covers_all: core::mem::take(&mut s.pending_global),
            },
            Some(cb) => {
                let covers = s.pending_cb.iter().filter(|(c, _)| *c == cb).map(|(_, i)| *i).collect();
                s.pending_cb.retain(|(c, _)| *c != cb);
                SyncOp { reads_left: SYNC_READS, covers, covers_all: false }
            }
        };
        s.syncing.insert(bank, sync);
    }

    fn complete_sync(&self, sync: SyncOp) {
        let mut s = self.state.borrow_mut();
        if sync.covers_all {
            s.tlb.clear();
            s.walks.clear();
        }
        for inval in sync.covers {
            match inval {
                Inval::Asid(tag) => {
                    s.tlb.retain(|e| e.tag != tag);
                    s.walks.retain(|w| w.tag != tag);
                }
                Inval::Va { tag, va, last_level } => {
                    s.tlb.retain(|e| !(e.tag == tag && va >= e.va && va - e.va < e.size));
                    if !last_level {
                        s.walks.retain(|w| !(w.tag == tag && w.covers(va)));
                    }
                }
            }
        }
    }

    fn status_read(&self, bank: Option<usize>) -> u32 {
        let mut s = self.state.borrow_mut();
        let stalled = s.stall_syncs;
        let Some(sync) = s.syncing.get_mut(&bank) else { return 0 };
        if stalled {
            return 1;
        }
        if sync.reads_left > 0 {
            sync.reads_left -= 1;
            return 1;
        }
        let Some(sync) = s.syncing.remove(&bank) else { return 0 };
        drop(s);
        self.complete_sync(sync);
        0
    }

    fn write(&self, offset: usize, value: u64, wide: bool) {
        self.state.borrow_mut().writes.push((offset, value));
        if self.state.borrow().stuck.contains(&offset) {
            return;
        }
        self.check_cleaned(offset);
        match self.layout.decode(offset) {
            Block::Gr0(o) => self.write_gr0(o, value),
            Block::Gr1(o) => {
                let n = (o & 0x3ff) / 4;
                if n >= self.num_cb() {
                    self.violation(format!("write to global space 1 at {o:#x}: context bank {n} is not implemented"));
                }
                self.state.borrow_mut().regs.insert(offset, value);
            }
            Block::ContextBank(n, o) => self.write_cb(offset, n, o, value, wide),
            Block::ImplementationDefined(o) | Block::Outside(o) => {
                self.violation(format!("write to {o:#x}, outside the architected registers"));
            }
        }
    }

    /// Non-coherent: a write that makes the SMMU walk again (a TLB invalidation, a bank
    /// enabled, a stream routed) while a line of memory the PoC watches (`PocMemory::watch`:
    /// the table pool) is not as the CPU wrote it lets the walk read what the CPU has
    /// changed since: a violation.
    fn check_cleaned(&self, offset: usize) {
        let Some(poc) = self.state.borrow().poc else { return };
        let walks_again = match self.layout.decode(offset) {
            Block::ContextBank(_, o) => [reg::CB_TLBIASID, reg::CB_TLBIVA, reg::CB_TLBIVAL, reg::CB_SCTLR].contains(&o),
            Block::Gr0(o) => (reg::SMR0..reg::smr(crate::gr0::MAX_SMRG)).contains(&o),
            _ => false,
        };
        if walks_again && !poc.stale_lines().is_empty() {
            self.violation(format!("write to {offset:#x} while table memory was not cleaned to the PoC"));
        }
    }

    fn write_gr0(&self, o: usize, value: u64) {
        let smr_end = reg::smr(crate::gr0::MAX_SMRG);
        let s2cr_end = reg::s2cr(crate::gr0::MAX_SMRG);
        match o {
            reg::IDR0..=reg::IDR7 => self.violation(format!("write to read-only ID register {o:#x}")),
            reg::SGFSR => {
                let old = self.peek(o);
                self.preset(o, old & !value);
            }
            // The level line rises when GFIE is set while sGFSR holds a fault.
            reg::SCR0 => {
                let held = self.peek(reg::SGFSR) & crate::fault::sgfsr::ALL as u64 != 0;
                if held && self.peek(o) & SCR0_GFIE == 0 && value & SCR0_GFIE != 0 {
                    self.state.borrow_mut().interrupts += 1;
                }
                self.preset(o, value);
            }
            reg::TLBIALLNSNH | reg::TLBIALLH => self.state.borrow_mut().pending_global = true,
            reg::STLBGSYNC => self.start_sync(None),
            _ if (reg::SMR0..smr_end).contains(&o) => {
                let i = (o - reg::SMR0) / 4;
                if i >= self.num_smrg() {
                    self.violation(format!("write to SMR{i}: only {} are implemented", self.num_smrg()));
                    return;
                }
                // ID and MASK bits above NUMSIDB are not implemented (RAZ/WI).
                let keep = (1 << 31) | (self.sid_mask() << 16) | self.sid_mask();
                self.preset(o, value & keep);
                self.check_conflicts();
            }
            _ if (reg::S2CR0..s2cr_end).contains(&o) => {
                let i = (o - reg::S2CR0) / 4;
                if i >= self.num_smrg() {
                    self.violation(format!("write to S2CR{i}: only {} are implemented", self.num_smrg()));
                    return;
                }
                self.preset(o, value);
            }
            _ => self.preset(o, value),
        }
    }

    fn write_cb(&self, offset: usize, n: usize, o: usize, value: u64, wide: bool) {
        if n >= self.num_cb() {
            self.violation(format!("write to context bank {n}: only {} are implemented", self.num_cb()));
            return;
        }
        let enabled = self.peek(self.layout.cb(n, reg::CB_SCTLR)) & 1 == 1;
        match o {
            reg::CB_FSR => {
                let old = self.peek(offset);
                self.preset(offset, old & !value);
            }
            // The invalidation names entries as the bank tags them now (its VMID, ASID
            // width and namespace).
            reg::CB_TLBIASID => {
                let tag = self.tag(n, value as u16);
                self.state.borrow_mut().pending_cb.push((n, Inval::Asid(tag)));
            }
            reg::CB_TLBIVA | reg::CB_TLBIVAL => {
                if !wide {
                    self.violation(format!("CB{n}: 32-bit write to the 64-bit TLBIVA(L)"));
                }
                let va = (value & ((1 << 44) - 1)) << 12;
                let inval = Inval::Va { tag: self.tag(n, (value >> 48) as u16), va, last_level: o == reg::CB_TLBIVAL };
                self.state.borrow_mut().pending_cb.push((n, inval));
            }
            reg::CB_TLBSYNC => self.start_sync(Some(n)),
            reg::CB_ACTLR => {
                if self.peek(reg::SACR) & crate::errata::ACR_CACHE_LOCK as u64 == 0 {
                    self.preset(offset, value);
                }
            }
            // ASIDPNE (bit 12) is RAZ/WI on MMU-500 (`Tag`). The level line rises when
            // CFIE is set while FSR holds a fault.
            reg::CB_SCTLR => {
                let held = self.peek(self.layout.cb(n, reg::CB_FSR)) & crate::fault::fsr::ALL as u64 != 0;
                if held && self.peek(offset) & SCTLR_CFIE == 0 && value & SCTLR_CFIE != 0 {
                    self.state.borrow_mut().interrupts += 1;
                }
                self.preset(offset, value & !(1 << 12))
            }
            _ => {
                if enabled {
                    self.violation(format!("CB{n} register {o:#x} written while SCTLR.M = 1"));
                }
                self.preset(offset, value);
            }
        }
    }

    fn read(&self, offset: usize) -> u64 {
        match self.layout.decode(offset) {
            Block::Gr0(o) => match o {
                reg::IDR0 => self.profile.idr0 as u64,
                reg::IDR1 => self.profile.idr1 as u64,
                reg::IDR2 => self.profile.idr2 as u64,
                reg::IDR7 => self.profile.idr7 as u64,
                reg::STLBGSTATUS => self.status_read(None) as u64,
                _ => self.peek(o),
            },
            Block::ContextBank(n, reg::CB_TLBSTATUS) => self.status_read(Some(n)) as u64,
            _ => self.peek(offset),
        }
    }
}

impl Mmio for Mmu500Model {
    fn read32(&self, offset: usize) -> u32 {
        self.read(offset) as u32
    }
    fn write32(&self, offset: usize, value: u32) {
        self.write(offset, value as u64, false)
    }
    fn read64(&self, offset: usize) -> u64 {
        self.read(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.write(offset, value, true)
    }
}

/// Host memory for the driver or a test: page-aligned, zeroed, leaked; physical address
/// = host address, as the model expects.
pub fn host_region(len: usize, align: usize) -> smmuv3::DmaRegion {
    smmuv3::model::host_region(len, align)
}

/// A configuration for host tests: 48-bit IOVAs, a short poll bound, MMU-500.
pub fn host_config() -> crate::Config {
    crate::Config { ias_bits: 48, poll_limit: 64, ..crate::Config::default() }
}
