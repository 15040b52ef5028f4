//! `iommu-sdf report`: for every device, the physical ranges it can ever reach under the
//! description (its static maps, every capability its owner holds for it, and every
//! capability another client may grant its owner), a proof
//! line that none of them touches memory the description keeps private, and a picture.

use iommu_pd::reach;
use std::fmt::Write as _;

use crate::model::*;

/// One range a device can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub device: String,
    /// The device's StreamID, and its other StreamIDs (`streams`): each translates
    /// through the same address space.
    pub stream: u32,
    pub extra_streams: Vec<u32>,
    pub owner: String,
    pub region: String,
    /// Offset in the region and length.
    pub offset: u64,
    pub len: u64,
    /// Physical range, when the region has a fixed address.
    pub phys: Option<(u64, u64)>,
    pub rights: Perms,
    /// `iomap` at an IOVA, or the capability's name.
    pub source: String,
}

fn rights(p: Perms) -> &'static str {
    match (p.read, p.write) {
        (true, true) => "rw",
        (true, false) => "r",
        (false, true) => "w",
        _ => "-",
    }
}

/// Everything every device can reach.
pub fn reachability(sys: &System) -> Vec<Reach> {
    let mut out = Vec::new();
    for s in &sys.io_spaces {
        let owner = s.owner.clone().unwrap_or_default();
        let mut push = |mr: &str, offset: u64, len: u64, rights: Perms, source: String| {
            // Saturating: `check` refuses a range past the board's physical addresses, and
            // the report must not panic where it would end past 2^64.
            let phys = sys.region(mr).and_then(|r| r.phys_addr).map(|pa| {
                let start = pa.saturating_add(offset);
                (start, start.saturating_add(len))
            });
            out.push(Reach {
                device: s.name.clone(),
                stream: s.stream,
                extra_streams: s.extra_streams.clone(),
                owner: owner.clone(),
                region: mr.to_string(),
                offset,
                len,
                phys,
                rights,
                source,
            });
        };
        for m in &s.iomaps {
            let len = sys.region(&m.mr).map(|r| r.size).unwrap_or(0);
            let through = match (&s.vm, m.guest) {
                // Which stage translates it is the SMMU's to say at boot (SMMU_IDR0.S2P),
                // not the description's: the IOMMU PD prints the one it chose.
                (Some(vm), true) => format!(
                    "guest `{vm}`'s RAM at guest-physical {:#x} (stage 2 where the SMMU has it, else stage 1)",
                    m.iovaddr
                ),
                _ => format!("iomap at iova {:#x}", m.iovaddr),
            };
            push(&m.mr, 0, len, m.perms, through);
        }
        // Every capability of the description is a root at run time; the service's GRANT
        // follows `iommu_pd::reach`, and so does this: the holder's own devices that the
        // capability names, and any device of a client it may be lent to (at most all of
        // it, with its rights).
        // The owner's own capabilities first, then what others may lend it.
        let (own, lent): (Vec<_>, Vec<_>) = sys.caps.iter().partition(|c| c.pd == owner);
        for c in own.into_iter().chain(lent) {
            let root = reach::Root { holder: c.pd.as_str(), devices: &c.devices[..], grant_to: &c.grant_to[..] };
            if !reach::may_reach(root, owner.as_str(), s.name.as_str()) {
                continue;
            }
            if let Some((mr, offset)) = resolve(sys, c) {
                let source = if c.pd == owner {
                    format!("capability `{}`", c.name)
                } else {
                    format!("GRANT of `{}` by `{}`", c.name, c.pd)
                };
                push(mr, offset, c.size, c.perms, source);
            }
        }
    }
    out
}

/// Memory the description keeps from devices: the IOMMU's own regions (with the SMMU's
/// registers), and regions mapped by a PD and given to no device.
pub fn private_regions(sys: &System) -> Vec<&MemoryRegion> {
    let reachable: Vec<String> = reachability(sys).into_iter().map(|r| r.region).collect();
    let own = sys.iommu_own();
    sys.regions
        .iter()
        .filter(|r| {
            let iommu = own.iter().any(|(_, n)| *n == r.name);
            let mapped = sys.pds.iter().any(|p| p.maps.iter().any(|m| m.mr == r.name));
            iommu || (mapped && !reachable.contains(&r.name))
        })
        .collect()
}

