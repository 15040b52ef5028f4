//! A MAP the Hal gave up on (the IOMMU PD stalled), served late, meets a STOP and a RESUME
//! of its device: the STOP removed the mapping its answer names, and after the RESUME the
//! device's IOVAs are handed out again from the window's start, to mappings the Hal does
//! not see (the driver's pool, mapped again by the call). Read after that, the late answer
//! must not send an UNMAP that takes the pool from under the device. (Its own test binary:
//! the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{DmaPool, IommuHal};
use iommu_client::Client;
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::{DeviceId, Handle, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, pages, reachable, Direct, PAGE};

/// The lowest IOVA of device 0's window (`pool_and_buffer_pages`).
const WINDOW_BASE: u64 = 0x10_0000;

/// The device's IOVAs at which it reaches the pool's pages, in order.
fn pool_iovas(pool_pa: u64) -> Vec<u64> {
    let pool = pool_pa..pool_pa + 8 * PAGE as u64;
    reachable().iter().filter(|(_, (pa, _))| pool.contains(pa)).map(|(iova, _)| *iova).collect()
}

/// The driver resets its device (the IOMMU PD stalled, its request timed out): STOP and
/// RESUME, then its pool mapped again (the STOP took it) by the call, which finds the
/// IOMMU PD serving its queue first if `served_first`.
fn reset(pool_mem: NonNull<u8>, served_first: bool) {
    assert!(IommuHal::stop(DeviceId(0)).is_ok());
    assert!(reachable().is_empty(), "STOP took every mapping: {:x?}", reachable());
    assert_eq!(Client::new(Direct).resume(DeviceId(0)), Ok(()));
    let _old = IommuHal::uninstall();
    if served_first {
        queued::serve_before_next_call();
    }
    // SAFETY: `pool_mem` is the pool region's memory, used for nothing else (the old pool,
    // unmapped by the STOP, is dropped).
    let pool = unsafe { DmaPool::map(&mut Client::new(queued::Serving), Handle(0), 0, DeviceId(0), pool_mem, 8) };
    IommuHal::install(pool.unwrap());
}

#[test]
fn a_late_answer_from_before_a_stop_does_not_unmap_what_the_device_was_given_since() {
    let (pool_mem, bufs) = (pages(8), pages(2));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, 2, 4);
    let queue = Box::leak(Box::<OwnedQueue<8>>::default()).queue().unwrap();
    queued::start(cfg, queue, pool_mem, bufs, 2);
    // SAFETY: inside the 2 pages of `bufs`.
    let page = |i: usize| NonNull::slice_from_raw_parts(unsafe { bufs.add(i * PAGE) }, PAGE);
    let reaches = |i: usize| reachable().values().any(|(p, _)| *p == bufs_pa + (i * PAGE) as u64);
    let dev = BufferDirection::DeviceToDriver;
    assert_eq!(pool_iovas(pool_pa).first(), Some(&WINDOW_BASE));

    // The IOMMU PD stalls: buffer 0's MAP is given up on, left in the ring.
    queued::set_busy(true);
    assert!(!IommuHal::map_queued(&[(page(0), dev)]));
    // The driver resets the device; the IOMMU PD serves again, the stalled MAP just before
    // the pool's MAP call: the device was empty, so buffer 0 lands at the window's start,
    // the pool above it.
    queued::set_busy(false);
    reset(pool_mem, true);
    assert!(reaches(0), "buffer 0's late mapping, nobody's: {:x?}", reachable());
    assert_eq!(pool_iovas(pool_pa).first(), Some(&(WINDOW_BASE + PAGE as u64)));

    // A second reset before the Hal read that answer: buffer 0's mapping goes with the
    // STOP, and the pool is mapped again at the window's start, where the answer says
    // buffer 0 is.
    reset(pool_mem, false);
    assert_eq!(pool_iovas(pool_pa).first(), Some(&WINDOW_BASE), "the test's premise: the IOVA is reused");

    // The driver's next request, through the queue: the Hal reads buffer 0's late answer
    // now, and flushes.
    // SAFETY: valid for its length; unshared below.
    let iova_1 = unsafe { IommuHal::share(page(1), dev) };
    assert!(reaches(1));
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_1, page(1), dev) };
    assert!(IommuHal::flush_queue());
    assert!(!reaches(0) && !reaches(1), "{:x?}", reachable());
    let expected: Vec<u64> = (0..8).map(|i| WINDOW_BASE + i * PAGE as u64).collect();
    assert_eq!(pool_iovas(pool_pa), expected, "the pool, where the device's queues live, unmapped: {:x?}", reachable());
    assert_eq!(IommuHal::failure(), None);
    assert_eq!((calls(Op::Stop), calls(Op::Unmap)), (2, 0));
}
