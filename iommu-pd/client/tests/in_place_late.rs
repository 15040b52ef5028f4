//! A MAP the client gave up waiting for (the IOMMU PD busy past `QUEUE_PATIENCE`) that the
//! IOMMU PD serves later: the mapping it makes is nobody's, so it must be unmapped with the
//! next UNMAPs, not left for the device to reach for good. (Its own test binary: the Hal
//! is one static.)

use std::ptr::NonNull;

use iommu_client::hal::IommuHal;
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, pages, reachable, PAGE};

/// Whether the device reaches the page at `pa` at any IOVA.
fn reaches(pa: u64) -> bool {
    reachable().values().any(|(p, _)| *p == pa)
}

#[test]
fn a_map_served_after_the_client_gave_up_is_unmapped() {
    let (pool_mem, bufs) = (pages(8), pages(4));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, 4, 4);
    let queue = Box::leak(Box::<OwnedQueue<8>>::default()).queue().unwrap();
    queued::start(cfg, queue, pool_mem, bufs, 4);
    // SAFETY: inside the 4 pages of `bufs`.
    let page = |i: usize| NonNull::slice_from_raw_parts(unsafe { bufs.add(i * PAGE) }, PAGE);
    let pa = |i: usize| bufs_pa + (i * PAGE) as u64;
    assert_eq!(reachable().len(), 8, "the pool alone");

    // Buffer A mapped ahead while the IOMMU PD serves nothing: the client gives up, and
    // says so (A's request will be copied through the pool instead).
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&[(page(0), BufferDirection::DeviceToDriver)]));
    assert_eq!(IommuHal::queue_stalls(), 1);
    assert!(queued::wakeups() > 1, "the client woke the IOMMU PD again while it waited");
    assert!(!reaches(pa(0)), "nothing was served yet");
    queued::set_busy(false);

    // The next request's buffer B goes through the queue: the IOMMU PD serves A's MAP
    // (left in the ring) with B's. A's mapping is nobody's: no request will unshare it.
    // SAFETY: valid for its length; unshared below.
    let iova_b = unsafe { IommuHal::share(page(1), BufferDirection::DeviceToDriver) };
    assert!(reaches(pa(1)));
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_b, page(1), BufferDirection::DeviceToDriver) };
    assert!(IommuHal::flush_queue());
    assert!(!reaches(pa(1)), "B's UNMAP confirmed");
    // A must be out of the device's reach too once the queue is flushed: the driver
    // reuses its buffer believing the device never had it.
    assert!(!reaches(pa(0)), "A's late MAP left the device a mapping of A: {:x?}", reachable());
    assert_eq!(reachable().len(), 8, "the pool alone");
    assert_eq!((IommuHal::maps_held_back(), IommuHal::queue_stalls()), (0, 1));
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (1, 0));
}
