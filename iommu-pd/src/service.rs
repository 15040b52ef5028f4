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
//!
//! Here: the service's types and tables, building it from the policy, and dispatching a
//! request. Each concern has its own module: `mappings` (MAP, UNMAP, the per-device index,
//! confirmed removal), `capabilities` (GRANT, REVOKE, RELEASE), `storms` (fault
//! attribution, quarantine, RESUME), `teardown` (a client's faults and restarts),
//! `reset_ration` (the function resets every client's STOP and RESUME share),
//! `queue` (a batch of MAP and UNMAP from a client's mapping queue), `storage` (the
//! tables the caller gives, and their cost), `audit` (tests only).

use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Op, Reply, Request, Rights, MAX_UNMAP_RANGES};

use crate::config::{Config, DeviceConfig};
use crate::faults::{FaultRecord, FaultRing};
use crate::hw::{DeviceIndex, IommuHw};
use crate::index::{self, Index, Inner, Leaf, Root, Take, NIL};
use crate::pci::{ConfigSpace, Stopped};
use crate::reach;

#[cfg(any(test, feature = "model"))]
mod audit;
mod capabilities;
mod map_window;
mod mappings;
mod queue;
mod reset_ration;
mod storage;
mod storms;
mod teardown;

pub use reset_ration::{reset_wait_bound_ms, LONGEST_RESET_MS, RESET_REST, RESET_TURN_MS};
pub use storage::{state_sizes, OwnedStorage, StateSizes, Storage};
pub use storms::{FaultInput, Routed};

/// Most devices (device masks are 64-bit).
pub const MAX_DEVICES: usize = 64;
/// Most capability slots a `Storage` may have (slot numbers are 16-bit, and `NIL` is
/// one of them).
pub const MAX_CAPS: usize = NIL as usize;
/// Most mapping slots a `Storage` may have (indices are 16-bit, one value meaning none).
pub const MAX_MAPPINGS: usize = index::MAX_SLOTS;
/// Handle-table entries per client (4 bytes each): what it holds, what it granted, and
/// what may be lent to it.
pub const MAX_HANDLES: usize = 128;
/// Mappings removed per IOMMU call when a revoke or teardown removes many.
const UNMAP_BATCH: usize = 64;
/// The page size of every mapping.
pub const PAGE: u64 = 4096;

/// The first page of `dc`'s IOVA window, its base rounded up to a page: where its
/// allocator starts. `None` if that does not fit 64 bits.
fn window_first_page(dc: &DeviceConfig) -> Option<u64> {
    dc.iova_base.checked_add(PAGE - 1).map(|b| b & !(PAGE - 1))
}

/// The static configuration does not fit or is inconsistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// More clients, devices, capabilities, mappings or handles than the service holds
    /// (mapping slots: fewer than `Config::mappings_needed`).
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
    /// Two devices (or one, twice) list the same StreamID: one would translate through the
    /// other's address space. The devices, in description order (equal if one device
    /// lists it twice).
    SharedStream {
        /// The StreamID.
        stream: u32,
        /// The first device that lists it.
        first: usize,
        /// The device that lists it again.
        second: usize,
    },
}

