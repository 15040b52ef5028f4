//! REVOKE finds a capability's mappings by walking the indexes of the devices it and
//! what was derived from it may map for (no list per capability): every one of them goes,
//! on each of those devices, on the devices of the clients it was passed on to, and a
//! removal already pending is kept pending with no capability; the other mappings of
//! those devices stay. Each test checks what the devices translate, and the audit (which
//! finds a mapping that names a freed capability) after every step.

mod common;

use common::*;
use iommu_pd::{ClientConfig, Config, Service};
use iommu_protocol::{query, DeviceId, ErrorCode, Handle, Reply, Request, Rights};

const NIC: u32 = 0;
const DISK: u32 = 1;
const NIC2: u32 = 3;

/// MAP of one page at `offset` of handle `h` for `device` at `iova`, read-only.
fn map_at(s: &mut Service<'_, ModelHw>, c: usize, h: u32, device: u32, offset: u64, iova: u64) {
    assert_eq!(map(s, c, h, device, offset, 0x1000, Some(iova), Rights::READ), Reply::ok(&[iova]), "map {iova:#x}");
}

/// The IOVA pages device `d` translates (tables and cached), with their physical pages.
fn pages(s: &Service<'_, ModelHw>, d: u32) -> Vec<(u64, u64)> {
    s.hw().translations(d as usize).into_iter().map(|(iova, (pa, _))| (iova, pa)).collect()
}

fn audit(s: &Service<'_, ModelHw>, when: &str) {
    s.audit().unwrap_or_else(|e| panic!("{when}: {e}"));
}

/// NET lends itself part of its buffers for both its devices, maps the loan on each, and
/// passes a page of it on to BLK, which maps it on the disk; one of NET's mappings of the
/// loan is pending (its UNMAP not confirmed). Other mappings, below and above, are of
/// capabilities that stay. REVOKE of the loan removes it from both of NET's devices and
/// from the disk, keeps the pending one pending with no capability (the retry fails
/// too), and leaves the rest; once the IOMMU obeys, RESUME confirms the pending one.
#[test]
fn revoke_finds_the_mappings_on_every_device_of_the_subtree() {
    let mut s = service();
    let net = REGIONS[0].pa;
    let blk = REGIONS[1].pa;
    // Kept: NET's own capability (handle 0) on both devices, BLK's own (handle 0).
    map_at(&mut s, NET, 0, NIC, 0, IOVA_BASE);
    map_at(&mut s, NET, 0, NIC, 0x8000, IOVA_BASE + 0x5000);
    map_at(&mut s, NET, 0, NIC2, 0, IOVA_BASE);
    map_at(&mut s, BLK, 0, DISK, 0, IOVA_BASE);
    map_at(&mut s, BLK, 0, DISK, 0x1000, IOVA_BASE + 0x4000);
    // The loan: pages 1 to 4 of NET's buffers, for the NIC and the second NIC.
    let (loan, lent) = lend(&mut s, NET, 0, NET, 0x1000, 0x4000, 1 << NIC | 1 << NIC2);
    map_at(&mut s, NET, lent, NIC, 0, IOVA_BASE + 0x1000);
    map_at(&mut s, NET, lent, NIC2, 0x1000, IOVA_BASE + 0x3000);
    // Its first page passed on to BLK, for the disk.
    let (_, at_blk) = lend(&mut s, NET, lent, BLK, 0, 0x1000, 1 << DISK);
    map_at(&mut s, BLK, at_blk, DISK, 0, IOVA_BASE + 0x2000);
    // And one of the loan whose removal the IOMMU does not confirm.
    map_at(&mut s, NET, lent, NIC, 0x2000, IOVA_BASE + 0x2000);
    s.hw_mut().fail_next = Some("unmap");
    assert_eq!(unmap(&mut s, NET, NIC, &[IOVA_BASE + 0x2000]), err(ErrorCode::Hardware));
    audit(&s, "before REVOKE");

    // The pending removal is retried by REVOKE, and fails again.
    s.hw_mut().fail_next = Some("retry_unmap");
    assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(loan) }), err(ErrorCode::Hardware));
    assert_eq!(pages(&s, NIC2), [(IOVA_BASE, net)], "the second NIC keeps a page of the loan");
    assert_eq!(
        pages(&s, DISK),
        [(IOVA_BASE, blk), (IOVA_BASE + 0x4000, blk + 0x1000)],
        "the disk keeps what BLK was passed"
    );
    // The NIC: its own two, and the pending page, cached, the NIC blocked.
    assert_eq!(
        pages(&s, NIC),
        [(IOVA_BASE, net), (IOVA_BASE + 0x2000, net + 0x3000), (IOVA_BASE + 0x5000, net + 0x8000)]
    );
    assert!(s.hw().reachable(NIC as usize).is_empty());
    // (A pending mapping left naming the freed capability: only the books can tell.)
    audit(&s, "after REVOKE");
    let Reply::Ok { values, .. } = call(&mut s, NET, Request::Query) else { panic!("QUERY refused") };
    assert_eq!((values[query::MAPPINGS], values[query::REMOVALS_PENDING]), (4, 1));
    assert_eq!(map(&mut s, BLK, at_blk, DISK, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));
    assert_eq!(map(&mut s, NET, lent, NIC2, 0, 0x1000, None, Rights::READ), err(ErrorCode::BadHandle));

    // The freed capability slots are taken again; the pending mapping is no one's.
    let (_, again) = lend(&mut s, NET, 0, NET, 0, 0x1000, 1 << NIC2);
    map_at(&mut s, NET, again, NIC2, 0, IOVA_BASE + 0x1000);
    audit(&s, "after a new grant");
    // The IOMMU obeys again: RESUME confirms the pending removal, and the NIC runs.
    assert_eq!(call(&mut s, NET, Request::Resume { device: DeviceId(NIC) }), Reply::ok(&[]));
    audit(&s, "after RESUME");
    assert_eq!(pages(&s, NIC), [(IOVA_BASE, net), (IOVA_BASE + 0x5000, net + 0x8000)]);
    assert_eq!(s.hw().reachable(NIC as usize).len(), 2);
}

