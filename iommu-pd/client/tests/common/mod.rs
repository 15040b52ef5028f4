//! What the in-place tests share: host memory standing for physical pages, and the
//! service's configuration over it.

use std::ptr::NonNull;

use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig};
use iommu_protocol::Rights;

pub const PAGE: usize = 4096;

/// `n` zeroed, page-aligned host pages, never freed: their addresses stand for physical
/// addresses.
pub fn pages(n: usize) -> NonNull<u8> {
    let layout = std::alloc::Layout::from_size_align(n * PAGE, PAGE).unwrap();
    // SAFETY: non-zero size.
    NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap()
}

/// One client ("virtio-blk": a quota of `mappings` mappings, and pages for the pool and
/// every buffer page twice over), one device, and a capability over each of two regions:
/// an 8-page pool at `pool_pa` and `buf_pages` pages of in-place buffers at `bufs_pa`.
pub fn pool_and_buffer_pages(pool_pa: u64, bufs_pa: u64, buf_pages: usize, mappings: u32) -> Config<'static> {
    let max_pages = 8 + 2 * buf_pages as u64;
    let clients =
        Box::leak(Box::new([ClientConfig { name: "virtio-blk", max_mappings: mappings, max_pages, max_grants: 0 }]));
    let devices = Box::leak(Box::new([DeviceConfig {
        name: "blk",
        stream: 8,
        extra_streams: &[],
        owner: 0,
        iova_base: 0x10_0000,
        iova_size: 1 << 24,
        resume_allowed: true,
    }]));
    let regions = Box::leak(Box::new([
        RegionConfig { name: "pool", pa: pool_pa, size: 8 * PAGE as u64 },
        RegionConfig { name: "buffers", pa: bufs_pa, size: (buf_pages * PAGE) as u64 },
    ]));
    let cap = |region, pages: usize| CapConfig {
        client: 0,
        region,
        offset: 0,
        len: (pages * PAGE) as u64,
        rights: Rights::READ_WRITE,
        devices: 1,
        grant_to: 0,
    };
    let caps = Box::leak(Box::new([cap(0, 8), cap(1, buf_pages)]));
    Config {
        clients: &clients[..],
        devices: &devices[..],
        regions: &regions[..],
        caps: &caps[..],
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1 },
    }
}
