//! The programs `check` read, written out as it read them (`check --copy-programs DIR`), so
//! that the Microkit tool, given DIR as its search path, loads exactly the bytes the rules
//! were held to, not whatever the search path holds when it runs (a program rebuilt between
//! the two would otherwise be loaded unchecked). Beside them, `DIR/programs.sha256` records
//! the SHA-256 of each copy, of the file it was read from and of the description, in the
//! form `sha256sum --check` reads; `verify` (the `iommu-sdf verify DIR` command, run just
//! before the Microkit tool) refuses when any of them has changed since.
//!
//! The Microkit tool reads the Microkit file, not the description: `check` writes the one
//! it makes from the text it checked into DIR too (`DIR/NAME.system`, what `build` would
//! write for that text), and the manifest lists it, so the Microkit tool given it reads
//! the description checked, not one `build` wrote earlier from another text.
//!
//! What this does not cover: the PDs were built before `check` (the IOMMU PD's policy and
//! the clients' numbers from `build`'s output), and nothing here proves that was from the
//! same text; and a change to DIR after `verify` and before the Microkit tool reads it is
//! seen by neither.

use std::fmt::Write as _;
use std::io;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::board::Target;
use crate::model::{Line, LoadedFile, System};
use crate::problem::{p, Problem};

/// The manifest's name in the directory the programs are copied to.
pub const MANIFEST: &str = "programs.sha256";

/// `bytes`' SHA-256 (FIPS 180-4), as 64 lowercase hex digits.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A manifest line: `HASH  PATH`, with GNU coreutils' escape for a path holding a
/// backslash, a newline or a carriage return (the line starts with `\`, and those are
/// written `\\`, `\n` and `\r`, as `sha256sum` 9 writes them). A carriage return left as it
/// is would end the line early when read back (by `str::lines` here, by `sha256sum --check`
/// too, which takes `x.elf\r` for `x.elf`): another file would be hashed than the one the
/// Microkit tool loads.
fn line(hash: &str, path: &str) -> String {
    if path.contains(['\\', '\n', '\r']) {
        let escaped = path.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r");
        format!("\\{hash}  {escaped}\n")
    } else {
        format!("{hash}  {path}\n")
    }
}

/// A manifest line read back: the hash and the path, or `None` if it is not one `line`
/// writes.
fn parse_line(text: &str) -> Option<(&str, String)> {
    let (escaped, text) = match text.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (hash, path) = text.split_once("  ")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || path.is_empty() {
        return None;
    }
    if !escaped {
        return Some((hash, path.to_string()));
    }
    let mut out = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            _ => return None,
        }
    }
    Some((hash, out))
}

/// Why the programs could not be copied.
fn refused(why: String) -> io::Error {
    io::Error::other(why)
}

/// The absolute form of `file` (where it lies now), for the manifest.
fn absolute(file: &Path) -> PathBuf {
    std::fs::canonicalize(file).or_else(|_| std::path::absolute(file)).unwrap_or_else(|_| file.to_path_buf())
}

/// Where `name` (relative, without `..`) lands in the copy directory: its `.` components
/// gone, so that `./programs.sha256` is seen to be `programs.sha256`.
fn in_dir(name: &str) -> PathBuf {
    Path::new(name).components().filter(|c| *c != Component::CurDir).collect()
}

/// Every file the Microkit tool loads for `sys` by a path the description gives (each
/// program, its `path_for_symbols`, each region's `prefill_path`): the path, what it is,
/// and the element and line that name it.
fn named(sys: &System) -> Vec<(&str, &'static str, &'static str, Line)> {
    let mut out: Vec<(&str, &str, &str, Line)> = Vec::new();
    for pr in sys.pds.iter().filter_map(|pd| pd.program.as_ref()) {
        out.push((&pr.path, "program", "program_image", pr.line));
        if let Some(s) = &pr.symbols_path {
            out.push((s, "program for symbols (path_for_symbols)", "program_image", pr.line));
        }
    }
    for r in &sys.regions {
        if let Some(f) = &r.prefill_path {
            out.push((f, "prefill file", "memory_region", r.line));
        }
    }
    out
}

/// The files `copy` writes for `sys`, as read: each program file and each prefill.
fn loaded(sys: &System) -> Vec<&LoadedFile> {
    let programs = sys.pds.iter().filter_map(|pd| pd.program.as_ref()).flat_map(|p| &p.files);
    programs.chain(sys.regions.iter().filter_map(|r| r.prefill.as_ref())).collect()
}

