//! The client and its Hal against the real service core (over the model IOMMU): the pool
//! is mapped with one MAP, allocations are inside it, bounce buffers carry the data both
//! ways, and the device can reach the pool and nothing else.

use std::ptr::NonNull;

use iommu_client::hal::{DmaPool, IommuHal};
use iommu_client::{Channel, Client};
use iommu_pd::model::ModelHw;
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Rights};
use virtio_drivers::{BufferDirection, Hal};

struct Local<'a> {
    service: Service<'a, ModelHw>,
    client: usize,
}

impl Channel for Local<'_> {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
        let r = self.service.handle(self.client, label, mrs);
        if let iommu_protocol::Reply::Ok { values, .. } = r {
            *reply = values;
        }
        r.label()
    }
}

#[test]
fn hal_maps_once_and_bounces_through_the_pool() {
    // The pool: 8 pages of host memory, whose address stands for its physical address.
    let layout = std::alloc::Layout::from_size_align(8 * 4096, 4096).unwrap();
    // SAFETY: non-zero size.
    let pool_mem = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).unwrap();
    let pa = pool_mem.as_ptr() as u64;
    let clients = [ClientConfig { name: "virtio-blk", max_mappings: 4, max_pages: 16, max_grants: 0 }];
    let devices = [DeviceConfig {
        name: "blk",
        stream: 8,
        extra_streams: &[],
        owner: 0,
        iova_base: 0x10_0000,
        iova_size: 1 << 20,
        resume_allowed: true,
    }];
    let regions = [RegionConfig { name: "dma-pool", pa, size: 8 * 4096 }];
    let caps = [CapConfig {
        client: 0,
        region: 0,
        offset: 0,
        len: 8 * 4096,
        rights: Rights::READ_WRITE,
        devices: 1,
        grant_to: 0,
    }];
    let cfg = Config {
        clients: &clients,
        devices: &devices,
        regions: &regions,
        caps: &caps,
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1, resume_rest_ms: 0 },
    };
    let mut tables = <iommu_pd::owned_storage!(1, 1, 4, 8)>::default();
    let mut client =
        Client::new(Local { service: Service::new(ModelHw::default(), cfg, tables.storage()).unwrap(), client: 0 });

    // Typed calls map errors to codes.
    assert_eq!(client.map(Handle(5), DeviceId(0), 0, 4096, None, Rights::READ), Err(ErrorCode::BadHandle));
    assert_eq!(client.unmap(DeviceId(0), &[]), Err(ErrorCode::Malformed));

    // SAFETY: `pool_mem` is the region's memory and nothing else uses it.
    let pool = unsafe { DmaPool::map(&mut client, Handle(0), 0, DeviceId(0), pool_mem, 8) }.unwrap();
    let iova = pool.iova();
    assert_eq!(iova, 0x10_0000);
    let hw = &client.channel().service.hw().pages[&0];
    assert_eq!(hw.len(), 8, "one MAP covers the pool");
    assert_eq!(hw[&iova], (pa, Rights::READ_WRITE));
    IommuHal::install(pool);

    // Allocations: inside the pool, distinct, zeroed.
    let (a, va) = IommuHal::dma_alloc(2, BufferDirection::Both);
    let (b, _) = IommuHal::dma_alloc(1, BufferDirection::Both);
    assert_eq!((a, b), (iova, iova + 0x2000));
    assert_eq!(va, pool_mem);
    assert_eq!(IommuHal::pages_in_use(), 3);

    // A buffer outside the pool is bounced: the device sees a copy at a pool IOVA.
    let mut data = *b"request header, somewhere on the driver's stack";
    let buf = NonNull::from(&mut data[..]);
    // SAFETY: `buf` is valid for its length; unshared below.
    let shared = unsafe { IommuHal::share(buf, BufferDirection::Both) };
    assert!(shared >= iova && shared < iova + 8 * 4096);
    let off = (shared - iova) as usize;
    // The "device" writes its answer into the pool page.
    // SAFETY: inside the pool.
    unsafe { pool_mem.as_ptr().add(off).copy_from_nonoverlapping(b"DEVICE".as_ptr(), 6) };
    // SAFETY: as `share`.
    unsafe { IommuHal::unshare(shared, buf, BufferDirection::Both) };
    assert_eq!(&data[..6], b"DEVICE");
    assert_eq!(&data[6..15], b"t header,", "the rest of the buffer came back as it was");

    // SAFETY: from `dma_alloc` above.
    unsafe {
        IommuHal::dma_dealloc(a, va, 2);
        IommuHal::dma_dealloc(b, va, 1);
    }
    assert_eq!(IommuHal::pages_in_use(), 0);
    let pool = IommuHal::uninstall().unwrap();
    client.unmap(DeviceId(0), &[pool.iova()]).unwrap();
    assert!(client.channel().service.hw().pages[&0].is_empty());

    // The same pages for a stream in bypass: the device addresses are physical.
    // SAFETY: as above; the "device" reaches the pool at its physical address.
    IommuHal::install(unsafe { DmaPool::reachable_at(pool_mem, pa, 8) });
    let (c, _) = IommuHal::dma_alloc(1, BufferDirection::Both);
    assert_eq!(c, pa);
    assert!(IommuHal::uninstall().is_some());
    // Only a measurement build's IOMMU PD switches a stream to bypass; the service core
    // does not know the request.
    assert_eq!(client.measure_bypass(DeviceId(0), true), Err(ErrorCode::UnknownOp));
}
