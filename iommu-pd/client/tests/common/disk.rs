//! The description the mapping queue's tests share: one client ("blk") with one device
//! ("disk", stream 8, a 16 MiB window at `WINDOW`) and one capability, read-write for the
//! disk, over a region of buffers at `PA`.

use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig};
use iommu_protocol::Rights;

/// The buffers' physical address.
pub const PA: u64 = 0x4000_0000;
/// The lowest IOVA of the disk's window.
pub const WINDOW: u64 = 0x10_0000;

/// The description with `pages` pages of buffers, and a quota of as many mappings and
/// pages; leaked, so a service can borrow it for 'static.
pub fn config(pages: u32) -> Config<'static> {
    let len = pages as u64 * 4096;
    let clients = Box::leak(Box::new([ClientConfig {
        name: "blk",
        max_mappings: pages,
        max_pages: pages as u64,
        max_grants: 0,
    }]));
    let devices = Box::leak(Box::new([DeviceConfig {
        name: "disk",
        stream: 8,
        extra_streams: &[],
        owner: 0,
        iova_base: WINDOW,
        iova_size: 1 << 24,
        resume_allowed: true,
    }]));
    let regions = Box::leak(Box::new([RegionConfig { name: "buffers", pa: PA, size: len }]));
    let caps = Box::leak(Box::new([CapConfig {
        client: 0,
        region: 0,
        offset: 0,
        len,
        rights: Rights::READ_WRITE,
        devices: 1,
        grant_to: 0,
    }]));
    Config {
        clients: &clients[..],
        devices: &devices[..],
        regions: &regions[..],
        caps: &caps[..],
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 },
    }
}
