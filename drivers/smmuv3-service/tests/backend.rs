//! The IOMMU service on the SMMUv3 driver through `SmmuBackend`, against the host model of
//! the SMMU: requests become page-table entries the model translates through, and
//! revocation leaves no stale translation in the model's TLB.

mod common;

use common::{leak, one_device_config};
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_MRS};
use smmuv3::event::id;
use smmuv3::model::{host_region, host_smmu, Outcome, SmmuModel};
use smmuv3::DmaRegion;
use smmuv3_service::SmmuBackend;

fn call<H: iommu_pd::IommuHw>(s: &mut Service<'_, H>, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(client, label, &mrs[..n])
}

/// The service on the model SMMU: client 0 owns one device, `stream`, with IOVAs from
/// `iova_base`, and holds handle 0, a read-write capability over all of `buf` for it;
/// with `bystander`, a second client that holds nothing.
fn one_device(
    buf: &DmaRegion,
    stream: u32,
    iova_base: u64,
    bystander: bool,
) -> Service<'static, SmmuBackend<SmmuModel>> {
    one_device_sized(buf, stream, iova_base, bystander, 4, 1 << 20)
}

/// `one_device`, with `max_pages` pages for each client and an IOVA window of `iova_size`.
fn one_device_sized(
    buf: &DmaRegion,
    stream: u32,
    iova_base: u64,
    bystander: bool,
    max_pages: u64,
    iova_size: u64,
) -> Service<'static, SmmuBackend<SmmuModel>> {
    let clients = leak([
        ClientConfig { name: "driver", max_mappings: 4, max_pages, max_grants: 0 },
        ClientConfig { name: "bystander", max_mappings: 4, max_pages, max_grants: 0 },
    ]);
    let cfg = one_device_config(buf, &clients[..1 + bystander as usize], stream, iova_base, iova_size);
    let backend = SmmuBackend::new(host_smmu(32), &[stream]).unwrap();
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(2, 1, 4, 8)>::default()));
    Service::new(backend, cfg, tables.storage()).unwrap()
}

/// Client 0 of `one_device` maps the first `len` bytes of its capability for its device,
/// read-write, at `iova` or where the service chooses.
/// One client's one device with StreamIDs `stream`, `stream + 1` and `stream + 2`, its
/// window from 0x1000, one 4 KiB region at `pa`, with `caps` and `static_maps`.
fn three_stream_device(
    stream: u32,
    pa: u64,
    caps: &'static [CapConfig],
    static_maps: &'static [iommu_pd::StaticMapConfig],
) -> Service<'static, SmmuBackend<SmmuModel>> {
    let extra: &'static [u32] = leak([stream + 1, stream + 2]);
    let mut backend = SmmuBackend::new(host_smmu(32), &[stream]).unwrap();
    backend.add_streams(0, extra).unwrap();
    let cfg = Config {
        clients: &[ClientConfig { name: "driver", max_mappings: 4, max_pages: 4, max_grants: 0 }],
        devices: leak([DeviceConfig {
            name: "dev",
            stream,
            extra_streams: extra,
            owner: 0,
            iova_base: 0x1000,
            iova_size: 1 << 20,
            resume_allowed: true,
        }]),
        regions: leak([RegionConfig { name: "buf", pa, size: 4096 }]),
        caps,
        static_maps,
        faults: FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 },
    };
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 8)>::default()));
    Service::new(backend, cfg, tables.storage()).unwrap()
}

fn map_from_start(s: &mut Service<'_, SmmuBackend<SmmuModel>>, len: u64, iova: Option<u64>) -> Reply {
    let map = Request::Map { cap: Handle(0), device: DeviceId(0), offset: 0, len, iova, rights: Rights::READ_WRITE };
    call(s, 0, map)
}

#[test]
fn service_requests_reach_the_smmu_tables() {
    let buf = host_region(0x4000, 0x1000);
    let clients = [
        ClientConfig { name: "net", max_mappings: 8, max_pages: 16, max_grants: 4 },
        ClientConfig { name: "blk", max_mappings: 8, max_pages: 16, max_grants: 0 },
    ];
    let devices = [
        DeviceConfig {
            name: "nic",
            stream: 0x10,
            extra_streams: &[],
            owner: 0,
            iova_base: 0x1000_0000,
            iova_size: 1 << 20,
            resume_allowed: true,
        },
        DeviceConfig {
            name: "disk",
            stream: 0x18,
            extra_streams: &[],
            owner: 1,
            iova_base: 0x2000_0000,
            iova_size: 1 << 20,
            resume_allowed: true,
        },
    ];
    let regions = [RegionConfig { name: "net-buffers", pa: buf.pa.0, size: 0x4000 }];
    let caps = [CapConfig {
        client: 0,
        region: 0,
        offset: 0,
        len: 0x4000,
        rights: Rights::READ_WRITE,
        devices: 0b01,
        grant_to: 0b10,
    }];
    let cfg = Config {
        clients: &clients,
        devices: &devices,
        regions: &regions,
        caps: &caps,
        static_maps: &[],
        faults: FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 },
    };
    let backend = SmmuBackend::new(host_smmu(32), &[0x10, 0x18]).unwrap();
    let mut tables = <iommu_pd::owned_storage!(2, 2, 8, 16)>::default();
    let mut s = Service::new(backend, cfg, tables.storage()).unwrap();

    let r = call(
        &mut s,
        0,
        Request::Map {
            cap: Handle(0),
            device: DeviceId(0),
            offset: 0x1000,
            len: 0x2000,
            iova: None,
            rights: Rights::READ_WRITE,
        },
    );
    assert_eq!(r, Reply::ok(&[0x1000_0000]));
    let model =
        |s: &mut Service<'_, SmmuBackend<SmmuModel>>, sid, iova, w| s.hw_mut().smmu().regs().translate(sid, iova, w);
    assert_eq!(model(&mut s, 0x10, 0x1000_1008, true), Outcome::Ok(buf.pa.0 + 0x2008));
    // The disk has no mapping: its stream is enabled but its tables are empty.
    assert_eq!(model(&mut s, 0x18, 0x1000_0000, false), Outcome::Fault(id::F_TRANSLATION));

    // Grant a page to the disk's driver, read-only; it maps it; the NIC's driver revokes.
    let r = call(
        &mut s,
        0,
        Request::Grant {
            cap: Handle(0),
            to: ClientId(1),
            offset: 0x3000,
            len: 0x1000,
            rights: Rights::READ,
            devices: 0b10,
        },
    );
    let Reply::Ok { values, .. } = r else { panic!("{r:?}") };
    let r = call(
        &mut s,
        1,
        Request::Map {
            cap: Handle(values[1] as u32),
            device: DeviceId(1),
            offset: 0,
            len: 0x1000,
            iova: None,
            rights: Rights::READ,
        },
    );
    assert_eq!(r, Reply::ok(&[0x2000_0000]));
    assert_eq!(model(&mut s, 0x18, 0x2000_0000, false), Outcome::Ok(buf.pa.0 + 0x3000));
    assert_eq!(model(&mut s, 0x18, 0x2000_0000, true), Outcome::Fault(id::F_PERMISSION));
    assert_eq!(call(&mut s, 0, Request::Revoke { grant: Handle(values[0] as u32) }), Reply::ok(&[]));
    // The model had cached the translation; the revoke invalidated it before replying.
    assert_eq!(model(&mut s, 0x18, 0x2000_0000, false), Outcome::Fault(id::F_TRANSLATION));

    // Teardown of the NIC's driver: its stream aborts, its mappings are gone.
    s.client_torn_down(0).unwrap();
    assert_eq!(model(&mut s, 0x10, 0x1000_1008, false), Outcome::Abort);
}

