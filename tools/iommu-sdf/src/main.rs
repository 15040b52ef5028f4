//! The `iommu-sdf` command: `check`, `build` and `report` a system description. Usage and
//! exit codes are in `USAGE`; problems are printed as `FILE:LINE:COL: error: ...`, the
//! form editors and CI annotate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use iommu_sdf::{Board, Target};

const USAGE: &str = "\
usage: iommu-sdf COMMAND FILE [--board BOARD] [--config CONFIG] [--search-path DIR]... [OPTIONS]

Check a Microkit system description that uses the IOMMU PD, and build from it.

commands:
  check FILE               report every problem, with its place and a fix
  build FILE --out DIR     check, then write DIR/<FILE's stem>.system for the Microkit
                           tool (line for line with FILE), DIR/iommu_policy.rs for
                           the IOMMU PD, and for each client PD DIR/<pd>_iommu.h and
                           DIR/<pd>_iommu.rs: its channel, device ids, capability
                           handles and sizes, and every client's id
  report FILE [--svg PATH] check, then print what each device can ever reach (Markdown),
                           and draw it as SVG in PATH if asked
  verify DIR               refuse if a program `check --copy-programs DIR` copied, the
                           file it read it from, or the description, changed since

options:
  --board BOARD            the Microkit board the description is for (as the Microkit
                           tool takes it; default qemu_virt_aarch64): its SMMU, StreamID
                           and physical address widths bound what check accepts, and
                           an <iommu> on a board without an SMMUv3 the IOMMU PD drives
                           is refused. On x86_64 boards the
                           Microkit tool programs the IOMMU from <io_address_space> and
                           <iomap>: check applies Microkit's rules for them, build passes
                           them through untouched, and there is no IOMMU PD policy
  --config CONFIG          the Microkit configuration (as the Microkit tool takes it:
                           debug, smp-debug...): its cores bound every PD's and vCPU's
                           cpu, and domains need one core; without it those are left to
                           the Microkit tool
  --search-path DIR        where the PDs' programs are, once per directory (the Microkit
                           tool's; the first directory holding a program_image's path wins):
                           each program is read and every map of its PD held clear of
                           its loadable segments, which the Microkit tool refuses maps
                           over, and every symbol the tool patches (libmicrokit's, each
                           setvar's) held to what it needs. Without it the programs are
                           not read, and `check` refuses each <program_image>: where a
                           program lies and what symbols it has are unproven. `build`
                           and `report` (run before the programs exist) write their
                           output and say what is unproven until `check --search-path`
  --copy-programs DIR      (check) once the description passes, write each program as
                           read and checked into DIR, under its program_image path, the
                           Microkit file made from the description (DIR/NAME.system, as
                           build names it) and DIR/programs.sha256: give the Microkit tool
                           DIR/NAME.system and --search-path DIR so it reads and loads
                           exactly what was checked, and run `verify DIR` before it
  --built DIR              (check) refuse unless every file `build` writes for the
                           description (the Microkit file, the policy, each client's
                           numbers), which the PDs are compiled against, is in DIR as
                           build would write it now
  -h, --help               this text (after a command: that command's)

exit status:
  0  the description is valid (and what was asked for was written)
  1  the description has problems (each printed as FILE:LINE:COL: error: ...)
  2  wrong usage, or a file could not be read or written
";

const CHECK_USAGE: &str = "\
usage: iommu-sdf check FILE --search-path DIR... [--board BOARD] [--config CONFIG] [--copy-programs OUT] [--built DIR]

Read the PDs' programs from the search path (as the Microkit tool will: without them
each <program_image> is a problem, the programs' placement and symbols unproven), and
report every problem of the description FILE as
  FILE:LINE:COL: error: <element>: what is wrong
  FILE:LINE:COL: note: fix: what would fix it
then a count. With --copy-programs, when there is none, write the programs (and their
path_for_symbols and prefill_path files) as read into OUT (each under the path the
description gives, which must stay inside OUT and not be one of the two names check
writes there; links below OUT are replaced, not followed), the Microkit file made from FILE (OUT/NAME.system,
what build would write) and OUT/programs.sha256, the SHA-256 of FILE, of the Microkit
file, of each copy and of the file it was read from: the Microkit tool, given
OUT/NAME.system and --search-path OUT, then reads and loads exactly what was checked
(`iommu-sdf verify OUT` just before it refuses if any of them changed); when there are
problems, OUT/programs.sha256 is removed. Exit 0 if there is none, 1 if there are, 2 if
FILE cannot be read or OUT written.
";

const VERIFY_USAGE: &str = "\
usage: iommu-sdf verify DIR [-- COMMAND ARGS...]

Read DIR/programs.sha256, which `check --copy-programs DIR` wrote, and refuse (exit 1)
if any program copied into DIR, the file it was read from, the Microkit file written
there or the description checked has changed since, or if a program or symbols file
the Microkit file names is not in the list, each as
  DIR/programs.sha256:LINE:1: error: what changed
  DIR/programs.sha256:LINE:1: note: fix: what would fix it
Run it just before the Microkit tool. With `-- COMMAND ARGS...` (images/Makefile's
way), when nothing changed, write the bytes it verified into a new private directory
beside DIR (read-only files), run COMMAND with `{system}` in ARGS replaced by the
Microkit file there and `{dir}` by the directory (both required; every argument after
--search-path, up to the next option, must be {dir}, and --search-path=X is refused),
hash the copy again once it exits, and remove it: a file of DIR changed after the check
is not what COMMAND reads. A HUP, INT, QUIT or TERM while COMMAND runs is passed on to
it; the copy is removed and verify ends by that signal. Exit 0 if none has changed (and COMMAND's status
with one), 1 if one has (before COMMAND or while it ran), 2 if DIR/programs.sha256
cannot be read or COMMAND run.
";

const BUILD_USAGE: &str = "\
usage: iommu-sdf build FILE --out DIR

Check FILE (as `check`), then write DIR/<FILE's stem>.system, the description for the
Microkit tool: line for line with FILE (elements only iommu-sdf reads become blank
lines), so the Microkit tool's line numbers are FILE's; and DIR/iommu_policy.rs, the
IOMMU PD's policy. Exit 0 when both are written, 1 on problems, 2 if a file cannot be
read or written.
";

const REPORT_USAGE: &str = "\
usage: iommu-sdf report FILE [--svg PATH] [--microkit-report REPORT]

Check FILE (as `check`), then print, per device, every page it can ever reach and
through what (Markdown); with --svg, also draw it in PATH. With --microkit-report (the
report.txt the Microkit tool writes with -r, images/Makefile's
target/images/<config>/report.txt), also where the tool placed each region in physical
memory, in the Markdown and the picture. Exit 0, 1 on problems, 2 if a file cannot be
read or written.
";

/// What the command line asks for.
enum Command {
    /// The description, `--copy-programs`, `--built`.
    Check(PathBuf, Option<PathBuf>, Option<PathBuf>),
    /// The directory, and the command to run on a private copy of it (empty: none).
    Verify(PathBuf, Vec<String>),
    Build(PathBuf, PathBuf),
    Report(PathBuf, Option<PathBuf>, Option<PathBuf>),
}

/// The command line's parts besides the command: the board and the search path.
struct Options {
    board: Board,
    search: Vec<PathBuf>,
}

/// `Ok(None)`: help was asked for and printed.
fn parse(args: &[String]) -> Result<Option<(Command, Options)>, &'static str> {
    let help = |text: &str| {
        print!("{text}");
        Ok(None)
    };
    let Some(cmd) = args.first() else { return Err(USAGE) };
    let rest = &args[1..];
    let usage = match cmd.as_str() {
        "-h" | "--help" => return help(USAGE),
        "check" => CHECK_USAGE,
        "verify" => VERIFY_USAGE,
        "build" => BUILD_USAGE,
        "report" => REPORT_USAGE,
        _ => return Err(USAGE),
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return help(usage);
    }
    let mut file = None;
    let mut out = None;
    let mut svg = None;
    let mut placed = None;
    let mut copy = None;
    let mut built = None;
    let mut board = Board::default();
    let mut config: Option<String> = None;
    let mut search = Vec::new();
    let mut run = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" if cmd == "verify" => {
                run = it.by_ref().cloned().collect();
                if !runs_on_the_copy(&run) {
                    return Err(usage);
                }
            }
            "--out" if cmd == "build" => out = Some(PathBuf::from(it.next().ok_or(usage)?)),
            "--svg" if cmd == "report" => svg = Some(PathBuf::from(it.next().ok_or(usage)?)),
            "--microkit-report" if cmd == "report" => placed = Some(PathBuf::from(it.next().ok_or(usage)?)),
            "--copy-programs" if cmd == "check" => copy = Some(PathBuf::from(it.next().ok_or(usage)?)),
            "--built" if cmd == "check" => built = Some(PathBuf::from(it.next().ok_or(usage)?)),
            _ if cmd == "verify" && (a.starts_with('-') || file.is_some()) => return Err(usage),
            "--board" => board = Board::named(it.next().ok_or(usage)?),
            "--config" => config = Some(it.next().ok_or(usage)?.clone()),
            "--search-path" => search.push(PathBuf::from(it.next().ok_or(usage)?)),
            _ if a.starts_with('-') || file.is_some() => return Err(usage),
            _ => file = Some(PathBuf::from(a)),
        }
    }
    let file = file.ok_or(usage)?;
    // Given before or after --board, it is the board's configuration.
    if let Some(config) = &config {
        board = board.with_config(config);
    }
    let command = match cmd.as_str() {
        "check" => Command::Check(file, copy, built),
        "verify" => Command::Verify(file, run),
        "build" => Command::Build(file, out.ok_or(usage)?),
        _ => Command::Report(file, svg, placed),
    };
    Ok(Some((command, Options { board, search })))
}

