//! A function that does not answer within the second its owner waits after its Function
//! Level Reset (STOP's `FLR_LOST`) and comes back later, at its reset values: its BARs at
//! 0, outside every window the owner gave out, where it would decode once its driver
//! turned Memory Space on. On the strict model of configuration space
//! (`common::config_space`), whichever call first touches it again (CONFIG_READ,
//! CONFIG_WRITE, RESUME, a later STOP) finds it put back where the description places it
//! first, and a STOP never writes its reset values back over that placement.

mod common;

use common::config_space::{Fabric, Function, Owned, Parent};
use common::*;
use iommu_pd::pci::{self, reg, FunctionState, Reset, Topology};
use iommu_pd::{PciFunctionConfig, Service};
use iommu_protocol::{stop, DeviceId, ErrorCode, Reply, Request, MAX_MRS};

/// Where the endpoints' PCI Express capability is; Device Control is 8 bytes in.
const EXP: u16 = 0x40;
const MEM: u32 = reg::CMD_MEMORY as u32;
const MASTER: u32 = reg::CMD_BUS_MASTER as u32;
const INTX_OFF: u32 = reg::CMD_INTX_DISABLE as u32;
/// The disk (device 1, BLK's) at 00:03.0, beside the nic (device 0, NET's) at 00:02.0.
const DISK_RID: u16 = 0x18;
const NIC_BASE: u64 = 0x1000_0000;
const DISK_BASE: u64 = 0x1020_0000;
/// How long the disk answers nothing after its first FLR: past the 1.1 s its owner waits.
const ABSENT_MS: u64 = 1_500;

static FUNCTIONS: [PciFunctionConfig; 2] = [
    PciFunctionConfig { device: 0, rid: 0x10, bar_base: NIC_BASE, bar_size: 0x20_0000, intx: 0b0001 },
    PciFunctionConfig { device: 1, rid: DISK_RID, bar_base: DISK_BASE, bar_size: 0x20_0000, intx: 0b0001 },
];

/// An endpoint with a 1 MiB 32-bit BAR0 and a 16 KiB 64-bit BAR2 (both at 0 from reset),
/// and a PCI Express capability advertising FLR, Device Control writable.
fn endpoint() -> Function {
    let mut f = Function::new(0x11e8_1234, 0);
    f.mask(reg::BAR0, 4, 0xfff0_0000);
    f.set(0x18, 4, 0b100);
    f.mask(0x18, 4, 0xffff_c000);
    f.mask(0x1c, 4, 0xffff_ffff);
    f.mask(reg::ROM, 4, 0xfff0_0001); // a 1 MiB expansion ROM, disabled
    f.set(reg::STATUS, 2, u32::from(reg::STATUS_CAP_LIST));
    f.set(reg::CAP_PTR, 1, u32::from(EXP));
    f.set(reg::INTERRUPT_PIN, 1, 1); // INTA#
    f.set(EXP, 4, 0x0002_0010);
    f.set(EXP + 4, 4, 1 << 28);
    f.mask(EXP + 8, 2, 0x7fff);
    f
}

/// The same, but the disk's driver's PD holds no INTx line of the disk's.
static FUNCTIONS_NO_LINE: [PciFunctionConfig; 2] =
    [FUNCTIONS[0], PciFunctionConfig { device: 1, rid: DISK_RID, bar_base: DISK_BASE, bar_size: 0x20_0000, intx: 0 }];

/// Both endpoints on the root bus, configured as the description says; the disk loses
/// its first FLR. The owner's view, and the two nodes.
fn machine() -> (Owned, usize, usize) {
    machine_with(&FUNCTIONS)
}

/// `machine`, the functions described as `functions`.
fn machine_with(functions: &'static [PciFunctionConfig]) -> (Owned, usize, usize) {
    let mut fabric = Fabric::default();
    let nic = fabric.add(Parent::Root, 2, 0, endpoint());
    let disk = fabric.add(Parent::Root, 3, 0, endpoint());
    fabric.with_flr(disk, EXP + 8, ABSENT_MS);
    let topo = Topology { bridges: &[], functions };
    let mut o = Owned::new(fabric, topo);
    let mut states = [FunctionState::default(); 2];
    pci::configure(&mut o, topo, &mut [], &mut states, |_| {}).unwrap();
    assert_eq!(states, [FunctionState::Placed(0x10_4000); 2]);
    o.booted(&states);
    (o, nic, disk)
}

