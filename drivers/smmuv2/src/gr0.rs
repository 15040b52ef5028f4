//! Global register space 0 (Arm IHI 0062D, chapter 10.5 / table 10-2; MMU-500's extras
//! from Arm DDI 0517): configuration, identification, global faults, global TLB
//! maintenance and the stream mapping table (SMRn, S2CRn).
//!
//! Only the first 4 KiB of the page hold registers; with a 64 KiB register page
//! (SMMU_IDR1.PAGESIZE = 1) the rest reads as zero. Field names are the spec's.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

/// SMRn and S2CRn the architecture allows (IDR0.NUMSMRG is 8 bits, the arrays at 0x800
/// and 0xC00 hold 128 each).
pub const MAX_SMRG: usize = 128;

register_bitfields! [
    u32,
    /// SMMU_sCR0 (IHI 0062D 10.6.1).
    pub SCR0 [
        CLIENTPD OFFSET(0) NUMBITS(1) [],
        GFRE OFFSET(1) NUMBITS(1) [],
        GFIE OFFSET(2) NUMBITS(1) [],
        EXIDENABLE OFFSET(3) NUMBITS(1) [],
        GCFGFRE OFFSET(4) NUMBITS(1) [],
        GCFGFIE OFFSET(5) NUMBITS(1) [],
        TRANSIENTCFG OFFSET(6) NUMBITS(2) [],
        STALLD OFFSET(8) NUMBITS(1) [],
        GSE OFFSET(9) NUMBITS(1) [],
        USFCFG OFFSET(10) NUMBITS(1) [],
        VMIDPNE OFFSET(11) NUMBITS(1) [],
        PTM OFFSET(12) NUMBITS(1) [],
        FB OFFSET(13) NUMBITS(1) [],
        BSU OFFSET(14) NUMBITS(2) [],
        MEMATTR OFFSET(16) NUMBITS(4) [],
        MTCFG OFFSET(20) NUMBITS(1) [],
        SMCFCFG OFFSET(21) NUMBITS(1) [],
        SHCFG OFFSET(22) NUMBITS(2) [],
        RACFG OFFSET(24) NUMBITS(2) [],
        WACFG OFFSET(26) NUMBITS(2) [],
        NSCFG OFFSET(28) NUMBITS(2) [],
        VMID16EN OFFSET(31) NUMBITS(1) [],
    ],
    /// MMU-500's SMMU_sACR (DDI 0517 3.4 / Linux `arm-smmu-impl.c`).
    pub SACR [
        SMTNMB_TLBEN OFFSET(8) NUMBITS(1) [],
        S2CRB_TLBEN OFFSET(10) NUMBITS(1) [],
        CACHE_LOCK OFFSET(26) NUMBITS(1) [],
    ],
    /// SMMU_IDR0 (IHI 0062D 10.6.2).
    pub IDR0 [
        NUMSMRG OFFSET(0) NUMBITS(8) [],
        EXIDS OFFSET(8) NUMBITS(1) [],
        NUMSIDB OFFSET(9) NUMBITS(4) [],
        BTM OFFSET(13) NUMBITS(1) [],
        CTTW OFFSET(14) NUMBITS(1) [],
        NUMIRPT OFFSET(16) NUMBITS(8) [],
        PTFS OFFSET(24) NUMBITS(2) [],
        ATOSNS OFFSET(26) NUMBITS(1) [],
        SMS OFFSET(27) NUMBITS(1) [],
        NTS OFFSET(28) NUMBITS(1) [],
        S2TS OFFSET(29) NUMBITS(1) [],
        S1TS OFFSET(30) NUMBITS(1) [],
        SES OFFSET(31) NUMBITS(1) [],
    ],
    /// SMMU_IDR1 (IHI 0062D 10.6.3).
    pub IDR1 [
        NUMCB OFFSET(0) NUMBITS(8) [],
        NUMSSDNDXB OFFSET(8) NUMBITS(4) [],
        SSDTP OFFSET(12) NUMBITS(2) [],
        SMCD OFFSET(15) NUMBITS(1) [],
        NUMS2CB OFFSET(16) NUMBITS(8) [],
        HAFDBS OFFSET(24) NUMBITS(2) [],
        NUMPAGENDXB OFFSET(28) NUMBITS(3) [],
        PAGESIZE OFFSET(31) NUMBITS(1) [],
    ],
    /// SMMU_IDR2 (IHI 0062D 10.6.4).
    pub IDR2 [
        IAS OFFSET(0) NUMBITS(4) [],
        OAS OFFSET(4) NUMBITS(4) [],
        UBS OFFSET(8) NUMBITS(4) [],
        PTFSV8_4KB OFFSET(12) NUMBITS(1) [],
        PTFSV8_16KB OFFSET(13) NUMBITS(1) [],
        PTFSV8_64KB OFFSET(14) NUMBITS(1) [],
        VMID16S OFFSET(15) NUMBITS(1) [],
        EXNUMSMRG OFFSET(16) NUMBITS(11) [],
        E2HS OFFSET(27) NUMBITS(1) [],
        HADS OFFSET(28) NUMBITS(1) [],
        COMPINDEXS OFFSET(29) NUMBITS(1) [],
        DIPANS OFFSET(30) NUMBITS(1) [],
    ],
    /// SMMU_IDR7 (IHI 0062D 10.6.9): the implementation's revision, rMAJORpMINOR on
    /// MMU-500 (DDI 0517 3.5).
    pub IDR7 [
        MINOR OFFSET(0) NUMBITS(4) [],
        MAJOR OFFSET(4) NUMBITS(4) [],
    ],
    /// SMMU_sGFSR (IHI 0062D 10.6.14), write 1 to clear.
    pub SGFSR [
        ICF OFFSET(0) NUMBITS(1) [],
        USF OFFSET(1) NUMBITS(1) [],
        SMCF OFFSET(2) NUMBITS(1) [],
        UCBF OFFSET(3) NUMBITS(1) [],
        UCIF OFFSET(4) NUMBITS(1) [],
        CAF OFFSET(5) NUMBITS(1) [],
        EF OFFSET(6) NUMBITS(1) [],
        PF OFFSET(7) NUMBITS(1) [],
        UUT OFFSET(8) NUMBITS(1) [],
        MULTI OFFSET(31) NUMBITS(1) [],
    ],
    /// SMMU_sGFSYNR0 (IHI 0062D 10.6.16).
    pub SGFSYNR0 [
        NESTED OFFSET(0) NUMBITS(1) [],
        WNR OFFSET(1) NUMBITS(1) [],
        PNU OFFSET(2) NUMBITS(1) [],
        IND OFFSET(3) NUMBITS(1) [],
        NSSTATE OFFSET(4) NUMBITS(1) [],
        NSATTR OFFSET(5) NUMBITS(1) [],
    ],
    /// SMMU_sGFSYNR1 (IHI 0062D 10.6.17): who faulted.
    pub SGFSYNR1 [
        STREAMID OFFSET(0) NUMBITS(16) [],
        SSD_INDEX OFFSET(16) NUMBITS(15) [],
    ],
    /// SMMU_sTLBGSTATUS (IHI 0062D 10.6.22).
    pub STLBGSTATUS [
        GSACTIVE OFFSET(0) NUMBITS(1) [],
    ],
    /// SMMU_SMRn (IHI 0062D 10.6.28), without extended StreamIDs.
    pub SMR [
        ID OFFSET(0) NUMBITS(15) [],
        MASK OFFSET(16) NUMBITS(15) [],
        VALID OFFSET(31) NUMBITS(1) [],
    ],
    /// SMMU_S2CRn (IHI 0062D 10.6.29).
    pub S2CR [
        CBNDX OFFSET(0) NUMBITS(8) [],
        SHCFG OFFSET(8) NUMBITS(2) [],
        EXIDVALID OFFSET(10) NUMBITS(1) [],
        MTCFG OFFSET(11) NUMBITS(1) [],
        MEMATTR OFFSET(12) NUMBITS(4) [],
        TYPE OFFSET(16) NUMBITS(2) [ Translation = 0, Bypass = 1, Fault = 2 ],
        NSCFG OFFSET(18) NUMBITS(2) [],
        RACFG OFFSET(20) NUMBITS(2) [],
        WACFG OFFSET(22) NUMBITS(2) [],
        PRIVCFG OFFSET(24) NUMBITS(2) [],
        INSTCFG OFFSET(26) NUMBITS(2) [],
        TRANSIENTCFG OFFSET(28) NUMBITS(2) [],
    ],
];

