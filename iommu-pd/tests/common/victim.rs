//! A victim and a hostile client, one device and one buffer each: the description the
//! tests that one client cannot starve another of what they share (the page-table pool,
//! the SMMU's event queue) run over each IOMMU's backend. Standalone, so that a backend's
//! tests include it by path without the rest of `common`.
#![allow(dead_code)]

use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, IommuHw, RegionConfig, Service};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};

pub const VICTIM: usize = 0;
pub const HOSTILE: usize = 1;
pub const PAGE: u64 = 0x1000;
pub const SID_VICTIM: u32 = 0x10;
pub const SID_HOSTILE: u32 = 0x18;

/// One client's share: its device's IOVA window, its buffer (its one capability covers
/// all of it, read-write) and its mapping quota.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    pub iova_base: u64,
    pub iova_size: u64,
    pub pa: u64,
    pub pages: u64,
    pub max_mappings: u32,
    pub max_pages: u64,
}

/// The victim's side and the hostile client's, each the owner of device (and handle 0 of
/// capability) `VICTIM` or `HOSTILE`, whose stream is `SID_VICTIM` or `SID_HOSTILE`.
pub fn config(victim: Side, hostile: Side, faults: FaultPolicy) -> Config<'static> {
    let sides = [(VICTIM, "victim", SID_VICTIM, victim), (HOSTILE, "hostile", SID_HOSTILE, hostile)];
    let clients = sides.map(|(_, name, _, s)| ClientConfig {
        name,
        max_mappings: s.max_mappings,
        max_pages: s.max_pages,
        max_grants: 0,
    });
    let devices = sides.map(|(owner, name, stream, s)| DeviceConfig {
        name,
        stream,
        extra_streams: &[],
        owner,
        iova_base: s.iova_base,
        iova_size: s.iova_size,
        resume_allowed: true,
    });
    let regions = sides.map(|(_, name, _, s)| RegionConfig { name, pa: s.pa, size: s.pages * PAGE });
    let caps = sides.map(|(client, _, _, s)| CapConfig {
        client,
        region: client,
        offset: 0,
        len: s.pages * PAGE,
        rights: Rights::READ_WRITE,
        devices: 1 << client,
        grant_to: 0,
    });
    Config {
        clients: Box::leak(Box::new(clients)),
        devices: Box::leak(Box::new(devices)),
        regions: Box::leak(Box::new(regions)),
        caps: Box::leak(Box::new(caps)),
        static_maps: &[],
        faults,
    }
}

pub fn call<H: IommuHw>(s: &mut Service<'_, H>, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(client, label, &mrs[..n])
}

/// MAP of `len` bytes at `offset` into the client's buffer, read-write, at `iova` or where
/// the service chooses.
pub fn map(device: usize, offset: u64, len: u64, iova: Option<u64>) -> Request {
    Request::Map { cap: Handle(0), device: DeviceId(device as u32), offset, len, iova, rights: Rights::READ_WRITE }
}

pub fn unmap(device: usize, iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(device as u32), iovas, count: 1 }
}

/// The page-table pool's attack (`starvation.rs` of each backend): the victim's 8 pages
/// in a 1 MiB window, 4 mappings of them at once; the hostile client's one page in a
/// 1 TiB window, all it needs to map and unmap somewhere new, for ever.
pub const VICTIM_BASE: u64 = 0x1000_0000;
pub const HOSTILE_BASE: u64 = 1 << 40;
pub const VICTIM_MAPPINGS: u32 = 4;
pub const VICTIM_PAGES: u64 = 8;

pub fn pool_attack(victim_pa: u64, hostile_pa: u64) -> Config<'static> {
    let victim = Side {
        iova_base: VICTIM_BASE,
        iova_size: 1 << 20,
        pa: victim_pa,
        pages: VICTIM_PAGES,
        max_mappings: VICTIM_MAPPINGS,
        max_pages: VICTIM_PAGES,
    };
    let hostile =
        Side { iova_base: HOSTILE_BASE, iova_size: 1 << 40, pa: hostile_pa, pages: 1, max_mappings: 1, max_pages: 1 };
    config(victim, hostile, FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 })
}

/// What `iommu-sdf`'s `table_pool_pages` gives `pool_attack`: a root per device; the
/// victim's 1 MiB window is covered by 3 tables (fewer than 3 x 8 pages of quota); the
/// hostile client's 1 TiB window by over half a million, but its one page of quota holds
/// at most 3 at once.
pub const POOL_PAGES: usize = 2 + 3 + 3;
