//! Attacks on the claim of `check --copy-programs DIR` and `verify DIR -- COMMAND`: what the
//! Microkit tool builds the image from is exactly what `check` checked (the description,
//! the programs, the prefills), or the build fails. Each test is one attack, by a hostile
//! description author or a hostile file in the search path or in DIR, and says whether
//! it broke the claim (and what fixed it) or held.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::copying::*;
use common::elf;

/// `iommu-sdf` run with `args`, given at most `limit`: its status and output together, or
/// `None` if it was still running then (it is killed).
fn run_within(args: &[&Path], limit: Duration) -> Option<(Option<i32>, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.code(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ))
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo (coreutils)");
    assert!(status.success());
}

/// One PD running `x.elf`, reading the region `table`, prefilled from `table.bin`.
const ONE_PD: &str = r#"<system>
    <memory_region name="table" prefill_path="table.bin" />
    <protection_domain name="reader" priority="10">
        <program_image path="x.elf" />
        <map mr="table" vaddr="0x30000000" />
    </protection_domain>
</system>"#;

/// Broke: a FIFO in the search path where a program or a prefill goes (a hostile file, or
/// a build's leftover) made `check` wait forever (`std::fs::read` opens it and waits for a
/// writer), and a link to a device (`/dev/zero`) read until memory ran out. The Microkit
/// tool would load neither; `check` now refuses both at their element, at once: a file is
/// opened without blocking and read only if it is a regular file.
#[test]
fn a_fifo_or_a_device_in_the_search_path_is_refused_not_waited_on() {
    let Staged { sdf, programs, stage, .. } = staged("attack-fifo-search", "fifo.xml", ONE_PD);
    std::fs::remove_file(programs.join("x.elf")).unwrap();
    mkfifo(&programs.join("x.elf"));
    std::fs::remove_file(programs.join("table.bin")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", programs.join("table.bin")).unwrap();
    let args = [Path::new("check"), &sdf, Path::new("--search-path"), &programs, Path::new("--copy-programs"), &stage];
    let (status, out) = run_within(&args, Duration::from_secs(20)).expect("check waited on a FIFO or a device");
    assert_eq!(status, Some(1), "{out}");
    assert!(
        out.contains("fifo.xml:4:9: error: <program_image>: `reader`'s program")
            && out.contains("is not a regular file"),
        "{out}"
    );
    assert!(
        out.contains("fifo.xml:2:5: error: <memory_region>: `table`'s prefill file `table.bin` cannot be read"),
        "{out}"
    );
    assert!(!stage.join("programs.sha256").exists());
}

/// Broke: a FIFO put in DIR in place of a copy (or in the search path in place of the file
/// a copy was read from, whose absolute path the list holds) after `check` made `verify`
/// wait forever. Now each is refused as changed (cannot be read: not a regular file).
#[test]
fn a_fifo_in_place_of_a_copy_or_of_its_source_is_refused_not_waited_on() {
    let Staged { sdf, programs, stage, .. } = staged("attack-fifo-dir", "fifo.xml", ONE_PD);
    for (dir, name) in [(&stage, "x.elf"), (&programs, "table.bin")] {
        assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
        let kept = std::fs::read(dir.join(name)).unwrap();
        std::fs::remove_file(dir.join(name)).unwrap();
        mkfifo(&dir.join(name));
        let (status, out) = run_within(&[Path::new("verify"), &stage], Duration::from_secs(20))
            .unwrap_or_else(|| panic!("verify waited on a FIFO as {}", dir.join(name).display()));
        assert_eq!(status, Some(1), "{out}");
        assert!(out.contains(&format!("{name}` changed since")) && out.contains("not a regular file"), "{out}");
        std::fs::remove_file(dir.join(name)).unwrap();
        std::fs::write(dir.join(name), kept).unwrap();
    }
}

/// Held: program and prefill paths that lead out of DIR (`..` anywhere, absolute) are
/// refused at their element with a fix, and nothing is copied; `.` and `//` components and
/// names differing only in case are copied under the path the description gives and
/// verified as written; a trailing `/` names a directory, which neither `check` nor the
/// Microkit tool (its `Path::exists` on `x.elf/`) finds for a file.
#[test]
fn odd_paths_are_refused_or_copied_as_the_microkit_tool_reads_them() {
    let outside = Path::new(env!("CARGO_TARGET_TMPDIR")).join("attack-path-absolute/outside.elf");
    let outside = outside.display().to_string();
    for (path, expect) in [
        ("../x.elf", "leads out of the directory"),
        ("sub/../../x.elf", "leads out of the directory"),
        (outside.as_str(), "leads out of the directory"),
        ("x.elf/", "is in none of the search directories"),
    ] {
        let text = ONE_PD.replace("path=\"x.elf\"", &format!("path=\"{path}\""));
        let tag = if path.starts_with('/') {
            "attack-path-absolute".to_string()
        } else {
            format!("attack-path-{}", path.replace(['/', '.'], "_"))
        };
        let Staged { sdf, programs, stage, .. } = staged(&tag, "odd.xml", ONE_PD);
        std::fs::write(&sdf, &text).unwrap();
        // The file each path names is where it names it: only the path is refused.
        if !path.ends_with('/') {
            std::fs::create_dir_all(programs.join("sub")).unwrap();
            std::fs::copy(programs.join("x.elf"), programs.join(path)).unwrap();
        }
        let (status, out) = check_copying(&sdf, &programs, &stage, &[]);
        assert_eq!(status, Some(1), "{path}: {out}");
        assert!(out.contains("odd.xml:4:9: error: <program_image>:") && out.contains(expect), "{path}: {out}");
        assert!(out.contains("note: fix: "), "{path}: {out}");
        assert!(!stage.exists(), "{path}: copied");
    }

    let text = r#"<system>
    <protection_domain name="a" priority="100">
        <program_image path="./sub//x.elf" />
    </protection_domain>
    <protection_domain name="b" priority="90">
        <program_image path="sub/X.elf" />
    </protection_domain>
</system>"#;
    let Staged { sdf, programs, stage, .. } = staged("attack-path-case", "case.xml", text);
    let (lower, upper) = (elf::program_for(text), elf::program_for_at(text, 0x1000));
    std::fs::write(programs.join("sub/x.elf"), &lower).unwrap();
    std::fs::write(programs.join("sub/X.elf"), &upper).unwrap();
    let (status, out) = check_copying(&sdf, &programs, &stage, &[]);
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(std::fs::read(stage.join("sub/x.elf")).unwrap(), lower);
    assert_eq!(std::fs::read(stage.join("sub/X.elf")).unwrap(), upper);
    let (passed, out) = sha256sum(&stage);
    assert!(passed, "{out}");
    // The lower-case copy changed: the one `./sub//x.elf` names is hashed, not its twin.
    std::fs::write(stage.join("sub/x.elf"), &upper).unwrap();
    let (status, out) = run(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("stage/./sub//x.elf` changed since"), "{out}");
}

/// Held: a line feed in a path (`&#10;`) is escaped in the list as coreutils does (its
/// carriage-return twin is `copy_programs.rs`'s), and a NUL (`&#0;`) is no XML character:
/// the description is refused as malformed at its line.
#[test]
fn a_line_feed_or_a_nul_in_a_path_is_no_way_around_the_list() {
    let text = ONE_PD.replace("path=\"x.elf\"", "path=\"x.elf&#10;\"");
    let Staged { sdf, programs, stage, .. } = staged("attack-path-lf", "lf.xml", &text);
    let (status, out) = check_copying(&sdf, &programs, &stage, &[]);
    assert_eq!(status, Some(0), "{out}");
    let (passed, out) = sha256sum(&stage);
    assert!(passed, "{out}");
    std::fs::write(stage.join("x.elf\n"), b"changed").unwrap();
    let (status, out) = run(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("x.elf\\n` changed since"), "{out}");

    let text = ONE_PD.replace("path=\"x.elf\"", "path=\"x&#0;.elf\"");
    let base = scratch("attack-path-nul");
    std::fs::write(base.join("nul.xml"), &text).unwrap();
    let (status, out) = check_copying(&base.join("nul.xml"), &base, &base.join("stage"), &[]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("nul.xml:4:") && out.contains("malformed XML"), "{out}");
}

/// Held: a copy in DIR hard-linked to a file outside it (a hostile DIR, or a build that
/// linked instead of copying) is unlinked before the copy is written, so `check` does not
/// write the outside file through the link.
#[test]
fn a_hard_link_in_the_copy_directory_is_not_written_through() {
    let Staged { base, sdf, programs, stage } = staged("attack-hard-link", "link.xml", ONE_PD);
    let victim = base.join("victim");
    std::fs::write(&victim, b"left alone").unwrap();
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::hard_link(&victim, stage.join("x.elf")).unwrap();
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    assert_eq!(std::fs::read(&victim).unwrap(), b"left alone");
    assert_eq!(std::fs::read(stage.join("x.elf")).unwrap(), std::fs::read(programs.join("x.elf")).unwrap());
}

/// Held: a list edited to name `../x` (a file beside DIR holding the bytes whose hash it
/// gives) is refused (`..` is not read below DIR), and a list naming a copy twice runs the
/// command on one copy of it.
#[test]
fn a_list_naming_a_path_out_of_dir_or_a_copy_twice() {
    let Staged { base, sdf, programs, stage } = staged("attack-list", "list.xml", ONE_PD);
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    let list = std::fs::read_to_string(stage.join("programs.sha256")).unwrap();
    let line = list.lines().find(|l| l.ends_with("  x.elf")).unwrap().to_string();
    std::fs::copy(stage.join("x.elf"), base.join("x.elf")).unwrap();
    std::fs::write(stage.join("programs.sha256"), list.replace(&line, &line.replace("  x.elf", "  ../x.elf"))).unwrap();
    let (status, out) = run(&[Path::new("verify"), &stage]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("../x.elf` changed since") && out.contains("leads out of the directory"), "{out}");

    std::fs::write(stage.join("programs.sha256"), format!("{list}{line}\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
        .arg("verify")
        .arg(&stage)
        .args(["--", "sh", "-c", r#"cmp "$2/x.elf" "$STAGE/x.elf""#, "tool", "{system}", "{dir}"])
        .env("STAGE", &stage)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Broke: the check that COMMAND reads only the private copy took `--search-path X` to
/// give one path, but the Microkit tool's takes every argument after it up to the next
/// that starts with `-` (tool/microkit/src/argparse.rs, `consume_parameters`): `--search-path
/// {dir} /elsewhere` searched `/elsewhere` too, and `microkit OTHER.system --search-path {dir}
/// {system}` built OTHER.system, a description nobody checked, with `{system}` taken as a
/// search directory. `--search-path=X` (which the Microkit tool does not take, but a
/// wrapper might) is refused too. Each is wrong usage (exit 2), and nothing runs.
#[test]
fn a_command_given_another_search_path_or_description_is_refused() {
    let Staged { base, sdf, programs, stage } = staged("attack-search-path", "sp.xml", ONE_PD);
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    let ran = base.join("ran");
    let script = format!("touch {}", ran.display());
    // Refused (`false`), and as images/Makefile runs it or with `{dir}` given twice: run.
    for (args, runs) in [
        (&["{system}", "--search-path", "{dir}", "/elsewhere"][..], false),
        (&["/other.system", "--search-path", "{dir}", "{system}"], false),
        (&["{system}", "--search-path={dir}", "--search-path", "{dir}"], false),
        (&["{system}", "--search-path", "{dir}", "--search-path=/elsewhere"], false),
        (&["{system}", "--search-path", "{dir}", "--board", "b"], true),
        (&["{system}", "--search-path", "{dir}", "{dir}"], true),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
            .arg("verify")
            .arg(&stage)
            .args(["--", "sh", "-c", &script, "tool"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(if runs { 0 } else { 2 }), "{args:?}");
        assert_eq!(ran.exists(), runs, "{args:?}");
        if runs {
            std::fs::remove_file(&ran).unwrap();
        } else {
            assert!(String::from_utf8_lossy(&out.stderr).contains("usage: iommu-sdf verify DIR"), "{args:?}");
        }
    }
}

/// Broke: `verify DIR -- COMMAND` ran COMMAND on a private copy and removed it when COMMAND
/// returned, but a signal (Ctrl-C to the build's process group, or a TERM to `verify`
/// alone, as `make` and CI timeouts send) ended `verify` before it removed the copy, and
/// a TERM to `verify` alone left COMMAND running on. Now `verify` passes the signal on to
/// COMMAND, waits for it, removes the copy, and ends by the same signal.
#[test]
fn verify_removes_its_private_copy_when_interrupted() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let Staged { base, sdf, programs, stage } = staged("attack-signal", "sig.xml", ONE_PD);
    // INT to the whole process group (a terminal's Ctrl-C), TERM to `verify` alone.
    for (signal, number, to) in [("INT", 2, "0"), ("TERM", 15, "$PPID")] {
        assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
        let seen = base.join(format!("seen-{signal}"));
        // No wait to guess (a second was too short on a loaded machine): `verify` reaps its
        // command before it ends, so a command it stopped is gone by then, and one it
        // waited for instead of stopping has touched `.outlived`. The command's stderr
        // goes nowhere, so a `sleep` left behind holds none of the test's output.
        let script = format!(
            r#"exec 2>/dev/null; echo "$2" > "$SEEN"; echo $$ > "$SEEN.pid"; kill -{signal} {to}; sleep 60; touch "$SEEN.outlived""#
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
            .arg("verify")
            .arg(&stage)
            .args(["--", "sh", "-c", &script, "tool", "{system}", "{dir}"])
            .env("SEEN", &seen)
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let status = child.wait().unwrap();
        let private = std::fs::read_to_string(&seen).unwrap();
        let private = Path::new(private.trim());
        assert!(private.starts_with(&base), "{}", private.display());
        assert!(!private.exists(), "SIG{signal}: the private copy {} was left", private.display());
        assert_eq!(status.signal(), Some(number), "SIG{signal}: {status:?}");
        let pid = std::fs::read_to_string(base.join(format!("seen-{signal}.pid"))).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        // A zombie (state Z) has ended; its parent has not reaped it yet.
        let ran_on =
            stat.as_deref().is_ok_and(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')));
        if ran_on {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        assert!(!ran_on, "SIG{signal}: the command ran on");
        assert!(
            !base.join(format!("seen-{signal}.outlived")).exists(),
            "SIG{signal}: the command was waited for, not stopped"
        );
    }
}

/// Held: DIR itself a link (its own level, which `check` and `verify` open as named) to a
/// directory elsewhere: the copies are written there, verified there, and the command
/// runs on a private copy beside the link, removed after it, also when it fails; and a
/// FIFO in place of DIR's list is refused at once (exit 2), not waited on.
#[test]
fn a_link_as_dir_a_failing_command_and_a_fifo_as_the_list() {
    let Staged { base, sdf, programs, .. } = staged("attack-dir-link", "link.xml", ONE_PD);
    let (real, stage) = (base.join("real"), base.join("stage"));
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&real, &stage).unwrap();
    assert_eq!(check_copying(&sdf, &programs, &stage, &[]).0, Some(0));
    assert_eq!(std::fs::read(real.join("x.elf")).unwrap(), std::fs::read(programs.join("x.elf")).unwrap());
    let seen = base.join("seen");
    let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
        .arg("verify")
        .arg(&stage)
        .args(["--", "sh", "-c", r#"cmp "$2/x.elf" "$PROGRAMS/x.elf" && echo "$2" > "$SEEN" && exit 7"#, "tool"])
        .args(["{system}", "{dir}"])
        .env("PROGRAMS", &programs)
        .env("SEEN", &seen)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    let private = std::fs::read_to_string(&seen).unwrap();
    let private = Path::new(private.trim());
    assert_eq!(private.parent(), Some(base.as_path()), "{}", private.display());
    assert!(!private.exists(), "the private copy {} was left", private.display());

    std::fs::remove_file(real.join("programs.sha256")).unwrap();
    mkfifo(&real.join("programs.sha256"));
    let (status, out) = run_within(&[Path::new("verify"), &stage], Duration::from_secs(20)).expect("verify waited");
    assert_eq!(status, Some(2), "{out}");
    assert!(out.contains("not a regular file"), "{out}");
}

/// Broke: a search directory (or any argument) whose name is not UTF-8 made `iommu-sdf`
/// panic (`std::env::args`), exit 101 with a backtrace, not a refusal. Now it is wrong
/// usage (exit 2) saying which argument, escaped.
#[test]
fn an_argument_that_is_not_utf8_is_wrong_usage_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let Staged { base, sdf, programs, stage } = staged("attack-not-utf8", "u.xml", ONE_PD);
    let odd = base.join(std::ffi::OsStr::from_bytes(b"p\xff"));
    std::fs::rename(&programs, &odd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf"))
        .arg("check")
        .arg(&sdf)
        .arg("--search-path")
        .arg(&odd)
        .arg("--copy-programs")
        .arg(&stage)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("p\u{fffd}` is not UTF-8") && !err.contains("panicked"), "{err}");
    assert!(!stage.exists());
}
