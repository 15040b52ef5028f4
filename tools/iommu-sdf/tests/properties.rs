//! Properties: random XML never makes the tool panic; random valid descriptions pass
//! `check`, their `build` output passes `check`, and their report proves isolation; moving
//! a client's channel to another id at the IOMMU PD's end makes `check` fail, and so does
//! adding a hostile element to a valid description. Valid descriptions with mapping queues
//! keep each queue to its client and the IOMMU PD and leave the report's reach as it is;
//! a hostile `<dma_queue>` is refused, with a fix.

use proptest::prelude::*;

mod common;

const TAGS: &[&str] = &[
    "system",
    "memory_region",
    "protection_domain",
    "map",
    "io_address_space",
    "iomap",
    "dma_capability",
    "dma_quota",
    "iommu",
    "dma_queue",
    "pci_bridge",
    "channel",
    "end",
    "bogus",
];
const ATTRS: &[&str] = &[
    "name",
    "size",
    "phys_addr",
    "mr",
    "pd",
    "parent",
    "offset",
    "perms",
    "devices",
    "peripheral_id",
    "iovaddr",
    "owner",
    "iova_base",
    "iova_size",
    "mappings",
    "pages",
    "table_pool",
    "id",
    "pp",
    "priority",
    "vaddr",
    "setvar_vaddr",
    "bdf",
    "kind",
    "secondary",
    "subordinate",
    "acs",
    "bar",
    "entries",
    "x",
];
const VALUES: &[&str] = &[
    "0x1000",
    "0",
    "1",
    "a",
    "dma0",
    "drv0",
    "0:2.0",
    "1:0.0",
    "root_port",
    "pcie_to_pci",
    "true",
    "rw",
    "r",
    "dev0",
    "0xffffffffffffffff",
    "-1",
    "1_000",
    "true",
    "fault_rings",
    "",
];

/// `text` with `element` added as the last child of `<system>`.
fn with_element(text: &str, element: &str) -> String {
    text.replace("</system>", &format!("    {element}\n</system>"))
}

