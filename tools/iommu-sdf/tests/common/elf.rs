//! Test programs for the programs' rules: ELF64 little-endian aarch64 executables written
//! here to the ELF specification, read back by `object` (a decoder we did not write) in
//! `iommu_sdf::programs`. One writer for every test that needs a program: `tests/programs.rs`
//! and the failing descriptions under `tests/sdf/fail/` that name their programs
//! (`<!-- program PATH: CHANGE -->`, `fixture_programs`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub const PT_LOAD: u32 = 1;

/// A symbol of a test program: name, value, size.
pub type Sym = (&'static str, u64, u64);

/// Where `elf` puts the symbols the Microkit tool patches in every PD (libmicrokit's:
/// `microkit_name` 64 bytes, `microkit_passive` 1, the bit masks 8 each): in the first
/// page of every test program's first segment, at 0x200000.
pub const MICROKIT_SYMBOLS: [Sym; 6] = [
    ("microkit_name", 0x20_0000, 64),
    ("microkit_passive", 0x20_0040, 1),
    ("microkit_irqs", 0x20_0048, 8),
    ("microkit_notifications", 0x20_0050, 8),
    ("microkit_pps", 0x20_0058, 8),
    ("microkit_ioports", 0x20_0060, 8),
];

/// An ELF64 little-endian aarch64 executable with these program headers (type, vaddr,
/// memsz), no contents, and libmicrokit's symbols (`MICROKIT_SYMBOLS`).
pub fn elf(headers: &[(u32, u64, u64)]) -> Vec<u8> {
    elf_with(headers, &MICROKIT_SYMBOLS)
}

/// An ELF64 little-endian aarch64 executable with these program headers (type, vaddr,
/// memsz), no contents, and a symbol table of these symbols (name, value, size), laid out
/// as the ELF specification (System V gABI, "ELF Header", "Program Header", "Sections",
/// "Symbol Table") gives it: the header, the program headers, the string table, the
/// symbol table (its null symbol first), then three section headers (null, .symtab,
/// .strtab, unnamed). `object` reads it back, not code of ours.
pub fn elf_with(headers: &[(u32, u64, u64)], symbols: &[(&str, u64, u64)]) -> Vec<u8> {
    let phoff = 64u64;
    let mut strtab = vec![0u8];
    let mut names = Vec::new();
    for (name, _, _) in symbols {
        names.push(strtab.len() as u32);
        strtab.extend_from_slice(name.as_bytes());
        strtab.push(0);
    }
    let strtab_off = phoff + 56 * headers.len() as u64;
    let symtab_off = (strtab_off + strtab.len() as u64).next_multiple_of(8);
    let symtab_size = 24 * (symbols.len() as u64 + 1);
    let shoff = symtab_off + symtab_size;
    let mut b = Vec::new();
    b.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // ELFCLASS64, ELFDATA2LSB, EV_CURRENT
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    b.extend_from_slice(&183u16.to_le_bytes()); // e_machine: EM_AARCH64
    b.extend_from_slice(&1u32.to_le_bytes()); // e_version
    b.extend_from_slice(&0x20_0000u64.to_le_bytes()); // e_entry
    b.extend_from_slice(&phoff.to_le_bytes()); // e_phoff: right after this header
    b.extend_from_slice(&shoff.to_le_bytes()); // e_shoff: after the symbol table
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b.extend_from_slice(&(headers.len() as u16).to_le_bytes()); // e_phnum
    b.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    b.extend_from_slice(&3u16.to_le_bytes()); // e_shnum
    b.extend_from_slice(&2u16.to_le_bytes()); // e_shstrndx: .strtab, whose first name, "", names all three
    assert_eq!(b.len(), 64);
    for &(kind, vaddr, memsz) in headers {
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R X
        b.extend_from_slice(&0u64.to_le_bytes()); // p_offset
        b.extend_from_slice(&vaddr.to_le_bytes());
        b.extend_from_slice(&vaddr.to_le_bytes()); // p_paddr
        b.extend_from_slice(&0u64.to_le_bytes()); // p_filesz
        b.extend_from_slice(&memsz.to_le_bytes());
        b.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    }
    b.extend_from_slice(&strtab);
    b.resize(symtab_off as usize, 0);
    b.extend_from_slice(&[0; 24]); // the null symbol
    for (&(_, value, size), name) in symbols.iter().zip(names) {
        b.extend_from_slice(&name.to_le_bytes()); // st_name
        b.push(0x11); // st_info: STB_GLOBAL, STT_OBJECT
        b.push(0); // st_other
        b.extend_from_slice(&1u16.to_le_bytes()); // st_shndx: any defined section
        b.extend_from_slice(&value.to_le_bytes());
        b.extend_from_slice(&size.to_le_bytes());
    }
    // Section headers: name, type, flags, addr, offset, size, link, info, addralign, entsize.
    let section = |b: &mut Vec<u8>, kind: u32, offset: u64, size: u64, link: u32, entsize: u64| {
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&link.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes()); // sh_info: the first global symbol
        b.extend_from_slice(&8u64.to_le_bytes());
        b.extend_from_slice(&entsize.to_le_bytes());
    };
    section(&mut b, 0, 0, 0, 0, 0); // SHT_NULL
    section(&mut b, 2, symtab_off, symtab_size, 2, 24); // SHT_SYMTAB, its strings in section 2
    section(&mut b, 3, strtab_off, strtab.len() as u64, 0, 0); // SHT_STRTAB
    b
}

