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
    // The banks devices get are the driver's: every stage-1 bank but its sink.
    assert_eq!(m.device_banks(), f.domain_banks(), "{}", p.name);
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

/// The SDK this project builds with: `MICROKIT_SDK`, or `../shared/microkit-sdk` beside the
/// project's root (where every developer's and CI's machine has one).
fn sdk() -> Option<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::var_os("MICROKIT_SDK").map_or_else(|| root.join("../shared/microkit-sdk"), Into::into);
    dir.join("board").is_dir().then_some(dir)
}

/// The `[start, end)` ranges of `key` in seL4's platform_gen.json (a list of objects with
/// `start` and `end`), read without a JSON library: the file is the kernel build's own.
fn ranges(json: &str, key: &str) -> Vec<(u64, u64)> {
    let at = json.find(&format!("\"{key}\"")).unwrap_or_else(|| panic!("no {key} in {json}"));
    let list = &json[at..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    let number = |field: &str, obj: &str| -> u64 {
        let v = &obj[obj.find(field).unwrap() + field.len()..];
        let v = v.trim_start_matches(|c: char| c == '"' || c == ':' || c.is_whitespace());
        v[..v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len())].parse().unwrap()
    };
    list.split('}').filter(|o| o.contains("start")).map(|o| (number("\"start\"", o), number("\"end\"", o))).collect()
}

/// The board table's RAM, held to the kernel's own view of each board the SDK has
/// (platform_gen.json, which seL4's build writes from the board's device tree): every
/// range the kernel calls memory is in the table's RAM, and the table's RAM beyond it is
/// exactly what seL4 reserves on that board (on QEMU virt, the first 512 MiB, for guests:
/// overlay-reserve-vm-memory.dts), listed among the kernel's device ranges, not missing
/// from both.
#[test]
fn the_boards_ram_is_the_kernels() {
    let Some(sdk) = sdk() else {
        eprintln!("skipped: no Microkit SDK (MICROKIT_SDK or ../shared/microkit-sdk)");
        return;
    };
    let reserved: &[(&str, &[(u64, u64)])] =
        &[("qemu_virt_aarch64", &[(0x4000_0000, 0x6000_0000)]), ("zcu102", &[]), ("tqma8xqp1gb", &[])];
    let mut checked = 0;
    for entry in std::fs::read_dir(sdk.join("board")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let board = iommu_sdf::Board::named(&name);
        for config in std::fs::read_dir(entry.path()).unwrap() {
            let path = config.unwrap().path().join("platform_gen.json");
            let Ok(json) = std::fs::read_to_string(&path) else { continue };
            let memory = ranges(&json, "memory");
            let devices = ranges(&json, "devices");
            assert!(!memory.is_empty(), "{}", path.display());
            for &(s, e) in &memory {
                assert!(
                    board.in_ram(s.into(), e.into()),
                    "{name}: kernel memory {s:#x}..{e:#x} is not in {}",
                    board.ram_text()
                );
            }
            // What the table calls RAM and the kernel does not must be the board's known
            // reservation, which the kernel lists as device memory.
            let expected =
                reserved.iter().find(|(b, _)| *b == name).unwrap_or_else(|| panic!("{name}: not in this test")).1;
            let mut extra = Vec::new();
            for &(base, size) in board.ram {
                let mut at = base;
                for &(s, e) in memory.iter().filter(|&&(s, e)| s < base + size && base < e) {
                    if s > at {
                        extra.push((at, s));
                    }
                    at = at.max(e);
                }
                if at < base + size {
                    extra.push((at, base + size));
                }
            }
            assert_eq!(extra, expected, "{name}: RAM the kernel does not call memory");
            for &(s, e) in &extra {
                assert!(
                    devices.iter().any(|&(ds, de)| ds <= s && e <= de),
                    "{name}: {s:#x}..{e:#x} is neither memory nor device"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} SDK board configurations");
}

/// `check`'s last line claims only what the board's SMMU enforces: on i.MX8QXP, where the
/// IOMMU PD attaches each StreamID under the mask 0x7f80, a StreamID that differs from a
/// listed one in masked bits is translated as it, so not "every other stream aborts".
#[test]
fn the_summary_names_the_mask_where_streams_are_matched_under_one() {
    for (file, board, masked) in [("zcu102.xml", "zcu102", false), ("tqma8xqp1gb.xml", "tqma8xqp1gb", true)] {
        let b = iommu_sdf::Board::named(board);
        let (sys, problems) = iommu_sdf::check_text_on(&image(file), &b);
        assert!(problems.is_empty(), "{file}: {problems:#?}");
        let line = iommu_sdf::summary_on(&sys, &b);
        assert_eq!(line.contains("every other stream aborts"), !masked, "{file}: {line}");
        assert_eq!(line.contains("under the SMMU's mask 0x7f80"), masked, "{file}: {line}");
    }
}

/// The table's timer frequency is the SDK's seL4's (CONFIG_TIMER_FREQUENCY in each board's
/// and configuration's gen_config.h): the storm window's ticks are counted in it.
#[test]
fn the_boards_timer_is_the_kernels() {
    let Some(sdk) = sdk() else {
        eprintln!("skipped: no Microkit SDK (MICROKIT_SDK or ../shared/microkit-sdk)");
        return;
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(sdk.join("board")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        for config in std::fs::read_dir(entry.path()).unwrap() {
            let path = config.unwrap().path().join("include/kernel/gen_config.h");
            let header = std::fs::read_to_string(&path).unwrap();
            let hz = header
                .lines()
                .find_map(|l| l.strip_prefix("#define CONFIG_TIMER_FREQUENCY")?.trim().parse::<u64>().ok());
            assert_eq!(iommu_sdf::Board::named(&name).timer_hz, hz, "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked}");
}
