//! The driver on the strict MMU-500 model: default deny before and after `init`, map and
//! unmap with confirmed invalidation, faults attributed to the StreamID, failure
//! injection, exhaustion, errata. Each test asks the model what a device's DMA does.

use smmuv2::model::{host_config, host_region, Mmu500Model, Outcome, Profile, IMX8QXP, ZYNQMP};
use smmuv2::{
    Access, ContextFaultKind, Error, Fault, GlobalFaultKind, Iova, MemType, Memory, Perm, PhysAddr, Smmu, StreamId,
};

const PAGE: u64 = 4096;
/// ZynqMP StreamIDs: TBU number [14:10], master ID [9:0] (UG1085). GDMA is on TBU 5
/// (0x14e8 is channel 0's in Linux's zynqmp.dtsi); these are just two distinct ones.
const SID_A: u32 = 0x14e8;
const SID_B: u32 = 0x14e9;

fn smmu(model: &Mmu500Model) -> Smmu<&Mmu500Model> {
    let mem = Memory { tables: host_region(64 * PAGE as usize, PAGE as usize) };
    // SAFETY: the pool is freshly allocated host memory only this driver uses.
    unsafe { Smmu::init(model, mem, host_config()) }.expect("init")
}

fn buffer(pages: usize) -> PhysAddr {
    host_region(pages * PAGE as usize, PAGE as usize).pa
}

/// xorshift64 (Marsaglia): deterministic pseudo-random values, seeded.
fn xorshift(mut x: u64) -> impl Iterator<Item = u64> {
    core::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}

fn no_violations(model: &Mmu500Model) {
    assert_eq!(model.violations(), Vec::<String>::new(), "architecture rules broken");
}

#[test]
fn before_init_the_model_bypasses_and_after_init_every_stream_faults() {
    for profile in [ZYNQMP, IMX8QXP] {
        let model = Mmu500Model::new(profile);
        // Reset: CLIENTPD = 1, as many MMU-500s come out of reset: DMA passes untranslated.
        assert_eq!(model.access(SID_A, 0x1000, true), Outcome::Bypass(0x1000));
        let mut smmu = smmu(&model);
        for sid in [0, SID_A, SID_B, 0x7fff] {
            let out = model.access(sid, 0x1000, true);
            assert!(!out.reached_memory(), "{}: stream {sid:#x}: {out:?}", profile.name);
        }
        // The unmatched stream's fault is a global USF naming it.
        let _ = smmu.global_fault();
        model.access(SID_B, 0x4000_2000, false);
        let g = smmu.global_fault().expect("USF recorded");
        assert_eq!(g.kind, GlobalFaultKind::UnidentifiedStream);
        assert_eq!(g.sid, StreamId(SID_B));
        assert_eq!(g.iova, Iova(0x4000_2000));
        assert_eq!(g.access, Access::Read);
        no_violations(&model);
    }
}

/// Firmware left the SMMU translating with a bypassing S2CR for SID_A. Every write of
/// `init`, in order, may only narrow: replay the writes and check after each that no
/// stream that was denied is let through.
#[test]
fn every_write_of_init_only_narrows() {
    let model = Mmu500Model::new(ZYNQMP);
    // CLIENTPD = 0, USFCFG = 0 (unmatched bypass), SMR0 matches SID_A, S2CR0 bypasses.
    model.preset(smmuv2::mmio::reg::SCR0, 0);
    model.preset(smmuv2::mmio::reg::smr(0), (1 << 31) | SID_A as u64);
    model.preset(smmuv2::mmio::reg::s2cr(0), 1 << 16);
    let _smmu = smmu(&model);
    let writes = model.writes();
    let replay = Mmu500Model::new(ZYNQMP);
    replay.preset(smmuv2::mmio::reg::SCR0, 0);
    replay.preset(smmuv2::mmio::reg::smr(0), (1 << 31) | SID_A as u64);
    replay.preset(smmuv2::mmio::reg::s2cr(0), 1 << 16);
    let reached = |m: &Mmu500Model| [SID_A, SID_B, 0].map(|s| m.access(s, 0x1000, false).reached_memory());
    let mut before = reached(&replay);
    for (i, (off, v)) in writes.iter().enumerate() {
        replay.preset(*off, *v);
        let now = reached(&replay);
        for (b, n) in before.iter().zip(now) {
            assert!(*b || !n, "write {i} ({off:#x} = {v:#x}) opened a stream");
        }
        before = now;
    }
    assert_eq!(before, [false, false, false]);
}

