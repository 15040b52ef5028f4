//! PCI configuration space owned by the service: CONFIG_READ and CONFIG_WRITE against a
//! model of ECAM (functions with BARs, capabilities, extended ACS, and a bridge), each
//! test asserting the model's registers after the call. Every refusal below is a write
//! that would change a register if the filter let it through.

mod common;

use std::collections::HashMap;

use common::config_space::Function;
use common::*;
use iommu_pd::pci::{self, reg, BarError, ConfigSpace};
use iommu_pd::Service;
use iommu_protocol::{DeviceId, ErrorCode, Reply, Request, MAX_MRS};

/// ECAM as a map from requester ID to function; device index d is the function whose
/// requester ID is its StreamID (identity, as on QEMU virt).
#[derive(Clone, Default)]
struct Ecam {
    functions: HashMap<u16, Function>,
    writes: usize,
    /// What the owner records of each function (what its driver may write), recorded when a write first asks (its
    /// boot, as far as these tests go): the filter's view of a function whose list
    /// changes afterwards.
    recorded: HashMap<u16, Option<pci::Recorded>>,
    /// The INTx pins whose line each function's driver's PD holds
    /// (`PciFunctionConfig::intx`): every pin, unless a test says otherwise.
    intx_pins: u8,
}

impl ConfigSpace for Ecam {
    fn function(&self, device: usize) -> Result<u16, ErrorCode> {
        DEVICES.get(device).map(|d| d.stream as u16).ok_or(ErrorCode::NoConfigSpace)
    }
    /// Every function here is as if the owner placed its BARs (`tests/topology.rs` has
    /// one it could not), each in a 2 MiB window of its own.
    fn placement(&self, rid: u16) -> Option<pci::Placement> {
        Some(pci::Placement { base: window(rid), size: 0x20_0000 })
    }
    fn messages_stuck(&self, _: u16) -> bool {
        false
    }
    fn recorded(&mut self, rid: u16) -> Option<pci::Recorded> {
        if let Some(recorded) = self.recorded.get(&rid) {
            return *recorded;
        }
        let pins = self.intx_pins;
        let bytes = pci::record(self, rid, pins);
        self.recorded.insert(rid, bytes);
        bytes
    }
    fn read(&mut self, rid: u16, offset: u16, width: u8) -> Option<u32> {
        Some(self.functions.get(&rid).map_or(u32::MAX >> (32 - 8 * width as u32), |f| f.get(offset, width as usize)))
    }
    fn write(&mut self, rid: u16, offset: u16, width: u8, value: u32) -> Option<()> {
        self.writes += 1;
        if let Some(f) = self.functions.get_mut(&rid) {
            f.write(offset, width, value);
        }
        Some(())
    }
    fn wait_ms(&mut self, _: u32) {}
    fn now_ms(&mut self) -> u64 {
        0
    }
}

const NIC: u16 = 0x10; // 00:02.0, device 0, NET's
const DISK: u16 = 0x18; // 00:03.0, device 1, BLK's
const EVIL_FN: u16 = 0x20; // 00:04.0, device 2, EVIL's
const BRIDGE: u16 = 0x28; // 00:05.0, device 3, NET's: a PCI-to-PCI bridge

/// Where the owner placed function `rid`'s BARs: NIC's at 0x10000000, EVIL_FN's 2 MiB
/// above, DISK's above that.
fn window(rid: u16) -> u64 {
    match rid {
        NIC => 0x1000_0000,
        EVIL_FN => 0x1020_0000,
        _ => 0x1040_0000,
    }
}

/// An endpoint with a 1 MiB 32-bit BAR0 and a 16 KiB 64-bit BAR2, an expansion ROM, and
/// capabilities: MSI (64-bit) at 0x40, MSI-X at 0x50, PM at 0x60, a 6-byte
/// vendor-specific one at 0x68; device-specific registers at 0x6e..0x100; ACS in
/// extended space at 0x100.
fn endpoint(vendor_device: u32) -> Function {
    let mut f = Function::new(vendor_device, 0);
    f.mask(reg::BAR0, 4, 0xfff0_0000);
    f.set(0x18, 4, 0b100); // 64-bit memory
    f.mask(0x18, 4, 0xffff_c000);
    f.mask(0x1c, 4, 0xffff_ffff);
    f.mask(reg::ROM, 4, 0xffff_f801);
    f.mask(0x3c, 1, 0xff); // interrupt line
    f.set(reg::INTERRUPT_PIN, 1, 1); // INTA#
    f.set(reg::COMMAND, 2, 1 << 8); // SERR# enable, set by the owner
    f.set(reg::STATUS, 2, u32::from(reg::STATUS_CAP_LIST) | 1 << 13); // a master abort recorded
    f.set(reg::CAP_PTR, 1, 0x40);
    f.mask(reg::CAP_PTR, 1, 0xff); // as if a device let it be written
                                   // MSI, 64-bit: 0x40..0x4e.
    f.set(0x40, 4, 0x0080_5005);
    f.mask(0x41, 1, 0xff);
    f.mask(0x42, 2, 0x0071);
    f.mask(0x44, 4, 0xffff_ffff);
    f.mask(0x48, 4, 0xffff_ffff);
    f.mask(0x4c, 2, 0xffff);
    // MSI-X: 0x50..0x5c.
    f.set(0x50, 4, 0x0000_6011);
    f.mask(0x52, 2, 0xc000);
    // PM: 0x60..0x68.
    f.set(0x60, 4, 0x0000_6801);
    f.mask(0x64, 2, 0x8103);
    // Vendor-specific, 6 bytes: 0x68..0x6e.
    f.set(0x68, 4, 0x0006_0009);
    f.mask(0x6a, 4, 0xffff_ffff);
    // Device-specific, outside every capability.
    f.mask(0x6e, 2, 0xffff);
    f.mask(0x80, 4, 0xffff_ffff);
    // ACS at 0x100: its control register (0x106) is writable on real hardware.
    f.set(0x100, 4, 0x0001_000d);
    f.set(0x104, 2, 0x001f);
    f.mask(0x106, 2, 0x007f);
    f
}

