//! The service: capability checks, mapping bookkeeping, grants and revocation, fault
//! attribution. One `Service` serves every client; the PD shell calls `handle` for each
//! protected procedure call with the caller's client index (from the channel, which the
//! caller cannot forge).
//!
//! Invariant: every page a device can reach is inside a live capability its owner holds,
//! with the rights the mapping grants. Every request is checked in full before anything
//! changes; a refused request changes nothing.
//!
//! When the IOMMU fails to confirm a removal, the mapping does not leave the books: it
//! stays, marked pending, and its device is blocked (`RemovalPending`, a state of its own,
//! not the storm quarantine) until the removal is retried and confirmed. Nothing lets the
//! device translate again before that (RESUME and `client_ready` retry first), because a
//! translation the IOMMU may still cache would come back with it.

use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Op, Reply, Request, Rights, MAX_UNMAP_RANGES};

use crate::config::Config;
use crate::faults::{FaultRecord, FaultRing};
use crate::hw::{DeviceIndex, IommuHw};
use crate::index::{self, Index, Inner, Leaf, Root, NIL};
use crate::reach;

#[cfg(any(test, feature = "model"))]
#[path = "audit.rs"]
mod audit;

/// Most devices (device masks are 64-bit).
pub const MAX_DEVICES: usize = 64;
/// Most capability slots a `Storage` may have (revocation marks them on the stack).
pub const MAX_CAPS: usize = 1024;
/// Most mapping slots a `Storage` may have (indices are 16-bit, one value meaning none).
pub const MAX_MAPPINGS: usize = index::MAX_SLOTS;
/// Handle-table entries per client.
pub const MAX_HANDLES: usize = 32;
/// Mappings removed per IOMMU call when a revoke or teardown removes many.
const UNMAP_BATCH: usize = 64;
/// The page size of every mapping.
pub const PAGE: u64 = 4096;

/// The static configuration does not fit or is inconsistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// More clients, devices, capabilities or handles than the service holds.
    TooMany(&'static str),
    /// A capability names a region or device that does not exist, leaves its region, or
    /// names a device its holder does not own.
    BadCap(usize),
    /// A device's owner does not exist.
    BadDevice(usize),
    /// The IOMMU refused to enable a device or make a static mapping.
    Hardware(usize),
    /// A static mapping leaves its region or its device's IOVA window, is not page
    /// aligned, overlaps another, or exceeds its owner's quota.
    BadStaticMap(usize),
}

/// A handle-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A capability the client holds.
    Cap(u16),
    /// A capability the client granted to someone else (only good for REVOKE).
    Grant(u16),
}

/// A capability slot's content.
#[derive(Debug, Clone, Copy)]
pub struct Cap {
    holder: u16,
    region: u16,
    pa: u64,
    len: u64,
    rights: Rights,
    devices: u64,
    /// Clients it may be granted to (its root capability's, inherited unchanged).
    grant_to: u64,
    parent: Option<u16>,
    /// First of the mappings made with it (linked through `Mapping::cap_next`).
    maps: u16,
    /// First of the capabilities granted from it, linked through `next_sibling`.
    first_child: u16,
    next_sibling: u16,
}

/// A mapping slot's content.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    /// A device index (at most `MAX_DEVICES`).
    device: u8,
    /// The region its memory is in (kept here: a pending mapping outlives its capability).
    region: u16,
    iova: u64,
    /// Its length in pages: 32 bits (16 TiB) keep a mapping slot at 32 bytes.
    pages: u32,
    pa: u64,
    rights: Rights,
    cap: u16,
    /// Made from the description: the client cannot unmap it.
    pinned: bool,
    /// Its unmap failed: the IOMMU may still translate it, so it stays in the books (and
    /// its device blocked) until a retry is confirmed.
    pending: bool,
    /// Neighbours in its capability's list of mappings (`NIL` at the ends; both `NIL`
    /// and `cap` `NO_CAP` once the capability is gone while this removal is pending).
    cap_prev: u16,
    cap_next: u16,
}

impl Mapping {
    /// Its length in bytes.
    fn len(&self) -> u64 {
        self.pages as u64 * PAGE
    }
}

/// `Mapping::cap` of a pending mapping whose capability has been removed.
const NO_CAP: u16 = u16::MAX;

/// A device's state: its mappings' index, storm and quarantine state.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceState {
    /// The device's mappings, ordered by IOVA (`index::Index`).
    root: Root,
    /// Mappings of the device whose removal is pending.
    pending: u32,
    /// Blocked by a fault storm; the owner may resume if the policy allows.
    quarantined: bool,
    /// Blocked because its owner was torn down; cleared by `client_ready`.
    torn_down: bool,
    /// Blocked because a removal of access was not confirmed: some of its mappings are
    /// pending. Cleared only when every one has been retried and confirmed.
    unconfirmed: bool,
    /// The storm window now open: where it starts, the faults in it so far, and the faults
    /// of the window just before it.
    window_start: u64,
    window_faults: u32,
    previous_faults: u32,
    /// The last window's faults, as estimated at the device's latest fault.
    recent_faults: u32,
}

impl DeviceState {
    /// Counts a fault at `now` and returns how many faults the last `window` ticks hold,
    /// by the sliding-window estimate: the open window's faults, plus the previous
    /// window's in proportion to how much of it the last `window` ticks still cover.
    ///
    /// A window opens at the first fault after a quiet spell (two windows with no fault),
    /// not on a grid fixed at boot: a flood that starts late in a boot-anchored window
    /// would otherwise be cut in two halves that each stay under the limit. The previous
    /// window's share closes the same gap at every later boundary: faults bunched either
    /// side of one still count together.
    fn count_fault(&mut self, now: u64, window: u64) -> u64 {
        let window = window.max(1);
        let elapsed = now.saturating_sub(self.window_start);
        let quiet = self.window_faults == 0 && self.previous_faults == 0;
        if quiet || elapsed >= window.saturating_mul(2) {
            self.window_start = now;
            self.window_faults = 0;
            self.previous_faults = 0;
        } else if elapsed >= window {
            self.window_start += window;
            self.previous_faults = self.window_faults;
            self.window_faults = 0;
        }
        self.window_faults = self.window_faults.saturating_add(1);
        let into = now.saturating_sub(self.window_start).min(window);
        let carried = u128::from(self.previous_faults) * u128::from(window - into) / u128::from(window);
        let recent = carried as u64 + u64::from(self.window_faults);
        self.recent_faults = u32::try_from(recent).unwrap_or(u32::MAX);
        recent
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    mappings: u32,
    pages: u64,
    /// Capabilities this client created by GRANT that are still alive.
    grants: u32,
}

/// A client's handle table and usage.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTables {
    handles: [Option<Slot>; MAX_HANDLES],
    usage: Usage,
}

