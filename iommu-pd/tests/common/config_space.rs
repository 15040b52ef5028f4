//! A strict model of PCI configuration space, for the PCI owner's tests: functions whose
//! registers take only the bits hardware lets software write (write-one-to-clear bits
//! included), and a fabric of bridges that routes a configuration request by the bus
//! numbers programmed in them, as PCI-to-PCI Bridge Architecture 1.2 (3.1.2.1) and PCIe
//! Base 4.0 (7.3.3) say, not by where a test put a function. A request no bridge claims
//! finds nothing (reads all ones, writes go nowhere); two bridges claiming one bus fail
//! the test. Memory requests are routed the same way, by windows and Memory Space bits,
//! and a function's DMA goes upstream only through bridges whose Bus Master is on.

use iommu_pd::pci::{
    function_of, messages_stuck_of, placement_of, record_functions, recorded_of, reg, ConfigSpace, FunctionState,
    Placement, Recorded, Topology,
};
use iommu_protocol::ErrorCode;

/// One function: its bytes, which bits software may write, which are write-one-to-clear.
#[derive(Clone)]
pub struct Function {
    pub bytes: Vec<u8>,
    pub writable: Vec<u8>,
    pub w1c: Vec<u8>,
}

impl Function {
    pub fn new(vendor_device: u32, header: u8) -> Self {
        let mut f = Function { bytes: vec![0; 4096], writable: vec![0; 4096], w1c: vec![0; 4096] };
        f.set(0, 4, vendor_device);
        f.set(reg::HEADER_TYPE, 1, header as u32);
        // Command: I/O, Memory, Bus Master, Parity, SERR, INTx disable.
        f.mask(reg::COMMAND, 2, 0x0547);
        // Status: its error bits clear on a 1.
        f.w1c[6] = 0x00;
        f.w1c[7] = 0xf9;
        f
    }
    pub fn set(&mut self, off: u16, width: usize, v: u32) {
        self.bytes[off as usize..off as usize + width].copy_from_slice(&v.to_le_bytes()[..width]);
    }
    pub fn get(&self, off: u16, width: usize) -> u32 {
        let mut b = [0u8; 4];
        b[..width].copy_from_slice(&self.bytes[off as usize..off as usize + width]);
        u32::from_le_bytes(b)
    }
    pub fn mask(&mut self, off: u16, width: usize, m: u32) {
        self.writable[off as usize..off as usize + width].copy_from_slice(&m.to_le_bytes()[..width]);
    }
    /// A write as hardware takes it: writable bits change, write-one-to-clear bits clear.
    pub fn write(&mut self, offset: u16, width: u8, value: u32) {
        for (i, b) in value.to_le_bytes()[..width as usize].iter().enumerate() {
            let at = offset as usize + i;
            let (w, c) = (self.writable[at], self.w1c[at]);
            self.bytes[at] = (self.bytes[at] & !w | b & w) & !(b & c);
        }
    }
    pub fn command(&self) -> u16 {
        self.get(reg::COMMAND, 2) as u16
    }
    pub fn is_bridge(&self) -> bool {
        self.get(reg::HEADER_TYPE, 1) & 0x7f == 1
    }
    /// Primary, secondary, subordinate.
    pub fn buses(&self) -> (u8, u8, u8) {
        let n = self.get(0x18, 4);
        (n as u8, (n >> 8) as u8, (n >> 16) as u8)
    }
    /// The memory window it forwards, if open.
    pub fn window(&self) -> Option<(u64, u64)> {
        let (base, limit) = (self.get(0x20, 2) as u64, self.get(0x22, 2) as u64);
        let (base, limit) = ((base & 0xfff0) << 16, (limit & 0xfff0) << 16 | 0xf_ffff);
        (base <= limit).then_some((base, limit))
    }
    /// The expansion ROM's range, if it is enabled (type 0 only: a bridge's is at 0x38).
    pub fn rom(&self) -> Option<(u64, u64)> {
        let (v, m) = (self.get(reg::ROM, 4), u32::from_le_bytes(self.writable[0x30..0x34].try_into().unwrap()));
        let mask = m & 0xffff_f800;
        (!self.is_bridge() && v & 1 == 1 && mask != 0)
            .then(|| (u64::from(v & mask), u64::from((!mask).wrapping_add(1))))
    }
    /// Each memory BAR's range: address and size, from the bits that are writable.
    pub fn bars(&self) -> Vec<(u64, u64)> {
        let mut out = vec![];
        let mut i = 0;
        while i < 6 {
            let off = reg::BAR0 + 4 * i;
            let (v, m) = (
                self.get(off, 4),
                u32::from_le_bytes(self.writable[off as usize..off as usize + 4].try_into().unwrap()),
            );
            let wide = v & 0b111 == 0b100;
            if v & 1 == 0 && m != 0 {
                let (mut addr, mut mask) = (u64::from(v & !0xf), 0xffff_ffff_0000_0000 | u64::from(m));
                if wide {
                    addr |= u64::from(self.get(off + 4, 4)) << 32;
                    let hm = u32::from_le_bytes(self.writable[off as usize + 4..off as usize + 8].try_into().unwrap());
                    mask = u64::from(hm) << 32 | u64::from(m);
                }
                out.push((addr, (!mask).wrapping_add(1)));
            }
            i += if wide { 2 } else { 1 };
        }
        out
    }
}

