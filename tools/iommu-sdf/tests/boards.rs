//! The MMU-500 boards: the table's numbers are the driver's profiles' (one definition of
//! what each SoC's MMU-500 has, checked here rather than copied on trust), and each
//! board's image description passes `check` on its board and on no other SoC's.

use std::path::Path;

use iommu_sdf::board::{BoardIommu, Mmu500, IMX8QXP_MMU500, ZYNQMP_MMU500};
use smmuv2::model::{Profile, IMX8QXP, ZYNQMP};
use smmuv2::probe::{probe, IdRegs, Needs};

fn held_to(m: &Mmu500, p: &Profile) {
    let id = IdRegs { idr0: p.idr0, idr1: p.idr1, idr2: p.idr2, idr7: p.idr7 };
    let needs = Needs { ias_bits: 48, oas_bits: 40, register_span: Some(m.frame.1 as usize) };
    let f = probe(id, needs).unwrap_or_else(|e| panic!("{}: {e}", p.name));
    assert_eq!(m.context_banks, f.stage1_banks(), "{}", p.name);
    assert_eq!(m.smrs, f.num_smrg, "{}", p.name);
    assert_eq!(m.stream_bits, f.sid_bits, "{}", p.name);
    // The device tree's `reg` size is the register file IDR1 describes, exactly.
    assert_eq!(m.frame.1 as usize, f.layout.span(), "{}", p.name);
}

#[test]
fn the_boards_mmu500_counts_are_the_driver_profiles() {
    held_to(&ZYNQMP_MMU500, &ZYNQMP);
    held_to(&IMX8QXP_MMU500, &IMX8QXP);
    for name in ["zcu102", "ultra96v2", "kria_k26"] {
        assert_eq!(iommu_sdf::Board::named(name).iommu, BoardIommu::Mmu500(ZYNQMP_MMU500), "{name}");
    }
    assert_eq!(iommu_sdf::Board::named("tqma8xqp1gb").iommu, BoardIommu::Mmu500(IMX8QXP_MMU500));
}

fn image(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images").join(name)).unwrap()
}

#[test]
fn each_boards_image_passes_on_its_board_only() {
    for (file, boards, others) in [
        ("zcu102.xml", &["zcu102", "ultra96v2", "kria_k26"][..], &["tqma8xqp1gb", "qemu_virt_aarch64"][..]),
        ("tqma8xqp1gb.xml", &["tqma8xqp1gb"][..], &["zcu102", "qemu_virt_aarch64"][..]),
    ] {
        let text = image(file);
        for b in boards {
            let (_, problems) = iommu_sdf::check_text_on(&text, &iommu_sdf::Board::named(b));
            assert!(problems.is_empty(), "{file} on {b}: {problems:#?}");
        }
        // Another SoC's SMMU is elsewhere: the register frame rule says so.
        for b in others {
            let (_, problems) = iommu_sdf::check_text_on(&text, &iommu_sdf::Board::named(b));
            assert!(problems.iter().any(|p| p.message.contains("SMMU register frame")), "{file} on {b}: {problems:#?}");
        }
    }
}
