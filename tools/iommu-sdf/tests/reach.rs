//! One definition of what a device may reach: the service, started on the policy `build`
//! generates from a random valid description, is driven by random request sequences
//! (maps, GRANT chains, grants to oneself and round trips, revokes, releases, unmaps), and
//! after every step every page any device can reach must lie inside what `report` printed
//! for that device, with no more than the rights it printed.
//!
//! Some capabilities are made lendable to their own holder as well, the case in which a
//! holder could try to widen its capability to its other devices.

use iommu_pd::model::ModelHw;
use iommu_pd::Service;
use iommu_protocol::{ClientId, DeviceId, Handle, Reply, Request, Rights, MAX_UNMAP_RANGES};
use iommu_sdf::gen::Rng;
use iommu_sdf::model::System;
use proptest::prelude::*;

mod common;
use common::call;

/// The service on `sys`'s generated policy, or why it would not start.
fn start(sys: &System) -> Result<Service<'static, ModelHw>, iommu_pd::ConfigError> {
    common::start_on(&iommu_sdf::policy::policy(sys), |_, c| c.pa)
}

/// Every page each device can reach lies inside a range the report printed for it.
fn within_report(sys: &System, s: &Service<'_, ModelHw>) -> Result<(), String> {
    let report = iommu_sdf::report::reachability(sys);
    for (d, space) in sys.io_spaces.iter().enumerate() {
        for (iova, (pa, r)) in s.hw().reachable(d) {
            let printed = report.iter().any(|x| {
                x.device == space.name
                    && x.phys.is_some_and(|(lo, hi)| pa >= lo && pa + 0x1000 <= hi)
                    && (x.rights.read || !r.contains(Rights::READ))
                    && (x.rights.write || !r.contains(Rights::WRITE))
            });
            if !printed {
                return Err(format!(
                    "{} reaches {pa:#x} ({r:?}) at {iova:#x}, which the report does not list",
                    space.name
                ));
            }
        }
    }
    Ok(())
}

fn run(sys: &System, seed: u64, steps: usize) -> Result<usize, String> {
    let mut s = start(sys).map_err(|e| format!("the generated policy does not start the service: {e:?}"))?;
    let clients = sys.clients().len();
    let devices = sys.io_spaces.len();
    let mut rng = Rng(seed | 1);
    // (client, device, IOVA) of what MAP returned, and (client, grant handle).
    let mut mapped: Vec<(usize, usize, u64)> = Vec::new();
    let mut grants: Vec<(usize, u32)> = Vec::new();
    let mut ok = 0;
    for step in 0..steps {
        let c = rng.below(clients as u64) as usize;
        let pages = 1 + rng.below(3);
        let req = match rng.below(10) {
            0..=3 => Request::Map {
                cap: Handle(rng.below(8) as u32),
                device: DeviceId(rng.below(devices as u64) as u32),
                offset: rng.below(4) * 0x1000,
                len: pages * 0x1000,
                iova: None,
                rights: [Rights::READ, Rights::WRITE, Rights::READ_WRITE][rng.below(3) as usize],
            },
            4..=6 => Request::Grant {
                cap: Handle(rng.below(8) as u32),
                // Often to itself, the case a holder could abuse.
                to: ClientId(if rng.below(3) == 0 { c as u32 } else { rng.below(clients as u64) as u32 }),
                offset: rng.below(4) * 0x1000,
                len: pages * 0x1000,
                rights: [Rights::READ, Rights::READ_WRITE][rng.below(2) as usize],
                devices: 1 << rng.below(devices as u64),
            },
            7 => match grants.iter().filter(|g| g.0 == c).nth(rng.below(4) as usize) {
                Some(&(_, g)) => Request::Revoke { grant: Handle(g) },
                None => Request::Release { cap: Handle(rng.below(8) as u32) },
            },
            _ => match mapped.iter().filter(|m| m.0 == c).nth(rng.below(4) as usize) {
                Some(&(_, d, iova)) => {
                    let mut iovas = [0; MAX_UNMAP_RANGES];
                    iovas[0] = iova;
                    Request::Unmap { device: DeviceId(d as u32), iovas, count: 1 }
                }
                None => Request::Query,
            },
        };
        let reply = call(&mut s, c, req);
        if let Reply::Ok { values, .. } = reply {
            ok += 1;
            match req {
                Request::Map { device, .. } => mapped.push((c, device.0 as usize, values[0])),
                Request::Grant { .. } => grants.push((c, values[0] as u32)),
                Request::Unmap { device, iovas, .. } => mapped.retain(|m| (m.1, m.2) != (device.0 as usize, iovas[0])),
                _ => {}
            }
        }
        within_report(sys, &s).map_err(|e| format!("step {step}: client {c} {req:?} -> {reply:?}: {e}"))?;
    }
    Ok(ok)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_service_never_goes_beyond_the_report(
        seed in any::<u64>(),
        pds in 1usize..5,
        regions in 1usize..8,
        devices in 1usize..7,
        self_lend in any::<u64>(),
    ) {
        let text = iommu_sdf::gen::description(seed, pds, regions, devices);
        let (mut sys, problems) = iommu_sdf::check_text(&text);
        prop_assert!(problems.is_empty(), "{problems:#?}");
        // Some capabilities may also be lent to their own holder.
        for (i, c) in sys.caps.iter_mut().enumerate() {
            if self_lend & (1 << (i % 64)) != 0 && !c.grant_to.contains(&c.pd) {
                c.grant_to.push(c.pd.clone());
            }
        }
        let ok = run(&sys, seed, 300).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        // The sequences must do something, not only be refused.
        prop_assert!(ok > 0, "no request succeeded\n{text}");
    }
}

