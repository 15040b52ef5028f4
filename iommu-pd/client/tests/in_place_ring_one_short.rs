//! A group's MAPs meet a ring one slot short of them (a stalled exchange's entries still
//! in it): `post_all` posts none of them, rather than the first few; the group is not
//! mapped ahead, and when the IOMMU PD serves again it finds only the stalled entries.
//! Then a group that fills the emptied ring exactly: all of it posted and served. (Its
//! own test binary: the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{IommuHal, MAX_GROUP};
use iommu_client::Client;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable};

#[test]
fn a_group_one_slot_short_of_the_ring_posts_nothing_and_one_that_fits_posts_all() {
    // A ring of MAX_GROUP slots; MAX_GROUP + 2 buffers, the last one used alone first.
    const LAST: usize = MAX_GROUP + 1;
    let bufs = queued::Buffers::start::<MAX_GROUP>(MAX_GROUP + 2, MAX_GROUP as u32 + 2);
    let dev = BufferDirection::DeviceToDriver;
    let group = |from: usize, n: usize| -> Vec<(NonNull<[u8]>, BufferDirection)> {
        (from..from + n).map(|i| (bufs.page(i), dev)).collect()
    };
    let reached = |from: usize, n: usize| (from..from + n).filter(|&i| bufs.reached(i)).count();
    // Serve the ring once, as a wake-up would, without the Hal reading the answers.
    let serve = || {
        queued::serve_before_next_call();
        assert!(Client::new(queued::Serving).query().is_ok());
    };

    // Buffer LAST used and done with: its UNMAP pending.
    // SAFETY: valid for its length; unshared at once.
    let iova_last = unsafe { IommuHal::share(bufs.page(LAST), dev) };
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_last, bufs.page(LAST), dev) };
    // The IOMMU PD stalls under buffer LAST's UNMAP and buffers 0 and 1's MAPs: the UNMAP
    // withdrawn and made by the call, the MAPs given up on; three entries left in the
    // ring, MAX_GROUP - 3 slots free, and room to watch MAX_GROUP - 2 more MAPs.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&group(0, 2)));
    assert!(!bufs.reached(LAST));
    // MAX_GROUP - 2 MAPs, one more than the slots, even after a wake-up: none posted.
    assert!(!IommuHal::map_queued(&group(2, MAX_GROUP - 2)));
    assert_eq!(IommuHal::maps_held_back(), 0, "held back for want of watching room: not the test's case");

    // The IOMMU PD serves what is in the ring: buffers 0 and 1's late MAPs, and nothing of
    // the group that did not fit.
    queued::set_busy(false);
    serve();
    assert_eq!((reached(0, 2), reached(2, MAX_GROUP - 2)), (2, 0), "{:x?}", reachable());
    // The Hal reads the late answers and unmaps those mappings, nobody's.
    assert!(IommuHal::flush_queue());
    assert_eq!(reachable().len(), 8, "the pool alone: {:x?}", reachable());

    // Now the ring is empty and the Hal watches nothing: a group of MAX_GROUP fills it exactly.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&group(0, MAX_GROUP)), "posted, not answered");
    queued::set_busy(false);
    serve();
    assert_eq!(reached(0, MAX_GROUP), MAX_GROUP, "all MAX_GROUP posted: {:x?}", reachable());
    assert!(IommuHal::flush_queue());
    assert_eq!(reachable().len(), 8, "the pool alone: {:x?}", reachable());
    assert_eq!(IommuHal::failure(), None);
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (1, 1), "the pool's MAP; buffer LAST's UNMAP by the call");
}