/// More mappings of a capability than one IOMMU call removes (`UNMAP_BATCH`, 64), among
/// others of the same device: the walk stops at each batch and resumes above it. With
/// 3 of every 4 going (150, three batches), and with every other one (100: a batch, and
/// one more that ends at the last), each time with the IOMMU refusing the first batch:
/// those are pending, the rest gone, the kept ones untouched, and RESUME confirms.
#[test]
fn revoke_of_more_than_a_batch_removes_them_all_and_nothing_else() {
    let clients = [ClientConfig { max_mappings: 256, max_pages: 256, ..CLIENTS[NET] }, CLIENTS[BLK], CLIENTS[EVIL]];
    let cfg = Config { clients: &clients, ..config() };
    for (every, going_of_every, fail) in [(4u64, 3u64, true), (2, 1, true), (4, 3, false)] {
        let mut s = Service::new(ModelHw::default(), cfg, sized_storage(32, 288, 4, 3)).unwrap();
        let (loan, lent) = lend(&mut s, NET, 0, NET, 0, 0x1000, 1 << NIC);
        let (mut kept, mut going) = (Vec::new(), 0);
        for i in 0..200u64 {
            let iova = IOVA_BASE + i * 0x1000;
            if i % every < going_of_every {
                map_at(&mut s, NET, lent, NIC, 0, iova);
                going += 1;
            } else {
                // A page of NET's own capability, other than the loan's.
                map_at(&mut s, NET, 0, NIC, 0x1000, iova);
                kept.push((iova, REGIONS[0].pa + 0x1000));
            }
        }
        let want = if fail {
            s.hw_mut().fail_next = Some("unmap");
            err(ErrorCode::Hardware)
        } else {
            Reply::ok(&[])
        };
        assert_eq!(call(&mut s, NET, Request::Revoke { grant: Handle(loan) }), want, "{going} going");
        let Reply::Ok { values, .. } = call(&mut s, NET, Request::Query) else { panic!("QUERY refused") };
        let pending = if fail { 64 } else { 0 };
        assert_eq!(values[query::REMOVALS_PENDING], pending, "{going} going");
        assert_eq!(values[query::MAPPINGS], kept.len() as u64 + pending, "{going} going");
        assert_eq!(pages(&s, NIC).len(), kept.len() + pending as usize, "{going} going");
        audit(&s, "after REVOKE");
        if fail {
            assert_eq!(call(&mut s, NET, Request::Resume { device: DeviceId(NIC) }), Reply::ok(&[]));
            audit(&s, "after RESUME");
        }
        assert_eq!(pages(&s, NIC), kept, "{going} going");
    }
}
