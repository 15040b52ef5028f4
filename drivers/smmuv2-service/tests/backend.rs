//! `Smmuv2Backend` on its own, on the ZynqMP MMU-500 model: what a description needs is
//! counted before anything is written, and a device's several StreamIDs are one address
//! space.

use iommu_pd::IommuHw;
use iommu_protocol::Rights;
use smmuv2::model::{host_config, host_region, Mmu500Model, Outcome, Profile, IMX8QXP, ZYNQMP};
use smmuv2::{Error, Memory, Smmu, StreamId};
use smmuv2_service::{Recorded, Smmuv2Backend};

/// What `drain_faults` drained, in order.
fn drain(b: &mut Smmuv2Backend<Mmu500Model>, now: u64) -> Vec<Recorded> {
    let mut out = Vec::new();
    b.drain_faults(now, |_, r| out.push(r));
    out
}

fn smmu() -> Smmu<Mmu500Model> {
    smmu_of(ZYNQMP)
}

fn smmu_of(profile: Profile) -> Smmu<Mmu500Model> {
    let mem = Memory { tables: host_region(64 * 4096, 4096) };
    // SAFETY: fresh host memory only this driver uses.
    unsafe { Smmu::init(Mmu500Model::new(profile), mem, host_config()) }.expect("init")
}

/// ZynqMP's MMU-500 has 16 stage-1 banks, one of them the driver's sink, and 48 SMRs: a
/// 16th device, a 49th StreamID or one wider than 15 bits is refused as the driver's
/// typed error, and nothing was taken.
#[test]
fn banks_smrs_and_widths_are_counted_before_anything_is_written() {
    let streams: Vec<u32> = (0..16).map(|i| 0x100 + i).collect();
    assert_eq!(Smmuv2Backend::new(smmu(), &streams).err(), Some(Error::ContextBanksExhausted { banks: 15 }));
    assert_eq!(Smmuv2Backend::new(smmu(), &[0x10, 0x8000]).err(), Some(Error::StreamIdTooWide(StreamId(0x8000))));
    assert_eq!(Smmuv2Backend::new(smmu(), &[0x10, 0x11, 0x10]).err(), Some(Error::StreamInUse(StreamId(0x10))));
    let mut b = Smmuv2Backend::new(smmu(), &streams[..15]).expect("15 banks");
    let extra: Vec<u32> = (0..34).map(|i| 0x200 + i).collect();
    assert_eq!(b.add_streams(0, &extra).err(), Some(Error::SmrsExhausted { groups: 48 }));
    // Nothing was taken: 33 more fit exactly, and every device still enables.
    b.add_streams(0, &extra[..33]).unwrap();
    assert_eq!(b.add_streams(1, &[0x300]).err(), Some(Error::SmrsExhausted { groups: 48 }));
    for d in 0..15 {
        b.enable(d).unwrap();
    }
    assert_eq!(b.smmu().smrs_in_use(), 48);
    assert!(b.smmu_ref().regs().violations().is_empty());
}

