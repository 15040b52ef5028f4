//! An Arm SMMUv2 driver (Arm IHI 0062D) as Arm's CoreLink MMU-500 implements it (Arm
//! DDI 0517), for the IOMMU protection domain on the boards Microkit supports with an
//! SMMU (ZynqMP: zcu102, ultra96v2, kria_k26; i.MX8QXP: tqma8xqp1gb).
//!
//! What it is for: a DMA-capable device reaches only what its domain maps. From the
//! first register write of `Smmu::init` on, every write only narrows what devices reach,
//! and once `init` returns every client transaction faults (sCR0.CLIENTPD = 0,
//! USFCFG = 1, every SMR invalid, every S2CR of type fault) until `attach` routes a
//! stream to a domain. Everything that removes access (unmap, detach, destroying a
//! domain) returns only after the SMMU confirmed the TLB invalidation (TLBSYNC with
//! TLBSTATUS.SACTIVE clear), or returns an error and marks the domain stale.
//!
//! What it must never do: allocate (the table pool is handed in), panic on a value read
//! from the hardware or a caller's request, hang (every wait is bounded by
//! `Config::poll_limit`), route a stream to a context bank that is not fully programmed,
//! or program two SMRs that can match the same StreamID (a stream-match conflict is
//! UNPREDICTABLE, IHI 0062D 2.4: the driver refuses it as `Error::SmrConflict`).
//!
//! **Few context banks and SMRs.** A domain is a stage-1 context bank: MMU-500 has up
//! to 128, ZynqMP's has 16, i.MX8QXP's 32 (see `model`'s profiles for the sources), and
//! the banks below IDR1.NUMS2CB are stage-2 only. The last bank is no domain's: `init`
//! makes it the sink that `block` routes streams to, where their transactions fault
//! without an interrupt (`Smmu::sink_bank`), so domains get `Features::domain_banks`. A stream is attached through one
//! stream mapping register group (SMR + S2CR): ZynqMP's MMU-500 has 48. The service
//! gives each device a domain of its own, so a description with more devices than
//! stage-1 banks, or more StreamID patterns than SMRs, cannot be served: `create_domain`
//! returns `Error::ContextBanksExhausted` and `attach` `Error::SmrsExhausted`, changing
//! nothing. Nothing is shared behind the description's back (two devices in one bank
//! would reach each other's memory). The remedy belongs to the build-time tool: refuse
//! such a description with the count (this driver's limits are `Features::stage1_banks`
//! and `Features::num_smrg`), or have the description group a device's StreamIDs with
//! `attach_masked`, one SMR for a group the SoC numbers contiguously (ZynqMP's TBU bits;
//! i.MX8's SCU-assigned IDs under a mask such as 0x7f80).
//!
//! **Page tables are the SMMUv3 driver's.** `smmuv3::pagetable` (VMSAv8-64 stage 1,
//! 4 KiB granule, fixed table pool, every refusal leaving the tables untouched) is
//! public and depends on nothing SMMUv3-specific but the MAIR indices, which SMMUv2's
//! CBn_MAIR0/1 take as they are. This crate depends on `smmuv3` as a library, as
//! `smmuv3-service` does, rather than copying the code or moving it into a third crate
//! while others work on the SMMUv3 driver: one definition of the descriptor format,
//! already tested bit for bit against `aarch64-paging`. The cost is linking an SMMUv3
//! driver nobody calls into an SMMUv2 image (dead code the linker drops). Factoring
//! `pagetable`, `addr`, `barrier` and `Mmio` into a `drivers/vmsa` crate is the clean
//! follow-up once both backends exist.
//!
//! The registers sit behind `smmuv3::Mmio`: `mmio::MmioRegisters` is the real register
//! file; `model::Mmu500Model` (feature `model`) is a strict host model.
//!
//! # A first bring-up on a real zcu102 must check
//! 1. IDR0/1/2/7 against the profile (`model::ZYNQMP`): SMR groups, 16 context banks,
//!    stage-2-only banks, CTTW, address sizes, revision (several profile values are
//!    assumed, and marked so).
//! 2. Coherence: neither SoC's device tree says `dma-coherent`, so the IOMMU PD gives
//!    `Config::platform_coherent = false` and the driver cleans every table write to
//!    the PoC and walks Non-cacheable (`Coherency`, as the SMMUv3 driver); check that
//!    `dc cvac` at EL0 works on the board's seL4 and that DMA after an unmap faults. If
//!    a board is coherent after all (its SMMU node `dma-coherent`, seL4 with SMP),
//!    IDR0.CTTW must read 1 for the cheaper path.
//! 3. That the SMMU is in the DMA path at all (firmware and the TBU enables decide it):
//!    a real GDMA access to an unmapped address must fault.
//! 4. What the Non-secure view allows: if Secure firmware keeps sACR.CACHE_LOCK set,
//!    `prefetch_disabled()` is false and the errata workaround is missing.
//! 5. That 64-bit register accesses (TTBR0, TLBI, FAR) work on this interconnect.
//! 6. That TLBSYNC completes within the poll bound at real speed, and that DMA after an
//!    unmap faults (the per-ASID invalidation works). After a timeout the driver writes
//!    nothing more to that bank (no TLBI, no TLBSYNC) until TLBSTATUS.SACTIVE reads 0,
//!    polling again on every call for the stale domain (`Smmu::sync_idle`): what a
//!    TLBSYNC written over a running one does was not found in a source here, and a
//!    vendor tree of Linux (Qualcomm's `__arm_smmu_tlb_sync`) saw a TBU's queue fill and
//!    the next sync write stall the CPU. Check that a poll of SACTIVE cannot stall too.
//! 7. That TLB entries firmware left in bypass are dropped by `init`'s full invalidation.
//! 8. The GDMA StreamIDs (0x14e8 and up, `zynqmp.dtsi`): their faults name the StreamID,
//!    and an unattached channel raises a global unmatched-stream fault.
//! 9. The interrupts: one global and the context interrupts on shared SPI 155, each
//!    handled by `drain_faults`.
//! 10. The sink (`Smmu::sink_bank`): a blocked GDMA channel's transfer must abort, be
//!     recorded in the sink's FSR and raise no interrupt; that TCR.EPD0 and EPD1 are
//!     honoured (the sink has no table: a walk would read TTBR0's or TTBR1's address
//!     0), an address with bit 48 set included (TTBR1's range under TCR2.SEP).
//! 11. That a device on a StreamID no SMR matches raises the global interrupt once, and
//!     no more while it keeps sending (`Smmu::drain_faults` clears sCR0.GFIE), and that
//!     the line is level-triggered as the device tree says; that a fault arriving
//!     while sGFSR holds one sets MULTI alone and leaves the syndrome registers as they
//!     were (`GlobalFault::decode` then records nothing), and that the IOMMU PD's timer
//!     poll while GFIE is off (`global_interrupt_paced`) turns it on again.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// The register macros generate items that cannot carry doc comments.
#[allow(missing_docs)]
pub mod cb;
pub mod errata;
pub mod fault;
#[allow(missing_docs)]
pub mod gr0;
#[allow(missing_docs)]
pub mod gr1;
pub mod mmio;
#[cfg(any(test, feature = "model"))]
pub mod model;
pub mod probe;

mod driver;

pub use driver::*;
pub use errata::Implementation;
pub use fault::{ContextFault, ContextFaultKind, Fault, GlobalFault, GlobalFaultKind};
pub use probe::{Features, Unsupported};
pub use smmuv3::pagetable::{Leaf, MemType, PageTableError, Perm};
pub use smmuv3::{Access, Asid, DmaRegion, Iova, PhysAddr, StreamId};
