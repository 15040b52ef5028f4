//! Ordering between this CPU's stores to memory the SMMU reads (tables, queues) and the
//! SMMU's observation of them. For a coherent SMMU (`Coherency::Coherent`) barriers
//! suffice; for one that is not, the driver also cleans and invalidates
//! (`coherency::CacheOps`, each call complete when it returns), and these barriers still
//! order the stores before the cleans and the cleans before the register writes.

/// Make earlier stores to DMA-visible memory observable by the SMMU before later stores
/// to DMA-visible memory (Linux's `dma_wmb`).
#[inline(always)]
pub fn dma_wmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a DMB has no effect on memory or registers other than ordering.
    unsafe {
        core::arch::asm!("dmb oshst", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Complete earlier stores to memory before a later MMIO write (such as a queue's PROD
/// register) can reach the SMMU (Linux's `wmb` inside `writel`).
#[inline(always)]
pub fn wmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a DSB has no effect on memory or registers other than ordering.
    unsafe {
        core::arch::asm!("dsb st", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Complete earlier reads and writes of memory before later accesses, MMIO included: for
/// handing queue slots back to the SMMU (a CONS write) only once the records in them have
/// been read (Linux's `mb`).
#[inline(always)]
pub fn mb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a DSB has no effect on memory or registers other than ordering.
    unsafe {
        core::arch::asm!("dsb sy", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Order an MMIO read (such as a queue's PROD register) before later reads of the memory
/// it announces (Linux's `rmb` after `readl`).
#[inline(always)]
pub fn rmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a DSB has no effect on memory or registers other than ordering.
    unsafe {
        core::arch::asm!("dsb ld", options(nostack, preserves_flags));
    }
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