/// A device with several StreamIDs: each translates through the device's bank, each
/// faults once the device is blocked, and a fault on any of them names it.
#[test]
fn a_device_with_several_streams_is_one_address_space() {
    let buf = host_region(4096, 4096);
    let mut b = Smmuv2Backend::new(smmu(), &[0x14e8, 0x14e9]).unwrap();
    b.add_streams(0, &[0x14ea, 0x14eb]).unwrap();
    assert_eq!(b.add_streams(0, &[0x14e9]).err(), Some(Error::StreamInUse(StreamId(0x14e9))));
    b.enable(0).unwrap();
    b.enable(1).unwrap();
    b.map(0, 0x1000, buf.pa.0, 4096, Rights::READ_WRITE).unwrap();
    let m = |b: &Smmuv2Backend<Mmu500Model>, sid| b.smmu_ref().regs().access(sid, 0x1000, true);
    for sid in [0x14e8, 0x14ea, 0x14eb] {
        assert_eq!(m(&b, sid), Outcome::Translated(buf.pa.0), "{sid:#x}");
    }
    assert!(!m(&b, 0x14e9).reached_memory(), "device 1 has its own bank");
    let [Recorded::Fault(f)] = drain(&mut b, 7)[..] else { panic!("one fault") };
    assert_eq!((f.stream, f.iova, f.write, f.kind), (0x14e9, 0x1000, true, 0x10));
    b.block(0).unwrap();
    let sink = b.smmu_ref().sink_bank();
    for sid in [0x14e8, 0x14ea, 0x14eb] {
        assert_eq!(m(&b, sid), Outcome::ContextFault { cb: sink, fsr: smmuv2::fault::fsr::TF }, "{sid:#x}");
    }
    // In the sink: recorded there, read by no drain, told to no client (as the SMMUv3's
    // aborting STE records nothing).
    assert_eq!(drain(&mut b, 8), []);
}

/// A block whose TLBSYNC never completes is not reported done; once the SMMU syncs
/// again, the retried block confirms (the streams it had detached stay detached). (A
/// retry whose wait timed out too, with no sync completed between, would fail the SMMU
/// closed: `drivers/smmuv2/tests/failure_paths.rs`.)
#[test]
fn a_block_is_done_only_once_its_invalidation_is_confirmed() {
    let mut b = Smmuv2Backend::new(smmu(), &[0x20]).unwrap();
    b.enable(0).unwrap();
    b.smmu_ref().regs().stall_syncs(true);
    assert!(b.block(0).is_err());
    assert!(!b.smmu_ref().regs().access(0x20, 0, false).reached_memory());
    b.smmu_ref().regs().stall_syncs(false);
    b.block(0).unwrap();
    b.enable(0).unwrap();
    assert_eq!(b.smmu_ref().failure(), None);
}

/// i.MX8QXP's masters present the SCU's 7-bit StreamID with the interconnect's bits
/// above it: attached under the mask NXP's device trees give (0x7f80), a transaction
/// with any upper bits translates through the device's bank, another device's ID does
/// not, and a mask under which two devices' IDs would match one SMR is refused.
#[test]
fn streams_match_under_the_socs_mask() {
    let buf = host_region(4096, 4096);
    let mut b = Smmuv2Backend::new(smmu(), &[0x11, 0x12]).unwrap();
    assert_eq!(b.set_smr_mask(0x7fff).err(), Some(Error::SmrConflict { sid: StreamId(0x12), mask: 0x7fff }));
    b.set_smr_mask(0x7f80).unwrap();
    b.enable(0).unwrap();
    b.map(0, 0x1000, buf.pa.0, 4096, Rights::READ_WRITE).unwrap();
    let m = |b: &Smmuv2Backend<Mmu500Model>, sid| b.smmu_ref().regs().access(sid, 0x1000, true);
    for sid in [0x11, 0x0091, 0x3f91] {
        assert_eq!(m(&b, sid), Outcome::Translated(buf.pa.0), "{sid:#x}");
    }
    assert!(!m(&b, 0x12).reached_memory());
    assert!(!m(&b, 0x0092).reached_memory());
    b.block(0).unwrap();
    assert!(!m(&b, 0x0091).reached_memory());
    assert!(b.smmu_ref().regs().violations().is_empty());
}