/// The service's tables, given by the caller: their sizes come from the system
/// description (the IOMMU PD's are generated from it), and the fault rings can live in
/// memory shared with the clients (one page each, mapped read-only into its client).
#[derive(Debug)]
pub struct Storage<'a> {
    /// Capability slots: the boot capabilities plus room for grants.
    pub caps: &'a mut [Option<Cap>],
    /// Mapping slots, over all devices.
    pub mappings: &'a mut [Option<Mapping>],
    /// The devices' indexes: at least `index::leaves_for(mapping slots, devices)` leaves
    /// and `index::inners_for(...)` inner nodes.
    pub leaves: &'a mut [Leaf],
    /// See `leaves`.
    pub inners: &'a mut [Inner],
    /// One per mapping slot: the free slots, as a stack.
    pub free: &'a mut [u16],
    /// One per client.
    pub clients: &'a mut [ClientTables],
    /// One per device.
    pub devices: &'a mut [DeviceState],
    /// One per client.
    pub rings: &'a mut [FaultRing],
}

/// Storage in one value, for tests and for systems that do not share the rings. `LEAVES`
/// and `INNERS` are what `index::leaves_for` and `index::inners_for` say for `MAPPINGS`
/// and `DEVICES`; `owned_storage!` fills them in.
#[derive(Debug)]
pub struct OwnedStorage<
    const CLIENTS: usize,
    const DEVICES: usize,
    const CAPS: usize,
    const MAPPINGS: usize,
    const LEAVES: usize,
    const INNERS: usize,
> {
    caps: [Option<Cap>; CAPS],
    mappings: [Option<Mapping>; MAPPINGS],
    leaves: [Leaf; LEAVES],
    inners: [Inner; INNERS],
    free: [u16; MAPPINGS],
    clients: [ClientTables; CLIENTS],
    devices: [DeviceState; DEVICES],
    rings: [FaultRing; CLIENTS],
}

/// The `OwnedStorage` type for these numbers of clients, devices, capability slots and
/// mapping slots, with the index's pools sized to match.
#[macro_export]
macro_rules! owned_storage {
    ($clients:expr, $devices:expr, $caps:expr, $mappings:expr) => {
        $crate::OwnedStorage<
            { $clients },
            { $devices },
            { $caps },
            { $mappings },
            { $crate::index::leaves_for($mappings, $devices) },
            { $crate::index::inners_for($mappings, $devices) },
        >
    };
}

impl<
        const CLIENTS: usize,
        const DEVICES: usize,
        const CAPS: usize,
        const MAPPINGS: usize,
        const LEAVES: usize,
        const INNERS: usize,
    > Default for OwnedStorage<CLIENTS, DEVICES, CAPS, MAPPINGS, LEAVES, INNERS>
{
    fn default() -> Self {
        Self {
            caps: [None; CAPS],
            mappings: [None; MAPPINGS],
            leaves: [Leaf::default(); LEAVES],
            inners: [Inner::default(); INNERS],
            free: [0; MAPPINGS],
            clients: [ClientTables::default(); CLIENTS],
            devices: [DeviceState::default(); DEVICES],
            rings: core::array::from_fn(|_| FaultRing::default()),
        }
    }
}

impl<
        const CLIENTS: usize,
        const DEVICES: usize,
        const CAPS: usize,
        const MAPPINGS: usize,
        const LEAVES: usize,
        const INNERS: usize,
    > OwnedStorage<CLIENTS, DEVICES, CAPS, MAPPINGS, LEAVES, INNERS>
{
    /// Borrow it as `Storage`, with fault rings that live elsewhere (in memory shared
    /// with the clients).
    pub fn storage_with_rings<'a>(&'a mut self, rings: &'a mut [FaultRing]) -> Storage<'a> {
        Storage {
            caps: &mut self.caps,
            mappings: &mut self.mappings,
            leaves: &mut self.leaves,
            inners: &mut self.inners,
            free: &mut self.free,
            clients: &mut self.clients,
            devices: &mut self.devices,
            rings,
        }
    }

    /// Borrow it as `Storage`.
    pub fn storage(&mut self) -> Storage<'_> {
        Storage {
            caps: &mut self.caps,
            mappings: &mut self.mappings,
            leaves: &mut self.leaves,
            inners: &mut self.inners,
            free: &mut self.free,
            clients: &mut self.clients,
            devices: &mut self.devices,
            rings: &mut self.rings,
        }
    }
}

/// A fault as the hardware reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultInput {
    /// StreamID.
    pub stream: u32,
    /// Faulting bus address.
    pub iova: u64,
    /// The device tried to write.
    pub write: bool,
    /// Hardware event type.
    pub kind: u32,
    /// Now, in ticks (for the storm window).
    pub now: u64,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests refused, of any kind.
    pub refused: u64,
    /// Faults from streams no device in the description has.
    pub unattributed_faults: u64,
    /// Faults of devices no client drives.
    pub unowned_faults: u64,
    /// Devices quarantined by fault storms.
    pub quarantines: u64,
}

/// Bytes of the service's state: the tables are sized from the system description, so
/// these are the cost of one slot of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSizes {
    /// Handle table, fault ring and usage counters of one client.
    pub per_client: usize,
    /// One capability slot.
    pub per_capability: usize,
    /// One mapping slot, with its place in the index.
    pub per_mapping: usize,
    /// One device's storm and quarantine state.
    pub per_device: usize,
    /// The service value itself, without its tables and the IOMMU it drives.
    pub fixed: usize,
}

/// The sizes of the service's state.
pub fn state_sizes() -> StateSizes {
    use core::mem::size_of;
    struct NoHw;
    impl IommuHw for NoHw {
        fn enable(&mut self, _: DeviceIndex) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn block(&mut self, _: DeviceIndex) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn map(
            &mut self,
            _: DeviceIndex,
            _: u64,
            _: u64,
            _: u64,
            _: Rights,
        ) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn unmap(&mut self, _: DeviceIndex, _: &[(u64, u64)]) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn retry_unmap(&mut self, _: DeviceIndex, _: &[(u64, u64)]) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
    }
    StateSizes {
        per_client: size_of::<ClientTables>() + size_of::<FaultRing>(),
        per_capability: size_of::<Option<Cap>>(),
        // A slot's share of the index's pools when the table is large: a leaf per 8 slots,
        // an inner node per 56 or so.
        per_mapping: size_of::<Option<Mapping>>()
            + size_of::<u16>()
            + (size_of::<Leaf>() * index::leaves_for(MAX_MAPPINGS, 0)
                + size_of::<Inner>() * index::inners_for(MAX_MAPPINGS, 0))
            .div_ceil(MAX_MAPPINGS),
        // With its share of the pools: a root leaf and a root at each inner level.
        per_device: size_of::<DeviceState>()
            + size_of::<Leaf>() * index::leaves_for(0, 1)
            + size_of::<Inner>() * index::inners_for(0, 1),
        fixed: size_of::<Service<'static, NoHw>>(),
    }
}

