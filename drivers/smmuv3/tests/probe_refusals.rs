//! SMMU_IDR0/IDR1 values the probe used to get wrong: base registers the implementation
//! fixes (SMMU_IDR1.TABLES_PRESET, QUEUES_PRESET, REL), forced stalls
//! (SMMU_IDR0.STALL_MODEL == 0b10), and queues of one entry (SMMU_IDR1.CMDQS or
//! EVENTQS == 0, which is 2^0 entries, not "no queue").
//!
//! The bit positions are written out from IHI 0070 6.3.1 and 6.3.2 (the same as Linux's
//! arm-smmu-v3.h), not taken from the driver's `device` module, so a wrong constant
//! there fails here.

mod common;

use smmuv3::cmd::Opcode;
use smmuv3::event::id;
use smmuv3::mmio::reg;
use smmuv3::model::{Outcome, SmmuModel, QEMU_IDR};
use smmuv3::probe::{probe, IdRegs, Needs};
use smmuv3::{Error, Event, Iova, MemType, Perm, Smmu, StreamId, Unsupported};

/// SMMU_IDR0.TTENDIAN, bits [22:21] (6.3.1; Linux IDR0_TTENDIAN): 0b00 mixed, 0b01
/// reserved, 0b10 little-endian only, 0b11 big-endian only.
const TTENDIAN_SHIFT: u32 = 21;
/// SMMU_IDR0.STALL_MODEL, bits [25:24] (6.3.1; Linux IDR0_STALL_MODEL).
const STALL_MODEL_SHIFT: u32 = 24;
/// SMMU_IDR1.TABLES_PRESET, bit 30 (6.3.2; Linux IDR1_TABLES_PRESET).
const TABLES_PRESET: u32 = 1 << 30;
/// SMMU_IDR1.QUEUES_PRESET, bit 29 (6.3.2; Linux IDR1_QUEUES_PRESET).
const QUEUES_PRESET: u32 = 1 << 29;
/// SMMU_IDR1.REL, bit 28 (6.3.2; Linux IDR1_REL).
const REL: u32 = 1 << 28;
/// SMMU_IDR1.EVENTQS, bits [20:16], and CMDQS, bits [25:21] (6.3.2).
const EVENTQS_SHIFT: u32 = 16;
const CMDQS_SHIFT: u32 = 21;

/// QEMU's ID registers (the model's) with a 48-bit output size, as the host model needs.
fn qemu_idr() -> [u32; 6] {
    let mut idr = QEMU_IDR;
    idr[5] = (idr[5] & !0b111) | 5;
    idr
}

fn probe_idr(idr: [u32; 6]) -> Result<smmuv3::Features, Unsupported> {
    let id = IdRegs { idr, iidr: 0, aidr: 1 };
    probe(&id, &Needs { sid_bits: 16, contexts: 32, pa_bits: 40, ias_bits: 48, cache_maintenance: false })
}

fn with_stall_model(model: u32) -> [u32; 6] {
    let mut idr = qemu_idr();
    idr[0] = (idr[0] & !(0b11 << STALL_MODEL_SHIFT)) | (model << STALL_MODEL_SHIFT);
    idr
}

fn with_idr1_bits(bits: u32) -> [u32; 6] {
    let mut idr = qemu_idr();
    idr[1] |= bits;
    idr
}

fn with_queue_sizes(cmdqs: u32, eventqs: u32) -> [u32; 6] {
    let mut idr = qemu_idr();
    idr[1] = (idr[1] & !(0x3ff << EVENTQS_SHIFT)) | (eventqs << EVENTQS_SHIFT) | (cmdqs << CMDQS_SHIFT);
    idr
}

#[test]
fn fixed_stream_table_or_queue_bases_are_refused_and_the_refusal_says_which() {
    let cases = [
        (TABLES_PRESET, Unsupported::PresetBases { tables: true, queues: false, relative: false }),
        (QUEUES_PRESET, Unsupported::PresetBases { tables: false, queues: true, relative: false }),
        (TABLES_PRESET | REL, Unsupported::PresetBases { tables: true, queues: false, relative: true }),
        (TABLES_PRESET | QUEUES_PRESET | REL, Unsupported::PresetBases { tables: true, queues: true, relative: true }),
        // REL is RES0 without a preset bit; an SMMU that sets it anyway is refused too,
        // as Linux does ("embedded implementation not supported").
        (REL, Unsupported::PresetBases { tables: false, queues: false, relative: true }),
    ];
    for (bits, want) in cases {
        assert_eq!(probe_idr(with_idr1_bits(bits)).err(), Some(want), "SMMU_IDR1 bits {bits:#x}");
    }
    let text = Unsupported::PresetBases { tables: true, queues: true, relative: false }.to_string();
    assert!(text.contains("TABLES_PRESET") && text.contains("QUEUES_PRESET") && !text.contains("REL)"), "{text}");
}

