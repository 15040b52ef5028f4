//! What the architecture (Arm IHI 0070) lets a real SMMUv3 do that QEMU's does not: base
//! registers that ignore low address bits, registers that reset UNKNOWN or keep state
//! across a re-init, an update of SMMU_GBPA in progress at reset, ATS-translated traffic
//! that skips translation unless SMMU_CR0.ATSCHK is set, and an event interrupt that
//! marks only the queue going from empty to non-empty. Each test runs the driver on the
//! host model made to behave that way.

mod common;

use smmuv3::mmio::reg;
use smmuv3::model::{Outcome, SmmuModel, QEMU_IDR};
use smmuv3::{DmaRegion, Error, Memory, PhysAddr, Smmu, StreamId};

/// QEMU's ID registers with a 48-bit output size (host addresses), with `idr0_bits` set.
fn model_with(idr0_bits: u32) -> SmmuModel {
    let mut idr = QEMU_IDR;
    idr[0] |= idr0_bits;
    idr[5] = (idr[5] & !0b111) | 5;
    SmmuModel::with_idr(idr)
}

fn init(model: SmmuModel, mem: Memory) -> Result<Smmu<SmmuModel>, Error> {
    // SAFETY: the memory is fresh and leaked; the model is the only register file.
    unsafe { Smmu::init(model, mem, common::config()) }
}

/// `region` moved `by` bytes up: the same memory, no longer aligned as allocated.
fn shifted(region: DmaRegion, by: usize, len: usize) -> DmaRegion {
    // SAFETY: `by + len` stays inside the allocation (callers allocate `by` extra).
    let va = unsafe { core::ptr::NonNull::new_unchecked(region.va.as_ptr().add(by)) };
    DmaRegion { pa: PhysAddr(region.pa.0 + by as u64), va, len }
}

const ATS: u32 = 1 << 10;
const PRI: u32 = 1 << 16;

#[test]
fn tables_and_queues_the_smmu_would_misread_are_refused_with_the_alignment_needed() {
    // Two-level (64 KiB cannot hold 2^16 STEs): the level-1 table is 2 KiB and each level-2
    // table 16 KiB (256 STEs), so the region must be 16 KiB aligned; 4 KiB is not enough.
    let mut mem = common::memory(32);
    mem.stream_table = shifted(common::region(68 << 10, 64 << 10), 4096, 64 << 10);
    let e = init(model_with(0), mem).err();
    assert_eq!(e, Some(Error::Misaligned { what: "two-level stream table", align: 16 << 10 }));
    // Linear for 2^10 StreamIDs: 64 KiB, aligned to 64 KiB.
    let mut mem = common::memory(32);
    mem.stream_table = shifted(common::region(128 << 10, 64 << 10), 32 << 10, 64 << 10);
    let cfg = smmuv3::Config { sid_bits: 10, ..common::config() };
    // SAFETY: as in `init`.
    let e = unsafe { Smmu::init(model_with(0), mem, cfg) }.err();
    assert_eq!(e, Some(Error::Misaligned { what: "linear stream table", align: 64 << 10 }));
    // Queues are aligned to their size: 256 commands or 128 event records in 4 KiB.
    let mut mem = common::memory(32);
    mem.cmdq = shifted(common::region(8192, 4096), 2048, 4096);
    assert_eq!(init(model_with(0), mem).err(), Some(Error::Misaligned { what: "command queue", align: 4096 }));
    let mut mem = common::memory(32);
    mem.eventq = shifted(common::region(8192, 4096), 1024, 4096);
    assert_eq!(init(model_with(0), mem).err(), Some(Error::Misaligned { what: "event queue", align: 4096 }));
    // Aligned as the SMMU needs, the same sizes are accepted.
    assert!(init(model_with(0), common::memory(32)).is_ok());
    // Context descriptors: S1ContextPtr keeps bits [51:6].
    let mut mem = common::memory(32);
    mem.cds = shifted(common::region(8192, 4096), 32, 4096);
    assert_eq!(init(model_with(0), mem).err(), Some(Error::Misaligned { what: "context descriptors", align: 64 }));
}

#[test]
fn msi_addresses_that_reset_unknown_are_cleared_while_interrupts_are_off() {
    let model = model_with(PRI);
    for r in [reg::GERROR_IRQ_CFG0, reg::EVENTQ_IRQ_CFG0, reg::PRIQ_IRQ_CFG0] {
        model.preset(r, 0x0000_dead_beef_0000);
    }
    let smmu = init(model, common::memory(32)).unwrap();
    let m = smmu.regs();
    for r in [reg::GERROR_IRQ_CFG0, reg::EVENTQ_IRQ_CFG0, reg::PRIQ_IRQ_CFG0] {
        assert_eq!(m.reg(r), 0, "register {r:#x}");
    }
    // Cleared before interrupts were enabled.
    let writes = m.register_writes();
    let cleared = writes.iter().position(|w| *w == (reg::PRIQ_IRQ_CFG0, 0)).unwrap();
    let enabled = writes.iter().position(|w| w.0 == reg::IRQ_CTRL && w.1 != 0).unwrap();
    assert!(cleared < enabled);
}

