//! Context descriptors (IHI 0070 5.4): the stage-1 translation context of a stream:
//! ASID, translation table base, TCR-like walk parameters and MAIR.

use crate::addr::{Asid, PhysAddr};
use crate::coherency::Coherency;
use crate::field::{addr_bits, Field};

/// CD.T0SZ: the input range covered by TTB0 is 2^(64 - T0SZ) bytes.
pub const CTXDESC_CD_0_TCR_T0SZ: Field = Field::new(5, 0);
/// CD.TG0: granule for TTB0 (0 = 4 KiB).
pub const CTXDESC_CD_0_TCR_TG0: Field = Field::new(7, 6);
/// CD.IR0: inner cacheability of TTB0 walks.
pub const CTXDESC_CD_0_TCR_IRGN0: Field = Field::new(9, 8);
/// CD.OR0: outer cacheability of TTB0 walks.
pub const CTXDESC_CD_0_TCR_ORGN0: Field = Field::new(11, 10);
/// CD.SH0: shareability of TTB0 walks.
pub const CTXDESC_CD_0_TCR_SH0: Field = Field::new(13, 12);
/// CD.EPD0: disable walks through TTB0.
pub const CTXDESC_CD_0_TCR_EPD0: Field = Field::bit(14);
/// CD.ENDI: big-endian tables.
pub const CTXDESC_CD_0_ENDI: Field = Field::bit(15);
/// CD.EPD1: disable walks through TTB1 (the upper half of the input range).
pub const CTXDESC_CD_0_TCR_EPD1: Field = Field::bit(30);
/// CD.V: the descriptor is valid.
pub const CTXDESC_CD_0_V: Field = Field::bit(31);
/// CD.IPS: intermediate (here: output) physical address size.
pub const CTXDESC_CD_0_TCR_IPS: Field = Field::new(34, 32);
/// CD.AFFD: access-flag faults disabled.
pub const CTXDESC_CD_0_AFFD: Field = Field::bit(35);
/// CD.TBI0: top-byte ignore for TTB0.
pub const CTXDESC_CD_0_TCR_TBI0: Field = Field::bit(38);
/// CD.AA64: the tables are VMSAv8-64 (AArch64) tables.
pub const CTXDESC_CD_0_AA64: Field = Field::bit(41);
/// CD.HD: hardware dirty-bit update.
pub const CTXDESC_CD_0_HD: Field = Field::bit(42);
/// CD.HA: hardware access-flag update.
pub const CTXDESC_CD_0_HA: Field = Field::bit(43);
/// CD.S: stall faulting transactions (instead of terminating them).
pub const CTXDESC_CD_0_S: Field = Field::bit(44);
/// CD.R: record faults in the event queue.
pub const CTXDESC_CD_0_R: Field = Field::bit(45);
/// CD.A: terminated transactions are aborted (not RAZ/WI).
pub const CTXDESC_CD_0_A: Field = Field::bit(46);
/// CD.ASET: the ASID set is not shared with the CPUs (no broadcast invalidation).
pub const CTXDESC_CD_0_ASET: Field = Field::bit(47);
/// CD.ASID.
pub const CTXDESC_CD_0_ASID: Field = Field::new(63, 48);
/// CD.TTB0: translation table base, bits [51:4].
pub const CTXDESC_CD_1_TTB0: Field = Field::new(51, 4);

/// TG0 value for a 4 KiB granule.
pub const CTXDESC_CD_0_TCR_TG0_4K: u64 = 0b00;
/// IRGN0/ORGN0 value: write-back, read-allocate, write-allocate.
pub const CTXDESC_CD_0_TCR_RGN_WBWA: u64 = 0b01;
/// SH0 value: inner shareable.
pub const CTXDESC_CD_0_TCR_SH_IS: u64 = 0b11;
/// IRGN0/ORGN0 value: Non-cacheable (walks of a non-coherent SMMU go to the PoC).
pub const CTXDESC_CD_0_TCR_RGN_NC: u64 = 0b00;
/// SH0 value: outer shareable (what Non-cacheable walks are, as Linux's io-pgtable-arm
/// sets for a walker that is not coherent).
pub const CTXDESC_CD_0_TCR_SH_OS: u64 = 0b10;

/// Number of 64-bit words in a CD.
pub const CD_WORDS: usize = 8;
/// Size of a CD in bytes.
pub const CD_SIZE: usize = CD_WORDS * 8;

/// MAIR attribute index for normal write-back memory (attribute 0xff).
pub const MAIR_IDX_NORMAL: u64 = 0;
/// MAIR attribute index for Device-nGnRE memory (attribute 0x04).
pub const MAIR_IDX_DEVICE: u64 = 1;
/// MAIR attribute index for Normal memory, Inner and Outer Non-cacheable (attribute 0x44,
/// Arm ARM MAIR_ELx: 0b0100 = Normal Non-cacheable in each half): what a device that does
/// not snoop the CPUs' caches gets, as Linux's io-pgtable-arm maps without IOMMU_CACHE.
pub const MAIR_IDX_NORMAL_NC: u64 = 2;
/// The MAIR value every context uses: index 0 normal WBWA, index 1 Device-nGnRE, index 2
/// normal Non-cacheable.
pub const MAIR: u64 = 0xff | (0x04 << 8) | (0x44 << 16);

