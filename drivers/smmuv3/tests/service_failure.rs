//! SMMU_GERROR.SFM_ERR: the SMMU has entered service failure mode (IHI 0070 12.3). It no
//! longer consumes commands, so no invalidation will ever be confirmed again, and what it
//! does with transactions is up to the implementation: the model keeps translating as
//! configured, the worst a real one may do. The driver must fail it closed (GBPA.ABORT
//! first, then SMMUEN = 0 with CR0ACK waited for) and refuse everything from then on.

mod common;

use smmuv3::mmio::reg;
use smmuv3::model::{Outcome, SmmuModel};
use smmuv3::{Error, Iova, MemType, Perm, Smmu, StreamId};

const SID: u32 = 0x08;
const SMMUEN: u64 = 1;
const GBPA_ABORT: u64 = 1 << 20;

/// A device translating through a mapped page.
fn running() -> (Smmu<SmmuModel>, smmuv3::DomainId) {
    let mut smmu = common::smmu(32);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let page = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Ok(page.pa.0));
    (smmu, d)
}

/// The global-error interrupt reports SFM_ERR: the driver sets GBPA.ABORT, then clears
/// SMMUEN, in that order, and the device's DMA aborts, its mapping included.
#[test]
fn service_failure_disables_the_smmu_with_every_transaction_aborting() {
    let (mut smmu, _) = running();
    smmu.regs().enter_service_failure();
    let before = smmu.regs().register_writes().len();
    assert_eq!(smmu.handle_interrupt(|_| {}), Err(Error::ServiceFailure));
    assert_eq!(smmu.failure(), Some(Ok(())));
    let m = smmu.regs();
    assert_ne!(m.reg(reg::GBPA) & GBPA_ABORT, 0, "GBPA.ABORT");
    assert_eq!(m.reg(reg::CR0) & SMMUEN, 0, "SMMUEN");
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, 0, "CR0ACK.SMMUEN");
    assert_eq!(m.translate(SID, 0x1000, true), Outcome::Abort, "the mapped page");
    assert_eq!(m.translate(SID, 0x9000, false), Outcome::Abort, "anywhere else");
    // GBPA first: disabled before the abort took, the SMMU would pass DMA untranslated.
    let writes = &m.register_writes()[before..];
    let gbpa = writes.iter().position(|&(o, v)| o == reg::GBPA && v & GBPA_ABORT != 0);
    let off = writes.iter().position(|&(o, v)| o == reg::CR0 && v & SMMUEN == 0);
    assert!(matches!((gbpa, off), (Some(g), Some(c)) if g < c), "{writes:x?}");
    assert_eq!(m.violations(), Vec::<&str>::new());
}

/// After the failure nothing uses the SMMU again: every operation is refused with
/// `ServiceFailure`, nothing is written to the registers (no command, no re-enable), and
/// the device's DMA still aborts.
#[test]
fn after_service_failure_every_operation_is_refused() {
    let (mut smmu, d) = running();
    smmu.regs().enter_service_failure();
    assert_eq!(smmu.check_global_errors(), Err(Error::ServiceFailure));
    let writes = smmu.regs().register_writes().len();
    let page = common::buffer(4096, 4096);
    assert_eq!(smmu.map(d, Iova(0x2000), page.pa, 4096, Perm::Read, MemType::Normal), Err(Error::ServiceFailure));
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Err(Error::ServiceFailure));
    assert_eq!(smmu.detach(StreamId(SID)), Err(Error::ServiceFailure));
    assert_eq!(smmu.attach(StreamId(SID + 1), d), Err(Error::ServiceFailure));
    assert_eq!(smmu.invalidate_domain(d), Err(Error::ServiceFailure));
    assert_eq!(smmu.sync(), Err(Error::ServiceFailure));
    assert_eq!(smmu.regs().register_writes().len(), writes, "the SMMU was touched after it failed");
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Abort);
    assert_eq!(smmu.failure(), Some(Ok(())));
}

