//! Devices (`io_address_space`): owners, IOVA windows, static maps and StreamIDs.

use std::collections::{BTreeMap, HashMap};

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};

/// Every device rule.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    widths(sys, board, out);
    ownership(sys, out);
    // IO address spaces: owners, windows, static maps.
    for s in &sys.io_spaces {
        if let Some(o) = &s.owner {
            if sys.pd(o).is_none() {
                out.push(p(
                    s.line,
                    "io_address_space",
                    format!(
                        "`{}` is owned by `{o}`, which is not a protection domain{}",
                        s.name,
                        did_you_mean(o, sys.pds.iter().map(|p| p.name.as_str()))
                    ),
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
        let mut placed: BTreeMap<u128, (u128, &IoMap)> = BTreeMap::new();
        for m in &s.iomaps {
            let Some(r) = sys.region(&m.mr) else {
                out.push(p(
                    m.line,
                    m.element(),
                    format!(
                        "memory region `{}` does not exist{}",
                        m.mr,
                        did_you_mean(&m.mr, sys.regions.iter().map(|r| r.name.as_str()))
                    ),
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
            // The iomaps placed so far are disjoint, so the one starting last below this
            // one's end is the only one that can overlap it: a search, not a scan.
            let (start, end) = (u128::from(m.iovaddr), u128::from(m.iovaddr) + u128::from(r.size));
            match placed.range(..end).next_back() {
                Some((_, &(other_end, other))) if other_end > start && r.size > 0 => out.push(p(
                    m.line,
                    m.element(),
                    format!(
                        "`{}` at {:#x} overlaps `{}` at {:#x} (line {}) in `{}`",
                        m.mr, m.iovaddr, other.mr, other.iovaddr, other.line, s.name
                    ),
                    "give the two iomaps IOVA ranges that do not overlap",
                )),
                _ if r.size > 0 => {
                    placed.insert(start, (end, m));
                }
                _ => {}
            }
        }
    }

    // StreamIDs: one device each. The SMMU cannot tell two devices of one StreamID apart,
    // so they would share one address space whatever the description says, and the IOMMU
    // PD refuses a policy that lists a StreamID twice (`ConfigError::SharedStream`).
    // Each device is compared with the first of its StreamID.
    let mut first_of_stream: HashMap<u32, &IoSpace> = HashMap::new();
    for s in &sys.io_spaces {
        let t = *first_of_stream.entry(s.stream).or_insert(s);
        // Two PCI functions of one StreamID are one group: the topology's rules say so,
        // with the alias that joins them.
        let both_functions = s.rid.is_some() && t.rid.is_some();
        if !std::ptr::eq(t, s) && !both_functions {
            if s.owner != t.owner {
                out.push(p(s.line, "io_address_space", format!("StreamID {:#x} of `{}` is also `{}`'s (line {}), with another owner: either driver could reach the other's memory", s.stream, s.name, t.name, t.line), "give each device its own StreamID, or one owner"));
            } else {
                out.push(p(
                    s.line,
                    "io_address_space",
                    format!(
                        "`{}` and `{}` (line {}) share StreamID {:#x}: the SMMU cannot tell them apart, so they are one device to it",
                        s.name, t.name, t.line, s.stream
                    ),
                    "describe functions that alias (behind a bridge) as one io_address_space, listing its other StreamIDs in streams=\"...\"",
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

/// Every StreamID of every device fits the board's SMMU: a wider one lies outside the
/// stream table the IOMMU PD can make, and the SMMU would never translate it as described
/// (and the policy's `STREAM_ID_BITS` would be wider than the hardware).
fn widths(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let Some(bits) = board.stream_bits() else { return };
    for s in &sys.io_spaces {
        for x in std::iter::once(s.stream).chain(s.extra_streams.iter().copied()) {
            if u64::from(x) >> bits != 0 {
                out.push(p(
                    s.line,
                    "io_address_space",
                    format!(
                        "StreamID {x:#x} of `{}` is wider than the {bits} StreamID bits of board {}'s SMMU",
                        s.name, board.name
                    ),
                    format!("give the device its StreamID on this board, below {:#x}", 1u64 << bits),
                ));
            }
        }
    }
}

/// A static map (`<iomap>`) gives a device memory from boot, so it may give only what the
/// device's owner could map itself: a capability the owner holds, over the whole region,
/// with the map's rights, for this device. A device with no owner has nobody's memory to
/// be given, and one passed through to a virtual machine reaches its guest's RAM only.
fn ownership(sys: &System, out: &mut Vec<Problem>) {
    // The capabilities each PD holds, by the region they finally name.
    let mut held: HashMap<(&str, &str), Vec<(&DmaCapability, u64)>> = HashMap::new();
    for c in &sys.caps {
        if let Some((mr, offset)) = resolve(sys, c) {
            held.entry((c.pd.as_str(), mr)).or_default().push((c, offset));
        }
    }
    for s in &sys.io_spaces {
        for m in s.iomaps.iter().filter(|m| !m.guest) {
            let Some(r) = sys.region(&m.mr) else { continue };
            let (message, fix) = match (&s.vm, &s.owner) {
                (Some(vm), _) => (
                    format!(
                        "`{}` is passed through to virtual machine `{vm}`, whose RAM is all it may reach, and iomaps `{}` besides",
                        s.name, m.mr
                    ),
                    "remove the iomap: the device's address space is the guest's RAM at guest-physical addresses".to_string(),
                ),
                (None, None) => (
                    format!("`{}` has no owner, so no capability covers what it iomaps (`{}`)", s.name, m.mr),
                    format!(
                        "name the device's driver in owner=\"...\" and give it <dma_capability mr=\"{}\" size=\"{:#x}\" devices=\"{}\" ... />, or remove the iomap",
                        m.mr, r.size, s.name
                    ),
                ),
                (None, Some(owner)) => {
                    let covers = held.get(&(owner.as_str(), m.mr.as_str())).into_iter().flatten().any(|&(c, offset)| {
                        offset == 0 && c.size >= r.size && c.perms.contains(m.perms) && c.devices.contains(&s.name)
                    });
                    if covers {
                        continue;
                    }
                    (
                        format!(
                            "`{}` iomaps `{}`, and its owner `{owner}` holds no capability for all of it with these rights for this device: a static map may give only what the owner could map",
                            s.name, m.mr
                        ),
                        format!(
                            "give `{owner}` <dma_capability mr=\"{}\" size=\"{:#x}\" devices=\"{}\" ... /> with the iomap's perms, or remove the iomap",
                            m.mr, r.size, s.name
                        ),
                    )
                }
            };
            out.push(p(m.line, "iomap", message, fix));
        }
    }
}