fn element() -> impl Strategy<Value = String> {
    let leaf =
        (0..TAGS.len(), prop::collection::vec((0..ATTRS.len(), 0..VALUES.len()), 0..5)).prop_map(|(t, attrs)| {
            let attrs: String = attrs.iter().map(|(a, v)| format!(" {}=\"{}\"", ATTRS[*a], VALUES[*v])).collect();
            format!("<{}{attrs} />", TAGS[t])
        });
    leaf.prop_recursive(3, 24, 6, |inner| {
        (0..TAGS.len(), prop::collection::vec(inner, 0..6))
            .prop_map(|(t, kids)| format!("<{}>{}</{}>", TAGS[t], kids.concat(), TAGS[t]))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_xml_never_panics(body in prop::collection::vec(element(), 0..10), cut in 0usize..400) {
        let text = format!("<system>{}</system>", body.concat());
        let (sys, problems) = iommu_sdf::check_text(&text);
        if problems.is_empty() {
            let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
            prop_assert!(iommu_sdf::check_text(&out).1.is_empty());
            let _ = iommu_sdf::build::policy_rust(&sys, "random");
            let _ = iommu_sdf::report::svg(&sys);
        }
        // Truncated text too.
        let cut = cut.min(text.len());
        let _ = iommu_sdf::check_text(&text[..cut]);
    }

    #[test]
    fn valid_descriptions_pass_and_build_passes(seed in any::<u64>(), pds in 1usize..6, regions in 1usize..12, devices in 1usize..8) {
        let text = iommu_sdf::gen::description(seed, pds, regions, devices);
        let (sys, problems) = iommu_sdf::check_text(&text);
        prop_assert!(problems.is_empty(), "{problems:#?}\n{text}");
        let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
        let (_, again) = iommu_sdf::check_text(&out);
        prop_assert!(again.is_empty(), "{again:#?}\n{out}");
        let md = iommu_sdf::report::markdown(&sys, "generated");
        prop_assert!(md.contains("Proof:"), "{md}");
        let held = common::queues_hold(&text, &sys, &out);
        prop_assert!(held.is_ok(), "{held:?}\n{text}");
    }

    /// A hostile `<dma_queue>` added to a valid description (its own queues taken out):
    /// a wrong size or share, a second queue, a PD that is no client or no PD, a vaddr over the
    /// client's maps, off a page or past its address space, a region of the queue's name,
    /// and the queue's region mapped by another PD, given to a device by a capability or an
    /// iomap. Each is refused where it is, saying why, with a fix.
    #[test]
    fn a_hostile_queue_fails(seed in any::<u64>(), pds in 1usize..6, regions in 1usize..12, devices in 1usize..8, pick in any::<usize>(), which in 0usize..11, size in 0usize..8) {
        let text = iommu_sdf::gen::description(seed, pds, regions, devices);
        let text: String = text.lines().filter(|l| !l.trim_start().starts_with("<dma_queue ")).map(|l| format!("{l}\n")).collect();
        let (sys, _) = iommu_sdf::check_text(&text);
        let clients: Vec<String> = sys.clients().iter().map(|c| c.name.clone()).collect();
        let c = clients[pick % clients.len()].clone();
        let other = sys.pds.iter().map(|p| p.name.clone()).find(|p| *p != c && p != "iommu");
        let first_map = sys.pd(&c).and_then(|p| p.maps.iter().find_map(|m| m.vaddr));
        let queue = format!("<dma_queue pd=\"{c}\" entries=\"64\" />");
        let region = format!("{c}_queue");
        let dev = sys.io_spaces.iter().find(|s| s.owner.as_deref() == Some(c.as_str())).map(|s| s.name.clone()).unwrap_or_default();
        let (added, element, says): (Vec<String>, &str, String) = match which {
            0 if size < 4 => {
                let share = ["0", "1", "65", "0x10000"][size];
                let n = iommu_sdf::parse::parse_number(share).unwrap_or(0);
                (vec![format!("<dma_queue pd=\"{c}\" entries=\"64\" share=\"{share}\" />")], "dma_queue", format!("`{c}`'s queue has share=\"{n}\""))
            }
            0 => {
                let entries = ["0", "1", "3", "6", "100", "8192", "0x10000000000", "65536"][size];
                (vec![format!("<dma_queue pd=\"{c}\" entries=\"{entries}\" />")], "dma_queue", "a ring's size is a power of two".into())
            }
            1 => (vec![queue.clone(), format!("<dma_queue pd=\"{c}\" entries=\"2\" />")], "dma_queue", format!("a second dma_queue for `{c}`")),
            2 => {
                // The IOMMU PD, or a driver that is no client (when there is one).
                let not_client = sys.pds.iter().map(|p| p.name.clone()).find(|p| !clients.contains(p) && p != "iommu" && size % 2 == 0).unwrap_or("iommu".into());
                (vec![format!("<dma_queue pd=\"{not_client}\" entries=\"64\" />")], "dma_queue", "is not a client of the IOMMU PD".into())
            }
            3 => (vec!["<dma_queue pd=\"nobody\" entries=\"64\" />".into()], "dma_queue", "`nobody` is not a protection domain".into()),
            4 => {
                prop_assume!(first_map.is_some());
                let at = first_map.unwrap_or_default() + (size as u64 % 2) * 0x1000;
                prop_assume!(sys.pd(&c).is_some_and(|p| p.maps.iter().any(|m| m.vaddr.is_some_and(|v| v <= at && at < v + sys.region(&m.mr).map_or(0, |r| r.size)))));
                (vec![format!("<dma_queue pd=\"{c}\" entries=\"64\" vaddr=\"{at:#x}\" />")], "dma_queue", "overlaps its map of".into())
            }
            5 => (vec![format!("<dma_queue pd=\"{c}\" entries=\"64\" vaddr=\"{:#x}\" />", 0x2_0000_0000u64 + 8 * (size as u64 + 1))], "dma_queue", "not a page boundary".into()),
            6 => (vec![format!("<dma_queue pd=\"{c}\" entries=\"64\" vaddr=\"0xfffffff000\" />")], "map", "runs past".into()),
            7 => (vec![queue.clone(), format!("<memory_region name=\"{region}\" size=\"0x1000\" />")], "memory_region", format!("`{region}` is the name of `{c}`'s mapping queue")),
            8 => {
                prop_assume!(other.is_some());
                let o = other.clone().unwrap_or_default();
                // Into the other PD, just after its start tag.
                let open = format!("<protection_domain name=\"{o}\"");
                let at = text.find(&open).and_then(|i| text[i..].find('>').map(|j| i + j + 1)).unwrap_or(0);
                let text2 = format!("{}<map mr=\"{region}\" vaddr=\"0x3_0000_0000\" perms=\"r\" />{}", &text[..at], &text[at..]);
                let mutated = text2.replace("</system>", &format!("    {queue}\n</system>"));
                let (_, problems) = iommu_sdf::check_text(&mutated);
                let says = format!("`{o}` maps `{region}`");
                prop_assert!(problems.iter().any(|p| p.element == "map" && p.message.contains(&says)), "{problems:#?}\n{mutated}");
                prop_assert!(problems.iter().all(|p| !p.fix.is_empty()), "{problems:#?}");
                return Ok(());
            }
            9 => (vec![queue.clone(), format!("<dma_capability name=\"qcap\" pd=\"{c}\" mr=\"{region}\" size=\"0x1000\" perms=\"rw\" devices=\"{dev}\" />")], "dma_capability", format!("covers `{region}`")),
            _ => {
                prop_assume!(!dev.is_empty());
                let at = text.find(&format!("<io_address_space name=\"{dev}\"")).map(|i| i + text[i..].find("/>").unwrap_or(0)).unwrap_or(0);
                let mutated = format!("{}><iomap mr=\"{region}\" iovaddr=\"0x1_00f0_0000\" perms=\"rw\" /></io_address_space>{}", &text[..at], &text[at + 2..]);
                let mutated = mutated.replace("</system>", &format!("    {queue}\n</system>"));
                let (_, problems) = iommu_sdf::check_text(&mutated);
                prop_assert!(problems.iter().any(|p| p.element == "iomap" && p.message.contains("mapping queue, for DMA")), "{problems:#?}\n{mutated}");
                prop_assert!(problems.iter().all(|p| !p.fix.is_empty()), "{problems:#?}");
                return Ok(());
            }
        };
        let mut mutated = text.clone();
        for a in &added {
            mutated = with_element(&mutated, a);
        }
        let (_, problems) = iommu_sdf::check_text(&mutated);
        prop_assert!(problems.iter().any(|p| p.element == element && p.message.contains(&says)), "{problems:#?}\n{mutated}");
        prop_assert!(problems.iter().all(|p| !p.fix.is_empty()), "{problems:#?}");
    }

    #[test]
    fn another_iommu_channel_id_fails(seed in any::<u64>(), pds in 1usize..6, regions in 1usize..12, devices in 1usize..8, pick in any::<usize>(), id in 0u64..63) {
        let text = iommu_sdf::gen::description(seed, pds, regions, devices);
        // Client p's channel has id p + 1 at the IOMMU PD's end.
        let client = pick % pds.min(devices);
        let from = format!("<end pd=\"iommu\" id=\"{}\" />", client + 1);
        prop_assume!(id != client as u64 + 1);
        prop_assert_eq!(text.matches(&from).count(), 1);
        let mutated = text.replace(&from, &format!("<end pd=\"iommu\" id=\"{id}\" />"));
        let (_, problems) = iommu_sdf::check_text(&mutated);
        let name = format!("`drv{client}`");
        prop_assert!(problems.iter().any(|p| p.element == "end" && p.message.contains(&name)), "{problems:#?}\n{mutated}");
    }

    /// A capability derived at boot for a client its parent may not be granted to.
    #[test]
    fn deriving_for_a_pd_the_parent_may_not_go_to_fails(seed in any::<u64>(), pds in 2usize..6, regions in 1usize..12, devices in 2usize..8, pick in any::<usize>()) {
        let text = iommu_sdf::gen::description(seed, pds, regions, devices);
        let (sys, _) = iommu_sdf::check_text(&text);
        let parent = &sys.caps[pick % sys.caps.len()];
        // Client p owns device p (the generator's convention).
        let thief = (0..pds.min(devices))
            .map(|p| format!("drv{p}"))
            .find(|p| *p != parent.pd && !parent.grant_to.contains(p));
        prop_assume!(thief.is_some());
        let thief = thief.unwrap_or_default();
        let device = format!("dev{}", &thief[3..]);
        // Within the parent's range and rights: only the holder is wrong.
        let perms = match (parent.perms.read, parent.perms.write) { (true, true) => "rw", (true, false) => "r", _ => "w" };
        let stolen = format!(r#"<dma_capability name="stolen" parent="{}" pd="{thief}" size="0x1000" perms="{perms}" devices="{device}" />"#, parent.name);
        let mutated = with_element(&text, &stolen);
        let (_, problems) = iommu_sdf::check_text(&mutated);
        prop_assert!(problems.iter().any(|p| p.element == "dma_capability" && p.message.contains("`stolen` is derived from")), "{problems:#?}\n{mutated}");
        prop_assert_eq!(problems.len(), 1, "{:#?}", problems);
    }

    /// A driver that maps one of the IOMMU's own regions, or another name for a page of
    /// the SMMU's registers, even read-only.
    #[test]
    fn a_driver_mapping_the_iommus_own_memory_fails(seed in any::<u64>(), pds in 1usize..6, regions in 1usize..12, devices in 1usize..8, pick in any::<usize>(), which in 0usize..7) {
        let text = iommu_sdf::gen::description(seed, pds, regions, devices);
        let mr = ["smmu_regs", "smmu_strtab", "smmu_cmdq", "smmu_eventq", "smmu_cds", "smmu_tables", "regs_alias"][which];
        let text = with_element(&text, r#"<memory_region name="regs_alias" size="0x1000" phys_addr="0x9051000" />"#);
        let pd = format!("drv{}", pick % pds);
        let open = format!("<protection_domain name=\"{pd}\"");
        let at = text.find(&open).and_then(|i| text[i..].find('>').map(|j| i + j + 1));
        prop_assert!(at.is_some());
        let at = at.unwrap_or_default();
        let mutated = format!("{}\n<map mr=\"{mr}\" vaddr=\"0x7000000\" perms=\"r\" />{}", &text[..at], &text[at..]);
        let (_, problems) = iommu_sdf::check_text(&mutated);
        // Another name for the SMMU's registers is refused where it is declared.
        let says = format!("`{pd}` maps `{mr}`");
        let alias = "`regs_alias` shares physical memory with `smmu_regs`";
        prop_assert!(
            problems.iter().any(|p| (p.element == "map" && p.message.contains(&says)) || (mr == "regs_alias" && p.message.contains(alias))),
            "{problems:#?}\n{mutated}"
        );
    }

    /// Without `<iommu>`, nothing would enforce the address spaces, capabilities and quotas.
    #[test]
    fn removing_the_iommu_element_fails(seed in any::<u64>(), pds in 1usize..6, regions in 1usize..12, devices in 1usize..8) {
        let text = iommu_sdf::gen::description(seed, pds, regions, devices);
        let mutated: String = text.lines().filter(|l| !l.trim_start().starts_with("<iommu ")).map(|l| format!("{l}\n")).collect();
        prop_assert!(mutated.len() < text.len());
        let (_, problems) = iommu_sdf::check_text(&mutated);
        prop_assert!(problems.iter().any(|p| p.message.contains("but there is no <iommu>")), "{problems:#?}\n{mutated}");
    }

    /// A second element with a name (or, for a quota, a PD) that is already taken.
    #[test]
    fn a_second_definition_fails(seed in any::<u64>(), pds in 1usize..6, regions in 1usize..12, devices in 1usize..8, which in 0usize..5) {
        let text = iommu_sdf::gen::description(seed, pds, regions, devices);
        // Every generated description has dma0, drv0 (which owns dev0 and holds cap0).
        let (element, again) = [
            ("memory_region", r#"<memory_region name="dma0" size="0x1000" />"#),
            ("protection_domain", r#"<protection_domain name="drv0" priority="1" />"#),
            ("io_address_space", r#"<io_address_space name="dev0" peripheral_id="0x4000" owner="drv0" />"#),
            ("dma_capability", r#"<dma_capability name="cap0" pd="drv0" mr="dma0" size="0x1000" perms="r" devices="dev0" />"#),
            ("dma_quota", r#"<dma_quota pd="drv0" mappings="1" pages="1" />"#),
        ][which];
        let mutated = with_element(&text, again);
        let (_, problems) = iommu_sdf::check_text(&mutated);
        let says = format!("a second {element}");
        prop_assert!(problems.iter().any(|p| p.element == element && p.message.contains(&says)), "{problems:#?}\n{mutated}");
    }
}
