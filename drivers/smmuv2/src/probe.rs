//! What the SMMU can do, from its ID registers (Arm IHI 0062D 10.6.2-10.6.9), and a
//! typed refusal of what this driver cannot drive. The same questions Linux's
//! `arm_smmu_device_cfg_probe` and seL4's `smmu_config_prob` ask.

use core::fmt;

use crate::mmio::{reg, Layout, Mmio};

/// The ID registers the probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdRegs {
    /// SMMU_IDR0.
    pub idr0: u32,
    /// SMMU_IDR1.
    pub idr1: u32,
    /// SMMU_IDR2.
    pub idr2: u32,
    /// SMMU_IDR7.
    pub idr7: u32,
}

impl IdRegs {
    /// Read them.
    pub fn read(regs: &impl Mmio) -> IdRegs {
        IdRegs {
            idr0: regs.read32(reg::IDR0),
            idr1: regs.read32(reg::IDR1),
            idr2: regs.read32(reg::IDR2),
            idr7: regs.read32(reg::IDR7),
        }
    }
}

const fn bits(word: u32, lo: u32, width: u32) -> u32 {
    (word >> lo) & ((1 << width) - 1)
}

/// Address sizes encoded as IDR2.IAS and IDR2.OAS (and TCR2.PASIZE): IHI 0062D 10.6.4.
/// Reserved encodings are `None`.
pub const fn address_size_bits(code: u32) -> Option<u32> {
    match code {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        _ => None,
    }
}

/// Upstream bus sizes encoded as IDR2.UBS: IHI 0062D 10.6.4 (5 is 49 bits, 0xf 64).
pub const fn upstream_size_bits(code: u32) -> Option<u32> {
    match code {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(49),
        0xf => Some(64),
        _ => None,
    }
}

/// What the driver found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Where the registers are.
    pub layout: Layout,
    /// Stream mapping register groups (IDR0.NUMSMRG): how many StreamID patterns can
    /// be attached at once.
    pub num_smrg: usize,
    /// StreamID width (IDR0.NUMSIDB).
    pub sid_bits: u32,
    /// Context banks (IDR1.NUMCB).
    pub num_cb: usize,
    /// Of those, banks 0..NUMS2CB support stage 2 only (IDR1.NUMS2CB): stage-1 domains
    /// live in NUMS2CB..NUMCB.
    pub num_s2cb: usize,
    /// Upstream (input) address size in bits (IDR2.UBS): the widest IOVA stage 1 takes.
    pub ubs_bits: u32,
    /// Output address size in bits (IDR2.OAS).
    pub oas_bits: u32,
    /// Address translation operations are implemented (IDR0.ATOSNS = 0). Not used.
    pub atos: bool,
    /// Broadcast TLB maintenance (IDR0.BTM). Not used: sCR0.PTM keeps the TLBs private.
    pub btm: bool,
    /// 16-bit VMIDs (IDR2.VMID16S). Not used: stage 2 is bypassed.
    pub vmid16: bool,
    /// IDR7.MAJOR and MINOR: the implementation's revision (MMU-500: rMAJORpMINOR).
    pub revision: (u8, u8),
    /// IDR0.CTTW: the SMMU can make its table walks coherent with the CPUs' caches. The
    /// platform must say so too (`Config::platform_coherent`; Linux likewise goes by the
    /// device tree's `dma-coherent` over this bit).
    pub coherent_walk: bool,
}

impl Features {
    /// Context banks that can hold a stage-1 domain.
    pub fn stage1_banks(&self) -> usize {
        self.num_cb - self.num_s2cb
    }

    /// Stage-1 banks left for domains: every stage-1 bank but the sink
    /// (`Smmu::sink_bank`), which `init` reserves for blocked streams.
    pub fn domain_banks(&self) -> usize {
        self.stage1_banks().saturating_sub(1)
    }
}

