//! Newtypes for the identifiers and addresses the driver handles, so that a stream ID
//! can never be passed where an ASID is expected, or an IOVA where a physical address is.

use core::fmt;

macro_rules! newtype {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

newtype!(
    /// A physical (output) address, as the SMMU emits it to the memory system.
    PhysAddr(u64)
);
newtype!(
    /// An I/O virtual address: the bus address a device puts on the wire.
    Iova(u64)
);
newtype!(
    /// A StreamID: which device (for PCI, which requester ID) issued a transaction.
    StreamId(u32)
);
newtype!(
    /// An address-space identifier tagging one translation context's TLB entries.
    Asid(u16)
);
newtype!(
    /// A virtual-machine identifier tagging one stage-2 address space's TLB entries.
    Vmid(u16)
);

impl PhysAddr {
    /// True if the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }
}

impl StreamId {
    /// The highest StreamID `bits` wide (0 to 32; wider is taken as 32): what a stream
    /// table for `bits`-bit StreamIDs covers last. Shifted down from all ones, since
    /// `(1 << bits) - 1` overflows a `u32` at 32 bits, a width SIDSIZE allows.
    pub const fn highest(bits: u32) -> StreamId {
        if bits == 0 {
            return StreamId(0);
        }
        let bits = if bits > 32 { 32 } else { bits };
        StreamId(u32::MAX >> (32 - bits))
    }
}

impl Iova {
    /// True if the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }
}

/// A piece of memory the driver owns for the SMMU to read or write (tables, queues):
/// where the SMMU sees it (`pa`) and where this CPU sees it (`va`).
#[derive(Debug, Clone, Copy)]
pub struct DmaRegion {
    /// Physical address of the first byte, as the SMMU will fetch it.
    pub pa: PhysAddr,
    /// The same memory as mapped for this program (cacheable, coherent with the SMMU).
    pub va: core::ptr::NonNull<u8>,
    /// Length in bytes.
    pub len: usize,
}

impl DmaRegion {
    /// The sub-region `[offset, offset + len)`, or `None` if it is not inside `self`.
    pub fn slice(&self, offset: usize, len: usize) -> Option<DmaRegion> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        Some(DmaRegion {
            pa: PhysAddr(self.pa.0 + offset as u64),
            // SAFETY: `offset <= self.len`, so the result stays inside (or one past) the
            // allocation `va` points into, and a non-null pointer plus an in-bounds offset
            // is non-null.
            va: unsafe { self.va.add(offset) },
            len,
        })
    }

    /// True if `[pa, pa + len)` intersects this region's physical range.
    pub fn overlaps(&self, pa: PhysAddr, len: u64) -> bool {
        let start = self.pa.0;
        let end = start + self.len as u64;
        pa.0 < end && pa.0.saturating_add(len) > start
    }
}

#[cfg(test)]
mod tests {
    use super::StreamId;

    /// Every width a description may ask for, 32 bits included (SMMU_IDR1.SIDSIZE goes
    /// to 32, and MMU-700 has 32): `1u32 << 32` overflows.
    #[test]
    fn the_highest_stream_id_of_every_width() {
        assert_eq!(StreamId::highest(0), StreamId(0));
        assert_eq!(StreamId::highest(1), StreamId(1));
        assert_eq!(StreamId::highest(16), StreamId(0xffff));
        assert_eq!(StreamId::highest(31), StreamId(0x7fff_ffff));
        assert_eq!(StreamId::highest(32), StreamId(u32::MAX));
        // The IOMMU PD's search for a StreamID no device has, from the top of the table.
        let devices = [u32::MAX, u32::MAX - 1];
        let unnamed = (0..=StreamId::highest(32).0).rev().find(|s| !devices.contains(s));
        assert_eq!(unnamed, Some(u32::MAX - 2));
    }
}
