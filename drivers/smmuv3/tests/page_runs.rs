//! Attacks on runs of pages (`map` and `unmap` walk to each level-3 table once for their
//! run there): random ranges that start and end mid-table, cross one or many level-3
//! tables, meet 2 MiB blocks, holes and mapped pages, and run the pool dry, each checked
//! against a reference written here from the VMSAv8-64 rules (Arm ARM D8, 4 KiB granule)
//! that shares nothing with the driver's bookkeeping: which pages are mapped where, which
//! tables exist, so how many a map must take from the pool.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use smmuv3::event::id;
use smmuv3::model::{Outcome, PocMemory, SmmuModel};
use smmuv3::pagetable::{Leaf, MemType, PageTable, PageTableError, Perm, Stage, TablePool, BLOCK_SIZE_2M, PAGE_SIZE};
use smmuv3::{Config, Error, Iova, PhysAddr, Smmu, StreamId};

fn pool(pages: usize) -> TablePool {
    // SAFETY: fresh leaked memory used only by this pool.
    unsafe { TablePool::new(common::region(pages * 4096, 4096)) }.unwrap()
}

fn leaves(pt: &PageTable, pool: &TablePool) -> Vec<Leaf> {
    let mut v = Vec::new();
    pt.for_each_leaf(pool, |l| v.push(l));
    v
}

use common::Rng;

/// Bits of IOVA above a table at `level` (1..=3) of a 4 KiB-granule walk: the table at
/// level 1 serves 512 GiB, at 2 1 GiB, at 3 2 MiB.
const fn table_shift(level: u8) -> u32 {
    12 + 9 * (4 - level as u32)
}

/// What an address space whose walk starts at level `start` must hold, by the
/// architecture's rules.
struct Reference {
    /// The level of the root table, which is never allocated or freed by a map.
    start: u8,
    /// Each mapped page: its output address, permission and the leaf it belongs to
    /// (`(base, level)`).
    pages: BTreeMap<u64, (u64, Perm, u64, u8)>,
    /// Each table below the root: `(level, iova >> table_shift(level))`.
    tables: BTreeSet<(u8, u64)>,
}

impl Reference {
    /// `map`'s outcome: refused at the first mapped page; otherwise a 2 MiB block where
    /// both addresses are 2 MiB aligned, 2 MiB remain and no level-3 table is there yet,
    /// pages elsewhere; refused if the pool cannot give every missing table.
    fn map(&mut self, iova: u64, pa: u64, len: u64, perm: Perm, free: usize) -> Result<usize, PageTableError> {
        let end = iova + len;
        if let Some((&page, _)) = self.pages.range(iova..end).next() {
            return Err(PageTableError::AlreadyMapped(Iova(page)));
        }
        let mut chunks = Vec::new();
        let mut new_tables = BTreeSet::new();
        let mut cur = iova;
        while cur < end {
            let out = pa + (cur - iova);
            let block = cur % BLOCK_SIZE_2M == 0
                && out % BLOCK_SIZE_2M == 0
                && end - cur >= BLOCK_SIZE_2M
                && !self.tables.contains(&(3, cur >> table_shift(3)));
            let level = if block { 2 } else { 3 };
            for l in self.start + 1..=level {
                let t = (l, cur >> table_shift(l));
                if !self.tables.contains(&t) {
                    new_tables.insert(t);
                }
            }
            chunks.push((cur, out, level));
            cur += if block { BLOCK_SIZE_2M } else { PAGE_SIZE };
        }
        if new_tables.len() > free {
            return Err(PageTableError::PoolExhausted { needed: new_tables.len(), free });
        }
        self.tables.extend(&new_tables);
        for (base, out, level) in chunks {
            let size = if level == 2 { BLOCK_SIZE_2M } else { PAGE_SIZE };
            for off in (0..size).step_by(PAGE_SIZE as usize) {
                self.pages.insert(base + off, (out + off, perm, base, level));
            }
        }
        Ok(new_tables.len())
    }

