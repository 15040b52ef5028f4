//! What the model-based and exhaustive tests need from an IOMMU below the service, so that
//! they run over the model IOMMU (`ModelHw`) and over each hardware backend on its SMMU's
//! host model (`smmuv3-service` on `SmmuModel`, `smmuv2-service` on `Mmu500Model`: those
//! crates' tests include this directory and implement `TestHw` for their backend).
//!
//! A hardware model is observed the way a device would observe it: `reach` issues a read
//! and a write through the SMMU at each address and sees what comes out, so a translation
//! the SMMU's TLB kept after its invalidation was skipped or not confirmed shows up as a
//! page reached that the tables no longer hold.

use std::collections::{BTreeMap, BTreeSet};

use iommu_pd::model::ModelHw;
use iommu_pd::{DeviceIndex, FaultInput, HwError, IommuHw, MapRefused};
use iommu_protocol::Rights;

/// IOVA page -> (physical page, rights).
pub type Pages = BTreeMap<u64, (u64, Rights)>;

/// The IOMMU calls a test may make fail ("unmap" fails a deferred unmap too; "sync" the
/// sync that confirms a batch's deferred unmaps).
pub const HW_FAILURES: [&str; 6] = ["map", "unmap", "retry_unmap", "block", "enable", "sync"];

/// What an IOMMU's entry for a stream (an SMMUv3 STE, an SMMUv2 SMR and S2CR) makes of its
/// transactions, read from the entry itself, as the hardware would use it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Every transaction aborts or faults untranslated (an aborting STE, an invalid
    /// level-1 descriptor; an S2CR of type fault, the sink bank, an unmatched stream with
    /// USFCFG = 1).
    Aborts,
    /// Translated through the device's own address space, and nothing else.
    OwnDomain,
    /// Anything else (bypass, another device's address space, an entry the hardware may
    /// not use): never right.
    Other(String),
}

