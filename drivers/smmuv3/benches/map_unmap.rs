//! Cost of the driver's mapping paths on the host, against aarch64-paging's `map_range`
//! doing the same page-table work in the same run.
//!
//! The SMMU here is `model::InstantSmmu`: registers in memory, and a command queue whose
//! consumer index jumps to the producer index when the doorbell rings. So `unmap` pays
//! for everything the driver does (table walk, clearing the entry, writing CMD_TLBI_NH_VA
//! and CMD_SYNC into the queue in memory, ringing the doorbell, polling CMDQ_CONS) but
//! nothing for the hardware's work.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use aarch64_paging::descriptor::{El1Attributes as A, PhysicalAddress};
use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, RootTable, VaRange};
use aarch64_paging::target::TargetAllocator;
use common::{BASE, OUT, PAGES};
use criterion::{criterion_group, criterion_main, Criterion};
use smmuv3::model::{instant_smmu, InstantSmmu};
use smmuv3::{DomainId, Iova, MemType, Perm, PhysAddr, Smmu};

fn smmu() -> (Smmu<InstantSmmu>, DomainId) {
    let mut smmu = instant_smmu(256);
    let d = smmu.create_domain().unwrap();
    (smmu, d)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("map_unmap");

    g.bench_function("smmuv3 map 4KiB", |b| common::warm_maps(b, smmu(), 4096, OUT));

    g.bench_function("smmuv3 unmap 4KiB (TLBI + SYNC)", |b| common::unmaps(b, smmu()));

    g.bench_function("smmuv3 unmap 64x4KiB batch (one SYNC)", |b| {
        let (mut smmu, d) = smmu();
        let ranges: Vec<(Iova, u64)> = (0..64).map(|i| (Iova(BASE + i * 4096), 4096)).collect();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                smmu.map(d, Iova(BASE), PhysAddr(OUT), 64 * 4096, Perm::ReadWrite, MemType::Normal).unwrap();
                let t = Instant::now();
                black_box(smmu.unmap_batch(d, &ranges).unwrap());
                total += t.elapsed();
            }
            total
        });
    });

    // A 64 KiB buffer, blk-bench's request: 16 CMD_TLBI_NH_VA without range
    // invalidation, one range command with it (QEMU's SMMU, and this model, have RIL).
    g.bench_function("smmuv3 unmap 16x4KiB buffer (one call)", |b| {
        let (mut smmu, d) = smmu();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                smmu.map(d, Iova(BASE), PhysAddr(OUT + 4096), 16 * 4096, Perm::ReadWrite, MemType::Normal).unwrap();
                let t = Instant::now();
                black_box(smmu.unmap(d, Iova(BASE), 16 * 4096).unwrap());
                total += t.elapsed();
            }
            total
        });
    });

    g.bench_function("smmuv3 map 2MiB block", |b| common::warm_maps(b, smmu(), 2 << 20, OUT));

    let flags =
        A::VALID | A::ATTRIBUTE_INDEX_0 | A::INNER_SHAREABLE | A::USER | A::ACCESSED | A::NON_GLOBAL | A::PXN | A::UXN;

    g.bench_function("aarch64-paging map_range 4KiB", |b| {
        let mut pt = RootTable::with_va_range(TargetAllocator::new(0x1_0000), 0, El1And0, VaRange::Lower);
        let base = BASE as usize;
        pt.map_range(
            &MemoryRegion::new(base, base + PAGES as usize * 4096),
            PhysicalAddress(OUT as usize),
            flags,
            Constraints::NO_BLOCK_MAPPINGS,
        )
        .unwrap();
        let mut i = 0usize;
        b.iter(|| {
            let va = base + (i % PAGES as usize) * 4096;
            pt.map_range(
                &MemoryRegion::new(va, va + 4096),
                PhysicalAddress(OUT as usize + (va - base)),
                flags,
                Constraints::empty(),
            )
            .unwrap();
            i += 1;
        });
    });

    g.bench_function("aarch64-paging map_range 2MiB block", |b| {
        let mut pt = RootTable::with_va_range(TargetAllocator::new(0x1_0000), 0, El1And0, VaRange::Lower);
        const BLOCK: usize = 2 << 20;
        let base = BASE as usize;
        pt.map_range(
            &MemoryRegion::new(base, base + 512 * BLOCK),
            PhysicalAddress(OUT as usize),
            flags,
            Constraints::empty(),
        )
        .unwrap();
        let mut i = 0usize;
        b.iter(|| {
            let va = base + (i % 512) * BLOCK;
            pt.map_range(
                &MemoryRegion::new(va, va + BLOCK),
                PhysicalAddress(OUT as usize + (va - base)),
                flags,
                Constraints::empty(),
            )
            .unwrap();
            i += 1;
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
