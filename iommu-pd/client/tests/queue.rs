//! `MapQueue` against the real service core (over the model IOMMU), the IOMMU PD's part
//! played by a notification that serves the queue: a request's UNMAP posted beside the
//! next one's MAP, one notification, and the device reaches the new buffer and no longer
//! the old one once the completions say so.

use std::cell::RefCell;
use std::rc::Rc;

use iommu_client::queue::{Done, MapQueue, Notify};
use iommu_pd::model::ModelHw;
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::queue::{OwnedQueue, Queue, QUEUE_BATCH};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Rights};

const PA: u64 = 0x4000_0000;
static CLIENTS: [ClientConfig; 1] = [ClientConfig { name: "blk", max_mappings: 128, max_pages: 128, max_grants: 0 }];
static DEVICES: [DeviceConfig; 1] = [DeviceConfig {
    name: "disk",
    stream: 8,
    extra_streams: &[],
    owner: 0,
    iova_base: 0x10_0000,
    iova_size: 1 << 24,
    resume_allowed: true,
}];
static REGIONS: [RegionConfig; 1] = [RegionConfig { name: "buffers", pa: PA, size: 128 * 4096 }];
static CAPS: [CapConfig; 1] = [CapConfig {
    client: 0,
    region: 0,
    offset: 0,
    len: 128 * 4096,
    rights: Rights::READ_WRITE,
    devices: 1,
    grant_to: 0,
}];

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
    let cfg = Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10 },
    };
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 128)>::default()));
    let service = Rc::new(RefCell::new(Service::new(ModelHw::default(), cfg, tables.storage()).unwrap()));
    let queue = Box::leak(Box::<OwnedQueue<128>>::default()).queue().unwrap();
    let pd = Pd { service: service.clone(), queue, wakeups: 0 };
    (service, MapQueue::new(queue, pd))
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
