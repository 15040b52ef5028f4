//! The paths of `benches/service.rs`'s `service_vs_driver` group, each in a function of
//! its own that the compiler may not inline, for an instruction count that the machine's
//! load does not move (`valgrind --tool=callgrind`, then `callgrind_annotate
//! --inclusive=yes`: each `path_*` function's inclusive count over `ROUNDS` requests).
//! Nothing here is timed. `benches/instructions.sh` runs it and prints the counts.
//!
//! Each path checks what it did (every request answered as it should be), so a count
//! cannot come from a path that failed early.

#[path = "../benches/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::{buffers_cap, call, Svc, BUFFERS};
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::queue::{OwnedQueue, Queue};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_MRS};
use smmuv3::model::{instant_smmu, InstantSmmu};
use smmuv3::{DomainId, Iova, MemType, Perm, PhysAddr, Smmu};
use smmuv3_service::SmmuBackend;

const BUFFERS_LEN: u64 = 256 << 20;
/// Requests per path (after one round of warm-up).
const ROUNDS: u64 = 4096;
/// Requests per queue batch: each brings an UNMAP and a MAP entry (as the benchmark).
const QUEUE_REQUESTS: u64 = 8;

static CLIENTS: [ClientConfig; 1] =
    [ClientConfig { name: "driver", max_mappings: 200, max_pages: 1 << 20, max_grants: 0 }];
static DEVICES: [DeviceConfig; 1] = [DeviceConfig {
    name: "dev",
    stream: 0x10,
    extra_streams: &[],
    owner: 0,
    iova_base: 1 << 30,
    iova_size: 1 << 30,
    resume_allowed: true,
}];
static REGIONS: [RegionConfig; 1] = [RegionConfig { name: "buffers", pa: BUFFERS, size: BUFFERS_LEN }];
static CAPS: [CapConfig; 1] = [buffers_cap(BUFFERS_LEN, 0)];

fn service() -> Svc {
    let backend = SmmuBackend::new(instant_smmu(512), &[0x10]).unwrap();
    let cfg = Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1000 },
    };
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 256)>::default()));
    Service::new(backend, cfg, tables.storage()).unwrap()
}

fn driver() -> (Smmu<InstantSmmu>, DomainId) {
    let mut smmu = instant_smmu(512);
    let d = smmu.create_domain().unwrap();
    (smmu, d)
}

/// The `i`-th page of a window filled from its base, and its memory.
fn page(i: u64) -> (Iova, PhysAddr) {
    (Iova(DEVICES[0].iova_base + i * 4096), PhysAddr(BUFFERS + i * 4096))
}

fn entry(req: Request) -> (u64, [u64; 4]) {
    let mut mrs = [0; MAX_MRS];
    let (label, _) = req.encode(&mut mrs);
    (label, [mrs[0], mrs[1], mrs[2], mrs[3]])
}

fn map_at(i: u64, iova: Option<u64>) -> Request {
    let pa = page(i).1 .0;
    Request::Map {
        cap: Handle(0),
        device: DeviceId(0),
        offset: pa - BUFFERS,
        len: 4096,
        iova,
        rights: Rights::READ_WRITE,
    }
}

fn unmap_of(iova: u64) -> Request {
    let mut iovas = [0; iommu_protocol::MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(0), iovas, count: 1 }
}

/// The driver's own map and unmap (with its CMD_SYNC) of one page, `rounds` times.
#[inline(never)]
fn path_driver_map_unmap(smmu: &mut Smmu<InstantSmmu>, d: DomainId, rounds: u64) {
    for i in 0..rounds {
        let (iova, pa) = page(i % 64);
        black_box(smmu.map(d, iova, pa, 4096, Perm::ReadWrite, MemType::Normal)).unwrap();
        black_box(smmu.unmap(d, iova, 4096)).unwrap();
    }
}

/// The driver's own map of one page, `rounds` times (each unmapped outside: `unmap_all`).
#[inline(never)]
fn path_driver_map(smmu: &mut Smmu<InstantSmmu>, d: DomainId, from: u64, n: u64) {
    for i in from..from + n {
        let (iova, pa) = page(i);
        black_box(smmu.map(d, iova, pa, 4096, Perm::ReadWrite, MemType::Normal)).unwrap();
    }
}