/// SFM_ERR found while waiting for a CMD_SYNC (the SMMU stopped consuming): the wait ends
/// at once with `ServiceFailure` rather than at its bound with `Timeout`, and the SMMU is
/// failed closed there too.
#[test]
fn service_failure_during_an_unmap_ends_the_wait_and_fails_closed() {
    let (mut smmu, d) = running();
    smmu.regs().enter_service_failure();
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Err(Error::ServiceFailure));
    assert_eq!(smmu.stats().timeouts, 0);
    assert_eq!(smmu.failure(), Some(Ok(())));
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Abort);
}

/// On an SMMU whose GBPA does not take (QEMU 7.2), disabling it would let every
/// transaction through: it stays enabled on its stream table, and `failure` says DMA is
/// not known to be stopped, for the IOMMU PD to report.
#[test]
fn without_gbpa_service_failure_is_reported_as_not_closed() {
    let model = SmmuModel::host();
    model.without_gbpa();
    // SAFETY: fresh leaked memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(model, common::memory(32), common::config()) }.unwrap();
    smmu.regs().enter_service_failure();
    assert_eq!(smmu.handle_interrupt(|_| {}), Err(Error::ServiceFailure));
    assert_eq!(smmu.failure(), Some(Err(Error::NoGlobalAbort)));
    assert_eq!(smmu.regs().reg(reg::CR0) & SMMUEN, SMMUEN);
    assert_eq!(smmu.create_domain(), Err(Error::ServiceFailure));
    assert_eq!(smmu.detach(StreamId(SID)), Err(Error::ServiceFailure));
}

/// An SMMU that stops consuming commands without reporting SFM_ERR: the first CMD_SYNC
/// that times out is survivable (the domain is stale, invalidated by ASID before its next
/// use), but the next wait on the queue timing out too, with no sync completed between
/// them, means no invalidation can ever be confirmed. The driver then fails the SMMU
/// closed as for SFM_ERR: GBPA.ABORT, then SMMUEN = 0, and every stream aborts in the
/// model, the page whose unmap was never confirmed (still in its TLB) included.
#[test]
fn an_smmu_that_stops_answering_is_failed_closed_at_its_second_timeout_in_a_row() {
    let (mut smmu, d) = running();
    let pa = match smmu.regs().translate(SID, 0x1000, true) {
        Outcome::Ok(pa) => pa,
        other => panic!("{other:?}"),
    };
    let other = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x4000), other.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.regs().set_stuck(true);
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.failure(), None, "one timeout is survivable");
    // The SMMU still translates the unmapped page from its TLB.
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Ok(pa));
    // The next operation on the domain invalidates its ASID first, and waits in vain.
    assert_eq!(smmu.unmap(d, Iova(0x4000), 4096), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.failure(), Some(Ok(())), "failed closed");
    assert!(smmu.unanswered());
    assert_eq!(smmu.stats().timeouts, 2);
    let m = smmu.regs();
    assert_ne!(m.reg(reg::GBPA) & GBPA_ABORT, 0, "GBPA.ABORT");
    assert_eq!(m.reg(reg::CR0) & SMMUEN, 0, "SMMUEN");
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, 0, "CR0ACK.SMMUEN");
    for (sid, iova) in [(SID, 0x1000), (SID, 0x4000), (SID + 1, 0x1000), (0, 0)] {
        assert_eq!(m.translate(sid, iova, true), Outcome::Abort, "stream {sid:#x} at {iova:#x}");
    }
    assert_eq!(m.violations(), Vec::<&str>::new());
    // Refused from then on without touching the SMMU.
    let writes = smmu.regs().register_writes().len();
    let page = common::buffer(4096, 4096);
    assert_eq!(smmu.map(d, Iova(0x8000), page.pa, 4096, Perm::Read, MemType::Normal), Err(Error::ServiceFailure));
    assert_eq!(smmu.attach(StreamId(SID + 1), d), Err(Error::ServiceFailure));
    assert_eq!(smmu.sync(), Err(Error::ServiceFailure));
    assert_eq!(smmu.regs().register_writes().len(), writes, "the SMMU was touched after it failed");
}

