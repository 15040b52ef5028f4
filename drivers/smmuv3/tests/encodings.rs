//! Exact encodings of STEs, CDs, commands and event records.
//!
//! Expected words are built here from Linux's definitions in
//! drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h (quoted beside each one), which follow
//! Arm IHI 0070 sections 5.2 (STE), 5.4 (CD), 4 (commands) and 7.3 (events). They are
//! written out independently of the driver's own field constants.

use smmuv3::cd::{Cd, Stage1Context};
use smmuv3::cmd::Command;
use smmuv3::event::{Access, Event, EventRecord, FaultClass};
use smmuv3::ste::{l1_desc, Ste, SteConfig};
use smmuv3::{Asid, Iova, PhysAddr, StreamId};

/// Linux's GENMASK_ULL(h, l).
const fn genmask(h: u32, l: u32) -> u64 {
    (u64::MAX >> (63 - h)) & (u64::MAX << l)
}

/// Linux's FIELD_PREP(mask, v).
const fn prep(mask: u64, v: u64) -> u64 {
    (v << mask.trailing_zeros()) & mask
}

#[test]
fn ste_abort_bypass_stage1() {
    // STRTAB_STE_0_V (1UL << 0); STRTAB_STE_0_CFG GENMASK_ULL(3, 1); CFG_ABORT 0,
    // CFG_BYPASS 4, CFG_S1_TRANS 5.
    let v = 1u64;
    assert_eq!(Ste::abort().0, [v | prep(genmask(3, 1), 0), 0, 0, 0, 0, 0, 0, 0]);
    // STRTAB_STE_1_SHCFG GENMASK_ULL(45, 44), SHCFG_INCOMING 1.
    assert_eq!(Ste::bypass().0[..2], [v | prep(genmask(3, 1), 4), prep(genmask(45, 44), 1)]);

    let cd = 0x4012_3440u64;
    let ste = Ste::stage1(PhysAddr(cd));
    // STRTAB_STE_0_S1FMT GENMASK_ULL(5, 4) = LINEAR 0; S1CTXPTR_MASK GENMASK_ULL(51, 6);
    // S1CDMAX GENMASK_ULL(63, 59) = 0.
    let w0 = v | prep(genmask(3, 1), 5) | (cd & genmask(51, 6));
    // S1DSS GENMASK_ULL(1, 0) = 0; S1CIR GENMASK_ULL(3, 2) = WBRA 1; S1COR GENMASK_ULL(5, 4)
    // = WBRA 1; S1CSH GENMASK_ULL(7, 6) = ISH 3; STRW GENMASK_ULL(31, 30) = NSEL1 0.
    let w1 = prep(genmask(3, 2), 1) | prep(genmask(5, 4), 1) | prep(genmask(7, 6), 3);
    assert_eq!(ste.0, [w0, w1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ste.0[0], 0x4012_344b);
    assert_eq!(ste.0[1], 0xd4);
    assert_eq!(ste.config(), SteConfig::Stage1 { cd: PhysAddr(cd), attrs: w1 });
    assert_eq!(Ste::abort().config(), SteConfig::Abort);
    assert_eq!(Ste::default().config(), SteConfig::Invalid);
}

#[test]
fn level1_stream_table_descriptor() {
    // STRTAB_L1_DESC_SPAN GENMASK_ULL(4, 0); L2PTR_MASK GENMASK_ULL(51, 6). Linux writes
    // span = STRTAB_SPLIT + 1 for a level-2 table of 2^STRTAB_SPLIT (256) STEs.
    assert_eq!(l1_desc(PhysAddr(0x4008_4000), 8), prep(genmask(4, 0), 9) | 0x4008_4000);
}

#[test]
fn context_descriptor() {
    let cd = Cd::stage1(&Stage1Context { asid: Asid(0x2a), ttb0: PhysAddr(0x4_0123_4000), ias_bits: 48, ips: 4 });
    // CTXDESC_CD_0_TCR_T0SZ GENMASK_ULL(5, 0) = 64 - 48; TG0 GENMASK_ULL(7, 6) = 0 (4K);
    // IRGN0 GENMASK_ULL(9, 8) = 1; ORGN0 GENMASK_ULL(11, 10) = 1; SH0 GENMASK_ULL(13, 12)
    // = 3; EPD1 (1ULL << 30); V (1UL << 31); IPS GENMASK_ULL(34, 32); AA64 (1UL << 41);
    // R (1UL << 45); A (1UL << 46); ASET (1UL << 47); ASID GENMASK_ULL(63, 48).
    let w0 = prep(genmask(5, 0), 16)
        | prep(genmask(9, 8), 1)
        | prep(genmask(11, 10), 1)
        | prep(genmask(13, 12), 3)
        | (1 << 30)
        | (1 << 31)
        | prep(genmask(34, 32), 4)
        | (1 << 41)
        | (1 << 45)
        | (1 << 46)
        | (1 << 47)
        | prep(genmask(63, 48), 0x2a);
    // CTXDESC_CD_1_TTB0_MASK GENMASK_ULL(51, 4); word 3 is MAIR (Linux: cdptr[3] = mair).
    // MAIR: attribute 0 0xff (Normal WBWA), 1 0x04 (Device-nGnRE), 2 0x44 (Normal Inner
    // and Outer Non-cacheable), the encodings of the Arm ARM's MAIR_ELx.
    assert_eq!(cd.0, [w0, 0x4_0123_4000, 0, 0xff | (0x04 << 8) | (0x44 << 16), 0, 0, 0, 0]);
    assert_eq!(w0, 0x002a_e204_c000_3510);
    assert_eq!((cd.asid(), cd.ttb0(), cd.is_valid()), (Asid(0x2a), PhysAddr(0x4_0123_4000), true));
}

#[test]
fn commands() {
    // CMDQ_0_OP GENMASK_ULL(7, 0); CMDQ_CFGI_0_SID GENMASK_ULL(63, 32); CMDQ_CFGI_1_LEAF
    // (1UL << 0); CMDQ_OP_CFGI_STE 0x3.
    assert_eq!(Command::cfgi_ste(StreamId(0x18), true).0, [0x3 | (0x18 << 32), 1]);
    // CMDQ_OP_CFGI_ALL 0x4 with CMDQ_CFGI_1_RANGE GENMASK_ULL(4, 0) = 31.
    assert_eq!(Command::cfgi_all().0, [0x4, 31]);
    // CMDQ_OP_CFGI_CD 0x5, CMDQ_OP_CFGI_CD_ALL 0x6.
    assert_eq!(Command::cfgi_cd(StreamId(7), false).0, [0x5 | (7 << 32), 0]);
    assert_eq!(Command::cfgi_cd_all(StreamId(7)).0, [0x6 | (7 << 32), 0]);
    // CMDQ_OP_TLBI_NH_ASID 0x11 with CMDQ_TLBI_0_ASID GENMASK_ULL(63, 48).
    assert_eq!(Command::tlbi_nh_asid(Asid(0x1234)).0, [0x11 | (0x1234 << 48), 0]);
    // CMDQ_OP_TLBI_NH_VA 0x12; CMDQ_TLBI_1_LEAF (1UL << 0); CMDQ_TLBI_1_TTL GENMASK_ULL(9, 8);
    // CMDQ_TLBI_1_TG GENMASK_ULL(11, 10); CMDQ_TLBI_1_VA_MASK GENMASK_ULL(63, 12).
    assert_eq!(Command::tlbi_nh_va(Asid(5), Iova(0xdead_b000), true, None).0, [0x12 | (5 << 48), 1 | 0xdead_b000]);
    assert_eq!(
        Command::tlbi_nh_va(Asid(5), Iova(0x20_0000), false, Some(2)).0,
        [0x12 | (5 << 48), prep(genmask(9, 8), 2) | prep(genmask(11, 10), 1) | 0x20_0000]
    );
    // CMDQ_OP_TLBI_NSNH_ALL 0x30, CMDQ_OP_TLBI_EL2_ALL 0x20.
    assert_eq!(Command::tlbi_nsnh_all().0, [0x30, 0]);
    assert_eq!(Command::tlbi_el2_all().0, [0x20, 0]);
    // CMDQ_OP_CMD_SYNC 0x46 with CMDQ_SYNC_0_CS GENMASK_ULL(13, 12) = CS_NONE 0.
    assert_eq!(Command::sync().0, [0x46, 0]);
}

#[test]
fn translation_fault_record() {
    // EVTQ_0_ID GENMASK_ULL(7, 0); EVTQ_0_SSV (1UL << 11); EVTQ_0_SSID GENMASK_ULL(31, 12);
    // EVTQ_0_SID GENMASK_ULL(63, 32); EVTQ_1_STAG GENMASK_ULL(15, 0); EVTQ_1_STALL (1UL << 31);
    // EVTQ_1_PnU (1UL << 33); EVTQ_1_InD (1UL << 34); EVTQ_1_RnW (1UL << 35); EVTQ_1_S2
    // (1UL << 39); EVTQ_1_CLASS GENMASK_ULL(41, 40); EVTQ_2_ADDR GENMASK_ULL(63, 0);
    // EVTQ_3_IPA GENMASK_ULL(51, 12); EVT_ID_TRANSLATION_FAULT 0x10.
    let rec = EventRecord([
        0x10 | (1 << 11) | prep(genmask(31, 12), 3) | prep(genmask(63, 32), 0x0010),
        prep(genmask(15, 0), 0x77) | (1 << 33) | (1 << 35) | prep(genmask(41, 40), 2),
        0x1234_5678_9000,
        0,
    ]);
    let Event::Translation(f) = rec.decode() else { panic!("{:?}", rec.decode()) };
    assert_eq!(f.txn.sid, StreamId(0x10));
    assert_eq!(f.txn.ssid, Some(3));
    assert_eq!(f.txn.iova, Iova(0x1234_5678_9000));
    assert_eq!(f.txn.access, Access::Read);
    assert!(f.txn.privileged && !f.txn.instruction && !f.stage2 && !f.stall);
    assert_eq!((f.class, f.stag), (FaultClass::Input, 0x77));

    // EVT_ID_PERMISSION_FAULT 0x13, a write (RnW = 0), unprivileged, no SubstreamID.
    let rec = EventRecord([0x13 | (0x8u64 << 32), prep(genmask(41, 40), 2), 0x4000, 0]);
    let Event::Permission(f) = rec.decode() else { panic!() };
    assert_eq!((f.txn.sid, f.txn.ssid, f.txn.access, f.txn.privileged), (StreamId(8), None, Access::Write, false));
}

#[test]
fn every_event_type_decodes() {
    // IHI 0070 table 7-1: every defined type, plus IMPLEMENTATION DEFINED and unknown.
    let names = [
        (0x01, "F_UUT"),
        (0x02, "C_BAD_STREAMID"),
        (0x03, "F_STE_FETCH"),
        (0x04, "C_BAD_STE"),
        (0x05, "F_BAD_ATS_TREQ"),
        (0x06, "F_STREAM_DISABLED"),
        (0x07, "F_TRANSL_FORBIDDEN"),
        (0x08, "C_BAD_SUBSTREAMID"),
        (0x09, "F_CD_FETCH"),
        (0x0a, "C_BAD_CD"),
        (0x0b, "F_WALK_EABT"),
        (0x10, "F_TRANSLATION"),
        (0x11, "F_ADDR_SIZE"),
        (0x12, "F_ACCESS"),
        (0x13, "F_PERMISSION"),
        (0x20, "F_TLB_CONFLICT"),
        (0x21, "F_CFG_CONFLICT"),
        (0x24, "E_PAGE_REQUEST"),
        (0x25, "F_VMS_FETCH"),
        (0xe3, "IMPDEF"),
        (0x7f, "UNKNOWN"),
    ];
    for (id, name) in names {
        let e = EventRecord([id | (0x42u64 << 32), 0, 0xabc000, 0x8000_0040]).decode();
        assert_eq!(e.name(), name);
        if !matches!(id, 0x25 | 0xe3 | 0x7f) {
            assert_eq!(e.stream_id(), Some(StreamId(0x42)), "{name}");
        }
    }
    // EVTQ_3_FETCH_ADDR GENMASK_ULL(51, 3): where an STE fetch aborted.
    let e = EventRecord([0x03 | (1u64 << 32), 0, 0, 0xfff0_0000_1234_567f]).decode();
    assert_eq!(e, Event::SteFetchAbort { sid: StreamId(1), ssid: None, fetch_addr: PhysAddr(0x1234_5678) });
}

/// A TTL hint of 0 (no level) never goes out as TG = 4 KiB with TTL = 0 (IHI 0070 4.4.1.1).
#[test]
fn tlbi_nh_va_never_sends_tg_without_a_level() {
    let plain = Command::tlbi_nh_va(Asid(5), Iova(0x20_0000), false, None);
    assert_eq!(Command::tlbi_nh_va(Asid(5), Iova(0x20_0000), false, Some(0)), plain);
    assert_eq!(Command::tlbi_nh_va(Asid(5), Iova(0x20_0000), false, Some(4)), plain);
}
