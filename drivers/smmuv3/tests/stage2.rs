//! Stage-2 domains: the STE, leaf and command encodings against bit positions taken from
//! sources we did not write (Linux's arm-smmu-v3.h and io-pgtable-arm.c, QEMU's
//! smmuv3-internal.h), and the driver against the host model walking stage 2 as the
//! architecture allows: a mapping reaches the right PA, an unmap leaves no stale
//! translation, a fault is reported with S2 and the IPA, and an SMMU without stage 2, or
//! one that cannot take the input size, is refused.

mod common;

use smmuv3::cmd::{Command, Opcode, TlbiRange};
use smmuv3::coherency::Coherency;
use smmuv3::event::id;
use smmuv3::model::{host_smmu_nested, Outcome, SmmuModel};
use smmuv3::pagetable::Pte;
use smmuv3::probe::stage2_start_level;
use smmuv3::ste::{Stage2Context, SteConfig};
use smmuv3::{Error, Event, Iova, MemType, Perm, PhysAddr, Smmu, StreamId, Translation, Unsupported, Vmid};

const SID_VM: u32 = 0x20;
const SID_HOST: u32 = 0x08;
/// Where a VM's RAM starts in guest-physical space (images/linux-guest.xml's).
const GUEST_RAM: u64 = 0x4000_0000;

#[test]
fn ste_words_match_linux_and_qemu() {
    let ctx = Stage2Context { vmid: Vmid(5), s2ttb: PhysAddr(0x4_0123_4000), ias_bits: 40, start_level: 0, ps: 4 };
    let ste = smmuv3::ste::Ste::stage2(&ctx, Coherency::Coherent);
    // Word 0: V (bit 0) | Config 0b110 (bits [3:1]), STRTAB_STE_0_CFG_S2_TRANS.
    assert_eq!(ste.0[0], 0b1101);
    // Word 1: SHCFG [45:44] = 0b01 (incoming), as Linux writes for stage 2.
    assert_eq!(ste.0[1], 1 << 44);
    // Word 2, as Linux's STRTAB_STE_2_* (S2VMID [15:0], VTCR [50:32]: S2T0SZ [5:0],
    // S2SL0 [7:6], S2IR0 [9:8], S2OR0 [11:10], S2SH0 [13:12], S2TG [15:14], S2PS [18:16];
    // S2AA64 bit 51, S2R bit 58) and QEMU's STE_S2* (word[5] bits 0, 6, 14, 16, 19, 26):
    // VMID 5, T0SZ 24, SL0 0b10 (level 0), IR0/OR0 0b01 (WBWA), SH0 0b11, TG 0 (4 KiB),
    // PS 0b100 (44 bits), S2AA64, S2R.
    assert_eq!(ste.0[2], 0x040c_3598_0000_0005);
    // Word 3: S2TTB [51:4].
    assert_eq!(ste.0[3], 0x4_0123_4000);
    assert!(ste.0[4..].iter().all(|&w| w == 0));
    assert_eq!(ste.config(), SteConfig::Stage2 { vmid: Vmid(5), s2ttb: PhysAddr(0x4_0123_4000) });
    // Not coherent: walks Non-cacheable (IR0 = OR0 = 0), outer shareable (SH0 = 0b10).
    let nc = smmuv3::ste::Ste::stage2(&ctx, Coherency::NonCoherent);
    assert_eq!(nc.0[2], 0x040c_2098_0000_0005);
    // S2SL0 for a 4 KiB granule: level 1 is 0b01, level 2 is 0b00 (VTCR_EL2.SL0).
    for (level, sl0) in [(1u8, 0b01u64), (2, 0b00)] {
        let ste = smmuv3::ste::Ste::stage2(&Stage2Context { start_level: level, ..ctx }, Coherency::Coherent);
        assert_eq!((ste.0[2] >> 38) & 3, sl0);
    }
}

