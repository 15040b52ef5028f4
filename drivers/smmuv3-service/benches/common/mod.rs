//! What the service benchmarks share: the service over the driver over `InstantSmmu`,
//! client 0 calling for its one device (StreamID 0x10) with a capability over memory
//! no device touches.
// Each benchmark, and the example that counts instructions, uses part of it.
#![allow(dead_code)]

pub mod paths;

use iommu_pd::service::{ClientTables, DeviceState};
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, FaultRing, RegionConfig, Service, Storage};
use iommu_protocol::{Reply, Request, Rights, MAX_MRS};
use smmuv3::model::{instant_smmu, InstantSmmu};
use smmuv3_service::SmmuBackend;

pub type Svc = Service<'static, SmmuBackend<InstantSmmu>>;

/// Physical memory the capability names: never touched, only mapped.
pub const BUFFERS: u64 = 0x8000_0000;

/// Client 0's read-write capability over the first `len` bytes of region 0 (`BUFFERS`)
/// for device 0, which it may grant to the clients in the mask `grant_to`.
pub const fn buffers_cap(len: u64, grant_to: u64) -> CapConfig {
    CapConfig { client: 0, region: 0, offset: 0, len, rights: Rights::READ_WRITE, devices: 1, grant_to }
}

/// `req` from client 0, encoded as its driver would, and the service's reply.
pub fn call(s: &mut Svc, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(0, label, &mrs[..n])
}

/// The region `sized_service`'s capability covers: 1 GiB.
const BUFFERS_LEN: u64 = 1 << 30;
fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

/// The service with `slots` mapping slots, client 0's quota all of them, its device's
/// IOVA window `window` bytes at 1 GiB, and the capability (handle 0) over 1 GiB of
/// `BUFFERS` grantable to client 0 itself (`scale.rs`, `examples/revoke.rs`).
pub fn sized_service(slots: usize, window: u64) -> Svc {
    let smmu = instant_smmu(2048);
    let backend = SmmuBackend::new(smmu, &[0x10]).unwrap();
    let quota = slots as u32;
    let cfg = Config {
        clients: leak(vec![ClientConfig { name: "driver", max_mappings: quota, max_pages: 1 << 20, max_grants: 1 }]),
        devices: leak(vec![DeviceConfig {
            name: "dev",
            stream: 0x10,
            extra_streams: &[],
            owner: 0,
            iova_base: 1 << 30,
            iova_size: window,
            resume_allowed: true,
        }]),
        regions: leak(vec![RegionConfig { name: "buffers", pa: BUFFERS, size: BUFFERS_LEN }]),
        // Grantable to itself, for the revocation benchmark.
        caps: leak(vec![buffers_cap(BUFFERS_LEN, 1)]),
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1000 },
    };
    let storage = Storage {
        caps: leak(vec![None; 4]),
        mappings: leak(vec![None; slots]),
        leaves: leak(vec![Default::default(); iommu_pd::index::leaves_for(slots, 1)]),
        inners: leak(vec![Default::default(); iommu_pd::index::inners_for(slots, 1)]),
        free: leak(vec![0; slots]),
        clients: leak(vec![ClientTables::default()]),
        devices: leak(vec![DeviceState::default()]),
        rings: leak(vec![FaultRing::default()]),
    };
    Service::new(backend, cfg, storage).unwrap()
}
