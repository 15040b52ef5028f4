//! Stream table entries (IHI 0070 5.2). An STE is eight 64-bit words; field constants
//! are named `STRTAB_STE_<word>_<FIELD>` after the spec and Linux's arm-smmu-v3.h, so the
//! two can be compared line by line.

use crate::addr::{PhysAddr, Vmid};
use crate::coherency::Coherency;
use crate::field::{addr_bits, Field};

/// STE.V: the entry is valid.
pub const STRTAB_STE_0_V: Field = Field::bit(0);
/// STE.Config: what the stream does (abort, bypass, stage 1, stage 2, nested).
pub const STRTAB_STE_0_CFG: Field = Field::new(3, 1);
/// STE.S1Fmt: layout of the context-descriptor table.
pub const STRTAB_STE_0_S1FMT: Field = Field::new(5, 4);
/// STE.S1ContextPtr: physical address of the CD (or CD table), bits [51:6].
pub const STRTAB_STE_0_S1CTXPTR: Field = Field::new(51, 6);
/// STE.S1CDMax: log2 of the number of CDs.
pub const STRTAB_STE_0_S1CDMAX: Field = Field::new(63, 59);
/// STE.S1DSS: what a transaction without a SubstreamID uses.
pub const STRTAB_STE_1_S1DSS: Field = Field::new(1, 0);
/// STE.S1CIR: inner cacheability of CD and table-walk fetches.
pub const STRTAB_STE_1_S1CIR: Field = Field::new(3, 2);
/// STE.S1COR: outer cacheability of CD and table-walk fetches.
pub const STRTAB_STE_1_S1COR: Field = Field::new(5, 4);
/// STE.S1CSH: shareability of CD and table-walk fetches.
pub const STRTAB_STE_1_S1CSH: Field = Field::new(7, 6);
/// STE.S1STALLD: stall disable.
pub const STRTAB_STE_1_S1STALLD: Field = Field::bit(27);
/// STE.EATS: ATS enable.
pub const STRTAB_STE_1_EATS: Field = Field::new(29, 28);
/// STE.STRW: the translation regime (0 = NS-EL1).
pub const STRTAB_STE_1_STRW: Field = Field::new(31, 30);
/// STE.SHCFG: shareability override for bypassed transactions.
pub const STRTAB_STE_1_SHCFG: Field = Field::new(45, 44);

/// STE.S2VMID: the VMID that tags the stream's stage-2 TLB entries.
pub const STRTAB_STE_2_S2VMID: Field = Field::new(15, 0);
/// STE.S2T0SZ (VTCR[5:0]): the stage-2 input range is 2^(64 - S2T0SZ) bytes.
pub const STRTAB_STE_2_VTCR_S2T0SZ: Field = Field::new(37, 32);
/// STE.S2SL0 (VTCR[7:6]): the starting level of the stage-2 walk.
pub const STRTAB_STE_2_VTCR_S2SL0: Field = Field::new(39, 38);
/// STE.S2IR0 (VTCR[9:8]): inner cacheability of stage-2 table walks.
pub const STRTAB_STE_2_VTCR_S2IR0: Field = Field::new(41, 40);
/// STE.S2OR0 (VTCR[11:10]): outer cacheability of stage-2 table walks.
pub const STRTAB_STE_2_VTCR_S2OR0: Field = Field::new(43, 42);
/// STE.S2SH0 (VTCR[13:12]): shareability of stage-2 table walks.
pub const STRTAB_STE_2_VTCR_S2SH0: Field = Field::new(45, 44);
/// STE.S2TG (VTCR[15:14]): the stage-2 granule (0 = 4 KiB).
pub const STRTAB_STE_2_VTCR_S2TG: Field = Field::new(47, 46);
/// STE.S2PS (VTCR[18:16]): the stage-2 output (physical) address size.
pub const STRTAB_STE_2_VTCR_S2PS: Field = Field::new(50, 48);
/// STE.S2AA64: the stage-2 tables are VMSAv8-64 (AArch64) tables.
pub const STRTAB_STE_2_S2AA64: Field = Field::bit(51);
/// STE.S2ENDI: big-endian stage-2 tables.
pub const STRTAB_STE_2_S2ENDI: Field = Field::bit(52);
/// STE.S2AFFD: stage-2 access-flag faults disabled.
pub const STRTAB_STE_2_S2AFFD: Field = Field::bit(53);
/// STE.S2PTW: stage-1 table walks to Device memory fault (matters only when nested).
pub const STRTAB_STE_2_S2PTW: Field = Field::bit(54);
/// STE.S2S: stall stage-2 faults (instead of terminating them).
pub const STRTAB_STE_2_S2S: Field = Field::bit(57);
/// STE.S2R: record stage-2 faults in the event queue.
pub const STRTAB_STE_2_S2R: Field = Field::bit(58);
/// STE.S2TTB: physical address of the stage-2 starting-level table, bits [51:4].
pub const STRTAB_STE_3_S2TTB: Field = Field::new(51, 4);

