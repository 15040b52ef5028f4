//! Stage 1 against stage 2, side by side in one run: what the driver's map and unmap
//! cost in a stage-1 domain (CD, ASID, CMD_TLBI_NH_VA) and in a stage-2 domain (STE
//! VTCR, VMID, CMD_TLBI_S2_IPA), on the same `model::InstantSmmu` (registers in memory,
//! every command consumed the moment the doorbell rings: the driver's work, not the
//! SMMU's). Both domains have 31-bit input addresses, what images/linux-guest.xml's VM
//! needs, so both walks start at level 1 and the two differ only in their stage.

mod common;

use common::OUT;
use criterion::{criterion_group, criterion_main, Criterion};
use smmuv3::model::InstantSmmu;
use smmuv3::{DomainId, Smmu};

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

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("stages");
    // Output addresses off 2 MiB alignment: 4 KiB pages, never blocks.
    g.bench_function("stage 1 map 4KiB", |b| common::warm_maps(b, domain(Stage::One), 4096, OUT + 4096));
    g.bench_function("stage 2 map 4KiB", |b| common::warm_maps(b, domain(Stage::Two), 4096, OUT + 4096));
    g.bench_function("stage 1 unmap 4KiB (TLBI_NH_VA + SYNC)", |b| common::unmaps(b, domain(Stage::One)));
    g.bench_function("stage 2 unmap 4KiB (TLBI_S2_IPA + SYNC)", |b| common::unmaps(b, domain(Stage::Two)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
