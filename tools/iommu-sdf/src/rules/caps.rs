//! DMA capabilities: who holds them, what they name, and where they may be delegated.

use crate::model::*;
use crate::problem::{p, Problem};

/// Every capability rule.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    let owner_of = |space: &str| sys.io_space(space).and_then(|s| s.owner.clone());
    // Capabilities.
    let client_list = sys.clients();
    for c in &sys.caps {
        let Some(holder) = sys.pd(&c.pd) else {
            out.push(p(
                c.line,
                "dma_capability",
                format!(
                    "`{}` is held by `{}`, which is not a protection domain{}",
                    c.name,
                    c.pd,
                    did_you_mean(&c.pd, sys.pds.iter().map(|p| p.name.as_str()))
                ),
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
                    format!(
                        "device `{d}` of `{}` is not an io_address_space{}",
                        c.name,
                        did_you_mean(d, sys.io_spaces.iter().map(|s| s.name.as_str()))
                    ),
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
                        format!(
                            "memory region `{mr}` does not exist{}",
                            did_you_mean(mr, sys.regions.iter().map(|r| r.name.as_str()))
                        ),
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
                // What the holder's maps let it do to the region: a device of its may do no
                // more (a driver that may only read memory must not make its device write it).
                let mapped = holder.maps.iter().filter(|m| m.mr == *mr).fold(None, |acc: Option<Perms>, m| {
                    let a = acc.unwrap_or(Perms { read: false, write: false });
                    Some(Perms { read: a.read || m.perms.read, write: a.write || m.perms.write })
                });
                match mapped {
                    None => out.push(p(c.line, "dma_capability", format!("`{}` gives `{}` region `{mr}`, which it does not map", c.name, c.pd), format!("add <map mr=\"{mr}\" .../> to protection domain `{}`, or grant the region to the PD that maps it", c.pd))),
                    Some(m) if !m.contains(c.perms) => out.push(p(
                        c.line,
                        "dma_capability",
                        format!(
                            "`{}` lets `{}`'s devices {} `{mr}`, which `{}` itself may only {}: a capability gives a device no more than its driver has",
                            c.name,
                            c.pd,
                            if c.perms.write { "write" } else { "read" },
                            c.pd,
                            if m.write { "write" } else { "read" }
                        ),
                        "give the capability the rights of the holder's map of the region, or map it with more",
                    )),
                    Some(_) => {}
                }
            }
            (None, Some(parent)) => {
                match sys.cap(parent) {
                    None => out.push(p(
                        c.line,
                        "dma_capability",
                        format!(
                            "parent capability `{parent}` does not exist{}",
                            did_you_mean(parent, sys.caps.iter().map(|c| c.name.as_str()))
                        ),
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
}
