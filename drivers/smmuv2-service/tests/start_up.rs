//! A service that fails to start on the MMU-500 leaves no device translating: every point
//! of `Service::new` at which the IOMMU can say no (each enable, each static mapping, each
//! block of the re-block that follows a failure) is made to, one run per point, as Linux's
//! iommufd selftests sweep `fail_nth`; after each failure, read from the stream-mapping
//! registers, every stream of every device faults (its S2CR routes it to the sink bank or
//! it is unmatched with USFCFG = 1), and no device's DMA reaches memory, before the IOMMU
//! PD's `fail_closed` runs and after it. The SMMUv3 has the same test on one failure
//! point (`smmuv3-service/tests/backend.rs`,
//! `a_service_that_fails_to_start_leaves_no_device_translating`).

use iommu_pd::config::NO_OWNER;
use iommu_pd::{
    Config, ConfigError, DeviceConfig, DeviceIndex, FaultPolicy, HwError, IommuHw, MapRefused, RegionConfig, Service,
    StaticMapConfig,
};
use iommu_protocol::Rights;
use smmuv2::model::{host_config, host_region, Mmu500Model, Route, ZYNQMP};
use smmuv2::{Memory, Smmu};
use smmuv2_service::Smmuv2Backend;

/// How the chosen call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// Refused at the interface, nothing done.
    Refused,
    /// Done on the SMMU, then reported failed: what an unconfirmed call may leave.
    DoneButFailed,
    /// Refused, and from then on no TLBSYNC completes: the SMMU stopped confirming, and
    /// the re-block that follows runs on it so.
    RefusedThenSyncsStall,
}

/// The backend, with its `nth` call (0-based, over every `IommuHw` call) failing `how`.
struct FailNth {
    inner: Smmuv2Backend<&'static Mmu500Model>,
    model: &'static Mmu500Model,
    calls: usize,
    nth: usize,
    how: How,
}

impl FailNth {
    fn call<T>(
        &mut self,
        failed: T,
        f: impl FnOnce(&mut Smmuv2Backend<&'static Mmu500Model>) -> Result<(), T>,
    ) -> Result<(), T> {
        let n = self.calls;
        self.calls += 1;
        if n != self.nth {
            return f(&mut self.inner);
        }
        match self.how {
            How::Refused => Err(failed),
            How::DoneButFailed => {
                let _ = f(&mut self.inner);
                Err(failed)
            }
            How::RefusedThenSyncsStall => {
                self.model.stall_syncs(true);
                Err(failed)
            }
        }
    }
}

impl IommuHw for FailNth {
    fn enable(&mut self, d: DeviceIndex) -> Result<(), HwError> {
        self.call(HwError, |b| b.enable(d))
    }
    fn block(&mut self, d: DeviceIndex) -> Result<(), HwError> {
        self.call(HwError, |b| b.block(d))
    }
    fn map(&mut self, d: DeviceIndex, iova: u64, pa: u64, len: u64, r: Rights) -> Result<(), HwError> {
        self.call(HwError, |b| b.map(d, iova, pa, len, r))
    }
    const CHECKS_RANGE_FREE: bool = Smmuv2Backend::<&'static Mmu500Model>::CHECKS_RANGE_FREE;
    fn map_if_free(&mut self, d: DeviceIndex, iova: u64, pa: u64, len: u64, r: Rights) -> Result<(), MapRefused> {
        self.call(MapRefused::Hardware, |b| b.map_if_free(d, iova, pa, len, r))
    }
    fn unmap(&mut self, d: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.call(HwError, |b| b.unmap(d, ranges))
    }
    fn unmap_deferred(&mut self, d: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.call(HwError, |b| b.unmap_deferred(d, iova, len))
    }
    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        self.call(HwError, |b| b.sync_unmaps())
    }
    fn retry_unmap(&mut self, d: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.call(HwError, |b| b.retry_unmap(d, ranges))
    }
}

