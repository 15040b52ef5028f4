//! Names: each element's name is its own, so a reference means one element.

use std::collections::HashMap;

use crate::model::*;
use crate::problem::{p, Problem};

/// Why a name given twice is refused: lookups by name (here) take the first, while the
/// Microkit tool or the generated policy may take either, or both.
const UNCLEAR: &str = "which one a reference means is unclear, so what check accepted need not be what runs";

/// A second `element` with the same key: `items` are `(key, line)` in description order,
/// `named` says what the key is ("named", "for"), `why` why a second is wrong.
fn duplicates<'a>(
    out: &mut Vec<Problem>,
    (element, named, why): (&str, &str, &str),
    fix: &str,
    items: impl Iterator<Item = (&'a str, Line)>,
) {
    let mut first: HashMap<&str, Line> = HashMap::new();
    for (key, line) in items {
        match first.get(key) {
            Some(at) => out.push(p(
                line,
                element,
                format!("a second {element} {named} `{key}` (the first is on line {at}): {why}"),
                fix,
            )),
            None => {
                first.insert(key, line);
            }
        }
    }
}

/// Names given twice, and every name in its grammar (`grammar`).
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    grammar(sys, out);
    let rename = |element: &str| format!("give each {element} its own name, and update what refers to it");
    let names: [(&str, Vec<(&str, Line)>); 4] = [
        ("memory_region", sys.regions.iter().map(|r| (r.name.as_str(), r.line)).collect()),
        ("protection_domain", sys.pds.iter().map(|pd| (pd.name.as_str(), pd.line)).collect()),
        ("io_address_space", sys.io_spaces.iter().map(|s| (s.name.as_str(), s.line)).collect()),
        ("dma_capability", sys.caps.iter().map(|c| (c.name.as_str(), c.line)).collect()),
    ];
    for (element, items) in names {
        duplicates(out, (element, "named", UNCLEAR), &rename(element), items.into_iter());
    }
    duplicates(
        out,
        (
            "dma_quota",
            "for",
            "the policy would bound the PD by the first alone, while the page-table pool is sized for both",
        ),
        "keep one dma_quota per protection domain",
        sys.quotas.iter().map(|q| (q.pd.as_str(), q.line)),
    );

    unknown_pds(sys, out);

    // The Microkit tool's monitor is a PD named `monitor`, and it refuses another.
    for pd in sys.pds.iter().filter(|pd| pd.name == MONITOR) {
        out.push(p(
            pd.line,
            "protection_domain",
            format!("a protection domain named `{MONITOR}`: the Microkit tool keeps the name for its monitor, and refuses it"),
            "give the protection domain another name",
        ));
    }
    for pd in sys.pds.iter().filter(|pd| pd.parent.is_some() && pd.id.is_none()) {
        out.push(p(
            pd.line,
            "protection_domain",
            format!("child protection domain `{}` has no `id`", pd.name),
            "add id=\"...\": its identifier in its parent",
        ));
    }
}

/// Channel ends and `<cspace>` capabilities that name no PD: the Microkit tool refuses
/// them (sdf.rs, `ChannelEnd::from_xml`, "invalid PD name"; `parse`, "unknown PD name"),
/// and the rules that read channels (which PD calls the IOMMU PD, on which id) and
/// capabilities (who holds whose TCB) would judge a system that is not the one built.
fn unknown_pds(sys: &System, out: &mut Vec<Problem>) {
    let pds = || sys.pds.iter().map(|pd| pd.name.as_str());
    for c in &sys.channels {
        for end in c.ends.iter().filter(|e| sys.pd(&e.pd).is_none()) {
            out.push(p(
                end.line,
                "end",
                format!(
                    "a channel end at `{}`, which is not a protection domain{}",
                    end.pd,
                    did_you_mean(&end.pd, pds())
                ),
                "name an existing protection_domain in pd=\"...\"",
            ));
        }
    }
    for pd in &sys.pds {
        for (kind, of, line) in pd
            .cspace
            .iter()
            .filter(|(kind, of, _)| matches!(kind.as_str(), "tcb" | "sc" | "vspace") && sys.pd(of).is_none())
        {
            let what = if of.is_empty() {
                format!("`{}`'s cap_{kind} names no PD (no `pd`)", pd.name)
            } else {
                format!(
                    "`{}`'s cap_{kind} is of `{of}`, which is not a protection domain{}",
                    pd.name,
                    did_you_mean(of, pds())
                )
            };
            out.push(p(*line, &format!("cap_{kind}"), what, "name an existing protection_domain in pd=\"...\""));
        }
    }
}

