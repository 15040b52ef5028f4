//! An SMMU that does not snoop the CPU's caches (issue 22, item 2), on the host model
//! made to behave as the architecture allows such an SMMU to: it reads its stream table,
//! CDs, page tables and commands from the point of coherency (`PocMemory`), which the
//! CPU's writes reach only through the cleans the driver does, and writes its event
//! records there, where the CPU sees them only after an invalidate. Like Linux's
//! arm-smmu-v3 KUnit tests, every maintenance call is recorded with every register write,
//! and the order is checked: what the SMMU is told to read was cleaned before it was told.

mod common;

use smmuv3::cd::Cd;
use smmuv3::coherency::Coherency;
use smmuv3::device::CR1;
use smmuv3::event::id;
use smmuv3::mmio::reg;
use smmuv3::model::{Outcome, PocMemory, SmmuModel, Trace};
use smmuv3::ste::{Ste, SteConfig};
use smmuv3::{Config, Error, Event, Iova, MemType, Perm, PhysAddr, Smmu, StreamId, Unsupported};

const SID: u32 = 0x08;

/// The cleans (address, length) of lines inside `region` that `poc` traced from its
/// `from`-th record on: what the driver cleaned of its page tables.
fn cleans_within(poc: &PocMemory, region: smmuv3::DmaRegion, from: usize) -> Vec<(u64, usize)> {
    poc.trace_log()[from..]
        .iter()
        .filter_map(|t| match *t {
            Trace::Clean { addr, len } if region.pa.0 <= addr && addr < region.pa.0 + region.len as u64 => {
                Some((addr, len))
            }
            _ => None,
        })
        .collect()
}

/// A driver on a non-coherent model: COHACC = 1 but the platform says otherwise (what
/// seL4's Non-shareable user mappings make of a coherent SMMU), or COHACC = 0.
fn non_coherent(cohacc: bool) -> (Smmu<SmmuModel>, &'static PocMemory) {
    let poc = PocMemory::leak();
    let mut idr = smmuv3::model::QEMU_IDR;
    idr[5] = (idr[5] & !0b111) | 5;
    if !cohacc {
        idr[0] &= !(1 << 4);
    }
    let model = SmmuModel::with_idr(idr);
    model.non_coherent(poc);
    let mem = common::memory(32);
    poc.watch_memory(&mem);
    let cfg = Config { platform_coherent: false, cache: Some(poc), ..common::config() };
    // SAFETY: fresh memory; the model is the only register file.
    let smmu = unsafe { Smmu::init(model, mem, cfg) }.expect("a non-coherent SMMU with cache maintenance");
    (smmu, poc)
}

/// Nothing the SMMU reads differs from what the CPU wrote, and the model saw no register
/// write telling it to read memory that was not cleaned.
fn assert_clean(smmu: &Smmu<SmmuModel>, poc: &PocMemory, when: &str) {
    assert_eq!(poc.stale_lines(), Vec::<u64>::new(), "{when}: lines written and not cleaned to the PoC");
    assert_eq!(smmu.regs().violations(), Vec::<&str>::new(), "{when}");
}

