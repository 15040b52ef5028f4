//! `build`: the Microkit file has none of this project's elements and still passes
//! `check`; the generated policy compiles against the service core and starts it.

use std::path::Path;

mod ok_policy {
    include!(concat!(env!("OUT_DIR"), "/ok_policy.rs"));
}

// Only its PCI tables are looked at here.
#[allow(dead_code)]
mod ok_pci_policy {
    include!(concat!(env!("OUT_DIR"), "/ok_pci_policy.rs"));
}

fn sdf(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf").join(name)).unwrap()
}

#[test]
fn microkit_file_has_no_extensions_and_passes_check() {
    let text = sdf("ok.xml");
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty());
    let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
    for ours in ["<io_address_space", "<dma_capability", "<dma_quota", "<iommu "] {
        assert!(!out.contains(ours), "{ours} left in:\n{out}");
    }
    // The IOMMU PD learns the physical address of each DMA region.
    assert!(out.contains(r#"<setvar symbol="iommu_paddr_edu_buffers" region_paddr="edu_buffers" />"#), "{out}");
    assert!(out.contains(r#"<setvar symbol="iommu_paddr_blk_pool" region_paddr="blk_pool" />"#));
    let (_, again) = iommu_sdf::check_text(&out);
    assert!(again.is_empty(), "{again:#?}\n{out}");
}

#[test]
fn generated_policy_starts_the_service() {
    use ok_policy::*;
    assert_eq!(CLIENTS.iter().map(|c| c.name).collect::<Vec<_>>(), ["edu_driver", "blk_driver"]);
    assert_eq!(DEVICES.map(|d| (d.stream, d.owner, d.resume_allowed)), [(0x10, 0, true), (0x28, 1, false)]);
    assert_eq!((FAULT_WINDOW_US, MAX_FAULTS), (500_000, 64));
    assert_eq!(REGION_PADDR_SYMBOLS, ["iommu_paddr_edu_buffers", "iommu_paddr_blk_pool"]);
    // Both regions have fixed addresses in ok.xml.
    assert_eq!(region_paddrs(), [0x4800_0000, 0x4810_0000]);
    // blk_half is flattened onto blk_pool at offset 0x10000.
    assert_eq!((CAPS[2].region, CAPS[2].offset, CAPS[2].len), (1, 0x10000, 0x10000));
    // edu_all may be granted to blk_driver (client 1) only; the others to no one.
    assert_eq!(CAPS.map(|c| c.grant_to), [0b10, 0, 0]);
    let mut storage = PolicyStorage::default();
    let faults = iommu_pd::FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 };
    let s = iommu_pd::Service::new(iommu_pd::model::ModelHw::default(), config(&REGIONS, faults), storage.storage())
        .expect("the generated policy is accepted");
    // The description's iomap is mapped at boot: edu_buffers (8 pages) at 0x1_0000_0000.
    assert_eq!(s.hw().reachable(0).len(), 8);
    assert_eq!(s.hw().reachable(0)[&0x1_0000_0000].0, 0x4800_0000);
}

/// The PCI owner's tables: every `<pci_bridge>` with its bus numbers, and every device
/// that is a PCI function with its configuration address and its `bar=` window; a
/// description with no PCI topology has none.
#[test]
fn generated_policy_has_the_pci_topology() {
    use iommu_pd::{BridgeConfig, BridgeKind::*, PciFunctionConfig};
    use ok_pci_policy::*;
    let bridge = |rid, kind, secondary, subordinate, acs| BridgeConfig { rid, kind, secondary, subordinate, acs };
    assert_eq!(
        PCI_BRIDGES,
        [
            bridge(0x0008, RootPort, 1, 1, true),
            bridge(0x0030, RootPort, 2, 4, true),
            bridge(0x0200, SwitchUpstream, 3, 4, false),
            bridge(0x0300, SwitchDownstream, 4, 4, true),
            bridge(0x0038, PcieToPci, 5, 5, false),
        ]
    );
    let function = |device, rid, bar_base| PciFunctionConfig { device, rid, bar_base, bar_size: 0x10_0000, intx: 0 };
    assert_eq!(
        PCI_FUNCTIONS,
        [
            function(0, 0x0010, 0x1000_0000),
            function(1, 0x0100, 0x1010_0000),
            function(2, 0x0400, 0x1020_0000),
            function(3, 0x0508, 0x1030_0000),
        ]
    );
    // The SMMU sees 05:01.0, below the PCI Express to PCI bridge, as 05:00.0.
    assert_eq!(DEVICES.map(|d| d.stream), [0x10, 0x100, 0x400, 0x500]);
    // ok.xml: edu0 is 00:02.0 with no BAR window; blk0 is a bare StreamID, no function.
    assert!(ok_policy::PCI_BRIDGES.is_empty());
    assert_eq!(
        ok_policy::PCI_FUNCTIONS,
        [PciFunctionConfig { device: 0, rid: 0x10, bar_base: 0, bar_size: 0, intx: 0 }]
    );
}

/// Which INTx pins of each function are on a line its owner's PD holds, through the
/// bridges' swizzle and QEMU virt's `interrupt-map` (pin p of root slot s is INTID
/// 35 + (p + s) % 4): `ok-pci.xml` with `legacy_driver` holding 35 and `edu_driver` 37.
/// edu0 (00:02.0) has INTA# on 37, and INTC# on 35, which is the other PD's; edu_rp
/// (01:00.0, root port in slot 1) INTB# on 37; edu_sw (04:00.0, below a switch whose
/// ports sit at device 0, below the root port in slot 6) INTA# on 37; edu_legacy (05:01.0,
/// behind the PCIe-to-PCI bridge in slot 7: its INTA# comes out as the bridge's INTB#)
/// INTA# on 35. Without the lines no pin is anyone's, and the PCI owner keeps every
/// function's INTx disabled.
#[test]
fn a_functions_intx_pins_are_those_on_lines_its_owner_holds() {
    let intx = |text: &str| -> Vec<u8> {
        let (sys, problems) = iommu_sdf::check_text(text);
        assert!(problems.is_empty(), "{problems:?}");
        iommu_sdf::topology::functions(&sys).iter().map(|f| f.intx).collect()
    };
    let text = sdf("ok-pci.xml");
    assert_eq!(intx(&text), [0, 0, 0, 0]);
    let with_lines = text
        .replace(
            r#"<program_image path="edu-driver.elf" />"#,
            r#"<program_image path="edu-driver.elf" /><irq irq="37" id="1" trigger="level" />"#,
        )
        .replace(
            r#"<program_image path="legacy-driver.elf" />"#,
            r#"<program_image path="legacy-driver.elf" /><irq irq="35" id="1" trigger="level" />"#,
        );
    assert_eq!(intx(&with_lines), [0b0001, 0b0010, 0b0001, 0b0001]);
}

/// The report of `ok.xml` is compared with the reviewed files beside it; to accept a
/// deliberate change, regenerate them with `iommu-sdf report` and review the diff.
#[test]
fn report_matches_the_reviewed_one() {
    let text = sdf("ok.xml");
    let (sys, _) = iommu_sdf::check_text(&text);
    assert_eq!(iommu_sdf::report::markdown(&sys, "ok.xml"), sdf("ok.report.md"));
    assert_eq!(iommu_sdf::report::svg(&sys), sdf("ok.reach.svg"));
}

/// The report of `ok-pci.xml` shows the bridges with their bus numbers and windows, and
/// the groups with each function's StreamID; compared with the reviewed file.
#[test]
fn the_pci_report_matches_the_reviewed_one() {
    let text = sdf("ok-pci.xml");
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    let md = iommu_sdf::report::markdown(&sys, "ok-pci.xml");
    assert!(md.contains("| 0:7.0 | pcie_to_pci | 5..=5 | off | 0x10300000..0x10400000 |"), "{md}");
    assert!(
        md.contains("| 4 | edu_legacy | legacy_driver | 5:1.0 → 0x500 | legacy_bar 0x10300000..0x10400000 |"),
        "{md}"
    );
    // Its passive IOMMU PD is accepted on the description's word that its callers never
    // send, and the report says whose word it rests on.
    assert!(md.contains("trusts `edu_driver`, `legacy_driver` to call it and never send to it"), "{md}");
    assert_eq!(md, sdf("ok-pci.report.md"));
}

/// Without an IOMMU PD nothing makes a stream abort: the report must not say so, nor
/// offer a proof of isolation.
#[test]
fn a_plain_microkit_description_reports_that_nothing_restricts_dma() {
    let (sys, problems) = iommu_sdf::check_text(&sdf("plain-microkit.xml"));
    assert!(problems.is_empty());
    let md = iommu_sdf::report::markdown(&sys, "plain-microkit.xml");
    assert!(md.contains("No IOMMU PD"), "{md}");
    assert!(!md.contains("abort") && !md.contains("Proof:"), "{md}");
}

/// The repository's own description passes, and its report is the reviewed one.
#[test]
fn the_repository_system_passes_and_its_report_is_reviewed() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml")).unwrap();
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(iommu_sdf::report::markdown(&sys, "system.xml"), sdf("system.report.md"));
    assert_eq!(iommu_sdf::report::svg(&sys), sdf("system.reach.svg"));
    let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
    assert!(iommu_sdf::check_text(&out).1.is_empty());
}

/// `build` keeps the description line for line: the elements it removes leave blank
/// lines and what it adds goes on an existing line, so a line number the Microkit tool
/// reports for the output is the same line of the user's file.
#[test]
fn build_keeps_every_line_where_it_was() {
    for name in ["ok.xml", "ok-children.xml"] {
        let text = sdf(name);
        let (sys, problems) = iommu_sdf::check_text(&text);
        assert!(problems.is_empty(), "{problems:?}");
        let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
        assert_eq!(out.lines().count(), text.lines().count(), "{name}");
        for (i, (o, t)) in out.lines().zip(text.lines()).enumerate() {
            let removed = o.trim().is_empty();
            let added_to = o.contains("<setvar") && o.ends_with(t.trim_start());
            // The IOMMU PD's stack, on its start tag (`the_iommu_pd_gets_the_stack_it_needs`).
            let stack = o.replacen(" stack_size=\"0x40000\"", "", 1) == t && t.contains("name=\"iommu\"");
            assert!(o == t || removed || added_to || stack, "{name}:{}: `{t}` became `{o}`", i + 1);
        }
    }
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../system.xml")).unwrap();
    let (sys, _) = iommu_sdf::check_text(&text);
    let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
    assert_eq!(out.lines().count(), text.lines().count());
}

/// A device with several StreamIDs translates on each of them: its rows in the report
/// name them all, since "every StreamID not in this table aborts" would otherwise be false
/// for the others (a review found only the first listed).
#[test]
fn the_report_names_every_streamid_of_a_device() {
    let text = sdf("ok.xml")
        .replace("name=\"blk0\" peripheral_id=\"0x28\"", "name=\"blk0\" peripheral_id=\"0x28\" streams=\"0x29 0x2a\"");
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    let report = iommu_sdf::report::markdown(&sys, "ok.xml");
    let rows: Vec<&str> = report.lines().filter(|l| l.starts_with("| blk0 |")).collect();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.starts_with("| blk0 | 0x28, 0x29, 0x2a |")), "{report}");
    assert!(report.contains("Every StreamID not in this table aborts."));
}

