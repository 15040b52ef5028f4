//! The model-based test's body, generic over the IOMMU below the service (`TestHw`):
//! random sequences of requests from three clients, many hostile, with IOMMU failures,
//! teardowns and restarts, checked after every step against the reference model. The
//! invariants are in `reference.rs`; `tests/model.rs` runs it over the model IOMMU, and
//! the hardware backends' crates over their SMMU's host model.

use std::collections::BTreeSet;

use iommu_pd::Service;
use iommu_protocol::{ClientId, DeviceId, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};

use super::backend::{TestHw, HW_FAILURES};
use super::reference::*;
use super::*;

/// xorshift64*: deterministic, seedable, dependency-free.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
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

/// `steps` random steps from a service over `hw`, seeded, with fault storms, event-queue
/// overflows and now and then a failure of the service for good (`Weather::Stormy`);
/// returns how many requests succeeded.
pub fn run<H: TestHw>(hw: H, seed: u64, steps: usize) -> usize {
    run_on(hw, storage(), seed, steps)
}

/// Whether the steps include storms, overflows and the service's failure. Their draws come
/// from a generator of their own, so a seed's requests are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weather {
    Calm,
    Stormy,
}

/// The reference for storms, kept apart from the service's books: which devices a storm
/// quarantined (more than the policy's `max_faults` faults in a window) and no RESUME has
/// ended since, which were resumed from one (on probation: the next overflow whose drain,
/// with the drain before it, holds a quarter of the queue of their records, theirs
/// together, quarantines them again, the largest first and equals together, until those
/// left make less than a quarter), each device's faults in the last drain, and how many quarantines that
/// makes.
struct StormModel {
    quarantined: Vec<bool>,
    probation: Vec<bool>,
    last_drain: Vec<u64>,
    quarantines: u64,
}

/// The event queue's records the model's overflows say (`events_lost`): a quarter of it is
/// 2, under the model policy's 10 faults a window.
const QUEUE_RECORDS: u32 = 8;

impl StormModel {
    fn new() -> Self {
        let none = vec![false; DEVICES.len()];
        StormModel { quarantined: none.clone(), probation: none, last_drain: vec![0; DEVICES.len()], quarantines: 0 }
    }

    fn quarantine(&mut self, d: usize) {
        if !self.quarantined[d] {
            self.quarantined[d] = true;
            self.quarantines += 1;
        }
    }

    /// `client`'s RESUME of `device` was answered `reply`. The model judges an `Ok` before
    /// it follows it: only the owner resumes, and a storm's quarantine ends only where the
    /// description allows (`resume_allowed`); following the answer alone, a service that
    /// resumed any quarantined device passed.
    fn resumed(&mut self, client: usize, device: DeviceId, reply: &Reply, ctx: &dyn Fn() -> String) {
        let d = device.0 as usize;
        if !matches!(reply, Reply::Ok { .. }) {
            return;
        }
        let Some(dc) = DEVICES.get(d) else { panic!("resumed a device no description names: {}", ctx()) };
        assert_eq!(dc.owner, client, "resumed another client's device: {}", ctx());
        assert!(!self.quarantined[d] || dc.resume_allowed, "resumed device {d}, which may not be: {}", ctx());
        if self.quarantined[d] {
            // The records that brought the quarantine count no more.
            self.last_drain[d] = 0;
        }
        self.probation[d] |= self.quarantined[d];
        self.quarantined[d] = false;
    }

    /// After every step: the service quarantined exactly the devices this model did, and a
    /// quarantined device reaches nothing, is not let run and does not translate (unless
    /// its block is owed: the IOMMU did not confirm it).
    fn check<H: TestHw>(&self, s: &Service<'_, H>, probe: &Probe, ctx: &dyn Fn() -> String) {
        assert_eq!(s.stats().quarantines, self.quarantines, "quarantines: {}", ctx());
        for (d, device) in DEVICES.iter().enumerate().filter(|(d, _)| self.quarantined[*d]) {
            assert!(s.running_device_of(device.owner, DeviceId(d as u32)).is_err(), "device {d} runs: {}", ctx());
            if s.unblocked_devices() & (1 << d) != 0 {
                continue;
            }
            assert!(!s.hw().enabled(d), "quarantined device {d} translates: {}", ctx());
            let reached = s.hw().reach(d, probe.seen.get(&d).unwrap_or(&BTreeSet::new()));
            assert!(reached.is_empty(), "quarantined device {d} reaches {reached:x?}: {}", ctx());
        }
    }
}

