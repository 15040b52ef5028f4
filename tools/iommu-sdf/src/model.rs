//! The parts of a system description that DMA isolation depends on, typed.

use std::collections::HashMap;

/// A line in the description, for messages.
pub type Line = u32;

/// `<memory_region>`.
#[derive(Debug, Clone)]
pub struct MemoryRegion {
    pub name: String,
    /// 0 when the description gives none (`size_given` false).
    pub size: u64,
    /// `size` was written: a prefilled region may leave it to the Microkit tool, which
    /// takes the file's size, and then this tool does not know it.
    pub size_given: bool,
    pub phys_addr: Option<u64>,
    /// `page_size`, when given (the Microkit tool's default is 4 KiB).
    pub page_size: Option<u64>,
    /// `prefill_path`: a file the Microkit tool finds in its search path, as it finds
    /// programs, and loads into the region's memory.
    pub prefill_path: Option<String>,
    /// `prefill_bootinfo`: the Microkit tool fills the region with boot information (the
    /// device tree, say) instead.
    pub prefill_bootinfo: Option<String>,
    /// That file as read (`crate::programs::read`), once read: what the image would hold.
    pub prefill: Option<LoadedFile>,
    pub line: Line,
}

impl MemoryRegion {
    /// Its physical range `[start, end)` when it has a fixed address, in 128 bits so that a
    /// range past 2^64 is seen as such rather than wrapped.
    pub fn phys_range(&self) -> Option<(u128, u128)> {
        self.phys_addr.map(|a| (u128::from(a), u128::from(a) + u128::from(self.size)))
    }
}

/// `<map>` inside a protection domain.
#[derive(Debug, Clone)]
pub struct Map {
    pub mr: String,
    /// `None` when absent or not a number (the Microkit tool refuses both).
    pub vaddr: Option<u64>,
    /// Read and write rights (`x` is ignored); Microkit's default is read-write.
    pub perms: Perms,
    pub setvar_vaddr: Option<String>,
    pub setvar_size: Option<String>,
    /// `setvar_prefill_size`: the symbol the Microkit tool patches with the size of the
    /// region's prefill.
    pub setvar_prefill_size: Option<String>,
    /// `cached` (Microkit's default true): false maps device memory.
    pub cached: bool,
    pub line: Line,
}

/// `<setvar symbol region_paddr>` inside a protection domain.
#[derive(Debug, Clone)]
pub struct SetVar {
    pub symbol: String,
    pub region_paddr: Option<String>,
    pub line: Line,
}

/// `<protection_domain>`. Child PDs are flattened into the list, in description order
/// (a parent before its children), and say whose child they are.
#[derive(Debug, Clone)]
pub struct ProtectionDomain {
    pub name: String,
    /// Microkit's default is 0.
    pub priority: u64,
    /// The core it runs on (`cpu`; Microkit's default is 0).
    pub cpu: u64,
    /// Its scheduling context: `budget` microseconds of each `period` (Microkit's
    /// defaults: 1,000, and the period equal to the budget).
    pub budget: u64,
    pub period: u64,
    /// `passive`: it runs on its callers' scheduling contexts once `init` is done.
    pub passive: bool,
    /// `stack_size` in bytes (Microkit's default: `board::DEFAULT_STACK_SIZE`): the stack
    /// sits at the top of its address space, so it ends the PD's maps and program there.
    pub stack_size: u64,
    /// `stack_size` was written (else the Microkit tool's default, or, for the IOMMU PD,
    /// what `plumbing::iommu_stack` gives it).
    pub stack_size_given: bool,
    /// The parent PD's name, for a child PD.
    pub parent: Option<String>,
    /// A child PD's `id` (its identifier in its parent).
    pub id: Option<u64>,
    pub maps: Vec<Map>,
    pub setvars: Vec<SetVar>,
    /// The virtual machines it runs (Microkit's `<virtual_machine>`, its VMM being this PD).
    pub vms: Vec<VirtualMachine>,
    /// Its seL4 scheduling domain (`domain`), when the description schedules domains.
    pub domain: Option<String>,
    /// Its `<irq>`s: each one's id, which shares the id space of its channel ends, and
    /// the interrupt it is.
    pub irqs: Vec<Irq>,
    /// Its `<ioport>`s (x86 only): their lines.
    pub ioports: Vec<Line>,
    /// Its `<cspace>` capabilities: (kind, as `cap_tcb` names it: `tcb`, `sc`, `vspace`,
    /// the PD whose object it is, line).
    pub cspace: Vec<(String, String, Line)>,
    /// `smc="true"`: it may call the firmware at EL3 (Secure Monitor Calls).
    pub smc: bool,
    /// `fpu` (Microkit's default true): false has seL4 trap its every floating-point and
    /// SIMD instruction as a fault.
    pub fpu: bool,
    /// Its `<program_image>`, and where its program lies once read (`crate::programs`).
    pub program: Option<Program>,
    /// Symbols patched in it besides its maps' and setvars': its children's `setvar_id`s
    /// (with the child's line).
    pub child_setvar_ids: Vec<(String, Line)>,
    /// Its `<irq>`s' `setvar_id`s (with the interrupt's line): symbols in it the Microkit
    /// tool patches with the interrupt's id, as it does a child's.
    pub irq_setvar_ids: Vec<(String, Line)>,
    pub line: Line,
}

