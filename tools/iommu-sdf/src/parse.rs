//! Reading a description with roxmltree into `model::System`, refusing unknown elements
//! and attributes so a typo cannot silently drop a rule.

use std::collections::HashMap;

use roxmltree::{Document, Node};

use crate::model::*;
use crate::problem::Problem;

/// Attributes each element may carry. Microkit's elements that DMA isolation does not
/// depend on (program images, IRQs, virtual machines...) are passed through to the
/// Microkit tool, which checks them.
const SYSTEM_CHILDREN: &[(&str, &[&str])] = &[
    ("memory_region", &["name", "size", "page_size", "phys_addr", "prefill_path", "prefill_bootinfo"]),
    ("protection_domain", PD_ATTRS),
    ("channel", &[]),
    ("domains", &[]),
    (
        "io_address_space",
        &["name", "peripheral_id", "domain_id", "owner", "iova_base", "iova_size", "resume", "vm", "streams", "bar"],
    ),
    ("pci_bridge", &["bdf", "kind", "secondary", "subordinate", "acs"]),
    ("dma_capability", &["name", "pd", "mr", "parent", "offset", "size", "perms", "devices", "grant_to"]),
    ("dma_quota", &["pd", "mappings", "pages", "grants"]),
    ("dma_queue", &["pd", "entries", "vaddr", "share"]),
    (
        "iommu",
        &[
            "pd",
            "stream_table",
            "cmdq",
            "eventq",
            "context_descriptors",
            "table_pool",
            "fault_window_us",
            "max_faults",
            "trust_callers_not_to_send",
        ],
    ),
];

/// A top-level PD's: no `id`, which the Microkit tool refuses there (invalid attribute), so
/// check may not take it and read nothing from it.
const PD_ATTRS: &[&str] =
    &["name", "priority", "budget", "period", "passive", "stack_size", "cpu", "smc", "fpu", "domain"];
/// A child PD has, in addition, its `id` and the symbol its parent learns it through.
const CHILD_PD_ATTRS: &[&str] = &[
    "name",
    "priority",
    "budget",
    "period",
    "passive",
    "stack_size",
    "cpu",
    "smc",
    "fpu",
    "domain",
    "id",
    "setvar_id",
];
/// A PD's budget when the description gives none (Microkit's `BUDGET_DEFAULT`, in
/// microseconds).
pub const MICROKIT_BUDGET: u64 = 1_000;
/// Fault storms, unless the description says otherwise: more than 300 faults from one
/// device within a second. A DMA that misses its mapping faults once per bus transaction
/// (QEMU: every 4 bytes), so a few stray 256-byte transfers stay below it and a device
/// that keeps hammering does not.
pub const DEFAULT_FAULT_WINDOW_US: u64 = 1_000_000;
pub const DEFAULT_MAX_FAULTS: u64 = 300;
/// Grants a client may have made and not revoked at once, when its `<dma_quota>` does not
/// say (or it has none).
pub const DEFAULT_GRANTS: u64 = 4;
/// How deep protection domains may nest. Microkit's tool takes at most 63 PDs in a system
/// (its `MAX_PDS`), so no real chain is deeper; reading children recursively past a bound
/// would let a hostile description overflow the stack and crash the tool.
pub const MAX_PD_DEPTH: usize = 64;
const END_ATTRS: &[&str] = &["pd", "id", "pp", "notify", "setvar_id"];
/// An Arm `<irq>`'s (the Microkit tool refuses any other attribute on it).
const ARM_IRQ_ATTRS: &[&str] = &["irq", "id", "trigger", "setvar_id"];
const PD_CHILDREN: &[&str] =
    &["program_image", "map", "irq", "setvar", "protection_domain", "virtual_machine", "ioport", "cspace"];
const MAP_ATTRS: &[&str] = &["mr", "vaddr", "perms", "cached", "setvar_vaddr", "setvar_size", "setvar_prefill_size"];
const IOMAP_ATTRS: &[&str] = &["mr", "iovaddr", "perms"];
/// The boot information a region may be prefilled with (`prefill_bootinfo`).
const BOOTINFO: &[&str] = &["x86_vbe", "x86_mbmmap", "x86_acpi_rsdp", "x86_framebuffer", "x86_tsc_freq", "fdt"];
/// The slots of a PD's CNode for `<cspace>` capabilities, 0 excluded (Microkit's
/// `CAP_MAP_MAX_SLOT`).
const CSPACE_SLOTS: u64 = 128;

/// The kernel's scheduling domains and the entries its domain schedule holds, in every
/// configuration that has domains (the SDK's `debug` kernels of each board:
/// `NUM_DOMAINS` and `NUM_DOMAIN_SCHEDULES` in include/kernel/gen_config.json; its `smp-`
/// kernels have 1 and 2, and `rules::limits` refuses `<domains>` there).
pub const NUM_DOMAINS: u64 = 16;
pub const NUM_DOMAIN_SCHEDULES: u64 = 100;

struct Reader {
    /// Where each line after the first starts: a node's line is found by binary search
    /// (roxmltree's `text_pos_at` scans from the start every time, quadratic over a
    /// large description).
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

impl Reader {
    fn line(&self, n: Node) -> Line {
        (self.line_starts.partition_point(|&s| s <= n.range().start) + 1) as Line
    }

    fn problem(&mut self, n: Node, message: String, fix: &str) {
        let line = self.line(n);
        self.problems.push(Problem { line, element: n.tag_name().name().to_string(), message, fix: fix.to_string() });
    }

    fn check_attrs(&mut self, n: Node, allowed: &[&str]) {
        for a in n.attributes() {
            if !allowed.contains(&a.name()) {
                let msg = format!("unknown attribute `{}`", a.name());
                let fix = format!("use one of: {}", allowed.join(", "));
                self.problem(n, msg, &fix);
            }
        }
    }

    fn required(&mut self, n: Node, attr: &str) -> Option<String> {
        match n.attribute(attr) {
            Some(v) => Some(v.to_string()),
            None => {
                self.problem(n, format!("missing attribute `{attr}`"), &format!("add {attr}=\"...\""));
                None
            }
        }
    }

    fn number(&mut self, n: Node, attr: &str) -> Option<u64> {
        let v = n.attribute(attr)?;
        match parse_number(v) {
            Some(x) => Some(x),
            None => {
                self.problem(
                    n,
                    format!("`{attr}` is not a number: \"{v}\""),
                    "write a decimal or 0x-prefixed hex number (as the Microkit tool reads it: no spaces, a lower-case 0x)",
                );
                None
            }
        }
    }

