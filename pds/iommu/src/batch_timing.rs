//! A measurement build's breakdown of the mapping queue's batches (feature
//! `measure-batch`, images/blk-bench.xml only): where a doorbell call's batch spends its
//! time, kept apart for batches while the caller's device reads and batches with it idle
//! (`queue::SERVE`'s mr0: `iommu_protocol::measure::BATCH_*`).
//!
//! Three wrappers, each around what the product build uses unchanged, time or count the
//! batch's parts with the generic timer: `Timed` around the SMMU backend (the service's
//! MAPs, its deferred UNMAPs and the one sync, as `IommuHw` calls; the rest of a batch is
//! the service's own decoding, checks, index and completions), `TimedMmio` around the
//! registers (each access timed and counted, by the part it falls in), `CountedCache`
//! around the cache maintenance (each clean counted: a clean is cheaper than the two
//! timer reads that would time it, so its cost is calibrated once, at start-up, over a
//! thousand cleans). The counters are atomics: this PD is one thread, so `Relaxed` is
//! all they need.

use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use iommu_pd::{DeviceIndex, HwError, IommuHw, MapRefused};
use iommu_protocol::measure::{BATCH_ALONE, BATCH_UNDER_READS};
use iommu_protocol::Rights;
use sel4_microkit::debug_println;
use smmuv3::{CacheOps, Mmio, MmioRegisters};

/// The kinds of batch kept apart: `KINDS[k]`'s counters are `COUNTS[k]`.
const KINDS: [(u64, &str); 3] = [(0, "other"), (BATCH_UNDER_READS, "under reads"), (BATCH_ALONE, "alone")];
/// No batch is being served: nothing is counted.
const NONE: usize = usize::MAX;

/// Which part of a batch the SMMU work belongs to.
#[derive(Clone, Copy)]
enum Part {
    /// The service's MAPs (`map_if_free`: the driver's page-table walks and writes).
    Map = 0,
    /// Its queued UNMAPs (`unmap_deferred`: walks, clears and the TLBI commands).
    Unmap = 1,
    /// The one sync (`sync_unmaps`: CMD_SYNC, the doorbell, the CMDQ_CONS wait).
    Sync = 2,
    /// Anything else done while a batch is served.
    Other = 3,
}
const PARTS: usize = 4;
const PART_NAMES: [&str; PARTS] = ["MAPs", "UNMAPs", "sync", "other"];

/// One kind of batch's counters.
struct Counts {
    batches: AtomicU64,
    entries: AtomicU64,
    /// The SERVE call's handling, from the handler's start to its reply.
    handler_ticks: AtomicU64,
    /// `serve_one`: the batch itself.
    serve_ticks: AtomicU64,
    /// Per part: the backend calls, their ticks, cleans, register reads and writes, the
    /// ticks in register accesses, and of those the ticks in writes (a CMDQ_PROD write is
    /// where QEMU's SMMU executes the commands queued before it).
    calls: [AtomicU64; PARTS],
    ticks: [AtomicU64; PARTS],
    cleans: [AtomicU64; PARTS],
    reads: [AtomicU64; PARTS],
    writes: [AtomicU64; PARTS],
    mmio_ticks: [AtomicU64; PARTS],
    write_ticks: [AtomicU64; PARTS],
}

impl Counts {
    const fn new() -> Self {
        Counts {
            batches: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            handler_ticks: AtomicU64::new(0),
            serve_ticks: AtomicU64::new(0),
            calls: [const { AtomicU64::new(0) }; PARTS],
            ticks: [const { AtomicU64::new(0) }; PARTS],
            cleans: [const { AtomicU64::new(0) }; PARTS],
            reads: [const { AtomicU64::new(0) }; PARTS],
            writes: [const { AtomicU64::new(0) }; PARTS],
            mmio_ticks: [const { AtomicU64::new(0) }; PARTS],
            write_ticks: [const { AtomicU64::new(0) }; PARTS],
        }
    }
}

