//! Page-table operations: exact descriptors, refusals that change nothing, pool limits.

mod common;

use smmuv3::pagetable::{Leaf, MemType, PageTable, PageTableError, Perm, Pte, TablePool, BLOCK_SIZE_2M, PAGE_SIZE};
use smmuv3::{Iova, PhysAddr};

fn pool(pages: usize) -> TablePool {
    // SAFETY: fresh leaked memory used only by this pool.
    unsafe { TablePool::new(common::region(pages * 4096, 4096)) }.unwrap()
}

fn leaves(pt: &PageTable, pool: &TablePool) -> Vec<Leaf> {
    let mut v = Vec::new();
    pt.for_each_leaf(pool, |l| v.push(l));
    v
}

/// Descriptor bits checked against aarch64-paging (google/aarch64-paging 0.12.3, which we
/// did not write): the same attributes given to its `RootTable::map_range` produce the
/// same descriptor word, for a level-3 page and a level-2 block.
#[test]
fn leaf_descriptors_match_aarch64_paging() {
    use aarch64_paging::descriptor::El1Attributes as A;
    use aarch64_paging::descriptor::PhysicalAddress;
    use aarch64_paging::paging::{Constraints, El1And0, MemoryRegion, RootTable, VaRange};
    use aarch64_paging::target::TargetAllocator;

    for (perm, ro) in [(Perm::ReadWrite, A::empty()), (Perm::Read, A::READ_ONLY)] {
        for (va, pa, len, level) in
            [(0x1000usize, 0x4_2000usize, 0x1000usize, 3u8), (0x20_0000, 0x4020_0000, 0x20_0000, 2)]
        {
            let mut theirs = RootTable::with_va_range(TargetAllocator::new(0x1_0000), 1, El1And0, VaRange::Lower);
            let flags = A::VALID
                | A::ATTRIBUTE_INDEX_0
                | A::INNER_SHAREABLE
                | A::USER
                | ro
                | A::ACCESSED
                | A::NON_GLOBAL
                | A::PXN
                | A::UXN;
            theirs
                .map_range(&MemoryRegion::new(va, va + len), PhysicalAddress(pa), flags, Constraints::empty())
                .unwrap();
            let mut found = None;
            theirs
                .walk_range(&MemoryRegion::new(va, va + len), &mut |_, d, l| {
                    if l == level as usize {
                        // Their descriptor, reassembled from their decoding of it.
                        found = Some(d.output_address().0 as u64 | d.flags().bits() as u64);
                    }
                    Ok(())
                })
                .unwrap();
            let ours = Pte::leaf(PhysAddr(pa as u64), level, perm, MemType::Normal).0;
            assert_eq!(Some(ours), found, "level {level} {perm:?}");
        }
    }
}

/// VMSAv8-64 descriptor fields (Arm ARM D8.3.1/D8.3.2): exact words.
#[test]
fn descriptor_words() {
    // Page, RW, normal: valid|page (0b11), AttrIndx 0, AP[1]=1 (0x40), SH=IS (0x300),
    // AF (0x400), nG (0x800), PXN (bit 53), UXN (bit 54).
    assert_eq!(Pte::leaf(PhysAddr(0x4000_1000), 3, Perm::ReadWrite, MemType::Normal).0, 0x0060_0000_4000_1f43);
    // Read-only adds AP[2] (0x80).
    assert_eq!(Pte::leaf(PhysAddr(0x4000_1000), 3, Perm::Read, MemType::Normal).0, 0x0060_0000_4000_1fc3);
    // Block (type 0) at level 2, device (AttrIndx 1 = 0x4), not shareable.
    assert_eq!(Pte::leaf(PhysAddr(0x4020_0000), 2, Perm::ReadWrite, MemType::Device).0, 0x0060_0000_4020_0c45);
    assert_eq!(Pte::table(PhysAddr(0x8_0000)).0, 0x8_0003);
}

