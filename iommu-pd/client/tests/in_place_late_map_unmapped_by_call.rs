//! The IOMMU PD serves a stalled batch just before the Hal's UNMAP call for the UNMAP it
//! left unanswered. Before the Hal withdrew such an entry from the ring, the queued UNMAP
//! took the buffer's mapping, the MAP behind it (given up on) landed on the IOVA that
//! freed, and the call took that mapping: the Hal, reading the MAP's late answer, had to
//! keep from unmapping that IOVA under a later buffer. Now the entry is withdrawn before
//! the call (answered UnknownOp), the late MAP lands elsewhere, and its mapping, nobody's,
//! goes with the next UNMAPs; a later buffer's mapping stays under its request. (Its own
//! test binary: the Hal is one static.)

use iommu_client::hal::IommuHal;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable};

#[test]
fn an_unmap_withdrawn_before_its_call_frees_no_iova_for_a_late_map_and_later_buffers_stay_mapped() {
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
    // Buffer 0's UNMAP was withdrawn from the ring before the call (its entry answered
    // UnknownOp when served), so buffer 1's late MAP landed above buffer 0, not on the
    // IOVA the entry would have freed: a mapping nobody's, unmapped with the next UNMAPs.
    assert!(!reaches(0) && reaches(1), "{:x?}", reachable());
    assert_eq!(calls(Op::Unmap), 1);

    // The IOMMU PD serves again: buffer 2 mapped (buffer 1's late answer read then; its
    // mapping goes with the next UNMAPs).
    queued::set_busy(false);
    // SAFETY: valid for its length; shared for the rest of the test.
    let _iova_2 = unsafe { IommuHal::share(page(2), dev) };
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