#[test]
fn a_non_coherent_walker_never_walks_a_stale_entry_after_a_confirmed_unmap() {
    for cohacc in [true, false] {
        let (mut smmu, poc) = non_coherent(cohacc);
        assert_eq!(smmu.coherency(), Coherency::NonCoherent);
        assert_clean(&smmu, poc, "init");
        let buf = common::buffer(0x20_0000 * 2, 0x20_0000);
        let d = smmu.create_domain().unwrap();
        smmu.attach(StreamId(SID), d).unwrap();
        assert_clean(&smmu, poc, "attach");
        // The device's stream now translates through what the SMMU read from the PoC.
        smmu.map(d, Iova(0x10_0000), buf.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
        smmu.map(d, Iova(0x40_0000), buf.pa, 0x20_0000, Perm::Read, MemType::Normal).unwrap();
        assert_clean(&smmu, poc, "map");
        assert_eq!(smmu.regs().translate(SID, 0x10_0000, true), Outcome::Ok(buf.pa.0));
        assert_eq!(smmu.regs().translate(SID, 0x40_1000, false), Outcome::Ok(buf.pa.0 + 0x1000));
        // A confirmed unmap: the TLBI dropped the cached translation, and the walk that
        // follows reads the PoC, which must hold the invalid entry.
        smmu.unmap(d, Iova(0x10_0000), 0x1000).unwrap();
        smmu.unmap(d, Iova(0x40_0000), 0x20_0000).unwrap();
        assert_clean(&smmu, poc, "unmap");
        assert_eq!(smmu.regs().translate(SID, 0x10_0000, true), Outcome::Fault(id::F_TRANSLATION));
        assert_eq!(smmu.regs().translate(SID, 0x40_1000, false), Outcome::Fault(id::F_TRANSLATION));
        // Tables given back and reused, then a detach: the SMMU sees each as written.
        smmu.map(d, Iova(0x80_0000), buf.pa, 0x1000, Perm::Read, MemType::Normal).unwrap();
        assert_eq!(smmu.reclaim_tables().map(|_| ()), Ok(()));
        smmu.detach(StreamId(SID)).unwrap();
        assert_clean(&smmu, poc, "detach");
        assert_eq!(smmu.regs().translate(SID, 0x80_0000, false), Outcome::Abort);
        assert!(smmu.regs().commands().len() > 5, "the SMMU read its commands from the PoC");
    }
}

/// Replay the trace: at each CMDQ_PROD write, every command slot it announces must have
/// been cleaned (after its last write) before that write.
#[test]
fn every_command_is_cleaned_before_the_doorbell() {
    let (mut smmu, poc) = non_coherent(true);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let buf = common::buffer(0x4000, 0x1000);
    smmu.map(d, Iova(0x1000), buf.pa, 0x4000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap(d, Iova(0x1000), 0x4000).unwrap();
    let cmdq_base = smmu.own_memory()[1].pa.0;
    let mut cleaned_since_doorbell: Vec<(u64, usize)> = Vec::new();
    let (mut prod, mut doorbells) = (0u64, 0);
    for t in poc.trace_log() {
        match t {
            Trace::Clean { addr, len } => cleaned_since_doorbell.push((addr, len)),
            Trace::Register { offset, value } if offset == reg::CMDQ_PROD => {
                // Slots [prod, value) (the queue has 256 entries: no wrap in this test).
                for slot in prod..value & 0xfffff {
                    let a = cmdq_base + 16 * slot;
                    let covered = cleaned_since_doorbell.iter().any(|&(c, l)| c <= a && a + 16 <= c + l as u64);
                    assert!(covered, "command slot {slot} announced by CMDQ_PROD = {value:#x} was not cleaned first");
                }
                prod = value & 0xfffff;
                cleaned_since_doorbell.clear();
                doorbells += 1;
            }
            _ => {}
        }
    }
    assert!(doorbells >= 4, "{doorbells} doorbells");
}

/// A 16-page map or unmap writes its entries as one run per level-3 table and cleans each
/// run once (each line once), not once per entry; and the SMMU still never reads a line
/// that was not cleaned (the model checks at every register write, the unmap's TLBIs and
/// CMD_SYNC included), nor translates what was unmapped.
#[test]
fn a_run_of_pages_is_cleaned_once_per_table_before_the_smmu_is_told() {
    let (mut smmu, poc) = non_coherent(true);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let buf = common::buffer(0x10000, 0x1000);
    // Across the 2 MiB boundary: 8 pages in each of two level-3 tables.
    let iova = 0x1f_8000;
    // The tables made once, so that the counts below are the runs' alone.
    smmu.map(d, Iova(iova), buf.pa, 0x10000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap(d, Iova(iova), 0x10000).unwrap();
    let tables = smmu.own_memory()[4];
    let table_cleans = |from: usize| cleans_within(poc, tables, from);
    for round in 0..2 {
        let before = poc.trace_log().len();
        smmu.map(d, Iova(iova), buf.pa, 0x10000, Perm::ReadWrite, MemType::Normal).unwrap();
        let cleans = table_cleans(before);
        // Entries 504..512 of the lower table and 0..8 of the upper: 64 bytes each.
        assert_eq!(cleans.len(), 2, "round {round}: one clean per table: {cleans:x?}");
        assert!(cleans.iter().all(|&(addr, len)| len == 64 && addr % 64 == 0), "{cleans:x?}");
        assert_clean(&smmu, poc, "map");
        for k in 0..16 {
            assert_eq!(smmu.regs().translate(SID, iova + k * 0x1000, true), Outcome::Ok(buf.pa.0 + k * 0x1000));
        }
        let before = poc.trace_log().len();
        smmu.unmap(d, Iova(iova), 0x10000).unwrap();
        assert_eq!(table_cleans(before).len(), 2, "round {round}: unmap");
        assert_clean(&smmu, poc, "unmap");
        for k in 0..16 {
            assert_eq!(smmu.regs().translate(SID, iova + k * 0x1000, false), Outcome::Fault(id::F_TRANSLATION));
        }
    }
}

/// A long run (more than the 64 entries an unmap clears and cleans at a time) starting
/// and ending mid-line: each table line the map or unmap wrote is cleaned exactly once,
/// a line two chunks of the run share included, and the SMMU is told nothing stale.
#[test]
fn each_line_of_a_long_run_is_cleaned_once() {
    let (mut smmu, poc) = non_coherent(true);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let buf = common::buffer(0x20_0000, 0x1000);
    let tables = smmu.own_memory()[4];
    let line_cleans = |from: usize| -> std::collections::BTreeMap<u64, usize> {
        let mut lines = std::collections::BTreeMap::new();
        for t in &poc.trace_log()[from..] {
            if let Trace::Clean { addr, len } = *t {
                if tables.pa.0 <= addr && addr < tables.pa.0 + tables.len as u64 {
                    for line in (addr & !63..addr + len as u64).step_by(64) {
                        *lines.entry(line).or_insert(0) += 1;
                    }
                }
            }
        }
        lines
    };
    // Entries 4 to 203 of one level-3 table (the tables made once beforehand, so that
    // only the run's cleans are counted).
    let (iova, len) = (0x4000, 200 * 0x1000);
    smmu.map(d, Iova(iova), buf.pa, len, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap(d, Iova(iova), len).unwrap();
    for op in ["map", "unmap"] {
        let before = poc.trace_log().len();
        if op == "map" {
            smmu.map(d, Iova(iova), buf.pa, len, Perm::ReadWrite, MemType::Normal).unwrap();
        } else {
            smmu.unmap(d, Iova(iova), len).unwrap();
        }
        let lines = line_cleans(before);
        // 200 entries from entry 4: lines of entries 0..8 to 200..208, 26 of them.
        assert_eq!(lines.len(), 26, "{op}: {lines:x?}");
        assert!(lines.values().all(|&n| n == 1), "{op}: a line cleaned more than once: {lines:x?}");
        assert_clean(&smmu, poc, op);
    }
    // A run of 64 entries or fewer is one clean, wherever it lies (here entries 56 to 71).
    let (iova, len) = (56 * 0x1000, 16 * 0x1000);
    smmu.map(d, Iova(iova), buf.pa, len, Perm::ReadWrite, MemType::Normal).unwrap();
    let before = poc.trace_log().len();
    smmu.unmap(d, Iova(iova), len).unwrap();
    let cleans = poc.trace_log()[before..]
        .iter()
        .filter(|t| matches!(t, Trace::Clean { addr, .. } if tables.pa.0 <= *addr && *addr < tables.pa.0 + tables.len as u64))
        .count();
    assert_eq!(cleans, 1, "a 16-entry unmap across entry 64");
}

#[test]
fn event_records_are_invalidated_before_they_are_read() {
    let (mut smmu, poc) = non_coherent(true);
    let record = [id::F_TRANSLATION as u64 | ((SID as u64) << 32), 0, 0x1234_5000, 0];
    // Read once before, so a CPU that kept the slot in its cache would see the old value.
    assert_eq!(smmu.drain_events(|_| {}).events, 0);
    for _ in 0..3 {
        smmu.regs().inject_event(record);
        let mut got = Vec::new();
        assert_eq!(smmu.drain_events(|e| got.push(e)).events, 1);
        match got.as_slice() {
            [Event::Translation(f)] => {
                assert_eq!((f.txn.sid, f.txn.iova), (StreamId(SID), Iova(0x1234_5000)));
            }
            other => panic!("read {other:?}, not the record the SMMU wrote to the PoC"),
        }
    }
    let invalidates = poc.trace_log().iter().filter(|t| matches!(t, Trace::Invalidate { .. })).count();
    assert_eq!(invalidates, 3);
}

/// SMMU_CR1 (IHI 0070 6.3.11), STE.S1CIR/S1COR/S1CSH and CD.IR0/OR0/SH0 follow the
/// coherency: write-back inner shareable when coherent (as before), Non-cacheable outer
/// shareable when not, so a non-coherent SMMU reads the PoC the driver cleaned to.
#[test]
fn table_and_queue_attributes_follow_coherency() {
    let (mut smmu, _) = non_coherent(true);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let cr1 = smmu.regs().reg(reg::CR1) as u32;
    let nc = (CR1::QUEUE_IC::NonCacheable
        + CR1::QUEUE_OC::NonCacheable
        + CR1::QUEUE_SH::Outer
        + CR1::TABLE_IC::NonCacheable
        + CR1::TABLE_OC::NonCacheable
        + CR1::TABLE_SH::Outer)
        .value;
    // QUEUE_IC [1:0], QUEUE_OC [3:2], QUEUE_SH [5:4], TABLE_IC [7:6], TABLE_OC [9:8],
    // TABLE_SH [11:10]: 0 = Non-cacheable, 0b10 = Outer Shareable.
    assert_eq!((cr1, nc), (0b10 << 10 | 0b10 << 4, 0b10 << 10 | 0b10 << 4));
    let SteConfig::Stage1 { attrs, .. } = smmu.ste(StreamId(SID)).unwrap().config() else { panic!("stage 1") };
    // STE word 1: S1CIR [3:2], S1COR [5:4], S1CSH [7:6].
    assert_eq!(attrs & 0xfc, 0b10 << 6);
    let cd: Cd = smmu.cd(d).unwrap();
    // CD word 0: IR0 [9:8], OR0 [11:10], SH0 [13:12].
    assert_eq!(cd.0[0] & 0x3f00, 0b10 << 12);

    let mut coherent = common::smmu(8);
    assert_eq!(coherent.coherency(), Coherency::Coherent);
    let d = coherent.create_domain().unwrap();
    coherent.attach(StreamId(SID), d).unwrap();
    assert_eq!(coherent.regs().reg(reg::CR1), 0b11 << 10 | 1 << 8 | 1 << 6 | 0b11 << 4 | 1 << 2 | 1);
    assert_eq!(coherent.ste(StreamId(SID)).unwrap(), Ste::stage1(smmuv3::PhysAddr(coherent.own_memory()[3].pa.0)));
    assert_eq!(coherent.cd(d).unwrap().0[0] & 0x3f00, 0b11 << 12 | 1 << 10 | 1 << 8);
}

/// Coherency is COHACC AND the platform: a platform that says no with no cache
/// maintenance is refused, as COHACC = 0 is; with maintenance both are driven.
#[test]
fn coherency_needs_both_cohacc_and_the_platform() {
    let refused = Error::Unsupported(Unsupported::NotCoherent);
    let cfg = Config { platform_coherent: false, ..common::config() };
    // SAFETY: fresh memory; the model is the only register file.
    let r = unsafe { Smmu::init(SmmuModel::host(), common::memory(4), cfg) };
    assert_eq!(r.err(), Some(refused));
    let (smmu, _) = non_coherent(false);
    assert_eq!(smmu.coherency(), Coherency::NonCoherent);
    assert!(!smmu.features().coherent_access);
}

/// Devices' mappings carry the attributes their coherency calls for: Normal write-back
/// inner shareable (MAIR index 0, SH 0b11) for devices that snoop; Normal Non-cacheable
/// (MAIR index 2 = 0x44, SH 0b10) for devices that do not, as Linux maps without
/// IOMMU_CACHE.
#[test]
fn device_mappings_follow_device_coherency() {
    for (devices_coherent, attr, sh) in [(true, 0, 0b11), (false, 2, 0b10)] {
        let cfg = Config { devices_coherent, ..common::config() };
        // SAFETY: fresh memory; the model is the only register file.
        let mut smmu = unsafe { Smmu::init(SmmuModel::host(), common::memory(8), cfg) }.unwrap();
        let d = smmu.create_domain().unwrap();
        smmu.attach(StreamId(SID), d).unwrap();
        let buf = common::buffer(0x1000, 0x1000);
        smmu.map(d, Iova(0x1000), buf.pa, 0x1000, Perm::ReadWrite, smmu.dma_memory()).unwrap();
        assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Ok(buf.pa.0));
        let pte = smmu.regs().last_leaf().expect("a walk");
        // AttrIndx [4:2], SH [9:8].
        assert_eq!(((pte >> 2) & 7, (pte >> 8) & 3), (attr, sh), "devices_coherent = {devices_coherent}");
        // The CD's MAIR holds what index 2 means: Normal Inner and Outer Non-cacheable.
        assert_eq!((smmu.cd(d).unwrap().0[3] >> 16) & 0xff, 0x44);
    }
}

/// A one-page map or unmap (its shorter path) cleans what a run of one entry cleans: two
/// pages straddling a 2 MiB boundary, one request each, against the same two as one
/// request (a run of one in each level-3 table): the same table cleans, address and
/// length, in the same order; every line at the PoC before the SMMU is told (the model
/// checks at every register write, the unmap's TLBIs and CMD_SYNC included); the pages
/// translate after the map and fault after the unmap.
#[test]
fn a_one_page_map_or_unmap_cleans_what_a_run_of_one_cleans() {
    let (mut smmu, poc) = non_coherent(true);
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let buf = common::buffer(0x2000, 0x1000);
    let (p0, p1) = (0x1f_f000u64, 0x20_0000u64);
    // The tables made once, so that the cleans below are the entries' alone.
    smmu.map(d, Iova(p0), buf.pa, 0x2000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap(d, Iova(p0), 0x2000).unwrap();
    let tables = smmu.own_memory()[4];
    let table_cleans = |from: usize| cleans_within(poc, tables, from);
    let translates = |smmu: &Smmu<SmmuModel>| {
        for (k, iova) in [p0, p1].into_iter().enumerate() {
            assert_eq!(smmu.regs().translate(SID, iova, true), Outcome::Ok(buf.pa.0 + k as u64 * 0x1000));
        }
    };
    let faults = |smmu: &Smmu<SmmuModel>| {
        for iova in [p0, p1] {
            assert_eq!(smmu.regs().translate(SID, iova, false), Outcome::Fault(id::F_TRANSLATION));
        }
    };

    let before = poc.trace_log().len();
    smmu.map(d, Iova(p0), buf.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.map(d, Iova(p1), PhysAddr(buf.pa.0 + 0x1000), 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    let one_map = table_cleans(before);
    assert_clean(&smmu, poc, "one-page maps");
    translates(&smmu);
    let before = poc.trace_log().len();
    smmu.unmap(d, Iova(p0), 0x1000).unwrap();
    smmu.unmap(d, Iova(p1), 0x1000).unwrap();
    let one_unmap = table_cleans(before);
    assert_clean(&smmu, poc, "one-page unmaps");
    faults(&smmu);

    let before = poc.trace_log().len();
    smmu.map(d, Iova(p0), buf.pa, 0x2000, Perm::ReadWrite, MemType::Normal).unwrap();
    let run_map = table_cleans(before);
    assert_clean(&smmu, poc, "run map");
    translates(&smmu);
    let before = poc.trace_log().len();
    smmu.unmap(d, Iova(p0), 0x2000).unwrap();
    let run_unmap = table_cleans(before);
    assert_clean(&smmu, poc, "run unmap");
    faults(&smmu);

    // Entry 511 of the lower table, entry 0 of the upper: 8 bytes each.
    assert_eq!(one_map.len(), 2, "{one_map:x?}");
    assert!(one_map.iter().all(|&(_, len)| len == 8), "{one_map:x?}");
    assert_eq!(one_map, run_map);
    assert_eq!(one_unmap, run_unmap);
    assert_eq!(one_map, one_unmap, "an unmap cleans the entries its map wrote");
}
