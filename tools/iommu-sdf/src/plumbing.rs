//! The IOMMU plumbing a description may leave out, written by the conventions the IOMMU
//! PD relies on (`pds/iommu`; `check` refuses a hand-written one that breaks them). A
//! description leaves it out by naming none of the IOMMU's regions in `<iommu>`; one that
//! names them writes it all by hand. What is written, where the description has not:
//! - the IOMMU's own regions (`stream_table`, `cmdq`, `eventq`, `context_descriptors`,
//!   `table_pool`, as `smmu_strtab`, ...), with the IOMMU PD's map of each
//!   (`setvar_vaddr="smmu_..."`, `setvar_size`) and its physical address (`setvar`); the
//!   page-table pool sized for the worst case the quotas allow;
//! - the clients' fault rings, when the IOMMU PD maps none: one page each, named
//!   `<client>_faults`, mapped in the IOMMU PD in client order from `fault_rings` (a client
//!   that reads its records maps its ring read-only itself, by that name);
//! - each client's channel to the IOMMU PD, when it has none: id 0 at the client, which
//!   calls (`pp`), and client index + 1 at the IOMMU PD;
//! - the `id` of a client nested in the IOMMU PD (client index + 1).
//!
//! What stays the user's: the SMMU's register frame and interrupts (the board's), which
//! PDs are the IOMMU PD's children (nesting is the text's structure), priorities and cores.
//!
//! `complete` adds what it writes to the model, so `check`, the policy and the report see
//! the whole system, and keeps the text to insert; `build` writes it on lines that exist
//! already (where `<iommu>` was, and the IOMMU PD's closing line), so the Microkit tool's
//! line numbers stay the user's.

use std::fmt::Write as _;

use crate::model::*;

/// The IOMMU's own regions: the `<iommu>` attribute naming each, the region and symbol
/// it gets when generated, its size and page size.
const OWN: [(&str, &str, u64, Option<u64>); 5] = [
    // A two-level stream table's level-2 tables are 16 KiB aligned: 2 MiB pages.
    ("stream_table", "smmu_strtab", 0x20_0000, Some(0x20_0000)),
    ("cmdq", "smmu_cmdq", 0x1000, None),
    ("eventq", "smmu_eventq", 0x1000, None),
    ("context_descriptors", "smmu_cds", 0x1000, None),
    ("table_pool", "smmu_tables", 0, None),
];

/// Where generated maps go in the IOMMU PD: from here, or above the highest address it
/// maps already if that is higher, 2 MiB aligned; the fault rings after its own regions.
const OWN_BASE: u64 = 0x10_0000_0000;
const BLOCK: u64 = 0x20_0000;

