//! The IOMMU PD's poll timer: where its SMMU's interrupts are not wired to it (or an
//! MMU-500's global interrupt is paced), the physical timer wakes it every poll period to
//! read the SMMU's records and to put back what a PCI function that reset itself lost
//! (`Service::keep_functions_owned`, which runs on the SMMU's and the timer's wake-ups
//! only, not on a client's).
//!
//! A poll is owed one period after the last one at the latest, whatever else wakes the PD
//! in between. Every wake-up drains the SMMU's records, and each used to set the timer a
//! period on from then: a client that notified the IOMMU PD more often than once a period
//! (a busy mapping queue, or a driver doing it on purpose) kept pushing the deadline back,
//! the timer never fired, and a function that reset itself was never put back (found
//! 2026-12-08). Now a deadline still ahead is left as it is.
//!
//! Where the IOMMU PD keeps PCI functions owned (it maps ECAM and the description places
//! functions' BARs), the timer also polls while the SMMU's interrupts are wired and its
//! queue is empty (`PollTimer::after_drain`): a function that resets itself through a
//! device register comes back decoding nothing, and nothing else wakes the IOMMU PD until
//! the SMMU records something or a client calls. Before, the timer stopped there, and
//! the gap had no bound.

/// The deadline the IOMMU PD last gave its timer, in the timer's ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollTimer {
    due: Option<u64>,
}

impl PollTimer {
    /// A timer set to `at` (`None`: stopped), as the IOMMU PD sets it outside
    /// `poll_within` (its first poll, a wake-up at once, a stop).
    pub fn set(&mut self, at: Option<u64>) {
        self.due = at;
    }

    /// A poll is owed at most `period` ticks from `now`: the deadline to give the timer,
    /// or `None` if the one it has is still ahead (and so no later than that).
    pub fn poll_within(&mut self, now: u64, period: u64) -> Option<u64> {
        match self.due {
            Some(due) if due > now => None,
            _ => {
                let at = now.saturating_add(period);
                self.due = Some(at);
                Some(at)
            }
        }
    }
}

/// What a wake-up's drain of the SMMU's records asks of the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Records are left that no interrupt will announce: be woken again at once.
    Now,
    /// The SMMU raises no interrupt this PD sees (or its global one is paced): poll.
    Poll,
    /// Nothing: the queue is empty, and its next record raises the interrupt.
    Quiet,
}

/// What to do with the timer after a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Set it to fire at this tick.
    At(u64),
    /// Leave it: the deadline it has is still ahead, within the period.
    Keep,
    /// Stop it: nothing is owed (a deadline that passed keeps its level interrupt
    /// asserted).
    Stop,
}

