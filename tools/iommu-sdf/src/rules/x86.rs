//! Microkit's own rules for its IOMMU elements on x86_64 boards (`--board x86_64_...`).
//! There the Microkit tool programs the IOMMU (VT-d) from `<io_address_space>` and
//! `<iomap>`, and the IOMMU PD, which drives Arm's SMMUv3, does not run; `build` passes
//! the elements to the Microkit tool untouched. These are the rules the Microkit tool
//! applies to them (Microkit 2.3, `tool/microkit/src/sdf.rs`: `IOAddressSpace::from_xml`,
//! `SysIOMap::from_xml`, `check_io_maps`), so that `check` refuses here what it would
//! refuse, with the user's line.

use std::collections::{BTreeMap, HashMap};

use roxmltree::{Document, Node};

use crate::problem::Problem;

/// The highest IOVA an `<iomap>` may use on x86_64: the capDL initializer's IOMMU page
/// tables take 39-bit IOVAs (rust-sel4's `x86_io_address_space::CAPDL_MAX_IOVA`).
pub const MAX_IOVA: u64 = (1 << 39) - 1;

/// Elements of this project's that only the IOMMU PD gives a meaning.
const IOMMU_PD_ONLY: &[&str] = &["iommu", "dma_capability", "dma_quota", "pci_bridge"];

/// What Microkit's x86_64 `<io_address_space>` takes.
const IO_SPACE_ATTRS: &[&str] = &["name", "peripheral_id", "domain_id"];

use crate::parse::{parse_number as number, pci_address};

/// Every problem Microkit's x86_64 rules find in `text` (whose XML already parsed).
pub fn check(text: &str) -> Vec<Problem> {
    let Ok(doc) = Document::parse(text) else { return Vec::new() };
    let mut out = Vec::new();
    // A node's line by binary search over where lines start (roxmltree's `text_pos_at`
    // scans from the start each time: quadratic over 10,000 iomaps).
    let starts: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    let line = |n: Node| (starts.partition_point(|&s| s <= n.range().start) + 1) as u32;
    let mut problem = |n: Node, message: String, fix: &str| {
        out.push(Problem { line: line(n), element: n.tag_name().name().into(), message, fix: fix.into() })
    };
    // Regions: size, and whether they use large pages (which seL4's IOMMU cannot map).
    let regions: HashMap<&str, (u64, bool)> = doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("memory_region"))
        .filter_map(|n| {
            let size = n.attribute("size").and_then(number)?;
            Some((n.attribute("name")?, (size, n.attribute("page_size").and_then(number).is_some_and(|p| p > 0x1000))))
        })
        .collect();
    let mut domains: HashMap<u64, u32> = HashMap::new();
    let mut devices: HashMap<(u8, u8, u8), u32> = HashMap::new();
    for n in doc.root_element().children().filter(Node::is_element) {
        let tag = n.tag_name().name();
        if IOMMU_PD_ONLY.contains(&tag) {
            problem(
                n,
                format!("<{tag}> is the IOMMU PD's, which drives Arm's SMMUv3; on x86_64 boards the Microkit tool programs the IOMMU itself, from <io_address_space> and <iomap>"),
                "remove it and give each device its memory with <iomap>, or check for an Arm board",
            );
            continue;
        }
        if tag != "io_address_space" {
            continue;
        }
        for a in n.attributes().filter(|a| !IO_SPACE_ATTRS.contains(&a.name())) {
            problem(
                n,
                format!("attribute `{}` is the IOMMU PD's; on x86_64 an io_address_space takes name, peripheral_id and domain_id", a.name()),
                "remove it (the IOMMU PD's owners, windows and pass-through apply on Arm boards)",
            );
        }
        // Each device its own VT-d domain: devices sharing a domain id would share cached
        // translations, which Microkit does not support.
        match n.attribute("domain_id").map(|d| (d, number(d))) {
            None => problem(
                n,
                "missing attribute `domain_id`: on x86_64 each io_address_space has its own IOMMU domain".into(),
                "add domain_id=\"N\", a number no other io_address_space uses",
            ),
            Some((d, None)) => problem(n, format!("`domain_id` \"{d}\" is not a number"), "write a number"),
            Some((_, Some(id))) => {
                if let Some(first) = domains.insert(id, line(n)) {
                    problem(
                        n,
                        format!("domain_id {id} is used already (line {first}); reusing a domain id is forbidden"),
                        "give each io_address_space its own domain_id",
                    );
                }
            }
        }
        match n.attribute("peripheral_id").map(|p| (p, pci_address(p))) {
            None => problem(n, "missing attribute `peripheral_id`".into(), "add peripheral_id=\"bus:device.function\""),
            Some((p, None)) => problem(n, format!("`peripheral_id` \"{p}\" is not a PCI address bus:device.function (hex; device at most 1f, function at most 7)"), "write the device's PCI address, e.g. peripheral_id=\"0:3.0\""),
            Some((_, Some(pci))) => {
                if let Some(first) = devices.insert(pci, line(n)) {
                    problem(n, format!("the device {:x}:{:x}.{:x} has an io_address_space already (line {first})", pci.0, pci.1, pci.2), "give each device one io_address_space, with all its iomaps");
                }
            }
        }
        // The iomaps of one device: inside 39 bits, page aligned, not overlapping.
        // Start to (end, line), disjoint: only the one starting last below an iomap's end
        // can overlap it.
        let mut mapped: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
        for m in n.children().filter(|c| c.has_tag_name("iomap")) {
            let (Some(mr), Some(iova)) = (m.attribute("mr"), m.attribute("iovaddr").and_then(number)) else { continue };
            if m.attribute("perms").is_some_and(|p| p.chars().any(|c| c != 'r' && c != 'w')) {
                problem(m, "perms for IO mapped memory are a combination of `r` and `w` only".into(), "remove the `x`");
            }
            if iova > MAX_IOVA {
                problem(
                    m,
                    format!("iovaddr {iova:#x} is past the x86_64 IOVA limit: it must be below {:#x}", MAX_IOVA + 1),
                    "map it below 2^39",
                );
                continue;
            }
            let Some(&(size, large)) = regions.get(mr) else { continue };
            if large {
                problem(
                    m,
                    format!("`{mr}` uses large pages, which seL4 cannot map in the IOMMU"),
                    "give the region 4 KiB pages",
                );
                continue;
            }
            if iova % 0x1000 != 0 {
                problem(m, format!("iovaddr {iova:#x} is not page aligned"), "align it to 4 KiB");
                continue;
            }
            match iova.checked_add(size).filter(|end| *end <= MAX_IOVA + 1) {
                None => problem(
                    m,
                    format!(
                        "`{mr}` at {iova:#x} ({size:#x} bytes) runs past the x86_64 IOVA limit {:#x}",
                        MAX_IOVA + 1
                    ),
                    "map it lower, or map less",
                ),
                Some(end) => match mapped.range(..end).next_back() {
                    Some((_, &(other_end, other))) if other_end > iova => problem(
                        m,
                        format!("`{mr}` at {iova:#x}..{end:#x} overlaps the iomap at line {other}"),
                        "give each iomap its own IOVA range",
                    ),
                    _ if end > iova => {
                        mapped.insert(iova, (end, line(m)));
                    }
                    _ => {}
                },
            }
        }
    }
    out
}
