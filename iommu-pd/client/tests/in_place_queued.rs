//! Sharing buffers in place through the mapping queue (`Reach::Queued`): a buffer's MAP
//! goes with the previous buffer's UNMAP, one notification for both, against the real
//! service core over the model IOMMU; once `share` returns, the previous buffer is out
//! of the device's reach and the new one in it, and no call was made. (Its own test
//! binary: the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::IommuHal;
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::{Op, Rights};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, pages, reachable, PAGE};
use queued::wakeups;

#[test]
fn the_next_buffers_map_takes_the_previous_ones_away_confirmed() {
    let (pool_mem, bufs) = (pages(8), pages(4));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    // Mappings: the pool and two in-place buffers at a time.
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, 4, 3);
    let queue = Box::leak(Box::<OwnedQueue<8>>::default()).queue().unwrap();
    queued::start(cfg, queue, pool_mem, bufs, 4);
    assert_eq!(reachable().len(), 8, "the pool alone");

    // Request 1: buffer A, page 0: its MAP alone, one notification.
    let a = NonNull::slice_from_raw_parts(bufs, PAGE);
    // SAFETY: valid for its length; unshared below.
    let iova_a = unsafe { IommuHal::share(a, BufferDirection::DeviceToDriver) };
    assert_eq!(reachable().get(&iova_a), Some(&(bufs_pa, Rights::READ_WRITE)));
    assert_eq!(wakeups(), 1);
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_a, a, BufferDirection::DeviceToDriver) };
    // Its UNMAP is posted, not sent: A is still the device's, and not yet the driver's.
    assert_eq!((reachable().len(), IommuHal::retired(), wakeups()), (9, 0, 1));

    // Request 2: buffer B, page 2, which the device only reads: its MAP (read-only) and
    // A's UNMAP in one notification; when share returns A is gone, confirmed.
    // SAFETY: inside `bufs`.
    let b = NonNull::slice_from_raw_parts(unsafe { bufs.add(2 * PAGE) }, PAGE);
    // SAFETY: valid for its length; unshared below.
    let iova_b = unsafe { IommuHal::share(b, BufferDirection::DriverToDevice) };
    assert_eq!(wakeups(), 2);
    assert_eq!(IommuHal::retired(), 1);
    let now = reachable();
    // B's MAP may take A's IOVA back (A's removal is confirmed first, as two calls would
    // be), so A's page is looked for at every IOVA, not at its own.
    assert!(!now.values().any(|(pa, _)| *pa == bufs_pa), "A's mapping outlived its UNMAP's completion");
    assert_eq!(now.get(&iova_b), Some(&(bufs_pa + 2 * PAGE as u64, Rights::READ)));
    assert_eq!(now.len(), 9);
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_b, b, BufferDirection::DriverToDevice) };
    // The last UNMAP goes alone when the driver flushes.
    assert!(IommuHal::flush_queue());
    assert_eq!((reachable().len(), IommuHal::retired(), wakeups()), (8, 2, 3));
    // No MAP or UNMAP call but the pool's MAP: the buffers went through the queue.
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (1, 0));
    assert_eq!((IommuHal::unmap_failures(), IommuHal::queue_stalls()), (0, 0));
}
