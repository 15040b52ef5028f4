//! Access to the SMMU's registers, behind one trait so that the same driver code runs
//! against the real register file and against the host model used in tests.
//!
//! Offsets come from the `register_structs!` declarations in `device.rs`, so the layout
//! is written once and checked at compile time.

use core::mem::offset_of;
use core::ptr::NonNull;

use crate::device::{Page0, Page1, Registers};

/// 32- and 64-bit register accesses at byte offsets into the SMMU's register file.
pub trait Mmio {
    /// Read the 32-bit register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Write the 32-bit register at `offset`.
    fn write32(&self, offset: usize, value: u32);
    /// Read the 64-bit register at `offset`.
    fn read64(&self, offset: usize) -> u64;
    /// Write the 64-bit register at `offset`.
    fn write64(&self, offset: usize, value: u64);
}

/// A shared reference reaches the same registers: what lets a test keep the host model
/// after handing it to `Smmu::init`, and look at what an `init` that failed left in it.
impl<T: Mmio + ?Sized> Mmio for &T {
    fn read32(&self, offset: usize) -> u32 {
        (**self).read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        (**self).write32(offset, value)
    }
    fn read64(&self, offset: usize) -> u64 {
        (**self).read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        (**self).write64(offset, value)
    }
}

/// Register offsets, named as in the spec.
#[allow(missing_docs)]
pub mod reg {
    use super::*;
    pub const IDR0: usize = offset_of!(Page0, idr0);
    pub const IDR1: usize = offset_of!(Page0, idr1);
    pub const IDR2: usize = offset_of!(Page0, idr2);
    pub const IDR3: usize = offset_of!(Page0, idr3);
    pub const IDR4: usize = offset_of!(Page0, idr4);
    pub const IDR5: usize = offset_of!(Page0, idr5);
    pub const IIDR: usize = offset_of!(Page0, iidr);
    pub const AIDR: usize = offset_of!(Page0, aidr);
    pub const CR0: usize = offset_of!(Page0, cr0);
    pub const CR0ACK: usize = offset_of!(Page0, cr0ack);
    pub const CR1: usize = offset_of!(Page0, cr1);
    pub const CR2: usize = offset_of!(Page0, cr2);
    pub const GBPA: usize = offset_of!(Page0, gbpa);
    pub const IRQ_CTRL: usize = offset_of!(Page0, irq_ctrl);
    pub const IRQ_CTRLACK: usize = offset_of!(Page0, irq_ctrlack);
    pub const GERROR: usize = offset_of!(Page0, gerror);
    pub const GERRORN: usize = offset_of!(Page0, gerrorn);
    pub const GERROR_IRQ_CFG0: usize = offset_of!(Page0, gerror_irq_cfg0);
    pub const STRTAB_BASE: usize = offset_of!(Page0, strtab_base);
    pub const STRTAB_BASE_CFG: usize = offset_of!(Page0, strtab_base_cfg);
    pub const CMDQ_BASE: usize = offset_of!(Page0, cmdq_base);
    pub const CMDQ_PROD: usize = offset_of!(Page0, cmdq_prod);
    pub const CMDQ_CONS: usize = offset_of!(Page0, cmdq_cons);
    pub const EVENTQ_BASE: usize = offset_of!(Page0, eventq_base);
    pub const EVENTQ_IRQ_CFG0: usize = offset_of!(Page0, eventq_irq_cfg0);
    pub const PRIQ_IRQ_CFG0: usize = offset_of!(Page0, priq_irq_cfg0);
    pub const EVENTQ_PROD: usize = offset_of!(Registers, page1) + offset_of!(Page1, eventq_prod);
    pub const EVENTQ_CONS: usize = offset_of!(Registers, page1) + offset_of!(Page1, eventq_cons);
}

/// The real register file, mapped as Device memory.
#[derive(Debug)]
pub struct MmioRegisters {
    base: NonNull<Registers>,
}

// SAFETY: the registers are device memory owned by whoever holds this value; moving it
// between threads moves that ownership.
unsafe impl Send for MmioRegisters {}

impl MmioRegisters {
    /// # Safety
    /// `base` must be the virtual address of the SMMU's register file (both 64 KiB pages,
    /// `device::REGISTER_SPAN` bytes), mapped as Device memory, and nothing else may
    /// access those registers while this value lives.
    pub unsafe fn new(base: NonNull<u8>) -> Self {
        Self { base: base.cast() }
    }

    fn ptr<T>(&self, offset: usize) -> *mut T {
        debug_assert!(offset + core::mem::size_of::<T>() <= crate::device::REGISTER_SPAN);
        // SAFETY: every offset the driver uses comes from `reg`, inside the register file.
        unsafe { self.base.cast::<u8>().as_ptr().add(offset).cast() }
    }
}

impl Mmio for MmioRegisters {
    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: an aligned register inside the mapped register file (`new`'s contract).
        unsafe { self.ptr::<u32>(offset).read_volatile() }
    }
    fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as for `read32`.
        unsafe { self.ptr::<u32>(offset).write_volatile(value) }
    }
    fn read64(&self, offset: usize) -> u64 {
        // SAFETY: as for `read32`; 64-bit registers are 8-byte aligned.
        unsafe { self.ptr::<u64>(offset).read_volatile() }
    }
    fn write64(&self, offset: usize, value: u64) {
        // SAFETY: as for `read64`.
        unsafe { self.ptr::<u64>(offset).write_volatile(value) }
    }
}

#[cfg(test)]
mod tests {
    use super::reg::*;

    /// Offsets from IHI 0070 6.2, table 6-1 and 6-2.
    #[test]
    fn offsets_match_the_spec() {
        assert_eq!(IDR5, 0x14);
        assert_eq!(CR0, 0x20);
        assert_eq!(GBPA, 0x44);
        assert_eq!(IRQ_CTRL, 0x50);
        assert_eq!(GERROR, 0x60);
        assert_eq!(STRTAB_BASE, 0x80);
        assert_eq!(STRTAB_BASE_CFG, 0x88);
        assert_eq!(CMDQ_BASE, 0x90);
        assert_eq!(CMDQ_PROD, 0x98);
        assert_eq!(CMDQ_CONS, 0x9c);
        assert_eq!(EVENTQ_BASE, 0xa0);
        assert_eq!(EVENTQ_PROD, 0x100a8);
        assert_eq!(EVENTQ_CONS, 0x100ac);
        assert_eq!(crate::device::REGISTER_SPAN, 0x20000);
    }
}
