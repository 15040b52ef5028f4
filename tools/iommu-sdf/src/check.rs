//! The rules a description must follow for DMA isolation to mean what it says.

use std::collections::{HashMap, HashSet};

use crate::model::*;
use crate::Problem;

const PAGE: u64 = 4096;

pub(crate) fn p(line: Line, element: &str, message: String, fix: impl Into<String>) -> Problem {
    Problem { line, element: element.into(), message, fix: fix.into() }
}

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

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// The region a capability finally names, and its (offset, size) within it, following
/// parents; `None` for a missing parent or a loop.
pub fn resolve<'a>(sys: &'a System, cap: &'a DmaCapability) -> Option<(&'a str, u64)> {
    resolve_by(cap, sys.caps.len(), |name| sys.cap(name))
}

/// `resolve`, finding a parent by name with `cap_named` (for callers that index the
/// capabilities by name); at most `caps` steps, so a loop ends.
pub fn resolve_by<'a>(
    cap: &'a DmaCapability,
    caps: usize,
    cap_named: impl Fn(&str) -> Option<&'a DmaCapability>,
) -> Option<(&'a str, u64)> {
    let mut c = cap;
    let mut offset = 0u64;
    for _ in 0..=caps {
        offset = offset.checked_add(c.offset)?;
        match (&c.mr, &c.parent) {
            (Some(mr), _) => return Some((mr.as_str(), offset)),
            (None, Some(parent)) => c = cap_named(parent)?,
            (None, None) => return None,
        }
    }
    None
}

/// What the IOMMU's own region of `role` is, for messages.
fn own_role(role: &str) -> &'static str {
    match role {
        SMMU_REGS => "the SMMU's registers",
        "stream_table" => "the IOMMU's stream table",
        "cmdq" => "the IOMMU's command queue",
        "eventq" => "the IOMMU's event queue",
        "context_descriptors" => "the IOMMU's context descriptors",
        _ => "the IOMMU's page-table pool",
    }
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

/// Why a name given twice is refused: lookups by name (here) take the first, while the
/// Microkit tool or the generated policy may take either, or both.
const UNCLEAR: &str = "which one a reference means is unclear, so what check accepted need not be what runs";

/// A second `element` with the same key: `items` are `(key, line)` in description order,
/// `named` says what the key is ("named", "for"), `why` why a second is wrong.
fn duplicates<'a>(
    out: &mut Vec<Problem>,
    (element, named, why): (&str, &str, &str),
    fix: &str,
    items: impl Iterator<Item = (&'a str, Line)>,
) {
    let mut first: HashMap<&str, Line> = HashMap::new();
    for (key, line) in items {
        match first.get(key) {
            Some(at) => out.push(p(
                line,
                element,
                format!("a second {element} {named} `{key}` (the first is on line {at}): {why}"),
                fix,
            )),
            None => {
                first.insert(key, line);
            }
        }
    }
}

