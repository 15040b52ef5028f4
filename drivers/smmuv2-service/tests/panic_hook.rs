//! The IOMMU PD's panic hook and its failure path on an MMU-500, which no image boots
//! (QEMU has no MMU-500), run here end to end on the strict SMMUv2 model: the service
//! serving a device that reaches its page, then what the IOMMU PD does with the registers
//! and the fault rings alone (`mmu500.rs`'s `fail_closed`, `faults::panicked`), with the
//! service left wherever it was.

use iommu_pd::config::NO_OWNER;
use iommu_pd::faults::{panicked, FaultRing};
use iommu_pd::{Config, DeviceConfig, DeviceIndex, FaultPolicy, IommuHw, RegionConfig, Service, StaticMapConfig};
use iommu_protocol::faults::failed;
use iommu_protocol::Rights;
use smmuv2::model::{host_config, host_region, Mmu500Model, Route, ZYNQMP};
use smmuv2::{Memory, Smmu};
use smmuv2_service::Smmuv2Backend;

const SID: u32 = 0x21;
const IOVA: u64 = 0x2000_0000;
/// The IOMMU PD's bound on a wait for the MMU-500 (`mmu500.rs`'s POLL_LIMIT is larger; the
/// model answers at once or never).
const POLLS: u32 = 64;

type Svc = Service<'static, Smmuv2Backend<&'static Mmu500Model>>;

/// One device with a static mapping of its page at `IOVA`, served: its DMA reaches the page.
fn serving() -> (&'static Mmu500Model, Svc) {
    let model: &'static Mmu500Model = Box::leak(Box::new(Mmu500Model::new(ZYNQMP)));
    let page = host_region(0x1000, 0x1000);
    // SAFETY: fresh host memory only this driver uses; the model is its register file.
    let smmu = unsafe { Smmu::init(model, Memory { tables: host_region(16 * 4096, 4096) }, host_config()) }.unwrap();
    let hw = Smmuv2Backend::new(smmu, &[SID]).unwrap();
    let config = Config {
        clients: &[],
        devices: Box::leak(Box::new([DeviceConfig {
            name: "dma",
            stream: SID,
            extra_streams: &[],
            owner: NO_OWNER,
            iova_base: IOVA,
            iova_size: 1 << 20,
            resume_allowed: false,
        }])),
        regions: Box::leak(Box::new([RegionConfig { name: "page", pa: page.pa.0, size: 0x1000 }])),
        caps: &[],
        static_maps: Box::leak(Box::new([StaticMapConfig {
            device: 0,
            region: 0,
            offset: 0,
            len: 0x1000,
            iova: IOVA,
            rights: Rights::READ_WRITE,
        }])),
        faults: FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 },
    };
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 1, 2)>::default()));
    let service = Service::new(hw, config, storage.storage()).unwrap();
    assert!(model.access(SID, IOVA, true).reached_memory(), "served: the device reaches its page");
    (model, service)
}

/// The word each of `rings` says.
fn words(rings: &[FaultRing]) -> Vec<u64> {
    // SAFETY: the test's own rings, live for the call.
    rings.iter().map(|r| unsafe { FaultRing::failure_shared(core::ptr::NonNull::from(r)) }).collect()
}

/// The hook on a serving MMU-500: every stream faults (the device's, and one nobody
/// describes), nothing the model forbids is written, and every client is told DMA is
/// stopped. What held before this session, now run.
#[test]
fn the_mmu500_panic_hook_faults_every_stream_and_tells_every_client() {
    // The service stays as it was (never dropped before the hook's work: a panic ends
    // nothing it holds).
    let (model, _service) = serving();
    let closed = smmuv2::fail_closed_knowing(model, POLLS, false);
    assert_eq!(closed, Ok(()));
    let mut rings: Vec<FaultRing> = (0..2).map(|_| FaultRing::default()).collect();
    assert_eq!(panicked(&mut rings, closed.is_ok()), 0b11);
    assert_eq!(words(&rings), [failed::DMA_STOPPED; 2]);
    for sid in [SID, 0x7fff] {
        assert_eq!(model.route(sid), Route::Fault, "stream {sid:#x}");
        assert!(!model.access(sid, IOVA, true).reached_memory(), "stream {sid:#x}");
    }
    assert_eq!(model.violations(), Vec::<String>::new());
}

/// The MMU-500 stopped confirming its TLB syncs while serving: the driver failed it
/// closed (`Failure::Unanswered`, every stream faulting, read back), and the service
/// stopped, telling every client DMA is stopped. Then the IOMMU PD panics: its hook fails
/// the SMMU closed again, its own global sync timing out as the driver's did. Failing
/// before (the hook's `smmuv2::fail_closed` alone): the hook returned the sync's timeout
/// and told every client DMA was not known to be stopped, every stream faulting all the
/// same, after the driver had confirmed it.
#[test]
fn the_mmu500_panic_hook_after_a_failure_while_serving_keeps_what_the_driver_confirmed() {
    let (model, mut service) = serving();
    model.stall_syncs(true);
    let d: DeviceIndex = 0;
    assert!(service.hw_mut().unmap(d, &[(IOVA, 0x1000)]).is_err());
    assert!(service.hw_mut().unmap(d, &[(IOVA, 0x1000)]).is_err());
    let failure = service.hw_mut().smmu_ref().failure();
    assert!(matches!(failure, Some((smmuv2::Failure::Unanswered, Ok(())))), "{failure:?}");
    // What the IOMMU PD keeps for its hook (`mmu500.rs`'s `known`).
    let closed_before = matches!(failure, Some((_, Ok(()))));
    let closed = smmuv2::fail_closed_knowing(model, POLLS, closed_before);
    assert_eq!(closed, Ok(()), "what the driver confirmed");
    let mut rings: Vec<FaultRing> = (0..2).map(|_| FaultRing::default()).collect();
    panicked(&mut rings, closed.is_ok());
    assert_eq!(words(&rings), [failed::DMA_STOPPED; 2]);
    for sid in [SID, 0x7fff] {
        assert!(!model.access(sid, IOVA, true).reached_memory(), "stream {sid:#x}");
    }
    // Knowing nothing (a hook at start-up), the same stalled sync is reported.
    assert!(smmuv2::fail_closed_knowing(model, POLLS, false).is_err());
}
