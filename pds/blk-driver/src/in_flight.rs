//! Several reads in flight at once, with `Disk`'s non-blocking requests (`read_blocks_nb`,
//! `peek_used`, `complete_read_blocks`): all submitted, then each completed as the device
//! hands it back, in whatever order. `read_blocks` keeps one request in flight; with
//! several, whatever is paid per wake-up of the device or of the IOMMU PD is paid once for
//! them all. Submitting and completing are two steps (`Group::submit`, `Group::complete`),
//! so that a driver can work while the device reads.

use generic_timer::{hz, ticks};
use virtio_drivers::device::blk::SECTOR_SIZE;

use crate::disk::{Header, Status, UNWRITTEN};
use crate::Wide;

/// The most reads in flight at once: `Wide`'s queue of `QUEUE_SIZE` descriptors, three a
/// read (header, data, status; no indirect ones without a heap).
pub const MAX_IN_FLIGHT: usize = Wide::MAX_IN_FLIGHT;

/// How long the device may take to hand back the last of a group, in seconds: a read of
/// 64 KiB takes well under a millisecond under QEMU, and a stalled host a few.
const PATIENCE_S: u64 = 5;

/// Why a group of reads failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightError {
    /// More reads than `MAX_IN_FLIGHT`, or a buffer that is empty or not whole sectors:
    /// nothing was submitted.
    BadGroup,
    /// The device refused to take a read (virtio-drivers' error); `complete` still waits
    /// for those submitted before it.
    Submit(virtio_drivers::Error),
    /// A read completed with an error (virtio-drivers' error).
    Read(virtio_drivers::Error),
    /// The device handed back a request this group did not submit; as for `Stuck`, the
    /// group's reads may still be in flight.
    UnknownToken(u16),
    /// Reads still in flight after `PATIENCE_S`: the device may still write their buffers,
    /// so the caller must reset it (drop the `Wide`) before it uses them again.
    Stuck,
}

/// A group of reads in flight: `submit` hands them all to the device and returns at once,
/// so the driver can do other work (map the next group's buffers, say) while the device
/// reads; `complete` waits for the device to hand each back. The group holds its buffers
/// borrowed from `submit` until it is dropped, so nothing else can touch them meanwhile.
pub struct Group<'r, 'b> {
    reads: &'r mut [(usize, &'b mut [u8])],
    headers: [Header; MAX_IN_FLIGHT],
    statuses: [Status; MAX_IN_FLIGHT],
    /// The device's token of each read still in flight.
    tokens: [Option<u16>; MAX_IN_FLIGHT],
    /// The first failure, reported by `complete`.
    failed: Option<InFlightError>,
}

impl<'r, 'b> Group<'r, 'b> {
    /// Submit each `(sector, buffer)` of `reads`, all at once. `BadGroup` (more reads than
    /// `MAX_IN_FLIGHT`, or a buffer that is empty or not whole sectors) submits nothing;
    /// otherwise the reads are in flight, and a read the device refused is reported by
    /// `complete`, which still waits for those submitted before it. The device reaches
    /// each buffer through the `Hal` as its read is submitted (`IommuHal` shares it: in
    /// place, or a copy through the pool) and gives it up as its read completes. The group
    /// is built in `group`, the caller's storage, so that it is not moved once the device
    /// holds the addresses of its requests and statuses.
    ///
    /// # Safety
    /// Unless this returns an error, `complete` must be called on the same `Group`, not
    /// moved in between, before it is dropped: the device holds its requests until then.
    /// If `complete` returns `Stuck` or `UnknownToken`, the device must be reset (the `Wide`
    /// dropped) before the buffers are used again.
    pub unsafe fn submit(
        blk: &mut Wide,
        reads: &'r mut [(usize, &'b mut [u8])],
        group: &mut Option<Self>,
    ) -> Result<(), InFlightError> {
        if reads.len() > MAX_IN_FLIGHT || reads.iter().any(|(_, b)| b.is_empty() || b.len() % SECTOR_SIZE != 0) {
            return Err(InFlightError::BadGroup);
        }
        let g = group.insert(Group {
            reads,
            headers: [[0; 16]; MAX_IN_FLIGHT],
            statuses: [UNWRITTEN; MAX_IN_FLIGHT],
            tokens: [None; MAX_IN_FLIGHT],
            failed: None,
        });
        for (i, (sector, buf)) in g.reads.iter_mut().enumerate() {
            // SAFETY: `headers[i]`, `buf` and `statuses[i]` stay in the group, which the caller
            // neither moves nor drops before `complete` hands them back; `buf` is borrowed
            // by the group until then; if the device never hands it back, `Stuck` tells the
            // caller to reset the device before using `buf`.
            match unsafe { blk.read_blocks_nb(*sector, &mut g.headers[i], buf, &mut g.statuses[i]) } {
                Ok(token) => g.tokens[i] = Some(token),
                Err(e) => {
                    g.failed = Some(InFlightError::Submit(e));
                    break;
                }
            }
        }
        Ok(())
    }

    /// Wait, at most `PATIENCE_S`, for the device to hand back every read still in flight,
    /// in whatever order; each buffer then holds its sectors, or the error says which went
    /// wrong (the first failure, `submit`'s included).
    pub fn complete(&mut self, blk: &mut Wide) -> Result<(), InFlightError> {
        let deadline = ticks().saturating_add(PATIENCE_S.saturating_mul(hz()));
        while self.tokens.iter().any(Option::is_some) {
            let Some(token) = blk.peek_used() else {
                if ticks() > deadline {
                    return Err(InFlightError::Stuck);
                }
                core::hint::spin_loop();
                continue;
            };
            let Some(i) = self.tokens.iter().position(|t| *t == Some(token)) else {
                return Err(InFlightError::UnknownToken(token));
            };
            self.tokens[i] = None;
            let (header, buf, status) = (&self.headers[i], &mut *self.reads[i].1, &mut self.statuses[i]);
            // SAFETY: the same request, buffer and status as `read_blocks_nb` was given
            // for this token, where `submit` left them.
            if let Err(e) = unsafe { blk.complete_read_blocks(token, header, buf, status) } {
                self.failed.get_or_insert(InFlightError::Read(e));
            }
        }
        self.failed.map_or(Ok(()), Err)
    }
}

/// Read each `(sector, buffer)` of `reads`, all in flight at once, and return once the
/// device has handed every one back: `Group::submit`, then `Group::complete`.
pub fn read_in_flight(blk: &mut Wide, reads: &mut [(usize, &mut [u8])]) -> Result<(), InFlightError> {
    let mut group = None;
    // SAFETY: completed right below, where `submit` put it.
    unsafe { Group::submit(blk, reads, &mut group)? };
    group.as_mut().map_or(Ok(()), |g| g.complete(blk))
}
