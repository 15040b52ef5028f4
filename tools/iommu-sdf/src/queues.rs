//! `<dma_queue pd entries vaddr>`: a client's mapping queue (`iommu_protocol::queue`), MAP
//! and UNMAP posted in shared memory with one notification for many, served by the IOMMU
//! PD on the client's channel.
//!
//! The queue is always this tool's to write, whether the rest of the IOMMU plumbing is
//! generated or written by hand: its region, `<pd>_queue` (the request and completion
//! rings of `entries` slots each, whole pages), written where the `<dma_queue>` was; the
//! IOMMU PD's map of it (read-write, above every other map of the IOMMU PD), on the IOMMU
//! PD's closing line; and the client's (read-write, at `vaddr` or above its highest map and
//! `CLIENT_FLOOR`,
//! `setvar_vaddr="iommu_queue"`, `setvar_size="iommu_queue_size"`), just after the client's start tag. No other PD maps it,
//! and no device reaches it (`rules::queues`). The policy lists each queue (client, where
//! the IOMMU PD maps it, entries, share of the IOMMU PD's time), and the client's numbers
//! say where, how large and what share.

use std::fmt::Write as _;

use crate::model::*;
use crate::plumbing::attr;

/// The fewest slots a ring may have: a request's UNMAP and the next one's MAP.
pub const MIN_ENTRIES: u64 = 2;
/// The most: the IOMMU PD takes `QUEUE_BATCH` (64) entries a wake-up whatever the size, so
/// a longer ring only lets a client post further ahead; 4,096 slots are 288 KiB.
pub const MAX_ENTRIES: u64 = 4096;
/// The symbol the client finds its queue through, and the one it learns the region's size
/// through (so a client built for another size can refuse the region).
pub const CLIENT_SYMBOL: &str = "iommu_queue";
pub const CLIENT_SIZE_SYMBOL: &str = "iommu_queue_size";

const BLOCK: u64 = 0x20_0000;

/// The lowest address `build` places a client's queue at when `<dma_queue>` gives no
/// `vaddr`: above the client's program image, which `build` runs before there is one to
/// read. Microkit's linker script (`microkit.ld`) links a program at 0x200000 and the
/// Microkit tool loads its segments into RAM frames, so an image ends below 0x200000 plus
/// the board's RAM (`programs::window`), 4 GiB at most on every board this tool knows
/// (`tests/queues.rs`); 64 GiB is above that.
/// (Placed just above the client's maps, a queue of a client with none landed at 0x200000,
/// on its text: the Microkit tool refuses a map over an ELF segment.)
pub const CLIENT_FLOOR: u64 = 0x10_0000_0000;

/// The region of `pd`'s queue.
pub fn region_name(pd: &str) -> String {
    format!("{pd}_queue")
}

/// Bytes of the region of a queue of `entries` slots (whole pages), or `None` for a size
/// `check` refuses.
pub fn region_size(entries: u64) -> Option<u64> {
    let ok = entries.is_power_of_two() && (MIN_ENTRIES..=MAX_ENTRIES).contains(&entries);
    ok.then(|| (iommu_protocol::queue::layout::region_size(entries as u32) as u64).next_multiple_of(PAGE))
}

/// Where the next map above every map of `pd` may go, 2 MiB aligned, at least `floor`.
fn above(sys: &System, pd: &str, floor: u64) -> u64 {
    let top = sys
        .pd(pd)
        .map(|p| {
            p.maps
                .iter()
                .filter_map(|m| Some(m.vaddr?.saturating_add(sys.region(&m.mr).map_or(PAGE, |r| r.size))))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    floor.max(top.checked_next_multiple_of(BLOCK).unwrap_or(u64::MAX))
}

/// Write each queue's region and its two maps into `sys` (after `plumbing::complete`, so
/// the IOMMU PD's maps are all there), and keep their XML for `build`. A queue `check`
/// will refuse (no IOMMU PD, no such PD, a bad size, a second queue for a PD) gets nothing.
pub fn complete(sys: &mut System) {
    let Some(iommu) = sys.iommu.as_ref().map(|i| i.pd.clone()) else { return };
    if sys.pd(&iommu).is_none() {
        return;
    }
    for q in 0..sys.queues.len() {
        let DmaQueue { pd, entries, line, .. } = sys.queues[q].clone();
        let first = sys.queues.iter().position(|o| o.pd == pd) == Some(q);
        let Some(size) = region_size(entries) else { continue };
        if !first || pd == iommu || sys.pd(&pd).is_none() {
            continue;
        }
        let name = region_name(&pd);
        if sys.region(&name).is_some() {
            sys.queues[q].name_taken = true;
            continue;
        }
        sys.regions.push(MemoryRegion {
            name: name.clone(),
            size,
            size_given: true,
            phys_addr: None,
            page_size: None,
            prefill_path: None,
            prefill_bootinfo: None,
            prefill: None,
            line,
        });
        sys.generated
            .queue_regions
            .push((line, format!("<memory_region name=\"{}\" size=\"{size:#x}\" />", attr(&name))));
        let rw = Perms { read: true, write: true };
        let in_iommu = above(sys, &iommu, 0x10_0000_0000);
        let at_client = sys.queues[q].vaddr.unwrap_or_else(|| above(sys, &pd, CLIENT_FLOOR));
        let _ =
            write!(sys.generated.in_iommu_pd, "<map mr=\"{}\" vaddr=\"{in_iommu:#x}\" perms=\"rw\" /> ", attr(&name));
        sys.generated.in_pd.push((
            pd.clone(),
            format!(
                " <map mr=\"{}\" vaddr=\"{at_client:#x}\" perms=\"rw\" setvar_vaddr=\"{CLIENT_SYMBOL}\" setvar_size=\"{CLIENT_SIZE_SYMBOL}\" />",
                attr(&name)
            ),
        ));
        let map = |vaddr, setvar: Option<(&str, &str)>| Map {
            mr: name.clone(),
            vaddr: Some(vaddr),
            perms: rw,
            setvar_vaddr: setvar.map(|s| s.0.to_string()),
            setvar_size: setvar.map(|s| s.1.to_string()),
            setvar_prefill_size: None,
            cached: true,
            line,
        };
        let (mi, mc) = (map(in_iommu, None), map(at_client, Some((CLIENT_SYMBOL, CLIENT_SIZE_SYMBOL))));
        if let Some(p) = sys.pds.iter_mut().find(|p| p.name == iommu) {
            p.maps.push(mi);
        }
        if let Some(p) = sys.pds.iter_mut().find(|p| p.name == pd) {
            p.maps.push(mc);
        }
        sys.queues[q].vaddr = Some(at_client);
        sys.queues[q].iommu_vaddr = Some(in_iommu);
    }
}

/// The policy's queues: (client index, where the IOMMU PD maps the region, entries, share).
pub fn policy_queues(sys: &System) -> Vec<(usize, u64, u64, u64)> {
    let clients: Vec<String> = sys.clients().iter().map(|c| c.name.clone()).collect();
    sys.queues
        .iter()
        .filter_map(|q| {
            let client = clients.iter().position(|c| *c == q.pd)?;
            Some((client, q.iommu_vaddr?, q.entries, q.share))
        })
        .collect()
}