/// Two timeouts with a CMD_SYNC completed between them are two slow moments, not an SMMU
/// that stopped: the driver goes on, and the stale domain is invalidated as before.
#[test]
fn timeouts_with_a_completed_sync_between_them_do_not_fail_the_smmu() {
    let (mut smmu, d) = running();
    for round in 0..2 {
        smmu.regs().set_stuck(true);
        assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")), "round {round}");
        smmu.regs().set_stuck(false);
        smmu.sync().unwrap();
    }
    assert_eq!(smmu.stats().timeouts, 2);
    assert_eq!(smmu.failure(), None);
    assert!(!smmu.unanswered());
    smmu.unmap(d, Iova(0x1000), 4096).unwrap();
    assert_eq!(smmu.regs().reg(reg::CR0) & SMMUEN, SMMUEN);
}

/// The same on an SMMU without GBPA (QEMU 7.2): disabling it would let every transaction
/// through, so it stays enabled on its stream table and `failure` says DMA is not known to
/// be stopped; everything is refused all the same.
#[test]
fn without_gbpa_an_smmu_that_stops_answering_is_reported_as_not_closed() {
    let model = SmmuModel::host();
    model.without_gbpa();
    // SAFETY: fresh leaked memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(model, common::memory(32), common::config()) }.unwrap();
    smmu.regs().set_stuck(true);
    assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.failure(), Some(Err(Error::NoGlobalAbort)));
    assert!(smmu.unanswered());
    assert_eq!(smmu.regs().reg(reg::CR0) & SMMUEN, SMMUEN, "left on its aborting stream table");
    assert_eq!(smmu.create_domain(), Err(Error::ServiceFailure));
}

/// The wait for room in the command queue counts as the CMD_SYNC's does: deferred unmaps
/// queue their invalidations without a sync, and on a queue that stopped consuming they
/// fill it. The first wait for room times out; the TLBI by ASID queued in its place waits
/// too, with no sync completed between them: failed closed, every stream aborting.
#[test]
fn waits_for_room_in_a_stopped_queue_fail_the_smmu_closed_too() {
    let (mut smmu, d) = running();
    let page = common::buffer(4096, 4096);
    // Every other page, so that each unmap's invalidation is a command of its own.
    let iovas: Vec<u64> = (0..300).map(|i| 0x10_0000 + 0x2000 * i).collect();
    for &iova in &iovas {
        smmu.map(d, Iova(iova), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    }
    smmu.regs().set_stuck(true);
    let syncs = smmu.stats().syncs;
    for &iova in &iovas {
        if smmu.failure().is_some() {
            break;
        }
        let _ = smmu.unmap_deferred(d, Iova(iova), 4096);
    }
    assert_eq!(smmu.stats().syncs, syncs, "no CMD_SYNC completed, none waited on");
    assert_eq!(smmu.stats().timeouts, 2);
    assert_eq!(smmu.failure(), Some(Ok(())), "failed closed");
    assert!(smmu.unanswered());
    let m = smmu.regs();
    assert_ne!(m.reg(reg::GBPA) & GBPA_ABORT, 0, "GBPA.ABORT");
    assert_eq!(m.reg(reg::CR0) & SMMUEN, 0, "SMMUEN");
    for iova in [0x1000, iovas[0], iovas[299]] {
        assert_eq!(m.translate(SID, iova, true), Outcome::Abort, "{iova:#x}");
    }
}

/// Whether a device's access reached nothing: aborted, or terminated as a fault (an
/// invalid level-1 descriptor, C_BAD_STREAMID).
fn reaches_nothing(o: Outcome) -> bool {
    matches!(o, Outcome::Abort | Outcome::Fault(_))
}

/// The domain's two streams at its page (the first's STE and TLB entry cached), and a
/// stream no one attached, each reach nothing.
fn assert_every_stream_reaches_nothing(m: &SmmuModel) {
    for (sid, iova) in [(SID, 0x1000), (SID + 1, 0x1000), (0, 0)] {
        assert!(reaches_nothing(m.translate(sid, iova, true)), "stream {sid:#x} at {iova:#x}");
    }
}

/// `running()`, with a second stream attached to the domain whose STE the SMMU has not
/// fetched yet (no access of its device so far), and the first unmap never confirmed:
/// the SMMU stopped answering, its TLB still holding the page. The second wait on the
/// queue fails the SMMU.
fn stopped_answering(smmu: &mut Smmu<SmmuModel>, d: smmuv3::DomainId) -> u64 {
    smmu.attach(StreamId(SID + 1), d).unwrap();
    let pa = match smmu.regs().translate(SID, 0x1000, true) {
        Outcome::Ok(pa) => pa,
        other => panic!("{other:?}"),
    };
    smmu.regs().set_stuck(true);
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Ok(pa), "one timeout: the TLB still holds it");
    pa
}

