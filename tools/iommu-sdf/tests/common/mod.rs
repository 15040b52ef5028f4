//! What the tests that run the service on a generated policy share: the service started
//! on a `Policy` (its tables leaked, as the IOMMU PD's are static), and a call through the
//! protocol's own encoding; and the test programs (`elf`) the programs' tests read.

#![allow(dead_code)]

pub mod copying;
pub mod elf;

/// The README's text with every run of whitespace one space, so that a phrase it states
/// (a count the tests hold the files to) is found wherever its lines break.
pub fn readme_words() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(path).unwrap().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The number the README writes right after `phrase` (its first occurrence).
pub fn readme_count_after(phrase: &str) -> usize {
    let words = readme_words();
    let (_, after) = words.split_once(phrase).unwrap_or_else(|| panic!("the README no longer says `{phrase}`"));
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no count after `{phrase}` in the README"))
}

use iommu_pd::model::ModelHw;
use iommu_pd::service::{ClientTables, DeviceState};
use iommu_pd::{Config, FaultPolicy, FaultRing, RegionConfig, Service, Storage};
use iommu_protocol::{Reply, Request, MAX_MRS};
use iommu_sdf::policy::Policy;

pub fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

/// The service on `p`, each region's physical address as `pa` says (the description's
/// fixed one is in `RegionConfig::pa`; a region Microkit places has 0 there), or why it
/// would not start.
pub fn start_on(
    p: &Policy,
    pa: impl Fn(&iommu_sdf::model::MemoryRegion, &RegionConfig) -> u64,
) -> Result<Service<'static, ModelHw>, iommu_pd::ConfigError> {
    let cfg = Config {
        clients: leak(p.clients.iter().map(|c| c.1).collect()),
        devices: leak(p.devices.iter().map(|d| d.1).collect()),
        regions: leak(p.regions.iter().map(|(r, c)| RegionConfig { pa: pa(r, c), ..*c }).collect()),
        caps: leak(p.caps.iter().map(|c| c.1).collect()),
        static_maps: leak(p.static_maps.clone()),
        faults: FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 },
    };
    let clients = p.clients.len();
    let storage = Storage {
        caps: leak(vec![None; p.cap_slots]),
        mappings: leak(vec![None; p.mapping_slots as usize]),
        leaves: leak(vec![Default::default(); iommu_pd::index::leaves_for(p.mapping_slots as usize, p.devices.len())]),
        inners: leak(vec![Default::default(); iommu_pd::index::inners_for(p.mapping_slots as usize, p.devices.len())]),
        free: leak(vec![0; p.mapping_slots as usize]),
        clients: leak(vec![ClientTables::default(); clients]),
        devices: leak(vec![DeviceState::default(); p.devices.len()]),
        rings: leak((0..clients).map(|_| FaultRing::default()).collect()),
    };
    Service::new(ModelHw::default(), cfg, storage)
}

/// `req` from `client`, encoded as a driver would send it.
pub fn call(s: &mut Service<'_, ModelHw>, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(client, label, &mrs[..n])
}