/// The measurement build's bypass switch: the stream goes untranslated and comes back
/// through its domain with its mappings intact (the model caches STEs, so a missing
/// CFGI_STE would show the old entry); a device that may not run is refused first.
#[test]
fn measurement_bypass_and_back() {
    let buf = host_region(0x2000, 0x1000);
    let mut s = one_device(&buf, 0x20, 0x1_0000_0000, true);
    assert_eq!(map_from_start(&mut s, 0x2000, None), Reply::ok(&[0x1_0000_0000]));
    let model =
        |s: &mut Service<'_, SmmuBackend<SmmuModel>>, iova| s.hw_mut().smmu().regs().translate(0x20, iova, true);
    assert_eq!(model(&mut s, 0x1_0000_1000), Outcome::Ok(buf.pa.0 + 0x1000));

    // Only the owner, and only a device that may run.
    assert_eq!(s.running_device_of(1, DeviceId(0)), Err(iommu_protocol::ErrorCode::BadDevice));
    assert_eq!(s.running_device_of(0, DeviceId(1)), Err(iommu_protocol::ErrorCode::BadDevice));
    let d = s.running_device_of(0, DeviceId(0)).unwrap();

    s.hw_mut().set_bypass_for_measurement(d, true).unwrap();
    assert_eq!(model(&mut s, buf.pa.0 + 0x1000), Outcome::Bypass(buf.pa.0 + 0x1000));
    s.hw_mut().set_bypass_for_measurement(d, false).unwrap();
    assert_eq!(model(&mut s, 0x1_0000_1000), Outcome::Ok(buf.pa.0 + 0x1000));
    assert_eq!(model(&mut s, buf.pa.0 + 0x1000), Outcome::Fault(id::F_TRANSLATION));

    // Torn down while in bypass: the stream aborts, and the device may not run.
    s.hw_mut().set_bypass_for_measurement(d, true).unwrap();
    s.client_torn_down(0).unwrap();
    assert_eq!(model(&mut s, buf.pa.0 + 0x1000), Outcome::Abort);
    assert_eq!(s.running_device_of(0, DeviceId(0)), Err(iommu_protocol::ErrorCode::Quarantined));
}

/// The SMMU rejects the invalidation of an unmap (CMD_TLBI_NH_VA, CERROR_ILL): the page
/// is gone from the tables but the model's TLB still holds it. The service keeps the
/// mapping pending and the stream aborting; RESUME finishes the removal with a TLBI by
/// ASID before the stream translates again, so the cached page never comes back.
#[test]
fn a_rejected_invalidation_never_lets_the_cached_page_back() {
    let buf = host_region(0x1000, 0x1000);
    let mut s = one_device(&buf, 0x10, 0x1000_0000, false);
    assert_eq!(map_from_start(&mut s, 0x1000, Some(0x1000_0000)), Reply::ok(&[0x1000_0000]));
    let translate =
        |s: &mut Service<'_, SmmuBackend<SmmuModel>>| s.hw_mut().smmu().regs().translate(0x10, 0x1000_0008, true);
    // The device uses the page, so the model caches its translation.
    assert_eq!(translate(&mut s), Outcome::Ok(buf.pa.0 + 8));

    s.hw_mut().smmu().regs().reject_next(smmuv3::cmd::Opcode::TlbiNhVa as u8);
    let mut iovas = [0; iommu_protocol::MAX_UNMAP_RANGES];
    iovas[0] = 0x1000_0000;
    let unmap = Request::Unmap { device: DeviceId(0), iovas, count: 1 };
    assert_eq!(call(&mut s, 0, unmap), Reply::Err(ErrorCode::Hardware));
    assert_eq!(translate(&mut s), Outcome::Abort, "blocked while the removal is pending");
    assert_eq!(s.pending_removals(0), 1);

    // What used to happen: RESUME re-attached the domain and the cached entry translated.
    assert_eq!(call(&mut s, 0, Request::Resume { device: DeviceId(0) }), Reply::ok(&[]));
    assert_eq!(s.pending_removals(0), 0);
    assert_eq!(translate(&mut s), Outcome::Fault(id::F_TRANSLATION));
}

