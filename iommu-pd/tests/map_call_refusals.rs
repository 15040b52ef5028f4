//! Attack review of the MAP call's shape (`Service::map_booked`): a MAP call books its
//! mapping (slot, record, usage) before the IOMMU maps it, and `unbook` undoes the
//! booking when the IOMMU refuses. Whatever the IOMMU answers, a
//! MAP it refused must leave a service that cannot be told from a twin that never got
//! that MAP: at every edge a booking can sit on (the last mapping and the last page of a
//! client's quota; the service's last mapping slot, taken through a granted capability
//! that already has a mapping), and for each refusal after the booking (the IOMMU
//! fails; the range is in use, wholly or in part), the audit holds and every reply after
//! it (QUERY, QUERY_MAPPING, the next MAP's IOVA, RELEASE, REVOKE, UNMAP, a restart) and
//! every page the IOMMU holds are the twin's. Over the model IOMMU (the service checks
//! overlaps itself) and `RangeChecked` (the IOMMU checks, as the SMMUv3 backend does).
//!
//! Also: the same MAPs and UNMAPs by call and through the mapping queue leave the same
//! books; and a MAP from a client number the description lacks (equal to the count, past
//! the tables the storage has, `usize::MAX`) is refused `BadClient` with nothing changed,
//! after a block that failed has been retried.

mod common;

use common::backend::{RangeChecked, TestHw};
use common::queue::{completions, post_all, region};
use common::{call, ModelHw};
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service, Storage};
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};

const PAGE: u64 = 0x1000;
const BASE: u64 = 0x1000_0000;
const A: usize = 0;
const B: usize = 1;
const DEV_A: u32 = 0;
const DEV_B: u32 = 1;
/// A's handle to the grant it makes to B (for REVOKE), and B's handle to it: the first
/// free entries of their tables.
const GRANT_A: u32 = 1;
const HANDLE_B: u32 = 0;
/// Mapping slots: exactly the quotas (3 + 2), so the last slot is also a last quota.
const SLOTS: usize = 5;

static CLIENTS: [ClientConfig; 2] = [
    ClientConfig { name: "a", max_mappings: 3, max_pages: 5, max_grants: 1 },
    ClientConfig { name: "b", max_mappings: 2, max_pages: 3, max_grants: 0 },
];
static DEVICES: [DeviceConfig; 2] = [
    DeviceConfig {
        name: "dev-a",
        stream: 1,
        extra_streams: &[],
        owner: A,
        iova_base: BASE,
        iova_size: 1 << 20,
        resume_allowed: true,
    },
    DeviceConfig {
        name: "dev-b",
        stream: 2,
        extra_streams: &[],
        owner: B,
        iova_base: BASE,
        iova_size: 1 << 20,
        resume_allowed: true,
    },
];
static REGIONS: [RegionConfig; 1] = [RegionConfig { name: "buf", pa: 0x4000_0000, size: 0x8000 }];
/// A's buffer, for its device, lendable to B.
static CAPS: [CapConfig; 1] = [CapConfig {
    client: A,
    region: 0,
    offset: 0,
    len: 0x8000,
    rights: Rights::READ_WRITE,
    devices: 1 << DEV_A,
    grant_to: 1 << B,
}];

fn config() -> Config<'static> {
    Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 },
    }
}

/// Tables for `config()`: `SLOTS` mapping slots, and client tables (and rings) for two
/// clients more than the description has, so that a client number past the description
/// still finds a table in the storage.
fn storage() -> Storage<'static> {
    common::sized_storage(4, SLOTS, DEVICES.len(), CLIENTS.len() + 2)
}

fn service<H: TestHw + Default>() -> Service<'static, H> {
    Service::new(H::default(), config(), storage()).unwrap()
}

/// MAP of `pages` pages of handle `cap` from `offset`, read-write, for `device`.
fn map_req(cap: u32, device: u32, offset: u64, pages: u64, iova: Option<u64>) -> Request {
    Request::Map {
        cap: Handle(cap),
        device: DeviceId(device),
        offset,
        len: pages * PAGE,
        iova,
        rights: Rights::READ_WRITE,
    }
}

