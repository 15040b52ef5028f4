//! PCI configuration space, this PD's alone: the ECAM window the description maps here
//! (`setvar_vaddr="ecam"`, `setvar_size="ecam_size"`; `iommu-sdf check` refuses a map of
//! it by any other PD), and what `init` does with it before any driver runs: the
//! description's hierarchy made so (`iommu_pd::pci::configure`: its bridges numbered,
//! windowed and ACS-enabled as declared, or left closed; every Bus Master off; each
//! described function's BARs placed in its `bar=` window), and a line on the console for
//! each bridge and each described function saying what was done, or that it is missing.
//!
//! A device's configuration space is found through the policy's `PCI_FUNCTIONS` (its
//! requester ID), not through its StreamID: below a PCIe-to-PCI bridge the two differ.

use iommu_pd::pci::{self, BridgeState, ConfigSpace, Found, FunctionState, Met, Recorded, Topology};
use iommu_pd::BridgeKind;
use iommu_protocol::ErrorCode;
use sel4_microkit::{debug_println, var};

use crate::policy;

use pci::Bdf;

/// The description's PCI hierarchy, as `iommu-sdf build` wrote it into the policy.
fn topology() -> Topology<'static> {
    Topology { bridges: &policy::PCI_BRIDGES, functions: &policy::PCI_FUNCTIONS }
}

/// The ECAM window (1 MiB per bus from bus 0, mapped uncached), and what became of each
/// described function at boot.
pub struct Ecam {
    base: usize,
    buses: u16,
    functions: [FunctionState; policy::PCI_FUNCTIONS.len()],
    /// What was recorded of each described function at boot (what its driver may write in
    /// 0x40..0x100, the capabilities its stops need).
    recorded: [Option<Recorded>; policy::PCI_FUNCTIONS.len()],
}

impl Ecam {
    /// The window the description maps here, if it maps one (a description that keeps
    /// configuration space from this PD gets `NoConfigSpace` for every configuration
    /// call, and its drivers do what they did before).
    pub fn mapped() -> Option<Ecam> {
        let base = *var!(ecam: usize = 0);
        let size = *var!(ecam_size: usize = 0);
        let buses = (size >> 20).min(256) as u16;
        let functions = [FunctionState::NotReached; policy::PCI_FUNCTIONS.len()];
        let recorded = [None; policy::PCI_FUNCTIONS.len()];
        (base != 0 && buses > 0).then_some(Ecam { base, buses, functions, recorded })
    }

    /// Whether boot found a described function to keep owned between calls
    /// (`Service::keep_functions_owned`): then the timer polls within its period however
    /// quiet the SMMU is (`iommu_pd::poll`).
    pub fn keeps_functions(&self) -> bool {
        self.functions.iter().any(|f| f.present())
    }

    fn addr(&self, rid: u16, offset: u16) -> Option<usize> {
        (rid >> 8 < self.buses && offset < 4096).then(|| self.base + ((rid as usize) << 12) + offset as usize)
    }
}

/// Milliseconds of the generic timer: the clock of every ration (`ConfigSpace::now_ms`),
/// with ECAM or without (`iommu_pd::pci::NoConfigSpaceClocked`).
pub fn now_ms() -> u64 {
    generic_timer::ms(generic_timer::ticks())
}

impl ConfigSpace for Ecam {
    fn function(&self, device: usize) -> Result<u16, ErrorCode> {
        pci::function_of(device, topology(), &self.functions)
    }

    fn placement(&self, rid: u16) -> Option<pci::Placement> {
        pci::placement_of(rid, topology(), &self.functions)
    }

    fn messages_stuck(&self, rid: u16) -> bool {
        pci::messages_stuck_of(rid, topology(), &self.functions)
    }

    fn recorded(&mut self, rid: u16) -> Option<Recorded> {
        pci::recorded_of(rid, topology(), &self.recorded)
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

    fn wait_ms(&mut self, ms: u32) {
        // A busy wait on the generic timer: the waits around a function's reset, inside
        // the one call (STOP, or a client's teardown) that asked for it.
        let until = generic_timer::ticks() + generic_timer::ticks_from_us(u64::from(ms) * 1000);
        while generic_timer::ticks() < until {
            core::hint::spin_loop();
        }
    }

    fn now_ms(&mut self) -> u64 {
        now_ms()
    }
}

/// The name of the described device at `rid`, or what the description says is there.
fn name_at(rid: u16) -> &'static str {
    if let Some(f) = policy::PCI_FUNCTIONS.iter().find(|f| f.rid == rid) {
        return policy::DEVICES.get(f.device).map_or("?", |d| d.name);
    }
    if policy::PCI_BRIDGES.iter().any(|b| b.rid == rid) {
        return "a declared bridge";
    }
    "no description"
}