impl ProtectionDomain {
    /// Every symbol the description has the Microkit tool patch in this PD (its maps'
    /// `setvar_vaddr`/`setvar_size`/`setvar_prefill_size`, its `<setvar>`s, its children's, its interrupts' and its
    /// channel ends' `setvar_id`s), with where each is set and that element's name. `ends` is
    /// `System::ends_by_pd`.
    pub fn setvar_symbols<'a>(
        &'a self,
        ends: &HashMap<&str, Vec<(&'a ChannelEnd, &'a ChannelEnd)>>,
    ) -> Vec<(&'a str, Line, &'static str)> {
        let mut symbols: Vec<(&str, Line, &str)> = Vec::new();
        for m in &self.maps {
            for s in [&m.setvar_vaddr, &m.setvar_size, &m.setvar_prefill_size].into_iter().flatten() {
                symbols.push((s, m.line, "map"));
            }
        }
        symbols.extend(self.setvars.iter().map(|v| (v.symbol.as_str(), v.line, "setvar")));
        symbols.extend(self.child_setvar_ids.iter().map(|(s, line)| (s.as_str(), *line, "protection_domain")));
        symbols.extend(self.irq_setvar_ids.iter().map(|(s, line)| (s.as_str(), *line, "irq")));
        symbols.extend(
            ends.get(self.name.as_str())
                .into_iter()
                .flatten()
                .filter_map(|(mine, _)| Some((mine.setvar_id.as_deref()?, mine.line, "end"))),
        );
        symbols
    }

    /// Every map that puts memory within its reach: its own, and its virtual machines'
    /// (a VMM runs its guests, and a guest's memory is the VMM's to give). With each, the
    /// virtual machine it is in, if any.
    pub fn all_maps(&self) -> impl Iterator<Item = (&Map, Option<&VirtualMachine>)> {
        self.maps
            .iter()
            .map(|m| (m, None))
            .chain(self.vms.iter().flat_map(|v| v.maps.iter().map(move |m| (m, Some(v)))))
    }
}

/// `<program_image path>`: the program a PD runs, which the Microkit tool finds in its
/// search path and loads at the addresses its ELF says.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: String,
    /// `path_for_symbols`: the file the Microkit tool reads the program's symbols from
    /// instead (the same program unstripped), if given.
    pub symbols_path: Option<String>,
    /// Where the Microkit tool puts its loadable segments in the PD's address space, each
    /// `[start, end)` covering every page it maps and the range it checks maps against
    /// (`crate::programs`); `None` while the program has not been read (no search path).
    pub segments: Option<Vec<(u64, u64)>>,
    /// Its loadable segments as the ELF gives them, `(vaddr, memsz)`: where the Microkit
    /// tool can write a symbol's value (empty while unread).
    pub loads: Vec<(u64, u64)>,
    /// Its symbol table by name, once read: what the Microkit tool patches must be there
    /// (`rules::programs`).
    pub symbols: Option<HashMap<String, Symbol>>,
    /// The files read for it, once read: the program, then its `path_for_symbols` if given.
    pub files: Vec<LoadedFile>,
    pub line: Line,
}

/// A file the Microkit tool loads, read for it (a program, its `path_for_symbols`, a
/// region's `prefill_path`): the path the description gives, the file the search path gave
/// for it, and its bytes as read, which the rules were held to (and which
/// `crate::checked` writes out unchanged for the Microkit tool).
#[derive(Clone)]
pub struct LoadedFile {
    pub name: String,
    pub file: std::path::PathBuf,
    pub bytes: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for LoadedFile {
    /// Its name, file and size: the bytes themselves are megabytes of no use in a message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoadedFile({:?} from {}, {} bytes)", self.name, self.file.display(), self.bytes.len())
    }
}

/// A symbol of a program's symbol table, as the Microkit tool looks it up
/// (tool/microkit/src/elf.rs, `find_symbol`): by name, among every symbol, local or global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol {
    pub value: u64,
    pub size: u64,
    /// Another symbol has its name: the Microkit tool will not patch it ("multiple symbols
    /// with name").
    pub twice: bool,
}

/// The symbol through which the IOMMU PD learns a region's physical address (`build`
/// writes a `setvar region_paddr` of it for each region devices may reach).
pub fn paddr_symbol(region: &str) -> String {
    let clean: String = region.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("iommu_paddr_{clean}")
}

/// `<irq>` of a protection domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Irq {
    /// Its `id`: the channel the PD is notified on.
    pub id: u64,
    /// Its `irq` (Arm's interrupt number), if given and read.
    pub irq: Option<u64>,
    /// Which interrupt controller's form it is written in.
    pub form: IrqForm,
    pub line: Line,
}

/// The form an `<irq>` is written in, as the Microkit tool tells them apart (sdf.rs: `irq`
/// first, whatever else the element has, then `pin`, then `pcidev`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqForm {
    /// Arm's (and RISC-V's): `irq`, a line of the interrupt controller.
    Arm,
    /// x86's I/O APIC line: `pin`.
    X86Pin,
    /// x86's MSI: `pcidev`.
    X86Msi,
}

