//! The PCI hierarchy the description declares, made so at boot, before any driver runs.
//!
//! Bus numbers are the description's (`BridgeConfig`): the owner programs exactly those,
//! so every requester ID, and so every StreamID, is known before the system runs, and it
//! checks that each declared bridge is there, at its address, of its kind. What does not
//! match is left closed: a declared bridge that is absent or of another kind, one whose
//! bus numbers cannot be right, one declared with ACS that has none, and any bridge the
//! description does not declare get secondary = subordinate = 0, every window closed,
//! and Memory Space and Bus Master off, so nothing below them is reached and nothing
//! below them reaches memory; the functions below are named missing.
//!
//! Order: top-down, bus by bus. A bus is walked (every Bus Master on it turned off, every
//! undeclared bridge on it closed) once the bridge above it is numbered, and a bridge is
//! looked at once its own bus has been walked; bridges forward nothing while this runs
//! (their Memory Space and Bus Master stay off until every bus is walked).
//!
//! A function whose MSI or MSI-X Enable still reads set after the walk cleared it would
//! send firmware's message once it masters: a bridge is left closed (its Bus Master
//! stays off), an endpoint is `FunctionState::MessagesStuck` (its driver cannot turn its
//! Bus Master on), and `Met::MessagesOn` names either for the console.
//!
//! A bridge's own Bus Master Enable is turned on here, at configuration, on every open
//! bridge with a described function below it, and stays off on the others. Why here and
//! not when the function's owner turns its own Bus Master on: on a Type 1 function Bus
//! Master Enable only lets the bridge forward its children's requests upstream (PCI-to-PCI
//! Bridge Architecture 1.2, 3.2.2.1; PCIe Base 4.0, 7.5.1.1.3), it makes no request of its
//! own (the walk that finds it turns its MSI and MSI-X off); a function below does no DMA until its
//! owner turns its Bus Master on through CONFIG_WRITE, and what it does then is confined
//! by the SMMU. Turning bridges on per driver would make one driver's CONFIG_WRITE change
//! a function that is not its own, shared with the other functions below the same switch,
//! and turning it off again would cut them too.
//!
//! ACS (PCIe Base 4.0, 7.7.7): on every open bridge that has the extended capability,
//! Source Validation, Request Redirect, Completion Redirect and Upstream Forwarding are
//! enabled where the capability says they are implemented; one it does not implement is
//! taken as hard-wired on, as Linux's `pci_acs_flags_enabled` does (the spec requires a
//! downstream port to implement each one it could need). A bridge declared `acs` without
//! the capability, or whose control register does not take the bits, is left closed.
//!
//! Bridge Control (0x3e) is written on every bridge, open or closed: VGA Enable, VGA
//! 16-bit decode and ISA Enable off, Secondary Bus Reset not held, SERR# Enable on (as
//! Linux's `pci_configure_serr`), the rest as firmware left it (`program`). VGA Enable
//! makes a bridge forward 0xa0000..0xc0000 downstream whatever its memory window says, so
//! a peer's DMA there would be routed to a device below it rather than to the SMMU; an
//! open bridge whose VGA, ISA or reset bit does not read back clear is left closed.

use iommu_protocol::ErrorCode;

use super::{capabilities, place_bars, reg, BarError, Cap, Census, ConfigSpace, Placement, Recorded, MAX_CAPS};
use crate::config::{BridgeConfig, BridgeKind, PciFunctionConfig};

