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

/// A deferred unmap of a range that is a page at the end of one level-3 table, a 2 MiB
/// block, and a page at the start of the next level-3 table: the three leaves leave the
/// tables in one checked walk each, the device reaches none of them after the sync, and
/// the pages on either side, in the same two tables, stay mapped and reachable.
#[test]
fn a_deferred_unmap_across_tables_and_a_block_clears_exactly_its_leaves() {
    let mut smmu = smmu();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(A), d).unwrap();
    // 2 MiB aligned physical memory, at the IOVAs' offsets, so that the middle of the
    // range maps as a block.
    let buf = common::buffer(0x40_2000, 0x20_0000);
    let pa = |iova: u64| buf.pa.0 + iova;
    // Four pages around the range, each range mapped as its own call: the block in the
    // middle, a page below it in one level-3 table, a page above it in the next.
    for (iova, len) in [(0x1f_e000, 0x1000), (0x1f_f000, 0x1000), (0x20_0000, 0x20_0000), (0x40_0000, 0x2000)] {
        smmu.map(d, Iova(iova), PhysAddr(pa(iova)), len, Perm::ReadWrite, MemType::Normal).unwrap();
    }
    assert_eq!(smmu.translate(d, Iova(0x20_0000)).unwrap().map(|l| l.size()), Some(0x20_0000), "not a block");
    for iova in [0x1f_e000, 0x1f_f000, 0x20_0000, 0x30_0000, 0x40_0000, 0x40_1000] {
        assert!(reaches(&smmu, A, iova), "{iova:#x} before");
    }
    // Partial ranges are refused, nothing changed: half the block; a range running on
    // into the hole above 0x40_2000.
    assert!(smmu.unmap_deferred(d, Iova(0x1f_f000), 0x10_1000).is_err());
    assert!(smmu.unmap_deferred(d, Iova(0x1f_f000), 0x20_4000).is_err());
    assert!(smmu.translate(d, Iova(0x1f_f000)).unwrap().is_some());
    assert_eq!(smmu.unmap_deferred(d, Iova(0x1f_f000), 0x20_2000).unwrap(), 3);
    smmu.sync_deferred().unwrap();
    for iova in [0x1f_f000, 0x20_0000, 0x2f_f000, 0x40_0000] {
        assert!(smmu.translate(d, Iova(iova)).unwrap().is_none(), "{iova:#x} still in the tables");
        assert!(!reaches(&smmu, A, iova), "{iova:#x} reachable after the sync");
    }
    for iova in [0x1f_e000, 0x40_1000] {
        assert_eq!(smmu.regs().translate(A, iova, true), Outcome::Ok(pa(iova)), "{iova:#x} beside the range");
    }
}

/// `unmap_batch` checks every range before it clears any (its clearing walks no longer
/// check): a batch whose later range is a partial block, a hole or a repeat changes
/// nothing, its earlier ranges included, and queues no command.
#[test]
fn a_batch_with_one_bad_range_clears_none() {
    let mut smmu = smmu();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(A), d).unwrap();
    let buf = common::buffer(0x20_0000 + 2 * 4096, 0x20_0000);
    smmu.map(d, Iova(0x20_0000), buf.pa, 0x20_0000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(d, Iova(0x1000), PhysAddr(buf.pa.0 + 0x20_0000), 0x2000, Perm::ReadWrite, MemType::Normal).unwrap();
    let commands = smmu.stats().commands;
    for bad in [(Iova(0x30_0000), 0x1000), (Iova(0x3000), 0x1000), (Iova(0x1000), 0x1000), (Iova(0x2000), 0x2000)] {
        assert!(smmu.unmap_batch(d, &[(Iova(0x1000), 0x1000), bad]).is_err(), "{bad:x?} accepted");
        for iova in [0x1000, 0x2000, 0x20_0000, 0x3f_f000] {
            assert!(smmu.translate(d, Iova(iova)).unwrap().is_some(), "{iova:#x} cleared by a refused batch");
            assert!(reaches(&smmu, A, iova));
        }
        assert_eq!(smmu.stats().commands, commands, "a refused batch queued a command");
    }
    assert_eq!(smmu.unmap_batch(d, &[(Iova(0x2000), 0x1000), (Iova(0x20_0000), 0x20_0000)]).unwrap(), 2);
    assert!(!reaches(&smmu, A, 0x2000) && !reaches(&smmu, A, 0x20_0000) && reaches(&smmu, A, 0x1000));
}