/// A PCI-to-PCI bridge: bus numbers and a memory window, all writable.
fn bridge() -> Function {
    let mut f = Function::new(0x0001_1b36, 1);
    f.set(0x18, 4, 0x0001_0100); // primary 0, secondary 1, subordinate 1
    f.mask(0x18, 4, 0x00ff_ffff);
    f.mask(0x20, 4, 0xfff0_fff0);
    f.mask(0x3e, 2, 0x0fff); // bridge control
    f
}

fn ecam() -> Ecam {
    let mut e = Ecam { intx_pins: 0b1111, ..Ecam::default() };
    e.functions.insert(NIC, endpoint(0x11e8_1234));
    e.functions.insert(DISK, endpoint(0x1042_1af4));
    e.functions.insert(EVIL_FN, endpoint(0x11e8_1234));
    e.functions.insert(BRIDGE, bridge());
    // As the owner leaves them at boot: BARs placed in their windows, decoding.
    for rid in [NIC, DISK, EVIL_FN] {
        pci::place_bars(&mut e, rid, window(rid), 0x20_0000).unwrap();
        let f = e.functions.get_mut(&rid).unwrap();
        f.set(reg::COMMAND, 2, f.get(reg::COMMAND, 2) | u32::from(reg::CMD_MEMORY));
    }
    e.writes = 0;
    e
}

fn service() -> Service<'static, ModelHw> {
    Service::new(ModelHw::default(), config(), storage()).unwrap()
}

fn send(s: &mut Service<'_, ModelHw>, e: &mut Ecam, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle_with(client, label, &mrs[..n], e)
}

fn write(
    s: &mut Service<'_, ModelHw>,
    e: &mut Ecam,
    client: usize,
    dev: u32,
    offset: u16,
    width: u8,
    value: u32,
) -> Result<u64, ErrorCode> {
    // What the register reads afterwards, or the refusal.
    match send(s, e, client, Request::ConfigWrite { device: DeviceId(dev), offset, width, value }) {
        Reply::Ok { values, .. } => Ok(values[0]),
        Reply::Err(e) => Err(e),
    }
}

fn read(s: &mut Service<'_, ModelHw>, e: &mut Ecam, client: usize, dev: u32, offset: u16, width: u8) -> Reply {
    send(s, e, client, Request::ConfigRead { device: DeviceId(dev), offset, width })
}

#[test]
fn a_driver_reads_its_own_function_and_no_other() {
    let (mut s, mut e) = (service(), ecam());
    assert_eq!(read(&mut s, &mut e, NET, 0, 0, 4), Reply::ok(&[0x11e8_1234]));
    assert_eq!(read(&mut s, &mut e, NET, 0, 0x100, 4), Reply::ok(&[0x0001_000d]));
    assert_eq!(read(&mut s, &mut e, NET, 0, 0x42, 2), Reply::ok(&[0x0080]));
    // Another client's function: refused as its device is.
    assert_eq!(read(&mut s, &mut e, EVIL, 0, 0, 4), err(ErrorCode::BadDevice));
    assert_eq!(read(&mut s, &mut e, EVIL, 9, 0, 4), err(ErrorCode::BadDevice));
}

#[test]
fn a_service_without_configuration_space_says_so() {
    let (mut s, e) = (service(), ecam());
    assert_eq!(
        call(&mut s, NET, Request::ConfigRead { device: DeviceId(0), offset: 0, width: 4 }),
        err(ErrorCode::NoConfigSpace)
    );
    let w = Request::ConfigWrite { device: DeviceId(0), offset: 4, width: 2, value: 6 };
    assert_eq!(call(&mut s, NET, w), err(ErrorCode::NoConfigSpace));
    assert_eq!(e.functions[&NIC].get(reg::COMMAND, 2), 1 << 8 | u32::from(reg::CMD_MEMORY));
}

#[test]
fn command_takes_memory_bus_master_and_intx_disable_only() {
    let (mut s, mut e) = (service(), ecam());
    // Every bit asked for: only the three are the driver's; I/O and parity stay off,
    // SERR# (the owner's) stays on.
    assert!(write(&mut s, &mut e, NET, 0, reg::COMMAND, 2, 0xffff).is_ok());
    assert_eq!(e.functions[&NIC].get(reg::COMMAND, 2), 0x0506);
    // None asked for: Bus Master and INTx disable go off, SERR# stays, and so does Memory
    // Space: the owner placed its BARs, and keeps them decoding while its driver maps them.
    assert!(write(&mut s, &mut e, NET, 0, reg::COMMAND, 2, 0).is_ok());
    assert_eq!(e.functions[&NIC].get(reg::COMMAND, 2), 0x0102);
    // Byte-wide, the high byte: INTx disable only.
    assert!(write(&mut s, &mut e, NET, 0, reg::COMMAND + 1, 1, 0xff).is_ok());
    assert_eq!(e.functions[&NIC].get(reg::COMMAND, 2), 0x0502);
    // As virtio-drivers writes it, 32 bits with Status as ones: Status keeps its error
    // bit (written as 0), Command takes Memory and Bus Master.
    assert!(write(&mut s, &mut e, NET, 0, reg::COMMAND, 4, 0xffff_0006).is_ok());
    assert_eq!(e.functions[&NIC].get(reg::COMMAND, 2), 0x0106);
    assert_eq!(e.functions[&NIC].get(reg::STATUS, 2), u32::from(reg::STATUS_CAP_LIST) | 1 << 13);
    // Status alone: nothing changes.
    assert!(write(&mut s, &mut e, NET, 0, reg::STATUS, 2, 0xffff).is_ok());
    assert_eq!(e.functions[&NIC].get(reg::STATUS, 2), u32::from(reg::STATUS_CAP_LIST) | 1 << 13);
}