/// The first StreamID listed twice over `devices` (each device's first stream, then its
/// others), with the devices that list it; none if every StreamID is one device's.
fn shared_stream(devices: &[DeviceConfig]) -> Option<(u32, usize, usize)> {
    let streams = |d: &DeviceConfig| core::iter::once(d.stream).chain(d.extra_streams.iter().copied());
    for (second, d) in devices.iter().enumerate() {
        for (k, s) in streams(d).enumerate() {
            // Earlier devices, then the streams this device listed before this one.
            let earlier = devices[..second].iter().position(|e| streams(e).any(|x| x == s));
            if let Some(first) = earlier {
                return Some((s, first, second));
            }
            if streams(d).take(k).any(|x| x == s) {
                return Some((s, second, second));
            }
        }
    }
    None
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
    /// First of the capabilities granted from it, linked through `next_sibling`.
    first_child: u16,
    next_sibling: u16,
    /// Marked for removal by REVOKE, RELEASE or a teardown, which then find its mappings
    /// in the indexes of its devices (`devices`: a mapping is made only for one of them)
    /// and free it; never set between requests.
    going: bool,
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
    /// The capability it was made with, on one of whose `devices` it is (MAP checks),
    /// so that removing the capability finds it by walking those devices' indexes;
    /// `NO_CAP` once the capability is gone while this removal is pending.
    cap: u16,
    /// Made from the description: the client cannot unmap it.
    pinned: bool,
    /// Its unmap failed: the IOMMU may still translate it, so it stays in the books (and
    /// its device blocked) until a retry is confirmed.
    pending: bool,
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
    /// Where the IOVA allocator puts the device's next mapping if it fits below
    /// `window_end`: the end of its highest mapping, or its window's first page if it has
    /// none. Kept by every insertion (`insert_mapping`, a queued removal filed again) and
    /// removal (`unindexed`), so that MAP's usual allocation reads it rather than the
    /// index and the highest mapping.
    next_iova: u64,
    /// The end of its IOVA window; 0 if the window's base or end do not fit 64 bits (the
    /// allocator's slow path answers, as it always did).
    window_end: u64,
    /// Mappings of the device whose removal is pending.
    pending: u32,
    /// What keeps it blocked (`Blocks`): a storm, its owner torn down, its owner's STOP,
    /// a removal not confirmed.
    blocks: Blocks,
    /// Its function was stopped without the reset it has (STOP inside its client's
    /// ration): RESUME resets it first.
    reset_owed: bool,
    /// Its function stopped answering (a reset it did not come back from in time, or a
    /// call that found nothing there): it may come back at its reset values, so before
    /// any call touches it again it is put back where the description places it
    /// (`Service::recover_function`).
    function_lost: bool,
    /// Its function's last stop did not read back off (an MSI or MSI-X Enable, or a
    /// Command bit, stayed set, or nothing answered): its driver's CONFIG_WRITE keeps its Bus Master off
    /// (`pci::BusMaster::KeptOff`) until a later stop reads it off. `None` until a stop (or
    /// the owner putting a lost function back) reads it: then what boot found decides
    /// (`ConfigSpace::messages_stuck`), so a function whose enable stuck at boot masters
    /// again once a stop (its reset, say) reads it off.
    master_kept_off: Option<bool>,
    /// The storm window now open: where it starts, the faults in it so far, and the faults
    /// of the window just before it.
    window_start: u64,
    window_faults: u32,
    previous_faults: u32,
    /// The last window's faults, as estimated at the device's latest fault.
    recent_faults: u32,
    /// How many times it was quarantined since boot, at a storm or an overflow (wrapping;
    /// never reset, not by RESUME): how the PD tells a quarantine it has not said yet,
    /// whichever record of its owner's is the last (`Service::times_quarantined`).
    times_quarantined: u32,
    /// When (`ConfigSpace::now_ms`) the device may next be resumed from a storm
    /// quarantine (`FaultPolicy::resume_rest_ms`). Kept by RESUME's fresh start: the
    /// ration is what RESUME's fresh start would otherwise give away.
    storm_rest_until_ms: u64,
    /// Resumed from a storm's quarantine (for the rest of the boot): the next overflow of
    /// the event queue every device shares that its own records helped fill quarantines it
    /// again (`Service::events_lost`), so that each such RESUME buys at most one overflow,
    /// not a storm window's allowance.
    probation: bool,
    /// Its faults in the last two event-queue drains that counted any (each drain's
    /// records carry one `FaultInput::now`): (stamp, faults), the latest first. Kept by
    /// the RESUME of a stopped device (they say what it put in the queue, not how it
    /// behaved since); cleared by the RESUME that ends a storm's quarantine.
    drained: [(u64, u32); 2],
}

