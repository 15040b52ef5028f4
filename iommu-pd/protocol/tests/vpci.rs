//! The VMMs' emulated configuration space (`pds/vpci/vpci.c`, shared by `pds/linux-vmm`
//! and `pds/c-vmm`) attacked as a hostile guest would attack it, on the host:
//! `tests/c/vpci_guest.c` plays the guest (each `vpci_access` is one trapped ECAM access,
//! decoded as the VMMs decode it) and a stand-in IOMMU PD that holds one function's
//! configuration space and records every CONFIG_READ/CONFIG_WRITE. What the IOMMU PD's own
//! filter does with what reaches it is `iommu-pd/tests/pci.rs`'s; here, what the guest can
//! make the VMM send at all, and what it reads back.

mod common;

/// Build and run the guest against `pds/vpci/vpci.c`; its output lines.
fn run_guest() -> Vec<String> {
    common::run_c(
        "vpci-guest",
        &["tests/c/vpci_guest.c", "../../pds/vpci/vpci.c"],
        &["tests/c", "../c", "../../pds/vpci"],
    )
}

/// The value the guest read for `what`.
fn guest(lines: &[String], what: &str) -> String {
    let prefix = format!("guest {what} ");
    let found = lines.iter().find_map(|l| l.strip_prefix(prefix.as_str()));
    found.unwrap_or_else(|| panic!("no `{prefix}` in\n{}", lines.join("\n"))).to_string()
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l == want)
}

/// Sizing, moving (onto the VMM's memory, the ECAM, another window, half by half, byte by
/// byte) and the ROM BAR are the VMM's alone: the guest reads back what a BAR would show,
/// and not one write reaches the device's BARs after the VMM's own sizing at start.
#[test]
fn the_guests_bar_writes_never_reach_the_device() {
    let lines = run_guest();
    assert!(has(&lines, "init 1"), "{}", lines.join("\n"));
    // At the guest-physical window, the sizes a sizing write shows; the I/O BAR hidden.
    for (what, want) in [
        ("bar0", "0"),
        ("bar0-sized", "0"),
        ("bar1", "0x10000000"),
        ("bar1-sized", "0xfffff000"),
        ("bar2-sized", "0"),
        ("bar3-sized", "0"),
        ("bar4", "0x1000400c"),
        ("bar4-sized", "0xffffc00c"),
        ("bar5", "0"),
        ("bar5-sized", "0xffffffff"),
        ("bar1-moved", "0x8000000"),
        ("bar4-lo-moved", "0x3f00000c"),
        ("bar5-hi-moved", "0x1"),
        ("bar4-after-bytes", "0x1234000c"),
        ("rom", "0"),
    ] {
        assert_eq!(guest(&lines, what), want, "{what}");
    }
    assert!(has(&lines, "device bars unchanged"));
    // After init (the VMM's own sizing probes), the only writes the stand-in saw are the
    // guest's Command writes (Memory Space kept on in each low byte) and the writes beside
    // it (Command's high byte, Status), then the restart's.
    let init = lines.iter().position(|l| l == "init 1").unwrap();
    let restart = lines.iter().position(|l| l == "restart 1").unwrap();
    let writes: Vec<&str> = lines[init..restart].iter().filter_map(|l| l.strip_prefix("pd write ")).collect();
    let want = ["0x4 2 0x6", "0x4 1 0x2", "0x4 4 0x406", "0x4 2 0x6", "0x5 1 0x4", "0x6 2 0xffff", "0x7 1 0xff"];
    assert_eq!(writes, [&want[..], &["0x4 1 0x6", "0x4 2 0x2"]].concat());
    // The VMM's sizing at start: each BAR dword once with all ones, through the IOMMU PD;
    // then the device's Memory Space turned on.
    let sized: Vec<&str> = lines[..init].iter().filter_map(|l| l.strip_prefix("pd write ")).collect();
    assert_eq!(sized.len(), 7, "{sized:?}");
    assert!(sized[..6].iter().all(|w| w.ends_with(" 4 0xffffffff")), "{sized:?}");
    assert_eq!(sized[6], "0x4 2 0x2");
}

/// Interrupt Line is the guest's own byte (the pin beside it the device's); every other
/// slot and function of the bus reads all ones at its width and takes no write; Command
/// goes to the IOMMU PD at the guest's width (Bus Master toggled with DMA in flight is the
/// device's business, confined by the SMMU).
#[test]
fn interrupt_line_other_functions_and_command() {
    let lines = run_guest();
    assert_eq!(guest(&lines, "line-pin"), "0x122");
    assert!(has(&lines, "device line 0x10b"));
    assert_eq!(guest(&lines, "other-fn-1"), "0xff");
    assert_eq!(guest(&lines, "other-fn-2"), "0xffff");
    assert_eq!(guest(&lines, "other-fn-4"), "0xffffffff");
    assert_eq!(guest(&lines, "command-on"), "0x6");
    assert_eq!(guest(&lines, "command-off"), "0");
    assert!(lines.iter().any(|l| l.starts_with("stats ") && l.ends_with(" refused 0 other 5")), "{}", lines.join("\n"));
}

