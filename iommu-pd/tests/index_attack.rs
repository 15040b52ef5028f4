//! Attacks on the index's shapes (`iommu_pd::index`), against `BTreeMap`: a root leaf in
//! no order with extreme keys, a root leaf exactly full then split and a tree collapsing
//! back to one, the finger (`Root::tail`) at the right edge through merges, shares and its
//! own removals, the counts it owes either way across a split of the rightmost leaf, and
//! many trees sharing the pools so that a node one frees another takes; a queued batch's
//! removals filed again after a failed sync, and REVOKE's walk resumed after each batch
//! of removals. After every step the changed tree answers every read (find, floor, ceil,
//! select, walk, walk_from, last) as the reference does, at every key and its neighbours
//! (at 32 of them in a tree over 64), and every tree passes `Index::check` (so a finger
//! left on a node another tree took is found). `INDEX_ATTACK_STEPS` and
//! `INDEX_ATTACK_SEED` make longer and other runs.

mod common;

use std::collections::BTreeMap;

use common::random::Rng;
use iommu_pd::index::{inners_for, leaves_for, Index, Inner, Leaf, Root, Take};

const PAGE: u64 = 0x1000;
/// The highest page-aligned key.
const TOP: u64 = u64::MAX - (PAGE - 1);

/// The tests' xorshift, as a closure.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut g = Rng(seed);
    move || g.next()
}