/// A child id `build` writes goes after the start tag's last attribute, not before the
/// first `>`: a quoted value may hold one (`domain='a>b'`, a domain name the SDK's
/// Microkit tool takes; the image built from this description with the id written by hand
/// is accepted), and an id written inside it left the child without one, so the Microkit
/// tool refused what `check` had accepted.
#[test]
fn a_generated_child_id_lands_after_a_value_holding_a_gt() {
    let text = r#"<system>
    <domains><domain name='a>b' /><domain_schedule><schedule_entry domain='a>b' duration="1000 us" /></domain_schedule></domains>
    <memory_region name="smmu_regs" size="0x20000" phys_addr="0x9050000" />
    <memory_region name="bufs" size="0x4000" />
    <protection_domain name="iommu" priority="254" domain='a>b'>
        <program_image path="iommu.elf" />
        <irq irq="30" id="12" trigger="level" />
        <map mr="smmu_regs" vaddr="0x2000000" perms="rw" cached="false" setvar_vaddr="smmu_regs" />
        <protection_domain name="driver" priority="100" domain='a>b' xmlns:q='c>d'   >
            <program_image path="driver.elf" />
            <map mr="bufs" vaddr="0x5000000" perms="rw" />
        </protection_domain>
    </protection_domain>
    <iommu pd="iommu" />
    <io_address_space name="edu0" peripheral_id="0x10" owner="driver" iova_base="0x1_0000_0000" iova_size="0x10_0000" />
    <dma_capability name="bufs" pd="driver" mr="bufs" size="0x4000" perms="rw" devices="edu0" />
    <dma_quota pd="driver" mappings="4" pages="4" />
</system>"#;
    let (sys, problems) = iommu_sdf::check_text_on(text, &iommu_sdf::Board::default().with_config("debug"));
    assert!(problems.is_empty(), "{problems:#?}");
    let out = iommu_sdf::build::microkit_system(text, &sys).unwrap();
    let doc = roxmltree::Document::parse(&out).unwrap();
    let driver = doc.descendants().find(|n| n.attribute("name") == Some("driver")).unwrap();
    assert_eq!(driver.attribute("id"), Some("1"), "{out}");
    assert_eq!(driver.attribute("domain"), Some("a>b"), "{out}");
}