#[test]
fn map_translate_unmap_pages_and_blocks() {
    let mut pool = pool(16);
    let mut pt = PageTable::new(&mut pool, 48, 44).unwrap();
    pt.map(&mut pool, Iova(0x1000), PhysAddr(0x8000_0000), 0x3000, Perm::ReadWrite, MemType::Normal).unwrap();
    pt.map(&mut pool, Iova(0x40_0000), PhysAddr(0x9000_0000), 2 * BLOCK_SIZE_2M, Perm::Read, MemType::Normal).unwrap();
    let l = leaves(&pt, &pool);
    assert_eq!(l.len(), 5);
    assert_eq!(l[0], Leaf { iova: Iova(0x1000), pa: PhysAddr(0x8000_0000), level: 3, perm: Perm::ReadWrite });
    assert_eq!(l[3], Leaf { iova: Iova(0x40_0000), pa: PhysAddr(0x9000_0000), level: 2, perm: Perm::Read });
    let t = pt.translate(&pool, Iova(0x41_2345)).unwrap();
    assert_eq!((t.pa, t.level), (PhysAddr(0x9000_0000), 2));

    let mut inval = Vec::new();
    assert_eq!(pt.unmap(&mut pool, Iova(0x2000), 0x1000, |l| inval.push(l.iova)).unwrap(), 1);
    assert_eq!(inval, vec![Iova(0x2000)]);
    assert!(pt.translate(&pool, Iova(0x2000)).is_none());
    assert!(pt.translate(&pool, Iova(0x1000)).is_some());
}

#[test]
fn refusals_change_nothing() {
    let mut pool = pool(16);
    let mut pt = PageTable::new(&mut pool, 48, 44).unwrap();
    pt.map(&mut pool, Iova(0x20_0000), PhysAddr(0x8020_0000), BLOCK_SIZE_2M, Perm::ReadWrite, MemType::Normal).unwrap();
    pt.map(&mut pool, Iova(0x1000), PhysAddr(0x1000), PAGE_SIZE, Perm::Read, MemType::Normal).unwrap();
    let before = leaves(&pt, &pool);
    let free = pool.free_pages();
    let cases: [(u64, u64, PageTableError); 6] = [
        (0x1ff000, 0x2000, PageTableError::AlreadyMapped(Iova(0x200000))), // runs into the block
        (0x21_0000, 0x1000, PageTableError::AlreadyMapped(Iova(0x21_0000))), // inside the block
        (0x1800, 0x1000, PageTableError::Misaligned),
        (0x5000, 0, PageTableError::Empty),
        (u64::MAX - 0xfff, 0x2000, PageTableError::IovaOutOfRange), // wraps
        (1 << 48, 0x1000, PageTableError::IovaOutOfRange),
    ];
    for (iova, len, err) in cases {
        assert_eq!(
            pt.map(&mut pool, Iova(iova), PhysAddr(0x7000_0000), len, Perm::ReadWrite, MemType::Normal),
            Err(err)
        );
    }
    assert_eq!(
        pt.map(&mut pool, Iova(0x8000), PhysAddr((1 << 44) - 0x1000), 0x2000, Perm::Read, MemType::Normal),
        Err(PageTableError::PhysOutOfRange)
    );
    let no_inval = |_: Leaf| panic!("nothing may be invalidated on a refused unmap");
    assert_eq!(
        pt.unmap(&mut pool, Iova(0x20_0000), 0x1000, no_inval),
        Err(PageTableError::PartialBlock(Iova(0x20_0000)))
    );
    assert_eq!(pt.unmap(&mut pool, Iova(0x0), 0x2000, no_inval), Err(PageTableError::NotMapped(Iova(0))));
    assert_eq!(pt.unmap(&mut pool, Iova(0x1000), 0x2000, no_inval), Err(PageTableError::NotMapped(Iova(0x2000))));
    assert_eq!(leaves(&pt, &pool), before);
    assert_eq!(pool.free_pages(), free);
    // Double unmap: the second one is refused.
    pt.unmap(&mut pool, Iova(0x1000), 0x1000, |_| {}).unwrap();
    assert_eq!(pt.unmap(&mut pool, Iova(0x1000), 0x1000, no_inval), Err(PageTableError::NotMapped(Iova(0x1000))));
}

