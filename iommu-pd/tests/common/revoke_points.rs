//! REVOKE, RELEASE and a teardown under every failure the IOMMU can answer (the iommufd
//! selftests' `fail_nth`, as `failure_points` does for the queue), over any IOMMU the
//! suite runs on.
//!
//! No list links a capability to its mappings: the service marks the capabilities going
//! and walks the index of each device they name, removing 64 under one invalidation and
//! resuming the walk above each batch. The setup gives that walk what could mislead it:
//! more than a batch of a loan's mappings on one device, interleaved with mappings of a
//! capability that stays (each batch's removals merge the index's nodes under the walk's
//! resume key); the loan's mappings on the lender's second device, on a borrower's device
//! (the loan passed on) and on a third client's device (passed on again); a static
//! mapping; and two removals pending (one of the loan's, one of a capability that stays).
//! Each operation runs once per IOMMU call it makes with that call failing, then with
//! each pair.
//!
//! Judged against the test's own record of which capability made each mapping, not the
//! service's books: after the operation (and one request, before which the service
//! retries a block the IOMMU did not confirm), no device reaches a page of a capability
//! gone, and none reaches a page its books do not give it; if the operation answered
//! `Ok`, the IOMMU holds no such page (tables or a known cache); and every mapping of a
//! capability that stays is in the tables as it was made. After the owners' RESUMEs (a
//! teardown's `client_ready`), nothing gone is held anywhere, every mapping that stays is
//! reached, every device runs, each client's QUERY counts exactly the mappings that stay,
//! and the audit (no capability left marked going, no mapping naming a freed one) holds.

use std::collections::{BTreeMap, BTreeSet};

use iommu_pd::{ClientConfig, Config, Service};
use iommu_protocol::{query, DeviceId, Handle, Reply, Request, Rights};

use super::backend::TestHw;
use super::failure_points::{each_failure_point_then_each_pair, FailNth};
use super::{call, config, lend, sized_storage, BLK, EVIL, IOVA_BASE, NET, PAGE, REGIONS, STATIC_MAPS};

const NIC: usize = 0;
const DISK: usize = 1;
const EVIL_DEV: usize = 2;
const NIC2: usize = 3;

/// Quotas with room for more than a batch of removals on one device.
static CLIENTS: [ClientConfig; 3] = [
    ClientConfig { name: "net", max_mappings: 256, max_pages: 256, max_grants: 4 },
    ClientConfig { name: "blk", max_mappings: 128, max_pages: 128, max_grants: 4 },
    ClientConfig { name: "hostile", max_mappings: 32, max_pages: 32, max_grants: 4 },
];

/// Which capability made a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// Its owner's capability from the description (NET's handle 0, BLK's handle 0).
    Own,
    /// The description's static mapping of the NIC.
    Static,
    /// NET's loan to itself, for both its devices: the subtree's root.
    Loan,
    /// Part of the loan, passed on to BLK for the disk.
    Child,
    /// Part of that, passed on by BLK to EVIL for its device.
    Grandchild,
}

/// One mapping the setup made.
#[derive(Debug, Clone, Copy)]
struct Rec {
    device: usize,
    iova: u64,
    pa: u64,
    rights: Rights,
    made: Made,
    /// Its owner's UNMAP was not confirmed in the setup: pending, and to go whatever the
    /// operation does.
    unmapped: bool,
}

/// What is swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// NET revokes its loan: the loan, the child and the grandchild go.
    RevokeLoan,
    /// BLK releases what it was passed: the child and the grandchild go.
    ReleaseChild,
    /// NET is torn down: its devices lose everything, and its grants (the loan, and the
    /// child it granted from the loan) go, from BLK's and EVIL's devices too.
    TearDownNet,
    /// NET revokes the child, then the loan: two REVOKEs in a row, the failures
    /// anywhere in either.
    RevokeChildThenLoan,
}

impl Op {
    /// Does the operation take `r` away (for good: a teardown's static mapping comes back
    /// with `client_ready`)?
    fn takes(self, r: &Rec) -> bool {
        match (self, r.made) {
            (Op::ReleaseChild, m) => matches!(m, Made::Child | Made::Grandchild),
            (Op::TearDownNet, Made::Static) => false,
            (Op::TearDownNet, m) => owner(r.device) == NET || matches!(m, Made::Child | Made::Grandchild),
            (_, m) => matches!(m, Made::Loan | Made::Child | Made::Grandchild),
        }
    }
}