/// The IOMMU service.
#[derive(Debug)]
pub struct Service<'a, H: IommuHw> {
    hw: H,
    cfg: Config<'a>,
    caps: &'a mut [Option<Cap>],
    maps: &'a mut [Option<Mapping>],
    index: Index<'a>,
    /// The free mapping slots: a stack, its top at `free_len - 1`.
    free: &'a mut [u16],
    free_len: usize,
    clients: &'a mut [ClientTables],
    devices: &'a mut [DeviceState],
    rings: &'a mut [FaultRing],
    stats: Stats,
    /// The (IOVA, length) of the removal being sent to the IOMMU: kept here rather than
    /// built on the stack, so a one-page UNMAP does not clear a whole batch's worth.
    ranges: [(u64, u64); UNMAP_BATCH],
}

type Result<T> = core::result::Result<T, ErrorCode>;

impl<'a, H: IommuHw> Service<'a, H> {
    /// Build the service from the static policy and enable every device (with an empty
    /// address space: until its driver maps something, its DMA faults).
    pub fn new(hw: H, cfg: Config<'a>, storage: Storage<'a>) -> core::result::Result<Self, ConfigError> {
        if cfg.clients.len() > storage.clients.len() || cfg.clients.len() > storage.rings.len() {
            return Err(ConfigError::TooMany("clients"));
        }
        if cfg.devices.len() > storage.devices.len() || cfg.devices.len() > MAX_DEVICES {
            return Err(ConfigError::TooMany("devices"));
        }
        if cfg.caps.len() > storage.caps.len() || storage.caps.len() > MAX_CAPS {
            return Err(ConfigError::TooMany("capabilities"));
        }
        let (slots, devices) = (storage.mappings.len(), cfg.devices.len());
        if slots > MAX_MAPPINGS
            || storage.free.len() < slots
            || storage.leaves.len() < index::leaves_for(slots, devices)
            || storage.inners.len() < index::inners_for(slots, devices)
        {
            return Err(ConfigError::TooMany("mappings"));
        }
        for (i, d) in cfg.devices.iter().enumerate() {
            if d.owner >= cfg.clients.len() && d.owner != crate::config::NO_OWNER {
                return Err(ConfigError::BadDevice(i));
            }
        }
        // Every client's grants fit, whatever the others do: no client can exhaust a table
        // another needs.
        if cfg.caps_needed() > storage.caps.len() {
            return Err(ConfigError::TooMany("capabilities"));
        }
        if (0..cfg.clients.len()).any(|c| cfg.handles_needed(c) > MAX_HANDLES) {
            return Err(ConfigError::TooMany("handles"));
        }
        storage.caps.fill(None);
        storage.mappings.fill(None);
        // Slot 0 on top.
        for (i, f) in storage.free.iter_mut().take(slots).enumerate() {
            *f = (slots - 1 - i) as u16;
        }
        storage.clients.fill(ClientTables::default());
        storage.devices.fill(DeviceState::default());
        storage.rings.iter_mut().for_each(FaultRing::reset);
        let mut s = Service {
            hw,
            cfg,
            caps: storage.caps,
            maps: storage.mappings,
            index: Index::new(storage.leaves, storage.inners),
            free: storage.free,
            free_len: slots,
            clients: storage.clients,
            devices: storage.devices,
            rings: storage.rings,
            stats: Stats::default(),
            ranges: [(0, 0); UNMAP_BATCH],
        };
        for (i, c) in cfg.caps.iter().enumerate() {
            let region = cfg.regions.get(c.region).ok_or(ConfigError::BadCap(i))?;
            let end = c.offset.checked_add(c.len).ok_or(ConfigError::BadCap(i))?;
            let owned = s.devices_of(c.client);
            if c.client >= cfg.clients.len() || end > region.size || c.devices & !owned != 0 || !c.rights.is_valid() {
                return Err(ConfigError::BadCap(i));
            }
            s.caps[i] = Some(Cap {
                holder: c.client as u16,
                region: c.region as u16,
                pa: region.pa + c.offset,
                len: c.len,
                rights: c.rights,
                devices: c.devices,
                grant_to: c.grant_to,
                parent: None,
                maps: NIL,
                first_child: NIL,
                next_sibling: NIL,
            });
            let slot =
                s.clients[c.client].handles.iter().position(Option::is_none).ok_or(ConfigError::TooMany("handles"))?;
            s.clients[c.client].handles[slot] = Some(Slot::Cap(i as u16));
        }
        // Each static mapping is backed by a capability of its own that no handle names,
        // so it can be neither granted nor revoked.
        for (i, m) in cfg.static_maps.iter().enumerate() {
            let bad = ConfigError::BadStaticMap(i);
            let region = cfg.regions.get(m.region).ok_or(bad)?;
            let dc = cfg.devices.get(m.device).ok_or(bad)?;
            let end = m.offset.checked_add(m.len).ok_or(bad)?;
            let top = m.iova.checked_add(m.len).ok_or(bad)?;
            let pa = region.pa.checked_add(m.offset).ok_or(bad)?;
            if end > region.size
                || m.len == 0
                || m.len % PAGE != 0
                || pa % PAGE != 0
                || m.iova % PAGE != 0
                || m.len / PAGE > u32::MAX as u64
            {
                return Err(bad);
            }
            if m.iova < dc.iova_base || top > dc.iova_base.saturating_add(dc.iova_size) || !m.rights.is_valid() {
                return Err(bad);
            }
            let ci = s.caps.iter().position(Option::is_none).ok_or(ConfigError::TooMany("capabilities"))?;
            s.caps[ci] = Some(Cap {
                holder: dc.owner as u16,
                region: m.region as u16,
                pa,
                len: m.len,
                rights: m.rights,
                devices: 1 << m.device,
                grant_to: 0,
                parent: None,
                maps: NIL,
                first_child: NIL,
                next_sibling: NIL,
            });
        }
        for d in 0..cfg.devices.len() {
            s.hw.enable(d).map_err(|_| ConfigError::Hardware(d))?;
            s.make_static_maps(d).map_err(|e| match e {
                ErrorCode::Hardware => ConfigError::Hardware(d),
                _ => ConfigError::BadStaticMap(d),
            })?;
        }
        Ok(s)
    }

