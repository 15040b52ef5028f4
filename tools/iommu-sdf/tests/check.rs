//! Every rule has a failing description under `tests/sdf/fail/`, whose first line says
//! which message it must produce; the message must point at a line holding the element
//! it names. A rule about the programs has one that names its programs, checked with them
//! (`fails_with_its_programs`). The valid descriptions must pass.

use std::fs;
use std::path::{Path, PathBuf};

mod common;
use common::elf;

fn sdf(name: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf").join(name)).unwrap()
}

#[test]
fn valid_descriptions_pass() {
    for name in [
        "ok.xml",
        "ok-children.xml",
        "ok-vm.xml",
        "ok-pci.xml",
        "ok-queue.xml",
        "plain-microkit.xml",
        "plain-prefill.xml",
    ] {
        let text = sdf(name);
        let (sys, problems) = iommu_sdf::check_text(&text);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
        let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
        let (_, again) = iommu_sdf::check_text(&out);
        assert!(again.is_empty(), "{name} built: {again:#?}\n{out}");
    }
}

/// Client i is the i-th client in description order, a parent before its children: the
/// index the policy, the channel ids and the fault rings all use.
#[test]
fn clients_are_in_description_order() {
    let (sys, _) = iommu_sdf::check_text(&sdf("ok-children.xml"));
    let names: Vec<&str> = sys.clients().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["edu_driver", "blk_driver"]);
    assert_eq!(sys.pd("blk_driver").map(|p| (p.parent.as_deref(), p.id)), Some((Some("iommu"), Some(2))));
    let text = r#"<system>
        <protection_domain name="a" priority="10">
            <protection_domain name="b" priority="5" id="1" />
        </protection_domain>
        <dma_capability name="cb" pd="b" mr="m" size="0x1000" />
        <dma_capability name="ca" pd="a" mr="m" size="0x1000" />
    </system>"#;
    let (sys, _) = iommu_sdf::parse::parse(text);
    let names: Vec<&str> = sys.clients().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn every_rule_has_a_failing_description() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/fail");
    let (mut n, mut with_programs, mut failed) = (0, 0, Vec::new());
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        let expect =
            text.lines().next().unwrap().trim_start_matches("<!-- expect: ").trim_end_matches(" -->").to_string();
        // A description for another board says so on its second line.
        let board_name = text.lines().nth(1).and_then(|l| l.strip_prefix("<!-- board: ")?.strip_suffix(" -->"));
        n += 1;
        let copying = text.lines().any(|l| l.trim() == "<!-- copy-programs -->");
        if copying || text.lines().any(|l| l.trim_start().starts_with("<!-- program ")) {
            if let Err(e) = fails_with_its_programs(&path, &text, &expect, board_name, copying) {
                failed.push(e);
            }
            with_programs += 1;
            continue;
        }
        let board = board_name.map_or_else(iommu_sdf::Board::default, iommu_sdf::Board::named);
        // And for a configuration (`--config`), on a line of its own.
        let config = text.lines().find_map(|l| l.trim().strip_prefix("<!-- config: ")?.strip_suffix(" -->"));
        let board = match config {
            Some(config) => board.with_config(config),
            None => board,
        };
        let (_, problems) = iommu_sdf::check_text_on(&text, &board);
        let hit = problems.iter().find(|p| p.message.contains(&expect));
        let Some(hit) = hit else { panic!("{}: expected \"{expect}\", got {problems:#?}", path.display()) };
        // The line points at the element the message names (malformed XML: any line).
        if hit.element != "xml" {
            let line = text.lines().nth(hit.line as usize - 1).unwrap_or("");
            assert!(
                line.contains(&format!("<{}", hit.element)),
                "{}: line {} is `{line}`, not a <{}>",
                path.display(),
                hit.line,
                hit.element
            );
        }
        // Where a file marks the line at fault, the problem is reported there.
        if let Some(here) = text.lines().position(|l| l.contains("<!-- HERE -->")) {
            assert_eq!(hit.line as usize, here + 1, "{}: reported at the wrong line", path.display());
        }
        assert!(!hit.fix.is_empty());
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    // As many as the README says there are: a description lost (or one added without the
    // README's count) fails here, not only a rule whose description fails to fail.
    let (readme_n, readme_with_programs) = readme_fail_counts();
    assert_eq!(
        (n, with_programs),
        (readme_n, readme_with_programs),
        "failing descriptions (all, with their programs) against the README's count"
    );
}

/// The README's count of failing descriptions, and of those checked with their programs:
/// "under `tools/iommu-sdf/tests/sdf/fail/` (N, of which the M about the programs".
fn readme_fail_counts() -> (usize, usize) {
    let n = common::readme_count_after("under `tools/iommu-sdf/tests/sdf/fail/` (");
    let m = common::readme_count_after(&format!("under `tools/iommu-sdf/tests/sdf/fail/` ({n}, of which the "));
    (n, m)
}

