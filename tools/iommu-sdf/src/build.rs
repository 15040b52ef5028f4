//! `iommu-sdf build`: from one description, the file for the Microkit tool (this
//! project's elements removed, and `setvar region_paddr` added to the IOMMU PD for every
//! region devices may reach) and the IOMMU PD's policy as Rust source, so the two are
//! always made from the same text.

use std::fmt::Write as _;

use roxmltree::{Document, Node};

pub use crate::model::paddr_symbol;
use crate::model::*;
use crate::plumbing::attr;
pub use crate::policy::{dma_regions, policy};

/// Elements only this tool understands; the Microkit tool must not see them.
const OURS: &[&str] = &["io_address_space", "dma_capability", "dma_quota", "dma_queue", "iommu", "pci_bridge"];

/// The name of the Microkit file made from the description `file` (`build` writes it into
/// its output directory, `check --copy-programs` beside the programs it copies): the
/// description's name with `.system` for its extension.
pub fn microkit_file_name(file: &std::path::Path) -> String {
    format!("{}.system", file.file_stem().and_then(|s| s.to_str()).unwrap_or("system"))
}

/// The Microkit file for `target` made from the description `text`, checked as `sys`: for
/// aarch64 `microkit_system`; for x86_64 (no IOMMU PD; Microkit's elements only, which the
/// Microkit tool reads itself) the text as it is.
pub fn microkit_file(text: &str, sys: &System, target: crate::board::Target) -> Result<String, String> {
    if target == crate::board::Target::X86_64 {
        return Ok(text.to_string());
    }
    microkit_system(text, sys)
}

/// The description for the Microkit tool.
pub fn microkit_system(text: &str, sys: &System) -> Result<String, String> {
    let doc = Document::parse(text).map_err(|e| e.to_string())?;
    let mut cut: Vec<(usize, usize, String)> = Vec::new();
    for n in doc.root_element().children().filter(Node::is_element) {
        if OURS.contains(&n.tag_name().name()) {
            // The element goes, its line breaks stay: every line of the output is the
            // input's line of the same number, so the Microkit tool's messages point at the
            // user's file. The generated top-level plumbing takes `<iommu>`'s first line.
            let (start, end) = (n.range().start, n.range().end);
            let breaks = text[start..end].matches('\n').count();
            // A queue's region takes its `<dma_queue>`'s first line.
            let region = if n.has_tag_name("dma_queue") {
                let line = doc.text_pos_at(start).row;
                sys.generated.queue_regions.iter().find(|(l, _)| *l == line)
            } else {
                None
            };
            let generated = match region {
                Some((_, xml)) => xml.as_str(),
                None if n.has_tag_name("iommu") => sys.generated.top.as_str(),
                None => "",
            };
            cut.push((start, end, format!("{generated}{}", "\n".repeat(breaks))));
        }
    }
    // Generated child ids, at the end of each child's start tag.
    for (pd, id) in &sys.generated.child_ids {
        let close = start_tag_end(&doc, text, pd)?;
        cut.push((close, close, format!(" id=\"{id}\"")));
    }
    // The IOMMU PD's stack, where the description gives none, on its start tag.
    if let (Some(iommu), Some(stack)) = (&sys.iommu, sys.generated.iommu_stack) {
        let close = start_tag_end(&doc, text, &iommu.pd)?;
        cut.push((close, close, format!(" stack_size=\"{stack:#x}\"")));
    }
    // Generated maps in a client (its queue), just after its start tag, on its line.
    for (pd, xml) in &sys.generated.in_pd {
        let close = start_tag_end(&doc, text, pd)?;
        if text.as_bytes()[close] == b'/' {
            return Err(format!("protection domain `{pd}` has no program (a self-closed element)"));
        }
        cut.push((close + 1, close + 1, xml.clone()));
    }
    if let Some(iommu) = &sys.iommu {
        let pd = doc
            .descendants()
            .find(|n| n.has_tag_name("protection_domain") && n.attribute("name") == Some(iommu.pd.as_str()))
            .ok_or_else(|| format!("no protection domain `{}`", iommu.pd))?;
        let mut setvars = sys.generated.in_iommu_pd.clone();
        for r in dma_regions(sys) {
            let _ = write!(
                setvars,
                "<setvar symbol=\"{}\" region_paddr=\"{}\" /> ",
                attr(&paddr_symbol(&r.name)),
                attr(&r.name)
            );
        }
        // Just before </protection_domain>, on its line: no line moves.
        let close = text[..pd.range().end].rfind("</").ok_or("a self-closed IOMMU protection domain")?;
        cut.push((close, close, setvars));
    }
    cut.sort_by_key(|c| c.0);
    let mut out = String::new();
    let mut at = 0;
    for (start, end, insert) in cut {
        out.push_str(&text[at..start]);
        out.push_str(&insert);
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// Where protection domain `pd`'s start tag ends in `text`: the offset of its `>`, or of
/// the `/` of `/>`.
fn start_tag_end(doc: &Document, text: &str, pd: &str) -> Result<usize, String> {
    let node = doc
        .descendants()
        .find(|n| n.has_tag_name("protection_domain") && n.attribute("name") == Some(pd))
        .ok_or_else(|| format!("no protection domain `{pd}`"))?;
    tag_end(text, node.range().start).ok_or_else(|| "an unclosed start tag".to_string())
}

/// Where the start tag at `start` ends: its `>`, or the `/` of `/>`. Found by stepping
/// over each attribute's quoted value (and each namespace declaration's, which roxmltree
/// does not list as an attribute), not by the first `>`: a value may hold one
/// (`domain='a>b'` is a domain name the Microkit tool takes), and an id written there
/// would land inside the value. `text` is a document roxmltree parsed, so the tag is
/// well formed.
fn tag_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = start + 1;
    let mut quote = None;
    while at < bytes.len() {
        match (quote, bytes[at]) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, c @ (b'"' | b'\'')) => quote = Some(c),
            (None, b'>') => return Some(at),
            (None, b'/') if bytes.get(at + 1) == Some(&b'>') => return Some(at),
            (None, _) => {}
        }
        at += 1;
    }
    None
}

