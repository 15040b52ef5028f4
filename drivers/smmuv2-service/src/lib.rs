//! The SMMUv2 (Arm's MMU-500, the SMMU of Microkit's ZynqMP and i.MX8QXP boards) as the
//! IOMMU service's hardware: each device of the system description gets its own stage-1
//! context bank (a domain, `smmuv2::Smmu::create_domain`); `iommu_pd::IommuHw` calls
//! become attach/detach of the device's StreamIDs (one exact-match SMR each) and
//! map/unmap in its bank, each of which returns only after the SMMU confirmed what it
//! must confirm (a TLBSYNC with TLBSTATUS.SACTIVE clear, IHI 0062D 10.8.26-27).
//!
//! The same interface as `smmuv3-service`'s `SmmuBackend`, and the same shape: the driver
//! (`smmuv2`) knows nothing of the service and the service nothing of the SMMU; this
//! adapter is where they meet. The service core, its protocol and its fault path did not
//! change for it.
//!
//! **Few context banks and SMRs.** ZynqMP's MMU-500 has 16 context banks and 48 SMRs
//! (see `smmuv2::model::ZYNQMP` for the sources), one of the banks the driver's sink for
//! blocked streams. `Smmuv2Backend::new` and `add_streams` count what the description
//! needs before writing anything: more devices than stage-1 banks but the sink (15) is
//! `Error::ContextBanksExhausted`, more StreamIDs than SMRs
//! `Error::SmrsExhausted`, a StreamID wider than IDR0.NUMSIDB `Error::StreamIdTooWide`.
//! So `enable` never runs out later, while the service is running: the IOMMU PD refuses
//! to start (failing the SMMU closed) instead, naming what ran out.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use iommu_pd::{DeviceIndex, FaultInput, HwError, IommuHw, Routed, Service};
use iommu_protocol::Rights;
use smmuv2::mmio::Mmio;
use smmuv2::{
    ContextFaultKind, DomainId, Error, Fault, GlobalFaultKind, Iova, PageTableError, Perm, PhysAddr, Smmu, StreamId,
};
use smmuv3::event::id;

/// Devices the backend can serve: as many as the service (`iommu_pd::service::MAX_DEVICES`);
/// the SMMU's own stage-1 banks are usually fewer (ZynqMP: 16).
pub const MAX_BACKEND_DEVICES: usize = 64;

/// StreamIDs beyond each device's first, over all devices: bounded by the SMRs an MMU-500
/// can have (IDR0.NUMSMRG <= 128); the SMMU's own count is checked at `add_streams`.
pub const MAX_EXTRA_STREAMS: usize = smmuv2::gr0::MAX_SMRG;

/// The SMMU plus the service's device table.
#[derive(Debug)]
pub struct Smmuv2Backend<M: Mmio> {
    smmu: Smmu<M>,
    devices: [Option<(StreamId, DomainId)>; MAX_BACKEND_DEVICES],
    /// More StreamIDs of devices (`add_streams`), each with its device: attached and
    /// detached with the device's first.
    extra: [Option<(StreamId, u8)>; MAX_EXTRA_STREAMS],
    /// StreamID bits every SMR ignores (`set_smr_mask`); 0: exact match.
    smr_mask: u16,
}

impl<M: Mmio> Smmuv2Backend<M> {
    /// Create one domain (stage-1 context bank) per device; device `i` has StreamID
    /// `streams[i]`. No stream is attached: each keeps faulting (unmatched, sCR0.USFCFG
    /// = 1) until the service enables its device. Refused before anything is written: a
    /// StreamID listed twice (`StreamInUse`), wider than the SMMU's (`StreamIdTooWide`),
    /// more devices than stage-1 banks but the driver's sink (`ContextBanksExhausted`, counting at most
    /// `MAX_BACKEND_DEVICES`) or more StreamIDs than SMRs (`SmrsExhausted`).
    pub fn new(mut smmu: Smmu<M>, streams: &[u32]) -> Result<Self, Error> {
        let f = *smmu.features();
        let banks = f.domain_banks().min(MAX_BACKEND_DEVICES);
        if streams.len() > banks {
            return Err(Error::ContextBanksExhausted { banks });
        }
        if streams.len() > f.num_smrg {
            return Err(Error::SmrsExhausted { groups: f.num_smrg });
        }
        for (i, &s) in streams.iter().enumerate() {
            check_width(&smmu, s)?;
            // One bank per stream: two devices on one StreamID would share one address
            // space (and two exact SMRs for it would be a stream-match conflict).
            if streams[..i].contains(&s) {
                return Err(Error::StreamInUse(StreamId(s)));
            }
        }
        let mut devices = [None; MAX_BACKEND_DEVICES];
        for (slot, &s) in devices.iter_mut().zip(streams) {
            *slot = Some((StreamId(s), smmu.create_domain()?));
        }
        Ok(Self { smmu, devices, extra: [None; MAX_EXTRA_STREAMS], smr_mask: 0 })
    }

