//! The SMMUv3 register file (Arm IHI 0070, chapter 6), page 0 and page 1.
//!
//! Register and field names are the specification's, so the code can be read beside
//! section 6.3 ("Register formats"). Only the registers this driver uses are named;
//! the rest of each 64 KiB page is padding.

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! [
    u32,
    /// SMMU_IDR0 (6.3.1).
    pub IDR0 [
        S2P OFFSET(0) NUMBITS(1) [],
        S1P OFFSET(1) NUMBITS(1) [],
        TTF OFFSET(2) NUMBITS(2) [ AArch32 = 1, AArch64 = 2, Both = 3 ],
        COHACC OFFSET(4) NUMBITS(1) [],
        BTM OFFSET(5) NUMBITS(1) [],
        HTTU OFFSET(6) NUMBITS(2) [],
        DORMHINT OFFSET(8) NUMBITS(1) [],
        HYP OFFSET(9) NUMBITS(1) [],
        ATS OFFSET(10) NUMBITS(1) [],
        NS1ATS OFFSET(11) NUMBITS(1) [],
        ASID16 OFFSET(12) NUMBITS(1) [],
        MSI OFFSET(13) NUMBITS(1) [],
        SEV OFFSET(14) NUMBITS(1) [],
        ATOS OFFSET(15) NUMBITS(1) [],
        PRI OFFSET(16) NUMBITS(1) [],
        VMW OFFSET(17) NUMBITS(1) [],
        VMID16 OFFSET(18) NUMBITS(1) [],
        CD2L OFFSET(19) NUMBITS(1) [],
        VATOS OFFSET(20) NUMBITS(1) [],
        TTENDIAN OFFSET(21) NUMBITS(2) [ Mixed = 0, Little = 2, Big = 3 ],
        STALL_MODEL OFFSET(24) NUMBITS(2) [ StallAndTerminate = 0, TerminateOnly = 1, StallForced = 2 ],
        TERM_MODEL OFFSET(26) NUMBITS(1) [],
        ST_LEVEL OFFSET(27) NUMBITS(2) [ Linear = 0, TwoLevel = 1 ],
    ],
    /// SMMU_IDR1 (6.3.2).
    pub IDR1 [
        SIDSIZE OFFSET(0) NUMBITS(6) [],
        SSIDSIZE OFFSET(6) NUMBITS(5) [],
        PRIQS OFFSET(11) NUMBITS(5) [],
        EVENTQS OFFSET(16) NUMBITS(5) [],
        CMDQS OFFSET(21) NUMBITS(5) [],
        REL OFFSET(28) NUMBITS(1) [],
        QUEUES_PRESET OFFSET(29) NUMBITS(1) [],
        TABLES_PRESET OFFSET(30) NUMBITS(1) [],
    ],
    /// SMMU_IDR3 (6.3.4).
    pub IDR3 [
        HAD OFFSET(2) NUMBITS(1) [],
        RIL OFFSET(10) NUMBITS(1) [],
    ],
    /// SMMU_IDR5 (6.3.6).
    pub IDR5 [
        OAS OFFSET(0) NUMBITS(3) [],
        GRAN4K OFFSET(4) NUMBITS(1) [],
        GRAN16K OFFSET(5) NUMBITS(1) [],
        GRAN64K OFFSET(6) NUMBITS(1) [],
        VAX OFFSET(10) NUMBITS(2) [],
        STALL_MAX OFFSET(16) NUMBITS(16) [],
    ],
    /// SMMU_IIDR (6.3.7).
    pub IIDR [
        Implementer OFFSET(0) NUMBITS(12) [],
        Revision OFFSET(12) NUMBITS(4) [],
        Variant OFFSET(16) NUMBITS(4) [],
        ProductID OFFSET(20) NUMBITS(12) [],
    ],
    /// SMMU_AIDR (6.3.8).
    pub AIDR [
        ArchMinorRev OFFSET(0) NUMBITS(4) [],
        ArchMajorRev OFFSET(4) NUMBITS(4) [],
    ],
    /// SMMU_CR0 and SMMU_CR0ACK (6.3.9, 6.3.10).
    pub CR0 [
        SMMUEN OFFSET(0) NUMBITS(1) [],
        PRIQEN OFFSET(1) NUMBITS(1) [],
        EVENTQEN OFFSET(2) NUMBITS(1) [],
        CMDQEN OFFSET(3) NUMBITS(1) [],
        ATSCHK OFFSET(4) NUMBITS(1) [],
    ],
    /// SMMU_CR1 (6.3.11): cacheability and shareability of table and queue accesses.
    pub CR1 [
        QUEUE_IC OFFSET(0) NUMBITS(2) [ NonCacheable = 0, WriteBackAllocate = 1 ],
        QUEUE_OC OFFSET(2) NUMBITS(2) [ NonCacheable = 0, WriteBackAllocate = 1 ],
        QUEUE_SH OFFSET(4) NUMBITS(2) [ NonShareable = 0, Outer = 2, Inner = 3 ],
        TABLE_IC OFFSET(6) NUMBITS(2) [ NonCacheable = 0, WriteBackAllocate = 1 ],
        TABLE_OC OFFSET(8) NUMBITS(2) [ NonCacheable = 0, WriteBackAllocate = 1 ],
        TABLE_SH OFFSET(10) NUMBITS(2) [ NonShareable = 0, Outer = 2, Inner = 3 ],
    ],
    /// SMMU_CR2 (6.3.12).
    pub CR2 [
        E2H OFFSET(0) NUMBITS(1) [],
        RECINVSID OFFSET(1) NUMBITS(1) [],
        PTM OFFSET(2) NUMBITS(1) [],
    ],
    /// SMMU_GBPA (6.3.14): what transactions do while SMMU_CR0.SMMUEN == 0.
    pub GBPA [
        ABORT OFFSET(20) NUMBITS(1) [],
        UPDATE OFFSET(31) NUMBITS(1) [],
    ],
    /// SMMU_IRQ_CTRL and SMMU_IRQ_CTRLACK (6.3.16, 6.3.17).
    pub IRQ_CTRL [
        GERROR_IRQEN OFFSET(0) NUMBITS(1) [],
        PRIQ_IRQEN OFFSET(1) NUMBITS(1) [],
        EVENTQ_IRQEN OFFSET(2) NUMBITS(1) [],
    ],
    /// SMMU_GERROR and SMMU_GERRORN (6.3.18, 6.3.19). An error is active while the
    /// bit differs between the two; software acknowledges by toggling GERRORN.
    pub GERROR [
        CMDQ_ERR OFFSET(0) NUMBITS(1) [],
        EVENTQ_ABT_ERR OFFSET(2) NUMBITS(1) [],
        PRIQ_ABT_ERR OFFSET(3) NUMBITS(1) [],
        MSI_CMDQ_ABT_ERR OFFSET(4) NUMBITS(1) [],
        MSI_EVENTQ_ABT_ERR OFFSET(5) NUMBITS(1) [],
        MSI_PRIQ_ABT_ERR OFFSET(6) NUMBITS(1) [],
        MSI_GERROR_ABT_ERR OFFSET(7) NUMBITS(1) [],
        SFM_ERR OFFSET(8) NUMBITS(1) [],
    ],
    /// SMMU_STRTAB_BASE_CFG (6.3.25).
    pub STRTAB_BASE_CFG [
        LOG2SIZE OFFSET(0) NUMBITS(6) [],
        SPLIT OFFSET(6) NUMBITS(5) [],
        FMT OFFSET(16) NUMBITS(2) [ Linear = 0, TwoLevel = 1 ],
    ],
    /// SMMU_CMDQ_CONS (6.3.28).
    pub CMDQ_CONS [
        RD OFFSET(0) NUMBITS(20) [],
        ERR OFFSET(24) NUMBITS(7) [ None = 0, Illegal = 1, Abort = 2, AtcInvSync = 3 ],
    ],
    /// SMMU_EVENTQ_PROD (6.3.30).
    pub EVENTQ_PROD [
        WR OFFSET(0) NUMBITS(20) [],
        OVFLG OFFSET(31) NUMBITS(1) [],
    ],
    /// SMMU_EVENTQ_CONS (6.3.31).
    pub EVENTQ_CONS [
        RD OFFSET(0) NUMBITS(20) [],
        OVACKFLG OFFSET(31) NUMBITS(1) [],
    ],
];

