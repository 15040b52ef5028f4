//! PCI bring-up, as firmware would do it, with virtio-drivers' configuration-space code:
//! walk the hierarchy from the host's first bus, give every PCI-to-PCI bridge (PCIe root
//! ports, switch ports, PCI bridges) its bus numbers, depth first, and a memory window
//! covering the BARs of what is behind it, give the devices these tests use their BARs
//! from the host's 32-bit window (nothing assigned them before us), enable memory decoding
//! and bus mastering, and work out each device's StreamID from its requester ID (bus << 8 |
//! devfn, or the ID a PCI bridge above it uses in its place) through the host's
//! `iommu-map`. Every function found gets a line saying what was done with it; one that is
//! not set up says why.
//!
//! Bus numbers must be in place before the SMMU looks a StreamID up: until a bridge's
//! secondary bus number is set, the devices behind it answer to bus 0 (QEMU's SMMU then
//! takes the bridge's bus for bus 0 and drops CFGI_STE for the devices really on bus 0).

use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, HeaderType, PciRoot,
};

use crate::platform::Platform;
use crate::{print, println};

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
    /// `p`'s ECAM must be mapped as Device memory and used by nothing but this module's
    /// handles (one single-threaded user at a time).
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

// Type-1 (bridge) header registers.
const BUS_NUMBERS: u8 = 0x18;
const IO_BASE_LIMIT: u8 = 0x1c;
const MEMORY_BASE_LIMIT: u8 = 0x20;
const PREFETCH_BASE_LIMIT: u8 = 0x24;
const PREFETCH_BASE_UPPER: u8 = 0x28;
const PREFETCH_LIMIT_UPPER: u8 = 0x2c;
const IO_UPPER: u8 = 0x30;
/// Bridge memory windows have a 1 MiB granule.
const WINDOW_GRANULE: u64 = 1 << 20;
/// PCI Express capability and its device/port types (PCIe Capabilities register, 7:4).
const CAP_PCIE: u8 = 0x10;
const PCIE_ROOT_PORT: u16 = 4;
const PCIE_UPSTREAM: u16 = 5;
const PCIE_DOWNSTREAM: u16 = 6;
const PCIE_TO_PCI: u16 = 7;

/// Memory BARs given addresses: (BAR, PCI address, size).
type Bars = heapless::Vec<(u8, u64, u64), 6>;

fn rid(df: DeviceFunction) -> u32 {
    (df.bus as u32) << 8 | (df.device as u32) << 3 | df.function as u32
}

struct Enumeration<'p> {
    p: &'p Platform,
    root: PciRoot<Ecam>,
    /// For the bridge registers virtio-drivers' `PciRoot` does not write.
    cfg: Ecam,
    next_bus: u8,
    /// Next free PCI address in the 32-bit window, and its end.
    next_mem: u64,
    mem_end: u64,
    edus: heapless::Vec<EduDev, 4>,
    virtio_blk: Option<(DeviceFunction, u32)>,
}

/// Walk the hierarchy and set up every bridge and every device the tests use.
///
/// # Safety
/// The ECAM and the PCI memory window in `p` must be mapped as Device memory and used by
/// nothing else.
pub unsafe fn setup(p: &Platform) -> Result<Pci, &'static str> {
    let (pci_base, _, size) = p.mmio32;
    let mut e = Enumeration {
        p,
        // SAFETY: the caller vouches for the ECAM mapping; the two handles are used in turn.
        root: PciRoot::new(unsafe { Ecam::new(p) }),
        // SAFETY: as above.
        cfg: unsafe { Ecam::new(p) },
        next_bus: p.buses.0.saturating_add(1),
        next_mem: pci_base,
        mem_end: (pci_base + size).min(1 << 32),
        edus: heapless::Vec::new(),
        virtio_blk: None,
    };
    println!("pci: buses {:02x}-{:02x}, from bus {:02x}:", p.buses.0, p.buses.1, p.buses.0);
    e.scan(p.buses.0, None, 1);
    Ok(Pci { root: e.root, edus: e.edus, virtio_blk: e.virtio_blk })
}

/// A function's line heading: indented by depth, address, IDs, what it is.
struct Head<'a> {
    depth: usize,
    df: DeviceFunction,
    ids: (u16, u16),
    what: &'a str,
}

impl core::fmt::Display for Head<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(f, "{}{} {:04x}:{:04x} {}", Indent(self.depth), self.df, self.ids.0, self.ids.1, self.what)
    }
}

/// Indentation by depth in the hierarchy.
struct Indent(usize);

impl core::fmt::Display for Indent {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        for _ in 0..self.0 {
            f.write_str("  ")?;
        }
        Ok(())
    }
}

