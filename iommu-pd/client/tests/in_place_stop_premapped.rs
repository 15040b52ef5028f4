//! The Hal stops the device in the very exchange that maps a group ahead (its UNMAPs
//! confirmed neither by the queue nor by the call): the group's mappings went with the
//! STOP, so they must not be kept for the group's requests. After the driver resumes the
//! device, a request's buffer must be mapped again, not handed an IOVA that maps nothing
//! (or, once the IOVAs are handed out again, another buffer). (Its own test binary: the
//! Hal is one static.)

use iommu_client::hal::{DmaPool, Failure, IommuHal};
use iommu_client::Client;
use iommu_protocol::{DeviceId, Handle, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, fail, pages, reachable, Direct};

#[test]
fn a_group_mapped_in_the_exchange_that_stopped_its_device_is_not_handed_out() {
    let bufs = queued::Buffers::start::<8>(3, 8);
    let dev = BufferDirection::DeviceToDriver;

    // Buffers 0 and 2 in flight; buffer 0's request ends, its UNMAP pending. The next
    // group's batch carries it with buffer 1's MAP (above buffer 2's mapping, clear of the
    // removal); the batch's sync fails, the block too, and the call's retries of both: the
    // Hal stops the device. Buffer 1's mapping, made in that batch, went with the STOP.
    // SAFETY: valid for its length; unshared below.
    let iova_0 = unsafe { IommuHal::share(bufs.page(0), dev) };
    // SAFETY: valid for its length; its request cut short by the STOP.
    let _iova_2 = unsafe { IommuHal::share(bufs.page(2), dev) };
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_0, bufs.page(0), dev) };
    fail("sync", &["block", "block", "retry_unmap", "retry_unmap"]);
    assert!(!IommuHal::map_queued(&[(bufs.page(1), dev)]));
    assert_eq!(IommuHal::failure(), Some(Failure::Stopped(DeviceId(0))));
    assert!(reachable().is_empty());

    // The driver resumes the device and maps its pool again, then starts buffer 1's
    // request: the device must reach buffer 1 at the address its request is given.
    assert_eq!(Client::new(Direct).resume(DeviceId(0)), Ok(()));
    let _old = IommuHal::uninstall();
    // SAFETY: a fresh 8 pages standing in for the pool region (the test's own: nothing
    // else uses them); the old pool, unmapped by the STOP, is dropped.
    let pool = unsafe { DmaPool::map(&mut Client::new(Direct), Handle(0), 0, DeviceId(0), pages(8), 8) };
    IommuHal::install(pool.unwrap());
    // SAFETY: valid for its length; unshared below.
    let iova_1 = unsafe { IommuHal::share(bufs.page(1), dev) };
    let page_1 = iova_1 & !0xfff;
    assert_eq!(
        reachable().get(&page_1).map(|(pa, _)| *pa),
        Some(bufs.pa(1)),
        "buffer 1's request given {iova_1:#x}, where the device reaches: {:x?}",
        reachable()
    );
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_1, bufs.page(1), dev) };
    assert!(!IommuHal::flush_queue(), "the Hal still says it stopped the device");
    assert!(!bufs.reached(1) && !bufs.reached(0) && !bufs.reached(2), "{:x?}", reachable());
    assert_eq!(calls(Op::Stop), 1);
}
