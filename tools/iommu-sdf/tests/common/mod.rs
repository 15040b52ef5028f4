//! What the tests that run the service on a generated policy share: the service started
//! on a `Policy` (its tables leaked, as the IOMMU PD's are static), and a call through the
//! protocol's own encoding.

#![allow(dead_code)]

use iommu_pd::model::ModelHw;
use iommu_pd::service::{ClientTables, DeviceState};
use iommu_pd::{Config, FaultPolicy, FaultRing, RegionConfig, Service, Storage};
use iommu_protocol::{Reply, Request, MAX_MRS};
use iommu_sdf::policy::Policy;

pub fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

/// The service on `p`, each region's physical address as `pa` says (the description's
/// fixed one is in `RegionConfig::pa`; a region Microkit places has 0 there), or why it
/// would not start.
pub fn start_on(
    p: &Policy,
    pa: impl Fn(&iommu_sdf::model::MemoryRegion, &RegionConfig) -> u64,
) -> Result<Service<'static, ModelHw>, iommu_pd::ConfigError> {
    let cfg = Config {
        clients: leak(p.clients.iter().map(|c| c.1).collect()),
        devices: leak(p.devices.iter().map(|d| d.1).collect()),
        regions: leak(p.regions.iter().map(|(r, c)| RegionConfig { pa: pa(r, c), ..*c }).collect()),
        caps: leak(p.caps.iter().map(|c| c.1).collect()),
        static_maps: leak(p.static_maps.clone()),
        faults: FaultPolicy { window: 100, max_faults: 10 },
    };
    let clients = p.clients.len();
    let storage = Storage {
        caps: leak(vec![None; p.cap_slots]),
        mappings: leak(vec![None; p.mapping_slots as usize]),
        leaves: leak(vec![Default::default(); iommu_pd::index::leaves_for(p.mapping_slots as usize, p.devices.len())]),
        inners: leak(vec![Default::default(); iommu_pd::index::inners_for(p.mapping_slots as usize, p.devices.len())]),
        free: leak(vec![0; p.mapping_slots as usize]),
        clients: leak(vec![ClientTables::default(); clients]),
        devices: leak(vec![DeviceState::default(); p.devices.len()]),
        rings: leak((0..clients).map(|_| FaultRing::default()).collect()),
    };
    Service::new(ModelHw::default(), cfg, storage)
}

/// `req` from `client`, encoded as a driver would send it.
pub fn call(s: &mut Service<'_, ModelHw>, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(client, label, &mrs[..n])
}
