//! The mapping queue: a batch answers each entry as the same calls in the same order
//! would, confirms its unmaps with one sync before any completion is posted, keeps a
//! failed confirmation pending (nothing stale reachable), refuses malformed entries
//! without changing anything, and takes a bounded number of entries per wake-up.

mod common;

use std::sync::atomic::Ordering;

use common::backend::{RangeChecked, TestHw};
use common::queue::*;
use common::random::Rng;
use common::*;
use iommu_pd::{DeviceIndex, HwError, IommuHw, Service};
use iommu_protocol::queue::{Header, Queue, QUEUE_BATCH};
use iommu_protocol::{query, DeviceId, ErrorCode, Handle, Op, Reply, Request, Rights, MAX_UNMAP_RANGES};

const NIC: u32 = 0;
const DISK: u32 = 1;
const NIC2: u32 = 3;

fn map_req(cap: u32, device: u32, offset: u64, iova: Option<u64>) -> Request {
    Request::Map { cap: Handle(cap), device: DeviceId(device), offset, len: PAGE, iova, rights: Rights::READ_WRITE }
}

fn unmap_req(device: u32, iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(device), iovas, count: 1 }
}

/// Post `reqs` (tags 0, 1, ...), serve one batch, return the completions.
/// One sync, unless an entry lands on a removal still in flight (or needs what one holds):
/// the removals so far are confirmed before it, so a batch alternating an UNMAP and a MAP
/// back over its IOVA takes a sync per UNMAP, 32 in 64 entries. No more than that however
/// the entries are arranged: each confirmation takes at least one removal in flight.
#[test]
fn a_batch_syncs_at_most_once_per_unmap_among_its_entries() {
    let mut s = service();
    let q = region();
    assert_eq!(call(&mut s, NET, map_req(0, NIC, 0, Some(IOVA_BASE))), Reply::ok(&[IOVA_BASE]));
    let back_and_forth = [unmap_req(NIC, IOVA_BASE), map_req(0, NIC, 0, Some(IOVA_BASE))];
    let reqs: Vec<Request> = (0..QUEUE_BATCH / 2).flat_map(|_| back_and_forth).collect();
    let before = s.hw().syncs;
    let replies = batch(&mut s, NET, &q, &reqs);
    assert!(replies.iter().all(|r| matches!(r, Reply::Ok { .. })), "{replies:?}");
    assert_eq!(s.hw().syncs - before, QUEUE_BATCH / 2);
}

fn batch<H: IommuHw>(s: &mut Service<'_, H>, client: usize, q: &Queue<'_>, reqs: &[Request]) -> Vec<Reply> {
    let unmaps = post_all(q, reqs);
    assert_eq!(s.serve_queue(client, q), reqs.len());
    let done = completions(q, &unmaps);
    assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), (0..reqs.len() as u64).collect::<Vec<_>>());
    done.into_iter().map(|d| d.1).collect()
}

fn query<H: IommuHw>(s: &mut Service<'_, H>, client: usize) -> Reply {
    call(s, client, Request::Query)
}

/// The same random requests as batches to one service and as calls to its twin: every
/// reply the same, and after every batch the same mappings, the same quotas, the same
/// IOMMU tables. IOVAs are given (a service's own choice of IOVA is its to make, and
/// may differ while a removal is in flight).
#[test]
fn a_batch_answers_every_entry_as_the_calls_would() {
    twin(service);
}

/// The same, the batches served on a backend that checks a MAP's range itself (as the
/// SMMUv3 backend does, so the service does not search its index), the calls on one that
/// does not: the driver's check answers every entry as the service's own would.
#[test]
fn a_batch_on_a_range_checking_iommu_answers_as_the_calls_would() {
    twin(|| Service::new(RangeChecked::default(), config(), storage()).unwrap());
}

