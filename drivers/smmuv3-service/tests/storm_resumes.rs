//! The SMMU's event queue is one for every device (128 records on the model, as in the
//! IOMMU PD), and a storm fills it faster than the IOMMU PD drains it: QEMU writes a
//! record per 4-byte access, so one 4 KiB DMA of a device with nothing mapped is 1,024.
//! What overflows is lost, anyone's, and every client counts a record lost
//! (`Service::events_lost`). The storm limit quarantines the storming device, but RESUME
//! (where the description allows it) started the device's window afresh: an owner
//! resuming in a loop overflowed the queue at every RESUME, and a bystander's fault that
//! came beside any of those storms was lost. Here the hostile client resumes its device
//! and has it storm every 10 ms for 10 storm windows, on the SMMU model with the IOMMU
//! PD's drain (`events::pump`), while a victim's device faults every 10 ms too, each time
//! right after the storm: the victim loses only the faults beside the overflows the
//! ration allows (RESUME once a window, and one overflow after it: a device resumed from a
//! storm is on probation, quarantined again by the next overflow, `Service::events_lost`),
//! is told of each loss, and its mapping still translates. Then the fault flood with a
//! queue flood and a call flood of the same client at once, each bound checked together.

#[path = "../../../iommu-pd/tests/common/victim.rs"]
mod victim;

use std::cell::Cell;

use iommu_pd::pci::NoConfigSpaceClocked;
use iommu_pd::{FaultPolicy, Service};
use iommu_protocol::{DeviceId, ErrorCode, Reply, Request, MAX_MRS};
use smmuv3::model::{host_region, host_smmu, Outcome, SmmuModel};
use smmuv3::{Event, Smmu};
use smmuv3_service::events::{fault_input, pump, EventSink, Rearm};
use smmuv3_service::SmmuBackend;
use victim::{config, map, unmap, Side, HOSTILE, PAGE, SID_HOSTILE, SID_VICTIM, VICTIM, VICTIM_BASE};

/// The hostile device's window, 1 MiB as the victim's.
const HOSTILE_BASE: u64 = 0x2000_0000;

/// The storm window, in the test's clock (ticks and milliseconds alike): a second, as in
/// `system.xml`.
const WINDOW_MS: u64 = 1000;
/// Faults a device may make in a window: `system.xml`'s, more than the event queue holds,
/// so a device overflows it more than once before it is quarantined.
const MAX_FAULTS: u32 = 300;
/// Records the event queue holds (4 KiB, as `iommu-sdf build` makes it).
const EVENTQ: u64 = 128;
/// Overflows a device may cause from boot to its first quarantine: each overflowing drain
/// takes a full queue, mostly its records, and once its window holds more than
/// `MAX_FAULTS` it aborts, which records nothing.
const OVERFLOWS_BEFORE_QUARANTINE: u64 = (MAX_FAULTS as u64 + 1).div_ceil(EVENTQ);
/// Overflows a device may cause from a RESUME that ended its quarantine to the next: the
/// first overflow quarantines it (before, `OVERFLOWS_BEFORE_QUARANTINE` each time).
const OVERFLOWS_PER_RESUME: u64 = 1;
/// Overflows over a run of `RUN_MS`: the first storm's, then one per RESUME, one a window.
const OVERFLOW_BOUND: u64 = OVERFLOWS_BEFORE_QUARANTINE + (RUN_MS / WINDOW_MS + 1) * OVERFLOWS_PER_RESUME;
/// How long the attack lasts, and how often the hostile client resumes and storms.
const RUN_MS: u64 = 10 * WINDOW_MS;
const STEP_MS: u64 = 10;
/// One storm: a 1 KiB DMA's 4-byte accesses, twice the event queue.
const STORM: u64 = 256;

type Svc = Service<'static, SmmuBackend<SmmuModel>>;

