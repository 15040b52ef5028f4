//! The table pool is shared by every context bank: a domain that maps and unmaps one page
//! at IOVAs 2 MiB apart leaves an empty level-3 table (and sometimes a level-2 one) at each
//! place, and used to drain the pool so that every other domain's map failed for good
//! (issue 22, item 7, on the SMMUv3; the same tables here). `Smmu::map` now takes empty
//! tables back when the pool runs short, after a confirmed TLBIASID (break-before-make:
//! MMU-500 caches walks, so no page goes back to the pool while a walk could lead into it).

use smmuv2::model::{host_config, host_region, Mmu500Model, ZYNQMP};
use smmuv2::{Error, Iova, MemType, Memory, Perm, PhysAddr, Smmu, StreamId};

const PAGE: u64 = 4096;
const SID_A: u32 = 0x14e8;
const SID_B: u32 = 0x14e9;

fn smmu(model: &Mmu500Model, pages: usize) -> Smmu<&Mmu500Model> {
    let mem = Memory { tables: host_region(pages * PAGE as usize, PAGE as usize) };
    // SAFETY: the pool is freshly allocated host memory only this driver uses.
    unsafe { Smmu::init(model, mem, host_config()) }.expect("init")
}

/// Two domains, a root each, and three pages of pool: A maps at 1 << 39 (a
/// level-1, level-2 and level-3 table: the pool is empty) and unmaps it: its three tables
/// map nothing but stay linked.
fn pool_left_empty_by_a(model: &Mmu500Model) -> (Smmu<&Mmu500Model>, smmuv2::DomainId, smmuv2::DomainId, PhysAddr) {
    let mut smmu = smmu(model, 2 + 3);
    let buf = host_region(2 * PAGE as usize, PAGE as usize).pa;
    let (a, b) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(SID_A), a).unwrap();
    smmu.attach(StreamId(SID_B), b).unwrap();
    smmu.map(a, Iova(1 << 39), buf, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    // The device uses it: the model's TLB holds the translation.
    assert!(model.access(SID_A, 1 << 39, false).reached_memory());
    smmu.unmap(a, Iova(1 << 39), PAGE).unwrap();
    assert_eq!(smmu.free_table_pages(), 0);
    (smmu, a, b, buf)
}