/// The reasons a device is blocked, one bit each, so that MAP's question (blocked for
/// any of them?) is one test of one byte, where four flags took four loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Blocks(u8);

impl Blocks {
    /// Blocked by a fault storm; the owner may resume if the policy allows.
    const QUARANTINED: u8 = 1;
    /// Blocked because its owner was torn down; cleared by `client_ready`.
    const TORN_DOWN: u8 = 2;
    /// Blocked and emptied by its owner's STOP; cleared by RESUME (or `client_ready`).
    const STOPPED: u8 = 4;
    /// Blocked because a removal of access was not confirmed: some of its mappings are
    /// pending. Cleared only when every one has been retried and confirmed.
    const UNCONFIRMED: u8 = 8;
}

impl DeviceState {
    /// Something keeps the device from running (`Service::not_running` says what). Every
    /// MAP asks, and almost always the answer is no: one test for all four.
    #[inline(always)]
    fn blocked(&self) -> bool {
        self.blocks.0 != 0
    }

    /// Blocked for `reason` (one of `Blocks`' bits), whatever else.
    #[inline(always)]
    fn blocked_for(&self, reason: u8) -> bool {
        self.blocks.0 & reason != 0
    }

    /// Blocked by a fault storm (`Blocks::QUARANTINED`).
    fn quarantined(&self) -> bool {
        self.blocked_for(Blocks::QUARANTINED)
    }

    /// Blocked because its owner was torn down (`Blocks::TORN_DOWN`).
    fn torn_down(&self) -> bool {
        self.blocked_for(Blocks::TORN_DOWN)
    }

    /// Blocked by its owner's STOP (`Blocks::STOPPED`).
    fn stopped(&self) -> bool {
        self.blocked_for(Blocks::STOPPED)
    }

    /// Blocked because a removal was not confirmed (`Blocks::UNCONFIRMED`).
    #[inline(always)]
    fn unconfirmed(&self) -> bool {
        self.blocked_for(Blocks::UNCONFIRMED)
    }

    /// `reason` set (`on`) or cleared.
    fn set_blocked(&mut self, reason: u8, on: bool) {
        if on {
            self.blocks.0 |= reason;
        } else {
            self.blocks.0 &= !reason;
        }
    }

    /// Does a range of `len` bytes fit between `next_iova` and the window's end?
    #[inline(always)]
    fn fits_above(&self, len: u64) -> bool {
        self.next_iova.checked_add(len).is_some_and(|t| t <= self.window_end)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    mappings: u32,
    pages: u64,
    /// Capabilities this client created by GRANT that are still alive.
    grants: u32,
}

/// A client's mapping quotas, from the description (`ClientConfig`), kept beside its
/// usage: the line MAP reads for one is the line it reads for the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Quota {
    mappings: u32,
    pages: u64,
}

/// A client's handle table and usage.
#[derive(Debug, Clone, Copy)]
pub struct ClientTables {
    handles: [Option<Slot>; MAX_HANDLES],
    usage: Usage,
    quota: Quota,
    /// What its last MAP call's capability and device checks found (`Service::map_call`).
    last_map: mappings::LastMap,
    /// Where the service is in the client's mapping queue (its own copy: it never reads
    /// back what it published in the shared region).
    queue: iommu_protocol::queue::Cursor,
    /// The number of its last rationed turn at a function reset (`reset_ration`), 0 if it
    /// never had one.
    reset_turn: u64,
}

