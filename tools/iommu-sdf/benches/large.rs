//! `check` and `build` of descriptions at the limits: Microkit's 63 PDs (the IOMMU PD and
//! 62 drivers), 1,024 regions, 4,096 DMA capabilities and 512 streams (64 devices, the
//! most the IOMMU PD serves, with 8 StreamIDs each); and at a quarter and a half of the
//! regions and capabilities, to show how the cost grows.

use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("check + build");
    for (regions, extra) in [(256usize, 3usize), (512, 3), (1024, 3)] {
        let text = iommu_sdf::gen::description_sized(7, 62, regions, 64, extra, 8);
        let (sys, problems) = iommu_sdf::check_text(&text);
        assert!(problems.is_empty(), "{problems:?}");
        let caps = sys.caps.len();
        let streams: usize = sys.io_spaces.iter().map(|s| 1 + s.extra_streams.len()).sum();
        println!("large: 63 PDs, {regions} regions, {caps} DMA capabilities, {streams} streams");
        g.bench_function(format!("63 PDs, {regions} regions, {caps} capabilities, {streams} streams"), |b| {
            b.iter(|| {
                let (sys, problems) = iommu_sdf::check_text(&text);
                assert!(problems.is_empty());
                let system = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
                let policy = iommu_sdf::build::policy_rust(&sys, "large");
                std::hint::black_box((system, policy));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
