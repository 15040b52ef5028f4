//! The IOMMU below the service, as one trait. The SMMUv3 driver implements it in the IOMMU
//! PD; `tests/` implement it with a model that records page-table contents. Nothing here
//! names SMMU registers.

use iommu_protocol::Rights;

/// A device, by its index in the system description.
pub type DeviceIndex = usize;

/// The IOMMU failed; the service treats the device as no longer trustworthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HwError;

/// Why `IommuHw::map_if_free` did not map: nothing changed either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRefused {
    /// Part of the range is mapped already.
    InUse,
    /// The IOMMU failed.
    Hardware,
}

/// What the service needs from an IOMMU. Each device has its own address space, created
/// empty and blocked at boot.
pub trait IommuHw {
    /// Let `device` translate through its (possibly empty) address space. On error, part
    /// of it may translate (some of its streams): the service blocks it again where it
    /// must not run.
    fn enable(&mut self, device: DeviceIndex) -> Result<(), HwError>;
    /// Make `device` abort every transaction. Returns once the IOMMU has confirmed.
    fn block(&mut self, device: DeviceIndex) -> Result<(), HwError>;
    /// Map `[iova, iova + len)` to `[pa, pa + len)` for `device`. On error nothing changed.
    fn map(&mut self, device: DeviceIndex, iova: u64, pa: u64, len: u64, rights: Rights) -> Result<(), HwError>;
    /// True if `map_if_free` checks, before it writes anything, that no page of the range
    /// is mapped in `device`'s tables, and says `InUse` if one is. The service then leaves
    /// a MAP's overlap check to it rather than searching its own index as well: for a
    /// device that may run, the index and the tables hold the same ranges (a removal the
    /// IOMMU did not confirm blocks the device, and MAP is refused until it is settled).
    const CHECKS_RANGE_FREE: bool = false;
    /// `map`, for a range the service has not checked against the device's mappings when
    /// `CHECKS_RANGE_FREE` is true (checked, and found free, otherwise).
    fn map_if_free(
        &mut self,
        device: DeviceIndex,
        iova: u64,
        pa: u64,
        len: u64,
        rights: Rights,
    ) -> Result<(), MapRefused> {
        self.map(device, iova, pa, len, rights).map_err(|_| MapRefused::Hardware)
    }
    /// Unmap exactly these earlier mappings of `device`. Returns `Ok` only once the IOMMU
    /// has confirmed that no translation of them remains. On error, any of the ranges may
    /// be gone from the tables while a translation of it is still cached (a TLB entry
    /// survives a failed invalidation, and blocking the device does not remove it): the
    /// service must treat them as reachable whenever the device is not blocked, until
    /// `retry_unmap` confirms them gone.
    fn unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError>;
    /// `unmap` of one range, the usual UNMAP. An IOMMU may serve it without the slice:
    /// the range arrives in registers, where a slice built from two 8-byte stores and
    /// read back as one 16-byte pair stalls the load (no store forwarding).
    fn unmap_one(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError> {
        self.unmap(device, &[(iova, len)])
    }
    /// `unmap_one` without waiting for the IOMMU's confirmation, for a batch: the range
    /// leaves the tables and its invalidation is started; `sync_unmaps` confirms it,
    /// together with every other deferred since the last sync. Until then the device may
    /// still translate it, so the service posts no completion for it before, and maps
    /// nothing over it before (break-before-make: it syncs first). `Err`: as `unmap`'s (the
    /// range may be gone from the tables and still cached; `retry_unmap` finishes it).
    fn unmap_deferred(&mut self, device: DeviceIndex, iova: u64, len: u64) -> Result<(), HwError>;
    /// Wait for every `unmap_deferred` since the last call: `Ok` once the IOMMU has
    /// confirmed that no translation of any of them remains (on the SMMUv3, one CMD_SYNC
    /// for all of them, whatever their devices). `Err`: any of them may still be cached,
    /// as after a failed `unmap`, until `retry_unmap` confirms it gone. Nothing deferred:
    /// `Ok` with no IOMMU access.
    fn sync_unmaps(&mut self) -> Result<(), HwError>;
    /// Finish ranges whose `unmap` failed: remove what is left of them in the tables and
    /// invalidate every cached translation of them (ranges already gone from the tables
    /// are not an error). `Ok` once the IOMMU has confirmed.
    fn retry_unmap(&mut self, device: DeviceIndex, ranges: &[(u64, u64)]) -> Result<(), HwError>;
}
