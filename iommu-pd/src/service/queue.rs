//! The mapping queue (`iommu_protocol::queue`): a client's batch of MAP and UNMAP entries,
//! each checked and applied exactly as the call would be, every UNMAP among them
//! confirmed by one sync, and only then their completions posted.
//!
//! Strict stays strict: an UNMAP entry's mapping leaves the tables and its device's index
//! at once, in the one descent of the index that finds it (`IommuHw::unmap_deferred`
//! inside `Index::take`), but keeps its slot and its quota until the batch's sync
//! confirms it (`IommuHw::sync_unmaps`); its completion is written after that. Out of the
//! index, its IOVA range is free to the entries after it, as it would be after the call:
//! a MAP that lands on a range whose removal is in flight first has the batch's removals
//! so far confirmed (break-before-make), and so does one refused for a quota or a slot a
//! removal in flight still holds (then it is checked again), and so does an UNMAP of a
//! mapping an entry before it took out of the index. So a batch answers every
//! entry as the same calls in the same order would. If the sync fails, the removals in
//! flight go back into their indexes, pending, their devices blocked, as a failed call
//! leaves them. A batch runs to its end before the service takes anything else, so a call
//! never sees half of one.

use iommu_protocol::queue::{Cursor, Queue, Taken, QUEUE_BATCH};

use super::mappings::Held;
use super::*;

/// A removal started by a queued UNMAP and not confirmed yet, out of its index: its
/// completion is written when the sync confirms it (or answers `Hardware`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct InFlight {
    /// The entry's tag, for its completion.
    tag: u64,
    /// Its mapping slot.
    slot: u16,
    /// Its device.
    device: u8,
    /// Its place in the batch (and its completion's).
    entry: u8,
}

/// What became of an entry that was not refused.
enum Queued {
    /// Done: the reply's value (MAP's IOVA).
    Done(u64),
    /// An UNMAP whose removal is in flight: `confirm` answers it.
    InFlight,
    /// An UNMAP of device `d`'s mapping at this IOVA, which its index did not have:
    /// `unmap_not_taken` answers it.
    Missing(DeviceIndex, u64),
}

/// A batch being served: where its completions go, and how many removals are in flight
/// (`Service::in_flight[..in_flight_len]`: kept in the service, so that no batch clears
/// a table of them).
struct Batch<'q, 'r> {
    /// The client whose queue it is.
    client: usize,
    /// Its queue, and the service's place in it: each entry's completion is written as
    /// soon as it is final (a MAP's at once, an UNMAP's once confirmed), invisible to
    /// the client until the batch publishes them all.
    q: &'q Queue<'r>,
    cursor: Cursor,
    in_flight_len: usize,
    /// The IOVAs the removals in flight span, whatever their devices: `[lo, hi)`, empty
    /// when `lo >= hi`. A MAP outside it needs no look at each of them.
    span: (u64, u64),
}

impl<'a, H: IommuHw> Service<'a, H> {
    /// Serve up to `QUEUE_BATCH` entries of `client`'s queue `q` (the PD shell calls this
    /// when the client notifies): each is answered by a completion, in order, posted
    /// after every removal among them was confirmed. Returns how many were taken; if the
    /// client posted more, they wait for its next notification (a client that finds
    /// requests untaken when it is notified notifies again), so a flood delays other
    /// clients by at most one batch per queue.
    pub fn serve_queue(&mut self, client: usize, q: &Queue<'_>) -> usize {
        self.serve_queue_up_to(client, q, QUEUE_BATCH)
    }

    /// `serve_queue`, taking at most `max` entries (and never more than `QUEUE_BATCH`):
    /// the PD shell paces a client's queue with it (`crate::pacing`).
    pub fn serve_queue_up_to(&mut self, client: usize, q: &Queue<'_>, max: usize) -> usize {
        if self.unblocked != 0 {
            self.retry_blocks();
        }
        let Some(tables) = self.clients.get(client).filter(|_| client < self.cfg.clients.len()) else {
            return 0;
        };
        let cursor = tables.queue;
        let n = q.takeable(&cursor, max.min(QUEUE_BATCH));
        if n == 0 {
            return 0;
        }
        let mut b = Batch { client, q, cursor, in_flight_len: 0, span: (u64::MAX, 0) };
        // What the last MAP's capability and device checks found (`Service::held`).
        let mut held = None;
        let mut i = 0;
        loop {
            // The entries up to the end, or up to an UNMAP its device's index did not
            // have, which `unmap_not_taken` answers here, outside this loop: called from
            // inside it, that cold call cost every queued request 4 instructions more
            // than here (the loop's values kept in memory around it), and 18 more than
            // no call at all.
            let missing = loop {
                if i == n {
                    break None;
                }
                let t = q.read(&cursor, i);
                match self.queued(client, &t, i, &mut b, &mut held) {
                    Ok(Queued::Done(value)) => q.write_completion(&cursor, i, t.tag, 0, value),
                    // In flight: `confirm` writes its completion.
                    Ok(Queued::InFlight) => {}
                    Ok(Queued::Missing(d, iova)) => break Some((t.tag, d, iova)),
                    Err(e) => {
                        self.stats.refused += 1;
                        q.write_completion(&cursor, i, t.tag, e as u64, 0);
                    }
                }
                i += 1;
            };
            let Some((tag, d, iova)) = missing else { break };
            match self.unmap_not_taken(client, d, iova, &mut b) {
                Ok(()) => q.write_completion(&cursor, i, tag, 0, 0),
                Err(e) => {
                    self.stats.refused += 1;
                    q.write_completion(&cursor, i, tag, e as u64, 0);
                }
            }
            i += 1;
        }
        self.confirm(&mut b);
        let mut cursor = cursor;
        q.publish(&mut cursor, n);
        self.clients[client].queue = cursor;
        n
    }