fn unmap_req(device: u32, iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(device), iovas, count: 1 }
}

/// A lends B half its buffer, for B's device.
fn lend() -> Request {
    Request::Grant {
        cap: Handle(0),
        to: ClientId(B as u32),
        offset: 0x4000,
        len: 0x4000,
        rights: Rights::READ_WRITE,
        devices: 1 << DEV_B,
    }
}

/// `client`'s mappings, as (device, IOVA), from QUERY_MAPPING.
fn mappings<H: TestHw>(s: &mut Service<'static, H>, client: usize) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for index in 0u64.. {
        match call(s, client, Request::QueryMapping { index }) {
            Reply::Ok { values, .. } => out.push((values[0] as u32, values[1])),
            _ => break,
        }
    }
    out
}

/// Everything a client or a device can observe of the service, after the audit: each
/// client's QUERY and QUERY_MAPPINGs, and what the IOMMU holds for each device.
fn books<H: TestHw>(s: &mut Service<'static, H>) -> String {
    s.audit().unwrap_or_else(|e| panic!("audit: {e}"));
    let mut out = String::new();
    for c in 0..CLIENTS.len() {
        out += &format!("client {c}: {:x?}\n", call(s, c, Request::Query));
        for index in 0u64.. {
            let r = call(s, c, Request::QueryMapping { index });
            out += &format!("  {r:x?}\n");
            if !matches!(r, Reply::Ok { .. }) {
                break;
            }
        }
    }
    for d in 0..DEVICES.len() {
        let hw = s.hw();
        out += &format!("device {d}: {:x?} cached {:x?} enabled {}\n", hw.tables(d), hw.cached(d), hw.enabled(d));
    }
    out
}

/// `req` from `client` to both services: the same answer, and the same books after.
fn both<H: TestHw>(
    s: &mut Service<'static, H>,
    twin: &mut Service<'static, H>,
    client: usize,
    req: Request,
    what: &str,
) -> Reply {
    let (mine, theirs) = (call(s, client, req), call(twin, client, req));
    assert_eq!(mine, theirs, "{what}: client {client}'s {req:?}");
    assert_eq!(books(s), books(twin), "{what}: after client {client}'s {req:?}");
    mine
}

// A step lives for one call of a test; UNMAP's 64 IOVAs make `Call` the large variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
enum Step {
    Call(usize, Request),
    /// The client is torn down and made ready again (a restart).
    Restart(usize),
    /// The client unmaps each of its mappings.
    UnmapAll(usize),
}

fn step<H: TestHw>(s: &mut Service<'static, H>, twin: &mut Service<'static, H>, st: Step, what: &str) {
    match st {
        Step::Call(c, req) => {
            both(s, twin, c, req, what);
        }
        Step::Restart(c) => {
            assert_eq!(s.client_torn_down(c), twin.client_torn_down(c), "{what}: teardown of {c}");
            assert_eq!(s.client_ready(c), twin.client_ready(c), "{what}: {c} ready again");
            assert_eq!(books(s), books(twin), "{what}: after {c}'s restart");
        }
        Step::UnmapAll(c) => {
            for (d, iova) in mappings(s, c) {
                assert_eq!(both(s, twin, c, unmap_req(d, iova), what), Reply::ok(&[]), "{what}: UNMAP {iova:#x}");
            }
        }
    }
}

/// Where the refused MAP's booking sits.
#[derive(Debug, Clone, Copy)]
enum Edge {
    /// A's third mapping, taking its fourth and fifth page: the last of both quotas.
    LastOfQuota,
    /// B's second mapping, through the capability A lent it (which B's first was made with):
    /// the last of B's quotas and the service's last mapping slot.
    LastSlot,
}

/// How the IOMMU refuses.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// It fails, at the IOVA the allocator chose (`Hardware`).
    Fails,
    /// The range is inside a mapping (`Overlap`).
    InUse,
    /// Part of the range is a mapping's (`Overlap`).
    InUsePartly,
}

