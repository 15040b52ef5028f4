//! PCI configuration space, owned by the IOMMU PD.
//!
//! Why here: the SMMU confines a device's DMA to its owner's mappings, but whoever writes
//! a function's configuration space can move its BARs under another driver's window (and
//! drive that device's DMA engine inside the victim's domain), turn its Bus Master off or
//! on, or renumber buses, and so change the requester ID the SMMU turns into a StreamID.
//! StreamIDs come from bus numbers, so the PD that owns the SMMU must own bus numbering:
//! one owner, the IOMMU PD, and drivers reach their own function only through
//! CONFIG_READ and CONFIG_WRITE, filtered here.
//!
//! What a driver may write: Command's Memory Space, Bus Master and
//! INTx-disable bits (INTx disable only to 1 where its PD does not hold the function's
//! INTx line; its other bits keep the value they have: masked, not refused, so
//! a driver that writes Command whole, as virtio-drivers does, works), the MSI and MSI-X
//! capabilities past their headers (an MSI is a DMA write, which the SMMU confines like
//! any other), and device-specific registers at 0x40..0x100 outside every capability,
//! as the function's capability list was when its owner recorded it at boot
//! (`DriverBytes`), not as the function shows it at the write.
//! Status is never written (its error bits clear on a 1: the driver's 32-bit write of
//! Command writes Status as 0, which changes nothing). Everything else is refused
//! (`ConfigDenied`) before anything is written: the rest of the type-0 header (BARs,
//! expansion ROM, capability pointer, interrupt line), every register of a function
//! whose header is not type 0 (a bridge: bus numbers, windows, its own Command), every
//! capability's header (ID and next pointer) and body other than MSI/MSI-X, and all of
//! extended configuration space (ACS lives there, with AER, SR-IOV, resizable BARs:
//! none a driver here needs; a device that does is a list of allowed extended
//! capabilities away).
//!
//! The ECAM accesses are behind `ConfigSpace`, so host tests run the filter against a
//! model of configuration space (`tests/pci.rs`).

use iommu_protocol::ErrorCode;

use crate::hw::DeviceIndex;

mod reset;
mod topology;
pub use reset::{restore_function, stop_function, BootCaps, Reset, Stopped, FLR_WAIT_MS};
pub use topology::{
    acs, bridge_reg, bridge_window, configure, find_extended, function_of, port_type, record_functions, Bdf,
    BridgeState, Found, FunctionState, MemWindow, Met, TooSmall, Topology, WindowError,
};
pub use topology::{messages_stuck as messages_stuck_of, placement as placement_of, recorded as recorded_of};

/// Configuration space, as its owner reaches it (ECAM in the IOMMU PD, a model in tests).
pub trait ConfigSpace {
    /// The requester ID (bus << 8 | device << 3 | function) of `device`, if it is a PCI
    /// function whose configuration space this owner holds: `NoConfigSpace` if it is not
    /// one, `DeviceMissing` if it was not found there at boot (`function_of`).
    fn function(&self, device: DeviceIndex) -> Result<u16, ErrorCode>;
    /// `width` (1, 2 or 4) bytes at `offset` (a multiple of `width`, inside 4 KiB) of
    /// function `rid`, or `None` if `rid` is outside the space this owner maps. An absent
    /// function reads as all ones, as on a real bus.
    fn read(&mut self, rid: u16, offset: u16, width: u8) -> Option<u32>;
    /// Write them; `None` if `rid` is outside the space this owner maps.
    fn write(&mut self, rid: u16, offset: u16, width: u8, value: u32) -> Option<()>;
    /// Wait `ms` milliseconds: the waits the PCIe spec asks for around a function's reset
    /// (`stop_function`), the owner's only waits.
    fn wait_ms(&mut self, ms: u32);
    /// The window the owner placed function `rid`'s BARs in at boot (its `bar=` window from
    /// the description; one of size 0 for a function found to have none), if it placed
    /// them (`placement_of`). Only then may its driver turn Memory Space on: a function
    /// whose BARs were not placed decodes wherever firmware left them, over another
    /// function's window perhaps. And where a function that comes back from a reset is
    /// put again (`stop_function`, `restore_function`), never where it reads.
    fn placement(&self, rid: u16) -> Option<Placement>;
    /// Function `rid`'s MSI or MSI-X Enable stayed set at boot after the owner cleared it
    /// (`FunctionState::MessagesStuck`, `stuck_messages`): its driver may not turn its Bus
    /// Master on, or it would send firmware's message.
    fn messages_stuck(&self, rid: u16) -> bool;
    /// What the owner recorded of function `rid` at boot from the capability list the
    /// function showed then (`record`, `record_functions`), never as it shows now: what its
    /// driver may write in 0x40..0x100, and where the capabilities its stop needs start;
    /// `None` for a function it recorded nothing for (not there at boot, or not an
    /// endpoint), none of whose registers its driver may write.
    fn recorded(&mut self, rid: u16) -> Option<Recorded>;
    /// Milliseconds since some fixed start, never going back: what rations the waits
    /// above (`Service`'s STOP).
    fn now_ms(&mut self) -> u64;
}

/// No configuration space: what the service has when the IOMMU PD owns no ECAM (the
/// description gives it none). Every configuration call answers `NoConfigSpace`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConfigSpace;

impl ConfigSpace for NoConfigSpace {
    fn function(&self, _: DeviceIndex) -> Result<u16, ErrorCode> {
        Err(ErrorCode::NoConfigSpace)
    }
    fn read(&mut self, _: u16, _: u16, _: u8) -> Option<u32> {
        None
    }
    fn write(&mut self, _: u16, _: u16, _: u8, _: u32) -> Option<()> {
        None
    }
    fn wait_ms(&mut self, _: u32) {}
    fn placement(&self, _: u16) -> Option<Placement> {
        None
    }
    fn messages_stuck(&self, _: u16) -> bool {
        false
    }
    fn recorded(&mut self, _: u16) -> Option<Recorded> {
        None
    }
    fn now_ms(&mut self) -> u64 {
        0
    }
}

/// No configuration space, as `NoConfigSpace`, with a clock (`now_ms`, milliseconds never
/// going back): a service's rations need one whether or not it owns PCI (RESUME after a
/// storm, `FaultPolicy::resume_rest_ms`), and `NoConfigSpace`'s stands still at 0.
#[derive(Debug, Clone, Copy)]
pub struct NoConfigSpaceClocked(pub fn() -> u64);

