//! A MAP the Hal gave up on (the IOMMU PD stalled), served late, meets a STOP and a RESUME
//! of its device: the STOP removed the mapping its answer names, and after the RESUME the
//! device's IOVAs are handed out again from the window's start, to mappings the Hal does
//! not see (the driver's pool, mapped again by the call). Read after that, the late answer
//! must not send an UNMAP that takes the pool from under the device. (Its own test binary:
//! the Hal is one static.)

use iommu_client::hal::IommuHal;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable, PAGE};
use queued::Buffers;

/// The lowest IOVA of device 0's window (`pool_and_buffer_pages`).
const WINDOW_BASE: u64 = 0x10_0000;

/// The driver resets its device (the IOMMU PD stalled, its request timed out): STOP and
/// RESUME, then its pool mapped again (the STOP took it) by the call, which finds the
/// IOMMU PD serving its queue first if `served_first`.
fn reset(b: &Buffers, served_first: bool) {
    queued::stop_and_resume();
    if served_first {
        queued::serve_before_next_call();
    }
    b.map_pool_again(queued::Serving);
}

#[test]
fn a_late_answer_from_before_a_stop_does_not_unmap_what_the_device_was_given_since() {
    let b = Buffers::start::<8>(2, 4);
    let page = |i: usize| b.page(i);
    let reaches = |i: usize| b.reached(i);
    let dev = BufferDirection::DeviceToDriver;
    assert_eq!(b.pool_iovas().first(), Some(&WINDOW_BASE));

    // The IOMMU PD stalls: buffer 0's MAP is given up on, left in the ring.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&[(page(0), dev)]));
    // The driver resets the device; the IOMMU PD serves again, the stalled MAP just before
    // the pool's MAP call: the device was empty, so buffer 0 lands at the window's start,
    // the pool above it.
    queued::set_busy(false);
    reset(&b, true);
    assert!(reaches(0), "buffer 0's late mapping, nobody's: {:x?}", reachable());
    assert_eq!(b.pool_iovas().first(), Some(&(WINDOW_BASE + PAGE as u64)));

    // A second reset before the Hal read that answer: buffer 0's mapping goes with the
    // STOP, and the pool is mapped again at the window's start, where the answer says
    // buffer 0 is.
    reset(&b, false);
    assert_eq!(b.pool_iovas().first(), Some(&WINDOW_BASE), "the test's premise: the IOVA is reused");

    // The driver's next request, through the queue: the Hal reads buffer 0's late answer
    // now, and flushes.
    // SAFETY: valid for its length; unshared below.
    let iova_1 = unsafe { IommuHal::share(page(1), dev) };
    assert!(reaches(1));
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_1, page(1), dev) };
    assert!(IommuHal::flush_queue());
    assert!(!reaches(0) && !reaches(1), "{:x?}", reachable());
    let expected: Vec<u64> = (0..8).map(|i| WINDOW_BASE + i * PAGE as u64).collect();
    assert_eq!(b.pool_iovas(), expected, "the pool, where the device's queues live, unmapped: {:x?}", reachable());
    assert_eq!(IommuHal::failure(), None);
    assert_eq!((calls(Op::Stop), calls(Op::Unmap)), (2, 0));
}