/// The requests before the refused MAP (each answered `Ok`).
fn prefix(edge: Edge) -> Vec<(usize, Request)> {
    match edge {
        Edge::LastOfQuota => vec![(A, map_req(0, DEV_A, 0, 1, None)), (A, map_req(0, DEV_A, PAGE, 2, None))],
        Edge::LastSlot => vec![
            (A, map_req(0, DEV_A, 0, 1, None)),
            (A, map_req(0, DEV_A, PAGE, 1, None)),
            (A, map_req(0, DEV_A, 2 * PAGE, 1, None)),
            (A, lend()),
            (B, map_req(HANDLE_B, DEV_B, 0, 1, Some(BASE + PAGE))),
        ],
    }
}

/// The refused MAP: its client, the request, and the answer.
fn refused(edge: Edge, refusal: Refusal) -> (usize, Request, ErrorCode) {
    match (edge, refusal) {
        (Edge::LastOfQuota, Refusal::Fails) => (A, map_req(0, DEV_A, 3 * PAGE, 2, None), ErrorCode::Hardware),
        // A's two-page mapping is at BASE + PAGE.
        (Edge::LastOfQuota, Refusal::InUse) => {
            (A, map_req(0, DEV_A, 3 * PAGE, 1, Some(BASE + 2 * PAGE)), ErrorCode::Overlap)
        }
        (Edge::LastOfQuota, Refusal::InUsePartly) => {
            (A, map_req(0, DEV_A, 3 * PAGE, 2, Some(BASE + 2 * PAGE)), ErrorCode::Overlap)
        }
        (Edge::LastSlot, Refusal::Fails) => (B, map_req(HANDLE_B, DEV_B, PAGE, 2, None), ErrorCode::Hardware),
        // B's mapping is at BASE + PAGE.
        (Edge::LastSlot, Refusal::InUse) => {
            (B, map_req(HANDLE_B, DEV_B, PAGE, 1, Some(BASE + PAGE)), ErrorCode::Overlap)
        }
        (Edge::LastSlot, Refusal::InUsePartly) => {
            (B, map_req(HANDLE_B, DEV_B, PAGE, 2, Some(BASE)), ErrorCode::Overlap)
        }
    }
}

/// What both services do after the refused MAP, the `n`-th of three ways; each ends with
/// nothing mapped.
fn tail(edge: Edge, n: usize) -> Vec<Step> {
    use Step::*;
    match (edge, n) {
        // The same MAP again, then one over the quota it filled.
        (Edge::LastOfQuota, 0) => vec![
            Call(A, map_req(0, DEV_A, 3 * PAGE, 2, None)),
            Call(A, map_req(0, DEV_A, 5 * PAGE, 1, None)),
            UnmapAll(A),
            Call(A, map_req(0, DEV_A, 0, 1, None)),
            UnmapAll(A),
        ],
        // The mapping it overlapped goes (the allocator's next IOVA comes down), a restart.
        (Edge::LastOfQuota, 1) => vec![
            Call(A, unmap_req(DEV_A, BASE + PAGE)),
            Call(A, map_req(0, DEV_A, 3 * PAGE, 2, None)),
            Restart(A),
            Call(A, map_req(0, DEV_A, 0, 1, None)),
            UnmapAll(A),
        ],
        // A lends, B maps, A revokes.
        (Edge::LastOfQuota, _) => vec![
            Call(A, lend()),
            Call(B, map_req(HANDLE_B, DEV_B, 0, 1, None)),
            Call(A, Request::Revoke { grant: Handle(GRANT_A) }),
            UnmapAll(A),
        ],
        // The same MAP takes the last slot; the slot A frees is A's to take again.
        (Edge::LastSlot, 0) => vec![
            Call(B, map_req(HANDLE_B, DEV_B, PAGE, 2, None)),
            Call(A, unmap_req(DEV_A, BASE)),
            Call(A, map_req(0, DEV_A, 0, 1, None)),
            UnmapAll(B),
            UnmapAll(A),
        ],
        // RELEASE of the lent capability right after.
        (Edge::LastSlot, 1) => vec![
            Call(B, Request::Release { cap: Handle(HANDLE_B) }),
            Call(B, map_req(HANDLE_B, DEV_B, PAGE, 1, None)),
            Call(A, Request::Revoke { grant: Handle(GRANT_A) }),
            UnmapAll(A),
        ],
        // REVOKE of it right after, and B restarts.
        (Edge::LastSlot, _) => vec![
            Call(A, Request::Revoke { grant: Handle(GRANT_A) }),
            Restart(B),
            Call(B, map_req(HANDLE_B, DEV_B, 0, 1, None)),
            UnmapAll(A),
        ],
    }
}