impl ConfigSpace for NoConfigSpaceClocked {
    fn function(&self, device: DeviceIndex) -> Result<u16, ErrorCode> {
        NoConfigSpace.function(device)
    }
    fn read(&mut self, rid: u16, offset: u16, width: u8) -> Option<u32> {
        NoConfigSpace.read(rid, offset, width)
    }
    fn write(&mut self, rid: u16, offset: u16, width: u8, value: u32) -> Option<()> {
        NoConfigSpace.write(rid, offset, width, value)
    }
    fn wait_ms(&mut self, ms: u32) {
        NoConfigSpace.wait_ms(ms)
    }
    fn placement(&self, rid: u16) -> Option<Placement> {
        NoConfigSpace.placement(rid)
    }
    fn messages_stuck(&self, rid: u16) -> bool {
        NoConfigSpace.messages_stuck(rid)
    }
    fn recorded(&mut self, rid: u16) -> Option<Recorded> {
        NoConfigSpace.recorded(rid)
    }
    fn now_ms(&mut self) -> u64 {
        (self.0)()
    }
}

pub use iommu_protocol::config::reg;

/// The window a function's memory BARs are placed in: `base..base + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// First byte.
    pub base: u64,
    /// Bytes.
    pub size: u64,
}

/// Most capabilities followed in one list: 48 fit in 0x40..0x100 at four bytes each, so
/// a longer list loops, and is cut here.
const MAX_CAPS: usize = 48;

/// A capability in the standard list: where it starts, where it ends, its ID.
#[derive(Debug, Clone, Copy, Default)]
struct Cap {
    start: u16,
    end: u16,
    id: u8,
}

fn read(cs: &mut dyn ConfigSpace, rid: u16, offset: u16, width: u8) -> Result<u32, ErrorCode> {
    cs.read(rid, offset, width).ok_or(ErrorCode::NoConfigSpace)
}

/// The function is there: its vendor ID is not all ones (`DeviceMissing` otherwise: it
/// was there at boot, and nothing answers now).
fn present(cs: &mut dyn ConfigSpace, rid: u16) -> Result<(), ErrorCode> {
    match read(cs, rid, reg::VENDOR_ID, 2)? {
        0xffff => Err(ErrorCode::DeviceMissing),
        _ => Ok(()),
    }
}

/// The function's standard capability list, each with its extent: what the spec fixes
/// for the IDs known here, otherwise up to the next capability (in address order) or the
/// end of the standard space, so an unknown capability is covered whole.
fn capabilities(cs: &mut dyn ConfigSpace, rid: u16, caps: &mut [Cap; MAX_CAPS]) -> Result<usize, ErrorCode> {
    if read(cs, rid, reg::STATUS, 2)? as u16 & reg::STATUS_CAP_LIST == 0 {
        return Ok(0);
    }
    let mut n = 0;
    let mut ptr = read(cs, rid, reg::CAP_PTR, 1)? as u16 & 0xfc;
    while ptr >= reg::HEADER_END && n < MAX_CAPS {
        if caps[..n].iter().any(|c| c.start == ptr) {
            break;
        }
        let id = read(cs, rid, ptr, 1)? as u8;
        let len = match id {
            reg::CAP_PM => 8,
            reg::CAP_MSI => {
                let control = read(cs, rid, ptr + 2, 2)? as u16;
                // 64-bit address: 4 more bytes; per-vector masking: mask and pending bits.
                match (control & 1 << 7 != 0, control & 1 << 8 != 0) {
                    (false, false) => 0x0a,
                    (true, false) => 0x0e,
                    (false, true) => 0x14,
                    (true, true) => 0x18,
                }
            }
            reg::CAP_MSIX => 12,
            reg::CAP_EXP => 0x3c,
            reg::CAP_VENDOR => (read(cs, rid, ptr + 2, 1)? as u16).max(3),
            _ => 0,
        };
        caps[n] = Cap { start: ptr, end: if len == 0 { 0 } else { (ptr + len).min(reg::EXTENDED) }, id };
        n += 1;
        ptr = read(cs, rid, ptr + 1, 1)? as u16 & 0xfc;
    }
    // Unknown lengths run to the next capability or the end of the standard space.
    for i in 0..n {
        if caps[i].end == 0 {
            let start = caps[i].start;
            let next = caps[..n].iter().map(|c| c.start).filter(|s| *s > start).min();
            caps[i].end = next.unwrap_or(reg::EXTENDED);
        }
    }
    Ok(n)
}

/// MSI Message Control: MSI Enable (PCI Local Bus 3.0, 6.8.1.3).
const MSI_ENABLE: u16 = 1 << 0;
/// MSI-X Message Control: MSI-X Enable (6.8.2.3).
const MSIX_ENABLE: u16 = 1 << 15;
/// MSI-X Message Control: Function Mask, every vector masked (6.8.2.3).
const MSIX_FUNCTION_MASK: u16 = 1 << 14;
/// MSI Message Control: 64-bit address capable, and per-vector masking capable (6.8.1.3;
/// the mask bits at 0x0c, or 0x10 with a 64-bit address).
const MSI_64_BIT: u16 = 1 << 7;
const MSI_PER_VECTOR_MASK: u16 = 1 << 8;

/// MSI and MSI-X off in function `rid`, whose capability list is `caps`: it sends no
/// interrupt message (a DMA write to an address someone else chose) until its owner's
/// driver sets one up again. And masked, where the function can mask them: MSI-X's
/// Function Mask set, and with per-vector masking every MSI vector's mask bit, so that
/// a function whose enable will not clear (it keeps it, or sets it again itself) and
/// that honours its masks sends nothing either (PCI Local Bus 3.0, 6.8.1.3, 6.8.1.7,
/// 6.8.2.3). A driver that enables them again unmasks what it uses, as Linux's
/// `msi_capability_init` and `msix_capability_init` do.
fn messages_off(cs: &mut dyn ConfigSpace, rid: u16, caps: &[Cap]) -> Result<(), ErrorCode> {
    for (c, enable) in caps.iter().filter_map(|c| Some((c, message_enable(c)?))) {
        let control = read(cs, rid, c.start + 2, 2)? as u16;
        let mask = if c.id == reg::CAP_MSIX { MSIX_FUNCTION_MASK } else { 0 };
        let quiet = control & !enable | mask;
        if quiet != control {
            cs.write(rid, c.start + 2, 2, u32::from(quiet)).ok_or(ErrorCode::NoConfigSpace)?;
        }
        if c.id == reg::CAP_MSI && control & MSI_PER_VECTOR_MASK != 0 {
            let bits = c.start + if control & MSI_64_BIT != 0 { 0x10 } else { 0x0c };
            cs.write(rid, bits, 4, u32::MAX).ok_or(ErrorCode::NoConfigSpace)?;
        }
    }
    Ok(())
}

/// Whether MSI or MSI-X reads enabled in function `rid`, whose capability list is `caps`:
/// the first whose enable is set, as (its Message Control's offset, what that reads).
fn messages_on(cs: &mut dyn ConfigSpace, rid: u16, caps: &[Cap]) -> Result<Option<(u16, u16)>, ErrorCode> {
    for (c, enable) in caps.iter().filter_map(|c| Some((c, message_enable(c)?))) {
        let control = read(cs, rid, c.start + 2, 2)? as u16;
        if control & enable != 0 {
            return Ok(Some((c.start + 2, control)));
        }
    }
    Ok(None)
}

