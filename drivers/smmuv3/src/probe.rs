//! Reading the ID registers (IHI 0070 6.3.1-6.3.8) and deciding whether this driver can
//! drive the SMMU. A pure function of the register values, so it is tested on the host
//! with the values real implementations report.

use core::fmt;

use tock_registers::LocalRegisterCopy;

use crate::cd::oas_bits;
use crate::device::{AIDR, IDR0, IDR1, IDR3, IDR5, IIDR};

/// The raw identification registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdRegs {
    /// SMMU_IDR0..SMMU_IDR5.
    pub idr: [u32; 6],
    /// SMMU_IIDR.
    pub iidr: u32,
    /// SMMU_AIDR.
    pub aidr: u32,
}

/// What the SMMU can do, as this driver uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// StreamID width in bits.
    pub sid_bits: u32,
    /// SubstreamID width in bits.
    pub ssid_bits: u32,
    /// ASID width in bits (8 or 16).
    pub asid_bits: u32,
    /// log2 of the largest command queue (SMMU_IDR1.CMDQS): 0 is a queue of one entry.
    pub cmdq_log2: u32,
    /// log2 of the largest event queue (SMMU_IDR1.EVENTQS): 0 is a queue of one entry.
    pub eventq_log2: u32,
    /// SMMU_IDR5.OAS encoding.
    pub oas: u32,
    /// Output address size in bits.
    pub oas_bits: u32,
    /// Two-level stream tables supported.
    pub two_level_strtab: bool,
    /// EL2 translation regime present (CMD_TLBI_EL2_ALL needed at reset).
    pub hyp: bool,
    /// SMMU_IDR0.S2P: stage-2 translation supported (`Smmu::create_stage2_domain`).
    pub stage2: bool,
    /// VMID width in bits: 16 with SMMU_IDR0.VMID16, else 8.
    pub vmid_bits: u32,
    /// Message-signalled interrupts supported (this driver uses wired ones).
    pub msi: bool,
    /// SMMU_IDR0.COHACC: table, structure and queue accesses can be coherent with the
    /// CPUs' caches (whether they are is the platform's to say too: `Coherency::of`).
    pub coherent_access: bool,
    /// Range invalidation (SMMUv3.2).
    pub range_invalidation: bool,
    /// SMMU_AIDR minor revision: 3.x.
    pub arch_minor: u32,
    /// SMMU_IIDR: implementer, revision, variant, product.
    pub iidr: u32,
}

impl Features {
    /// SMMU_IIDR.ProductID (IHI 0070 6.3.7): 0x483 for Arm's MMU-600, 0x487 for MMU-700
    /// (the values Linux's arm-smmu-v3.c matches its errata workarounds on).
    pub fn product_id(&self) -> u32 {
        LocalRegisterCopy::<u32, IIDR::Register>::new(self.iidr).read(IIDR::ProductID)
    }

    /// SMMU_IIDR.Implementer: the JEP106 code of the implementer, 0x43B for Arm.
    pub fn implementer(&self) -> u32 {
        LocalRegisterCopy::<u32, IIDR::Register>::new(self.iidr).read(IIDR::Implementer)
    }

    /// SMMU_IIDR.Variant: the major revision (the X of rXpY for Arm's products).
    pub fn variant(&self) -> u32 {
        LocalRegisterCopy::<u32, IIDR::Register>::new(self.iidr).read(IIDR::Variant)
    }

    /// SMMU_IIDR.Revision: the minor revision (the Y of rXpY for Arm's products).
    pub fn revision(&self) -> u32 {
        LocalRegisterCopy::<u32, IIDR::Register>::new(self.iidr).read(IIDR::Revision)
    }
}

