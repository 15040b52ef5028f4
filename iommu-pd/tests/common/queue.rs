//! A client's side of the mapping queue, for the tests: post requests as entries, read
//! the completions back as replies.

use iommu_protocol::queue::{OwnedQueue, Queue, ENTRY_MRS};
use iommu_protocol::{ErrorCode, Reply, Request, MAX_MRS};

/// Ring slots of the tests' queues.
pub const SLOTS: usize = 256;

/// A queue region of `SLOTS`, leaked so a test can keep a view of it beside the service.
pub fn region() -> Queue<'static> {
    Box::leak(Box::<OwnedQueue<SLOTS>>::default()).queue().unwrap()
}

/// Post `req` (MAP, or UNMAP of one IOVA) with `tag`; false if the ring is full.
pub fn post(q: &Queue<'_>, tag: u64, req: Request) -> bool {
    let mut mrs = [0; MAX_MRS];
    let (label, _) = req.encode(&mut mrs);
    post_raw(q, tag, label, mrs[..ENTRY_MRS].try_into().unwrap())
}

/// Post `reqs` with tags 0, 1, ... (each must fit): the tags of the UNMAPs, which
/// `completions` needs to tell their replies from a MAP's.
pub fn post_all(q: &Queue<'_>, reqs: &[Request]) -> Vec<u64> {
    let mut unmaps = Vec::new();
    for (tag, r) in reqs.iter().enumerate() {
        assert!(post(q, tag as u64, *r));
        if matches!(r, Request::Unmap { .. }) {
            unmaps.push(tag as u64);
        }
    }
    unmaps
}

/// Post an entry as it is, however malformed.
pub fn post_raw(q: &Queue<'_>, tag: u64, label: u64, mrs: [u64; ENTRY_MRS]) -> bool {
    q.post(label, tag, mrs)
}

/// Every completion posted, as (tag, reply); a MAP's reply carries its IOVA, an UNMAP's
/// nothing (as the calls' do).
pub fn completions(q: &Queue<'_>, unmaps: &[u64]) -> Vec<(u64, Reply)> {
    let mut out = Vec::new();
    while let Some((tag, label, value)) = q.pop_completion() {
        let reply = match label {
            0 if unmaps.contains(&tag) => Reply::ok(&[]),
            0 => Reply::ok(&[value]),
            l => Reply::Err(ErrorCode::from_label(l).expect("a known error code")),
        };
        out.push((tag, reply));
    }
    out
}