/// The reported case: a pool for `blk0` alone, lendable to its own holder, which also owns
/// `blk1`. The report lists nothing for `blk1`; the service lets `blk1` reach nothing.
#[test]
fn a_self_lendable_pool_stays_with_its_device() {
    let text = r#"<?xml version="1.0"?>
<system>
    <memory_region name="pool" size="0x4000" phys_addr="0x40000000" />
    <protection_domain name="blk_driver" priority="100">
        <map mr="pool" vaddr="0x2000000" perms="rw" />
    </protection_domain>
    <io_address_space name="blk0" peripheral_id="0x10" domain_id="1" owner="blk_driver" />
    <io_address_space name="blk1" peripheral_id="0x18" domain_id="2" owner="blk_driver" />
    <dma_capability name="pool" pd="blk_driver" mr="pool" size="0x4000" perms="rw" devices="blk0" grant_to="blk_driver" />
    <dma_quota pd="blk_driver" mappings="8" pages="8" />
</system>
"#;
    let (sys, _) = iommu_sdf::check_text(text);
    let report = iommu_sdf::report::reachability(&sys);
    assert!(report.iter().all(|r| r.device != "blk1"), "{report:#?}");
    let mut s = start(&sys).unwrap();
    let g = Request::Grant {
        cap: Handle(0),
        to: ClientId(0),
        offset: 0,
        len: 0x4000,
        rights: Rights::READ_WRITE,
        devices: 0b10,
    };
    assert_eq!(call(&mut s, 0, g), Reply::Err(iommu_protocol::ErrorCode::Denied));
    assert!(s.hw().reachable(1).is_empty());
    within_report(&sys, &s).unwrap();
}

/// A device passed through to a VM reaches the guest's RAM at guest-physical addresses,
/// page for page, and nothing of the guest's device window: the service on the generated
/// policy maps exactly what the report lists.
#[test]
fn a_passed_through_device_reaches_guest_ram_only() {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdf/ok-vm.xml")).unwrap();
    let (sys, problems) = iommu_sdf::check_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    let report = iommu_sdf::report::reachability(&sys);
    assert_eq!(report.len(), 1, "{report:#?}");
    assert_eq!((report[0].device.as_str(), report[0].region.as_str()), ("passthrough", "guest_ram"));
    // The report cannot know the SMMU: it names no stage as a fact.
    assert!(report[0].source.ends_with("(stage 2 where the SMMU has it, else stage 1)"), "{}", report[0].source);
    let s = start(&sys).unwrap();
    let reach = s.hw().reachable(0);
    // guest_ram is 0x40000 bytes at guest-physical 0x4000_0000; guest_mmio is not mapped.
    assert_eq!(reach.len(), 0x40);
    assert_eq!(reach.keys().next().copied(), Some(0x4000_0000));
    assert_eq!(reach.keys().last().copied(), Some(0x4003_f000));
    within_report(&sys, &s).unwrap();

    // The VMM (client 0) faults or its VM is stopped, and one unmap fails on the way: the
    // device reaches nothing, and keeps no translation, before its VMM runs again.
    let mut s = s;
    s.hw_mut().fail_next = Some("unmap");
    s.client_torn_down(0).unwrap();
    assert!(s.hw().reachable(0).is_empty());
    s.hw_mut().fail_next = Some("retry_unmap");
    assert!(s.client_ready(0).is_err());
    assert!(s.hw().reachable(0).is_empty(), "enabled before its stale translation was confirmed gone");
    // Restarted: the guest's RAM again, and only it.
    s.client_ready(0).unwrap();
    assert_eq!(s.hw().reachable(0), reach);
    within_report(&sys, &s).unwrap();
}

/// The regions the report gives devices (per device, through `iommu_pd::reach`) are the
/// regions the rules and the policy's region table treat as reachable
/// (`System::dma_region_names`, from `dma_grants`): a region the report omitted but the
/// rules count, or the other way, would be two definitions of reach. Over valid generated
/// descriptions and the accepted hostile ones.
#[test]
fn the_report_and_the_rules_reach_the_same_regions() {
    let mut compared = 0;
    for seed in 1..200u64 {
        let pds = 1 + (seed % 5) as usize;
        for text in [iommu_sdf::gen::description(seed, pds, 2 + pds, 1 + pds), iommu_sdf::gen::hostile(seed)] {
            let (sys, problems) = iommu_sdf::check_text(&text);
            if problems.iter().any(|p| !p.message.contains("program")) {
                continue;
            }
            let reported: std::collections::HashSet<String> =
                iommu_sdf::report::reachability(&sys).into_iter().map(|r| r.region).collect();
            let rules: std::collections::HashSet<String> =
                sys.dma_region_names().into_iter().map(str::to_string).collect();
            assert_eq!(reported, rules, "seed {seed}:\n{text}");
            compared += 1;
        }
    }
    assert!(compared > 200, "only {compared} descriptions compared");
}
