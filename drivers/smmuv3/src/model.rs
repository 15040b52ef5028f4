//! A host model of an SMMUv3 for tests and benchmarks (feature `model`).
//!
//! It implements `Mmio`: register writes have the architected side effects (CR0ACK and
//! IRQ_CTRLACK follow, GBPA.UPDATE clears, a CMDQ_PROD write consumes commands). It also
//! translates like the hardware does, with caches: STEs and CDs are cached per stream
//! until a CMD_CFGI_*, translations per (VMID, ASID, page) until a CMD_TLBI_*, and table
//! descriptors met on a walk (a walk cache) per (VMID, ASID, level, range) until a
//! CMD_TLBI_NH_ASID, a CMD_TLBI_NH_VA with Leaf = 0 for an address in their range, or a
//! TLBI of everything (a CMD_TLBI_NH_VA with Leaf = 1 may leave them, as the architecture
//! allows). On an SMMU with stage 2 (SMMU_IDR0.S2P) stage-1 entries carry the STE's
//! S2VMID as well (IHI 0070 3.17), and CMD_TLBI_NH_ASID, NH_VA and NH_ALL reach only
//! entries of the VMID in the command; without stage 2 the VMID is 0. Stage-2 streams (STE.Config = 0b110) are walked from STE.S2TTB with the
//! STE's VTCR, their translations and walks cached per VMID until a CMD_TLBI_S12_VMALL
//! of it, or a CMD_TLBI_S2_IPA of an address in their range (walks only with Leaf = 0);
//! a stage-2 fault with STE.S2R set writes an event record (S2 = 1, the IPA) to the
//! event queue. A driver that forgets an invalidation therefore leaves a stale
//! translation or walk that tests can see.
//!
//! The model decodes tables with literal bit positions from IHI 0070 rather than the
//! driver's constants, so a wrong constant in the driver shows up as a disagreement.
//! Memory is the host's: physical addresses are host pointers.

extern crate std;

use core::cell::RefCell;
use core::sync::atomic::{AtomicU64, Ordering};
use std::collections::HashMap;
use std::vec::Vec;

use crate::cmd::Command;
use crate::mmio::{reg, Mmio};

/// What a translation through the model gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Translated to this physical address.
    Ok(u64),
    /// Terminated: STE aborts (or SMMU disabled with GBPA.ABORT).
    Abort,
    /// Terminated with an event of this type.
    Fault(u8),
    /// Passed through untranslated.
    Bypass(u64),
}

/// What TLB and walk-cache entries are tagged with: a stage-1 context's ASID within the
/// VMID of its STE, or a stage-2 address space's VMID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Tag {
    Asid { vmid: u16, asid: u16 },
    Vmid(u16),
}

