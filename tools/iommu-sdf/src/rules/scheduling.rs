//! When each PD runs, and on whose scheduling context: the rules that make "every stream
//! aborts before any driver runs" hold (the IOMMU PD first, on its core), and those a
//! passive IOMMU PD needs so that no other PD's budget can hold it.

use crate::model::*;
use crate::problem::{p, Problem};

/// Whether `pd` can program a device, or make another PD run: it maps memory with a fixed
/// physical address (a device's registers, ECAM, a BAR) or device memory
/// (`cached="false"`), itself or in a guest it runs, or it holds another PD's TCB or
/// scheduling context (`<cspace>`), with which it could raise that PD's priority up to
/// its own or start it.
fn drives_devices(sys: &System, pd: &ProtectionDomain) -> bool {
    pd.all_maps().any(|(m, _)| !m.cached || sys.region(&m.mr).is_some_and(|r| r.phys_addr.is_some()))
        || pd.cspace.iter().any(|(kind, of, _)| matches!(kind.as_str(), "tcb" | "sc") && *of != pd.name)
}

/// The scheduling rules for the IOMMU PD `iommu` and its `clients`.
pub fn check(sys: &System, iommu: &ProtectionDomain, clients: &[&ProtectionDomain], out: &mut Vec<Problem>) {
    // The IOMMU PD has no parent: a parent holds its TCB, and could stop it, or restart it
    // anywhere, with its streams in any state.
    if let Some(parent) = &iommu.parent {
        out.push(p(
            iommu.line,
            "protection_domain",
            format!(
                "the IOMMU PD `{}` is a child of `{parent}`, which could stop it or rewrite it through its TCB",
                iommu.name
            ),
            "make the IOMMU PD a top-level protection domain (directly in <system>)",
        ));
    }
    // Its TCB, scheduling context and address space are its own: a PD holding one could
    // stop it, rewrite it or starve it.
    for pd in &sys.pds {
        for (kind, _, line) in pd.cspace.iter().filter(|(_, of, _)| *of == iommu.name) {
            out.push(p(
                *line,
                &format!("cap_{kind}"),
                format!(
                    "`{}` is given the IOMMU PD `{}`'s {kind} capability: with it, it could stop the IOMMU PD, rewrite it or take its time",
                    pd.name, iommu.name
                ),
                "remove this capability: no PD holds the IOMMU PD's objects",
            ));
        }
        // Secure Monitor Calls reach the firmware at EL3, which may reconfigure the SMMU
        // or memory behind the IOMMU PD's back: nothing here can bound what it does.
        if pd.smc {
            out.push(p(
                pd.line,
                "protection_domain",
                format!("`{}` may make Secure Monitor Calls (smc=\"true\"): the firmware it reaches is outside what this tool can prove", pd.name),
                "remove smc=\"true\"",
            ));
        }
    }
    // `init` runs on the IOMMU PD's own scheduling context: one with a budget under its
    // period could be cut off in the middle of making every stream abort, and the drivers
    // would run first.
    if iommu.budget < iommu.period && !iommu.passive {
        out.push(p(
            iommu.line,
            "protection_domain",
            format!(
                "the IOMMU PD `{}` has a budget of {} us in each {} us: its `init` could be cut off before every stream aborts, and the drivers run",
                iommu.name, iommu.budget, iommu.period
            ),
            "give the IOMMU PD a budget equal to its period",
        ));
    }
    // Who must wait for the IOMMU PD's `init`: every client, and every other PD that can
    // program a device, client or not (its device's streams abort only after `init`).
    let mut subjects: Vec<(&ProtectionDomain, String)> =
        clients.iter().enumerate().map(|(j, c)| (*c, format!("client {j} `{}`", c.name))).collect();
    for pd in &sys.pds {
        if pd.name != iommu.name && !clients.iter().any(|c| c.name == pd.name) && drives_devices(sys, pd) {
            subjects.push((
                pd,
                format!("`{}`, which maps device memory or holds another PD's TCB or scheduling context,", pd.name),
            ));
        }
    }
    // Domains: seL4 runs each scheduling domain in its own time slot whatever the
    // priorities, so a PD in another domain than the IOMMU PD's could run first.
    if sys.domains.is_some() {
        for (pd, who) in &subjects {
            if pd.domain != iommu.domain {
                out.push(p(
                    pd.line,
                    "protection_domain",
                    format!(
                        "{who} is in scheduling domain {}, the IOMMU PD `{}` in {}: its domain's time slot could come first, and its device start DMA before every stream aborts",
                        pd.domain.as_deref().unwrap_or("(none)"),
                        iommu.name,
                        iommu.domain.as_deref().unwrap_or("(none)")
                    ),
                    format!("put it in the IOMMU PD's domain (domain=\"{}\")", iommu.domain.as_deref().unwrap_or("...")),
                ));
            }
        }
    }
    // Priority: the IOMMU PD runs `init` (every stream aborts) before any of them runs.
    // That holds on one core only: seL4 schedules each core by priority on its own, so on
    // a multicore system a PD on another core could start DMA during that `init`.
    for (c, who) in &subjects {
        if c.cpu != iommu.cpu {
            out.push(p(
                c.line,
                "protection_domain",
                format!(
                    "{who} runs on core {}, the IOMMU PD `{}` on core {}: it could start DMA while the IOMMU PD is still making every stream abort",
                    c.cpu, iommu.name, iommu.cpu
                ),
                format!("put `{}` on core {} (cpu=\"{}\"), where its lower priority makes it wait", c.name, iommu.cpu, iommu.cpu),
            ));
        }
    }
    for (c, who) in &subjects {
        if c.priority >= iommu.priority {
            out.push(p(
                c.line,
                "protection_domain",
                format!(
                    "{who} has priority {}, not below the IOMMU PD `{}`'s {} (line {}): it could run, and start DMA, before the IOMMU PD has made every stream abort",
                    c.priority, iommu.name, iommu.priority, iommu.line
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

    // A guest's vCPUs are scheduled by their own priority and cores once its VMM starts
    // them; a VMM on another core, or one the IOMMU PD's rules missed, must not be all
    // that keeps a guest's driver from running first.
    for pd in &sys.pds {
        for vm in &pd.vms {
            let core = vm.vcpu_cpus.iter().find(|&&c| c != iommu.cpu);
            if vm.priority >= iommu.priority || core.is_some() {
                out.push(p(
                    vm.line,
                    "virtual_machine",
                    format!(
                        "the guest `{}` of `{}` runs {}: its driver could start DMA before the IOMMU PD `{}` has made every stream abort",
                        vm.name,
                        pd.name,
                        match core {
                            Some(c) => format!("a vCPU on core {c}, the IOMMU PD on core {}", iommu.cpu),
                            None => format!("at priority {}, not below the IOMMU PD's {}", vm.priority, iommu.priority),
                        },
                        iommu.name
                    ),
                    format!(
                        "give the virtual machine a priority below {} and its vCPUs core {}",
                        iommu.priority, iommu.cpu
                    ),
                ));
            }
        }
    }

    if iommu.passive {
        passive(sys, iommu, out);
    } else if let Some(element) = sys.iommu.as_ref().filter(|e| e.trust_callers_not_to_send) {
        // A word of trust that guards nothing would read as if something rested on it.
        out.push(p(
            element.line,
            "iommu",
            format!(
                "trust_callers_not_to_send on <iommu>, but the IOMMU PD `{}` is not passive (line {}): it takes a send on its own scheduling context, so nothing rests on that trust",
                iommu.name, iommu.line
            ),
            "remove trust_callers_not_to_send, or make the IOMMU PD passive (passive=\"true\") if its callers are trusted",
        ));
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
    let callers: Vec<&str> = sys.callers_of(&iommu.name).iter().map(|pd| pd.name.as_str()).collect();
    let calls = |pd: &ProtectionDomain| callers.contains(&pd.name.as_str());
    // A caller that sends instead of calling (any holder of a `pp` end may: Microkit gives
    // it the endpoint with every right), or a child that sends on its fault endpoint (the
    // IOMMU PD's endpoint too), lends no scheduling context, so the passive IOMMU PD takes
    // the message with none and never runs again (seL4's MCS `sendIPC`; seL4 issue 1616);
    // so can a PD holding one of their TCBs make it send (`System::senders_to`).
    // No description can show that a PD only calls: the author must say so.
    let senders: Vec<&str> = sys.senders_to(&iommu.name).iter().map(|pd| pd.name.as_str()).collect();
    if let Some(element) = sys.iommu.as_ref().filter(|e| !e.trust_callers_not_to_send && !senders.is_empty()) {
        out.push(p(
            element.line,
            "iommu",
            format!(
                "the IOMMU PD `{}` is passive (line {}), and {} can stop it for good by sending to it instead of calling (a caller's channel and a child's fault endpoint are both its endpoint, and a PD holding one of their TCBs, as a parent does, can make it send): a send lends it no scheduling context, so it would take the message with none and never run again, every client's call, fault report and teardown waiting behind it",
                iommu.name,
                iommu.line,
                match senders.as_slice() {
                    [one] => format!("`{one}`"),
                    all => format!("any of {}", all.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")),
                }
            ),
            format!(
                "make the IOMMU PD `{}` not passive (its calls then take seL4's slow path), or, if every one of those PDs runs code trusted to call and never send, say so with trust_callers_not_to_send=\"true\" on <iommu>",
                iommu.name
            ),
        ));
    }
    let mut refuse =
        |pd: &ProtectionDomain, message: String, fix: String| out.push(p(pd.line, "protection_domain", message, fix));
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
        // A call moves the IOMMU PD to the caller's core as a fault does: there it runs at
        // its priority among that core's PDs, where one above it that never blocks would
        // hold it in the call, every other client's call and every drain of the event
        // queue behind it.
        if pd.cpu != iommu.cpu {
            let (what, hands) = if child { ("a child of", "its fault") } else { ("calling", "its call") };
            refuse(
                pd,
                format!(
                    "`{}`, {what} the passive IOMMU PD `{}`, runs on core {}, the IOMMU PD on core {}: {hands} would hand the IOMMU PD its scheduling context, and with it core {}",
                    pd.name, iommu.name, pd.cpu, iommu.cpu, pd.cpu
                ),
                format!("put `{}` on core {} (cpu=\"{}\"), {not_passive}", pd.name, iommu.cpu, iommu.cpu),
            );
        }
    }
}
