//! The SMMUv3 driver against QEMU's SMMUv3. Each test has a device try something, then
//! checks memory (through the CPU) and the events the SMMU recorded.

use core::ptr::NonNull;

use arm_gic::gicv3::GicV3;
use heapless::Vec;
use smmuv3::{Access, Config, DomainId, Event, Iova, MemType, MmioRegisters, Perm, PhysAddr, Smmu, StreamId};

use crate::bringup::DMA_POLLS;
use crate::memory::{self, page};
use crate::pci::EduDev;
use crate::platform::Platform;
use crate::println;
use crate::report::Report;

const LEN: usize = 256;
/// Where each device's buffers appear on the bus: deliberately unlike their physical
/// addresses, so a working DMA proves translation happened.
const IOVA_A: u64 = 0x1_0000_0000;
const IOVA_RO: u64 = 0x1_0010_0000;
const IOVA_UNMAP: u64 = 0x1_0020_0000;
const IOVA_BLOCK: u64 = 0x1_0040_0000;
/// Not aligned to the run's size: QEMU splits a range command into aligned powers of two,
/// so a wrong NUM, SCALE or start leaves a page of the run cached.
const IOVA_RUN: u64 = 0x1_0060_3000;
const IOVA_B: u64 = 0x2_0000_0000;

struct Ctx<'a> {
    smmu: Smmu<MmioRegisters>,
    eventq_irq: Option<u32>,
    events: Vec<Event, 512>,
    report: &'a mut Report,
}

/// A device under test, with two pages of its own that its driver maps for it: a
/// read-only source it loads data from and a read/write page it reports data to. (edu's
/// buffer is reachable only by DMA.)
struct Dev {
    edu: edu::Edu,
    sid: u32,
    name: &'static str,
    src: smmuv3::DmaRegion,
    src_iova: u64,
    chk: smmuv3::DmaRegion,
    chk_iova: u64,
}

const SRC_IOVA: u64 = 0x8000_0000;
const CHK_IOVA: u64 = 0x8000_1000;

fn dev(d: &EduDev, name: &'static str, src: usize, chk: usize) -> Dev {
    // SAFETY: BAR0 was assigned by `pci::setup`, is identity-mapped as Device memory,
    // and each device gets one driver instance at a time.
    let edu = unsafe { edu::Edu::new(NonNull::new(d.bar0 as *mut u8).unwrap()) };
    Dev { edu, sid: d.sid, name, src: page(src), src_iova: SRC_IOVA, chk: page(chk), chk_iova: CHK_IOVA }
}

/// Give `d` its source and check pages in domain `dom`.
fn map_own_pages(cx: &mut Ctx, d: &Dev, dom: DomainId) {
    cx.smmu.map(dom, Iova(d.src_iova), d.src.pa, 4096, Perm::Read, MemType::Normal).expect("map source page");
    cx.smmu.map(dom, Iova(d.chk_iova), d.chk.pa, 4096, Perm::ReadWrite, MemType::Normal).expect("map check page");
}