/// Each client one page, and a quota of two mappings of it; the IOMMU PD gives the ration
/// the window's length (`pds/iommu`).
fn service(victim_pa: u64, hostile_pa: u64) -> Svc {
    let side = |iova_base, pa| Side { iova_base, iova_size: 1 << 20, pa, pages: 1, max_mappings: 2, max_pages: 2 };
    let faults = FaultPolicy { window: WINDOW_MS, max_faults: MAX_FAULTS, resume_rest_ms: WINDOW_MS };
    let cfg = config(side(VICTIM_BASE, victim_pa), side(HOSTILE_BASE, hostile_pa), faults);
    let backend = SmmuBackend::new(host_smmu(2 * 4), &[SID_VICTIM, SID_HOSTILE]).unwrap();
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(2, 2, 2, 4)>::default()));
    Service::new(backend, cfg, tables.storage()).unwrap()
}

thread_local! {
    /// The test's clock, in milliseconds (the storm window's ticks too).
    static NOW: Cell<u64> = const { Cell::new(0) };
}

fn now_ms() -> u64 {
    NOW.with(Cell::get)
}

fn call(s: &mut Svc, client: usize, req: Request, now: u64) -> Reply {
    NOW.with(|t| t.set(now));
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle_with(client, label, &mrs[..n], &mut NoConfigSpaceClocked(now_ms))
}

/// The IOMMU PD's drain (`pds/iommu`'s `take_faults`): each translation fault routed,
/// stamped with the drain's time, and an overflow counted in every client's ring.
struct Drain<'a> {
    s: &'a mut Svc,
    now: u64,
}

impl EventSink<SmmuModel> for Drain<'_> {
    fn smmu(&mut self) -> &mut Smmu<SmmuModel> {
        self.s.hw_mut().smmu()
    }
    fn take(&mut self, batch: &[Option<Event>]) {
        for e in batch.iter().flatten() {
            match (fault_input(e, self.now), e.stream_id()) {
                (Some(input), _) => self.s.route_fault(input),
                (None, Some(sid)) => self.s.route_stream_event(sid.0),
                (None, None) => continue,
            };
        }
    }
}

/// Drain the event queue empty; whether it had overflowed, and the records taken.
fn drain(s: &mut Svc, now: u64) -> (bool, u64) {
    let mut sink = Drain { s, now };
    let (mut overflowed, mut records) = (false, 0);
    loop {
        let pass = pump::<_, _, 64>(&mut sink, true, 4);
        overflowed |= pass.overflowed;
        records += u64::from(pass.events);
        if pass.rearm != Rearm::Now {
            break;
        }
    }
    if overflowed {
        sink.s.events_lost(now, EVENTQ as u32);
    }
    (overflowed, records)
}

/// The victim reads its ring, as the IOMMU PD's notification has it do, adding the
/// addresses of its faults to `delivered`, and acknowledges what it read.
fn victim_reads_its_ring(s: &mut Svc, now: u64, delivered: &mut Vec<u64>) {
    let ring = s.faults(VICTIM).unwrap();
    delivered.extend(ring.pending().map(|r| r.iova));
    if let Some(last) = ring.pending().last().copied() {
        let final_record = [last.seq, last.repeats.into(), last.iova_last];
        assert_eq!(call(s, VICTIM, Request::AckFaults { upto: last.seq }, now), Reply::ok(&final_record));
    }
}

/// The victim's device misses its mapping once (at an address of its own each step, so
/// that each fault is a record of its own), the event queue is drained, and the victim
/// reads its ring; whether the drain found the queue overflowed.
fn victim_faults_and_reads(s: &mut Svc, now: u64, faults: &mut Vec<u64>, delivered: &mut Vec<u64>) -> bool {
    let iova = VICTIM_BASE + PAGE + (now / STEP_MS % 64) * 2 * PAGE;
    assert!(matches!(dma(s, SID_VICTIM, iova), Outcome::Fault(_)));
    faults.push(iova);
    let overflowed = drain(s, now).0;
    victim_reads_its_ring(s, now, delivered);
    overflowed
}

