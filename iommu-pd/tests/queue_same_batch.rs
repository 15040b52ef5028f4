//! Entries of one batch that meet each other: an UNMAP of what a MAP of the same batch
//! mapped, the same mapping unmapped twice, a malformed entry between them, a MAP inside a
//! range whose removal is in flight; each answered as the same calls in the same order
//! would be, the audit holding after every batch. And when the batch's sync fails: an
//! UNMAP answered `Ok` or `NotMapped` (which the client library and the C helper take as
//! "gone, confirmed") must leave no mapping at its IOVA in the books and no translation
//! in the tables or the IOMMU's caches.

mod common;

use common::queue::{completions, post, post_raw, region};
use common::*;
use iommu_pd::Service;
use iommu_protocol::queue::Queue;
use iommu_protocol::{DeviceId, ErrorCode, Handle, Op, Reply, Request, Rights, MAX_UNMAP_RANGES};

const NIC: u32 = 0;
const X: u64 = IOVA_BASE;
const Y: u64 = IOVA_BASE + 0x1_0000;
const Z: u64 = IOVA_BASE + 0x2_0000;

fn map_req(offset: u64, len: u64, iova: Option<u64>) -> Request {
    Request::Map { cap: Handle(0), device: DeviceId(NIC), offset, len, iova, rights: Rights::READ_WRITE }
}

fn unmap_req(iova: u64) -> Request {
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = iova;
    Request::Unmap { device: DeviceId(NIC), iovas, count: 1 }
}

/// An entry as posted: a request, or raw words (malformed).
#[derive(Clone, Copy)]
#[allow(clippy::large_enum_variant, reason = "a test's few entries: no use boxing them")]
enum E {
    R(Request),
    Raw(u64, [u64; 4]),
}

/// Post `entries` (tags 0, 1, ...), serve one batch for NET, return the replies in order.
fn batch(s: &mut Service<'_, ModelHw>, q: &Queue<'_>, entries: &[E]) -> Vec<Reply> {
    let mut unmaps = Vec::new();
    for (tag, e) in entries.iter().enumerate() {
        let tag = tag as u64;
        match *e {
            E::R(r) => {
                assert!(post(q, tag, r));
                if matches!(r, Request::Unmap { .. }) {
                    unmaps.push(tag);
                }
            }
            E::Raw(label, mrs) => assert!(post_raw(q, tag, label, mrs)),
        }
    }
    assert_eq!(s.serve_queue(NET, q), entries.len());
    let done = completions(q, &unmaps);
    assert_eq!(done.iter().map(|d| d.0).collect::<Vec<_>>(), (0..entries.len() as u64).collect::<Vec<_>>());
    done.into_iter().map(|d| d.1).collect()
}

/// The same entries as calls, to a twin.
fn calls(s: &mut Service<'_, ModelHw>, entries: &[E]) -> Vec<Reply> {
    entries
        .iter()
        .map(|e| match *e {
            E::R(r) => call(s, NET, r),
            E::Raw(label, mrs) => s.handle(NET, label, &mrs),
        })
        .collect()
}

/// NIC's mappings before each batch: X (three pages), Y (one page).
fn setup() -> Service<'static, ModelHw> {
    let mut s = service();
    assert_eq!(call(&mut s, NET, map_req(0, 3 * PAGE, Some(X))), Reply::ok(&[X]));
    assert_eq!(call(&mut s, NET, map_req(3 * PAGE, PAGE, Some(Y))), Reply::ok(&[Y]));
    s
}

/// What NIC's IOVA pages hold in the books.
fn books(s: &Service<'_, ModelHw>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    s.for_each_mapped_page(|d, iova, pa, _| {
        if d == NIC as usize {
            out.push((iova, pa));
        }
    });
    out
}

