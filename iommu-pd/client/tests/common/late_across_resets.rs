//! One scenario, run by two tests that differ only in how the driver resets its device: a
//! MAP the Hal gave up on (the IOMMU PD stalled) is served late, at the window's start,
//! just after a STOP and RESUME; a second reset hands that IOVA to the driver's pool
//! before the Hal reads the late answer. Reading it must not send an UNMAP that takes the
//! pool from under the device.

use iommu_client::hal::IommuHal;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

use crate::common::{calls, reachable, PAGE};
use crate::queued::{self, Buffers};

/// The lowest IOVA of device 0's window (`pool_and_buffer_pages`).
const WINDOW_BASE: u64 = 0x10_0000;

/// The scenario, with `stop_and_resume` as the driver's STOP and RESUME of device 0 (it
/// leaves the Hal without a pool: the STOP unmapped it). After each, the pool is mapped
/// again by the call, which finds the IOMMU PD serving its queue first on the first reset.
pub fn late_answer_across_two_resets(stop_and_resume: impl Fn()) {
    let b = Buffers::start::<8>(2, 4);
    let reset = |served_first: bool| {
        stop_and_resume();
        if served_first {
            queued::serve_before_next_call();
        }
        b.map_pool_again(queued::Serving);
    };
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
    reset(true);
    assert!(reaches(0), "buffer 0's late mapping, nobody's: {:x?}", reachable());
    assert_eq!(b.pool_iovas().first(), Some(&(WINDOW_BASE + PAGE as u64)));

    // A second reset before the Hal read that answer: buffer 0's mapping goes with the
    // STOP, and the pool is mapped again at the window's start, where the answer says
    // buffer 0 is.
    reset(false);
    assert_eq!(b.pool_iovas().first(), Some(&WINDOW_BASE), "the test's premise: the IOVA is reused");

    // The driver's next request, through the queue: the Hal reads buffer 0's late answer
    // now, and flushes; the pool stays mapped.
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