impl Default for ClientTables {
    fn default() -> Self {
        ClientTables {
            handles: [None; MAX_HANDLES],
            usage: Usage::default(),
            quota: Quota::default(),
            last_map: mappings::LastMap::NONE,
            queue: Default::default(),
            reset_turn: 0,
        }
    }
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
    /// Events about a described device's stream that carry no translation fault
    /// (C_BAD_STE, F_STREAM_DISABLED...): its configuration, not its DMA, went wrong.
    pub stream_events: u64,
    /// Devices quarantined by fault storms.
    pub quarantines: u64,
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
    /// Devices (bit n = device n) that must be blocked and whose block the IOMMU did not
    /// confirm: they may still translate, a revoked page's cached translation included.
    /// Retried before any request of any client is served (`retry_blocks`).
    unblocked: u64,
    /// A queue batch's removals in flight (`queue::InFlight`), the first
    /// `Batch::in_flight_len` of them: kept here, so that no batch clears a table of them.
    in_flight: [queue::InFlight; iommu_protocol::queue::QUEUE_BATCH],
    /// The stamps (`FaultInput::now`) of the last two event-queue drains the service
    /// heard of (a fault, or an overflow), the latest first, and of the latest that saw an
    /// overflow (`Service::events_lost`).
    drain_stamps: [u64; 2],
    overflow_drain: Option<u64>,
    /// When (`ConfigSpace::now_ms`) the ration of function resets, one for every client,
    /// allows the next (`reset_ration`), and the turns taken so far.
    reset_gate_ms: u64,
    reset_turns: u64,
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
        // A StreamID is one device's: the IOMMU has one entry per stream, so a stream two
        // devices list would translate through whichever was enabled last, and each
        // would reach the other's memory. `iommu-sdf check` refuses such a description;
        // a policy built any other way is refused here, before the IOMMU is touched.
        if let Some((stream, first, second)) = shared_stream(cfg.devices) {
            return Err(ConfigError::SharedStream { stream, first, second });
        }
        // Every client's grants fit, whatever the others do: no client can exhaust a table
        // another needs.
        if cfg.caps_needed() > storage.caps.len() {
            return Err(ConfigError::TooMany("capabilities"));
        }
        // Likewise mapping slots: every quota and the static maps no quota counts.
        if cfg.mappings_needed() > slots {
            return Err(ConfigError::TooMany("mappings"));
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
        for (t, c) in storage.clients.iter_mut().zip(cfg.clients) {
            t.quota = Quota { mappings: c.max_mappings, pages: c.max_pages };
        }
        storage.devices.fill(DeviceState::default());
        for (st, dc) in storage.devices.iter_mut().zip(cfg.devices) {
            let base = window_first_page(dc);
            st.next_iova = base.unwrap_or(0);
            // A bound that does not fit: no allocation takes the fast way.
            st.window_end = base.and(dc.iova_base.checked_add(dc.iova_size)).unwrap_or(0);
        }
        storage.rings.iter_mut().for_each(FaultRing::reset);
        let mut s = Service {
            hw,
            cfg,
            caps: storage.caps,
            maps: storage.mappings,
            index: Index::new(storage.leaves, storage.inners),
            free: storage.free,
            free_len: slots,
            // Exactly the description's clients: the one bounds check of a client index is
            // also the check that the description has it (`handle_with`'s MAP).
            clients: &mut storage.clients[..cfg.clients.len()],
            devices: storage.devices,
            rings: storage.rings,
            stats: Stats::default(),
            ranges: [(0, 0); UNMAP_BATCH],
            unblocked: 0,
            in_flight: [queue::InFlight::default(); iommu_protocol::queue::QUEUE_BATCH],
            drain_stamps: [0; 2],
            overflow_drain: None,
            reset_gate_ms: 0,
            reset_turns: 0,
        };
        for (i, c) in cfg.caps.iter().enumerate() {
            let region = cfg.regions.get(c.region).ok_or(ConfigError::BadCap(i))?;
            let end = c.offset.checked_add(c.len).ok_or(ConfigError::BadCap(i))?;
            // As for a static map: a start that does not fit in 64 bits wrapped to physical 0.
            let pa = region.pa.checked_add(c.offset).ok_or(ConfigError::BadCap(i))?;
            let owned = s.devices_of(c.client);
            if c.client >= cfg.clients.len() || end > region.size || c.devices & !owned != 0 || !c.rights.is_valid() {
                return Err(ConfigError::BadCap(i));
            }
            s.caps[i] = Some(Cap {
                holder: c.client as u16,
                region: c.region as u16,
                pa,
                len: c.len,
                rights: c.rights,
                devices: c.devices,
                grant_to: c.grant_to,
                parent: None,
                first_child: NIL,
                next_sibling: NIL,
                going: false,
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
                first_child: NIL,
                next_sibling: NIL,
                going: false,
            });
        }
        for d in 0..cfg.devices.len() {
            if let Err(e) = s.start_device(d) {
                // The service is dropped with its books, and the PD can only fail the
                // IOMMU closed, which an SMMU without GBPA (QEMU 7.2) cannot be without
                // passing everything: it stays on, and the devices enabled so far would
                // go on translating. Each is blocked again first, best effort (an IOMMU
                // that no longer answers cannot be).
                for enabled in 0..=d {
                    let _ = s.hw.block(enabled);
                }
                return Err(e);
            }
        }
        Ok(s)
    }