#[test]
fn stage2_commands_match_linux() {
    // CMD_TLBI_S2_IPA: opcode 0x2a, VMID [47:32]; word 1 Leaf bit 0, IPA [51:12]
    // (Linux's CMDQ_TLBI_0_VMID and CMDQ_TLBI_1_IPA_MASK).
    let c = Command::tlbi_s2_ipa(Vmid(7), Iova(0x4000_3000), true);
    assert_eq!(c.0, [0x7_0000_002a, 0x4000_3001]);
    assert_eq!(c.opcode(), Opcode::TlbiS2Ipa as u8);
    // CMD_TLBI_S12_VMALL: opcode 0x28, VMID [47:32].
    assert_eq!(Command::tlbi_s12_vmall(Vmid(0xabcd)).0, [0xabcd_0000_0028, 0]);
}

#[test]
fn stage2_leaves_match_io_pgtable_arm() {
    // io-pgtable-arm's stage-2 prot: HAP_READ (1 << 6) | HAP_WRITE (2 << 6),
    // MEMATTR_OIWB (0xf << 2), SH_IS (3 << 8), AF (1 << 10), a page (0b11), and XN. Linux
    // writes XN as 3 << 53; ours is bit 54 alone (XN[1:0] = 0b10: never executable, with
    // or without FEAT_XNX; 0b11 would let a privileged stage 1 execute under FEAT_XNX).
    let rw = Pte::s2_leaf(PhysAddr(0x4000_1000), 3, Perm::ReadWrite, MemType::Normal);
    assert_eq!(rw.0, 0x0040_0000_4000_17ff);
    // Read only: HAP_READ alone.
    assert_eq!(Pte::s2_leaf(PhysAddr(0x4000_1000), 3, Perm::Read, MemType::Normal).0, 0x0040_0000_4000_177f);
    // Non-cacheable (MEMATTR_NC, 0x5 << 2, outer shareable), a 2 MiB block (0b01).
    assert_eq!(
        Pte::s2_leaf(PhysAddr(0x4020_0000), 2, Perm::ReadWrite, MemType::NormalNonCacheable).0,
        0x0040_0000_4020_06d5
    );
    // Device-nGnRE (MEMATTR_DEV, 0x1 << 2), no shareability.
    assert_eq!(Pte::s2_leaf(PhysAddr(0x1000_0000), 3, Perm::ReadWrite, MemType::Device).0, 0x0040_0000_1000_04c7);
    // No nG at stage 2 (bit 11 is RES0 there).
    assert_eq!(rw.0 & (1 << 11), 0);
}

/// A stage-2 domain for a VM's device on an SMMU with both stages, `len` bytes of host
/// memory mapped at guest-physical `GUEST_RAM`.
fn vm_domain(len: usize) -> (Smmu<SmmuModel>, smmuv3::DomainId, smmuv3::DmaRegion) {
    let mut smmu = host_smmu_nested(64);
    let ram = common::buffer(len, 0x20_0000);
    let d = smmu.create_stage2_domain(48).unwrap();
    smmu.map(d, Iova(GUEST_RAM), ram.pa, len as u64, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID_VM), d).unwrap();
    (smmu, d, ram)
}

/// The VMID of stage-2 domain `d`.
fn vmid_of(smmu: &Smmu<SmmuModel>, d: smmuv3::DomainId) -> Vmid {
    let Translation::Stage2 { vmid } = smmu.translation(d).unwrap() else { panic!("a stage-2 domain") };
    vmid
}