impl Ctx<'_> {
    /// Collect events: wait for the event-queue interrupt if one is expected, then drain.
    fn collect(&mut self, expect_irq: bool, irq_seen: u32) {
        if let (true, Some(irq)) = (expect_irq, self.eventq_irq) {
            let came = crate::gic::wait_for(irq, irq_seen, 50_000_000);
            self.report.check(
                "event-queue interrupt",
                came,
                format_args!("INTID {irq} taken {} time(s)", crate::gic::count(irq)),
            );
        }
        self.events.clear();
        let events = &mut self.events;
        match self.smmu.handle_interrupt(|e| {
            let _ = events.push(e);
        }) {
            Ok(d) if d.overflowed => println!("    (event queue overflowed: records were lost)"),
            Ok(_) => {}
            Err(e) => println!("    global error: {e}"),
        }
        // QEMU splits a DMA into 4-byte accesses and faults each one: print runs of
        // events that differ only in address as one line.
        let mut i = 0;
        while i < self.events.len() {
            let e = &self.events[i];
            let mut j = i + 1;
            while j < self.events.len() && same_kind(e, &self.events[j]) {
                j += 1;
            }
            match (e.fault(), self.events[j - 1].fault()) {
                (Some(first), Some(last)) if j - i > 1 => println!(
                    "    SMMU events: {} x {} stream {}: {:?} of iova {}..={} (one per 4-byte access)",
                    j - i,
                    e.name(),
                    first.txn.sid,
                    first.txn.access,
                    first.txn.iova,
                    last.txn.iova
                ),
                _ => println!("    SMMU event: {e}"),
            }
            i = j;
        }
    }

    fn irq_count(&self) -> u32 {
        self.eventq_irq.map(crate::gic::count).unwrap_or(0)
    }

    /// Is there a translation-class event of `name` for this stream, address and direction?
    fn saw(&self, name: &str, sid: u32, iova: u64, access: Access) -> bool {
        self.events.iter().any(|e| {
            e.name() == name
                && e.fault()
                    .is_some_and(|f| f.txn.sid == StreamId(sid) && f.txn.iova == Iova(iova) && f.txn.access == access)
        })
    }

    /// Device writes `LEN` bytes of `byte` to bus address `iova`: the byte is put in the
    /// device's source page (through the CPU), loaded by DMA from the device's source
    /// IOVA, then written out. Returns the event interrupt count before the write.
    fn device_writes(&mut self, d: &mut Dev, iova: u64, byte: u8) -> u32 {
        memory::fill(&d.src, byte);
        let _ = d.edu.dma_from_ram(d.src_iova, 0, LEN, DMA_POLLS);
        println!("  {} (stream {:#x}) writes {LEN} bytes of {byte:#04x} to bus address {iova:#x}", d.name, d.sid);
        self.device_writes_buffer(d, iova)
    }

    /// Device writes whatever its buffer holds to `iova` (for streams that cannot load).
    fn device_writes_buffer(&mut self, d: &mut Dev, iova: u64) -> u32 {
        let seen = self.irq_count();
        if let Err(e) = d.edu.dma_to_ram(0, iova, LEN, DMA_POLLS) {
            println!("    the DMA engine did not finish: {e:?}");
        }
        seen
    }

    /// Device reads `LEN` bytes from `iova`, then writes its buffer to its check IOVA;
    /// returns what arrived there.
    fn device_reads(&mut self, d: &mut Dev, iova: u64) -> [u8; LEN] {
        memory::fill(&d.chk, 0xee);
        println!("  {} (stream {:#x}) reads {LEN} bytes from bus address {iova:#x}", d.name, d.sid);
        let _ = d.edu.dma_from_ram(iova, 0, LEN, DMA_POLLS);
        let _ = d.edu.dma_to_ram(0, d.chk_iova, LEN, DMA_POLLS);
        let mut got = [0u8; LEN];
        memory::read(&d.chk, 0, &mut got);
        got
    }
}

fn same_kind(a: &Event, b: &Event) -> bool {
    match (a.fault(), b.fault()) {
        (Some(x), Some(y)) => a.name() == b.name() && x.txn.sid == y.txn.sid && x.txn.access == y.txn.access,
        _ => false,
    }
}

fn untouched(r: &smmuv3::DmaRegion, offset: usize, byte: u8) -> bool {
    let mut got = [0u8; LEN];
    memory::read(r, offset, &mut got);
    got.iter().all(|b| *b == byte)
}

/// Whether `d`'s DMA still reaches RAM: a pattern read from one place in `buf` and
/// written back to another arrives (as in bring-up, where it did with the SMMU off).
fn dma_reaches_ram(d: &EduDev, buf: &smmuv3::DmaRegion) -> bool {
    // SAFETY: BAR0 was assigned by `pci::setup`, is identity-mapped as Device memory, and
    // nothing else drives this device while this runs.
    let mut edu = unsafe { edu::Edu::new(NonNull::new(d.bar0 as *mut u8).unwrap()) };
    let pattern: [u8; 64] = core::array::from_fn(|j| (j as u8) ^ 0x5c);
    memory::fill(buf, 0);
    memory::write(buf, 0, &pattern);
    let _ = edu.dma_from_ram(buf.pa.0, 0, 64, DMA_POLLS);
    let _ = edu.dma_to_ram(0, buf.pa.0 + 1024, 64, DMA_POLLS);
    let mut got = [0u8; 64];
    memory::read(buf, 1024, &mut got);
    got == pattern
}

