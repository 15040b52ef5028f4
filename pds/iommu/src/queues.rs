//! The clients' mapping queues (`<dma_queue>`; `iommu_protocol::queue`): each served when
//! its client notifies on its channel to this PD (the same channel it calls on, so a
//! description needs no second one), one batch of at most `QUEUE_BATCH` entries per
//! queue and notification (`Service::serve_queue`), then the client notified back; or
//! when it calls with `iommu_protocol::queue::SERVE` (a client that waits for its
//! completions anyway: a call takes seL4's fastpath), one batch, and the reply.
//!
//! A call and the queue never see half of each other: this PD is one thread, and a Microkit
//! PD handles one event (a call, or a notification) to its end before it receives the
//! next, so a batch runs whole between two calls and a call whole between two batches.
//!
//! Fairness: a notification serves each notifying queue once, a doorbell call the caller's, at most `QUEUE_BATCH`
//! entries and one sync, and only then does this PD receive again; so a call waits for at
//! most one batch per queue whose client notified before it (with one flooding client:
//! one batch). A client that finds entries untaken when notified notifies again
//! (`MapQueue::untaken`), and goes behind whatever is waiting. Each batch is timed with
//! the generic timer, which paces the client's queue (`iommu_pd::pacing`: its batches of
//! more than two entries at most its share of this PD's time, a quarter unless its
//! `<dma_queue share>` says otherwise, a wake-up before its next full one is due served
//! one entry), and the longest is kept per client.

use core::ptr::NonNull;

use iommu_pd::pacing::{Pacer, PACED_BATCH};
use iommu_protocol::queue::{Queue, QUEUE_BATCH};
use sel4_microkit::{debug_println, Channel, ChannelSet};

use crate::{policy, Svc};

/// What one client's queue has cost so far.
#[derive(Clone, Copy, Default)]
pub struct Served {
    /// Wake-ups that took entries, and the entries they took.
    pub batches: u64,
    pub entries: u64,
    /// Wake-ups served `PACED_BATCH` entries because its next full batch was not due.
    pub paced: u64,
    /// Timer ticks in batches, all told; the longest batch, and how many entries it had.
    pub ticks: u64,
    pub longest: u64,
    pub longest_entries: usize,
}

/// Every client's queue, where the description has one.
pub struct Queues {
    queues: [Option<Queue<'static>>; policy::CLIENTS.len()],
    pub served: [Served; policy::CLIENTS.len()],
    pacer: Pacer<{ policy::CLIENTS.len() }>,
}

impl Queues {
    /// The queues the policy lists, at the addresses the description maps them at here.
    pub fn mapped() -> Self {
        let mut queues = [None; policy::CLIENTS.len()];
        let mut pacer = Pacer::default();
        for &(client, va, entries, share) in policy::QUEUES.iter() {
            // The description's share (`<dma_queue share>`), which iommu-sdf held to
            // `MIN_SHARE..=MAX_SHARE`.
            pacer.set_share(client, u64::from(share));
            let Some(base) = NonNull::new(va as *mut u8) else { continue };
            // SAFETY: `iommu-sdf build` maps the client's queue region here, read-write,
            // `layout::region_size(entries)` bytes rounded up to pages (page-aligned, so
            // 64-byte aligned), for the life of this PD; `check` lets only the client map it
            // besides, and both sides touch it only through the atomics of `Queue`.
            let q = unsafe { Queue::from_raw(base, entries) };
            if let Some(slot) = queues.get_mut(client) {
                *slot = q;
            }
        }
        for (client, q) in queues.iter().enumerate() {
            if let Some(q) = q {
                debug_println!(
                    "iommu: {} has a mapping queue of {} entries; at most {} served per notification; its full batches at most 1/{} of this PD's time",
                    policy::CLIENTS[client].name,
                    q.entries(),
                    QUEUE_BATCH,
                    pacer.share(client)
                );
            }
        }
        Queues { queues, served: [Served::default(); policy::CLIENTS.len()], pacer }
    }

    /// Serve the queue of every client that notified: one batch each, then notify it.
    pub fn serve(&mut self, service: &mut Svc, channels: ChannelSet) {
        for client in 0..self.queues.len() {
            let channel = Channel::new(client + 1);
            if channels.contains(channel) && self.serve_one(service, client).is_some_and(|n| n > 0) {
                channel.notify();
            }
        }
    }

    /// Serve one batch of `client`'s queue (a notification's, or the doorbell call's
    /// `iommu_protocol::queue::SERVE`): the entries taken, or `None` if it has no queue.
    pub fn serve_one(&mut self, service: &mut Svc, client: usize) -> Option<usize> {
        let q = self.queues.get(client).copied().flatten()?;
        let start = generic_timer::ticks();
        let allowed = self.pacer.allowance(client, start);
        let n = service.serve_queue_up_to(client, &q, allowed);
        let end = generic_timer::ticks();
        let took = end.wrapping_sub(start);
        if n == 0 {
            return Some(0);
        }
        self.pacer.charge(client, n, start, end);
        let s = &mut self.served[client];
        s.paced += u64::from(allowed < QUEUE_BATCH);
        s.batches += 1;
        s.entries += n as u64;
        s.ticks += took;
        if took > s.longest {
            s.longest = took;
            s.longest_entries = n;
        }
        // On the console now and then, so a long run shows what a batch costs.
        if s.batches.is_power_of_two() && s.batches >= 16 {
            self.report(client);
        }
        Some(n)
    }

    /// A restarted client's queue starts over: publish the service's cursor (reset by its
    /// teardown) so the client's indices and this PD's agree again.
    pub fn restart(&self, service: &Svc, client: usize) {
        if let Some(Some(q)) = self.queues.get(client) {
            q.reset(&service.queue_cursor(client));
        }
    }

    /// Say what `client`'s queue has cost: batches, entries, and the longest batch.
    pub fn report(&self, client: usize) {
        let Some(s) = self.served.get(client).filter(|s| s.batches > 0) else { return };
        let us = |t: u64| (u128::from(t) * 1_000_000 / u128::from(generic_timer::hz().max(1))) as u64;
        debug_println!(
            "iommu: {}'s mapping queue: {} entries in {} batches (at most {} a batch; {} paced to {}), {} us a batch on average; the longest batch {} us ({} entries)",
            policy::CLIENTS[client].name,
            s.entries,
            s.batches,
            QUEUE_BATCH,
            s.paced,
            PACED_BATCH,
            us(s.ticks / s.batches),
            us(s.longest),
            s.longest_entries
        );
    }
}
