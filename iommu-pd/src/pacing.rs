//! How much of the IOMMU PD's time one client's mapping queue may take.
//!
//! Under seL4 a notified batch runs on the IOMMU PD's own scheduling context at its high
//! priority, not on the notifier's: a client that notifies without pause would buy a full
//! batch of the IOMMU PD's time for each notification, which its own budget never pays
//! for, and every lower-priority PD (another client about to call) waits through them. A
//! doorbell batch is charged to the caller, but the server runs it at the server's priority
//! too. So the IOMMU PD paces each queue by the time its batches took: after a batch of
//! more than `UNCHARGED_BATCH` entries that took `t` ticks and ended at `end`, the
//! client's next full batch (up to `QUEUE_BATCH` entries) is due at
//! `end + (share - 1) * t`, where `share` is the client's (`<dma_queue share>` in the
//! description, `SHARE` by default); a wake-up before then is served `PACED_BATCH` entry, what a
//! call would cost (so a client that needs its completions always progresses, and one
//! that finds entries untaken wakes the IOMMU PD again, as the protocol says). A batch of
//! at most `UNCHARGED_BATCH` entries is not charged: a driver that posts a request's UNMAP
//! with the next one's MAP is never paced, however long a batch of its took (on an
//! emulator, the host's pauses land in the timings). Paced wake-ups are kept to one entry
//! on purpose: the larger they are, the more of a flooding caller's time is spent inside
//! the IOMMU PD, and the more often its turn ends there (see the README: four entries
//! made `queue-fair`'s longest wait ten times longer).
//!
//! The bound: over any interval of `T` ticks, one client's batches of more than
//! `UNCHARGED_BATCH` entries take at most `T / share` plus one batch of the IOMMU PD's
//! time, and each other wake-up at most `UNCHARGED_BATCH` entries (and one sync), whatever
//! the client's budget and however it wakes the IOMMU PD.

use iommu_protocol::queue::QUEUE_BATCH;

/// By default, one client's full batches may take at most one `SHARE`th of the IOMMU PD's
/// time.
pub const SHARE: u64 = 4;

/// The least share a description may give (`iommu-sdf` refuses less): at 1 a full batch
/// would be due as soon as the last one ended, which paces nothing.
pub const MIN_SHARE: u64 = 2;

/// The most: at `QUEUE_BATCH` a full batch of `QUEUE_BATCH` entries comes once in as many
/// batch-times, about one entry a batch-time, which is what paced wake-ups of one entry give
/// anyway; a larger share would pace no further.
pub const MAX_SHARE: u64 = QUEUE_BATCH as u64;

/// Entries a wake-up is served while its client's next full batch is not yet due.
pub const PACED_BATCH: usize = 1;

/// A batch of no more entries than this is not charged (a request's UNMAP and the next
/// one's MAP).
pub const UNCHARGED_BATCH: usize = 2;

/// Each client's next full batch, in timer ticks.
#[derive(Debug, Clone)]
pub struct Pacer<const N: usize> {
    due: [u64; N],
    share: [u64; N],
}

impl<const N: usize> Default for Pacer<N> {
    fn default() -> Self {
        Pacer { due: [0; N], share: [SHARE; N] }
    }
}

impl<const N: usize> Pacer<N> {
    /// Give `client`'s full batches at most one `share`th of the IOMMU PD's time, held to
    /// `MIN_SHARE..=MAX_SHARE` (`iommu-sdf` refuses a description outside them; a policy
    /// written by other means gets the nearest bound, never an unpaced queue).
    pub fn set_share(&mut self, client: usize, share: u64) {
        if let Some(s) = self.share.get_mut(client) {
            *s = share.clamp(MIN_SHARE, MAX_SHARE);
        }
    }

    /// `client`'s share: its full batches take at most one `share`th of the IOMMU PD's time.
    pub fn share(&self, client: usize) -> u64 {
        self.share.get(client).copied().unwrap_or(SHARE)
    }

    /// How many entries of `client`'s queue a wake-up at `now` may serve.
    pub fn allowance(&self, client: usize, now: u64) -> usize {
        match self.due.get(client) {
            Some(&due) if now < due => PACED_BATCH,
            _ => QUEUE_BATCH,
        }
    }

