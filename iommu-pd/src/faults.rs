//! Fault records and rings: their layout is shared with clients, so it is declared in the
//! protocol crate; the service writes them.

pub use iommu_protocol::faults::{FaultRecord, FaultRing, FAULT_RING};

/// `f` on every ring in `rings` (client c's at index c); returns the clients to notify:
/// every one (a client mask has 64 bits, and a description at most that many clients).
pub(crate) fn every_ring(rings: &mut [FaultRing], mut f: impl FnMut(&mut FaultRing)) -> u64 {
    rings.iter_mut().take(64).enumerate().fold(0, |notify, (c, ring)| {
        f(ring);
        notify | 1 << c
    })
}

/// Start-up failed (the IOMMU not brought up, or the policy refused): no client will be
/// served, and one that waits for a notification before it calls would wait for ever.
/// Each ring is told as after a failure while serving (`Service::service_failed`: a
/// SERVICE_FAILED record and the ring's `failed` word, `FaultRing::fail`), emptied first:
/// no service ever wrote it, so nothing in it is a record (memory the system gave, or what
/// a `Service::new` that failed part way left). `dma_stopped`: whether failing the IOMMU
/// closed confirmed that every device's DMA aborts. Returns the clients to notify.
pub fn start_failed(rings: &mut [FaultRing], dma_stopped: bool) -> u64 {
    every_ring(rings, |ring| {
        ring.reset();
        ring.fail(dma_stopped);
    })
}

/// The IOMMU PD panicked, with the service wherever it was: each ring is told as after a
/// failure while serving (a SERVICE_FAILED record where there is room, the `failed` word
/// either way) and keeps the records its client has not read, which are the service's and
/// true. Returns the clients to notify.
pub fn panicked(rings: &mut [FaultRing], dma_stopped: bool) -> u64 {
    every_ring(rings, |ring| ring.fail(dma_stopped))
}
