//! PCI bring-up with virtio-drivers' configuration-space code: find the `edu` devices on
//! bus 0, give each BAR0 an address from the host's 32-bit window (nothing assigned BARs
//! before us), enable memory decoding and bus mastering, and work out each device's
//! StreamID from the host's `iommu-map`.

use virtio_drivers::transport::pci::bus::{BarInfo, Cam, Command, DeviceFunction, MmioCam, PciRoot};

use crate::platform::Platform;

/// An `edu` device, ready to use.
#[derive(Debug, Clone, Copy)]
pub struct EduDev {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    /// The StreamID its transactions carry into the SMMU.
    pub sid: u32,
    /// CPU address of BAR0.
    pub bar0: usize,
}

impl EduDev {
    /// The PCI requester ID (bus << 8 | device << 3 | function).
    pub fn rid(&self) -> u32 {
        (self.bus as u32) << 8 | (self.device as u32) << 3 | self.function as u32
    }
}

/// Enumerate bus 0 and set up every edu device found.
///
/// # Safety
/// The ECAM window in `p` must be mapped as Device memory and used by nothing else.
pub unsafe fn setup_edus(p: &Platform) -> Result<heapless::Vec<EduDev, 4>, &'static str> {
    // SAFETY: the caller vouches for the ECAM mapping.
    let mut root = PciRoot::new(unsafe { MmioCam::new(p.ecam as *mut u8, Cam::Ecam) });
    let (pci_base, cpu_base, size) = p.mmio32;
    let mut next = pci_base;
    let mut found = heapless::Vec::new();
    let functions: heapless::Vec<_, 32> = root.enumerate_bus(0).collect();
    for (df, info) in functions {
        if (info.vendor_id, info.device_id) != (0x1234, 0x11e8) {
            continue;
        }
        let DeviceFunction { bus, device, function } = df;
        let Some(BarInfo::Memory { size: bar_size, .. }) = root.bar_info(df, 0).map_err(|_| "BAR0 unreadable")? else {
            return Err("edu BAR0 is not a memory BAR");
        };
        // Naturally aligned, inside the window.
        let addr = next.div_ceil(bar_size) * bar_size;
        if addr + bar_size > pci_base + size || addr + bar_size > u32::MAX as u64 {
            return Err("PCI memory window exhausted");
        }
        next = addr + bar_size;
        root.set_bar_32(df, 0, addr as u32);
        root.set_command(df, Command::MEMORY_SPACE | Command::BUS_MASTER);
        let rid = (bus as u32) << 8 | (device as u32) << 3 | function as u32;
        let sid = p.stream_id(rid).ok_or("device not behind the SMMU (no iommu-map entry)")?;
        let dev = EduDev { bus, device, function, sid, bar0: (addr - pci_base + cpu_base) as usize };
        found.push(dev).map_err(|_| "more than 4 edu devices")?;
    }
    Ok(found)
}
