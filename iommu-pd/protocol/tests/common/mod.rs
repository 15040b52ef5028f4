//! What the tests that run a project C file on the host share: building it with its
//! stand-ins and running it.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Build `sources` (paths from this crate's directory) with `includes` into a program named
/// after `name`, run it, and return its output lines. Each call builds its own binary: the
/// tests run in parallel.
pub fn run_c(name: &str, sources: &[&str], includes: &[&str]) -> Vec<String> {
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!("iommu-{name}-{}-{n}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut build = Command::new(&cc);
    build.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"]).arg(&out);
    for s in sources {
        build.arg(here.join(s));
    }
    for i in includes {
        build.arg("-I").arg(here.join(i));
    }
    let built = build.status().expect("a C compiler (cc) on the host");
    assert!(built.success(), "{sources:?} do not compile against the stand-ins");
    let run = Command::new(&out).output().unwrap();
    let _ = std::fs::remove_file(&out);
    assert!(run.status.success());
    String::from_utf8(run.stdout).unwrap().lines().map(str::to_string).collect()
}
