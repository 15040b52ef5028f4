//! Command-queue entries (IHI 0070 4.1-4.7). A command is two 64-bit words; word 0
//! bits [7:0] are the opcode.

use crate::addr::{Asid, Iova, StreamId, Vmid};
use crate::field::{addr_bits, Field};

/// Opcode, common to every command.
pub const CMDQ_0_OP: Field = Field::new(7, 0);
/// SSV: the SubstreamID field is valid.
pub const CMDQ_0_SSV: Field = Field::bit(11);
/// CMD_CFGI_*: SubstreamID.
pub const CMDQ_CFGI_0_SSID: Field = Field::new(31, 12);
/// CMD_CFGI_*: StreamID.
pub const CMDQ_CFGI_0_SID: Field = Field::new(63, 32);
/// CMD_CFGI_STE / CMD_CFGI_CD: Leaf (only the STE/CD itself, not the tables above).
pub const CMDQ_CFGI_1_LEAF: Field = Field::bit(0);
/// CMD_CFGI_STE_RANGE: invalidate 2^(Range+1) StreamIDs.
pub const CMDQ_CFGI_1_RANGE: Field = Field::new(4, 0);
/// CMD_TLBI_*: NUM (range invalidation).
pub const CMDQ_TLBI_0_NUM: Field = Field::new(16, 12);
/// CMD_TLBI_*: SCALE (range invalidation).
pub const CMDQ_TLBI_0_SCALE: Field = Field::new(24, 20);
/// CMD_TLBI_*: VMID.
pub const CMDQ_TLBI_0_VMID: Field = Field::new(47, 32);
/// CMD_TLBI_*: ASID.
pub const CMDQ_TLBI_0_ASID: Field = Field::new(63, 48);
/// CMD_TLBI_*_VA: Leaf (only last-level entries need invalidating).
pub const CMDQ_TLBI_1_LEAF: Field = Field::bit(0);
/// CMD_TLBI_*_VA: TTL, the level of the leaf, 0 if unknown.
pub const CMDQ_TLBI_1_TTL: Field = Field::new(9, 8);
/// CMD_TLBI_*_VA: TG, the granule, 0 if unknown.
pub const CMDQ_TLBI_1_TG: Field = Field::new(11, 10);
/// CMD_TLBI_*_VA: Address[63:12].
pub const CMDQ_TLBI_1_VA: Field = Field::new(63, 12);
/// CMD_TLBI_S2_IPA: Address[51:12], the IPA.
pub const CMDQ_TLBI_1_IPA: Field = Field::new(51, 12);
/// CMD_SYNC: completion signal (0 none, 1 IRQ, 2 SEV).
pub const CMDQ_SYNC_0_CS: Field = Field::new(13, 12);
/// CMD_SYNC: MSI shareability.
pub const CMDQ_SYNC_0_MSH: Field = Field::new(23, 22);
/// CMD_SYNC: MSI attributes.
pub const CMDQ_SYNC_0_MSIATTR: Field = Field::new(27, 24);
/// CMD_SYNC: MSI data.
pub const CMDQ_SYNC_0_MSIDATA: Field = Field::new(63, 32);
/// CMD_SYNC: MSI address [51:2].
pub const CMDQ_SYNC_1_MSIADDR: Field = Field::new(51, 2);

/// Command opcodes (IHI 0070 4.1, table 4-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// CMD_PREFETCH_CONFIG.
    PrefetchConfig = 0x01,
    /// CMD_PREFETCH_ADDR.
    PrefetchAddr = 0x02,
    /// CMD_CFGI_STE.
    CfgiSte = 0x03,
    /// CMD_CFGI_STE_RANGE (CMD_CFGI_ALL when Range = 31).
    CfgiSteRange = 0x04,
    /// CMD_CFGI_CD.
    CfgiCd = 0x05,
    /// CMD_CFGI_CD_ALL.
    CfgiCdAll = 0x06,
    /// CMD_TLBI_NH_ALL.
    TlbiNhAll = 0x10,
    /// CMD_TLBI_NH_ASID.
    TlbiNhAsid = 0x11,
    /// CMD_TLBI_NH_VA.
    TlbiNhVa = 0x12,
    /// CMD_TLBI_NH_VAA.
    TlbiNhVaa = 0x13,
    /// CMD_TLBI_EL3_ALL.
    TlbiEl3All = 0x18,
    /// CMD_TLBI_EL3_VA.
    TlbiEl3Va = 0x1a,
    /// CMD_TLBI_EL2_ALL.
    TlbiEl2All = 0x20,
    /// CMD_TLBI_EL2_ASID.
    TlbiEl2Asid = 0x21,
    /// CMD_TLBI_EL2_VA.
    TlbiEl2Va = 0x22,
    /// CMD_TLBI_EL2_VAA.
    TlbiEl2Vaa = 0x23,
    /// CMD_TLBI_S12_VMALL.
    TlbiS12Vmall = 0x28,
    /// CMD_TLBI_S2_IPA.
    TlbiS2Ipa = 0x2a,
    /// CMD_TLBI_NSNH_ALL.
    TlbiNsnhAll = 0x30,
    /// CMD_ATC_INV.
    AtcInv = 0x40,
    /// CMD_PRI_RESP.
    PriResp = 0x41,
    /// CMD_RESUME.
    Resume = 0x44,
    /// CMD_STALL_TERM.
    StallTerm = 0x45,
    /// CMD_SYNC.
    Sync = 0x46,
}