    /// Let device `d` translate and make its static mappings, at start-up.
    fn start_device(&mut self, d: DeviceIndex) -> core::result::Result<(), ConfigError> {
        self.hw.enable(d).map_err(|_| ConfigError::Hardware(d))?;
        self.make_static_maps(d).map_err(|e| match e {
            ErrorCode::Hardware => ConfigError::Hardware(d),
            _ => ConfigError::BadStaticMap(d),
        })
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

    /// How many times `device` has been quarantined since boot (wrapping): a count that
    /// changed since the PD last looked is a quarantine it has not said yet.
    pub fn times_quarantined(&self, device: usize) -> Option<u32> {
        self.devices.get(device).map(|d| d.times_quarantined)
    }

    /// `client`'s fault ring.
    pub fn faults(&self, client: usize) -> Option<&FaultRing> {
        self.rings.get(client)
    }

    /// Serve one protected procedure call from `client`, with no PCI configuration space
    /// (CONFIG_READ and CONFIG_WRITE answer `NoConfigSpace`).
    pub fn handle(&mut self, client: usize, label: u64, mrs: &[u64]) -> Reply {
        self.handle_with(client, label, mrs, &mut crate::pci::NoConfigSpace)
    }

    /// Serve one protected procedure call from `client`; CONFIG_READ and CONFIG_WRITE go
    /// to `pci`, the configuration space this service owns, for the caller's own devices
    /// only (`crate::pci`).
    ///
    /// A MAP from a client the description has, with no block to retry, is served here,
    /// inlined into the caller (the PD shell's handler): no call and no registers saved
    /// for it around a MAP's own work. Everything else, and a MAP when blocks are to be
    /// retried first, is `handle_other`'s, in the order it always had.
    #[inline(always)]
    pub fn handle_with(&mut self, client: usize, label: u64, mrs: &[u64], pci: &mut dyn ConfigSpace) -> Reply {
        if label == Op::Map as u64 && self.unblocked == 0 && client < self.clients.len() {
            return self.map_reply(client, mrs);
        }
        self.handle_other(client, label, mrs, pci)
    }

    /// MAP straight to its work: no `Request` (sized for UNMAP's 64 IOVAs) passed through
    /// `dispatch`, no reply moved out of a `Result`.
    #[inline(always)]
    fn map_reply(&mut self, client: usize, mrs: &[u64]) -> Reply {
        match self.map_call(client, mrs) {
            Ok(iova) => Reply::ok(&[iova]),
            Err(e) => self.refuse(e),
        }
    }

    /// `handle_with` of every request but the MAP it serves inline.
    #[inline(never)]
    fn handle_other(&mut self, client: usize, label: u64, mrs: &[u64], pci: &mut dyn ConfigSpace) -> Reply {
        // A device the IOMMU would not block may still reach what was taken from it, and
        // the one who could retry may have no handle left to do it with (a granter after
        // REVOKE): every request, whoever sends it, retries first.
        if self.unblocked != 0 {
            self.retry_blocks();
        }
        if client >= self.cfg.clients.len() {
            return self.refuse(ErrorCode::BadClient);
        }
        // Each reply is built where it is returned, not moved out of a `Result`.
        if label == Op::Unmap as u64 {
            // The IOVAs straight from the message registers.
            let done = iommu_protocol::decode_unmap(mrs)
                .map_err(ErrorCode::from)
                .and_then(|(device, iovas)| self.unmap(client, device, iovas));
            return match done {
                Ok(()) => Reply::ok(&[]),
                Err(e) => self.refuse(e),
            };
        }
        // A MAP after blocks were retried.
        if label == Op::Map as u64 {
            return self.map_reply(client, mrs);
        }
        match Request::decode(label, mrs).map_err(ErrorCode::from).and_then(|req| self.dispatch(client, req, pci)) {
            Ok(r) => r,
            // A client older than a RESUME's newer answers gets the older one that means
            // the same to it, not a label it would read as `Malformed`.
            Err(e) if label == Op::Resume as u64 => self.refuse(e.as_known_to(ErrorCode::declared_by_resume(mrs))),
            Err(e) => self.refuse(e),
        }
    }

    /// A refusal's reply, counted. Out of line and cold: inlined, every refusal of MAP's
    /// checks joined one block that built the reply, and the passing path set each
    /// check's code in a register before its branch and kept more of its values on the
    /// stack for that join (`benches/instructions.sh`: MAP 503.3 to 493.2).
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, e: ErrorCode) -> Reply {
        self.stats.refused += 1;
        Reply::Err(e)
    }

