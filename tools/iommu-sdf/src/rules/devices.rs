//! Devices (`io_address_space`): owners, IOVA windows, static maps and StreamIDs.

use std::collections::HashMap;

use crate::model::*;
use crate::problem::{p, Problem};

/// Every device rule.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
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
}