/// As many devices as the service serves (`iommu_pd::service::MAX_DEVICES`) each get a
/// domain of their own on the SMMU; one more is refused, not half set up. (The driver held
/// 32 domains while the service and `iommu-sdf check` allowed 64: a description with 33
/// devices passed `check` and then stopped the IOMMU PD at boot.)
#[test]
fn every_device_the_service_serves_gets_its_own_domain() {
    let max = iommu_pd::service::MAX_DEVICES;
    assert_eq!(smmuv3_service::MAX_BACKEND_DEVICES, max);
    let streams: Vec<u32> = (0..=max as u32).map(|i| 0x100 + i).collect();
    let backend = SmmuBackend::new(host_smmu(max + 32), &streams[..max]).expect("a domain per device");
    let mut backend = backend;
    // Each translates through its own tables: a page mapped for one is not mapped for its
    // neighbour.
    let page = host_region(4096, 4096);
    use iommu_pd::IommuHw;
    for d in [0, max / 2, max - 2] {
        backend.enable(d).unwrap();
        backend.map(d, 0x1000, page.pa.0, 4096, Rights::READ_WRITE).unwrap();
        assert_eq!(backend.smmu().regs().translate(streams[d], 0x1000, false), Outcome::Ok(page.pa.0));
        backend.enable(d + 1).unwrap();
        assert!(matches!(backend.smmu().regs().translate(streams[d + 1], 0x1000, false), Outcome::Fault(_)));
    }
    assert!(SmmuBackend::new(host_smmu(max + 32), &streams).is_err(), "one device over");
}

/// A device with more than one StreamID: every one translates through the device's
/// domain, every one aborts when the service blocks the device, and a fault on any of them
/// is the device's.
#[test]
fn a_device_with_several_streams_is_one_address_space() {
    let buf = host_region(4096, 4096);
    let cap =
        CapConfig { client: 0, region: 0, offset: 0, len: 4096, rights: Rights::READ_WRITE, devices: 1, grant_to: 0 };
    let mut s = three_stream_device(0x30, buf.pa.0, leak([cap]), &[]);
    let map = Request::Map {
        cap: Handle(0),
        device: DeviceId(0),
        offset: 0,
        len: 4096,
        iova: Some(0x1000),
        rights: Rights::READ_WRITE,
    };
    assert_eq!(call(&mut s, 0, map), Reply::ok(&[0x1000]));
    for sid in [0x30, 0x31, 0x32] {
        let got = s.hw_mut().smmu().regs().translate(sid, 0x1000, true);
        assert_eq!(got, Outcome::Ok(buf.pa.0), "{sid:#x}");
    }
    // A fault on an extra stream is the device's, for its owner.
    let f = iommu_pd::FaultInput { stream: 0x32, iova: 0x9000, write: true, kind: 0x10, now: 0 };
    assert_eq!(s.record_fault(f), Some(ClientId(0)));
    s.client_torn_down(0).unwrap();
    for sid in [0x30, 0x31, 0x32] {
        assert_eq!(s.hw_mut().smmu().regs().translate(sid, 0x1000, true), Outcome::Abort, "{sid:#x}");
    }
}

/// Blocking a device whose first stream's entry the SMMU will not confirm still detaches
/// its other streams: the service hears the failure, and the rest reach nothing.
#[test]
fn a_failed_block_of_one_stream_still_blocks_the_others() {
    static EXTRA: [u32; 2] = [0x41, 0x42];
    let buf = host_region(4096, 4096);
    let mut backend = SmmuBackend::new(host_smmu(32), &[0x40]).unwrap();
    backend.add_streams(0, &EXTRA).unwrap();
    use iommu_pd::IommuHw;
    backend.enable(0).unwrap();
    backend.map(0, 0x1000, buf.pa.0, 4096, Rights::READ_WRITE).unwrap();
    for sid in [0x40, 0x41, 0x42] {
        assert_eq!(backend.smmu().regs().translate(sid, 0x1000, false), Outcome::Ok(buf.pa.0), "{sid:#x}");
    }
    // The first CMD_CFGI_STE (the first stream's) is rejected.
    backend.smmu().regs().reject_next(smmuv3::cmd::Opcode::CfgiSte as u8);
    assert!(backend.block(0).is_err());
    for sid in [0x41, 0x42] {
        assert_eq!(backend.smmu().regs().translate(sid, 0x1000, false), Outcome::Abort, "{sid:#x}");
    }
}

/// More StreamIDs than the backend attaches, or for a device it does not have, are
/// refused before any is taken: the device's first stream keeps its one domain.
#[test]
fn extra_streams_past_the_backend_are_refused_whole() {
    let mut backend = SmmuBackend::new(host_smmu(8), &[0x50]).unwrap();
    assert!(backend.add_streams(1, &[0x51]).is_err(), "no device 1");
    let too_many: Vec<u32> = (0..=smmuv3_service::MAX_EXTRA_STREAMS as u32).map(|i| 0x100 + i).collect();
    assert_eq!(backend.add_streams(0, &too_many).err(), Some(smmuv3::Error::TooManyStreams));
    // Nothing was taken: the whole allowance is still there.
    backend.add_streams(0, &too_many[..smmuv3_service::MAX_EXTRA_STREAMS]).unwrap();
    use iommu_pd::IommuHw;
    backend.enable(0).unwrap();
    backend.block(0).unwrap();
}

/// A StreamID is one device's, whoever asks the backend (the service refuses a policy
/// that shares one; this is the backend's own check): a device listed twice, or an extra
/// StreamID some device already has, is refused, and no device ends up translating
/// through another's domain.
#[test]
fn a_stream_of_two_devices_is_refused_by_the_backend() {
    let stream_in_use = |s| Some(smmuv3::Error::StreamInUse(smmuv3::StreamId(s)));
    assert_eq!(SmmuBackend::new(host_smmu(8), &[0x60, 0x61, 0x60]).err(), stream_in_use(0x60));
    let buf = host_region(4096, 4096);
    let mut backend = SmmuBackend::new(host_smmu(8), &[0x60, 0x61]).unwrap();
    // Device 1's own StreamID for device 0, device 0's for device 1, one listed twice.
    assert_eq!(backend.add_streams(0, &[0x62, 0x61]).err(), stream_in_use(0x61));
    assert_eq!(backend.add_streams(1, &[0x60]).err(), stream_in_use(0x60));
    assert_eq!(backend.add_streams(0, &[0x63, 0x63]).err(), stream_in_use(0x63));
    // An extra StreamID of device 1 is not device 0's too.
    backend.add_streams(1, &[0x64]).unwrap();
    assert_eq!(backend.add_streams(0, &[0x64]).err(), stream_in_use(0x64));
    use iommu_pd::IommuHw;
    backend.enable(0).unwrap();
    backend.map(0, 0x1000, buf.pa.0, 4096, Rights::READ_WRITE).unwrap();
    assert_eq!(backend.smmu().regs().translate(0x60, 0x1000, true), Outcome::Ok(buf.pa.0));
    // Device 1's streams (and 0x62, 0x63, refused with them) reach nothing of device 0's.
    for sid in [0x61, 0x62, 0x63, 0x64] {
        assert_eq!(backend.smmu().regs().translate(sid, 0x1000, true), Outcome::Abort, "{sid:#x}");
    }
}

