//! The page-table pool on the MMU-500 is one for every context bank, as on the SMMUv3
//! (`drivers/smmuv3-service/tests/starvation.rs`, the same description), and `iommu-sdf`
//! sizes it the same way (`model::table_pool_pages`: a root per device, and for each
//! client the smaller of three tables per page of its quota and the tables covering its
//! windows). A hostile client
//! with one page of quota and a 1 TiB window maps and unmaps its page somewhere new, for
//! ever: 2 MiB on (a new level-3 table), 1 GiB on (a level 2 as well) or 512 GiB on (a
//! level 1 as well). The driver takes back the tables left empty when the pool runs short
//! (`Smmu::reclaim_tables`), so the victim's MAPs within its quota never fail, its device
//! reaches what it mapped, and nothing the hostile client unmapped stays reachable.

#[path = "../../../iommu-pd/tests/common/victim.rs"]
mod victim;

use iommu_pd::Service;
use iommu_protocol::Reply;
use smmuv2::model::{host_config, host_region, Mmu500Model, Outcome, ZYNQMP};
use smmuv2::{Memory, Smmu};
use smmuv2_service::Smmuv2Backend;
use victim::*;

type Svc = Service<'static, Smmuv2Backend<Mmu500Model>>;

fn service(victim_pa: u64, hostile_pa: u64) -> Svc {
    let tables = host_region(POOL_PAGES * PAGE as usize, PAGE as usize);
    // SAFETY: fresh host memory only this driver uses.
    let smmu = unsafe { Smmu::init(Mmu500Model::new(ZYNQMP), Memory { tables }, host_config()) }.expect("init");
    let backend = Smmuv2Backend::new(smmu, &[SID_VICTIM, SID_HOSTILE]).unwrap();
    let storage = Box::leak(Box::new(<iommu_pd::owned_storage!(2, 2, 4, 5)>::default()));
    Service::new(backend, pool_attack(victim_pa, hostile_pa), storage.storage()).unwrap()
}

fn access(s: &Svc, sid: u32, iova: u64) -> Outcome {
    s.hw().smmu_ref().regs().access(sid, iova, true)
}

#[test]
fn a_client_mapping_everywhere_in_turn_leaves_another_its_tables() {
    let (vbuf, hbuf) = (host_region(8 * PAGE as usize, 0x1000), host_region(PAGE as usize, 0x1000));
    let mut s = service(vbuf.pa.0, hbuf.pa.0);
    // The victim's mappings: (IOVA, pages, offset into its buffer).
    let mut mine: Vec<(u64, u64, u64)> = Vec::new();
    let mut gone: Vec<u64> = Vec::new();
    let mut theirs: Option<u64> = None;
    let mut hostile_refused = Vec::new();
    for step in 0..600u64 {
        // Hostile: its page unmapped, and mapped again somewhere new.
        if let Some(iova) = theirs.take() {
            assert_eq!(call(&mut s, HOSTILE, unmap(HOSTILE, iova)), Reply::ok(&[]), "step {step}");
            gone.push(iova);
        }
        let stride = [2 << 20, 1 << 30, 1 << 39][step as usize % 3];
        let iova = HOSTILE_BASE + (step * stride) % (1 << 40);
        match call(&mut s, HOSTILE, map(HOSTILE, 0, PAGE, Some(iova))) {
            Reply::Ok { .. } => {
                theirs = Some(iova);
                assert!(matches!(access(&s, SID_HOSTILE, iova), Outcome::Translated(pa) if pa == hbuf.pa.0));
            }
            r => hostile_refused.push((step, r)),
        }
        // Victim: from step 3, once the hostile client has had three places' tables, its
        // mappings made one a step and all let go every fourth step.
        if step < 3 {
            continue;
        }
        if step % 4 == 3 {
            while let Some((iova, _, _)) = mine.pop() {
                assert_eq!(call(&mut s, VICTIM, unmap(VICTIM, iova)), Reply::ok(&[]), "step {step}");
            }
        } else {
            let pages = 1 + step % 2;
            let offset = (step % (9 - pages)) * PAGE;
            let used: u64 = mine.iter().map(|m| m.1).sum();
            if used + pages <= VICTIM_PAGES && mine.len() < VICTIM_MAPPINGS as usize {
                match call(&mut s, VICTIM, map(VICTIM, offset, pages * PAGE, None)) {
                    Reply::Ok { values, .. } => mine.push((values[0], pages, offset)),
                    r => panic!("step {step}: the victim's MAP within its quota answered {r:?}"),
                }
            }
        }
        // The victim's device reaches what it mapped, where it mapped it.
        for &(iova, pages, offset) in &mine {
            for p in 0..pages {
                let want = Outcome::Translated(vbuf.pa.0 + offset + p * PAGE);
                assert_eq!(access(&s, SID_VICTIM, iova + p * PAGE), want, "step {step}");
            }
        }
        // Nothing the hostile client unmapped is reachable, its tables reused or not.
        for &iova in gone.iter().rev().take(8) {
            if Some(iova) != theirs {
                assert!(!access(&s, SID_HOSTILE, iova).reached_memory(), "step {step}: {iova:#x}");
            }
        }
    }
    // The hostile client's own page always had its tables too: its quota holds three.
    assert_eq!(hostile_refused, vec![]);
    assert_eq!(gone.len(), 599);
}
