//! An UNMAP the Hal has no room to keep: a whole group's UNMAPs already pending, the ring
//! full of a stalled batch's entries, the IOMMU PD serving nothing. The buffer is the
//! driver's once the Hal says so, so its mapping must go all the same, not be dropped
//! (before, it was counted in `unmap_failures` and left to the device for good). (Its own
//! test binary: the Hal is one static.)

use iommu_client::hal::{IommuHal, MAX_GROUP};
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable};

#[test]
fn an_unmap_with_no_room_left_is_not_dropped() {
    // A: a group mapped ahead; Y: one more buffer; Z: a group whose MAPs stall the ring.
    const BUFS: usize = 2 * MAX_GROUP + 1;
    // Quota for the pool, A and Y: every MAP below fits while A's mappings go before Z's
    // MAPs are served. A ring of one group's entries: Z's MAPs fill it.
    let bufs = queued::Buffers::start::<MAX_GROUP>(BUFS, MAX_GROUP as u32 + 2);
    let (page, reaches) = (|i| bufs.page(i), |i| bufs.reached(i));
    let group =
        |range: std::ops::Range<usize>| range.map(|i| (page(i), BufferDirection::DeviceToDriver)).collect::<Vec<_>>();
    let (a, y, z) = (group(0..MAX_GROUP), MAX_GROUP, group(MAX_GROUP + 1..BUFS));

    // A mapped ahead and shared, Y shared on its own: MAX_GROUP + 1 requests in flight.
    assert!(IommuHal::map_queued(&a));
    // SAFETY: valid for their length; unshared below.
    let iovas: Vec<u64> = a.iter().map(|&(b, d)| unsafe { IommuHal::share(b, d) }).collect();
    // SAFETY: as above.
    let iova_y = unsafe { IommuHal::share(page(y), BufferDirection::DeviceToDriver) };
    assert!((0..=MAX_GROUP).all(reaches));

    // The IOMMU PD stops serving with Z's MAPs in the ring, which they fill.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&z));
    // A's requests end: a group's worth of UNMAPs pending. Then Y's: no room for its UNMAP
    // (A's cannot be posted either).
    for (&(b, d), iova) in a.iter().zip(iovas) {
        // SAFETY: shared above.
        unsafe { IommuHal::unshare(iova, b, d) };
    }
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_y, page(y), BufferDirection::DeviceToDriver) };

    // The IOMMU PD serves again; the driver flushes until the Hal says every buffer is its
    // own: none of them is left to the device, Y's included.
    queued::set_busy(false);
    IommuHal::flush_queue();
    assert!(IommuHal::flush_queue());
    assert!(!reaches(y), "Y's UNMAP was dropped: the device keeps the buffer: {:x?}", reachable());
    assert!(!(0..BUFS).any(reaches), "a buffer left to the device: {:x?}", reachable());
    assert_eq!(reachable().len(), 8, "the pool alone");
    assert_eq!(IommuHal::failure(), None, "the IOMMU PD confirmed every UNMAP, by the queue or the call");
    // A's UNMAPs found the ring full, and went by the call (the queue could not take them
    // and the Hal returns only once they are confirmed); Y's by the queue.
    assert_eq!((calls(Op::Map), calls(Op::Unmap), calls(Op::Stop)), (1, MAX_GROUP as u64, 0));
}