#[test]
fn pool_exhaustion_is_an_error_and_changes_nothing() {
    // Root + L1 + L2 + L3 = 4 pages for the first page; a page far away needs 3 more.
    let mut pool = pool(5);
    let mut pt = PageTable::new(&mut pool, 48, 44).unwrap();
    pt.map(&mut pool, Iova(0x1000), PhysAddr(0x1000), 0x1000, Perm::Read, MemType::Normal).unwrap();
    assert_eq!(pool.free_pages(), 1);
    assert_eq!(
        pt.map(&mut pool, Iova(1 << 40), PhysAddr(0x1000), 0x1000, Perm::Read, MemType::Normal),
        Err(PageTableError::PoolExhausted { needed: 3, free: 1 })
    );
    assert_eq!(pool.free_pages(), 1);
    assert_eq!(leaves(&pt, &pool).len(), 1);
    // A page next to the first one needs no table.
    pt.map(&mut pool, Iova(0x2000), PhysAddr(0x2000), 0x1000, Perm::Read, MemType::Normal).unwrap();
    assert_eq!(pt.table_pages(&pool), 4);
    pt.destroy(&mut pool);
    assert_eq!(pool.free_pages(), 5);
}

#[test]
fn protect_narrows_and_reports_each_leaf() {
    let mut pool = pool(8);
    let mut pt = PageTable::new(&mut pool, 39, 44).unwrap();
    pt.map(&mut pool, Iova(0x10_0000), PhysAddr(0x5000_0000), 0x4000, Perm::ReadWrite, MemType::Normal).unwrap();
    let mut inval = Vec::new();
    assert_eq!(pt.protect(&mut pool, Iova(0x10_1000), 0x2000, Perm::Read, |l| inval.push(l.iova.0)).unwrap(), 2);
    assert_eq!(inval, vec![0x10_1000, 0x10_2000]);
    assert_eq!(pt.translate(&pool, Iova(0x10_1000)).unwrap().perm, Perm::Read);
    assert_eq!(pt.translate(&pool, Iova(0x10_3000)).unwrap().perm, Perm::ReadWrite);
    // A 39-bit space starts at level 1: three levels of tables for a page.
    assert_eq!(pt.table_pages(&pool), 3);
}

#[test]
fn prune_unlinks_only_what_maps_nothing_and_holds_it_until_released() {
    let mut pool = pool(8);
    let mut pt = PageTable::new(&mut pool, 48, 44).unwrap();
    // Two pages in different level-1 ranges: root + 2 x (L1, L2, L3) = 7 pages.
    pt.map(&mut pool, Iova(0x1000), PhysAddr(0x1000), 0x1000, Perm::Read, MemType::Normal).unwrap();
    pt.map(&mut pool, Iova(1 << 39), PhysAddr(0x2000), 0x1000, Perm::Read, MemType::Normal).unwrap();
    assert_eq!((pt.table_pages(&pool), pool.free_pages()), (7, 1));
    // Nothing is empty yet: nothing moves.
    assert_eq!(pt.prune(&mut pool), 0);
    pt.unmap(&mut pool, Iova(1 << 39), 0x1000, |_| {}).unwrap();
    // Unmap keeps the tables; prune unlinks the three that now map nothing, but they stay
    // out of the pool until released (the caller confirms an invalidation first).
    assert_eq!(pt.table_pages(&pool), 7);
    assert_eq!(pt.prune(&mut pool), 3);
    assert_eq!((pt.table_pages(&pool), pt.limbo_pages(), pool.free_pages()), (4, 3, 1));
    assert_eq!(pt.translate(&pool, Iova(0x1000)).map(|l| l.pa), Some(PhysAddr(0x1000)));
    assert!(pt.translate(&pool, Iova(1 << 39)).is_none());
    assert_eq!(leaves(&pt, &pool).len(), 1);
    assert_eq!(pt.release_limbo(&mut pool), 3);
    assert_eq!((pt.limbo_pages(), pool.free_pages()), (0, 4));
    // A 2 MiB block where a level-3 table was: once pruned, the block fits.
    pt.map(&mut pool, Iova(0x20_0000), PhysAddr(0x20_0000), 0x1000, Perm::Read, MemType::Normal).unwrap();
    pt.unmap(&mut pool, Iova(0x20_0000), 0x1000, |_| {}).unwrap();
    pt.unmap(&mut pool, Iova(0x1000), 0x1000, |_| {}).unwrap();
    // L1, L2 and the two level-3 tables.
    assert_eq!(pt.prune(&mut pool), 4);
    pt.release_limbo(&mut pool);
    pt.map(&mut pool, Iova(0x20_0000), PhysAddr(0x20_0000), 2 << 20, Perm::Read, MemType::Normal).unwrap();
    assert_eq!(pt.translate(&pool, Iova(0x20_0000)).map(|l| l.level), Some(2));
    // Destroy returns everything, limbo included.
    pt.unmap(&mut pool, Iova(0x20_0000), 2 << 20, |_| {}).unwrap();
    pt.prune(&mut pool);
    pt.destroy(&mut pool);
    assert_eq!(pool.free_pages(), 8);
}