/// Type-1 (bridge) header registers (PCI-to-PCI Bridge Architecture 1.2, 3.2).
pub mod bridge_reg {
    /// Primary (byte 0), secondary (1) and subordinate (2) bus numbers, secondary latency
    /// timer (3).
    pub const BUS_NUMBERS: u16 = 0x18;
    /// I/O base (8 bits) and limit (8 bits).
    pub const IO_BASE_LIMIT: u16 = 0x1c;
    /// Memory base (16 bits) and limit (16 bits): address bits 31:20 in bits 15:4.
    pub const MEMORY_BASE_LIMIT: u16 = 0x20;
    /// Prefetchable memory base and limit (16 bits each), as the memory window.
    pub const PREF_BASE_LIMIT: u16 = 0x24;
    /// Prefetchable base, upper 32 bits.
    pub const PREF_BASE_UPPER: u16 = 0x28;
    /// Prefetchable limit, upper 32 bits.
    pub const PREF_LIMIT_UPPER: u16 = 0x2c;
    /// I/O base and limit, upper 16 bits each.
    pub const IO_UPPER: u16 = 0x30;
    /// A closed memory (and prefetchable) window: base 0xfff0_0000 above limit 0.
    pub const WINDOW_CLOSED: u32 = 0x0000_fff0;
    /// A closed I/O window: base 0xf000 above limit 0 (the 16 bits at 0x1c; the
    /// secondary status above them is not written).
    pub const IO_CLOSED: u16 = 0x00f0;
    /// Command: I/O space.
    pub const CMD_IO: u16 = 1 << 0;
    /// The bridge's own Expansion ROM Base Address (3.2.5.16); bit 0 enables it.
    pub const ROM: u16 = 0x38;
    /// Bridge Control (16 bits; PCI-to-PCI Bridge Architecture 1.2, 3.2.5.18; PCIe Base
    /// 4.0, 7.5.1.3.13).
    pub const BRIDGE_CONTROL: u16 = 0x3e;
    /// Parity Error Response Enable.
    pub const CTL_PARITY: u16 = 1 << 0;
    /// SERR# Enable: forward errors from the secondary side.
    pub const CTL_SERR: u16 = 1 << 1;
    /// ISA Enable: do not forward the top 768 bytes of each 1 KiB of the I/O window.
    pub const CTL_ISA: u16 = 1 << 2;
    /// VGA Enable: forward the legacy VGA ranges (memory 0xa0000..0xc0000, I/O 0x3b0..0x3bb
    /// and 0x3c0..0x3df) downstream, whatever the windows say.
    pub const CTL_VGA: u16 = 1 << 3;
    /// VGA 16-bit decode.
    pub const CTL_VGA_16: u16 = 1 << 4;
    /// Secondary Bus Reset: the secondary bus held in reset while set.
    pub const CTL_BUS_RESET: u16 = 1 << 6;
    /// What the owner clears, and checks reads back clear: no legacy VGA or ISA
    /// forwarding, the secondary bus not held in reset.
    pub const CTL_OFF: u16 = CTL_ISA | CTL_VGA | CTL_VGA_16 | CTL_BUS_RESET;
}

/// Access Control Services, an extended capability (PCIe Base 4.0, 7.7.7).
pub mod acs {
    /// Its extended capability ID.
    pub const ID: u16 = 0x000d;
    /// ACS Capability register (16 bits), from the capability's start.
    pub const CAP: u16 = 4;
    /// ACS Control register (16 bits).
    pub const CTRL: u16 = 6;
    /// The bytes the owner reads and writes: header, capability and control (the egress
    /// control vector after them is not used).
    pub const LEN: u16 = 8;
    /// Source Validation.
    pub const SV: u16 = 1 << 0;
    /// Translation Blocking.
    pub const TB: u16 = 1 << 1;
    /// P2P Request Redirect.
    pub const RR: u16 = 1 << 2;
    /// P2P Completion Redirect.
    pub const CR: u16 = 1 << 3;
    /// Upstream Forwarding.
    pub const UF: u16 = 1 << 4;
    /// What the owner enables: every peer-to-peer request goes up, through the SMMU,
    /// and a request whose requester ID is not of the port's buses is refused.
    pub const ISOLATE: u16 = SV | RR | CR | UF;
}

/// The PCI Express capability's Device/Port Type (PCIe Base 4.0, 7.5.3.2), as `BridgeKind`
/// expects it; `None` for a conventional PCI-to-PCI bridge (no PCI Express capability).
pub fn port_type(kind: BridgeKind) -> Option<u8> {
    match kind {
        BridgeKind::RootPort => Some(4),
        BridgeKind::SwitchUpstream => Some(5),
        BridgeKind::SwitchDownstream => Some(6),
        BridgeKind::PcieToPci => Some(7),
        BridgeKind::PciToPci => None,
    }
}

