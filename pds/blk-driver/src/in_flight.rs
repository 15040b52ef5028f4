//! Several reads in flight at once, with virtio-drivers' non-blocking requests
//! (`read_blocks_nb`, `peek_used`, `complete_read_blocks`): all submitted, then each
//! completed as the device hands it back, in whatever order. `read_blocks` keeps one
//! request in flight; with several, whatever is paid per wake-up of the device or of the
//! IOMMU PD is paid once for them all.

use generic_timer::{hz, ticks};
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE};

use crate::Blk;

/// The most reads in flight at once: virtio-drivers' block queue has 16 descriptors and,
/// without its `alloc` feature (no heap here), no indirect ones, so each read takes three
/// (header, data, status).
pub const MAX_IN_FLIGHT: usize = 16 / 3;

/// How long the device may take to hand back the last of a group, in seconds: a read of
/// 64 KiB takes well under a millisecond under QEMU, and a stalled host a few.
const PATIENCE_S: u64 = 5;

/// Why a group of reads failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightError {
    /// More reads than `MAX_IN_FLIGHT`, or a buffer that is empty or not whole sectors:
    /// nothing was submitted.
    BadGroup,
    /// The device refused to take a read (virtio-drivers' error); those submitted before it
    /// were completed.
    Submit(virtio_drivers::Error),
    /// A read completed with an error (virtio-drivers' error).
    Read(virtio_drivers::Error),
    /// The device handed back a request this group did not submit; as for `Stuck`, the
    /// group's reads may still be in flight.
    UnknownToken(u16),
    /// Reads still in flight after `PATIENCE_S`: the device may still write their buffers,
    /// so the caller must reset it (drop the `Blk`) before it uses them again.
    Stuck,
}

/// Read each `(sector, buffer)` of `reads`, all in flight at once, and return once the
/// device has handed every one back (each buffer then holds its sectors, or the error
/// says which went wrong). The device reaches each buffer through the `Hal` as its request
/// is submitted (`IommuHal` shares it: in place, or a copy through the pool) and gives it
/// up as its request completes.
pub fn read_in_flight(blk: &mut Blk, reads: &mut [(usize, &mut [u8])]) -> Result<(), InFlightError> {
    if reads.len() > MAX_IN_FLIGHT || reads.iter().any(|(_, b)| b.is_empty() || b.len() % SECTOR_SIZE != 0) {
        return Err(InFlightError::BadGroup);
    }
    let mut reqs: [BlkReq; MAX_IN_FLIGHT] = core::array::from_fn(|_| BlkReq::default());
    let mut resps: [BlkResp; MAX_IN_FLIGHT] = core::array::from_fn(|_| BlkResp::default());
    let mut tokens = [None; MAX_IN_FLIGHT];
    let mut failed = None;
    for (i, (sector, buf)) in reads.iter_mut().enumerate() {
        // SAFETY: `reqs[i]`, `buf` and `resps[i]` are touched again only by the
        // `complete_read_blocks` below, once the device has handed this request back; if
        // it never does, `Stuck` tells the caller to reset the device before using `buf`,
        // and `reqs`/`resps` never reach the device (`IommuHal` copies them through its
        // pool, since they lie outside its in-place memory).
        match unsafe { blk.read_blocks_nb(*sector, &mut reqs[i], buf, &mut resps[i]) } {
            Ok(token) => tokens[i] = Some(token),
            Err(e) => {
                failed = Some(InFlightError::Submit(e));
                break;
            }
        }
    }
    let deadline = ticks().saturating_add(PATIENCE_S.saturating_mul(hz()));
    while tokens.iter().any(Option::is_some) {
        let Some(token) = blk.peek_used() else {
            if ticks() > deadline {
                return Err(InFlightError::Stuck);
            }
            core::hint::spin_loop();
            continue;
        };
        let Some(i) = tokens.iter().position(|t| *t == Some(token)) else {
            return Err(InFlightError::UnknownToken(token));
        };
        tokens[i] = None;
        // SAFETY: the same request, buffer and status as `read_blocks_nb` was given for
        // this token.
        if let Err(e) = unsafe { blk.complete_read_blocks(token, &reqs[i], reads[i].1, &mut resps[i]) } {
            failed.get_or_insert(InFlightError::Read(e));
        }
    }
    failed.map_or(Ok(()), Err)
}
