//! Delegation: which devices a granted capability may be mapped for (the rule in
//! `iommu_pd::reach`, which `iommu-sdf report` prints), and what one client can consume of
//! the tables every client shares.

mod common;

use common::*;
use iommu_pd::{ClientConfig, ConfigError, Service};
use iommu_protocol::{ErrorCode, Handle, Reply, Request, Rights};

/// The test description's devices as GRANT's device masks.
const NIC: u64 = 1 << 0;
const DISK: u64 = 1 << 1;
const EVIL_DEV: u64 = 1 << 2;
const NIC2: u64 = 1 << 3;

fn handles(reply: Reply) -> (u32, u32) {
    match reply {
        Reply::Ok { values, .. } => (values[0] as u32, values[1] as u32),
        Reply::Err(e) => panic!("grant refused: {e:?}"),
    }
}

/// NET's read-only share (handle 1) is for its `nic` alone, and lendable to everyone,
/// NET included. Neither a grant to itself nor a round trip through BLK gives NET's other
/// device, `nic2`, any of it: the holder keeps to the devices the description named.
#[test]
fn a_holder_cannot_widen_its_capability_to_its_other_devices() {
    let mut s = service();
    assert_eq!(grant(&mut s, NET, 1, NET, NIC2), err(ErrorCode::Denied));
    // To itself for the device it already has: allowed (it only narrows).
    handles(grant(&mut s, NET, 1, NET, NIC));
    // Round trip: to BLK, and BLK back to NET.
    let (_, at_blk) = handles(grant(&mut s, NET, 1, BLK, DISK));
    assert_eq!(grant(&mut s, BLK, at_blk, NET, NIC2), err(ErrorCode::Denied));
    let (_, back) = handles(grant(&mut s, BLK, at_blk, NET, NIC));
    assert_eq!(map(&mut s, NET, back, 3, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadDevice));
    assert!(matches!(map(&mut s, NET, back, 0, 0, 0x1000, None, Rights::READ), Reply::Ok { .. }));
    assert!(s.hw().reachable(3).is_empty(), "nic2 reaches nothing of the share");
}

/// Each client may have made `max_grants` grants at once; what one client does cannot
/// use up the slots another needs, and a receiver can give a capability back.
#[test]
fn grants_are_bounded_per_client_and_receivers_can_release() {
    let mut s = service();
    let quota = CLIENTS[NET].max_grants as usize;
    let mut made = Vec::new();
    for _ in 0..quota {
        made.push(handles(grant(&mut s, NET, 0, BLK, 1 << 1)));
    }
    assert_eq!(grant(&mut s, NET, 0, BLK, 1 << 1), err(ErrorCode::QuotaGrants));
    // Others still can, to the same receiver.
    handles(grant(&mut s, EVIL, 0, BLK, 1 << 1));
    assert_eq!(call(&mut s, NET, Request::Query), Reply::ok(&[0, 16, 0, 64, 0, 0, 0, quota as u64, 4]));
    // BLK maps one of them, then gives it back: the mapping goes, confirmed, and NET
    // may grant again; NET's grant handle for it is gone.
    let (ours, theirs) = made[0];
    assert!(matches!(map(&mut s, BLK, theirs, 1, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::Ok { .. }));
    assert_eq!(call(&mut s, BLK, Request::Release { cap: Handle(theirs) }), Reply::ok(&[]));
    assert!(s.hw().translations(1).is_empty());
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(ours) }), err(ErrorCode::BadHandle));
    handles(grant(&mut s, NET, 0, BLK, 1 << 1));
    // A capability from the description cannot be released; a grant record is not a
    // capability.
    assert_eq!(call(&mut s, BLK, Request::Release { cap: Handle(0) }), err(ErrorCode::Denied));
    assert_eq!(call(&mut s, NET, Request::Release { cap: Handle(made[1].0) }), err(ErrorCode::BadHandle));
}

/// The tables are sized for every client's quota at once, or the service does not start.
#[test]
fn tables_too_small_for_the_quotas_are_refused_at_start() {
    // Too few client slots for the description.
    let mut small = <iommu_pd::owned_storage!(2, 4, 64, 64)>::default();
    assert_eq!(
        Service::new(ModelHw::default(), config(), small.storage()).err(),
        Some(ConfigError::TooMany("clients"))
    );
    // Room for the boot capabilities only, not for the grants the quotas allow.
    let mut tight = <iommu_pd::owned_storage!(3, 4, 4, 1)>::default();
    assert_eq!(
        Service::new(ModelHw::default(), config(), tight.storage()).err(),
        Some(ConfigError::TooMany("capabilities"))
    );
    // Quotas whose grants could fill a receiver's handle table.
    // (Each may make 50 grants and receive the others': over 128 handles; the capability
    // table has room for all of them.)
    let greedy = [
        ClientConfig { max_grants: 50, ..CLIENTS[0] },
        ClientConfig { max_grants: 50, ..CLIENTS[1] },
        ClientConfig { max_grants: 50, ..CLIENTS[2] },
    ];
    let cfg = iommu_pd::Config { clients: &greedy, ..config() };
    let mut roomy = <iommu_pd::owned_storage!(3, 4, 512, 64)>::default();
    assert_eq!(Service::new(ModelHw::default(), cfg, roomy.storage()).err(), Some(ConfigError::TooMany("handles")));
    let modest = [ClientConfig { max_grants: 12, ..CLIENTS[0] }, CLIENTS[1], CLIENTS[2]];
    let cfg = iommu_pd::Config { clients: &modest, ..config() };
    assert!(Service::new(ModelHw::default(), cfg, roomy.storage()).is_ok(), "12 grants fit now");
    // Exactly enough capability slots, and fewer mapping slots than the quotas (16 each):
    // one client's mappings could take those another's MAP needs. Refused; exactly the
    // quotas start.
    let mut short = <iommu_pd::owned_storage!(3, 4, 16, 47)>::default();
    assert_eq!(
        Service::new(ModelHw::default(), config(), short.storage()).err(),
        Some(ConfigError::TooMany("mappings"))
    );
    let mut exact = <iommu_pd::owned_storage!(3, 4, 16, 48)>::default();
    assert!(Service::new(ModelHw::default(), config(), exact.storage()).is_ok());
}

