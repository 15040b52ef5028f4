//! A model IOMMU (feature `model`) for tests and fuzzing: per-device page tables as maps,
//! whether each device is blocked, and a log of every call. It panics if the service asks
//! it for something the real driver would refuse (mapping over a live page, unmapping a
//! page that is not mapped), so such requests show up as test failures.
//!
//! Its failures are the worst the `IommuHw` contract allows: a failed unmap removes the
//! pages from the tables but leaves their translations cached (`stale`), and they
//! translate again whenever the device is enabled, until `retry_unmap` succeeds; a failed
//! block leaves the device translating, and so does a failed enable. A deferred unmap (`unmap_deferred`) leaves the
//! pages translating (`in_flight`) until `sync_unmaps`; a failed sync leaves them all
//! cached, as a failed unmap does; a map over an in-flight page is a break-before-make
//! violation, and panics.

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
    /// Per device: translations cached after a failed unmap (IOVA page -> (physical
    /// page, rights)); they translate while the device is enabled.
    pub stale: BTreeMap<DeviceIndex, BTreeMap<u64, (u64, Rights)>>,
    /// Per device: pages whose deferred unmap has not been synced yet; they translate
    /// while the device is enabled.
    pub in_flight: BTreeMap<DeviceIndex, BTreeMap<u64, (u64, Rights)>>,
    /// Syncs of deferred unmaps that had something to confirm.
    pub syncs: usize,
    /// Fail the next call of this kind ("map", "unmap" (deferred ones too), "sync",
    /// "retry_unmap", "block", "enable").
    pub fail_next: Option<&'static str>,
    /// More failures to come, each the next call of its kind after `fail_next`'s: two
    /// failures in a row ("unmap", then "block").
    pub fail_then: Vec<&'static str>,
}

impl ModelHw {
    fn fail(&mut self, what: &'static str) -> bool {
        if self.fail_next == Some(what) {
            self.fail_next = None;
            return true;
        }
        if let Some(i) = self.fail_then.iter().position(|w| *w == what) {
            self.fail_then.remove(i);
            return true;
        }
        false
    }

    /// What the device can reach right now: nothing if blocked; its tables and any stale
    /// translation otherwise.
    pub fn reachable(&self, d: DeviceIndex) -> BTreeMap<u64, (u64, Rights)> {
        if !self.enabled.get(&d).copied().unwrap_or(false) {
            return BTreeMap::new();
        }
        self.translations(d)
    }

    /// Every page the device has a translation for, in the tables or cached, whether or
    /// not it is enabled.
    pub fn translations(&self, d: DeviceIndex) -> BTreeMap<u64, (u64, Rights)> {
        let mut out = self.stale.get(&d).cloned().unwrap_or_default();
        out.extend(self.in_flight.get(&d).cloned().unwrap_or_default());
        out.extend(self.pages.get(&d).cloned().unwrap_or_default());
        out
    }
}

impl IommuHw for ModelHw {
    fn enable(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        if self.fail("enable") {
            // The worst a failed enable may leave: the device translating (on the SMMUv3,
            // the streams that attached before the one that failed).
            self.enabled.insert(device, true);
            self.log.push(format!("enable {device} FAILED"));
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
        let unsynced = self.in_flight.get(&device);
        for p in 0..len / PAGE {
            assert!(
                !unsynced.is_some_and(|f| f.contains_key(&(iova + p * PAGE))),
                "service mapped over a page whose unmap was not synced (break-before-make)"
            );
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
        let failed = self.fail("unmap");
        let t = self.pages.entry(device).or_default();
        let mut removed = BTreeMap::new();
        for &(iova, len) in ranges {
            for p in 0..len / PAGE {
                let page = iova + p * PAGE;
                let entry = t.remove(&page).expect("service unmapped a page that was not mapped");
                removed.insert(page, entry);
            }
        }
        if failed {
            // Gone from the tables, still in the TLB: the invalidation never completed.
            self.stale.entry(device).or_default().extend(removed);
            self.log.push(format!("unmap {device} {ranges:x?} FAILED"));
            return Err(HwError);
        }
        self.log.push(format!("unmap {device} {ranges:x?}"));
        Ok(())
    }

    fn unmap_deferred(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        let failed = self.fail("unmap");
        let t = self.pages.entry(device).or_default();
        let mut removed = BTreeMap::new();
        for p in 0..len / PAGE {
            let page = iova + p * PAGE;
            removed.insert(page, t.remove(&page).expect("service unmapped a page that was not mapped"));
        }
        if failed {
            self.stale.entry(device).or_default().extend(removed);
            self.log.push(format!("unmap_deferred {device} {iova:#x} {len:#x} FAILED"));
            return Err(HwError);
        }
        self.in_flight.entry(device).or_default().extend(removed);
        self.log.push(format!("unmap_deferred {device} {iova:#x} {len:#x}"));
        Ok(())
    }

    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        if self.in_flight.values().all(BTreeMap::is_empty) {
            return Ok(());
        }
        self.syncs += 1;
        let in_flight = core::mem::take(&mut self.in_flight);
        if self.fail("sync") {
            // None of them confirmed: all still cached, until retried.
            for (d, pages) in in_flight {
                self.stale.entry(d).or_default().extend(pages);
            }
            self.log.push(String::from("sync FAILED"));
            return Err(HwError);
        }
        self.log.push(String::from("sync"));
        Ok(())
    }

    fn retry_unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        if self.fail("retry_unmap") {
            return Err(HwError);
        }
        for &(iova, len) in ranges {
            for p in 0..len / PAGE {
                let page = iova + p * PAGE;
                let in_table = self.pages.entry(device).or_default().remove(&page).is_some();
                let cached = self.stale.entry(device).or_default().remove(&page).is_some();
                assert!(in_table || cached, "service retried a page it never mapped");
            }
        }
        self.log.push(format!("retry_unmap {device} {ranges:x?}"));
        Ok(())
    }
}
