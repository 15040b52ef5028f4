//! Which stage each device is translated at: a VM's device at stage 2 with a VMID of its
//! own where the SMMU has stage 2, at stage 1 where it has not, every other device at
//! stage 1; and the service's requests work the same through either (the model walks
//! the tables the STE names, so a map reaches the right PA and an unmap leaves nothing).

use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_MRS};
use smmuv3::event::id;
use smmuv3::model::{host_region, host_smmu, host_smmu_nested, Outcome, SmmuModel};
use smmuv3::ste::SteConfig;
use smmuv3::{Smmu, StreamId, Translation, Vmid};
use smmuv3_service::SmmuBackend;

const VM_SID: u32 = 0x20;
const HOST_SID: u32 = 0x08;
/// The VM's device: guest-physical addresses from 1 GiB, as images/linux-guest.xml's.
const GUEST_RAM: u64 = 0x4000_0000;

fn call<H: iommu_pd::IommuHw>(s: &mut Service<'_, H>, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(client, label, &mrs[..n])
}

/// Two clients, each owning one device with a read-write capability over its own 16 KiB:
/// a VMM whose device is its VM's (device 0), and a driver whose device is not (device 1).
fn two_devices(smmu: Smmu<SmmuModel>) -> (Service<'static, SmmuBackend<SmmuModel>>, [u64; 2]) {
    let (vm_ram, host_buf) = (host_region(0x4000, 0x1000), host_region(0x4000, 0x1000));
    let leak = |x| Box::leak(Box::new(x));
    let clients: &'static [ClientConfig; 2] = leak([
        ClientConfig { name: "vmm", max_mappings: 4, max_pages: 4, max_grants: 0 },
        ClientConfig { name: "driver", max_mappings: 4, max_pages: 4, max_grants: 0 },
    ]);
    let device = |name, stream, owner, iova_base| DeviceConfig {
        name,
        stream,
        extra_streams: &[],
        owner,
        iova_base,
        iova_size: 1 << 20,
        resume_allowed: true,
    };
    let devices: &'static [DeviceConfig; 2] =
        Box::leak(Box::new([device("vm-disk", VM_SID, 0, GUEST_RAM), device("nic", HOST_SID, 1, GUEST_RAM)]));
    let regions: &'static [RegionConfig; 2] = Box::leak(Box::new([
        RegionConfig { name: "guest-ram", pa: vm_ram.pa.0, size: 0x4000 },
        RegionConfig { name: "nic-buffers", pa: host_buf.pa.0, size: 0x4000 },
    ]));
    let cap = |client, region, devices| CapConfig {
        client,
        region,
        offset: 0,
        len: 0x4000,
        rights: Rights::READ_WRITE,
        devices,
        grant_to: 0,
    };
    let caps: &'static [CapConfig; 2] = Box::leak(Box::new([cap(0, 0, 0b01), cap(1, 1, 0b10)]));
    let cfg = Config {
        clients,
        devices,
        regions,
        caps,
        static_maps: &[],
        faults: FaultPolicy { window: 10, max_faults: 100, resume_rest_ms: 0 },
    };
    let backend = SmmuBackend::with_vms(smmu, &[VM_SID, HOST_SID], &[31, 0]).unwrap();
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(2, 2, 4, 8)>::default()));
    (Service::new(backend, cfg, tables.storage()).unwrap(), [vm_ram.pa.0, host_buf.pa.0])
}

fn map(s: &mut Service<'_, SmmuBackend<SmmuModel>>, client: usize, len: u64) -> Reply {
    let req = Request::Map {
        cap: Handle(0),
        device: DeviceId(client as u32),
        offset: 0,
        len,
        iova: Some(GUEST_RAM),
        rights: Rights::READ_WRITE,
    };
    call(s, client, req)
}

fn translate(s: &mut Service<'_, SmmuBackend<SmmuModel>>, sid: u32, iova: u64, write: bool) -> Outcome {
    s.hw_mut().smmu().regs().translate(sid, iova, write)
}