#[test]
fn a_stale_command_error_from_an_earlier_owner_is_acknowledged_before_the_first_command() {
    let model = model_with(0);
    // GERROR.CMDQ_ERR active (GERROR != GERRORN), as a warm re-init may find it.
    model.preset(reg::GERROR, 1);
    let smmu = init(model, common::memory(32)).unwrap();
    assert_eq!(smmu.stats().command_errors, 0);
    let m = smmu.regs();
    assert_eq!(m.reg(reg::GERROR) ^ m.reg(reg::GERRORN), 0);
}

#[test]
fn gbpa_is_written_only_when_no_update_is_in_progress_and_keeps_its_other_fields() {
    let model = model_with(0);
    // MEMATTR (bits [3:0]) and an update in progress.
    model.preset(reg::GBPA, 0xf);
    model.gbpa_busy_for(3);
    let smmu = init(model, common::memory(32)).unwrap();
    let m = smmu.regs();
    assert_eq!(m.violations(), Vec::<&str>::new());
    assert_eq!(m.reg(reg::GBPA), 0xf | 1 << 20);
}

#[test]
fn ats_translated_traffic_is_checked_against_the_stream_table() {
    let mut smmu = init(model_with(ATS), common::memory(32)).unwrap();
    smmu.prepare_stream(StreamId(0x10)).unwrap();
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CR0) & (1 << 4), 1 << 4, "ATSCHK");
    // ATSCHK went on before SMMUEN.
    let writes = m.register_writes();
    let atschk = writes.iter().position(|w| w.0 == reg::CR0 && w.1 & (1 << 4) != 0).unwrap();
    let smmuen = writes.iter().position(|w| w.0 == reg::CR0 && w.1 & 1 != 0).unwrap();
    assert!(atschk < smmuen);
    // A device claiming an ATS translation to any physical address is stopped.
    assert_eq!(m.translate_ats(0x10, 0x4000_0000), Outcome::Abort);
    // Without ATS in SMMU_IDR0 the bit stays clear (it is RES0 then).
    let smmu = init(model_with(0), common::memory(32)).unwrap();
    assert_eq!(smmu.regs().reg(reg::CR0) & (1 << 4), 0);
}

/// An F_TRANSLATION record from stream 8 for `page`.
fn record(page: u64) -> [u64; 4] {
    [0x10 | (8u64 << 32), 1 << 35, page << 12, 0]
}

#[test]
fn records_written_while_the_queue_drains_are_drained_too() {
    let mut smmu = init(model_with(0), common::memory(32)).unwrap();
    for i in 0..2 {
        smmu.regs().inject_event(record(i));
    }
    // Three more arrive after the driver read PROD: no new interrupt would announce them.
    smmu.regs().inject_events_during_next_drain(&[record(2), record(3), record(4)]);
    let mut pages = Vec::new();
    let d = smmu.drain_events(|e| pages.push(e.fault().unwrap().txn.iova.0 >> 12));
    assert_eq!(pages, [0, 1, 2, 3, 4]);
    assert!(!d.remaining);
    // One interrupt announced all five: the queue was never seen empty in between.
    assert_eq!(smmu.regs().event_irqs(), 1);
    // 100 records, and 60 more arriving while they are read: one queue's worth (128),
    // then "call again" for the 32 left, none lost.
    for i in 0..100 {
        smmu.regs().inject_event(record(i));
    }
    smmu.regs().inject_events_during_next_drain(&(100..160).map(record).collect::<Vec<_>>());
    let d = smmu.drain_events(|_| {});
    assert_eq!((d.events, d.remaining, d.overflowed), (128, true, false));
    let d = smmu.drain_events(|_| {});
    assert_eq!((d.events, d.remaining, d.overflowed), (32, false, false));
}

#[test]
fn every_iova_width_the_description_may_ask_for_gives_a_legal_context_descriptor() {
    // The IOMMU PD sets the SMMU up for 25 to 48 IOVA bits (`IOVA_BITS`); the model
    // raises C_BAD_CD for a T0SZ outside what 4 KiB-granule tables allow.
    for ias_bits in [25, 32, 33, 39, 48] {
        let cfg = smmuv3::Config { ias_bits, ..common::config() };
        // SAFETY: fresh leaked memory; the model is the only register file.
        let mut smmu = unsafe { Smmu::init(model_with(0), common::memory(32), cfg) }.unwrap();
        let d = smmu.create_domain().unwrap();
        smmu.attach(StreamId(0x10), d).unwrap();
        let page = common::buffer(4096, 4096);
        let iova = (1u64 << ias_bits) - 4096;
        smmu.map(d, smmuv3::Iova(iova), page.pa, 4096, smmuv3::Perm::Read, smmuv3::MemType::Normal).unwrap();
        assert_eq!(smmu.regs().translate(0x10, iova, false), Outcome::Ok(page.pa.0), "{ias_bits} bits");
    }
}

