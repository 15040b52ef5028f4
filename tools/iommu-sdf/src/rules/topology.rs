//! The PCI topology: the bridges form a tree the PCI owner can number as written, every
//! PCI function sits below a declared bridge, its StreamID can be derived, and functions
//! the SMMU cannot keep apart (a group) are one io_address_space with one owner.
//!
//! The PCI owner programs exactly the description's bus numbers, so a requester ID, and
//! so a StreamID, is only what the description says if the bridges nest as a bus
//! hierarchy does: each bridge on bus 0 or on the secondary bus of exactly one other
//! bridge, its buses inside its parent's and apart from every other bridge's that is not
//! above or below it.

use iommu_pd::BridgeKind::{self, *};

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};
use crate::topology::{bus, groups, Topology, MAX_BRIDGES};

/// Every rule about the topology.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    if let Some(b) = sys.bridges.get(MAX_BRIDGES) {
        out.push(p(
            b.line,
            "pci_bridge",
            format!(
                "bridge {} is the {}th; each bridge has its own secondary bus, so there are at most {MAX_BRIDGES}",
                bdf(b.rid),
                MAX_BRIDGES + 1
            ),
            "describe at most 255 bridges",
        ));
        return;
    }
    let t = Topology::of(&sys.bridges);
    bridges(sys, board, &t, out);
    functions(sys, board, &t, out);
    group_rules(sys, out);
}

fn kind(k: BridgeKind) -> &'static str {
    bridge_kind_name(k)
}