/// `<virtual_machine>` inside a protection domain (its VMM): what the guest sees, as
/// `<map>`s whose `vaddr` is a guest-physical address.
#[derive(Debug, Clone)]
pub struct VirtualMachine {
    pub name: String,
    /// The guest's maps (their `vaddr` a guest-physical address); `cached` false marks
    /// device memory, not RAM.
    pub maps: Vec<Map>,
    /// Its vCPUs' priority (Microkit's default is the lowest, 0) and cores (`<vcpu cpu>`).
    pub priority: u64,
    pub vcpu_cpus: Vec<u64>,
    /// Its vCPUs' ids (`<vcpu id>`), each with its line: they share the id space of the
    /// VMM's children.
    pub vcpu_ids: Vec<(u64, Line)>,
    pub line: Line,
}

/// `<end>` of a `<channel>`.
#[derive(Debug, Clone)]
pub struct ChannelEnd {
    pub pd: String,
    /// The channel's identifier in `pd`.
    pub id: u64,
    /// `pp="true"`: `pd` may call the other end by protected procedure call.
    pub pp: bool,
    /// `setvar_id`: a symbol in `pd` the Microkit tool patches with the id.
    pub setvar_id: Option<String>,
    pub line: Line,
}

/// `<channel>` with its two ends.
#[derive(Debug, Clone)]
pub struct Channel {
    pub ends: [ChannelEnd; 2],
    pub line: Line,
}

impl Channel {
    /// The end of `pd` and the other end, if `pd` is one of the ends.
    pub fn end_of(&self, pd: &str) -> Option<(&ChannelEnd, &ChannelEnd)> {
        let [a, b] = &self.ends;
        if a.pd == pd {
            Some((a, b))
        } else if b.pd == pd {
            Some((b, a))
        } else {
            None
        }
    }
}

/// `<iomap>` inside an IO address space.
#[derive(Debug, Clone)]
pub struct IoMap {
    pub mr: String,
    pub iovaddr: u64,
    pub perms: Perms,
    /// Derived from a virtual machine's `<map>` (pass-through), not written as `<iomap>`.
    pub guest: bool,
    pub line: Line,
}

impl IoMap {
    /// The element at `line`, for problems that point at it.
    pub fn element(&self) -> &'static str {
        if self.guest {
            "map"
        } else {
            "iomap"
        }
    }
}

/// `<io_address_space>`: Microkit's element (name, peripheral_id, domain_id, iomaps) with
/// this project's attributes: the owning PD, the IOVA window the service hands out, the
/// fault policy, its guest (`vm`) and its other StreamIDs.
#[derive(Debug, Clone)]
pub struct IoSpace {
    pub name: String,
    pub stream: u32,
    pub domain_id: Option<u64>,
    pub owner: Option<String>,
    pub iova_base: u64,
    pub iova_size: u64,
    /// May the owner resume the device after a fault storm quarantined it (`resume`,
    /// default true)?
    pub resume: bool,
    pub iomaps: Vec<IoMap>,
    /// `vm`: the virtual machine the device is passed through to. Its IOMMU mappings are
    /// the guest's RAM at guest-physical addresses (derived into `iomaps`), and its owner
    /// is the VM's VMM.
    pub vm: Option<String>,
    /// `streams`: more StreamIDs of the device, sharing its address space.
    pub extra_streams: Vec<u32>,
    /// Its requester ID (bus << 8 | device << 3 | function), when `peripheral_id` is a PCI
    /// address: then it is a PCI function, and `stream` is derived from it.
    pub rid: Option<u16>,
    /// For each of `extra_streams`, the requester ID it was written as, if it was a PCI
    /// address (then that StreamID is derived from it too).
    pub extra_rids: Vec<Option<u16>>,
    /// `bar`: the region its driver maps as its BAR window, where the PCI owner places the
    /// function's memory BARs.
    pub bar: Option<String>,
    /// The INTx pins (bit 0 INTA# .. bit 3 INTD#) of a PCI function whose line, through
    /// the bridges above it and the board's host bridge, is an `<irq>` of its owner's PD
    /// (`topology::derive_intx`); 0 until derived, and for a device that is no function.
    pub intx: u8,
    pub line: Line,
}

/// `<pci_bridge>`: a bridge of the description, where it sits and the bus numbers the PCI
/// owner gives it.
#[derive(Debug, Clone)]
pub struct PciBridge {
    /// Its requester ID (bus << 8 | device << 3 | function).
    pub rid: u16,
    pub kind: iommu_pd::BridgeKind,
    pub secondary: u8,
    pub subordinate: u8,
    /// `acs` (default false): the port has Access Control Services, which the owner enables.
    pub acs: bool,
    pub line: Line,
}

impl PciBridge {
    /// The bus it sits on.
    pub fn bus(&self) -> u8 {
        (self.rid >> 8) as u8
    }
    /// Bus `b` is below it.
    pub fn covers(&self, b: u8) -> bool {
        (self.secondary..=self.subordinate).contains(&b)
    }
}

