//! The driver when the SMMU fails part way, and on implementations with errata: every
//! path that removes access either completes or leaves the driver knowing what is left to
//! do, and does it before anything else touches the domain.

mod common;

use smmuv3::cmd::{Command, Opcode};
use smmuv3::event::id;
use smmuv3::model::{Outcome, SmmuModel, QEMU_IDR};
use smmuv3::{Error, Iova, MemType, Perm, Smmu, StreamId};

const SID: u32 = 0x08;

/// A 4 KiB page mapped at 0x1000 for stream `SID`, and its translation cached.
fn mapped(smmu: &mut Smmu<SmmuModel>) -> (smmuv3::DomainId, u64) {
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let page = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Ok(page.pa.0));
    (d, page.pa.0)
}

/// The SMMU stops consuming commands during an unmap: the entry is gone from the tables,
/// its TLB entry not. The driver remembers, and the next operation on the domain
/// invalidates by ASID first; until then a later unmap of the same range is "not mapped"
/// but the stale entry is not forgotten.
#[test]
fn an_invalidation_that_times_out_is_finished_before_anything_else_on_the_domain() {
    let mut smmu = common::smmu(32);
    let (d, pa) = mapped(&mut smmu);
    smmu.regs().set_stuck(true);
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Err(Error::Timeout("CMD_SYNC completion")));
    smmu.regs().set_stuck(false);
    assert!(smmu.has_stale_entries(d).unwrap());
    // Stale: the SMMU still translates from its TLB.
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Ok(pa));
    // The next operation on the domain, a map elsewhere, first invalidates the ASID.
    smmu.regs().clear_commands();
    let other = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x8000), other.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    // (The commands queued while it was stuck are consumed first, when the doorbell
    // rings again; the driver cannot know they will be, so it invalidates the ASID.)
    let ops: Vec<u8> = smmu.regs().commands().iter().map(Command::opcode).collect();
    assert!(ops.ends_with(&[Opcode::TlbiNhAsid as u8, Opcode::Sync as u8]), "{ops:x?}");
    assert!(!smmu.has_stale_entries(d).unwrap());
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Fault(id::F_TRANSLATION));
}

/// An attach whose STE update fails part way leaves the stream aborting and the books
/// saying so: the old domain is no longer counted as attached; the stream does not keep
/// a half-written entry.
#[test]
fn an_attach_that_fails_leaves_the_stream_aborting() {
    let mut smmu = common::smmu(32);
    let (d, _) = mapped(&mut smmu);
    let e = smmu.create_domain().unwrap();
    // The first CFGI_STE of the update is refused; the abort that follows is not.
    smmu.regs().reject_next(Opcode::CfgiSte as u8);
    assert!(matches!(smmu.attach(StreamId(SID), e), Err(Error::CommandError { .. })));
    assert_eq!(smmu.regs().translate(SID, 0x1000, false), Outcome::Abort);
    assert_eq!(smmu.stream_domain(StreamId(SID)), None);
    // Neither domain has the stream attached, so both can go.
    smmu.destroy_domain(d).unwrap();
    smmu.destroy_domain(e).unwrap();
}

/// A level-2 stream table installed for a StreamID the SMMU had already looked up (and
/// may have cached as invalid) is announced with a non-leaf CFGI_STE and a sync.
#[test]
fn a_new_level_2_table_is_announced_to_the_smmu() {
    let mut smmu = common::smmu(32);
    // A device on stream 0x300 tries first: the SMMU finds an invalid level-1 descriptor
    // and (the model, as the architecture allows) caches it.
    assert_eq!(smmu.regs().translate(0x300, 0x1000, false), Outcome::Fault(id::C_BAD_STREAMID));
    smmu.regs().clear_commands();
    smmu.prepare_stream(StreamId(0x300)).unwrap();
    let cmds = smmu.regs().commands();
    assert_eq!(cmds[0], Command::cfgi_ste(StreamId(0x300), false));
    assert_eq!(cmds.last().map(Command::opcode), Some(Opcode::Sync as u8));
    // The stream then works: the cached invalid descriptor is gone.
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(0x300), d).unwrap();
    let page = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::Read, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(0x300, 0x1000, false), Outcome::Ok(page.pa.0));
}

