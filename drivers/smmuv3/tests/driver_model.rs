//! The driver against the host model: default deny, translations, invalidation order,
//! command errors, timeouts, event queue overflow.

mod common;

use smmuv3::cmd::{Command, Opcode};
use smmuv3::event::id;
use smmuv3::mmio::reg;
use smmuv3::model::{Outcome, SmmuModel};
use smmuv3::{Error, Event, Iova, MemType, PageTableError, Perm, PhysAddr, Smmu, StreamId};

const SID_A: u32 = 0x08;
const SID_B: u32 = 0x10;

fn ops(model: &SmmuModel) -> Vec<u8> {
    model.commands().iter().map(Command::opcode).collect()
}

#[test]
fn init_is_default_deny() {
    let mut smmu = common::smmu(32);
    let m = smmu.regs();
    // GBPA.ABORT stays set: were the SMMU disabled again, traffic would abort.
    assert_eq!(m.reg(reg::GBPA) & (1 << 20), 1 << 20);
    assert!(smmu.gbpa_aborts());
    // CR0: SMMUEN | EVENTQEN | CMDQEN.
    assert_eq!(m.reg(reg::CR0), 0b1101);
    // Configuration and TLBs were invalidated before translation was enabled.
    assert_eq!(ops(m), vec![Opcode::CfgiSteRange as u8, Opcode::TlbiNsnhAll as u8, Opcode::Sync as u8]);
    // Two-level stream table (64 KiB cannot hold 2^16 STEs linearly).
    assert_eq!((m.reg(reg::STRTAB_BASE_CFG) >> 16) & 3, 1);
    // Every stream: unknown ones are terminated with C_BAD_STREAMID, prepared ones abort.
    assert_eq!(m.translate(SID_A, 0x1000, false), Outcome::Fault(id::C_BAD_STREAMID));
    smmu.prepare_stream(StreamId(SID_A)).unwrap();
    let m = smmu.regs();
    assert_eq!(m.translate(SID_A, 0x1000, false), Outcome::Abort);
    assert_eq!(m.translate(SID_A + 1, 0x1000, true), Outcome::Abort);
}

#[test]
fn linear_stream_table_when_memory_allows() {
    let mut mem = common::memory(8);
    mem.stream_table = common::region(64 << 8, 64 << 10);
    let cfg = smmuv3::Config { sid_bits: 8, ..common::config() };
    // SAFETY: fresh memory; the model is the only register file.
    let smmu = unsafe { Smmu::init(SmmuModel::host(), mem, cfg) }.unwrap();
    let m = smmu.regs();
    assert_eq!(m.reg(reg::STRTAB_BASE_CFG), 8);
    for sid in 0..256 {
        assert_eq!(m.translate(sid, 0, true), Outcome::Abort);
    }
}

