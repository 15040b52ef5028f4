//! What the board and the Microkit tool take: an IOMMU the IOMMU PD drives, no x86 I/O
//! ports on Arm, every map below the top of its address space, clear of address 0 and of
//! the PD's program, and each id in a PD used once. The generated plumbing is in the model, so it is held to these too: what `build`
//! writes, the Microkit tool must accept as it is.

use std::collections::HashMap;

use crate::board::{Board, BoardIommu, Target};
use crate::model::*;
use crate::problem::{p, Problem};

/// The most protection domains the Microkit tool takes in a system (its `MAX_PDS`).
pub const MAX_PDS: usize = 63;

/// Every platform rule.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    if let (Some(i), Target::Arm) = (&sys.iommu, board.target) {
        let has = match board.iommu {
            // An MMU-500's own limits (context banks, SMRs, StreamIDs) are `mmu500`'s.
            BoardIommu::SmmuV3 { .. } | BoardIommu::Mmu500(_) => None,
            _ => Some("no SMMU this tool knows of"),
        };
        if let Some(has) = has {
            out.push(p(
                i.line,
                "iommu",
                format!(
                    "board {} has {has}: no stream would be made to abort, whatever this description says",
                    board.name
                ),
                "build for a board whose SMMU the IOMMU PD drives (--board qemu_virt_aarch64, zcu102, ultra96v2, kria_k26 or tqma8xqp1gb)",
            ));
        }
    }
    // The SMMU's registers are the region mapped as `smmu_regs`: it must be the board's
    // whole register frame, or the part left out (SMMUv3: page 1, with the queues'
    // pointers; MMU-500: the context banks) is an ordinary region another PD or a device
    // may be given.
    if let (Some(m), Some((base, size))) = (sys.smmu_regs(), board.smmu_frame()) {
        if let Some(r) = sys.region(&m.mr).filter(|r| r.phys_addr != Some(base) || r.size != size) {
            out.push(p(
                r.line,
                "memory_region",
                format!(
                    "`{}`, the SMMU's registers (mapped as smmu_regs), is at {} with {:#x} bytes; board {}'s SMMU register frame is {base:#x} with {size:#x}",
                    r.name,
                    r.phys_addr.map_or("no fixed address".to_string(), |a| format!("{a:#x}")),
                    r.size,
                    board.name
                ),
                format!("declare it phys_addr=\"{base:#x}\" size=\"{size:#x}\""),
            ));
        }
    }
    // The Microkit tool takes at most MAX_PDS protection domains (`MAX_PDS`).
    if let Some(pd) = sys.pds.get(MAX_PDS) {
        out.push(p(
            pd.line,
            "protection_domain",
            format!(
                "`{}` is protection domain number {}, and the Microkit tool takes at most {MAX_PDS}",
                pd.name,
                MAX_PDS + 1
            ),
            "use fewer protection domains",
        ));
    }
    calls(sys, out);
    // Boot information of the other architecture: the SDK's tool builds it, and the image
    // boots (a region `x86_vbe` on QEMU virt), but an Arm seL4 gives no x86 kind and an
    // x86 one no device tree (src/arch/x86/kernel/boot.c), and the capDL initialiser fills
    // a region only from what seL4 gave, so what the PD reads there is not what it asked for.
    for r in &sys.regions {
        let Some(kind) = r.prefill_bootinfo.as_deref() else { continue };
        let (what, fix) = match (board.target, kind.starts_with("x86_")) {
            (Target::Arm, true) => {
                ("x86's boot information", "remove prefill_bootinfo, or use fdt (the device tree) on Arm")
            }
            (Target::X86_64, false) if kind == "fdt" => {
                ("the device tree", "remove prefill_bootinfo, or use x86's (x86_acpi_rsdp, x86_mbmmap...) on x86")
            }
            _ => continue,
        };
        let arch = if board.target == Target::Arm {
            "an Arm board, whose seL4 gives none"
        } else {
            "an x86 board, whose seL4 gives none"
        };
        out.push(p(
            r.line,
            "memory_region",
            format!("`{}` is prefilled with `{kind}`, {what}, and board {} is {arch}", r.name, board.name),
            fix,
        ));
    }
    let ends_by_pd = sys.ends_by_pd();
    for pd in &sys.pds {
        irqs(pd, board, out);
        if board.target == Target::Arm {
            for &line in &pd.ioports {
                out.push(p(
                    line,
                    "ioport",
                    format!("`{}` has an x86 I/O port, and board {} is an Arm board", pd.name, board.name),
                    "remove the <ioport>: Arm has no I/O port space",
                ));
            }
        }
        // Each map ends below the PD's stack (as large as its stack_size says), or, for a
        // guest, the top of its address space.
        for (m, vm) in pd.all_maps() {
            let (Some(vaddr), Some(r)) = (m.vaddr, sys.region(&m.mr)) else { continue };
            let limit = if vm.is_some() { board.vm_vaddr_end } else { board.pd_map_end(pd.stack_size) };
            let end = u128::from(vaddr) + u128::from(r.size);
            if end > u128::from(limit) {
                let generated = m.line == sys.iommu.as_ref().map_or(0, |i| i.line);
                out.push(p(
                    m.line,
                    if generated { "iommu" } else { "map" },
                    format!(
                        "{}`{}` at {vaddr:#x}..{end:#x} in `{}` runs past {limit:#x}, where the Microkit tool's address space for it ends",
                        if generated { "the generated map of " } else { "" },
                        m.mr,
                        pd.name
                    ),
                    if generated {
                        "map the IOMMU PD's own regions lower: build places its maps above the highest one"
                    } else {
                        "map it lower"
                    },
                ));
            }
        }
        address_space(sys, board, pd, out);
        maps_fit(sys, pd, out);
        // Channel ends and interrupts share one id space in a PD. A clash is reported at the
        // PD, as the Microkit tool reports it; generated channels (on the <iommu> line)
        // come first, so the message names the user's element as the second.
        let generated = sys.iommu.as_ref().map_or(0, |i| i.line);
        let mut ids: HashMap<u64, Line> = HashMap::new();
        let ends = ends_by_pd.get(pd.name.as_str()).into_iter().flatten().map(|(mine, _)| (mine.id, mine.line, "end"));
        let mut all: Vec<(u64, Line, &str)> = pd.irqs.iter().map(|i| (i.id, i.line, "irq")).chain(ends).collect();
        all.sort_by_key(|&(_, line, _)| (line != generated, line));
        for (id, line, element) in all {
            let element = if line == generated { "iommu" } else { element };
            if id > MAX_ID {
                out.push(p(
                    line,
                    element,
                    format!("id {id} in `{}` is above {MAX_ID}, the highest the Microkit tool takes", pd.name),
                    format!("use an id from 0 to {MAX_ID}"),
                ));
            }
            if let Some(first) = ids.insert(id, line) {
                let first = if first == generated {
                    "by build's channel to the IOMMU PD".to_string()
                } else {
                    format!("on line {first}")
                };
                out.push(p(
                    pd.line,
                    "protection_domain",
                    format!(
                        "id {id} in `{}` is used twice, on line {line} and {first}: a channel and an interrupt, or two channels, would be one event",
                        pd.name
                    ),
                    "give each channel end and interrupt of a PD its own id",
                ));
            }
        }
    }
}

