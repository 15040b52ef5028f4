//! REVOKE, RELEASE, a teardown and two REVOKEs in a row under each IOMMU failure point
//! and each pair of them (`common::revoke_points`), over the model IOMMU (the REVOKE also
//! over the model as the SMMUv3 backend presents itself, checking a MAP's range itself;
//! the SMMUv3 and MMU-500 backends sweep the REVOKE and the teardown on their host
//! models in their `tests/service_model.rs`).

mod common;

use common::backend::RangeChecked;
use common::revoke_points::{sweep, Op};
use common::ModelHw;

#[test]
fn every_failure_point_of_a_revoke_over_the_model() {
    sweep(ModelHw::default, Op::RevokeLoan);
    sweep(RangeChecked::default, Op::RevokeLoan);
}

#[test]
fn every_failure_point_of_a_release_over_the_model() {
    sweep(ModelHw::default, Op::ReleaseChild);
}

#[test]
fn every_failure_point_of_a_teardown_over_the_model() {
    sweep(ModelHw::default, Op::TearDownNet);
}

#[test]
fn every_failure_point_of_two_revokes_in_a_row_over_the_model() {
    sweep(ModelHw::default, Op::RevokeChildThenLoan);
}
