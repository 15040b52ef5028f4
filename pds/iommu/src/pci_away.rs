//! Fault injection (feature `inject-function-away`, images/pci-topology.xml only): the
//! configuration space a crashed client's teardown sees, in which every PCI function of
//! that client's devices is away, as one that does not answer its stop (a surprise
//! removal, a link down): reads are all ones and writes go nowhere. The teardown can then
//! neither stop nor reset the function, and leaves its device stopped for the restarted
//! driver (`Service::client_ready`); once the teardown is over the function answers again,
//! as it was, so the image shows the restarted driver's RESUME putting it back and its
//! device working again. QEMU has no way to take a function away and bring it back.

use iommu_pd::pci::{ConfigSpace, Placement, Recorded};
use iommu_protocol::ErrorCode;

use crate::pci::Ecam;
use crate::policy;

/// `ecam`, with `client`'s functions away.
pub struct AwayAtTeardown<'a> {
    ecam: &'a mut Ecam,
    client: usize,
}

impl<'a> AwayAtTeardown<'a> {
    pub fn new(ecam: &'a mut Ecam, client: usize) -> Self {
        Self { ecam, client }
    }

    /// Whether `rid` is the function of one of the client's devices.
    fn away(&self, rid: u16) -> bool {
        policy::PCI_FUNCTIONS.iter().any(|f| f.rid == rid && policy::DEVICES[f.device].owner == self.client)
    }
}

impl ConfigSpace for AwayAtTeardown<'_> {
    fn function(&self, device: usize) -> Result<u16, ErrorCode> {
        self.ecam.function(device)
    }
    fn read(&mut self, rid: u16, offset: u16, width: u8) -> Option<u32> {
        if self.away(rid) {
            return Some(u32::MAX >> (32 - 8 * u32::from(width.clamp(1, 4))));
        }
        self.ecam.read(rid, offset, width)
    }
    fn write(&mut self, rid: u16, offset: u16, width: u8, value: u32) -> Option<()> {
        if self.away(rid) {
            return Some(());
        }
        self.ecam.write(rid, offset, width, value)
    }
    fn wait_ms(&mut self, ms: u32) {
        self.ecam.wait_ms(ms)
    }
    fn placement(&self, rid: u16) -> Option<Placement> {
        self.ecam.placement(rid)
    }
    fn messages_stuck(&self, rid: u16) -> bool {
        self.ecam.messages_stuck(rid)
    }
    fn recorded(&mut self, rid: u16) -> Option<Recorded> {
        self.ecam.recorded(rid)
    }
    fn now_ms(&mut self) -> u64 {
        self.ecam.now_ms()
    }
}