/// Why `check --copy-programs DIR` cannot copy what the Microkit tool loads for `sys`, the
/// description `description`, each a problem at the element that names the file, or none:
/// a path that leads out of DIR (absolute, or through `..`: the copy would be written
/// outside, and the Microkit tool, given the path, reads it from wherever it names, since
/// its `search_path.join(path)` is the path itself when it is absolute); a path whose
/// first component is the manifest's name or the Microkit file's (`check` writes those
/// there: the copy and the file would overwrite each other); a path that is another's
/// directory (`a` and `a/b.elf`: both cannot be written); and a file read twice with
/// different bytes (`crate::programs` reads each path once, so this is a defence, not a
/// case a description can make).
pub fn refusals(sys: &System, description: &Path) -> Vec<Problem> {
    let microkit = crate::build::microkit_file_name(description);
    let mut out = Vec::new();
    let files = named(sys);
    let rename = |what: &str| {
        format!("rename the {what} (and the path the description gives for it), or copy into another directory")
    };
    for &(path, what, element, line) in &files {
        let at = |message: String, fix: String| p(line, element, message, fix);
        if !Path::new(path).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            out.push(at(
                format!("the {what} path `{path}` leads out of the directory check copies into (it is absolute, or goes through `..`): its copy would be written outside it, and the Microkit tool would read the path from wherever it names"),
                format!("give the {what} path relative to the search path, without `..`"),
            ));
            continue;
        }
        let name = in_dir(path);
        let first = name.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
        if first.as_deref() == Some(MANIFEST) {
            out.push(at(
                format!("the {what} path `{path}` is the name of the file check writes the SHA-256 of its copies to, {MANIFEST}: the copy and the list would overwrite each other, and the Microkit tool be given the list as the {what}"),
                rename(what),
            ));
        } else if first.as_deref() == Some(microkit.as_str()) {
            out.push(at(
                format!("the {what} path `{path}` is the name of the Microkit file check writes beside the copies, {microkit} (made from {}): the copy and it would overwrite each other", description.display()),
                rename(what),
            ));
        } else if let Some(&(other, ..)) =
            files.iter().find(|(o, ..)| in_dir(o) != name && in_dir(o).starts_with(&name))
        {
            out.push(at(
                format!("the {what} path `{path}` is also the directory of `{other}`: one path cannot be both a file and a directory in the copy"),
                rename(what),
            ));
        }
    }
    let mut files = loaded(sys);
    files.sort_by_key(|f| in_dir(&f.name));
    for w in files.windows(2).filter(|w| in_dir(&w[0].name) == in_dir(&w[1].name) && w[0].bytes != w[1].bytes) {
        let (path, what, element, line) =
            named(sys).into_iter().rfind(|n| n.0 == w[1].name).unwrap_or((&w[1].name, "file", "system", 1));
        out.push(p(
            line,
            element,
            format!("the {what} `{path}` changed while check read it (read twice, as `{}` and `{path}`, it held other bytes)", w[0].name),
            "build the programs before checking, not while; then check again",
        ));
    }
    out.sort_by_key(|p| p.line);
    out
}

/// Write every file `check` read for what the Microkit tool loads for `sys` (each program,
/// its symbols file, each region's prefill) into `dir`, under the path the description
/// gives (the bytes read, not the file again), the Microkit file made from the description
/// for `target` (`build::microkit_file`, named as `build` names it), then `dir/MANIFEST`;
/// the number of files written besides those two. The description is `description`, read
/// as `text`. Nothing is written when `refusals` has any (`check` reports them first).
/// Every file is written below `dir` without following a link (`crate::nofollow`): a link
/// standing where a copy or its directory goes is replaced.
pub fn copy(sys: &System, description: &Path, text: &str, target: Target, dir: &Path) -> io::Result<usize> {
    if let Some(first) = refusals(sys, description).first() {
        return Err(refused(first.message.clone()));
    }
    let mut files = loaded(sys);
    files.sort_by_key(|f| in_dir(&f.name));
    files.dedup_by(|a, b| a.name == b.name);
    let mut manifest = line(&sha256(text.as_bytes()), &absolute(description).display().to_string());
    // The Microkit tool reads this, not the description: made here from the very text
    // checked, it cannot be one `build` wrote from an earlier text.
    let microkit_name = crate::build::microkit_file_name(description);
    let microkit = crate::build::microkit_file(text, sys, target).map_err(refused)?;
    std::fs::create_dir_all(dir)?;
    let write = |name: &Path, bytes: &[u8]| crate::nofollow::write(dir, name, bytes, 0o755, 0o644);
    write(Path::new(&microkit_name), microkit.as_bytes())?;
    manifest.push_str(&line(&sha256(microkit.as_bytes()), &microkit_name));
    for f in &files {
        write(Path::new(&f.name), &f.bytes)?;
        let hash = sha256(&f.bytes);
        manifest.push_str(&line(&hash, &f.name));
        manifest.push_str(&line(&hash, &absolute(&f.file).display().to_string()));
    }
    write(Path::new(MANIFEST), manifest.as_bytes())?;
    Ok(files.len())
}