/// A bridge's memory window: the addresses it forwards downstream, `base..=limit`, in
/// 1 MiB granules (what the memory base and limit registers hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemWindow {
    /// First byte.
    pub base: u64,
    /// Last byte.
    pub limit: u64,
}

/// Why a bridge can have no memory window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowError {
    /// The BAR window of function `function` (an index into the functions) ends above
    /// 4 GiB, or wraps: the memory window of a bridge holds 32-bit addresses only.
    Beyond32Bits {
        /// The function.
        function: usize,
    },
}

const WINDOW_GRANULE: u64 = 1 << 20;

/// Is `bus` below `bridge` (its secondary bus or one under it)?
pub fn below(bridge: &BridgeConfig, bus: u8) -> bool {
    (bridge.secondary..=bridge.subordinate).contains(&bus)
}

/// The memory window of `bridge`: the 1 MiB-aligned hull of the BAR windows of the
/// functions below it (those with no window count for nothing), or `None` when none
/// needs one. One definition for the PCI owner, which programs it, and `iommu-sdf`,
/// which checks descriptions against it.
pub fn bridge_window(bridge: &BridgeConfig, functions: &[PciFunctionConfig]) -> Result<Option<MemWindow>, WindowError> {
    let mut hull: Option<(u64, u64)> = None;
    for (i, f) in functions.iter().enumerate() {
        if f.bar_size == 0 || !below(bridge, (f.rid >> 8) as u8) {
            continue;
        }
        let end = f.bar_base.checked_add(f.bar_size).filter(|e| *e <= 1 << 32);
        let Some(end) = end else { return Err(WindowError::Beyond32Bits { function: i }) };
        hull = Some(match hull {
            None => (f.bar_base, end),
            Some((lo, hi)) => (lo.min(f.bar_base), hi.max(end)),
        });
    }
    Ok(hull.map(|(lo, hi)| MemWindow {
        base: lo / WINDOW_GRANULE * WINDOW_GRANULE,
        limit: hi.div_ceil(WINDOW_GRANULE) * WINDOW_GRANULE - 1,
    }))
}

/// What was found where a bridge was declared, when it is not that bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A function with this header type (0: an endpoint).
    Header(u8),
    /// A bridge with a PCI Express capability of this port type.
    Port(u8),
    /// A bridge with no PCI Express capability (a conventional PCI-to-PCI bridge).
    Conventional,
}

/// What became of a declared bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BridgeState {
    /// Not reached: the bridge above it was closed, or no declared bridge leads to its
    /// bus. Nothing was written to it.
    #[default]
    NotReached,
    /// Numbered as declared, its windows set, ACS as said; forwarding.
    Open {
        /// The ACS control bits enabled (`acs::ISOLATE` and what the port implements),
        /// 0 if it has no ACS capability.
        acs: u16,
        /// Its memory window.
        window: Option<MemWindow>,
        /// Bus Master (upstream forwarding) on, as its Command register reads back: it is
        /// set on a bridge with a described function below it.
        master: bool,
        /// Bridge Control as it reads back (`bridge_reg::CTL_OFF` all clear).
        control: u16,
    },
    /// Nothing answers at its address.
    Missing,
    /// Something else is there (left closed if it is a bridge).
    WrongKind(Found),
    /// Its bus numbers cannot be right (secondary not above its own bus, subordinate
    /// below secondary, or buses outside the bridge above it or shared with a sibling):
    /// left closed.
    BadNumbers,
    /// A register did not take what was written (the bus numbers at 0x18, the memory
    /// window at 0x20): left closed.
    NotTaken {
        /// The register.
        offset: u16,
        /// What it read back.
        read: u32,
    },
    /// Declared with ACS, and it has no ACS capability, or its control register did not
    /// take the bits (what it read back): left closed.
    NoAcs(Option<u16>),
    /// Its window could not be set: left closed.
    BadWindow(WindowError),
}