fn owner(d: usize) -> usize {
    super::DEVICES[d].owner
}

/// The handles the setup made: NET's grant handle of the loan, and its handle of the
/// loaned capability; NET's grant handle of the child; BLK's handle of the child.
#[derive(Debug, Clone, Copy)]
struct Handles {
    loan: u32,
    child: u32,
    at_blk: u32,
}

type Svc<H> = Service<'static, FailNth<H>>;

/// MAP of one page at `offset` of `client`'s handle `h` for `device` at page `page` of the
/// window, recorded.
#[allow(clippy::too_many_arguments)]
fn map_rec<H: TestHw>(
    s: &mut Svc<H>,
    recs: &mut Vec<Rec>,
    client: usize,
    h: u32,
    device: usize,
    offset: u64,
    page: u64,
    base: u64,
    rights: Rights,
    made: Made,
) {
    let iova = IOVA_BASE + page * PAGE;
    let req =
        Request::Map { cap: Handle(h), device: DeviceId(device as u32), offset, len: PAGE, iova: Some(iova), rights };
    assert_eq!(call(s, client, req), Reply::ok(&[iova]), "setup: map {made:?} at {iova:#x} of device {device}");
    recs.push(Rec { device, iova, pa: base + offset, rights, made, unmapped: false });
}

/// The service and what it maps, with the IOMMU calls `fail_at` (counted from the end of
/// the setup) to fail.
fn setup<H: TestHw>(hw: H, fail_at: &[usize]) -> (Svc<H>, Vec<Rec>, Handles) {
    let cfg = Config { clients: &CLIENTS, static_maps: &STATIC_MAPS, ..config() };
    let mut s = Service::new(FailNth::new(hw), cfg, sized_storage(32, 256 + 128 + 32, 4, 3)).unwrap();
    let (net, blk) = (REGIONS[0].pa, REGIONS[1].pa);
    let sm = &STATIC_MAPS[0];
    let mut recs: Vec<Rec> = (0..sm.len / PAGE)
        .map(|p| Rec {
            device: sm.device,
            iova: sm.iova + p * PAGE,
            pa: net + sm.offset + p * PAGE,
            rights: sm.rights,
            made: Made::Static,
            unmapped: false,
        })
        .collect();
    // The loan: pages 1 to 4 of NET's buffers; its first two pages to BLK, the first of
    // those to EVIL.
    let (loan, lent) = lend(&mut s, NET, 0, NET, 0x1000, 0x4000, 1 << NIC | 1 << NIC2);
    let (child, at_blk) = lend(&mut s, NET, lent, BLK, 0, 0x2000, 1 << DISK);
    let (_, at_evil) = lend(&mut s, BLK, at_blk, EVIL, 0, 0x1000, 1 << EVIL_DEV);
    let first_static = (sm.iova - IOVA_BASE) / PAGE;
    let static_pages = first_static..first_static + sm.len / PAGE;
    // NIC: two of every three pages the loan's, the others NET's own (beyond the loan).
    for p in (0..150).filter(|p| !static_pages.contains(p)) {
        if p % 3 != 0 {
            map_rec(&mut s, &mut recs, NET, lent, NIC, (p % 4) * PAGE, p, net + 0x1000, Rights::READ, Made::Loan);
        } else {
            let off = 0x8000 + (p % 8) * PAGE;
            map_rec(&mut s, &mut recs, NET, 0, NIC, off, p, net, Rights::READ_WRITE, Made::Own);
        }
    }
    for p in 0..80 {
        if p % 2 == 0 {
            map_rec(&mut s, &mut recs, NET, lent, NIC2, (p % 4) * PAGE, p, net + 0x1000, Rights::READ, Made::Loan);
        } else {
            map_rec(&mut s, &mut recs, NET, 0, NIC2, 0x8000, p, net, Rights::READ_WRITE, Made::Own);
        }
    }
    for p in 0..100 {
        if p % 10 < 7 {
            map_rec(&mut s, &mut recs, BLK, at_blk, DISK, (p % 2) * PAGE, p, net + 0x1000, Rights::READ, Made::Child);
        } else {
            let off = 0x4000 + (p % 4) * PAGE;
            map_rec(&mut s, &mut recs, BLK, 0, DISK, off, p, blk, Rights::READ_WRITE, Made::Own);
        }
    }
    for p in 0..20 {
        map_rec(&mut s, &mut recs, EVIL, at_evil, EVIL_DEV, 0, p, net + 0x1000, Rights::READ, Made::Grandchild);
    }
    // Two UNMAPs the IOMMU does not confirm: a page of the loan on the NIC, a page of
    // BLK's own on the disk. Both pending, the two devices blocked.
    for (client, device, page) in [(NET, NIC, 1u64), (BLK, DISK, 7)] {
        let iova = IOVA_BASE + page * PAGE;
        s.hw_mut().inner.fail_next(Some("unmap"));
        let req = Request::Unmap { device: DeviceId(device as u32), iovas: unmap_iovas(iova), count: 1 };
        assert_eq!(call(&mut s, client, req), Reply::Err(iommu_protocol::ErrorCode::Hardware), "setup: failed unmap");
        let r = recs.iter_mut().find(|r| r.device == device && r.iova == iova).unwrap();
        r.unmapped = true;
    }
    s.audit().unwrap_or_else(|e| panic!("setup: audit: {e}"));
    s.hw_mut().calls = 0;
    s.hw_mut().fail_at = fail_at.to_vec();
    (s, recs, Handles { loan, child, at_blk })
}