/// What firmware may leave before `init` (the SMMU's registers are UNKNOWN or
/// IMPLEMENTATION DEFINED at reset but for what the profile gives): the reset state
/// (CLIENTPD = 1: every stream bypasses), and states with streams matched and routed:
/// bypassing through an S2CR, translating in a bank whose SCTLR.M = 0 (which passes
/// transactions through), unmatched streams bypassing (USFCFG = 0) or faulting.
fn firmware_states() -> Vec<(&'static str, Vec<(usize, u64)>)> {
    use smmuv2::mmio::reg::{s2cr, smr, SCR0};
    let routed = vec![
        (smr(0), (1 << 31) | SID_A as u64),
        (s2cr(0), 1 << 16),
        (smr(1), (1 << 31) | (0xff << 16) | 0x1500),
        (s2cr(1), 2),
        (smr(47), (1 << 31) | SID_B as u64),
        (s2cr(47), 5),
    ];
    let with = |scr0: u64| [vec![(SCR0, scr0)], routed.clone()].concat();
    vec![
        ("reset", vec![]),
        ("translating, unmatched bypass", with(0)),
        ("translating, unmatched fault", with(1 << 10)),
        ("client bypass over programmed SMRs", with(1)),
    ]
}

/// Between reset and `init` an unmatched stream does what sCR0 says: with CLIENTPD = 1
/// (MMU-500's reset, the model's) every stream bypasses the SMMU, and with CLIENTPD = 0
/// an unmatched one bypasses unless USFCFG = 1; nothing the driver can change before it
/// runs. From `init`'s first write on: replayed one write at a time (its writes, then a
/// domain's creation and one stream's attachment) from each state firmware may leave,
/// no write lets a stream reach memory that could not before it, and once every stream
/// is denied (the write of CLIENTPD = 0, or earlier), none reaches memory again but the
/// attached one, which never bypasses: no StreamID the description does not name (and
/// none it names but not yet attached) is let through at any point in between.
#[test]
fn no_write_from_init_to_the_first_attach_lets_an_unattached_stream_through() {
    let mut sids = vec![SID_A, SID_B, 0, 0x1500, 0x15ff, 0x7fff, 0x14ea];
    sids.extend(xorshift(0x9e37_79b9).take(32).map(|x| x as u32 & 0x7fff));
    for (name, state) in firmware_states() {
        let model = Mmu500Model::new(ZYNQMP);
        for &(off, v) in &state {
            model.preset(off, v);
        }
        let mut smmu = smmu(&model);
        let d = smmu.create_domain().unwrap();
        smmu.attach(StreamId(SID_A), d).unwrap();
        no_violations(&model);
        let replay = Mmu500Model::new(ZYNQMP);
        for &(off, v) in &state {
            replay.preset(off, v);
        }
        let outcomes = |m: &Mmu500Model| sids.iter().map(|&s| m.access(s, 0x1000, false)).collect::<Vec<_>>();
        let mut before = outcomes(&replay);
        let mut closed = before.iter().all(|o| !o.reached_memory());
        for (i, &(off, v)) in model.writes().iter().enumerate() {
            replay.preset(off, v);
            let now = outcomes(&replay);
            for ((sid, b), n) in sids.iter().zip(&before).zip(&now) {
                let what = format!("{name}: write {i} ({off:#x} = {v:#x}): stream {sid:#x} {b:?} -> {n:?}");
                assert!(b.reached_memory() || !n.reached_memory(), "{what}: opened");
                if closed {
                    assert!(!matches!(n, Outcome::Bypass(_)), "{what}: bypasses after every stream was denied");
                    assert!(*sid == SID_A || !n.reached_memory(), "{what}: not attached, yet through");
                }
            }
            closed |= now.iter().all(|o| !o.reached_memory());
            before = now;
        }
        assert!(closed, "{name}: some stream still reaches memory after init");
    }
}

#[test]
fn map_translates_and_unmap_is_gone_from_the_tlb() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    let buf = buffer(2);
    let iova = 0x4000_0000;
    smmu.map(d, Iova(iova), buf, 2 * PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(model.dma_write_u64(SID_A, iova + 8, 0xfeed), Outcome::Translated(buf.0 + 8));
    // SAFETY: `buf` is host memory this test allocated.
    assert_eq!(unsafe { ((buf.0 + 8) as *const u64).read() }, 0xfeed);
    assert!(model.tlb_entries() > 0, "the translation is cached");
    // Another stream does not reach the domain.
    assert!(!model.access(SID_B, iova, false).reached_memory());
    let syncs = smmu.stats().syncs;
    assert_eq!(smmu.unmap(d, Iova(iova), PAGE).unwrap(), 1);
    assert_eq!(smmu.stats().syncs, syncs + 1);
    // The cached translation went with the confirmed invalidation.
    let out = model.access(SID_A, iova, false);
    assert_eq!(out, Outcome::ContextFault { cb: d.cb(), fsr: smmuv2::fault::fsr::TF });
    // The second page is still mapped.
    assert_eq!(model.access(SID_A, iova + PAGE, false), Outcome::Translated(buf.0 + PAGE));
    no_violations(&model);
}