/// Enabling a device never moves a stream out of another domain: if something put one
/// of its StreamIDs in another device's domain, enable is refused before any entry is
/// written, and the stream stays where it was.
#[test]
fn enable_does_not_take_a_stream_from_another_domain() {
    use iommu_pd::IommuHw;
    use smmuv3::StreamId;
    let buf = host_region(4096, 4096);
    let mut backend = SmmuBackend::new(host_smmu(8), &[0x70, 0x71]).unwrap();
    backend.enable(0).unwrap();
    backend.map(0, 0x1000, buf.pa.0, 4096, Rights::READ_WRITE).unwrap();
    // Device 1's StreamID attached to device 0's domain behind the backend's back.
    let d0 = backend.smmu().stream_domain(StreamId(0x70)).unwrap();
    backend.smmu().attach(StreamId(0x71), d0).unwrap();
    let ste = backend.smmu().ste(StreamId(0x71)).unwrap();
    assert!(backend.enable(1).is_err());
    assert_eq!(backend.smmu().stream_domain(StreamId(0x71)), Some(d0));
    assert_eq!(backend.smmu().ste(StreamId(0x71)).unwrap(), ste, "no entry written");
    // Device 1's own stream again: it may be enabled.
    backend.smmu().detach(StreamId(0x71)).unwrap();
    backend.enable(1).unwrap();
    assert_eq!(backend.smmu().regs().translate(0x71, 0x1000, true), Outcome::Fault(id::F_TRANSLATION));
}

/// Post `req` on `q` as entry `tag`.
fn post(q: &iommu_protocol::queue::Queue<'_>, tag: u64, req: Request) {
    let mut mrs = [0; MAX_MRS];
    let (label, _) = req.encode(&mut mrs);
    assert!(q.post(label, tag, [mrs[0], mrs[1], mrs[2], mrs[3]]), "the request ring has room");
}

/// Client 0 of `one_device` maps `len` bytes of its capability from `offset` at `iova`.
fn map_at(offset: u64, len: u64, iova: u64) -> Request {
    Request::Map { cap: Handle(0), device: DeviceId(0), offset, len, iova: Some(iova), rights: Rights::READ_WRITE }
}

/// Client 0 of `one_device` unmaps its mapping at `iova`.
fn unmap_at(iova: u64) -> Request {
    let mut iovas = [0; iommu_protocol::MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(0), iovas, count: 1 }
}

/// On this backend the service leaves a MAP's overlap check to the driver, which walks the
/// whole range before it writes anything (`IommuHw::CHECKS_RANGE_FREE`): a MAP over a
/// mapped page, whole or in part, by call or through the queue, is refused `Overlap` and
/// changes nothing (the tables, the books, the usage); the page next to it still maps.
#[test]
fn a_map_over_a_mapped_page_is_refused_by_the_drivers_check() {
    use iommu_protocol::queue::OwnedQueue;
    let buf = host_region(0x4000, 0x1000);
    let mut s = one_device(&buf, 0x10, 0x1000_0000, false);
    assert_eq!(map_from_start(&mut s, 0x1000, Some(0x1000_1000)), Reply::ok(&[0x1000_1000]));
    let translate =
        |s: &mut Service<'_, SmmuBackend<SmmuModel>>, iova| s.hw_mut().smmu().regs().translate(0x10, iova, false);
    let query = |s: &mut Service<'_, SmmuBackend<SmmuModel>>| call(s, 0, Request::Query);
    let before = query(&mut s);
    // The same page, then two pages whose second is the mapped one, then two whose first is.
    for (iova, len) in [(0x1000_1000, 0x1000), (0x1000_0000, 0x2000), (0x1000_1000, 0x2000)] {
        assert_eq!(map_from_start(&mut s, len, Some(iova)), Reply::Err(ErrorCode::Overlap), "{iova:#x} + {len:#x}");
        assert_eq!(query(&mut s), before, "the usage is as it was");
        assert_eq!(translate(&mut s, 0x1000_0000), Outcome::Fault(id::F_TRANSLATION), "nothing written below it");
        assert_eq!(translate(&mut s, 0x1000_2000), Outcome::Fault(id::F_TRANSLATION), "nor above it");
        assert_eq!(translate(&mut s, 0x1000_1000), Outcome::Ok(buf.pa.0), "the mapping is the first one");
    }
    // Through the queue: an entry over the mapping is refused, the one after it maps.
    let region = Box::leak(Box::<OwnedQueue<4>>::default());
    let q = region.queue().unwrap();
    let map = |iova| Request::Map {
        cap: Handle(0),
        device: DeviceId(0),
        offset: 0x1000,
        len: 0x1000,
        iova: Some(iova),
        rights: Rights::READ_WRITE,
    };
    for (tag, iova) in [(1, 0x1000_1000), (2, 0x1000_2000)] {
        post(&q, tag, map(iova));
    }
    assert_eq!(s.serve_queue(0, &q), 2);
    assert_eq!(q.pop_completion(), Some((1, ErrorCode::Overlap as u64, 0)));
    assert_eq!(q.pop_completion(), Some((2, 0, 0x1000_2000)));
    assert_eq!(translate(&mut s, 0x1000_1000), Outcome::Ok(buf.pa.0));
    assert_eq!(translate(&mut s, 0x1000_2000), Outcome::Ok(buf.pa.0 + 0x1000));
}