fn refused_maps_leave_no_trace<H: TestHw + Default>(backend: &str) {
    for edge in [Edge::LastOfQuota, Edge::LastSlot] {
        for refusal in [Refusal::Fails, Refusal::InUse, Refusal::InUsePartly] {
            for n in 0..3 {
                let what = format!("{backend}: {edge:?}, {refusal:?}, tail {n}");
                let (mut s, mut twin) = (service::<H>(), service::<H>());
                for (client, req) in prefix(edge) {
                    let r = both(&mut s, &mut twin, client, req, &what);
                    assert!(matches!(r, Reply::Ok { .. }), "{what}: {req:?} answered {r:?}");
                }
                // The twin never gets it.
                let (client, req, answer) = refused(edge, refusal);
                s.hw_mut().fail_next(matches!(refusal, Refusal::Fails).then_some("map"));
                assert_eq!(call(&mut s, client, req), Reply::Err(answer), "{what}: the refused MAP");
                s.hw_mut().fail_next(None);
                assert_eq!(books(&mut s), books(&mut twin), "{what}: right after the refused MAP");
                for st in tail(edge, n) {
                    step(&mut s, &mut twin, st, &what);
                }
                assert!(mappings(&mut s, A).is_empty() && mappings(&mut s, B).is_empty(), "{what}: left mapped");
            }
        }
    }
}

#[test]
fn a_refused_map_call_leaves_the_books_of_a_service_that_never_got_it() {
    refused_maps_leave_no_trace::<ModelHw>("model");
    refused_maps_leave_no_trace::<RangeChecked>("range-checked");
}

/// The same MAPs and UNMAPs by call to one service and through the queue (one batch) to
/// another: the same answers entry by entry, and the same books after (the mappings'
/// devices, IOVAs, lengths, rights, regions and offsets, the usage, the IOMMU's pages),
/// then the same IOVA for the next MAP. The batch takes the queue's detours: a MAP over
/// the quota; one refused for a quota a removal in flight still holds (confirmed, then
/// checked again); one at the IOVA of a removal in flight (break-before-make).
fn call_and_queue_agree<H: TestHw + Default>(backend: &str) {
    let script = [
        map_req(0, DEV_A, 0, 1, None),
        map_req(0, DEV_A, PAGE, 2, Some(BASE + 4 * PAGE)),
        map_req(0, DEV_A, 3 * PAGE, 1, None),
        map_req(0, DEV_A, 4 * PAGE, 1, None),
        unmap_req(DEV_A, BASE + 4 * PAGE),
        map_req(0, DEV_A, 4 * PAGE, 2, None),
        unmap_req(DEV_A, BASE),
        map_req(0, DEV_A, 6 * PAGE, 1, Some(BASE)),
    ];
    let (mut by_call, mut by_queue) = (service::<H>(), service::<H>());
    let replies: Vec<Reply> = script.iter().map(|r| call(&mut by_call, A, *r)).collect();
    assert_eq!(replies[3], Reply::Err(ErrorCode::QuotaMappings), "{backend}: over the quota");
    assert_eq!(replies[5], Reply::ok(&[BASE + 7 * PAGE]), "{backend}: where the quota was");
    assert_eq!(replies[7], Reply::ok(&[BASE]), "{backend}: where the removal was");
    let q = region();
    let unmaps = post_all(&q, &script);
    assert_eq!(by_queue.serve_queue(A, &q), script.len());
    let done: Vec<Reply> = completions(&q, &unmaps).into_iter().map(|(_, r)| r).collect();
    assert_eq!(done, replies, "{backend}: the batch's answers");
    assert_eq!(books(&mut by_queue), books(&mut by_call), "{backend}: the books");
    let what = format!("{backend}: after the batch");
    step(&mut by_call, &mut by_queue, Step::UnmapAll(A), &what);
    step(&mut by_call, &mut by_queue, Step::Call(A, map_req(0, DEV_A, 0, 2, None)), &what);
}