/// A probe the driver refuses (here StreamIDs wider than the SMMU's SIDSIZE, which QEMU
/// makes 16) must not leave the SMMU as it found it (disabled, which on QEMU is bypass):
/// `init`'s error path sets GBPA.ABORT and disables the SMMU first (`fail_closed`). QEMU 10
/// implements SMMU_GBPA, so the device's DMA, which reached RAM in bring-up, must stop;
/// QEMU 7.2 has none, so nothing can stop DMA while the SMMU is disabled, and the driver
/// must say so (`NoGlobalAbort`) rather than claim it did.
fn refused_probe_fails_closed(p: &Platform, d: &EduDev, report: &mut Report) {
    println!("smmu: a probe the driver must refuse (StreamIDs wider than the SMMU has), from bypass");
    let config = Config { ias_bits: 48, sid_bits: 17, bound: smmuv3::Bound::Polls(10_000_000), ..Config::default() };
    // SAFETY: the SMMU's registers are identity-mapped as Device memory and only this
    // driver uses them; nothing else runs.
    let regs = unsafe { MmioRegisters::new(NonNull::new(p.smmu as *mut u8).unwrap()) };
    // SAFETY: the regions are static, used by nothing else, and PA == VA.
    let refused = unsafe { Smmu::init(regs, memory::smmu_memory(), config) };
    report.check(
        "a probe asking for more StreamID bits than the SMMU has is refused",
        refused.is_err(),
        format_args!("{:?}", refused.as_ref().err()),
    );
    let reaches = dma_reaches_ram(d, &page(0));
    // Whether this SMMU can abort while disabled: fail_closed again, idempotent, answers.
    // SAFETY: as above.
    let regs = unsafe { MmioRegisters::new(NonNull::new(p.smmu as *mut u8).unwrap()) };
    match smmuv3::fail_closed(&regs, smmuv3::Bound::Polls(10_000_000)) {
        Ok(()) => report.check(
            "after the refused probe every stream aborts (GBPA.ABORT set, SMMU disabled)",
            !reaches,
            format_args!(
                "stream {:#x}'s DMA {}",
                d.sid,
                if reaches { "still reaches RAM" } else { "no longer reaches RAM" }
            ),
        ),
        Err(smmuv3::Error::NoGlobalAbort) => report.check(
            "after the refused probe the driver says DMA is not stopped (this SMMU has no GBPA, as QEMU 7.2)",
            reaches,
            format_args!(
                "stream {:#x}'s DMA {}",
                d.sid,
                if reaches { "still reaches RAM" } else { "no longer reaches RAM" }
            ),
        ),
        Err(e) => report.check("fail_closed after the refused probe", false, format_args!("{e}")),
    }
}