    /// `unmap`'s outcome: the leaves removed, in order, or the first page (in address
    /// order) that is not mapped or whose block sticks out of the range.
    fn unmap(&mut self, iova: u64, len: u64) -> Result<Vec<Leaf>, PageTableError> {
        let end = iova + len;
        let mut removed = Vec::new();
        let mut cur = iova;
        while cur < end {
            let Some(&(pa, perm, base, level)) = self.pages.get(&cur) else {
                return Err(PageTableError::NotMapped(Iova(cur)));
            };
            let size = if level == 2 { BLOCK_SIZE_2M } else { PAGE_SIZE };
            if base != cur || cur + size > end {
                return Err(PageTableError::PartialBlock(Iova(base)));
            }
            removed.push(Leaf { iova: Iova(cur), pa: PhysAddr(pa), level, perm });
            cur += size;
        }
        for l in &removed {
            let size = if l.level == 2 { BLOCK_SIZE_2M } else { PAGE_SIZE };
            for off in (0..size).step_by(PAGE_SIZE as usize) {
                self.pages.remove(&(l.iova.0 + off));
            }
        }
        Ok(removed)
    }

    /// After `prune` and `release_limbo`: only the tables that map something are left.
    fn prune(&mut self) {
        let pages = &self.pages;
        self.tables.retain(|&(l, prefix)| {
            let lo = prefix << table_shift(l);
            pages.range(lo..lo + (1 << table_shift(l))).next().is_some()
        });
    }

    fn leaves(&self) -> Vec<Leaf> {
        let mut v: Vec<Leaf> = Vec::new();
        for (&page, &(pa, perm, base, level)) in &self.pages {
            if page == base {
                v.push(Leaf { iova: Iova(page), pa: PhysAddr(pa), level, perm });
            }
        }
        v
    }
}

/// Where ranges fall in a 48-bit space: each window straddles a boundary of a level-1 or
/// level-2 table, so runs there need tables at two or three levels, some of them mid-run.
const WINDOWS: [u64; 3] = [0, (1 << 30) - 4 * BLOCK_SIZE_2M, (1 << 39) - 4 * BLOCK_SIZE_2M];
/// Pages in each window: 16 MiB.
const WINDOW_PAGES: u64 = 4096;

fn random_range(rng: &mut Rng) -> (u64, u64) {
    random_range_below(rng, 48)
}

/// `random_range` in a space of `ias_bits` (at least 25): windows at or above its top
/// are moved down to end there.
fn random_range_below(rng: &mut Rng, ias_bits: u32) -> (u64, u64) {
    let top = 1u64 << ias_bits;
    let base =
        WINDOWS[rng.below(WINDOWS.len() as u64) as usize].min(top - WINDOW_PAGES * PAGE_SIZE - 4 * BLOCK_SIZE_2M);
    match rng.below(4) {
        // A few pages, often inside one table.
        0 => (base + rng.below(WINDOW_PAGES) * PAGE_SIZE, (1 + rng.below(8)) * PAGE_SIZE),
        // A run across one, two or three tables, starting and ending mid-table.
        1 => (base + rng.below(WINDOW_PAGES) * PAGE_SIZE, (1 + rng.below(1300)) * PAGE_SIZE),
        // Whole 2 MiB slots, blocks where the output is aligned too.
        2 => (base + rng.below(WINDOW_PAGES / 512) * BLOCK_SIZE_2M, (1 + rng.below(3)) * BLOCK_SIZE_2M),
        // A block's worth and a bit, from a 2 MiB boundary or just before one.
        _ => {
            let start = base + (1 + rng.below(WINDOW_PAGES / 512 - 1)) * BLOCK_SIZE_2M - rng.below(3) * PAGE_SIZE;
            (start, BLOCK_SIZE_2M + rng.below(4) * PAGE_SIZE)
        }
    }
}