    /// Attach every StreamID from now on with SMR.MASK = `mask`: the bits the SMMU
    /// ignores when matching. For a SoC whose masters present more than the StreamID
    /// assigned to them (i.MX8QXP: the SCU assigns 7 bits, the interconnect fills the
    /// rest, and NXP's device trees match under 0x7f80); 0, the default, matches exactly.
    /// Refused (`StreamIdTooWide`) if the mask has bits the SMMU's SMRs do not implement,
    /// and (`SmrConflict`) if two of the devices' StreamIDs would match one pattern: two
    /// devices behind one SMR would share an address space.
    pub fn set_smr_mask(&mut self, mask: u16) -> Result<(), Error> {
        check_width(&self.smmu, u32::from(mask))?;
        let mut all =
            self.devices.iter().flatten().map(|&(s, _)| s).chain(self.extra.iter().flatten().map(|&(s, _)| s));
        while let Some(a) = all.next() {
            if let Some(b) = all.clone().find(|b| (a.0 ^ b.0) & !u32::from(mask) == 0) {
                return Err(Error::SmrConflict { sid: b, mask });
            }
        }
        self.smr_mask = mask;
        Ok(())
    }

    /// Give `device` more StreamIDs, sharing its domain: they fault until the service
    /// enables the device, and are blocked and enabled with it. Refused whole, before
    /// anything is taken: a StreamID some device already has or listed twice
    /// (`StreamInUse`), too wide (`StreamIdTooWide`), one that matches another StreamID
    /// under the SMR mask already set (`SmrConflict`, as `set_smr_mask` refuses), or more
    /// StreamIDs in all than the SMMU has SMRs (`SmrsExhausted`).
    pub fn add_streams(&mut self, device: DeviceIndex, streams: &[u32]) -> Result<(), Error> {
        if self.devices.get(device).copied().flatten().is_none() {
            return Err(Error::NoSuchDomain);
        }
        let groups = self.smmu.features().num_smrg;
        let used = self.devices.iter().flatten().count() + self.extra.iter().flatten().count();
        let free = self.extra.iter().filter(|e| e.is_none()).count();
        if used + streams.len() > groups || streams.len() > free {
            return Err(Error::SmrsExhausted { groups });
        }
        for (i, &s) in streams.iter().enumerate() {
            check_width(&self.smmu, s)?;
            if self.has_stream(StreamId(s)) || streams[..i].contains(&s) {
                return Err(Error::StreamInUse(StreamId(s)));
            }
            // Under a mask, a StreamID that differs from another only in masked bits is a
            // second SMR matching that one's stream: while the other's device is blocked
            // (its SMR invalid), its DMA would translate in this device's bank.
            if let Some(other) = self.conflict_under_mask(s, &streams[..i]) {
                return Err(Error::SmrConflict { sid: other, mask: self.smr_mask });
            }
        }
        for &s in streams {
            if let Some(slot) = self.extra.iter_mut().find(|e| e.is_none()) {
                *slot = Some((StreamId(s), device as u8));
            }
        }
        Ok(())
    }

    /// The driver (for the interrupt path: `drain_faults`, and diagnostics).
    pub fn smmu(&mut self) -> &mut Smmu<M> {
        &mut self.smmu
    }

    /// The driver, read-only.
    pub fn smmu_ref(&self) -> &Smmu<M> {
        &self.smmu
    }

    /// `device`'s domain (its context bank), if the backend has the device.
    pub fn domain_of(&self, device: DeviceIndex) -> Option<DomainId> {
        self.devices.get(device).copied().flatten().map(|(_, d)| d)
    }

