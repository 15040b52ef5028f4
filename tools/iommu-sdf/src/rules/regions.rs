//! Memory regions: what the Microkit tool would make of them.

use crate::model::*;
use crate::problem::{p, Problem};

/// Regions and the references to them that the Microkit tool resolves.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    // A setvar of a region that does not exist: the Microkit tool 2.3 panics on it.
    for pd in &sys.pds {
        for v in pd.setvars.iter().filter(|v| v.region_paddr.as_deref().is_some_and(|r| sys.region(r).is_none())) {
            out.push(p(
                v.line,
                "setvar",
                format!(
                    "`{}` is to get the physical address of `{}`, which is no memory_region",
                    v.symbol,
                    v.region_paddr.as_deref().unwrap_or("")
                ),
                "name a memory_region in region_paddr",
            ));
        }
    }
}