/// Gap left by the last session: the escalation's own waits (GBPA.UPDATE, CR0ACK) were
/// reported, not acted on. GBPA.UPDATE that never clears when the escalation sets ABORT
/// again: `init` read ABORT back set, and GBPA changes only through an update, so ABORT is
/// still in effect and the SMMU is disabled all the same. Failing before: the escalation
/// stopped at the GBPA timeout, left SMMUEN set, and the device still reached the page
/// whose unmap was never confirmed, from the TLB.
#[test]
fn a_gbpa_update_that_never_completes_in_the_escalation_still_fails_the_smmu_closed() {
    let (mut smmu, d) = running();
    stopped_answering(&mut smmu, d);
    smmu.regs().gbpa_busy_for(u32::MAX);
    assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")));
    assert!(smmu.unanswered());
    assert_eq!(smmu.failure(), Some(Ok(())), "closed on the ABORT init saw set");
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, 0, "CR0ACK.SMMUEN");
    for (sid, iova) in [(SID, 0x1000), (SID + 1, 0x1000), (0, 0)] {
        assert_eq!(m.translate(sid, iova, true), Outcome::Abort, "stream {sid:#x} at {iova:#x}");
    }
    assert_eq!(m.violations(), Vec::<&str>::new(), "no GBPA write while UPDATE was 1");
}

/// A CR0ACK that never comes for the escalation's disable: the SMMU goes on translating
/// as it was (the model keeps SMMUEN in effect until acknowledged), and nothing can make
/// it drop what it has cached. But the stream table now aborts every stream: a stream
/// whose STE the SMMU had not fetched reaches nothing, and the failure is reported.
/// Failing before: the table kept the domain's STEs, and the second stream's first
/// access translated to the domain's page.
#[test]
fn an_escalation_whose_disable_is_never_acknowledged_leaves_the_stream_table_aborting() {
    let (mut smmu, d) = running();
    stopped_answering(&mut smmu, d);
    smmu.regs().withhold_ack(reg::CR0, 1);
    assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.failure(), Some(Err(Error::Timeout("SMMU_CR0ACK (disable)"))));
    let m = smmu.regs();
    assert_ne!(m.reg(reg::GBPA) & GBPA_ABORT, 0, "GBPA.ABORT");
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, SMMUEN, "the disable never took");
    // The page whose unmap was never confirmed, still in the domain's TLB entries.
    let o = m.translate(SID + 1, 0x1000, true);
    assert!(reaches_nothing(o), "the stream not yet fetched: {o:?}");
}

/// The same without GBPA (QEMU 7.2): the SMMU stays enabled, and every stream the SMMU
/// fetches from then on aborts. Failing before: the second stream reached the domain's
/// page (`without_gbpa_an_smmu_that_stops_answering_is_reported_as_not_closed` had no
/// stream attached, so "left on its aborting stream table" held only for unused ones).
#[test]
fn without_gbpa_an_escalation_leaves_every_stream_it_fetches_aborting() {
    let (mut smmu, d) = running_without_gbpa();
    let page = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x4000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    stopped_answering(&mut smmu, d);
    assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.failure(), Some(Err(Error::NoGlobalAbort)));
    assert_eq!(smmu.regs().reg(reg::CR0ACK) & SMMUEN, SMMUEN);
    let o = smmu.regs().translate(SID + 1, 0x4000, true);
    assert!(reaches_nothing(o), "the stream not yet fetched: {o:?}");
}

/// `running()` on an SMMU without GBPA (QEMU 7.2's).
fn running_without_gbpa() -> (Smmu<SmmuModel>, smmuv3::DomainId) {
    let model = SmmuModel::host();
    model.without_gbpa();
    // SAFETY: fresh leaked memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(model, common::memory(32), common::config()) }.unwrap();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let page = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    (smmu, d)
}