    /// Every fault the SMMU recorded (global, then each context bank's), decoded,
    /// cleared, and handed to `f` with what the service makes of it (`Recorded`), stamped
    /// `now`; returns how many. MMU-500 may raise the global and every context interrupt
    /// on one line, as ZynqMP's SPI 155 does: `take_faults` drains them all and routes
    /// each.
    pub fn drain_faults(&mut self, now: u64, mut f: impl FnMut(Fault, Recorded)) -> u32 {
        let (devices, extra, mask) = (&self.devices, &self.extra, self.smr_mask);
        self.smmu.drain_faults(|fault| {
            let stream = described_stream(devices, extra, mask, &fault);
            let recorded = match fault {
                Fault::Context(_) => Recorded::Fault(FaultInput { stream, ..fault_input(&fault, now) }),
                Fault::Global(_) => Recorded::StreamEvent(stream),
            };
            f(fault, recorded)
        })
    }

    /// Whether the caller must drain again within its poll period, interrupt or not:
    /// `drain_faults` found a global fault and turned sCR0.GFIE off, and only a drain
    /// that finds sGFSR empty turns it on again (`Smmu::drain_faults`). A caller woken by
    /// the SMMU's line alone would, after a single global fault, read no other one (nor
    /// turn GFIE on) until a context fault happened to wake it.
    pub fn poll_owed(&self) -> bool {
        self.smmu.global_interrupt_paced()
    }

    /// A StreamID already given (or among `also`, given in the same call) that `sid`
    /// matches under the SMR mask, if the mask is set.
    fn conflict_under_mask(&self, sid: u32, also: &[u32]) -> Option<StreamId> {
        if self.smr_mask == 0 {
            return None;
        }
        let given = self.devices.iter().flatten().map(|&(s, _)| s).chain(self.extra.iter().flatten().map(|&(s, _)| s));
        given.chain(also.iter().map(|&s| StreamId(s))).find(|o| (o.0 ^ sid) & !u32::from(self.smr_mask) == 0)
    }

    fn has_stream(&self, sid: StreamId) -> bool {
        self.devices.iter().flatten().any(|&(s, _)| s == sid) || self.extra.iter().flatten().any(|&(s, _)| s == sid)
    }

    fn device(&self, d: DeviceIndex) -> Result<(StreamId, DomainId), HwError> {
        self.devices.get(d).copied().flatten().ok_or(HwError)
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
}

/// What the service makes of a fault the SMMU recorded, as of the SMMUv3's events (the
/// IOMMU PD's SMMUv3 path routes a translation or permission fault by
/// `Service::route_fault` and an event that only names a stream, C_BAD_STREAMID and the
/// like, by `Service::route_stream_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A context fault: a translation in a device's bank faulted at an address. Told to
    /// the device's owner and counted towards its fault storm.
    Fault(FaultInput),
    /// A global fault, named by the StreamID the description gave the device it is
    /// about (or the recorded one): most often an unmatched stream (sGFSR.USF), which is
    /// a device the service blocked (stopped, quarantined, its removal unconfirmed) or
    /// one nobody described. Counted, not told: on the SMMUv3 a blocked device's
    /// transactions meet an aborting STE, which records nothing, and a stopped device
    /// still sending DMA must not be quarantined by its own STOP.
    StreamEvent(u32),
}

/// Every fault the SMMU recorded, drained (`Smmuv2Backend::drain_faults`) and then routed
/// through `service`: a context fault by `Service::route_fault`, a global one by
/// `Service::route_stream_event`. `f` gets each, decoded, with what became of it (a
/// `Routed::Client` is a client to notify); returns how many. What the IOMMU PD does on
/// the SMMU's interrupt.
pub fn take_faults<M: Mmio>(
    service: &mut Service<'_, Smmuv2Backend<M>>,
    now: u64,
    mut f: impl FnMut(&Fault, Routed),
) -> u32 {
    // Read first, then route (the service holds the backend): the fault registers hold
    // one fault each, so at most one global and one per context bank at once.
    let mut drained: [Option<(Fault, Recorded)>; 1 + smmuv2::gr1::MAX_CB] = [None; 1 + smmuv2::gr1::MAX_CB];
    let mut n = 0;
    service.hw_mut().drain_faults(now, |fault, recorded| {
        if let Some(slot) = drained.get_mut(n) {
            *slot = Some((fault, recorded));
            n += 1;
        }
    });
    for (fault, recorded) in drained.iter().flatten() {
        let routed = match *recorded {
            Recorded::Fault(input) => service.route_fault(input),
            Recorded::StreamEvent(stream) => service.route_stream_event(stream),
        };
        f(fault, routed);
    }
    n as u32
}