register_structs! {
    /// Global register space 0 (first 4 KiB of the SMMU's register file).
    pub GlobalSpace0 {
        (0x000 => pub scr0: ReadWrite<u32, SCR0::Register>),
        (0x004 => pub scr1: ReadWrite<u32>),
        (0x008 => _reserved0),
        (0x010 => pub sacr: ReadWrite<u32, SACR::Register>),
        (0x014 => _reserved1),
        (0x020 => pub idr0: ReadOnly<u32, IDR0::Register>),
        (0x024 => pub idr1: ReadOnly<u32, IDR1::Register>),
        (0x028 => pub idr2: ReadOnly<u32, IDR2::Register>),
        (0x02c => pub idr3: ReadOnly<u32>),
        (0x030 => pub idr4: ReadOnly<u32>),
        (0x034 => pub idr5: ReadOnly<u32>),
        (0x038 => pub idr6: ReadOnly<u32>),
        (0x03c => pub idr7: ReadOnly<u32, IDR7::Register>),
        (0x040 => pub sgfar: ReadWrite<u64>),
        (0x048 => pub sgfsr: ReadWrite<u32, SGFSR::Register>),
        (0x04c => pub sgfsrrestore: WriteOnly<u32>),
        (0x050 => pub sgfsynr0: ReadWrite<u32, SGFSYNR0::Register>),
        (0x054 => pub sgfsynr1: ReadWrite<u32, SGFSYNR1::Register>),
        (0x058 => pub sgfsynr2: ReadWrite<u32>),
        (0x05c => _reserved2),
        (0x064 => pub tlbivmid: WriteOnly<u32>),
        (0x068 => pub tlbiallnsnh: WriteOnly<u32>),
        (0x06c => pub tlbiallh: WriteOnly<u32>),
        (0x070 => pub stlbgsync: WriteOnly<u32>),
        (0x074 => pub stlbgstatus: ReadOnly<u32, STLBGSTATUS::Register>),
        (0x078 => _reserved3),
        (0x800 => pub smr: [ReadWrite<u32, SMR::Register>; MAX_SMRG]),
        (0xa00 => _reserved4),
        (0xc00 => pub s2cr: [ReadWrite<u32, S2CR::Register>; MAX_SMRG]),
        (0xe00 => _reserved5),
        (0x1000 => @END),
    }
}
