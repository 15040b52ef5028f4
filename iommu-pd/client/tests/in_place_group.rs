//! Several requests in flight through the mapping queue (`IommuHal::map_queued`): a
//! group's MAPs go with the previous group's UNMAPs, one wake-up for all, against the real
//! service core over the model IOMMU. Checked after each step: which pages the device can
//! reach (tables and the model's cached translations), how many times the IOMMU PD was
//! woken, and that no call was made. (Its own test binary: the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{InPlace, IommuHal, Reach, MAX_GROUP};
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::{Op, Rights};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, pages, reachable, PAGE};
use queued::wakeups;

/// Whether the device reaches the page at `pa` at any IOVA.
fn reaches(pa: u64) -> bool {
    reachable().values().any(|(p, _)| *p == pa)
}

const GROUP: usize = 4;
const BUF_PAGES: usize = 2 * GROUP;

/// Two groups of four one-page buffers: pages 0 to 3, and 4 to 7.
fn group(bufs: NonNull<u8>, which: usize) -> [NonNull<[u8]>; GROUP] {
    // SAFETY: inside the 8 pages of `bufs`.
    core::array::from_fn(|i| NonNull::slice_from_raw_parts(unsafe { bufs.add((which * GROUP + i) * PAGE) }, PAGE))
}

fn reads(g: &[NonNull<[u8]>; GROUP]) -> [(NonNull<[u8]>, BufferDirection); GROUP] {
    g.map(|b| (b, BufferDirection::DeviceToDriver))
}