/// `s` in a Markdown table cell: a `|` would end the cell and a line break the table.
/// (`check` allows neither in a name; this holds whatever reaches the report.)
fn cell(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '|' => vec!['\\', '|'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect()
}

/// The report as Markdown, for an Arm board.
pub fn markdown(sys: &System, source: &str) -> String {
    markdown_for(sys, source, crate::board::Target::Arm)
}

/// The report as Markdown, for `target`.
pub fn markdown_for(sys: &System, source: &str, target: crate::board::Target) -> String {
    markdown_masked(sys, source, target, 0)
}

/// The report as Markdown, for `board`: on an MMU-500 whose SoC has the IOMMU PD attach
/// StreamIDs under a mask (`Mmu500::smr_mask`, as pds/iommu does), it says so, since the
/// SMMU then matches more StreamIDs than the table lists.
pub fn markdown_on(sys: &System, source: &str, board: &crate::board::Board) -> String {
    let mask = match board.iommu {
        crate::board::BoardIommu::Mmu500(m) => m.smr_mask,
        _ => 0,
    };
    markdown_masked(sys, source, board.target, mask)
}

/// The report, with StreamIDs matched under `smr_mask` (0: exactly).
fn markdown_masked(sys: &System, source: &str, target: crate::board::Target, smr_mask: u16) -> String {
    let reach = reachability(sys);
    let private = private_regions(sys);
    let mut o = String::new();
    let _ = writeln!(o, "# DMA reachability of `{source}`\n");
    let id = if target == crate::board::Target::X86_64 { "PCI requester ID" } else { "StreamID" };
    let _ = writeln!(o, "| Device | {id} | Owner | Region | Range in region | Physical range | Rights | Through |");
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &reach {
        let phys = r.phys.map(|(a, b)| format!("{a:#x}..{b:#x}")).unwrap_or_else(|| "(placed by Microkit)".into());
        let streams: Vec<String> =
            std::iter::once(r.stream).chain(r.extra_streams.iter().copied()).map(|s| format!("{s:#x}")).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {:#x}..{:#x} | {} | {} | {} |",
            cell(&r.device),
            streams.join(", "),
            cell(&r.owner),
            cell(&r.region),
            r.offset,
            r.offset.saturating_add(r.len),
            phys,
            rights(r.rights),
            cell(&r.source)
        );
    }
    let _ = writeln!(o);
    if target == crate::board::Target::X86_64 {
        let _ = writeln!(
            o,
            "x86_64: the Microkit tool programs the IOMMU (VT-d) from these iomaps, which are what each device can reach through it."
        );
        return o;
    }
    // Without an IOMMU PD no stream is made to abort and devices reach whatever the
    // hardware lets them: there is no isolation to prove.
    if sys.iommu.is_none() {
        let _ = writeln!(
            o,
            "No IOMMU PD (no <iommu> element): nothing in this description restricts DMA, so there is no isolation to prove."
        );
        return o;
    }
    if sys.io_spaces.is_empty() {
        let _ = writeln!(o, "No IO address space: every stream aborts.\n");
    } else {
        if smr_mask == 0 {
            let _ = writeln!(o, "Every StreamID not in this table aborts.\n");
        } else {
            // The stream match registers ignore the masked bits: each listed StreamID is a
            // class of them, all translated as the device's.
            let classes: Vec<String> = sys
                .io_spaces
                .iter()
                .flat_map(|s| std::iter::once(s.stream).chain(s.extra_streams.iter().copied()))
                .map(|x| format!("{x:#x} stands for {x:#x} with any of bits {smr_mask:#x} set"))
                .collect();
            let _ = writeln!(
                o,
                "StreamIDs are matched under the mask {smr_mask:#x} (the SoC's, which the IOMMU PD attaches each with): {}; every StreamID matching none of them aborts.\n",
                classes.join(", ")
            );
        }
    }
    // The proof: no reachable range is a private region or overlaps one physically.
    let mut clashes = Vec::new();
    for r in &reach {
        for p in &private {
            let same = p.name == r.region;
            let overlap = match (r.phys, p.phys_addr) {
                (Some((a, b)), Some(pa)) => a < pa.saturating_add(p.size) && pa < b,
                _ => false,
            };
            if same || overlap {
                clashes.push(format!("{} reaches {} ({})", r.device, p.name, r.source));
            }
        }
    }
    if clashes.is_empty() {
        let names: Vec<&str> = private.iter().map(|p| p.name.as_str()).collect();
        let _ = writeln!(
            o,
            "Proof: {} reachable range(s) checked against {} private region(s) ({}): none is one of them or overlaps one in physical memory.",
            reach.len(),
            private.len(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        );
    } else {
        let _ = writeln!(o, "NOT ISOLATED: {}", clashes.join("; "));
    }
    trusted_callers(sys, &mut o);
    pci(sys, &mut o);
    queues(sys, &mut o);
    // What each driver passes in its requests, as `build` writes it into `<pd>_iommu.h`.
    let numbers = crate::numbers::numbers(sys);
    if !numbers.is_empty() {
        let _ = writeln!(o, "\n## Each client's numbers (`<pd>_iommu.h`, `<pd>_iommu.rs`)\n");
        let _ = writeln!(
            o,
            "| Client | Client id | Channel to the IOMMU PD | Devices (id, StreamID) | Capabilities (handle, bytes) |"
        );
        let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
        for n in &numbers {
            let devices: Vec<String> =
                n.devices.iter().map(|(d, id, s)| format!("{} = {id} ({s:#x})", cell(d))).collect();
            let caps: Vec<String> =
                n.caps.iter().map(|(c, h, size)| format!("{} = {h} ({size:#x})", cell(c))).collect();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                cell(&n.pd),
                n.client,
                n.channel.map_or("none".to_string(), |c| c.to_string()),
                if devices.is_empty() { "none".to_string() } else { devices.join(", ") },
                if caps.is_empty() { "none".to_string() } else { caps.join(", ") }
            );
        }
    }
    o
}

/// Where the IOMMU PD's availability rests on the description's word: a passive IOMMU
/// PD is stopped for good by one send from any of its callers or children, which `check` accepts only
/// with `trust_callers_not_to_send` (`rules::scheduling`).
fn trusted_callers(sys: &System, o: &mut String) {
    let Some(iommu) = sys.iommu.as_ref() else { return };
    let callers = sys.senders_to(&iommu.pd);
    if !sys.pd(&iommu.pd).is_some_and(|pd| pd.passive) || callers.is_empty() {
        return;
    }
    let names: Vec<String> = callers.iter().map(|pd| format!("`{}`", pd.name)).collect();
    let _ = writeln!(
        o,
        "\nThe IOMMU PD is passive: this description trusts {} to call it and never send to it. A send from any of them would stop it for good (no scheduling context comes with a send): every call, fault report and teardown would then wait for ever, and what is mapped would stay mapped.",
        names.join(", ")
    );
}

/// The clients with a mapping queue (`<dma_queue>`), its size and where it is mapped;
/// nothing when none has one (every MAP and UNMAP is then a call).
fn queues(sys: &System, o: &mut String) {
    let queues: Vec<&DmaQueue> = sys.queues.iter().filter(|q| q.iommu_vaddr.is_some()).collect();
    if queues.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n## Mapping queues (`<dma_queue>`)\n");
    let _ = writeln!(o, "Mapped by the client and the IOMMU PD only; no device reaches them. The IOMMU PD takes at most {} entries of a queue per notification or doorbell call; a client's batches of more than {} entries take at most its share of the IOMMU PD's time (plus one batch), and a wake-up before its next full batch is due is served {}.\n", iommu_protocol::queue::QUEUE_BATCH, iommu_pd::pacing::UNCHARGED_BATCH, iommu_pd::pacing::PACED_BATCH);
    let _ = writeln!(
        o,
        "| Client | Entries a ring | Region (bytes) | Client's map | IOMMU PD's map | Share of the IOMMU PD's time |"
    );
    let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- |");
    for q in queues {
        let name = crate::queues::region_name(&q.pd);
        let size = sys.region(&name).map_or(0, |r| r.size);
        let _ = writeln!(
            o,
            "| {} | {} | {} ({size:#x}) | {:#x} | {:#x} | 1/{} |",
            cell(&q.pd),
            q.entries,
            cell(&name),
            q.vaddr.unwrap_or(0),
            q.iommu_vaddr.unwrap_or(0),
            q.share
        );
    }
}

/// The PCI topology: the bridges with the bus numbers and memory windows the PCI owner
/// gives them, and the groups (functions the SMMU cannot keep apart, each one
/// io_address_space with one owner), with each function's StreamID.
fn pci(sys: &System, o: &mut String) {
    use crate::topology;
    let groups = topology::groups(sys);
    if groups.is_empty() && sys.bridges.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n## PCI topology\n");
    if !sys.bridges.is_empty() && sys.bridges.len() <= topology::MAX_BRIDGES {
        let functions = topology::functions(sys);
        let _ = writeln!(o, "| Bridge | Kind | Buses | ACS | Memory window |");
        let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
        for (b, config) in sys.bridges.iter().zip(topology::bridges(sys)) {
            let window = match topology::bridge_window(&config, &functions) {
                Ok(Some((base, size))) => format!("{base:#x}..{:#x}", base.saturating_add(size)),
                Ok(None) => "closed".to_string(),
                Err(_) => "none (a BAR window below it is above 4 GiB)".to_string(),
            };
            let _ = writeln!(
                o,
                "| {} | {} | {}..={} | {} | {window} |",
                bdf(b.rid),
                bridge_kind_name(b.kind),
                b.secondary,
                b.subordinate,
                if b.acs { "on" } else { "off" }
            );
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "Groups: the functions the SMMU cannot keep apart (one StreamID, one port without ACS above them, one multi-function device). Each is one io_address_space, one owner, one address space.\n"
    );
    let _ = writeln!(o, "| Group | IO address space | Owner | Function → StreamID | BAR window |");
    let _ = writeln!(o, "| --- | --- | --- | --- | --- |");
    for (g, members) in groups.iter().enumerate() {
        for (i, _) in members {
            let s = &sys.io_spaces[*i];
            let mut functions = vec![format!("{} → {:#x}", bdf(s.rid.unwrap_or(0)), s.stream)];
            for (x, r) in s.extra_streams.iter().zip(&s.extra_rids) {
                functions.push(match r {
                    Some(r) => format!("{} → {x:#x}", bdf(*r)),
                    None => format!("{x:#x}"),
                });
            }
            let bar = s.bar.as_deref().and_then(|b| sys.region(b)).map_or("none".to_string(), |r| {
                let pa = r.phys_addr.unwrap_or(0);
                format!("{} {pa:#x}..{:#x}", cell(&r.name), pa.saturating_add(r.size))
            });
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {bar} |",
                g + 1,
                cell(&s.name),
                cell(s.owner.as_deref().unwrap_or("none")),
                functions.join(", ")
            );
        }
    }
    // Whether a function can be reset is the hardware's to say, not the description's:
    // what the next owner is promised, and where that stops, is said here; the IOMMU PD
    // names the reset it did at each stop.
    if !groups.is_empty() {
        let _ = writeln!(
            o,
            "\nEach function's next owner (its owner restarted after a fault, or a VMM's next guest after STOP) gets it stopped (Bus Master, decoding, MSI and MSI-X off, its BARs put back) and reset by FLR, or by D3hot and back to D0, where the function has either. A function with neither (QEMU's edu) keeps what its last owner left in it: device-specific registers, MSI's address and data, and a DMA engine's state behind its BARs, which it acts on, inside its next owner's mappings, once that owner turns Bus Master on. This description cannot say which a function has: the IOMMU PD's console says at each stop (`reset by FLR`, `reset by D3hot`, `no FLR (it has none)`)."
        );
    }
}

/// The picture (`picture.rs`).
pub fn svg(sys: &System) -> String {
    crate::picture::svg(sys, None)
}

/// Where the Microkit tool placed each region a device can reach (its report, read by
/// `placement::read`), beside the devices' IOVA windows and their owners' quotas: the
/// numbers a user compares with a fault's physical address or a bus analyser's trace.
pub fn placements(sys: &System, placed: &std::collections::BTreeMap<String, crate::placement::Placed>) -> String {
    let mut o = String::from("## Where the Microkit tool placed them (its report.txt)\n\n| Region | Physical | Reached by (device: IOVA window; owner's quota) |\n| --- | --- | --- |\n");
    let reach = reachability(sys);
    let mut regions: Vec<&str> = reach.iter().map(|r| r.region.as_str()).collect();
    regions.sort();
    regions.dedup();
    for mr in regions {
        let phys = match (sys.region(mr).and_then(|r| r.phys_addr), placed.get(mr)) {
            (Some(pa), _) => format!("{pa:#x} (fixed in the description)"),
            (None, Some(p)) => crate::placement::shown(p),
            (None, None) => "not in the Microkit report".to_string(),
        };
        let mut by: Vec<String> = Vec::new();
        for s in sys.io_spaces.iter().filter(|s| reach.iter().any(|r| r.region == mr && r.device == s.name)) {
            let quota = s
                .owner
                .as_deref()
                .and_then(|o| sys.quotas.iter().find(|q| q.pd == o))
                .map(|q| format!("{} mappings, {} pages", q.mappings, q.pages))
                .unwrap_or_else(|| "no quota".to_string());
            by.push(format!("{}: {:#x}..{:#x}; {quota}", s.name, s.iova_base, s.iova_base.saturating_add(s.iova_size)));
        }
        let _ = writeln!(o, "| {} | {} | {} |", cell(mr), phys, cell(&by.join("<br>")));
    }
    o
}
