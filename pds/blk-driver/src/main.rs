//! A virtio-blk driver PD: virtio-drivers' block driver, unmodified, on `IommuHal`, so its
//! DMA pool is mapped through the IOMMU PD (one MAP) and the device reaches nothing else.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use client_channel::Ppc;
use iommu_client::hal::{DmaPool, IommuHal};
use iommu_client::Client;
use iommu_protocol::{DeviceId, Handle};
use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, Channel, Handler, Infallible};
use virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
use virtio_drivers::transport::pci::bus::{BarInfo, Cam, Command, DeviceFunction, MmioCam, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

const IOMMU: Channel = Channel::new(0);
/// Where this driver puts the device's memory BAR (PCI == CPU address on QEMU virt); the
/// description maps the same range here.
const BAR_PA: u64 = 0x1020_0000;
const POOL_PAGES: usize = 32;
/// Its device in the policy (after the two edu devices).
const MY_DEVICE: DeviceId = DeviceId(2);

fn bar_va(pa: u64, _size: usize) -> NonNull<u8> {
    let base: NonNull<u8> = memory_region_symbol!(blk_bar: *mut u8);
    // SAFETY: virtio-drivers asks only for addresses inside the BAR placed at BAR_PA,
    // which the description maps at `blk_bar`.
    unsafe { base.add((pa - BAR_PA) as usize) }
}

#[protection_domain]
fn init() -> BlkDriver {
    let ecam: NonNull<u8> = memory_region_symbol!(ecam: *mut u8);
    // SAFETY: the description maps bus 0's configuration space here, uncached.
    let mut root = PciRoot::new(unsafe { MmioCam::new(ecam.as_ptr(), Cam::Ecam) });
    let df = DeviceFunction { bus: 0, device: 4, function: 0 };
    // Place every memory BAR of the device in the mapped range (QEMU's modern virtio-pci
    // has one 16 KiB 64-bit BAR for its capabilities and a small MSI-X BAR).
    let mut next = BAR_PA;
    let mut index = 0;
    while index < 6 {
        let info = root.bar_info(df, index).ok().flatten();
        let two = info.as_ref().is_some_and(BarInfo::takes_two_entries);
        if let Some(BarInfo::Memory { size, .. }) = info {
            if size > 0 {
                let addr = next.div_ceil(size) * size;
                next = addr + size;
                if two {
                    root.set_bar_64(df, index, addr);
                } else {
                    root.set_bar_32(df, index, addr as u32);
                }
            }
        }
        index += if two { 2 } else { 1 };
    }
    root.set_command(df, Command::MEMORY_SPACE | Command::BUS_MASTER);
    IommuHal::set_mmio_translation(bar_va);

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
    let transport = match PciTransport::new::<IommuHal, _>(&mut root, df) {
        Ok(t) => t,
        Err(e) => {
            debug_println!("blk-driver: no virtio transport: {e:?}");
            return BlkDriver;
        }
    };
    let mut blk = match VirtIOBlk::<IommuHal, _>::new(transport) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("blk-driver: device did not initialise: {e:?}");
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
