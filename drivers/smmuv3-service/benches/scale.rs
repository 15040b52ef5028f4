//! Does a request's cost grow with the system? MAP then UNMAP of one 4 KiB page (IOVA
//! chosen by the service), through the service over the driver over `InstantSmmu` (the
//! set-up of `service.rs`), with tables of 256, 4,096 and 65,535 mapping slots holding
//! 16, 1,024 and 16,384 live mappings (where they fit). GRANT, MAP and REVOKE among 16 and
//! 16,384 other mappings, and a REVOKE of 16,384 mappings. Then a churn of mixed sizes:
//! the IOVA allocator must keep finding room as mappings of 1 to 16 pages come and go.

mod common;

use std::hint::black_box;

use common::call;
use common::scale::{filled, grant_page_to_self, map_granted_page, Churn};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use iommu_protocol::{Reply, Request};

fn map_unmap_by_size(c: &mut Criterion) {
    let sizes = iommu_pd::state_sizes();
    println!("scale: {} bytes per mapping slot (the mapping and its place in the index)", sizes.per_mapping);
    let mut g = c.benchmark_group("map_unmap");
    for slots in [256usize, 4096, 65_535] {
        for live in [16usize, 1024, 16_384] {
            if live >= slots {
                continue;
            }
            let mut s = filled(slots, live);
            g.bench_with_input(BenchmarkId::new(format!("{slots}_slots"), live), &live, |b, _| {
                b.iter(|| common::scale::map_unmap(&mut s, 1))
            });
        }
    }
    g.finish();
}

/// Mappings of 1 to 16 pages come and go at random in a window that holds 4,096 pages,
/// kept about three-quarters full: each step unmaps one at random and maps one of a
/// random size. The allocator has to reuse the gaps; a MAP it cannot place is counted.
fn churn(c: &mut Criterion) {
    let mut churn = Churn::new();
    let mut steps = 0u64;
    c.bench_function("churn_mixed_sizes", |b| {
        b.iter(|| {
            churn.steps(1);
            steps += 1;
        })
    });
    println!("churn: {} of {steps} MAPs found no room at about 3/4 full", churn.refused);
}

/// GRANT a page to itself, MAP it, REVOKE: the revocation finds the one mapping among
/// 16 or 16,384 others.
fn revoke_by_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("grant_map_revoke");
    for live in [16usize, 16_384] {
        let mut s = filled(65_535, live);
        g.bench_with_input(BenchmarkId::new("65535_slots", live), &live, |b, _| {
            b.iter(|| {
                let (grant, page) = grant_page_to_self(&mut s);
                map_granted_page(&mut s, page);
                let r = call(&mut s, Request::Revoke { grant });
                assert!(matches!(black_box(r), Reply::Ok { .. }));
            })
        });
    }
    g.finish();
}

/// The worst REVOKE a holder's quota allows: the granted page mapped 16,384 times (the
/// holder's whole quota but the boot capability's), every one removed, 64 under one
/// CMD_SYNC. Only the REVOKE is timed; the GRANT and the MAPs before it are not.
fn revoke_all_of_a_quota(c: &mut Criterion) {
    const MAPS: u64 = 16_384;
    let mut g = c.benchmark_group("revoke_all_of_a_quota");
    g.sample_size(10);
    let mut s = common::scale::service(65_535, 1 << 30);
    g.bench_function(BenchmarkId::new("65535_slots", MAPS), |b| {
        b.iter_custom(|iters| {
            let mut took = std::time::Duration::ZERO;
            for _ in 0..iters {
                let (grant, page) = grant_page_to_self(&mut s);
                for _ in 0..MAPS {
                    map_granted_page(&mut s, page);
                }
                let start = std::time::Instant::now();
                let r = call(&mut s, Request::Revoke { grant });
                took += start.elapsed();
                assert!(matches!(black_box(r), Reply::Ok { .. }));
            }
            took
        })
    });
    g.finish();
}

criterion_group!(benches, map_unmap_by_size, revoke_by_size, revoke_all_of_a_quota, churn);
criterion_main!(benches);
