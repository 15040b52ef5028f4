//! Model-based test: long random sequences of requests from several clients, many of them
//! hostile (other clients' handles and devices, wrapped and unaligned ranges, double
//! unmaps, grant chains and loops, revokes of things never granted), checked after every
//! step against a reference model of capabilities written independently of the service:
//!
//! 1. every page any device can reach lies inside a live capability (in the model) held by
//!    that device's owner, for that device, with at least the mapping's rights;
//! 2. what the IOMMU holds (tables and cached translations) equals what the service
//!    believes it mapped, pending removals included;
//! 3. a refused request changes nothing the IOMMU holds, unless it was refused because
//!    the IOMMU failed;
//! 4. after REVOKE, RELEASE or UNMAP answers `Ok`, the removed access is gone from the
//!    IOMMU, cached translations included.
//!
//! The IOMMU fails too: at random steps one call (map, unmap, retry, block, enable) fails,
//! the way the model IOMMU fails (a failed unmap leaves its translations cached), and
//! clients are torn down and made ready again at random. The invariants hold after each.
//!
//! `make test` runs 10^5 steps; `cargo test -p iommu-pd --release -- --ignored` runs 10^6.

mod common;

use std::collections::BTreeMap;

use common::*;
use iommu_pd::Service;
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};

/// A capability as the model sees it.
#[derive(Debug, Clone)]
struct MCap {
    holder: usize,
    pa: u64,
    len: u64,
    rights: Rights,
    devices: u64,
    /// Clients it may be granted to: its root's, from the description.
    grant_to: u64,
    parent: Option<usize>,
}

/// The test description's capabilities, with delegation bounded differently for each:
/// NET's buffers to anyone, its read-only share (for its `nic` alone) to itself and BLK,
/// so that a self-grant or a round trip could try to widen it to `nic2`; BLK's to NET
/// alone, EVIL's to BLK alone.
fn model_caps() -> &'static [iommu_pd::CapConfig] {
    let mut caps = CAPS;
    caps[0].grant_to = u64::MAX;
    caps[1].grant_to = 1 << NET | 1 << BLK;
    caps[2].grant_to = 1 << NET;
    caps[3].grant_to = 1 << BLK;
    Box::leak(Box::new(caps))
}

#[derive(Default)]
struct Model {
    caps: Vec<Option<MCap>>,
    /// (client, handle) -> model cap index, for capabilities.
    handles: BTreeMap<(usize, u32), usize>,
    /// (client, grant handle) -> model cap index, for grants made.
    grants: BTreeMap<(usize, u32), usize>,
}