/// Why the driver refuses an SMMU. Each variant says what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// SMMU_AIDR does not report an SMMUv3.x.
    NotSmmuV3 {
        /// SMMU_AIDR as read.
        aidr: u32,
    },
    /// No stage-1 translation (SMMU_IDR0.S1P == 0).
    NoStage1,
    /// No AArch64 translation tables (SMMU_IDR0.TTF lacks AArch64).
    NoAArch64Tables,
    /// No 4 KiB translation granule (SMMU_IDR5.GRAN4K == 0).
    No4KGranule,
    /// Tables only big-endian (SMMU_IDR0.TTENDIAN == big).
    BigEndianOnly,
    /// SMMU_IDR0.TTENDIAN == 0b01, a reserved value: which endianness the SMMU walks
    /// tables in is unknown.
    ReservedEndianness,
    /// Table walks do not snoop CPU caches (SMMU_IDR0.COHACC == 0, or the platform says
    /// they are not coherent), and the system gave the driver no cache maintenance
    /// (`Config::cache`): it would hand the SMMU stale tables.
    NotCoherent,
    /// Stalls are forced (SMMU_IDR0.STALL_MODEL == 0b10): a CD with S == 0 is ILLEGAL
    /// (IHI 0070 5.5), so every stream attached through this driver's CDs, which never
    /// stall, would be terminated with C_BAD_CD. This driver does not handle stalls
    /// (CMD_RESUME / CMD_STALL_TERM).
    StallForced,
    /// SMMU_IDR1 says some base registers are fixed by the implementation: the stream
    /// table (TABLES_PRESET), the queues (QUEUES_PRESET), or that preset bases are
    /// offsets from the register page (REL). The SMMU would ignore the tables and queues
    /// this driver places in the memory it is given.
    PresetBases {
        /// SMMU_IDR1.TABLES_PRESET: SMMU_STRTAB_BASE and SMMU_STRTAB_BASE_CFG are fixed.
        tables: bool,
        /// SMMU_IDR1.QUEUES_PRESET: SMMU_CMDQ_BASE and SMMU_EVENTQ_BASE are fixed.
        queues: bool,
        /// SMMU_IDR1.REL: preset base addresses are relative to the register page.
        relative: bool,
    },
    /// The StreamIDs the platform uses do not fit SMMU_IDR1.SIDSIZE.
    StreamIdsTooWide {
        /// StreamID bits the SMMU has.
        sid_bits: u32,
        /// StreamID bits the platform needs.
        needed: u32,
    },
    /// Fewer ASIDs than translation contexts the driver must hold.
    TooFewAsids {
        /// ASID bits the SMMU has.
        asid_bits: u32,
        /// Contexts needed.
        needed: usize,
    },
    /// The SMMU's output address size cannot reach the memory it must read or map.
    OutputTooNarrow {
        /// Output address bits the SMMU has.
        oas_bits: u32,
        /// Bits needed.
        needed: u32,
    },
    /// The IOVA size asked for is outside 25..=48 bits or beyond SMMU_IDR5.VAX.
    IovaSize {
        /// Bits asked for.
        bits: u32,
    },
    /// A stage-2 domain was asked for and the SMMU has no stage 2 (SMMU_IDR0.S2P = 0).
    NoStage2,
    /// A stage-2 domain cannot take this input size: stage-2 input (IPA) is at most the
    /// output size (IAS = OAS for AArch64 tables, IHI 0070 3.4), and a walk starting at
    /// level 0 with a 4 KiB granule needs at least 44 output bits (Arm ARM, VTCR_EL2.SL0;
    /// the driver concatenates no tables to start lower).
    Stage2InputSize {
        /// IPA bits asked for.
        bits: u32,
        /// Output address bits the SMMU has.
        oas_bits: u32,
    },
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Unsupported::NotSmmuV3 { aidr } => write!(f, "SMMU_AIDR {aidr:#x} is not an SMMUv3"),
            Unsupported::NoStage1 => write!(f, "no stage-1 translation (SMMU_IDR0.S1P = 0)"),
            Unsupported::NoAArch64Tables => write!(f, "no AArch64 translation tables (SMMU_IDR0.TTF)"),
            Unsupported::No4KGranule => write!(f, "no 4 KiB granule (SMMU_IDR5.GRAN4K = 0)"),
            Unsupported::BigEndianOnly => write!(f, "translation tables big-endian only (SMMU_IDR0.TTENDIAN)"),
            Unsupported::ReservedEndianness => {
                write!(f, "SMMU_IDR0.TTENDIAN is 0b01, a reserved value: table endianness unknown")
            }
            Unsupported::NotCoherent => write!(
                f,
                "table walks are not coherent (SMMU_IDR0.COHACC = 0 or the platform says so) and no cache maintenance was given"
            ),
            Unsupported::StallForced => write!(
                f,
                "stalls are forced (SMMU_IDR0.STALL_MODEL = 0b10) and this driver does not handle stalled transactions"
            ),
            Unsupported::PresetBases { tables, queues, relative } => {
                write!(f, "SMMU_IDR1 reports")?;
                let mut sep = " ";
                for (set, what) in [
                    (tables, "a fixed stream table (TABLES_PRESET)"),
                    (queues, "fixed queues (QUEUES_PRESET)"),
                    (relative, "relative base addresses (REL)"),
                ] {
                    if set {
                        write!(f, "{sep}{what}")?;
                        sep = ", ";
                    }
                }
                write!(f, "; this driver must place its own stream table and queues")
            }
            Unsupported::StreamIdsTooWide { sid_bits, needed } => {
                write!(f, "StreamIDs need {needed} bits, the SMMU has {sid_bits} (SMMU_IDR1.SIDSIZE)")
            }
            Unsupported::TooFewAsids { asid_bits, needed } => {
                write!(f, "{needed} contexts need more ASIDs than {asid_bits} bits give")
            }
            Unsupported::OutputTooNarrow { oas_bits, needed } => {
                write!(f, "memory needs {needed}-bit output addresses, the SMMU has {oas_bits} (SMMU_IDR5.OAS)")
            }
            Unsupported::IovaSize { bits } => write!(f, "an IOVA size of {bits} bits is not supported"),
            Unsupported::NoStage2 => write!(f, "no stage-2 translation (SMMU_IDR0.S2P = 0)"),
            Unsupported::Stage2InputSize { bits, oas_bits } => write!(
                f,
                "a stage-2 input size of {bits} bits is not supported with {oas_bits}-bit output (IAS = OAS; level-0 start needs 44)"
            ),
        }
    }
}

