//! VMSAv8-64 stage-1 and stage-2 translation tables with a 4 KiB granule (Arm ARM D8.3,
//! as used by the SMMU per IHI 0070 3.4), built in pages taken from a fixed pool. The two
//! stages share table descriptors and walks; their leaves differ (`Stage`).
//!
//! Every operation checks the whole request before it writes anything, so an error
//! leaves the tables exactly as they were: a map that would overlap, run past the input
//! range or exhaust the pool changes nothing, and an unmap that covers an unmapped page
//! or part of a block changes nothing. Operations that remove or narrow access report
//! each changed leaf to an invalidation callback; the caller queues the TLBI and waits
//! for the sync before telling anyone the access is gone.
//!
//! Tables left empty by unmaps stay linked (an unmap and the next map in the same range
//! then cost no table allocation) until `prune` takes them out: break-before-make, their
//! parent entries are cleared first and the pages wait in the address space's limbo,
//! holding only invalid descriptors, until the caller has confirmed an invalidation of
//! the walk caches (`release_limbo`); only then can a page become another table.

use core::ptr::NonNull;

use crate::addr::{DmaRegion, Iova, PhysAddr};
use crate::barrier;
use crate::coherency::Maintenance;
use crate::field::{addr_bits, Field};

/// Size of a translation granule and of a table.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a level-2 block.
pub const BLOCK_SIZE_2M: u64 = 2 << 20;
/// Descriptors per table.
pub const ENTRIES: usize = 512;
/// The last level.
const LEAF_LEVEL: u8 = 3;

/// Valid.
pub const PTE_VALID: Field = Field::bit(0);
/// Type: 1 = table (levels 0-2) or page (level 3); 0 = block (levels 1-2).
pub const PTE_TYPE: Field = Field::bit(1);
/// AttrIndx: index into MAIR.
pub const PTE_ATTRINDX: Field = Field::new(4, 2);
/// AP[2:1]: AP[1] (bit 6) grants unprivileged access, AP[2] (bit 7) makes it read-only.
pub const PTE_AP: Field = Field::new(7, 6);
/// AP[1]: accessible to unprivileged transactions (PCIe requests without PASID are).
pub const PTE_AP_UNPRIV: Field = Field::bit(6);
/// AP[2]: read-only.
pub const PTE_AP_RDONLY: Field = Field::bit(7);
/// SH: shareability.
pub const PTE_SH: Field = Field::new(9, 8);
/// AF: access flag (set by software: the SMMU's hardware update is not enabled).
pub const PTE_AF: Field = Field::bit(10);
/// nG: not global, so the entry is tagged with the context's ASID.
pub const PTE_NG: Field = Field::bit(11);
/// Output address / next-level table address, bits [47:12].
pub const PTE_ADDR: Field = Field::new(47, 12);
/// PXN: never executable at privileged level.
pub const PTE_PXN: Field = Field::bit(53);
/// UXN/XN: never executable at unprivileged level.
pub const PTE_UXN: Field = Field::bit(54);
/// SH value: inner shareable.
pub const PTE_SH_IS: u64 = 0b11;
/// SH value: outer shareable (Normal Non-cacheable memory is, whatever SH says; Linux's
/// io-pgtable-arm writes it for mappings without IOMMU_CACHE).
pub const PTE_SH_OS: u64 = 0b10;

/// Stage-2 leaf S2AP[1:0], bits [7:6]: bit 6 grants reads, bit 7 writes (Arm ARM D8.4,
/// "Stage 2 data access permissions"; Linux's ARM_LPAE_PTE_HAP_READ/WRITE).
pub const PTE_S2AP: Field = Field::new(7, 6);
/// S2AP value: read only.
pub const PTE_S2AP_READ: u64 = 0b01;
/// S2AP value: read and write.
pub const PTE_S2AP_READ_WRITE: u64 = 0b11;
/// Stage-2 leaf MemAttr[3:0], bits [5:2] (with FWB off): [3:2] outer, [1:0] inner.
pub const PTE_S2_MEMATTR: Field = Field::new(5, 2);
/// MemAttr: Normal, inner and outer write-back cacheable (Linux: ARM_LPAE_PTE_MEMATTR_OIWB).
pub const PTE_S2_MEMATTR_WB: u64 = 0b1111;
/// MemAttr: Normal, inner and outer Non-cacheable (Linux: ARM_LPAE_PTE_MEMATTR_NC).
pub const PTE_S2_MEMATTR_NC: u64 = 0b0101;
/// MemAttr: Device-nGnRE (Linux: ARM_LPAE_PTE_MEMATTR_DEV).
pub const PTE_S2_MEMATTR_DEVICE: u64 = 0b0001;

/// Which translation stage a table belongs to: it decides how leaves encode permission
/// and memory type, and whether they carry nG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Stage 1: AP[2:1], AttrIndx into the CD's MAIR, nG (tagged with the ASID), PXN/UXN.
    Stage1,
    /// Stage 2: S2AP[1:0], MemAttr directly, no nG (entries are tagged with the VMID),
    /// XN (bit 54).
    Stage2,
}

/// What a device may do with a mapping. Stage-1 descriptors cannot express write-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Perm {
    /// The device may read.
    Read,
    /// The device may read and write.
    ReadWrite,
}