/// A storm step: `n` faults of device `d` within one window (a storm if more than the
/// policy's `max_faults`), its block failing now and then, each fault a drain of its own;
/// or a drain and then an overflow of the event queue (`events_lost`) in the next, each
/// device faulting 0 to 2 times in each, which quarantines the devices on probation
/// whose faults in the overflow's drain and the drain before it (unless that one saw an
/// overflow) make a quarter of the queue together, the largest first and equals
/// together, until those left make less (every earlier fault is a million ticks back,
/// under the limit). Every client is told of an overflow, its ring counting one
/// record dropped.
fn storm_step<H: TestHw>(s: &mut Service<'_, H>, storms: &mut StormModel, rng: &mut Rng, probe: &mut Probe) {
    let policy = model_config().faults;
    if rng.below(3) == 0 {
        // A drain that saw no overflow, then the one that did.
        let mut drain = |s: &mut Service<'_, H>, now: u64| -> Vec<u64> {
            let drained: Vec<u64> = DEVICES.iter().map(|_| rng.below(3)).collect();
            for (dc, &n) in DEVICES.iter().zip(&drained) {
                for _ in 0..n {
                    s.record_fault(iommu_pd::FaultInput {
                        stream: dc.stream,
                        iova: NEVER_MAPPED,
                        write: true,
                        kind: 0x10,
                        now,
                    });
                }
            }
            drained
        };
        probe.now += 1_000_000;
        let before = drain(s, probe.now);
        if before.iter().any(|&n| n > 0) {
            storms.last_drain = before;
        }
        probe.now += 1;
        let drained = drain(s, probe.now);
        let share = u64::from(QUEUE_RECORDS).div_ceil(4);
        // Devices on probation and running, grouped by their records in the two drains,
        // the most first: each group quarantined whole, in that order, while those not yet
        // quarantined make a quarter together.
        let records: Vec<Option<u64>> = (0..DEVICES.len())
            .map(|d| (storms.probation[d] && !storms.quarantined[d]).then(|| drained[d] + storms.last_drain[d]))
            .collect();
        let mut levels: Vec<u64> = records.iter().flatten().copied().filter(|&r| r > 0).collect();
        levels.sort_unstable_by(|a, b| b.cmp(a));
        levels.dedup();
        let mut flooded = vec![false; DEVICES.len()];
        let mut left: u64 = records.iter().flatten().sum();
        for level in levels {
            if left < share {
                break;
            }
            for d in (0..DEVICES.len()).filter(|&d| records[d] == Some(level)) {
                flooded[d] = true;
                left -= level;
            }
        }
        let counts = |s: &Service<'_, H>, c: usize| {
            let ring = s.faults(c).unwrap();
            (ring.dropped(), ring.recorded())
        };
        let before: Vec<(u64, u64)> = (0..CLIENTS.len()).map(|c| counts(s, c)).collect();
        s.hw_mut().fail_next((rng.below(4) == 0).then_some("block"));
        assert_eq!(s.events_lost(probe.now, QUEUE_RECORDS), (1 << CLIENTS.len()) - 1, "every client told");
        s.hw_mut().fail_next(None);
        for (c, (dropped, recorded)) in before.into_iter().enumerate() {
            // The overflow, counted; and a record (or, the ring full, one more dropped)
            // for each of the client's devices the overflow quarantined.
            let newly = (0..DEVICES.len()).filter(|&d| DEVICES[d].owner == c && flooded[d]).count() as u64;
            let (dropped_now, recorded_now) = counts(s, c);
            assert_eq!(
                (dropped_now - dropped - 1) + (recorded_now - recorded),
                newly,
                "client {c}'s ring counts the overflow and names each device it quarantined"
            );
        }
        for d in (0..DEVICES.len()).filter(|&d| flooded[d]) {
            storms.quarantine(d);
        }
        // Its records were judged here: the next overflow counts none of them.
        storms.last_drain = vec![0; DEVICES.len()];
        return;
    }
    let d = rng.below(DEVICES.len() as u64) as usize;
    let n = u64::from(policy.max_faults) + 1 + rng.below(8);
    let n = if rng.below(4) == 0 { rng.below(u64::from(policy.max_faults) + 1) } else { n };
    s.hw_mut().fail_next((rng.below(4) == 0).then_some("block"));
    probe.now += 1_000_000;
    for i in 0..n {
        let f = iommu_pd::FaultInput {
            stream: DEVICES[d].stream,
            iova: NEVER_MAPPED,
            write: true,
            kind: 0x10,
            now: probe.now + i,
        };
        s.record_fault(f);
    }
    s.hw_mut().fail_next(None);
    if n > u64::from(policy.max_faults) {
        storms.quarantine(d);
    }
    // Each fault was a drain of its own: the last one holds one fault of `d`'s.
    if n > 0 {
        storms.last_drain = (0..DEVICES.len()).map(|e| u64::from(e == d)).collect();
    }
}

