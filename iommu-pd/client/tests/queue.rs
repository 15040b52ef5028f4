//! `MapQueue` against the real service core (over the model IOMMU), the IOMMU PD's part
//! played by a notification that serves the queue: a request's UNMAP posted beside the
//! next one's MAP, one notification, and the device reaches the new buffer and no longer
//! the old one once the completions say so.

use std::cell::RefCell;
use std::rc::Rc;

use iommu_client::queue::{Done, MapQueue, Notify, Posted};
use iommu_pd::model::ModelHw;
use iommu_pd::Service;
use iommu_protocol::queue::{OwnedQueue, Queue, QUEUE_BATCH};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Rights};

#[path = "common/disk.rs"]
mod disk;
use disk::{PA, WINDOW};

type Shared = Rc<RefCell<Service<'static, ModelHw>>>;

/// The IOMMU PD's side: a notification serves the queue once, as the PD's handler does.
struct Pd {
    service: Shared,
    queue: Queue<'static>,
    wakeups: usize,
}

impl Notify for Pd {
    fn notify(&mut self) {
        self.wakeups += 1;
        self.service.borrow_mut().serve_queue(0, &self.queue);
    }
}

fn setup() -> (Shared, MapQueue<'static, Pd>) {
    let (service, _, q) = setup_with_region();
    (service, q)
}

/// `setup`, and the queue's region, for a test that starts a second `MapQueue` over it.
fn setup_with_region() -> (Shared, Queue<'static>, MapQueue<'static, Pd>) {
    let cfg = disk::config(128);
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 128)>::default()));
    let service = Rc::new(RefCell::new(Service::new(ModelHw::default(), cfg, tables.storage()).unwrap()));
    let queue = Box::leak(Box::<OwnedQueue<128>>::default()).queue().unwrap();
    let pd = Pd { service: service.clone(), queue, wakeups: 0 };
    (service, queue, MapQueue::new(queue, pd))
}

fn all(q: &mut MapQueue<'static, Pd>) -> Vec<Done> {
    std::iter::from_fn(|| q.completion()).collect()
}

#[test]
fn the_previous_requests_unmap_goes_with_the_next_ones_map() {
    let (service, mut q) = setup();
    let dev = DeviceId(0);
    let first = q.post_map(Handle(0), dev, 0, 4096, None, Rights::READ_WRITE).unwrap();
    q.notify();
    let [Done { tag, result: Ok(iova) }] = all(&mut q)[..] else { panic!("no MAP completion") };
    assert_eq!(tag, first);
    assert_eq!(service.borrow().hw().reachable(0).get(&iova), Some(&(PA, Rights::READ_WRITE)));
    let (mut live, mut live_pa) = (iova, PA);
    for k in 1..20u64 {
        let unmap = q.post_unmap(dev, live).unwrap();
        let map = q.post_map(Handle(0), dev, k * 4096, 4096, None, Rights::READ).unwrap();
        q.notify();
        let done = all(&mut q);
        assert_eq!(done[0], Done { tag: unmap, result: Ok(0) });
        let Done { tag, result: Ok(next) } = done[1] else { panic!("{done:?}") };
        assert_eq!(tag, map);
        // (The allocator may hand the previous buffer's IOVAs to the next one, as it would
        // after the calls: the UNMAP is confirmed before they are mapped again.)
        let reach = service.borrow().hw().reachable(0);
        assert!(reach.values().all(|&(pa, _)| pa != live_pa), "the previous buffer after its UNMAP's completion");
        assert!(next == live || !reach.contains_key(&live));
        assert_eq!(reach.get(&next), Some(&(PA + k * 4096, Rights::READ)));
        (live, live_pa) = (next, PA + k * 4096);
    }
    // An UNMAP of what is not mapped: its error, as the call's.
    let tag = q.post_unmap(dev, 0xdead_0000).unwrap();
    q.notify();
    assert_eq!(all(&mut q), [Done { tag, result: Err(ErrorCode::NotMapped) }]);
}

