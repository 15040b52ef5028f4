//! Deep device trees through the service, with every path that changes an index at once
//! or walks one while changing it: two devices sharing the index's pools, each with
//! hundreds of mappings (trees with two inner levels, the finger at their right edge);
//! MAPs of 1 to 3 pages from the allocator (above the highest, or in the lowest gap that
//! fits once the window's top is taken: a walk) and at IOVAs that may overlap (the
//! service's search, `floor`), UNMAPs of the highest, the lowest and any; loans the
//! client makes itself (GRANT) mapped among its own mappings and REVOKEd (a walk of both
//! devices' indexes from where each batch of removals ended), now and then with the
//! IOMMU failing an unmap; queued batches of UNMAPs, the highest first, whose sync fails
//! (the removals filed again); and teardowns. After every step the audit (which checks
//! each index's order, counts and finger against the mapping table) holds, every answer
//! is the reference's, QUERY_MAPPING's n-th (the index's `select`) is the reference's
//! n-th, and every 50 steps what each device reaches is exactly the reference's.
//! `INDEX_ATTACK_SEED` makes other runs.

mod common;

use std::collections::BTreeMap;

use common::queue::{completions, post};
use common::random::Rng;
use common::{call, ModelHw, PAGE};
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};

const SLOTS: usize = 900;
const DEVICES: usize = 2;
const WINDOW: u64 = 0x1000_0000;
/// Pages of each device's window: fewer than its mappings of 1 to 3 pages can take, so
/// that it fills, and the allocator's first fit and `NoIova` come into play.
const SPAN: u64 = 800;
const END: u64 = WINDOW + SPAN * PAGE;
/// Pages of the client's memory.
const MEMORY: u64 = 64;

fn config() -> Config<'static> {
    static CLIENTS: [ClientConfig; 1] =
        [ClientConfig { name: "drv", max_mappings: SLOTS as u32, max_pages: 1 << 20, max_grants: 8 }];
    static DEVS: [DeviceConfig; DEVICES] = [
        DeviceConfig {
            name: "a",
            stream: 8,
            extra_streams: &[],
            owner: 0,
            iova_base: WINDOW,
            iova_size: SPAN * PAGE,
            resume_allowed: true,
        },
        DeviceConfig {
            name: "b",
            stream: 9,
            extra_streams: &[],
            owner: 0,
            iova_base: WINDOW,
            iova_size: SPAN * PAGE,
            resume_allowed: true,
        },
    ];
    static REGIONS: [RegionConfig; 1] = [RegionConfig { name: "mem", pa: 0x4000_0000, size: MEMORY * PAGE }];
    static CAPS: [CapConfig; 1] = [CapConfig {
        client: 0,
        region: 0,
        offset: 0,
        len: MEMORY * PAGE,
        rights: Rights::READ_WRITE,
        devices: 0b11,
        grant_to: 0b1,
    }];
    Config {
        clients: &CLIENTS,
        devices: &DEVS,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10 },
    }
}

fn unmap_req(d: usize, iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(d as u32), iovas, count: 1 }
}

/// What the reference holds: each device's mappings (IOVA to length and the handle
/// mapped), and the loans (grant handle to the handle the client maps it by).
#[derive(Default)]
struct Reference {
    live: [BTreeMap<u64, (u64, u32)>; DEVICES],
    loans: BTreeMap<u32, u32>,
}

impl Reference {
    fn len(&self) -> usize {
        self.live.iter().map(BTreeMap::len).sum()
    }

    /// Where the allocator puts `len` bytes on `d`: just above the highest mapping if it
    /// fits below the window's end, otherwise the lowest gap that fits.
    fn alloc(&self, d: usize, len: u64) -> Option<u64> {
        let bump = self.live[d].last_key_value().map_or(WINDOW, |(k, (l, _))| k + l);
        if bump + len <= END {
            return Some(bump);
        }
        let mut candidate = WINDOW;
        for (&k, &(l, _)) in &self.live[d] {
            if candidate + len <= k {
                return Some(candidate);
            }
            candidate = candidate.max(k + l);
        }
        (candidate + len <= END).then_some(candidate)
    }

    /// Does `[iova, iova + len)` overlap a mapping of `d`?
    fn overlaps(&self, d: usize, iova: u64, len: u64) -> bool {
        self.live[d].range(..iova + len).next_back().is_some_and(|(k, (l, _))| k + l > iova)
    }

    /// The pages device `d` should reach.
    fn pages(&self, d: usize) -> Vec<u64> {
        self.live[d].iter().flat_map(|(&k, &(l, _))| (0..l / PAGE).map(move |p| k + p * PAGE)).collect()
    }
}

/// RESUME of both devices: every removal the IOMMU did not confirm is retried, and is.
fn resume_all(s: &mut Service<'_, ModelHw>, what: &str) {
    for d in 0..DEVICES {
        assert_eq!(call(s, 0, Request::Resume { device: DeviceId(d as u32) }), Reply::ok(&[]), "{what}: RESUME {d}");
    }
}

