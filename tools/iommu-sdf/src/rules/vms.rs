//! Virtual machines: a guest's memory is its own. Every map of a guest counts (RAM or
//! device memory, `cached` or not): as its VMM's for the rules on who maps what, and here
//! as the guest's, which no other guest, no other PD's device and no capability may reach.

use crate::model::*;
use crate::problem::{p, Problem};

/// Every rule on guests' memory.
pub fn check(sys: &System, out: &mut Vec<Problem>) {
    let mappers = sys.mapper_index();
    // The guest whose memory each region is (the first guest that maps it).
    let guests: std::collections::HashMap<&str, (&ProtectionDomain, &VirtualMachine)> =
        mappers.iter().filter_map(|(mr, all)| all.iter().find_map(|&(pd, _, v)| v.map(|v| (*mr, (pd, v))))).collect();
    for pd in &sys.pds {
        for vm in &pd.vms {
            for m in &vm.maps {
                let all = mappers.get(m.mr.as_str()).map(Vec::as_slice).unwrap_or_default();
                // One guest per region: two guests sharing memory reach each other, and a
                // device passed through to one reaches the other.
                if let Some((other_pd, other, Some(v))) =
                    all.iter().find(|(_, x, v)| v.is_some_and(|v| v.name != vm.name) && x.line < m.line)
                {
                    out.push(p(
                        m.line,
                        "map",
                        format!(
                            "the guest `{}` maps `{}`, which the guest `{}` of `{}` maps too (line {})",
                            vm.name, m.mr, v.name, other_pd.name, other.line
                        ),
                        "give each virtual machine memory of its own",
                    ));
                }
                // A guest with a device passed through: its RAM is no other PD's.
                let passthrough = sys.io_spaces.iter().any(|s| s.vm.as_deref() == Some(vm.name.as_str()));
                if passthrough && m.cached {
                    if let Some((other, x, _)) = all.iter().find(|(o, _, v)| o.name != pd.name && v.is_none()) {
                        out.push(p(
                            m.line,
                            "map",
                            format!(
                                "the guest's `{}` is also mapped by `{}` (line {}): a device passed through to the guest would reach that PD's memory",
                                m.mr, other.name, x.line
                            ),
                            "give the guest memory no other protection domain maps",
                        ));
                    }
                }
            }
        }
    }
    // No capability over a guest's memory: the guest's devices reach it as the guest maps
    // it, and a VMM that could lend it would hand the guest's memory to another PD.
    for c in &sys.caps {
        let Some((mr, _)) = resolve(sys, c) else { continue };
        if let Some(&(vmm, vm)) = guests.get(mr) {
            out.push(p(
                c.line,
                "dma_capability",
                format!(
                    "`{}` names `{mr}`, memory of the guest `{}` (run by `{}`): a capability would let it be mapped for, or lent to, another device",
                    c.name, vm.name, vmm.name
                ),
                "a guest's memory reaches devices only passed through to it (io_address_space vm=\"...\"): remove the capability",
            ));
        }
    }
    // A device passed through to a guest reaches the guest's RAM and nothing else: no
    // capability may name it, or be lent to its VMM (lent, the VMM could map it for any of
    // its devices, that one included).
    let passed: std::collections::HashMap<&str, &IoSpace> =
        sys.io_spaces.iter().filter(|s| s.vm.is_some()).map(|s| (s.name.as_str(), s)).collect();
    let passed_by_owner: std::collections::HashMap<&str, &IoSpace> =
        passed.values().filter_map(|s| Some((s.owner.as_deref()?, *s))).collect();
    for c in &sys.caps {
        if let Some(s) = c.devices.iter().find_map(|d| passed.get(d.as_str())) {
            out.push(p(
                c.line,
                "dma_capability",
                format!(
                    "`{}` is for `{}`, which is passed through to the guest `{}` and reaches its RAM only",
                    c.name,
                    s.name,
                    s.vm.as_deref().unwrap_or_default()
                ),
                format!("remove `{}` from devices=\"...\"", s.name),
            ));
        }
        for g in &c.grant_to {
            if let Some(s) = passed_by_owner.get(g.as_str()) {
                out.push(p(
                    c.line,
                    "dma_capability",
                    format!(
                        "`{}` may be lent to `{g}`, the VMM of the guest `{}`, whose device `{}` reaches the guest's RAM only: lent, it could be mapped for that device",
                        c.name,
                        s.vm.as_deref().unwrap_or_default(),
                        s.name
                    ),
                    format!("remove `{g}` from grant_to"),
                ));
            }
        }
    }
    // A guest's memory is reached only by the devices passed through to that guest.
    for s in &sys.io_spaces {
        for m in &s.iomaps {
            let Some(&(vmm, vm)) = guests.get(m.mr.as_str()) else { continue };
            if s.vm.as_deref() == Some(vm.name.as_str()) {
                continue;
            }
            out.push(p(
                m.line,
                m.element(),
                format!(
                    "`{}` reaches `{}`, memory of the guest `{}` (run by `{}`), and is not passed through to it",
                    s.name, m.mr, vm.name, vmm.name
                ),
                "give the guest memory that only its own devices may reach",
            ));
        }
    }
}
