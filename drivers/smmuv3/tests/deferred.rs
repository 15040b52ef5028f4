//! Deferred unmaps (`unmap_deferred`, then `sync_deferred`): what a batch of a client's
//! mapping queue uses. Their TLB invalidations are queued, and one CMD_SYNC confirms all
//! of them, over every domain; until then a cached translation may still be used, and a
//! map over such a range waits for the confirmation first (break-before-make); a sync
//! that fails leaves every domain with a deferred unmap stale.

mod common;

use smmuv3::cmd::Opcode;
use smmuv3::model::{host_config, host_memory, Outcome, SmmuModel};
use smmuv3::{Iova, MemType, Perm, PhysAddr, Smmu, StreamId};

const A: u32 = 0x08;
const B: u32 = 0x10;

fn smmu() -> Smmu<SmmuModel> {
    // SAFETY: fresh, leaked memory; the model is the only register file.
    unsafe { Smmu::init(SmmuModel::host(), host_memory(32), host_config()) }.expect("init")
}

fn reaches(smmu: &Smmu<SmmuModel>, sid: u32, iova: u64) -> bool {
    matches!(smmu.regs().translate(sid, iova, true), Outcome::Ok(_))
}

#[test]
fn one_sync_confirms_every_deferred_unmap_of_every_domain() {
    let mut smmu = smmu();
    let (da, db) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(A), da).unwrap();
    smmu.attach(StreamId(B), db).unwrap();
    let page = common::buffer(4 * 4096, 4096);
    for i in 0..3 {
        smmu.map(da, Iova(0x1000 * (i + 1)), PhysAddr(page.pa.0 + i * 4096), 4096, Perm::ReadWrite, MemType::Normal)
            .unwrap();
    }
    smmu.map(db, Iova(0x1000), PhysAddr(page.pa.0 + 3 * 4096), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    // The devices use them: the SMMU caches the translations.
    for iova in [0x1000, 0x2000, 0x3000] {
        assert!(reaches(&smmu, A, iova));
    }
    assert!(reaches(&smmu, B, 0x1000));
    let syncs = smmu.stats().syncs;
    for iova in [0x1000, 0x2000, 0x3000] {
        smmu.unmap_deferred(da, Iova(iova), 4096).unwrap();
    }
    smmu.unmap_deferred(db, Iova(0x1000), 4096).unwrap();
    assert_eq!(smmu.stats().syncs, syncs, "nothing waited for yet");
    // Gone from the tables; the cached translations may still be used until confirmed.
    assert!(smmu.translate(da, Iova(0x1000)).unwrap().is_none());
    assert!(reaches(&smmu, A, 0x2000), "the model's TLB keeps what no invalidation has removed yet");
    smmu.sync_deferred().unwrap();
    assert_eq!(smmu.stats().syncs, syncs + 1, "one CMD_SYNC for the batch");
    for iova in [0x1000, 0x2000, 0x3000] {
        assert!(!reaches(&smmu, A, iova), "{iova:#x} after the confirmation");
    }
    assert!(!reaches(&smmu, B, 0x1000));
    // Nothing deferred: no sync at all.
    smmu.sync_deferred().unwrap();
    assert_eq!(smmu.stats().syncs, syncs + 1);
}

#[test]
fn a_map_over_an_unconfirmed_range_waits_for_the_confirmation() {
    let mut smmu = smmu();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(A), d).unwrap();
    let page = common::buffer(2 * 4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert!(reaches(&smmu, A, 0x1000));
    smmu.unmap_deferred(d, Iova(0x1000), 4096).unwrap();
    let syncs = smmu.stats().syncs;
    // Elsewhere: no wait.
    smmu.map(d, Iova(0x8000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.stats().syncs, syncs);
    // Over it, to another page: the old translation is invalidated and confirmed first,
    // so the device reaches the new page, never the old one.
    let new = PhysAddr(page.pa.0 + 4096);
    smmu.map(d, Iova(0x1000), new, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.stats().syncs, syncs + 1);
    assert_eq!(smmu.regs().translate(A, 0x1000, true), Outcome::Ok(new.0));
}

#[test]
fn a_sync_forgets_what_it_confirmed_in_every_domain_and_only_there() {
    let mut smmu = smmu();
    let (da, db, dc) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(A), da).unwrap();
    smmu.attach(StreamId(B), dc).unwrap();
    let page = common::buffer(2 * 4096, 4096);
    for d in [da, db, dc] {
        smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    }
    // Deferred in the first and the third domain, not the second.
    smmu.unmap_deferred(da, Iova(0x1000), 4096).unwrap();
    smmu.unmap_deferred(dc, Iova(0x1000), 4096).unwrap();
    smmu.sync_deferred().unwrap();
    assert!(!reaches(&smmu, A, 0x1000) && !reaches(&smmu, B, 0x1000));
    // Confirmed: a map over either range has nothing left to wait for.
    let syncs = smmu.stats().syncs;
    smmu.map(da, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(dc, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.stats().syncs, syncs);
    // A failed sync marks stale the domains with deferred unmaps since the last sync, and
    // no other.
    smmu.unmap_deferred(dc, Iova(0x1000), 4096).unwrap();
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    assert!(smmu.sync_deferred().is_err());
    assert!(smmu.has_stale_entries(dc).unwrap());
    assert!(!smmu.has_stale_entries(da).unwrap() && !smmu.has_stale_entries(db).unwrap());
}

#[test]
fn a_failed_sync_leaves_every_deferred_domain_stale() {
    let mut smmu = smmu();
    let (da, db) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(A), da).unwrap();
    smmu.attach(StreamId(B), db).unwrap();
    let page = common::buffer(2 * 4096, 4096);
    smmu.map(da, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(db, Iova(0x1000), PhysAddr(page.pa.0 + 4096), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap_deferred(da, Iova(0x1000), 4096).unwrap();
    smmu.unmap_deferred(db, Iova(0x1000), 4096).unwrap();
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    assert!(smmu.sync_deferred().is_err(), "the rejected TLBI was not reported");
    assert!(smmu.has_stale_entries(da).unwrap() && smmu.has_stale_entries(db).unwrap());
    // The next use of each invalidates it whole first.
    smmu.invalidate_domain(da).unwrap();
    smmu.invalidate_domain(db).unwrap();
    assert!(!reaches(&smmu, A, 0x1000) && !reaches(&smmu, B, 0x1000));
}

#[test]
fn a_sync_of_another_caller_that_fails_is_not_taken_for_a_confirmation() {
    // The deferred TLBI is rejected at someone else's CMD_SYNC (a plain unmap's): that
    // caller hears the error, and the batch's own sync, which then completes, must not
    // count as confirming it.
    let mut smmu = smmu();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(A), d).unwrap();
    let page = common::buffer(2 * 4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(d, Iova(0x2000), PhysAddr(page.pa.0 + 4096), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap_deferred(d, Iova(0x1000), 4096).unwrap();
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    assert!(smmu.unmap(d, Iova(0x2000), 4096).is_err());
    assert!(smmu.sync_deferred().is_err());
    assert!(smmu.has_stale_entries(d).unwrap());
}
