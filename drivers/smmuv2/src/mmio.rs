//! Where each register is: the SMMUv2 register file is 2 x NUMPAGE pages of 4 or 64 KiB
//! (Arm IHI 0062D 8.1, SMMU_IDR1.PAGESIZE and NUMPAGENDXB): global space 0 in page 0,
//! global space 1 in page 1, IMPLEMENTATION DEFINED pages up to NUMPAGE, then one page
//! per context bank. Offsets inside a block come from the `register_structs!` in
//! `gr0.rs`, `gr1.rs` and `cb.rs`, so the layout is written once and checked at compile
//! time; `Layout` adds the page arithmetic.
//!
//! Accesses go through `smmuv3::Mmio` (32- and 64-bit accesses at byte offsets), the
//! trait the SMMUv3 driver uses, so the host model and the real registers are
//! interchangeable.

use core::mem::offset_of;
use core::ptr::NonNull;

use crate::cb::ContextBank;
use crate::gr0::GlobalSpace0;
use crate::gr1::GlobalSpace1;
pub use smmuv3::Mmio;

/// The page geometry read from SMMU_IDR1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// log2 of the register page size: 12 (4 KiB) or 16 (64 KiB), from IDR1.PAGESIZE.
    pub page_shift: u32,
    /// NUMPAGE = 2^(IDR1.NUMPAGENDXB + 1): pages of global space; as many again hold
    /// the context banks.
    pub numpage: usize,
}

impl Layout {
    /// The layout SMMU_IDR1 describes.
    pub const fn from_idr1(idr1: u32) -> Layout {
        let page_shift = if idr1 >> 31 & 1 == 1 { 16 } else { 12 };
        let numpagendxb = (idr1 >> 28) & 0b111;
        Layout { page_shift, numpage: 1 << (numpagendxb + 1) }
    }

    /// Bytes of one register page.
    pub const fn page_size(&self) -> usize {
        1 << self.page_shift
    }

    /// Bytes the whole register file spans (IHI 0062D 8.1: 2 x NUMPAGE pages).
    pub const fn span(&self) -> usize {
        2 * self.numpage * self.page_size()
    }

    /// A register of global space 0.
    pub const fn gr0(&self, offset: usize) -> usize {
        offset
    }

    /// A register of global space 1 (page 1).
    pub const fn gr1(&self, offset: usize) -> usize {
        self.page_size() + offset
    }

    /// A register of context bank `n` (page NUMPAGE + n).
    pub const fn cb(&self, n: usize, offset: usize) -> usize {
        ((self.numpage + n) << self.page_shift) + offset
    }

    /// Which block the byte offset `offset` falls in, and the offset inside it.
    pub const fn decode(&self, offset: usize) -> Block {
        let page = offset >> self.page_shift;
        let inner = offset & (self.page_size() - 1);
        if page == 0 {
            Block::Gr0(inner)
        } else if page == 1 {
            Block::Gr1(inner)
        } else if page < self.numpage {
            Block::ImplementationDefined(offset)
        } else if page < 2 * self.numpage {
            Block::ContextBank(page - self.numpage, inner)
        } else {
            Block::Outside(offset)
        }
    }
}

/// Where a byte offset lands (for the host model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Global space 0, offset inside it.
    Gr0(usize),
    /// Global space 1, offset inside it.
    Gr1(usize),
    /// An IMPLEMENTATION DEFINED page (MMU-500: its TBU and performance registers).
    ImplementationDefined(usize),
    /// Context bank n, offset inside it.
    ContextBank(usize, usize),
    /// Past the register file.
    Outside(usize),
}

/// Offsets inside each block, named as in the spec.
#[allow(missing_docs)]
pub mod reg {
    use super::*;