#[test]
fn a_batch_posted_at_once_is_served_as_the_same_entries_posted_one_by_one() {
    // Each round unmaps the previous round's four buffers and maps four more, posted in
    // one `post_all` and read back in one `completions`: the tags follow on, the results
    // are the calls', and the device reaches the new buffers and not the old ones.
    let (service, mut q) = setup();
    let dev = DeviceId(0);
    let map = |page: u64| Posted::Map {
        cap: Handle(0),
        device: dev,
        offset: page * 4096,
        len: 4096,
        iova: None,
        rights: Rights::READ_WRITE,
    };
    let mut live: Vec<(u64, u64)> = Vec::new();
    for round in 0..6u64 {
        let mut batch: Vec<Posted> = live.iter().map(|&(iova, _)| Posted::Unmap { device: dev, iova }).collect();
        batch.extend((0..4).map(|j| map(round * 4 + j)));
        let first = q.post_all(&batch).unwrap();
        q.notify();
        let mut done = Vec::new();
        assert_eq!(q.completions(|d| done.push(d)) as usize, batch.len());
        assert_eq!(
            done.iter().map(|d| d.tag).collect::<Vec<_>>(),
            (first..first + batch.len() as u64).collect::<Vec<_>>()
        );
        let (unmaps, maps) = done.split_at(live.len());
        assert!(unmaps.iter().all(|d| d.result == Ok(0)), "{unmaps:?}");
        let reach = service.borrow().hw().reachable(0);
        assert!(live.iter().all(|&(_, pa)| reach.values().all(|&(p, _)| p != pa)), "an old buffer after its UNMAP");
        live = maps
            .iter()
            .zip(0..)
            .map(|(d, j)| {
                let Ok(iova) = d.result else { panic!("{d:?}") };
                let pa = PA + (round * 4 + j) * 4096;
                assert_eq!(reach.get(&iova), Some(&(pa, Rights::READ_WRITE)));
                (iova, pa)
            })
            .collect();
        assert_eq!(reach.len(), 4);
    }
    // A batch the ring has no room for is not posted at all: nothing more is served.
    assert_eq!(q.post_all(&[map(0); 129]), Err(iommu_client::queue::Full));
    assert_eq!(q.untaken(), 0);
    let tag = q.post_unmap(dev, 0xdead_0000).unwrap();
    q.notify();
    let mut done = Vec::new();
    q.completions(|d| done.push(d));
    assert_eq!(done, [Done { tag, result: Err(ErrorCode::NotMapped) }]);
}

#[test]
fn more_than_a_batch_takes_another_notification() {
    let (_, mut q) = setup();
    for k in 0..100u64 {
        q.post_map(Handle(0), DeviceId(0), k * 4096, 4096, None, Rights::READ).unwrap();
    }
    q.notify();
    assert_eq!(q.untaken(), 100 - QUEUE_BATCH as u32);
    assert_eq!(all(&mut q).len(), QUEUE_BATCH);
    q.notify();
    assert_eq!(q.untaken(), 0);
    let done = all(&mut q);
    assert_eq!(done.len(), 100 - QUEUE_BATCH);
    assert!(done.iter().all(|d| d.result.is_ok()));
    // A full ring refuses, and nothing is posted.
    for _ in 0..128 {
        q.post_unmap(DeviceId(0), 0).unwrap();
    }
    assert!(q.post_unmap(DeviceId(0), 0).is_err());
}

/// IOVAs a client names for its MAPs, in its device's window.
const NAMED: [u64; 3] = [WINDOW + 0x8_0000, WINDOW + 0x9_0000, WINDOW + 0xa_0000];

/// Post a MAP of page `page` of the buffers at `NAMED[page]`, read-write; its tag.
fn post_named(q: &mut MapQueue<'static, Pd>, page: usize) -> u64 {
    q.post_map(Handle(0), DeviceId(0), page as u64 * 4096, 4096, Some(NAMED[page]), Rights::READ_WRITE).unwrap()
}

