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

/// The translation tables the image runs on once the device tree is read: RAM as normal
/// memory and exactly the devices the device tree names as Device memory, nothing else.
/// (aarch64-rt's boot tables map only the GiB of RAM the image is linked into.) Identity
/// map, 4 KiB granule, 39-bit addresses (aarch64-rt's TCR): level 1 at the root, 1 GiB and
/// 2 MiB blocks where a region covers them, 4 KiB pages at its edges.
pub mod pagetable {
    use core::cell::UnsafeCell;

    /// Tables for the root and every level-2 and level-3 table the regions need.
    const TABLES: usize = 24;

    #[repr(C, align(4096))]
    struct Tables(UnsafeCell<[[u64; 512]; TABLES]>);

    // SAFETY: only `PageTables`, made once by `main` on one core, writes them.
    unsafe impl Sync for Tables {}

    static POOL: Tables = Tables(UnsafeCell::new([[0; 512]; TABLES]));

    /// How a region is mapped.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Attr {
        /// Device-nGnRE (MAIR index 0), never executable.
        Device,
        /// Normal write-back, inner shareable (MAIR index 1), executable (the image runs from it).
        Normal,
    }

    impl Attr {
        fn bits(self) -> u64 {
            // AF (bit 10) always; AttrIndx in bits 4:2; SH in 9:8; PXN and UXN in 53, 54.
            match self {
                Attr::Device => (1 << 10) | (1 << 53) | (1 << 54),
                Attr::Normal => (1 << 10) | (1 << 2) | (3 << 8),
            }
        }
    }

    /// The largest address the tables translate (T0SZ = 25).
    pub const LIMIT: u64 = 1 << 39;
    const ADDR: u64 = 0x0000_ffff_ffff_f000;

    /// The tables being built.
    #[derive(Debug)]
    pub struct PageTables {
        used: usize,
    }

    impl PageTables {
        /// Start with an empty root. Only one may be built.
        pub fn new() -> Self {
            let mut t = PageTables { used: 0 };
            t.alloc();
            t
        }

        fn table(&mut self, i: usize) -> &mut [u64; 512] {
            // SAFETY: `i` < TABLES; only this (single) builder touches the pool.
            unsafe { &mut (*POOL.0.get())[i] }
        }

        fn alloc(&mut self) -> Option<usize> {
            if self.used == TABLES {
                return None;
            }
            self.used += 1;
            let t = self.table(self.used - 1);
            t.fill(0);
            Some(self.used - 1)
        }

        fn index_of(&self, table_pa: u64) -> usize {
            (table_pa as usize - POOL.0.get() as usize) / 4096
        }

        /// Map `[base, base + size)`, widened to whole pages, to itself.
        pub fn map(&mut self, base: u64, size: u64, attr: Attr) -> Result<(), &'static str> {
            let mut addr = base & !0xfff;
            let end = base.checked_add(size).map(|e| (e + 0xfff) & !0xfff).ok_or("region wraps")?;
            if end > LIMIT {
                return Err("it lies beyond the 512 GiB this image's translation tables reach");
            }
            while addr < end {
                let mut t = 0;
                for level in 1..=3u32 {
                    let shift = 39 - 9 * level;
                    let span = 1u64 << shift;
                    let i = ((addr >> shift) & 511) as usize;
                    let e = self.table(t)[i];
                    let leaf = if level == 3 { 0b11 } else { 0b01 };
                    if e & 1 == 0 && (level == 3 || (addr % span == 0 && end - addr >= span)) {
                        self.table(t)[i] = addr | attr.bits() | leaf;
                        addr += span;
                        break;
                    }
                    if e & 1 == 1 && (level == 3 || e & 2 == 0) {
                        // Already a page or block: fine if it maps the same way.
                        if e & !ADDR != attr.bits() | leaf {
                            return Err("it overlaps a region mapped differently");
                        }
                        addr = (addr | (span - 1)) + 1;
                        break;
                    }
                    if e & 1 == 0 {
                        let n = self.alloc().ok_or("the image ran out of translation tables")?;
                        let pa = self.table(n).as_ptr() as u64;
                        self.table(t)[i] = pa | 0b11;
                        t = n;
                    } else {
                        t = self.index_of(e & ADDR);
                    }
                }
            }
            Ok(())
        }

        /// Switch to these tables.
        ///
        /// # Safety
        /// They must map everything the image uses from now on (its code, data, stack and
        /// the device tree, with the attributes aarch64-rt's boot tables gave them).
        pub unsafe fn activate(&self) {
            // SAFETY: the caller vouches for the tables; PA == VA, so the root's address is
            // its physical address. The barriers make the table writes visible to the walker
            // before TTBR0 changes, and drop entries cached from the boot tables.
            unsafe {
                core::arch::asm!(
                    "dsb ishst",
                    "msr ttbr0_el1, {root}",
                    "isb",
                    "tlbi vmalle1",
                    "dsb ish",
                    "isb",
                    root = in(reg) POOL.0.get() as u64,
                    options(nostack)
                );
            }
        }
    }
}
