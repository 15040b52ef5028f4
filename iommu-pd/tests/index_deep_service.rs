//! Deep device trees through the service, with every path that changes an index at once
//! or walks one while changing it: three devices sharing the index's pools, each with
//! hundreds of mappings (trees with two inner levels, the finger at their right edge),
//! two of a lender's and one of a borrower's; MAPs of 1 to 3 pages from the allocator
//! (above the highest, or in the lowest gap that fits once the window's top is taken: a
//! walk) and at IOVAs that may overlap (the service's search, `floor`), UNMAPs of the
//! highest, the lowest and any; loans of a page, to the lender itself for its devices and
//! to the borrower for its own, mapped among their other mappings and REVOKEd by the
//! lender (a walk of each device's index from where each batch of removals ended), now
//! and then with the IOMMU failing an unmap, or RELEASEd by the borrower; queued batches
//! of UNMAPs, the highest first, whose sync fails (the removals filed again); and the
//! lender's teardowns (its devices emptied, its loans' mappings gone from the borrower's
//! tree, the borrower's own kept). After every step the audit (which checks each index's
//! order, counts and finger against the mapping table) holds, every answer is the
//! reference's, QUERY_MAPPING's n-th (the index's `select`) is the reference's n-th for
//! both clients, and every 50 steps what each device reaches is exactly the reference's.
//! `INDEX_ATTACK_SEED` makes other runs.

mod common;

use std::collections::BTreeMap;

use common::queue::{completions, post};
use common::random::Rng;
use common::{call, ModelHw, PAGE};
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};

/// The lender's devices, and the borrower's.
const DEVICES: usize = 3;
const LENDER: usize = 0;
const BORROWER: usize = 1;
const LENDER_SLOTS: usize = 900;
const BORROWER_SLOTS: usize = 400;
const SLOTS: usize = LENDER_SLOTS + BORROWER_SLOTS;
const WINDOW: u64 = 0x1000_0000;
/// Pages of each device's window: fewer than its mappings of 1 to 3 pages can take, so
/// that it fills, and the allocator's first fit and `NoIova` come into play.
const SPAN: u64 = 640;
const END: u64 = WINDOW + SPAN * PAGE;
/// Pages of each client's memory.
const MEMORY: u64 = 64;

fn owner(d: usize) -> usize {
    if d < 2 {
        LENDER
    } else {
        BORROWER
    }
}

fn config() -> Config<'static> {
    static CLIENTS: [ClientConfig; 2] = [
        ClientConfig { name: "lender", max_mappings: LENDER_SLOTS as u32, max_pages: 1 << 20, max_grants: 8 },
        ClientConfig { name: "borrower", max_mappings: BORROWER_SLOTS as u32, max_pages: 1 << 20, max_grants: 0 },
    ];
    const fn device(name: &'static str, stream: u32, owner: usize) -> DeviceConfig {
        DeviceConfig {
            name,
            stream,
            extra_streams: &[],
            owner,
            iova_base: WINDOW,
            iova_size: SPAN * PAGE,
            resume_allowed: true,
        }
    }
    static DEVS: [DeviceConfig; DEVICES] = [device("a", 8, LENDER), device("b", 9, LENDER), device("c", 10, BORROWER)];
    static REGIONS: [RegionConfig; 2] = [
        RegionConfig { name: "lent", pa: 0x4000_0000, size: MEMORY * PAGE },
        RegionConfig { name: "own", pa: 0x5000_0000, size: MEMORY * PAGE },
    ];
    static CAPS: [CapConfig; 2] = [
        CapConfig {
            client: LENDER,
            region: 0,
            offset: 0,
            len: MEMORY * PAGE,
            rights: Rights::READ_WRITE,
            devices: 0b011,
            grant_to: 1 << LENDER | 1 << BORROWER,
        },
        CapConfig {
            client: BORROWER,
            region: 1,
            offset: 0,
            len: MEMORY * PAGE,
            rights: Rights::READ_WRITE,
            devices: 0b100,
            grant_to: 0,
        },
    ];
    Config {
        clients: &CLIENTS,
        devices: &DEVS,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 },
    }
}

fn unmap_req(d: usize, iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(d as u32), iovas, count: 1 }
}

/// A loan: the client that holds it and the handle it maps it by.
#[derive(Clone, Copy)]
struct Loan {
    holder: usize,
    handle: u32,
}

/// What the reference holds: each device's mappings (IOVA to length, and the loan's
/// grant handle or `None` for the client's own memory), and the loans by grant handle.
#[derive(Default)]
struct Reference {
    live: [BTreeMap<u64, (u64, Option<u32>)>; DEVICES],
    loans: BTreeMap<u32, Loan>,
}