/// Every rule; problems in description order.
pub fn check(sys: &System) -> Vec<Problem> {
    let mut out = Vec::new();
    let rename = |element: &str| format!("give each {element} its own name, and update what refers to it");
    let names: [(&str, Vec<(&str, Line)>); 4] = [
        ("memory_region", sys.regions.iter().map(|r| (r.name.as_str(), r.line)).collect()),
        ("protection_domain", sys.pds.iter().map(|pd| (pd.name.as_str(), pd.line)).collect()),
        ("io_address_space", sys.io_spaces.iter().map(|s| (s.name.as_str(), s.line)).collect()),
        ("dma_capability", sys.caps.iter().map(|c| (c.name.as_str(), c.line)).collect()),
    ];
    for (element, items) in names {
        duplicates(&mut out, (element, "named", UNCLEAR), &rename(element), items.into_iter());
    }
    duplicates(
        &mut out,
        (
            "dma_quota",
            "for",
            "the policy would bound the PD by the first alone, while the page-table pool is sized for both",
        ),
        "keep one dma_quota per protection domain",
        sys.quotas.iter().map(|q| (q.pd.as_str(), q.line)),
    );
    let owner_of = |space: &str| sys.io_space(space).and_then(|s| s.owner.clone());

    for pd in sys.pds.iter().filter(|pd| pd.parent.is_some() && pd.id.is_none()) {
        out.push(p(
            pd.line,
            "protection_domain",
            format!("child protection domain `{}` has no `id`", pd.name),
            "add id=\"...\": its identifier in its parent",
        ));
    }

    // A setvar of a region that does not exist: the Microkit tool 2.3 panics on it.
    for pd in &sys.pds {
        for v in pd.setvars.iter().filter(|v| v.region_paddr.as_deref().is_some_and(|r| sys.region(r).is_none())) {
            out.push(p(
                v.line,
                "setvar",
                format!(
                    "`{}` is to get the physical address of `{}`, which is no memory_region",
                    v.symbol,
                    v.region_paddr.as_deref().unwrap_or("")
                ),
                "name a memory_region in region_paddr",
            ));
        }
    }

    // Without an IOMMU PD nothing enforces an address space, a capability or a quota, and
    // the checks that need one (its regions, channels, fault rings, pool) are not made: a
    // description with them would only look isolated. Said once, at the first of them.
    if sys.iommu.is_none() {
        let mut ours: Vec<(Line, &str, &str)> = sys
            .io_spaces
            .iter()
            .map(|s| (s.line, "io_address_space", s.name.as_str()))
            .chain(sys.caps.iter().map(|c| (c.line, "dma_capability", c.name.as_str())))
            .chain(sys.quotas.iter().map(|q| (q.line, "dma_quota", q.pd.as_str())))
            .collect();
        ours.sort_by_key(|o| o.0);
        if let Some(&(line, element, name)) = ours.first() {
            out.push(p(
                line,
                element,
                format!(
                    "`{name}` is an {element}, but there is no <iommu>: no IOMMU PD would enforce it or the {} other DMA element(s), and the checks that need one were not made",
                    ours.len() - 1
                ),
                "add <iommu pd=\"...\" stream_table=\"...\" cmdq=\"...\" eventq=\"...\" context_descriptors=\"...\" table_pool=\"...\" /> naming the IOMMU PD and its regions, or remove the DMA elements for plain Microkit",
            ));
        }
    }

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
        // The IOMMU PD sets the SMMU up for as many IOVA bits as the windows need, at most
        // the 48 its page tables have (pds/iommu, `IOVA_BITS`): a window past that could
        // never be mapped.
        if s.iova_size == 0 || s.iova_base.checked_add(s.iova_size).is_none_or(|e| e > IOVA_LIMIT) {
            out.push(p(
                s.line,
                "io_address_space",
                format!(
                    "`{}`'s IOVA window {:#x}+{:#x} is empty or runs past the 48-bit IOVAs the IOMMU PD can set the SMMU up for",
                    s.name, s.iova_base, s.iova_size
                ),
                "keep iova_base + iova_size at most 0x1_0000_0000_0000, and iova_size above 0",
            ));
        }
        for (i, m) in s.iomaps.iter().enumerate() {
            let Some(r) = sys.region(&m.mr) else {
                out.push(p(
                    m.line,
                    m.element(),
                    format!("memory region `{}` does not exist", m.mr),
                    "declare it with <memory_region> or fix the name",
                ));
                continue;
            };
            if m.iovaddr % PAGE != 0 {
                out.push(p(
                    m.line,
                    m.element(),
                    format!("iovaddr {:#x} is not page aligned", m.iovaddr),
                    "use a multiple of 0x1000",
                ));
            }
            let end = m.iovaddr.checked_add(r.size);
            if m.iovaddr < s.iova_base || end.is_none_or(|e| e > s.iova_base.saturating_add(s.iova_size)) {
                out.push(p(
                    m.line,
                    m.element(),
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
                            m.element(),
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

    // A device's other StreamIDs are its alone: none is another device's, or listed twice.
    let mut owner_of_stream: HashMap<u32, (&str, Line)> = HashMap::new();
    for s in &sys.io_spaces {
        owner_of_stream.entry(s.stream).or_insert((s.name.as_str(), s.line));
    }
    for s in &sys.io_spaces {
        for (k, &x) in s.extra_streams.iter().enumerate() {
            let twice = x == s.stream || s.extra_streams[..k].contains(&x);
            match owner_of_stream.insert(x, (s.name.as_str(), s.line)) {
                Some((other, line)) if other != s.name => out.push(p(
                    s.line,
                    "io_address_space",
                    format!("StreamID {x:#x} in `{}`'s streams is also `{other}`'s (line {line})", s.name),
                    "give each StreamID to one device",
                )),
                _ if twice => out.push(p(
                    s.line,
                    "io_address_space",
                    format!("StreamID {x:#x} is listed twice for `{}`", s.name),
                    "list each StreamID once",
                )),
                _ => {}
            }
        }
    }

    // Capabilities.
    let client_list = sys.clients();
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
        for g in &c.grant_to {
            if !client_list.iter().any(|cl| cl.name == *g) {
                out.push(p(
                    c.line,
                    "dma_capability",
                    format!("`{}` may be granted to `{g}`, which is not a client (a PD that owns a device or holds a capability)", c.name),
                    "list in grant_to only PDs that own an io_address_space or hold a dma_capability",
                ));
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
                        // Deriving for another PD is a delegation made at boot: it may go
                        // only where GRANT could take the parent at run time, or any PD
                        // could be handed another's memory by the description alone.
                        if c.pd != par.pd && !par.grant_to.contains(&c.pd) {
                            out.push(p(
                                c.line,
                                "dma_capability",
                                format!(
                                    "`{}` is derived from `{parent}` (line {}), held by `{}`, for `{}`, to whom `{parent}` may not be granted: delegation may only go where the description lets it",
                                    c.name, par.line, par.pd, c.pd
                                ),
                                format!(
                                    "derive it for `{}`, or add `{}` to `{parent}`'s grant_to if it may have this memory",
                                    par.pd, c.pd
                                ),
                            ));
                        }
                        if c.offset.checked_add(c.size).is_none_or(|e| e > par.size) || !par.perms.contains(c.perms) {
                            out.push(p(c.line, "dma_capability", format!("`{}` is wider than its parent `{parent}` (line {}): rights and range may only shrink", c.name, par.line), "keep offset+size within the parent's size and perms within the parent's"));
                        }
                        if let Some(extra) = c.grant_to.iter().find(|g| !par.grant_to.contains(g)) {
                            out.push(p(
                                c.line,
                                "dma_capability",
                                format!("`{}` may be granted to `{extra}`, which its parent `{parent}` (line {}) may not: delegation may only shrink", c.name, par.line),
                                "list in grant_to only clients the parent lists",
                            ));
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }

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
    handle_tables(sys, &mut out);
    passthrough_memory(sys, &mut out);
    if let Some(iommu) = &sys.iommu {
        if sys.pd(&iommu.pd).is_none() {
            out.push(p(
                iommu.line,
                "iommu",
                format!("`{}` is not a protection domain", iommu.pd),
                "name the IOMMU PD in pd=\"...\"",
            ));
        }
        for (_, name) in &iommu.private {
            if sys.region(name).is_none() {
                out.push(p(
                    iommu.line,
                    "iommu",
                    format!("memory region `{name}` does not exist"),
                    "declare it with <memory_region>",
                ));
            }
        }
        // Worst case with 4 KiB pages and a 48-bit IOVA space: a root per device, and each
        // page of quota in its own level-1, level-2 and level-3 table.
        let worst = crate::plumbing::table_pool_pages(sys);
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
    if let Some(i) = &sys.iommu {
        if i.max_faults == 0 || i.max_faults > u32::MAX as u64 || i.fault_window_us == 0 {
            out.push(p(
                i.line,
                "iommu",
                format!(
                    "fault storms are set to more than {} faults in {} us: a device would be quarantined by its first fault, or never",
                    i.max_faults, i.fault_window_us
                ),
                "give max_faults between 1 and 4294967295 and fault_window_us of at least 1 (or leave both out: 300 in a second)",
            ));
        }
    }
    conventions(sys, &mut out);
    out.sort_by_key(|p| p.line);
    out
}

/// A device passed through to a VM reaches the guest's RAM: none of it may be another
/// PD's memory (only the VMM, which runs the guest, may map it too).
fn passthrough_memory(sys: &System, out: &mut Vec<Problem>) {
    for s in sys.io_spaces.iter().filter(|s| s.vm.is_some()) {
        let vmm = s.owner.as_deref().unwrap_or_default();
        for m in &s.iomaps {
            if let Some(other) = sys.pds.iter().find(|pd| pd.name != vmm && pd.maps.iter().any(|x| x.mr == m.mr)) {
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "the guest's `{}` is also mapped by `{}`: `{}`, passed through to the guest, would reach that PD's memory",
                        m.mr, other.name, s.name
                    ),
                    "give the guest memory no other protection domain maps",
                ));
            }
            // Nor may another PD's device reach the guest's RAM.
            let other_device = sys
                .io_spaces
                .iter()
                .filter(|o| o.owner.as_deref() != Some(vmm))
                .find_map(|o| o.iomaps.iter().find(|x| x.mr == m.mr).map(|x| (o.name.as_str(), x.line)));
            let other_cap = sys
                .caps
                .iter()
                .filter(|c| c.pd != vmm && resolve(sys, c).is_some_and(|(mr, _)| mr == m.mr))
                .map(|c| (c.name.as_str(), c.line))
                .next();
            if let Some((what, line)) = other_device.or(other_cap) {
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "the guest's `{}` is also reachable by a device that is not its VMM's, through `{what}` (line {line})",
                        m.mr
                    ),
                    "give the guest memory that only its VMM's devices may reach",
                ));
            }
        }
    }
}

/// Every client's handle table must hold, at once, its own capabilities, a record of
/// every grant it may make, and every grant each client that could lend to it may make
/// (by their `grants` quotas): then no client can fill another's table. The count is the
/// service's own (`Config::handles_needed`), on the policy `build` generates.
fn handle_tables(sys: &System, out: &mut Vec<Problem>) {
    if sys.iommu.is_none() {
        return;
    }
    // The service names devices and clients by bits of 64-bit masks: more would alias.
    if let Some(s) = sys.io_spaces.get(iommu_pd::service::MAX_DEVICES) {
        out.push(p(
            s.line,
            "io_address_space",
            format!(
                "`{}` is device number {} and the IOMMU PD serves at most {}",
                s.name,
                iommu_pd::service::MAX_DEVICES + 1,
                iommu_pd::service::MAX_DEVICES
            ),
            "give fewer devices IO address spaces, or share one (alias_ok) where they are one bridge",
        ));
        return;
    }
    let extra: usize = sys.io_spaces.iter().map(|s| s.extra_streams.len()).sum();
    if extra > smmuv3_service::MAX_EXTRA_STREAMS {
        let last = sys.io_spaces.iter().rev().find(|s| !s.extra_streams.is_empty()).map_or(0, |s| s.line);
        out.push(p(
            last,
            "io_address_space",
            format!(
                "the devices have {extra} StreamIDs beyond their first; the IOMMU PD's SMMU backend attaches at most {}",
                smmuv3_service::MAX_EXTRA_STREAMS
            ),
            "give fewer devices more than one StreamID",
        ));
    }
    let clients = sys.clients();
    if let Some(c) = clients.get(64) {
        out.push(p(
            c.line,
            "protection_domain",
            format!("`{}` is client number 65 and the IOMMU PD serves at most 64", c.name),
            "fewer PDs may own devices or hold DMA capabilities",
        ));
        return;
    }
    let policy = crate::policy::policy(sys);
    let clients: Vec<_> = policy.clients.iter().map(|c| c.1).collect();
    let devices: Vec<_> = policy.devices.iter().map(|d| d.1).collect();
    let regions: Vec<_> = policy.regions.iter().map(|r| r.1).collect();
    let caps: Vec<_> = policy.caps.iter().map(|c| c.1).collect();
    let cfg = iommu_pd::Config {
        clients: &clients,
        devices: &devices,
        regions: &regions,
        caps: &caps,
        static_maps: &policy.static_maps,
        faults: iommu_pd::FaultPolicy { window: 1, max_faults: 1 },
    };
    for (i, (name, _)) in policy.clients.iter().enumerate() {
        let needed = cfg.handles_needed(i);
        if needed > iommu_pd::service::MAX_HANDLES {
            let (line, element) = match sys.quotas.iter().find(|q| q.pd == *name) {
                Some(q) => (q.line, "dma_quota"),
                None => (sys.pd(name).map_or(0, |pd| pd.line), "protection_domain"),
            };
            out.push(p(
                line,
                element,
                format!(
                    "`{name}` may need {needed} handles at once (its capabilities, its grants, and the grants of every client that may lend to it); a client has {}",
                    iommu_pd::service::MAX_HANDLES
                ),
                "lower the `grants` quotas of the clients that may lend to it, or lend it less",
            ));
        }
    }
}

/// The IOMMU PD's map with `setvar_vaddr=symbol`, which a symbol can name once: each
/// further map with it is refused (`why` says what goes wrong, `fix` what to do).
fn symbol_map<'a>(
    iommu: &'a ProtectionDomain,
    symbol: &str,
    (why, fix): (&str, &str),
    out: &mut Vec<Problem>,
) -> Option<&'a Map> {
    let mut maps = iommu.maps.iter().filter(|m| m.setvar_vaddr.as_deref() == Some(symbol));
    let first = maps.next()?;
    for m in maps {
        out.push(p(
            m.line,
            "map",
            format!(
                "a second map with setvar_vaddr=\"{symbol}\" in the IOMMU PD `{}` (the first is on line {}): the symbol can hold only one address{why}",
                iommu.name, first.line
            ),
            fix,
        ));
    }
    Some(first)
}

