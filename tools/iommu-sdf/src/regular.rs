//! Files that may be hostile read only if they are regular files. A FIFO in the search
//! path (or in DIR) where a program goes made `std::fs::read` wait forever for a writer
//! (open(2): opening a FIFO for reading blocks unless `O_NONBLOCK`), and a link to a
//! device such as `/dev/zero` was read until memory ran out. Each is opened without
//! blocking and its type checked on the open descriptor (`fstat`, so the file checked is
//! the file read) before a byte is read. The Microkit tool would load neither.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{fstat, openat, FileType, Mode, OFlags, CWD};

/// How such a file is opened for reading: without waiting for a FIFO's writer, and not
/// inherited by a command `verify` runs. `O_NONBLOCK` changes nothing for a regular file.
pub fn flags() -> OFlags {
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC
}

/// The bytes of the regular file `path` (links followed, as the Microkit tool follows
/// them in its search path); an error, before anything is read, for any other file.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let fd = openat(CWD, path, flags(), Mode::empty())?;
    read_opened(fd, &path.display().to_string())
}

/// The bytes of the file open as `fd` (`shown` names it in the error), if it is a regular
/// file.
pub fn read_opened(fd: OwnedFd, shown: &str) -> io::Result<Vec<u8>> {
    let kind = FileType::from_raw_mode(fstat(&fd)?.st_mode);
    if kind != FileType::RegularFile {
        return Err(io::Error::other(format!("{shown} is not a regular file (it is a {})", name(kind))));
    }
    let mut bytes = Vec::new();
    File::from(fd).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn name(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "FIFO",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Socket => "socket",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        _ => "file of another type",
    }
}