/// What became of a described PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FunctionState {
    /// Not reached: the bridge above it is closed (or no declared bridge leads to its
    /// bus). Missing, as far as its driver is concerned.
    #[default]
    NotReached,
    /// Nothing answers at its address.
    Missing,
    /// There; its memory BARs placed in its window (the bytes they use; 0 when it has
    /// none).
    Placed(u64),
    /// There, and its BARs could not be placed in its window, or it has BARs and no window
    /// was described: memory and I/O decoding stay off, whatever its driver writes.
    BarsNotPlaced(BarError),
    /// There, and its MSI or MSI-X Enable still reads set after the walk cleared it (a
    /// device that keeps it, or sets it again itself): mastering, it would send firmware's
    /// message, so its Bus Master stays off whatever its driver writes. `bars`: what
    /// became of its BARs, as `Placed` or `BarsNotPlaced` says.
    MessagesStuck {
        /// The bytes its BARs use, placed, or why they were not.
        bars: Result<u64, BarError>,
        /// The Message Control register that stays enabled.
        control: u16,
        /// What it reads.
        read: u16,
    },
}

impl FunctionState {
    /// Is there a function at its address, reachable?
    pub fn present(&self) -> bool {
        matches!(self, FunctionState::Placed(_) | FunctionState::BarsNotPlaced(_) | FunctionState::MessagesStuck { .. })
    }

    /// Its BARs were placed in its window (the bytes they use).
    pub fn placed(&self) -> Option<u64> {
        match *self {
            FunctionState::Placed(used) | FunctionState::MessagesStuck { bars: Ok(used), .. } => Some(used),
            _ => None,
        }
    }
}

/// The description's PCI hierarchy (the generated policy's `PCI_BRIDGES`, `PCI_FUNCTIONS`).
#[derive(Debug, Clone, Copy)]
pub struct Topology<'a> {
    /// Declared bridges.
    pub bridges: &'a [BridgeConfig],
    /// Described functions.
    pub functions: &'a [PciFunctionConfig],
}

/// Something `configure` met on a bus, for the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    /// A function (requester ID, vendor and device ID, header type), its Bus Master off.
    Function(u16, u32, u8),
    /// A bridge the description does not declare, at this requester ID: closed.
    Undeclared(u16),
    /// A function (requester ID) whose MSI or MSI-X Enable still reads set after the walk
    /// cleared it: the Message Control register's offset and what it reads. Its Bus Master
    /// stays off (a bridge is left closed; an endpoint's driver cannot turn it on).
    MessagesOn(u16, u16, u16),
}

/// `configure` was given less room for its results than the topology has entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall;

/// Make configuration space what `topo` declares, before any driver runs: bridges
/// numbered, windowed and ACS-enabled top-down (or left closed, as the module says),
/// every Bus Master on every bus reached turned off, bridges closed that the description
/// does not declare, and each described function's memory BARs placed in its window and
/// decoded there from then on (`super::decode`: its driver maps them). `bridges` and `functions` receive what
/// became of each (same indices as `topo`'s); `met` is told of every function found.
pub fn configure(
    cs: &mut dyn ConfigSpace,
    topo: Topology<'_>,
    bridges: &mut [BridgeState],
    functions: &mut [FunctionState],
    mut met: impl FnMut(Met),
) -> Result<Census, TooSmall> {
    let (bridges, functions) = match (bridges.get_mut(..topo.bridges.len()), functions.get_mut(..topo.functions.len()))
    {
        (Some(b), Some(f)) => (b, f),
        _ => return Err(TooSmall),
    };
    bridges.fill(BridgeState::NotReached);
    functions.fill(FunctionState::NotReached);
    let mut census = Census::default();
    walk_bus(cs, topo, 0, &mut census, &mut met);
    // Each pass opens the bridges whose bus an earlier one reached: at most one pass per
    // level of the hierarchy, and each bridge is decided once (it leaves `NotReached`).
    loop {
        let mut progress = false;
        for i in 0..topo.bridges.len() {
            let b = topo.bridges[i];
            if bridges[i] != BridgeState::NotReached || !reached(topo, bridges, bus(b.rid)) {
                continue;
            }
            progress = true;
            bridges[i] = open(cs, topo, bridges, i);
            if let BridgeState::Open { .. } = bridges[i] {
                walk_bus(cs, topo, b.secondary, &mut census, &mut met);
            }
        }
        if !progress {
            break;
        }
    }
    // Every bus walked: now the open bridges forward. What they report is what their
    // Command register reads back.
    for (b, state) in topo.bridges.iter().zip(bridges.iter_mut()) {
        if let BridgeState::Open { window, master, .. } = state {
            let mut command = 0;
            if window.is_some() {
                command |= reg::CMD_MEMORY;
            }
            if *master {
                command |= reg::CMD_BUS_MASTER;
            }
            set_command(cs, b.rid, command);
            *master = cs.read(b.rid, reg::COMMAND, 2).is_some_and(|c| c as u16 & reg::CMD_BUS_MASTER != 0);
        }
    }
    for (f, state) in topo.functions.iter().zip(functions.iter_mut()) {
        *state = if !reached(topo, bridges, bus(f.rid)) {
            FunctionState::NotReached
        } else if cs.read(f.rid, reg::VENDOR_ID, 2).is_none_or(|v| v == 0xffff) {
            FunctionState::Missing
        } else {
            // With no window described (size 0), a function that has BARs is not placed:
            // they stay where firmware left them, and so it never decodes.
            match (place_bars(cs, f.rid, f.bar_base, f.bar_size), super::stuck_messages(cs, f.rid)) {
                (Err(BarError::Absent), _) => FunctionState::Missing,
                (bars, Some((control, read))) => FunctionState::MessagesStuck { bars, control, read },
                (Ok(used), None) => FunctionState::Placed(used),
                (Err(e), None) => FunctionState::BarsNotPlaced(e),
            }
        };
        if state.placed().is_some() {
            let _ = super::decode(cs, f.rid);
        }
    }
    Ok(census)
}

