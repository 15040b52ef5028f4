//! The IOVA allocator (MAP with no IOVA): it places a mapping just above the device's
//! highest one, kept as `next_iova` so that the usual MAP reads no index, and otherwise in
//! the lowest gap that fits. These tests follow that next IOVA through frees (of a middle
//! mapping: it stays; of the highest: it comes down; of all: back to the window's first
//! page), a window filled to its end (first fit, then `NoIova`, nothing changed), and
//! windows whose bounds do not fit 64 bits (`NoIova`, never a panic or an IOVA outside
//! the window), or fit with one page to spare (filled to the end, a range that would wrap
//! refused, a queued UNMAP of the highest and a MAP after it in one batch). The service's
//! audit checks `next_iova` against the index after each step.

mod common;

use common::{call, ModelHw};
use iommu_pd::{DeviceConfig, Service};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};

const PAGE: u64 = 4096;
/// Device 0's window: its base is not page aligned, so its first page is the next one;
/// four pages up to its end.
const BASE: u64 = 0x1000_0800;
const FIRST: u64 = 0x1000_1000;
const END: u64 = 0x1000_5000;

static DEVICES: [DeviceConfig; 3] = [
    DeviceConfig {
        name: "small",
        stream: 0x10,
        extra_streams: &[],
        owner: 0,
        iova_base: BASE,
        iova_size: END - BASE,
        resume_allowed: true,
    },
    // Its window's end is 2^64: does not fit.
    DeviceConfig {
        name: "top",
        stream: 0x18,
        extra_streams: &[],
        owner: 0,
        iova_base: u64::MAX - 0x2fff,
        iova_size: 0x3000,
        resume_allowed: true,
    },
    // Its window's first page would be 2^64: does not fit (its end does).
    DeviceConfig {
        name: "wraps",
        stream: 0x20,
        extra_streams: &[],
        owner: 0,
        iova_base: u64::MAX - 0x7ff,
        iova_size: 0x400,
        resume_allowed: true,
    },
];
fn service() -> Service<'static, ModelHw> {
    common::drv_service(&DEVICES, 16, 64, 64)
}

/// MAP of one page of the buffers for `device`, the IOVA the allocator's (or `iova`).
fn map(s: &mut Service<'static, ModelHw>, device: u32, iova: Option<u64>) -> Reply {
    let r = call(
        s,
        0,
        Request::Map { cap: Handle(0), device: DeviceId(device), offset: 0, len: PAGE, iova, rights: Rights::READ },
    );
    s.audit().unwrap();
    r
}

fn unmap(s: &mut Service<'static, ModelHw>, device: u32, iova: u64) {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    assert_eq!(call(s, 0, Request::Unmap { device: DeviceId(device), iovas, count: 1 }), Reply::ok(&[]));
    s.audit().unwrap();
}

#[test]
fn next_iova_follows_frees_fills_the_window_and_refuses_when_full() {
    let mut s = service();
    // From the window's first page (its base rounded up), upwards.
    for k in 0..3 {
        assert_eq!(map(&mut s, 0, None), Reply::ok(&[FIRST + k * PAGE]));
    }
    // A middle mapping freed: the next still goes above the highest, not into the gap.
    unmap(&mut s, 0, FIRST + PAGE);
    assert_eq!(map(&mut s, 0, None), Reply::ok(&[FIRST + 3 * PAGE]));
    // Nothing fits above the highest (it ends at the window's end): first fit, the gap.
    assert_eq!(map(&mut s, 0, None), Reply::ok(&[FIRST + PAGE]));
    // Full: a typed refusal, nothing changed.
    let before = s.hw().clone();
    assert_eq!(map(&mut s, 0, None), Reply::Err(ErrorCode::NoIova));
    assert_eq!(s.hw().pages, before.pages);
    // The highest freed: the next comes down to the end of the one below it.
    unmap(&mut s, 0, FIRST + 3 * PAGE);
    assert_eq!(map(&mut s, 0, None), Reply::ok(&[FIRST + 3 * PAGE]));
    // The two highest freed, highest first: down to the end of the one below them.
    unmap(&mut s, 0, FIRST + 3 * PAGE);
    unmap(&mut s, 0, FIRST + 2 * PAGE);
    assert_eq!(map(&mut s, 0, None), Reply::ok(&[FIRST + 2 * PAGE]));
    // All freed: back to the window's first page.
    for k in 0..3 {
        unmap(&mut s, 0, FIRST + k * PAGE);
    }
    assert!(s.hw().reachable(0).is_empty());
    assert_eq!(map(&mut s, 0, None), Reply::ok(&[FIRST]));
    // A mapping placed by the caller above the others: the next goes above it.
    assert_eq!(map(&mut s, 0, Some(FIRST + 2 * PAGE)), Reply::ok(&[FIRST + 2 * PAGE]));
    assert_eq!(map(&mut s, 0, None), Reply::ok(&[FIRST + 3 * PAGE]));
    // Everything the allocator handed out is in the window and reaches its page.
    let pages = s.hw().reachable(0);
    assert_eq!(pages.keys().copied().collect::<Vec<_>>(), [FIRST, FIRST + 2 * PAGE, FIRST + 3 * PAGE]);
}