fn send(s: &mut Service<'_, ModelHw>, o: &mut Owned, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle_with(client, label, &mrs[..n], o)
}

fn command(s: &mut Service<'_, ModelHw>, o: &mut Owned, client: usize, device: u32, value: u32) -> Reply {
    send(s, o, client, Request::ConfigWrite { device: DeviceId(device), offset: reg::COMMAND, width: 2, value })
}

const DISK: DeviceId = DeviceId(1);

/// The call that first touches the disk after it came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Read,
    /// Its driver turning Memory Space and Bus Master on at once.
    Write,
    Resume,
    Stop,
}

#[test]
fn a_function_back_late_from_its_reset_decodes_only_where_the_description_places_it() {
    let placed = [(DISK_BASE, 0x10_0000), (DISK_BASE + 0x10_0000, 0x4000)];
    for first in [First::Read, First::Write, First::Resume, First::Stop] {
        let (mut o, nic, disk) = machine();
        let mut s = Service::new(ModelHw::default(), config(), storage()).unwrap();
        let on = Reply::ok(&[u64::from(MEM | MASTER)]);
        assert_eq!(command(&mut s, &mut o, NET, 0, MEM | MASTER), on);
        assert_eq!(command(&mut s, &mut o, BLK, 1, MEM | MASTER), on);
        assert_eq!(o.fabric.memory(DISK_BASE), Some(disk));
        // STOP: its FLR is started, and it does not answer within the second.
        let lost = stop::FUNCTION_OFF | stop::FLR_LOST;
        assert_eq!(send(&mut s, &mut o, BLK, Request::Stop { device: DISK }), Reply::ok(&[lost]), "{first:?}");
        // While it is gone its driver is told so, and RESUME leaves it stopped.
        let vendor = Request::ConfigRead { device: DISK, offset: reg::VENDOR_ID, width: 4 };
        assert_eq!(send(&mut s, &mut o, BLK, vendor), err(ErrorCode::DeviceMissing), "{first:?}");
        assert_eq!(send(&mut s, &mut o, BLK, Request::Resume { device: DISK }), err(ErrorCode::DeviceMissing));
        assert_eq!(s.hw().enabled.get(&1), Some(&false), "{first:?}: resumed while it was gone");
        // It comes back, at its reset values; its next FLRs answer in time.
        o.fabric.now_ms += ABSENT_MS;
        o.fabric.nodes[disk].flr.as_mut().unwrap().absent_ms = 50;
        assert_eq!(o.fabric.at(DISK_RID).bars(), [(0, 0x10_0000), (0, 0x4000)], "{first:?}");
        let reply = match first {
            First::Read => send(&mut s, &mut o, BLK, vendor),
            First::Write => command(&mut s, &mut o, BLK, 1, MEM | MASTER),
            First::Resume => send(&mut s, &mut o, BLK, Request::Resume { device: DISK }),
            // Inside its client's ration after the lost reset: the reset is owed.
            First::Stop => send(&mut s, &mut o, BLK, Request::Stop { device: DISK }),
        };
        let expected = match first {
            First::Read => Reply::ok(&[0x11e8_1234]),
            First::Write => on,
            First::Resume => Reply::ok(&[]),
            First::Stop => Reply::ok(&[stop::FUNCTION_OFF | stop::RESTORED | stop::RESET_OWED]),
        };
        assert_eq!(reply, expected, "{first:?}");
        // Put back where the description places it before anything else was done, and
        // decoding there again (its driver maps its window), whoever's call found it back.
        assert_eq!(o.fabric.at(DISK_RID).bars(), placed, "{first:?}");
        assert_eq!(o.fabric.memory(DISK_BASE), Some(disk), "{first:?}: not decoding once put back");
        if first != First::Write {
            if first != First::Resume {
                o.fabric.now_ms += 60_000; // past its client's ration: RESUME pays the owed reset
                assert_eq!(send(&mut s, &mut o, BLK, Request::Resume { device: DISK }), Reply::ok(&[]), "{first:?}");
            }
            assert_eq!(command(&mut s, &mut o, BLK, 1, MEM | MASTER), on, "{first:?}");
        }
        assert_eq!(o.fabric.at(DISK_RID).bars(), placed, "{first:?}");
        assert_eq!(o.fabric.memory(DISK_BASE), Some(disk), "{first:?}");
        assert_eq!(o.fabric.memory(DISK_BASE + 0x10_4000 - 1), Some(disk), "{first:?}");
        assert_eq!(o.fabric.memory(0), None, "{first:?}: it decodes at its reset values");
        assert_eq!(o.fabric.memory(NIC_BASE), Some(nic), "{first:?}");
    }
}

