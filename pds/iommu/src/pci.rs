//! PCI configuration space, this PD's alone: the ECAM window the description maps here
//! (`setvar_vaddr="ecam"`, `setvar_size="ecam_size"`; `iommu-sdf check` refuses a map of
//! it by any other PD), and what `init` does with it before any driver runs.
//!
//! Bus numbering is firmware's, which on QEMU virt (no firmware before the Microkit
//! loader, no bridges in these images) is bus 0 alone; each device's requester ID is its
//! StreamID (QEMU virt's `iommu-map` is the identity), which is how a described device is
//! found here. Enumerating bridges, numbering buses and enabling ACS are not done yet.

use iommu_pd::pci::{self, BarError, ConfigSpace};
use sel4_microkit::{debug_println, var};

use crate::policy;

/// The 32-bit PCI memory window of QEMU virt (PCI address = CPU address), and the BAR
/// plan every description here follows: slot `s` on bus 0 (the first after QEMU's default
/// NIC at 00:01.0 is 2) has its memory BARs in the MiB at `MEM_BASE + (s - 2) MiB`, the
/// range its driver's description maps. (A description that names each function's BAR
/// window would let `iommu-sdf` check it; that needs the policy generator.)
const MEM_BASE: u64 = 0x1000_0000;
const MEM_SIZE: u64 = 0x2eff_0000;
const SLOT_WINDOW: u64 = 0x10_0000;
const FIRST_SLOT: u64 = 2;

/// The ECAM window: 1 MiB per bus from bus 0, mapped uncached.
pub struct Ecam {
    base: usize,
    buses: u16,
}

impl Ecam {
    /// The window the description maps here, if it maps one (a description that keeps
    /// configuration space from this PD gets `NoConfigSpace` for every configuration
    /// call, and its drivers do what they did before).
    pub fn mapped() -> Option<Ecam> {
        let base = *var!(ecam: usize = 0);
        let size = *var!(ecam_size: usize = 0);
        let buses = (size >> 20).min(256) as u16;
        (base != 0 && buses > 0).then_some(Ecam { base, buses })
    }

    /// Buses the window covers.
    pub fn buses(&self) -> core::ops::Range<u16> {
        0..self.buses
    }

    fn addr(&self, rid: u16, offset: u16) -> Option<usize> {
        (rid >> 8 < self.buses && offset < 4096).then(|| self.base + ((rid as usize) << 12) + offset as usize)
    }
}

impl ConfigSpace for Ecam {
    fn function(&self, device: usize) -> Option<u16> {
        let stream = policy::DEVICES.get(device)?.stream;
        let rid = u16::try_from(stream).ok()?;
        (rid >> 8 < self.buses).then_some(rid)
    }

    fn read(&mut self, rid: u16, offset: u16, width: u8) -> Option<u32> {
        let a = self.addr(rid, offset)?;
        // SAFETY: `addr` keeps the access inside the ECAM window the description maps here
        // (uncached, device memory), aligned to its width (the protocol decoder and the
        // callers here only pass aligned offsets). ECAM takes 1, 2 and 4-byte accesses.
        Some(unsafe {
            match width {
                1 => u32::from((a as *const u8).read_volatile()),
                2 => u32::from((a as *const u16).read_volatile()),
                _ => (a as *const u32).read_volatile(),
            }
        })
    }

    fn write(&mut self, rid: u16, offset: u16, width: u8, value: u32) -> Option<()> {
        let a = self.addr(rid, offset)?;
        // SAFETY: as for `read`; this PD is the only one that maps ECAM.
        unsafe {
            match width {
                1 => (a as *mut u8).write_volatile(value as u8),
                2 => (a as *mut u16).write_volatile(value as u16),
                _ => (a as *mut u32).write_volatile(value),
            }
        }
        Some(())
    }
}

/// bus:device.function, for the console.
struct Bdf(u16);

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.0 >> 8, (self.0 >> 3) & 0x1f, self.0 & 7)
    }
}

/// Before any driver runs: every function's Bus Master off, each described device found
/// (or named as missing) and its BARs placed by the plan above, memory decoding left off
/// for its driver to turn on through CONFIG_WRITE.
pub fn take_ownership(ecam: &mut Ecam) {
    let buses = ecam.buses();
    let census = pci::take_ownership(ecam, buses, |rid, id, header| {
        let name = policy::DEVICES.iter().find(|d| d.stream == u32::from(rid)).map_or("no description", |d| d.name);
        debug_println!(
            "iommu: pci {}: {:04x}:{:04x} header type {} ({name}): bus master off",
            Bdf(rid),
            id & 0xffff,
            id >> 16,
            header & 0x7f
        );
    });
    debug_println!(
        "iommu: PCI configuration space is this PD's: {} function(s) on {} bus(es), {} bridge(s); every bus master off ({} were on)",
        census.functions,
        ecam.buses,
        census.bridges,
        census.masters_stopped
    );
    for (d, dev) in policy::DEVICES.iter().enumerate() {
        let Some(rid) = ecam.function(d) else {
            debug_println!("iommu: pci: {} (stream {:#x}) is not a function of this ECAM", dev.name, dev.stream);
            continue;
        };
        let slot = u64::from(rid >> 3 & 0x1f);
        let base = MEM_BASE + slot.saturating_sub(FIRST_SLOT) * SLOT_WINDOW;
        if rid >> 8 != 0 || slot < FIRST_SLOT || base + SLOT_WINDOW > MEM_BASE + MEM_SIZE {
            debug_println!("iommu: pci: {} at {}: outside the BAR plan; BARs not placed", dev.name, Bdf(rid));
            continue;
        }
        match pci::place_bars(ecam, rid, base, SLOT_WINDOW) {
            Ok(used) => {
                debug_println!("iommu: pci: {} at {}: BARs placed in {base:#x}..{:#x}", dev.name, Bdf(rid), base + used)
            }
            Err(BarError::Absent) => debug_println!("iommu: pci: {} MISSING: nothing at {}", dev.name, Bdf(rid)),
            Err(e) => debug_println!("iommu: pci: {} at {}: BARs not placed: {e:?}", dev.name, Bdf(rid)),
        }
    }
}
