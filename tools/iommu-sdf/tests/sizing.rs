//! The shared tables `build` sizes from a description, against a client that tries to use
//! up what others need (issue 22, items 7 and 8): mapping slots (`policy::mapping_slots`)
//! and the page-table pool (`model::table_pool_pages`).

use std::path::Path;

use iommu_pd::model::ModelHw;
use iommu_pd::service::{ClientTables, DeviceState};
use iommu_pd::{Config, FaultPolicy, FaultRing, Service, Storage};
use iommu_protocol::{DeviceId, Handle, Reply, Request, Rights, MAX_MRS};
use iommu_sdf::check_text;
use iommu_sdf::model::table_pool_pages;
use iommu_sdf::policy::policy;

mod common;

fn system_xml() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../system.xml")).unwrap()
}

fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

#[test]
fn system_xml_pool_and_slots() {
    let (sys, problems) = check_text(&system_xml());
    assert!(problems.is_empty(), "{problems:?}");
    // Four devices, each a 1 MiB window inside one 2 MiB range: a root and three tables
    // each. The quotas' bound (3 x 55 pages) is larger, so the windows' holds: 16 pages
    // (64 KiB); sized by the quotas alone it was 4 + 165 = 169 pages (676 KiB).
    assert_eq!(table_pool_pages(&sys), 16);
    assert_eq!(sys.region("smmu_tables").unwrap().size, 16 * 0x1000);
    // Mapping slots: the quotas (8 + 4 + 2 + 2); no device without an owner.
    assert_eq!(policy(&sys).mapping_slots, 16);
}

