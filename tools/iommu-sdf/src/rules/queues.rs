//! Mapping queues (`<dma_queue>`, `crate::queues`): one per client, of a size the IOMMU PD
//! and the client agree on, shared by those two and no one else, reached by no device, with
//! a share of the IOMMU PD's time that paces it.

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};
use crate::programs;
use crate::queues::{region_name, CLIENT_SYMBOL, MAX_ENTRIES, MIN_ENTRIES};
use iommu_pd::pacing::{MAX_SHARE, MIN_SHARE, SHARE};

/// Every queue rule.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let el = "dma_queue";
    let iommu = sys.iommu.as_ref().map(|i| i.pd.as_str());
    let clients: Vec<&str> = sys.clients().iter().map(|c| c.name.as_str()).collect();
    for (i, q) in sys.queues.iter().enumerate() {
        let Some(iommu) = iommu else {
            out.push(p(
                q.line,
                el,
                format!("`{}` has a mapping queue, but there is no <iommu>: no IOMMU PD would serve it", q.pd),
                "add <iommu pd=\"...\" /> naming the IOMMU PD, or remove the dma_queue",
            ));
            continue;
        };
        if sys.pd(&q.pd).is_none() {
            out.push(p(
                q.line,
                el,
                format!(
                    "`{}` is not a protection domain{}",
                    q.pd,
                    did_you_mean(&q.pd, sys.pds.iter().map(|p| p.name.as_str()))
                ),
                "name an existing protection_domain in pd=\"...\"",
            ));
            continue;
        }
        if q.pd == iommu || !clients.contains(&q.pd.as_str()) {
            out.push(p(
                q.line,
                el,
                format!(
                    "`{}` is not a client of the IOMMU PD (it owns no device and holds no DMA capability): nothing it could post would be served",
                    q.pd
                ),
                "give the queue to a driver PD that owns an io_address_space or holds a dma_capability",
            ));
            continue;
        }
        if !q.entries.is_power_of_two() || !(MIN_ENTRIES..=MAX_ENTRIES).contains(&q.entries) {
            out.push(p(
                q.line,
                el,
                format!(
                    "`{}`'s queue has {} entries: a ring's size is a power of two from {MIN_ENTRIES} to {MAX_ENTRIES} (the indices wrap by masking, and the IOMMU PD takes {} a wake-up whatever the size)",
                    q.pd,
                    q.entries,
                    iommu_protocol::queue::QUEUE_BATCH
                ),
                "give entries=\"64\" (or another power of two from 2 to 4096)",
            ));
            continue;
        }
        if !(MIN_SHARE..=MAX_SHARE).contains(&q.share) {
            out.push(p(
                q.line,
                el,
                format!(
                    "`{}`'s queue has share=\"{}\": its full batches may take 1/share of the IOMMU PD's time, and a share is from {MIN_SHARE} (half; at 1 nothing is paced, and one client could hold the IOMMU PD from every other) to {MAX_SHARE} (at {MAX_SHARE} a full batch is no more than the one entry a paced wake-up gets)",
                    q.pd, q.share
                ),
                format!("give share=\"{SHARE}\" (the default: a quarter), or another from {MIN_SHARE} to {MAX_SHARE}"),
            ));
        }
        if let Some(first) = sys.queues[..i].iter().find(|o| o.pd == q.pd) {
            out.push(p(
                q.line,
                el,
                format!(
                    "a second dma_queue for `{}` (the first is on line {}): a client has one queue",
                    q.pd, first.line
                ),
                "keep one dma_queue per protection domain (a larger one, if it needs more room)",
            ));
            continue;
        }
        let name = region_name(&q.pd);
        if q.name_taken {
            let line = sys.region(&name).map_or(q.line, |r| r.line);
            out.push(p(
                line,
                "memory_region",
                format!(
                    "`{name}` is the name of `{}`'s mapping queue, which iommu-sdf writes from its <dma_queue>: a region of the description's own by that name would be taken for it",
                    q.pd
                ),
                format!("rename the region (the queue's region, its maps and its size are build's to write from <dma_queue pd=\"{}\">)", q.pd),
            ));
            continue;
        }
        if q.vaddr.is_some_and(|v| v % PAGE != 0) {
            out.push(p(
                q.line,
                el,
                format!("`{}`'s queue is mapped at {:#x}, not a page boundary", q.pd, q.vaddr.unwrap_or(0)),
                "give a vaddr that is a multiple of 0x1000, or leave it out (build places it above the PD's maps)",
            ));
        }
        // A vaddr given where the client's program may lie: without the program read
        // (`programs`), only that window is known, and the Microkit tool refuses a map over
        // a segment, naming no line. (At 0, and over a segment read, `rules::platform`.)
        let unread = sys.pd(&q.pd).and_then(|pd| pd.program.as_ref()).is_some_and(|pr| pr.segments.is_none());
        if let (true, true, Some(va), Some(size)) = (q.vaddr_given, unread, q.vaddr, sys.region(&name).map(|r| r.size))
        {
            let (low, high) = programs::window(board);
            if va >= PAGE && va < high && va.saturating_add(size) > low {
                out.push(p(
                    q.line,
                    el,
                    format!(
                        "`{}`'s queue at {va:#x} may lie on its program, which was not read: a program linked as Microkit links them (at {:#x}) covers up to {high:#x}, that plus board {}'s RAM",
                        q.pd,
                        programs::LINK_BASE,
                        board.name
                    ),
                    format!(
                        "leave vaddr out (build places the queue at 64 GiB or above), give one at or above {high:#x}, or give iommu-sdf the programs (--search-path, as the Microkit tool is given) so it checks their segments"
                    ),
                ));
            }
        }
        // The client's map of its queue beside its other maps: the Microkit tool refuses two
        // maps over one address, and would name the client's start tag, where build writes
        // the queue's map, not this element.
        if let (Some(va), Some(size)) = (q.vaddr, sys.region(&name).map(|r| r.size)) {
            let end = u128::from(va) + u128::from(size);
            let clash = sys.pd(&q.pd).and_then(|pd| {
                pd.maps.iter().filter(|m| m.mr != name).find(|m| {
                    let (Some(v), Some(r)) = (m.vaddr, sys.region(&m.mr)) else { return false };
                    u128::from(v) < end && u128::from(va) < u128::from(v) + u128::from(r.size)
                })
            });
            if let Some(m) = clash {
                out.push(p(
                    q.line,
                    el,
                    format!(
                        "`{}`'s queue at {va:#x}..{end:#x} overlaps its map of `{}` at {:#x} (line {})",
                        q.pd,
                        m.mr,
                        m.vaddr.unwrap_or(0),
                        m.line
                    ),
                    "give a vaddr clear of the PD's other maps, or leave it out (build places it above them)",
                ));
            }
        }
        // Only the client's and the IOMMU PD's generated maps; nothing else, no device.
        let mut seen = (false, false);
        for pd in &sys.pds {
            for (m, vm) in pd.all_maps().filter(|(m, _)| m.mr == name) {
                let iommu_map = pd.name == iommu && vm.is_none() && m.vaddr == q.iommu_vaddr && !seen.0;
                let client_map = pd.name == q.pd
                    && vm.is_none()
                    && m.vaddr == q.vaddr
                    && m.setvar_vaddr.as_deref() == Some(CLIENT_SYMBOL)
                    && !seen.1;
                seen.0 |= iommu_map;
                seen.1 |= client_map;
                if !iommu_map && !client_map {
                    out.push(p(
                        m.line,
                        "map",
                        format!(
                            "`{}` maps `{name}`, `{}`'s mapping queue{}: only that client and the IOMMU PD may (another could post MAPs in its name, or read and forge its completions)",
                            pd.name,
                            q.pd,
                            vm.map(|v| format!(" into virtual machine `{}`", v.name)).unwrap_or_default()
                        ),
                        "remove this map: build maps the queue into its client and the IOMMU PD",
                    ));
                }
            }
        }
        for c in sys.caps.iter().filter(|c| resolve(sys, c).is_some_and(|(mr, _)| mr == name)) {
            out.push(p(
                c.line,
                "dma_capability",
                format!(
                    "`{}` covers `{name}`, `{}`'s mapping queue: a device could forge its requests and completions",
                    c.name, q.pd
                ),
                "never grant a mapping queue for DMA",
            ));
        }
        for s in &sys.io_spaces {
            for m in s.iomaps.iter().filter(|m| m.mr == name) {
                out.push(p(
                    m.line,
                    m.element(),
                    format!("`{}` maps `{name}`, `{}`'s mapping queue, for DMA: a device could forge its requests and completions", s.name, q.pd),
                    "never iomap a mapping queue",
                ));
            }
        }
    }
}
