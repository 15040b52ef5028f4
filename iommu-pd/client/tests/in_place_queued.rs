//! Sharing buffers in place through the mapping queue (`Reach::Queued`): a buffer's MAP
//! goes with the previous buffer's UNMAP, one notification for both, against the real
//! service core over the model IOMMU; once `share` returns, the previous buffer is out
//! of the device's reach and the new one in it, and no call was made. (Its own test
//! binary: the Hal is one static.)

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ptr::NonNull;

use iommu_client::hal::{DmaPool, InPlace, IommuHal, NotifyFn, Reach};
use iommu_client::queue::MapQueue;
use iommu_client::{Channel, Client};
use iommu_pd::model::ModelHw;
use iommu_pd::Service;
use iommu_protocol::queue::{OwnedQueue, Queue};
use iommu_protocol::{DeviceId, Handle, Op, Rights};
use virtio_drivers::{BufferDirection, Hal};

mod common;
use common::{pages, PAGE};

thread_local! {
    static SERVICE: RefCell<Option<Service<'static, ModelHw>>> = const { RefCell::new(None) };
    static QUEUE: Cell<Option<Queue<'static>>> = const { Cell::new(None) };
    static CALLS: RefCell<BTreeMap<u64, u64>> = const { RefCell::new(BTreeMap::new()) };
    static WAKEUPS: Cell<u64> = const { Cell::new(0) };
}

struct Direct;

impl Channel for Direct {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
        CALLS.with(|c| *c.borrow_mut().entry(label).or_default() += 1);
        SERVICE.with(|s| {
            let r = s.borrow_mut().as_mut().unwrap().handle(0, label, mrs);
            if let iommu_protocol::Reply::Ok { values, .. } = r {
                *reply = values;
            }
            r.label()
        })
    }
}

/// The IOMMU PD's side of a notification: one batch of client 0's queue.
fn wake_iommu_pd() {
    WAKEUPS.with(|w| w.set(w.get() + 1));
    let q = QUEUE.with(Cell::get).unwrap();
    SERVICE.with(|s| s.borrow_mut().as_mut().unwrap().serve_queue(0, &q));
}

fn calls(op: Op) -> u64 {
    CALLS.with(|c| c.borrow().get(&(op as u64)).copied().unwrap_or(0))
}

fn reachable() -> BTreeMap<u64, (u64, Rights)> {
    SERVICE.with(|s| s.borrow().as_ref().unwrap().hw().reachable(0))
}

#[test]
fn the_next_buffers_map_takes_the_previous_ones_away_confirmed() {
    let (pool_mem, bufs) = (pages(8), pages(4));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    // Mappings: the pool and two in-place buffers at a time.
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, 4, 3);
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 8)>::default()));
    SERVICE.with(|s| *s.borrow_mut() = Some(Service::new(ModelHw::default(), cfg, tables.storage()).unwrap()));
    let queue = Box::leak(Box::<OwnedQueue<8>>::default()).queue().unwrap();
    QUEUE.with(|q| q.set(Some(queue)));

    // SAFETY: `pool_mem` is the pool region's memory, used for nothing else.
    let pool = unsafe { DmaPool::map(&mut Client::new(Direct), Handle(0), 0, DeviceId(0), pool_mem, 8) }.unwrap();
    IommuHal::install(pool);
    IommuHal::install_queue(MapQueue::new(queue, NotifyFn(wake_iommu_pd)));
    let memory = InPlace {
        va: bufs,
        len: 4 * PAGE,
        reach: Reach::Queued { cap: Handle(1), cap_offset: 0, device: DeviceId(0) },
    };
    // SAFETY: `bufs` is the buffers region's memory, which the device may reach.
    unsafe { IommuHal::share_in_place(memory) };
    assert_eq!(reachable().len(), 8, "the pool alone");

    // Request 1: buffer A, page 0: its MAP alone, one notification.
    let a = NonNull::slice_from_raw_parts(bufs, PAGE);
    // SAFETY: valid for its length; unshared below.
    let iova_a = unsafe { IommuHal::share(a, BufferDirection::DeviceToDriver) };
    assert_eq!(reachable().get(&iova_a), Some(&(bufs_pa, Rights::READ_WRITE)));
    assert_eq!(WAKEUPS.with(Cell::get), 1);
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_a, a, BufferDirection::DeviceToDriver) };
    // Its UNMAP is posted, not sent: A is still the device's, and not yet the driver's.
    assert_eq!((reachable().len(), IommuHal::retired(), WAKEUPS.with(Cell::get)), (9, 0, 1));

    // Request 2: buffer B, page 2, which the device only reads: its MAP (read-only) and
    // A's UNMAP in one notification; when share returns A is gone, confirmed.
    // SAFETY: inside `bufs`.
    let b = NonNull::slice_from_raw_parts(unsafe { bufs.add(2 * PAGE) }, PAGE);
    // SAFETY: valid for its length; unshared below.
    let iova_b = unsafe { IommuHal::share(b, BufferDirection::DriverToDevice) };
    assert_eq!(WAKEUPS.with(Cell::get), 2);
    assert_eq!(IommuHal::retired(), 1);
    let now = reachable();
    // B's MAP may take A's IOVA back (A's removal is confirmed first, as two calls would
    // be), so A's page is looked for at every IOVA, not at its own.
    assert!(!now.values().any(|(pa, _)| *pa == bufs_pa), "A's mapping outlived its UNMAP's completion");
    assert_eq!(now.get(&iova_b), Some(&(bufs_pa + 2 * PAGE as u64, Rights::READ)));
    assert_eq!(now.len(), 9);
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_b, b, BufferDirection::DriverToDevice) };
    // The last UNMAP goes alone when the driver flushes.
    assert!(IommuHal::flush_queue());
    assert_eq!((reachable().len(), IommuHal::retired(), WAKEUPS.with(Cell::get)), (8, 2, 3));
    // No MAP or UNMAP call but the pool's MAP: the buffers went through the queue.
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (1, 0));
    assert_eq!((IommuHal::unmap_failures(), IommuHal::queue_stalls()), (0, 0));
}