/// After the boot walk turned them off: whether function `rid`'s MSI or MSI-X still reads
/// enabled (`messages_on`), a device that keeps its enable or sets it again itself. Its
/// message is firmware's (an address and data no driver chose), sent as soon as the
/// function masters, so the owner keeps its Bus Master off: an endpoint's whatever its
/// driver writes (`ConfigSpace::messages_stuck`), a bridge's by leaving it closed.
pub fn stuck_messages(cs: &mut dyn ConfigSpace, rid: u16) -> Option<(u16, u16)> {
    let mut caps = [Cap::default(); MAX_CAPS];
    let n = capabilities(cs, rid, &mut caps).ok()?;
    messages_on(cs, rid, &caps[..n]).ok().flatten()
}

/// The enable bit in Message Control of `c`, if it is MSI or MSI-X.
fn message_enable(c: &Cap) -> Option<u16> {
    match c.id {
        reg::CAP_MSI => Some(MSI_ENABLE),
        reg::CAP_MSIX => Some(MSIX_ENABLE),
        _ => None,
    }
}

/// What a driver's write does to one byte of its function's space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Byte {
    /// Written as given.
    Write,
    /// Only these bits are written; the others keep their value.
    Masked(u8),
    /// Written as 0 (Status: its bits clear on a 1, so nothing changes).
    Zero,
    /// Not the driver's: the whole write is refused.
    Denied,
}

fn classify(byte: u16, bytes: &DriverBytes) -> Byte {
    let [lo, hi] = reg::CMD_DRIVER.to_le_bytes();
    match byte {
        b if b == reg::COMMAND => Byte::Masked(lo),
        b if b == reg::COMMAND + 1 => Byte::Masked(hi),
        b if b == reg::STATUS || b == reg::STATUS + 1 => Byte::Zero,
        b if bytes.allows(b) => Byte::Write,
        _ => Byte::Denied,
    }
}

/// Which bytes of 0x40..0x100 (capabilities and device-specific registers) a function's
/// driver may write: past the header (ID and next pointer) of MSI and MSI-X, and in no
/// capability. Every capability that covers a byte is asked, not the first the list
/// names: in a device whose capabilities overlap, a PM or PCI Express register inside
/// MSI's extent stays refused.
///
/// Decided once, from the list the function shows when its owner records it (at boot,
/// before any driver runs: `record_functions`), and asked at every write instead of
/// the list the function shows then. A function can rewrite its own list (a device its
/// driver reprograms through a BAR, or a hostile one); read at each write, the list let
/// it drop PM or the PCI Express capability, clear Status's Capabilities List bit, or
/// give PM's ID to MSI, and so have PM's control (D3hot) or Device Control (Initiate FLR)
/// written as device-specific registers or as MSI's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DriverBytes([u64; 3]);

impl DriverBytes {
    /// Whether byte `byte` of the function's space is the driver's (never one outside
    /// 0x40..0x100).
    fn allows(&self, byte: u16) -> bool {
        let i = usize::from(byte.wrapping_sub(reg::HEADER_END));
        i < 8 * core::mem::size_of::<Self>() && self.0[i / 64] >> (i % 64) & 1 != 0
    }
}

/// What the owner records of a function at boot, before any driver runs, from the
/// capability list the function shows then, and asks later instead of the list it shows
/// then (a function can rewrite its own list): what its driver may write (`DriverBytes`)
/// and where the capabilities its stop needs start (`BootCaps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recorded {
    /// What its driver may write in 0x40..0x100.
    pub bytes: DriverBytes,
    /// Its MSI, MSI-X, FLR and PM reset, for its stops.
    pub caps: BootCaps,
    /// Its driver may clear Interrupt Disable: the pin it showed at boot (Interrupt Pin)
    /// is one whose line its driver's PD holds (`PciFunctionConfig::intx`).
    pub intx: bool,
    /// The BAR dwords (bit i: the one at 0x10 + 4i) of each memory BAR that held an
    /// address at boot, where the owner placed it, both of a 64-bit BAR's: what `bars`
    /// holds of them is checked between calls (`keep_owned`).
    pub placed_bars: u8,
    /// What each BAR dword read at boot, once placed: the owner's plan, which a stop and a
    /// return put back unchanged (the same window and sizes make the same plan). One
    /// reading otherwise later was reset (to 0) or rewritten by the device (a driver
    /// writing its own configuration through a window in its BAR).
    pub bars: [u32; 6],
    /// Where its SR-IOV control register was (VF Enable), if it had SR-IOV.
    pub sriov_control: Option<u16>,
    /// Its Resizable BAR controls (`Resizable`), as they read at boot.
    pub resizable: Resizable,
}

/// What the owner records of function `rid` (`Recorded`), from the capability list it
/// shows now; `None` if nothing answers there or it is not an endpoint (its header not
/// type 0). `intx_pins`: the pins whose line its driver's PD holds
/// (`PciFunctionConfig::intx`).
pub fn record(cs: &mut dyn ConfigSpace, rid: u16, intx_pins: u8) -> Option<Recorded> {
    present(cs, rid).ok()?;
    if read(cs, rid, reg::HEADER_TYPE, 1).ok()? & 0x7f != 0 {
        return None;
    }
    // Interrupt Pin is read-only: the pin the function asserts, which the board's swizzle
    // turns into the line the description's `<irq>` names. 0 (no INTx) or a value past
    // INTD# is no pin of a line anyone holds.
    let pin = read(cs, rid, reg::INTERRUPT_PIN, 1).ok()?;
    let intx = (1..=4).contains(&pin) && intx_pins >> (pin - 1) & 1 != 0;
    let mut caps = [Cap::default(); MAX_CAPS];
    let n = capabilities(cs, rid, &mut caps).ok()?;
    let boot = BootCaps::of(cs, rid, &caps[..n]).ok()?;
    let mut bytes = DriverBytes::default();
    for b in reg::HEADER_END..reg::EXTENDED {
        // Only the MSI and MSI-X the stop turns off whatever the list shows then (the first
        // of each, `BootCaps`): a second one a driver set up, unlisted before the stop,
        // kept its enable and its message for the next owner.
        let drivers = |c: &Cap| boot.is_message(c) && b >= c.start + 2;
        if caps[..n].iter().filter(|c| (c.start..c.end).contains(&b)).all(drivers) {
            let i = usize::from(b - reg::HEADER_END);
            bytes.0[i / 64] |= 1 << (i % 64);
        }
    }
    let (placed_bars, bars) = placed_bars(cs, rid).ok()?;
    let sriov_control = sriov_control(cs, rid);
    let resizable = Resizable::of(cs, rid).ok()?;
    Some(Recorded { bytes, caps: boot, intx, placed_bars, bars, sriov_control, resizable })
}

