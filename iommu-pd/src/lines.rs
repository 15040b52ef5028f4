//! How many console lines a client's requests may cost: a budget per client and kind of
//! line (a token bucket: its refused requests, its STOPs), so that a client that sends
//! them in a loop neither slows the IOMMU PD (a console line costs far more than a
//! refusal or a STOP without a reset) nor crowds out what is said of other clients (each
//! has its own budget). What is not logged is counted, and the next line logged says how
//! many were not.

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
}
