//! How the IOMMU PD takes the SMMU's event records, and what it must arrange before it
//! sleeps again. Here, not in the PD, so that the host tests run it on the SMMU model.
//!
//! Two things the architecture allows that a handler woken only by the event interrupt
//! gets wrong (IHI 0070 7.2, 3.18):
//! - the interrupt marks the queue going from empty to non-empty, and no other time: a
//!   handler that stops with records left (it is bounded, so a flood cannot keep it
//!   forever) gets no interrupt for them, and nothing is reported again until the queue
//!   has been emptied by someone;
//! - an SMMU may have no wired interrupts at all (MSI-only, common on servers): then only
//!   polling ever reads the queue.

use smmuv3::{Error, Event, Mmio, Smmu};

/// What the handler must arrange before it sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rearm {
    /// Nothing: the queue is empty, and its next record raises the event interrupt.
    Interrupt,
    /// Be woken again at once (after anything else waiting): records are left, and no
    /// interrupt will announce them.
    Now,
    /// Be woken after the poll period: the SMMU raises no interrupt this system sees.
    Poll,
    /// Nothing more: the SMMU has failed (`failure`), and has been failed closed.
    Stop,
}

/// What one wake-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Records taken.
    pub events: u32,
    /// The queue had overflowed: the SMMU lost records.
    pub overflowed: bool,
    /// What to arrange before sleeping.
    pub rearm: Rearm,
    /// SMMU_GERROR.SFM_ERR: the SMMU failed (the driver has failed it closed).
    pub failure: Option<Error>,
}

/// Where the records go: the IOMMU PD's service (fault attribution and routing), or a
/// test's list.
pub trait EventSink<M: Mmio> {
    /// The driver, for each pass over the queue.
    fn smmu(&mut self) -> &mut Smmu<M>;
    /// One batch of records, in queue order (every entry is `Some`).
    fn take(&mut self, batch: &[Option<Event>]);
}

/// One wake-up's work: global errors, then at most `rounds` batches of `N` records. Stops
/// early when the queue is empty; says how to be woken next (`Pass::rearm`): `Now` when
/// the bound stopped it with records left, otherwise `Interrupt` on an SMMU whose
/// interrupts are wired to this system, `Poll` on one whose are not.
pub fn pump<M: Mmio, S: EventSink<M>, const N: usize>(sink: &mut S, wired: bool, rounds: usize) -> Pass {
    let mut pass = Pass { events: 0, overflowed: false, rearm: Rearm::Now, failure: None };
    for _ in 0..rounds {
        let mut batch: [Option<Event>; N] = [None; N];
        let mut n = 0;
        let drained = sink.smmu().handle_interrupt_upto(N, |e| {
            if let Some(slot) = batch.get_mut(n) {
                *slot = Some(e);
                n += 1;
            }
        });
        let drained = match drained {
            Ok(d) => d,
            Err(e) => {
                pass.failure = Some(e);
                pass.rearm = Rearm::Stop;
                return pass;
            }
        };
        pass.events += drained.events;
        pass.overflowed |= drained.overflowed;
        sink.take(&batch[..n]);
        if !drained.remaining {
            pass.rearm = if wired { Rearm::Interrupt } else { Rearm::Poll };
            return pass;
        }
    }
    pass
}

/// What the IOMMU PD gives the service for a record that names a stream (a fault of that
/// stream's device, stamped `now`), or `None` for one the service only counts
/// (`Service::route_stream_event`).
///
/// A fault is a translation fault (`Event::fault`), or a record of a transaction the device
/// itself chose to send that the SMMU refused: F_UUT, F_BAD_ATS_TREQ (an ATS translation
/// request), F_TRANSL_FORBIDDEN (an ATS-translated transaction where ATS is not enabled)
/// and E_PAGE_REQUEST (IHI 0070 7.3). A device on a stream that translates can send those
/// at will, as fast as faulting DMA, and each is a record in the queue every device shares:
/// counted only as stream events, they counted towards no storm and no overflow, so a
/// device flooding them was never quarantined. Records its configuration causes (C_BAD_STE,
/// F_CD_FETCH...) stay stream events: the device did not choose them. C_BAD_SUBSTREAMID
/// is a device's doing too (a SubstreamID, a PASID, on a stream with none: this service
/// gives no stream substreams, so every SubstreamID is out of range), and its record
/// carries the StreamID but no address: it is the device's fault at address 0, a read.
pub fn fault_input(e: &Event, now: u64) -> Option<iommu_pd::FaultInput> {
    use iommu_protocol::faults::kind;
    if let Event::BadSubstreamId { sid, .. } = e {
        let kind = u32::from(smmuv3::event::id::C_BAD_SUBSTREAMID);
        return Some(iommu_pd::FaultInput { stream: sid.0, iova: 0, write: false, kind, now });
    }
    let (txn, kind) = match e {
        Event::Translation(f) => (f.txn, kind::F_TRANSLATION),
        Event::Permission(f) => (f.txn, kind::F_PERMISSION),
        Event::UnsupportedUpstream { txn, .. } => (*txn, u32::from(smmuv3::event::id::F_UUT)),
        Event::BadAtsRequest { txn } => (*txn, u32::from(smmuv3::event::id::F_BAD_ATS_TREQ)),
        Event::TranslationForbidden { txn } => (*txn, u32::from(smmuv3::event::id::F_TRANSL_FORBIDDEN)),
        Event::PageRequest { txn } => (*txn, u32::from(smmuv3::event::id::E_PAGE_REQUEST)),
        _ => (e.fault()?.txn, kind::OTHER),
    };
    let write = txn.access == smmuv3::Access::Write;
    Some(iommu_pd::FaultInput { stream: txn.sid.0, iova: txn.iova.0, write, kind, now })
}