/// A device's write at `iova`, and the record the SMMU writes for a fault there (the
/// model writes only stage 2's; the driver's CDs ask for stage 1's too, CD.R = 1): an
/// F_TRANSLATION or F_PERMISSION with the StreamID, RnW = 0 and the input address (IHI
/// 0070 7.3.12), lost if the queue is full.
fn dma(s: &mut Svc, sid: u32, iova: u64) -> Outcome {
    let regs = s.hw_mut().smmu().regs();
    let outcome = regs.translate(sid, iova, true);
    if let Outcome::Fault(id) = outcome {
        regs.inject_event([u64::from(id) | u64::from(sid) << 32, 0, iova, 0]);
    }
    outcome
}

#[test]
fn an_owner_resuming_a_storming_device_in_a_loop_loses_no_one_elses_fault() {
    let (vbuf, hbuf) = (host_region(PAGE as usize, 0x1000), host_region(PAGE as usize, 0x1000));
    let mut s = service(vbuf.pa.0, hbuf.pa.0);
    assert_eq!(call(&mut s, VICTIM, map(VICTIM, 0, PAGE, None), 0), Reply::ok(&[VICTIM_BASE]));
    let (mut storms, mut overflows, mut resumed, mut rationed) = (0u64, 0u64, 0u64, 0u64);
    let (mut victim_faults, mut delivered) = (Vec::new(), Vec::new());
    for now in (0..RUN_MS).step_by(STEP_MS as usize) {
        match call(&mut s, HOSTILE, Request::Resume { device: DeviceId(1) }, now) {
            Reply::Ok { .. } => resumed += 1,
            Reply::Err(ErrorCode::ResumeRationed) => rationed += 1,
            r => panic!("at {now} ms the hostile RESUME answered {r:?}"),
        }
        // The hostile device writes 1 KiB where nothing is mapped: every access faults
        // while its stream translates, none once it aborts (an aborting STE records
        // nothing).
        let outcomes: Vec<Outcome> = (0..STORM).map(|i| dma(&mut s, SID_HOSTILE, HOSTILE_BASE + 4 * i)).collect();
        if outcomes.iter().any(|o| *o != Outcome::Abort) {
            assert!(outcomes.iter().all(|o| matches!(o, Outcome::Fault(_))), "at {now} ms: {:?}", outcomes[0]);
            storms += 1;
        }
        // Right after the storm the victim's device misses its mapping (100 times a
        // window, under the limit): its record is written behind the hostile device's,
        // or lost with them.
        overflows += u64::from(victim_faults_and_reads(&mut s, now, &mut victim_faults, &mut delivered));
    }
    // The hostile device was resumed from a storm once a window at most (its first
    // storms needed no RESUME), and overflowed the queue at most as often as that allows:
    // its first storm's allowance, then one overflow per RESUME. (Before probation: 33,
    // each RESUME buying its 3.)
    let (windows, bound) = (RUN_MS / WINDOW_MS, OVERFLOW_BOUND);
    let said = format!("{storms} storms, {overflows} overflows, {resumed} RESUMEs, {rationed} rationed");
    assert!(overflows <= bound, "{said}, more than {bound}");
    assert!(overflows <= storms, "{said}");
    assert!(storms >= windows, "the hostile device did storm: {said}");
    println!("{said}; the victim's faults: {} made, {} delivered", victim_faults.len(), delivered.len());
    // What the victim was told is its own faults, each where it was, and it lost only
    // those that came beside one of the storms RESUME allowed; each overflow is counted
    // in its ring, so none was lost unsaid.
    assert!(delivered.iter().all(|iova| victim_faults.contains(iova)), "{delivered:x?}");
    let lost = victim_faults.len() - delivered.len();
    assert!(lost as u64 <= overflows, "the victim lost {lost} of {} faults: {said}", victim_faults.len());
    assert!(lost as u64 <= bound, "the victim lost {lost}: {said}");
    assert_eq!(s.faults(VICTIM).unwrap().dropped(), overflows);
    // Its mapping translates.
    assert_eq!(dma(&mut s, SID_VICTIM, VICTIM_BASE), Outcome::Ok(vbuf.pa.0));
    // The hostile device's last storm quarantined it: it aborts, and its owner may resume
    // it once a window has passed since its last RESUME.
    assert_eq!(dma(&mut s, SID_HOSTILE, HOSTILE_BASE), Outcome::Abort);
    let resume = Request::Resume { device: DeviceId(1) };
    assert_eq!(call(&mut s, HOSTILE, resume, RUN_MS + WINDOW_MS), Reply::ok(&[]));
    assert!(matches!(dma(&mut s, SID_HOSTILE, HOSTILE_BASE), Outcome::Fault(_)));
}