/// S2TG value for a 4 KiB granule.
pub const STRTAB_STE_2_VTCR_S2TG_4K: u64 = 0b00;

/// STE.Config values (IHI 0070 5.2, "Config").
pub const STRTAB_STE_0_CFG_ABORT: u64 = 0b000;
/// Bypass: stage 1 and stage 2 both bypassed.
pub const STRTAB_STE_0_CFG_BYPASS: u64 = 0b100;
/// Stage 1 translates, stage 2 bypassed.
pub const STRTAB_STE_0_CFG_S1_TRANS: u64 = 0b101;
/// Stage 2 only.
pub const STRTAB_STE_0_CFG_S2_TRANS: u64 = 0b110;
/// S1Fmt: a single CD (S1CDMax = 0) or a linear table of CDs.
pub const STRTAB_STE_0_S1FMT_LINEAR: u64 = 0b00;
/// Cacheability value: write-back, read-allocate.
pub const STRTAB_STE_1_S1C_WBRA: u64 = 0b01;
/// Shareability value: inner shareable.
pub const STRTAB_STE_1_S1CSH_ISH: u64 = 0b11;
/// Cacheability value: Non-cacheable (CD fetches of a non-coherent SMMU go to the PoC).
pub const STRTAB_STE_1_S1C_NC: u64 = 0b00;
/// Shareability value: outer shareable (what Non-cacheable accesses are).
pub const STRTAB_STE_1_S1CSH_OSH: u64 = 0b10;
/// SHCFG value: use the incoming shareability.
pub const STRTAB_STE_1_SHCFG_INCOMING: u64 = 0b01;

/// Number of 64-bit words in an STE.
pub const STE_WORDS: usize = 8;
/// Size of an STE in bytes.
pub const STE_SIZE: usize = STE_WORDS * 8;

/// A stream table entry, as the SMMU reads it from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ste(pub [u64; STE_WORDS]);

/// What an STE makes the SMMU do with a stream's transactions: the part of the entry
/// that decides what the device can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SteConfig {
    /// V == 0: transactions are terminated and C_BAD_STE is recorded.
    Invalid,
    /// Config == abort: transactions are terminated silently.
    Abort,
    /// Config == bypass: transactions go through untranslated.
    Bypass,
    /// Stage 1 translation with a single context descriptor at `cd`.
    Stage1 {
        /// Physical address of the context descriptor.
        cd: PhysAddr,
        /// Word 1, which sets how the SMMU fetches the CD and tables.
        attrs: u64,
    },
    /// Stage-2 translation only (stage 1 bypassed).
    Stage2 {
        /// The VMID its TLB entries carry.
        vmid: Vmid,
        /// Physical address of the starting-level table.
        s2ttb: PhysAddr,
    },
    /// Any other configuration: this driver never writes one.
    Other(u64),
}

impl Ste {
    /// An entry that aborts every transaction without recording an event: the state of
    /// every stream from initialisation until it is attached.
    pub const fn abort() -> Self {
        let mut w = [0; STE_WORDS];
        w[0] = STRTAB_STE_0_V.prep(1) | STRTAB_STE_0_CFG.prep(STRTAB_STE_0_CFG_ABORT);
        Ste(w)
    }

    /// An entry that lets the stream through untranslated. Only for measurement and for
    /// systems that explicitly trust a device; never the default.
    pub const fn bypass() -> Self {
        let mut w = [0; STE_WORDS];
        w[0] = STRTAB_STE_0_V.prep(1) | STRTAB_STE_0_CFG.prep(STRTAB_STE_0_CFG_BYPASS);
        w[1] = STRTAB_STE_1_SHCFG.prep(STRTAB_STE_1_SHCFG_INCOMING);
        Ste(w)
    }

