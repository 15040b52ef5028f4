//! A flush while MAPs given up on are still unanswered (the IOMMU PD still busy): those
//! MAPs may yet be served, each making a mapping of a buffer the driver has taken back, so
//! the flush must not say the buffers are the driver's again; it says so once they were
//! answered and their mappings unmapped. (Its own test binary: the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{IommuHal, MAX_GROUP};
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::Op;
use virtio_drivers::BufferDirection;

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, pages, reachable, PAGE};
use queued::wakeups;

#[test]
fn a_flush_with_maps_given_up_on_still_unanswered_does_not_say_the_buffers_are_back() {
    let (pool_mem, bufs) = (pages(8), pages(MAX_GROUP));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, MAX_GROUP, 16);
    let queue = Box::leak(Box::<OwnedQueue<16>>::default()).queue().unwrap();
    queued::start(cfg, queue, pool_mem, bufs, MAX_GROUP);
    // SAFETY: inside the `MAX_GROUP` pages of `bufs`.
    let page = |i: usize| NonNull::slice_from_raw_parts(unsafe { bufs.add(i * PAGE) }, PAGE);
    let group = (0..MAX_GROUP).map(|i| (page(i), BufferDirection::DeviceToDriver)).collect::<Vec<_>>();
    let reaches_a_buffer =
        || reachable().values().any(|(pa, _)| (bufs_pa..bufs_pa + (MAX_GROUP * PAGE) as u64).contains(pa));

    // A group mapped ahead while the IOMMU PD serves nothing: every MAP given up on, its
    // buffers the driver's to copy through the pool.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&group));
    assert_eq!(IommuHal::queue_stalls(), 1);
    // Flushed while still busy: the flush ends (the IOMMU PD not serving), but the MAPs
    // are unanswered, not known to have made nothing.
    let before = wakeups();
    assert!(!IommuHal::flush_queue(), "flush said the buffers are the driver's with their MAPs unanswered");
    assert!(wakeups() > before, "the flush woke the IOMMU PD for the answers");
    // Served after all: the device reaches every buffer until a flush unmaps them.
    queued::set_busy(false);
    assert!(IommuHal::flush_queue());
    assert!(!reaches_a_buffer(), "a late MAP left the device a buffer: {:x?}", reachable());
    assert_eq!(reachable().len(), 8, "the pool alone");
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (1, 0), "the pool's MAP, and no call since");
}
