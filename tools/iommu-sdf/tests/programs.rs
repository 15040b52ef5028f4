//! The PDs' programs, read as the Microkit tool reads them (`iommu_sdf::programs`): with a
//! search path, every map of a PD is held clear of its program's loadable segments, which
//! the Microkit tool refuses a map over (tool/microkit/src/capdl/builder.rs, "will overlap
//! with an ELF segment", with no line); a program it cannot find or read is refused at its
//! `<program_image>`.

use std::path::{Path, PathBuf};

use iommu_sdf::{programs, Board};

mod common;
use common::elf;
use elf::{elf, elf_with, program_for, Edit, Sym, MICROKIT_SYMBOLS, PT_LOAD};

const PT_NOTE: u32 = 4;

/// c-edu-driver.elf's two segments as Microkit links it (`readelf -l`: 0x200000 + 0x4a20,
/// 0x205000 + 0x108), a note (not loaded), an empty PT_LOAD, and one off a page boundary.
fn program() -> Vec<u8> {
    elf(&[
        (PT_LOAD, 0x20_0000, 0x4a20),
        (PT_LOAD, 0x20_5000, 0x108),
        (PT_NOTE, 0x30_0000, 0x1000),
        (PT_LOAD, 0x40_0000, 0),
        (PT_LOAD, 0x21_0100, 0x100),
    ])
}

/// A directory holding `program()` under each of `names`.
fn search_dir(tag: &str, names: &[&str]) -> PathBuf {
    dir_of(tag, names, &program())
}