    /// `client`'s batch of `entries` ran from `start` to `end`. One of more than
    /// `UNCHARGED_BATCH` entries (so begun when it was due) makes the next full batch due
    /// once the IOMMU PD could have spent `share - 1` times as long on anything else; a
    /// smaller one changes nothing (it cost about what as many calls would).
    pub fn charge(&mut self, client: usize, entries: usize, start: u64, end: u64) {
        if entries <= UNCHARGED_BATCH {
            return;
        }
        let share = self.share(client);
        if let Some(due) = self.due.get_mut(client) {
            let took = end.saturating_sub(start);
            *due = end.saturating_add(took.saturating_mul(share - 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_then_paced_entries_until_its_share_of_time_has_passed() {
        let mut p = Pacer::<2>::default();
        assert_eq!(p.allowance(0, 0), QUEUE_BATCH, "a first batch is full");
        // A small batch is not charged, however long it took.
        p.charge(0, UNCHARGED_BATCH, 0, 1000);
        assert_eq!(p.allowance(0, 1000), QUEUE_BATCH);
        p.charge(0, QUEUE_BATCH, 100, 200);
        // Due at 200 + 3 x 100.
        assert_eq!(p.allowance(0, 200), PACED_BATCH);
        assert_eq!(p.allowance(0, 499), PACED_BATCH);
        assert_eq!(p.allowance(0, 500), QUEUE_BATCH);
        // Another client is not held by it.
        assert_eq!(p.allowance(1, 200), QUEUE_BATCH);
        // A paced batch does not move it.
        p.charge(0, PACED_BATCH, 300, 310);
        assert_eq!(p.allowance(0, 499), PACED_BATCH);
        assert_eq!(p.allowance(0, 500), QUEUE_BATCH);
        // The next full batch sets it again: 600 + 3 x 50.
        p.charge(0, UNCHARGED_BATCH + 1, 550, 600);
        assert_eq!(p.allowance(0, 749), PACED_BATCH);
        assert_eq!(p.allowance(0, 750), QUEUE_BATCH);
        // A client with no slot (more clients than the pacer knows) is not paced, and
        // charging it changes nothing.
        p.charge(7, QUEUE_BATCH, 0, 1000);
        assert_eq!(p.allowance(7, 0), QUEUE_BATCH);
    }

    /// A flood that wakes the IOMMU PD again as soon as each batch ends: over any stretch
    /// of time, its full batches take at most a `share`th of it plus one batch, at the
    /// default share and at every share a description may give.
    #[test]
    fn a_flood_gets_at_most_its_share_of_time_in_full_batches() {
        for share in [SHARE, MIN_SHARE, 3, 8, 16, MAX_SHARE] {
            flood_with_share(share);
        }
    }

    fn flood_with_share(share: u64) {
        let mut p = Pacer::<1>::default();
        p.set_share(0, share);
        assert_eq!(p.share(0), share);
        let (full_cost, paced_cost, gap) = (640u64, 12u64, 3u64);
        let (mut now, mut full_time, mut full, mut paced) = (0u64, 0u64, 0u64, 0u64);
        while now < 1_000_000 {
            let allowed = p.allowance(0, now);
            let took = if allowed == QUEUE_BATCH {
                full += 1;
                full_time += full_cost;
                full_cost
            } else {
                paced += 1;
                paced_cost
            };
            p.charge(0, allowed, now, now + took);
            now += took + gap;
            assert!(full_time <= now / share + full_cost, "share {share}: {full_time} of {now}");
        }
        assert!(full > 10 && paced > 1000, "share {share}: both kinds ran: {full} full, {paced} paced");
        // And the share is used, not just respected: the full batches take close to it.
        assert!(full_time * share * 10 >= now * 9 - 10 * share * full_cost, "share {share}: {full_time} of {now}");
    }

    /// The share is held to what a description may give: never 0 or 1 (unpaced), never
    /// past `MAX_SHARE`; a client the pacer does not know keeps the default.
    #[test]
    fn a_share_is_held_to_its_bounds() {
        let mut p = Pacer::<2>::default();
        assert_eq!(p.share(0), SHARE);
        for (given, held) in [(0, MIN_SHARE), (1, MIN_SHARE), (2, 2), (64, 64), (65, MAX_SHARE), (u64::MAX, MAX_SHARE)]
        {
            p.set_share(1, given);
            assert_eq!(p.share(1), held, "{given}");
        }
        p.set_share(0, 8);
        p.charge(0, QUEUE_BATCH, 100, 200);
        // Due at 200 + 7 x 100.
        assert_eq!(p.allowance(0, 899), PACED_BATCH);
        assert_eq!(p.allowance(0, 900), QUEUE_BATCH);
        p.set_share(5, 2);
        assert_eq!(p.share(5), SHARE);
    }
}
