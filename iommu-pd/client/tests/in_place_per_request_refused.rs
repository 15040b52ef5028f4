//! A per-request buffer's UNMAP call that the IOMMU does not confirm while its block of the
//! device fails too (the device still translates through what it cached): virtio-drivers
//! takes the buffer back when `unshare` returns, so the Hal asks again (the IOMMU PD retries
//! the block and the removal first), and stops the device if that is not confirmed either,
//! asking for the STOP again while the IOMMU does not confirm it. Where it stops: `STOP_TRIES`
//! STOPs the IOMMU does not confirm; the Hal says so, hands the buffer back, maps nothing in
//! place, and asks for the STOP again before anything else it does. (Its own test binary:
//! the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{Failure, IommuHal};
use iommu_protocol::{DeviceId, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
use common::{calls, fail, reachable, PAGE};

#[test]
fn an_unmap_call_the_iommu_refuses_is_made_again_or_the_device_stopped() {
    let bufs = common::start_per_request(2, 3);
    let bufs_pa = bufs.as_ptr() as u64;
    // SAFETY: inside the 2 pages of `bufs`.
    let page = |i: usize| NonNull::slice_from_raw_parts(unsafe { bufs.add(i * PAGE) }, PAGE);
    let pa = |i: usize| bufs_pa + (i * PAGE) as u64;
    let reaches = |i: usize| reachable().values().any(|(p, _)| *p == pa(i));
    let request = |i: usize, failures: (&'static str, &[&'static str])| {
        // SAFETY: valid for its length; unshared at once.
        let iova = unsafe { IommuHal::share(page(i), BufferDirection::DeviceToDriver) };
        assert!(reaches(i));
        fail(failures.0, failures.1);
        // SAFETY: shared above.
        unsafe { IommuHal::unshare(iova, page(i), BufferDirection::DeviceToDriver) };
    };

    // A's UNMAP is not confirmed, nor the block after it; the second call has the IOMMU PD
    // block the device and retry the removal, confirmed. A is out of reach once `unshare`
    // returns, and the device runs on.
    request(0, ("unmap", &["block"]));
    assert!(!reaches(0), "A left to the device after unshare: {:x?}", reachable());
    assert_eq!(reachable().len(), 8, "the pool alone, the device running");
    assert_eq!((IommuHal::unmap_failures(), IommuHal::failure()), (1, None));
    assert_eq!((calls(Op::Unmap), calls(Op::Stop)), (2, 0));

    // B's: the removal and every block and retry fail, the first STOP's block too. The
    // Hal asks for the STOP again; before it the IOMMU PD blocks the device, and the STOP
    // is confirmed: B is out of reach when `unshare` returns (before, the Hal handed it
    // back with the device still reaching it).
    request(1, ("unmap", &["block", "block", "retry_unmap", "retry_unmap", "block", "retry_unmap", "block"]));
    assert!(!reaches(1), "B handed back while the device reaches it: {:x?}", reachable());
    assert!(reachable().is_empty(), "stopped: the pool gone too");
    assert_eq!(IommuHal::failure(), Some(Failure::Stopped(DeviceId(0))));
    assert_eq!((calls(Op::Unmap), calls(Op::Stop)), (4, 2));
    assert!(!IommuHal::flush_queue(), "the Hal goes on saying so");
}