/// The fault injection the failure image boots with (`Smmu::withhold_doorbell`, images
/// `smmu-failure.xml`): the driver stops writing CMDQ_PROD, so the SMMU, which works,
/// never sees a command queued after it. To the driver that is an SMMU that stopped
/// answering: the unmap's sync times out, the next one too, and the SMMU is failed closed,
/// every stream aborting, the page the TLB still held included. CMDQ_PROD is not written
/// again: what the image shows is the driver's own path, not the SMMU's.
#[test]
fn a_withheld_doorbell_is_an_smmu_that_stopped_answering() {
    let (mut smmu, d) = running();
    let mapped = smmu.regs().translate(SID, 0x1000, true);
    let prod = smmu.regs().reg(reg::CMDQ_PROD);
    smmu.withhold_doorbell();
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), mapped, "still in the TLB");
    assert_eq!(smmu.invalidate_domain(d), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.failure(), Some(Ok(())), "failed closed");
    assert!(smmu.unanswered());
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CMDQ_PROD), prod, "no command reached the SMMU");
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, 0, "CR0ACK.SMMUEN");
    assert_eq!(m.translate(SID, 0x1000, true), Outcome::Abort, "the page the TLB held");
    assert_eq!(m.violations(), Vec::<&str>::new());
}

/// A slow SMMU (its command queue consumes again only after `reads` more reads of
/// CMDQ_CONS: more than the wait that fails it takes, 1001 at the model's bound of 1000
/// polls) with its STE and TLB entry for `SID` cached and the unmap of its page never
/// confirmed, failed by the second wait in a row.
fn slow_and_failed(smmu: &mut Smmu<SmmuModel>, d: smmuv3::DomainId, reads: u32) {
    stopped_answering(smmu, d);
    smmu.regs().set_stuck(false);
    smmu.regs().consume_after_reads(reads);
    assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")));
    assert!(smmu.unanswered());
}

/// Where the SMMU cannot be disabled with GBPA.ABORT in effect (here: its disable is
/// never acknowledged, and the model goes on translating as it was), the aborting stream
/// table alone leaves what the SMMU cached in use. The escalation then queues one last
/// CMD_CFGI_ALL, TLBI of everything and CMD_SYNC, waited for within the bound: an SMMU
/// that was slow, not dead, completes it, and from then on every stream reads an aborting
/// STE, the one whose STE and TLB entry were cached included, so `failure` says every
/// transaction aborts. Failing before: `failure` was the disable's `Timeout` and the
/// cached stream still reached the page whose unmap was never confirmed.
#[test]
fn an_unacknowledged_disable_is_followed_by_a_last_invalidation_that_a_slow_smmu_completes() {
    let (mut smmu, d) = running();
    smmu.regs().withhold_ack(reg::CR0, 1);
    // The second wait (1001 reads) fails it; the last invalidation's sees the queue
    // consume.
    slow_and_failed(&mut smmu, d, 1500);
    assert_eq!(smmu.failure(), Some(Ok(())));
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, SMMUEN, "the disable never took");
    assert_ne!(m.reg(reg::GBPA) & GBPA_ABORT, 0, "GBPA.ABORT");
    let last = m.commands().iter().rev().take(3).map(|c| c.opcode()).collect::<Vec<_>>();
    assert_eq!(last, [0x46, 0x30, 0x04], "CFGI_ALL, TLBI_NSNH_ALL, SYNC last");
    assert_every_stream_reaches_nothing(m);
    assert_eq!(m.violations(), Vec::<&str>::new());
}

/// The same where nothing consumes any more (a dead queue): the last invalidation is
/// not completed, and `failure` says what holds: the disable's `Timeout`, the SMMU still
/// translating, the stream whose STE it cached still reaching the page from its TLB (what
/// the architecture allows and the model does), the others aborting.
#[test]
fn an_unacknowledged_disable_on_a_dead_queue_is_reported_with_what_still_translates() {
    let (mut smmu, d) = running();
    let pa = stopped_answering(&mut smmu, d);
    smmu.regs().withhold_ack(reg::CR0, 1);
    assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.failure(), Some(Err(Error::Timeout("SMMU_CR0ACK (disable)"))));
    let m = smmu.regs();
    assert_eq!(m.translate(SID, 0x1000, true), Outcome::Ok(pa), "cached: DMA not known to be stopped");
    assert!(reaches_nothing(m.translate(SID + 1, 0x1000, true)));
}