    /// Stage-1 translation through the single context descriptor at `cd` (64-byte
    /// aligned), with CD and table walks write-back cacheable and inner shareable (the
    /// SMMU is coherent, so they snoop the CPU caches) in the NS-EL1 regime.
    pub const fn stage1(cd: PhysAddr) -> Self {
        Self::stage1_for(cd, Coherency::Coherent)
    }

    /// `stage1`, with CD and table-walk fetches as `coherency` calls for: write-back
    /// inner shareable when the SMMU snoops the CPU's caches, Non-cacheable outer
    /// shareable when it does not (it then reads the PoC, where the driver cleaned them).
    pub const fn stage1_for(cd: PhysAddr, coherency: Coherency) -> Self {
        let (c, sh) = match coherency {
            Coherency::Coherent => (STRTAB_STE_1_S1C_WBRA, STRTAB_STE_1_S1CSH_ISH),
            Coherency::NonCoherent => (STRTAB_STE_1_S1C_NC, STRTAB_STE_1_S1CSH_OSH),
        };
        let mut w = [0; STE_WORDS];
        w[0] = STRTAB_STE_0_V.prep(1)
            | STRTAB_STE_0_CFG.prep(STRTAB_STE_0_CFG_S1_TRANS)
            | STRTAB_STE_0_S1FMT.prep(STRTAB_STE_0_S1FMT_LINEAR)
            | addr_bits(STRTAB_STE_0_S1CTXPTR, cd.0)
            | STRTAB_STE_0_S1CDMAX.prep(0);
        w[1] = STRTAB_STE_1_S1DSS.prep(0)
            | STRTAB_STE_1_S1CIR.prep(c)
            | STRTAB_STE_1_S1COR.prep(c)
            | STRTAB_STE_1_S1CSH.prep(sh)
            | STRTAB_STE_1_STRW.prep(0);
        Ste(w)
    }

    /// Stage-2 translation, stage 1 bypassed, for the address space `ctx` describes:
    /// AArch64 tables with a 4 KiB granule, little-endian, faults recorded (S2R) and
    /// terminated, never stalled (S2S = 0), access-flag faults left enabled (the driver
    /// sets AF in every leaf), walks as `coherency` calls for (as `stage1_for`). Word 1
    /// asks for the incoming shareability (SHCFG), as `bypass` does: stage 1 is bypassed.
    /// S2PTW is left 0: it only concerns stage-1 walks, which a stage-2-only stream has
    /// none of (Linux sets it for the nested case).
    pub const fn stage2(ctx: &Stage2Context, coherency: Coherency) -> Self {
        let (c, sh) = match coherency {
            Coherency::Coherent => (STRTAB_STE_1_S1C_WBRA, STRTAB_STE_1_S1CSH_ISH),
            Coherency::NonCoherent => (STRTAB_STE_1_S1C_NC, STRTAB_STE_1_S1CSH_OSH),
        };
        let mut w = [0; STE_WORDS];
        w[0] = STRTAB_STE_0_V.prep(1) | STRTAB_STE_0_CFG.prep(STRTAB_STE_0_CFG_S2_TRANS);
        w[1] = STRTAB_STE_1_SHCFG.prep(STRTAB_STE_1_SHCFG_INCOMING);
        w[2] = STRTAB_STE_2_S2VMID.prep(ctx.vmid.0 as u64)
            | STRTAB_STE_2_VTCR_S2T0SZ.prep(64 - ctx.ias_bits as u64)
            | STRTAB_STE_2_VTCR_S2SL0.prep(s2sl0_4k(ctx.start_level))
            | STRTAB_STE_2_VTCR_S2IR0.prep(c)
            | STRTAB_STE_2_VTCR_S2OR0.prep(c)
            | STRTAB_STE_2_VTCR_S2SH0.prep(sh)
            | STRTAB_STE_2_VTCR_S2TG.prep(STRTAB_STE_2_VTCR_S2TG_4K)
            | STRTAB_STE_2_VTCR_S2PS.prep(ctx.ps)
            | STRTAB_STE_2_S2AA64.prep(1)
            | STRTAB_STE_2_S2R.prep(1);
        w[3] = addr_bits(STRTAB_STE_3_S2TTB, ctx.s2ttb.0);
        Ste(w)
    }

