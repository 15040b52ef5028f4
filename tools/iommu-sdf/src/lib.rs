//! `iommu-sdf`: reads a Microkit system description with the IOMMU service's elements and
//! checks that the DMA isolation it describes is what it says.
//!
//! The description uses Microkit's own vocabulary where it fits (`memory_region`,
//! `protection_domain`, `map`, and `io_address_space`/`iomap` as Microkit 2.3 defines
//! them for x86: name, peripheral_id, domain_id; iomap mr, iovaddr, perms) and these
//! extensions:
//! - on `io_address_space`: `owner` (the driver PD), `iova_base`/`iova_size` (the window
//!   the service hands out), `alias_ok="true"` (two devices share a StreamID on purpose);
//!   `peripheral_id` is the SMMU StreamID (or `bus:device.function`);
//! - `<dma_capability name pd mr|parent offset size perms devices>`: what a driver may
//!   map, for which of its devices; `parent` derives a narrower one statically;
//! - `<dma_quota pd mappings pages>`;
//! - `<iommu pd stream_table cmdq eventq context_descriptors table_pool>`: the IOMMU PD
//!   and the regions no device may ever reach.

pub mod build;
pub mod check;
pub mod gen;
pub mod model;
pub mod parse;
pub mod report;

/// A problem, for a person: where, what, and what would fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the element.
    pub line: u32,
    /// The element's name.
    pub element: String,
    /// What is wrong.
    pub message: String,
    /// What would fix it.
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <{}>: {}\n    fix: {}", self.line, self.element, self.message, self.fix)
    }
}

/// Read and check `text`: every problem, reading problems first.
pub fn check_text(text: &str) -> (model::System, Vec<Problem>) {
    let (sys, mut problems) = parse::parse(text);
    if problems.iter().any(|p| p.element == "xml") {
        return (sys, problems);
    }
    problems.extend(check::check(&sys));
    problems.sort_by_key(|p| p.line);
    (sys, problems)
}
