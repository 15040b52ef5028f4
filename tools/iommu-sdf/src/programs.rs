//! The programs the PDs run (`<program_image path>`), read as the Microkit tool reads them:
//! the file is found in the search path (`--search-path`, the first directory that has it,
//! Microkit's `get_full_path`), and its PT_LOAD segments are mapped into the PD at the
//! addresses the ELF gives. A map over one is refused by the Microkit tool
//! (tool/microkit/src/capdl/builder.rs: "will overlap with an ELF segment", naming no line),
//! so `check` refuses it first, at the map (`rules::platform`).
//!
//! Without the programs (no search path given) nothing is read, and where a program lies is
//! not known: a program linked as Microkit links them starts at `LINK_BASE` and is loaded
//! into RAM, so it lies inside `window` (`rules::queues` keeps a queue's `vaddr` out of it).

use std::path::{Path, PathBuf};

use object::elf::{FileHeader64, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};

/// Where Microkit's linker script (`microkit.ld`) and rust-lld's default for aarch64 put a
/// program's first segment.
pub const LINK_BASE: u64 = 0x20_0000;

/// Every address a program linked at `LINK_BASE` may cover on `board`: its segments are
/// loaded into RAM frames, so together they are smaller than the board's RAM (or, where this
/// tool does not know the RAM, its physical address space).
pub fn window(board: &Board) -> (u64, u64) {
    let ram: u128 = board.ram.iter().map(|&(_, size)| u128::from(size)).sum();
    let ram = if ram == 0 { board.pa_end() } else { ram };
    (0, u64::try_from(u128::from(LINK_BASE) + ram).unwrap_or(u64::MAX))
}

/// The loadable segments of the ELF64 file `bytes`, each `[start, end)` as the Microkit tool
/// places and checks it: from its first page (the frames it maps start there) to the end
/// of the later of `vaddr + round_up(memsz)` (the range it checks maps against) and the page
/// holding its last byte. An empty segment maps nothing but is `vaddr..vaddr` exactly: the
/// Microkit tool's overlap test (`a.start < b.end && b.start < a.end`) still refuses a map
/// with `vaddr` strictly inside, and `rules::platform`'s same test does too.
pub fn segments(bytes: &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let header = FileHeader64::<LittleEndian>::parse(bytes).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = header.endian().map_err(|e| format!("not a little-endian ELF file: {e}"))?;
    let headers = header.program_headers(endian, bytes).map_err(|e| format!("its program headers: {e}"))?;
    let mut out = Vec::new();
    for ph in headers.iter().filter(|ph| ph.p_type(endian) == PT_LOAD) {
        let (vaddr, memsz, filesz) = (ph.p_vaddr(endian), ph.p_memsz(endian), ph.p_filesz(endian));
        // Not an ELF file the Microkit tool can load (it panics copying the bytes; System V
        // gABI, "Program Header": the bytes are p_filesz at p_offset, p_filesz <= p_memsz).
        if ph.data(endian, bytes).is_err() {
            return Err(format!(
                "its loadable segment at {vaddr:#x} has its {filesz:#x} bytes at file offset {:#x}, past the file's end ({:#x} bytes)",
                ph.p_offset(endian),
                bytes.len()
            ));
        }
        if filesz > memsz {
            return Err(format!(
                "its loadable segment at {vaddr:#x} is larger in the file ({filesz:#x} bytes) than in memory ({memsz:#x})"
            ));
        }
        if memsz == 0 {
            out.push((vaddr, vaddr));
            continue;
        }
        let checked = u128::from(vaddr) + u128::from(memsz).next_multiple_of(u128::from(PAGE));
        let mapped = (u128::from(vaddr) + u128::from(memsz)).next_multiple_of(u128::from(PAGE));
        let end = u64::try_from(checked.max(mapped)).unwrap_or(u64::MAX);
        out.push((vaddr / PAGE * PAGE, end));
    }
    Ok(out)
}

/// The file the Microkit tool would load for `path`: the first search directory that has it.
pub fn find(path: &str, search: &[PathBuf]) -> Option<PathBuf> {
    search.iter().map(|dir| dir.join(Path::new(path))).find(|f| f.exists())
}

/// Read every PD's program from `search` (nothing, with no search path), recording its
/// segments in the model; a program that cannot be found or read is a problem at its
/// `<program_image>`, as the Microkit tool would refuse it.
pub fn read(sys: &mut System, search: &[PathBuf]) -> Vec<Problem> {
    let mut out = Vec::new();
    if search.is_empty() {
        return out;
    }
    let dirs = search.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    for pd in &mut sys.pds {
        let Some(program) = pd.program.as_mut() else { continue };
        let Some(file) = find(&program.path, search) else {
            out.push(p(
                program.line,
                "program_image",
                format!("`{}`'s program `{}` is in none of the search directories ({dirs})", pd.name, program.path),
                "build the program first, or give the --search-path that holds it (as the Microkit tool is given)",
            ));
            continue;
        };
        match std::fs::read(&file).map_err(|e| e.to_string()).and_then(|bytes| segments(&bytes)) {
            Ok(segments) => program.segments = Some(segments),
            Err(e) => out.push(p(
                program.line,
                "program_image",
                format!(
                    "`{}`'s program {} cannot be read as the Microkit tool loads programs: {e}",
                    pd.name,
                    file.display()
                ),
                "give the path of the PD's ELF program, as built for the board",
            )),
        }
    }
    out
}
