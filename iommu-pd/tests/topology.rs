//! The PCI owner configuring a declared hierarchy (`pci::configure`) on a strict model of
//! configuration space (`common::config_space`), where requests are routed by the bus
//! numbers and windows programmed in the bridges: a root port, a switch (upstream and two
//! downstream ports), a PCIe-to-PCI bridge, endpoints with BARs, ACS capabilities with
//! only some bits implemented, a bridge of the wrong kind, a downstream port declared
//! with ACS that has none, a bridge the description does not declare, and a function
//! that is not there. Each test asserts the model's registers afterwards, and what the
//! fabric does with them: which function a configuration request, a memory access or a
//! DMA reaches.

mod common;

use common::config_space::{Fabric, Function, Owned, Parent};
use common::{ModelHw, BLK, CLIENTS, EVIL, NET, REGIONS};
use iommu_pd::pci::{
    self, acs, bridge_window, BarError, BridgeState, Found, FunctionState, MemWindow, Met, Topology, WindowError,
};
use iommu_pd::{BridgeConfig, BridgeKind, Config, DeviceConfig, FaultPolicy, PciFunctionConfig, Service};
use iommu_protocol::{DeviceId, ErrorCode, Reply, Request, MAX_MRS};

const MEM: u32 = 1 << 1;
/// Bridge Control's Parity Error Response and SERR# Enable.
const PARITY: u16 = 1;
const SERR: u16 = 1 << 1;
const MASTER: u32 = 1 << 2;
/// Command's Interrupt Disable: the boot walk sets it on every function.
const INTX_OFF: u32 = 1 << 10;
/// Where the model's bridges with a PCI Express capability have ACS (after AER), as QEMU's
/// generic root port has it.
const ACS_AT: u16 = 0x148;

/// A bridge: bus numbers, windows and bridge control writable; a PCI Express capability
/// of port type `port` at 0x40 (none for a conventional bridge, which has a PM capability
/// there instead); in extended space AER, then ACS implementing `acs` if given.
fn bridge(port: Option<u8>, acs: Option<u16>) -> Function {
    let mut f = Function::new(0x000c_1b36, 1);
    f.mask(0x18, 4, 0xffff_ffff);
    f.set(0x1c, 2, 0x0101); // 32-bit I/O addressing
    f.mask(0x1c, 2, 0xf0f0);
    f.mask(0x20, 4, 0xfff0_fff0);
    f.set(0x24, 4, 0x0001_0001); // 64-bit prefetchable
    f.mask(0x24, 4, 0xfff0_fff0);
    f.mask(0x28, 4, 0xffff_ffff);
    f.mask(0x2c, 4, 0xffff_ffff);
    f.mask(0x30, 4, 0xffff_ffff);
    f.mask(0x3e, 2, 0x0fff);
    f.set(0x06, 2, 1 << 4); // a capability list
    f.set(0x34, 1, 0x40);
    match port {
        Some(t) => f.set(0x40, 4, 0x0002_0010 | u32::from(t) << 20),
        None => f.set(0x40, 4, 0x0003_0001),
    }
    if port.is_some() {
        let next = if acs.is_some() { u32::from(ACS_AT) << 20 } else { 0 };
        f.set(0x100, 4, 0x0001_0001 | next);
        if let Some(bits) = acs {
            f.set(ACS_AT, 4, 0x0001_000d);
            f.set(ACS_AT + 4, 2, u32::from(bits));
            f.mask(ACS_AT + 6, 2, u32::from(bits));
        }
    }
    f
}

/// An endpoint with a 1 MiB 32-bit BAR0 and a 16 KiB 64-bit BAR2: 0x10_4000 bytes placed.
/// An endpoint whose capability list starts with an MSI capability at 0x40: Message
/// Control `control` at power-on, of which `writable` may be written, the next capability
/// at `next`, and its address writable.
fn msi_endpoint(control: u32, next: u32, writable: u32) -> Function {
    let mut f = endpoint();
    f.set(0x06, 2, 1 << 4);
    f.set(0x34, 1, 0x40);
    f.set(0x40, 4, control << 16 | next << 8 | 0x05);
    f.mask(0x42, 2, writable);
    f.mask(0x44, 4, 0xffff_fffc);
    f
}

fn endpoint() -> Function {
    let mut f = Function::new(0x11e8_1234, 0);
    f.set(0x3d, 1, 1); // Interrupt Pin: INTA#
    f.mask(0x10, 4, 0xfff0_0000);
    f.set(0x18, 4, 0b100);
    f.mask(0x18, 4, 0xffff_c000);
    f.mask(0x1c, 4, 0xffff_ffff);
    f
}

fn rp(bdf: u16, kind: BridgeKind, secondary: u8, subordinate: u8, acs: bool) -> BridgeConfig {
    BridgeConfig { rid: bdf, kind, secondary, subordinate, acs }
}

/// Children before parents, so the owner must find the order itself.
static BRIDGES: [BridgeConfig; 7] = [
    BridgeConfig { rid: 0x0300, kind: BridgeKind::SwitchDownstream, secondary: 4, subordinate: 4, acs: false },
    BridgeConfig { rid: 0x0308, kind: BridgeKind::SwitchDownstream, secondary: 5, subordinate: 5, acs: true },
    BridgeConfig { rid: 0x0200, kind: BridgeKind::SwitchUpstream, secondary: 3, subordinate: 5, acs: false },
    BridgeConfig { rid: 0x0008, kind: BridgeKind::RootPort, secondary: 1, subordinate: 1, acs: true },
    BridgeConfig { rid: 0x0010, kind: BridgeKind::RootPort, secondary: 2, subordinate: 5, acs: true },
    BridgeConfig { rid: 0x0018, kind: BridgeKind::PcieToPci, secondary: 6, subordinate: 6, acs: false },
    BridgeConfig { rid: 0x0020, kind: BridgeKind::PcieToPci, secondary: 7, subordinate: 7, acs: false },
];
const DN_A: usize = 0;
const DN_B: usize = 1;
const UP: usize = 2;
const RP1: usize = 3;
const RP2: usize = 4;
const WRONG: usize = 5;
const P2P: usize = 6;

/// A described function whose every INTx pin is on a line its driver's PD holds: these
/// tests are not about INTx (`tests/pci.rs` is), and their drivers' Command writes read
/// back as written.
const fn function(device: usize, rid: u16, bar_base: u64, bar_size: u64) -> PciFunctionConfig {
    PciFunctionConfig { device, rid, bar_base, bar_size, intx: 0b1111 }
}

static FUNCTIONS: [PciFunctionConfig; 7] = [
    function(0, 0x0100, 0x1000_0000, 0x20_0000), // nic, below the first root port
    function(1, 0x0400, 0x1020_0000, 0x20_0000), // disk, below the switch
    function(2, 0x0608, 0x1060_0000, 0x10_0000), // below the bridge of the wrong kind
    function(3, 0x0500, 0x1040_0000, 0x20_0000), // below the port without ACS
    function(4, 0x0710, 0x1080_0000, 0x20_0000), // legacy, below the PCIe-to-PCI bridge
    function(5, 0x0028, 0x10a0_0000, 0x10_0000), // ghost: nothing at 00:05.0
    function(6, 0x0008, 0, 0),                   // the first root port, named as a device
];
const NIC: usize = 0;
const DISK: usize = 1;
const BEHIND_WRONG: usize = 2;
const BEHIND_NO_ACS: usize = 3;
const LEGACY: usize = 4;
const GHOST: usize = 5;
const PORT_AS_DEVICE: usize = 6;

