//! An UNMAP the IOMMU PD left in the ring unanswered (it stalled) is made by the call, so
//! the buffer goes back to the driver; the driver then resets its device (STOP, RESUME,
//! its pool mapped again by the call, from the window's start, where the buffer was).
//! When the IOMMU PD serves the ring again, the old entry must not take the pool from
//! under the device: the Hal withdraws an UNMAP entry it makes by the call. (Its own test
//! binary: the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{DmaPool, IommuHal};
use iommu_client::Client;
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::{DeviceId, Handle, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, pages, reachable, Direct, PAGE};

/// The lowest IOVA of device 0's window (`pool_and_buffer_pages`).
const WINDOW_BASE: u64 = 0x10_0000;

/// The device's IOVAs at which it reaches the pool's pages, in order.
fn pool_iovas(pool_pa: u64) -> Vec<u64> {
    let pool = pool_pa..pool_pa + 8 * PAGE as u64;
    reachable().iter().filter(|(_, (pa, _))| pool.contains(pa)).map(|(iova, _)| *iova).collect()
}

/// STOP and RESUME through the Hal; the pool (which the STOP unmapped) dropped.
fn stop_and_resume() {
    assert!(IommuHal::stop(DeviceId(0)).is_ok());
    assert!(reachable().is_empty(), "STOP took every mapping: {:x?}", reachable());
    assert_eq!(Client::new(Direct).resume(DeviceId(0)), Ok(()));
    let _old = IommuHal::uninstall();
}

fn map_pool(pool_mem: NonNull<u8>) {
    // SAFETY: `pool_mem` is the pool region's memory, used for nothing else (the old pool,
    // unmapped by the STOP, is dropped).
    let pool = unsafe { DmaPool::map(&mut Client::new(Direct), Handle(0), 0, DeviceId(0), pool_mem, 8) };
    IommuHal::install(pool.unwrap());
}

#[test]
fn an_unmap_made_by_the_call_is_not_served_again_from_the_ring_over_a_new_mapping() {
    let (pool_mem, bufs) = (pages(8), pages(2));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, 2, 4);
    let queue = Box::leak(Box::<OwnedQueue<8>>::default()).queue().unwrap();
    queued::start(cfg, queue, pool_mem, bufs, 2);
    // SAFETY: inside the 2 pages of `bufs`.
    let page = |i: usize| NonNull::slice_from_raw_parts(unsafe { bufs.add(i * PAGE) }, PAGE);
    let reaches = |i: usize| reachable().values().any(|(p, _)| *p == bufs_pa + (i * PAGE) as u64);
    let dev = BufferDirection::DeviceToDriver;

    // A reset with nothing in flight: the device's window is empty, so buffer 0's MAP,
    // through the queue, lands at its start.
    stop_and_resume();
    // SAFETY: valid for its length; unshared below.
    let iova_0 = unsafe { IommuHal::share(page(0), dev) };
    assert_eq!(iova_0, WINDOW_BASE);
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_0, page(0), dev) };

    // The IOMMU PD stalls: the flush's UNMAP goes unanswered, and the call makes it.
    queued::set_busy(true);
    assert!(IommuHal::flush_queue(), "the call confirmed the UNMAP");
    assert!(!reaches(0));
    assert_eq!(calls(Op::Unmap), 1);

    // The driver resets the device (its request timed out): STOP, RESUME, and its pool
    // mapped again by the call, at the window's start, where buffer 0 was.
    stop_and_resume();
    map_pool(pool_mem);
    let expected: Vec<u64> = (0..8).map(|i| WINDOW_BASE + i * PAGE as u64).collect();
    assert_eq!(pool_iovas(pool_pa), expected, "the test's premise: the pool is where buffer 0 was");

    // The IOMMU PD serves again; the driver's next request goes through the queue.
    queued::set_busy(false);
    // SAFETY: valid for its length; unshared below.
    let iova_1 = unsafe { IommuHal::share(page(1), dev) };
    assert!(reaches(1), "pool {pool_pa:#x} bufs {bufs_pa:#x} iova_1 {iova_1:#x}: {:x?}", reachable());
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_1, page(1), dev) };
    assert!(IommuHal::flush_queue());
    assert!(!reaches(0) && !reaches(1), "pool {pool_pa:#x} bufs {bufs_pa:#x} iova_1 {iova_1:#x}: {:x?}", reachable());
    assert_eq!(
        pool_iovas(pool_pa),
        expected,
        "the pool, where the device's queues live, unmapped by the old entry: {:x?}",
        reachable()
    );
    assert_eq!(IommuHal::failure(), None);
}
