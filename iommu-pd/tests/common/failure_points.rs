//! The mapping queue under every failure the IOMMU can answer (the iommufd selftests'
//! `fail_nth`), over any IOMMU the suite runs on: a fixed batch, whose UNMAPs free what
//! its MAPs then take (the highest mapping, so the allocator's next IOVA comes down; a
//! range a given IOVA lands on; the last of the quota), across two devices, is served
//! once per IOMMU call it makes with that call failing, then with every pair of
//! failures (the second anywhere after the first: the block a failed removal asks for, a
//! retry, another sync). After each: the service's audit holds (index, next IOVA,
//! usage), every page a device reaches (tried through the IOMMU, filling an SMMU's TLB
//! as DMA would) is one the books give it with the same page and rights, an UNMAP
//! answered `Ok` (and not mapped again after it) left no translation in the tables, in
//! a known cache or reachable, and a MAP answered `Ok` is in the books and the tables.
//! Then the owner's RESUMEs and UNMAPs recover every device, and nothing is left mapped,
//! cached or reachable.
//!
//! `sweep_calls` does the same to the batch's requests sent as calls, one by one (the
//! MAP call books its mapping before the IOMMU maps it, `Service::map_booked`): after
//! each, the same checks, and a MAP the IOMMU refused left the books as they were.

use std::collections::{BTreeMap, BTreeSet};

use iommu_pd::{DeviceIndex, HwError, IommuHw, MapRefused, Service};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};

use super::backend::{Pages, TestHw};
use super::queue::{completions, post, post_all, region};
use super::{call, config, storage, IOVA_BASE, NET, PAGE, REGIONS};

const NIC: u32 = 0;
const NIC2: u32 = 3;
/// The window pages the devices are tried at: every page the batch can map.
const TRIED: u64 = 24;

/// An IOMMU with its calls numbered `fail_at` (from 0, counting every kind) failing.
#[derive(Debug)]
pub struct FailNth<H> {
    pub inner: H,
    /// The IOMMU calls made so far.
    pub calls: usize,
    pub fail_at: Vec<usize>,
    /// The kinds of call that failed.
    pub failed: Vec<&'static str>,
}

impl<H: TestHw> FailNth<H> {
    /// `inner` with no call failing yet.
    pub fn new(inner: H) -> Self {
        FailNth { inner, calls: 0, fail_at: Vec::new(), failed: Vec::new() }
    }

    fn step(&mut self, what: &'static str) {
        if self.fail_at.contains(&self.calls) {
            self.inner.fail_next(Some(what));
            self.failed.push(what);
        }
        self.calls += 1;
    }
}

impl<H: TestHw> IommuHw for FailNth<H> {
    const CHECKS_RANGE_FREE: bool = H::CHECKS_RANGE_FREE;
    fn enable(&mut self, d: DeviceIndex) -> Result<(), HwError> {
        self.step("enable");
        self.inner.enable(d)
    }
    fn block(&mut self, d: DeviceIndex) -> Result<(), HwError> {
        self.step("block");
        self.inner.block(d)
    }
    fn map(&mut self, d: DeviceIndex, iova: u64, pa: u64, len: u64, r: Rights) -> Result<(), HwError> {
        self.step("map");
        self.inner.map(d, iova, pa, len, r)
    }
    fn map_if_free(&mut self, d: DeviceIndex, iova: u64, pa: u64, len: u64, r: Rights) -> Result<(), MapRefused> {
        self.step("map");
        self.inner.map_if_free(d, iova, pa, len, r)
    }
    fn unmap(&mut self, d: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.step("unmap");
        self.inner.unmap(d, ranges)
    }
    fn unmap_one(&mut self, d: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.step("unmap");
        self.inner.unmap_one(d, iova, len)
    }
    fn retry_unmap(&mut self, d: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.step("retry_unmap");
        self.inner.retry_unmap(d, ranges)
    }
    fn unmap_deferred(&mut self, d: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.step("unmap");
        self.inner.unmap_deferred(d, iova, len)
    }
    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        self.step("sync");
        self.inner.sync_unmaps()
    }
}

fn at(k: u64) -> u64 {
    IOVA_BASE + k * PAGE
}

fn map_req(device: u32, offset: u64, iova: Option<u64>) -> Request {
    Request::Map { cap: Handle(0), device: DeviceId(device), offset, len: PAGE, iova, rights: Rights::READ_WRITE }
}

fn unmap_req(device: u32, iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(device), iovas, count: 1 }
}

