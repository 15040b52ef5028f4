//! The rules a description must follow for DMA isolation to mean what it says.

use crate::model::*;
use crate::Problem;

const PAGE: u64 = 4096;

fn p(line: Line, element: &str, message: String, fix: impl Into<String>) -> Problem {
    Problem { line, element: element.into(), message, fix: fix.into() }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// The region a capability finally names, and its (offset, size) within it, following
/// parents; `None` for a missing parent or a loop.
pub fn resolve<'a>(sys: &'a System, cap: &'a DmaCapability) -> Option<(&'a str, u64)> {
    let mut c = cap;
    let mut offset = 0u64;
    for _ in 0..=sys.caps.len() {
        offset = offset.checked_add(c.offset)?;
        match (&c.mr, &c.parent) {
            (Some(mr), _) => return Some((mr.as_str(), offset)),
            (None, Some(parent)) => c = sys.cap(parent)?,
            (None, None) => return None,
        }
    }
    None
}

/// Every rule; problems in description order.
pub fn check(sys: &System) -> Vec<Problem> {
    let mut out = Vec::new();
    let owner_of = |space: &str| sys.io_space(space).and_then(|s| s.owner.clone());

    // IO address spaces: owners, windows, static maps.
    for s in &sys.io_spaces {
        if let Some(o) = &s.owner {
            if sys.pd(o).is_none() {
                out.push(p(
                    s.line,
                    "io_address_space",
                    format!("`{}` is owned by `{o}`, which is not a protection domain", s.name),
                    "name an existing protection_domain in owner=\"...\"",
                ));
            }
        }
        for (i, m) in s.iomaps.iter().enumerate() {
            let Some(r) = sys.region(&m.mr) else {
                out.push(p(
                    m.line,
                    "iomap",
                    format!("memory region `{}` does not exist", m.mr),
                    "declare it with <memory_region> or fix the name",
                ));
                continue;
            };
            if m.iovaddr % PAGE != 0 {
                out.push(p(
                    m.line,
                    "iomap",
                    format!("iovaddr {:#x} is not page aligned", m.iovaddr),
                    "use a multiple of 0x1000",
                ));
            }
            let end = m.iovaddr.checked_add(r.size);
            if m.iovaddr < s.iova_base || end.is_none_or(|e| e > s.iova_base.saturating_add(s.iova_size)) {
                out.push(p(
                    m.line,
                    "iomap",
                    format!(
                        "`{}` at {:#x}..{:#x} is outside `{}`'s IOVA window {:#x}..{:#x}",
                        m.mr,
                        m.iovaddr,
                        m.iovaddr.saturating_add(r.size),
                        s.name,
                        s.iova_base,
                        s.iova_base.saturating_add(s.iova_size)
                    ),
                    "move the iomap into the window or widen iova_base/iova_size",
                ));
            }
            for other in &s.iomaps[..i] {
                if let Some(ro) = sys.region(&other.mr) {
                    if overlaps((m.iovaddr, r.size), (other.iovaddr, ro.size)) {
                        out.push(p(
                            m.line,
                            "iomap",
                            format!(
                                "`{}` at {:#x} overlaps `{}` at {:#x} (line {}) in `{}`",
                                m.mr, m.iovaddr, other.mr, other.iovaddr, other.line, s.name
                            ),
                            "give the two iomaps IOVA ranges that do not overlap",
                        ));
                    }
                }
            }
        }
    }

    // StreamIDs: one owner each; aliasing only when acknowledged.
    for (i, s) in sys.io_spaces.iter().enumerate() {
        for t in &sys.io_spaces[..i] {
            if s.stream != t.stream {
                continue;
            }
            if s.owner != t.owner {
                out.push(p(s.line, "io_address_space", format!("StreamID {:#x} of `{}` is also `{}`'s (line {}), with another owner: either driver could reach the other's memory", s.stream, s.name, t.name, t.line), "give each device its own StreamID, or one owner"));
            } else if !(s.alias_ok && t.alias_ok) {
                out.push(p(
                    s.line,
                    "io_address_space",
                    format!(
                        "`{}` and `{}` (line {}) share StreamID {:#x}: the SMMU cannot tell them apart",
                        s.name, t.name, t.line, s.stream
                    ),
                    "if the devices really alias (a bridge), say alias_ok=\"true\" on both",
                ));
            }
        }
    }

    // Capabilities.
    for c in &sys.caps {
        let Some(holder) = sys.pd(&c.pd) else {
            out.push(p(
                c.line,
                "dma_capability",
                format!("`{}` is held by `{}`, which is not a protection domain", c.name, c.pd),
                "name an existing protection_domain in pd=\"...\"",
            ));
            continue;
        };
        if c.offset % PAGE != 0 || c.size % PAGE != 0 || c.size == 0 {
            out.push(p(c.line, "dma_capability", format!("`{}` covers {:#x}+{:#x}, not whole pages", c.name, c.offset, c.size), "use page-aligned offset and size (multiples of 0x1000): a page is mapped only if the capability covers all of it"));
        }
        for d in &c.devices {
            match owner_of(d) {
                None if sys.io_space(d).is_none() => out.push(p(
                    c.line,
                    "dma_capability",
                    format!("device `{d}` of `{}` is not an io_address_space", c.name),
                    "name an existing io_address_space in devices=\"...\"",
                )),
                Some(o) if o == c.pd => {}
                o => out.push(p(
                    c.line,
                    "dma_capability",
                    format!(
                        "`{}` lets `{}` map for `{d}`, which is owned by {}",
                        c.name,
                        c.pd,
                        o.map(|o| format!("`{o}`")).unwrap_or("nobody".into())
                    ),
                    "list only devices whose io_address_space has owner=\"this pd\"",
                )),
            }
        }
        match (&c.mr, &c.parent) {
            (Some(mr), _) => {
                let Some(r) = sys.region(mr) else {
                    out.push(p(
                        c.line,
                        "dma_capability",
                        format!("memory region `{mr}` does not exist"),
                        "declare it with <memory_region> or fix the name",
                    ));
                    continue;
                };
                if c.offset.checked_add(c.size).is_none_or(|e| e > r.size) {
                    out.push(p(
                        c.line,
                        "dma_capability",
                        format!(
                            "`{}` ({:#x}+{:#x}) runs past the end of `{mr}` ({:#x} bytes)",
                            c.name, c.offset, c.size, r.size
                        ),
                        "shrink the capability to fit the region",
                    ));
                }
                if !holder.maps.iter().any(|m| m.mr == *mr) {
                    out.push(p(c.line, "dma_capability", format!("`{}` gives `{}` region `{mr}`, which it does not map", c.name, c.pd), format!("add <map mr=\"{mr}\" .../> to protection domain `{}`, or grant the region to the PD that maps it", c.pd)));
                }
            }
            (None, Some(parent)) => {
                match sys.cap(parent) {
                    None => out.push(p(
                        c.line,
                        "dma_capability",
                        format!("parent capability `{parent}` does not exist"),
                        "name an existing dma_capability in parent=\"...\"",
                    )),
                    Some(par) => {
                        if resolve(sys, c).is_none() {
                            out.push(p(
                                c.line,
                                "dma_capability",
                                format!("`{}` derives from itself through its parents", c.name),
                                "break the loop: a root capability names mr=\"...\"",
                            ));
                            continue;
                        }
                        if c.offset.checked_add(c.size).is_none_or(|e| e > par.size) || !par.perms.contains(c.perms) {
                            out.push(p(c.line, "dma_capability", format!("`{}` is wider than its parent `{parent}` (line {}): rights and range may only shrink", c.name, par.line), "keep offset+size within the parent's size and perms within the parent's"));
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }

    // What devices can reach must not be the IOMMU PD's own memory or another PD's
    // private memory.
    let granted: Vec<&str> = sys.caps.iter().filter_map(|c| resolve(sys, c).map(|(mr, _)| mr)).collect();
    let mut reachable: Vec<(&str, Line, &str, &str)> = Vec::new(); // (region, line, element, who)
    for c in &sys.caps {
        if let Some((mr, _)) = resolve(sys, c) {
            reachable.push((mr, c.line, "dma_capability", c.pd.as_str()));
        }
    }
    for s in &sys.io_spaces {
        for m in &s.iomaps {
            reachable.push((m.mr.as_str(), m.line, "iomap", s.owner.as_deref().unwrap_or("")));
        }
    }
    for &(mr, line, element, who) in &reachable {
        let Some(r) = sys.region(mr) else { continue };
        if let Some(iommu) = &sys.iommu {
            if iommu.private.iter().any(|(name, _)| name == mr) {
                out.push(p(
                    line,
                    element,
                    format!("devices could reach `{mr}`, which holds the IOMMU's own tables or queues"),
                    "never grant or iomap the IOMMU PD's regions",
                ));
                continue;
            }
        }
        for other in &sys.regions {
            if other.name == mr {
                continue;
            }
            let (Some(a), Some(b)) = (r.phys_addr, other.phys_addr) else { continue };
            if !overlaps((a, r.size), (b, other.size)) {
                continue;
            }
            let owners: Vec<&str> = sys
                .pds
                .iter()
                .filter(|pd| pd.maps.iter().any(|m| m.mr == other.name))
                .map(|pd| pd.name.as_str())
                .collect();
            let private = !granted.contains(&other.name.as_str()) && owners.iter().any(|o| *o != who);
            let iommu_own = sys.iommu.as_ref().is_some_and(|i| i.private.iter().any(|(n, _)| *n == other.name));
            if iommu_own || private {
                out.push(p(
                    line,
                    element,
                    format!(
                        "`{mr}` overlaps `{}` (line {}) in physical memory, which is {}",
                        other.name,
                        other.line,
                        if iommu_own {
                            "the IOMMU's own".to_string()
                        } else {
                            format!("private to {}", owners.join(", "))
                        }
                    ),
                    "give the DMA region its own physical range",
                ));
            }
        }
    }

    // Quotas and the page-table pool.
    for q in &sys.quotas {
        if sys.pd(&q.pd).is_none() {
            out.push(p(
                q.line,
                "dma_quota",
                format!("`{}` is not a protection domain", q.pd),
                "name an existing protection_domain in pd=\"...\"",
            ));
        }
    }
    for pd in &sys.pds {
        let spaces: Vec<&IoSpace> =
            sys.io_spaces.iter().filter(|s| s.owner.as_deref() == Some(pd.name.as_str())).collect();
        let (maps, pages): (u64, u64) = spaces
            .iter()
            .flat_map(|s| s.iomaps.iter())
            .fold((0, 0), |(n, pg), m| (n + 1, pg + sys.region(&m.mr).map(|r| r.size.div_ceil(PAGE)).unwrap_or(0)));
        if let Some(q) = sys.quotas.iter().find(|q| q.pd == pd.name) {
            if maps > q.mappings || pages > q.pages {
                out.push(p(
                    q.line,
                    "dma_quota",
                    format!(
                        "`{}`'s static iomaps need {maps} mappings and {pages} pages; its quota allows {} and {}",
                        pd.name, q.mappings, q.pages
                    ),
                    "raise the quota or remove iomaps",
                ));
            }
        } else if sys.iommu.is_some() && sys.caps.iter().any(|c| c.pd == pd.name) {
            out.push(p(
                pd.line,
                "protection_domain",
                format!("`{}` holds DMA capabilities but has no dma_quota: what it can map is unbounded", pd.name),
                format!("add <dma_quota pd=\"{}\" mappings=\"...\" pages=\"...\"/>", pd.name),
            ));
        }
    }
    if let Some(iommu) = &sys.iommu {
        if sys.pd(&iommu.pd).is_none() {
            out.push(p(
                iommu.line,
                "iommu",
                format!("`{}` is not a protection domain", iommu.pd),
                "name the IOMMU PD in pd=\"...\"",
            ));
        }
        for (name, line) in &iommu.private {
            if sys.region(name).is_none() {
                out.push(p(
                    *line,
                    "iommu",
                    format!("memory region `{name}` does not exist"),
                    "declare it with <memory_region>",
                ));
            }
        }
        // Worst case with 4 KiB pages and a 48-bit IOVA space: a root per device, and each
        // page of quota in its own level-1, level-2 and level-3 table.
        let quota_pages: u64 = sys.quotas.iter().map(|q| q.pages.min(1 << 36)).sum();
        let worst = sys.io_spaces.len() as u64 + 3 * quota_pages;
        if let Some(pool) = sys.region(&iommu.table_pool) {
            let have = pool.size / PAGE;
            if have < worst {
                out.push(p(
                    iommu.line,
                    "iommu",
                    format!(
                        "the page-table pool `{}` has {have} pages; the quotas allow mappings that need up to {worst}",
                        pool.name
                    ),
                    format!("make `{}` at least {:#x} bytes, or lower the quotas", pool.name, worst * PAGE),
                ));
            }
        }
    }
    out.sort_by_key(|p| p.line);
    out
}
