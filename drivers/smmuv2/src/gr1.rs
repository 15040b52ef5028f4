//! Global register space 1 (Arm IHI 0062D 10.7, table 10-3): the attributes of each
//! context bank (CBARn, CBA2Rn) and the StreamID of its last fault (CBFRSYNRAn).
//! It is the second register page: its offset is the page size (SMMU_IDR1.PAGESIZE).

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

/// Context banks the architecture allows (IDR1.NUMCB is 8 bits; the arrays hold 128).
pub const MAX_CB: usize = 128;

register_bitfields! [
    u32,
    /// SMMU_CBARn (IHI 0062D 10.7.1), the stage-1 format.
    pub CBAR [
        VMID OFFSET(0) NUMBITS(8) [],
        BPSHCFG OFFSET(8) NUMBITS(2) [],
        HYPC OFFSET(10) NUMBITS(1) [],
        FB OFFSET(11) NUMBITS(1) [],
        MEMATTR OFFSET(12) NUMBITS(4) [],
        TYPE OFFSET(16) NUMBITS(2) [
            Stage2 = 0,
            Stage1Stage2Bypass = 1,
            Stage1Stage2Fault = 2,
            Nested = 3
        ],
        BSU OFFSET(18) NUMBITS(2) [],
        RACFG OFFSET(20) NUMBITS(2) [],
        WACFG OFFSET(22) NUMBITS(2) [],
        IRPTNDX OFFSET(24) NUMBITS(8) [],
    ],
    /// SMMU_CBFRSYNRAn (IHI 0062D 10.7.2): syndrome of the context bank's last fault.
    pub CBFRSYNRA [
        STREAMID OFFSET(0) NUMBITS(16) [],
        SSD_INDEX OFFSET(16) NUMBITS(15) [],
    ],
    /// SMMU_CBA2Rn (IHI 0062D 10.7.3).
    pub CBA2R [
        VA64 OFFSET(0) NUMBITS(1) [],
        MONC OFFSET(1) NUMBITS(1) [],
        VMID16 OFFSET(16) NUMBITS(16) [],
    ],
];

register_structs! {
    /// Global register space 1 (first 4 KiB of the second register page).
    pub GlobalSpace1 {
        (0x000 => pub cbar: [ReadWrite<u32, CBAR::Register>; MAX_CB]),
        (0x200 => _reserved0),
        (0x400 => pub cbfrsynra: [ReadWrite<u32, CBFRSYNRA::Register>; MAX_CB]),
        (0x600 => _reserved1),
        (0x800 => pub cba2r: [ReadWrite<u32, CBA2R::Register>; MAX_CB]),
        (0xa00 => _reserved2),
        (0x1000 => @END),
    }
}
