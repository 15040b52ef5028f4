//! One PCI function, 00:04.0, in a model of configuration space, and the service core
//! reached over it as a driver reaches the IOMMU PD: what `pci.rs` and `map_at_start.rs`
//! share.

use std::cell::RefCell;
use std::rc::Rc;

use iommu_client::Channel;
use iommu_pd::model::ModelHw;
use iommu_pd::pci::ConfigSpace;
use iommu_pd::Service;
use iommu_protocol::{ErrorCode, MAX_REPLY_VALUES};

/// Its requester ID.
pub const RID: u16 = 0x20;

/// Command (all its bits writable) and a 32-bit 16 KiB BAR0; while `away`, every access
/// reads all ones and every write goes nowhere, as a function that does not answer.
#[derive(Default)]
pub struct OneFunction {
    pub command: u16,
    pub bar0: u32,
    pub away: bool,
}

impl ConfigSpace for OneFunction {
    fn function(&self, device: usize) -> Result<u16, ErrorCode> {
        (device == 0).then_some(RID).ok_or(ErrorCode::NoConfigSpace)
    }
    /// Its BAR is where the owner put it.
    fn placement(&self, rid: u16) -> Option<iommu_pd::pci::Placement> {
        (rid == RID).then_some(iommu_pd::pci::Placement { base: 0, size: 0x4000 })
    }
    fn messages_stuck(&self, _: u16) -> bool {
        false
    }
    /// As if recorded now: its list (none) never changes.
    fn recorded(&mut self, rid: u16) -> Option<iommu_pd::pci::Recorded> {
        iommu_pd::pci::record(self, rid, 0)
    }
    fn read(&mut self, rid: u16, offset: u16, width: u8) -> Option<u32> {
        let word = match (rid, offset & !3) {
            _ if rid != RID || self.away => u32::MAX,
            (_, 0x00) => 0x1042_1af4,
            (_, 0x04) => u32::from(self.command),
            (_, 0x10) => self.bar0,
            _ => 0,
        };
        Some((word >> (8 * (offset & 3))) & (u32::MAX >> (32 - 8 * width as u32)))
    }
    fn write(&mut self, rid: u16, offset: u16, _width: u8, value: u32) -> Option<()> {
        match (rid, offset) {
            _ if rid != RID || self.away => {}
            (_, 0x04) => self.command = value as u16,
            (_, 0x10) => self.bar0 = value & 0xffff_c000,
            _ => {}
        }
        Some(())
    }
    fn wait_ms(&mut self, _: u32) {}
    fn now_ms(&mut self) -> u64 {
        // Long after boot: no reset ration is waited for.
        100_000
    }
}

/// The service and the function, shared by the test and its driver's channel.
pub type Shared = Rc<RefCell<(Service<'static, ModelHw>, OneFunction)>>;

/// Client 0's channel to the service.
#[derive(Clone)]
pub struct Local(pub Shared);

impl Channel for Local {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; MAX_REPLY_VALUES]) -> u64 {
        let (service, ecam) = &mut *self.0.borrow_mut();
        let r = service.handle_with(0, label, mrs, ecam);
        if let iommu_protocol::Reply::Ok { values, .. } = r {
            *reply = values;
        }
        r.label()
    }
}