fn kind_name(kind: BridgeKind) -> &'static str {
    match kind {
        BridgeKind::RootPort => "root port",
        BridgeKind::SwitchUpstream => "switch upstream port",
        BridgeKind::SwitchDownstream => "switch downstream port",
        BridgeKind::PcieToPci => "PCIe-to-PCI bridge",
        BridgeKind::PciToPci => "PCI-to-PCI bridge",
    }
}

/// ACS control bits enabled, by name: "ACS SV RR CR UF on", or "no ACS".
struct AcsBits(u16);

impl core::fmt::Display for AcsBits {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use pci::acs;
        if self.0 == 0 {
            return f.write_str("no ACS");
        }
        f.write_str("ACS")?;
        for (bit, name) in [(acs::SV, " SV"), (acs::RR, " RR"), (acs::CR, " CR"), (acs::UF, " UF")] {
            if self.0 & bit != 0 {
                f.write_str(name)?;
            }
        }
        f.write_str(" on")
    }
}

/// Before any driver runs: the description's hierarchy configured, each bridge and each
/// described function reported.
pub fn take_ownership(ecam: &mut Ecam) {
    let topo = topology();
    let mut bridges = [BridgeState::NotReached; policy::PCI_BRIDGES.len()];
    let mut functions = [FunctionState::NotReached; policy::PCI_FUNCTIONS.len()];
    let census = pci::configure(ecam, topo, &mut bridges, &mut functions, |m| {
        match m {
        Met::Function(rid, id, header) => debug_println!(
            "iommu: pci {}: {:04x}:{:04x} header type {} ({}): bus master off",
            Bdf(rid),
            id & 0xffff,
            id >> 16,
            header & 0x7f,
            name_at(rid)
        ),
        Met::Undeclared(rid) => {
            debug_println!("iommu: pci {}: a bridge the description does not declare: CLOSED", Bdf(rid))
        }
        Met::MessagesOn(rid, control, read) => debug_println!(
            "iommu: pci {}: MSI or MSI-X STAYS ENABLED after it was turned off (Message Control at {control:#x} reads {read:#06x}): its bus master stays off",
            Bdf(rid)
        ),
    }
    });
    // Both tables are sized from the policy, so `configure` has room for every entry.
    let Ok(census) = census else { return };
    ecam.functions = functions;
    // Before any driver runs: what each may write and what its stops need, from the
    // capability list its function shows now, not the one it may show later.
    let mut recorded = [None; policy::PCI_FUNCTIONS.len()];
    pci::record_functions(ecam, topo, &functions, &mut recorded);
    ecam.recorded = recorded;
    for (b, state) in topo.bridges.iter().zip(&bridges) {
        let (at, kind) = (Bdf(b.rid), kind_name(b.kind));
        match *state {
            BridgeState::Open { acs, window, master, control } => {
                let forwards = if master { "bus master on" } else { "bus master off" };
                match window {
                    Some(w) => debug_println!(
                        "iommu: pci {at} {kind}: buses {}..{}, window {:#x}..{:#x}, {}, {forwards}, bridge control {control:#06x}",
                        b.secondary,
                        b.subordinate,
                        w.base,
                        w.limit,
                        AcsBits(acs)
                    ),
                    None => debug_println!(
                        "iommu: pci {at} {kind}: buses {}..{}, no window, {}, {forwards}, bridge control {control:#06x}",
                        b.secondary,
                        b.subordinate,
                        AcsBits(acs)
                    ),
                }
            }
            BridgeState::NotReached => {
                debug_println!("iommu: pci {at} {kind}: NOT REACHED: the bridge above it is closed")
            }
            BridgeState::Missing => debug_println!("iommu: pci {at} {kind}: MISSING: nothing answers there"),
            BridgeState::WrongKind(found) => match found {
                Found::Header(h) => {
                    debug_println!("iommu: pci {at} {kind}: WRONG KIND: a function of header type {h} is there")
                }
                Found::Port(t) => {
                    debug_println!(
                        "iommu: pci {at} {kind}: WRONG KIND: a PCI Express port of type {t} is there; CLOSED"
                    )
                }
                Found::Conventional => {
                    debug_println!("iommu: pci {at} {kind}: WRONG KIND: a conventional PCI bridge is there; CLOSED")
                }
            },
            BridgeState::BadNumbers => debug_println!(
                "iommu: pci {at} {kind}: buses {}..{} cannot be right (outside the bridge above, or shared); CLOSED",
                b.secondary,
                b.subordinate
            ),
            BridgeState::NotTaken { offset, read } => {
                debug_println!("iommu: pci {at} {kind}: register {offset:#x} did not take (reads {read:#010x}); CLOSED")
            }
            BridgeState::NoAcs(None) => {
                debug_println!("iommu: pci {at} {kind}: declared with ACS and has no ACS capability; CLOSED")
            }
            BridgeState::NoAcs(Some(read)) => {
                debug_println!("iommu: pci {at} {kind}: ACS control did not take (reads {read:#x}); CLOSED")
            }
            BridgeState::BadWindow(e) => debug_println!("iommu: pci {at} {kind}: no window: {e:?}; CLOSED"),
        }
    }
    debug_println!(
        "iommu: PCI configuration space is this PD's: {} function(s) on {} bus(es), {} bridge(s); every bus master off ({} were on); {} undeclared bridge(s) closed",
        census.functions,
        census.buses,
        census.bridges,
        census.masters_stopped,
        census.undeclared
    );
    for (d, dev) in policy::DEVICES.iter().enumerate() {
        let Some(k) = topo.functions.iter().position(|f| f.device == d) else {
            debug_println!("iommu: pci: {} (stream {:#x}) is not a PCI function here", dev.name, dev.stream);
            continue;
        };
        let f = topo.functions[k];
        let at = Bdf(f.rid);
        match ecam.functions[k] {
            FunctionState::Placed(0) => debug_println!("iommu: pci: {} at {at}: found, no BARs to place", dev.name),
            FunctionState::Placed(used) => debug_println!(
                "iommu: pci: {} at {at}: BARs placed in {:#x}..{:#x} (stream {:#x})",
                dev.name,
                f.bar_base,
                f.bar_base + used,
                dev.stream
            ),
            FunctionState::BarsNotPlaced(e) => {
                debug_println!(
                    "iommu: pci: {} at {at}: BARs not placed in its window: {e:?}; it never decodes",
                    dev.name
                )
            }
            FunctionState::MessagesStuck { bars, control, read } => debug_println!(
                "iommu: pci: {} at {at}: MSI or MSI-X STAYS ENABLED (Message Control at {control:#x} reads {read:#06x}): its driver may not turn its bus master on; BARs {}",
                dev.name,
                if bars.is_ok() { "placed in its window" } else { "not placed: it never decodes" }
            ),
            FunctionState::Missing => debug_println!("iommu: pci: {} MISSING: nothing answers at {at}", dev.name),
            FunctionState::NotReached => {
                debug_println!("iommu: pci: {} MISSING: the bridge above {at} is closed or not declared", dev.name)
            }
        }
    }
}

