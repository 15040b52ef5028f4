//! Stage 1 against stage 2, side by side in one run: what the driver's map and unmap
//! cost in a stage-1 domain (CD, ASID, CMD_TLBI_NH_VA) and in a stage-2 domain (STE
//! VTCR, VMID, CMD_TLBI_S2_IPA), on the same `model::InstantSmmu` (registers in memory,
//! every command consumed the moment the doorbell rings: the driver's work, not the
//! SMMU's). Both domains have 31-bit input addresses, what images/linux-guest.xml's VM
//! needs, so both walks start at level 1 and the two differ only in their stage.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use smmuv3::model::InstantSmmu;
use smmuv3::{DomainId, Iova, MemType, Perm, PhysAddr, Smmu};

const PAGES: u64 = 512;
/// Guest-physical RAM, as the Linux guest's.
const BASE: u64 = 0x4000_0000;
/// Physical memory the mappings point at: never touched, only named.
const OUT: u64 = 0x8000_0000;
const IPA_BITS: u32 = 31;

#[derive(Clone, Copy)]
enum Stage {
    One,
    Two,
}

fn domain(stage: Stage) -> (Smmu<InstantSmmu>, DomainId) {
    let mut smmu = smmu_31();
    let d = match stage {
        Stage::One => smmu.create_domain().unwrap(),
        Stage::Two => smmu.create_stage2_domain(IPA_BITS).unwrap(),
    };
    (smmu, d)
}

/// The instant SMMU with the stage-1 configuration at 31 bits too.
fn smmu_31() -> Smmu<InstantSmmu> {
    let mem = smmuv3::Memory {
        stream_table: smmuv3::model::host_region(64 << 10, 64 << 10),
        cmdq: smmuv3::model::host_region(64 << 10, 64 << 10),
        eventq: smmuv3::model::host_region(4096, 4096),
        cds: smmuv3::model::host_region(4096, 4096),
        tables: smmuv3::model::host_region(256 * 4096, 4096),
    };
    let cfg = smmuv3::Config { ias_bits: IPA_BITS, interrupts: false, ..smmuv3::model::host_config() };
    // SAFETY: fresh memory; this register file is the only one.
    unsafe { Smmu::init(InstantSmmu::new(), mem, cfg) }.unwrap()
}

/// Maps of 4 KiB into warm tables, unmapped (untimed) every `PAGES`.
fn maps(b: &mut criterion::Bencher, stage: Stage) {
    let (mut smmu, d) = domain(stage);
    smmu.map(d, Iova(BASE), PhysAddr(OUT + 4096), 4096 * PAGES, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap(d, Iova(BASE), 4096 * PAGES).unwrap();
    b.iter_custom(|iters| {
        let (mut total, mut done) = (Duration::ZERO, 0);
        while done < iters {
            let n = (iters - done).min(PAGES);
            let t = Instant::now();
            for i in 0..n {
                let (iova, pa) = (Iova(BASE + i * 4096), PhysAddr(OUT + 4096 + i * 4096));
                smmu.map(d, iova, pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
            }
            total += t.elapsed();
            smmu.unmap(d, Iova(BASE), n * 4096).unwrap();
            done += n;
        }
        total
    });
}

/// Unmaps of 4 KiB, each with its TLBI and CMD_SYNC; mapped (untimed) every `PAGES`.
fn unmaps(b: &mut criterion::Bencher, stage: Stage) {
    let (mut smmu, d) = domain(stage);
    b.iter_custom(|iters| {
        let (mut total, mut done) = (Duration::ZERO, 0);
        while done < iters {
            let n = (iters - done).min(PAGES);
            // An output address off 2 MiB alignment keeps these 4 KiB pages, not a block.
            smmu.map(d, Iova(BASE), PhysAddr(OUT + 4096), n * 4096, Perm::ReadWrite, MemType::Normal).unwrap();
            let t = Instant::now();
            for i in 0..n {
                black_box(smmu.unmap(d, Iova(BASE + i * 4096), 4096).unwrap());
            }
            total += t.elapsed();
            done += n;
        }
        total
    });
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("stages");
    g.bench_function("stage 1 map 4KiB", |b| maps(b, Stage::One));
    g.bench_function("stage 2 map 4KiB", |b| maps(b, Stage::Two));
    g.bench_function("stage 1 unmap 4KiB (TLBI_NH_VA + SYNC)", |b| unmaps(b, Stage::One));
    g.bench_function("stage 2 unmap 4KiB (TLBI_S2_IPA + SYNC)", |b| unmaps(b, Stage::Two));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