/// Where the driver's tables and the service's index disagree, the driver's range check
/// must not decide: an UNMAP whose invalidation the SMMU rejected has cleared the page
/// from the tables but keeps it in the index, pending. A MAP over it, or anywhere on the
/// device, answers `RemovalPending` and maps nothing (the tables' "free" is not the
/// truth), the usage is what it was, and once RESUME confirmed the removal the IOVA maps.
#[test]
fn a_map_over_an_unconfirmed_removal_is_refused_though_the_tables_are_free() {
    let buf = host_region(0x4000, 0x1000);
    let mut s = one_device(&buf, 0x10, 0x1000_0000, false);
    let translate =
        |s: &mut Service<'_, SmmuBackend<SmmuModel>>, iova| s.hw_mut().smmu().regs().translate(0x10, iova, false);
    assert_eq!(call(&mut s, 0, map_at(0, 0x1000, 0x1000_0000)), Reply::ok(&[0x1000_0000]));
    s.hw_mut().smmu().regs().reject_next(smmuv3::cmd::Opcode::TlbiNhVa as u8);
    assert_eq!(call(&mut s, 0, unmap_at(0x1000_0000)), Reply::Err(ErrorCode::Hardware));
    let pending = call(&mut s, 0, Request::Query);
    for (offset, iova) in [(0, 0x1000_0000), (0x1000, 0x1000_0000), (0x1000, 0x1000_1000)] {
        assert_eq!(
            call(&mut s, 0, map_at(offset, 0x1000, iova)),
            Reply::Err(ErrorCode::RemovalPending),
            "{offset:#x} at {iova:#x}"
        );
        assert_eq!(call(&mut s, 0, Request::Query), pending, "the usage is as it was");
    }
    assert_eq!(s.pending_removals(0), 1);
    assert_eq!(call(&mut s, 0, Request::Resume { device: DeviceId(0) }), Reply::ok(&[]));
    assert_eq!(translate(&mut s, 0x1000_0000), Outcome::Fault(id::F_TRANSLATION), "the removal is confirmed");
    assert_eq!(call(&mut s, 0, map_at(0x1000, 0x1000, 0x1000_0000)), Reply::ok(&[0x1000_0000]));
    assert_eq!(translate(&mut s, 0x1000_0000), Outcome::Ok(buf.pa.0 + 0x1000));
}

/// Through the queue, an UNMAP is taken out of the tables before its sync: the driver
/// then finds its page free. A MAP after it in the same batch over that page and a page
/// still mapped answers `Overlap`, as the calls in order would, maps nothing, and the
/// usage counts the removal once; when the sync is rejected instead, the MAP answers
/// `RemovalPending` (as the calls would: the UNMAP call fails first) and nothing lands on
/// the page whose invalidation was not confirmed.
#[test]
fn a_queued_map_over_a_queued_removal_answers_as_the_calls_would() {
    use iommu_protocol::queue::OwnedQueue;
    for rejected in [false, true] {
        let buf = host_region(0x4000, 0x1000);
        let mut s = one_device(&buf, 0x10, 0x1000_0000, false);
        let translate =
            |s: &mut Service<'_, SmmuBackend<SmmuModel>>, iova| s.hw_mut().smmu().regs().translate(0x10, iova, false);
        assert_eq!(call(&mut s, 0, map_at(0, 0x1000, 0x1000_0000)), Reply::ok(&[0x1000_0000]));
        assert_eq!(call(&mut s, 0, map_at(0x1000, 0x1000, 0x1000_1000)), Reply::ok(&[0x1000_1000]));
        let region = Box::leak(Box::<OwnedQueue<4>>::default());
        let q = region.queue().unwrap();
        post(&q, 1, unmap_at(0x1000_0000));
        post(&q, 2, map_at(0x2000, 0x2000, 0x1000_0000));
        post(&q, 3, map_at(0x2000, 0x1000, 0x1000_0000));
        if rejected {
            s.hw_mut().smmu().regs().reject_next(smmuv3::cmd::Opcode::TlbiNhVa as u8);
        }
        assert_eq!(s.serve_queue(0, &q), 3);
        if rejected {
            assert_eq!(q.pop_completion(), Some((1, ErrorCode::Hardware as u64, 0)));
            assert_eq!(q.pop_completion(), Some((2, ErrorCode::RemovalPending as u64, 0)));
            assert_eq!(q.pop_completion(), Some((3, ErrorCode::RemovalPending as u64, 0)));
            assert_eq!(s.pending_removals(0), 1);
            assert_eq!(translate(&mut s, 0x1000_0000), Outcome::Abort, "blocked, nothing mapped over it");
            assert_eq!(call(&mut s, 0, Request::Resume { device: DeviceId(0) }), Reply::ok(&[]));
            assert_eq!(translate(&mut s, 0x1000_0000), Outcome::Fault(id::F_TRANSLATION));
        } else {
            assert_eq!(q.pop_completion(), Some((1, 0, 0)));
            assert_eq!(q.pop_completion(), Some((2, ErrorCode::Overlap as u64, 0)));
            assert_eq!(q.pop_completion(), Some((3, 0, 0x1000_0000)));
            assert_eq!(translate(&mut s, 0x1000_0000), Outcome::Ok(buf.pa.0 + 0x2000));
        }
        assert_eq!(translate(&mut s, 0x1000_1000), Outcome::Ok(buf.pa.0 + 0x1000), "the other mapping stays");
        // The usage is that of a service that made only the mappings left (one page each).
        let mut twin = one_device(&buf, 0x11, 0x1000_0000, false);
        assert_eq!(call(&mut twin, 0, map_at(0x1000, 0x1000, 0x1000_1000)), Reply::ok(&[0x1000_1000]));
        if !rejected {
            assert_eq!(call(&mut twin, 0, map_at(0x2000, 0x1000, 0x1000_0000)), Reply::ok(&[0x1000_0000]));
        }
        assert_eq!(call(&mut s, 0, Request::Query), call(&mut twin, 0, Request::Query), "rejected: {rejected}");
    }
}

