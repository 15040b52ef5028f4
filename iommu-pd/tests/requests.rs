//! Each request and each error, against the model IOMMU.

// The request tables read best as plain tuples and positional arguments.
#![allow(clippy::too_many_arguments, clippy::type_complexity)]

mod common;

use common::*;
use iommu_pd::{FaultInput, Routed, Service};
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights};

#[test]
fn map_then_unmap() {
    let mut s = service();
    assert_eq!(map(&mut s, NET, 0, 0, 0x2000, 0x2000, Some(IOVA_BASE), Rights::READ_WRITE), Reply::ok(&[IOVA_BASE]));
    let pages = s.hw().reachable(0);
    assert_eq!(pages.get(&IOVA_BASE), Some(&(0x4000_2000, Rights::READ_WRITE)));
    assert_eq!(pages.get(&(IOVA_BASE + 0x1000)), Some(&(0x4000_3000, Rights::READ_WRITE)));
    assert_eq!(pages.len(), 2);
    // Chosen IOVA: the lowest free one.
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, None, Rights::READ), Reply::ok(&[IOVA_BASE + 0x2000]));
    assert_eq!(unmap(&mut s, NET, 0, &[IOVA_BASE, IOVA_BASE + 0x2000]), Reply::ok(&[]));
    assert!(s.hw().reachable(0).is_empty());
    // Double unmap.
    assert_eq!(unmap(&mut s, NET, 0, &[IOVA_BASE]), err(ErrorCode::NotMapped));
}

#[test]
fn map_refusals_change_nothing() {
    let mut s = service();
    map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE), Rights::READ_WRITE);
    let before = s.hw().clone();
    let cases: Vec<(usize, u32, u32, u64, u64, Option<u64>, Rights, ErrorCode)> = vec![
        (NET, 7, 0, 0, 0x1000, None, Rights::READ, ErrorCode::BadHandle), // no such handle
        (EVIL, 1, 2, 0, 0x1000, None, Rights::READ, ErrorCode::BadHandle), // NET's handle number, EVIL's table
        (EVIL, 0, 0, 0, 0x1000, None, Rights::READ, ErrorCode::BadDevice), // someone else's device
        (NET, 1, 3, 0, 0x1000, None, Rights::READ, ErrorCode::BadDevice), // cap not for that device
        (NET, 1, 0, 0, 0x1000, None, Rights::WRITE, ErrorCode::NoRights), // read-only cap
        (NET, 0, 0, 0x800, 0x1000, None, Rights::READ, ErrorCode::OutOfRange), // unaligned offset
        (NET, 0, 0, 0, 0x800, None, Rights::READ, ErrorCode::OutOfRange), // partial page
        (NET, 0, 0, 0xf000, 0x2000, None, Rights::READ, ErrorCode::OutOfRange), // past the cap
        (NET, 0, 0, u64::MAX - 0xfff, 0x2000, None, Rights::READ, ErrorCode::OutOfRange), // wraps
        (NET, 0, 0, 0, 0, None, Rights::READ, ErrorCode::OutOfRange),     // empty
        (EVIL, 0, 2, 0, 0x1000, None, Rights::READ, ErrorCode::OutOfRange), // unaligned region
        (NET, 0, 0, 0x1000, 0x1000, Some(IOVA_BASE), Rights::READ, ErrorCode::Overlap),
        (NET, 0, 0, 0x1000, 0x1000, Some(IOVA_BASE - 0x1000), Rights::READ, ErrorCode::OutOfRange), // outside window
        (NET, 0, 0, 0x1000, 0x1000, Some(u64::MAX - 0xfff), Rights::READ, ErrorCode::OutOfRange),
        (NET, 0, 0, 0x1000, 0x1000, Some(IOVA_BASE + 0x800), Rights::READ, ErrorCode::OutOfRange),
    ];
    for (c, h, d, off, len, iova, r, e) in cases {
        assert_eq!(
            map(&mut s, c, h, d, off, len, iova, r),
            err(e),
            "client {c} handle {h} device {d} {off:#x}+{len:#x}"
        );
        assert_eq!(s.hw().pages, before.pages);
    }
    // Malformed and unknown requests.
    assert_eq!(s.handle(NET, 99, &[]), err(ErrorCode::UnknownOp));
    // The measurement builds' bypass switch and wake-up times are served by their PD shell
    // alone: the service core, and so every product IOMMU PD, does not know them.
    assert_eq!(s.handle(NET, iommu_protocol::measure::BYPASS, &[0, 1]), err(ErrorCode::UnknownOp));
    assert_eq!(s.handle(NET, iommu_protocol::measure::WAKE_UP, &[]), err(ErrorCode::UnknownOp));
    assert_eq!(s.handle(NET, 1, &[0, 0]), err(ErrorCode::Truncated));
    assert_eq!(s.handle(NET, 1, &[0, 0, 0x1000, u64::MAX, 9]), err(ErrorCode::Malformed));
    assert_eq!(s.handle(7, 7, &[]), err(ErrorCode::BadClient));
    // A MAP, which `handle_with` serves apart, from a client the description does not
    // have, even one whose registers name what client 0 holds.
    assert_eq!(map(&mut s, 7, 0, 0, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadClient));
    // Unmapping someone else's mapping, a mapping of another device, an IOVA inside a
    // mapping rather than at its start, or the same one twice in one request.
    assert_eq!(unmap(&mut s, EVIL, 0, &[IOVA_BASE]), err(ErrorCode::BadDevice));
    assert_eq!(unmap(&mut s, NET, 3, &[IOVA_BASE]), err(ErrorCode::NotMapped));
    assert_eq!(unmap(&mut s, NET, 0, &[IOVA_BASE + 0x1000]), err(ErrorCode::NotMapped));
    assert_eq!(unmap(&mut s, NET, 0, &[IOVA_BASE, IOVA_BASE]), err(ErrorCode::NotMapped));
    assert_eq!(s.hw().pages, before.pages);
}