fn bridges(sys: &System, board: &Board, t: &Topology, out: &mut Vec<Problem>) {
    let functions: std::collections::HashMap<u16, &IoSpace> =
        sys.io_spaces.iter().filter_map(|s| Some((s.rid?, s))).collect();
    for (i, b) in sys.bridges.iter().enumerate() {
        let name = format!("{} {}", kind(b.kind), bdf(b.rid));
        let mut refuse = |message: String, fix: &str| out.push(p(b.line, "pci_bridge", message, fix));
        if let Some(first) = sys.bridges[..i].iter().find(|o| o.rid == b.rid) {
            refuse(
                format!("bridge {} is declared twice (first on line {})", bdf(b.rid), first.line),
                "declare each bridge once",
            );
            continue;
        }
        if let Some(s) = functions.get(&b.rid) {
            refuse(
                format!(
                    "{name} is also io_address_space `{}` (line {}): a function is a bridge or a device, not both",
                    s.name, s.line
                ),
                "give the bridge its own bdf, or name the device by its own address",
            );
        }
        if b.secondary <= b.bus() {
            refuse(
                format!(
                    "{name} sits on bus {} and has secondary bus {}: the bus below a bridge is numbered above its own",
                    b.bus(),
                    b.secondary
                ),
                "give it a secondary bus above the bus it sits on",
            );
            continue;
        }
        if b.subordinate < b.secondary {
            refuse(
                format!("{name} has subordinate bus {} below its secondary bus {}", b.subordinate, b.secondary),
                "give it subordinate at least secondary: the highest bus below it",
            );
            continue;
        }
        if let Some(pci) = &board.pci {
            if u64::from(b.subordinate) >= pci.buses() {
                refuse(
                    format!(
                        "{name} reaches bus {}, and the board's ECAM holds {} buses (0 to {})",
                        b.subordinate,
                        pci.buses(),
                        pci.buses() - 1
                    ),
                    &format!("number the buses below it at most {}", pci.buses() - 1),
                );
            }
        }
        // Where it sits: its parent, and the kinds that may sit there.
        let parent = if b.bus() == 0 { None } else { t.parent(b.bus()) };
        if b.bus() != 0 && parent.is_none() {
            refuse(
                format!("{name} sits on bus {}, which is no declared bridge's secondary bus", b.bus()),
                "declare the bridge above it (<pci_bridge> with secondary=\"that bus\"), or move it to a declared bus",
            );
            continue;
        }
        if let Some(other) = sys.bridges[..i].iter().find(|o| o.secondary == b.secondary) {
            refuse(
                format!(
                    "{name} has secondary bus {}, which is {} {}'s (line {}) already",
                    b.secondary,
                    kind(other.kind),
                    bdf(other.rid),
                    other.line
                ),
                "give every bridge its own secondary bus",
            );
            continue;
        }
        if let Some(up) = parent {
            if b.subordinate > up.subordinate {
                refuse(
                    format!(
                        "{name} has buses {} to {}, outside the buses of the {} {} above it ({} to {})",
                        b.secondary,
                        b.subordinate,
                        kind(up.kind),
                        bdf(up.rid),
                        up.secondary,
                        up.subordinate
                    ),
                    "nest its buses inside its parent's: raise the parent's subordinate or lower this one's",
                );
                continue;
            }
        }
        let placed = match (b.kind, parent.map(|up| up.kind)) {
            (RootPort, None) => Ok(()),
            (RootPort, Some(_)) => Err("a root port sits on the root bus, bus 0"),
            (SwitchUpstream, Some(RootPort | SwitchDownstream)) => Ok(()),
            (SwitchUpstream, _) => Err("a switch's upstream port sits below a root port or a switch's downstream port"),
            (SwitchDownstream, Some(SwitchUpstream)) => Ok(()),
            (SwitchDownstream, _) => Err("a switch's downstream port sits on its upstream port's secondary bus"),
            (PcieToPci, None | Some(RootPort | SwitchDownstream)) => Ok(()),
            (PcieToPci, _) => Err(
                "a PCI Express to PCI bridge sits on the root bus or below a root port or a switch's downstream port",
            ),
            (PciToPci, Some(SwitchUpstream)) => Err("a switch's internal bus holds only its downstream ports"),
            (PciToPci, _) => Ok(()),
        };
        if let Err(why) = placed {
            let at =
                parent.map_or("on the root bus".to_string(), |up| format!("below {} {}", kind(up.kind), bdf(up.rid)));
            refuse(
                format!("{name} is {at}: {why}"),
                "fix its kind, or its bdf so that it sits where such a bridge does",
            );
            continue;
        }
        if let Some(up) = parent.filter(|up| link(up.kind) && (b.rid >> 3) & 0x1f != 0) {
            refuse(
                format!(
                    "{name} is device {:x} below {} {}, whose link has one device, device 0",
                    (b.rid >> 3) & 0x1f,
                    kind(up.kind),
                    bdf(up.rid)
                ),
                "give it device number 0 on that bus",
            );
        }
        // Apart from every bridge not above or below it.
        for o in &sys.bridges[..i] {
            let overlap = b.secondary <= o.subordinate && o.secondary <= b.subordinate;
            let related =
                t.path(b.bus()).iter().any(|a| a.rid == o.rid) || t.path(o.bus()).iter().any(|a| a.rid == b.rid);
            if overlap && !related {
                refuse(
                    format!(
                        "{name}'s buses {} to {} overlap those of {} {} (line {}), {} to {}, which is neither above nor below it",
                        b.secondary, b.subordinate, kind(o.kind), bdf(o.rid), o.line, o.secondary, o.subordinate
                    ),
                    "give bridges that are not above one another disjoint bus ranges",
                );
                break;
            }
        }
    }
}

/// A root port's or a switch downstream port's secondary bus is a PCI Express link: one
/// device on it, device 0 (PCI Express Base Specification, 7.3.1: without ARI, which the
/// description cannot declare).
fn link(k: BridgeKind) -> bool {
    matches!(k, RootPort | SwitchDownstream)
}