static COUNTS: [Counts; KINDS.len()] = [Counts::new(), Counts::new(), Counts::new()];
/// The kind of the batch being served (an index into `KINDS`), or `NONE`.
static KIND: AtomicUsize = AtomicUsize::new(NONE);
/// The part under way.
static PART: AtomicUsize = AtomicUsize::new(Part::Other as usize);
/// Calibrated at start-up: ticks per 1024 cleans, and per 1024 timer reads.
static CLEAN_TICKS_1K: AtomicU64 = AtomicU64::new(0);
static TIMER_TICKS_1K: AtomicU64 = AtomicU64::new(0);

fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed) + n, Relaxed);
}

/// The counters of the batch being served, if one is.
fn counts() -> Option<&'static Counts> {
    COUNTS.get(KIND.load(Relaxed))
}

/// A SERVE call whose mr0 is `kind` begins: its batch counts as that kind (an unknown
/// kind as "other").
pub fn serve_begins(kind: u64) {
    KIND.store(KINDS.iter().position(|&(k, _)| k == kind).unwrap_or(0), Relaxed);
}

/// Its batch took `entries` entries in `serve` ticks; the call's handling `handler`. (The
/// parts inside a call that took nothing are counted all the same; such a call does no
/// SMMU work.)
pub fn serve_ends(entries: usize, serve: u64, handler: u64) {
    // A call that found nothing to take (the report's, above all) is no batch.
    if let Some(c) = counts().filter(|_| entries > 0) {
        add(&c.batches, 1);
        add(&c.entries, entries as u64);
        add(&c.serve_ticks, serve);
        add(&c.handler_ticks, handler);
    }
    KIND.store(NONE, Relaxed);
}

/// Run `f` as `part` of the batch, timed.
fn timed<T>(part: Part, f: impl FnOnce() -> T) -> T {
    let Some(c) = counts() else { return f() };
    PART.store(part as usize, Relaxed);
    let t0 = generic_timer::ticks();
    let r = f();
    add(&c.ticks[part as usize], generic_timer::ticks() - t0);
    add(&c.calls[part as usize], 1);
    PART.store(Part::Other as usize, Relaxed);
    r
}

/// The SMMU backend, its service calls timed.
pub struct Timed<B>(pub B);

impl<B> Deref for Timed<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.0
    }
}

impl<B> DerefMut for Timed<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.0
    }
}

impl<B: IommuHw> IommuHw for Timed<B> {
    const CHECKS_RANGE_FREE: bool = B::CHECKS_RANGE_FREE;

    fn enable(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        self.0.enable(device)
    }
    fn block(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        self.0.block(device)
    }
    fn map(&mut self, device: DeviceIndex, iova: u64, pa: u64, len: u64, rights: Rights) -> Result<(), HwError> {
        timed(Part::Map, || self.0.map(device, iova, pa, len, rights))
    }
    fn map_if_free(
        &mut self,
        device: DeviceIndex,
        iova: u64,
        pa: u64,
        len: u64,
        rights: Rights,
    ) -> Result<(), MapRefused> {
        timed(Part::Map, || self.0.map_if_free(device, iova, pa, len, rights))
    }
    fn unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.0.unmap(device, ranges)
    }
    fn unmap_one(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.0.unmap_one(device, iova, len)
    }
    fn unmap_deferred(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        timed(Part::Unmap, || self.0.unmap_deferred(device, iova, len))
    }
    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        timed(Part::Sync, || self.0.sync_unmaps())
    }
    fn retry_unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.0.retry_unmap(device, ranges)
    }
}

/// The SMMU's registers, each access during a batch timed and counted.
#[derive(Debug)]
pub struct TimedMmio(pub MmioRegisters);

impl TimedMmio {
    fn access<T>(write: bool, f: impl FnOnce() -> T) -> T {
        let Some(c) = counts() else { return f() };
        let part = PART.load(Relaxed);
        let t0 = generic_timer::ticks();
        let r = f();
        let spent = generic_timer::ticks() - t0;
        add(&c.mmio_ticks[part], spent);
        if write {
            add(&c.write_ticks[part], spent);
        }
        add(if write { &c.writes[part] } else { &c.reads[part] }, 1);
        r
    }
}

