//! The `edu` register block in BAR0 (QEMU docs/specs/edu.rst, hw/misc/edu.c).

use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! [
    u64,
    /// DMA command register (offset 0x98).
    pub DMA_CMD [
        /// Start the transfer; cleared by the device when it completes.
        START OFFSET(0) NUMBITS(1) [],
        /// 0: RAM to device (read from the bus address); 1: device to RAM.
        DIRECTION OFFSET(1) NUMBITS(1) [ FromRam = 0, ToRam = 1 ],
        /// Raise an interrupt when done.
        IRQ OFFSET(2) NUMBITS(1) [],
    ],
];

register_structs! {
    /// The BAR0 registers used by this driver.
    pub EduRegisters {
        (0x00 => pub ident: ReadOnly<u32>),
        (0x04 => pub liveness: ReadWrite<u32>),
        (0x08 => pub factorial: ReadWrite<u32>),
        (0x0c => _reserved0),
        (0x20 => pub status: ReadWrite<u32>),
        (0x24 => pub irq_status: ReadOnly<u32>),
        (0x28 => _reserved1),
        (0x60 => pub irq_raise: ReadWrite<u32>),
        (0x64 => pub irq_ack: ReadWrite<u32>),
        (0x68 => _reserved2),
        (0x80 => pub dma_src: ReadWrite<u64>),
        (0x88 => pub dma_dst: ReadWrite<u64>),
        (0x90 => pub dma_count: ReadWrite<u64>),
        (0x98 => pub dma_cmd: ReadWrite<u64, DMA_CMD::Register>),
        (0xa0 => @END),
    }
}

/// Offset in BAR0 of the device's DMA buffer, as the DMA engine addresses it.
pub const DMA_BUFFER_OFFSET: usize = 0x40000;
/// Size of the device's DMA buffer.
pub const DMA_BUFFER_SIZE: usize = 4096;
/// Size of BAR0.
pub const BAR0_SIZE: u64 = 1 << 20;