/// The kinds of `<pci_bridge kind>`, as the description spells them.
pub const BRIDGE_KINDS: &[(&str, iommu_pd::BridgeKind)] = &[
    ("root_port", iommu_pd::BridgeKind::RootPort),
    ("switch_upstream", iommu_pd::BridgeKind::SwitchUpstream),
    ("switch_downstream", iommu_pd::BridgeKind::SwitchDownstream),
    ("pcie_to_pci", iommu_pd::BridgeKind::PcieToPci),
    ("pci_to_pci", iommu_pd::BridgeKind::PciToPci),
];

/// How the description spells `kind`.
pub fn bridge_kind_name(kind: iommu_pd::BridgeKind) -> &'static str {
    BRIDGE_KINDS.iter().find(|(_, k)| *k == kind).map_or("?", |(n, _)| n)
}

/// A requester ID as `bus:device.function`, in hex as descriptions write it.
pub fn bdf(rid: u16) -> String {
    format!("{:x}:{:x}.{:x}", rid >> 8, (rid >> 3) & 0x1f, rid & 7)
}

/// Read/write permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
}

impl Perms {
    /// Every right in `other` is in `self`.
    pub fn contains(self, other: Perms) -> bool {
        (self.read || !other.read) && (self.write || !other.write)
    }
}

/// `<dma_capability>`: a client may map `[offset, offset + size)` of `mr` (or of its
/// parent capability) for `devices`, with `perms`.
#[derive(Debug, Clone)]
pub struct DmaCapability {
    pub name: String,
    pub pd: String,
    pub mr: Option<String>,
    pub parent: Option<String>,
    pub offset: u64,
    pub size: u64,
    pub perms: Perms,
    pub devices: Vec<String>,
    /// Clients it (and what is derived from it at run time) may be granted to.
    pub grant_to: Vec<String>,
    pub line: Line,
}

/// `<dma_quota>`: how much a client may have mapped at once.
#[derive(Debug, Clone)]
pub struct DmaQuota {
    pub pd: String,
    pub mappings: u64,
    pub pages: u64,
    /// Capabilities it may have granted and not yet seen revoked or released, at once.
    pub grants: u64,
    pub line: Line,
}

/// `<dma_queue>`: a client's mapping queue (`iommu_protocol::queue`) of `entries` slots a
/// ring. `crate::queues::complete` writes its region, `<pd>_queue`, and maps it into the
/// client (at `vaddr`, or where it chooses) and into the IOMMU PD, and fills in where.
#[derive(Debug, Clone)]
pub struct DmaQueue {
    pub pd: String,
    pub entries: u64,
    /// The client's map of the region: `vaddr` as written, then as generated.
    pub vaddr: Option<u64>,
    /// The description gave `vaddr` (build did not place it).
    pub vaddr_given: bool,
    /// The IOMMU PD's map of the region, once generated.
    pub iommu_vaddr: Option<u64>,
    /// `share`: its full batches take at most one `share`th of the IOMMU PD's time
    /// (`iommu_pd::pacing`; `SHARE` when not given).
    pub share: u64,
    /// The description declared a region of the queue's name itself (no region was
    /// generated, and `check` refuses it).
    pub name_taken: bool,
    pub line: Line,
}

/// `<iommu>`: which PD owns the IOMMU, the regions it keeps private (tables, queues),
/// and its page-table pool.
#[derive(Debug, Clone)]
pub struct Iommu {
    pub pd: String,
    /// Its own regions, no device's to reach: (role, region), the role being the
    /// attribute that names it (`stream_table`, `cmdq`, ...).
    pub private: Vec<(&'static str, String)>,
    pub table_pool: String,
    /// Fault storms: more than `max_faults` faults from one device within
    /// `fault_window_us` microseconds quarantine it.
    pub fault_window_us: u64,
    pub max_faults: u64,
    /// The description's word that no PD calling a passive IOMMU PD sends to it instead:
    /// a send lends no scheduling context (seL4's MCS `sendIPC`), so the passive IOMMU PD
    /// takes the message with none and never runs again. Nothing in a description can
    /// prove it, so a passive IOMMU PD with callers is refused without it.
    pub trust_callers_not_to_send: bool,
    pub line: Line,
}

/// The symbol through which the IOMMU PD (`pds/iommu`) finds the SMMU's registers: the
/// region it maps with this `setvar_vaddr` is the SMMU's register frame.
pub const SMMU_REGS: &str = "smmu_regs";

/// A capability's root capability (its index) and its offset in the root's region, or
/// `None` when it resolves to no region.
type Resolution = Option<(usize, u64)>;

/// A map of a region: the PD, the map, and the virtual machine it is in (a guest's map
/// counts as its VMM's).
pub type Mapper<'a> = (&'a ProtectionDomain, &'a Map, Option<&'a VirtualMachine>);

/// `<domains>`: the seL4 scheduling domains by name, and the schedule the kernel cycles
/// through (sdf.rs, `Domains`).
#[derive(Debug, Clone, Default)]
pub struct DomainSchedule {
    /// The declared domains' names, each with its line: the first `parse::NUM_DOMAINS`.
    pub names: Vec<(String, Line)>,
    /// How many `<domain>`s it declares; past `parse::NUM_DOMAINS` (refused) a name not
    /// among `names` may still be declared.
    pub declared: u64,
    /// `<schedule_entry>`s and `<schedule_end_marker>`s, in order.
    pub entries: Vec<ScheduleEntry>,
    /// `start_index`: the entry the kernel starts at (0 when absent).
    pub start_index: u64,
}

