//! The IOMMU plumbing `build` writes for a description that leaves it out (`<iommu>`
//! naming none of the IOMMU's regions): what it writes meets the conventions `check`
//! holds a hand-written one to, `build` writes it without moving a line, and a description
//! that writes its plumbing by hand gets nothing added.

use std::path::Path;

use iommu_sdf::check_text;

fn repository_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(name)).unwrap()
}

#[test]
fn the_short_system_gets_the_plumbing_the_iommu_pd_relies_on() {
    let text = repository_file("system.xml");
    let (sys, problems) = check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    let iommu = sys.pd("iommu").unwrap();
    let clients: Vec<&str> = sys.clients().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clients, ["edu_driver", "hostile_driver", "blk_driver", "c_edu_driver"]);
    // The IOMMU's own regions, each mapped by the IOMMU PD with its symbols.
    for symbol in ["smmu_strtab", "smmu_cmdq", "smmu_eventq", "smmu_cds", "smmu_tables"] {
        let m = iommu.maps.iter().find(|m| m.setvar_vaddr.as_deref() == Some(symbol)).expect(symbol);
        assert!(sys.region(&m.mr).is_some(), "{symbol}");
        assert_eq!(m.setvar_size.as_deref(), Some(format!("{symbol}_size").as_str()));
        assert!(iommu.setvars.iter().any(|v| v.symbol == format!("{symbol}_paddr")));
    }
    // The pool holds the worst case the quotas allow.
    let pool = sys.region("smmu_tables").unwrap();
    assert_eq!(pool.size, iommu_sdf::model::table_pool_pages(&sys) * 0x1000);
    // Client i: a one-page ring at fault_rings + i pages, its channel (id 0 at the client,
    // i + 1 at the IOMMU PD), and child id i + 1.
    let base = iommu.maps.iter().find(|m| m.setvar_vaddr.as_deref() == Some("fault_rings")).unwrap().vaddr.unwrap();
    for (i, c) in clients.iter().enumerate() {
        let ring = iommu.maps.iter().find(|m| m.vaddr == Some(base + i as u64 * 0x1000)).unwrap();
        assert_eq!(ring.mr, format!("{c}_faults"));
        assert_eq!(sys.region(&ring.mr).unwrap().size, 0x1000);
        let ch = sys.channels.iter().find(|ch| ch.end_of("iommu").is_some_and(|(_, t)| t.pd == *c)).unwrap();
        let (mine, theirs) = ch.end_of("iommu").unwrap();
        assert_eq!((mine.id, theirs.id, theirs.pp, mine.pp), (i as u64 + 1, 0, true, false));
        assert_eq!(sys.pd(c).unwrap().id, Some(i as u64 + 1));
    }
    // Written on the lines the input has: nothing moves.
    let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
    assert_eq!(out.lines().count(), text.lines().count());
    let line_of = |s: &str, what: &str| s.lines().position(|l| l.contains(what));
    for what in ["<protection_domain name=\"blk_driver\"", "<end pd=\"blk_driver\" id=\"1\"", "</system>"] {
        assert_eq!(line_of(&out, what), line_of(&text, what), "{what}");
    }
}

#[test]
fn a_description_with_its_plumbing_written_gets_nothing() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/ok.xml")).unwrap();
    let (sys, problems) = check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(sys.generated.top.is_empty() && sys.generated.in_iommu_pd.is_empty() && sys.generated.child_ids.is_empty());
}

/// The generated channel takes, at the client, the lowest id its channels and interrupts
/// leave free (the Microkit tool refuses two events on one id), and with none free the
/// channel cannot be written and `check` says it is missing.
#[test]
fn the_generated_channel_takes_a_free_id_or_is_refused() {
    let text = repository_file("system.xml").replace(
        "<end pd=\"edu_driver\" id=\"1\" />\n        <end pd=\"blk_driver\" id=\"1\" />",
        "<end pd=\"edu_driver\" id=\"0\" />\n        <end pd=\"blk_driver\" id=\"1\" />",
    );
    let (sys, problems) = check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    let edu = sys.pd("edu_driver").unwrap();
    let taken: Vec<u64> = edu.irqs.iter().map(|i| i.id).collect();
    let generated = sys.channels.iter().filter_map(|c| c.end_of("edu_driver")).find(|(_, theirs)| theirs.pd == "iommu");
    let (mine, _) = generated.expect("a channel to the IOMMU PD");
    assert!(mine.id != 0 && !taken.contains(&mine.id), "id {}", mine.id);
    assert!(sys.generated.top.contains(&format!("<end pd=\"edu_driver\" id=\"{}\" pp=\"true\" />", mine.id)));

    // Every id of the edu driver taken by an interrupt: nothing can be written.
    let irqs: String = (0..=61).map(|i| format!("<irq irq=\"{}\" id=\"{i}\" />", 100 + i)).collect();
    let text = text.replacen(
        "<program_image path=\"edu-driver.elf\" />",
        &format!("<program_image path=\"edu-driver.elf\" />{irqs}"),
        1,
    );
    assert!(text.contains("<irq irq=\"161\""), "the edu driver's program image line moved");
    let (_, problems) = check_text(&text);
    assert!(
        problems.iter().any(|p| p.message.contains("edu_driver") && p.message.contains("no channel")),
        "{problems:?}"
    );
}

/// The generated maps go above whatever the IOMMU PD maps already: a map of the user's
/// where they would otherwise go does not overlap them. (A review found one at the
/// generated stream table's address accepted, for the Microkit tool to refuse.)
#[test]
fn generated_maps_go_above_the_users() {
    let text = repository_file("system.xml")
        .replace(
            "<memory_region name=\"smmu_regs\"",
            "<memory_region name=\"scratch\" size=\"0x1000\" />\n    <memory_region name=\"smmu_regs\"",
        )
        .replace(
            "<irq irq=\"106\"",
            "<map mr=\"scratch\" vaddr=\"0x1000000000\" perms=\"rw\" />\n        <irq irq=\"106\"",
        );
    let (sys, problems) = check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    let iommu = sys.pd("iommu").unwrap();
    let ranges: Vec<(u64, u64, &str)> = iommu
        .maps
        .iter()
        .map(|m| (m.vaddr.unwrap(), m.vaddr.unwrap() + sys.region(&m.mr).unwrap().size, m.mr.as_str()))
        .collect();
    for (i, a) in ranges.iter().enumerate() {
        for b in &ranges[..i] {
            assert!(a.1 <= b.0 || b.1 <= a.0, "{a:?} overlaps {b:?}");
        }
    }
}
