//! Model-based test: long random sequences of requests from several clients, many of them
//! hostile (other clients' handles and devices, wrapped and unaligned ranges, double
//! unmaps, grant chains and loops, revokes of things never granted), checked after every
//! step against a reference model of capabilities written independently of the service:
//!
//! 1. every page any device can reach lies inside a live capability (in the model) held by
//!    that device's owner, for that device, with at least the mapping's rights;
//! 2. what the IOMMU holds (tables and cached translations) equals what the service
//!    believes it mapped, pending removals included;
//! 3. a refused request changes nothing the IOMMU holds, unless it was refused because
//!    the IOMMU failed;
//! 4. after REVOKE, RELEASE or UNMAP answers `Ok`, the removed access is gone from the
//!    IOMMU, cached translations included; after STOP, everything of the device is, and
//!    it is blocked.
//!
//! The IOMMU fails too: at random steps one call (map, unmap, retry, block, enable) fails,
//! the way the model IOMMU fails (a failed unmap leaves its translations cached), and
//! clients are torn down and made ready again at random. The invariants hold after each.
//!
//! `make test` runs 10^5 steps; `cargo test -p iommu-pd --release -- --ignored` runs 10^6.

mod common;

use common::reference::*;
use common::*;
use iommu_pd::Service;
use iommu_protocol::{ClientId, DeviceId, Handle, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};

/// xorshift64*: deterministic, seedable, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn random_request(rng: &mut Rng, known_iovas: &[(usize, u64, u64)]) -> Request {
    let offsets = [0, 0x1000, 0x2000, 0x3000, 0x800, 0xf000, u64::MAX - 0xfff, 0x1_0000];
    let lens = [0x1000, 0x2000, 0x4000, 0x800, 0, 0x1_0000, !0xfff, 0x1_1000];
    let rights = [Rights::READ, Rights::WRITE, Rights::READ_WRITE];
    match rng.below(10) {
        0..=3 => Request::Map {
            cap: Handle(rng.below(6) as u32),
            device: DeviceId(rng.below(5) as u32),
            offset: rng.pick(&offsets),
            len: rng.pick(&lens),
            iova: match rng.below(4) {
                0 => None,
                1 => Some(IOVA_BASE + rng.below(16) * 0x1000),
                2 => Some(rng.pick(&[0, u64::MAX - 0xfff, IOVA_BASE + 0x800, IOVA_BASE + IOVA_SIZE - 0x1000])),
                _ => known_iovas.get(rng.below(known_iovas.len().max(1) as u64) as usize).map(|k| k.1),
            },
            rights: rng.pick(&rights),
        },
        4..=5 => {
            let mut iovas = [0; MAX_UNMAP_RANGES];
            let count = 1 + rng.below(3) as usize;
            let mut device = rng.below(5) as u32;
            for v in iovas.iter_mut().take(count) {
                *v = match known_iovas.get(rng.below(known_iovas.len().max(1) as u64 + 2) as usize) {
                    Some(&(d, iova, len)) => {
                        device = d as u32;
                        iova + if rng.below(8) == 0 { len / 2 } else { 0 }
                    }
                    None => IOVA_BASE + rng.below(16) * 0x1000,
                };
            }
            Request::Unmap { device: DeviceId(device), iovas, count }
        }
        6..=7 => Request::Grant {
            cap: Handle(rng.below(8) as u32),
            to: ClientId(rng.below(4) as u32),
            offset: rng.pick(&offsets),
            len: rng.pick(&lens),
            rights: rng.pick(&rights),
            devices: rng.pick(&[0b1, 0b10, 0b100, 0b1000, 0b1001, 0b111, 0]),
        },
        8 => match rng.below(6) {
            0 => Request::Resume { device: DeviceId(rng.below(5) as u32) },
            1 => Request::Release { cap: Handle(rng.below(10) as u32) },
            2 => Request::Stop { device: DeviceId(rng.below(5) as u32) },
            _ => Request::Revoke { grant: Handle(rng.below(10) as u32) },
        },
        _ => Request::Query,
    }
}

