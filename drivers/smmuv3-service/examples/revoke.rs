//! REVOKE's instructions by the mappings of its device: GRANT of a page to itself, MAP
//! of it, REVOKE, 100 times, with `live` other mappings on the device (the first
//! argument). REVOKE walks the device's index (`Service::remove_subtree`), so its count
//! grows with them; run it under callgrind and divide `remove_subtree`'s inclusive count
//! by 100:
//!
//! ```text
//! cargo build --release -p smmuv3-service --example revoke
//! valgrind --tool=callgrind --callgrind-out-file=cg target/release/examples/revoke 16384
//! callgrind_annotate --inclusive=yes cg | grep 'remove_subtree \['
//! ```
//!
//! Each REVOKE is checked to have removed the granted page's mapping and no other (QUERY),
//! so a count cannot come from a path that failed early.

#[path = "../benches/common/mod.rs"]
mod common;

use common::call;
use common::scale::service;
use iommu_protocol::{query, ClientId, DeviceId, Handle, Reply, Request, Rights};

fn mappings(s: &mut common::Svc) -> u64 {
    let Reply::Ok { values, .. } = call(s, Request::Query) else { panic!("QUERY refused") };
    values[query::MAPPINGS]
}

fn main() {
    let live: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).expect("usage: revoke LIVE_MAPPINGS");
    let mut s = service(65_535, 1 << 30);
    let map = |cap: u32, offset: u64| Request::Map {
        cap: Handle(cap),
        device: DeviceId(0),
        offset,
        len: 4096,
        iova: None,
        rights: Rights::READ,
    };
    for i in 0..live {
        assert!(matches!(call(&mut s, map(0, (i % 4096) * 4096)), Reply::Ok { .. }), "room for {live}");
    }
    for _ in 0..100 {
        let grant =
            Request::Grant { cap: Handle(0), to: ClientId(0), offset: 0, len: 4096, rights: Rights::READ, devices: 1 };
        let Reply::Ok { values, .. } = call(&mut s, grant) else { panic!("grant refused") };
        assert!(matches!(call(&mut s, map(values[1] as u32, 0)), Reply::Ok { .. }));
        assert_eq!(mappings(&mut s), live + 1);
        let r = call(&mut s, Request::Revoke { grant: Handle(values[0] as u32) });
        assert_eq!(std::hint::black_box(r), Reply::ok(&[]));
        assert_eq!(mappings(&mut s), live, "REVOKE removed the grant's mapping and nothing else");
    }
}
