//! The symbols `check` lets a description set in the IOMMU PD (`IOMMU_PD_SYMBOLS`) are
//! the ones the IOMMU PD's source reads (`var!`, `memory_region_symbol!`, and the
//! `region!(vaddr, size, paddr)` it builds from them): a symbol it reads that the list
//! lacks would make `check` refuse every description, and one the list has that it does
//! not read would let a description patch a word nobody expects to change.

use std::collections::BTreeSet;
use std::path::Path;

/// Every symbol named in `macro!(...)` calls of `source`: the identifiers before `:` or
/// between commas, up to the closing parenthesis.
fn symbols_in(source: &str, macro_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let open = format!("{macro_name}!(");
    for (i, _) in source.match_indices(&open) {
        // Not a definition (`macro_rules! region {`) nor a `$placeholder`.
        let args = &source[i + open.len()..];
        let Some(end) = args.find(')') else { continue };
        for arg in args[..end].split(',') {
            let name = arg.split(':').next().unwrap_or("").trim();
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.push(name.to_string());
            }
        }
    }
    out
}

#[test]
fn the_iommu_pd_reads_exactly_the_symbols_check_allows() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pds/iommu/src");
    let mut read = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            for m in ["var", "memory_region_symbol", "region"] {
                read.extend(symbols_in(&source, m));
            }
        }
    }
    let allowed: BTreeSet<String> = iommu_sdf::rules::names::IOMMU_PD_SYMBOLS.iter().map(|s| s.to_string()).collect();
    assert!(read.len() >= 10, "found only {read:?} in {}", dir.display());
    assert_eq!(read, allowed);
}
