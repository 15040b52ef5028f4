//! The ID registers of Arm's SMMUv3 implementations, probed: what the driver decodes from
//! each, or why it refuses it. Every value below says where it comes from; a field no
//! source gave is said to be missing, never made up.
//!
//! Sources searched and not found: ID-register values from Arm's TRMs for the CoreLink
//! MMU-600 (100310) and MMU-700 (101542), of which only the opening pages could be read
//! here, and published ID-register values of any server-class SMMUv3 (Ampere
//! Altra/AmpereOne, HiSilicon Kunpeng, NVIDIA Grace, Marvell ThunderX2). The one
//! server-class value found is AmpereOne's 32-bit StreamIDs (see `mmu_700`). In their
//! place: a real MMU-600 integration whose register map gives reset values (Intel
//! Agilex 5), the MMU-700 facts Linux and Arm's maintainers state, and Arm's FVP
//! configured as Trusted Firmware-A documents it.
//!
//! Field positions used in the comments are IHI 0070 6.3.1-6.3.8.

mod common;

use smmuv3::model::{Outcome, SmmuModel, QEMU_IDR};
use smmuv3::probe::{probe, IdRegs, Needs};
use smmuv3::{Features, Iova, MemType, Perm, Smmu, StreamId, Unsupported};

/// What the IOMMU service asks of the SMMU on the QEMU image and the test machines:
/// 16-bit StreamIDs, `MAX_DOMAINS` contexts, memory below 2^40, 48-bit IOVAs.
const NEEDS: Needs =
    Needs { sid_bits: 16, contexts: smmuv3::MAX_DOMAINS, pa_bits: 40, ias_bits: 48, cache_maintenance: false };

/// Arm CoreLink MMU-600 as integrated in Intel's Agilex 5 SoC (TCU at 0x1600_0000), from
/// Intel's "Agilex 5 HPS register map", module smmu_tcu, address-map table of reset values
/// (www.intel.com/content/www/us/en/programmable/hps/agilex5-es/topics/
/// addressblock_smmu_tcu_summary.html). That this SMMU is an MMU-600 is stated by the
/// Agilex 5 HPS TRM (814346, 4.3.3.5) and by SMMU_IIDR.ProductID 0x483 and SMMU_PIDR2
/// (major revision 2) in the same register map.
///
/// SMMU_IDR4 is IMPLEMENTATION DEFINED and not in the register map: 0 here (the probe
/// does not read it). SMMU_IDR2 is 0 (BA_VATOS; no VATOS).
mod agilex5_mmu600 {
    pub const IDR: [u32; 6] = [0x080F_7E3F, 0x0E73_9D18, 0, 0x0000_003C, 0, 0x0040_0075];
    pub const IIDR: u32 = 0x4832_243B;
    pub const AIDR: u32 = 0x0000_0001;

    /// The same document's per-register pages disagree with its address-map table in
    /// five fields: SMMU_IDR0.COHACC, BTM and SEV read 0 there (bits 4, 5, 14),
    /// SMMU_IDR5.OAS reads 0 (32 bits) and SMMU_IIDR.Revision reads 0. The first four describe the
    /// system around the SMMU (coherent interconnect, broadcast TLB maintenance, wake-up
    /// events, physical address size), so the pages may show defaults rather than this
    /// silicon; that is a guess, the document does not say which is right, so both
    /// readings are probed.
    pub const IDR_FIELD_PAGES: [u32; 6] = [0x080F_3E0F, 0x0E73_9D18, 0, 0x0000_003C, 0, 0x0040_0070];
    pub const IIDR_FIELD_PAGES: u32 = 0x4832_043B;
}

/// Arm CoreLink MMU-700. No source gave its ID registers, only these facts:
/// - SMMU_IIDR: ProductID 0x487, Implementer 0x43B (Linux, arm-smmu-v3.c,
///   IIDR_PRODUCTID_ARM_MMU_700 and IIDR_IMPLEMENTER_ARM, which key its errata table).
///   Variant 0, Revision 1: the r0p1 of the TRM found (101542_0001_04), in the
///   Variant = rX, Revision = pY encoding Linux's errata checks use.
/// - SMMU_IDR1.SIDSIZE = 32: "Arm MMU-700 ... always advertises 32-bit StreamID support"
///   (Robin Murphy, Arm, 2 Oct 2024, on "[v2 PATCH] iommu/arm-smmu-v3: Fix L1 stream table
///   index calculation for 32-bit sid size", which AmpereOne's 32-bit StreamIDs prompted;
///   Linux 6.12-rc1 failed to boot on them).
///
/// Every other field is QEMU's SMMUv3 model (hw/arm/smmuv3.c, `smmuv3_init_regs`, as
/// `model::QEMU_IDR`, and its SMMU_AIDR of 0x1), because no MMU-700 value was found.
mod mmu_700 {
    use super::QEMU_IDR;

