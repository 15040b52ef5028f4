//! Range invalidation (SMMUv3.2, SMMU_IDR3.RIL; IHI 0070 4.4.1): the driver's range
//! commands read by two decoders we did not write, and the host model's reading of them,
//! as unkind as the architecture allows, against a driver that must invalidate exactly
//! what it unmapped.
mod common;

use smmuv3::cmd::{Command, Opcode, TlbiRange};
use smmuv3::event::id;
use smmuv3::model::{Outcome, SmmuModel, QEMU_IDR};
use smmuv3::tlbi::split;
use smmuv3::{Asid, Error, Iova, MemType, Perm, PhysAddr, Smmu, StreamId, Translation, Vmid};

const SID: u32 = 0x08;
/// The stream of a VM's device, given stage-2 domains.
const SID_VM: u32 = 0x20;
const PAGE: u64 = 0x1000;

/// QEMU's field extraction, transcribed: hw/arm/smmuv3-internal.h, `CMD_TYPE`, `CMD_NUM`,
/// `CMD_SCALE`, `CMD_VMID`, `CMD_ASID`, `CMD_LEAF`, `CMD_TTL`, `CMD_TG` and `CMD_ADDR`
/// over the command's four 32-bit words (`Cmd.word[4]`), `extract32(value, start, length)`.
struct QemuCmd {
    word: [u32; 4],
}

fn extract32(value: u32, start: u32, length: u32) -> u32 {
    (value >> start) & (u32::MAX >> (32 - length))
}

impl QemuCmd {
    fn new(cmd: Command) -> Self {
        let [w0, w1] = cmd.0;
        Self { word: [w0 as u32, (w0 >> 32) as u32, w1 as u32, (w1 >> 32) as u32] }
    }
    fn cmd_type(&self) -> u32 {
        extract32(self.word[0], 0, 8)
    }
    fn cmd_num(&self) -> u32 {
        extract32(self.word[0], 12, 5)
    }
    fn cmd_scale(&self) -> u32 {
        extract32(self.word[0], 20, 5)
    }
    fn cmd_vmid(&self) -> u32 {
        extract32(self.word[1], 0, 16)
    }
    fn cmd_asid(&self) -> u32 {
        extract32(self.word[1], 16, 16)
    }
    fn cmd_leaf(&self) -> u32 {
        extract32(self.word[2], 0, 1)
    }
    fn cmd_ttl(&self) -> u32 {
        extract32(self.word[2], 8, 2)
    }
    fn cmd_tg(&self) -> u32 {
        extract32(self.word[2], 10, 2)
    }
    /// `CMD_ADDR`: `((uint64_t)word[3] << 32 | word[2]) & ~0xfffULL`.
    fn cmd_addr(&self) -> u64 {
        ((u64::from(self.word[3]) << 32) | u64::from(self.word[2])) & !0xfff
    }

    /// hw/arm/smmuv3.c, `smmuv3_range_inval`: with TG = 0 one page at the address;
    /// otherwise `num_pages = (num + 1) * BIT_ULL(scale)`, `granule = tg * 2 + 10`,
    /// `end = addr + (num_pages << granule) - 1`. Returns `[addr, end]` and the TTL.
    fn range(&self) -> (u64, u64, u32) {
        let addr = self.cmd_addr();
        let tg = self.cmd_tg();
        if tg == 0 {
            return (addr, addr + PAGE - 1, self.cmd_ttl());
        }
        let num_pages = u64::from(self.cmd_num() + 1) << self.cmd_scale();
        let granule = tg * 2 + 10;
        (addr, addr + (num_pages << granule) - 1, self.cmd_ttl())
    }
}