fn bus(rid: u16) -> u8 {
    (rid >> 8) as u8
}

/// Is `bus` reached: bus 0, or the secondary bus of an open bridge?
fn reached(topo: Topology<'_>, states: &[BridgeState], bus: u8) -> bool {
    bus == 0
        || topo.bridges.iter().zip(states).any(|(b, s)| b.secondary == bus && matches!(s, BridgeState::Open { .. }))
}

/// The configuration-space owner's requester ID for a function, printed "bb:dd.f".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bdf(pub u16);

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.0 >> 8, (self.0 >> 3) & 0x1f, self.0 & 7)
    }
}

/// Every function on `bus`: Bus Master off, and closed if it is a bridge the description
/// does not declare.
fn walk_bus(cs: &mut dyn ConfigSpace, topo: Topology<'_>, bus: u8, census: &mut Census, met: &mut impl FnMut(Met)) {
    let mut undeclared = 0;
    let c = super::walk(cs, u16::from(bus), &mut |cs, rid, id, header| {
        met(Met::Function(rid, id, header));
        if let Some((control, read)) = super::stuck_messages(cs, rid) {
            met(Met::MessagesOn(rid, control, read));
        }
        if header & 0x7f == 1 && !topo.bridges.iter().any(|b| b.rid == rid) {
            close(cs, rid);
            met(Met::Undeclared(rid));
            undeclared += 1;
        }
    });
    census.add(c);
    census.undeclared += undeclared;
}

/// Command's Memory Space, Bus Master and I/O Space bits set to `on` (others kept).
/// Command alone (16 bits), so Status is not written.
fn set_command(cs: &mut dyn ConfigSpace, rid: u16, on: u16) {
    let off = reg::CMD_MEMORY | reg::CMD_BUS_MASTER | bridge_reg::CMD_IO;
    if let Some(command) = cs.read(rid, reg::COMMAND, 2) {
        let _ = cs.write(rid, reg::COMMAND, 2, u32::from((command as u16 & !off) | on));
    }
}

/// A bridge closed: forwarding nothing either way, no buses below it, every window shut.
fn close(cs: &mut dyn ConfigSpace, rid: u16) {
    set_command(cs, rid, 0);
    program(cs, rid, 0, 0, 0, None);
}