/// Each address space's maps (a PD's own, and each of its guests') as the Microkit tool
/// checks them (sdf.rs, `check_maps`): each `vaddr` a multiple of its region's page size
/// (as given: the tool checks before it chooses larger pages), and no two sharing an
/// address, reported at the later map.
fn maps_fit(sys: &System, pd: &ProtectionDomain, out: &mut Vec<Problem>) {
    let spaces = std::iter::once((&pd.name, &pd.maps)).chain(pd.vms.iter().map(|vm| (&vm.name, &vm.maps)));
    for (space, maps) in spaces {
        let mut placed = Vec::new();
        for m in maps {
            let (Some(vaddr), Some(r)) = (m.vaddr, sys.region(&m.mr)) else { continue };
            // A page size the board does not have is the region's problem (`regions`).
            let page = r.page_size.unwrap_or(PAGE);
            if crate::board::PAGE_SIZES.contains(&page) && vaddr % page != 0 {
                out.push(p(
                    m.line,
                    map_element(sys, m),
                    format!(
                        "`{}` is mapped at {vaddr:#x} in `{space}`, not a multiple of its {page:#x}-byte pages",
                        m.mr
                    ),
                    format!("map it at a multiple of {page:#x}"),
                ));
            }
            placed.push((u128::from(vaddr), u128::from(vaddr) + u128::from(r.size), m.line, m));
        }
        // A queue over a map is `queues`' to say (one mistake, one error).
        let queue = |m: &Map| map_element(sys, m) == "dma_queue";
        for (at, other) in overlapping(placed.into_iter()).into_iter().filter(|(a, b)| !queue(a) && !queue(b)) {
            out.push(p(
                at.line,
                map_element(sys, at),
                format!(
                    "`{}` at {:#x} in `{space}` overlaps the map of `{}` at {:#x} (line {}): the Microkit tool refuses it",
                    at.mr,
                    at.vaddr.unwrap_or_default(),
                    other.mr,
                    other.vaddr.unwrap_or_default(),
                    other.line
                ),
                "map each region at its own addresses",
            ));
        }
    }
}