/// The BAR dwords of function `rid` that hold an address now, and what each dword reads
/// (`Recorded::placed_bars`, `Recorded::bars`): a memory BAR whose low dword has address
/// bits set or, 64-bit, whose high dword is not 0, both dwords of it. An I/O BAR is never
/// placed.
fn placed_bars(cs: &mut dyn ConfigSpace, rid: u16) -> Result<(u8, [u32; 6]), ErrorCode> {
    let mut bars = [0u32; 6];
    for (i, bar) in bars.iter_mut().enumerate() {
        *bar = read(cs, rid, reg::BAR0 + 4 * i as u16, 4)?;
    }
    let mut placed = 0u8;
    let mut i = 0;
    while i < 6 {
        let low = bars[i];
        let wide = low & 0b111 == 0b100 && i < 5;
        if low & 1 == 0 && (low & !0xf != 0 || wide && bars[i + 1] != 0) {
            placed |= if wide { 0b11 << i } else { 1 << i };
        }
        i += if wide { 2 } else { 1 };
    }
    Ok((placed, bars))
}

/// Resizable BAR, an extended capability (PCIe Base 4.0, 7.8.6): its ID; each BAR's
/// control at 8 + 8i, its BAR Size in bits 13:8, and in the first control the number of
/// resizable BARs in bits 7:5 (1 to 6).
const REBAR_ID: u16 = 0x0015;
const REBAR_SIZE: u32 = 0x3f << 8;

/// Where a function's Resizable BAR controls are, and the BAR Size each held at boot,
/// where the owner placed its BARs: a BAR resized later (its driver writing the control
/// through a window onto its configuration space in its BAR) may keep reading the
/// address the owner placed it at, if that is aligned to its new size, while decoding
/// past its window, over another function's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resizable {
    /// The capability's offset (0: none).
    at: u16,
    /// Its controls, as they read at boot.
    controls: [u32; 6],
    n: u8,
}

impl Resizable {
    fn of(cs: &mut dyn ConfigSpace, rid: u16) -> Result<Resizable, ErrorCode> {
        let mut r = Resizable::default();
        let Some(at) = topology::find_extended(cs, rid, REBAR_ID, 12) else { return Ok(r) };
        let n = (read(cs, rid, at + 8, 4)? >> 5 & 0b111).clamp(1, 6) as u16;
        // Only the controls that lie inside the 4 KiB.
        let n = n.min((iommu_protocol::config::SPACE - at - 4) / 8);
        r.at = at;
        for i in 0..n {
            r.controls[usize::from(i)] = read(cs, rid, at + 8 + 8 * i, 4)?;
        }
        r.n = n as u8;
        Ok(r)
    }

    /// Each control whose BAR Size is not what it was at boot written back; whether any
    /// was.
    fn put_back(&self, cs: &mut dyn ConfigSpace, rid: u16) -> Result<bool, ErrorCode> {
        let mut resized = false;
        for (i, &boot) in self.controls[..usize::from(self.n)].iter().enumerate() {
            let control = self.at + 8 + 8 * i as u16;
            let now = read(cs, rid, control, 4)?;
            if now & REBAR_SIZE != boot & REBAR_SIZE {
                cs.write(rid, control, 4, now & !REBAR_SIZE | boot & REBAR_SIZE).ok_or(ErrorCode::NoConfigSpace)?;
                resized = true;
            }
        }
        Ok(resized)
    }
}

/// Whether function `rid` no longer decodes only where the owner placed it: a BAR dword
/// it placed reads other than it did at boot (`Recorded::bars`: reset to 0, or moved by
/// the device itself, perhaps onto another function's window), or its expansion ROM is
/// enabled (the owner disables it at every placement, and no driver may write it; it
/// decodes wherever its address points once Memory Space is on).
fn placement_broken(cs: &mut dyn ConfigSpace, rid: u16) -> Result<bool, ErrorCode> {
    let Some(r) = cs.recorded(rid) else { return Ok(false) };
    for i in (0..6u16).filter(|i| r.placed_bars >> i & 1 != 0) {
        if read(cs, rid, reg::BAR0 + 4 * i, 4)? != r.bars[usize::from(i)] {
            return Ok(true);
        }
    }
    Ok(read(cs, rid, reg::ROM, 4)? & ROM_ENABLE != 0)
}

/// CONFIG_READ of function `rid` (its owner checked by the service); `DeviceMissing` if
/// nothing answers there, rather than the all ones a bus returns.
pub fn config_read(cs: &mut dyn ConfigSpace, rid: u16, offset: u16, width: u8) -> Result<u32, ErrorCode> {
    present(cs, rid)?;
    read(cs, rid, offset, width)
}

