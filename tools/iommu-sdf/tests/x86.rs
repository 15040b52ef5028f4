//! `--board x86_64_...`: Microkit's own IOMMU elements mean what the Microkit tool makes of
//! them on x86_64 (it programs VT-d from them), not what the IOMMU PD does on Arm. Each
//! description under `tests/sdf/x86/fail/` breaks one of the Microkit tool's x86 rules
//! (`<!-- expect: ... -->` names the message) and is refused at the line it points at;
//! `tests/sdf/x86/ok.xml` passes, and `build` hands it to the Microkit tool untouched.

use std::path::{Path, PathBuf};

use iommu_sdf::{check_text_for, Target};

fn sdf(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/x86").join(path)
}

#[test]
fn every_x86_rule_has_a_failing_description() {
    let mut n = 0;
    for entry in std::fs::read_dir(sdf("fail")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text.split("<!-- expect: ").nth(1).and_then(|s| s.split(" -->").next()).expect("an expect line");
        let (_, problems) = check_text_for(&text, Target::X86_64);
        let hit = problems.iter().find(|p| p.message.contains(expect));
        let hit = hit.unwrap_or_else(|| panic!("{}: expected {expect:?}, got {problems:?}", path.display()));
        let line = text.lines().nth(hit.line as usize - 1).unwrap();
        assert!(line.contains(&format!("<{}", hit.element)), "{}: line {} is `{line}`", path.display(), hit.line);
        n += 1;
    }
    assert!(n >= 11, "only {n}");
}

#[test]
fn the_x86_description_passes_and_builds_untouched() {
    let text = std::fs::read_to_string(sdf("ok.xml")).unwrap();
    let (sys, problems) = check_text_for(&text, Target::X86_64);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(sys.io_spaces.len(), 2);
    // Its report says who enforces the iomaps there, not that nothing does.
    let report = iommu_sdf::report::markdown_for(&sys, "ok.xml", Target::X86_64);
    assert!(report.contains("PCI requester ID") && report.contains("programs the IOMMU (VT-d)"), "{report}");
    assert!(!report.contains("No IOMMU PD"), "{report}");
    // On an Arm board the same elements need the IOMMU PD, which this description has not.
    let (_, arm) = check_text_for(&text, Target::Arm);
    assert!(!arm.is_empty(), "without <iommu>, Arm refuses the DMA elements");

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("x86-build");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
        .args(["build", sdf("ok.xml").to_str().unwrap(), "--board", "x86_64_generic", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    assert_eq!(std::fs::read_to_string(out.join("ok.system")).unwrap(), text, "the Microkit tool gets it as written");
    assert!(!out.join("iommu_policy.rs").exists(), "no IOMMU PD on x86_64");
}

#[test]
fn boards_name_their_target() {
    assert_eq!(Target::of_board("x86_64_generic"), Target::X86_64);
    assert_eq!(Target::of_board("x86_64_generic_vtx"), Target::X86_64);
    assert_eq!(Target::of_board("qemu_virt_aarch64"), Target::Arm);
    assert_eq!(Target::of_board("maaxboard"), Target::Arm);
}