pub fn run(p: &Platform, gic: &mut GicV3, edus: &[EduDev], report: &mut Report) {
    if edus.len() < 3 {
        report.check("three edu devices", false, format_args!("only {} found", edus.len()));
        return;
    }
    refused_probe_fails_closed(p, &edus[0], report);
    println!("smmu: initialising the SMMUv3 driver (default deny: every stream aborts)");
    let mem = memory::smmu_memory();
    let max_sid = edus.iter().map(|d| d.sid).max().unwrap_or(0);
    let sid_bits = (32 - max_sid.leading_zeros()).max(16);
    // Coherent: QEMU virt marks its SMMU `dma-coherent`, and this image maps its memory
    // write-back inner shareable, as the SMMU walks it.
    let config = Config { ias_bits: 48, sid_bits, bound: smmuv3::Bound::Polls(10_000_000), ..Config::default() };
    // SAFETY: the SMMU's registers are identity-mapped as Device memory and only this
    // driver uses them.
    let regs = unsafe { MmioRegisters::new(NonNull::new(p.smmu as *mut u8).unwrap()) };
    // SAFETY: the regions are static, used by nothing else, and PA == VA.
    let smmu = match unsafe { Smmu::init(regs, mem, config) } {
        Ok(s) => s,
        Err(e) => {
            report.check("SMMU initialised", false, format_args!("{e}"));
            return;
        }
    };
    let f = smmu.features();
    report.check(
        "SMMU initialised",
        true,
        format_args!(
            "SMMUv3.{}: {}-bit StreamIDs, {}-bit ASIDs, {}-bit output, two-level stream table {}",
            f.arch_minor, f.sid_bits, f.asid_bits, f.oas_bits, f.two_level_strtab
        ),
    );
    if smmu.gbpa_aborts() {
        println!("  SMMU_GBPA.ABORT set: while disabled, the SMMU aborts all DMA");
    } else {
        println!("  note: SMMU_GBPA.ABORT did not take (this SMMU lacks GBPA; QEMU 7.2 does): while");
        println!("  disabled it passes DMA through, so only the aborting stream table protects memory");
    }
    for irq in [p.smmu_irqs.eventq, p.smmu_irqs.gerror].into_iter().flatten() {
        crate::gic::enable_spi(gic, irq);
    }
    let mut cx = Ctx { smmu, eventq_irq: p.smmu_irqs.eventq, events: Vec::new(), report };
    let mut a = dev(&edus[0], "device A", 10, 11);
    let mut b = dev(&edus[1], "device B", 12, 13);
    let mut c = dev(&edus[2], "device C", 14, 15);

    // Every stream the harness knows of gets an aborting STE now, before any attach.
    for d in [&a, &b, &c] {
        let _ = cx.smmu.prepare_stream(StreamId(d.sid));
    }
    default_deny(&mut cx, &mut a);
    let (dom_a, buf_a) = mapped_both_ways(&mut cx, &mut a);
    unmapped_is_blocked(&mut cx, &mut a);
    read_only(&mut cx, &mut a, dom_a);
    unmap_takes_effect(&mut cx, &mut a, dom_a);
    block_mapping(&mut cx, &mut a, dom_a);
    run_unmap_every_page(&mut cx, &mut a, dom_a);
    never_configured(&mut cx, &mut c);
    own_memory(&mut cx, &mut a, dom_a);
    second_device(&mut cx, &mut a, &mut b, buf_a);
    abort_and_back(&mut cx, &mut a, dom_a, buf_a);
    command_error(&mut cx, &mut a, dom_a, p.smmu_irqs.gerror);
    rejected_invalidation(&mut cx, &mut a, dom_a);
    let s = cx.smmu.stats();
    println!(
        "smmu: {} commands, {} syncs, {} events, {} overflows, {} command errors, {} timeouts",
        s.commands, s.syncs, s.events, s.event_overflows, s.command_errors, s.timeouts
    );
    cx.report.check(
        "only the two provoked command errors, no timeouts",
        s.command_errors == 2 && s.timeouts == 0,
        format_args!("{s:?}"),
    );
}

/// Before any stream is attached, a device's DMA goes nowhere.
fn default_deny(cx: &mut Ctx, a: &mut Dev) {
    println!("test: default deny (nothing attached yet)");
    aborted_write(cx, a, 5, 0x11, "unattached stream aborted");
}

/// A device whose STE aborts writes its buffer (whatever bring-up loaded) over a page
/// holding `sentinel`; the page must not change.
fn aborted_write(cx: &mut Ctx, d: &mut Dev, victim_page: usize, sentinel: u8, name: &str) {
    let victim = page(victim_page);
    memory::fill(&victim, sentinel);
    println!("  {} (stream {:#x}) writes its buffer (loaded at bring-up) to {:#x}", d.name, d.sid, victim.pa.0);
    cx.device_writes_buffer(d, victim.pa.0);
    cx.collect(false, 0);
    cx.report.check(
        name,
        untouched(&victim, 0, sentinel),
        format_args!("{:#x} still holds {sentinel:#04x}: the stream's STE aborts every transaction", victim.pa.0),
    );
}

/// Test 1: a mapped IOVA works in both directions and the data is right.
fn mapped_both_ways(cx: &mut Ctx, a: &mut Dev) -> (DomainId, smmuv3::DmaRegion) {
    println!("test 1: a mapped IOVA, both directions");
    let buf = page(3);
    let dom = cx.smmu.create_domain().expect("domain");
    cx.smmu.map(dom, Iova(IOVA_A), buf.pa, 4096, Perm::ReadWrite, MemType::Normal).expect("map");
    map_own_pages(cx, a, dom);
    cx.smmu.attach(StreamId(a.sid), dom).expect("attach");
    println!("  mapped iova {IOVA_A:#x} -> {:#x} read/write for {}; attached", buf.pa.0, a.name);
    let mut pattern = [0u8; LEN];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) ^ 0x5a;
    }
    memory::write(&buf, 0, &pattern);
    let got = cx.device_reads(a, IOVA_A);
    cx.report.check("mapped read", got == pattern, format_args!("device got {:02x?}...", &got[..6]));
    cx.device_writes(a, IOVA_A + 2048, 0xc3);
    cx.report.check(
        "mapped write",
        untouched(&buf, 2048, 0xc3),
        format_args!("{:#x} now holds 0xc3 (written through iova {:#x})", buf.pa.0 + 2048, IOVA_A + 2048),
    );
    (dom, buf)
}

