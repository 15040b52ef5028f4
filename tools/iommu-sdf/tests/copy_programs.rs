//! `check --copy-programs DIR` and `verify DIR` (`iommu_sdf::checked`): the programs the
//! Microkit tool is given in DIR are the bytes `check` read; a program rebuilt after the
//! check, a copy changed, or the description changed is refused by `verify`, with a fix;
//! a check that refuses leaves nothing to verify; and `sha256sum --check` (coreutils, which
//! we did not write) reads the manifest as `verify` does.

use std::path::Path;
use std::process::Command;

mod common;
use common::copying::*;
use common::elf;

#[test]
fn the_programs_copied_are_those_checked_and_a_change_after_is_refused() {
    let text = sdf_text("ok-queue.xml");
    let Staged { sdf, programs, stage, .. } = staged("copy-programs", "ok-queue.xml", &text);
    let check = || {
        run(&[Path::new("check"), &sdf, Path::new("--search-path"), &programs, Path::new("--copy-programs"), &stage])
    };
    let verify = || run(&[Path::new("verify"), &stage]);
    let names = ["blk_driver.elf", "edu_driver.elf", "iommu.elf"];

    let (status, out) = check();
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("copied 3 file(s) (programs, their symbols, prefills) as checked into"), "{out}");
    for name in names {
        assert_eq!(std::fs::read(stage.join(name)).unwrap(), std::fs::read(programs.join(name)).unwrap(), "{name}");
    }
    let (status, out) = verify();
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("ok: the 8 files are as `iommu-sdf check` read them"), "{out}");
    let (passed, out) = sha256sum(&stage);
    assert!(passed && out.matches(": OK").count() == 8, "{out}");

    // A program rebuilt after the check: refused, by name, with a fix; the copy the
    // Microkit tool loads is still the program checked.
    let checked = std::fs::read(stage.join("blk_driver.elf")).unwrap();
    let rebuilt = elf::program_for_at(&text, 0x1000);
    std::fs::write(programs.join("blk_driver.elf"), &rebuilt).unwrap();
    let (status, out) = verify();
    assert_eq!(status, Some(1), "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 1, "{out}");
    assert!(errors[0].contains("programs/blk_driver.elf` changed since `iommu-sdf check` read it"), "{out}");
    let fix = out.lines().find(|l| l.contains(": note: fix: ")).unwrap_or("");
    assert!(
        fix.contains(&format!("run `iommu-sdf check {}", sdf.display())) && fix.contains("--copy-programs"),
        "{out}"
    );
    assert!(out.ends_with("1 of 8 changed, 0 not listed\n"), "{out}");
    assert_eq!(std::fs::read(stage.join("blk_driver.elf")).unwrap(), checked);
    let (passed, out) = sha256sum(&stage);
    assert!(!passed && out.contains("programs/blk_driver.elf: FAILED"), "{out}");
    // Checked again, the rebuilt program is what is copied.
    assert_eq!(check().0, Some(0));
    assert_eq!(std::fs::read(stage.join("blk_driver.elf")).unwrap(), rebuilt);
    assert_eq!(verify().0, Some(0));

    // A copy changed after the check.
    let mut copy = std::fs::read(stage.join("iommu.elf")).unwrap();
    copy.push(0);
    std::fs::write(stage.join("iommu.elf"), &copy).unwrap();
    let (status, out) = verify();
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("stage/iommu.elf` changed since"), "{out}");

    // The description changed after the check.
    assert_eq!(check().0, Some(0));
    std::fs::write(&sdf, text.replace("entries=\"16\"", "entries=\"32\"")).unwrap();
    let (status, out) = verify();
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("ok-queue.xml` changed since"), "{out}");
    std::fs::write(&sdf, &text).unwrap();

    // A check that refuses takes the manifest away: an earlier check's copies prove nothing.
    assert_eq!(check().0, Some(0));
    std::fs::write(programs.join("edu_driver.elf"), b"#!/bin/sh\n").unwrap();
    assert_eq!(check().0, Some(1));
    assert!(!stage.join("programs.sha256").exists());
    let (status, _) = verify();
    assert_eq!(status, Some(2));
}

