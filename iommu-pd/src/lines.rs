//! How many console lines a client may cost: a budget per client and kind of line (a
//! token bucket: its refused requests, its STOPs, its devices' faults), so that a client
//! that sends requests in a loop, or whose device faults in one, neither slows the IOMMU
//! PD (a console line costs far more than a refusal, a STOP without a reset or a fault
//! record) nor crowds out what is said of other clients (each has its own budget). What
//! is not logged is counted, and the next line logged says how many were not.

/// A budget in microseconds, for the PD to turn into its clock's ticks (`limit`): `burst`
/// lines at once, then one more every `every_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Lines that may be logged at once after a quiet spell.
    pub burst: u32,
    /// Microseconds that earn one more line.
    pub every_us: u64,
}

impl Budget {
    /// This budget on a clock whose ticks `ticks_from_us` converts to.
    pub fn limit(self, ticks_from_us: impl FnOnce(u64) -> u64) -> LineLimit {
        LineLimit { burst: self.burst, every: ticks_from_us(self.every_us) }
    }
}

/// A client's refused requests, and apart from them its STOPs' reports: 10 lines a second
/// each at most, the rest counted.
pub const REQUESTS: Budget = Budget { burst: 8, every_us: 100_000 };

/// A client's devices' faults: one line per wake-up that finds new records for it, 8 at
/// once, then one a second. The fault ring carries every record to the client, so the
/// console needs only a sample; a device faulting just under its storm limit (300 a
/// second in `system.xml`) would otherwise have the IOMMU PD, at the highest priority,
/// print that many lines a second, more than a 115200-baud UART can carry. One a second,
/// not the requests' ten: QEMU's edu runs a DMA 100 ms after it is started, so a device
/// there faults at most ten wake-ups a second, and only a slower rate can be told from
/// none on it (`images/system.expect`).
pub const FAULTS: Budget = Budget { burst: 8, every_us: 1_000_000 };

/// A count of lines not logged, said after the next line that is (nothing if none):
/// ` ({n} {what})`, `what` saying what they were and that they were not logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsaid(pub u64, pub &'static str);

impl core::fmt::Display for Unsaid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} {})", self.1),
        }
    }
}

/// The budget: `burst` lines at once, then one more every `every` ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineLimit {
    /// Lines that may be logged at once after a quiet spell.
    pub burst: u32,
    /// Ticks (of whatever clock `now` is read from) that earn one more line.
    pub every: u64,
}

/// One client's account of one kind of line: its budget left, and the lines asked for,
/// logged or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lines {
    /// Lines that may be logged now.
    tokens: u32,
    /// When the budget was last topped up (whole `every`s since are added).
    since: u64,
    /// Whether the account has been used: the first line asked for starts with a full
    /// budget.
    started: bool,
    /// Lines asked for in all.
    pub asked: u64,
    /// Lines logged.
    pub logged: u64,
    /// Lines not logged since the last one that was.
    pub quiet: u64,
}

/// What to do with one line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `quiet` lines asked for before it were not.
    Log {
        /// Lines not logged since the previous one that was.
        quiet: u64,
    },
    /// Count it only.
    Quiet,
}

