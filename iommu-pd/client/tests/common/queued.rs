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
    // (Room for two devices: a test may give the client a second.)
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 2, 4, 16)>::default()));
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

/// `n` one-page in-place buffers, shared through a queue of `ENTRIES` slots (`start`) over
/// the service with `pool_and_buffer_pages` and a quota of `mappings` mappings.
#[allow(dead_code, reason = "only the tests of one-page buffers use it")]
pub struct Buffers {
    base: NonNull<u8>,
    pa: u64,
}

#[allow(dead_code, reason = "only the tests of one-page buffers use it")]
impl Buffers {
    pub fn start<const ENTRIES: usize>(n: usize, mappings: u32) -> Self {
        let (pool_mem, base) = (pages(8), pages(n));
        let (pool_pa, pa) = (pool_mem.as_ptr() as u64, base.as_ptr() as u64);
        let cfg = crate::common::pool_and_buffer_pages(pool_pa, pa, n, mappings);
        let queue = Box::leak(Box::<OwnedQueue<ENTRIES>>::default()).queue().unwrap();
        start(cfg, queue, pool_mem, base, n);
        Buffers { base, pa }
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
