//! A driver for QEMU's `edu` PCI device (vendor 0x1234, device 0x11e8).
//!
//! What it is for: a device that really does DMA, so that an IOMMU can be tested against
//! a hardware model nobody here wrote. The device copies between its 4 KiB internal
//! buffer and any bus address (clamped to its `dma_mask` property, 28 bits unless set).
//! The buffer is not visible through MMIO (edu's MMIO handlers only decode the
//! registers, and reject accesses narrower than 32 bits), so data goes in and out of it
//! only by DMA.
//!
//! What it must never do: hang. Every wait for the device is bounded.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

// The register macros generate items that cannot carry doc comments.
#[allow(missing_docs)]
pub mod device;

use core::ptr::NonNull;

use device::{EduRegisters, DMA_BUFFER_OFFSET, DMA_BUFFER_SIZE, DMA_CMD};
use tock_registers::interfaces::{Readable, Writeable};

/// The value of the identification register: "edu" version 1.0 (0x010000ed).
pub const IDENT_MAGIC: u32 = 0xed;

/// Errors from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The identification register does not read as an edu device.
    NotEdu(u32),
    /// The liveness register did not invert what was written.
    NotAlive,
    /// The range does not fit in the device's 4 KiB buffer.
    OutOfBuffer,
    /// The DMA did not complete within the poll bound.
    Timeout,
}

/// One edu device.
#[derive(Debug)]
pub struct Edu {
    regs: NonNull<EduRegisters>,
}

// SAFETY: the driver owns the device's BAR exclusively (by `new`'s contract).
unsafe impl Send for Edu {}

impl Edu {
    /// # Safety
    /// `bar0` must be the virtual address of the device's BAR0 (1 MiB), mapped as Device
    /// memory, with memory decoding enabled, and used by nothing else.
    pub unsafe fn new(bar0: NonNull<u8>) -> Self {
        Self { regs: bar0.cast() }
    }

    fn regs(&self) -> &EduRegisters {
        // SAFETY: `new`'s contract: BAR0 is mapped and ours.
        unsafe { self.regs.as_ref() }
    }

    /// Check the identification register and that the device answers.
    pub fn probe(&self) -> Result<u32, Error> {
        let ident = self.regs().ident.get();
        if ident & 0xff != IDENT_MAGIC {
            return Err(Error::NotEdu(ident));
        }
        self.regs().liveness.set(0x1234_5678);
        if self.regs().liveness.get() != !0x1234_5678 {
            return Err(Error::NotAlive);
        }
        Ok(ident)
    }

    fn check(offset: usize, len: usize) -> Result<(), Error> {
        match offset.checked_add(len) {
            Some(end) if end <= DMA_BUFFER_SIZE && len > 0 => Ok(()),
            _ => Err(Error::OutOfBuffer),
        }
    }

    /// DMA `len` bytes from bus address `bus` into the device's buffer at `offset`, and
    /// wait (at most `polls` status reads) for the engine to finish.
    pub fn dma_from_ram(&mut self, bus: u64, offset: usize, len: usize, polls: u32) -> Result<(), Error> {
        Self::check(offset, len)?;
        let r = self.regs();
        r.dma_src.set(bus);
        r.dma_dst.set((DMA_BUFFER_OFFSET + offset) as u64);
        r.dma_count.set(len as u64);
        r.dma_cmd.write(DMA_CMD::START::SET + DMA_CMD::DIRECTION::FromRam);
        self.wait(polls)
    }

    /// DMA `len` bytes from the device's buffer at `offset` to bus address `bus`, and wait
    /// (at most `polls` status reads) for the engine to finish.
    pub fn dma_to_ram(&mut self, offset: usize, bus: u64, len: usize, polls: u32) -> Result<(), Error> {
        Self::check(offset, len)?;
        let r = self.regs();
        r.dma_src.set((DMA_BUFFER_OFFSET + offset) as u64);
        r.dma_dst.set(bus);
        r.dma_count.set(len as u64);
        r.dma_cmd.write(DMA_CMD::START::SET + DMA_CMD::DIRECTION::ToRam);
        self.wait(polls)
    }

    fn wait(&self, polls: u32) -> Result<(), Error> {
        for _ in 0..polls {
            if !self.regs().dma_cmd.is_set(DMA_CMD::START) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(Error::Timeout)
    }
}