/// A failing description that names its programs (`<!-- program PATH: CHANGE -->`, written
/// by `elf::fixture_programs`, the writer tests/programs.rs uses) is checked as
/// images/Makefile checks a description: `iommu-sdf check --search-path` on its programs,
/// each `<program_image>` path given one (and each `prefill_path` a file). It must fail for
/// its rule alone (exit 1, one error, the expected one, at the line marked `HERE`, which
/// holds the element the error names, with the `fix:` its `<!-- fix: ... -->` line gives),
/// and pass with the same programs unchanged: so it cannot pass for want of a program, nor
/// for another rule. One marked `<!-- copy-programs -->` breaks a rule of copying into DIR
/// alone: it is checked with `--copy-programs DIR` too (as images/Makefile checks), must
/// leave no list in DIR, and must pass without `--copy-programs`.
fn fails_with_its_programs(
    path: &Path,
    text: &str,
    expect: &str,
    board: Option<&str>,
    copying: bool,
) -> Result<(), String> {
    let shown = path.display().to_string();
    let fix = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("<!-- fix: ")?.strip_suffix(" -->"))
        .ok_or(format!("{shown}: names its programs but not its fix (`<!-- fix: ... -->`)"))?;
    let here = text.lines().position(|l| l.contains("<!-- HERE -->")).ok_or(format!("{shown}: no HERE"))? + 1;
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let programs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fail-programs").join(stem);
    let copy = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fail-copies").join(stem);
    let _ = fs::remove_dir_all(&copy);
    let check = |spoilt: bool| -> Result<(Option<i32>, String), String> {
        elf::fixture_programs(text, &programs, spoilt && !copying).map_err(|e| format!("{shown}: {e}"))?;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_iommu-sdf"));
        cmd.arg("check").arg(path).arg("--search-path").arg(&programs);
        if copying && spoilt {
            cmd.arg("--copy-programs").arg(&copy);
        }
        if let Some(board) = board {
            cmd.args(["--board", board]);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        Ok((out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()))
    };
    let (status, out) = check(true)?;
    let errors: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    let at = format!("{shown}:{here}:");
    let element = errors.first().and_then(|e| e.split(": error: <").nth(1)?.split('>').next()).unwrap_or("");
    let note = out.lines().find(|l| l.contains(": note: fix: ")).unwrap_or("");
    let why = if (status, errors.len()) != (Some(1), 1) {
        "not exit 1 with one error"
    } else if !errors[0].starts_with(&at) {
        "not at the line marked HERE"
    } else if !errors[0].contains(expect) {
        "not the expected error"
    } else if !text.lines().nth(here - 1).unwrap_or("").contains(&format!("<{element} ")) {
        "the marked line holds no element the error names"
    } else if !(note.starts_with(&at) && note.contains(fix)) {
        "not the expected fix"
    } else if copy.join("programs.sha256").exists() {
        "refused, and a list of copies left to verify"
    } else {
        let (status, out) = check(false)?;
        if status != Some(0) {
            return Err(format!("{shown}: its programs unchanged, it is refused:\n{out}"));
        }
        return Ok(());
    };
    Err(format!("{shown}: {why} (expected \"{expect}\" at line {here}, fix \"{fix}\"):\n{out}"))
}

/// `check`'s last line says what holds: with an IOMMU PD, that every stream it does not
/// name aborts; without one (a plain Microkit description), that nothing restricts DMA
/// and which checks were not made, never that streams abort.
#[test]
fn the_summary_says_what_is_enforced() {
    let run = |name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf").join(name);
        // With its programs: without them `check` proves nothing (tests/programs.rs).
        let programs = elf::programs_dir(name, &fs::read_to_string(&path).unwrap());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
            .arg("check")
            .arg(&path)
            .arg("--search-path")
            .arg(&programs)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let with = run("ok.xml");
    assert!(with.contains("every other stream aborts"), "{with}");
    let without = run("plain-microkit.xml");
    assert!(!without.contains("abort"), "{without}");
    assert!(without.contains("no IOMMU PD"), "{without}");
    for unchecked in ["own regions", "channels", "fault rings", "priorities", "quotas", "page-table pool"] {
        assert!(without.contains(unchecked), "{without} does not say `{unchecked}` was not checked");
    }
}

#[test]
fn peripheral_ids() {
    assert_eq!(iommu_sdf::parse::parse_peripheral("0:4.0"), Some(0x20));
    assert_eq!(iommu_sdf::parse::parse_peripheral("0x10"), Some(0x10));
    assert_eq!(iommu_sdf::parse::parse_peripheral("0:32.0"), None);
    assert_eq!(iommu_sdf::parse::parse_number("0x10_0000"), Some(0x10_0000));
}

/// A description whose `</system>` is missing is reported at its end, where the reader
/// noticed, not at line 1.
#[test]
fn an_unclosed_system_is_reported_where_it_ends() {
    let text = "<system>\n    <memory_region name=\"m\" size=\"0x1000\" />\n\n";
    let (_, problems) = iommu_sdf::check_text(text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, 3, "{problems:?}");
}

/// The service names devices and clients by bits of 64-bit masks: a 65th of either is
/// refused by name, not aliased onto the 64th.
#[test]
fn more_devices_than_the_iommu_pd_serves_are_refused() {
    let ok = iommu_sdf::gen::description(3, 8, 16, 64);
    assert!(iommu_sdf::check_text(&ok).1.is_empty());
    let text = iommu_sdf::gen::description(3, 8, 16, 65);
    let (_, problems) = iommu_sdf::check_text(&text);
    assert!(problems.iter().any(|p| p.message.contains("`dev64` is device number 65")), "{problems:#?}");
}