    /// What the SMMU would do with this entry.
    pub const fn config(&self) -> SteConfig {
        let w0 = self.0[0];
        if STRTAB_STE_0_V.get(w0) == 0 {
            return SteConfig::Invalid;
        }
        match STRTAB_STE_0_CFG.get(w0) {
            STRTAB_STE_0_CFG_ABORT => SteConfig::Abort,
            STRTAB_STE_0_CFG_BYPASS => SteConfig::Bypass,
            STRTAB_STE_0_CFG_S1_TRANS
                if STRTAB_STE_0_S1FMT.get(w0) == STRTAB_STE_0_S1FMT_LINEAR && STRTAB_STE_0_S1CDMAX.get(w0) == 0 =>
            {
                SteConfig::Stage1 { cd: PhysAddr(w0 & STRTAB_STE_0_S1CTXPTR.mask()), attrs: self.0[1] }
            }
            STRTAB_STE_0_CFG_S2_TRANS => SteConfig::Stage2 {
                vmid: Vmid(STRTAB_STE_2_S2VMID.get(self.0[2]) as u16),
                s2ttb: PhysAddr(self.0[3] & STRTAB_STE_3_S2TTB.mask()),
            },
            other => SteConfig::Other(other),
        }
    }

    /// Which words the SMMU reads for this entry (bit n = word n). Words it ignores can be
    /// rewritten while the entry is live without changing what the device can reach.
    pub const fn used_words(&self) -> u8 {
        match self.config() {
            SteConfig::Invalid => 0b0000_0001,
            SteConfig::Abort => 0b0000_0001,
            SteConfig::Bypass => 0b0000_0011,
            // Word 2 as well: on an SMMU with stage 2, S2VMID tags the stream's stage-1
            // TLB entries (IHI 0070 STE.S2VMID; Linux's `arm_smmu_get_ste_used`).
            SteConfig::Stage1 { .. } => 0b0000_0111,
            // Word 1 (SHCFG), word 2 (VMID, VTCR, S2AA64, S2R) and word 3 (S2TTB).
            SteConfig::Stage2 { .. } => 0b0000_1111,
            SteConfig::Other(_) => 0xff,
        }
    }
}

/// The parameters of one stage-2 address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage2Context {
    /// Tags the address space's TLB entries; invalidations name it.
    pub vmid: Vmid,
    /// Physical address of the starting-level table (4 KiB aligned).
    pub s2ttb: PhysAddr,
    /// Size of the input (IPA) range in bits.
    pub ias_bits: u32,
    /// The level the walk starts at: 0, 1 or 2 (4 KiB granule, no concatenated tables).
    pub start_level: u8,
    /// STE.S2PS: the output address size, encoded as SMMU_IDR5.OAS is.
    pub ps: u64,
}

/// STE.S2SL0 for a 4 KiB granule (IHI 0070 5.2, as VTCR_EL2.SL0 in the Arm ARM): 0b00
/// starts at level 2, 0b01 at level 1, 0b10 at level 0. (Linux's io-pgtable-arm writes
/// `~(level + 1) & 3` for the same.)
/// Levels other than 0 and 1 encode as level 2 (the driver starts no walk deeper).
pub const fn s2sl0_4k(start_level: u8) -> u64 {
    match start_level {
        0 => 0b10,
        1 => 0b01,
        _ => 0b00,
    }
}

/// A level-1 stream-table descriptor (IHI 0070 5.1): points at a level-2 table of
/// `2^(span-1)` STEs; Span == 0 makes the descriptor invalid.
pub const STRTAB_L1_DESC_SPAN: Field = Field::new(4, 0);
/// L2Ptr: physical address of the level-2 table, bits [51:6].
pub const STRTAB_L1_DESC_L2PTR: Field = Field::new(51, 6);

/// Encode a level-1 descriptor for a level-2 table of `2^split` STEs at `l2`.
pub const fn l1_desc(l2: PhysAddr, split: u32) -> u64 {
    STRTAB_L1_DESC_SPAN.prep(split as u64 + 1) | addr_bits(STRTAB_L1_DESC_L2PTR, l2.0)
}