/// `s` as an XML attribute value. `check` allows only C identifiers as names, so nothing
/// here changes a name it accepted; written everywhere a name goes into the Microkit file
/// all the same, so that no name can ever end an attribute or an element.
pub fn attr(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if c.is_control() => {
                let _ = write!(o, "&#{};", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o
}

/// Add the plumbing `sys` leaves out (see the module's text) to `sys`, and keep its XML
/// in `sys.generated`. Nothing is added where the description wrote it, or without an
/// IOMMU PD.
/// The stack the IOMMU PD's program needs: booted with system.xml's policy, it overflowed
/// 128 KiB in bringing the SMMU up, before any stream aborted (commit 4720411 saw the same),
/// and Microkit's default 8 KiB before its first line; every image gives it 256 KiB.
pub const IOMMU_PD_STACK: u64 = 0x40000;

/// The IOMMU PD's stack, where the description gives none: `IOMMU_PD_STACK`, which `build`
/// writes on its start tag (its program's need, as the pool's size is the policy's). A
/// `stack_size` written is kept, and `check` refuses one below it.
pub fn iommu_stack(sys: &mut System) {
    let Some(iommu) = &sys.iommu else { return };
    let Some(at) = sys.pds.iter().position(|p| p.name == iommu.pd) else { return };
    if !sys.pds[at].stack_size_given {
        sys.pds[at].stack_size = IOMMU_PD_STACK;
        sys.generated.iommu_stack = Some(IOMMU_PD_STACK);
    }
}

pub fn complete(sys: &mut System) {
    let Some(iommu) = sys.iommu.clone() else { return };
    // A description that names any of the IOMMU's regions writes its plumbing by hand:
    // nothing is added to it, and `check` holds it to the conventions.
    if !iommu.private.is_empty() {
        return;
    }
    let Some(at) = sys.pds.iter().position(|p| p.name == iommu.pd) else { return };
    let line = iommu.line;
    let mut g = Generated::default();
    let rw = Perms { read: true, write: true };

    // Above every map the description gives the IOMMU PD, so none overlaps a generated one.
    let top = sys.pds[at]
        .maps
        .iter()
        .filter_map(|m| Some(m.vaddr?.saturating_add(sys.region(&m.mr).map_or(PAGE, |r| r.size))))
        .max()
        .unwrap_or(0);
    // Saturating: a map near the top of the address space puts the generated ones past
    // the end, where `check` (rules::maps) refuses them, rather than wrapping to 0.
    let mut va = OWN_BASE.max(top.checked_next_multiple_of(BLOCK).unwrap_or(u64::MAX));
    for (role, name, size, page_size) in OWN {
        if iommu.private.iter().any(|(r, _)| *r == role) {
            continue;
        }
        if let Some(r) = sys.region(name) {
            g.adopted.push((name.to_string(), r.line));
        } else {
            let size = if role == "table_pool" { table_pool_pages(sys).max(1) * PAGE } else { size };
            let pages = page_size.map(|p| format!(" page_size=\"{p:#x}\"")).unwrap_or_default();
            let _ = write!(g.top, "<memory_region name=\"{name}\" size=\"{size:#x}\"{pages} /> ");
            sys.regions.push(MemoryRegion {
                name: name.into(),
                size,
                size_given: true,
                phys_addr: None,
                page_size,
                prefill_path: None,
                prefill_bootinfo: None,
                prefill: None,
                line,
            });
        }
        let size = sys.region(name).map_or(0, |r| r.size);
        if let Some(i) = sys.iommu.as_mut() {
            i.private.push((role, name.into()));
            if role == "table_pool" {
                i.table_pool = name.into();
            }
        }
        let pd = &mut sys.pds[at];
        if !pd.maps.iter().any(|m| m.setvar_vaddr.as_deref() == Some(name)) {
            let _ = write!(
                g.in_iommu_pd,
                "<map mr=\"{name}\" vaddr=\"{va:#x}\" perms=\"rw\" setvar_vaddr=\"{name}\" setvar_size=\"{name}_size\" /> "
            );
            pd.maps.push(Map {
                mr: name.into(),
                vaddr: Some(va),
                perms: rw,
                setvar_vaddr: Some(name.into()),
                setvar_size: Some(format!("{name}_size")),
                setvar_prefill_size: None,
                cached: true,
                line,
            });
            va = va.saturating_add(size.checked_next_multiple_of(BLOCK).unwrap_or(u64::MAX).max(BLOCK));
        }
        let paddr = format!("{name}_paddr");
        if !pd.setvars.iter().any(|v| v.symbol == paddr) {
            let _ = write!(g.in_iommu_pd, "<setvar symbol=\"{paddr}\" region_paddr=\"{name}\" /> ");
            pd.setvars.push(SetVar { symbol: paddr, region_paddr: Some(name.into()), line });
        }
    }

    let clients: Vec<String> = sys.clients().iter().map(|c| c.name.clone()).collect();
    let has_rings = sys.pds[at].maps.iter().any(|m| m.setvar_vaddr.as_deref() == Some("fault_rings"));
    if !has_rings {
        for (i, client) in clients.iter().enumerate() {
            let ring = format!("{client}_faults");
            if let Some(r) = sys.region(&ring) {
                g.adopted.push((ring.clone(), r.line));
            } else {
                let _ = write!(g.top, "<memory_region name=\"{}\" size=\"{PAGE:#x}\" /> ", attr(&ring));
                sys.regions.push(MemoryRegion {
                    name: ring.clone(),
                    size: PAGE,
                    size_given: true,
                    phys_addr: None,
                    page_size: None,
                    prefill_path: None,
                    prefill_bootinfo: None,
                    prefill: None,
                    line,
                });
            }
            let va = va.saturating_add((i as u64).saturating_mul(PAGE));
            let first = (i == 0).then(|| "fault_rings".to_string());
            let symbol = first.as_ref().map(|s| format!(" setvar_vaddr=\"{s}\"")).unwrap_or_default();
            let _ = write!(g.in_iommu_pd, "<map mr=\"{}\" vaddr=\"{va:#x}\" perms=\"rw\"{symbol} /> ", attr(&ring));
            sys.pds[at].maps.push(Map {
                mr: ring,
                vaddr: Some(va),
                perms: rw,
                setvar_vaddr: first,
                setvar_size: None,
                setvar_prefill_size: None,
                cached: true,
                line,
            });
        }
    }

    for (i, client) in clients.iter().enumerate() {
        let linked = sys.channels.iter().any(|c| c.end_of(&iommu.pd).is_some_and(|(_, theirs)| theirs.pd == *client));
        // At the client, the lowest id its channels and interrupts leave free (ids share
        // one space in a PD, and the Microkit tool refuses a clash); none free: `check`
        // says the channel is missing.
        let taken: Vec<u64> = sys
            .channels
            .iter()
            .filter_map(|c| c.end_of(client).map(|(mine, _)| mine.id))
            .chain(sys.pd(client).into_iter().flat_map(|pd| pd.irqs.iter().map(|i| i.id)))
            .collect();
        let Some(free) = (0..=MAX_ID).find(|id| !taken.contains(id)) else { continue };
        if linked {
            continue;
        }
        let id = i as u64 + 1;
        let _ = write!(
            g.top,
            "<channel><end pd=\"{}\" id=\"{free}\" pp=\"true\" /><end pd=\"{}\" id=\"{id}\" /></channel> ",
            attr(client),
            attr(&iommu.pd)
        );
        sys.channels.push(Channel {
            ends: [
                ChannelEnd { pd: client.clone(), id: free, pp: true, setvar_id: None, line },
                ChannelEnd { pd: iommu.pd.clone(), id, pp: false, setvar_id: None, line },
            ],
            line,
        });
    }

    for (i, client) in clients.iter().enumerate() {
        if let Some(pd) = sys.pds.iter_mut().find(|p| p.name == *client) {
            if pd.parent.as_deref() == Some(iommu.pd.as_str()) && pd.id.is_none() {
                pd.id = Some(i as u64 + 1);
                g.child_ids.push((client.clone(), i as u64 + 1));
            }
        }
    }
    sys.generated = g;
}