/// A guest map the guest may neither read nor write (`perms="x"`) gives its passed-through
/// device nothing; a read-only one gives it read only.
#[test]
fn passed_through_device_gets_the_guests_rights() {
    let text = sdf("ok-vm.xml").replace(
        r#"<map mr="guest_ram" vaddr="0x40000000" perms="rwx" />"#,
        r#"<map mr="guest_ram" vaddr="0x40000000" perms="x" />"#,
    );
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(sys.io_spaces[0].iomaps.is_empty(), "{:#?}", sys.io_spaces[0].iomaps);
    let text = sdf("ok-vm.xml").replace(r#"perms="rwx" />"#, r#"perms="r" />"#);
    let (sys, _) = iommu_sdf::check_text(&text);
    let m = &sys.io_spaces[0].iomaps[0];
    assert_eq!((m.perms.read, m.perms.write, m.iovaddr), (true, false, 0x4000_0000));
}

fn run_tool(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_iommu-sdf")).args(args).output().unwrap()
}

/// Problems come out as `FILE:LINE:COL: error: ...` with a `note: fix:` after each, at
/// the column of the element's `<`; exit status 1.
#[test]
fn problems_are_reported_as_file_line_col() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.xml");
    std::fs::write(&file, "<system>\n  <memory_region name=\"m\" size=\"0x1000\" colour=\"red\" />\n</system>\n")
        .unwrap();
    let out = run_tool(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with(&format!("{}:2:3: error: <memory_region>: ", file.display())), "{text}");
    let second = text.lines().nth(1).unwrap();
    assert!(second.starts_with(&format!("{}:2:3: note: fix: ", file.display())), "{text}");
}