/// Test 2: an unmapped IOVA is blocked, memory untouched, F_TRANSLATION reported.
fn unmapped_is_blocked(cx: &mut Ctx, a: &mut Dev) {
    println!("test 2: an unmapped IOVA (the physical address of a page the device was never given)");
    let victim = page(5);
    memory::fill(&victim, 0x22);
    let seen = cx.device_writes(a, victim.pa.0, 0x66);
    cx.collect(true, seen);
    cx.report.check(
        "unmapped write blocked",
        untouched(&victim, 0, 0x22),
        format_args!("{:#x} still holds 0x22", victim.pa.0),
    );
    let ok = cx.saw("F_TRANSLATION", a.sid, victim.pa.0, Access::Write);
    cx.report.check(
        "translation fault reported",
        ok,
        format_args!("F_TRANSLATION, stream {:#x}, iova {:#x}, write", a.sid, victim.pa.0),
    );
}

/// Test 3: a read-only mapping: reads work, a device write is a permission fault.
fn read_only(cx: &mut Ctx, a: &mut Dev, dom: DomainId) {
    println!("test 3: a read-only mapping");
    let ro = page(6);
    memory::fill(&ro, 0x33);
    cx.smmu.map(dom, Iova(IOVA_RO), ro.pa, 4096, Perm::Read, MemType::Normal).expect("map ro");
    println!("  mapped iova {IOVA_RO:#x} -> {:#x} read-only", ro.pa.0);
    let got = cx.device_reads(a, IOVA_RO);
    cx.report.check("read-only read", got.iter().all(|b| *b == 0x33), format_args!("device got {:02x?}...", &got[..4]));
    let seen = cx.device_writes(a, IOVA_RO, 0x66);
    cx.collect(true, seen);
    cx.report.check(
        "read-only write blocked",
        untouched(&ro, 0, 0x33),
        format_args!("{:#x} still holds 0x33", ro.pa.0),
    );
    let ok = cx.saw("F_PERMISSION", a.sid, IOVA_RO, Access::Write);
    cx.report.check(
        "permission fault reported",
        ok,
        format_args!("F_PERMISSION, stream {:#x}, iova {IOVA_RO:#x}, write", a.sid),
    );
}

/// Test 4: after unmap returns, the old IOVA is dead (the TLB invalidation took effect).
fn unmap_takes_effect(cx: &mut Ctx, a: &mut Dev, dom: DomainId) {
    println!("test 4: unmap, then DMA to the old IOVA");
    let pg = page(7);
    memory::fill(&pg, 0x44);
    cx.smmu.map(dom, Iova(IOVA_UNMAP), pg.pa, 4096, Perm::ReadWrite, MemType::Normal).expect("map");
    // Use the mapping, so QEMU's IOTLB caches it.
    cx.device_writes(a, IOVA_UNMAP, 0x55);
    cx.report.check("write before unmap", untouched(&pg, 0, 0x55), format_args!("{:#x} holds 0x55", pg.pa.0));
    let r = cx.smmu.unmap(dom, Iova(IOVA_UNMAP), 4096);
    println!("  unmapped iova {IOVA_UNMAP:#x}: {r:?} (CMD_TLBI_NH_VA + CMD_SYNC completed)");
    memory::fill(&pg, 0x44);
    let seen = cx.device_writes(a, IOVA_UNMAP, 0x66);
    cx.collect(true, seen);
    cx.report.check(
        "write after unmap blocked",
        r.is_ok() && untouched(&pg, 0, 0x44),
        format_args!("{:#x} still holds 0x44", pg.pa.0),
    );
    let ok = cx.saw("F_TRANSLATION", a.sid, IOVA_UNMAP, Access::Write);
    cx.report.check("fault after unmap reported", ok, format_args!("F_TRANSLATION at {IOVA_UNMAP:#x}"));
}