/// A run of pages is walked to once per level-3 table, its entries checked, written and
/// cleared together (`map`, `unmap`): the same leaves, refusals and invalidations as page
/// by page, across a table boundary (16 pages from 0x1f_8000: 8 in the table below 2 MiB,
/// 8 in the one above).
#[test]
fn runs_of_pages_across_a_table_boundary_are_mapped_checked_and_cleared_page_by_page() {
    let mut pool = pool(16);
    let mut pt = PageTable::new(&mut pool, 48, 44).unwrap();
    let (iova, pa, len) = (0x1f_8000u64, 0x8000_0000u64, 16 * PAGE_SIZE);
    pt.map(&mut pool, Iova(iova), PhysAddr(pa), len, Perm::ReadWrite, MemType::Normal).unwrap();
    let want: Vec<Leaf> = (0..16)
        .map(|k| Leaf {
            iova: Iova(iova + k * PAGE_SIZE),
            pa: PhysAddr(pa + k * PAGE_SIZE),
            level: 3,
            perm: Perm::ReadWrite,
        })
        .collect();
    assert_eq!(leaves(&pt, &pool), want);
    let tables = pool.free_pages();

    // A map whose run meets a mapped page: refused at that page, nothing written.
    let no_inval = |_: Leaf| panic!("nothing may be invalidated on a refused unmap");
    assert_eq!(
        pt.map(&mut pool, Iova(0x1f_0000), PhysAddr(0x9000_0000), 0x16_000, Perm::Read, MemType::Normal),
        Err(PageTableError::AlreadyMapped(Iova(iova)))
    );
    // An unmap over a hole in the second table's run: refused at the hole, nothing cleared.
    assert_eq!(pt.unmap(&mut pool, Iova(0x20_4000), 0x8000, no_inval), Err(PageTableError::NotMapped(Iova(0x20_8000))));
    assert_eq!(leaves(&pt, &pool), want);
    assert_eq!(pool.free_pages(), tables);

    // Part of a run, inside one table: exactly those leaves, in order, with their
    // addresses and permissions; the neighbours stay.
    let mut inval = Vec::new();
    assert_eq!(pt.unmap(&mut pool, Iova(0x1f_a000), 0x3000, |l| inval.push(l)).unwrap(), 3);
    assert_eq!(inval, want[2..5].to_vec());
    // A map from the hole that runs into the mapped page after it: refused at that page.
    assert_eq!(
        pt.map(&mut pool, Iova(0x1f_a000), PhysAddr(0x9000_0000), 0x4000, Perm::Read, MemType::Normal),
        Err(PageTableError::AlreadyMapped(Iova(0x1f_d000)))
    );
    // The rest, across the boundary.
    inval.clear();
    let rest: Vec<Leaf> = want[..2].iter().chain(&want[5..]).copied().collect();
    pt.unmap(&mut pool, Iova(iova), 2 * PAGE_SIZE, |l| inval.push(l)).unwrap();
    assert_eq!(pt.unmap(&mut pool, Iova(0x1f_d000), 11 * PAGE_SIZE, |l| inval.push(l)).unwrap(), 11);
    assert_eq!(inval, rest);
    assert_eq!(leaves(&pt, &pool), vec![]);
    // Mapped again in one go: the same descriptors.
    pt.map(&mut pool, Iova(iova), PhysAddr(pa), len, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(leaves(&pt, &pool), want);
}

/// The pool's memory, every table's every word: what the SMMU would walk.
fn words(pool: &TablePool) -> Vec<u64> {
    let r = pool.region();
    // SAFETY: the pool's region is `len` bytes of live memory, 8-aligned (page tables).
    unsafe { core::slice::from_raw_parts(r.va.as_ptr().cast::<u64>(), r.len / 8) }.to_vec()
}

/// A one-page map or unmap takes a shorter path than a run (`map_page`, and a run of one
/// cleared without the run's set-up); it must do what the run code does. Two pages that
/// straddle a 2 MiB boundary, as one two-page request, are two runs of one entry, one in
/// each level-3 table: the same pages one request each must leave the same words in
/// every table, invalidate the same leaves in the same order, and refuse at the same
/// page with the same error, changing nothing. Cleans are compared on the non-coherent
/// model (`tests/coherency.rs`).
#[test]
fn a_one_page_map_or_unmap_does_what_a_run_of_one_does() {
    let mut pool = pool(16);
    let mut pt = PageTable::new(&mut pool, 48, 44).unwrap();
    let (p0, p1, pa) = (0x1f_f000u64, 0x20_0000u64, 0x8000_0000u64);
    for mem in [MemType::Normal, MemType::Device] {
        for perm in [Perm::Read, Perm::ReadWrite] {
            // The first one-page map has no level-3 table to write in (the passes make
            // it); every later one does (tables stay after an unmap).
            pt.map(&mut pool, Iova(p0), PhysAddr(pa), PAGE_SIZE, perm, mem).unwrap();
            pt.map(&mut pool, Iova(p1), PhysAddr(pa + PAGE_SIZE), PAGE_SIZE, perm, mem).unwrap();
            let pages = words(&pool);
            let mut one = Vec::new();
            assert_eq!(pt.unmap(&mut pool, Iova(p0), PAGE_SIZE, |l| one.push(l)), Ok(1));
            assert_eq!(pt.unmap(&mut pool, Iova(p1), PAGE_SIZE, |l| one.push(l)), Ok(1));
            let empty = words(&pool);

            pt.map(&mut pool, Iova(p0), PhysAddr(pa), 2 * PAGE_SIZE, perm, mem).unwrap();
            assert_eq!(words(&pool), pages, "{mem:?} {perm:?}: the same descriptors, the same tables");
            let mut run = Vec::new();
            assert_eq!(pt.unmap(&mut pool, Iova(p0), 2 * PAGE_SIZE, |l| run.push(l)), Ok(2));
            assert_eq!(one, run, "{mem:?} {perm:?}: the same invalidations, in order");
            assert_eq!(one.len(), 2);
            assert_eq!(words(&pool), empty);
        }
    }

    // Refusals: with one of the two pages mapped, the one-page request for it and the
    // run over both are refused at that page, and neither changes a word.
    let no_inval = |_: Leaf| panic!("nothing may be invalidated on a refused unmap");
    for (mapped, hole) in [(p0, p1), (p1, p0)] {
        pt.map(&mut pool, Iova(mapped), PhysAddr(pa), PAGE_SIZE, Perm::Read, MemType::Normal).unwrap();
        let before = words(&pool);
        let refused = Err(PageTableError::AlreadyMapped(Iova(mapped)));
        assert_eq!(pt.map(&mut pool, Iova(mapped), PhysAddr(pa), PAGE_SIZE, Perm::Read, MemType::Normal), refused);
        assert_eq!(pt.map(&mut pool, Iova(p0), PhysAddr(pa), 2 * PAGE_SIZE, Perm::Read, MemType::Normal), refused);
        let refused = Err(PageTableError::NotMapped(Iova(hole)));
        assert_eq!(pt.unmap(&mut pool, Iova(hole), PAGE_SIZE, no_inval), refused);
        assert_eq!(pt.unmap(&mut pool, Iova(p0), 2 * PAGE_SIZE, no_inval), refused);
        assert_eq!(pt.check_unmap(&pool, Iova(hole), PAGE_SIZE), refused);
        assert_eq!(words(&pool), before, "mapped {mapped:#x}: refusals change nothing");
        pt.unmap(&mut pool, Iova(mapped), PAGE_SIZE, |_| {}).unwrap();
    }

    // A page inside a block: the one-page map finds no level-3 table and the passes
    // refuse it; the one-page unmap is refused as part of the block.
    pt.map(&mut pool, Iova(0x40_0000), PhysAddr(0x8040_0000), BLOCK_SIZE_2M, Perm::Read, MemType::Normal).unwrap();
    let before = words(&pool);
    assert_eq!(
        pt.map(&mut pool, Iova(0x40_1000), PhysAddr(pa), PAGE_SIZE, Perm::Read, MemType::Normal),
        Err(PageTableError::AlreadyMapped(Iova(0x40_1000)))
    );
    assert_eq!(
        pt.unmap(&mut pool, Iova(0x40_1000), PAGE_SIZE, no_inval),
        Err(PageTableError::PartialBlock(Iova(0x40_0000)))
    );
    assert_eq!(words(&pool), before);
}
