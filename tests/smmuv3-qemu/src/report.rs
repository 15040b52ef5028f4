//! Pass/fail bookkeeping and the plain-words narration.

use crate::println;

/// Counts of checks.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: u32,
    pub failed: u32,
}

impl Report {
    /// Record one check.
    pub fn check(&mut self, name: &str, ok: bool, detail: core::fmt::Arguments) {
        if ok {
            self.passed += 1;
            println!("  PASS {name}: {detail}");
        } else {
            self.failed += 1;
            println!("  FAIL {name}: {detail}");
        }
    }
}