#[test]
fn bars_rom_and_the_rest_of_the_header_are_refused_at_every_width() {
    let (mut s, mut e) = (service(), ecam());
    let before = e.functions[&NIC].bytes.clone();
    let writes = e.writes;
    for offset in (0..reg::HEADER_END).filter(|o| !(4..8).contains(o)) {
        for width in [1u8, 2, 4] {
            if offset % width as u16 != 0 || (offset < 8 && offset + width as u16 > 4) {
                continue;
            }
            // Neither all ones (a BAR's sizing probe) nor what a BAR holds (0).
            let value = 0xa5a5_a5a5u32 >> (32 - 8 * width as u32);
            assert_eq!(
                write(&mut s, &mut e, NET, 0, offset, width, value),
                Err(ErrorCode::ConfigDenied),
                "{offset:#x}/{width}"
            );
        }
    }
    assert!(e.functions[&NIC].bytes == before, "a refused write changed the function");
    assert_eq!(e.writes, writes, "a refused write reached ECAM");
}

#[test]
fn msi_and_msix_bodies_and_device_specific_registers_are_the_drivers() {
    let (mut s, mut e) = (service(), ecam());
    // MSI address, data; MSI-X control.
    assert!(write(&mut s, &mut e, NET, 0, 0x44, 4, 0xfee0_0000).is_ok());
    assert!(write(&mut s, &mut e, NET, 0, 0x4c, 2, 0x4021).is_ok());
    assert!(write(&mut s, &mut e, NET, 0, 0x42, 2, 0x0001).is_ok());
    assert!(write(&mut s, &mut e, NET, 0, 0x52, 2, 0x8000).is_ok());
    // Device-specific, right after the vendor capability and further up.
    assert!(write(&mut s, &mut e, NET, 0, 0x6e, 2, 0xbeef).is_ok());
    assert!(write(&mut s, &mut e, NET, 0, 0x80, 4, 0x1234_5678).is_ok());
    let f = &e.functions[&NIC];
    assert_eq!((f.get(0x44, 4), f.get(0x4c, 2), f.get(0x42, 2), f.get(0x52, 2)), (0xfee0_0000, 0x4021, 0x0081, 0x8000));
    assert_eq!((f.get(0x6e, 2), f.get(0x80, 4)), (0xbeef, 0x1234_5678));
}

#[test]
fn capability_headers_other_capabilities_and_acs_are_refused() {
    let (mut s, mut e) = (service(), ecam());
    let before = e.functions[&NIC].bytes.clone();
    for (offset, width, value) in [
        (0x41, 1, 0x00),         // MSI's next pointer
        (0x40, 2, 0x0000),       // MSI's ID and next pointer
        (0x50, 4, 0x8000_0011),  // MSI-X header with its control
        (0x64, 2, 0x0003),       // PM control: a power state
        (0x6a, 2, 0xffff),       // the vendor-specific capability's body
        (0x6c, 4, 0xffff_ffff),  // half vendor-specific, half device-specific: refused whole
        (0x106, 2, 0x0000),      // ACS control: source validation and redirects off
        (0x104, 4, 0),           // ACS capability and control
        (0x200, 4, 0xffff_ffff), // any other extended register
    ] {
        assert_eq!(write(&mut s, &mut e, NET, 0, offset, width, value), Err(ErrorCode::ConfigDenied), "{offset:#x}");
    }
    assert!(e.functions[&NIC].bytes == before, "a refused write changed the function");
}

#[test]
fn every_register_of_a_bridge_is_refused_even_to_its_owner() {
    let (mut s, mut e) = (service(), ecam());
    let before = e.functions[&BRIDGE].bytes.clone();
    for offset in (0..0x100).step_by(2) {
        assert_eq!(write(&mut s, &mut e, NET, 3, offset, 2, 0xffff), Err(ErrorCode::ConfigDenied), "{offset:#x}");
    }
    assert!(e.functions[&BRIDGE].bytes == before, "bus numbers or a window moved");
    assert_eq!(e.functions[&BRIDGE].get(0x18, 4), 0x0001_0100);
}

#[test]
fn another_drivers_function_cannot_be_moved_stopped_or_read() {
    let (mut s, mut e) = (service(), ecam());
    assert!(write(&mut s, &mut e, NET, 0, reg::COMMAND, 2, 0x0006).is_ok());
    let before = e.functions[&NIC].bytes.clone();
    // The hostile driver: the victim's BAR into its own window, its Bus Master off, its
    // identity read; by device index and by any number past the table.
    assert_eq!(write(&mut s, &mut e, EVIL, 0, reg::BAR0, 4, 0x1010_0000), Err(ErrorCode::BadDevice));
    assert_eq!(write(&mut s, &mut e, EVIL, 0, reg::COMMAND, 2, 0), Err(ErrorCode::BadDevice));
    assert_eq!(read(&mut s, &mut e, EVIL, 0, 0, 4), err(ErrorCode::BadDevice));
    assert_eq!(write(&mut s, &mut e, EVIL, 3, 0x18, 4, 0x0002_0200), Err(ErrorCode::BadDevice));
    assert!(e.functions[&NIC].bytes == before);
    // Its own BAR, too, is not its to move.
    assert_eq!(write(&mut s, &mut e, EVIL, 2, reg::BAR0, 4, 0x1000_0000), Err(ErrorCode::ConfigDenied));
    assert_eq!(u64::from(e.functions[&EVIL_FN].get(reg::BAR0, 4)), window(EVIL_FN));
}

