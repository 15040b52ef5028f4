//! The service's model-based and exhaustive tests (iommu-pd/tests/common: the same
//! harness, reference model and invariants that run over the model IOMMU in
//! `iommu-pd/tests/model.rs` and `exhaustive.rs`) over `Smmuv2Backend` on the strict
//! MMU-500 model with ZynqMP's profile. After every step each device tries every page it
//! ever had a mapping at, through the model (filling its TLB, as DMA would), so a skipped
//! or unconfirmed invalidation shows up as a stale translation; every fault the model
//! records goes through `Smmuv2Backend::drain_faults` to `Service::record_fault`, which
//! must attribute it to the device's owner. The IOMMU fails as an MMU-500 can: for an
//! unmap, a retry or a block, every TLBSYNC of the call never completes (the driver's
//! bounded wait times out); a map or an enable, which wait for nothing on a healthy
//! domain, fail at the interface.

#[path = "../../../iommu-pd/tests/common/mod.rs"]
mod common;

use std::cell::Cell;
use std::collections::BTreeSet;

use common::backend::{add_leaf, reach_by, Entry, Faulty, Inject, Pages, TestHw};
use common::DEVICES;
use iommu_pd::{DeviceIndex, FaultInput};
use smmuv2::model::{host_config, host_region, Mmu500Model, Outcome, Route, ZYNQMP};
use smmuv2::{DmaRegion, Memory, Perm, Smmu, StreamId};
use smmuv2_service::{Recorded, Smmuv2Backend};

type Backend = Smmuv2Backend<Mmu500Model>;

/// Page-table pool pages: a root and at most three tables per device (its window is 1 MiB).
const POOL_PAGES: usize = 4 * DEVICES.len();

thread_local! {
    /// One pool per test thread, reused by every service it starts (the exhaustive test
    /// starts thousands; leaking a pool each would take gigabytes).
    static POOL: Cell<Option<DmaRegion>> = const { Cell::new(None) };
}

fn backend() -> Faulty<Backend> {
    backend_on(None)
}

/// On a platform whose walks do not snoop the CPU's caches (neither board's device tree
/// says `dma-coherent`; seL4 without SMP maps the PD's pages Non-shareable): the model
/// walks what was cleaned to the point of coherency, and records a violation when a TLB
/// invalidation, a bank enabled or an SMR written finds the pool not cleaned.
fn non_coherent_backend() -> Faulty<Backend> {
    backend_on(Some(smmuv3::model::PocMemory::leak()))
}

fn backend_on(poc: Option<&'static smmuv3::model::PocMemory>) -> Faulty<Backend> {
    let tables = POOL.with(|p| {
        let r = p.get().unwrap_or_else(|| host_region(POOL_PAGES * 4096, 4096));
        p.set(Some(r));
        r
    });
    let model = Mmu500Model::new(ZYNQMP);
    let mut config = host_config();
    if let Some(poc) = poc {
        model.non_coherent(poc);
        poc.watch(tables);
        config = smmuv2::Config { platform_coherent: false, cache: Some(poc), ..config };
    }
    // SAFETY: the pool is host memory this thread allocated for these tests; the service
    // (and the driver in it) that used it last was dropped before this one is made (each
    // run owns its service), so only this driver uses it from now on. The pool hands out
    // zeroed pages, whatever the previous driver left.
    let smmu = unsafe { Smmu::init(model, Memory { tables }, config) }.expect("init");
    let streams: Vec<u32> = DEVICES.iter().map(|d| d.stream).collect();
    Faulty::new(Smmuv2Backend::new(smmu, &streams).expect("a bank per device"))
}

fn model(b: &Backend) -> &Mmu500Model {
    b.smmu_ref().regs()
}

impl Inject for Backend {
    fn break_for(&mut self, what: &'static str) -> bool {
        match what {
            "unmap" | "retry_unmap" | "block" => {
                model(self).stall_syncs(true);
                true
            }
            _ => false,
        }
    }
    // The SMMU works again: the syncs it held complete. (Held across two calls' waits, it
    // would be an SMMU that stopped answering, which the driver fails closed for good:
    // `drivers/smmuv2/tests/failure_paths.rs`.)
    fn recover(&mut self) {
        model(self).stall_syncs(false);
        model(self).finish_syncs();
    }
}

impl TestHw for Faulty<Backend> {
    const FAILED_UNMAPS_STAY_CACHED: bool = false;
    const RECORDS_FAULTS: bool = true;

    fn tables(&self, d: DeviceIndex) -> Pages {
        let mut out = Pages::new();
        let Some(dom) = self.inner.domain_of(d) else { return out };
        let add =
            |leaf: smmuv2::Leaf| add_leaf(&mut out, leaf.iova.0, leaf.pa.0, leaf.size(), leaf.perm == Perm::ReadWrite);
        self.inner.smmu_ref().for_each_mapping(dom, add).expect("the device's domain");
        out
    }