/// One entry of a domain schedule: a domain's time slot, or the end marker (`domain`
/// `None`), after which the kernel goes back to the start.
#[derive(Debug, Clone)]
pub struct ScheduleEntry {
    pub domain: Option<String>,
    pub duration: SlotLength,
    pub line: Line,
}

/// How long a domain's slot lasts, in the unit the description gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotLength {
    Us(u64),
    /// Ticks of the kernel's timer (the board's generic timer).
    Ticks(u64),
    /// The end marker's: no time.
    None,
}

/// The whole description.
#[derive(Debug, Clone, Default)]
pub struct System {
    pub regions: Vec<MemoryRegion>,
    pub pds: Vec<ProtectionDomain>,
    pub channels: Vec<Channel>,
    pub io_spaces: Vec<IoSpace>,
    /// `<pci_bridge>`s, in description order.
    pub bridges: Vec<PciBridge>,
    /// The `bar` regions of io_address_spaces the reader refused: no rule judges who maps
    /// them, since the one problem is the refused element.
    pub unread_bars: Vec<String>,
    pub caps: Vec<DmaCapability>,
    pub quotas: Vec<DmaQuota>,
    /// `<dma_queue>`s, in description order.
    pub queues: Vec<DmaQueue>,
    pub iommu: Option<Iommu>,
    /// The line of `<domains>` (or `<domain_schedule>`), when the description schedules
    /// seL4 domains.
    pub domains: Option<Line>,
    /// What `<domains>` declares, as the Microkit tool reads it (`None` without one).
    pub domain_schedule: Option<DomainSchedule>,
    /// The IOMMU plumbing `plumbing::complete` added (already in the lists above), as the
    /// XML `build` writes for it.
    pub generated: Generated,
    /// Names to places, built on the first lookup and again whenever an element was added
    /// since: the checks look names up for every capability and map, and a search of the
    /// lists made them quadratic in the description.
    names: std::cell::RefCell<Names>,
    /// Each capability's root capability and offset in its region (`resolve`), built on
    /// first use and again whenever a capability was added: (built for, resolutions).
    resolutions: std::cell::RefCell<(usize, Vec<Resolution>)>,
}

/// Where the first element of each name is, per kind, and the lengths it was built for.
#[derive(Debug, Clone, Default)]
struct Names {
    built_for: [usize; 4],
    regions: HashMap<String, usize>,
    pds: HashMap<String, usize>,
    io_spaces: HashMap<String, usize>,
    caps: HashMap<String, usize>,
}

fn first_of<'a>(names: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (i, n) in names.enumerate() {
        map.entry(n.clone()).or_insert(i);
    }
    map
}