/// i.MX8QXP: a master's transactions carry the interconnect's bits above the SCU's 7-bit
/// ID, so the StreamID a fault records (CBFRSYNRAn, sGFSYNR1) is seldom the one the
/// description gave the device, while the service attributes a fault by the described
/// StreamIDs alone (`Service::route_fault`). The fault input names the described
/// StreamID the SMR matched: a context fault's by its bank, an unmatched stream's (a
/// device never enabled) by the mask; a stream no device has keeps its own.
#[test]
fn a_fault_on_a_masked_stream_names_the_described_stream() {
    let mut b = Smmuv2Backend::new(smmu_of(IMX8QXP), &[0x11, 0x12, 0x14]).unwrap();
    b.set_smr_mask(0x7f80).unwrap();
    b.enable(0).unwrap();
    b.enable(1).unwrap();
    let m = |b: &Smmuv2Backend<Mmu500Model>, sid| b.smmu_ref().regs().access(sid, 0x5000, true);
    for (sid, device_stream) in [(0x3f91, 0x11), (0x0092, 0x12), (0x11, 0x11)] {
        assert!(matches!(m(&b, sid), Outcome::ContextFault { .. }), "{sid:#x}");
        let [Recorded::Fault(f)] = drain(&mut b, 1)[..] else { panic!("{sid:#x}: one fault") };
        assert_eq!((f.stream, f.iova, f.kind), (device_stream, 0x5000, 0x10), "{sid:#x}");
    }
    // Device 0 blocked: its streams fault in the sink, which no drain reads.
    b.block(0).unwrap();
    let sink = b.smmu_ref().sink_bank();
    assert_eq!(m(&b, 0x0191), Outcome::ContextFault { cb: sink, fsr: smmuv2::fault::fsr::TF });
    assert_eq!(drain(&mut b, 2), []);
    // Device 2, never enabled, is unmatched (sGFSR.USF): named by the mask, still its.
    assert_eq!(m(&b, 0x0194), Outcome::GlobalFault(smmuv2::fault::sgfsr::USF));
    assert_eq!(drain(&mut b, 2), [Recorded::StreamEvent(0x14)]);
    // A stream no device has is named as the SMMU recorded it.
    assert_eq!(m(&b, 0x0113), Outcome::GlobalFault(smmuv2::fault::sgfsr::USF));
    assert_eq!(drain(&mut b, 3), [Recorded::StreamEvent(0x0113)]);
    assert!(b.smmu_ref().regs().violations().is_empty());
}

/// Attack on the mask: a StreamID added after the SoC's mask is set, which differs from
/// another device's only in the bits the mask ignores, would be a second SMR matching the
/// first device's stream. While the first device has no SMR (never enabled) the second
/// device's SMR is the only match, so the first device's DMA (its described 0x11) would
/// translate in the second device's bank. `add_streams` refuses it as `set_smr_mask`
/// refuses two such streams already there.
#[test]
fn a_stream_added_under_the_mask_may_not_alias_another_devices() {
    let buf = host_region(4096, 4096);
    let mut b = Smmuv2Backend::new(smmu_of(IMX8QXP), &[0x11, 0x12]).unwrap();
    b.set_smr_mask(0x7f80).unwrap();
    let added = b.add_streams(1, &[0x0091]);
    if added.is_ok() {
        // What it would do: device 1 mapped, device 0 blocked, device 0's stream in
        // device 1's bank.
        b.enable(1).unwrap();
        b.map(1, 0x1000, buf.pa.0, 4096, Rights::READ_WRITE).unwrap();
        let reached = b.smmu_ref().regs().access(0x11, 0x1000, true);
        panic!("0x91 added beside 0x11 under mask 0x7f80: device 0's stream 0x11 reaches {reached:?}");
    }
    assert_eq!(added.err(), Some(Error::SmrConflict { sid: StreamId(0x11), mask: 0x7f80 }));
    // Nothing was taken: a stream that differs in an unmasked bit is still added.
    b.add_streams(1, &[0x13]).unwrap();
    b.enable(1).unwrap();
    assert!(b.smmu_ref().regs().violations().is_empty());
}