/// Random batches to `queued()` and the same requests as calls to `service()`.
fn twin<H: TestHw>(make: impl Fn() -> Service<'static, H>) {
    let (mut entries, mut maps, mut unmaps) = (0, 0, 0);
    for seed in 0..40u64 {
        let (mut queued, mut called) = (make(), service());
        let qs = [region(), region(), region()];
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        for _ in 0..60 {
            let client = rng.pick(&[NET, NET, BLK, BLK, EVIL]);
            let n = 1 + rng.below(24) as usize;
            let reqs: Vec<Request> = (0..n)
                .map(|_| {
                    // Mostly plausible: the client's own handle and device.
                    let own = [[NIC, NIC2], [DISK, DISK], [2, 2]][client];
                    let device = if rng.below(4) > 0 { rng.pick(&own) } else { rng.pick(&[NIC, DISK, NIC2, 2, 9]) };
                    let handle = if rng.below(4) > 0 { 0 } else { rng.below(3) as u32 };
                    let iova = IOVA_BASE + rng.below(20) * PAGE;
                    match rng.below(8) {
                        0..=3 => map_req(handle, device, rng.below(17) * PAGE, Some(iova)),
                        4..=6 => unmap_req(device, iova),
                        _ => Request::Map {
                            cap: Handle(rng.below(3) as u32),
                            device: DeviceId(device),
                            offset: rng.pick(&[0x800, 0, u64::MAX - 0xfff]),
                            len: rng.pick(&[PAGE, 0, 0x20_0000, 3 * PAGE]),
                            iova: rng.pick(&[None, Some(iova), Some(u64::MAX - 0xfff)]),
                            rights: rng.pick(&[Rights::READ, Rights::WRITE, Rights::READ_WRITE]),
                        },
                    }
                })
                .collect();
            let got = batch(&mut queued, client, &qs[client], &reqs);
            for (i, r) in reqs.iter().enumerate() {
                assert_eq!(got[i], call(&mut called, client, *r), "seed {seed}: entry {i} {r:?}");
                match (r, got[i]) {
                    (Request::Map { .. }, Reply::Ok { .. }) => maps += 1,
                    (Request::Unmap { .. }, Reply::Ok { .. }) => unmaps += 1,
                    _ => {}
                }
            }
            entries += n;
            assert_eq!(reference::pages(&queued), reference::pages(&called), "seed {seed}");
            for c in 0..3 {
                assert_eq!(query(&mut queued, c), query(&mut called, c), "seed {seed}");
            }
            for d in 0..DEVICES.len() {
                assert_eq!(queued.hw().translations(d), called.hw().translations(d), "seed {seed}");
            }
            queued.audit().unwrap();
        }
    }
    // Enough of each succeeded for the comparison to mean something.
    assert!(entries > 10_000 && maps > 1_000 && unmaps > 1_000, "{entries} entries, {maps} maps, {unmaps} unmaps");
}

/// Records, at each sync, how many completions the client could see then.
#[derive(Debug)]
struct Watched {
    inner: ModelHw,
    header: &'static Header,
    tails_at_sync: Vec<u32>,
}

impl IommuHw for Watched {
    fn enable(&mut self, d: DeviceIndex) -> Result<(), HwError> {
        self.inner.enable(d)
    }
    fn block(&mut self, d: DeviceIndex) -> Result<(), HwError> {
        self.inner.block(d)
    }
    fn map(&mut self, d: DeviceIndex, iova: u64, pa: u64, len: u64, r: Rights) -> Result<(), HwError> {
        self.inner.map(d, iova, pa, len, r)
    }
    fn unmap(&mut self, d: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.inner.unmap(d, ranges)
    }
    fn retry_unmap(&mut self, d: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        self.inner.retry_unmap(d, ranges)
    }
    fn unmap_deferred(&mut self, d: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.inner.unmap_deferred(d, iova, len)
    }
    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        self.tails_at_sync.push(self.header.completion_tail.load(Ordering::Acquire));
        self.inner.sync_unmaps()
    }
}

/// Sixteen requests' worth of UNMAP (the last request's buffer) and MAP (the next one's):
/// one sync for the batch, and no completion visible before it.
#[test]
fn one_sync_confirms_a_batch_and_no_completion_is_posted_before_it() {
    let region = Box::leak(Box::<iommu_protocol::queue::OwnedQueue<64>>::default());
    let q = region.queue().unwrap();
    let hw = Watched { inner: ModelHw::default(), header: region.header(), tails_at_sync: Vec::new() };
    let mut s = Service::new(hw, config(), storage()).unwrap();
    let mut live = Vec::new();
    for i in 0..8 {
        let r = call_on(&mut s, NET, map_req(0, NIC, i * PAGE, Some(IOVA_BASE + i * PAGE)));
        assert_eq!(r, Reply::ok(&[IOVA_BASE + i * PAGE]));
        live.push(IOVA_BASE + i * PAGE);
    }
    for round in 0..4u64 {
        let before = s.hw().tails_at_sync.len();
        let mut unmaps = Vec::new();
        for (k, &old) in live.iter().enumerate() {
            let new = IOVA_BASE + (round + 1) * 0x1_0000 + k as u64 * PAGE;
            assert!(post(&q, 2 * k as u64, unmap_req(NIC, old)));
            assert!(post(&q, 2 * k as u64 + 1, map_req(0, NIC, k as u64 * PAGE, Some(new))));
            unmaps.push(2 * k as u64);
        }
        let tail = region.header().completion_tail.load(Ordering::Acquire);
        assert_eq!(s.serve_queue(NET, &q), 16);
        assert_eq!(s.hw().tails_at_sync[before..], [tail], "one sync, before any completion");
        let done = completions(&q, &unmaps);
        for (k, old) in live.iter_mut().enumerate() {
            let new = IOVA_BASE + (round + 1) * 0x1_0000 + k as u64 * PAGE;
            assert_eq!(done[2 * k], (2 * k as u64, Reply::ok(&[])));
            assert_eq!(done[2 * k + 1], (2 * k as u64 + 1, Reply::ok(&[new])));
            assert!(!s.hw().inner.translations(0).contains_key(old), "{old:#x} still translates after Ok");
            assert_eq!(
                s.hw().inner.reachable(0).get(&new),
                Some(&(REGIONS[0].pa + k as u64 * PAGE, Rights::READ_WRITE))
            );
            *old = new;
        }
    }
}