/// Memory Space is the guest's to read back, not to turn off at the device: the VM maps the
/// BARs' window for good, and a guest that turned decoding off and touched its BARs would
/// reach a function that does not answer them (on hardware, possibly an SError for the
/// whole machine: CVE-2020-12888). Before, Command went to the device as the guest wrote
/// it: the device read 0 after the guest's byte write of 0.
#[test]
fn the_guest_cannot_turn_its_devices_decoding_off() {
    let lines = run_guest();
    // Decoding on from the VMM's start, before the guest wrote Command at all.
    let init = lines.iter().position(|l| l == "init 1").unwrap();
    assert!(lines[..init].iter().any(|l| l == "pd write 0x4 2 0x2"), "{}", lines.join("\n"));
    // Off as the guest reads it, byte or dword written, Bus Master and INTx Disable as it
    // wrote them; on at the device.
    assert_eq!(guest(&lines, "command-off"), "0");
    assert!(has(&lines, "device command-off 0x2"));
    assert_eq!(guest(&lines, "command-dword-off"), "0x404");
    assert!(has(&lines, "device command-dword-off 0x406"));
    // Writes beside Command's low byte (its high byte, Status by half and by byte) leave
    // the guest's Memory Space as it wrote it; the low byte alone turns it off for the
    // guest only.
    assert_eq!(guest(&lines, "command-beside"), "0x406");
    assert_eq!(guest(&lines, "command-beside-low"), "0x6");
    assert!(has(&lines, "device command-beside 0x406"));
    assert_eq!(guest(&lines, "command-low-off"), "0x404");
    assert!(has(&lines, "device command-low-off 0x406"));
    // A restart (after a STOP's reset turned Command to 0): decoding on again, the guest's
    // view afresh.
    assert!(has(&lines, "device command-restarted 0x2"));
    assert_eq!(guest(&lines, "command-restarted"), "0");
    assert_eq!(guest(&lines, "bar1-restarted"), "0x10000000");
    assert_eq!(guest(&lines, "line-pin-restarted"), "0x100");
}

/// After a RESUME, a device the VMM cannot make decode (its Memory Space does not take
/// the write) is not given to a guest: the guest stays stopped, and so must the device,
/// which the RESUME mapped into the guest's RAM again. Before, vpci_restart said so and
/// the VMMs left the guest stopped, the device resumed, mapped and unstopped.
#[test]
fn a_device_that_will_not_decode_after_resume_is_stopped_again() {
    let lines = run_guest();
    let at = lines.iter().position(|l| l == "resumed 0").unwrap_or_else(|| panic!("{}", lines.join("\n")));
    let before = lines[..at].iter().rposition(|l| l.starts_with("restart ")).unwrap();
    let stops: Vec<&String> = lines[before..at].iter().filter(|l| l.starts_with("pd stop ")).collect();
    assert_eq!(stops, ["pd stop 3"], "{}", lines[before..].join("\n"));
    // A device that decodes: nothing stopped.
    let ok = lines.iter().position(|l| l == "resumed-decoding 1").unwrap();
    assert!(!lines[at..ok].iter().any(|l| l.starts_with("pd stop")), "{}", lines[at..].join("\n"));
}

/// A guest that moves a BAR in a loop: each move is one trapped access, and the VMM must
/// do no more for it than for any other. Before, every move printed a line on the shared
/// console (about 150 characters through the kernel's debug output, burying the IOMMU
/// PD's fault reports) and read the device's BAR through the IOMMU PD: 10000 moves, 10000
/// lines and 10000 calls. Now the first moves are said, then that the rest are not.
#[test]
fn a_guest_moving_bars_in_a_loop_does_not_flood_the_console() {
    let lines = run_guest();
    let said = lines.iter().filter(|l| l.starts_with("console vmm: vpci: the guest moved")).count();
    assert!(said <= 4, "{said} moves said");
    assert!(
        has(&lines, "flood lines 0 calls 0"),
        "{}",
        lines.iter().filter(|l| l.starts_with("flood")).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(lines.iter().any(|l| l.starts_with("stats bar_writes 10045 ")));
}

/// A trapped load's register gets the value extended as the instruction asked (the
/// syndrome's SSE and SF), in both VMMs (`vpci_loaded`): before, linux-vmm zero-extended
/// LDRSB and LDRSH, and c-vmm did not sign-extend LDRSW.
#[test]
fn a_trapped_load_is_extended_as_its_instruction_asks() {
    let lines = run_guest();
    let loaded = |what: &str| {
        let prefix = format!("loaded {what} ");
        lines.iter().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no {prefix}")).to_string()
    };
    for (what, want) in [
        ("ldrb", "0x80"),
        ("ldrsb-w", "0xffffff80"),
        ("ldrsb-x", "0xffffffffffffff80"),
        ("ldrsh-x-positive", "0x7fff"),
        ("ldrsh-x", "0xffffffffffff8000"),
        ("ldr-w", "0x80000000"),
        ("ldrsw", "0xffffffff80000000"),
    ] {
        assert_eq!(loaded(what), want, "{what}");
    }
}