/// A program path ending in a carriage return (`&#13;`, which XML keeps in an attribute):
/// a manifest line `HASH  x.elf\r` reads back, in `verify` as in `sha256sum --check`, as
/// `x.elf`, another file. Were it written so, a hostile build could leave the checked bytes
/// at `x.elf` and change the copy the Microkit tool loads (`x.elf\r`), and `verify` would
/// pass. Written as coreutils writes it (`\r`, the line starting with `\`), `verify` hashes
/// the copy itself, and `sha256sum --check` reads the manifest back the same.
#[test]
fn a_program_path_ending_in_a_carriage_return_is_verified_as_itself() {
    let base = scratch("copy-programs-cr");
    let text = r#"<system>
    <protection_domain name="a" priority="100">
        <program_image path="x.elf&#13;" />
    </protection_domain>
</system>"#;
    let sdf = base.join("cr.xml");
    std::fs::write(&sdf, text).unwrap();
    let (programs, stage) = (base.join("programs"), base.join("stage"));
    let checked = elf::program_for(text);
    std::fs::create_dir_all(&programs).unwrap();
    std::fs::write(programs.join("x.elf\r"), &checked).unwrap();
    let (status, out) = check_copying(&sdf, &programs, &stage, &[]);
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(std::fs::read(stage.join("x.elf\r")).unwrap(), checked);
    let (passed, out) = sha256sum(&stage);
    assert!(passed, "{out}");
    assert_eq!(run(&[Path::new("verify"), &stage]).0, Some(0));

    // The checked bytes beside it, under the name without `\r`, and the copy changed.
    std::fs::write(stage.join("x.elf"), &checked).unwrap();
    std::fs::write(programs.join("x.elf"), &checked).unwrap();
    let mut changed = checked.clone();
    changed.push(0);
    std::fs::write(stage.join("x.elf\r"), &changed).unwrap();
    let (status, out) = run(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("x.elf\\r` changed since `iommu-sdf check` read it"), "{out}");
    let (passed, out) = sha256sum(&stage);
    assert!(!passed, "{out}");
}

/// The Microkit tool reads the Microkit file, not the description: images/Makefile gave it
/// `build`'s (`$(BUILD)/NAME.system`), which `verify` did not hash and which `build` wrote
/// from the description as it was before the programs were built. A description changed
/// between `build` and `check` (here from one with a map over its program's segment, which
/// `check` refuses, to one without) was checked, copied and verified while the Microkit
/// tool was given the other. `check --copy-programs` writes the Microkit file it makes from
/// the text it checked into DIR beside the programs (what `build` would write for it), and
/// lists it in the manifest: `verify` refuses a change to it, and a program cannot take
/// its name (`tests/sdf/fail/copy-program-named-as-the-microkit-file.xml`).
#[test]
fn the_microkit_file_is_made_from_the_description_checked() {
    let checked = r#"<system>
    <memory_region name="buf" size="0x1000" />
    <protection_domain name="a" priority="100">
        <program_image path="a.elf" />
        <map mr="buf" vaddr="0x10000000" perms="rw" />
    </protection_domain>
</system>"#;
    let built = checked.replace("0x10000000", "0x200000");
    let Staged { base, sdf, programs, stage } = staged("copy-programs-microkit-file", "bound.xml", checked);
    let out_dir = base.join("build");
    let check = || check_copying(&sdf, &programs, &stage, &[]);
    // `build` ran on the description as it was; with the programs, check refuses that one.
    std::fs::write(&sdf, &built).unwrap();
    assert_eq!(run(&[Path::new("build"), &sdf, Path::new("--out"), &out_dir]).0, Some(0));
    let stale = std::fs::read_to_string(out_dir.join("bound.system")).unwrap();
    assert_eq!(check().0, Some(1));

    std::fs::write(&sdf, checked).unwrap();
    let (status, out) = check();
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(run(&[Path::new("build"), &sdf, Path::new("--out"), &out_dir]).0, Some(0));
    let fresh = std::fs::read_to_string(out_dir.join("bound.system")).unwrap();
    let copied = std::fs::read_to_string(stage.join("bound.system")).expect("the Microkit file in DIR");
    assert_eq!(copied, fresh);
    assert_ne!(copied, stale);
    let (passed, out) = sha256sum(&stage);
    assert!(passed && out.contains("bound.system: OK"), "{out}");

    // Changed after the check: refused.
    std::fs::write(stage.join("bound.system"), &stale).unwrap();
    let (status, out) = run(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("stage/bound.system` changed since `iommu-sdf check` read it"), "{out}");
}