impl Model {
    fn new() -> Self {
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

    fn live(&self, i: usize) -> Option<&MCap> {
        self.caps.get(i).and_then(Option::as_ref)
    }

    fn descends(&self, mut i: usize, root: usize) -> bool {
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

    fn remove_subtree(&mut self, root: usize) {
        let doomed: Vec<usize> =
            (0..self.caps.len()).filter(|&i| self.live(i).is_some() && self.descends(i, root)).collect();
        for i in &doomed {
            self.caps[*i] = None;
        }
        self.handles.retain(|_, v| !doomed.contains(v));
        self.grants.retain(|_, v| !doomed.contains(v));
    }

    /// The description's capability that `i` derives from.
    fn root(&self, mut i: usize) -> &MCap {
        while let Some(p) = self.live(i).and_then(|c| c.parent) {
            i = p;
        }
        self.live(i).expect("a live root")
    }

    /// May `device` (owned by `owner`) reach physical page `pa` with `rights`?
    fn allows(&self, owner: usize, device: usize, pa: u64, rights: Rights) -> bool {
        self.caps.iter().flatten().any(|c| {
            c.holder == owner
                && c.devices & (1 << device) != 0
                && c.rights.contains(rights)
                && pa >= c.pa
                && pa + PAGE <= c.pa + c.len
        })
    }
}

/// xorshift64*: deterministic, seedable, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn pages(s: &Service<'static, ModelHw>) -> BTreeMap<usize, BTreeMap<u64, (u64, Rights)>> {
    let mut out: BTreeMap<usize, BTreeMap<u64, (u64, Rights)>> = BTreeMap::new();
    s.for_each_mapped_page(|d, iova, pa, r| {
        out.entry(d).or_default().insert(iova, (pa, r));
    });
    out
}

fn random_request(rng: &mut Rng, known_iovas: &[(usize, u64, u64)]) -> Request {
    let offsets = [0, 0x1000, 0x2000, 0x3000, 0x800, 0xf000, u64::MAX - 0xfff, 0x1_0000];
    let lens = [0x1000, 0x2000, 0x4000, 0x800, 0, 0x1_0000, !0xfff, 0x1_1000];
    let rights = [Rights::READ, Rights::WRITE, Rights::READ_WRITE];
    match rng.below(10) {
        0..=3 => Request::Map {
            cap: Handle(rng.below(6) as u32),
            device: DeviceId(rng.below(5) as u32),
            offset: rng.pick(&offsets),
            len: rng.pick(&lens),
            iova: match rng.below(4) {
                0 => None,
                1 => Some(IOVA_BASE + rng.below(16) * 0x1000),
                2 => Some(rng.pick(&[0, u64::MAX - 0xfff, IOVA_BASE + 0x800, IOVA_BASE + IOVA_SIZE - 0x1000])),
                _ => known_iovas.get(rng.below(known_iovas.len().max(1) as u64) as usize).map(|k| k.1),
            },
            rights: rng.pick(&rights),
        },
        4..=5 => {
            let mut iovas = [0; MAX_UNMAP_RANGES];
            let count = 1 + rng.below(3) as usize;
            let mut device = rng.below(5) as u32;
            for v in iovas.iter_mut().take(count) {
                *v = match known_iovas.get(rng.below(known_iovas.len().max(1) as u64 + 2) as usize) {
                    Some(&(d, iova, len)) => {
                        device = d as u32;
                        iova + if rng.below(8) == 0 { len / 2 } else { 0 }
                    }
                    None => IOVA_BASE + rng.below(16) * 0x1000,
                };
            }
            Request::Unmap { device: DeviceId(device), iovas, count }
        }
        6..=7 => Request::Grant {
            cap: Handle(rng.below(8) as u32),
            to: ClientId(rng.below(4) as u32),
            offset: rng.pick(&offsets),
            len: rng.pick(&lens),
            rights: rng.pick(&rights),
            devices: rng.pick(&[0b1, 0b10, 0b100, 0b1000, 0b1001, 0b111, 0]),
        },
        8 => match rng.below(4) {
            0 => Request::Resume { device: DeviceId(rng.below(5) as u32) },
            1 => Request::Release { cap: Handle(rng.below(10) as u32) },
            _ => Request::Revoke { grant: Handle(rng.below(10) as u32) },
        },
        _ => Request::Query,
    }
}

/// The IOMMU calls a step may make fail.
const HW_FAILURES: [&str; 5] = ["map", "unmap", "retry_unmap", "block", "enable"];

/// A request a well-behaved driver might make: its own handles and devices, aligned
/// ranges inside the capability.
fn plausible_request(rng: &mut Rng, m: &Model, client: usize, known: &[(usize, u64, u64)]) -> Option<Request> {
    let own: Vec<(u32, usize)> =
        m.handles.iter().filter(|((c, _), _)| *c == client).map(|((_, h), i)| (*h, *i)).collect();
    let devices: Vec<usize> = (0..DEVICES.len()).filter(|d| DEVICES[*d].owner == client).collect();
    match rng.below(4) {
        0 | 1 => {
            let (h, i) = *own.get(rng.below(own.len().max(1) as u64) as usize)?;
            let cap = m.live(i)?;
            let pages = cap.len / PAGE;
            if pages == 0 {
                return None;
            }
            let first = rng.below(pages);
            let n = 1 + rng.below((pages - first).min(4));
            let usable: Vec<usize> = devices.iter().copied().filter(|d| cap.devices & (1 << d) != 0).collect();
            let device = *usable.get(rng.below(usable.len().max(1) as u64) as usize)?;
            let rights =
                if cap.rights.contains(Rights::WRITE) && rng.below(2) == 0 { cap.rights } else { Rights::READ };
            let rights = if cap.rights.contains(rights) { rights } else { cap.rights };
            Some(Request::Map {
                cap: Handle(h),
                device: DeviceId(device as u32),
                offset: first * PAGE,
                len: n * PAGE,
                iova: None,
                rights,
            })
        }
        2 => {
            let mine: Vec<&(usize, u64, u64)> = known.iter().filter(|(d, _, _)| DEVICES[*d].owner == client).collect();
            let &&(d, iova, _) = mine.get(rng.below(mine.len().max(1) as u64) as usize)?;
            let mut iovas = [0; MAX_UNMAP_RANGES];
            iovas[0] = iova;
            Some(Request::Unmap { device: DeviceId(d as u32), iovas, count: 1 })
        }
        _ => {
            if rng.below(6) == 0 {
                // Give back something received (or try to give back a boot capability).
                let (h, _) = *own.get(rng.below(own.len().max(1) as u64) as usize)?;
                return Some(Request::Release { cap: Handle(h) });
            }
            if rng.below(3) == 0 {
                let grants: Vec<u32> = m.grants.keys().filter(|(c, _)| *c == client).map(|(_, g)| *g).collect();
                let g = *grants.get(rng.below(grants.len().max(1) as u64) as usize)?;
                return Some(Request::Revoke { grant: Handle(g) });
            }
            let (h, i) = *own.get(rng.below(own.len().max(1) as u64) as usize)?;
            let cap = m.live(i)?;
            let to = rng.below(3) as usize;
            let theirs: u64 = DEVICES.iter().enumerate().filter(|(_, d)| d.owner == to).fold(0, |a, (i, _)| a | 1 << i);
            let pages = cap.len / PAGE;
            if pages == 0 {
                return None;
            }
            let first = rng.below(pages);
            let n = 1 + rng.below(pages - first);
            Some(Request::Grant {
                cap: Handle(h),
                to: ClientId(to as u32),
                offset: first * PAGE,
                len: n * PAGE,
                rights: cap.rights,
                devices: theirs,
            })
        }
    }
}

/// Every translation the IOMMU holds, tables and cache, per device.
fn hw_translations(s: &Service<'static, ModelHw>) -> BTreeMap<usize, BTreeMap<u64, (u64, Rights)>> {
    (0..DEVICES.len()).map(|d| (d, s.hw().translations(d))).filter(|(_, t)| !t.is_empty()).collect()
}

/// Every translation a device can use right now.
fn hw_reachable(s: &Service<'static, ModelHw>) -> BTreeMap<usize, BTreeMap<u64, (u64, Rights)>> {
    (0..DEVICES.len()).map(|d| (d, s.hw().reachable(d))).filter(|(_, t)| !t.is_empty()).collect()
}

fn run(seed: u64, steps: usize) -> usize {
    let cfg = iommu_pd::Config { caps: model_caps(), ..config() };
    let mut s = Service::new(ModelHw::default(), cfg, storage()).unwrap();
    let mut m = Model::new();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut successes = 0;
    // (device, iova, len) of mappings the service made, for plausible unmaps.
    let mut known: Vec<(usize, u64, u64)> = Vec::new();
    // Clients torn down and not yet ready again.
    let mut torn = [false; 3];
    for step in 0..steps {
        let client = rng.below(3) as usize;
        let req = if rng.below(10) < 6 { plausible_request(&mut rng, &m, client, &known) } else { None }
            .unwrap_or_else(|| random_request(&mut rng, &known));
        let mut mrs = [0; MAX_MRS];
        let (label, n) = req.encode(&mut mrs);
        // One IOMMU call of this step fails, now and then.
        let failure = (rng.below(16) == 0).then(|| rng.pick(&HW_FAILURES));
        s.hw_mut().fail_next = failure;
        // Now and then a client is torn down (it crashed) or made ready (restarted)
        // instead of making a request.
        if rng.below(50) == 0 {
            let c = rng.below(3) as usize;
            // Teardown removes many mappings at once: fail it more often.
            let failure = if rng.below(3) == 0 { Some(rng.pick(&HW_FAILURES)) } else { failure };
            s.hw_mut().fail_next = failure;
            // Mostly a client that is down comes back, or a running one goes down.
            let r = if torn[c] == (rng.below(4) != 0) {
                let r = s.client_ready(c);
                torn[c] &= r.is_err();
                r
            } else {
                let r = s.client_torn_down(c);
                torn[c] |= r.is_ok();
                r
            };
            s.hw_mut().fail_next = None;
            check(&s, &m, &|| format!("seed {seed} step {step}: teardown/ready of {c} -> {r:?} ({failure:?})"));
            continue;
        }
        let before = (hw_translations(&s), s.hw().enabled.clone());
        let reply = s.handle(client, label, &mrs[..n]);
        s.hw_mut().fail_next = None;
        let ctx = || format!("seed {seed} step {step}: client {client} {req:?} -> {reply:?} (failing: {failure:?})");
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
                assert_eq!((hw_translations(&s), s.hw().enabled.clone()), before, "refused but changed: {}", ctx())
            }
            (Reply::Ok { values, .. }, Request::Map { device, len, .. }) => {
                successes += 1;
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
                    for p in 0..len / PAGE {
                        assert!(!s.hw().translations(d).contains_key(&(iova + p * PAGE)), "{}", ctx());
                    }
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
                let root = m.root(parent);
                assert!(to != root.holder || devices & !root.devices == 0, "widened to other devices: {}", ctx());
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
                let before = pages_of_subtree(&m, root);
                m.remove_subtree(root);
                assert_gone(&s, &m, &before, &ctx);
            }
            (Reply::Ok { .. }, Request::Release { cap }) => {
                successes += 1;
                let root = *m.handles.get(&(client, cap.0)).unwrap_or_else(|| panic!("released a non-cap: {}", ctx()));
                assert!(m.live(root).unwrap().parent.is_some(), "released a boot capability: {}", ctx());
                let before = pages_of_subtree(&m, root);
                m.remove_subtree(root);
                assert_gone(&s, &m, &before, &ctx);
            }
            (Reply::Ok { .. }, _) => {}
        }
        check(&s, &m, &ctx);
        let hw = hw_translations(&s);
        known.retain(|(d, iova, _)| hw.get(d).is_some_and(|t| t.contains_key(iova)));
    }
    successes
}