/// A channel's protected procedure call (`pp` on an end) goes to a PD of strictly higher
/// priority, one way (sdf.rs, `Channel::from_xml` and `parse`; the Microkit tool names no
/// line for the priority).
fn calls(sys: &System, out: &mut Vec<Problem>) {
    for c in &sys.channels {
        let [a, b] = &c.ends;
        if a.pp && b.pp {
            out.push(p(
                c.line,
                "channel",
                "`pp` on both ends: a call goes one way".into(),
                "keep pp=\"true\" on the caller's end only",
            ));
            continue;
        }
        let Some((caller, callee)) = [(a, b), (b, a)].into_iter().find(|(mine, _)| mine.pp) else { continue };
        let (Some(from), Some(to)) = (sys.pd(&caller.pd), sys.pd(&callee.pd)) else { continue };
        if from.priority >= to.priority {
            out.push(p(
                c.line,
                "channel",
                format!(
                    "`{}` (priority {}) calls `{}` (priority {}): the Microkit tool takes calls only to a PD of strictly higher priority",
                    from.name, from.priority, to.name, to.priority
                ),
                "raise the callee's priority above the caller's, or drop pp",
            ));
        }
    }
}

/// The element a problem with `m` belongs to: build writes the IOMMU plumbing's maps on the
/// `<iommu>` line and a queue's on its `<dma_queue>`'s, and those are what the user wrote.
fn map_element(sys: &System, m: &Map) -> &'static str {
    if sys.iommu.as_ref().is_some_and(|i| i.line == m.line) {
        "iommu"
    } else if sys.queues.iter().any(|q| q.line == m.line && m.mr == crate::queues::region_name(&q.pd)) {
        "dma_queue"
    } else {
        "map"
    }
}

/// `pd`'s own maps (not its guests', whose addresses are guest-physical) clear of address 0
/// and, where its program was read (`crate::programs`), of the program's segments, which
/// must lie below its stack.
fn address_space(sys: &System, board: &Board, pd: &ProtectionDomain, out: &mut Vec<Problem>) {
    let segments = pd.program.as_ref().and_then(|pr| Some((pr.path.as_str(), pr.segments.as_deref()?)));
    // The Microkit tool maps the program first, then the stack and the IPC buffer at the top
    // of the address space, and panics mapping them over a segment ("should be able to map
    // the IPC buffer"); a segment at or past the top (`VSPACE_END`, the SDK's
    // vspace_user_top + 1, a wrapping one too) it writes into the image, and seL4 maps no
    // frame there (a frame's map past USER_TOP is refused), so the PD would not start.
    // An empty segment maps nothing.
    if let (Some((path, segs)), Some(program)) = (segments, pd.program.as_ref()) {
        let end = board.pd_map_end(pd.stack_size);
        if let Some(&(start, stop)) = segs.iter().find(|&&(start, stop)| stop > start && stop > end) {
            out.push(p(
                program.line,
                "program_image",
                format!(
                    "`{}`'s program `{path}` has a loadable segment covering {start:#x}..{stop:#x}, past {end:#x}, where its stack ({:#x} bytes), the IPC buffer and the end of its address space ({:#x}) lie: the Microkit tool panics mapping them over it, or the PD cannot start",
                    pd.name, pd.stack_size, crate::board::VSPACE_END
                ),
                format!("link the program below {end:#x} (Microkit's microkit.ld links it at {:#x})", crate::programs::LINK_BASE),
            ));
        }
    }
    for m in &pd.maps {
        let (Some(vaddr), Some(r)) = (m.vaddr, sys.region(&m.mr)) else { continue };
        let end = vaddr.saturating_add(r.size);
        let element = map_element(sys, m);
        let placed = if element == "dma_queue" {
            "leave the queue's vaddr out (build places it at 64 GiB or above), or give one"
        } else {
            "map it"
        };
        // The Microkit tool maps a region at 0 if asked; the program cannot use it.
        if vaddr < PAGE {
            out.push(p(
                m.line,
                element,
                format!(
                    "`{}` is mapped at {vaddr:#x} in `{}`, over address 0: a null pointer in its program would read and write it instead of faulting (C and Rust assume nothing lives there), and a symbol patched with 0 reads as never patched",
                    m.mr, pd.name
                ),
                format!("{placed} at or above 0x1000"),
            ));
            continue;
        }
        let Some((path, segments)) = segments else { continue };
        if let Some(&(start, stop)) = segments.iter().find(|&&(start, stop)| vaddr < stop && start < end) {
            let top = segments.iter().map(|s| s.1).max().unwrap_or(stop);
            out.push(p(
                m.line,
                element,
                format!(
                    "`{}` at {vaddr:#x}..{end:#x} in `{}` overlaps its program `{path}`, whose loadable segment covers {start:#x}..{stop:#x}: the Microkit tool refuses it (\"will overlap with an ELF segment\", naming no line)",
                    m.mr, pd.name
                ),
                format!("{placed} clear of the program's segments, at or above {:#x}", top.next_multiple_of(PAGE)),
            ));
        }
    }
}

