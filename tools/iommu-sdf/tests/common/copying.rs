//! What the tests of `check --copy-programs DIR` and `verify DIR` share: running
//! `iommu-sdf`, a fresh directory, a description with its programs built, and
//! `sha256sum --check` as a referee of the manifest.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::elf;

/// `iommu-sdf` run with `args`: exit status and standard output.
pub fn run(args: &[&Path]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

/// `sha256sum --check` (coreutils, essential on Debian) on DIR's manifest, in DIR (its
/// relative paths are DIR's): whether it passed, and what it printed.
pub fn sha256sum(dir: &Path) -> (bool, String) {
    let out = Command::new("sha256sum")
        .args(["--check", "--strict", "programs.sha256"])
        .current_dir(dir)
        .output()
        .expect("sha256sum (coreutils)");
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

/// A fresh directory for one test.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One test's files, in a fresh directory `base`: the description at `sdf`, the programs
/// it names built into `programs`, and `stage`, where `check --copy-programs` copies them.
pub struct Staged {
    pub base: PathBuf,
    pub sdf: PathBuf,
    pub programs: PathBuf,
    pub stage: PathBuf,
}

/// `text` written as `file` in a fresh directory `tag`, with the programs it names built.
pub fn staged(tag: &str, file: &str, text: &str) -> Staged {
    let base = scratch(tag);
    let sdf = base.join(file);
    std::fs::write(&sdf, text).unwrap();
    let (programs, stage) = (base.join("programs"), base.join("stage"));
    elf::fixture_programs(text, &programs, false).unwrap();
    Staged { base, sdf, programs, stage }
}

/// The test description `tests/sdf/NAME`.
pub fn sdf_text(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf").join(name)).unwrap()
}

/// `check` and `verify` run with `args`: the status and standard output and error together.
pub fn run_all(args: &[&Path]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_iommu-sdf")).args(args).output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `check SDF --search-path PROGRAMS --copy-programs STAGE`, then `more`: the status, and
/// standard output and error together.
pub fn check_copying(sdf: &Path, programs: &Path, stage: &Path, more: &[&Path]) -> (Option<i32>, String) {
    let args = [Path::new("check"), sdf, Path::new("--search-path"), programs, Path::new("--copy-programs"), stage];
    run_all(&[&args[..], more].concat())
}