/// Without GBPA (QEMU 7.2) the SMMU is never disabled (disabled, it would pass
/// everything), and the aborting table leaves its cached entries in use. The last
/// invalidation: a slow SMMU completes it, and then every stream aborts, the cached one
/// included. Failing before: `failure` was `NoGlobalAbort` and the cached stream still
/// reached the page.
#[test]
fn without_gbpa_a_slow_smmus_last_invalidation_stops_its_cached_entries() {
    let (mut smmu, d) = running_without_gbpa();
    slow_and_failed(&mut smmu, d, 1500);
    assert_eq!(smmu.failure(), Some(Ok(())));
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, SMMUEN, "left enabled: disabled, it would pass everything");
    assert_every_stream_reaches_nothing(m);
}

/// The escalation's own GBPA update never completes (the model's
/// `gbpa_update_never_completes`: the write taken, UPDATE reading 1 from then on): GBPA
/// changes only through an update, so the ABORT `init` read back set is still in effect,
/// and the SMMU is disabled all the same: every stream aborts, the page the TLB held
/// included. What held before this session's changes, on the new injection.
#[test]
fn an_escalation_whose_gbpa_write_never_completes_still_disables_with_abort_in_effect() {
    let (mut smmu, d) = running();
    stopped_answering(&mut smmu, d);
    smmu.regs().gbpa_update_never_completes();
    assert_eq!(smmu.sync(), Err(Error::Timeout("CMD_SYNC completion")));
    assert_eq!(smmu.failure(), Some(Ok(())));
    let m = smmu.regs();
    assert_ne!(m.reg(reg::GBPA) & (1 << 31), 0, "UPDATE still reads 1");
    assert_ne!(m.reg(reg::GBPA) & GBPA_ABORT, 0, "init's ABORT in effect");
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, 0);
    for (sid, iova) in [(SID, 0x1000), (SID + 1, 0x1000), (0, 0)] {
        assert_eq!(m.translate(sid, iova, true), Outcome::Abort, "stream {sid:#x} at {iova:#x}");
    }
    assert_eq!(m.violations(), Vec::<&str>::new());
}

/// What the IOMMU PD's panic hook does, with the registers and not the driver: fail the
/// SMMU closed again, knowing what the driver had established (`Smmu::known`).
fn as_the_panic_hook(smmu: &Smmu<SmmuModel>) -> Result<(), Error> {
    smmuv3::fail_closed_knowing(smmu.regs(), smmuv3::Bound::Polls(1000), smmu.known())
}

/// The IOMMU PD panics while serving, its SMMU's GBPA update no longer completing (an SMMU
/// that hangs): `init` read GBPA.ABORT back set, so ABORT is still in effect and the hook
/// disables the SMMU, as the driver's own failure path does
/// (`a_gbpa_update_that_never_completes_in_the_escalation_still_fails_the_smmu_closed`).
/// Failing before (the hook's `fail_closed` passed `gbpa_aborts = false`): the hook stopped
/// at the GBPA timeout, left SMMUEN set and said DMA was not known to be stopped, and the
/// device still reached its mapped page.
#[test]
fn a_panic_hook_on_a_hung_gbpa_disables_the_smmu_on_the_abort_init_saw() {
    let (smmu, _) = running();
    smmu.regs().gbpa_busy_for(u32::MAX);
    assert_eq!(as_the_panic_hook(&smmu), Ok(()));
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, 0, "CR0ACK.SMMUEN");
    for (sid, iova) in [(SID, 0x1000), (0, 0)] {
        assert_eq!(m.translate(sid, iova, true), Outcome::Abort, "stream {sid:#x} at {iova:#x}");
    }
    assert_eq!(m.violations(), Vec::<&str>::new(), "no GBPA write while UPDATE was 1");
}