/// The memory type of the mapped physical range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemType {
    /// Normal, write-back cacheable RAM, inner shareable: for a device whose accesses
    /// snoop the CPUs' caches (Linux: a mapping with IOMMU_CACHE).
    Normal,
    /// Normal, Non-cacheable RAM, outer shareable: for a device that does not snoop the
    /// CPUs' caches, whose driver cleans and invalidates its buffers to the PoC, where its
    /// accesses then go (Linux: a mapping without IOMMU_CACHE).
    NormalNonCacheable,
    /// Device-nGnRE (peer-to-peer MMIO).
    Device,
}

/// Why a page-table operation was refused. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageTableError {
    /// An address or length is not a multiple of 4 KiB.
    Misaligned,
    /// The length is zero.
    Empty,
    /// The IOVA range wraps or runs past the context's input size.
    IovaOutOfRange,
    /// The physical range wraps or runs past the SMMU's output size.
    PhysOutOfRange,
    /// Part of the range is already mapped; the first such IOVA.
    AlreadyMapped(Iova),
    /// Part of the range is not mapped; the first such IOVA.
    NotMapped(Iova),
    /// The range covers only part of a 2 MiB block mapped at this IOVA.
    PartialBlock(Iova),
    /// The table pool has fewer free pages than the operation needs.
    PoolExhausted {
        /// Pages the operation needs.
        needed: usize,
        /// Pages free.
        free: usize,
    },
}

/// A translation-table descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pte(pub u64);

impl Pte {
    /// The invalid descriptor.
    pub const INVALID: Pte = Pte(0);

    /// A table descriptor pointing at the next-level table `next`.
    pub const fn table(next: PhysAddr) -> Pte {
        Pte(PTE_VALID.prep(1) | PTE_TYPE.prep(1) | addr_bits(PTE_ADDR, next.0))
    }

    /// A leaf: a page at level 3, a block at levels 1 and 2. Never executable, tagged
    /// with the ASID (nG), access flag set, reachable by unprivileged transactions.
    pub const fn leaf(pa: PhysAddr, level: u8, perm: Perm, mem: MemType) -> Pte {
        let ty = if level == LEAF_LEVEL { 1 } else { 0 };
        let (attr, sh) = match mem {
            MemType::Normal => (crate::cd::MAIR_IDX_NORMAL, PTE_SH_IS),
            MemType::NormalNonCacheable => (crate::cd::MAIR_IDX_NORMAL_NC, PTE_SH_OS),
            MemType::Device => (crate::cd::MAIR_IDX_DEVICE, 0),
        };
        let ro = match perm {
            Perm::Read => 1,
            Perm::ReadWrite => 0,
        };
        Pte(PTE_VALID.prep(1)
            | PTE_TYPE.prep(ty)
            | PTE_ATTRINDX.prep(attr)
            | PTE_AP_UNPRIV.prep(1)
            | PTE_AP_RDONLY.prep(ro)
            | PTE_SH.prep(sh)
            | PTE_AF.prep(1)
            | PTE_NG.prep(1)
            | addr_bits(PTE_ADDR, pa.0)
            | PTE_PXN.prep(1)
            | PTE_UXN.prep(1))
    }

    /// A stage-2 leaf: a page at level 3, a block at levels 1 and 2. Never executable
    /// (XN, bit 54: XN[1:0] = 0b10, not executable at any level with or without FEAT_XNX;
    /// bit 53 left 0, which is XN[0] under FEAT_XNX and RES0 without), access flag set.
    pub const fn s2_leaf(pa: PhysAddr, level: u8, perm: Perm, mem: MemType) -> Pte {
        let ty = if level == LEAF_LEVEL { 1 } else { 0 };
        let (attr, sh) = match mem {
            MemType::Normal => (PTE_S2_MEMATTR_WB, PTE_SH_IS),
            MemType::NormalNonCacheable => (PTE_S2_MEMATTR_NC, PTE_SH_OS),
            MemType::Device => (PTE_S2_MEMATTR_DEVICE, 0),
        };
        let ap = match perm {
            Perm::Read => PTE_S2AP_READ,
            Perm::ReadWrite => PTE_S2AP_READ_WRITE,
        };
        Pte(PTE_VALID.prep(1)
            | PTE_TYPE.prep(ty)
            | PTE_S2_MEMATTR.prep(attr)
            | PTE_S2AP.prep(ap)
            | PTE_SH.prep(sh)
            | PTE_AF.prep(1)
            | addr_bits(PTE_ADDR, pa.0)
            | PTE_UXN.prep(1))
    }

    /// The leaf `stage` calls for.
    pub const fn leaf_at(stage: Stage, pa: PhysAddr, level: u8, perm: Perm, mem: MemType) -> Pte {
        match stage {
            Stage::Stage1 => Self::leaf(pa, level, perm, mem),
            Stage::Stage2 => Self::s2_leaf(pa, level, perm, mem),
        }
    }

    /// The permission a leaf of `stage` grants. At stage 2: `ReadWrite` when S2AP grants
    /// writes, else `Read` (the driver writes no write-only or no-access leaf).
    pub const fn perm_at(self, stage: Stage) -> Perm {
        match stage {
            Stage::Stage1 => self.perm(),
            Stage::Stage2 if PTE_S2AP.get(self.0) & 0b10 != 0 => Perm::ReadWrite,
            Stage::Stage2 => Perm::Read,
        }
    }

