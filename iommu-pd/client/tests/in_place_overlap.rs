//! Mapping overlapped with a group's reads (`IommuHal::map_queued` called while the
//! current group's buffers are shared, as blk-bench's in-flight queue path does): the batch
//! under group B's reads carries A's UNMAPs and C's MAPs, and must leave B's mappings
//! alone, since B's requests are still in flight. Against the real service core over the
//! model IOMMU, checked after each step: which pages the device can reach (tables and the
//! model's cached translations), the IOMMU PD's wake-ups, and that no call was made; and a
//! batch under a group's reads that the IOMMU PD serves only late. (Its own test binary:
//! the Hal is one static.)

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

/// Whether the device reaches the page at `pa` at any IOVA.
fn reaches(pa: u64) -> bool {
    reachable().values().any(|(p, _)| *p == pa)
}

const GROUP: usize = 4;
const SETS: usize = 3;
const BUF_PAGES: usize = SETS * GROUP;

type Set = [NonNull<[u8]>; GROUP];

/// Set `which` of three of four one-page buffers: pages 0 to 3, 4 to 7, 8 to 11.
fn set(bufs: NonNull<u8>, which: usize) -> Set {
    // SAFETY: inside the 12 pages of `bufs`.
    core::array::from_fn(|i| NonNull::slice_from_raw_parts(unsafe { bufs.add((which * GROUP + i) * PAGE) }, PAGE))
}

fn reads(s: &Set) -> [(NonNull<[u8]>, BufferDirection); GROUP] {
    s.map(|b| (b, BufferDirection::DeviceToDriver))
}

/// The group's requests start: each buffer shared (virtio-drivers' `read_blocks_nb`).
fn start(s: &Set) -> [u64; GROUP] {
    // SAFETY: valid for their length; unshared by `end`.
    s.map(|b| unsafe { IommuHal::share(b, BufferDirection::DeviceToDriver) })
}

/// The group's requests end: each buffer unshared (`complete_read_blocks`).
fn end(s: &Set, iovas: [u64; GROUP]) {
    for (b, iova) in s.iter().zip(iovas) {
        // SAFETY: shared by `start`.
        unsafe { IommuHal::unshare(iova, *b, BufferDirection::DeviceToDriver) };
    }
}

#[test]
fn the_batch_under_a_groups_reads_unmaps_the_group_before_and_maps_the_next_leaving_its_own() {
    let (pool_mem, bufs) = (pages(8), pages(BUF_PAGES));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    let pa = |page: usize| bufs_pa + (page * PAGE) as u64;
    let set_reached = |which: usize| (0..GROUP).filter(|i| reaches(pa(which * GROUP + i))).count();
    // The pool and three groups' mappings at once: one in flight, one leaving, one arriving.
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, BUF_PAGES, 1 + (SETS * GROUP) as u32);
    let queue = Box::leak(Box::<OwnedQueue<64>>::default()).queue().unwrap();
    queued::start(cfg, queue, pool_mem, bufs, BUF_PAGES);
    let (a, b, c) = (set(bufs, 0), set(bufs, 1), set(bufs, 2));
    assert_eq!(reachable().len(), 8, "the pool alone");

    // A's MAPs alone (a block's first group: nothing in flight to overlap).
    assert!(IommuHal::map_queued(&reads(&a)));
    let iovas_a = start(&a);
    assert_eq!(wakeups(), 1, "A's requests take the mappings made ahead");
    // Under A's reads: B's MAPs, nothing to unmap. A stays mapped.
    assert!(IommuHal::map_queued(&reads(&b)));
    assert_eq!((wakeups(), IommuHal::retired()), (2, 0));
    assert_eq!((set_reached(0), set_reached(1), set_reached(2)), (GROUP, GROUP, 0));
    for (i, iova) in iovas_a.iter().enumerate() {
        assert_eq!(reachable().get(iova), Some(&(pa(i), Rights::READ_WRITE)), "A's buffer {i} under its read");
    }
    end(&a, iovas_a);
    // A's reads are done, its UNMAPs pending: still the device's until the next batch.
    assert_eq!((set_reached(0), IommuHal::retired()), (GROUP, 0));

    // B starts; under its reads, A's UNMAPs and C's MAPs in one batch. When it returns A is
    // out of reach at every IOVA, confirmed, and B, whose reads are in flight, is untouched.
    let iovas_b = start(&b);
    assert_eq!(wakeups(), 2);
    assert!(IommuHal::map_queued(&reads(&c)));
    assert_eq!((wakeups(), IommuHal::retired()), (3, GROUP as u64));
    assert_eq!((set_reached(0), set_reached(1), set_reached(2)), (0, GROUP, GROUP));
    for (i, iova) in iovas_b.iter().enumerate() {
        assert_eq!(reachable().get(iova), Some(&(pa(GROUP + i), Rights::READ_WRITE)), "B's buffer {i} under its read");
    }
    end(&b, iovas_b);

    // C, a block's last group: under its reads, B's UNMAPs alone.
    let iovas_c = start(&c);
    assert!(IommuHal::flush_queue());
    assert_eq!((wakeups(), IommuHal::retired()), (4, 2 * GROUP as u64));
    assert_eq!((set_reached(0), set_reached(1), set_reached(2)), (0, 0, GROUP));
    end(&c, iovas_c);
    // After the block, C's UNMAPs alone: the device reaches the pool alone.
    assert!(IommuHal::flush_queue());
    assert_eq!((wakeups(), IommuHal::retired()), (5, 3 * GROUP as u64));
    assert_eq!(reachable().len(), 8, "the pool alone");

    // The batch under A's reads served only late (the IOMMU PD busy past the client's
    // patience): the client gives up on it and says so, and A, in flight, stays mapped.
    assert!(IommuHal::map_queued(&reads(&c)));
    let iovas_c = start(&c);
    assert!(IommuHal::map_queued(&reads(&a)));
    end(&c, iovas_c);
    let iovas_a = start(&a);
    assert_eq!(set_reached(2), GROUP, "C's UNMAPs go with the next batch");
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&reads(&b)), "nothing was served");
    queued::set_busy(false);
    assert_eq!((IommuHal::queue_stalls(), IommuHal::unmap_failures()), (1, GROUP as u64));
    // C's UNMAPs, unanswered, were made by the call before `map_queued` returned.
    assert_eq!(set_reached(2), 0, "C's buffers left to the device");
    assert_eq!(calls(Op::Unmap), GROUP as u64);
    assert_eq!(set_reached(0), GROUP, "A is in flight");
    end(&a, iovas_a);
    // The next batch (A's UNMAPs) is served with the one left in the ring (C's UNMAPs,
    // withdrawn, which answer UnknownOp to nobody now, and B's MAPs): B's mappings are nobody's,
    // since no request will take them, and go with the next UNMAPs, so after the flush the
    // device reaches the pool alone.
    assert!(IommuHal::flush_queue());
    assert_eq!(reachable().len(), 8, "the pool alone: {:x?}", reachable());
    assert_eq!((IommuHal::maps_held_back(), IommuHal::queue_stalls()), (0, 1));

    // No MAP or UNMAP call but the pool's MAP and C's UNMAPs the stall left unanswered.
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (1, GROUP as u64));
}
