//! What the virtio-blk driver PDs share: the disk's configuration space through the
//! IOMMU PD, which owns it (virtio-drivers' `PciRoot` over CONFIG_READ/CONFIG_WRITE:
//! `iommu_client::pci::OwnFunction`), and opening the device, one way: with the reader of
//! `drivers/virtio-blk` (`disk`) on `IommuHal` (whose pool the PD installs first), whose
//! wider queue keeps more requests in flight (`in_flight`). Not with virtio-drivers'
//! `VirtIOBlk`: it does not accept VIRTIO_F_ACCESS_PLATFORM, which QEMU's disk behind the
//! SMMU requires, and goes on when the device then refuses FEATURES_OK (virtio 1.2
//! §3.1.1 step 6 says it must not).
#![no_std]

pub mod in_flight;

/// The virtio-blk reader with a wide queue (`drivers/virtio-blk`).
pub use virtio_blk_reader as disk;

use core::ptr::NonNull;

use client_channel::Ppc;
use iommu_client::hal::IommuHal;
use iommu_client::pci::OwnFunction;
use iommu_protocol::DeviceId;
use sel4_microkit::{memory_region_symbol, Channel};
use virtio_drivers::transport::pci::bus::{BarInfo, Command, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

/// Where the IOMMU PD puts the device's memory BARs (PCI == CPU address on QEMU virt: the
/// MiB of its BAR plan for slot 4); the description maps the same range at the PD's
/// `blk_bar`.
pub const BAR_PA: u64 = 0x1020_0000;
/// The disk's place on bus 0 (images/Makefile adds the devices in this order).
const DEVICE_FN: DeviceFunction = DeviceFunction { bus: 0, device: 4, function: 0 };

/// Descriptors in `Wide`'s request queue: 21 reads in flight, room for 16 (the device's
/// own queue, 256 descriptors on QEMU, must be at least this: `disk::OpenError`).
pub const QUEUE_SIZE: usize = 64;
/// The reader, with `QUEUE_SIZE` descriptors, as both PDs run it.
pub type Wide = disk::Disk<IommuHal, PciTransport, QUEUE_SIZE>;
/// The disk's configuration space, as the IOMMU PD lets this PD see it.
pub type Root = PciRoot<OwnFunction<Ppc>>;

/// `IommuHal`'s view of the disk's registers: the description maps the 1 MiB at BAR_PA
/// at `blk_bar`.
fn bar_va(pa: u64, _size: usize) -> NonNull<u8> {
    let base: NonNull<u8> = memory_region_symbol!(blk_bar: *mut u8);
    // SAFETY: virtio-drivers asks only for addresses inside the disk's BARs, which the
    // IOMMU PD placed at BAR_PA (`open` checks), and the description maps there at `base`.
    unsafe { base.add((pa - BAR_PA) as usize) }
}

/// The disk (`device`, the PD's in the policy) through the IOMMU PD on `iommu`: its
/// memory decoding and bus mastering on (the IOMMU PD left both off), and `IommuHal`
/// pointed at the mapping of its BARs.
pub fn place_device(iommu: Channel, device: DeviceId) -> Root {
    let mut root = PciRoot::new(OwnFunction::new(Ppc(iommu), device, DEVICE_FN));
    root.set_command(DEVICE_FN, Command::MEMORY_SPACE | Command::BUS_MASTER);
    IommuHal::set_mmio_translation(bar_va);
    root
}

/// Why `open` failed: the transport (a BAR not where the description maps it, no virtio
/// capability), or the device (`disk::OpenError`: FEATURES_OK refused, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    Transport(&'static str),
    Device(disk::OpenError),
}

/// Open the disk: its virtio transport and the reader (`Wide`), whose queue comes from the
/// installed pool. Dropping the result resets the device and frees the queue. Refused if
/// a BAR the transport uses is not inside the MiB at BAR_PA the description maps, or if
/// the device does not keep FEATURES_OK.
pub fn open(root: &mut Root) -> Result<Wide, OpenError> {
    Wide::new(transport(root).map_err(OpenError::Transport)?).map_err(OpenError::Device)
}

/// The disk's virtio transport, once its BARs are checked to lie where the description
/// maps them.
fn transport(root: &mut Root) -> Result<PciTransport, &'static str> {
    let mut bar = 0;
    while bar < 6 {
        let info = root.bar_info(DEVICE_FN, bar).ok().flatten();
        let two = info.as_ref().is_some_and(BarInfo::takes_two_entries);
        if let Some((addr, size)) = info.and_then(|i| i.memory_address_size()).filter(|(_, size)| *size > 0) {
            if addr < BAR_PA || addr + size > BAR_PA + 0x10_0000 {
                return Err("a BAR is not where the description maps it");
            }
        }
        bar += if two { 2 } else { 1 };
    }
    PciTransport::new::<IommuHal, _>(root, DEVICE_FN).map_err(|_| "no virtio transport")
}
