//! Every error of `Smmu::init`, a refused probe included, leaves the SMMU denying:
//! sCR0.CLIENTPD = 0, USFCFG = 1, every S2CR faulting, every SMR invalid. The model
//! starts as firmware may leave it: CLIENTPD = 1 (bypass), or translating with a
//! bypassing S2CR; each test asks what a device's DMA does afterwards.

use smmuv2::mmio::reg;
use smmuv2::model::{host_config, host_region, Mmu500Model, Profile, ZYNQMP};
use smmuv2::{fail_closed, Config, Error, Memory, Smmu, Unsupported};

const SID: u32 = 0x14e8;

fn firmware_bypass(model: &Mmu500Model) {
    model.preset(reg::SCR0, 0);
    model.preset(reg::smr(3), (1 << 31) | SID as u64);
    model.preset(reg::s2cr(3), 1 << 16);
}

fn denies(model: &Mmu500Model) {
    for sid in [SID, 0, 0x7fff] {
        assert!(!model.access(sid, 0x1000, true).reached_memory(), "stream {sid:#x} reaches memory");
    }
    let scr0 = model.peek(reg::SCR0);
    assert_eq!(scr0 & 1, 0, "CLIENTPD");
    assert_ne!(scr0 & (1 << 10), 0, "USFCFG");
    for i in 0..48 {
        assert_eq!(model.peek(reg::s2cr(i)) >> 16 & 3, 2, "S2CR{i}");
        assert_eq!(model.peek(reg::smr(i)) >> 31, 0, "SMR{i}");
    }
}

fn init(model: &Mmu500Model, config: Config) -> Result<(), Error> {
    let mem = Memory { tables: host_region(16 * 4096, 4096) };
    // SAFETY: fresh host memory only this driver uses.
    unsafe { Smmu::init(model, mem, config) }.map(|_| ())
}

/// Each refusal the probe can give, from an ID register changed in the ZynqMP profile.
#[test]
fn every_refused_probe_fails_closed() {
    let z = ZYNQMP;
    let cases: [(&str, Profile, Config, Error); 8] = [
        ("no stage 1", Profile { idr0: z.idr0 & !(1 << 30), ..z }, host_config(), Unsupported::NoStage1.into()),
        (
            "stream indexing",
            Profile { idr0: z.idr0 & !(1 << 27), ..z },
            host_config(),
            Unsupported::StreamIndexing.into(),
        ),
        ("no SMRs", Profile { idr0: z.idr0 & !0xff, ..z }, host_config(), Unsupported::NoStreamMatchGroups.into()),
        (
            "no 4K granule",
            Profile { idr2: z.idr2 & !(1 << 12), ..z },
            host_config(),
            Unsupported::NoAArch64Granule4K.into(),
        ),
        (
            "non-coherent walks",
            Profile { idr0: z.idr0 & !(1 << 14), ..z },
            host_config(),
            Unsupported::NonCoherentWalk.into(),
        ),
        (
            "only stage-2 banks",
            Profile { idr1: z.idr1 | (16 << 16), ..z },
            host_config(),
            Unsupported::NoStage1Banks.into(),
        ),
        (
            "IOVAs wider than the bus",
            Profile { idr2: (z.idr2 & !(0xf << 8)) | (2 << 8), ..z },
            host_config(),
            Unsupported::InputTooWide { ias_bits: 48, ubs_bits: 40 }.into(),
        ),
        (
            "register mapping too small",
            z,
            Config { register_span: Some(0x10000), ..host_config() },
            Unsupported::RegisterSpanTooSmall { needed: 0x20000, given: 0x10000 }.into(),
        ),
    ];
    for (what, profile, config, error) in cases {
        for firmware in [false, true] {
            let model = Mmu500Model::new(profile);
            if firmware {
                firmware_bypass(&model);
            }
            let before = model.access(SID, 0x1000, true).reached_memory();
            assert!(before, "{what}: the model starts open");
            assert_eq!(init(&model, config), Err(error), "{what}");
            if profile.idr0 >> 27 & 1 == 1 && profile.idr0 & 0xff != 0 {
                denies(&model);
            } else {
                // Without SMRs to go by, S2CRs are still faulted and CLIENTPD cleared.
                assert!(!model.access(SID, 0x1000, true).reached_memory(), "{what}");
            }
        }
    }
}