fn unmap_iovas(iova: u64) -> [u64; iommu_protocol::MAX_UNMAP_RANGES] {
    let mut v = [0; iommu_protocol::MAX_UNMAP_RANGES];
    v[0] = iova;
    v
}

/// The steps of `op`, each answered: true if `Ok`.
fn apply<H: TestHw>(s: &mut Svc<H>, op: Op, h: Handles) -> Vec<bool> {
    let ok = |r: Reply| r == Reply::ok(&[]);
    match op {
        Op::RevokeLoan => vec![ok(call(s, NET, Request::Revoke { grant: Handle(h.loan) }))],
        Op::ReleaseChild => vec![ok(call(s, BLK, Request::Release { cap: Handle(h.at_blk) }))],
        Op::TearDownNet => vec![s.client_torn_down(NET).is_ok()],
        Op::RevokeChildThenLoan => {
            let first = ok(call(s, NET, Request::Revoke { grant: Handle(h.child) }));
            vec![first, ok(call(s, NET, Request::Revoke { grant: Handle(h.loan) }))]
        }
    }
}

/// Each device's recorded IOVAs: where it is tried.
fn tried(recs: &[Rec]) -> BTreeMap<usize, BTreeSet<u64>> {
    let mut out: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
    for r in recs {
        out.entry(r.device).or_default().insert(r.iova);
    }
    out
}

/// The audit holds, and every page a device reaches is one its books give it, with
/// the same physical page and rights.
fn reach_is_booked<H: TestHw>(s: &Svc<H>, recs: &[Rec], what: &str) {
    s.audit().unwrap_or_else(|e| panic!("{what}: audit: {e}"));
    let mut books: BTreeMap<usize, BTreeMap<u64, (u64, Rights)>> = BTreeMap::new();
    s.for_each_mapped_page(|d, iova, pa, r| {
        books.entry(d).or_default().insert(iova, (pa, r));
    });
    for (d, iovas) in tried(recs) {
        for (iova, entry) in s.hw().inner.reach(d, &iovas) {
            assert_eq!(
                books.get(&d).and_then(|p| p.get(&iova)),
                Some(&entry),
                "{what}: device {d} reaches {iova:#x} the books do not give it"
            );
        }
    }
}

