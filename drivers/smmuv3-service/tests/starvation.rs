//! Issue 22, item 7: the page-table pool is shared by every device, so a client that maps
//! and unmaps one page at IOVAs 2 MiB apart, in a wide window, used to leave a table
//! behind at every place and drain it; every other client's MAP then answered `Hardware`
//! for good. Here the service runs on the SMMU driver over the host model, with a pool of
//! the size `iommu-sdf` gives (`table_pool_pages`), a hostile client and a victim, for
//! random steps: the victim's MAP within its quota never fails, its device reaches exactly
//! what it mapped, and nothing the hostile client unmapped stays reachable.

#[path = "../../../iommu-pd/tests/common/victim.rs"]
mod victim;

use iommu_pd::Service;
use iommu_protocol::Reply;
use smmuv3::event::id;
use smmuv3::model::{host_region, host_smmu, Outcome, SmmuModel};
use smmuv3_service::SmmuBackend;
use victim::*;

type Svc = Service<'static, SmmuBackend<SmmuModel>>;

fn service(victim_pa: u64, hostile_pa: u64) -> Svc {
    let backend = SmmuBackend::new(host_smmu(POOL_PAGES), &[SID_VICTIM, SID_HOSTILE]).unwrap();
    let tables = Box::leak(Box::new(<iommu_pd::owned_storage!(2, 2, 4, 5)>::default()));
    Service::new(backend, pool_attack(victim_pa, hostile_pa), tables.storage()).unwrap()
}

fn translate(s: &mut Svc, sid: u32, iova: u64) -> Outcome {
    s.hw_mut().smmu().regs().translate(sid, iova, false)
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn run(seed: u64, steps: usize) -> usize {
    let (vbuf, hbuf) = (host_region(8 * PAGE as usize, 0x1000), host_region(PAGE as usize, 0x1000));
    let mut s = service(vbuf.pa.0, hbuf.pa.0);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // The victim's mappings: (IOVA, pages, offset into its buffer).
    let mut mine: Vec<(u64, u64, u64)> = Vec::new();
    // The hostile client's one mapping, and every IOVA it has unmapped.
    let (mut theirs, mut gone): (Option<u64>, Vec<u64>) = (None, Vec::new());
    let mut victim_maps = 0;
    for step in 0..steps {
        let ctx = format!("seed {seed} step {step}");
        if rng.below(3) != 0 {
            // Hostile: unmap its page and map it again somewhere new, mostly 2 MiB on,
            // sometimes 1 GiB or 512 GiB on (a new level-2 or level-1 table as well).
            if let Some(iova) = theirs.take() {
                assert_eq!(call(&mut s, HOSTILE, unmap(HOSTILE, iova)), Reply::ok(&[]), "{ctx}");
                gone.push(iova);
            }
            let stride = [2 << 20, 2 << 20, 2 << 20, 1 << 30, 1 << 39][rng.below(5) as usize];
            let k = step as u64 * 7 + rng.below(7);
            let iova = HOSTILE_BASE + (k * stride) % (1 << 40);
            if let Reply::Ok { values, .. } = call(&mut s, HOSTILE, map(HOSTILE, 0, PAGE, Some(iova))) {
                theirs = Some(values[0]);
                assert_eq!(translate(&mut s, SID_HOSTILE, iova), Outcome::Ok(hbuf.pa.0), "{ctx}");
            }
            continue;
        }
        // Victim: a driver within its quota.
        let used: u64 = mine.iter().map(|m| m.1).sum();
        if !mine.is_empty() && (rng.below(3) == 0 || mine.len() == VICTIM_MAPPINGS as usize) {
            let (iova, pages, _) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
            assert_eq!(call(&mut s, VICTIM, unmap(VICTIM, iova)), Reply::ok(&[]), "{ctx}: the victim's UNMAP");
            for p in 0..pages {
                assert_eq!(translate(&mut s, SID_VICTIM, iova + p * PAGE), Outcome::Fault(id::F_TRANSLATION), "{ctx}");
            }
        } else {
            let pages = 1 + rng.below(2);
            if used + pages <= VICTIM_PAGES {
                let offset = rng.below(8 - pages + 1) * PAGE;
                match call(&mut s, VICTIM, map(VICTIM, offset, pages * PAGE, None)) {
                    Reply::Ok { values, .. } => {
                        mine.push((values[0], pages, offset));
                        victim_maps += 1;
                    }
                    r => panic!("{ctx}: the victim's MAP within its quota answered {r:?}"),
                }
            }
        }
        // The victim's device reaches what it mapped, where it mapped it.
        for &(iova, pages, offset) in &mine {
            for p in 0..pages {
                let want = Outcome::Ok(vbuf.pa.0 + offset + p * PAGE);
                assert_eq!(translate(&mut s, SID_VICTIM, iova + p * PAGE), want, "{ctx}");
            }
        }
        // Nothing the hostile client unmapped is reachable, its tables reused or not.
        for &iova in gone.iter().rev().take(16) {
            if Some(iova) != theirs {
                assert_eq!(translate(&mut s, SID_HOSTILE, iova), Outcome::Fault(id::F_TRANSLATION), "{ctx}");
            }
        }
    }
    victim_maps
}

#[test]
fn a_client_mapping_everywhere_cannot_drain_the_page_table_pool() {
    let mut maps = 0;
    for seed in 0..8 {
        maps += run(seed, 600);
    }
    assert!(maps > 500, "only {maps} MAPs of the victim's");
}