#[test]
fn quotas_and_iova_exhaustion() {
    let mut s = service();
    // 64 pages of quota; the cap has 16 pages. Map it 4 times at different IOVAs.
    for i in 0..4 {
        assert!(matches!(map(&mut s, NET, 0, 0, 0, 0x1_0000, None, Rights::READ), Reply::Ok { .. }), "{i}");
    }
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, None, Rights::READ), err(ErrorCode::QuotaPages));
    assert_eq!(call(&mut s, NET, Request::Query), Reply::ok(&[4, 16, 64, 64, 0, 0, 0, 0, 4]));
    // What is mapped, in (device, IOVA) order: region 0, offset 0, read-only.
    assert_eq!(call(&mut s, NET, Request::QueryMapping { index: 0 }), Reply::ok(&[0, IOVA_BASE, 0x1_0000, 1, 0, 0, 0]));
    assert_eq!(
        call(&mut s, NET, Request::QueryMapping { index: 3 }),
        Reply::ok(&[0, IOVA_BASE + 0x3_0000, 0x1_0000, 1, 0, 0, 0])
    );
    assert_eq!(call(&mut s, NET, Request::QueryMapping { index: 4 }), err(ErrorCode::NotMapped));
    assert_eq!(call(&mut s, BLK, Request::QueryMapping { index: 0 }), err(ErrorCode::NotMapped));
    // The mapping quota: 16 one-page mappings for the disk's driver, then no more.
    for i in 0..16 {
        assert!(matches!(map(&mut s, BLK, 0, 1, i * 0x1000 % 0x1_0000, 0x1000, None, Rights::READ), Reply::Ok { .. }));
    }
    assert_eq!(map(&mut s, BLK, 0, 1, 0, 0x1000, None, Rights::READ), err(ErrorCode::QuotaMappings));
}

#[test]
fn grant_map_revoke() {
    let mut s = service();
    // NET gives BLK pages 2..4 of its buffers, read-only, for the disk.
    let r = call(
        &mut s,
        NET,
        Request::Grant {
            cap: Handle(0),
            to: ClientId(BLK as u32),
            offset: 0x2000,
            len: 0x2000,
            rights: Rights::READ,
            devices: 0b10,
        },
    );
    let Reply::Ok { values, .. } = r else { panic!("{r:?}") };
    let (grant, theirs) = (values[0] as u32, values[1] as u32);
    // BLK can map it read-only for its disk, not write, not past the grant.
    assert_eq!(map(&mut s, BLK, theirs, 1, 0, 0x1000, None, Rights::WRITE), err(ErrorCode::NoRights));
    assert_eq!(map(&mut s, BLK, theirs, 1, 0x1000, 0x2000, None, Rights::READ), err(ErrorCode::OutOfRange));
    assert_eq!(
        map(&mut s, BLK, theirs, 1, 0, 0x2000, Some(IOVA_BASE + 0x8000), Rights::READ),
        Reply::ok(&[IOVA_BASE + 0x8000])
    );
    assert_eq!(s.hw().reachable(1).get(&(IOVA_BASE + 0x8000)), Some(&(0x4000_2000, Rights::READ)));
    // BLK re-grants to EVIL; EVIL maps it.
    let r = call(
        &mut s,
        BLK,
        Request::Grant {
            cap: Handle(theirs),
            to: ClientId(EVIL as u32),
            offset: 0,
            len: 0x1000,
            rights: Rights::READ,
            devices: 0b100,
        },
    );
    let Reply::Ok { values, .. } = r else { panic!("{r:?}") };
    let evil_h = values[1] as u32;
    assert!(matches!(map(&mut s, EVIL, evil_h, 2, 0, 0x1000, None, Rights::READ), Reply::Ok { .. }));
    // Rights only shrink; devices must be the receiver's.
    let wider = Request::Grant {
        cap: Handle(theirs),
        to: ClientId(EVIL as u32),
        offset: 0,
        len: 0x1000,
        rights: Rights::READ_WRITE,
        devices: 0b100,
    };
    assert_eq!(call(&mut s, BLK, wider), err(ErrorCode::NoRights));
    let not_theirs = Request::Grant {
        cap: Handle(theirs),
        to: ClientId(EVIL as u32),
        offset: 0,
        len: 0x1000,
        rights: Rights::READ,
        devices: 0b1,
    };
    assert_eq!(call(&mut s, BLK, not_theirs), err(ErrorCode::BadDevice));
    // A grant handle cannot be used to map; a cap handle cannot be revoked.
    assert_eq!(map(&mut s, NET, grant, 0, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(0) }), err(ErrorCode::Denied));
    // NET revokes: BLK's and EVIL's mappings are gone before the reply.
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(grant) }), Reply::ok(&[]));
    assert!(s.hw().reachable(1).is_empty());
    assert!(s.hw().reachable(2).is_empty());
    assert_eq!(map(&mut s, EVIL, evil_h, 2, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(grant) }), err(ErrorCode::BadHandle));
}

#[test]
fn faults_are_attributed_rate_limited_and_never_silently_dropped() {
    let mut s = service();
    map(&mut s, NET, 0, 0, 0x3000, 0x1000, Some(IOVA_BASE), Rights::READ);
    // Inside a mapping: a write to a read-only page.
    let to = s.record_fault(FaultInput { stream: 0x10, iova: IOVA_BASE + 0x10, write: true, kind: 0x13, now: 0 });
    assert_eq!(to, Some(ClientId(NET as u32)));
    let r = *s.faults(NET).unwrap().pending().next().unwrap();
    assert_eq!((r.device, r.region, r.offset, r.near, r.write, r.kind), (0, 0, 0x3010, 0, 1, 0x13));
    // Just past the mapping: attributed as near the end of the mapped range.
    s.record_fault(FaultInput { stream: 0x10, iova: IOVA_BASE + 0x1000, write: false, kind: 0x10, now: 1 });
    let r = *s.faults(NET).unwrap().pending().nth(1).unwrap();
    assert_eq!((r.region, r.offset, r.near), (0, 0x3fff, 1));
    // Unknown stream: counted.
    assert_eq!(s.record_fault(FaultInput { stream: 0x99, iova: 0, write: false, kind: 0x10, now: 1 }), None);
    assert_eq!(s.stats().unattributed_faults, 1);
    // A burst (one fault per 4-byte bus transaction, as QEMU reports a blocked DMA) folds
    // into one record; the 11th fault in the window quarantines the disk, which starts a
    // record of its own, into which the rest of the burst folds.
    for i in 0..64 {
        s.record_fault(FaultInput { stream: 0x18, iova: 0x2000_0000 + 4 * i, write: true, kind: 0x10, now: 2 });
    }
    let burst: Vec<_> = s.faults(BLK).unwrap().pending().copied().collect();
    assert_eq!(burst.len(), 2);
    assert_eq!(
        (burst[0].iova, burst[0].iova_last, burst[0].repeats, burst[0].quarantined),
        (0x2000_0000, 0x2000_0024, 9, 0)
    );
    assert_eq!(
        (burst[1].iova, burst[1].iova_last, burst[1].repeats, burst[1].quarantined),
        (0x2000_0028, 0x2000_00fc, 53, 1)
    );
    // A storm: more than 10 in a window quarantines the device; it is blocked. Faults far
    // apart are separate records.
    for i in 0..40 {
        s.record_fault(FaultInput {
            stream: 0x10,
            iova: 0xdead_0000 + i * 0x10_0000,
            write: true,
            kind: 0x10,
            now: 2 + i,
        });
    }
    assert!(s.hw().reachable(0).is_empty(), "quarantined device reaches nothing");
    let ring = s.faults(NET).unwrap();
    assert_eq!(ring.recorded(), 32);
    assert_eq!(ring.dropped(), 42 - 32);
    assert_eq!(ring.pending().filter(|r| r.quarantined == 1).count(), 1);
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    // Acknowledge, then the next record carries the count of those dropped.
    let last = *s.faults(NET).unwrap().pending().last().unwrap();
    assert_eq!(
        call(&mut s, NET, Request::AckFaults { upto: 31 }),
        Reply::ok(&[31, last.repeats.into(), last.iova_last])
    );
    assert_eq!(call(&mut s, NET, Request::AckFaults { upto: 32 }), err(ErrorCode::OutOfRange));
    s.record_fault(FaultInput { stream: 0x10, iova: 0, write: false, kind: 0x10, now: 500 });
    assert_eq!(s.faults(NET).unwrap().pending().next().unwrap().dropped_before, 10);
    // Resume is allowed for the NIC, and its mapping is back.
    assert_eq!(call(&mut s, NET, Request::Resume { device: DeviceId(0) }), Reply::ok(&[]));
    assert_eq!(s.hw().reachable(0).len(), 1);
    // Not for the disk (already past its storm limit from the burst above).
    for i in 0..20 {
        s.record_fault(FaultInput { stream: 0x18, iova: 0, write: false, kind: 0x10, now: i });
    }
    assert_eq!(call(&mut s, BLK, Request::Resume { device: DeviceId(1) }), err(ErrorCode::Denied));
}

