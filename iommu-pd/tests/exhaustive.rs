//! Every sequence of requests and IOMMU failures up to a small depth, over a small
//! description, with the invariants of the model-based test checked after every step.
//! Random testing finds what is likely; this finds what is possible in small scope.
//!
//! The scope: NET (devices `nic` and `nic2`) and BLK (`disk`), NET's buffers (lendable to
//! anyone) and read-only share (for `nic` alone, lendable to NET itself and BLK), BLK's
//! buffers (lendable to NET); one page each time, at one IOVA. The actions: MAP and UNMAP,
//! GRANT (including a grant to oneself and a round trip that would widen the share to
//! `nic2`), REVOKE, RELEASE, RESUME, a client torn down and made ready; each also with the
//! IOMMU failing the call it depends on (a map, an unmap, a retry, a block, an enable).
//! `make test` explores depth 3 (55^3 sequences); `make test-long` depth 4.

mod common;

use common::sequences::{actions, explore};
use common::ModelHw;

#[test]
fn every_sequence_of_three() {
    let alphabet = actions();
    assert_eq!(explore(ModelHw::default, &alphabet, 3, 1), alphabet.len().pow(3));
}

#[test]
#[ignore = "long: every sequence of four; run with --release -- --ignored"]
fn every_sequence_of_four() {
    let alphabet = actions();
    assert_eq!(explore(ModelHw::default, &alphabet, 4, 1), alphabet.len().pow(4));
}
