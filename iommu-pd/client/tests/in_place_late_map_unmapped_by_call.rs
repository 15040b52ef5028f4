//! The IOMMU PD serves a stalled batch just before the Hal's UNMAP call for the UNMAP it
//! left unanswered: the queued UNMAP takes the buffer's mapping, the MAP behind it (given
//! up on) lands on the IOVA that frees, and the call takes that mapping. The Hal, reading
//! the MAP's late answer, must not take the IOVA for that mapping's: a later buffer mapped
//! there is a live request's. (Its own test binary: the Hal is one static.)

use iommu_client::hal::IommuHal;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable};

#[test]
fn a_late_maps_iova_freed_by_the_unmap_call_is_not_unmapped_under_a_later_buffer() {
    let bufs = queued::Buffers::start::<8>(4, 8);
    let (page, reaches) = (|i| bufs.page(i), |i| bufs.reached(i));
    let dev = BufferDirection::DeviceToDriver;

    // Buffer 0 mapped, the highest mapping, and done with: its UNMAP pending.
    // SAFETY: valid for its length; unshared at once.
    let iova_0 = unsafe { IommuHal::share(page(0), dev) };
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_0, page(0), dev) };
    // Buffer 1's MAP posted behind it; the IOMMU PD busy past the Hal's patience, then
    // serving both just before the Hal's call for buffer 0's UNMAP.
    queued::set_busy(true);
    queued::serve_before_next_call();
    // SAFETY: valid for its length; copied through the pool (its MAP given up on).
    let _pool_iova = unsafe { IommuHal::share(page(1), dev) };
    assert!(
        !reaches(0) && !reaches(1),
        "buffer 1's late mapping, at buffer 0's IOVA, taken by the call: {:x?}",
        reachable()
    );
    assert_eq!(calls(Op::Unmap), 1);

    // The IOMMU PD serves again: buffer 2 mapped where buffer 1's late MAP had landed.
    queued::set_busy(false);
    // SAFETY: valid for its length; shared for the rest of the test.
    let iova_2 = unsafe { IommuHal::share(page(2), dev) };
    assert_eq!(iova_2, iova_0, "the test's premise: the IOVA is reused");
    assert!(reaches(2));
    // Another buffer of the same request: buffer 2 stays shared, and reachable.
    // SAFETY: valid for its length; shared for the rest of the test.
    let iova_3 = unsafe { IommuHal::share(page(3), dev) };
    assert!(reaches(3), "buffer 3 mapped at {iova_3:#x}: {:x?}", reachable());
    assert!(reaches(2), "buffer 2, still shared, unmapped under its request: {:x?}", reachable());
    assert!(IommuHal::flush_queue());
    assert!(reaches(2) && reaches(3) && !reaches(0) && !reaches(1), "{:x?}", reachable());
    assert_eq!(IommuHal::failure(), None);
    assert_eq!((calls(Op::Map), calls(Op::Unmap), calls(Op::Stop)), (1, 1, 0));
}