/// Where a function sits: on the root bus, or on the secondary bus of bridge node `n`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Parent {
    Root,
    Bridge(usize),
}

#[derive(Clone)]
pub struct Node {
    pub parent: Parent,
    pub devfn: u8,
    pub f: Function,
    /// How it takes a Function Level Reset, if it does (`Fabric::with_flr`).
    pub flr: Option<Flr>,
}

/// A function's Function Level Reset (PCIe Base 4.0, 6.6.2): Initiate FLR in Device
/// Control returns every register to its reset value, and the function answers nothing
/// (reads all ones, writes go nowhere) until `absent_ms` have passed, which may be
/// longer than the second its owner waits.
#[derive(Clone)]
pub struct Flr {
    /// Device Control's offset.
    pub devctl: u16,
    /// Its registers at reset.
    pub reset: Vec<u8>,
    pub absent_ms: u64,
    /// Until when it answers nothing.
    pub absent_until: Option<u64>,
    pub resets: u32,
}

/// Functions in a hierarchy; what answers a request depends on the bridges' registers.
#[derive(Clone, Default)]
pub struct Fabric {
    pub nodes: Vec<Node>,
    pub writes: usize,
    /// The clock the owner's waits move (`Owned::wait_ms`), and a test.
    pub now_ms: u64,
}

impl Fabric {
    pub fn add(&mut self, parent: Parent, dev: u8, func: u8, f: Function) -> usize {
        self.nodes.push(Node { parent, devfn: dev << 3 | func, f, flr: None });
        self.nodes.len() - 1
    }

    /// `node` takes an FLR through Device Control at `devctl`, back to its registers as
    /// they are now, answering nothing for `absent_ms` after it.
    pub fn with_flr(&mut self, node: usize, devctl: u16, absent_ms: u64) {
        let reset = self.nodes[node].f.bytes.clone();
        self.nodes[node].flr = Some(Flr { devctl, reset, absent_ms, absent_until: None, resets: 0 });
    }

    /// Is `node` inside an FLR, answering nothing?
    fn absent(&self, node: usize) -> bool {
        self.nodes[node].flr.as_ref().and_then(|r| r.absent_until).is_some_and(|t| self.now_ms < t)
    }

    /// The bus number of a segment: 0 for the root, a bridge's secondary bus register.
    fn segment_bus(&self, seg: Parent) -> u8 {
        match seg {
            Parent::Root => 0,
            Parent::Bridge(n) => self.nodes[n].f.buses().1,
        }
    }

