//! Requests end to end: encode, decode, capability check, page table, and the
//! CMD_TLBI/CMD_SYNC written into the command queue in memory (`model::InstantSmmu`
//! consumes commands the moment the doorbell rings, so the SMMU itself costs nothing).
//! Also prints the bytes of state the service keeps per client, capability and mapping.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::paths::{self, batch_page, QueueRun, QUEUE_REQUESTS};
use common::{call, Svc};
use criterion::{criterion_group, criterion_main, Criterion};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};
use smmuv3::{MemType, Perm};

fn map_req(offset: u64, len: u64) -> Request {
    Request::Map { cap: Handle(0), device: DeviceId(0), offset, len, iova: None, rights: Rights::READ_WRITE }
}

fn unmap_req(iovas: &[u64]) -> Request {
    let mut v = [0; MAX_UNMAP_RANGES];
    v[..iovas.len()].copy_from_slice(iovas);
    Request::Unmap { device: DeviceId(0), iovas: v, count: iovas.len() }
}

fn iova(r: Reply) -> u64 {
    match r {
        Reply::Ok { values, .. } => values[0],
        Reply::Err(e) => panic!("{e:?}"),
    }
}

/// `iters` iterations in batches of at most 64 (what fits the tables and the IOVA window
/// from empty): `batch(n)` does `n` of them and returns the time of what it measured.
fn in_batches(iters: u64, mut batch: impl FnMut(u64) -> Duration) -> Duration {
    let (mut total, mut done) = (Duration::ZERO, 0);
    while done < iters {
        let n = (iters - done).min(64);
        total += batch(n);
        done += n;
    }
    total
}

/// Map and then unmap batches of 64 mappings of `len` bytes, one request each; return
/// the time spent mapping or unmapping.
fn timed_pairs(s: &mut Svc, iters: u64, len: u64, time_map: bool) -> Duration {
    in_batches(iters, |n| {
        let mut iovas = Vec::with_capacity(n as usize);
        let t = Instant::now();
        for i in 0..n {
            let r = call(s, map_req(i * len, len));
            iovas.push(iova(black_box(r)));
        }
        let mapped = t.elapsed();
        let t = Instant::now();
        for v in &iovas {
            black_box(call(s, unmap_req(&[*v])));
        }
        let unmapped = t.elapsed();
        if time_map {
            mapped
        } else {
            unmapped
        }
    })
}

/// A request as the IOMMU PD receives it: label and message registers, encoded by the
/// client before the service's work starts.
struct Message {
    label: u64,
    mrs: [u64; MAX_MRS],
    n: usize,
}

fn message(req: Request) -> Message {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    Message { label, mrs, n }
}

