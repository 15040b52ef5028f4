//! The conventions the IOMMU PD (`pds/iommu`) relies on.

use crate::model::*;
use crate::problem::{p, Problem};

/// The IOMMU PD's map with `setvar_vaddr=symbol`, which a symbol can name once: each
/// further map with it is refused (`why` says what goes wrong, `fix` what to do).
fn symbol_map<'a>(
    iommu: &'a ProtectionDomain,
    symbol: &str,
    (why, fix): (&str, &str),
    out: &mut Vec<Problem>,
) -> Option<&'a Map> {
    let mut maps = iommu.maps.iter().filter(|m| m.setvar_vaddr.as_deref() == Some(symbol));
    let first = maps.next()?;
    for m in maps {
        out.push(p(
            m.line,
            "map",
            format!(
                "a second map with setvar_vaddr=\"{symbol}\" in the IOMMU PD `{}` (the first is on line {}): the symbol can hold only one address{why}",
                iommu.name, first.line
            ),
            fix,
        ));
    }
    Some(first)
}

/// Each client's program is named by its bare file name. The IOMMU PD restarts a crashed
/// client from the entry point of its program (`CLIENT_PROGRAMS`, the `program_image path`
/// as written), which its build finds among the programs of the build directory by file
/// name (`pds/iommu/build.rs`, `restart_entries`): `./x.elf` or `sub/x.elf` was found under
/// no name, and the client never restarted, and matching on the last component instead
/// would take `x.elf`'s entry for `sub/x.elf`, another program. And it ends in `.elf`:
/// that build reads only the `*.elf` files there (and images/Makefile builds a C PD only
/// for a `program_image` named so), so a libmicrokit client under another name was never
/// restarted, and nothing said so.
fn restart_programs(clients: &[&ProtectionDomain], out: &mut Vec<Problem>) {
    for (c, program) in clients.iter().filter_map(|c| Some((c, c.program.as_ref()?))) {
        let path = program.path.as_str();
        if !path.contains('/') && !path.ends_with(".elf") {
            out.push(p(
                program.line,
                "program_image",
                format!(
                    "the program of client `{}` is `{path}`, not named `*.elf`: the IOMMU PD restarts a crashed client from its program's entry, found among the build's `*.elf` programs, so this client would never be restarted",
                    c.name
                ),
                "name the program's file NAME.elf (path=\"NAME.elf\"), as images/Makefile names the C PDs it builds",
            ));
        }
        if path.contains('/') || matches!(path, "" | "." | "..") {
            out.push(p(
                program.line,
                "program_image",
                format!(
                    "the program of client `{}` is `{path}`, not a bare file name: the IOMMU PD restarts a crashed client from its program's entry, found among the build's programs by file name, so this client would never be restarted",
                    c.name
                ),
                "name the program by its file name alone (path=\"x.elf\") and give its directory to --search-path",
            ));
        }
    }
}

