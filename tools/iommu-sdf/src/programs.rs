//! The programs the PDs run (`<program_image path>`), read as the Microkit tool reads them:
//! the file is found in the search path (`--search-path`, the first directory that has it,
//! Microkit's `get_full_path`), and its PT_LOAD segments are mapped into the PD at the
//! addresses the ELF gives. A map over one is refused by the Microkit tool
//! (tool/microkit/src/capdl/builder.rs: "will overlap with an ELF segment", naming no line),
//! so `check` refuses it first, at the map (`rules::platform`). The program must also be one
//! the Microkit tool can load (`load`) and patch: its symbol table is kept, and
//! `rules::programs` holds every symbol the tool writes to it.
//!
//! Without the programs (no search path given) nothing is read, and where a program lies is
//! not known (its linker's choice): `check` then refuses each `<program_image>` (`unread`),
//! and `build` and `report` say what is unproven (`unproven`). A program linked as Microkit
//! links them starts at `LINK_BASE` and is loaded into RAM, so it lies inside `window`
//! (`rules::queues` keeps a queue's `vaddr` out of it even so, an early refusal).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::elf::{FileHeader64, EM_AARCH64, EM_X86_64, PT_LOAD, SHT_SYMTAB};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::read::SectionIndex;
use object::LittleEndian;

use crate::board::{Board, Target};
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

/// A program as the Microkit tool loads it: its segments (`segments`), its loadable
/// segments as the ELF gives them, `(vaddr, memsz)`, and its symbols by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub segments: Vec<(u64, u64)>,
    pub loads: Vec<(u64, u64)>,
    pub symbols: HashMap<String, Symbol>,
}

/// The machine a program for `target` is built for (`e_machine`; System V gABI, "ELF
/// Header", and the processor supplements).
pub fn machine(target: Target) -> (u16, &'static str) {
    match target {
        Target::Arm => (EM_AARCH64, "AArch64 (EM_AARCH64, 183)"),
        Target::X86_64 => (EM_X86_64, "x86-64 (EM_X86_64, 62)"),
    }
}

/// Why the Microkit tool cannot load a program, and what would fix that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unloadable {
    pub why: String,
    pub fix: String,
}

impl Unloadable {
    fn new(why: impl Into<String>, fix: impl Into<String>) -> Unloadable {
        Unloadable { why: why.into(), fix: fix.into() }
    }
}

/// For a file that is no ELF64 little-endian program at all (or whose symbols cannot be
/// read): the program's path is wrong, or it is not the file built.
const FIX_NOT_A_PROGRAM: &str =
    "give the path of the PD's ELF program, as built for the board (a 64-bit little-endian ELF executable linked with libmicrokit, not stripped)";