/// A burst of the hostile device's every 700 ms keeps its window's sliding estimate at or
/// under `MAX_FAULTS` (128 counted per burst: the queue's records; the rest are lost).
const BURST_EVERY_MS: u64 = 700;

/// The service with the victim's page mapped for its device.
fn victim_mapped() -> Svc {
    let (vbuf, hbuf) = (host_region(PAGE as usize, 0x1000), host_region(PAGE as usize, 0x1000));
    let mut s = service(vbuf.pa.0, hbuf.pa.0);
    assert_eq!(call(&mut s, VICTIM, map(VICTIM, 0, PAGE, None), 0), Reply::ok(&[VICTIM_BASE]));
    s
}

/// The hostile device writes `STORM` faulting words, and is not quarantined: each faults.
fn burst_under_the_limit(s: &mut Svc, now: u64) {
    for i in 0..STORM {
        let at = dma(s, SID_HOSTILE, HOSTILE_BASE + 4 * i);
        assert!(matches!(at, Outcome::Fault(_)), "at {now} ms the hostile device was quarantined: {at:?}");
    }
}

/// Where `OVERFLOW_BOUND` stops: it is the bound of a device that storms and is resumed.
/// A device kept under its limit is never quarantined, never on probation, and needs no
/// RESUME: each of its bursts of a queue's worth of faults overflows the queue every
/// device shares, and 128 of its faults (those the queue held) count towards its limit,
/// so it may overflow the queue once per 128 faults its window allows, about 1.4 times a
/// window for 300 (a burst every 700 ms keeps the sliding window's estimate at or under
/// 300). Over 20 windows that is 29 overflows, more than the 24 the bound gives 20
/// windows; the victim loses a fault beside each, each counted.
#[test]
fn a_device_under_its_limit_overflows_the_queue_beyond_the_resume_bound() {
    const RUN_MS: u64 = 20 * WINDOW_MS;
    let mut s = victim_mapped();
    let (mut bursts, mut overflows) = (0u64, 0u64);
    let (mut victim_faults, mut delivered) = (Vec::new(), Vec::new());
    for now in (0..RUN_MS).step_by(STEP_MS as usize) {
        if now % BURST_EVERY_MS == 0 {
            burst_under_the_limit(&mut s, now);
            bursts += 1;
        }
        overflows += u64::from(victim_faults_and_reads(&mut s, now, &mut victim_faults, &mut delivered));
    }
    let bound = OVERFLOWS_BEFORE_QUARANTINE + (RUN_MS / WINDOW_MS + 1) * OVERFLOWS_PER_RESUME;
    let lost = (victim_faults.len() - delivered.len()) as u64;
    println!("{bursts} bursts, {overflows} overflows (the RESUME bound for this run: {bound}), the victim lost {lost}");
    assert_eq!(s.stats().quarantines, 0);
    assert_eq!(overflows, bursts);
    assert!(overflows > bound, "{overflows} overflows, within {bound}");
    assert!(lost <= overflows && lost > 0, "the victim lost {lost}");
    assert_eq!(s.faults(VICTIM).unwrap().dropped(), overflows);
}

