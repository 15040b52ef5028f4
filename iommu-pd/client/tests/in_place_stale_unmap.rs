//! An UNMAP the queue left unanswered, made by the call, stays in the ring; a MAP given up
//! on before it, served late, may land on the IOVA the call freed, and that old UNMAP then
//! takes its mapping. The Hal, reading the MAP's late answer, must not take the IOVA for
//! that mapping's: a later buffer mapped there is a live request's, and unmapping it would
//! leave the device without a buffer the driver has shared. (Its own test binary: the Hal
//! is one static.)

use iommu_client::hal::IommuHal;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable};

#[test]
fn a_late_maps_iova_freed_by_an_old_unmap_is_not_unmapped_under_a_later_buffer() {
    let bufs = queued::Buffers::start::<8>(4, 8);
    let (page, reaches) = (|i| bufs.page(i), |i| bufs.reached(i));
    let dev = BufferDirection::DeviceToDriver;

    // Buffer 0 mapped, the highest mapping: its IOVA is where the next MAP goes once it is
    // free.
    // SAFETY: valid for its length; unshared below.
    let iova_0 = unsafe { IommuHal::share(page(0), dev) };
    assert!(reaches(0));
    // The IOMMU PD stalls: buffer 1's MAP is given up on, still in the ring.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&[(page(1), dev)]));
    // Buffer 0 done; its UNMAP goes unanswered, so the call makes it (freeing its IOVA).
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_0, page(0), dev) };
    assert!(!IommuHal::flush_queue(), "buffer 1's MAP still unanswered");
    assert!(!reaches(0), "buffer 0 out of reach once the flush returns: {:x?}", reachable());

    // The IOMMU PD serves again, buffer 2's MAP after what was left in the ring.
    queued::set_busy(false);
    // SAFETY: valid for its length; shared for the rest of the test.
    let iova_2 = unsafe { IommuHal::share(page(2), dev) };
    assert!(reaches(2), "buffer 2 mapped at {iova_2:#x}: {:x?}", reachable());
    // Another buffer of the same request: buffer 2 stays shared, and reachable.
    // SAFETY: valid for its length; shared for the rest of the test.
    let iova_3 = unsafe { IommuHal::share(page(3), dev) };
    assert!(reaches(3), "buffer 3 mapped at {iova_3:#x}: {:x?}", reachable());
    assert!(reaches(2), "buffer 2, still shared, unmapped under its request: {:x?}", reachable());
    assert!(!reaches(1), "buffer 1's late mapping, nobody's, left: {:x?}", reachable());
    assert!(IommuHal::flush_queue());
    assert!(reaches(2) && reaches(3) && !reaches(1), "{:x?}", reachable());
    assert_eq!(IommuHal::failure(), None);
    // Buffer 0's UNMAP by the call, once; every other MAP and UNMAP by the queue.
    assert_eq!((calls(Op::Map), calls(Op::Unmap), calls(Op::Stop)), (1, 1, 0));
}
