//! Statically allocated memory: the SMMU's tables and queues, and the buffers the devices
//! DMA to and from. The image runs with an identity map, so a buffer's physical address
//! is its virtual address.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use smmuv3::{DmaRegion, Memory, PhysAddr};

/// A page-aligned block of `N` bytes in .bss.
#[repr(C, align(65536))]
pub struct Block<const N: usize>(UnsafeCell<[u8; N]>);

// SAFETY: the blocks are handed out once each (see `take`) and then owned by one user.
unsafe impl<const N: usize> Sync for Block<N> {}

impl<const N: usize> Block<N> {
    const fn new() -> Self {
        Self(UnsafeCell::new([0; N]))
    }

    /// The block as a DMA region (identity map: PA == VA).
    pub fn region(&'static self) -> DmaRegion {
        let va = NonNull::new(self.0.get().cast::<u8>()).unwrap();
        DmaRegion { pa: PhysAddr(va.as_ptr() as u64), va, len: N }
    }
}

/// 64 KiB: a two-level stream table (level 1 plus three level-2 tables) for 16-bit StreamIDs.
pub static STREAM_TABLE: Block<{ 64 << 10 }> = Block::new();
/// 64 KiB each: command queue (4096 entries) and event queue (2048 records).
pub static CMDQ: Block<{ 64 << 10 }> = Block::new();
pub static EVENTQ: Block<{ 64 << 10 }> = Block::new();
/// Context descriptors, one per domain.
pub static CDS: Block<4096> = Block::new();
/// The page-table pool: 64 pages.
pub static TABLES: Block<{ 64 * 4096 }> = Block::new();
/// Buffers devices may be given, and victims they must not reach.
pub static BUFFERS: Block<{ 16 * 4096 }> = Block::new();

/// Page `i` of `BUFFERS`.
pub fn page(i: usize) -> DmaRegion {
    BUFFERS.region().slice(i * 4096, 4096).unwrap()
}

/// Bytes of a page, through the CPU.
pub fn read(r: &DmaRegion, offset: usize, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: inside the region (callers keep offset + len <= r.len); volatile because
        // a device may have written it.
        *b = unsafe { r.va.add(offset + i).read_volatile() };
    }
}

/// Fill a page with `byte` through the CPU.
pub fn fill(r: &DmaRegion, byte: u8) {
    for i in 0..r.len {
        // SAFETY: inside the region.
        unsafe { r.va.add(i).write_volatile(byte) };
    }
}

/// Write `data` at `offset` through the CPU.
pub fn write(r: &DmaRegion, offset: usize, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        // SAFETY: inside the region (callers keep offset + len <= r.len).
        unsafe { r.va.add(offset + i).write_volatile(*b) };
    }
}

/// A 2 MiB-aligned 2 MiB block, for a block mapping.
#[repr(C, align(0x200000))]
pub struct Big(UnsafeCell<[u8; 0x200000]>);

// SAFETY: as for `Block`: one user.
unsafe impl Sync for Big {}

pub static BIG: Big = Big(UnsafeCell::new([0; 0x200000]));

impl Big {
    /// The block as a DMA region.
    pub fn region(&'static self) -> DmaRegion {
        let va = NonNull::new(self.0.get().cast::<u8>()).unwrap();
        DmaRegion { pa: PhysAddr(va.as_ptr() as u64), va, len: 0x200000 }
    }
}

/// Memory the service's clients are given capabilities to (and two private pages).
pub static SERVICE_BUFFERS: Block<{ 16 * 4096 }> = Block::new();

/// Page `i` of `SERVICE_BUFFERS`.
pub fn service_page(i: usize) -> DmaRegion {
    SERVICE_BUFFERS.region().slice(i * 4096, 4096).unwrap()
}

/// The virtio-blk driver's DMA pool: the only memory its device can reach.
pub static VIRTIO_POOL: Block<{ 32 * 4096 }> = Block::new();

/// The SMMU's own memory: stream table, queues, context descriptors, page-table pool.
pub fn smmu_memory() -> Memory {
    Memory {
        stream_table: STREAM_TABLE.region(),
        cmdq: CMDQ.region(),
        eventq: EVENTQ.region(),
        cds: CDS.region(),
        tables: TABLES.region(),
    }
}