/// A context descriptor, as the SMMU reads it from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cd(pub [u64; CD_WORDS]);

/// The parameters of one stage-1 translation context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage1Context {
    /// Tags this context's TLB entries; invalidations name it.
    pub asid: Asid,
    /// Physical address of the level-0/1 translation table (4 KiB aligned).
    pub ttb0: PhysAddr,
    /// Size of the input (IOVA) range in bits, 25..=48.
    pub ias_bits: u32,
    /// CD.IPS encoding of the output address size (SMMU_IDR5.OAS).
    pub ips: u64,
}

impl Cd {
    /// The descriptor for `ctx`: AArch64 4 KiB-granule tables in TTB0 only, walks
    /// write-back and inner shareable, faults recorded (R) and aborted (A), no stalls,
    /// no hardware access/dirty updates (the driver sets AF itself), ASID private to the
    /// SMMU (ASET) so no CPU broadcast TLBI touches it.
    pub const fn stage1(ctx: &Stage1Context) -> Self {
        Self::stage1_for(ctx, Coherency::Coherent)
    }

    /// `stage1`, with table walks as `coherency` calls for: write-back and inner
    /// shareable when the SMMU snoops the CPU's caches, Non-cacheable (outer shareable)
    /// when it does not, so that it reads the PoC, where the driver cleaned the tables to
    /// (Linux's io-pgtable-arm does the same for a walker that is not `coherent_walk`).
    pub const fn stage1_for(ctx: &Stage1Context, coherency: Coherency) -> Self {
        let (rgn, sh) = match coherency {
            Coherency::Coherent => (CTXDESC_CD_0_TCR_RGN_WBWA, CTXDESC_CD_0_TCR_SH_IS),
            Coherency::NonCoherent => (CTXDESC_CD_0_TCR_RGN_NC, CTXDESC_CD_0_TCR_SH_OS),
        };
        let mut w = [0; CD_WORDS];
        w[0] = CTXDESC_CD_0_TCR_T0SZ.prep(64 - ctx.ias_bits as u64)
            | CTXDESC_CD_0_TCR_TG0.prep(CTXDESC_CD_0_TCR_TG0_4K)
            | CTXDESC_CD_0_TCR_IRGN0.prep(rgn)
            | CTXDESC_CD_0_TCR_ORGN0.prep(rgn)
            | CTXDESC_CD_0_TCR_SH0.prep(sh)
            | CTXDESC_CD_0_TCR_EPD1.prep(1)
            | CTXDESC_CD_0_V.prep(1)
            | CTXDESC_CD_0_TCR_IPS.prep(ctx.ips)
            | CTXDESC_CD_0_AA64.prep(1)
            | CTXDESC_CD_0_R.prep(1)
            | CTXDESC_CD_0_A.prep(1)
            | CTXDESC_CD_0_ASET.prep(1)
            | CTXDESC_CD_0_ASID.prep(ctx.asid.0 as u64);
        w[1] = addr_bits(CTXDESC_CD_1_TTB0, ctx.ttb0.0);
        w[3] = MAIR;
        Cd(w)
    }

    /// True if the SMMU would use this descriptor.
    pub const fn is_valid(&self) -> bool {
        CTXDESC_CD_0_V.get(self.0[0]) == 1
    }

    /// The ASID the descriptor tags translations with.
    pub const fn asid(&self) -> Asid {
        Asid(CTXDESC_CD_0_ASID.get(self.0[0]) as u16)
    }

    /// The translation-table base.
    pub const fn ttb0(&self) -> PhysAddr {
        PhysAddr(self.0[1] & CTXDESC_CD_1_TTB0.mask())
    }

    /// Which words the SMMU reads for this descriptor (bit n = word n): word 0 (TCR,
    /// ASID, V), word 1 (TTB0) and word 3 (MAIR); TTB1 is disabled by EPD1.
    pub const fn used_words(&self) -> u8 {
        if self.is_valid() {
            0b0000_1011
        } else {
            0b0000_0001
        }
    }
}

/// CD.IPS encoding for an output address size given as SMMU_IDR5.OAS (the encodings are
/// the same: 0 = 32 bits ... 5 = 48 bits, 6 = 52 bits).
pub const fn ips_from_oas(oas: u32) -> u64 {
    oas as u64
}

/// Output address size in bits for an SMMU_IDR5.OAS / CD.IPS encoding.
pub const fn oas_bits(oas: u32) -> u32 {
    match oas {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        5 => 48,
        _ => 52,
    }
}