/// The stop itself, whatever its caller knows: a function whose BARs read their reset
/// values when it is stopped (it came back late from an earlier reset, or reset itself)
/// gets the owner's placement back, planned from the description, not what it read.
#[test]
fn a_stop_writes_back_the_placement_not_the_reset_values_it_reads() {
    for reset in [Reset::Owed, Reset::Now] {
        let (mut o, _, disk) = machine();
        o.fabric.nodes[disk].flr.as_mut().unwrap().absent_ms = 50;
        let power_on = o.fabric.nodes[disk].flr.as_ref().unwrap().reset.clone();
        o.fabric.nodes[disk].f.bytes = power_on;
        assert_eq!(o.fabric.at(DISK_RID).bars(), [(0, 0x10_0000), (0, 0x4000)]);
        let done = pci::stop_function(&mut o, DISK_RID, reset).unwrap();
        assert!(done.restored(), "{reset:?}: {:#x}", done.0);
        let placed = [(DISK_BASE, 0x10_0000), (DISK_BASE + 0x10_0000, 0x4000)];
        assert_eq!(o.fabric.at(DISK_RID).bars(), placed, "{reset:?}");
        if reset == Reset::Now {
            // Its FLR cleared the placement written before it: a reset, not one ignored.
            assert_eq!(done.0, stop::FUNCTION_OFF | stop::FLR | stop::RESTORED);
        }
    }
}

/// Both functions decoding and mastering, their drivers' doing; then the disk's own FLR,
/// started by the device, not by its owner, and over in 50 ms.
fn disk_reset_by_itself() -> (Service<'static, ModelHw>, Owned, usize, usize) {
    disk_reset_by_itself_with(&FUNCTIONS)
}

/// `disk_reset_by_itself`, the functions described as `functions`.
fn disk_reset_by_itself_with(
    functions: &'static [PciFunctionConfig],
) -> (Service<'static, ModelHw>, Owned, usize, usize) {
    let (mut o, nic, disk) = machine_with(functions);
    let mut s = Service::new(ModelHw::default(), config(), storage()).unwrap();
    let on = |intx: u32| Reply::ok(&[u64::from(MEM | MASTER | intx)]);
    assert_eq!(command(&mut s, &mut o, NET, 0, MEM | MASTER), on(0));
    let kept = if functions[1].intx == 0 { INTX_OFF } else { 0 };
    assert_eq!(command(&mut s, &mut o, BLK, 1, MEM | MASTER), on(kept));
    o.fabric.nodes[disk].flr.as_mut().unwrap().absent_ms = 50;
    o.fabric.write(DISK_RID, EXP + 8, 2, 1 << 15);
    o.fabric.now_ms += 50;
    assert_eq!(o.fabric.nodes[disk].flr.as_ref().unwrap().resets, 1);
    (s, o, nic, disk)
}

/// A function that resets itself, answering all along (an FLR its device starts on its
/// own, through a device-specific register its driver wrote, or a link that went down
/// and came back): its BARs return to 0 while its owner still has them placed, and its
/// Memory Space goes off. Its driver turning Memory Space on again had it decode at 0
/// (over whatever is there) until its next STOP; now the write that turns decoding on
/// puts its BARs where the description places them first.
#[test]
fn a_function_that_resets_itself_decodes_only_where_the_description_places_it() {
    for width in [1u8, 2, 4] {
        let (mut s, mut o, nic, disk) = disk_reset_by_itself();
        assert_eq!(o.fabric.at(DISK_RID).bars(), [(0, 0x10_0000), (0, 0x4000)]);
        // Its driver finds Memory Space off and turns it on again (Command's low byte alone,
        // Command alone, or with Status, as virtio-drivers writes it).
        let w = Request::ConfigWrite { device: DISK, offset: reg::COMMAND, width, value: MEM | MASTER };
        assert!(matches!(send(&mut s, &mut o, BLK, w), Reply::Ok { .. }), "width {width}");
        let placed = [(DISK_BASE, 0x10_0000), (DISK_BASE + 0x10_0000, 0x4000)];
        assert_eq!(o.fabric.at(DISK_RID).bars(), placed, "width {width}");
        assert_eq!(u32::from(o.fabric.at(DISK_RID).command()) & (MEM | MASTER), MEM | MASTER);
        assert_eq!(o.fabric.memory(0), None, "width {width}: it decodes at its reset values");
        assert_eq!(o.fabric.memory(DISK_BASE), Some(disk), "width {width}");
        assert_eq!(o.fabric.memory(NIC_BASE), Some(nic), "width {width}");
    }
}