/// ACK_FAULTS answers with the record it acknowledges as it stands then: the faults of
/// the burst folded into it after its owner read it (the IOMMU PD drained them between
/// the client's read and its call) are in the reply, and none folds into it afterwards.
/// Before, the reply was empty, and a client kept the copy it read: the rest of the burst
/// reached it in no record.
#[test]
fn an_acknowledgment_answers_the_record_with_what_folded_in_after_it_was_read() {
    let mut s = service();
    let disk = |iova, now| FaultInput { stream: 0x18, iova, write: true, kind: 0x10, now };
    s.record_fault(disk(0x2000_0000, 0));
    // What the client copies.
    let read = *s.faults(BLK).unwrap().pending().next().unwrap();
    assert_eq!((read.iova_last, read.repeats), (0x2000_0000, 0));
    for i in 1..=3 {
        s.record_fault(disk(0x2000_0000 + 4 * i, 1));
    }
    assert_eq!(call(&mut s, BLK, Request::AckFaults { upto: read.seq }), Reply::ok(&[read.seq, 3, 0x2000_000c]));
    // Acknowledged, it is final: the burst's next fault starts a record of its own.
    s.record_fault(disk(0x2000_0010, 2));
    let after: Vec<_> = s.faults(BLK).unwrap().pending().copied().collect();
    assert_eq!(after.iter().map(|r| (r.seq, r.iova, r.repeats)).collect::<Vec<_>>(), [(1, 0x2000_0010, 0)]);
    // An acknowledgment of it again answers it unchanged.
    assert_eq!(call(&mut s, BLK, Request::AckFaults { upto: 0 }), Reply::ok(&[0, 3, 0x2000_000c]));
}

/// Delegation is bounded by the description: a capability (and everything derived from
/// it) goes only to the clients its `grant_to` names; a refused GRANT creates nothing.
#[test]
fn grants_go_only_where_the_description_lets_them() {
    let mut caps = CAPS;
    caps[0].grant_to = 1 << BLK;
    caps[1].grant_to = 0;
    let caps = Box::leak(Box::new(caps));
    let mut s = Service::new(ModelHw::default(), iommu_pd::Config { caps: &caps[..], ..config() }, storage()).unwrap();
    // To BLK: allowed. BLK cannot pass it on to EVIL (the mask is inherited), NET cannot
    // give it to EVIL directly, and the read-only capability goes nowhere.
    let Reply::Ok { values, .. } = grant(&mut s, NET, 0, BLK, 0b10) else { panic!("grant to BLK refused") };
    let theirs = values[1] as u32;
    assert_eq!(grant(&mut s, BLK, theirs, EVIL, 0b100), err(ErrorCode::Denied));
    assert_eq!(grant(&mut s, NET, 0, EVIL, 0b100), err(ErrorCode::Denied));
    assert_eq!(grant(&mut s, NET, 1, BLK, 0b10), err(ErrorCode::Denied));
    // Nothing was created by the refusals: EVIL holds only its own capability, and the
    // handle after it is empty.
    assert_eq!(map(&mut s, EVIL, 1, 2, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    // What BLK received works.
    assert!(matches!(map(&mut s, BLK, theirs, 1, 0, 0x1000, None, Rights::READ), Reply::Ok { .. }));
}

/// The storm limit is a rate: faults spread over windows never quarantine, however many;
/// the same number inside one window does. (Window 100 ticks, 10 faults, as configured.)
#[test]
fn storms_are_a_rate_not_a_lifetime_count() {
    let mut s = service();
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    let fault = |s: &mut Service<'_, ModelHw>, i: u64, now: u64| {
        s.record_fault(FaultInput { stream: 0x10, iova: 0xdead_0000 + i * 0x10_0000, write: true, kind: 0x10, now })
    };
    // 50 faults, 5 per window of 100 ticks: the device keeps its mapping.
    for i in 0..50 {
        fault(&mut s, i, i * 20);
    }
    assert_eq!(s.hw().reachable(0).len(), 1, "a trickle does not quarantine");
    assert_eq!(s.stats().quarantines, 0);
    // 11 inside one window: quarantined.
    for i in 0..11 {
        fault(&mut s, i, 10_000 + i);
    }
    assert!(s.hw().reachable(0).is_empty());
    assert_eq!(s.stats().quarantines, 1);
}

/// A flood that starts late after boot is one flood: the window opens at its first fault,
/// not on a grid that starts at boot and would cut it in two halves, each under the limit.
/// (Under seL4 the hostile driver's flood began 0.69 s after boot and spanned the 1 s mark.)
/// A write fault of `nic` (stream 0x10) at every tick of `ticks`, where nothing is mapped.
fn nic_faults(s: &mut Service<'_, ModelHw>, ticks: std::ops::Range<u64>) {
    for now in ticks {
        s.record_fault(FaultInput { stream: 0x10, iova: 0xdead_0000, write: true, kind: 0x10, now });
    }
}

#[test]
fn a_storm_is_counted_from_its_first_fault() {
    let mut s = service();
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    // 11 faults in 11 ticks, from tick 95: across tick 100, where a boot-anchored window ends.
    nic_faults(&mut s, 95..106);
    assert!(s.hw().reachable(0).is_empty(), "the flood is blocked");
    assert_eq!(s.stats().quarantines, 1);
    assert_eq!(s.recent_faults(0), Some(11), "what the quarantine was decided on");
}

/// Faults bunched either side of a window's end count together: the previous window's
/// faults weigh in by how much of it the last window's length still covers.
#[test]
fn a_storm_across_a_window_boundary_is_one_storm() {
    let mut s = service();
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    let fault = |s: &mut Service<'_, ModelHw>, now: u64| {
        s.record_fault(FaultInput { stream: 0x10, iova: 0xdead_0000, write: true, kind: 0x10, now })
    };
    // One fault opens a window at 1000; nine more at its end: ten, the limit.
    fault(&mut s, 1000);
    for now in 1091..1100 {
        fault(&mut s, now);
    }
    assert_eq!(s.stats().quarantines, 0, "ten in a window is allowed");
    // The next window opens at 1100; one fault in it makes eleven within 10 ticks.
    fault(&mut s, 1100);
    assert_eq!(s.recent_faults(0), Some(11));
    assert!(s.hw().reachable(0).is_empty());
    assert_eq!(s.stats().quarantines, 1);
}

