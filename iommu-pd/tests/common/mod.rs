//! The test system description, shared by the service's tests.
#![allow(dead_code)]

pub mod backend;
pub mod config_space;
pub mod failure_points;
pub mod queue;
pub mod random;
pub mod reference;
pub mod revoke_points;
pub mod sequences;
pub mod suite;

pub use iommu_pd::model::ModelHw;
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, IommuHw, RegionConfig, Service};
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};

pub const PAGE: u64 = 4096;

pub const NET: usize = 0;
pub const BLK: usize = 1;
pub const EVIL: usize = 2;
pub const IOVA_BASE: u64 = 0x1000_0000;
pub const IOVA_SIZE: u64 = 1 << 20;

pub static CLIENTS: [ClientConfig; 3] = [
    ClientConfig { name: "net", max_mappings: 16, max_pages: 64, max_grants: 4 },
    ClientConfig { name: "blk", max_mappings: 16, max_pages: 64, max_grants: 4 },
    ClientConfig { name: "hostile", max_mappings: 16, max_pages: 64, max_grants: 4 },
];

pub static DEVICES: [DeviceConfig; 4] = [
    DeviceConfig {
        name: "nic",
        stream: 0x10,
        extra_streams: &[],
        owner: NET,
        iova_base: IOVA_BASE,
        iova_size: IOVA_SIZE,
        resume_allowed: true,
    },
    DeviceConfig {
        name: "disk",
        stream: 0x18,
        extra_streams: &[],
        owner: BLK,
        iova_base: IOVA_BASE,
        iova_size: IOVA_SIZE,
        resume_allowed: false,
    },
    DeviceConfig {
        name: "evil",
        stream: 0x20,
        extra_streams: &[],
        owner: EVIL,
        iova_base: IOVA_BASE,
        iova_size: IOVA_SIZE,
        resume_allowed: true,
    },
    DeviceConfig {
        name: "nic2",
        stream: 0x28,
        extra_streams: &[],
        owner: NET,
        iova_base: IOVA_BASE,
        iova_size: IOVA_SIZE,
        resume_allowed: true,
    },
];

pub static REGIONS: [RegionConfig; 4] = [
    RegionConfig { name: "net-buffers", pa: 0x4000_0000, size: 0x1_0000 },
    RegionConfig { name: "blk-buffers", pa: 0x4010_0000, size: 0x1_0000 },
    // Not page aligned: no page of it is wholly covered at a page boundary.
    RegionConfig { name: "evil-scratch", pa: 0x4020_0800, size: 0x3000 },
    RegionConfig { name: "shared-ro", pa: 0x4030_0000, size: 0x8000 },
];

pub static CAPS: [CapConfig; 4] = [
    CapConfig {
        client: NET,
        region: 0,
        offset: 0,
        len: 0x1_0000,
        rights: Rights::READ_WRITE,
        devices: 0b1001,
        grant_to: u64::MAX,
    },
    CapConfig {
        client: NET,
        region: 3,
        offset: 0,
        len: 0x8000,
        rights: Rights::READ,
        devices: 0b0001,
        grant_to: u64::MAX,
    },
    CapConfig {
        client: BLK,
        region: 1,
        offset: 0,
        len: 0x1_0000,
        rights: Rights::READ_WRITE,
        devices: 0b0010,
        grant_to: u64::MAX,
    },
    CapConfig {
        client: EVIL,
        region: 2,
        offset: 0,
        len: 0x3000,
        rights: Rights::READ_WRITE,
        devices: 0b0100,
        grant_to: u64::MAX,
    },
];

pub fn config() -> Config<'static> {
    Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 },
    }
}

/// Tables for the test description, leaked so a service can borrow them for 'static.
pub fn storage() -> iommu_pd::Storage<'static> {
    Box::leak(Box::new(<iommu_pd::owned_storage!(4, 4, 64, 256)>::default())).storage()
}

pub fn call<H: IommuHw>(s: &mut Service<'_, H>, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(client, label, &mrs[..n])
}

#[allow(clippy::too_many_arguments)]
pub fn map(
    s: &mut Service<'_, ModelHw>,
    c: usize,
    h: u32,
    d: u32,
    off: u64,
    len: u64,
    iova: Option<u64>,
    r: Rights,
) -> Reply {
    call(s, c, Request::Map { cap: Handle(h), device: DeviceId(d), offset: off, len, iova, rights: r })
}

pub fn unmap(s: &mut Service<'_, ModelHw>, c: usize, d: u32, iovas: &[u64]) -> Reply {
    let mut v = [0; MAX_UNMAP_RANGES];
    v[..iovas.len()].copy_from_slice(iovas);
    call(s, c, Request::Unmap { device: DeviceId(d), iovas: v, count: iovas.len() })
}

/// MAP by client 0 of the first page of its handle 0 for device `d`, read-write, at
/// `iova` or where the allocator puts it (`pools_shared`'s one client and capability).
pub fn map_page(s: &mut Service<'_, ModelHw>, d: usize, iova: Option<u64>) -> Reply {
    map(s, 0, 0, d as u32, 0, PAGE, iova, Rights::READ_WRITE)
}

/// UNMAP by client 0 of device `d`'s mapping at `iova`.
pub fn unmap_page(s: &mut Service<'_, ModelHw>, d: usize, iova: u64) -> Reply {
    unmap(s, 0, d as u32, &[iova])
}