fn call_on<H: IommuHw>(s: &mut Service<'_, H>, client: usize, req: Request) -> Reply {
    let mut mrs = [0; iommu_protocol::MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(client, label, &mrs[..n])
}

/// A client at its mapping quota removes one buffer and maps the next in one batch: the
/// calls would both succeed, so the batch does, by confirming the removal first.
#[test]
fn a_removal_in_flight_is_confirmed_before_an_entry_that_needs_what_it_frees() {
    let mut s = service();
    let q = region();
    for i in 0..16 {
        assert_eq!(
            map(&mut s, NET, 0, NIC, i * PAGE, PAGE, Some(IOVA_BASE + i * PAGE), Rights::READ),
            Reply::ok(&[IOVA_BASE + i * PAGE])
        );
    }
    let got = batch(&mut s, NET, &q, &[unmap_req(NIC, IOVA_BASE), map_req(0, NIC, 0, None)]);
    assert_eq!(got[0], Reply::ok(&[]));
    assert!(matches!(got[1], Reply::Ok { .. }), "{:?}", got[1]);
    // And the same IOVA, unmapped then mapped again: never mapped over before confirmed
    // (the model IOMMU panics at that).
    let got =
        batch(&mut s, NET, &q, &[unmap_req(NIC, IOVA_BASE + PAGE), map_req(0, NIC, PAGE, Some(IOVA_BASE + PAGE))]);
    assert_eq!(got, [Reply::ok(&[]), Reply::ok(&[IOVA_BASE + PAGE])]);
    // One sync a batch, ahead of the map that needed it: nothing is left for the end.
    assert_eq!(s.hw().syncs, 2);
}

/// A removal leaves its device's index at once, so the entries after it find its range
/// free, as they would after the call: a MAP there (asked for, or chosen by the allocator,
/// which fills from the top) is answered as its call would be, after the batch's sync, and
/// never mapped over before it (the model IOMMU panics at that). When that sync fails, the
/// removal answers `Hardware` and is pending again, in the books, and the MAP answers
/// `RemovalPending`, as the calls in that order would.
#[test]
fn a_map_over_a_removal_in_flight_waits_for_its_sync_and_answers_as_its_call() {
    let mut s = service();
    let q = region();
    for i in 0..3 {
        assert_eq!(
            map(&mut s, NET, 0, NIC, i * PAGE, PAGE, Some(IOVA_BASE + i * PAGE), Rights::READ_WRITE),
            Reply::ok(&[IOVA_BASE + i * PAGE])
        );
    }
    // The highest mapping out, then a MAP the allocator places: where it was.
    let top = IOVA_BASE + 2 * PAGE;
    let got = batch(&mut s, NET, &q, &[unmap_req(NIC, top), map_req(0, NIC, 7 * PAGE, None)]);
    assert_eq!(got, [Reply::ok(&[]), Reply::ok(&[top])]);
    assert_eq!(s.hw().syncs, 1);
    assert_eq!(s.hw().translations(0).get(&top).map(|t| t.0), Some(0x4000_0000 + 7 * PAGE));
    // The same with the sync failing: as the calls would answer.
    s.hw_mut().fail_next = Some("sync");
    let got = batch(&mut s, NET, &q, &[unmap_req(NIC, IOVA_BASE), map_req(0, NIC, 9 * PAGE, Some(IOVA_BASE))]);
    assert_eq!(got, [err(ErrorCode::Hardware), err(ErrorCode::RemovalPending)]);
    assert_eq!(s.pending_removals(NET), 1);
    assert!(s.hw().reachable(0).is_empty(), "blocked, with a translation it may still cache");
    s.audit().unwrap();
    // Retried when asked again, then the MAP goes through.
    let got = batch(&mut s, NET, &q, &[unmap_req(NIC, IOVA_BASE), map_req(0, NIC, 9 * PAGE, Some(IOVA_BASE))]);
    assert_eq!(got, [Reply::ok(&[]), Reply::ok(&[IOVA_BASE])]);
    assert_eq!(s.hw().reachable(0).get(&IOVA_BASE).map(|t| t.0), Some(0x4000_0000 + 9 * PAGE));
    s.audit().unwrap();
}

/// The sync that would confirm a batch's unmaps fails: every unmap of the batch answers
/// `Hardware` and stays pending, its device blocked, nothing it held reachable; a MAP of
/// the batch stands, as its call would. RESUME retries, and then all is confirmed.
#[test]
fn a_failed_sync_leaves_every_unmap_of_its_batch_pending() {
    let mut s = service();
    let q = region();
    for (d, i) in [(NIC, 0), (NIC, 1), (NIC2, 2)] {
        assert!(matches!(
            map(&mut s, NET, 0, d, i * PAGE, PAGE, Some(IOVA_BASE + i * PAGE), Rights::READ_WRITE),
            Reply::Ok { .. }
        ));
    }
    s.hw_mut().fail_next = Some("sync");
    let got = batch(
        &mut s,
        NET,
        &q,
        &[
            unmap_req(NIC, IOVA_BASE),
            map_req(0, NIC, 5 * PAGE, Some(IOVA_BASE + 5 * PAGE)),
            unmap_req(NIC, IOVA_BASE + PAGE),
            unmap_req(NIC2, IOVA_BASE + 2 * PAGE),
        ],
    );
    assert_eq!(
        got,
        [
            err(ErrorCode::Hardware),
            Reply::ok(&[IOVA_BASE + 5 * PAGE]),
            err(ErrorCode::Hardware),
            err(ErrorCode::Hardware)
        ]
    );
    let Reply::Ok { values, .. } = query(&mut s, NET) else { panic!() };
    assert_eq!((values[query::MAPPINGS], values[query::REMOVALS_PENDING]), (4, 3));
    // Cached still, but blocked: nothing reachable.
    assert!(s.hw().translations(0).contains_key(&IOVA_BASE));
    assert!(s.hw().reachable(0).is_empty() && s.hw().reachable(3).is_empty());
    assert_eq!(map(&mut s, NET, 0, NIC, 0, PAGE, None, Rights::READ), err(ErrorCode::RemovalPending));
    // A queued UNMAP of a pending mapping takes the call's way: retried, confirmed.
    assert_eq!(batch(&mut s, NET, &q, &[unmap_req(NIC, IOVA_BASE)]), [Reply::ok(&[])]);
    assert!(
        !s.hw().translations(0).contains_key(&IOVA_BASE) && !s.hw().translations(0).contains_key(&(IOVA_BASE + PAGE))
    );
    assert_eq!(call(&mut s, NET, Request::Resume { device: DeviceId(NIC2) }), Reply::ok(&[]));
    assert!(s.hw().translations(3).is_empty());
    let Reply::Ok { values, .. } = query(&mut s, NET) else { panic!() };
    assert_eq!((values[query::MAPPINGS], values[query::REMOVALS_PENDING]), (1, 0));
    assert_eq!(s.hw().reachable(0).keys().copied().collect::<Vec<_>>(), [IOVA_BASE + 5 * PAGE]);
}

/// One deferred unmap fails outright: that entry answers `Hardware`, the device is
/// blocked, and the next UNMAP of the batch for that device retries it first, as the call
/// would; the entries answered `Ok` left nothing behind.
#[test]
fn an_unmap_that_fails_in_the_middle_of_a_batch_fails_alone() {
    let mut s = service();
    let q = region();
    for i in 0..4 {
        map(&mut s, BLK, 0, DISK, i * PAGE, PAGE, Some(IOVA_BASE + i * PAGE), Rights::READ_WRITE);
    }
    s.hw_mut().fail_then = vec!["unmap"];
    s.hw_mut().fail_next = None;
    let reqs = [
        unmap_req(DISK, IOVA_BASE),
        unmap_req(DISK, IOVA_BASE + PAGE),
        unmap_req(DISK, IOVA_BASE + 2 * PAGE),
        map_req(0, DISK, 0, Some(IOVA_BASE + 8 * PAGE)),
    ];
    let got = batch(&mut s, BLK, &q, &reqs);
    assert_eq!(got, [err(ErrorCode::Hardware), Reply::ok(&[]), Reply::ok(&[]), Reply::ok(&[IOVA_BASE + 8 * PAGE])]);
    let held = s.hw().translations(1);
    for iova in [IOVA_BASE, IOVA_BASE + PAGE, IOVA_BASE + 2 * PAGE] {
        assert!(!held.contains_key(&iova), "{iova:#x}");
    }
    assert_eq!(s.pending_removals(BLK), 0);
    assert_eq!(s.hw().reachable(1).keys().copied().collect::<Vec<_>>(), [IOVA_BASE + 3 * PAGE, IOVA_BASE + 8 * PAGE]);
}

/// Malformed and hostile entries: each answered with its error, in order, and nothing
/// changes.
/// A batch keeps what its last MAP's capability and device checks found only for entries
/// that name the same handle and device: the same handle for a device its capability does
/// not cover, or another handle, is checked afresh, and every entry answers as its call.
#[test]
fn a_batch_checks_each_handle_and_device_pair_afresh() {
    let (mut queued, mut called) = (service(), service());
    let q = region();
    let at = |i: u64| Some(IOVA_BASE + i * PAGE);
    let read = |cap, device, offset, iova| Request::Map {
        cap: Handle(cap),
        device: DeviceId(device),
        offset,
        len: PAGE,
        iova,
        rights: Rights::READ,
    };
    // Handle 0: read-write, NIC and NIC2. Handle 1: read-only, NIC only.
    let reqs = [
        map_req(0, NIC, 0, at(0)),
        read(1, NIC2, 0, at(1)),
        map_req(0, NIC2, PAGE, at(0)),
        map_req(1, NIC, 0, at(2)),
        read(1, NIC, 0, at(2)),
        read(1, NIC2, 0, at(3)),
        map_req(0, DISK, 0, at(4)),
        map_req(7, NIC, 0, at(4)),
        map_req(0, NIC, 2 * PAGE, at(4)),
    ];
    let got = batch(&mut queued, NET, &q, &reqs);
    let want: Vec<Reply> = reqs.iter().map(|r| call(&mut called, NET, *r)).collect();
    assert_eq!(got, want);
    let ok = |iova: u64| Reply::ok(&[iova]);
    let expected = [
        ok(IOVA_BASE),
        err(ErrorCode::BadDevice),
        ok(IOVA_BASE),
        err(ErrorCode::NoRights),
        ok(IOVA_BASE + 2 * PAGE),
        err(ErrorCode::BadDevice),
        err(ErrorCode::BadDevice),
        err(ErrorCode::BadHandle),
        ok(IOVA_BASE + 4 * PAGE),
    ];
    assert_eq!(got, expected);
    assert_eq!(reference::pages(&queued), reference::pages(&called));
    for d in 0..DEVICES.len() {
        assert_eq!(queued.hw().translations(d), called.hw().translations(d));
    }
    queued.audit().unwrap();
}

/// What a batch keeps of a MAP's handle and device lasts that batch only: a REVOKE of
/// the grant, or a STOP of the device, between two batches is seen by the next one's
/// first entry naming the same pair, and what the revoked grant mapped is gone.
#[test]
fn a_revoke_or_a_stop_between_batches_is_seen_by_the_next_batch() {
    let mut s = service();
    let (q_net, q_blk) = (region(), region());
    let lend = Request::Grant {
        cap: Handle(0),
        to: iommu_protocol::ClientId(BLK as u32),
        offset: 0,
        len: 2 * PAGE,
        rights: Rights::READ_WRITE,
        devices: 1 << DISK,
    };
    let Reply::Ok { values, .. } = call(&mut s, NET, lend) else { panic!("grant refused") };
    let (grant, theirs) = (values[0] as u32, values[1] as u32);
    let at = |k: u64| Some(IOVA_BASE + k * PAGE);
    let got = batch(&mut s, BLK, &q_blk, &[map_req(theirs, DISK, 0, at(0)), map_req(theirs, DISK, PAGE, at(1))]);
    assert_eq!(got, [Reply::ok(&[IOVA_BASE]), Reply::ok(&[IOVA_BASE + PAGE])]);
    assert_eq!(s.hw().reachable(DISK as usize).len(), 2);
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(grant) }), Reply::ok(&[]));
    // The same pair, then the disk's own buffers: refused, then mapped.
    let got = batch(&mut s, BLK, &q_blk, &[map_req(theirs, DISK, 0, at(2)), map_req(0, DISK, 0, at(3))]);
    assert_eq!(got, [err(ErrorCode::BadHandle), Reply::ok(&[IOVA_BASE + 3 * PAGE])]);
    let reach: Vec<u64> = s.hw().translations(DISK as usize).keys().copied().collect();
    assert_eq!(reach, [IOVA_BASE + 3 * PAGE], "only the disk's own page after the revoke");
    // STOP between two batches that name the same handle and device.
    assert_eq!(batch(&mut s, NET, &q_net, &[map_req(0, NIC, 0, at(0))]), [Reply::ok(&[IOVA_BASE])]);
    assert!(matches!(call(&mut s, NET, Request::Stop { device: DeviceId(NIC) }), Reply::Ok { .. }));
    let got = batch(&mut s, NET, &q_net, &[map_req(0, NIC, 0, at(0)), map_req(0, NIC2, 0, at(0))]);
    assert_eq!(got, [err(ErrorCode::Stopped), Reply::ok(&[IOVA_BASE])]);
    assert!(s.hw().translations(NIC as usize).is_empty(), "the stopped NIC keeps nothing");
    s.audit().unwrap();
}