    /// The same leaf of `stage` with permission `perm`.
    pub const fn with_perm_at(self, stage: Stage, perm: Perm) -> Pte {
        match stage {
            Stage::Stage1 => self.with_perm(perm),
            Stage::Stage2 => {
                let ap = match perm {
                    Perm::Read => PTE_S2AP_READ,
                    Perm::ReadWrite => PTE_S2AP_READ_WRITE,
                };
                Pte(PTE_S2AP.set(self.0, ap))
            }
        }
    }

    /// Valid bit set.
    pub const fn is_valid(self) -> bool {
        PTE_VALID.get(self.0) == 1
    }

    /// A table descriptor, given it sits above the last level.
    pub const fn is_table(self, level: u8) -> bool {
        self.is_valid() && level < LEAF_LEVEL && PTE_TYPE.get(self.0) == 1
    }

    /// The output or next-table address.
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 & PTE_ADDR.mask())
    }

    /// The permission a leaf grants.
    pub const fn perm(self) -> Perm {
        if PTE_AP_RDONLY.get(self.0) == 1 {
            Perm::Read
        } else {
            Perm::ReadWrite
        }
    }

    /// The same leaf with permission `perm`.
    pub const fn with_perm(self, perm: Perm) -> Pte {
        let ro = match perm {
            Perm::Read => 1,
            Perm::ReadWrite => 0,
        };
        Pte(PTE_AP_RDONLY.set(self.0, ro))
    }
}

/// The fixed pool of 4 KiB pages that every table comes from. Free pages are chained
/// through their first word, so the pool needs no memory of its own.
#[derive(Debug)]
pub struct TablePool {
    region: DmaRegion,
    /// Cleans what the SMMU will walk, when it does not snoop this CPU's caches.
    maint: Maintenance,
    pages: usize,
    /// Index + 1 of the first free page, 0 if none.
    free_head: usize,
    free: usize,
}

// SAFETY: the pool owns its region exclusively (by the contract of `TablePool::new`);
// moving it to another thread moves that ownership.
unsafe impl Send for TablePool {}

impl TablePool {
    /// A pool over `region`, which must be 4 KiB aligned (both addresses).
    ///
    /// # Safety
    /// `region.va` must point to `region.len` bytes of memory that nothing else uses for
    /// as long as the pool and the tables built from it live, and that the SMMU sees at
    /// `region.pa`.
    pub unsafe fn new(region: DmaRegion) -> Option<Self> {
        if !Self::usable(&region) {
            return None;
        }
        let mut pool = Self {
            region,
            maint: Maintenance::default(),
            pages: region.len / PAGE_SIZE as usize,
            free_head: 0,
            free: 0,
        };
        for index in (0..pool.pages).rev() {
            pool.push(index);
        }
        Some(pool)
    }

    /// Whether `new` would take `region`: page-aligned, both addresses.
    pub fn usable(region: &DmaRegion) -> bool {
        region.pa.is_aligned(PAGE_SIZE) && region.va.as_ptr() as usize % PAGE_SIZE as usize == 0
    }

    /// Clean every table entry written from now on (and every page handed out, zeroed) to
    /// the PoC, for an SMMU that does not snoop this CPU's caches (the SMMUv3 driver's
    /// `init`, and `smmuv2`'s for an MMU-500 on a non-coherent platform).
    pub fn set_maintenance(&mut self, maint: Maintenance) {
        self.maint = maint;
    }

    /// Free pages.
    pub fn free_pages(&self) -> usize {
        self.free
    }

    /// Pages in the pool.
    pub fn total_pages(&self) -> usize {
        self.pages
    }

    /// The physical range the pool covers (the SMMU must never let a device reach it).
    pub fn region(&self) -> &DmaRegion {
        &self.region
    }

    fn page_ptr(&self, index: usize) -> NonNull<u64> {
        // SAFETY: `index < pages`, so the page lies inside the region.
        unsafe { self.region.va.add(index * PAGE_SIZE as usize).cast() }
    }

    fn push(&mut self, index: usize) {
        // SAFETY: the page is inside the pool's region and, being freed, unused.
        unsafe { self.page_ptr(index).write_volatile(self.free_head as u64) };
        // The SMMU never walks a free page, but keeping every line of the pool at the PoC
        // as written keeps "what the SMMU may read is cleaned" checkable in one rule.
        self.maint.clean(self.page_ptr(index), 8);
        self.free_head = index + 1;
        self.free += 1;
    }

    /// Take a zeroed page; `None` when the pool is empty.
    fn alloc(&mut self) -> Option<(PhysAddr, NonNull<u64>)> {
        let index = self.free_head.checked_sub(1)?;
        let page = self.page_ptr(index);
        // SAFETY: the page is free, so its first word holds the free-list link.
        self.free_head = unsafe { page.read_volatile() } as usize;
        self.free -= 1;
        for i in 0..ENTRIES {
            // SAFETY: `i < 512` words stay inside the 4 KiB page.
            unsafe { page.add(i).write_volatile(0) };
        }
        // The SMMU may walk the page as soon as a descriptor links it: it must find the
        // zeros there, not what the page held before.
        self.maint.clean(page, PAGE_SIZE as usize);
        Some((PhysAddr(self.region.pa.0 + (index as u64) * PAGE_SIZE), page))
    }