/// For a description `check` accepted, with `out` what `build` wrote for it: each
/// `<dma_queue>`'s region is in `out` at its size, mapped exactly twice, read-write, by its
/// client (once, where the client learns it through `iommu_queue`/`iommu_queue_size`, on a
/// page boundary, clear of the client's other maps and below the end of its address space)
/// and by the IOMMU PD (once, where the policy says, with its size and share), and by
/// nothing else: no other PD, no
/// guest, no capability or iomap; and what the report says devices reach is what it says
/// for the same description without its queues.
pub fn queues_hold(text: &str, sys: &iommu_sdf::model::System, out: &str) -> Result<(), String> {
    if sys.queues.is_empty() {
        return Ok(());
    }
    let doc = roxmltree::Document::parse(out).map_err(|e| format!("build's output is not XML: {e}"))?;
    let num = |s: Option<&str>| s.and_then(iommu_sdf::parse::parse_number);
    let sizes: std::collections::HashMap<&str, u64> = doc
        .descendants()
        .filter(|n| n.has_tag_name("memory_region"))
        .filter_map(|n| Some((n.attribute("name")?, num(n.attribute("size"))?)))
        .collect();
    let iommu = sys.iommu.as_ref().map(|i| i.pd.as_str()).ok_or("queues and no <iommu>")?;
    let policy = iommu_sdf::queues::policy_queues(sys);
    let clients: Vec<String> = sys.clients().iter().map(|c| c.name.clone()).collect();
    let end = iommu_sdf::Board::default().pd_vaddr_end;
    for q in &sys.queues {
        let name = iommu_sdf::queues::region_name(&q.pd);
        let size = iommu_sdf::queues::region_size(q.entries).ok_or(format!("{q:?}: a size check refuses"))?;
        if sizes.get(name.as_str()) != Some(&size) {
            return Err(format!("{name} is {:?} bytes in build's output, not {size:#x}", sizes.get(name.as_str())));
        }
        let maps: Vec<roxmltree::Node> =
            doc.descendants().filter(|n| n.has_tag_name("map") && n.attribute("mr") == Some(name.as_str())).collect();
        let owner = |m: &roxmltree::Node| -> (String, bool) {
            let parent = m.parent_element().map(|p| (p.tag_name().name().to_string(), p.attribute("name")));
            match parent {
                Some((tag, name)) => (name.unwrap_or_default().to_string(), tag == "virtual_machine"),
                None => (String::new(), false),
            }
        };
        let mut mappers: Vec<(String, bool)> = maps.iter().map(owner).collect();
        mappers.sort();
        let mut want = vec![(iommu.to_string(), false), (q.pd.clone(), false)];
        want.sort();
        if mappers != want {
            return Err(format!("{name} is mapped by {mappers:?}, not only by {want:?}"));
        }
        for m in &maps {
            if m.attribute("perms") != Some("rw") {
                return Err(format!("{name} mapped {:?}", m.attribute("perms")));
            }
        }
        let va_of = |pd: &str| maps.iter().find(|m| owner(m).0 == pd).and_then(|m| num(m.attribute("vaddr")));
        let client_map = maps.iter().find(|m| owner(m).0 == q.pd).ok_or("no client map")?;
        if (client_map.attribute("setvar_vaddr"), client_map.attribute("setvar_size"))
            != (Some("iommu_queue"), Some("iommu_queue_size"))
        {
            return Err(format!("{}'s map of {name} does not tell it where and how large", q.pd));
        }
        let va = va_of(&q.pd).ok_or("client map without vaddr")?;
        if va % 0x1000 != 0 || u128::from(va) + u128::from(size) > u128::from(end) {
            return Err(format!("{}'s queue at {va:#x}+{size:#x}: unaligned or past {end:#x}", q.pd));
        }
        // The client's other maps (its own, not its guests').
        let pd = doc
            .descendants()
            .find(|n| n.has_tag_name("protection_domain") && n.attribute("name") == Some(q.pd.as_str()))
            .ok_or("no client")?;
        for m in pd.children().filter(|n| n.has_tag_name("map") && n.attribute("mr") != Some(name.as_str())) {
            let (Some(v), Some(s)) = (num(m.attribute("vaddr")), m.attribute("mr").and_then(|r| sizes.get(r))) else {
                continue;
            };
            if u128::from(v) < u128::from(va) + u128::from(size) && u128::from(va) < u128::from(v) + u128::from(*s) {
                return Err(format!(
                    "{}'s queue at {va:#x} overlaps its map of {:?} at {v:#x}",
                    q.pd,
                    m.attribute("mr")
                ));
            }
        }
        let client = clients.iter().position(|c| *c == q.pd).ok_or(format!("{} is no client", q.pd))?;
        if !policy.contains(&(client, va_of(iommu).unwrap_or(0), q.entries, q.share)) {
            return Err(format!("the policy's queues {policy:?} do not list client {client} at the IOMMU PD's map"));
        }
        if sys.caps.iter().any(|c| c.mr.as_deref() == Some(name.as_str()))
            || sys.io_spaces.iter().any(|s| s.iomaps.iter().any(|m| m.mr == name))
        {
            return Err(format!("{name} is given to a device"));
        }
    }
    if policy.len() != sys.queues.len() {
        return Err(format!("the policy lists {} queues for {}", policy.len(), sys.queues.len()));
    }
    // Without its queues, the same description: the same reach.
    let plain: String =
        text.lines().filter(|l| !l.trim_start().starts_with("<dma_queue ")).map(|l| format!("{l}\n")).collect();
    let (without, problems) = iommu_sdf::check_text(&plain);
    if !problems.is_empty() {
        return Err(format!("without its queues it is refused: {problems:#?}"));
    }
    let (with, without) = (iommu_sdf::report::reachability(sys), iommu_sdf::report::reachability(&without));
    if with != without {
        return Err(format!("a queue changed what devices reach: {with:#?}\nwithout: {without:#?}"));
    }
    Ok(())
}
