//! The PCI topology a description declares (`<pci_bridge>`s, and devices named by
//! bus:device.function): the bridges above each function, the requester ID the SMMU sees
//! for it (its DMA alias), its StreamID through the board's `iommu-map`, the functions
//! that cannot be told apart (groups), and each bridge's memory window. One definition,
//! which `check`'s rules, the policy and the report all use.

use std::collections::{HashMap, HashSet};

use iommu_pd::{BridgeConfig, BridgeKind, PciFunctionConfig};

use crate::board::{Board, PciHost};
use crate::model::*;

/// At most one bridge a secondary bus, and bus 0 is no bridge's: 255 bridges. `check`
/// refuses more, and what is computed per bridge (windows) is not computed past it.
pub const MAX_BRIDGES: usize = 255;

/// The bus of requester ID `rid`.
pub fn bus(rid: u16) -> u8 {
    (rid >> 8) as u8
}

/// The bridges of a description, indexed by the bus right below each.
#[derive(Debug)]
pub struct Topology<'a> {
    bridges: &'a [PciBridge],
    /// Bus to the (first) bridge whose secondary bus it is.
    above: HashMap<u8, usize>,
}

impl<'a> Topology<'a> {
    pub fn of(bridges: &'a [PciBridge]) -> Topology<'a> {
        let mut above = HashMap::new();
        for (i, b) in bridges.iter().enumerate() {
            above.entry(b.secondary).or_insert(i);
        }
        Topology { bridges, above }
    }

    /// The bridge whose secondary bus `bus` is: the one right above the functions on it.
    pub fn parent(&self, bus: u8) -> Option<&'a PciBridge> {
        self.above.get(&bus).map(|&i| &self.bridges[i])
    }

    /// The bridges above bus `bus`, the nearest first, up to the root bus. Each bus is
    /// visited once, so a loop of bridges (which `check` refuses) ends the walk.
    pub fn path(&self, bus: u8) -> Vec<&'a PciBridge> {
        let mut out = Vec::new();
        let mut seen = [false; 256];
        let mut at = bus;
        while at != 0 && !seen[at as usize] {
            seen[at as usize] = true;
            let Some(b) = self.parent(at) else { break };
            out.push(b);
            at = b.bus();
        }
        out
    }

    /// The requester ID the SMMU sees for function `rid`: below a PCI Express to PCI bridge,
    /// (its secondary bus, 0.0) (PCI Express to PCI/PCI-X Bridge Specification 1.0, 2.3);
    /// below a conventional PCI-to-PCI bridge, the bridge's own requester ID; the bridge
    /// nearest the root wins, as Linux's `pci_for_each_dma_alias` (drivers/pci/search.c)
    /// and QEMU's `pci_device_iommu_address_space` (hw/pci/pci.c) have it.
    pub fn alias(&self, rid: u16) -> u16 {
        let mut alias = rid;
        // Nearest first: the last one taken is the one nearest the root.
        for b in self.path(bus(rid)) {
            match b.kind {
                BridgeKind::PcieToPci => alias = u16::from(b.secondary) << 8,
                BridgeKind::PciToPci => alias = b.rid,
                _ => {}
            }
        }
        alias
    }

    /// The StreamID of function `rid`: its alias through the host bridge's `iommu-map`;
    /// `None` on a board whose host bridge this tool does not know, or whose map does not
    /// hold the alias.
    pub fn stream_of(&self, host: Option<&PciHost>, rid: u16) -> Option<u32> {
        host?.stream_of(self.alias(rid))
    }

    /// The root-bus slot and pin (0 INTA# .. 3 INTD#) that INTx pin `pin` of function
    /// `rid` comes out at: each bridge on the way up turns pin `p` of device `d` on its
    /// secondary bus into pin `(p + d) % 4` of its own (PCI-to-PCI Bridge Architecture 1.2,
    /// 9.1; QEMU's `pci_swizzle_map_irq_fn`, which its root ports, switch ports and
    /// PCIe-to-PCI bridges use). `None` if a bus on the way has no declared bridge above it.
    pub fn root_intx(&self, rid: u16, pin: u8) -> Option<(u8, u8)> {
        let (mut at, mut slot, mut pin) = (bus(rid), (rid >> 3) as u8 & 0x1f, pin & 3);
        let mut seen = [false; 256];
        while at != 0 {
            if std::mem::replace(&mut seen[at as usize], true) {
                return None;
            }
            let b = self.parent(at)?;
            pin = (pin + slot) % 4;
            slot = (b.rid >> 3) as u8 & 0x1f;
            at = b.bus();
        }
        Some((slot, pin))
    }

    /// The outermost bridge above `bus` that lets the functions below it reach each other
    /// without the SMMU seeing it: a root port or a switch's downstream port without Access
    /// Control Services (their request redirect sends peer requests upstream, to the SMMU).
    pub fn open_above(&self, bus: u8) -> Option<&'a PciBridge> {
        let open = |b: &&PciBridge| matches!(b.kind, BridgeKind::RootPort | BridgeKind::SwitchDownstream) && !b.acs;
        self.path(bus).into_iter().rfind(open)
    }
}

