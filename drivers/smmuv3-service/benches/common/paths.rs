//! The paths `service_vs_driver` compares (issue 26's targets), shared by the criterion
//! benchmark (`service.rs`), the interleaved ratios (`ratio.rs`) and the instruction
//! counts (`examples/instructions.rs`): one device, one client with a read-write
//! capability over 256 MiB, 4 KiB pages at the same IOVAs for the driver alone and for the
//! service. Each path function is kept out of line so that callgrind can count it.

use std::hint::black_box;

use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::queue::{OwnedQueue, Queue};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};
use smmuv3::model::{instant_smmu, InstantSmmu};
use smmuv3::{DomainId, Iova, MemType, Perm, PhysAddr, Smmu};
use smmuv3_service::SmmuBackend;

use super::{buffers_cap, Svc, BUFFERS};

pub const BUFFERS_LEN: u64 = 256 << 20;

/// Requests per queue batch: each brings an UNMAP and a MAP entry.
pub const QUEUE_REQUESTS: u64 = 8;

pub static CLIENTS: [ClientConfig; 1] =
    [ClientConfig { name: "driver", max_mappings: 200, max_pages: 1 << 20, max_grants: 0 }];
pub static DEVICES: [DeviceConfig; 1] = [DeviceConfig {
    name: "dev",
    stream: 0x10,
    extra_streams: &[],
    owner: 0,
    iova_base: 1 << 30,
    iova_size: 1 << 30,
    resume_allowed: true,
}];
pub static REGIONS: [RegionConfig; 1] = [RegionConfig { name: "buffers", pa: BUFFERS, size: BUFFERS_LEN }];
pub static CAPS: [CapConfig; 1] = [buffers_cap(BUFFERS_LEN, 0)];

/// The service over the driver over `InstantSmmu`, tables for 256 mappings.
pub fn service() -> Svc {
    let backend = SmmuBackend::new(instant_smmu(512), &[0x10]).unwrap();
    let cfg = Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1000, resume_rest_ms: 0 },
    };
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 256)>::default()));
    Service::new(backend, cfg, tables.storage()).unwrap()
}

/// The driver alone, on the same `InstantSmmu` as `service()`, with one domain.
pub fn driver() -> (Smmu<InstantSmmu>, DomainId) {
    let mut smmu = instant_smmu(512);
    let d = smmu.create_domain().unwrap();
    (smmu, d)
}

/// Where the service puts the `i`-th page of a batch mapped from an empty window (its
/// allocator fills the window upwards), and what it points at.
pub fn batch_page(i: u64) -> (Iova, PhysAddr) {
    (Iova(DEVICES[0].iova_base + i * 4096), PhysAddr(BUFFERS + i * 4096))
}

/// A request as a queue entry, or as the IOMMU PD receives the call: label and the first
/// four message registers (all MAP and a one-IOVA UNMAP have).
pub fn entry(req: Request) -> (u64, [u64; 4]) {
    let mut mrs = [0; MAX_MRS];
    let (label, _) = req.encode(&mut mrs);
    (label, [mrs[0], mrs[1], mrs[2], mrs[3]])
}

/// MAP of the `i`-th page's memory, at `iova` or where the allocator puts it.
pub fn map_of(i: u64, iova: Option<u64>) -> Request {
    let pa = batch_page(i).1 .0;
    Request::Map {
        cap: Handle(0),
        device: DeviceId(0),
        offset: pa - BUFFERS,
        len: 4096,
        iova,
        rights: Rights::READ_WRITE,
    }
}

/// UNMAP of one IOVA.
pub fn unmap_of(iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(0), iovas, count: 1 }
}

/// The driver's own map and unmap (with its CMD_SYNC) of one page, `rounds` times, over
/// the first 64 pages. Each result is kept observable by reference, as `driver_map`'s:
/// by value, the copy cost this side a sixth of its time, which the queue's ratio gained.
#[inline(never)]
pub fn driver_map_unmap(smmu: &mut Smmu<InstantSmmu>, d: DomainId, rounds: u64) {
    for i in 0..rounds {
        let (iova, pa) = batch_page(i % 64);
        let mapped = smmu.map(d, iova, pa, 4096, Perm::ReadWrite, MemType::Normal);
        black_box(&mapped);
        mapped.unwrap();
        let unmapped = smmu.unmap(d, iova, 4096);
        black_box(&unmapped);
        unmapped.unwrap();
    }
}

