//! An SMMU the driver does not take over must not stay as firmware left it. SMMU_GBPA's
//! reset value is IMPLEMENTATION DEFINED (IHI 0070 6.3.14): a disabled SMMU may pass every
//! transaction untranslated, and firmware may have left it running its own tables. So on
//! every error of `Smmu::init`, a refused probe included, the SMMU is left with
//! GBPA.ABORT = 1 and SMMUEN = 0: every transaction aborts.
//!
//! The model's GBPA resets to 0 (ABORT = 0: bypass while disabled) unless a test says
//! otherwise, and it translates as the hardware would, so each test asks it what a
//! device's access would do before and after.

mod common;

use smmuv3::mmio::reg;
use smmuv3::model::{host_region, Outcome, SmmuModel, QEMU_IDR};
use smmuv3::ste::Ste;
use smmuv3::{Config, Error, Smmu, Unsupported};

const SMMUEN: u64 = 1;
const GBPA_ABORT: u64 = 1 << 20;
/// A stream some device uses, and an address it sends.
const SID: u32 = 3;
const IOVA: u64 = 0x4000_1000;

/// QEMU's ID registers with a 48-bit output size (host addresses).
fn host_idr() -> [u32; 6] {
    let mut idr = QEMU_IDR;
    idr[5] = (idr[5] & !0b111) | 5;
    idr
}

/// Firmware left the SMMU on, with a linear stream table of 16 STEs that all bypass.
fn firmware_left_it_running(model: &SmmuModel) {
    let table = host_region(16 * 64, 16 * 64);
    for sid in 0..16 {
        for (i, w) in Ste::bypass().0.iter().enumerate() {
            // SAFETY: STE `sid` lies inside the 16-entry region just allocated.
            unsafe { table.va.cast::<u64>().add(sid * 8 + i).write_volatile(*w) };
        }
    }
    model.preset(reg::STRTAB_BASE, table.pa.0);
    // Linear (FMT = 0), LOG2SIZE = 4.
    model.preset(reg::STRTAB_BASE_CFG, 4);
    model.preset(reg::CR0, SMMUEN);
    model.preset(reg::CR0ACK, SMMUEN);
}

/// An SMMU without GBPA (QEMU 7.2's) that firmware left running on a table whose every
/// STE aborts (STE.V = 1, Config = abort) rather than bypasses.
fn without_gbpa_running_an_aborting_table() -> SmmuModel {
    let model = SmmuModel::with_idr(host_idr());
    model.without_gbpa();
    firmware_left_it_running(&model);
    for sid in 0..16 {
        let ste = model.reg(reg::STRTAB_BASE) + sid * 64;
        // SAFETY: inside the table `firmware_left_it_running` allocated.
        unsafe { (ste as *mut u64).write_volatile(1) };
    }
    model
}