#[test]
fn a_vms_device_is_stage2_with_its_own_vmid_where_the_smmu_has_it() {
    let (mut s, [ram, nic_buf]) = two_devices(host_smmu_nested(32));
    let hw = s.hw_mut();
    let Some(Translation::Stage2 { vmid }) = hw.translation_of(0) else { panic!("the VM's device at stage 2") };
    assert_ne!(vmid, Vmid(0));
    assert!(matches!(hw.translation_of(1), Some(Translation::Stage1 { .. })));
    assert_eq!(map(&mut s, 0, 0x2000), Reply::ok(&[GUEST_RAM]));
    assert_eq!(map(&mut s, 1, 0x1000), Reply::ok(&[GUEST_RAM]));
    // What the SMMU holds, read back: the VM's stream at stage 2 under that VMID.
    let ste = s.hw_mut().smmu().ste(StreamId(VM_SID)).unwrap().config();
    assert!(matches!(ste, SteConfig::Stage2 { vmid: v, .. } if v == vmid), "{ste:?}");
    assert!(matches!(s.hw_mut().smmu().ste(StreamId(HOST_SID)).unwrap().config(), SteConfig::Stage1 { .. }));
    // One guest-physical address, two devices, each its own memory.
    assert_eq!(translate(&mut s, VM_SID, GUEST_RAM + 0x1010, true), Outcome::Ok(ram + 0x1010));
    assert_eq!(translate(&mut s, HOST_SID, GUEST_RAM + 0x10, true), Outcome::Ok(nic_buf + 0x10));
    // Past the VM's mapping: a stage-2 fault, recorded with S2 and the IPA, and routed
    // by the service to the VMM like any other.
    assert_eq!(translate(&mut s, VM_SID, GUEST_RAM + 0x3000, true), Outcome::Fault(id::F_TRANSLATION));
    let mut faults = Vec::new();
    s.hw_mut().smmu().drain_events(|e| faults.push(e));
    let fault = faults.iter().find_map(|e| e.fault()).expect("a fault record");
    assert!(fault.stage2);
    assert_eq!(fault.ipa, GUEST_RAM + 0x3000);
    // UNMAP: confirmed, and no translation stays cached.
    let mut iovas = [0; iommu_protocol::MAX_UNMAP_RANGES];
    iovas[0] = GUEST_RAM;
    let r = call(&mut s, 0, Request::Unmap { device: DeviceId(0), iovas, count: 1 });
    assert_eq!(r, Reply::ok(&[]));
    assert_eq!(translate(&mut s, VM_SID, GUEST_RAM + 0x1010, true), Outcome::Fault(id::F_TRANSLATION));
    assert_eq!(translate(&mut s, HOST_SID, GUEST_RAM + 0x10, true), Outcome::Ok(nic_buf + 0x10));
}

#[test]
fn without_stage2_a_vms_device_falls_back_to_stage1() {
    // QEMU 7.2's SMMU: stage 1 only.
    let (mut s, [ram, _]) = two_devices(host_smmu(32));
    let why = smmuv3_service::stage2_refusal(s.hw_mut().smmu_ref(), 31);
    assert_eq!(why, Some(smmuv3::Unsupported::NoStage2));
    assert!(matches!(s.hw_mut().translation_of(0), Some(Translation::Stage1 { .. })));
    assert_eq!(map(&mut s, 0, 0x1000), Reply::ok(&[GUEST_RAM]));
    assert!(matches!(s.hw_mut().smmu().ste(StreamId(VM_SID)).unwrap().config(), SteConfig::Stage1 { .. }));
    assert_eq!(translate(&mut s, VM_SID, GUEST_RAM + 8, false), Outcome::Ok(ram + 8));
}