/// What a granter narrowed stays narrow: the receiver may not grant the capability to
/// itself for its other devices. (A review found BLK's grant for NET's `nic` re-granted by
/// NET to itself for `nic2`.)
#[test]
fn a_receiver_cannot_widen_what_it_was_lent_by_granting_to_itself() {
    let mut s = service();
    let (_, theirs) = handles(grant(&mut s, BLK, 0, NET, 1 << 0));
    assert_eq!(grant(&mut s, NET, theirs, NET, 1 << 3), err(ErrorCode::Denied));
    handles(grant(&mut s, NET, theirs, NET, 1 << 0));
}

/// What a granter narrowed stays narrow through a round trip too: BLK lends NET a page
/// for `nic` alone; NET passes it to EVIL, and EVIL back to NET for `nic2`. Before, only a
/// grant straight to itself was held to the devices its capability names, so the round
/// trip (two colluding clients) gave `nic2` the page BLK lent for `nic`.
#[test]
fn a_receiver_cannot_widen_what_it_was_lent_by_a_round_trip() {
    let mut s = service();
    let (_, at_net) = handles(grant(&mut s, BLK, 0, NET, NIC));
    let (_, at_evil) = handles(grant(&mut s, NET, at_net, EVIL, EVIL_DEV));
    assert_eq!(grant(&mut s, EVIL, at_evil, NET, NIC2), err(ErrorCode::Denied));
    assert_eq!(grant(&mut s, EVIL, at_evil, NET, NIC | NIC2), err(ErrorCode::Denied));
    // Back for the device BLK named: allowed, and it maps only for that device.
    let (_, back) = handles(grant(&mut s, EVIL, at_evil, NET, NIC));
    assert_eq!(map(&mut s, NET, back, 3, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadDevice));
    assert!(matches!(map(&mut s, NET, back, 0, 0, 0x1000, None, Rights::READ), Reply::Ok { .. }));
    assert!(s.hw().reachable(3).is_empty(), "nic2 reaches the page BLK lent for nic");
}

/// A lender that faults (or is restarted) takes back what it lent: its restarted program
/// knows nothing of the grant and may put other data in those pages. The borrower's device
/// loses the lent page, the borrower's handle and what it re-granted go, and the lender's
/// grant count is 0 again; what the lender itself received stays with it.
#[test]
fn a_lenders_teardown_revokes_what_it_lent() {
    let mut s = service();
    let (_, at_blk) = handles(grant(&mut s, NET, 0, BLK, DISK));
    assert!(matches!(map(&mut s, BLK, at_blk, 1, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::Ok { .. }));
    let (_, at_evil) = handles(grant(&mut s, BLK, at_blk, EVIL, 1 << 2));
    assert!(matches!(map(&mut s, EVIL, at_evil, 2, 0, 0x1000, None, Rights::READ), Reply::Ok { .. }));
    // And NET holds something BLK lent it.
    let (_, at_net) = handles(grant(&mut s, BLK, 0, NET, 1 << 0));
    assert!(!s.hw().reachable(1).is_empty() && !s.hw().reachable(2).is_empty());

    s.client_torn_down(NET).unwrap();
    assert!(s.hw().reachable(1).is_empty(), "the disk still reaches the page NET lent");
    assert!(s.hw().reachable(2).is_empty(), "what BLK re-granted of it still reaches");
    assert!(s.hw().translations(1).is_empty() && s.hw().translations(2).is_empty());
    assert_eq!(map(&mut s, BLK, at_blk, 1, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert_eq!(map(&mut s, EVIL, at_evil, 2, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    s.client_ready(NET).unwrap();
    let Reply::Ok { values, .. } = call(&mut s, NET, Request::Query) else { panic!("QUERY refused") };
    assert_eq!(values[7], 0, "NET's grants were not given back: {values:?}");
    // BLK's grant to NET is NET's still: the restarted NET may map it.
    assert!(matches!(map(&mut s, NET, at_net, 0, 0, 0x1000, None, Rights::READ), Reply::Ok { .. }));
}
