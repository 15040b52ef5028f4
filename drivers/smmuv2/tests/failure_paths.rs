//! The MMU-500 failing while serving, one test per class of failure, as the SMMUv3
//! driver's `tests/service_failure.rs`: a TLB sync that never completes, a global fault
//! that the driver's own stream mapping cannot raise, and a register write that does not
//! take. After each, every stream ends faulting (every SMR invalid or its S2CR of type
//! fault, sCR0.CLIENTPD = 0 and USFCFG = 1), read from the model's registers and asked of
//! the model with a device access, `Smmu::failure` says why, and nothing is written to
//! the SMMU again.

use smmuv2::fault::sgfsr;
use smmuv2::mmio::reg;
use smmuv2::model::{host_config, host_region, Mmu500Model, Outcome, ZYNQMP};
use smmuv2::{fail_closed, DomainId, Error, Failure, Iova, MemType, Memory, Perm, Smmu, StreamId};

const PAGE: u64 = 4096;
const SID_A: u32 = 0x14e8;
const SID_B: u32 = 0x14e9;
/// ZynqMP's MMU-500: IDR0.NUMSMRG.
const GROUPS: usize = 48;

/// Two devices, each in a domain of its own with a page mapped at IOVA 0, both reaching
/// it (the TLB then holds both translations).
fn serving(model: &Mmu500Model) -> (Smmu<&Mmu500Model>, DomainId, DomainId) {
    let mem = Memory { tables: host_region(64 * PAGE as usize, PAGE as usize) };
    // SAFETY: the pool is freshly allocated host memory only this driver uses.
    let mut smmu = unsafe { Smmu::init(model, mem, host_config()) }.expect("init");
    let (a, b) = (smmu.create_domain().unwrap(), smmu.create_domain().unwrap());
    for (sid, d) in [(SID_A, a), (SID_B, b)] {
        smmu.attach(StreamId(sid), d).unwrap();
        let page = host_region(PAGE as usize, PAGE as usize).pa;
        smmu.map(d, Iova(0), page, PAGE, Perm::ReadWrite, MemType::Normal).unwrap();
        assert!(model.access(sid, 0, true).reached_memory(), "stream {sid:#x} before");
    }
    (smmu, a, b)
}

/// Every stream faults: read back from the registers (each group's SMR invalid or its
/// S2CR of type fault; only `stuck` groups may keep the other), and asked of the model.
fn every_stream_faults(model: &Mmu500Model, stuck: &[usize]) {
    let scr0 = model.peek(reg::SCR0);
    assert_eq!(scr0 & 1, 0, "sCR0.CLIENTPD");
    assert_ne!(scr0 & (1 << 10), 0, "sCR0.USFCFG");
    for i in 0..GROUPS {
        let (invalid, fault) = (model.peek(reg::smr(i)) >> 31 == 0, model.peek(reg::s2cr(i)) >> 16 & 3 == 2);
        if stuck.contains(&i) {
            assert!(invalid || fault, "group {i} still routes its streams");
        } else {
            assert!(invalid && fault, "SMR{i} / S2CR{i}");
        }
    }
    for sid in [SID_A, SID_B, 0, 0x7fff] {
        let out = model.access(sid, 0, true);
        assert!(!out.reached_memory(), "stream {sid:#x}: {out:?}");
    }
}

/// Failed: every later operation is refused, and none writes to the SMMU.
fn refused_from_now_on(smmu: &mut Smmu<&Mmu500Model>, model: &Mmu500Model, d: DomainId) {
    let writes = model.writes().len();
    let page = host_region(PAGE as usize, PAGE as usize).pa;
    assert_eq!(smmu.map(d, Iova(0x10_0000), page, PAGE, Perm::Read, MemType::Normal), Err(Error::Failed));
    assert_eq!(smmu.unmap(d, Iova(0), PAGE), Err(Error::Failed));
    assert_eq!(smmu.attach(StreamId(0x1500), d), Err(Error::Failed));
    assert_eq!(smmu.detach(StreamId(SID_A)), Err(Error::Failed));
    assert_eq!(smmu.block(StreamId(SID_B)), Err(Error::Failed));
    assert_eq!(smmu.invalidate_domain(d), Err(Error::Failed));
    assert_eq!(smmu.create_domain(), Err(Error::Failed));
    assert_eq!(smmu.drain_faults(|_| {}), 0);
    assert_eq!(model.writes().len(), writes, "the SMMU was written after it was failed closed");
}

/// A TLB sync that never completes: the unmap's times out (survivable: the domain is
/// stale, its page still in the TLB), and the next wait, the service's block of the
/// device, times out too with no sync completed between them: the SMMU no longer
/// answers, so no removal can be confirmed. Failing before: the block only returned its
/// `Timeout`, and the other device went on reaching its page, as did any later mapping.
#[test]
fn a_tlb_sync_that_never_completes_fails_the_smmu_closed_at_the_second_timeout() {
    let model = Mmu500Model::new(ZYNQMP);
    let (mut smmu, a, _) = serving(&model);
    model.stall_syncs(true);
    assert_eq!(smmu.unmap(a, Iova(0), PAGE), Err(Error::Timeout("SMMU_CBn_TLBSTATUS.SACTIVE")));
    assert_eq!(smmu.failure(), None, "one timeout is survivable");
    assert!(model.access(SID_A, 0, true).reached_memory(), "still in the TLB");
    assert_eq!(smmu.block(StreamId(SID_A)), Err(Error::Timeout("SMMU_CBn_TLBSTATUS.SACTIVE")));
    assert_eq!(smmu.failure(), Some((Failure::Unanswered, Ok(()))));
    assert_eq!(smmu.stats().timeouts, 2);
    every_stream_faults(&model, &[]);
    refused_from_now_on(&mut smmu, &model, a);
}

