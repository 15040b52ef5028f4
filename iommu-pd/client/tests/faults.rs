//! A client reads its fault records, then acknowledges them by a call: between the two the
//! IOMMU PD (above it on its core, woken by the SMMU's event interrupt) may drain more
//! faults of the same burst, which it folds into the newest record, the one the client
//! has copied already. The acknowledgment's reply carries that record as it stands once
//! acknowledged (no fault folds into it after that), and the client takes it over its
//! copy: before, the client kept its copy, and the rest of the burst (its count and how
//! far it ran) reached it in no record.

use std::ptr::NonNull;

use iommu_client::{Channel, Client};
use iommu_protocol::faults::{FaultRecord, FaultRing};
use iommu_protocol::{ErrorCode, Op, MAX_REPLY_VALUES};

/// The IOMMU PD as the client meets it across its read: before it serves ACK_FAULTS, the
/// burst the client's newest record began goes on (`more`, folded as the service folds
/// them), and then it acknowledges as the service does (`FaultRing::ack`).
struct Preempting {
    ring: *mut FaultRing,
    more: Vec<FaultRecord>,
    acks: u32,
}

impl Channel for Preempting {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; MAX_REPLY_VALUES]) -> u64 {
        assert_eq!(label, Op::AckFaults as u64, "the client only acknowledges here");
        self.acks += 1;
        // SAFETY: the test's ring, reached only through this pointer while the client is
        // in its call (the client reads it through the same pointer, between calls).
        let ring = unsafe { &mut *self.ring };
        for r in self.more.drain(..) {
            assert!(ring.coalesce(&r), "a fault of the same burst folds into the newest record");
        }
        match ring.ack(mrs[0]) {
            Some(record) => {
                reply[..record.len()].copy_from_slice(&record);
                0
            }
            None => ErrorCode::OutOfRange as u64,
        }
    }
}

fn fault(iova: u64) -> FaultRecord {
    FaultRecord { device: 1, stream: 0x18, iova, kind: 0x10, write: 1, ..FaultRecord::default() }
}

#[test]
fn faults_folded_between_the_clients_read_and_its_acknowledgment_reach_it() {
    let ring: *mut FaultRing = Box::into_raw(Box::default());
    // SAFETY: just made; the test's only way to the ring from here on.
    unsafe {
        assert!((*ring).push(fault(0x2000_0000)));
        assert!((*ring).push(fault(0x3000_0000)));
    }
    let more = (1..=3).map(|i| fault(0x3000_0000 + 4 * i)).collect();
    let mut client = Client::new(Preempting { ring, more, acks: 0 });
    let mut out = [FaultRecord::default(); 4];
    let mut next = 0;
    // SAFETY: `ring` is a live ring, written only inside the channel's calls.
    let n = unsafe { client.take_faults(NonNull::new(ring).unwrap(), &mut next, &mut out) };
    assert_eq!((n, next, client.channel().acks), (2, 2, 1));
    // The first record was final when copied; the second grew after it was copied.
    assert_eq!((out[0].seq, out[0].iova, out[0].iova_last, out[0].repeats), (0, 0x2000_0000, 0x2000_0000, 0));
    assert_eq!(
        (out[1].seq, out[1].iova, out[1].iova_last, out[1].repeats),
        (1, 0x3000_0000, 0x3000_000c, 3),
        "the faults folded in after the copy reach the client"
    );
    // Nothing is left for a later read: the ring holds no further record of them.
    // SAFETY: as above.
    let n = unsafe { client.take_faults(NonNull::new(ring).unwrap(), &mut next, &mut out) };
    assert_eq!((n, next, client.channel().acks), (0, 2, 1));
    // SAFETY: as above.
    unsafe {
        assert_eq!((*ring).pending().count(), 0);
        drop(Box::from_raw(ring));
    }
}

/// A reply that says less than the copy (an IOMMU PD that replies with no values, or with
/// another record's) leaves the copy as it was: counts only grow.
#[test]
fn a_reply_of_another_record_or_of_nothing_changes_no_copy() {
    let mut r = FaultRecord { seq: 5, iova: 0x1000, iova_last: 0x1010, repeats: 4, ..FaultRecord::default() };
    let copy = r;
    r.acknowledged(&[0; 3]);
    r.acknowledged(&[4, 99, 0x9000]);
    r.acknowledged(&[5, 1]);
    assert_eq!(r, copy);
    r.acknowledged(&[5, 1, 0x1008]);
    assert_eq!(r, copy, "smaller than the copy: not taken");
    r.acknowledged(&[5, 6, 0x1018]);
    assert_eq!((r.repeats, r.iova_last), (6, 0x1018));
}