/// NET's devices after the calls before the batch: NIC at pages 0..6, NIC2 at 0..3
/// (nine of NET's sixteen mappings); NIC's page k maps buffer page k, NIC2's page k
/// buffer page 8 + k. Both devices have used every page (an SMMU caches them).
fn setup<H: TestHw>(hw: H, fail_at: &[usize]) -> Service<'static, FailNth<H>> {
    let mut s = Service::new(FailNth::new(hw), config(), storage()).unwrap();
    for k in 0..6 {
        assert_eq!(call(&mut s, NET, map_req(NIC, k * PAGE, Some(at(k)))), Reply::ok(&[at(k)]));
    }
    for k in 0..3 {
        assert_eq!(call(&mut s, NET, map_req(NIC2, (8 + k) * PAGE, Some(at(k)))), Reply::ok(&[at(k)]));
    }
    check_reach(&s, "setup");
    s.hw_mut().calls = 0;
    s.hw_mut().fail_at = fail_at.to_vec();
    s
}

/// The batch: removals freeing what the MAPs after them take, on both devices, up to
/// NET's quota of sixteen mappings.
fn script() -> Vec<Request> {
    vec![
        unmap_req(NIC, at(5)),
        // The allocator's next IOVA came down to page 5, whose removal is in flight.
        map_req(NIC, 15 * PAGE, None),
        unmap_req(NIC, at(0)),
        unmap_req(NIC2, at(1)),
        // Given, over NIC2's removal in flight.
        map_req(NIC2, 14 * PAGE, Some(at(1))),
        unmap_req(NIC, at(2)),
        unmap_req(NIC, at(2)),
        map_req(NIC, 13 * PAGE, Some(at(0))),
        map_req(NIC, 12 * PAGE, None),
        map_req(NIC2, 11 * PAGE, None),
        unmap_req(NIC2, at(0)),
        map_req(NIC, 7 * PAGE, None),
        map_req(NIC, 6 * PAGE, None),
        map_req(NIC, 5 * PAGE, None),
        map_req(NIC, 4 * PAGE, None),
        map_req(NIC, 3 * PAGE, None),
        map_req(NIC2, 2 * PAGE, None),
        // Over the quota unless something above failed.
        map_req(NIC2, PAGE, None),
        unmap_req(NIC, at(3)),
        map_req(NIC2, 0, None),
    ]
}

/// The books: every page each device is given, as (physical page, rights).
fn books<H: TestHw>(s: &Service<'_, FailNth<H>>) -> BTreeMap<usize, Pages> {
    let mut out: BTreeMap<usize, Pages> = BTreeMap::new();
    s.for_each_mapped_page(|d, iova, pa, r| {
        out.entry(d).or_default().insert(iova, (pa, r));
    });
    out
}

fn tried() -> BTreeSet<u64> {
    (0..TRIED).map(at).collect()
}

/// Every page each device reaches is in the books for it, with the same physical page
/// and rights; the service's own audit holds.
fn check_reach<H: TestHw>(s: &Service<'_, FailNth<H>>, what: &str) {
    s.audit().unwrap_or_else(|e| panic!("{what}: audit: {e}"));
    let books = books(s);
    for d in [NIC as usize, NIC2 as usize] {
        for (iova, entry) in s.hw().inner.reach(d, &tried()) {
            assert_eq!(
                books.get(&d).and_then(|p| p.get(&iova)),
                Some(&entry),
                "{what}: device {d} reaches {iova:#x} the books do not give it"
            );
        }
    }
}