/// A blocked device that keeps sending DMA (a stopped or quarantined one) used to have its
/// stream unmatched: every transaction a global fault, sGFSR holding one, so the IOMMU PD
/// was woken once per drain for as long as the device sent. Now its streams are routed
/// to the sink bank, whose faults raise no interrupt (SCTLR.CFIE = 0): however much it
/// sends, the SMMU raises no interrupt (the model counts them as CFIE and GFIE say),
/// nothing is drained, and its writes reach no memory, its own mapped buffer included.
/// Enabled again, it translates through its own bank as before. The model's interrupt
/// count is live: the same device faulting in its own bank, and a device never enabled
/// (unmatched), each raise one per drain.
#[test]
fn a_blocked_device_still_sending_wakes_the_iommu_pd_no_more() {
    let buf = host_region(4096, 4096);
    // SAFETY: the test's own page, which only the model's DMA writes otherwise.
    let word = || unsafe { (buf.pa.0 as *const u64).read_volatile() };
    let mut b = Smmuv2Backend::new(smmu(), &[0x14e8, 0x14e9]).unwrap();
    b.enable(0).unwrap();
    b.map(0, 0x1000, buf.pa.0, 4096, Rights::READ_WRITE).unwrap();
    let irqs = |b: &Smmuv2Backend<Mmu500Model>| b.smmu_ref().regs().interrupts();
    let dma = |b: &Smmuv2Backend<Mmu500Model>, sid, iova, v| b.smmu_ref().regs().dma_write_u64(sid, iova, v);
    assert_eq!(dma(&b, 0x14e8, 0x1000, 1), Outcome::Translated(buf.pa.0));
    assert_eq!(word(), 1);
    // Enabled, faulting past its mapping: a context interrupt, its owner told.
    assert!(!dma(&b, 0x14e8, 0x9000, 2).reached_memory());
    assert_eq!(irqs(&b), 1);
    assert!(matches!(drain(&mut b, 0)[..], [Recorded::Fault(_)]));

    b.block(0).unwrap();
    let sink = b.smmu_ref().sink_bank();
    for (round, between) in [1u64, 10, 100, 10_000].into_iter().enumerate() {
        for i in 0..between {
            let iova = if i % 2 == 0 { 0x1000 } else { 0x1000 + i * 4096 };
            let out = dma(&b, 0x14e8, iova, 0xdead);
            assert_eq!(out, Outcome::ContextFault { cb: sink, fsr: smmuv2::fault::fsr::TF }, "{round}/{i}");
        }
        assert_eq!(irqs(&b), 1, "{between} transactions blocked: no wake-up");
        assert_eq!(drain(&mut b, round as u64), [], "{between} transactions");
    }
    assert_eq!(word(), 1, "no blocked write landed, not even at its own mapping");
    assert!(b.smmu_ref().regs().violations().is_empty());

    // Back to its own bank: translates again.
    b.enable(0).unwrap();
    assert_eq!(dma(&b, 0x14e8, 0x1000, 3), Outcome::Translated(buf.pa.0));
    assert_eq!(word(), 3);

    // Device 1 was never enabled, so its stream is unmatched: a global fault. The first
    // raises an interrupt; the drain that reads it turns the global interrupt off while
    // faults keep coming (`a_stream_nobody_described_costs_one_wake_up`), so the drains
    // after it still count one each, and nothing more is raised.
    for round in 0..3u64 {
        for _ in 0..10 {
            assert_eq!(dma(&b, 0x14e9, 0x1000, 4), Outcome::GlobalFault(smmuv2::fault::sgfsr::USF));
        }
        assert_eq!(drain(&mut b, round), [Recorded::StreamEvent(0x14e9)]);
        assert_eq!(irqs(&b), 2, "one in all, not one per drain");
    }
    assert_eq!(word(), 3);
}

/// The IOMMU PD on the MMU-500's level-triggered line (ZynqMP's SPI 155, global and
/// context faults on one line): woken while the line is asserted, each wake-up draining
/// every fault (`drain_faults`) before acknowledging, so a wake-up that leaves the line
/// asserted is followed by another at once. Returns the wake-ups, and every record in
/// order.
fn wake_while_asserted(b: &mut Smmuv2Backend<Mmu500Model>, now: u64, records: &mut Vec<Recorded>) -> u64 {
    let mut wakes = 0;
    while b.smmu_ref().regs().interrupt_asserted() {
        wakes += 1;
        assert!(wakes <= 1000, "the line stays asserted after every drain");
        b.drain_faults(now, |_, r| records.push(r));
    }
    wakes
}