/// Every PCI function's StreamID (and its other StreamIDs written as PCI addresses) derived
/// from its requester ID, on `board`: `check` runs it once after reading, so the rules, the
/// policy and the report see the StreamID the SMMU will. A function whose StreamID cannot
/// be derived keeps its requester ID, and `check` refuses it.
pub fn derive_streams(sys: &mut System, board: &Board) {
    let host = board.pci.as_ref();
    let derived: Vec<(Option<u32>, Vec<Option<u32>>)> = {
        let t = Topology::of(&sys.bridges);
        sys.io_spaces
            .iter()
            .map(|s| {
                let extra = s.extra_rids.iter().map(|r| r.and_then(|r| t.stream_of(host, r))).collect();
                (s.rid.and_then(|r| t.stream_of(host, r)), extra)
            })
            .collect()
    };
    for (s, (stream, extra)) in sys.io_spaces.iter_mut().zip(derived) {
        if let Some(stream) = stream {
            s.stream = stream;
        }
        for (x, d) in s.extra_streams.iter_mut().zip(extra) {
            if let Some(d) = d {
                *x = d;
            }
        }
    }
}

/// Each PCI function's `intx` on `board`: the pins whose line (`Topology::root_intx`, then
/// the host bridge's `interrupt-map`) its owner's PD holds as an `<irq>`. The PCI owner
/// keeps Interrupt Disable set in a function whose pin is not one of them: its line is
/// another PD's or no PD's (QEMU virt has four for every slot), and an INTx asserted there
/// would storm the PD that holds it or hide that PD's own device's interrupts. `check`
/// runs it once after reading, as `derive_streams`.
pub fn derive_intx(sys: &mut System, board: &Board) {
    let Some(host) = board.pci.as_ref() else { return };
    let pins: Vec<u8> = {
        let t = Topology::of(&sys.bridges);
        sys.io_spaces
            .iter()
            .map(|s| {
                let (Some(rid), Some(owner)) = (s.rid, s.owner.as_deref().and_then(|o| sys.pd(o))) else { return 0 };
                let held = |line: u64| owner.irqs.iter().any(|i| i.irq == Some(line));
                let on_held = |p: &u8| t.root_intx(rid, *p).is_some_and(|(slot, pin)| held(host.intx_line(slot, pin)));
                (0..4u8).filter(on_held).fold(0, |m, p| m | 1 << p)
            })
            .collect()
    };
    for (s, p) in sys.io_spaces.iter_mut().zip(pins) {
        s.intx = p;
    }
}

/// Why a function joined a group: the function (io_address_space index) it cannot be
/// told apart from, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub with: usize,
    pub why: String,
}