    fn enabled(&self, d: DeviceIndex) -> bool {
        let sid = StreamId(DEVICES[d].stream);
        self.inner.domain_of(d).is_some() && self.inner.smmu_ref().stream_domain(sid) == self.inner.domain_of(d)
    }

    fn reach(&self, d: DeviceIndex, iovas: &BTreeSet<u64>) -> Pages {
        let (m, sid) = (model(&self.inner), DEVICES[d].stream);
        reach_by(iovas, |iova, write| match m.access(sid, iova, write) {
            Outcome::Translated(pa) | Outcome::Bypass(pa) => Some(pa),
            _ => None,
        })
    }

    fn fail_next(&mut self, what: Option<&'static str>) {
        self.fail = what;
    }

    fn faults(&mut self, now: u64) -> Vec<FaultInput> {
        // Called after every step: no rule of the architecture broken so far (a
        // stream-match conflict, a context bank written while enabled...).
        assert_eq!(model(&self.inner).violations(), Vec::<String>::new());
        // Translation faults; a stream event (an unmatched stream: a blocked device's) is
        // no fault of a device's to attribute (`a_stopped_device_still_...` below).
        let mut out = Vec::new();
        self.inner.drain_faults(now, |_, r| {
            if let Recorded::Fault(f) = r {
                out.push(f)
            }
        });
        out
    }

    fn entry(&self, d: DeviceIndex) -> Option<Entry> {
        let own = self.inner.domain_of(d).map(|dom| dom.cb());
        Some(stream_entry(&self.inner, DEVICES[d].stream, own))
    }

    fn stray_entries(&self) -> Vec<(u32, String)> {
        let mut sids = vec![0, 0x7fff];
        sids.extend(DEVICES.iter().flat_map(|d| [d.stream - 1, d.stream + 1]));
        sids.into_iter()
            .filter(|sid| !DEVICES.iter().any(|d| d.stream == *sid))
            .filter_map(|sid| match stream_entry(&self.inner, sid, None) {
                Entry::Aborts => None,
                e => Some((sid, format!("{e:?}"))),
            })
            .collect()
    }
}

/// What the MMU-500's stream mapping makes of `sid` (its SMRs, S2CRs, sCR0 and the bank's
/// SCTLR, read from the registers): faulted (unmatched with USFCFG = 1, an S2CR of type
/// fault, or the driver's sink bank, which faults everything) aborts; translated through
/// `own`, the device's own context bank, is its domain; anything else is never right.
fn stream_entry(b: &Backend, sid: u32, own: Option<usize>) -> Entry {
    match model(b).route(sid) {
        Route::Fault => Entry::Aborts,
        Route::Bank(cb) if cb == b.smmu_ref().sink_bank() => Entry::Aborts,
        Route::Bank(cb) if Some(cb) == own => Entry::OwnDomain,
        Route::Bank(cb) => Entry::Other(format!("routed to context bank {cb}, its device's is {own:?}")),
        r => Entry::Other(format!("{r:?}")),
    }
}

#[test]
fn model_based_over_mmu500() {
    common::suite::model_based(backend);
}

#[test]
fn model_based_over_a_non_coherent_mmu500() {
    common::suite::model_based(non_coherent_backend);
}

#[test]
fn exhaustive_over_mmu500() {
    common::suite::exhaustive(backend);
}

/// The mapping queue under each failure point of a batch, and each pair of them (the
/// MMU-500 confirms each deferred unmap at once, so its batch's sync waits for nothing).
#[test]
fn queue_failure_points_over_mmu500() {
    common::failure_points::sweep(backend);
}

/// The same requests as calls (a MAP booked before the SMMU maps it), under each failure
/// point and each pair.
#[test]
fn call_failure_points_over_mmu500() {
    common::failure_points::sweep_calls(backend);
}

/// A REVOKE and a teardown under each SMMU failure point and each pair
/// (`common::revoke_points`; iommu-pd's `tests/revoke_failure_points.rs` also sweeps a
/// RELEASE and two REVOKEs in a row over the model): more than a batch of removals on a
/// device, among mappings that stay, on four devices of three clients.
#[test]
fn revoke_failure_points_over_mmu500() {
    use common::revoke_points::{sweep, Op};
    for op in [Op::RevokeLoan, Op::TearDownNet] {
        sweep(backend, op);
    }
}

#[test]
#[ignore = "long: 10^5 steps and every sequence of three; run with --release -- --ignored"]
fn long_over_mmu500() {
    common::suite::long(backend);
}