register_bitfields! [
    u64,
    /// SMMU_STRTAB_BASE (6.3.24).
    pub STRTAB_BASE [
        ADDR OFFSET(6) NUMBITS(46) [],
        RA OFFSET(62) NUMBITS(1) [],
    ],
    /// SMMU_CMDQ_BASE (6.3.26) and SMMU_EVENTQ_BASE (6.3.29) share a layout: the
    /// allocate hint is RA for the command queue and WA for the event queue.
    pub Q_BASE [
        LOG2SIZE OFFSET(0) NUMBITS(5) [],
        ADDR OFFSET(5) NUMBITS(47) [],
        ALLOCATE OFFSET(62) NUMBITS(1) [],
    ],
];

register_structs! {
    /// Page 0 of the SMMUv3 register file (IHI 0070 6.2, table 6-1).
    pub Page0 {
        (0x000 => pub idr0: ReadOnly<u32, IDR0::Register>),
        (0x004 => pub idr1: ReadOnly<u32, IDR1::Register>),
        (0x008 => pub idr2: ReadOnly<u32>),
        (0x00c => pub idr3: ReadOnly<u32, IDR3::Register>),
        (0x010 => pub idr4: ReadOnly<u32>),
        (0x014 => pub idr5: ReadOnly<u32, IDR5::Register>),
        (0x018 => pub iidr: ReadOnly<u32, IIDR::Register>),
        (0x01c => pub aidr: ReadOnly<u32, AIDR::Register>),
        (0x020 => pub cr0: ReadWrite<u32, CR0::Register>),
        (0x024 => pub cr0ack: ReadOnly<u32, CR0::Register>),
        (0x028 => pub cr1: ReadWrite<u32, CR1::Register>),
        (0x02c => pub cr2: ReadWrite<u32, CR2::Register>),
        (0x030 => _reserved0),
        (0x040 => pub statusr: ReadOnly<u32>),
        (0x044 => pub gbpa: ReadWrite<u32, GBPA::Register>),
        (0x048 => pub agbpa: ReadWrite<u32>),
        (0x04c => _reserved1),
        (0x050 => pub irq_ctrl: ReadWrite<u32, IRQ_CTRL::Register>),
        (0x054 => pub irq_ctrlack: ReadOnly<u32, IRQ_CTRL::Register>),
        (0x058 => _reserved2),
        (0x060 => pub gerror: ReadOnly<u32, GERROR::Register>),
        (0x064 => pub gerrorn: ReadWrite<u32, GERROR::Register>),
        (0x068 => pub gerror_irq_cfg0: ReadWrite<u64>),
        (0x070 => pub gerror_irq_cfg1: ReadWrite<u32>),
        (0x074 => pub gerror_irq_cfg2: ReadWrite<u32>),
        (0x078 => _reserved3),
        (0x080 => pub strtab_base: ReadWrite<u64, STRTAB_BASE::Register>),
        (0x088 => pub strtab_base_cfg: ReadWrite<u32, STRTAB_BASE_CFG::Register>),
        (0x08c => _reserved4),
        (0x090 => pub cmdq_base: ReadWrite<u64, Q_BASE::Register>),
        (0x098 => pub cmdq_prod: ReadWrite<u32>),
        (0x09c => pub cmdq_cons: ReadWrite<u32, CMDQ_CONS::Register>),
        (0x0a0 => pub eventq_base: ReadWrite<u64, Q_BASE::Register>),
        (0x0a8 => _reserved5),
        (0x0b0 => pub eventq_irq_cfg0: ReadWrite<u64>),
        (0x0b8 => pub eventq_irq_cfg1: ReadWrite<u32>),
        (0x0bc => pub eventq_irq_cfg2: ReadWrite<u32>),
        (0x0c0 => _reserved6),
        (0x0d0 => pub priq_irq_cfg0: ReadWrite<u64>),
        (0x0d8 => _reserved7),
        (0x10000 => @END),
    }
}

register_structs! {
    /// Page 1 of the SMMUv3 register file (IHI 0070 6.2, table 6-2): the event and
    /// PRI queue indices live here so that they can be given to a less trusted agent.
    pub Page1 {
        (0x000 => _reserved0),
        (0x0a8 => pub eventq_prod: ReadWrite<u32, EVENTQ_PROD::Register>),
        (0x0ac => pub eventq_cons: ReadWrite<u32, EVENTQ_CONS::Register>),
        (0x0b0 => _reserved1),
        (0x10000 => @END),
    }
}

register_structs! {
    /// The whole register file: page 1 follows page 0 at offset 0x10000.
    pub Registers {
        (0x00000 => pub page0: Page0),
        (0x10000 => pub page1: Page1),
        (0x20000 => @END),
    }
}

/// Size of the MMIO region the driver needs mapped (two 64 KiB pages).
pub const REGISTER_SPAN: usize = core::mem::size_of::<Registers>();