#[test]
fn a_bar_can_be_sized_and_rewritten_with_its_value_but_not_moved() {
    let (mut s, mut e) = (service(), ecam());
    assert_eq!(pci::place_bars(&mut e, NIC, 0x1000_0000, 0x20_0000), Ok(0x10_4000));
    e.functions.get_mut(&NIC).unwrap().set(reg::COMMAND, 2, 0x0106);
    let before = e.functions[&NIC].bytes.clone();
    // Sizing, as virtio-drivers does it: all ones answers the size mask; the BAR and
    // Command are as they were once the call returns.
    assert_eq!(write(&mut s, &mut e, NET, 0, reg::BAR0, 4, u32::MAX), Ok(0xfff0_0000));
    assert_eq!(write(&mut s, &mut e, NET, 0, 0x18, 4, u32::MAX), Ok(0xffff_c004));
    assert_eq!(write(&mut s, &mut e, NET, 0, 0x1c, 4, u32::MAX), Ok(0xffff_ffff));
    // Written back with what it holds: nothing changes.
    assert_eq!(write(&mut s, &mut e, NET, 0, reg::BAR0, 4, 0x1000_0000), Ok(0x1000_0000));
    assert!(e.functions[&NIC].bytes == before, "sizing moved a BAR or left Command changed");
    // Anywhere else, or part of it: refused.
    assert_eq!(write(&mut s, &mut e, NET, 0, reg::BAR0, 4, 0x1010_0000), Err(ErrorCode::ConfigDenied));
    assert_eq!(write(&mut s, &mut e, NET, 0, reg::BAR0 + 2, 2, 0xffff), Err(ErrorCode::ConfigDenied));
    assert_eq!(write(&mut s, &mut e, NET, 0, 0x1c, 4, 1), Err(ErrorCode::ConfigDenied));
    assert!(e.functions[&NIC].bytes == before);
}

#[test]
fn an_absent_function_is_named_as_such() {
    let (mut s, mut e) = (service(), ecam());
    e.functions.remove(&DISK);
    assert_eq!(write(&mut s, &mut e, BLK, 1, reg::COMMAND, 2, 6), Err(ErrorCode::DeviceMissing));
    assert_eq!(read(&mut s, &mut e, BLK, 1, 0, 2), err(ErrorCode::DeviceMissing));
}

#[test]
fn taking_ownership_stops_every_bus_master_and_decoder_and_keeps_the_rest_of_command() {
    let mut e = ecam();
    // Bus Master, Memory and I/O Space on (as firmware may leave them), and SERR# enable.
    for f in e.functions.values_mut() {
        f.set(reg::COMMAND, 2, 0x0107);
    }
    let mut seen = vec![];
    let census = pci::take_ownership(&mut e, 0..1, |rid, _, _| seen.push(rid));
    assert_eq!(census, pci::Census { buses: 1, functions: 4, bridges: 1, masters_stopped: 4, undeclared: 0 });
    assert_eq!(seen, [NIC, DISK, EVIL_FN, BRIDGE]);
    // INTx disabled too: a function nobody drives holds no shared line asserted.
    for f in e.functions.values() {
        assert_eq!(f.get(reg::COMMAND, 2), 0x0500);
    }
    // The error bit the endpoints recorded is still there: Command was written alone.
    assert_eq!(e.functions[&NIC].get(reg::STATUS, 2), u32::from(reg::STATUS_CAP_LIST) | 1 << 13);
}

#[test]
fn bars_are_placed_aligned_in_the_window_given_or_not_at_all() {
    let mut e = ecam();
    e.functions.get_mut(&NIC).unwrap().set(reg::COMMAND, 2, 0x0002);
    // 1 MiB BAR0, then the 16 KiB 64-bit BAR2 after it.
    assert_eq!(pci::place_bars(&mut e, NIC, 0x1000_0000, 0x20_0000), Ok(0x10_4000));
    let f = &e.functions[&NIC];
    assert_eq!((f.get(0x10, 4), f.get(0x18, 4), f.get(0x1c, 4)), (0x1000_0000, 0x1010_0004, 0));
    // Memory decoding is left off, for the driver to turn on.
    assert_eq!(f.get(reg::COMMAND, 2) & u32::from(reg::CMD_MEMORY), 0);
    // A window too small: nothing placed (the disk's BARs stay where boot put them).
    assert_eq!(pci::place_bars(&mut e, DISK, 0x1000_0000, 0x10_0000), Err(BarError::TooBig(0x10_4000)));
    assert_eq!(u64::from(e.functions[&DISK].get(0x10, 4)), window(DISK));
    assert_eq!(pci::place_bars(&mut e, BRIDGE, 0x1000_0000, 0x10_0000), Err(BarError::NotAnEndpoint));
    assert_eq!(pci::place_bars(&mut e, 0x30, 0x1000_0000, 0x10_0000), Err(BarError::Absent));
}