    /// Where the service is in `client`'s queue (the PD shell publishes it when the
    /// client starts again: `client_ready` starts its queue from the beginning).
    pub fn queue_cursor(&self, client: usize) -> Cursor {
        self.clients.get(client).map(|c| c.queue).unwrap_or_default()
    }

    /// One entry, as its call would be served (but an UNMAP of a mapping its device's
    /// index does not have, which the caller has `unmap_not_taken` answer). `last` is what
    /// the batch's last MAP's capability and device checks found.
    fn queued(&mut self, client: usize, t: &Taken, i: usize, b: &mut Batch, last: &mut Option<Held>) -> Result<Queued> {
        if t.label == Op::Unmap as u64 {
            // Four message registers: one IOVA per entry (a batch of entries removes many).
            let (device, iova) = iommu_protocol::decode_unmap_one(&t.mrs).map_err(ErrorCode::from)?;
            return self.unmap_queued(client, device, iova, t.tag, i, b);
        }
        if t.label != Op::Map as u64 {
            // The queue carries MAP and UNMAP; everything else is a call.
            return Err(ErrorCode::UnknownOp);
        }
        let Request::Map { cap, device, offset, len, iova, rights } =
            Request::decode(t.label, &t.mrs).map_err(ErrorCode::from)?
        else {
            return Err(ErrorCode::Malformed);
        };
        // The handle and device as the batch's last MAP named them: what `held` found
        // then still holds (nothing in a batch changes it); otherwise looked up.
        // (Read where it is kept, not copied out with the capability in it: 12 instructions
        // a request less. Copied only before a confirmation, which needs the batch.)
        let held = match last {
            Some(held) if held.handle == cap && held.device_id == device => held,
            _ => last.insert(self.held(client, cap, device)?),
        };
        // MAP's checks, the client's usage and quota read before them (read again after
        // a confirmation, which changes them).
        let usage = self.usage_of(client);
        let mut p = match self.map_check_held(held, offset, len, iova, rights, |_| usage) {
            // Refused for something a removal in flight still holds: confirm them, as
            // the calls before this one would have been, and check again.
            Err(ErrorCode::QuotaMappings | ErrorCode::QuotaPages | ErrorCode::NoMappingSlot) if b.in_flight_len > 0 => {
                let held = *held;
                self.confirm(b);
                let usage = self.usage_of(client);
                self.map_check_held(&held, offset, len, iova, rights, |_| usage)?
            }
            r => r?,
        };
        // Over a range whose removal is in flight: confirmed first (break-before-make),
        // then checked again (a failed sync leaves the device blocked, with a removal
        // pending).
        if self.lands_on_removal(b, p.device, p.iova, p.len) {
            let held = *held;
            self.confirm(b);
            let usage = self.usage_of(client);
            p = self.map_check_held(&held, offset, len, iova, rights, |_| usage)?;
        }
        self.map_apply(client, p).map(Queued::Done)
    }

    /// Does `[iova, iova + len)` of `device` overlap a removal in flight?
    #[inline]
    fn lands_on_removal(&self, b: &Batch, device: DeviceIndex, iova: u64, len: u64) -> bool {
        let end = iova + len;
        if iova >= b.span.1 || end <= b.span.0 {
            return false;
        }
        self.in_flight[..b.in_flight_len].iter().any(|r| {
            r.device as usize == device
                && self.maps[r.slot as usize].is_some_and(|m| m.iova < end && iova < m.iova + m.len())
        })
    }

    /// Is a removal in flight `device`'s mapping at `iova`?
    fn in_flight_at(&self, b: &Batch, device: DeviceIndex, iova: u64) -> bool {
        self.in_flight[..b.in_flight_len]
            .iter()
            .any(|r| r.device as usize == device && self.maps[r.slot as usize].is_some_and(|m| m.iova == iova))
    }

