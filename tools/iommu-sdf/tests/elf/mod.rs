//! Test programs for the programs' rules: ELF64 little-endian aarch64 executables written
//! here to the ELF specification, read back by `object` (a decoder we did not write) in
//! `iommu_sdf::programs`.

#![allow(dead_code)]

use std::path::PathBuf;

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

/// `program()`'s segments with a symbol table defining, beside libmicrokit's, every symbol
/// the Microkit tool patches in any PD of `text` (a word each, from 0x200100): its
/// setvars, those of the plumbing and queues `build` writes, and the IOMMU PD's
/// `iommu_paddr_*`, as stub-images.py gives the SDK's tool.
pub fn program_for(text: &str) -> Vec<u8> {
    program_for_at(text, 0)
}

/// `program_for(text)` linked `offset` bytes above 0x200000 (its segments and symbols).
pub fn program_for_at(text: &str, offset: u64) -> Vec<u8> {
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
    let mut symbols = MICROKIT_SYMBOLS.to_vec();
    symbols.extend(names.iter().enumerate().map(|(i, n)| (n.as_str(), 0x20_0100 + 8 * i as u64, 8)));
    for s in &mut symbols {
        s.1 += offset;
    }
    elf_with(&[(PT_LOAD, 0x20_0000 + offset, 0x4a20), (PT_LOAD, 0x20_5000 + offset, 0x108)], &symbols)
}

/// A directory holding, under every program path `text` names, `program_for(text)`: the
/// programs `check --search-path` reads.
pub fn programs_dir(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iommu-sdf-elf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (sys, _) = iommu_sdf::check_text(text);
    for program in sys.pds.iter().filter_map(|pd| pd.program.as_ref()) {
        let file = dir.join(&program.path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, program_for(text)).unwrap();
    }
    dir
}