/// A 2 MiB mapping is one block entry in the driver's tables, not 512 pages: the driver's
/// range check must find the block above a page's level. A page inside it, and two pages
/// across its end, are refused `Overlap` with nothing written and the usage as it was;
/// the page after the block maps.
#[test]
fn a_map_inside_a_block_is_refused_by_the_drivers_check() {
    const BLOCK: u64 = 2 << 20;
    let buf = host_region(2 * BLOCK as usize, BLOCK as usize);
    let base = 0x4000_0000;
    let mut s = one_device_sized(&buf, 0x10, base, false, 2 * 512, 2 * BLOCK);
    assert_eq!(call(&mut s, 0, map_at(0, BLOCK, base)), Reply::ok(&[base]));
    let dom = s.hw_mut().domain_of(0).unwrap();
    let leaf = s.hw_mut().smmu().translate(dom, smmuv3::Iova(base + 0x1000)).unwrap();
    assert_eq!(leaf.map(|l| l.size()), Some(BLOCK), "one block, not pages");
    let translate =
        |s: &mut Service<'_, SmmuBackend<SmmuModel>>, iova| s.hw_mut().smmu().regs().translate(0x10, iova, false);
    let before = call(&mut s, 0, Request::Query);
    for (iova, len) in [(base + 0x1000, 0x1000), (base + BLOCK - 0x1000, 0x2000)] {
        assert_eq!(call(&mut s, 0, map_at(BLOCK, len, iova)), Reply::Err(ErrorCode::Overlap), "{iova:#x} + {len:#x}");
        assert_eq!(call(&mut s, 0, Request::Query), before, "the usage is as it was");
        assert_eq!(translate(&mut s, base + BLOCK), Outcome::Fault(id::F_TRANSLATION), "nothing past the block");
        assert_eq!(translate(&mut s, iova), Outcome::Ok(buf.pa.0 + (iova - base)), "the block's page");
    }
    assert_eq!(call(&mut s, 0, map_at(BLOCK, 0x1000, base + BLOCK)), Reply::ok(&[base + BLOCK]));
    assert_eq!(translate(&mut s, base + BLOCK), Outcome::Ok(buf.pa.0 + BLOCK));
}

/// A write-only MAP (which stage-1 descriptors cannot express, so the backend refuses it
/// `Hardware`) over a mapped page answers `Overlap`, as it did while the service searched
/// its index first: the overlap is found before the rights the driver cannot express.
#[test]
fn a_write_only_map_over_a_mapped_page_is_still_an_overlap() {
    let buf = host_region(0x4000, 0x1000);
    let mut s = one_device(&buf, 0x10, 0x1000_0000, false);
    assert_eq!(call(&mut s, 0, map_at(0, 0x1000, 0x1000_1000)), Reply::ok(&[0x1000_1000]));
    let write_only = |iova, len| Request::Map {
        cap: Handle(0),
        device: DeviceId(0),
        offset: 0x1000,
        len,
        iova: Some(iova),
        rights: Rights::WRITE,
    };
    let before = call(&mut s, 0, Request::Query);
    assert_eq!(call(&mut s, 0, write_only(0x1000_0000, 0x2000)), Reply::Err(ErrorCode::Overlap));
    assert_eq!(
        call(&mut s, 0, write_only(0x1000_2000, 0x1000)),
        Reply::Err(ErrorCode::Hardware),
        "free: refused for its rights"
    );
    assert_eq!(call(&mut s, 0, Request::Query), before);
    let translate = s.hw_mut().smmu().regs().translate(0x10, 0x1000_0000, true);
    assert_eq!(translate, Outcome::Fault(id::F_TRANSLATION), "nothing written");
}

/// On an SMMU that has failed (SMMU_GERROR.SFM_ERR: `Smmu::failure`), the driver refuses
/// every map before it walks the range, so its range check never runs: a MAP over a
/// mapping, whole or in part, still answers `Overlap` (the service searches its index when
/// the driver refuses), by call and through the queue, as on an IOMMU that does not check;
/// a MAP over free IOVAs answers `Hardware`; nothing changes (the usage, the books).
#[test]
fn on_a_failed_smmu_a_map_over_a_mapping_is_still_an_overlap() {
    use iommu_protocol::queue::OwnedQueue;
    let buf = host_region(0x4000, 0x1000);
    let mut s = one_device(&buf, 0x10, 0x1000_0000, false);
    assert_eq!(call(&mut s, 0, map_at(0, 0x1000, 0x1000_1000)), Reply::ok(&[0x1000_1000]));
    s.hw_mut().smmu().regs().enter_service_failure();
    assert_eq!(s.hw_mut().smmu().check_global_errors().map(|_| ()), Err(smmuv3::Error::ServiceFailure));
    assert_eq!(s.hw_mut().smmu().failure(), Some(Ok(())), "failed closed");
    let before = call(&mut s, 0, Request::Query);
    for (iova, len) in [(0x1000_1000, 0x1000), (0x1000_0000, 0x2000), (0x1000_1000, 0x2000)] {
        assert_eq!(call(&mut s, 0, map_at(0x1000, len, iova)), Reply::Err(ErrorCode::Overlap), "{iova:#x} + {len:#x}");
    }
    assert_eq!(call(&mut s, 0, map_at(0x1000, 0x1000, 0x1000_3000)), Reply::Err(ErrorCode::Hardware), "free IOVAs");
    assert_eq!(call(&mut s, 0, Request::Query), before, "the usage is as it was");
    // Through the queue: the same answers, entry by entry.
    let region = Box::leak(Box::<OwnedQueue<4>>::default());
    let q = region.queue().unwrap();
    post(&q, 1, map_at(0x1000, 0x2000, 0x1000_0000));
    post(&q, 2, map_at(0x1000, 0x1000, 0x1000_3000));
    post(&q, 3, map_at(0x1000, 0x1000, 0x1000_1000));
    assert_eq!(s.serve_queue(0, &q), 3);
    assert_eq!(q.pop_completion(), Some((1, ErrorCode::Overlap as u64, 0)));
    assert_eq!(q.pop_completion(), Some((2, ErrorCode::Hardware as u64, 0)));
    assert_eq!(q.pop_completion(), Some((3, ErrorCode::Overlap as u64, 0)));
    assert_eq!(call(&mut s, 0, Request::Query), before, "the usage is as it was");
}

