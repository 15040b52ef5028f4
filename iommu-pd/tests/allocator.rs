//! The IOVA allocator (MAP with no IOVA): it places a mapping just above the device's
//! highest one, kept as `next_iova` so that the usual MAP reads no index, and otherwise in
//! the lowest gap that fits. These tests follow that next IOVA through frees (of a middle
//! mapping: it stays; of the highest: it comes down; of all: back to the window's first
//! page), a window filled to its end (first fit, then `NoIova`, nothing changed), and
//! windows whose bounds do not fit 64 bits (`NoIova`, never a panic or an IOVA outside
//! the window). The service's audit checks `next_iova` against the index after each step.

mod common;

use common::{call, ModelHw};
use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};

const PAGE: u64 = 4096;
/// Device 0's window: its base is not page aligned, so its first page is the next one;
/// four pages up to its end.
const BASE: u64 = 0x1000_0800;
const FIRST: u64 = 0x1000_1000;
const END: u64 = 0x1000_5000;

static CLIENTS: [ClientConfig; 1] = [ClientConfig { name: "drv", max_mappings: 16, max_pages: 64, max_grants: 0 }];
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
static REGIONS: [RegionConfig; 1] = [RegionConfig { name: "buffers", pa: 0x4000_0000, size: 0x1_0000 }];
static CAPS: [CapConfig; 1] = [CapConfig {
    client: 0,
    region: 0,
    offset: 0,
    len: 0x1_0000,
    rights: Rights::READ_WRITE,
    devices: 0b111,
    grant_to: 0,
}];

fn service() -> Service<'static, ModelHw> {
    let cfg = Config {
        clients: &CLIENTS,
        devices: &DEVICES,
        regions: &REGIONS,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: 100, max_faults: 10 },
    };
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(1, 3, 4, 64)>::default()));
    Service::new(ModelHw::default(), cfg, tables.storage()).unwrap()
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