/// Bus numbers and windows: the memory window as given (or closed), the prefetchable and
/// I/O windows closed. The secondary latency timer keeps its value. Its expansion ROM
/// disabled. And Bridge Control:
/// VGA and ISA forwarding off (the owner gives no function a legacy VGA or ISA range,
/// and a bridge forwarding 0xa0000..0xc0000 downstream would route a peer's DMA there to
/// a device below it instead of to the SMMU), the secondary bus out of reset, SERR#
/// forwarding on as Linux sets it on every bridge (drivers/pci/probe.c,
/// `pci_configure_serr`), and Parity Error Response, master-abort mode and the discard
/// timers as firmware left them (Linux changes those only on a platform's hot-plug
/// parameters, `_HPX`, which a device tree has none of).
fn program(cs: &mut dyn ConfigSpace, rid: u16, primary: u8, secondary: u8, subordinate: u8, window: Option<MemWindow>) {
    let latency = cs.read(rid, bridge_reg::BUS_NUMBERS, 4).unwrap_or(0) & 0xff00_0000;
    let numbers = latency | u32::from(subordinate) << 16 | u32::from(secondary) << 8 | u32::from(primary);
    let memory = window_register(window);
    let _ = cs.write(rid, bridge_reg::BUS_NUMBERS, 4, numbers);
    let _ = cs.write(rid, bridge_reg::MEMORY_BASE_LIMIT, 4, memory);
    let _ = cs.write(rid, bridge_reg::PREF_BASE_LIMIT, 4, bridge_reg::WINDOW_CLOSED);
    let _ = cs.write(rid, bridge_reg::PREF_BASE_UPPER, 4, 0);
    let _ = cs.write(rid, bridge_reg::PREF_LIMIT_UPPER, 4, 0);
    let _ = cs.write(rid, bridge_reg::IO_BASE_LIMIT, 2, u32::from(bridge_reg::IO_CLOSED));
    let _ = cs.write(rid, bridge_reg::IO_UPPER, 4, 0);
    // The bridge's own expansion ROM off, as an endpoint's is at placement: with Memory
    // Space on (an open bridge with a window) it would decode wherever firmware left it.
    if let Some(rom) = cs.read(rid, bridge_reg::ROM, 4).filter(|r| r & 1 != 0) {
        let _ = cs.write(rid, bridge_reg::ROM, 4, rom & !1);
    }
    if let Some(control) = cs.read(rid, bridge_reg::BRIDGE_CONTROL, 2) {
        let control = control as u16 & !bridge_reg::CTL_OFF | bridge_reg::CTL_SERR;
        let _ = cs.write(rid, bridge_reg::BRIDGE_CONTROL, 2, u32::from(control));
    }
}

/// The memory base and limit register for `window`: address bits 31:20 of its first and
/// last byte in bits 15:4 of each half (PCI-to-PCI Bridge Architecture 1.2, 3.2.5.8).
fn window_register(window: Option<MemWindow>) -> u32 {
    match window {
        Some(w) => (w.base >> 16) as u32 & 0xfff0 | ((w.limit >> 16) as u32 & 0xfff0) << 16,
        None => bridge_reg::WINDOW_CLOSED,
    }
}

