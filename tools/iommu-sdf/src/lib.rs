//! `iommu-sdf`: reads a Microkit system description with the IOMMU service's elements and
//! checks that the DMA isolation it describes is what it says.
//!
//! The description uses Microkit's own vocabulary where it fits (`memory_region`,
//! `protection_domain`, `map`, and `io_address_space`/`iomap` as Microkit 2.3 defines
//! them for x86: name, peripheral_id, domain_id; iomap mr, iovaddr, perms) and these
//! extensions:
//! - on `io_address_space`: `owner` (the driver PD), `iova_base`/`iova_size` (the window
//!   the service hands out), `resume`, `vm`, `streams` (the device's other StreamIDs),
//!   `bar` (a PCI function's BAR window: the region its driver maps, where the PCI owner
//!   places its memory BARs); `peripheral_id` is the SMMU StreamID (or
//!   `bus:device.function`, the function's requester ID);
//! - `<pci_bridge bdf kind secondary subordinate acs>`: a bridge and the bus numbers the
//!   PCI owner (the IOMMU PD) gives it, so every requester ID is known before the system
//!   runs;
//! - `<dma_capability name pd mr|parent offset size perms devices>`: what a driver may
//!   map, for which of its devices; `parent` derives a narrower one statically, for the
//!   parent's holder or for a PD in the parent's `grant_to`;
//! - `<dma_quota pd mappings pages>`;
//! - `<dma_queue pd entries vaddr share>`: a client's mapping queue; `build` writes its region
//!   and maps it into the client and the IOMMU PD only (`queues`);
//! - `<iommu pd stream_table cmdq eventq context_descriptors table_pool>`: the IOMMU PD
//!   and the regions no device may ever reach. With the SMMU's registers (the region the
//!   IOMMU PD maps with `setvar_vaddr="smmu_regs"`), they are the IOMMU's own: no other PD
//!   may map them, nor any region that overlaps one of them in physical memory.
//!
//! `check` also holds the description to the conventions the IOMMU PD (`pds/iommu`)
//! relies on, which would otherwise build and then misbehave (a driver served as another
//! client, with that client's capabilities). The clients are the PDs that own a device or
//! hold a capability, in description order (a parent before its children); with `N`
//! clients, client `i` (its index in the generated policy):
//! - calls the IOMMU PD on a `<channel>` whose client `<end>` has `pp="true"` and whose
//!   IOMMU end has id `i + 1`; no other channel of the IOMMU PD uses an id in `1..=N`,
//!   and the IOMMU PD's end never has `pp="true"` (it must not call a client);
//! - has its fault ring at `fault_rings + i * 0x1000` in the IOMMU PD (whose one map with
//!   `setvar_vaddr="fault_rings"` is client 0's ring): a one-page region of its own,
//!   mapped `rw` there, read-only in the client if the client maps it, mapped by no other
//!   PD, and never granted or iomapped for DMA;
//! - has a priority below the IOMMU PD's (an absent priority is 0, as in Microkit), so
//!   that the IOMMU PD's `init` makes every stream abort before any driver runs;
//! - as a child PD of the IOMMU PD, has `id` `i + 1`; a child of the IOMMU PD that is not
//!   a client has an id above `N`;
//! - if the IOMMU PD is passive (`scheduling`): it, its children and every PD that calls
//!   it have a budget equal to their period, none of its children or callers is passive,
//!   its children run on its core, and it runs no virtual machine itself.

pub mod board;
pub mod build;
pub mod checked;
pub mod gen;
pub mod knock_on;
pub mod model;
pub mod nofollow;
pub mod numbers;
pub mod parse;
pub mod picture;
pub mod placement;
pub mod plumbing;
pub mod policy;
pub mod private_copy;
pub mod problem;
pub mod programs;
pub mod queues;
pub mod regular;
pub mod report;
pub mod rules;
pub mod signals;
pub mod topology;

pub use board::{Board, Target};
pub use problem::{column, Problem};

