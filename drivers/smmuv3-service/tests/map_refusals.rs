//! Every way the SMMUv3 backend refuses a MAP call after the service has booked it
//! (`Service::map_booked`: slot, record and usage taken before the driver
//! maps) leaves the service as a twin's that never got the MAP: rights stage-1 descriptors
//! cannot express, a 2 MiB block in the way, a page-table pool too small for the range's
//! tables, an SMMU that has failed. After the refusal the service's audit holds (free
//! list, each mapping's capability, indexes, next IOVA, usage), QUERY and every QUERY_MAPPING
//! answer as the twin's, the driver's tables hold the same leaves, and the next MAPs (by
//! the allocator, and at the refused one's IOVA) and the UNMAPs after them answer alike.

mod common;

use common::{leak, one_device_config};
use iommu_pd::{ClientConfig, Service};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};
use smmuv3::model::{host_region, host_smmu, SmmuModel};
use smmuv3::DmaRegion;
use smmuv3_service::SmmuBackend;

type Svc = Service<'static, SmmuBackend<SmmuModel>>;

const PAGE: u64 = 0x1000;
const BLOCK: u64 = 2 << 20;
/// The device's window: 4 TiB from 1 TiB, room for mappings 512 GiB apart, each of which
/// needs a table of its own at every level below the root.
const BASE: u64 = 1 << 40;
const WINDOW: u64 = 4 << 40;
const STRIDE: u64 = 1 << 39;

/// The service on the model SMMU with `table_pages` pages of page tables: client 0 owns one
/// device (stream 0x10) and holds handle 0, read-write over all of `buf`.
fn service(buf: &DmaRegion, table_pages: usize) -> Svc {
    let clients = leak([ClientConfig { name: "driver", max_mappings: 8, max_pages: 2 * 512 + 8, max_grants: 0 }]);
    let cfg = one_device_config(buf, clients, 0x10, BASE, WINDOW);
    let backend = SmmuBackend::new(host_smmu(table_pages), &[0x10]).unwrap();
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 8)>::default()));
    Service::new(backend, cfg, tables.storage()).unwrap()
}

fn call(s: &mut Svc, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(0, label, &mrs[..n])
}

fn map(offset: u64, len: u64, iova: Option<u64>, rights: Rights) -> Request {
    Request::Map { cap: Handle(0), device: DeviceId(0), offset, len, iova, rights }
}

fn unmap(iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(0), iovas, count: 1 }
}

/// The client's mappings' IOVAs, from QUERY_MAPPING.
fn iovas(s: &mut Svc) -> Vec<u64> {
    (0u64..)
        .map_while(|index| match call(s, Request::QueryMapping { index }) {
            Reply::Ok { values, .. } => Some(values[1]),
            _ => None,
        })
        .collect()
}

/// What the client and the SMMU show, after the service's audit: QUERY, each
/// QUERY_MAPPING, and the leaves of the device's tables.
fn books(s: &mut Svc) -> String {
    s.audit().unwrap_or_else(|e| panic!("audit: {e}"));
    let mut out = format!("{:x?}\n", call(s, Request::Query));
    for index in 0u64.. {
        let r = call(s, Request::QueryMapping { index });
        out += &format!("{r:x?}\n");
        if !matches!(r, Reply::Ok { .. }) {
            break;
        }
    }
    let dom = s.hw_mut().domain_of(0).expect("the device's domain");
    s.hw_mut()
        .smmu()
        .for_each_mapping(dom, |l| {
            out += &format!("leaf {:#x} -> {:#x}, {:#x} bytes, {:?}\n", l.iova.0, l.pa.0, l.size(), l.perm)
        })
        .expect("the domain");
    out
}

/// `req` to both: the same answer and the same books after.
fn both(s: &mut Svc, twin: &mut Svc, req: Request, what: &str) -> Reply {
    let (mine, theirs) = (call(s, req), call(twin, req));
    assert_eq!(mine, theirs, "{what}: {req:?}");
    assert_eq!(books(s), books(twin), "{what}: after {req:?}");
    mine
}