/// CONFIG_WRITE of function `rid` (its owner checked by the service): filtered as the
/// module says, refused whole (nothing written) if any byte is not the driver's. Returns
/// what the register reads after the write.
///
/// Which bytes of 0x40..0x100 are the driver's is what the owner recorded at boot
/// (`ConfigSpace::recorded`), never the capability list the function shows now.
///
/// Command's Bus Master is written as 0 when the service says `BusMaster::KeptOff`: for a
/// function whose MSI or MSI-X Enable did not clear at boot (`ConfigSpace::messages_stuck`)
/// and that no stop has read off since, or whose last stop did not read back off:
/// mastering, it would send a message to an address its driver did not choose.
///
/// Command's Interrupt Disable is written as 1 for a function whose INTx line its
/// driver's PD does not hold (`Recorded::intx`): asserted, it would storm the PD that
/// holds that line, or hide that PD's own device's interrupts.
///
/// Command's Memory Space is written as 1 for a function whose BARs the owner placed,
/// whatever the driver asks (masked, as the bits it may not write are): its driver maps
/// them, and a load from a BAR that does not decode can end in an SError on Arm hardware.
///
/// A write that turns Memory Space on from off first puts the BARs where the owner
/// places them (`decode_only_where_placed`): a function that reset itself decodes at 0.
///
/// Command's Memory Space and I/O Space are written as 0 for a function whose BARs the
/// owner did not place at boot (`ConfigSpace::placement`: its window too small, an I/O
/// BAR, or no window described): its BARs hold what firmware left, which may be another
/// function's window, and decoding there would answer the CPU's accesses to it. Masked,
/// not refused, as Command's other bits are: the reply shows the driver the bit is off.
///
/// BARs are virtualised the way vfio-pci does it, so that a driver (virtio-drivers'
/// `PciRoot::bar_info`) can size them: a 32-bit write of all ones to a BAR dword is done
/// here as a whole sizing probe (memory and I/O decoding off, all ones written, the size
/// mask read, the old value written back, decoding restored) and answers the mask; a
/// write of the value the BAR already holds changes nothing and succeeds; any other BAR
/// write is refused. Within the one call nothing else runs, so the BAR is never seen
/// anywhere but where the owner put it.
pub fn config_write(
    cs: &mut dyn ConfigSpace,
    rid: u16,
    offset: u16,
    width: u8,
    value: u32,
    bus_master: BusMaster,
) -> Result<u32, ErrorCode> {
    present(cs, rid)?;
    // A bridge (type 1), a CardBus bridge (type 2), or a reserved type: none of its
    // registers is a driver's.
    if read(cs, rid, reg::HEADER_TYPE, 1)? & 0x7f != 0 {
        return Err(ErrorCode::ConfigDenied);
    }
    // What the owner recorded at boot, not what the function's capability list says now;
    // nothing recorded (not an endpoint then): none of it is the driver's.
    let Some(Recorded { bytes, intx, .. }) = cs.recorded(rid) else { return Err(ErrorCode::ConfigDenied) };
    if (reg::BAR0..reg::BAR0 + 24).contains(&offset) {
        return bar_write(cs, rid, offset, width, value);
    }
    let mut keep = 0u32; // bits whose current value is kept
    let mut zero = 0u32; // bits written as 0
    for i in 0..width as u16 {
        let shift = 8 * i as u32;
        match classify(offset + i, &bytes) {
            Byte::Write => {}
            Byte::Masked(m) => keep |= u32::from(!m) << shift,
            Byte::Zero => zero |= 0xff << shift,
            Byte::Denied => return Err(ErrorCode::ConfigDenied),
        }
    }
    let command = offset <= reg::COMMAND && reg::COMMAND < offset + u16::from(width);
    let mut one = 0u32; // bits written as 1
    if command {
        let memory = u32::from(reg::CMD_MEMORY) << (8 * (reg::COMMAND - offset));
        if cs.placement(rid).is_some() {
            // Memory Space on for a function whose BARs the owner placed, whatever its
            // driver writes: its driver maps them, and on Arm hardware a load from a BAR
            // that does not decode can end in an SError that takes the kernel down
            // (vfio-pci keeps it on for the same reason, CVE-2020-12888).
            keep &= !memory;
            one |= memory;
        } else {
            // Decoding off for a function whose BARs were not placed.
            let off = memory | u32::from(CMD_IO_SPACE) << (8 * (reg::COMMAND - offset));
            keep &= !off;
            zero |= off;
        }
    }
    // Interrupt Disable kept set for a function whose INTx line is not its driver's PD's
    // (another PD's, or no PD's): asserted, it would storm the PD that holds that line or
    // hide that PD's own device's interrupts, and a line no PD holds helps nobody.
    if !intx && offset <= reg::COMMAND + 1 && reg::COMMAND + 1 < offset + u16::from(width) {
        // Interrupt Disable is bit 2 of Command's high byte.
        let disable = 1u32 << (8 * (reg::COMMAND + 1 - offset) + 2);
        keep &= !disable;
        one |= disable;
    }
    // Bus Master off for a function whose MSI or MSI-X stayed enabled at boot and has not
    // read off since, or that its last stop could not turn off (the service's to say).
    if command && bus_master == BusMaster::KeptOff {
        let off = u32::from(reg::CMD_BUS_MASTER) << (8 * (reg::COMMAND - offset));
        keep &= !off;
        zero |= off;
    }
    let current = if keep != 0 { read(cs, rid, offset, width)? } else { 0 };
    let value = (value & !keep & !zero) | (current & keep & !zero) | one;
    if command && value >> (8 * (reg::COMMAND - offset)) & u32::from(reg::CMD_MEMORY) != 0 {
        decode_only_where_placed(cs, rid)?;
    }
    cs.write(rid, offset, width, value).ok_or(ErrorCode::NoConfigSpace)?;
    read(cs, rid, offset, width)
}

/// Whether a function's driver may turn its Bus Master on (`config_write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusMaster {
    /// It may.
    Allowed,
    /// Written as 0 whatever the driver asks: the function's MSI or MSI-X Enable stayed
    /// set at boot and no stop has read it off since, or its last stop did not read back
    /// off (an MSI or MSI-X Enable, or Command, stayed set); mastering, it would send a
    /// message to an address its driver now did not choose.
    KeptOff,
}

/// Memory Space is about to be turned on in function `rid`: if it is off now, its BARs are
/// first put where the owner places them (`place_again`), whatever they read. A function
/// that resets itself (a device-specific register its driver wrote, a link that went
/// down) comes back with its BARs at their reset values, 0, without its owner knowing:
/// its driver turning Memory Space on again would have it decode there, over whatever is
/// at 0. Any reset clears Memory Space, so turning it on again is always such a write;
/// what a function that keeps decoding through its own reset does is not caught.
fn decode_only_where_placed(cs: &mut dyn ConfigSpace, rid: u16) -> Result<(), ErrorCode> {
    if read(cs, rid, reg::COMMAND, 2)? as u16 & reg::CMD_MEMORY != 0 {
        return Ok(());
    }
    place_again(cs, rid)
}

