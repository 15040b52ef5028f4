//! What the service benchmarks share: the service over the driver over `InstantSmmu`,
//! client 0 calling for its one device (StreamID 0x10) with a capability over memory
//! no device touches.
// Each benchmark, and the example that counts instructions, uses part of it.
#![allow(dead_code)]

pub mod paths;
pub mod scale;

use iommu_pd::{CapConfig, Service};
use iommu_protocol::{Reply, Request, Rights, MAX_MRS};
use smmuv3::model::InstantSmmu;
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
