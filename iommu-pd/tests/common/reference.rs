//! The reference model of capabilities, written independently of the service, and the
//! invariants the service must keep, checked after every step by the model-based test
//! (random sequences) and the exhaustive one (every sequence up to a depth).

use std::collections::{BTreeMap, BTreeSet};

use iommu_pd::Service;
use iommu_protocol::{ClientId, ErrorCode, Reply, Request, Rights};

use super::backend::{Entry, Pages, TestHw};
use super::*;

/// A capability as the model sees it.
#[derive(Debug, Clone)]
pub struct MCap {
    pub holder: usize,
    pub pa: u64,
    pub len: u64,
    pub rights: Rights,
    pub devices: u64,
    /// Clients it may be granted to: its root's, from the description.
    pub grant_to: u64,
    pub parent: Option<usize>,
}

/// The test description's capabilities, with delegation bounded differently for each:
/// NET's buffers to anyone, its read-only share (for its `nic` alone) to itself and BLK,
/// so that a self-grant or a round trip could try to widen it to `nic2`; BLK's to NET
/// alone, EVIL's to BLK alone.
pub fn model_caps() -> &'static [iommu_pd::CapConfig] {
    let mut caps = CAPS;
    caps[0].grant_to = u64::MAX;
    caps[1].grant_to = 1 << NET | 1 << BLK;
    caps[2].grant_to = 1 << NET;
    caps[3].grant_to = 1 << BLK;
    Box::leak(Box::new(caps))
}

#[derive(Default)]
pub struct Model {
    pub caps: Vec<Option<MCap>>,
    /// (client, handle) -> model cap index, for capabilities.
    pub handles: BTreeMap<(usize, u32), usize>,
    /// (client, grant handle) -> model cap index, for grants made.
    pub grants: BTreeMap<(usize, u32), usize>,
}

impl Model {
    pub fn new() -> Self {
        let mut m = Model::default();
        let mut next = [0u32; 3];
        for c in model_caps().iter() {
            let r = &REGIONS[c.region];
            m.caps.push(Some(MCap {
                holder: c.client,
                pa: r.pa + c.offset,
                len: c.len,
                rights: c.rights,
                devices: c.devices,
                grant_to: c.grant_to,
                parent: None,
            }));
            m.handles.insert((c.client, next[c.client]), m.caps.len() - 1);
            next[c.client] += 1;
        }
        m
    }

    pub fn live(&self, i: usize) -> Option<&MCap> {
        self.caps.get(i).and_then(Option::as_ref)
    }

    pub fn descends(&self, mut i: usize, root: usize) -> bool {
        loop {
            if i == root {
                return true;
            }
            match self.live(i).and_then(|c| c.parent) {
                Some(p) => i = p,
                None => return false,
            }
        }
    }

    pub fn remove_subtree(&mut self, root: usize) {
        let doomed: Vec<usize> =
            (0..self.caps.len()).filter(|&i| self.live(i).is_some() && self.descends(i, root)).collect();
        for i in &doomed {
            self.caps[*i] = None;
        }
        self.handles.retain(|_, v| !doomed.contains(v));
        self.grants.retain(|_, v| !doomed.contains(v));
    }

    /// The description's capability that `i` derives from.
    pub fn root(&self, mut i: usize) -> &MCap {
        while let Some(p) = self.live(i).and_then(|c| c.parent) {
            i = p;
        }
        self.live(i).expect("a live root")
    }

    /// May `device` (owned by `owner`) reach physical page `pa` with `rights`?
    pub fn allows(&self, owner: usize, device: usize, pa: u64, rights: Rights) -> bool {
        self.caps.iter().flatten().any(|c| {
            c.holder == owner
                && c.devices & (1 << device) != 0
                && c.rights.contains(rights)
                && pa >= c.pa
                && pa + PAGE <= c.pa + c.len
        })
    }
}

pub fn pages<H: TestHw>(s: &Service<'_, H>) -> BTreeMap<usize, Pages> {
    let mut out: BTreeMap<usize, Pages> = BTreeMap::new();
    s.for_each_mapped_page(|d, iova, pa, r| {
        out.entry(d).or_default().insert(iova, (pa, r));
    });
    out
}

/// Every translation the IOMMU holds (tables, and what it is known to cache), per device.
pub fn hw_translations<H: TestHw>(s: &Service<'_, H>) -> BTreeMap<usize, Pages> {
    (0..DEVICES.len()).map(|d| (d, s.hw().translations(d))).filter(|(_, t)| !t.is_empty()).collect()
}

/// What the IOMMU held before a request: every translation, and which devices were enabled.
pub type Before = (BTreeMap<usize, Pages>, BTreeMap<usize, bool>);

