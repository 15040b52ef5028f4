//! Files under a directory reached without following a symbolic link anywhere below it:
//! each path component is opened with `openat(..., O_NOFOLLOW)` from the directory opened
//! before it (POSIX `openat`; Linux open(2): "If the trailing component ... is a symbolic
//! link, then the open fails, with the error ELOOP"). The copies `check --copy-programs`
//! writes and `verify` reads are in the directory they name, whatever links stand in it: a
//! link where a directory goes (`DIR/sub -> /elsewhere`) would otherwise have a copy
//! written, and read back, outside it. The directory itself is the caller's, opened as named.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{mkdirat, openat, unlinkat, AtFlags, Mode, OFlags, CWD};
use rustix::io::Errno;

/// `rel`'s components, each a plain name (`.` left out); an error for `..`, a root or a
/// prefix, which would lead out of the directory.
fn parts(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(io::Error::other(format!("`{}` leads out of the directory", rel.display()))),
        }
    }
    if out.is_empty() {
        return Err(io::Error::other(format!("`{}` names the directory itself", rel.display())));
    }
    Ok(out)
}

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(openat(CWD, root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// The directory `name` in `dir`, not through a link.
fn open_dir(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// Why `part` of `rel` in `root` was not opened: a link (or a file where a directory goes)
/// is named as such, so that the message says what to remove.
fn not_opened(root: &Path, rel: &Path, part: &OsStr, e: Errno) -> io::Error {
    if e == Errno::LOOP || e == Errno::NOTDIR {
        return io::Error::other(format!(
            "`{}` in {} (on the way to `{}`) is a symbolic link, or not what the path needs: links are not followed below {}",
            Path::new(part).display(),
            root.display(),
            rel.display(),
            root.display()
        ));
    }
    e.into()
}

/// The bytes of the regular file `rel` under `root`, no component below `root` a link.
pub fn read(root: &Path, rel: &Path) -> io::Result<Vec<u8>> {
    let parts = parts(rel)?;
    let (last, dirs) = parts.split_last().expect("parts is never empty");
    let mut dir = open_root(root)?;
    for part in dirs {
        dir = open_dir(&dir, part).map_err(|e| not_opened(root, rel, part, e))?;
    }
    // Not blocking: a FIFO standing there is refused, not waited on (`crate::regular`).
    let fd = openat(&dir, *last, crate::regular::flags() | OFlags::NOFOLLOW, Mode::empty())
        .map_err(|e| not_opened(root, rel, last, e))?;
    crate::regular::read_opened(fd, &format!("`{}` in {}", rel.display(), root.display()))
}

/// Write `bytes` as `rel` under `root` (which must exist), a new file with `file_mode`,
/// making the directories on the way with `dir_mode`. Whatever stands where a directory
/// goes and is not one (a link, to a directory or not, or a file) is removed and a
/// directory made; whatever stands where the file goes is removed, not written through.
pub fn write(root: &Path, rel: &Path, bytes: &[u8], dir_mode: u32, file_mode: u32) -> io::Result<()> {
    let parts = parts(rel)?;
    let (last, dirs) = parts.split_last().expect("parts is never empty");
    let mut dir = open_root(root)?;
    for part in dirs {
        dir = match open_dir(&dir, part) {
            Ok(d) => d,
            Err(e) if e == Errno::NOENT || e == Errno::LOOP || e == Errno::NOTDIR => {
                if e != Errno::NOENT {
                    unlinkat(&dir, *part, AtFlags::empty())?;
                }
                mkdirat(&dir, *part, Mode::from_raw_mode(dir_mode))?;
                open_dir(&dir, part)?
            }
            Err(e) => return Err(e.into()),
        };
    }
    match unlinkat(&dir, *last, AtFlags::empty()) {
        Ok(()) => {}
        Err(e) if e == Errno::NOENT => {}
        Err(e) => return Err(e.into()),
    }
    // O_EXCL with O_CREAT: fails on anything standing there, a link included (open(2)).
    let fd = openat(
        &dir,
        *last,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(file_mode),
    )?;
    File::from(fd).write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("iommu-sdf-nofollow-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A link to a directory outside, standing where a directory goes: written, it is
    /// replaced by a directory (the outside one left empty); read, it is refused.
    #[test]
    fn a_directory_link_is_neither_written_nor_read_through() {
        let base = scratch("dir-link");
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("x.elf"), b"outside").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        let e = read(&root, Path::new("sub/x.elf")).unwrap_err();
        assert!(e.to_string().contains("`sub` in"), "{e}");
        write(&root, Path::new("sub/x.elf"), b"copy", 0o755, 0o644).unwrap();
        assert_eq!(std::fs::read(outside.join("x.elf")).unwrap(), b"outside");
        assert!(std::fs::symlink_metadata(root.join("sub")).unwrap().is_dir());
        assert_eq!(read(&root, Path::new("sub/x.elf")).unwrap(), b"copy");
        assert_eq!(read(&root, Path::new("./sub/./x.elf")).unwrap(), b"copy");
        // A link as the file itself: refused when read.
        std::os::unix::fs::symlink(outside.join("x.elf"), root.join("y.elf")).unwrap();
        assert!(read(&root, Path::new("y.elf")).is_err());
        assert!(read(&root, Path::new("../outside/x.elf")).is_err());
    }
}
