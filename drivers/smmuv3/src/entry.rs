//! Updating a live STE or CD so that the SMMU never sees an entry that grants more than
//! the old one or the new one.
//!
//! The SMMU reads an entry with 64-bit single-copy atomicity per word, not across words,
//! and may cache it until told otherwise (CMD_CFGI_STE / CMD_CFGI_CD followed by
//! CMD_SYNC). So an update is a sequence of word stores and syncs, chosen like Linux's
//! `arm_smmu_write_entry`:
//! - words the current entry does not use can be written at any time (the hardware
//!   ignores them);
//! - if exactly one used word must change, it is the single "critical" store: the entry
//!   flips from old to new atomically (hitless);
//! - otherwise the entry first goes to a blocking value (abort), then is rebuilt, then
//!   made live ("break before make").
//!
//! Every store is followed, before the next phase, by an invalidation and a sync, so the
//! SMMU can only ever combine words written since the last sync.

/// Where an entry lives and how to make the SMMU re-read it.
pub trait EntryTarget<const N: usize> {
    /// The value of word `i` now in memory.
    fn read(&self, i: usize) -> u64;
    /// Store word `i` (one 64-bit single-copy-atomic store, ordered after earlier ones).
    fn write(&mut self, i: usize, value: u64);
    /// Invalidate the SMMU's cached copy of the entry and wait until that completed.
    fn invalidate(&mut self) -> Result<(), crate::Error>;
}

/// How to judge an entry of `N` words.
pub trait EntryKind<const N: usize> {
    /// Which words the SMMU reads for `entry` (bit n = word n).
    fn used_words(entry: &[u64; N]) -> u8;
    /// The entry that blocks all traffic while the others are rewritten.
    fn blocking() -> [u64; N];
}

/// Write `new` over the entry at `target`, keeping every intermediate state the SMMU
/// could observe no wider than the old or the new entry. Returns the number of
/// invalidate-and-sync steps taken.
pub fn update<K: EntryKind<N>, const N: usize>(
    target: &mut impl EntryTarget<N>,
    new: &[u64; N],
) -> Result<usize, crate::Error> {
    let mut cur = [0u64; N];
    for (i, w) in cur.iter_mut().enumerate() {
        *w = target.read(i);
    }
    if cur == *new {
        return Ok(0);
    }
    let mut syncs = 0;
    let cur_used = K::used_words(&cur);
    let new_used = K::used_words(new);

    // Words both entries use that must change: if there is at most one, a single store
    // turns the old entry into the new one.
    let critical: u8 =
        (0..N).filter(|&i| cur_used & new_used & (1 << i) != 0 && cur[i] != new[i]).fold(0, |m, i| m | (1 << i));

    if critical.count_ones() <= 1 {
        // Phase 1: words the hardware ignores now.
        if write_where(target, &mut cur, new, !cur_used) {
            target.invalidate()?;
            syncs += 1;
        }
        // Phase 2: the single critical store, if any.
        if write_where(target, &mut cur, new, critical) {
            target.invalidate()?;
            syncs += 1;
        }
        // Phase 3: words the new entry does not use that still differ.
        if write_where(target, &mut cur, new, 0xff) {
            target.invalidate()?;
            syncs += 1;
        }
        return Ok(syncs);
    }

    // Break before make: block, rebuild everything but word 0, then publish word 0.
    let blocking = K::blocking();
    let mut cur_blocked = cur;
    cur_blocked[0] = blocking[0];
    write_where(target, &mut cur, &cur_blocked, 0b1);
    target.invalidate()?;
    syncs += 1;
    if write_where(target, &mut cur, new, !0b1) {
        target.invalidate()?;
        syncs += 1;
    }
    write_where(target, &mut cur, new, 0b1);
    target.invalidate()?;
    syncs += 1;
    Ok(syncs)
}

/// Store `new[i]` for each word in `mask` that differs; true if anything was stored.
fn write_where<const N: usize>(target: &mut impl EntryTarget<N>, cur: &mut [u64; N], new: &[u64; N], mask: u8) -> bool {
    let mut wrote = false;
    for i in 0..N {
        if mask & (1 << i) != 0 && cur[i] != new[i] {
            target.write(i, new[i]);
            cur[i] = new[i];
            wrote = true;
        }
    }
    wrote
}

/// STEs: blocking means Config = abort (no event recorded, unlike V = 0).
#[derive(Debug)]
pub enum SteKind {}

impl EntryKind<{ crate::ste::STE_WORDS }> for SteKind {
    fn used_words(entry: &[u64; crate::ste::STE_WORDS]) -> u8 {
        crate::ste::Ste(*entry).used_words()
    }
    fn blocking() -> [u64; crate::ste::STE_WORDS] {
        crate::ste::Ste::abort().0
    }
}

/// CDs: blocking means V = 0 (the transaction is terminated with C_BAD_CD).
#[derive(Debug)]
pub enum CdKind {}

impl EntryKind<{ crate::cd::CD_WORDS }> for CdKind {
    fn used_words(entry: &[u64; crate::cd::CD_WORDS]) -> u8 {
        crate::cd::Cd(*entry).used_words()
    }
    fn blocking() -> [u64; crate::cd::CD_WORDS] {
        [0; crate::cd::CD_WORDS]
    }
}