thread_local! {
    /// The clock the rations read (`ConfigSpace::now_ms`), in milliseconds.
    static NOW_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn now_ms() -> u64 {
    NOW_MS.with(std::cell::Cell::get)
}

/// `req` from `client` at `at` ms.
fn call_at(s: &mut Service<'_, ModelHw>, client: usize, req: Request, at: u64) -> Reply {
    NOW_MS.with(|t| t.set(at));
    let mut mrs = [0; iommu_protocol::MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle_with(client, label, &mrs[..n], &mut iommu_pd::pci::NoConfigSpaceClocked(now_ms))
}

/// A device is resumed from a storm's quarantine at most once per storm window
/// (`FaultPolicy::resume_rest_ms`): each storm may overflow the event queue every device
/// shares (every client then counts a record lost), and RESUME starts the device's window
/// afresh, so an owner resuming in a loop could overflow it at will. Inside the ration
/// RESUME answers `ResumeRationed` and changes nothing: the device stays quarantined,
/// reaches nothing and may not map. A STOP's RESUME is not rationed, and a device the
/// description lets no one resume is `Denied` as before. (Before, the second RESUME, 99 ms
/// after the first, was `Ok`.)
#[test]
fn a_device_is_resumed_from_a_storm_once_a_window() {
    let faults = iommu_pd::FaultPolicy { resume_rest_ms: 100, ..config().faults };
    let mut s = Service::new(ModelHw::default(), iommu_pd::Config { faults, ..config() }, storage()).unwrap();
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    let storm = |s: &mut Service<'_, ModelHw>, stream: u32, from: u64| {
        for now in from..from + 11 {
            s.record_fault(FaultInput { stream, iova: 0xdead_0000, write: true, kind: 0x10, now });
        }
    };
    let resume = |s: &mut Service<'_, ModelHw>, at: u64| call_at(s, NET, Request::Resume { device: DeviceId(0) }, at);
    storm(&mut s, 0x10, 0);
    assert!(s.hw().reachable(0).is_empty());
    // The first RESUME after a storm: nothing rations it.
    assert_eq!(resume(&mut s, 5), Reply::ok(&[]));
    assert_eq!(s.hw().reachable(0).len(), 1);
    // Storming again at once: quarantined, and not resumed until 100 ms after that RESUME.
    storm(&mut s, 0x10, 20);
    assert_eq!(s.stats().quarantines, 2);
    // Each quarantine counted on its device, through the RESUME between them: what the PD
    // reads to say each one once.
    assert_eq!((s.times_quarantined(0), s.times_quarantined(1)), (Some(2), Some(0)));
    assert_eq!(resume(&mut s, 104), err(ErrorCode::ResumeRationed));
    assert!(s.hw().reachable(0).is_empty(), "a rationed RESUME leaves the device aborting");
    assert_eq!(s.hw().enabled.get(&0), Some(&false));
    assert_eq!(map(&mut s, NET, 0, 0, 0x1000, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    assert_eq!(resume(&mut s, 105), Reply::ok(&[]));
    assert_eq!(s.hw().reachable(0).len(), 1);
    // A STOP's RESUME is not a storm's: not rationed.
    assert_eq!(call_at(&mut s, NET, Request::Stop { device: DeviceId(0) }, 106), Reply::ok(&[0]));
    assert_eq!(resume(&mut s, 106), Reply::ok(&[]));
    // The disk's description lets no one resume it: `Denied`, whatever the clock.
    storm(&mut s, 0x18, 300);
    let disk = Request::Resume { device: DeviceId(1) };
    assert_eq!(call_at(&mut s, BLK, disk, 10_000), err(ErrorCode::Denied));
}

#[test]
fn teardown_blocks_and_unmaps() {
    let mut s = service();
    map(&mut s, NET, 0, 0, 0, 0x2000, None, Rights::READ_WRITE);
    map(&mut s, NET, 0, 3, 0, 0x1000, None, Rights::READ);
    s.client_torn_down(NET).unwrap();
    assert!(s.hw().pages.values().all(|t| t.is_empty()));
    assert!(s.hw().reachable(0).is_empty() && s.hw().reachable(3).is_empty());
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    s.client_ready(NET).unwrap();
    assert!(matches!(map(&mut s, NET, 0, 0, 0, 0x1000, None, Rights::READ), Reply::Ok { .. }));
}

/// The test description with BLK's region (its capability: handle 0, all 64 KiB) in the
/// last 32 KiB below 2^64, and 32 KiB past it.
static TOP: [iommu_pd::RegionConfig; 4] = {
    let mut r = REGIONS;
    r[1] = iommu_pd::RegionConfig { name: "blk-buffers", pa: 0xffff_ffff_ffff_8000, size: 0x1_0000 };
    r
};

/// A capability whose memory runs past 2^64 (no real description has one: the service
/// takes regions as given): MAP takes its pages below 2^64 and refuses a range that would
/// cross it, `OutOfRange`, changing nothing. (Before the capability's window was checked
/// when it is looked up, `MapWindow`, MAP checked only that the range's start did not
/// wrap, and asked the IOMMU to map a physical range that did: the model's page loop
/// overflowed.)
#[test]
fn a_map_whose_memory_would_wrap_is_refused() {
    let cfg = iommu_pd::Config { regions: &TOP, ..config() };
    let mut s = Service::new(ModelHw::default(), cfg, storage()).unwrap();
    let last = Reply::ok(&[IOVA_BASE]);
    assert_eq!(map(&mut s, BLK, 0, 1, 0x7000, 0x1000, None, Rights::READ), last);
    assert_eq!(s.hw().reachable(1).get(&IOVA_BASE), Some(&(0xffff_ffff_ffff_f000, Rights::READ)));
    let before = s.hw().clone();
    for (offset, len) in [(0x7000, 0x2000), (0x6000, 0x3000), (0x8000, 0x1000), (0, 0x1_0000)] {
        let refused = map(&mut s, BLK, 0, 1, offset, len, None, Rights::READ);
        assert_eq!(refused, err(ErrorCode::OutOfRange), "{offset:#x}+{len:#x}");
        assert_eq!(s.hw().pages, before.pages);
    }
    // A fault just past that last page is placed at the region's last byte. (Before
    // 2026-12-08 its address was the mapping's end, 2^64, less one: a test build panicked
    // there, so the IOMMU PD would have, at its device's DMA; a release build's offset was
    // 2^64 - 1 less the region's start.)
    s.record_fault(FaultInput { stream: 0x18, iova: IOVA_BASE + 0x1000, write: false, kind: 0x10, now: 1 });
    let r = *s.faults(BLK).unwrap().pending().next().unwrap();
    assert_eq!((r.region, r.offset, r.near), (1, 0x7fff, 1));
    s.audit().unwrap();
}

/// GRANT of the part of such a capability past 2^64: there is no memory there, and the
/// derived capability's address (the root's plus the offset) would not fit in 64 bits.
/// Refused `OutOfRange`, nothing made. Before (found 2026-12-08), the address was added
/// unchecked: a test build panicked there (a panic in the IOMMU PD fails the SMMU closed,
/// so a client's GRANT took the service down), and a release build, as the images are,
/// wrapped it to physical 0: a receiver mapping the grant reached memory no capability
/// covers. A GRANT of pages below 2^64 is made as before, and maps only those.
#[test]
fn a_grant_past_2_64_is_refused_and_widens_nothing() {
    let cfg = iommu_pd::Config { regions: &TOP, ..config() };
    let mut s = Service::new(ModelHw::default(), cfg, storage()).unwrap();
    let grant = |offset, len| Request::Grant {
        cap: Handle(0),
        to: ClientId(NET as u32),
        offset,
        len,
        rights: Rights::READ,
        devices: 0b1,
    };
    for (offset, len) in [(0x8000, 0x8000), (0x8000, 0x1000), (0xf000, 0x1000)] {
        let reply = call(&mut s, BLK, grant(offset, len));
        if let Reply::Ok { values, .. } = reply {
            // What the receiver's device then reaches through it, for the message.
            map(&mut s, NET, values[1] as u32, 0, 0, len, None, Rights::READ);
        }
        let reached: Vec<_> = s.hw().reachable(0).values().map(|p| p.0).collect();
        assert!(reached.is_empty(), "{offset:#x}+{len:#x}: the nic reaches {reached:x?}");
        assert_eq!(reply, err(ErrorCode::OutOfRange), "{offset:#x}+{len:#x}");
    }
    // Below 2^64: made, and maps its last page there, not one past it.
    let Reply::Ok { values, .. } = call(&mut s, BLK, grant(0x7000, 0x2000)) else { panic!("refused") };
    let h = values[1] as u32;
    assert_eq!(map(&mut s, NET, h, 0, 0, 0x1000, None, Rights::READ), Reply::ok(&[IOVA_BASE]));
    assert_eq!(map(&mut s, NET, h, 0, 0x1000, 0x1000, None, Rights::READ), err(ErrorCode::OutOfRange));
    assert_eq!(s.hw().reachable(0).values().map(|p| p.0).collect::<Vec<_>>(), [0xffff_ffff_ffff_f000]);
    s.audit().unwrap();
}

/// A description's capability whose start (its region's address plus its offset) does not
/// fit in 64 bits is refused at boot, as such a static map is: before (found 2026-12-08)
/// the sum was unchecked, a test build panicked, and a release build's capability started
/// at the wrapped address, physical 0.
#[test]
fn a_capability_starting_past_2_64_is_refused_at_boot() {
    static PAST: [iommu_pd::CapConfig; 4] = {
        let mut c = CAPS;
        c[2].offset = 0x8000;
        c[2].len = 0x8000;
        c
    };
    let cfg = iommu_pd::Config { regions: &TOP, caps: &PAST, ..config() };
    let refused = Service::new(ModelHw::default(), cfg, storage()).err();
    assert_eq!(refused, Some(iommu_pd::ConfigError::BadCap(2)));
}

#[test]
fn static_maps_are_made_at_boot_pinned_and_restored() {
    let cfg = iommu_pd::Config { static_maps: &STATIC_MAPS, ..config() };
    let mut s = Service::new(ModelHw::default(), cfg, storage()).unwrap();
    assert_eq!(s.hw().reachable(0).get(&(IOVA_BASE + 0x8_1000)), Some(&(0x4000_5000, Rights::READ)));
    assert_eq!(unmap(&mut s, NET, 0, &[IOVA_BASE + 0x8_0000]), err(ErrorCode::Denied));
    assert_eq!(call(&mut s, NET, Request::Query), Reply::ok(&[1, 16, 2, 64, 0, 0, 0, 0, 4]));
    // The IOVA range is taken: a client map there overlaps.
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE + 0x8_0000), Rights::READ), err(ErrorCode::Overlap));
    s.client_torn_down(NET).unwrap();
    assert!(s.hw().reachable(0).is_empty());
    s.client_ready(NET).unwrap();
    assert_eq!(s.hw().reachable(0).len(), 2);
    // A static map outside its region is a configuration error.
    let bad = [iommu_pd::StaticMapConfig {
        device: 0,
        region: 0,
        offset: 0xf000,
        len: 0x2000,
        iova: IOVA_BASE,
        rights: Rights::READ,
    }];
    let cfg = iommu_pd::Config { static_maps: &bad, ..config() };
    assert_eq!(Service::new(ModelHw::default(), cfg, storage()).err(), Some(iommu_pd::ConfigError::BadStaticMap(0)));
}