/// A device sending on a StreamID nobody described (no SMR matches it: sGFSR.USF, a
/// global fault) used to wake the IOMMU PD once per transaction that found sGFSR
/// cleared: 10^4 transactions, 10^4 wake-ups, every client starved. Now the drain that
/// finds a global fault turns sCR0.GFIE off, and a drain that finds sGFSR empty (a
/// wake-up for another reason) turns it on again: 10^4 undescribed transactions, with a
/// described device faulting past its mapping every 100th, cost exactly the described
/// device's 100 wake-ups (the first of which also read the first global fault), and
/// each of the described device's 100 faults reaches its owner, named by its StreamID.
/// When the undescribed master pauses, one wake-up that finds sGFSR empty turns the
/// interrupt on again, and its next burst costs one wake-up.
#[test]
fn a_stream_nobody_described_costs_one_wake_up() {
    const UNDESCRIBED: u32 = 0x1234;
    let mut b = Smmuv2Backend::new(smmu(), &[0x14e8]).unwrap();
    b.enable(0).unwrap();
    let buf = host_region(4096, 4096);
    b.map(0, 0x1000, buf.pa.0, 4096, Rights::READ_WRITE).unwrap();
    let dma = |b: &Smmuv2Backend<Mmu500Model>, sid, iova| b.smmu_ref().regs().dma_write_u64(sid, iova, 0xdead);
    let (mut wakes, mut records) = (0, Vec::new());
    for i in 0..10_000u64 {
        let out = dma(&b, UNDESCRIBED, 0x1000 + (i % 64) * 4096);
        assert_eq!(out, Outcome::GlobalFault(smmuv2::fault::sgfsr::USF), "{i}");
        if i % 100 == 0 {
            let out = dma(&b, 0x14e8, 0x10_0000 + i * 4096);
            assert!(matches!(out, Outcome::ContextFault { .. }), "{i}: {out:?}");
        }
        wakes += wake_while_asserted(&mut b, i, &mut records);
    }
    assert_eq!(wakes, 100, "the described device's 100 faults, and nothing for the undescribed stream");
    let told: Vec<u64> = records
        .iter()
        .filter_map(|r| match r {
            Recorded::Fault(f) if f.stream == 0x14e8 => Some(f.iova),
            _ => None,
        })
        .collect();
    assert_eq!(told, (0..100).map(|k| 0x10_0000 + k * 100 * 4096).collect::<Vec<_>>(), "each to its owner");
    assert!(records.iter().all(|r| matches!(r, Recorded::Fault(_) | Recorded::StreamEvent(UNDESCRIBED))));
    assert_eq!(records.len(), 200, "one stream event a drain, the undescribed stream's, counted");
    assert!(b.smmu_ref().global_interrupt_paced());

    // A pause: the next wake-up (the described device's) reads what the last burst left,
    // the one after it finds sGFSR empty and turns the global interrupt on again.
    for k in 0..2 {
        dma(&b, 0x14e8, 0x20_0000 + k * 4096);
        assert_eq!(wake_while_asserted(&mut b, k, &mut records), 1);
    }
    assert!(!b.smmu_ref().global_interrupt_paced());
    // The next burst: one wake-up, then silence again.
    let before = records.len();
    for _ in 0..1000 {
        dma(&b, UNDESCRIBED, 0x1000);
        wakes += wake_while_asserted(&mut b, 0, &mut records);
    }
    assert_eq!(wakes, 101);
    assert_eq!(records[before..], [Recorded::StreamEvent(UNDESCRIBED)]);
    // SAFETY: the test's own page, which only the model's DMA writes otherwise.
    assert_eq!(unsafe { (buf.pa.0 as *const u64).read_volatile() }, 0, "no write landed");
    assert!(b.smmu_ref().regs().violations().is_empty());
}