/// Linux's encoder, transcribed: drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c,
/// `__arm_smmu_tlb_inv_range` with ARM_SMMU_FEAT_RANGE_INV, a leaf invalidation of
/// `size` bytes from `iova` whose entries are `granule` bytes, on a 4 KiB-page domain
/// (`tg = __ffs(pgsize_bitmap)` = 12), and `arm_smmu_cmdq_build_cmd`'s field positions
/// (arm-smmu-v3.h: CMDQ_TLBI_0_NUM GENMASK(16, 12), CMDQ_TLBI_0_SCALE GENMASK(24, 20),
/// CMDQ_TLBI_0_ASID GENMASK(63, 48), CMDQ_TLBI_0_VMID GENMASK(47, 32), CMDQ_TLBI_1_LEAF
/// bit 0, CMDQ_TLBI_1_TTL GENMASK(9, 8), CMDQ_TLBI_1_TG GENMASK(11, 10),
/// CMDQ_TLBI_1_VA_MASK GENMASK(63, 12), CMDQ_TLBI_1_IPA_MASK GENMASK(51, 12)).
fn linux_range(op: u8, asid: u16, vmid: u16, mut iova: u64, size: u64, granule: u64) -> Vec<[u64; 2]> {
    let tg: u64 = 12;
    let end = iova + size;
    let mut num_pages = size >> tg;
    let cmd_tg = (tg - 10) / 2;
    let ilog2 = u64::from(granule.trailing_zeros());
    let ttl = 4 - ((ilog2 - 3) / (tg - 3));
    let mut out = Vec::new();
    while iova < end {
        let scale = u64::from(num_pages.trailing_zeros());
        let num = (num_pages >> scale) & 31;
        let inv_range = num << (scale + tg);
        num_pages -= num << scale;
        let mut w0 = u64::from(op) | ((num - 1) << 12) | (scale << 20);
        let addr = if op == Opcode::TlbiNhVa as u8 {
            w0 |= (u64::from(asid) << 48) | (u64::from(vmid) << 32);
            iova & 0xffff_ffff_ffff_f000
        } else {
            w0 |= u64::from(vmid) << 32;
            iova & 0x000f_ffff_ffff_f000
        };
        out.push([w0, 1 | (ttl << 8) | (cmd_tg << 10) | addr]);
        iova += inv_range;
    }
    out
}

fn ours(tag: Translation, iova: u64, pages: u64, level: u8) -> Vec<Command> {
    let mut cmds = Vec::new();
    split(tag, Iova(iova), pages, level, &mut |c| cmds.push(c));
    cmds
}

/// Page counts worth trying: small ones, powers of two and their neighbours, 5-bit edges.
fn page_counts() -> Vec<u64> {
    let mut v: Vec<u64> = (1..=100).collect();
    for p in [5, 6, 9, 10, 15, 16, 20] {
        let n = 1u64 << p;
        v.extend([n - 1, n, n + 1]);
    }
    v.extend([31 << 5, 33 << 7, 0x1_2345]);
    v
}

#[test]
fn range_commands_are_linuxs_encoding_word_for_word() {
    let s1 = Translation::Stage1 { asid: Asid(0x1234) };
    let s2 = Translation::Stage2 { vmid: Vmid(0x56) };
    for pages in page_counts() {
        for iova in [0x10_0000u64, 0x7654_3000, 0xffff_0000_0000] {
            let linux = linux_range(Opcode::TlbiNhVa as u8, 0x1234, 0, iova, pages * PAGE, PAGE);
            let got: Vec<[u64; 2]> = ours(s1, iova, pages, 3).iter().map(|c| c.0).collect();
            assert_eq!(got, linux, "stage 1, {pages} pages at {iova:#x}");
            let linux = linux_range(Opcode::TlbiS2Ipa as u8, 0, 0x56, iova, pages * PAGE, PAGE);
            let got: Vec<[u64; 2]> = ours(s2, iova, pages, 3).iter().map(|c| c.0).collect();
            assert_eq!(got, linux, "stage 2, {pages} pages at {iova:#x}");
        }
    }
    // 2 MiB blocks: Linux's TTL for a 2 MiB granule is level 2.
    let linux = linux_range(Opcode::TlbiNhVa as u8, 0x1234, 0, 0x4000_0000, 3 << 21, 1 << 21);
    let got: Vec<[u64; 2]> = ours(s1, 0x4000_0000, 3 * 512, 2).iter().map(|c| c.0).collect();
    assert_eq!(got, linux);
}