    fn dispatch(&mut self, client: usize, req: Request, pci: &mut dyn ConfigSpace) -> Result<Reply> {
        match req {
            // A device's configuration space is its owner's, whatever state its DMA is in
            // (a quarantined or stopped device is blocked at the IOMMU: turning its Bus
            // Master on reaches nothing).
            Request::ConfigRead { device, offset, width } => {
                let (d, rid) = self.own_function(client, device, pci)?;
                let read = crate::pci::config_read(pci, rid, offset, width);
                self.lost_if_missing(d, read).map(|v| Reply::ok(&[u64::from(v)]))
            }
            Request::ConfigWrite { device, offset, width, value } => {
                let (d, rid) = self.own_function(client, device, pci)?;
                let bus_master = self.bus_master(d, rid, pci);
                let written = crate::pci::config_write(pci, rid, offset, width, value, bus_master);
                self.lost_if_missing(d, written).map(|v| Reply::ok(&[u64::from(v)]))
            }
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
                self.rings[client].ack(upto).map(|record| Reply::ok(&record)).ok_or(ErrorCode::OutOfRange)
            }
            Request::Resume { device } => self.resume(client, device, pci).map(|_| Reply::ok(&[])),
            Request::QueryMapping { index } => self.query_mapping(client, index),
            Request::Release { cap } => self.release(client, cap).map(|_| Reply::ok(&[])),
            Request::Stop { device } => {
                // A device that is not the caller's is refused before anything is touched.
                let d = self.own_device(client, device)?;
                let blocked = self.stop(client, device);
                // Its function is stopped even when the IOMMU did not confirm: one more
                // wall, never one less. Its reset as the client's ration allows.
                let function = self.stop_function_of(client, d, pci, teardown::Ration::Kept);
                blocked.map(|()| Reply::ok(&[function.0]))
            }
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

    fn own_device(&self, client: usize, device: DeviceId) -> Result<DeviceIndex> {
        let d = device.0 as usize;
        match self.cfg.devices.get(d) {
            Some(dc) if dc.owner == client => Ok(d),
            _ => Err(ErrorCode::BadDevice),
        }
    }

    /// `device` and its requester ID, if `client` owns it and it is a function of `pci`;
    /// a function that stopped answering is put back first (`recover_function`), and one
    /// that reset itself gets what the owner keeps on back (`keep_function_owned`), before
    /// its driver's call reads or writes it.
    fn own_function(
        &mut self,
        client: usize,
        device: DeviceId,
        pci: &mut dyn ConfigSpace,
    ) -> Result<(DeviceIndex, u16)> {
        let d = self.own_device(client, device)?;
        let rid = pci.function(d)?;
        self.recover_function(d, pci)?;
        self.keep_function_owned(d, rid, pci)?;
        Ok((d, rid))
    }

    /// Blocks the IOMMU did not confirm, retried: each device that must still be blocked
    /// (a removal pending, its client torn down, stopped, quarantined) is blocked again;
    /// if the block fails once more, its pending removals are retried, which end the
    /// exposure too (then, with nothing else keeping it blocked, it runs again, through
    /// what it still has). `handle` calls this before every request; the PD shell also
    /// calls it when it is woken for anything else. Devices the IOMMU still will not
    /// block stay marked (`unblocked_devices`).
    pub fn retry_blocks(&mut self) {
        let mut left = self.unblocked;
        while left != 0 {
            let d = left.trailing_zeros() as usize;
            left &= left - 1;
            if self.must_be_blocked(d) && self.hw.block(d).is_err() {
                if self.devices[d].unconfirmed() {
                    let _ = self.settle(d);
                }
                if self.must_be_blocked(d) {
                    continue;
                }
            }
            self.unblocked &= !(1 << d);
        }
    }

    /// Bit mask of the devices that must be blocked and whose block the IOMMU has not
    /// confirmed yet.
    pub fn unblocked_devices(&self) -> u64 {
        self.unblocked
    }

    /// The IOMMU did not confirm blocking `d`: retried before the next request.
    fn block_failed(&mut self, d: DeviceIndex) {
        self.unblocked |= 1 << d;
    }

    /// Let `d` translate; `Hardware` if the IOMMU did not confirm. An enable that failed
    /// may have enabled part of the device (some of its streams attached, on the SMMUv3):
    /// while something still keeps the device from running, it is blocked again (or its
    /// block is owed, retried before the next request).
    fn enable_or_block(&mut self, d: DeviceIndex) -> Result<()> {
        if self.hw.enable(d).is_ok() {
            return Ok(());
        }
        if self.must_be_blocked(d) && self.hw.block(d).is_err() {
            self.block_failed(d);
        }
        Err(ErrorCode::Hardware)
    }

    /// Something keeps `d` from running.
    fn must_be_blocked(&self, d: DeviceIndex) -> bool {
        self.devices[d].blocked()
    }

    /// `Ok` if device `d` may run: not quarantined, its client not torn down, not stopped,
    /// no removal pending. (Inlined: every MAP asks, and the answer is one test.)
    #[inline(always)]
    fn running(&self, d: DeviceIndex) -> Result<()> {
        if !self.devices[d].blocked() {
            return Ok(());
        }
        Err(self.not_running(d))
    }

    /// Why device `d`, which is blocked (`DeviceState::blocked`), may not run.
    #[cold]
    fn not_running(&self, d: DeviceIndex) -> ErrorCode {
        let st = &self.devices[d];
        if st.quarantined() || st.torn_down() {
            ErrorCode::Quarantined
        } else if st.stopped() {
            ErrorCode::Stopped
        } else {
            ErrorCode::RemovalPending
        }
    }

    /// `device`, if `client` owns it and it may run (not quarantined, not torn down): for
    /// requests the PD shell serves outside the protocol, such as a measurement build's
    /// bypass switch.
    pub fn running_device_of(&self, client: usize, device: DeviceId) -> Result<DeviceIndex> {
        let d = self.own_device(client, device)?;
        self.running(d)?;
        Ok(d)
    }
}