/// A client dies with its queue in use: a MAP served and its completion taken, one served
/// and its completion not taken, one posted and never served. The IOMMU PD tears it down
/// and starts its queue over (`Queue::reset` with the service's cursor, as the PD shell
/// does before the restart); the restarted client's `MapQueue::new` finds nothing of its
/// first run, a wake-up serves nothing of it, and its own MAP is served and completed
/// under its first tag.
#[test]
fn a_restarted_client_starts_its_queue_from_what_the_iommu_pd_published() {
    let (service, queue, mut q) = setup_with_region();
    let dev = DeviceId(0);
    let taken = post_named(&mut q, 0);
    q.notify();
    assert_eq!(all(&mut q), [Done { tag: taken, result: Ok(NAMED[0]) }]);
    post_named(&mut q, 1);
    q.notify();
    post_named(&mut q, 2);
    assert_eq!(q.untaken(), 1);
    let reach = service.borrow().hw().reachable(0);
    assert!(reach.contains_key(&NAMED[0]) && reach.contains_key(&NAMED[1]) && !reach.contains_key(&NAMED[2]));
    drop(q);

    // It faults: torn down, its queue started over, ready again.
    let cursor = {
        let mut s = service.borrow_mut();
        s.client_torn_down(0).unwrap();
        s.client_ready(0).unwrap();
        s.queue_cursor(0)
    };
    queue.reset(&cursor);

    let pd = Pd { service: service.clone(), queue, wakeups: 0 };
    let mut q = MapQueue::new(queue, pd);
    assert_eq!((q.untaken(), q.completion()), (0, None), "nothing of the first run is left");
    assert_eq!(service.borrow_mut().serve_queue(0, &queue), 0, "a wake-up serves nothing of it");
    assert!(service.borrow().hw().reachable(0).is_empty(), "none of its first run's mappings reaches anything");
    let tag = q.post_map(Handle(0), dev, 0, 4096, None, Rights::READ).unwrap();
    assert_eq!(tag, 0, "tags start again");
    q.notify();
    let [Done { tag: t, result: Ok(iova) }] = all(&mut q)[..] else { panic!("no MAP completion") };
    assert_eq!(t, tag);
    let reach = service.borrow().hw().reachable(0);
    assert_eq!(reach.len(), 1, "only the new mapping: {reach:?}");
    assert_eq!(reach.get(&iova), Some(&(PA, Rights::READ)));
}

/// A client that starts its queue again without a crash (the IOMMU PD reset nothing):
/// `MapQueue::new` starts from what the IOMMU PD published, as C's `iommu_queue_init`
/// does. The earlier run's unread completion is not read back under the new run's first
/// tag (both are 0), and its entry posted and not taken is never served.
#[test]
fn a_new_map_queue_drops_what_was_posted_and_skips_what_was_not_read() {
    let (service, queue, mut q) = setup_with_region();
    let dev = DeviceId(0);
    let first = post_named(&mut q, 0);
    q.notify();
    post_named(&mut q, 1);
    drop(q);

    let pd = Pd { service: service.clone(), queue, wakeups: 0 };
    let mut q = MapQueue::new(queue, pd);
    assert_eq!((q.untaken(), q.completion()), (0, None));
    let unmap = q.post_unmap(dev, NAMED[0]).unwrap();
    assert_eq!(unmap, first, "the same tag as the earlier run's unread MAP completion");
    q.notify();
    assert_eq!(all(&mut q), [Done { tag: unmap, result: Ok(0) }], "the UNMAP's completion, not the stale MAP's");
    assert!(service.borrow().hw().reachable(0).is_empty(), "the dropped MAP was never served");
    assert_eq!(service.borrow_mut().serve_queue(0, &queue), 0);
}

/// QUERY_MAPPING's reply is where `iommu_protocol::query_mapping` (and C's
/// `IOMMU_QUERY_MAPPING_*`, which `iommu_mapping_covers` reads) says: a mapping made through
/// the queue, listed by the service.
#[test]
fn query_mapping_replies_where_the_protocol_says() {
    use iommu_protocol::{query_mapping as m, Op, Reply};
    let (service, mut q) = setup();
    let tag = post_named(&mut q, 1);
    q.notify();
    assert_eq!(all(&mut q), [Done { tag, result: Ok(NAMED[1]) }]);
    let Reply::Ok { values, n } = service.borrow_mut().handle(0, Op::QueryMapping as u64, &[0]) else {
        panic!("QUERY_MAPPING refused")
    };
    assert_eq!(n, m::VALUES);
    assert_eq!(
        [
            values[m::DEVICE],
            values[m::IOVA],
            values[m::LENGTH],
            values[m::RIGHTS],
            values[m::OFFSET],
            values[m::PENDING]
        ],
        [0, NAMED[1], 4096, Rights::READ_WRITE.0 as u64, 4096, 0]
    );
    assert_eq!(values[m::REGION], 0);
    assert_eq!(service.borrow_mut().handle(0, Op::QueryMapping as u64, &[1]), Reply::Err(ErrorCode::NotMapped));
}
