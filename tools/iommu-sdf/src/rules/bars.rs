//! BAR windows: the region a PCI function's driver maps as its BAR (`io_address_space
//! bar="..."`), where the PCI owner places the function's memory BARs.
//!
//! The owner programs the BARs at the region's physical address, so the region has one,
//! inside the host bridge's memory window, in whole MiB (the granule of the bridge windows
//! above it), and it is one function's. Whoever maps a function's BAR drives that function
//! (and its DMA engine, inside its owner's domain), so only the function's owner maps it,
//! or the guest a passed-through function is given to; and a map of any other part of the
//! memory window would reach another function's registers, or one the owner places later.
//! A bridge's window is the hull of the BAR windows below it: it must hold no other
//! function's BAR window and overlap no window of a bridge beside it, or the bridge would
//! claim (and route down) the other function's registers.

use std::collections::HashMap;

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};
use iommu_pd::PciFunctionConfig;

use crate::topology::{bridge_window, bridges, bus, functions, Topology, MAX_BRIDGES, WINDOW_GRANULE};

/// Every rule about BAR and bridge windows.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    // The BAR regions, by name, with the device each is the window of (the first).
    let mut bar_of: HashMap<&str, &IoSpace> = HashMap::new();
    for s in &sys.io_spaces {
        let Some(bar) = s.bar.as_deref() else { continue };
        let first = bar_of.get(bar).copied();
        if s.rid.is_some() && first.is_none() {
            bar_of.insert(bar, s);
        }
        if let Some((message, fix)) = window(sys, board, s, bar, first) {
            out.push(p(s.line, "io_address_space", message, fix));
        }
    }
    // Without an IOMMU PD (plain Microkit, or what `build` writes for the Microkit tool)
    // there is no PCI owner, and no BAR windows are described.
    if sys.iommu.is_some() {
        maps(sys, board, &bar_of, out);
    }
    bridge_windows(sys, out);
}

/// What is wrong with `s`'s BAR window `bar` (`first`: the device whose window it already
/// is), if anything: the first problem.
fn window(
    sys: &System,
    board: &Board,
    s: &IoSpace,
    bar: &str,
    first: Option<&IoSpace>,
) -> Option<(String, &'static str)> {
    if s.rid.is_none() {
        return Some((
            format!("`{}` has bar=\"{bar}\" but is not a PCI function (its peripheral_id is a StreamID): it has no BARs to place", s.name),
            "name the device by its PCI address, peripheral_id=\"bus:device.function\", or remove bar=",
        ));
    }
    if let Some(first) = first {
        return Some((
            format!(
                "`{}`'s BAR window `{bar}` is `{}`'s (line {}) too: each function's BARs have a window of their own",
                s.name, first.name, first.line
            ),
            "give each function its own bar=\"...\" region",
        ));
    }
    let Some(r) = sys.region(bar) else {
        return Some((
            format!("`{}`'s bar names `{bar}`, which is no memory region{}", s.name, did_you_mean(bar, sys.regions.iter().map(|r| r.name.as_str()))),
            "declare <memory_region name=\"...\" size=\"0x100000\" phys_addr=\"...\" /> for the function's BAR window and name it in bar=",
        ));
    };
    let Some(pa) = r.phys_addr else {
        return Some((
            format!("`{}`'s BAR window `{bar}` has no phys_addr: the PCI owner places the function's BARs at a fixed address", s.name),
            "give the region phys_addr=\"...\" inside the board's PCI memory window",
        ));
    };
    if pa % WINDOW_GRANULE != 0 || r.size == 0 || r.size % WINDOW_GRANULE != 0 {
        return Some((
            format!("`{}`'s BAR window `{bar}` is {pa:#x}+{:#x}, not whole MiB at a MiB boundary: the bridge windows above it cannot hold it alone", s.name, r.size),
            "give the region a 1 MiB-aligned phys_addr and a size in whole MiB (0x100000)",
        ));
    }
    let (base, size) = board.pci?.mem;
    let inside = pa >= base && u128::from(pa) + u128::from(r.size) <= u128::from(base) + u128::from(size);
    (!inside).then(|| {
        (
            format!("`{}`'s BAR window `{bar}` ({pa:#x}+{:#x}) is outside the board's PCI memory window {base:#x}+{size:#x}, where the host bridge decodes BARs", s.name, r.size),
            "place the region inside the host bridge's memory window",
        )
    })
}

