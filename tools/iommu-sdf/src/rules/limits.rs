//! The numbers the Microkit tool bounds when it reads a description (tool/microkit/src/sdf.rs
//! of the SDK's commit: `ProtectionDomain::from_xml`, `VirtualMachine::from_xml`,
//! `pd_tree_to_list`, `parse`): a PD's priority and stack, its children's and its vCPUs'
//! ids, and its interrupts, each to one PD. What `check` accepts, the Microkit tool must
//! accept too, so each is refused here, at the element, as the Microkit tool refuses it.
//! One it does not refuse: a child's id above 61 (below).

use std::collections::HashMap;

use crate::board::Board;
use crate::model::*;
use crate::problem::{p, Problem};

/// The highest priority a PD may have (`PD_MAX_PRIORITY`; 255 is the monitor's).
pub const MAX_PRIORITY: u64 = 254;
/// A PD's stack: whole 4 KiB pages (the smallest page size), from one page to 16 MiB
/// (`PD_MIN_STACK_SIZE`, `PD_MAX_STACK_SIZE`).
pub const MIN_STACK: u64 = 0x1000;
pub const MAX_STACK: u64 = 0x100_0000;

/// Every limit.
pub fn check(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    cores(sys, board, out);
    for pd in &sys.pds {
        if pd.priority > MAX_PRIORITY {
            out.push(p(
                pd.line,
                "protection_domain",
                format!(
                    "`{}` has priority {}, and the Microkit tool takes 0 to {MAX_PRIORITY} (255 is its monitor's)",
                    pd.name, pd.priority
                ),
                format!("give it a priority of at most {MAX_PRIORITY}"),
            ));
        }
        // The Microkit tool does not bound a guest's priority: it casts it to 8 bits
        // (`priority as u8`), so 300 runs at 44 and 510 at 254, not what was read here.
        for vm in pd.vms.iter().filter(|vm| vm.priority > MAX_PRIORITY) {
            out.push(p(
                vm.line,
                "virtual_machine",
                format!(
                    "virtual machine `{}` has priority {}: the Microkit tool takes it cut to 8 bits ({}), not as written",
                    vm.name,
                    vm.priority,
                    vm.priority % 256
                ),
                format!("give it a priority of at most {MAX_PRIORITY}"),
            ));
        }
        if pd.stack_size < MIN_STACK || pd.stack_size > MAX_STACK || pd.stack_size % PAGE != 0 {
            out.push(p(
                pd.line,
                "protection_domain",
                format!(
                    "`{}` has stack_size {:#x}, and the Microkit tool takes whole 4 KiB pages from {MIN_STACK:#x} to {MAX_STACK:#x} bytes",
                    pd.name, pd.stack_size
                ),
                format!("give it a stack_size that is a multiple of 0x1000 from {MIN_STACK:#x} to {MAX_STACK:#x}"),
            ));
        }
        if let Some(id) = pd.id.filter(|&id| id > MAX_ID) {
            out.push(p(
                pd.line,
                "protection_domain",
                format!(
                    "child `{}` has id {id:#x}, above {MAX_ID}: the Microkit tool takes it, but ORs it into the fault badge (bit 62 marks a fault, bit 63 a call) and adds it to its parent's TCB slots (cut to 32 bits), so its faults can read as another child's or as a call, and its TCB land in another child's slot",
                    pd.name
                ),
                format!("give it an id from 0 to {MAX_ID} that its parent's other children and vCPUs do not have"),
            ));
        }
        ids_in_parent(sys, pd, out);
    }
    // An interrupt goes to one PD: the Microkit tool refuses a second `<irq>` of one
    // number, at the PD that has it.
    let mut taken: HashMap<u64, &str> = HashMap::new();
    for pd in &sys.pds {
        for irq in pd.irqs.iter().filter_map(|i| i.irq) {
            if let Some(first) = taken.insert(irq, &pd.name) {
                out.push(p(
                    pd.line,
                    "protection_domain",
                    format!("`{}` has interrupt {irq}, which `{first}` has too: the Microkit tool gives an interrupt to one PD", pd.name),
                    "give each interrupt to one protection domain",
                ));
            }
        }
    }
}

