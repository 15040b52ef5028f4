//! The paths of `benches/service.rs`'s `service_vs_driver` group (`benches/common/paths.rs`),
//! run for an instruction count that the machine's load does not move (`valgrind
//! --tool=callgrind`, then `callgrind_annotate --inclusive=yes`: each path function's
//! inclusive count over the requests it served). Nothing here is timed.
//! `benches/instructions.sh` runs it and prints the counts per request.
//!
//! Each path checks what it did (every request answered as it should be, the SMMU's
//! tables as they should be after it), so a count cannot come from a path that failed
//! early.

#[path = "../benches/common/mod.rs"]
mod common;

use common::paths::{self, batch_page, half_page, QueueRun, QUEUE_REQUESTS};
use common::scale;
use smmuv3::Iova;

/// Rounds of 64 requests per path, after one round of warm-up.
const ROUNDS: u64 = 64;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let all = which.is_empty();
    if all || which == "driver" {
        let (mut smmu, d) = paths::driver();
        for _ in 0..=ROUNDS {
            paths::driver_map_unmap(&mut smmu, d, 64);
            // Each map reached the tables and left them.
            assert!((0..64).all(|i| smmu.translate(d, batch_page(i).0).unwrap().is_none()));
        }
        for _ in 0..=ROUNDS {
            paths::driver_map(&mut smmu, d, 64);
            for i in 0..64 {
                assert_eq!(smmu.translate(d, batch_page(i).0).unwrap().map(|l| l.pa), Some(batch_page(i).1));
            }
            paths::driver_unmap(&mut smmu, d, 64);
        }
        println!("driver: done");
    }
    if all || which == "map" {
        let mut s = paths::service();
        let maps = paths::service_maps();
        let dom = s.hw().domain_of(0).unwrap();
        for round in 0..=ROUNDS {
            assert_eq!(paths::service_map(&mut s, &maps), 0, "round {round}: every MAP succeeded");
            // Where the allocator put them (from the window's base), to their memory.
            let smmu = s.hw().smmu_ref();
            for i in 0..64 {
                assert_eq!(smmu.translate(dom, batch_page(i).0).unwrap().map(|l| l.pa), Some(batch_page(i).1));
            }
            paths::service_unmap(&mut s, 64);
        }
        println!("service MAP: done");
    }
    if all || which == "queue" {
        let mut s = paths::service();
        let mut run = QueueRun::new(&mut s);
        assert_eq!(paths::queue(&mut s, &mut run, 2), 0);
        assert_eq!(paths::queue(&mut s, &mut run, ROUNDS * 64 / QUEUE_REQUESTS), 0, "every entry succeeded");
        // The last batch's pages translate to their memory, the other half's not at all.
        let (smmu, dom) = (s.hw().smmu_ref(), s.hw().domain_of(0).unwrap());
        let last = 1 - run.next;
        for h in 0..2 {
            for j in 0..QUEUE_REQUESTS {
                let (iova, pa) = batch_page(half_page(h, j));
                assert_eq!(smmu.translate(dom, iova).unwrap().map(|l| l.pa), (h == last).then_some(pa));
            }
        }
        println!("queue: done");
    }
    // `scale.rs`'s loops (`benches/common/scale.rs`), for `benches/scale-instructions.sh`:
    // `scale SLOTS LIVE` and `churn`, each `SCALE_STEPS` times.
    if which == "scale" {
        let arg = |i: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).expect("scale SLOTS LIVE");
        let (slots, live): (usize, usize) = (arg(2), arg(3));
        let mut s = scale::filled(slots, live);
        scale::map_unmap(&mut s, SCALE_STEPS);
        // Each MAP was undone: as many live as before, at the same IOVAs.
        assert_eq!(
            s.hw().smmu_ref().translate(s.hw().domain_of(0).unwrap(), Iova(1 << 30)).unwrap().is_some(),
            live > 0
        );
        assert!(
            scale::map(&mut s, 0, 4096) == Some((1 << 30) + live as u64 * 4096),
            "the next page above the live ones"
        );
        println!("scale {slots} {live}: done");
    }
    if which == "churn" {
        let mut churn = scale::Churn::new();
        churn.steps(SCALE_STEPS);
        println!("churn: done, {} of {SCALE_STEPS} MAPs found no room", churn.refused);
    }
}

/// Steps of each `scale` and `churn` run.
const SCALE_STEPS: u64 = 10_000;
