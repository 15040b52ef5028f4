//! PCI configuration space has one owner, the IOMMU PD. Whoever can write a function's
//! configuration space can move its BARs under another driver's window, turn its bus
//! mastering off or on, or renumber buses (and so change the requester ID the SMMU turns
//! into a StreamID); the IOMMU PD owns the SMMU, so it owns this too, and drivers reach
//! their own function through its CONFIG_READ/CONFIG_WRITE calls.
//!
//! Which region is ECAM: the one the IOMMU PD maps with `setvar_vaddr="ecam"` (as the
//! SMMU's registers are the one it maps as `smmu_regs`), which is also how the IOMMU PD
//! finds it. Then no other PD and no guest may map that region, and no device may reach
//! it by DMA. A description whose IOMMU PD maps no ECAM leaves configuration space where
//! it is (and `check` cannot tell which region it is).

use crate::model::*;
use crate::problem::{p, Problem};

/// The symbol the IOMMU PD finds ECAM through.
pub const ECAM: &str = "ecam";

/// Every rule about configuration space.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) else { return };
    let Some(ecam) = iommu.maps.iter().find(|m| m.setvar_vaddr.as_deref() == Some(ECAM)) else { return };
    let mr = ecam.mr.as_str();
    for pd in &sys.pds {
        for (m, vm) in pd.all_maps().filter(|(m, _)| m.mr == mr) {
            if pd.name == iommu.name && vm.is_none() {
                continue;
            }
            let who = match vm {
                Some(vm) => format!("virtual machine `{}` (run by `{}`)", vm.name, pd.name),
                None => format!("`{}`", pd.name),
            };
            out.push(p(
                m.line,
                "map",
                format!(
                    "{who} maps `{mr}`, PCI configuration space (the IOMMU PD `{}` maps it as ecam): only the IOMMU PD may, or a driver could move another device's BAR, stop its bus mastering or renumber buses",
                    iommu.name
                ),
                "remove the map: the driver reads and writes its own function through the IOMMU PD (CONFIG_READ/CONFIG_WRITE)",
            ));
        }
    }
    for c in &sys.caps {
        if resolve(sys, c).is_some_and(|(r, _)| r == mr) {
            out.push(p(
                c.line,
                "dma_capability",
                format!("`{}` lets a device reach `{mr}`, PCI configuration space", c.name),
                "give DMA capabilities over memory, never over ECAM",
            ));
        }
    }
    for s in &sys.io_spaces {
        for m in s.iomaps.iter().filter(|m| m.mr == mr) {
            out.push(p(
                m.line,
                "iomap",
                format!("`{}` iomaps `{mr}`, PCI configuration space, for its device", s.name),
                "iomap memory, never ECAM",
            ));
        }
    }
}
