//! The SMMU as the IOMMU service's hardware: each device of the system description gets
//! its own domain; `iommu_pd::IommuHw` calls become attach/detach/map/unmap, each of
//! which returns only after the SMMU confirmed what it must confirm.
//!
//! Which stage: a device passed through to a virtual machine is translated at stage 2,
//! with a VMID of its own, where the SMMU has stage 2 (as a hypervisor gives a VM its
//! device: the guest's addresses are intermediate physical addresses); every other
//! device, and every device on an SMMU without stage 2, at stage 1. The service sees no
//! difference: the same maps, unmaps and confirmations.
//!
//! A crate of its own so that the SMMUv3 driver (`smmuv3`) knows nothing of the service
//! core and the service core nothing of the SMMU: this adapter is the one place the two
//! meet.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod events;

use iommu_pd::{DeviceIndex, HwError, IommuHw, MapRefused};
use iommu_protocol::Rights;
use smmuv3::{DomainId, Error, Iova, MemType, Mmio, PageTableError, Perm, PhysAddr, Smmu, StreamId, Translation};

/// Devices the backend can serve.
pub const MAX_BACKEND_DEVICES: usize = 64;

/// StreamIDs beyond each device's first, over all devices: what the driver can attach
/// once every device has its first.
pub const MAX_EXTRA_STREAMS: usize = smmuv3::MAX_STREAMS - MAX_BACKEND_DEVICES;

/// Why a VM's device whose RAM needs `ipa_bits` guest-physical bits cannot be given a
/// stage-2 domain on this SMMU (and falls back to stage 1), or `None` if it can.
pub fn stage2_refusal<M: Mmio>(smmu: &Smmu<M>, ipa_bits: u32) -> Option<smmuv3::Unsupported> {
    let f = smmu.features();
    if !f.stage2 {
        return Some(smmuv3::Unsupported::NoStage2);
    }
    smmuv3::probe::stage2_start_level(ipa_bits, f.oas_bits).err()
}

/// The SMMU plus the service's device table.
#[derive(Debug)]
pub struct SmmuBackend<M: Mmio> {
    smmu: Smmu<M>,
    devices: [Option<(StreamId, DomainId)>; MAX_BACKEND_DEVICES],
    /// More StreamIDs of devices (`add_streams`), each with its device: attached and
    /// detached with the device's first.
    extra: [Option<(StreamId, u8)>; MAX_EXTRA_STREAMS],
}

impl<M: Mmio> SmmuBackend<M> {
    /// Create one domain per device (device `i` has StreamID `streams[i]`); every stream
    /// keeps aborting until the service enables it.
    /// A StreamID listed twice is refused (`StreamInUse`), before anything is written.
    pub fn new(smmu: Smmu<M>, streams: &[u32]) -> Result<Self, Error> {
        Self::with_vms(smmu, streams, &[])
    }

    /// `new`, where `ipa_bits[i]`, when not 0, says device `i` is passed through to a
    /// virtual machine whose guest-physical RAM needs that many address bits (missing
    /// entries: 0). Such a device's domain is stage 2, with its own VMID and that input
    /// size, when the SMMU has stage 2 (SMMU_IDR0.S2P) and can take the size
    /// (`smmuv3::probe::stage2_start_level`); stage 1 otherwise (`stage2_refusal` says
    /// why). One VMID per device, not per VM: each device has an address space of its
    /// own, and a VMID tags one set of tables (two domains under one VMID would hit each
    /// other's TLB entries).
    pub fn with_vms(mut smmu: Smmu<M>, streams: &[u32], ipa_bits: &[u32]) -> Result<Self, Error> {
        if streams.len() > MAX_BACKEND_DEVICES {
            return Err(Error::TooManyStreams);
        }
        // One STE per stream: two devices on one StreamID would share one address space.
        // The service refuses such a policy; this refuses it whoever asks.
        if let Some(i) = (0..streams.len()).find(|&i| streams[..i].contains(&streams[i])) {
            return Err(Error::StreamInUse(StreamId(streams[i])));
        }
        let mut devices = [None; MAX_BACKEND_DEVICES];
        for (i, s) in streams.iter().enumerate() {
            smmu.prepare_stream(StreamId(*s))?;
            let ipa = ipa_bits.get(i).copied().unwrap_or(0);
            let domain = if ipa != 0 && stage2_refusal(&smmu, ipa).is_none() {
                smmu.create_stage2_domain(ipa)?
            } else {
                smmu.create_domain()?
            };
            devices[i] = Some((StreamId(*s), domain));
        }
        Ok(Self { smmu, devices, extra: [None; MAX_EXTRA_STREAMS] })
    }