/// The IOMMU calls a step may make fail.
const HW_FAILURES: [&str; 5] = ["map", "unmap", "retry_unmap", "block", "enable"];

/// A request a well-behaved driver might make: its own handles and devices, aligned
/// ranges inside the capability.
fn plausible_request(rng: &mut Rng, m: &Model, client: usize, known: &[(usize, u64, u64)]) -> Option<Request> {
    let own: Vec<(u32, usize)> =
        m.handles.iter().filter(|((c, _), _)| *c == client).map(|((_, h), i)| (*h, *i)).collect();
    let devices: Vec<usize> = (0..DEVICES.len()).filter(|d| DEVICES[*d].owner == client).collect();
    match rng.below(4) {
        0 | 1 => {
            let (h, i) = *own.get(rng.below(own.len().max(1) as u64) as usize)?;
            let cap = m.live(i)?;
            let pages = cap.len / PAGE;
            if pages == 0 {
                return None;
            }
            let first = rng.below(pages);
            let n = 1 + rng.below((pages - first).min(4));
            let usable: Vec<usize> = devices.iter().copied().filter(|d| cap.devices & (1 << d) != 0).collect();
            let device = *usable.get(rng.below(usable.len().max(1) as u64) as usize)?;
            let rights =
                if cap.rights.contains(Rights::WRITE) && rng.below(2) == 0 { cap.rights } else { Rights::READ };
            let rights = if cap.rights.contains(rights) { rights } else { cap.rights };
            Some(Request::Map {
                cap: Handle(h),
                device: DeviceId(device as u32),
                offset: first * PAGE,
                len: n * PAGE,
                iova: None,
                rights,
            })
        }
        2 => {
            let mine: Vec<&(usize, u64, u64)> = known.iter().filter(|(d, _, _)| DEVICES[*d].owner == client).collect();
            let &&(d, iova, _) = mine.get(rng.below(mine.len().max(1) as u64) as usize)?;
            let mut iovas = [0; MAX_UNMAP_RANGES];
            iovas[0] = iova;
            Some(Request::Unmap { device: DeviceId(d as u32), iovas, count: 1 })
        }
        _ => {
            if rng.below(6) == 0 {
                // Give back something received (or try to give back a boot capability).
                let (h, _) = *own.get(rng.below(own.len().max(1) as u64) as usize)?;
                return Some(Request::Release { cap: Handle(h) });
            }
            if rng.below(3) == 0 {
                let grants: Vec<u32> = m.grants.keys().filter(|(c, _)| *c == client).map(|(_, g)| *g).collect();
                let g = *grants.get(rng.below(grants.len().max(1) as u64) as usize)?;
                return Some(Request::Revoke { grant: Handle(g) });
            }
            let (h, i) = *own.get(rng.below(own.len().max(1) as u64) as usize)?;
            let cap = m.live(i)?;
            let to = rng.below(3) as usize;
            let theirs: u64 = DEVICES.iter().enumerate().filter(|(_, d)| d.owner == to).fold(0, |a, (i, _)| a | 1 << i);
            let pages = cap.len / PAGE;
            if pages == 0 {
                return None;
            }
            let first = rng.below(pages);
            let n = 1 + rng.below(pages - first);
            Some(Request::Grant {
                cap: Handle(h),
                to: ClientId(to as u32),
                offset: first * PAGE,
                len: n * PAGE,
                rights: cap.rights,
                devices: theirs,
            })
        }
    }
}