const TOPO: Topology<'static> = Topology { bridges: &BRIDGES, functions: &FUNCTIONS };

fn device(name: &'static str, stream: u32, owner: usize) -> DeviceConfig {
    DeviceConfig {
        name,
        stream,
        extra_streams: &[],
        owner,
        iova_base: 0x1000_0000,
        iova_size: 1 << 20,
        resume_allowed: true,
    }
}

/// Nodes of the model, by what they are.
struct Nodes {
    rp1: usize,
    dn_a: usize,
    dn_b: usize,
    wrong: usize,
    rogue: usize,
    functions: [Option<usize>; 7],
    behind_rogue: usize,
}

/// The machine: what the description declares, plus a bridge it does not (00:06.0, left
/// numbered by firmware with a device below it), and a conventional bridge where a
/// PCIe-to-PCI one is declared (also left numbered). Every function starts with Memory
/// Space and Bus Master on.
fn machine() -> (Fabric, Nodes) {
    let mut fab = Fabric::default();
    let rp1 = fab.add(Parent::Root, 1, 0, bridge(Some(4), Some(0x5f)));
    let nic = fab.add(Parent::Bridge(rp1), 0, 0, endpoint());
    let rp2 = fab.add(Parent::Root, 2, 0, bridge(Some(4), Some(acs::SV | acs::RR)));
    let up = fab.add(Parent::Bridge(rp2), 0, 0, bridge(Some(5), None));
    let dn_a = fab.add(Parent::Bridge(up), 0, 0, bridge(Some(6), Some(acs::SV | acs::UF)));
    let dn_b = fab.add(Parent::Bridge(up), 1, 0, bridge(Some(6), None));
    let disk = fab.add(Parent::Bridge(dn_a), 0, 0, endpoint());
    let nic2 = fab.add(Parent::Bridge(dn_b), 0, 0, endpoint());
    let wrong = fab.add(Parent::Root, 3, 0, bridge(None, None));
    let behind_wrong = fab.add(Parent::Bridge(wrong), 1, 0, endpoint());
    let p2p = fab.add(Parent::Root, 4, 0, bridge(Some(7), None));
    let legacy = fab.add(Parent::Bridge(p2p), 2, 0, endpoint());
    let rogue = fab.add(Parent::Root, 6, 0, bridge(None, None));
    let behind_rogue = fab.add(Parent::Bridge(rogue), 0, 0, endpoint());
    for n in &mut fab.nodes {
        n.f.set(0x04, 2, MEM | MASTER);
    }
    // Firmware left the first root port forwarding legacy VGA and ISA, its secondary bus
    // held in reset, and parity error response on.
    fab.nodes[rp1].f.set(0x3e, 2, 0x004d);
    // And its own expansion ROM enabled, at 0x1010_0000 (inside its window).
    fab.nodes[rp1].f.mask(0x38, 4, 0xffff_f801);
    fab.nodes[rp1].f.set(0x38, 4, 0x1010_0001);
    fab.nodes[wrong].f.set(0x18, 4, 0x0006_0600);
    fab.nodes[rogue].f.set(0x18, 4, 0x0009_0900);
    fab.nodes[rogue].f.set(0x20, 4, 0x10f0_1000);
    let functions = [Some(nic), Some(disk), Some(behind_wrong), Some(nic2), Some(legacy), None, Some(rp1)];
    (fab, Nodes { rp1, dn_a, dn_b, wrong, rogue, functions, behind_rogue })
}

fn configured() -> (Owned, Nodes, [BridgeState; 7], pci::Census, Vec<Met>) {
    let (fabric, nodes) = machine();
    let mut owned = Owned::new(fabric, TOPO);
    let mut bridges = [BridgeState::default(); 7];
    let mut met = vec![];
    let mut states = [FunctionState::default(); 7];
    let census = pci::configure(&mut owned, TOPO, &mut bridges, &mut states, |m| met.push(m)).unwrap();
    owned.booted(&states);
    (owned, nodes, bridges, census, met)
}

/// `functions`, all on the root bus of `fab`, configured by the owner as at boot: what it
/// found of each, and its view of the fabric afterwards.
fn boot_on_root_bus<const N: usize>(fab: Fabric, functions: [PciFunctionConfig; N]) -> (Owned, [FunctionState; N]) {
    let topo = Topology { bridges: &[], functions: Box::leak(Box::new(functions)) };
    let mut o = Owned::new(fab, topo);
    let mut states = [FunctionState::default(); N];
    pci::configure(&mut o, topo, &mut [], &mut states, |_| {}).unwrap();
    o.booted(&states);
    (o, states)
}

fn window(base: u64, limit: u64) -> Option<MemWindow> {
    Some(MemWindow { base, limit })
}

#[test]
fn declared_bridges_are_numbered_windowed_and_acs_enabled_top_down() {
    let (o, n, bridges, census, _) = configured();
    let isolate = acs::SV | acs::RR | acs::CR | acs::UF;
    assert_eq!(
        bridges[RP1],
        BridgeState::Open {
            acs: isolate,
            window: window(0x1000_0000, 0x101f_ffff),
            master: true,
            control: PARITY | SERR
        }
    );
    // Only SV and RR implemented: only they are set (the rest taken as hard-wired).
    let switch = window(0x1020_0000, 0x105f_ffff);
    assert_eq!(bridges[RP2], BridgeState::Open { acs: acs::SV | acs::RR, window: switch, master: true, control: SERR });
    assert_eq!(bridges[UP], BridgeState::Open { acs: 0, window: switch, master: true, control: SERR });
    // Declared without ACS, has some: enabled all the same.
    let dn_a = window(0x1020_0000, 0x103f_ffff);
    assert_eq!(bridges[DN_A], BridgeState::Open { acs: acs::SV | acs::UF, window: dn_a, master: true, control: SERR });
    let p2p = window(0x1080_0000, 0x109f_ffff);
    assert_eq!(bridges[P2P], BridgeState::Open { acs: 0, window: p2p, master: true, control: SERR });

    let f = &o.fabric;
    let rp1 = f.at(0x0008);
    assert_eq!(rp1.buses(), (0, 1, 1));
    assert_eq!(rp1.window(), Some((0x1000_0000, 0x101f_ffff)));
    assert_eq!(rp1.get(0x20, 4), 0x1010_1000);
    assert_eq!(rp1.get(ACS_AT + 6, 2), u32::from(isolate));
    assert_eq!(u32::from(rp1.command()), MEM | MASTER | INTX_OFF);
    // Bridge Control: VGA, ISA and the bus reset off, SERR# forwarding on, parity error
    // response as firmware left it.
    assert_eq!(rp1.get(0x3e, 2), u32::from(PARITY | SERR));
    assert_eq!(rp1.get(0x38, 4) & 1, 0, "the root port's ROM is still enabled");
    assert_eq!(f.at(0x0010).get(0x3e, 2), u32::from(SERR));
    // Prefetchable and I/O windows closed: base above limit.
    assert_eq!(rp1.get(0x24, 4) & 0xfff0_fff0, 0x0000_fff0);
    assert_eq!((rp1.get(0x1c, 1) & 0xf0, rp1.get(0x1d, 1) & 0xf0), (0xf0, 0x00));
    assert_eq!(f.at(0x0010).buses(), (0, 2, 5));
    assert_eq!(f.at(0x0010).get(ACS_AT + 6, 2), u32::from(acs::SV | acs::RR));
    assert_eq!(f.at(0x0200).buses(), (2, 3, 5));
    assert_eq!(f.at(0x0300).buses(), (3, 4, 4));
    assert_eq!(f.at(0x0300).get(ACS_AT + 6, 2), u32::from(acs::SV | acs::UF));
    assert_eq!(f.at(0x0300).window(), Some((0x1020_0000, 0x103f_ffff)));
    assert_eq!(f.at(0x0020).buses(), (0, 7, 7));
    // Every described function there answers at the requester ID the description gives it.
    for (k, fc) in FUNCTIONS.iter().enumerate() {
        if let Some(node) = n.functions[k].filter(|_| o.states[k].present()) {
            assert_eq!(f.rid_of(node), Some(fc.rid), "function {k}");
        }
    }
    assert_eq!(census, pci::Census { buses: 6, functions: 11, bridges: 8, masters_stopped: 11, undeclared: 1 });
    assert_eq!(n.rp1, f.route(0x0008).unwrap());
}

