//! What `scale.rs` measures, shared with the instruction counts (`examples/instructions.rs`
//! `scale` and `churn`, run by `benches/scale-instructions.sh`): a service with tables of a
//! given number of mapping slots, one device and one client with a capability over 1 GiB,
//! MAP then UNMAP of a page with some number of mappings live, and a churn of mappings of
//! 1 to 16 pages in a window kept about three-quarters full. Each loop is kept out of
//! line so that callgrind can count it.

use std::hint::black_box;

use iommu_pd::service::{ClientTables, DeviceState};
use iommu_pd::{ClientConfig, Config, DeviceConfig, FaultPolicy, FaultRing, RegionConfig, Service, Storage};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};
use smmuv3::model::instant_smmu;
use smmuv3_service::SmmuBackend;

use super::{buffers_cap, call, Svc, BUFFERS};

pub const BUFFERS_LEN: u64 = 1 << 30;
/// A 16 MiB IOVA window: 4,096 pages, so churn has to reuse what is freed.
pub const CHURN_WINDOW: u64 = 16 << 20;

fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

/// The service with tables of `slots` mapping slots and a device window of `window` bytes.
pub fn service(slots: usize, window: u64) -> Svc {
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
        faults: FaultPolicy { window: 1, max_faults: 1000, resume_rest_ms: 0 },
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

/// The service of `slots` slots with `live` one-page mappings placed by its allocator.
pub fn filled(slots: usize, live: usize) -> Svc {
    let mut s = service(slots, 1 << 30);
    for i in 0..live as u64 {
        map(&mut s, (i % 4096) * 4096, 4096).expect("room for the live mappings");
    }
    s
}

/// MAP of `len` bytes at `offset` of the buffers, where the allocator puts it.
pub fn map(s: &mut Svc, offset: u64, len: u64) -> Option<u64> {
    let req = Request::Map { cap: Handle(0), device: DeviceId(0), offset, len, iova: None, rights: Rights::READ };
    match call(s, req) {
        Reply::Ok { values, .. } => Some(values[0]),
        Reply::Err(_) => None,
    }
}

/// GRANT of the buffers' first page, read-only, by the client to itself for its device
/// (the capability is grantable to itself for this): (the grant's handle, the handle of
/// the page's capability).
pub fn grant_page_to_self(s: &mut Svc) -> (Handle, Handle) {
    let grant = Request::Grant {
        cap: Handle(0),
        to: iommu_protocol::ClientId(0),
        offset: 0,
        len: 4096,
        rights: Rights::READ,
        devices: 1,
    };
    let Reply::Ok { values, .. } = call(s, grant) else { panic!("grant refused") };
    (Handle(values[0] as u32), Handle(values[1] as u32))
}

/// MAP of the page `grant_page_to_self` gave, through its handle `page`, where the
/// allocator puts it.
pub fn map_granted_page(s: &mut Svc, page: Handle) {
    let req = Request::Map { cap: page, device: DeviceId(0), offset: 0, len: 4096, iova: None, rights: Rights::READ };
    assert!(matches!(call(s, req), Reply::Ok { .. }));
}

pub fn unmap(s: &mut Svc, iova: u64) {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    let r = call(s, Request::Unmap { device: DeviceId(0), iovas, count: 1 });
    assert!(matches!(r, Reply::Ok { .. }), "{r:?}");
}

/// `n` times MAP of one page, then UNMAP of it.
#[inline(never)]
pub fn map_unmap(s: &mut Svc, n: u64) {
    for _ in 0..n {
        let iova = map(s, 0, 4096).unwrap();
        unmap(s, black_box(iova));
    }
}

/// The churn's state: what is live, and its random numbers.
pub struct Churn {
    pub s: Svc,
    live: Vec<(u64, u64)>,
    x: u64,
    /// MAPs that found no room (then what was freed is mapped again).
    pub refused: u64,
}

impl Churn {
    /// Mappings of 1 to 16 pages until three-quarters of the window's 4,096 pages are used.
    pub fn new() -> Self {
        let mut c = Churn { s: service(4096, CHURN_WINDOW), live: Vec::new(), x: 0x9e37_79b9_7f4a_7c15, refused: 0 };
        let mut used = 0;
        while used < 3072 {
            let pages = 1 + c.rand() % 16;
            if let Some(iova) = map(&mut c.s, 0, pages * 4096) {
                c.live.push((iova, pages));
                used += pages;
            }
        }
        c
    }

    fn rand(&mut self) -> u64 {
        self.x ^= self.x >> 12;
        self.x ^= self.x << 25;
        self.x ^= self.x >> 27;
        self.x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `n` steps: UNMAP of a live mapping at random, MAP of a random size.
    #[inline(never)]
    pub fn steps(&mut self, n: u64) {
        for _ in 0..n {
            let at = (self.rand() % self.live.len() as u64) as usize;
            let (iova, pages) = self.live.swap_remove(at);
            unmap(&mut self.s, iova);
            let want = 1 + self.rand() % 16;
            match map(&mut self.s, 0, want * 4096) {
                Some(iova) => self.live.push((iova, want)),
                None => {
                    self.refused += 1;
                    // Put back what was taken, so the fill level stays.
                    self.live.push((map(&mut self.s, 0, pages * 4096).expect("the freed room"), pages));
                }
            }
        }
    }
}