fn run(seed: u64, steps: usize) -> usize {
    let cfg = iommu_pd::Config { caps: model_caps(), ..config() };
    let mut s = Service::new(ModelHw::default(), cfg, storage()).unwrap();
    let mut m = Model::new();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut successes = 0;
    // (device, iova, len) of mappings the service made, for plausible unmaps.
    let mut known: Vec<(usize, u64, u64)> = Vec::new();
    // Clients torn down and not yet ready again.
    let mut torn = [false; 3];
    for step in 0..steps {
        let client = rng.below(3) as usize;
        let req = if rng.below(10) < 6 { plausible_request(&mut rng, &m, client, &known) } else { None }
            .unwrap_or_else(|| random_request(&mut rng, &known));
        let mut mrs = [0; MAX_MRS];
        let (label, n) = req.encode(&mut mrs);
        // One IOMMU call of this step fails, now and then.
        let failure = (rng.below(16) == 0).then(|| rng.pick(&HW_FAILURES));
        s.hw_mut().fail_next = failure;
        // Now and then a client is torn down (it crashed) or made ready (restarted)
        // instead of making a request.
        if rng.below(50) == 0 {
            let c = rng.below(3) as usize;
            // Teardown removes many mappings at once: fail it more often.
            let failure = if rng.below(3) == 0 { Some(rng.pick(&HW_FAILURES)) } else { failure };
            s.hw_mut().fail_next = failure;
            // Mostly a client that is down comes back, or a running one goes down.
            let r = if torn[c] == (rng.below(4) != 0) {
                let r = s.client_ready(c);
                torn[c] &= r.is_err();
                r
            } else {
                let r = s.client_torn_down(c);
                torn[c] |= r.is_ok();
                r
            };
            s.hw_mut().fail_next = None;
            check(&s, &m, &|| format!("seed {seed} step {step}: teardown/ready of {c} -> {r:?} ({failure:?})"));
            continue;
        }
        // `handle` first retries the blocks the IOMMU did not confirm; done here as a step
        // of its own (with no failure injected), so the request is judged alone.
        let failing = s.hw_mut().fail_next.take();
        s.retry_blocks();
        check(&s, &m, &|| format!("seed {seed} step {step}: retrying blocks"));
        s.hw_mut().fail_next = failing;
        let before = before(&s);
        let reply = s.handle(client, label, &mrs[..n]);
        s.hw_mut().fail_next = None;
        let ctx = || format!("seed {seed} step {step}: client {client} {req:?} -> {reply:?} (failing: {failure:?})");
        successes += m.judge(&s, client, req, &reply, &before, &mut known, &ctx) as usize;
        check(&s, &m, &ctx);
        let hw = hw_translations(&s);
        known.retain(|(d, iova, _)| hw.get(d).is_some_and(|t| t.contains_key(iova)));
    }
    successes
}

#[test]
fn hundred_thousand_random_steps() {
    let mut ok = 0;
    for seed in 0..100 {
        ok += run(seed, 1000);
    }
    // The sequences must do something, not only be refused.
    assert!(ok > 10_000, "only {ok} requests succeeded");
}

#[test]
#[ignore = "long: a million steps; run with --release -- --ignored"]
fn million_random_steps() {
    for seed in 1000..2000 {
        run(seed, 1000);
    }
}

