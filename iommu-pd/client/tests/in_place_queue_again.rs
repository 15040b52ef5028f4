//! The driver installs its mapping queue again (`MapQueue::new` over the same region, then
//! `IommuHal::install_queue`) while a MAP the Hal gave up on is unanswered. `MapQueue::new`
//! drops what was posted and not taken and skips what was answered and not read, and its
//! tags start again at 0: the late MAP's answer is never read, and a new entry with its
//! tag (an UNMAP withdrawn and made by the call, answered `UnknownOp`) was taken for it,
//! so the flush said the buffers were the driver's with the late mapping still there.
//! Now the Hal stops the device at the install (every mapping gone, confirmed).
//! (Its own test binary: the Hal is one static.)

use iommu_client::hal::{Failure, IommuHal, NotifyFn};
use iommu_client::queue::MapQueue;
use iommu_client::Client;
use iommu_protocol::{DeviceId, Op};
use virtio_drivers::{BufferDirection, Hal};

mod common;
#[path = "common/queued.rs"]
mod queued;
use common::{calls, reachable};
use queued::Buffers;

#[test]
fn a_queue_installed_again_does_not_lose_a_late_maps_mapping() {
    let b = Buffers::start::<8>(4, 8);
    let page = |i: usize| b.page(i);
    let reaches = |i: usize| b.reached(i);
    let dev = BufferDirection::DeviceToDriver;
    let share = |i: usize| {
        // SAFETY: valid for its length; unshared by `unshare`.
        unsafe { IommuHal::share(page(i), dev) }
    };
    let unshare = |i: usize, iova: u64| {
        // SAFETY: shared by `share`.
        unsafe { IommuHal::unshare(iova, page(i), dev) }
    };

    // Buffer 1 used (tag 0), its UNMAP pending; the IOMMU PD stalls under that UNMAP (tag
    // 1, withdrawn, made by the call) and buffer 0's MAP (tag 2, given up on). It serves
    // them later, before the driver starts its queue again: buffer 0 mapped for nobody.
    let iova_1 = share(1);
    unshare(1, iova_1);
    queued::map_given_up_then_served(&[(page(0), dev)]);
    assert!(reaches(0) && !reaches(1));

    // The driver starts its queue again (tags from 0; buffer 0's answer skipped): the Hal
    // cannot find that mapping, so it stops the device, which then reaches nothing.
    IommuHal::install_queue(MapQueue::new(queued::queue(), NotifyFn(queued::wake_iommu_pd)), queued::call);
    assert!(reachable().is_empty(), "{:x?}", reachable());
    assert_eq!(IommuHal::failure(), Some(Failure::Stopped(DeviceId(0))));
    assert_eq!(calls(Op::Stop), 1);

    // The driver resumes the device and maps its pool again. Buffers 2 and 3 used (tags 0,
    // 1); their UNMAPs (tags 2, 3, the tag buffer 0's MAP had) left unanswered by a stall,
    // withdrawn and made by the call, then answered UnknownOp: nothing is taken for an
    // old answer, and the device reaches the pool alone.
    assert_eq!(Client::new(common::Direct).resume(DeviceId(0)), Ok(()));
    let _old = IommuHal::uninstall();
    b.map_pool_again(common::Direct);
    let (iova_2, iova_3) = (share(2), share(3));
    assert!(reaches(2) && reaches(3));
    unshare(2, iova_2);
    unshare(3, iova_3);
    queued::set_busy(true);
    IommuHal::flush_queue();
    queued::set_busy(false);
    // (False all the same: the Hal stopped a device, and says so from then on.)
    assert!(!IommuHal::flush_queue());
    assert_eq!(reachable().len(), 8, "the pool alone: {:x?}", reachable());
}