/// On i.MX8QXP the IOMMU PD attaches each StreamID under the SoC's SMR mask (0x7f80, as
/// NXP's device trees give it: `smmuv2-service`'s `set_smr_mask`), so the SMMU gives every
/// StreamID equal to a listed one in the other bits (0x11, 0x91, ... 0x7f91) that device's
/// translations. The report said "Every StreamID not in this table aborts", which the
/// policy it describes does not do; it now says what is matched. Where the mask is 0 (QEMU
/// virt, ZynqMP) the sentence stands.
#[test]
fn the_report_says_streamids_are_matched_under_the_boards_smr_mask() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/tqma8xqp1gb.xml")).unwrap();
    let board = iommu_sdf::Board::named("tqma8xqp1gb");
    let (sys, problems) = iommu_sdf::check_text_on(&text, &board);
    assert!(problems.is_empty(), "{problems:#?}");
    let md = iommu_sdf::report::markdown_on(&sys, "tqma8xqp1gb.xml", &board);
    assert!(!md.contains("Every StreamID not in this table aborts"), "{md}");
    assert!(md.contains("matched under the mask 0x7f80"), "{md}");
    assert!(md.contains("0x11 stands for 0x11 with any of bits 0x7f80 set"), "{md}");
    let zynqmp = iommu_sdf::Board::named("zcu102");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/zcu102.xml")).unwrap();
    let (sys, problems) = iommu_sdf::check_text_on(&text, &zynqmp);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        iommu_sdf::report::markdown_on(&sys, "zcu102.xml", &zynqmp).contains("Every StreamID not in this table aborts")
    );
}

