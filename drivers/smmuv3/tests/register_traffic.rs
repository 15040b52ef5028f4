//! How many times the driver touches the SMMU's registers on the per-request paths. A
//! register access is an uncached device access; under an emulator each is a trap into
//! the device model. A driver that maps each request's buffer pays for them on every
//! request, so they are counted here: a MAP touches no register, and an UNMAP whose
//! CMD_SYNC completes rings the doorbell once and reads CMDQ_CONS once.

mod common;

use std::cell::Cell;
use std::rc::Rc;

use smmuv3::mmio::Mmio;
use smmuv3::model::{host_config, host_memory, Outcome, SmmuModel};
use smmuv3::{Iova, MemType, Perm, Smmu, StreamId};

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
    smmu.regs().model.reject_next(smmuv3::cmd::Opcode::TlbiNhVa as u8);
    assert!(smmu.unmap(d, Iova(0x1000), 4096).is_err(), "the rejected TLBI was not reported");
    assert_eq!(smmu.stats().command_errors, 1);
}
