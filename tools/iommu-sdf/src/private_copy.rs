//! The Microkit tool run on a private copy of what `verify` read (`iommu-sdf verify DIR --
//! COMMAND...`): `verify` reads each file of DIR once, hashes those bytes, and writes the
//! same bytes into a directory it makes for this run (mode 0700, a fresh name: `mkdir`
//! fails on anything already there), each file read-only. The Microkit tool given that
//! directory reads what was hashed: a file of DIR changed after `verify` read it is not
//! what the tool reads, as it would be with DIR itself. The copy is hashed again once the
//! tool has run, so a change to it while the tool ran is seen unless it was put back.
//!
//! Where this stops: the private directory belongs to the user running the build, and a
//! process of that user (or root) can still write it (chmod first) between `verify`
//! writing it and the Microkit tool reading it; nothing a build tool can do without another
//! user or a sandbox closes that. The Microkit tool and its SDK are not verified.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::checked::sha256;

/// A directory `new` made and filled; removed when dropped.
#[derive(Debug)]
pub struct PrivateCopy {
    pub dir: PathBuf,
    /// Each file's name in it and SHA-256.
    hashes: Vec<(String, String)>,
}

impl PrivateCopy {
    /// A new directory beside `beside` (`beside.run-PID-N`), mode 0700, holding `copies`
    /// (name relative to it, bytes), each file mode 0400, written without following links
    /// (`crate::nofollow`).
    pub fn new(beside: &Path, copies: &[(String, Vec<u8>)]) -> io::Result<PrivateCopy> {
        let stem = beside.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checked".into());
        let parent = beside.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut n = 0u32;
        let dir = loop {
            let dir = parent.join(format!("{stem}.run-{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        };
        let copy = PrivateCopy { dir, hashes: copies.iter().map(|(n, b)| (n.clone(), sha256(b))).collect() };
        for (name, bytes) in copies {
            crate::nofollow::write(&copy.dir, Path::new(name), bytes, 0o700, 0o400)?;
        }
        Ok(copy)
    }

    /// The files whose bytes are not what `new` wrote (changed, or unreadable).
    pub fn changed(&self) -> Vec<String> {
        self.hashes
            .iter()
            .filter(|(name, hash)| {
                crate::nofollow::read(&self.dir, Path::new(name)).map(|b| sha256(&b)).ok().as_ref() != Some(hash)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