/// Run `op` with the calls `fail_at` failing, judge it, recover, judge again; returns the
/// kinds of call that failed.
pub fn run<H: TestHw>(hw: H, op: Op, fail_at: &[usize]) -> Vec<&'static str> {
    let (mut s, recs, handles) = setup(hw, fail_at);
    let answers = apply(&mut s, op, handles);
    let failed = s.hw().failed.clone();
    let what = format!("{op:?} with calls {fail_at:?} ({failed:?}) failing, answered {answers:?}");
    // Failures inside the operation only; then one request, before which the service
    // retries a block the IOMMU did not confirm.
    s.hw_mut().fail_at.clear();
    s.hw_mut().inner.fail_next(None);
    let confirmed = answers.last().copied().unwrap_or(false);
    let Reply::Ok { .. } = call(&mut s, EVIL, Request::Query) else { panic!("{what}: QUERY refused") };
    reach_is_booked(&s, &recs, &what);
    for r in &recs {
        let (d, page) = (r.device, BTreeSet::from([r.iova]));
        let tables = s.hw().inner.tables(d);
        if op.takes(r) || r.unmapped {
            assert!(s.hw().inner.reach(d, &page).is_empty(), "{what}: {r:x?} still reached");
            // A teardown's `Ok` says its own devices are blocked, not emptied.
            let emptied = r.made != Made::Static && (op != Op::TearDownNet || owner(d) != NET);
            if confirmed && emptied && op.takes(r) {
                assert!(!s.hw().inner.translations(d).contains_key(&r.iova), "{what}: {r:x?} held after Ok");
            }
        } else if !(op == Op::TearDownNet && owner(d) == NET) {
            assert_eq!(tables.get(&r.iova), Some(&(r.pa, r.rights)), "{what}: {r:x?} of a capability that stays lost");
        }
    }
    recover(&mut s, op, &recs, &what);
    failed
}

/// The owners start their devices again (RESUME; after a teardown `client_ready`), with
/// the IOMMU obeying: nothing gone is held, everything that stays is reached, every
/// device runs, and each client's QUERY counts what stays on its devices.
fn recover<H: TestHw>(s: &mut Svc<H>, op: Op, recs: &[Rec], what: &str) {
    if op == Op::TearDownNet {
        assert_eq!(s.client_ready(NET), Ok(()), "{what}: client_ready");
    }
    for d in [NIC, DISK, EVIL_DEV, NIC2] {
        let resume = Request::Resume { device: DeviceId(d as u32) };
        assert_eq!(call(s, owner(d), resume), Reply::ok(&[]), "{what}: RESUME of device {d}");
    }
    reach_is_booked(s, recs, what);
    let mut stays = [0u64; 3];
    for r in recs {
        let (d, page) = (r.device, BTreeSet::from([r.iova]));
        if op.takes(r) || r.unmapped {
            assert!(!s.hw().inner.translations(d).contains_key(&r.iova), "{what}: {r:x?} held after recovery");
            assert!(s.hw().inner.reach(d, &page).is_empty(), "{what}: {r:x?} reached after recovery");
        } else {
            let want = BTreeMap::from([(r.iova, (r.pa, r.rights))]);
            assert_eq!(s.hw().inner.reach(d, &page), want, "{what}: {r:x?} not reached after recovery");
            // (The static mapping is one of two pages.)
            if r.made != Made::Static || r.iova == STATIC_MAPS[0].iova {
                stays[owner(d)] += 1;
            }
        }
    }
    for d in [NIC, DISK, EVIL_DEV, NIC2] {
        assert!(s.hw().inner.enabled(d), "{what}: device {d} not running again");
    }
    for (c, n) in stays.iter().enumerate() {
        let Reply::Ok { values, .. } = call(s, c, Request::Query) else { panic!("{what}: QUERY refused") };
        let counts = (values[query::MAPPINGS], values[query::REMOVALS_PENDING]);
        assert_eq!(counts, (*n, 0), "{what}: client {c}'s mappings and removals pending");
    }
}

/// Every single failure point of `op`, then every pair.
pub fn sweep<H: TestHw>(hw: impl Fn() -> H, op: Op) {
    let (mut clean, recs, handles) = setup(hw(), &[]);
    let answers = apply(&mut clean, op, handles);
    assert!(answers.iter().all(|a| *a), "{op:?} clean: answered {answers:?}");
    let calls = clean.hw().calls;
    reach_is_booked(&clean, &recs, "clean");
    // At least: the loan's two batches on the NIC (or the teardown's three), and the
    // retries of the two pending removals.
    assert!(calls >= 4, "{op:?}: {calls} IOMMU calls");
    drop(clean);
    // (The clean run itself, judged.)
    assert!(run(hw(), op, &[]).is_empty());
    let first: &[&str] = match op {
        Op::TearDownNet => &["block", "unmap", "retry_unmap"],
        _ => &["unmap", "retry_unmap", "enable"],
    };
    each_failure_point_then_each_pair(calls, |fail_at| run(hw(), op, fail_at), first, 5, &["unmap", "block"]);
}