/// The StreamID the description gave the device `fault` came from, which is what the
/// service attributes faults by. Under an SMR mask (i.MX8QXP: the interconnect sets the
/// bits above the SCU's 7-bit ID) the StreamID the SMMU records (CBFRSYNRAn, sGFSYNR1) is
/// any that matched the pattern, not the described one:
/// - a context fault is its bank's device's: the described StreamID the recorded one
///   matches under the mask, else the device's first (the bank is the device's address
///   space whichever of its SMRs routed the transaction);
/// - a global fault (a blocked device's stream is unmatched) is the device's whose
///   described StreamID the recorded one matches under the mask;
/// - otherwise the StreamID as recorded (a stream no device has).
fn described_stream(
    devices: &[Option<(StreamId, DomainId)>],
    extra: &[Option<(StreamId, u8)>],
    mask: u16,
    fault: &Fault,
) -> u32 {
    let recorded = fault.sid().0;
    let matches = |s: StreamId| (s.0 ^ recorded) & !u32::from(mask) == 0;
    let streams_of = |device: usize| {
        let first = devices.get(device).copied().flatten().map(|(s, _)| s);
        first.into_iter().chain(extra.iter().flatten().filter(move |&&(_, d)| d as usize == device).map(|&(s, _)| s))
    };
    let device = match fault {
        Fault::Context(c) => devices.iter().position(|d| d.is_some_and(|(_, dom)| dom.cb() == c.cb as usize)),
        Fault::Global(_) => (0..devices.len()).find(|&d| streams_of(d).any(matches)),
    };
    let Some(device) = device else { return recorded };
    let mut streams = streams_of(device);
    let first = streams.clone().next();
    streams.find(|&s| matches(s)).or(first).map_or(recorded, |s| s.0)
}

/// A StreamID the SMMU's SMRs can hold (IDR0.NUMSIDB bits).
fn check_width<M: Mmio>(smmu: &Smmu<M>, sid: u32) -> Result<(), Error> {
    let bits = smmu.features().sid_bits.min(16);
    if sid >> bits != 0 {
        return Err(Error::StreamIdTooWide(StreamId(sid)));
    }
    Ok(())
}

/// An SMMUv2 fault as the service's fault input. The kind is the SMMUv3 event number of
/// the same meaning (IHI 0070 7.3: F_TRANSLATION for FSR.TF, F_PERMISSION for FSR.PF,
/// C_BAD_STREAMID for sGFSR.USF...), so a client reads one vocabulary in its fault ring
/// whichever SMMU the board has; 0 where SMMUv3 has no such event. The StreamID is the
/// one the SMMU recorded, CBFRSYNRAn's (context faults) or sGFSYNR1's (global ones);
/// `Smmuv2Backend::drain_faults` replaces it with the one the description gave the
/// device, by which the service attributes the fault (or counts it as unattributed), and
/// routes a global one as a stream event (`Recorded`).
pub fn fault_input(f: &Fault, now: u64) -> FaultInput {
    let kind = match f {
        Fault::Context(c) => match c.kind {
            ContextFaultKind::Translation => id::F_TRANSLATION,
            ContextFaultKind::AddressSize => id::F_ADDR_SIZE,
            ContextFaultKind::AccessFlag => id::F_ACCESS,
            ContextFaultKind::Permission => id::F_PERMISSION,
            ContextFaultKind::TlbMatchConflict => id::F_TLB_CONFLICT,
            ContextFaultKind::UnsupportedUpstream => id::F_UUT,
            ContextFaultKind::External if c.walk => id::F_WALK_EABT,
            ContextFaultKind::External | ContextFaultKind::TlbLock | ContextFaultKind::Other => 0,
        },
        Fault::Global(g) => match g.kind {
            GlobalFaultKind::UnidentifiedStream => id::C_BAD_STREAMID,
            GlobalFaultKind::UnsupportedUpstream => id::F_UUT,
            GlobalFaultKind::Permission => id::F_PERMISSION,
            _ => 0,
        },
    };
    let access = match f {
        Fault::Context(c) => c.access,
        Fault::Global(g) => g.access,
    };
    FaultInput { stream: f.sid().0, iova: f.iova().0, write: access == smmuv2::Access::Write, kind: kind as u32, now }
}