/// The service failed for good (`Service::service_failed`, the IOMMU PD's answer to an
/// SMMU that failed): every client's ring ends with a `SERVICE_FAILED` record, or counts
/// it dropped when full, and says the service failed.
fn service_fails<H: TestHw>(s: &mut Service<'_, H>, ctx: &dyn Fn() -> String) {
    use iommu_protocol::faults::{kind, NO_DEVICE};
    let dropped: Vec<u64> = (0..CLIENTS.len()).map(|c| s.faults(c).unwrap().dropped()).collect();
    assert_eq!(s.service_failed(true), (1 << CLIENTS.len()) - 1, "every client told: {}", ctx());
    for (c, before) in dropped.into_iter().enumerate() {
        let ring = s.faults(c).unwrap();
        let told = ring.pending().last().is_some_and(|r| r.kind == kind::SERVICE_FAILED && r.device == NO_DEVICE);
        assert!(told || ring.dropped() == before + 1, "client {c} neither told nor counted: {}", ctx());
        assert!(ring.failed(), "client {c}'s ring does not say the service failed: {}", ctx());
    }
}

/// The model-based test's configuration.
pub fn model_config() -> iommu_pd::Config<'static> {
    iommu_pd::Config { caps: model_caps(), ..config() }
}

/// Tables for `model_config()` of exactly the sizes `Service::new` accepts and no more:
/// as many client tables and rings as clients, capability slots `caps_needed`, mapping
/// slots `mappings_needed` (so the last quota's last mapping takes the last slot), and the
/// index's pools for those slots.
pub fn exact_storage() -> iommu_pd::Storage<'static> {
    let cfg = model_config();
    super::sized_storage(cfg.caps_needed(), cfg.mappings_needed(), cfg.devices.len(), cfg.clients.len())
}

/// `run` on the tables `storage`.
pub fn run_on<H: TestHw>(hw: H, storage: iommu_pd::Storage<'static>, seed: u64, steps: usize) -> usize {
    run_in(hw, storage, seed, steps, Weather::Stormy)
}