    pub const SCR0: usize = offset_of!(GlobalSpace0, scr0);
    pub const SACR: usize = offset_of!(GlobalSpace0, sacr);
    pub const IDR0: usize = offset_of!(GlobalSpace0, idr0);
    pub const IDR1: usize = offset_of!(GlobalSpace0, idr1);
    pub const IDR2: usize = offset_of!(GlobalSpace0, idr2);
    pub const IDR7: usize = offset_of!(GlobalSpace0, idr7);
    pub const SGFAR: usize = offset_of!(GlobalSpace0, sgfar);
    pub const SGFSR: usize = offset_of!(GlobalSpace0, sgfsr);
    pub const SGFSYNR0: usize = offset_of!(GlobalSpace0, sgfsynr0);
    pub const SGFSYNR1: usize = offset_of!(GlobalSpace0, sgfsynr1);
    pub const SGFSYNR2: usize = offset_of!(GlobalSpace0, sgfsynr2);
    pub const TLBIALLNSNH: usize = offset_of!(GlobalSpace0, tlbiallnsnh);
    pub const TLBIALLH: usize = offset_of!(GlobalSpace0, tlbiallh);
    pub const STLBGSYNC: usize = offset_of!(GlobalSpace0, stlbgsync);
    pub const STLBGSTATUS: usize = offset_of!(GlobalSpace0, stlbgstatus);
    pub const SMR0: usize = offset_of!(GlobalSpace0, smr);
    pub const S2CR0: usize = offset_of!(GlobalSpace0, s2cr);

    /// SMMU_SMRn.
    pub const fn smr(n: usize) -> usize {
        SMR0 + 4 * n
    }
    /// SMMU_S2CRn.
    pub const fn s2cr(n: usize) -> usize {
        S2CR0 + 4 * n
    }

    pub const CBAR0: usize = offset_of!(GlobalSpace1, cbar);
    pub const CBFRSYNRA0: usize = offset_of!(GlobalSpace1, cbfrsynra);
    pub const CBA2R0: usize = offset_of!(GlobalSpace1, cba2r);

    /// SMMU_CBARn (inside global space 1).
    pub const fn cbar(n: usize) -> usize {
        CBAR0 + 4 * n
    }
    /// SMMU_CBFRSYNRAn (inside global space 1).
    pub const fn cbfrsynra(n: usize) -> usize {
        CBFRSYNRA0 + 4 * n
    }
    /// SMMU_CBA2Rn (inside global space 1).
    pub const fn cba2r(n: usize) -> usize {
        CBA2R0 + 4 * n
    }

    pub const CB_SCTLR: usize = offset_of!(ContextBank, sctlr);
    pub const CB_ACTLR: usize = offset_of!(ContextBank, actlr);
    pub const CB_TCR2: usize = offset_of!(ContextBank, tcr2);
    pub const CB_TTBR0: usize = offset_of!(ContextBank, ttbr0);
    pub const CB_TTBR1: usize = offset_of!(ContextBank, ttbr1);
    pub const CB_TCR: usize = offset_of!(ContextBank, tcr);
    pub const CB_MAIR0: usize = offset_of!(ContextBank, mair0);
    pub const CB_MAIR1: usize = offset_of!(ContextBank, mair1);
    pub const CB_FSR: usize = offset_of!(ContextBank, fsr);
    pub const CB_FAR: usize = offset_of!(ContextBank, far);
    pub const CB_FSYNR0: usize = offset_of!(ContextBank, fsynr0);
    pub const CB_TLBIVA: usize = offset_of!(ContextBank, tlbiva);
    pub const CB_TLBIASID: usize = offset_of!(ContextBank, tlbiasid);
    pub const CB_TLBIVAL: usize = offset_of!(ContextBank, tlbival);
    pub const CB_TLBSYNC: usize = offset_of!(ContextBank, tlbsync);
    pub const CB_TLBSTATUS: usize = offset_of!(ContextBank, tlbstatus);
}

/// The real register file, mapped as Device memory.
#[derive(Debug)]
pub struct MmioRegisters {
    base: NonNull<u8>,
    span: usize,
}

// SAFETY: the registers are device memory owned by whoever holds this value; moving it
// between threads moves that ownership.
unsafe impl Send for MmioRegisters {}

impl MmioRegisters {
    /// # Safety
    /// `base` must be the virtual address of the SMMU's register file, `span` bytes of it
    /// mapped as Device memory (the device tree's `reg` size: 2 x NUMPAGE pages), and
    /// nothing else may access those registers while this value lives.
    pub unsafe fn new(base: NonNull<u8>, span: usize) -> Self {
        Self { base, span }
    }

    /// Bytes mapped.
    pub fn span(&self) -> usize {
        self.span
    }