impl Enumeration<'_> {
    /// Set up bus `bus`. `alias`: the requester ID a PCI bridge above uses for every
    /// transaction from below it, if there is one.
    fn scan(&mut self, bus: u8, alias: Option<u32>, depth: usize) {
        let mut functions: heapless::Vec<(DeviceFunction, DeviceFunctionInfo), 32> = heapless::Vec::new();
        for f in self.root.enumerate_bus(bus) {
            if let Err((df, _)) = functions.push(f) {
                println!(
                    "{}{df}: more than 32 functions on bus {bus:02x}: this one and the rest are not set up",
                    Indent(depth)
                );
                break;
            }
        }
        for (df, info) in functions {
            let ids = (info.vendor_id, info.device_id);
            match info.header_type {
                HeaderType::PciPciBridge => self.bridge(df, alias, depth),
                HeaderType::Standard => self.endpoint(df, &info, alias, depth),
                other => println!(
                    "{}{df} {:04x}:{:04x} {other:?}: a header type this image does not handle: left disabled",
                    Indent(depth),
                    ids.0,
                    ids.1
                ),
            }
        }
    }

    /// Give memory BARs `0..bars` addresses in the window (naturally aligned; 64-bit BARs
    /// get an address below 4 GiB). Returns what each got: (BAR, PCI address, size).
    fn assign_bars(&mut self, df: DeviceFunction, bars: u8, depth: usize) -> Result<Bars, ()> {
        let mut assigned = Bars::new();
        let mut index = 0;
        while index < bars {
            let Ok(info) = self.root.bar_info(df, index) else {
                println!("{}{df}: BAR {index} is unreadable: left disabled", Indent(depth));
                return Err(());
            };
            let step = if info.as_ref().is_some_and(BarInfo::takes_two_entries) { 2 } else { 1 };
            match info {
                Some(BarInfo::Memory { size, .. }) if size > 0 => {
                    let addr = self.next_mem.div_ceil(size) * size;
                    if addr + size > self.mem_end {
                        println!(
                            "{}{df}: BAR {index} ({size:#x} bytes) does not fit in the PCI memory window: left disabled",
                            Indent(depth)
                        );
                        return Err(());
                    }
                    self.next_mem = addr + size;
                    if step == 2 {
                        self.root.set_bar_64(df, index, addr);
                    } else {
                        self.root.set_bar_32(df, index, addr as u32);
                    }
                    let _ = assigned.push((index, addr, size));
                }
                Some(BarInfo::IO { size, .. }) => println!(
                    "{}{df}: BAR {index} is I/O space ({size:#x} bytes), which this image does not assign: I/O decoding stays off",
                    Indent(depth)
                ),
                _ => {}
            }
            index += step;
        }
        Ok(assigned)
    }

    /// A device: set up the ones the tests use.
    fn endpoint(&mut self, df: DeviceFunction, info: &DeviceFunctionInfo, alias: Option<u32>, depth: usize) {
        let (vendor, device) = (info.vendor_id, info.device_id);
        let name = match (vendor, device) {
            (0x1234, 0x11e8) => "edu",
            (0x1af4, 0x1042) => "virtio-blk",
            _ => {
                let what = if (info.class, info.subclass) == (0x06, 0x00) {
                    "a host bridge: nothing to set up"
                } else {
                    "not a device these tests use: left disabled"
                };
                println!(
                    "{}{df} {vendor:04x}:{device:04x} (class {:02x}.{:02x}): {what}",
                    Indent(depth),
                    info.class,
                    info.subclass
                );
                return;
            }
        };
        let head = Head { depth, df, ids: (vendor, device), what: name };
        let rid = alias.unwrap_or(rid(df));
        let Some(sid) = self.p.stream_id(rid) else {
            println!("{head}: requester ID {rid:#x} is not in the host's iommu-map, so its DMA would not go through the SMMU: left disabled");
            return;
        };
        if name == "edu" {
            if let Some(other) = self.edus.iter().find(|e| e.sid == sid) {
                println!(
                    "{head}: its DMA carries StreamID {sid:#x}, as {:02x}:{:02x}.{}'s does, so the SMMU cannot tell them apart: left disabled",
                    other.bus, other.device, other.function
                );
                return;
            }
            if self.edus.is_full() {
                println!("{head}: the tests use 4 edu devices at most: left disabled");
                return;
            }
        } else if let Some((first, _)) = self.virtio_blk {
            println!("{head}: the tests use one virtio-blk device ({first}): left disabled");
            return;
        }
        let Ok(bars) = self.assign_bars(df, 6, depth) else { return };
        self.root.set_command(df, Command::MEMORY_SPACE | Command::BUS_MASTER);
        let (pci_base, cpu_base, _) = self.p.mmio32;
        let cpu = |pci: u64| (pci - pci_base + cpu_base) as usize;
        let bar0_cpu = bars.iter().find(|b| b.0 == 0).map(|b| cpu(b.1)).unwrap_or(0);
        let aliased = if alias.is_some() { " (the ID of a PCI bridge above it)" } else { "" };
        print!("{head}:");
        for (index, addr, size) in &bars {
            print!(" BAR{index} at {:#x} (+{size:#x}),", cpu(*addr));
        }
        println!(" requester ID {rid:#x}{aliased} -> StreamID {sid:#x}");
        let DeviceFunction { bus, device, function } = df;
        if name == "edu" {
            let _ = self.edus.push(EduDev { bus, device, function, sid, bar0: bar0_cpu });
        } else {
            self.virtio_blk = Some((df, sid));
        }
    }

    /// The PCIe capability's device/port type, if the function has one.
    fn pcie_type(&self, df: DeviceFunction) -> Option<u16> {
        self.root.capabilities(df).find(|c| c.id == CAP_PCIE).map(|c| (c.private_header >> 4) & 0xf)
    }

    /// A PCI-to-PCI bridge: number the buses behind it, set them up, and open a memory
    /// window over what they got.
    fn bridge(&mut self, df: DeviceFunction, alias: Option<u32>, depth: usize) {
        let ids = self.cfg.read_word(df, 0);
        let kind = match self.pcie_type(df) {
            Some(PCIE_ROOT_PORT) => "PCIe root port",
            Some(PCIE_UPSTREAM) => "PCIe switch upstream port",
            Some(PCIE_DOWNSTREAM) => "PCIe switch downstream port",
            Some(PCIE_TO_PCI) => "PCIe-to-PCI bridge",
            Some(_) => "PCIe bridge",
            None => "PCI bridge",
        };
        let head = Head { depth, df, ids: (ids as u16, (ids >> 16) as u16), what: kind };
        let last_bus = self.p.buses.1;
        if self.next_bus > last_bus || self.next_bus == 0 {
            println!(
                "{head}: no bus number left (the ECAM reaches buses {:02x}-{last_bus:02x}): what is behind it is not set up",
                self.p.buses.0
            );
            return;
        }
        // Its own BARs come from the parent's window, before its own window starts.
        if self.assign_bars(df, 2, depth).is_err() {
            return;
        }
        let secondary = self.next_bus;
        self.next_bus = self.next_bus.wrapping_add(1);
        // Subordinate = last for now, so that configuration requests for buses found below
        // reach them; set to the last one used once they are numbered.
        let primary = df.bus as u32;
        self.cfg.write_word(df, BUS_NUMBERS, primary | (secondary as u32) << 8 | (last_bus as u32) << 16);
        // No I/O window, no prefetchable window (base above limit): every BAR behind it is
        // given space in the (non-prefetchable) memory window.
        self.cfg.write_word(df, IO_BASE_LIMIT, 0x00f0);
        self.cfg.write_word(df, IO_UPPER, 0);
        self.cfg.write_word(df, PREFETCH_BASE_LIMIT, 0x0000_fff0);
        self.cfg.write_word(df, PREFETCH_BASE_UPPER, 0);
        self.cfg.write_word(df, PREFETCH_LIMIT_UPPER, 0);
        // Transactions from below a PCIe port keep their requester ID; below a PCI bridge
        // they carry the bridge's: a PCIe-to-PCI bridge uses (secondary bus, 00.0), a
        // conventional one its own ID (the convention QEMU and Linux follow). The alias of
        // the bridge nearest the root wins.
        let below = alias.or(match self.pcie_type(df) {
            Some(PCIE_ROOT_PORT | PCIE_UPSTREAM | PCIE_DOWNSTREAM) => None,
            Some(PCIE_TO_PCI) => Some((secondary as u32) << 8),
            _ => Some(rid(df)),
        });
        println!("{head}: secondary bus {secondary:02x}; behind it:");
        self.next_mem = self.next_mem.div_ceil(WINDOW_GRANULE) * WINDOW_GRANULE;
        let start = self.next_mem;
        self.scan(secondary, below, depth + 1);
        let subordinate = self.next_bus.wrapping_sub(1);
        self.cfg.write_word(df, BUS_NUMBERS, primary | (secondary as u32) << 8 | (subordinate as u32) << 16);
        self.next_mem = self.next_mem.div_ceil(WINDOW_GRANULE) * WINDOW_GRANULE;
        let end = self.next_mem.min(self.mem_end);
        // Memory base and limit hold address bits 31:20 in their bits 15:4.
        let (base, limit) = if end > start { (start, end - 1) } else { (0xfff0_0000, 0) };
        let window = ((base >> 16) as u32 & 0xfff0) | (((limit >> 16) as u32 & 0xfff0) << 16);
        self.cfg.write_word(df, MEMORY_BASE_LIMIT, window);
        self.root.set_command(df, Command::MEMORY_SPACE | Command::BUS_MASTER);
        if end > start {
            println!(
                "{}{df}: buses {secondary:02x}-{subordinate:02x}, memory window {start:#x}-{limit:#x}, memory decoding and bus mastering on",
                Indent(depth)
            );
        } else {
            println!(
                "{}{df}: buses {secondary:02x}-{subordinate:02x}, no memory window (nothing behind it needs one), memory decoding and bus mastering on",
                Indent(depth)
            );
        }
    }
}