    /// Make `device`'s static mappings (at boot, and when its client is ready again).
    fn make_static_maps(&mut self, device: DeviceIndex) -> Result<()> {
        for (i, m) in self.cfg.static_maps.iter().enumerate().filter(|(_, m)| m.device == device) {
            // Made already (by an earlier attempt that failed further on): leave it.
            let (tree, root) = self.view(device);
            if tree.find(root, m.iova).is_some_and(|s| self.at(s).pinned) {
                continue;
            }
            let owner = self.cfg.devices[device].owner;
            // The backing capability sits right after the boot ones (`new` put it there,
            // and neither kind is ever removed).
            let ci = self.cfg.caps.len() + i;
            let pa = self.caps.get(ci).copied().flatten().map(|c| c.pa).ok_or(ErrorCode::NoCapabilitySlot)?;
            // A device no client drives has its static mappings and nothing else: no quota.
            if let (Some(u), Some(q)) = (self.clients.get(owner).map(|c| c.usage), self.cfg.clients.get(owner)) {
                if u.mappings >= q.max_mappings {
                    return Err(ErrorCode::QuotaMappings);
                }
                if u.pages + m.len / PAGE > q.max_pages {
                    return Err(ErrorCode::QuotaPages);
                }
            }
            if self.overlaps(device, m.iova, m.len) {
                return Err(ErrorCode::Overlap);
            }
            if !self.room_for_mapping(device) {
                return Err(ErrorCode::NoMappingSlot);
            }
            self.hw.map(device, m.iova, pa, m.len, m.rights).map_err(|_| ErrorCode::Hardware)?;
            self.insert_mapping(Mapping {
                device: device as u8,
                region: m.region as u16,
                iova: m.iova,
                pages: (m.len / PAGE) as u32,
                pa,
                rights: m.rights,
                cap: ci as u16,
                pinned: true,
                pending: false,
                cap_prev: NIL,
                cap_next: NIL,
            });
            if let Some(c) = self.clients.get_mut(owner) {
                c.usage.mappings += 1;
                c.usage.pages += m.len / PAGE;
            }
        }
        Ok(())
    }

    /// Bit mask of the devices `client` owns.
    fn devices_of(&self, client: usize) -> u64 {
        self.cfg.devices.iter().enumerate().filter(|(_, d)| d.owner == client).fold(0, |m, (i, _)| m | 1 << i)
    }

    /// The IOMMU (for the PD shell and for tests).
    pub fn hw(&self) -> &H {
        &self.hw
    }