/// The service against the driver alone doing the same page-table and queue work: the
/// same 4 KiB pages at the same IOVAs, in batches of 64 on warm tables, one request or
/// one driver call per page. Only the service's side of a request is timed (the client
/// encodes before the clock starts; the reply is built inside it).
fn service_vs_driver(c: &mut Criterion) {
    let mut g = c.benchmark_group("service_vs_driver");

    g.bench_function("driver map 4KiB", |b| {
        let (mut smmu, d) = paths::driver();
        b.iter_custom(|iters| {
            in_batches(iters, |n| {
                let t = Instant::now();
                paths::driver_map(&mut smmu, d, n);
                let mapped = t.elapsed();
                paths::driver_unmap(&mut smmu, d, n);
                mapped
            })
        });
    });
    g.bench_function("service MAP 4KiB", |b| {
        let mut s = paths::service();
        let maps = paths::service_maps();
        b.iter_custom(|iters| {
            in_batches(iters, |n| {
                let t = Instant::now();
                let refused = paths::service_map(&mut s, &maps[..n as usize]);
                let mapped = t.elapsed();
                assert_eq!(refused, 0);
                paths::service_unmap(&mut s, n);
                mapped
            })
        });
    });
    g.bench_function("driver unmap 4KiB (TLBI + SYNC)", |b| {
        let (mut smmu, d) = paths::driver();
        b.iter_custom(|iters| {
            in_batches(iters, |n| {
                for i in 0..n {
                    let (iova, pa) = batch_page(i);
                    smmu.map(d, iova, pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
                }
                let t = Instant::now();
                for i in 0..n {
                    black_box(smmu.unmap(d, batch_page(i).0, 4096)).unwrap();
                }
                t.elapsed()
            })
        });
    });
    g.bench_function("service UNMAP 4KiB (TLBI + SYNC)", |b| {
        let mut s = paths::service();
        let unmaps: Vec<Message> = (0..64).map(|i| message(unmap_req(&[batch_page(i).0 .0]))).collect();
        b.iter_custom(|iters| {
            in_batches(iters, |n| {
                for i in 0..n {
                    assert_eq!(iova(call(&mut s, map_req(i * 4096, 4096))), batch_page(i).0 .0);
                }
                let t = Instant::now();
                for m in &unmaps[..n as usize] {
                    black_box(s.handle(0, m.label, &m.mrs[..m.n]));
                }
                t.elapsed()
            })
        });
    });
    // Per request, a 4 KiB buffer mapped and then unmapped, strict (no completion before
    // the SMMU confirmed the invalidation): the driver's own map and unmap, each unmap
    // with its CMD_SYNC; against the mapping queue, in batches of `QUEUE_REQUESTS`
    // requests' worth of entries (each batch carries the previous requests' UNMAPs and
    // the next ones' MAPs, one CMD_SYNC for the batch). The queue's side is everything
    // but the notification: the client posting the entries, the service serving them,
    // and the client reading the completions.
    g.bench_function("driver map+unmap 4KiB", |b| {
        let (mut smmu, d) = paths::driver();
        b.iter_custom(|iters| {
            let t = Instant::now();
            paths::driver_map_unmap(&mut smmu, d, iters);
            t.elapsed()
        });
    });
    g.bench_function(format!("queue MAP+UNMAP 4KiB, {} entries a batch", 2 * QUEUE_REQUESTS), |b| {
        let mut s = paths::service();
        let mut run = QueueRun::new(&mut s);
        b.iter_custom(|iters| {
            let batches = iters.div_ceil(QUEUE_REQUESTS);
            let t = Instant::now();
            let errors = paths::queue(&mut s, &mut run, batches);
            let elapsed = t.elapsed();
            assert_eq!(errors, 0, "every entry succeeded");
            // Per request: the batches were whole.
            elapsed * iters as u32 / (batches * QUEUE_REQUESTS) as u32
        });
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let sizes = iommu_pd::state_sizes();
    println!(
        "service state: {} bytes per client, {} per capability, {} per mapping, {} per device, {} fixed",
        sizes.per_client, sizes.per_capability, sizes.per_mapping, sizes.per_device, sizes.fixed
    );
    let mut g = c.benchmark_group("service");
    // 4 KiB pages are in `service_vs_driver`, against the driver alone.
    let (name, len) = ("2MiB", 2u64 << 20);
    g.bench_function(format!("MAP {name}"), |b| {
        let mut s = paths::service();
        b.iter_custom(|iters| timed_pairs(&mut s, iters, len, true));
    });
    g.bench_function(format!("UNMAP {name} (TLBI + SYNC)"), |b| {
        let mut s = paths::service();
        b.iter_custom(|iters| timed_pairs(&mut s, iters, len, false));
    });
    g.bench_function("UNMAP 64 x 4KiB in one request (one SYNC)", |b| {
        let mut s = paths::service();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let iovas: Vec<u64> = (0..64).map(|i| iova(call(&mut s, map_req(i * 4096, 4096)))).collect();
                let t = Instant::now();
                black_box(call(&mut s, unmap_req(&iovas)));
                total += t.elapsed();
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, service_vs_driver, bench);
criterion_main!(benches);
