//! Every wait on the SMMU is bounded by time on a clock the system gives the driver, not
//! by a count of register reads: what the hardware may take is time (Linux waits one
//! second, `ARM_SMMU_POLL_TIMEOUT_US`), and a read costs anything from nanoseconds on a
//! fast core to microseconds under an emulator. The model's clock moves only as its
//! registers are accessed, each access costing what the test says.

mod common;

use smmuv3::mmio::reg;
use smmuv3::model::{FakeClock, Outcome, SmmuModel};
use smmuv3::{Bound, Config, Error, Iova, MemType, Perm, Smmu, StreamId};

const SID: u32 = 0x08;
const SECOND_NS: u64 = 1_000_000_000;

fn clock() -> &'static FakeClock {
    Box::leak(Box::new(FakeClock::new()))
}

/// A driver whose waits last at most Linux's one second on `clock`, with a page mapped at
/// 0x1000 for stream `SID` and its translation cached by the SMMU.
fn timed(clock: &'static FakeClock) -> Smmu<SmmuModel> {
    let cfg = Config { bound: Bound::Time { clock, us: Bound::LINUX_US }, ..common::config() };
    // SAFETY: fresh leaked memory; the model is the only register file.
    let mut smmu = unsafe { Smmu::init(SmmuModel::host(), common::memory(32), cfg) }.unwrap();
    let d = smmu.create_domain().unwrap();
    smmu.attach(StreamId(SID), d).unwrap();
    let page = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Ok(page.pa.0));
    smmu
}

/// An SMMU that takes 0.3 s to complete a CMD_SYNC, over 1.5 million register reads of
/// 200 ns: slow, not broken, well within Linux's second. A bound of a million reads (the
/// IOMMU PD's before) would have declared it dead, and left the unmap unconfirmed.
#[test]
fn a_slow_sync_within_a_second_completes_however_many_reads_it_takes() {
    let clock = clock();
    let mut smmu = timed(clock);
    let d = smmu.stream_domain(StreamId(SID)).unwrap();
    smmu.regs().with_clock(clock, 200);
    smmu.regs().consume_after_reads(1_500_000);
    let start = clock.ns();
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Ok(1));
    let took = clock.ns() - start;
    assert!(took > 300_000_000 && took < SECOND_NS, "the sync took {took} ns");
    assert_eq!(smmu.regs().translate(SID, 0x1000, true), Outcome::Fault(smmuv3::event::id::F_TRANSLATION));
    assert_eq!(smmu.stats().timeouts, 0);
}

/// The same SMMU, with waits counted in reads as before: the unmap is declared timed out
/// at a million reads. (What the test above guards against.)
#[test]
fn counted_in_reads_the_same_sync_times_out() {
    let cfg = Config { bound: Bound::Polls(1_000_000), ..common::config() };
    // SAFETY: as above.
    let mut smmu = unsafe { Smmu::init(SmmuModel::host(), common::memory(32), cfg) }.unwrap();
    let d = smmu.create_domain().unwrap();
    let page = common::buffer(4096, 4096);
    smmu.map(d, Iova(0x1000), page.pa, 4096, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.regs().consume_after_reads(1_500_000);
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Err(Error::Timeout("CMD_SYNC completion")));
}

/// An SMMU that never completes, behind registers that take 10 ms a read (a wedged
/// interconnect): the wait ends one second after it began, about a hundred reads, where
/// a million reads would have kept the IOMMU PD here for hours (three reads a poll: 8 h).
#[test]
fn a_stuck_sync_times_out_after_one_second_of_slow_reads() {
    let clock = clock();
    let mut smmu = timed(clock);
    let d = smmu.stream_domain(StreamId(SID)).unwrap();
    smmu.regs().with_clock(clock, 10_000_000);
    smmu.regs().set_stuck(true);
    let start = clock.ns();
    assert_eq!(smmu.unmap(d, Iova(0x1000), 4096), Err(Error::Timeout("CMD_SYNC completion")));
    let took = clock.ns() - start;
    // Past the second by at most the unmap's own accesses before the wait and one poll
    // (CMDQ_CONS, GERROR, GERRORN): a few reads of 10 ms.
    assert!((SECOND_NS..SECOND_NS + 100_000_000).contains(&took), "gave up after {took} ns");
    assert_eq!(smmu.stats().timeouts, 1);
}

/// The handshakes outside the command queue are bounded the same way: a GBPA update that
/// never completes makes `fail_closed` give up after one second, and it does not disable
/// an SMMU whose abort it could not confirm.
#[test]
fn a_gbpa_update_that_never_completes_gives_up_after_one_second() {
    let clock = clock();
    let model = SmmuModel::host();
    model.with_clock(clock, 10_000);
    model.preset(reg::CR0, 1);
    model.preset(reg::CR0ACK, 1);
    model.gbpa_busy_for(u32::MAX);
    let bound = Bound::Time { clock, us: Bound::LINUX_US };
    assert_eq!(smmuv3::fail_closed(&model, bound), Err(Error::Timeout("SMMU_GBPA.UPDATE")));
    assert!((SECOND_NS..SECOND_NS + 100_000).contains(&clock.ns()), "gave up after {} ns", clock.ns());
    assert_eq!(model.reg(reg::CR0), 1, "left enabled: disabled without the abort, it would pass DMA");
}
