//! The IOMMU's own memory (its registers, tables, queues and pool): no device reaches it,
//! and no PD or guest but the IOMMU PD itself maps it. Another name for the same bytes is
//! refused by `regions` (no two fixed regions overlap), so a rule by name is a rule by
//! memory.

use crate::model::*;
use crate::problem::{p, Problem};

/// Every rule on the IOMMU's own memory.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    let own = sys.iommu_own();
    let role_of = |mr: &str| own.iter().find(|(_, name)| *name == mr).map(|&(role, _)| role);
    for (mr, line, element) in sys.dma_grants() {
        if let Some(role) = role_of(mr) {
            out.push(p(
                line,
                element,
                format!(
                    "devices could reach `{mr}`, {}: with the IOMMU's own tables or queues or its registers, a device could rewrite its own translation and reach any memory",
                    own_role(role)
                ),
                "never grant or iomap the IOMMU PD's own regions",
            ));
        }
    }

    // Only the IOMMU PD maps its own regions, and not into a guest: a PD (or a guest) that
    // can write the SMMU's registers, stream table or queues can point any stream at any
    // memory, and one that can read them learns every other client's mappings.
    let Some(i) = &sys.iommu else { return };
    for pd in &sys.pds {
        for (m, vm) in pd.all_maps() {
            let Some(role) = role_of(&m.mr) else { continue };
            if pd.name == i.pd && vm.is_none() {
                continue;
            }
            let who = match vm {
                Some(v) => format!("the guest `{}` of `{}`", v.name, pd.name),
                None => format!("`{}`", pd.name),
            };
            out.push(p(
                m.line,
                "map",
                format!(
                    "{who} maps `{}`, {}, which only the IOMMU PD `{}` may map, or {who} could point its devices at any memory",
                    m.mr,
                    own_role(role),
                    i.pd
                ),
                "remove this map: the IOMMU PD alone maps the SMMU's registers, tables and queues",
            ));
        }
    }
}