/// The state `judge` compares a request's effect against.
pub fn before<H: TestHw>(s: &Service<'_, H>) -> Before {
    (hw_translations(s), (0..DEVICES.len()).map(|d| (d, s.hw().enabled(d))).collect())
}

/// The IOVA pages each device is tried at after every step: every page it ever had a
/// mapping at (in the service's books or the IOMMU's tables), so a translation left
/// behind anywhere is found; and the clock the faults this makes are stamped with.
#[derive(Default)]
pub struct Probe {
    pub seen: BTreeMap<usize, BTreeSet<u64>>,
    /// Far enough apart at each use that the faults never make a storm.
    pub now: u64,
}

/// IOVAs no device ever maps (outside every window): device `d` tries the page at
/// `NEVER_MAPPED + d * PAGE` after every step, so that each step makes a fault of each
/// device for the service to attribute.
pub const NEVER_MAPPED: u64 = 0xdead_0000;

impl Model {
    /// Judge `client`'s request `req`, answered `reply`, against the model, and bring the
    /// model up to date: invariants 3 and 4, and the legitimacy of every success. Returns
    /// whether it succeeded; what MAP made goes into `known` as (device, IOVA, length).
    #[allow(clippy::too_many_arguments)]
    pub fn judge<H: TestHw>(
        &mut self,
        s: &Service<'_, H>,
        client: usize,
        req: Request,
        reply: &Reply,
        before: &Before,
        known: &mut Vec<(usize, u64, u64)>,
        ctx: &dyn Fn() -> String,
    ) -> bool {
        let m = self;
        let mut successes = 0;
        match (&reply, req) {
            // Revocation and release take the capabilities away even when the IOMMU did
            // not confirm every removal (those stay pending, their devices blocked).
            (Reply::Err(ErrorCode::Hardware), Request::Revoke { grant }) => {
                if let Some(&root) = m.grants.get(&(client, grant.0)) {
                    m.remove_subtree(root);
                }
            }
            (Reply::Err(ErrorCode::Hardware), Request::Release { cap }) => {
                if let Some(&root) = m.handles.get(&(client, cap.0)) {
                    m.remove_subtree(root);
                }
            }
            (Reply::Err(ErrorCode::Hardware), _) => {}
            (Reply::Err(_), _) => {
                assert_eq!(super::reference::before(s), *before, "refused but changed: {}", ctx())
            }
            (Reply::Ok { values, .. }, Request::Map { device, len, .. }) => {
                successes += 1;
                // A mapping made at an IOVA ends whatever `known` still had there: within a
                // batch, an entry's UNMAP may retry and remove an earlier mapping at that
                // IOVA (one whose removal was pending) before a later entry maps it again;
                // and a mapping the books lost while the list was not pruned is gone.
                known.retain(|k| !(k.0 == device.0 as usize && k.1 == values[0]));
                known.push((device.0 as usize, values[0], len));
            }
            (Reply::Ok { .. }, Request::Unmap { device, iovas, count }) => {
                successes += 1;
                let d = device.0 as usize;
                for iova in &iovas[..count] {
                    let len = known
                        .iter()
                        .find(|k| k.0 == d && k.1 == *iova)
                        .map(|k| k.2)
                        .unwrap_or_else(|| panic!("unmapped what was never mapped: {}", ctx()));
                    known.retain(|k| !(k.0 == d && k.1 == *iova));
                    let gone: BTreeSet<u64> = (0..len / PAGE).map(|p| iova + p * PAGE).collect();
                    for p in &gone {
                        assert!(!s.hw().translations(d).contains_key(p), "{}", ctx());
                    }
                    // And no device access gets through any more, cached or not.
                    let reached = s.hw().reach(d, &gone);
                    assert!(reached.is_empty(), "reached {reached:x?} after its UNMAP answered Ok: {}", ctx());
                }
            }
            (Reply::Ok { values, .. }, Request::Grant { cap, to, offset, len, rights, devices }) => {
                successes += 1;
                // The model decides independently whether the grant was legitimate.
                let parent =
                    *m.handles.get(&(client, cap.0)).unwrap_or_else(|| panic!("granted from a non-cap: {}", ctx()));
                let p = m.live(parent).unwrap().clone();
                assert!(p.rights.contains(rights), "widened rights: {}", ctx());
                assert!(offset.checked_add(len).is_some_and(|e| e <= p.len), "widened range: {}", ctx());
                let to = to.0 as usize;
                let owned: u64 =
                    DEVICES.iter().enumerate().filter(|(_, d)| d.owner == to).fold(0, |a, (i, _)| a | 1 << i);
                assert!(devices & !owned == 0, "devices not the receiver's: {}", ctx());
                assert!(p.grant_to & (1 << to) != 0, "granted where the description does not allow: {}", ctx());
                // Back to the capability's first holder: only for the devices the
                // description named for it.
                // To itself, only narrower.
                assert!(to != client || devices & !p.devices == 0, "widened by a self-grant: {}", ctx());
                let root = m.root(parent);
                assert!(to != root.holder || devices & !root.devices == 0, "widened to other devices: {}", ctx());
                // Back at any client it passed through, only narrower than it was there.
                let mut at = Some(parent);
                while let Some(c) = at.and_then(|i| m.live(i)) {
                    assert!(c.holder != to || devices & !c.devices == 0, "widened by a round trip: {}", ctx());
                    at = c.parent;
                }
                m.caps.push(Some(MCap {
                    holder: to,
                    pa: p.pa + offset,
                    len,
                    rights,
                    devices,
                    grant_to: p.grant_to,
                    parent: Some(parent),
                }));
                let idx = m.caps.len() - 1;
                m.grants.insert((client, values[0] as u32), idx);
                m.handles.insert((to, values[1] as u32), idx);
            }
            (Reply::Ok { .. }, Request::Revoke { grant }) => {
                successes += 1;
                let root =
                    *m.grants.get(&(client, grant.0)).unwrap_or_else(|| panic!("revoked a non-grant: {}", ctx()));
                let before = pages_of_subtree(m, root);
                m.remove_subtree(root);
                assert_gone(s, m, &before, &ctx);
            }
            (Reply::Ok { .. }, Request::Release { cap }) => {
                successes += 1;
                let root = *m.handles.get(&(client, cap.0)).unwrap_or_else(|| panic!("released a non-cap: {}", ctx()));
                assert!(m.live(root).unwrap().parent.is_some(), "released a boot capability: {}", ctx());
                let before = pages_of_subtree(m, root);
                m.remove_subtree(root);
                assert_gone(s, m, &before, &ctx);
            }
            (Reply::Ok { .. }, Request::Stop { device }) => {
                successes += 1;
                let d = device.0 as usize;
                assert!(DEVICES[d].owner == client, "stopped another client's device: {}", ctx());
                known.retain(|k| k.0 != d);
                assert!(s.hw().translations(d).is_empty(), "a stopped device keeps translations: {}", ctx());
                assert!(!s.hw().enabled(d), "a stopped device runs: {}", ctx());
            }
            (Reply::Ok { .. }, _) => {}
        }
        successes > 0
    }
}