/// The service's MAP call from its message registers, `n` times, IOVAs its allocator's.
#[inline(never)]
fn path_service_map(s: &mut Svc, msgs: &[(u64, [u64; 4])]) -> u64 {
    let mut errors = 0;
    for (label, mrs) in msgs {
        if let Reply::Err(_) = black_box(s.handle(0, *label, mrs)) {
            errors += 1;
        }
    }
    errors
}

/// Per request, a MAP and an UNMAP entry through the queue, `QUEUE_REQUESTS` requests a
/// batch: the client posting, the service serving, the client reading the completions.
#[inline(never)]
fn path_queue(s: &mut Svc, q: &Queue<'_>, batches: &[Vec<(u64, [u64; 4])>]) -> u64 {
    let mut errors = 0;
    for batch in batches {
        for (tag, (label, mrs)) in batch.iter().enumerate() {
            q.post(*label, tag as u64, *mrs);
        }
        black_box(s.serve_queue(0, q));
        while let Some((_, label, _)) = q.pop_completion() {
            errors |= label;
        }
    }
    errors
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let all = which.is_empty();
    if all || which == "driver" {
        let (mut smmu, d) = driver();
        path_driver_map_unmap(&mut smmu, d, 64);
        path_driver_map_unmap(&mut smmu, d, ROUNDS);
        // Each of the ROUNDS maps reached the tables and left them.
        for i in 0..64 {
            assert!(smmu.translate(d, page(i).0).unwrap().is_none());
        }
        for round in 0..=ROUNDS / 64 {
            path_driver_map(&mut smmu, d, 0, 64);
            for i in 0..64 {
                assert_eq!(smmu.translate(d, page(i).0).unwrap().map(|l| l.pa), Some(page(i).1), "round {round}");
                smmu.unmap(d, page(i).0, 4096).unwrap();
            }
        }
        println!("driver: done");
    }
    if all || which == "map" {
        let mut s = service();
        let msgs: Vec<_> = (0..64).map(|i| entry(map_at(i, None))).collect();
        for round in 0..=ROUNDS / 64 {
            assert_eq!(path_service_map(&mut s, &msgs), 0, "round {round}: every MAP succeeded");
            for i in 0..64 {
                assert_eq!(call(&mut s, unmap_of(page(i).0 .0)), Reply::ok(&[]), "the allocator filled from the base");
            }
        }
        println!("service MAP: done");
    }
    if all || which == "queue" {
        let mut s = service();
        let region = Box::leak(Box::<OwnedQueue<64>>::default());
        let q = region.queue().unwrap();
        // Two halves of 2 * QUEUE_REQUESTS pages: each batch maps one half's pages and
        // unmaps the other's, which the previous batch mapped.
        let half = |h: u64, j: u64| h * QUEUE_REQUESTS + j;
        for j in 0..QUEUE_REQUESTS {
            let (label, mrs) = entry(map_at(half(1, j), Some(page(half(1, j)).0 .0)));
            assert_eq!(s.handle(0, label, &mrs), Reply::ok(&[page(half(1, j)).0 .0]));
        }
        let batches: Vec<Vec<_>> = (0..(ROUNDS + 2 * QUEUE_REQUESTS) / QUEUE_REQUESTS)
            .map(|b| {
                let (mine, other) = (b % 2, 1 - b % 2);
                (0..QUEUE_REQUESTS)
                    .flat_map(|j| {
                        let m = half(mine, j);
                        [entry(unmap_of(page(half(other, j)).0 .0)), entry(map_at(m, Some(page(m).0 .0)))]
                    })
                    .collect()
            })
            .collect();
        let (warm, timed) = batches.split_at(2);
        assert_eq!(path_queue(&mut s, &q, warm), 0);
        assert_eq!(path_queue(&mut s, &q, timed), 0, "every entry succeeded");
        // The last batch's pages translate to their memory in the SMMU's tables, the
        // other half's not at all.
        let last = (batches.len() as u64 - 1) % 2;
        let smmu = s.hw().smmu_ref();
        let dom = s.hw().domain_of(0).unwrap();
        for h in 0..2 {
            for j in 0..QUEUE_REQUESTS {
                let (iova, pa) = page(half(h, j));
                let want = (h == last).then_some(pa);
                assert_eq!(smmu.translate(dom, iova).unwrap().map(|l| l.pa), want);
            }
        }
        println!("queue: done");
    }
}
