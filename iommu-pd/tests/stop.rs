//! STOP: a client stops one of its devices (a VMM stopping the virtual machine the device
//! is passed through to). The device is blocked and reaches nothing, static mappings
//! included, once the IOMMU confirmed; RESUME brings back the static mappings and only
//! those; a failure to confirm leaves the device blocked until a retry is confirmed.

mod common;

use common::*;
use iommu_protocol::{DeviceId, ErrorCode, Reply, Request, Rights};

const NIC: u32 = 0;

fn with_static_maps() -> iommu_pd::Service<'static, ModelHw> {
    let cfg = iommu_pd::Config { static_maps: &STATIC_MAPS, ..config() };
    iommu_pd::Service::new(ModelHw::default(), cfg, storage()).unwrap()
}

fn stop(s: &mut iommu_pd::Service<'_, ModelHw>, client: usize, device: u32) -> Reply {
    call(s, client, Request::Stop { device: DeviceId(device) })
}

fn resume(s: &mut iommu_pd::Service<'_, ModelHw>, client: usize, device: u32) -> Reply {
    call(s, client, Request::Resume { device: DeviceId(device) })
}

/// The static pages of `STATIC_MAPS`, as the device reaches them.
fn static_pages() -> Vec<(u64, (u64, Rights))> {
    let m = &STATIC_MAPS[0];
    (0..m.len / PAGE).map(|p| (m.iova + p * PAGE, (REGIONS[0].pa + m.offset + p * PAGE, m.rights))).collect()
}

#[test]
fn a_stopped_device_reaches_nothing_until_resumed_with_its_static_maps_only() {
    let mut s = with_static_maps();
    assert_eq!(s.hw().reachable(0).into_iter().collect::<Vec<_>>(), static_pages());
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ_WRITE), Reply::ok(&[IOVA_BASE]));
    assert_eq!(s.hw().reachable(0).len(), 3);

    assert_eq!(stop(&mut s, NET, NIC), Reply::ok(&[0]));
    // Nothing reachable and nothing left in its tables, even if it were enabled.
    assert!(s.hw().reachable(0).is_empty());
    assert!(s.hw().translations(0).is_empty());
    assert_eq!(call(&mut s, NET, Request::QueryMapping { index: 0 }), err(ErrorCode::NotMapped));
    // Requests for it say why; its other device is untouched.
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, None, Rights::READ), err(ErrorCode::Stopped));
    assert_eq!(map(&mut s, NET, 0, 3, 0, 0x1000, None, Rights::READ), Reply::ok(&[IOVA_BASE]));
    // Stopping again is harmless.
    assert_eq!(stop(&mut s, NET, NIC), Reply::ok(&[0]));

    assert_eq!(resume(&mut s, NET, NIC), Reply::ok(&[]));
    // Back with the description's mappings, not the one the client had made.
    assert_eq!(s.hw().reachable(0).into_iter().collect::<Vec<_>>(), static_pages());
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    s.audit().unwrap();
}

#[test]
fn only_the_owner_stops_a_device() {
    let mut s = with_static_maps();
    assert_eq!(stop(&mut s, BLK, NIC), err(ErrorCode::BadDevice));
    assert_eq!(stop(&mut s, EVIL, 99), err(ErrorCode::BadDevice));
    assert_eq!(s.hw().reachable(0).into_iter().collect::<Vec<_>>(), static_pages());
}

#[test]
fn a_stop_the_iommu_did_not_confirm_leaves_the_device_blocked_until_a_retry_is() {
    let mut s = with_static_maps();
    map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ_WRITE);
    s.hw_mut().fail_next = Some("unmap");
    assert_eq!(stop(&mut s, NET, NIC), err(ErrorCode::Hardware));
    // Translations may still be cached, but the device is blocked.
    assert!(!s.hw().translations(0).is_empty());
    assert!(s.hw().reachable(0).is_empty());
    // Two mappings (three pages) in the books, both pending.
    assert_eq!(call(&mut s, NET, Request::Query), Reply::ok(&[2, 16, 3, 64, 0, 0, 2, 0, 4]));
    // RESUME retries first; while the retry fails, still blocked.
    s.hw_mut().fail_next = Some("retry_unmap");
    assert_eq!(resume(&mut s, NET, NIC), err(ErrorCode::Hardware));
    assert!(s.hw().reachable(0).is_empty());
    // A second STOP retries too, and confirms: nothing left anywhere.
    assert_eq!(stop(&mut s, NET, NIC), Reply::ok(&[0]));
    assert!(s.hw().translations(0).is_empty());
    assert_eq!(resume(&mut s, NET, NIC), Reply::ok(&[]));
    assert_eq!(s.hw().reachable(0).into_iter().collect::<Vec<_>>(), static_pages());
    s.audit().unwrap();
}