#[test]
fn tables_another_domain_left_empty_are_reclaimed_after_a_confirmed_invalidation() {
    let model = Mmu500Model::new(ZYNQMP);
    let (mut smmu, a, b, buf) = pool_left_empty_by_a(&model);
    let writes_before = model.writes().len();
    smmu.map(b, Iova(0x1020_0000), PhysAddr(buf.0 + PAGE), PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    // A TLBIASID for A's bank and a TLBSYNC went out before B's tables were written.
    let layout = model.layout();
    let cb_a = a.cb();
    let writes: Vec<usize> = model.writes()[writes_before..].iter().map(|w| w.0).collect();
    assert_eq!(
        writes,
        vec![layout.cb(cb_a, smmuv2::mmio::reg::CB_TLBIASID), layout.cb(cb_a, smmuv2::mmio::reg::CB_TLBSYNC)],
        "B's map: reclaim A's tables, confirmed, and no other register"
    );
    assert!(model.access(SID_B, 0x1020_0000, true).reached_memory());
    assert!(!model.access(SID_A, 1 << 39, false).reached_memory());
    assert!(!smmu.has_stale_entries(a).unwrap());
    // A's three tables are B's now (a level-1, level-2 and level-3 under B's root).
    assert_eq!(smmu.free_table_pages(), 0);
    assert!(model.violations().is_empty(), "{:?}", model.violations());
}

#[test]
fn tables_whose_invalidation_failed_are_not_reused_until_it_is_confirmed() {
    let model = Mmu500Model::new(ZYNQMP);
    let (mut smmu, a, b, buf) = pool_left_empty_by_a(&model);
    let pa = PhysAddr(buf.0 + PAGE);
    model.stall_syncs(true);
    assert_eq!(
        smmu.map(b, Iova(0x1020_0000), pa, PAGE, Perm::ReadWrite, MemType::Normal),
        Err(Error::Timeout("SMMU_CBn_TLBSTATUS.SACTIVE"))
    );
    // Unlinked, not reused: the pool is still empty and A is stale.
    assert_eq!(smmu.free_table_pages(), 0);
    assert!(smmu.has_stale_entries(a).unwrap());
    assert_eq!(smmu.translate(b, Iova(0x1020_0000)).unwrap(), None);
    model.stall_syncs(false);
    // The next attempt invalidates A's ASID again; once confirmed the pages are reused.
    smmu.map(b, Iova(0x1020_0000), pa, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    assert!(!smmu.has_stale_entries(a).unwrap());
    assert_eq!(model.access(SID_B, 0x1020_0000, false), smmuv2::model::Outcome::Translated(pa.0));
    assert!(!model.access(SID_A, 1 << 39, false).reached_memory());
}

#[test]
fn a_domain_cannot_drain_the_pool_by_mapping_and_unmapping_everywhere() {
    // A maps and unmaps one page at IOVAs 2 MiB apart, far more often than the pool has
    // pages; B, mapping one page at a time, never finds the pool empty.
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model, 2 + 3 + 3);
    let buf = host_region(PAGE as usize, PAGE as usize).pa;
    let (a, b) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(SID_A), a).unwrap();
    smmu.attach(StreamId(SID_B), b).unwrap();
    for i in 0..200u64 {
        let iova = 0x4000_0000 + i * (2 << 20) + (i % 7) * (1 << 30);
        smmu.map(a, Iova(iova), buf, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
        assert!(model.access(SID_A, iova, false).reached_memory());
        smmu.unmap(a, Iova(iova), PAGE).unwrap();
        assert!(!model.access(SID_A, iova, false).reached_memory());
        let iova_b = 0x1000_0000 + (i % 3) * (1 << 30);
        smmu.map(b, Iova(iova_b), buf, PAGE, Perm::Read, MemType::Normal).unwrap();
        smmu.unmap(b, Iova(iova_b), PAGE).unwrap();
    }
    assert!(model.violations().is_empty(), "{:?}", model.violations());
}

/// A TLBSYNC that timed out may still be running when the next operation comes. Before,
/// that operation wrote its TLBIASID and a new TLBSYNC over it and took SACTIVE reading
/// 0 as its own sync's completion; on a model where a sync written over an active one is
/// ignored (the status stays the old sync's, which covers only what was written before
/// it), SACTIVE cleared when the old sync completed, and the operation was answered
/// confirmed with its TLBIASID still queued. Here: A's unmap (a TLBIVAL: the last level
/// only) times out; B's map then reclaims A's emptied tables: the TLBIASID that must
/// drop A's cached walks before the pages are reused was answered confirmed by the old
/// sync, A's three tables became B's, and A's device, walking from the level-3 table its
/// walk cache still named, read one of B's tables as its own (B maps IOVA 0: entry 0 is
/// valid at every level, so whichever of B's tables the page became, A's walk finds a
/// descriptor there; here a table descriptor, read as a page without the access flag:
/// an access-flag fault where only a translation fault is right). Now
/// nothing is written to a bank until the old sync is seen completed
/// (`Smmu::sync_idle`), so the TLBIASID has a sync of its own.
#[test]
fn a_sync_still_running_after_a_timeout_confirms_nothing_written_after_it() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model, 2 + 3);
    let buf = host_region(2 * PAGE as usize, PAGE as usize).pa;
    let (a, b) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(SID_A), a).unwrap();
    smmu.attach(StreamId(SID_B), b).unwrap();
    smmu.map(a, Iova(1 << 39), buf, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    assert!(model.access(SID_A, 1 << 39, false).reached_memory(), "A's walk is cached");
    model.stall_syncs(true);
    assert_eq!(smmu.unmap(a, Iova(1 << 39), PAGE), Err(Error::Timeout("SMMU_CBn_TLBSTATUS.SACTIVE")));
    assert!(smmu.has_stale_entries(a).unwrap());
    // The SMMU recovers; the timed-out sync completes a few status reads from now.
    model.stall_syncs(false);
    let pb = PhysAddr(buf.0 + PAGE);
    smmu.map(b, Iova(0), pb, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.free_table_pages(), 0, "A's three tables are B's now");
    assert!(!smmu.has_stale_entries(a).unwrap());
    assert_eq!(model.access(SID_B, 0, false), smmuv2::model::Outcome::Translated(pb.0));
    // A's walk must read only A's own tables: its root no longer links any, so a
    // translation fault (from its walk cache, it would read one of B's tables as its
    // level-3 table: B's table descriptor taken for a page without the access flag, an
    // access-flag fault, or B's page itself).
    let out = model.access(SID_A, 1 << 39, true);
    assert_eq!(
        out,
        smmuv2::model::Outcome::ContextFault { cb: a.cb(), fsr: smmuv2::fault::fsr::TF },
        "A walked B's table"
    );
    assert!(model.violations().is_empty(), "{:?}", model.violations());
}