#[test]
fn an_output_size_too_small_for_the_pool_fails_closed() {
    // OAS = 32 bits; host memory lies above 4 GiB.
    let model = Mmu500Model::new(Profile { idr2: ZYNQMP.idr2 & !(0xf << 4), ..ZYNQMP });
    firmware_bypass(&model);
    assert!(matches!(init(&model, host_config()), Err(Error::Unsupported(Unsupported::OutputTooNarrow { .. }))));
    denies(&model);
}

#[test]
fn a_bad_pool_fails_closed() {
    let model = Mmu500Model::new(ZYNQMP);
    let mut tables = host_region(8192, 4096);
    tables.len = 0;
    // SAFETY: host memory only this driver uses.
    let r = unsafe { Smmu::init(&model, Memory { tables }, host_config()) };
    assert_eq!(r.map(|_| ()), Err(Error::BadMemory("page-table pool")));
    denies(&model);
}

/// The global TLB sync of the bring-up never completes: `init` fails with the timeout,
/// and the SMMU still denies (the deny writes come before the sync).
#[test]
fn a_global_sync_that_never_completes_fails_closed() {
    let model = Mmu500Model::new(ZYNQMP);
    firmware_bypass(&model);
    model.stall_syncs(true);
    assert_eq!(init(&model, host_config()), Err(Error::Timeout("SMMU_sTLBGSTATUS.GSACTIVE")));
    denies(&model);
    // Called alone, fail_closed reports the same.
    assert_eq!(fail_closed(&model, 16), Err(Error::Timeout("SMMU_sTLBGSTATUS.GSACTIVE")));
    model.stall_syncs(false);
    assert_eq!(fail_closed(&model, 16), Ok(()));
}

/// The sink (the last context bank, where `block` routes a stream) must translate: stage 1
/// on (SCTLR.M), nothing to walk (TCR.EPD0, EPD1), a stage-1 bank in AArch64 format
/// (CBAR.TYPE, CBA2R.VA64). A register of it whose writes do not take (one Secure
/// software kept, say) used to go unnoticed: `init` succeeded, and with SCTLR.M stuck
/// at 0 a blocked stream then bypassed the SMMU through the sink. Now `init` reads them
/// back and fails closed.
#[test]
fn a_sink_that_does_not_read_back_fails_closed() {
    let l = Mmu500Model::new(ZYNQMP).layout();
    let sink = 15;
    for (name, offset) in [
        ("SCTLR", l.cb(sink, reg::CB_SCTLR)),
        ("TCR", l.cb(sink, reg::CB_TCR)),
        ("CBAR", l.gr1(reg::cbar(sink))),
        ("CBA2R", l.gr1(reg::cba2r(sink))),
    ] {
        let model = Mmu500Model::new(ZYNQMP);
        firmware_bypass(&model);
        model.ignore_writes(offset);
        let mem = Memory { tables: host_region(16 * 4096, 4096) };
        // SAFETY: fresh host memory only this driver uses.
        match unsafe { Smmu::init(&model, mem, host_config()) } {
            Ok(mut smmu) => {
                let d = smmu.create_domain().unwrap();
                smmu.attach(smmuv2::StreamId(SID), d).unwrap();
                smmu.block(smmuv2::StreamId(SID)).unwrap();
                let out = model.access(SID, 0x1000, true);
                panic!("{name} stuck: init accepted the sink; a blocked stream then gives {out:?}");
            }
            Err(e) => assert_eq!(e, Error::NotClosed("the sink context bank"), "{name}"),
        }
        denies(&model);
    }
}
