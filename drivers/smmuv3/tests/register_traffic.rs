//! How many times the driver touches the SMMU's registers on the per-request paths. A
//! register access is an uncached device access; under an emulator each is a trap into
//! the device model. A driver that maps each request's buffer pays for them on every
//! request, so they are counted here: a MAP touches no register, and an UNMAP whose
//! CMD_SYNC completes rings the doorbell once and reads CMDQ_CONS once.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use smmuv3::cmd::{Command, Opcode};
use smmuv3::mmio::Mmio;
use smmuv3::model::{host_config, host_memory, Outcome, SmmuModel};
use smmuv3::{Iova, MemType, Perm, PhysAddr, Smmu, StreamId};

const SID: u32 = 0x08;

/// The model, with every register access counted: (reads, writes).
struct Counting {
    model: SmmuModel,
    counts: Rc<Cell<(u32, u32)>>,
}

impl Counting {
    fn read(&self) {
        let (r, w) = self.counts.get();
        self.counts.set((r + 1, w));
    }
    fn write(&self) {
        let (r, w) = self.counts.get();
        self.counts.set((r, w + 1));
    }
}

impl Mmio for Counting {
    fn read32(&self, offset: usize) -> u32 {
        self.read();
        self.model.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.write();
        self.model.write32(offset, value)
    }
    fn read64(&self, offset: usize) -> u64 {
        self.read();
        self.model.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.write();
        self.model.write64(offset, value)
    }
}

fn counted_smmu() -> (Smmu<Counting>, Rc<Cell<(u32, u32)>>) {
    let counts = Rc::new(Cell::new((0, 0)));
    let regs = Counting { model: SmmuModel::host(), counts: counts.clone() };
    // SAFETY: fresh, leaked memory; the model is the only register file.
    let smmu = unsafe { Smmu::init(regs, host_memory(32), host_config()) }.expect("init");
    (smmu, counts)
}

#[test]
fn a_map_touches_no_register_and_an_unmap_two() {
    let (mut smmu, counts) = counted_smmu();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let page = common::buffer(4096, 4096);
    for round in 0..3 {
        counts.set((0, 0));
        smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
        assert_eq!(counts.get(), (0, 0), "round {round}: MAP touched the registers");
        assert_eq!(smmu.regs().model.translate(SID, 0x1000, true), Outcome::Ok(page.pa.0));

        smmu.unmap(d, Iova(0x1000), 4096).unwrap();
        // The doorbell (CMDQ_PROD) and one read of CMDQ_CONS showing the CMD_SYNC done.
        assert_eq!(counts.get(), (1, 1), "round {round}: UNMAP's register accesses (reads, writes)");
        assert!(matches!(smmu.regs().model.translate(SID, 0x1000, true), Outcome::Fault(_)), "round {round}");
    }
}

#[test]
fn a_command_in_error_is_still_found_and_the_unmap_reports_it() {
    // Reading CONS first must not hide an error: a rejected invalidation stops the queue
    // before the CMD_SYNC, so CONS does not pass it and the error registers are read.
    let (mut smmu, _) = counted_smmu();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let page = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.regs().model.reject_next(Opcode::TlbiNhVa as u8);
    assert!(smmu.unmap(d, Iova(0x1000), 4096).is_err(), "the rejected TLBI was not reported");
    assert_eq!(smmu.stats().command_errors, 1);
}

/// A batch of a client's mapping queue, as blk-bench's queue path makes one: eight 64 KiB
/// buffers unmapped with `unmap_deferred`, then one `sync_deferred`. Adjacent buffers of
/// one domain go out as one range command (under QEMU each range TLBI is a scan of its
/// whole IOTLB per power-of-two chunk), the CMD_SYNC after it, and the registers are
/// touched twice for the batch, as for one unmap. Buffers with gaps between them keep a
/// command each: the gaps, still mapped, are not invalidated.
#[test]
fn adjacent_deferred_unmaps_of_a_batch_go_out_as_one_range_command() {
    const BUF: u64 = 0x1_0000;
    let (mut smmu, counts) = counted_smmu();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let mem = common::buffer(16 * BUF as usize, 4096);
    for (stride, tlbis) in [(1, 1), (2, 8)] {
        let at = |i: u64| 0x10_0000 + i * stride * BUF;
        for i in 0..8 {
            smmu.map(d, Iova(at(i)), PhysAddr(mem.pa.0 + i * BUF), BUF, Perm::ReadWrite, MemType::Normal).unwrap();
            assert!(matches!(smmu.regs().model.translate(SID, at(i) + BUF - 4096, true), Outcome::Ok(_)));
        }
        smmu.regs().model.clear_commands();
        counts.set((0, 0));
        for i in 0..8 {
            smmu.unmap_deferred(d, Iova(at(i)), BUF).unwrap();
        }
        smmu.sync_deferred().unwrap();
        let cmds = smmu.regs().model.commands();
        let ranges = cmds.iter().filter(|c| c.opcode() == Opcode::TlbiNhVa as u8).count();
        assert_eq!((ranges, cmds.len()), (tlbis, tlbis + 1), "stride {stride}: range TLBIs, commands");
        assert_eq!(cmds.last(), Some(&Command::sync()));
        assert_eq!(counts.get(), (1, 1), "stride {stride}: register accesses (reads, writes)");
        for i in 0..8 {
            for page in [0, BUF / 2, BUF - 4096] {
                let outcome = smmu.regs().model.translate(SID, at(i) + page, true);
                assert!(matches!(outcome, Outcome::Fault(_)), "stride {stride}: {:#x}", at(i) + page);
            }
        }
    }
}