#[test]
fn a_mapping_through_stage2_reaches_the_right_pa() {
    let (smmu, d, ram) = vm_domain(0x40_0000);
    let vmid = vmid_of(&smmu, d);
    assert_ne!(vmid.0, 0);
    let mut smmu = smmu;
    let SteConfig::Stage2 { vmid: in_ste, .. } = smmu.ste(StreamId(SID_VM)).unwrap().config() else {
        panic!("a stage-2 STE")
    };
    assert_eq!(in_ste, vmid);
    let m = smmu.regs();
    for off in [0u64, 0x1234, 0x20_0000, 0x3f_fff8] {
        assert_eq!(m.translate(SID_VM, GUEST_RAM + off, true), Outcome::Ok(ram.pa.0 + off));
    }
    // The 2 MiB-aligned RAM went in as blocks: a stage-2 block leaf, S2AP read/write.
    let leaf = m.last_leaf().unwrap();
    assert_eq!(leaf & 0b11, 0b01);
    assert_eq!((leaf >> 6) & 3, 0b11);
    // Outside the VM's RAM: a stage-2 translation fault.
    assert_eq!(m.translate(SID_VM, GUEST_RAM + 0x40_0000, true), Outcome::Fault(id::F_TRANSLATION));
    assert_eq!(m.translate(SID_VM, 0x1000, false), Outcome::Fault(id::F_TRANSLATION));
}

#[test]
fn unmap_and_invalidate_leaves_no_stale_translation() {
    let (mut smmu, d, buf) = vm_domain(0x3000);
    let vmid = vmid_of(&smmu, d);
    // Fill the model's TLB and walk cache.
    for page in 0..3 {
        assert_eq!(
            smmu.regs().translate(SID_VM, GUEST_RAM + page * 0x1000, false),
            Outcome::Ok(buf.pa.0 + page * 0x1000)
        );
    }
    smmu.regs().clear_commands();
    smmu.unmap(d, Iova(GUEST_RAM + 0x1000), 0x1000).unwrap();
    // One CMD_TLBI_S2_IPA for the page, tagged with the domain's VMID, then CMD_SYNC;
    // a range of one page at level 3, QEMU's SMMU (and so the model) having RIL.
    let page = TlbiRange { num: 0, scale: 0, ttl: 3 };
    assert_eq!(
        smmu.regs().commands(),
        vec![Command::tlbi_s2_ipa_range(vmid, Iova(GUEST_RAM + 0x1000), true, page), Command::sync()]
    );
    let m = smmu.regs();
    assert_eq!(m.translate(SID_VM, GUEST_RAM + 0x1000, false), Outcome::Fault(id::F_TRANSLATION));
    // Its neighbours stay.
    assert_eq!(m.translate(SID_VM, GUEST_RAM, false), Outcome::Ok(buf.pa.0));
    assert_eq!(m.translate(SID_VM, GUEST_RAM + 0x2000, true), Outcome::Ok(buf.pa.0 + 0x2000));
    // Read-only now: a write is refused even though a read/write entry was cached.
    smmu.protect(d, Iova(GUEST_RAM), 0x1000, Perm::Read).unwrap();
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM, true), Outcome::Fault(id::F_PERMISSION));
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM, false), Outcome::Ok(buf.pa.0));
}

#[test]
fn what_the_model_caches_would_outlive_a_missing_invalidation() {
    // The model is strict enough to catch a driver that forgets the TLBI: the same unmap
    // with its invalidation rejected leaves the cached translation usable until the
    // driver's retry (the domain is stale), which CMD_TLBI_S12_VMALL then removes.
    let (mut smmu, d, buf) = vm_domain(0x1000);
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM, true), Outcome::Ok(buf.pa.0));
    smmu.regs().reject_next(Opcode::TlbiS2Ipa as u8);
    assert!(smmu.unmap(d, Iova(GUEST_RAM), 0x1000).is_err());
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM, true), Outcome::Ok(buf.pa.0), "the stale entry is cached");
    assert!(smmu.has_stale_entries(d).unwrap());
    smmu.invalidate_domain(d).unwrap();
    let vmall = smmu.regs().commands().iter().filter(|c| c.opcode() == Opcode::TlbiS12Vmall as u8).count();
    assert_eq!(vmall, 1);
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM, true), Outcome::Fault(id::F_TRANSLATION));
}