/// An UNMAP answered `Ok` or `NotMapped` (gone, as a client reads it) left nothing at its
/// IOVA: not in the books, the tables or the IOMMU's caches, unless a later entry of the
/// batch mapped it again.
fn gone_means_gone(s: &Service<'_, ModelHw>, entries: &[E], replies: &[Reply]) {
    for (i, (e, r)) in entries.iter().zip(replies).enumerate() {
        let E::R(Request::Unmap { iovas, .. }) = e else { continue };
        if !matches!(r, Reply::Ok { .. } | Reply::Err(ErrorCode::NotMapped)) {
            continue;
        }
        let remapped = entries[i + 1..].iter().zip(&replies[i + 1..]).any(
            |(e, r)| matches!((e, r), (E::R(Request::Map { .. }), Reply::Ok { values, .. }) if values[0] == iovas[0]),
        );
        if remapped {
            continue;
        }
        assert!(!books(s).iter().any(|(v, _)| *v == iovas[0]), "entry {i} ({r:?}) left {:#x} in the books", iovas[0]);
        assert!(
            !s.hw().translations(NIC as usize).contains_key(&iovas[0]),
            "entry {i} ({r:?}) left {:#x} translated or cached",
            iovas[0]
        );
    }
}

fn script() -> Vec<E> {
    let malformed = E::Raw(Op::Unmap as u64, [NIC as u64, 0, X, 0]);
    vec![
        E::R(map_req(5 * PAGE, PAGE, Some(Z))),
        // What the MAP before it mapped.
        E::R(unmap_req(Z)),
        E::R(unmap_req(X)),
        malformed,
        // Twice, with a malformed entry between.
        E::R(unmap_req(X)),
        // Inside X's range, whose removal is in flight: break-before-make.
        E::R(map_req(6 * PAGE, PAGE, Some(X + PAGE))),
        E::R(unmap_req(Y)),
        E::R(unmap_req(Y)),
        // Where Y was, chosen by the allocator or not.
        E::R(map_req(7 * PAGE, PAGE, Some(Y))),
    ]
}

#[test]
fn entries_that_meet_in_one_batch_answer_as_their_calls() {
    let (mut queued, mut called) = (setup(), setup());
    let entries = script();
    let got = batch(&mut queued, &region(), &entries);
    assert_eq!(got, calls(&mut called, &entries));
    assert_eq!(
        got,
        [
            Reply::ok(&[Z]),
            Reply::ok(&[]),
            Reply::ok(&[]),
            err(ErrorCode::Malformed),
            err(ErrorCode::NotMapped),
            Reply::ok(&[X + PAGE]),
            Reply::ok(&[]),
            err(ErrorCode::NotMapped),
            Reply::ok(&[Y]),
        ]
    );
    assert_eq!(books(&queued), books(&called));
    assert_eq!(queued.hw().translations(0), called.hw().translations(0));
    queued.audit().unwrap();
    gone_means_gone(&queued, &entries, &got);
}

/// The batch's sync fails (and, in the second round, the block that follows it too): the
/// removals in flight go back into the index, pending. An UNMAP of the same mapping later
/// in the batch found it out of the index; it must not answer "gone" for a mapping that
/// is back in the books and, with the block failed, still reachable through the caches.
#[test]
fn a_failed_sync_leaves_no_entry_of_its_batch_saying_gone() {
    // With and without a later entry whose own way (the call's, for a device with
    // removals pending) would settle X before the batch ends and hide a wrong answer.
    let scripts: [&[E]; 2] = [
        &[E::R(unmap_req(X)), E::R(unmap_req(X)), E::R(unmap_req(Y))],
        &[E::R(unmap_req(Y)), E::R(unmap_req(X)), E::R(unmap_req(X))],
    ];
    for (block_fails, entries) in [false, true].into_iter().flat_map(|f| scripts.map(|e| (f, e))) {
        let mut s = setup();
        let q = region();
        s.hw_mut().fail_next = Some("sync");
        s.hw_mut().fail_then = if block_fails { vec!["block"] } else { vec![] };
        let got = batch(&mut s, &q, entries);
        assert_eq!(got[0], err(ErrorCode::Hardware), "block fails: {block_fails}");
        s.audit().unwrap();
        gone_means_gone(&s, entries, &got);
        // Whatever they answered, RESUME confirms the removals and the device runs with
        // nothing of X or Y left.
        assert_eq!(call(&mut s, NET, Request::Resume { device: DeviceId(NIC) }), Reply::ok(&[]));
        s.audit().unwrap();
        assert!(s.hw().translations(0).is_empty() && books(&s).is_empty(), "{:x?}", books(&s));
        // The IOVAs are the device's again, for a MAP by the queue.
        assert_eq!(batch(&mut s, &q, &[E::R(map_req(0, PAGE, None))]), [Reply::ok(&[X])]);
        s.audit().unwrap();
    }
}