/// Inside one batch, a failed sync blocks a device whose handle and device the batch
/// has looked up already: the MAPs after it that name the same pair are refused
/// (`RemovalPending`), as their calls would be, though the lookup is not made again.
#[test]
fn a_device_blocked_inside_a_batch_refuses_the_maps_that_name_it_after() {
    let mut s = service();
    let q = region();
    let at = |k: u64| Some(IOVA_BASE + k * PAGE);
    assert_eq!(map(&mut s, NET, 0, NIC, 0, PAGE, at(0), Rights::READ_WRITE), Reply::ok(&[IOVA_BASE]));
    s.hw_mut().fail_next = Some("sync");
    let got = batch(
        &mut s,
        NET,
        &q,
        &[
            map_req(0, NIC, PAGE, at(1)),
            unmap_req(NIC, IOVA_BASE),
            // Over the removal in flight: its sync, which fails, comes first.
            map_req(0, NIC, 2 * PAGE, at(0)),
            map_req(0, NIC, 3 * PAGE, at(2)),
            map_req(0, NIC2, 3 * PAGE, at(2)),
        ],
    );
    assert_eq!(
        got,
        [
            Reply::ok(&[IOVA_BASE + PAGE]),
            err(ErrorCode::Hardware),
            err(ErrorCode::RemovalPending),
            err(ErrorCode::RemovalPending),
            Reply::ok(&[IOVA_BASE + 2 * PAGE]),
        ]
    );
    assert!(s.hw().reachable(NIC as usize).is_empty(), "the NIC is blocked");
    let nic: Vec<u64> = s.hw().pages.get(&(NIC as usize)).map(|p| p.keys().copied().collect()).unwrap_or_default();
    assert_eq!(nic, [IOVA_BASE + PAGE], "nothing mapped for the NIC after its block");
    s.audit().unwrap();
}