#[test]
fn a_failed_block_changes_nothing() {
    let mut s = with_static_maps();
    s.hw_mut().fail_next = Some("block");
    assert_eq!(stop(&mut s, NET, NIC), err(ErrorCode::Hardware));
    assert_eq!(s.hw().reachable(0).into_iter().collect::<Vec<_>>(), static_pages());
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
}

#[test]
fn a_restarted_client_finds_its_device_running() {
    let mut s = with_static_maps();
    assert_eq!(stop(&mut s, NET, NIC), Reply::ok(&[0]));
    s.client_torn_down(NET).unwrap();
    s.client_ready(NET).unwrap();
    assert_eq!(s.hw().reachable(0).into_iter().collect::<Vec<_>>(), static_pages());
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    s.audit().unwrap();
}

/// A grant across a STOP: what the grantee's stopped device loses is its own mapping of
/// the grant, nothing of the granter's; after RESUME it may map the grant again with the
/// grant's rights and no more; the granter's STOP of its own device leaves the grantee's
/// mapping alone; and REVOKE still reaches what the grantee mapped after the STOP.
#[test]
fn a_stop_takes_nothing_from_the_granter_and_widens_nothing_for_the_grantee() {
    use iommu_protocol::{ClientId, Handle};
    let mut s = service();
    let grant = Request::Grant {
        cap: Handle(0),
        to: ClientId(BLK as u32),
        offset: 0x2000,
        len: 0x2000,
        rights: Rights::READ,
        devices: 0b10,
    };
    let Reply::Ok { values, .. } = call(&mut s, NET, grant) else { panic!("grant refused") };
    let (grant, theirs) = (values[0] as u32, values[1] as u32);
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x4000, Some(IOVA_BASE), Rights::READ_WRITE), Reply::ok(&[IOVA_BASE]));
    let at = IOVA_BASE + 0x8000;
    assert_eq!(map(&mut s, BLK, theirs, 1, 0, 0x2000, Some(at), Rights::READ), Reply::ok(&[at]));
    let nic_before = s.hw().reachable(0);
    assert_eq!(nic_before.len(), 4);

    // The grantee stops its disk: the disk reaches nothing; the granter's NIC as before.
    assert_eq!(stop(&mut s, BLK, 1), Reply::ok(&[0]));
    assert!(s.hw().reachable(1).is_empty());
    assert_eq!(s.hw().reachable(0), nic_before);
    // Resumed: nothing but what the description maps (nothing here); the grant maps again
    // read-only, never writable.
    assert_eq!(resume(&mut s, BLK, 1), Reply::ok(&[]));
    assert!(s.hw().reachable(1).is_empty());
    assert_eq!(map(&mut s, BLK, theirs, 1, 0, 0x1000, Some(at), Rights::READ_WRITE), err(ErrorCode::NoRights));
    assert_eq!(map(&mut s, BLK, theirs, 1, 0, 0x2000, Some(at), Rights::READ), Reply::ok(&[at]));
    assert_eq!(s.hw().reachable(1).get(&at), Some(&(REGIONS[0].pa + 0x2000, Rights::READ)));

    // The granter stops its NIC: the grantee's disk keeps its mapping of the grant.
    assert_eq!(stop(&mut s, NET, NIC), Reply::ok(&[0]));
    assert!(s.hw().reachable(0).is_empty());
    assert_eq!(s.hw().reachable(1).len(), 2);
    // And the grant is still the granter's to revoke, which takes the grantee's mapping.
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(grant) }), Reply::ok(&[]));
    assert!(s.hw().reachable(1).is_empty());
}