/// `run_on`, with storms or without.
pub fn run_in<H: TestHw>(
    hw: H,
    storage: iommu_pd::Storage<'static>,
    seed: u64,
    steps: usize,
    weather: Weather,
) -> usize {
    let mut s = Service::new(hw, model_config(), storage).unwrap();
    let mut storms = StormModel::new();
    let mut sky = Rng(seed.wrapping_mul(0xd6e8_feb8_6659_fd93) | 1);
    // The step at which the service fails for good, in one run of eight.
    let fails_at = (weather == Weather::Stormy && sky.below(8) == 0).then(|| sky.below(steps as u64) as usize);
    let mut probe = Probe::default();
    let mut m = Model::new();
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut successes = 0;
    // (device, iova, len) of mappings the service made, for plausible unmaps.
    let mut known: Vec<(usize, u64, u64)> = Vec::new();
    // Clients torn down and not yet ready again.
    let mut torn = [false; 3];
    let mut queues = [super::queue::region(), super::queue::region(), super::queue::region()];
    for step in 0..steps {
        if weather == Weather::Stormy {
            if fails_at == Some(step) {
                service_fails(&mut s, &|| format!("seed {seed} step {step}: the service failed"));
                return successes;
            }
            if sky.below(40) == 0 {
                storm_step(&mut s, &mut storms, &mut sky, &mut probe);
                let ctx = || format!("seed {seed} step {step}: a storm or an overflow");
                check(&mut s, &m, &mut probe, &ctx);
                storms.check(&s, &probe, &ctx);
                continue;
            }
        }
        let client = rng.below(3) as usize;
        let req = if rng.below(10) < 6 { plausible_request(&mut rng, &m, client, &known) } else { None }
            .unwrap_or_else(|| random_request(&mut rng, &known));
        let mut mrs = [0; MAX_MRS];
        let (label, n) = req.encode(&mut mrs);
        // One IOMMU call of this step fails, now and then.
        let failure = (rng.below(16) == 0).then(|| rng.pick(&HW_FAILURES));
        s.hw_mut().fail_next(failure);
        // Now and then a client is torn down (it crashed) or made ready (restarted)
        // instead of making a request.
        if rng.below(50) == 0 {
            let c = rng.below(3) as usize;
            // Teardown removes many mappings at once: fail it more often.
            let failure = if rng.below(3) == 0 { Some(rng.pick(&HW_FAILURES)) } else { failure };
            s.hw_mut().fail_next(failure);
            // Mostly a client that is down comes back, or a running one goes down.
            let r = if torn[c] == (rng.below(4) != 0) {
                let r = s.client_ready(c);
                torn[c] &= r.is_err();
                r
            } else {
                let r = s.client_torn_down(c);
                torn[c] |= r.is_ok();
                // Its queue starts over (the restarted client's starts empty).
                queues[c] = super::queue::region();
                r
            };
            s.hw_mut().fail_next(None);
            let ctx = || format!("seed {seed} step {step}: teardown/ready of {c} -> {r:?} ({failure:?})");
            check(&mut s, &m, &mut probe, &ctx);
            storms.check(&s, &probe, &ctx);
            // A teardown takes mappings of other clients' devices too (of what it lent).
            let books = pages(&s);
            known.retain(|(d, iova, _)| books.get(d).is_some_and(|t| t.contains_key(iova)));
            continue;
        }
        // Now and then the client posts a batch to its mapping queue instead.
        if rng.below(8) == 0 {
            let q = &queues[client];
            let ctx = || format!("seed {seed} step {step}: client {client}'s batch");
            successes += batch_step(&mut s, &mut m, &mut rng, client, q, &mut known, &mut probe, &ctx);
            storms.check(&s, &probe, &ctx);
            let books = pages(&s);
            known.retain(|(d, iova, _)| books.get(d).is_some_and(|t| t.contains_key(iova)));
            continue;
        }
        // `handle` first retries the blocks the IOMMU did not confirm; done here as a step
        // of its own (with no failure injected), so the request is judged alone.
        s.hw_mut().fail_next(None);
        s.retry_blocks();
        check(&mut s, &m, &mut probe, &|| format!("seed {seed} step {step}: retrying blocks"));
        s.hw_mut().fail_next(failure);
        let before = before(&s);
        let reply = s.handle(client, label, &mrs[..n]);
        s.hw_mut().fail_next(None);
        let ctx = || format!("seed {seed} step {step}: client {client} {req:?} -> {reply:?} (failing: {failure:?})");
        successes += m.judge(&s, client, req, &reply, &before, &mut known, &ctx) as usize;
        if let Request::Resume { device } = req {
            storms.resumed(client, device, &reply, &ctx);
        }
        check(&mut s, &m, &mut probe, &ctx);
        storms.check(&s, &probe, &ctx);
        // What the service still has mapped, pending removals included (on an SMMU a
        // pending removal may be in neither the tables nor the TLB: the IOMMU's view would
        // forget a mapping a later UNMAP may rightly remove).
        let books = pages(&s);
        known.retain(|(d, iova, _)| books.get(d).is_some_and(|t| t.contains_key(iova)));
    }
    successes
}