/// A static mapping, the device's highest, against a batch: its UNMAP is refused
/// (`Denied`) without bringing the allocator's next IOVA down, so the MAP after it is
/// placed above it; a MAP at its IOVA is an overlap; a STOP takes it and RESUME makes it
/// again, the next IOVA following both; usage counts it throughout.
#[test]
fn a_batch_cannot_unmap_or_map_over_a_static_mapping() {
    let cfg = iommu_pd::Config { static_maps: &STATIC_MAPS, ..config() };
    let mut s = Service::new(ModelHw::default(), cfg, storage()).unwrap();
    let q = region();
    let fixed = STATIC_MAPS[0].iova;
    let above = fixed + STATIC_MAPS[0].len;
    let got = batch(
        &mut s,
        NET,
        &q,
        &[
            unmap_req(NIC, fixed),
            map_req(0, NIC, 0, None),
            map_req(0, NIC, PAGE, Some(fixed + PAGE)),
            unmap_req(NIC, above),
            map_req(0, NIC, 2 * PAGE, None),
        ],
    );
    assert_eq!(
        got,
        [err(ErrorCode::Denied), Reply::ok(&[above]), err(ErrorCode::Overlap), Reply::ok(&[]), Reply::ok(&[above])]
    );
    let Reply::Ok { values, .. } = query(&mut s, NET) else { panic!() };
    assert_eq!((values[query::MAPPINGS], values[2]), (2, 3), "the static mapping and one page");
    let nic = s.hw().translations(NIC as usize);
    assert_eq!(nic.get(&fixed).map(|e| e.0), Some(REGIONS[0].pa + STATIC_MAPS[0].offset), "the static page");
    assert_eq!(nic.get(&above).map(|e| e.0), Some(REGIONS[0].pa + 2 * PAGE));
    s.audit().unwrap();
    // STOP takes both; RESUME makes the static one again; the allocator starts above it.
    assert!(matches!(call(&mut s, NET, Request::Stop { device: DeviceId(NIC) }), Reply::Ok { .. }));
    s.audit().unwrap();
    assert_eq!(call(&mut s, NET, Request::Resume { device: DeviceId(NIC) }), Reply::ok(&[]));
    assert_eq!(batch(&mut s, NET, &q, &[map_req(0, NIC, 0, None)]), [Reply::ok(&[above])]);
    let Reply::Ok { values, .. } = query(&mut s, NET) else { panic!() };
    assert_eq!((values[query::MAPPINGS], values[2]), (2, 3));
    s.audit().unwrap();
}