/// `bytes` as the Microkit tool loads a PD's program (tool/microkit/src/elf.rs,
/// `ElfFileReader`): an ELF64 little-endian file (`segments`) with program headers ("has
/// no program headers") and a symbol table ("unable to find symbol table section"; the
/// tool takes the last section of type SHT_SYMTAB, and every symbol in it, local or
/// global, by name), whose loadable segments share no page, built for `target`'s
/// processor (the Microkit tool does not look at `e_machine`: the SDK's tool builds an
/// image of an x86-64 program for qemu_virt_aarch64, whose PD would run none of it). Its
/// symbols come from `symbols_from` when given (`path_for_symbols`).
pub fn load(bytes: &[u8], symbols_from: Option<&[u8]>, target: Target) -> Result<Loaded, Unloadable> {
    let header = FileHeader64::<LittleEndian>::parse(bytes)
        .map_err(|e| Unloadable::new(format!("not a 64-bit ELF file: {e}"), FIX_NOT_A_PROGRAM))?;
    let endian = header
        .endian()
        .map_err(|e| Unloadable::new(format!("not a little-endian ELF file: {e}"), FIX_NOT_A_PROGRAM))?;
    // An ELF header the reader takes, and segments it cannot: a damaged file.
    let segments = segments(bytes).map_err(|why| {
        Unloadable::new(why, "rebuild the program: a segment's file bytes must lie inside the file and be no more than its size in memory (System V gABI, \"Program Header\")")
    })?;
    if header.e_phnum(endian) == 0 {
        return Err(Unloadable::new(
            "it has no program headers (e_phnum 0): nothing to load",
            "link the program as an executable with its loadable segments (as Microkit's microkit.ld does), not as an object file",
        ));
    }
    let (wanted, name) = machine(target);
    let found = header.e_machine(endian);
    if found != wanted {
        return Err(Unloadable::new(
            format!("it is built for machine {found} (e_machine), not {name}: the PD could run none of it"),
            format!("build the program for {name}, the board's processor"),
        ));
    }
    let loads: Vec<(u64, u64)> = header
        .program_headers(endian, bytes)
        .map_err(|e| Unloadable::new(format!("its program headers: {e}"), FIX_NOT_A_PROGRAM))?
        .iter()
        .filter(|ph| ph.p_type(endian) == PT_LOAD)
        .map(|ph| (ph.p_vaddr(endian), ph.p_memsz(endian)))
        .collect();
    // The Microkit tool gives each page of a (non-empty) segment a frame of its own and
    // maps it (capdl/builder.rs, `add_elf_to_spec`): a page two segments share would be
    // mapped twice, which it cannot ("already filled": it panics).
    let mut pages: Vec<(u128, u128, u64)> = loads
        .iter()
        .filter(|&&(_, memsz)| memsz > 0)
        .map(|&(vaddr, memsz)| {
            let end = (u128::from(vaddr) + u128::from(memsz)).next_multiple_of(u128::from(PAGE));
            (u128::from(vaddr / PAGE * PAGE), end, vaddr)
        })
        .collect();
    pages.sort_unstable();
    if let Some(w) = pages.windows(2).find(|w| w[1].0 < w[0].1) {
        return Err(Unloadable::new(
            format!(
                "its loadable segments at {:#x} and {:#x} share the page at {:#x}: the Microkit tool maps each segment's pages separately and cannot map one twice",
                w[0].2, w[1].2, w[1].0
            ),
            "link the program with each loadable segment starting on a page of its own (Microkit's microkit.ld aligns them to 4 KiB)",
        ));
    }
    let symbols = symbols(symbols_from.unwrap_or(bytes))?;
    Ok(Loaded { segments, loads, symbols })
}

/// The symbol table of the ELF64 little-endian file `bytes`, by name, as the Microkit tool
/// reads it: the last SHT_SYMTAB section, its names UTF-8; a name given twice is marked.
fn symbols(bytes: &[u8]) -> Result<HashMap<String, Symbol>, Unloadable> {
    let damaged = |why: String| Unloadable::new(why, FIX_NOT_A_PROGRAM);
    let header =
        FileHeader64::<LittleEndian>::parse(bytes).map_err(|e| damaged(format!("not a 64-bit ELF file: {e}")))?;
    let endian = header.endian().map_err(|e| damaged(format!("not a little-endian ELF file: {e}")))?;
    let sections = header.sections(endian, bytes).map_err(|e| damaged(format!("its section headers: {e}")))?;
    let last = sections.iter().enumerate().filter(|(_, s)| s.sh_type(endian) == SHT_SYMTAB).map(|(i, _)| i).next_back();
    let Some(index) = last else {
        return Err(Unloadable::new(
            "it has no symbol table (no SHT_SYMTAB section): the Microkit tool patches its symbols (microkit_name, its setvars), and a stripped program has none",
            "do not strip the program, or give its unstripped copy as path_for_symbols",
        ));
    };
    let table = sections
        .symbol_table_by_index(endian, bytes, SectionIndex(index))
        .map_err(|e| damaged(format!("its symbol table: {e}")))?;
    let mut out: HashMap<String, Symbol> = HashMap::new();
    for sym in table.symbols() {
        let name = table.symbol_name(endian, sym).map_err(|e| damaged(format!("a symbol's name: {e}")))?;
        let name = std::str::from_utf8(name).map_err(|e| damaged(format!("a symbol's name is not UTF-8: {e}")))?;
        let symbol = Symbol { value: sym.st_value.get(endian), size: sym.st_size.get(endian), twice: false };
        out.entry(name.to_string()).and_modify(|s| s.twice = true).or_insert(symbol);
    }
    Ok(out)
}