/// Probation and another device's overflows, with the device above: a victim's device
/// resumed once from a storm is on probation, and the hostile device need not storm (nor
/// ever be quarantined) to overflow the queue. Whose records an overflow lost is unknown,
/// so it quarantines a device on probation only if that device's records filled a quarter
/// of the queue in the drain that saw it or the one before: the victim, faulting a few
/// times beside each burst, runs through every burst (before, each burst quarantined it
/// again, 10 times in 10 windows, aborting 6.1 s of 10; and then one fault of its own
/// beside a burst did); a flood of its own beside a burst still costs it a quarantine,
/// of which its owner is told.
#[test]
fn another_devices_overflows_leave_a_quiet_device_on_probation_running() {
    use iommu_protocol::faults::kind::QUARANTINED_AT_OVERFLOW;
    const RUN_MS: u64 = 10 * WINDOW_MS;
    let mut s = victim_mapped();
    // The victim's device storms once (a bug of its own, at boot), and is resumed.
    for i in 0..3 {
        for w in 0..128 {
            dma(&mut s, SID_VICTIM, VICTIM_BASE + PAGE + 4 * (128 * i + w));
        }
        drain(&mut s, 0);
    }
    assert_eq!(dma(&mut s, SID_VICTIM, VICTIM_BASE), Outcome::Abort);
    assert_eq!(call(&mut s, VICTIM, Request::Resume { device: DeviceId(0) }, 0), Reply::ok(&[]));
    let told = |s: &Svc| {
        s.faults(VICTIM).unwrap().pending().filter(|r| r.kind == QUARANTINED_AT_OVERFLOW && r.device == 0).count()
    };
    // The victim's device misses its mapping `n` times, each a record of its own.
    let victim_faults = |s: &mut Svc, n: u64| {
        for w in 0..n {
            assert!(matches!(dma(s, SID_VICTIM, VICTIM_BASE + PAGE + 4 * w), Outcome::Fault(_)));
        }
    };
    let (mut bursts, mut overflows) = (0u64, 0u64);
    for now in (STEP_MS..RUN_MS).step_by(STEP_MS as usize) {
        if now % BURST_EVERY_MS == 0 {
            // Faults of the victim's in the queue with the burst, before it: fewer than a
            // quarter of the queue.
            victim_faults(&mut s, QUIET);
            burst_under_the_limit(&mut s, now);
            bursts += 1;
        }
        overflows += u64::from(drain(&mut s, now).0);
        assert!(matches!(dma(&mut s, SID_VICTIM, VICTIM_BASE), Outcome::Ok(_)), "at {now} ms the victim aborts");
    }
    assert_eq!((overflows, bursts), (14, 14));
    assert_eq!((s.stats().quarantines, told(&s)), (1, 0), "only the victim's own storm quarantined it");
    // A flood of its own, a quarter of the queue, beside the next burst: quarantined at
    // the overflow, its owner told.
    let now = RUN_MS.next_multiple_of(BURST_EVERY_MS);
    victim_faults(&mut s, EVENTQ / 4);
    burst_under_the_limit(&mut s, now);
    assert!(drain(&mut s, now).0);
    assert_eq!((s.stats().quarantines, told(&s)), (2, 1));
    assert_eq!(dma(&mut s, SID_VICTIM, VICTIM_BASE), Outcome::Abort);
}

/// Faults of a well-behaved device's between two drains, beside another device's burst:
/// a quarter of the queue less one.
const QUIET: u64 = EVENTQ / 4 - 1;

/// A record the hostile device's transaction at `iova` makes the SMMU write, where the
/// transaction is one the SMMU refuses without a translation fault: while the stream
/// translates it is recorded (lost if the queue is full); an aborting stream records
/// nothing (IHI 0070 7.3). Whether it was recorded.
fn refused(s: &mut Svc, record: [u64; 4], iova: u64) -> bool {
    let regs = s.hw_mut().smmu().regs();
    if regs.translate(SID_HOSTILE, iova, true) == Outcome::Abort {
        return false;
    }
    regs.inject_event(record);
    true
}

