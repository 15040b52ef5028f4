//! A translation context bank's registers (Arm IHI 0062D 10.8, table 10-4), stage-1
//! AArch64 format (SMMU_CBA2Rn.VA64 = 1). Context bank n is register page NUMPAGE + n,
//! where NUMPAGE = 2^(SMMU_IDR1.NUMPAGENDXB + 1) (IHI 0062D 8.1).

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! [
    u32,
    /// SMMU_CBn_SCTLR (IHI 0062D 10.8.2).
    pub SCTLR [
        M OFFSET(0) NUMBITS(1) [],
        TRE OFFSET(1) NUMBITS(1) [],
        AFE OFFSET(2) NUMBITS(1) [],
        AFFD OFFSET(3) NUMBITS(1) [],
        E OFFSET(4) NUMBITS(1) [],
        CFRE OFFSET(5) NUMBITS(1) [],
        CFIE OFFSET(6) NUMBITS(1) [],
        CFCFG OFFSET(7) NUMBITS(1) [],
        HUPCF OFFSET(8) NUMBITS(1) [],
        WXN OFFSET(9) NUMBITS(1) [],
        UWXN OFFSET(10) NUMBITS(1) [],
        ASIDPNE OFFSET(12) NUMBITS(1) [],
    ],
    /// MMU-500's SMMU_CBn_ACTLR (DDI 0517 3.5.x): CPRE enables the next-page prefetcher.
    pub ACTLR [
        CPRE OFFSET(1) NUMBITS(1) [],
    ],
    /// SMMU_CBn_TCR2 (IHI 0062D 10.8.6), AArch64 stage 1.
    pub TCR2 [
        PASIZE OFFSET(0) NUMBITS(3) [],
        AS OFFSET(4) NUMBITS(1) [],
        TBI0 OFFSET(5) NUMBITS(1) [],
        TBI1 OFFSET(6) NUMBITS(1) [],
        SEP OFFSET(15) NUMBITS(3) [],
    ],
    /// SMMU_CBn_TCR (IHI 0062D 10.8.5), AArch64 stage-1 format (as TCR_EL1's low half).
    pub TCR [
        T0SZ OFFSET(0) NUMBITS(6) [],
        EPD0 OFFSET(7) NUMBITS(1) [],
        IRGN0 OFFSET(8) NUMBITS(2) [],
        ORGN0 OFFSET(10) NUMBITS(2) [],
        SH0 OFFSET(12) NUMBITS(2) [],
        TG0 OFFSET(14) NUMBITS(2) [ Granule4K = 0, Granule64K = 1, Granule16K = 2 ],
        T1SZ OFFSET(16) NUMBITS(6) [],
        A1 OFFSET(22) NUMBITS(1) [],
        EPD1 OFFSET(23) NUMBITS(1) [],
        IRGN1 OFFSET(24) NUMBITS(2) [],
        ORGN1 OFFSET(26) NUMBITS(2) [],
        SH1 OFFSET(28) NUMBITS(2) [],
        TG1 OFFSET(30) NUMBITS(2) [],
    ],
    /// SMMU_CBn_FSR (IHI 0062D 10.8.12), write 1 to clear.
    pub FSR [
        TF OFFSET(1) NUMBITS(1) [],
        AFF OFFSET(2) NUMBITS(1) [],
        PF OFFSET(3) NUMBITS(1) [],
        EF OFFSET(4) NUMBITS(1) [],
        TLBMCF OFFSET(5) NUMBITS(1) [],
        TLBLKF OFFSET(6) NUMBITS(1) [],
        ASF OFFSET(7) NUMBITS(1) [],
        UUT OFFSET(8) NUMBITS(1) [],
        SS OFFSET(30) NUMBITS(1) [],
        MULTI OFFSET(31) NUMBITS(1) [],
    ],
    /// SMMU_CBn_FSYNR0 (IHI 0062D 10.8.14).
    pub FSYNR0 [
        PLVL OFFSET(0) NUMBITS(2) [],
        WNR OFFSET(4) NUMBITS(1) [],
        PNU OFFSET(5) NUMBITS(1) [],
        IND OFFSET(6) NUMBITS(1) [],
        NSSTATE OFFSET(7) NUMBITS(1) [],
        NSATTR OFFSET(8) NUMBITS(1) [],
        ATOF OFFSET(9) NUMBITS(1) [],
        PTWF OFFSET(10) NUMBITS(1) [],
        AFR OFFSET(11) NUMBITS(1) [],
        S1CBNDX OFFSET(16) NUMBITS(8) [],
    ],
    /// SMMU_CBn_TLBSTATUS (IHI 0062D 10.8.27).
    pub TLBSTATUS [
        SACTIVE OFFSET(0) NUMBITS(1) [],
    ],
];

register_structs! {
    /// One context bank (first 4 KiB of its register page).
    pub ContextBank {
        (0x000 => pub sctlr: ReadWrite<u32, SCTLR::Register>),
        (0x004 => pub actlr: ReadWrite<u32, ACTLR::Register>),
        (0x008 => pub resume: WriteOnly<u32>),
        (0x00c => _reserved0),
        (0x010 => pub tcr2: ReadWrite<u32, TCR2::Register>),
        (0x014 => _reserved1),
        (0x020 => pub ttbr0: ReadWrite<u64>),
        (0x028 => pub ttbr1: ReadWrite<u64>),
        (0x030 => pub tcr: ReadWrite<u32, TCR::Register>),
        (0x034 => pub contextidr: ReadWrite<u32>),
        (0x038 => pub mair0: ReadWrite<u32>),
        (0x03c => pub mair1: ReadWrite<u32>),
        (0x040 => _reserved2),
        (0x050 => pub par: ReadOnly<u64>),
        (0x058 => pub fsr: ReadWrite<u32, FSR::Register>),
        (0x05c => pub fsrrestore: WriteOnly<u32>),
        (0x060 => pub far: ReadWrite<u64>),
        (0x068 => pub fsynr0: ReadWrite<u32, FSYNR0::Register>),
        (0x06c => pub fsynr1: ReadWrite<u32>),
        (0x070 => _reserved3),
        (0x600 => pub tlbiva: WriteOnly<u64>),
        (0x608 => pub tlbivaa: WriteOnly<u64>),
        (0x610 => pub tlbiasid: WriteOnly<u32>),
        (0x614 => _reserved4),
        (0x618 => pub tlbiall: WriteOnly<u32>),
        (0x61c => _reserved5),
        (0x620 => pub tlbival: WriteOnly<u64>),
        (0x628 => pub tlbivaal: WriteOnly<u64>),
        (0x630 => _reserved6),
        (0x7f0 => pub tlbsync: WriteOnly<u32>),
        (0x7f4 => pub tlbstatus: ReadOnly<u32, TLBSTATUS::Register>),
        (0x7f8 => _reserved7),
        (0x1000 => @END),
    }
}
