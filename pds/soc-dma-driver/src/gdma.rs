//! One channel of ZynqMP's GDMA (the FPD DMA engine, `xlnx,zynqmp-dma-1.0`) in simple
//! mode: the source and destination descriptors are written into the channel's registers,
//! not fetched from memory, so the only memory the engine touches is the two buffers.
//! Register offsets and fields from Xilinx UG1087 (ZDMA_CH_*), as QEMU's model
//! (hw/dma/xlnx-zdma.c) and Linux's driver (drivers/dma/xilinx/zynqmp_dma.c) name them.

use core::ptr::NonNull;

const ISR: usize = 0x100;
const CTRL0: usize = 0x110;
const STATUS: usize = 0x11c;
const DATA_ATTR: usize = 0x120;
const SRC_DSCR_WORD0: usize = 0x128;
const DST_DSCR_WORD0: usize = 0x138;
const TOTAL_BYTE: usize = 0x188;
const CTRL2: usize = 0x200;

/// ZDMA_CH_ISR.DMA_DONE, and the AXI errors a transfer the SMMU aborted raises
/// (AXI_WR_DATA, AXI_RD_DATA: the data access; AXI_RD_*_DSCR: a descriptor's).
const ISR_DMA_DONE: u32 = 1 << 10;
const ISR_AXI_ERRORS: u32 = 0b1111 << 6;
/// Every ISR bit (write-one-to-clear).
const ISR_ALL: u32 = 0xfff;
/// ZDMA_CH_STATUS.STATE: 0b11 is error.
const STATE_ERROR: u32 = 0b11;
/// ZDMA_CH_DATA_ATTR.ARBURST [27:26] and AWBURST [13:12]: 0b01 is INCR.
const BURSTS: u32 = 0b11 << 26 | 0b11 << 12;
const BURSTS_INCR: u32 = 0b01 << 26 | 0b01 << 12;

/// How a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// DMA_DONE, no error; `bytes` moved (ZDMA_CH_TOTAL_BYTE's increase).
    Done { bytes: u32 },
    /// The channel reported an AXI error (a read or write the interconnect, or the SMMU,
    /// refused): ISR and STATUS as read.
    Error { isr: u32, status: u32 },
    /// Neither within the poll bound.
    Timeout,
}

/// A GDMA channel's registers, mapped uncached.
pub struct Channel {
    base: NonNull<u32>,
}

impl Channel {
    /// # Safety
    /// `base` maps the channel's register page, uncached, and nothing else drives it.
    pub unsafe fn new(base: NonNull<u8>) -> Self {
        Self { base: base.cast() }
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: a register of the page `new` was given.
        unsafe { self.base.add(offset / 4).read_volatile() }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as for `read`.
        unsafe { self.base.add(offset / 4).write_volatile(value) }
    }

    /// Copy `len` bytes from bus address `src` to `dst` (IOVAs, translated by the SMMU in
    /// the channel's context bank), and wait for it to end, at most `polls` reads.
    pub fn copy(&mut self, src: u64, dst: u64, len: u32, polls: u32) -> Outcome {
        self.write(CTRL2, 0);
        self.write(ISR, ISR_ALL);
        // Simple (register) mode, read-write, no continuation.
        self.write(CTRL0, 0);
        self.write(DATA_ATTR, (self.read(DATA_ATTR) & !BURSTS) | BURSTS_INCR);
        for (word0, addr) in [(SRC_DSCR_WORD0, src), (DST_DSCR_WORD0, dst)] {
            self.write(word0, addr as u32);
            self.write(word0 + 4, (addr >> 32) as u32);
            self.write(word0 + 8, len);
            // Not coherent, no completion interrupt per descriptor.
            self.write(word0 + 12, 0);
        }
        let before = self.read(TOTAL_BYTE);
        self.write(CTRL2, 1);
        for _ in 0..polls {
            let isr = self.read(ISR);
            let status = self.read(STATUS);
            if isr & ISR_AXI_ERRORS != 0 || status & 0b11 == STATE_ERROR {
                self.write(ISR, ISR_ALL);
                return Outcome::Error { isr, status };
            }
            if isr & ISR_DMA_DONE != 0 {
                self.write(ISR, ISR_ALL);
                return Outcome::Done { bytes: self.read(TOTAL_BYTE).wrapping_sub(before) };
            }
            core::hint::spin_loop();
        }
        self.write(CTRL2, 0);
        Outcome::Timeout
    }
}