/// What the owner keeps on in function `rid` between calls, put back if it reads off: a
/// function that reset itself while answering (an FLR its device starts through a
/// device-specific register its driver wrote, a link that went down and came back)
/// returns to its reset values, its BARs at 0 and Command 0, without its owner knowing.
/// So where the owner placed its BARs and Memory Space reads off (the owner leaves it
/// off only inside its own calls), or a BAR it placed reads otherwise than at boot or
/// the ROM is enabled (one that kept Memory Space on through its reset; one whose driver
/// rewrote them through a window in its BAR), the BARs are placed again from the description, ROM
/// disabled, read back, and Memory Space turned on: its driver maps that window, and a
/// load from a BAR that does not decode can end in an SError on Arm hardware. And
/// Interrupt Disable is set again where its driver's PD does not hold its line
/// (`Recorded::intx`). Bus Master stays as the reset left it, off: its driver turns it
/// on when it has set its device up again; and it is turned off where the function is
/// kept from mastering (`BusMaster::KeptOff`), however it was turned on. `DeviceMissing` if nothing answers, or the
/// BARs cannot be put back (`place_again`: not the function the owner placed), decoding
/// left off; otherwise whether anything was put back.
pub fn keep_owned(cs: &mut dyn ConfigSpace, rid: u16, bus_master: BusMaster) -> Result<bool, ErrorCode> {
    present(cs, rid)?;
    if read(cs, rid, reg::HEADER_TYPE, 1)? & 0x7f != 0 {
        return Ok(false);
    }
    let mut put_back = false;
    // Memory Space off (the owner leaves it off only inside its own calls), or a placed
    // BAR not reading as placed, or the ROM enabled: a function that kept decoding
    // through its own reset (against the spec) decoded at 0, and its driver's Command
    // write turned Bus Master on with its BARs there; one whose driver rewrote its BARs
    // or ROM through a window in its own BAR decoded over another function's window.
    // A BAR resized since boot is sized back first (Memory Space stays as it is until
    // `place_again` turns it off), then placed again.
    let resized = match cs.recorded(rid) {
        Some(r) if cs.placement(rid).is_some() => r.resizable.put_back(cs, rid)?,
        _ => false,
    };
    if cs.placement(rid).is_some()
        && (resized || read(cs, rid, reg::COMMAND, 2)? as u16 & reg::CMD_MEMORY == 0 || placement_broken(cs, rid)?)
    {
        place_again(cs, rid)?;
        // Placed again, but not as at boot (BARs of other sizes that still fit): not the
        // function the owner placed, and left not decoding.
        if placement_broken(cs, rid)? {
            return Err(ErrorCode::DeviceMissing);
        }
        decode(cs, rid).ok_or(ErrorCode::NoConfigSpace)?;
        put_back = true;
    }
    // Its virtual functions, which its driver may have turned on through a window in its
    // BAR (CONFIG_WRITE refuses extended space), off again: where its SR-IOV control was
    // at boot, not where its extended list (which it can rewrite too, and make long)
    // says now.
    if let Some(control) = cs.recorded(rid).and_then(|r| r.sriov_control) {
        put_back |= virtual_functions_off(cs, rid, control);
    }
    let intx = cs.recorded(rid).is_some_and(|r| r.intx);
    let command = read(cs, rid, reg::COMMAND, 2)? as u16;
    let mut quiet = command;
    if !intx {
        quiet |= reg::CMD_INTX_DISABLE;
    }
    // A function kept from mastering that turned its Bus Master on itself (its driver
    // writing Command through a window in its BAR, which CONFIG_WRITE would have masked)
    // would send the message its last driver set up.
    if bus_master == BusMaster::KeptOff {
        quiet &= !reg::CMD_BUS_MASTER;
    }
    if quiet != command {
        // Command alone (16 bits): Status is not written.
        cs.write(rid, reg::COMMAND, 2, u32::from(quiet)).ok_or(ErrorCode::NoConfigSpace)?;
        // A function without INTx may hardwire Interrupt Disable to 0: nothing to put
        // back then.
        put_back |= read(cs, rid, reg::COMMAND, 2)? as u16 != command;
    }
    Ok(put_back)
}

/// Function `rid`'s BARs placed again where the description places them
/// (`ConfigSpace::placement`, planned as at boot), its expansion ROM disabled and memory
/// decoding off, read back; nothing for a function whose BARs the owner never placed.
/// `DeviceMissing` if they cannot be put there (no longer fitting the window, or not
/// reading back: not the function the owner placed), its decoding left off.
pub(crate) fn place_again(cs: &mut dyn ConfigSpace, rid: u16) -> Result<(), ErrorCode> {
    let missing = ErrorCode::DeviceMissing;
    if let Some(p) = cs.placement(rid) {
        place(cs, rid, p.base, p.size).map_err(|_| missing)?;
    }
    Ok(())
}

/// Memory Space on in function `rid`, whose BARs the owner just placed (read back) in the
/// window its driver maps: from then on it decodes them whatever its driver writes
/// (`config_write`), through its stops (`stop_function`). A load from a BAR that does not
/// decode may end in an SError on Arm hardware (QEMU answers all ones), which takes the
/// kernel down with the driver that made it. Command alone (16 bits): Status is not
/// written.
fn decode(cs: &mut dyn ConfigSpace, rid: u16) -> Option<()> {
    let command = cs.read(rid, reg::COMMAND, 2)? as u16;
    cs.write(rid, reg::COMMAND, 2, u32::from(command | reg::CMD_MEMORY))
}

/// A write to a BAR dword: a sizing probe, a write of what it holds, or refused.
fn bar_write(cs: &mut dyn ConfigSpace, rid: u16, offset: u16, width: u8, value: u32) -> Result<u32, ErrorCode> {
    if width != 4 {
        return Err(ErrorCode::ConfigDenied);
    }
    let current = read(cs, rid, offset, 4)?;
    if value == current {
        return Ok(current);
    }
    if value != u32::MAX {
        return Err(ErrorCode::ConfigDenied);
    }
    let command = read(cs, rid, reg::COMMAND, 2)? as u16;
    let quiet = command & !(reg::CMD_MEMORY | 1);
    let fail = ErrorCode::NoConfigSpace;
    // Command alone (16 bits), so Status is not written.
    cs.write(rid, reg::COMMAND, 2, u32::from(quiet)).ok_or(fail)?;
    cs.write(rid, offset, 4, u32::MAX).ok_or(fail)?;
    let mask = cs.read(rid, offset, 4);
    cs.write(rid, offset, 4, current).ok_or(fail)?;
    cs.write(rid, reg::COMMAND, 2, u32::from(command)).ok_or(fail)?;
    mask.ok_or(fail)
}

/// What `take_ownership` or `configure` found on the buses it walked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Buses walked.
    pub buses: u32,
    /// Functions present.
    pub functions: u32,
    /// Of them, bridges (header type 1).
    pub bridges: u32,
    /// Functions whose Bus Master Enable was on and was turned off.
    pub masters_stopped: u32,
    /// Bridges the description does not declare, closed (`configure` only).
    pub undeclared: u32,
}

impl Census {
    fn add(&mut self, other: Census) {
        self.buses += other.buses;
        self.functions += other.functions;
        self.bridges += other.bridges;
        self.masters_stopped += other.masters_stopped;
        self.undeclared += other.undeclared;
    }
}

/// At boot, before any driver runs: every function on `buses` (the ones this owner's
/// ECAM covers) has Bus Master Enable turned off, bridges included, so no function can
/// start a DMA (or forward one from below) until its owner turns it on through
/// CONFIG_WRITE, and Memory and I/O Space off too (Command's other bits are left as they
/// are), and MSI, MSI-X and virtual functions firmware left enabled disabled. `visit` is called with each
/// function found (requester ID, vendor and device ID, header type) after it is stopped.
/// (`configure` does this bus by bus as it numbers the hierarchy.)
pub fn take_ownership(
    cs: &mut dyn ConfigSpace,
    buses: core::ops::Range<u16>,
    mut visit: impl FnMut(u16, u32, u8),
) -> Census {
    let mut census = Census::default();
    for bus in buses.filter(|b| *b < 256) {
        census.add(walk(cs, bus, &mut |_, rid, id, header| visit(rid, id, header)));
    }
    census
}

/// Command's I/O Space bit (PCI Local Bus 3.0, 6.2.2).
const CMD_IO_SPACE: u16 = 1 << 0;

