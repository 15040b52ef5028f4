//! The mapping queue (`iommu_protocol::queue`): a client's batch of MAP and UNMAP entries,
//! each checked and applied exactly as the call would be, every UNMAP among them
//! confirmed by one sync, and only then their completions posted.
//!
//! Strict stays strict: an UNMAP entry's mapping leaves the tables at once
//! (`IommuHw::unmap_deferred`) but stays in the books, its IOVA range and its quota still
//! taken, until the batch's sync confirms it (`IommuHw::sync_unmaps`); its completion is
//! written after that. An entry that a removal still in flight could change the answer to
//! (a MAP over its range, or one refused for a quota, a slot or an IOVA it holds) first
//! has the batch's removals so far confirmed, then is checked again: so a batch answers
//! every entry as the same calls in the same order would, and never maps over a range
//! whose invalidation is not confirmed (break-before-make). A batch runs to its end
//! before the service takes anything else, so a call never sees half of one.

use iommu_protocol::queue::{Cursor, Queue, Taken, QUEUE_BATCH};

use super::*;

/// A batch being served: each entry's reply, and the removals not yet confirmed.
struct Batch {
    /// Per entry taken: (tag, reply label, reply value).
    replies: [(u64, u64, u64); QUEUE_BATCH],
    /// Removals started and not confirmed yet: (mapping slot, device, entry).
    in_flight: [(u16, u8, u8); QUEUE_BATCH],
    in_flight_len: usize,
}

impl Batch {
    fn in_flight(&self, slot: u16) -> bool {
        self.in_flight[..self.in_flight_len].iter().any(|f| f.0 == slot)
    }
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
        let mut b = Batch { replies: [(0, 0, 0); QUEUE_BATCH], in_flight: [(0, 0, 0); QUEUE_BATCH], in_flight_len: 0 };
        for i in 0..n {
            let t = q.read(&cursor, i);
            b.replies[i] = match self.queued(client, &t, i, &mut b) {
                Ok(value) => (t.tag, 0, value),
                Err(e) => {
                    self.stats.refused += 1;
                    (t.tag, e as u64, 0)
                }
            };
        }
        self.confirm(&mut b);
        for (i, &(tag, label, value)) in b.replies[..n].iter().enumerate() {
            q.write_completion(&cursor, i, tag, label, value);
        }
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

    /// One entry, as its call would be served; an UNMAP's `Ok` is provisional until
    /// `confirm`. Returns the reply's value.
    fn queued(&mut self, client: usize, t: &Taken, i: usize, b: &mut Batch) -> Result<u64> {
        if t.label == Op::Unmap as u64 {
            let (device, iovas) = iommu_protocol::decode_unmap(&t.mrs).map_err(ErrorCode::from)?;
            // Four message registers: one IOVA per entry (a batch of entries removes many).
            let [iova] = *iovas else { return Err(ErrorCode::Malformed) };
            return self.unmap_queued(client, device, iova, i, b).map(|()| 0);
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
        match self.map(client, cap, device, offset, len, iova, rights) {
            // Refused for something a removal in flight still holds: confirm them, as
            // the calls before this one would have been, and check again.
            Err(
                ErrorCode::Overlap
                | ErrorCode::QuotaMappings
                | ErrorCode::QuotaPages
                | ErrorCode::NoMappingSlot
                | ErrorCode::NoIova,
            ) if b.in_flight_len > 0 => {
                self.confirm(b);
                self.map(client, cap, device, offset, len, iova, rights)
            }
            r => r,
        }
    }

    /// UNMAP of one IOVA: checked as the call is, then taken out of the tables with its
    /// invalidation started, and kept in the books until `confirm`.
    fn unmap_queued(&mut self, client: usize, device: DeviceId, iova: u64, i: usize, b: &mut Batch) -> Result<()> {
        let d = self.own_device(client, device)?;
        let slot = self.unmappable(d, iova)?;
        // Removed already by an earlier entry, for all a call would know.
        if b.in_flight(slot) {
            return Err(ErrorCode::NotMapped);
        }
        // A device with removals pending: the call's way (retry them, then remove this
        // one, each confirmed before the next step).
        if self.devices[d].unconfirmed {
            return self.unmap(client, device, &[iova]);
        }
        let m = self.at(slot);
        match self.hw.unmap_deferred(d, m.iova, m.len()) {
            Ok(()) => {
                b.in_flight[b.in_flight_len] = (slot, d as u8, i as u8);
                b.in_flight_len += 1;
                Ok(())
            }
            Err(_) => self.removal_unconfirmed(d, &[slot]),
        }
    }

    /// Confirm the removals in flight with one sync: confirmed, they leave the books;
    /// otherwise they stay, pending, their devices blocked, and their entries answer
    /// `Hardware`, as the call would have.
    fn confirm(&mut self, b: &mut Batch) {
        if b.in_flight_len == 0 {
            return;
        }
        let confirmed = self.hw.sync_unmaps().is_ok();
        for k in 0..b.in_flight_len {
            let (slot, d, entry) = b.in_flight[k];
            if confirmed {
                if let Some(m) = self.remove_mapping(slot as usize) {
                    self.count_removed(&m);
                }
            } else {
                let _ = self.removal_unconfirmed(d as usize, &[slot]);
                self.stats.refused += 1;
                b.replies[entry as usize].1 = ErrorCode::Hardware as u64;
            }
        }
        b.in_flight_len = 0;
    }
}