/// A program for every PD of `text`: `Program::for_description(text, 0)`, written.
pub fn program_for(text: &str) -> Vec<u8> {
    program_for_at(text, 0)
}

/// `program_for(text)` linked `offset` bytes above 0x200000 (its segments and symbols).
pub fn program_for_at(text: &str, offset: u64) -> Vec<u8> {
    Program::for_description(text, offset).bytes()
}

/// A test program before it is written: its program headers (type, vaddr, memsz), its
/// symbols (name, value, size), and the edits made to its bytes once written.
#[derive(Debug, Clone)]
pub struct Program {
    pub headers: Vec<(u32, u64, u64)>,
    pub symbols: Vec<(String, u64, u64)>,
    pub edits: Vec<Edit>,
}

/// A change to a written program's bytes, each one field of the ELF file (System V gABI).
#[derive(Debug, Clone, Copy)]
pub enum Edit {
    /// `e_machine`.
    Machine(u16),
    /// `EI_DATA`: ELFDATA2MSB, the rest left little-endian.
    BigEndian,
    /// `EI_CLASS`: ELFCLASS32, the rest left 64-bit.
    Class32,
    /// The symbol table's section type made SHT_PROGBITS, as if stripped.
    NoSymbolTable,
    /// The last program header's `p_filesz` and `p_offset`.
    FileBytes { filesz: u64, offset: u64 },
}

impl Program {
    /// What the programs of `text` are linked as (`offset` bytes above 0x200000):
    /// c-edu-driver.elf's two segments as Microkit links it (`readelf -l`: 0x200000 +
    /// 0x4a20, 0x205000 + 0x108), libmicrokit's symbols, and every symbol the Microkit
    /// tool patches in any PD of `text` (a word each, from 0x200100): its setvars, those of
    /// the plumbing and queues `build` writes, and the IOMMU PD's `iommu_paddr_*`, as
    /// stub-images.py gives the SDK's tool.
    pub fn for_description(text: &str, offset: u64) -> Program {
        let (sys, _) = iommu_sdf::check_text(text);
        let ends = sys.ends_by_pd();
        let mut names: Vec<String> = sys
            .pds
            .iter()
            .flat_map(|pd| pd.setvar_symbols(&ends).into_iter().map(|(s, ..)| s.to_string()).collect::<Vec<_>>())
            .chain(iommu_sdf::policy::dma_regions(&sys).iter().map(|r| iommu_sdf::model::paddr_symbol(&r.name)))
            .collect();
        names.sort();
        names.dedup();
        let mut symbols: Vec<(String, u64, u64)> =
            MICROKIT_SYMBOLS.iter().map(|&(n, v, s)| (n.to_string(), v + offset, s)).collect();
        symbols.extend(names.into_iter().enumerate().map(|(i, n)| (n, 0x20_0100 + 8 * i as u64 + offset, 8)));
        Program {
            headers: vec![(PT_LOAD, 0x20_0000 + offset, 0x4a20), (PT_LOAD, 0x20_5000 + offset, 0x108)],
            symbols,
            edits: Vec::new(),
        }
    }