/// Steps for the random runs: `INDEX_ATTACK_STEPS` for a long run.
fn steps(default: usize) -> usize {
    std::env::var("INDEX_ATTACK_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A seed for the random runs: `INDEX_ATTACK_SEED` added to `base`.
fn seed(base: u64) -> u64 {
    base + std::env::var("INDEX_ATTACK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Trees over pools sized for `slots` mapping slots, with their references.
struct Trees {
    roots: Vec<Root>,
    maps: Vec<BTreeMap<u64, u16>>,
    free: Vec<u16>,
}

impl Trees {
    fn new(slots: usize, trees: usize) -> Self {
        Trees {
            roots: vec![Root::default(); trees],
            maps: vec![BTreeMap::new(); trees],
            free: (0..slots as u16).rev().collect(),
        }
    }

    /// Insert `key` into tree `t` if it is new and a slot is free; `false` if not.
    fn insert(&mut self, ix: &mut Index, t: usize, key: u64, what: &str) -> bool {
        if self.maps[t].contains_key(&key) {
            return false;
        }
        let Some(slot) = self.free.pop() else { return false };
        assert_eq!(ix.insert(&mut self.roots[t], key, slot), Ok(()), "{what}: pools short");
        self.maps[t].insert(key, slot);
        true
    }

    /// Remove `key` from tree `t` (by `remove`, or by `take` allowed or refused).
    fn remove(&mut self, ix: &mut Index, t: usize, key: u64, how: u64, what: &str) {
        let want = self.maps[t].get(&key).copied();
        match how % 3 {
            0 => {
                assert_eq!(ix.remove(&mut self.roots[t], key), want, "{what}: remove {key:#x}");
            }
            1 => {
                let want = want.map_or(Take::Missing, Take::Kept);
                assert_eq!(ix.take(&mut self.roots[t], key, |_| false), want, "{what}: take refused {key:#x}");
                return;
            }
            _ => {
                let want = want.map_or(Take::Missing, Take::Taken);
                assert_eq!(ix.take(&mut self.roots[t], key, |_| true), want, "{what}: take {key:#x}");
            }
        }
        if let Some(slot) = self.maps[t].remove(&key) {
            self.free.push(slot);
        }
    }

    /// Every tree's invariants, and every read of tree `t`: at every key, its neighbours
    /// and the ends of the key space for a tree of up to 64 keys; for a larger one, at
    /// 32 keys drawn by `r` (the first and last among them) and their neighbours.
    fn verify(&self, ix: &Index, t: usize, r: &mut impl FnMut() -> u64, what: &str) {
        for (u, root) in self.roots.iter().enumerate() {
            ix.check(root).unwrap_or_else(|e| panic!("{what}: tree {u}: {e}"));
            assert_eq!(root.len(), self.maps[u].len(), "{what}: tree {u} length");
        }
        let (root, map) = (&self.roots[t], &self.maps[t]);
        assert_eq!(ix.last(root), map.values().next_back().copied(), "{what}: last");
        let order: Vec<u16> = map.values().copied().collect();
        let keys: Vec<u64> = map.keys().copied().collect();
        let mut seen = Vec::new();
        ix.walk(root, |s| {
            seen.push(s);
            true
        });
        assert_eq!(seen, order, "{what}: walk");
        let n = keys.len();
        let ranks: Vec<usize> = if n <= 64 {
            (0..=n).collect()
        } else {
            let mut ranks: Vec<usize> = (0..30).map(|_| (r() % n as u64) as usize).collect();
            ranks.extend([0, n - 1, n]);
            ranks
        };
        let mut probes = vec![0, 1, PAGE, TOP - PAGE, TOP, u64::MAX - 1, u64::MAX];
        for &k in &ranks {
            assert_eq!(ix.select(root, k), order.get(k).copied(), "{what}: select {k}");
            if let Some(&k) = keys.get(k) {
                probes.extend([k.wrapping_sub(1), k, k.wrapping_add(1), k.wrapping_sub(PAGE), k.wrapping_add(PAGE)]);
            }
        }
        for (i, &p) in probes.iter().enumerate() {
            assert_eq!(ix.find(root, p), map.get(&p).copied(), "{what}: find {p:#x}");
            assert_eq!(ix.floor(root, p), map.range(..=p).next_back().map(|e| *e.1), "{what}: floor {p:#x}");
            assert_eq!(ix.ceil(root, p), map.range(p..).next().map(|e| *e.1), "{what}: ceil {p:#x}");
            // Walks from here, whole or stopped after a few slots.
            let stop = [usize::MAX, 1, 3, 9, 17][i % 5];
            let mut seen = Vec::new();
            ix.walk_from(root, p, |s| {
                seen.push(s);
                seen.len() < stop
            });
            let want: Vec<u16> = map.range(p..).map(|e| *e.1).take(stop).collect();
            assert_eq!(seen, want, "{what}: walk_from {p:#x} stopped after {stop}");
        }
    }
}

fn pools(slots: usize, trees: usize) -> (Vec<Leaf>, Vec<Inner>) {
    (vec![Leaf::default(); leaves_for(slots, trees)], vec![Inner::default(); inners_for(slots, trees)])
}

#[test]
fn root_leaf_with_extreme_keys_agrees_with_btreemap() {
    // Keys at both ends of the key space (u64::MAX among them) and next to each other (a
    // page and the byte after it), in every order, into a root leaf and out of it (the
    // last entry moved into the hole), up to exactly 16, the 17th splitting it, and back
    // down to one leaf.
    let (mut leaves, mut inners) = pools(64, 1);
    let mut ix = Index::new(&mut leaves, &mut inners);
    let mut trees = Trees::new(64, 1);
    let mut pool: Vec<u64> = Vec::new();
    for i in 0..6 {
        pool.extend([i * PAGE, i * PAGE + 1, TOP - i * PAGE, u64::MAX - i]);
    }
    let mut r = rng(seed(11));
    for step in 0..steps(5_000) {
        let key = pool[(r() % pool.len() as u64) as usize];
        let what = format!("step {step}");
        if r() % 2 == 0 {
            trees.insert(&mut ix, 0, key, &what);
        } else {
            trees.remove(&mut ix, 0, key, r(), &what);
        }
        trees.verify(&ix, 0, &mut r, &what);
    }
}

#[test]
fn a_root_leaf_full_split_and_collapsed_back_agrees_with_btreemap() {
    // Around 16 keys: every removal of a 17th and insertion of one changes the shape,
    // with the removal taken at the top, the bottom or the middle and the insertion above
    // every key, below every key or between; 0 and the highest page among the keys.
    let (mut leaves, mut inners) = pools(40, 1);
    let mut ix = Index::new(&mut leaves, &mut inners);
    let mut trees = Trees::new(40, 1);
    let mut r = rng(seed(5));
    for step in 0..steps(5_000) {
        let what = format!("step {step}");
        let map = &trees.maps[0];
        let n = map.len();
        let grow = n < 15 || (n < 19 && r() % 2 == 0);
        if grow {
            let key = match r() % 5 {
                0 => 0,
                1 => TOP,
                2 => map.keys().next_back().map_or(0, |&k| k.saturating_add(PAGE).min(TOP)),
                3 => map.keys().next().map_or(TOP, |&k| k.saturating_sub(PAGE)),
                _ => (r() % 64) * PAGE,
            };
            trees.insert(&mut ix, 0, key, &what);
        } else {
            let key = match r() % 4 {
                0 => map.keys().next_back().copied(),
                1 => map.keys().next().copied(),
                _ => map.keys().nth((r() % n as u64) as usize).copied(),
            };
            trees.remove(&mut ix, 0, key.unwrap_or(0), r(), &what);
        }
        trees.verify(&ix, 0, &mut r, &what);
    }
}

#[test]
fn the_finger_at_the_right_edge_agrees_with_btreemap() {
    // Deep trees whose right edge is worked: runs of appends (the finger's leaf filled,
    // split by `append_split` or the general insertion), runs of removals of the greatest
    // (at the finger down to half full, then merged into or shared with its left
    // neighbour), removals just left of the finger's leaf (a share or merge with it),
    // insertions below the greatest (which settle the owed counts), each run 1 to 20.
    // Several trees share pools sized for the slots, most slots in use, so that a node
    // freed by one tree's merge is the next one another tree's split takes.
    let (slots, ntrees) = (1_500, 3);
    let (mut leaves, mut inners) = pools(slots, ntrees);
    let mut ix = Index::new(&mut leaves, &mut inners);
    let mut trees = Trees::new(slots, ntrees);
    let mut r = rng(seed(17));
    let mut step = 0;
    let mut peak = 0;
    while step < steps(12_000) {
        let t = (r() % ntrees as u64) as usize;
        let run = 1 + r() % 20;
        // Waves: growing (most runs appends and insertions below the greatest), then
        // shrinking; now and then a batch filed again or a walk's removals.
        let growing = (step / 3_000) % 2 == 0;
        let kinds: &[u64] = if growing { &[0, 0, 1, 4, 4, 4, 2, 3, 5, 6] } else { &[0, 2, 2, 3, 3, 5, 5, 4, 6, 7] };
        let kind = kinds[(r() % kinds.len() as u64) as usize];
        for _ in 0..run {
            let what = format!("step {step} tree {t} kind {kind}");
            let map = &trees.maps[t];
            let top = map.keys().next_back().copied();
            match kind {
                0 | 1 => {
                    let key = top.map_or(0, |k| k + PAGE * (1 + r() % 2));
                    trees.insert(&mut ix, t, key, &what);
                }
                2 => {
                    if let Some(k) = top {
                        trees.remove(&mut ix, t, k, r(), &what);
                    }
                }
                3 => {
                    // From the 9th to the 24th key from the top: the finger's neighbour.
                    let n = map.len();
                    let back = 9 + (r() % 16) as usize;
                    if n > back {
                        let key = *map.keys().nth(n - 1 - back).unwrap();
                        trees.remove(&mut ix, t, key, r(), &what);
                    }
                }
                4 => {
                    // Into a gap below the greatest, near the top or anywhere.
                    if let Some(k) = top {
                        let below = if r() % 2 == 0 { r() % 40 } else { r() % (k / PAGE + 1) };
                        trees.insert(&mut ix, t, k.saturating_sub(below * PAGE), &what);
                    }
                }
                6 => {
                    // As a queued batch whose sync fails: up to `run` keys taken (the
                    // greatest among them as often as not), keys appended above what is
                    // left, and the taken ones filed again, in any order.
                    let mut taken = Vec::new();
                    for j in 0..run {
                        let map = &trees.maps[t];
                        let n = map.len();
                        if n == 0 {
                            break;
                        }
                        let at = if j % 2 == 0 { n - 1 } else { (r() % n as u64) as usize };
                        let key = *map.keys().nth(at).unwrap();
                        trees.remove(&mut ix, t, key, 2, &what);
                        taken.push(key);
                        let top = trees.maps[t].keys().next_back().copied().unwrap_or(0);
                        let above = top + PAGE * (1 + r() % 3);
                        // (Each taken key keeps a slot to be filed again with.)
                        if r() % 3 == 0 && !taken.contains(&above) && trees.free.len() > taken.len() {
                            trees.insert(&mut ix, t, above, &what);
                        }
                    }
                    trees.verify(&ix, t, &mut r, &what);
                    if r() % 2 == 0 {
                        taken.reverse();
                    }
                    for key in taken {
                        assert!(trees.insert(&mut ix, t, key, &what), "{what}: {key:#x} filed again");
                    }
                    trees.verify(&ix, t, &mut r, &what);
                    step += 1;
                    break;
                }
                7 => {
                    // As REVOKE's walk: the keys of a random mark collected 64 at a time by
                    // a walk from where the last batch ended, each batch removed before
                    // the walk resumes above its last key.
                    let mark = r() | 1;
                    let marked = |k: u64| (k / PAGE).wrapping_mul(mark) >> 62 == 0;
                    let want: Vec<u64> = trees.maps[t].keys().copied().filter(|&k| !marked(k)).collect();
                    let slot_key: BTreeMap<u16, u64> = trees.maps[t].iter().map(|(&k, &s)| (s, k)).collect();
                    let mut from = 0;
                    loop {
                        let mut batch = Vec::new();
                        let mut resume = None;
                        ix.walk_from(&trees.roots[t], from, |s| {
                            let k = slot_key[&s];
                            if marked(k) {
                                batch.push(k);
                                if batch.len() == 64 {
                                    resume = Some(k + PAGE);
                                    return false;
                                }
                            }
                            true
                        });
                        for k in batch {
                            trees.remove(&mut ix, t, k, 0, &what);
                        }
                        match resume {
                            Some(f) => from = f,
                            None => break,
                        }
                    }
                    assert_eq!(trees.maps[t].keys().copied().collect::<Vec<_>>(), want, "{what}: the walk's removals");
                    trees.verify(&ix, t, &mut r, &what);
                    step += 1;
                    break;
                }
                _ => {
                    let n = map.len();
                    if n > 0 {
                        let key = *map.keys().nth((r() % n as u64) as usize).unwrap();
                        trees.remove(&mut ix, t, key, r(), &what);
                    }
                }
            }
            if step % 5 == 0 || trees.maps[t].len() < 40 {
                trees.verify(&ix, t, &mut r, &what);
            } else {
                for (u, root) in trees.roots.iter().enumerate() {
                    ix.check(root).unwrap_or_else(|e| panic!("{what}: tree {u}: {e}"));
                }
            }
            step += 1;
        }
        peak = peak.max(trees.maps[t].len());
    }
    // Two inner levels at the peak (more than 16 leaves of 16).
    assert!(peak > 256, "peak {peak}");
    for t in 0..ntrees {
        for key in trees.maps[t].clone().into_keys() {
            trees.remove(&mut ix, t, key, 0, "emptying");
        }
    }
    assert_eq!(ix.spare(), (leaves_for(slots, ntrees), inners_for(slots, ntrees)), "every node back");
}

#[test]
fn a_tree_holding_the_greatest_key_passes_its_check() {
    // u64::MAX is a key like any other (the service's IOVAs are pages and never reach
    // it, but the audit's check must not refuse a tree that does): in a root leaf, and
    // as the rightmost key of a tree with inner levels, among keys 0 and up.
    let (mut leaves, mut inners) = pools(64, 1);
    let mut ix = Index::new(&mut leaves, &mut inners);
    let mut trees = Trees::new(64, 1);
    let mut r = rng(seed(23));
    trees.insert(&mut ix, 0, u64::MAX, "the greatest");
    trees.verify(&ix, 0, &mut r, "a root leaf");
    for i in 0..40 {
        trees.insert(&mut ix, 0, i * PAGE, "below it");
        trees.verify(&ix, 0, &mut r, &format!("{} keys", i + 2));
    }
    trees.remove(&mut ix, 0, u64::MAX, 2, "the greatest taken");
    trees.insert(&mut ix, 0, u64::MAX, "appended again");
    trees.verify(&ix, 0, &mut r, "appended again");
}