/// Size of a command in bytes.
pub const CMD_SIZE: usize = 16;

/// One command-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command(pub [u64; 2]);

impl Command {
    const fn op(op: Opcode) -> u64 {
        CMDQ_0_OP.prep(op as u64)
    }

    /// CMD_CFGI_STE (4.3.1): the SMMU drops any cached copy of `sid`'s STE. `leaf`
    /// leaves cached level-1 stream-table descriptors alone.
    pub const fn cfgi_ste(sid: StreamId, leaf: bool) -> Self {
        Command([Self::op(Opcode::CfgiSte) | CMDQ_CFGI_0_SID.prep(sid.0 as u64), CMDQ_CFGI_1_LEAF.prep(leaf as u64)])
    }

    /// CMD_CFGI_ALL (4.3.3): CMD_CFGI_STE_RANGE with Range = 31, every StreamID.
    pub const fn cfgi_all() -> Self {
        Command([Self::op(Opcode::CfgiSteRange), CMDQ_CFGI_1_RANGE.prep(31)])
    }

    /// CMD_CFGI_CD (4.3.4): drop cached copies of the CD that `sid` uses without a
    /// SubstreamID (SSV = 0).
    pub const fn cfgi_cd(sid: StreamId, leaf: bool) -> Self {
        Command([Self::op(Opcode::CfgiCd) | CMDQ_CFGI_0_SID.prep(sid.0 as u64), CMDQ_CFGI_1_LEAF.prep(leaf as u64)])
    }

    /// CMD_TLBI_NH_ASID (4.4.2): every non-global stage-1 TLB entry tagged `asid`.
    pub const fn tlbi_nh_asid(asid: Asid) -> Self {
        Command([Self::op(Opcode::TlbiNhAsid) | CMDQ_TLBI_0_ASID.prep(asid.0 as u64), 0])
    }

    /// CMD_TLBI_NH_VA (4.4.3): the stage-1 entries for `iova` tagged `asid`. `leaf`
    /// says only the last-level entry changed (no table was removed); `ttl` is the
    /// level of that entry when known (with TG = 4 KiB), or `None`. The hint is for
    /// SMMUs with range invalidation (SMMU_IDR3.RIL); the driver gives none, and a level
    /// of 0 (no level) never goes out as TG with TTL 0.
    pub const fn tlbi_nh_va(asid: Asid, iova: Iova, leaf: bool, ttl: Option<u8>) -> Self {
        let (tg, ttl) = match ttl {
            // TG = 0b01 means 4 KiB; TTL is only meaningful with TG != 0 (4.4.1.1).
            Some(level @ 1..=3) => (0b01, level as u64),
            _ => (0, 0),
        };
        Command([
            Self::op(Opcode::TlbiNhVa) | CMDQ_TLBI_0_ASID.prep(asid.0 as u64),
            CMDQ_TLBI_1_LEAF.prep(leaf as u64)
                | CMDQ_TLBI_1_TTL.prep(ttl)
                | CMDQ_TLBI_1_TG.prep(tg)
                | addr_bits(CMDQ_TLBI_1_VA, iova.0),
        ])
    }

    /// CMD_TLBI_NH_VA as a range (IHI 0070 4.4.1, SMMU_IDR3.RIL): the stage-1 entries of
    /// `asid` in `[iova, iova + (num + 1) * 2^scale * 4 KiB)`, TG = 4 KiB, whose leaf is
    /// at level `ttl` (1..=3; 0 says any level). `num` takes 5 bits and `scale` 5 bits:
    /// what does not fit is cut off, so `range::split` is what chooses them.
    pub const fn tlbi_nh_va_range(asid: Asid, iova: Iova, leaf: bool, range: TlbiRange) -> Self {
        Command([
            Self::op(Opcode::TlbiNhVa) | CMDQ_TLBI_0_ASID.prep(asid.0 as u64) | range.word0(),
            CMDQ_TLBI_1_LEAF.prep(leaf as u64) | range.word1() | addr_bits(CMDQ_TLBI_1_VA, iova.0),
        ])
    }

