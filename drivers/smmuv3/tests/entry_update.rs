//! Live STE and CD updates, recorded store by store and sync by sync.
//!
//! The SMMU reads each 64-bit word atomically but not the entry as a whole, and may use
//! a cached copy until an invalidation completes. So between two syncs it may combine,
//! word by word, any value each word held since the last sync. For every such
//! combination we check the SMMU would see the old entry, the new entry, or a blocking
//! one, never anything else (in the spirit of Linux's arm-smmu-v3 KUnit test
//! `arm_smmu_v3_test_ste_expect_transition`). We also check the number of syncs.

use smmuv3::cd::{Cd, Stage1Context, CD_WORDS};
use smmuv3::coherency::Coherency;
use smmuv3::entry::{update, CdKind, EntryKind, EntryTarget, SteKind};
use smmuv3::ste::{Stage2Context, Ste, SteConfig, STE_WORDS};
use smmuv3::{Asid, PhysAddr, Vmid};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Write(usize, u64),
    Sync,
}

struct Recorder<const N: usize> {
    mem: [u64; N],
    log: Vec<Op>,
}

impl<const N: usize> EntryTarget<N> for Recorder<N> {
    fn read(&self, i: usize) -> u64 {
        self.mem[i]
    }
    fn write(&mut self, i: usize, value: u64) {
        self.mem[i] = value;
        self.log.push(Op::Write(i, value));
    }
    fn invalidate(&mut self) -> Result<(), smmuv3::Error> {
        self.log.push(Op::Sync);
        Ok(())
    }
}

/// Every word-wise combination the SMMU could observe during the update.
fn observable<const N: usize>(old: &[u64; N], log: &[Op]) -> Vec<[u64; N]> {
    let mut seen = Vec::new();
    let mut mem = *old;
    // Values each word held since the last sync.
    let mut window: Vec<Vec<u64>> = mem.iter().map(|w| vec![*w]).collect();
    let flush = |window: &Vec<Vec<u64>>, seen: &mut Vec<[u64; N]>| {
        let mut combos: Vec<[u64; N]> = vec![[0; N]];
        for (i, vals) in window.iter().enumerate() {
            let mut next = Vec::new();
            for c in &combos {
                for v in vals {
                    let mut c = *c;
                    c[i] = *v;
                    next.push(c);
                }
            }
            combos = next;
        }
        seen.extend(combos);
    };
    for op in log {
        match op {
            Op::Write(i, v) => {
                mem[*i] = *v;
                if !window[*i].contains(v) {
                    window[*i].push(*v);
                }
            }
            Op::Sync => {
                flush(&window, &mut seen);
                window = mem.iter().map(|w| vec![*w]).collect();
            }
        }
    }
    flush(&window, &mut seen);
    seen
}

/// The words of `e` the hardware reads; the rest zeroed.
fn effective<K: EntryKind<N>, const N: usize>(e: &[u64; N]) -> [u64; N] {
    let used = K::used_words(e);
    let mut out = *e;
    for (i, w) in out.iter_mut().enumerate() {
        if used & (1 << i) == 0 {
            *w = 0;
        }
    }
    out
}

fn check<K: EntryKind<N>, const N: usize>(
    old: [u64; N],
    new: [u64; N],
    blocks: fn(&[u64; N]) -> bool,
    expected_syncs: usize,
) {
    let mut r = Recorder { mem: old, log: Vec::new() };
    let syncs = update::<K, N>(&mut r, &new).unwrap();
    assert_eq!(r.mem, new, "the entry ends as asked");
    assert_eq!(syncs, expected_syncs, "syncs for {old:x?} -> {new:x?}: {:?}", r.log);
    assert_eq!(r.log.iter().filter(|o| **o == Op::Sync).count(), syncs);
    if !r.log.is_empty() {
        assert_eq!(r.log.last(), Some(&Op::Sync), "the last store is followed by a sync");
    }
    let (eo, en) = (effective::<K, N>(&old), effective::<K, N>(&new));
    for state in observable(&old, &r.log) {
        let e = effective::<K, N>(&state);
        assert!(
            e == eo || e == en || blocks(&state),
            "unsafe intermediate {state:x?} in {old:x?} -> {new:x?} via {:?}",
            r.log
        );
    }
}

fn ste_blocks(e: &[u64; STE_WORDS]) -> bool {
    matches!(Ste(*e).config(), SteConfig::Abort | SteConfig::Invalid)
}

fn cd_blocks(e: &[u64; CD_WORDS]) -> bool {
    !Cd(*e).is_valid()
}

#[test]
fn ste_transitions_are_safe() {
    let s1a = Ste::stage1(PhysAddr(0x4000_0000)).0;
    let s1b = Ste::stage1(PhysAddr(0x4000_0040)).0;
    let mut s1a_attrs = s1a;
    s1a_attrs[1] ^= 0b1100; // different S1CIR: word 1 changes too
    let abort = Ste::abort().0;
    let bypass = Ste::bypass().0;
    // Abort -> stage 1: word 1 while unused, then word 0.
    check::<SteKind, STE_WORDS>(abort, s1a, ste_blocks, 2);
    // Stage 1 -> abort: word 0 (hitless), then clean word 1.
    check::<SteKind, STE_WORDS>(s1a, abort, ste_blocks, 2);
    // Stage 1 -> stage 1 with another CD: one store.
    check::<SteKind, STE_WORDS>(s1a, s1b, ste_blocks, 1);
    // Two used words change: break before make through abort.
    check::<SteKind, STE_WORDS>(s1b, s1a_attrs, ste_blocks, 3);
    check::<SteKind, STE_WORDS>(s1a, bypass, ste_blocks, 3);
    check::<SteKind, STE_WORDS>(bypass, abort, ste_blocks, 2);
    check::<SteKind, STE_WORDS>(abort, abort, ste_blocks, 0);
    // From an all-zero (invalid) entry.
    check::<SteKind, STE_WORDS>([0; STE_WORDS], s1a, ste_blocks, 2);
}