    /// Give back the page at `pa`. The caller has made sure the SMMU can no longer walk
    /// it (its parent entry was cleared, invalidated and synced).
    fn free_page(&mut self, pa: PhysAddr) {
        self.push(self.page_index(pa));
    }

    fn page_index(&self, pa: PhysAddr) -> usize {
        ((pa.0 - self.region.pa.0) / PAGE_SIZE) as usize
    }

    /// Put the empty table at `pa`, just unlinked from its parent, at the head of the limbo
    /// chain `head` (index + 1 of its first page, 0 if none). The SMMU may still walk the
    /// page through a walk-cache entry until the invalidation is confirmed, so the link is
    /// written as an invalid descriptor (bit 0 clear: `(index + 1) << 12`) and the page's
    /// other entries stay zero: such a walk finds nothing and faults.
    fn park(&mut self, pa: PhysAddr, head: &mut usize) {
        let index = self.page_index(pa);
        // SAFETY: the page is inside the pool's region, and a table no descriptor links to.
        unsafe { self.page_ptr(index).write_volatile((*head as u64) << 12) };
        // A cached walk may still lead here: it must read the invalid link.
        self.maint.clean(self.page_ptr(index), 8);
        *head = index + 1;
    }

    /// Move every page of the limbo chain `head` to the free list; returns how many.
    /// The caller has confirmed an invalidation of the walk caches that could point at
    /// them.
    fn release(&mut self, head: &mut usize) -> usize {
        let mut n = 0;
        while let Some(index) = head.checked_sub(1) {
            // SAFETY: a limbo page, inside the region; word 0 holds the next link.
            let link = unsafe { self.page_ptr(index).read_volatile() };
            *head = (link >> 12) as usize;
            self.push(index);
            n += 1;
        }
        n
    }

    /// This CPU's view of the table at `pa` (which came from this pool).
    fn table(&self, pa: PhysAddr) -> NonNull<u64> {
        let offset = pa.0.wrapping_sub(self.region.pa.0);
        debug_assert!(offset < self.region.len as u64);
        self.page_ptr((offset / PAGE_SIZE) as usize)
    }

    fn read(&self, table: PhysAddr, index: usize) -> Pte {
        // SAFETY: `table` is a page of this pool and `index < 512`.
        Pte(unsafe { self.table(table).add(index).read_volatile() })
    }

    fn write(&mut self, table: PhysAddr, index: usize, pte: Pte) {
        self.write_uncleaned(table, index, pte);
        self.clean_entries(table, index, 1);
    }

    /// `write` without the clean: the caller cleans the entry (`clean_entries`, once for
    /// a run of entries) before anything tells the SMMU to look.
    fn write_uncleaned(&mut self, table: PhysAddr, index: usize, pte: Pte) {
        debug_assert!(index < ENTRIES);
        // SAFETY: `table` is a page of this pool and `index < 512`; the 64-bit aligned
        // store is single-copy atomic for the SMMU's table walker.
        unsafe { self.table(table).add(index).write_volatile(pte.0) };
    }

    /// Clean entries `index..index + n` of `table` to the PoC, one clean for the run (each
    /// cache line once, not once per entry): before anything tells the SMMU to look (a
    /// TLBI and CMD_SYNC, or the caller's client, who may start DMA once `map` returns),
    /// the entries are at the PoC.
    fn clean_entries(&self, table: PhysAddr, index: usize, n: usize) {
        debug_assert!(n > 0 && index + n <= ENTRIES);
        // SAFETY: entries `index..index + n` lie inside the 4 KiB table page.
        self.maint.clean(unsafe { self.table(table).add(index) }, 8 * n);
    }
}

/// One leaf found by a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    /// IOVA of the start of the page or block.
    pub iova: Iova,
    /// Output address of the start of the page or block.
    pub pa: PhysAddr,
    /// Level: 3 for a 4 KiB page, 2 for a 2 MiB block.
    pub level: u8,
    /// The permission granted.
    pub perm: Perm,
}

impl Leaf {
    /// Bytes covered by the leaf.
    pub const fn size(&self) -> u64 {
        level_size(self.level)
    }
}

/// The pages from `cur` (page-aligned, below `end`) to `end` or to the end of the
/// level-3 table that holds `cur`'s entry (the next 2 MiB boundary), whichever is first:
/// a run whose entries are consecutive in one table, walked to once.
const fn run_pages(cur: u64, end: u64) -> usize {
    let table_end = (cur | (BLOCK_SIZE_2M - 1)) + 1;
    let stop = if end < table_end { end } else { table_end };
    ((stop - cur) / PAGE_SIZE) as usize
}

/// Bytes covered by one entry at `level`.
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

const fn level_shift(level: u8) -> u32 {
    12 + 9 * (LEAF_LEVEL - level) as u32
}

/// An address space of either stage: the root table and the walk geometry.
#[derive(Debug)]
pub struct PageTable {
    stage: Stage,
    root: PhysAddr,
    start_level: u8,
    ias_bits: u32,
    oas_bits: u32,
    /// Tables `prune` unlinked that wait for a confirmed invalidation before they go back
    /// to the pool: index + 1 of the first, 0 if none (chained through their first word).
    limbo: usize,
    /// How many.
    limbo_len: usize,
}