    /// An id or interrupt number (`<end id>`, `<irq id>`, `<irq irq>`, `<vcpu id>`): the
    /// Microkit tool reads these with `str::parse` (decimal only, no `_`) and unwraps, so
    /// `0x1` or `1_0`, which `number` takes, make it panic (sdf.rs). `<end id>` and `<irq
    /// id>` it parses as `i64` (`signed`), refusing a negative one: `-0` is 0 there, and
    /// was refused here.
    fn decimal(&mut self, n: Node, attr: &str, signed: bool) -> Option<u64> {
        let v = n.attribute(attr)?;
        let parsed = match signed {
            true => v.parse::<i64>().map(|x| u64::try_from(x).map_err(|_| x)),
            false => v.parse::<u64>().map(Ok),
        };
        match parsed {
            Ok(Ok(x)) => Some(x),
            Ok(Err(negative)) => {
                self.problem(
                    n,
                    format!("`{attr}` {negative} is negative (the Microkit tool refuses it: \"id must be >= 0\")"),
                    &format!("write {attr} in decimal digits, e.g. {attr}=\"1\""),
                );
                None
            }
            Err(_) => {
                self.problem(
                    n,
                    format!("`{attr}` is not a decimal number: \"{v}\" (the Microkit tool reads it as one and panics on anything else)"),
                    &format!("write {attr} in decimal digits, e.g. {attr}=\"1\""),
                );
                None
            }
        }
    }

    /// A scheduling context's `budget` and `period` (a PD's or a virtual machine's), with
    /// Microkit's defaults: 1,000 us, and the period equal to the budget. A budget over its
    /// period the Microkit tool refuses.
    fn budget_period(&mut self, n: Node) -> (u64, u64) {
        let budget = self.number(n, "budget").unwrap_or(MICROKIT_BUDGET);
        let period = self.number(n, "period").unwrap_or(budget);
        if budget > period {
            self.problem(
                n,
                format!("budget ({budget}) is over period ({period}): Microkit refuses it"),
                "give a budget at most the period (without a period, the period is the budget)",
            );
        }
        (budget, period)
    }

    fn perms(&mut self, n: Node) -> Perms {
        match n.attribute("perms") {
            None => Perms { read: true, write: true },
            Some(p) if !p.is_empty() && p.chars().all(|c| c == 'r' || c == 'w') => {
                Perms { read: p.contains('r'), write: p.contains('w') }
            }
            Some(p) => {
                self.problem(n, format!("`perms` must be r, w or rw, not \"{p}\""), "use perms=\"r\", \"w\" or \"rw\"");
                Perms { read: false, write: false }
            }
        }
    }

    /// A `<map>` (a PD's, or a guest's, which has only the first four of `MAP_ATTRS`), or
    /// `None` (with a problem) without its region. Its `vaddr` is required, as the Microkit
    /// tool requires it.
    fn map(&mut self, n: Node, attrs: &[&str]) -> Option<Map> {
        self.check_attrs(n, attrs);
        let mr = self.required(n, "mr")?;
        self.required(n, "vaddr");
        // Only where it is known (a guest's map patches nothing).
        let setvar = |a: &str| n.attribute(a).filter(|_| attrs.contains(&a)).map(str::to_string);
        Some(Map {
            mr,
            vaddr: self.number(n, "vaddr"),
            perms: self.map_perms(n),
            setvar_vaddr: setvar("setvar_vaddr"),
            setvar_size: setvar("setvar_size"),
            setvar_prefill_size: setvar("setvar_prefill_size"),
            cached: self.boolean(n, "cached", true),
            line: self.line(n),
        })
    }

    /// A `<map>`'s `perms`, as the Microkit tool reads them (`SysMapPerms::from_str`): any
    /// of `r`, `w` and `x` (only r and w matter here), read-write when absent; another
    /// letter, or write alone (which seL4 cannot map), it refuses.
    fn map_perms(&mut self, n: Node) -> Perms {
        let Some(p) = n.attribute("perms") else { return Perms { read: true, write: true } };
        let perms = Perms { read: p.contains('r'), write: p.contains('w') };
        if !p.chars().all(|c| matches!(c, 'r' | 'w' | 'x')) {
            self.problem(
                n,
                format!("`perms` \"{p}\" holds a letter other than r, w and x"),
                "write perms as a combination of r, w and x, e.g. perms=\"rw\"",
            );
        } else if p.chars().all(|c| c == 'w') && perms.write {
            self.problem(
                n,
                format!("`perms` \"{p}\" is write-only, which the Microkit tool refuses (the kernel maps no write-only page)"),
                "add r: perms=\"rw\"",
            );
        }
        perms
    }

    /// `true` or `false` (Microkit's spelling), `default` when absent.
    fn boolean(&mut self, n: Node, attr: &str, default: bool) -> bool {
        match n.attribute(attr) {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(v) => {
                self.problem(
                    n,
                    format!("`{attr}` must be true or false, not \"{v}\""),
                    &format!("write {attr}=\"true\" or {attr}=\"false\""),
                );
                default
            }
        }
    }