/// `--help` for the tool and for each command prints its usage and exits 0, reading no
/// file; wrong usage exits 2 with the usage on stderr; a missing file exits 2.
#[test]
fn help_usage_and_exit_codes() {
    for args in
        [&["--help"][..], &["-h"], &["check", "--help"], &["build", "-h"], &["report", "--help"], &["verify", "-h"]]
    {
        let out = run_tool(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.starts_with("usage: iommu-sdf"), "{args:?}: {text}");
        assert!(text.contains("Exit 0") || text.contains("exit status"), "{args:?}: {text}");
    }
    for args in [
        &[][..],
        &["check"],
        &["build", "x.xml"],
        &["frobnicate", "x.xml"],
        &["check", "a.xml", "b.xml"],
        &["verify"],
        &["verify", "a", "b"],
        &["verify", "a", "--board", "zcu102"],
        &["build", "x.xml", "--out", "d", "--copy-programs", "c"],
    ] {
        let out = run_tool(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8(out.stderr).unwrap().starts_with("usage: iommu-sdf"), "{args:?}");
    }
    let out = run_tool(&["check", "/nonexistent/system.xml"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `report` writes its picture only where `--svg` says, never beside the input.
#[test]
fn report_writes_the_svg_only_where_asked() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-report");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("ok.xml");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/ok.xml"), &input).unwrap();
    let beside = dir.join("ok.reach.svg");
    let _ = std::fs::remove_file(&beside);
    let out = run_tool(&["report", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!beside.exists(), "report wrote beside its input");
    let svg = dir.join("picture.svg");
    let out = run_tool(&["report", input.to_str().unwrap(), "--svg", svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}

/// A device with several StreamIDs (`streams="..."`): they reach the policy, count in the
/// StreamID width, and one StreamID belongs to one device only.
#[test]
fn devices_with_several_streams() {
    let text = iommu_sdf::gen::description_sized(5, 8, 16, 4, 0, 8);
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    let policy = iommu_sdf::build::policy(&sys);
    assert!(policy.extra_streams.iter().all(|s| s.len() == 7), "{:?}", policy.extra_streams);
    assert_eq!(policy.stream_id_bits, 6, "StreamIDs up to 0x27");
    let rust = iommu_sdf::build::policy_rust(&sys, "gen");
    assert!(rust.contains("extra_streams: &[0x9, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf]"), "{rust}");

    // Device 1's first StreamID (0x10) given to device 0 as well.
    let clash = text.replacen("streams=\"0x9 ", "streams=\"0x10 ", 1);
    let (_, problems) = iommu_sdf::check_text(&clash);
    assert!(
        problems.iter().any(|p| p.message.contains("StreamID 0x10 in `dev0`'s streams is also `dev1`'s")),
        "{problems:?}"
    );
    let twice = text.replacen("streams=\"0x9 ", "streams=\"0x9 0x9 ", 1);
    let (_, problems) = iommu_sdf::check_text(&twice);
    assert!(problems.iter().any(|p| p.message.contains("listed twice")), "{problems:?}");
}

/// A region Microkit prefills with boot information (`prefill_bootinfo`) takes its size
/// from the Microkit tool, as a prefill file does: no `size` is needed (a review found
/// Microkit's own bootinfo example refused).
#[test]
fn a_bootinfo_region_needs_no_size() {
    let text = r#"<system>
        <memory_region name="tsc_freq" prefill_bootinfo="x86_tsc_freq" />
        <protection_domain name="bootinfo">
            <program_image path="bootinfo.elf" />
            <map mr="tsc_freq" vaddr="0x2000000" perms="r" setvar_vaddr="tsc_freq" />
        </protection_domain>
    </system>"#;
    // x86's boot information, on an x86 board (on Arm it is refused: no Arm seL4 gives it).
    let (_, problems) = iommu_sdf::check_text_on(text, &iommu_sdf::Board::named("x86_64_generic"));
    assert!(problems.is_empty(), "{problems:?}");
    let (_, problems) = iommu_sdf::check_text(&text.replace("x86_tsc_freq", "fdt"));
    assert!(problems.is_empty(), "{problems:?}");
}

/// A name one edit from one that exists gets a "did you mean", at the element that names
/// it: a map of an unknown region is refused at the map, not only at a capability over it.
#[test]
fn a_typo_is_refused_where_it_is_with_what_it_probably_meant() {
    let text = sdf("ok.xml").replace(
        "<map mr=\"edu_buffers\" vaddr=\"0x4000000\" perms=\"rw\" />",
        "<map mr=\"edu_bufers\" vaddr=\"0x4000000\" perms=\"rw\" />",
    );
    let (_, problems) = iommu_sdf::check_text(&text);
    let at = text.lines().position(|l| l.contains("edu_bufers")).unwrap() as u32 + 1;
    let p = problems.iter().find(|p| p.line == at).expect("a problem at the map");
    assert_eq!(p.element, "map");
    assert!(p.message.contains("did you mean `edu_buffers`?"), "{p:?}");
    // A quota for a PD spelled with two letters swapped.
    let text = sdf("ok.xml").replace("<dma_quota pd=\"edu_driver\"", "<dma_quota pd=\"edu_dirver\"");
    let (_, problems) = iommu_sdf::check_text(&text);
    assert!(problems.iter().any(|p| p.message.contains("did you mean `edu_driver`?")), "{problems:#?}");
    // Nothing one edit away: no suggestion.
    let text = sdf("ok.xml").replace("<dma_quota pd=\"edu_driver\"", "<dma_quota pd=\"nobody_at_all\"");
    let (_, problems) = iommu_sdf::check_text(&text);
    assert!(problems.iter().all(|p| !p.message.contains("did you mean")), "{problems:#?}");
}

/// What is allowed but probably not meant is a warning, and the description still passes:
/// a quota of nothing, `domain_id` on Arm, DMA into memory another PD maps too.
#[test]
fn warnings_do_not_refuse() {
    let text = sdf("ok.xml")
        .replace("<dma_quota pd=\"blk_driver\" mappings=\"4\"", "<dma_quota pd=\"blk_driver\" mappings=\"0\"")
        .replace(
            "<map mr=\"blk_private\" vaddr=\"0x5000000\" perms=\"rw\" />",
            "<map mr=\"blk_private\" vaddr=\"0x5000000\" perms=\"rw\" />\n<map mr=\"edu_buffers\" vaddr=\"0x6000000\" perms=\"r\" />",
        );
    let board = iommu_sdf::Board::default();
    let (sys, problems) = iommu_sdf::check_text_on(&text, &board);
    // The added map moved later lines by one: no problem at all, though.
    assert!(problems.is_empty(), "{problems:#?}");
    let warnings = iommu_sdf::warnings_on(&sys, &board);
    for says in ["can map none of its capabilities", "which means nothing on Arm", "which `blk_driver` also maps"] {
        assert!(warnings.iter().any(|w| w.message.contains(says)), "no warning saying {says:?}: {warnings:#?}");
    }
    // system.xml's devices carry no domain_id.
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml")).unwrap();
    let (sys, _) = iommu_sdf::check_text_on(&text, &board);
    assert!(iommu_sdf::warnings_on(&sys, &board).iter().all(|w| !w.message.contains("domain_id")));
}

/// Limits the Microkit tool and the board set: at most 63 PDs, at most 61 clients (the
/// IOMMU PD's channel to client i has id i + 1, and ids stop at 61), the board's SMMU
/// register frame, and no <iommu> on a board whose SMMU the IOMMU PD does not drive.
#[test]
fn microkit_and_board_limits_are_refused() {
    // 64 PDs: the IOMMU PD and 63 drivers.
    let text = iommu_sdf::gen::description(3, 63, 4, 1);
    let (_, problems) = iommu_sdf::check_text(&text);
    assert!(problems.iter().any(|p| p.message.contains("the Microkit tool takes at most 63")), "{problems:#?}");
    // 62 clients.
    let text = iommu_sdf::gen::description(3, 62, 62, 62);
    let (_, problems) = iommu_sdf::check_text(&text);
    assert!(problems.iter().any(|p| p.message.contains("is client number 62")), "{problems:#?}");
    // 61 clients, the most: accepted.
    let text = iommu_sdf::gen::description(3, 61, 61, 61);
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(sys.clients().len(), 61);
    // An MMU-500 board: ok.xml's SMMU registers are QEMU virt's, not the ZynqMP's.
    let board = iommu_sdf::Board::named("zcu102");
    let (_, problems) = iommu_sdf::check_text_on(&sdf("ok.xml"), &board);
    assert!(
        problems
            .iter()
            .any(|p| p.element == "memory_region" && p.message.contains("SMMU register frame is 0xfd800000")),
        "{problems:#?}"
    );
    // An Arm board with no SMMU this tool knows.
    let board = iommu_sdf::Board::named("maaxboard");
    let (_, problems) = iommu_sdf::check_text_on(&sdf("ok.xml"), &board);
    assert!(problems.iter().any(|p| p.element == "iommu" && p.message.contains("no SMMU")), "{problems:#?}");
    let (_, problems) = iommu_sdf::check_text_on(&sdf("ok.xml"), &iommu_sdf::Board::default());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A PCI function's StreamID is its DMA alias through the board's `iommu-map` and
/// `iommu-map-mask`, one derivation for the rules, the policy and the report: on QEMU
/// virt (the identity) 05:01.0 below the PCI Express to PCI bridge is 0x500; on a board
/// whose map offsets and masks, the same description gets that board's StreamIDs; a
/// requester ID the map does not hold, or a board whose host bridge is unknown, is refused.
#[test]
fn stream_ids_come_from_the_alias_and_the_iommu_map() {
    use iommu_sdf::board::{IommuMap, PciHost, QEMU_VIRT_PCI};
    let text = sdf("ok-pci.xml");
    let streams = |board: &iommu_sdf::Board| {
        let (sys, problems) = iommu_sdf::check_text_on(&text, board);
        let policy = iommu_sdf::policy::policy(&sys);
        (policy.devices.iter().map(|d| d.1.stream).collect::<Vec<_>>(), problems)
    };
    let (qemu, problems) = streams(&iommu_sdf::Board::default());
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(qemu, [0x10, 0x100, 0x400, 0x500]);
    // iommu-map = <0x0 &smmu 0x1000 0x800>, iommu-map-mask = <0x7ff>: buses 0 to 7 from
    // StreamID 0x1000, the mask dropping bus bits above them (Linux's of_map_id).
    let map = &[IommuMap { rid_base: 0, stream_base: 0x1000, length: 0x800 }];
    let offset = iommu_sdf::Board {
        pci: Some(PciHost { iommu_map: map, iommu_map_mask: 0x7ff, ..QEMU_VIRT_PCI }),
        ..iommu_sdf::Board::default()
    };
    let (mapped, problems) = streams(&offset);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(mapped, [0x1010, 0x1100, 0x1400, 0x1500]);
    // The same map without the mask holds buses 0 to 7 only: 05:01.0 is inside, the rest
    // too; a map of bus 0 alone refuses the three below bridges.
    let bus0 = &[IommuMap { rid_base: 0, stream_base: 0, length: 0x100 }];
    let narrow = iommu_sdf::Board { pci: Some(PciHost { iommu_map: bus0, ..QEMU_VIRT_PCI }), ..offset };
    let (_, problems) = streams(&narrow);
    let refused: Vec<&str> = problems
        .iter()
        .filter(|p| p.message.contains("which the board's iommu-map gives no StreamID"))
        .map(|p| p.message.split('`').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(refused, ["edu_rp", "edu_sw", "edu_legacy"], "{problems:#?}");
    // A board with an SMMUv3 and no host bridge this tool knows.
    let unknown = iommu_sdf::Board { pci: None, ..iommu_sdf::Board::default() };
    let (_, problems) = streams(&unknown);
    assert_eq!(problems.iter().filter(|p| p.message.contains("does not know the host bridge")).count(), 4);
}

/// On a board whose host bridge's memory window starts at 0 (QEMU virt's does not: it
/// starts at 0x1000_0000, so there the window rule refuses it first), a BAR window over
/// the legacy VGA range is refused: a VGA-compatible function decodes that range too.
#[test]
fn a_bar_window_over_the_legacy_vga_range_is_refused() {
    use iommu_sdf::board::{PciHost, QEMU_VIRT_PCI};
    let text = sdf("ok-pci.xml").replace(
        r#"name="edu_bar0" size="0x100000" phys_addr="0x10000000""#,
        r#"name="edu_bar0" size="0x100000" phys_addr="0x0""#,
    );
    let low = iommu_sdf::Board {
        pci: Some(PciHost { mem: (0, 0x3eff_0000), ..QEMU_VIRT_PCI }),
        ..iommu_sdf::Board::default()
    };
    let (_, problems) = iommu_sdf::check_text_on(&text, &low);
    let vga: Vec<_> = problems.iter().filter(|p| p.message.contains("legacy VGA range")).collect();
    assert_eq!(vga.len(), 1, "{problems:#?}");
    assert!(vga[0].message.contains("`edu0`'s BAR window `edu_bar0` (0x0+0x100000)"), "{vga:#?}");
    assert!(!vga[0].fix.is_empty());
    let (_, on_qemu) = iommu_sdf::check_text(&text);
    assert!(on_qemu.iter().any(|p| p.message.contains("is outside the board's PCI memory window")), "{on_qemu:#?}");
}

/// A PD with one `<irq irq="N">`, checked on `board`: the problems about its interrupt.
fn irq_problems(board: &str, irq: u64) -> Vec<String> {
    let text = format!(
        "<system>\n<protection_domain name=\"d\" priority=\"1\">\n<program_image path=\"d.elf\" />\n<irq irq=\"{irq}\" id=\"1\" />\n</protection_domain>\n</system>"
    );
    let (_, problems) = iommu_sdf::check_text_on(&text, &iommu_sdf::Board::named(board));
    problems.into_iter().filter(|p| p.element == "irq").map(|p| p.message).collect()
}

/// Each board's interrupt numbers are bounded by its seL4's maxIRQ (seL4's config.cmake at
/// the SDK's commit), the bound itself taken and the next refused; below 32 only the EL1
/// physical timer, and that only where the SDK lets a PD program it (qemu_virt_aarch64).
#[test]
fn interrupts_are_held_to_the_boards_limit() {
    for (board, max) in
        [("qemu_virt_aarch64", 159), ("zcu102", 187), ("ultra96v2", 187), ("kria_k26", 187), ("tqma8xqp1gb", 511)]
    {
        assert_eq!(irq_problems(board, max), Vec::<String>::new(), "{board}");
        assert_eq!(irq_problems(board, 32), Vec::<String>::new(), "{board}");
        let timer = irq_problems(board, 30);
        if board == "qemu_virt_aarch64" {
            assert_eq!(timer, Vec::<String>::new(), "{board}");
        } else {
            assert!(
                timer.len() == 1 && timer[0].contains("does not let a PD program that timer"),
                "{board}: {timer:?}"
            );
        }
        let past = irq_problems(board, max + 1);
        assert!(past.len() == 1 && past[0].contains(&format!("past {max}")), "{board}: {past:?}");
        for low in [0, 15, 16, 26, 29, 31] {
            assert_eq!(irq_problems(board, low).len(), 1, "{board} {low}");
        }
    }
    assert_eq!(irq_problems("rockpro64", 40).len(), 1);
}

/// A client's program named by anything but its bare file name is refused: `sub/x.elf`
/// too, whose last component is another program's name. So is one not named `*.elf`: the
/// IOMMU PD's build reads the restart entries of the `*.elf` files alone, so it would never
/// be restarted. A PD that is no client, never restarted, keeps any path.
#[test]
fn a_clients_program_is_named_by_its_file_name() {
    let bare = "not a bare file name";
    let elf = "not named `*.elf`";
    for (path, why) in [
        ("sub/edu_driver.elf", bare),
        ("./edu_driver.elf", bare),
        (".//edu_driver.elf", bare),
        ("edu_driver", elf),
        ("edu_driver.bin", elf),
        ("edu_driver.ELF", elf),
        ("edu_driver.elf.bak", elf),
    ] {
        let text = sdf("ok.xml")
            .replace("<program_image path=\"edu_driver.elf\" />", &format!("<program_image path=\"{path}\" />"));
        let (_, problems) = iommu_sdf::check_text(&text);
        assert!(
            problems.len() == 1 && problems[0].message.contains(&format!("is `{path}`, {why}")),
            "{path}: {problems:#?}"
        );
    }
    for path in ["./iommu.elf", "iommu"] {
        let text = sdf("ok.xml")
            .replace("<program_image path=\"iommu.elf\" />", &format!("<program_image path=\"{path}\" />"));
        assert!(iommu_sdf::check_text(&text).1.is_empty(), "{path}");
    }
}

/// ok.xml's IOMMU PD's program line, and the timer's interrupt a PD takes on id 12.
const IOMMU_PROGRAM: &str = "<program_image path=\"iommu.elf\" />";
const TIMER_IRQ: &str = "<irq irq=\"30\" id=\"12\" trigger=\"level\" />";

/// 300 faults with a 4 KiB event queue are 3 drains, 30 ms at the IOMMU PD's 10 ms poll:
/// but only if it is woken (the timer's interrupt or the SMMU's), nothing on its core at
/// its priority or above can hold it off, and its domain's slot comes round, the other
/// domains' slots adding to every drain period. Each broken, the window that passed is
/// refused.
#[test]
fn storm_drains_are_bounded_only_where_the_iommu_pd_runs() {
    let check = |text: &str, window: u64| {
        let text = text
            .replace(
                "fault_window_us=\"500000\" max_faults=\"64\"",
                &format!("fault_window_us=\"{window}\" max_faults=\"300\""),
            )
            .replace(
                "<memory_region name=\"smmu_eventq\" size=\"0x10000\" />",
                "<memory_region name=\"smmu_eventq\" size=\"0x1000\" />",
            );
        let (_, problems) =
            iommu_sdf::check_text_on(&text, &iommu_sdf::Board::named("qemu_virt_aarch64").with_config("debug"));
        problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>()
    };
    let ok = sdf("ok.xml");
    assert!(ok.contains(IOMMU_PROGRAM) && ok.contains("<protection_domain name=\"iommu\" priority=\"250\">"));
    let timer = ok.replace(IOMMU_PROGRAM, &format!("{IOMMU_PROGRAM}\n{TIMER_IRQ}"));
    assert_eq!(check(&timer, 30_000), Vec::<String>::new());
    let wired = ok.replace(
        IOMMU_PROGRAM,
        &format!("{IOMMU_PROGRAM}\n<irq irq=\"106\" id=\"10\" trigger=\"edge\" /><irq irq=\"109\" id=\"11\" trigger=\"edge\" />"),
    );
    assert_eq!(check(&wired, 30_000), Vec::<String>::new());
    // No wake-up: the queue is read when a request comes.
    let problems = check(&ok, 30_000_000);
    assert!(problems.len() == 1 && problems[0].contains("neither its SMMU's interrupts"), "{problems:#?}");
    // The SMMU's event-queue interrupt without its global errors' is not wired (pds/iommu's `WIRED`).
    let half = ok.replace(IOMMU_PROGRAM, &format!("{IOMMU_PROGRAM}\n<irq irq=\"106\" id=\"10\" trigger=\"edge\" />"));
    assert_eq!(check(&half, 30_000_000).len(), 1);
    // A PD on its core at its priority, which need never block.
    let spinner = |priority: u32, cpu: u32| {
        timer.replace(
            "</system>",
            &format!("<protection_domain name=\"spinner\" priority=\"{priority}\" cpu=\"{cpu}\"><program_image path=\"spin.elf\" /></protection_domain>\n</system>"),
        )
    };
    let problems = check(&spinner(250, 0), 30_000_000);
    assert!(
        problems.len() == 1 && problems[0].contains("`spinner` runs on its core 0 at priority 250"),
        "{problems:#?}"
    );
    assert_eq!(check(&spinner(249, 0), 30_000), Vec::<String>::new());
    // PDs above it with a budget below their period hold it off for at most their budgets
    // in each period (sporadic servers): 1 ms in 10 ms makes each drain period 11 ms, and
    // 300 faults need 33 ms; two of them taking half the core each leave it none.
    let budgeted = |spinners: &[(u32, u32)]| {
        let pds: String = spinners
            .iter()
            .enumerate()
            .map(|(i, (budget, period))| format!("<protection_domain name=\"spinner{i}\" priority=\"254\" budget=\"{budget}\" period=\"{period}\"><program_image path=\"spin.elf\" /></protection_domain>\n"))
            .collect();
        timer.replace("</system>", &format!("{pds}</system>"))
    };
    assert_eq!(check(&budgeted(&[(1_000, 10_000)]), 33_000), Vec::<String>::new());
    let problems = check(&budgeted(&[(1_000, 10_000)]), 32_999);
    assert!(problems.len() == 1 && problems[0].contains("drain it only every 11000 us"), "{problems:#?}");
    // Two: the wait w = 1000 * ceil(w / 10000) + 3000 * ceil(w / 3500) goes from 4000 (a
    // budget each) to 7000 (the second's second period), where it settles.
    assert_eq!(check(&budgeted(&[(1_000, 10_000), (3_000, 3_500)]), 51_000), Vec::<String>::new());
    let problems = check(&budgeted(&[(1_000, 10_000), (3_000, 3_500)]), 50_999);
    assert!(problems.len() == 1 && problems[0].contains("drain it only every 17000 us"), "{problems:#?}");
    let problems = check(&budgeted(&[(5_000, 10_000), (5_000, 10_000)]), 30_000_000);
    assert!(problems.len() == 1 && problems[0].contains("take its whole core"), "{problems:#?}");
    // Domains: another domain's 20 ms slot (1,250,000 ticks at 62.5 MHz, or in us) makes
    // each drain period 30 ms, so 3 drains need 90 ms.
    let domains = |slots: &str, start: u32| {
        let schedule = format!(
            "<domains><domain name=\"sys\" /><domain name=\"other\" /><domain_schedule start_index=\"{start}\">{slots}</domain_schedule></domains>\n"
        );
        let text = timer.replace("<protection_domain name=\"", "<protection_domain domain=\"sys\" name=\"");
        let at = text.find("<protection_domain").unwrap();
        format!("{}{schedule}{}", &text[..at], &text[at..])
    };
    let sys_then = |other: &str| {
        format!("<schedule_entry domain=\"sys\" duration=\"1000 us\" /><schedule_entry domain=\"other\" duration=\"{other}\" />")
    };
    for other in ["20000 us", "1250000 ticks"] {
        assert_eq!(check(&domains(&sys_then(other), 0), 90_000), Vec::<String>::new(), "{other}");
        let problems = check(&domains(&sys_then(other), 0), 89_999);
        assert!(problems.len() == 1 && problems[0].contains("drain it only every 30000 us"), "{other}: {problems:#?}");
    }
    // Its domain's one slot before the start index, the cycle ending at the marker: never.
    let never = "<schedule_entry domain=\"sys\" duration=\"1000 us\" /><schedule_entry domain=\"other\" duration=\"1000 us\" /><schedule_end_marker />";
    let problems = check(&domains(never, 1), 30_000_000);
    assert!(problems.len() == 1 && problems[0].contains("has no slot between the schedule's start"), "{problems:#?}");
    // The bound is the longest run of other slots between two of its own in the cycle, not
    // every other slot of the schedule: two 20 ms slots, each after a slot of its own, are
    // 30 ms drain periods (the bound had added both, 50 ms, and refused 90 ms); so is a
    // 40 ms slot past the end marker, which never runs, or before the start index.
    let twice = format!("{}{}", sys_then("20000 us"), sys_then("20000 us"));
    let beyond_the_end = format!("{}<schedule_end_marker />{}", sys_then("20000 us"), sys_then("40000 us"));
    let before_the_start = format!("<schedule_entry domain=\"other\" duration=\"40000 us\" />{}", sys_then("20000 us"));
    for (slots, start) in [(&twice, 0), (&beyond_the_end, 0), (&before_the_start, 1)] {
        assert_eq!(check(&domains(slots, start), 90_000), Vec::<String>::new(), "{slots}");
        let problems = check(&domains(slots, start), 89_999);
        assert!(problems.len() == 1 && problems[0].contains("drain it only every 30000 us"), "{slots}: {problems:#?}");
    }
    // Round the cycle: the run that wraps from its end to its start is one run (10 + 20 ms).
    let wrapping = format!("<schedule_entry domain=\"other\" duration=\"10000 us\" />{}", sys_then("20000 us"));
    let problems = check(&domains(&wrapping, 0), 89_999);
    assert!(problems.len() == 1 && problems[0].contains("drain it only every 40000 us"), "{problems:#?}");
    // A slot in us is the nearest number of ticks: one between two ticks counts as the
    // next (20000.5 us is not a duration; 1 us at 62.5 MHz is 62.5 ticks, rounded up to 63,
    // 1.008 us: 2 us, rounded up).
    let problems = check(&domains(&sys_then("1 us"), 0), 1);
    assert!(problems.iter().any(|p| p.contains("drain it only every 10002 us")), "{problems:#?}");
    // PDs above it in its own domain take their budgets out of its own slots, which may be
    // short: a spinner with 1 ms in 100 ms and its own 1 ms slot in every 10 ms can take
    // that whole slot, so a woken IOMMU PD at the end of its slot waits 9 ms, finds the
    // spinner taking the next slot, and runs only after 9 ms more: 19 ms, drain periods of
    // 29 ms, 87 ms for 3 drains. The bound had added the spinner's budget to the 9 ms gap:
    // 10 ms, 20 ms drain periods, and took 60 ms. One with 1 ms in 10 ms would take every
    // one of its slots (its budget is back each time the slot comes round), so the IOMMU
    // PD might never drain: refused (the bound had said 10 ms and taken 60 ms). One in
    // another domain never runs in its slots: 9 ms, as with none.
    let spinner_in = |domain: &str, budget: u32, period: u32| {
        domains(&sys_then("9000 us"), 0).replace(
            "</system>",
            &format!("<protection_domain name=\"spinner\" domain=\"{domain}\" priority=\"254\" budget=\"{budget}\" period=\"{period}\"><program_image path=\"spin.elf\" /></protection_domain>\n</system>"),
        )
    };
    assert_eq!(check(&spinner_in("sys", 1_000, 100_000), 87_000), Vec::<String>::new());
    let problems = check(&spinner_in("sys", 1_000, 100_000), 86_999);
    assert!(problems.len() == 1 && problems[0].contains("drain it only every 29000 us"), "{problems:#?}");
    let problems = check(&spinner_in("sys", 1_000, 10_000), 30_000_000);
    assert!(problems.len() == 1 && problems[0].contains("take all of its domain's slots"), "{problems:#?}");
    assert_eq!(check(&spinner_in("other", 1_000, 10_000), 57_000), Vec::<String>::new());
    let problems = check(&spinner_in("other", 1_000, 10_000), 56_999);
    assert!(problems.len() == 1 && problems[0].contains("drain it only every 19000 us"), "{problems:#?}");
}

/// The storm limits at their bounds: more than one drain's worth of faults needs a window
/// of that many drain periods (with a 4 KiB event queue, 128 records: 300 needs 3, 30 ms);
/// one drain's worth needs none; a drain is the queue the IOMMU PD makes of its `eventq`
/// region (the most records a power of two it holds, at most QEMU's SMMU_IDR1.EVENTQS,
/// 2^19); and a window is at most 2^64 - 1 ticks of the board's timer.
#[test]
fn storm_limits_at_their_bounds() {
    let with = |eventq: &str, max: u64, window: u64, board: &str| {
        let ours = format!("fault_window_us=\"{window}\" max_faults=\"{max}\"");
        let queue = format!("<memory_region name=\"smmu_eventq\" size=\"{eventq}\" />");
        let text = sdf("ok.xml")
            .replace("fault_window_us=\"500000\" max_faults=\"64\"", &ours)
            .replace("<memory_region name=\"smmu_eventq\" size=\"0x10000\" />", &queue)
            // Clear of the IOMMU PD's other maps, however large the queue.
            .replace("<map mr=\"smmu_eventq\" vaddr=\"0x3200000\"", "<map mr=\"smmu_eventq\" vaddr=\"0x40000000\"");
        assert!(
            text.contains(&ours) && text.contains(&queue) && text.contains("0x40000000"),
            "ok.xml's <iommu> or event queue changed"
        );
        // The timer wakes the IOMMU PD every 10 ms (`storm_drains_are_bounded_only_where_the_iommu_pd_runs`).
        let text = text.replace(IOMMU_PROGRAM, &format!("{IOMMU_PROGRAM}\n{TIMER_IRQ}"));
        let (_, problems) = iommu_sdf::check_text_on(&text, &iommu_sdf::Board::named(board));
        assert!(problems.iter().all(|p| p.element == "iommu"), "{problems:#?}");
        problems.len()
    };
    assert_eq!(with("0x1000", 300, 30_000, "qemu_virt_aarch64"), 0);
    assert_eq!(with("0x1000", 300, 29_999, "qemu_virt_aarch64"), 1);
    assert_eq!(with("0x1000", 127, 1, "qemu_virt_aarch64"), 0);
    assert_eq!(with("0x1000", 128, 19_999, "qemu_virt_aarch64"), 1);
    // 12 KiB holds 384 records; the IOMMU PD's queue is 256 of them.
    assert_eq!(with("0x3000", 255, 1, "qemu_virt_aarch64"), 0);
    assert_eq!(with("0x3000", 256, 19_999, "qemu_virt_aarch64"), 1);
    // 64 KiB (ok.xml's): 2048 records, so 300 faults are one drain's.
    assert_eq!(with("0x10000", 300, 1, "qemu_virt_aarch64"), 0);
    assert_eq!(with("0x10000", 2047, 1, "qemu_virt_aarch64"), 0);
    assert_eq!(with("0x10000", 2048, 19_999, "qemu_virt_aarch64"), 1);
    // 32 MiB holds 2^20 records; QEMU's SMMU takes a queue of 2^19 at most.
    assert_eq!(with("0x2000000", (1 << 19) - 1, 1, "qemu_virt_aarch64"), 0);
    assert_eq!(with("0x2000000", 1 << 19, 19_999, "qemu_virt_aarch64"), 1);
    // 2^64 - 1 ticks at 62.5 MHz: 295,147,905,179,352,825 us (rounded down) is the last.
    assert_eq!(with("0x10000", 300, 295_147_905_179_352_825, "qemu_virt_aarch64"), 0);
    assert_eq!(with("0x10000", 300, 295_147_905_179_352_826, "qemu_virt_aarch64"), 1);
}

/// More domains than the kernel has (16) are refused once, at <domains>, and only the
/// first 16 are kept: each schedule entry and PD is looked up among those, so a hostile
/// description of thousands of domains is read in linear time (looked up among all of them,
/// 60,000 domains and entries took check minutes). An entry or PD naming a domain past the
/// 16th is no second problem.
#[test]
fn a_description_of_many_domains_keeps_the_kernels_sixteen() {
    let n = 2_000;
    let domains: String = (0..n).map(|i| format!("<domain name=\"d{i}\" />")).collect();
    let entries: String = (0..n).map(|i| format!("<schedule_entry domain=\"d{i}\" duration=\"1 us\" />")).collect();
    let text = format!(
        "<system>\n<domains>{domains}\n<domain_schedule>{entries}</domain_schedule></domains>\n<memory_region name=\"buf\" size=\"0x1000\" />\n<protection_domain name=\"a\" priority=\"1\" domain=\"d1999\"><program_image path=\"a.elf\" /><map mr=\"buf\" vaddr=\"0x2000000\" /></protection_domain>\n</system>\n"
    );
    let (sys, problems) = iommu_sdf::check_text_on(&text, &iommu_sdf::Board::default().with_config("debug"));
    let schedule = sys.domain_schedule.expect("<domains> read");
    assert_eq!((schedule.names.len(), schedule.declared), (16, n));
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        ["2000 domains, and the kernel has 16", "2000 schedule entries, and the kernel holds fewer than 100"],
        "{problems:#?}"
    );
}