/// The conventions the IOMMU PD (`pds/iommu`) relies on. Client `i` (in
/// `System::clients` order, its index in the generated policy) calls it on the channel
/// whose IOMMU end has id `i + 1`; its fault ring is the one-page region the IOMMU PD
/// maps at `fault_rings + i * 0x1000`; it runs below the IOMMU PD; and, as the IOMMU PD's
/// child, it has id `i + 1`. A broken convention would have a driver served as another
/// client, with that client's capabilities, or let it forge its own fault records.
pub fn conventions(sys: &System, out: &mut Vec<Problem>) {
    let Some(iommu) = sys.iommu.as_ref().and_then(|i| sys.pd(&i.pd)) else { return };
    let clients = sys.clients();
    let n = clients.len() as u64;
    // Client i's channel is id i + 1 at the IOMMU PD, and the Microkit tool takes ids up
    // to MAX_ID: more clients could not all call it (and the rules below would be
    // quadratic in them).
    if let Some(c) = clients.get(MAX_ID as usize) {
        out.push(p(
            c.line,
            "protection_domain",
            format!(
                "`{}` is client number {}, and the IOMMU PD has channel ids for {MAX_ID} clients (ids 1..={MAX_ID}; the Microkit tool takes none above {MAX_ID})",
                c.name,
                MAX_ID + 1
            ),
            "fewer PDs may own devices or hold DMA capabilities",
        ));
        return;
    }
    restart_programs(&clients, out);
    let index = |pd: &str| clients.iter().position(|c| c.name == pd);
    let reserved = |id: u64| (1..=n).contains(&id);
    // The IOMMU PD's end and the client's end of each channel between them.
    let iommu_channels: Vec<(&ChannelEnd, &ChannelEnd)> = sys
        .channels
        .iter()
        .filter_map(|ch| ch.end_of(&iommu.name))
        .filter(|(_, theirs)| theirs.pd != iommu.name)
        .collect();
    // More ends than ids: the platform rules refuse the ids twice used; checking each
    // against the others here would be quadratic in a hostile description's channels.
    if iommu_channels.len() > (MAX_ID + 1) as usize {
        return;
    }

    // Channels: the IOMMU PD's ids 1..=N are the clients', in order.
    for &(mine, theirs) in &iommu_channels {
        // The IOMMU PD calls no one: a call would block it on the other PD (and, passive,
        // run it on that PD's scheduling context).
        if mine.pp {
            let whom = if index(&theirs.pd).is_some() { "client " } else { "" };
            out.push(p(
                mine.line,
                "end",
                format!(
                    "the IOMMU PD `{}` may call {whom}`{}` (pp=\"true\" on its end): it would block on another PD",
                    iommu.name, theirs.pd
                ),
                "remove pp=\"true\" from the IOMMU PD's end: other PDs call the IOMMU PD, never the reverse",
            ));
        }
        match index(&theirs.pd) {
            Some(j) => {
                let own = j as u64 + 1;
                if mine.id == own {
                    if !theirs.pp {
                        out.push(p(
                            theirs.line,
                            "end",
                            format!(
                                "client {j} `{}` cannot call the IOMMU PD `{}` on its channel: its end has no pp=\"true\"",
                                theirs.pd, iommu.name
                            ),
                            "add pp=\"true\" to the client's end",
                        ));
                    }
                } else if reserved(mine.id) {
                    let other = clients[(mine.id - 1) as usize];
                    out.push(p(
                        mine.line,
                        "end",
                        format!(
                            "the IOMMU PD's end of client {j} `{}`'s channel has id {}, which is client {} `{}`'s: `{}` would be served as `{}`, with its capabilities",
                            theirs.pd, mine.id, mine.id - 1, other.name, theirs.pd, other.name
                        ),
                        format!("use id=\"{own}\" at the IOMMU PD's end: client i's channel is id i + 1"),
                    ));
                } else if !iommu_channels.iter().any(|(m, t)| t.pd == theirs.pd && m.id == own) {
                    out.push(p(
                        mine.line,
                        "end",
                        format!(
                            "the IOMMU PD's end of client {j} `{}`'s channel has id {}: the IOMMU PD serves client {j} on id {own} only",
                            theirs.pd, mine.id
                        ),
                        format!("use id=\"{own}\" at the IOMMU PD's end: client i's channel is id i + 1"),
                    ));
                }
            }
            None if reserved(mine.id) => {
                let other = clients[(mine.id - 1) as usize];
                out.push(p(
                    mine.line,
                    "end",
                    format!(
                        "the IOMMU PD's end of the channel to `{}` has id {}, which is client {} `{}`'s: `{}` would be served as `{}`, with its capabilities",
                        theirs.pd, mine.id, mine.id - 1, other.name, theirs.pd, other.name
                    ),
                    format!("give this channel an id above {n} at the IOMMU PD's end: ids 1..={n} are the clients'"),
                ));
            }
            None => {}
        }
    }
    for (j, c) in clients.iter().enumerate() {
        if c.name != iommu.name && !iommu_channels.iter().any(|(_, theirs)| theirs.pd == c.name) {
            out.push(p(
                c.line,
                "protection_domain",
                format!(
                    "client {j} `{}` has no channel to the IOMMU PD `{}`: it cannot ask for DMA mappings",
                    c.name, iommu.name
                ),
                format!(
                    "add <channel><end pd=\"{}\" id=\"0\" pp=\"true\" /><end pd=\"{}\" id=\"{}\" /></channel>",
                    c.name,
                    iommu.name,
                    j + 1
                ),
            ));
        }
    }

    // Its own regions: it learns each one's address, size and physical address through
    // symbols of fixed names (pds/iommu), which the Microkit tool writes only if asked.
    if let Some(i) = &sys.iommu {
        for (role, region) in &i.private {
            let sym = own_region_symbol(role);
            let (size, paddr) = (format!("{sym}_size"), format!("{sym}_paddr"));
            match iommu.maps.iter().find(|m| &m.mr == region) {
                None => out.push(p(
                    iommu.line,
                    "protection_domain",
                    format!("the IOMMU PD `{}` does not map its {role} `{region}`", iommu.name),
                    format!(
                        "add <map mr=\"{region}\" vaddr=\"...\" perms=\"rw\" setvar_vaddr=\"{sym}\" setvar_size=\"{size}\" />"
                    ),
                )),
                Some(m) if m.setvar_vaddr.as_deref() != Some(sym) || m.setvar_size.as_deref() != Some(&size) => {
                    out.push(p(
                        m.line,
                        "map",
                        format!(
                            "the IOMMU PD maps its {role} `{region}` without setvar_vaddr=\"{sym}\" setvar_size=\"{size}\": it would not know where it is or how big"
                        ),
                        format!("add setvar_vaddr=\"{sym}\" setvar_size=\"{size}\" to this map"),
                    ))
                }
                Some(m) if !(m.perms.read && m.perms.write) => out.push(super::read_write(m, &format!("its {role} `{region}`"))),
                Some(_) => {}
            }
            if !iommu.setvars.iter().any(|v| v.symbol == paddr && v.region_paddr.as_deref() == Some(region)) {
                out.push(p(
                    iommu.line,
                    "protection_domain",
                    format!(
                        "the IOMMU PD `{}` is not told the physical address of its {role} `{region}`, which the SMMU needs",
                        iommu.name
                    ),
                    format!("add <setvar symbol=\"{paddr}\" region_paddr=\"{region}\" /> to the IOMMU PD"),
                ));
            }
        }
    }

    // The SMMU's registers: the IOMMU PD finds them through the symbol `smmu_regs`, and
    // that map is also how this tool knows which region to keep from every other PD and
    // every device.
    let twice = (
        ", and only the first region would be kept from other PDs and devices",
        "keep setvar_vaddr=\"smmu_regs\" on the map of the SMMU's register frame only",
    );
    let regs = symbol_map(iommu, SMMU_REGS, twice, out);
    // Registers are Device memory to the architecture: mapped as Normal (cached, Microkit's
    // default) the IOMMU PD's writes may stay in its cache and its reads be served from
    // there, so the SMMU need not see the stream table, the abort or the enable that the
    // IOMMU PD reads back as done.
    if let Some(m) = regs.filter(|m| !(m.perms.read && m.perms.write)) {
        out.push(super::read_write(m, &format!("the SMMU's registers `{}`", m.mr)));
    }
    if let Some(m) = regs.filter(|m| m.cached) {
        out.push(super::cached_registers(
            m,
            &format!("the SMMU's registers `{}`", m.mr),
            "its writes may stay in its cache and its reads come from there, so the SMMU need not see the stream table, the abort or the enable the IOMMU PD reads back as done",
        ));
    }
    // Another map of the same frame, cached, is a cacheable alias of the registers: the
    // CPU may read them speculatively through it and keep lines of them, and with
    // mismatched attributes the Arm ARM (DDI 0487, "Mismatched memory attributes") no
    // longer promises that the uncached map's accesses miss those lines. The IOMMU PD
    // needs no cached view of its registers.
    if let Some(regs) = regs {
        for m in iommu.maps.iter().filter(|m| m.mr == regs.mr && m.cached && !std::ptr::eq(*m, regs)) {
            out.push(p(
                m.line,
                "map",
                format!(
                    "the IOMMU PD maps the SMMU's registers `{}` a second time, cached (the map on line {} is uncached): a cacheable alias lets the CPU read them speculatively and keep them in its caches, and with mismatched attributes the uncached map's reads and writes are no longer promised to bypass those lines",
                    m.mr, regs.line
                ),
                "remove this map, or add cached=\"false\" to it",
            ));
        }
    }
    if regs.is_none() {
        out.push(p(
            iommu.line,
            "protection_domain",
            format!(
                "the IOMMU PD `{}` has no map with setvar_vaddr=\"smmu_regs\": it would not find the SMMU, and nothing here says which region is the SMMU's registers, to keep other PDs and devices from it",
                iommu.name
            ),
            "map the SMMU's register frame in the IOMMU PD with perms=\"rw\" cached=\"false\" setvar_vaddr=\"smmu_regs\"",
        ));
    }

    super::scheduling::check(sys, iommu, &clients, out);

    // Every client is the IOMMU PD's own child: Microkit reports a PD's fault to its
    // parent alone, and the IOMMU PD blocks a crashed client's devices and removes their
    // mappings only when it hears of the crash. A client anywhere else would crash with its
    // devices still reaching its memory (a grandchild's fault goes to its parent).
    for (j, c) in clients.iter().enumerate() {
        if c.name != iommu.name && c.parent.as_deref() != Some(iommu.name.as_str()) {
            out.push(p(
                c.line,
                "protection_domain",
                format!(
                    "client {j} `{}` is {}, so the IOMMU PD `{}` would not hear of its crash: its devices would go on reaching its memory",
                    c.name,
                    match &c.parent {
                        Some(parent) => format!("a child of `{parent}`"),
                        None => "not a child of the IOMMU PD".to_string(),
                    },
                    iommu.name
                ),
                format!("nest `{}` directly in the IOMMU PD's <protection_domain> (with id=\"{}\")", c.name, j + 1),
            ));
        }
    }
    // Child PDs of the IOMMU PD: child id i + 1 is client i.
    for pd in sys.pds.iter().filter(|pd| pd.parent.as_deref() == Some(iommu.name.as_str())) {
        let Some(id) = pd.id else { continue };
        let taken_as = if reserved(id) {
            format!("taken for client {} `{}`'s", id - 1, clients[(id - 1) as usize].name)
        } else {
            "not be known as any client's".to_string()
        };
        match index(&pd.name) {
            Some(j) if id != j as u64 + 1 => out.push(p(
                pd.line,
                "protection_domain",
                format!(
                    "client {j} `{}` is a child of the IOMMU PD `{}` with id {id}: the IOMMU PD takes child id i + 1 as client i, so its faults would be {taken_as}",
                    pd.name, iommu.name
                ),
                format!("use id=\"{}\" (client index + 1)", j + 1),
            )),
            None if reserved(id) => out.push(p(
                pd.line,
                "protection_domain",
                format!(
                    "`{}` is a child of the IOMMU PD `{}` with id {id}, but is not a client: its faults would be {taken_as}",
                    pd.name, iommu.name
                ),
                format!("give it an id above {n}: child ids 1..={n} are the clients'"),
            )),
            _ => {}
        }
    }

    // Fault rings: client i's is the one-page region at `fault_rings + i * 0x1000`.
    if n == 0 {
        return;
    }
    let twice = ("", "keep setvar_vaddr=\"fault_rings\" on client 0's ring only; the others follow it page by page");
    let Some(first) = symbol_map(iommu, "fault_rings", twice, out) else {
        out.push(p(
            iommu.line,
            "protection_domain",
            format!(
                "the IOMMU PD `{}` serves {n} client(s) but has no map with setvar_vaddr=\"fault_rings\": it has nowhere to write their fault records",
                iommu.name
            ),
            "map one page-sized region per client, in client order at consecutive addresses, the first with setvar_vaddr=\"fault_rings\"",
        ));
        return;
    };
    let Some(base) = first.vaddr else { return };
    let mut rings: Vec<(usize, &str, Line)> = Vec::new();
    for (j, c) in clients.iter().enumerate() {
        let Some(va) = (j as u64).checked_mul(PAGE).and_then(|o| base.checked_add(o)) else { break };
        let Some(m) = iommu.maps.iter().find(|m| m.vaddr == Some(va)) else {
            out.push(p(
                first.line,
                "map",
                format!(
                    "no fault ring for client {j} `{}`: the IOMMU PD `{}` maps nothing at {va:#x} (fault_rings {base:#x} + {j} * 0x1000)",
                    c.name, iommu.name
                ),
                format!(
                    "declare a one-page region for it and map it in the IOMMU PD at vaddr=\"{va:#x}\" perms=\"rw\" (and perms=\"r\" in `{}`, if it reads it)",
                    c.name
                ),
            ));
            continue;
        };
        if let Some(size) = sys.region(&m.mr).map(|r| r.size).filter(|s| *s != PAGE) {
            out.push(p(
                m.line,
                "map",
                format!(
                    "`{}` at {va:#x} is client {j} `{}`'s fault ring but is {size:#x} bytes: a ring is one page, and the next client's starts at the next page",
                    m.mr, c.name
                ),
                "make each client's fault ring its own region of size=\"0x1000\"",
            ));
        }
        if !(m.perms.read && m.perms.write) {
            out.push(p(
                m.line,
                "map",
                format!(
                    "the IOMMU PD maps client {j} `{}`'s fault ring `{}` without read and write: it writes the records and reads them back",
                    c.name, m.mr
                ),
                "use perms=\"rw\"",
            ));
        }
        if let Some(&(k, _, _)) = rings.iter().find(|(_, r, _)| *r == m.mr) {
            out.push(p(
                m.line,
                "map",
                format!(
                    "`{}` is the fault ring of client {j} `{}` and of client {k} `{}`: each would read the other's faults",
                    m.mr, c.name, clients[k].name
                ),
                "give each client its own one-page ring region",
            ));
            continue;
        }
        rings.push((j, m.mr.as_str(), m.line));
    }
    // Each capability's region, resolved once.
    let granted: Vec<(&DmaCapability, &str)> =
        sys.caps.iter().filter_map(|c| resolve(sys, c).map(|(mr, _)| (c, mr))).collect();
    let own = sys.iommu_own();
    for &(j, mr, line) in &rings {
        let client = &clients[j].name;
        if let Some(&(role, _)) = own.iter().find(|(_, name)| *name == mr) {
            out.push(p(
                line,
                "map",
                format!(
                    "`{mr}` is client {j} `{client}`'s fault ring and one of the IOMMU's own regions, {}",
                    own_role(role)
                ),
                "give the fault ring its own region",
            ));
        }
        for pd in &sys.pds {
            for (m, vm) in pd.all_maps().filter(|(m, _)| m.mr == mr) {
                if pd.name == iommu.name && vm.is_none() {
                    continue;
                }
                if pd.name == *client {
                    if m.perms.write {
                        out.push(p(
                            m.line,
                            "map",
                            format!(
                                "client {j} `{client}` maps its fault ring `{mr}` writable: it could forge or erase the fault records the IOMMU PD reads back"
                            ),
                            "map it perms=\"r\"",
                        ));
                    }
                } else {
                    out.push(p(
                        m.line,
                        "map",
                        format!(
                            "`{}` maps `{mr}`, client {j} `{client}`'s fault ring: only the IOMMU PD and that client may",
                            pd.name
                        ),
                        "remove this map: a PD reads its own fault ring only",
                    ));
                }
            }
        }
        for &(c, _) in granted.iter().filter(|(_, r)| *r == mr) {
            out.push(p(
                c.line,
                "dma_capability",
                format!(
                    "`{}` grants `{mr}`, client {j} `{client}`'s fault ring, for DMA: a device could forge its fault records",
                    c.name
                ),
                "never grant or iomap a fault ring",
            ));
        }
        for m in sys.io_spaces.iter().flat_map(|s| s.iomaps.iter()).filter(|m| m.mr == mr) {
            out.push(p(
                m.line,
                m.element(),
                format!("`{mr}`, client {j} `{client}`'s fault ring, is mapped for DMA: a device could forge its fault records"),
                "never grant or iomap a fault ring",
            ));
        }
    }
}
