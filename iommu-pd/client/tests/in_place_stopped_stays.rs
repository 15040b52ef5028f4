//! After the Hal stopped a device (an UNMAP neither the queue nor the call confirmed), the
//! device is blocked in the IOMMU, not only emptied, and stays so through the buffers the
//! driver shares after it; `IommuHal::failure` says so until the PD restarts, a RESUME
//! included. (Its own test binary: the Hal is one static.)

use iommu_client::hal::{Failure, IommuHal};
use iommu_client::Client;
use iommu_protocol::{DeviceId, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, fail, reachable, Direct, SERVICE};

/// Whether the model IOMMU lets device 0 translate, and how many pages it has for it.
fn device_0() -> (bool, usize) {
    SERVICE.with(|s| {
        let s = s.borrow();
        let hw = s.as_ref().unwrap().hw();
        (hw.enabled.get(&0).copied().unwrap_or(false), hw.translations(0).len())
    })
}

#[test]
fn a_stopped_device_stays_blocked_and_the_failure_stays_said() {
    let bufs = queued::Buffers::start::<8>(3, 4);
    let (page, reaches) = (|i| bufs.page(i), |i| bufs.reached(i));
    let dev = BufferDirection::DeviceToDriver;
    assert_eq!(device_0(), (true, 8), "the pool mapped, the device translating");

    // Buffer 0's UNMAP: the sync fails, the block too, and the call's retries of both.
    // SAFETY: valid for its length; unshared at once.
    let iova = unsafe { IommuHal::share(page(0), dev) };
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova, page(0), dev) };
    fail("sync", &["block", "block", "retry_unmap", "retry_unmap"]);
    assert!(!IommuHal::flush_queue());
    assert_eq!(IommuHal::failure(), Some(Failure::Stopped(DeviceId(0))));
    assert_eq!(device_0(), (false, 0), "STOP confirmed: blocked (abort) and every mapping gone");
    assert_eq!(calls(Op::Stop), 1);

    // The driver shares another buffer: its MAP is refused (the device is stopped), the
    // buffer is copied into the pool, which the device no longer reaches either.
    // SAFETY: valid for its length; unshared below.
    let iova_1 = unsafe { IommuHal::share(page(1), dev) };
    assert!(!reaches(1) && reachable().is_empty());
    assert_eq!(device_0(), (false, 0));
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_1, page(1), dev) };
    assert!(!IommuHal::flush_queue(), "every flush says the device was stopped");
    assert_eq!(IommuHal::failure(), Some(Failure::Stopped(DeviceId(0))));

    // The driver resumes the device: it translates again, through nothing (the pool's
    // mapping went with the STOP), and the Hal still says what it did.
    assert_eq!(Client::new(Direct).resume(DeviceId(0)), Ok(()));
    assert_eq!(device_0(), (true, 0));
    assert!(!IommuHal::map_queued(&[(page(2), dev)]));
    assert_eq!(IommuHal::failure(), Some(Failure::Stopped(DeviceId(0))));
    assert_eq!(calls(Op::Stop), 1, "no second STOP");
}