#[test]
fn windows_whose_bounds_do_not_fit_64_bits_get_no_iova_from_the_allocator() {
    let mut s = service();
    // Its end does not fit: the allocator refuses (as it always did), nothing is mapped.
    assert_eq!(map(&mut s, 1, None), Reply::Err(ErrorCode::NoIova));
    // A MAP at a given IOVA inside it still works, and the allocator still refuses after.
    let top = u64::MAX - 0x2fff;
    assert_eq!(map(&mut s, 1, Some(top)), Reply::ok(&[top]));
    assert_eq!(map(&mut s, 1, None), Reply::Err(ErrorCode::NoIova));
    unmap(&mut s, 1, top);
    assert_eq!(map(&mut s, 1, None), Reply::Err(ErrorCode::NoIova));
    // Its first page does not fit: refused, never an IOVA wrapped round to 0.
    assert_eq!(map(&mut s, 2, None), Reply::Err(ErrorCode::NoIova));
    assert!(s.hw().reachable(1).is_empty() && s.hw().reachable(2).is_empty());
}

/// A window whose end fits 64 bits with one page to spare (`2^64 - 4 pages` to
/// `2^64 - 1 page`): the next IOVA climbs to the window's end and no further, a range
/// that would wrap past 2^64 from there is refused (`NoIova`) by the fast check and by
/// the search, and a queued UNMAP of the highest mapping followed by a MAP in the same
/// batch takes the IOVA back only once its removal is confirmed.
#[test]
fn next_iova_at_the_top_of_the_address_space_neither_wraps_nor_passes_the_window() {
    const TOP: u64 = u64::MAX - 0x3fff;
    static TOP_DEVICES: [DeviceConfig; 1] = [DeviceConfig {
        name: "top",
        stream: 0x10,
        extra_streams: &[],
        owner: 0,
        iova_base: TOP,
        iova_size: 0x3000,
        resume_allowed: true,
    }];
    let mut s = common::drv_service(&TOP_DEVICES, 16, 64, 64);
    let map_len = |s: &mut Service<'static, ModelHw>, len: u64| {
        let r = call(
            s,
            0,
            Request::Map { cap: Handle(0), device: DeviceId(0), offset: 0, len, iova: None, rights: Rights::READ },
        );
        s.audit().unwrap();
        r
    };
    for k in 0..3 {
        assert_eq!(map_len(&mut s, PAGE), Reply::ok(&[TOP + k * PAGE]));
    }
    assert_eq!(map_len(&mut s, PAGE), Reply::Err(ErrorCode::NoIova), "past the window's end");
    unmap(&mut s, 0, TOP + 2 * PAGE);
    // Two pages from the next IOVA would end at 2^64 + 1 page: refused, not wrapped.
    assert_eq!(map_len(&mut s, 2 * PAGE), Reply::Err(ErrorCode::NoIova));
    assert_eq!(map_len(&mut s, PAGE), Reply::ok(&[TOP + 2 * PAGE]));
    // Through the queue: the highest unmapped and its IOVA handed out again in one batch.
    let q = common::queue::region();
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = TOP + 2 * PAGE;
    let reqs = [
        Request::Unmap { device: DeviceId(0), iovas, count: 1 },
        Request::Map { cap: Handle(0), device: DeviceId(0), offset: PAGE, len: PAGE, iova: None, rights: Rights::READ },
        Request::Map { cap: Handle(0), device: DeviceId(0), offset: PAGE, len: PAGE, iova: None, rights: Rights::READ },
    ];
    for (tag, r) in reqs.iter().enumerate() {
        assert!(common::queue::post(&q, tag as u64, *r));
    }
    assert_eq!(s.serve_queue(0, &q), 3);
    let done: Vec<Reply> = common::queue::completions(&q, &[0]).into_iter().map(|(_, r)| r).collect();
    assert_eq!(done, [Reply::ok(&[]), Reply::ok(&[TOP + 2 * PAGE]), Reply::Err(ErrorCode::NoIova)]);
    assert_eq!(s.hw().syncs, 1, "the removal confirmed before its IOVA was mapped again");
    let pages: Vec<(u64, u64)> = s.hw().reachable(0).iter().map(|(iova, e)| (*iova, e.0)).collect();
    assert_eq!(pages, [(TOP, 0x4000_0000), (TOP + PAGE, 0x4000_0000), (TOP + 2 * PAGE, 0x4000_1000)]);
    s.audit().unwrap();
}
