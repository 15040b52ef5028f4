//! The mapping queue under each IOMMU failure point of a batch, and each pair of them
//! (`common::failure_points`), over the model IOMMU and over the model as the SMMUv3
//! backend presents itself (checking a MAP's range itself); the SMMUv3 backend on its
//! host model runs the same in `smmuv3-service`'s `tests/service_model.rs`.

mod common;

use common::backend::RangeChecked;
use common::failure_points::{sweep, sweep_calls};
use common::ModelHw;

#[test]
fn every_failure_point_of_a_batch_over_the_model() {
    sweep(ModelHw::default);
}

#[test]
fn every_failure_point_of_a_batch_over_a_range_checking_model() {
    sweep(RangeChecked::default);
}

/// The batch's requests as calls (a MAP booked before the IOMMU maps it), under each
/// failure point and each pair.
#[test]
fn every_failure_point_of_the_calls_over_the_model() {
    sweep_calls(ModelHw::default);
}

#[test]
fn every_failure_point_of_the_calls_over_a_range_checking_model() {
    sweep_calls(RangeChecked::default);
}
