//! The Arm generic timer's physical count, read at user level: seL4 exports CNTPCT_EL0
//! to EL0 on Microkit's Arm boards (`KernelArmExportPCNTUser`). For time stamps (fault
//! storm windows) and measurements; and the EL1 physical timer, for a PD given its
//! interrupt (the IOMMU PD polls an SMMU whose interrupts are not wired to it).
#![no_std]

/// The count now.
pub fn ticks() -> u64 {
    let v: u64;
    // SAFETY: reads a system register the kernel exports to EL0; no memory is touched.
    // The ISB keeps the read from being taken before earlier instructions complete, so a
    // measurement does not start or end early.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Ticks per second (CNTFRQ_EL0, set by firmware).
pub fn hz() -> u64 {
    let v: u64;
    // SAFETY: as in `ticks`.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// `us` microseconds in ticks, saturating.
pub fn ticks_from_us(us: u64) -> u64 {
    (u128::from(us) * u128::from(hz()) / 1_000_000).min(u128::from(u64::MAX)) as u64
}

/// `ticks` in milliseconds.
pub fn ms(ticks: u64) -> u64 {
    (u128::from(ticks) * 1000 / u128::from(hz().max(1))) as u64
}

/// The EL1 physical timer, programmed at user level. Only a PD whose kernel exports
/// CNTP_CVAL_EL0 and CNTP_CTL_EL0 to EL0 holds one: the SDK builds that kernel option
/// (`KernelArmExportPTMRUser`) for qemu_virt_aarch64 only; elsewhere a write traps and the
/// PD faults, so the registers are reachable only through a value whose making is
/// `unsafe` (the caller vouches for the kernel), not through free functions anyone can
/// call on any board. The kernel itself uses the hypervisor timer, so this one is the
/// PD's that has its IRQ (PPI 30).
pub struct PhysicalTimer(());

impl PhysicalTimer {
    /// # Safety
    /// The kernel this runs on exports the EL1 physical timer to EL0
    /// (`CONFIG_EXPORT_PTMR_USER`).
    pub const unsafe fn exported() -> Self {
        Self(())
    }

    /// Raise the timer's interrupt once the count reaches `at`, and keep it raised until
    /// `stop` or another deadline. A deadline already past raises it at once.
    pub fn set_deadline(&self, at: u64) {
        // SAFETY: writes the EL0-accessible physical timer registers (exported, as this
        // value's making vouched); no memory is touched. ENABLE = 1, IMASK = 0.
        unsafe {
            core::arch::asm!("msr cntp_cval_el0, {}", "msr cntp_ctl_el0, {}", "isb", in(reg) at, in(reg) 1u64, options(nomem, nostack))
        };
    }

    /// No more timer interrupts (ENABLE = 0), until the next `set_deadline`.
    pub fn stop(&self) {
        // SAFETY: as in `set_deadline`.
        unsafe { core::arch::asm!("msr cntp_ctl_el0, {}", "isb", in(reg) 0u64, options(nomem, nostack)) };
    }
}