/// `verify` hashed what the manifest lists and nothing else: a manifest listing fewer files
/// than the Microkit file names (a line taken out, or one from an older check) passed, and
/// the program it left out could change before the Microkit tool loaded it. `verify` now
/// reads the Microkit file (the manifest's second line) and refuses each program or
/// symbols file it names that the manifest does not list, and a manifest without it.
#[test]
fn a_manifest_listing_fewer_files_than_the_microkit_file_names_is_refused() {
    let text = r#"<system>
    <protection_domain name="a" priority="100">
        <program_image path="a.elf" />
    </protection_domain>
    <protection_domain name="b" priority="90">
        <program_image path="./b.elf" path_for_symbols="b.debug" />
    </protection_domain>
</system>"#;
    let Staged { sdf, programs, stage, .. } = staged("copy-programs-fewer", "fewer.xml", text);
    let manifest = stage.join("programs.sha256");
    for (left_out, named) in [("a.elf", "a.elf"), ("b.elf", "./b.elf"), ("b.debug", "b.debug")] {
        assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
        assert_eq!(run(&[Path::new("verify"), &stage]).0, Some(0));
        let lines = std::fs::read_to_string(&manifest).unwrap();
        let fewer: String = lines.lines().filter(|l| !l.ends_with(left_out)).map(|l| format!("{l}\n")).collect();
        assert_eq!(fewer.lines().count(), lines.lines().count() - 2, "{lines}");
        std::fs::write(&manifest, fewer).unwrap();
        std::fs::write(stage.join(left_out), b"not what was checked").unwrap();
        let (status, out) = run(&[Path::new("verify"), &stage]);
        assert_eq!(status, Some(1), "{left_out}: {out}");
        assert!(
            out.contains(&format!("`{named}`, which the Microkit file fewer.system names, is not in the list")),
            "{out}"
        );
    }
    // Without the Microkit file's line: nothing says what the Microkit tool will load.
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    let lines = std::fs::read_to_string(&manifest).unwrap();
    let fewer: String = lines.lines().filter(|l| !l.ends_with("fewer.system")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&manifest, fewer).unwrap();
    let (status, out) = run_all(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(2), "{out}");
    assert!(out.contains("its second line is not the Microkit file"), "{out}");
}

/// Attacks that held, kept as tests. An absolute program path (the Microkit tool's
/// `search_path.join(path)` would load it from wherever it names, whatever its search
/// path) is refused before anything is written. A link standing in DIR where a copy goes
/// is replaced, not written through: the file it pointed at is left as it was, and the
/// Microkit tool reads the copy.
#[test]
fn an_absolute_program_path_and_a_link_in_the_copy_directory_are_not_followed() {
    let base = scratch("copy-programs-held");
    let (programs, stage) = (base.join("programs"), base.join("stage"));
    let absolute = base.join("elsewhere.elf");
    let text = format!(
        r#"<system>
    <protection_domain name="a" priority="100">
        <program_image path="{}" />
    </protection_domain>
</system>"#,
        absolute.display()
    );
    let sdf = base.join("held.xml");
    std::fs::write(&sdf, &text).unwrap();
    std::fs::write(&absolute, elf::program_for(&text)).unwrap();
    std::fs::create_dir_all(&programs).unwrap();
    let (status, out) = check_copying(&sdf, &programs, &stage, &[]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains(&format!("the program path `{}` leads out of", absolute.display())), "{out}");
    assert!(!stage.join("programs.sha256").exists() && !stage.join("held.system").exists());

    let text = text.replace(&absolute.display().to_string(), "a.elf");
    std::fs::write(&sdf, &text).unwrap();
    elf::fixture_programs(&text, &programs, false).unwrap();
    let victim = base.join("victim");
    std::fs::write(&victim, b"left alone").unwrap();
    std::fs::create_dir_all(&stage).unwrap();
    std::os::unix::fs::symlink(&victim, stage.join("a.elf")).unwrap();
    std::os::unix::fs::symlink(&victim, stage.join("held.system")).unwrap();
    let (status, out) = check_copying(&sdf, &programs, &stage, &[]);
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"left alone");
    for name in ["a.elf", "held.system"] {
        assert!(!std::fs::symlink_metadata(stage.join(name)).unwrap().file_type().is_symlink(), "{name}");
    }
    assert_eq!(std::fs::read(stage.join("a.elf")).unwrap(), std::fs::read(programs.join("a.elf")).unwrap());
    assert_eq!(run(&[Path::new("verify"), &stage]).0, Some(0));
}