/// What held, kept: a function that reset itself and came back bigger (its BAR0 now 4 MiB,
/// its window 2 MiB: not the function the owner placed) cannot be put back; its driver's
/// Memory Space write answers `DeviceMissing`, nothing written, and it decodes nowhere,
/// not at 0 and not over the NIC. It stays lost (each call answers `DeviceMissing`) until
/// it fits again, and is then put back where the description places it.
#[test]
fn a_function_that_resets_itself_and_no_longer_fits_decodes_nowhere() {
    let (mut s, mut o, nic, disk) = disk_reset_by_itself();
    let on = Reply::ok(&[u64::from(MEM | MASTER)]);
    o.fabric.nodes[disk].f.mask(reg::BAR0, 4, 0xffc0_0000);
    assert_eq!(command(&mut s, &mut o, BLK, 1, MEM | MASTER), err(ErrorCode::DeviceMissing));
    assert_eq!(u32::from(o.fabric.at(DISK_RID).command()) & MEM, 0, "decoding");
    assert_eq!(o.fabric.memory(0), None);
    assert_eq!(o.fabric.memory(NIC_BASE), Some(nic));
    let vendor = Request::ConfigRead { device: DISK, offset: 0, width: 4 };
    assert_eq!(send(&mut s, &mut o, BLK, vendor), err(ErrorCode::DeviceMissing), "put back while too big");
    assert_eq!(u32::from(o.fabric.at(DISK_RID).command()) & MEM, 0);
    // It fits again: put back on the next call, and its driver's write goes through.
    o.fabric.nodes[disk].f.mask(reg::BAR0, 4, 0xfff0_0000);
    assert_eq!(command(&mut s, &mut o, BLK, 1, MEM | MASTER), on);
    assert_eq!(o.fabric.memory(DISK_BASE), Some(disk));
    assert_eq!(o.fabric.memory(0), None);
}

/// What the owner keeps on after the disk reset itself: its BARs where the description
/// places them, decoding there, and where its driver's PD holds no line of its,
/// Interrupt Disable. Bus Master stays off, as the reset left it.
fn assert_kept_on(o: &Owned, nic: usize, disk: usize, intx_off: u32, what: &str) {
    let placed = [(DISK_BASE, 0x10_0000), (DISK_BASE + 0x10_0000, 0x4000)];
    assert_eq!(o.fabric.at(DISK_RID).bars(), placed, "{what}");
    assert_eq!(o.fabric.memory(DISK_BASE), Some(disk), "{what}: its driver's load finds nothing decoding");
    assert_eq!(o.fabric.memory(DISK_BASE + 0x10_4000 - 1), Some(disk), "{what}");
    assert_eq!(o.fabric.memory(0), None, "{what}: it decodes at its reset values");
    assert_eq!(o.fabric.memory(NIC_BASE), Some(nic), "{what}");
    assert_eq!(u32::from(o.fabric.at(DISK_RID).command()) & (MEM | MASTER | INTX_OFF), MEM | intx_off, "{what}");
    assert!(!o.fabric.dma_reaches_root(disk), "{what}: mastering after its reset");
}

