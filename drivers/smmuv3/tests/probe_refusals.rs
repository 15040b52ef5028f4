//! SMMU_IDR0/IDR1 values the probe used to accept: base registers the implementation
//! fixes (SMMU_IDR1.TABLES_PRESET, QUEUES_PRESET, REL) and forced stalls
//! (SMMU_IDR0.STALL_MODEL == 0b10).
//!
//! The bit positions are written out from IHI 0070 6.3.1 and 6.3.2 (the same as Linux's
//! arm-smmu-v3.h), not taken from the driver's `device` module, so a wrong constant
//! there fails here.

mod common;

use smmuv3::model::{SmmuModel, QEMU_IDR};
use smmuv3::probe::{probe, IdRegs, Needs};
use smmuv3::{Error, Smmu, Unsupported};

/// SMMU_IDR0.STALL_MODEL, bits [25:24] (6.3.1; Linux IDR0_STALL_MODEL).
const STALL_MODEL_SHIFT: u32 = 24;
/// SMMU_IDR1.TABLES_PRESET, bit 30 (6.3.2; Linux IDR1_TABLES_PRESET).
const TABLES_PRESET: u32 = 1 << 30;
/// SMMU_IDR1.QUEUES_PRESET, bit 29 (6.3.2; Linux IDR1_QUEUES_PRESET).
const QUEUES_PRESET: u32 = 1 << 29;
/// SMMU_IDR1.REL, bit 28 (6.3.2; Linux IDR1_REL).
const REL: u32 = 1 << 28;
/// QEMU's ID registers (the model's) with a 48-bit output size, as the host model needs.
fn qemu_idr() -> [u32; 6] {
    let mut idr = QEMU_IDR;
    idr[5] = (idr[5] & !0b111) | 5;
    idr
}

fn probe_idr(idr: [u32; 6]) -> Result<smmuv3::Features, Unsupported> {
    let id = IdRegs { idr, iidr: 0, aidr: 1 };
    probe(&id, &Needs { sid_bits: 16, contexts: 32, pa_bits: 40, ias_bits: 48 })
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
