//! The service over an IOMMU that fails. The model IOMMU fails as badly as the `IommuHw`
//! contract allows: a failed unmap leaves the pages' translations cached, and they
//! translate again whenever the device is enabled, until a retry is confirmed. Each test
//! follows one way a failure used to be forgotten, and checks what the device can reach
//! after every step.

mod common;

use common::*;
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Reply, Request, Rights};

const NIC: u32 = 0;
const DISK: u32 = 1;

fn resume(s: &mut iommu_pd::Service<'_, ModelHw>, client: usize, device: u32) -> Reply {
    call(s, client, Request::Resume { device: DeviceId(device) })
}

/// NET lends the first page of its handle 0 to BLK, for the disk, with `rights`: the
/// grant's handle (NET's, for REVOKE) and BLK's handle to it.
fn lend(s: &mut iommu_pd::Service<'_, ModelHw>, rights: Rights) -> (u32, u32) {
    let grant = Request::Grant {
        cap: iommu_protocol::Handle(0),
        to: ClientId(BLK as u32),
        offset: 0,
        len: 0x1000,
        rights,
        devices: 1 << DISK,
    };
    let Reply::Ok { values, .. } = call(s, NET, grant) else { panic!("grant refused") };
    (values[0] as u32, values[1] as u32)
}

