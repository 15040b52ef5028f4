//! The UNMAP of a late MAP's mapping (a MAP the client gave up waiting for, served later)
//! that the IOMMU PD does not answer: the IOMMU PD stalls again with it in the ring. The
//! Hal says the buffers are the driver's only once that mapping is gone, confirmed (before,
//! the UNMAP was counted in `unmap_failures` and forgotten: the next flush said true with
//! the device still reaching the buffer). (Its own test binary: the Hal is one static.)

use iommu_client::hal::IommuHal;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable};

#[test]
fn a_late_maps_unmap_left_unanswered_is_not_forgotten() {
    let bufs = queued::Buffers::start::<8>(2, 4);
    let (page, reaches) = (|i| bufs.page(i), |i| bufs.reached(i));

    // A's MAP given up on (the IOMMU PD serving nothing), then served with B's: A's
    // mapping is nobody's, to go with B's UNMAP.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&[(page(0), BufferDirection::DeviceToDriver)]));
    queued::set_busy(false);
    // SAFETY: valid for its length; unshared below.
    let iova_b = unsafe { IommuHal::share(page(1), BufferDirection::DeviceToDriver) };
    assert!(reaches(0) && reaches(1), "A's late MAP and B's MAP served");
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_b, page(1), BufferDirection::DeviceToDriver) };

    // The IOMMU PD stalls again: the flush's UNMAPs (B's, and A's mapping's) go unanswered.
    // Once a flush says the buffers are the driver's, the device reaches neither.
    queued::set_busy(true);
    IommuHal::flush_queue();
    assert!(IommuHal::flush_queue(), "nothing is pending: the buffers are said to be the driver's");
    assert!(!reaches(0), "A's late mapping left to the device after the flush: {:x?}", reachable());
    assert!(!reaches(1), "B left to the device after the flush: {:x?}", reachable());
    assert_eq!(reachable().len(), 8, "the pool alone");

    // The IOMMU PD serves the stalled entries at last (withdrawn before the call made
    // their UNMAPs: each answers UnknownOp, and nobody is waiting for it); nothing changes.
    queued::set_busy(false);
    assert!(IommuHal::flush_queue());
    assert_eq!(reachable().len(), 8, "the pool alone");
    assert_eq!(IommuHal::failure(), None, "every UNMAP confirmed: no device stopped");
    assert_eq!((calls(Op::Map), calls(Op::Unmap), calls(Op::Stop)), (1, 2, 0), "the two UNMAPs by the call");
}
