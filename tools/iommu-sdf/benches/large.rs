//! A description with 60 PDs, 256 regions and 64 streams (about the most the IOMMU PD and
//! Microkit take): check and build.

use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let text = iommu_sdf::gen::description(7, 60, 256, 64);
    c.bench_function("check + build: 60 PDs, 256 regions, 64 streams", |b| {
        b.iter(|| {
            let (sys, problems) = iommu_sdf::check_text(&text);
            assert!(problems.is_empty());
            let system = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
            let policy = iommu_sdf::build::policy_rust(&sys, "large");
            std::hint::black_box((system, policy));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