/// Where requester ID `rid` cannot be: past the board's ECAM, on a bus no declared bridge
/// leads to, on a switch's internal bus, or a device other than 0 on a link. The problem
/// (what follows "`device` is b:d.f", and the fix), if any.
fn misplaced(board: &Board, t: &Topology, rid: u16) -> Option<(String, String)> {
    let b = bus(rid);
    if let Some(pci) = board.pci.filter(|pci| u64::from(b) >= pci.buses()) {
        return Some((
            format!(", on bus {b}, and the board's ECAM holds {} buses (0 to {})", pci.buses(), pci.buses() - 1),
            "number the buses below the bridges within the board's ECAM".into(),
        ));
    }
    if b == 0 {
        return None;
    }
    match t.parent(b) {
        None => Some((
            format!(", on bus {b}, which is no declared bridge's secondary bus: nothing says which bridges it is below, so neither its requester ID nor its StreamID is known"),
            format!("declare the bridges above it (<pci_bridge bdf=\"...\" kind=\"...\" secondary=\"{b}\" subordinate=\"...\" />), or correct its bus"),
        )),
        Some(up) if up.kind == SwitchUpstream => Some((
            format!(", on the internal bus of switch {}, which holds only the switch's downstream ports", bdf(up.rid)),
            "name the device by its address below one of the switch's downstream ports".into(),
        )),
        Some(up) if link(up.kind) && (rid >> 3) & 0x1f != 0 => Some((
            format!(", device {:x} below {} {}, whose link has one device, device 0", (rid >> 3) & 0x1f, kind(up.kind), bdf(up.rid)),
            "give it device number 0 on that bus".into(),
        )),
        Some(_) => None,
    }
}

fn functions(sys: &System, board: &Board, t: &Topology, out: &mut Vec<Problem>) {
    for s in &sys.io_spaces {
        let Some(rid) = s.rid else { continue };
        let mut refuse = |message: String, fix: &str| out.push(p(s.line, "io_address_space", message, fix));
        if let Some((why, fix)) = misplaced(board, t, rid) {
            refuse(format!("`{}` is {}{why}", s.name, bdf(rid)), &fix);
            continue;
        }
        // Its other functions, given in streams= by their addresses.
        let mut placed = true;
        for r in s.extra_rids.iter().flatten() {
            if let Some((why, fix)) = misplaced(board, t, *r) {
                refuse(format!("`{}`'s function {} (in streams){why}", s.name, bdf(*r)), &fix);
                placed = false;
            }
        }
        if !placed {
            continue;
        }
        // Its StreamID, on a board whose SMMUv3 the IOMMU PD drives.
        if board.stream_bits().is_none() {
            continue;
        }
        let extra = s.extra_rids.iter().flatten().copied();
        for (what, r) in std::iter::once(("", rid)).chain(extra.map(|r| (" in streams", r))) {
            match &board.pci {
                None => refuse(
                    format!("`{}` names {}{what} by its PCI address, and this tool does not know the host bridge of board {} (its iommu-map)", s.name, bdf(r), board.name),
                    "give the device's StreamID as a number (peripheral_id=\"0x...\"), or check for a board this tool knows",
                ),
                Some(pci) if pci.stream_of(t.alias(r)).is_none() => refuse(
                    format!("`{}`'s {}{what} is seen by the SMMU as {}, which the board's iommu-map gives no StreamID", s.name, bdf(r), bdf(t.alias(r))),
                    "describe only devices the board's host bridge maps to the SMMU",
                ),
                Some(_) => {}
            }
        }
    }
}

fn group_rules(sys: &System, out: &mut Vec<Problem>) {
    for group in groups(sys) {
        for (i, joined) in &group {
            let Some(j) = joined else { continue };
            let (s, t) = (&sys.io_spaces[*i], &sys.io_spaces[j.with]);
            let (a, b) = (bdf(s.rid.unwrap_or(0)), bdf(t.rid.unwrap_or(0)));
            let owners = if s.owner == t.owner {
                String::new()
            } else {
                format!(
                    " (owned by `{}` and `{}`: either driver's device could reach the other's memory or device)",
                    s.owner.as_deref().unwrap_or("nobody"),
                    t.owner.as_deref().unwrap_or("nobody")
                )
            };
            out.push(p(
                s.line,
                "io_address_space",
                format!(
                    "`{}` ({a}) and `{}` ({b}, line {}) are one group, which the SMMU cannot keep apart: {}{owners}",
                    s.name, t.name, t.line, j.why
                ),
                "describe the group as one io_address_space with one owner, listing the other functions' StreamIDs in streams=\"...\" where they differ; or give the bridge above them ACS (acs=\"true\") where the hardware has it",
            ));
        }
    }
}