    /// CMD_TLBI_S2_IPA as a range (IHI 0070 4.4.1, SMMU_IDR3.RIL): as `tlbi_nh_va_range`,
    /// for the stage-2 entries of `vmid` over IPAs.
    pub const fn tlbi_s2_ipa_range(vmid: Vmid, ipa: Iova, leaf: bool, range: TlbiRange) -> Self {
        Command([
            Self::op(Opcode::TlbiS2Ipa) | CMDQ_TLBI_0_VMID.prep(vmid.0 as u64) | range.word0(),
            CMDQ_TLBI_1_LEAF.prep(leaf as u64) | range.word1() | addr_bits(CMDQ_TLBI_1_IPA, ipa.0),
        ])
    }

    /// CMD_TLBI_S2_IPA (IHI 0070 4.4, opcode 0x2a): the stage-2 entries for `ipa` tagged `vmid`. `leaf` as
    /// for `tlbi_nh_va` (no table removed); no range or level hint (TG = TTL = 0).
    pub const fn tlbi_s2_ipa(vmid: Vmid, ipa: Iova, leaf: bool) -> Self {
        Command([
            Self::op(Opcode::TlbiS2Ipa) | CMDQ_TLBI_0_VMID.prep(vmid.0 as u64),
            CMDQ_TLBI_1_LEAF.prep(leaf as u64) | addr_bits(CMDQ_TLBI_1_IPA, ipa.0),
        ])
    }

    /// CMD_TLBI_S12_VMALL (IHI 0070 4.4, opcode 0x28): every entry tagged `vmid`, of either stage, cached walks
    /// included: what removes a whole stage-2 address space from the TLB.
    pub const fn tlbi_s12_vmall(vmid: Vmid) -> Self {
        Command([Self::op(Opcode::TlbiS12Vmall) | CMDQ_TLBI_0_VMID.prep(vmid.0 as u64), 0])
    }

    /// CMD_TLBI_NSNH_ALL (4.4.9): every non-secure, non-hypervisor TLB entry.
    pub const fn tlbi_nsnh_all() -> Self {
        Command([Self::op(Opcode::TlbiNsnhAll), 0])
    }

    /// CMD_TLBI_EL2_ALL (4.4.5): every EL2 entry (needed at reset when SMMU_IDR0.HYP).
    pub const fn tlbi_el2_all() -> Self {
        Command([Self::op(Opcode::TlbiEl2All), 0])
    }

    /// CMD_SYNC (4.7.3) with no completion signal: its consumption, seen in
    /// SMMU_CMDQ_CONS, tells that every earlier command has completed.
    pub const fn sync() -> Self {
        Command([Self::op(Opcode::Sync) | CMDQ_SYNC_0_CS.prep(0), 0])
    }

    /// The opcode byte.
    pub const fn opcode(&self) -> u8 {
        CMDQ_0_OP.get(self.0[0]) as u8
    }
}

/// The range fields of a CMD_TLBI_NH_VA or CMD_TLBI_S2_IPA on an SMMU with range
/// invalidation (IHI 0070 4.4.1): `(num + 1) * 2^scale` pages of the 4 KiB granule
/// (TG = 0b01), leaves at level `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlbiRange {
    /// NUM: one less than the number of 2^SCALE-page chunks, 0..=31.
    pub num: u8,
    /// SCALE: 0..=31.
    pub scale: u8,
    /// TTL: the level of the leaf entries (1, 2 or 3 with a 4 KiB granule), 0 for any.
    pub ttl: u8,
}

/// TG = 0b01: the 4 KiB translation granule, the only one the driver's tables use.
pub const TLBI_TG_4K: u64 = 0b01;

impl TlbiRange {
    /// The pages it covers.
    pub const fn pages(self) -> u64 {
        ((self.num as u64 & 0x1f) + 1) << (self.scale & 0x1f)
    }

    const fn word0(self) -> u64 {
        CMDQ_TLBI_0_NUM.prep(self.num as u64) | CMDQ_TLBI_0_SCALE.prep(self.scale as u64)
    }

    const fn word1(self) -> u64 {
        CMDQ_TLBI_1_TG.prep(TLBI_TG_4K) | CMDQ_TLBI_1_TTL.prep(self.ttl as u64)
    }
}

impl Command {
    /// CMD_CFGI_CD_ALL (4.3.5): drop every cached CD of `sid`.
    pub const fn cfgi_cd_all(sid: StreamId) -> Self {
        Command([Self::op(Opcode::CfgiCdAll) | CMDQ_CFGI_0_SID.prep(sid.0 as u64), 0])
    }
}
