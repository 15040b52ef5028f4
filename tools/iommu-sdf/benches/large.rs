//! `check` and `build` of descriptions at the limits: 62 PDs (the IOMMU PD and 61 drivers:
//! its channel to client i has id i + 1, and the Microkit tool takes ids up to 61), 1,024 regions, 4,096 DMA capabilities and 512 streams (64 devices, the
//! most the IOMMU PD serves, with 8 StreamIDs each); and at a quarter and a half of the
//! regions and capabilities, to show how the cost grows. Then hostile descriptions of
//! 20,000 elements of one kind (10,000 x86 iomaps), which `check` must answer in near
//! linear time whether it accepts them or not.

use criterion::{criterion_group, criterion_main, Criterion};
use iommu_sdf::{check_text_for, Target};

const OK: &str = include_str!("../tests/sdf/ok.xml");
const OK_VM: &str = include_str!("../tests/sdf/ok-vm.xml");
const OK_X86: &str = include_str!("../tests/sdf/x86/ok.xml");
const N: usize = 20_000;

/// `text` with `lines` added after `after` (its first occurrence).
fn after(text: &str, after: &str, lines: impl Iterator<Item = String>) -> String {
    let added: String = lines.collect();
    text.replacen(after, &format!("{after}\n{added}"), 1)
}

/// The hostile descriptions: (what, target, text).
fn hostile() -> Vec<(&'static str, Target, String)> {
    let regions = after(
        OK,
        "<system>",
        (0..N).map(|i| format!("<memory_region name=\"r{i}\" size=\"0x1000\" phys_addr=\"0x50000000\" />\n")),
    );
    let iomaps = after(
        OK,
        "iova_base=\"0x1_0000_0000\" iova_size=\"0x10_0000\">",
        (0..N).map(|i| {
            format!(
                "<iomap mr=\"edu_buffers\" iovaddr=\"{:#x}\" perms=\"rw\" />\n",
                0x1_0000_0000u64 + i as u64 * 0x8000
            )
        }),
    );
    let chain = OK.replace(
        "</system>",
        &(0..N)
            .map(|i| {
                let parent = if i == 0 { "edu_all".to_string() } else { format!("d{}", i - 1) };
                format!("<dma_capability name=\"d{i}\" pd=\"edu_driver\" parent=\"{parent}\" size=\"0x1000\" perms=\"rw\" devices=\"edu0\" />\n")
            })
            .chain(std::iter::once("</system>".to_string()))
            .collect::<String>(),
    );
    let pds = OK.replace(
        "</system>",
        &(0..N)
            .map(|i| format!("<protection_domain name=\"p{i}\" priority=\"1\"><program_image path=\"x.elf\" /><map mr=\"edu_buffers\" vaddr=\"0x4000000\" perms=\"r\" /></protection_domain>\n"))
            .chain(std::iter::once("</system>".to_string()))
            .collect::<String>(),
    );
    let vm_open = OK_VM.find("<virtual_machine").and_then(|i| OK_VM[i..].find('>').map(|j| &OK_VM[i..i + j + 1]));
    let guest = after(
        &after(OK_VM, "<system>", (0..N).map(|i| format!("<memory_region name=\"g{i}\" size=\"0x1000\" />\n"))),
        vm_open.unwrap_or("<virtual_machine"),
        (0..N)
            .map(|i| format!("<map mr=\"g{i}\" vaddr=\"{:#x}\" perms=\"rw\" />\n", 0x8000_0000u64 + i as u64 * 0x1000)),
    );
    let x86 = OK_X86.replacen(
        "<iomap mr=\"nic_buffers\" iovaddr=\"0x100000\" perms=\"rw\" />",
        &(0..N / 2)
            .map(|i| {
                format!(
                    "<iomap mr=\"nic_buffers\" iovaddr=\"{:#x}\" perms=\"rw\" />\n",
                    0x1000_0000u64 + i as u64 * 0x4000
                )
            })
            .collect::<String>(),
        1,
    );
    vec![
        ("20,000 regions at one address", Target::Arm, regions),
        ("20,000 iomaps in one device", Target::Arm, iomaps),
        ("a derivation chain of 20,000 capabilities", Target::Arm, chain),
        ("20,000 protection domains", Target::Arm, pds),
        ("20,000 guest maps", Target::Arm, guest),
        ("10,000 x86 iomaps", Target::X86_64, x86),
    ]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("check + build");
    for (regions, extra) in [(256usize, 3usize), (512, 3), (1024, 3)] {
        let text = iommu_sdf::gen::description_sized(7, 61, regions, 64, extra, 8);
        let (sys, problems) = iommu_sdf::check_text(&text);
        assert!(problems.is_empty(), "{problems:?}");
        let caps = sys.caps.len();
        let streams: usize = sys.io_spaces.iter().map(|s| 1 + s.extra_streams.len()).sum();
        println!("large: 62 PDs, {regions} regions, {caps} DMA capabilities, {streams} streams");
        g.bench_function(format!("62 PDs, {regions} regions, {caps} capabilities, {streams} streams"), |b| {
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
    let mut g = c.benchmark_group("check, hostile");
    g.sample_size(10);
    for (what, target, text) in hostile() {
        let (_, problems) = check_text_for(&text, target);
        println!("hostile: {what}: {} problem(s)", problems.len());
        g.bench_function(what, |b| b.iter(|| std::hint::black_box(check_text_for(&text, target))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
