//! A device with hundreds of mappings, through the service: its index three levels deep,
//! where an append writes at the rightmost leaf the root keeps (the finger, `Root::tail`)
//! and leaves its ancestors' counts owed until the next other change. MAPs from the
//! allocator (appends), MAPs into gaps below the highest, UNMAPs oldest first, of the
//! highest and of one in the middle, through calls and through the queue, in waves that
//! fill the window's tree and empty it again. After every step the service's audit checks
//! the index (its order, counts and finger, `Index::check`) against the mapping table, and
//! every answer against a reference set of live IOVAs; after each wave what the IOMMU
//! translates is that set. With any one place of the finger's upkeep removed
//! (`index.rs`), this fails.

mod common;

use std::collections::BTreeSet;

use common::call;
use iommu_pd::DeviceConfig;
use iommu_protocol::{DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};

const PAGE: u64 = 4096;
const BASE: u64 = 0x1000_0000;
const MAPPINGS: usize = 400;

static DEVICES: [DeviceConfig; 1] = [DeviceConfig {
    name: "dev",
    stream: 0x10,
    extra_streams: &[],
    owner: 0,
    iova_base: BASE,
    iova_size: 1 << 30,
    resume_allowed: true,
}];
fn map_req(iova: Option<u64>) -> Request {
    Request::Map { cap: Handle(0), device: DeviceId(0), offset: 0, len: PAGE, iova, rights: Rights::READ }
}

fn unmap_req(iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(0), iovas, count: 1 }
}

/// What the reference expects of `req` given the live IOVAs, applied to them: a MAP
/// with no IOVA goes just above the highest (the window is never full here), one at an
/// IOVA that is free is put there; an UNMAP of a live IOVA succeeds, of another is
/// `NotMapped`.
fn expect(live: &mut BTreeSet<u64>, req: &Request) -> Reply {
    match *req {
        Request::Map { iova: None, .. } => {
            let at = live.last().map_or(BASE, |top| top + PAGE);
            live.insert(at);
            Reply::ok(&[at])
        }
        Request::Map { iova: Some(at), .. } => {
            assert!(live.insert(at), "the test asks only for free IOVAs");
            Reply::ok(&[at])
        }
        Request::Unmap { iovas, .. } if live.remove(&iovas[0]) => Reply::ok(&[]),
        _ => Reply::Err(ErrorCode::NotMapped),
    }
}

#[test]
fn deep_trees_filled_and_emptied_through_calls_and_the_queue_keep_the_finger() {
    let mut s = common::drv_service(&DEVICES, MAPPINGS as u32, 1 << 16, MAPPINGS);
    let q = common::queue::region();
    let mut live = BTreeSet::new();
    let mut g = common::random::Rng(26);
    let mut r = || g.next();
    let (mut peak, mut queued, mut gaps) = (0, 0, 0);
    for step in 0..6_000 {
        // Waves: fill towards 380 mappings (mostly appends), then empty towards none.
        let filling = (step / 1_000) % 2 == 0;
        let roll = r() % 16;
        let mut reqs = Vec::new();
        let n = if roll < 3 { 1 + r() % 8 } else { 1 };
        for _ in 0..n {
            let pick = r() % 16;
            let req = if live.len() < 380 && pick < if filling { 12 } else { 5 } {
                // Mostly where the allocator puts it; sometimes into a gap below the highest.
                let gap = live.last().and_then(|&top| {
                    let at = BASE + (r() % ((top - BASE) / PAGE + 1)) * PAGE;
                    (!live.contains(&at)).then_some(at)
                });
                match gap.filter(|_| pick % 4 == 0) {
                    Some(at) => {
                        gaps += 1;
                        map_req(Some(at))
                    }
                    None => map_req(None),
                }
            } else {
                // Oldest first mostly; the highest; one in the middle; now and then one
                // not mapped (just above the highest).
                let at = match pick % 4 {
                    0 | 1 => live.first().copied(),
                    2 => live.last().copied(),
                    _ => live.iter().nth((r() as usize) % live.len().max(1)).copied(),
                };
                unmap_req(at.unwrap_or(BASE) + if pick == 15 { 1 << 29 } else { 0 })
            };
            reqs.push(req);
        }
        if roll < 3 {
            // One batch through the queue: answered as the same calls in the same order.
            let unmaps = common::queue::post_all(&q, &reqs);
            assert_eq!(s.serve_queue(0, &q), reqs.len(), "step {step}");
            let got: Vec<Reply> = common::queue::completions(&q, &unmaps).into_iter().map(|(_, r)| r).collect();
            let want: Vec<Reply> = reqs.iter().map(|req| expect(&mut live, req)).collect();
            assert_eq!(got, want, "step {step}: a queued batch");
            queued += reqs.len();
        } else {
            let want = expect(&mut live, &reqs[0]);
            assert_eq!(call(&mut s, 0, reqs[0]), want, "step {step}: {:?}", reqs[0]);
        }
        s.audit().unwrap_or_else(|e| panic!("step {step}: {e}"));
        peak = peak.max(live.len());
        if step % 1_000 == 999 {
            let mapped: BTreeSet<u64> = s.hw().reachable(0).keys().copied().collect();
            assert_eq!(mapped, live, "step {step}: the IOMMU translates what is live");
        }
    }
    // Deep enough for three levels (more than 16 leaves of at most 16), with both kinds
    // of MAP and the queue's batches among the steps.
    assert!(peak > 300 && queued > 1_000 && gaps > 100, "peak {peak}, queued {queued}, gaps {gaps}");
}