impl Reference {
    fn len(&self, client: usize) -> usize {
        (0..DEVICES).filter(|&d| owner(d) == client).map(|d| self.live[d].len()).sum()
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

    /// Loan `grant` gone: its mappings, on every device; how many there were.
    fn drop_loan(&mut self, grant: u32) -> usize {
        self.loans.remove(&grant);
        let before: usize = self.live.iter().map(BTreeMap::len).sum();
        for l in &mut self.live {
            l.retain(|_, &mut (_, g)| g != Some(grant));
        }
        before - self.live.iter().map(BTreeMap::len).sum::<usize>()
    }
}

/// RESUME of every device: each removal the IOMMU did not confirm is retried, and is.
fn resume_all(s: &mut Service<'_, ModelHw>, what: &str) {
    for d in 0..DEVICES {
        let reply = call(s, owner(d), Request::Resume { device: DeviceId(d as u32) });
        assert_eq!(reply, Reply::ok(&[]), "{what}: RESUME {d}");
    }
}

/// The audit, each client's mappings' ranks against QUERY_MAPPING (a few at random, and
/// the last), and, when `reach`, what each device reaches.
fn verify(s: &mut Service<'_, ModelHw>, re: &Reference, r: &mut Rng, reach: bool, what: &str) {
    s.audit().unwrap_or_else(|e| panic!("{what}: {e}"));
    for client in [LENDER, BORROWER] {
        let order: Vec<(usize, u64)> = (0..DEVICES)
            .filter(|&d| owner(d) == client)
            .flat_map(|d| re.live[d].keys().map(move |&k| (d, k)))
            .collect();
        let n = order.len() as u64;
        for k in [r.below(n + 1), r.below(n + 1), n.saturating_sub(1), n] {
            let got = match call(s, client, Request::QueryMapping { index: k }) {
                Reply::Ok { values, .. } => Some((values[0] as usize, values[1])),
                Reply::Err(ErrorCode::NotMapped) => None,
                other => panic!("{what}: QUERY_MAPPING {k} of {client}: {other:?}"),
            };
            assert_eq!(got, order.get(k as usize).copied(), "{what}: QUERY_MAPPING {k} of {client}");
        }
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
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(2, DEVICES, 24, SLOTS)>::default())).storage();
    let mut s = Service::new(ModelHw::default(), config(), storage).unwrap();
    let mut queues = [common::queue::region(), common::queue::region()];
    // (`INDEX_ATTACK_SEED` for other runs.)
    let seed: u64 = std::env::var("INDEX_ATTACK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut r = Rng(0x1dea_5eed + 2 * seed);
    let mut re = Reference::default();
    let (mut peak, mut revoked, mut released, mut refiled, mut torn, mut gaps, mut refused) = (0, 0, 0, 0, 0, 0, 0);
    for step in 0..4_000 {
        let what = format!("step {step}");
        let d = r.below(DEVICES as u64) as usize;
        let client = owner(d);
        // Waves: towards hundreds of mappings a device, then fewer; the lender torn down
        // after every other.
        let growing = (step / 1_000) % 2 == 0;
        let roll = if step % 2_000 == 1_999 { 99 } else { r.below(99) };
        let quota = if client == LENDER { LENDER_SLOTS } else { BORROWER_SLOTS };
        if roll < if growing { 75 } else { 40 } && re.len(client) < quota - 10 {
            // MAPs (one to three while growing) of 1 to 3 pages of the client's memory or
            // of a loan's page; at the allocator's IOVA (above the highest, or once the
            // window's top is taken the lowest gap that fits) or at a page of the window
            // that may overlap a mapping (the service's search, `floor`).
            for _ in 0..if growing { 1 + r.below(3) } else { 1 } {
                // (A quarter of them of a loan the client holds.)
                let held: Vec<(u32, Loan)> =
                    re.loans.iter().filter(|(_, l)| l.holder == client).map(|(&g, &l)| (g, l)).collect();
                let loan = (r.below(4) == 0).then(|| held.get(r.below(held.len().max(1) as u64) as usize)).flatten();
                let (handle, len, offset) = match loan {
                    Some((_, l)) => (l.handle, PAGE, 0),
                    None => (0, (1 + r.below(3)) * PAGE, r.below(MEMORY - 2) * PAGE),
                };
                let top = re.live[d].last_key_value().map_or(WINDOW, |(k, (l, _))| k + l);
                let iova = (r.below(4) == 0).then(|| WINDOW + r.below((top - WINDOW) / PAGE + 4) * PAGE);
                let device = DeviceId(d as u32);
                let req = Request::Map { cap: Handle(handle), device, offset, len, iova, rights: Rights::READ };
                let want = match iova {
                    Some(v) if v + len > END => Err(ErrorCode::OutOfRange),
                    Some(v) if re.overlaps(d, v, len) => Err(ErrorCode::Overlap),
                    Some(v) => Ok(v),
                    None => re.alloc(d, len).ok_or(ErrorCode::NoIova),
                };
                let reply = call(&mut s, client, req);
                match want {
                    Ok(at) => {
                        assert_eq!(reply, Reply::ok(&[at]), "{what}: {req:?}");
                        re.live[d].insert(at, (len, loan.map(|(g, _)| *g)));
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
                0 => re.live[d].keys().next_back().copied(),
                1 => re.live[d].keys().next().copied(),
                2 => re.live[d].keys().nth(r.below(n.max(1)) as usize).copied(),
                _ => Some(END),
            };
            let iova = key.unwrap_or(WINDOW);
            let want =
                if re.live[d].remove(&iova).is_some() { Reply::ok(&[]) } else { Reply::Err(ErrorCode::NotMapped) };
            assert_eq!(call(&mut s, client, unmap_req(d, iova)), want, "{what}: UNMAP {iova:#x}");
        } else if roll < 81 && re.loans.len() < 8 {
            // A loan of one page, to the lender itself for its devices or to the borrower
            // for its own.
            let to = if r.below(2) == 0 { LENDER } else { BORROWER };
            let req = Request::Grant {
                cap: Handle(0),
                to: ClientId(to as u32),
                offset: r.below(MEMORY) * PAGE,
                len: PAGE,
                rights: Rights::READ,
                devices: if to == LENDER { 0b011 } else { 0b100 },
            };
            let Reply::Ok { values, .. } = call(&mut s, LENDER, req) else { panic!("{what}: GRANT refused") };
            re.loans.insert(values[0] as u32, Loan { holder: to, handle: values[1] as u32 });
        } else if roll < 84 && !re.loans.is_empty() {
            // REVOKE of a loan by the lender, or RELEASE by the borrower holding it: its
            // mappings go from every device, the rest stay. Now and then the IOMMU fails
            // one of its unmaps: `Hardware`, and RESUME confirms.
            let (&grant, &loan) = re.loans.iter().nth(r.below(re.loans.len() as u64) as usize).unwrap();
            let fail = r.below(3) == 0;
            s.hw_mut().fail_next = fail.then_some("unmap");
            let release = loan.holder == BORROWER && r.below(2) == 0;
            let reply = if release {
                call(&mut s, BORROWER, Request::Release { cap: Handle(loan.handle) })
            } else {
                call(&mut s, LENDER, Request::Revoke { grant: Handle(grant) })
            };
            let had = re.drop_loan(grant);
            if fail && had > 0 {
                assert_eq!(reply, Reply::Err(ErrorCode::Hardware), "{what}: a loan's end with a failed unmap");
                s.audit().unwrap_or_else(|e| panic!("{what}: pending after a loan's end: {e}"));
                resume_all(&mut s, &what);
            } else {
                s.hw_mut().fail_next = None;
                assert_eq!(reply, Reply::ok(&[]), "{what}: a loan's end (release: {release})");
            }
            if release {
                released += had;
            } else {
                revoked += had;
            }
        } else if roll < 95 {
            // A queued batch of UNMAPs of this device, the highest first mostly, and of
            // one not mapped; half the time its sync fails: every one answers
            // `Hardware`, its mapping filed again and pending; RESUME confirms them.
            let k = 1 + r.below(if growing { 2 } else { 12 }) as usize;
            let q = &queues[client];
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
                assert!(post(q, tag, unmap_req(d, iova)), "{what}: posted");
                tags.push(tag);
                gone.push(iova);
            }
            let fail = r.below(2) == 0;
            s.hw_mut().fail_next = fail.then_some("sync");
            assert_eq!(s.serve_queue(client, q), k, "{what}: the batch taken");
            let done = completions(q, &tags);
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
            // The lender torn down and made ready: its devices' mappings gone, its loans
            // and theirs on the borrower's device too; the borrower's own stay. Its queue
            // starts over, as a restarted client's does.
            assert_eq!(s.client_torn_down(LENDER), Ok(()), "{what}: teardown");
            s.audit().unwrap_or_else(|e| panic!("{what}: torn down: {e}"));
            assert_eq!(s.client_ready(LENDER), Ok(()), "{what}: ready");
            queues[LENDER] = common::queue::region();
            for grant in re.loans.keys().copied().collect::<Vec<_>>() {
                revoked += re.drop_loan(grant);
            }
            re.live[0].clear();
            re.live[1].clear();
            torn += 1;
        }
        peak = peak.max(re.live.iter().map(BTreeMap::len).min().unwrap());
        verify(&mut s, &re, &mut r, step % 50 == 0, &what);
    }
    // Deep trees (more than 200 mappings on every device at once: two inner levels where
    // they came in order) with every path taken, whatever the seed.
    assert!(
        peak > 200 && revoked > 100 && released > 20 && refiled > 50 && torn == 2 && gaps > 40 && refused > 100,
        "peak {peak}, revoked {revoked}, released {released}, refiled {refiled}, torn {torn}, first fits {gaps}, \
         refused {refused}"
    );
}