/// A parent's children and its virtual machines' vCPUs share one id space (the child's
/// faults and the vCPU's both come to the parent by that id): each id once, each vCPU id at
/// most `MAX_ID`. As the Microkit tool reads them: the vCPUs first (a second vCPU with an
/// id is refused at it), then the children (one whose id a child or vCPU has, at it).
fn ids_in_parent(sys: &System, parent: &ProtectionDomain, out: &mut Vec<Problem>) {
    let children = sys.pds.iter().filter(|c| c.parent.as_deref() == Some(parent.name.as_str()));
    let vcpus = parent.vms.iter().flat_map(|vm| vm.vcpu_ids.iter().map(move |&(id, line)| (id, line, "vcpu", vm)));
    let mut taken: HashMap<u64, Line> = HashMap::new();
    let mut all: Vec<(u64, Line, &str)> = Vec::new();
    for (id, line, element, vm) in vcpus {
        if id > MAX_ID {
            out.push(p(
                line,
                element,
                format!(
                    "a vCPU of virtual machine `{}` has id {id}, and the Microkit tool takes 0 to {MAX_ID}",
                    vm.name
                ),
                format!("give it an id from 0 to {MAX_ID}"),
            ));
        }
        all.push((id, line, element));
    }
    all.extend(children.filter_map(|c| Some((c.id?, c.line, "protection_domain"))));
    for (id, line, element) in all {
        if let Some(first) = taken.insert(id, line) {
            out.push(p(
                line,
                element,
                format!(
                    "id {id} is used twice in `{}`, here and on line {first}: its children and its vCPUs each need their own (the Microkit tool refuses the second)",
                    parent.name
                ),
                "give each child protection domain and each vCPU of a PD its own id",
            ));
        }
    }
}

/// Where the configuration is known (`--config`): each PD's and vCPU's core one it has, and
/// domains only on one core (the Microkit tool refuses both). Without it, only what every
/// configuration has is proved: core 0, and no `<domains>` (which an `smp-` one refuses),
/// so a description that needs more needs its configuration named.
fn cores(sys: &System, board: &Board, out: &mut Vec<Problem>) {
    let Some(cores) = board.cores else {
        let fix = "name the configuration with --config (as the Microkit tool takes it: debug, smp-debug...)";
        for pd in sys.pds.iter().filter(|pd| pd.cpu > 0) {
            out.push(p(
                pd.line,
                "protection_domain",
                format!("`{}` runs on core {}, and without the configuration named no core but 0 is proved to exist (--config names it; one that is not smp- has one core)", pd.name, pd.cpu),
                format!("{fix}, or run it on core 0"),
            ));
        }
        for pd in &sys.pds {
            for vm in pd.vms.iter().filter(|vm| vm.vcpu_cpus.iter().any(|&c| c > 0)) {
                out.push(p(
                    vm.line,
                    "virtual_machine",
                    format!("a vCPU of virtual machine `{}` runs on a core other than 0, and without the configuration named no core but 0 is proved to exist (--config names it)", vm.name),
                    format!("{fix}, or run its vCPUs on core 0"),
                ));
            }
        }
        if let Some(line) = sys.domains {
            out.push(p(
                line,
                "domains",
                "without the configuration named, <domains> is not proved allowed (--config names it): seL4 schedules domains only where it runs on one core, and an smp- configuration has 4".to_string(),
                format!("{fix}, or remove <domains>"),
            ));
        }
        return;
    };
    for pd in &sys.pds {
        if pd.cpu >= cores {
            out.push(p(
                pd.line,
                "protection_domain",
                format!("`{}` runs on core {}, and this configuration has {cores}", pd.name, pd.cpu),
                format!("give it a cpu below {cores}, or build for a configuration with more cores (smp-)"),
            ));
        }
        for vm in pd.vms.iter().filter(|vm| vm.vcpu_cpus.iter().any(|&c| c >= cores)) {
            out.push(p(
                vm.line,
                "virtual_machine",
                format!(
                    "a vCPU of virtual machine `{}` runs on a core this configuration lacks (it has {cores})",
                    vm.name
                ),
                format!("give its vCPUs a cpu below {cores}"),
            ));
        }
    }
    if let (Some(line), true) = (sys.domains, cores > 1) {
        out.push(p(
            line,
            "domains",
            format!("seL4 schedules domains on one core, and this configuration has {cores}"),
            "remove <domains>, or build for a configuration with one core",
        ));
    }
}