impl<M: Mmio> IommuHw for Smmuv2Backend<M> {
    fn enable(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        // Defence in depth, as the SMMUv3 backend: a StreamID some SMR already routes to
        // another bank is another device's (or was put there by something other than this
        // backend); attaching it here too would be a stream-match conflict (two SMRs
        // matching one StreamID, UNPREDICTABLE: IHI 0062D 2.4) and the driver refuses it,
        // but refusing here first means no SMR of the device is written at all.
        let mut foreign = false;
        self.each_stream(device, |smmu, s, dom| {
            foreign |= smmu.stream_domain(s).is_some_and(|d| d != dom);
            Ok(())
        })?;
        if foreign {
            return Err(HwError);
        }
        // Streams already routed to this domain (an enable after a failed one) stay; the
        // others get an exact-match SMR. `attach` first finishes any invalidation of the
        // domain that was not confirmed, so a stale TLB entry is never routed to.
        let mask = self.smr_mask;
        self.each_stream(device, |smmu, s, dom| match smmu.stream_domain(s) {
            Some(_) => Ok(()),
            None if mask == 0 => smmu.attach(s, dom),
            None => smmu.attach_masked(s, mask, dom),
        })
    }

    fn block(&mut self, device: DeviceIndex) -> Result<(), HwError> {
        // Every stream of the device routed to the driver's sink bank (its S2CR's CBNDX,
        // one write, its SMR valid throughout: `Smmu::block`), then the bank's TLBIASID
        // and TLBSYNC. The sync is the confirmation: until it completed, the block is not
        // reported done. In the sink every transaction faults without an interrupt, so a
        // blocked device that keeps sending does not wake the IOMMU PD. A stream never
        // attached stays unmatched (it faults globally); one already blocked is blocked
        // again, so a retried block re-runs the invalidation below.
        let (_, dom) = self.device(device)?;
        let blocked = self.each_stream(device, |smmu, s, _| match smmu.block(s) {
            Ok(()) | Err(Error::NotAttached(_)) => Ok(()),
            Err(e) => Err(e),
        });
        blocked?;
        if self.smmu.has_stale_entries(dom).map_err(|_| HwError)? {
            self.smmu.invalidate_domain(dom).map_err(|_| HwError)?;
        }
        Ok(())
    }

    fn map(&mut self, device: DeviceIndex, iova: u64, pa: u64, len: u64, rights: Rights) -> Result<(), HwError> {
        let (_, dom) = self.device(device)?;
        // Stage-1 descriptors cannot express write-only (AP[2:1], Arm ARM D8.4): a
        // write-only request maps read/write only if the service granted both; otherwise
        // read-only or refused. As the SMMUv3 backend.
        let perm = if rights.contains(Rights::WRITE) {
            if !rights.contains(Rights::READ) {
                return Err(HwError);
            }
            Perm::ReadWrite
        } else {
            Perm::Read
        };
        let mem = self.smmu.dma_memory();
        self.smmu.map(dom, Iova(iova), PhysAddr(pa), len, perm, mem).map_err(|_| HwError)
    }

    fn unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        let (_, dom) = self.device(device)?;
        // One confirmed invalidation per range (the driver's `unmap`: a TLBIVAL per page,
        // or a TLBIASID past 64, then a TLBSYNC). On the first failure the ranges before
        // it are gone and confirmed, it is out of the tables but maybe cached (the domain
        // is stale), and the ones after it are untouched: what `retry_unmap` expects.
        for &(iova, len) in ranges {
            self.smmu.unmap(dom, Iova(iova), len).map_err(|_| HwError)?;
        }
        Ok(())
    }

    fn unmap_one(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        let (_, dom) = self.device(device)?;
        self.smmu.unmap(dom, Iova(iova), len).map(|_| ()).map_err(|_| HwError)
    }

    fn unmap_deferred(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        // Confirmed at once (its context bank's TLBSYNC), so `sync_unmaps` has nothing
        // left to wait for. An MMU-500 syncs per context bank (SMMU_CBn_TLBSYNC, IHI 0062D
        // 10.8.26), so a batch over several devices would need one sync per bank anyway;
        // deferring them to the end of a batch waits for a board to measure it on.
        self.unmap_one(device, iova, len)
    }

    fn sync_unmaps(&mut self) -> Result<(), HwError> {
        Ok(())
    }

    fn retry_unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError> {
        let (_, dom) = self.device(device)?;
        // Each range is wholly in the tables (its unmap never started) or wholly gone (its
        // invalidation failed): remove the former, skip the latter. The driver's `unmap`
        // first finishes the stale domain's invalidation, so this fails while the SMMU
        // does.
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