/// The level a stage-2 walk of `ias_bits` input bits starts at with a 4 KiB granule and
/// one table there (none concatenated): 2 up to 30 bits, 1 up to 39, 0 above. Refused
/// when the input is wider than the output (IAS = OAS for AArch64 tables, IHI 0070 3.4)
/// or needs a level-0 start with fewer than 44 output bits (Arm ARM, VTCR_EL2.SL0 = 0b10
/// is invalid when PAMax < 44).
pub const fn stage2_start_level(ias_bits: u32, oas_bits: u32) -> Result<u8, Unsupported> {
    let refused = Err(Unsupported::Stage2InputSize { bits: ias_bits, oas_bits });
    if ias_bits < 25 || ias_bits > 48 || ias_bits > oas_bits {
        return refused;
    }
    match ias_bits {
        ..=30 => Ok(2),
        31..=39 => Ok(1),
        _ if oas_bits >= 44 => Ok(0),
        _ => refused,
    }
}

/// What the platform needs from the SMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Bits of the widest StreamID devices will use.
    pub sid_bits: u32,
    /// Translation contexts (ASIDs) the driver will hold.
    pub contexts: usize,
    /// Bits of the highest physical address of memory the SMMU reads or maps.
    pub pa_bits: u32,
    /// IOVA size.
    pub ias_bits: u32,
    /// The system can clean and invalidate the SMMU's memory (a `CacheOps`): a
    /// non-coherent SMMU (COHACC = 0) is driven with cache maintenance, not refused.
    pub cache_maintenance: bool,
}