/// A function that resets itself, answering all along, decoded nothing (and a driver's
/// load from its BAR could end in an SError on Arm hardware) until its driver's next
/// Command write, whatever else its driver asked. Now the owner puts back what it keeps
/// on at any configuration call of its driver's (a driver that resets its device reads
/// configuration space to see it back, as Linux's `pci_dev_wait` does) and, with no call
/// at all, when the PD shell's wake-up sweeps the functions (`keep_functions_owned`);
/// the sweep touches no other function. Interrupt Disable comes back too where the
/// disk's driver's PD holds no line of the disk's (the reset cleared it).
#[test]
fn a_function_that_resets_itself_decodes_again_before_its_drivers_next_command_write() {
    for (functions, intx_off) in [(&FUNCTIONS, 0), (&FUNCTIONS_NO_LINE, INTX_OFF)] {
        // Its driver's configuration read: the Vendor ID, then Status.
        for offset in [reg::VENDOR_ID, reg::STATUS] {
            let (mut s, mut o, nic, disk) = disk_reset_by_itself_with(functions);
            assert_eq!(o.fabric.at(DISK_RID).bars(), [(0, 0x10_0000), (0, 0x4000)]);
            let read = Request::ConfigRead { device: DISK, offset, width: 2 };
            assert!(matches!(send(&mut s, &mut o, BLK, read), Reply::Ok { .. }));
            assert_kept_on(&o, nic, disk, intx_off, &format!("read {offset:#x}, intx off {intx_off:#x}"));
        }
        // No call: the owner's sweep.
        let (mut s, mut o, nic, disk) = disk_reset_by_itself_with(functions);
        let nic_before = o.fabric.nodes[nic].f.bytes.clone();
        let mut put_back = vec![];
        s.keep_functions_owned(&mut o, |d| put_back.push(d));
        assert_eq!(put_back, [1], "intx off {intx_off:#x}");
        assert_kept_on(&o, nic, disk, intx_off, &format!("sweep, intx off {intx_off:#x}"));
        assert!(o.fabric.nodes[nic].f.bytes == nic_before, "the sweep changed the NIC");
        // Again: nothing left to put back, nothing written.
        let writes = o.fabric.writes;
        s.keep_functions_owned(&mut o, |d| put_back.push(d));
        assert_eq!((put_back.len(), o.fabric.writes), (1, writes));
    }
}

/// A function that resets itself but keeps Memory Space on through it (against the spec:
/// a reset clears Command) comes back with its BARs at 0, decoding there. The owner put
/// back only one whose Memory Space read off, so its sweep left it so, and its driver's
/// Command write turned Bus Master on with its BARs still at 0 (the write that turns
/// decoding on places them only from off). Now a BAR the owner placed at an address
/// reading 0 is a reset too: the sweep, and any call of its driver's, puts its BARs back
/// where the description places them before anything else; Bus Master is granted only
/// after that.
#[test]
fn a_function_that_keeps_decoding_through_its_own_reset_is_put_back_before_it_masters() {
    // The owner's sweep, with no call.
    let (mut s, mut o, nic, disk) = disk_reset_by_itself();
    o.fabric.write(DISK_RID, reg::COMMAND, 2, MEM);
    assert_eq!(o.fabric.memory(0), Some(disk), "the model decodes at its reset values");
    let mut put_back = vec![];
    s.keep_functions_owned(&mut o, |d| put_back.push(d));
    assert_eq!(put_back, [1]);
    assert_kept_on(&o, nic, disk, 0, "sweep, decoding kept through the reset");
    // Its driver's Command write turning Bus Master on, with no sweep first.
    for width in [1u8, 2, 4] {
        let (mut s, mut o, nic, disk) = disk_reset_by_itself();
        o.fabric.write(DISK_RID, reg::COMMAND, 2, MEM);
        let w = Request::ConfigWrite { device: DISK, offset: reg::COMMAND, width, value: MEM | MASTER };
        assert!(matches!(send(&mut s, &mut o, BLK, w), Reply::Ok { .. }), "width {width}");
        let placed = [(DISK_BASE, 0x10_0000), (DISK_BASE + 0x10_0000, 0x4000)];
        assert_eq!(o.fabric.at(DISK_RID).bars(), placed, "width {width}: mastering with its BARs at 0");
        assert_eq!(u32::from(o.fabric.at(DISK_RID).command()) & (MEM | MASTER), MEM | MASTER, "width {width}");
        assert_eq!(o.fabric.memory(0), None, "width {width}: it decodes at its reset values");
        assert_eq!(o.fabric.memory(DISK_BASE), Some(disk), "width {width}");
        assert_eq!(o.fabric.memory(NIC_BASE), Some(nic), "width {width}");
    }
}