    /// The program written (`elf_with`), then its edits made.
    pub fn bytes(&self) -> Vec<u8> {
        let symbols: Vec<(&str, u64, u64)> = self.symbols.iter().map(|(n, v, s)| (n.as_str(), *v, *s)).collect();
        let mut b = elf_with(&self.headers, &symbols);
        for edit in &self.edits {
            edit.apply(&mut b);
        }
        b
    }

    /// The symbol named `name` (its first, if it has two).
    fn symbol(&self, name: &str) -> Result<(u64, u64), String> {
        self.symbols.iter().find(|s| s.0 == name).map(|s| (s.1, s.2)).ok_or(format!("no symbol `{name}` to change"))
    }

    /// One change, as a failing description writes it after `<!-- program PATH: `:
    /// - `segment VADDR MEMSZ`: one more loadable segment;
    /// - `no-program-headers`: none at all;
    /// - `without NAME`: no symbol `NAME`;
    /// - `symbol NAME VALUE SIZE`: `NAME` there, that long (added, or moved);
    /// - `again NAME VALUE SIZE`: a second symbol `NAME`;
    /// - `alias NAME OTHER`: `NAME` at `OTHER`'s bytes (added, or moved);
    /// - `machine N`, `big-endian`, `elf32`, `no-symbol-table`, `file-bytes FILESZ OFFSET`:
    ///   the `Edit`s.
    ///
    /// (`absent` and `not-an-elf` are the file's, `fixture_programs`.)
    pub fn change(&mut self, change: &str) -> Result<(), String> {
        let words: Vec<&str> = change.split_whitespace().collect();
        let num = |i: usize| -> Result<u64, String> {
            let w = words.get(i).ok_or(format!("`{change}`: too few words"))?;
            iommu_sdf::parse::parse_number(w).ok_or(format!("`{change}`: `{w}` is no number"))
        };
        let name = |i: usize| words.get(i).map(|w| w.to_string()).ok_or(format!("`{change}`: too few words"));
        let set = |symbols: &mut Vec<(String, u64, u64)>, sym: (String, u64, u64)| {
            match symbols.iter_mut().find(|s| s.0 == sym.0) {
                Some(s) => *s = sym,
                None => symbols.push(sym),
            };
        };
        match words.first().copied() {
            Some("segment") => self.headers.push((PT_LOAD, num(1)?, num(2)?)),
            Some("no-program-headers") => self.headers.clear(),
            Some("without") => {
                let n = name(1)?;
                self.symbols.retain(|s| s.0 != n);
            }
            Some("symbol") => set(&mut self.symbols, (name(1)?, num(2)?, num(3)?)),
            Some("again") => self.symbols.push((name(1)?, num(2)?, num(3)?)),
            Some("alias") => {
                let (value, size) = self.symbol(&name(2)?)?;
                set(&mut self.symbols, (name(1)?, value, size));
            }
            Some("machine") => self.edits.push(Edit::Machine(num(1)? as u16)),
            Some("big-endian") => self.edits.push(Edit::BigEndian),
            Some("elf32") => self.edits.push(Edit::Class32),
            Some("no-symbol-table") => self.edits.push(Edit::NoSymbolTable),
            Some("file-bytes") => self.edits.push(Edit::FileBytes { filesz: num(1)?, offset: num(2)? }),
            _ => return Err(format!("`{change}`: no such change")),
        }
        Ok(())
    }
}