/// How often the IOMMU PD polls while a poll is owed (`pds/iommu`'s `POLL_US`, 10 ms).
const POLL_MS: u64 = 10;

/// The IOMMU PD on ZynqMP (`pds/iommu/src/mmu500.rs`, `take_faults`) from `from` to `to`
/// (ms): woken while the SMMU's line is asserted, and by its timer `POLL_MS` after a
/// drain that left a poll owed (`Smmuv2Backend::poll_owed`); nothing else drains (a
/// client's request does not). `deadline` is the timer's, carried between calls.
/// Returns the wake-ups.
fn run_iommu_pd(
    b: &mut Smmuv2Backend<Mmu500Model>,
    from: u64,
    to: u64,
    deadline: &mut Option<u64>,
    records: &mut Vec<Recorded>,
) -> u64 {
    let mut wakes = 0;
    for now in from..to {
        if b.smmu_ref().regs().interrupt_asserted() || deadline.is_some_and(|t| now >= t) {
            wakes += 1;
            b.drain_faults(now, |_, r| records.push(r));
            *deadline = b.poll_owed().then_some(now + POLL_MS);
        }
    }
    wakes
}

/// The drain that reads a global fault turns sCR0.GFIE off, and only a drain that finds
/// sGFSR empty turns it on again; on ZynqMP nothing but the SMMU's line woke the IOMMU
/// PD to drain, so after one undescribed transaction GFIE stayed off for good unless a
/// context fault came: every later global fault (another undescribed master, a described
/// device's before its first enable, an unsupported transaction) sat in sGFSR unread,
/// its stream never counted. Now a drain that leaves the global interrupt paced owes a
/// poll: an undescribed master sending every millisecond for a second costs at most one
/// wake-up per poll (100), its pause turns GFIE on again, and a described StreamID's
/// global fault after it is read at once, named by its StreamID.
#[test]
fn a_paced_global_interrupt_is_polled_until_it_is_on_again() {
    const UNDESCRIBED: u32 = 0x1234;
    // Device 1 (0x14e9) is never enabled: its stream is unmatched, a global fault.
    let mut b = Smmuv2Backend::new(smmu(), &[0x14e8, 0x14e9]).unwrap();
    b.enable(0).unwrap();
    let dma = |b: &Smmuv2Backend<Mmu500Model>, sid| b.smmu_ref().regs().dma_write_u64(sid, 0x1000, 0xdead);
    let (mut deadline, mut records) = (None, Vec::new());
    let mut wakes = 0;
    for now in 0..1000 {
        assert_eq!(dma(&b, UNDESCRIBED), Outcome::GlobalFault(smmuv2::fault::sgfsr::USF));
        wakes += run_iommu_pd(&mut b, now, now + 1, &mut deadline, &mut records);
    }
    assert!(wakes <= 1 + 1000 / POLL_MS, "{wakes} wake-ups for 1000 undescribed transactions");
    assert!(records.iter().all(|r| *r == Recorded::StreamEvent(UNDESCRIBED)));
    // The master pauses: within two polls a drain finds sGFSR empty.
    run_iommu_pd(&mut b, 1000, 1000 + 3 * POLL_MS, &mut deadline, &mut records);
    assert!(!b.smmu_ref().global_interrupt_paced(), "GFIE on again once the master paused");
    // A described StreamID's global fault, with no context fault anywhere.
    records.clear();
    assert_eq!(dma(&b, 0x14e9), Outcome::GlobalFault(smmuv2::fault::sgfsr::USF));
    let wakes = run_iommu_pd(&mut b, 2000, 2000 + 3 * POLL_MS, &mut deadline, &mut records);
    assert_eq!(records, [Recorded::StreamEvent(0x14e9)], "read, and named by its StreamID");
    assert_eq!(wakes, 2, "its interrupt, and the poll that finds sGFSR empty");
    assert_eq!(deadline, None, "no poll owed once GFIE is on");
    assert!(!b.smmu_ref().regs().interrupt_asserted());
    assert!(b.smmu_ref().regs().violations().is_empty());
}

