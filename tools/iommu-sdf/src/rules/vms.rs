//! Virtual machines: a guest's memory is its own.

use crate::model::*;
use crate::problem::{p, Problem};

/// A device passed through to a VM reaches the guest's RAM: none of it may be another
/// PD's memory (only the VMM, which runs the guest, may map it too).
pub fn passthrough_memory(sys: &System, out: &mut Vec<Problem>) {
    for s in sys.io_spaces.iter().filter(|s| s.vm.is_some()) {
        let vmm = s.owner.as_deref().unwrap_or_default();
        for m in &s.iomaps {
            if let Some(other) = sys.pds.iter().find(|pd| pd.name != vmm && pd.maps.iter().any(|x| x.mr == m.mr)) {
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "the guest's `{}` is also mapped by `{}`: `{}`, passed through to the guest, would reach that PD's memory",
                        m.mr, other.name, s.name
                    ),
                    "give the guest memory no other protection domain maps",
                ));
            }
            // Nor may another PD's device reach the guest's RAM.
            let other_device = sys
                .io_spaces
                .iter()
                .filter(|o| o.owner.as_deref() != Some(vmm))
                .find_map(|o| o.iomaps.iter().find(|x| x.mr == m.mr).map(|x| (o.name.as_str(), x.line)));
            let other_cap = sys
                .caps
                .iter()
                .filter(|c| c.pd != vmm && resolve(sys, c).is_some_and(|(mr, _)| mr == m.mr))
                .map(|c| (c.name.as_str(), c.line))
                .next();
            if let Some((what, line)) = other_device.or(other_cap) {
                out.push(p(
                    m.line,
                    "map",
                    format!(
                        "the guest's `{}` is also reachable by a device that is not its VMM's, through `{what}` (line {line})",
                        m.mr
                    ),
                    "give the guest memory that only its VMM's devices may reach",
                ));
            }
        }
    }
}