/// Every file `build` writes for the description `file`, read as `text` and checked as
/// `sys`, with its contents: the Microkit file, then (for aarch64) the IOMMU PD's policy and
/// each client's numbers, which the PDs are compiled against.
pub fn outputs(
    file: &std::path::Path,
    text: &str,
    sys: &System,
    target: Target,
) -> Result<Vec<(String, String)>, String> {
    let mut out = vec![(crate::build::microkit_file_name(file), crate::build::microkit_file(text, sys, target)?)];
    if target == Target::X86_64 {
        return Ok(out);
    }
    let shown = file.display().to_string();
    out.push(("iommu_policy.rs".to_string(), crate::build::policy_rust(sys, &shown)));
    for n in crate::numbers::numbers(sys) {
        out.push((format!("{}_iommu.h", n.pd), crate::numbers::c_header(&n, &shown)));
        out.push((format!("{}_iommu.rs", n.pd), crate::numbers::rust_module(&n, &shown)));
    }
    Ok(out)
}

/// The names of `outputs` that `dir` does not hold as they are (missing, or written from
/// another text): the PDs compiled against `dir` were not compiled from that text.
pub fn not_built_in(dir: &std::path::Path, outputs: &[(String, String)]) -> Vec<String> {
    outputs
        .iter()
        .filter(|(name, contents)| std::fs::read(dir.join(name)).ok().as_deref() != Some(contents.as_bytes()))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Take away `dir`'s manifest, if any (a `check` that refused), so that `verify` cannot
/// pass on programs an earlier `check` copied.
pub fn forget(dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(dir.join(MANIFEST)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A file of the manifest whose SHA-256 is not what `check` recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Its line in the manifest.
    pub line: usize,
    pub path: PathBuf,
    pub checked: String,
    /// Its SHA-256 now, or why it cannot be read.
    pub now: Result<String, String>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The description `check` read (the manifest's first line).
    pub description: PathBuf,
    /// How many files the manifest lists.
    pub files: usize,
    pub changed: Vec<Changed>,
    /// The Microkit file (the manifest's second line, relative to DIR).
    pub microkit: String,
    /// Each program, symbols or prefill file the Microkit file names that the manifest does
    /// not list (the Microkit tool would load it unchecked), as the Microkit file names it.
    pub unlisted: Vec<String>,
    /// Each file of DIR the manifest lists (the Microkit file, the copies) with the bytes
    /// read and hashed: what a private copy for the Microkit tool is written from (`stage`).
    pub copies: Vec<(String, Vec<u8>)>,
}

/// Every file `dir/MANIFEST` lists (relative paths in `dir`) whose SHA-256 differs from the
/// one recorded, or that cannot be read; and every program the Microkit file (its second
/// line) names that it does not list. An error if the manifest cannot be read, lists
/// nothing, has a line `copy` does not write, or its second line is not a Microkit file.
/// What lies in `dir` is read without following a link below it (`crate::nofollow`): a
/// copy reached through one is "cannot be read", as the copy `check` wrote is not there.
pub fn verify(dir: &Path) -> io::Result<Verified> {
    let shown = dir.join(MANIFEST);
    let shown = shown.display();
    let manifest = String::from_utf8(crate::nofollow::read(dir, Path::new(MANIFEST))?)
        .map_err(|_| refused(format!("{shown} is not text")))?;
    let mut changed = Vec::new();
    let mut listed = Vec::new();
    let mut copies = Vec::new();
    let mut description = None;
    let mut files = 0;
    for (i, text) in manifest.lines().enumerate() {
        let (checked, name) =
            parse_line(text).ok_or_else(|| refused(format!("{shown}:{}: not a line check writes", i + 1)))?;
        let path = dir.join(&name);
        let relative = Path::new(&name).is_relative();
        let bytes = if relative { crate::nofollow::read(dir, Path::new(&name)) } else { crate::regular::read(&path) };
        let now = bytes.as_ref().map(|b| sha256(b)).map_err(|e| e.to_string());
        if now.as_deref() != Ok(checked) {
            changed.push(Changed { line: i + 1, path: path.clone(), checked: checked.to_string(), now });
        } else if let (true, Ok(bytes)) = (relative && i > 0, bytes) {
            copies.push((name.clone(), bytes));
        }
        description.get_or_insert(path);
        listed.push(name);
        files += 1;
    }
    let description = description.ok_or_else(|| refused(format!("{shown} lists nothing")))?;
    // What the Microkit tool will load is what the Microkit file names: each must be listed.
    let microkit =
        listed.get(1).filter(|name| name.ends_with(".system") && Path::new(name).is_relative()).cloned().ok_or_else(
            || refused("its second line is not the Microkit file check writes (NAME.system)".to_string()),
        )?;
    let mut unlisted = Vec::new();
    if let Some((_, bytes)) = copies.iter().find(|(name, _)| *name == microkit) {
        let (sys, _) = crate::parse::parse(&String::from_utf8_lossy(bytes));
        for (name, ..) in named(&sys) {
            let copied = listed[2..].iter().any(|l| Path::new(l).is_relative() && in_dir(l) == in_dir(name));
            if !copied && !unlisted.iter().any(|u| u == name) {
                unlisted.push(name.to_string());
            }
        }
    }
    Ok(Verified { description, files, changed, microkit, unlisted, copies })
}

/// A program's entry point as `pds/iommu/build.rs` (`restart_entries`) reads it: an ELF64
/// little-endian file's `e_entry`, at byte 24; `None` for anything else, which that build
/// skips.
fn elf_entry(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..32)?;
    (header[..4] == *b"\x7fELF" && header[4] == 2 && header[5] == 1)
        .then(|| u64::from_le_bytes(header[24..32].try_into().expect("8 bytes")))
}

/// `check --built DIR`: the IOMMU PD restarts a crashed client at the entry point of the
/// program of its name in DIR (its build reads every `.elf` there, `IOMMU_SYSTEM`'s
/// directory), and the Microkit tool loads the program `check` read, the first the search
/// path holds. Where DIR's file of that name has another entry point (another program
/// of one name earlier in the search path, or DIR's rebuilt), a restart would start the
/// client's program at another program's entry.
pub fn restart_entries_differ(built: &Path, sys: &System) -> Vec<Problem> {
    let mut out = Vec::new();
    for pd in sys.clients() {
        let Some(program) = pd.program.as_ref().filter(|pr| pr.path.ends_with(".elf")) else { continue };
        let Some(read) = program.files.first() else { continue };
        let Some(restart) = std::fs::read(built.join(&program.path)).ok().and_then(|b| elf_entry(&b)) else { continue };
        if elf_entry(&read.bytes) != Some(restart) {
            out.push(p(
                program.line,
                "program_image",
                format!(
                    "the IOMMU PD would restart client `{}` at {restart:#x}, the entry of `{}`, and the program checked and loaded is `{}`, whose entry is elsewhere: a restart would run another program's entry",
                    pd.name,
                    built.join(&program.path).display(),
                    read.file.display()
                ),
                "remove or rename one of the two files of that name, so that the program loaded and the one the IOMMU PD restarts from are one",
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-4's examples (NIST, "SHA256.pdf", one block and two blocks), and the empty
    /// string, as `sha256sum` prints it.
    #[test]
    fn sha256_is_the_standards() {
        assert_eq!(sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(sha256(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn manifest_lines_read_back_as_written() {
        let h = sha256(b"x");
        for path in ["prog.elf", "a/b c.elf", "odd\\name", "two\nlines", "/abs/path.elf", "cr.elf\r", "a\rb"] {
            let written = line(&h, path);
            assert_eq!(written.matches('\n').count(), 1, "{written:?}");
            assert!(!written.contains('\r'), "{written:?}");
            assert_eq!(parse_line(written.trim_end_matches('\n')), Some((h.as_str(), path.to_string())), "{path:?}");
        }
        assert_eq!(parse_line("not a line"), None);
        assert_eq!(parse_line(&format!("{}  x", &h[1..])), None);
    }
}