#[test]
fn a_stage2_fault_is_reported_with_s2_and_the_ipa() {
    let (mut smmu, _, _) = vm_domain(0x20_0000);
    let outside = GUEST_RAM + 0x30_0040;
    assert_eq!(smmu.regs().translate(SID_VM, outside, true), Outcome::Fault(id::F_TRANSLATION));
    let mut seen = Vec::new();
    smmu.drain_events(|e| seen.push(e));
    let [Event::Translation(f)] = seen[..] else { panic!("one F_TRANSLATION, got {seen:?}") };
    assert!(f.stage2);
    assert_eq!(f.ipa, outside & !0xfff);
    assert_eq!(f.txn.sid, StreamId(SID_VM));
    assert_eq!(f.txn.iova, Iova(outside));
    assert_eq!(f.txn.access, smmuv3::Access::Write);
}

#[test]
fn stage1_and_stage2_domains_side_by_side() {
    let (mut smmu, vm, ram) = vm_domain(0x20_0000);
    let host_buf = common::buffer(0x1000, 0x1000);
    let d1 = smmu.create_domain().unwrap();
    smmu.map(d1, Iova(GUEST_RAM), host_buf.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID_HOST), d1).unwrap();
    assert!(matches!(smmu.translation(d1).unwrap(), Translation::Stage1 { .. }));
    assert!(matches!(smmu.ste(StreamId(SID_HOST)).unwrap().config(), SteConfig::Stage1 { .. }));
    let m = smmu.regs();
    // The same input address, two address spaces.
    assert_eq!(m.translate(SID_HOST, GUEST_RAM, true), Outcome::Ok(host_buf.pa.0));
    assert_eq!(m.translate(SID_VM, GUEST_RAM, true), Outcome::Ok(ram.pa.0));
    // Removing the VM's domain whole (detach, destroy: CMD_TLBI_S12_VMALL) leaves the
    // stage-1 translation alone.
    smmu.unmap(vm, Iova(GUEST_RAM), 0x20_0000).unwrap();
    smmu.detach(StreamId(SID_VM)).unwrap();
    smmu.destroy_domain(vm).unwrap();
    let m = smmu.regs();
    assert_eq!(m.translate(SID_HOST, GUEST_RAM, true), Outcome::Ok(host_buf.pa.0));
    assert_eq!(m.translate(SID_VM, GUEST_RAM, true), Outcome::Abort);
}

#[test]
fn reclaimed_stage2_tables_are_invalidated_by_vmid() {
    let (mut smmu, d, buf) = vm_domain(0x1000);
    let vmid = vmid_of(&smmu, d);
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM, false), Outcome::Ok(buf.pa.0));
    smmu.unmap(d, Iova(GUEST_RAM), 0x1000).unwrap();
    smmu.regs().clear_commands();
    assert!(smmu.reclaim_tables().unwrap() > 0);
    assert_eq!(smmu.regs().commands(), vec![Command::tlbi_s12_vmall(vmid), Command::sync()]);
    // A walk through the freed tables finds nothing (the walk cache went with the TLBI).
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM, false), Outcome::Fault(id::F_TRANSLATION));
}

#[test]
fn refused_where_the_smmu_cannot_do_it() {
    // QEMU 7.2's SMMU has stage 1 only.
    let mut s1_only = common::smmu(8);
    assert_eq!(s1_only.create_stage2_domain(48), Err(Error::Unsupported(Unsupported::NoStage2)));
    // Input sizes: IAS = OAS, and a level-0 start needs 44 output bits.
    let refused = |bits, oas_bits| Err(Unsupported::Stage2InputSize { bits, oas_bits });
    assert_eq!(stage2_start_level(48, 44), refused(48, 44));
    assert_eq!(stage2_start_level(42, 42), refused(42, 42));
    assert_eq!(stage2_start_level(24, 44), refused(24, 44));
    assert_eq!(stage2_start_level(39, 42), Ok(1));
    assert_eq!(stage2_start_level(40, 44), Ok(0));
    assert_eq!(stage2_start_level(30, 32), Ok(2));
    assert_eq!(stage2_start_level(31, 32), Ok(1));
    // 8-bit VMIDs (no VMID16) hold every domain slot's VMID (64 + 1 < 256).
    let mut idr = smmuv3::model::QEMU_IDR;
    idr[0] |= smmuv3::model::IDR0_S2P;
    idr[5] = (idr[5] & !7) | 5;
    // SAFETY: fresh memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(SmmuModel::with_idr(idr), common::memory(80), common::config()) }.unwrap();
    assert_eq!(smmu.features().vmid_bits, 8);
    let mut last = None;
    while let Ok(d) = smmu.create_stage2_domain(48) {
        last = Some(d);
    }
    let last = last.unwrap();
    assert_eq!(smmu.translation(last).unwrap(), Translation::Stage2 { vmid: Vmid(last.index() as u16 + 1) });
    assert_eq!(smmu.create_stage2_domain(48), Err(Error::TooManyDomains));
}