/// Two PDs naming one file two ways (`x.elf`, `./x.elf`): were it read twice and rebuilt
/// between the reads, each PD would be checked against other bytes and both copies land
/// on one file. It is read once (`programs::read`), so both PDs hold the same bytes; and a
/// model where they differ anyway is refused by `checked::refusals` at the later PD (a
/// defence: no description can make it, so it has no failing description), and not copied.
#[test]
fn one_program_named_two_ways_is_read_once() {
    let text = r#"<system>
    <protection_domain name="a" priority="100">
        <program_image path="x.elf" />
    </protection_domain>
    <protection_domain name="b" priority="90">
        <program_image path="./x.elf" />
    </protection_domain>
</system>"#;
    let Staged { sdf, programs, stage, .. } = staged("copy-programs-two-ways", "two.xml", text);
    let board = iommu_sdf::Board::default();
    let (mut sys, problems) = iommu_sdf::check_text_with(text, &board, std::slice::from_ref(&programs));
    assert!(problems.is_empty(), "{problems:?}");
    let bytes = |sys: &iommu_sdf::model::System, pd: &str| {
        sys.pds.iter().find(|p| p.name == pd).unwrap().program.as_ref().unwrap().files[0].bytes.clone()
    };
    assert!(std::sync::Arc::ptr_eq(&bytes(&sys, "a"), &bytes(&sys, "b")), "read twice");
    assert!(iommu_sdf::checked::refusals(&sys, &sdf).is_empty());
    // What `check` would have read had the file been read again, rebuilt, for PD b.
    let b = sys.pds.iter_mut().find(|pd| pd.name == "b").unwrap();
    let file = &mut b.program.as_mut().unwrap().files[0];
    let mut rebuilt = file.bytes.to_vec();
    rebuilt.push(0);
    file.bytes = rebuilt.into();
    let refused = iommu_sdf::checked::refusals(&sys, &sdf);
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(refused[0].message.contains("changed while check read it") && refused[0].line == 6, "{refused:#?}");
    assert!(iommu_sdf::checked::copy(&sys, &sdf, text, board.target, &stage).is_err());
    assert!(!stage.join("programs.sha256").exists());
}

/// Two search directories can give one program `a` and another `a/b.elf`: in DIR one path
/// cannot be both a file and a directory, so the copy would fail half written. Refused at
/// the program whose path is the other's directory, exit 1 (one search directory cannot
/// hold both, so no failing description can show it).
#[test]
fn a_program_path_that_is_another_programs_directory_is_refused() {
    let text = r#"<system>
    <protection_domain name="a" priority="100">
        <program_image path="a" />
    </protection_domain>
    <protection_domain name="b" priority="90">
        <program_image path="a/b.elf" />
    </protection_domain>
</system>"#;
    let base = scratch("copy-programs-file-and-dir");
    let sdf = base.join("fd.xml");
    std::fs::write(&sdf, text).unwrap();
    let (one, two, stage) = (base.join("one"), base.join("two"), base.join("stage"));
    std::fs::create_dir_all(one.join("a")).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    std::fs::write(one.join("a/b.elf"), elf::program_for(text)).unwrap();
    std::fs::write(two.join("a"), elf::program_for(text)).unwrap();
    // `a` from the first directory (a file there), `a/b.elf` from the second.
    let args = [Path::new("check"), &sdf, Path::new("--search-path"), &two, Path::new("--search-path"), &one];
    assert_eq!(run_all(&args).0, Some(0));
    let (status, out) = run_all(&[&args[..], &[Path::new("--copy-programs"), &stage]].concat());
    assert_eq!(status, Some(1), "{out}");
    assert!(
        out.contains("fd.xml:3:9: error: <program_image>: the program path `a` is also the directory of `a/b.elf`"),
        "{out}"
    );
    assert!(!stage.join("programs.sha256").exists());
}