/// An ATS-translated write (PCIe AT = translated) at `iova`, where the stream has no ATS:
/// F_TRANSL_FORBIDDEN, with the StreamID and the address.
fn translated_write(iova: u64) -> [u64; 4] {
    [u64::from(smmuv3::event::id::F_TRANSL_FORBIDDEN) | u64::from(SID_HOSTILE) << 32, 0, iova, 0]
}

/// A write with a PASID (SubstreamID) `ssid`, where the stream has no substreams (its STE's
/// S1CDMax is 0): C_BAD_SUBSTREAMID, with the StreamID and the SubstreamID and no address
/// (IHI 0070 7.3.8).
fn substream_write(ssid: u64) -> [u64; 4] {
    use smmuv3::event::{EVTQ_0_SSID, EVTQ_0_SSV};
    let w0 = u64::from(smmuv3::event::id::C_BAD_SUBSTREAMID) | u64::from(SID_HOSTILE) << 32;
    [EVTQ_0_SSID.set(EVTQ_0_SSV.set(w0, 1), ssid), 0, 0, 0]
}

/// The hostile device sends `record(i)` for 256 transactions every 10 ms for 10 windows,
/// the victim faulting once a step: its storm limit quarantines it within the bound of a
/// device that storms (`OVERFLOWS_BEFORE_QUARANTINE`), its owner is told by a record of
/// `kind`, and the victim loses at most a fault per overflow, each counted.
fn refused_flood_is_quarantined(record: fn(u64) -> [u64; 4], kind: u8) {
    let mut s = victim_mapped();
    let (mut overflows, mut sent) = (0u64, 0u64);
    let (mut victim_faults, mut delivered) = (Vec::new(), Vec::new());
    for now in (0..RUN_MS).step_by(STEP_MS as usize) {
        let iova = |i| HOSTILE_BASE + 4 * i;
        sent += (0..STORM).filter(|&i| refused(&mut s, record(i), iova(i))).count() as u64;
        overflows += u64::from(victim_faults_and_reads(&mut s, now, &mut victim_faults, &mut delivered));
    }
    let lost = (victim_faults.len() - delivered.len()) as u64;
    println!("{sent} refused transactions recorded, {overflows} overflows, the victim lost {lost}");
    assert_eq!(s.stats().quarantines, 1);
    assert!(overflows <= OVERFLOWS_BEFORE_QUARANTINE, "{overflows} overflows");
    assert!(lost <= overflows, "the victim lost {lost}");
    assert_eq!(s.faults(VICTIM).unwrap().dropped(), overflows);
    // The hostile device aborts; its owner was told, by a record of the refused kind.
    assert_eq!(dma(&mut s, SID_HOSTILE, HOSTILE_BASE), Outcome::Abort);
    let told = s.faults(HOSTILE).unwrap().pending().find(|r| r.quarantined == 1).copied().unwrap();
    assert_eq!((told.device, told.kind), (1, u32::from(kind)));
}

/// A device may send records the SMMU refuses without a translation fault: ATS-translated
/// transactions where ATS is off, ATS translation requests, unsupported transactions
/// (`smmuv3_service::events::fault_input`). Each is a record in the queue every device
/// shares. Counted only as stream events, they counted towards no storm: a device sending
/// 256 of them every 10 ms overflowed the queue at every step for 10 windows (1,000
/// overflows), never quarantined, and the victim lost a fault beside each. Now they are
/// its faults.
#[test]
fn a_device_flooding_refused_ats_transactions_is_quarantined_by_its_storm_limit() {
    refused_flood_is_quarantined(translated_write, smmuv3::event::id::F_TRANSL_FORBIDDEN);
    // A record its configuration causes is not its doing: still a stream event.
    let bad_ste =
        smmuv3::EventRecord([u64::from(smmuv3::event::id::C_BAD_STE) | u64::from(SID_HOSTILE) << 32, 0, 0, 0]);
    assert_eq!(fault_input(&bad_ste.decode(), 0), None);
}