/// A domain with a deferred unmap is destroyed (its invalidation confirmed by the
/// destroy's own sync) and its slot given to a new domain: the new one carries no
/// deferred range of the old (a map at the same IOVA waits for nothing), a later failed
/// sync leaves it fresh, and its device reaches its own page, never the old one.
#[test]
fn a_deferred_unmap_does_not_outlive_its_domain_into_the_next_in_its_slot() {
    let mut smmu = smmu();
    let old = smmu.create_domain().unwrap();
    smmu.attach(StreamId(A), old).unwrap();
    let page = common::buffer(2 * 4096, 4096);
    smmu.map(old, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert!(reaches(&smmu, A, 0x1000));
    // Detached first (its sync would confirm the deferred unmap below), then the unmap.
    smmu.detach(StreamId(A)).unwrap();
    smmu.unmap_deferred(old, Iova(0x1000), 4096).unwrap();
    // A destroy that fails (its sync fails on the deferred TLBI) leaves the domain, and
    // its deferred range, as they were: the batch's sync still reports the failure.
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    let syncs = smmu.stats().syncs;
    assert!(smmu.destroy_domain(old).is_err());
    assert!(smmu.translation(old).is_ok(), "a refused destroy took the domain");
    assert!(smmu.stats().syncs > syncs);
    assert!(smmu.sync_deferred().is_err());
    assert!(smmu.has_stale_entries(old).unwrap());
    smmu.destroy_domain(old).unwrap();
    let new = smmu.create_domain().unwrap();
    assert_eq!(new, old, "the slot is reused");
    smmu.attach(StreamId(B), new).unwrap();
    let other = PhysAddr(page.pa.0 + 4096);
    let syncs = smmu.stats().syncs;
    smmu.map(new, Iova(0x1000), other, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.stats().syncs, syncs, "the new domain waited for the old one's range");
    assert_eq!(smmu.regs().translate(B, 0x1000, true), Outcome::Ok(other.0));
    // A deferred unmap in another domain whose sync fails marks that one stale, not the
    // new domain in the old slot.
    let third = smmu.create_domain().unwrap();
    smmu.map(third, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap_deferred(third, Iova(0x1000), 4096).unwrap();
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    assert!(smmu.sync_deferred().is_err());
    assert!(smmu.has_stale_entries(third).unwrap());
    assert!(!smmu.has_stale_entries(new).unwrap());
    assert_eq!(smmu.regs().translate(B, 0x1000, true), Outcome::Ok(other.0));
}

/// The bit `sync_deferred` visits a domain by outlives the domain: one destroyed with a
/// deferred unmap (confirmed by the destroy's sync) leaves its slot's bit set for the
/// domain created there next. A sync that then fails for another domain must not take
/// the new one, which has deferred nothing, for stale.
#[test]
fn a_failed_sync_marks_no_domain_that_took_a_destroyed_ones_slot() {
    let mut smmu = smmu();
    let page = common::buffer(2 * 4096, 4096);
    let gone = smmu.create_domain().unwrap();
    smmu.map(gone, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap_deferred(gone, Iova(0x1000), 4096).unwrap();
    smmu.destroy_domain(gone).unwrap();
    let reused = smmu.create_domain().unwrap();
    assert_eq!(reused, gone, "the slot is reused");
    smmu.attach(StreamId(A), reused).unwrap();
    smmu.map(reused, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    let other = smmu.create_domain().unwrap();
    smmu.map(other, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap_deferred(other, Iova(0x1000), 4096).unwrap();
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    assert!(smmu.sync_deferred().is_err());
    assert!(smmu.has_stale_entries(other).unwrap());
    assert!(!smmu.has_stale_entries(reused).unwrap(), "the slot's bit taken for the new domain's");
    assert_eq!(smmu.regs().translate(A, 0x1000, true), Outcome::Ok(page.pa.0));
}

/// A map inside the span of one domain's deferred unmaps (not over any of them) syncs
/// first, as a map over one would; when that CMD_SYNC fails (another domain's deferred
/// TLBI rejected), the failure must still be the batch's: `sync_deferred` reports it, and
/// the other domain is stale. (Before, the map's own sync consumed it: `sync_deferred`
/// then said `Ok`, and the service would have told the other device's client that its
/// unmap was confirmed while the SMMU still translated it.)
#[test]
fn a_failed_sync_inside_a_map_is_still_reported_by_sync_deferred() {
    let mut smmu = smmu();
    let (da, db) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(A), da).unwrap();
    smmu.attach(StreamId(B), db).unwrap();
    let page = common::buffer(4 * 4096, 4096);
    let at = |i: u64| PhysAddr(page.pa.0 + i * 4096);
    smmu.map(db, Iova(0x1000), at(0), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(da, Iova(0x1000), at(1), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(da, Iova(0x3000), at(2), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert!(reaches(&smmu, B, 0x1000) && reaches(&smmu, A, 0x1000) && reaches(&smmu, A, 0x3000));
    // B's first, so its TLBI is the first the SMMU consumes: the one rejected.
    smmu.unmap_deferred(db, Iova(0x1000), 4096).unwrap();
    smmu.unmap_deferred(da, Iova(0x1000), 4096).unwrap();
    smmu.unmap_deferred(da, Iova(0x3000), 4096).unwrap();
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    // Between A's two unmapped pages: over neither. A's domain is invalidated whole, so
    // the map itself is safe.
    smmu.map(da, Iova(0x2000), at(3), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(A, 0x2000, true), Outcome::Ok(at(3).0));
    assert!(!reaches(&smmu, A, 0x1000) && !reaches(&smmu, A, 0x3000));
    assert!(reaches(&smmu, B, 0x1000), "B's translation survived its rejected TLBI");
    assert!(smmu.sync_deferred().is_err(), "the batch's confirmation must not be Ok");
    assert!(smmu.has_stale_entries(db).unwrap());
}

/// The same failed sync, then a map back over the other domain's unmapped page, at a new
/// address: the map's own sync completes (the rejection was consumed by the earlier one),
/// but the TLBI it was to confirm is the one the SMMU rejected, so the device must be
/// translated through the new entry, never the old page still in its TLB: a failure
/// recorded against the deferred unmaps, whosever, has the map's domain invalidated whole
/// first (break-before-make). Before, only a failure of the map's own sync did, and B
/// reached its old page through the new mapping.
#[test]
fn a_map_after_a_recorded_failure_invalidates_its_domain_first() {
    let mut smmu = smmu();
    let (da, db) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(A), da).unwrap();
    smmu.attach(StreamId(B), db).unwrap();
    let page = common::buffer(5 * 4096, 4096);
    let at = |i: u64| PhysAddr(page.pa.0 + i * 4096);
    smmu.map(db, Iova(0x1000), at(0), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(da, Iova(0x1000), at(1), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(da, Iova(0x3000), at(2), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(B, 0x1000, true), Outcome::Ok(at(0).0), "in B's TLB");
    smmu.unmap_deferred(db, Iova(0x1000), 4096).unwrap();
    smmu.unmap_deferred(da, Iova(0x1000), 4096).unwrap();
    smmu.unmap_deferred(da, Iova(0x3000), 4096).unwrap();
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    smmu.map(da, Iova(0x2000), at(3), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert!(reaches(&smmu, B, 0x1000), "B's translation survived its rejected TLBI");
    // B's page again, now at(4): its own sync completes, its old entry is still cached.
    smmu.map(db, Iova(0x1000), at(4), 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(B, 0x1000, true), Outcome::Ok(at(4).0), "B through its new entry");
    assert!(smmu.sync_deferred().is_err(), "the batch's confirmation is still not Ok");
}