#[test]
fn qemus_decoder_reads_exactly_the_range_each_run_covers() {
    let s1 = Translation::Stage1 { asid: Asid(7) };
    let s2 = Translation::Stage2 { vmid: Vmid(9) };
    // Past SCALE's five bits too: runs of 2^32 pages and more (which Linux's encoder,
    // and so the word-for-word test above, never meets: its ranges are smaller).
    let huge = [1 << 32, (1 << 32) + 1, 3 << 33, (1 << 36) + (1 << 32)];
    for pages in page_counts().into_iter().chain(huge) {
        for (tag, op) in [(s1, Opcode::TlbiNhVa), (s2, Opcode::TlbiS2Ipa)] {
            let iova = 0x1234_5000u64;
            let cmds = ours(tag, iova, pages, 3);
            // At most 13 commands for any run (5 bits of the page count each).
            assert!(cmds.len() <= 13, "{pages} pages: {} commands", cmds.len());
            let mut next = iova;
            for c in &cmds {
                let q = QemuCmd::new(*c);
                assert_eq!(q.cmd_type(), op as u32);
                assert_eq!(q.cmd_leaf(), 1);
                assert_eq!(q.cmd_tg(), 1, "4 KiB granule");
                match tag {
                    Translation::Stage1 { .. } => assert_eq!((q.cmd_asid(), q.cmd_vmid()), (7, 0)),
                    Translation::Stage2 { .. } => assert_eq!((q.cmd_asid(), q.cmd_vmid()), (0, 9)),
                }
                let (start, end, ttl) = q.range();
                assert_eq!((start, ttl), (next, 3), "{pages} pages: the ranges tile without gap or overlap");
                next = end + 1;
            }
            assert_eq!(next, iova + pages * PAGE, "{pages} pages: the ranges end where the run does");
        }
    }
    // A 64 KiB buffer, the blk-bench request: one command, NUM = 0, SCALE = 4.
    let cmds = ours(s1, 0x8_0000, 16, 3);
    assert_eq!(cmds.len(), 1);
    let q = QemuCmd::new(cmds[0]);
    assert_eq!((q.cmd_num(), q.cmd_scale()), (0, 4));
    assert_eq!(q.range(), (0x8_0000, 0x8_ffff, 3));
}

#[test]
fn a_single_range_command_matches_its_constructor_fields() {
    let r = TlbiRange { num: 30, scale: 31, ttl: 2 };
    let c = Command::tlbi_nh_va_range(Asid(0xffff), Iova(0xffff_ffff_ffff_f000), true, r);
    let q = QemuCmd::new(c);
    assert_eq!((q.cmd_num(), q.cmd_scale(), q.cmd_ttl(), q.cmd_tg()), (30, 31, 2, 1));
    assert_eq!((q.cmd_asid(), q.cmd_vmid(), q.cmd_addr()), (0xffff, 0, 0xffff_ffff_ffff_f000));
    assert_eq!(r.pages(), 31 << 31);
    // Stage 2's address field stops at bit 51.
    let c = Command::tlbi_s2_ipa_range(Vmid(0xffff), Iova(0xffff_ffff_ffff_f000), true, r);
    assert_eq!(QemuCmd::new(c).cmd_addr(), 0x000f_ffff_ffff_f000);
}

/// A domain with `pages` 4 KiB pages mapped from `BASE`, every page's translation cached.
const BASE: u64 = 0x40_0000;

