//! virtio-drivers' `PciRoot` over CONFIG_READ/CONFIG_WRITE (`iommu_client::pci`), against
//! the service core and a one-function model of configuration space: the driver turns
//! its device on, cannot move its BAR, and sees no other function.

mod one_function;

use std::cell::RefCell;
use std::rc::Rc;

use iommu_client::pci::OwnFunction;
use iommu_pd::model::ModelHw;
use iommu_pd::{ClientConfig, Config, DeviceConfig, FaultPolicy, Service};
use iommu_protocol::DeviceId;
use one_function::{Local, OneFunction, Shared};
use virtio_drivers::transport::pci::bus::{Command, DeviceFunction, PciRoot};

#[test]
fn virtio_drivers_pci_root_works_on_its_own_function_only() {
    static CLIENTS: [ClientConfig; 1] = [ClientConfig { name: "blk", max_mappings: 1, max_pages: 1, max_grants: 0 }];
    static DEVICES: [DeviceConfig; 1] = [DeviceConfig {
        name: "disk",
        stream: 0x20,
        extra_streams: &[],
        owner: 0,
        iova_base: 0x10_0000,
        iova_size: 1 << 20,
        resume_allowed: true,
    }];
    let cfg = Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &[],
        caps: &[],
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1, resume_rest_ms: 0 },
    };
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 1, 4, 4)>::default())).storage();
    let service = Service::new(ModelHw::default(), cfg, storage).unwrap();
    let shared: Shared = Rc::new(RefCell::new((service, OneFunction::default())));
    let df = DeviceFunction { bus: 0, device: 4, function: 0 };
    let access = OwnFunction::new(Local(shared.clone()), DeviceId(0), df);
    let mut root = PciRoot::new(access);

    root.set_command(df, Command::MEMORY_SPACE | Command::BUS_MASTER | Command::IO_SPACE);
    // I/O space is not the driver's: masked, the rest taken; Interrupt Disable set (the
    // function shows no INTx pin, so no line of this PD's is its).
    assert_eq!(shared.borrow().1.command, 0x406);
    assert_eq!(root.bar_info(df, 0).ok().flatten().map(|b| b.memory_address_size()), Some(Some((0, 0x4000))));
    // bar_info sized the BAR through the IOMMU PD's probe, which left it where it was.
    assert_eq!(shared.borrow().1.bar0, 0);
    // Moving it is refused.
    root.set_bar_32(df, 0, 0x1000_0000);
    assert_eq!(shared.borrow().1.bar0, 0);
    // Another function reads as absent.
    let other = DeviceFunction { bus: 0, device: 2, function: 0 };
    assert_eq!(root.get_status_command(other).1, Command::from_bits_truncate(0xffff));
}
