//! The IOMMU PD's policy, computed once from a description: `build` writes it out as Rust
//! source for the IOMMU PD, and tests start the service on the very same tables.
//!
//! Names live beside the service's tables (whose names are `'static`, for the IOMMU PD's
//! generated statics); here those are left empty.

use iommu_pd::{BridgeConfig, CapConfig, ClientConfig, DeviceConfig, PciFunctionConfig, RegionConfig, StaticMapConfig};
use iommu_protocol::Rights;

use std::collections::HashMap;

use crate::model::*;
use crate::problem::{p, Problem};

/// `items`' positions by name (the first of a duplicated name wins).
fn positions<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut map = HashMap::new();
    for (i, n) in names.enumerate() {
        map.entry(n).or_insert(i);
    }
    map
}

/// The policy tables, each entry with the name it has in the description.
#[derive(Debug, Clone)]
pub struct Policy<'a> {
    /// The clients (PDs that own a device or hold a capability), in description order.
    pub clients: Vec<(&'a str, ClientConfig)>,
    /// One per io_address_space.
    pub devices: Vec<(&'a str, DeviceConfig)>,
    /// Each device's other StreamIDs, in `devices`' order (`DeviceConfig::extra_streams`
    /// is static; `build` writes these into it).
    pub extra_streams: Vec<&'a [u32]>,
    /// The regions devices may reach; `pa` is the description's phys_addr, or 0 when
    /// Microkit places the region (the IOMMU PD then learns it by setvar).
    pub regions: Vec<(&'a MemoryRegion, RegionConfig)>,
    /// Capabilities held at boot (derived ones flattened onto their region).
    pub caps: Vec<(&'a str, CapConfig)>,
    /// The description's iomaps.
    pub static_maps: Vec<StaticMapConfig>,
    /// Capability slots: the boot ones, one per static map, and every client's grants.
    pub cap_slots: usize,
    /// Mapping slots: every client's mapping quota and the static maps of unowned devices.
    pub mapping_slots: u64,
    /// StreamID bits the SMMU is set up for: enough for the widest StreamID described
    /// (any other stream is outside the stream table, so terminated and recorded).
    pub stream_id_bits: u32,
    /// IOVA bits the SMMU is set up for: enough for the highest IOVA window described,
    /// at least the 25 the AArch64 4 KiB-granule tables start from.
    pub iova_bits: u32,
    /// The description's PCI bridges, in its order: the bus numbers the PCI owner gives.
    pub bridges: Vec<BridgeConfig>,
    /// One per device that is a PCI function (`peripheral_id` bus:device.function), with
    /// the device's name: where its configuration space is and its BAR window.
    pub functions: Vec<(&'a str, PciFunctionConfig)>,
}

/// Bits needed to hold `x`.
fn bits(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// The guest-physical address bits a device passed through to a virtual machine needs:
/// enough for the top of its RAM maps (its iomaps), at least 25, at most 48; 0 for a
/// device no VM has. The IOMMU PD gives such a device a stage-2 domain of this input
/// size where the SMMU has stage 2 and can take it.
pub fn ipa_bits(sys: &System, s: &IoSpace) -> u32 {
    if s.vm.is_none() {
        return 0;
    }
    let top = s.iomaps.iter().map(|m| {
        let len = sys.region(&m.mr).map_or(0, |r| r.size);
        m.iovaddr.saturating_add(len).saturating_sub(1)
    });
    top.max().map_or(25, bits).clamp(25, 48)
}

/// Rights from the description's `perms`.
pub fn rights(p: Perms) -> Rights {
    match (p.read, p.write) {
        (true, true) => Rights::READ_WRITE,
        (false, true) => Rights::WRITE,
        _ => Rights::READ,
    }
}

/// `pd`'s grant quota: its `<dma_quota grants>`, or the default.
pub fn grant_quota(sys: &System, pd: &str) -> u32 {
    let q = sys.quotas.iter().find(|q| q.pd == pd).map_or(crate::parse::DEFAULT_GRANTS, |q| q.grants);
    q.min(u32::MAX as u64) as u32
}

/// The regions devices may reach: those a capability or an iomap names.
pub fn dma_regions(sys: &System) -> Vec<&MemoryRegion> {
    let reached = sys.dma_region_names();
    sys.regions.iter().filter(|r| reached.contains(r.name.as_str())).collect()
}

/// Mapping slots: every client's mapping quota, plus each static map of a device no
/// client owns (counted against no quota; an owned device's count against its owner's).
/// Sized by the quotas alone, those maps would take slots a client within its quota
/// needs. The service's own count (`Config::mappings_needed`), which `Service::new`
/// demands.
pub fn mapping_slots(
    clients: &[(&str, ClientConfig)],
    devices: &[(&str, DeviceConfig)],
    static_maps: &[StaticMapConfig],
) -> u64 {
    let quotas: u64 = clients.iter().map(|(_, c)| u64::from(c.max_mappings)).sum();
    let unowned = static_maps.iter().filter(|m| devices.get(m.device).is_none_or(|d| d.1.owner >= clients.len()));
    (quotas + unowned.count() as u64).max(1)
}

/// The policy of a (checked) description.
pub fn policy(sys: &System) -> Policy<'_> {
    let regions = dma_regions(sys);
    let clients = sys.clients();
    let (client_at, region_at, device_at) = (
        positions(clients.iter().map(|c| c.name.as_str())),
        positions(regions.iter().map(|r| r.name.as_str())),
        positions(sys.io_spaces.iter().map(|s| s.name.as_str())),
    );
    let client_index = |pd: &str| client_at.get(pd).copied().unwrap_or(usize::MAX);
    let region_index = |mr: &str| region_at.get(mr).copied().unwrap_or(usize::MAX);
    let device_index = |d: &str| device_at.get(d).copied().unwrap_or(usize::MAX);
    let bit = |i: usize| 1u64 << i.min(63);

    let client_configs: Vec<(&str, ClientConfig)> = clients
        .iter()
        .map(|c| {
            let q = sys.quotas.iter().find(|q| q.pd == c.name);
            let (max_mappings, max_pages) =
                q.map(|q| (q.mappings.min(u32::MAX as u64) as u32, q.pages)).unwrap_or((0, 0));
            let max_grants = grant_quota(sys, &c.name);
            (c.name.as_str(), ClientConfig { name: "", max_mappings, max_pages, max_grants })
        })
        .collect();
    let devices: Vec<_> = sys
        .io_spaces
        .iter()
        .map(|s| {
            let owner = s.owner.as_deref().map(client_index).unwrap_or(usize::MAX);
            let d = DeviceConfig {
                name: "",
                stream: s.stream,
                extra_streams: &[],
                owner,
                iova_base: s.iova_base,
                iova_size: s.iova_size,
                resume_allowed: s.resume,
            };
            (s.name.as_str(), d)
        })
        .collect();
    let region_configs =
        regions.iter().map(|r| (*r, RegionConfig { name: "", pa: r.phys_addr.unwrap_or(0), size: r.size })).collect();
    let caps: Vec<(&str, CapConfig)> = sys
        .caps
        .iter()
        .filter_map(|c| {
            let (mr, offset) = resolve(sys, c)?;
            let cap = CapConfig {
                client: client_index(&c.pd),
                region: region_index(mr),
                offset,
                len: c.size,
                rights: rights(c.perms),
                devices: c.devices.iter().map(|d| bit(device_index(d))).fold(0, |a, b| a | b),
                grant_to: c.grant_to.iter().map(|g| bit(client_index(g))).fold(0, |a, b| a | b),
            };
            Some((c.name.as_str(), cap))
        })
        .collect();
    let static_maps: Vec<StaticMapConfig> = sys
        .io_spaces
        .iter()
        .enumerate()
        .flat_map(|(d, s)| s.iomaps.iter().map(move |m| (d, m)))
        .filter_map(|(device, m)| {
            let r = sys.region(&m.mr)?;
            let region = region_index(&m.mr);
            Some(StaticMapConfig { device, region, offset: 0, len: r.size, iova: m.iovaddr, rights: rights(m.perms) })
        })
        .collect();
    // Room for every client's grants at once (the service refuses to start with less).
    let grant_slots: usize = client_configs.iter().map(|(_, c)| c.max_grants as usize).sum();
    let cap_slots = caps.len() + static_maps.len() + grant_slots + 1;
    let mapping_slots = mapping_slots(&client_configs, &devices, &static_maps);
    let stream_id_bits = sys
        .io_spaces
        .iter()
        .flat_map(|s| core::iter::once(s.stream).chain(s.extra_streams.iter().copied()))
        .map(|s| bits(u64::from(s)))
        .max()
        .unwrap_or(0)
        .max(1);
    let extra_streams = sys.io_spaces.iter().map(|s| s.extra_streams.as_slice()).collect();
    let top = sys.io_spaces.iter().map(|s| s.iova_base.saturating_add(s.iova_size).saturating_sub(1)).max();
    let iova_bits = top.map_or(25, bits).clamp(25, 48);
    let bridges = crate::topology::bridges(sys);
    let functions =
        crate::topology::functions(sys).into_iter().map(|f| (sys.io_spaces[f.device].name.as_str(), f)).collect();
    Policy {
        clients: client_configs,
        devices,
        regions: region_configs,
        caps,
        static_maps,
        cap_slots,
        mapping_slots,
        stream_id_bits,
        extra_streams,
        iova_bits,
        bridges,
        functions,
    }
}

/// Every client's handle table must hold, at once, its own capabilities, a record of
/// every grant it may make, and every grant each client that could lend to it may make
/// (by their `grants` quotas): then no client can fill another's table. The count is the
/// service's own (`Config::handles_needed`), on the policy `build` generates.
pub fn check(sys: &System) -> Vec<Problem> {
    let mut out = Vec::new();
    handle_tables(sys, &mut out);
    out
}

fn handle_tables(sys: &System, out: &mut Vec<Problem>) {
    if sys.iommu.is_none() {
        return;
    }
    // The service names devices and clients by bits of 64-bit masks: more would alias.
    if let Some(s) = sys.io_spaces.get(iommu_pd::service::MAX_DEVICES) {
        out.push(p(
            s.line,
            "io_address_space",
            format!(
                "`{}` is device number {} and the IOMMU PD serves at most {}",
                s.name,
                iommu_pd::service::MAX_DEVICES + 1,
                iommu_pd::service::MAX_DEVICES
            ),
            "give fewer devices IO address spaces, or describe functions that alias as one (streams=\"...\")",
        ));
        return;
    }
    let extra: usize = sys.io_spaces.iter().map(|s| s.extra_streams.len()).sum();
    if extra > smmuv3_service::MAX_EXTRA_STREAMS {
        let last = sys.io_spaces.iter().rev().find(|s| !s.extra_streams.is_empty()).map_or(0, |s| s.line);
        out.push(p(
            last,
            "io_address_space",
            format!(
                "the devices have {extra} StreamIDs beyond their first; the IOMMU PD's SMMU backend attaches at most {}",
                smmuv3_service::MAX_EXTRA_STREAMS
            ),
            "give fewer devices more than one StreamID",
        ));
    }
    let clients = sys.clients();
    if let Some(c) = clients.get(64) {
        out.push(p(
            c.line,
            "protection_domain",
            format!("`{}` is client number 65 and the IOMMU PD serves at most 64", c.name),
            "fewer PDs may own devices or hold DMA capabilities",
        ));
        return;
    }
    let policy = policy(sys);
    // Mapping slots are indexed in 16 bits: quotas that need more would build an IOMMU PD
    // whose `Service::new` refuses its own storage, so nothing would be served. Before
    // this rule a quota of 2^64 - 1 was accepted (and cut to 2^32 - 1 in the policy).
    if policy.mapping_slots > iommu_pd::service::MAX_MAPPINGS as u64 {
        if let Some(q) = sys.quotas.iter().max_by_key(|q| q.mappings) {
            out.push(p(
                q.line,
                "dma_quota",
                format!(
                    "the mapping quotas (and the static maps of devices no client owns) need {} mapping slots, `{}`'s {} among them; the IOMMU PD has at most {}",
                    policy.mapping_slots,
                    q.pd,
                    q.mappings,
                    iommu_pd::service::MAX_MAPPINGS
                ),
                "lower the `mappings` quotas: each slot is one mapping a client may hold at once",
            ));
        }
    }
    let clients: Vec<_> = policy.clients.iter().map(|c| c.1).collect();
    let devices: Vec<_> = policy.devices.iter().map(|d| d.1).collect();
    let regions: Vec<_> = policy.regions.iter().map(|r| r.1).collect();
    let caps: Vec<_> = policy.caps.iter().map(|c| c.1).collect();
    let cfg = iommu_pd::Config {
        clients: &clients,
        devices: &devices,
        regions: &regions,
        caps: &caps,
        static_maps: &policy.static_maps,
        faults: iommu_pd::FaultPolicy { window: 1, max_faults: 1, resume_rest_ms: 0 },
    };
    for (i, (name, _)) in policy.clients.iter().enumerate() {
        let needed = cfg.handles_needed(i);
        if needed > iommu_pd::service::MAX_HANDLES {
            let (line, element) = match sys.quotas.iter().find(|q| q.pd == *name) {
                Some(q) => (q.line, "dma_quota"),
                None => (sys.pd(name).map_or(0, |pd| pd.line), "protection_domain"),
            };
            out.push(p(
                line,
                element,
                format!(
                    "`{name}` may need {needed} handles at once (its capabilities, its grants, and the grants of every client that may lend to it); a client has {}",
                    iommu_pd::service::MAX_HANDLES
                ),
                "lower the `grants` quotas of the clients that may lend to it, or lend it less",
            ));
        }
    }
}