/// `summary` for `board`: on x86_64 boards the Microkit tool, not the IOMMU PD, enforces
/// the description's IO address spaces; on an MMU-500 whose SoC has StreamIDs matched
/// under a mask, a StreamID that differs from a listed one only in masked bits is
/// translated as that one, so "every other stream aborts" would be false (the report
/// says what each stands for).
pub fn summary_on(sys: &model::System, board: &Board) -> String {
    let mask = match board.iommu {
        board::BoardIommu::Mmu500(m) => m.smr_mask,
        _ => 0,
    };
    match board.target {
        Target::Arm if mask != 0 && sys.iommu.is_some() => format!(
            "{} protection domains, {} IO address spaces, {} DMA capabilities; every StreamID that matches none of the description's under the SMMU's mask {mask:#x} aborts",
            sys.pds.len(),
            sys.io_spaces.len(),
            sys.caps.len()
        ),
        target => summary_for(sys, target),
    }
}

/// `summary` for `target`: on x86_64 boards the Microkit tool, not the IOMMU PD, enforces
/// the description's IO address spaces.
pub fn summary_for(sys: &model::System, target: Target) -> String {
    match target {
        Target::Arm => summary(sys),
        Target::X86_64 => format!(
            "{} protection domains, {} IO address spaces; on x86_64 the Microkit tool programs the IOMMU from them",
            sys.pds.len(),
            sys.io_spaces.len()
        ),
    }
}

/// What a description that passed `check` enforces, for its last line. Without an IOMMU
/// PD nothing makes a stream abort and the checks that need one were not made; saying
/// "every other stream aborts" then would be false.
pub fn summary(sys: &model::System) -> String {
    match &sys.iommu {
        Some(_) => format!(
            "{} protection domains, {} IO address spaces, {} DMA capabilities; every other stream aborts",
            sys.pds.len(),
            sys.io_spaces.len(),
            sys.caps.len()
        ),
        None => format!(
            "{} protection domains; no IOMMU PD (no <iommu> element): nothing in this description restricts DMA, and the checks that need one were not made (the IOMMU's own regions, client channels, fault rings, priorities and cores, quotas, the page-table pool)",
            sys.pds.len()
        ),
    }
}

/// Read and check `text` for an Arm board: every problem, reading problems first.
pub fn check_text(text: &str) -> (model::System, Vec<Problem>) {
    check_text_for(text, Target::Arm)
}

/// Read and check `text` for `target`'s usual board (`qemu_virt_aarch64` on Arm).
pub fn check_text_for(text: &str, target: Target) -> (model::System, Vec<Problem>) {
    let board = match target {
        Target::Arm => Board::default(),
        Target::X86_64 => Board::named("x86_64_generic"),
    };
    check_text_on(text, &board)
}

/// What `check` allows but warns of (a zero quota, `domain_id` on Arm, DMA into memory
/// other PDs map), for a description it accepted; never a reason to refuse.
pub fn warnings_on(sys: &model::System, board: &Board) -> Vec<Problem> {
    match board.target {
        Target::Arm => rules::warnings::check(sys, board),
        Target::X86_64 => Vec::new(),
    }
}

/// Read and check `text` for `board`, its programs unread.
pub fn check_text_on(text: &str, board: &Board) -> (model::System, Vec<Problem>) {
    check_text_with(text, board, &[])
}

/// Read and check `text` for `board`, with the PDs' programs read from `search` (the
/// Microkit tool's search path; none read if it is empty: `programs`).
pub fn check_text_with(text: &str, board: &Board, search: &[std::path::PathBuf]) -> (model::System, Vec<Problem>) {
    let target = board.target;
    let (sys, mut problems) = parse::parse(text);
    if problems.iter().any(|p| p.element == "xml") {
        return (sys, problems);
    }
    let mut sys = sys;
    problems.extend(programs::read(&mut sys, search, target));
    match target {
        Target::Arm => {
            topology::derive_streams(&mut sys, board);
            plumbing::complete(&mut sys);
            topology::derive_intx(&mut sys, board);
            plumbing::iommu_stack(&mut sys);
            queues::complete(&mut sys);
            let mut found = rules::check(&sys, board);
            found.extend(policy::check(&sys));
            let numbers = numbers::check(&sys);
            return (sys.clone(), knock_on::first_causes(text, &sys, problems, found, numbers));
        }
        Target::X86_64 => {
            problems.extend(rules::x86::check(text));
            // The IOMMU PD's rules are not Microkit's x86 ones: the rest of the checks
            // see the description without the IOMMU's elements.
            let mut rest = sys.clone();
            rest.io_spaces.clear();
            rest.bridges.clear();
            rest.caps.clear();
            rest.quotas.clear();
            rest.iommu = None;
            problems.extend(rules::check(&rest, board));
        }
    }
    problems.sort_by_key(|p| p.line);
    (sys, problems)
}
