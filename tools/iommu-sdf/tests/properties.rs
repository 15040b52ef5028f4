//! Properties: random XML never makes the tool panic; random valid descriptions pass
//! `check`, their `build` output passes `check`, and their report proves isolation; moving
//! a client's channel to another id at the IOMMU PD's end makes `check` fail, and so does
//! adding a hostile element to a valid description.

use proptest::prelude::*;

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
