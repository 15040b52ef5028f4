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
use common::scale::{filled, grant_page_to_self, map_granted_page};
use iommu_protocol::{query, Reply, Request};

fn mappings(s: &mut common::Svc) -> u64 {
    let Reply::Ok { values, .. } = call(s, Request::Query) else { panic!("QUERY refused") };
    values[query::MAPPINGS]
}

fn main() {
    let live: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).expect("usage: revoke LIVE_MAPPINGS");
    let mut s = filled(65_535, live as usize);
    for _ in 0..100 {
        let (grant, page) = grant_page_to_self(&mut s);
        map_granted_page(&mut s, page);
        assert_eq!(mappings(&mut s), live + 1);
        let r = call(&mut s, Request::Revoke { grant });
        assert_eq!(std::hint::black_box(r), Reply::ok(&[]));
        assert_eq!(mappings(&mut s), live, "REVOKE removed the grant's mapping and nothing else");
    }
}