impl System {
    /// The place of `name` in one kind's list, from the index (rebuilt if stale).
    fn place(&self, name: &str, kind: impl Fn(&Names) -> &HashMap<String, usize>) -> Option<usize> {
        let lengths = [self.regions.len(), self.pds.len(), self.io_spaces.len(), self.caps.len()];
        if self.names.borrow().built_for != lengths {
            *self.names.borrow_mut() = Names {
                built_for: lengths,
                regions: first_of(self.regions.iter().map(|r| &r.name)),
                pds: first_of(self.pds.iter().map(|p| &p.name)),
                io_spaces: first_of(self.io_spaces.iter().map(|s| &s.name)),
                caps: first_of(self.caps.iter().map(|c| &c.name)),
            };
        }
        kind(&self.names.borrow()).get(name).copied()
    }
    pub fn region(&self, name: &str) -> Option<&MemoryRegion> {
        self.place(name, |n| &n.regions).map(|i| &self.regions[i])
    }
    pub fn pd(&self, name: &str) -> Option<&ProtectionDomain> {
        self.place(name, |n| &n.pds).map(|i| &self.pds[i])
    }
    pub fn io_space(&self, name: &str) -> Option<&IoSpace> {
        self.place(name, |n| &n.io_spaces).map(|i| &self.io_spaces[i])
    }
    pub fn cap(&self, name: &str) -> Option<&DmaCapability> {
        self.place(name, |n| &n.caps).map(|i| &self.caps[i])
    }
    /// Capability `at`'s root capability (the one naming a region) and its offset in that
    /// region, or `None` (a missing parent, a loop, an offset past 2^64).
    fn resolution(&self, at: usize) -> Option<(usize, u64)> {
        if self.resolutions.borrow().0 != self.caps.len() || self.resolutions.borrow().1.len() != self.caps.len() {
            let all = self.resolve_all();
            *self.resolutions.borrow_mut() = (self.caps.len(), all);
        }
        self.resolutions.borrow().1.get(at).copied().flatten()
    }
    /// Every capability's resolution, each parent step taken once: a capability's answer is
    /// its parent's with its own offset added, found by walking up to the first answered
    /// ancestor and filling in the path on the way back.
    fn resolve_all(&self) -> Vec<Resolution> {
        #[derive(Clone, Copy)]
        enum State {
            Open,
            Walking,
            Done(Resolution),
        }
        let mut state = vec![State::Open; self.caps.len()];
        let index = |name: &str| self.place(name, |n| &n.caps);
        for start in 0..self.caps.len() {
            let mut path = Vec::new();
            let mut at = start;
            // Up to an answered capability, a root, a missing parent or a loop.
            let mut answer = loop {
                match state[at] {
                    State::Done(a) => break a,
                    State::Walking => break None,
                    State::Open => {}
                }
                state[at] = State::Walking;
                path.push(at);
                let c = &self.caps[at];
                match (&c.mr, &c.parent) {
                    (Some(_), _) => break Some((at, 0)),
                    (None, Some(parent)) => match index(parent) {
                        Some(next) => at = next,
                        None => break None,
                    },
                    (None, None) => break None,
                }
            };
            // Down the path: each adds its own offset to what is above it.
            while let Some(i) = path.pop() {
                answer = answer.and_then(|(root, off)| Some((root, off.checked_add(self.caps[i].offset)?)));
                state[i] = State::Done(answer);
            }
        }
        state.into_iter().map(|s| if let State::Done(a) = s { a } else { None }).collect()
    }
    /// The IOMMU PD's map of the SMMU's registers (its first map with
    /// `setvar_vaddr="smmu_regs"`), if there is an IOMMU PD.
    pub fn smmu_regs(&self) -> Option<&Map> {
        let iommu = self.pd(&self.iommu.as_ref()?.pd)?;
        iommu.maps.iter().find(|m| m.setvar_vaddr.as_deref() == Some(SMMU_REGS))
    }
    /// The IOMMU's own regions, (role, region): those `<iommu>` names, then the SMMU's
    /// register frame (role `smmu_regs`). Whoever can write any of them can point a
    /// stream at any memory, so only the IOMMU PD may map them and no device may reach
    /// them.
    pub fn iommu_own(&self) -> Vec<(&'static str, &str)> {
        let Some(iommu) = &self.iommu else { return Vec::new() };
        let mut own: Vec<(&'static str, &str)> = iommu.private.iter().map(|(role, r)| (*role, r.as_str())).collect();
        own.extend(self.smmu_regs().map(|m| (SMMU_REGS, m.mr.as_str())));
        own
    }
    /// The clients: PDs that own a device or hold a capability, in description order.
    /// Client `i` is index `i` in the generated policy.
    pub fn clients(&self) -> Vec<&ProtectionDomain> {
        let named: std::collections::HashSet<&str> = self
            .io_spaces
            .iter()
            .filter_map(|s| s.owner.as_deref())
            .chain(self.caps.iter().map(|c| c.pd.as_str()))
            .collect();
        self.pds.iter().filter(|p| named.contains(p.name.as_str())).collect()
    }
    /// Each PD's channel ends, with the other end: (its end, the other end), by PD name.
    pub fn ends_by_pd(&self) -> HashMap<&str, Vec<(&ChannelEnd, &ChannelEnd)>> {
        let mut index: HashMap<&str, Vec<_>> = HashMap::new();
        for c in &self.channels {
            let [a, b] = &c.ends;
            index.entry(a.pd.as_str()).or_default().push((a, b));
            if b.pd != a.pd {
                index.entry(b.pd.as_str()).or_default().push((b, a));
            }
        }
        index
    }
    /// The PDs with a `pp` end whose other end is `callee`: those that may call it, and so
    /// send to it (Microkit gives a `pp` end one endpoint capability for both).
    pub fn callers_of(&self, callee: &str) -> Vec<&ProtectionDomain> {
        let ends = self.ends_by_pd();
        let calls = |pd: &&ProtectionDomain| {
            ends.get(pd.name.as_str()).is_some_and(|e| e.iter().any(|(mine, theirs)| mine.pp && theirs.pd == callee))
        };
        self.pds.iter().filter(calls).collect()
    }
    /// The PDs that can make a send reach `pd`'s endpoint, in description order: those
    /// holding a capability to it, its callers (`callers_of`) and its children (Microkit
    /// puts the parent's endpoint, with every right, in a child's CSpace as its fault
    /// endpoint); and, other than `pd` itself, every PD holding one of their TCBs (as its
    /// parent does: Microkit gives a parent its children's; or one a `<cspace>` gives), and so
    /// on: with the TCB it can set that PD's thread running anywhere in its program (a send
    /// included, `seL4_TCB_WriteRegisters`), whatever that program was trusted to do.
    pub fn senders_to(&self, pd: &str) -> Vec<&ProtectionDomain> {
        let mut senders: std::collections::HashSet<&str> =
            self.callers_of(pd).iter().map(|p| p.name.as_str()).collect();
        senders.extend(self.pds.iter().filter(|p| p.parent.as_deref() == Some(pd)).map(|p| p.name.as_str()));
        let holds_a_senders_tcb = |p: &ProtectionDomain, senders: &std::collections::HashSet<&str>| {
            p.name != pd
                && (p.cspace.iter().any(|(kind, of, _)| kind == "tcb" && senders.contains(of.as_str()))
                    || self
                        .pds
                        .iter()
                        .any(|s| s.parent.as_deref() == Some(p.name.as_str()) && senders.contains(s.name.as_str())))
        };
        // Until no PD is added: a PD holding the TCB of one that holds a sender's is one too.
        loop {
            let more: Vec<&str> = self
                .pds
                .iter()
                .filter(|p| !senders.contains(p.name.as_str()) && holds_a_senders_tcb(p, &senders))
                .map(|p| p.name.as_str())
                .collect();
            if more.is_empty() {
                break;
            }
            senders.extend(more);
        }
        self.pds.iter().filter(|p| senders.contains(p.name.as_str())).collect()
    }
    /// Every element that gives devices a region: each capability (followed to its root's
    /// region) and each iomap, as (region, line, element). One definition for the policy's
    /// region table, the rules (`dma_region_names`, the IOMMU's own memory) and, per
    /// device through `iommu_pd::reach`, the report (`tests/reach.rs` holds the two equal).
    pub fn dma_grants(&self) -> impl Iterator<Item = (&str, Line, &'static str)> + '_ {
        self.caps
            .iter()
            .filter_map(|c| resolve(self, c).map(|(mr, _)| (mr, c.line, "dma_capability")))
            .chain(self.io_spaces.iter().flat_map(|s| s.iomaps.iter().map(|m| (m.mr.as_str(), m.line, m.element()))))
    }
    /// The regions devices may reach: those `dma_grants` names.
    pub fn dma_region_names(&self) -> std::collections::HashSet<&str> {
        self.dma_grants().map(|(mr, _, _)| mr).collect()
    }
    /// Every map of every region by any PD or virtual machine, by region name: the rules
    /// that ask who maps each of many regions look it up here instead of scanning every
    /// map each time.
    pub fn mapper_index(&self) -> HashMap<&str, Vec<Mapper<'_>>> {
        let mut index: HashMap<&str, Vec<_>> = HashMap::new();
        for pd in &self.pds {
            for (m, v) in pd.all_maps() {
                index.entry(m.mr.as_str()).or_default().push((pd, m, v));
            }
        }
        index
    }
}

/// What `complete` wrote, as XML for `build`.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// Top-level elements (regions and channels): written where `<iommu>` was.
    pub top: String,
    /// Inside the IOMMU PD (maps and setvars): written on its closing line.
    pub in_iommu_pd: String,
    /// `id`s given to the IOMMU PD's children that had none: (PD, id).
    pub child_ids: Vec<(String, u64)>,
    /// Regions the plumbing would have written that the description already declares
    /// (name, line): taken as they are, so `check` refuses them (a stream table of the
    /// user's size and place is not what the IOMMU PD was built for).
    pub adopted: Vec<(String, Line)>,
    /// Each generated queue region, written where its `<dma_queue>` was: (line, XML).
    pub queue_regions: Vec<(Line, String)>,
    /// Maps written just after a client's start tag: (PD, XML).
    pub in_pd: Vec<(String, String)>,
    /// The IOMMU PD's `stack_size`, written on its start tag, when the description gives none.
    pub iommu_stack: Option<u64>,
}