/// Decide whether the SMMU described by `id` can be driven for `needs`.
pub fn probe(id: &IdRegs, needs: &Needs) -> Result<Features, Unsupported> {
    let idr0 = LocalRegisterCopy::<u32, IDR0::Register>::new(id.idr[0]);
    let idr1 = LocalRegisterCopy::<u32, IDR1::Register>::new(id.idr[1]);
    let idr3 = LocalRegisterCopy::<u32, IDR3::Register>::new(id.idr[3]);
    let idr5 = LocalRegisterCopy::<u32, IDR5::Register>::new(id.idr[5]);
    let aidr = LocalRegisterCopy::<u32, AIDR::Register>::new(id.aidr);

    // SMMUv3.x reports ArchMajorRev == 0 (6.3.8).
    if aidr.read(AIDR::ArchMajorRev) != 0 {
        return Err(Unsupported::NotSmmuV3 { aidr: id.aidr });
    }
    if idr0.read(IDR0::S1P) == 0 {
        return Err(Unsupported::NoStage1);
    }
    if idr0.read(IDR0::TTF) & 0b10 == 0 {
        return Err(Unsupported::NoAArch64Tables);
    }
    if idr5.read(IDR5::GRAN4K) == 0 {
        return Err(Unsupported::No4KGranule);
    }
    // SMMU_IDR0.TTENDIAN, bits [22:21] (6.3.1): 0b00 mixed, 0b10 little-endian only,
    // 0b11 big-endian only; 0b01 is reserved, and Linux refuses it as this does (an SMMU
    // that does not say how it reads tables may read this driver's the wrong way round).
    match idr0.read(IDR0::TTENDIAN) {
        0b11 => return Err(Unsupported::BigEndianOnly),
        0b01 => return Err(Unsupported::ReservedEndianness),
        _ => {}
    }
    // SMMU_IDR0.COHACC, bit 4 (6.3.1): 0 means the SMMU's accesses to tables and queues
    // are not coherent with the PEs' caches. Driven only with cache maintenance.
    if idr0.read(IDR0::COHACC) == 0 && !needs.cache_maintenance {
        return Err(Unsupported::NotCoherent);
    }
    // SMMU_IDR0.STALL_MODEL, bits [25:24] (6.3.1; Linux: IDR0_STALL_MODEL, GENMASK(25, 24)).
    // 0b00 (stall and terminate) and 0b01 (terminate only) both take this driver's CDs,
    // which have S == 0, and its STEs, which have S1STALLD == 0. 0b10 forces stalls: a
    // CD with S == 0 is then ILLEGAL (5.5), so every attach would end in C_BAD_CD.
    if idr0.matches_all(IDR0::STALL_MODEL::StallForced) {
        return Err(Unsupported::StallForced);
    }
    // SMMU_IDR1.TABLES_PRESET, QUEUES_PRESET and REL, bits 30, 29 and 28 (6.3.2; Linux:
    // IDR1_TABLES_PRESET, IDR1_QUEUES_PRESET, IDR1_REL). A preset base register is
    // read-only (6.3.24, 6.3.26, 6.3.29): the SMMU would walk its own tables and queues,
    // not the ones this driver writes. REL is RES0 unless a preset bit is set; Linux
    // refuses all three ("embedded implementation not supported") and so does this.
    let (tables, queues, relative) =
        (idr1.is_set(IDR1::TABLES_PRESET), idr1.is_set(IDR1::QUEUES_PRESET), idr1.is_set(IDR1::REL));
    if tables || queues || relative {
        return Err(Unsupported::PresetBases { tables, queues, relative });
    }
    let sid_bits = idr1.read(IDR1::SIDSIZE);
    if needs.sid_bits > sid_bits {
        return Err(Unsupported::StreamIdsTooWide { sid_bits, needed: needs.sid_bits });
    }
    let asid_bits = if idr0.read(IDR0::ASID16) == 1 { 16 } else { 8 };
    // ASID 0 is never handed out, so that a zeroed CD can never alias a live context.
    if needs.contexts >= (1usize << asid_bits) {
        return Err(Unsupported::TooFewAsids { asid_bits, needed: needs.contexts });
    }
    let oas = idr5.read(IDR5::OAS).min(6);
    let oas_bits = oas_bits(oas);
    if needs.pa_bits > oas_bits.min(48) {
        return Err(Unsupported::OutputTooNarrow { oas_bits, needed: needs.pa_bits });
    }
    if !(25..=48).contains(&needs.ias_bits) {
        return Err(Unsupported::IovaSize { bits: needs.ias_bits });
    }
    // SMMU_IDR1.CMDQS and EVENTQS, bits [25:21] and [20:16], are log2 of the largest
    // queue (6.3.2): 0 is a queue of one entry, which the architecture allows (6.3.26:
    // LOG2SIZE 0, based at a 32-byte boundary, which `init` checks), not "no queue".
    // This driver works with one entry of either. A command and the CMD_SYNC behind it
    // never have to be in the queue together: pushing into a full queue rings the
    // doorbell and waits (bounded) for the SMMU to consume, so the sync is written once
    // the command before it has been read, and a CMD_SYNC completes only after every
    // command consumed before it has completed (4.7.3). One event queue entry holds one
    // record between drains; the records the SMMU cannot write are counted as an
    // overflow (EVENTQ_PROD.OVFLG, 7.4), which `drain_events` reports.
    let (cmdq_log2, eventq_log2) = (idr1.read(IDR1::CMDQS), idr1.read(IDR1::EVENTQS));
    Ok(Features {
        sid_bits,
        ssid_bits: idr1.read(IDR1::SSIDSIZE),
        asid_bits,
        cmdq_log2,
        eventq_log2,
        oas,
        oas_bits,
        two_level_strtab: idr0.read(IDR0::ST_LEVEL) == 1,
        hyp: idr0.read(IDR0::HYP) == 1,
        stage2: idr0.read(IDR0::S2P) == 1,
        vmid_bits: if idr0.read(IDR0::VMID16) == 1 { 16 } else { 8 },
        msi: idr0.read(IDR0::MSI) == 1,
        coherent_access: idr0.read(IDR0::COHACC) == 1,
        range_invalidation: idr3.read(IDR3::RIL) == 1,
        arch_minor: aidr.read(AIDR::ArchMinorRev),
        iidr: id.iidr,
    })
}