/// An SMMU that stops consuming commands without reporting SFM_ERR: the UNMAP whose
/// CMD_SYNC times out answers `Hardware`, and the block of the device its unconfirmed
/// removal calls for times out too, with no sync completed between them; the driver then
/// fails the SMMU closed, within the request that found it. In the model's view every
/// stream aborts (GBPA.ABORT set, SMMUEN off, acknowledged), the page whose removal the
/// TLB still held included, and the device's STE reads abort; later MAPs and RESUMEs are
/// refused (`Hardware`), and the SMMU is not touched again.
#[test]
fn an_smmu_that_stops_answering_fails_closed_within_the_request_that_found_it() {
    const GBPA_ABORT: u64 = 1 << 20;
    const SMMUEN: u64 = 1;
    let buf = host_region(0x4000, 0x1000);
    let mut s = one_device(&buf, 0x10, 0x1000_0000, true);
    assert_eq!(call(&mut s, 0, map_at(0, 0x1000, 0x1000_0000)), Reply::ok(&[0x1000_0000]));
    assert_eq!(call(&mut s, 0, map_at(0x1000, 0x1000, 0x1000_1000)), Reply::ok(&[0x1000_1000]));
    let m = s.hw_mut().smmu().regs();
    assert_eq!(m.translate(0x10, 0x1000_0000, true), Outcome::Ok(buf.pa.0));
    m.set_stuck(true);
    assert_eq!(call(&mut s, 0, unmap_at(0x1000_0000)), Reply::Err(ErrorCode::Hardware));
    let smmu = s.hw_mut().smmu();
    assert_eq!(smmu.failure(), Some(Ok(())), "failed closed");
    assert!(smmu.unanswered());
    assert_eq!(smmu.ste(smmuv3::StreamId(0x10)).map(|e| e.config()), Ok(smmuv3::ste::SteConfig::Abort));
    let m = smmu.regs();
    assert_ne!(m.reg(smmuv3::mmio::reg::GBPA) & GBPA_ABORT, 0, "GBPA.ABORT");
    assert_eq!(m.reg(smmuv3::mmio::reg::CR0) & SMMUEN, 0, "SMMUEN");
    assert_eq!(m.reg(smmuv3::mmio::reg::CR0ACK) & SMMUEN, 0, "CR0ACK.SMMUEN");
    for (sid, iova) in [(0x10, 0x1000_0000), (0x10, 0x1000_1000), (0x11, 0x1000_0000)] {
        assert_eq!(m.translate(sid, iova, true), Outcome::Abort, "stream {sid:#x} at {iova:#x}");
    }
    let writes = m.register_writes().len();
    // The device is blocked for its unconfirmed removal: MAP answers that; UNMAP and
    // RESUME, which retry the removal first, hear the driver's refusal.
    assert_eq!(call(&mut s, 0, map_at(0x2000, 0x1000, 0x1000_2000)), Reply::Err(ErrorCode::RemovalPending));
    assert_eq!(call(&mut s, 0, unmap_at(0x1000_1000)), Reply::Err(ErrorCode::Hardware));
    assert_eq!(call(&mut s, 0, Request::Resume { device: DeviceId(0) }), Reply::Err(ErrorCode::Hardware));
    assert_eq!(s.hw_mut().smmu().regs().register_writes().len(), writes, "the SMMU was touched after it failed");
    assert_eq!(s.hw_mut().smmu().regs().translate(0x10, 0x1000_1000, true), Outcome::Abort);
}

/// RESUME of a stopped device whose enable the SMMU does not finish (its first stream's
/// CMD_CFGI_STE rejected, the others attached): the device is still stopped, so every
/// one of its streams must abort, though RESUME made its static mapping first. (Before,
/// the streams that did attach stayed attached: the stopped device reached its static
/// page, and nothing blocked it again.)
#[test]
fn a_resume_whose_enable_fails_part_way_leaves_every_stream_aborting() {
    let buf = host_region(4096, 4096);
    let static_map = iommu_pd::StaticMapConfig {
        device: 0,
        region: 0,
        offset: 0,
        len: 4096,
        iova: 0x1000,
        rights: Rights::READ_WRITE,
    };
    let mut s = three_stream_device(0x50, buf.pa.0, &[], leak([static_map]));
    let reach =
        |s: &mut Service<'_, SmmuBackend<SmmuModel>>, sid: u32| s.hw_mut().smmu().regs().translate(sid, 0x1000, true);
    for sid in [0x50, 0x51, 0x52] {
        assert_eq!(reach(&mut s, sid), Outcome::Ok(buf.pa.0), "{sid:#x}: the static page, at start");
    }
    assert_eq!(call(&mut s, 0, Request::Stop { device: DeviceId(0) }), Reply::ok(&[0]));
    s.hw_mut().smmu().regs().reject_next(smmuv3::cmd::Opcode::CfgiSte as u8);
    assert_eq!(call(&mut s, 0, Request::Resume { device: DeviceId(0) }), Reply::Err(ErrorCode::Hardware));
    for sid in [0x50, 0x51, 0x52] {
        assert_eq!(reach(&mut s, sid), Outcome::Abort, "{sid:#x}: stopped still");
    }
    // The next RESUME, with the SMMU obeying, lets it run.
    assert_eq!(call(&mut s, 0, Request::Resume { device: DeviceId(0) }), Reply::ok(&[]));
    for sid in [0x50, 0x51, 0x52] {
        assert_eq!(reach(&mut s, sid), Outcome::Ok(buf.pa.0), "{sid:#x}: resumed");
    }
}