/// Random maps and unmaps of runs, on pools from tiny (every map that needs a new table
/// near the end of its run is refused for want of one) to ample: after every step the
/// result, the error (at which page), the invalidated leaves in order, the leaves in the
/// tables, the tables held and the pool's free count are exactly the reference's. A
/// refused step changes nothing.
#[test]
fn random_runs_agree_with_the_reference() {
    let mut steps = [0usize; 6];
    for seed in 1..=30u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let pool_pages = [4, 6, 9, 16, 64][seed as usize % 5];
        let mut pool = pool(pool_pages);
        // Stage 1 from level 0, stage 2 from levels 0, 1 and 2 (blocks in the root).
        let (stage, ias_bits) =
            [(Stage::Stage1, 48), (Stage::Stage2, 48), (Stage::Stage2, 39), (Stage::Stage2, 32), (Stage::Stage2, 30)]
                [seed as usize / 5 % 5];
        let mut pt = PageTable::new_at(&mut pool, stage, ias_bits, 44).unwrap();
        let mut reference = Reference { start: pt.start_level(), pages: BTreeMap::new(), tables: BTreeSet::new() };
        for step in 0..300 {
            let (iova, len) = random_range_below(&mut rng, ias_bits);
            let before = leaves(&pt, &pool);
            let free = pool.free_pages();
            let what = rng.below(10);
            if what < 5 {
                // The output 2 MiB aligned with the IOVA half the time, so blocks are made.
                let pa = 0x8000_0000 + rng.below(4096) * PAGE_SIZE;
                let pa = if rng.below(2) == 0 { pa - pa % BLOCK_SIZE_2M + iova % BLOCK_SIZE_2M } else { pa };
                let perm = if rng.below(2) == 0 { Perm::Read } else { Perm::ReadWrite };
                let want = reference.map(iova, pa, len, perm, free);
                let got = pt.map(&mut pool, Iova(iova), PhysAddr(pa), len, perm, MemType::Normal);
                let ctx = format!("seed {seed} step {step} {stage:?} {ias_bits}: map {iova:#x}+{len:#x} -> {pa:#x}");
                match want {
                    Ok(tables) => {
                        assert_eq!(got, Ok(()), "{ctx}");
                        assert_eq!(pool.free_pages(), free - tables, "{ctx}: tables taken");
                        steps[0] += 1;
                    }
                    Err(e) => {
                        assert_eq!(got, Err(e), "{ctx}");
                        assert_eq!(leaves(&pt, &pool), before, "{ctx}: a refused map changed the tables");
                        assert_eq!(pool.free_pages(), free, "{ctx}: a refused map took tables");
                        steps[if matches!(e, PageTableError::PoolExhausted { .. }) { 1 } else { 2 }] += 1;
                    }
                }
            } else if what < 9 {
                let mut inval = Vec::new();
                let want = reference.unmap(iova, len);
                let got = pt.unmap(&mut pool, Iova(iova), len, |l| inval.push(l));
                let ctx = format!("seed {seed} step {step} {stage:?} {ias_bits}: unmap {iova:#x}+{len:#x}");
                match want {
                    Ok(removed) => {
                        assert_eq!(got, Ok(removed.len()), "{ctx}");
                        assert_eq!(inval, removed, "{ctx}: invalidations");
                        steps[3] += 1;
                    }
                    Err(e) => {
                        assert_eq!(got, Err(e), "{ctx}");
                        assert_eq!(inval, vec![], "{ctx}: a refused unmap invalidated");
                        assert_eq!(leaves(&pt, &pool), before, "{ctx}: a refused unmap changed the tables");
                        steps[4] += 1;
                    }
                }
                assert_eq!(pool.free_pages(), free, "{ctx}: an unmap keeps its tables");
            } else {
                pt.prune(&mut pool);
                pt.release_limbo(&mut pool);
                reference.prune();
                steps[5] += 1;
            }
            let ctx = format!("seed {seed} step {step}");
            assert_eq!(leaves(&pt, &pool), reference.leaves(), "{ctx}: leaves");
            assert_eq!(pt.table_pages(&pool), 1 + reference.tables.len(), "{ctx}: tables held");
            assert_eq!(pool.free_pages(), pool_pages - 1 - reference.tables.len(), "{ctx}: pool");
            for _ in 0..16 {
                let (probe, _) = random_range_below(&mut rng, ias_bits);
                let want = reference
                    .pages
                    .get(&probe)
                    .map(|&(pa, perm, base, level)| (base, pa - (probe - base), level, perm));
                let got = pt.translate(&pool, Iova(probe)).map(|l| (l.iova.0, l.pa.0, l.level, l.perm));
                assert_eq!(got, want, "{ctx}: translate {probe:#x}");
            }
        }
    }
    // Every kind of outcome happened, often: the reference was not agreeing with nothing.
    assert!(steps.iter().all(|&n| n > 100), "maps, refused for the pool, refused, unmaps, refused, prunes: {steps:?}");
}