/// The PDs are built before `check`, from `build`'s output (the IOMMU PD's policy, the
/// clients' numbers): a description changed between `build` and `check` (here a queue's
/// entries, which change the IOMMU PD's policy) was checked, copied and verified while the
/// IOMMU PD enforced the policy of the text before. `check --built DIR` refuses unless
/// every file `build` writes is in DIR as `build` would write it for the text checked.
#[test]
fn the_pds_inputs_built_from_another_description_are_refused() {
    let text = sdf_text("ok-queue.xml");
    let Staged { base, sdf, programs, stage } = staged("copy-programs-built", "ok-queue.xml", &text);
    let built = base.join("build");
    let changed = text.replace("entries=\"16\"", "entries=\"32\"");
    std::fs::write(&sdf, &changed).unwrap();
    let check = || check_copying(&sdf, &programs, &stage, &[Path::new("--built"), &built]);
    let build = || run(&[Path::new("build"), &sdf, Path::new("--out"), &built]).0;
    assert_eq!(build(), Some(0));
    let (status, out) = check();
    assert_eq!(status, Some(0), "{out}");

    // Built from the text as it was, checked as it is now.
    std::fs::write(&sdf, &text).unwrap();
    let (status, out) = check();
    assert_eq!(status, Some(1), "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    assert!(errors.iter().any(|e| e.contains("iommu_policy.rs` was not written from this description")), "{out}");
    assert!(out.contains("note: fix: run `iommu-sdf build"), "{out}");
    assert!(!stage.join("programs.sha256").exists());
    // A file build writes, missing: refused too.
    assert_eq!(build(), Some(0));
    std::fs::remove_file(built.join("edu_driver_iommu.h")).unwrap();
    let (status, out) = check();
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("edu_driver_iommu.h` was not written from this description"), "{out}");
    assert_eq!(build(), Some(0));
    assert_eq!(check().0, Some(0));
}

/// A link to a directory outside DIR, standing in DIR where a copy's directory goes
/// (`DIR/sub -> OUTSIDE`): `check` wrote the copy through it, outside DIR, and `verify` read
/// it back through it, so whoever could write OUTSIDE changed what the Microkit tool
/// loads, and a link put there after the check to identical bytes passed `verify`. `check`
/// now replaces the link with a directory (OUTSIDE left as it was), and `verify` refuses a
/// copy reached through a link.
#[test]
fn a_directory_link_in_the_copy_directory_is_not_followed() {
    let text = r#"<system>
    <protection_domain name="a" priority="100">
        <program_image path="sub/x.elf" />
    </protection_domain>
</system>"#;
    let Staged { base, sdf, programs, stage } = staged("copy-programs-dir-link", "link.xml", text);
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("x.elf"), b"not the program").unwrap();
    std::fs::create_dir_all(&stage).unwrap();
    std::os::unix::fs::symlink(&outside, stage.join("sub")).unwrap();
    let (status, out) = check_copying(&sdf, &programs, &stage, &[]);
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(std::fs::read(outside.join("x.elf")).unwrap(), b"not the program", "written through the link");
    assert!(std::fs::symlink_metadata(stage.join("sub")).unwrap().is_dir());
    assert_eq!(std::fs::read(stage.join("sub/x.elf")).unwrap(), std::fs::read(programs.join("sub/x.elf")).unwrap());
    assert_eq!(run(&[Path::new("verify"), &stage]).0, Some(0));

    // The copy's directory swapped for a link to identical bytes, which can change later.
    std::fs::copy(stage.join("sub/x.elf"), outside.join("x.elf")).unwrap();
    std::fs::remove_dir_all(stage.join("sub")).unwrap();
    std::os::unix::fs::symlink(&outside, stage.join("sub")).unwrap();
    let (status, out) = run(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(1), "{out}");
    assert!(
        out.contains("stage/sub/x.elf` changed since `iommu-sdf check` read it (it cannot be read (`sub` in"),
        "{out}"
    );
    assert!(out.contains("is a symbolic link"), "{out}");
}

