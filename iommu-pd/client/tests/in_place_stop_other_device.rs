//! Two devices on one client: the driver stops the other device (`IommuHal::stop`) while
//! the Hal's device has an UNMAP pending and a MAP given up on whose late answer is in the
//! ring. The STOP forgets only the stopped device's: the pending UNMAP is still sent, the
//! late mapping still found and unmapped, and the flush says true only once the device
//! reaches neither buffer. (Its own test binary: the Hal is one static.)

use iommu_client::hal::IommuHal;
use iommu_client::Client;
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig};
use iommu_protocol::{DeviceId, Op, Rights};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable, PAGE};
use queued::Buffers;

/// `pool_and_buffer_pages` with a second device for the same client, which both
/// capabilities cover.
fn two_devices(pool_pa: u64, bufs_pa: u64, buf_pages: usize) -> Config<'static> {
    let one = common::pool_and_buffer_pages(pool_pa, bufs_pa, buf_pages, 8);
    let blk = one.devices[0];
    let devices = Box::leak(Box::new([blk, DeviceConfig { name: "blk2", stream: 9, ..blk }]));
    let caps: &'static mut [CapConfig] =
        Box::leak(one.caps.iter().map(|c| CapConfig { devices: 0b11, ..*c }).collect::<Vec<_>>().into_boxed_slice());
    let clients: &'static [ClientConfig] = one.clients;
    let regions: &'static [RegionConfig] = one.regions;
    Config {
        clients,
        devices: &devices[..],
        regions,
        caps,
        static_maps: &[],
        faults: FaultPolicy { window: 1, max_faults: 1, resume_rest_ms: 0 },
    }
}

#[test]
fn a_stop_of_another_device_forgets_nothing_of_the_hals_device() {
    let b = Buffers::start_with::<8>(3, |pool_pa, bufs_pa| two_devices(pool_pa, bufs_pa, 3));
    let page = |i: usize| b.page(i);
    let reaches = |i: usize| b.reached(i);
    let dev = BufferDirection::DeviceToDriver;
    // The other device has a mapping of its own (by the call), which its STOP takes.
    let other = Client::new(common::Direct).map(
        iommu_protocol::Handle(1),
        DeviceId(1),
        2 * PAGE as u64,
        PAGE as u64,
        None,
        Rights::READ,
    );
    assert!(other.is_ok());

    // Buffer 1 used and done with: its UNMAP pending. Buffer 0's MAP given up on (the
    // IOMMU PD stalled), served later: its answer in the ring, unread.
    // SAFETY: valid for its length; unshared at once.
    let iova_1 = unsafe { IommuHal::share(page(1), dev) };
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_1, page(1), dev) };
    // (Buffer 1's UNMAP goes with this batch: withdrawn and made by the call.)
    queued::map_given_up_then_served(&[(page(0), dev)]);
    assert!(reaches(0) && !reaches(1));

    // Buffer 2 used and done with: its UNMAP pending when the other device is stopped.
    // SAFETY: valid for its length; unshared at once.
    let iova_2 = unsafe { IommuHal::share(page(2), dev) };
    // SAFETY: shared above.
    unsafe { IommuHal::unshare(iova_2, page(2), dev) };
    assert!(reaches(2), "pending, not sent yet");
    assert!(IommuHal::stop(DeviceId(1)).is_ok());
    assert!(reaches(0) && reaches(2), "the Hal's device untouched by the other's STOP");

    assert!(IommuHal::flush_queue());
    assert!(!reaches(0) && !reaches(1) && !reaches(2), "{:x?}", reachable());
    assert_eq!(reachable().len(), 8, "the pool alone: {:x?}", reachable());
    assert_eq!(IommuHal::failure(), None);
    assert_eq!(calls(Op::Stop), 1);
}
