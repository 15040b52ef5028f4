//! Fault records, attributed by the service and queued per client: a fixed ring the client reads and
//! acknowledges. When the ring is full, further records are counted as dropped (and the
//! count is reported), never lost silently.
//!
//! A ring is one 4 KiB page with a fixed C layout, meant to live in memory the IOMMU PD
//! writes and its client maps read-only. The service writes a record, then publishes it
//! by storing `published` with release ordering; the client reads `published` with
//! acquire ordering (`FaultRing::read_shared`), copies the records before it, and
//! acknowledges them with ACK_FAULTS. The service never overwrites a record the client
//! has not acknowledged, except to fold later faults of the same burst into the newest
//! one (its `repeats` and `iova_last` may still grow, after the client copied it): so
//! ACK_FAULTS replies with the record acknowledged as it then stands, final
//! (`FaultRing::ack`), and the client takes that over its copy (`FaultRecord::acknowledged`).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::ack_faults;

/// Records a ring holds before the client must acknowledge.
pub const FAULT_RING: usize = 32;

/// One attributed fault, as the owning client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FaultRecord {
    /// Sequence number, from 0, per client.
    pub seq: u64,
    /// The device (index in the system description).
    pub device: u32,
    /// Its StreamID.
    pub stream: u32,
    /// The faulting bus address.
    pub iova: u64,
    /// What went wrong: one of `kind`'s values, the SMMUv3 event number (IHI 0070 7.3) of
    /// the fault whichever SMMU the board has, 0 for one with no such number.
    pub kind: u32,
    /// 1 if the device tried to write, 0 if it read.
    pub write: u32,
    /// The region the address falls in (or is next to), by its index among the memory
    /// regions devices may reach (those a capability or an iomap names, in the
    /// description's order: `iommu-sdf report` lists them), or `NO_REGION` if none.
    pub region: u32,
    /// `INSIDE` if the address is inside one of the device's mappings (it lacked the
    /// rights), `NEAR` if it is next to one (within a page: past an end of a buffer).
    /// Meaningless when `region` is `NO_REGION`.
    pub near: u32,
    /// Offset into the region (of the address, or of the nearest mapped byte).
    pub offset: u64,
    /// 1 if this fault quarantined the device.
    pub quarantined: u32,
    /// Records dropped for lack of room before this one: in this ring, or lost by the
    /// IOMMU's own event queue (counted one per overflow in every client's ring, whose
    /// records were lost being unknown).
    pub dropped_before: u32,
    /// Further faults folded into this record: same device, kind and direction, at
    /// addresses up to `iova_last` (a DMA burst faults once per bus transaction).
    pub repeats: u32,
    /// Highest faulting address folded into this record.
    pub iova_last: u64,
}

/// A record that tells its client of something other than a device's fault: its stream
/// and addresses mean nothing (printed as a fault's, it would read as a DMA at IOVA 0 that
/// never happened). `Display` gives the words every client prints after "told: "; the C
/// header's `print_faults` prints the same (`tests/c_header.rs` holds the two together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// `kind::SERVICE_FAILED`: the IOMMU service failed for good.
    ServiceFailed,
    /// `kind::QUARANTINED_AT_OVERFLOW`: this device, on probation after a storm, was
    /// quarantined again at an overflow of the IOMMU's event queue.
    QuarantinedAtOverflow {
        /// The device, by its index in the system description.
        device: u32,
    },
}

impl core::fmt::Display for Notice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Notice::ServiceFailed => f.write_str(
                "the IOMMU service FAILED: every call is refused from now on, and no mapping or removal in \
                 progress will complete",
            ),
            Notice::QuarantinedAtOverflow { device } => {
                write!(f, "device {device:#x} QUARANTINED at an event-queue overflow; RESUME it when ready")
            }
        }
    }
}

impl FaultRecord {
    /// The notice this record is, or `None` for a device's fault.
    pub fn notice(&self) -> Option<Notice> {
        match self.kind {
            kind::SERVICE_FAILED => Some(Notice::ServiceFailed),
            kind::QUARANTINED_AT_OVERFLOW => Some(Notice::QuarantinedAtOverflow { device: self.device }),
            _ => None,
        }
    }

