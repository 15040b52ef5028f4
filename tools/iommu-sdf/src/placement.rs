//! Where the Microkit tool placed each memory region in physical memory, read from the
//! report it writes with `-r` (`report.txt`, its "Object Details"): each region's pages
//! are frames named `frame_mr_<region>_<index>` with their physical address (`@ 0x...`).
//! A description gives fixed addresses only to device memory; the rest the tool chooses,
//! and this is where a user finds what it chose.
use std::collections::BTreeMap;

/// One region's pages, as placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// Physical address of each page, in index order.
    pub pages: Vec<u64>,
    /// Bytes per page (4 KiB, or 2 MiB for large pages).
    pub page_size: u64,
}

impl Placed {
    /// The contiguous physical runs the pages make: (start, end).
    pub fn runs(&self) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &pa in &self.pages {
            match runs.last_mut() {
                Some(r) if r.1 == pa => r.1 = pa + self.page_size,
                _ => runs.push((pa, pa + self.page_size)),
            }
        }
        runs
    }
}

/// Each region's placement, by region name, from the text of a Microkit report.
pub fn read(report: &str) -> BTreeMap<String, Placed> {
    let mut out: BTreeMap<String, Vec<(u64, u64, u64)>> = BTreeMap::new();
    for line in report.lines() {
        // `1312 - Page(4 KiB): 'frame_mr_edu_buffers_000000000' @ 0x000060000000`
        let Some(rest) = line.split("Page(").nth(1) else { continue };
        let size = match rest.split(')').next() {
            Some("4 KiB") => 0x1000,
            Some("2 MiB") => 0x20_0000,
            Some("1 GiB") => 0x4000_0000,
            _ => continue,
        };
        let Some(name) = rest.split('\'').nth(1).and_then(|n| n.strip_prefix("frame_mr_")) else { continue };
        // The index is the last `_`-separated part: region names may hold `_`.
        let Some((region, index)) = name.rsplit_once('_') else { continue };
        let Ok(index) = index.parse::<u64>() else { continue };
        let Some(pa) = rest.split("@ 0x").nth(1).and_then(|a| u64::from_str_radix(a.trim(), 16).ok()) else { continue };
        out.entry(region.to_string()).or_default().push((index, pa, size));
    }
    out.into_iter()
        .map(|(region, mut pages)| {
            pages.sort();
            let page_size = pages.first().map_or(0x1000, |p| p.2);
            (region, Placed { pages: pages.into_iter().map(|p| p.1).collect(), page_size })
        })
        .collect()
}

/// The placement as the picture and the report print it: `0x60000000..0x60003000`, or
/// the first run and how many there are.
pub fn shown(p: &Placed) -> String {
    let runs = p.runs();
    match runs.as_slice() {
        [] => "no pages".to_string(),
        [(s, e)] => format!("{s:#x}..{e:#x}"),
        [(s, e), ..] => format!("{s:#x}..{e:#x} and {} more run(s)", runs.len() - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as the Microkit tool 2.3 writes them (its report.txt for system.xml).
    const REPORT: &str = "\
\t1312 - Page(4 KiB): 'frame_mr_edu_buffers_000000000' @ 0x000060000000
\t1313 - Page(4 KiB): 'frame_mr_edu_buffers_000000001' @ 0x000060001000
\t1314 - Page(4 KiB): 'frame_mr_edu_buffers_000000002' @ 0x000060002000
\t1322 - Page(4 KiB): 'frame_mr_blk_pool_000000001' @ 0x00006034a000
\t1321 - Page(4 KiB): 'frame_mr_blk_pool_000000000' @ 0x000060349000
\t1400 - Page(4 KiB): 'frame_mr_split_000000000' @ 0x000070000000
\t1401 - Page(4 KiB): 'frame_mr_split_000000001' @ 0x000070005000
\t- TCB: 'tcb_edu_driver'
";

    #[test]
    fn regions_are_read_with_their_pages_in_order() {
        let placed = read(REPORT);
        assert_eq!(shown(&placed["edu_buffers"]), "0x60000000..0x60003000");
        assert_eq!(shown(&placed["blk_pool"]), "0x60349000..0x6034b000");
        assert_eq!(shown(&placed["split"]), "0x70000000..0x70001000 and 1 more run(s)");
        assert_eq!(placed.len(), 3);
    }
}