/// A failed UNMAP: the mapping stays in the books, pending, the device is blocked for a
/// reason of its own, and nothing lets it translate until a retry is confirmed.
#[test]
fn an_unmap_the_iommu_did_not_confirm_stays_pending() {
    let mut s = service();
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ_WRITE), Reply::ok(&[IOVA_BASE]));
    s.hw_mut().fail_next = Some("unmap");
    assert_eq!(unmap(&mut s, NET, NIC, &[IOVA_BASE]), err(ErrorCode::Hardware));
    // The translation is still cached, but the device is blocked, so it reaches nothing.
    assert!(s.hw().translations(0).contains_key(&IOVA_BASE));
    assert!(s.hw().reachable(0).is_empty());
    // QUERY counts it, and says it is pending; so does QUERY_MAPPING.
    assert_eq!(call(&mut s, NET, Request::Query), Reply::ok(&[1, 16, 1, 64, 0, 0, 1, 0, 4]));
    assert_eq!(call(&mut s, NET, Request::QueryMapping { index: 0 }), Reply::ok(&[0, IOVA_BASE, 0x1000, 3, 0, 0, 1]));
    // The device may not map meanwhile; not a storm quarantine, a state of its own.
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, None, Rights::READ), err(ErrorCode::RemovalPending));
    // RESUME retries first: while the retry fails, the device stays blocked.
    s.hw_mut().fail_next = Some("retry_unmap");
    assert_eq!(resume(&mut s, NET, NIC), err(ErrorCode::Hardware));
    assert!(s.hw().reachable(0).is_empty());
    assert!(s.hw().translations(0).contains_key(&IOVA_BASE));
    // A second UNMAP of the same IOVA retries it (it is not "NotMapped": it never left).
    assert_eq!(unmap(&mut s, NET, NIC, &[IOVA_BASE]), Reply::ok(&[]));
    assert!(s.hw().translations(0).is_empty());
    assert_eq!(call(&mut s, NET, Request::Query), Reply::ok(&[0, 16, 0, 64, 0, 0, 0, 0, 4]));
    // Confirmed: the device runs again, through an empty address space, and the IOVA
    // can be mapped afresh (the model would panic at a map over a live entry).
    assert_eq!(map(&mut s, NET, 0, NIC, 0x1000, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    assert_eq!(s.hw().reachable(0).get(&IOVA_BASE), Some(&(0x4000_1000, Rights::READ)));
}

/// The reported attack: a failed unmap, then RESUME. RESUME must not bring the cached
/// translation back; it retries the removal and enables only once it is confirmed.
#[test]
fn resume_after_a_failed_unmap_does_not_bring_the_page_back() {
    let mut s = service();
    map(&mut s, NET, 0, NIC, 0, 0x2000, Some(IOVA_BASE), Rights::READ_WRITE);
    s.hw_mut().fail_next = Some("unmap");
    assert_eq!(unmap(&mut s, NET, NIC, &[IOVA_BASE]), err(ErrorCode::Hardware));
    assert_eq!(resume(&mut s, NET, NIC), Reply::ok(&[]));
    // Enabled again, and nothing of the old mapping is reachable.
    assert!(s.hw().translations(0).is_empty());
    assert_eq!(s.hw().enabled.get(&0), Some(&true));
    assert_eq!(unmap(&mut s, NET, NIC, &[IOVA_BASE]), err(ErrorCode::NotMapped));
}

/// REVOKE over a failed unmap: the capability goes (the granter gets its memory back, the
/// receiver's handle is dead), the reply says the IOMMU did not confirm, and the
/// receiver's device stays blocked until the removal is confirmed.
#[test]
fn revoke_over_a_failed_unmap_answers_hardware_and_blocks_the_receiver() {
    let mut s = service();
    let (grant, theirs) = lend(&mut s, Rights::READ_WRITE);
    assert_eq!(map(&mut s, BLK, theirs, DISK, 0, 0x1000, Some(IOVA_BASE), Rights::WRITE), Reply::ok(&[IOVA_BASE]));
    s.hw_mut().fail_next = Some("unmap");
    let revoke = Request::Revoke { grant: iommu_protocol::Handle(grant) };
    assert_eq!(call(&mut s, NET, revoke), err(ErrorCode::Hardware));
    assert!(s.hw().reachable(1).is_empty(), "the disk is blocked");
    assert!(s.hw().translations(1).contains_key(&IOVA_BASE), "and the page still cached");
    assert_eq!(map(&mut s, BLK, theirs, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert_eq!(call(&mut s, NET, revoke), err(ErrorCode::BadHandle));
    // The disk's description forbids resuming after a storm; this is no storm, and the
    // owner's RESUME retries the removal and, confirmed, lets it run.
    assert_eq!(resume(&mut s, BLK, DISK), Reply::ok(&[]));
    assert!(s.hw().translations(1).is_empty());
    assert_eq!(s.hw().enabled.get(&1), Some(&true));
}

/// Teardown over a failed unmap, then `client_ready`: the retry comes first, and while
/// it fails the device stays blocked.
#[test]
fn client_ready_retries_removals_that_teardown_could_not_confirm() {
    let mut s = service();
    map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ);
    s.hw_mut().fail_next = Some("unmap");
    s.client_torn_down(NET).unwrap();
    assert!(s.hw().reachable(0).is_empty());
    assert_eq!(s.pending_removals(NET), 1);
    s.hw_mut().fail_next = Some("retry_unmap");
    assert_eq!(s.client_ready(NET), Err(ErrorCode::Hardware));
    assert!(s.hw().reachable(0).is_empty(), "still blocked");
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    s.client_ready(NET).unwrap();
    assert!(s.hw().translations(0).is_empty());
    assert_eq!(s.pending_removals(NET), 0);
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
}

/// A storm quarantine and an unconfirmed removal on one device: RESUME needs both the
/// description's leave and the confirmed retry.
#[test]
fn a_quarantined_device_with_a_pending_removal_resumes_only_when_both_allow() {
    let mut s = service();
    map(&mut s, BLK, 0, DISK, 0, 0x1000, Some(IOVA_BASE), Rights::READ);
    s.hw_mut().fail_next = Some("unmap");
    assert_eq!(unmap(&mut s, BLK, DISK, &[IOVA_BASE]), err(ErrorCode::Hardware));
    for now in 0..11 {
        s.record_fault(iommu_pd::FaultInput { stream: 0x18, iova: 0xdead_0000, write: true, kind: 0x10, now });
    }
    assert_eq!(s.stats().quarantines, 1);
    // The disk may not be resumed after a storm: Denied, and the removal stays pending.
    assert_eq!(resume(&mut s, BLK, DISK), err(ErrorCode::Denied));
    assert_eq!(s.pending_removals(BLK), 1);
    assert!(s.hw().reachable(1).is_empty());
}

/// A failed map changes nothing.
#[test]
fn a_failed_map_changes_nothing() {
    let mut s = service();
    s.hw_mut().fail_next = Some("map");
    assert_eq!(map(&mut s, BLK, 0, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::Hardware));
    assert!(s.hw().translations(1).is_empty());
    assert_eq!(call(&mut s, BLK, Request::Query), Reply::ok(&[0, 16, 0, 64, 0, 0, 0, 0, 4]));
}

/// A MAP call books its mapping (slot, record, usage)
/// before the IOMMU maps it, and undoes the booking if the IOMMU refuses. Both refusals:
/// the IOMMU failing (the model, at the allocator's IOVA) and a range it finds in use
/// (checked as the SMMUv3 backend checks it, at a given IOVA), each with the
/// capability already holding a mapping. The books after are the books before
/// (the audit: indexes, free list, each mapping's capability, next IOVA, usage; the pages mapped;
/// what QUERY answers), and the next MAP gets the IOVA the refused one would have.
#[test]
fn a_map_the_iommu_refuses_is_unbooked() {
    fn books<H: iommu_pd::IommuHw>(s: &mut iommu_pd::Service<'_, H>) -> (Vec<(usize, u64, u64, Rights)>, Reply) {
        let mut pages = Vec::new();
        s.for_each_mapped_page(|d, iova, pa, r| pages.push((d, iova, pa, r)));
        (pages, call(s, BLK, Request::Query))
    }
    fn refused<H: iommu_pd::IommuHw>(
        mut s: iommu_pd::Service<'_, H>,
        fail: impl FnOnce(&mut H),
        iova: Option<u64>,
        answer: ErrorCode,
    ) {
        let map = |offset, iova| Request::Map {
            cap: iommu_protocol::Handle(0),
            device: DeviceId(DISK),
            offset,
            len: 0x1000,
            iova,
            rights: Rights::READ,
        };
        // The capability has a mapping at the window's base.
        assert_eq!(call(&mut s, BLK, map(0, None)), Reply::ok(&[IOVA_BASE]));
        let before = books(&mut s);
        fail(s.hw_mut());
        assert_eq!(call(&mut s, BLK, map(0x1000, iova)), err(answer));
        s.audit().unwrap();
        assert_eq!(books(&mut s), before);
        assert_eq!(call(&mut s, BLK, map(0x1000, None)), Reply::ok(&[IOVA_BASE + 0x1000]));
        s.audit().unwrap();
    }
    refused(service(), |hw| hw.fail_next = Some("map"), None, ErrorCode::Hardware);
    let checked = iommu_pd::Service::new(backend::RangeChecked::default(), config(), storage()).unwrap();
    refused(checked, |_| (), Some(IOVA_BASE), ErrorCode::Overlap);
}

/// Two failures in a row: REVOKE's unmap is not confirmed, and neither is the block of the
/// receiver's device, which so keeps translating the revoked page. The granter cannot
/// retry (its grant handle is gone) and the receiver need never ask: the block is retried
/// before the next request of any client is served, and the exposure ends there.
#[test]
fn an_unmap_and_a_block_that_both_fail_end_at_the_next_request_of_any_client() {
    // The next request a QUERY, then (`handle_with` serves a MAP apart) a MAP.
    for next_maps in [false, true] {
        the_next_request_ends_the_exposure(next_maps);
    }
}

fn the_next_request_ends_the_exposure(next_maps: bool) {
    let mut s = service();
    let (grant, theirs) = lend(&mut s, Rights::READ_WRITE);
    assert_eq!(map(&mut s, BLK, theirs, DISK, 0, 0x1000, Some(IOVA_BASE), Rights::WRITE), Reply::ok(&[IOVA_BASE]));
    s.hw_mut().fail_next = Some("unmap");
    s.hw_mut().fail_then = vec!["block"];
    let revoke = Request::Revoke { grant: iommu_protocol::Handle(grant) };
    assert_eq!(call(&mut s, NET, revoke), err(ErrorCode::Hardware));
    // The exposure: the disk still reaches the revoked page through its cached entry.
    assert_eq!(s.hw().reachable(1).get(&IOVA_BASE), Some(&(0x4000_0000, Rights::WRITE)));
    assert_eq!(s.unblocked_devices(), 1 << DISK);
    // A third client's request, about something else altogether: the block is retried
    // first, and from then on the disk reaches nothing.
    if next_maps {
        // (Refused: its region is not page aligned. Refused or not, it is served after.)
        assert_eq!(map(&mut s, EVIL, 0, 2, 0, 0x1000, None, Rights::READ), err(ErrorCode::OutOfRange));
    } else {
        assert!(matches!(call(&mut s, EVIL, Request::Query), Reply::Ok { .. }));
    }
    assert!(s.hw().reachable(1).is_empty());
    assert_eq!(s.unblocked_devices(), 0);
    assert_eq!(s.pending_removals(BLK), 1, "the removal still waits for its retry");
    // The receiver's RESUME retries the removal and, confirmed, lets the disk run.
    assert_eq!(resume(&mut s, BLK, DISK), Reply::ok(&[]));
    assert!(s.hw().translations(1).is_empty());
}

/// Teardown tries every device of the client: a block the IOMMU does not confirm for one
/// does not leave the others running. The one that would not block loses its mappings
/// all the same, and its block is retried before the next request is served.
#[test]
fn teardown_blocks_every_device_even_when_one_block_fails() {
    const NIC2: u32 = 3;
    let mut s = service();
    map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ);
    map(&mut s, NET, 0, NIC2, 0x1000, 0x1000, Some(IOVA_BASE), Rights::READ);
    // The first block (the NIC's) fails.
    s.hw_mut().fail_next = Some("block");
    assert_eq!(s.client_torn_down(NET), Err(ErrorCode::Hardware));
    // The second NIC is blocked and emptied, confirmed.
    assert_eq!(s.hw().enabled.get(&(NIC2 as usize)), Some(&false));
    assert!(s.hw().translations(NIC2 as usize).is_empty());
    // The first still runs, but through nothing: its mapping went, confirmed.
    assert_eq!(s.hw().enabled.get(&(NIC as usize)), Some(&true));
    assert!(s.hw().translations(NIC as usize).is_empty());
    assert_eq!(call(&mut s, NET, Request::Query), Reply::ok(&[0, 16, 0, 64, 0, 0, 0, 0, 4]));
    // That request was served after the NIC's block was retried.
    assert_eq!(s.hw().enabled.get(&(NIC as usize)), Some(&false));
    assert_eq!(s.unblocked_devices(), 0);
    // Back, both run again.
    s.client_ready(NET).unwrap();
    assert_eq!(s.hw().enabled.get(&(NIC as usize)), Some(&true));
    assert_eq!(s.hw().enabled.get(&(NIC2 as usize)), Some(&true));
}

/// A grant revoked while its removal could not be confirmed, then the same memory lent
/// and revoked again: the second REVOKE answers `Ok` only once no translation of that
/// memory is left, the first one's included (its capability, and so its slot, are gone).
#[test]
fn a_later_revoke_of_the_same_memory_finishes_the_earlier_removal() {
    let mut s = service();
    let lend = Request::Grant {
        cap: iommu_protocol::Handle(0),
        to: ClientId(BLK as u32),
        offset: 0,
        len: 0x1000,
        rights: Rights::READ,
        devices: 1 << DISK,
    };
    let Reply::Ok { values, .. } = call(&mut s, NET, lend) else { panic!("grant refused") };
    map(&mut s, BLK, values[1] as u32, DISK, 0, 0x1000, Some(IOVA_BASE), Rights::READ);
    s.hw_mut().fail_next = Some("unmap");
    let revoke = |g: u64| Request::Revoke { grant: iommu_protocol::Handle(g as u32) };
    assert_eq!(call(&mut s, NET, revoke(values[0])), err(ErrorCode::Hardware));
    // Another grant takes the freed capability slot first.
    let other = Request::Grant {
        cap: iommu_protocol::Handle(0),
        to: ClientId(BLK as u32),
        offset: 0,
        len: 0x1000,
        rights: Rights::READ,
        devices: 1 << DISK,
    };
    assert!(matches!(call(&mut s, EVIL, other), Reply::Ok { .. }));
    let Reply::Ok { values, .. } = call(&mut s, NET, lend) else { panic!("grant refused") };
    assert_eq!(call(&mut s, NET, revoke(values[0])), Reply::ok(&[]));
    assert!(s.hw().translations(1).is_empty(), "{:x?}", s.hw().translations(1));
}

/// `client_ready` that fails part way (an enable, or a static map) leaves the device torn
/// down, and the next `client_ready` finishes the job: the device runs again, with its
/// static maps. (Found by a review: the device used to stay blocked, or lose its static
/// maps, for good.)
#[test]
fn client_ready_that_fails_part_way_is_finished_by_the_next() {
    let cfg = iommu_pd::Config { static_maps: &STATIC_MAPS, ..config() };
    let mut s = iommu_pd::Service::new(ModelHw::default(), cfg, storage()).unwrap();
    assert_eq!(s.hw().reachable(0).len(), 2);
    for failing in ["map", "enable"] {
        s.client_torn_down(NET).unwrap();
        s.hw_mut().fail_next = Some(failing);
        assert_eq!(s.client_ready(NET), Err(ErrorCode::Hardware), "{failing}");
        assert_eq!(s.client_ready(NET), Ok(()), "{failing}");
        assert_eq!(s.hw().enabled.get(&0), Some(&true), "{failing}");
        assert_eq!(s.hw().reachable(0).len(), 2, "{failing}: the static maps are back");
    }
}
