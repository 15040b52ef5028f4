//! What a board's SMMUv3 takes of the description: the lines of the interrupts the IOMMU
//! PD takes as its SMMU's. pds/iommu counts the SMMU's interrupts as wired when it has ids
//! 10 and 11 (`IOMMU_PD_IRQS`), whatever their lines, and then waits on them instead of
//! polling: on another line it would wait for an interrupt that never comes, reading no
//! fault and stopping no storm until a request wakes it.

use crate::board::{Board, BoardIommu};
use crate::model::*;
use crate::problem::{p, Problem};

/// Ids 10 and 11 of the IOMMU PD, where it has them, are the board's event-queue and
/// global-error lines.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let BoardIommu::SmmuV3 { irqs: (eventq, gerror), .. } = board.iommu else { return };
    let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) else { return };
    for (id, what, line) in [(10, "event queue's", eventq), (11, "global errors'", gerror)] {
        for i in iommu.irqs.iter().filter(|i| i.id == id && i.irq.is_some_and(|n| n != line)) {
            out.push(p(
                i.line,
                "irq",
                format!(
                    "the IOMMU PD `{}` takes interrupt {} on id {id} as its SMMU's {what}, and board {}'s SMMUv3 raises it on {line}",
                    iommu.name,
                    i.irq.unwrap_or_default(),
                    board.name
                ),
                format!("give id {id} irq=\"{line}\", or no interrupt on ids 10 and 11 (the IOMMU PD then polls on the timer's, irq 30 on id 12)"),
            ));
        }
    }
}