    /// The IOMMU, mutably (for the PD shell's interrupt path and for tests).
    pub fn hw_mut(&mut self) -> &mut H {
        &mut self.hw
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How many faults `device` made within the storm window before its latest fault, as
    /// the storm check counted them (what it quarantined on, if it did).
    pub fn recent_faults(&self, device: usize) -> Option<u32> {
        self.devices.get(device).map(|d| d.recent_faults)
    }

    /// `client`'s fault ring.
    pub fn faults(&self, client: usize) -> Option<&FaultRing> {
        self.rings.get(client)
    }

    /// Serve one protected procedure call from `client`.
    pub fn handle(&mut self, client: usize, label: u64, mrs: &[u64]) -> Reply {
        if client >= self.cfg.clients.len() {
            self.stats.refused += 1;
            return Reply::Err(ErrorCode::BadClient);
        }
        let reply = if label == Op::Unmap as u64 {
            // The IOVAs straight from the message registers.
            iommu_protocol::decode_unmap(mrs)
                .map_err(ErrorCode::from)
                .and_then(|(device, iovas)| self.unmap(client, device, iovas))
                .map(|()| Reply::ok(&[]))
        } else {
            match Request::decode(label, mrs) {
                Err(e) => Err(e.into()),
                Ok(req) => self.dispatch(client, req),
            }
        };
        match reply {
            Ok(r) => r,
            Err(e) => {
                self.stats.refused += 1;
                Reply::Err(e)
            }
        }
    }

    fn dispatch(&mut self, client: usize, req: Request) -> Result<Reply> {
        match req {
            Request::Map { cap, device, offset, len, iova, rights } => {
                self.map(client, cap, device, offset, len, iova, rights).map(|iova| Reply::ok(&[iova]))
            }
            Request::Unmap { device, iovas, count } => {
                self.unmap(client, device, &iovas[..count.min(MAX_UNMAP_RANGES)]).map(|_| Reply::ok(&[]))
            }
            Request::Grant { cap, to, offset, len, rights, devices } => self
                .grant(client, cap, to, offset, len, rights, devices)
                .map(|(g, h)| Reply::ok(&[g.0 as u64, h.0 as u64])),
            Request::Revoke { grant } => self.revoke(client, grant).map(|_| Reply::ok(&[])),
            Request::AckFaults { upto } => {
                if self.rings[client].ack(upto) {
                    Ok(Reply::ok(&[]))
                } else {
                    Err(ErrorCode::OutOfRange)
                }
            }
            Request::Resume { device } => self.resume(client, device).map(|_| Reply::ok(&[])),
            Request::QueryMapping { index } => self.query_mapping(client, index),
            Request::Release { cap } => self.release(client, cap).map(|_| Reply::ok(&[])),
            Request::Query => {
                let (u, c, r) = (self.clients[client].usage, self.cfg.clients[client], &self.rings[client]);
                use iommu_protocol::query;
                let mut v = [0u64; query::VALUES];
                v[query::MAPPINGS] = u.mappings as u64;
                v[query::MAPPING_QUOTA] = c.max_mappings as u64;
                v[query::PAGES] = u.pages;
                v[query::PAGE_QUOTA] = c.max_pages;
                v[query::FAULTS_RECORDED] = r.recorded();
                v[query::FAULTS_DROPPED] = r.dropped();
                v[query::REMOVALS_PENDING] = self.pending_removals(client) as u64;
                v[query::GRANTS] = u.grants as u64;
                v[query::GRANT_QUOTA] = c.max_grants as u64;
                Ok(Reply::ok(&v))
            }
        }
    }

    fn cap_of(&self, client: usize, h: Handle) -> Result<(u16, Cap)> {
        match self.clients[client].handles.get(h.0 as usize).copied().flatten() {
            Some(Slot::Cap(i)) => match self.caps[i as usize] {
                // The holder check is redundant with the per-client table; it stays as a
                // second guard on the one thing that must never go wrong.
                Some(cap) if cap.holder as usize == client => Ok((i, cap)),
                _ => Err(ErrorCode::BadHandle),
            },
            _ => Err(ErrorCode::BadHandle),
        }
    }

    fn own_device(&self, client: usize, device: DeviceId) -> Result<DeviceIndex> {
        let d = device.0 as usize;
        match self.cfg.devices.get(d) {
            Some(dc) if dc.owner == client => Ok(d),
            _ => Err(ErrorCode::BadDevice),
        }
    }

    /// `Ok` if device `d` may run: not quarantined, its client not torn down, no removal
    /// pending.
    fn running(&self, d: DeviceIndex) -> Result<()> {
        if self.devices[d].quarantined || self.devices[d].torn_down {
            return Err(ErrorCode::Quarantined);
        }
        if self.devices[d].unconfirmed {
            return Err(ErrorCode::RemovalPending);
        }
        Ok(())
    }

    /// `device`, if `client` owns it and it may run (not quarantined, not torn down): for
    /// requests the PD shell serves outside the protocol, such as a measurement build's
    /// bypass switch.
    pub fn running_device_of(&self, client: usize, device: DeviceId) -> Result<DeviceIndex> {
        let d = self.own_device(client, device)?;
        self.running(d)?;
        Ok(d)
    }

    /// Device `d`'s mappings, ordered by IOVA.
    fn view(&self, d: DeviceIndex) -> (&Index<'a>, &Root) {
        (&self.index, &self.devices[d].root)
    }

    /// Is there a mapping slot, and room in the index to file it under `device`?
    fn room_for_mapping(&self, device: DeviceIndex) -> bool {
        self.free_len > 0 && self.index.can_insert(&self.devices[device].root)
    }

    /// The mapping in slot `i` (which the index says is in use).
    fn at(&self, i: u16) -> Mapping {
        self.maps[i as usize].expect("an indexed slot holds a mapping")
    }

    /// Put `m` in a free slot and into its device's index (the caller checked there is a
    /// free slot and that `m` overlaps nothing of its device).
    fn insert_mapping(&mut self, mut m: Mapping) {
        if !self.room_for_mapping(m.device as usize) {
            return;
        }
        self.free_len -= 1;
        let slot = self.free[self.free_len];
        let d = m.device as usize;
        // At the head of its capability's list.
        if let Some(cap) = self.caps.get_mut(m.cap as usize).and_then(Option::as_mut) {
            m.cap_next = cap.maps;
            cap.maps = slot;
        }
        if let Some(next) = self.maps.get_mut(m.cap_next as usize).and_then(Option::as_mut) {
            next.cap_prev = slot;
        }
        self.maps[slot as usize] = Some(m);
        // Cannot fail: `room_for_mapping` said so.
        let _ = self.index.insert(&mut self.devices[d].root, m.iova, slot);
    }

    /// Take the mapping in slot `i` out of its device's index and free the slot.
    fn remove_mapping(&mut self, i: usize) -> Option<Mapping> {
        let m = self.maps[i]?;
        let d = m.device as usize;
        // Out of its capability's list.
        match self.maps.get_mut(m.cap_prev as usize).and_then(Option::as_mut) {
            Some(prev) => prev.cap_next = m.cap_next,
            None => {
                if let Some(cap) = self.caps.get_mut(m.cap as usize).and_then(Option::as_mut) {
                    if cap.maps == i as u16 {
                        cap.maps = m.cap_next;
                    }
                }
            }
        }
        if let Some(next) = self.maps.get_mut(m.cap_next as usize).and_then(Option::as_mut) {
            next.cap_prev = m.cap_prev;
        }
        self.index.remove(&mut self.devices[d].root, m.iova);
        self.maps[i] = None;
        self.free[self.free_len] = i as u16;
        self.free_len += 1;
        Some(m)
    }

    /// Does `[iova, iova + len)` overlap a mapping of `device`? Mappings of a device are
    /// disjoint, so only the last one starting below the range's end can.
    fn overlaps(&self, device: DeviceIndex, iova: u64, len: u64) -> bool {
        let (tree, root) = self.view(device);
        let last = iova.saturating_add(len - 1);
        tree.floor(root, last).is_some_and(|i| self.at(i).iova.saturating_add(self.at(i).len()) > iova)
    }

    /// A free, page-aligned IOVA range of `len` bytes in the device's window: just above
    /// the device's highest mapping if that fits (O(log n)), otherwise the lowest gap that
    /// fits (first fit, a walk in IOVA order).
    fn alloc_iova(&self, device: DeviceIndex, len: u64) -> Option<u64> {
        let dc = &self.cfg.devices[device];
        let end = dc.iova_base.checked_add(dc.iova_size)?;
        let base = dc.iova_base.checked_add(PAGE - 1)? & !(PAGE - 1);
        let (tree, root) = self.view(device);
        let top = tree.last(root).map(|i| self.at(i).iova + self.at(i).len());
        let bump = top.unwrap_or(base).max(base);
        if bump.checked_add(len).is_some_and(|t| t <= end) {
            return Some(bump);
        }
        let mut candidate = base;
        let mut found = None;
        tree.walk(root, |i| {
            let m = self.at(i);
            if m.iova.saturating_add(m.len()) <= candidate {
                return true;
            }
            if candidate.checked_add(len).is_some_and(|t| t <= m.iova) {
                found = Some(candidate);
                return false;
            }
            candidate = m.iova + m.len();
            true
        });
        found.or_else(|| candidate.checked_add(len).is_some_and(|t| t <= end).then_some(candidate))
    }

    #[allow(clippy::too_many_arguments)]
    fn map(
        &mut self,
        client: usize,
        h: Handle,
        device: DeviceId,
        offset: u64,
        len: u64,
        iova: Option<u64>,
        rights: Rights,
    ) -> Result<u64> {
        let (ci, cap) = self.cap_of(client, h)?;
        let d = self.own_device(client, device)?;
        if cap.devices & (1 << d) == 0 {
            return Err(ErrorCode::BadDevice);
        }
        self.running(d)?;
        if !cap.rights.contains(rights) {
            return Err(ErrorCode::NoRights);
        }
        // Whole pages, inside the capability: a page is mapped only if the capability
        // covers all of it.
        let end = offset.checked_add(len).ok_or(ErrorCode::OutOfRange)?;
        let pa = cap.pa.checked_add(offset).ok_or(ErrorCode::OutOfRange)?;
        if len == 0
            || offset % PAGE != 0
            || len % PAGE != 0
            || pa % PAGE != 0
            || end > cap.len
            || len / PAGE > u32::MAX as u64
        {
            return Err(ErrorCode::OutOfRange);
        }
        let (u, q) = (self.clients[client].usage, self.cfg.clients[client]);
        if u.mappings >= q.max_mappings {
            return Err(ErrorCode::QuotaMappings);
        }
        if u.pages + len / PAGE > q.max_pages {
            return Err(ErrorCode::QuotaPages);
        }
        if !self.room_for_mapping(d) {
            return Err(ErrorCode::NoMappingSlot);
        }
        let iova = match iova {
            Some(v) => {
                let dc = &self.cfg.devices[d];
                let top = v.checked_add(len).ok_or(ErrorCode::OutOfRange)?;
                if v % PAGE != 0 || v < dc.iova_base || top > dc.iova_base.saturating_add(dc.iova_size) {
                    return Err(ErrorCode::OutOfRange);
                }
                if self.overlaps(d, v, len) {
                    return Err(ErrorCode::Overlap);
                }
                v
            }
            None => self.alloc_iova(d, len).ok_or(ErrorCode::NoIova)?,
        };
        self.hw.map(d, iova, pa, len, rights).map_err(|_| ErrorCode::Hardware)?;
        self.insert_mapping(Mapping {
            device: d as u8,
            region: cap.region,
            iova,
            pages: (len / PAGE) as u32,
            pa,
            rights,
            cap: ci,
            pinned: false,
            pending: false,
            cap_prev: NIL,
            cap_next: NIL,
        });
        self.clients[client].usage.mappings += 1;
        self.clients[client].usage.pages += len / PAGE;
        Ok(iova)
    }

    fn unmap(&mut self, client: usize, device: DeviceId, iovas: &[u64]) -> Result<()> {
        let d = self.own_device(client, device)?;
        let mut found = [0u16; MAX_UNMAP_RANGES];
        for (i, &iova) in iovas.iter().enumerate() {
            let (tree, root) = self.view(d);
            let m = tree.find(root, iova).ok_or(ErrorCode::NotMapped)?;
            if found[..i].contains(&m) {
                return Err(ErrorCode::NotMapped);
            }
            if self.maps[m as usize].is_some_and(|m| m.pinned) {
                return Err(ErrorCode::Denied);
            }
            found[i] = m;
        }
        // Removals of this device that the IOMMU did not confirm go first (the ones asked
        // for again among them): until they are, nothing else is removed.
        self.settle(d)?;
        self.remove_mappings(d, &found[..iovas.len()])
    }

    /// Put the (IOVA, length) of the mappings at `indices` (at most `UNMAP_BATCH`) in
    /// `self.ranges`; returns how many.
    fn ranges_of(&mut self, indices: &[u16]) -> usize {
        let mut n = 0;
        for m in indices.iter().take(UNMAP_BATCH).filter_map(|&i| self.maps[i as usize]) {
            self.ranges[n] = (m.iova, m.len());
            n += 1;
        }
        n
    }

    /// Forget the mappings at `indices`: the IOMMU confirmed them gone.
    fn forget(&mut self, indices: &[u16]) {
        for &i in indices.iter().take(UNMAP_BATCH) {
            if let Some(m) = self.remove_mapping(i as usize) {
                let (d, owner) = (m.device as usize, self.cfg.devices[m.device as usize].owner);
                if let Some(c) = self.clients.get_mut(owner) {
                    c.usage.mappings -= 1;
                    c.usage.pages -= m.len() / PAGE;
                }
                if m.pending {
                    self.devices[d].pending -= 1;
                }
            }
        }
    }

    /// Unmap the mappings at `indices` (all of `device`, none pending, at most
    /// `UNMAP_BATCH`) in the IOMMU under one invalidation, then forget them. If the IOMMU
    /// does not confirm, they stay in the books as pending, the device is blocked, and the
    /// caller hears `Hardware`.
    fn remove_mappings(&mut self, device: DeviceIndex, indices: &[u16]) -> Result<()> {
        let n = self.ranges_of(indices);
        if n == 0 {
            return Ok(());
        }
        if self.hw.unmap(device, &self.ranges[..n]).is_ok() {
            self.forget(indices);
            return Ok(());
        }
        for &i in indices.iter().take(UNMAP_BATCH) {
            if let Some(m) = self.maps[i as usize].as_mut() {
                if !m.pending {
                    m.pending = true;
                    self.devices[device].pending += 1;
                }
            }
        }
        self.devices[device].unconfirmed = true;
        // The translations may still be cached: stop the device. If even that fails, the
        // device stays marked, and every request that could let it run retries first.
        let _ = self.hw.block(device);
        Err(ErrorCode::Hardware)
    }

    /// Retry every pending removal of `device`. Once the IOMMU has confirmed them all,
    /// no stale translation is left, so the device translates again unless it is blocked
    /// for another reason (a storm, its client torn down). `Hardware`, with what is still
    /// pending kept and the device blocked, if the IOMMU fails again.
    fn settle(&mut self, device: DeviceIndex) -> Result<()> {
        while self.devices[device].unconfirmed {
            let idx = self.select(device, |m| m.pending);
            let found = &idx.0[..idx.1];
            if found.is_empty() {
                let st = self.devices[device];
                if !st.quarantined && !st.torn_down {
                    self.hw.enable(device).map_err(|_| ErrorCode::Hardware)?;
                }
                self.devices[device].unconfirmed = false;
                break;
            }
            let n = self.ranges_of(found);
            self.hw.retry_unmap(device, &self.ranges[..n]).map_err(|_| ErrorCode::Hardware)?;
            self.forget(found);
        }
        Ok(())
    }

    /// Up to `UNMAP_BATCH` indices of `device`'s mappings that `pick` selects.
    fn select(&self, device: DeviceIndex, pick: impl Fn(&Mapping) -> bool) -> ([u16; UNMAP_BATCH], usize) {
        let mut idx = [0u16; UNMAP_BATCH];
        let mut n = 0;
        let (tree, root) = self.view(device);
        tree.walk(root, |i| {
            if pick(&self.at(i)) {
                idx[n] = i;
                n += 1;
            }
            n < UNMAP_BATCH
        });
        (idx, n)
    }

    /// Remove every mapping of `device` that `doomed` selects, `UNMAP_BATCH` at a time.
    /// `Err(Hardware)`: some removals were not confirmed and are pending, the device
    /// blocked; the rest are gone.
    fn remove_where(&mut self, device: DeviceIndex, doomed: impl Fn(&Mapping) -> bool) -> Result<()> {
        let mut result = Ok(());
        loop {
            let (idx, n) = self.select(device, |m| !m.pending && doomed(m));
            if n == 0 {
                return result;
            }
            // Each pass forgets the `n` mappings it found or marks them pending, which the
            // next pass does not select, so this ends.
            if let Err(e) = self.remove_mappings(device, &idx[..n]) {
                result = Err(e);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(
        &mut self,
        client: usize,
        h: Handle,
        to: ClientId,
        offset: u64,
        len: u64,
        rights: Rights,
        devices: u64,
    ) -> Result<(Handle, Handle)> {
        let (ci, cap) = self.cap_of(client, h)?;
        let to = to.0 as usize;
        if to >= self.cfg.clients.len() {
            return Err(ErrorCode::BadClient);
        }
        if to >= 64 || cap.grant_to & (1 << to) == 0 {
            return Err(ErrorCode::Denied);
        }
        if !cap.rights.contains(rights) {
            return Err(ErrorCode::NoRights);
        }
        let end = offset.checked_add(len).ok_or(ErrorCode::OutOfRange)?;
        if len == 0 || offset % PAGE != 0 || len % PAGE != 0 || end > cap.len {
            return Err(ErrorCode::OutOfRange);
        }
        let owned = self.devices_of(to);
        if devices == 0 || devices & !owned != 0 {
            return Err(ErrorCode::BadDevice);
        }
        // To itself, a holder may only narrow: the devices its capability names, no others.
        if to == client && devices & !cap.devices != 0 {
            return Err(ErrorCode::Denied);
        }
        // The receiver's devices, but not ones the description keeps this memory from.
        let root = self.root_of(ci);
        if devices & !reach::devices_for(root.holder as usize, root.devices, root.grant_to, to, owned) != 0 {
            return Err(ErrorCode::Denied);
        }
        if self.clients[client].usage.grants >= self.cfg.clients[client].max_grants {
            return Err(ErrorCode::QuotaGrants);
        }
        let child = self.caps.iter().position(Option::is_none).ok_or(ErrorCode::NoCapabilitySlot)?;
        let theirs = self.clients[to].handles.iter().position(Option::is_none).ok_or(ErrorCode::NoHandleSlot)?;
        let ours = self.clients[client]
            .handles
            .iter()
            .enumerate()
            .position(|(i, s)| s.is_none() && !(client == to && i == theirs))
            .ok_or(ErrorCode::NoHandleSlot)?;
        self.caps[child] = Some(Cap {
            holder: to as u16,
            region: cap.region,
            pa: cap.pa + offset,
            len,
            rights,
            devices,
            grant_to: cap.grant_to,
            parent: Some(ci),
            maps: NIL,
            first_child: NIL,
            next_sibling: cap.first_child,
        });
        if let Some(parent) = self.caps[ci as usize].as_mut() {
            parent.first_child = child as u16;
        }
        self.clients[to].handles[theirs] = Some(Slot::Cap(child as u16));
        self.clients[client].handles[ours] = Some(Slot::Grant(child as u16));
        self.clients[client].usage.grants += 1;
        Ok((Handle(ours as u32), Handle(theirs as u32)))
    }

    /// The description's capability that capability `i` derives from.
    fn root_of(&self, mut i: u16) -> Cap {
        // Parents are always older and a subtree is always removed whole, so chains end
        // at a root; the bound only guards against a bug.
        for _ in 0..self.caps.len() {
            match self.caps[i as usize].and_then(|c| c.parent) {
                Some(p) => i = p,
                None => break,
            }
        }
        self.caps[i as usize].unwrap_or(Cap {
            holder: u16::MAX,
            region: 0,
            pa: 0,
            len: 0,
            rights: Rights(0),
            devices: 0,
            grant_to: 0,
            parent: None,
            maps: NIL,
            first_child: NIL,
            next_sibling: NIL,
        })
    }

    /// RELEASE: a received capability goes, with what was derived from it.
    fn release(&mut self, client: usize, h: Handle) -> Result<()> {
        let (ci, cap) = self.cap_of(client, h)?;
        if cap.parent.is_none() {
            return Err(ErrorCode::Denied);
        }
        self.remove_subtree(ci)
    }

    fn revoke(&mut self, client: usize, g: Handle) -> Result<()> {
        let root = match self.clients[client].handles.get(g.0 as usize).copied().flatten() {
            Some(Slot::Grant(i)) => i,
            Some(Slot::Cap(_)) => return Err(ErrorCode::Denied),
            None => return Err(ErrorCode::BadHandle),
        };
        self.remove_subtree(root)
    }

    /// Remove capability `root`, everything derived from it, and every mapping made with
    /// any of them, on every device. `Ok` once the IOMMU confirmed every removal;
    /// `Hardware` if it did not confirm some (those are pending, their devices blocked).
    /// The capabilities go either way: what is pending no longer depends on them. The
    /// work is in the subtree and its mappings, found through their links, not in the
    /// tables' sizes.
    fn remove_subtree(&mut self, root: u16) -> Result<()> {
        // The subtree, parents before children.
        let mut sub = [0u16; MAX_CAPS];
        let mut k = 0;
        if self.caps.get(root as usize).is_some_and(Option::is_some) {
            sub[0] = root;
            k = 1;
        }
        let mut next = 0;
        while next < k {
            let mut child = self.caps[sub[next] as usize].map_or(NIL, |c| c.first_child);
            while child != NIL && k < sub.len() {
                sub[k] = child;
                k += 1;
                child = self.caps[child as usize].map_or(NIL, |c| c.next_sibling);
            }
            next += 1;
        }
        let mut result = Ok(());
        for &c in &sub[..k] {
            if let Err(e) = self.remove_maps_of(c) {
                result = Err(e);
            }
        }
        // A removal an earlier request could not confirm may be of the same memory (the
        // subtree's, or an earlier grant of it whose capability is gone): `Ok` only once
        // every removal pending on any device is confirmed.
        for d in 0..self.cfg.devices.len() {
            if self.devices[d].pending > 0 && result.is_ok() {
                result = self.settle(d);
            }
        }
        // Out of its parent's list of children.
        if let Some(parent) = self.caps[root as usize].and_then(|c| c.parent) {
            let mut at = self.caps[parent as usize].map_or(NIL, |p| p.first_child);
            if at == root {
                let after = self.caps[root as usize].map_or(NIL, |c| c.next_sibling);
                if let Some(p) = self.caps[parent as usize].as_mut() {
                    p.first_child = after;
                }
            } else {
                while at != NIL {
                    let after = self.caps[at as usize].map_or(NIL, |c| c.next_sibling);
                    if after == root {
                        let skip = self.caps[root as usize].map_or(NIL, |c| c.next_sibling);
                        if let Some(prev) = self.caps[at as usize].as_mut() {
                            prev.next_sibling = skip;
                        }
                        break;
                    }
                    at = after;
                }
            }
        }
        for &c in &sub[..k] {
            let Some(cap) = self.caps[c as usize] else { continue };
            // Its granter is its parent's holder; the parent is still there (parents go
            // after their children in nothing below, and before none of them is freed).
            let granter = cap.parent.and_then(|p| self.caps[p as usize]).map(|p| p.holder as usize);
            if let Some(g) = granter {
                self.clients[g].usage.grants = self.clients[g].usage.grants.saturating_sub(1);
                for slot in self.clients[g].handles.iter_mut() {
                    if *slot == Some(Slot::Grant(c)) {
                        *slot = None;
                    }
                }
            }
            for slot in self.clients[cap.holder as usize].handles.iter_mut() {
                if *slot == Some(Slot::Cap(c)) {
                    *slot = None;
                }
            }
        }
        for &c in &sub[..k] {
            // What is still pending no longer belongs to a capability.
            let mut at = self.caps[c as usize].map_or(NIL, |c| c.maps);
            while let Some(m) = self.maps.get_mut(at as usize).and_then(Option::as_mut) {
                let after = m.cap_next;
                m.cap = NO_CAP;
                m.cap_prev = NIL;
                m.cap_next = NIL;
                at = after;
            }
            self.caps[c as usize] = None;
        }
        result
    }

    /// Remove the mappings made with capability `c` that are not already pending, a
    /// device's batch at a time.
    fn remove_maps_of(&mut self, c: u16) -> Result<()> {
        let mut result = Ok(());
        loop {
            let mut batch = [0u16; UNMAP_BATCH];
            let (mut n, mut device) = (0, None);
            let mut at = self.caps[c as usize].map_or(NIL, |c| c.maps);
            while let Some(m) = self.maps.get(at as usize).copied().flatten() {
                if !m.pending && n < UNMAP_BATCH && device.is_none_or(|d| d == m.device) {
                    device = Some(m.device);
                    batch[n] = at;
                    n += 1;
                }
                at = m.cap_next;
            }
            let Some(d) = device else { return result };
            // Each pass forgets the `n` mappings or marks them pending, which the next pass
            // skips, so this ends.
            if let Err(e) = self.remove_mappings(d as usize, &batch[..n]) {
                result = Err(e);
            }
        }
    }

    /// The caller's `index`-th mapping, ordered by (device, IOVA).
    fn query_mapping(&self, client: usize, index: u64) -> Result<Reply> {
        let mut k = usize::try_from(index).map_err(|_| ErrorCode::NotMapped)?;
        let mut found = None;
        for d in (0..self.cfg.devices.len()).filter(|d| self.cfg.devices[*d].owner == client) {
            let (tree, root) = self.view(d);
            let n = root.len();
            if k < n {
                found = tree.select(root, k).map(|i| (d, self.at(i)));
                break;
            }
            k -= n;
        }
        let (d, m) = found.ok_or(ErrorCode::NotMapped)?;
        let region = self.cfg.regions.get(m.region as usize).ok_or(ErrorCode::NotMapped)?;
        Ok(Reply::ok(&[
            d as u64,
            m.iova,
            m.len(),
            m.rights.0 as u64,
            m.region as u64,
            m.pa - region.pa,
            m.pending as u64,
        ]))
    }

    /// RESUME: a device quarantined by a storm (if the description allows) or blocked by
    /// an unconfirmed removal runs again, once every pending removal of it is confirmed.
    fn resume(&mut self, client: usize, device: DeviceId) -> Result<()> {
        let d = self.own_device(client, device)?;
        let st = self.devices[d];
        if !st.quarantined && !st.unconfirmed {
            return Ok(());
        }
        if st.torn_down || (st.quarantined && !self.cfg.devices[d].resume_allowed) {
            return Err(ErrorCode::Denied);
        }
        self.settle(d)?;
        self.hw.enable(d).map_err(|_| ErrorCode::Hardware)?;
        // A fresh start for the storm window; the device's mappings stay as they are.
        let (root, pending) = (self.devices[d].root, self.devices[d].pending);
        self.devices[d] = DeviceState { root, pending, ..DeviceState::default() };
        Ok(())
    }

    /// Attribute a fault to its device, owner and region, rate-limit the device, and
    /// queue the record for the owner. Returns the client to notify.
    pub fn record_fault(&mut self, f: FaultInput) -> Option<ClientId> {
        let Some(d) = self.cfg.devices.iter().position(|dc| dc.stream == f.stream) else {
            self.stats.unattributed_faults += 1;
            return None;
        };
        let owner = self.cfg.devices[d].owner;
        let (mut region, mut offset, mut near) = (u32::MAX, 0, 0);
        let mut best = u64::MAX;
        // The nearest mappings are the last one starting at or below the address and the
        // first one above it.
        let neighbours = {
            let (tree, root) = self.view(d);
            [tree.floor(root, f.iova), tree.ceil(root, f.iova)]
        };
        for m in neighbours.into_iter().flatten().map(|i| self.at(i)).filter(|m| !m.pending) {
            let dist = if f.iova < m.iova {
                m.iova - f.iova
            } else if f.iova >= m.iova + m.len() {
                f.iova - (m.iova + m.len() - 1)
            } else {
                0
            };
            if dist < best && dist <= PAGE {
                best = dist;
                let reg = m.region as usize;
                let base = self.cfg.regions.get(reg).map(|r| r.pa).unwrap_or(0);
                let at = if dist == 0 {
                    m.pa + (f.iova - m.iova)
                } else if f.iova < m.iova {
                    m.pa
                } else {
                    m.pa + m.len() - 1
                };
                region = reg as u32;
                offset = at - base;
                near = (dist != 0) as u32;
            }
        }
        let policy = self.cfg.faults;
        let st = &mut self.devices[d];
        let storm = st.count_fault(f.now, policy.window) > u64::from(policy.max_faults);
        let mut quarantined = 0;
        if storm && !st.quarantined && self.hw.block(d).is_ok() {
            self.devices[d].quarantined = true;
            self.stats.quarantines += 1;
            quarantined = 1;
        }
        let record = FaultRecord {
            seq: 0,
            device: d as u32,
            stream: f.stream,
            iova: f.iova,
            kind: f.kind,
            write: f.write as u32,
            region,
            near,
            offset,
            quarantined,
            dropped_before: 0,
            repeats: 0,
            iova_last: f.iova,
        };
        // A device no client drives (it has only the description's iomaps): its faults are
        // the IOMMU PD's to report.
        let Some(ring) = self.rings.get_mut(owner) else {
            self.stats.unowned_faults += 1;
            return None;
        };
        if !ring.coalesce(&record) {
            ring.push(record);
        }
        Some(ClientId(owner as u32))
    }

    /// `client` faulted or is being restarted: block its devices and remove all their
    /// mappings. Its capabilities stay; `client_ready` lets its devices run again. `Ok`
    /// once every device is blocked, confirmed (removals the IOMMU did not confirm stay
    /// pending, and `client_ready` retries them); `Hardware` if a device could not be
    /// blocked, with its mappings left as they were.
    pub fn client_torn_down(&mut self, client: usize) -> Result<()> {
        for d in 0..self.cfg.devices.len() {
            if self.cfg.devices[d].owner != client {
                continue;
            }
            self.hw.block(d).map_err(|_| ErrorCode::Hardware)?;
            self.devices[d].torn_down = true;
            // The device is blocked, so a removal that is not confirmed removes no safety
            // now; it stays pending and is retried before the device runs again.
            let _ = self.remove_where(d, |_| true);
        }
        Ok(())
    }

    /// `client` is running again: its devices (unless quarantined) translate again,
    /// through empty address spaces, once every removal pending on them is confirmed.
    pub fn client_ready(&mut self, client: usize) -> Result<()> {
        for d in 0..self.cfg.devices.len() {
            if self.cfg.devices[d].owner == client && self.devices[d].torn_down {
                self.settle(d)?;
                if !self.devices[d].quarantined {
                    self.hw.enable(d).map_err(|_| ErrorCode::Hardware)?;
                }
                self.make_static_maps(d)?;
                // Only now: if anything above failed, the device is still torn down and
                // the next `client_ready` does it all again.
                self.devices[d].torn_down = false;
            }
        }
        Ok(())
    }

    /// Mappings of `client`'s devices whose removal the IOMMU has not confirmed.
    pub fn pending_removals(&self, client: usize) -> usize {
        (0..self.cfg.devices.len())
            .filter(|d| self.cfg.devices[*d].owner == client)
            .map(|d| self.devices[d].pending as usize)
            .sum()
    }

    /// Every device-reachable page as (device, IOVA page, physical page, rights), for
    /// tests and reports.
    pub fn for_each_mapped_page(&self, mut f: impl FnMut(DeviceIndex, u64, u64, Rights)) {
        for m in self.maps.iter().flatten() {
            for p in 0..m.len() / PAGE {
                f(m.device as usize, m.iova + p * PAGE, m.pa + p * PAGE, m.rights);
            }
        }
    }
}
