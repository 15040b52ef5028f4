//! `<dma_queue>`: build writes the queue's region where the element was, maps it into its
//! client and the IOMMU PD and nowhere else, and the policy, the client's numbers and the
//! report say the same size and places. (Each refusal: `tests/sdf/fail/queue-*.xml`.)

use std::path::Path;

use iommu_sdf::programs;

fn sdf(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf").join(name)).unwrap()
}

#[test]
fn build_writes_the_region_and_its_two_maps_on_the_users_lines() {
    let text = sdf("ok-queue.xml");
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
    assert_eq!(out.lines().count(), text.lines().count());
    let line_of = |s: &str| text.lines().position(|l| l.contains(s)).unwrap();
    let out_lines: Vec<&str> = out.lines().collect();
    // 64 entries: 128 + 64 * (48 + 24) = 4,736 bytes, two pages; 16 entries: one page.
    assert_eq!(
        out_lines[line_of(r#"<dma_queue pd="blk_driver""#)].trim(),
        r#"<memory_region name="blk_driver_queue" size="0x2000" />"#
    );
    assert_eq!(
        out_lines[line_of(r#"<dma_queue pd="edu_driver""#)].trim(),
        r#"<memory_region name="edu_driver_queue" size="0x1000" />"#
    );
    // The clients' maps at the end of their start tags: one given, one placed above the
    // PD's program image (`CLIENT_FLOOR`, above its maps too).
    assert!(out_lines[line_of(r#"name="edu_driver""#)]
        .ends_with(r#"id="1"> <map mr="edu_driver_queue" vaddr="0x100000000" perms="rw" setvar_vaddr="iommu_queue" setvar_size="iommu_queue_size" />"#));
    assert!(out_lines[line_of(r#"name="blk_driver" priority"#)]
        .ends_with(r#"id="2"> <map mr="blk_driver_queue" vaddr="0x1000000000" perms="rw" setvar_vaddr="iommu_queue" setvar_size="iommu_queue_size" />"#));
    // The IOMMU PD's, on its closing line, above all its maps.
    let close = out_lines.iter().rposition(|l| l.contains("</protection_domain>")).unwrap();
    assert!(
        out_lines[close].contains(r#"<map mr="blk_driver_queue" vaddr="0x1000000000" perms="rw" />"#),
        "{}",
        out_lines[close]
    );
    assert!(out_lines[close].contains(r#"<map mr="edu_driver_queue" vaddr="0x1000200000" perms="rw" />"#));
    // Each queue region is mapped twice in all: by its client and by the IOMMU PD.
    for (region, client) in [("blk_driver_queue", "blk_driver"), ("edu_driver_queue", "edu_driver")] {
        let mappers: Vec<&str> =
            sys.pds.iter().filter(|p| p.maps.iter().any(|m| m.mr == region)).map(|p| p.name.as_str()).collect();
        assert_eq!(mappers, ["iommu", client]);
        assert_eq!(out.matches(&format!("mr=\"{region}\"")).count(), 2);
    }
    // The output, read as a description of its own (regions and maps written out, no
    // dma_queue), passes too.
    let (_, again) = iommu_sdf::check_text(&out);
    assert!(again.is_empty(), "{again:#?}\n{out}");
}

#[test]
fn the_policy_the_numbers_and_the_report_agree() {
    let text = sdf("ok-queue.xml");
    let (sys, _) = iommu_sdf::check_text(&text);
    let policy = iommu_sdf::build::policy_rust(&sys, "ok-queue.xml");
    // (client, where the IOMMU PD maps it, entries, share): blk_driver is client 1, with
    // the default share; edu_driver's is the description's.
    assert!(policy.contains("pub static QUEUES: [(usize, usize, u32, u32); 2] = [\n    (1, 0x1000000000, 64, 4),\n    (0, 0x1000200000, 16, 8),\n];"), "{policy}");
    let numbers = iommu_sdf::numbers::numbers(&sys);
    let blk = numbers.iter().find(|n| n.pd == "blk_driver").unwrap();
    assert_eq!(blk.queue, Some((0x10_0000_0000, 64, 4)));
    let edu = numbers.iter().find(|n| n.pd == "edu_driver").unwrap();
    assert_eq!(edu.queue, Some((0x1_0000_0000, 16, 8)));
    assert!(iommu_sdf::numbers::c_header(edu, "ok-queue.xml").contains("#define EDU_DRIVER_QUEUE_SHARE 8\n"));
    assert!(iommu_sdf::numbers::rust_module(edu, "ok-queue.xml").contains("pub const QUEUE_SHARE: u32 = 8;"));
    let h = iommu_sdf::numbers::c_header(blk, "ok-queue.xml");
    assert!(h.contains("#define BLK_DRIVER_QUEUE_VADDR 0x1000000000\n#define BLK_DRIVER_QUEUE_ENTRIES 64\n#define BLK_DRIVER_QUEUE_SHARE 4\n"), "{h}");
    let rs = iommu_sdf::numbers::rust_module(blk, "ok-queue.xml");
    assert!(rs.contains("pub const QUEUE_ENTRIES: u32 = 64;"));
    let report = iommu_sdf::report::markdown(&sys, "ok-queue.xml");
    assert!(
        report.contains("| blk_driver | 64 | blk_driver_queue (0x2000) | 0x1000000000 | 0x1000000000 | 1/4 |"),
        "{report}"
    );
    assert!(report.contains("| edu_driver | 16 | edu_driver_queue (0x1000) | 0x100000000 | 0x1000200000 | 1/8 |"));
    let (plain, _) = iommu_sdf::check_text(&sdf("ok.xml"));
    assert!(!iommu_sdf::report::markdown(&plain, "ok.xml").contains("Mapping queues"));
    assert!(iommu_sdf::build::policy_rust(&plain, "ok.xml")
        .contains("pub static QUEUES: [(usize, usize, u32, u32); 0] = [\n];"));
}

/// A queue `build` places itself is above the client's program image: Microkit's linker
/// script links it at 0x200000 and the Microkit tool loads it into RAM, so it ends below
/// 0x200000 plus the board's RAM. (A client with no map of its own had its queue at
/// 0x200000, over its text, which the Microkit tool refuses.)
#[test]
fn a_placed_queue_is_above_any_program_image() {
    for board in ["qemu_virt_aarch64", "zcu102", "ultra96v2", "kria_k26", "tqma8xqp1gb"] {
        let (known, (_, end)) =
            (iommu_sdf::Board::named(board).ram.len(), programs::window(&iommu_sdf::Board::named(board)));
        assert!(known > 0 && end <= iommu_sdf::queues::CLIENT_FLOOR, "{board}: {end:#x}");
    }
    // A client with no map at all.
    let text = sdf("ok-queue.xml")
        .replace(r#"<map mr="blk_pool" vaddr="0x4000000" perms="rw" />"#, "")
        .replace(r#"<map mr="blk_private" vaddr="0x5000000" perms="rw" />"#, "");
    let text = text.replace(r#"<map mr="blk_faults" vaddr="0x8000000" perms="r" />"#, "");
    let text = text.replace(
        r#"<dma_capability name="blk_pool" pd="blk_driver" mr="blk_pool""#,
        r#"<dma_capability name="blk_pool" pd="blk_driver" mr="blk_private""#,
    );
    let (sys, _) = iommu_sdf::check_text(&text);
    let q = sys.queues.iter().find(|q| q.pd == "blk_driver").unwrap();
    assert_eq!(q.vaddr, Some(iommu_sdf::queues::CLIENT_FLOOR));
}
