//! The argument MAP's room check rests on (`Service::room_in` asks only for a free slot:
//! the index's pools, `index::leaves_for` and `inners_for`, are sized so that while a
//! slot is free every device's tree can take one more key), attacked with more trees and
//! a deeper one than `tests/index_room.rs`: eight devices sharing the pools, seven of
//! them holding one key each (a root leaf for one key: the per-tree term of
//! `leaves_for`) while device 0 fills every other slot by appends, every leaf but its
//! rightmost at 8 keys and its inner nodes at 8 children (three inner levels); then half
//! of device 0's keys out below its greatest (leaves merged and shared, inner nodes
//! rebalanced, its height down) and the freed slots filled by the seven others, each
//! growing from its one key into a tree of half-full leaves; then keys moved between
//! the trees one at a time with every slot taken. Every MAP up to the last slot is
//! answered its IOVA, in a release build too (where `room_in`'s debug assertion is gone
//! and an insertion into a full pool would take the NIL node); after it, a reply
//! (`QuotaMappings`: `Service::new` takes no quotas above the slots). The audit (every
//! tree can take a key while a slot is free) holds after every step.

mod common;

use common::{map_page as map, unmap_page as unmap, ModelHw, PAGE};
use iommu_pd::Service;
use iommu_protocol::{ErrorCode, Reply};

/// Slots: odd, and enough for three inner levels in a tree filled by appends (a level-2
/// node over 8 level-1 nodes over 8 leaves of 8 keys holds 512).
const SLOTS: usize = 1201;
const DEVICES: usize = 8;
const WINDOW: u64 = common::IOVA_BASE;

fn audited(s: &Service<'_, ModelHw>, what: &str) {
    s.audit().unwrap_or_else(|e| panic!("after {what}: {e}"));
}

/// Every device refused a MAP with every slot taken, and nothing changed by it.
fn every_device_refused(s: &mut Service<'_, ModelHw>, what: &str) {
    for d in 0..DEVICES {
        assert_eq!(map(s, d, None), Reply::Err(ErrorCode::QuotaMappings), "{what}: device {d}");
        audited(s, what);
    }
    let mut mapped = 0;
    s.for_each_mapped_page(|_, _, _, _| mapped += 1);
    assert_eq!(mapped, SLOTS, "{what}: every slot's page, and no other, in the IOMMU's books");
}

#[test]
fn many_trees_and_a_deep_one_never_outgrow_the_pools_while_a_slot_is_free() {
    let cfg = common::pools_shared(SLOTS, DEVICES, 1 << 30);
    let mut s = Service::new(ModelHw::default(), cfg, common::sized_storage(1, SLOTS, DEVICES, 1)).unwrap();
    let mut next = [WINDOW; DEVICES];
    // One key for each of the seven, then every slot left to device 0 by appends.
    for k in 0..SLOTS {
        let d = if k < DEVICES - 1 { 1 + k } else { 0 };
        assert_eq!(map(&mut s, d, None), Reply::ok(&[next[d]]), "MAP {k}, device {d}");
        next[d] += PAGE;
        audited(&s, &format!("MAP {k}"));
    }
    every_device_refused(&mut s, "first fill");
    // Half of device 0's keys out, below its greatest.
    let mut freed = 0;
    for iova in (WINDOW..next[0] - PAGE).step_by(2 * PAGE as usize) {
        assert_eq!(unmap(&mut s, 0, iova), Reply::ok(&[]), "UNMAP {iova:#x} of device 0");
        audited(&s, &format!("UNMAP {iova:#x}"));
        freed += 1;
    }
    // The freed slots to the seven, in turn, by appends: each grows a tree of its own.
    for k in 0..freed {
        let d = 1 + k % (DEVICES - 1);
        assert_eq!(map(&mut s, d, None), Reply::ok(&[next[d]]), "refill {k}, device {d}");
        next[d] += PAGE;
        audited(&s, &format!("refill {k}"));
    }
    every_device_refused(&mut s, "second fill");
    // Keys moved one at a time with every slot taken: a key of device d out (its lowest,
    // then the next), the freed slot into device 0's holes below its greatest.
    let mut hole = WINDOW;
    for k in 0..3 * (DEVICES - 1) * 8 {
        let d = 1 + k % (DEVICES - 1);
        let iova = WINDOW + (k / (DEVICES - 1)) as u64 * PAGE;
        assert_eq!(unmap(&mut s, d, iova), Reply::ok(&[]), "move {k}: UNMAP {iova:#x} of device {d}");
        audited(&s, &format!("move {k}: UNMAP"));
        assert_eq!(map(&mut s, 0, Some(hole)), Reply::ok(&[hole]), "move {k}: MAP at {hole:#x}");
        audited(&s, &format!("move {k}: MAP"));
        hole += 2 * PAGE;
    }
    every_device_refused(&mut s, "after the moves");
}