/// A driver on a non-coherent model (it reads tables and commands from the PoC only, and
/// caches translations in its TLB), with a command queue of `cmdq_len` bytes (16
/// commands fill it mid-run: the doorbell then rings inside an unmap's clearing) and
/// `table_pages` pages of tables; range invalidation or not; stage 2 as well or not.
fn non_coherent_smmu(
    ril: bool,
    cmdq_len: usize,
    table_pages: usize,
    s2: bool,
) -> (Smmu<SmmuModel>, &'static PocMemory) {
    let poc = PocMemory::leak();
    let mut idr = smmuv3::model::QEMU_IDR;
    idr[5] = (idr[5] & !0b111) | 5;
    if s2 {
        idr[0] |= smmuv3::model::IDR0_S2P | smmuv3::model::IDR0_VMID16;
    }
    if !ril {
        idr[3] &= !(1 << 10);
    }
    let model = SmmuModel::with_idr(idr);
    model.non_coherent(poc);
    let mem = smmuv3::Memory {
        stream_table: common::region(64 << 10, 64 << 10),
        cmdq: common::region(cmdq_len, cmdq_len),
        eventq: common::region(4096, 4096),
        cds: common::region(4096, 4096),
        tables: common::region(table_pages * 4096, 4096),
    };
    poc.watch_memory(&mem);
    let cfg = Config { platform_coherent: false, cache: Some(poc), ..common::config() };
    // SAFETY: fresh memory; the model is the only register file.
    let smmu = unsafe { Smmu::init(model, mem, cfg) }.expect("a non-coherent SMMU");
    (smmu, poc)
}

/// Pages of `[iova, iova + len)` worth asking the SMMU about: both ends, each side of
/// every 2 MiB boundary inside, and a few between.
fn probes(rng: &mut Rng, iova: u64, len: u64) -> Vec<u64> {
    let end = iova + len;
    let mut v = vec![iova, end - PAGE_SIZE];
    let mut b = (iova | (BLOCK_SIZE_2M - 1)) + 1;
    while b < end {
        v.extend([b - PAGE_SIZE, b]);
        b += BLOCK_SIZE_2M;
    }
    v.extend((0..4).map(|_| iova + rng.below(len / PAGE_SIZE) * PAGE_SIZE));
    v
}