#[test]
fn what_does_not_match_the_description_is_left_closed_and_what_is_below_it_missing() {
    let (o, n, bridges, _, met) = configured();
    let f = &o.fabric;
    // Declared with ACS, has none: closed.
    assert_eq!(bridges[DN_B], BridgeState::NoAcs(None));
    // A conventional bridge where a PCIe-to-PCI bridge is declared: closed, firmware's
    // bus numbers gone.
    assert_eq!(bridges[WRONG], BridgeState::WrongKind(Found::Conventional));
    // The bridge nobody declared: closed, its device out of reach, its DMA not forwarded.
    assert!(met.contains(&Met::Undeclared(0x0030)));
    for node in [n.dn_b, n.wrong, n.rogue] {
        let b = &f.nodes[node].f;
        assert_eq!(b.buses(), (0, 0, 0), "node {node}");
        assert_eq!(b.window(), None);
        assert_eq!(u32::from(b.command()) & (MEM | MASTER | 1), 0);
    }
    assert_eq!(f.route(0x0900), None);
    assert!(!f.dma_reaches_root(n.behind_rogue));
    assert_eq!(
        o.states,
        [
            FunctionState::Placed(0x10_4000),
            FunctionState::Placed(0x10_4000),
            FunctionState::NotReached,
            FunctionState::NotReached,
            FunctionState::Placed(0x10_4000),
            FunctionState::Missing,
            // A bridge named as a device: no BARs of an endpoint to place.
            FunctionState::BarsNotPlaced(BarError::NotAnEndpoint),
        ]
    );
    // Nothing reaches the windows of the functions below closed bridges.
    assert_eq!(f.memory(0x1040_0000), None);
    assert_eq!(f.memory(0x1060_0000), None);
    let _ = (n.dn_a, BEHIND_WRONG, BEHIND_NO_ACS, GHOST);
}

#[test]
fn bars_are_placed_in_each_functions_window_and_decode_there_with_bus_master_off() {
    let (o, n, ..) = configured();
    for (k, base) in [(NIC, 0x1000_0000u64), (DISK, 0x1020_0000), (LEGACY, 0x1080_0000)] {
        let node = n.functions[k].unwrap();
        let e = &o.fabric.nodes[node].f;
        assert_eq!(e.bars(), [(base, 0x10_0000), (base + 0x10_0000, 0x4000)], "function {k}");
        // Decoding from boot on: its driver maps its window before it runs.
        assert_eq!(u32::from(e.command()) & (MEM | MASTER | INTX_OFF), MEM | INTX_OFF, "function {k}");
        assert_eq!(o.fabric.memory(base), Some(node), "function {k}");
    }
}

fn send(s: &mut Service<'_, ModelHw>, o: &mut Owned, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle_with(client, label, &mrs[..n], o)
}

fn write(s: &mut Service<'_, ModelHw>, o: &mut Owned, c: usize, dev: u32, offset: u16, width: u8, value: u32) -> Reply {
    send(s, o, c, Request::ConfigWrite { device: DeviceId(dev), offset, width, value })
}

fn read(s: &mut Service<'_, ModelHw>, o: &mut Owned, c: usize, dev: u32, offset: u16, width: u8) -> Reply {
    send(s, o, c, Request::ConfigRead { device: DeviceId(dev), offset, width })
}

fn service() -> Service<'static, ModelHw> {
    service_of(Box::leak(Box::new([
        device("nic", 0x100, NET),
        device("disk", 0x400, BLK),
        device("behind_wrong", 0x600, EVIL),
        device("behind_no_acs", 0x500, NET),
        device("legacy", 0x700, BLK),
        device("ghost", 0x28, EVIL),
        device("port", 0x8, EVIL),
    ])))
}

fn service_of(devices: &'static [DeviceConfig]) -> Service<'static, ModelHw> {
    let cfg = Config {
        clients: &CLIENTS,
        devices,
        regions: &REGIONS,
        caps: &[],
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 },
    };
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(3, 7, 64, 256)>::default())).storage();
    Service::new(ModelHw::default(), cfg, storage).unwrap()
}

/// The functions `configured` places, each with its driver and its window's base.
const DRIVEN: [(usize, usize, u64); 3] =
    [(NET, NIC, 0x1000_0000), (BLK, DISK, 0x1020_0000), (BLK, LEGACY, 0x1080_0000)];