/// The conventions the IOMMU PD (`pds/iommu`) relies on. Client `i` (in
/// `System::clients` order, its index in the generated policy) calls it on the channel
/// whose IOMMU end has id `i + 1`; its fault ring is the one-page region the IOMMU PD
/// maps at `fault_rings + i * 0x1000`; it runs below the IOMMU PD; and, as the IOMMU PD's
/// child, it has id `i + 1`. A broken convention would have a driver served as another
/// client, with that client's capabilities, or let it forge its own fault records.
fn conventions(sys: &System, out: &mut Vec<Problem>) {
    let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) else { return };
    let clients = sys.clients();
    let n = clients.len() as u64;
    let index = |pd: &str| clients.iter().position(|c| c.name == pd);
    let reserved = |id: u64| (1..=n).contains(&id);
    // The IOMMU PD's end and the client's end of each channel between them.
    let iommu_channels: Vec<(&ChannelEnd, &ChannelEnd)> = sys
        .channels
        .iter()
        .filter_map(|ch| ch.end_of(&iommu.name))
        .filter(|(_, theirs)| theirs.pd != iommu.name)
        .collect();

    // Channels: the IOMMU PD's ids 1..=N are the clients', in order.
    for &(mine, theirs) in &iommu_channels {
        // The IOMMU PD calls no one: a call would block it on the other PD (and, passive,
        // run it on that PD's scheduling context).
        if mine.pp {
            let whom = if index(&theirs.pd).is_some() { "client " } else { "" };
            out.push(p(
                mine.line,
                "end",
                format!(
                    "the IOMMU PD `{}` may call {whom}`{}` (pp=\"true\" on its end): it would block on another PD",
                    iommu.name, theirs.pd
                ),
                "remove pp=\"true\" from the IOMMU PD's end: other PDs call the IOMMU PD, never the reverse",
            ));
        }
        match index(&theirs.pd) {
            Some(j) => {
                let own = j as u64 + 1;
                if mine.id == own {
                    if !theirs.pp {
                        out.push(p(
                            theirs.line,
                            "end",
                            format!(
                                "client {j} `{}` cannot call the IOMMU PD `{}` on its channel: its end has no pp=\"true\"",
                                theirs.pd, iommu.name
                            ),
                            "add pp=\"true\" to the client's end",
                        ));
                    }
                } else if reserved(mine.id) {
                    let other = clients[(mine.id - 1) as usize];
                    out.push(p(
                        mine.line,
                        "end",
                        format!(
                            "the IOMMU PD's end of client {j} `{}`'s channel has id {}, which is client {} `{}`'s: `{}` would be served as `{}`, with its capabilities",
                            theirs.pd, mine.id, mine.id - 1, other.name, theirs.pd, other.name
                        ),
                        format!("use id=\"{own}\" at the IOMMU PD's end: client i's channel is id i + 1"),
                    ));
                } else if !iommu_channels.iter().any(|(m, t)| t.pd == theirs.pd && m.id == own) {
                    out.push(p(
                        mine.line,
                        "end",
                        format!(
                            "the IOMMU PD's end of client {j} `{}`'s channel has id {}: the IOMMU PD serves client {j} on id {own} only",
                            theirs.pd, mine.id
                        ),
                        format!("use id=\"{own}\" at the IOMMU PD's end: client i's channel is id i + 1"),
                    ));
                }
            }
            None if reserved(mine.id) => {
                let other = clients[(mine.id - 1) as usize];
                out.push(p(
                    mine.line,
                    "end",
                    format!(
                        "the IOMMU PD's end of the channel to `{}` has id {}, which is client {} `{}`'s: `{}` would be served as `{}`, with its capabilities",
                        theirs.pd, mine.id, mine.id - 1, other.name, theirs.pd, other.name
                    ),
                    format!("give this channel an id above {n} at the IOMMU PD's end: ids 1..={n} are the clients'"),
                ));
            }
            None => {}
        }
    }
    for (j, c) in clients.iter().enumerate() {
        if c.name != iommu.name && !iommu_channels.iter().any(|(_, theirs)| theirs.pd == c.name) {
            out.push(p(
                c.line,
                "protection_domain",
                format!(
                    "client {j} `{}` has no channel to the IOMMU PD `{}`: it cannot ask for DMA mappings",
                    c.name, iommu.name
                ),
                format!(
                    "add <channel><end pd=\"{}\" id=\"0\" pp=\"true\" /><end pd=\"{}\" id=\"{}\" /></channel>",
                    c.name,
                    iommu.name,
                    j + 1
                ),
            ));
        }
    }

    // Its own regions: it learns each one's address, size and physical address through
    // symbols of fixed names (pds/iommu), which the Microkit tool writes only if asked.
    if let Some(i) = &sys.iommu {
        for (role, region) in &i.private {
            let sym = own_region_symbol(role);
            let (size, paddr) = (format!("{sym}_size"), format!("{sym}_paddr"));
            match iommu.maps.iter().find(|m| &m.mr == region) {
                None => out.push(p(
                    iommu.line,
                    "protection_domain",
                    format!("the IOMMU PD `{}` does not map its {role} `{region}`", iommu.name),
                    format!(
                        "add <map mr=\"{region}\" vaddr=\"...\" perms=\"rw\" setvar_vaddr=\"{sym}\" setvar_size=\"{size}\" />"
                    ),
                )),
                Some(m) if m.setvar_vaddr.as_deref() != Some(sym) || m.setvar_size.as_deref() != Some(&size) => {
                    out.push(p(
                        m.line,
                        "map",
                        format!(
                            "the IOMMU PD maps its {role} `{region}` without setvar_vaddr=\"{sym}\" setvar_size=\"{size}\": it would not know where it is or how big"
                        ),
                        format!("add setvar_vaddr=\"{sym}\" setvar_size=\"{size}\" to this map"),
                    ))
                }
                Some(_) => {}
            }
            if !iommu.setvars.iter().any(|v| v.symbol == paddr && v.region_paddr.as_deref() == Some(region)) {
                out.push(p(
                    iommu.line,
                    "protection_domain",
                    format!(
                        "the IOMMU PD `{}` is not told the physical address of its {role} `{region}`, which the SMMU needs",
                        iommu.name
                    ),
                    format!("add <setvar symbol=\"{paddr}\" region_paddr=\"{region}\" /> to the IOMMU PD"),
                ));
            }
        }
    }

    // The SMMU's registers: the IOMMU PD finds them through the symbol `smmu_regs`, and
    // that map is also how this tool knows which region to keep from every other PD and
    // every device.
    let twice = (
        ", and only the first region would be kept from other PDs and devices",
        "keep setvar_vaddr=\"smmu_regs\" on the map of the SMMU's register frame only",
    );
    if symbol_map(iommu, SMMU_REGS, twice, out).is_none() {
        out.push(p(
            iommu.line,
            "protection_domain",
            format!(
                "the IOMMU PD `{}` has no map with setvar_vaddr=\"smmu_regs\": it would not find the SMMU, and nothing here says which region is the SMMU's registers, to keep other PDs and devices from it",
                iommu.name
            ),
            "map the SMMU's register frame in the IOMMU PD with perms=\"rw\" cached=\"false\" setvar_vaddr=\"smmu_regs\"",
        ));
    }

    crate::scheduling::check(sys, iommu, &clients, out);

    // Child PDs of the IOMMU PD: child id i + 1 is client i.
    for pd in sys.pds.iter().filter(|pd| pd.parent.as_deref() == Some(iommu.name.as_str())) {
        let Some(id) = pd.id else { continue };
        let taken_as = if reserved(id) {
            format!("taken for client {} `{}`'s", id - 1, clients[(id - 1) as usize].name)
        } else {
            "not be known as any client's".to_string()
        };
        match index(&pd.name) {
            Some(j) if id != j as u64 + 1 => out.push(p(
                pd.line,
                "protection_domain",
                format!(
                    "client {j} `{}` is a child of the IOMMU PD `{}` with id {id}: the IOMMU PD takes child id i + 1 as client i, so its faults would be {taken_as}",
                    pd.name, iommu.name
                ),
                format!("use id=\"{}\" (client index + 1)", j + 1),
            )),
            None if reserved(id) => out.push(p(
                pd.line,
                "protection_domain",
                format!(
                    "`{}` is a child of the IOMMU PD `{}` with id {id}, but is not a client: its faults would be {taken_as}",
                    pd.name, iommu.name
                ),
                format!("give it an id above {n}: child ids 1..={n} are the clients'"),
            )),
            _ => {}
        }
    }

    // Fault rings: client i's is the one-page region at `fault_rings + i * 0x1000`.
    if n == 0 {
        return;
    }
    let twice = ("", "keep setvar_vaddr=\"fault_rings\" on client 0's ring only; the others follow it page by page");
    let Some(first) = symbol_map(iommu, "fault_rings", twice, out) else {
        out.push(p(
            iommu.line,
            "protection_domain",
            format!(
                "the IOMMU PD `{}` serves {n} client(s) but has no map with setvar_vaddr=\"fault_rings\": it has nowhere to write their fault records",
                iommu.name
            ),
            "map one page-sized region per client, in client order at consecutive addresses, the first with setvar_vaddr=\"fault_rings\"",
        ));
        return;
    };
    let Some(base) = first.vaddr else { return };
    let mut rings: Vec<(usize, &str, Line)> = Vec::new();
    for (j, c) in clients.iter().enumerate() {
        let Some(va) = (j as u64).checked_mul(PAGE).and_then(|o| base.checked_add(o)) else { break };
        let Some(m) = iommu.maps.iter().find(|m| m.vaddr == Some(va)) else {
            out.push(p(
                first.line,
                "map",
                format!(
                    "no fault ring for client {j} `{}`: the IOMMU PD `{}` maps nothing at {va:#x} (fault_rings {base:#x} + {j} * 0x1000)",
                    c.name, iommu.name
                ),
                format!(
                    "declare a one-page region for it and map it in the IOMMU PD at vaddr=\"{va:#x}\" perms=\"rw\" (and perms=\"r\" in `{}`, if it reads it)",
                    c.name
                ),
            ));
            continue;
        };
        if let Some(size) = sys.region(&m.mr).map(|r| r.size).filter(|s| *s != PAGE) {
            out.push(p(
                m.line,
                "map",
                format!(
                    "`{}` at {va:#x} is client {j} `{}`'s fault ring but is {size:#x} bytes: a ring is one page, and the next client's starts at the next page",
                    m.mr, c.name
                ),
                "make each client's fault ring its own region of size=\"0x1000\"",
            ));
        }
        if !(m.perms.read && m.perms.write) {
            out.push(p(
                m.line,
                "map",
                format!(
                    "the IOMMU PD maps client {j} `{}`'s fault ring `{}` without read and write: it writes the records and reads them back",
                    c.name, m.mr
                ),
                "use perms=\"rw\"",
            ));
        }
        if let Some(&(k, _, _)) = rings.iter().find(|(_, r, _)| *r == m.mr) {
            out.push(p(
                m.line,
                "map",
                format!(
                    "`{}` is the fault ring of client {j} `{}` and of client {k} `{}`: each would read the other's faults",
                    m.mr, c.name, clients[k].name
                ),
                "give each client its own one-page ring region",
            ));
            continue;
        }
        rings.push((j, m.mr.as_str(), m.line));
    }
    // Each capability's region, resolved once.
    let granted: Vec<(&DmaCapability, &str)> =
        sys.caps.iter().filter_map(|c| resolve(sys, c).map(|(mr, _)| (c, mr))).collect();
    let own = sys.iommu_own();
    for &(j, mr, line) in &rings {
        let client = &clients[j].name;
        if let Some(&(role, _)) = own.iter().find(|(_, name)| *name == mr) {
            out.push(p(
                line,
                "map",
                format!(
                    "`{mr}` is client {j} `{client}`'s fault ring and one of the IOMMU's own regions, {}",
                    own_role(role)
                ),
                "give the fault ring its own region",
            ));
        }
        for pd in sys.pds.iter().filter(|pd| pd.name != iommu.name) {
            for m in pd.maps.iter().filter(|m| m.mr == mr) {
                if pd.name == *client {
                    if m.perms.write {
                        out.push(p(
                            m.line,
                            "map",
                            format!(
                                "client {j} `{client}` maps its fault ring `{mr}` writable: it could forge or erase the fault records the IOMMU PD reads back"
                            ),
                            "map it perms=\"r\"",
                        ));
                    }
                } else {
                    out.push(p(
                        m.line,
                        "map",
                        format!(
                            "`{}` maps `{mr}`, client {j} `{client}`'s fault ring: only the IOMMU PD and that client may",
                            pd.name
                        ),
                        "remove this map: a PD reads its own fault ring only",
                    ));
                }
            }
        }
        for &(c, _) in granted.iter().filter(|(_, r)| *r == mr) {
            out.push(p(
                c.line,
                "dma_capability",
                format!(
                    "`{}` grants `{mr}`, client {j} `{client}`'s fault ring, for DMA: a device could forge its fault records",
                    c.name
                ),
                "never grant or iomap a fault ring",
            ));
        }
        for m in sys.io_spaces.iter().flat_map(|s| s.iomaps.iter()).filter(|m| m.mr == mr) {
            out.push(p(
                m.line,
                m.element(),
                format!("`{mr}`, client {j} `{client}`'s fault ring, is mapped for DMA: a device could forge its fault records"),
                "never grant or iomap a fault ring",
            ));
        }
    }
}

/// The end of the largest IOVA space the IOMMU PD can set the SMMU up for
/// (`Config::ias_bits` at most 48).
pub const IOVA_LIMIT: u64 = 1 << 48;

/// The symbol through which the IOMMU PD (pds/iommu) learns where its region for `role`
/// is mapped; `_size` and `_paddr` follow it.
pub fn own_region_symbol(role: &str) -> &'static str {
    match role {
        "stream_table" => "smmu_strtab",
        "cmdq" => "smmu_cmdq",
        "eventq" => "smmu_eventq",
        "context_descriptors" => "smmu_cds",
        _ => "smmu_tables",
    }
}
