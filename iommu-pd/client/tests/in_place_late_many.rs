//! More MAPs given up on than the Hal tracks (`MAX_GROUP`): a second stall before the
//! first one's MAPs were answered. Whatever the IOMMU PD serves late must still be
//! unmapped: the Hal posts no MAP it could not track were it given up on, and copies that
//! buffer through the pool instead. (Its own test binary: the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{IommuHal, MAX_GROUP};
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, pages, reachable, PAGE};

#[test]
fn maps_past_what_the_hal_tracks_are_not_posted_and_late_ones_are_unmapped() {
    const BUFS: usize = MAX_GROUP + 4;
    let (pool_mem, bufs) = (pages(8), pages(BUFS));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    // Quota and ring room for every MAP below: only the Hal's tracking can hold one back.
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, BUFS, 16);
    let queue = Box::leak(Box::<OwnedQueue<16>>::default()).queue().unwrap();
    queued::start(cfg, queue, pool_mem, bufs, BUFS);
    // SAFETY: inside the `BUFS` pages of `bufs`.
    let page = |i: usize| NonNull::slice_from_raw_parts(unsafe { bufs.add(i * PAGE) }, PAGE);
    let group =
        |range: std::ops::Range<usize>| range.map(|i| (page(i), BufferDirection::DeviceToDriver)).collect::<Vec<_>>();
    let reaches_a_buffer =
        || reachable().values().any(|(pa, _)| (bufs_pa..bufs_pa + (BUFS * PAGE) as u64).contains(pa));
    assert_eq!(reachable().len(), 8, "the pool alone");

    // A whole group mapped ahead while the IOMMU PD serves nothing: the client gives up on
    // all of its MAPs. Then, still unserved, a second group: its MAPs are held back, not
    // posted (the Hal watches a group's worth of MAPs given up on, and these would be more).
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&group(0..MAX_GROUP)));
    assert_eq!((IommuHal::queue_stalls(), IommuHal::maps_held_back()), (1, 0));
    assert!(!IommuHal::map_queued(&group(MAX_GROUP..BUFS)));
    assert_eq!(IommuHal::maps_held_back(), 4, "none of the second group's MAPs posted");
    assert!(!reaches_a_buffer(), "nothing was served yet");
    queued::set_busy(false);

    // The next request's buffer, shared alone: still no room to track its MAP, so it is
    // copied through the pool, and nothing is posted (a MAP posted would have woken the
    // IOMMU PD, which serves what it was left: every MAP above).
    let wakeups = queued::wakeups();
    // SAFETY: valid for its length; unshared below.
    let iova = unsafe { IommuHal::share(page(MAX_GROUP), BufferDirection::DeviceToDriver) };
    assert_eq!(IommuHal::maps_held_back(), 5);
    assert_eq!(queued::wakeups(), wakeups, "nothing posted, so no wake-up");
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova, page(MAX_GROUP), BufferDirection::DeviceToDriver) };

    // The flush waits for the first group's MAPs, served late: each mapping is nobody's
    // and goes with the flush's UNMAPs. A MAP of the second group, had it been posted,
    // would have made a mapping no one knew of, left to the device.
    assert!(IommuHal::flush_queue());
    assert!(!reaches_a_buffer(), "a late MAP left the device a buffer: {:x?}", reachable());
    assert_eq!(reachable().len(), 8, "the pool alone");
    assert_eq!(calls(Op::Map), 1, "the pool's MAP, and no call since");

    // Tracking room again: the next group is mapped, and out of reach once flushed.
    assert!(IommuHal::map_queued(&group(MAX_GROUP..BUFS)));
    assert_eq!(reachable().len(), 8 + 4);
    assert!(IommuHal::flush_queue());
    assert_eq!(reachable().len(), 8, "the pool alone");
    assert_eq!(IommuHal::maps_held_back(), 5);
}