/// The highest channel, interrupt and child id in a PD: the Microkit tool's `PD_MAX_ID`
/// (a badge has 62 bits for ids).
pub const MAX_ID: u64 = 61;

/// A page: the unit of every mapping, IOMMU or CPU.
pub const PAGE: u64 = 0x1000;

/// Page-table pages the devices may need at once, whatever any client does: one definition
/// for the pool `complete` writes and the one `check` demands.
///
/// A root per device, and for each client the smaller of two bounds on the tables its
/// devices hold (for a device no client owns, the same over its static maps):
/// - three tables (levels 1 to 3 of a 48-bit space) per page it may have mapped at once.
///   The SMMU driver gives back tables that map nothing whenever the pool runs short, so
///   only what is mapped holds tables then, and quotas bound that; without it, a client
///   mapping and unmapping one page at IOVAs 2 MiB apart would hold a table for every
///   place it ever mapped at;
/// - every table that can cover its devices' IOVA windows: tables are only ever made
///   inside a window (for `system.xml`'s 1 MiB windows, three a device).
///
/// The sum is what the worst mix of clients can hold at once, so no client's mappings
/// (nor its unmaps) can leave another's MAP without a table.
pub fn table_pool_pages(sys: &System) -> u64 {
    // Tables covering [base, base + size) below a 48-bit root: one per 512 GiB (level 1),
    // 1 GiB (level 2) and 2 MiB (level 3) range the window touches.
    let cover = |s: &IoSpace| -> u64 {
        let last = s.iova_base.saturating_add(s.iova_size.max(1) - 1);
        [39u32, 30, 21].iter().map(|&shift| (last >> shift) - (s.iova_base >> shift) + 1).sum()
    };
    let per_page = |pages: u64| pages.min(1 << 36) * 3;
    let covers = |pd: &str| -> u64 {
        let owned = sys.io_spaces.iter().filter(|s| s.owner.as_deref() == Some(pd));
        owned.map(cover).fold(0, u64::saturating_add)
    };
    let clients: u64 = sys.quotas.iter().map(|q| per_page(q.pages).min(covers(&q.pd))).fold(0, u64::saturating_add);
    let quota_of = |pd: &str| sys.quotas.iter().any(|q| q.pd == pd);
    let unowned: u64 = sys
        .io_spaces
        .iter()
        .filter(|s| !s.owner.as_deref().is_some_and(quota_of))
        .map(|s| {
            // An iomap maps its whole region.
            let region_pages = |mr: &str| sys.region(mr).map(|r| r.size.div_ceil(PAGE));
            let pages = s.iomaps.iter().filter_map(|m| region_pages(&m.mr)).fold(0, u64::saturating_add);
            per_page(pages).min(cover(s))
        })
        .fold(0, u64::saturating_add);
    (sys.io_spaces.len() as u64).saturating_add(clients).saturating_add(unowned)
}

