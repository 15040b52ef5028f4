//! The rules a description must follow for DMA isolation to mean what it says, one
//! module per concern. Each reads the model and adds problems; none depends on another.

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};

mod bars;
mod caps;
mod conventions;
mod device_memory;
mod devices;
mod iommu_pd;
mod limits;
mod mmu500;
pub mod names;
mod pci;
mod platform;
pub mod program_sizes;
mod programs;
mod queues;
mod quotas;
mod reach;
mod regions;
pub mod scheduling;
mod smmuv3;
mod storms;
mod topology;
mod vms;
pub mod warnings;
pub mod x86;

/// Every rule for `board`; problems in description order.
pub fn check(sys: &System, board: &Board) -> Vec<Problem> {
    let mut out = Vec::new();
    names::check(sys, &mut out);
    regions::check(sys, board, &mut out);
    platform::check(sys, board, &mut out);
    limits::check(sys, board, &mut out);
    programs::check(sys, &mut out);
    program_sizes::check(sys, &mut out);
    // Without an IOMMU PD nothing enforces an address space, a capability or a quota, and
    // the checks that need one (its regions, channels, fault rings, pool) are not made: a
    // description with them would only look isolated. Said once, at the first of them.
    if sys.iommu.is_none() {
        let mut ours: Vec<(Line, &str, &str)> = sys
            .io_spaces
            .iter()
            .map(|s| (s.line, "io_address_space", s.name.as_str()))
            .chain(sys.caps.iter().map(|c| (c.line, "dma_capability", c.name.as_str())))
            .chain(sys.quotas.iter().map(|q| (q.line, "dma_quota", q.pd.as_str())))
            .collect();
        ours.sort_by_key(|o| o.0);
        if let Some(&(line, element, name)) = ours.first() {
            out.push(p(
                line,
                element,
                format!(
                    "`{name}` is an {element}, but there is no <iommu>: no IOMMU PD would enforce it or the {} other DMA element(s), and the checks that need one were not made",
                    ours.len() - 1
                ),
                "add <iommu pd=\"...\" stream_table=\"...\" cmdq=\"...\" eventq=\"...\" context_descriptors=\"...\" table_pool=\"...\" /> naming the IOMMU PD and its regions, or remove the DMA elements for plain Microkit",
            ));
        }
    }
    devices::check(sys, board, &mut out);
    mmu500::check(sys, board, &mut out);
    smmuv3::check(sys, board, &mut out);
    caps::check(sys, &mut out);
    reach::check(sys, &mut out);
    quotas::check(sys, &mut out);
    storms::check(sys, board, &mut out);
    queues::check(sys, board, &mut out);
    vms::check(sys, &mut out);
    pci::check(sys, board, &mut out);
    bars::check(sys, board, &mut out);
    topology::check(sys, board, &mut out);
    device_memory::check(sys, board, &mut out);
    conventions::conventions(sys, &mut out);
    if let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) {
        iommu_pd::check(iommu, &mut out);
    }
    out.sort_by_key(|p| p.line);
    out
}

/// The IOMMU PD's map `m` of device registers `what` (the SMMU's, ECAM) is cached,
/// Microkit's default: as Normal memory, `consequence`.
fn cached_registers(m: &Map, what: &str, consequence: &str) -> Problem {
    p(
        m.line,
        "map",
        format!("the IOMMU PD maps {what} cached (Microkit's default): as Normal memory {consequence}"),
        "add cached=\"false\" to this map (Device memory)",
    )
}

/// The IOMMU PD's map `m` of `what` (its registers, a table or queue, ECAM) lacks read or
/// write: it writes them at boot before any stream aborts, so the first write faults it
/// there and leaves every stream as the SMMU resets (booted: SMMU_GBPA's write, the
/// stream table's first entry; QEMU 7.2 then bypasses).
fn read_write(m: &Map, what: &str) -> Problem {
    p(
        m.line,
        "map",
        format!(
            "the IOMMU PD maps {what} without {}: it writes and reads it in setting the SMMU up, before any stream aborts, and the first access it lacks faults it there",
            match (m.perms.read, m.perms.write) {
                (true, false) => "write",
                (false, true) => "read",
                _ => "read and write",
            }
        ),
        "map it perms=\"rw\"",
    )
}
