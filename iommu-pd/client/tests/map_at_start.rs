//! A driver restarted after its crash, whose device's PCI function was away at the
//! teardown (not answering, so neither stopped nor reset then): the IOMMU PD leaves the
//! device stopped for it (`client_ready`), and its first MAP, through
//! `Client::map_at_start`, RESUMEs it (the function put back first) and maps. Before
//! (2026-12-08), a driver's first MAP after such a restart answered `Stopped`, and none of
//! this repository's drivers sent the RESUME.

#[path = "common/disk.rs"]
mod disk;
mod one_function;

use std::cell::RefCell;
use std::rc::Rc;

use disk::PA;
use iommu_client::Client;
use iommu_pd::model::ModelHw;
use iommu_pd::{FaultInput, Service};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Rights};
use one_function::{Local, OneFunction, Shared};

const BUS_MASTER: u16 = 0x4;

const DISK: DeviceId = DeviceId(0);

/// One page of buffers for the disk, whose description lets its driver resume it from a
/// storm (`resume_allowed`): only the driver's choice keeps `map_at_start` from doing so.
fn service() -> Shared {
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 4)>::default())).storage();
    let service = Service::new(ModelHw::default(), disk::config(1), storage).unwrap();
    Rc::new(RefCell::new((service, OneFunction::default())))
}

/// The client crashes with its device mastering and mapped while its function is away,
/// and is restarted (`client_ready`); `back` says whether the function answers again by
/// the restarted driver's first MAP.
fn restarted_while_away(back: bool) -> (Shared, Client<Local>) {
    let shared = service();
    let mut client = Client::new(Local(shared.clone()));
    client.map(Handle(0), DISK, 0, 0x1000, None, Rights::READ_WRITE).unwrap();
    {
        let (s, f) = &mut *shared.borrow_mut();
        f.command = BUS_MASTER;
        f.away = true;
        s.client_torn_down_with(0, f, |_, _| {}).unwrap();
        s.client_ready(0).unwrap();
        f.away = !back;
        // Back as its crashed driver left it.
        f.command = BUS_MASTER;
    }
    (shared, client)
}

#[test]
fn a_restarted_drivers_first_map_resumes_a_device_its_teardown_found_away() {
    let (shared, mut client) = restarted_while_away(true);
    let iova = client.map_at_start(Handle(0), DISK, 0, 0x1000, None, Rights::READ_WRITE);
    let iova = iova.expect("the restarted driver's first MAP");
    let (s, f) = &*shared.borrow();
    assert_eq!(s.hw().enabled.get(&0), Some(&true), "its device does not translate");
    assert_eq!(s.hw().translations(0).get(&iova).map(|t| t.0), Some(PA), "its mapping is not in the tables");
    // The RESUME put the function back (Bus Master off) before the device translated.
    assert_eq!(f.command & BUS_MASTER, 0, "its function masters as its crashed driver left it");
}

#[test]
fn a_device_still_away_stays_stopped_and_its_driver_is_told_so() {
    let (shared, mut client) = restarted_while_away(false);
    let r = client.map_at_start(Handle(0), DISK, 0, 0x1000, None, Rights::READ_WRITE);
    assert_eq!(r, Err(ErrorCode::DeviceMissing));
    let (s, _) = &*shared.borrow();
    assert_ne!(s.hw().enabled.get(&0), Some(&true), "a device still away translates");
    assert!(s.hw().translations(0).is_empty());
}

/// A device a fault storm quarantined is not the start-up's to resume, even where the
/// description would let its driver: `map_at_start` answers `Quarantined` and sends no
/// RESUME (a RESUME here would start it again).
#[test]
fn a_quarantined_device_is_not_resumed_at_start() {
    let shared = service();
    let mut client = Client::new(Local(shared.clone()));
    {
        let (s, _) = &mut *shared.borrow_mut();
        // One fault over the description's limit, all at once.
        let cfg = disk::config(1);
        for i in 0..=u64::from(cfg.faults.max_faults) {
            s.record_fault(FaultInput {
                stream: cfg.devices[0].stream,
                iova: 0xdead_0000 + i * 0x1000,
                write: true,
                kind: 0x10,
                now: 0,
            });
        }
        assert_eq!(s.hw().enabled.get(&0), Some(&false), "the storm did not quarantine it");
    }
    let r = client.map_at_start(Handle(0), DISK, 0, 0x1000, None, Rights::READ_WRITE);
    assert_eq!(r, Err(ErrorCode::Quarantined));
    let (s, _) = &*shared.borrow();
    assert_eq!(s.hw().enabled.get(&0), Some(&false), "map_at_start resumed a quarantined device");
    assert!(s.hw().translations(0).is_empty());
}