/// `prefix` to both, `refused` (and `break_it` before it) to `s` alone, answered `answer`;
/// then both must agree on everything, through MAPs by the allocator and at the refused
/// one's IOVA, and UNMAPs of all.
fn refused_leaves_no_trace(
    what: &str,
    table_pages: usize,
    prefix: &[Request],
    break_it: impl Fn(&mut Svc),
    refused: Request,
    answer: ErrorCode,
) {
    let buf = host_region(2 * BLOCK as usize, BLOCK as usize);
    let (mut s, mut twin) = (service(&buf, table_pages), service(&buf, table_pages));
    for req in prefix {
        assert!(matches!(both(&mut s, &mut twin, *req, what), Reply::Ok { .. }), "{what}: {req:?}");
    }
    // An SMMU that fails, fails for both: only the MAP is the one's alone.
    break_it(&mut s);
    break_it(&mut twin);
    assert_eq!(call(&mut s, refused), Reply::Err(answer), "{what}: the refused MAP");
    assert_eq!(books(&mut s), books(&mut twin), "{what}: right after the refused MAP");
    let Request::Map { iova, len, .. } = refused else { panic!("{what}: not a MAP") };
    both(&mut s, &mut twin, map(BLOCK, PAGE, None, Rights::READ_WRITE), what);
    both(&mut s, &mut twin, map(BLOCK + PAGE, len.min(BLOCK - PAGE), iova, Rights::READ_WRITE), what);
    for iova in iovas(&mut s) {
        both(&mut s, &mut twin, unmap(iova), what);
    }
}

#[test]
fn a_map_the_smmu_refuses_leaves_the_books_of_a_service_that_never_got_it() {
    let none = |_: &mut Svc| {};
    // Write-only, which stage-1 descriptors cannot express: refused before the range is
    // walked, at the allocator's IOVA above a mapping.
    refused_leaves_no_trace(
        "write-only",
        32,
        &[map(0, PAGE, None, Rights::READ_WRITE)],
        none,
        map(PAGE, 2 * PAGE, None, Rights::WRITE),
        ErrorCode::Hardware,
    );
    // Inside a 2 MiB block, and across its end: the driver finds the block above the
    // page's level.
    for (iova, len) in [(BASE + PAGE, PAGE), (BASE + BLOCK - PAGE, 2 * PAGE)] {
        refused_leaves_no_trace(
            "inside a block",
            32,
            &[map(0, BLOCK, Some(BASE), Rights::READ_WRITE)],
            none,
            map(BLOCK, len, Some(iova), Rights::READ_WRITE),
            ErrorCode::Overlap,
        );
    }
    // The pool cannot supply the new tables (a root and three tables for each of the
    // first two mappings, 512 GiB apart; the third needs three more): the driver reclaims
    // what is empty (nothing), and refuses.
    refused_leaves_no_trace(
        "pool exhausted",
        8,
        &[map(0, PAGE, Some(BASE), Rights::READ_WRITE), map(PAGE, PAGE, Some(BASE + STRIDE), Rights::READ_WRITE)],
        |s: &mut Svc| assert!(s.hw_mut().smmu().free_table_pages() < 3, "the pool has room"),
        map(2 * PAGE, PAGE, Some(BASE + 2 * STRIDE), Rights::READ_WRITE),
        ErrorCode::Hardware,
    );
    // An SMMU in service failure mode: every map refused first, by the allocator's IOVA
    // and over a mapping (found in the service's index).
    let failed = |s: &mut Svc| {
        s.hw_mut().smmu().regs().enter_service_failure();
        assert!(s.hw_mut().smmu().check_global_errors().is_err());
    };
    for (iova, answer) in [(None, ErrorCode::Hardware), (Some(BASE), ErrorCode::Overlap)] {
        refused_leaves_no_trace(
            "failed SMMU",
            32,
            &[map(0, PAGE, None, Rights::READ_WRITE)],
            failed,
            map(PAGE, PAGE, iova, Rights::READ_WRITE),
            answer,
        );
    }
}