/// The model keeps translations until an invalidation completes: without the driver's
/// TLBI, the unmapped page would still be reachable. This is what the test above relies
/// on, shown directly.
#[test]
fn the_model_tlb_keeps_a_translation_nobody_invalidated() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    let buf = buffer(1);
    smmu.map(d, Iova(0x1000), buf, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(model.access(SID_A, 0x1000, false), Outcome::Translated(buf.0));
    // Clear the descriptor behind the driver's back: no TLBI.
    let leaf = smmu.translate(d, Iova(0x1000)).unwrap().unwrap();
    assert_eq!(leaf.pa, buf);
    model.stall_syncs(true);
    let _ = smmu.unmap(d, Iova(0x1000), PAGE);
    assert_eq!(model.access(SID_A, 0x1000, false), Outcome::Translated(buf.0), "stale TLB entry");
}

#[test]
fn a_read_only_mapping_faults_a_write_with_the_stream_named() {
    let model = Mmu500Model::new(IMX8QXP);
    let mut smmu = smmu(&model);
    let d = smmu.create_domain().unwrap();
    // i.MX8QXP's SCU numbers streams with 7 significant bits (SMR mask 0x7f80).
    smmu.attach_masked(StreamId(0x12), 0x7f80, d).unwrap();
    let buf = buffer(1);
    smmu.map(d, Iova(0x2000), buf, PAGE, Perm::Read, MemType::Normal).unwrap();
    assert_eq!(model.access(0x0012 | 0x100, 0x2000, false), Outcome::Translated(buf.0), "masked bits ignored");
    assert!(!model.dma_write_u64(0x12, 0x2010, 1).reached_memory());
    let mut faults = Vec::new();
    smmu.drain_faults(|f| faults.push(f));
    let [Fault::Context(f)] = faults[..] else { panic!("{faults:?}") };
    assert_eq!(f.kind, ContextFaultKind::Permission);
    assert_eq!(f.sid, StreamId(0x12));
    assert_eq!(f.iova, Iova(0x2010));
    assert_eq!(f.access, Access::Write);
    assert_eq!(f.cb as usize, d.cb());
    // Cleared: nothing more to drain.
    assert_eq!(smmu.drain_faults(|_| {}), 0);
    // An unmapped address: a translation fault at the walk's level.
    model.access(0x12, 0x40_0000, false);
    let f = smmu.context_fault(d).unwrap().unwrap();
    assert_eq!(f.kind, ContextFaultKind::Translation);
    assert_eq!(f.iova, Iova(0x40_0000));
    no_violations(&model);
}

/// A TLBSYNC that never completes: unmap fails (bounded), the domain is stale, the page
/// stays reachable through the TLB as on real hardware, and the driver refuses to go on
/// with the domain until an invalidation is confirmed. A slow sync that then completes
/// lets the SMMU recover (an SMMU whose next wait times out too is failed closed:
/// `tests/failure_paths.rs`).
#[test]
fn a_sync_that_never_completes_is_an_error_and_the_domain_stays_stale() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    let buf = buffer(2);
    smmu.map(d, Iova(0), buf, 2 * PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    assert!(model.access(SID_A, 0, false).reached_memory());
    model.stall_syncs(true);
    assert_eq!(smmu.unmap(d, Iova(0), PAGE), Err(Error::Timeout("SMMU_CBn_TLBSTATUS.SACTIVE")));
    assert!(smmu.has_stale_entries(d).unwrap());
    assert_eq!(smmu.stats().timeouts, 1);
    // What the service expects: the mapping is out of the tables (a retry has nothing
    // to unmap), but the device may still reach it: the service blocks it.
    assert_eq!(smmu.translate(d, Iova(0)).unwrap(), None);
    assert!(model.access(SID_A, 0, false).reached_memory());
    // The sync completes late: the next invalidation is confirmed.
    model.stall_syncs(false);
    smmu.invalidate_domain(d).unwrap();
    assert_eq!(smmu.failure(), None);
    smmu.detach(StreamId(SID_A)).unwrap();
    assert!(!model.access(SID_A, 0, false).reached_memory());
    assert!(!smmu.has_stale_entries(d).unwrap());
    smmu.attach(StreamId(SID_A), d).unwrap();
    assert!(!model.access(SID_A, 0, false).reached_memory(), "gone once confirmed");
    assert!(model.access(SID_A, PAGE, false).reached_memory());
    no_violations(&model);
}

