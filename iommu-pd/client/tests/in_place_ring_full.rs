//! UNMAPs that find the ring full (a stalled batch's entries still in it, the IOMMU PD
//! busy): the buffers are the driver's again once the flush returns, so their mappings go
//! by the call then; an UNMAP that could not be posted is not forgotten, and is not left
//! for the IOMMU PD to serve some time later either. (Its own test binary: the Hal is one
//! static.)

use std::ptr::NonNull;

use iommu_client::hal::IommuHal;
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::Op;
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, pages, reachable, PAGE};
use queued::wakeups;

/// A group of four one-page buffers (three sets, as blk-bench takes them in turn).
const GROUP: usize = 4;

type Set = Vec<(NonNull<[u8]>, BufferDirection)>;

fn start(s: &Set) -> Vec<u64> {
    // SAFETY: valid for their length; unshared by `end`.
    s.iter().map(|&(b, d)| unsafe { IommuHal::share(b, d) }).collect()
}

fn end(s: &Set, iovas: Vec<u64>) {
    for (&(b, d), iova) in s.iter().zip(iovas) {
        // SAFETY: shared by `start`.
        unsafe { IommuHal::unshare(iova, b, d) };
    }
}

#[test]
fn unmaps_that_find_the_ring_full_still_go_once_the_iommu_pd_serves() {
    const BUFS: usize = 3 * GROUP;
    let (pool_mem, bufs) = (pages(8), pages(BUFS));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, BUFS, 1 + BUFS as u32);
    // A ring of two groups' entries: one batch's UNMAPs and MAPs fill it.
    let queue = Box::leak(Box::<OwnedQueue<{ 2 * GROUP }>>::default()).queue().unwrap();
    queued::start(cfg, queue, pool_mem, bufs, BUFS);
    let set = |s: usize| -> Set {
        (0..GROUP)
            .map(|i| {
                // SAFETY: inside the `BUFS` pages of `bufs`.
                let page = unsafe { bufs.add((s * GROUP + i) * PAGE) };
                (NonNull::slice_from_raw_parts(page, PAGE), BufferDirection::DeviceToDriver)
            })
            .collect()
    };
    let (a, b, c) = (set(0), set(1), set(2));
    let b_pa = bufs_pa + (GROUP * PAGE) as u64;
    let reaches_b = || reachable().values().any(|(pa, _)| (b_pa..b_pa + (GROUP * PAGE) as u64).contains(pa));

    assert!(IommuHal::map_queued(&a));
    let iovas_a = start(&a);
    assert!(IommuHal::map_queued(&b), "B mapped under A's reads");
    end(&a, iovas_a);
    let iovas_b = start(&b);
    // The batch under B's reads (A's UNMAPs, C's MAPs) fills the ring and is not served:
    // A's UNMAPs, unanswered, are made by the call.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&c));
    assert_eq!(calls(Op::Unmap), GROUP as u64);
    end(&b, iovas_b);
    // B's UNMAPs find the ring full, even after a wake-up: made by the call too. The flush
    // ends (a wait for C's MAPs brings nothing) and says so, since those MAPs may yet be
    // served; B is the driver's again all the same.
    let before = wakeups();
    assert!(!IommuHal::flush_queue());
    assert!(wakeups() > before, "the flush woke the IOMMU PD for C's MAPs' answers");
    assert!(!reaches_b(), "B's buffers, the driver's again, are left to the device: {:x?}", reachable());
    assert_eq!(calls(Op::Unmap), 2 * GROUP as u64, "B's UNMAPs by the call");
    // The IOMMU PD serves again: C's late mappings go too.
    queued::set_busy(false);
    assert!(IommuHal::flush_queue());
    assert_eq!(reachable().len(), 8, "the pool alone: {:x?}", reachable());
    assert_eq!(IommuHal::failure(), None, "every UNMAP confirmed: no device stopped");
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (1, 2 * GROUP as u64), "the pool's MAP, and no MAP call since");
}