/// A device whose capabilities overlap (a malformed or hostile one: its owner may control
/// what its configuration space answers): MSI, 64-bit with per-vector masking, covers
/// 0x40..0x58 (PCI Local Bus 3.0, 6.8.1), and the list puts PM at 0x50 and the PCI
/// Express capability at 0x48, inside it. Linux's vfio-pci warns of such a conflict
/// (`vfio_cap_init`, "pci config conflict"); here a byte any capability refuses is
/// refused, whichever capability the list names first, so PM's control (D3hot) and
/// Device Control (Initiate FLR) are not written through MSI's extent.
#[test]
fn a_capability_inside_msis_extent_is_not_written_through_it() {
    let (mut s, mut e) = (service(), ecam());
    let mut f = Function::new(0x11e8_1234, 0);
    // As boot leaves it: decoding (it has no BAR), INTx disabled (it has no pin).
    f.set(reg::COMMAND, 2, u32::from(reg::CMD_MEMORY | reg::CMD_INTX_DISABLE));
    f.set(reg::STATUS, 2, u32::from(reg::STATUS_CAP_LIST));
    f.set(reg::CAP_PTR, 1, 0x40);
    // MSI at 0x40, next 0x50; control: 64-bit (bit 7), per-vector masking (bit 8).
    f.set(0x40, 4, 0x0180_5005);
    f.mask(0x44, 4, 0xffff_ffff);
    // PM at 0x50, next 0x48; its control and status (PMCSR, 0x54) takes a power state.
    f.set(0x50, 4, 0x0003_4801);
    f.mask(0x54, 2, 0x8103);
    // PCI Express at 0x48, the list's end; Device Control (0x50 in it) would take FLR,
    // but 0x50 is PM's: the PCIe capability's first dwords are what MSI covers.
    f.set(0x48, 4, 0x0002_0010);
    f.mask(0x4c, 4, 0xffff_ffff); // Device Capabilities, as if writable
    e.functions.insert(NIC, f);
    let before = e.functions[&NIC].bytes.clone();
    for (offset, width, value) in [
        (0x54, 2, 0x0003),      // PM: D3hot
        (0x54, 4, 0x0000_0003), // the same, with the byte after it
        (0x4c, 4, 0xffff_ffff), // the PCI Express capability's body
        (0x48, 4, 0x0000_0000), // its header
    ] {
        assert_eq!(write(&mut s, &mut e, NET, 0, offset, width, value), Err(ErrorCode::ConfigDenied), "{offset:#x}");
    }
    assert!(e.functions[&NIC].bytes == before, "a capability inside MSI's extent was written");
    // MSI's own address, which no other capability shares, is still the driver's.
    assert!(write(&mut s, &mut e, NET, 0, 0x44, 4, 0xfee0_0000).is_ok());
    assert_eq!(e.functions[&NIC].get(0x44, 4), 0xfee0_0000);
}

/// What the every-covering-capability rule costs a real driver: virtio-pci's vendor
/// capabilities (ID 0x09, their length at +2) sit beside MSI-X in QEMU's devices, and
/// MSI-X stays the driver's; a vendor capability whose length byte runs over MSI-X
/// (a device that gets it wrong) costs that driver MSI-X, refused, not written through.
#[test]
fn msix_beside_a_vendor_capability_is_the_drivers_unless_the_vendors_length_covers_it() {
    for (vendor_len, allowed) in [(0x10u32, true), (0x20, false)] {
        let (mut s, mut e) = (service(), ecam());
        let mut f = Function::new(0x1042_1af4, 0);
        f.set(reg::STATUS, 2, u32::from(reg::STATUS_CAP_LIST));
        f.set(reg::CAP_PTR, 1, 0x40);
        // virtio's common-config capability at 0x40 (cfg_type 1, BAR 4), next 0x50.
        f.set(0x40, 4, vendor_len << 16 | 0x5009);
        f.set(0x44, 4, 0x0000_0401);
        // MSI-X at 0x50, the list's end: Enable and Function Mask writable.
        f.set(0x50, 4, 0x0001_0011);
        f.mask(0x52, 2, 0xc000);
        e.functions.insert(NIC, f);
        let got = write(&mut s, &mut e, NET, 0, 0x52, 2, 0x8000);
        assert_eq!(got.is_ok(), allowed, "vendor length {vendor_len:#x}: {got:?}");
        assert_eq!(e.functions[&NIC].get(0x52, 2) & 0x8000 != 0, allowed, "vendor length {vendor_len:#x}");
    }
}

/// SR-IOV (extended capability 0x0010; control at +0x08, VF Enable bit 0, VF Memory Space
/// Enable bit 3: PCI-SIG SR-IOV 1.1, 3.3.3, and Linux's `pci_regs.h`) left on by
/// firmware: the VFs are functions of their own, which the owner's walk never finds (a
/// VF's Vendor ID reads all ones), so their Bus Master stays as firmware left it and
/// their BARs (the VF BARs in the PF's capability) decode wherever firmware put them,
/// over another function's window perhaps. Linux turns VF Enable off when it finds it on
/// (`sriov_init`); so does the owner, with VF Memory Space, before any driver runs. No
/// driver may turn either on again: extended space is refused.
#[test]
fn taking_ownership_turns_off_the_virtual_functions_firmware_left_enabled() {
    let mut e = ecam();
    const SRIOV: u16 = 0x140;
    let nic = e.functions.get_mut(&NIC).unwrap();
    nic.set(0x100, 4, 0x1401_000d); // ACS, next at 0x140
    nic.set(SRIOV, 4, 0x0001_0010); // SR-IOV, the last
    nic.mask(SRIOV + 8, 2, 0x001f);
    nic.write(SRIOV + 8, 2, 0x0019); // VF Enable, VF Memory Space, ARI Capable Hierarchy
    nic.set(SRIOV + 0x0e, 2, 8); // TotalVFs
    pci::take_ownership(&mut e, 0..1, |_, _, _| {});
    assert_eq!(e.functions[&NIC].get(SRIOV + 8, 2), 0x0010, "VFs still enabled, or ARI changed");
    // Its driver cannot turn them on again.
    let (mut s, mut e2) = (service(), e.clone());
    assert_eq!(write(&mut s, &mut e2, NET, 0, SRIOV + 8, 2, 0x0009), Err(ErrorCode::ConfigDenied));
    assert_eq!(e2.functions[&NIC].get(SRIOV + 8, 2), 0x0010);
}

