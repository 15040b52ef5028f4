//! Attacks on "every failure leaves the stream aborting", at the service: each test makes
//! the IOMMU refuse the one call that would close a device (the model IOMMU keeps its own
//! record of whether each device translates, which the service cannot write), and checks
//! the model afterwards, not the service's books.

mod common;

use common::*;
use iommu_pd::{FaultInput, Service};
use iommu_protocol::{DeviceId, ErrorCode, Request, Rights};

/// A fault storm on the NIC (stream 0x10): the policy's 10 faults in a window, and one
/// more, the last: no later fault comes to try again.
fn storm(s: &mut Service<'_, ModelHw>) {
    for now in 0..11 {
        s.record_fault(FaultInput { stream: 0x10, iova: 0xdead_0000, write: true, kind: 0x10, now });
    }
}

/// A storm whose block the IOMMU does not confirm still quarantines the device: it may
/// not map, the block is retried before the next request, and the device stops once the
/// IOMMU obeys. (Before, the storm was forgotten: the device was not quarantined, kept
/// translating, and nothing retried the block.)
#[test]
fn a_storm_whose_block_fails_still_quarantines_the_device() {
    let mut s = service();
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ_WRITE), ok_iova(IOVA_BASE));
    s.hw_mut().fail_next = Some("block");
    storm(&mut s);
    assert_eq!(s.stats().quarantines, 1, "the storm quarantined the device");
    assert_eq!(s.unblocked_devices(), 1 << NIC, "its block is owed");
    // The next request of anyone retries the block first; the NIC's own MAP is refused.
    assert_eq!(map(&mut s, NET, 0, NIC, 0x1000, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    assert_eq!(s.hw().enabled.get(&(NIC as usize)), Some(&false), "the IOMMU blocks the NIC");
    assert!(s.hw().reachable(NIC as usize).is_empty());
    assert_eq!(s.unblocked_devices(), 0);
    // The ring's record says so.
    let records: Vec<_> = s.faults(NET).unwrap().pending().copied().collect();
    assert_eq!(records.iter().filter(|r| r.quarantined == 1).count(), 1);
}

const NIC: u32 = 0;

/// The ways the tests below block NET's NIC, and let it run again (`Err` what was refused).
type Step = dyn Fn(&mut Service<'static, ModelHw>);
type Again = dyn Fn(&mut Service<'static, ModelHw>) -> Result<(), ErrorCode>;

fn stop_nic(s: &mut Service<'_, ModelHw>) {
    assert_eq!(call(s, NET, Request::Stop { device: DeviceId(NIC) }), iommu_protocol::Reply::ok(&[0]));
}

fn tear_down_net(s: &mut Service<'_, ModelHw>) {
    s.client_torn_down(NET).unwrap();
}

fn resume_nic(s: &mut Service<'_, ModelHw>) -> Result<(), ErrorCode> {
    match call(s, NET, Request::Resume { device: DeviceId(NIC) }) {
        iommu_protocol::Reply::Err(e) => Err(e),
        _ => Ok(()),
    }
}

fn ready_net(s: &mut Service<'_, ModelHw>) -> Result<(), ErrorCode> {
    s.client_ready(NET)
}

fn ok_iova(iova: u64) -> iommu_protocol::Reply {
    iommu_protocol::Reply::ok(&[iova])
}

/// A restarted client whose device's static map fails: the device is still torn down,
/// so it must still abort; it runs only once `client_ready` has made its static maps.
/// (Before, `client_ready` enabled it first: it ran, torn down in the books, until the
/// next `client_ready`, through whatever static maps had been made.)
#[test]
fn client_ready_whose_static_map_fails_leaves_the_device_blocked() {
    let cfg = iommu_pd::Config { static_maps: &STATIC_MAPS, ..config() };
    let mut s = Service::new(ModelHw::default(), cfg, storage()).unwrap();
    s.client_torn_down(NET).unwrap();
    assert_eq!(s.hw().enabled.get(&0), Some(&false));
    s.hw_mut().fail_next = Some("map");
    assert_eq!(s.client_ready(NET), Err(ErrorCode::Hardware));
    assert_eq!(s.hw().enabled.get(&0), Some(&false), "torn down still: the NIC aborts");
    // Its MAP is refused as a torn-down device's.
    assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    assert_eq!(s.client_ready(NET), Ok(()));
    assert_eq!(s.hw().enabled.get(&0), Some(&true));
    assert_eq!(s.hw().reachable(0).len(), 2, "its static maps, made before it ran");
}

/// Every way a blocked device is let run again, with the IOMMU failing the enable (the
/// model's failed enable leaves the device translating, the worst the contract allows):
/// the device is still stopped, quarantined, torn down or owed a removal, so it must end
/// blocked, and runs once the same request succeeds. (Before, it stayed translating.)
#[test]
fn an_enable_that_fails_leaves_a_device_that_may_not_run_blocked() {
    let fail_unmap = |s: &mut Service<'_, ModelHw>| {
        assert_eq!(map(s, NET, 0, NIC, 0, 0x1000, Some(IOVA_BASE), Rights::READ), ok_iova(IOVA_BASE));
        s.hw_mut().fail_next = Some("unmap");
        assert_eq!(unmap(s, NET, NIC, &[IOVA_BASE]), err(ErrorCode::Hardware));
    };
    // The removal's retry comes from a second UNMAP of the same IOVA.
    let unmap_again = |s: &mut Service<'_, ModelHw>| match unmap(s, NET, NIC, &[IOVA_BASE]) {
        iommu_protocol::Reply::Err(e) => Err(e),
        _ => Ok(()),
    };
    // What blocks the device, what lets it run (failing), and what then does (the UNMAP
    // that confirmed the removal has no mapping left to retry: RESUME enables).
    let cases: [(&str, &Step, &Again, &Again); 5] = [
        ("STOP, then RESUME", &stop_nic, &resume_nic, &resume_nic),
        ("a storm, then RESUME", &storm, &resume_nic, &resume_nic),
        ("a teardown, then client_ready", &tear_down_net, &ready_net, &ready_net),
        ("a failed UNMAP, then RESUME", &fail_unmap, &resume_nic, &resume_nic),
        ("a failed UNMAP, then UNMAP again", &fail_unmap, &unmap_again, &resume_nic),
    ];
    for (what, block, first, again) in cases {
        let mut s = service();
        block(&mut s);
        assert_eq!(s.hw().enabled.get(&0), Some(&false), "{what}: blocked");
        s.hw_mut().fail_next = Some("enable");
        assert_eq!(first(&mut s), Err(ErrorCode::Hardware), "{what}");
        // Whatever the next request is, the owed block is retried before it.
        call(&mut s, BLK, Request::Query);
        assert_eq!(s.hw().enabled.get(&0), Some(&false), "{what}: blocked after the failed enable");
        assert_eq!(again(&mut s), Ok(()), "{what}: again, the IOMMU obeying");
        assert_eq!(s.hw().enabled.get(&0), Some(&true), "{what}: running");
    }
}

/// A storm of one client's device can overflow the IOMMU's event queue before the IOMMU
/// PD drains it, and the records lost may be any device's: every client is told (its
/// ring counts one record dropped, carried by its next record and QUERY), not only the
/// storm's owner. (Before, the overflow reached no client: a bystander whose device's
/// fault was lost in it heard nothing.)
#[test]
fn records_the_iommu_lost_are_counted_in_every_clients_ring() {
    let mut s = service();
    // EVIL's device faults; the queue overflowed meanwhile.
    s.record_fault(FaultInput { stream: 0x20, iova: 0xbad_0000, write: true, kind: 0x10, now: 0 });
    assert_eq!(s.events_lost(0, 128), 0b111, "every client with a ring is to be notified");
    for c in [NET, BLK, EVIL] {
        assert_eq!(s.faults(c).unwrap().dropped(), 1, "client {c}");
    }
    // NET's next record says one was dropped before it.
    s.record_fault(FaultInput { stream: 0x10, iova: 0x1234_0000, write: false, kind: 0x10, now: 1 });
    let records: Vec<_> = s.faults(NET).unwrap().pending().copied().collect();
    assert_eq!(records.iter().map(|r| r.dropped_before).collect::<Vec<_>>(), vec![1]);
}

/// An enable that fails, then the block that should undo it fails too, then that block's
/// first retry: the device (left translating by the failed enable, the worst the contract
/// allows) is still stopped, quarantined or torn down in the books, so it may not map,
/// its block stays owed through every refused retry, and the first retry the IOMMU obeys
/// leaves it aborting. Then the same request lets it run.
#[test]
fn an_enable_that_fails_and_whose_block_fails_too_stays_owed_until_the_iommu_blocks() {
    let cases: [(&str, &Step, &Again, ErrorCode); 3] = [
        ("STOP, then RESUME", &stop_nic, &resume_nic, ErrorCode::Stopped),
        ("a storm, then RESUME", &storm, &resume_nic, ErrorCode::Quarantined),
        ("a teardown, then client_ready", &tear_down_net, &ready_net, ErrorCode::Quarantined),
    ];
    for (what, block, again, refused) in cases {
        let mut s = service();
        block(&mut s);
        assert_eq!(s.hw().enabled.get(&0), Some(&false), "{what}: blocked");
        s.hw_mut().fail_next = Some("enable");
        // The block after the failed enable, and its retry before the next request.
        s.hw_mut().fail_then = vec!["block", "block"];
        assert_eq!(again(&mut s), Err(ErrorCode::Hardware), "{what}");
        assert_eq!(s.hw().enabled.get(&0), Some(&true), "{what}: the model left it translating");
        assert_eq!(s.unblocked_devices(), 1 << NIC, "{what}: its block is owed");
        // The retry before this MAP fails: still owed, and the MAP refused as the books say.
        assert_eq!(map(&mut s, NET, 0, NIC, 0, 0x1000, None, Rights::READ), err(refused), "{what}");
        assert_eq!(s.unblocked_devices(), 1 << NIC, "{what}: owed after a refused retry");
        assert!(s.hw().fail_then.is_empty(), "{what}: the retry was made");
        // The next request's retry is obeyed: the device aborts before that request is served.
        call(&mut s, BLK, Request::Query);
        assert_eq!(s.hw().enabled.get(&0), Some(&false), "{what}: blocked once the IOMMU obeys");
        assert!(s.hw().reachable(0).is_empty(), "{what}");
        assert_eq!(s.unblocked_devices(), 0, "{what}");
        assert_eq!(again(&mut s), Ok(()), "{what}: again, the IOMMU obeying");
        assert_eq!(s.hw().enabled.get(&0), Some(&true), "{what}: running");
    }
}

/// A client whose ring is full when the IOMMU's event queue overflows is still told: it is
/// notified with the rest, its ring counts the loss beside the records it dropped, and its
/// next record, once it has read the ring, carries both; two overflows count two, none is
/// counted twice.
#[test]
fn records_the_iommu_lost_reach_a_client_whose_ring_is_full() {
    let mut s = service();
    // 32 faults of the NIC, each in its own window (no storm), none coalesced.
    for i in 0..32u64 {
        let f = FaultInput { stream: 0x10, iova: 0x10_0000 * (i + 1), write: i % 2 == 0, kind: 0x10, now: i * 1000 };
        assert_eq!(s.record_fault(f), Some(iommu_protocol::ClientId(NET as u32)));
    }
    assert_eq!(s.faults(NET).unwrap().pending().count(), 32, "full");
    assert_eq!(s.faults(NET).unwrap().dropped(), 0);
    // One more: dropped for lack of room.
    s.record_fault(FaultInput { stream: 0x10, iova: 0x7700_0000, write: true, kind: 0x10, now: 40_000 });
    assert_eq!(s.faults(NET).unwrap().dropped(), 1);
    assert_eq!(s.events_lost(40_000, 128) & (1 << NET), 1 << NET, "NET notified, its ring full");
    assert_eq!(s.events_lost(40_000, 128) & (1 << NET), 1 << NET);
    assert_eq!(s.faults(NET).unwrap().dropped(), 3, "one dropped, two lost, each once");
    assert_eq!(s.faults(BLK).unwrap().dropped(), 2);
    // NET reads its ring; its next record says three went missing before it.
    let read = *s.faults(NET).unwrap().pending().last().unwrap();
    let final_record = [read.seq, read.repeats.into(), read.iova_last];
    assert_eq!(call(&mut s, NET, Request::AckFaults { upto: read.seq }), iommu_protocol::Reply::ok(&final_record));
    s.record_fault(FaultInput { stream: 0x10, iova: 0x8800_0000, write: false, kind: 0x10, now: 50_000 });
    let records: Vec<_> = s.faults(NET).unwrap().pending().copied().collect();
    assert_eq!(records.iter().map(|r| r.dropped_before).collect::<Vec<_>>(), vec![3]);
}

/// The IOMMU failed while serving and was failed closed (the IOMMU PD's `fail_service`):
/// nothing is served again, and a client waiting on its queue's completions or on a
/// removal would wait for ever. Every client is told without calling: a record of kind
/// `SERVICE_FAILED` (no device, no address) in its ring, and a notification; a client
/// whose ring is full has it counted dropped, as any record, and is notified all the same.
/// (Before, `fail_service` wrote nothing and notified no one: a client learnt of the
/// failure only from the Unavailable answer to its next call.)
#[test]
fn every_client_is_told_when_the_iommu_has_failed() {
    use iommu_protocol::faults::{kind, NO_DEVICE, NO_REGION};
    let mut s = service();
    // NET's ring full: 32 faults of the NIC, each in its own window, none coalesced.
    for i in 0..32u64 {
        let f = FaultInput { stream: 0x10, iova: 0x10_0000 * (i + 1), write: i % 2 == 0, kind: 0x10, now: i * 1000 };
        s.record_fault(f);
    }
    assert_eq!(s.faults(NET).unwrap().pending().count(), 32, "full");
    assert_eq!(s.service_failed(true), 0b111, "every client with a ring is to be notified");
    for c in [BLK, EVIL] {
        let records: Vec<_> = s.faults(c).unwrap().pending().copied().collect();
        let [r] = records[..] else { panic!("client {c}: {records:?}") };
        assert_eq!((r.kind, r.device, r.region, r.iova), (kind::SERVICE_FAILED, NO_DEVICE, NO_REGION, 0), "client {c}");
    }
    assert_eq!(s.faults(NET).unwrap().dropped(), 1, "NET's ring was full: counted dropped");
    // ... and told all the same: a client whose ring is full reads that the service failed
    // (before, it saw one more record dropped and nothing else, and waited for ever).
    for c in [NET, BLK, EVIL] {
        let ring = core::ptr::NonNull::from(s.faults(c).unwrap());
        // SAFETY: the service's own ring, live for the call.
        assert!(unsafe { iommu_protocol::faults::FaultRing::failed_shared(ring) }, "client {c} not told");
    }
}

/// Gap left by the last session: when start-up failed (the SMMU not brought up, the policy
/// refused), the IOMMU PD told no client: each learnt only from `Unavailable` at its first
/// call, and one waiting for a notification first waited for ever. `start_failed` tells
/// every client as a failure while serving does: the same SERVICE_FAILED record, the
/// ring's `failed` word, and every client to notify. The rings here are as a refused
/// `Service::new` leaves them, one of them holding what was there before (a ring the
/// system gave full of another boot's records: none of them counts, and the client is
/// told all the same). (Failing before: with `start_failed` doing nothing, as the PD did,
/// no ring reads failed and no record is there.)
#[test]
fn every_client_is_told_when_the_service_never_started() {
    use iommu_pd::faults::{start_failed, FaultRing};
    use iommu_protocol::faults::kind;
    let mut rings: Vec<FaultRing> = (0..3).map(|_| FaultRing::default()).collect();
    for i in 0..40u64 {
        rings[NET].push(iommu_pd::FaultRecord { iova: i << 12, kind: 0x10, ..Default::default() });
    }
    // One ring fewer than the description's clients: refused before anything is touched.
    let mut owned = Box::new(<iommu_pd::owned_storage!(4, 4, 64, 256)>::default());
    let refused = Service::new(ModelHw::default(), config(), owned.storage_with_rings(&mut rings[..2]));
    assert!(refused.is_err(), "the policy must be refused");
    drop(refused);
    assert_eq!(start_failed(&mut rings, true), 0b111, "every client is to be notified");
    // What a service that failed while serving leaves in every ring.
    let mut serving = service();
    serving.service_failed(true);
    for c in [NET, BLK, EVIL] {
        let told: Vec<_> = rings[c].pending().copied().collect();
        let want: Vec<_> = serving.faults(c).unwrap().pending().copied().collect();
        assert_eq!(told, want, "client {c}: the same record as after a failure while serving");
        assert_eq!(told.len(), 1, "client {c}: {told:?}");
        assert_eq!(told[0].kind, kind::SERVICE_FAILED, "client {c}");
        assert_eq!(rings[c].dropped(), 0, "client {c}: nothing counted dropped");
        let ring = core::ptr::NonNull::from(&rings[c]);
        // SAFETY: the test's own ring, live for the call.
        assert!(unsafe { FaultRing::failed_shared(ring) }, "client {c} not told");
    }
}

/// The IOMMU PD panicked while serving (`faults::panicked`, from its panic hook): every
/// client is told as after a failure while serving, and the records it had not read stay
/// (a full ring keeps them all and still reads failed). Failing before: nothing was told;
/// the PD faulted, and a client waiting for a notification waited for ever.
#[test]
fn every_client_is_told_when_the_iommu_pd_panicked_and_keeps_its_unread_records() {
    use iommu_pd::faults::{panicked, FaultRing, FAULT_RING};
    use iommu_protocol::faults::{failed, kind};
    let mut rings: Vec<FaultRing> = (0..3).map(|_| FaultRing::default()).collect();
    rings[NET].push(iommu_pd::FaultRecord { iova: 0x5000, kind: kind::F_TRANSLATION, ..Default::default() });
    for i in 0..FAULT_RING as u64 {
        rings[EVIL].push(iommu_pd::FaultRecord { iova: i << 12, kind: kind::F_TRANSLATION, ..Default::default() });
    }
    assert_eq!(panicked(&mut rings, false), 0b111, "every client is to be notified");
    let net: Vec<_> = rings[NET].pending().map(|r| (r.iova, r.kind)).collect();
    assert_eq!(net, [(0x5000, kind::F_TRANSLATION), (0, kind::SERVICE_FAILED)]);
    assert_eq!(rings[EVIL].pending().count(), FAULT_RING, "a full ring keeps what its client has not read");
    assert!(rings[EVIL].pending().all(|r| r.kind == kind::F_TRANSLATION));
    for c in [NET, BLK, EVIL] {
        let ring = core::ptr::NonNull::from(&rings[c]);
        // SAFETY: the test's own ring, live for the call.
        assert_eq!(unsafe { FaultRing::failure_shared(ring) }, failed::DMA_NOT_KNOWN_STOPPED, "client {c}");
    }
}

/// Every client is told what failing the IOMMU closed could guarantee: the ring's `failed`
/// word says whether every device's DMA now aborts (`failed::DMA_STOPPED`) or is not
/// known to (`failed::DMA_NOT_KNOWN_STOPPED`: an SMMU without GBPA, a disable never
/// acknowledged, an SMMU refused at start-up), whether the ring had room for the record or
/// not, after a failure while serving and at start-up alike. Failing before: the word was
/// 1 whatever the IOMMU had been left doing, and the clients said the same either way
/// (the Linux VMM that its disk's DMA aborted).
#[test]
fn every_client_is_told_whether_dma_is_known_to_be_stopped() {
    use iommu_pd::faults::{start_failed, FaultRing};
    use iommu_protocol::faults::failed;
    for (stopped, word) in [(true, failed::DMA_STOPPED), (false, failed::DMA_NOT_KNOWN_STOPPED)] {
        let mut s = service();
        // NET's ring full: the record finds no room there, the word is set all the same.
        for i in 0..32u64 {
            let f = FaultInput { stream: 0x10, iova: 0x10_0000 * (i + 1), write: true, kind: 0x10, now: i * 1000 };
            s.record_fault(f);
        }
        s.service_failed(stopped);
        for c in [NET, BLK, EVIL] {
            let ring = core::ptr::NonNull::from(s.faults(c).unwrap());
            // SAFETY: the service's own ring, live for the call.
            assert_eq!(unsafe { FaultRing::failure_shared(ring) }, word, "serving, client {c}, stopped {stopped}");
        }
        let mut rings: Vec<FaultRing> = (0..3).map(|_| FaultRing::default()).collect();
        start_failed(&mut rings, stopped);
        for (c, ring) in rings.iter().enumerate() {
            // SAFETY: the test's own ring, live for the call.
            let read = unsafe { FaultRing::failure_shared(core::ptr::NonNull::from(ring)) };
            assert_eq!(read, word, "start-up, client {c}, stopped {stopped}");
        }
    }
}