#[test]
fn malformed_entries_get_an_error_and_change_nothing() {
    let mut s = service();
    let q = region();
    map(&mut s, NET, 0, NIC, 0, PAGE, Some(IOVA_BASE), Rights::READ_WRITE);
    let (map_l, unmap_l) = (Op::Map as u64, Op::Unmap as u64);
    let rw = 3 << 24;
    let entries: [(u64, [u64; 4], ErrorCode); 13] = [
        (Op::Grant as u64, [0, 0, PAGE, 3], ErrorCode::UnknownOp),
        (Op::Query as u64, [0; 4], ErrorCode::UnknownOp),
        (0, [0; 4], ErrorCode::UnknownOp),
        (99, [0; 4], ErrorCode::UnknownOp),
        (unmap_l, [0, 2, IOVA_BASE, IOVA_BASE], ErrorCode::Malformed),
        (unmap_l, [0, 0, IOVA_BASE, 0], ErrorCode::Malformed),
        (unmap_l, [0, 9, IOVA_BASE, 0], ErrorCode::Truncated),
        (unmap_l, [1 << 40, 1, IOVA_BASE, 0], ErrorCode::Malformed),
        (unmap_l, [1, 1, IOVA_BASE, 0], ErrorCode::BadDevice),
        (map_l, [4 << 24, 0, PAGE, u64::MAX], ErrorCode::Malformed),
        (map_l, [rw | 77, 0, PAGE, u64::MAX], ErrorCode::BadHandle),
        (map_l, [rw | 1 << 32, 0, PAGE, u64::MAX], ErrorCode::BadDevice),
        (map_l, [rw, 0, PAGE, IOVA_BASE], ErrorCode::Overlap),
    ];
    let before = reference::before(&s);
    let books = reference::pages(&s);
    let refused = s.stats().refused;
    for (tag, (label, mrs, _)) in entries.iter().enumerate() {
        assert!(post_raw(&q, 100 + tag as u64, *label, *mrs));
    }
    assert_eq!(s.serve_queue(NET, &q), entries.len());
    let done = completions(&q, &[]);
    for (i, (tag, reply)) in done.iter().enumerate() {
        assert_eq!((*tag, *reply), (100 + i as u64, err(entries[i].2)), "entry {i}");
    }
    assert_eq!(reference::before(&s), before);
    assert_eq!(reference::pages(&s), books);
    assert_eq!(s.stats().refused, refused + entries.len() as u64);
    assert_eq!(query(&mut s, NET), Reply::ok(&[1, 16, 1, 64, 0, 0, 0, 0, 4]));
}

