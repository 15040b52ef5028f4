//! The exhaustive test's body, generic over the IOMMU below the service (`TestHw`): every
//! sequence of actions up to a depth over a small description, with the invariants of the
//! model-based test checked after every step. `tests/exhaustive.rs` runs it over the
//! model IOMMU; the hardware backends' crates over their SMMU's host model.

use iommu_pd::Service;
use iommu_protocol::{ClientId, DeviceId, Handle, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};

use super::backend::TestHw;
use super::reference::*;
use super::*;

/// A step, and the IOMMU call that fails during it, if any.
// UNMAP's 64 IOVAs make requests large; the alphabet is small and copied per sequence.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Request(usize, Request, Option<&'static str>),
    TearDown(usize, Option<&'static str>),
    Ready(usize, Option<&'static str>),
}

/// `base`, and `base` with each of `failures` failing.
fn with_failures(out: &mut Vec<Action>, base: Action, failures: &[&'static str]) {
    out.push(base);
    for f in failures {
        out.push(match base {
            Action::Request(c, r, _) => Action::Request(c, r, Some(f)),
            Action::TearDown(c, _) => Action::TearDown(c, Some(f)),
            Action::Ready(c, _) => Action::Ready(c, Some(f)),
        });
    }
}

pub fn actions() -> Vec<Action> {
    let map = |c: usize, h: u32, d: u32| {
        Action::Request(
            c,
            Request::Map {
                cap: Handle(h),
                device: DeviceId(d),
                offset: 0,
                len: PAGE,
                iova: Some(IOVA_BASE),
                rights: Rights::READ,
            },
            None,
        )
    };
    let unmap = |c: usize, d: u32| {
        let mut iovas = [0; MAX_UNMAP_RANGES];
        iovas[0] = IOVA_BASE;
        Action::Request(c, Request::Unmap { device: DeviceId(d), iovas, count: 1 }, None)
    };
    let grant = |c: usize, h: u32, to: usize, devices: u64| {
        Action::Request(
            c,
            Request::Grant {
                cap: Handle(h),
                to: ClientId(to as u32),
                offset: 0,
                len: PAGE,
                rights: Rights::READ,
                devices,
            },
            None,
        )
    };
    let (nic, disk, nic2) = (1 << 0, 1 << 1, 1 << 3);
    let mut out = Vec::new();
    // NET's handles 0 and 1 are its own, 2.. what it made or received; BLK's 0 is its own.
    for h in 0..3 {
        for a in [map(NET, h, 0), map(NET, h, 3), map(BLK, h, 1)] {
            with_failures(&mut out, a, &["map"]);
        }
    }
    for a in [unmap(NET, 0), unmap(NET, 3), unmap(BLK, 1)] {
        with_failures(&mut out, a, &["unmap"]);
    }
    out.extend([
        grant(NET, 0, BLK, disk),
        grant(NET, 1, NET, nic2),
        grant(NET, 1, NET, nic),
        grant(NET, 1, BLK, disk),
        grant(BLK, 1, NET, nic2),
        grant(BLK, 0, NET, nic),
    ]);
    for (c, h) in [(NET, 2), (NET, 3), (BLK, 1), (BLK, 2)] {
        with_failures(&mut out, Action::Request(c, Request::Revoke { grant: Handle(h) }, None), &["unmap"]);
    }
    for (c, h) in [(BLK, 1), (NET, 2)] {
        with_failures(&mut out, Action::Request(c, Request::Release { cap: Handle(h) }, None), &["unmap"]);
    }
    for (c, d) in [(NET, 0), (BLK, 1)] {
        let resume = Action::Request(c, Request::Resume { device: DeviceId(d) }, None);
        with_failures(&mut out, resume, &["retry_unmap", "enable"]);
    }
    with_failures(&mut out, Action::TearDown(NET, None), &["unmap", "block"]);
    with_failures(&mut out, Action::Ready(NET, None), &["retry_unmap", "enable", "map"]);
    out
}

/// Run one sequence from boot on `hw`, checking after every step.
pub fn run<H: TestHw>(hw: H, seq: &[Action]) {
    let mut tables = <iommu_pd::owned_storage!(4, 4, 64, 256)>::default();
    let cfg = iommu_pd::Config { caps: model_caps(), ..config() };
    let mut s = Service::new(hw, cfg, tables.storage()).unwrap();
    let mut probe = Probe::default();
    let mut m = Model::new();
    let mut known = Vec::new();
    for (step, action) in seq.iter().enumerate() {
        let ctx = || format!("step {step} of {seq:#?}");
        match *action {
            Action::TearDown(c, fail) => {
                s.hw_mut().fail_next(fail);
                let _ = s.client_torn_down(c);
            }
            Action::Ready(c, fail) => {
                s.hw_mut().fail_next(fail);
                let _ = s.client_ready(c);
            }
            Action::Request(client, req, fail) => {
                let mut mrs = [0; MAX_MRS];
                let (label, n) = req.encode(&mut mrs);
                // `handle` first retries the blocks the IOMMU did not confirm; done here as
                // a step of its own, so the request is judged alone.
                s.retry_blocks();
                check(&mut s, &m, &mut probe, &ctx);
                let before = before(&s);
                s.hw_mut().fail_next(fail);
                let reply = s.handle(client, label, &mrs[..n]);
                m.judge(&s, client, req, &reply, &before, &mut known, &ctx);
            }
        }
        s.hw_mut().fail_next(None);
        check(&mut s, &m, &mut probe, &ctx);
    }
}

/// Every sequence of `depth` actions from `alphabet` whose index is a multiple of `every`
/// (1: all of them), each from a fresh `hw()`; returns how many ran.
pub fn explore<H: TestHw>(hw: impl Fn() -> H, alphabet: &[Action], depth: usize, every: usize) -> usize {
    let mut seq = vec![alphabet[0]; depth];
    let mut count = 0;
    let total = alphabet.len().pow(depth as u32);
    for mut n in (0..total).step_by(every) {
        for slot in seq.iter_mut() {
            *slot = alphabet[n % alphabet.len()];
            n /= alphabet.len();
        }
        run(hw(), &seq);
        count += 1;
    }
    count
}
