//! The GICv3 and the IRQ path: interrupts are counted per INTID by the exception handler,
//! and the test waits for a count to move.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};

/// Interrupts taken, per INTID (only the first 256 are counted).
static COUNTS: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];

/// Bring up the distributor and this core's redistributor and CPU interface, and unmask
/// IRQs at the core.
///
/// # Safety
/// `gicd` and `gicr` must be the GIC's registers, mapped as Device memory, used by
/// nothing else.
pub unsafe fn init(gicd: usize, gicr: usize) -> GicV3<'static> {
    // SAFETY: the caller vouches for the mappings.
    let mut gic = unsafe {
        GicV3::new(
            UniqueMmioPointer::new(NonNull::new(gicd as *mut Gicd).unwrap()),
            NonNull::new(gicr as *mut GicrSgi).unwrap(),
            1,
        )
    }
    .expect("GICv3 redistributor");
    gic.setup(0);
    GicCpuInterface::set_priority_mask(0xff);
    arm_gic::irq_enable();
    gic
}

/// Enable an SPI, edge-triggered (QEMU's SMMU pulses its lines).
pub fn enable_spi(gic: &mut GicV3, intid: u32) {
    let id = IntId::spi(intid - 32);
    gic.set_interrupt_priority(id, None, 0x80).unwrap();
    gic.set_trigger(id, None, Trigger::Edge).unwrap();
    gic.enable_interrupt(id, None, true).unwrap();
}

/// Called from the IRQ exception: acknowledge, count, end.
pub fn handle_irq() {
    GicCpuInterface::handle_interrupt(InterruptGroup::Group1, |id| {
        let n = u32::from(id) as usize;
        if let Some(c) = COUNTS.get(n) {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
}

/// Interrupts taken so far on `intid`.
pub fn count(intid: u32) -> u32 {
    COUNTS.get(intid as usize).map(|c| c.load(Ordering::SeqCst)).unwrap_or(0)
}

/// Wait (bounded) until `intid` has been taken more than `seen` times.
pub fn wait_for(intid: u32, seen: u32, polls: u32) -> bool {
    for _ in 0..polls {
        if count(intid) > seen {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}
