//! Whether the SMMU sees what this CPU writes without help, and the cache maintenance
//! that makes it see it when it does not.
//!
//! The SMMU's accesses to its stream table, CDs, page tables and queues are coherent
//! with the CPUs' caches only if three things hold:
//! - the SMMU says it can make them coherent: SMMU_IDR0.COHACC = 1 (IHI 0070 6.3.1);
//! - the platform wires it that way: the board's device tree marks the SMMU node
//!   `dma-coherent` (an IORT node's COHACC override on ACPI systems), which Linux trusts
//!   over IDR0 when the two disagree (`arm_smmu_device_hw_probe`);
//! - the CPU maps that memory Inner Shareable, as the SMMU's walks are (SMMU_CR1
//!   TABLE_SH/QUEUE_SH, STE.S1CSH, CD.SH0). seL4 maps cacheable user pages Non-shareable
//!   on a kernel without SMP support (Microkit's `debug` and `release`): accesses with
//!   mismatched shareability are not kept coherent by hardware (Arm ARM, "Mismatched
//!   memory attributes"), so software must clean and invalidate.
//!
//! When any of the three fails, the driver is `NonCoherent`: it programs Non-cacheable
//! table and queue accesses (SMMU_CR1 TABLE_IC/OC and QUEUE_IC/OC = Non-cacheable, STE
//! S1CIR/S1COR and CD IR0/OR0 likewise, SH Outer Shareable, which is what the Arm ARM
//! makes of Normal Inner and Outer Non-cacheable memory whatever SH says), so every SMMU
//! access goes to the point of coherency (PoC); it cleans every line it wrote that the
//! SMMU will read to the PoC before telling the SMMU to read it (before the CMDQ_PROD
//! write that announces a command, and so before the CFGI or TLBI and CMD_SYNC that make
//! the SMMU read an STE, CD or page-table entry again), and cleans and invalidates event
//! records before reading them. Per IHI 0070 6.3.1, COHACC = 0 means the SMMU's accesses
//! to tables and queues are not coherent with the PEs' caches, and SMMU_CR1 (6.3.11)
//! only sets the attributes those accesses carry: neither makes up for a missing clean.

use core::fmt;
use core::ptr::NonNull;

/// How the SMMU's own accesses relate to this CPU's caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coherency {
    /// Table walks and queue accesses snoop this CPU's caches: barriers are enough.
    Coherent,
    /// They do not: every write the SMMU reads is cleaned to the PoC, every record it
    /// writes is invalidated before it is read, and its accesses are Non-cacheable.
    NonCoherent,
}

impl Coherency {
    /// Coherent only if SMMU_IDR0.COHACC says so AND the platform does (its device tree
    /// or board table, and the CPU mapping memory shareable): either one saying no is
    /// enough to need cache maintenance.
    pub const fn of(cohacc: bool, platform_coherent: bool) -> Self {
        if cohacc && platform_coherent {
            Coherency::Coherent
        } else {
            Coherency::NonCoherent
        }
    }
}

/// Data-cache maintenance by virtual address, to the point of coherency (Arm ARM, "Data
/// cache maintenance instructions").
/// Each call is complete (its effect visible to the SMMU) when it returns.
pub trait CacheOps: Sync {
    /// Write back every dirty line overlapping `[va, va + len)` to the PoC (`DC CVAC`),
    /// then wait for it (`DSB`).
    fn clean(&self, va: NonNull<u8>, len: usize);
    /// Make every line overlapping `[va, va + len)` be read again from the PoC: `DC
    /// CIVAC` (EL0 may not use `DC IVAC`; a line the CPU has not written since it was
    /// last cleaned is clean, so CIVAC writes nothing back), then `DSB`.
    fn invalidate(&self, va: NonNull<u8>, len: usize);
}

impl fmt::Debug for dyn CacheOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheOps")
    }
}

/// The CPU's own cache maintenance instructions, usable at EL0 when the kernel lets it
/// (SCTLR_EL1.UCI = 1 for `DC CVAC` and `DC CIVAC`, SCTLR_EL1.UCT = 1 for `CTR_EL0`;
/// seL4 sets both for native threads when built with `AARCH64_USER_CACHE_ENABLE`, the
/// Microkit SDK's setting).
#[cfg(target_arch = "aarch64")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ArmCacheOps;

#[cfg(target_arch = "aarch64")]
impl ArmCacheOps {
    /// The smallest data cache line of any cache this CPU has (CTR_EL0.DminLine, log2 of
    /// words): stepping by it reaches every line.
    fn line() -> usize {
        let ctr: u64;
        // SAFETY: reading CTR_EL0 has no side effects (EL0 may read it when UCT = 1).
        unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
        4 << ((ctr >> 16) & 0xf)
    }
}

#[cfg(target_arch = "aarch64")]
impl CacheOps for ArmCacheOps {
    fn clean(&self, va: NonNull<u8>, len: usize) {
        let line = Self::line();
        let start = va.as_ptr() as usize & !(line - 1);
        let end = va.as_ptr() as usize + len;
        let mut p = start;
        while p < end {
            // SAFETY: DC CVAC writes a line back; it changes no value any program reads.
            unsafe { core::arch::asm!("dc cvac, {}", in(reg) p, options(nostack, preserves_flags)) };
            p += line;
        }
        // SAFETY: a DSB only orders; it completes the cleans before any later access.
        unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
    }

    fn invalidate(&self, va: NonNull<u8>, len: usize) {
        let line = Self::line();
        let start = va.as_ptr() as usize & !(line - 1);
        let end = va.as_ptr() as usize + len;
        let mut p = start;
        while p < end {
            // SAFETY: DC CIVAC writes back a dirty line and drops it; the driver has not
            // written the event queue since it cleaned it, so no value the SMMU wrote is
            // overwritten.
            unsafe { core::arch::asm!("dc civac, {}", in(reg) p, options(nostack, preserves_flags)) };
            p += line;
        }
        // SAFETY: as in `clean`.
        unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
    }
}

/// The maintenance the driver does: none when the SMMU is coherent, the system's
/// `CacheOps` when it is not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Maintenance(Option<&'static dyn CacheOps>);

impl Maintenance {
    /// For `coherency`, with the system's operations (`None` only if coherent: `init`
    /// refuses a non-coherent SMMU without them).
    pub fn new(coherency: Coherency, ops: Option<&'static dyn CacheOps>) -> Self {
        match coherency {
            Coherency::Coherent => Maintenance(None),
            Coherency::NonCoherent => Maintenance(ops),
        }
    }

    /// Clean `len` bytes at `p` to the PoC, if the SMMU does not snoop them.
    pub(crate) fn clean<T>(&self, p: NonNull<T>, len: usize) {
        if let Some(ops) = self.0 {
            ops.clean(p.cast(), len);
        }
    }

    /// Have the next read of `len` bytes at `p` come from the PoC, if the SMMU's writes
    /// bypass this CPU's caches.
    pub(crate) fn invalidate<T>(&self, p: NonNull<T>, len: usize) {
        if let Some(ops) = self.0 {
            ops.invalidate(p.cast(), len);
        }
    }
}