/// Invariants 1 and 2, after every step, and the rule behind them: a translation whose
/// removal the IOMMU did not confirm is never usable.
fn check(s: &Service<'static, ModelHw>, m: &Model, ctx: &dyn Fn() -> String) {
    assert_eq!(hw_translations(s), pages(s), "IOMMU and service disagree: {}", ctx());
    for (d, stale) in &s.hw().stale {
        let enabled = s.hw().enabled.get(d).copied().unwrap_or(false);
        assert!(stale.is_empty() || !enabled, "device {d} enabled over stale translations {stale:x?}: {}", ctx());
    }
    for (d, table) in &hw_reachable(s) {
        let owner = DEVICES[*d].owner;
        for (iova, (pa, r)) in table {
            assert!(
                m.allows(owner, *d, *pa, *r),
                "device {d} reaches {pa:#x} ({r:?}) at {iova:#x} without a capability: {}",
                ctx()
            );
        }
    }
}

/// The physical ranges of a capability subtree, before it goes.
fn pages_of_subtree(m: &Model, root: usize) -> Vec<(u64, u64)> {
    (0..m.caps.len())
        .filter(|&i| m.live(i).is_some() && m.descends(i, root))
        .map(|i| (m.caps[i].as_ref().unwrap().pa, m.caps[i].as_ref().unwrap().len))
        .collect()
}

/// Invariant 4 for a revocation answered `Ok`: no device has a translation to memory of
/// the gone capabilities unless another live capability of its owner covers it.
fn assert_gone(s: &Service<'static, ModelHw>, m: &Model, gone: &[(u64, u64)], ctx: &dyn Fn() -> String) {
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

#[test]
fn hundred_thousand_random_steps() {
    let mut ok = 0;
    for seed in 0..100 {
        ok += run(seed, 1000);
    }
    // The sequences must do something, not only be refused.
    assert!(ok > 10_000, "only {ok} requests succeeded");
}

#[test]
#[ignore = "long: a million steps; run with --release -- --ignored"]
fn million_random_steps() {
    for seed in 1000..2000 {
        run(seed, 1000);
    }
}