/// A batch of 1 to 20 entries (plausible and random MAPs and UNMAPs, now and then an
/// entry no call has), an IOMMU failure now and then (a deferred unmap, the batch's sync,
/// a map...), served in one wake-up, every completion judged: a MAP's as its call's, an
/// UNMAP's `Ok` only once nothing of it translates or is reached any more (unless a later
/// entry of the batch mapped the IOVA again); a batch refused whole changed nothing.
/// Returns how many entries succeeded.
#[allow(clippy::too_many_arguments)]
fn batch_step<H: TestHw>(
    s: &mut Service<'_, H>,
    m: &mut Model,
    rng: &mut Rng,
    client: usize,
    q: &iommu_protocol::queue::Queue<'_>,
    known: &mut Vec<(usize, u64, u64)>,
    probe: &mut Probe,
    ctx: &dyn Fn() -> String,
) -> usize {
    let n = 1 + rng.below(20) as usize;
    let mut reqs = Vec::new();
    for tag in 0..n as u64 {
        let req = if rng.below(10) < 7 { plausible_request(rng, m, client, known) } else { None }
            .unwrap_or_else(|| random_request(rng, known));
        let req = match req {
            // An entry holds one IOVA.
            Request::Unmap { device, iovas, .. } => Request::Unmap { device, iovas, count: 1 },
            r => r,
        };
        let mut mrs = [0; MAX_MRS];
        let (label, _) = req.encode(&mut mrs);
        assert!(q.post(label, tag, mrs[..4].try_into().unwrap()));
        reqs.push(req);
    }
    let failure = (rng.below(4) == 0).then(|| rng.pick(&HW_FAILURES));
    s.hw_mut().fail_next(None);
    s.retry_blocks();
    let before = before(s);
    s.hw_mut().fail_next(failure);
    let taken = s.serve_queue(client, q);
    s.hw_mut().fail_next(None);
    assert_eq!(taken, n, "{}", ctx());
    let mut replies = Vec::new();
    while let Some((tag, label, value)) = q.pop_completion() {
        assert_eq!(tag, replies.len() as u64, "completions in order: {}", ctx());
        replies.push(match (label, reqs[tag as usize]) {
            (0, Request::Unmap { .. }) => Reply::ok(&[]),
            (0, _) => Reply::ok(&[value]),
            (l, _) => Reply::Err(iommu_protocol::ErrorCode::from_label(l).expect("an error code")),
        });
    }
    assert_eq!(replies.len(), n, "{}", ctx());
    let ctx_of = |i: usize| format!("{} entry {i} {:?} -> {:?} (failing: {failure:?})", ctx(), reqs[i], replies[i]);
    let mut ok = 0;
    for (i, (req, reply)) in reqs.iter().zip(&replies).enumerate() {
        match (req, reply) {
            (Request::Unmap { device, iovas, .. }, Reply::Ok { .. }) => {
                let (d, iova) = (device.0 as usize, iovas[0]);
                let k = known.iter().position(|k| k.0 == d && k.1 == iova);
                let len = k.map(|k| known[k].2).unwrap_or_else(|| panic!("unmapped the unknown: {}", ctx_of(i)));
                known.retain(|k| !(k.0 == d && k.1 == iova));
                // Mapped again by a later entry of the batch: then it is that mapping.
                let again = |p: u64| {
                    reqs[i + 1..].iter().zip(&replies[i + 1..]).any(|(r, rep)| match (r, rep) {
                        (Request::Map { device, len, .. }, Reply::Ok { values, .. }) => {
                            device.0 as usize == d && p >= values[0] && p < values[0] + len
                        }
                        _ => false,
                    })
                };
                let gone: BTreeSet<u64> = (0..len / PAGE).map(|p| iova + p * PAGE).filter(|p| !again(*p)).collect();
                let held = s.hw().translations(d);
                assert!(
                    gone.iter().all(|p| !held.contains_key(p)),
                    "still translates after Ok: {}\n{reqs:x?}\n{replies:x?}\n{held:x?}",
                    ctx_of(i)
                );
                let reached = s.hw().reach(d, &gone);
                assert!(reached.is_empty(), "reached {reached:x?} after its Ok: {}", ctx_of(i));
                ok += 1;
            }
            (_, Reply::Ok { .. }) => {
                ok += m.judge(s, client, *req, reply, &before, known, &|| ctx_of(i)) as usize;
            }
            _ => {}
        }
    }
    if replies.iter().all(|r| matches!(r, Reply::Err(e) if *e != iommu_protocol::ErrorCode::Hardware)) {
        assert_eq!(super::reference::before(s), before, "a batch refused whole changed something: {}", ctx());
    }
    check(s, m, probe, ctx);
    ok
}
