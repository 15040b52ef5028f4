//! When each PD runs, and on whose scheduling context: the rules that make "every stream
//! aborts before any driver runs" hold (the IOMMU PD first, on its core), and those a
//! passive IOMMU PD needs so that no other PD's budget can hold it.

use crate::model::*;
use crate::problem::{p, Problem};

/// The scheduling rules for the IOMMU PD `iommu` and its `clients`.
pub fn check(sys: &System, iommu: &ProtectionDomain, clients: &[&ProtectionDomain], out: &mut Vec<Problem>) {
    // Priority: the IOMMU PD runs `init` (every stream aborts) before any client runs.
    // That holds on one core only: seL4 schedules each core by priority on its own, so on
    // a multicore system a client on another core could start DMA during that `init`.
    for (j, c) in clients.iter().enumerate() {
        if c.cpu != iommu.cpu {
            out.push(p(
                c.line,
                "protection_domain",
                format!(
                    "client {j} `{}` runs on core {}, the IOMMU PD `{}` on core {}: it could start DMA while the IOMMU PD is still making every stream abort",
                    c.name, c.cpu, iommu.name, iommu.cpu
                ),
                format!("put `{}` on core {} (cpu=\"{}\"), where its lower priority makes it wait", c.name, iommu.cpu, iommu.cpu),
            ));
        }
    }
    for (j, c) in clients.iter().enumerate() {
        if c.priority >= iommu.priority {
            out.push(p(
                c.line,
                "protection_domain",
                format!(
                    "client {j} `{}` has priority {}, not below the IOMMU PD `{}`'s {} (line {}): it could run, and start DMA, before the IOMMU PD has made every stream abort",
                    c.name, c.priority, iommu.name, iommu.priority, iommu.line
                ),
                if iommu.priority == 0 {
                    format!(
                        "give the IOMMU PD `{}` a priority above every client's (no priority attribute means 0)",
                        iommu.name
                    )
                } else {
                    format!(
                        "give `{}` a priority below {} (no priority attribute means 0), or raise the IOMMU PD's",
                        c.name, iommu.priority
                    )
                },
            ));
        }
    }

    if iommu.passive {
        passive(sys, iommu, out);
    }
}

/// A passive IOMMU PD (as it should be: on seL4's MCS kernel a call takes the fastpath only
/// into a passive PD) runs on other PDs' scheduling contexts: a caller's for its call, a
/// child's for its fault (and keeps a faulted child's for good, since it never replies to
/// the fault: the reply would restart the child at its faulting instruction), and its own,
/// which Microkit binds to its notification, for its interrupts. Any of them with a
/// budget under its period could run out in the middle, and the IOMMU PD, with every
/// other client's call and every fault report behind it, would wait for that PD's next
/// period. A passive caller calls on its own caller's context, which this check does not
/// follow, so it is refused; and a faulted child's context would move the IOMMU PD to that
/// child's core.
fn passive(sys: &System, iommu: &ProtectionDomain, out: &mut Vec<Problem>) {
    let not_passive =
        format!("or make the IOMMU PD `{}` not passive (its calls then take seL4's slow path)", iommu.name);
    for vm in &iommu.vms {
        out.push(p(
            vm.line,
            "virtual_machine",
            format!(
                "the passive IOMMU PD `{}` runs the virtual machine `{}`: its vCPU's faults would come on the vCPU's scheduling context, whose budget this check does not know, and the IOMMU PD would keep it",
                iommu.name, vm.name
            ),
            format!("run the virtual machine in a PD of its own, {not_passive}"),
        ));
    }
    let mut refuse =
        |pd: &ProtectionDomain, message: String, fix: String| out.push(p(pd.line, "protection_domain", message, fix));
    let calls = |pd: &ProtectionDomain| {
        sys.channels
            .iter()
            .any(|ch| ch.end_of(&pd.name).is_some_and(|(mine, theirs)| mine.pp && theirs.pd == iommu.name))
    };
    for pd in &sys.pds {
        let child = pd.parent.as_deref() == Some(iommu.name.as_str());
        let role = match (pd.name == iommu.name, child, calls(pd)) {
            (true, _, _) => {
                "the IOMMU PD itself (its interrupts, fault reports among them, come on its own scheduling context)"
            }
            (false, true, _) => "a child of the IOMMU PD (its faults come on its scheduling context)",
            (false, false, true) => "a PD that calls the IOMMU PD",
            (false, false, false) => continue,
        };
        if pd.budget < pd.period {
            refuse(
                pd,
                format!(
                    "`{}`, {role}, has a budget of {} us in each {} us, and the IOMMU PD `{}` is passive (line {}): cut off by that budget, the IOMMU PD, and every client, would wait for `{}`'s next period",
                    pd.name, pd.budget, pd.period, iommu.name, iommu.line, pd.name
                ),
                format!("give `{}` a budget equal to its period, {not_passive}", pd.name),
            );
        }
        if pd.name == iommu.name {
            continue;
        }
        if pd.passive {
            refuse(
                pd,
                format!(
                    "`{}`, {role}, is passive, and so is the IOMMU PD `{}` (line {}): it would come on its own callers' scheduling contexts, whose budgets this check does not follow",
                    pd.name, iommu.name, iommu.line
                ),
                format!("make `{}` not passive, {not_passive}", pd.name),
            );
        }
        if child && pd.cpu != iommu.cpu {
            refuse(
                pd,
                format!(
                    "`{}`, a child of the passive IOMMU PD `{}`, runs on core {}, the IOMMU PD on core {}: its fault would hand the IOMMU PD its scheduling context, and with it core {}",
                    pd.name, iommu.name, pd.cpu, iommu.cpu, pd.cpu
                ),
                format!("put `{}` on core {} (cpu=\"{}\"), {not_passive}", pd.name, iommu.cpu, iommu.cpu),
            );
        }
    }
}