/// STOP blocks a device: on the MMU-500 its streams are routed to the driver's sink bank,
/// so what it still sends faults there without an interrupt, as on the SMMUv3 it meets
/// an aborting STE (which records no event): nothing wakes the IOMMU PD, nothing is
/// drained, the owner is told nothing and nothing counts towards the device's fault
/// storm. Counted as faults (when a blocked stream was unmatched and each drain found a
/// global fault), a device still issuing DMA when stopped was quarantined by its own
/// STOP, and "disk", whose description allows no RESUME after a quarantine, never ran
/// again.
#[test]
fn a_stopped_device_still_issuing_dma_is_not_quarantined() {
    use iommu_pd::Service;
    use iommu_protocol::{DeviceId, Reply, Request};
    let tables = host_region(POOL_PAGES * 4096, 4096);
    // SAFETY: fresh host memory only this driver uses.
    let smmu = unsafe { Smmu::init(Mmu500Model::new(ZYNQMP), Memory { tables }, host_config()) }.expect("init");
    let streams: Vec<u32> = DEVICES.iter().map(|d| d.stream).collect();
    let hw = Smmuv2Backend::new(smmu, &streams).unwrap();
    let mut s = Service::new(hw, common::config(), common::storage()).unwrap();
    let disk = 1;
    let stop = common::call(&mut s, common::BLK, Request::Stop { device: DeviceId(disk) });
    assert!(matches!(stop, Reply::Ok { .. }), "{stop:?}");
    let woken = model(s.hw()).interrupts();
    for i in 0..50u64 {
        let out = model(s.hw()).access(DEVICES[disk as usize].stream, common::IOVA_BASE + i * 4096, true);
        assert!(!out.reached_memory(), "{out:?}");
        // What the IOMMU PD would do on the SMMU's interrupt, which does not come.
        assert_eq!(model(s.hw()).interrupts(), woken, "transaction {i} woke the IOMMU PD");
        assert_eq!(smmuv2_service::take_faults(&mut s, i, |_, _| ()), 0);
    }
    assert_eq!((s.stats().quarantines, s.stats().stream_events), (0, 0));
    let resume = common::call(&mut s, common::BLK, Request::Resume { device: DeviceId(disk) });
    assert!(matches!(resume, Reply::Ok { .. }), "{resume:?}");
}

/// The service on the MMU-500's level-triggered line, as the IOMMU PD runs it: woken while
/// the line is asserted, each wake-up routing every fault recorded (`take_faults`). A
/// master on a StreamID the description does not name sends 10^4 transactions while
/// "disk" (blk's) faults past its window every 100th: the IOMMU PD is woken 100 times,
/// the disk's faults', and each of the disk's 100 faults is routed to blk, its owner, in
/// order; the undescribed master's are counted as nobody's (one a drain), told to no one.
/// Before
/// `drain_faults` paced the global interrupt, the same run woke the IOMMU PD 10^4 times.
#[test]
fn a_stream_nobody_described_does_not_starve_a_described_devices_owner() {
    use iommu_pd::{Routed, Service};
    const UNDESCRIBED: u32 = 0x7ff0;
    assert!(DEVICES.iter().all(|d| d.stream != UNDESCRIBED));
    let tables = host_region(POOL_PAGES * 4096, 4096);
    // SAFETY: fresh host memory only this driver uses.
    let smmu = unsafe { Smmu::init(Mmu500Model::new(ZYNQMP), Memory { tables }, host_config()) }.expect("init");
    let streams: Vec<u32> = DEVICES.iter().map(|d| d.stream).collect();
    let hw = Smmuv2Backend::new(smmu, &streams).unwrap();
    let mut s = Service::new(hw, common::config(), common::storage()).unwrap();
    let disk = &DEVICES[1];
    let (mut wakes, mut told) = (0u64, Vec::new());
    for i in 0..10_000u64 {
        let out = model(s.hw()).access(UNDESCRIBED, common::IOVA_BASE, true);
        assert_eq!(out, Outcome::GlobalFault(smmuv2::fault::sgfsr::USF), "{i}");
        if i % 100 == 0 {
            // Past the disk's window; far enough apart in time to stay below its storm.
            let out = model(s.hw()).access(disk.stream, disk.iova_base + disk.iova_size + i * 4096, true);
            assert!(matches!(out, Outcome::ContextFault { .. }), "{i}: {out:?}");
        }
        while model(s.hw()).interrupt_asserted() {
            wakes += 1;
            assert!(wakes <= 20_000, "the line stays asserted");
            smmuv2_service::take_faults(&mut s, i * 1000, |f, routed| {
                if let (smmuv2::Fault::Context(c), Routed::Client(client)) = (f, routed) {
                    told.push((client.0 as usize, c.iova.0));
                }
            });
        }
    }
    assert_eq!(wakes, 100);
    let want: Vec<(usize, u64)> =
        (0..100u64).map(|k| (common::BLK, disk.iova_base + disk.iova_size + k * 100 * 4096)).collect();
    assert_eq!(told, want, "each of the disk's faults to blk");
    assert_eq!(s.stats().quarantines, 0);
    assert_eq!((s.stats().unattributed_faults, s.stats().stream_events), (100, 0), "one a drain, nobody's");
}
