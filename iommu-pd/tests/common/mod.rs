//! A model IOMMU for the service's tests: per-device page tables as maps, whether each
//! device is blocked, and a log of every call.
#![allow(dead_code)]

use std::collections::BTreeMap;

use iommu_pd::{DeviceIndex, HwError, IommuHw};
use iommu_protocol::Rights;

pub const PAGE: u64 = 4096;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ModelHw {
    /// Per device: IOVA page -> (physical page, rights).
    pub pages: BTreeMap<DeviceIndex, BTreeMap<u64, (u64, Rights)>>,
    pub enabled: BTreeMap<DeviceIndex, bool>,
    pub log: Vec<String>,
    /// Fail the next call of this kind ("map", "unmap", "block", "enable").
    pub fail_next: Option<&'static str>,
}

impl ModelHw {
    fn fail(&mut self, what: &'static str) -> bool {
        if self.fail_next == Some(what) {
            self.fail_next = None;
            return true;
        }
        false
    }

    /// What the device can reach right now: nothing if blocked.
    pub fn reachable(&self, d: DeviceIndex) -> BTreeMap<u64, (u64, Rights)> {
        if !self.enabled.get(&d).copied().unwrap_or(false) {
            return BTreeMap::new();
        }
        self.pages.get(&d).cloned().unwrap_or_default()
    }
}

impl IommuHw for ModelHw {
    fn enable(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        if self.fail("enable") {
            return Err(HwError);
        }
        self.enabled.insert(device, true);
        self.log.push(format!("enable {device}"));
        Ok(())
    }

    fn block(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        if self.fail("block") {
            return Err(HwError);
        }
        self.enabled.insert(device, false);
        self.log.push(format!("block {device}"));
        Ok(())
    }

    fn map(&mut self, device: DeviceIndex, iova: u64, pa: u64, len: u64, rights: Rights) -> Result<(), HwError> {
        let t = self.pages.entry(device).or_default();
        // The hardware refuses to overwrite (as the SMMUv3 driver does); the service must
        // never ask.
        assert!(len > 0 && iova % PAGE == 0 && pa % PAGE == 0 && len % PAGE == 0, "bad map request");
        for p in 0..len / PAGE {
            assert!(!t.contains_key(&(iova + p * PAGE)), "service asked to map over a live page");
        }
        if self.fail("map") {
            return Err(HwError);
        }
        let t = self.pages.entry(device).or_default();
        for p in 0..len / PAGE {
            t.insert(iova + p * PAGE, (pa + p * PAGE, rights));
        }
        self.log.push(format!("map {device} {iova:#x} {pa:#x} {len:#x}"));
        Ok(())
    }

    fn unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        if self.fail("unmap") {
            return Err(HwError);
        }
        let t = self.pages.entry(device).or_default();
        for &(iova, len) in ranges {
            for p in 0..len / PAGE {
                assert!(t.remove(&(iova + p * PAGE)).is_some(), "service unmapped a page that was not mapped");
            }
        }
        self.log.push(format!("unmap {device} {ranges:x?}"));
        Ok(())
    }
}

use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig};

pub const NET: usize = 0;
pub const BLK: usize = 1;
pub const EVIL: usize = 2;
pub const IOVA_BASE: u64 = 0x1000_0000;
pub const IOVA_SIZE: u64 = 1 << 20;

pub static CLIENTS: [ClientConfig; 3] = [
    ClientConfig { name: "net", max_mappings: 16, max_pages: 64 },
    ClientConfig { name: "blk", max_mappings: 16, max_pages: 64 },
    ClientConfig { name: "hostile", max_mappings: 16, max_pages: 64 },
];

pub static DEVICES: [DeviceConfig; 4] = [
    DeviceConfig {
        name: "nic",
        stream: 0x10,
        owner: NET,
        iova_base: IOVA_BASE,
        iova_size: IOVA_SIZE,
        resume_allowed: true,
    },
    DeviceConfig {
        name: "disk",
        stream: 0x18,
        owner: BLK,
        iova_base: IOVA_BASE,
        iova_size: IOVA_SIZE,
        resume_allowed: false,
    },
    DeviceConfig {
        name: "evil",
        stream: 0x20,
        owner: EVIL,
        iova_base: IOVA_BASE,
        iova_size: IOVA_SIZE,
        resume_allowed: true,
    },
    DeviceConfig {
        name: "nic2",
        stream: 0x28,
        owner: NET,
        iova_base: IOVA_BASE,
        iova_size: IOVA_SIZE,
        resume_allowed: true,
    },
];

pub static REGIONS: [RegionConfig; 4] = [
    RegionConfig { name: "net-buffers", pa: 0x4000_0000, size: 0x1_0000 },
    RegionConfig { name: "blk-buffers", pa: 0x4010_0000, size: 0x1_0000 },
    // Not page aligned: no page of it is wholly covered at a page boundary.
    RegionConfig { name: "evil-scratch", pa: 0x4020_0800, size: 0x3000 },
    RegionConfig { name: "shared-ro", pa: 0x4030_0000, size: 0x8000 },
];

pub static CAPS: [CapConfig; 4] = [
    CapConfig { client: NET, region: 0, offset: 0, len: 0x1_0000, rights: Rights::READ_WRITE, devices: 0b1001 },
    CapConfig { client: NET, region: 3, offset: 0, len: 0x8000, rights: Rights::READ, devices: 0b0001 },
    CapConfig { client: BLK, region: 1, offset: 0, len: 0x1_0000, rights: Rights::READ_WRITE, devices: 0b0010 },
    CapConfig { client: EVIL, region: 2, offset: 0, len: 0x3000, rights: Rights::READ_WRITE, devices: 0b0100 },
];

pub fn config() -> Config<'static> {
    Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        faults: FaultPolicy { window: 100, max_faults: 10 },
    }
}