#[test]
fn init_refuses_an_smmu_with_fixed_queue_bases() {
    // SAFETY: fresh memory; the model is the only register file.
    let r =
        unsafe { Smmu::init(SmmuModel::with_idr(with_idr1_bits(QUEUES_PRESET)), common::memory(4), common::config()) };
    let Err(e) = r else { panic!("init accepted an SMMU with preset queue bases") };
    assert_eq!(e, Error::Unsupported(Unsupported::PresetBases { tables: false, queues: true, relative: false }));
}

#[test]
fn forced_stalls_are_refused() {
    // 0b10: "Stall is forced ... CD.S must be 1" (6.3.1); a CD with S == 0 is ILLEGAL
    // (5.5), and this driver's CDs never stall.
    assert_eq!(probe_idr(with_stall_model(0b10)).err(), Some(Unsupported::StallForced));
    assert!(Unsupported::StallForced.to_string().contains("STALL_MODEL"));
    // 0b00 (stall and terminate) and 0b01 (terminate only) take CD.S == 0 and
    // STE.S1STALLD == 0 (5.5): accepted.
    for model in [0b00, 0b01] {
        assert!(probe_idr(with_stall_model(model)).is_ok(), "STALL_MODEL {model:#b}");
    }
    // SAFETY: fresh memory; the model is the only register file.
    let r = unsafe { Smmu::init(SmmuModel::with_idr(with_stall_model(0b10)), common::memory(4), common::config()) };
    assert_eq!(r.err(), Some(Error::Unsupported(Unsupported::StallForced)));
}

#[test]
fn a_queue_size_of_zero_is_one_entry_not_no_queue() {
    let f = probe_idr(with_queue_sizes(0, 0)).expect("one-entry queues");
    assert_eq!((f.cmdq_log2, f.eventq_log2), (0, 0));
    let f = probe_idr(with_queue_sizes(3, 0)).expect("one-entry event queue");
    assert_eq!((f.cmdq_log2, f.eventq_log2), (3, 0));
}

/// A driver on the model with a command queue and an event queue of one entry each.
fn one_entry_smmu() -> Smmu<SmmuModel> {
    // SAFETY: fresh memory; the model is the only register file.
    let smmu = unsafe { Smmu::init(SmmuModel::with_idr(with_queue_sizes(0, 0)), common::memory(32), common::config()) }
        .expect("init with one-entry queues");
    let m = smmu.regs();
    // LOG2SIZE 0 in both base registers (6.3.26, 6.3.29).
    assert_eq!(m.reg(reg::CMDQ_BASE) & 0x1f, 0);
    assert_eq!(m.reg(reg::EVENTQ_BASE) & 0x1f, 0);
    smmu
}

