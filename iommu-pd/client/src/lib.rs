//! The client side of the IOMMU service, for driver PDs.
//!
//! `Client` turns typed calls into protected procedure calls over a `Channel` (on seL4
//! Microkit, `sel4_microkit::Channel::pp_call`) and replies into `Result`s.
//!
//! `hal::IommuHal` implements virtio-drivers' `Hal`, so an unmodified virtio driver gets
//! DMA memory the device can reach only through the service: a pool the driver holds a
//! capability for is mapped once, DMA allocations come from it, and `share` bounces
//! buffers through it, so the device never sees the rest of the driver's memory.
//!
//! `queue::MapQueue` posts MAP and UNMAP to the client's mapping queue instead of calling,
//! one notification for many.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod hal;
pub mod pci;
pub mod queue;

use core::ptr::NonNull;

use iommu_protocol::faults::{FaultRecord, FaultRing};
use iommu_protocol::{
    ack_faults, ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_MRS, MAX_REPLY_VALUES,
    MAX_UNMAP_RANGES,
};

/// A protected procedure call to the IOMMU PD.
pub trait Channel {
    /// Call with `label` and message registers `mrs`; the reply's message registers are
    /// written to `reply`; returns the reply's label.
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; MAX_REPLY_VALUES]) -> u64;
}

/// Typed access to the service.
#[derive(Debug)]
pub struct Client<C: Channel> {
    channel: C,
}

impl<C: Channel> Client<C> {
    /// A client over `channel`.
    pub fn new(channel: C) -> Self {
        Self { channel }
    }

    /// The channel.
    pub fn channel(&mut self) -> &mut C {
        &mut self.channel
    }

    fn call(&mut self, req: Request) -> Result<[u64; MAX_REPLY_VALUES], ErrorCode> {
        let mut mrs = [0; MAX_MRS];
        let (label, n) = req.encode(&mut mrs);
        self.call_raw(label, &mrs[..n])
    }

    fn call_raw(&mut self, label: u64, mrs: &[u64]) -> Result<[u64; MAX_REPLY_VALUES], ErrorCode> {
        let mut out = [0; MAX_REPLY_VALUES];
        let reply_label = self.channel.call(label, mrs, &mut out);
        match Reply::decode(reply_label, &out) {
            Reply::Ok { values, .. } => Ok(values),
            Reply::Err(e) => Err(e),
        }
    }

    /// Measurement only (see `iommu_protocol::measure::BYPASS`): put `device`'s stream in
    /// bypass, or back to translation. A product IOMMU PD answers `UnknownOp`.
    pub fn measure_bypass(&mut self, device: DeviceId, bypass: bool) -> Result<(), ErrorCode> {
        self.call_raw(iommu_protocol::measure::BYPASS, &[device.0 as u64, bypass as u64]).map(|_| ())
    }

    /// Measurement only (see `iommu_protocol::measure::WAKE_UP`): the IOMMU PD's own times
    /// of its wake-ups (began, ended, longest). A product IOMMU PD answers `UnknownOp`.
    pub fn measure_wake_up(&mut self) -> Result<[u64; 3], ErrorCode> {
        self.call_raw(iommu_protocol::measure::WAKE_UP, &[]).map(|v| {
            use iommu_protocol::measure::{WAKE_UP_BEGAN, WAKE_UP_ENDED, WAKE_UP_LONGEST};
            [v[WAKE_UP_BEGAN], v[WAKE_UP_ENDED], v[WAKE_UP_LONGEST]]
        })
    }

    /// Map `len` bytes at `offset` of capability `cap` for `device`; returns the IOVA.
    pub fn map(
        &mut self,
        cap: Handle,
        device: DeviceId,
        offset: u64,
        len: u64,
        iova: Option<u64>,
        rights: Rights,
    ) -> Result<u64, ErrorCode> {
        self.call(Request::Map { cap, device, offset, len, iova, rights }).map(|v| v[0])
    }

    /// MAP, as a driver's first MAP of `device` at its start (its first run, or after the
    /// IOMMU PD restarted it from its entry): a device whose PCI function was away at its
    /// last client's teardown (not answering, so neither stopped nor reset then) is left
    /// stopped for the restarted client, and MAP answers `Stopped`; this then RESUMEs it
    /// (the IOMMU PD puts the function back and resets it first) and maps once more. Only
    /// `Stopped` is resumed: MAP answers `Quarantined` ahead of it, so a device a storm
    /// quarantined is never resumed here (that is the driver's decision, and the
    /// description's: RESUME answers `Denied` where it does not allow it), nor one whose
    /// crashed client is still being torn down. RESUME's own refusals come back as they
    /// are, the device left stopped: `ResetRationed` (RESUME again later), `DeviceMissing`
    /// (the function is still away), `Hardware` (a removal on it still not confirmed).
    /// Not for a device this run stopped itself (STOP): that one is the driver's to RESUME
    /// when it means to.
    pub fn map_at_start(
        &mut self,
        cap: Handle,
        device: DeviceId,
        offset: u64,
        len: u64,
        iova: Option<u64>,
        rights: Rights,
    ) -> Result<u64, ErrorCode> {
        match self.map(cap, device, offset, len, iova, rights) {
            Err(ErrorCode::Stopped) => {
                self.resume(device)?;
                self.map(cap, device, offset, len, iova, rights)
            }
            answered => answered,
        }
    }

    /// Unmap the mappings of `device` starting at `iovas` (at most 64); returns once the
    /// IOMMU has confirmed.
    pub fn unmap(&mut self, device: DeviceId, iovas: &[u64]) -> Result<(), ErrorCode> {
        if iovas.is_empty() || iovas.len() > MAX_UNMAP_RANGES {
            return Err(ErrorCode::Malformed);
        }
        let mut v = [0; MAX_UNMAP_RANGES];
        v[..iovas.len()].copy_from_slice(iovas);
        self.call(Request::Unmap { device, iovas: v, count: iovas.len() }).map(|_| ())
    }

