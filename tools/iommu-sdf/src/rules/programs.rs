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
        for (name, bytes) in microkit_own(pd) {
            if let Some(why) = unwritable(program, symbols, name, bytes, false) {
                out.push(p(
                    program.line,
                    "program_image",
                    format!("`{}` runs a program the Microkit tool cannot patch: {why}", pd.name),
                    fix_program,
                ));
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
            }
        }
    }
}