/// Who maps BAR windows and the rest of the host bridge's memory window.
fn maps(sys: &System, board: &Board, bar_of: &HashMap<&str, &IoSpace>, out: &mut Vec<Problem>) {
    let window = board.pci.map(|pci| pci.mem);
    for pd in &sys.pds {
        for (m, vm) in pd.all_maps() {
            let Some(r) = sys.region(&m.mr) else { continue };
            let who = match vm {
                Some(vm) => format!("virtual machine `{}` (run by `{}`)", vm.name, pd.name),
                None => format!("`{}`", pd.name),
            };
            if let Some(s) = bar_of.get(m.mr.as_str()) {
                // An owner that is no PD is refused as such; who else maps its BAR
                // window follows from that.
                if s.owner.as_deref().is_some_and(|o| sys.pd(o).is_none()) {
                    continue;
                }
                // Its owner, or the guest it is passed through to (whose VMM owns it).
                let allowed = match (&s.vm, vm) {
                    (Some(guest), Some(v)) => *guest == v.name,
                    (_, None) => s.owner.as_deref() == Some(pd.name.as_str()),
                    (None, Some(_)) => false,
                };
                if !allowed {
                    let to = match &s.vm {
                        Some(guest) => format!("virtual machine `{guest}`, which it is passed through to"),
                        None => format!("its owner `{}`", s.owner.as_deref().unwrap_or("(none)")),
                    };
                    out.push(p(
                        m.line,
                        "map",
                        format!(
                            "{who} maps `{}`, the BAR window of `{}` ({}): only {to} may, or another driver could drive the device and its DMA engine",
                            m.mr,
                            s.name,
                            bdf(s.rid.unwrap_or(0))
                        ),
                        "remove the map: a driver maps only the BAR windows of the functions it owns",
                    ));
                }
                continue;
            }
            let Some((base, size)) = window else { continue };
            if sys.unread_bars.contains(&m.mr) {
                continue;
            }
            if r.phys_range().is_some_and(|(s, e)| s < u128::from(base) + u128::from(size) && u128::from(base) < e) {
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "{who} maps `{}`, which lies in the host bridge's PCI memory window ({base:#x}+{size:#x}) and is no function's BAR window: it would reach whatever BAR the PCI owner places there",
                        m.mr
                    ),
                    "map a function's BAR window (the region its io_address_space names in bar=) from the function's owner, and nothing else of the window",
                ));
            }
            // The I/O window: the owner places no I/O BARs (it refuses a function that has
            // one), so any map of it reaches only I/O BARs firmware left, of any function.
            let Some((io, io_size)) = board.pci.map(|pci| pci.io) else { continue };
            if r.phys_range().is_some_and(|(s, e)| s < u128::from(io) + u128::from(io_size) && u128::from(io) < e) {
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "{who} maps `{}`, which lies in the host bridge's PCI I/O window ({io:#x}+{io_size:#x}): it would reach the I/O BARs of functions that are not its own",
                        m.mr
                    ),
                    "remove the map: the PCI owner gives functions no I/O BARs, and a driver reaches only its own function's memory BARs",
                ));
            }
        }
    }
}

/// Bridge windows: each the hull of the BAR windows below it, holding no other BAR
/// window. That is also what keeps it off the window of every bridge neither above nor
/// below it: BAR windows are whole MiB (refused otherwise), so each bridge window begins
/// and ends at a BAR window below it, and two that overlapped would each hold a BAR window
/// of the other's.
fn bridge_windows(sys: &System, out: &mut Vec<Problem>) {
    // More bridges than buses are refused as such; their windows are not worth computing.
    if sys.bridges.len() > MAX_BRIDGES {
        return;
    }
    let functions = functions(sys);
    let t = Topology::of(&sys.bridges);
    // Each bridge whose window holds a foreign BAR window, with the first such function. A
    // function sharing the very window of one below the bridge is refused as a shared BAR
    // window already.
    let failing: Vec<Option<((u64, u64), &PciFunctionConfig)>> = sys
        .bridges
        .iter()
        .zip(bridges(sys))
        .map(|(b, config)| {
            let w = match bridge_window(&config, &functions) {
                Ok(w) => w?,
                Err(f) => {
                    // Said once, at the bridge right above the function.
                    let f = &functions[f];
                    if b.secondary != bus(f.rid) {
                        return None;
                    }
                    let s = &sys.io_spaces[f.device];
                    out.push(p(
                        b.line,
                        "pci_bridge",
                        format!(
                            "{} {} has `{}` ({}) below it, whose BAR window {:#x}+{:#x} ends above 4 GiB: a bridge's memory window holds 32-bit addresses only",
                            bridge_kind_name(b.kind), bdf(b.rid), s.name, bdf(f.rid), f.bar_base, f.bar_size
                        ),
                        "place the BAR windows of the functions below bridges under 4 GiB, in the host bridge's memory window",
                    ));
                    return None;
                }
            };
            let below = |f: &PciFunctionConfig| b.covers(bus(f.rid));
            let windows_below: std::collections::HashSet<(u64, u64)> =
                functions.iter().filter(|g| below(g)).map(|g| (g.bar_base, g.bar_size)).collect();
            let shares = |f: &PciFunctionConfig| windows_below.contains(&(f.bar_base, f.bar_size));
            let foreign = functions
                .iter()
                .find(|f| f.bar_size > 0 && !below(f) && overlaps(w, (f.bar_base, f.bar_size)) && !shares(f))?;
            Some((w, foreign))
        })
        .collect();
    let failed: Vec<u16> = sys.bridges.iter().zip(&failing).filter(|(_, f)| f.is_some()).map(|(b, _)| b.rid).collect();
    for (b, fail) in sys.bridges.iter().zip(&failing) {
        let Some((w, f)) = fail else { continue };
        // Said once, at the outermost bridge whose window holds it.
        if t.path(b.bus()).iter().any(|a| failed.contains(&a.rid)) {
            continue;
        }
        let s = &sys.io_spaces[f.device];
        out.push(p(
            b.line,
            "pci_bridge",
            format!(
                "{} {}'s memory window {:#x}+{:#x} (the MiB hull of the BAR windows below it) holds `{}`'s BAR window, and `{}` ({}) is not below it: the bridge would claim that function's registers",
                bridge_kind_name(b.kind), bdf(b.rid), w.0, w.1, s.name, s.name, bdf(f.rid)
            ),
            "place the BAR windows of the functions below each bridge together, apart from every other function's",
        ));
    }
}
