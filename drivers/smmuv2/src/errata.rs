//! What MMU-500 needs beyond the architecture, keyed as Linux keys it: the
//! implementation (which SMMUv2 has no ID register for: Linux takes it from the device
//! tree's `compatible = "arm,mmu-500"`, and so does the caller here, `Config`) and its
//! revision from SMMU_IDR7 (MAJOR [7:4], MINOR [3:0]; MMU-500 rMAJORpMINOR, DDI 0517).
//!
//! Applied, as Linux's `arm_mmu500_reset` (drivers/iommu/arm/arm-smmu/arm-smmu-impl.c)
//! and seL4's `smmu_dev_reset` (src/drivers/smmu/smmuv2.c) do:
//! - **r2p0 onwards: clear SMMU_sACR.CACHE_LOCK**, or writes to the context banks'
//!   ACTLR do not stick (below). Only the Non-secure view is reachable: Secure software
//!   must have cleared the Secure CACHE_LOCK too (Linux: "we just hope"); the driver
//!   reads ACTLR back and reports whether CPRE took (`Smmu::prefetch_disabled`).
//! - **Errata 841119 and 826419: clear SMMU_CBn_ACTLR.CPRE** in every context bank,
//!   turning off the next-page prefetcher, whose prefetched entries the TLB invalidation
//!   of these errata could leave behind (Linux: "Disable MMU-500's
//!   not-particularly-beneficial next-page prefetcher for the sake of errata #841119
//!   and #826419"). These are the TLB-invalidation errata that apply to a stage-1
//!   TLBIVA/TLBIASID driver; every revision gets the workaround, as in Linux.
//! - **sACR.S2CRB_TLBEN and SMTNMB_TLBEN**: Linux sets them ("allow unmatched Stream IDs
//!   to allocate bypass TLB entries for reduced latency"). They only speed up bypassing
//!   transactions, which this driver never configures (USFCFG = 1, no S2CR of type
//!   bypass), so they change nothing here; they are set to do what Linux does.

/// The SMMUv2 implementation, as the platform's description names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Implementation {
    /// Any SMMUv2: the architecture only.
    #[default]
    Generic,
    /// Arm CoreLink MMU-500 (`arm,mmu-500`).
    Mmu500,
}

/// What the driver does differently on this implementation and revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Errata {
    /// Clear sACR.CACHE_LOCK before writing the ACTLRs (MMU-500 r2p0 onwards).
    pub clear_cache_lock: bool,
    /// Clear CBn_ACTLR.CPRE (MMU-500 errata 841119, 826419).
    pub disable_prefetch: bool,
    /// Set sACR.S2CRB_TLBEN and SMTNMB_TLBEN (MMU-500, as Linux does).
    pub bypass_tlb_enable: bool,
}

/// MMU-500's sACR.CACHE_LOCK.
pub const ACR_CACHE_LOCK: u32 = 1 << 26;
/// MMU-500's sACR.S2CRB_TLBEN.
pub const ACR_S2CRB_TLBEN: u32 = 1 << 10;
/// MMU-500's sACR.SMTNMB_TLBEN.
pub const ACR_SMTNMB_TLBEN: u32 = 1 << 8;
/// MMU-500's CBn_ACTLR.CPRE.
pub const ACTLR_CPRE: u32 = 1 << 1;

/// The errata of `implementation` at revision `idr7` (SMMU_IDR7).
pub fn for_revision(implementation: Implementation, idr7: u32) -> Errata {
    let major = (idr7 >> 4) & 0xf;
    match implementation {
        Implementation::Generic => Errata::default(),
        Implementation::Mmu500 => {
            Errata { clear_cache_lock: major >= 2, disable_prefetch: true, bypass_tlb_enable: true }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_lock_from_r2p0() {
        assert!(!for_revision(Implementation::Mmu500, 0x14).clear_cache_lock);
        assert!(for_revision(Implementation::Mmu500, 0x20).clear_cache_lock);
        assert!(for_revision(Implementation::Mmu500, 0x31).clear_cache_lock);
        assert!(for_revision(Implementation::Mmu500, 0x00).disable_prefetch);
        assert_eq!(for_revision(Implementation::Generic, 0x21), Errata::default());
    }
}
