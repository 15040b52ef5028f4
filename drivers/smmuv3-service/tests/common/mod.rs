//! What the service-on-SMMUv3 tests share: the description of one device over one buffer.

use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig};
use iommu_protocol::Rights;
use smmuv3::DmaRegion;

/// `v`, leaked so a `Config` can borrow it for 'static.
pub fn leak<T, const N: usize>(v: [T; N]) -> &'static [T] {
    Box::leak(Box::new(v))
}

/// `clients`, of which client 0 owns one device, `stream`, with the IOVA window
/// `iova_base..iova_base + iova_size`, and holds handle 0, a read-write capability over
/// all of `buf` (the one region) for it.
pub fn one_device_config(
    buf: &DmaRegion,
    clients: &'static [ClientConfig],
    stream: u32,
    iova_base: u64,
    iova_size: u64,
) -> Config<'static> {
    Config {
        clients,
        devices: leak([DeviceConfig {
            name: "dev",
            stream,
            extra_streams: &[],
            owner: 0,
            iova_base,
            iova_size,
            resume_allowed: true,
        }]),
        regions: leak([RegionConfig { name: "buf", pa: buf.pa.0, size: buf.len as u64 }]),
        caps: leak([CapConfig {
            client: 0,
            region: 0,
            offset: 0,
            len: buf.len as u64,
            rights: Rights::READ_WRITE,
            devices: 0b1,
            grant_to: 0,
        }]),
        static_maps: &[],
        faults: FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 },
    }
}
