//! Withdrawing while the IOMMU PD serves the ring on another core (an SMP system): the
//! service core serves the queue in a thread of its own, polling, as an IOMMU PD on
//! another core would, while the client posts MAPs and UNMAPs and withdraws some of them
//! at random moments of the batch. A withdrawal that says it succeeded must mean the entry
//! was never applied (answered `UnknownOp`, the mapping as it was), one that failed must
//! mean it was served as its call would be, and every entry is answered exactly once.
//! Before the label was claimed by both sides (`Queue::read`'s swap, `Queue::withdraw`'s
//! compare-and-swap), a withdrawal landing between the IOMMU PD's read of the entry and
//! its publishing of the head said "withdrawn" for an entry the IOMMU PD then applied.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use iommu_client::queue::{Done, MapQueue, Notify, Posted};
use iommu_pd::model::ModelHw;
use iommu_pd::Service;
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::{DeviceId, ErrorCode, Handle, Rights};

#[path = "common/disk.rs"]
mod disk;
use disk::{PA, WINDOW};

/// The IOMMU PD polls the ring: nothing to wake.
struct Polled;

impl Notify for Polled {
    fn notify(&mut self) {}
}

/// Tells the serving thread to stop when dropped: also when an assertion fails, which
/// would otherwise leave the scope waiting for it for ever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Buffers, each mapped at an IOVA of its own, one entry each a round.
const BUFFERS: usize = 4;
const ROUNDS: u64 = 5_000;

fn iova(j: usize) -> u64 {
    WINDOW + 0x10_0000 + j as u64 * 0x1_0000
}

/// xorshift64: the pauses and which entries are withdrawn, the same every run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn an_entry_withdrawn_while_the_iommu_pd_serves_on_another_core_is_never_applied_and_each_is_answered_once() {
    let cfg = disk::config(16);
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 16)>::default()));
    let mut service = Service::new(ModelHw::default(), cfg, tables.storage()).unwrap();
    let queue = Box::leak(Box::<OwnedQueue<8>>::default()).queue().unwrap();
    let mut q = MapQueue::new(queue, Polled);
    let dev = DeviceId(0);
    let stop = AtomicBool::new(false);
    // What the client believes is mapped: what its answers said.
    let mut mapped = [false; BUFFERS];
    let (mut won, mut lost) = (0u64, 0u64);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let taken = thread::scope(|s| {
        let server = s.spawn(|| {
            let mut taken = 0;
            while !stop.load(Ordering::Relaxed) {
                match service.serve_queue(0, &queue) {
                    0 => std::hint::spin_loop(),
                    n => taken += n,
                }
            }
            taken
        });
        let stopping = StopOnDrop(&stop);
        for round in 0..ROUNDS {
            let ops: [Posted; BUFFERS] = core::array::from_fn(|j| match mapped[j] {
                true => Posted::Unmap { device: dev, iova: iova(j) },
                false => Posted::Map {
                    cap: Handle(0),
                    device: dev,
                    offset: j as u64 * 4096,
                    len: 4096,
                    iova: Some(iova(j)),
                    rights: Rights::READ_WRITE,
                },
            });
            let first = q.post_all(&ops).unwrap();
            // A pause of 0 to about a batch's length, so that the withdrawals fall before,
            // inside and after the IOMMU PD's taking of the batch; none in a quarter of the
            // rounds, so that some fall before it sees the entries, however fast it is.
            let pause = next(&mut rng);
            for _ in 0..if pause % 4 == 0 { 0 } else { pause % 2048 } {
                std::hint::spin_loop();
            }
            // Some of the four, in an order of their own.
            let mut withdrawn = [false; BUFFERS];
            let pick = next(&mut rng);
            for k in 0..BUFFERS {
                let j = (k + (pick >> 8) as usize) % BUFFERS;
                if pick >> j & 1 == 1 {
                    withdrawn[j] = q.withdraw(first + j as u64);
                    if withdrawn[j] {
                        won += 1;
                    } else {
                        lost += 1;
                    }
                }
            }
            let mut answers: Vec<Done> = Vec::new();
            let since = Instant::now();
            while answers.len() < BUFFERS {
                q.completions(|d| answers.push(d));
                assert!(since.elapsed() < Duration::from_secs(60), "round {round}: answers {answers:?}");
                thread::yield_now();
            }
            // Exactly one answer each, in the order posted.
            assert_eq!(
                answers.iter().map(|d| d.tag).collect::<Vec<_>>(),
                (first..first + BUFFERS as u64).collect::<Vec<_>>()
            );
            for (j, d) in answers.iter().enumerate() {
                let served = match ops[j] {
                    Posted::Map { .. } => Ok(iova(j)),
                    Posted::Unmap { .. } => Ok(0),
                };
                if withdrawn[j] {
                    assert_eq!(d.result, Err(ErrorCode::UnknownOp), "round {round}: entry {j} withdrawn, yet applied");
                } else {
                    assert_eq!(d.result, served, "round {round}: entry {j} ({:?})", ops[j]);
                    mapped[j] = !mapped[j];
                }
            }
        }
        drop(stopping);
        server.join().unwrap()
    });
    assert_eq!(taken as u64, ROUNDS * BUFFERS as u64, "every entry taken once");
    assert_eq!(q.completions(|d| panic!("an answer too many: {d:?}")), 0);
    // The device reaches exactly what the answers said is mapped: nothing withdrawn was
    // applied behind them.
    let reach = service.hw().reachable(0);
    for (j, &m) in mapped.iter().enumerate() {
        assert_eq!(reach.get(&iova(j)), m.then_some(&(PA + j as u64 * 4096, Rights::READ_WRITE)), "buffer {j}");
    }
    assert_eq!(reach.len(), mapped.iter().filter(|&&m| m).count());
    // Both outcomes happened many times, so the race was run: withdrawals that won and
    // ones the IOMMU PD's claim beat.
    assert!(won > ROUNDS / 50 && lost > ROUNDS / 50, "won {won}, lost {lost}");
    println!("withdrawals: {won} won, {lost} lost to the IOMMU PD");
}