/// `Rights` as Rust source.
fn rights_rust(r: iommu_protocol::Rights) -> &'static str {
    match r.0 {
        3 => "Rights::READ_WRITE",
        2 => "Rights::WRITE",
        _ => "Rights::READ",
    }
}

/// The IOMMU PD's policy tables as Rust source, for `include!`.
pub fn policy_rust(sys: &System, source: &str) -> String {
    let p = policy(sys);
    let mut o = String::new();
    let _ = writeln!(o, "// Generated by iommu-sdf from {source}. Do not edit: change the description.");
    let _ = writeln!(o, "#[allow(unused_imports)]");
    let _ = writeln!(
        o,
        "use iommu_pd::{{BridgeConfig, BridgeKind, CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, PciFunctionConfig, RegionConfig, StaticMapConfig}};"
    );
    let _ = writeln!(o, "#[allow(unused_imports)]");
    let _ = writeln!(o, "use iommu_protocol::Rights;\n");

    let _ = writeln!(o, "/// Clients: the PDs that own a device or hold a DMA capability.");
    let _ = writeln!(o, "pub static CLIENTS: [ClientConfig; {}] = [", p.clients.len());
    for (name, c) in &p.clients {
        let _ = writeln!(
            o,
            "    ClientConfig {{ name: {name:?}, max_mappings: {}, max_pages: {}, max_grants: {} }},",
            c.max_mappings, c.max_pages, c.max_grants
        );
    }
    let _ = writeln!(o, "];\n");

    let _ = writeln!(o, "/// Per client: its program (`program_image path`), from which the IOMMU PD may restart it.");
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub static CLIENT_PROGRAMS: [&str; {}] = [", p.clients.len());
    for (name, _) in &p.clients {
        let program = sys.pd(name).and_then(|pd| pd.program.as_ref()).map_or("", |pr| pr.path.as_str());
        let _ = writeln!(o, "    {program:?},");
    }
    let _ = writeln!(o, "];\n");

    let _ = writeln!(o, "/// Devices, one per io_address_space.");
    let _ = writeln!(o, "pub static DEVICES: [DeviceConfig; {}] = [", p.devices.len());
    for ((name, d), streams) in p.devices.iter().zip(&p.extra_streams) {
        let extra: Vec<String> = streams.iter().map(|s| format!("{s:#x}")).collect();
        let extra = extra.join(", ");
        let _ = writeln!(
            o,
            "    DeviceConfig {{ name: {name:?}, stream: {:#x}, extra_streams: &[{}], owner: {}, iova_base: {:#x}, iova_size: {:#x}, resume_allowed: {} }},",
            d.stream, extra, d.owner, d.iova_base, d.iova_size, d.resume_allowed
        );
    }
    let _ = writeln!(o, "];\n");
    let _ = writeln!(o, "/// Per device: the virtual machine it is passed through to (io_address_space vm), or \"\".");
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub static DEVICE_VMS: [&str; {}] = [", sys.io_spaces.len());
    for s in &sys.io_spaces {
        let _ = writeln!(o, "    {:?},", s.vm.as_deref().unwrap_or(""));
    }
    let _ = writeln!(o, "];\n");

    let _ = writeln!(o, "/// Per device passed through to a virtual machine: the guest-physical address bits its");
    let _ = writeln!(o, "/// RAM needs (the input size of a stage-2 domain); 0 for any other device.");
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub static DEVICE_IPA_BITS: [u32; {}] = [", sys.io_spaces.len());
    for s in &sys.io_spaces {
        let _ = writeln!(o, "    {},", crate::policy::ipa_bits(sys, s));
    }
    let _ = writeln!(o, "];\n");

    let _ = writeln!(o, "/// Regions devices may reach. `pa` is the description's phys_addr, or 0: then the IOMMU");
    let _ = writeln!(o, "/// PD reads it from the symbol of the same index in `REGION_PADDR_SYMBOLS` (a setvar).");
    let _ = writeln!(o, "pub static REGIONS: [RegionConfig; {}] = [", p.regions.len());
    for (r, c) in &p.regions {
        let _ = writeln!(o, "    RegionConfig {{ name: {:?}, pa: {:#x}, size: {:#x} }},", r.name, c.pa, c.size);
    }
    let _ = writeln!(o, "];\n");
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub static REGION_PADDR_SYMBOLS: [&str; {}] = [", p.regions.len());
    for (r, _) in &p.regions {
        let _ = writeln!(o, "    {:?},", paddr_symbol(&r.name));
    }
    let _ = writeln!(o, "];\n");
    let _ = writeln!(o, "// The Microkit tool patches these (setvar region_paddr) in the IOMMU PD's image.");
    for (r, _) in &p.regions {
        let _ = writeln!(
            o,
            "#[no_mangle]\n#[link_section = \".data\"]\n#[allow(non_upper_case_globals)]\nstatic mut {}: u64 = 0;",
            paddr_symbol(&r.name)
        );
    }
    let _ = writeln!(o, "\n/// The regions' physical addresses: fixed ones from the description, the others as the");
    let _ = writeln!(o, "/// Microkit tool patched them.");
    let _ = writeln!(o, "pub fn region_paddrs() -> [u64; {}] {{", p.regions.len());
    let _ = writeln!(o, "    [");
    for (r, _) in &p.regions {
        match r.phys_addr {
            Some(pa) => {
                let _ = writeln!(o, "        {pa:#x},");
            }
            None => {
                let _ = writeln!(
                    o,
                    "        // SAFETY: a plain word the loader wrote before this program ran.\n        unsafe {{ core::ptr::addr_of!({}).read_volatile() }},",
                    paddr_symbol(&r.name)
                );
            }
        }
    }
    let _ = writeln!(o, "    ]");
    let _ = writeln!(o, "}}\n");

    let _ = writeln!(o, "/// Capabilities held at boot (derived ones flattened onto their region); handles are");
    let _ = writeln!(o, "/// numbered per client in this order.");
    let _ = writeln!(o, "pub static CAPS: [CapConfig; {}] = [", p.caps.len());
    for (name, c) in &p.caps {
        let _ = writeln!(
            o,
            "    CapConfig {{ client: {}, region: {}, offset: {:#x}, len: {:#x}, rights: {}, devices: {:#b}, grant_to: {:#b} }}, // {name}",
            c.client,
            c.region,
            c.offset,
            c.len,
            rights_rust(c.rights),
            c.devices,
            c.grant_to
        );
    }
    let _ = writeln!(o, "];\n");

    let _ = writeln!(o, "/// The description's iomaps.");
    let _ = writeln!(o, "pub static STATIC_MAPS: [StaticMapConfig; {}] = [", p.static_maps.len());
    for m in &p.static_maps {
        let _ = writeln!(
            o,
            "    StaticMapConfig {{ device: {}, region: {}, offset: {:#x}, len: {:#x}, iova: {:#x}, rights: {} }},",
            m.device,
            m.region,
            m.offset,
            m.len,
            m.iova,
            rights_rust(m.rights)
        );
    }
    let _ = writeln!(o, "];\n");

    let _ = writeln!(o, "/// The description's PCI bridges (<pci_bridge>): the bus numbers the PCI owner gives them.");
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub static PCI_BRIDGES: [BridgeConfig; {}] = [", p.bridges.len());
    for b in &p.bridges {
        let _ = writeln!(
            o,
            "    BridgeConfig {{ rid: {:#06x}, kind: BridgeKind::{:?}, secondary: {}, subordinate: {}, acs: {} }}, // {}",
            b.rid,
            b.kind,
            b.secondary,
            b.subordinate,
            b.acs,
            bdf(b.rid)
        );
    }
    let _ = writeln!(o, "];\n");
    let _ = writeln!(o, "/// The devices that are PCI functions: their configuration address and BAR window.");
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub static PCI_FUNCTIONS: [PciFunctionConfig; {}] = [", p.functions.len());
    for (name, f) in &p.functions {
        let _ = writeln!(
            o,
            "    PciFunctionConfig {{ device: {}, rid: {:#06x}, bar_base: {:#x}, bar_size: {:#x}, intx: {:#06b} }}, // {name} at {}",
            f.device,
            f.rid,
            f.bar_base,
            f.bar_size,
            f.intx,
            bdf(f.rid)
        );
    }
    let _ = writeln!(o, "];\n");

    let queues = crate::queues::policy_queues(sys);
    let _ = writeln!(
        o,
        "/// Mapping queues (<dma_queue>): (client, where this PD maps the region, entries a ring, share: its full batches take at most 1/share of this PD's time)."
    );
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub static QUEUES: [(usize, usize, u32, u32); {}] = [", queues.len());
    for (client, va, entries, share) in &queues {
        let _ = writeln!(o, "    ({client}, {va:#x}, {entries}, {share}),");
    }
    let _ = writeln!(o, "];\n");
    let _ = writeln!(o, "/// The SMMU's set-up: StreamID and IOVA widths the description needs.");
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub const STREAM_ID_BITS: u32 = {};", p.stream_id_bits);
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub const IOVA_BITS: u32 = {};\n", p.iova_bits);
    let _ = writeln!(o, "/// Table sizes for `Storage`.");
    let _ = writeln!(o, "pub const CAP_SLOTS: usize = {};", p.cap_slots);
    let _ = writeln!(o, "pub const MAPPING_SLOTS: usize = {};", p.mapping_slots);
    let _ = writeln!(
        o,
        "pub type PolicyStorage = iommu_pd::owned_storage!({}, {}, CAP_SLOTS, MAPPING_SLOTS);\n",
        p.clients.len().max(1),
        p.devices.len().max(1)
    );
    let (window_us, max_faults) =
        sys.iommu.as_ref().map_or((crate::parse::DEFAULT_FAULT_WINDOW_US, crate::parse::DEFAULT_MAX_FAULTS), |i| {
            (i.fault_window_us, i.max_faults)
        });
    let _ = writeln!(o, "/// Fault storms: more than MAX_FAULTS faults from one device within FAULT_WINDOW_US");
    let _ = writeln!(o, "/// microseconds quarantine it (the IOMMU PD turns the window into timer ticks).");
    let _ = writeln!(o, "pub const FAULT_WINDOW_US: u64 = {window_us};");
    let _ = writeln!(o, "pub const MAX_FAULTS: u32 = {};\n", max_faults.min(u32::MAX as u64));
    // Which PD is the IOMMU PD is `<iommu pd>`'s to say, here as in every rule: its build
    // takes its interrupts from this list, not from a PD it finds by name in the text.
    let irqs = sys
        .iommu
        .as_ref()
        .and_then(|i| sys.pd(&i.pd))
        .map_or(Vec::new(), |pd| pd.irqs.iter().filter_map(|i| Some(format!("({}, {})", i.id, i.irq?))).collect());
    let _ = writeln!(o, "/// The IOMMU PD's own interrupts, `(id, irq)`: those of the protection domain `<iommu pd>`");
    let _ = writeln!(o, "/// names (whether the SMMU's and the timer's reach it).");
    let _ = writeln!(o, "#[allow(dead_code)]");
    let _ = writeln!(o, "pub const IOMMU_PD_IRQS: &[(u64, u64)] = &[{}];\n", irqs.join(", "));
    let _ = writeln!(o, "/// The policy, with `regions` holding every region's physical address.");
    let _ = writeln!(o, "pub fn config(regions: &[RegionConfig], faults: FaultPolicy) -> Config<'_> {{");
    let _ = writeln!(
        o,
        "    Config {{ clients: &CLIENTS, devices: &DEVICES, regions, caps: &CAPS, static_maps: &STATIC_MAPS, faults }}"
    );
    let _ = writeln!(o, "}}");
    o
}
