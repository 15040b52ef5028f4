//! Errata of Arm's SMMUv3 implementations that this driver works around, keyed by
//! SMMU_IIDR (IHI 0070 6.3.7: ProductID [31:20], Variant [19:16], Revision [15:12],
//! Implementer [11:0]). Linux's `arm_smmu_device_iidr_probe` keeps the same table.
//!
//! Known errata the driver does not need to work around, and why:
//! - MMU-600 1076982 (SEV not reliable): the driver never waits for events with WFE.
//! - MMU-600 1209401 and MMU-700 2268618 (nesting): the driver never nests; a stream is
//!   translated at stage 1 or at stage 2, never both (STE.Config 0b101 or 0b110).
//! - MMU-700 2812531 (broadcast TLB maintenance): the driver sets SMMU_CR2.PTM, so the
//!   SMMU ignores broadcast TLBI; its other half, below, is worked around.

/// JEP106 code of Arm in SMMU_IIDR.Implementer.
pub const IMPLEMENTER_ARM: u32 = 0x43b;
/// SMMU_IIDR.ProductID of Arm's CoreLink MMU-600.
pub const PRODUCT_MMU_600: u32 = 0x483;
/// SMMU_IIDR.ProductID of Arm's CoreLink MMU-700.
pub const PRODUCT_MMU_700: u32 = 0x487;

/// What the driver must do differently on this implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Errata {
    /// Most commands the driver may queue between two CMD_SYNCs (MMU-700 erratum
    /// 2812531: a CMD_SYNC must come before the 64th command of a batch); `None` for no
    /// limit.
    pub commands_per_sync: Option<u32>,
}

/// The errata of the SMMU whose SMMU_IIDR reads `iidr`.
pub fn for_iidr(iidr: u32) -> Errata {
    let implementer = iidr & 0xfff;
    let product = iidr >> 20;
    match (implementer, product) {
        (IMPLEMENTER_ARM, PRODUCT_MMU_700) => Errata { commands_per_sync: Some(63) },
        _ => Errata::default(),
    }
}