/// A directory holding `bytes` under each of `names`.
fn dir_of(tag: &str, names: &[&str], bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iommu-sdf-programs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in names {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

#[test]
fn the_segments_are_where_the_microkit_tool_maps_and_checks_them() {
    // The unaligned one: its frames start at its page; Microkit checks maps against
    // vaddr .. vaddr + round_up(memsz), one page from its start, past the page it ends in.
    // The empty one is its address alone (an_empty_segment_refuses_a_map_around_its_address).
    assert_eq!(
        programs::segments(&program()),
        Ok(vec![(0x20_0000, 0x20_5000), (0x20_5000, 0x20_6000), (0x40_0000, 0x40_0000), (0x21_0000, 0x21_1100)])
    );
    assert!(programs::segments(b"not an ELF file").is_err());
    let mut big_endian = program();
    Edit::BigEndian.apply(&mut big_endian);
    assert!(programs::segments(&big_endian).is_err());
}

/// A plain Microkit description: PD `a` runs `prog.elf` and maps `buf` at `vaddr`.
fn one_map(vaddr: u64) -> String {
    format!(
        r#"<system>
    <memory_region name="buf" size="0x1000" />
    <protection_domain name="a" priority="100">
        <program_image path="prog.elf" />
        <map mr="buf" vaddr="{vaddr:#x}" perms="rw" />
    </protection_domain>
</system>"#
    )
}

#[test]
fn a_map_over_a_segment_is_refused_at_the_map_when_the_program_is_read() {
    let dir = search_dir("maps", &["prog.elf"]);
    let board = Board::default();
    for (vaddr, over) in [
        (0x20_1000, Some("0x200000..0x205000")),
        (0x20_5000, Some("0x205000..0x206000")),
        (0x21_1000, Some("0x210000..0x211100")),
        (0x20_6000, None),
        (0x21_2000, None),
        (0x30_0000, None),
        (0x40_0000, None),
    ] {
        let text = one_map(vaddr);
        let (_, problems) = iommu_sdf::check_text_with(&text, &board, std::slice::from_ref(&dir));
        match over {
            Some(segment) => {
                assert_eq!(problems.len(), 1, "{vaddr:#x}: {problems:#?}");
                let p = &problems[0];
                assert_eq!((p.line, p.element.as_str()), (5, "map"), "{vaddr:#x}");
                assert!(p.message.contains(&format!("covers {segment}")), "{vaddr:#x}: {}", p.message);
                // Above every segment, the empty one at 0x400000 too.
                assert!(p.fix.contains("at or above 0x400000"), "{}", p.fix);
            }
            None => assert!(problems.is_empty(), "{vaddr:#x}: {problems:#?}"),
        }
        // Unread, the program is the Microkit tool's to hold maps to.
        assert!(iommu_sdf::check_text(&text).1.is_empty(), "{vaddr:#x}");
    }
}

#[test]
fn a_program_not_found_or_not_an_elf_is_refused_at_its_program_image() {
    let dir = search_dir("missing", &[]);
    std::fs::write(dir.join("prog.elf"), b"#!/bin/sh\n").unwrap();
    let board = Board::default();
    let (_, problems) = iommu_sdf::check_text_with(&one_map(0x400_0000), &board, std::slice::from_ref(&dir));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!((problems[0].line, problems[0].element.as_str()), (4, "program_image"));
    assert!(problems[0].message.contains("cannot be read"), "{}", problems[0].message);
    let nowhere = dir.join("nowhere");
    let (_, problems) = iommu_sdf::check_text_with(&one_map(0x400_0000), &board, &[nowhere]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].message.contains("is in none of the search directories"), "{}", problems[0].message);
}

/// A queue's `vaddr` in the window a program may lie in is refused while the programs are
/// unread; read, the program decides: over its segment refused (at the `<dma_queue>`,
/// where the map build writes comes from), clear of it accepted.
#[test]
fn a_queue_vaddr_near_the_program_is_held_to_the_program_once_read() {
    let sdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/ok-queue.xml");
    let text = std::fs::read_to_string(sdf).unwrap();
    let dir = dir_of("queue", &["iommu.elf", "edu_driver.elf", "blk_driver.elf"], &program_for(&text));
    let board = Board::default();
    let at = |vaddr: &str| text.replace(r#"vaddr="0x100000000" share="8""#, &format!(r#"vaddr="{vaddr}" share="8""#));
    let line = text.lines().position(|l| l.contains(r#"<dma_queue pd="edu_driver""#)).unwrap() as u32 + 1;
    for (vaddr, unread, read) in [
        ("0x200000", Some("may lie on its program"), Some("overlaps its program `edu_driver.elf`")),
        ("0x400000", Some("may lie on its program"), None),
        ("0x100000000", None, None),
    ] {
        let text = at(vaddr);
        let (_, problems) = iommu_sdf::check_text(&text);
        let (_, with) = iommu_sdf::check_text_with(&text, &board, std::slice::from_ref(&dir));
        for (problems, expected) in [(problems, unread), (with, read)] {
            match expected {
                Some(message) => {
                    assert_eq!(problems.len(), 1, "{vaddr}: {problems:#?}");
                    assert_eq!((problems[0].line, problems[0].element.as_str()), (line, "dma_queue"), "{vaddr}");
                    assert!(problems[0].message.contains(message), "{vaddr}: {}", problems[0].message);
                }
                None => assert!(problems.is_empty(), "{vaddr}: {problems:#?}"),
            }
        }
    }
}

/// An empty PT_LOAD (memsz 0) maps nothing, but the Microkit tool still checks maps against
/// its range `vaddr..vaddr` with `a.start < b.end && b.start < a.end`: a map with the
/// segment's address strictly inside is refused ("will overlap with an ELF segment at
/// [0x400100..0x400100)", the SDK's tool run on these programs), one that starts or ends
/// there is not.
#[test]
fn an_empty_segment_refuses_a_map_around_its_address_as_the_microkit_tool_does() {
    let dir = std::env::temp_dir().join(format!("iommu-sdf-programs-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("prog.elf"), elf(&[(PT_LOAD, 0x20_0000, 0x1000), (PT_LOAD, 0x40_0100, 0)])).unwrap();
    assert_eq!(
        programs::segments(&std::fs::read(dir.join("prog.elf")).unwrap()),
        Ok(vec![(0x20_0000, 0x20_1000), (0x40_0100, 0x40_0100)])
    );
    let board = Board::default();
    // A two-page map at `vaddr`: around 0x400100, or starting or ending beside it.
    for (vaddr, refused) in [(0x3f_f000, true), (0x40_0000, true), (0x3f_e000, false), (0x40_1000, false)] {
        let text = one_map(vaddr).replace(r#"size="0x1000""#, r#"size="0x2000""#);
        let (_, problems) = iommu_sdf::check_text_with(&text, &board, std::slice::from_ref(&dir));
        if refused {
            assert_eq!(problems.len(), 1, "{vaddr:#x}: {problems:#?}");
            assert_eq!((problems[0].line, problems[0].element.as_str()), (5, "map"), "{vaddr:#x}");
            assert!(problems[0].message.contains("covers 0x400100..0x400100"), "{vaddr:#x}: {}", problems[0].message);
        } else {
            assert!(problems.is_empty(), "{vaddr:#x}: {problems:#?}");
        }
    }
}

/// A segment whose file bytes are more than it occupies in memory, or lie past the file's
/// end, is no valid ELF (System V gABI, "Program Header": p_filesz may not exceed
/// p_memsz; the bytes are at p_offset in the file); the SDK's Microkit tool panics on both
/// (tool/microkit/src/elf.rs:356 and :357, "range end index ... out of range"), so
/// `check` refuses the program at its `<program_image>`.
#[test]
fn a_segment_larger_in_the_file_than_in_memory_or_past_the_files_end_is_refused() {
    let mut past_end = elf(&[(PT_LOAD, 0x20_0000, 0x1000)]);
    Edit::FileBytes { filesz: 0x100, offset: 0x10_0000 }.apply(&mut past_end);
    let mut over_memsz = elf(&[(PT_LOAD, 0x20_0000, 0x40)]);
    // 120 of the file's 120 bytes.
    Edit::FileBytes { filesz: 0x78, offset: 0 }.apply(&mut over_memsz);
    let board = Board::default();
    for (tag, bytes, why) in [("past", past_end, "past the file's end"), ("over", over_memsz, "than in memory")] {
        assert!(programs::segments(&bytes).is_err(), "{tag}");
        let dir = std::env::temp_dir().join(format!("iommu-sdf-programs-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prog.elf"), &bytes).unwrap();
        let (_, problems) = iommu_sdf::check_text_with(&one_map(0x400_0000), &board, &[dir]);
        assert_eq!(problems.len(), 1, "{tag}: {problems:#?}");
        assert_eq!((problems[0].line, problems[0].element.as_str()), (4, "program_image"), "{tag}");
        assert!(problems[0].message.contains(why), "{tag}: {}", problems[0].message);
    }
}

/// `one_map(0x400_0000)` checked with `bytes` as its program (and `more` beside it).
fn check_with_program(tag: &str, text: &str, bytes: &[u8], more: &[(&str, &[u8])]) -> Vec<iommu_sdf::Problem> {
    let dir = dir_of(tag, &["prog.elf"], bytes);
    for (name, b) in more {
        std::fs::write(dir.join(name), b).unwrap();
    }
    iommu_sdf::check_text_with(text, &Board::default(), &[dir]).1
}

/// A program as the Microkit tool cannot load it (tool/microkit/src/elf.rs: no program
/// headers, no symbol table) or cannot patch (symbols.rs: libmicrokit's symbols missing,
/// named twice, outside every loadable segment or shorter than it writes; the SDK's tool
/// panics on those), and one built for another processor, which the Microkit tool loads
/// but the PD cannot run: each refused at its `<program_image>`. The same spoilt copies of
/// a real libmicrokit program go to the SDK's tool in `images/microkit-rules.sh`.
#[test]
fn a_program_the_microkit_tool_cannot_load_or_patch_is_refused_at_its_program_image() {
    let segment = [(PT_LOAD, 0x20_0000, 0x1000)];
    let ok = elf(&segment);
    let with = |change: &dyn Fn(&mut Vec<Sym>)| {
        let mut symbols = MICROKIT_SYMBOLS.to_vec();
        change(&mut symbols);
        elf_with(&segment, &symbols)
    };
    let mut x86 = ok.clone();
    Edit::Machine(62).apply(&mut x86); // EM_X86_64
    let mut no_symtab = ok.clone();
    Edit::NoSymbolTable.apply(&mut no_symtab);
    let text = one_map(0x400_0000);
    assert!(check_with_program("loads", &text, &ok, &[]).is_empty());
    for (tag, bytes, why) in [
        ("machine", x86, "built for machine 62 (e_machine), not AArch64"),
        ("no-headers", elf(&[]), "no program headers"),
        ("no-symtab", no_symtab.clone(), "no symbol table"),
        ("no-name", with(&|s| s.retain(|x| x.0 != "microkit_name")), "has no symbol `microkit_name`"),
        (
            "two-names",
            with(&|s| s.push(("microkit_name", 0x20_0800, 64))),
            "more than one symbol named `microkit_name`",
        ),
        (
            "irqs-outside",
            with(&|s| s[2].1 = 0x10_0000),
            "`microkit_irqs` in its program `prog.elf` is at 0x100000..0x100008, in none of its loadable segments",
        ),
        (
            "irqs-short",
            with(&|s| s[2].2 = 4),
            "`microkit_irqs` in its program `prog.elf` is 4 bytes long; the Microkit tool writes 8",
        ),
        (
            "name-short",
            with(&|s| s[0].2 = 0),
            "`microkit_name` in its program `prog.elf` is 0 bytes long; the Microkit tool writes 1",
        ),
        (
            "shared-page",
            elf(&[(PT_LOAD, 0x20_0000, 0x1010), (PT_LOAD, 0x20_1000, 0x100)]),
            "its loadable segments at 0x200000 and 0x201000 share the page at 0x201000",
        ),
    ] {
        let problems = check_with_program(tag, &text, &bytes, &[]);
        assert_eq!(problems.len(), 1, "{tag}: {problems:#?}");
        assert_eq!((problems[0].line, problems[0].element.as_str()), (4, "program_image"), "{tag}");
        assert!(problems[0].message.contains(why), "{tag}: {}", problems[0].message);
    }
    // Its symbols from another file (`path_for_symbols`), as the Microkit tool reads them:
    // there, the stripped program is loaded; missing, it is refused.
    let split = text.replace(r#"path="prog.elf""#, r#"path="prog.elf" path_for_symbols="prog.debug""#);
    assert!(check_with_program("split", &split, &no_symtab, &[("prog.debug", &ok)]).is_empty());
    let problems = check_with_program("split-missing", &split, &no_symtab, &[]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].message.contains("program for symbols (path_for_symbols) `prog.debug` is in none"),
        "{}",
        problems[0].message
    );
}

/// A setvar whose symbol the program lacks, has twice, or has in other than a word or
/// outside its segments: the Microkit tool refuses the first, second and third ("could
/// not patch symbol", "setvar to non-word size symbol") and panics on the last; `check`
/// refuses each at the element that sets it (here the map's `setvar_vaddr`).
#[test]
fn a_setvar_the_program_cannot_take_is_refused_where_it_is_set() {
    let text = one_map(0x400_0000).replace(r#"perms="rw" />"#, r#"perms="rw" setvar_vaddr="buffers" />"#);
    let segment = [(PT_LOAD, 0x20_0000, 0x1000)];
    let with = |extra: &[Sym]| {
        let mut symbols = MICROKIT_SYMBOLS.to_vec();
        symbols.extend_from_slice(extra);
        elf_with(&segment, &symbols)
    };
    assert!(check_with_program("setvar-ok", &text, &with(&[("buffers", 0x20_0100, 8)]), &[]).is_empty());
    for (tag, extra, why) in [
        ("setvar-missing", vec![], "has no symbol `buffers`"),
        (
            "setvar-twice",
            vec![("buffers", 0x20_0100, 8), ("buffers", 0x20_0108, 8)],
            "more than one symbol named `buffers`",
        ),
        (
            "setvar-short",
            vec![("buffers", 0x20_0100, 4)],
            "is 4 bytes long; the Microkit tool writes 8 and needs it exactly that",
        ),
        ("setvar-long", vec![("buffers", 0x20_0100, 16)], "is 16 bytes long"),
        ("setvar-outside", vec![("buffers", 0x20_0ffc, 8)], "in none of its loadable segments"),
    ] {
        let problems = check_with_program(tag, &text, &with(&extra), &[]);
        assert_eq!(problems.len(), 1, "{tag}: {problems:#?}");
        assert_eq!((problems[0].line, problems[0].element.as_str()), (5, "map"), "{tag}");
        assert!(problems[0].message.contains(why), "{tag}: {}", problems[0].message);
        assert!(problems[0].message.contains("`a`'s setvar `buffers` cannot be patched"), "{tag}");
    }
}

/// `iommu-sdf` run with `args`: exit status and standard output.
/// A description of tests/sdf/, its text, and a directory (`tag`'s) of the programs its
/// PDs name.
fn fixture_and_its_programs(name: &str, tag: &str) -> (std::path::PathBuf, String, std::path::PathBuf) {
    let sdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf").join(name);
    let text = std::fs::read_to_string(&sdf).unwrap();
    let programs = elf::programs_dir(tag, &text);
    (sdf, text, programs)
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_iommu-sdf")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

/// Without the programs, where each lies is its linker's choice (a program linked at
/// 64 GiB lies where build places a queue; one at 0x10000000 under a driver's buffers),
/// and whether it has the symbols the Microkit tool patches is unknown: `check`, the
/// proof, refuses every `<program_image>` it was not given, with a fix; given them, it
/// accepts. `build` and `report` (run before the programs exist) write their output and
/// say what is unproven until then.
#[test]
fn without_the_programs_check_proves_nothing_about_them_and_build_and_report_say_so() {
    let (sdf, text, dir) = fixture_and_its_programs("ok-queue.xml", "unread");
    let file = sdf.to_str().unwrap();
    let search = dir.to_str().unwrap();
    let programs: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("<program_image"))
        .map(|(i, l)| (i + 1, l.split('"').nth(1).unwrap()))
        .collect();
    assert_eq!(programs.len(), 3);

    let (status, out) = run(&["check", file]);
    assert_eq!(status, Some(1), "{out}");
    for (line, path) in &programs {
        let error = out.lines().find(|l| l.contains(&format!(":{line}:"))).unwrap_or_else(|| panic!("{out}"));
        assert!(error.contains("error: <program_image>: "), "{error}");
        assert!(error.contains(&format!("program `{path}` was not read")), "{error}");
        assert!(error.contains("is unproven"), "{error}");
    }
    assert!(out.contains("note: fix: build the programs, then check with them: --search-path DIR"), "{out}");
    assert!(out.ends_with(": 3 problem(s)\n"), "{out}");
    let (status, out) = run(&["check", file, "--search-path", search]);
    assert_eq!(status, Some(0), "{out}");
    assert!(!out.contains("unproven"), "{out}");

    let built = std::env::temp_dir().join(format!("iommu-sdf-unread-build-{}", std::process::id()));
    let (status, out) = run(&["build", file, "--out", built.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{out}");
    assert!(
        out.contains(": unproven: the programs (blk_driver.elf, edu_driver.elf, iommu.elf) were not read"),
        "{out}"
    );
    assert!(out.contains("run `iommu-sdf check"), "{out}");
    assert!(built.join("ok-queue.system").exists());
    let (status, out) = run(&["build", file, "--out", built.to_str().unwrap(), "--search-path", search]);
    assert_eq!(status, Some(0), "{out}");
    assert!(!out.contains("unproven"), "{out}");

    let (status, out) = run(&["report", file]);
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("**Unproven:**"), "{out}");
    let (_, out) = run(&["report", file, "--search-path", search]);
    assert!(!out.contains("nproven"), "{out}");
}

/// Why the programs must be read: a program linked elsewhere than Microkit's 0x200000
/// (here `blk_driver`'s, at 64 GiB, where `build` places a queue given no `vaddr`) lies
/// under a map no rule without it could refuse; read, the map is refused at the
/// `<dma_queue>` it comes from.
#[test]
fn a_program_linked_where_build_places_a_queue_is_found_only_by_reading_it() {
    let sdf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/ok-queue.xml");
    let text = std::fs::read_to_string(&sdf).unwrap();
    let dir = elf::programs_dir("linked-high", &text);
    std::fs::write(dir.join("blk_driver.elf"), elf::program_for_at(&text, 0x10_0000_0000 - 0x20_0000)).unwrap();
    assert!(iommu_sdf::check_text(&text).1.is_empty(), "unread, nothing here refuses it");
    let (_, problems) = iommu_sdf::check_text_with(&text, &Board::default(), &[dir]);
    let line = text.lines().position(|l| l.contains(r#"<dma_queue pd="blk_driver""#)).unwrap() as u32 + 1;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!((problems[0].line, problems[0].element.as_str()), (line, "dma_queue"));
    assert!(problems[0].message.contains("overlaps its program `blk_driver.elf`"), "{}", problems[0].message);
}

/// A loadable segment in the stack, the IPC buffer, at or past the top of the address
/// space (2^40 on the SDK's boards) or wrapping past 2^64: the Microkit tool panics mapping
/// the stack or IPC buffer over the first two ("should be able to map the IPC buffer") and
/// builds an image of the last two that seL4 cannot map; `check` accepted all four. It
/// refuses each at the `<program_image>`, below a larger `stack_size` too; a segment
/// ending at the stack, and an empty one anywhere, map nothing there. The SDK's tool
/// on real programs moved there: images/bad-programs.py, elf-segment-in-the-stack.elf.
#[test]
fn a_segment_in_the_stack_the_ipc_buffer_or_past_the_address_space_is_refused() {
    let text = one_map(0x400_0000);
    let big_stack = text.replace(r#"priority="100""#, r#"priority="100" stack_size="0x10000""#);
    for (tag, text, second, refused) in [
        ("stack", &text, (0xff_ffff_c000, 0x1000), Some("0xffffffc000..0xffffffd000, past 0xffffffc000")),
        ("ipc-buffer", &text, (0xff_ffff_f000, 0x1000), Some("0xfffffff000..0x10000000000, past 0xffffffc000")),
        ("past-top", &text, (0x100_0000_0000, 0x1000), Some("0x10000000000..0x10000001000")),
        ("wraps", &text, (0xffff_ffff_ffff_f000, 0x2000), Some("0xfffffffffffff000..0xffffffffffffffff")),
        ("under-stack", &text, (0xff_ffff_b000, 0x1000), None),
        ("empty-past-top", &text, (0x100_0000_0000, 0), None),
        ("big-stack", &big_stack, (0xff_ffff_b000, 0x1000), Some("past 0xfffffee000, where its stack (0x10000 bytes)")),
    ] {
        let bytes = elf(&[(PT_LOAD, 0x20_0000, 0x1000), (PT_LOAD, second.0, second.1)]);
        let problems = check_with_program(tag, text, &bytes, &[]);
        match refused {
            Some(why) => {
                assert_eq!(problems.len(), 1, "{tag}: {problems:#?}");
                assert_eq!((problems[0].line, problems[0].element.as_str()), (4, "program_image"), "{tag}");
                assert!(problems[0].message.contains(why), "{tag}: {}", problems[0].message);
                assert!(problems[0].fix.contains("link the program below"), "{tag}: {}", problems[0].fix);
            }
            None => assert!(problems.is_empty(), "{tag}: {problems:#?}"),
        }
    }
}

/// Symbols the Microkit tool patches that share bytes: two setvars on aliases of one
/// variable, or a setvar on a symbol over one of libmicrokit's (a setvar of libmicrokit's
/// own is refused by name, `rules::names`). The SDK's tool writes each in turn, refusing none (the program reads the last
/// value for both; images/microkit-rules.sh, program-setvar-over-microkit-irqs.xml);
/// `check` accepted them. Each is refused at the element that set the later symbol.
#[test]
fn symbols_the_microkit_tool_patches_sharing_bytes_are_refused() {
    let segment = [(PT_LOAD, 0x20_0000, 0x1000)];
    let with = |more: &[Sym]| {
        let mut symbols = MICROKIT_SYMBOLS.to_vec();
        symbols.extend_from_slice(more);
        elf_with(&segment, &symbols)
    };
    let setvars = |attrs: &str| one_map(0x400_0000).replace(r#"perms="rw" />"#, &format!(r#"perms="rw" {attrs} />"#));
    for (tag, attrs, bytes, refused) in [
        (
            "apart",
            r#"setvar_vaddr="buffers" setvar_size="size""#,
            with(&[("buffers", 0x20_0100, 8), ("size", 0x20_0108, 8)]),
            None,
        ),
        (
            "aliases",
            r#"setvar_vaddr="buffers" setvar_size="size""#,
            with(&[("buffers", 0x20_0100, 8), ("size", 0x20_0100, 8)]),
            Some("`size` at 0x200100..0x200108 and `buffers` at 0x200100..0x200108, sharing bytes"),
        ),
        (
            "straddles",
            r#"setvar_vaddr="buffers" setvar_size="size""#,
            with(&[("buffers", 0x20_0100, 8), ("size", 0x20_0104, 8)]),
            Some("`size` at 0x200104..0x20010c and `buffers` at 0x200100..0x200108"),
        ),
        (
            "over-irqs",
            r#"setvar_vaddr="buffers""#,
            with(&[("buffers", 0x20_0048, 8)]),
            Some("`buffers` at 0x200048..0x200050 and `microkit_irqs` at 0x200048..0x200050"),
        ),
    ] {
        let problems = check_with_program(tag, &setvars(attrs), &bytes, &[]);
        match refused {
            Some(why) => {
                assert_eq!(problems.len(), 1, "{tag}: {problems:#?}");
                assert_eq!((problems[0].line, problems[0].element.as_str()), (5, "map"), "{tag}");
                assert!(problems[0].message.contains(why), "{tag}: {}", problems[0].message);
            }
            None => assert!(problems.is_empty(), "{tag}: {problems:#?}"),
        }
    }
}

/// Programs too large for the image: the SDK's Microkit tool copies every PD's pages
/// (`.bss` included) into the initialiser's image, and panics or refuses when it does not
/// fit between the kernel and the loader (`rules::program_sizes`; the reviewer's 256 MiB,
/// 2 GiB and 64 GiB `.bss` are in images/microkit-rules.sh's corpus). Up to
/// `PROGRAMS_MAX` together is accepted; a page more is refused, at the `<program_image>`
/// that crosses it, counting a program each PD runs once per PD.
#[test]
fn programs_larger_together_than_the_image_can_hold_are_refused() {
    use iommu_sdf::rules::program_sizes::PROGRAMS_MAX;
    let sized = |bss: u64| elf(&[(PT_LOAD, 0x20_0000, 0x1000), (PT_LOAD, 0x20_1000, bss)]);
    let text = one_map(0x80_0000_0000);
    assert!(check_with_program("at-max", &text, &sized(PROGRAMS_MAX - 0x1000), &[]).is_empty());
    for (tag, bss) in [("page-over", PROGRAMS_MAX), ("256m", 256 << 20), ("64g", 64 << 30)] {
        let problems = check_with_program(tag, &text, &sized(bss), &[]);
        assert_eq!(problems.len(), 1, "{tag}: {problems:#?}");
        assert_eq!((problems[0].line, problems[0].element.as_str()), (4, "program_image"), "{tag}");
        assert!(
            problems[0].message.contains(&format!("takes {:#x} bytes", bss + 0x1000)),
            "{tag}: {}",
            problems[0].message
        );
        assert!(problems[0].fix.contains("<memory_region>"), "{tag}");
    }
    // Two PDs running one 40 MiB program: each is copied, so the second crosses the bound.
    let two = r#"<system>
    <protection_domain name="a" priority="100">
        <program_image path="prog.elf" />
    </protection_domain>
    <protection_domain name="b" priority="99">
        <program_image path="prog.elf" />
    </protection_domain>
</system>"#;
    let problems = check_with_program("two", two, &sized(40 << 20), &[]);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, 6);
    assert!(problems[0].message.contains("`b`'s program"), "{}", problems[0].message);
    assert!(check_with_program("one", &one_map(0x80_0000_0000), &sized(40 << 20), &[]).is_empty());
}

/// The unproven line names each program as the description wrote it, escaped: a path
/// holding a line feed (`&#10;`, which XML allows in an attribute) printed raw split
/// `build`'s and `report`'s line in two, the second a line the description chose.
#[test]
fn the_unproven_line_is_one_line_whatever_the_paths() {
    let dir = std::env::temp_dir().join(format!("iommu-sdf-unproven-newline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sdf = dir.join("odd.xml");
    std::fs::write(
        &sdf,
        "<system>\n<protection_domain name=\"a\" priority=\"1\">\n<program_image path=\"x.elf&#10;odd.xml:1:1: error: forged\" />\n</protection_domain>\n</system>\n",
    )
    .unwrap();
    let file = sdf.to_str().unwrap();
    for args in [&["build", file, "--out", dir.join("out").to_str().unwrap()][..], &["report", file]] {
        let (status, out) = run(args);
        assert_eq!(status, Some(0), "{out}");
        assert!(!out.lines().any(|l| l.starts_with("odd.xml:1:1: error: forged")), "{args:?}: {out}");
        assert!(out.contains("x.elf\\nodd.xml:1:1: error: forged"), "{args:?}: {out}");
    }
}

/// The IOMMU PD restarts a crashed client at the entry of the program of its name in the
/// build directory (pds/iommu/build.rs reads them there), and the Microkit tool loads the
/// one `check` read, the first the search path holds. A program of that name earlier in
/// the search path, with another entry point, passed `check --built`, and a restart would
/// have run the loaded program from the other's entry; refused now, at the client's
/// `<program_image>`. The same file in both places passes.
#[test]
fn a_client_is_restarted_from_the_program_it_runs() {
    let (sdf, text, programs) = fixture_and_its_programs("ok.xml", "restart-entry");
    let file = sdf.to_str().unwrap();
    let built = std::env::temp_dir().join(format!("iommu-sdf-restart-entry-{}", std::process::id()));
    let (status, out) = run(&["build", file, "--out", built.to_str().unwrap()]);
    assert_eq!(status, Some(0), "{out}");
    let loaded = std::fs::read(programs.join("edu_driver.elf")).unwrap();
    let check = || {
        run(&[
            "check",
            file,
            "--search-path",
            programs.to_str().unwrap(),
            "--search-path",
            built.to_str().unwrap(),
            "--built",
            built.to_str().unwrap(),
        ])
    };
    std::fs::write(built.join("edu_driver.elf"), &loaded).unwrap();
    let (status, out) = check();
    assert_eq!(status, Some(0), "{out}");
    let mut other = loaded.clone();
    other[24..32].copy_from_slice(&0x20_1000u64.to_le_bytes());
    std::fs::write(built.join("edu_driver.elf"), &other).unwrap();
    let (status, out) = check();
    assert_eq!(status, Some(1), "{out}");
    let line = text.lines().position(|l| l.contains("path=\"edu_driver.elf\"")).unwrap() + 1;
    assert!(
        out.contains(&format!(
            "ok.xml:{line}:13: error: <program_image>: the IOMMU PD would restart client `edu_driver` at 0x201000"
        )),
        "{out}"
    );
    assert_eq!(out.matches(": error: ").count(), 1, "{out}");
}
