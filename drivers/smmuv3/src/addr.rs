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

impl PhysAddr {
    /// True if the address is a multiple of `align` (a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
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