/// Two ranges `(start, length)` share a byte.
pub fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// Among `ranges` (`[start, end)`, each with the line of its element), every one that
/// shares a byte with one before it in address order, with that one, the later line first:
/// a sweep over them sorted by address, so 20,000 at one address cost a sort, not
/// 4 x 10^8 pairs. Empty ranges overlap nothing.
pub fn overlapping<T: Copy>(ranges: impl Iterator<Item = (u128, u128, Line, T)>) -> Vec<(T, T)> {
    let mut placed: Vec<(u128, u128, Line, T)> = ranges.filter(|&(s, e, ..)| e > s).collect();
    placed.sort_by_key(|&(start, end, line, _)| (start, end, line));
    let mut found = Vec::new();
    // The range reaching furthest so far.
    let mut furthest: Option<(u128, Line, T)> = None;
    for &(start, end, line, item) in &placed {
        match furthest {
            Some((e, other_line, other)) if e > start => {
                found.push(if line >= other_line { (item, other) } else { (other, item) });
                if end > e {
                    furthest = Some((end, line, item));
                }
            }
            _ => furthest = Some((end, line, item)),
        }
    }
    found
}

/// The region a capability finally names, and its offset within it, following parents;
/// `None` for a missing parent or a loop. From `System::resolutions`, so a chain of 20,000
/// derivations costs 20,000 steps once, not 20,000 per capability.
pub fn resolve<'a>(sys: &'a System, cap: &'a DmaCapability) -> Option<(&'a str, u64)> {
    let base = sys.caps.as_ptr() as usize;
    let at = (cap as *const DmaCapability as usize).wrapping_sub(base) / std::mem::size_of::<DmaCapability>().max(1);
    match sys.caps.get(at) {
        Some(c) if std::ptr::eq(c, cap) => {
            let (root, offset) = sys.resolution(at)?;
            Some((sys.caps[root].mr.as_deref()?, offset))
        }
        // Not one of `sys`'s: follow it by name.
        _ => {
            let mut c = cap;
            let mut offset = 0u64;
            for _ in 0..=sys.caps.len() {
                offset = offset.checked_add(c.offset)?;
                match (&c.mr, &c.parent) {
                    (Some(mr), _) => return Some((mr.as_str(), offset)),
                    (None, Some(parent)) => c = sys.cap(parent)?,
                    (None, None) => return None,
                }
            }
            None
        }
    }
}

/// What the IOMMU's own region of `role` is, for messages.
pub fn own_role(role: &str) -> &'static str {
    match role {
        SMMU_REGS => "the SMMU's registers",
        "stream_table" => "the IOMMU's stream table",
        "cmdq" => "the IOMMU's command queue",
        "eventq" => "the IOMMU's event queue",
        "context_descriptors" => "the IOMMU's context descriptors",
        _ => "the IOMMU's page-table pool",
    }
}

/// The end of the largest IOVA space the IOMMU PD can set the SMMU up for
/// (`Config::ias_bits` at most 48).
pub const IOVA_LIMIT: u64 = 1 << 48;

/// The symbol through which the IOMMU PD (pds/iommu) learns where its region for `role`
/// is mapped; `_size` and `_paddr` follow it.
pub fn own_region_symbol(role: &str) -> &'static str {
    match role {
        "stream_table" => "smmu_strtab",
        "cmdq" => "smmu_cmdq",
        "eventq" => "smmu_eventq",
        "context_descriptors" => "smmu_cds",
        _ => "smmu_tables",
    }
}

/// Whether `a` is one edit from `b` (a character added, dropped, changed, or two
/// neighbours swapped), or the same but for case: the typos a "did you mean" catches.
fn one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 || a == b {
        return false;
    }
    if a.len() == b.len() {
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        return match diff[..] {
            [_] => true,
            [i, j] if j == i + 1 && a[i] == b[j] && a[j] == b[i] => true,
            _ => a.iter().zip(&b).all(|(x, y)| x.eq_ignore_ascii_case(y)),
        };
    }
    let (short, long) = if a.len() < b.len() { (&a, &b) } else { (&b, &a) };
    let at = short.iter().zip(long.iter()).position(|(x, y)| x != y).unwrap_or(short.len());
    short[at..] == long[at + 1..]
}

/// " (did you mean `x`?)" for the first of `names` one edit from `name`, or "".
pub fn did_you_mean<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> String {
    names.into_iter().find(|n| one_edit(name, n)).map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default()
}
