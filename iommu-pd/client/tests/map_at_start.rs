//! A driver restarted after its crash, whose device's PCI function was away at the
//! teardown (not answering, so neither stopped nor reset then): the IOMMU PD leaves the
//! device stopped for it (`client_ready`), and its first MAP, through
//! `Client::map_at_start`, RESUMEs it (the function put back first) and maps. Before
//! (2026-12-08), a driver's first MAP after such a restart answered `Stopped`, and none of
//! this repository's drivers sent the RESUME.

use std::cell::RefCell;
use std::rc::Rc;

use iommu_client::{Channel, Client};
use iommu_pd::model::ModelHw;
use iommu_pd::pci::ConfigSpace;
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultInput, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Rights, MAX_REPLY_VALUES};

const RID: u16 = 0x20;
const BUS_MASTER: u16 = 0x4;

/// Function 00:04.0, no capability, no BAR; all ones while `away`.
#[derive(Default)]
struct Function {
    away: bool,
    command: u16,
}

impl ConfigSpace for Function {
    fn function(&self, device: usize) -> Result<u16, ErrorCode> {
        (device == 0).then_some(RID).ok_or(ErrorCode::NoConfigSpace)
    }
    fn placement(&self, _: u16) -> Option<iommu_pd::pci::Placement> {
        None
    }
    fn messages_stuck(&self, _: u16) -> bool {
        false
    }
    fn recorded(&mut self, rid: u16) -> Option<iommu_pd::pci::Recorded> {
        iommu_pd::pci::record(self, rid, 0)
    }
    fn read(&mut self, rid: u16, offset: u16, width: u8) -> Option<u32> {
        let word = match (rid, offset & !3) {
            _ if rid != RID || self.away => u32::MAX,
            (_, 0x00) => 0x11e8_1234,
            (_, 0x04) => u32::from(self.command),
            _ => 0,
        };
        Some((word >> (8 * (offset & 3))) & (u32::MAX >> (32 - 8 * width as u32)))
    }
    fn write(&mut self, rid: u16, offset: u16, _width: u8, value: u32) -> Option<()> {
        if rid == RID && !self.away && offset == 0x04 {
            self.command = value as u16;
        }
        Some(())
    }
    fn wait_ms(&mut self, _: u32) {}
    fn now_ms(&mut self) -> u64 {
        // Long after boot: no reset ration is waited for.
        100_000
    }
}

type Shared = Rc<RefCell<(Service<'static, ModelHw>, Function)>>;

struct Local(Shared);

impl Channel for Local {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; MAX_REPLY_VALUES]) -> u64 {
        let (service, ecam) = &mut *self.0.borrow_mut();
        let r = service.handle_with(0, label, mrs, ecam);
        if let iommu_protocol::Reply::Ok { values, .. } = r {
            *reply = values;
        }
        r.label()
    }
}

const PA: u64 = 0x4000_0000;
const DISK: DeviceId = DeviceId(0);

fn service() -> Shared {
    static CLIENTS: [ClientConfig; 1] = [ClientConfig { name: "edu", max_mappings: 2, max_pages: 2, max_grants: 0 }];
    static DEVICES: [DeviceConfig; 1] = [DeviceConfig {
        name: "edu",
        stream: RID as u32,
        extra_streams: &[],
        owner: 0,
        iova_base: 0x10_0000,
        iova_size: 1 << 20,
        // The description lets its driver resume it from a storm: only the driver's
        // choice keeps `map_at_start` from doing so.
        resume_allowed: true,
    }];
    static REGIONS: [RegionConfig; 1] = [RegionConfig { name: "buffers", pa: PA, size: 0x1000 }];
    static CAPS: [CapConfig; 1] = [CapConfig {
        client: 0,
        region: 0,
        offset: 0,
        len: 0x1000,
        rights: Rights::READ_WRITE,
        devices: 1,
        grant_to: 0,
    }];
    let cfg = Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 1000, max_faults: 100, resume_rest_ms: 0 },
    };
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 4)>::default())).storage();
    let service = Service::new(ModelHw::default(), cfg, storage).unwrap();
    Rc::new(RefCell::new((service, Function::default())))
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
        for i in 0..=100 {
            s.record_fault(FaultInput {
                stream: RID as u32,
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