/// The PPI every SDK configuration here leaves to user level: the EL1 physical timer (a
/// PD can program it only where the SDK exports it, `Board::user_timer`). seL4
/// runs them all in hypervisor mode (CONFIG_ARM_HYPERVISOR_SUPPORT), where its own timer is
/// the hypervisor's (PPI 26) and it keeps 25 (VGIC maintenance) and 27 (the virtual timer).
pub const USER_PPI: u64 = 30;

/// A PD's interrupts, in the form the board's interrupt controller has (the Microkit tool
/// refuses an x86 form on Arm and an Arm one on x86: sdf.rs, "x86 I/O APIC IRQ isn't
/// supported on ARM and RISC-V"), and on Arm a number seL4 on that board takes and gives a
/// PD: an SPI from 32 to the board's `maxIRQ`, or the EL1 physical timer. Neither tool
/// bounds the number; seL4 refuses one past `maxIRQ` ("IRQ is out of range") and the ones it
/// keeps ("Already active"), and the capDL initialiser then stops at boot (booted), before any
/// PD runs. SGIs (0 to 15) are no device's, and of the PPIs (16 to 31) only the timer is
/// proved free of the kernel's use.
fn irqs(pd: &ProtectionDomain, board: &Board, out: &mut Vec<Problem>) {
    for i in &pd.irqs {
        let arm = board.target == Target::Arm;
        let (form, fix) = match (i.form, arm) {
            (IrqForm::X86Pin, true) => (
                "an x86 I/O APIC interrupt (`pin`)",
                "give it irq=\"N\", the interrupt controller's number, for an Arm board",
            ),
            (IrqForm::X86Msi, true) => {
                ("an x86 MSI (`pcidev`)", "give it irq=\"N\", the interrupt controller's number, for an Arm board")
            }
            (IrqForm::Arm, false) => {
                ("an Arm interrupt (`irq`)", "give it pin=\"...\" (I/O APIC) or pcidev=\"...\" (MSI) for an x86 board")
            }
            _ => ("", ""),
        };
        if !form.is_empty() {
            out.push(p(
                i.line,
                "irq",
                format!(
                    "`{}` has {form}, and board {} is {} board: the Microkit tool refuses it",
                    pd.name,
                    board.name,
                    if arm { "an Arm" } else { "an x86" }
                ),
                fix,
            ));
            continue;
        }
        let (Some(irq), true) = (i.irq, arm) else { continue };
        let Some(max) = board.max_irq else {
            out.push(p(
                i.line,
                "irq",
                format!("`{}` has interrupt {irq}, and board {} is one whose interrupt controller this tool does not know: no number is proved one seL4 takes", pd.name, board.name),
                "check for a board this tool knows (--board qemu_virt_aarch64, zcu102, ultra96v2, kria_k26 or tqma8xqp1gb)",
            ));
            continue;
        };
        let why = if irq > max {
            format!("past {max}, the last seL4 takes on board {} (its maxIRQ): the kernel refuses it and the system stops at boot", board.name)
        } else if irq < 16 {
            "a software-generated interrupt (SGI, 0 to 15), which no device raises (seL4 sends its own between cores)"
                .to_string()
        } else if irq == USER_PPI && !board.user_timer {
            format!("the EL1 physical timer's, and board {}'s seL4 does not let a PD program that timer (the SDK builds it without KernelArmExportPTMRUser): the interrupt never fires, and the PD's first access to CNTP_CTL_EL0 or CNTP_CVAL_EL0 faults", board.name)
        } else if irq < 32 && irq != USER_PPI {
            format!("a core's private interrupt (PPI, 16 to 31) other than the EL1 physical timer ({USER_PPI}): seL4 keeps 25, 26 and 27, and no other is proved free of its use")
        } else {
            continue;
        };
        out.push(p(
            i.line,
            "irq",
            format!("`{}` has interrupt {irq}, {why}", pd.name),
            format!(
                "give it the device's interrupt as the GIC numbers it: an SPI from 32 to {max} (the device tree's SPI number + 32){}",
                if board.user_timer { format!(", or {USER_PPI} for the EL1 physical timer") } else { String::new() }
            ),
        ));
    }
}