/// What a hostile guest may point its passed-through device's DMA at, at stage 2: its
/// RAM reaches its RAM; an address just below or just past what is mapped, an MSI
/// doorbell (QEMU virt's GICv2m frame and its GICv3 ITS's GITS_TRANSLATER: an MSI is a DMA
/// write), and the mapped RAM's address with any bit above the guest's 31-bit IPA size set
/// (a walk that ignored those bits would alias them onto the RAM) all fault, read or
/// write, and the host device's memory at the same addresses is not reached.
#[test]
fn a_guests_dma_reaches_its_ram_and_nothing_beside_or_above_it() {
    let (mut s, [ram, nic_buf]) = two_devices(host_smmu_nested(32));
    assert_eq!(map(&mut s, 0, 0x2000), Reply::ok(&[GUEST_RAM]));
    assert_eq!(map(&mut s, 1, 0x4000), Reply::ok(&[GUEST_RAM]));
    assert_eq!(translate(&mut s, VM_SID, GUEST_RAM + 0x1ffc, true), Outcome::Ok(ram + 0x1ffc));
    const GICV2M_SETSPI: u64 = 0x0802_0040;
    const GITS_TRANSLATER: u64 = 0x0808_0000 + 0x1_0040;
    let aliases = [31, 32, 39, 40, 47, 48, 52, 63].map(|bit| (GUEST_RAM + 0x10) | (1u64 << bit));
    let strays = [GUEST_RAM - 4, GUEST_RAM + 0x2000, GUEST_RAM + 0x3ffc, GICV2M_SETSPI, GITS_TRANSLATER, 0];
    for iova in strays.into_iter().chain(aliases) {
        for write in [false, true] {
            let got = translate(&mut s, VM_SID, iova, write);
            assert_eq!(got, Outcome::Fault(id::F_TRANSLATION), "iova {iova:#x} write {write}");
            assert!(!matches!(got, Outcome::Ok(pa) if (nic_buf..nic_buf + 0x4000).contains(&pa)));
        }
    }
    // Every one of them was recorded at stage 2, with its input address whole and the
    // IPA as the record holds it (IPA[51:12], Arm IHI 0070 7.3.12: bits 52 and up are
    // not in the record, so those aliases read as the RAM's page; the IOMMU PD prints the
    // input address beside it).
    let mut faults = Vec::new();
    s.hw_mut().smmu().drain_events(|e| faults.push(e));
    let records: Vec<(u64, u64)> =
        faults.iter().filter_map(|e| e.fault()).filter(|f| f.stage2).map(|f| (f.txn.iova.0, f.ipa)).collect();
    for iova in strays.into_iter().chain(aliases) {
        let want = (iova, iova & 0x000f_ffff_ffff_f000);
        assert!(records.contains(&want), "no stage-2 record {want:x?}: {records:x?}");
    }
}

/// STOP, and the VMM's crash (the IOMMU PD tears it down): the guest's device reaches
/// nothing of its RAM; the host device beside it runs on.
#[test]
fn a_stopped_or_torn_down_vms_device_reaches_nothing() {
    for crash in [false, true] {
        let (mut s, [ram, nic_buf]) = two_devices(host_smmu_nested(32));
        assert_eq!(map(&mut s, 0, 0x2000), Reply::ok(&[GUEST_RAM]));
        assert_eq!(map(&mut s, 1, 0x1000), Reply::ok(&[GUEST_RAM]));
        assert_eq!(translate(&mut s, VM_SID, GUEST_RAM + 8, true), Outcome::Ok(ram + 8));
        if crash {
            assert_eq!(s.client_torn_down(0), Ok(()));
        } else {
            let r = call(&mut s, 0, Request::Stop { device: DeviceId(0) });
            assert!(matches!(r, Reply::Ok { .. }), "{r:?}");
        }
        for off in [8, 0x1008] {
            let got = translate(&mut s, VM_SID, GUEST_RAM + off, true);
            assert!(!matches!(got, Outcome::Ok(_) | Outcome::Bypass(_)), "crash {crash}: {got:?}");
        }
        assert_eq!(translate(&mut s, HOST_SID, GUEST_RAM + 8, true), Outcome::Ok(nic_buf + 8));
    }
}
