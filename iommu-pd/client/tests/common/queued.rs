//! The IOMMU PD's side of the mapping queue for the in-place tests that use it: client 0's
//! queue, served one batch per wake-up, the wake-ups counted.

use std::cell::Cell;
use std::ptr::NonNull;

use iommu_client::hal::{DmaPool, InPlace, IommuHal, NotifyFn, Reach};
use iommu_client::queue::MapQueue;
use iommu_client::{Channel, Client};
use iommu_pd::model::ModelHw;
use iommu_pd::{Config, Service};
use iommu_protocol::queue::{OwnedQueue, Queue};
use iommu_protocol::{DeviceId, Handle};
use virtio_drivers::BufferDirection;

use crate::common::{pages, reachable, Direct, PAGE, SERVICE};

thread_local! {
    static QUEUE: Cell<Option<Queue<'static>>> = const { Cell::new(None) };
    static WAKEUPS: Cell<u64> = const { Cell::new(0) };
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static SERVES_BEFORE_CALL: Cell<bool> = const { Cell::new(false) };
}

/// The IOMMU PD's call, after one batch of client 0's queue if `serve_before_next_call`
/// asked for it.
#[allow(dead_code, reason = "only the tests that install the queue again name it")]
pub fn call(label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
    if SERVES_BEFORE_CALL.with(|s| s.replace(false)) {
        let q = QUEUE.with(Cell::get).unwrap();
        SERVICE.with(|s| s.borrow_mut().as_mut().unwrap().serve_queue(0, &q));
    }
    crate::common::call(label, mrs, reply)
}

/// `call` as a client's channel (a call the IOMMU PD may serve a batch of the queue before).
#[allow(dead_code, reason = "only the tests that call the IOMMU PD themselves use it")]
pub struct Serving;

impl Channel for Serving {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
        call(label, mrs, reply)
    }
}

/// The next call finds the IOMMU PD serving a batch of the queue first (busy or not): the
/// notification it was sent earlier, taken just before the call.
#[allow(dead_code, reason = "only the tests of that order ask")]
pub fn serve_before_next_call() {
    SERVES_BEFORE_CALL.with(|s| s.set(true));
}

/// The IOMMU PD's side of a wake-up: one batch of client 0's queue (none while `busy`).
#[allow(dead_code, reason = "only the tests that install the queue again name it")]
pub fn wake_iommu_pd() {
    WAKEUPS.with(|w| w.set(w.get() + 1));
    if BUSY.with(Cell::get) {
        return;
    }
    let q = QUEUE.with(Cell::get).unwrap();
    SERVICE.with(|s| s.borrow_mut().as_mut().unwrap().serve_queue(0, &q));
}

/// While `busy`, a wake-up serves nothing: the IOMMU PD busy elsewhere (or paced) for
/// longer than the client waits, then serving what it was left.
#[allow(dead_code, reason = "only the tests of a slow IOMMU PD make it busy")]
pub fn set_busy(busy: bool) {
    BUSY.with(|b| b.set(busy));
}

/// Wake-ups so far.
#[allow(dead_code, reason = "only the tests that count wake-ups ask")]
pub fn wakeups() -> u64 {
    WAKEUPS.with(Cell::get)
}

/// The service over `cfg` (from `pool_and_buffer_pages`) with `queue` as client 0's; the
/// Hal's pool (the 8 pages at `pool_mem`) mapped by a call, and the `buf_pages` pages at
/// `bufs` shared in place through the queue. Returns that in-place memory.
pub fn start(
    cfg: Config<'static>,
    queue: Queue<'static>,
    pool_mem: NonNull<u8>,
    bufs: NonNull<u8>,
    buf_pages: usize,
) -> InPlace {
    // (Room for two devices: a test may give the client a second; and for the mappings of
    // two groups of `MAX_GROUP` beside the pool.)
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 2, 4, 40)>::default()));
    SERVICE.with(|s| *s.borrow_mut() = Some(Service::new(ModelHw::default(), cfg, tables.storage()).unwrap()));
    QUEUE.with(|q| q.set(Some(queue)));
    // SAFETY: `pool_mem` is the pool region's memory, used for nothing else.
    let pool = unsafe { DmaPool::map(&mut Client::new(Direct), Handle(0), 0, DeviceId(0), pool_mem, 8) }.unwrap();
    IommuHal::install(pool);
    IommuHal::install_queue(MapQueue::new(queue, NotifyFn(wake_iommu_pd)), call);
    let memory = InPlace {
        va: bufs,
        len: buf_pages * PAGE,
        reach: Reach::Queued { cap: Handle(1), cap_offset: 0, device: DeviceId(0) },
    };
    // SAFETY: `bufs` is the buffers region's memory (`cfg`'s second region), which the
    // device may reach.
    unsafe { IommuHal::share_in_place(memory) };
    memory
}

