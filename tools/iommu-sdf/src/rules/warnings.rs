//! What is allowed but probably not meant: printed as warnings, never refused (the exit
//! status stays 0). Each says what the description does and what the user may have wanted.

use crate::board::{Board, Target};
use crate::model::*;
use crate::problem::{p, Problem};

/// Every warning, in description order.
pub fn check(sys: &System, board: &Board) -> Vec<Problem> {
    let mut out = Vec::new();
    if sys.iommu.is_none() {
        return out;
    }
    // A quota of nothing: the PD holds capabilities it can never map.
    for q in &sys.quotas {
        let holds = sys.caps.iter().any(|c| c.pd == q.pd);
        if holds && (q.mappings == 0 || q.pages == 0) {
            out.push(p(
                q.line,
                "dma_quota",
                format!(
                    "`{}`'s quota is {} mapping(s) of {} page(s): it can map none of its capabilities",
                    q.pd, q.mappings, q.pages
                ),
                "give it the mappings and pages its driver needs at once",
            ));
        }
    }
    // `domain_id` is Microkit's VT-d domain on x86; on Arm each device already has an
    // address space of its own and the attribute changes nothing.
    if board.target == Target::Arm {
        for s in sys.io_spaces.iter().filter(|s| s.domain_id.is_some()) {
            out.push(p(
                s.line,
                "io_address_space",
                format!(
                    "`{}` has a domain_id, which means nothing on Arm: each device has its own address space",
                    s.name
                ),
                "remove domain_id (on x86_64 the Microkit tool uses it for VT-d)",
            ));
        }
    }
    // DMA into memory other PDs map too: they see what the device writes, and can change
    // what it reads while it reads it. Sometimes meant (a shared buffer), often not.
    let mappers = sys.mapper_index();
    for c in sys.caps.iter().filter(|c| c.mr.is_some()) {
        let Some((mr, _)) = resolve(sys, c) else { continue };
        let others: Vec<&str> = mappers
            .get(mr)
            .into_iter()
            .flatten()
            .map(|(pd, _, _)| pd.name.as_str())
            .filter(|n| *n != c.pd && Some(*n) != sys.iommu.as_ref().map(|i| i.pd.as_str()))
            .collect();
        if let Some(first) = others.first() {
            out.push(p(
                c.line,
                "dma_capability",
                format!(
                    "`{}` lets `{}`'s devices reach `{mr}`, which `{first}`{} also map{}: they see what the device writes",
                    c.name,
                    c.pd,
                    if others.len() > 1 { " and others" } else { "" },
                    if others.len() > 1 { "" } else { "s" }
                ),
                "if the region is not meant to be shared, map it in the capability's holder only",
            ));
        }
    }
    out.sort_by_key(|w| w.line);
    out
}