impl Tag {
    /// Whether CMD_TLBI_S12_VMALL of `vmid` reaches this entry: both stages of the VMID.
    fn in_vmid(self, vmid: u16) -> bool {
        match self {
            Tag::Asid { vmid: v, .. } | Tag::Vmid(v) => v == vmid,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct TlbEntry {
    iova_base: u64,
    size: u64,
    pa_base: u64,
    writable: bool,
}

/// A table descriptor the walker cached: the level-`level` entry covering
/// `[iova_base, iova_base + size)` points at the next-level table `table`.
#[derive(Debug, Clone, Copy)]
struct WalkEntry {
    level: u32,
    iova_base: u64,
    size: u64,
    table: u64,
}

#[derive(Debug, Default)]
struct State {
    /// The walk cache, per ASID or VMID.
    walks: HashMap<Tag, Vec<WalkEntry>>,
    regs: HashMap<usize, u64>,
    commands: Vec<Command>,
    config_cache: HashMap<u32, ([u64; 8], Option<[u64; 8]>)>,
    tlb: HashMap<Tag, Vec<TlbEntry>>,
    stuck: bool,
    reject: Option<u8>,
    /// The CERROR code the rejection reports (1 = CERROR_ILL, 2 = CERROR_ABT).
    reject_code: u32,
    /// Records that arrive just after the driver reads EVENTQ_PROD, as many as the queue
    /// has room for each time: written while it drains, so it must look again.
    late_events: Vec<[u64; 4]>,
    /// Every register write, in order, for tests of what the driver did when.
    writes: Vec<(usize, u64)>,
    /// Level-1 stream table indices whose invalid descriptor the SMMU has cached.
    invalid_l1: Vec<u32>,
    /// Event-queue interrupts raised: one each time the queue goes from empty to
    /// non-empty, and no other time (IHI 0070 7.2.1).
    event_irqs: u32,
    /// Reads of SMMU_GBPA still to report UPDATE = 1 (an update in progress at reset).
    gbpa_busy_reads: u32,
    /// Rules of the architecture the driver broke (a write to GBPA while UPDATE was 1).
    violations: Vec<&'static str>,
    /// SMMU_GBPA is not implemented: it reads as zero and ignores writes (QEMU 7.2).
    no_gbpa: bool,
    /// A write to SMMU_GBPA (with UPDATE = 1) never completes: UPDATE reads 1 from then
    /// on and the fields written never take effect (`gbpa_update_never_completes`).
    gbpa_stuck: bool,
    /// A write to SMMU_CR0 or SMMU_IRQ_CTRL (the offset) that is never acknowledged, and
    /// how many writes to it from now that one is (1: the next).
    withheld_ack: Option<(usize, u32)>,
    /// SMMU_CR0 or SMMU_IRQ_CTRL (the offset) whose writes are none of them acknowledged
    /// from now on, until `complete_withheld_update` (`withhold_every_ack`).
    every_ack_withheld: Option<usize>,
    /// A clock that each register access moves forward by this many nanoseconds.
    clock: Option<(&'static FakeClock, u64)>,
    /// Reads of SMMU_CMDQ_CONS before the SMMU consumes what the doorbell announced: a
    /// slow SMMU (an ATC invalidation or a busy interconnect can take a long time).
    slow_reads: u32,
    /// A non-coherent SMMU: it reads and writes only this memory (the PoC), which the
    /// CPU's writes reach only through cleans.
    poc: Option<&'static PocMemory>,
    /// The leaf descriptor the last table walk ended at.
    last_leaf: Option<u64>,
    /// Fault records a translation produced, written to the event queue once the
    /// translation's borrow of the state ends.
    pending_events: Vec<[u64; 4]>,
}

/// A clock for tests: time passes only as the SMMU model's registers are accessed (each
/// access costing what `SmmuModel::with_clock` says), or when a test moves it.
#[derive(Debug, Default)]
pub struct FakeClock {
    ns: AtomicU64,
}

impl FakeClock {
    /// A clock at 0.
    pub const fn new() -> Self {
        Self { ns: AtomicU64::new(0) }
    }

    /// Nanoseconds since it started.
    pub fn ns(&self) -> u64 {
        self.ns.load(Ordering::Relaxed)
    }

    /// Let `ns` nanoseconds pass.
    pub fn advance(&self, ns: u64) {
        self.ns.fetch_add(ns, Ordering::Relaxed);
    }
}

impl crate::Clock for FakeClock {
    fn now(&self) -> u64 {
        self.ns()
    }
    fn hz(&self) -> u64 {
        1_000_000_000
    }
}

/// The model. Interior mutability: `Mmio` takes `&self`, like real registers.
#[derive(Debug)]
pub struct SmmuModel {
    state: RefCell<State>,
}

/// IDR values of QEMU's SMMUv3 (hw/arm/smmuv3.c, `smmuv3_init_regs`, QEMU 7.2):
/// IDR0 S1P, TTF=AArch64, COHACC, ASID16, TTENDIAN=little, STALL_MODEL=1, TERM_MODEL,
/// ST_LEVEL=2-level; IDR1 SIDSIZE=16, EVENTQS=CMDQS=19; IDR5 OAS=44 bits, all granules.
pub const QEMU_IDR: [u32; 6] = [
    (1 << 1) | (2 << 2) | (1 << 4) | (1 << 12) | (2 << 21) | (1 << 24) | (1 << 26) | (1 << 27),
    16 | (19 << 16) | (19 << 21),
    0,
    1 << 10,
    0,
    4 | (1 << 4) | (1 << 5) | (1 << 6),
];

/// SMMU_IDR0.S2P, bit 0: stage 2 implemented.
pub const IDR0_S2P: u32 = 1;
/// SMMU_IDR0.VMID16, bit 18: 16-bit VMIDs.
pub const IDR0_VMID16: u32 = 1 << 18;

impl SmmuModel {
    /// A model reporting QEMU's ID registers.
    pub fn qemu() -> Self {
        Self::with_idr(QEMU_IDR)
    }

    /// QEMU's ID registers with a 48-bit output size: host heap addresses, which the
    /// model uses as physical addresses, need up to 47 bits.
    pub fn host() -> Self {
        let mut idr = QEMU_IDR;
        idr[5] = (idr[5] & !0b111) | 5;
        Self::with_idr(idr)
    }

    /// `host()` with stage 2 as well (SMMU_IDR0.S2P and VMID16), as QEMU 10.0 reports with
    /// `-global arm-smmuv3.stage=nested` (hw/arm/smmuv3.c, `smmuv3_init_regs`).
    pub fn host_nested() -> Self {
        let mut idr = QEMU_IDR;
        idr[0] |= IDR0_S2P | IDR0_VMID16;
        idr[5] = (idr[5] & !0b111) | 5;
        Self::with_idr(idr)
    }

    /// A model reporting the given SMMU_IDR0..5.
    pub fn with_idr(idr: [u32; 6]) -> Self {
        let mut st = State::default();
        for (i, v) in idr.iter().enumerate() {
            st.regs.insert(reg::IDR0 + 4 * i, *v as u64);
        }
        Self { state: RefCell::new(st) }
    }

    /// Make the SMMU non-coherent: from now on it reads tables, CDs and commands from
    /// `poc` (memory as the SMMU sees it, updated only by the cleans the driver does
    /// through `poc`'s `CacheOps`) and writes event records there; and every register
    /// write that tells it to read memory (CMDQ_PROD, STRTAB_BASE, CR0) with a line of
    /// `poc`'s watched regions not cleaned is recorded as a violation.
    pub fn non_coherent(&self, poc: &'static PocMemory) {
        self.state.borrow_mut().poc = Some(poc);
    }

    /// The leaf descriptor the last table walk found (its attributes: AttrIndx, SH).
    pub fn last_leaf(&self) -> Option<u64> {
        self.state.borrow().last_leaf
    }

    /// Stop consuming commands (a hung SMMU).
    pub fn set_stuck(&self, stuck: bool) {
        self.state.borrow_mut().stuck = stuck;
    }

    /// Reject the next command with this opcode with CERROR_ILL.
    pub fn reject_next(&self, opcode: u8) {
        self.reject_next_with(opcode, 1);
    }

    /// Reject the next command with this opcode with CERROR `code`: 2 is CERROR_ABT, an
    /// abort on the SMMU's own access to the command queue (IHI 0070 7.1); 0 is
    /// CERROR_NONE, GERROR.CMDQ_ERR raised with no error against the command (the queue
    /// stops there all the same until it is acknowledged, then goes on from it).
    pub fn reject_next_with(&self, opcode: u8, code: u32) {
        let mut st = self.state.borrow_mut();
        st.reject = Some(opcode);
        st.reject_code = code;
    }

    /// Every command consumed so far, in order.
    pub fn commands(&self) -> Vec<Command> {
        self.state.borrow().commands.clone()
    }

    /// Forget the command log.
    pub fn clear_commands(&self) {
        self.state.borrow_mut().commands.clear();
    }

    /// A register's current value.
    pub fn reg(&self, offset: usize) -> u64 {
        self.state.borrow().regs.get(&offset).copied().unwrap_or(0)
    }

    /// Set a register as it reads before the driver starts: registers that reset UNKNOWN,
    /// or state left by an earlier owner (a warm re-init).
    pub fn preset(&self, offset: usize, value: u64) {
        self.state.borrow_mut().regs.insert(offset, value);
    }

    /// SMMU_GBPA reports an update in progress (UPDATE = 1) for the next `reads` reads.
    pub fn gbpa_busy_for(&self, reads: u32) {
        let mut st = self.state.borrow_mut();
        st.gbpa_busy_reads = reads;
        let g = st.regs.get(&reg::GBPA).copied().unwrap_or(0);
        st.regs.insert(reg::GBPA, g | 1 << 31);
    }

    /// SMMU_GBPA reads as zero and ignores writes, as on QEMU 7.2: a disabled SMMU then
    /// passes every transaction. (Otherwise GBPA resets to 0 unless preset: ABORT = 0,
    /// bypass while disabled, one of the IMPLEMENTATION DEFINED reset values IHI 0070
    /// 6.3.14 allows, and the one a driver must not count on being otherwise.)
    pub fn without_gbpa(&self) {
        let mut st = self.state.borrow_mut();
        st.no_gbpa = true;
        st.regs.insert(reg::GBPA, 0);
    }

    /// From now on an update of SMMU_GBPA never completes: the write is taken (UPDATE
    /// reads 1 from then on) but the fields written do not take effect, so the SMMU goes
    /// on with the value it had (IHI 0070 6.3.14: the new value is in effect once UPDATE
    /// clears, and nothing bounds when that is).
    pub fn gbpa_update_never_completes(&self) {
        self.state.borrow_mut().gbpa_stuck = true;
    }

    /// The `nth` write (1: the next) to SMMU_CR0 or SMMU_IRQ_CTRL (`offset`) is never
    /// acknowledged: its ACK register keeps its old value, and, as the ACK register is
    /// what says a change took effect (IHI 0070, SMMU_CR0ACK), that write changes nothing the
    /// SMMU does (translation follows CR0ACK.SMMUEN). Later writes are acknowledged.
    pub fn withhold_ack(&self, offset: usize, nth: u32) {
        assert!(offset == reg::CR0 || offset == reg::IRQ_CTRL, "CR0 or IRQ_CTRL");
        self.state.borrow_mut().withheld_ack = Some((offset, nth));
    }

    /// From now on no write to SMMU_CR0 or SMMU_IRQ_CTRL (`offset`) is acknowledged within
    /// any bound a driver waits: its ACK register keeps its old value, and the SMMU goes
    /// on as that value says (an Update "must complete in finite time, but is not required
    /// to occur immediately", IHI 0070 6.3.9). `complete_withheld_update` completes it
    /// later, with the value last written. While an Update is pending, a write that
    /// changes the field again is CONSTRAINED UNPREDICTABLE (same section): a violation.
    pub fn withhold_every_ack(&self, offset: usize) {
        assert!(offset == reg::CR0 || offset == reg::IRQ_CTRL, "CR0 or IRQ_CTRL");
        self.state.borrow_mut().every_ack_withheld = Some(offset);
    }

    /// The Update `withhold_every_ack` held back completes now (late: after the driver
    /// gave up on it), with the value last written; later writes are acknowledged.
    pub fn complete_withheld_update(&self) {
        let mut st = self.state.borrow_mut();
        let Some(offset) = st.every_ack_withheld.take() else { return };
        let ack = if offset == reg::CR0 { reg::CR0ACK } else { reg::IRQ_CTRLACK };
        let v = st.regs.get(&offset).copied().unwrap_or(0);
        st.regs.insert(ack, v);
        if offset == reg::CR0 {
            self.consume(&mut st);
        }
    }

    /// Whether this write to `offset` is the one `withhold_ack` named (counting it), or
    /// one of those `withhold_every_ack` holds back.
    fn ack_withheld(st: &mut State, offset: usize) -> bool {
        if st.every_ack_withheld == Some(offset) {
            return true;
        }
        match st.withheld_ack {
            Some((o, n)) if o == offset => {
                st.withheld_ack = if n <= 1 { None } else { Some((o, n - 1)) };
                n <= 1
            }
            _ => false,
        }
    }

    /// The SMMU enters service failure mode: SMMU_GERROR.SFM_ERR toggles (active until
    /// acknowledged) and it consumes no more commands (IHI 0070 12.3). What it then does
    /// with transactions is left to the registers: the model keeps translating as
    /// configured while SMMUEN is set, the worst a real one may do.
    pub fn enter_service_failure(&self) {
        let mut st = self.state.borrow_mut();
        let g = st.regs.get(&reg::GERROR).copied().unwrap_or(0);
        st.regs.insert(reg::GERROR, g ^ (1 << 8));
        st.stuck = true;
    }

    /// Every register access from now on takes `ns_per_access` nanoseconds of `clock`.
    pub fn with_clock(&self, clock: &'static FakeClock, ns_per_access: u64) {
        self.state.borrow_mut().clock = Some((clock, ns_per_access));
    }

    /// The SMMU consumes commands only after SMMU_CMDQ_CONS has been read `reads` more
    /// times: it is slow, not stuck.
    pub fn consume_after_reads(&self, reads: u32) {
        self.state.borrow_mut().slow_reads = reads;
    }

    /// Event-queue interrupts the SMMU has raised so far.
    pub fn event_irqs(&self) -> u32 {
        self.state.borrow().event_irqs
    }

    /// Every register write so far, in order: (offset, value).
    pub fn register_writes(&self) -> Vec<(usize, u64)> {
        self.state.borrow().writes.clone()
    }

    /// Rules of the architecture the driver broke, if any.
    pub fn violations(&self) -> Vec<&'static str> {
        self.state.borrow().violations.clone()
    }

    /// The STEs the SMMU may use for `sid` now, without a transaction (nothing is cached
    /// by looking): the one in its configuration cache, if any, and the one the stream
    /// table's memory holds (`None` where no table covers it or its level-1 descriptor
    /// is invalid, which terminates the stream).
    pub fn stream_entries(&self, sid: u32) -> (Option<[u64; 8]>, Option<[u64; 8]>) {
        let mut st = self.state.borrow_mut();
        let cached = st.config_cache.get(&sid).map(|c| c.0);
        (cached, ste_in_table(&mut st, sid, false))
    }

    /// The 64-bit word at `pa` as the SMMU reads it (from the PoC on a non-coherent one):
    /// for tests that follow an entry's pointers, such as an STE's S1ContextPtr.
    pub fn read_u64(&self, pa: u64) -> u64 {
        read_words::<1>(self.state.borrow().poc, pa)[0]
    }

    /// An ATS-translated transaction (a PCIe request whose address the device's ATC
    /// already translated) to physical address `pa`. With SMMU_CR0.SMMUEN = 0 the ATS
    /// interface is not operational and it aborts, whatever GBPA says (IHI 0070 6.3.9.6).
    /// Enabled, with SMMU_CR0.ATSCHK = 0 the SMMU lets it through without looking at the
    /// stream table; with ATSCHK = 1 only a stream whose STE allows ATS (STE.EATS != 0)
    /// may send one (IHI 0070 3.9.1.2, 6.3.9.2).
    pub fn translate_ats(&self, sid: u32, pa: u64) -> Outcome {
        let mut st = self.state.borrow_mut();
        let cr0 = st.regs.get(&reg::CR0ACK).copied().unwrap_or(0);
        if cr0 & 1 == 0 {
            return Outcome::Abort;
        }
        if cr0 & (1 << 4) == 0 {
            return Outcome::Bypass(pa);
        }
        match read_ste(&mut st, sid) {
            // STE.EATS, bits [93:92] (word 1 bits [29:28]).
            Some(ste) if ste[0] & 1 == 1 && (ste[1] >> 28) & 3 != 0 => Outcome::Bypass(pa),
            _ => Outcome::Abort,
        }
    }

    /// Produce these records just after the driver reads EVENTQ_PROD, as many as fit each
    /// time (none is lost), as if the SMMU wrote them while the driver drained the queue.
    pub fn inject_events_during_next_drain(&self, records: &[[u64; 4]]) {
        self.state.borrow_mut().late_events.extend_from_slice(records);
    }

    /// Produce an event record, as the hardware would, setting OVFLG if the queue is full.
    pub fn inject_event(&self, record: [u64; 4]) {
        let mut st = self.state.borrow_mut();
        let base = st.regs.get(&reg::EVENTQ_BASE).copied().unwrap_or(0);
        let log2 = (base & 0x1f) as u32;
        let addr = base & 0x000f_ffff_ffff_ffe0;
        let prod = st.regs.get(&reg::EVENTQ_PROD).copied().unwrap_or(0) as u32;
        let cons = st.regs.get(&reg::EVENTQ_CONS).copied().unwrap_or(0) as u32;
        let ring = crate::queue::Ring { log2 };
        if ring.is_full(ring.index(prod), ring.index(cons)) {
            // Record lost. OVFLG toggles on the first loss after software acknowledged
            // the previous overflow (OVACKFLG == OVFLG), not on every loss (IHI 0070 7.4).
            if (prod ^ cons) & (1 << 31) == 0 {
                st.regs.insert(reg::EVENTQ_PROD, (prod ^ (1 << 31)) as u64);
            }
            return;
        }
        if ring.is_empty(ring.index(prod), ring.index(cons)) {
            st.event_irqs += 1;
        }
        let slot = ring.slot(prod) as usize;
        match st.poc {
            // A non-coherent SMMU writes the PoC; the CPU sees it once it invalidates.
            Some(m) => {
                for (i, w) in record.iter().enumerate() {
                    m.write(addr + 32 * slot as u64 + 8 * i as u64, *w);
                }
            }
            // SAFETY: the driver gave the model this queue; PA == host address in tests.
            None => unsafe { (addr as *mut [u64; 4]).add(slot).write_volatile(record) },
        }
        let next = ring.next(ring.index(prod)) | (prod & (1 << 31));
        st.regs.insert(reg::EVENTQ_PROD, next as u64);
    }

    /// The next late record, if the event queue has room for it.
    fn next_late_event(&self) -> Option<[u64; 4]> {
        let mut st = self.state.borrow_mut();
        let log2 = (st.regs.get(&reg::EVENTQ_BASE).copied().unwrap_or(0) & 0x1f) as u32;
        let prod = st.regs.get(&reg::EVENTQ_PROD).copied().unwrap_or(0) as u32;
        let cons = st.regs.get(&reg::EVENTQ_CONS).copied().unwrap_or(0) as u32;
        let ring = crate::queue::Ring { log2 };
        if st.late_events.is_empty() || ring.is_full(ring.index(prod), ring.index(cons)) {
            return None;
        }
        Some(st.late_events.remove(0))
    }

    fn consume(&self, st: &mut State) {
        // Commands are not fetched while CMDQEN is 0 (IHI 0070 6.3.9.3).
        let cmdqen = st.regs.get(&reg::CR0ACK).copied().unwrap_or(0) & 1 << 3 != 0;
        if st.stuck || !cmdqen || cmdq_error_active(st) || st.slow_reads > 0 {
            return;
        }
        let base = st.regs.get(&reg::CMDQ_BASE).copied().unwrap_or(0);
        let ring = crate::queue::Ring { log2: (base & 0x1f) as u32 };
        let addr = base & 0x000f_ffff_ffff_ffe0;
        let prod = ring.index(st.regs.get(&reg::CMDQ_PROD).copied().unwrap_or(0) as u32);
        let mut cons = ring.index(st.regs.get(&reg::CMDQ_CONS).copied().unwrap_or(0) as u32);
        while cons != prod {
            let cmd = Command(read_words::<2>(st.poc, addr + 16 * ring.slot(cons) as u64));
            let op = cmd.opcode();
            if st.reject == Some(op) || !is_known(op) {
                let code = if st.reject == Some(op) { st.reject_code } else { 1 };
                st.reject = None;
                // The CERROR code in CMDQ_CONS.ERR, CONS left at the bad command,
                // GERROR.CMDQ_ERR toggled (IHI 0070 7.1).
                st.regs.insert(reg::CMDQ_CONS, (cons | (code << 24)) as u64);
                let g = st.regs.get(&reg::GERROR).copied().unwrap_or(0);
                st.regs.insert(reg::GERROR, g ^ 1);
                return;
            }
            self.execute(st, cmd);
            st.commands.push(cmd);
            cons = ring.next(cons);
        }
        st.regs.insert(reg::CMDQ_CONS, cons as u64);
    }

    fn execute(&self, st: &mut State, cmd: Command) {
        let w0 = cmd.0[0];
        let sid = (w0 >> 32) as u32;
        // CMD_TLBI_*: VMID in bits [47:32], RES0 (and so ignored) without stage 2.
        let vmid_bits = if has_stage2(st) { (w0 >> 32) as u16 } else { 0 };
        let asid = Tag::Asid { vmid: vmid_bits, asid: (w0 >> 48) as u16 };
        let vmid = Tag::Vmid(vmid_bits);
        match cmd.opcode() {
            0x03 | 0x05 | 0x06 => {
                st.config_cache.remove(&sid);
                // CMD_CFGI_STE with Leaf = 0 also drops the level-1 descriptor.
                if cmd.opcode() == 0x03 && cmd.0[1] & 1 == 0 {
                    let split = (st.regs.get(&reg::STRTAB_BASE_CFG).copied().unwrap_or(0) >> 6) & 0x1f;
                    st.invalid_l1.retain(|l1| *l1 != sid >> split);
                }
            }
            0x04 => {
                st.config_cache.clear();
                st.invalid_l1.clear();
            }
            0x11 => {
                st.tlb.remove(&asid);
                st.walks.remove(&asid);
            }
            0x12 => {
                let va = cmd.0[1] & !0xfff;
                let scope = TlbiScope::of(cmd, va, has_range_invalidation(st));
                if let Some(v) = st.tlb.get_mut(&asid) {
                    v.retain(|e| !scope.reaches_leaf(e));
                }
                // Leaf = 0: every level of the walk for `va`, not only the last.
                if cmd.0[1] & 1 == 0 {
                    if let Some(v) = st.walks.get_mut(&asid) {
                        v.retain(|e| !scope.reaches_walk(e));
                    }
                }
            }
            // CMD_TLBI_NH_ALL: every stage-1 entry of the VMID.
            0x10 => {
                let stage1_of = |t: &Tag| matches!(t, Tag::Asid { vmid: v, .. } if *v == vmid_bits);
                st.tlb.retain(|t, _| !stage1_of(t));
                st.walks.retain(|t, _| !stage1_of(t));
            }
            0x28 => {
                st.tlb.retain(|t, _| !t.in_vmid(vmid_bits));
                st.walks.retain(|t, _| !t.in_vmid(vmid_bits));
            }
            0x2a => {
                // IPA[51:12] in word 1.
                let ipa = cmd.0[1] & 0x000f_ffff_ffff_f000;
                let scope = TlbiScope::of(cmd, ipa, has_range_invalidation(st));
                if let Some(v) = st.tlb.get_mut(&vmid) {
                    v.retain(|e| !scope.reaches_leaf(e));
                }
                if cmd.0[1] & 1 == 0 {
                    if let Some(v) = st.walks.get_mut(&vmid) {
                        v.retain(|e| !scope.reaches_walk(e));
                    }
                }
            }
            0x30 => {
                st.tlb.clear();
                st.walks.clear();
            }
            _ => {}
        }
    }

    /// Translate a device access as the hardware would, filling and using the caches;
    /// a fault the STE says to record is written to the event queue.
    pub fn translate(&self, sid: u32, iova: u64, write: bool) -> Outcome {
        let outcome = self.translate_cached(sid, iova, write);
        let records = core::mem::take(&mut self.state.borrow_mut().pending_events);
        for record in records {
            self.inject_event(record);
        }
        outcome
    }

    fn translate_cached(&self, sid: u32, iova: u64, write: bool) -> Outcome {
        let mut st = self.state.borrow_mut();
        // CR0ACK, not CR0: a change takes effect when it is acknowledged.
        let cr0 = st.regs.get(&reg::CR0ACK).copied().unwrap_or(0);
        if cr0 & 1 == 0 {
            let gbpa = st.regs.get(&reg::GBPA).copied().unwrap_or(0);
            return if gbpa & (1 << 20) != 0 { Outcome::Abort } else { Outcome::Bypass(iova) };
        }
        let (ste, cd) = match st.config_cache.get(&sid) {
            Some(c) => *c,
            None => {
                let Some(ste) = read_ste(&mut st, sid) else { return Outcome::Fault(0x02) };
                let cd = if ste[0] & 1 == 1 && (ste[0] >> 1) & 7 == 0b101 {
                    // S1ContextPtr[51:6].
                    Some(read_words::<8>(st.poc, ste[0] & 0x000f_ffff_ffff_ffc0))
                } else {
                    None
                };
                st.config_cache.insert(sid, (ste, cd));
                (ste, cd)
            }
        };
        if ste[0] & 1 == 0 {
            return Outcome::Fault(0x04);
        }
        match (ste[0] >> 1) & 7 {
            0b000 => return Outcome::Abort,
            0b100 => return Outcome::Bypass(iova),
            0b101 => {}
            // Stage 2 on an SMMU that has it (SMMU_IDR0.S2P): otherwise C_BAD_STE.
            0b110 if has_stage2(&st) => {
                return stage2(&mut st, sid, &ste, iova, write);
            }
            _ => return Outcome::Fault(0x04),
        }
        let cd = cd.expect("stage 1 has a CD");
        if (cd[0] >> 31) & 1 == 0 || (cd[0] >> 41) & 1 == 0 {
            return Outcome::Fault(0x0a);
        }
        // ILLEGAL CDs are C_BAD_CD (IHI 0070 5.4): a T0SZ outside what 4 KiB-granule
        // AArch64 tables allow (16..=39), or a granule other than 4 KiB (TG0 != 0), the
        // only one the driver asks the SMMU for.
        let (t0sz, tg0) = (cd[0] & 0x3f, (cd[0] >> 6) & 3);
        if !(16..=39).contains(&t0sz) || tg0 != 0 {
            return Outcome::Fault(0x0a);
        }
        // STE.S2VMID (word 2 [15:0]) tags stage-1 entries too when stage 2 is implemented.
        let vmid = if has_stage2(&st) { ste[2] as u16 } else { 0 };
        let asid = Tag::Asid { vmid, asid: (cd[0] >> 48) as u16 };
        if let Some(e) =
            st.tlb.get(&asid).and_then(|v| v.iter().find(|e| iova >= e.iova_base && iova < e.iova_base + e.size))
        {
            if write && !e.writable {
                return Outcome::Fault(0x13);
            }
            return Outcome::Ok(e.pa_base + (iova - e.iova_base));
        }
        let t0sz = (cd[0] & 0x3f) as u32;
        let ias = 64 - t0sz;
        if iova >> ias != 0 {
            return Outcome::Fault(0x10);
        }
        let mut level = 4 - (ias - 12).div_ceil(9);
        let mut table = cd[1] & 0x000f_ffff_ffff_fff0;
        // Start from the deepest table descriptor cached for this address, if any.
        if let Some(w) = st.walks.get(&asid).and_then(|v| {
            v.iter().filter(|w| iova >= w.iova_base && iova < w.iova_base + w.size).max_by_key(|w| w.level)
        }) {
            (level, table) = (w.level + 1, w.table);
        }
        loop {
            let shift = 12 + 9 * (3 - level);
            let index = (iova >> shift) & 0x1ff;
            let pte = read_words::<1>(st.poc, table + index * 8)[0];
            if pte & 1 == 0 {
                return Outcome::Fault(0x10);
            }
            let is_table = level < 3 && pte & 2 != 0;
            if is_table {
                table = pte & 0x0000_ffff_ffff_f000;
                let size = 1u64 << shift;
                let walk = WalkEntry { level, iova_base: iova & !(size - 1), size, table };
                st.walks.entry(asid).or_default().push(walk);
                level += 1;
                continue;
            }
            if level == 3 && pte & 2 == 0 {
                return Outcome::Fault(0x10);
            }
            if pte & (1 << 10) == 0 {
                return Outcome::Fault(0x12);
            }
            st.last_leaf = Some(pte);
            let size = 1u64 << shift;
            let entry = TlbEntry {
                iova_base: iova & !(size - 1),
                size,
                pa_base: pte & 0x0000_ffff_ffff_f000 & !(size - 1),
                // AP[2] (bit 7) = read-only.
                writable: pte & (1 << 7) == 0,
            };
            st.tlb.entry(asid).or_default().push(entry);
            if write && !entry.writable {
                return Outcome::Fault(0x13);
            }
            return Outcome::Ok(entry.pa_base + (iova - entry.iova_base));
        }
    }
}

/// A stream whose STE says stage 2 only: check the STE as the architecture requires
/// (IHI 0070 5.2, with literal bit positions), then walk from S2TTB.
fn stage2(st: &mut State, sid: u32, ste: &[u64; 8], ipa: u64, write: bool) -> Outcome {
    let w2 = ste[2];
    let oas = oas_bits_of(st);
    let (t0sz, sl0, tg) = ((w2 >> 32) & 0x3f, (w2 >> 38) & 3, (w2 >> 46) & 3);
    let (aa64, endi, affd, stall, record) =
        ((w2 >> 51) & 1, (w2 >> 52) & 1, (w2 >> 53) & 1 == 1, (w2 >> 57) & 1, (w2 >> 58) & 1 == 1);
    // ILLEGAL (C_BAD_STE): not AArch64 tables; big-endian on a little-endian SMMU; a
    // stall on an SMMU that only terminates (STALL_MODEL = 1); a granule other than 4 KiB
    // (the only one modelled); S2T0SZ beyond 39, or an input wider than IAS (= OAS).
    let ias = 64 - t0sz as u32;
    if aa64 == 0 || endi == 1 || stall == 1 || tg != 0 || t0sz > 39 || ias > oas {
        return Outcome::Fault(0x04);
    }
    // S2SL0 with a 4 KiB granule: 0b00 level 2, 0b01 level 1, 0b10 level 0 (valid only
    // with 44 or more PA bits), 0b11 reserved. The input size must fit the starting
    // level's table, up to 16 tables concatenated (Arm ARM, VTCR_EL2).
    let start = match sl0 {
        0b00 => 2u32,
        0b01 => 1,
        0b10 if oas >= 44 => 0,
        _ => return Outcome::Fault(0x04),
    };
    let span_bits = 12 + 9 * (4 - start);
    if ias > span_bits + 4 || ias + 9 <= span_bits {
        return Outcome::Fault(0x04);
    }
    let vmid = Tag::Vmid(w2 as u16);
    let fault = |st: &mut State, id: u8| {
        if record {
            // F_TRANSLATION / F_PERMISSION / F_ACCESS: StreamID in word 0 [63:32]; word 1
            // RnW [35], S2 [39], CLASS [41:40] = 0b10 (the input address); InputAddr in word
            // 2; IPA[51:12] in word 3.
            let rnw = (!write) as u64;
            let w1 = (rnw << 35) | (1 << 39) | (0b10 << 40);
            st.pending_events.push([id as u64 | (sid as u64) << 32, w1, ipa, ipa & 0x000f_ffff_ffff_f000]);
        }
        Outcome::Fault(id)
    };
    if let Some(e) = st.tlb.get(&vmid).and_then(|v| v.iter().find(|e| ipa >= e.iova_base && ipa < e.iova_base + e.size))
    {
        if write && !e.writable {
            return fault(st, 0x13);
        }
        return Outcome::Ok(e.pa_base + (ipa - e.iova_base));
    }
    if ipa >> ias != 0 {
        return fault(st, 0x10);
    }
    let mut level = start;
    let mut table = ste[3] & 0x000f_ffff_ffff_fff0;
    if let Some(w) = st
        .walks
        .get(&vmid)
        .and_then(|v| v.iter().filter(|w| ipa >= w.iova_base && ipa < w.iova_base + w.size).max_by_key(|w| w.level))
    {
        (level, table) = (w.level + 1, w.table);
    }
    loop {
        let shift = 12 + 9 * (3 - level);
        // At the starting level the index takes every input bit above the level's shift
        // (more than 9 when tables are concatenated).
        let index = if level == start { ipa >> shift } else { (ipa >> shift) & 0x1ff };
        let pte = read_words::<1>(st.poc, table + index * 8)[0];
        if pte & 1 == 0 {
            return fault(st, 0x10);
        }
        if level < 3 && pte & 2 != 0 {
            table = pte & 0x0000_ffff_ffff_f000;
            let size = 1u64 << shift;
            st.walks.entry(vmid).or_default().push(WalkEntry { level, iova_base: ipa & !(size - 1), size, table });
            level += 1;
            continue;
        }
        if level == 3 && pte & 2 == 0 {
            return fault(st, 0x10);
        }
        if pte & (1 << 10) == 0 && !affd {
            return fault(st, 0x12);
        }
        st.last_leaf = Some(pte);
        // S2AP[1:0], bits [7:6]: bit 6 read, bit 7 write.
        let (readable, writable) = (pte & (1 << 6) != 0, pte & (1 << 7) != 0);
        if (write && !writable) || (!write && !readable) {
            return fault(st, 0x13);
        }
        let size = 1u64 << shift;
        let entry = TlbEntry {
            iova_base: ipa & !(size - 1),
            size,
            pa_base: pte & 0x0000_ffff_ffff_f000 & !(size - 1),
            writable,
        };
        st.tlb.entry(vmid).or_default().push(entry);
        return Outcome::Ok(entry.pa_base + (ipa - entry.iova_base));
    }
}

/// SMMU_IDR3.RIL, bit 10: the SMMU implements range invalidation (SMMUv3.2).
fn has_range_invalidation(st: &State) -> bool {
    st.regs.get(&reg::IDR3).copied().unwrap_or(0) & (1 << 10) != 0
}

/// What a CMD_TLBI_NH_VA or CMD_TLBI_S2_IPA reaches (IHI 0070 4.4.1), read as unkindly
/// as the architecture allows, so that a driver that under-invalidates is caught:
/// - TG = 0: no range and no hint; the entries translating `addr`, at any level.
/// - TG != 0 with range invalidation (SMMU_IDR3.RIL = 1): the entries overlapping
///   `[addr, addr + (NUM + 1) * 2^SCALE * granule)`, not one page beyond it.
/// - TG != 0 without it: NUM and SCALE are RES0, so ignored: one granule at `addr`.
/// - TG names a granule other than the 4 KiB every table here uses: the hint is wrong,
///   and a wrong hint need not invalidate anything, so nothing is.
/// - TTL != 0: a hint that the leaves are at that level; a leaf at another level is
///   left cached (a wrong hint need not invalidate it). Cached walks (Leaf = 0) are
///   reached by the range alone.
#[derive(Debug, Clone, Copy)]
struct TlbiScope {
    start: u64,
    end: u64,
    /// The leaf level the TTL hint names, if it gives one.
    level: Option<u32>,
    /// The hint names another granule: nothing is reached.
    wrong_granule: bool,
}

impl TlbiScope {
    fn of(cmd: Command, addr: u64, ril: bool) -> Self {
        let tg = (cmd.0[1] >> 10) & 0b11;
        let ttl = (cmd.0[1] >> 8) & 0b11;
        if tg == 0 {
            return Self { start: addr, end: addr + 1, level: None, wrong_granule: false };
        }
        let pages = if ril {
            let num = (cmd.0[0] >> 12) & 0x1f;
            let scale = (cmd.0[0] >> 20) & 0x1f;
            (num + 1) << scale
        } else {
            1
        };
        Self {
            start: addr,
            end: addr.saturating_add(pages << 12),
            level: (ttl != 0).then_some(ttl as u32),
            wrong_granule: tg != 0b01,
        }
    }

    fn overlaps(&self, base: u64, size: u64) -> bool {
        !self.wrong_granule && base < self.end && self.start < base + size
    }

    fn reaches_leaf(&self, e: &TlbEntry) -> bool {
        let level_ok = self.level.is_none_or(|l| level_of_size(e.size) == Some(l));
        level_ok && self.overlaps(e.iova_base, e.size)
    }

    fn reaches_walk(&self, e: &WalkEntry) -> bool {
        self.overlaps(e.iova_base, e.size)
    }
}

/// The 4 KiB-granule level whose leaves are `size` bytes.
fn level_of_size(size: u64) -> Option<u32> {
    match size {
        0x1000 => Some(3),
        0x20_0000 => Some(2),
        0x4000_0000 => Some(1),
        _ => None,
    }
}

/// SMMU_IDR0.S2P: the SMMU implements stage 2, so VMIDs tag its entries.
fn has_stage2(st: &State) -> bool {
    st.regs.get(&reg::IDR0).copied().unwrap_or(0) & IDR0_S2P as u64 != 0
}

/// SMMU_IDR5.OAS in bits: the spec's table written out again rather than the driver's
/// `cd::oas_bits`, so that the model stays a referee of the driver's tables.
fn oas_bits_of(st: &State) -> u32 {
    match st.regs.get(&reg::IDR5).copied().unwrap_or(0) & 7 {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}

fn is_known(op: u8) -> bool {
    matches!(op, 0x01..=0x06 | 0x10..=0x13 | 0x18 | 0x1a | 0x20..=0x23 | 0x28 | 0x2a | 0x30 | 0x40 | 0x41 | 0x44..=0x46)
}

fn read_words<const N: usize>(poc: Option<&PocMemory>, pa: u64) -> [u64; N] {
    let mut out = [0; N];
    for (i, w) in out.iter_mut().enumerate() {
        *w = match poc {
            Some(m) => m.read(pa + 8 * i as u64),
            // SAFETY: PA == host address in tests; the driver pointed the model here.
            None => unsafe { (pa as *const u64).add(i).read_volatile() },
        };
    }
    out
}

/// The STE for `sid`, as the SMMU finds it: the base registers' low address bits are
/// ignored as the architecture allows (the table is taken to be aligned to its size, a
/// level-2 table to its own), so a misaligned table is read from the wrong place.
fn read_ste(st: &mut State, sid: u32) -> Option<[u64; 8]> {
    ste_in_table(st, sid, true)
}

/// The STE for `sid` as the stream table's memory holds it: `None` where no table covers
/// it or its level-1 descriptor is invalid. A lookup (`lookup`) honours, and adds to, the
/// invalid level-1 descriptors the SMMU has cached; a test's look does neither.
fn ste_in_table(st: &mut State, sid: u32, lookup: bool) -> Option<[u64; 8]> {
    let raw_base = st.regs.get(&reg::STRTAB_BASE).copied().unwrap_or(0) & 0x000f_ffff_ffff_ffc0;
    let cfg = st.regs.get(&reg::STRTAB_BASE_CFG).copied().unwrap_or(0);
    let log2 = (cfg & 0x3f) as u32;
    if sid as u64 >= 1u64 << log2 {
        return None;
    }
    if (cfg >> 16) & 3 == 0 {
        let base = raw_base & !((64u64 << log2) - 1);
        return Some(read_words::<8>(st.poc, base + sid as u64 * 64));
    }
    let split = ((cfg >> 6) & 0x1f) as u32;
    let l1_index = sid >> split;
    let base = raw_base & !((8u64 << (log2 - split)).max(64) - 1);
    // An invalid level-1 descriptor the SMMU looked up before stays cached until a
    // non-leaf CMD_CFGI_STE (or CFGI_ALL) for its range.
    if lookup && st.invalid_l1.contains(&l1_index) {
        return None;
    }
    let l1 = read_words::<1>(st.poc, base + l1_index as u64 * 8)[0];
    let span = l1 & 0x1f;
    if span == 0 {
        if lookup {
            st.invalid_l1.push(l1_index);
        }
        return None;
    }
    let l2 = l1 & 0x000f_ffff_ffff_ffc0 & !((64u64 << (span - 1)) - 1);
    Some(read_words::<8>(st.poc, l2 + (sid as u64 & ((1 << split) - 1)) * 64))
}

impl SmmuModel {
    /// Time passes on the clock, if there is one, and a slow SMMU gets closer to done.
    fn access(&self, offset: usize, read: bool) {
        let mut st = self.state.borrow_mut();
        if let Some((clock, ns)) = st.clock {
            clock.advance(ns);
        }
        if read && offset == reg::CMDQ_CONS && st.slow_reads > 0 {
            st.slow_reads -= 1;
            if st.slow_reads == 0 {
                self.consume(&mut st);
            }
        }
    }
}

impl Mmio for SmmuModel {
    fn read32(&self, offset: usize) -> u32 {
        self.access(offset, true);
        if offset == reg::GBPA {
            let mut st = self.state.borrow_mut();
            if st.gbpa_busy_reads > 0 {
                st.gbpa_busy_reads -= 1;
                if st.gbpa_busy_reads == 0 {
                    let g = st.regs.get(&reg::GBPA).copied().unwrap_or(0);
                    st.regs.insert(reg::GBPA, g & !(1 << 31));
                }
            }
        }
        let v = self.reg(offset) as u32;
        if offset == reg::EVENTQ_PROD {
            while let Some(record) = self.next_late_event() {
                self.inject_event(record);
            }
        }
        v
    }

    fn write32(&self, offset: usize, value: u32) {
        self.access(offset, false);
        let mut st = self.state.borrow_mut();
        let v = value as u64;
        st.writes.push((offset, v));
        check_cleaned(&mut st, offset, v);
        match offset {
            o if o == reg::CR0 => {
                let (written, acked) =
                    (st.regs.get(&reg::CR0).copied().unwrap_or(0), st.regs.get(&reg::CR0ACK).copied().unwrap_or(0));
                if (v ^ written) & (written ^ acked) != 0 {
                    st.violations.push("SMMU_CR0 field changed again before its Update completed");
                }
                st.regs.insert(reg::CR0, v);
                if !Self::ack_withheld(&mut st, o) {
                    st.regs.insert(reg::CR0ACK, v);
                    // Enabled, the queue is processed from CONS on.
                    self.consume(&mut st);
                }
            }
            o if o == reg::IRQ_CTRL => {
                st.regs.insert(reg::IRQ_CTRL, v);
                if !Self::ack_withheld(&mut st, o) {
                    st.regs.insert(reg::IRQ_CTRLACK, v);
                }
            }
            o if o == reg::GBPA => {
                if st.regs.get(&reg::GBPA).copied().unwrap_or(0) & 1 << 31 != 0 {
                    st.violations.push("SMMU_GBPA written while UPDATE was 1");
                }
                if st.gbpa_stuck && v & (1 << 31) != 0 {
                    let in_effect = st.regs.get(&reg::GBPA).copied().unwrap_or(0);
                    st.regs.insert(reg::GBPA, in_effect | 1 << 31);
                } else if !st.no_gbpa {
                    st.regs.insert(reg::GBPA, v & !(1 << 31));
                }
            }
            o if o == reg::CMDQ_PROD => {
                st.regs.insert(reg::CMDQ_PROD, v);
                self.consume(&mut st);
            }
            o if o == reg::GERRORN => {
                let was_active = cmdq_error_active(&st);
                st.regs.insert(reg::GERRORN, v);
                if was_active && !cmdq_error_active(&st) {
                    let cons = st.regs.get(&reg::CMDQ_CONS).copied().unwrap_or(0) & 0xfffff;
                    st.regs.insert(reg::CMDQ_CONS, cons);
                    self.consume(&mut st);
                }
            }
            // SMMU_CMDQ_CONS.ERR may ignore a write (IHI 0070 6.3.28): it keeps what it held,
            // an earlier owner's error code included.
            o if o == reg::CMDQ_CONS => {
                let err = st.regs.get(&reg::CMDQ_CONS).copied().unwrap_or(0) & CMDQ_CONS_ERR;
                st.regs.insert(reg::CMDQ_CONS, v & !CMDQ_CONS_ERR | err);
            }
            _ => {
                st.regs.insert(offset, v);
            }
        }
    }

    fn read64(&self, offset: usize) -> u64 {
        self.access(offset, true);
        self.reg(offset)
    }

    fn write64(&self, offset: usize, value: u64) {
        self.access(offset, false);
        let mut st = self.state.borrow_mut();
        st.writes.push((offset, value));
        check_cleaned(&mut st, offset, value);
        if offset == reg::STRTAB_BASE && smmuen_or_its_update(&st) {
            // RO unless SMMUEN and CR0ACK.SMMUEN are both 0 (IHI 0070 6.3.24); a pending
            // disable still counts as enabled (6.3.9).
            st.violations.push("SMMU_STRTAB_BASE written while SMMUEN (or its Update) was 1");
            return;
        }
        st.regs.insert(offset, value);
    }
}

/// SMMU_CR0.SMMUEN or SMMU_CR0ACK.SMMUEN is 1: the SMMU is enabled, or its disable is not
/// yet complete (a field in transition keeps its old value for software's rules, IHI 0070
/// 6.3.9).
fn smmuen_or_its_update(st: &State) -> bool {
    (st.regs.get(&reg::CR0).copied().unwrap_or(0) | st.regs.get(&reg::CR0ACK).copied().unwrap_or(0)) & 1 != 0
}

/// SMMU_CMDQ_CONS.ERR, bits [30:24].
const CMDQ_CONS_ERR: u64 = 0x7f << 24;

/// Whether SMMU_GERROR.CMDQ_ERR is active (differs from GERRORN's): the SMMU consumes no
/// command until it is acknowledged, whoever left it active (IHI 0070 7.1, 6.3.28).
fn cmdq_error_active(st: &State) -> bool {
    let g = st.regs.get(&reg::GERROR).copied().unwrap_or(0);
    let n = st.regs.get(&reg::GERRORN).copied().unwrap_or(0);
    (g ^ n) & 1 != 0
}

/// A non-coherent SMMU is about to be told to read memory (a command announced, the
/// stream table's base, translation or queues enabled): every watched line must be at
/// the PoC as the CPU wrote it.
fn check_cleaned(st: &mut State, offset: usize, value: u64) {
    let Some(poc) = st.poc else { return };
    poc.trace(Trace::Register { offset, value });
    if [reg::CMDQ_PROD, reg::STRTAB_BASE, reg::CR0].contains(&offset) && !poc.stale_lines().is_empty() {
        st.violations.push("memory the SMMU reads was not cleaned to the PoC before it was told to read it");
    }
}

/// One thing that happened, in order: a cache maintenance operation or a register write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// A clean to the PoC of `len` bytes at `addr`.
    Clean {
        /// Start (host address == physical address).
        addr: u64,
        /// Bytes.
        len: usize,
    },
    /// A clean and invalidate of `len` bytes at `addr`.
    Invalidate {
        /// Start.
        addr: u64,
        /// Bytes.
        len: usize,
    },
    /// A register write.
    Register {
        /// Register offset.
        offset: usize,
        /// Value written.
        value: u64,
    },
}

#[derive(Debug, Default)]
struct Poc {
    /// 64-byte lines at the PoC, by address; a line not here holds zeros (what the host
    /// memory held before the driver wrote it).
    lines: HashMap<u64, [u64; 8]>,
    /// Regions the SMMU reads that the CPU writes.
    watched: Vec<(u64, usize)>,
    trace: Vec<Trace>,
}

/// Memory as a non-coherent SMMU sees it (the point of coherency), and the `CacheOps`
/// that update it: a clean copies the CPU's lines (the host memory) to it, an invalidate
/// makes the CPU see it. Every operation is traced, with the model's register writes.
#[derive(Debug, Default)]
pub struct PocMemory {
    state: std::sync::Mutex<Poc>,
}

const LINE: u64 = 64;

impl PocMemory {
    /// A fresh one, leaked (a driver's `Config::cache` is `'static`).
    pub fn leak() -> &'static Self {
        std::boxed::Box::leak(std::boxed::Box::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Poc> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watch `region`: a register write that tells the SMMU to read memory while one of
    /// its lines differs from the PoC is a violation (`stale_lines`).
    pub fn watch(&self, region: crate::DmaRegion) {
        self.lock().watched.push((region.pa.0, region.len));
    }

    /// Watch every region of the driver's memory the SMMU reads (not the event queue,
    /// which it writes).
    pub fn watch_memory(&self, mem: &crate::Memory) {
        for r in [mem.stream_table, mem.cmdq, mem.cds, mem.tables] {
            self.watch(r);
        }
    }

    /// Watched lines whose contents in the CPU's view differ from the PoC: written by the
    /// CPU and not cleaned since.
    pub fn stale_lines(&self) -> Vec<u64> {
        let st = self.lock();
        let mut out = Vec::new();
        for &(start, len) in &st.watched {
            let mut a = start & !(LINE - 1);
            while a < start + len as u64 {
                let poc = st.lines.get(&a).copied().unwrap_or([0; 8]);
                if host_line(a) != poc {
                    out.push(a);
                }
                a += LINE;
            }
        }
        out
    }

    /// Every cache operation and (while the model is non-coherent) register write, in order.
    pub fn trace_log(&self) -> Vec<Trace> {
        self.lock().trace.clone()
    }

    fn trace(&self, t: Trace) {
        self.lock().trace.push(t);
    }

    /// The SMMU reads a word (also what `smmuv2::model` walks through when non-coherent).
    pub fn read(&self, addr: u64) -> u64 {
        let st = self.lock();
        let line = st.lines.get(&(addr & !(LINE - 1))).copied().unwrap_or([0; 8]);
        line[((addr % LINE) / 8) as usize]
    }

    /// The SMMU writes a word (to the PoC; the CPU's view is not updated).
    fn write(&self, addr: u64, value: u64) {
        let mut st = self.lock();
        let line = st.lines.entry(addr & !(LINE - 1)).or_insert([0; 8]);
        line[((addr % LINE) / 8) as usize] = value;
    }

    fn lines_of(va: core::ptr::NonNull<u8>, len: usize) -> impl Iterator<Item = u64> {
        let start = va.as_ptr() as u64 & !(LINE - 1);
        let end = va.as_ptr() as u64 + len as u64;
        (start..end).step_by(LINE as usize)
    }
}

/// The CPU's view of the line at `a` (host memory).
fn host_line(a: u64) -> [u64; 8] {
    let mut w = [0; 8];
    for (i, x) in w.iter_mut().enumerate() {
        // SAFETY: watched and cleaned lines are in regions the test allocated; PA == VA.
        *x = unsafe { (a as *const u64).add(i).read_volatile() };
    }
    w
}

impl crate::CacheOps for PocMemory {
    fn clean(&self, va: core::ptr::NonNull<u8>, len: usize) {
        let mut st = self.lock();
        st.trace.push(Trace::Clean { addr: va.as_ptr() as u64, len });
        for a in Self::lines_of(va, len) {
            st.lines.insert(a, host_line(a));
        }
    }

    fn invalidate(&self, va: core::ptr::NonNull<u8>, len: usize) {
        let mut st = self.lock();
        st.trace.push(Trace::Invalidate { addr: va.as_ptr() as u64, len });
        for a in Self::lines_of(va, len) {
            if let Some(line) = st.lines.get(&a).copied() {
                for (i, w) in line.iter().enumerate() {
                    // SAFETY: the driver invalidates only its own memory; PA == VA.
                    unsafe { (a as *mut u64).add(i).write_volatile(*w) };
                }
            }
        }
    }
}

/// A register file in memory whose command consumer catches up the moment the doorbell
/// rings: for benchmarks, which should measure the driver and not a model of the SMMU.
#[derive(Debug)]
pub struct InstantSmmu {
    regs: Vec<core::cell::Cell<u64>>,
}

impl InstantSmmu {
    /// QEMU's ID registers with a 48-bit output size (host addresses), and stage 2 as
    /// QEMU 10.0 reports it with `stage=nested` (S2P, VMID16): a stage-1 domain is driven
    /// the same either way, and benchmarks measure the two stages side by side.
    pub fn new() -> Self {
        let regs: Vec<core::cell::Cell<u64>> = (0..0x20000 / 4).map(|_| core::cell::Cell::new(0)).collect();
        let mut idr = QEMU_IDR;
        idr[0] |= IDR0_S2P | IDR0_VMID16;
        idr[5] = (idr[5] & !0b111) | 5; // 48-bit output: host addresses
        for (i, v) in idr.iter().enumerate() {
            regs[reg::IDR0 / 4 + i].set(*v as u64);
        }
        Self { regs }
    }
}

impl Mmio for InstantSmmu {
    fn read32(&self, offset: usize) -> u32 {
        self.regs[offset / 4].get() as u32
    }
    fn write32(&self, offset: usize, value: u32) {
        let v = value as u64;
        self.regs[offset / 4].set(v);
        match offset {
            o if o == reg::CR0 => self.regs[reg::CR0ACK / 4].set(v),
            o if o == reg::IRQ_CTRL => self.regs[reg::IRQ_CTRLACK / 4].set(v),
            o if o == reg::GBPA => self.regs[reg::GBPA / 4].set(v & !(1 << 31)),
            o if o == reg::CMDQ_PROD => self.regs[reg::CMDQ_CONS / 4].set(v),
            _ => {}
        }
    }
    fn read64(&self, offset: usize) -> u64 {
        self.regs[offset / 4].get()
    }
    fn write64(&self, offset: usize, value: u64) {
        self.regs[offset / 4].set(value);
    }
}

impl Default for InstantSmmu {
    fn default() -> Self {
        Self::new()
    }
}

/// An SMMU over `InstantSmmu` (every command completes at once) with fresh host memory
/// for its queues and tables and `table_pages` pages of page-table pool: what the
/// benchmarks measure the driver and the service on.
pub fn instant_smmu(table_pages: usize) -> crate::Smmu<InstantSmmu> {
    let mem = fresh_memory(64 << 10, table_pages);
    let cfg = crate::Config { interrupts: false, ..host_config() };
    // SAFETY: the memory is fresh, and this `InstantSmmu` is the only register file.
    unsafe { crate::Smmu::init(InstantSmmu::new(), mem, cfg) }.expect("the instant model initialises")
}

/// `host_smmu`, on `SmmuModel::host_nested()`: an SMMU with both stages.
pub fn host_smmu_nested(table_pages: usize) -> crate::Smmu<SmmuModel> {
    // SAFETY: the memory is fresh and leaked; the model is the only register file.
    unsafe { crate::Smmu::init(SmmuModel::host_nested(), host_memory(table_pages), host_config()) }
        .expect("the host model initialises")
}

/// A driver initialised on `SmmuModel::host()` with `host_memory(table_pages)` and
/// `host_config()`: what tests of the driver, and of the code above it, run on.
pub fn host_smmu(table_pages: usize) -> crate::Smmu<SmmuModel> {
    // SAFETY: the memory is fresh and leaked; the model is the only register file.
    unsafe { crate::Smmu::init(SmmuModel::host(), host_memory(table_pages), host_config()) }
        .expect("the host model initialises")
}

/// Memory like the QEMU image gives the driver: a 64 KiB two-level stream table, 4 KiB
/// queues, and `table_pages` pages of page-table pool.
pub fn host_memory(table_pages: usize) -> crate::Memory {
    fresh_memory(4096, table_pages)
}

/// The driver's configuration on the model: 48-bit IOVAs (host addresses), 16-bit
/// StreamIDs, interrupts on, waits bounded by 1000 register reads (the model answers at
/// once, or never).
pub fn host_config() -> crate::Config {
    crate::Config { bound: crate::Bound::Polls(1000), ..crate::Config::default() }
}

/// Fresh host memory for a driver: a 64 KiB stream table, a command queue of `cmdq_len`
/// bytes, a 4 KiB event queue and CD table, and `table_pages` pages of page-table pool.
fn fresh_memory(cmdq_len: usize, table_pages: usize) -> crate::Memory {
    crate::Memory {
        stream_table: host_region(64 << 10, 64 << 10),
        cmdq: host_region(cmdq_len, cmdq_len),
        eventq: host_region(4096, 4096),
        cds: host_region(4096, 4096),
        tables: host_region(table_pages * 4096, 4096),
    }
}

/// `len` bytes of zeroed host memory aligned to `align`, leaked, as a region whose
/// physical address is its host address (what the model expects).
pub fn host_region(len: usize, align: usize) -> crate::DmaRegion {
    let layout = std::alloc::Layout::from_size_align(len, align).expect("valid layout");
    // SAFETY: `len` is non-zero for every caller (regions are never empty).
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    let va = core::ptr::NonNull::new(p).expect("host allocation");
    crate::DmaRegion { pa: crate::PhysAddr(p as u64), va, len }
}