    /// A `<protection_domain>` and, after it, its children (`parent` is the PD it is
    /// nested in, `depth` its level: 1 at the top). Children below `MAX_PD_DEPTH` are
    /// refused, not read, so the recursion never goes deeper.
    fn pd(&mut self, n: Node, sys: &mut System, parent: Option<&str>, depth: usize) {
        let Some(name) = self.required(n, "name") else { return };
        let priority = self.number(n, "priority").unwrap_or(0);
        let cpu = self.number(n, "cpu").unwrap_or(0);
        let (budget, period) = self.budget_period(n);
        let passive = self.boolean(n, "passive", false);
        // The Microkit tool reads <domains> where it stands: a PD before it has no domain,
        // one after it must name one.
        // A <domains> that declares no domain is, to it, none.
        let declared = sys.domain_schedule.as_ref().map(|d| &d.names).filter(|names| !names.is_empty());
        match (sys.domains, declared, n.attribute("domain")) {
            (None, _, Some(d)) => self.problem(
                n,
                format!("`{name}` names domain `{d}`, and no <domains> comes before it"),
                "declare the domains and their schedule in <domains>, before the protection domains",
            ),
            (Some(at), None, Some(d)) => self.problem(
                n,
                format!("`{name}` names domain `{d}`, and <domains> (line {at}) declares none"),
                "declare it in <domains> with <domain name=\"...\">, or remove domain=\"...\"",
            ),
            (Some(at), Some(_), None) => self.problem(
                n,
                format!("`{name}` names no domain, and <domains> (line {at}) schedules them: the Microkit tool requires one"),
                "give it domain=\"...\", one of <domains>' names",
            ),
            (Some(_), Some(names), Some(d))
                if sys.domain_schedule.as_ref().is_some_and(|s| s.declared <= NUM_DOMAINS)
                    && !names.iter().any(|(n, _)| n == d) =>
            {
                let msg = format!(
                    "`{name}` names domain `{d}`, which <domains> does not declare{}",
                    did_you_mean(d, names.iter().map(|(n, _)| n.as_str()))
                );
                self.problem(n, msg, "name one of the <domain>s declared in <domains>")
            }
            _ => {}
        }
        // A child without an `id` is refused by `check`, unless the IOMMU PD is its parent
        // and it is a client (`plumbing` gives it one).
        let id = if parent.is_some() { self.number(n, "id") } else { None };
        let at = sys.pds.len();
        sys.pds.push(ProtectionDomain {
            name: name.clone(),
            priority,
            cpu,
            budget,
            period,
            passive,
            stack_size: self.number(n, "stack_size").unwrap_or(crate::board::DEFAULT_STACK_SIZE),
            stack_size_given: n.attribute("stack_size").is_some(),
            parent: parent.map(str::to_string),
            id,
            maps: Vec::new(),
            setvars: Vec::new(),
            vms: Vec::new(),
            domain: n.attribute("domain").map(str::to_string),
            irqs: Vec::new(),
            ioports: Vec::new(),
            cspace: Vec::new(),
            smc: self.boolean(n, "smc", false),
            fpu: self.boolean(n, "fpu", true),
            program: n.children().find(|c| c.has_tag_name("program_image")).and_then(|c| {
                Some(Program {
                    path: c.attribute("path")?.to_string(),
                    symbols_path: c.attribute("path_for_symbols").map(str::to_string),
                    segments: None,
                    loads: Vec::new(),
                    symbols: None,
                    files: Vec::new(),
                    line: self.line(c),
                })
            }),
            child_setvar_ids: Vec::new(),
            irq_setvar_ids: Vec::new(),
            line: self.line(n),
        });
        if !n.children().any(|c| c.has_tag_name("program_image")) {
            self.problem(
                n,
                format!("protection domain `{name}` has no <program_image>"),
                "add <program_image path=\"...elf\" />: the program it runs",
            );
        }
        // The program is what `programs` reads and the rules hold maps and symbols to: one,
        // with a path, as the Microkit tool takes it (sdf.rs refuses a second, one without
        // `path`, and attributes other than these two).
        for (i, c) in n.children().filter(|c| c.has_tag_name("program_image")).enumerate() {
            self.check_attrs(c, &["path", "path_for_symbols"]);
            if i > 0 {
                self.problem(
                    c,
                    format!("a second <program_image> in `{name}`: a PD runs one program"),
                    "remove all but one <program_image>",
                );
            } else if c.attribute("path").is_none() {
                self.problem(
                    c,
                    format!("the <program_image> of `{name}` has no path"),
                    "add path=\"...elf\": the program's file, as the Microkit tool finds it in its search path",
                );
            }
        }
        let (mut maps, mut setvars, mut vms, mut cspaces) = (Vec::new(), Vec::new(), Vec::new(), 0);
        let (mut irqs, mut ioports, mut cspace, mut child_setvar_ids, mut irq_setvar_ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for c in n.children().filter(Node::is_element) {
            let tag = c.tag_name().name();
            if !PD_CHILDREN.contains(&tag) {
                self.problem(c, format!("unknown element `{tag}` in a protection domain"), "remove it or fix its name");
                continue;
            }
            match tag {
                "map" => maps.extend(self.map(c, MAP_ATTRS)),
                "setvar" => {
                    // Microkit's: a symbol, and the region whose physical address it gets.
                    self.check_attrs(c, &["symbol", "region_paddr"]);
                    if let (Some(symbol), Some(region)) = (self.required(c, "symbol"), self.required(c, "region_paddr")) {
                        setvars.push(SetVar { symbol, region_paddr: Some(region), line: self.line(c) });
                    }
                }
                "protection_domain" if depth >= MAX_PD_DEPTH => self.problem(
                    c,
                    format!(
                        "protection domain `{}` is nested more than {MAX_PD_DEPTH} deep (Microkit takes at most 63 in a system): it and its children are not read",
                        c.attribute("name").unwrap_or("?")
                    ),
                    &format!("nest protection domains at most {MAX_PD_DEPTH} deep"),
                ),
                "protection_domain" => {
                    self.check_attrs(c, CHILD_PD_ATTRS);
                    if let Some(symbol) = c.attribute("setvar_id") {
                        child_setvar_ids.push((symbol.to_string(), self.line(c)));
                    }
                    self.pd(c, sys, Some(&name), depth + 1);
                }
                "virtual_machine" => {
                    let Some(vm) = self.required(c, "name") else { continue };
                    let mut guest = Vec::new();
                    self.check_attrs(c, &["name", "budget", "period", "priority"]);
                    let priority = self.number(c, "priority").unwrap_or(0);
                    self.budget_period(c);
                    let (mut vcpu_cpus, mut vcpu_ids) = (Vec::new(), Vec::new());
                    for v in c.children().filter(|v| v.is_element()) {
                        if !v.has_tag_name("vcpu") && !v.has_tag_name("map") {
                            let tag = v.tag_name().name();
                            self.problem(v, format!("unknown element `{tag}` in a virtual machine"), "only <vcpu> and <map> belong here");
                            continue;
                        }
                        if v.has_tag_name("map") {
                            continue;
                        }
                        self.check_attrs(v, &["id", "setvar_id", "cpu"]);
                        vcpu_cpus.push(self.number(v, "cpu").unwrap_or(0));
                        if let Some(id) = self.required(v, "id").and_then(|_| self.decimal(v, "id", false)) {
                            vcpu_ids.push((id, self.line(v)));
                        }
                    }
                    // A guest with no vCPU runs nothing, and the Microkit tool refuses it
                    // (sdf.rs, `VirtualMachine::from_xml`).
                    if !c.children().any(|v| v.has_tag_name("vcpu")) {
                        self.problem(
                            c,
                            format!("virtual machine `{vm}` has no <vcpu>: the Microkit tool refuses it"),
                            "give it a <vcpu id=\"0\" />",
                        );
                    }
                    for m in c.children().filter(|m| m.is_element() && m.has_tag_name("map")) {
                        // A guest has no program: no setvar.
                        guest.extend(self.map(m, &MAP_ATTRS[..4]));
                    }
                    vms.push(VirtualMachine { name: vm, maps: guest, priority, vcpu_cpus, vcpu_ids, line: self.line(c) });
                }
                "irq" => {
                    self.required(c, "id");
                    // As the Microkit tool tells them apart: with `irq` it is Arm's, and any
                    // x86 attribute beside it is unknown; without, `pin` or `pcidev` make it
                    // x86's (`rules::platform` refuses those on an Arm board).
                    let form = match (c.attribute("irq"), c.attribute("pin"), c.attribute("pcidev")) {
                        (None, Some(_), _) => IrqForm::X86Pin,
                        (None, None, Some(_)) => IrqForm::X86Msi,
                        _ => IrqForm::Arm,
                    };
                    if form == IrqForm::Arm {
                        self.check_attrs(c, ARM_IRQ_ATTRS);
                        self.required(c, "irq");
                        if let Some(t) = c.attribute("trigger").filter(|t| !matches!(*t, "level" | "edge")) {
                            self.problem(c, format!("`trigger` must be level or edge, not \"{t}\""), "write trigger=\"level\" or trigger=\"edge\"");
                        }
                    }
                    if let Some(id) = self.decimal(c, "id", true) {
                        irqs.push(Irq { id, irq: self.decimal(c, "irq", false), form, line: self.line(c) });
                    }
                    if let Some(symbol) = c.attribute("setvar_id") {
                        irq_setvar_ids.push((symbol.to_string(), self.line(c)));
                    }
                }
                "ioport" => ioports.push(self.line(c)),
                "cspace" => {
                    // As the Microkit tool reads it (sdf.rs, `CSpace` and `CapMap`): one per
                    // PD, no attribute, capabilities of a PD's TCB, scheduling context or
                    // VSpace, each in its own slot from 1 (0 is Microkit's) to 127.
                    self.check_attrs(c, &[]);
                    cspaces += 1;
                    if cspaces == 2 {
                        self.problem(n, format!("`{name}` has a second <cspace>"), "give each protection domain one <cspace>");
                    }
                    let mut slots: HashMap<u64, Line> = HashMap::new();
                    for cap in c.children().filter(Node::is_element) {
                        let tag = cap.tag_name().name();
                        let kind = tag.strip_prefix("cap_").unwrap_or(tag);
                        if !matches!(kind, "tcb" | "sc" | "vspace") {
                            self.problem(cap, format!("`<{tag}>` is no capability a <cspace> holds"), "use <cap_tcb>, <cap_sc> or <cap_vspace>");
                        }
                        self.check_attrs(cap, &["slot", "pd"]);
                        let slot = self.required(cap, "slot").and_then(|_| self.number(cap, "slot"));
                        match slot {
                            Some(s) if !(1..CSPACE_SLOTS).contains(&s) => self.problem(
                                cap,
                                format!("slot {s}: the Microkit tool gives user capabilities slots 1 to {}", CSPACE_SLOTS - 1),
                                &format!("use a slot from 1 to {}", CSPACE_SLOTS - 1),
                            ),
                            Some(s) => {
                                if let Some(first) = slots.insert(s, self.line(cap)) {
                                    self.problem(cap, format!("slot {s} is used twice, here and on line {first}"), "give each capability its own slot");
                                }
                            }
                            None => {}
                        }
                        cspace.push((kind.to_string(), cap.attribute("pd").unwrap_or_default().to_string(), self.line(cap)));
                    }
                }
                _ => {}
            }
        }
        sys.pds[at].irqs = irqs;
        sys.pds[at].cspace = cspace;
        sys.pds[at].child_setvar_ids = child_setvar_ids;
        sys.pds[at].irq_setvar_ids = irq_setvar_ids;
        sys.pds[at].ioports = ioports;
        sys.pds[at].maps = maps;
        sys.pds[at].setvars = setvars;
        sys.pds[at].vms = vms;
    }

    /// `<domains>`: its `<domain name id>`s and its one `<domain_schedule start_index
    /// index_shift>` of `<schedule_entry domain duration>`s and `<schedule_end_marker>`s,
    /// each refused where the Microkit tool refuses it (sdf.rs, `Domains::from_xml`), so
    /// the domains the rules compare are the ones the kernel is given.
    fn domains(&mut self, n: Node) -> DomainSchedule {
        self.check_attrs(n, &[]);
        let mut sched = DomainSchedule::default();
        let mut ids: HashMap<u64, Line> = HashMap::new();
        let mut schedule = None;
        let mut declared = 0u64;
        for c in n.children().filter(Node::is_element) {
            match c.tag_name().name() {
                // Past the kernel's domains, counted and refused below, not kept: every
                // lookup of a name is then among 16, however many a hostile description
                // declares.
                "domain" if declared >= NUM_DOMAINS => declared += 1,
                "domain" => {
                    declared += 1;
                    self.check_attrs(c, &["name", "id"]);
                    let Some(name) = self.required(c, "name") else { continue };
                    if let Some((_, first)) = sched.names.iter().find(|(d, _)| *d == name) {
                        let msg = format!("domain `{name}` is declared twice, here and on line {first}");
                        self.problem(c, msg, "give each <domain> its own name");
                        continue;
                    }
                    match self.number(c, "id") {
                        Some(id) if id >= NUM_DOMAINS => self.problem(
                            c,
                            format!(
                                "domain id {id}: the kernel has {NUM_DOMAINS} domains (ids 0 to {})",
                                NUM_DOMAINS - 1
                            ),
                            &format!(
                                "give it an id below {NUM_DOMAINS}, or none (the Microkit tool then picks a free one)"
                            ),
                        ),
                        Some(id) => {
                            if let Some(first) = ids.insert(id, self.line(c)) {
                                self.problem(
                                    c,
                                    format!("domain id {id} is used twice, here and on line {first}"),
                                    "give each <domain> its own id",
                                );
                            }
                        }
                        None => {}
                    }
                    sched.names.push((name, self.line(c)));
                }
                "domain_schedule" if schedule.is_some() => {
                    self.problem(c, "a second <domain_schedule>".into(), "keep one <domain_schedule> in <domains>")
                }
                "domain_schedule" => schedule = Some(c),
                tag => self.problem(
                    c,
                    format!("unknown element `{tag}` in <domains>"),
                    "only <domain name=\"...\"> and one <domain_schedule> belong here",
                ),
            }
        }
        if declared > NUM_DOMAINS {
            self.problem(
                n,
                format!("{declared} domains, and the kernel has {NUM_DOMAINS}"),
                &format!("declare at most {NUM_DOMAINS} domains"),
            );
        }
        sched.declared = declared;
        let Some(s) = schedule else {
            self.problem(
                n,
                "<domains> has no <domain_schedule>".into(),
                "add <domain_schedule> with a <schedule_entry domain=\"...\" duration=\"1000 us\" /> per slot",
            );
            return sched;
        };
        self.check_attrs(s, &["index_shift", "start_index"]);
        sched.start_index = self.number(s, "start_index").unwrap_or(0);
        let shift = self.number(s, "index_shift");
        for e in s.children().filter(Node::is_element) {
            let line = self.line(e);
            match e.tag_name().name() {
                "schedule_entry" => {
                    self.check_attrs(e, &["domain", "duration"]);
                    let (domain, duration) = (self.required(e, "domain"), self.required(e, "duration"));
                    let unknown = |d: &&String| declared <= NUM_DOMAINS && !sched.names.iter().any(|(n, _)| n == *d);
                    if let Some(d) = domain.as_ref().filter(unknown) {
                        let msg = format!(
                            "the schedule names domain `{d}`, which <domains> does not declare{}",
                            did_you_mean(d, sched.names.iter().map(|(n, _)| n.as_str()))
                        );
                        self.problem(e, msg, "name one of the <domain>s declared above");
                    }
                    let length = duration.as_deref().and_then(|d| self.slot_length(e, d));
                    if let (Some(domain), Some(duration)) = (domain, length) {
                        sched.entries.push(ScheduleEntry { domain: Some(domain), duration, line });
                    }
                }
                "schedule_end_marker" => {
                    self.check_attrs(e, &[]);
                    sched.entries.push(ScheduleEntry { domain: None, duration: SlotLength::None, line });
                }
                tag => self.problem(
                    e,
                    format!("unknown element `{tag}` in <domain_schedule>"),
                    "only <schedule_entry domain=\"...\" duration=\"...\"> and <schedule_end_marker> belong here",
                ),
            }
        }
        let len = s.children().filter(Node::is_element).count() as u64;
        if len >= NUM_DOMAIN_SCHEDULES {
            self.problem(
                s,
                format!("{len} schedule entries, and the kernel holds fewer than {NUM_DOMAIN_SCHEDULES}"),
                &format!("give at most {} entries", NUM_DOMAIN_SCHEDULES - 1),
            );
        } else if sched.start_index >= len {
            self.problem(
                s,
                format!("start_index {} is not an entry of the schedule's {len}", sched.start_index),
                "give a start_index below the number of entries (or none: 0)",
            );
        } else if let Some(shift) = shift.filter(|&sh| sh.saturating_add(len) >= NUM_DOMAIN_SCHEDULES) {
            self.problem(s, format!("index_shift {shift} and {len} entries run past the kernel's {NUM_DOMAIN_SCHEDULES} schedule entries"), &format!("keep index_shift plus the entries below {NUM_DOMAIN_SCHEDULES}"));
        }
        sched
    }

    /// A schedule entry's `duration`, as the Microkit tool reads it: a number (as
    /// `parse_number`), one space, and `us` or `ticks`; zero is refused.
    fn slot_length(&mut self, e: Node, d: &str) -> Option<SlotLength> {
        let fix = "write a number, a space and its unit, us or ticks: duration=\"1000 us\"";
        let Some((raw, unit)) = d.split_once(' ') else {
            self.problem(e, format!("`duration` \"{d}\" has no unit"), fix);
            return None;
        };
        match (parse_number(raw), unit) {
            (None, _) => self.problem(e, format!("`duration` \"{d}\" is not a number and a unit"), fix),
            (Some(0), _) => self.problem(e, format!("`duration` \"{d}\" is zero: the domain would never run"), fix),
            (Some(v), "us") => return Some(SlotLength::Us(v)),
            (Some(v), "ticks") => return Some(SlotLength::Ticks(v)),
            (Some(_), _) => self.problem(e, format!("`duration` \"{d}\" is in neither us nor ticks"), fix),
        }
        None
    }

    /// A `<channel>` and its two `<end>`s.
    fn channel(&mut self, n: Node, sys: &mut System) {
        let mut ends = Vec::new();
        let mut complete = true;
        for c in n.children().filter(Node::is_element) {
            if c.tag_name().name() != "end" {
                self.problem(
                    c,
                    format!("unknown element `{}` in a channel", c.tag_name().name()),
                    "only <end> belongs here",
                );
                continue;
            }
            self.check_attrs(c, END_ATTRS);
            let pd = self.required(c, "pd");
            if c.attribute("id").is_none() {
                self.problem(c, "missing attribute `id`".into(), "add id=\"...\": the channel's identifier in this PD");
            }
            let id = self.decimal(c, "id", true);
            let pp = self.boolean(c, "pp", false);
            self.boolean(c, "notify", true);
            match (pd, id) {
                (Some(pd), Some(id)) => ends.push(ChannelEnd {
                    pd,
                    id,
                    pp,
                    setvar_id: c.attribute("setvar_id").map(str::to_string),
                    line: self.line(c),
                }),
                _ => complete = false,
            }
        }
        let count = n.children().filter(|c| c.has_tag_name("end")).count();
        if count != 2 {
            self.problem(
                n,
                format!("a channel has exactly two <end>s; this one has {count}"),
                "give it one <end pd=\"...\" id=\"...\"/> per protection domain it connects",
            );
            return;
        }
        if let (true, Ok(ends)) = (complete, <[ChannelEnd; 2]>::try_from(ends)) {
            sys.channels.push(Channel { ends, line: self.line(n) });
        }
    }
}

impl Reader {
    /// A `<pci_bridge bdf kind secondary subordinate acs>`, or `None` (with a problem) if an
    /// attribute is missing or malformed.
    fn bridge(&mut self, n: Node) -> Option<PciBridge> {
        let bdf = self.required(n, "bdf");
        let kind = self.required(n, "kind");
        let (secondary, subordinate) = (self.required(n, "secondary"), self.required(n, "subordinate"));
        let acs = self.boolean(n, "acs", false);
        let rid = match bdf.as_deref().map(|b| (b, pci_address(b))) {
            Some((_, Some((b, d, f)))) => Some(u16::from(b) << 8 | u16::from(d) << 3 | u16::from(f)),
            Some((b, None)) => {
                self.problem(
                    n,
                    format!("`bdf` \"{b}\" is not a PCI address bus:device.function (hex; bus at most ff, device at most 1f, function at most 7)"),
                    "write the bridge's own configuration address, e.g. bdf=\"0:1.0\"",
                );
                None
            }
            None => None,
        };
        let kind = match kind.as_deref().map(|k| (k, BRIDGE_KINDS.iter().find(|(name, _)| *name == k))) {
            Some((_, Some((_, kind)))) => Some(*kind),
            Some((k, None)) => {
                let names: Vec<&str> = BRIDGE_KINDS.iter().map(|(n, _)| *n).collect();
                self.problem(
                    n,
                    format!("`kind` \"{k}\" is not a kind of bridge"),
                    &format!("write one of: {}", names.join(", ")),
                );
                None
            }
            None => None,
        };
        let mut bus = |attr: &str, given: Option<String>| -> Option<u8> {
            given?;
            let v = self.number(n, attr)?;
            match u8::try_from(v) {
                Ok(b) => Some(b),
                Err(_) => {
                    self.problem(
                        n,
                        format!("`{attr}` is bus {v}, past the last bus (255)"),
                        &format!("give {attr} a bus number from 1 to 255"),
                    );
                    None
                }
            }
        };
        let secondary = bus("secondary", secondary);
        let subordinate = bus("subordinate", subordinate);
        Some(PciBridge {
            rid: rid?,
            kind: kind?,
            secondary: secondary?,
            subordinate: subordinate?,
            acs,
            line: self.line(n),
        })
    }
}

/// Parse a number exactly as the Microkit tool does (`sdf_parse_number`): every `_`
/// removed, then hex after a lower-case `0x`, else decimal, by `u64::from_str_radix`. So
/// `0X10` and ` 16` are refused, as the Microkit tool refuses them, and a value this tool
/// read is the value the Microkit tool reads.
pub fn parse_number(s: &str) -> Option<u64> {
    let t: String = s.chars().filter(|c| *c != '_').collect();
    match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    }
}

/// A PCI address `bus:device.function`, each part in hex, as Microkit reads it.
pub fn pci_address(s: &str) -> Option<(u8, u8, u8)> {
    let (bus, rest) = s.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let hex = |p: &str, max: u32| u32::from_str_radix(p.trim(), 16).ok().filter(|v| *v <= max);
    Some((hex(bus, 255)? as u8, hex(dev, 31)? as u8, hex(func, 7)? as u8))
}

/// A peripheral ID: a StreamID number, or a PCI address `bus:device.function` in hex, as
/// Microkit reads it (the requester ID, which is the StreamID where the host's iommu-map
/// is the identity).
pub fn parse_peripheral(s: &str) -> Option<u32> {
    if s.contains(':') {
        let (b, d, f) = pci_address(s)?;
        return Some(u32::from(b) << 8 | u32::from(d) << 3 | u32::from(f));
    }
    parse_number(s).and_then(|v| u32::try_from(v).ok())
}

/// Read `text`. Problems found while reading (malformed XML, unknown names, bad values)
/// are returned with whatever could be read.
pub fn parse(text: &str) -> (System, Vec<Problem>) {
    let doc = match Document::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let pos = e.pos();
            // An unclosed root is noticed at the end of the text, not where it opened.
            let line = match e {
                roxmltree::Error::UnclosedRootNode => text.lines().count().max(1) as u32,
                _ => pos.row,
            };
            let p = Problem {
                line,
                element: "xml".into(),
                message: format!("malformed XML: {e}"),
                fix: "fix the XML syntax at this position".into(),
            };
            return (System::default(), vec![p]);
        }
    };
    let line_starts = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    let mut r = Reader { line_starts, problems: Vec::new() };
    let mut sys = System::default();
    let root = doc.root_element();
    if root.tag_name().name() != "system" {
        r.problem(
            root,
            format!("the root element is `{}`", root.tag_name().name()),
            "the root element must be <system>",
        );
        return (sys, r.problems);
    }
    // Names in a namespace: the Microkit tool's roxmltree (0.19) finds an attribute by its
    // name only where it has no namespace, this reader's (0.21) by its local name, the
    // first of either: `m:perms="r" perms="rw"` was read as "r" here and mapped rw by the
    // Microkit tool, and `m:perms="r"` alone as "r" here and the default, rw, there.
    // Neither tool gives a namespace a meaning, so none is read.
    for n in root.descendants().filter(Node::is_element) {
        if let Some(ns) = n.tag_name().namespace() {
            let msg = format!("element `<{}>` is in the XML namespace \"{ns}\"", n.tag_name().name());
            r.problem(n, msg, "remove the namespace (its prefix, or the xmlns=\"...\" it inherits)");
        }
        for a in n.attributes().filter(|a| a.namespace().is_some()) {
            let msg = format!(
                "attribute `{}` is in an XML namespace: the Microkit tool does not read it as `{}`, and this tool would",
                a.name(),
                a.name()
            );
            r.problem(n, msg, &format!("remove its prefix, or the attribute ({}=\"...\")", a.name()));
        }
    }
    // Text between <system>'s elements the Microkit tool refuses (sdf.rs, `check_no_text`),
    // and it is no part of the description read here.
    for t in root.children().filter(|c| c.is_text() && c.text().is_some_and(|t| !t.trim().is_empty())) {
        let raw = t.text().unwrap_or_default();
        let text = raw.trim();
        let shown: String = text.chars().take(40).collect();
        // Its line is the first character's, not the line feed's before it.
        let at = t.range().start + (raw.len() - raw.trim_start().len());
        r.problems.push(Problem {
            line: (r.line_starts.partition_point(|&s| s <= at) + 1) as Line,
            element: "xml".into(),
            message: format!("text \"{shown}\" in <system>, outside any element: the Microkit tool refuses it"),
            fix: "remove the text, or make it a comment (<!-- ... -->)".into(),
        });
    }
    for n in root.children().filter(Node::is_element) {
        let tag = n.tag_name().name();
        let Some((_, attrs)) = SYSTEM_CHILDREN.iter().find(|(t, _)| *t == tag) else {
            if PD_CHILDREN.contains(&tag) {
                // Known to Microkit, but in the wrong place.
                r.problem(
                    n,
                    format!("`<{tag}>` belongs inside a <protection_domain>, not directly in <system>"),
                    "move it into the protection domain it is for",
                );
            } else {
                r.problem(n, format!("unknown element `{tag}`"), "remove it or fix its name");
            }
            continue;
        };
        // An empty list means no attribute is known for the element, except for a channel,
        // which has none: an attribute on it is a mistake Microkit refuses too.
        if !attrs.is_empty() || tag == "channel" {
            r.check_attrs(n, attrs);
        }
        match tag {
            "memory_region" => {
                let (Some(name), size) = (r.required(n, "name"), r.number(n, "size")) else { continue };
                // A prefilled region (a file, or Microkit's boot information) may leave its
                // size to the Microkit tool.
                let prefilled = n.attribute("prefill_path").is_some() || n.attribute("prefill_bootinfo").is_some();
                if n.attribute("size").is_none() && !prefilled {
                    r.problem(n, "missing attribute `size`".into(), "add size=\"0x...\"");
                }
                // As the Microkit tool reads it (sdf.rs, `SysMemoryRegion::from_xml`).
                if let Some(kind) = n.attribute("prefill_bootinfo") {
                    if !BOOTINFO.contains(&kind) {
                        r.problem(
                            n,
                            format!("`prefill_bootinfo` \"{kind}\" is no boot information the Microkit tool knows"),
                            &format!("use one of: {}", BOOTINFO.join(", ")),
                        );
                    }
                    if n.attribute("prefill_path").is_some() {
                        r.problem(
                            n,
                            "a region prefilled both from a file and with boot information".into(),
                            "keep one of prefill_path and prefill_bootinfo",
                        );
                    }
                }
                let phys_addr = r.number(n, "phys_addr");
                let page_size = r.number(n, "page_size");
                sys.regions.push(MemoryRegion {
                    name,
                    size: size.unwrap_or(0),
                    size_given: size.is_some(),
                    phys_addr,
                    page_size,
                    prefill_path: n.attribute("prefill_path").map(str::to_string),
                    prefill_bootinfo: n.attribute("prefill_bootinfo").map(str::to_string),
                    prefill: None,
                    line: r.line(n),
                });
            }
            // A second <domains> the Microkit tool refuses; PDs read before this one
            // may not name a domain, and those after must (`pd`).
            "domains" => match sys.domains {
                Some(first) => r.problem(
                    n,
                    format!("a second <domains> (the first is on line {first})"),
                    "keep one <domains>, before the protection domains",
                ),
                None => {
                    sys.domains = Some(r.line(n));
                    sys.domain_schedule = Some(r.domains(n));
                }
            },
            "protection_domain" => r.pd(n, &mut sys, None, 1),
            "channel" => r.channel(n, &mut sys),
            "io_address_space" => {
                // Its BAR window, should the element be refused below: the region is then
                // no device's, and that follows from the refusal (`System::unread_bars`).
                if let Some(bar) = n.attribute("bar") {
                    sys.unread_bars.push(bar.to_string());
                }
                let Some(name) = r.required(n, "name") else { continue };
                let Some(pid) = r.required(n, "peripheral_id") else { continue };
                let Some(stream) = parse_peripheral(&pid) else {
                    r.problem(
                        n,
                        format!("`peripheral_id` \"{pid}\" is neither a StreamID nor bus:device.function"),
                        "write the device's StreamID, e.g. peripheral_id=\"0x10\", or its PCI address bus:device.function in hex, e.g. peripheral_id=\"0:2.0\"",
                    );
                    continue;
                };
                let (mut extra_streams, mut extra_rids) = (Vec::new(), Vec::new());
                for word in n.attribute("streams").unwrap_or_default().split_whitespace() {
                    match parse_peripheral(word) {
                        Some(s) => {
                            extra_streams.push(s);
                            extra_rids.push(word.contains(':').then_some(s as u16));
                        }
                        None => r.problem(
                            n,
                            format!("`streams` holds \"{word}\", neither a StreamID nor bus:device.function"),
                            "list the device's other StreamIDs, e.g. streams=\"0x11 0x12\"",
                        ),
                    }
                }
                let mut iomaps = Vec::new();
                for c in n.children().filter(Node::is_element) {
                    if c.tag_name().name() != "iomap" {
                        r.problem(
                            c,
                            format!("unknown element `{}` in an io_address_space", c.tag_name().name()),
                            "only <iomap> belongs here",
                        );
                        continue;
                    }
                    r.check_attrs(c, IOMAP_ATTRS);
                    let (Some(mr), Some(iovaddr)) = (r.required(c, "mr"), r.number(c, "iovaddr")) else {
                        if c.attribute("iovaddr").is_none() {
                            r.problem(c, "missing attribute `iovaddr`".into(), "add iovaddr=\"0x...\"");
                        }
                        continue;
                    };
                    let perms = r.perms(c);
                    iomaps.push(IoMap { mr, iovaddr, perms, guest: false, line: r.line(c) });
                }
                sys.io_spaces.push(IoSpace {
                    name,
                    stream,
                    domain_id: r.number(n, "domain_id"),
                    owner: n.attribute("owner").map(str::to_string),
                    iova_base: r.number(n, "iova_base").unwrap_or(0),
                    iova_size: r.number(n, "iova_size").unwrap_or(1 << 48),
                    resume: r.boolean(n, "resume", true),
                    iomaps,
                    vm: n.attribute("vm").map(str::to_string),
                    extra_streams,
                    extra_rids,
                    rid: pid.contains(':').then_some(stream as u16),
                    bar: n.attribute("bar").map(str::to_string),
                    intx: 0,
                    line: r.line(n),
                });
                // Read after all: not an unread one.
                if n.attribute("bar").is_some() {
                    sys.unread_bars.pop();
                }
            }
            "pci_bridge" => {
                if let Some(b) = r.bridge(n) {
                    sys.bridges.push(b);
                }
            }
            "dma_capability" => {
                let (Some(name), Some(pd)) = (r.required(n, "name"), r.required(n, "pd")) else { continue };
                let (mr, parent) = (n.attribute("mr").map(str::to_string), n.attribute("parent").map(str::to_string));
                if mr.is_some() == parent.is_some() {
                    r.problem(
                        n,
                        "a capability names exactly one of `mr` and `parent`".into(),
                        "give mr=\"region\" for a root capability, parent=\"capability\" for a derived one",
                    );
                    continue;
                }
                let Some(size) = r.number(n, "size") else {
                    if n.attribute("size").is_none() {
                        r.problem(n, "missing attribute `size`".into(), "add size=\"0x...\"");
                    }
                    continue;
                };
                let devices = n.attribute("devices").unwrap_or("").split_whitespace().map(str::to_string).collect();
                let grant_to = n.attribute("grant_to").unwrap_or("").split_whitespace().map(str::to_string).collect();
                let perms = r.perms(n);
                sys.caps.push(DmaCapability {
                    name,
                    pd,
                    mr,
                    parent,
                    offset: r.number(n, "offset").unwrap_or(0),
                    size,
                    perms,
                    devices,
                    grant_to,
                    line: r.line(n),
                });
            }
            "dma_quota" => {
                let Some(pd) = r.required(n, "pd") else { continue };
                let (mappings, pages) =
                    (r.number(n, "mappings").unwrap_or(u64::MAX), r.number(n, "pages").unwrap_or(u64::MAX));
                let grants = r.number(n, "grants").unwrap_or(DEFAULT_GRANTS);
                sys.quotas.push(DmaQuota { pd, mappings, pages, grants, line: r.line(n) });
            }
            "dma_queue" => {
                let Some(pd) = r.required(n, "pd") else { continue };
                let Some(entries) = r.number(n, "entries") else {
                    if n.attribute("entries").is_none() {
                        r.problem(n, "missing attribute `entries`".into(), "add entries=\"64\" (a power of two)");
                    }
                    continue;
                };
                let vaddr = r.number(n, "vaddr");
                if n.attribute("vaddr").is_some() && vaddr.is_none() {
                    continue;
                }
                let share = r.number(n, "share");
                if n.attribute("share").is_some() && share.is_none() {
                    continue;
                }
                let share = share.unwrap_or(iommu_pd::pacing::SHARE);
                sys.queues.push(DmaQueue {
                    pd,
                    entries,
                    vaddr,
                    vaddr_given: vaddr.is_some(),
                    iommu_vaddr: None,
                    share,
                    name_taken: false,
                    line: r.line(n),
                });
            }
            "iommu" => {
                // One IOMMU PD: a second element would silently replace the first.
                if let Some(first) = &sys.iommu {
                    let message =
                        format!("a second <iommu> (the first is on line {}): there is one IOMMU PD", first.line);
                    r.problem(n, message, "keep one <iommu>, naming the IOMMU PD and its regions");
                    continue;
                }
                let Some(pd) = r.required(n, "pd") else { continue };
                // The regions it leaves out are generated (`plumbing`).
                let table_pool = n.attribute("table_pool").unwrap_or_default().to_string();
                let private = ["stream_table", "cmdq", "eventq", "context_descriptors", "table_pool"]
                    .into_iter()
                    .filter_map(|a| n.attribute(a).map(|v| (a, v.to_string())))
                    .collect();
                let fault_window_us = r.number(n, "fault_window_us").unwrap_or(DEFAULT_FAULT_WINDOW_US);
                let max_faults = r.number(n, "max_faults").unwrap_or(DEFAULT_MAX_FAULTS);
                let trust_callers_not_to_send = r.boolean(n, "trust_callers_not_to_send", false);
                sys.iommu = Some(Iommu {
                    pd,
                    private,
                    table_pool,
                    fault_window_us,
                    max_faults,
                    trust_callers_not_to_send,
                    line: r.line(n),
                });
            }
            _ => {}
        }
    }
    let problems = passthrough(&mut sys, r.problems);
    (sys, problems)
}