impl PageTable {
    /// A new, empty address space of `ias_bits` input bits (25..=48) whose output
    /// addresses fit in `oas_bits`, its root taken from `pool`.
    pub fn new(pool: &mut TablePool, ias_bits: u32, oas_bits: u32) -> Result<Self, PageTableError> {
        Self::new_at(pool, Stage::Stage1, ias_bits, oas_bits)
    }

    /// `new` for `stage`. At stage 2 the walk starts where the input size puts it, one
    /// table at the starting level, never concatenated (level 0 from 40 bits on, level 1
    /// from 31, level 2 below): the caller checks that the SMMU allows that start.
    pub fn new_at(pool: &mut TablePool, stage: Stage, ias_bits: u32, oas_bits: u32) -> Result<Self, PageTableError> {
        if !(25..=48).contains(&ias_bits) {
            return Err(PageTableError::IovaOutOfRange);
        }
        let (root, _) = pool.alloc().ok_or(PageTableError::PoolExhausted { needed: 1, free: 0 })?;
        // 4 KiB granule: each level resolves 9 bits above the 12-bit page offset.
        let levels = (ias_bits - 12).div_ceil(9);
        Ok(Self {
            stage,
            root,
            start_level: (4 - levels) as u8,
            ias_bits,
            oas_bits: oas_bits.min(48),
            limbo: 0,
            limbo_len: 0,
        })
    }

    /// Physical address of the root table (the CD's TTB0, or the STE's S2TTB).
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The stage the tables are for.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The level walks start at.
    pub fn start_level(&self) -> u8 {
        self.start_level
    }

    /// Input address size in bits.
    pub fn ias_bits(&self) -> u32 {
        self.ias_bits
    }

    fn index(&self, iova: u64, level: u8) -> usize {
        ((iova >> level_shift(level)) & (ENTRIES as u64 - 1)) as usize
    }

    fn check_iova_range(&self, iova: Iova, len: u64) -> Result<u64, PageTableError> {
        if len == 0 {
            return Err(PageTableError::Empty);
        }
        if !iova.is_aligned(PAGE_SIZE) || len % PAGE_SIZE != 0 {
            return Err(PageTableError::Misaligned);
        }
        let end = iova.0.checked_add(len).ok_or(PageTableError::IovaOutOfRange)?;
        if end > 1u64 << self.ias_bits {
            return Err(PageTableError::IovaOutOfRange);
        }
        Ok(end)
    }

    /// Find the leaf covering `iova`, if any.
    pub fn translate(&self, pool: &TablePool, iova: Iova) -> Option<Leaf> {
        self.leaf_entry(pool, iova).map(|(_, leaf)| leaf)
    }