/// One client, two devices, one queued batch: UNMAPs of device 1's page and of device 0's
/// pages at 0x1000_0000 and 0x1000_2000, then a MAP on device 0 at 0x1000_1000, between
/// them (over no removal in flight, so the service does not sync first; the driver does,
/// the MAP lying inside the span of device 0's deferred unmaps). The SMMU rejects device
/// 1's TLBI at that sync. Device 1 still translates its page, so its UNMAP must not be
/// answered `Ok`: the batch's removals answer `Hardware`, pending, their devices blocked.
/// (Before, the driver's sync inside the MAP swallowed the failure and the batch's own
/// sync said `Ok`: device 1's completion said its page was gone while the SMMU still
/// translated it.)
#[test]
fn a_queued_unmap_is_not_confirmed_by_a_sync_that_failed_inside_a_map() {
    use iommu_protocol::queue::OwnedQueue;
    let buf = host_region(0x4000, 0x1000);
    let device = |name, stream| DeviceConfig {
        name,
        stream,
        extra_streams: &[],
        owner: 0,
        iova_base: 0x1000_0000,
        iova_size: 1 << 20,
        resume_allowed: true,
    };
    let cfg = Config {
        clients: &[ClientConfig { name: "driver", max_mappings: 8, max_pages: 8, max_grants: 0 }],
        devices: leak([device("dev0", 0x60), device("dev1", 0x61)]),
        regions: leak([RegionConfig { name: "buf", pa: buf.pa.0, size: 0x4000 }]),
        caps: leak([CapConfig {
            client: 0,
            region: 0,
            offset: 0,
            len: 0x4000,
            rights: Rights::READ_WRITE,
            devices: 0b11,
            grant_to: 0,
        }]),
        static_maps: &[],
        faults: FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 },
    };
    let backend = SmmuBackend::new(host_smmu(32), &[0x60, 0x61]).unwrap();
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 2, 4, 8)>::default()));
    let mut s = Service::new(backend, cfg, tables.storage()).unwrap();
    let map = |dev: u32, offset, iova| Request::Map {
        cap: Handle(0),
        device: DeviceId(dev),
        offset,
        len: 0x1000,
        iova: Some(iova),
        rights: Rights::READ_WRITE,
    };
    let unmap = |dev: u32, iova| {
        let mut iovas = [0; iommu_protocol::MAX_UNMAP_RANGES];
        iovas[0] = iova;
        Request::Unmap { device: DeviceId(dev), iovas, count: 1 }
    };
    let translate =
        |s: &mut Service<'_, SmmuBackend<SmmuModel>>, sid, iova| s.hw_mut().smmu().regs().translate(sid, iova, false);
    assert_eq!(call(&mut s, 0, map(1, 0, 0x1000_0000)), Reply::ok(&[0x1000_0000]));
    assert_eq!(call(&mut s, 0, map(0, 0x1000, 0x1000_0000)), Reply::ok(&[0x1000_0000]));
    assert_eq!(call(&mut s, 0, map(0, 0x2000, 0x1000_2000)), Reply::ok(&[0x1000_2000]));
    // The devices use their pages: the SMMU caches the translations.
    assert_eq!(translate(&mut s, 0x61, 0x1000_0000), Outcome::Ok(buf.pa.0));
    assert_eq!(translate(&mut s, 0x60, 0x1000_0000), Outcome::Ok(buf.pa.0 + 0x1000));
    let region = Box::leak(Box::<OwnedQueue<8>>::default());
    let q = region.queue().unwrap();
    post(&q, 1, unmap(1, 0x1000_0000));
    post(&q, 2, unmap(0, 0x1000_0000));
    post(&q, 3, unmap(0, 0x1000_2000));
    post(&q, 4, map(0, 0x3000, 0x1000_1000));
    s.hw_mut().smmu().regs().reject_next(smmuv3::cmd::Opcode::TlbiNhVa as u8);
    assert_eq!(s.serve_queue(0, &q), 4);
    let done: Vec<_> = std::iter::from_fn(|| q.pop_completion()).collect();
    assert_eq!(done[0], (1, ErrorCode::Hardware as u64, 0), "device 1's UNMAP: {done:x?}");
    assert_eq!(translate(&mut s, 0x61, 0x1000_0000), Outcome::Abort, "device 1 is blocked");
    assert_eq!(s.pending_removals(0), 3);
}

/// A service that fails to start after it enabled some devices (here the second device's
/// static mapping finds the table pool empty) leaves none translating: every device it
/// enabled is blocked again before `Service::new` returns its error. On an SMMU without
/// GBPA (QEMU 7.2's), the IOMMU PD's `fail_closed` then leaves the SMMU enabled (disabled,
/// it would pass everything), so this is what keeps the first device's static mapping
/// from reaching memory: read in the model, each device's STE aborts, and so does its DMA.
#[test]
fn a_service_that_fails_to_start_leaves_no_device_translating() {
    use iommu_pd::config::NO_OWNER;
    use iommu_pd::{ConfigError, StaticMapConfig};
    use smmuv3::model::{host_config, host_memory};
    let buf = host_region(0x4000, 0x1000);
    let model: &'static SmmuModel = Box::leak(Box::new(SmmuModel::host()));
    model.without_gbpa();
    // SAFETY: fresh leaked memory; the model is the only register file.
    let smmu = unsafe { smmuv3::Smmu::init(model, host_memory(START_POOL_PAGES), host_config()) }.unwrap();
    let backend = SmmuBackend::new(smmu, &[0x10, 0x11]).unwrap();
    let device = |name, stream| DeviceConfig {
        name,
        stream,
        extra_streams: &[],
        owner: NO_OWNER,
        iova_base: 0x1000_0000,
        iova_size: 1 << 20,
        resume_allowed: false,
    };
    let static_map = |device| StaticMapConfig {
        device,
        region: 0,
        offset: 0,
        len: 0x1000,
        iova: 0x1000_0000,
        rights: Rights::READ_WRITE,
    };
    let cfg = Config {
        clients: &[],
        devices: leak([device("first", 0x10), device("second", 0x11)]),
        regions: leak([RegionConfig { name: "buf", pa: buf.pa.0, size: buf.len as u64 }]),
        caps: &[],
        static_maps: leak([static_map(0), static_map(1)]),
        faults: FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 },
    };
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 2, 4, 8)>::default()));
    assert!(matches!(Service::new(backend, cfg, tables.storage()), Err(ConfigError::Hardware(1))));
    let closed = smmuv3::fail_closed(model, smmuv3::Bound::Polls(100));
    assert_eq!(closed, Err(smmuv3::Error::NoGlobalAbort), "no GBPA: the SMMU stays on");
    for sid in [0x10, 0x11] {
        assert_eq!(model.translate(sid, 0x1000_0000, true), Outcome::Abort, "stream {sid:#x}");
    }
}

/// Table pages for `a_service_that_fails_to_start_leaves_no_device_translating`: the two
/// domains' roots and the first device's static mapping, not the second's.
const START_POOL_PAGES: usize = 5;