/// The files read so far, by the path the description gives (`.` components left out):
/// each is read once however many PDs or regions name it, and however they write it
/// (`x.elf`, `./x.elf`), so every PD is checked against the bytes its copy holds (two reads
/// of a file rebuilt between them would give two PDs different bytes and one copy).
#[derive(Default)]
struct Reads(HashMap<PathBuf, LoadedFile>);

impl Reads {
    /// `name` as found in `search` (its file, and its bytes), read if not read before; `None`
    /// if no search directory has it.
    fn get(&mut self, name: &str, search: &[PathBuf]) -> Option<Result<LoadedFile, String>> {
        let key: PathBuf = Path::new(name).components().filter(|c| *c != std::path::Component::CurDir).collect();
        if let Some(f) = self.0.get(&key) {
            return Some(Ok(LoadedFile { name: name.to_string(), ..f.clone() }));
        }
        let file = find(name, search)?;
        Some(crate::regular::read(&file).map_err(|e| e.to_string()).map(|bytes| {
            let f = LoadedFile { name: name.to_string(), file, bytes: bytes.into() };
            self.0.insert(key, f.clone());
            f
        }))
    }
}

/// Read every PD's program from `search` (nothing, with no search path), recording its
/// segments and symbols in the model; a program that cannot be found or read as the
/// Microkit tool loads programs for `target` is a problem at its `<program_image>`, as
/// the Microkit tool would refuse it. Each region's `prefill_path` is read too (the
/// Microkit tool finds it as it finds programs, `get_full_path` over the search path, and
/// loads it into the region: it is part of the image), a problem at the region when no
/// search directory has it or it cannot be read.
pub fn read(sys: &mut System, search: &[PathBuf], target: Target) -> Vec<Problem> {
    let mut out = Vec::new();
    if search.is_empty() {
        return out;
    }
    let dirs = search.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    let mut reads = Reads::default();
    for pd in &mut sys.pds {
        let Some(program) = pd.program.as_mut() else { continue };
        let missing = |path: &str, what: &str| {
            p(
                program.line,
                "program_image",
                format!("`{}`'s {what} `{path}` is in none of the search directories ({dirs})", pd.name),
                "build the program first, or give the --search-path that holds it (as the Microkit tool is given)",
            )
        };
        let Some(main) = reads.get(&program.path, search) else {
            out.push(missing(&program.path, "program"));
            continue;
        };
        let symbols_file = match &program.symbols_path {
            Some(path) => match reads.get(path, search) {
                Some(f) => Some(f),
                None => {
                    out.push(missing(path, "program for symbols (path_for_symbols)"));
                    continue;
                }
            },
            None => None,
        };
        let file = main.as_ref().map_or_else(|_| find(&program.path, search).unwrap_or_default(), |f| f.file.clone());
        let loaded = main.map_err(|e| Unloadable::new(e, FIX_NOT_A_PROGRAM)).and_then(|main| {
            let from = symbols_file.clone().transpose().map_err(|e| Unloadable::new(e, FIX_NOT_A_PROGRAM))?;
            let l = load(&main.bytes, from.as_ref().map(|f| &f.bytes[..]), target)?;
            Ok((l, main, from))
        });
        match loaded {
            Ok((l, main, from)) => {
                program.segments = Some(l.segments);
                program.loads = l.loads;
                program.symbols = Some(l.symbols);
                program.files = std::iter::once(main).chain(from).collect();
            }
            Err(e) => out.push(p(
                program.line,
                "program_image",
                format!(
                    "`{}`'s program {} cannot be read as the Microkit tool loads programs: {}",
                    pd.name,
                    match &symbols_file {
                        Some(Ok(s)) => format!("{} (symbols from {})", file.display(), s.file.display()),
                        _ => file.display().to_string(),
                    },
                    e.why
                ),
                e.fix,
            )),
        }
    }
    for r in &mut sys.regions {
        let Some(path) = &r.prefill_path else { continue };
        match reads.get(path, search) {
            // The Microkit tool refuses a file larger than the size the region is given.
            Some(Ok(f)) if r.size_given && f.bytes.len() as u64 > r.size => out.push(p(
                r.line,
                "memory_region",
                format!(
                    "`{}`'s prefill file `{path}` is {:#x} bytes, more than the region's {:#x}: the Microkit tool refuses it",
                    r.name,
                    f.bytes.len(),
                    r.size
                ),
                "give the region a size of at least the file's, in whole pages (or leave size out to take the file's)",
            )),
            Some(Ok(f)) => r.prefill = Some(f),
            Some(Err(e)) => out.push(p(
                r.line,
                "memory_region",
                format!("`{}`'s prefill file `{path}` cannot be read: {e}", r.name),
                "give prefill_path a readable file in the search path",
            )),
            None => out.push(p(
                r.line,
                "memory_region",
                format!("`{}`'s prefill file `{path}` is in none of the search directories ({dirs})", r.name),
                "make the file first, or give the --search-path that holds it (as the Microkit tool is given)",
            )),
        }
    }
    out
}

