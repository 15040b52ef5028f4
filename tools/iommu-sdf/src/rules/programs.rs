//! The symbols the Microkit tool patches into each program it read (`crate::programs`), as
//! it patches them (tool/microkit/src/symbols.rs, `patch_symbols`; elf.rs, `find_symbol`
//! and `write_symbol`): each must be in the program's symbol table once ("multiple
//! symbols with name"), lie inside a loadable segment (where it writes the value), and be
//! large enough for it; a setvar's exactly a word ("setvar to non-word size symbol").
//! Where one is not, the SDK's tool refuses the description, or panics (`microkit_name`
//! missing, `microkit_irqs` outside every segment or shorter than 8 bytes). A program not
//! read (no search path) is not held to this here.

use super::names::MAX_NAME;
use crate::model::*;
use crate::problem::{p, Problem};

/// The symbols the Microkit tool patches in every PD, and the bytes it writes to each
/// (`microkit_name` gets the PD's name, at most `MAX_NAME` bytes; `microkit_passive` one).
fn microkit_own(pd: &ProtectionDomain) -> [(&'static str, u64); 6] {
    [
        ("microkit_name", pd.name.len().min(MAX_NAME) as u64),
        ("microkit_passive", 1),
        ("microkit_irqs", 8),
        ("microkit_notifications", 8),
        ("microkit_pps", 8),
        ("microkit_ioports", 8),
    ]
}

/// Why the Microkit tool cannot write `bytes` into `name` of `program` (`exact`: the
/// symbol must be that size, as a setvar's must be a word), or `None` if it can.
fn unwritable(
    program: &Program,
    symbols: &std::collections::HashMap<String, Symbol>,
    name: &str,
    bytes: u64,
    exact: bool,
) -> Option<String> {
    let Some(s) = symbols.get(name) else {
        return Some(format!("its program `{}` has no symbol `{name}`", program.path));
    };
    if s.twice {
        return Some(format!(
            "its program `{}` has more than one symbol named `{name}`: the Microkit tool will not choose",
            program.path
        ));
    }
    if (exact && s.size != bytes) || s.size < bytes {
        let need = if exact { "exactly" } else { "at least" };
        return Some(format!(
            "`{name}` in its program `{}` is {} bytes long; the Microkit tool writes {bytes} and needs it {need} that",
            program.path, s.size
        ));
    }
    let (start, end) = (u128::from(s.value), u128::from(s.value) + u128::from(s.size));
    let inside = program.loads.iter().any(|&(v, m)| start >= u128::from(v) && end <= u128::from(v) + u128::from(m));
    if !inside {
        return Some(format!(
            "`{name}` in its program `{}` is at {:#x}..{end:#x}, in none of its loadable segments: the Microkit tool has nowhere to write it",
            program.path, s.value
        ));
    }
    None
}

pub fn check(sys: &System, out: &mut Vec<Problem>) {
    let ends = sys.ends_by_pd();
    let iommu = sys.iommu.as_ref().map(|i| i.pd.as_str());
    // build writes a `setvar region_paddr` for each region devices may reach into the
    // IOMMU PD (`build::microkit_system`).
    let reached = sys.dma_region_names();
    let paddrs: Vec<String> =
        sys.regions.iter().filter(|r| reached.contains(r.name.as_str())).map(|r| paddr_symbol(&r.name)).collect();
    for pd in &sys.pds {
        let Some(program) = &pd.program else { continue };
        let Some(symbols) = &program.symbols else { continue };
        let fix_program = "link the program with libmicrokit (which defines the symbols the Microkit tool patches) and do not strip it";
        // Every symbol the tool writes, where it is writable, with the element that asks
        // for it: two sharing a byte would have one value overwrite the other.
        let mut written: Vec<(&str, &Symbol, Line, &str)> = Vec::new();
        for (name, bytes) in microkit_own(pd) {
            if let Some(why) = unwritable(program, symbols, name, bytes, false) {
                out.push(p(
                    program.line,
                    "program_image",
                    format!("`{}` runs a program the Microkit tool cannot patch: {why}", pd.name),
                    fix_program,
                ));
            } else {
                written.push((name, &symbols[name], program.line, "program_image"));
            }
        }
        let mut patched = pd.setvar_symbols(&ends);
        if Some(pd.name.as_str()) == iommu {
            patched.extend(paddrs.iter().map(|s| (s.as_str(), program.line, "program_image")));
        }
        for (name, line, element) in patched {
            if let Some(why) = unwritable(program, symbols, name, 8, true) {
                out.push(p(
                    line,
                    element,
                    format!("`{}`'s setvar `{name}` cannot be patched: {why}", pd.name),
                    format!("define `{name}` in the program as a 64-bit variable (`uintptr_t {name};` in C, a `static` u64 in Rust), or set a symbol it has"),
                ));
            } else {
                written.push((name, &symbols[name], line, element));
            }
        }
        overlapping(pd, program, &written, out);
    }
}

/// Two symbols the Microkit tool writes into `pd`'s program that share a byte (aliases: two
/// names for one variable, or overlapping ones; a setvar of one of libmicrokit's own is
/// `rules::names`'): the tool writes both (symbols.rs, one
/// after the other, refusing neither), so the program reads one value where the
/// description set two. In the IOMMU PD that is a region's physical address (a setvar
/// `region_paddr`) read as another's, or as a bit mask: the mappings it makes would not be
/// those the report lists. Refused at the later of the two elements that ask for them.
fn overlapping(
    pd: &ProtectionDomain,
    program: &Program,
    written: &[(&str, &Symbol, Line, &str)],
    out: &mut Vec<Problem>,
) {
    let end = |s: &Symbol| u128::from(s.value) + u128::from(s.size);
    for (i, &(name, sym, line, element)) in written.iter().enumerate() {
        let Some(&(first, other, ..)) = written[..i]
            .iter()
            .find(|&&(n, o, ..)| n != name && u128::from(o.value) < end(sym) && u128::from(sym.value) < end(o))
        else {
            continue;
        };
        out.push(p(
            line,
            element,
            format!(
                "`{}`'s program `{}` has `{name}` at {:#x}..{:#x} and `{first}` at {:#x}..{:#x}, sharing bytes: the Microkit tool patches both, and the program reads one value for the two",
                pd.name,
                program.path,
                sym.value,
                end(sym),
                other.value,
                end(other)
            ),
            format!("give `{name}` and `{first}` a variable each in the program (not aliases), or set a symbol that shares no bytes with another the Microkit tool patches"),
        ));
    }
}
