//! A model IOMMU (feature `model`) for tests and fuzzing: per-device page tables as maps,
//! whether each device is blocked, and a log of every call. It panics if the service asks
//! it for something the real driver would refuse (mapping over a live page, unmapping a
//! page that is not mapped), so such requests show up as test failures.

extern crate std;

use std::collections::BTreeMap;
use std::format;
use std::string::String;
use std::vec::Vec;

use iommu_protocol::Rights;

use crate::hw::{DeviceIndex, HwError, IommuHw};

const PAGE: u64 = 4096;

/// The model.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ModelHw {
    /// Per device: IOVA page -> (physical page, rights).
    pub pages: BTreeMap<DeviceIndex, BTreeMap<u64, (u64, Rights)>>,
    /// Per device: translating (true) or blocked.
    pub enabled: BTreeMap<DeviceIndex, bool>,
    /// Every call, in order.
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