/// A client floods its queue: each wake-up takes at most `QUEUE_BATCH` of it, so another
/// client's call waits for one batch at most; a client that reads no completions stops
/// being served once its completion ring is full.
#[test]
fn a_flood_is_taken_a_batch_per_wake_up() {
    let mut s = service();
    let q = region();
    let mut unmaps = Vec::new();
    for k in 0..SLOTS as u64 {
        let iova = IOVA_BASE + (k / 2 % 8) * PAGE;
        let r = if k % 2 == 0 { map_req(0, DISK, 0, Some(iova)) } else { unmap_req(DISK, iova) };
        if k % 2 == 1 {
            unmaps.push(k);
        }
        assert!(post(&q, k, r));
    }
    assert!(!post(&q, 999, unmap_req(DISK, IOVA_BASE)), "the ring is full");
    let mut wakeups = 0;
    loop {
        let taken = s.serve_queue(BLK, &q);
        if taken == 0 {
            break;
        }
        assert!(taken <= QUEUE_BATCH);
        wakeups += 1;
        // Between two batches the victim's calls are served, on a consistent state.
        let victim = map(&mut s, NET, 0, NIC, 0, PAGE, None, Rights::READ);
        let Reply::Ok { values, .. } = victim else { panic!("{victim:?}") };
        assert_eq!(unmap(&mut s, NET, NIC, &[values[0]]), Reply::ok(&[]));
        s.audit().unwrap();
    }
    assert_eq!(wakeups, SLOTS / QUEUE_BATCH);
    assert_eq!(q.unserved(), 0);
    let done = completions(&q, &unmaps);
    assert_eq!(done.len(), SLOTS);
    assert!(done.iter().all(|(_, r)| matches!(r, Reply::Ok { .. })), "{done:?}");
    // Completions unread: nothing more is taken, however much is posted.
    for k in 0..SLOTS as u64 {
        assert!(post(&q, k, map_req(0, DISK, 0, Some(IOVA_BASE + k * PAGE))));
    }
    while s.serve_queue(BLK, &q) > 0 {}
    assert_eq!(q.unserved(), 0);
    assert!(post(&q, 7, unmap_req(DISK, IOVA_BASE)));
    assert_eq!(s.serve_queue(BLK, &q), 0, "the completion ring is full");
    assert_eq!(completions(&q, &[]).len(), SLOTS);
    assert_eq!(s.serve_queue(BLK, &q), 1);
}

/// A crashed client's queue starts over: what it posted before is not served to the
/// restarted one.
#[test]
fn a_restarted_client_starts_its_queue_from_the_beginning() {
    let mut s = service();
    let q = region();
    assert_eq!(batch(&mut s, BLK, &q, &[map_req(0, DISK, 0, Some(IOVA_BASE))]), [Reply::ok(&[IOVA_BASE])]);
    assert_ne!(s.queue_cursor(BLK), Default::default());
    s.client_torn_down(BLK).unwrap();
    assert_eq!(s.queue_cursor(BLK), Default::default());
}

/// A client that dies with entries posted and not taken (and a wake-up still pending for
/// them) must not have them served once it is restarted: the PD shell publishes the
/// cursor over the whole header (`Queue::reset`), the dead client's indices too, so the
/// wake-up finds nothing before the new client's init has even run, and its device, which
/// translates again, reaches nothing the new client did not map.
#[test]
fn what_a_dead_client_posted_is_not_served_after_its_restart() {
    let mut s = service();
    let q = region();
    assert_eq!(batch(&mut s, BLK, &q, &[map_req(0, DISK, 0, Some(IOVA_BASE))]), [Reply::ok(&[IOVA_BASE])]);
    for k in 0..3u64 {
        assert!(post(&q, 10 + k, map_req(0, DISK, (k + 1) * PAGE, Some(IOVA_BASE + (k + 1) * PAGE))));
    }
    // It faults here: torn down, ready again, its queue published as the PD shell does.
    s.client_torn_down(BLK).unwrap();
    s.client_ready(BLK).unwrap();
    q.reset(&s.queue_cursor(BLK));
    assert_eq!(q.unserved(), 0, "the dead client's entries are gone");
    assert_eq!(s.serve_queue(BLK, &q), 0, "a wake-up left pending serves nothing");
    assert_eq!(q.pop_completion(), None);
    let Reply::Ok { values, .. } = query(&mut s, BLK) else { panic!() };
    assert_eq!(values[query::MAPPINGS], 0, "nothing mapped after the restart");
    assert!(s.hw().reachable(DISK as usize).is_empty(), "its device reaches nothing");
    // The restarted client's own entries are served from there.
    assert_eq!(batch(&mut s, BLK, &q, &[map_req(0, DISK, 0, Some(IOVA_BASE))]), [Reply::ok(&[IOVA_BASE])]);
}