/// Invariants 1 and 2, after every step, and the rule behind them: a translation whose
/// removal the IOMMU did not confirm is never usable. Then every device tries every page
/// it ever had a mapping at, and an address it never had, and each fault the IOMMU
/// recorded goes to the service, which must attribute it to the device's owner.
pub fn check<H: TestHw>(s: &mut Service<'_, H>, m: &Model, probe: &mut Probe, ctx: &dyn Fn() -> String) {
    if let Err(e) = s.audit() {
        panic!("the service's books disagree: {e}: {}", ctx());
    }
    check_entries(s, ctx);
    let books = pages(s);
    let held = hw_translations(s);
    if H::FAILED_UNMAPS_STAY_CACHED {
        assert_eq!(held, books, "IOMMU and service disagree: {}", ctx());
    } else {
        for (d, device) in DEVICES.iter().enumerate() {
            let (held, books) = (held.get(&d).cloned().unwrap_or_default(), books.get(&d).cloned().unwrap_or_default());
            for (iova, v) in &held {
                assert_eq!(
                    books.get(iova),
                    Some(v),
                    "device {d}: the IOMMU maps {iova:#x}, the service does not: {}",
                    ctx()
                );
            }
            // Without a removal pending, every mapping the service has is in the tables.
            if s.pending_removals(device.owner) == 0 {
                assert_eq!(held, books, "device {d}: IOMMU and service disagree: {}", ctx());
            }
        }
    }
    for (d, device) in DEVICES.iter().enumerate() {
        let seen = probe.seen.entry(d).or_default();
        seen.extend(held.get(&d).into_iter().flat_map(|t| t.keys()));
        seen.extend(books.get(&d).into_iter().flat_map(|t| t.keys()));
        let tables = s.hw().tables(d);
        let reached = s.hw().reach(d, seen);
        let owner = device.owner;
        for (iova, (pa, r)) in &reached {
            assert!(
                m.allows(owner, d, *pa, *r),
                "device {d} reaches {pa:#x} ({r:?}) at {iova:#x} without a capability: {}",
                ctx()
            );
            assert_eq!(
                tables.get(iova),
                Some(&(*pa, *r)),
                "device {d} reaches {pa:#x} ({r:?}) at {iova:#x} through a translation its tables do not hold \
                 (stale): {}",
                ctx()
            );
        }
    }
    // Faults of those accesses (a write to a read-only page, a page that is gone): each is
    // its stream's device's, for that device's owner.
    probe.now += 1_000_000;
    attribute(s, probe.now, ctx, |f| DEVICES.iter().position(|dc| dc.stream == f.stream));
    // Then each device tries an address of its own that nothing maps: the fault names the
    // device by its address, so a fault reported with another device's StreamID is
    // caught; on an IOMMU that records faults, every device that translates reports one.
    for d in 0..DEVICES.len() {
        s.hw().reach(d, &BTreeSet::from([NEVER_MAPPED + d as u64 * PAGE]));
    }
    probe.now += 1_000_000;
    let faulted = attribute(s, probe.now, ctx, |f| {
        let d = (f.iova.wrapping_sub(NEVER_MAPPED) / PAGE) as usize;
        assert_eq!(
            f.stream,
            DEVICES.get(d)?.stream,
            "device {d}'s fault reported as stream {:#x}: {}",
            f.stream,
            ctx()
        );
        Some(d)
    });
    if H::RECORDS_FAULTS {
        for d in (0..DEVICES.len()).filter(|&d| s.hw().enabled(d)) {
            assert!(faulted.contains(&d), "device {d} translates, its fault was not reported: {}", ctx());
        }
    }
}

