//! What the in-place tests share: host memory standing for physical pages, the service's
//! configuration over it, and the service itself as the driver reaches it (each test
//! binary has its own: the Hal is one static). The mapping queue's side is `queued.rs`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use iommu_client::hal::{DmaPool, InPlace, IommuHal, Reach};
use iommu_client::{Channel, Client};
use iommu_pd::model::ModelHw;
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{DeviceId, Handle, Op, Rights};

thread_local! {
    pub static SERVICE: RefCell<Option<Service<'static, ModelHw>>> = const { RefCell::new(None) };
    static CALLS: RefCell<BTreeMap<u64, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// The IOMMU PD, as the driver reaches it: client 0's calls, counted by label.
pub fn call(label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
    CALLS.with(|c| *c.borrow_mut().entry(label).or_default() += 1);
    SERVICE.with(|s| {
        let r = s.borrow_mut().as_mut().unwrap().handle(0, label, mrs);
        if let iommu_protocol::Reply::Ok { values, .. } = r {
            *reply = values;
        }
        r.label()
    })
}

/// Calls made with `op`'s label.
pub fn calls(op: Op) -> u64 {
    CALLS.with(|c| c.borrow().get(&(op as u64)).copied().unwrap_or(0))
}

/// What the device can reach (tables and the model's cached translations): IOVA page ->
/// (physical page, rights).
pub fn reachable() -> BTreeMap<u64, (u64, Rights)> {
    SERVICE.with(|s| s.borrow().as_ref().unwrap().hw().reachable(0))
}

/// The model IOMMU under the service fails `first`, then each of `then`, as the service
/// meets them (`ModelHw::fail_next`, `fail_then`).
#[allow(dead_code, reason = "only the tests of a failing IOMMU ask")]
pub fn fail(first: &'static str, then: &[&'static str]) {
    SERVICE.with(|s| {
        let mut s = s.borrow_mut();
        let hw = s.as_mut().unwrap().hw_mut();
        hw.fail_next = Some(first);
        hw.fail_then = then.to_vec();
    });
}

/// `call` as a client's channel.
pub struct Direct;

impl Channel for Direct {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
        call(label, mrs, reply)
    }
}

pub const PAGE: usize = 4096;

/// `n` zeroed, page-aligned host pages, never freed: their addresses stand for physical
/// addresses.
pub fn pages(n: usize) -> NonNull<u8> {
    let layout = std::alloc::Layout::from_size_align(n * PAGE, PAGE).unwrap();
    // SAFETY: non-zero size.
    NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap()
}

/// One client ("virtio-blk": a quota of `mappings` mappings, and pages for the pool and
/// every buffer page twice over), one device, and a capability over each of two regions:
/// an 8-page pool at `pool_pa` and `buf_pages` pages of in-place buffers at `bufs_pa`.
pub fn pool_and_buffer_pages(pool_pa: u64, bufs_pa: u64, buf_pages: usize, mappings: u32) -> Config<'static> {
    let max_pages = 8 + 2 * buf_pages as u64;
    let clients =
        Box::leak(Box::new([ClientConfig { name: "virtio-blk", max_mappings: mappings, max_pages, max_grants: 0 }]));
    let devices = Box::leak(Box::new([DeviceConfig {
        name: "blk",
        stream: 8,
        extra_streams: &[],
        owner: 0,
        iova_base: 0x10_0000,
        iova_size: 1 << 24,
        resume_allowed: true,
    }]));
    let regions = Box::leak(Box::new([
        RegionConfig { name: "pool", pa: pool_pa, size: 8 * PAGE as u64 },
        RegionConfig { name: "buffers", pa: bufs_pa, size: (buf_pages * PAGE) as u64 },
    ]));
    let cap = |region, pages: usize| CapConfig {
        client: 0,
        region,
        offset: 0,
        len: (pages * PAGE) as u64,
        rights: Rights::READ_WRITE,
        devices: 1,
        grant_to: 0,
    };
    let caps = Box::leak(Box::new([cap(0, 8), cap(1, buf_pages)]));
    Config {
        clients: &clients[..],
        devices: &devices[..],
        regions: &regions[..],
        caps: &caps[..],
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1, resume_rest_ms: 0 },
    }
}

/// The service over `pool_and_buffer_pages` (`buf_pages` pages of buffers, a quota of
/// `mappings`), the Hal's pool (8 pages) mapped by a call, and the buffers shared in place
/// per request (each buffer's MAP and UNMAP a call). Returns the buffers' memory.
#[allow(dead_code, reason = "only the tests of per-request buffers use it")]
pub fn start_per_request(buf_pages: usize, mappings: u32) -> NonNull<u8> {
    let (pool_mem, bufs) = (pages(8), pages(buf_pages));
    let cfg = pool_and_buffer_pages(pool_mem.as_ptr() as u64, bufs.as_ptr() as u64, buf_pages, mappings);
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 8)>::default()));
    SERVICE.with(|s| *s.borrow_mut() = Some(Service::new(ModelHw::default(), cfg, tables.storage()).unwrap()));
    // SAFETY: `pool_mem` is the pool region's memory, used for nothing else.
    let pool = unsafe { DmaPool::map(&mut Client::new(Direct), Handle(0), 0, DeviceId(0), pool_mem, 8) }.unwrap();
    IommuHal::install(pool);
    let reach = Reach::PerRequest { cap: Handle(1), cap_offset: 0, device: DeviceId(0), call };
    // SAFETY: `bufs` is the buffers region's memory, which the device may reach.
    unsafe { IommuHal::share_in_place(InPlace { va: bufs, len: buf_pages * PAGE, reach }) };
    bufs
}