/// MMU-700 (SMMU_IIDR ProductID 0x487, Arm): erratum 2812531 needs a CMD_SYNC before the
/// 64th command of a batch. An unmap of 64 pages (64 CMD_TLBI_NH_VA) gets one; the same
/// on another implementation does not.
#[test]
fn mmu_700_never_sees_more_than_63_commands_without_a_sync() {
    for (iidr, forced) in [(0x4870_043bu32, true), (0x4830_043b, false), (0, false)] {
        let mut idr = QEMU_IDR;
        idr[5] = (idr[5] & !0b111) | 5;
        // Without range invalidation (SMMU_IDR3.RIL = 0), so that 64 pages are 64 commands.
        idr[3] = 0;
        let model = SmmuModel::with_idr(idr);
        model.preset(smmuv3::mmio::reg::IIDR, u64::from(iidr));
        // SAFETY: fresh leaked memory; the model is the only register file.
        let mut smmu = unsafe { Smmu::init(model, common::memory(64), common::config()) }.unwrap();
        assert_eq!(smmuv3::errata::for_iidr(iidr).commands_per_sync.is_some(), forced);
        let d = smmu.create_domain().unwrap();
        let buf = common::buffer(64 * 4096, 4096);
        for p in 0..64u64 {
            smmu.map(
                d,
                Iova(0x10_0000 + p * 4096),
                smmuv3::PhysAddr(buf.pa.0 + p * 4096),
                4096,
                Perm::Read,
                MemType::Normal,
            )
            .unwrap();
        }
        smmu.regs().clear_commands();
        let ranges: Vec<(Iova, u64)> = (0..64u64).map(|p| (Iova(0x10_0000 + p * 4096), 4096)).collect();
        smmu.unmap_batch(d, &ranges).unwrap();
        let ops: Vec<u8> = smmu.regs().commands().iter().map(Command::opcode).collect();
        let longest = ops.split(|op| *op == Opcode::Sync as u8).map(<[u8]>::len).max().unwrap();
        let syncs = ops.iter().filter(|op| **op == Opcode::Sync as u8).count();
        assert_eq!(ops.len() - syncs, 64, "{iidr:#x}");
        if forced {
            assert!(longest <= 63, "{iidr:#x}: {longest} commands without a sync");
            assert_eq!(syncs, 2);
        } else {
            assert_eq!((longest, syncs), (64, 1), "{iidr:#x}");
        }
    }
}

/// An attach that fails before any STE word is written (a StreamID outside the stream
/// table, or no room for its level-2 table) leaves the SMMU pointing nowhere new: the
/// domain is not counted as attached, so it can still be destroyed, and the stream keeps
/// what it had.
#[test]
fn an_attach_that_fails_before_writing_does_not_pin_the_domain() {
    let mut smmu = common::smmu(32);
    let e = smmu.create_domain().unwrap();
    // 16-bit StreamIDs: 0x1_0000 is outside the table.
    assert_eq!(smmu.attach(StreamId(0x1_0000), e), Err(Error::StreamOutOfRange(StreamId(0x1_0000))));
    smmu.destroy_domain(e).unwrap();
    // The 64 KiB two-level table has room for three level-2 tables of 256 STEs: a
    // StreamID in a fourth range has no entry to write.
    let (d, _) = mapped(&mut smmu);
    let e = smmu.create_domain().unwrap();
    for sid in [0x100, 0x200] {
        smmu.prepare_stream(StreamId(sid)).unwrap();
    }
    assert_eq!(smmu.attach(StreamId(0x300), e), Err(Error::StreamTableFull));
    smmu.destroy_domain(e).unwrap();
    // The stream `mapped` attached still translates through its domain, counted there.
    assert_eq!(smmu.stream_domain(StreamId(SID)), Some(d));
    assert_eq!(smmu.destroy_domain(d), Err(Error::DomainInUse));
}