#[test]
fn a_mapping_made_by_call_is_the_one_the_queue_makes() {
    call_and_queue_agree::<ModelHw>("model");
    call_and_queue_agree::<RangeChecked>("range-checked");
}

/// A MAP from a client number the description lacks (its count, the first past the
/// tables the storage has, the largest) is refused `BadClient` with nothing changed, and
/// still retries, first, a block the IOMMU did not confirm: the exposure ends there.
#[test]
fn a_map_from_a_client_the_description_lacks_is_refused_after_the_retries() {
    let mut s = service::<ModelHw>();
    assert_eq!(call(&mut s, A, map_req(0, DEV_A, 0, 1, None)), Reply::ok(&[BASE]));
    let before = books(&mut s);
    for client in [CLIENTS.len(), CLIENTS.len() + 2, usize::MAX] {
        // A's handle and device, with the allocator's IOVA and with one given.
        for req in [map_req(0, DEV_A, PAGE, 1, None), map_req(0, DEV_A, PAGE, 1, Some(BASE + PAGE))] {
            assert_eq!(call(&mut s, client, req), Reply::Err(ErrorCode::BadClient), "client {client}");
        }
        assert_eq!(books(&mut s), before, "client {client}");
    }
    // A's UNMAP is not confirmed, nor is the block after it: its device still reaches the
    // page through its cached translation.
    s.hw_mut().fail_next = Some("unmap");
    s.hw_mut().fail_then = vec!["block"];
    assert_eq!(call(&mut s, A, unmap_req(DEV_A, BASE)), Reply::Err(ErrorCode::Hardware));
    assert_eq!(s.unblocked_devices(), 1 << DEV_A);
    assert!(s.hw().reachable(DEV_A as usize).contains_key(&BASE), "the exposure");
    assert_eq!(call(&mut s, CLIENTS.len(), map_req(0, DEV_A, PAGE, 1, None)), Reply::Err(ErrorCode::BadClient));
    assert_eq!(s.unblocked_devices(), 0, "retried before the refusal");
    assert!(s.hw().reachable(DEV_A as usize).is_empty());
    s.audit().unwrap();
}

/// A call on a channel that is no client's: the IOMMU PD hands it to the service as client
/// `usize::MAX` (pds/iommu's `protected`), whatever its label, and with no message
/// registers. Each is refused `BadClient`, counted once among the refusals (the count the
/// IOMMU PD keeps of what it refused), and changes nothing else.
#[test]
fn a_call_from_no_client_is_refused_and_counted() {
    let mut s = service::<ModelHw>();
    assert_eq!(call(&mut s, A, map_req(0, DEV_A, 0, 1, None)), Reply::ok(&[BASE]));
    let before = books(&mut s);
    let stats = s.stats();
    let labels = [1u64, 2, 3, 4, 5, 6, 7, 8, 9, 10, 99, iommu_protocol::queue::SERVE];
    for (n, label) in labels.into_iter().enumerate() {
        assert_eq!(s.handle(usize::MAX, label, &[]), Reply::Err(ErrorCode::BadClient), "label {label}");
        assert_eq!(
            s.stats(),
            iommu_pd::service::Stats { refused: stats.refused + n as u64 + 1, ..stats },
            "label {label}"
        );
    }
    assert_eq!(books(&mut s), before);
    s.audit().unwrap();
}