/// On the configured topology and its service, `each` for every function a driver drives:
/// its driver, its index, its window's base and its node in the fabric.
fn for_each_driven(mut each: impl FnMut(&mut Service<'_, ModelHw>, &mut Owned, usize, usize, u64, usize)) {
    let (mut o, n, ..) = configured();
    let mut s = service();
    for (client, k, base) in DRIVEN {
        each(&mut s, &mut o, client, k, base, n.functions[k].unwrap());
    }
}

/// Function `k`'s driver (`client`) turns Memory Space and Bus Master on, and they read on.
fn turn_on(s: &mut Service<'_, ModelHw>, o: &mut Owned, client: usize, k: usize) {
    let reply = write(s, o, client, k as u32, 0x04, 2, MEM | MASTER);
    assert_eq!(reply, Reply::ok(&[u64::from(MEM | MASTER)]), "function {k}");
}

#[test]
fn drivers_reach_their_devices_through_the_numbered_bridges() {
    for_each_driven(|s, o, client, k, base, node| {
        assert!(!o.fabric.dma_reaches_root(node));
        assert_eq!(o.fabric.memory(base), Some(node), "function {k} does not decode before its driver runs");
        turn_on(s, o, client, k);
        // The CPU's access to its BAR goes through every window down to it, and its DMA
        // goes up through every bridge above it.
        assert_eq!(o.fabric.memory(base), Some(node), "function {k}");
        assert_eq!(o.fabric.memory(base + 0x10_0000), Some(node), "function {k}");
        assert!(o.fabric.dma_reaches_root(node), "function {k}");
        assert_eq!(read(s, o, client, k as u32, 0, 4), Reply::ok(&[0x11e8_1234]));
    });
}

#[test]
fn a_missing_device_says_so_to_its_driver() {
    let (mut o, ..) = configured();
    let mut s = service();
    for (client, k) in [(NET, BEHIND_NO_ACS), (EVIL, BEHIND_WRONG), (EVIL, GHOST)] {
        assert_eq!(read(&mut s, &mut o, client, k as u32, 0, 4), Reply::Err(ErrorCode::DeviceMissing), "function {k}");
        assert_eq!(
            write(&mut s, &mut o, client, k as u32, 4, 2, 6),
            Reply::Err(ErrorCode::DeviceMissing),
            "function {k}"
        );
    }
}

#[test]
fn a_driver_cannot_write_a_bridge_its_acs_or_another_drivers_function() {
    let (mut o, n, ..) = configured();
    let mut s = service();
    let before: Vec<Vec<u8>> = o.fabric.nodes.iter().map(|n| n.f.bytes.clone()).collect();
    let writes = o.fabric.writes;
    // The root port, named as the hostile driver's device: every register refused, bus
    // numbers, window, Command and ACS control included; reading its ACS is allowed.
    for (offset, width, value) in
        [(0x18, 4, 0x0009_0900), (0x20, 4, 0), (0x04, 2, 0), (ACS_AT + 6, 2, 0), (0x3e, 2, 0x40)]
    {
        assert_eq!(
            write(&mut s, &mut o, EVIL, PORT_AS_DEVICE as u32, offset, width, value),
            Reply::Err(ErrorCode::ConfigDenied),
            "{offset:#x}"
        );
    }
    let isolate = acs::SV | acs::RR | acs::CR | acs::UF;
    assert_eq!(read(&mut s, &mut o, EVIL, PORT_AS_DEVICE as u32, ACS_AT + 6, 2), Reply::ok(&[u64::from(isolate)]));
    // Another driver's function: not the caller's to name.
    assert_eq!(write(&mut s, &mut o, EVIL, NIC as u32, 0x10, 4, 0x1060_0000), Reply::Err(ErrorCode::BadDevice));
    assert_eq!(write(&mut s, &mut o, EVIL, DISK as u32, 0x04, 2, 0), Reply::Err(ErrorCode::BadDevice));
    assert_eq!(read(&mut s, &mut o, NET, DISK as u32, 0, 4), Reply::Err(ErrorCode::BadDevice));
    // Its own endpoint's extended space (where an endpoint's ACS would be), its BAR.
    assert_eq!(write(&mut s, &mut o, NET, NIC as u32, 0x106, 2, 0), Reply::Err(ErrorCode::ConfigDenied));
    assert_eq!(write(&mut s, &mut o, NET, NIC as u32, 0x10, 4, 0x1040_0000), Reply::Err(ErrorCode::ConfigDenied));
    let after: Vec<Vec<u8>> = o.fabric.nodes.iter().map(|n| n.f.bytes.clone()).collect();
    assert!(before == after, "a refused write changed a register");
    assert_eq!(o.fabric.writes, writes, "a refused write reached ECAM");
    assert_eq!(o.fabric.nodes[n.rp1].f.buses(), (0, 1, 1));
}

/// One root port (00:01.0, declared with ACS, secondary bus 1) made from `port`, with an
/// endpoint below it whose window is 0x1000_0000 + 2 MiB, configured: the model, the port's
/// and the endpoint's nodes, and what became of the port and the endpoint.
fn one_root_port(port: Function) -> (Owned, usize, usize, BridgeState, FunctionState) {
    let mut fab = Fabric::default();
    let rp = fab.add(Parent::Root, 1, 0, port);
    let nic = fab.add(Parent::Bridge(rp), 0, 0, endpoint());
    let bridges = [rp_cfg(0x0008, 1, 1, true)];
    let functions = [function(0, 0x0100, 0x1000_0000, 0x20_0000)];
    let topo = Topology { bridges: &bridges, functions: &functions };
    let mut o = Owned::new(fab, TOPO);
    let (mut b, mut f) = ([BridgeState::default()], [FunctionState::default()]);
    pci::configure(&mut o, topo, &mut b, &mut f, |_| {}).unwrap();
    (o, rp, nic, b[0], f[0])
}

#[test]
fn an_acs_control_that_does_not_take_leaves_the_port_closed() {
    let mut port = bridge(Some(4), Some(0x1f));
    port.mask(ACS_AT + 6, 2, 0); // claims the bits, takes none
    let (o, rp, _, b, f) = one_root_port(port);
    assert_eq!(b, BridgeState::NoAcs(Some(0)));
    assert_eq!(f, FunctionState::NotReached);
    assert_eq!(o.fabric.nodes[rp].f.buses(), (0, 0, 0));
    assert_eq!(o.fabric.route(0x0100), None);
}

#[test]
fn bus_numbers_the_bridge_does_not_take_leave_it_closed() {
    let mut port = bridge(Some(4), Some(0x1f));
    port.mask(0x18, 4, 0xff00_00ff); // secondary and subordinate read-only
    let (o, rp, _, b, f) = one_root_port(port);
    assert_eq!(b, BridgeState::NotTaken { offset: 0x18, read: 0 });
    assert_eq!(f, FunctionState::NotReached);
    assert_eq!(o.fabric.nodes[rp].f.window(), None);
    assert_eq!(u32::from(o.fabric.nodes[rp].f.command()) & (MEM | MASTER), 0);
}

#[test]
fn a_memory_window_the_bridge_does_not_take_leaves_it_closed() {
    let mut port = bridge(Some(4), Some(0x1f));
    port.mask(0x20, 4, 0); // no memory window at all
    let (o, rp, nic, b, _) = one_root_port(port);
    assert_eq!(b, BridgeState::NotTaken { offset: 0x20, read: 0 });
    assert_eq!(o.fabric.nodes[rp].f.buses(), (0, 0, 0));
    assert!(!o.fabric.dma_reaches_root(nic));
}

fn rp_cfg(rid: u16, secondary: u8, subordinate: u8, acs: bool) -> BridgeConfig {
    rp(rid, BridgeKind::RootPort, secondary, subordinate, acs)
}

#[test]
fn bus_numbers_that_cannot_be_right_leave_the_bridge_closed() {
    let mut fab = Fabric::default();
    let a = fab.add(Parent::Root, 1, 0, bridge(Some(4), Some(0x1f)));
    let b = fab.add(Parent::Root, 2, 0, bridge(Some(4), Some(0x1f)));
    let c = fab.add(Parent::Root, 3, 0, bridge(Some(4), Some(0x1f)));
    let up = fab.add(Parent::Bridge(a), 0, 0, bridge(Some(5), None));
    let bridges = [
        rp_cfg(0x0008, 1, 2, true),
        // Overlaps the first root port's buses.
        rp_cfg(0x0010, 2, 3, true),
        // Secondary not above its own bus.
        rp_cfg(0x0018, 0, 0, true),
        // Below the first root port, reaching past its subordinate bus.
        rp(0x0100, BridgeKind::SwitchUpstream, 2, 4, false),
    ];
    let topo = Topology { bridges: &bridges, functions: &[] };
    let mut o = Owned::new(fab, TOPO);
    let mut states = [BridgeState::default(); 4];
    pci::configure(&mut o, topo, &mut states, &mut [], |_| {}).unwrap();
    assert!(matches!(states[0], BridgeState::Open { window: None, master: false, .. }));
    assert_eq!(states[1..], [BridgeState::BadNumbers; 3]);
    for node in [b, c, up] {
        assert_eq!(o.fabric.nodes[node].f.buses(), (0, 0, 0), "node {node}");
    }
    // Nothing below it: no window, and it forwards nothing upstream.
    assert_eq!(u32::from(o.fabric.nodes[a].f.command()) & (MEM | MASTER), 0);
}

#[test]
fn too_little_room_for_the_results_is_an_error_not_a_panic() {
    let (mut fabric, _) = machine();
    let mut b = [BridgeState::default(); 6];
    let mut f = [FunctionState::default(); 7];
    let writes = fabric.writes;
    let mut o = Owned::new(std::mem::take(&mut fabric), TOPO);
    assert_eq!(pci::configure(&mut o, TOPO, &mut b, &mut f, |_| {}), Err(pci::TooSmall));
    assert_eq!(o.fabric.writes, writes);
}

#[test]
fn a_bridge_window_is_the_mib_hull_of_the_windows_below_it() {
    let port = rp_cfg(0x0008, 2, 4, false);
    let fs = [
        function(0, 0x0200, 0x1012_3000, 0x1000),    // bus 2
        function(1, 0x0400, 0x1030_0000, 0x8_0000),  // bus 4
        function(2, 0x0500, 0x0800_0000, 0x10_0000), // bus 5: not below
        function(3, 0x0300, 0, 0),                   // no window
    ];
    assert_eq!(bridge_window(&port, &fs), Ok(window(0x1010_0000, 0x103f_ffff)));
    assert_eq!(bridge_window(&port, &fs[2..]), Ok(None));
    // 32 bits only: a window ending at 4 GiB fits, one past it does not.
    assert_eq!(
        bridge_window(&port, &[function(0, 0x0200, 0xfff0_0000, 0x10_0000)]),
        Ok(window(0xfff0_0000, 0xffff_ffff))
    );
    let high = [function(0, 0x0300, 0x1_0000_0000, 0x1000)];
    assert_eq!(bridge_window(&port, &high), Err(WindowError::Beyond32Bits { function: 0 }));
    let wraps = [function(0, 0x0300, u64::MAX, 2)];
    assert_eq!(bridge_window(&port, &wraps), Err(WindowError::Beyond32Bits { function: 0 }));
}

/// A function whose BARs the owner could not place (its window too small, or none
/// described) keeps the BARs firmware left, here over another function's window: its
/// driver's CONFIG_WRITE of Command gets Bus Master, never Memory or I/O Space, so it
/// never decodes there; the other function, placed, decodes its window alone. And an
/// expansion ROM firmware left enabled outside its function's window is turned off at
/// placement. (With
/// Memory Space taken as written, or the ROM left on, two functions claim one address
/// and the model fails the test.)
#[test]
fn a_function_whose_bars_were_not_placed_never_decodes() {
    let mut fab = Fabric::default();
    // Placed in 0x1000_0000 + 2 MiB; firmware left its ROM (64 KiB) on at 0x1030_0000,
    // outside it.
    let mut a = endpoint();
    a.mask(pci::reg::ROM, 4, 0xffff_0001);
    a.set(pci::reg::ROM, 4, 0x1030_0001);
    let a = fab.add(Parent::Root, 2, 0, a);
    // Its BARs need 0x10_4000 bytes and its window is 1 MiB; firmware left BAR0 at
    // 0x1000_0000, a's window.
    let mut b = endpoint();
    b.set(0x10, 4, 0x1000_0000);
    let b = fab.add(Parent::Root, 3, 0, b);
    // No window described at all; firmware left its BAR0 at 0x1010_0000.
    let mut c = endpoint();
    c.set(0x10, 4, 0x1010_0000);
    let c = fab.add(Parent::Root, 4, 0, c);
    let functions = [
        function(0, 0x0010, 0x1000_0000, 0x20_0000),
        function(1, 0x0018, 0x1020_0000, 0x10_0000),
        function(2, 0x0020, 0, 0),
    ];
    let (mut o, states) = boot_on_root_bus(fab, functions);
    assert_eq!(
        states,
        [
            FunctionState::Placed(0x10_4000),
            FunctionState::BarsNotPlaced(BarError::TooBig(0x10_4000)),
            FunctionState::BarsNotPlaced(BarError::TooBig(0x10_4000)),
        ]
    );
    assert_eq!(o.fabric.nodes[a].f.get(pci::reg::ROM, 4) & 1, 0, "the ROM is still enabled");
    let mut s =
        service_of(Box::leak(Box::new([device("a", 0x10, NET), device("b", 0x18, BLK), device("c", 0x20, EVIL)])));
    // b's and c's drivers: Memory and I/O Space masked, in every width that holds Command.
    for (client, k, node) in [(BLK, 1, b), (EVIL, 2, c)] {
        let on = MEM | MASTER | 1;
        assert_eq!(write(&mut s, &mut o, client, k, 0x04, 2, on), Reply::ok(&[u64::from(MASTER)]), "function {k}");
        assert_eq!(write(&mut s, &mut o, client, k, 0x04, 1, on), Reply::ok(&[u64::from(MASTER)]), "function {k}");
        assert_eq!(write(&mut s, &mut o, client, k, 0x04, 4, on), Reply::ok(&[u64::from(MASTER)]), "function {k}");
        assert_eq!(u32::from(o.fabric.nodes[node].f.command()), MASTER, "function {k}");
        // Its DMA is its own (the SMMU confines it); its registers answer nowhere.
        assert!(o.fabric.dma_reaches_root(node));
    }
    // a decodes its window from boot, alone: c's BAR0, left there by firmware, does not
    // (the model fails a test where two functions decode one address).
    assert_eq!(o.fabric.memory(0x1010_0000), Some(a));
    assert_eq!(write(&mut s, &mut o, NET, 0, 0x04, 2, MEM | MASTER), Reply::ok(&[u64::from(MEM | MASTER)]));
    assert_eq!(o.fabric.memory(0x1000_0000), Some(a));
    assert_eq!(o.fabric.memory(0x1010_0000), Some(a));
    assert_eq!(o.fabric.memory(0x1030_0000), None, "its ROM decodes where firmware left it");
    // Turning b's decoding off stays allowed, and so does everything else it may write.
    assert_eq!(write(&mut s, &mut o, BLK, 1, 0x04, 2, 0), Reply::ok(&[0]));
}

/// A bridge whose VGA Enable does not clear (hard-wired on) would forward the legacy VGA
/// range downstream, whatever its windows say: it is left closed, and what is below it
/// missing. So is one whose secondary bus reset stays held.
#[test]
fn a_bridge_control_that_does_not_clear_leaves_the_bridge_closed() {
    for (stuck, read) in [(1u32 << 3, 0x000a), (1 << 6, 0x0042)] {
        let mut port = bridge(Some(4), Some(0x1f));
        port.set(0x3e, 2, stuck);
        port.mask(0x3e, 2, 0x0fff & !stuck);
        let (o, rp, nic, b, f) = one_root_port(port);
        assert_eq!(b, BridgeState::NotTaken { offset: 0x3e, read }, "{stuck:#x}");
        assert_eq!(f, FunctionState::NotReached);
        assert_eq!(o.fabric.nodes[rp].f.buses(), (0, 0, 0));
        assert_eq!(u32::from(o.fabric.nodes[rp].f.command()) & (MEM | MASTER | 1), 0);
        assert!(!o.fabric.dma_reaches_root(nic));
    }
}

/// A root port declared with ACS whose ACS capability header is the last dword of its
/// space (0xffc): its capability and control registers would be past the 4 KiB, where
/// the IOMMU PD's ECAM answers nothing. That is no ACS: the port is left closed, not
/// opened as one that implements no ACS bit (which the owner takes as all hard-wired).
/// And a list that runs backwards (0x100, then 0x180, then ACS at 0x140) is followed:
/// the spec does not order extended capabilities.
#[test]
fn an_acs_capability_past_the_end_of_the_space_is_none_and_a_list_may_run_backwards() {
    let mut port = bridge(Some(4), None);
    port.set(0x100, 4, 0x0001_0001 | 0xffc << 20); // AER, next at 0xffc
    port.set(0xffc, 4, 0x0001_000d); // ACS, its registers past the end
    let (o, rp, _, b, f) = one_root_port(port);
    assert_eq!(b, BridgeState::NoAcs(None));
    assert_eq!(f, FunctionState::NotReached);
    assert_eq!(o.fabric.nodes[rp].f.buses(), (0, 0, 0));

    let mut port = bridge(Some(4), None);
    port.set(0x100, 4, 0x0001_0001 | 0x180 << 20); // AER, next at 0x180
    port.set(0x180, 4, 0x0001_000b | 0x140 << 20); // vendor-specific, next at 0x140
    port.set(0x140, 4, 0x0001_000d); // ACS
    port.set(0x144, 2, 0x1f);
    port.mask(0x146, 2, 0x1f);
    let (o, rp, _, b, _) = one_root_port(port);
    assert!(matches!(b, BridgeState::Open { acs: 0x1d, .. }), "{b:?}");
    assert_eq!(o.fabric.nodes[rp].f.get(0x146, 2), 0x1d);
}

/// A root port whose MSI firmware left enabled (a hot-plug or error interrupt aimed at
/// an address of firmware's choosing): the owner turns the port's Bus Master on, so the
/// port could write it; the module says the port makes no request of its own, and so
/// the owner turns the port's MSI and MSI-X off, open or closed.
#[test]
fn a_bridges_own_msi_left_on_by_firmware_is_turned_off() {
    let mut port = bridge(Some(4), Some(0x1f));
    // PCI Express at 0x40 (next 0x60), MSI at 0x60 (next 0x70), MSI-X at 0x70.
    port.set(0x40, 1, 0x10);
    port.set(0x41, 1, 0x60);
    port.set(0x60, 4, 0x0081_7005); // MSI, 64-bit, enabled
    port.mask(0x62, 2, 0x0071);
    port.set(0x64, 4, 0x4000_0000);
    port.set(0x70, 4, 0x8000_0011); // MSI-X, enabled
    port.mask(0x72, 2, 0xc000);
    let (o, rp, _, b, _) = one_root_port(port.clone());
    assert!(matches!(b, BridgeState::Open { master: true, .. }), "{b:?}");
    assert_eq!(o.fabric.nodes[rp].f.get(0x62, 2) & 1, 0, "the open port's MSI is still on");
    assert_eq!(o.fabric.nodes[rp].f.get(0x72, 2) & 0x8000, 0, "the open port's MSI-X is still on");
    // Closed (its ACS control takes nothing): off too.
    port.mask(ACS_AT + 6, 2, 0);
    let (o, rp, _, b, _) = one_root_port(port);
    assert_eq!(b, BridgeState::NoAcs(Some(0)));
    assert_eq!(o.fabric.nodes[rp].f.get(0x62, 2) & 1, 0);
    assert_eq!(o.fabric.nodes[rp].f.get(0x72, 2) & 0x8000, 0);
}

/// Attack: firmware left MSI or MSI-X enabled in a function that keeps the enable set when
/// the owner clears it (or sets it again itself). Its message is firmware's, an address
/// and data no driver chose, sent as soon as the function masters: the endpoint's driver
/// may turn its Memory Space on but never its Bus Master, a root port is left closed (an
/// open one gets Bus Master on), and the walk names both. A function beside it whose
/// enables clear is its driver's as before.
#[test]
fn a_function_whose_msi_stays_enabled_never_masters() {
    // MSI-X's stuck enable reads with the Function Mask the walk sets as it turns it off.
    for (what, control, read) in [("MSI", 0x42u16, 0x0081u16), ("MSI-X", 0x52, 0xc000)] {
        let mut fab = Fabric::default();
        let mut nodes = vec![];
        for dev in [2, 3] {
            let mut f = msi_endpoint(0x0081, 0x50, 0x0071); // MSI, 64-bit, enabled
            f.set(0x44, 4, 0x4000_0000); // firmware's address
            f.set(0x50, 4, 0x8000_0011); // MSI-X, enabled
            f.mask(0x52, 2, 0xc000);
            if dev == 2 {
                // Its enable does not clear.
                let writable = if control == 0x42 { 0x0070 } else { 0x4000 };
                f.mask(control, 2, writable);
            }
            nodes.push(fab.add(Parent::Root, dev, 0, f));
        }
        let functions = [function(0, 0x0010, 0x1000_0000, 0x20_0000), function(1, 0x0018, 0x1020_0000, 0x20_0000)];
        let topo = Topology { bridges: &[], functions: Box::leak(Box::new(functions)) };
        let mut o = Owned::new(fab, topo);
        let mut states = [FunctionState::default(); 2];
        let mut met = vec![];
        pci::configure(&mut o, topo, &mut [], &mut states, |m| met.push(m)).unwrap();
        o.booted(&states);
        assert_eq!(
            states,
            [FunctionState::MessagesStuck { bars: Ok(0x10_4000), control, read }, FunctionState::Placed(0x10_4000)],
            "{what}"
        );
        assert!(met.contains(&Met::MessagesOn(0x0010, control, read)), "{what}: not named");
        assert!(!met.iter().any(|m| matches!(m, Met::MessagesOn(0x0018, ..))), "{what}");
        let mut s = service_of(Box::leak(Box::new([device("a", 0x10, NET), device("b", 0x18, BLK)])));
        // Its driver: Bus Master masked in every width that holds Command; Memory Space its.
        for width in [1, 2, 4] {
            let reply = write(&mut s, &mut o, NET, 0, 0x04, width, MEM | MASTER);
            let status = if width == 4 { 1 << 20 } else { 0 }; // its capability list bit
            assert_eq!(reply, Reply::ok(&[u64::from(MEM) | status]), "{what}, width {width}");
        }
        assert!(!o.fabric.dma_reaches_root(nodes[0]), "{what}: it masters, firmware's message with it");
        assert_eq!(o.fabric.memory(0x1000_0000), Some(nodes[0]), "{what}");
        // The other's driver turns both on.
        assert_eq!(write(&mut s, &mut o, BLK, 1, 0x04, 2, MEM | MASTER), Reply::ok(&[u64::from(MEM | MASTER)]));
        assert!(o.fabric.dma_reaches_root(nodes[1]), "{what}");
    }
    // A root port whose MSI stays enabled: closed, its Bus Master off, and what is below
    // it unreached.
    let mut port = bridge(Some(4), Some(0x1f));
    port.set(0x40, 1, 0x10);
    port.set(0x41, 1, 0x60);
    port.set(0x60, 4, 0x0081_0005); // MSI, 64-bit, enabled
    port.mask(0x62, 2, 0x0070);
    let (o, rp, nic, b, f) = one_root_port(port);
    assert_eq!(b, BridgeState::NotTaken { offset: 0x62, read: 0x0081 });
    assert_eq!(f, FunctionState::NotReached);
    assert_eq!(u32::from(o.fabric.nodes[rp].f.command()) & (MEM | MASTER), 0);
    assert!(!o.fabric.dma_reaches_root(nic));
}

/// An ARI device below a root port (PCIe Base 4.0, 6.13): its function numbers use the
/// device number's bits too, so its functions 0, 9 and 48 answer at 01:00.0, 01:01.1 and
/// 01:06.0 once firmware turned ARI Forwarding on in the port; 01:01.0 (function 8) is a
/// gap, and function 0 does not say multi-function (under ARI nothing need). A walk by
/// slot left slot 1 at its absent function 0 and slot 0 after its single function 0, so
/// functions 9 and 48 kept the Bus Master, decoding and MSI firmware left on, DMA that
/// reached memory through the port the owner opened. Now every function on the bus is
/// stopped, and named.
#[test]
fn an_ari_devices_functions_past_a_gap_are_stopped() {
    let mut fab = Fabric::default();
    let rp = fab.add(Parent::Root, 1, 0, bridge(Some(4), Some(0x1f)));
    let mut f0 = endpoint();
    f0.set(0x100, 4, 0x0001_000e); // ARI, the last extended capability
    f0.set(0x104, 4, 9 << 8); // next function: 9
    fab.add(Parent::Bridge(rp), 0, 0, f0);
    let mut others = vec![];
    for (dev, func, next) in [(1, 1, 48u32), (6, 0, 0)] {
        let mut f = endpoint();
        f.set(0x100, 4, 0x0001_000e);
        f.set(0x104, 4, next << 8);
        f.set(0x06, 2, 1 << 4);
        f.set(0x34, 1, 0x40);
        f.set(0x40, 4, 0x0001_0005); // MSI, enabled by firmware
        f.mask(0x42, 2, 0x0071);
        f.set(0x04, 2, MEM | MASTER);
        others.push(fab.add(Parent::Bridge(rp), dev, func, f));
    }
    let bridges = [rp_cfg(0x0008, 1, 1, true)];
    let functions = [function(0, 0x0100, 0x1000_0000, 0x20_0000)];
    let topo = Topology { bridges: Box::leak(Box::new(bridges)), functions: Box::leak(Box::new(functions)) };
    let mut o = Owned::new(fab, topo);
    let (mut b, mut f, mut met) = ([BridgeState::default()], [FunctionState::default()], vec![]);
    pci::configure(&mut o, topo, &mut b, &mut f, |m| met.push(m)).unwrap();
    assert!(matches!(b[0], BridgeState::Open { master: true, .. }));
    assert_eq!(f[0], FunctionState::Placed(0x10_4000));
    for (n, rid) in others.iter().zip([0x0109u16, 0x0130]) {
        let g = &o.fabric.nodes[*n].f;
        assert_eq!(u32::from(g.command()) & (MEM | MASTER), 0, "{rid:#06x}: still mastering or decoding");
        assert_eq!(g.get(0x42, 2) & 1, 0, "{rid:#06x}: MSI still enabled");
        assert!(!o.fabric.dma_reaches_root(*n), "{rid:#06x}");
        assert!(met.iter().any(|m| matches!(m, Met::Function(r, ..) if *r == rid)), "{rid:#06x}: not named");
    }
}

/// The root port a description names as the hostile driver's device, changing its header
/// type to an endpoint's after boot (a switch's firmware can: nothing in hardware keeps
/// it still). Asked at the write alone, the header let its "driver" write Command (its
/// forwarding off, cutting the nic below it) and size "BARs" that are its bus numbers
/// and window (all ones written there for the probe); what boot recorded, a bridge, is
/// what the filter asks now: every write refused, nothing written.
#[test]
fn a_bridge_that_says_it_is_an_endpoint_after_boot_is_still_refused() {
    let (mut o, n, ..) = configured();
    let mut s = service();
    o.fabric.nodes[n.rp1].f.set(0x0e, 1, 0);
    let before: Vec<Vec<u8>> = o.fabric.nodes.iter().map(|n| n.f.bytes.clone()).collect();
    let writes = o.fabric.writes;
    for (offset, width, value) in [(0x04, 2, 0), (0x18, 4, u32::MAX), (0x20, 4, u32::MAX), (0x44, 4, 0)] {
        assert_eq!(
            write(&mut s, &mut o, EVIL, PORT_AS_DEVICE as u32, offset, width, value),
            Reply::Err(ErrorCode::ConfigDenied),
            "{offset:#x}"
        );
    }
    let after: Vec<Vec<u8>> = o.fabric.nodes.iter().map(|n| n.f.bytes.clone()).collect();
    assert!(before == after, "a refused write changed a register");
    assert_eq!(o.fabric.writes, writes, "a refused write reached ECAM");
}

/// A driver PD maps its function's placed BARs for as long as it runs, and on Arm hardware a
/// load from a BAR that does not decode can end in an SError that takes the kernel down
/// (QEMU answers all ones). Its driver's Command writes of Memory Space 0, in every width
/// that holds Command, leave the function decoding its window (the reply says so), while
/// Bus Master and INTx disable stay the driver's. Before, the write turned decoding off
/// under the driver's maps.
#[test]
fn a_drivers_memory_space_off_leaves_its_placed_bars_decoding() {
    for_each_driven(|s, o, client, k, base, node| {
        for width in [1, 2, 4] {
            turn_on(s, o, client, k);
            let reply = write(s, o, client, k as u32, 0x04, width, INTX_OFF & u32::MAX >> (32 - 8 * width));
            let status = if width == 4 { u64::from(o.fabric.nodes[node].f.get(0x06, 2)) << 16 } else { 0 };
            let intx = if width == 1 { 0 } else { u64::from(INTX_OFF) };
            assert_eq!(reply, Reply::ok(&[u64::from(MEM) | intx | status]), "function {k}, width {width}");
            assert_eq!(o.fabric.memory(base), Some(node), "function {k}, width {width}: its BARs stopped decoding");
            assert_eq!(o.fabric.memory(base + 0x10_0000), Some(node), "function {k}, width {width}");
            assert!(!o.fabric.dma_reaches_root(node), "function {k}, width {width}: still mastering");
        }
    });
}

/// STOP (and its client's teardown) stops a function's DMA, its messages and its INTx, and
/// leaves it decoding where the owner placed its BARs: the stopped driver (a VMM) still maps
/// them, and a load from a BAR that does not decode can end in an SError on Arm hardware.
/// Before, the stop turned Memory Space off under those maps, and left INTx enabled
/// (clearing Interrupt Disable), so a stopped function could hold a line shared with
/// another driver's function asserted.
#[test]
fn a_stopped_function_keeps_decoding_where_placed_and_masters_nothing() {
    use iommu_protocol::stop;
    for teardown in [false, true] {
        let (mut o, n, ..) = configured();
        let mut s = service();
        let node = n.functions[DISK].unwrap();
        let base = 0x1020_0000;
        turn_on(&mut s, &mut o, BLK, DISK);
        assert!(o.fabric.dma_reaches_root(node));
        let said = if teardown {
            let mut said = 0;
            s.client_torn_down_with(BLK, &mut o, |d, done| said |= if d == DISK { done.0 } else { 0 }).unwrap();
            said
        } else {
            let Reply::Ok { values, .. } = send(&mut s, &mut o, BLK, Request::Stop { device: DeviceId(DISK as u32) })
            else {
                panic!("STOP refused")
            };
            values[0]
        };
        assert_eq!(said, stop::FUNCTION_OFF | stop::RESTORED, "teardown {teardown}");
        assert!(!o.fabric.dma_reaches_root(node), "teardown {teardown}: it still masters");
        let command = u32::from(o.fabric.nodes[node].f.command());
        assert_eq!(command & (MEM | MASTER | INTX_OFF), MEM | INTX_OFF, "teardown {teardown}: {command:#x}");
        assert_eq!(o.fabric.memory(base), Some(node), "teardown {teardown}: its BARs stopped decoding");
        assert_eq!(o.fabric.memory(base + 0x10_0000), Some(node), "teardown {teardown}");
    }
}

/// A function whose MSI Enable stuck at boot (it would send firmware's message) never
/// masters, until a stop reads the enable off: here its FLR clears it, and its driver may
/// then turn Bus Master on. One without a reset, whose enable stays set through its stop,
/// still may not. Before, what boot found decided for good: the function could never
/// master again.
#[test]
fn a_function_whose_msi_stuck_at_boot_masters_once_a_stop_reads_it_off() {
    use iommu_protocol::stop;
    let mut fab = Fabric::default();
    let mut nodes = vec![];
    for dev in [2, 3] {
        // MSI, 64-bit, off at power-on; its enable does not clear (nor set) by a write.
        let mut f = msi_endpoint(0x0080, 0x60, 0x0070);
        f.set(0x60, 4, 0x0002_0010); // PCI Express, endpoint
        if dev == 2 {
            f.set(0x64, 4, 1 << 28); // FLR
        }
        f.mask(0x68, 2, 0x7fff);
        let node = fab.add(Parent::Root, dev, 0, f);
        if dev == 2 {
            fab.with_flr(node, 0x68, 0); // power-on state: MSI off
        }
        // Firmware left it enabled.
        fab.nodes[node].f.set(0x42, 2, 0x0081);
        nodes.push(node);
    }
    let functions = [function(0, 0x0010, 0x1000_0000, 0x20_0000), function(1, 0x0018, 0x1020_0000, 0x20_0000)];
    let (mut o, states) = boot_on_root_bus(fab, functions);
    let stuck = FunctionState::MessagesStuck { bars: Ok(0x10_4000), control: 0x42, read: 0x0081 };
    assert_eq!(states, [stuck; 2]);
    let mut s = service_of(Box::leak(Box::new([device("a", 0x10, NET), device("b", 0x18, BLK)])));
    for (client, k) in [(NET, 0u32), (BLK, 1)] {
        assert_eq!(write(&mut s, &mut o, client, k, 0x04, 2, MEM | MASTER), Reply::ok(&[u64::from(MEM)]), "{k}");
        let Reply::Ok { values, .. } = send(&mut s, &mut o, client, Request::Stop { device: DeviceId(k) }) else {
            panic!("STOP of {k} refused")
        };
        let off = values[0] & stop::FUNCTION_OFF != 0;
        assert_eq!(send(&mut s, &mut o, client, Request::Resume { device: DeviceId(k) }), Reply::ok(&[]));
        let reply = write(&mut s, &mut o, client, k, 0x04, 2, MEM | MASTER);
        if k == 0 {
            // Reset by FLR: its enable reads off now.
            assert_ne!(values[0] & stop::FLR, 0, "{:#x}", values[0]);
            assert!(off);
            assert_eq!(o.fabric.nodes[nodes[0]].f.get(0x42, 2) & 1, 0);
            assert_eq!(reply, Reply::ok(&[u64::from(MEM | MASTER)]));
            assert!(o.fabric.dma_reaches_root(nodes[0]), "its stop read it off, and it still may not master");
        } else {
            // No reset: its enable still set; it still may not.
            assert!(!off);
            assert_eq!(reply, Reply::ok(&[u64::from(MEM)]));
            assert!(!o.fabric.dma_reaches_root(nodes[1]));
        }
    }
}

/// A function whose BAR does not take the address the owner writes (an address bit
/// hard-wired to 1, which sizing cannot tell from a smaller BAR: all ones read back all
/// ones there) is not placed: at boot the owner reads its BARs back before it turns Memory
/// Space on, as it does when it places them again after a reset (`place_again`). Before,
/// boot took the write on trust: the function decoded at 0x1030_0000, outside the window
/// it was given (over the next function's, on a bus with no bridge window to stop it), and
/// the console said "BARs placed".
#[test]
fn a_function_whose_bars_do_not_take_their_placement_never_decodes() {
    let mut fab = Fabric::default();
    let a = fab.add(Parent::Root, 2, 0, endpoint());
    // One 1 MiB BAR (as sizing sees it), bit 20 of its address hard-wired to 1.
    let mut b = Function::new(0x11e8_1234, 0);
    b.set(0x3d, 1, 1);
    b.set(0x10, 4, 0x0010_0000);
    b.mask(0x10, 4, 0xffe0_0000);
    let b = fab.add(Parent::Root, 3, 0, b);
    let functions = [function(0, 0x0010, 0x1000_0000, 0x20_0000), function(1, 0x0018, 0x1020_0000, 0x10_0000)];
    let (mut o, states) = boot_on_root_bus(fab, functions);
    assert_eq!(states, [FunctionState::Placed(0x10_4000), FunctionState::BarsNotPlaced(BarError::NotTaken)]);
    assert_eq!(u32::from(o.fabric.nodes[b].f.command()) & MEM, 0, "it decodes where it was not placed");
    let mut s = service_of(Box::leak(Box::new([device("a", 0x10, NET), device("b", 0x18, BLK)])));
    // Its driver gets Bus Master, never Memory Space, in every width that holds Command.
    for width in [1, 2, 4] {
        let reply = write(&mut s, &mut o, BLK, 1, 0x04, width, MEM | MASTER);
        assert_eq!(reply, Reply::ok(&[u64::from(MASTER)]), "width {width}");
    }
    // Nothing answers at the address its BAR reads, outside its window; a decodes its own.
    assert_eq!(o.fabric.nodes[b].f.bars(), [(0x1030_0000, 0x20_0000)]);
    assert_eq!(o.fabric.memory(0x1030_0000), None);
    assert_eq!(o.fabric.memory(0x1000_0000), Some(a));
}