fn cached(model: SmmuModel, pages: u64) -> (Smmu<SmmuModel>, smmuv3::DomainId, u64) {
    let mem = common::memory(64);
    // SAFETY: fresh leaked memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(model, mem, common::config()) }.unwrap();
    let buf = common::buffer((pages * PAGE) as usize, PAGE as usize);
    let d = smmu.create_domain().unwrap();
    smmu.map(d, Iova(BASE), buf.pa, pages * PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    for p in 0..pages {
        assert_eq!(smmu.regs().translate(SID, BASE + p * PAGE, false), Outcome::Ok(buf.pa.0 + p * PAGE));
    }
    smmu.regs().clear_commands();
    (smmu, d, buf.pa.0)
}

fn host_idr(ril: bool) -> [u32; 6] {
    let mut idr = QEMU_IDR;
    idr[5] = (idr[5] & !0b111) | 5; // 48-bit output: host addresses
    idr[3] = if ril { 1 << 10 } else { 0 };
    idr
}

#[test]
fn a_16_page_unmap_is_one_range_command_and_leaves_nothing_cached() {
    let (mut smmu, d, _) = cached(SmmuModel::with_idr(host_idr(true)), 17);
    smmu.unmap(d, Iova(BASE), 16 * PAGE).unwrap();
    // The outcome first: no page of the 16 still reachable through the model's TLB.
    for p in 0..16 {
        assert_eq!(smmu.regs().translate(SID, BASE + p * PAGE, false), Outcome::Fault(id::F_TRANSLATION), "page {p}");
    }
    let cmds = smmu.regs().commands();
    let asid = match smmu.translation(d).unwrap() {
        Translation::Stage1 { asid } => asid,
        other => panic!("{other:?}"),
    };
    let range = TlbiRange { num: 0, scale: 4, ttl: 3 };
    assert_eq!(cmds, vec![Command::tlbi_nh_va_range(asid, Iova(BASE), true, range), Command::sync()]);
}

#[test]
fn without_ril_every_page_gets_its_own_command_with_no_hint() {
    let (mut smmu, d, _) = cached(SmmuModel::with_idr(host_idr(false)), 16);
    assert!(!smmu.features().range_invalidation);
    smmu.unmap(d, Iova(BASE), 16 * PAGE).unwrap();
    let cmds = smmu.regs().commands();
    assert_eq!(cmds.len(), 17);
    for (p, c) in cmds[..16].iter().enumerate() {
        let q = QemuCmd::new(*c);
        assert_eq!(q.cmd_type(), Opcode::TlbiNhVa as u32);
        assert_eq!((q.cmd_tg(), q.cmd_ttl(), q.cmd_num(), q.cmd_scale()), (0, 0, 0, 0));
        assert_eq!(q.cmd_addr(), BASE + p as u64 * PAGE);
    }
    for p in 0..16 {
        assert_eq!(smmu.regs().translate(SID, BASE + p * PAGE, false), Outcome::Fault(id::F_TRANSLATION), "page {p}");
    }
}

/// Unmap 16 pages with the driver's own invalidation rejected (so every translation
/// stays cached, stale), confirm with `cmd`, and say which pages still translate to
/// their old memory.
fn stale_after(model: SmmuModel, cmd: impl FnOnce(Asid) -> Command) -> Vec<u64> {
    let (mut smmu, d, pa) = cached(model, 16);
    let asid = match smmu.translation(d).unwrap() {
        Translation::Stage1 { asid } => asid,
        other => panic!("{other:?}"),
    };
    smmu.regs().reject_next(Opcode::TlbiNhVa as u8);
    assert!(matches!(smmu.unmap(d, Iova(BASE), 16 * PAGE), Err(Error::CommandError { .. })));
    smmu.submit_unchecked(cmd(asid)).unwrap();
    (0..16).filter(|p| smmu.regs().translate(SID, BASE + p * PAGE, false) == Outcome::Ok(pa + p * PAGE)).collect()
}

#[test]
fn the_model_invalidates_only_what_the_range_covers() {
    let ril = || SmmuModel::with_idr(host_idr(true));
    let cmd = |r: TlbiRange| move |asid| Command::tlbi_nh_va_range(asid, Iova(BASE), true, r);
    // With nothing confirmed every page is stale: the model does cache them.
    assert_eq!(stale_after(ril(), |_| Command::sync()), (0..16).collect::<Vec<_>>());
    // The whole range: nothing left.
    assert_eq!(stale_after(ril(), cmd(TlbiRange { num: 0, scale: 4, ttl: 3 })), Vec::<u64>::new());
    // One page short (15 pages: NUM = 14, SCALE = 0): the last page stays reachable.
    assert_eq!(stale_after(ril(), cmd(TlbiRange { num: 14, scale: 0, ttl: 3 })), vec![15]);
    // TTL = 0, any level: the range alone decides.
    assert_eq!(stale_after(ril(), cmd(TlbiRange { num: 15, scale: 0, ttl: 0 })), Vec::<u64>::new());
    // A wrong level hint (2 MiB blocks, the leaves being pages) need not invalidate them.
    assert_eq!(stale_after(ril(), cmd(TlbiRange { num: 0, scale: 4, ttl: 2 })), (0..16).collect::<Vec<_>>());
    // A wrong granule (TG = 16 KiB over 4 KiB tables) need not either.
    let tg16 = |asid| {
        let mut c = Command::tlbi_nh_va_range(asid, Iova(BASE), true, TlbiRange { num: 3, scale: 0, ttl: 3 });
        c.0[1] = (c.0[1] & !(0b11 << 10)) | (0b10 << 10);
        c
    };
    assert_eq!(stale_after(ril(), tg16), (0..16).collect::<Vec<_>>());
}

#[test]
fn blocks_go_out_as_ranges_at_level_2() {
    let model = SmmuModel::with_idr(host_idr(true));
    let mem = common::memory(64);
    // SAFETY: fresh leaked memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(model, mem, common::config()) }.unwrap();
    let buf = common::buffer(4 << 21, 1 << 21);
    let d = smmu.create_domain().unwrap();
    let iova = 0x4000_0000;
    // Two blocks, then 16 pages, then two blocks: three runs.
    smmu.map(d, Iova(iova), buf.pa, 2 << 21, Perm::ReadWrite, MemType::Normal).unwrap();
    let pages_at = iova + (2 << 21);
    smmu.map(d, Iova(pages_at), PhysAddr(buf.pa.0 + (2 << 21)), 16 * PAGE, Perm::Read, MemType::Normal).unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    for off in [0, 0x1f_f000, 0x20_0000, 0x3f_f000, 2 << 21, (2 << 21) + 15 * PAGE] {
        assert!(matches!(smmu.regs().translate(SID, iova + off, false), Outcome::Ok(_)), "{off:#x}");
    }
    smmu.regs().clear_commands();
    smmu.unmap(d, Iova(iova), (2 << 21) + 16 * PAGE).unwrap();
    let decoded: Vec<(u64, u64, u32)> = smmu.regs().commands()[..2].iter().map(|c| QemuCmd::new(*c).range()).collect();
    assert_eq!(decoded, vec![(iova, iova + (2 << 21) - 1, 2), (pages_at, pages_at + 16 * PAGE - 1, 3)]);
    assert_eq!(smmu.regs().commands()[2], Command::sync());
    for off in [0, 0x1f_f000, 0x20_0000, 0x3f_f000, 2 << 21, (2 << 21) + 15 * PAGE] {
        assert_eq!(smmu.regs().translate(SID, iova + off, false), Outcome::Fault(id::F_TRANSLATION), "{off:#x}");
    }
}

/// Stage 2 at every starting level: TTL names the leaf's level as the walk counts it (a
/// 2 MiB block is level 2 whether the walk starts at 0, 1 or 2), so a permission drop and
/// an unmap over a block and the five pages after it leave nothing cached that the model,
/// which skips leaves of any other level, would keep.
#[test]
fn stage2_ranges_reach_blocks_and_pages_at_every_starting_level() {
    let ipa = 0x20_0000;
    let len = (2 << 20) + 5 * PAGE;
    let offsets = [0, 0x1f_f000, 0x20_0000, 0x20_0000 + 4 * PAGE];
    for ias_bits in [30, 31, 39, 40, 44] {
        let mut smmu = smmuv3::model::host_smmu_nested(16);
        let buf = common::buffer(4 << 20, 2 << 20);
        let d = smmu.create_stage2_domain(ias_bits).unwrap();
        smmu.map(d, Iova(ipa), buf.pa, len, Perm::ReadWrite, MemType::Normal).unwrap();
        smmu.attach(StreamId(SID_VM), d).unwrap();
        assert_eq!(smmu.translate(d, Iova(ipa)).unwrap().map(|l| l.level), Some(2), "{ias_bits}-bit IPA");
        for off in offsets {
            assert_eq!(smmu.regs().translate(SID_VM, ipa + off, true), Outcome::Ok(buf.pa.0 + off), "{ias_bits}");
        }
        smmu.protect(d, Iova(ipa), len, Perm::Read).unwrap();
        for off in offsets {
            let got = smmu.regs().translate(SID_VM, ipa + off, true);
            assert_eq!(got, Outcome::Fault(id::F_PERMISSION), "{ias_bits}-bit IPA, {off:#x} after protect");
            assert_eq!(smmu.regs().translate(SID_VM, ipa + off, false), Outcome::Ok(buf.pa.0 + off));
        }
        smmu.unmap(d, Iova(ipa), len).unwrap();
        for off in offsets {
            let got = smmu.regs().translate(SID_VM, ipa + off, false);
            assert_eq!(got, Outcome::Fault(id::F_TRANSLATION), "{ias_bits}-bit IPA, {off:#x} after unmap");
        }
    }
}

/// SCALE is five bits: a run of 2^32 pages (16 TiB of 2 MiB blocks, which a 48-bit space
/// and a pool of 16,448 table pages hold) cannot be one chunk of 2^32 pages. Were SCALE 32 cut to 0, the command would
/// reach one page and leave the rest of the run cached.
#[test]
fn a_run_past_scale_31_is_still_covered() {
    let model = SmmuModel::with_idr(host_idr(true));
    let mem = common::memory(16_448);
    // SAFETY: fresh leaked memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(model, mem, common::config()) }.unwrap();
    let d = smmu.create_domain().unwrap();
    let (iova, len) = (1u64 << 44, 1u64 << 44);
    smmu.map(d, Iova(iova), PhysAddr(0), len, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.translate(d, Iova(iova)).unwrap().map(|l| l.level), Some(2));
    smmu.attach(StreamId(SID), d).unwrap();
    let offsets = [0, 1 << 30, 1 << 43, len - PAGE];
    for off in offsets {
        assert_eq!(smmu.regs().translate(SID, iova + off, false), Outcome::Ok(off), "{off:#x}");
    }
    smmu.regs().clear_commands();
    smmu.unmap(d, Iova(iova), len).unwrap();
    for off in offsets {
        assert_eq!(smmu.regs().translate(SID, iova + off, false), Outcome::Fault(id::F_TRANSLATION), "{off:#x}");
    }
}

/// One 4 KiB page an unmap removed: its domain's ASID, its address, the level of the leaf
/// it was part of, and the length of the model's command log when it was removed (a
/// command consumed before then cannot have invalidated it).
#[derive(Debug, Clone, Copy)]
struct Removed {
    asid: u32,
    page: u64,
    level: u32,
    since: usize,
}

/// Whether `cmd`, read with QEMU's decoder, drops every cached translation of `r`'s page
/// under the model's rules: a leaf CMD_TLBI_NH_VA of its ASID whose range holds the
/// whole page, TG 4 KiB, TTL 0 or the leaf's level; or a CMD_TLBI_NH_ASID of its ASID.
fn covers(cmd: Command, r: &Removed) -> bool {
    let q = QemuCmd::new(cmd);
    if q.cmd_type() == Opcode::TlbiNhAsid as u32 {
        return q.cmd_asid() == r.asid;
    }
    if q.cmd_type() != Opcode::TlbiNhVa as u32 || q.cmd_asid() != r.asid || q.cmd_leaf() != 1 || q.cmd_tg() != 1 {
        return false;
    }
    let (lo, hi, ttl) = q.range();
    (ttl == 0 || ttl == r.level) && lo <= r.page && r.page + PAGE - 1 <= hi
}

/// Every page of `removed` is covered by a command the model consumed after its removal
/// and before the last CMD_SYNC in `log`.
fn assert_covered_before_last_sync(log: &[Command], removed: &[Removed], what: &str) {
    let Some(last_sync) = log.iter().rposition(|c| *c == Command::sync()) else {
        assert!(removed.is_empty(), "{what}: no CMD_SYNC at all");
        return;
    };
    for r in removed {
        let before = log.get(r.since..last_sync).unwrap_or_default();
        assert!(
            before.iter().any(|c| covers(*c, r)),
            "{what}: page {:#x} of ASID {} (level {}) has no invalidation before the CMD_SYNC",
            r.page,
            r.asid,
            r.level
        );
    }
}

/// 64 KiB buffers, as blk-bench's: `BUFS` of them, ending where a 2 MiB block starts.
const BUF: u64 = 16 * PAGE;
const BUFS: u64 = 12;
const BLOCK: u64 = 0x20_0000;

/// Buffer `n` of that layout (`BUFS` is the block): its IOVA, length and leaf level.
fn slot(n: u64) -> (u64, u64, u32) {
    if n == BUFS {
        (BASE + BLOCK, BLOCK, 2)
    } else {
        (BASE + BLOCK - (BUFS - n) * BUF, BUF, 3)
    }
}

/// The pages of buffer `n` a test checks: every page of a buffer; the first, a middle
/// and the last page of the block.
fn probe_pages(n: u64) -> Vec<u64> {
    let (iova, len, _) = slot(n);
    if n == BUFS {
        vec![iova, iova + len / 2, iova + len - PAGE]
    } else {
        (0..len / PAGE).map(|p| iova + p * PAGE).collect()
    }
}

/// Strictness of coalesced deferred unmaps, at random: two domains of adjacent 64 KiB
/// buffers (the last adjoining a 2 MiB block), batches of deferred unmaps that mostly go
/// on from the last one's neighbour (runs up and down, switching domains, meeting the
/// block), with plain unmaps (which sync on their own) and maps over IOVAs removed in the
/// batch (which must wait for their confirmation) mixed in. After each `sync_deferred`,
/// every page a deferred unmap removed must be covered, by QEMU's reading, by a command
/// sent after its removal and before the CMD_SYNC; and the model, which had cached every
/// translation, must translate none of them. A coalescing that dropped or shortened a
/// run, or let a sync pass it, fails here.
#[test]
fn coalesced_deferred_unmaps_leave_no_removed_page_uninvalidated() {
    let mut batches = 0;
    for seed in 1..=8u64 {
        let mut rng = common::Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let model = SmmuModel::with_idr(host_idr(true));
        // SAFETY: fresh leaked memory; the model is the only register file.
        let mut smmu = unsafe { Smmu::init(model, common::memory(64), common::config()) }.unwrap();
        let pages = common::buffer((BUFS * BUF) as usize, PAGE as usize);
        let block = common::buffer(BLOCK as usize, BLOCK as usize);
        let pa = |n: u64| if n == BUFS { block.pa.0 } else { pages.pa.0 + n * BUF };
        let sids = [SID, SID + 1];
        let mut doms = Vec::new();
        let mut asids = Vec::new();
        for sid in sids {
            let d = smmu.create_domain().unwrap();
            smmu.attach(StreamId(sid), d).unwrap();
            let Translation::Stage1 { asid } = smmu.translation(d).unwrap() else { panic!("a stage-1 domain") };
            doms.push(d);
            asids.push(u32::from(asid.0));
        }
        let mut mapped = [[false; BUFS as usize + 1]; 2];
        for round in 0..20 {
            let what = format!("seed {seed} round {round}");
            // Everything mapped, and every probed page's translation cached by the model.
            for di in 0..2 {
                for n in 0..=BUFS {
                    let (iova, len, _) = slot(n);
                    if !mapped[di][n as usize] {
                        smmu.map(doms[di], Iova(iova), PhysAddr(pa(n)), len, Perm::ReadWrite, MemType::Normal).unwrap();
                        mapped[di][n as usize] = true;
                    }
                    for page in probe_pages(n) {
                        let outcome = smmu.regs().translate(sids[di], page, false);
                        assert_eq!(outcome, Outcome::Ok(pa(n) + page - iova), "{what}");
                    }
                }
            }
            smmu.regs().clear_commands();
            let mut deferred: Vec<(usize, u64, Removed)> = Vec::new();
            let mut last: Option<(usize, u64)> = None;
            for _ in 0..1 + rng.below(12) {
                let since = smmu.regs().commands().len();
                let op = rng.below(10);
                let (di, n) = match last {
                    // The neighbour of the last deferred unmap, up or down: a run.
                    Some((di, n)) if op < 6 => (di, if rng.below(2) == 0 { n + 1 } else { n.wrapping_sub(1) }),
                    _ => (rng.below(2) as usize, rng.below(BUFS + 1)),
                };
                if n > BUFS {
                    continue;
                }
                let (iova, len, level) = slot(n);
                let removed: Vec<Removed> =
                    probe_pages(n).into_iter().map(|page| Removed { asid: asids[di], page, level, since }).collect();
                match (op, mapped[di][n as usize]) {
                    (9, false) => {
                        // A map over IOVAs a deferred unmap of this batch removed: their
                        // invalidation is confirmed first.
                        smmu.map(doms[di], Iova(iova), PhysAddr(pa(n)), len, Perm::ReadWrite, MemType::Normal).unwrap();
                        mapped[di][n as usize] = true;
                        let due: Vec<Removed> =
                            deferred.iter().filter(|(d, m, _)| (*d, *m) == (di, n)).map(|(_, _, r)| *r).collect();
                        assert_covered_before_last_sync(&smmu.regs().commands(), &due, &format!("{what}: map {n}"));
                        deferred.retain(|(d, m, _)| (*d, *m) != (di, n));
                    }
                    (8, true) => {
                        smmu.unmap(doms[di], Iova(iova), len).unwrap();
                        mapped[di][n as usize] = false;
                        assert_covered_before_last_sync(
                            &smmu.regs().commands(),
                            &removed,
                            &format!("{what}: unmap {n}"),
                        );
                    }
                    (_, false) => {}
                    (_, true) => {
                        smmu.unmap_deferred(doms[di], Iova(iova), len).unwrap();
                        mapped[di][n as usize] = false;
                        deferred.extend(removed.into_iter().map(|r| (di, n, r)));
                        last = Some((di, n));
                    }
                }
            }
            smmu.sync_deferred().unwrap();
            let log = smmu.regs().commands();
            let pending: Vec<Removed> = deferred.iter().map(|(_, _, r)| *r).collect();
            assert_covered_before_last_sync(&log, &pending, &format!("{what}: sync_deferred"));
            for (di, n, r) in &deferred {
                assert!(!mapped[*di][*n as usize]);
                let outcome = smmu.regs().translate(sids[*di], r.page, false);
                assert_eq!(outcome, Outcome::Fault(id::F_TRANSLATION), "{what}: {:#x} after sync_deferred", r.page);
            }
            batches += usize::from(!deferred.is_empty());
        }
    }
    assert!(batches > 100, "only {batches} batches had deferred unmaps");
}