/// What stopping `device`'s function did (STOP, or, with `torn_down` naming its owner,
/// the owner's teardown, said so on the line, so that a check of one is never satisfied
/// by the other), with its Command and BARs as they read now; nothing for a device that
/// is no PCI function here.
pub fn report_function_stop(ecam: &mut Ecam, device: usize, done: pci::Stopped, torn_down: Option<&str>) {
    use iommu_protocol::stop;
    let Ok(rid) = ecam.function(device) else { return };
    let name = policy::DEVICES.get(device).map_or("?", |d| d.name);
    let bits = done.0;
    let why = Why(torn_down);
    if bits & stop::FUNCTION_OFF == 0 {
        debug_println!(
            "iommu: pci: {name} at {}{why}: NOT STOPPED (it does not answer, or its Bus Master, I/O decoding, MSI or MSI-X read back on)",
            Bdf(rid)
        );
        return;
    }
    let reset = if bits & stop::FLR_LOST != 0 {
        "reset, and it DID NOT ANSWER within a second"
    } else if done.reset_ignored() {
        "reset, and it DID NOT RESET (its BARs kept their placement)"
    } else if bits & stop::FLR != 0 {
        "reset by FLR (100 ms)"
    } else if bits & stop::PM_RESET != 0 {
        "reset by D3hot and back to D0 (it has no FLR; 20 ms)"
    } else if bits & stop::RESET_OWED != 0 {
        "its reset owed (resets are rationed, taken in turn: RESUME does it)"
    } else {
        "no FLR (it has none)"
    };
    let command = ecam.read(rid, pci::reg::COMMAND, 2).unwrap_or(u32::MAX);
    let mut bars = [0u32; 6];
    for (i, b) in bars.iter_mut().enumerate() {
        *b = ecam.read(rid, pci::reg::BAR0 + 4 * i as u16, 4).unwrap_or(u32::MAX);
    }
    debug_println!(
        "iommu: pci: {name} at {}{why}: bus master off, {reset}{}; Command {command:#06x}, BARs {}: {}",
        Bdf(rid),
        if bits & stop::PENDING != 0 { " with transactions still pending" } else { "" },
        if bits & stop::RESTORED != 0 { "restored" } else { "NOT RESTORED" },
        Bars(bars)
    );
}

/// Why a function was stopped, as its report says it: nothing for STOP, `(OWNER torn
/// down)` for a teardown.
struct Why<'a>(Option<&'a str>);

impl core::fmt::Display for Why<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(owner) => write!(f, " ({owner} torn down)"),
            None => Ok(()),
        }
    }
}

/// A function's six BAR registers, as read.
struct Bars([u32; 6]);

impl core::fmt::Display for Bars {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            write!(f, "{}{b:#x}", if i == 0 { "" } else { " " })?;
        }
        Ok(())
    }
}
