//! A free mapping slot is room in the index: MAP asks only for a free slot
//! (`Service::room_in`), because the index's pools are sized for the slot count
//! (`index::leaves_for`, `inners_for`, which `Service::new` asks of the storage), so that
//! while any slot is free every device's tree can take one more key, whatever shape the
//! trees have. Here every slot is taken through MAP calls, by four devices sharing the
//! pools, in the shape that takes the most leaves for its keys: three trees of one key
//! (a leaf each) and one filled by the allocator's appends, whose splits leave every
//! leaf but the rightmost half full, two inner levels deep; then mappings taken out across the trees (leaves
//! merged and shared) and the slots filled again at those IOVAs, below each tree's
//! greatest key (the general insertion, splitting leaves in the middle). Each MAP is
//! answered its IOVA until the last slot, then refused (the client's quota, which is
//! every slot: `Service::new` allows no more); the audit, which asks that every tree
//! can take an insertion while a slot is free, holds after each.

mod common;

use common::{map_page as map, unmap_page as unmap, ModelHw, PAGE};
use iommu_pd::Service;
use iommu_protocol::{ErrorCode, Reply};

/// Slots: an odd count, so that no pool's size is a round multiple of a node's keys.
const SLOTS: usize = 701;
const DEVICES: usize = 4;
/// Where each device's window starts (`common::pools_shared`).
const WINDOW: u64 = common::IOVA_BASE;

#[test]
fn every_slot_is_room_in_the_index_in_the_shape_that_takes_the_most_nodes() {
    let mut s = Service::new(
        ModelHw::default(),
        common::pools_shared(SLOTS, DEVICES, 1 << 30),
        common::sized_storage(1, SLOTS, DEVICES, 1),
    )
    .unwrap();
    // Where each device's next append goes.
    let mut next = [WINDOW; DEVICES];
    // First fill, by the allocator: the other devices one mapping each (a leaf each for a
    // key), then device 0 every slot left, its leaves split 8 and 9 as it grows, so that
    // every leaf but its rightmost holds 8 keys: as many leaves as its keys can take (87,
    // under two inner levels; 90 with the others' 3, of the 92 `leaves_for` gives: with
    // pools of 88, tried, the audit finds no room for a key while slots are free).
    for k in 0..SLOTS {
        let d = if k < DEVICES - 1 { 1 + k } else { 0 };
        assert_eq!(map(&mut s, d, None), Reply::ok(&[next[d]]), "MAP {k}, device {d}");
        next[d] += PAGE;
        s.audit().unwrap_or_else(|e| panic!("after MAP {k}: {e}"));
    }
    for d in 0..DEVICES {
        assert_eq!(map(&mut s, d, None), Reply::Err(ErrorCode::QuotaMappings), "device {d}, every slot taken");
    }
    // Out: every third mapping of each device below its greatest (merges and shares in
    // device 0's deep tree and the others' one-level ones).
    let mut taken = Vec::new();
    for (d, &end) in next.iter().enumerate() {
        for iova in (WINDOW..end - PAGE).step_by(3 * PAGE as usize) {
            assert_eq!(unmap(&mut s, d, iova), Reply::ok(&[]), "UNMAP {iova:#x} of device {d}");
            s.audit().unwrap_or_else(|e| panic!("after UNMAP {iova:#x} of device {d}: {e}"));
            taken.push((d, iova));
        }
    }
    // Back in, below each tree's greatest key, the devices in turn: every slot again.
    taken.sort_by_key(|&(d, iova)| (iova, d));
    for &(d, iova) in &taken {
        assert_eq!(map(&mut s, d, Some(iova)), Reply::ok(&[iova]), "MAP at {iova:#x} for device {d}");
        s.audit().unwrap_or_else(|e| panic!("after MAP at {iova:#x} for device {d}: {e}"));
    }
    assert_eq!(map(&mut s, 0, None), Reply::Err(ErrorCode::QuotaMappings), "every slot taken again");
    let mut mapped = 0;
    s.for_each_mapped_page(|_, _, _, _| mapped += 1);
    assert_eq!(mapped, SLOTS, "every slot's page in the IOMMU's books");
}