/// Attack on the 4 KiB rule: an SR-IOV capability whose 0x40 bytes run past the end of
/// the space (header at 0xfd0) while its control register (0xfd8) is inside it. The
/// rule found no SR-IOV there (its VF BARs would be past the end), and firmware's VF
/// Enable stayed on; turning VFs off needs only the control register, which is there.
#[test]
fn virtual_functions_are_turned_off_where_only_the_control_register_fits() {
    let mut e = ecam();
    const SRIOV: u16 = 0xfd0;
    let nic = e.functions.get_mut(&NIC).unwrap();
    nic.set(0x100, 4, u32::from(SRIOV) << 20 | 0x0001_000d); // ACS, next at 0xfd0
    nic.set(SRIOV, 4, 0x0001_0010); // SR-IOV, the last
    nic.mask(SRIOV + 8, 2, 0x001f);
    nic.write(SRIOV + 8, 2, 0x0009); // VF Enable, VF Memory Space
    pci::take_ownership(&mut e, 0..1, |_, _, _| {});
    assert_eq!(e.functions[&NIC].get(SRIOV + 8, 2), 0, "VFs still enabled");
}

/// Every width and offset a hostile driver can put in mr1, sent raw (not through
/// `Request::encode`): only 1, 2 or 4 bytes, aligned, inside its function's 4 KiB reach
/// ECAM. What would reach the next function (offset 4095 and up, 8 bytes at 0xffc, an
/// offset past 16 bits) is `Malformed` before any register is read or written, so no
/// read returns another function's bytes and no write lands in one.
#[test]
fn no_width_or_offset_reaches_past_the_callers_own_function() {
    let (mut s, mut e) = (service(), ecam());
    // Bytes at the top of each function's space that tell them apart.
    for (rid, v) in [(NIC, 0x1111_1111), (DISK, 0x2222_2222), (EVIL_FN, 0x3333_3333)] {
        let f = e.functions.get_mut(&rid).unwrap();
        f.set(0xffc, 4, v);
        f.mask(0xffc, 4, 0xffff_ffff);
    }
    let before: Vec<_> = [NIC, DISK, EVIL_FN].iter().map(|r| e.functions[r].bytes.clone()).collect();
    // mr1 = offset (bits 15:0) | width << 16: every width up to 8 at every offset near
    // the end, and words with bits past the width's.
    let near_end =
        (0..=8u64).flat_map(|w| (0xff0..=0xffffu64).filter(|o| *o < 0x1008 || *o > 0xfff8).map(move |o| (o, w)));
    let junk = [(0xffc, 4 | 1 << 16), (0xffc, 4 | 1 << 40), (0, 0xffff)];
    for (offset, width) in near_end.chain(junk) {
        let mr1 = offset | width << 16;
        let ok = matches!(width, 1 | 2 | 4) && offset % width == 0 && offset + width <= 0x1000;
        match s.handle_with(EVIL, 11, &[2, mr1], &mut e) {
            Reply::Ok { values, .. } if ok => {
                // The caller's own bytes, and only those.
                let want = e.functions[&EVIL_FN].get(offset as u16, width as usize);
                assert_eq!(values[0], u64::from(want), "read {offset:#x}/{width}");
            }
            r => assert!(!ok && r == err(ErrorCode::Malformed), "read {offset:#x}/{width}: {r:?}"),
        }
        let r = s.handle_with(EVIL, 12, &[2, mr1, 0], &mut e);
        let want = if ok { ErrorCode::ConfigDenied } else { ErrorCode::Malformed };
        assert_eq!(r, err(want), "write {offset:#x}/{width}");
    }
    let after: Vec<_> = [NIC, DISK, EVIL_FN].iter().map(|r| e.functions[r].bytes.clone()).collect();
    assert!(before == after, "a write reached a function");
}

