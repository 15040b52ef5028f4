//! What devices can reach, and who maps the IOMMU's own memory.

use std::collections::{HashMap, HashSet};

use crate::model::*;
use crate::problem::{p, Problem};

/// For each region with a physical address, the other regions its physical range
/// overlaps: a sweep over the regions sorted by address, so the cost is in the regions
/// and the overlaps, not in every pair (1,024 regions are a million pairs).
fn overlapping_regions(sys: &System) -> HashMap<&str, Vec<&MemoryRegion>> {
    let mut placed: Vec<(u64, u64, &MemoryRegion)> =
        sys.regions.iter().filter_map(|r| r.phys_addr.map(|a| (a, a.saturating_add(r.size), r))).collect();
    placed.sort_by_key(|&(start, end, _)| (start, end));
    let mut out: HashMap<&str, Vec<&MemoryRegion>> = HashMap::new();
    // The regions that start before the current one and have not ended by its start.
    let mut open: Vec<(u64, &MemoryRegion)> = Vec::new();
    for &(start, end, r) in &placed {
        open.retain(|&(e, _)| e > start);
        for &(_, o) in &open {
            if o.name != r.name {
                out.entry(r.name.as_str()).or_default().push(o);
                out.entry(o.name.as_str()).or_default().push(r);
            }
        }
        if end > start {
            open.push((end, r));
        }
    }
    // In the description's order, as problems are reported.
    out.values_mut().for_each(|v| v.sort_by_key(|r| r.line));
    out
}

/// The IOMMU's own region (of `own`, with its role) that `r` is, or overlaps in physical
/// memory: another name for the same bytes is the same bytes.
fn own_clash<'a>(
    sys: &'a System,
    own: &[(&'static str, &str)],
    r: &MemoryRegion,
) -> Option<(&'static str, &'a MemoryRegion)> {
    own.iter().find_map(|&(role, name)| {
        let o = sys.region(name)?;
        let alias = match (r.phys_addr, o.phys_addr) {
            (Some(a), Some(b)) => overlaps((a, r.size), (b, o.size)),
            _ => false,
        };
        (o.name == r.name || alias).then_some((role, o))
    })
}

/// No device reaches the IOMMU's own memory or another PD's private memory; no PD but the IOMMU PD maps the IOMMU's own memory.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    // What devices can reach must not be the IOMMU PD's own memory or another PD's
    // private memory.
    let granted: HashSet<&str> = sys.caps.iter().filter_map(|c| resolve(sys, c).map(|(mr, _)| mr)).collect();
    let overlapping = overlapping_regions(sys);
    let mut reachable: Vec<(&str, Line, &str, &str)> = Vec::new(); // (region, line, element, who)
    for c in &sys.caps {
        if let Some((mr, _)) = resolve(sys, c) {
            reachable.push((mr, c.line, "dma_capability", c.pd.as_str()));
        }
    }
    for s in &sys.io_spaces {
        for m in &s.iomaps {
            reachable.push((m.mr.as_str(), m.line, m.element(), s.owner.as_deref().unwrap_or("")));
        }
    }
    let own = sys.iommu_own();
    for &(mr, line, element, who) in &reachable {
        let Some(r) = sys.region(mr) else { continue };
        if let Some((role, o)) = own_clash(sys, &own, r) {
            let message = if o.name == mr {
                format!(
                    "devices could reach `{mr}`, {}: with the IOMMU's own tables or queues or its registers, a device could rewrite its own translation and reach any memory",
                    own_role(role)
                )
            } else {
                format!(
                    "`{mr}` overlaps `{}` (line {}) in physical memory, which is {}: a device could rewrite it to reach any memory",
                    o.name,
                    o.line,
                    own_role(role)
                )
            };
            out.push(p(
                line,
                element,
                message,
                "never grant or iomap the IOMMU PD's own regions, or a region that overlaps one in physical memory",
            ));
            continue;
        }
        for other in overlapping.get(mr).into_iter().flatten() {
            let owners: Vec<&str> = sys
                .pds
                .iter()
                .filter(|pd| pd.maps.iter().any(|m| m.mr == other.name))
                .map(|pd| pd.name.as_str())
                .collect();
            if !granted.contains(&other.name.as_str()) && owners.iter().any(|o| *o != who) {
                out.push(p(
                    line,
                    element,
                    format!(
                        "`{mr}` overlaps `{}` (line {}) in physical memory, which is private to {}",
                        other.name,
                        other.line,
                        owners.join(", ")
                    ),
                    "give the DMA region its own physical range",
                ));
            }
        }
    }

    // Only the IOMMU PD maps its own regions, or memory that overlaps one: a PD that can
    // write the SMMU's registers, stream table or queues can point any stream at any
    // memory, and one that can read them learns every other client's mappings.
    if let Some(i) = &sys.iommu {
        for pd in sys.pds.iter().filter(|pd| pd.name != i.pd) {
            for m in &pd.maps {
                let Some((role, o)) = sys.region(&m.mr).and_then(|r| own_clash(sys, &own, r)) else { continue };
                let (what, fix) = if o.name == m.mr {
                    (
                        own_role(role).to_string(),
                        "remove this map: the IOMMU PD alone maps the SMMU's registers, tables and queues".to_string(),
                    )
                } else {
                    (
                        format!(
                            "which overlaps `{}` (line {}) in physical memory: that is {}",
                            o.name,
                            o.line,
                            own_role(role)
                        ),
                        format!("remove this map, or give `{}` a physical range outside `{}`'s", m.mr, o.name),
                    )
                };
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "`{}` maps `{}`, {what}, which only the IOMMU PD `{}` may map, or `{}` could point its devices at any memory",
                        pd.name, m.mr, i.pd, pd.name
                    ),
                    fix,
                ));
            }
        }
    }
}