    /// Give `device` more StreamIDs, sharing its domain: they abort until the service
    /// enables the device, and are blocked and enabled with it. A StreamID some device
    /// already has, or listed twice, is refused (`StreamInUse`), and then none is added.
    pub fn add_streams(&mut self, device: DeviceIndex, streams: &[u32]) -> Result<(), Error> {
        if self.devices.get(device).copied().flatten().is_none() {
            return Err(Error::NoSuchDomain);
        }
        let free = self.extra.iter().filter(|e| e.is_none()).count();
        if streams.len() > free {
            return Err(Error::TooManyStreams);
        }
        for (i, &s) in streams.iter().enumerate() {
            if self.has_stream(StreamId(s)) || streams[..i].contains(&s) {
                return Err(Error::StreamInUse(StreamId(s)));
            }
        }
        for &s in streams {
            self.smmu.prepare_stream(StreamId(s))?;
            if let Some(slot) = self.extra.iter_mut().find(|e| e.is_none()) {
                *slot = Some((StreamId(s), device as u8));
            }
        }
        Ok(())
    }

    /// `f` on every StreamID of `device` (its first, then the others) with its domain;
    /// `Err` if it failed on any. It goes on after a failure: blocking a device whose one
    /// stream would not detach still detaches the others.
    fn each_stream(
        &mut self,
        device: DeviceIndex,
        mut f: impl FnMut(&mut Smmu<M>, StreamId, DomainId) -> Result<(), Error>,
    ) -> Result<(), HwError> {
        let (sid, dom) = self.device(device)?;
        let mut result = f(&mut self.smmu, sid, dom).map_err(|_| HwError);
        for &(s, d) in self.extra.iter().flatten() {
            if d as usize == device && f(&mut self.smmu, s, dom).is_err() {
                result = Err(HwError);
            }
        }
        result
    }

    /// The driver (for the interrupt path: events and global errors).
    pub fn smmu(&mut self) -> &mut Smmu<M> {
        &mut self.smmu
    }

    /// The driver, read-only (for tests and diagnostics).
    pub fn smmu_ref(&self) -> &Smmu<M> {
        &self.smmu
    }

    /// How `device` is translated (its stage, and its ASID or VMID), if the backend has it.
    pub fn translation_of(&self, device: DeviceIndex) -> Option<Translation> {
        self.domain_of(device).and_then(|d| self.smmu.translation(d).ok())
    }

    /// `device`'s domain, if the backend has the device.
    pub fn domain_of(&self, device: DeviceIndex) -> Option<DomainId> {
        self.devices.get(device).copied().flatten().map(|(_, d)| d)
    }

    /// Measurement builds only: let `device` through untranslated (`bypass`), or back
    /// through its domain, whose tables were left as they were. Bypass reaches all of
    /// memory, so no product image has this; it exists to measure what translation costs
    /// against the same device and driver. The stream aborts between the two entries
    /// (detach, then bypass), so no mixture of the two is ever visible to the SMMU.
    #[cfg(feature = "measure-bypass")]
    pub fn set_bypass_for_measurement(&mut self, device: DeviceIndex, bypass: bool) -> Result<(), HwError> {
        let (sid, dom) = self.device(device)?;
        if bypass {
            self.smmu.detach(sid).and_then(|()| self.smmu.bypass(sid)).map_err(|_| HwError)
        } else {
            self.smmu.attach(sid, dom).map_err(|_| HwError)
        }
    }

    /// Some device has `sid`, as its first StreamID or another.
    fn has_stream(&self, sid: StreamId) -> bool {
        self.devices.iter().flatten().any(|&(s, _)| s == sid) || self.extra.iter().flatten().any(|&(s, _)| s == sid)
    }

    fn device(&self, d: DeviceIndex) -> Result<(StreamId, DomainId), HwError> {
        self.devices.get(d).copied().flatten().ok_or(HwError)
    }
}

/// `map_if_free`'s refusal before the driver walks anything. Cold and out of line: a
/// refusal the inlined MAP path joins with the driver's own would have that path set
/// the refusal's value before every call.
#[cold]
#[inline(never)]
fn refused_unwalked() -> MapRefused {
    MapRefused::Hardware
}

