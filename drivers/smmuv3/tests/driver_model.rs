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
    assert_eq!(o.iter().filter(|&&op| op == Opcode::TlbiNhVa as u8).count(), 64);
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
