//! Queued UNMAPs the IOMMU answers `Hardware` (the batch's sync failed) while its block of
//! the device fails too, so the device still translates through what it cached. The
//! IOMMU PD retries the block only at its next request; the Hal makes that request at
//! once (the UNMAP call) and, if that is not confirmed either, stops the device (STOP),
//! and says so (`IommuHal::failure`). Before, the UNMAPs were counted in `unmap_failures`
//! and forgotten: the next flush said the buffers were the driver's while the device still
//! reached them. (Its own test binary: the Hal is one static.)

use iommu_client::hal::{Failure, IommuHal};
use iommu_protocol::{DeviceId, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, fail, reachable};

#[test]
fn an_unmap_the_iommu_refuses_is_made_by_the_call_or_the_device_stopped() {
    let bufs = queued::Buffers::start::<8>(2, 4);
    let (page, reaches) = (|i| bufs.page(i), |i| bufs.reached(i));
    let request = |i: usize| {
        // SAFETY: valid for its length; unshared at once.
        let iova = unsafe { IommuHal::share(page(i), BufferDirection::DeviceToDriver) };
        assert!(reaches(i));
        // SAFETY: shared above.
        unsafe { IommuHal::unshare(iova, page(i), BufferDirection::DeviceToDriver) };
    };

    // Buffer A's UNMAP: the batch's sync fails, and so does the block that follows. The
    // call that comes next has the IOMMU PD block the device again and retry the removal,
    // confirmed: A is out of reach, and the device runs on (the pool reachable).
    request(0);
    fail("sync", &["block"]);
    IommuHal::flush_queue();
    assert!(IommuHal::flush_queue());
    assert!(!reaches(0), "A left to the device (its removal unconfirmed, its block failed): {:x?}", reachable());
    assert_eq!(reachable().len(), 8, "the pool alone, the device running");
    assert_eq!(IommuHal::failure(), None);
    assert_eq!((calls(Op::Unmap), calls(Op::Stop)), (1, 0), "A's UNMAP by the call");

    // Buffer B's: the sync fails, the block too, and the call's retries of both fail again.
    // The Hal stops the device: it reaches nothing, confirmed, and the driver is told.
    request(1);
    fail("sync", &["block", "block", "retry_unmap", "retry_unmap"]);
    assert!(!IommuHal::flush_queue(), "the device was stopped: the flush says so");
    assert!(!reaches(1), "B left to the device: {:x?}", reachable());
    assert!(reachable().is_empty(), "the stopped device reaches nothing: {:x?}", reachable());
    assert_eq!(IommuHal::failure(), Some(Failure::Stopped(DeviceId(0))));
    assert_eq!((calls(Op::Unmap), calls(Op::Stop)), (2, 1), "B's UNMAP by the call, then STOP");
    // Every later operation says so.
    assert!(!IommuHal::flush_queue());
    assert!(!IommuHal::map_queued(&[(page(0), BufferDirection::DeviceToDriver)]));
}