impl<M: Mmio> IommuHw for SmmuBackend<M> {
    fn enable(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        // Defence in depth: a stream the SMMU has in another domain is another device's
        // (or was put there by something other than this backend); attaching it here
        // would move that device into this one's address space. Refused before any STE
        // is written.
        let mut foreign = false;
        self.each_stream(device, |smmu, s, dom| {
            foreign |= smmu.stream_domain(s).is_some_and(|d| d != dom);
            Ok(())
        })?;
        if foreign {
            return Err(HwError);
        }
        self.each_stream(device, |smmu, s, dom| smmu.attach(s, dom))
    }

    fn block(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        // Every stream of the device, each confirmed; on a failure the service keeps the
        // device as not blocked, and what could be detached is.
        self.each_stream(device, |smmu, s, _| smmu.detach(s))
    }

    fn map(&mut self, device: DeviceIndex, iova: u64, pa: u64, len: u64, rights: Rights) -> Result<(), HwError> {
        self.map_if_free(device, iova, pa, len, rights).map_err(|_| HwError)
    }

    // The driver's `map` walks the whole range before it writes anything and refuses a
    // page that is mapped already (`PageTableError::AlreadyMapped`), block or page.
    const CHECKS_RANGE_FREE: bool = true;

    // (`map_if_free`, `unmap_deferred` and `sync_unmaps` are inlined into the service,
    // which calls them for every MAP and every queued UNMAP: only the driver's own work is
    // left as a call.)
    #[inline]
    fn map_if_free(
        &mut self,
        device: DeviceIndex,
        iova: u64,
        pa: u64,
        len: u64,
        rights: Rights,
    ) -> Result<(), MapRefused> {
        let Ok((_, dom)) = self.device(device) else { return Err(refused_unwalked()) };
        // Stage-1 descriptors cannot express write-only: a write-only request maps
        // read/write only if the service granted both; otherwise read-only or refused.
        let perm = if rights.contains(Rights::WRITE) {
            if !rights.contains(Rights::READ) {
                // Refused before the range is walked: the service, hearing `Hardware`,
                // searches its own index, so an overlap is still answered as one.
                return Err(refused_unwalked());
            }
            Perm::ReadWrite
        } else {
            Perm::Read
        };
        // The attributes the devices' coherency calls for (write-back for devices that
        // snoop the CPUs' caches, Non-cacheable for those that do not): the driver knows
        // what the platform says.
        let mem: MemType = self.smmu.dma_memory();
        match self.smmu.map(dom, Iova(iova), PhysAddr(pa), len, perm, mem) {
            Ok(()) => Ok(()),
            Err(Error::PageTable(PageTableError::AlreadyMapped(_))) => Err(MapRefused::InUse),
            Err(_) => Err(MapRefused::Hardware),
        }
    }

    fn unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        if let [(iova, len)] = *ranges {
            return self.unmap_one(device, iova, len);
        }
        let (_, dom) = self.device(device)?;
        let mut batch = [(Iova(0), 0u64); 64];
        for chunk in ranges.chunks(batch.len()) {
            for (slot, &(iova, len)) in batch.iter_mut().zip(chunk) {
                *slot = (Iova(iova), len);
            }
            self.smmu.unmap_batch(dom, &batch[..chunk.len()]).map_err(|_| HwError)?;
        }
        Ok(())
    }

    fn unmap_one(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        let (_, dom) = self.device(device)?;
        self.smmu.unmap(dom, Iova(iova), len).map(|_| ()).map_err(|_| HwError)
    }

    #[inline(always)]
    fn unmap_deferred(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        let (_, dom) = self.device(device)?;
        self.smmu.unmap_deferred(dom, Iova(iova), len).map(|_| ()).map_err(|_| HwError)
    }

    #[inline]
    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        // One CMD_SYNC for every device's deferred unmaps: the SMMU consumes it only once
        // every command before it has completed (IHI 0070 4.7.3).
        self.smmu.sync_deferred().map_err(|_| HwError)
    }

    fn retry_unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        let (_, dom) = self.device(device)?;
        // A failed `unmap_batch` checked every range before writing, so each range is
        // either still wholly in the tables (the failure came first) or wholly gone (the
        // invalidation failed): remove the former, skip the latter.
        for &(iova, len) in ranges {
            match self.smmu.unmap(dom, Iova(iova), len) {
                Ok(_) | Err(Error::PageTable(PageTableError::NotMapped(_))) => {}
                Err(_) => return Err(HwError),
            }
        }
        // Whatever the TLB still holds of the domain goes, confirmed.
        self.smmu.invalidate_domain(dom).map_err(|_| HwError)
    }
}
