//! Fault storms (`<iommu max_faults fault_window_us>`): more than `max_faults` faults of one
//! device within the window quarantine it, and its owner may resume it once a window. What
//! the IOMMU PD does with the two numbers (`iommu_pd::FaultPolicy`, `pds/iommu`'s
//! `FAULT_WINDOW_US` in generic-timer ticks) must still quarantine a storm and still let
//! a quarantined device be resumed.

use crate::board::{Board, BoardIommu};
use crate::model::*;
use crate::problem::{p, Problem};

/// An event record's bytes (Arm IHI 0070, 7.2: 32).
const EVENT_BYTES: u64 = 32;
/// How long the IOMMU PD may leave records in the event queue while they keep coming: its
/// poll period where the SMMU's interrupts are not wired (`pds/iommu`'s `POLL_US`), the
/// slowest of its wake-ups; wired, it is woken at the records.
pub const DRAIN_PERIOD_US: u64 = 10_000;

/// Every fault-storm rule.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let Some(i) = &sys.iommu else { return };
    if i.max_faults == 0 || i.max_faults > u32::MAX as u64 || i.fault_window_us == 0 {
        out.push(p(
            i.line,
            "iommu",
            format!(
                "fault storms are set to more than {} faults in {} us: a device would be quarantined by its first fault, or never",
                i.max_faults, i.fault_window_us
            ),
            "give max_faults between 1 and 4294967295 and fault_window_us of at least 1 (or leave both out: 300 in a second)",
        ));
        return;
    }
    // The IOMMU PD stamps the records of one drain with one time, and a drain holds at
    // most a queue's worth of them, so a storm is counted past `max_faults` only over
    // ceil((max_faults + 1) / entries) drains inside one window. Its queue is the most
    // records a power of two its `eventq` region holds, at most the SMMU's (smmuv3's
    // `queue_log2`): 128 in one page, 2048 in 64 KiB. Where the window cannot
    // hold that many drain periods, a device faulting as fast as the bus lets it may stay
    // under the limit forever, overflowing the queue every device shares (each overflow
    // loses a bystander's record) with nothing quarantined. (An MMU-500 has no shared
    // queue: each device's faults are its own context bank's.)
    if let BoardIommu::SmmuV3 { eventq_log2, .. } = board.iommu {
        // Without the region (another rule's refusal), the smallest it could be: one page.
        let region = i.private.iter().find(|(role, _)| *role == "eventq").and_then(|(_, r)| sys.region(r));
        let records = (region.map_or(PAGE, |r| r.size) / EVENT_BYTES).max(1);
        let entries = (1u64 << records.ilog2()).min(1 << eventq_log2);
        let drains = (i.max_faults + 1).div_ceil(entries);
        let needed = u128::from(drains) * u128::from(DRAIN_PERIOD_US);
        if drains > 1 && u128::from(i.fault_window_us) < needed {
            out.push(p(
                i.line,
                "iommu",
                format!(
                    "max_faults {} needs {drains} drains of the event queue ({entries} records each) inside one fault_window_us of {} us, and the IOMMU PD may drain it only every {DRAIN_PERIOD_US} us: a storm could overflow the queue every device shares and never be quarantined",
                    i.max_faults, i.fault_window_us
                ),
                format!(
                    "give max_faults below {entries} (one drain is then enough), or fault_window_us of at least {needed}"
                ),
            ));
        }
    }
    // RESUME after a storm waits out a window (`FaultPolicy::resume_rest_ms`), and the
    // IOMMU PD counts the window in the generic timer's ticks (`ticks_from_us`, saturating
    // at 2^64 - 1): a window of 2^64 ticks or more never ends, and a device it quarantined
    // is never resumed (its rest outlasts the counter).
    if let Some(hz) = board.timer_hz {
        let ticks = u128::from(i.fault_window_us) * u128::from(hz) / 1_000_000;
        if ticks > u128::from(u64::MAX) {
            let most = u128::from(u64::MAX) * 1_000_000 / u128::from(hz);
            out.push(p(
                i.line,
                "iommu",
                format!(
                    "fault_window_us {} is {ticks} ticks of board {}'s {hz} Hz timer, past 2^64: the IOMMU PD's window never ends, and a device a storm quarantined could never be resumed",
                    i.fault_window_us, board.name
                ),
                format!("give fault_window_us of at most {most}"),
            ));
        }
    }
}