    /// An UNMAP of `d`'s mapping at `iova`, which its index did not have (the entry's
    /// device checked, none of its removals pending). If an entry before it in this batch
    /// took the mapping out of the index, it is gone only once the batch's sync confirms
    /// that (a failed sync puts it back, pending), so the removals so far are confirmed
    /// first and this entry answered as the call after that one's call would be
    /// (tests/queue_same_batch.rs: it answered `NotMapped` for a mapping back in the
    /// books): by the call's way if the sync failed and the device has removals pending,
    /// else `NotMapped` (the confirmed removal was the mapping at `iova`: a MAP landing on
    /// a removal in flight confirms it first, so no other can be there). Not recursive, and
    /// out of line and cold: with a retry through `unmap_queued` itself, that function was
    /// no longer inlined into the batch's loop, and every queued request cost 54
    /// instructions more.
    #[cold]
    #[inline(never)]
    fn unmap_not_taken(&mut self, client: usize, d: DeviceIndex, iova: u64, b: &mut Batch) -> Result<()> {
        if !self.in_flight_at(b, d, iova) {
            return Err(ErrorCode::NotMapped);
        }
        self.confirm(b);
        if self.devices[d].unconfirmed() {
            return self.unmap(client, DeviceId(d as u32), &[iova]);
        }
        Err(ErrorCode::NotMapped)
    }

    /// UNMAP of one IOVA: checked as the call is, and taken out of the tables, its
    /// invalidation started, and out of its device's index in the same descent; its slot
    /// and quota are kept until `confirm`. In flight, or done (a device with removals
    /// pending takes the call's way), or missing from the index.
    fn unmap_queued(
        &mut self,
        client: usize,
        device: DeviceId,
        iova: u64,
        tag: u64,
        i: usize,
        b: &mut Batch,
    ) -> Result<Queued> {
        let d = self.own_device(client, device)?;
        // A device with removals pending: the call's way (retry them, then remove this
        // one, each confirmed before the next step).
        if self.devices[d].unconfirmed() {
            return self.unmap(client, device, &[iova]).map(|()| Queued::Done(0));
        }
        let (slot, end) = match self.take_removed(d, iova, true) {
            Ok(taken) => taken,
            Err(ErrorCode::NotMapped) => return Ok(Queued::Missing(d, iova)),
            Err(e) => return Err(e),
        };
        self.in_flight[b.in_flight_len] = InFlight { tag, slot, device: d as u8, entry: i as u8 };
        b.in_flight_len += 1;
        b.span = (b.span.0.min(iova), b.span.1.max(end));
        Ok(Queued::InFlight)
    }

    /// Confirm the removals in flight with one sync and write their completions:
    /// confirmed, their slots are freed; otherwise they go back into their indexes,
    /// pending, their devices blocked, and their entries answer `Hardware`, as the call
    /// would have.
    fn confirm(&mut self, b: &mut Batch) {
        if b.in_flight_len == 0 {
            return;
        }
        let confirmed = self.hw.sync_unmaps().is_ok();
        // What the confirmed removals held, given back to their owner at once: every one
        // is a mapping of a device `client` owns (`unmap_queued` checked).
        let (mut mappings, mut pages) = (0u32, 0u64);
        // (At most a batch's worth, which the compiler then knows.)
        for k in 0..b.in_flight_len.min(QUEUE_BATCH) {
            let InFlight { tag, slot, device: d, entry } = self.in_flight[k];
            let Some(m) = self.maps[slot as usize] else {
                // Unreachable (a slot in flight is freed only here), but a completion must
                // be written either way, or the client would read the ring's last pass
                // there; unconfirmed is the answer that cannot mislead it.
                b.q.write_completion(&b.cursor, entry as usize, tag, ErrorCode::Hardware as u64, 0);
                continue;
            };
            if confirmed {
                self.free_slot(slot as usize);
                mappings += 1;
                pages += m.pages as u64;
                // (None is pending: it was taken from a device with no removal pending,
                // and only what is in an index is ever marked.)
                if m.pending {
                    self.devices[d as usize].pending -= 1;
                }
                b.q.write_completion(&b.cursor, entry as usize, tag, 0, 0);
            } else {
                // Pending, its device blocked first (or, if the IOMMU does not confirm even
                // that, its block retried before the IOMMU PD serves anything else), as a
                // failed call leaves it; the entry answers what the call would (`Hardware`).
                let answer = self.removal_unconfirmed(d as usize, &[slot]).err().unwrap_or(ErrorCode::Hardware);
                // Back into its index. There is room by construction: the pools hold a key
                // for every mapping slot (`index::leaves_for`, `inners_for`), and this
                // removal holds a slot that no key in any index does, so the indexes hold
                // fewer keys than there are slots (`tests/queue_sync_reinsert.rs` fails the
                // sync under a batch's removals with every slot in use; the audit finds
                // every mapping indexed). Its range is free: a MAP over it had the removals
                // confirmed first.
                let st = &mut self.devices[d as usize];
                self.index.insert_with_room(&mut st.root, m.iova, slot);
                st.next_iova = st.next_iova.max(m.iova + m.len());
                self.stats.refused += 1;
                b.q.write_completion(&b.cursor, entry as usize, tag, answer as u64, 0);
            }
        }
        let usage = &mut self.clients[b.client].usage;
        usage.mappings -= mappings;
        usage.pages -= pages;
        b.in_flight_len = 0;
        b.span = (u64::MAX, 0);
    }
}