/// Every function on `bus`: its Bus Master Enable, Memory Space and I/O Space turned off,
/// its MSI and MSI-X, and its SR-IOV virtual functions (`stop_virtual_functions`), then
/// `visit(cs, requester ID, vendor and device ID, header type)`.
fn walk(cs: &mut dyn ConfigSpace, bus: u16, visit: &mut dyn FnMut(&mut dyn ConfigSpace, u16, u32, u8)) -> Census {
    let mut census = Census { buses: 1, ..Census::default() };
    // Under ARI (PCIe Base 4.0, 6.13) a device's function number takes the device number's
    // five bits too: device 0 has functions 0..255, each naming the next in its ARI
    // capability, gaps allowed, with no multi-function bit to go by. A walk by slot, which
    // leaves a slot at an absent or single-function function 0, missed functions past a
    // gap, and they kept the Bus Master and MSI firmware left them. On a bus whose first
    // function has the ARI capability, all 256 are asked (past 7 they read all ones unless
    // the port above forwards them, ARI Forwarding Enable).
    let ari = topology::find_extended(cs, bus << 8, ARI_ID, ARI_LEN).is_some();
    for dev in 0..32u16 {
        for func in 0..8u16 {
            let rid = bus << 8 | dev << 3 | func;
            let Some(id) = cs.read(rid, reg::VENDOR_ID, 4) else { break };
            if id & 0xffff == 0xffff {
                // Function 0 absent: no device in this slot.
                if func == 0 && !ari {
                    break;
                }
                continue;
            }
            census.functions += 1;
            let header = cs.read(rid, reg::HEADER_TYPE, 1).unwrap_or(0) as u8;
            census.bridges += (header & 0x7f == 1) as u32;
            if let Some(command) = cs.read(rid, reg::COMMAND, 2) {
                let command = command as u16;
                // Memory and I/O decoding off too: a BAR firmware left decoding could sit
                // over a window the owner places another function's BARs in, and a
                // function whose BARs are never placed must not decode where firmware
                // put them. Its driver turns decoding on through CONFIG_WRITE.
                // INTx disabled: a function no description names has no driver to clear
                // it, and would otherwise hold an INTx line the platform may share with a
                // described function's (QEMU virt swizzles every slot onto four SPIs)
                // asserted; a described function's driver clears it if it takes INTx.
                let off = reg::CMD_BUS_MASTER | reg::CMD_MEMORY | CMD_IO_SPACE;
                let quiet = command & !off | reg::CMD_INTX_DISABLE;
                if command != quiet {
                    // Command alone (16 bits): Status is not written.
                    let _ = cs.write(rid, reg::COMMAND, 2, u32::from(quiet));
                }
                census.masters_stopped += u32::from(command & reg::CMD_BUS_MASTER != 0);
            }
            // Its MSI and MSI-X off, as Linux's `pci_msi_init` and `pci_msix_init` leave
            // every function it enumerates: a message firmware set up is a DMA write to
            // firmware's address, which the owner's driver (or, for a bridge, whose Bus
            // Master the owner turns on, nobody) did not choose.
            let mut caps = [Cap::default(); MAX_CAPS];
            if let Ok(n) = capabilities(cs, rid, &mut caps) {
                let _ = messages_off(cs, rid, &caps[..n]);
            }
            if header & 0x7f == 0 {
                stop_virtual_functions(cs, rid);
            }
            visit(cs, rid, id, header);
            // A single-function device answers for functions 1..7 too on some
            // hardware: only a multi-function device's other functions are real.
            if func == 0 && header & 0x80 == 0 && !ari {
                break;
            }
        }
    }
    census
}

/// Alternative Routing-ID Interpretation, an extended capability (PCIe Base 4.0, 7.8.8): its
/// ID, and the bytes of it read (its header).
const ARI_ID: u16 = 0x000e;
const ARI_LEN: u16 = 4;

/// SR-IOV, an extended capability (PCI-SIG SR-IOV 1.1, 3.3; Linux's `pci_regs.h`): its
/// ID, its control register's offset, and there VF Enable and VF Memory Space Enable.
const SRIOV_ID: u16 = 0x0010;
const SRIOV_CTRL: u16 = 0x08;
const SRIOV_VF_ENABLE: u16 = 1 << 0;
const SRIOV_VF_MEMORY: u16 = 1 << 3;

/// A physical function's virtual functions off, if firmware left them on: each VF is a
/// function of its own that `walk` never finds (its Vendor ID reads all ones), so its Bus
/// Master would stay as firmware left it, and its BARs (the VF BARs, in the PF's SR-IOV
/// capability) would decode wherever firmware put them. Linux's `sriov_init` turns VF
/// Enable off when it finds it on, for the same reason; no driver here may turn it on
/// again (extended space is refused). Nothing waits after it: Linux's second is for VFs
/// enabled again, which they never are here, and what the VFs still had in flight meets
/// the SMMU, which knows no VF's StreamID. Between calls `keep_owned` turns them off
/// again (a driver may turn them on through a window onto its configuration space in its
/// BAR). Whether anything was on.
fn stop_virtual_functions(cs: &mut dyn ConfigSpace, rid: u16) -> bool {
    sriov_control(cs, rid).is_some_and(|control| virtual_functions_off(cs, rid, control))
}

/// Where function `rid`'s SR-IOV control register is, if it has one. Only the control
/// register need lie inside the space (not the whole 0x40 bytes, VF BARs included): the
/// VFs are turned off wherever firmware could turn them on.
fn sriov_control(cs: &mut dyn ConfigSpace, rid: u16) -> Option<u16> {
    topology::find_extended(cs, rid, SRIOV_ID, SRIOV_CTRL + 2).map(|at| at + SRIOV_CTRL)
}

/// VF Enable and VF Memory Space off in the SR-IOV control register at `at`; whether
/// either was on.
fn virtual_functions_off(cs: &mut dyn ConfigSpace, rid: u16, at: u16) -> bool {
    let off = SRIOV_VF_ENABLE | SRIOV_VF_MEMORY;
    match cs.read(rid, at, 2).filter(|c| *c as u16 & off != 0) {
        Some(control) => {
            let _ = cs.write(rid, at, 2, control & !u32::from(off));
            true
        }
        None => false,
    }
}

/// Why a function's BARs were not placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarError {
    /// The function is not there, or not in this owner's space.
    Absent,
    /// Not a type-0 function.
    NotAnEndpoint,
    /// Its memory BARs do not fit in the window given (the bytes they need).
    TooBig(u64),
    /// An I/O BAR: no I/O window is given to devices here.
    IoBar(u8),
    /// Its BARs do not read back where they were written (an address bit that does not
    /// take): it would decode outside its window.
    NotTaken,
}

/// Expansion ROM Base Address's enable bit (PCI Local Bus 3.0, 6.2.5.2).
const ROM_ENABLE: u32 = 1;