/// Bridge `i`, whose bus is reached: checked against its declaration and opened, or
/// closed.
fn open(cs: &mut dyn ConfigSpace, topo: Topology<'_>, states: &[BridgeState], i: usize) -> BridgeState {
    let b = topo.bridges[i];
    let Some(vendor) = cs.read(b.rid, reg::VENDOR_ID, 2) else { return BridgeState::Missing };
    if vendor == 0xffff {
        return BridgeState::Missing;
    }
    let header = cs.read(b.rid, reg::HEADER_TYPE, 1).unwrap_or(0) as u8 & 0x7f;
    if header != 1 {
        return BridgeState::WrongKind(Found::Header(header));
    }
    let state = check(cs, topo, states, i);
    let BridgeState::Open { acs, window, master, .. } = state else {
        close(cs, b.rid);
        return state;
    };
    program(cs, b.rid, bus(b.rid), b.secondary, b.subordinate, window);
    // Read back: the bus numbers (bytes 0 to 2) and the memory window's address bits.
    let numbers = u32::from(b.subordinate) << 16 | u32::from(b.secondary) << 8 | u32::from(bus(b.rid));
    for (offset, want, mask) in [
        (bridge_reg::BUS_NUMBERS, numbers, 0x00ff_ffff),
        (bridge_reg::MEMORY_BASE_LIMIT, window_register(window), 0xfff0_fff0),
    ] {
        let read = cs.read(b.rid, offset, 4).unwrap_or(0);
        if read & mask != want & mask {
            close(cs, b.rid);
            return BridgeState::NotTaken { offset, read };
        }
    }
    // Bridge Control: a VGA or ISA enable, or a bus reset, that does not clear leaves
    // it closed (a VGA enable hard-wired on would forward the legacy range).
    let control = cs.read(b.rid, bridge_reg::BRIDGE_CONTROL, 2).unwrap_or(0xffff);
    if control as u16 & bridge_reg::CTL_OFF != 0 {
        close(cs, b.rid);
        return BridgeState::NotTaken { offset: bridge_reg::BRIDGE_CONTROL, read: control };
    }
    // Its own MSI or MSI-X that the walk could not turn off: with Bus Master on, which an
    // open bridge gets, it would send firmware's message.
    if let Some((offset, read)) = super::stuck_messages(cs, b.rid) {
        close(cs, b.rid);
        return BridgeState::NotTaken { offset, read: u32::from(read) };
    }
    if let Err(read) = enable_acs(cs, b.rid, acs) {
        close(cs, b.rid);
        return BridgeState::NoAcs(Some(read));
    }
    BridgeState::Open { acs, window, master, control: control as u16 }
}

/// A bridge found where bridge `i` is declared: what opening it would be, or why not.
fn check(cs: &mut dyn ConfigSpace, topo: Topology<'_>, states: &[BridgeState], i: usize) -> BridgeState {
    let b = topo.bridges[i];
    let ty = pcie_port_type(cs, b.rid);
    if ty != port_type(b.kind) {
        return BridgeState::WrongKind(ty.map_or(Found::Conventional, Found::Port));
    }
    let own = bus(b.rid);
    let parent = topo
        .bridges
        .iter()
        .zip(states)
        .find(|(p, s)| p.secondary == own && own != 0 && matches!(s, BridgeState::Open { .. }));
    let siblings = topo.bridges.iter().zip(states).enumerate().any(|(j, (s, st))| {
        j != i
            && bus(s.rid) == own
            && matches!(st, BridgeState::Open { .. })
            && s.secondary <= b.subordinate
            && b.secondary <= s.subordinate
    });
    let nested = parent.is_none_or(|(p, _)| below(p, b.secondary) && below(p, b.subordinate));
    if b.secondary <= own || b.subordinate < b.secondary || !nested || siblings {
        return BridgeState::BadNumbers;
    }
    let window = match bridge_window(&b, topo.functions) {
        Ok(w) => w,
        Err(e) => return BridgeState::BadWindow(e),
    };
    let acs_bits = match find_extended(cs, b.rid, acs::ID, acs::LEN) {
        Some(at) => acs::ISOLATE & cs.read(b.rid, at + acs::CAP, 2).unwrap_or(0) as u16,
        None if b.acs => return BridgeState::NoAcs(None),
        None => 0,
    };
    let master = topo.functions.iter().any(|f| below(&b, bus(f.rid)));
    // Bridge Control is read back once programmed (`open`).
    BridgeState::Open { acs: acs_bits, window, master, control: 0 }
}

/// ACS control set to `bits` (none but them), read back; `Err` with what it reads if
/// they did not take.
fn enable_acs(cs: &mut dyn ConfigSpace, rid: u16, bits: u16) -> Result<(), u16> {
    let Some(at) = find_extended(cs, rid, acs::ID, acs::LEN) else { return Ok(()) };
    let _ = cs.write(rid, at + acs::CTRL, 2, u32::from(bits));
    let read = cs.read(rid, at + acs::CTRL, 2).unwrap_or(0) as u16;
    if read & bits == bits {
        Ok(())
    } else {
        Err(read)
    }
}

/// The PCI Express capability's port type, if the function has one.
fn pcie_port_type(cs: &mut dyn ConfigSpace, rid: u16) -> Option<u8> {
    let mut caps = [Cap::default(); MAX_CAPS];
    let n = capabilities(cs, rid, &mut caps).ok()?;
    let exp = caps[..n].iter().find(|c| c.id == reg::CAP_EXP)?;
    Some((cs.read(rid, exp.start + 2, 2)? >> 4) as u8 & 0xf)
}

