//! The service's model-based and exhaustive tests as one suite over any IOMMU: each
//! hardware backend's test file runs these on its own model, so a backend is held to
//! exactly what the others are.

use super::backend::TestHw;
use super::{random, sequences};

/// Ten seeds of 1,000 random steps; a run in which few requests succeed proved little.
pub fn model_based<H: TestHw>(hw: impl Fn() -> H) {
    let mut ok = 0;
    for seed in 0..10 {
        ok += random::run(hw(), seed, 1000);
    }
    assert!(ok > 1_000, "only {ok} requests succeeded");
}

/// Every sequence of two actions.
pub fn exhaustive<H: TestHw>(hw: impl Fn() -> H) {
    let alphabet = sequences::actions();
    assert_eq!(sequences::explore(hw, &alphabet, 2, 1), alphabet.len().pow(2));
}

/// 10^5 random steps and every sequence of three (`make test-long`).
pub fn long<H: TestHw>(hw: impl Fn() -> H) {
    for seed in 1000..1100 {
        random::run(hw(), seed, 1000);
    }
    let alphabet = sequences::actions();
    assert_eq!(sequences::explore(hw, &alphabet, 3, 1), alphabet.len().pow(3));
}