/// The ZynqMP model, with a transaction of `stream` made the first time the driver reads
/// sGFAR: a global fault that arrives between `drain_faults`' read of sGFSR and its
/// write-1-to-clear.
struct RacingFault {
    model: Mmu500Model,
    stream: std::cell::Cell<Option<u32>>,
}

impl smmuv2::mmio::Mmio for RacingFault {
    fn read32(&self, offset: usize) -> u32 {
        self.model.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.model.write32(offset, value)
    }
    fn read64(&self, offset: usize) -> u64 {
        if offset == smmuv2::mmio::reg::SGFAR {
            if let Some(sid) = self.stream.take() {
                self.model.access(sid, 0x1000, true);
            }
        }
        self.model.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.model.write64(offset, value)
    }
}

/// A global fault that arrives while the drain holds the one before it (between the read
/// of sGFSR and its clear) only sets sGFSR.MULTI (IHI 0062D 10.6.14: lost, as the
/// register records one at a time), and the clear, writing back what was read, leaves
/// MULTI set. The drain has turned GFIE off; the polls it owes read the MULTI left
/// (no record: the syndrome registers still name the previous fault's stream, which
/// `GlobalFault::decode` took as this one's until now) and clear it, turn GFIE on again,
/// and the next global fault, a described StreamID's, is read and named.
#[test]
fn a_global_fault_between_the_read_and_the_clear_leaves_nothing_stuck() {
    const UNDESCRIBED: u32 = 0x1234;
    let mem = Memory { tables: host_region(64 * 4096, 4096) };
    let regs = RacingFault { model: Mmu500Model::new(ZYNQMP), stream: std::cell::Cell::new(None) };
    // SAFETY: fresh host memory only this driver uses.
    let smmu = unsafe { Smmu::init(regs, mem, host_config()) }.expect("init");
    let mut b = Smmuv2Backend::new(smmu, &[0x14e8, 0x14e9]).unwrap();
    b.enable(0).unwrap();
    model(&b).access(UNDESCRIBED, 0x1000, true);
    b.smmu_ref().regs().stream.set(Some(UNDESCRIBED));
    let (mut records, mut deadline, mut wakes) = (Vec::new(), None, 0);
    for now in 0..6 * POLL_MS {
        if model(&b).interrupt_asserted() || deadline.is_some_and(|t| now >= t) {
            wakes += 1;
            b.drain_faults(now, |_, r| records.push(r));
            deadline = b.poll_owed().then_some(now + POLL_MS);
        }
        if now == 0 {
            let sgfsr = model(&b).peek(smmuv2::mmio::reg::SGFSR) as u32;
            assert_eq!(sgfsr, smmuv2::fault::sgfsr::MULTI, "the racing fault left MULTI alone");
        }
        if now == 4 * POLL_MS {
            assert!(!b.smmu_ref().global_interrupt_paced(), "GFIE on again");
            assert_eq!(model(&b).access(0x14e9, 0x1000, true), Outcome::GlobalFault(smmuv2::fault::sgfsr::USF));
        }
    }
    assert_eq!(records, [Recorded::StreamEvent(UNDESCRIBED), Recorded::StreamEvent(0x14e9)]);
    assert_eq!(wakes, 5, "the first, two polls, the described fault's, one poll");
    assert!(!b.smmu_ref().global_interrupt_paced() && deadline.is_none());
    assert_eq!(model(&b).peek(smmuv2::mmio::reg::SGFSR), 0);
    assert!(model(&b).violations().is_empty());
}

fn model(b: &Smmuv2Backend<RacingFault>) -> &Mmu500Model {
    &b.smmu_ref().regs().model
}
