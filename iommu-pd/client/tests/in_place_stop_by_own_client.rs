//! The driver resets its device with its own `Client` (STOP and RESUME), not through the
//! Hal: the Hal must forget what it meant to unmap of the device all the same. A MAP the
//! Hal gave up on (the IOMMU PD stalled), served late at the window's start, meets the
//! STOP; after the RESUME the pool, mapped again by the call, lies where the late answer
//! says the buffer is, and an UNMAP sent for that answer would take the pool from under
//! the device. Before `Client::stop` told the Hal (`hal::forget_device`), only
//! `IommuHal::stop` did, and this failed: the pool was unmapped. (Its own test binary:
//! the Hal is one static.)

use iommu_client::hal::IommuHal;
use iommu_client::Client;
use iommu_protocol::{DeviceId, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable, Direct, PAGE};
use queued::Buffers;

/// The lowest IOVA of device 0's window (`pool_and_buffer_pages`).
const WINDOW_BASE: u64 = 0x10_0000;

/// The driver resets its device through its own `Client`, STOP then RESUME, and maps its
/// pool again (the STOP took it) by the call, which finds the IOMMU PD serving its queue
/// first if `served_first`.
fn reset_by_own_client(b: &Buffers, served_first: bool) {
    assert!(Client::new(Direct).stop(DeviceId(0)).is_ok());
    assert!(reachable().is_empty(), "STOP took every mapping: {:x?}", reachable());
    assert_eq!(Client::new(Direct).resume(DeviceId(0)), Ok(()));
    let _old = IommuHal::uninstall();
    if served_first {
        queued::serve_before_next_call();
    }
    b.map_pool_again(queued::Serving);
}

#[test]
fn a_stop_through_the_drivers_own_client_makes_the_hal_forget_what_it_meant_to_unmap() {
    let b = Buffers::start::<8>(2, 4);
    let page = |i: usize| b.page(i);
    let reaches = |i: usize| b.reached(i);
    let dev = BufferDirection::DeviceToDriver;
    assert_eq!(b.pool_iovas().first(), Some(&WINDOW_BASE));

    // The IOMMU PD stalls: buffer 0's MAP is given up on, left in the ring.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&[(page(0), dev)]));
    // The driver resets the device; the IOMMU PD serves again, the stalled MAP just before
    // the pool's MAP call: buffer 0 lands at the window's start, the pool above it.
    queued::set_busy(false);
    reset_by_own_client(&b, true);
    assert!(reaches(0), "buffer 0's late mapping, nobody's: {:x?}", reachable());
    assert_eq!(b.pool_iovas().first(), Some(&(WINDOW_BASE + PAGE as u64)));

    // A second reset before the Hal read that answer: buffer 0's mapping goes with the
    // STOP, and the pool is mapped again at the window's start, where the answer says
    // buffer 0 is.
    reset_by_own_client(&b, false);
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