/// The PDs whose programs were not read (no search path): without a program, where it lies
/// is the linker's choice, not the description's (Microkit's `microkit.ld` links at
/// `LINK_BASE`, but any address is a valid link), and whether it has the symbols the
/// Microkit tool patches is unknown. So nothing says a map (the description's or one
/// `build` writes) is clear of it, or that the Microkit tool can patch it.
fn unread_programs(sys: &System) -> impl Iterator<Item = (&ProtectionDomain, &Program)> {
    sys.pds.iter().filter_map(|pd| Some((pd, pd.program.as_ref().filter(|pr| pr.segments.is_none())?)))
}

/// For `check` given no search path: each program not read, refused at its
/// `<program_image>`, since the description's acceptance depends on it (`unread_programs`).
pub fn unread(sys: &System) -> Vec<Problem> {
    unread_programs(sys)
        .map(|(pd, program)| {
            p(
                program.line,
                "program_image",
                format!(
                    "`{}`'s program `{}` was not read (no --search-path): that its {} map(s) (those build writes included) lie clear of its loadable segments, and that it has every symbol the Microkit tool patches, is unproven (where a program lies is its linker's choice, not the description's)",
                    pd.name,
                    program.path,
                    pd.maps.len()
                ),
                "build the programs, then check with them: --search-path DIR for each directory the Microkit tool will search (images/Makefile does this before every Microkit tool run); build and report need no programs",
            )
        })
        .collect()
}

/// For `build` and `report` given no search path (they run before the programs exist):
/// what is unproven until `check --search-path` reads them, or `None` if nothing is.
pub fn unproven(sys: &System, file: &str) -> Option<String> {
    // Escaped: a path may hold a line feed (XML allows `&#10;` in an attribute), which
    // printed raw would end the line and start one the description chose.
    let names: Vec<String> = unread_programs(sys).map(|(_, pr)| crate::problem::escaped(&pr.path)).collect();
    if names.is_empty() {
        return None;
    }
    let mut names = names;
    names.sort_unstable();
    names.dedup();
    Some(format!(
        "{file}: unproven: the programs ({}) were not read, so no map is proved clear of them and no symbol the Microkit tool patches is proved present; run `iommu-sdf check {file} --search-path DIR` on the programs built, before the Microkit tool",
        names.join(", ")
    ))
}