/// Devices passed through to a virtual machine (`io_address_space vm="..."`): their owner
/// is the VM's VMM, and their mappings are the guest's RAM (its cached maps) at the
/// guest-physical addresses the guest sees it at, with the guest's rights: what the
/// guest's driver programs into the device is then what the device reaches.
fn passthrough(sys: &mut System, mut problems: Vec<Problem>) -> Vec<Problem> {
    for s in sys.io_spaces.iter_mut().filter(|s| s.vm.is_some()) {
        let vm_name = s.vm.clone().unwrap_or_default();
        let mut runs = sys.pds.iter().flat_map(|pd| pd.vms.iter().filter(|v| v.name == vm_name).map(move |v| (pd, v)));
        let found = runs.next();
        if let (Some(_), Some((other, again))) = (found, runs.next()) {
            problems.push(Problem {
                line: again.line,
                element: "virtual_machine".into(),
                message: format!(
                    "a second virtual machine `{vm_name}` (in `{}`): `{}` could be passed through to either",
                    other.name, s.name
                ),
                fix: "give each <virtual_machine> its own name".into(),
            });
        }
        let Some((vmm, vm)) = found else {
            problems.push(Problem {
                line: s.line,
                element: "io_address_space".into(),
                message: format!(
                    "`{}` is passed through to virtual machine `{vm_name}`, which no protection domain runs",
                    s.name
                ),
                fix: "name a <virtual_machine> of a protection domain in vm=\"...\"".into(),
            });
            continue;
        };
        if let Some(o) = s.owner.as_ref().filter(|o| **o != vmm.name) {
            problems.push(Problem {
                line: s.line,
                element: "io_address_space".into(),
                message: format!(
                    "`{}` is passed through to `{vm_name}`, whose VMM is `{}`, but owner is `{o}`",
                    s.name, vmm.name
                ),
                fix: "leave owner out (the VMM owns a passed-through device) or name the VMM".into(),
            });
        }
        // The VMM owns it whatever was written, so the rest is checked as it would run.
        s.owner = Some(vmm.name.clone());
        for m in &vm.maps {
            // A map the guest may neither read nor write (perms="x") gives the device nothing.
            let rights = m.perms.read || m.perms.write;
            if let (true, true, Some(gpa)) = (m.cached, rights, m.vaddr) {
                s.iomaps.push(IoMap { mr: m.mr.clone(), iovaddr: gpa, perms: m.perms, guest: true, line: m.line });
            }
        }
    }
    problems
}