/// An IOMMU the service's model-based and exhaustive tests run over.
pub trait TestHw: IommuHw {
    /// A failed unmap always leaves every page it took out of the tables cached (the model
    /// IOMMU's worst case, `ModelHw::stale`): then what the IOMMU holds equals the
    /// service's books exactly, pending removals included. On an SMMU only what a device
    /// used is cached, and a removal that failed before the tables changed keeps its
    /// pages in them, so a pending removal may be in either place or in neither.
    const FAILED_UNMAPS_STAY_CACHED: bool;
    /// `faults` reports a fault of every device that translates and tried an address it
    /// has no mapping at (an SMMUv2 context bank records one until it is cleared).
    const RECORDS_FAULTS: bool = false;
    /// What `device`'s tables map.
    fn tables(&self, device: DeviceIndex) -> Pages;
    /// Translations known to be cached beyond the tables (the model's `stale`); an SMMU's
    /// TLB is seen through `reach` instead.
    fn cached(&self, _device: DeviceIndex) -> Pages {
        Pages::new()
    }
    /// Whether `device`'s transactions go through its address space (not blocked).
    fn enabled(&self, device: DeviceIndex) -> bool;
    /// What `device` reaches at these IOVA pages right now: a read and a write of each
    /// through the IOMMU. On an SMMU model this fills its TLB, as the device's DMA would.
    fn reach(&self, device: DeviceIndex, iovas: &BTreeSet<u64>) -> Pages;
    /// Make the next call of this kind fail (one of `HW_FAILURES`), or none.
    fn fail_next(&mut self, what: Option<&'static str>);
    /// Faults the IOMMU recorded since the last call, as the service's input, stamped `now`.
    fn faults(&mut self, _now: u64) -> Vec<FaultInput> {
        Vec::new()
    }
    /// What the IOMMU's entries make of `device`'s stream, read from the entries, or
    /// `None` where there are none to read (the model IOMMU).
    fn entry(&self, _device: DeviceIndex) -> Option<Entry> {
        None
    }
    /// StreamIDs no device has (a few around each device's, and the ends of the range)
    /// whose entries do not abort, each with what its entry does.
    fn stray_entries(&self) -> Vec<(u32, String)> {
        Vec::new()
    }
    /// Everything the IOMMU holds for `device`.
    fn translations(&self, device: DeviceIndex) -> Pages {
        let mut out = self.cached(device);
        out.extend(self.tables(device));
        out
    }
}

impl TestHw for ModelHw {
    const FAILED_UNMAPS_STAY_CACHED: bool = true;
    fn tables(&self, d: DeviceIndex) -> Pages {
        self.pages.get(&d).cloned().unwrap_or_default()
    }
    fn cached(&self, d: DeviceIndex) -> Pages {
        let mut out = self.stale.get(&d).cloned().unwrap_or_default();
        out.extend(self.in_flight.get(&d).cloned().unwrap_or_default());
        out
    }
    fn enabled(&self, d: DeviceIndex) -> bool {
        self.enabled.get(&d).copied().unwrap_or(false)
    }
    fn reach(&self, d: DeviceIndex, iovas: &BTreeSet<u64>) -> Pages {
        self.reachable(d).into_iter().filter(|(iova, _)| iovas.contains(iova)).collect()
    }
    fn fail_next(&mut self, what: Option<&'static str>) {
        self.fail_next = what;
    }
}

/// The model IOMMU as the SMMUv3 backend presents itself to the service: it checks that a
/// MAP's range is free in its tables (`IommuHw::CHECKS_RANGE_FREE`), so the service leaves
/// the overlap check to it. What it calls free is what its tables hold, removals in
/// flight (out of the tables, not synced) and pending (a failed unmap) included, as the
/// driver's walk sees them.
#[derive(Debug, Default)]
pub struct RangeChecked(pub ModelHw);

impl IommuHw for RangeChecked {
    const CHECKS_RANGE_FREE: bool = true;
    fn enable(&mut self, d: DeviceIndex) -> Result<(), HwError> {
        self.0.enable(d)
    }
    fn block(&mut self, d: DeviceIndex) -> Result<(), HwError> {
        self.0.block(d)
    }
    fn map(&mut self, d: DeviceIndex, iova: u64, pa: u64, len: u64, r: Rights) -> Result<(), HwError> {
        self.0.map(d, iova, pa, len, r)
    }
    fn map_if_free(&mut self, d: DeviceIndex, iova: u64, pa: u64, len: u64, r: Rights) -> Result<(), MapRefused> {
        if self.0.tables(d).range(iova..iova.saturating_add(len)).next().is_some() {
            return Err(MapRefused::InUse);
        }
        self.0.map(d, iova, pa, len, r).map_err(|_| MapRefused::Hardware)
    }
    fn unmap(&mut self, d: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.0.unmap(d, ranges)
    }
    fn retry_unmap(&mut self, d: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.0.retry_unmap(d, ranges)
    }
    fn unmap_deferred(&mut self, d: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.0.unmap_deferred(d, iova, len)
    }
    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        self.0.sync_unmaps()
    }
}

impl TestHw for RangeChecked {
    const FAILED_UNMAPS_STAY_CACHED: bool = true;
    fn tables(&self, d: DeviceIndex) -> Pages {
        self.0.tables(d)
    }
    fn cached(&self, d: DeviceIndex) -> Pages {
        self.0.cached(d)
    }
    fn enabled(&self, d: DeviceIndex) -> bool {
        TestHw::enabled(&self.0, d)
    }
    fn reach(&self, d: DeviceIndex, iovas: &BTreeSet<u64>) -> Pages {
        self.0.reach(d, iovas)
    }
    fn fail_next(&mut self, what: Option<&'static str>) {
        self.0.fail_next(what);
    }
}