impl Edit {
    pub fn apply(self, b: &mut [u8]) {
        let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
        let shoff = u64::from_le_bytes(b[40..48].try_into().unwrap()) as usize;
        match self {
            Edit::Machine(m) => b[18..20].copy_from_slice(&m.to_le_bytes()),
            Edit::BigEndian => b[5] = 2,
            Edit::Class32 => b[4] = 1,
            // Section 1 (`elf_with`'s .symtab): its sh_type, 4 bytes into the header.
            Edit::NoSymbolTable => b[shoff + 64 + 4..shoff + 64 + 8].copy_from_slice(&1u32.to_le_bytes()),
            Edit::FileBytes { filesz, offset } => {
                let phnum = usize::from(u16::from_le_bytes([b[56], b[57]]));
                let ph = phoff + 56 * phnum.saturating_sub(1);
                b[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
                b[ph + 32..ph + 40].copy_from_slice(&filesz.to_le_bytes());
            }
        }
    }
}

/// Write into `dir` the programs a failing description names: every `<program_image>`
/// path of `text` (and its `path_for_symbols`) gets `Program::for_description(text, 0)`
/// (and every `prefill_path` 256 bytes of 0xa5),
/// changed as each `<!-- program PATH: CHANGE -->` line says when `spoilt` (in the
/// order given; `absent`: not written; `not-an-elf`: a shell script instead; `bytes 0xN`:
/// N bytes of 0xa5), unchanged
/// when not; or why one cannot be made.
pub fn fixture_programs(text: &str, dir: &Path, spoilt: bool) -> Result<(), String> {
    let changes: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("<!-- program ")?.strip_suffix(" -->")?.split_once(": "))
        .collect();
    let (sys, _) = iommu_sdf::check_text(text);
    let prefills: Vec<&str> = sys.regions.iter().filter_map(|r| r.prefill_path.as_deref()).collect();
    let mut paths: Vec<&str> = sys
        .pds
        .iter()
        .filter_map(|pd| pd.program.as_ref())
        .flat_map(|p| std::iter::once(p.path.as_str()).chain(p.symbols_path.as_deref()))
        .chain(prefills.iter().copied())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    if let Some((path, _)) = changes.iter().find(|(path, _)| !paths.contains(path)) {
        return Err(format!("a change to `{path}`, which the description does not name"));
    }
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    for path in paths {
        let mut program = Program::for_description(text, 0);
        let mut bytes = None;
        let mut absent = false;
        for &(_, change) in changes.iter().filter(|(p, _)| *p == path && spoilt) {
            match change {
                "absent" => absent = true,
                "not-an-elf" => bytes = Some(b"#!/bin/sh\n".to_vec()),
                // A prefill of that many bytes (hex), for one larger than its region.
                _ if change.starts_with("bytes 0x") => {
                    let n = usize::from_str_radix(&change["bytes 0x".len()..], 16).map_err(|e| e.to_string())?;
                    bytes = Some(vec![0xa5; n]);
                }
                _ => program.change(change)?,
            }
        }
        let file = dir.join(path);
        // An earlier run's file would stand in for an `absent` one: none may be left.
        let _ = std::fs::remove_file(&file);
        if !absent {
            std::fs::create_dir_all(file.parent().unwrap()).map_err(|e| e.to_string())?;
            // A prefill is data, not a program: one page's worth of a pattern.
            let made = || if prefills.contains(&path) { vec![0xa5; 0x100] } else { program.bytes() };
            std::fs::write(&file, bytes.unwrap_or_else(made)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A directory holding, under every program path `text` names, `program_for(text)`: the
/// programs `check --search-path` reads.
pub fn programs_dir(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iommu-sdf-elf-{tag}-{}", std::process::id()));
    fixture_programs(text, &dir, false).unwrap();
    dir
}