    /// The register at `offset`, if `size` bytes of it lie inside the mapping and it is
    /// aligned. An access outside is never made: `Smmu::init` refuses a mapping smaller
    /// than the layout IDR1 describes, and this check keeps a wrong offset from becoming
    /// an access to someone else's memory.
    fn ptr<T>(&self, offset: usize) -> Option<*mut T> {
        let size = core::mem::size_of::<T>();
        if offset.checked_add(size)? > self.span || offset % size != 0 {
            return None;
        }
        // SAFETY: `offset + size <= span`, inside the mapping (`new`'s contract).
        Some(unsafe { self.base.as_ptr().add(offset).cast() })
    }
}

impl Mmio for MmioRegisters {
    /// All ones outside the mapping, as an absent device reads: a status bit then reads
    /// "busy" and the wait times out, rather than "done".
    fn read32(&self, offset: usize) -> u32 {
        match self.ptr::<u32>(offset) {
            // SAFETY: an aligned register inside the mapped register file.
            Some(p) => unsafe { p.read_volatile() },
            None => u32::MAX,
        }
    }
    fn write32(&self, offset: usize, value: u32) {
        if let Some(p) = self.ptr::<u32>(offset) {
            // SAFETY: as for `read32`.
            unsafe { p.write_volatile(value) }
        }
    }
    fn read64(&self, offset: usize) -> u64 {
        match self.ptr::<u64>(offset) {
            // SAFETY: as for `read32`; the 64-bit registers are 8-byte aligned.
            Some(p) => unsafe { p.read_volatile() },
            None => u64::MAX,
        }
    }
    fn write64(&self, offset: usize, value: u64) {
        if let Some(p) = self.ptr::<u64>(offset) {
            // SAFETY: as for `read64`.
            unsafe { p.write_volatile(value) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reg::*;
    use super::*;

    /// Offsets from IHI 0062D tables 10-2, 10-3 and 10-4, cross-checked against Linux's
    /// `arm-smmu.h` and seL4's `include/drivers/smmu/smmuv2.h`.
    #[test]
    fn offsets_match_the_spec() {
        assert_eq!(SCR0, 0x0);
        assert_eq!(SACR, 0x10);
        assert_eq!(IDR0, 0x20);
        assert_eq!(IDR7, 0x3c);
        assert_eq!(SGFAR, 0x40);
        assert_eq!(SGFSR, 0x48);
        assert_eq!(SGFSYNR0, 0x50);
        assert_eq!(TLBIALLNSNH, 0x68);
        assert_eq!(STLBGSYNC, 0x70);
        assert_eq!(STLBGSTATUS, 0x74);
        assert_eq!(smr(4), 0x810);
        assert_eq!(s2cr(1), 0xc04);
        assert_eq!(cbar(2), 0x8);
        assert_eq!(cbfrsynra(1), 0x404);
        assert_eq!(cba2r(3), 0x80c);
        assert_eq!(CB_TCR2, 0x10);
        assert_eq!(CB_TTBR0, 0x20);
        assert_eq!(CB_TCR, 0x30);
        assert_eq!(CB_MAIR0, 0x38);
        assert_eq!(CB_FSR, 0x58);
        assert_eq!(CB_FAR, 0x60);
        assert_eq!(CB_FSYNR0, 0x68);
        assert_eq!(CB_TLBIVA, 0x600);
        assert_eq!(CB_TLBIASID, 0x610);
        assert_eq!(CB_TLBIVAL, 0x620);
        assert_eq!(CB_TLBSYNC, 0x7f0);
        assert_eq!(CB_TLBSTATUS, 0x7f4);
    }

    /// ZynqMP: 4 KiB pages, NUMPAGENDXB = 3: 16 pages of global space, context bank 0 at
    /// 64 KiB, 128 KiB in all (the `reg` size of zynqmp.dtsi's SMMU node).
    #[test]
    fn layout_from_idr1() {
        let l = Layout::from_idr1(3 << 28 | 16);
        assert_eq!(l.page_size(), 0x1000);
        assert_eq!(l.numpage, 16);
        assert_eq!(l.span(), 0x20000);
        assert_eq!(l.gr1(0x400), 0x1400);
        assert_eq!(l.cb(2, CB_FSR), 0x12058);
        assert_eq!(l.decode(0x12058), Block::ContextBank(2, 0x58));
        assert_eq!(l.decode(0x3000), Block::ImplementationDefined(0x3000));
        let big = Layout::from_idr1(1 << 31);
        assert_eq!(big.page_size(), 0x10000);
        assert_eq!(big.numpage, 2);
        assert_eq!(big.cb(0, 0), 0x20000);
    }
}