    /// Give `to` a narrower capability; returns (the grant, for `revoke`; the handle the
    /// receiver uses).
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &mut self,
        cap: Handle,
        to: ClientId,
        offset: u64,
        len: u64,
        rights: Rights,
        devices: u64,
    ) -> Result<(Handle, Handle), ErrorCode> {
        self.call(Request::Grant { cap, to, offset, len, rights, devices })
            .map(|v| (Handle(v[0] as u32), Handle(v[1] as u32)))
    }

    /// Take back a grant and everything mapped through it.
    pub fn revoke(&mut self, grant: Handle) -> Result<(), ErrorCode> {
        self.call(Request::Revoke { grant }).map(|_| ())
    }

    /// Acknowledge fault records up to `upto`; returns that record as it stands now, final
    /// (`iommu_protocol::ack_faults`), which `FaultRecord::acknowledged` takes over a copy.
    pub fn ack_faults(&mut self, upto: u64) -> Result<[u64; ack_faults::VALUES], ErrorCode> {
        self.call(Request::AckFaults { upto }).map(|v| core::array::from_fn(|i| v[i]))
    }

    /// Copy the fault records published since `*next` in this PD's ring `ring` into `out`
    /// (at most `out.len()`), acknowledge them, and return how many; `*next` moves past
    /// them. The last one is brought up to the acknowledgment's reply: until then the
    /// IOMMU PD may fold more faults of its burst into it (when it preempts this PD between
    /// the copy and the call), which the copy alone never showed.
    ///
    /// # Safety
    /// `ring` must be this PD's mapping of its fault ring (`FaultRing::read_shared`).
    pub unsafe fn take_faults(&mut self, ring: NonNull<FaultRing>, next: &mut u64, out: &mut [FaultRecord]) -> usize {
        // SAFETY: the caller vouches for the mapping.
        let n = unsafe { FaultRing::read_shared(ring, *next, out) };
        let Some(last) = out[..n].last_mut() else {
            return 0;
        };
        *next = last.seq + 1;
        if let Ok(reply) = self.ack_faults(last.seq) {
            last.acknowledged(&reply);
        }
        n
    }

    /// Give back a capability received by GRANT (and everything mapped from it).
    pub fn release(&mut self, cap: Handle) -> Result<(), ErrorCode> {
        self.call(Request::Release { cap }).map(|_| ())
    }

    /// Ask to resume a quarantined device, one blocked by a removal the IOMMU did not
    /// confirm (the removal is retried first), or one stopped by `stop` (it comes back
    /// with the description's static mappings).
    pub fn resume(&mut self, device: DeviceId) -> Result<(), ErrorCode> {
        self.call(Request::Resume { device }).map(|_| ())
    }

    /// Stop `device`: once this returns `Ok`, it reaches nothing (blocked, every mapping
    /// gone, the description's static ones too), confirmed by the IOMMU, and if it is a
    /// PCI function its Bus Master is off and it was reset (FLR) where it can be. Returns
    /// what was done to the function (`iommu_protocol::stop` bits, 0 if it is none).
    /// What a VMM does when it stops the virtual machine the device is passed through to.
    /// `resume` starts it again.
    ///
    /// Once confirmed, this PD's `hal::IommuHal` is told (`hal::forget_device`): after a
    /// RESUME the device's IOVAs go to new mappings, which an UNMAP the Hal still meant to
    /// send for an old one would take. Told here, so that a STOP through any `Client` of
    /// the PD reaches it (before, only `IommuHal::stop` did, and a driver that reset its
    /// device with its own `Client` had the Hal's late UNMAP take its pool:
    /// tests/in_place_stop_by_own_client.rs). The Hal is one static per program: in a host
    /// test it is every `Client`'s of that test binary.
    pub fn stop(&mut self, device: DeviceId) -> Result<u64, ErrorCode> {
        let function = self.call(Request::Stop { device }).map(|v| v[0])?;
        hal::forget_device(device);
        Ok(function)
    }

    /// Read `width` (1, 2 or 4) bytes at `offset` of `device`'s PCI configuration space
    /// (the IOMMU PD owns it; no driver maps ECAM).
    pub fn config_read(&mut self, device: DeviceId, offset: u16, width: u8) -> Result<u32, ErrorCode> {
        self.call(Request::ConfigRead { device, offset, width }).map(|v| v[0] as u32)
    }

    /// Write them, where a driver may (`iommu_protocol::Request::ConfigWrite`); anything
    /// else is `ConfigDenied` and nothing is written. Returns what the register reads
    /// after the write (for a BAR written with all ones, its size mask).
    pub fn config_write(&mut self, device: DeviceId, offset: u16, width: u8, value: u32) -> Result<u32, ErrorCode> {
        self.call(Request::ConfigWrite { device, offset, width, value }).map(|v| v[0] as u32)
    }

    /// (mappings, mapping quota, pages, page quota, faults recorded, faults dropped,
    /// removals pending, grants made, grant quota).
    pub fn query(&mut self) -> Result<[u64; MAX_REPLY_VALUES], ErrorCode> {
        self.call(Request::Query)
    }

    /// The caller's `index`-th mapping: (device, IOVA, length, rights, region, offset,
    /// removal pending); `NotMapped` past the last.
    pub fn query_mapping(&mut self, index: u64) -> Result<[u64; MAX_REPLY_VALUES], ErrorCode> {
        self.call(Request::QueryMapping { index })
    }
}
