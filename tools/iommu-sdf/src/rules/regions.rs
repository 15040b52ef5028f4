//! Memory regions: sizes, pages and physical ranges as the board and the Microkit tool
//! take them, with no two fixed ranges sharing a byte.

use crate::board::{Board, PAGE_SIZES};
use crate::model::*;
use crate::problem::{p, Problem};

/// Every region rule, and the references to regions the Microkit tool resolves.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
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
    // A prefill's size can be patched only for a region prefilled from a file.
    for pd in &sys.pds {
        for m in pd.maps.iter().filter(|m| m.setvar_prefill_size.is_some()) {
            if sys.region(&m.mr).is_some_and(|r| r.prefill_path.is_none()) {
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "setvar_prefill_size on `{}`, which has no prefill_path: the Microkit tool refuses it",
                        m.mr
                    ),
                    "remove setvar_prefill_size, or prefill the region from a file",
                ));
            }
        }
    }
    // Every map names a region: the Microkit tool refuses one that does not, and saying so
    // here, at the map, with the name it probably meant, is clearer than a knock-on error
    // at a capability over it.
    for pd in &sys.pds {
        for (m, _) in pd.all_maps().filter(|(m, _)| sys.region(&m.mr).is_none()) {
            out.push(p(
                m.line,
                "map",
                format!(
                    "memory region `{}` does not exist{}",
                    m.mr,
                    did_you_mean(&m.mr, sys.regions.iter().map(|r| r.name.as_str()))
                ),
                "declare it with <memory_region> or fix the name",
            ));
        }
    }
    // Regions whose size this tool must know: those with a fixed address (for overlaps),
    // those devices may reach, and the IOMMU's own.
    let mut reached = sys.dma_region_names();
    reached.extend(sys.iommu_own().into_iter().map(|(_, r)| r));
    for r in &sys.regions {
        let page = r.page_size.unwrap_or(PAGE_SIZES[0]);
        let problem = if !r.size_given && (r.phys_addr.is_some() || reached.contains(r.name.as_str())) {
            Some((
                format!(
                    "`{}` takes its size from its prefill file, which this tool cannot see, and it {}",
                    r.name,
                    if r.phys_addr.is_some() {
                        "has a fixed address (its overlaps cannot be checked)"
                    } else {
                        "is reachable by DMA or the IOMMU's"
                    }
                ),
                "give it size=\"...\" (the file's size rounded up to whole pages)".to_string(),
            ))
        } else if r.size_given && r.size == 0 {
            Some((format!("`{}` has no bytes", r.name), "give it a size of at least one page (0x1000)".into()))
        } else if !PAGE_SIZES.contains(&page) {
            Some((
                format!("`{}` has page_size {page:#x}, which the board does not have", r.name),
                "use page_size=\"0x1000\" or \"0x200000\"".into(),
            ))
        } else if r.size % page != 0 {
            Some((
                format!("`{}` is {:#x} bytes, not a whole number of its {page:#x}-byte pages", r.name, r.size),
                format!("make its size a multiple of {page:#x}"),
            ))
        } else if r.phys_addr.is_some_and(|a| a % page != 0) {
            Some((
                format!(
                    "`{}`'s phys_addr {:#x} is not aligned to its {page:#x}-byte pages",
                    r.name,
                    r.phys_addr.unwrap_or(0)
                ),
                format!("use a phys_addr that is a multiple of {page:#x}"),
            ))
        } else if let Some((start, end)) = r.phys_range().filter(|&(_, end)| end > board.pa_end()) {
            Some((
                format!(
                    "`{}` at {start:#x}..{end:#x} runs past the {}-bit physical addresses of board {}",
                    r.name, board.pa_bits, board.name
                ),
                format!("keep phys_addr + size at most {:#x}", board.pa_end()),
            ))
        } else if let Some(((start, end), (room, len))) = r
            .phys_range()
            .zip(board.kernel_room)
            .filter(|&((s, e), (b, l))| s < u128::from(b) + u128::from(l) && u128::from(b) < e)
        {
            Some((
                format!(
                    "`{}` at {start:#x}..{end:#x} is in the RAM where the loader puts the kernel and the capDL initialiser on board {} ({room:#x}..{:#x}): the Microkit tool refuses a fixed region over them, and where they end depends on every program and object, which this tool does not measure",
                    r.name,
                    board.name,
                    u128::from(room) + u128::from(len)
                ),
                format!(
                    "give it a phys_addr outside {room:#x}..{:#x}, or none (the Microkit tool then places it)",
                    u128::from(room) + u128::from(len)
                ),
            ))
        } else if u128::from(r.size) > board.pa_end() {
            Some((
                format!("`{}` is {:#x} bytes, more than board {}'s physical address space", r.name, r.size, board.name),
                "give it a size the board's memory can hold".into(),
            ))
        } else {
            None
        };
        if let Some((message, fix)) = problem {
            out.push(p(r.line, "memory_region", message, fix));
        }
    }
    overlaps(sys, out);
}

/// No two regions with fixed addresses share a byte, as the Microkit tool requires: two
/// names for the same memory would let a rule about one miss the other. Each overlapping
/// region is reported once, at its own line, with the region it overlaps.
fn overlaps(sys: &System, out: &mut Vec<Problem>) {
    let placed = sys.regions.iter().filter_map(|r| r.phys_range().map(|(s, e)| (s, e, r.line, r)));
    for (at, other) in overlapping(placed) {
        out.push(p(
            at.line,
            "memory_region",
            format!(
                "`{}` shares physical memory with `{}` (line {}): the Microkit tool refuses overlapping regions, and a rule that keeps one from a device or PD would miss the other name",
                at.name, other.name, other.line
            ),
            "give each region its own physical range",
        ));
    }
}