/// Serve the batch with the calls `fail_at` failing, check every answer against what
/// the IOMMU holds, recover, and return the kinds of call that failed.
fn run<H: TestHw>(hw: H, fail_at: &[usize]) -> Vec<&'static str> {
    let reqs = script();
    let mut s = setup(hw, fail_at);
    let q = region();
    let unmaps = post_all(&q, &reqs);
    assert_eq!(s.serve_queue(NET, &q), reqs.len());
    // Failures inside the batch only: the recovery below must succeed.
    s.hw_mut().fail_at.clear();
    s.hw_mut().inner.fail_next(None);
    let failed = s.hw().failed.clone();
    let what = format!("calls {fail_at:?} ({failed:?}) failing");
    let done = completions(&q, &unmaps);
    assert_eq!(done.len(), reqs.len(), "{what}: a completion per entry");
    check_reach(&s, &what);
    let given = books(&s);
    for (i, (tag, reply)) in done.iter().enumerate() {
        assert_eq!(*tag, i as u64, "{what}: completions in order");
        match (reqs[i], reply) {
            (Request::Unmap { device, iovas, .. }, Reply::Ok { .. }) => {
                let (d, iova) = (device.0 as usize, iovas[0]);
                // Mapped again by a later entry: that one's translation, checked above.
                let again = (i + 1..reqs.len()).any(|j| {
                    matches!(reqs[j], Request::Map { device: dv, .. } if dv.0 as usize == d)
                        && done[j].1 == Reply::ok(&[iova])
                });
                if !again {
                    let page = BTreeSet::from([iova]);
                    assert!(
                        !s.hw().inner.translations(d).contains_key(&iova) && s.hw().inner.reach(d, &page).is_empty(),
                        "{what}: entry {i} UNMAP {iova:#x} answered Ok, a translation left"
                    );
                    assert!(
                        !given.get(&d).is_some_and(|p| p.contains_key(&iova)),
                        "{what}: entry {i} still in the books"
                    );
                }
            }
            (Request::Map { device, offset, .. }, Reply::Ok { values, .. }) => {
                let (d, iova) = (device.0 as usize, values[0]);
                let want = (REGIONS[0].pa + offset, Rights::READ_WRITE);
                assert_eq!(
                    given.get(&d).and_then(|p| p.get(&iova)),
                    Some(&want),
                    "{what}: entry {i} MAP not in the books"
                );
                assert_eq!(s.hw().inner.tables(d).get(&iova), Some(&want), "{what}: entry {i} MAP not in the tables");
            }
            (_, Reply::Err { .. }) => {}
            (r, reply) => panic!("{what}: entry {i} {r:?} answered {reply:?}"),
        }
    }
    // The owner recovers: RESUME retries what is pending on each device, then every
    // mapping goes. Nothing is left in the books, the tables, a known cache or reach.
    recover(&mut s, &what);
    for d in [NIC as usize, NIC2 as usize] {
        assert!(s.hw().inner.reach(d, &tried()).is_empty(), "{what}: device {d} reaches a page");
    }
    failed
}

/// The owner's RESUMEs of both devices and UNMAPs of every mapping the books hold all
/// answer `Ok`; after them the audit holds, no device keeps a translation or is left
/// blocked, and the usage is nothing.
fn recover<H: TestHw>(s: &mut Service<'static, FailNth<H>>, what: &str) {
    for d in [NIC, NIC2] {
        assert_eq!(call(s, NET, Request::Resume { device: DeviceId(d) }), Reply::ok(&[]), "{what}: RESUME {d}");
    }
    for (d, pages) in books(s) {
        for iova in pages.keys() {
            assert_eq!(call(s, NET, unmap_req(d as u32, *iova)), Reply::ok(&[]), "{what}: UNMAP {iova:#x}");
        }
    }
    check_reach(s, what);
    for d in [NIC as usize, NIC2 as usize] {
        assert!(s.hw().inner.translations(d).is_empty(), "{what}: device {d} keeps a translation");
        assert!(s.hw().inner.enabled(d), "{what}: device {d} not running again");
    }
    let Reply::Ok { values, .. } = call(s, NET, Request::Query) else { panic!() };
    assert_eq!((values[0], values[2]), (0, 0), "{what}: usage after everything went");
}

/// Every single failure point of the batch, then every pair; `hw` makes a fresh IOMMU.
pub fn sweep<H: TestHw>(hw: impl Fn() -> H) {
    // The clean run: how many IOMMU calls the batch makes, and what it answers.
    let reqs = script();
    let mut clean = setup(hw(), &[]);
    let q = region();
    for (tag, r) in reqs.iter().enumerate() {
        assert!(post(&q, tag as u64, *r));
    }
    assert_eq!(clean.serve_queue(NET, &q), reqs.len());
    let calls = clean.hw().calls;
    check_reach(&clean, "clean");
    // Clean, every entry but the repeated UNMAP succeeds.
    let clean_done = completions(&q, &[0, 2, 3, 5, 6, 10, 18]);
    let refused: Vec<usize> = (0..reqs.len()).filter(|&i| !matches!(clean_done[i].1, Reply::Ok { .. })).collect();
    assert_eq!(refused, [6]);
    assert!(calls > reqs.len(), "{calls} IOMMU calls for {} entries", reqs.len());
    drop(clean);
    each_failure_point_then_each_pair(
        calls,
        |fail_at| run(hw(), fail_at),
        &["map", "unmap", "sync"],
        200,
        &["map", "unmap", "sync", "block"],
    );
}