/// A 2 MiB block: the last page of the block is reachable, and unmapping the block kills it.
fn block_mapping(cx: &mut Ctx, a: &mut Dev, dom: DomainId) {
    println!("test: a 2 MiB block mapping");
    let big = memory::BIG.region();
    let last = big.slice(0x1ff000, 4096).unwrap();
    memory::fill(&last, 0x77);
    cx.smmu.map(dom, Iova(IOVA_BLOCK), big.pa, 0x200000, Perm::ReadWrite, MemType::Normal).expect("map block");
    let leaf = cx.smmu.translate(dom, Iova(IOVA_BLOCK + 0x1ff000)).ok().flatten();
    cx.report.check("block descriptor used", leaf.is_some_and(|l| l.level == 2), format_args!("{leaf:?}"));
    cx.device_writes(a, IOVA_BLOCK + 0x1ff000, 0x78);
    cx.report.check("write through block", untouched(&last, 0, 0x78), format_args!("{:#x} holds 0x78", last.pa.0));
    let r = cx.smmu.unmap(dom, Iova(IOVA_BLOCK), 0x200000);
    memory::fill(&last, 0x77);
    let seen = cx.device_writes(a, IOVA_BLOCK + 0x1ff000, 0x79);
    cx.collect(true, seen);
    cx.report.check(
        "block unmapped",
        r.is_ok() && untouched(&last, 0, 0x77),
        format_args!("{:#x} still holds 0x77", last.pa.0),
    );
}

/// A run of 37 pages, each put in QEMU's IOTLB by a DMA, unmapped by one call (on an SMMU
/// with range invalidation, two range commands: 5 pages, then 32); afterwards a DMA to
/// every page of the run must be blocked and reported, first, middle and last included.
fn run_unmap_every_page(cx: &mut Ctx, a: &mut Dev, dom: DomainId) {
    const PAGES: usize = 37;
    println!("test: unmap a run of {PAGES} pages the device used, then DMA to every page of it");
    let run = memory::BIG.region().slice(0x3000, PAGES * 4096).unwrap();
    memory::fill(&run, 0x5a);
    let size = (PAGES * 4096) as u64;
    cx.smmu.map(dom, Iova(IOVA_RUN), run.pa, size, Perm::ReadWrite, MemType::Normal).expect("map run");
    let page_iova = |i: usize| IOVA_RUN + (i * 4096) as u64;
    memory::fill(&a.src, 0xa5);
    let _ = a.edu.dma_from_ram(a.src_iova, 0, LEN, DMA_POLLS);
    for i in 0..PAGES {
        cx.device_writes_buffer(a, page_iova(i));
    }
    let warmed = (0..PAGES).filter(|&i| untouched(&run, i * 4096, 0xa5)).count();
    cx.report.check("every page of the run written", warmed == PAGES, format_args!("{warmed} of {PAGES} pages"));
    let before = cx.smmu.stats().commands;
    let r = cx.smmu.unmap(dom, Iova(IOVA_RUN), size);
    println!(
        "  unmapped {PAGES} pages at {IOVA_RUN:#x}: {r:?}, {} commands (range invalidation: {})",
        cx.smmu.stats().commands - before,
        cx.smmu.features().range_invalidation
    );
    memory::fill(&run, 0x5a);
    memory::fill(&a.src, 0x66);
    let _ = a.edu.dma_from_ram(a.src_iova, 0, LEN, DMA_POLLS);
    // QEMU records a fault per 4-byte access, 64 a DMA: drain the queue after each page,
    // or the run's faults would overflow it.
    let mut faulted: Vec<usize, PAGES> = Vec::new();
    for i in 0..PAGES {
        let seen = cx.device_writes_buffer(a, page_iova(i));
        cx.collect(i == 0, seen);
        if cx.saw("F_TRANSLATION", a.sid, page_iova(i), Access::Write) {
            let _ = faulted.push(i);
        }
    }
    let reached: Vec<usize, PAGES> = (0..PAGES).filter(|&i| !untouched(&run, i * 4096, 0x5a)).collect();
    cx.report.check(
        "every page of the run blocked after unmap",
        r.is_ok() && reached.is_empty(),
        format_args!("pages the device still wrote: {reached:?}"),
    );
    cx.report.check(
        "a fault at every page of the run",
        faulted.len() == PAGES && [0, PAGES / 2, PAGES - 1].iter().all(|i| faulted.contains(i)),
        format_args!("F_TRANSLATION at {} of {PAGES} pages, first, middle and last included", faulted.len()),
    );
}

