//! PCI bring-up with virtio-drivers' configuration-space code: enumerate the host's first
//! bus (bus-range; the ECAM as large as the device tree says), give every memory BAR an
//! address from the host's 32-bit window (nothing assigned BARs before us), enable memory
//! decoding and bus mastering, and work out each device's StreamID from the host's
//! `iommu-map`. The `edu` devices and a virtio-blk device (if present) are returned.

use virtio_drivers::transport::pci::bus::{BarInfo, Command, ConfigurationAccess, DeviceFunction, PciRoot};

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

/// The PCIe host's ECAM, as large as the device tree says: it starts with the first bus
/// of `bus-range` and reaches as many buses as it has MiB. Outside them, reads find no
/// device (all ones) and writes go nowhere.
#[derive(Debug)]
pub struct Ecam {
    base: usize,
    first_bus: u8,
    last_bus: u8,
}

impl Ecam {
    /// # Safety
    /// `p`'s ECAM must be mapped as Device memory and used by nothing else.
    pub unsafe fn new(p: &Platform) -> Self {
        Ecam { base: p.ecam, first_bus: p.buses.0, last_bus: p.buses.1 }
    }

    fn register(&self, df: DeviceFunction, offset: u8) -> Option<*mut u32> {
        if !(self.first_bus..=self.last_bus).contains(&df.bus) || !df.valid() {
            return None;
        }
        let bdf = ((df.bus - self.first_bus) as usize) << 8 | (df.device as usize) << 3 | df.function as usize;
        Some((self.base + (bdf << 12) + (offset as usize & !3)) as *mut u32)
    }
}

impl ConfigurationAccess for Ecam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        // SAFETY: inside the ECAM window the device tree gave (`register` checks the bus).
        self.register(df, offset).map(|r| unsafe { r.read_volatile() }).unwrap_or(u32::MAX)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        if let Some(r) = self.register(df, offset) {
            // SAFETY: as for `read_word`.
            unsafe { r.write_volatile(data) }
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        Ecam { base: self.base, first_bus: self.first_bus, last_bus: self.last_bus }
    }
}

/// What bring-up found.
pub struct Pci {
    pub root: PciRoot<Ecam>,
    pub edus: heapless::Vec<EduDev, 4>,
    /// A modern virtio-blk device: where it is and its StreamID.
    pub virtio_blk: Option<(DeviceFunction, u32)>,
}

/// Enumerate bus 0 and set up every device found.
///
/// # Safety
/// The ECAM window in `p` must be mapped as Device memory and used by nothing else.
pub unsafe fn setup(p: &Platform) -> Result<Pci, &'static str> {
    // SAFETY: the caller vouches for the ECAM mapping.
    let mut root = PciRoot::new(unsafe { Ecam::new(p) });
    let (pci_base, cpu_base, size) = p.mmio32;
    let mut next = pci_base;
    let mut edus = heapless::Vec::new();
    let mut virtio_blk = None;
    let functions: heapless::Vec<_, 32> = root.enumerate_bus(p.buses.0).collect();
    for (df, info) in functions {
        let is_edu = (info.vendor_id, info.device_id) == (0x1234, 0x11e8);
        let is_blk = (info.vendor_id, info.device_id) == (0x1af4, 0x1042);
        if !is_edu && !is_blk {
            continue;
        }
        let mut bar0 = 0;
        let mut index = 0;
        while index < 6 {
            let info = root.bar_info(df, index).map_err(|_| "BAR unreadable")?;
            let step = if info.as_ref().is_some_and(BarInfo::takes_two_entries) { 2 } else { 1 };
            if let Some(BarInfo::Memory { size: bar_size, .. }) = info {
                if bar_size > 0 {
                    // Naturally aligned, inside the 32-bit window.
                    let addr = next.div_ceil(bar_size) * bar_size;
                    if addr + bar_size > pci_base + size || addr + bar_size > u32::MAX as u64 {
                        return Err("PCI memory window exhausted");
                    }
                    next = addr + bar_size;
                    if step == 2 {
                        root.set_bar_64(df, index, addr);
                    } else {
                        root.set_bar_32(df, index, addr as u32);
                    }
                    if index == 0 {
                        bar0 = (addr - pci_base + cpu_base) as usize;
                    }
                }
            }
            index += step;
        }
        root.set_command(df, Command::MEMORY_SPACE | Command::BUS_MASTER);
        let DeviceFunction { bus, device, function } = df;
        let rid = (bus as u32) << 8 | (device as u32) << 3 | function as u32;
        let sid = p.stream_id(rid).ok_or("device not behind the SMMU (no iommu-map entry)")?;
        if is_edu {
            edus.push(EduDev { bus, device, function, sid, bar0 }).map_err(|_| "more than 4 edu devices")?;
        } else {
            virtio_blk = Some((df, sid));
        }
    }
    Ok(Pci { root, edus, virtio_blk })
}
