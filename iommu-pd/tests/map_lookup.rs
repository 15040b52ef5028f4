//! A client's last MAP lookup, kept across calls (`Service::map_call`): a MAP whose first
//! register names the same capability, rights and device as the client's last one takes
//! what that MAP's handle and device checks found. Capabilities and handles go only in
//! REVOKE, RELEASE and a granter's teardown (all through one function, which forgets every
//! client's lookup first); each test below has a client map through its lookup, takes
//! the capability away by one of them, and fails if the MAP after it is served from what
//! was remembered. Every check after the lookup is made on every call: STOP, quarantine
//! and the quotas need no forgetting, and the tests show that too. The audit (run after
//! every step of the model-based tests) compares each remembered lookup with the tables.

mod common;

use common::*;
use iommu_protocol::{ClientId, ErrorCode, Handle, Reply, Request, Rights};

const DISK: u32 = 1;
const NET_BUFFERS: u64 = 0x4000_0000;

fn ok_value(reply: Reply) -> u64 {
    match reply {
        Reply::Ok { values, .. } => values[0],
        Reply::Err(e) => panic!("refused: {e:?}"),
    }
}

fn handles(reply: Reply) -> (u32, u32) {
    match reply {
        Reply::Ok { values, .. } => (values[0] as u32, values[1] as u32),
        Reply::Err(e) => panic!("grant refused: {e:?}"),
    }
}

/// NET lends BLK's disk one page of its buffers at `offset`, read-only.
fn lend(s: &mut iommu_pd::Service<'static, ModelHw>, offset: u64) -> (u32, u32) {
    let req = Request::Grant {
        cap: Handle(0),
        to: ClientId(BLK as u32),
        offset,
        len: 0x1000,
        rights: Rights::READ,
        devices: 1 << DISK,
    };
    handles(call(s, NET, req))
}

/// BLK maps the page lent to it under `theirs`, twice (the second through its lookup),
/// and both reach `pa`; returns the IOVAs.
fn map_lent_twice(s: &mut iommu_pd::Service<'static, ModelHw>, theirs: u32, pa: u64) -> [u64; 2] {
    let iovas = [0, 1].map(|_| ok_value(map(s, BLK, theirs, DISK, 0, 0x1000, None, Rights::READ)));
    for iova in iovas {
        assert_eq!(s.hw().translations(DISK as usize).get(&iova), Some(&(pa, Rights::READ)));
    }
    s.audit().unwrap();
    iovas
}