/// Three devices, the second with a second StreamID, each with a static mapping of its own
/// page of `buf` at `IOVA`.
const STREAMS: [u32; 3] = [0x10, 0x11, 0x12];
const EXTRA: u32 = 0x13;
const IOVA: u64 = 0x1000_0000;

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

fn config(buf: u64) -> Config<'static> {
    let device = |name, stream| DeviceConfig {
        name,
        stream,
        extra_streams: &[],
        owner: NO_OWNER,
        iova_base: IOVA,
        iova_size: 1 << 20,
        resume_allowed: false,
    };
    let static_map = |device: usize| StaticMapConfig {
        device,
        region: 0,
        offset: device as u64 * 0x1000,
        len: 0x1000,
        iova: IOVA,
        rights: Rights::READ_WRITE,
    };
    Config {
        clients: &[],
        devices: leak([device("first", STREAMS[0]), device("second", STREAMS[1]), device("third", STREAMS[2])]),
        regions: leak([RegionConfig { name: "buf", pa: buf, size: 0x3000 }]),
        caps: &[],
        static_maps: leak([static_map(0), static_map(1), static_map(2)]),
        faults: FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 },
    }
}

/// Whether every stream of every device, and StreamIDs no device has, fault untranslated,
/// by the registers and by a write through the model; `None` if so, else what does not.
fn every_stream_faults(model: &Mmu500Model, sink: usize) -> Option<String> {
    for sid in STREAMS.iter().copied().chain([EXTRA, 0, 0x14, 0x7fff]) {
        let route = model.route(sid);
        if !matches!(route, Route::Fault) && route != Route::Bank(sink) {
            return Some(format!("stream {sid:#x}: {route:?}"));
        }
        let out = model.access(sid, IOVA, true);
        if out.reached_memory() {
            return Some(format!("stream {sid:#x}: {out:?}"));
        }
    }
    None
}

/// At every call of start-up, each way it can fail: no stream translates afterwards.
/// Failing without the re-block (the loop in `Service::new` that blocks every device it
/// enabled, taken out): the first device's static mapping refused left its stream routed
/// to its bank.
#[test]
fn a_start_up_failing_at_any_point_leaves_every_stream_faulting() {
    let buf = host_region(0x3000, 0x1000);
    let mut points = 0;
    for how in [How::Refused, How::DoneButFailed, How::RefusedThenSyncsStall] {
        for nth in 0.. {
            let model: &'static Mmu500Model = leak(Mmu500Model::new(ZYNQMP));
            let mem = Memory { tables: host_region(64 * 4096, 4096) };
            // SAFETY: fresh host memory only this driver uses; the model is its register file.
            let smmu = unsafe { Smmu::init(model, mem, host_config()) }.expect("init");
            let sink = smmu.sink_bank();
            let mut inner = Smmuv2Backend::new(smmu, &STREAMS).unwrap();
            inner.add_streams(1, &[EXTRA]).unwrap();
            let hw = FailNth { inner, model, calls: 0, nth, how };
            // No client; three devices; a capability and a mapping slot per static mapping.
            let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 3, 4, 8)>::default()));
            let what = format!("{how:?} at call {nth}");
            match Service::new(hw, config(buf.pa.0), storage.storage()) {
                Ok(_) => {
                    // Past the last call: start-up made `nth` calls, all answered.
                    assert!(nth > 0, "{what}: no call at all");
                    break;
                }
                Err(ConfigError::Hardware(_)) => {}
                Err(e) => panic!("{what}: {e:?}"),
            }
            points += 1;
            if let Some(open) = every_stream_faults(model, sink) {
                panic!("{what}: before fail_closed, {open}");
            }
            assert_eq!(model.violations(), Vec::<String>::new(), "{what}");
            // What the IOMMU PD does next: the same, with the whole SMMU closed.
            model.stall_syncs(false);
            smmuv2::fail_closed(model, 1000).unwrap();
            if let Some(open) = every_stream_faults(model, sink) {
                panic!("{what}: after fail_closed, {open}");
            }
        }
    }
    // Three enables and three static maps, each failing three ways.
    assert!(points >= 18, "{points} failure points");
}