#[test]
fn map_attach_unmap_with_invalidation() {
    let mut smmu = common::smmu(32);
    let buf = common::buffer(0x4000, 0x1000);
    let d = smmu.create_domain().unwrap();
    smmu.map(d, Iova(0x10_0000), buf.pa, 0x2000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(d, Iova(0x20_0000), PhysAddr(buf.pa.0 + 0x2000), 0x1000, Perm::Read, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    let m = smmu.regs();
    assert_eq!(m.translate(SID_A, 0x10_0123, true), Outcome::Ok(buf.pa.0 + 0x123));
    assert_eq!(m.translate(SID_A, 0x20_0000, false), Outcome::Ok(buf.pa.0 + 0x2000));
    assert_eq!(m.translate(SID_A, 0x20_0000, true), Outcome::Fault(id::F_PERMISSION));
    assert_eq!(m.translate(SID_A, 0x30_0000, false), Outcome::Fault(id::F_TRANSLATION));
    // Another stream never attached: aborted.
    smmu.prepare_stream(StreamId(SID_B)).unwrap();
    assert_eq!(smmu.regs().translate(SID_B, 0x10_0000, false), Outcome::Abort);

    // The model cached the translation; unmap must invalidate it before returning.
    smmu.regs().clear_commands();
    smmu.unmap(d, Iova(0x10_0000), 0x1000).unwrap();
    let m = smmu.regs();
    assert_eq!(ops(m), vec![Opcode::TlbiNhVa as u8, Opcode::Sync as u8]);
    assert_eq!(m.translate(SID_A, 0x10_0000, true), Outcome::Fault(id::F_TRANSLATION));
    assert_eq!(m.translate(SID_A, 0x10_1000, true), Outcome::Ok(buf.pa.0 + 0x1000));

    // Narrowing permission is invalidated too.
    smmu.protect(d, Iova(0x10_1000), 0x1000, Perm::Read).unwrap();
    assert_eq!(smmu.regs().translate(SID_A, 0x10_1000, true), Outcome::Fault(id::F_PERMISSION));

    // Detach: back to abort, cached config dropped.
    smmu.detach(StreamId(SID_A)).unwrap();
    assert_eq!(smmu.regs().translate(SID_A, 0x10_1000, false), Outcome::Abort);
}

#[test]
fn batch_unmap_shares_one_sync() {
    let mut smmu = common::smmu(32);
    let buf = common::buffer(64 * 0x1000, 0x1000);
    let d = smmu.create_domain().unwrap();
    smmu.map(d, Iova(0x100_0000), buf.pa, 64 * 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    for i in 0..64 {
        assert!(matches!(smmu.regs().translate(SID_A, 0x100_0000 + i * 0x1000, true), Outcome::Ok(_)));
    }
    smmu.regs().clear_commands();
    let ranges: Vec<(Iova, u64)> = (0..64).map(|i| (Iova(0x100_0000 + i * 0x1000), 0x1000)).collect();
    assert_eq!(smmu.unmap_batch(d, &ranges).unwrap(), 64);
    let o = ops(smmu.regs());
    assert_eq!(o.iter().filter(|&&op| op == Opcode::Sync as u8).count(), 1);
    // QEMU's SMMU (and so the model) has range invalidation: one command for the 64 pages.
    assert_eq!(o.iter().filter(|&&op| op == Opcode::TlbiNhVa as u8).count(), 1);
    assert_eq!(o.last(), Some(&(Opcode::Sync as u8)));
    for i in 0..64 {
        assert_eq!(smmu.regs().translate(SID_A, 0x100_0000 + i * 0x1000, false), Outcome::Fault(id::F_TRANSLATION));
    }
    // Overlapping ranges in one batch are refused without change.
    smmu.map(d, Iova(0x100_0000), buf.pa, 0x2000, Perm::ReadWrite, MemType::Normal).unwrap();
    let before = smmu.free_table_pages();
    assert!(smmu.unmap_batch(d, &[(Iova(0x100_0000), 0x2000), (Iova(0x100_1000), 0x1000)]).is_err());
    assert!(smmu.translate(d, Iova(0x100_1000)).unwrap().is_some());
    assert_eq!(smmu.free_table_pages(), before);
}

#[test]
fn own_memory_cannot_be_mapped() {
    let mut smmu = common::smmu(32);
    let d = smmu.create_domain().unwrap();
    for r in smmu.own_memory() {
        assert_eq!(
            smmu.map(d, Iova(0x1000), r.pa, 0x1000, Perm::Read, MemType::Normal),
            Err(Error::ProtectedMemory(r.pa))
        );
        // A range that merely ends inside it is refused too.
        let before = PhysAddr(r.pa.0 - 0x1000);
        assert_eq!(
            smmu.map(d, Iova(0x1000), before, 0x2000, Perm::Read, MemType::Normal),
            Err(Error::ProtectedMemory(before))
        );
    }
}

#[test]
fn sync_that_never_completes_is_a_timeout() {
    let mut smmu = common::smmu(32);
    let buf = common::buffer(0x1000, 0x1000);
    let d = smmu.create_domain().unwrap();
    smmu.map(d, Iova(0x1000), buf.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.regs().set_stuck(true);
    assert_eq!(smmu.unmap(d, Iova(0x1000), 0x1000), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.stats().timeouts, 1);
}

#[test]
fn command_error_is_reported_and_recovered() {
    let mut smmu = common::smmu(32);
    let buf = common::buffer(0x2000, 0x1000);
    let d = smmu.create_domain().unwrap();
    smmu.map(d, Iova(0x1000), buf.pa, 0x2000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    assert_eq!(
        smmu.unmap(d, Iova(0x1000), 0x1000),
        Err(Error::CommandError { code: 1, opcode: Opcode::TlbiNhVa as u8 })
    );
    assert_eq!(smmu.stats().command_errors, 1);
    // The queue goes on: GERROR acknowledged, later commands complete.
    let m = smmu.regs();
    assert_eq!(m.reg(reg::GERROR) ^ m.reg(reg::GERRORN), 0);
    smmu.unmap(d, Iova(0x2000), 0x1000).unwrap();
    assert_eq!(smmu.regs().translate(SID_A, 0x2000, false), Outcome::Fault(id::F_TRANSLATION));
}

#[test]
fn events_are_decoded_and_overflow_is_counted() {
    let mut smmu = common::smmu(32);
    // F_TRANSLATION from stream 8: a write to iova 0xdead000, unprivileged, CLASS=IN.
    let rec = [0x10 | (8u64 << 32), (2 << 40), 0xdead000, 0];
    smmu.regs().inject_event(rec);
    let mut got = Vec::new();
    let d = smmu.drain_events(|e| got.push(e));
    assert_eq!((d.events, d.overflowed), (1, false));
    match got[0] {
        Event::Translation(f) => {
            assert_eq!(f.txn.sid, StreamId(8));
            assert_eq!(f.txn.iova, Iova(0xdead000));
            assert_eq!(f.txn.access, smmuv3::Access::Write);
        }
        other => panic!("{other:?}"),
    }
    // 4 KiB of 32-byte records: 128 slots. Write 130: the last two are lost.
    for i in 0..130u64 {
        smmu.regs().inject_event([0x10 | (8u64 << 32), 1 << 35, i << 12, 0]);
    }
    let mut n = 0;
    let d = smmu.drain_events(|_| n += 1);
    assert_eq!((d.events, d.overflowed), (128, true));
    assert_eq!(smmu.stats().event_overflows, 1);
    // Acknowledged: the next pass sees no overflow.
    smmu.regs().inject_event(rec);
    let d = smmu.drain_events(|_| {});
    assert_eq!((d.events, d.overflowed), (1, false));
}

#[test]
fn domains_and_streams_are_bounded() {
    // A root table per domain, and room for a mapping after.
    let mut smmu = common::smmu(smmuv3::MAX_DOMAINS + 8);
    let mut ds = Vec::new();
    loop {
        match smmu.create_domain() {
            Ok(d) => ds.push(d),
            Err(e) => {
                assert_eq!(e, Error::TooManyDomains);
                break;
            }
        }
    }
    assert_eq!(ds.len(), smmuv3::MAX_DOMAINS);
    smmu.attach(StreamId(1), ds[0]).unwrap();
    assert_eq!(smmu.destroy_domain(ds[0]), Err(Error::DomainInUse));
    smmu.detach(StreamId(1)).unwrap();
    let free = smmu.free_table_pages();
    smmu.destroy_domain(ds[0]).unwrap();
    assert_eq!(smmu.free_table_pages(), free + 1);
    assert_eq!(smmu.attach(StreamId(1), ds[0]), Err(Error::NoSuchDomain));
    assert_eq!(smmu.attach(StreamId(1 << 16), ds[1]), Err(Error::StreamOutOfRange(StreamId(1 << 16))));
    assert_eq!(
        smmu.map(ds[1], Iova(0x1000), PhysAddr(0x1000_0000), 0x1000, Perm::Read, MemType::Normal).and(Ok(())),
        Ok(())
    );
    assert_eq!(
        smmu.map(ds[1], Iova(0x1000), PhysAddr(0x1000_0000), 0x1000, Perm::Read, MemType::Normal),
        Err(Error::PageTable(PageTableError::AlreadyMapped(Iova(0x1000))))
    );
}

#[test]
fn refuses_what_it_cannot_drive() {
    use smmuv3::Unsupported;
    let cases: [(usize, u32, Unsupported); 4] = [
        (0, 1 << 1, Unsupported::NoStage1),
        (0, 1 << 4, Unsupported::NotCoherent),
        (5, 1 << 4, Unsupported::No4KGranule),
        (0, 2 << 2, Unsupported::NoAArch64Tables),
    ];
    for (idr, clear, want) in cases {
        let mut v = smmuv3::model::QEMU_IDR;
        v[5] = (v[5] & !0b111) | 5;
        v[idr] &= !clear;
        // SAFETY: fresh memory; the model is the only register file.
        let r = unsafe { Smmu::init(SmmuModel::with_idr(v), common::memory(4), common::config()) };
        assert_eq!(r.err(), Some(Error::Unsupported(want)));
    }
    let mut v = smmuv3::model::QEMU_IDR;
    v[5] = (v[5] & !0b111) | 5;
    v[1] = (v[1] & !0x3f) | 8; // SIDSIZE = 8 while the platform needs 16
                               // SAFETY: as above.
    let r = unsafe { Smmu::init(SmmuModel::with_idr(v), common::memory(4), common::config()) };
    assert_eq!(r.err(), Some(Error::Unsupported(Unsupported::StreamIdsTooWide { sid_bits: 8, needed: 16 })));
}

/// Domain B holds a page at 0x1000_0000 (its root and three tables) and domain A one at
/// 512 GiB, which its device then uses, so the SMMU caches A's walk; A unmaps it. The
/// pool (8 pages: two roots, three tables each) is then empty, A's three tables empty
/// but linked.
fn pool_left_empty_by_a() -> (Smmu<SmmuModel>, smmuv3::DomainId, smmuv3::DomainId, smmuv3::DmaRegion) {
    let mut smmu = common::smmu(8);
    let buf = common::buffer(0x2000, 0x1000);
    let (a, b) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(SID_A), a).unwrap();
    smmu.attach(StreamId(SID_B), b).unwrap();
    smmu.map(b, Iova(0x1000_0000), buf.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(a, Iova(1 << 39), buf.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(SID_A, 1 << 39, false), Outcome::Ok(buf.pa.0));
    smmu.unmap(a, Iova(1 << 39), 0x1000).unwrap();
    assert_eq!(smmu.free_table_pages(), 0);
    (smmu, a, b, buf)
}

#[test]
fn tables_another_domain_left_empty_are_reclaimed_after_a_confirmed_invalidation() {
    let (mut smmu, a, b, buf) = pool_left_empty_by_a();
    // B's next page, 2 MiB on, needs a level-3 table: the pool has none, A's empty tables
    // are taken back (break, TLBI by A's ASID, sync, then reuse) and B's map succeeds.
    smmu.regs().clear_commands();
    smmu.map(b, Iova(0x1020_0000), PhysAddr(buf.pa.0 + 0x1000), 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().commands(), vec![Command::tlbi_nh_asid(smmu.asid(a).unwrap()), Command([0x46, 0])]);
    assert_eq!(smmu.free_table_pages(), 2);
    assert_eq!(smmu.regs().translate(SID_B, 0x1020_0000, true), Outcome::Ok(buf.pa.0 + 0x1000));
    // A's device, at the address whose walk it had cached: that walk led into a page that
    // is now one of B's tables (its level-3 index is that of B's new page). The TLBI by
    // ASID dropped it, so the walk starts from A's root and finds nothing.
    assert_eq!(smmu.regs().translate(SID_A, 1 << 39, false), Outcome::Fault(id::F_TRANSLATION));
    assert!(!smmu.has_stale_entries(a).unwrap());
    // And back: once B has unmapped its new page, A maps where it was (three tables: the
    // two left and the one B's unmap left empty).
    smmu.unmap(b, Iova(0x1020_0000), 0x1000).unwrap();
    smmu.map(a, Iova(1 << 39), buf.pa, 0x1000, Perm::Read, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(SID_A, 1 << 39, false), Outcome::Ok(buf.pa.0));
    assert_eq!(smmu.free_table_pages(), 0);
}

#[test]
fn tables_whose_invalidation_failed_are_not_reused_until_it_is_confirmed() {
    let (mut smmu, a, b, buf) = pool_left_empty_by_a();
    // The SMMU rejects the TLBI: the map fails, A's tables are unlinked but none is
    // reused (the pool is still empty), and A is marked stale.
    smmu.regs().reject_next(Opcode::TlbiNhAsid as u8);
    let pa = PhysAddr(buf.pa.0 + 0x1000);
    assert_eq!(
        smmu.map(b, Iova(0x1020_0000), pa, 0x1000, Perm::ReadWrite, MemType::Normal),
        Err(Error::CommandError { code: 1, opcode: Opcode::TlbiNhAsid as u8 })
    );
    assert_eq!(smmu.free_table_pages(), 0);
    assert!(smmu.has_stale_entries(a).unwrap());
    assert_eq!(smmu.translate(b, Iova(0x1020_0000)).unwrap(), None);
    // A walk through A's cached (stale) descriptors reads pages that hold only invalid
    // descriptors: it faults.
    assert_eq!(smmu.regs().translate(SID_A, 1 << 39, false), Outcome::Fault(id::F_TRANSLATION));
    // The next attempt invalidates A's ASID again; once confirmed the pages are reused.
    smmu.map(b, Iova(0x1020_0000), pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.free_table_pages(), 2);
    assert!(!smmu.has_stale_entries(a).unwrap());
    assert_eq!(smmu.regs().translate(SID_B, 0x1020_0000, false), Outcome::Ok(pa.0));
    assert_eq!(smmu.regs().translate(SID_A, 1 << 39, false), Outcome::Fault(id::F_TRANSLATION));
}

#[test]
fn a_domain_cannot_drain_the_pool_by_mapping_and_unmapping_everywhere() {
    // A maps and unmaps one page at IOVAs 2 MiB apart, far more often than the pool has
    // pages; B, mapping only one page at a time, never finds the pool empty.
    let mut smmu = common::smmu(2 + 3 + 3);
    let buf = common::buffer(0x1000, 0x1000);
    let (a, b) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    for i in 0..200u64 {
        let iova = Iova(0x4000_0000 + i * (2 << 20) + (i % 7) * (1 << 30));
        smmu.map(a, iova, buf.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
        smmu.unmap(a, iova, 0x1000).unwrap();
        let iova_b = Iova(0x1000_0000 + (i % 3) * (1 << 30));
        smmu.map(b, iova_b, buf.pa, 0x1000, Perm::Read, MemType::Normal).unwrap();
        smmu.unmap(b, iova_b, 0x1000).unwrap();
    }
}
