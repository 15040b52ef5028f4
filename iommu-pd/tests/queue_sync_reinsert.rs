//! A failed sync under a batch's removals with every mapping slot in use: the removals go
//! back into their indexes (`Service::serve_queue`'s confirm), which must always have room,
//! or the tables' books would lose a mapping the device may still reach through what the
//! IOMMU cached. The argument (queue.rs): the index's pools hold a key for every slot, and
//! a removal in flight holds a slot no key does. Here the slots are all used, over three
//! devices' trees sharing the pools, at IOVAs spread at random, and batches of 1 to 63
//! removals (with or without a MAP that has them confirmed first) fail their sync, round
//! after round: after each the audit finds every mapping indexed, slots and quota held,
//! each device with a removal pending blocked and reaching nothing; RESUME then confirms
//! the removals and the device runs again.

mod common;

use std::collections::BTreeSet;

use common::queue::{completions, post};
use common::random::Rng;
use common::{call, ModelHw, PAGE};
use iommu_pd::{Config, Service};
use iommu_protocol::queue::OwnedQueue;
use iommu_protocol::{query, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};

const SLOTS: usize = 256;
const DEVICES: usize = 3;
/// Where each device's window starts (`common::pools_shared`).
const WINDOW: u64 = common::IOVA_BASE;
/// Window pages the IOVAs are drawn from.
const SPREAD: u64 = 1 << 16;

fn config() -> Config<'static> {
    common::pools_shared(SLOTS, DEVICES, SPREAD * PAGE)
}

/// MAP one page for `d` at an IOVA not yet used on it, drawn at random.
fn map_somewhere(s: &mut Service<'_, ModelHw>, r: &mut Rng, live: &mut BTreeSet<(u32, u64)>, d: u32) {
    loop {
        let iova = WINDOW + r.below(SPREAD) * PAGE;
        if live.contains(&(d, iova)) {
            continue;
        }
        let req = Request::Map {
            cap: Handle(0),
            device: DeviceId(d),
            offset: r.below(SLOTS as u64) * PAGE,
            len: PAGE,
            iova: Some(iova),
            rights: Rights::READ_WRITE,
        };
        assert!(matches!(call(s, 0, req), Reply::Ok { .. }), "MAP at {iova:#x} for {d}");
        live.insert((d, iova));
        return;
    }
}

#[test]
fn a_failed_syncs_removals_always_go_back_into_full_indexes() {
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(1, DEVICES, 4, SLOTS)>::default())).storage();
    let mut s = Service::new(ModelHw::default(), config(), storage).unwrap();
    let q = Box::leak(Box::<OwnedQueue<256>>::default()).queue().unwrap();
    let mut r = Rng(0x5eed_f00d);
    let mut live = BTreeSet::new();
    for round in 0..120 {
        while live.len() < SLOTS {
            let d = r.below(DEVICES as u64) as u32;
            map_somewhere(&mut s, &mut r, &mut live, d);
        }
        // 1 to 63 removals, of mappings picked at random across the devices.
        let k = 1 + r.below(63) as usize;
        let all: Vec<_> = live.iter().copied().collect();
        let mut picked = BTreeSet::new();
        while picked.len() < k {
            picked.insert(r.pick(&all));
        }
        let unmap_tags: Vec<u64> = (0..k as u64).collect();
        for (tag, &(d, iova)) in unmap_tags.iter().zip(&picked) {
            let mut iovas = [0; MAX_UNMAP_RANGES];
            iovas[0] = iova;
            assert!(post(&q, *tag, Request::Unmap { device: DeviceId(d), iovas, count: 1 }));
        }
        // Every other round a MAP after them, refused for a slot they hold: they are
        // confirmed inside the batch (and that sync fails); otherwise at its end.
        let with_map = round % 2 == 0;
        if with_map {
            let device = DeviceId(r.below(DEVICES as u64) as u32);
            let req =
                Request::Map { cap: Handle(0), device, offset: 0, len: PAGE, iova: None, rights: Rights::READ_WRITE };
            assert!(post(&q, 1000, req));
        }
        s.hw_mut().fail_next = Some("sync");
        s.serve_queue(0, &q);
        assert_eq!(s.hw().fail_next, None, "round {round}: the batch's sync was asked for");

        let done = completions(&q, &unmap_tags);
        assert_eq!(done.len(), k + with_map as usize, "round {round}");
        for (tag, reply) in &done {
            if *tag == 1000 {
                assert!(matches!(reply, Reply::Err(_)), "round {round}: the MAP had no slot: {reply:?}");
            } else {
                assert_eq!(*reply, Reply::Err(ErrorCode::Hardware), "round {round}: UNMAP {tag}");
            }
        }
        s.audit().unwrap_or_else(|e| panic!("round {round}, {k} removals: {e}"));
        let Reply::Ok { values, .. } = call(&mut s, 0, Request::Query) else { panic!("QUERY") };
        assert_eq!(values[query::MAPPINGS], SLOTS as u64, "round {round}: the slots and quota are still held");
        assert_eq!(s.pending_removals(0), k, "round {round}");
        let pending: BTreeSet<u32> = picked.iter().map(|&(d, _)| d).collect();
        for &d in &pending {
            assert!(s.hw().reachable(d as usize).is_empty(), "round {round}: device {d} not blocked");
        }

        // RESUME retries the removals, confirmed now: they are gone, and the device runs.
        for &d in &pending {
            assert!(matches!(call(&mut s, 0, Request::Resume { device: DeviceId(d) }), Reply::Ok { .. }));
            for &(pd, iova) in picked.iter().filter(|(pd, _)| *pd == d) {
                assert!(!s.hw().reachable(pd as usize).contains_key(&iova), "round {round}: {iova:#x} still reached");
            }
        }
        assert_eq!(s.pending_removals(0), 0);
        s.audit().unwrap_or_else(|e| panic!("round {round}, after RESUME: {e}"));
        for p in &picked {
            live.remove(p);
        }
    }
}