/// A device may tag its DMA with a PASID (a SubstreamID) on a stream that has none, as
/// PASID-capable functions do at will: each is a C_BAD_SUBSTREAMID record, which carries the
/// StreamID but no address. Counted only as a stream event (it is no translation fault),
/// a device flooding them was never quarantined: 1,000 overflows in 10 windows, the victim
/// losing a fault beside each. Now they are its faults, with address 0.
#[test]
fn a_device_flooding_substream_ids_its_stream_lacks_is_quarantined_by_its_storm_limit() {
    refused_flood_is_quarantined(substream_write, smmuv3::event::id::C_BAD_SUBSTREAMID);
    let record = smmuv3::EventRecord(substream_write(5));
    let input = fault_input(&record.decode(), 7).unwrap();
    assert_eq!((input.stream, input.iova, input.write, input.now), (SID_HOSTILE, 0, false, 7));
}

// The service's tests' client side of a mapping queue; this test posts and drains only.
#[allow(dead_code)]
#[path = "../../../iommu-pd/tests/common/queue.rs"]
mod queue;

/// Wake-ups of the IOMMU PD in a step of the floods: the flood's queue notifies, its owner
/// calls and the event queue is drained at each (a notification is one bit, and a caller
/// waits in its call, so each is at most one per wake-up ahead of any other call).
const WAKE_UPS: u64 = 200;