/// Capability lists a device may present: one that loops back on itself, one whose
/// pointer lands in the header (below 0x40), and an extended list that loops or points
/// past 4 KiB. Each ends: the boot walk finishes with every function stopped, and a
/// write is classified against the capabilities found before the loop (PM still
/// refused, a device-specific register still the driver's).
#[test]
fn capability_lists_that_loop_or_leave_the_space_end() {
    let mut e = ecam();
    for (rid, ptr, next, ext) in [
        (NIC, 0x40, 0x40, 0x1000_000d),  // MSI's next is itself; ACS's next is itself
        (DISK, 0x60, 0x10, 0xffc0_000d), // PM's next is a BAR; ACS's next past 0xfff
        (EVIL_FN, 0x60, 0x60, 0x0000_0000),
    ] {
        let f = e.functions.get_mut(&rid).unwrap();
        f.set(reg::CAP_PTR, 1, ptr);
        f.set(ptr as u16 + 1, 1, next);
        f.set(0x100, 4, ext);
        f.set(reg::COMMAND, 2, 0x0107);
    }
    e.functions.get_mut(&DISK).unwrap().set(0xffc, 4, 0x1000_0010); // SR-IOV's ID, back to 0x100
    let census = pci::take_ownership(&mut e, 0..1, |_, _, _| {});
    assert_eq!(census.functions, 4);
    for rid in [NIC, DISK, EVIL_FN] {
        assert_eq!(e.functions[&rid].get(reg::COMMAND, 2), 0x0500, "{rid:#x}");
    }
    let mut s = service();
    // NIC: MSI alone (its list loops at once): its body the driver's, the rest device-specific.
    assert!(write(&mut s, &mut e, NET, 0, 0x44, 4, 0xfee0_0000).is_ok());
    assert!(write(&mut s, &mut e, NET, 0, 0x80, 4, 1).is_ok());
    // DISK: PM first; its next pointer, into the header, ends the list.
    assert_eq!(write(&mut s, &mut e, BLK, 1, 0x64, 2, 3), Err(ErrorCode::ConfigDenied));
    assert_eq!(write(&mut s, &mut e, BLK, 1, 0x10, 4, 0x1234_0000), Err(ErrorCode::ConfigDenied));
    assert_eq!(e.functions[&DISK].get(0x64, 2), 0);
}

/// A BAR moved half by half, or anywhere a hostile driver would want it: onto another
/// function's BAR, onto ECAM, onto RAM, above 4 GiB by its upper half, or sized with all
/// ones and then written with a new address while the ones "stand". Each is refused
/// whole, and the BAR reads where the owner put it after every call (the sizing probe
/// answers the mask and puts the address back within the call).
#[test]
fn a_bar_is_not_moved_half_by_half_or_over_anything() {
    let (mut s, mut e) = (service(), ecam());
    assert_eq!(pci::place_bars(&mut e, EVIL_FN, 0x1020_0000, 0x20_0000), Ok(0x10_4000));
    assert_eq!(pci::place_bars(&mut e, NIC, 0x1000_0000, 0x20_0000), Ok(0x10_4000));
    let placed = |e: &Ecam| {
        (e.functions[&EVIL_FN].get(0x10, 4), e.functions[&EVIL_FN].get(0x18, 4), e.functions[&EVIL_FN].get(0x1c, 4))
    };
    let home = placed(&e);
    assert_eq!(home, (0x1020_0000, 0x1030_0004, 0));
    for (offset, width, value) in [
        (0x10, 4, 0x1000_0000), // onto NET's BAR0
        (0x10, 4, 0x3f00_0000), // onto ECAM (QEMU virt: 0x3f000000)
        (0x10, 4, 0x4000_0000), // onto RAM
        (0x10, 4, 0xffff_fff0), // all ones but the flags: not a sizing write
        (0x18, 4, 0x1000_0004), // the 64-bit BAR's low half onto NET's
        (0x1c, 4, 0x0000_0001), // its high half: above 4 GiB
        (0x1c, 2, 0xffff),      // half of the high half
        (0x12, 2, 0x1000),      // the top half of BAR0
        (0x13, 1, 0x10),        // its top byte
    ] {
        assert_eq!(write(&mut s, &mut e, EVIL, 2, offset, width, value), Err(ErrorCode::ConfigDenied), "{offset:#x}");
        assert_eq!(placed(&e), home, "{offset:#x}");
    }
    // Sizing both halves, then the low half with a new address: the ones never stand.
    assert_eq!(write(&mut s, &mut e, EVIL, 2, 0x18, 4, u32::MAX), Ok(0xffff_c004));
    assert_eq!(write(&mut s, &mut e, EVIL, 2, 0x1c, 4, u32::MAX), Ok(0xffff_ffff));
    assert_eq!(placed(&e), home);
    assert_eq!(write(&mut s, &mut e, EVIL, 2, 0x18, 4, 0x1000_0004), Err(ErrorCode::ConfigDenied));
    assert_eq!(placed(&e), home);
    // With Memory Space on, NET's BAR0 is the only one decoding 0x10000000.
    assert!(write(&mut s, &mut e, EVIL, 2, reg::COMMAND, 2, 0x0006).is_ok());
    assert_eq!(e.functions[&EVIL_FN].bars(), vec![(0x1020_0000, 0x10_0000), (0x1030_0000, 0x4000)]);
}

/// MSI and MSI-X left enabled by firmware on an endpoint: once its driver turns Bus
/// Master on, the device would write firmware's message to firmware's address, which
/// is an IOVA in the driver's domain, maybe one of its buffers. Linux disables both on
/// every function it enumerates (`pci_msi_init`, `pci_msix_init`: "to avoid screaming
/// interrupts"); so does the owner's walk, which leaves the driver to set them up.
#[test]
fn taking_ownership_disables_msi_and_msix_firmware_left_on() {
    let mut e = ecam();
    let nic = e.functions.get_mut(&NIC).unwrap();
    nic.write(0x44, 4, 0x4000_0000); // firmware's address
    nic.write(0x42, 2, 0x0001); // MSI Enable
    nic.write(0x52, 2, 0xc000); // MSI-X Enable, Function Mask
    pci::take_ownership(&mut e, 0..1, |_, _, _| {});
    let f = &e.functions[&NIC];
    assert_eq!(f.get(0x42, 2) & 1, 0, "MSI still enabled");
    assert_eq!(f.get(0x52, 2), 0x4000, "MSI-X still enabled, or its mask changed");
}