impl Mmio for TimedMmio {
    fn read32(&self, offset: usize) -> u32 {
        Self::access(false, || self.0.read32(offset))
    }
    fn write32(&self, offset: usize, value: u32) {
        Self::access(true, || self.0.write32(offset, value))
    }
    fn read64(&self, offset: usize) -> u64 {
        Self::access(false, || self.0.read64(offset))
    }
    fn write64(&self, offset: usize, value: u64) {
        Self::access(true, || self.0.write64(offset, value))
    }
}

/// This CPU's cache maintenance, each clean during a batch counted.
pub struct CountedCache(pub smmuv3::ArmCacheOps);

impl CacheOps for CountedCache {
    fn clean(&self, va: NonNull<u8>, len: usize) {
        if let Some(c) = counts() {
            add(&c.cleans[PART.load(Relaxed)], 1);
        }
        self.0.clean(va, len)
    }
    fn invalidate(&self, va: NonNull<u8>, len: usize) {
        self.0.invalidate(va, len)
    }
}

/// What a clean (of one 8-byte entry: `DC CVAC` and `DSB SY`) and a timer read cost here,
/// each over 1024, for the report.
pub fn calibrate(cache: &CountedCache) {
    let line = [0u64; 8];
    let t0 = generic_timer::ticks();
    for _ in 0..1024 {
        cache.0.clean(NonNull::from(&line).cast(), 8);
    }
    let t1 = generic_timer::ticks();
    for _ in 0..1024 {
        core::hint::black_box(generic_timer::ticks());
    }
    let t2 = generic_timer::ticks();
    CLEAN_TICKS_1K.store(t1 - t0, Relaxed);
    TIMER_TICKS_1K.store(t2 - t1, Relaxed);
    debug_println!(
        "iommu: MEASUREMENT BUILD: the queue's batches broken down; a clean {} ns, a timer read {} ns (each over 1024)",
        ns(t1 - t0) / 1024,
        ns(t2 - t1) / 1024
    );
}

fn ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(generic_timer::hz().max(1))) as u64
}

/// Print each kind's breakdown, per batch (nanoseconds, counts).
pub fn report() {
    let clean_ns = ns(CLEAN_TICKS_1K.load(Relaxed)) / 1024;
    for (k, &(_, name)) in KINDS.iter().enumerate() {
        let c = &COUNTS[k];
        let b = c.batches.load(Relaxed);
        if b == 0 {
            continue;
        }
        let per = |a: &AtomicU64| a.load(Relaxed) as f64 / b as f64;
        let per_ns = |a: &AtomicU64| ns(a.load(Relaxed)) / b;
        let smmu: u64 = c.ticks.iter().map(|t| t.load(Relaxed)).sum();
        debug_println!(
            "iommu: MEASUREMENT: batches {name}: {b}, {:.1} entries each; per batch: the call's handling {} ns, the batch {} ns, of which the service's own (decode, checks, index, completions) {} ns",
            per(&c.entries),
            per_ns(&c.handler_ticks),
            per_ns(&c.serve_ticks),
            ns(c.serve_ticks.load(Relaxed).saturating_sub(smmu)) / b
        );
        for (p, part) in PART_NAMES.iter().enumerate() {
            let cleans = c.cleans[p].load(Relaxed);
            let (reads, writes) = (c.reads[p].load(Relaxed), c.writes[p].load(Relaxed));
            if c.calls[p].load(Relaxed) == 0 && cleans == 0 && reads + writes == 0 {
                continue;
            }
            debug_println!(
                "iommu: MEASUREMENT: batches {name}, {}: {:.2} calls {} ns; {:.1} cleans (about {} ns at {clean_ns} ns); {:.2} register reads and {:.2} writes, {} ns, of which the writes {} ns",
                part,
                per(&c.calls[p]),
                per_ns(&c.ticks[p]),
                per(&c.cleans[p]),
                cleans * clean_ns / b,
                reads as f64 / b as f64,
                writes as f64 / b as f64,
                per_ns(&c.mmio_ticks[p]),
                per_ns(&c.write_ticks[p])
            );
        }
    }
}