fn main() -> ExitCode {
    // `std::env::args` panics on an argument that is not UTF-8 (a search directory named
    // so): wrong usage instead. The paths go into the list `verify` reads back as text.
    let args: Vec<String> = match std::env::args_os().skip(1).map(|a| a.into_string()).collect() {
        Ok(args) => args,
        Err(bad) => {
            let shown = iommu_sdf::problem::escaped(&bad.to_string_lossy());
            eprintln!("iommu-sdf: the argument `{shown}` is not UTF-8: give its paths as UTF-8 (rename, or link)");
            return ExitCode::from(2);
        }
    };
    let (command, Options { board, search }) = match parse(&args) {
        Ok(Some(c)) => c,
        Ok(None) => return ExitCode::SUCCESS,
        Err(usage) => {
            eprint!("{usage}");
            return ExitCode::from(2);
        }
    };
    let file = match &command {
        Command::Verify(dir, run) => return verify(dir, run),
        Command::Check(f, ..) | Command::Build(f, _) | Command::Report(f, ..) => f.clone(),
    };
    let shown = file.display().to_string();
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("iommu-sdf: cannot read {shown}: {e}");
            return ExitCode::from(2);
        }
    };
    let target = board.target;
    let (sys, mut problems) = iommu_sdf::check_text_with(&text, &board, &search);
    // `check` is the proof, and without the programs it cannot be made (`programs::unread`);
    // build and report, which run before the programs exist, say so instead.
    let unproven = if search.is_empty() { iommu_sdf::programs::unproven(&sys, &shown) } else { None };
    if matches!(command, Command::Check(..)) && search.is_empty() {
        problems.extend(iommu_sdf::programs::unread(&sys));
        problems.sort_by_key(|p| p.line);
    }
    // The PDs were compiled against what `build` wrote: from this text, or the check is of
    // a description the image does not carry.
    if let (Command::Check(_, _, Some(built)), true) = (&command, problems.is_empty()) {
        let outputs = iommu_sdf::checked::outputs(&file, &text, &sys, target);
        let not_built = outputs.as_deref().map(|o| iommu_sdf::checked::not_built_in(built, o)).unwrap_or_default();
        for name in not_built {
            problems.push(iommu_sdf::problem::p(
                1,
                "system",
                format!("`{}` was not written from this description (missing, or from another text): the PDs compiled against it are not this description's", built.join(&name).display()),
                format!("run `iommu-sdf build {shown} --out {}` and build the PDs again before checking (images/Makefile's image step does both)", built.display()),
            ));
        }
    }
    if let (Command::Check(_, _, Some(built)), true) = (&command, problems.is_empty()) {
        problems.extend(iommu_sdf::checked::restart_entries_differ(built, &sys));
    }
    // What only copying into DIR refuses (a path out of it, a name check writes there).
    if let Command::Check(_, Some(_), _) = &command {
        problems.extend(iommu_sdf::checked::refusals(&sys, &file));
        problems.sort_by_key(|p| p.line);
    }
    let lines: Vec<&str> = text.lines().collect();
    for p in &problems {
        let col = iommu_sdf::problem::column_on(lines.get((p.line as usize).saturating_sub(1)).copied(), p);
        // One line each, whatever a hostile name put in the message.
        let one_line = |s: &str| s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>();
        println!("{shown}:{}:{col}: error: <{}>: {}", p.line, p.element, one_line(&p.message));
        println!("{shown}:{}:{col}: note: fix: {}", p.line, one_line(&p.fix));
    }
    if !problems.is_empty() {
        println!("{shown}: {} problem(s)", problems.len());
        // Programs an earlier check copied are not this description's proof.
        if let Command::Check(_, Some(dir), _) = &command {
            if let Err(e) = iommu_sdf::checked::forget(dir) {
                eprintln!("iommu-sdf: cannot remove {}: {e}", dir.join(iommu_sdf::checked::MANIFEST).display());
                return ExitCode::from(2);
            }
        }
        return ExitCode::from(1);
    }
    for w in iommu_sdf::warnings_on(&sys, &board) {
        let col = iommu_sdf::problem::column_on(lines.get((w.line as usize).saturating_sub(1)).copied(), &w);
        println!("{shown}:{}:{col}: warning: <{}>: {}", w.line, w.element, w.message);
        println!("{shown}:{}:{col}: note: fix: {}", w.line, w.fix);
    }
    println!("{shown}: ok: {}", iommu_sdf::summary_on(&sys, &board));
    if let Some(unproven) = &unproven {
        println!("{unproven}");
    }
    match command {
        Command::Check(_, None, _) => ExitCode::SUCCESS,
        Command::Check(_, Some(dir), _) => match iommu_sdf::checked::copy(&sys, &file, &text, target, &dir) {
            Ok(n) => {
                let microkit = dir.join(iommu_sdf::build::microkit_file_name(&file));
                println!(
                    "{shown}: copied {n} file(s) (programs, their symbols, prefills) as checked into {}, and wrote the Microkit file made from it, {}, their SHA-256 in {}: give the Microkit tool {} and --search-path {}, and run `iommu-sdf verify {}` before it",
                    dir.display(),
                    microkit.display(),
                    dir.join(iommu_sdf::checked::MANIFEST).display(),
                    microkit.display(),
                    dir.display(),
                    dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("iommu-sdf: cannot copy the programs into {}: {e}", dir.display());
                // Whatever was copied is no proof.
                let _ = iommu_sdf::checked::forget(&dir);
                ExitCode::from(2)
            }
        },
        Command::Verify(..) => unreachable!("verify returned above"),
        Command::Report(_, svg, report) => {
            println!("\n{}", iommu_sdf::report::markdown_on(&sys, &shown, &board));
            if let Some(unproven) = &unproven {
                println!("**Unproven:** {unproven}\n");
            }
            let placed = match report.map(|r| std::fs::read_to_string(&r).map_err(|e| (r, e))) {
                Some(Ok(text)) => Some(iommu_sdf::placement::read(&text)),
                Some(Err((r, e))) => {
                    eprintln!("iommu-sdf: cannot read {}: {e}", r.display());
                    return ExitCode::from(2);
                }
                None => None,
            };
            if let Some(placed) = &placed {
                println!("{}", iommu_sdf::report::placements(&sys, placed));
            }
            if let Some(path) = svg {
                if let Err(e) = std::fs::write(&path, iommu_sdf::picture::svg(&sys, placed.as_ref())) {
                    eprintln!("iommu-sdf: cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
                println!("(picture: {})", path.display());
            }
            ExitCode::SUCCESS
        }
        Command::Build(_, dir) => build(&file, &text, &sys, &dir, target),
    }
}

/// Whether `run`, the command after `verify DIR --`, reads the private copy: it names
/// `{system}` (the Microkit file there) and `{dir}` (the directory), and gives no search
/// directory but `{dir}`. The Microkit tool's `--search-path` takes every argument after
/// it up to the next that starts with `-` (tool/microkit/src/argparse.rs,
/// `consume_parameters`): each must be `{dir}`, or `--search-path {dir} {system}` would
/// make `{system}` a search directory and an earlier argument the description built, and
/// `--search-path {dir} OTHER` would search OTHER too. `--search-path=X`, which the
/// Microkit tool does not take (but a wrapper might), is refused as well.
fn runs_on_the_copy(run: &[String]) -> bool {
    let mut searching = false;
    for a in run.iter().skip(1) {
        if a == "--search-path" {
            searching = true;
        } else if a.starts_with("--search-path=") || (searching && !a.starts_with('-') && a != "{dir}") {
            return false;
        } else if a.starts_with('-') {
            searching = false;
        }
    }
    run.iter().any(|a| a == "{system}") && run.iter().any(|a| a == "{dir}")
}

/// `verify DIR`: each file `DIR`'s manifest lists that changed since `check` copied the
/// programs, refused with a fix; then, given `run`, that command on a private copy of what
/// was verified (`iommu_sdf::private_copy`). Every name read from DIR is printed escaped
/// (`problem::escaped`): a hostile build chose them.
fn verify(dir: &Path, run: &[String]) -> ExitCode {
    let e = |p: &Path| iommu_sdf::problem::escaped(&p.display().to_string());
    let manifest = dir.join(iommu_sdf::checked::MANIFEST);
    let shown = e(&manifest);
    let iommu_sdf::checked::Verified { description, files: n, changed, microkit, unlisted, copies } =
        match iommu_sdf::checked::verify(dir) {
            Ok(v) => v,
            Err(err) => {
                let err = iommu_sdf::problem::escaped(&err.to_string());
                eprintln!("iommu-sdf: cannot verify {shown}: {err} (run `iommu-sdf check FILE --search-path DIR... --copy-programs {}` first)", e(dir));
                return ExitCode::from(2);
            }
        };
    let fix = format!(
        "run `iommu-sdf check {} --search-path DIR... --copy-programs {}` again on the programs as built, then this, then the Microkit tool on its Microkit file there with --search-path {} (images/Makefile's image step runs the three)",
        e(&description),
        e(dir),
        e(dir)
    );
    for c in &changed {
        let now = match &c.now {
            Ok(hash) => format!("its SHA-256 is now {hash}"),
            Err(err) => format!("it cannot be read ({})", iommu_sdf::problem::escaped(err)),
        };
        println!(
            "{shown}:{}:1: error: `{}` changed since `iommu-sdf check` read it ({now}; checked {}): the Microkit tool would build from what was not checked",
            c.line,
            e(&c.path),
            c.checked
        );
        println!("{shown}:{}:1: note: fix: {fix}", c.line);
    }
    let microkit_shown = iommu_sdf::problem::escaped(&microkit);
    for name in &unlisted {
        println!(
            "{shown}:2:1: error: `{}`, which the Microkit file {microkit_shown} names, is not in the list: the Microkit tool would load it unchecked",
            iommu_sdf::problem::escaped(name)
        );
        println!("{shown}:2:1: note: fix: {fix}");
    }
    if !changed.is_empty() || !unlisted.is_empty() {
        println!("{shown}: {} of {n} changed, {} not listed", changed.len(), unlisted.len());
        return ExitCode::from(1);
    }
    println!("{shown}: ok: the {n} files are as `iommu-sdf check` read them");
    if run.is_empty() {
        return ExitCode::SUCCESS;
    }
    // From here to the copy's removal a signal is passed on to COMMAND, not let end this
    // process with the copy left behind (`iommu_sdf::signals`).
    let caught = match iommu_sdf::signals::Caught::catch() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("iommu-sdf: cannot catch signals: {err}");
            return ExitCode::from(2);
        }
    };
    let copy = match iommu_sdf::private_copy::PrivateCopy::new(dir, &copies) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("iommu-sdf: cannot make a private copy of {} beside it: {err}", e(dir));
            return ExitCode::from(2);
        }
    };
    let system = copy.dir.join(&microkit);
    let args: Vec<std::ffi::OsString> = run[1..]
        .iter()
        .map(|a| match a.as_str() {
            "{system}" => system.clone().into_os_string(),
            "{dir}" => copy.dir.clone().into_os_string(),
            _ => a.into(),
        })
        .collect();
    println!("{shown}: running {} on the private copy {} of what was verified", run[0], e(&copy.dir));
    if let Some(signal) = caught.received() {
        drop(copy);
        caught.die_of(signal);
    }
    let status = match std::process::Command::new(&run[0]).args(&args).spawn().and_then(|mut c| caught.wait(&mut c)) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("iommu-sdf: cannot run {}: {err}", run[0]);
            return ExitCode::from(2);
        }
    };
    if let Some(signal) = caught.received() {
        drop(copy);
        caught.die_of(signal);
    }
    // Read-only and private, but the user's: what the tool read may still have changed.
    let after = copy.changed();
    for name in &after {
        println!(
            "{}: error: `{}` changed while {} ran on it: what it built is not what was verified",
            e(&copy.dir),
            iommu_sdf::problem::escaped(name),
            run[0]
        );
        println!("{}: note: fix: build the image again, with nothing else writing {}", e(&copy.dir), e(dir));
    }
    if !after.is_empty() {
        return ExitCode::from(1);
    }
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    }
}

/// Write the Microkit description and the IOMMU PD's policy into `dir`.
fn build(file: &Path, text: &str, sys: &iommu_sdf::model::System, dir: &Path, target: Target) -> ExitCode {
    let shown = file.display();
    let name = iommu_sdf::build::microkit_file_name(file);
    // The Microkit file, the policy and each client's numbers (<pd>_iommu.h, <pd>_iommu.rs).
    let outputs = match iommu_sdf::checked::outputs(file, text, sys, target) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("iommu-sdf: {shown}: {e}");
            return ExitCode::from(1);
        }
    };
    let written = std::fs::create_dir_all(dir)
        .and_then(|_| outputs.iter().try_for_each(|(name, contents)| std::fs::write(dir.join(name), contents)));
    if let Err(e) = written {
        eprintln!("iommu-sdf: cannot write to {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    if target == Target::X86_64 {
        println!("{shown}: wrote {}/{name} (x86_64: no IOMMU PD, so no policy)", dir.display());
        return ExitCode::SUCCESS;
    }
    println!(
        "{shown}: wrote {}/{name}, {}/iommu_policy.rs and each client's <pd>_iommu.h and <pd>_iommu.rs",
        dir.display(),
        dir.display()
    );
    ExitCode::SUCCESS
}