/// The groups of PCI functions the SMMU cannot keep apart: functions with one StreamID
/// (an alias), functions below one root port or switch downstream port without ACS, and
/// the functions of one multi-function device (the description has no way to declare
/// its ACS, so it is taken to have none, as Linux does for a device without the
/// capability). Each group is its io_address_space indices in description order; each
/// member but the first says which earlier member it joined, and why.
pub fn groups(sys: &System) -> Vec<Vec<(usize, Option<Joined>)>> {
    let t = Topology::of(&sys.bridges);
    // Union-find over the functions, by the first function that held each key.
    let mut root: Vec<usize> = (0..sys.io_spaces.len()).collect();
    fn find(root: &mut [usize], mut i: usize) -> usize {
        while root[i] != i {
            root[i] = root[root[i]];
            i = root[i];
        }
        i
    }
    let mut joined: Vec<Option<Joined>> = vec![None; sys.io_spaces.len()];
    let mut first: HashMap<(u8, u32), usize> = HashMap::new();
    // The switches' internal buses on which some downstream port has no ACS: a request
    // entering that port is routed by the switch to any sibling port's window, so every
    // function below any downstream port of that switch can be reached without the SMMU.
    let leaky: HashSet<u8> =
        sys.bridges.iter().filter(|b| b.kind == BridgeKind::SwitchDownstream && !b.acs).map(|b| bus(b.rid)).collect();
    let keys_of = |rid: u16, keys: &mut Vec<((u8, u32), String)>| {
        if let Some(b) = t.open_above(bus(rid)) {
            let kind = bridge_kind_name(b.kind);
            keys.push((
                (1, u32::from(b.rid)),
                format!("both are below {kind} {}, which has no ACS (acs=\"false\"), so they reach each other without the SMMU", bdf(b.rid)),
            ));
        }
        for b in t
            .path(bus(rid))
            .into_iter()
            .filter(|b| b.kind == BridgeKind::SwitchDownstream && leaky.contains(&bus(b.rid)))
        {
            keys.push((
                (3, u32::from(bus(b.rid))),
                format!(
                    "both are below downstream ports of the switch whose internal bus is {:x}, one of which has no ACS (acs=\"false\"): the switch routes a request entering that port to its sibling ports without the SMMU",
                    bus(b.rid)
                ),
            ));
        }
        keys.push((
            (2, u32::from(rid >> 3)),
            format!(
                "both are functions of the multi-function device {:x}:{:x}, which may route between its functions without the SMMU",
                rid >> 8,
                (rid >> 3) & 0x1f
            ),
        ));
    };
    for (i, s) in sys.io_spaces.iter().enumerate() {
        let Some(rid) = s.rid else { continue };
        let mut keys: Vec<((u8, u32), String)> = Vec::new();
        for x in std::iter::once(s.stream).chain(s.extra_streams.iter().copied()) {
            keys.push(((0, x), format!("both are StreamID {x:#x}")));
        }
        // The device's own function and every other function it names in streams=: each
        // is as reachable as a function described on its own.
        keys_of(rid, &mut keys);
        for r in s.extra_rids.iter().flatten() {
            keys_of(*r, &mut keys);
        }
        keys.sort_by_key(|(k, _)| *k);
        keys.dedup_by_key(|(k, _)| *k);
        for (key, why) in keys {
            match first.get(&key) {
                None => {
                    first.insert(key, i);
                }
                Some(&j) => {
                    let (a, b) = (find(&mut root, j), find(&mut root, i));
                    if a != b {
                        root[b.max(a)] = a.min(b);
                        if joined[i].is_none() {
                            joined[i] = Some(Joined { with: j, why });
                        }
                    }
                }
            }
        }
    }
    let mut by_root: Vec<Vec<(usize, Option<Joined>)>> = Vec::new();
    let mut slot: HashMap<usize, usize> = HashMap::new();
    for (i, s) in sys.io_spaces.iter().enumerate() {
        if s.rid.is_none() {
            continue;
        }
        let r = find(&mut root, i);
        let at = *slot.entry(r).or_insert_with(|| {
            by_root.push(Vec::new());
            by_root.len() - 1
        });
        by_root[at].push((i, joined[i].take()));
    }
    by_root
}

/// The devices that are PCI functions, for the PCI owner: each one's requester ID and the
/// `bar=` region's physical address and size (0 and 0 for none).
pub fn functions(sys: &System) -> Vec<PciFunctionConfig> {
    let function = |(device, s): (usize, &IoSpace)| {
        let rid = s.rid?;
        let bar = s.bar.as_deref().and_then(|b| sys.region(b));
        let (bar_base, bar_size) = bar.and_then(|r| Some((r.phys_addr?, r.size))).unwrap_or((0, 0));
        Some(PciFunctionConfig { device, rid, bar_base, bar_size, intx: s.intx })
    };
    sys.io_spaces.iter().enumerate().filter_map(function).collect()
}

/// The description's bridges as the PCI owner takes them.
pub fn bridges(sys: &System) -> Vec<BridgeConfig> {
    let bridge = |b: &PciBridge| BridgeConfig {
        rid: b.rid,
        kind: b.kind,
        secondary: b.secondary,
        subordinate: b.subordinate,
        acs: b.acs,
    };
    sys.bridges.iter().map(bridge).collect()
}

/// One MiB: the granule of bridge memory windows (a bridge's Memory Base and Limit
/// registers hold address bits 31:20; PCI-to-PCI Bridge Architecture Specification 1.2,
/// 3.2.5.8).
pub const WINDOW_GRANULE: u64 = 0x10_0000;

/// The memory window the PCI owner opens in `bridge`, as (base, size): the 1 MiB-aligned
/// hull of the BAR windows of the functions below it, `None` when none below it has one.
/// The IOMMU PD's own definition (`iommu_pd::pci::bridge_window`), which programs it, so
/// the two cannot disagree. `Err` names the function (an index into `functions`) whose
/// BAR window ends above 4 GiB, which a bridge's memory window cannot hold.
pub fn bridge_window(bridge: &BridgeConfig, functions: &[PciFunctionConfig]) -> Result<Option<(u64, u64)>, usize> {
    match iommu_pd::pci::bridge_window(bridge, functions) {
        Ok(w) => Ok(w.map(|w| (w.base, w.limit - w.base + 1))),
        Err(iommu_pd::pci::WindowError::Beyond32Bits { function }) => Err(function),
    }
}
