//! The IOMMU PD's ration of function resets, one for all its clients, taken in turn.
//!
//! A reset (FLR, or D3hot and back) holds the IOMMU PD, which is passive at priority 254
//! and busy-waits, for 100 ms or more: nothing below 254 runs meanwhile. After a rationed
//! reset that took t (counted as at least the spec's 100 ms), the next rationed reset,
//! whoever's, waits `RESET_REST` × t, so that however many clients send STOP, or STOP and
//! RESUME in turn, in a loop, their resets together hold the IOMMU PD at most
//! 1/(1 + `RESET_REST`) of the time, a tenth, plus the one under way. (Each client had a
//! ration of its own before 2026-12-08: k clients held it k tenths.)
//!
//! One ration for all must not be first come, first served, or a client asking every
//! millisecond would take every turn. The turns go to the client that had one least
//! recently (or never): once the ration allows the next reset, a client whose device owes
//! its reset (`DeviceState::reset_owed`, what a STOP inside the ration leaves) and that had
//! its last turn before the asker's goes first; the asker may take the turn only once each
//! such client ahead of it has had `RESET_TURN_MS` to take it (a client that owes a reset
//! it does not ask for holds each turn no longer). A client that asks at least every
//! `RESET_TURN_MS` thus has its owed reset within `reset_wait_bound_ms`. A teardown's
//! resets are not rationed (a client's teardowns are bounded by its restarts), but they
//! hold the IOMMU PD too: they move the ration and count as their client's turn.

use super::*;

/// After a rationed reset that took t, the next waits `RESET_REST` × t: resets hold the
/// IOMMU PD at most 1/(1 + `RESET_REST`) of the time, 10%.
pub const RESET_REST: u64 = 9;

/// How long a client that owes a reset and is ahead in turn holds the turn for once the
/// ration allows it (a client refused `ResetRationed` should RESUME again within this).
pub const RESET_TURN_MS: u64 = 1_000;

/// The longest a reset may hold the IOMMU PD: Transactions Pending waited for (100 ms),
/// the FLR's 100 ms and a second to answer, and a poll's step.
pub const LONGEST_RESET_MS: u64 = 100 + crate::pci::FLR_WAIT_MS as u64 + 1_000 + 10;

/// How long a client's owed reset may wait, from its STOP, for the ration when `others`
/// other clients ask for theirs (or owe theirs and never ask), each reset taking at most
/// `reset_ms`, if the client RESUMEs at least every `RESET_TURN_MS`: each other client
/// goes ahead of it at most once, and each turn is the rest after the reset before it,
/// the reset itself, and `RESET_TURN_MS` for each client ahead that does not take it; and
/// one more for the reset under way when it stopped. `LONGEST_RESET_MS` for `reset_ms` is
/// the bound whatever the functions do.
/// Teardowns are not in it: each of another client's (one a life) adds its resets and
/// the rest after them, whatever the ration (`client_torn_down_with`).
pub const fn reset_wait_bound_ms(others: u64, reset_ms: u64) -> u64 {
    let turn = (1 + RESET_REST) * reset_ms + others * RESET_TURN_MS;
    (others + 1) * turn + RESET_TURN_MS
}

impl<'a, H: IommuHw> Service<'a, H> {
    /// Whether `client` may have a rationed reset now: the ration allows one, and every
    /// client ahead of it in turn that owes one has had its `RESET_TURN_MS` to take it.
    pub(super) fn may_reset(&self, client: usize, pci: &mut dyn ConfigSpace) -> bool {
        let now = pci.now_ms();
        if now < self.reset_gate_ms {
            return false;
        }
        let ahead =
            (0..self.clients.len()).filter(|&c| c != client && self.owes_reset(c) && self.turn_before(c, client));
        let ahead = ahead.count() as u64;
        now.saturating_sub(self.reset_gate_ms) >= ahead.saturating_mul(RESET_TURN_MS)
    }

    /// A reset of `client`'s that started at `start` is over: the next rationed reset,
    /// anyone's, waits `RESET_REST` times as long as this one took (at least the spec's
    /// 100 ms), and `client` has had its turn.
    pub(super) fn reset_done(&mut self, client: usize, start: u64, done: Stopped, pci: &mut dyn ConfigSpace) {
        if !done.reset_started() {
            return;
        }
        let end = pci.now_ms();
        let took = end.saturating_sub(start).max(u64::from(crate::pci::FLR_WAIT_MS));
        self.reset_gate_ms = end.saturating_add(RESET_REST.saturating_mul(took));
        self.reset_turns = self.reset_turns.saturating_add(1);
        if let Some(c) = self.clients.get_mut(client) {
            c.reset_turn = self.reset_turns;
        }
    }

    /// Whether one of `client`'s devices owes its function's reset.
    fn owes_reset(&self, client: usize) -> bool {
        (0..self.cfg.devices.len()).any(|d| self.cfg.devices[d].owner == client && self.devices[d].reset_owed)
    }

    /// Whether client `a` had its last turn before client `b` did (one that never had one,
    /// before any that did; between two that never did, the lower index first).
    fn turn_before(&self, a: usize, b: usize) -> bool {
        (self.clients[a].reset_turn, a) < (self.clients[b].reset_turn, b)
    }
}