#[test]
fn every_starting_level_walks_on_the_model() {
    // Input sizes that start the walk at level 2, 1 and 0.
    // Each domain's input size is its own: the stage-1 configuration stays 48 bits.
    for ias_bits in [30, 32, 39, 40, 44] {
        let mut smmu = host_smmu_nested(16);
        let buf = common::buffer(0x1000, 0x1000);
        let d = smmu.create_stage2_domain(ias_bits).unwrap();
        let beyond = smmu.map(d, Iova(1 << ias_bits), buf.pa, 0x1000, Perm::Read, MemType::Normal);
        assert_eq!(beyond, Err(Error::PageTable(smmuv3::PageTableError::IovaOutOfRange)));
        let top = (1u64 << ias_bits) - 0x1000;
        smmu.map(d, Iova(top), buf.pa, 0x1000, Perm::Read, MemType::Normal).unwrap();
        smmu.attach(StreamId(SID_VM), d).unwrap();
        let m = smmu.regs();
        assert_eq!(m.translate(SID_VM, top + 8, false), Outcome::Ok(buf.pa.0 + 8), "{ias_bits}-bit IPA");
        assert_eq!(m.translate(SID_VM, top + 8, true), Outcome::Fault(id::F_PERMISSION), "{ias_bits}-bit IPA");
        assert_eq!(m.translate(SID_VM, top - 0x1000, false), Outcome::Fault(id::F_TRANSLATION));
    }
}

#[test]
fn deferred_unmaps_of_a_stage2_domain_are_confirmed_by_one_sync() {
    let (mut smmu, d, buf) = vm_domain(0x2000);
    let vmid = vmid_of(&smmu, d);
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM + 0x1000, false), Outcome::Ok(buf.pa.0 + 0x1000));
    smmu.regs().clear_commands();
    smmu.unmap_deferred(d, Iova(GUEST_RAM), 0x1000).unwrap();
    smmu.unmap_deferred(d, Iova(GUEST_RAM + 0x1000), 0x1000).unwrap();
    smmu.sync_deferred().unwrap();
    // Adjacent pages of one domain: one range command of two pages for both unmaps.
    let two_pages = TlbiRange { num: 0, scale: 1, ttl: 3 };
    let ipa = Command::tlbi_s2_ipa_range(vmid, Iova(GUEST_RAM), true, two_pages);
    assert_eq!(smmu.regs().commands(), vec![ipa, Command::sync()]);
    assert_eq!(smmu.regs().translate(SID_VM, GUEST_RAM + 0x1000, false), Outcome::Fault(id::F_TRANSLATION));
}

/// Overwrite STE.S2VMID (word 2 [15:0]) of stream `sid` in the two-level stream table the
/// model reads, found from its registers: what a driver that got the field wrong would
/// have written. The model has not cached the STE yet (no translation of `sid` so far).
fn set_s2vmid(smmu: &Smmu<SmmuModel>, sid: u32, vmid: u16) {
    let m = smmu.regs();
    let cfg = m.reg(smmuv3::mmio::reg::STRTAB_BASE_CFG);
    assert_eq!((cfg >> 16) & 3, 1, "a two-level stream table");
    let split = (cfg >> 6) & 0x1f;
    let base = m.reg(smmuv3::mmio::reg::STRTAB_BASE) & 0x000f_ffff_ffff_ffc0;
    // SAFETY: host memory, PA == VA; the level-1 descriptor and the STE are the driver's
    // live tables, which this test alone touches while the driver is idle.
    unsafe {
        let l1 = core::ptr::read_volatile((base + (sid as u64 >> split) * 8) as *const u64);
        let l2 = l1 & 0x000f_ffff_ffff_ffc0;
        let word2 = (l2 + (sid as u64 & ((1 << split) - 1)) * 64 + 16) as *mut u64;
        core::ptr::write_volatile(word2, (core::ptr::read_volatile(word2) & !0xffff) | vmid as u64);
    }
}