/// Test 5: a stream never configured is aborted.
fn never_configured(cx: &mut Ctx, c: &mut Dev) {
    println!("test 5: a stream never configured");
    aborted_write(cx, c, 9, 0x99, "never-configured write aborted");
    let named = cx.events.iter().any(|e| e.stream_id() == Some(StreamId(c.sid)));
    cx.report.check("aborted silently", !named, format_args!("STE.Config = abort records no event"));
}

/// Test 6: DMA aimed at the SMMU's own stream table, queues and page tables is blocked,
/// and the driver refuses to map them.
fn own_memory(cx: &mut Ctx, a: &mut Dev, dom: DomainId) {
    println!("test 6: DMA aimed at the SMMU's own tables and queues");
    let names = ["stream table", "command queue", "event queue", "context descriptors", "page-table pool"];
    for (name, r) in names.iter().zip(cx.smmu.own_memory()) {
        // The last LEN bytes: unused by the SMMU so far, so they must not change.
        let offset = r.len - LEN;
        let mut before = [0u8; LEN];
        memory::read(&r, offset, &mut before);
        let target = r.pa.0 + offset as u64;
        let seen = cx.device_writes(a, target, 0x66);
        cx.collect(true, seen);
        let mut after = [0u8; LEN];
        memory::read(&r, offset, &mut after);
        cx.report.check(
            name,
            before == after,
            format_args!("{target:#x} unchanged: no domain maps the SMMU's own memory"),
        );
        let refused = cx.smmu.map(dom, Iova(0x3_0000_0000), PhysAddr(r.pa.0), 4096, Perm::Read, MemType::Normal);
        cx.report.check("driver refuses to map it", refused.is_err(), format_args!("{refused:?}"));
    }
}

/// Test 7: a second device on another stream cannot use the first device's mappings.
fn second_device(cx: &mut Ctx, a: &mut Dev, b: &mut Dev, buf_a: smmuv3::DmaRegion) {
    println!("test 7: a second device on another stream");
    let _ = a;
    let buf_b = page(8);
    let dom_b = cx.smmu.create_domain().expect("domain B");
    cx.smmu.map(dom_b, Iova(IOVA_B), buf_b.pa, 4096, Perm::ReadWrite, MemType::Normal).expect("map B");
    map_own_pages(cx, b, dom_b);
    cx.smmu.attach(StreamId(b.sid), dom_b).expect("attach B");
    cx.device_writes(b, IOVA_B, 0xbb);
    cx.report.check("B's own mapping works", untouched(&buf_b, 0, 0xbb), format_args!("{:#x} holds 0xbb", buf_b.pa.0));
    memory::fill(&buf_a, 0xaa);
    let seen = cx.device_writes(b, IOVA_A, 0x66);
    cx.collect(true, seen);
    cx.report.check(
        "B cannot use A's IOVA",
        untouched(&buf_a, 0, 0xaa),
        format_args!("A's buffer {:#x} still holds 0xaa", buf_a.pa.0),
    );
    let ok = cx.saw("F_TRANSLATION", b.sid, IOVA_A, Access::Write);
    cx.report.check("fault names stream B", ok, format_args!("F_TRANSLATION, stream {:#x}, iova {IOVA_A:#x}", b.sid));
}

/// Switch a stream to abort and back to translate.
fn abort_and_back(cx: &mut Ctx, a: &mut Dev, dom: DomainId, buf_a: smmuv3::DmaRegion) {
    println!("test: detach a stream (abort), then attach it again");
    memory::fill(&buf_a, 0x10);
    cx.device_writes(a, CHK_IOVA, 0x20); // loads 0x20 into A's buffer while attached
    let r = cx.smmu.detach(StreamId(a.sid));
    println!("  detached {}; it writes its buffer (0x20s) to iova {IOVA_A:#x}", a.name);
    cx.device_writes_buffer(a, IOVA_A);
    cx.collect(false, 0);
    cx.report.check(
        "detached stream aborted",
        r.is_ok() && untouched(&buf_a, 0, 0x10),
        format_args!("{:#x} still holds 0x10", buf_a.pa.0),
    );
    let r = cx.smmu.attach(StreamId(a.sid), dom);
    cx.device_writes(a, IOVA_A, 0x30);
    cx.report.check(
        "re-attached stream translates",
        r.is_ok() && untouched(&buf_a, 0, 0x30),
        format_args!("{:#x} holds 0x30", buf_a.pa.0),
    );
}