/// Two timeouts with a completed sync between them are two slow moments: the SMMU is
/// not failed.
#[test]
fn timeouts_with_a_completed_sync_between_them_do_not_fail_the_smmu() {
    let model = Mmu500Model::new(ZYNQMP);
    let (mut smmu, a, _) = serving(&model);
    for round in 0..2 {
        model.stall_syncs(true);
        assert!(matches!(smmu.invalidate_domain(a), Err(Error::Timeout(_))), "round {round}");
        model.stall_syncs(false);
        smmu.invalidate_domain(a).unwrap();
    }
    assert_eq!(smmu.failure(), None);
    assert!(model.access(SID_B, 0, true).reached_memory());
}

/// A global fault no stream mapping of the driver's can raise: a second SMR matching a
/// device's StreamID (written behind the driver's back; the driver refuses overlapping
/// patterns) makes its next transaction a stream-match conflict, sGFSR.SMCF (sCR0.SMCFCFG
/// = 1). The routing is no longer what the driver wrote, so the drain that reads the
/// fault fails the SMMU closed. Failing before: the fault was reported and nothing else,
/// and the other device went on reaching its page.
#[test]
fn a_global_fault_of_the_smmus_configuration_fails_it_closed() {
    let model = Mmu500Model::new(ZYNQMP);
    let (mut smmu, a, _) = serving(&model);
    model.preset(reg::smr(40), (1 << 31) | SID_B as u64);
    assert_eq!(model.access(SID_B, 0, true), Outcome::GlobalFault(sgfsr::SMCF));
    let mut seen = Vec::new();
    assert_eq!(smmu.drain_faults(|f| seen.push(f)), 1);
    assert!(matches!(seen[..], [smmuv2::Fault::Global(g)] if g.sgfsr & sgfsr::SMCF != 0), "{seen:?}");
    assert_eq!(smmu.failure(), Some((Failure::Configuration { sgfsr: sgfsr::SMCF }, Ok(()))));
    every_stream_faults(&model, &[]);
    refused_from_now_on(&mut smmu, &model, a);
}

/// A device's own faults, and a stream nobody attached (sGFSR.USF), are a device's, not
/// the SMMU's: they fail nothing.
#[test]
fn a_devices_faults_fail_nothing() {
    let model = Mmu500Model::new(ZYNQMP);
    let (mut smmu, _, _) = serving(&model);
    assert!(!model.access(SID_A, 0x20_0000, true).reached_memory());
    assert!(!model.access(0x1500, 0, true).reached_memory());
    assert_eq!(smmu.drain_faults(|_| {}), 2);
    assert_eq!(smmu.failure(), None);
    assert!(model.access(SID_B, 0, true).reached_memory());
}

/// A register write that does not take: the S2CR write of a block (the one write that
/// takes a stream out of its domain) keeps the domain's bank. The driver reads it back
/// and fails the SMMU closed: the SMR goes invalid, so the stream is unmatched and
/// faults. Failing before: `block` answered `Ok` and the device still reached its page.
#[test]
fn a_block_whose_s2cr_write_does_not_take_fails_the_smmu_closed() {
    let model = Mmu500Model::new(ZYNQMP);
    let (mut smmu, a, _) = serving(&model);
    // SID_A was attached first: group 0.
    model.ignore_writes(reg::s2cr(0));
    assert_eq!(smmu.block(StreamId(SID_A)), Err(Error::Failed));
    assert_eq!(smmu.failure(), Some((Failure::WriteNotTaken("SMMU_S2CRn (block)"), Ok(()))));
    every_stream_faults(&model, &[0]);
    refused_from_now_on(&mut smmu, &model, a);
}

/// Neither the SMR nor the S2CR write of a detach takes: the stream still translates, and
/// no write can change that. Failing closed cannot close that group, and says so
/// (`NotClosed`), for the IOMMU PD to report DMA not known to be stopped; every other
/// stream faults. Failing before: the detach answered `Ok`, and `fail_closed`'s read-back
/// passed an S2CR of type translate behind a valid SMR.
#[test]
fn a_group_whose_writes_do_not_take_is_reported_not_closed() {
    let model = Mmu500Model::new(ZYNQMP);
    let (mut smmu, _, _) = serving(&model);
    model.ignore_writes(reg::smr(0));
    model.ignore_writes(reg::s2cr(0));
    assert_eq!(smmu.detach(StreamId(SID_A)), Err(Error::Failed));
    let (why, closed) = smmu.failure().unwrap();
    assert_eq!(why, Failure::WriteNotTaken("SMMU_SMRn and S2CRn (detach)"));
    assert_eq!(closed, Err(Error::NotClosed("SMMU_S2CRn")));
    assert!(model.access(SID_A, 0, true).reached_memory(), "the stuck group");
    assert!(!model.access(SID_B, 0, true).reached_memory());
    assert_eq!(fail_closed(&model, 16), Err(Error::NotClosed("SMMU_S2CRn")));
}