    /// The node a configuration request for `rid` reaches, routed from the root.
    pub fn route(&self, rid: u16) -> Option<usize> {
        let (bus, devfn) = ((rid >> 8) as u8, rid as u8);
        let mut seg = Parent::Root;
        // A request crosses at most one bridge per bus.
        for _ in 0..=256 {
            if bus == self.segment_bus(seg) {
                return self.nodes.iter().position(|n| n.parent == seg && n.devfn == devfn);
            }
            let claim: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| {
                    let n = &self.nodes[i];
                    let (_, sec, sub) = n.f.buses();
                    n.parent == seg && n.f.is_bridge() && sec != 0 && sec <= bus && bus <= sub
                })
                .collect();
            assert!(claim.len() <= 1, "bus {bus:#x}: bridges {claim:?} all claim it");
            seg = Parent::Bridge(*claim.first()?);
        }
        None
    }

    /// The requester ID `node` answers to now, if a request reaches it.
    pub fn rid_of(&self, node: usize) -> Option<u16> {
        let rid = u16::from(self.segment_bus(self.nodes[node].parent)) << 8 | u16::from(self.nodes[node].devfn);
        (self.route(rid) == Some(node)).then_some(rid)
    }

    /// The node a memory request at `addr` from the CPU reaches: a function decoding it in
    /// a BAR or its enabled expansion ROM, through bridges whose window holds it with
    /// Memory Space on. Two functions decoding one address fail the test.
    pub fn memory(&self, addr: u64) -> Option<usize> {
        let mut seg = Parent::Root;
        for _ in 0..=256 {
            let claim: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| {
                    let n = &self.nodes[i];
                    n.parent == seg
                        && n.f.command() & reg::CMD_MEMORY != 0
                        && if n.f.is_bridge() {
                            n.f.window().is_some_and(|(b, l)| (b..=l).contains(&addr))
                        } else {
                            n.f.bars().iter().chain(&n.f.rom()).any(|(b, s)| (*b..b + s).contains(&addr))
                        }
                })
                .collect();
            assert!(claim.len() <= 1, "address {addr:#x}: {claim:?} all claim it");
            let n = *claim.first()?;
            if !self.nodes[n].f.is_bridge() {
                return Some(n);
            }
            seg = Parent::Bridge(n);
        }
        None
    }

    /// Does `node`'s DMA reach the root: its own Bus Master on, and every bridge above it
    /// forwarding upstream (Bus Master on)?
    pub fn dma_reaches_root(&self, node: usize) -> bool {
        let mut n = node;
        loop {
            if self.nodes[n].f.command() & reg::CMD_BUS_MASTER == 0 {
                return false;
            }
            match self.nodes[n].parent {
                Parent::Root => return true,
                Parent::Bridge(p) => n = p,
            }
        }
    }

    pub fn at(&self, rid: u16) -> &Function {
        &self.nodes[self.route(rid).unwrap_or_else(|| panic!("nothing at {rid:#x}"))].f
    }

    pub fn read(&self, rid: u16, offset: u16, width: u8) -> u32 {
        let ones = u32::MAX >> (32 - 8 * width as u32);
        self.route(rid).filter(|n| !self.absent(*n)).map_or(ones, |n| self.nodes[n].f.get(offset, width as usize))
    }

    pub fn write(&mut self, rid: u16, offset: u16, width: u8, value: u32) {
        self.writes += 1;
        let Some(n) = self.route(rid).filter(|n| !self.absent(*n)) else { return };
        let now = self.now_ms;
        let node = &mut self.nodes[n];
        if let Some(flr) = node.flr.as_mut().filter(|r| offset == r.devctl && width >= 2 && value & 1 << 15 != 0) {
            node.f.bytes.clone_from(&flr.reset);
            flr.absent_until = Some(now + flr.absent_ms);
            flr.resets += 1;
            return;
        }
        node.f.write(offset, width, value);
    }
}

/// The fabric as its owner sees it through ECAM, with the description's functions and
/// what `configure` found of them, which name a device's function.
pub struct Owned {
    pub fabric: Fabric,
    pub topo: Topology<'static>,
    pub states: Vec<FunctionState>,
    /// What each described function's driver may write, recorded once `configure` ran
    /// (`booted`), as the IOMMU PD records it before any driver runs.
    pub recorded: Vec<Option<Recorded>>,
}

impl Owned {
    /// Nothing configured yet.
    pub fn new(fabric: Fabric, topo: Topology<'static>) -> Self {
        Owned { fabric, topo, states: vec![], recorded: vec![] }
    }

    /// `configure` found `states`: kept, and what each driver may write recorded, as
    /// `pds/iommu` does at boot.
    pub fn booted(&mut self, states: &[FunctionState]) {
        self.states = states.to_vec();
        let mut recorded = vec![None; states.len()];
        let topo = self.topo;
        record_functions(self, topo, states, &mut recorded);
        self.recorded = recorded;
    }
}

impl ConfigSpace for Owned {
    fn function(&self, device: usize) -> Result<u16, ErrorCode> {
        function_of(device, self.topo, &self.states)
    }
    fn placement(&self, rid: u16) -> Option<Placement> {
        placement_of(rid, self.topo, &self.states)
    }
    fn messages_stuck(&self, rid: u16) -> bool {
        messages_stuck_of(rid, self.topo, &self.states)
    }
    fn recorded(&mut self, rid: u16) -> Option<Recorded> {
        recorded_of(rid, self.topo, &self.recorded)
    }
    /// Past a function's 4 KiB: `None`, as the IOMMU PD's ECAM answers (`pds/iommu`).
    fn read(&mut self, rid: u16, offset: u16, width: u8) -> Option<u32> {
        (offset < 4096).then(|| self.fabric.read(rid, offset, width))
    }
    fn write(&mut self, rid: u16, offset: u16, width: u8, value: u32) -> Option<()> {
        (offset < 4096).then(|| self.fabric.write(rid, offset, width, value))
    }
    fn wait_ms(&mut self, ms: u32) {
        self.fabric.now_ms += u64::from(ms);
    }
    fn now_ms(&mut self) -> u64 {
        self.fabric.now_ms
    }
}