impl PollTimer {
    /// The timer after a drain at `now` that asked for `drained`. `keeping`: the IOMMU PD
    /// keeps PCI functions owned (`Service::keep_functions_owned`, run on the timer's
    /// wake-ups), so a poll is owed within `period` however quiet the SMMU is: that is
    /// the bound on how long a function that reset itself decodes nothing with no call.
    pub fn after_drain(&mut self, now: u64, period: u64, drained: Drained, keeping: bool) -> Deadline {
        match drained {
            Drained::Now => {
                self.set(Some(0));
                Deadline::At(0)
            }
            Drained::Poll => self.poll_within(now, period).map_or(Deadline::Keep, Deadline::At),
            Drained::Quiet if keeping => self.poll_within(now, period).map_or(Deadline::Keep, Deadline::At),
            Drained::Quiet => {
                self.set(None);
                Deadline::Stop
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IOMMU PD polled every 10 ticks, and a client notifying it every 3 (each wake-up
    /// asks for a poll within the period): the timer still fires at least once a period.
    /// With the deadline moved on at every wake-up, as before, it never fired.
    #[test]
    fn a_client_notifying_often_does_not_hold_the_poll_back() {
        let (period, every) = (10u64, 3u64);
        let mut poll = PollTimer::default();
        let mut timer = poll.poll_within(0, period).unwrap();
        let (mut fired, mut last) = (0u64, 0u64);
        for now in 1..1000u64 {
            let tick = now >= timer;
            if tick {
                fired += 1;
                assert!(now - last <= period, "a poll {} ticks after the last", now - last);
                last = now;
            }
            if tick || now % every == 0 {
                if let Some(at) = poll.poll_within(now, period) {
                    timer = at;
                }
            }
        }
        assert!(fired >= 1000 / period - 1, "the timer fired {fired} times in 1000 ticks");
    }

    #[test]
    fn a_deadline_set_otherwise_is_kept_until_it_passes() {
        let mut poll = PollTimer::default();
        poll.set(Some(0));
        assert_eq!(poll.poll_within(5, 10), Some(15), "a wake-up at once has passed");
        assert_eq!(poll.poll_within(14, 10), None);
        assert_eq!(poll.poll_within(15, 10), Some(25));
        poll.set(None);
        assert_eq!(poll.poll_within(16, 10), Some(26), "a stopped timer is set again");
        assert_eq!(poll.poll_within(u64::MAX - 1, 10), Some(u64::MAX));
    }

    /// The SMMU's interrupts wired and quiet (every drain finds the queue empty), and a
    /// client's call or an SMMU interrupt waking the PD now and then: where it keeps PCI
    /// functions owned, the timer still fires at least once a period, and so a function
    /// that reset itself at any tick is put back within a period. Before, a quiet drain
    /// stopped the timer whatever the PD kept, and nothing fired.
    #[test]
    fn a_quiet_smmu_still_polls_where_functions_are_kept_owned() {
        let period = 10u64;
        let mut poll = PollTimer::default();
        let mut timer = match poll.after_drain(0, period, Drained::Quiet, true) {
            Deadline::At(at) => Some(at),
            other => panic!("the first drain left the timer {other:?}"),
        };
        // A function resets itself at tick 37: put back at the first sweep after it.
        let (reset_at, mut put_back_at) = (37u64, None);
        let mut last = 0u64;
        for now in 1..500u64 {
            let tick = timer.is_some_and(|t| now >= t);
            if tick {
                assert!(now - last <= period, "a sweep {} ticks after the last", now - last);
                last = now;
                if now >= reset_at && put_back_at.is_none() {
                    put_back_at = Some(now);
                }
            }
            // The drain runs on the timer's wake-ups and, now and then, an SMMU interrupt's.
            if tick || now % 7 == 0 {
                match poll.after_drain(now, period, Drained::Quiet, true) {
                    Deadline::At(at) => timer = Some(at),
                    Deadline::Keep => {}
                    Deadline::Stop => timer = None,
                }
            }
        }
        let put_back_at = put_back_at.expect("the function was never put back");
        assert!(put_back_at - reset_at <= period, "put back {} ticks after its reset", put_back_at - reset_at);
        assert!(last >= 490, "the timer stopped at {last}");
    }

    /// Where nothing is kept owned, a quiet SMMU still stops the timer (its deadline,
    /// passed, would keep its level interrupt asserted), and records left wake the PD at
    /// once.
    #[test]
    fn a_quiet_smmu_stops_the_timer_where_nothing_is_kept() {
        let mut poll = PollTimer::default();
        assert_eq!(poll.after_drain(5, 10, Drained::Quiet, false), Deadline::Stop);
        assert_eq!(poll.after_drain(5, 10, Drained::Now, false), Deadline::At(0));
        assert_eq!(poll.after_drain(6, 10, Drained::Poll, false), Deadline::At(16));
        assert_eq!(poll.after_drain(7, 10, Drained::Poll, false), Deadline::Keep);
        assert_eq!(poll.after_drain(8, 10, Drained::Quiet, true), Deadline::Keep);
        assert_eq!(poll.after_drain(16, 10, Drained::Quiet, true), Deadline::At(26));
    }
}