#[test]
fn context_banks_and_smrs_run_out_as_typed_errors() {
    for profile in [ZYNQMP, IMX8QXP] {
        let model = Mmu500Model::new(profile);
        let mut smmu = smmu(&model);
        // Every stage-1 bank but the sink, which `init` reserved.
        let banks = smmu.features().domain_banks();
        assert_eq!(banks, smmu.features().stage1_banks() - 1);
        let groups = smmu.features().num_smrg;
        let domains: Vec<_> = (0..banks).map(|_| smmu.create_domain().unwrap()).collect();
        assert_eq!(smmu.create_domain(), Err(Error::ContextBanksExhausted { banks }));
        for i in 0..groups {
            smmu.attach(StreamId(i as u32), domains[i % banks]).unwrap();
        }
        assert_eq!(smmu.attach(StreamId(0x7000), domains[0]), Err(Error::SmrsExhausted { groups }));
        assert_eq!(smmu.smrs_in_use(), groups);
        // The refusal changed nothing: the stream still faults.
        assert!(!model.access(0x7000, 0, false).reached_memory());
        // Freeing one makes room.
        smmu.detach(StreamId(0)).unwrap();
        smmu.attach(StreamId(0x7000), domains[0]).unwrap();
        no_violations(&model);
    }
}

#[test]
fn overlapping_stream_patterns_are_refused_not_left_unpredictable() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let a = smmu.create_domain().unwrap();
    let b = smmu.create_domain().unwrap();
    smmu.attach_masked(StreamId(0x1400), 0x00ff, a).unwrap();
    assert_eq!(smmu.attach(StreamId(0x14e8), b), Err(Error::SmrConflict { sid: StreamId(0x1400), mask: 0xff }));
    assert_eq!(smmu.attach_masked(StreamId(0x1400), 0xff, b), Err(Error::StreamInUse(StreamId(0x1400))));
    assert_eq!(smmu.attach(StreamId(0x8000), b), Err(Error::StreamIdTooWide(StreamId(0x8000))));
    smmu.attach(StreamId(0x1500), b).unwrap();
    no_violations(&model);
    // The model does flag a conflict the driver did not prevent (a global fault: `init`
    // set sCR0.SMCFCFG).
    model.preset(smmuv2::mmio::reg::smr(40), (1 << 31) | 0x14e8);
    assert_eq!(model.access(0x14e8, 0, false), Outcome::GlobalFault(smmuv2::fault::sgfsr::SMCF));
    assert!(!model.violations().is_empty());
}

#[test]
fn a_domain_in_use_is_not_destroyed_and_a_destroyed_one_frees_its_bank() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let free = smmu.free_table_pages();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    smmu.map(d, Iova(0x20_0000), buffer(1), PAGE, Perm::Read, MemType::Normal).unwrap();
    assert_eq!(smmu.destroy_domain(d), Err(Error::DomainInUse));
    smmu.detach(StreamId(SID_A)).unwrap();
    smmu.destroy_domain(d).unwrap();
    assert_eq!(smmu.free_table_pages(), free);
    assert_eq!(smmu.unmap(d, Iova(0x20_0000), PAGE), Err(Error::NoSuchDomain));
    assert!(!model.access(SID_A, 0x20_0000, false).reached_memory());
    // The pool itself can never be mapped.
    let d = smmu.create_domain().unwrap();
    let pool = smmu.own_memory().pa;
    assert_eq!(smmu.map(d, Iova(0), pool, PAGE, Perm::Read, MemType::Normal), Err(Error::ProtectedMemory(pool)));
    no_violations(&model);
}

#[test]
fn mmu500_errata_are_applied_by_revision() {
    // r2p1: CACHE_LOCK must be cleared, or the ACTLR writes do not take.
    let model = Mmu500Model::new(ZYNQMP);
    let smmu = smmu(&model);
    assert!(smmu.errata().clear_cache_lock);
    assert_eq!(model.peek(smmuv2::mmio::reg::SACR) & (1 << 26), 0);
    assert_ne!(model.peek(smmuv2::mmio::reg::SACR) & ((1 << 10) | (1 << 8)), 0);
    assert!(smmu.prefetch_disabled());
    for n in 0..16 {
        assert_eq!(model.peek(model.layout().cb(n, smmuv2::mmio::reg::CB_ACTLR)) & 2, 0, "CB{n}.CPRE");
    }
    // r1p0 has no CACHE_LOCK to clear; a model whose lock stays set shows the driver
    // reporting the prefetcher still on instead of pretending.
    let r1 = Mmu500Model::new(Profile { idr7: 0x10, ..ZYNQMP });
    let smmu = self::smmu(&r1);
    assert!(!smmu.errata().clear_cache_lock);
    assert!(!smmu.prefetch_disabled());
}