#[test]
fn a_one_entry_command_queue_carries_every_command_and_its_sync() {
    // Each command is consumed before the next one (or the CMD_SYNC behind it) is
    // written: `push` rings the doorbell and waits while the queue is full.
    let mut smmu = one_entry_smmu();
    let buf = common::buffer(0x4000, 0x1000);
    let d = smmu.create_domain().unwrap();
    smmu.map(d, Iova(0x10_0000), buf.pa, 0x4000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(8), d).unwrap();
    assert_eq!(smmu.regs().translate(8, 0x10_0123, true), Outcome::Ok(buf.pa.0 + 0x123));

    // An unmap of several pages: several TLBIs and a CMD_SYNC through one slot, and the
    // unmap returns only once the SMMU consumed the sync (the model's TLB is clean).
    smmu.regs().clear_commands();
    // Two pages apart: two TLBIs, range invalidation (which QEMU's SMMU, and so this
    // model, has) or not.
    smmu.unmap_batch(d, &[(Iova(0x10_0000), 0x1000), (Iova(0x10_2000), 0x1000)]).unwrap();
    let ops: Vec<u8> = smmu.regs().commands().iter().map(|c| c.opcode()).collect();
    assert_eq!(ops.last(), Some(&(Opcode::Sync as u8)));
    assert_eq!(ops.iter().filter(|&&o| o == Opcode::TlbiNhVa as u8).count(), 2);
    assert_eq!(smmu.regs().translate(8, 0x10_0000, false), Outcome::Fault(id::F_TRANSLATION));
    assert_eq!(smmu.regs().translate(8, 0x10_2000, false), Outcome::Fault(id::F_TRANSLATION));
    assert_eq!(smmu.regs().translate(8, 0x10_1000, false), Outcome::Ok(buf.pa.0 + 0x1000));
    assert_eq!(smmu.regs().translate(8, 0x10_3000, false), Outcome::Ok(buf.pa.0 + 0x3000));

    // A rejected command in the only slot: reported, replaced by a CMD_SYNC, and the
    // queue goes on.
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    assert_eq!(
        smmu.unmap(d, Iova(0x10_3000), 0x1000),
        Err(Error::CommandError { code: 1, opcode: Opcode::TlbiNhVa as u8 })
    );
    smmu.sync().unwrap();
    smmu.invalidate_domain(d).unwrap();
    assert_eq!(smmu.regs().translate(8, 0x10_3000, false), Outcome::Fault(id::F_TRANSLATION));
    smmu.detach(StreamId(8)).unwrap();
    assert_eq!(smmu.regs().translate(8, 0x10_3000, false), Outcome::Abort);
    smmu.destroy_domain(d).unwrap();
    assert_eq!(smmu.stats().timeouts, 0);
}

#[test]
fn a_one_entry_event_queue_delivers_and_reports_what_it_could_not_hold() {
    let mut smmu = one_entry_smmu();
    let rec = |sid: u64| [u64::from(id::C_BAD_STREAMID) | (sid << 32), 0, 0, 0];
    let sid_of = |e: Event| match e {
        Event::BadStreamId { sid, .. } => sid,
        other => panic!("decoded as {other:?}"),
    };
    smmu.regs().inject_event(rec(8));
    let mut sids = Vec::new();
    let d = smmu.drain_events(|e| sids.push(sid_of(e)));
    assert_eq!((d.events, d.overflowed, sids.as_slice()), (1, false, &[StreamId(8)][..]));
    // Two records before the next drain: the slot holds the first, the second is lost
    // and the SMMU says so (EVENTQ_PROD.OVFLG, IHI 0070 7.4).
    smmu.regs().inject_event(rec(9));
    smmu.regs().inject_event(rec(10));
    sids.clear();
    let d = smmu.drain_events(|e| sids.push(sid_of(e)));
    assert_eq!((d.events, d.overflowed, sids.as_slice()), (1, true, &[StreamId(9)][..]));
    // Acknowledged: the queue goes on.
    smmu.regs().inject_event(rec(11));
    sids.clear();
    let d = smmu.drain_events(|e| sids.push(sid_of(e)));
    assert_eq!((d.events, d.overflowed, sids.as_slice()), (1, false, &[StreamId(11)][..]));
    assert_eq!(smmu.stats().event_overflows, 1);
}

/// TTENDIAN = 0b01 is reserved: the SMMU does not say which endianness its walker takes,
/// so this driver's little-endian tables are refused for it as Linux refuses it
/// ("unknown/unsupported TT endianness"); the three defined values are as before.
#[test]
fn a_reserved_table_endianness_is_refused() {
    let with_ttendian = |v: u32| {
        let mut idr = qemu_idr();
        idr[0] = (idr[0] & !(0b11 << TTENDIAN_SHIFT)) | (v << TTENDIAN_SHIFT);
        idr
    };
    assert_eq!(probe_idr(with_ttendian(0b01)).err(), Some(Unsupported::ReservedEndianness));
    assert!(probe_idr(with_ttendian(0b00)).is_ok(), "mixed");
    assert!(probe_idr(with_ttendian(0b10)).is_ok(), "little-endian");
    assert_eq!(probe_idr(with_ttendian(0b11)).err(), Some(Unsupported::BigEndianOnly));
}