    /// ProductID 0x487, Variant 0, Revision 1, Implementer 0x43B.
    pub const IIDR: u32 = 0x4870_143B;
    pub const AIDR: u32 = 0x1;

    pub fn idr() -> [u32; 6] {
        let mut idr = QEMU_IDR;
        idr[1] = (idr[1] & !0x3f) | 32;
        idr
    }
}

/// Arm's FVP Base RevC SMMUv3 (an architecture model of an SMMUv3.2, not a product) with
/// the parameters Trusted Firmware-A gives it for Hafnium ("Parameters required for the
/// SMMUv3.2 modeling", docs/components/secure-partition-manager.rst):
/// SMMU_AIDR=2, SMMU_IDR0=0x0046123B, SMMU_IDR1=0x00600002, SMMU_IDR3=0x1714,
/// SMMU_IDR5=0xFFFF0472. SMMU_IDR2, IDR4 and IIDR are not among them and the model's
/// defaults were not found: 0 here (the probe reads none of them).
mod fvp_smmuv3_2 {
    pub const IDR: [u32; 6] = [0x0046_123B, 0x0060_0002, 0, 0x0000_1714, 0, 0xFFFF_0472];
    pub const IIDR: u32 = 0;
    pub const AIDR: u32 = 2;
}

fn probe_with(idr: [u32; 6], iidr: u32, aidr: u32, needs: &Needs) -> Result<Features, Unsupported> {
    probe(&IdRegs { idr, iidr, aidr }, needs)
}

#[test]
fn mmu600_in_agilex5_is_accepted() {
    use agilex5_mmu600::*;
    let f = probe_with(IDR, IIDR, AIDR, &NEEDS).expect("MMU-600 (Agilex 5)");
    // SMMU_IDR1 0x0E739D18: SIDSIZE 24, SSIDSIZE 20, EVENTQS = CMDQS = 19.
    assert_eq!((f.sid_bits, f.ssid_bits), (24, 20));
    assert_eq!((f.cmdq_log2, f.eventq_log2), (19, 19));
    // SMMU_IDR0 0x080F7E3F: ASID16, VMID16 (bit 18), ST_LEVEL = 2-level, HYP, S2P, MSI.
    assert_eq!((f.asid_bits, f.vmid_bits), (16, 16));
    assert!(f.two_level_strtab && f.hyp && f.stage2 && f.msi);
    // SMMU_IDR5 0x00400075: OAS = 0b101, 48 bits.
    assert_eq!((f.oas, f.oas_bits), (5, 48));
    // SMMU_IDR3 0x3C: HAD, PBHA, XNX, PPS; no RIL (range invalidation is SMMUv3.2).
    assert!(!f.range_invalidation);
    // SMMU_AIDR 0x1: SMMUv3.1.
    assert_eq!(f.arch_minor, 1);
    // SMMU_IIDR 0x4832243B: Arm MMU-600 r2p2.
    assert_eq!((f.implementer(), f.product_id(), f.variant(), f.revision()), (0x43B, 0x483, 2, 2));
}

#[test]
fn mmu600_in_agilex5_as_its_register_pages_read_is_refused_as_not_coherent() {
    use agilex5_mmu600::*;
    // COHACC = 0: table walks would not snoop the CPU caches, and this driver does no
    // cache maintenance. (With COHACC set, OAS = 32 bits would refuse memory above 4 GiB
    // as OutputTooNarrow.)
    let r = probe_with(IDR_FIELD_PAGES, IIDR_FIELD_PAGES, AIDR, &NEEDS);
    assert_eq!(r.err(), Some(Unsupported::NotCoherent));
    let mut idr = IDR_FIELD_PAGES;
    idr[0] |= 1 << 4;
    let r = probe_with(idr, IIDR_FIELD_PAGES, AIDR, &NEEDS);
    assert_eq!(r.err(), Some(Unsupported::OutputTooNarrow { oas_bits: 32, needed: 40 }));
}