/// The starvation attacks (issue 22, items 7 and 8): a hostile client and a victim, and a
/// device no client owns whose static maps take mapping slots no quota counts. Whatever
/// tables the service agrees to start with, the victim's MAP never fails for a reason
/// the hostile client caused: only its own quota may refuse it.
mod starvation {
    use super::Rng;
    use iommu_pd::config::NO_OWNER;
    use iommu_pd::model::ModelHw;
    use iommu_pd::service::{ClientTables, DeviceState};
    use iommu_pd::{
        CapConfig, ClientConfig, Config, ConfigError, DeviceConfig, FaultPolicy, FaultRing, RegionConfig, Service,
        StaticMapConfig, Storage,
    };
    use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};

    const VICTIM: usize = 0;
    const HOSTILE: usize = 1;
    const PAGE: u64 = 0x1000;

    static CLIENTS: [ClientConfig; 2] = [
        ClientConfig { name: "victim", max_mappings: 4, max_pages: 8, max_grants: 0 },
        ClientConfig { name: "hostile", max_mappings: 6, max_pages: 6, max_grants: 0 },
    ];
    static DEVICES: [DeviceConfig; 3] = [
        DeviceConfig {
            name: "victim-dev",
            stream: 1,
            extra_streams: &[],
            owner: VICTIM,
            iova_base: 0x1000_0000,
            iova_size: 1 << 20,
            resume_allowed: true,
        },
        // A window of 1 TiB: room to map at IOVAs 2 MiB apart for ever.
        DeviceConfig {
            name: "hostile-dev",
            stream: 2,
            extra_streams: &[],
            owner: HOSTILE,
            iova_base: 1 << 40,
            iova_size: 1 << 40,
            resume_allowed: true,
        },
        // Microkit's vocabulary: a device with its iomaps and no owner.
        DeviceConfig {
            name: "engine",
            stream: 3,
            extra_streams: &[],
            owner: NO_OWNER,
            iova_base: 0x10_0000,
            iova_size: 1 << 20,
            resume_allowed: false,
        },
    ];
    static REGIONS: [RegionConfig; 3] = [
        RegionConfig { name: "victim-buf", pa: 0x4000_0000, size: 0x8000 },
        RegionConfig { name: "hostile-buf", pa: 0x4010_0000, size: 0x8000 },
        RegionConfig { name: "engine-buf", pa: 0x4020_0000, size: 0x2000 },
    ];
    static CAPS: [CapConfig; 2] = [
        CapConfig {
            client: VICTIM,
            region: 0,
            offset: 0,
            len: 0x8000,
            rights: Rights::READ_WRITE,
            devices: 0b01,
            grant_to: 0,
        },
        CapConfig {
            client: HOSTILE,
            region: 1,
            offset: 0,
            len: 0x8000,
            rights: Rights::READ_WRITE,
            devices: 0b10,
            grant_to: 0,
        },
    ];
    static STATIC_MAPS: [StaticMapConfig; 2] = [
        StaticMapConfig { device: 2, region: 2, offset: 0, len: 0x1000, iova: 0x10_0000, rights: Rights::READ },
        StaticMapConfig { device: 2, region: 2, offset: 0x1000, len: 0x1000, iova: 0x12_0000, rights: Rights::READ },
    ];

    fn config() -> Config<'static> {
        Config {
            clients: &CLIENTS,
            devices: &DEVICES,
            regions: &REGIONS,
            caps: &CAPS,
            static_maps: &STATIC_MAPS,
            faults: FaultPolicy { window: 100, max_faults: 10 },
        }
    }

    fn leak<T>(v: Vec<T>) -> &'static mut [T] {
        Box::leak(v.into_boxed_slice())
    }

    /// Tables for `config()` with `slots` mapping slots.
    fn storage(slots: usize) -> Storage<'static> {
        Storage {
            caps: leak(vec![None; 8]),
            mappings: leak(vec![None; slots]),
            leaves: leak(vec![Default::default(); iommu_pd::index::leaves_for(slots, DEVICES.len())]),
            inners: leak(vec![Default::default(); iommu_pd::index::inners_for(slots, DEVICES.len())]),
            free: leak(vec![0; slots]),
            clients: leak(vec![ClientTables::default(); CLIENTS.len()]),
            devices: leak(vec![DeviceState::default(); DEVICES.len()]),
            rings: leak((0..CLIENTS.len()).map(|_| FaultRing::default()).collect()),
        }
    }

    fn call(s: &mut Service<'_, ModelHw>, client: usize, req: Request) -> Reply {
        let mut mrs = [0; MAX_MRS];
        let (label, n) = req.encode(&mut mrs);
        s.handle(client, label, &mrs[..n])
    }

    fn unmap(device: u32, iova: u64) -> Request {
        let mut iovas = [0; MAX_UNMAP_RANGES];
        iovas[0] = iova;
        Request::Unmap { device: DeviceId(device), iovas, count: 1 }
    }

    /// `steps` random steps: the hostile client maps and unmaps one page at a time at
    /// IOVAs 2 MiB apart (or keeps as many mappings as its quota allows), the victim maps
    /// and unmaps within its quota. `mine` and `theirs` are what each has mapped (IOVA, and
    /// pages for the victim). Returns the victim's successful MAPs.
    fn attack(
        s: &mut Service<'_, ModelHw>,
        seed: u64,
        steps: usize,
        mine: &mut Vec<(u64, u64)>,
        theirs: &mut Vec<u64>,
    ) -> usize {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut ok = 0;
        let mut next_2m = 0u64;
        for step in 0..steps {
            if rng.below(2) == 0 {
                // Hostile: mostly map (2 MiB further on each time, or where the service
                // chooses), sometimes unmap, never minding refusals.
                let req = match rng.below(4) {
                    0 if !theirs.is_empty() => {
                        let iova = theirs.swap_remove(rng.below(theirs.len() as u64) as usize);
                        unmap(1, iova)
                    }
                    k => {
                        next_2m += 1;
                        let iova = if k == 1 { None } else { Some((1 << 40) + (next_2m % (1 << 19)) * (2 << 20)) };
                        let offset = rng.below(8) * PAGE;
                        Request::Map {
                            cap: Handle(0),
                            device: DeviceId(1),
                            offset,
                            len: PAGE,
                            iova,
                            rights: Rights::READ,
                        }
                    }
                };
                if let (Request::Map { .. }, Reply::Ok { values, .. }) = (&req, call(s, HOSTILE, req)) {
                    theirs.push(values[0]);
                }
                continue;
            }
            // Victim: a plausible driver within its quota.
            let used: u64 = mine.iter().map(|m| m.1).sum();
            if !mine.is_empty() && (rng.below(3) == 0 || mine.len() == CLIENTS[VICTIM].max_mappings as usize) {
                let (iova, _) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                assert_eq!(call(s, VICTIM, unmap(0, iova)), Reply::ok(&[]), "seed {seed} step {step}: victim's UNMAP");
                continue;
            }
            let pages = 1 + rng.below(2);
            if used + pages > CLIENTS[VICTIM].max_pages {
                continue;
            }
            let offset = rng.below(8 - pages + 1) * PAGE;
            let map = Request::Map {
                cap: Handle(0),
                device: DeviceId(0),
                offset,
                len: pages * PAGE,
                iova: None,
                rights: Rights::READ_WRITE,
            };
            match call(s, VICTIM, map) {
                Reply::Ok { values, .. } => {
                    let iova = values[0];
                    let t = &s.hw().pages[&0];
                    assert_eq!(t[&iova].0, REGIONS[0].pa + offset, "seed {seed} step {step}: the victim's page");
                    mine.push((iova, pages));
                    ok += 1;
                }
                r => panic!("seed {seed} step {step}: the victim's MAP within its quota answered {r:?}"),
            }
            // What the victim's device reaches is exactly what it mapped.
            let reach: u64 = s.hw().reachable(0).len() as u64;
            assert_eq!(reach, mine.iter().map(|m| m.1).sum::<u64>(), "seed {seed} step {step}");
        }
        ok
    }

    #[test]
    fn a_hostile_client_cannot_take_the_victims_mapping_slots() {
        // The sizing the policy tool used (the quotas: 10 slots, while the unowned device's
        // two static maps take two no quota counts), then quotas plus those static maps.
        // A service that starts on either must never starve the victim; one that cannot
        // promise it must refuse to start.
        let needed = 4 + 6 + 2;
        let mut started = 0;
        for slots in [10, needed] {
            let mut s = match Service::new(ModelHw::default(), config(), storage(slots)) {
                Ok(s) => s,
                Err(e) => {
                    assert!(slots < needed, "{slots} slots are enough, yet refused: {e:?}");
                    assert_eq!(e, ConfigError::TooMany("mappings"));
                    continue;
                }
            };
            started += 1;
            // The static maps are in place before any client runs.
            assert_eq!(s.hw().pages[&2].len(), 2);
            let (mut ok, mut mine, mut theirs) = (0, Vec::new(), Vec::new());
            for seed in 0..20 {
                ok += attack(&mut s, seed, 400, &mut mine, &mut theirs);
            }
            assert!(ok > 500, "only {ok} MAPs of the victim's");
        }
        assert_eq!(started, 1, "the tables the quotas alone size must be refused");
    }
}