    /// For the client: this copy of the record it has just acknowledged brought up to
    /// ACK_FAULTS's reply (`crate::ack_faults`), which is the record once no more faults
    /// can fold into it: the repeats and range folded in after the copy was made (the
    /// IOMMU PD drained the SMMU's events between the client's read and its call) would
    /// otherwise never reach it. Both only grow, so a reply of another record, or none
    /// (zeros), changes nothing.
    pub fn acknowledged(&mut self, reply: &[u64]) {
        if reply.len() < ack_faults::VALUES || reply[ack_faults::SEQ] != self.seq {
            return;
        }
        let repeats = u32::try_from(reply[ack_faults::REPEATS]).unwrap_or(u32::MAX);
        self.repeats = self.repeats.max(repeats);
        self.iova_last = self.iova_last.max(reply[ack_faults::IOVA_LAST]);
    }
}

/// `FaultRecord::region` when the address is in, or next to, none of the device's mappings.
pub const NO_REGION: u32 = u32::MAX;
/// `FaultRecord::near`: the address is inside a mapping; `offset` is its offset into the
/// region.
pub const INSIDE: u32 = 0;
/// `FaultRecord::near`: the address is next to a mapping, within a page of it; `offset` is
/// that of the mapping's nearest byte.
pub const NEAR: u32 = 1;

/// `FaultRecord::kind`'s values: SMMUv3's event numbers (IHI 0070 7.3, table 7-1) of the
/// faults a client is told of. An SMMUv2's faults are given the number of the SMMUv3
/// event of the same meaning.
pub mod kind {
    /// A fault with no SMMUv3 event number of the same meaning (on SMMUv3, one other than
    /// a translation or permission fault).
    pub const OTHER: u32 = 0;
    /// F_UUT: a transaction the SMMU does not support.
    pub const F_UUT: u32 = 0x01;
    /// C_BAD_STREAMID: a StreamID the SMMU is not configured for.
    pub const C_BAD_STREAMID: u32 = 0x02;
    /// F_WALK_EABT: an external abort while walking the page tables.
    pub const F_WALK_EABT: u32 = 0x0b;
    /// F_TRANSLATION: no mapping at the address (none ever, or unmapped, or past a
    /// buffer's end).
    pub const F_TRANSLATION: u32 = 0x10;
    /// F_ADDR_SIZE: an address wider than the device's address space.
    pub const F_ADDR_SIZE: u32 = 0x11;
    /// F_ACCESS: the mapping's access flag is clear.
    pub const F_ACCESS: u32 = 0x12;
    /// F_PERMISSION: a mapping is there, but it does not allow this access (a write
    /// through a read-only mapping, or a read through a write-only one).
    pub const F_PERMISSION: u32 = 0x13;
    /// F_TLB_CONFLICT: the SMMU's TLB held conflicting entries.
    pub const F_TLB_CONFLICT: u32 = 0x20;
    /// Not a fault and not an SMMUv3 event number (those fit in 8 bits): the IOMMU failed
    /// (while serving: SMMUv3 service failure, or it stopped answering; or at start-up)
    /// and was failed closed as far as it could be. Nothing is served from now on: every
    /// call answers Unavailable, and no mapping or removal in progress will complete. Its
    /// `device` is `NO_DEVICE`, its addresses 0. Whether every device's DMA now aborts is
    /// the ring's `failed` word (`failed::DMA_STOPPED` or `failed::DMA_NOT_KNOWN_STOPPED`).
    pub const SERVICE_FAILED: u32 = 0x100;
    /// Not a fault and not an SMMUv3 event number: the device, resumed from a storm's
    /// quarantine earlier (on probation), was quarantined again because the IOMMU's event
    /// queue every device shares overflowed with a quarter of it the device's own records
    /// (whosever records were lost).
    /// `quarantined` is 1, its addresses 0, its `region` `NO_REGION`; RESUME it as after
    /// a storm.
    pub const QUARANTINED_AT_OVERFLOW: u32 = 0x101;
}

/// `FaultRecord::device` of a record that concerns no one device (one of kind
/// SERVICE_FAILED).
pub const NO_DEVICE: u32 = u32::MAX;

/// The values of a ring's `failed` word (`FaultRing::failure_shared`): 0 while the
/// service has not failed, then what failing the IOMMU closed could guarantee.
pub mod failed {
    /// The IOMMU confirmed that every device's DMA aborts (or faults) from now on:
    /// SMMUv3: GBPA.ABORT in effect and SMMUEN = 0 acknowledged, or every STE aborting
    /// with every cached entry invalidated and the invalidation completed; MMU-500: every
    /// stream faulting, read back.
    pub const DMA_STOPPED: u64 = 1;
    /// It could not confirm it: a device may still reach what it had mapped (SMMUv3: no
    /// GBPA, as QEMU 7.2, or a disable never acknowledged, with what the SMMU cached not
    /// invalidated; or an SMMU refused at start-up, left as firmware had it).
    pub const DMA_NOT_KNOWN_STOPPED: u64 = 2;
}

