//! The IOMMU PD's event handling (`smmuv3_service::events::pump`) on the SMMU model, woken
//! the way seL4 would wake the PD: by the event interrupt when the SMMU's interrupts are
//! wired and the model raised one (empty to non-empty, IHI 0070 7.2), by its own re-arm
//! (`Rearm::Now`), or by its poll timer (`Rearm::Poll`). The model raises no other
//! interrupt, so a handler that stops with records left, or that waits for interrupts an
//! MSI-only SMMU never wires to it, leaves records unread.

use smmuv3::model::{host_smmu, SmmuModel};
use smmuv3::{Event, Smmu};
use smmuv3_service::events::{pump, EventSink, Rearm};

/// The PD's batch is 256 records and it takes 16 per wake-up; smaller here, so that the
/// model's 128-entry queue outlasts them.
const BATCH: usize = 8;
const ROUNDS: usize = 2;

struct Sink {
    smmu: Smmu<SmmuModel>,
    got: Vec<u64>,
}

impl EventSink<SmmuModel> for Sink {
    fn smmu(&mut self) -> &mut Smmu<SmmuModel> {
        &mut self.smmu
    }
    fn take(&mut self, batch: &[Option<Event>]) {
        for e in batch.iter().flatten() {
            if let Event::Translation(f) = e {
                self.got.push(f.txn.iova.0);
            }
        }
    }
}

/// An F_TRANSLATION record for stream 8 at `iova` (IHI 0070 7.3.13).
fn record(iova: u64) -> [u64; 4] {
    [0x10 | (8 << 32), 0, iova, 0]
}

/// What woke the PD, wake-up by wake-up, until nothing would wake it again.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Wake {
    Interrupt,
    Itself,
    Timer,
}

/// Run the PD's handler as seL4 would wake it, from `rearm` (what it arranged last) and
/// the latest interrupt the model raised, until it sleeps with nothing to wake it, or a
/// poll finds nothing (the timer goes on firing, to no effect). At most 1000 wake-ups.
fn run(sink: &mut Sink, wired: bool, mut rearm: Rearm) -> Vec<Wake> {
    let mut wakes = Vec::new();
    let mut irqs = sink.smmu.regs().event_irqs().saturating_sub(1);
    for _ in 0..1000 {
        let raised = sink.smmu.regs().event_irqs();
        let irq = wired && raised > irqs;
        irqs = raised;
        let wake = match rearm {
            Rearm::Now => Wake::Itself,
            Rearm::Poll => Wake::Timer,
            _ if irq => Wake::Interrupt,
            _ => break,
        };
        wakes.push(wake);
        let pass = pump::<_, _, BATCH>(sink, wired, ROUNDS);
        rearm = pass.rearm;
        if wake == Wake::Timer && pass.events == 0 {
            break;
        }
    }
    wakes
}

fn sink() -> Sink {
    Sink { smmu: host_smmu(8), got: Vec::new() }
}

/// 100 records in the queue when the interrupt comes, and 300 more written while the PD
/// drains, as fast as it makes room: one interrupt in all, and far more than one wake-up's
/// bound (16 records here). The PD wakes itself until the queue is empty, and every
/// record is delivered once, in order.
#[test]
fn records_left_past_one_interrupt_are_all_delivered() {
    let mut s = sink();
    let model = s.smmu.regs();
    for i in 0..100 {
        model.inject_event(record(i << 12));
    }
    model.inject_events_during_next_drain(&(100..400).map(|i| record(i << 12)).collect::<Vec<_>>());
    let wakes = run(&mut s, true, Rearm::Interrupt);
    assert_eq!(s.smmu.regs().event_irqs(), 1, "the SMMU raised one interrupt");
    assert_eq!(s.got, (0..400).map(|i| i << 12).collect::<Vec<_>>());
    assert_eq!(wakes[0], Wake::Interrupt);
    assert!(wakes[1..].iter().all(|w| *w == Wake::Itself), "{wakes:?}");
    assert_eq!(wakes.len(), 400usize.div_ceil(BATCH * ROUNDS));
    // And then it sleeps until the next record's interrupt, which the next fault raises.
    s.smmu.regs().inject_event(record(0x999_000));
    run(&mut s, true, Rearm::Interrupt);
    assert_eq!(s.got.last(), Some(&0x999_000));
}

/// An SMMU whose interrupts reach no one (MSI-only): the model raises them, the PD never
/// sees them. Its poll timer (armed at start-up) takes every record, a flood past one
/// wake-up's bound included, and records that come later at the next tick.
#[test]
fn an_smmu_without_wired_interrupts_is_polled() {
    let mut s = sink();
    for i in 0..50 {
        s.smmu.regs().inject_event(record(i << 12));
    }
    let wakes = run(&mut s, false, Rearm::Poll);
    assert_eq!(s.got, (0..50).map(|i| i << 12).collect::<Vec<_>>());
    assert_eq!(wakes.iter().filter(|w| **w == Wake::Interrupt).count(), 0);
    assert_eq!(wakes[0], Wake::Timer);
    s.smmu.regs().inject_event(record(0x777_000));
    run(&mut s, false, Rearm::Poll);
    assert_eq!(s.got.last(), Some(&0x777_000));
}

/// SMMU_GERROR.SFM_ERR during a pass: the handler stops (`Rearm::Stop`) and reports it;
/// the SMMU has been failed closed under it.
#[test]
fn service_failure_stops_the_handler() {
    let mut s = sink();
    s.smmu.regs().inject_event(record(0x1000));
    s.smmu.regs().enter_service_failure();
    let pass = pump::<_, _, BATCH>(&mut s, true, ROUNDS);
    assert_eq!(pass.rearm, Rearm::Stop);
    assert_eq!(pass.failure, Some(smmuv3::Error::ServiceFailure));
    assert_eq!(s.smmu.failure(), Some(Ok(())));
}