#[test]
fn mmu700_with_32_bit_streamids_is_accepted() {
    let f = probe_with(mmu_700::idr(), mmu_700::IIDR, mmu_700::AIDR, &NEEDS).expect("MMU-700");
    assert_eq!(f.sid_bits, 32);
    assert_eq!((f.implementer(), f.product_id(), f.variant(), f.revision()), (0x43B, 0x487, 0, 1));
    // A platform may use all 32 bits of StreamID.
    let f = probe_with(mmu_700::idr(), mmu_700::IIDR, mmu_700::AIDR, &Needs { sid_bits: 32, ..NEEDS }).unwrap();
    assert_eq!(f.sid_bits, 32);
    // The rest is QEMU's model, as said above: no meaning for the MMU-700.
    assert_eq!((f.asid_bits, f.cmdq_log2, f.eventq_log2, f.oas_bits), (16, 19, 19, 44));
}

#[test]
fn fvp_smmuv3_2_has_a_one_entry_event_queue_and_four_streamids() {
    use fvp_smmuv3_2::*;
    // SMMU_IDR1 0x00600002: SIDSIZE 2, so 16-bit StreamIDs do not fit.
    assert_eq!(
        probe_with(IDR, IIDR, AIDR, &NEEDS).err(),
        Some(Unsupported::StreamIdsTooWide { sid_bits: 2, needed: 16 })
    );
    // A platform with at most four streams: accepted. EVENTQS = 0 (one entry), which the
    // probe used to refuse as "no queue"; CMDQS = 3 (8 entries).
    let f = probe_with(IDR, IIDR, AIDR, &Needs { sid_bits: 2, ..NEEDS }).expect("FVP SMMUv3.2");
    assert_eq!((f.sid_bits, f.ssid_bits), (2, 0));
    assert_eq!((f.cmdq_log2, f.eventq_log2), (3, 0));
    // SMMU_IDR0 0x0046123B: ASID16, VMID16, linear stream table only (ST_LEVEL = 0), HYP, S2P,
    // no MSI, little-endian walks (TTENDIAN = 0b10), STALL_MODEL = 0b00.
    assert_eq!((f.asid_bits, f.vmid_bits), (16, 16));
    assert!(!f.two_level_strtab && f.hyp && f.stage2 && !f.msi);
    // SMMU_IDR5 0xFFFF0472: OAS = 0b010, 40 bits; SMMU_IDR3 0x1714: RIL.
    assert_eq!((f.oas, f.oas_bits), (2, 40));
    assert!(f.range_invalidation);
    assert_eq!(f.arch_minor, 2);
    // Memory above 2^40 is out of its reach.
    let r = probe_with(IDR, IIDR, AIDR, &Needs { sid_bits: 2, pa_bits: 44, ..NEEDS });
    assert_eq!(r.err(), Some(Unsupported::OutputTooNarrow { oas_bits: 40, needed: 44 }));
}

/// Bring a driver up on the host model reporting `idr` and put one stream through a
/// mapping. The model takes IDR0..5 only; its output size must be 48 bits, because host
/// addresses stand in for physical ones.
fn drive(mut idr: [u32; 6]) {
    idr[5] = (idr[5] & !0b111) | 5;
    // SAFETY: fresh memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(SmmuModel::with_idr(idr), common::memory(16), common::config()) }.expect("init");
    let buf = common::buffer(0x2000, 0x1000);
    let d = smmu.create_domain().unwrap();
    smmu.map(d, Iova(0x4_0000), buf.pa, 0x2000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(0x10), d).unwrap();
    assert_eq!(smmu.regs().translate(0x10, 0x4_1008, true), Outcome::Ok(buf.pa.0 + 0x1008));
    smmu.unmap(d, Iova(0x4_0000), 0x2000).unwrap();
    smmu.detach(StreamId(0x10)).unwrap();
    assert_eq!(smmu.regs().translate(0x10, 0x4_1008, true), Outcome::Abort);
}

#[test]
fn the_driver_runs_on_the_mmu600_registers() {
    // MSI, ATS and PRI are set here, unlike on QEMU: init clears the MSI address
    // registers and sets SMMU_CR0.ATSCHK on their account.
    drive(agilex5_mmu600::IDR);
}

#[test]
fn the_driver_runs_on_32_bit_streamids() {
    // SIDSIZE = 32 broke Linux 6.12-rc1 (a 32-bit shift); the table here is sized by
    // the platform's StreamIDs, not the SMMU's.
    drive(mmu_700::idr());
}