/// Without GBPA (QEMU 7.2) knowing changes nothing: the hook leaves the SMMU enabled on
/// its table (disabled, it would pass everything) and says DMA is not known to be stopped.
#[test]
fn a_panic_hook_without_gbpa_leaves_the_smmu_enabled_and_says_so() {
    let (smmu, _) = running_without_gbpa();
    assert_eq!(as_the_panic_hook(&smmu), Err(Error::NoGlobalAbort));
    assert_eq!(smmu.regs().reg(reg::CR0ACK) & SMMUEN, SMMUEN);
}

/// The IOMMU PD panics after the driver failed the SMMU closed with every transaction
/// aborting (a slow SMMU's disable never acknowledged, then its last invalidation
/// completed), and the hook's own disable is not acknowledged either: what the driver
/// confirmed still holds (the hook sets GBPA.ABORT again and clears SMMUEN, neither of
/// which lets anything through), every stream aborts, and the hook says so. Failing
/// before: the hook returned the disable's `Timeout`, and the clients' rings were told
/// DMA was not known to be stopped after the driver had confirmed it was.
#[test]
fn a_panic_hook_after_a_confirmed_failure_keeps_it_confirmed() {
    let (mut smmu, d) = running();
    smmu.regs().withhold_ack(reg::CR0, 1);
    slow_and_failed(&mut smmu, d, 1500);
    assert_eq!(smmu.failure(), Some(Ok(())));
    smmu.regs().withhold_ack(reg::CR0, 1);
    assert_eq!(as_the_panic_hook(&smmu), Ok(()));
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, SMMUEN, "the hook's disable never took either");
    assert_every_stream_reaches_nothing(m);
}

/// The IOMMU PD stops serving on an SMMU whose driver recorded no failure (a path that
/// gives up on the SMMU on its own): what it tells the clients is what failing closed now
/// gave, and every stream aborts. Failing with the PD's expression before,
/// `failure().unwrap_or(Ok(()))`, in `fail_closed_now`'s place: `Ok`, said as "every
/// device's DMA aborts", with the device still reaching its mapped page.
#[test]
fn stopping_on_an_smmu_the_driver_has_not_failed_fails_it_closed_before_saying_so() {
    let (mut smmu, _) = running();
    assert_eq!(smmu.failure(), None);
    assert_eq!(smmu.fail_closed_now(), Ok(()));
    assert_eq!(smmu.failure(), Some(Ok(())));
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, 0, "CR0ACK.SMMUEN");
    for (sid, iova) in [(SID, 0x1000), (0, 0)] {
        assert_eq!(m.translate(sid, iova, true), Outcome::Abort, "stream {sid:#x} at {iova:#x}");
    }
}

/// The same without GBPA (QEMU 7.2): the SMMU stays enabled (disabled, it would pass
/// everything), every STE aborting, and the last invalidation, which the model's working
/// queue completes, leaves nothing cached in use: every stream aborts, the verdict `Ok`
/// for that reason alone. Failing before as above: `Ok` with both streams reaching.
#[test]
fn stopping_on_an_smmu_without_gbpa_leaves_it_enabled_with_every_stream_aborting() {
    let (mut smmu, d) = running_without_gbpa();
    smmu.attach(StreamId(SID + 1), d).unwrap();
    assert_eq!(smmu.fail_closed_now(), Ok(()));
    let m = smmu.regs();
    assert_eq!(m.reg(reg::CR0ACK) & SMMUEN, SMMUEN, "left enabled");
    for (sid, iova) in [(SID, 0x1000), (SID + 1, 0x1000)] {
        assert!(reaches_nothing(m.translate(sid, iova, true)), "stream {sid:#x} at {iova:#x}");
    }
}

/// After a failure the driver recorded, its verdict stands and nothing is written again.
#[test]
fn stopping_after_a_recorded_failure_keeps_its_verdict_and_writes_nothing() {
    let (mut smmu, _) = running_without_gbpa();
    smmu.regs().enter_service_failure();
    assert_eq!(smmu.check_global_errors(), Err(Error::ServiceFailure));
    let writes = smmu.regs().register_writes().len();
    assert_eq!(smmu.fail_closed_now(), smmu.failure().unwrap());
    assert_eq!(smmu.regs().register_writes().len(), writes);
}