#[test]
fn after_revoke_the_last_lookup_maps_nothing_and_a_new_grant_in_its_handle_maps_its_own_memory() {
    let mut s = service();
    let (ours, theirs) = lend(&mut s, 0);
    map_lent_twice(&mut s, theirs, NET_BUFFERS);
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(ours) }), Reply::ok(&[]));
    assert!(s.hw().translations(DISK as usize).is_empty());
    assert_eq!(map(&mut s, BLK, theirs, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert!(s.hw().translations(DISK as usize).is_empty(), "nothing of the revoked page mapped again");
    // Another page lent: BLK's first free handle is the one it had, now naming another
    // capability. The same first register maps that capability's memory.
    let (_, again) = lend(&mut s, 0x3000);
    assert_eq!(again, theirs, "the test's premise: the handle is reused");
    map_lent_twice(&mut s, theirs, NET_BUFFERS + 0x3000);
}

#[test]
fn after_release_the_last_lookup_maps_nothing() {
    let mut s = service();
    let (_, theirs) = lend(&mut s, 0);
    map_lent_twice(&mut s, theirs, NET_BUFFERS);
    assert_eq!(call(&mut s, BLK, Request::Release { cap: Handle(theirs) }), Reply::ok(&[]));
    assert_eq!(map(&mut s, BLK, theirs, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert!(s.hw().translations(DISK as usize).is_empty());
}

#[test]
fn after_the_granter_is_torn_down_the_borrowers_last_lookup_maps_nothing() {
    let mut s = service();
    let (_, theirs) = lend(&mut s, 0);
    map_lent_twice(&mut s, theirs, NET_BUFFERS);
    s.client_torn_down(NET).unwrap();
    assert_eq!(map(&mut s, BLK, theirs, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert!(s.hw().translations(DISK as usize).is_empty());
    s.audit().unwrap();
}

/// Each client's lookup is its own: the same first register from a client that does not
/// own the device is checked afresh.
#[test]
fn a_lookup_is_the_clients_own() {
    let mut s = service();
    ok_value(map(&mut s, BLK, 0, DISK, 0, 0x1000, None, Rights::READ_WRITE));
    assert_eq!(map(&mut s, EVIL, 0, DISK, 0, 0x1000, None, Rights::READ_WRITE), err(ErrorCode::BadDevice));
    assert_eq!(map(&mut s, NET, 0, DISK, 0, 0x1000, None, Rights::READ_WRITE), err(ErrorCode::BadDevice));
    assert_eq!(s.hw().translations(DISK as usize).len(), 1);
}

/// The lookup stands for the handle and device checks only: the device's state, the
/// range, the quotas and room are checked on every call, in the same order, with the
/// same errors.
#[test]
fn through_the_lookup_every_later_check_is_made() {
    let mut s = service();
    let blk_map = |s: &mut iommu_pd::Service<'static, ModelHw>, offset| {
        map(s, BLK, 0, DISK, offset, 0x1000, None, Rights::READ_WRITE)
    };
    ok_value(blk_map(&mut s, 0));
    // Stopped, then running again: no lookup to forget.
    assert_eq!(call(&mut s, BLK, Request::Stop { device: iommu_protocol::DeviceId(DISK) }), Reply::ok(&[0]));
    assert_eq!(blk_map(&mut s, 0), err(ErrorCode::Stopped));
    // The disk's description does not let it resume: its client's restart does.
    s.client_torn_down(BLK).unwrap();
    assert_eq!(blk_map(&mut s, 0), err(ErrorCode::Quarantined));
    s.client_ready(BLK).unwrap();
    ok_value(blk_map(&mut s, 0));
    // Outside the capability, then the quota of 16 mappings.
    assert_eq!(blk_map(&mut s, 0x1_0000), err(ErrorCode::OutOfRange));
    for _ in 1..16 {
        ok_value(blk_map(&mut s, 0));
    }
    assert_eq!(blk_map(&mut s, 0), err(ErrorCode::QuotaMappings));
    assert_eq!(s.hw().translations(DISK as usize).len(), 16);
    s.audit().unwrap();
}

/// MAP's message registers as they come, not through `Request::encode` (which only
/// writes valid rights).
fn map_raw(s: &mut iommu_pd::Service<'static, ModelHw>, client: usize, names: u64) -> Reply {
    s.handle(client, iommu_protocol::Op::Map as u64, &[names, 0, 0x1000, iommu_protocol::IOVA_ANY])
}

/// A first register with invalid rights is malformed whatever the client's last lookup
/// is, the "no lookup" one included (its key is such a register): it is never served as
/// a lookup of device 0 and of no capability, and it tells nothing of device 0, another
/// client's, when that is stopped.
#[test]
fn a_first_register_with_invalid_rights_is_malformed_whatever_was_remembered() {
    let mut s = service();
    for names in [u64::MAX, u64::MAX >> 32, 0xff << 24, 4 << 24] {
        assert_eq!(map_raw(&mut s, EVIL, names), err(ErrorCode::Malformed), "{names:#x}, no lookup yet");
    }
    assert_eq!(call(&mut s, NET, Request::Stop { device: iommu_protocol::DeviceId(0) }), Reply::ok(&[0]));
    assert_eq!(map_raw(&mut s, EVIL, u64::MAX), err(ErrorCode::Malformed), "device 0 stopped");
    // After a REVOKE, every client's lookup is forgotten: the same again, from a client
    // that had one and from one that had none.
    ok_value(map(&mut s, BLK, 0, DISK, 0, 0x1000, None, Rights::READ_WRITE));
    let (ours, _) = lend(&mut s, 0);
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(ours) }), Reply::ok(&[]));
    for client in [BLK, EVIL] {
        assert_eq!(map_raw(&mut s, client, u64::MAX), err(ErrorCode::Malformed), "after a REVOKE");
    }
    assert!(s.hw().translations(0).is_empty());
    assert_eq!(s.hw().translations(DISK as usize).len(), 1);
    s.audit().unwrap();
}

/// A grant of a grant: BLK narrows what NET lent it to a capability of its own and maps
/// through that one's lookup; NET's REVOKE of the first grant takes the second with it,
/// and BLK's lookup of it maps nothing.
#[test]
fn a_grant_of_a_grant_revoked_at_its_root_maps_nothing_through_the_lookup() {
    let mut s = service();
    let (ours, theirs) = lend(&mut s, 0);
    let narrowed = Request::Grant {
        cap: Handle(theirs),
        to: ClientId(BLK as u32),
        offset: 0,
        len: 0x1000,
        rights: Rights::READ,
        devices: 1 << DISK,
    };
    let (_, inner) = handles(call(&mut s, BLK, narrowed));
    map_lent_twice(&mut s, inner, NET_BUFFERS);
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(ours) }), Reply::ok(&[]));
    assert_eq!(map(&mut s, BLK, inner, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert_eq!(map(&mut s, BLK, theirs, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert!(s.hw().translations(DISK as usize).is_empty());
    s.audit().unwrap();
}

/// The lookup's holder restarted (torn down, ready): its handle table is what it was, so
/// the lookup still names its own capability and maps its own memory; meanwhile its
/// device is refused as a fresh lookup's would be.
#[test]
fn the_holders_restart_leaves_its_lookup_naming_its_own_memory() {
    let mut s = service();
    let (_, theirs) = lend(&mut s, 0);
    map_lent_twice(&mut s, theirs, NET_BUFFERS);
    s.client_torn_down(BLK).unwrap();
    assert!(s.hw().translations(DISK as usize).is_empty());
    assert_eq!(map(&mut s, BLK, theirs, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    s.audit().unwrap();
    s.client_ready(BLK).unwrap();
    map_lent_twice(&mut s, theirs, NET_BUFFERS);
}

/// A removal the IOMMU did not confirm blocks the device: MAP through the lookup is
/// refused `RemovalPending`, as a fresh lookup's is, until the retry is confirmed.
#[test]
fn a_pending_removal_refuses_a_map_through_the_lookup() {
    let mut s = service();
    let iova = ok_value(map(&mut s, BLK, 0, DISK, 0, 0x1000, None, Rights::READ_WRITE));
    ok_value(map(&mut s, BLK, 0, DISK, 0x1000, 0x1000, None, Rights::READ_WRITE));
    s.hw_mut().fail_next = Some("unmap");
    assert_eq!(unmap(&mut s, BLK, DISK, &[iova]), err(ErrorCode::Hardware));
    assert_eq!(map(&mut s, BLK, 0, DISK, 0x2000, 0x1000, None, Rights::READ_WRITE), err(ErrorCode::RemovalPending));
    assert_eq!(s.hw().translations(DISK as usize).len(), 2, "nothing mapped while the removal is pending");
    s.audit().unwrap();
}

/// The queue's lookup (a batch's) and the call's (kept across calls) side by side: a
/// grant used by both, revoked between two batches and two calls, maps nothing by either.
#[test]
fn the_queues_lookup_and_the_calls_both_forget_a_revoked_grant() {
    let mut s = service();
    let q = queue::region();
    let (ours, theirs) = lend(&mut s, 0);
    let map_req = Request::Map {
        cap: Handle(theirs),
        device: iommu_protocol::DeviceId(DISK),
        offset: 0,
        len: 0x1000,
        iova: None,
        rights: Rights::READ,
    };
    ok_value(call(&mut s, BLK, map_req));
    assert!(queue::post(&q, 1, map_req) && queue::post(&q, 2, map_req));
    assert_eq!(s.serve_queue(BLK, &q), 2);
    ok_value(call(&mut s, BLK, map_req));
    let done = queue::completions(&q, &[]);
    assert!(done.iter().all(|(_, r)| matches!(r, Reply::Ok { .. })), "{done:?}");
    assert_eq!(s.hw().translations(DISK as usize).len(), 4);

    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(ours) }), Reply::ok(&[]));
    assert!(queue::post(&q, 3, map_req));
    assert_eq!(s.serve_queue(BLK, &q), 1);
    assert_eq!(queue::completions(&q, &[]), vec![(3, err(ErrorCode::BadHandle))]);
    assert_eq!(call(&mut s, BLK, map_req), err(ErrorCode::BadHandle));
    assert!(s.hw().translations(DISK as usize).is_empty());
    s.audit().unwrap();
}
