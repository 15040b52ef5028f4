//! Issue 26's two ratios timed side by side, so that the machine's load falls on both
//! sides alike: each round times the driver's path and the service's over the same 64
//! requests, back to back (which goes first alternates), and each ratio printed is the
//! median of its rounds' ratios, with its quartiles. Criterion's `service_vs_driver`
//! (`service.rs`) times each path for seconds on end, and on a shared machine the load
//! moves in between: five runs of it put the queue at 1.1 to 2.2 times the driver.
//!
//! The paths are `common/paths.rs`'s, which `examples/instructions.rs` counts.

mod common;

use std::time::{Duration, Instant};

use common::paths::{self, QueueRun, QUEUE_REQUESTS};

/// Rounds per ratio.
const ROUNDS: usize = 10_001;
/// Requests per side of a round.
const REQUESTS: u64 = 64;

/// The median and quartiles of `service / driver` over `ROUNDS` rounds, and the median
/// time per request of each side (driver, service); `driver` and `service` each do
/// `REQUESTS` requests and return the time of what they measured.
fn ratio(mut driver: impl FnMut() -> Duration, mut service: impl FnMut() -> Duration) -> (f64, f64, f64, f64, f64) {
    let (mut ratios, mut ds, mut ss) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (d, s) = if round % 2 == 0 {
            let d = driver();
            (d, service())
        } else {
            let s = service();
            (driver(), s)
        };
        ratios.push(s.as_secs_f64() / d.as_secs_f64());
        ds.push(d.as_secs_f64());
        ss.push(s.as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[ROUNDS / 2]
    };
    let per_request = |v: &mut Vec<f64>| median(v) * 1e9 / REQUESTS as f64;
    let m = median(&mut ratios);
    (m, ratios[ROUNDS / 4], ratios[3 * ROUNDS / 4], per_request(&mut ds), per_request(&mut ss))
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let (mut smmu, d) = paths::driver();
    let mut s = paths::service();
    let maps = paths::service_maps();
    let map = ratio(
        || {
            let t = timed(|| paths::driver_map(&mut smmu, d, REQUESTS));
            paths::driver_unmap(&mut smmu, d, REQUESTS);
            t
        },
        || {
            let mut refused = 0;
            let t = timed(|| refused = paths::service_map(&mut s, &maps));
            assert_eq!(refused, 0);
            paths::service_unmap(&mut s, REQUESTS);
            t
        },
    );
    let (mut smmu, d) = paths::driver();
    let mut s = paths::service();
    let mut run = QueueRun::new(&mut s);
    let queue = ratio(
        || timed(|| paths::driver_map_unmap(&mut smmu, d, REQUESTS)),
        || {
            let mut errors = 0;
            let t = timed(|| errors = paths::queue(&mut s, &mut run, REQUESTS / QUEUE_REQUESTS));
            assert_eq!(errors, 0, "every entry succeeded");
            t
        },
    );
    let show = |(m, lo, hi, d, s): (f64, f64, f64, f64, f64)| {
        format!("{m:.2} (quartiles {lo:.2} to {hi:.2}; medians {d:.1} ns and {s:.1} ns a request)")
    };
    println!("ratio: MAP call / driver map, 4 KiB: {}, target 1.5", show(map));
    println!(
        "ratio: queue MAP+UNMAP ({} entries a batch) / driver map+unmap, 4 KiB: {}, target 1.3",
        2 * QUEUE_REQUESTS,
        show(queue)
    );
    println!("({ROUNDS} rounds of {REQUESTS} requests a side, each side timed back to back with the other)");
}
