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
/// The symbol it learns ECAM's size through, so how many buses it holds.
pub const ECAM_SIZE: &str = "ecam_size";

/// Every rule about configuration space.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) else { return };
    let ecam = iommu.maps.iter().find(|m| m.setvar_vaddr.as_deref() == Some(ECAM));
    if let Some(ecam) = ecam {
        covers_the_buses(sys, board, ecam, out);
    }
    set_by_the_ecam_map_alone(sys, iommu, ecam, out);
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
                // Its ecam map's attributes are `covers_the_buses`' to check. Any other map of
                // configuration space, cached, is a cacheable alias of it: the CPU may read it
                // speculatively (on many host bridges a read of an absent function is an
                // external abort) and keep lines of it, and with mismatched attributes the
                // Arm ARM (DDI 0487, "Mismatched memory attributes") no longer promises that
                // the ecam map's uncached accesses miss those lines.
                if m.cached && !ecam.is_some_and(|e| std::ptr::eq(e, m)) {
                    let what = match mr {
                        Some(mr) if mr == m.mr => format!("its ECAM `{}` a second time,", m.mr),
                        _ => format!("`{}`, configuration space in the board's ECAM window,", m.mr),
                    };
                    out.push(p(
                        m.line,
                        "map",
                        format!(
                            "the IOMMU PD maps {what} cached: a cacheable alias of configuration space lets the CPU read it speculatively and keep it in its caches, and with mismatched attributes the ecam map's uncached reads and writes are no longer promised to bypass those lines"
                        ),
                        "remove this map, or add cached=\"false\" to it",
                    ));
                }
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
    let Some(r) = sys.region(&ecam.mr) else { return };
    if ecam.setvar_size.as_deref() != Some(ECAM_SIZE) {
        out.push(p(
            ecam.line,
            "map",
            format!(
                "the IOMMU PD maps its ECAM `{}` without setvar_size=\"{ECAM_SIZE}\": it would read the size as 0, take the window for no bus and own no configuration space",
                r.name
            ),
            format!("add setvar_size=\"{ECAM_SIZE}\" to this map"),
        ));
    }
    if !(ecam.perms.read && ecam.perms.write) {
        out.push(super::read_write(ecam, &format!("its ECAM `{}`", r.name)));
    }
    if ecam.cached {
        out.push(super::cached_registers(
            ecam,
            &format!("its ECAM `{}`", r.name),
            "its writes of bus numbers, windows and Bus Master off may stay in its cache, and what it reads back be its own write, not the function's register",
        ));
    }
    // The IOMMU PD writes bus numbers, windows and Command registers into what it maps as
    // ECAM at boot, before it sets up the SMMU: it must be configuration space, the board's.
    let Some(pci) = &board.pci else {
        out.push(p(
            ecam.line,
            "map",
            format!(
                "the IOMMU PD maps `{}` as PCI configuration space (setvar_vaddr=\"{ECAM}\"), and board {} has no PCI host bridge this tool knows: it would write bridges' bus numbers and Command registers into whatever that region is",
                r.name, board.name
            ),
            "remove setvar_vaddr=\"ecam\" (and setvar_size=\"ecam_size\"): on this board the IOMMU PD owns no configuration space",
        ));
        return;
    };
    if r.phys_addr.is_none() {
        out.push(p(
            ecam.line,
            "map",
            format!(
                "the IOMMU PD's ECAM `{}` has no phys_addr, so the Microkit tool places it in RAM: the IOMMU PD would number bridges, place BARs and stop bus masters in memory, not in configuration space, and every PCI rule here assumes it did so in the board's",
                r.name
            ),
            format!("give `{}` phys_addr=\"{:#x}\", the board's ECAM", r.name, pci.ecam.0),
        ));
        return;
    }
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

/// `ecam` and `ecam_size` in the IOMMU PD come from its map of ECAM alone. It reads them
/// (pds/iommu/src/pci.rs, `Ecam::mapped`) at boot, before it sets up the SMMU, and walks
/// the buses there: patched by anything else (a child's or a channel end's `setvar_id`, a
/// `<setvar>`, another map's `setvar_vaddr` or `setvar_size`), they point it at an
/// address that faults it (`setvar_id="ecam"` gives it the child's id, 1) or a size past
/// its map, and a faulted IOMMU PD leaves the SMMU as firmware left it. The symbol rules
/// (`names`) allowed both, being symbols it reads, and a second setting of either only
/// where the ECAM map already set it.
fn set_by_the_ecam_map_alone(sys: &System, iommu: &ProtectionDomain, ecam: Option<&Map>, out: &mut Vec<Problem>) {
    let is_ecam_map = |m: &Map| ecam.is_some_and(|e| std::ptr::eq(e, m));
    // Set by the ECAM map too, a second setting is the symbol rules' to refuse, once.
    let from_the_map = |symbol: &str| {
        ecam.is_some_and(|e| e.setvar_vaddr.as_deref() == Some(ECAM) && symbol == ECAM)
            || ecam.is_some_and(|e| e.setvar_size.as_deref() == Some(ECAM_SIZE) && symbol == ECAM_SIZE)
    };
    let mut refuse = |symbol: &str, line: Line, element: &str, by: String| {
        out.push(p(
            line,
            element,
            format!(
                "`{symbol}` is set in the IOMMU PD `{}` by {by}, not by its map of ECAM: the IOMMU PD walks PCI configuration space at `ecam` for `ecam_size` bytes at boot, before it sets up the SMMU, and an address that is not the ECAM map's faults it there, leaving the SMMU as firmware left it",
                iommu.name
            ),
            format!("set `{ECAM}` only with setvar_vaddr=\"{ECAM}\" and `{ECAM_SIZE}` only with setvar_size=\"{ECAM_SIZE}\", both on the IOMMU PD's one map of the board's ECAM"),
        ));
    };
    for m in &iommu.maps {
        let attributes = [
            ("setvar_vaddr", &m.setvar_vaddr, ECAM),
            ("setvar_size", &m.setvar_size, ECAM_SIZE),
            ("setvar_prefill_size", &m.setvar_prefill_size, ""),
        ];
        for (attribute, value, own) in attributes {
            let Some(symbol) = value.as_deref().filter(|s| [ECAM, ECAM_SIZE].contains(s)) else { continue };
            if !is_ecam_map(m) && !from_the_map(symbol) || is_ecam_map(m) && symbol != own {
                refuse(symbol, m.line, "map", format!("`{attribute}` on this <map> of `{}`", m.mr));
            }
        }
    }
    let ends = sys.ends_by_pd();
    for (symbol, line, element) in iommu.setvar_symbols(&ends) {
        if element != "map" && [ECAM, ECAM_SIZE].contains(&symbol) && !from_the_map(symbol) {
            let by = match element {
                "setvar" => "this <setvar>".to_string(),
                other => format!("the `setvar_id` of this <{other}>"),
            };
            refuse(symbol, line, element, by);
        }
    }
}
