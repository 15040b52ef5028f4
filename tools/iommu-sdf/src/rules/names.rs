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

/// Names given twice.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
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

    for pd in sys.pds.iter().filter(|pd| pd.parent.is_some() && pd.id.is_none()) {
        out.push(p(
            pd.line,
            "protection_domain",
            format!("child protection domain `{}` has no `id`", pd.name),
            "add id=\"...\": its identifier in its parent",
        ));
    }
}