/// Random maps, unmaps, batches of unmaps and deferred unmaps with their one sync, on a
/// non-coherent SMMU whose TLB caches what it walked (the probes before each step fill
/// it): after every step, nothing the SMMU may read differs from the PoC and no register
/// write told it to read a stale line; every probed page translates as the reference
/// says (output address and permission, read and write), at once after a map or a
/// confirmed unmap (no stale TLB entry, no half-written run), and a deferred unmap's
/// pages either way until its sync, then not at all. A refused step changes no
/// translation. Pools small enough that maps meet exhaustion and the reclaim it starts.
#[test]
fn random_runs_on_a_non_coherent_smmu_translate_as_the_reference() {
    const SID: u32 = 0x08;
    let mut steps = [0usize; 6];
    for seed in 1..=16u64 {
        let mut rng = Rng(seed.wrapping_mul(0xd1b5_4a32_d192_ed03) | 1);
        // Stage 1, or for the second eight seeds stage 2: its TLBIs by IPA and VMID.
        let s2 = seed > 8;
        let (mut smmu, poc) =
            non_coherent_smmu(seed % 2 == 0, [256, 4096][seed as usize / 2 % 2], [14, 40][seed as usize / 4 % 2], s2);
        let d = if s2 { smmu.create_stage2_domain(48).unwrap() } else { smmu.create_domain().unwrap() };
        smmu.attach(StreamId(SID), d).unwrap();
        // Page -> (output, permission); and the pages of deferred unmaps not yet synced.
        let mut mapped: BTreeMap<u64, (u64, Perm)> = BTreeMap::new();
        let mut deferred: BTreeMap<u64, (u64, Perm)> = BTreeMap::new();
        // Pages an unmap whose invalidation the SMMU rejected took out of the tables: the
        // SMMU may translate them as before until the domain's next operation, which
        // invalidates it whole first. And whether such a rejection is armed, or was
        // consumed since the last sync of deferred unmaps, which may then report it.
        let mut stale: BTreeMap<u64, (u64, Perm)> = BTreeMap::new();
        let (mut armed, mut deferred_rejected) = (false, false);
        // What maps made, for unmaps to take whole or in part (random ranges seldom
        // cover mappings exactly).
        let mut made: Vec<(u64, u64)> = Vec::new();
        for step in 0..200 {
            let what = rng.below(12);
            // The operation below flushes a stale domain before anything else.
            stale.clear();
            if what >= 5 && !armed && rng.below(8) == 0 {
                smmu.reject_next_invalidation();
                armed = true;
            }
            let (iova, len) = match made.len() {
                n if what >= 5 && n > 0 && rng.below(3) != 0 => {
                    let (iova, len) = made[rng.below(n as u64) as usize];
                    if rng.below(2) == 0 {
                        (iova, len)
                    } else {
                        let first = rng.below(len / PAGE_SIZE);
                        (iova + first * PAGE_SIZE, (1 + rng.below(len / PAGE_SIZE - first)) * PAGE_SIZE)
                    }
                }
                _ => random_range(&mut rng),
            };
            let mut seen = probes(&mut rng, iova, len);
            for &p in &seen {
                smmu.regs().translate(SID, p, false);
            }
            let ctx = format!("seed {seed} step {step} ({what}, stage 2 {s2}): {iova:#x}+{len:#x}");
            let pages = (iova..iova + len).step_by(PAGE_SIZE as usize);
            if what < 5 {
                let pa = 0x8000_0000 + rng.below(4096) * PAGE_SIZE;
                let pa = if rng.below(2) == 0 { pa - pa % BLOCK_SIZE_2M + iova % BLOCK_SIZE_2M } else { pa };
                let perm = if rng.below(2) == 0 { Perm::Read } else { Perm::ReadWrite };
                let free = pages.clone().all(|p| !mapped.contains_key(&p));
                match smmu.map(d, Iova(iova), PhysAddr(pa), len, perm, MemType::Normal) {
                    Ok(()) => {
                        assert!(free, "{ctx}: mapped over a mapping");
                        // A map over a deferred range waits for its sync (and, should
                        // that fail, invalidates the domain whole): those pages are gone.
                        // A rejection the sync met is still the deferred unmaps', for
                        // `sync_deferred` to report.
                        if pages.clone().any(|p| deferred.contains_key(&p)) {
                            deferred.clear();
                        }
                        mapped.extend(pages.map(|p| (p, (pa + (p - iova), perm))));
                        made.push((iova, len));
                        steps[0] += 1;
                    }
                    Err(Error::PageTable(PageTableError::AlreadyMapped(at))) => {
                        assert!(mapped.contains_key(&at.0) && !free, "{ctx}: refused at {at:#x}, not mapped");
                        steps[1] += 1;
                    }
                    Err(Error::PageTable(PageTableError::PoolExhausted { .. })) => steps[1] += 1,
                    // The reclaim a dry pool starts syncs, and so meets a rejected
                    // deferred TLBI first: the map is refused (and the sync reports it
                    // too).
                    Err(Error::CommandError { .. }) if deferred_rejected => steps[1] += 1,
                    Err(e) => panic!("{ctx}: map: {e:?}"),
                }
            } else {
                let kind = what % 3;
                let r = match kind {
                    0 => smmu.unmap(d, Iova(iova), len),
                    1 => smmu.unmap_deferred(d, Iova(iova), len),
                    _ => {
                        // Two ranges of one batch: this one and the pages after it.
                        let second = if made.is_empty() || rng.below(2) == 0 {
                            (iova + len, (1 + rng.below(600)) * PAGE_SIZE)
                        } else {
                            made[rng.below(made.len() as u64) as usize]
                        };
                        let r = smmu.unmap_batch(d, &[(Iova(iova), len), (Iova(second.0), second.1)]);
                        if !matches!(r, Err(Error::PageTable(_))) {
                            for p in (second.0..second.0 + second.1).step_by(PAGE_SIZE as usize) {
                                let old = mapped.remove(&p);
                                assert!(old.is_some(), "{ctx}: batch unmapped {p:#x}, not mapped");
                                if r.is_err() {
                                    stale.insert(p, old.unwrap());
                                }
                                seen.push(p);
                            }
                        }
                        r
                    }
                };
                // (An unmap whose rejected TLBI the driver covered with one by ASID, confirmed,
                // succeeds: the translations below say whether it may.)
                // Any sync that fails while deferred unmaps wait fails theirs too (it cannot
                // tell which command the SMMU refused): theirs is reported as well.
                if !matches!(r, Err(Error::PageTable(_))) && std::mem::take(&mut armed) {
                    deferred_rejected = true;
                }
                match r {
                    Ok(_) => {
                        for p in pages {
                            let old = mapped.remove(&p);
                            assert!(old.is_some(), "{ctx}: unmapped {p:#x}, not mapped");
                            if kind == 1 {
                                deferred.insert(p, old.unwrap());
                            }
                        }
                        steps[2] += 1;
                    }
                    Err(Error::PageTable(_)) => steps[3] += 1,
                    Err(Error::CommandError { .. }) => {
                        // Out of the tables, the SMMU not confirming it: stale until the
                        // domain's next operation. (A batch's second range was taken out
                        // above.)
                        for p in pages {
                            let old = mapped.remove(&p);
                            assert!(old.is_some(), "{ctx}: unmapped {p:#x}, not mapped");
                            stale.insert(p, old.unwrap());
                        }
                        steps[5] += 1;
                    }
                    Err(e) => panic!("{ctx}: unmap: {e:?}"),
                }
            }
            if rng.below(4) == 0 {
                match smmu.sync_deferred() {
                    Ok(()) => {}
                    Err(e) => {
                        assert!(deferred_rejected, "{ctx}: sync: {e:?}");
                        stale.append(&mut deferred);
                    }
                }
                deferred.clear();
                deferred_rejected = false;
                steps[4] += 1;
            }
            assert_eq!(poc.stale_lines(), Vec::<u64>::new(), "{ctx}: lines written and not cleaned to the PoC");
            assert_eq!(smmu.regs().violations(), Vec::<&str>::new(), "{ctx}");
            seen.extend((0..8).map(|_| random_range(&mut rng).0));
            for &p in &seen {
                let read = smmu.regs().translate(SID, p, false);
                let write = smmu.regs().translate(SID, p, true);
                let want = match mapped.get(&p) {
                    Some(&(pa, Perm::ReadWrite)) => (Outcome::Ok(pa), Outcome::Ok(pa)),
                    Some(&(pa, Perm::Read)) => (Outcome::Ok(pa), Outcome::Fault(id::F_PERMISSION)),
                    None => (Outcome::Fault(id::F_TRANSLATION), Outcome::Fault(id::F_TRANSLATION)),
                };
                if (read, write) != want {
                    // Until its sync, a deferred unmap's page may still translate as before.
                    let old = deferred.get(&p).or(stale.get(&p)).is_some_and(|&(pa, _)| read == Outcome::Ok(pa));
                    assert!(old, "{ctx}: {p:#x} translates {read:?}/{write:?}, not {want:?}");
                }
            }
        }
        let _ = smmu.sync_deferred();
        // A map flushes whatever is stale before it is refused.
        let beyond = smmu.map(d, Iova(1 << 48), PhysAddr(0x8000_0000), PAGE_SIZE, Perm::Read, MemType::Normal);
        assert_eq!(beyond, Err(Error::PageTable(PageTableError::IovaOutOfRange)));
        for &p in deferred.keys().chain(stale.keys()) {
            assert_eq!(
                smmu.regs().translate(SID, p, false),
                Outcome::Fault(id::F_TRANSLATION),
                "seed {seed}: {p:#x} after the sync"
            );
        }
    }
    assert!(steps[..5].iter().all(|&n| n > 50), "maps, refused, unmaps, refused, syncs, rejected: {steps:?}");
    assert!(steps[5] > 10, "unmaps whose invalidation was rejected: {steps:?}");
}

