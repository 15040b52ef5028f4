//! What every driver PD shares: `iommu_client::Client` over a Microkit channel (a
//! protected procedure call), and reading the fault ring the IOMMU PD shares with it.
#![no_std]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use iommu_protocol::faults::{FaultRecord, FaultRing, ServiceFailure};
use iommu_protocol::Op;
use sel4_microkit::{with_msg_regs, with_msg_regs_mut, Channel, MessageInfo};

/// The channel to the IOMMU PD, as a transport for `iommu_client::Client`.
#[derive(Debug, Clone, Copy)]
pub struct Ppc(pub Channel);

/// Calls this PD has made to the IOMMU PD, by request label (`Op` values 1..=12; index 0
/// counts every other label). Every call goes through `Ppc::call`, so this is all of them.
static CALLS: [AtomicU64; 13] = [const { AtomicU64::new(0) }; 13];

/// How many `op` requests this PD has made to the IOMMU PD.
pub fn calls(op: Op) -> u64 {
    CALLS[op as usize].load(Ordering::Relaxed)
}

impl iommu_client::Channel for Ppc {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
        let counter = CALLS.get(label as usize).unwrap_or(&CALLS[0]);
        counter.fetch_add(1, Ordering::Relaxed);
        with_msg_regs_mut(|regs| {
            for (d, s) in regs.iter_mut().zip(mrs) {
                *d = *s;
            }
        });
        let r = self.0.pp_call(MessageInfo::new(label, mrs.len()));
        with_msg_regs(|regs| {
            for (d, s) in reply.iter_mut().zip(regs.iter()).take(r.count()) {
                *d = *s;
            }
        });
        r.label()
    }
}

/// The next fault record this PD has not read.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Read the records published since the last call (at most `out.len()`), acknowledge
/// them to the IOMMU PD, and return how many were read, at the start of `out`. The record
/// of the IOMMU service's failure (`faults::kind::SERVICE_FAILED`) is no fault (its stream
/// and addresses are 0; printed as one, it read as DMA at IOVA 0): it is left out, and
/// `told_service_failed` says it. The others are faults, or a quarantine at an overflow,
/// which `told_notice` prints as such.
///
/// # Safety
/// `ring` must be this PD's mapping of its fault ring.
pub unsafe fn take_faults(ring: NonNull<FaultRing>, iommu: Channel, out: &mut [FaultRecord]) -> usize {
    let mut next = NEXT.load(Ordering::Relaxed);
    // SAFETY: the caller vouches for the mapping.
    let n = unsafe { iommu_client::Client::new(Ppc(iommu)).take_faults(ring, &mut next, out) };
    NEXT.store(next, Ordering::Relaxed);
    let mut faults = 0;
    for i in 0..n {
        if out[i].kind != iommu_protocol::faults::kind::SERVICE_FAILED {
            out[faults] = out[i];
            faults += 1;
        }
    }
    faults
}

/// Whether the IOMMU service has failed for good (the ring's flag, which a ring too full
/// for the SERVICE_FAILED record gets too: `FaultRing::failed_shared`); says so as `who`
/// the first time. Nothing is served from then on.
///
/// # Safety
/// `ring` must be this PD's mapping of its fault ring.
pub unsafe fn told_service_failed(who: &str, ring: NonNull<FaultRing>) -> bool {
    static TOLD: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    // SAFETY: the caller vouches for the mapping.
    let word = unsafe { FaultRing::failure_shared(ring) };
    let failed = word != 0;
    if failed && !TOLD.swap(true, Ordering::Relaxed) {
        sel4_microkit::debug_println!("{who}: told: {}", ServiceFailure(word));
    }
    failed
}

/// If `record` is a notice rather than a device's fault (`FaultRecord::notice`: a
/// quarantine at an event-queue overflow; `take_faults` already left out the service's
/// failure), print it as `who` and say so: its stream and addresses are 0, and printed as
/// a fault it would read as a DMA at IOVA 0 that never happened.
pub fn told_notice(who: &str, record: &FaultRecord) -> bool {
    match record.notice() {
        Some(notice) => {
            sel4_microkit::debug_println!("{who}: told: {notice}");
            true
        }
        None => false,
    }
}