/// A paced wake-up (`serve_queue_up_to`, `iommu_pd::pacing`) takes no more than it is
/// allowed, and never more than `QUEUE_BATCH` whatever it is allowed; the entries it leaves
/// are served, in order, by the wake-ups after it.
#[test]
fn a_paced_wake_up_takes_no_more_than_it_is_allowed() {
    let mut s = service();
    let q = region();
    for k in 0..100u64 {
        assert!(post(&q, k, map_req(0, DISK, 0, Some(IOVA_BASE + (k % 8) * PAGE))));
        assert!(post(&q, 1000 + k, unmap_req(DISK, IOVA_BASE + (k % 8) * PAGE)));
    }
    assert_eq!(s.serve_queue_up_to(BLK, &q, 1), 1);
    assert_eq!(s.serve_queue_up_to(BLK, &q, iommu_pd::pacing::PACED_BATCH), iommu_pd::pacing::PACED_BATCH);
    assert_eq!(q.unserved(), 199 - iommu_pd::pacing::PACED_BATCH as u32);
    assert_eq!(s.serve_queue_up_to(BLK, &q, usize::MAX), QUEUE_BATCH);
    assert_eq!(s.serve_queue_up_to(BLK, &q, 0), 0);
    while s.serve_queue_up_to(BLK, &q, 3) > 0 {}
    let unmaps: Vec<u64> = (1000..1100).collect();
    let done = completions(&q, &unmaps);
    let expected: Vec<u64> = (0..100u64).flat_map(|k| [k, 1000 + k]).collect();
    assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), expected);
    assert!(done.iter().all(|(_, r)| matches!(r, Reply::Ok { .. })), "{done:?}");
}

/// The queue and the calls share one set of books: a queued UNMAP removes a mapping a
/// call made, and an UNMAP call one the queue made, each confirmed gone from the device;
/// and a second removal of either, queued or called, is `NotMapped`.
#[test]
fn the_queue_unmaps_what_a_call_mapped_and_the_other_way() {
    let mut s = service();
    let q = region();
    let d = DISK as usize;
    assert_eq!(map(&mut s, BLK, 0, DISK, 0, PAGE, Some(IOVA_BASE), Rights::READ_WRITE), Reply::ok(&[IOVA_BASE]));
    assert!(s.hw().reachable(d).contains_key(&IOVA_BASE));
    assert_eq!(
        batch(&mut s, BLK, &q, &[unmap_req(DISK, IOVA_BASE), map_req(0, DISK, PAGE, Some(IOVA_BASE + PAGE))]),
        [Reply::ok(&[]), Reply::ok(&[IOVA_BASE + PAGE])]
    );
    assert!(!s.hw().reachable(d).contains_key(&IOVA_BASE), "the call's mapping is gone");
    assert_eq!(unmap(&mut s, BLK, DISK, &[IOVA_BASE]), Reply::Err(ErrorCode::NotMapped));
    assert_eq!(unmap(&mut s, BLK, DISK, &[IOVA_BASE + PAGE]), Reply::ok(&[]));
    assert!(s.hw().reachable(d).is_empty(), "the queue's mapping is gone");
    assert_eq!(batch(&mut s, BLK, &q, &[unmap_req(DISK, IOVA_BASE + PAGE)]), [Reply::Err(ErrorCode::NotMapped)]);
    s.audit().unwrap();
}

/// A client that rewrites its entries while the service reads them (another thread
/// writing every slot without pause, between its own plausible MAP and UNMAP and hostile
/// ones: another client's handle, another's device, offsets past its capability): each
/// entry is copied once and judged on the copy, so whatever mixture the service read, the
/// books agree with the tables and the client's device reaches its own region and nothing
/// else.
#[test]
fn entries_rewritten_while_they_are_read_change_only_what_they_ask() {
    use std::sync::atomic::AtomicBool;
    let mut s = service();
    let q = region();
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let scribbler = std::thread::spawn(move || {
        let mut rng = Rng(0x5eed_1234_5678_9abd);
        let mut writes = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // Keep the ring full of something, then rewrite posted slots under the reader.
            while post(&q, rng.below(1 << 20), map_req(0, DISK, rng.below(16) * PAGE, Some(IOVA_BASE))) {}
            let mut mrs = [0; iommu_protocol::MAX_MRS];
            let req = match rng.below(6) {
                0 => map_req(0, DISK, rng.below(16) * PAGE, Some(IOVA_BASE + rng.below(8) * PAGE)),
                1 => unmap_req(DISK, IOVA_BASE + rng.below(8) * PAGE),
                // A handle number it does not hold, NET's device, past its capability.
                2 => map_req(2, DISK, 0, None),
                3 => map_req(0, NIC, 0, None),
                4 => map_req(0, DISK, 0x1_0000 + rng.below(4) * PAGE, None),
                _ => map_req(0, DISK, u64::MAX - 0xfff, Some(u64::MAX - 0xfff)),
            };
            let (label, _) = req.encode(&mut mrs);
            // A word at a time, as a racing writer would: the reader may see any mixture.
            let e = q.request_slot(rng.below(SLOTS as u64) as usize).unwrap();
            e.label.store(label, Ordering::Relaxed);
            for (m, v) in e.mrs.iter().zip(mrs) {
                m.store(v, Ordering::Relaxed);
            }
            writes += 1;
        }
        writes
    });
    let mut served = 0;
    while served < 20_000 {
        served += s.serve_queue(BLK, &q);
        while q.pop_completion().is_some() {}
        s.audit().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(scribbler.join().unwrap() > 1000, "the scribbler ran");
    for (&iova, &(pa, _)) in s.hw().reachable(DISK as usize).iter() {
        assert!((0x4010_0000..0x4011_0000).contains(&pa), "iova {iova:#x} reaches {pa:#x}");
    }
    for other in [NIC as usize, 2, NIC2 as usize] {
        assert!(s.hw().reachable(other).is_empty(), "device {other} reaches nothing");
    }
}