/// The batch's requests as calls, one by one, with the calls `fail_at` failing: after
/// each, the audit holds and every page a device reaches is the books'; a MAP answered
/// `Ok` is in the books and the tables, one refused left the books as they were (unless
/// a block retried before it, which may settle removals, failed again); an UNMAP answered
/// `Ok` left no translation of its page. Then the owner recovers as in `run`. Returns the
/// kinds of call that failed.
fn run_calls<H: TestHw>(hw: H, fail_at: &[usize]) -> Vec<&'static str> {
    let mut s = setup(hw, fail_at);
    for (i, req) in script().into_iter().enumerate() {
        let (before, retried) = (books(&s), s.unblocked_devices() != 0);
        let reply = call(&mut s, NET, req);
        let what = format!("calls {fail_at:?} ({:?} failing), request {i} {req:?} -> {reply:?}", s.hw().failed);
        check_reach(&s, &what);
        let given = books(&s);
        match (req, &reply) {
            (Request::Map { device, offset, .. }, Reply::Ok { values, .. }) => {
                let (d, iova) = (device.0 as usize, values[0]);
                let want = (REGIONS[0].pa + offset, Rights::READ_WRITE);
                assert_eq!(given.get(&d).and_then(|p| p.get(&iova)), Some(&want), "{what}: not in the books");
                assert_eq!(s.hw().inner.tables(d).get(&iova), Some(&want), "{what}: not in the tables");
            }
            (Request::Map { .. }, Reply::Err(_)) if !retried => {
                assert_eq!(given, before, "{what}: a refused MAP changed the books");
            }
            (Request::Unmap { device, iovas, .. }, Reply::Ok { .. }) => {
                let (d, page) = (device.0 as usize, BTreeSet::from([iovas[0]]));
                assert!(!given.get(&d).is_some_and(|p| p.contains_key(&iovas[0])), "{what}: still in the books");
                assert!(
                    !s.hw().inner.translations(d).contains_key(&iovas[0]) && s.hw().inner.reach(d, &page).is_empty(),
                    "{what}: a translation left"
                );
            }
            _ => {}
        }
    }
    s.hw_mut().fail_at.clear();
    s.hw_mut().inner.fail_next(None);
    let what = format!("calls {fail_at:?} ({:?} failing)", s.hw().failed);
    recover(&mut s, &what);
    s.hw().failed.clone()
}

/// `sweep` for the batch's requests sent as calls: every single failure point, then
/// every pair.
pub fn sweep_calls<H: TestHw>(hw: impl Fn() -> H) {
    let mut clean = setup(hw(), &[]);
    for req in script() {
        call(&mut clean, NET, req);
    }
    let calls = clean.hw().calls;
    check_reach(&clean, "clean");
    drop(clean);
    each_failure_point_then_each_pair(
        calls,
        |fail_at| run_calls(hw(), fail_at),
        &["map", "unmap"],
        100,
        &["map", "unmap", "block"],
    );
}

/// `run` (which returns the kinds of call that failed) once with each of the `calls`
/// IOMMU calls failing, each of which must fail, then with every pair (the second up to 6
/// calls past the clean run's last: the blocks and retries a failure adds). Every kind in
/// `first` failed alone; more than `min_pairs` runs saw both failures, and every kind in
/// `second` failed second in one.
pub fn each_failure_point_then_each_pair(
    calls: usize,
    run: impl Fn(&[usize]) -> Vec<&'static str>,
    first: &[&str],
    min_pairs: usize,
    second: &[&str],
) {
    let mut kinds = BTreeSet::new();
    for n in 0..calls {
        let failed = run(&[n]);
        assert_eq!(failed.len(), 1, "call {n} did not fail");
        kinds.extend(failed);
    }
    for kind in first {
        assert!(kinds.contains(kind), "no {kind} failed: {kinds:?}");
    }
    let (mut runs, mut failed_second) = (0, BTreeSet::new());
    for n in 0..calls {
        for m in n + 1..calls + 7 {
            let failed = run(&[n, m]);
            if failed.len() == 2 {
                runs += 1;
                failed_second.insert(failed[1]);
            }
        }
    }
    assert!(runs > min_pairs, "{runs} runs with both failures");
    for kind in second {
        assert!(failed_second.contains(kind), "no {kind} failed second: {failed_second:?}");
    }
}
