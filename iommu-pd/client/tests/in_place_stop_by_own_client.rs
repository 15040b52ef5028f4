//! The driver resets its device with its own `Client` (STOP and RESUME), not through the
//! Hal: the Hal must forget what it meant to unmap of the device all the same. A MAP the
//! Hal gave up on (the IOMMU PD stalled), served late at the window's start, meets the
//! STOP; after the RESUME the pool, mapped again by the call, lies where the late answer
//! says the buffer is, and an UNMAP sent for that answer would take the pool from under
//! the device. Before `Client::stop` told the Hal (`hal::forget_device`), only
//! `IommuHal::stop` did, and this failed: the pool was unmapped. (Its own test binary:
//! the Hal is one static.)

use iommu_client::hal::IommuHal;
use iommu_client::Client;
use iommu_protocol::DeviceId;

mod common;
#[path = "common/late_across_resets.rs"]
mod late_across_resets;
#[path = "common/queued.rs"]
mod queued;
use common::{reachable, Direct};

/// The driver resets its device through its own `Client`, STOP then RESUME; the Hal's
/// pool, which the STOP unmapped, dropped.
fn stop_and_resume_by_own_client() {
    assert!(Client::new(Direct).stop(DeviceId(0)).is_ok());
    assert!(reachable().is_empty(), "STOP took every mapping: {:x?}", reachable());
    assert_eq!(Client::new(Direct).resume(DeviceId(0)), Ok(()));
    let _old = IommuHal::uninstall();
}

#[test]
fn a_stop_through_the_drivers_own_client_makes_the_hal_forget_what_it_meant_to_unmap() {
    late_across_resets::late_answer_across_two_resets(stop_and_resume_by_own_client);
}