/// Where extended capability `id` starts (PCIe Base 4.0, 7.6: a list from 0x100, each
/// header ID in bits 15:0 and the next offset in bits 31:20), if the function has it and
/// its first `len` bytes (the registers the caller will touch) lie inside the 4 KiB: a
/// capability that runs past the end is not one (its registers would be another
/// function's, or nothing). The list may run in any order, as the spec lets it; one that
/// loops ends after as many steps as 8-byte capabilities fit (as Linux's
/// `pci_find_next_ext_capability` bounds it), one that points below 0x100 ends there.
pub fn find_extended(cs: &mut dyn ConfigSpace, rid: u16, id: u16, len: u16) -> Option<u16> {
    const SPACE: u16 = iommu_protocol::config::SPACE;
    let mut at = reg::EXTENDED;
    for _ in 0..(SPACE - reg::EXTENDED) / 8 {
        let header = cs.read(rid, at, 4)?;
        if header == 0 || header == u32::MAX {
            return None;
        }
        if header as u16 == id {
            return (u32::from(at) + u32::from(len) <= u32::from(SPACE)).then_some(at);
        }
        at = (header >> 20) as u16 & 0xffc;
        if at < reg::EXTENDED {
            return None;
        }
    }
    None
}

/// The window the owner placed the BARs of the described function at `rid` in
/// (`FunctionState::Placed`: its `bar=` window, of size 0 if it has none), if it placed
/// them. `states` are `configure`'s.
pub fn placement(rid: u16, topo: Topology<'_>, states: &[FunctionState]) -> Option<Placement> {
    let k = topo.functions.iter().position(|f| f.rid == rid)?;
    let f = topo.functions[k];
    states.get(k)?.placed().map(|_| Placement { base: f.bar_base, size: f.bar_size })
}

/// What the owner records of each described function (`super::record`: what its driver
/// may write in 0x40..0x100, where the capabilities its stop needs start), read once,
/// after `configure` and before any driver runs, into `recorded` (same indices as
/// `topo`'s functions; `None` for one not present). Every CONFIG_WRITE and every stop asks
/// this record (`ConfigSpace::recorded`), never only the capability list the function
/// shows later.
pub fn record_functions(
    cs: &mut dyn ConfigSpace,
    topo: Topology<'_>,
    states: &[FunctionState],
    recorded: &mut [Option<Recorded>],
) {
    for ((f, state), r) in topo.functions.iter().zip(states).zip(recorded.iter_mut()) {
        *r = if state.present() { super::record(cs, f.rid, f.intx) } else { None };
    }
}

/// What the owner recorded of the described function at `rid`, as `record_functions`
/// recorded it.
pub fn recorded(rid: u16, topo: Topology<'_>, recorded: &[Option<Recorded>]) -> Option<Recorded> {
    let k = topo.functions.iter().position(|f| f.rid == rid)?;
    recorded.get(k).copied().flatten()
}

/// The described function at `rid` kept its MSI or MSI-X enabled at boot
/// (`FunctionState::MessagesStuck`). `states` are `configure`'s.
pub fn messages_stuck(rid: u16, topo: Topology<'_>, states: &[FunctionState]) -> bool {
    let k = topo.functions.iter().position(|f| f.rid == rid);
    k.and_then(|k| states.get(k)).is_some_and(|s| matches!(s, FunctionState::MessagesStuck { .. }))
}

/// The requester ID of `device` among the described functions, for a configuration call:
/// `NoConfigSpace` if it is not a PCI function here, `DeviceMissing` if it was not found
/// at boot (`states`, from `configure`).
pub fn function_of(device: usize, topo: Topology<'_>, states: &[FunctionState]) -> Result<u16, ErrorCode> {
    let k = topo.functions.iter().position(|f| f.device == device).ok_or(ErrorCode::NoConfigSpace)?;
    match states.get(k) {
        Some(s) if s.present() => Ok(topo.functions[k].rid),
        _ => Err(ErrorCode::DeviceMissing),
    }
}