/// What a device reaches at `iovas`, found by trying: `access(iova, write)` is where its
/// read or write of `iova` lands, if anywhere. For the hardware backends' `reach`.
pub fn reach_by(iovas: &BTreeSet<u64>, mut access: impl FnMut(u64, bool) -> Option<u64>) -> Pages {
    let mut out = Pages::new();
    for &iova in iovas {
        let (read, write) = (access(iova, false), access(iova, true));
        let rights = match (read, write) {
            (Some(_), Some(_)) => Rights::READ_WRITE,
            (Some(_), None) => Rights::READ,
            (None, Some(_)) => Rights::WRITE,
            (None, None) => continue,
        };
        out.insert(iova, (read.or(write).unwrap_or(0), rights));
    }
    out
}

/// A leaf of an SMMU's page tables (`size` bytes at `iova` to `pa`) as the pages it maps.
pub fn add_leaf(out: &mut Pages, iova: u64, pa: u64, size: u64, writable: bool) {
    let rights = if writable { Rights::READ_WRITE } else { Rights::READ };
    for p in 0..size / 4096 {
        out.insert(iova + p * 4096, (pa + p * 4096, rights));
    }
}

/// How a hardware backend's SMMU model is made to fail a call the way the SMMU fails:
/// `break_for` arranges it (a TLBSYNC that never completes, a command rejected) and
/// returns true, or returns false when that call does no confirmed operation the SMMU
/// could fail (a map into a healthy domain writes descriptors and waits for nothing): then
/// `Faulty` fails it at the interface without calling the backend, as `ModelHw` does.
pub trait Inject {
    /// Make the SMMU fail what a call of this kind waits for.
    fn break_for(&mut self, what: &'static str) -> bool;
    /// The SMMU works again.
    fn recover(&mut self);
}

/// A backend with one failure injected into its next call of the named kind.
#[derive(Debug)]
pub struct Faulty<B> {
    pub inner: B,
    pub fail: Option<&'static str>,
}

impl<B: IommuHw + Inject> Faulty<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, fail: None }
    }

    fn call<T>(&mut self, what: &'static str, f: impl FnOnce(&mut B) -> Result<T, HwError>) -> Result<T, HwError> {
        if self.fail != Some(what) {
            return f(&mut self.inner);
        }
        self.fail = None;
        if !self.inner.break_for(what) {
            return Err(HwError);
        }
        let r = f(&mut self.inner);
        self.inner.recover();
        r
    }
}

impl<B: IommuHw + Inject> IommuHw for Faulty<B> {
    fn enable(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        self.call("enable", |b| b.enable(device))
    }
    fn block(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        self.call("block", |b| b.block(device))
    }
    fn map(&mut self, device: DeviceIndex, iova: u64, pa: u64, len: u64, rights: Rights) -> Result<(), HwError> {
        self.call("map", |b| b.map(device, iova, pa, len, rights))
    }
    const CHECKS_RANGE_FREE: bool = B::CHECKS_RANGE_FREE;
    fn map_if_free(
        &mut self,
        device: DeviceIndex,
        iova: u64,
        pa: u64,
        len: u64,
        rights: Rights,
    ) -> Result<(), MapRefused> {
        // An injected failure fails it as it fails `map`; otherwise the backend's answer,
        // `InUse` included.
        let mut refused = MapRefused::Hardware;
        self.call("map", |b| {
            b.map_if_free(device, iova, pa, len, rights).map_err(|e| {
                refused = e;
                HwError
            })
        })
        .map_err(|_| refused)
    }
    fn unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.call("unmap", |b| b.unmap(device, ranges))
    }
    fn unmap_one(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.call("unmap", |b| b.unmap_one(device, iova, len))
    }
    fn retry_unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.call("retry_unmap", |b| b.retry_unmap(device, ranges))
    }
    fn unmap_deferred(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.call("unmap", |b| b.unmap_deferred(device, iova, len))
    }
    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        self.call("sync", |b| b.sync_unmaps())
    }
}