/// Place every memory BAR of type-0 function `rid` in `[base, base + size)`, each
/// aligned to its size, in BAR order, with memory decoding off while they are sized and
/// placed (a BAR written with all ones to size it would otherwise decode at the top of
/// the address space for a moment), and its expansion ROM disabled. Memory decoding
/// stays off: the driver turns it on through CONFIG_WRITE. Nothing is placed unless all
/// fit (with `size` 0, this checks that the function has no memory or I/O BAR), and
/// `NotTaken` if they do not read back where they were written. Returns the bytes used.
pub fn place_bars(cs: &mut dyn ConfigSpace, rid: u16, base: u64, size: u64) -> Result<u64, BarError> {
    place(cs, rid, base, size).map(|plan| plan.used)
}

/// `place_bars`, returning what was written.
fn place(cs: &mut dyn ConfigSpace, rid: u16, base: u64, size: u64) -> Result<BarPlan, BarError> {
    let absent = BarError::Absent;
    if cs.read(rid, reg::VENDOR_ID, 2).ok_or(absent)? == 0xffff {
        return Err(absent);
    }
    if cs.read(rid, reg::HEADER_TYPE, 1).ok_or(absent)? & 0x7f != 0 {
        return Err(BarError::NotAnEndpoint);
    }
    let command = cs.read(rid, reg::COMMAND, 2).ok_or(absent)? as u16;
    cs.write(rid, reg::COMMAND, 2, u32::from(command & !reg::CMD_MEMORY)).ok_or(absent)?;
    // The expansion ROM off: firmware may have left it enabled at any address, and it
    // decodes there once Memory Space is on. No driver here needs it, and none may write
    // it (CONFIG_WRITE refuses the register).
    let rom = cs.read(rid, reg::ROM, 4).ok_or(absent)?;
    if rom & ROM_ENABLE != 0 {
        cs.write(rid, reg::ROM, 4, rom & !ROM_ENABLE).ok_or(absent)?;
    }
    let plan = plan_bars(cs, rid, base, size)?;
    plan.write(cs, rid).ok_or(absent)?;
    // Read back, at boot as after a reset: a BAR that does not take its address (a bit
    // hard-wired to 1 reads as one at sizing too) decodes outside its window, and Memory
    // Space is turned on only for BARs placed.
    if !plan.reads_back(cs, rid).map_err(|_| absent)? {
        return Err(BarError::NotTaken);
    }
    Ok(plan)
}

/// Where the owner puts a function's memory BARs in its window: each BAR register it
/// writes (a 64-bit BAR's two), in BAR order, and the bytes they use. The same window
/// and the same BAR sizes make the same plan, so it is made again from the description
/// whenever the BARs must be put back, never taken from what they read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BarPlan {
    /// (offset, value, the bits compared on reading back: a low word's type bits are
    /// read-only).
    regs: [(u16, u32, u32); 6],
    n: usize,
    used: u64,
}

impl BarPlan {
    /// Write every register of the plan (memory decoding must be off).
    pub(crate) fn write(&self, cs: &mut dyn ConfigSpace, rid: u16) -> Option<()> {
        for &(off, value, _) in &self.regs[..self.n] {
            cs.write(rid, off, 4, value)?;
        }
        Some(())
    }

    /// Whether every register reads as planned.
    pub(crate) fn reads_back(&self, cs: &mut dyn ConfigSpace, rid: u16) -> Result<bool, ErrorCode> {
        for &(off, value, mask) in &self.regs[..self.n] {
            if read(cs, rid, off, 4)? & mask != value & mask {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether a BAR the plan puts at an address other than 0 reads as planned: after a
    /// reset, which returns BARs to 0, one that does kept its placement.
    pub(crate) fn any_kept(&self, cs: &mut dyn ConfigSpace, rid: u16) -> Result<bool, ErrorCode> {
        for &(off, value, mask) in &self.regs[..self.n] {
            if value & mask != 0 && read(cs, rid, off, 4)? & mask == value & mask {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Size every BAR of function `rid` (memory decoding must be off) and plan where each
/// goes in `[base, base + size)`; nothing placed. `TooBig` if they do not all fit,
/// `IoBar` for an I/O BAR.
pub(crate) fn plan_bars(cs: &mut dyn ConfigSpace, rid: u16, base: u64, size: u64) -> Result<BarPlan, BarError> {
    let absent = BarError::Absent;
    // Size every BAR first: (index, size, 64-bit).
    let mut bars = [(0u8, 0u64, false); 6];
    let mut n = 0;
    let mut i = 0u8;
    let mut result = Ok(());
    while i < 6 {
        let off = reg::BAR0 + 4 * i as u16;
        let old = cs.read(rid, off, 4).ok_or(absent)?;
        let wide = old & 0b111 == 0b100;
        cs.write(rid, off, 4, u32::MAX).ok_or(absent)?;
        let lo = cs.read(rid, off, 4).ok_or(absent)?;
        cs.write(rid, off, 4, old).ok_or(absent)?;
        let lo_bits = u64::from(lo & !0xf);
        // The bits that stuck are the address bits: a 32-bit BAR's are its low word's
        // (everything above 4 GiB counts as fixed), a 64-bit BAR's span both words.
        let mask = if old & 1 == 1 {
            0
        } else if wide && i < 5 {
            let old_hi = cs.read(rid, off + 4, 4).ok_or(absent)?;
            cs.write(rid, off + 4, 4, u32::MAX).ok_or(absent)?;
            let hi = cs.read(rid, off + 4, 4).ok_or(absent)?;
            cs.write(rid, off + 4, 4, old_hi).ok_or(absent)?;
            u64::from(hi) << 32 | lo_bits
        } else if lo_bits != 0 {
            0xffff_ffff_0000_0000 | lo_bits
        } else {
            0
        };
        if old & 1 == 1 {
            if lo & !0x3 != 0 {
                result = Err(BarError::IoBar(i));
            }
        } else if mask != 0 {
            let bar_size = (!mask).wrapping_add(1);
            bars[n] = (i, bar_size, wide && i < 5);
            n += 1;
        }
        i += if wide && i < 5 { 2 } else { 1 };
    }
    let mut next = base;
    for (_, bar_size, _) in &bars[..n] {
        next = next.div_ceil(*bar_size).saturating_mul(*bar_size).saturating_add(*bar_size);
    }
    if next - base > size {
        return Err(BarError::TooBig(next - base));
    }
    result?;
    let mut plan = BarPlan::default();
    let mut next = base;
    for (i, bar_size, wide) in &bars[..n] {
        let addr = next.div_ceil(*bar_size) * bar_size;
        next = addr + bar_size;
        let off = reg::BAR0 + 4 * *i as u16;
        plan.regs[plan.n] = (off, addr as u32, !0xf);
        plan.n += 1;
        if *wide {
            plan.regs[plan.n] = (off + 4, (addr >> 32) as u32, u32::MAX);
            plan.n += 1;
        }
    }
    plan.used = next - base;
    Ok(plan)
}