/// A failed ring's `failed` word as its client tells it: the failure (as
/// `Notice::ServiceFailed` says it), then whether DMA is known to be stopped. The C
/// header's `print_faults` prints the same (`tests/c_header.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceFailure(pub u64);

impl core::fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}; ", Notice::ServiceFailed)?;
        f.write_str(if self.0 == failed::DMA_STOPPED {
            "every device's DMA aborts"
        } else {
            "DMA NOT KNOWN TO BE STOPPED: a device may still reach what it had mapped"
        })
    }
}

/// A client's ring: one page, C layout.
#[derive(Debug)]
#[repr(C, align(4096))]
pub struct FaultRing {
    /// Records with `seq < published` are valid.
    published: AtomicU64,
    /// Records dropped because the ring was full, ever, and one for each overflow of the
    /// IOMMU's event queue.
    dropped: AtomicU64,
    /// Records with `seq < acked` have been read (the client told the service so).
    acked: u64,
    dropped_unreported: u64,
    records: [FaultRecord; FAULT_RING],
    /// Nonzero once the IOMMU service has failed (`fail`), set whether or not its
    /// SERVICE_FAILED record found room: a client whose ring was full then learns it too.
    /// Its value says whether every device's DMA is known to abort (`failed`).
    failed: AtomicU64,
}

/// Byte offsets of the ring's fields, for the C declaration of the same page
/// (`iommu-pd/c/iommu_service.h`).
pub mod layout {
    use super::FaultRing;
    /// `published`.
    pub const PUBLISHED: usize = core::mem::offset_of!(FaultRing, published);
    /// `dropped`.
    pub const DROPPED: usize = core::mem::offset_of!(FaultRing, dropped);
    /// `acked`.
    pub const ACKED: usize = core::mem::offset_of!(FaultRing, acked);
    /// `dropped_unreported`.
    pub const DROPPED_UNREPORTED: usize = core::mem::offset_of!(FaultRing, dropped_unreported);
    /// `records`.
    pub const RECORDS: usize = core::mem::offset_of!(FaultRing, records);
    /// `failed`.
    pub const FAILED: usize = core::mem::offset_of!(FaultRing, failed);
}

impl Default for FaultRing {
    fn default() -> Self {
        Self {
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            acked: 0,
            dropped_unreported: 0,
            records: [FaultRecord::default(); FAULT_RING],
            failed: AtomicU64::new(0),
        }
    }
}

impl FaultRing {
    /// Empty the ring.
    pub fn reset(&mut self) {
        *self = FaultRing::default();
    }

    /// For the client: copy the published records from sequence number `from` into `out`;
    /// returns how many were copied. Reads `published` before the records it covers.
    ///
    /// # Safety
    /// `ring` must point to a ring (possibly being written by the service in another
    /// address space) that stays mapped for the call.
    pub unsafe fn read_shared(ring: NonNull<FaultRing>, from: u64, out: &mut [FaultRecord]) -> usize {
        // SAFETY: the caller vouches for the mapping; `published` is an atomic.
        let published = unsafe { (*ring.as_ptr()).published.load(Ordering::Acquire) };
        let mut n = 0;
        let mut seq = from;
        while seq < published && n < out.len() && published - seq <= FAULT_RING as u64 {
            let slot = (seq % FAULT_RING as u64) as usize;
            // SAFETY: `slot < FAULT_RING`; published records are not rewritten until
            // acknowledged. Volatile: another address space writes this memory.
            out[n] = unsafe { core::ptr::addr_of!((*ring.as_ptr()).records[slot]).read_volatile() };
            n += 1;
            seq += 1;
        }
        n
    }