/// A device no client drives, as Microkit describes one (an `io_address_space` with
/// `iomap`s and nothing else): it reaches exactly its static mappings, no client can ask
/// anything for it, and its faults are counted for the IOMMU PD, not routed to a client.
#[test]
fn a_device_no_client_drives_has_its_iomaps_and_nothing_else() {
    let mut devices = DEVICES;
    devices[2].owner = iommu_pd::config::NO_OWNER;
    let devices: &'static [iommu_pd::DeviceConfig] = Box::leak(Box::new(devices));
    let maps = [iommu_pd::StaticMapConfig {
        device: 2,
        region: 3,
        offset: 0,
        len: 0x1000,
        iova: IOVA_BASE + 0x10_0000 - 0x1000,
        rights: Rights::READ_WRITE,
    }];
    let caps: &'static [iommu_pd::CapConfig] = Box::leak(Box::new([CAPS[0], CAPS[1], CAPS[2]]));
    let cfg = iommu_pd::Config { devices, caps, static_maps: &maps, ..config() };
    let mut s = Service::new(ModelHw::default(), cfg, storage()).unwrap();
    let reach = s.hw().reachable(2);
    assert_eq!(reach.len(), 1);
    assert_eq!(reach.get(&(IOVA_BASE + 0xf_f000)), Some(&(0x4030_0000, Rights::READ_WRITE)));
    // Not EVIL's any more, nor anyone's.
    assert_eq!(map(&mut s, EVIL, 0, 2, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert_eq!(map(&mut s, NET, 0, 2, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadDevice));
    let told = s.record_fault(FaultInput { stream: 0x20, iova: 0xdead_0000, write: true, kind: 0x10, now: 0 });
    assert_eq!(told, None);
    assert_eq!(s.stats().unowned_faults, 1);
}

/// A fault on a StreamID no description names, and an event about a stream that is not a
/// translation fault (C_BAD_STREAMID, C_BAD_STE), reach no client, but each is counted and
/// handed back to the IOMMU PD with its count, which it prints at the first and then at
/// powers of two: a flood of them cannot flood the console, and none goes unseen.
#[test]
fn a_fault_no_description_names_is_counted_for_the_iommu_pd_to_print() {
    let mut s = service();
    let unnamed = |now| FaultInput { stream: 0x99, iova: 0xdead_0000, write: true, kind: 0x10, now };
    let routed: Vec<Routed> = (0..9).map(|i| s.route_fault(unnamed(i))).collect();
    assert_eq!(routed[0], Routed::Unnamed { n: 1 });
    assert_eq!(routed[8], Routed::Unnamed { n: 9 });
    let printed: Vec<u64> = routed
        .iter()
        .filter(|r| r.printed())
        .map(|r| match r {
            Routed::Unnamed { n } => *n,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(printed, [1, 2, 4, 8]);
    // An event with no address, on a stream no one names, counts among them too.
    assert_eq!(s.route_stream_event(0x9a), Routed::Unnamed { n: 10 });
    assert_eq!(s.stats().unattributed_faults, 10);
    // The same kind of event on a described device's stream is that device's, and is
    // counted apart, for the IOMMU PD (no client is told: it is not its DMA's address).
    assert_eq!(s.route_stream_event(0x18), Routed::StreamEvent { device: 1, n: 1 });
    assert!(Routed::StreamEvent { device: 1, n: 1 }.printed());
    assert_eq!(s.stats().stream_events, 1);
    // Nothing reached a client's ring.
    for c in [NET, BLK, EVIL] {
        assert_eq!(s.faults(c).map(|r| r.pending().count()), Some(0));
    }
    // A described, driven device's fault still goes to its owner, and is not the PD's to
    // print.
    let to = s.route_fault(FaultInput { stream: 0x10, iova: 0, write: false, kind: 0x10, now: 10 });
    assert_eq!(to, Routed::Client(ClientId(NET as u32)));
    assert!(!to.printed());
}

/// A StreamID is one device's. Two devices that list the same one (as its first StreamID
/// or another) would share the IOMMU's entry for it, and one would translate through the
/// other's address space: the policy is refused before the IOMMU is touched.
#[test]
fn a_stream_two_devices_list_is_refused_before_the_iommu_is_touched() {
    let leak = |d: [iommu_pd::DeviceConfig; 4]| -> &'static [iommu_pd::DeviceConfig] { Box::leak(Box::new(d)) };
    // The disk (device 1) with the NIC's StreamID.
    let mut same_first = DEVICES;
    same_first[1].stream = DEVICES[0].stream;
    // The hostile device (2) lists the disk's StreamID among its others.
    let mut in_extra = DEVICES;
    in_extra[2].extra_streams = &[0x21, 0x18];
    // The second NIC (3) lists its own StreamID again.
    let mut twice = DEVICES;
    twice[3].extra_streams = &[0x28];
    for (devices, stream, first, second) in
        [(leak(same_first), 0x10, 0, 1), (leak(in_extra), 0x18, 1, 2), (leak(twice), 0x28, 3, 3)]
    {
        let cfg = iommu_pd::Config { devices, ..config() };
        // Whatever the IOMMU is asked first would be an `enable`: none may come.
        let hw = ModelHw { fail_next: Some("enable"), ..ModelHw::default() };
        let got = Service::new(hw, cfg, storage()).err();
        assert_eq!(got, Some(iommu_pd::ConfigError::SharedStream { stream, first, second }));
    }
    // Distinct StreamIDs, extra ones included, are accepted and every device enabled.
    let mut distinct = DEVICES;
    distinct[2].extra_streams = &[0x21, 0x22];
    let s = Service::new(ModelHw::default(), iommu_pd::Config { devices: leak(distinct), ..config() }, storage());
    assert_eq!(
        s.map(|s| s.hw().log.clone()).ok(),
        Some(vec!["enable 0".into(), "enable 1".into(), "enable 2".into(), "enable 3".into()])
    );
}

/// A RESUME says which error codes its caller decodes (mr1, `ErrorCode::NEWEST` from
/// `Request::encode` and from C's `iommu_resume`). One without it is from a client built
/// before `ResumeRationed` (28), which would read 28 as `Malformed` (`Reply::decode`): it
/// is answered `Quarantined` inside the ration (the device stays so; RESUME again later),
/// as is one that declares 27, while the ration's effect is the same for all: nothing done.
/// Codes the old client knows go as they are (`Denied`). (Before, every caller got 28.)
#[test]
fn a_client_that_does_not_declare_resume_rationed_is_answered_quarantined() {
    let faults = iommu_pd::FaultPolicy { resume_rest_ms: 100, ..config().faults };
    let mut s = Service::new(ModelHw::default(), iommu_pd::Config { faults, ..config() }, storage()).unwrap();
    let storm = |s: &mut Service<'_, ModelHw>, stream: u32, from: u64| {
        for now in from..from + 11 {
            s.record_fault(FaultInput { stream, iova: 0xdead_0000, write: true, kind: 0x10, now });
        }
    };
    let raw = |s: &mut Service<'_, ModelHw>, client: usize, mrs: &[u64], at: u64| {
        NOW_MS.with(|t| t.set(at));
        s.handle_with(client, iommu_protocol::Op::Resume as u64, mrs, &mut iommu_pd::pci::NoConfigSpaceClocked(now_ms))
    };
    storm(&mut s, 0x10, 0);
    assert_eq!(raw(&mut s, NET, &[0], 5), Reply::ok(&[]), "the first RESUME, undeclared");
    storm(&mut s, 0x10, 20);
    assert_eq!(raw(&mut s, NET, &[0], 50), err(ErrorCode::Quarantined));
    assert_eq!(raw(&mut s, NET, &[0, ErrorCode::ResetRationed as u64], 51), err(ErrorCode::Quarantined));
    assert_eq!(raw(&mut s, NET, &[0, ErrorCode::ResumeRationed as u64], 52), err(ErrorCode::ResumeRationed));
    assert_eq!(call_at(&mut s, NET, Request::Resume { device: DeviceId(0) }, 53), err(ErrorCode::ResumeRationed));
    // Refused every time: nothing done, the device still aborts and may not map.
    assert!(s.hw().reachable(0).is_empty());
    assert_eq!(s.hw().enabled.get(&0), Some(&false));
    assert_eq!(map(&mut s, NET, 0, 0, 0x1000, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    assert_eq!(raw(&mut s, NET, &[0], 105), Reply::ok(&[]), "after the ration, undeclared");
    // Only a RESUME's answer is translated, and only codes newer than the caller knows.
    storm(&mut s, 0x18, 300);
    assert_eq!(raw(&mut s, BLK, &[1], 10_000), err(ErrorCode::Denied));
    assert_eq!(ErrorCode::ResetRationed.as_known_to(26), ErrorCode::Stopped);
    assert_eq!(ErrorCode::Hardware.as_known_to(3), ErrorCode::Hardware);
}

/// The event queue's records in these tests, where a device may fault 10 times a window:
/// a quarter of it (2) is a flood of a device's own beside an overflow (`events_lost`).
const QUEUE: u32 = 8;

/// The NIC's device misses its mapping at `now`, once.
fn nic_fault_at(s: &mut Service<'_, ModelHw>, now: u64) {
    s.record_fault(FaultInput { stream: 0x10, iova: 0xdead_0000, write: true, kind: 0x10, now });
}

/// The service with a page mapped for the NIC's device, which stormed and was resumed:
/// on probation.
fn nic_on_probation() -> Service<'static, ModelHw> {
    let mut s = service();
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    nic_faults(&mut s, 0..11);
    assert_eq!(call_at(&mut s, NET, Request::Resume { device: DeviceId(0) }, 5), Reply::ok(&[]));
    s
}

/// A device resumed from a storm's quarantine is on probation: the next overflow of the
/// event queue every device shares (`events_lost`) that its own records helped fill (a
/// quarter of the queue, in the drain that saw it or the one before) quarantines it
/// again, so each RESUME buys at most one overflow, where its storm allowance (10 faults
/// a window here, 300 in `system.xml`, more than the queue's 128) bought several. An
/// overflow another device's records filled leaves it alone, one fault of its own beside
/// it included; a device that never stormed is not touched by an overflow; and the ration
/// and the rest hold: the quarantined one reaches nothing, may not map, and is resumed
/// again only after its rest.
#[test]
fn an_overflow_quarantines_a_device_resumed_from_a_storm() {
    let faults = iommu_pd::FaultPolicy { resume_rest_ms: 100, ..config().faults };
    let mut s = Service::new(ModelHw::default(), iommu_pd::Config { faults, ..config() }, storage()).unwrap();
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    let resume = |s: &mut Service<'_, ModelHw>, at: u64| call_at(s, NET, Request::Resume { device: DeviceId(0) }, at);
    // An overflow before any storm quarantines nothing.
    s.events_lost(0, QUEUE);
    assert_eq!((s.stats().quarantines, s.hw().reachable(0).len()), (0, 1));
    nic_faults(&mut s, 0..11);
    assert_eq!(s.stats().quarantines, 1);
    assert_eq!(resume(&mut s, 5), Reply::ok(&[]));
    assert_eq!(s.hw().reachable(0).len(), 1);
    // An overflow while it has not faulted since (another device's records lost):
    // left alone.
    s.events_lost(11, QUEUE);
    assert_eq!((s.stats().quarantines, s.hw().reachable(0).len()), (1, 1));
    // One fault, in the drain that sees an overflow: whose records filled the queue is
    // unknown, and one is not a flood; left alone.
    nic_fault_at(&mut s, 12);
    s.events_lost(12, QUEUE);
    assert_eq!((s.stats().quarantines, s.hw().reachable(0).len()), (1, 1));
    // Two faults (a quarter of the queue), far under the limit, then an overflow:
    // quarantined again.
    nic_fault_at(&mut s, 13);
    nic_fault_at(&mut s, 13);
    s.events_lost(13, QUEUE);
    assert_eq!(s.stats().quarantines, 2);
    assert!(s.hw().reachable(0).is_empty());
    assert_eq!(s.hw().enabled.get(&0), Some(&false));
    assert_eq!(map(&mut s, NET, 0, 0, 0x1000, 0x1000, None, Rights::READ), err(ErrorCode::Quarantined));
    // A second overflow counts no second quarantine; the ration holds, then RESUME works.
    s.events_lost(13, QUEUE);
    assert_eq!(s.stats().quarantines, 2);
    assert_eq!(resume(&mut s, 104), err(ErrorCode::ResumeRationed));
    assert_eq!(resume(&mut s, 105), Reply::ok(&[]));
    assert_eq!(s.hw().reachable(0).len(), 1);
    // Every client's ring counted each overflow.
    assert_eq!(s.faults(NET).unwrap().dropped(), 5);
}

/// The SMMU sets the overflow flag when a record finds the queue full; the drain that took
/// that queue's records may have read PROD just before (`Smmu::drain_events_upto`), so
/// the overflow is seen by the next drain, with none of them. The device on probation
/// whose records filled the queue is quarantined at that next drain all the same, and a
/// STOP and RESUME of it between the two drains (by its owner, who sees the records in
/// its ring) does not wipe what it put in the queue. Before, the test was a fault within
/// two storm windows, from the window RESUME starts afresh: the device escaped.
#[test]
fn a_flood_taken_just_before_the_overflow_was_seen_quarantines_its_device_on_probation() {
    let mut s = nic_on_probation();
    // Its flood, a whole queue under its limit, taken by one drain that saw no overflow.
    for _ in 0..QUEUE {
        nic_fault_at(&mut s, 20);
    }
    assert_eq!(s.stats().quarantines, 1);
    // Its owner stops and resumes it; the next drain sees the overflow, and no record.
    assert_eq!(call_at(&mut s, NET, Request::Stop { device: DeviceId(0) }, 21), Reply::ok(&[0]));
    assert_eq!(call_at(&mut s, NET, Request::Resume { device: DeviceId(0) }, 22), Reply::ok(&[]));
    s.events_lost(30, QUEUE);
    assert_eq!(s.stats().quarantines, 2);
    assert!(s.hw().reachable(0).is_empty());
    assert_eq!(s.hw().enabled.get(&0), Some(&false));
}

/// A device quarantined at an overflow it need not have caused (it is on probation) is
/// quarantined without a fault of its own to carry the news: its owner must still be told
/// which device stopped, as a storm's quarantine tells it (`quarantined` in the record).
/// Before, its ring counted only the overflow's lost record, which every client's ring
/// counts, so the owner of a device that maps nothing more learned nothing.
#[test]
fn a_device_quarantined_at_an_overflow_is_named_in_its_owners_ring() {
    use iommu_protocol::faults::{kind, NO_REGION};
    let mut s = nic_on_probation();
    // Faults of its own, far under the limit, then an overflow.
    nic_fault_at(&mut s, 20);
    nic_fault_at(&mut s, 20);
    let seen = s.faults(NET).unwrap().recorded();
    let read = *s.faults(NET).unwrap().pending().last().unwrap();
    let final_record = [read.seq, read.repeats.into(), read.iova_last];
    assert_eq!(call(&mut s, NET, Request::AckFaults { upto: seen - 1 }), Reply::ok(&final_record));
    let evil_before = s.faults(EVIL).unwrap().recorded();
    s.events_lost(20, QUEUE);
    assert_eq!(s.stats().quarantines, 2);
    let told: Vec<_> = s.faults(NET).unwrap().pending().copied().collect();
    assert_eq!(told.len(), 1, "{told:?}");
    let r = told[0];
    assert_eq!((r.seq, r.device, r.quarantined, r.kind), (seen, 0, 1, kind::QUARANTINED_AT_OVERFLOW));
    assert_eq!((r.region, r.iova, r.dropped_before), (NO_REGION, 0, 1));
    // No one else's device was quarantined: no record for them, only the overflow counted.
    assert_eq!(s.faults(EVIL).unwrap().recorded(), evil_before);
    assert_eq!(s.faults(EVIL).unwrap().dropped(), 1);
    // A second overflow quarantines nothing more, and says nothing more.
    s.events_lost(20, QUEUE);
    assert_eq!(s.faults(NET).unwrap().pending().count(), 1);
}

/// Devices on probation are judged together at an overflow (a queue of 8: a quarter is
/// 2), each resumed from a storm: with 3 faults of EVIL's and 1 of the NIC's beside it,
/// EVIL's (the largest) is quarantined, which leaves the NIC's one fault, under a quarter,
/// running; with 1 fault each of the NIC's and EVIL's, neither is a quarter alone, but
/// both are quarantined, equals together (charging the first alone would let EVIL's
/// device have the NIC charged in its place by matching it); the NIC2, faulting not at
/// all, runs in both. Before, each was judged alone: only EVIL's 3 were charged, and
/// nothing in the second case.
#[test]
fn devices_on_probation_are_charged_together_largest_first() {
    for evil_faults in [3, 1] {
        let mut s = service();
        let fault = |s: &mut Service<'_, ModelHw>, stream: u32, now: u64| {
            s.record_fault(FaultInput { stream, iova: 0xdead_0000, write: true, kind: 0x10, now });
        };
        for (stream, client, device) in [(0x10, NET, 0), (0x28, NET, 3), (0x20, EVIL, 2)] {
            for now in 0..11 {
                fault(&mut s, stream, now);
            }
            assert_eq!(call_at(&mut s, client, Request::Resume { device: DeviceId(device) }, 5), Reply::ok(&[]));
        }
        assert_eq!(s.stats().quarantines, 3);
        fault(&mut s, 0x10, 20);
        for _ in 0..evil_faults {
            fault(&mut s, 0x20, 20);
        }
        s.events_lost(20, QUEUE);
        let running = |s: &Service<'_, ModelHw>, client, device| s.running_device_of(client, DeviceId(device)).is_ok();
        let nic_charged = evil_faults == 1;
        assert_eq!(s.stats().quarantines, 4 + u64::from(nic_charged), "EVIL's faults: {evil_faults}");
        assert_eq!(
            (running(&s, NET, 0), running(&s, NET, 3), running(&s, EVIL, 2)),
            (!nic_charged, true, false),
            "EVIL's faults: {evil_faults}"
        );
    }
}

/// Probation is not escaped by a restart: the owner's teardown and return leave its device
/// on probation (`client_ready` rebuilds nothing of the device's storm state), so the next
/// overflow quarantines it again, and the restarted program is told.
#[test]
fn a_restart_does_not_end_probation() {
    use iommu_protocol::faults::kind;
    let mut s = service();
    nic_faults(&mut s, 0..11);
    assert_eq!(call_at(&mut s, NET, Request::Resume { device: DeviceId(0) }, 5), Reply::ok(&[]));
    assert_eq!(s.client_torn_down(NET), Ok(()));
    assert_eq!(s.client_ready(NET), Ok(()));
    assert_eq!(map(&mut s, NET, 0, 0, 0, 0x1000, Some(IOVA_BASE), Rights::READ), Reply::ok(&[IOVA_BASE]));
    nic_fault_at(&mut s, 20);
    nic_fault_at(&mut s, 20);
    s.events_lost(20, QUEUE);
    assert_eq!(s.stats().quarantines, 2);
    assert!(s.hw().reachable(0).is_empty());
    let last = s.faults(NET).unwrap().pending().last().copied().unwrap();
    assert_eq!((last.device, last.kind, last.quarantined), (0, kind::QUARANTINED_AT_OVERFLOW, 1));
}