/// A page mapped at 0x1000 for stream 0x10, its translation cached in the model's TLB.
fn cached_page() -> (Smmu<SmmuModel>, smmuv3::DomainId) {
    let mut smmu = init(model_with(0), common::memory(32)).unwrap();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(0x10), d).unwrap();
    let page = common::buffer(4096, 4096);
    smmu.map(d, smmuv3::Iova(0x1000), page.pa, 4096, smmuv3::Perm::Read, smmuv3::MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(0x10, 0x1000, false), Outcome::Ok(page.pa.0));
    (smmu, d)
}

/// The cached page unmapped with the first command of `opcode` rejected with CERROR
/// `code`: the unmap completes (the command left in place, acknowledged and fetched
/// again), the page is gone from the TLB, and the retry is counted, not an error.
fn unmap_completes_with_the_rejected_command_retried(opcode: smmuv3::cmd::Opcode, code: u32) {
    let (mut smmu, d) = cached_page();
    smmu.regs().reject_next_with(opcode as u8, code);
    assert_eq!(smmu.unmap(d, smmuv3::Iova(0x1000), 4096), Ok(1));
    assert_eq!(smmu.regs().translate(0x10, 0x1000, false), Outcome::Fault(smmuv3::event::id::F_TRANSLATION));
    let st = smmu.stats();
    assert_eq!((st.command_retries, st.command_errors), (1, 0));
    assert!(!smmu.has_stale_entries(d).unwrap());
}

#[test]
fn a_command_whose_fetch_aborts_is_retried_not_dropped() {
    // CERROR_ABT: the SMMU's fetch of the TLBI aborted. Replaced by a CMD_SYNC, the TLBI
    // would be gone and the page would stay in the TLB; left in place, it is fetched again.
    unmap_completes_with_the_rejected_command_retried(smmuv3::cmd::Opcode::TlbiNhVa, 2);
}

/// CERROR_ATC_INV_SYNC (3): an ATC invalidation did not complete before the CMD_SYNC
/// behind it, and CONS is at that CMD_SYNC (IHI 0070 7.1). Left in place and acknowledged,
/// it is fetched again and completes, as Linux's `arm_smmu_cmdq_skip_err` leaves it
/// ("attempt to complete other pending commands by repeating the CMD_SYNC"); reported as a
/// command error instead, the unmap it confirms would fail.
#[test]
fn a_sync_behind_a_timed_out_atc_invalidation_is_retried_not_reported() {
    unmap_completes_with_the_rejected_command_retried(smmuv3::cmd::Opcode::Sync, 3);
}

#[test]
fn a_command_error_with_cerror_none_does_not_replace_the_command() {
    let (mut smmu, d) = cached_page();
    // GERROR.CMDQ_ERR with SMMU_CMDQ_CONS.ERR = CERROR_NONE: nothing is wrong with the
    // command at CONS (Linux's arm_smmu_cmdq_skip_err leaves it alone too). Replaced by a
    // CMD_SYNC, the TLBI would be lost and the page would stay in the TLB.
    smmu.regs().reject_next_with(smmuv3::cmd::Opcode::TlbiNhVa as u8, 0);
    assert_eq!(smmu.unmap(d, smmuv3::Iova(0x1000), 4096), Ok(1));
    assert_eq!(smmu.regs().translate(0x10, 0x1000, false), Outcome::Fault(smmuv3::event::id::F_TRANSLATION));
    let tlbi = smmu.regs().commands().iter().filter(|c| c.opcode() == smmuv3::cmd::Opcode::TlbiNhVa as u8).count();
    assert_eq!(tlbi, 1, "the TLBI ran");
    assert_eq!(smmu.stats().command_errors, 0);
    assert!(!smmu.has_stale_entries(d).unwrap());
}

/// The model is a referee for the failure paths, which turn the command queue off and on
/// around the SMMU's enable: it must fetch no command while SMMU_CR0ACK.CMDQEN is 0, and
/// start from CONS once the enable is acknowledged (IHI 0070 6.3.9.3). (Before, a
/// CMDQ_PROD write was consumed whatever CMDQEN said.)
#[test]
fn the_model_fetches_no_command_while_the_queue_is_disabled() {
    use smmuv3::cmd::Command;
    use smmuv3::mmio::Mmio;
    let m = model_with(0);
    let queue = smmuv3::model::host_region(4096, 4096);
    // SAFETY: slot 0 of the 4 KiB queue just allocated.
    unsafe { queue.va.cast::<[u64; 2]>().write_volatile(Command::sync().0) };
    // 256 entries (LOG2SIZE = 8), one command queued.
    m.write64(reg::CMDQ_BASE, queue.pa.0 | 8);
    m.write32(reg::CMDQ_PROD, 1);
    assert_eq!(m.reg(reg::CMDQ_CONS) & 0xfffff, 0, "fetched while CMDQEN is 0");
    m.write32(reg::CR0, 1 << 3);
    assert_eq!(m.reg(reg::CMDQ_CONS) & 0xfffff, 1, "not fetched once CMDQEN is 1");
}
