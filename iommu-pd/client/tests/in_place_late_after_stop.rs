//! A MAP the Hal gave up on (the IOMMU PD stalled), served late, meets a STOP and a RESUME
//! of its device: the STOP removed the mapping its answer names, and after the RESUME the
//! device's IOVAs are handed out again from the window's start, to mappings the Hal does
//! not see (the driver's pool, mapped again by the call). Read after that, the late answer
//! must not send an UNMAP that takes the pool from under the device. (Its own test binary:
//! the Hal is one static.)

mod common;
#[path = "common/late_across_resets.rs"]
mod late_across_resets;
#[path = "common/queued.rs"]
mod queued;

#[test]
fn a_late_answer_from_before_a_stop_does_not_unmap_what_the_device_was_given_since() {
    // The driver resets its device through the Hal (the IOMMU PD stalled, its request
    // timed out).
    late_across_resets::late_answer_across_two_resets(queued::stop_and_resume);
}
