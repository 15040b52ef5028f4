//! What the virtio-blk driver PDs share: placing the device's BARs where the description
//! maps them, and opening the device with virtio-drivers' block driver, unmodified, on
//! `IommuHal` (whose pool the PD installs first).
#![no_std]

use core::ptr::NonNull;

use iommu_client::hal::IommuHal;
use sel4_microkit::memory_region_symbol;
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::pci::bus::{BarInfo, Cam, Command, DeviceFunction, MmioCam, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

/// Where the driver puts the device's memory BARs (PCI == CPU address on QEMU virt); the
/// description maps the same range at the PD's `blk_bar`.
pub const BAR_PA: u64 = 0x1020_0000;
/// The disk's place on bus 0 (images/Makefile adds the devices in this order).
const DEVICE_FN: DeviceFunction = DeviceFunction { bus: 0, device: 4, function: 0 };

/// The block driver, as this PD runs it.
pub type Blk = VirtIOBlk<IommuHal, PciTransport>;
/// Bus 0's configuration space.
pub type Root = PciRoot<MmioCam<'static>>;

/// `IommuHal`'s view of the disk's registers: the description maps the 1 MiB at BAR_PA
/// at `blk_bar`.
fn bar_va(pa: u64, _size: usize) -> NonNull<u8> {
    let base: NonNull<u8> = memory_region_symbol!(blk_bar: *mut u8);
    // SAFETY: virtio-drivers asks only for addresses inside the BARs `place_device` put at
    // BAR_PA, which the description maps at `base`.
    unsafe { base.add((pa - BAR_PA) as usize) }
}

/// Place every memory BAR of the disk in the range at BAR_PA (QEMU's modern virtio-pci
/// has one 16 KiB 64-bit BAR for its capabilities and a small MSI-X BAR; nothing else
/// assigns them), let it master the bus, and point `IommuHal` at the mapping. The
/// description maps bus 0's configuration space at `ecam` and the 1 MiB at BAR_PA at
/// `blk_bar`, both uncached, into every PD built from this crate.
pub fn place_device() -> Root {
    let ecam: NonNull<u8> = memory_region_symbol!(ecam: *mut u8);
    // SAFETY: the description maps bus 0's configuration space at `ecam`, uncached, for
    // this PD.
    let mut root = PciRoot::new(unsafe { MmioCam::new(ecam.as_ptr(), Cam::Ecam) });
    let mut next = BAR_PA;
    let mut index = 0;
    while index < 6 {
        let info = root.bar_info(DEVICE_FN, index).ok().flatten();
        let two = info.as_ref().is_some_and(BarInfo::takes_two_entries);
        if let Some(BarInfo::Memory { size, .. }) = info {
            if size > 0 {
                let addr = next.div_ceil(size) * size;
                next = addr + size;
                if two {
                    root.set_bar_64(DEVICE_FN, index, addr);
                } else {
                    root.set_bar_32(DEVICE_FN, index, addr as u32);
                }
            }
        }
        index += if two { 2 } else { 1 };
    }
    root.set_command(DEVICE_FN, Command::MEMORY_SPACE | Command::BUS_MASTER);
    IommuHal::set_mmio_translation(bar_va);
    root
}

/// Open the disk: its virtio transport and the block driver, whose queue comes from the
/// installed pool. Dropping the result resets the device and frees the queue.
pub fn open(root: &mut Root) -> Result<Blk, &'static str> {
    let transport = PciTransport::new::<IommuHal, _>(root, DEVICE_FN).map_err(|_| "no virtio transport")?;
    VirtIOBlk::new(transport).map_err(|_| "the device did not initialise")
}