/// Client 0's queue region, as `start` was given it (for a test that installs it again).
#[allow(dead_code, reason = "only the tests that install the queue again use it")]
pub fn queue() -> Queue<'static> {
    QUEUE.with(Cell::get).unwrap()
}

/// The IOMMU PD stalls under the MAPs of `buffers` (and what the Hal sends with them):
/// the Hal gives up on them, left in the ring. The IOMMU PD serves them later, just before
/// the client's next call (a QUERY, made here), so their answers wait in the ring, unread.
#[allow(dead_code, reason = "only the tests of a late MAP use it")]
pub fn map_given_up_then_served(buffers: &[(NonNull<[u8]>, BufferDirection)]) {
    set_busy(true);
    assert!(!IommuHal::map_queued(buffers));
    set_busy(false);
    serve_before_next_call();
    assert!(Client::new(Serving).query().is_ok());
}

/// STOP and RESUME of device 0 through the Hal (the STOP took every mapping); the Hal's
/// pool, which the STOP unmapped, dropped.
#[allow(dead_code, reason = "only the tests of a device reset use it")]
pub fn stop_and_resume() {
    assert!(IommuHal::stop(DeviceId(0)).is_ok());
    assert!(reachable().is_empty(), "STOP took every mapping: {:x?}", reachable());
    assert_eq!(Client::new(Direct).resume(DeviceId(0)), Ok(()));
    let _old = IommuHal::uninstall();
}

/// `n` one-page in-place buffers, shared through a queue of `ENTRIES` slots (`start`) over
/// the service with `pool_and_buffer_pages` and a quota of `mappings` mappings.
#[allow(dead_code, reason = "only the tests of one-page buffers use it")]
pub struct Buffers {
    base: NonNull<u8>,
    pa: u64,
    /// The Hal's pool: 8 pages.
    pool: NonNull<u8>,
}

#[allow(dead_code, reason = "only the tests of one-page buffers use it")]
impl Buffers {
    pub fn start<const ENTRIES: usize>(n: usize, mappings: u32) -> Self {
        Self::start_with::<ENTRIES>(n, |pool_pa, pa| crate::common::pool_and_buffer_pages(pool_pa, pa, n, mappings))
    }

    /// `start` over the description `config(pool_pa, buffers_pa)` makes (one like
    /// `pool_and_buffer_pages`'s: the pool and the buffers its first two regions).
    pub fn start_with<const ENTRIES: usize>(n: usize, config: impl FnOnce(u64, u64) -> Config<'static>) -> Self {
        let (pool, base) = (pages(8), pages(n));
        let pa = base.as_ptr() as u64;
        let cfg = config(pool.as_ptr() as u64, pa);
        let queue = Box::leak(Box::<OwnedQueue<ENTRIES>>::default()).queue().unwrap();
        start(cfg, queue, pool, base, n);
        Buffers { base, pa, pool }
    }

    /// The pool's physical address.
    pub fn pool_pa(&self) -> u64 {
        self.pool.as_ptr() as u64
    }

    /// The device's IOVAs at which it reaches the pool's pages, in order.
    pub fn pool_iovas(&self) -> Vec<u64> {
        let pool = self.pool_pa()..self.pool_pa() + 8 * PAGE as u64;
        reachable().iter().filter(|(_, (pa, _))| pool.contains(pa)).map(|(iova, _)| *iova).collect()
    }

    /// The pool mapped again by a call over `channel`, and installed in the Hal (after a
    /// STOP took it and the Hal's old pool was dropped).
    pub fn map_pool_again(&self, channel: impl Channel) {
        // SAFETY: `pool` is the pool region's memory, used for nothing else (the old pool,
        // unmapped by the STOP, is dropped).
        let pool = unsafe { DmaPool::map(&mut Client::new(channel), Handle(0), 0, DeviceId(0), self.pool, 8) };
        IommuHal::install(pool.unwrap());
    }

    /// Buffer `i`.
    pub fn page(&self, i: usize) -> NonNull<[u8]> {
        // SAFETY: callers name one of the `n` pages.
        NonNull::slice_from_raw_parts(unsafe { self.base.add(i * PAGE) }, PAGE)
    }

    /// Its physical address.
    pub fn pa(&self, i: usize) -> u64 {
        self.pa + (i * PAGE) as u64
    }

    /// Whether the device reaches buffer `i` at any IOVA.
    pub fn reached(&self, i: usize) -> bool {
        reachable().values().any(|(p, _)| *p == self.pa(i))
    }
}