/// Runs at the very top of the input range, where the last level-3 table ends with the
/// space: mapped, translated and unmapped to the last page; one page more is refused
/// and changes nothing.
#[test]
fn runs_at_the_top_of_the_input_range() {
    for (stage, ias_bits) in [(Stage::Stage1, 48), (Stage::Stage2, 39), (Stage::Stage2, 30), (Stage::Stage2, 25)] {
        let mut pool = pool(8);
        let mut pt = PageTable::new_at(&mut pool, stage, ias_bits, 44).unwrap();
        let top = 1u64 << ias_bits;
        let (iova, len) = (top - BLOCK_SIZE_2M - 3 * PAGE_SIZE, BLOCK_SIZE_2M + 3 * PAGE_SIZE);
        let free = pool.free_pages();
        let ctx = format!("{stage:?} {ias_bits}");
        assert_eq!(
            pt.map(
                &mut pool,
                Iova(iova),
                PhysAddr(0x4000_0000 - 3 * PAGE_SIZE),
                len + PAGE_SIZE,
                Perm::Read,
                MemType::Normal
            ),
            Err(PageTableError::IovaOutOfRange),
            "{ctx}"
        );
        assert_eq!((leaves(&pt, &pool), pool.free_pages()), (vec![], free), "{ctx}");
        pt.map(&mut pool, Iova(iova), PhysAddr(0x4000_0000 - 3 * PAGE_SIZE), len, Perm::Read, MemType::Normal).unwrap();
        let got: Vec<(u64, u64, u8)> = leaves(&pt, &pool).iter().map(|l| (l.iova.0, l.pa.0, l.level)).collect();
        // Three pages below the last 2 MiB, then that 2 MiB as a block.
        let want: Vec<(u64, u64, u8)> = (0..3)
            .map(|k| (iova + k * PAGE_SIZE, 0x4000_0000 - (3 - k) * PAGE_SIZE, 3))
            .chain([(top - BLOCK_SIZE_2M, 0x4000_0000, 2)])
            .collect();
        assert_eq!(got, want, "{ctx}");
        assert_eq!(pt.translate(&pool, Iova(top - PAGE_SIZE)).map(|l| l.level), Some(2), "{ctx}");
        let mut inval = Vec::new();
        assert_eq!(pt.unmap(&mut pool, Iova(iova), len, |l| inval.push((l.iova.0, l.level))), Ok(4), "{ctx}");
        assert_eq!(inval, want.iter().map(|&(i, _, l)| (i, l)).collect::<Vec<_>>(), "{ctx}");
        assert_eq!(leaves(&pt, &pool), vec![], "{ctx}");
        // Pages to the very last, the block's slot now holding a level-3 table.
        pt.map(
            &mut pool,
            Iova(top - 2 * PAGE_SIZE),
            PhysAddr(0x5000_0000),
            2 * PAGE_SIZE,
            Perm::ReadWrite,
            MemType::Normal,
        )
        .unwrap();
        assert_eq!(
            pt.translate(&pool, Iova(top - PAGE_SIZE)).map(|l| (l.pa.0, l.level)),
            Some((0x5000_1000, 3)),
            "{ctx}"
        );
        assert_eq!(pt.unmap(&mut pool, Iova(top - 2 * PAGE_SIZE), 2 * PAGE_SIZE, |_| {}), Ok(2), "{ctx}");
    }
}
