//! Descriptions nested far deeper than any system could be: the tool refuses them with a
//! named problem, and neither reading, `check`, `build` nor `report` crashes. They are
//! generated here rather than committed (100,000 levels). A stack overflow aborts the
//! whole process, so these tests live in a file of their own.

use std::path::PathBuf;
use std::process::Command;

const DEEP: usize = 100_000;

/// `depth` protection domains, each the only child of the one before, one per line.
fn nested_pds(depth: usize) -> String {
    let mut o = String::from("<system>\n");
    for i in 0..depth {
        o.push_str(&format!("<protection_domain name=\"pd{i}\" id=\"1\">\n"));
    }
    o.push_str(&"</protection_domain>\n".repeat(depth));
    o.push_str("</system>\n");
    o
}

/// Other elements nested `depth` deep where the tool reads children: in a protection
/// domain, an IO address space and a channel, and an unknown element at the top.
fn nested_others(depth: usize) -> String {
    let open_close = |tag: &str| format!("{}{}", format!("<{tag}>").repeat(depth), format!("</{tag}>").repeat(depth));
    format!(
        "<system>\n<protection_domain name=\"a\">{}</protection_domain>\n<io_address_space name=\"s\" peripheral_id=\"1\">{}</io_address_space>\n<channel>{}</channel>\n{}\n</system>\n",
        open_close("map"),
        open_close("iomap"),
        open_close("end"),
        open_close("bogus")
    )
}

/// What was read, and the text itself, through `build` and `report`: none may crash.
fn build_and_report(text: &str, sys: &iommu_sdf::model::System) {
    let _ = iommu_sdf::build::microkit_system(text, sys);
    let _ = iommu_sdf::build::policy_rust(sys, "deep");
    let _ = iommu_sdf::report::markdown(sys, "deep");
    let _ = iommu_sdf::report::svg(sys);
}

fn nesting_problem(problems: &[iommu_sdf::Problem]) -> Option<&iommu_sdf::Problem> {
    problems.iter().find(|p| p.element == "protection_domain" && p.message.contains("nested more than 64"))
}

#[test]
fn deep_protection_domains_are_refused_at_the_first_level_too_deep() {
    let text = nested_pds(DEEP);
    let (sys, problems) = iommu_sdf::check_text(&text);
    let hit = nesting_problem(&problems)
        .unwrap_or_else(|| panic!("no nesting problem in {:#?}", &problems[..problems.len().min(5)]));
    // Line 1 is <system>, so the 65th protection domain is on line 66.
    assert_eq!(hit.line, 66);
    assert_eq!(problems.iter().filter(|p| p.message.contains("nested more than")).count(), 1);
    assert_eq!(sys.pds.len(), 64);
    build_and_report(&text, &sys);
}

#[test]
fn sixty_four_levels_are_read_and_sixty_five_are_not() {
    let (sys, problems) = iommu_sdf::check_text(&nested_pds(64));
    assert!(nesting_problem(&problems).is_none(), "{problems:#?}");
    assert_eq!(sys.pds.len(), 64);
    let (_, problems) = iommu_sdf::check_text(&nested_pds(65));
    assert!(nesting_problem(&problems).is_some(), "{problems:#?}");
}

/// roxmltree keeps its parents in a list, not on the stack: deep nesting of any element
/// parses, and the tool reads only the children it knows, one level at a time.
#[test]
fn deep_nesting_of_other_elements_does_not_crash() {
    let text = nested_others(DEEP);
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(!problems.is_empty());
    build_and_report(&text, &sys);
}

/// The program itself, as a user runs it: every command says what is wrong and exits 1
/// (a crash would be 134, SIGABRT).
#[test]
fn every_command_exits_with_a_problem_not_a_crash() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("deep");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in [("pds.xml", nested_pds(DEEP)), ("others.xml", nested_others(DEEP))] {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        let out_dir = dir.join("out");
        let commands: [&[&str]; 3] = [&["check"], &["report"], &["build"]];
        for args in commands {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_iommu-sdf"));
            cmd.args(args).arg(&file);
            if args == ["build"] {
                cmd.arg("--out").arg(&out_dir);
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(1), "{name} {args:?}: {:?}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains("problem(s)"), "{name} {args:?}");
        }
    }
}

/// A bus hierarchy as deep as buses go (255 bridges, each below the one before) with
/// 20,000 functions, and 60,000 bridges: the first is read and checked (its functions,
/// all behind one conventional bridge, are one group), the second refused at the 256th
/// bridge; neither crashes, and both take the per-bridge work once, not per pair of
/// functions.
#[test]
fn a_bus_hierarchy_as_deep_as_buses_go_and_more_bridges_than_buses() {
    let mut o = String::from(
        "<system>\n<memory_region name=\"r\" size=\"0x100000\" phys_addr=\"0x10000000\" />\n<iommu pd=\"i\" />\n\
         <protection_domain name=\"i\" priority=\"254\"><program_image path=\"i.elf\" />\n\
         <protection_domain name=\"p\" priority=\"1\"><program_image path=\"p.elf\" /></protection_domain>\n\
         </protection_domain>\n",
    );
    for b in 0..255 {
        o.push_str(&format!(
            "<pci_bridge bdf=\"{b:x}:0.0\" kind=\"pci_to_pci\" secondary=\"{}\" subordinate=\"255\" />\n",
            b + 1
        ));
    }
    for i in 0..5_000 {
        o.push_str(&format!(
            "<io_address_space name=\"d{i}\" peripheral_id=\"{:x}:{:x}.{:x}\" bar=\"r\" owner=\"p\" />\n",
            1 + i % 255,
            (i / 255) % 32,
            i % 8
        ));
    }
    o.push_str("</system>\n");
    let (sys, problems) = iommu_sdf::check_text(&o);
    assert_eq!(sys.bridges.len(), 255);
    // Every function is behind 0:0.0's alias: all but the first join its group.
    assert_eq!(problems.iter().filter(|p| p.message.contains("are one group")).count(), 4_999);
    build_and_report(&o, &sys);

    let mut o = String::from(
        "<system>\n<iommu pd=\"i\" />\n<protection_domain name=\"i\" priority=\"254\"><program_image path=\"i.elf\" /></protection_domain>\n",
    );
    for i in 0..60_000u32 {
        o.push_str(&format!(
            "<pci_bridge bdf=\"{:x}:{:x}.{:x}\" kind=\"root_port\" secondary=\"1\" subordinate=\"1\" />\n",
            (i >> 8) & 0xff,
            (i >> 3) & 0x1f,
            i & 7
        ));
    }
    o.push_str("</system>\n");
    let (sys, problems) = iommu_sdf::check_text(&o);
    let refused: Vec<_> = problems.iter().filter(|p| p.message.contains("there are at most 255")).collect();
    assert_eq!(refused.len(), 1, "{:#?}", &problems[..problems.len().min(5)]);
    assert_eq!(refused[0].line, 3 + 256);
    build_and_report(&o, &sys);
}