/// MMU-500 has no ASID namespace private to a bank (SCTLR.ASIDPNE is RAZ/WI), and every
/// stage-1 bank here has VMID 0: a TLB entry is tagged by ASID alone, so two domains at
/// one IOVA reach only their own pages because their ASIDs differ. With one ASID for
/// both, B would translate through the entry A's access cached.
#[test]
fn two_domains_at_one_iova_reach_only_their_own_pages() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let (a, b) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    smmu.attach(StreamId(SID_A), a).unwrap();
    smmu.attach(StreamId(SID_B), b).unwrap();
    let (pa, pb) = (buffer(1), buffer(1));
    smmu.map(a, Iova(0x1000), pa, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(b, Iova(0x1000), pb, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(model.access(SID_A, 0x1000, false), Outcome::Translated(pa.0));
    assert_eq!(model.access(SID_B, 0x1000, false), Outcome::Translated(pb.0));
    assert_eq!(model.access(SID_A, 0x1000, false), Outcome::Translated(pa.0));
    let sctlr = model.peek(model.layout().cb(a.cb(), smmuv2::mmio::reg::CB_SCTLR));
    assert_eq!(sctlr & 1 << 12, 0, "ASIDPNE reads 0 on MMU-500");
    no_violations(&model);
}

/// With the next-page prefetcher left on (an r1p0, or a Secure sACR.CACHE_LOCK the
/// driver cannot clear), a DMA to one page also caches the next: an unmap of a page no
/// device ever touched must still invalidate it, and does (a TLBIVAL per leaf).
#[test]
fn a_page_the_prefetcher_cached_is_gone_after_its_unmap() {
    let model = Mmu500Model::new(Profile { idr7: 0x10, ..ZYNQMP });
    let mut smmu = smmu(&model);
    assert!(!smmu.prefetch_disabled());
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    let buf = buffer(2);
    smmu.map(d, Iova(0x8000), buf, 2 * PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(model.access(SID_A, 0x8000, false), Outcome::Translated(buf.0));
    assert_eq!(model.tlb_entries(), 2, "the next page was prefetched");
    smmu.unmap(d, Iova(0x9000), PAGE).unwrap();
    assert!(!model.access(SID_A, 0x9000, false).reached_memory());
    no_violations(&model);
}

/// Every register write of a domain's life (create, attach exact and masked, block to
/// the sink and back, detach, destroy, a bank reused), failure paths included (a block, a
/// detach and a destroy whose TLBSYNC never completes), replayed one at a time onto a model in the state `init` left: after
/// each, no stream bypasses (a valid SMR routing to a bank whose SCTLR.M is still 0
/// would), and no two valid SMRs match one StreamID (the model records that as it
/// happens).
#[test]
fn no_write_of_a_domains_life_opens_a_stream_even_transiently() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let start = model.writes().len();
    let snapshot: Vec<(usize, u64)> = {
        // The registers `init` left, as a replay's starting point.
        let l = model.layout();
        let mut regs = vec![(smmuv2::mmio::reg::SCR0, model.peek(smmuv2::mmio::reg::SCR0))];
        for i in 0..48 {
            regs.push((smmuv2::mmio::reg::smr(i), model.peek(smmuv2::mmio::reg::smr(i))));
            regs.push((smmuv2::mmio::reg::s2cr(i), model.peek(smmuv2::mmio::reg::s2cr(i))));
        }
        for n in 0..16 {
            regs.push((l.cb(n, smmuv2::mmio::reg::CB_SCTLR), 0));
        }
        // The sink, as `init` programmed it.
        let sink = smmu.sink_bank();
        for o in [smmuv2::mmio::reg::CB_TCR, smmuv2::mmio::reg::CB_TTBR0, smmuv2::mmio::reg::CB_SCTLR] {
            regs.push((l.cb(sink, o), model.peek(l.cb(sink, o))));
        }
        for o in [smmuv2::mmio::reg::cbar(sink), smmuv2::mmio::reg::cba2r(sink)] {
            regs.push((l.gr1(o), model.peek(l.gr1(o))));
        }
        regs
    };
    let buf = buffer(1);
    let a = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), a).unwrap();
    smmu.attach_masked(StreamId(0x1400), 0x00e0, a).unwrap();
    smmu.map(a, Iova(0x1000), buf, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.block(StreamId(SID_A)).unwrap();
    smmu.block(StreamId(0x1400)).unwrap();
    smmu.attach(StreamId(SID_A), a).unwrap();
    smmu.detach(StreamId(0x1400)).unwrap();
    model.stall_syncs(true);
    assert!(smmu.block(StreamId(SID_A)).is_err());
    model.stall_syncs(false);
    assert!(smmu.is_blocked(StreamId(SID_A)));
    smmu.attach(StreamId(SID_A), a).unwrap();
    smmu.detach(StreamId(SID_A)).unwrap();
    smmu.destroy_domain(a).unwrap();
    let b = smmu.create_domain().unwrap();
    assert_eq!(b, a, "the bank is reused");
    smmu.attach(StreamId(SID_B), b).unwrap();
    smmu.map(b, Iova(0x1000), buf, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    model.stall_syncs(true);
    assert!(smmu.detach(StreamId(SID_B)).is_err());
    // A sync completed between the two timeouts: not an SMMU that stopped answering
    // (two in a row would fail it closed: `tests/failure_paths.rs`).
    model.stall_syncs(false);
    smmu.invalidate_domain(b).unwrap();
    model.stall_syncs(true);
    assert!(smmu.destroy_domain(b).is_err());
    model.stall_syncs(false);
    smmu.destroy_domain(b).unwrap();
    let c = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), c).unwrap();
    no_violations(&model);

    let replay = Mmu500Model::new(ZYNQMP);
    for &(off, v) in &snapshot {
        replay.preset(off, v);
    }
    let sids = [SID_A, SID_B, 0x1400, 0x1420, 0x14e0, 0];
    for (i, &(off, v)) in model.writes()[start..].iter().enumerate() {
        replay.preset(off, v);
        for sid in sids {
            let out = replay.access(sid, 0x1000, false);
            assert!(!matches!(out, Outcome::Bypass(_)), "write {i} ({off:#x} = {v:#x}): stream {sid:#x} {out:?}");
        }
        assert_eq!(replay.violations(), Vec::<String>::new(), "write {i} ({off:#x} = {v:#x})");
    }
}