/// GRANT of the first page of `cap`, read-only, to client `to` for its `devices`.
pub fn grant(s: &mut Service<'_, ModelHw>, from: usize, cap: u32, to: usize, devices: u64) -> Reply {
    call(
        s,
        from,
        Request::Grant {
            cap: Handle(cap),
            to: ClientId(to as u32),
            offset: 0,
            len: 0x1000,
            rights: Rights::READ,
            devices,
        },
    )
}

/// GRANT of `len` bytes at `offset` of `from`'s handle `cap`, read-only, to `to` for its
/// `devices`: (the granter's handle, the receiver's). A refusal is the test's set-up
/// failing.
pub fn lend<H: IommuHw>(
    s: &mut Service<'_, H>,
    from: usize,
    cap: u32,
    to: usize,
    offset: u64,
    len: u64,
    devices: u64,
) -> (u32, u32) {
    let grant =
        Request::Grant { cap: Handle(cap), to: ClientId(to as u32), offset, len, rights: Rights::READ, devices };
    match call(s, from, grant) {
        Reply::Ok { values, .. } => (values[0] as u32, values[1] as u32),
        r => panic!("setup: grant refused: {r:?}"),
    }
}

/// A static (description) mapping of two pages of region 0 for device 0, read-only.
pub static STATIC_MAPS: [iommu_pd::StaticMapConfig; 1] = [iommu_pd::StaticMapConfig {
    device: 0,
    region: 0,
    offset: 0x4000,
    len: 0x2000,
    iova: IOVA_BASE + 0x8_0000,
    rights: Rights::READ,
}];

pub fn service() -> Service<'static, ModelHw> {
    Service::new(ModelHw::default(), config(), storage()).unwrap()
}

/// A service over a description of one client ("drv", quotas of `max_mappings` mappings
/// and `max_pages` pages) owning `devices`, and one capability, read-write for every one
/// of them, over a 64 KiB region of buffers at 0x4000_0000; tables of `slots` mapping
/// slots.
pub fn drv_service(
    devices: &'static [DeviceConfig],
    max_mappings: u32,
    max_pages: u64,
    slots: usize,
) -> Service<'static, ModelHw> {
    static REGIONS: [RegionConfig; 1] = [RegionConfig { name: "buffers", pa: 0x4000_0000, size: 0x1_0000 }];
    let clients = Box::leak(Box::new([ClientConfig { name: "drv", max_mappings, max_pages, max_grants: 0 }]));
    let caps = Box::leak(Box::new([CapConfig {
        client: 0,
        region: 0,
        offset: 0,
        len: 0x1_0000,
        rights: Rights::READ_WRITE,
        devices: (1 << devices.len()) - 1,
        grant_to: 0,
    }]));
    let cfg = Config {
        clients: &clients[..],
        devices,
        regions: &REGIONS,
        caps: &caps[..],
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 },
    };
    Service::new(ModelHw::default(), cfg, sized_storage(4, slots, devices.len(), 1)).unwrap()
}

pub fn err(e: ErrorCode) -> Reply {
    Reply::Err(e)
}

/// One client ("drv") whose `devices` devices (up to 8, streams from 8) share one memory
/// of `slots` pages through one capability, with a mapping quota of every slot (and as
/// many pages): the index's pools shared by several trees, each device's window `span`
/// bytes from `IOVA_BASE`.
pub fn pools_shared(slots: usize, devices: usize, span: u64) -> Config<'static> {
    let clients = Box::leak(Box::new([ClientConfig {
        name: "drv",
        max_mappings: slots as u32,
        max_pages: slots as u64,
        max_grants: 0,
    }]));
    let devices: &'static [DeviceConfig] = Box::leak(
        (0..devices)
            .map(|d| DeviceConfig {
                name: ["a", "b", "c", "d", "e", "f", "g", "h"][d],
                stream: 8 + d as u32,
                extra_streams: &[],
                owner: 0,
                iova_base: IOVA_BASE,
                iova_size: span,
                resume_allowed: true,
            })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let regions = Box::leak(Box::new([RegionConfig { name: "mem", pa: 0x4000_0000, size: slots as u64 * PAGE }]));
    let caps = Box::leak(Box::new([CapConfig {
        client: 0,
        region: 0,
        offset: 0,
        len: slots as u64 * PAGE,
        rights: Rights::READ_WRITE,
        devices: (1 << devices.len()) - 1,
        grant_to: 0,
    }]));
    Config {
        clients: &clients[..],
        devices,
        regions: &regions[..],
        caps: &caps[..],
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1, resume_rest_ms: 0 },
    }
}

/// Tables of the sizes given, leaked so a service can borrow them for 'static: `caps`
/// capability slots, `slots` mapping slots and the index's pools for them over `devices`
/// devices, and client tables and fault rings for `clients` clients.
pub fn sized_storage(caps: usize, slots: usize, devices: usize, clients: usize) -> iommu_pd::Storage<'static> {
    fn leak<T>(v: Vec<T>) -> &'static mut [T] {
        Box::leak(v.into_boxed_slice())
    }
    iommu_pd::Storage {
        caps: leak(vec![None; caps]),
        mappings: leak(vec![None; slots]),
        leaves: leak(vec![Default::default(); iommu_pd::index::leaves_for(slots, devices)]),
        inners: leak(vec![Default::default(); iommu_pd::index::inners_for(slots, devices)]),
        free: leak(vec![0; slots]),
        clients: leak(vec![iommu_pd::ClientTables::default(); clients]),
        devices: leak(vec![iommu_pd::service::DeviceState::default(); devices]),
        rings: leak((0..clients).map(|_| iommu_pd::FaultRing::default()).collect()),
    }
}
