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
}