    /// Queue a record; false (and counted) if the ring is full.
    pub fn push(&mut self, mut r: FaultRecord) -> bool {
        let next = self.published.load(Ordering::Relaxed);
        if next - self.acked >= FAULT_RING as u64 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_unreported += 1;
            return false;
        }
        r.seq = next;
        r.iova_last = r.iova;
        r.repeats = 0;
        r.dropped_before = u32::try_from(self.dropped_unreported).unwrap_or(u32::MAX);
        self.dropped_unreported = 0;
        self.records[(next % FAULT_RING as u64) as usize] = r;
        // The record must be visible before the client can see it is there.
        self.published.store(next + 1, Ordering::Release);
        true
    }

    /// Fold `r` into the newest unread record if it continues the same burst (same
    /// device, kind and direction, within a page past the last address). True if folded.
    pub fn coalesce(&mut self, r: &FaultRecord) -> bool {
        let next = self.published.load(Ordering::Relaxed);
        if next == self.acked {
            return false;
        }
        let last = &mut self.records[((next - 1) % FAULT_RING as u64) as usize];
        let continues = last.device == r.device
            && last.kind == r.kind
            && last.write == r.write
            && r.quarantined == 0
            && r.iova >= last.iova
            && r.iova <= last.iova_last.saturating_add(4096);
        if continues {
            last.repeats = last.repeats.saturating_add(1);
            last.iova_last = last.iova_last.max(r.iova);
        }
        continues
    }

    /// The IOMMU service failed for good: a record of kind `SERVICE_FAILED` is queued (or
    /// counted dropped if the ring is full, as any record), and `failed` is set after it
    /// either way, so that a client whose ring was full learns it too (`failed_shared`):
    /// with only the record, such a client saw one more record dropped and nothing else,
    /// and one that waits without calling waited for ever. `dma_stopped` is what failing
    /// the IOMMU closed confirmed, kept in `failed` (`failed::DMA_STOPPED` or
    /// `failed::DMA_NOT_KNOWN_STOPPED`): before, every client was told the same whatever
    /// the IOMMU had been left doing.
    pub fn fail(&mut self, dma_stopped: bool) {
        self.push(FaultRecord {
            device: NO_DEVICE,
            kind: kind::SERVICE_FAILED,
            region: NO_REGION,
            ..FaultRecord::default()
        });
        let word = if dma_stopped { failed::DMA_STOPPED } else { failed::DMA_NOT_KNOWN_STOPPED };
        self.failed.store(word, Ordering::Release);
    }

    /// For the client: the ring's `failed` word, 0 while the service has not failed, then
    /// one of `failed`'s values.
    ///
    /// # Safety
    /// As `read_shared`.
    pub unsafe fn failure_shared(ring: NonNull<FaultRing>) -> u64 {
        // SAFETY: the caller vouches for the mapping; `failed` is an atomic.
        unsafe { (*ring.as_ptr()).failed.load(Ordering::Acquire) }
    }

    /// For the client: whether the IOMMU service has failed (`fail`). Read after a
    /// notification, it is true from the one that told of the failure on, whether or not
    /// the ring had room for the record.
    ///
    /// # Safety
    /// As `read_shared`.
    pub unsafe fn failed_shared(ring: NonNull<FaultRing>) -> bool {
        // SAFETY: the caller vouches for the mapping; `failed` is an atomic.
        unsafe { (*ring.as_ptr()).failed.load(Ordering::Acquire) != 0 }
    }

    /// Whether `fail` was called.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed) != 0
    }

    /// Count one record dropped that never reached the ring: the IOMMU's own event queue
    /// overflowed, and which client's records it lost is unknown.
    pub fn lost(&mut self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_unreported += 1;
    }

    /// The client has read every record up to and including `upto`: `None` if `upto` was
    /// never handed out, else ACK_FAULTS's reply (`crate::ack_faults`), record `upto` as
    /// it stands now, final: `coalesce` folds only into the newest record, and only while
    /// it is not acknowledged.
    pub fn ack(&mut self, upto: u64) -> Option<[u64; ack_faults::VALUES]> {
        if upto >= self.published.load(Ordering::Relaxed) {
            return None;
        }
        self.acked = self.acked.max(upto + 1);
        let r = &self.records[(upto % FAULT_RING as u64) as usize];
        Some([r.seq, u64::from(r.repeats), r.iova_last])
    }

    /// Records not yet acknowledged, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &FaultRecord> {
        (self.acked..self.recorded()).map(|s| &self.records[(s % FAULT_RING as u64) as usize])
    }

    /// Records ever queued.
    pub fn recorded(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Records dropped because the ring was full, and one for each overflow of the
    /// IOMMU's event queue (`lost`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_and_read_by_the_client() {
        assert_eq!(core::mem::size_of::<FaultRing>(), 4096);
        let mut ring = FaultRing::default();
        for i in 0..3 {
            assert!(ring.push(FaultRecord { iova: 0x1000 * i, ..FaultRecord::default() }));
        }
        let mut out = [FaultRecord::default(); 8];
        // SAFETY: a live local ring.
        let n = unsafe { FaultRing::read_shared(NonNull::from(&ring), 1, &mut out) };
        assert_eq!(n, 2);
        assert_eq!((out[0].seq, out[0].iova, out[1].iova), (1, 0x1000, 0x2000));
    }
}