/// A function that rewrites its own capability list after its owner recorded it (a device
/// its driver reprograms through a BAR, or a hostile one: nothing in hardware keeps a
/// device's list still). Read at each write, the list decided what was the driver's: a
/// device that unlisted PM (MSI-X's next pointer past it, or the capability pointer past
/// every capability), gave PM's ID to MSI, or cleared Status's Capabilities List bit had
/// PM's control (D3hot), the vendor-specific body and MSI-X's next pointer written as
/// device-specific registers or as MSI's body. What boot recorded decides: each is still
/// refused, and MSI's address, the driver's at boot, is still written.
#[test]
fn a_capability_list_rewritten_after_boot_widens_nothing() {
    type Rewrite = fn(&mut Function);
    let rewrites: [(&str, Rewrite); 4] = [
        ("PM unlisted", |f| f.set(0x51, 1, 0x68)),
        ("the list begins past PM", |f| f.set(reg::CAP_PTR, 1, 0x68)),
        ("PM's ID made MSI's", |f| f.set(0x60, 1, u32::from(reg::CAP_MSI))),
        ("no list", |f| f.set(reg::STATUS, 2, 0)),
    ];
    for (what, rewrite) in rewrites {
        let (mut s, mut e) = (service(), ecam());
        // Boot: the owner records what NIC's driver may write.
        assert!(e.recorded(NIC).is_some());
        rewrite(e.functions.get_mut(&NIC).unwrap());
        let before = e.functions[&NIC].bytes.clone();
        for (offset, width, value) in [
            (0x64, 2, 0x0003),      // PM control: D3hot
            (0x64, 4, 0x0000_0003), // the same, 32 bits
            (0x6a, 2, 0xffff),      // the vendor-specific capability's body
            (0x51, 1, 0x00),        // MSI-X's next pointer
            (0x60, 4, 0x0000_0005), // PM's header
        ] {
            let got = write(&mut s, &mut e, NET, 0, offset, width, value);
            assert_eq!(got, Err(ErrorCode::ConfigDenied), "{what}: {offset:#x}");
        }
        assert!(e.functions[&NIC].bytes == before, "{what}: a refused write changed the function");
        assert!(write(&mut s, &mut e, NET, 0, 0x44, 4, 0xfee0_0000).is_ok(), "{what}");
        assert_eq!(e.functions[&NIC].get(0x44, 4), 0xfee0_0000, "{what}");
    }
}

/// Whether function `rid` drives its INTx line: its Interrupt Status (Status, bit 3) set
/// and its Interrupt Disable (Command, bit 10) clear (PCI Local Bus 3.0, 6.2.2 and 6.2.3:
/// with the bit set the function may not assert INTx, whatever its device wants).
fn drives_its_line(e: &Ecam, rid: u16) -> bool {
    let f = &e.functions[&rid];
    f.get(reg::STATUS, 2) & 1 << 3 != 0 && f.command() & reg::CMD_INTX_DISABLE == 0
}

/// Two drivers' functions whose INTx pins the board swizzles onto one line, which only
/// the NIC's driver's PD holds (`PciFunctionConfig::intx`, from the description's
/// `<irq>`s): the disk's driver asks for its INTx, in every width and offset that reaches
/// Interrupt Disable, and its device asserts. Asserted, the line would storm the NIC's
/// PD (level-triggered: it fires again as soon as it is acknowledged) or hide the NIC's
/// own interrupts behind the disk's; no PD would ever quiet it. Interrupt Disable stays
/// set, the reply says so, and the line stays quiet; the NIC's driver, whose PD holds the
/// line, takes its INTx. Before, every driver could clear the bit.
#[test]
fn a_function_whose_line_is_not_its_drivers_pds_keeps_intx_disabled() {
    let (mut s, mut e) = (service(), ecam());
    // The disk's and the evil function's driver PDs hold no line; the NIC's holds INTA's.
    e.intx_pins = 0;
    let nic = pci::record(&mut e, NIC, 0b0001);
    e.recorded.insert(NIC, nic);
    let intx_off = u32::from(reg::CMD_INTX_DISABLE);
    let mem = u32::from(reg::CMD_MEMORY);
    for rid in [NIC, DISK] {
        let f = e.functions.get_mut(&rid).unwrap();
        f.set(reg::COMMAND, 2, f.get(reg::COMMAND, 2) | intx_off);
        f.set(reg::STATUS, 2, f.get(reg::STATUS, 2) | 1 << 3); // its device asserts
    }
    let status = (u32::from(reg::STATUS_CAP_LIST) | 1 << 13 | 1 << 3) << 16;
    for (offset, width, value, reads) in [
        (reg::COMMAND, 2, 0x0006, 0x0506),
        (reg::COMMAND + 1, 1, 0x00, 0x05),
        (reg::COMMAND, 4, 0xffff_0006, 0x0506 | status),
        (reg::COMMAND, 1, 0x06, 0x06),
    ] {
        let got = write(&mut s, &mut e, BLK, 1, offset, width, value);
        assert_eq!(got, Ok(u64::from(reads)), "{offset:#x}/{width}");
        assert_eq!(e.functions[&DISK].command() & 0x0507, 0x0506, "{offset:#x}/{width}");
        assert!(!drives_its_line(&e, DISK), "{offset:#x}/{width}: the disk drives a line its PD does not hold");
    }
    // The NIC's driver holds the line: its INTx is its to take.
    assert_eq!(write(&mut s, &mut e, NET, 0, reg::COMMAND, 2, 0x0006), Ok(u64::from(0x0106 | mem)));
    assert!(drives_its_line(&e, NIC));
    // Setting it is always allowed, and turns the line off.
    assert_eq!(write(&mut s, &mut e, NET, 0, reg::COMMAND + 1, 1, 0x05), Ok(0x05));
    assert!(!drives_its_line(&e, NIC));
}