/// The three floods at once, from one hostile client, against a victim, on the SMMUv3
/// model with the IOMMU PD's drain and pacing (`iommu_pd::pacing::Pacer`, as
/// `pds/iommu/src/queues.rs` paces, on a clock of work: one tick per queue entry, call and
/// event record). Every 10 ms the hostile client RESUMEs its device, which writes 256
/// faulting words (the fault flood); at every one of 200 wake-ups of the IOMMU PD its
/// 256-entry queue is full of MAPs and UNMAPs and notifies (the queue flood), and it makes
/// a MAP or UNMAP call (the call flood). The victim's device faults once a step, and it
/// makes a MAP+UNMAP pair at a different wake-up each step. The bounds stated:
/// - its pair waits for at most one batch of the flood's queue (`QUEUE_BATCH` entries),
///   one call and one drain of the event queue (at most the 128 records it holds): 193
///   ticks of work, whatever the three floods do;
/// - the flood's full batches take at most `T / share` of the run's `T` ticks plus one
///   batch;
/// - the victim loses at most as many faults as there were overflows, each counted, and
///   those at most `storm_resumes`' bound;
/// - every call of the victim's is answered `Ok`, and its mapping translates.
#[test]
fn a_fault_flood_a_call_flood_and_a_queue_flood_together_keep_to_each_bound() {
    use iommu_pd::pacing::{Pacer, SHARE};
    use iommu_protocol::queue::QUEUE_BATCH;

    let (vbuf, hbuf) = (host_region(PAGE as usize, 0x1000), host_region(PAGE as usize, 0x1000));
    let mut s = service(vbuf.pa.0, hbuf.pa.0);
    assert_eq!(call(&mut s, VICTIM, map(VICTIM, 0, PAGE, None), 0), Reply::ok(&[VICTIM_BASE]));
    let q = queue::region();
    let mut pacer = Pacer::<2>::default();
    let (mut tick, mut full_entries, mut longest_wait) = (0u64, 0u64, 0u64);
    let (mut overflows, mut tag, mut hostile_mapped) = (0u64, 0u64, false);
    let (mut victim_faults, mut delivered) = (Vec::new(), Vec::new());
    let wait_bound = QUEUE_BATCH as u64 + 1 + EVENTQ;
    for step in 0..RUN_MS / STEP_MS {
        let now = step * STEP_MS;
        // The fault flood: RESUME (rationed) and a storm, the victim's fault behind it.
        let resumed = call(&mut s, HOSTILE, Request::Resume { device: DeviceId(1) }, now);
        assert!(matches!(resumed, Reply::Ok { .. } | Reply::Err(ErrorCode::ResumeRationed)), "{resumed:?}");
        for i in 0..STORM {
            dma(&mut s, SID_HOSTILE, HOSTILE_BASE + 0x8_0000 + 4 * i);
        }
        let iova = VICTIM_BASE + PAGE + (step % 64) * 2 * PAGE;
        assert!(matches!(dma(&mut s, SID_VICTIM, iova), Outcome::Fault(_)));
        victim_faults.push(iova);
        let victim_at = step * 37 % WAKE_UPS;
        for wake_up in 0..WAKE_UPS {
            // The queue flood: its ring kept full, MAP and UNMAP of one page in turn.
            while queue::post(
                &q,
                tag,
                if tag % 2 == 0 {
                    map(HOSTILE, 0, PAGE, Some(HOSTILE_BASE + PAGE))
                } else {
                    unmap(HOSTILE, HOSTILE_BASE + PAGE)
                },
            ) {
                tag += 1;
            }
            let start = tick;
            let allowed = pacer.allowance(HOSTILE, start);
            let taken = s.serve_queue_up_to(HOSTILE, &q, allowed);
            assert!(taken <= allowed, "{taken} entries taken where {allowed} were allowed");
            while q.pop_completion().is_some() {}
            tick += taken as u64;
            pacer.charge(HOSTILE, taken, start, tick);
            if allowed == QUEUE_BATCH {
                full_entries += taken as u64;
            }
            // The call flood: one call of its owner's per wake-up (it waits in its call).
            let req =
                if hostile_mapped { unmap(HOSTILE, HOSTILE_BASE) } else { map(HOSTILE, 0, PAGE, Some(HOSTILE_BASE)) };
            hostile_mapped ^= matches!(call(&mut s, HOSTILE, req, now), Reply::Ok { .. });
            tick += 1;
            // The event queue's drain.
            let (overflowed, records) = drain(&mut s, now);
            overflows += u64::from(overflowed);
            tick += records;
            if wake_up == victim_at {
                // What was served ahead of the victim's pair in this wake-up.
                let wait = tick - start;
                longest_wait = longest_wait.max(wait);
                assert!(wait <= wait_bound, "step {step}: the victim waited {wait} ticks, more than {wait_bound}");
                let Reply::Ok { values, .. } = call(&mut s, VICTIM, map(VICTIM, 0, PAGE, None), now) else {
                    panic!("step {step}: the victim's MAP was refused")
                };
                assert_eq!(call(&mut s, VICTIM, unmap(VICTIM, values[0]), now), Reply::ok(&[]), "step {step}");
                tick += 2;
            }
        }
        victim_reads_its_ring(&mut s, now, &mut delivered);
    }
    let (windows, overflow_bound) = (RUN_MS / WINDOW_MS, OVERFLOW_BOUND);
    let lost = (victim_faults.len() - delivered.len()) as u64;
    println!(
        "{tick} ticks, the flood's full batches {full_entries} entries (bound {}), {tag} entries posted; \
         the victim's longest wait {longest_wait} ticks (bound {wait_bound}); {overflows} overflows (bound \
         {overflow_bound}), the victim lost {lost} of {} faults",
        tick / SHARE + QUEUE_BATCH as u64,
        victim_faults.len()
    );
    assert!(full_entries <= tick / SHARE + QUEUE_BATCH as u64, "{full_entries} of {tick} ticks in full batches");
    assert!(full_entries > tick / SHARE / 2, "the queue flood ran: {full_entries} of {tick}");
    assert!(overflows <= overflow_bound && overflows >= windows, "{overflows} overflows");
    assert!(delivered.iter().all(|iova| victim_faults.contains(iova)), "{delivered:x?}");
    assert!(lost <= overflows, "the victim lost {lost}, {overflows} overflows");
    assert_eq!(s.faults(VICTIM).unwrap().dropped(), overflows);
    assert_eq!(dma(&mut s, SID_VICTIM, VICTIM_BASE), Outcome::Ok(vbuf.pa.0));
}