/// A region's `prefill_path` is loaded into its memory by the Microkit tool, found in its
/// search path as programs are: it was neither copied nor hashed, so a prefill changed
/// after the check changed the image. It is copied into DIR under its path and listed; the
/// Microkit file there names it as written, which the tool, given DIR first, finds in DIR;
/// `verify` refuses it changed, or left out of the list.
#[test]
fn a_prefill_is_copied_and_verified_as_programs_are() {
    let text = sdf_text("plain-prefill.xml");
    let Staged { sdf, programs, stage, .. } = staged("copy-programs-prefill", "prefill.xml", &text);
    let prefill = std::fs::read(programs.join("table.bin")).unwrap();
    let (status, out) = check_copying(&sdf, &programs, &stage, &[]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("copied 2 file(s)"), "{out}");
    assert_eq!(std::fs::read(stage.join("table.bin")).unwrap(), prefill);
    let microkit = std::fs::read_to_string(stage.join("prefill.system")).unwrap();
    assert!(microkit.contains(r#"prefill_path="table.bin""#), "{microkit}");
    let (passed, listed) = sha256sum(&stage);
    assert!(passed && listed.contains("table.bin: OK") && listed.contains("programs/table.bin: OK"), "{listed}");
    assert_eq!(run(&[Path::new("verify"), &stage]).0, Some(0));

    // Changed after the check.
    std::fs::write(stage.join("table.bin"), b"another table").unwrap();
    let (status, out) = run(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("stage/table.bin` changed since `iommu-sdf check` read it"), "{out}");

    // Left out of the list.
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    let manifest = stage.join("programs.sha256");
    let lines = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        lines.lines().filter(|l| !l.ends_with("table.bin")).map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let (status, out) = run(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("`table.bin`, which the Microkit file prefill.system names, is not in the list"), "{out}");
}

/// Names `verify` prints come from DIR's list, which a hostile build may have written, and
/// from the paths of the files listed: printed raw, a terminal escape (ESC) in one rewrote
/// the screen, and a newline forged a line of output (`... ok: ...`). A description named
/// with both, changed after the check: its name is printed escaped, one line per error.
#[test]
fn verify_prints_hostile_names_escaped() {
    let text = sdf_text("plain-microkit.xml");
    let name = "evil\u{1b}[2J\nok: all good.xml";
    let Staged { sdf, programs, stage, .. } = staged("copy-programs-escape", name, &text);
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    std::fs::write(&sdf, text.replace("priority", "priority ")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf")).arg("verify").arg(&stage).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains('\u{1b}'), "{printed:?}");
    assert!(printed.contains("evil\\x1b[2J\\nok: all good.xml` changed since"), "{printed}");
    assert!(printed.lines().all(|l| l.starts_with(&stage.display().to_string())), "{printed}");
    assert_eq!(printed.lines().count(), 3, "{printed}");
}

/// `verify DIR -- COMMAND` closes the window between `verify` and the Microkit tool's read:
/// COMMAND reads a private copy of the bytes `verify` hashed, so a file of DIR changed
/// after `verify` (here by COMMAND itself, first thing, as a writer racing the tool
/// would) is not what it reads; a change to the private copy while it ran is refused
/// after it; its exit status is passed on; the copy is removed; and a command that would
/// not read the copy is wrong usage.
#[test]
fn verify_runs_the_command_on_a_private_copy_of_what_it_verified() {
    let text = sdf_text("plain-prefill.xml");
    let Staged { base, sdf, programs, stage } = staged("copy-programs-run", "run.xml", &text);
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    let checked = std::fs::read(stage.join("reader.elf")).unwrap();
    let seen = base.join("seen");
    // As the Microkit tool is run: `{system}` and `--search-path {dir}`.
    let verify_running = |script: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
            .arg("verify")
            .arg(&stage)
            .args(["--", "sh", "-c", script, "tool", "{system}", "--search-path", "{dir}"])
            .env("STAGE", &stage)
            .env("SEEN", &seen)
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (status, out) = verify_running(
        r#"printf 'rebuilt' > "$STAGE/reader.elf"; cp "$3/reader.elf" "$SEEN"; grep -c reader.elf "$1"; echo "$3" > "$SEEN.dir""#,
    );
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(std::fs::read(&seen).unwrap(), checked, "the command read what changed after verify");
    let private = std::fs::read_to_string(base.join("seen.dir")).unwrap();
    assert!(!Path::new(private.trim()).exists(), "the private copy {private} was left");
    assert_eq!(std::fs::read(stage.join("reader.elf")).unwrap(), b"rebuilt");
    // DIR changed: refused before anything runs.
    let (status, out) = verify_running(r#"touch "$SEEN.ran""#);
    assert_eq!(status, Some(1), "{out}");
    assert!(!base.join("seen.ran").exists());

    // The private copy changed while the command ran.
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    let (status, out) = verify_running(r#"chmod u+w "$3/table.bin" && printf 'x' >> "$3/table.bin""#);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("error: `table.bin` changed while sh ran on it"), "{out}");
    // The command's own failure is passed on.
    assert_eq!(verify_running("exit 3").0, Some(3));
    // A command that would not read the private copy.
    for args in [&["--", "sh", "{system}"][..], &["--", "sh", "{system}", "--search-path", "/elsewhere", "{dir}"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf")).arg("verify").arg(&stage).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