#[test]
fn stage2_ste_transitions_are_safe() {
    let ctx = Stage2Context { vmid: Vmid(3), s2ttb: PhysAddr(0x4000_1000), ias_bits: 31, start_level: 1, ps: 4 };
    let s2 = Ste::stage2(&ctx, Coherency::Coherent).0;
    let s2_other = Ste::stage2(&Stage2Context { s2ttb: PhysAddr(0x4000_2000), ..ctx }, Coherency::Coherent).0;
    let s1 = Ste::stage1(PhysAddr(0x4000_0000)).0;
    let abort = Ste::abort().0;
    // Abort -> stage 2: words 1 to 3 while unused, then word 0.
    check::<SteKind, STE_WORDS>(abort, s2, ste_blocks, 2);
    // Stage 2 -> abort: word 0 (hitless), then the rest cleaned.
    check::<SteKind, STE_WORDS>(s2, abort, ste_blocks, 2);
    // Another table: only S2TTB (word 3) changes, one store.
    check::<SteKind, STE_WORDS>(s2, s2_other, ste_blocks, 1);
    // Stage 1 <-> stage 2: several used words, break before make through abort.
    check::<SteKind, STE_WORDS>(s1, s2, ste_blocks, 3);
    check::<SteKind, STE_WORDS>(s2, s1, ste_blocks, 3);
}

/// A stage-1 STE's S2VMID (word 2) is read too on an SMMU with stage 2: it tags the
/// stream's stage-1 TLB entries (IHI 0070 STE.S2VMID; Linux's `arm_smmu_get_ste_used`
/// marks it used for every configuration that translates at stage 1). Judged here with
/// that mask, not the driver's own `used_words`, which `check` trusts: an update that
/// changes the CD pointer and the VMID of a live stage-1 entry must not let the SMMU see
/// the old CD under the new VMID (or the reverse), so it goes through abort.
#[test]
fn a_stage1_ste_s2vmid_change_is_break_before_make() {
    let mut s1_vm = Ste::stage1(PhysAddr(0x4000_0000)).0;
    s1_vm[2] = smmuv3::ste::STRTAB_STE_2_S2VMID.prep(5);
    let s1b = Ste::stage1(PhysAddr(0x4000_0040)).0;
    assert_ne!(Ste(s1_vm).used_words() & 0b100, 0, "S2VMID is used by a stage-1 entry");
    let mut r = Recorder { mem: s1_vm, log: Vec::new() };
    update::<SteKind, STE_WORDS>(&mut r, &s1b).unwrap();
    assert_eq!(r.mem, s1b);
    // Linux's mask for a stage-1 STE: words 0, 1 and 2.
    let linux = |e: &[u64; STE_WORDS]| [e[0], e[1], e[2]];
    for state in observable(&s1_vm, &r.log) {
        assert!(
            linux(&state) == linux(&s1_vm) || linux(&state) == linux(&s1b) || ste_blocks(&state),
            "the SMMU could see {state:x?} via {:?}",
            r.log
        );
    }
}

#[test]
fn cd_transitions_are_safe() {
    let ctx =
        |asid, ttb0| Cd::stage1(&Stage1Context { asid: Asid(asid), ttb0: PhysAddr(ttb0), ias_bits: 48, ips: 4 }).0;
    let a = ctx(1, 0x8000_0000);
    // Only TTB0 differs: one store.
    check::<CdKind, CD_WORDS>(a, ctx(1, 0x8000_1000), cd_blocks, 1);
    // ASID and TTB0 differ: invalidate, rebuild, validate.
    check::<CdKind, CD_WORDS>(a, ctx(2, 0x8000_1000), cd_blocks, 3);
    // Fresh CD: words 1 and 3 first, then word 0 with V.
    check::<CdKind, CD_WORDS>([0; CD_WORDS], a, cd_blocks, 2);
    // Invalidate a CD.
    check::<CdKind, CD_WORDS>(a, [0; CD_WORDS], cd_blocks, 2);
}

/// The checker itself must catch an unsafe sequence: a naive in-order rewrite of a live
/// STE exposes the new CD pointer with the old word 1 between syncs.
#[test]
fn the_checker_rejects_a_naive_update() {
    let old = Ste::stage1(PhysAddr(0x4000_0000)).0;
    let mut new = Ste::stage1(PhysAddr(0x5000_0000)).0;
    new[1] ^= 0b1100;
    let log = vec![Op::Write(0, new[0]), Op::Write(1, new[1]), Op::Sync];
    let (eo, en) = (effective::<SteKind, STE_WORDS>(&old), effective::<SteKind, STE_WORDS>(&new));
    let unsafe_states = observable(&old, &log)
        .into_iter()
        .filter(|s| {
            let e = effective::<SteKind, STE_WORDS>(s);
            !(e == eo || e == en || ste_blocks(s))
        })
        .count();
    assert!(unsafe_states > 0);
}
