//! One mistake, one error: `system.xml` with a single mistake in it (a definition
//! refused, a name misspelt where it is used or defined, a name defined twice, the IOMMU
//! PD misnamed) gets exactly one problem from `check`, the first cause, and none of what
//! follows from it (knock-on errors: every use of a refused region, a PD's plumbing, the
//! generated numbers).
use std::fs;
use std::path::Path;

fn system_xml() -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml")).unwrap()
}

/// (what the mistake is, text in system.xml, what it becomes, the one problem expected).
const MISTAKES: &[(&str, &str, &str, &str)] = &[
    (
        "a region's size not a number",
        r#"name="edu_buffers" size="0x3000""#,
        r#"name="edu_buffers" size="zz""#,
        "`size` is not a number",
    ),
    (
        "a region with no name",
        r#"<memory_region name="edu_buffers" size="0x3000" />"#,
        r#"<memory_region size="0x3000" />"#,
        "missing attribute `name`",
    ),
    (
        "a region with no size",
        r#"<memory_region name="edu_buffers" size="0x3000" />"#,
        r#"<memory_region name="edu_buffers" />"#,
        "missing attribute `size`",
    ),
    (
        "a region's name twice",
        r#"<memory_region name="hostile_scratch" size="0x2000" />"#,
        r#"<memory_region name="edu_buffers" size="0x2000" />"#,
        "a second memory_region named `edu_buffers`",
    ),
    (
        "a PD with no name",
        r#"<protection_domain name="edu_driver" priority="100""#,
        r#"<protection_domain priority="100""#,
        "missing attribute `name`",
    ),
    (
        "a PD's name not writable",
        r#"<protection_domain name="edu_driver" priority="100""#,
        r#"<protection_domain name="edu driver" priority="100""#,
        "is not one build can write safely",
    ),
    (
        "a PD's name twice",
        r#"name="hostile_driver" priority="90""#,
        r#"name="edu_driver" priority="90""#,
        "a second protection_domain named `edu_driver`",
    ),
    (
        "a device's peripheral_id garbled",
        r#"name="edu_a" peripheral_id="0:2.0""#,
        r#"name="edu_a" peripheral_id="zz""#,
        "is neither a StreamID nor bus:device.function",
    ),
    (
        "a device with no name",
        r#"<io_address_space name="edu_a" peripheral_id="0:2.0""#,
        r#"<io_address_space peripheral_id="0:2.0""#,
        "missing attribute `name`",
    ),
    (
        "a device's name twice",
        r#"name="edu_hostile" peripheral_id"#,
        r#"name="edu_a" peripheral_id"#,
        "a second io_address_space named `edu_a`",
    ),
    (
        "a device's owner misspelt",
        "owner=\"edu_driver\"\n                      iova_base",
        "owner=\"edu_drivr\"\n                      iova_base",
        "owned by `edu_drivr`, which is not a protection domain (did you mean `edu_driver`?)",
    ),
    (
        "a quota's PD misspelt",
        r#"<dma_quota pd="edu_driver""#,
        r#"<dma_quota pd="edu_drivr""#,
        "`edu_drivr` is not a protection domain (did you mean `edu_driver`?)",
    ),
    (
        "a map's region misspelt",
        r#"<map mr="edu_buffers" vaddr="0x5000000" perms="rw" setvar_vaddr="dma_buffers""#,
        r#"<map mr="edu_bufers" vaddr="0x5000000" perms="rw" setvar_vaddr="dma_buffers""#,
        "memory region `edu_bufers` does not exist (did you mean `edu_buffers`?)",
    ),
    ("the IOMMU PD misnamed", r#"<iommu pd="iommu""#, r#"<iommu pd="iommuu""#, "`iommuu` is not a protection domain"),
    (
        "a capability's region misspelt",
        r#"pd="edu_driver" mr="edu_buffers""#,
        r#"pd="edu_driver" mr="edu_bufers""#,
        "`edu_bufers`",
    ),
    ("a capability's device misspelt", r#"devices="edu_a""#, r#"devices="edu_b""#, "`edu_b`"),
    (
        "a map over another of its PD",
        r#"<map mr="c_bar0" vaddr="0x7000000""#,
        r#"<map mr="c_bar0" vaddr="0x5000000""#,
        "`c_bar0` at 0x5000000 in `c_edu_driver` overlaps the map of `c_buffers`",
    ),
];

#[test]
fn one_mistake_gets_one_error() {
    let text = system_xml();
    let (_, clean) = iommu_sdf::check_text(&text);
    assert!(clean.is_empty(), "system.xml itself: {clean:#?}");
    for (what, from, to, expect) in MISTAKES {
        assert_eq!(text.matches(from).count(), 1, "{what}: `{from}` is not in system.xml once");
        let (_, problems) = iommu_sdf::check_text(&text.replacen(from, to, 1));
        assert_eq!(problems.len(), 1, "{what}: {problems:#?}");
        assert!(problems[0].message.contains(expect), "{what}: {:#?}", problems[0]);
    }
}

/// What is independent of the mistake is still reported: a second, unrelated mistake
/// is not taken for a knock-on one.
#[test]
fn an_independent_second_mistake_is_still_reported() {
    let text =
        system_xml().replacen(r#"name="edu_buffers" size="0x3000""#, r#"name="edu_buffers" size="zz""#, 1).replacen(
            r#"<dma_quota pd="hostile_driver" mappings="4""#,
            r#"<dma_quota pd="hostile_driver" mappings="q""#,
            1,
        );
    let (_, problems) = iommu_sdf::check_text(&text);
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

/// A queue over a map of its PD is one mistake: `queues` says so, and the rule on maps
/// over maps (which sees the queue's generated map) leaves it to it.
#[test]
fn a_queue_over_a_map_is_one_error() {
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/ok-queue.xml"))
        .unwrap()
        .replace(r#"<map mr="edu_buffers" vaddr="0x4000000""#, r#"<map mr="edu_buffers" vaddr="0x100000000""#);
    let (_, problems) = iommu_sdf::check_text(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0]
        .message
        .contains("`edu_driver`'s queue at 0x100000000..0x100001000 overlaps its map of `edu_buffers`"));
}
