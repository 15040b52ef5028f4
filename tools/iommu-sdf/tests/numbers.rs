//! Each client's generated numbers (`<pd>_iommu.h`, `<pd>_iommu.rs`) are the generated
//! policy's: a device id names that device, owned by that client, with its StreamID; a
//! capability's handle is its place among the client's capabilities in the policy, with
//! its size; and the header is C a compiler takes.

use std::path::Path;

fn check(sys: &iommu_sdf::model::System) {
    let p = iommu_sdf::policy::policy(sys);
    for n in iommu_sdf::numbers::numbers(sys) {
        assert_eq!(p.clients[n.client].0, n.pd);
        for (d, id, stream) in &n.devices {
            let (name, cfg) = &p.devices[*id];
            assert_eq!((name, cfg.owner, cfg.stream), (&d.as_str(), n.client, *stream));
        }
        let mine: Vec<_> = p.caps.iter().filter(|(_, c)| c.client == n.client).collect();
        assert_eq!(mine.len(), n.caps.len());
        for (c, handle, size) in &n.caps {
            let (name, cfg) = mine[*handle];
            assert_eq!((*name, cfg.len), (c.as_str(), *size));
        }
        let channel = sys.channels.iter().find_map(|c| {
            let (mine, theirs) = c.end_of(&n.pd)?;
            (Some(theirs.pd.as_str()) == sys.iommu.as_ref().map(|i| i.pd.as_str()) && mine.pp).then_some(mine.id)
        });
        assert_eq!(n.channel, channel);
    }
}

#[test]
fn the_numbers_are_the_policys() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml")).unwrap();
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    check(&sys);
    for seed in 0..40 {
        let text = iommu_sdf::gen::description(seed, 1 + (seed % 5) as usize, 6, 1 + (seed % 7) as usize);
        let (sys, problems) = iommu_sdf::check_text(&text);
        assert!(problems.is_empty(), "{problems:?}");
        check(&sys);
    }
}

/// The C driver of system.xml used to count these by hand: device 3 (edu C, its fourth
/// io_address_space), client 0 (the edu driver) to lend to, channel 0. The header says the
/// same, and a C compiler takes it.
#[test]
fn the_c_header_compiles_and_names_what_the_c_driver_counted() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml")).unwrap();
    let (sys, _) = iommu_sdf::check_text(&text);
    let n = iommu_sdf::numbers::numbers(&sys).into_iter().find(|n| n.pd == "c_edu_driver").unwrap();
    let header = iommu_sdf::numbers::c_header(&n, "system.xml");
    let dir = std::env::temp_dir().join(format!("iommu-numbers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("c_edu_driver_iommu.h"), &header).unwrap();
    std::fs::write(
        dir.join("t.c"),
        "#include \"c_edu_driver_iommu.h\"\n\
         _Static_assert(C_EDU_DRIVER_DEV_EDU_C == 3, \"device\");\n\
         _Static_assert(IOMMU_CLIENT_EDU_DRIVER == 0, \"client\");\n\
         _Static_assert(C_EDU_DRIVER_IOMMU_CHANNEL == 0, \"channel\");\n\
         _Static_assert(IOMMU_DEVICE_EDU_A == 0, \"the edu driver's device\");\n\
         _Static_assert(C_EDU_DRIVER_CAP_C_BUFFERS_SIZE == 0x1000, \"size\");\n",
    )
    .unwrap();
    let out =
        std::process::Command::new("gcc").args(["-fsyntax-only", "-Wall", "-Werror", "t.c"]).current_dir(&dir).output();
    let out = out.expect("gcc, which make deps installs, runs");
    assert!(out.status.success(), "{}\n{header}", String::from_utf8_lossy(&out.stderr));
}

/// Two names of one client that give one macro are refused: a device `a` (`..._DEV_A_STREAM`)
/// and a device `a_stream` (`..._DEV_A_STREAM`).
#[test]
fn names_that_give_one_macro_are_refused() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/ok.xml")).unwrap();
    let text = text.replace(
        "<dma_capability name=\"blk_pool\"",
        "<dma_capability name=\"blk_pool_size\" pd=\"blk_driver\" mr=\"blk_pool\" size=\"0x1000\" perms=\"rw\" devices=\"blk0\" />\n    <dma_capability name=\"blk_pool\"",
    );
    let (_, problems) = iommu_sdf::check_text(&text);
    assert!(problems.iter().any(|p| p.message.contains("BLK_DRIVER_CAP_BLK_POOL_SIZE")), "{problems:#?}");
}

/// A generated macro that the C kit defines too is refused: a client `iommu_err_bad` gets
/// `IOMMU_ERR_BAD_CLIENT` (its client id, 1), which iommu_service.h defines as an error
/// code (gcc -Werror refused the pair as redefined; without it the driver read 12 as its
/// id), and a client `h` gets `IOMMU_CLIENT_H`, iommu_client.h's include guard, which
/// kept the whole of iommu_client.h out of a driver that included its own header first.
#[test]
fn names_that_give_a_macro_of_the_c_kit_are_refused() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/ok.xml")).unwrap();
    for (pd, macro_name) in [("iommu_err_bad", "IOMMU_ERR_BAD_CLIENT"), ("h", "IOMMU_CLIENT_H")] {
        let (_, problems) = iommu_sdf::check_text(&text.replace("blk_driver", pd));
        let hit = problems.iter().find(|p| p.message.contains(macro_name) && p.message.contains("iommu_service.h"));
        assert!(hit.is_some(), "{pd}: {problems:#?}");
    }
    // The same description with its own names passes: the kit's macros are compared
    // whole, not by prefix.
    let (_, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The macros of libmicrokit's microkit.h that no generated macro may be: the SDK's own
/// header, for every board and configuration it has, defines exactly these (skipped,
/// saying so, without an SDK: `MICROKIT_SDK` or ../shared/microkit-sdk).
#[test]
fn libmicrokit_macros_are_the_sdks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let sdk = std::env::var_os("MICROKIT_SDK").map_or_else(|| root.join("shared/microkit-sdk"), Into::into);
    let Ok(boards) = std::fs::read_dir(Path::new(&sdk).join("board")) else {
        eprintln!("skipped: no Microkit SDK (MICROKIT_SDK or ../shared/microkit-sdk)");
        return;
    };
    let mut headers = 0;
    for board in boards.flatten() {
        for config in std::fs::read_dir(board.path()).unwrap().flatten() {
            let header = std::fs::read_to_string(config.path().join("include/microkit.h")).unwrap();
            let mut defined: Vec<&str> = header
                .lines()
                .filter_map(|l| {
                    l.trim_start().strip_prefix("#define ")?.split(|c: char| c.is_whitespace() || c == '(').next()
                })
                .collect();
            defined.sort_unstable();
            let mut ours = iommu_sdf::numbers::LIBMICROKIT_MACROS.to_vec();
            ours.sort_unstable();
            assert_eq!(defined, ours, "{}", config.path().display());
            headers += 1;
        }
    }
    assert!(headers > 0);
}