#[test]
fn a_groups_maps_go_with_the_previous_groups_unmaps_in_one_wake_up() {
    let (pool_mem, bufs) = (pages(8), pages(BUF_PAGES));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    let pa = |page: usize| bufs_pa + (page * PAGE) as u64;
    // The pool, and two groups mapped at once while one group's UNMAPs and the next one's
    // MAPs are in one batch.
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, BUF_PAGES, 1 + 2 * GROUP as u32);
    let queue = Box::leak(Box::<OwnedQueue<64>>::default()).queue().unwrap();
    let memory = queued::start(cfg, queue, pool_mem, bufs, BUF_PAGES);
    let (a, b) = (group(bufs, 0), group(bufs, 1));
    assert_eq!(reachable().len(), 8, "the pool alone");

    // Group A: four MAPs, one wake-up; the device reaches A's pages, read/write.
    assert!(IommuHal::map_queued(&reads(&a)));
    assert_eq!(wakeups(), 1);
    assert_eq!(reachable().len(), 8 + GROUP);
    // Sharing each takes its mapping, with no wake-up.
    // SAFETY: valid for their length; unshared below.
    let iovas_a = a.map(|buf| unsafe { IommuHal::share(buf, BufferDirection::DeviceToDriver) });
    assert_eq!(wakeups(), 1, "a share of a buffer mapped ahead wakes nobody");
    for (i, iova) in iovas_a.iter().enumerate() {
        assert_eq!(reachable().get(iova), Some(&(pa(i), Rights::READ_WRITE)), "buffer {i}");
    }
    for (buf, iova) in a.iter().zip(iovas_a) {
        // SAFETY: shared above.
        unsafe { IommuHal::unshare(iova, *buf, BufferDirection::DeviceToDriver) };
    }
    // Unshared, their UNMAPs wait for the next group: A is still the device's.
    assert_eq!((reachable().len(), IommuHal::retired(), wakeups()), (8 + GROUP, 0, 1));

    // Group B, one of them only read by the device: its MAPs with A's four UNMAPs, one
    // wake-up; when it returns A is out of reach at every IOVA, confirmed.
    let mut group_b = reads(&b);
    group_b[3].1 = BufferDirection::DriverToDevice;
    assert!(IommuHal::map_queued(&group_b));
    assert_eq!((wakeups(), IommuHal::retired()), (2, GROUP as u64));
    for i in 0..GROUP {
        assert!(!reaches(pa(i)), "A's buffer {i} outlived its UNMAP's completion");
    }
    assert_eq!(reachable().len(), 8 + GROUP);
    // SAFETY: valid for their length; unshared below.
    let iovas_b = group_b.map(|(buf, dir)| unsafe { IommuHal::share(buf, dir) });
    assert_eq!(wakeups(), 2);
    for (i, iova) in iovas_b.iter().enumerate() {
        let rights = if i == 3 { Rights::READ } else { Rights::READ_WRITE };
        assert_eq!(reachable().get(iova), Some(&(pa(GROUP + i), rights)), "buffer {}", GROUP + i);
    }
    // Only two of B's requests end before the next group: the other two are still in
    // flight, so nothing of theirs may be unmapped.
    for i in 0..2 {
        // SAFETY: shared above.
        unsafe { IommuHal::unshare(iovas_b[i], group_b[i].0, group_b[i].1) };
    }

    // Group A again, but only three of it mapped ahead: two UNMAPs and three MAPs in one
    // wake-up; B's last two stay mapped.
    assert!(IommuHal::map_queued(&reads(&a)[..3]));
    assert_eq!((wakeups(), IommuHal::retired()), (3, GROUP as u64 + 2));
    assert!(!reaches(pa(GROUP)) && !reaches(pa(GROUP + 1)));
    assert!(reaches(pa(GROUP + 2)) && reaches(pa(GROUP + 3)));
    assert!((0..3).all(|i| reaches(pa(i))) && !reaches(pa(3)));
    // One of them is shared (the others' requests never start: a mapping made ahead that
    // nobody takes must not outlive its group).
    // SAFETY: valid for its length; unshared below.
    let iova = unsafe { IommuHal::share(a[0], BufferDirection::DeviceToDriver) };
    for i in 2..GROUP {
        // SAFETY: shared above.
        unsafe { IommuHal::unshare(iovas_b[i], group_b[i].0, group_b[i].1) };
    }
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova, a[0], BufferDirection::DeviceToDriver) };
    // The flush sends B's last two, A's shared one and A's two never shared: one wake-up,
    // and then the device reaches the pool alone.
    assert!(IommuHal::flush_queue());
    assert_eq!((wakeups(), IommuHal::retired()), (4, GROUP as u64 + 2 + 5));
    assert_eq!(reachable().len(), 8, "the pool alone");
    // A buffer the group did not map ahead is mapped at its share, as before.
    // SAFETY: valid for its length; unshared below.
    let iova = unsafe { IommuHal::share(b[0], BufferDirection::DeviceToDriver) };
    assert_eq!((wakeups(), reachable().get(&iova)), (5, Some(&(pa(GROUP), Rights::READ_WRITE))));
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova, b[0], BufferDirection::DeviceToDriver) };
    assert!(IommuHal::flush_queue());
    assert_eq!((wakeups(), reachable().len()), (6, 8));

    // Refused, with nothing posted: more than a group, a buffer outside the memory, and
    // memory that is not mapped through the queue.
    let too_many = [(a[0], BufferDirection::DeviceToDriver); MAX_GROUP + 1];
    assert!(!IommuHal::map_queued(&too_many));
    let outside = NonNull::slice_from_raw_parts(pool_mem, PAGE);
    assert!(!IommuHal::map_queued(&[
        (a[0], BufferDirection::DeviceToDriver),
        (outside, BufferDirection::DeviceToDriver)
    ]));
    // SAFETY: as above; the device reaches nothing there, and nothing is shared.
    unsafe { IommuHal::share_in_place(InPlace { reach: Reach::Always { device_addr: bufs_pa }, ..memory }) };
    assert!(!IommuHal::map_queued(&reads(&a)));
    assert_eq!((wakeups(), reachable().len()), (6, 8));

    // No MAP or UNMAP call but the pool's MAP; no UNMAP unconfirmed, no wait unanswered.
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (1, 0));
    assert_eq!((IommuHal::unmap_failures(), IommuHal::queue_stalls()), (0, 0));
}