    /// The leaf mapping `iova` and the table that holds its entry, in one walk.
    #[inline]
    fn leaf_entry(&self, pool: &TablePool, iova: Iova) -> Option<(PhysAddr, Leaf)> {
        if iova.0 >= 1u64 << self.ias_bits {
            return None;
        }
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            let pte = pool.read(table, self.index(iova.0, level));
            if !pte.is_valid() {
                return None;
            }
            if pte.is_table(level) {
                table = pte.addr();
                level += 1;
                continue;
            }
            let base = iova.0 & !(level_size(level) - 1);
            return Some((table, Leaf { iova: Iova(base), pa: pte.addr(), level, perm: pte.perm_at(self.stage) }));
        }
    }

    /// Walk to the entry for `iova` at `target` level without creating anything.
    /// `Ok((table, pte))` when the walk reached `target`; `Err(level)` when it stopped at
    /// `level` on an invalid entry or a leaf (a block above `target`).
    fn walk(&self, pool: &TablePool, iova: u64, target: u8) -> Result<(PhysAddr, Pte), (u8, Pte)> {
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            let pte = pool.read(table, self.index(iova, level));
            if level == target {
                return Ok((table, pte));
            }
            if !pte.is_table(level) {
                return Err((level, pte));
            }
            table = pte.addr();
            level += 1;
        }
    }

    /// The level of the leaf `map` would use for the chunk at `iova`: a 2 MiB block when
    /// both addresses are 2 MiB aligned, at least 2 MiB remain and no level-2 table
    /// already exists there; otherwise a page.
    fn chunk_level(&self, pool: &TablePool, iova: u64, pa: u64, remaining: u64) -> u8 {
        let block_fits = iova % BLOCK_SIZE_2M == 0 && pa % BLOCK_SIZE_2M == 0 && remaining >= BLOCK_SIZE_2M;
        if block_fits && self.start_level <= 2 {
            match self.walk(pool, iova, 2) {
                Ok((_, pte)) if pte.is_table(2) => 3,
                _ => 2,
            }
        } else {
            3
        }
    }

    /// Map `[iova, iova + len)` to `[pa, pa + len)`. Uses 2 MiB blocks where alignment
    /// allows. Fails, changing nothing, if any part is already mapped, the ranges are out
    /// of bounds, or the pool cannot supply every table needed. No invalidation is needed:
    /// the SMMU does not cache invalid entries (IHI 0070 3.21.1).
    pub fn map(
        &mut self,
        pool: &mut TablePool,
        iova: Iova,
        pa: PhysAddr,
        len: u64,
        perm: Perm,
        mem: MemType,
    ) -> Result<(), PageTableError> {
        let end = self.check_iova_range(iova, len)?;
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(PageTableError::Misaligned);
        }
        let pa_end = pa.0.checked_add(len).ok_or(PageTableError::PhysOutOfRange)?;
        if pa_end > 1u64 << self.oas_bits {
            return Err(PageTableError::PhysOutOfRange);
        }
        if len == PAGE_SIZE {
            if let Some(done) = self.map_page(pool, iova, pa, perm, mem) {
                return done;
            }
        }

        // Pass 1: every target entry must be empty; count the tables to create. Tables
        // are created in address order, so a new table at `level` serves every later
        // chunk with the same address prefix above that level.
        let mut needed = 0usize;
        let mut last_new: [Option<u64>; 4] = [None; 4];
        let mut cur = iova.0;
        while cur < end {
            let remaining = end - cur;
            let level = self.chunk_level(pool, cur, pa.0 + (cur - iova.0), remaining);
            // Pages: the rest of the run in this level-3 table, in one walk (every page of
            // it is a page chunk: a block needs a 2 MiB boundary, where the run ends).
            let n = if level == LEAF_LEVEL { run_pages(cur, end) } else { 1 };
            match self.walk(pool, cur, level) {
                Ok((table, _)) => {
                    let first = self.index(cur, level);
                    if let Some(k) = (0..n).find(|&k| pool.read(table, first + k).is_valid()) {
                        return Err(PageTableError::AlreadyMapped(Iova(cur + k as u64 * PAGE_SIZE)));
                    }
                }
                Err((stop, pte)) => {
                    if pte.is_valid() {
                        // A leaf above the target level: a block already covers `cur`.
                        return Err(PageTableError::AlreadyMapped(Iova(cur)));
                    }
                    // Tables are missing for levels stop+1 ..= level.
                    for l in stop + 1..=level {
                        let prefix = cur >> level_shift(l - 1);
                        if last_new[l as usize] != Some(prefix) {
                            last_new[l as usize] = Some(prefix);
                            needed += 1;
                        }
                    }
                }
            }
            cur += n as u64 * level_size(level);
        }
        if needed > pool.free_pages() {
            return Err(PageTableError::PoolExhausted { needed, free: pool.free_pages() });
        }

        // Pass 2: commit. Nothing below can fail.
        let mut cur = iova.0;
        while cur < end {
            let out = pa.0 + (cur - iova.0);
            let level = self.chunk_level(pool, cur, out, end - cur);
            let table = self.table_for(pool, cur, level);
            // A run of pages in one table (as in pass 1): written, then cleaned once.
            let n = if level == LEAF_LEVEL { run_pages(cur, end) } else { 1 };
            let first = self.index(cur, level);
            for k in 0..n {
                let out = PhysAddr(out + k as u64 * PAGE_SIZE);
                pool.write_uncleaned(table, first + k, Pte::leaf_at(self.stage, out, level, perm, mem));
            }
            pool.clean_entries(table, first, n);
            cur += n as u64 * level_size(level);
        }
        // The caller will tell a client the mapping exists; make it visible first.
        barrier::wmb();
        Ok(())
    }

    /// `map` of one page (`iova` and `pa` checked) whose level-3 table exists: one walk
    /// that both checks the entry and writes it, where the passes below walk twice and
    /// set up a run of one. `None` when a table is missing or a block is in the way:
    /// the passes handle those (counting tables, refusing), with nothing changed here.
    /// What it writes, refuses and cleans is what the passes would (`tests/pagetable.rs`
    /// and `tests/coherency.rs` compare the two).
    #[inline]
    fn map_page(
        &mut self,
        pool: &mut TablePool,
        iova: Iova,
        pa: PhysAddr,
        perm: Perm,
        mem: MemType,
    ) -> Option<Result<(), PageTableError>> {
        let (table, pte) = self.walk(pool, iova.0, LEAF_LEVEL).ok()?;
        if pte.is_valid() {
            return Some(Err(PageTableError::AlreadyMapped(iova)));
        }
        pool.write(table, self.index(iova.0, LEAF_LEVEL), Pte::leaf_at(self.stage, pa, LEAF_LEVEL, perm, mem));
        // The caller will tell a client the mapping exists; make it visible first.
        barrier::wmb();
        Some(Ok(()))
    }

    /// The table holding `iova`'s entry at `level`, creating missing tables (pass 1 of
    /// `map` made sure the pool can supply them and that no leaf is in the way).
    fn table_for(&mut self, pool: &mut TablePool, iova: u64, level: u8) -> PhysAddr {
        let mut table = self.root;
        let mut l = self.start_level;
        while l < level {
            let index = self.index(iova, l);
            let pte = pool.read(table, index);
            table = if pte.is_table(l) {
                pte.addr()
            } else {
                let (new, _) = pool.alloc().expect("pass 1 reserved this table");
                // The zeroed table must be visible before the SMMU can walk into it.
                barrier::dma_wmb();
                pool.write(table, index, Pte::table(new));
                new
            };
            l += 1;
        }
        table
    }

    /// Check that `[iova, iova+len)` is exactly covered by leaves, none of them a block
    /// that sticks out of the range. Returns the number of leaves.
    fn check_covered(&self, pool: &TablePool, iova: Iova, len: u64) -> Result<usize, PageTableError> {
        let end = self.check_iova_range(iova, len)?;
        let mut cur = iova.0;
        let mut leaves = 0;
        while cur < end {
            let (table, leaf) = self.leaf_entry(pool, Iova(cur)).ok_or(PageTableError::NotMapped(Iova(cur)))?;
            if leaf.iova.0 != cur || cur + leaf.size() > end {
                return Err(PageTableError::PartialBlock(leaf.iova));
            }
            // A page: the rest of the run is the entries after it in the same table, each
            // a page if valid (level 3 holds nothing else).
            let n = if leaf.level == LEAF_LEVEL && end - cur > PAGE_SIZE { run_pages(cur, end) } else { 1 };
            if n > 1 {
                let first = self.index(cur, leaf.level);
                if let Some(k) = (1..n).find(|&k| !pool.read(table, first + k).is_valid()) {
                    return Err(PageTableError::NotMapped(Iova(cur + k as u64 * PAGE_SIZE)));
                }
            }
            cur += n as u64 * leaf.size();
            leaves += n;
        }
        Ok(leaves)
    }

    /// Check an unmap of `[iova, iova + len)` without changing anything.
    pub fn check_unmap(&self, pool: &TablePool, iova: Iova, len: u64) -> Result<usize, PageTableError> {
        self.check_covered(pool, iova, len)
    }

    /// Remove every leaf in `[iova, iova + len)`, which must be exactly covered by
    /// mappings (no hole, no partial block); `invalidate(leaf)` is called for each one
    /// removed. Tables are kept for reuse, even when left empty: `prune` takes those out,
    /// and `destroy` returns every table.
    pub fn unmap(
        &mut self,
        pool: &mut TablePool,
        iova: Iova,
        len: u64,
        invalidate: impl FnMut(Leaf),
    ) -> Result<usize, PageTableError> {
        let leaves = self.check_covered(pool, iova, len)?;
        self.clear_covered(pool, iova, len, invalidate);
        Ok(leaves)
    }

    /// `unmap` of a range `check_unmap` accepted, with nothing changed in this address
    /// space since: the driver checks every range of a batch before it clears any, and
    /// checking again here walked each leaf twice more.
    pub fn unmap_checked(&mut self, pool: &mut TablePool, iova: Iova, len: u64, invalidate: impl FnMut(Leaf)) {
        self.clear_covered(pool, iova, len, invalidate);
    }

    /// Clear the leaves of a range found exactly covered: one walk per leaf (to the leaf
    /// and its table). Stops at a hole, which a checked range does not have.
    ///
    /// A run of pages in one table (`run_pages`) is cleared with one walk, up to
    /// `CLEAR_CHUNK` entries at a time (a longer run cut at multiples of `CLEAR_CHUNK`
    /// entries of the table): each entry written invalid, the chunk cleaned to
    /// the PoC once, and only then `invalidate` called for its leaves, so no TLBI of them
    /// can reach the SMMU (a full queue, or an erratum's sync, rings the doorbell inside
    /// `invalidate`) before the SMMU would walk the invalid entries.
    #[inline]
    fn clear_covered(&mut self, pool: &mut TablePool, iova: Iova, len: u64, mut invalidate: impl FnMut(Leaf)) {
        const CLEAR_CHUNK: usize = 64;
        let end = iova.0 + len;
        let mut cur = iova.0;
        while cur < end {
            let Some((table, leaf)) = self.leaf_entry(pool, Iova(cur)) else { return };
            let first = self.index(cur, leaf.level);
            // A block, or a run of one page (a one-page unmap, the last page of a range):
            // cleared, cleaned and invalidated as a run of one would be, without the run's
            // set-up.
            if leaf.level != LEAF_LEVEL || end - cur == PAGE_SIZE {
                pool.write(table, first, Pte::INVALID);
                invalidate(leaf);
                cur += leaf.size();
                continue;
            }
            let mut old = [Pte::INVALID; CLEAR_CHUNK];
            // A run that fits is one chunk; a longer one is cut at multiples of
            // CLEAR_CHUNK entries (512 bytes) of the table, so that no cache line (64
            // bytes on the cores we know, at most 512 assumed here) is shared by two
            // chunks and cleaned twice.
            let run = run_pages(cur, end);
            let n = if run <= CLEAR_CHUNK { run } else { CLEAR_CHUNK - first % CLEAR_CHUNK };
            let mut cleared = 0;
            for (k, slot) in old.iter_mut().enumerate().take(n) {
                let pte = pool.read(table, first + k);
                if !pte.is_valid() {
                    // A hole, which a checked range does not have: stop after the run so far.
                    break;
                }
                *slot = pte;
                pool.write_uncleaned(table, first + k, Pte::INVALID);
                cleared += 1;
            }
            if cleared == 0 {
                return;
            }
            pool.clean_entries(table, first, cleared);
            for (k, pte) in old.iter().enumerate().take(cleared) {
                let page = Iova(cur + k as u64 * PAGE_SIZE);
                invalidate(Leaf { iova: page, pa: pte.addr(), level: LEAF_LEVEL, perm: pte.perm_at(self.stage) });
            }
            if cleared < n {
                return;
            }
            cur += n as u64 * PAGE_SIZE;
        }
    }

    /// Change the permission of every leaf in `[iova, iova + len)` (exactly covered by
    /// mappings) to `perm`; `invalidate(leaf)` is called for each leaf that changed.
    pub fn protect(
        &mut self,
        pool: &mut TablePool,
        iova: Iova,
        len: u64,
        perm: Perm,
        mut invalidate: impl FnMut(Leaf),
    ) -> Result<usize, PageTableError> {
        self.check_covered(pool, iova, len)?;
        let end = iova.0 + len;
        let mut cur = iova.0;
        let mut changed = 0;
        while cur < end {
            let leaf = self.translate(pool, Iova(cur)).expect("checked above");
            if leaf.perm != perm {
                let (table, pte) = self.walk(pool, cur, leaf.level).expect("leaf exists");
                pool.write(table, self.index(cur, leaf.level), pte.with_perm_at(self.stage, perm));
                invalidate(leaf);
                changed += 1;
            }
            cur += leaf.size();
        }
        Ok(changed)
    }

    /// Call `f` for every leaf, in IOVA order.
    pub fn for_each_leaf(&self, pool: &TablePool, mut f: impl FnMut(Leaf)) {
        self.visit(pool, self.root, self.start_level, 0, &mut f);
    }

    fn visit(&self, pool: &TablePool, table: PhysAddr, level: u8, base: u64, f: &mut impl FnMut(Leaf)) {
        for i in 0..self.span(level) {
            let pte = pool.read(table, i);
            let iova = base + ((i as u64) << level_shift(level));
            if !pte.is_valid() {
                continue;
            }
            if pte.is_table(level) {
                self.visit(pool, pte.addr(), level + 1, iova, f);
            } else {
                f(Leaf { iova: Iova(iova), pa: pte.addr(), level, perm: pte.perm_at(self.stage) });
            }
        }
    }

    /// Number of table pages this address space holds (root included).
    pub fn table_pages(&self, pool: &TablePool) -> usize {
        self.count_tables(pool, self.root, self.start_level)
    }

    fn count_tables(&self, pool: &TablePool, table: PhysAddr, level: u8) -> usize {
        let mut n = 1;
        for i in 0..ENTRIES {
            let pte = pool.read(table, i);
            if pte.is_table(level) {
                n += self.count_tables(pool, pte.addr(), level + 1);
            }
        }
        n
    }

    /// Unlink every table (the root excepted) that maps nothing, its subtables included,
    /// and put it in this address space's limbo; returns how many were unlinked. Their
    /// parent entries are cleared here (break); the SMMU may still hold them in its walk
    /// caches, so the pages stay out of the pool until the caller has invalidated them
    /// (CMD_TLBI_NH_ASID, or CMD_TLBI_NH_VA with Leaf = 0, and a CMD_SYNC that completed)
    /// and called `release_limbo`. What maps something is left exactly as it was.
    pub fn prune(&mut self, pool: &mut TablePool) -> usize {
        let before = self.limbo_len;
        self.prune_table(pool, self.root, self.start_level);
        self.limbo_len - before
    }

    /// Prune below `table` at `level`; true if `table` maps nothing afterwards.
    fn prune_table(&mut self, pool: &mut TablePool, table: PhysAddr, level: u8) -> bool {
        let span = self.span(level);
        let mut empty = true;
        for i in 0..span {
            let pte = pool.read(table, i);
            if !pte.is_valid() {
                continue;
            }
            if pte.is_table(level) && self.prune_table(pool, pte.addr(), level + 1) {
                pool.write(table, i, Pte::INVALID);
                pool.park(pte.addr(), &mut self.limbo);
                self.limbo_len += 1;
                continue;
            }
            empty = false;
        }
        empty
    }

    /// Tables unlinked by `prune` whose invalidation is not yet confirmed.
    pub fn limbo_pages(&self) -> usize {
        self.limbo_len
    }

    /// Return the tables waiting in limbo to the pool; returns how many. The caller has
    /// confirmed an invalidation, issued after they were unlinked, of every walk-cache
    /// entry that could point at them.
    pub fn release_limbo(&mut self, pool: &mut TablePool) -> usize {
        self.limbo_len = 0;
        pool.release(&mut self.limbo)
    }

    /// Entries of a table at `level` that the input size uses.
    fn span(&self, level: u8) -> usize {
        if level == self.start_level {
            1usize << (self.ias_bits - level_shift(level)).min(9)
        } else {
            ENTRIES
        }
    }

    /// Return every table to the pool, those in limbo included. The caller has made sure
    /// no STE or CD refers to this address space any more and has invalidated its ASID and
    /// synced.
    pub fn destroy(mut self, pool: &mut TablePool) {
        self.release_limbo(pool);
        self.free_tables(pool, self.root, self.start_level);
    }

    fn free_tables(&self, pool: &mut TablePool, table: PhysAddr, level: u8) {
        for i in 0..ENTRIES {
            let pte = pool.read(table, i);
            if pte.is_table(level) {
                self.free_tables(pool, pte.addr(), level + 1);
            }
        }
        pool.free_page(table);
    }
}