/// A command the SMMU rejects: the error is reported (CERROR_ILL, with the opcode), the
/// global-error interrupt fires, and the queue goes on: the next unmap is confirmed.
fn command_error(cx: &mut Ctx, a: &mut Dev, dom: DomainId, gerror_irq: Option<u32>) {
    println!("test: a command the SMMU rejects (opcode 0x7f does not exist)");
    let seen = gerror_irq.map(crate::gic::count).unwrap_or(0);
    let r = cx.smmu.submit_unchecked(smmuv3::cmd::Command([0x7f, 0]));
    cx.report.check(
        "command error reported",
        r == Err(smmuv3::Error::CommandError { code: 1, opcode: 0x7f }),
        format_args!("{r:?}"),
    );
    if let Some(irq) = gerror_irq {
        let came = crate::gic::wait_for(irq, seen, 50_000_000);
        cx.report.check(
            "global-error interrupt",
            came,
            format_args!("INTID {irq} taken {} time(s)", crate::gic::count(irq)),
        );
    }
    let g = cx.smmu.check_global_errors();
    cx.report.check("no global error left active", g == Ok(smmuv3::GlobalErrors(0)), format_args!("{g:?}"));
    // The queue still works: map, use, unmap (TLBI + SYNC), and the unmap takes effect.
    let pg = page(7);
    let mapped = cx.smmu.map(dom, Iova(IOVA_UNMAP), pg.pa, 4096, Perm::ReadWrite, MemType::Normal);
    cx.device_writes(a, IOVA_UNMAP, 0x5a);
    let r = cx.smmu.unmap(dom, Iova(IOVA_UNMAP), 4096);
    memory::fill(&pg, 0x44);
    let seen = cx.device_writes(a, IOVA_UNMAP, 0x66);
    cx.collect(true, seen);
    cx.report.check(
        "queue recovered",
        mapped.is_ok() && r.is_ok() && untouched(&pg, 0, 0x44),
        format_args!("unmap after the error: {r:?}; {:#x} still holds 0x44", pg.pa.0),
    );
}

/// The SMMU rejects an unmap's invalidation after the entry left the tables (injected: the
/// TLBI goes out as a command it refuses). The driver says the unmap failed, and rightly:
/// QEMU's SMMU, like hardware, still translates the page from its TLB. A TLBI by ASID (what
/// the IOMMU service's retry sends) is what ends it.
fn rejected_invalidation(cx: &mut Ctx, a: &mut Dev, dom: DomainId) {
    println!("test: the SMMU rejects an unmap's invalidation (injected)");
    let pg = page(7);
    let mapped = cx.smmu.map(dom, Iova(IOVA_UNMAP), pg.pa, 4096, Perm::ReadWrite, MemType::Normal);
    // The device's write caches the translation.
    cx.device_writes(a, IOVA_UNMAP, 0x5b);
    cx.smmu.reject_next_invalidation();
    let r = cx.smmu.unmap(dom, Iova(IOVA_UNMAP), 4096);
    let left_tables = cx.smmu.translate(dom, Iova(IOVA_UNMAP)) == Ok(None);
    let _ = cx.smmu.check_global_errors();
    cx.report.check(
        "rejected invalidation reported",
        mapped.is_ok() && matches!(r, Err(smmuv3::Error::CommandError { .. })) && left_tables,
        format_args!("unmap: {r:?}; the page table no longer maps {IOVA_UNMAP:#x}"),
    );
    memory::fill(&pg, 0x44);
    cx.device_writes(a, IOVA_UNMAP, 0x67);
    cx.report.check(
        "the SMMU still translates from its TLB",
        untouched(&pg, 0, 0x67),
        format_args!("{:#x} holds 0x67: the hazard the service keeps the device blocked for", pg.pa.0),
    );
    let inv = cx.smmu.invalidate_domain(dom);
    memory::fill(&pg, 0x44);
    let seen = cx.device_writes(a, IOVA_UNMAP, 0x68);
    cx.collect(true, seen);
    cx.report.check(
        "a TLBI by ASID ends it",
        inv.is_ok() && untouched(&pg, 0, 0x44),
        format_args!("{inv:?}; {:#x} still holds 0x44", pg.pa.0),
    );
}