/// The Microkit tool's own PD (`MONITOR_PD_NAME`).
const MONITOR: &str = "monitor";

/// The longest name: the Microkit tool keeps 64 bytes of a PD's or VM's name
/// (`PD_MAX_NAME_LENGTH`), and two longer names with one prefix would be one name to it.
pub const MAX_NAME: usize = 64;

/// A name that `build` may write into the Microkit file, a setvar symbol or the policy's
/// Rust source as it is: a C identifier (`[A-Za-z_][A-Za-z0-9_]*`), at most `MAX_NAME`
/// bytes. Nothing in it needs escaping in XML, C or Rust, and the symbols made from it
/// (`iommu_paddr_<region>`, `<client>_faults`) are one per name.
pub fn is_identifier(s: &str) -> bool {
    is_symbol(s) && s.len() <= MAX_NAME
}

/// A symbol the Microkit tool patches into a PD's image (`setvar`, `setvar_vaddr`,
/// `setvar_size`): a C identifier of any length.
fn is_symbol(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Symbols `build` writes into the IOMMU PD (one per region devices may reach): a user's
/// symbol with this prefix would be patched twice, and the Microkit tool would give the
/// IOMMU PD another region's physical address for it.
pub const GENERATED_PADDR_PREFIX: &str = "iommu_paddr_";

/// Prefixes of the symbols the Microkit tool and seL4's runtime patch themselves
/// (`microkit_irqs`, `microkit_pps`, `microkit_name`, `__sel4_ipc_buffer_obj`, ...).
const MICROKIT_OWN: &[&str] = &["microkit_", "__sel4"];

/// Every symbol the IOMMU PD (`pds/iommu`) reads from the description, besides build's
/// `iommu_paddr_*`: its regions' addresses, sizes and physical addresses, the clients'
/// fault rings, and the PCI configuration space it owns.
pub const IOMMU_PD_SYMBOLS: &[&str] = &[
    "smmu_regs",
    "smmu_strtab",
    "smmu_strtab_size",
    "smmu_strtab_paddr",
    "smmu_cmdq",
    "smmu_cmdq_size",
    "smmu_cmdq_paddr",
    "smmu_eventq",
    "smmu_eventq_size",
    "smmu_eventq_paddr",
    "smmu_cds",
    "smmu_cds_size",
    "smmu_cds_paddr",
    "smmu_tables",
    "smmu_tables_size",
    "smmu_tables_paddr",
    "fault_rings",
    "ecam",
    "ecam_size",
];

/// A region build names after `client` (`<client><suffix>`, its `what`) that the client's
/// name makes too long: said at `line`, the element whose name is the one to change.
fn too_long_for(line: Line, element: &str, client: &str, what: &str, region: &str, suffix: &str) -> Problem {
    p(
        line,
        element,
        format!(
            "`{client}`'s {what}, which build names `{region}`, would be {} characters; the Microkit tool keeps {MAX_NAME}",
            region.len()
        ),
        format!("give the client a name of at most {} characters", MAX_NAME - suffix.len()),
    )
}

/// Names and symbols: each in its grammar, each symbol patched once per PD, and no
/// region named as one the plumbing writes.
pub fn grammar(sys: &System, out: &mut Vec<Problem>) {
    let ident_fix = |what: &str| {
        format!(
            "name the {what} with letters, digits and `_` only, starting with a letter or `_`, at most {MAX_NAME} characters: build writes it into the Microkit file and symbols as it is"
        )
    };
    // A fault ring the plumbing named after a client whose name is too long for it: said at
    // the client, whose name is the one to change.
    let generated = sys.iommu.as_ref().map(|i| i.line);
    let mut long_ring: Vec<&str> = Vec::new();
    for r in sys.regions.iter().filter(|r| Some(r.line) == generated && !is_identifier(&r.name)) {
        let Some(pd) = r.name.strip_suffix("_faults").and_then(|c| sys.pd(c)) else { continue };
        long_ring.push(&r.name);
        if is_identifier(&pd.name) {
            out.push(too_long_for(pd.line, "protection_domain", &pd.name, "fault ring", &r.name, "_faults"));
        }
    }
    // The same for a mapping queue's region, which build names after its client: said at
    // the <dma_queue>, which made it.
    for q in &sys.queues {
        let name = crate::queues::region_name(&q.pd);
        let Some(r) = sys.region(&name).filter(|r| r.line == q.line && !is_identifier(&r.name)) else { continue };
        long_ring.push(&r.name);
        if is_identifier(&q.pd) {
            out.push(too_long_for(q.line, "dma_queue", &q.pd, "mapping queue", &name, "_queue"));
        }
    }
    let mut refuse = |line: Line, element: &str, what: &str, name: &str, fix: String| {
        out.push(p(line, element, format!("the {what} name {} is not one build can write safely", shown(name)), fix))
    };
    for r in sys.regions.iter().filter(|r| !is_identifier(&r.name) && !long_ring.contains(&r.name.as_str())) {
        refuse(r.line, "memory_region", "memory region", &r.name, ident_fix("memory region"));
    }
    for pd in sys.pds.iter().filter(|pd| !is_identifier(&pd.name)) {
        refuse(pd.line, "protection_domain", "protection domain", &pd.name, ident_fix("protection domain"));
    }
    for vm in sys.pds.iter().flat_map(|pd| &pd.vms).filter(|v| !is_identifier(&v.name)) {
        refuse(vm.line, "virtual_machine", "virtual machine", &vm.name, ident_fix("virtual machine"));
    }
    for c in sys.caps.iter().filter(|c| !is_identifier(&c.name)) {
        refuse(c.line, "dma_capability", "capability", &c.name, ident_fix("capability"));
    }
    // A device is named in space-separated lists (`devices`), and in the policy and the
    // report: the same grammar.
    for s in sys.io_spaces.iter().filter(|s| !is_identifier(&s.name)) {
        refuse(s.line, "io_address_space", "device", &s.name, ident_fix("device"));
    }
    let iommu = sys.iommu.as_ref().map(|i| i.pd.as_str());
    let ends_by_pd = sys.ends_by_pd();
    for pd in &sys.pds {
        let symbols = pd.setvar_symbols(&ends_by_pd);
        let mut first: HashMap<&str, Line> = HashMap::new();
        for &(symbol, line, element) in &symbols {
            if !is_symbol(symbol) {
                out.push(p(
                    line,
                    element,
                    format!("the symbol {} is not a C identifier", shown(symbol)),
                    "name the symbol with letters, digits and `_` only, starting with a letter or `_`",
                ));
            } else if let Some(at) = first.get(symbol) {
                out.push(p(
                    line,
                    element,
                    format!(
                        "`{symbol}` is set a second time in `{}` (first on line {at}): the Microkit tool would patch it with one of the two values, and the program would use the other",
                        pd.name
                    ),
                    "give each setvar its own symbol",
                ));
            } else if MICROKIT_OWN.iter().any(|prefix| symbol.starts_with(prefix)) {
                out.push(p(
                    line,
                    element,
                    format!(
                        "`{symbol}` in `{}` is one of the Microkit tool's own symbols: patched again by the description, the program's channels, interrupts or IPC buffer would be another's",
                        pd.name
                    ),
                    "rename the symbol: names starting with `microkit_` or `__sel4` are Microkit's and seL4's",
                ));
            } else if Some(pd.name.as_str()) == iommu
                && !symbol.starts_with(GENERATED_PADDR_PREFIX)
                && !IOMMU_PD_SYMBOLS.contains(&symbol)
            {
                out.push(p(
                    line,
                    element,
                    format!(
                        "`{symbol}` is set in the IOMMU PD `{}`, which reads only its own symbols: any other word of its image (its policy, its state) could be overwritten at load",
                        pd.name
                    ),
                    format!("set only the IOMMU PD's symbols: {}", IOMMU_PD_SYMBOLS.join(", ")),
                ));
            } else if Some(pd.name.as_str()) == iommu && symbol.starts_with(GENERATED_PADDR_PREFIX) {
                out.push(p(
                    line,
                    element,
                    format!(
                        "`{symbol}` in the IOMMU PD `{}` is a symbol build writes (the physical address of a region devices may reach): set twice, the IOMMU PD could be given another region's address",
                        pd.name
                    ),
                    format!("rename the symbol: names starting with `{GENERATED_PADDR_PREFIX}` are build's"),
                ));
            }
            first.entry(symbol).or_insert(line);
        }
    }
    for (name, line) in &sys.generated.adopted {
        out.push(p(
            *line,
            "memory_region",
            format!(
                "`{name}` is a region build writes for the IOMMU plumbing (its size and use are the IOMMU PD's): declared here too, build would take this one instead"
            ),
            "rename this region (or leave it out: build declares it), or write all of the IOMMU plumbing by hand, naming the regions in <iommu>",
        ));
    }
}

/// `name` for a message: control characters and quotes escaped, so a hostile name cannot
/// break the message's line or pass for another.
pub fn shown(name: &str) -> String {
    format!("\"{}\"", name.escape_debug())
}
