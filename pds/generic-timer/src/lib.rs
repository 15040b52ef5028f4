//! The Arm generic timer's physical count, read at user level: seL4 exports CNTPCT_EL0
//! to EL0 on Microkit's Arm boards (`KernelArmExportPCNTUser`). For time stamps (fault
//! storm windows) and measurements; nothing here sets a timer.
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