/// Invariant 3, on the IOMMU's stream entries themselves (STEs, SMRs and S2CRs), not on
/// what a device reaches: a bypassing stream reaches exactly what a translating one would
/// at the pages its tables map, so `check`'s probes alone would not see it. A device the
/// service does not let run (stopped, quarantined, torn down, a removal pending) aborts,
/// unless its block is owed (`unblocked_devices`: the IOMMU did not confirm it); one that
/// translates does so through its own address space, never bypassing; and a stream no
/// device has aborts.
pub fn check_entries<H: TestHw>(s: &Service<'_, H>, ctx: &dyn Fn() -> String) {
    for (d, device) in DEVICES.iter().enumerate() {
        let Some(entry) = s.hw().entry(d) else { continue };
        let owed = s.unblocked_devices() & (1 << d) != 0;
        let may_run = s.running_device_of(device.owner, DeviceId(d as u32)).is_ok();
        match &entry {
            Entry::Aborts => {}
            Entry::OwnDomain => {
                assert!(may_run || owed, "device {d} may not run, yet its stream translates: {}", ctx())
            }
            Entry::Other(what) => panic!("device {d}'s stream: {what}: {}", ctx()),
        }
    }
    let stray = s.hw().stray_entries();
    assert!(stray.is_empty(), "streams no device has do not abort: {stray:x?}: {}", ctx());
}

/// Every fault the IOMMU recorded goes to the service, which must attribute it to the
/// owner of the device `device_of` names; returns those devices.
fn attribute<H: TestHw>(
    s: &mut Service<'_, H>,
    now: u64,
    ctx: &dyn Fn() -> String,
    device_of: impl Fn(&iommu_pd::FaultInput) -> Option<usize>,
) -> BTreeSet<usize> {
    let mut devices = BTreeSet::new();
    for f in s.hw_mut().faults(now) {
        let d = device_of(&f).unwrap_or_else(|| panic!("a fault no device made: {f:x?}: {}", ctx()));
        let unattributed = s.stats().unattributed_faults;
        let told = s.record_fault(f);
        assert_eq!(told, Some(ClientId(DEVICES[d].owner as u32)), "fault {f:x?} of device {d}: {}", ctx());
        assert_eq!(s.stats().unattributed_faults, unattributed, "{}", ctx());
        devices.insert(d);
    }
    devices
}

/// The physical ranges of a capability subtree, before it goes.
pub fn pages_of_subtree(m: &Model, root: usize) -> Vec<(u64, u64)> {
    (0..m.caps.len())
        .filter(|&i| m.live(i).is_some() && m.descends(i, root))
        .map(|i| (m.caps[i].as_ref().unwrap().pa, m.caps[i].as_ref().unwrap().len))
        .collect()
}

/// Invariant 4 for a revocation answered `Ok`: no device has a translation to memory of
/// the gone capabilities unless another live capability of its owner covers it.
pub fn assert_gone<H: TestHw>(s: &Service<'_, H>, m: &Model, gone: &[(u64, u64)], ctx: &dyn Fn() -> String) {
    for (d, table) in &hw_translations(s) {
        for (iova, (pa, r)) in table {
            let in_gone = gone.iter().any(|(base, len)| *pa >= *base && *pa < base + len);
            assert!(
                !in_gone || m.allows(DEVICES[*d].owner, *d, *pa, *r),
                "device {d} still translates {iova:#x} to revoked {pa:#x}: {}",
                ctx()
            );
        }
    }
}