/// Neither SoC's device tree marks its SMMU `dma-coherent` (the board table says so too),
/// and seL4 maps the IOMMU PD's pages Non-shareable on a kernel without SMP (Microkit's
/// `debug`, what the zcu102 image is): the SMMU's walks then read memory as it is at the
/// point of coherency. A table write the CPU did not clean is seen only once its line
/// happens to be evicted, and then an unmap the CPU did not clean leaves the SMMU
/// walking to the unmapped page after its TLBI.
#[test]
fn on_a_non_coherent_platform_an_unmapped_page_is_gone_for_the_smmu_too() {
    let poc = smmuv3::model::PocMemory::leak();
    let model = Mmu500Model::new(ZYNQMP);
    model.non_coherent(poc);
    let tables = host_region(64 * PAGE as usize, PAGE as usize);
    // Every TLBI, bank enable and SMR write finds the pool at the PoC as the CPU wrote it.
    poc.watch(tables);
    let config = smmuv2::Config { platform_coherent: false, cache: Some(poc), ..host_config() };
    // SAFETY: the pool is freshly allocated host memory only this driver uses.
    let mut smmu = unsafe { Smmu::init(&model, Memory { tables }, config) }.expect("init");
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    let buf = buffer(1);
    smmu.map(d, Iova(0x3000), buf, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    // Whatever the CPU's caches did meanwhile (every line of the pool evicted).
    smmuv3::CacheOps::clean(poc, tables.va.cast(), tables.len);
    assert_eq!(model.access(SID_A, 0x3000, false), Outcome::Translated(buf.0));
    smmu.unmap(d, Iova(0x3000), PAGE).unwrap();
    assert!(!model.access(SID_A, 0x3000, false).reached_memory(), "the SMMU walked a stale descriptor");
    // Non-cacheable, Outer Shareable walks (TCR.IRGN0 = ORGN0 = 0, SH0 = 2), as the
    // SMMUv3 driver programs its table walks on such a platform.
    let tcr = model.peek(model.layout().cb(d.cb(), smmuv2::mmio::reg::CB_TCR));
    assert_eq!((tcr >> 8 & 3, tcr >> 10 & 3, tcr >> 12 & 3), (0, 0, 2));
    no_violations(&model);
}

/// Attack on the non-coherent mode's cleaning: one map whose run of leaf entries crosses
/// cache lines (eight entries a 64-byte line) and a level-3 table's end (0x20_0000), so
/// two tables are made and each written in part, and an unmap of the same run; no line
/// is evicted by anything but the driver's cleans. Every page must translate to its
/// buffer page right after the map (the walk reads only what was cleaned, from both
/// tables and the new level-2 entry), none after the unmap, and no TLBI, bank enable or
/// SMR write finds the pool not cleaned.
#[test]
fn on_a_non_coherent_platform_a_run_across_lines_and_tables_is_cleaned_whole() {
    let poc = smmuv3::model::PocMemory::leak();
    let model = Mmu500Model::new(ZYNQMP);
    model.non_coherent(poc);
    let tables = host_region(64 * PAGE as usize, PAGE as usize);
    poc.watch(tables);
    let config = smmuv2::Config { platform_coherent: false, cache: Some(poc), ..host_config() };
    // SAFETY: the pool is freshly allocated host memory only this driver uses.
    let mut smmu = unsafe { Smmu::init(&model, Memory { tables }, config) }.expect("init");
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    let pages = 21u64;
    let buf = buffer(pages as usize);
    // Entries 499..511 of one table, then 0..7 of the next.
    let iova = 0x20_0000 - 13 * PAGE;
    smmu.map(d, Iova(iova), buf, pages * PAGE, Perm::ReadWrite, MemType::NormalNonCacheable).unwrap();
    for p in 0..pages {
        let out = model.access(SID_A, iova + p * PAGE, true);
        assert_eq!(out, Outcome::Translated(buf.0 + p * PAGE), "page {p} after the map");
    }
    smmu.unmap(d, Iova(iova), pages * PAGE).unwrap();
    for p in 0..pages {
        assert!(!model.access(SID_A, iova + p * PAGE, false).reached_memory(), "page {p} after the unmap");
    }
    no_violations(&model);
}

/// Which of the platform's word (`dma-coherent` && SMP: `Config::platform_coherent`) and
/// IDR0.CTTW wins: coherent only when both say so; either saying no makes the walks
/// Non-cacheable and devices' buffers Non-cacheable with every table write cleaned, and
/// without cache maintenance the SMMU is refused (nothing treats a non-coherent platform
/// as coherent because the other word said yes). Walk attributes read from the bank.
#[test]
fn coherent_only_when_both_the_platform_and_cttw_say_so() {
    use smmuv3::Coherency::{Coherent, NonCoherent};
    let poc: &'static dyn smmuv3::CacheOps = smmuv3::model::PocMemory::leak();
    for cttw in [false, true] {
        for platform in [false, true] {
            for cache in [None, Some(poc)] {
                let z = ZYNQMP;
                let idr0 = if cttw { z.idr0 | 1 << 14 } else { z.idr0 & !(1 << 14) };
                let model = Mmu500Model::new(Profile { idr0, ..z });
                let config = smmuv2::Config { platform_coherent: platform, cache, ..host_config() };
                let mem = Memory { tables: host_region(16 * PAGE as usize, PAGE as usize) };
                // SAFETY: fresh host memory only this driver uses.
                let got = unsafe { Smmu::init(&model, mem, config) };
                let what = format!("CTTW {cttw}, platform {platform}, cache {}", cache.is_some());
                let want = if cttw && platform { Coherent } else { NonCoherent };
                let mut smmu = match got {
                    Ok(s) => s,
                    Err(e) => {
                        assert!(want == NonCoherent && cache.is_none(), "{what}: refused: {e:?}");
                        continue;
                    }
                };
                assert!(want == Coherent || cache.is_some(), "{what}: started without maintenance");
                assert_eq!(smmu.coherency(), want, "{what}");
                let nc = want == NonCoherent;
                assert_eq!(smmu.dma_memory(), if nc { MemType::NormalNonCacheable } else { MemType::Normal }, "{what}");
                let d = smmu.create_domain().unwrap();
                let tcr = model.peek(model.layout().cb(d.cb(), smmuv2::mmio::reg::CB_TCR));
                let (irgn, orgn, sh) = (tcr >> 8 & 3, tcr >> 10 & 3, tcr >> 12 & 3);
                assert_eq!((irgn, orgn, sh), if nc { (0, 0, 2) } else { (1, 1, 3) }, "{what}");
            }
        }
    }
}

/// The model's reading of SMMU_CBn_SCTLR, which the sink relies on (IHI 0062D 10.8.2;
/// the field meanings as Cavium's SMMUv2 register reference words them: CFRE "0 = do not
/// return an abort when a context fault occurs", CFIE "0 = do not raise an interrupt"):
/// a context fault is recorded in FSR whatever either says; CFRE decides whether the
/// device gets an abort or reads of zero and dropped writes; CFIE whether the fault
/// raises an interrupt, once per fault recorded into an empty FSR. And the sink `init`
/// left: stage 1 on, EPD0 (no walk), every access a translation fault with an abort,
/// recorded, raising nothing.
#[test]
fn cfre_decides_the_abort_cfie_the_interrupt_and_the_fault_is_recorded_either_way() {
    use smmuv2::fault::fsr::{MULTI, TF};
    use smmuv2::mmio::reg;
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    let l = model.layout();
    let (sctlr, fsr) = (l.cb(d.cb(), reg::CB_SCTLR), l.cb(d.cb(), reg::CB_FSR));
    let on = model.peek(sctlr);
    assert_eq!(on & 0b110_0001, 0b110_0001, "the driver's banks: M, CFRE, CFIE");
    assert_eq!(model.access(SID_A, 0, false), Outcome::ContextFault { cb: d.cb(), fsr: TF });
    assert_eq!((model.peek(fsr) as u32, model.interrupts()), (TF, 1));
    assert_eq!(model.access(SID_A, 0, false), Outcome::ContextFault { cb: d.cb(), fsr: TF });
    assert_eq!((model.peek(fsr) as u32, model.interrupts()), (TF | MULTI, 1), "FSR full: MULTI, no new interrupt");
    model.preset(fsr, 0);
    model.preset(sctlr, on & !(1 << 5));
    assert_eq!(model.access(SID_A, 0, true), Outcome::RazWi { cb: d.cb(), fsr: TF }, "CFRE = 0: no abort");
    assert_eq!((model.peek(fsr) as u32, model.interrupts()), (TF, 2), "still recorded, still interrupting");
    model.preset(fsr, 0);
    model.preset(sctlr, on & !(1 << 6));
    assert_eq!(model.access(SID_A, 0, true), Outcome::ContextFault { cb: d.cb(), fsr: TF });
    assert_eq!((model.peek(fsr) as u32, model.interrupts()), (TF, 2), "CFIE = 0: recorded, no interrupt");

    let sink = smmu.sink_bank();
    assert_eq!(sink, 15, "the last of ZynqMP's 16 banks");
    assert_eq!(model.peek(l.cb(sink, reg::CB_SCTLR)), 0b10_0001, "M and CFRE; CFIE, CFCFG, HUPCF clear");
    assert_eq!(model.peek(l.cb(sink, reg::CB_TCR)) & (1 << 7 | 1 << 23), 1 << 7 | 1 << 23, "EPD0 and EPD1");
    smmu.block(StreamId(SID_A)).unwrap();
    let buf = buffer(1);
    smmu.map(d, Iova(0x1000), buf, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    for iova in [0, 0x1000, 0x7fff_f000] {
        assert_eq!(model.access(SID_A, iova, true), Outcome::ContextFault { cb: sink, fsr: TF }, "{iova:#x}");
    }
    assert_eq!(model.peek(l.cb(sink, reg::CB_FSR)) as u32, TF | MULTI);
    assert_eq!((model.interrupts(), model.tlb_entries()), (2, 0), "nothing raised, nothing walked or cached");
    no_violations(&model);
}

/// The sink under every input address. A blocked stream translates in the sink, whose
/// stage 1 is on (SCTLR.M = 1, CBAR stage 1 with stage 2 bypassed, AArch64 format) with
/// nothing to walk: EPD0 for TTBR0's range and EPD1 for TTBR1's, which an address whose
/// sign bit is set selects (TCR2.SEP = the upstream bus's top bit: bit 48 of ZynqMP's
/// 49-bit bus). Every address a 49-bit bus can carry that this sweeps (each single bit,
/// each bit cleared from all ones, both ranges' edges, 4096 pseudo-random ones; read and
/// write) is a translation fault in the sink with an abort, recorded, raising nothing,
/// walking nothing, and leaving nothing in the TLB; the device's own bank, mapped at
/// 0x1000, faults likewise for every address of TTBR1's range. (With EPD1 left clear in
/// the sink, the addresses with bit 48 set walk TTBR1, which the model flags; with EPD0
/// clear, every other address walks TTBR0's address 0.)
#[test]
fn the_sink_faults_every_input_address_and_walks_nothing() {
    use smmuv2::fault::fsr::TF;
    use smmuv2::mmio::reg;
    let model = Mmu500Model::new(ZYNQMP);
    let mut smmu = smmu(&model);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID_A), d).unwrap();
    smmu.map(d, Iova(0x1000), buffer(1), PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    let bus = (1u64 << 49) - 1;
    let mut addrs: Vec<u64> = (0..49).map(|b| 1u64 << b).collect();
    addrs.extend((0..49).map(|b| bus & !(1u64 << b)));
    addrs.extend([0, bus, 0x1000, (1 << 48) - 1, 1 << 48, (1 << 48) | 0x1000, (1 << 47) - 4096]);
    addrs.extend(xorshift(0x2545_f491_4f6c_dd1d).take(4096).map(|x| x & bus));
    // The device's own bank: TTBR1's range faults (EPD1), the mapping translates.
    for &iova in addrs.iter().filter(|&&a| a & (1 << 48) != 0) {
        let out = model.access(SID_A, iova, false);
        assert_eq!(out, Outcome::ContextFault { cb: d.cb(), fsr: TF }, "own bank, {iova:#x}");
    }
    assert!(model.access(SID_A, 0x1000, false).reached_memory());
    let _ = smmu.drain_faults(|_| {});
    smmu.block(StreamId(SID_A)).unwrap();
    let sink = smmu.sink_bank();
    let (irqs, tlb) = (model.interrupts(), model.tlb_entries());
    for &iova in &addrs {
        for write in [false, true] {
            let out = model.access(SID_A, iova, write);
            assert_eq!(out, Outcome::ContextFault { cb: sink, fsr: TF }, "sink, {iova:#x} write {write}");
        }
    }
    let l = model.layout();
    assert_eq!(model.peek(l.cb(sink, reg::CB_FSR)) as u32 & TF, TF, "recorded");
    assert_eq!((model.interrupts(), model.tlb_entries()), (irqs, tlb), "nothing raised, walked or cached");
    assert!(!model.interrupt_asserted());
    no_violations(&model);
}