/// Why the driver refuses an SMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// IDR0.S1TS = 0: no stage-1 translation, and every domain is stage 1.
    NoStage1,
    /// IDR0.SMS = 0: stream indexing (S2CRn indexed by StreamID, no SMRs). MMU-500 always
    /// implements stream matching; an SMMUv1-style indexing SMMU is not driven.
    StreamIndexing,
    /// IDR0.NUMSMRG = 0 with stream matching: nothing to attach a stream with (Linux
    /// refuses the same: "stream-matching supported, but no SMRs present!").
    NoStreamMatchGroups,
    /// IDR2.PTFSV8_4KB = 0: no AArch64 tables with a 4 KiB granule, the only format the
    /// page-table code builds.
    NoAArch64Granule4K,
    /// Table walks are not coherent with the CPU's caches (IDR0.CTTW = 0, or the platform
    /// says so: `Config::platform_coherent`), and no cache maintenance was given
    /// (`Config::cache`) to clean every table write to the point of coherency.
    NonCoherentWalk,
    /// IDR1: NUMS2CB > NUMCB, which the architecture does not allow (Linux: "impossible
    /// number of S2 context banks").
    ImpossibleBankCounts {
        /// IDR1.NUMCB.
        num_cb: usize,
        /// IDR1.NUMS2CB.
        num_s2cb: usize,
    },
    /// Every context bank is stage-2 only (NUMS2CB = NUMCB).
    NoStage1Banks,
    /// A reserved IDR2.OAS or IDR2.UBS encoding.
    ReservedAddressSize {
        /// The raw IDR2.
        idr2: u32,
    },
    /// The IOVA space asked for is wider than the upstream bus (IDR2.UBS).
    InputTooWide {
        /// Bits asked for (`Config::ias_bits`).
        ias_bits: u32,
        /// Bits the bus carries.
        ubs_bits: u32,
    },
    /// The output address size is smaller than the memory the driver was given needs.
    OutputTooNarrow {
        /// IDR2.OAS in bits.
        oas_bits: u32,
        /// Bits the table pool's addresses need.
        needed: u32,
    },
    /// The register mapping is smaller than the 2 x NUMPAGE pages IDR1 describes.
    RegisterSpanTooSmall {
        /// Bytes IDR1 describes.
        needed: usize,
        /// Bytes mapped.
        given: usize,
    },
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::NoStage1 => write!(f, "no stage-1 translation (IDR0.S1TS = 0)"),
            Unsupported::StreamIndexing => write!(f, "stream indexing (IDR0.SMS = 0) is not supported"),
            Unsupported::NoStreamMatchGroups => write!(f, "stream matching with no SMRs (IDR0.NUMSMRG = 0)"),
            Unsupported::NoAArch64Granule4K => write!(f, "no AArch64 4 KiB granule (IDR2.PTFSV8_4KB = 0)"),
            Unsupported::NonCoherentWalk => {
                write!(f, "table walks are not coherent (IDR0.CTTW = 0, or the platform's) and no cache maintenance was given")
            }
            Unsupported::ImpossibleBankCounts { num_cb, num_s2cb } => {
                write!(f, "IDR1.NUMS2CB = {num_s2cb} exceeds NUMCB = {num_cb}")
            }
            Unsupported::NoStage1Banks => write!(f, "every context bank is stage-2 only"),
            Unsupported::ReservedAddressSize { idr2 } => write!(f, "reserved address size in IDR2 = {idr2:#x}"),
            Unsupported::InputTooWide { ias_bits, ubs_bits } => {
                write!(f, "{ias_bits}-bit IOVAs asked for, the upstream bus has {ubs_bits}")
            }
            Unsupported::OutputTooNarrow { oas_bits, needed } => {
                write!(f, "output size {oas_bits} bits, {needed} needed")
            }
            Unsupported::RegisterSpanTooSmall { needed, given } => {
                write!(f, "registers span {needed:#x} bytes, {given:#x} mapped")
            }
        }
    }
}

/// What the caller needs of the SMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// IOVA bits of every domain.
    pub ias_bits: u32,
    /// Output bits the table pool's physical addresses need.
    pub oas_bits: u32,
    /// Bytes of register file mapped, if known (`None`: not checked).
    pub register_span: Option<usize>,
}

/// Decide whether the driver can drive this SMMU.
pub fn probe(id: IdRegs, needs: Needs) -> Result<Features, Unsupported> {
    let IdRegs { idr0, idr1, idr2, idr7 } = id;
    if bits(idr0, 30, 1) == 0 {
        return Err(Unsupported::NoStage1);
    }
    if bits(idr0, 27, 1) == 0 {
        return Err(Unsupported::StreamIndexing);
    }
    let num_smrg = bits(idr0, 0, 8) as usize;
    if num_smrg == 0 {
        return Err(Unsupported::NoStreamMatchGroups);
    }
    if bits(idr2, 12, 1) == 0 {
        return Err(Unsupported::NoAArch64Granule4K);
    }
    let num_cb = bits(idr1, 0, 8) as usize;
    let num_s2cb = bits(idr1, 16, 8) as usize;
    if num_s2cb > num_cb {
        return Err(Unsupported::ImpossibleBankCounts { num_cb, num_s2cb });
    }
    if num_s2cb == num_cb {
        return Err(Unsupported::NoStage1Banks);
    }
    let reserved = Unsupported::ReservedAddressSize { idr2 };
    let oas_bits = address_size_bits(bits(idr2, 4, 4)).ok_or(reserved)?;
    let ubs_bits = upstream_size_bits(bits(idr2, 8, 4)).ok_or(reserved)?;
    if needs.ias_bits > ubs_bits {
        return Err(Unsupported::InputTooWide { ias_bits: needs.ias_bits, ubs_bits });
    }
    if needs.oas_bits > oas_bits {
        return Err(Unsupported::OutputTooNarrow { oas_bits, needed: needs.oas_bits });
    }
    let layout = Layout::from_idr1(idr1);
    // The context banks must fit in the 2 x NUMPAGE pages, and those in the mapping.
    let needed = layout.span();
    if num_cb > layout.numpage {
        return Err(Unsupported::RegisterSpanTooSmall { needed: layout.cb(num_cb, 0), given: needed });
    }
    if let Some(given) = needs.register_span {
        if given < needed {
            return Err(Unsupported::RegisterSpanTooSmall { needed, given });
        }
    }
    Ok(Features {
        layout,
        // The SMR and S2CR arrays hold 128 (IHI 0062D 10.5): NUMSMRG is 8 bits, so a
        // value above 128 would be a broken ID register; take no more than there is room
        // for.
        num_smrg: num_smrg.min(crate::gr0::MAX_SMRG),
        sid_bits: bits(idr0, 9, 4),
        num_cb: num_cb.min(crate::gr1::MAX_CB),
        num_s2cb,
        ubs_bits,
        oas_bits,
        atos: bits(idr0, 26, 1) == 0,
        btm: bits(idr0, 13, 1) == 1,
        vmid16: bits(idr2, 15, 1) == 1,
        revision: (bits(idr7, 4, 4) as u8, bits(idr7, 0, 4) as u8),
        coherent_walk: bits(idr0, 14, 1) == 1,
    })
}
