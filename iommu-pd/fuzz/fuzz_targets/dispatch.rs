//! Fuzz decode and dispatch: arbitrary calls from arbitrary clients, with arbitrary fault
//! reports and arbitrary batches posted to the clients' mapping queues (their indices
//! scribbled over now and then) in between. The service must never panic, and after every call what the IOMMU
//! holds must equal what the service believes it mapped, inside the regions of the
//! description. The calls see a clock (the faults' time), so a RESUME after a storm meets
//! its ration (`ResumeRationed`); and the IOMMU may fail for good at any step
//! (`Service::service_failed`), after which every client's ring ends with a SERVICE_FAILED
//! record or counts it dropped, and says the service failed (`FaultRing::failed`).
#![no_main]

use iommu_pd::model::ModelHw;
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultInput, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{Rights, MAX_MRS};
use iommu_protocol::queue::OwnedQueue;
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};

static CLIENTS: [ClientConfig; 2] = [
    ClientConfig { name: "a", max_mappings: 8, max_pages: 32, max_grants: 2 },
    ClientConfig { name: "b", max_mappings: 8, max_pages: 32, max_grants: 2 },
];
static DEVICES: [DeviceConfig; 3] = [
    DeviceConfig { name: "a0", stream: 1, extra_streams: &[4], owner: 0, iova_base: 0x1000, iova_size: 0x10_0000, resume_allowed: true },
    DeviceConfig { name: "b0", stream: 2, extra_streams: &[], owner: 1, iova_base: 0, iova_size: u64::MAX, resume_allowed: false },
    DeviceConfig { name: "a1", stream: 3, extra_streams: &[], owner: 0, iova_base: 0x1000, iova_size: 0x10_0000, resume_allowed: true },
];
static REGIONS: [RegionConfig; 2] = [
    RegionConfig { name: "ra", pa: 0x4000_0000, size: 0x8000 },
    RegionConfig { name: "rb", pa: 0x5000_0000, size: 0x4000 },
];
static CAPS: [CapConfig; 2] = [
    CapConfig { client: 0, region: 0, offset: 0, len: 0x8000, rights: Rights::READ_WRITE, devices: 0b101, grant_to: u64::MAX },
    CapConfig { client: 1, region: 1, offset: 0, len: 0x4000, rights: Rights::READ, devices: 0b010, grant_to: 0 },
];

/// The clock the calls see (`ConfigSpace::now_ms`): the faults' time.
static NOW_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    NOW_MS.load(Ordering::Relaxed)
}

/// Values that make requests interesting more often than uniform random words would.
const WORDS: [u64; 12] = [0, 1, 2, 0x1000, 0x2000, 0x4000, 0x8000, 0x800, u64::MAX, u64::MAX - 0xfff, 0x1_0000, 3];

fuzz_target!(|data: &[u8]| {
    let cfg = Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 4, max_faults: 3, resume_rest_ms: 8 },
    };
    let mut tables = <iommu_pd::owned_storage!(2, 3, 8, 16)>::default();
    let mut s = Service::new(ModelHw::default(), cfg, tables.storage()).unwrap();
    let queues = [OwnedQueue::<8>::default(), OwnedQueue::<8>::default()];
    let mut bytes = data.iter().copied();
    let mut now = 0;
    NOW_MS.store(now, Ordering::Relaxed);
    while let (Some(a), Some(b), Some(n)) = (bytes.next(), bytes.next(), bytes.next()) {
        if a & 0x80 != 0 {
            now += (b & 3) as u64;
            NOW_MS.store(now, Ordering::Relaxed);
            let _ = s.record_fault(FaultInput {
                stream: (b % 5) as u32,
                iova: WORDS[(n % 12) as usize],
                write: n & 0x10 != 0,
                kind: 0x10,
                now,
            });
            continue;
        }
        if a == 0x7f && b == 0x7f {
            // The IOMMU failed: the IOMMU PD tells every client and serves nothing again.
            let dropped: Vec<u64> = (0..2).map(|c| s.faults(c).unwrap().dropped()).collect();
            assert_eq!(s.service_failed(true), 0b11);
            for (c, before) in dropped.into_iter().enumerate() {
                let ring = s.faults(c).unwrap();
                let told = ring.pending().last().is_some_and(|r| {
                    r.kind == iommu_protocol::faults::kind::SERVICE_FAILED && r.device == iommu_protocol::faults::NO_DEVICE
                });
                assert!(told || ring.dropped() == before + 1, "client {c} neither told nor counted");
                assert!(ring.failed(), "client {c}'s ring does not say the service failed");
            }
            return;
        }
        if a & 0x40 != 0 {
            // A batch in a mapping queue, served as the IOMMU PD would on a notification.
            let client = (a % 3) as usize;
            let q = queues[client % 2].queue().unwrap();
            if b & 0x20 != 0 {
                // A hostile client's tail: anywhere.
                queues[client % 2].header().request_tail.store(u32::from(n) << (b % 4 * 8), Ordering::Relaxed);
            }
            for tag in 0..u64::from(n % 8) {
                let label = [1, 2, 3, 0][(bytes.next().unwrap_or(0) % 4) as usize];
                let mut mrs = [0u64; 4];
                for m in &mut mrs {
                    let sel = bytes.next().unwrap_or(0);
                    *m = if sel & 0x80 == 0 { WORDS[(sel % 12) as usize] } else { u64::from(sel & 0x7f) << (sel % 7 * 8) };
                }
                q.post(label, tag, mrs);
            }
            let taken = s.serve_queue(client, &q);
            assert!(taken <= iommu_protocol::queue::QUEUE_BATCH);
            while q.pop_completion().is_some() {}
        } else {
            let client = (a % 3) as usize;
            let label = (b % 9) as u64;
            let count = (n % (MAX_MRS as u8 + 2)) as usize;
            let mut mrs = [0u64; MAX_MRS + 2];
            for m in mrs.iter_mut().take(count) {
                let sel = bytes.next().unwrap_or(0);
                *m = if sel & 0x80 == 0 { WORDS[(sel % 12) as usize] } else { u64::from(sel & 0x7f) << (sel % 7 * 8) };
            }
            let _ = s.handle_with(client, label, &mrs[..count], &mut iommu_pd::pci::NoConfigSpaceClocked(now_ms));
        }
        let mut view = std::collections::BTreeMap::new();
        s.for_each_mapped_page(|d, iova, pa, r| {
            assert!(
                REGIONS.iter().any(|g| pa >= g.pa && pa + 0x1000 <= g.pa + g.size),
                "page {pa:#x} outside every region"
            );
            view.insert((d, iova), (pa, r));
        });
        let hw: std::collections::BTreeMap<_, _> =
            s.hw().pages.iter().flat_map(|(d, t)| t.iter().map(move |(iova, v)| ((*d, *iova), *v))).collect();
        assert_eq!(hw, view);
    }
});
