//! Sharing buffers in place: a buffer in the driver's in-place memory is mapped for the
//! device by one MAP when shared and unmapped by one UNMAP when unshared, against the real
//! service core over the model IOMMU; buffers elsewhere, and any whose MAP is refused, are
//! copied through the pool as before. (Its own test binary: the Hal is one static.)

use std::ptr::NonNull;

use iommu_client::hal::{DmaPool, InPlace, IommuHal, Reach};
use iommu_client::Client;
use iommu_pd::model::ModelHw;
use iommu_pd::Service;
use iommu_protocol::{DeviceId, Handle, Op, Rights};
use virtio_drivers::{BufferDirection, Hal};

mod common;
use common::{call, calls, pages, reachable, Direct, PAGE, SERVICE};

#[test]
fn buffers_in_place_are_mapped_per_request_and_others_bounced() {
    // Host memory whose addresses stand for physical addresses: an 8-page pool and four
    // pages of in-place buffers (and a fifth page after them, not in-place memory).
    let (pool_mem, bufs) = (pages(8), pages(5));
    let (pool_pa, bufs_pa) = (pool_mem.as_ptr() as u64, bufs.as_ptr() as u64);
    // Mappings: the pool and two in-place buffers at a time.
    let cfg = common::pool_and_buffer_pages(pool_pa, bufs_pa, 4, 3);
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 8)>::default()));
    let service = Service::new(ModelHw::default(), cfg, tables.storage()).unwrap();
    SERVICE.with(|s| *s.borrow_mut() = Some(service));

    // SAFETY: `pool_mem` is the pool region's memory, used for nothing else.
    let pool = unsafe { DmaPool::map(&mut Client::new(Direct), Handle(0), 0, DeviceId(0), pool_mem, 8) }.unwrap();
    let pool_iova = pool.iova();
    IommuHal::install(pool);
    let reach = Reach::PerRequest { cap: Handle(1), cap_offset: 0, device: DeviceId(0), call };
    let memory = InPlace { va: bufs, len: 4 * PAGE, reach };
    // SAFETY: `bufs` is the buffers region's memory, which the device may reach.
    unsafe { IommuHal::share_in_place(memory) };
    let before = reachable();
    assert_eq!(before.len(), 8, "the pool alone");

    // A buffer the device writes, across two pages of the in-place memory: one MAP of
    // exactly those two pages, read/write, at an IOVA with the buffer's page offset.
    // SAFETY: inside `bufs`.
    let buf = NonNull::slice_from_raw_parts(unsafe { bufs.add(0x100) }, 0x1800);
    // SAFETY: valid for its length; unshared below.
    let iova = unsafe { IommuHal::share(buf, BufferDirection::DeviceToDriver) };
    assert_eq!((calls(Op::Map), iova % PAGE as u64), (2, 0x100));
    let base = iova - 0x100;
    let now = reachable();
    assert_eq!(now.len(), 10);
    assert_eq!(now[&base], (bufs_pa, Rights::READ_WRITE));
    assert_eq!(now[&(base + PAGE as u64)], (bufs_pa + PAGE as u64, Rights::READ_WRITE));
    assert!(base < pool_iova || base >= pool_iova + 8 * PAGE as u64);
    // The device writes through its mapping: the bytes land in the buffer itself.
    let (pa, _) = now[&base];
    // SAFETY: the page the device reaches, inside `bufs`.
    unsafe { (pa as *mut u8).add(0x100).copy_from_nonoverlapping(b"in place".as_ptr(), 8) };
    // SAFETY: as `share`.
    unsafe { IommuHal::unshare(iova, buf, BufferDirection::DeviceToDriver) };
    assert_eq!(calls(Op::Unmap), 1);
    assert_eq!(reachable(), before, "after UNMAP the device reaches the pool alone");
    // SAFETY: inside `bufs`.
    assert_eq!(unsafe { std::slice::from_raw_parts(bufs.add(0x100).as_ptr(), 8) }, b"in place");

    // A buffer the device only reads is mapped read-only.
    // SAFETY: inside `bufs`.
    let out = NonNull::slice_from_raw_parts(unsafe { bufs.add(3 * PAGE) }, 512);
    // SAFETY: as above.
    let iova = unsafe { IommuHal::share(out, BufferDirection::DriverToDevice) };
    assert_eq!(reachable()[&iova], (bufs_pa + 3 * PAGE as u64, Rights::READ));

    // While that one is mapped, the quota (pool + two) allows one more; a third buffer's
    // MAP is refused, so it is copied through the pool instead, with no UNMAP after.
    // SAFETY: inside `bufs`.
    let second = NonNull::slice_from_raw_parts(unsafe { bufs.add(2 * PAGE) }, 16);
    // SAFETY: as above.
    let second_iova = unsafe { IommuHal::share(second, BufferDirection::Both) };
    assert!(second_iova < pool_iova || second_iova >= pool_iova + 8 * PAGE as u64);
    let mut third_data = *b"not in place, bounced";
    // SAFETY: inside `bufs`.
    let third = NonNull::slice_from_raw_parts(unsafe { bufs.add(PAGE) }, 16);
    // SAFETY: as above.
    let third_iova = unsafe { IommuHal::share(third, BufferDirection::Both) };
    assert!((pool_iova..pool_iova + 8 * PAGE as u64).contains(&third_iova), "bounced through the pool");
    assert_eq!(calls(Op::Map), 5, "three in-place MAPs tried, one refused");
    // A buffer outside the in-place memory (the stack) is bounced without asking.
    let stack = NonNull::from(&mut third_data[..]);
    // SAFETY: valid for its length.
    let stack_iova = unsafe { IommuHal::share(stack, BufferDirection::Both) };
    assert!((pool_iova..pool_iova + 8 * PAGE as u64).contains(&stack_iova));
    assert_eq!(calls(Op::Map), 5);
    // SAFETY: as `share`.
    unsafe {
        IommuHal::unshare(stack_iova, stack, BufferDirection::Both);
        IommuHal::unshare(third_iova, third, BufferDirection::Both);
        IommuHal::unshare(second_iova, second, BufferDirection::Both);
        IommuHal::unshare(iova, out, BufferDirection::DriverToDevice);
    }
    assert_eq!(calls(Op::Unmap), 3, "one UNMAP per in-place buffer, none for bounced ones");
    assert_eq!(reachable(), before);
    assert_eq!((IommuHal::unmap_failures(), IommuHal::pages_in_use()), (0, 0));

    // Straddling the end of the in-place memory: bounced; and once in-place sharing
    // stops, everything is.
    let in_pool = |a: u64| (pool_iova..pool_iova + 8 * PAGE as u64).contains(&a);
    // SAFETY: inside the five pages of `bufs`.
    let straddle = NonNull::slice_from_raw_parts(unsafe { bufs.add(4 * PAGE - 8) }, 16);
    // SAFETY: as above.
    let a = unsafe { IommuHal::share(straddle, BufferDirection::Both) };
    IommuHal::stop_sharing_in_place();
    // SAFETY: inside `bufs`.
    let b = unsafe { IommuHal::share(out, BufferDirection::Both) };
    assert!(in_pool(a) && in_pool(b));
    // SAFETY: as `share`.
    unsafe {
        IommuHal::unshare(a, straddle, BufferDirection::Both);
        IommuHal::unshare(b, out, BufferDirection::Both);
    }
    assert_eq!((calls(Op::Map), calls(Op::Unmap), IommuHal::pages_in_use()), (5, 3, 0));

    // Memory the device always reaches (mapped once, by the driver): buffers in it are used
    // where they are, at their place in that mapping, with no call at all.
    let once = call_map(Handle(1), 4 * PAGE as u64);
    // SAFETY: the device reaches `bufs` at `once` through the MAP just made.
    unsafe {
        IommuHal::share_in_place(InPlace { va: bufs, len: 4 * PAGE, reach: Reach::Always { device_addr: once } })
    };
    // SAFETY: as above.
    let a = unsafe { IommuHal::share(buf, BufferDirection::DeviceToDriver) };
    assert_eq!(a, once + 0x100);
    assert_eq!(reachable()[&once], (bufs_pa, Rights::READ_WRITE));
    // SAFETY: as `share`.
    unsafe { IommuHal::unshare(a, buf, BufferDirection::DeviceToDriver) };
    assert_eq!((calls(Op::Map), calls(Op::Unmap)), (6, 3), "the one MAP above, nothing per buffer");
    assert_eq!(reachable()[&once], (bufs_pa, Rights::READ_WRITE), "still mapped");
    // The stack is still bounced.
    let mut data = [7u8; 16];
    let stack = NonNull::from(&mut data[..]);
    // SAFETY: valid for its length.
    let s_iova = unsafe { IommuHal::share(stack, BufferDirection::Both) };
    assert!(in_pool(s_iova));
    // SAFETY: as `share`.
    unsafe { IommuHal::unshare(s_iova, stack, BufferDirection::Both) };
}

/// The driver's own MAP of `len` bytes of capability `cap`, read/write, for device 0.
fn call_map(cap: Handle, len: u64) -> u64 {
    Client::new(Direct).map(cap, DeviceId(0), 0, len, None, Rights::READ_WRITE).unwrap()
}
