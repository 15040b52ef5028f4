//! PCI configuration space has one owner, the IOMMU PD. Whoever can write a function's
//! configuration space can move its BARs under another driver's window, turn its bus
//! mastering off or on, or renumber buses (and so change the requester ID the SMMU turns
//! into a StreamID); the IOMMU PD owns the SMMU, so it owns this too, and drivers reach
//! their own function through its CONFIG_READ/CONFIG_WRITE calls.
//!
//! Which region is ECAM: the one the IOMMU PD maps with `setvar_vaddr="ecam"` (as the
//! SMMU's registers are the one it maps as `smmu_regs`), which is also how the IOMMU PD
//! finds it, and any region in the board's ECAM window. No other PD and no guest may map
//! either, and no device may reach the IOMMU PD's by DMA. A description whose IOMMU PD
//! maps no ECAM leaves configuration space unconfigured, but no one else's: a VMM's guest
//! or a driver still may not map the board's ECAM window.

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};
use crate::topology::bus;

/// The symbol the IOMMU PD finds ECAM through.
pub const ECAM: &str = "ecam";

/// Every rule about configuration space.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) else { return };
    let ecam = iommu.maps.iter().find(|m| m.setvar_vaddr.as_deref() == Some(ECAM));
    if let Some(ecam) = ecam {
        covers_the_buses(sys, board, ecam, out);
    }
    let mr = ecam.map(|m| m.mr.as_str());
    // Configuration space by any name: the region the IOMMU PD maps as ECAM, and any
    // region in the board's ECAM window (whether or not the IOMMU PD maps ECAM: a guest
    // that maps it drives every function on the bus).
    let board_ecam = board.pci.map(|pci| (u128::from(pci.ecam.0), u128::from(pci.ecam.0) + u128::from(pci.ecam.1)));
    let is_ecam = |name: &str| {
        Some(name) == mr
            || sys
                .region(name)
                .and_then(|r| r.phys_range())
                .is_some_and(|(s, e)| board_ecam.is_some_and(|(bs, be)| s < be && bs < e))
    };
    for pd in &sys.pds {
        for (m, vm) in pd.all_maps().filter(|(m, _)| is_ecam(&m.mr)) {
            if pd.name == iommu.name && vm.is_none() {
                continue;
            }
            let who = match vm {
                Some(vm) => format!("virtual machine `{}` (run by `{}`)", vm.name, pd.name),
                None => format!("`{}`", pd.name),
            };
            let whose = match (mr, &board.pci) {
                (Some(_), _) | (None, None) => format!("the IOMMU PD `{}` maps it as ecam", iommu.name),
                (None, Some(pci)) => format!(
                    "it lies in the board's ECAM window {:#x}+{:#x}; the IOMMU PD `{}` maps none",
                    pci.ecam.0, pci.ecam.1, iommu.name
                ),
            };
            out.push(p(
                m.line,
                "map",
                format!(
                    "{who} maps `{}`, PCI configuration space ({whose}): only the IOMMU PD may, or a driver could move another device's BAR, stop its bus mastering or renumber buses",
                    m.mr
                ),
                "remove the map: the driver reads and writes its own function through the IOMMU PD (CONFIG_READ/CONFIG_WRITE); a VMM emulates its guest's configuration space over those calls",
            ));
        }
    }
    let Some(mr) = mr else { return };
    for c in &sys.caps {
        if resolve(sys, c).is_some_and(|(r, _)| r == mr) {
            out.push(p(
                c.line,
                "dma_capability",
                format!("`{}` lets a device reach `{mr}`, PCI configuration space", c.name),
                "give DMA capabilities over memory, never over ECAM",
            ));
        }
    }
    for s in &sys.io_spaces {
        for m in s.iomaps.iter().filter(|m| m.mr == mr) {
            out.push(p(
                m.line,
                "iomap",
                format!("`{}` iomaps `{mr}`, PCI configuration space, for its device", s.name),
                "iomap memory, never ECAM",
            ));
        }
    }
}

/// The IOMMU PD's ECAM is the board's, from bus 0, and holds every bus the description
/// numbers (1 MiB a bus): the PCI owner reaches a bridge's or a function's configuration
/// space only through it, and a bus past its end could be neither numbered nor checked.
fn covers_the_buses(sys: &System, board: &Board, ecam: &Map, out: &mut Vec<Problem>) {
    let (Some(r), Some(pci)) = (sys.region(&ecam.mr), &board.pci) else { return };
    if r.phys_addr.is_some_and(|a| a != pci.ecam.0) {
        out.push(p(
            ecam.line,
            "map",
            format!(
                "the IOMMU PD's ECAM `{}` is at {:#x}, and the board's configuration space starts at {:#x}",
                r.name,
                r.phys_addr.unwrap_or(0),
                pci.ecam.0
            ),
            "give the ECAM region the board's ECAM address (bus 0's configuration space)",
        ));
        return;
    }
    let buses = r.size >> 20;
    let highest = sys
        .bridges
        .iter()
        .map(|b| (b.subordinate, b.line, format!("bridge {}", bdf(b.rid))))
        .chain(sys.io_spaces.iter().filter_map(|s| Some((bus(s.rid?), s.line, format!("`{}`", s.name)))))
        .max_by_key(|(b, _, _)| *b);
    if let Some((top, _, what)) = highest.filter(|(b, _, _)| u64::from(*b) >= buses) {
        out.push(p(
            ecam.line,
            "map",
            format!(
                "the IOMMU PD's ECAM `{}` holds {buses} bus(es) ({:#x} bytes, 1 MiB a bus), and {what} uses bus {top}: the PCI owner could not reach its configuration space",
                r.name, r.size
            ),
            format!("give the ECAM region at least {:#x} bytes (buses 0 to {top})", (u64::from(top) + 1) << 20),
        ));
    }
}