/// The IOMMU PD's stack: 128 KiB overflowed in bringing the SMMU up, before any stream
/// aborted, and Microkit's default 8 KiB before its first line (system.xml's image booted
/// with each), so `build` gives the IOMMU PD 256 KiB where the description says nothing,
/// on the same line, and `check` refuses less (`fail/iommu-pd-stack-too-small.xml`).
#[test]
fn the_iommu_pd_gets_the_stack_it_needs() {
    let text = sdf("ok.xml");
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(sys.pd("iommu").unwrap().stack_size, 0x40000);
    let out = iommu_sdf::build::microkit_system(&text, &sys).unwrap();
    let line = text.lines().position(|l| l.contains("<protection_domain name=\"iommu\"")).unwrap();
    assert_eq!(
        out.lines().nth(line).unwrap().trim(),
        "<protection_domain name=\"iommu\" priority=\"250\" stack_size=\"0x40000\">"
    );
    assert_eq!(out.lines().count(), text.lines().count());
    // Given, it is kept as written.
    let given =
        text.replace("name=\"iommu\" priority=\"250\"", "name=\"iommu\" priority=\"250\" stack_size=\"0x80000\"");
    let (sys, problems) = iommu_sdf::check_text(&given);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(sys.pd("iommu").unwrap().stack_size, 0x80000);
    assert_eq!(iommu_sdf::build::microkit_system(&given, &sys).unwrap().matches("stack_size").count(), 1);
}

