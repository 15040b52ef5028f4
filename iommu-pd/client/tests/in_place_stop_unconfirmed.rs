//! A per-request buffer's UNMAP that the IOMMU does not confirm, and then no STOP either,
//! however often the Hal asks: where the guarantee stops. `unshare` cannot fail, so the
//! buffer goes back with `Failure::NotStopped`; from then on the Hal asks for the STOP
//! again before anything else it does, maps nothing in place, and says `Stopped` once
//! the IOMMU confirms one. (Its own test binary: the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{Failure, IommuHal};
use iommu_protocol::{DeviceId, ErrorCode, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
use common::{calls, fail, reachable, PAGE, SERVICE};

/// The model IOMMU obeys again.
fn heal() {
    SERVICE.with(|s| {
        let mut s = s.borrow_mut();
        let hw = s.as_mut().unwrap().hw_mut();
        (hw.fail_next, hw.fail_then) = (None, Vec::new());
    });
}

#[test]
fn a_stop_the_iommu_never_confirms_is_asked_for_again_before_anything_else() {
    let bufs = common::start_per_request(2, 3);
    let bufs_pa = bufs.as_ptr() as u64;
    // SAFETY: inside the 2 pages of `bufs`.
    let page = |i: usize| NonNull::slice_from_raw_parts(unsafe { bufs.add(i * PAGE) }, PAGE);
    let reaches = |i: usize| reachable().values().any(|(p, _)| *p == bufs_pa + (i * PAGE) as u64);

    // A's UNMAP and every block, removal and STOP after it fail, far more often than the
    // Hal asks.
    // SAFETY: valid for its length; unshared below.
    let iova = unsafe { IommuHal::share(page(0), BufferDirection::DeviceToDriver) };
    assert!(reaches(0));
    fail("unmap", &[["block"; 40].as_slice(), &["retry_unmap"; 40]].concat());
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova, page(0), BufferDirection::DeviceToDriver) };
    // Where the guarantee stops: the buffer is handed back, the device may reach it, and
    // the Hal says so.
    assert_eq!(IommuHal::failure(), Some(Failure::NotStopped(DeviceId(0), ErrorCode::Hardware)));
    assert_eq!((calls(Op::Unmap), calls(Op::Stop)), (2, 4), "the UNMAP twice, then STOP_TRIES STOPs");
    assert!(reaches(0), "the IOMMU confirmed nothing, not even a block: {:x?}", reachable());

    // Still failing: the next share asks for the STOP once more first, and maps nothing in
    // place (B is copied through the pool).
    // SAFETY: valid for its length; unshared below.
    let iova_b = unsafe { IommuHal::share(page(1), BufferDirection::DeviceToDriver) };
    assert_eq!(calls(Op::Stop), 5);
    assert_eq!(calls(Op::Map), 2, "no MAP for B: the pool's and A's only");
    assert!(!reaches(1));
    assert!(matches!(IommuHal::failure(), Some(Failure::NotStopped(..))));

    // The IOMMU obeys again: the next thing the Hal does (B's unshare) has the STOP
    // confirmed first. The device reaches nothing, and the Hal says it stopped it.
    heal();
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_b, page(1), BufferDirection::DeviceToDriver) };
    assert_eq!(calls(Op::Stop), 6);
    assert_eq!(IommuHal::failure(), Some(Failure::Stopped(DeviceId(0))));
    assert!(reachable().is_empty(), "{:x?}", reachable());
    assert!(!IommuHal::flush_queue());
    assert_eq!(calls(Op::Stop), 6, "no STOP once one is confirmed");
    // The driver's own STOP through the Hal (a per-request Hal has no queue's call: its
    // in-place memory's is used).
    assert_eq!(IommuHal::stop(DeviceId(0)).map(|_| ()), Ok(()));
    assert_eq!(calls(Op::Stop), 7);
}