/// The three refusals the issue names, each with the error it must give.
fn refusals() -> [(&'static str, [u32; 6], Config, Error); 3] {
    let cfg = common::config();
    let mut no_cohacc = host_idr();
    no_cohacc[0] &= !(1 << 4);
    // OAS = 0b000: 32 bits, and the host's memory lies above 4 GiB.
    let mut narrow = host_idr();
    narrow[5] &= !0b111;
    [
        (
            "StreamIDs wider than SIDSIZE",
            host_idr(),
            Config { sid_bits: 17, ..cfg },
            Error::Unsupported(Unsupported::StreamIdsTooWide { sid_bits: 16, needed: 17 }),
        ),
        ("COHACC = 0", no_cohacc, cfg, Error::Unsupported(Unsupported::NotCoherent)),
        ("OAS too small", narrow, cfg, Error::Unsupported(Unsupported::OutputTooNarrow { oas_bits: 32, needed: 0 })),
    ]
}

/// What `init` left: GBPA.ABORT set, SMMUEN clear and acknowledged, nothing the
/// architecture forbids done, and a device's access aborted.
fn assert_closed(model: &SmmuModel, what: &str) {
    assert_ne!(model.reg(reg::GBPA) & GBPA_ABORT, 0, "{what}: GBPA.ABORT");
    assert_eq!(model.reg(reg::CR0) & SMMUEN, 0, "{what}: CR0.SMMUEN");
    assert_eq!(model.reg(reg::CR0ACK) & SMMUEN, 0, "{what}: CR0ACK.SMMUEN");
    assert_eq!(model.violations(), Vec::<&str>::new(), "{what}");
    assert_eq!(model.translate(SID, IOVA, true), Outcome::Abort, "{what}: a device's write");
}

#[test]
fn a_refused_probe_leaves_every_transaction_aborting() {
    for (what, idr, cfg, want) in refusals() {
        for running in [false, true] {
            let what = format!("{what}, firmware left the SMMU {}", if running { "running" } else { "disabled" });
            let model = SmmuModel::with_idr(idr);
            if running {
                firmware_left_it_running(&model);
            } else {
                // A GBPA update in progress at reset: the write still waits for it.
                model.gbpa_busy_for(3);
            }
            // As firmware left it, the device's write goes through untranslated.
            assert_eq!(model.translate(SID, IOVA, true), Outcome::Bypass(IOVA), "{what}: before");
            // SAFETY: the memory is fresh and leaked; the model is the only register file.
            let got = unsafe { Smmu::init(&model, common::memory(8), cfg) }.err();
            match (got, want) {
                // The bits the host's memory needs depend on where it lies.
                (
                    Some(Error::Unsupported(Unsupported::OutputTooNarrow { oas_bits, needed })),
                    Error::Unsupported(Unsupported::OutputTooNarrow { oas_bits: o, .. }),
                ) => assert!(oas_bits == o && needed > 32, "{what}: {needed}"),
                _ => assert_eq!(got, Some(want), "{what}"),
            }
            assert_closed(&model, &what);
        }
    }
}

#[test]
fn an_init_that_fails_after_the_probe_leaves_the_smmu_disabled_and_aborting() {
    // The SMMU never consumes a command: the first CMD_SYNC times out with the command
    // queue enabled. Everything is switched off again, GBPA still aborting.
    let model = SmmuModel::with_idr(host_idr());
    model.set_stuck(true);
    // SAFETY: as above.
    let got = unsafe { Smmu::init(&model, common::memory(8), common::config()) }.err();
    assert_eq!(got, Some(Error::Timeout("CMD_SYNC completion")));
    assert_closed(&model, "stuck command queue");
    assert_eq!(model.reg(reg::CR0ACK), 0, "every CR0 enable off, acknowledged");
}

#[test]
fn an_smmu_whose_gbpa_does_not_take_is_not_disabled_into_bypass() {
    // QEMU 7.2 has no GBPA: disabling the SMMU would let every transaction through. A
    // running SMMU keeps its stream table (here firmware's, which aborts every stream),
    // and the caller is told that DMA is not known to be stopped.
    let model = without_gbpa_running_an_aborting_table();
    assert_eq!(model.translate(SID, IOVA, true), Outcome::Abort);
    assert_eq!(smmuv3::fail_closed(&model, smmuv3::Bound::Polls(100)), Err(Error::NoGlobalAbort));
    assert_eq!(model.reg(reg::CR0) & SMMUEN, SMMUEN, "still on");
    assert_eq!(model.translate(SID, IOVA, true), Outcome::Abort);
    // With a GBPA that takes, the same call disables it, aborting.
    let model = SmmuModel::with_idr(host_idr());
    firmware_left_it_running(&model);
    assert_eq!(smmuv3::fail_closed(&model, smmuv3::Bound::Polls(100)), Ok(()));
    assert_closed(&model, "fail_closed");
}

/// An SMMU without GBPA that firmware left running on a table that aborts every stream,
/// and memory `init` refuses (a two-level stream table not aligned to its level-2 tables'
/// size): `init` fails, and
/// the SMMU must be left as it was, translating through firmware's table. (Before, `init`
/// disabled it before checking the memory, and a disabled SMMU without GBPA passes every
/// transaction: the refusal opened it.)
#[test]
fn memory_refused_by_init_does_not_open_an_smmu_without_gbpa() {
    let model = without_gbpa_running_an_aborting_table();
    assert_eq!(model.translate(SID, IOVA, true), Outcome::Abort);
    let mut mem = common::memory(8);
    // 64 KiB of table (two-level for 16-bit StreamIDs) at a 4 KiB boundary: the SMMU
    // would read its level-2 tables 4 KiB below where the driver wrote them.
    let whole = host_region(128 << 10, 64 << 10);
    // SAFETY: 4 KiB into a 128 KiB allocation, leaving 124 KiB.
    let va = unsafe { whole.va.add(4096) };
    mem.stream_table = smmuv3::DmaRegion { pa: smmuv3::PhysAddr(whole.pa.0 + 4096), va, len: 64 << 10 };
    // SAFETY: the memory is fresh and leaked; the model is the only register file.
    let got = unsafe { Smmu::init(&model, mem, common::config()) }.err();
    assert_eq!(got, Some(Error::Misaligned { what: "two-level stream table", align: 16 << 10 }));
    assert_eq!(model.reg(reg::CR0) & SMMUEN, SMMUEN, "still on, on firmware's table");
    assert_eq!(model.translate(SID, IOVA, true), Outcome::Abort, "a device's write");
    assert_eq!(model.violations(), Vec::<&str>::new());
}

/// Whether a device's access reached nothing: aborted, or terminated as a fault (a
/// two-level table's invalid level-1 descriptor, C_BAD_STREAMID).
fn reaches_nothing(o: Outcome) -> bool {
    matches!(o, Outcome::Abort | Outcome::Fault(_))
}

/// A failure point: what it is, what makes it happen on the model, and `init`'s error.
type FailurePoint = (String, Box<dyn Fn(&SmmuModel)>, Error);

/// Every way `init` can fail after it disabled the SMMU, each with the error it gives:
/// an acknowledgement of SMMU_CR0 that never comes (the command queue's enable, the event
/// queue's, translation's: the 2nd, 3rd and 4th CR0 writes; the 1st, the disable, finds
/// CR0ACK already 0 on a fresh SMMU), of SMMU_IRQ_CTRL (its 2nd write, the enable), a
/// CMD_SYNC that never completes, and the first command rejected as malformed; and on an
/// SMMU with ATS, the acknowledgement of CR0.ATSCHK's enable (the 4th write there:
/// disable, CMDQEN, EVENTQEN, ATSCHK, then SMMUEN).
fn failures_after_the_disable() -> Vec<FailurePoint> {
    let mut points: Vec<FailurePoint> = Vec::new();
    for nth in 2..=4 {
        points.push((
            format!("CR0 write {nth} not acknowledged"),
            Box::new(move |m: &SmmuModel| m.withhold_ack(reg::CR0, nth)),
            Error::Timeout("SMMU_CR0ACK"),
        ));
    }
    points.push((
        "IRQ_CTRL's enable not acknowledged".into(),
        Box::new(|m: &SmmuModel| m.withhold_ack(reg::IRQ_CTRL, 2)),
        Error::Timeout("SMMU_IRQ_CTRLACK"),
    ));
    points.push((
        "the CMD_SYNC never completes".into(),
        Box::new(|m: &SmmuModel| m.set_stuck(true)),
        Error::Timeout("CMD_SYNC completion"),
    ));
    points.push((
        "on an SMMU with ATS, CR0.ATSCHK's enable (its 4th write) not acknowledged".into(),
        Box::new(|m: &SmmuModel| {
            m.preset(reg::IDR0, m.reg(reg::IDR0) | 1 << 10);
            m.withhold_ack(reg::CR0, 4)
        }),
        Error::Timeout("SMMU_CR0ACK"),
    ));
    points.push((
        "the CMD_CFGI_ALL rejected (CERROR_ILL)".into(),
        Box::new(|m: &SmmuModel| m.reject_next(smmuv3::cmd::Opcode::CfgiSteRange as u8)),
        Error::CommandError { code: 1, opcode: smmuv3::cmd::Opcode::CfgiSteRange as u8 },
    ));
    points
}

/// `init` on `model`, made to fail (`what`) with `want`: afterwards no stream reaches
/// memory, and nothing the architecture forbids was done.
fn init_fails_reaching_nothing(model: &SmmuModel, want: Error, what: &str) {
    // SAFETY: the memory is fresh and leaked; the model is the only register file.
    let got = unsafe { Smmu::init(model, common::memory(8), common::config()) }.err();
    assert_eq!(got, Some(want), "{what}");
    for sid in [0, SID, 0x80, 0xffff] {
        let o = model.translate(sid, IOVA, true);
        assert!(reaches_nothing(o), "{what}: stream {sid:#x}: {o:?}");
    }
    assert_eq!(model.violations(), Vec::<&str>::new(), "{what}");
}

/// Gap left by the last session: on an SMMU without GBPA (QEMU 7.2's), a failure of
/// `init` after it disabled the SMMU left it disabled, and a disabled SMMU without
/// GBPA.ABORT passes every transaction untranslated. At every such failure point, every
/// stream must reach nothing: with GBPA, disabled with GBPA.ABORT set; without, enabled
/// again on the stream table `init` wrote, every entry aborting. (Failing before: each
/// point without GBPA left StreamID 3's write bypassing to its IOVA.)
#[test]
fn every_init_failure_after_the_disable_leaves_every_stream_aborting() {
    for gbpa in [true, false] {
        for (what, inject, want) in failures_after_the_disable() {
            let what = format!("{what}, {}", if gbpa { "with GBPA" } else { "without GBPA" });
            let model = SmmuModel::with_idr(host_idr());
            if !gbpa {
                model.without_gbpa();
            }
            inject(&model);
            init_fails_reaching_nothing(&model, want, &what);
            if what.starts_with("CR0 write 4") {
                // Translation's enable never acknowledged: SMMUEN may not be changed again
                // before that Update completes (IHI 0070 6.3.9), so it stays as written, and
                // once it completes (the model completes it with the failure path's write
                // of the same value) the SMMU translates through the aborting table, caches
                // invalidated before; until then, with GBPA, disabled with GBPA.ABORT.
                assert_eq!(model.reg(reg::CR0ACK) & SMMUEN, SMMUEN, "{what}: SMMUEN left as written");
                if gbpa {
                    assert_ne!(model.reg(reg::GBPA) & GBPA_ABORT, 0, "{what}: GBPA.ABORT");
                }
            } else if gbpa {
                assert_closed(&model, &what);
            } else {
                // On an SMMU with ATS, ATS-translated traffic checked against the STEs too.
                let atschk = if model.reg(reg::IDR0) & 1 << 10 != 0 { 1 << 4 } else { 0 };
                assert_eq!(model.reg(reg::CR0ACK), SMMUEN | atschk, "{what}: translating, queues off");
            }
        }
    }
}

/// Every way `init` can fail once it has checked the memory and before its aborting
/// stream table is in place, each with the error it gives: a GBPA update that never
/// completes, the acknowledgement of IRQ_CTRL's first write (interrupts off) withheld, with
/// firmware having left interrupts on (off, the ACK already reads as the write asks), and
/// of CR0's first write (the disable), with the command queue left on (likewise).
fn failures_before_the_table() -> Vec<FailurePoint> {
    const IRQS_ON: u64 = 0b101;
    const CMDQEN: u64 = 1 << 3;
    vec![
        (
            "the GBPA update never completes".into(),
            Box::new(|m: &SmmuModel| m.gbpa_busy_for(u32::MAX)),
            Error::Timeout("SMMU_GBPA.UPDATE"),
        ),
        (
            "IRQ_CTRL's disable not acknowledged".into(),
            Box::new(|m: &SmmuModel| {
                m.preset(reg::IRQ_CTRL, IRQS_ON);
                m.preset(reg::IRQ_CTRLACK, IRQS_ON);
                m.withhold_ack(reg::IRQ_CTRL, 1)
            }),
            Error::Timeout("SMMU_IRQ_CTRLACK"),
        ),
        (
            "CR0's disable not acknowledged".into(),
            Box::new(|m: &SmmuModel| {
                m.preset(reg::CR0, m.reg(reg::CR0) | CMDQEN);
                m.preset(reg::CR0ACK, m.reg(reg::CR0ACK) | CMDQEN);
                m.withhold_ack(reg::CR0, 1)
            }),
            Error::Timeout("SMMU_CR0ACK (disable)"),
        ),
    ]
}

/// Gap left by the last session: a failure of `init` before its aborting stream table was
/// in place left the SMMU as it was found, which on one without GBPA.ABORT (QEMU 7.2's, or
/// one whose GBPA update never completes) is bypass when found disabled, and firmware's
/// table when found running (here one whose every STE bypasses). The memory is checked by
/// then, so `init` can still put its table in: at every such failure point, with GBPA and
/// without, found disabled or running firmware's table, every stream must reach nothing.
/// Each test first sends the device's write as firmware left the SMMU, so a running SMMU
/// holds firmware's bypassing STE in its configuration cache, which a change of SMMUEN
/// need not drop (IHI 0070 6.3.9.6): enabled again on the aborting table, the SMMU must
/// have invalidated it first. (Failing before: 6 of the 10 points left StreamID 3's write
/// bypassing to its IOVA: without GBPA, IRQ_CTRL's and CR0's withheld acknowledgements,
/// found disabled or running; with GBPA, the update that never completes, found disabled
/// or running. With the table put in but no invalidation before the enable, that update
/// on an SMMU found running still let StreamID 3 bypass, through its cached STE.)
#[test]
fn every_init_failure_before_the_table_leaves_every_stream_aborting() {
    for gbpa in [true, false] {
        for running in [false, true] {
            for (what, inject, want) in failures_before_the_table() {
                if !gbpa && what.contains("GBPA") {
                    // Without GBPA there is no update to wait for.
                    continue;
                }
                let what = format!(
                    "{what}, {}, found {}",
                    if gbpa { "with GBPA" } else { "without GBPA" },
                    if running { "running firmware's bypassing table" } else { "disabled" }
                );
                let model = SmmuModel::with_idr(host_idr());
                if !gbpa {
                    model.without_gbpa();
                }
                if running {
                    firmware_left_it_running(&model);
                }
                assert_eq!(model.translate(SID, IOVA, true), Outcome::Bypass(IOVA), "{what}: before");
                inject(&model);
                init_fails_reaching_nothing(&model, want, &what);
                let gbpa_took = model.reg(reg::GBPA) & GBPA_ABORT != 0 && !what.contains("never completes");
                if !gbpa_took {
                    assert_eq!(model.reg(reg::CR0ACK), SMMUEN, "{what}: translating, queues off");
                }
            }
        }
    }
}

/// Gap left by the last session: on an SMMU with ATS (SMMU_IDR0.ATS) and without
/// GBPA.ABORT, a failed `init` enabled the SMMU on its aborting stream table with
/// SMMU_CR0.ATSCHK = 0, and in that mode ATS-translated traffic passes the SMMU without a
/// stream table or TLB lookup (IHI 0070 6.3.9.2): a PCIe device that claimed a translation
/// reached any physical address, every STE aborting. (Disabled, the SMMU aborts such
/// traffic whatever GBPA says, 6.3.9.6.) At every failure point, with GBPA and without,
/// an ATS-translated write must reach nothing. (Failing before: without GBPA, every point
/// let it through.)
#[test]
fn every_init_failure_on_an_smmu_with_ats_leaves_ats_translated_traffic_aborting() {
    const ATS: u64 = 1 << 10;
    const PA: u64 = 0x4000_0000;
    for gbpa in [true, false] {
        for (what, inject, want) in failures_after_the_disable().into_iter().chain(failures_before_the_table()) {
            if !gbpa && what.contains("GBPA") {
                continue;
            }
            let what = format!("{what}, with ATS, {}", if gbpa { "with GBPA" } else { "without GBPA" });
            let model = SmmuModel::with_idr(host_idr());
            model.preset(reg::IDR0, model.reg(reg::IDR0) | ATS);
            if !gbpa {
                model.without_gbpa();
            }
            inject(&model);
            init_fails_reaching_nothing(&model, want, &what);
            let o = model.translate_ats(SID, PA);
            assert!(reaches_nothing(o), "{what}: an ATS-translated write: {o:?}");
        }
    }
}

/// Gap left by the last session: a failure of `init` before it acknowledged the global
/// errors an earlier owner left active (a GBPA update that never completes, IRQ_CTRL's or
/// CR0's disable never acknowledged) went on to invalidate through the command queue with
/// GERROR.CMDQ_ERR still active. The SMMU consumes nothing until that is acknowledged, and
/// CMDQ_CONS.ERR may keep the earlier owner's code through the driver's write of CONS
/// (IHI 0070 6.3.28): here CERROR_ILL, so the driver took its own CMD_CFGI_ALL for the
/// rejected command and replaced it with a CMD_SYNC, and firmware's bypassing STE, cached,
/// outlived the failure. At every such point, found running firmware's bypassing table
/// with that error left active, no stream may reach memory. (Failing before: the GBPA
/// update that never completes, and without GBPA both withheld acknowledgements, let
/// StreamID 3's write bypass through the cached STE.)
#[test]
fn a_command_error_left_by_firmware_does_not_cost_a_failed_init_its_invalidation() {
    const CERROR_ILL: u64 = 1;
    for gbpa in [true, false] {
        for (what, inject, want) in failures_before_the_table() {
            if !gbpa && what.contains("GBPA") {
                continue;
            }
            let what = format!("{what}, {}, CMDQ_ERR left active", if gbpa { "with GBPA" } else { "without GBPA" });
            let model = SmmuModel::with_idr(host_idr());
            if !gbpa {
                model.without_gbpa();
            }
            firmware_left_it_running(&model);
            assert_eq!(model.translate(SID, IOVA, true), Outcome::Bypass(IOVA), "{what}: before");
            model.preset(reg::GERROR, 1);
            model.preset(reg::CMDQ_CONS, CERROR_ILL << 24);
            inject(&model);
            init_fails_reaching_nothing(&model, want, &what);
        }
    }
}

/// Gap left by the last session: a failure of `init` before it wrote SMMU_CR1 (a GBPA
/// update that never completes, IRQ_CTRL's or CR0's disable never acknowledged) enabled
/// the SMMU on its aborting table with CR1 as found, and CR1 resets UNKNOWN (IHI 0070
/// 6.3.11) or holds an earlier owner's choice: the SMMU could read the table the driver
/// cleaned to the PoC through a cache the CPU's maintenance does not reach, and find
/// whatever that memory held before. At every such point without GBPA.ABORT, the SMMU
/// enabled again must have the table and queue attributes a successful `init` gives it.
/// (Failing before: CR1 kept the garbage preset here at each of the 3 points that enable
/// it again.)
#[test]
fn a_failed_init_enables_the_smmu_with_the_table_attributes_init_chooses() {
    const GARBAGE: u64 = 0x0aaa;
    let ok = SmmuModel::with_idr(host_idr());
    // SAFETY: as in `init_fails_reaching_nothing`.
    let chosen = unsafe { Smmu::init(&ok, common::memory(8), common::config()) }.map(|_| ok.reg(reg::CR1));
    let chosen = chosen.expect("a successful init");
    assert_ne!(chosen, GARBAGE);
    for gbpa in [true, false] {
        for (what, inject, want) in failures_before_the_table() {
            let what = format!("{what}, {}", if gbpa { "with GBPA" } else { "without GBPA" });
            if !gbpa && what.contains("GBPA update") {
                continue;
            }
            let model = SmmuModel::with_idr(host_idr());
            if !gbpa {
                model.without_gbpa();
            }
            model.preset(reg::CR1, GARBAGE);
            inject(&model);
            init_fails_reaching_nothing(&model, want, &what);
            if model.reg(reg::CR0ACK) & SMMUEN != 0 {
                assert_eq!(model.reg(reg::CR1), chosen, "{what}: SMMU_CR1 when enabled again");
            }
        }
    }
}

/// A GBPA update that never completes (the write taken, UPDATE reading 1 from then on,
/// the bypass GBPA reset to still in effect), on an SMMU firmware left running its
/// bypassing table: `init` fails at the update, and, GBPA.ABORT not in effect, ends on its
/// aborting table with every cached entry invalidated, never writing GBPA again while
/// UPDATE reads 1. What held before this session's changes, checked on the model's new
/// injection (`gbpa_update_never_completes`).
#[test]
fn a_gbpa_update_that_never_completes_leaves_init_on_its_aborting_table() {
    let model = SmmuModel::with_idr(host_idr());
    firmware_left_it_running(&model);
    model.gbpa_update_never_completes();
    // SAFETY: fresh leaked memory; the model is the only register file.
    let r = unsafe { Smmu::init(&model, common::memory(16), common::config()) };
    assert_eq!(r.err(), Some(Error::Timeout("SMMU_GBPA.UPDATE")));
    assert_eq!(model.reg(reg::GBPA) & GBPA_ABORT, 0, "the bypass GBPA is still the one in effect");
    assert_eq!(model.reg(reg::CR0ACK) & SMMUEN, SMMUEN, "enabled on the driver's aborting table");
    for sid in [SID, 0, 15] {
        let o = model.translate(sid, IOVA, true);
        assert!(matches!(o, Outcome::Abort | Outcome::Fault(_)), "stream {sid}: {o:?}");
    }
    assert_eq!(model.violations(), Vec::<&str>::new());
}

/// An SMMU firmware left running (on a table whose every STE bypasses) whose disable is
/// never acknowledged within the bound at start-up: every write to SMMU_CR0 from `init`
/// on waits for its Update, which the architecture lets complete at any later time ("in
/// finite time, but ... not required to occur immediately", IHI 0070 6.3.9). The bounded
/// sequence: GBPA.ABORT first, through its Update handshake; the disable written once and
/// again only with the same value (the failure path's and the IOMMU PD's `fail_closed`:
/// changing the field before its Update completes is CONSTRAINED UNPREDICTABLE); no
/// stream table, queue base or other field written (SMMU_STRTAB_BASE is RO while SMMUEN or
/// its Update is 1, 6.3.24: firmware's table stays, and the driver's aborting one is not
/// the SMMU's); every wait bounded; `init` and `fail_closed` report the timeout, so the
/// service says DMA is not known to be stopped, which is true: the stream still bypasses.
/// When the disable completes later, with GBPA.ABORT in effect every stream aborts;
/// without GBPA (QEMU 7.2) a disabled SMMU passes everything, where this stops.
#[test]
fn a_start_up_disable_never_acknowledged_is_bounded_and_reported_not_stopped() {
    for gbpa in [true, false] {
        let what = if gbpa { "with GBPA" } else { "without GBPA" };
        let model = SmmuModel::with_idr(host_idr());
        if !gbpa {
            model.without_gbpa();
        }
        firmware_left_it_running(&model);
        model.withhold_every_ack(reg::CR0);
        // SAFETY: the memory is fresh and leaked; the model is the only register file.
        let got = unsafe { Smmu::init(&model, common::memory(8), common::config()) }.err();
        assert_eq!(got, Some(Error::Timeout("SMMU_CR0ACK (disable)")), "{what}");
        let closed = smmuv3::fail_closed(&model, common::config().bound);
        let want = if gbpa { Error::Timeout("SMMU_CR0ACK (disable)") } else { Error::NoGlobalAbort };
        assert_eq!(closed, Err(want), "{what}: the service says DMA is not known to be stopped");
        assert_eq!(model.translate(SID, IOVA, true), Outcome::Bypass(IOVA), "{what}: firmware's table, still");
        assert_eq!(model.reg(reg::GBPA) & GBPA_ABORT != 0, gbpa, "{what}: GBPA.ABORT");
        let cr0_writes: Vec<u64> = model.register_writes().iter().filter(|w| w.0 == reg::CR0).map(|w| w.1).collect();
        // `init`'s disable, its failure path's, and `fail_closed`'s (with GBPA: without, it
        // leaves the SMMU alone): each a bounded wait.
        assert_eq!(cr0_writes, vec![0; if gbpa { 3 } else { 2 }], "{what}: only the disable, again");
        assert!(model.register_writes().iter().all(|w| w.0 != reg::STRTAB_BASE), "{what}: no table base written");
        assert_eq!(model.violations(), Vec::<&str>::new(), "{what}");
        model.complete_withheld_update();
        let late = model.translate(SID, IOVA, true);
        if gbpa {
            assert_eq!(late, Outcome::Abort, "{what}: the disable completed late, GBPA.ABORT in effect");
        } else {
            assert_eq!(late, Outcome::Bypass(IOVA), "{what}: disabled without GBPA passes everything");
        }
    }
}
