//! Does a request's cost grow with the system? MAP then UNMAP of one 4 KiB page (IOVA
//! chosen by the service), through the service over the driver over `InstantSmmu` (the
//! set-up of `service.rs`), with tables of 256, 4,096 and 65,535 mapping slots holding
//! 16, 1,024 and 16,384 live mappings (where they fit). Then a churn of mixed sizes: the
//! IOVA allocator must keep finding room as mappings of 1 to 16 pages come and go.

mod common;

use std::hint::black_box;

use common::{buffers_cap, call, Svc, BUFFERS};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use iommu_pd::service::{ClientTables, DeviceState};
use iommu_pd::{ClientConfig, Config, DeviceConfig, FaultPolicy, FaultRing, RegionConfig, Service, Storage};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};
use smmuv3::model::instant_smmu;
use smmuv3_service::SmmuBackend;

const BUFFERS_LEN: u64 = 1 << 30;
/// A 16 MiB IOVA window: 4,096 pages, so churn has to reuse what is freed.
const CHURN_WINDOW: u64 = 16 << 20;

fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

fn service(slots: usize, window: u64) -> Svc {
    let smmu = instant_smmu(2048);
    let backend = SmmuBackend::new(smmu, &[0x10]).unwrap();
    let quota = slots as u32;
    let cfg = Config {
        clients: leak(vec![ClientConfig { name: "driver", max_mappings: quota, max_pages: 1 << 20, max_grants: 1 }]),
        devices: leak(vec![DeviceConfig {
            name: "dev",
            stream: 0x10,
            extra_streams: &[],
            owner: 0,
            iova_base: 1 << 30,
            iova_size: window,
            resume_allowed: true,
        }]),
        regions: leak(vec![RegionConfig { name: "buffers", pa: BUFFERS, size: BUFFERS_LEN }]),
        // Grantable to itself, for the revocation benchmark.
        caps: leak(vec![buffers_cap(BUFFERS_LEN, 1)]),
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1000 },
    };
    let storage = Storage {
        caps: leak(vec![None; 4]),
        mappings: leak(vec![None; slots]),
        leaves: leak(vec![Default::default(); iommu_pd::index::leaves_for(slots, 1)]),
        inners: leak(vec![Default::default(); iommu_pd::index::inners_for(slots, 1)]),
        free: leak(vec![0; slots]),
        clients: leak(vec![ClientTables::default()]),
        devices: leak(vec![DeviceState::default()]),
        rings: leak(vec![FaultRing::default()]),
    };
    Service::new(backend, cfg, storage).unwrap()
}

fn map(s: &mut Svc, offset: u64, len: u64) -> Option<u64> {
    let req = Request::Map { cap: Handle(0), device: DeviceId(0), offset, len, iova: None, rights: Rights::READ };
    match call(s, req) {
        Reply::Ok { values, .. } => Some(values[0]),
        Reply::Err(_) => None,
    }
}

fn unmap(s: &mut Svc, iova: u64) {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    let r = call(s, Request::Unmap { device: DeviceId(0), iovas, count: 1 });
    assert!(matches!(r, Reply::Ok { .. }), "{r:?}");
}

fn map_unmap_by_size(c: &mut Criterion) {
    let sizes = iommu_pd::state_sizes();
    println!("scale: {} bytes per mapping slot (the mapping and its place in the index)", sizes.per_mapping);
    let mut g = c.benchmark_group("map_unmap");
    for slots in [256usize, 4096, 65_535] {
        for live in [16usize, 1024, 16_384] {
            if live >= slots {
                continue;
            }
            let mut s = service(slots, 1 << 30);
            for i in 0..live as u64 {
                map(&mut s, (i % 4096) * 4096, 4096).expect("room for the live mappings");
            }
            g.bench_with_input(BenchmarkId::new(format!("{slots}_slots"), live), &live, |b, _| {
                b.iter(|| {
                    let iova = map(&mut s, 0, 4096).unwrap();
                    unmap(&mut s, black_box(iova));
                })
            });
        }
    }
    g.finish();
}

/// Mappings of 1 to 16 pages come and go at random in a window that holds 4,096 pages,
/// kept about three-quarters full: each step unmaps one at random and maps one of a
/// random size. The allocator has to reuse the gaps; a MAP it cannot place is counted.
fn churn(c: &mut Criterion) {
    let mut s = service(4096, CHURN_WINDOW);
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut used = 0;
    while used < 3072 {
        let pages = 1 + rand() % 16;
        if let Some(iova) = map(&mut s, 0, pages * 4096) {
            live.push((iova, pages));
            used += pages;
        }
    }
    let (mut refused, mut steps) = (0u64, 0u64);
    c.bench_function("churn_mixed_sizes", |b| {
        b.iter(|| {
            let (iova, pages) = live.swap_remove((rand() % live.len() as u64) as usize);
            unmap(&mut s, iova);
            let want = 1 + rand() % 16;
            match map(&mut s, 0, want * 4096) {
                Some(iova) => live.push((iova, want)),
                None => {
                    refused += 1;
                    // Put back what was taken, so the fill level stays.
                    live.push((map(&mut s, 0, pages * 4096).expect("the freed room"), pages));
                }
            }
            steps += 1;
        })
    });
    println!("churn: {refused} of {steps} MAPs found no room at about 3/4 full");
}

/// GRANT a page to itself, MAP it, REVOKE: the revocation finds the one mapping among
/// 16 or 16,384 others.
fn revoke_by_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("grant_map_revoke");
    for live in [16usize, 16_384] {
        let mut s = service(65_535, 1 << 30);
        for i in 0..live as u64 {
            map(&mut s, (i % 4096) * 4096, 4096).expect("room for the live mappings");
        }
        g.bench_with_input(BenchmarkId::new("65535_slots", live), &live, |b, _| {
            b.iter(|| {
                let grant = Request::Grant {
                    cap: Handle(0),
                    to: iommu_protocol::ClientId(0),
                    offset: 0,
                    len: 4096,
                    rights: Rights::READ,
                    devices: 1,
                };
                let Reply::Ok { values, .. } = call(&mut s, grant) else { panic!("grant refused") };
                let req = Request::Map {
                    cap: Handle(values[1] as u32),
                    device: DeviceId(0),
                    offset: 0,
                    len: 4096,
                    iova: None,
                    rights: Rights::READ,
                };
                assert!(matches!(call(&mut s, req), Reply::Ok { .. }));
                let r = call(&mut s, Request::Revoke { grant: Handle(values[0] as u32) });
                assert!(matches!(black_box(r), Reply::Ok { .. }));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, map_unmap_by_size, revoke_by_size, churn);
criterion_main!(benches);