#[test]
fn a_wide_window_costs_what_the_quota_allows_and_a_narrow_one_what_it_covers() {
    // The hostile driver's window made 1 TiB wide: with a 4-page quota it holds at most
    // 12 tables at once (the driver gives back empty ones when the pool runs short), not
    // the half million that cover its window.
    let text = system_xml().replacen(
        r#"owner="hostile_driver" resume="false"
                      iova_base="0x1_0000_0000" iova_size="0x10_0000""#,
        r#"owner="hostile_driver" resume="false"
                      iova_base="0x100_0000_0000" iova_size="0x100_0000_0000""#,
        1,
    );
    let (sys, problems) = check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(table_pool_pages(&sys), 4 + 3 + 3 * 4 + 3 + 3);
    // A window across a 2 MiB boundary needs two level-3 tables.
    let text = system_xml().replacen(r#"iova_base="0x1_0000_0000""#, r#"iova_base="0x1_001f_f000""#, 1);
    let (sys, problems) = check_text(&text);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(table_pool_pages(&sys), 4 + 4 + 3 * 3);
}

/// `system.xml` with a device no client owns, with one iomap (Microkit's vocabulary). The
/// rule that such a device may iomap nothing is `check`'s; the IOMMU PD's tables must hold
/// whatever policy it is given.
fn with_an_unowned_device() -> String {
    system_xml()
        .replacen(
            r#"<memory_region name="c_buffers" size="0x2000" />"#,
            r#"<memory_region name="c_buffers" size="0x2000" />
    <memory_region name="engine_buf" size="0x1000" />"#,
            1,
        )
        .replacen(
            "    <!-- The edu driver may lend",
            r#"    <io_address_space name="engine" peripheral_id="0:6.0" domain_id="5" iova_base="0x10_0000" iova_size="0x10_0000">
        <iomap mr="engine_buf" iovaddr="0x10_0000" perms="r" />
    </io_address_space>
    <!-- The edu driver may lend"#,
            1,
        )
}

#[test]
fn static_maps_of_unowned_devices_get_slots_of_their_own() {
    let (sys, _) = check_text(&with_an_unowned_device());
    assert!(sys.io_spaces.iter().any(|s| s.name == "engine" && s.owner.is_none() && s.iomaps.len() == 1));
    let p = policy(&sys);
    // The quotas' 16, and one for the engine's map.
    assert_eq!(p.mapping_slots, 17);
    // The engine's page needs its tables too: 3 more pages, and its root.
    assert_eq!(table_pool_pages(&sys), 16 + 1 + 3);

    // The service on exactly those tables: every client fills its mapping quota, the C
    // driver last; none is refused for want of a slot.
    let cfg = Config {
        clients: leak(p.clients.iter().map(|c| c.1).collect()),
        devices: leak(p.devices.iter().map(|d| d.1).collect()),
        regions: leak(p.regions.iter().map(|r| r.1).collect()),
        caps: leak(p.caps.iter().map(|c| c.1).collect()),
        static_maps: leak(p.static_maps.clone()),
        faults: FaultPolicy { window: 100, max_faults: 10, resume_rest_ms: 0 },
    };
    let slots = p.mapping_slots as usize;
    let (clients, devices) = (p.clients.len(), p.devices.len());
    let storage = Storage {
        caps: leak(vec![None; p.cap_slots]),
        mappings: leak(vec![None; slots]),
        leaves: leak(vec![Default::default(); iommu_pd::index::leaves_for(slots, devices)]),
        inners: leak(vec![Default::default(); iommu_pd::index::inners_for(slots, devices)]),
        free: leak(vec![0; slots]),
        clients: leak(vec![ClientTables::default(); clients]),
        devices: leak(vec![DeviceState::default(); devices]),
        rings: leak((0..clients).map(|_| FaultRing::default()).collect()),
    };
    let mut s = Service::new(ModelHw::default(), cfg, storage).unwrap();
    let engine = p.devices.iter().position(|d| d.0 == "engine").unwrap();
    assert_eq!(s.hw().pages[&engine].len(), 1);
    for (client, (name, c)) in p.clients.iter().enumerate() {
        let device = p.devices.iter().position(|d| d.1.owner == client).unwrap();
        for k in 0..c.max_mappings {
            let map = Request::Map {
                cap: Handle(0),
                device: DeviceId(device as u32),
                offset: 0,
                len: 0x1000,
                iova: None,
                rights: Rights::READ,
            };
            let mut mrs = [0; MAX_MRS];
            let (label, n) = map.encode(&mut mrs);
            let r = s.handle(client, label, &mrs[..n]);
            assert!(matches!(r, Reply::Ok { .. }), "{name}'s MAP {k} of {} answered {r:?}", c.max_mappings);
        }
    }
}

/// Mapping slots are indexed in 16 bits (`iommu_pd::service::MAX_MAPPINGS`): quotas that
/// fill them exactly start the service on the generated policy; one more mapping and
/// `Service::new` refuses its storage (nothing would be served), so `check` refuses the
/// description, at the largest quota. It accepted a quota of 2^64 - 1 before.
#[test]
fn mapping_quotas_past_the_slots_the_service_has_are_refused() {
    let max = iommu_pd::service::MAX_MAPPINGS as u64;
    // The other quotas take 4 + 2 + 2 slots.
    let with = |n: u64| {
        system_xml().replacen(
            r#"<dma_quota pd="edu_driver" mappings="8""#,
            &format!(r#"<dma_quota pd="edu_driver" mappings="{n}""#),
            1,
        )
    };
    let (sys, problems) = check_text(&with(max - 8));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(policy(&sys).mapping_slots, max);
    assert!(common::start_on(&policy(&sys), |_, c| c.pa).is_ok());
    let (sys, problems) = check_text(&with(max - 7));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("need 65536 mapping slots, `edu_driver`'s 65528 among them"), "{problems:?}");
    assert!(matches!(common::start_on(&policy(&sys), |_, c| c.pa), Err(iommu_pd::ConfigError::TooMany("mappings"))));
    let (_, problems) = check_text(&with(u64::MAX));
    assert_eq!(problems.len(), 1, "{problems:?}");
}