/// The audit, every mapping's rank against QUERY_MAPPING (a few at random, and the last),
/// and, when `reach`, what each device reaches.
fn verify(s: &mut Service<'_, ModelHw>, re: &Reference, r: &mut Rng, reach: bool, what: &str) {
    s.audit().unwrap_or_else(|e| panic!("{what}: {e}"));
    let order: Vec<(usize, u64)> = (0..DEVICES).flat_map(|d| re.live[d].keys().map(move |&k| (d, k))).collect();
    let n = order.len() as u64;
    for k in [r.below(n + 1), r.below(n + 1), n.saturating_sub(1), n] {
        let got = match call(s, 0, Request::QueryMapping { index: k }) {
            Reply::Ok { values, .. } => Some((values[0] as usize, values[1])),
            Reply::Err(ErrorCode::NotMapped) => None,
            other => panic!("{what}: QUERY_MAPPING {k}: {other:?}"),
        };
        assert_eq!(got, order.get(k as usize).copied(), "{what}: QUERY_MAPPING {k}");
    }
    if reach {
        for d in 0..DEVICES {
            let reached: Vec<u64> = s.hw().reachable(d).into_keys().collect();
            assert_eq!(reached, re.pages(d), "{what}: device {d} reaches");
        }
    }
}

#[test]
fn deep_trees_under_revoke_failed_syncs_and_teardown_agree_with_the_reference() {
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(1, DEVICES, 16, SLOTS)>::default())).storage();
    let mut s = Service::new(ModelHw::default(), config(), storage).unwrap();
    let mut q = common::queue::region();
    // (`INDEX_ATTACK_SEED` for other runs.)
    let seed: u64 = std::env::var("INDEX_ATTACK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut r = Rng(0x1dea_5eed + 2 * seed);
    let mut re = Reference::default();
    let (mut peak, mut revoked, mut refiled, mut torn, mut gaps, mut refused) = (0, 0, 0, 0, 0, 0);
    for step in 0..4_000 {
        let what = format!("step {step}");
        let d = r.below(DEVICES as u64) as usize;
        // Waves: towards 850 mappings, then towards a few; a teardown after every other.
        let growing = (step / 1_000) % 2 == 0;
        let roll = if step % 2_000 == 1_999 { 99 } else { r.below(99) };
        let top = re.live[d].keys().next_back().copied();
        if roll < if growing { 75 } else { 40 } && re.len() < SLOTS - 40 {
            // MAPs (one to three while growing) of 1 to 3 pages of the client's memory or
            // of a loan's page; at the allocator's IOVA (above the highest, or once the
            // window's top is taken the lowest gap that fits) or at a page of the window
            // that may overlap a mapping (the service's search, `floor`).
            for _ in 0..if growing { 1 + r.below(3) } else { 1 } {
                // (A quarter of them of a loan.)
                let loan =
                    re.loans.values().nth(r.below(re.loans.len().max(1) as u64) as usize).filter(|_| r.below(4) == 0);
                let handle = loan.copied().unwrap_or(0);
                let len = if handle == 0 { (1 + r.below(3)) * PAGE } else { PAGE };
                let offset = if handle == 0 { r.below(MEMORY - 2) * PAGE } else { 0 };
                let top = re.live[d].last_key_value().map_or(WINDOW, |(k, (l, _))| k + l);
                let iova = (r.below(4) == 0).then(|| WINDOW + r.below((top - WINDOW) / PAGE + 4) * PAGE);
                let req = Request::Map {
                    cap: Handle(handle),
                    device: DeviceId(d as u32),
                    offset,
                    len,
                    iova,
                    rights: Rights::READ,
                };
                let want = match iova {
                    Some(v) if v + len > END => Err(ErrorCode::OutOfRange),
                    Some(v) if re.overlaps(d, v, len) => Err(ErrorCode::Overlap),
                    Some(v) => Ok(v),
                    None => re.alloc(d, len).ok_or(ErrorCode::NoIova),
                };
                let reply = call(&mut s, 0, req);
                match want {
                    Ok(at) => {
                        assert_eq!(reply, Reply::ok(&[at]), "{what}: {req:?}");
                        re.live[d].insert(at, (len, handle));
                        gaps += usize::from(iova.is_none() && at < top);
                    }
                    Err(e) => {
                        assert_eq!(reply, Reply::Err(e), "{what}: {req:?}");
                        refused += 1;
                    }
                }
            }
        } else if roll < 78 {
            // UNMAP of the highest, the lowest, any, or one not mapped.
            let n = re.live[d].len() as u64;
            let key = match r.below(4) {
                0 => top,
                1 => re.live[d].keys().next().copied(),
                2 => re.live[d].keys().nth(r.below(n.max(1)) as usize).copied(),
                _ => Some(END),
            };
            let iova = key.unwrap_or(WINDOW);
            let want =
                if re.live[d].remove(&iova).is_some() { Reply::ok(&[]) } else { Reply::Err(ErrorCode::NotMapped) };
            assert_eq!(call(&mut s, 0, unmap_req(d, iova)), want, "{what}: UNMAP {iova:#x}");
        } else if roll < 81 && re.loans.len() < 6 {
            // A loan of one page to itself, for both devices.
            let req = Request::Grant {
                cap: Handle(0),
                to: ClientId(0),
                offset: r.below(MEMORY) * PAGE,
                len: PAGE,
                rights: Rights::READ,
                devices: 0b11,
            };
            let Reply::Ok { values, .. } = call(&mut s, 0, req) else { panic!("{what}: GRANT refused") };
            re.loans.insert(values[0] as u32, values[1] as u32);
        } else if roll < 84 && !re.loans.is_empty() {
            // REVOKE of a loan: its mappings go from both devices, the rest stay. Now and
            // then the IOMMU fails one of its unmaps: `Hardware`, and RESUME confirms.
            let grant = *re.loans.keys().nth(r.below(re.loans.len() as u64) as usize).unwrap();
            let lent = re.loans.remove(&grant).unwrap();
            let fail = r.below(3) == 0;
            s.hw_mut().fail_next = fail.then_some("unmap");
            let reply = call(&mut s, 0, Request::Revoke { grant: Handle(grant) });
            let had: usize = re.live.iter().map(|l| l.values().filter(|&&(_, h)| h == lent).count()).sum();
            if fail && had > 0 {
                assert_eq!(reply, Reply::Err(ErrorCode::Hardware), "{what}: REVOKE with a failed unmap");
                s.audit().unwrap_or_else(|e| panic!("{what}: pending after REVOKE: {e}"));
                resume_all(&mut s, &what);
            } else {
                s.hw_mut().fail_next = None;
                assert_eq!(reply, Reply::ok(&[]), "{what}: REVOKE");
            }
            for l in &mut re.live {
                l.retain(|_, &mut (_, h)| h != lent);
            }
            revoked += had;
        } else if roll < 95 {
            // A queued batch of UNMAPs of this device, the highest first mostly, and of
            // one not mapped; half the time its sync fails: every one answers
            // `Hardware`, its mapping filed again and pending; RESUME confirms them.
            let k = 1 + r.below(if growing { 2 } else { 12 }) as usize;
            let mut tags = Vec::new();
            let mut gone = Vec::new();
            let mut keys: Vec<u64> = re.live[d].keys().rev().copied().collect();
            for tag in 0..k as u64 {
                let iova = if keys.is_empty() || r.below(8) == 0 {
                    END
                } else if r.below(3) == 0 {
                    keys.remove(r.below(keys.len() as u64) as usize)
                } else {
                    keys.remove(0)
                };
                assert!(post(&q, tag, unmap_req(d, iova)), "{what}: posted");
                tags.push(tag);
                gone.push(iova);
            }
            let fail = r.below(2) == 0;
            s.hw_mut().fail_next = fail.then_some("sync");
            assert_eq!(s.serve_queue(0, &q), k, "{what}: the batch taken");
            let done = completions(&q, &tags);
            let any = gone.iter().any(|iova| re.live[d].contains_key(iova));
            for ((_, reply), iova) in done.iter().zip(&gone) {
                let want = match re.live[d].remove(iova) {
                    None => Reply::Err(ErrorCode::NotMapped),
                    Some(_) if fail => Reply::Err(ErrorCode::Hardware),
                    Some(_) => Reply::ok(&[]),
                };
                assert_eq!(*reply, want, "{what}: queued UNMAP {iova:#x}");
            }
            if fail && any {
                s.audit().unwrap_or_else(|e| panic!("{what}: after the failed sync: {e}"));
                refiled += 1;
                resume_all(&mut s, &what);
            }
            s.hw_mut().fail_next = None;
        } else if roll == 99 {
            // The client torn down and made ready: every mapping and loan gone, and its queue
            // with them.
            assert_eq!(s.client_torn_down(0), Ok(()), "{what}: teardown");
            s.audit().unwrap_or_else(|e| panic!("{what}: torn down: {e}"));
            assert_eq!(s.client_ready(0), Ok(()), "{what}: ready");
            // Its queue starts over, as a restarted client's does.
            q = common::queue::region();
            re = Reference::default();
            torn += 1;
        }
        peak = peak.max(re.live.iter().map(BTreeMap::len).max().unwrap());
        verify(&mut s, &re, &mut r, step % 50 == 0, &what);
    }
    // Deep trees (more than 256 mappings: two inner levels) on the way, with every path.
    assert!(
        peak > 300 && revoked > 200 && refiled > 50 && torn == 2 && gaps > 100 && refused > 100,
        "peak {peak}, revoked {revoked}, refiled {refiled}, torn {torn}, first fits {gaps}, refused {refused}"
    );
}