#[test]
fn stage1_entries_are_tagged_with_the_ste_vmid_on_an_smmu_with_stage2() {
    // Two streams share a stage-1 domain (one ASID); the second one's STE is made to
    // carry the stage-2 domain's VMID, as a driver filling S2VMID wrongly would. The
    // driver invalidates stage 1 with VMID 0, which reaches the first stream's entries
    // only: the second keeps a stale translation, until CMD_TLBI_S12_VMALL of its VMID.
    let (mut smmu, vm, _) = vm_domain(0x1000);
    let vmid = vmid_of(&smmu, vm);
    let page = common::buffer(0x1000, 0x1000);
    let d1 = smmu.create_domain().unwrap();
    smmu.map(d1, Iova(0x1000), page.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID_HOST), d1).unwrap();
    smmu.attach(StreamId(SID_HOST + 1), d1).unwrap();
    // The driver's own stage-1 STE carries VMID 0, as its TLBIs do.
    assert_eq!(smmu.ste(StreamId(SID_HOST)).unwrap().0[2] & 0xffff, 0);
    set_s2vmid(&smmu, SID_HOST + 1, vmid.0);
    for sid in [SID_HOST, SID_HOST + 1] {
        assert_eq!(smmu.regs().translate(sid, 0x1000, true), Outcome::Ok(page.pa.0));
    }
    smmu.regs().clear_commands();
    smmu.unmap(d1, Iova(0x1000), 0x1000).unwrap();
    smmu.invalidate_domain(d1).unwrap();
    let stage1_tlbis: Vec<_> =
        smmu.regs().commands().into_iter().filter(|c| matches!(c.opcode(), 0x11 | 0x12)).collect();
    assert!(!stage1_tlbis.is_empty());
    assert!(stage1_tlbis.iter().all(|c| (c.0[0] >> 32) as u16 == 0), "{stage1_tlbis:x?}");
    let m = smmu.regs();
    assert_eq!(m.translate(SID_HOST, 0x1000, true), Outcome::Fault(id::F_TRANSLATION));
    assert_eq!(m.translate(SID_HOST + 1, 0x1000, true), Outcome::Ok(page.pa.0), "stale under VMID {}", vmid.0);
    // Destroying the stage-2 domain invalidates its VMID, stage-1 entries included.
    smmu.detach(StreamId(SID_VM)).unwrap();
    smmu.destroy_domain(vm).unwrap();
    assert_eq!(smmu.regs().translate(SID_HOST + 1, 0x1000, true), Outcome::Fault(id::F_TRANSLATION));
}

#[test]
fn without_stage2_the_ste_vmid_tags_nothing() {
    // S2VMID is RES0 on an SMMU without stage 2 (and the commands' VMID field with it):
    // the same STE as above loses its entries to the driver's TLBI.
    let mut smmu = smmuv3::model::host_smmu(64);
    let page = common::buffer(0x1000, 0x1000);
    let d = smmu.create_domain().unwrap();
    smmu.map(d, Iova(0x1000), page.pa, 0x1000, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID_HOST), d).unwrap();
    set_s2vmid(&smmu, SID_HOST, 1);
    assert_eq!(smmu.regs().translate(SID_HOST, 0x1000, true), Outcome::Ok(page.pa.0));
    smmu.unmap(d, Iova(0x1000), 0x1000).unwrap();
    assert_eq!(smmu.regs().translate(SID_HOST, 0x1000, true), Outcome::Fault(id::F_TRANSLATION));
}