/// Which PD is the IOMMU PD is `<iommu pd>`'s to say, for its build as for every rule: the
/// policy lists that PD's interrupts (`IOMMU_PD_IRQS`), from which pds/iommu learns
/// whether the SMMU's reach it. pds/iommu/build.rs looked for the text
/// `<protection_domain name="iommu"` in the Microkit file instead: an IOMMU PD called
/// otherwise, or with its name after another attribute, was built as if no interrupt
/// reached it (it read faults only when a request came), and another PD called `iommu`
/// gave the IOMMU PD its interrupts. Here both at once: the policy lists the IOMMU PD's.
#[test]
fn the_iommu_pds_interrupts_are_those_of_the_pd_iommu_names() {
    let text = sdf("ok.xml")
        .replace(
            r#"<protection_domain name="iommu" priority="250">"#,
            r#"<protection_domain priority="250" name="smmu_owner"><irq irq="106" id="10" trigger="edge" /><irq irq="109" id="11" trigger="edge" />"#,
        )
        .replace(r#"pd="iommu""#, r#"pd="smmu_owner""#)
        .replacen(
            "    <channel>",
            r#"    <protection_domain name="iommu" priority="10"><program_image path="decoy.elf" /><irq irq="40" id="10" /></protection_domain>
    <channel>"#,
            1,
        );
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(sys.iommu.as_ref().map(|i| i.pd.as_str()), Some("smmu_owner"));
    let policy = iommu_sdf::build::policy_rust(&sys, "test");
    assert!(policy.contains("pub const IOMMU_PD_IRQS: &[(u64, u64)] = &[(10, 106), (11, 109)];"), "{policy}");
    // ok.xml's IOMMU PD has none: the PD polls or waits on requests, as it says at boot.
    let (sys, _) = iommu_sdf::check_text(&sdf("ok.xml"));
    assert!(iommu_sdf::build::policy_rust(&sys, "test").contains("pub const IOMMU_PD_IRQS: &[(u64, u64)] = &[];"));
}

/// Which program each client runs is the policy's too (`CLIENT_PROGRAMS`, client order):
/// the IOMMU PD restarts a crashed client from its program's entry, and its build found
/// the program by the text `<protection_domain name="` in the Microkit file, so a client
/// whose name came after another attribute was not restarted (system.xml's C driver, its
/// name now after its priority, is restarted: images/system.expect), and a comment
/// holding such a text could give a PD another program's entry.
#[test]
fn each_clients_program_is_in_the_policy() {
    let text = sdf("ok.xml").replace(
        r#"<protection_domain name="blk_driver" priority="100" id="2">"#,
        r#"<protection_domain priority="100" name="blk_driver" id="2"><!-- <protection_domain name="blk_driver"><program_image path="other.elf" /> -->"#,
    );
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    let policy = iommu_sdf::build::policy_rust(&sys, "test");
    assert!(
        policy.contains(
            "pub static CLIENT_PROGRAMS: [&str; 2] = [\n    \"edu_driver.elf\",\n    \"blk_driver.elf\",\n];"
        ),
        "{policy}"
    );
}