/// A device with a window onto its own configuration space in a BAR: its driver, which
/// may not write its BARs or its ROM through CONFIG_WRITE, writes them through the
/// window: BAR0 moved onto the NIC's window, BAR2 (64-bit) moved above 4 GiB by its high
/// dword, or its expansion ROM enabled at the NIC's window. Each decoded over another
/// function's window, or outside every window, for as long as the device ran: the owner
/// checked only that Memory Space stayed on. Now what a BAR or the ROM reads is checked
/// against what the owner placed at boot, at the sweep and before any call of its
/// driver's, and put back (BARs where the description places them, ROM disabled).
#[test]
fn bars_or_rom_rewritten_through_a_window_in_the_devices_own_bar_are_put_back() {
    let nic_base = NIC_BASE as u32;
    let rewrites: [(&str, u16, u32); 3] = [
        ("BAR0 onto the NIC's", reg::BAR0, nic_base),
        ("BAR2 above 4 GiB", 0x1c, 1),
        ("ROM enabled on the NIC's", reg::ROM, nic_base | 1),
    ];
    for (what, offset, value) in rewrites {
        for call in [false, true] {
            let (mut s, mut o, nic, disk) = disk_placed();
            // Through the device's own window, not through the owner.
            o.fabric.write(DISK_RID, offset, 4, value);
            assert_eq!(o.fabric.at(DISK_RID).get(offset, 4), value, "{what}: the model took the write");
            if call {
                let read = Request::ConfigRead { device: DISK, offset: reg::VENDOR_ID, width: 2 };
                assert!(matches!(send(&mut s, &mut o, BLK, read), Reply::Ok { .. }), "{what}");
            } else {
                let mut put_back = vec![];
                s.keep_functions_owned(&mut o, |d| put_back.push(d));
                assert_eq!(put_back, [1], "{what}: nothing put back");
            }
            let placed = [(DISK_BASE, 0x10_0000), (DISK_BASE + 0x10_0000, 0x4000)];
            assert_eq!(o.fabric.at(DISK_RID).bars(), placed, "{what}, call {call}");
            assert_eq!(o.fabric.at(DISK_RID).rom(), None, "{what}, call {call}: its ROM decodes");
            assert_eq!(o.fabric.memory(NIC_BASE), Some(nic), "{what}, call {call}");
            assert_eq!(o.fabric.memory(DISK_BASE), Some(disk), "{what}, call {call}");
            assert_eq!(u32::from(o.fabric.at(DISK_RID).command()) & MEM, MEM, "{what}, call {call}");
        }
    }
}

/// Both functions placed, their drivers' Memory Space and Bus Master on.
fn disk_placed() -> (Service<'static, ModelHw>, Owned, usize, usize) {
    let (mut o, nic, disk) = machine();
    let mut s = Service::new(ModelHw::default(), config(), storage()).unwrap();
    assert!(matches!(command(&mut s, &mut o, NET, 0, MEM | MASTER), Reply::Ok { .. }));
    assert!(matches!(command(&mut s, &mut o, BLK, 1, MEM | MASTER), Reply::Ok { .. }));
    (s, o, nic, disk)
}

/// A function that reset itself and came back with a smaller BAR0 (512 KiB, not the
/// 1 MiB boot placed) still fits its window, but placed again its BARs are not where
/// boot placed them: not the function the owner placed, so it decodes nowhere and its
/// calls answer `DeviceMissing`, as one that no longer fits does; without that, every
/// sweep would find its BARs not as recorded and place them again.
#[test]
fn a_function_that_comes_back_with_other_bar_sizes_decodes_nowhere() {
    let (mut s, mut o, nic, disk) = disk_reset_by_itself();
    o.fabric.nodes[disk].f.mask(reg::BAR0, 4, 0xfff8_0000);
    let mut put_back = vec![];
    s.keep_functions_owned(&mut o, |d| put_back.push(d));
    assert!(put_back.is_empty());
    assert_eq!(u32::from(o.fabric.at(DISK_RID).command()) & MEM, 0, "decoding");
    assert_eq!(o.fabric.memory(DISK_BASE), None);
    assert_eq!(o.fabric.memory(NIC_BASE), Some(nic));
    let vendor = Request::ConfigRead { device: DISK, offset: 0, width: 4 };
    assert_eq!(send(&mut s, &mut o, BLK, vendor), err(ErrorCode::DeviceMissing));
    assert_eq!(u32::from(o.fabric.at(DISK_RID).command()) & MEM, 0, "decoding after the call");
}