/// The driver's own map of pages `0..n` (the caller unmaps them). Its result is kept
/// observable by reference, as `service_map`'s reply is: `black_box` of the value itself
/// copies it to the stack (the service's 96-byte reply, where it is built inline, with
/// loads that straddle its stores and stall).
#[inline(never)]
pub fn driver_map(smmu: &mut Smmu<InstantSmmu>, d: DomainId, n: u64) {
    for i in 0..n {
        let (iova, pa) = batch_page(i);
        let r = smmu.map(d, iova, pa, 4096, Perm::ReadWrite, MemType::Normal);
        black_box(&r);
        r.unwrap();
    }
}

/// The driver's unmap of pages `0..n`.
pub fn driver_unmap(smmu: &mut Smmu<InstantSmmu>, d: DomainId, n: u64) {
    for i in 0..n {
        smmu.unmap(d, batch_page(i).0, 4096).unwrap();
    }
}

/// The MAP calls of pages `0..n` (IOVAs the allocator's), from their message registers;
/// returns how many were refused.
#[inline(never)]
pub fn service_map(s: &mut Svc, maps: &[(u64, [u64; 4])]) -> usize {
    // The client as the PD shell has it, from the channel: not a constant the compiler
    // can fold into a MAP served inline.
    let client = black_box(0);
    maps.iter()
        .filter(|(label, mrs)| {
            let reply = s.handle(client, *label, mrs);
            matches!(black_box(&reply), Reply::Err(_))
        })
        .count()
}

/// The MAP calls `service_map` takes: pages `0..64`, IOVAs the allocator's.
pub fn service_maps() -> Vec<(u64, [u64; 4])> {
    (0..64).map(|i| entry(map_of(i, None))).collect()
}

/// UNMAP calls of pages `0..n` (what `service_map` mapped, from an empty window).
pub fn service_unmap(s: &mut Svc, n: u64) {
    for i in 0..n {
        let (label, mrs) = entry(unmap_of(batch_page(i).0 .0));
        assert_eq!(s.handle(0, label, &mrs), Reply::ok(&[]));
    }
}

/// A client's mapping queue in its steady state: two halves of `2 * QUEUE_REQUESTS`
/// pages, one mapped; each batch unmaps that half's pages and maps the other's, at given
/// IOVAs (a request's UNMAP beside the next one's MAP).
pub struct QueueRun {
    pub queue: Queue<'static>,
    /// Each batch's entries, by the half it maps.
    batches: [Vec<(u64, [u64; 4])>; 2],
    /// The half the next batch maps.
    pub next: u64,
}

/// The `j`-th page of half `h`.
pub fn half_page(h: u64, j: u64) -> u64 {
    h * QUEUE_REQUESTS + j
}

impl QueueRun {
    /// A queue for client 0 of `s`, with half 1 mapped through calls.
    pub fn new(s: &mut Svc) -> Self {
        let region = Box::leak(Box::<OwnedQueue<64>>::default());
        let queue = region.queue().unwrap();
        let at = |i: u64| Some(batch_page(i).0 .0);
        for j in 0..QUEUE_REQUESTS {
            let (label, mrs) = entry(map_of(half_page(1, j), at(half_page(1, j))));
            assert_eq!(s.handle(0, label, &mrs), Reply::ok(&[batch_page(half_page(1, j)).0 .0]));
        }
        let batch = |mine: u64| {
            (0..QUEUE_REQUESTS)
                .flat_map(|j| {
                    let (m, u) = (half_page(mine, j), half_page(1 - mine, j));
                    [entry(unmap_of(batch_page(u).0 .0)), entry(map_of(m, at(m)))]
                })
                .collect()
        };
        QueueRun { queue, batches: [batch(0), batch(1)], next: 0 }
    }
}

/// `batches` batches through the queue: the client posting a batch's entries (together,
/// one store of the ring's tail: `Queue::post_all`, as `MapQueue::post_all`), the service
/// serving them, the client reading the completions (one store of the head:
/// `Queue::pop_completions`). Returns every completion's label or-ed together (0: every
/// entry succeeded).
#[inline(never)]
pub fn queue(s: &mut Svc, run: &mut QueueRun, batches: u64) -> u64 {
    let mut errors = 0;
    for _ in 0..batches {
        let batch = run.batches[run.next as usize].iter().enumerate();
        assert!(run.queue.post_all(batch.map(|(tag, (label, mrs))| (*label, tag as u64, *mrs))));
        black_box(s.serve_queue(0, &run.queue));
        run.queue.pop_completions(|_, label, _| errors |= label);
        run.next = 1 - run.next;
    }
    errors
}
