//! An UNMAP the IOMMU PD left in the ring unanswered (it stalled) is made by the call, so
//! the buffer goes back to the driver; the driver then resets its device (STOP, RESUME,
//! its pool mapped again by the call, from the window's start, where the buffer was).
//! When the IOMMU PD serves the ring again, the old entry must not take the pool from
//! under the device: the Hal withdraws an UNMAP entry it makes by the call. (Its own test
//! binary: the Hal is one static.)

use iommu_client::hal::IommuHal;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable, Direct, PAGE};
use queued::Buffers;

/// The lowest IOVA of device 0's window (`pool_and_buffer_pages`).
const WINDOW_BASE: u64 = 0x10_0000;

#[test]
fn an_unmap_made_by_the_call_is_not_served_again_from_the_ring_over_a_new_mapping() {
    let b = Buffers::start::<8>(2, 4);
    let (pool_pa, bufs_pa) = (b.pool_pa(), b.pa(0));
    let page = |i: usize| b.page(i);
    let reaches = |i: usize| b.reached(i);
    let dev = BufferDirection::DeviceToDriver;

    // A reset with nothing in flight: the device's window is empty, so buffer 0's MAP,
    // through the queue, lands at its start.
    queued::stop_and_resume();
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
    queued::stop_and_resume();
    b.map_pool_again(Direct);
    let expected: Vec<u64> = (0..8).map(|i| WINDOW_BASE + i * PAGE as u64).collect();
    assert_eq!(b.pool_iovas(), expected, "the test's premise: the pool is where buffer 0 was");

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
        b.pool_iovas(),
        expected,
        "the pool, where the device's queues live, unmapped by the old entry: {:x?}",
        reachable()
    );
    assert_eq!(IommuHal::failure(), None);
}