impl Lines {
    /// Count one line asked for at `now` and say whether it may be logged.
    pub fn ask(&mut self, now: u64, limit: LineLimit) -> Verdict {
        self.asked += 1;
        if !self.started {
            self.started = true;
            self.tokens = limit.burst;
            self.since = now;
        } else if let Some(earned) = now.saturating_sub(self.since).checked_div(limit.every) {
            // A clock that went back earns nothing; a zero period, nothing more either.
            if earned > 0 {
                self.tokens = u64::from(self.tokens).saturating_add(earned).min(u64::from(limit.burst)) as u32;
                self.since = self.since.saturating_add(earned.saturating_mul(limit.every));
            }
        }
        if self.tokens == 0 {
            self.quiet += 1;
            return Verdict::Quiet;
        }
        self.tokens -= 1;
        self.logged += 1;
        let quiet = core::mem::take(&mut self.quiet);
        Verdict::Log { quiet }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: LineLimit = LineLimit { burst: 8, every: 100 };

    #[test]
    fn a_flood_costs_a_burst_then_one_line_per_period() {
        let mut l = Lines::default();
        let verdicts: Vec<Verdict> = (0..1000).map(|_| l.ask(5, LIMIT)).collect();
        assert!(verdicts[..8].iter().all(|v| *v == Verdict::Log { quiet: 0 }));
        assert!(verdicts[8..].iter().all(|v| *v == Verdict::Quiet));
        assert_eq!((l.asked, l.logged, l.quiet), (1000, 8, 992));
        // A period later, one line, which says how many went unlogged.
        assert_eq!(l.ask(105, LIMIT), Verdict::Log { quiet: 992 });
        assert_eq!(l.ask(105, LIMIT), Verdict::Quiet);
        // A long quiet spell earns the burst back, no more.
        let logged: usize = (0..20).filter(|_| matches!(l.ask(100_000, LIMIT), Verdict::Log { .. })).count();
        assert_eq!(logged, 8);
    }

    #[test]
    fn each_client_has_its_own_budget() {
        let (mut flood, mut other) = (Lines::default(), Lines::default());
        for _ in 0..10_000 {
            flood.ask(0, LIMIT);
        }
        assert_eq!(other.ask(0, LIMIT), Verdict::Log { quiet: 0 });
    }

    #[test]
    fn a_clock_that_goes_back_earns_nothing() {
        let mut l = Lines::default();
        for _ in 0..8 {
            l.ask(1000, LIMIT);
        }
        assert_eq!(l.ask(0, LIMIT), Verdict::Quiet);
        assert_eq!(l.ask(1099, LIMIT), Verdict::Quiet);
        assert_eq!(l.ask(1100, LIMIT), Verdict::Log { quiet: 2 });
    }

    /// `n` lines asked for, one every `period_us`, on a clock in microseconds.
    fn asked_every(budget: Budget, n: u64, period_us: u64) -> (Lines, Vec<Verdict>) {
        let mut l = Lines::default();
        let verdicts = (0..n).map(|i| l.ask(i * period_us, budget.limit(|us| us))).collect();
        (l, verdicts)
    }

    #[test]
    fn a_device_faulting_just_under_its_storm_limit_prints_a_burst_then_one_line_a_second() {
        // 299 wake-ups a second (system.xml's limit is 300 within 1000 ms), for 10 s.
        let (l, verdicts) = asked_every(FAULTS, 2990, 1_000_000 / 299);
        // 8 at once, then one for each whole second after the first line: 9.
        assert_eq!((l.asked, l.logged), (2990, 17));
        // Every line not printed is said by a later one, or still counted.
        let said: u64 = verdicts.iter().map(|v| if let Verdict::Log { quiet } = v { *quiet } else { 0 }).sum();
        assert_eq!(said + l.quiet, l.asked - l.logged);
    }

    #[test]
    fn on_qemu_a_device_faulting_every_100_ms_is_told_from_no_budget() {
        // QEMU's edu: a DMA 100 ms after it is started, so at most ten wake-ups a second;
        // system.xml's hostile device faults 20 times so (images/system.expect).
        let (l, verdicts) = asked_every(FAULTS, 20, 100_000);
        assert!(verdicts[..8].iter().all(|v| *v == Verdict::Log { quiet: 0 }));
        assert_eq!(verdicts[8..10], [Verdict::Quiet, Verdict::Quiet]);
        // At 1 s, one line, which says the two before it were not printed.
        assert_eq!(verdicts[10], Verdict::Log { quiet: 2 });
        assert!(verdicts[11..].iter().all(|v| *v == Verdict::Quiet));
        assert_eq!((l.logged, l.quiet), (9, 9));
        // At the requests' rate every one of them would be printed: no budget, to the test.
        let (l, _) = asked_every(REQUESTS, 20, 100_000);
        assert_eq!(l.logged, 20);
    }

    #[test]
    fn a_line_says_how_many_before_it_were_not_logged_only_if_any_were_not() {
        assert_eq!(Unsaid(0, "fault line(s) before it not printed").to_string(), "");
        assert_eq!(
            Unsaid(3, "fault line(s) before it not printed").to_string(),
            " (3 fault line(s) before it not printed)"
        );
    }
}
