//! A virtio-blk driver PD: virtio-drivers' block driver, unmodified, on `IommuHal`, so its
//! DMA pool is mapped through the IOMMU PD (one MAP) and the device reaches nothing else.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use blk_driver::place_device;
use client_channel::Ppc;
use iommu_client::hal::{DmaPool, IommuHal};
use iommu_client::Client;
use iommu_protocol::{DeviceId, Handle};
use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, Channel, Handler, Infallible};
use virtio_drivers::device::blk::SECTOR_SIZE;

const IOMMU: Channel = Channel::new(0);
const POOL_PAGES: usize = 32;
/// Its device in the policy (after the two edu devices).
const MY_DEVICE: DeviceId = DeviceId(2);

#[protection_domain]
fn init() -> BlkDriver {
    let ecam: NonNull<u8> = memory_region_symbol!(ecam: *mut u8);
    let bar: NonNull<u8> = memory_region_symbol!(blk_bar: *mut u8);
    // SAFETY: the description maps bus 0's configuration space at `ecam` and the BAR
    // range at `blk_bar`, both uncached.
    let mut root = unsafe { place_device(ecam, bar) };

    let pool_va: NonNull<u8> = memory_region_symbol!(dma_pool: *mut u8);
    let mut client = Client::new(Ppc(IOMMU));
    // SAFETY: the pool region is this PD's, mapped at `dma_pool`, used for nothing else.
    let pool = match unsafe { DmaPool::map(&mut client, Handle(0), 0, MY_DEVICE, pool_va, POOL_PAGES) } {
        Ok(p) => p,
        Err(e) => {
            debug_println!("blk-driver: the IOMMU PD refused the pool: {e:?}");
            return BlkDriver;
        }
    };
    debug_println!("blk-driver: DMA pool ({POOL_PAGES} pages) mapped once at iova {:#x}", pool.iova());
    IommuHal::install(pool);
    let mut blk = match blk_driver::open(&mut root) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("blk-driver: {e}");
            return BlkDriver;
        }
    };
    let mut sector = [0u8; SECTOR_SIZE];
    let r = blk.read_blocks(0, &mut sector);
    let label = b"microkit-iommu test disk";
    debug_println!(
        "blk-driver: read sector 0 ({r:?}): \"{}\"",
        core::str::from_utf8(&sector[..label.len()]).unwrap_or("(not text)")
    );
    let mut pattern = [0u8; SECTOR_SIZE];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13) ^ 0x3c;
    }
    let w = blk.write_blocks(1, &pattern);
    let mut back = [0u8; SECTOR_SIZE];
    let r = blk.read_blocks(1, &mut back);
    debug_println!(
        "blk-driver: wrote and read back sector 1: {}",
        if w.is_ok() && r.is_ok() && back == pattern { "same data" } else { "DIFFERENT" }
    );
    let q = client.query();
    debug_println!("blk-driver: mappings held: {:?} (no MAP or UNMAP per request)", q.map(|q| q[0]));
    BlkDriver
}

struct BlkDriver;

impl Handler for BlkDriver {
    type Error = Infallible;
}