/// A physical function with SR-IOV: its driver, refused extended space by CONFIG_WRITE,
/// sets VF Enable and VF Memory Space through a window onto its configuration space in
/// its BAR. Its VFs (functions no walk finds, whose Vendor ID reads all ones) then
/// answered, and decoded their VF BARs wherever the driver put them, until the next
/// boot: the owner turned them off only when it took ownership. Now the sweep, and any
/// call of its driver's, turns them off again, where the SR-IOV capability was at boot.
#[test]
fn virtual_functions_enabled_through_the_devices_own_bar_are_turned_off() {
    const SRIOV: u16 = 0x100;
    for call in [false, true] {
        let (mut s, mut o, _, disk) = disk_placed();
        let f = &mut o.fabric.nodes[disk].f;
        f.set(SRIOV, 4, 0x0001_0010); // SR-IOV, the last extended capability
        f.mask(SRIOV + 8, 2, 0x001f);
        f.set(SRIOV + 0x0e, 2, 8); // TotalVFs

        // As the owner records it at boot (before any driver runs), with its SR-IOV.
        let states = o.states.clone();
        o.booted(&states);
        // Through the device's own window: VF Enable, VF Memory Space, ARI Capable.
        o.fabric.write(DISK_RID, SRIOV + 8, 2, 0x0019);
        assert_eq!(o.fabric.at(DISK_RID).get(SRIOV + 8, 2), 0x0019, "the model took the write");
        if call {
            let read = Request::ConfigRead { device: DISK, offset: reg::VENDOR_ID, width: 2 };
            assert!(matches!(send(&mut s, &mut o, BLK, read), Reply::Ok { .. }));
        } else {
            let mut put_back = vec![];
            s.keep_functions_owned(&mut o, |d| put_back.push(d));
            assert_eq!(put_back, [1], "nothing put back");
        }
        assert_eq!(o.fabric.at(DISK_RID).get(SRIOV + 8, 2), 0x0010, "call {call}: VFs still enabled, or ARI changed");
    }
}

/// Resizable BAR (PCIe Base 4.0, 7.8.6), its control written through a window onto the
/// NIC's configuration space in its own BAR: BAR0 grows from 1 MiB to 4 MiB. Its address
/// (0x1000_0000, 4 MiB aligned) reads as the owner placed it, so comparing the BARs sees
/// nothing, but it decodes 0x1000_0000..0x1040_0000, over the disk's window. Boot now
/// records each Resizable BAR control, and between calls one that changed is written
/// back and the BARs placed again; a BAR that does not shrink back does not fit, and the
/// function decodes nowhere (`DeviceMissing`).
#[test]
fn a_bar_resized_through_the_devices_own_bar_decodes_over_no_other_window() {
    const REBAR: u16 = 0x100;
    let (mut s, mut o, nic, disk) = disk_placed();
    let f = &mut o.fabric.nodes[nic].f;
    f.set(REBAR, 4, 0x0001_0015); // Resizable BAR, the last extended capability
    f.set(REBAR + 4, 4, 0b111 << 4); // 1, 2 and 4 MiB supported
    f.set(REBAR + 8, 4, 1 << 5); // one resizable BAR, BAR0, at 1 MiB (size 0)
    f.mask(REBAR + 8, 4, 0x3f00);

    // As the owner records it at boot (before any driver runs), with its Resizable BAR.
    let states = o.states.clone();
    o.booted(&states);
    // Through its own window: BAR0 at 4 MiB (size 2); the device's BAR now decodes 4 MiB.
    o.fabric.write(0x10, REBAR + 8, 4, 2 << 8);
    o.fabric.nodes[nic].f.mask(reg::BAR0, 4, 0xffc0_0000);
    assert_eq!(o.fabric.at(0x10).get(reg::BAR0, 4), NIC_BASE as u32, "it reads as placed");
    let mut put_back = vec![];
    s.keep_functions_owned(&mut o, |d| put_back.push(d));
    assert_eq!(o.fabric.at(0x10).get(REBAR + 8, 4), 1 << 5, "its size left at 4 MiB");
    assert_eq!(o.fabric.memory(DISK_BASE), Some(disk), "the NIC decodes over the disk's window");
    assert_eq!(o.fabric.memory(DISK_BASE + 0x10_0000), Some(disk));
    assert_eq!(o.fabric.memory(NIC_BASE), None, "a 4 MiB BAR0 in a 2 MiB window decodes");
    let vendor = Request::ConfigRead { device: DeviceId(0), offset: 0, width: 4 };
    assert_eq!(send(&mut s, &mut o, NET, vendor), err(ErrorCode::DeviceMissing));
}
