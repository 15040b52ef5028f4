//! The mapping queue: MAP and UNMAP without a call each, in the style of sDDF's queues.
//!
//! One region per client, shared between the client (read-write) and the IOMMU PD
//! (read-write), holds two rings of `entries` slots each (a power of two): requests, which
//! the client produces and the IOMMU PD consumes, and completions, the other way. Indices
//! are free-running `u32`s (slot = index mod entries); a ring holds `tail - head` entries.
//! The client posts entries, then notifies the IOMMU PD once for all of them (or calls it,
//! `SERVE`, when it waits for the completions anyway); the IOMMU PD
//! takes at most `QUEUE_BATCH` of them per notification, checks and applies them exactly as
//! it would the calls, confirms every UNMAP among them with one invalidation sync, and only
//! then posts their completions (in request order) and notifies back.
//!
//! An entry carries a call: a label (`Op::Map` or `Op::Unmap`) and the call's first four
//! message registers, with the same meaning (MAP's four; UNMAP's device, count 1 and the
//! IOVA: an entry removes one mapping, a batch of entries many under one sync), and a tag
//! the client chooses, copied into its completion. A completion is the call's reply: its
//! label (0 or an `ErrorCode`) and first value (MAP's IOVA).
//!
//! Memory ordering, both rings alike: the producer writes an entry, then stores the ring's
//! tail with release ordering; the consumer loads the tail with acquire ordering and only
//! then reads the entries before it (on aarch64: `stlr` / `ldar`). The consumer copies
//! each entry once and checks the copy, so a producer that rewrites an entry meanwhile
//! changes nothing but what it asked for. Once it is done with entries, the consumer
//! stores the head with release ordering (its reads of those slots come before), and the
//! producer reuses a slot only after loading the head with acquire ordering.
//!
//! Every field is an atomic, read and written with plain loads and stores but for one
//! word: the other side is another address space that may write any word at any time, and
//! in Rust a non-atomic access racing with a write is undefined behaviour. The IOMMU PD
//! never reads back what it publishes (its request head, its completion tail): it keeps its
//! own copies (`Cursor`), so a client that scribbles over them only confuses itself.
//!
//! The one word both sides write is a posted entry's label, and only with atomic
//! read-modify-writes: the IOMMU PD claims each entry it takes by swapping its label for
//! `TAKEN` (`Queue::read`), and a client withdraws an entry by a compare-and-swap of the
//! label it posted for `WITHDRAWN` (`Queue::withdraw`). Of two read-modify-writes of one
//! word one comes first and the other reads what it wrote, so exactly one side wins, on
//! any number of cores: a withdrawal that succeeded was never taken (the IOMMU PD reads
//! `WITHDRAWN`, answers `UnknownOp` and does nothing), and one that failed was taken and
//! will be answered as its call would be.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The most entries the IOMMU PD takes from one client's queue per notification (or
/// doorbell call): a flood in one queue delays another client's call by at most this many
/// entries' work (and one sync) per queue.
pub const QUEUE_BATCH: usize = 64;

/// The doorbell call: a client that waits for its completions anyway may call the IOMMU
/// PD with this label (no message registers) instead of notifying it. The IOMMU PD serves
/// one batch of the caller's queue, as for a notification, on the caller's time, and
/// replies (label 0, one value: the entries it took) once the completions are posted; no
/// notification follows. On seL4 a call takes the kernel's fastpath where a notification
/// and the wake-up behind it take the slow path three times. A client without a queue is
/// answered `UnknownOp`.
pub const SERVE: u64 = 0x5100;

/// The label of a request the client withdrew before the IOMMU PD took it
/// (`Queue::withdraw`): no call's, so it is answered `UnknownOp` and changes nothing.
pub const WITHDRAWN: u64 = 0;

/// The label the IOMMU PD leaves in a request it took (swapped in as it copies the label
/// out, `Queue::read`), so that a client's later withdrawal of it fails: no call's either.
pub const TAKEN: u64 = u64::MAX;

/// The most slots a ring may have (a description asks for fewer).
pub const MAX_QUEUE_ENTRIES: u32 = 1 << 16;

/// Message registers an entry carries: MAP's four.
pub const ENTRY_MRS: usize = 4;

/// One request: a call's label and message registers, and the client's tag.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Entry {
    /// `Op::Map` or `Op::Unmap`.
    pub label: AtomicU64,
    /// The client's, copied into the completion.
    pub tag: AtomicU64,
    /// The call's message registers.
    pub mrs: [AtomicU64; ENTRY_MRS],
}

/// One completion: the reply to the entry with this tag.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Completion {
    /// The entry's tag.
    pub tag: AtomicU64,
    /// The reply's label: 0 or an `ErrorCode`.
    pub label: AtomicU64,
    /// The reply's first value: MAP's IOVA, 0 otherwise.
    pub value: AtomicU64,
}

/// The indices, at the start of the region: the client's on one cache line, the IOMMU
/// PD's on the next, so neither side's stores evict the other's line.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct Header {
    /// Requests posted (the client's).
    pub request_tail: AtomicU32,
    /// Completions read (the client's).
    pub completion_head: AtomicU32,
    _client: [u32; 14],
    /// Requests taken (the IOMMU PD's).
    pub request_head: AtomicU32,
    /// Completions posted (the IOMMU PD's).
    pub completion_tail: AtomicU32,
    _server: [u32; 14],
}

/// Byte offsets in the region, for the C declaration and for `iommu-sdf`.
pub mod layout {
    use super::{Completion, Entry, Header};
    use core::mem::{offset_of, size_of};
    /// `Header::request_tail`.
    pub const REQUEST_TAIL: usize = offset_of!(Header, request_tail);
    /// `Header::completion_head`.
    pub const COMPLETION_HEAD: usize = offset_of!(Header, completion_head);
    /// `Header::request_head`.
    pub const REQUEST_HEAD: usize = offset_of!(Header, request_head);
    /// `Header::completion_tail`.
    pub const COMPLETION_TAIL: usize = offset_of!(Header, completion_tail);
    /// Where the request ring starts.
    pub const REQUESTS: usize = size_of::<Header>();
    /// Bytes of a request.
    pub const ENTRY: usize = size_of::<Entry>();
    /// Bytes of a completion.
    pub const COMPLETION: usize = size_of::<Completion>();
    /// Where the completion ring starts, for `entries` slots.
    pub const fn completions(entries: u32) -> usize {
        REQUESTS + ENTRY * entries as usize
    }
    /// Bytes of a region of `entries` slots (before rounding up to pages).
    pub const fn region_size(entries: u32) -> usize {
        completions(entries) + COMPLETION * entries as usize
    }
}

/// A request as the IOMMU PD copied it out of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Taken {
    /// The label.
    pub label: u64,
    /// The tag.
    pub tag: u64,
    /// The message registers.
    pub mrs: [u64; ENTRY_MRS],
}

/// The IOMMU PD's own indices into one client's queue: it never reads its published ones
/// back from the shared region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Requests taken.
    pub request_head: u32,
    /// Completions posted.
    pub completion_tail: u32,
}

/// A view of one queue region.
#[derive(Debug, Clone, Copy)]
pub struct Queue<'a> {
    header: &'a Header,
    requests: &'a [Entry],
    completions: &'a [Completion],
}

impl<'a> Queue<'a> {
    /// A queue over these parts; `None` unless both rings have the same number of slots, a
    /// power of two no more than `MAX_QUEUE_ENTRIES`.
    pub fn new(header: &'a Header, requests: &'a [Entry], completions: &'a [Completion]) -> Option<Self> {
        let n = requests.len();
        let ok = n == completions.len() && n.is_power_of_two() && n <= MAX_QUEUE_ENTRIES as usize;
        ok.then_some(Queue { header, requests, completions })
    }

    /// A queue over the region at `base` with `entries` slots per ring (`layout`).
    ///
    /// # Safety
    /// `base` must point at `layout::region_size(entries)` bytes, aligned to 64, mapped for
    /// as long as `'a` and accessed by others only through atomics (the other side of the
    /// queue).
    pub unsafe fn from_raw(base: NonNull<u8>, entries: u32) -> Option<Self> {
        if !entries.is_power_of_two() || entries > MAX_QUEUE_ENTRIES || base.as_ptr() as usize % 64 != 0 {
            return None;
        }
        let n = entries as usize;
        // SAFETY: the caller vouches for the region's size, alignment and lifetime; every
        // field is an atomic, so shared references to memory another address space writes
        // are sound, and any bit pattern is a valid value of each.
        unsafe {
            let header = &*base.as_ptr().cast::<Header>();
            let requests = core::slice::from_raw_parts(base.as_ptr().add(layout::REQUESTS).cast::<Entry>(), n);
            let completions =
                core::slice::from_raw_parts(base.as_ptr().add(layout::completions(entries)).cast::<Completion>(), n);
            Queue::new(header, requests, completions)
        }
    }

    /// Slots per ring.
    #[inline]
    pub fn entries(&self) -> u32 {
        self.requests.len() as u32
    }

    /// The request ring's slot `slot`, as a client that writes it directly (and a test
    /// playing a hostile one) sees it.
    pub fn request_slot(&self, slot: usize) -> Option<&'a Entry> {
        self.requests.get(slot)
    }

    // The ring's per-entry accessors (`slot`, `request`, `completion`, `entries`, `post`,
    // `pop_completion`, `read`, `write_completion`) are `#[inline]`: the client and the
    // IOMMU PD call them from other crates for every entry, and a call costs about what
    // each does.
    #[inline]
    fn slot(&self, index: u32) -> usize {
        (index & (self.entries() - 1)) as usize
    }

    /// The request ring's slot for free-running index `index`. Never out of bounds (a
    /// slot is the index masked by the length, a power of two), which the compiler cannot
    /// see: indexing checked it for every entry on each side, 2 instructions each time,
    /// 16 of a queued MAP+UNMAP's.
    #[inline]
    fn request(&self, index: u32) -> &'a Entry {
        let slot = self.slot(index);
        debug_assert!(slot < self.requests.len());
        // SAFETY: `slot` is `index & (entries() - 1)`, and `entries()` is the request
        // ring's length (at most `MAX_QUEUE_ENTRIES`, so the `u32` holds it), a power of
        // two (`Queue::new` refuses others, and the fields are private and never change):
        // `slot < self.requests.len()`.
        unsafe { self.requests.get_unchecked(slot) }
    }

    /// The completion ring's slot for free-running index `index` (as `request`).
    #[inline]
    fn completion(&self, index: u32) -> &'a Completion {
        let slot = self.slot(index);
        debug_assert!(slot < self.completions.len());
        // SAFETY: as `request`'s: `Queue::new` gives both rings the same length, a power
        // of two, so `slot < self.completions.len()`.
        unsafe { self.completions.get_unchecked(slot) }
    }

    // The client's side.

    /// Post a request: `false`, and nothing written, if the request ring is full. It is the
    /// IOMMU PD's once the client notifies.
    #[inline]
    pub fn post(&self, label: u64, tag: u64, mrs: [u64; ENTRY_MRS]) -> bool {
        let h = self.header;
        let tail = h.request_tail.load(Ordering::Relaxed);
        // Acquire: the IOMMU PD's reads of the slot came before it moved the head past it.
        if tail.wrapping_sub(h.request_head.load(Ordering::Acquire)) >= self.entries() {
            return false;
        }
        let e = self.request(tail);
        e.label.store(label, Ordering::Relaxed);
        e.tag.store(tag, Ordering::Relaxed);
        for (m, v) in e.mrs.iter().zip(mrs) {
            m.store(v, Ordering::Relaxed);
        }
        // Release: the entry is written before the IOMMU PD can see the tail past it.
        h.request_tail.store(tail.wrapping_add(1), Ordering::Release);
        true
    }

    /// Start the client's side over from what the IOMMU PD published: its request tail set
    /// to the published request head, its completion head to the published completion
    /// tail, so whatever was posted and not taken is dropped and whatever was completed and
    /// not read is skipped (as C's `iommu_queue_init` does). For a client (re)starting its
    /// queue while the IOMMU PD is not serving it: under seL4 the IOMMU PD runs above its
    /// clients on their core, so no batch is under way while the client runs. After a crash
    /// the IOMMU PD has already started the queue over (`reset`), and this finds it empty.
    pub fn start_client_over(&self) {
        let h = self.header;
        // Acquire: the IOMMU PD's reads of the requests before its head, and its writes of
        // the completions before its tail, come before the client reuses those slots.
        let head = h.request_head.load(Ordering::Acquire);
        let done = h.completion_tail.load(Ordering::Acquire);
        h.request_tail.store(head, Ordering::Release);
        h.completion_head.store(done, Ordering::Release);
    }

    /// Withdraw the request tagged `tag` if the IOMMU PD has not taken it yet: its label
    /// becomes `WITHDRAWN`, which the IOMMU PD answers `UnknownOp` (with the tag) and acts
    /// on no further. True if withdrawn: then it is never applied. False if there is no
    /// such request untaken, or the IOMMU PD took it first: then it is (or was) served and
    /// answered as its call would be. For an UNMAP the client then makes by the call: left
    /// as it was, the entry would be served later and take whatever was mapped at its IOVA
    /// since (the pool, mapped again by the call after a reset).
    ///
    /// Safe while the IOMMU PD serves the queue on another core: the label is claimed by a
    /// compare-and-swap of what the client posted for `WITHDRAWN`, against the IOMMU PD's
    /// swap of it for `TAKEN` as it reads the entry (`read`), so exactly one of the two
    /// succeeds (the module's doc).
    pub fn withdraw(&self, tag: u64) -> bool {
        let h = self.header;
        let tail = h.request_tail.load(Ordering::Relaxed);
        let head = h.request_head.load(Ordering::Acquire);
        // (No more than a ring's worth, whatever a scribbled head says.)
        let untaken = tail.wrapping_sub(head).min(self.entries());
        let Some(e) =
            (0..untaken).map(|i| self.request(tail.wrapping_sub(1 + i))).find(|e| e.tag.load(Ordering::Relaxed) == tag)
        else {
            return false;
        };
        // (Relaxed: both sides' read-modify-writes of this one word are ordered by the word
        // itself; nothing else is read or written on the strength of the outcome.)
        match e.label.load(Ordering::Relaxed) {
            WITHDRAWN => true,
            TAKEN => false,
            posted => e.label.compare_exchange(posted, WITHDRAWN, Ordering::Relaxed, Ordering::Relaxed).is_ok(),
        }
    }

    /// Post requests in order, all or none: `false`, and nothing written, if the request
    /// ring has no room for all of them. They are published together, by one store of
    /// the tail after the last (as `post` does after each): the IOMMU PD sees none of them
    /// before it sees them all, and a batch pays one room check and one release store
    /// rather than one per entry.
    #[inline]
    pub fn post_all<I>(&self, requests: I) -> bool
    where
        I: IntoIterator<Item = (u64, u64, [u64; ENTRY_MRS])>,
        I::IntoIter: ExactSizeIterator,
    {
        let requests = requests.into_iter();
        let h = self.header;
        let tail = h.request_tail.load(Ordering::Relaxed);
        let used = tail.wrapping_sub(h.request_head.load(Ordering::Acquire));
        // (`used` may exceed `entries` only if the IOMMU PD's head was scribbled on: no room.)
        if requests.len() > self.entries().saturating_sub(used) as usize {
            return false;
        }
        let mut at = tail;
        for (label, tag, mrs) in requests {
            let e = self.request(at);
            e.label.store(label, Ordering::Relaxed);
            e.tag.store(tag, Ordering::Relaxed);
            for (m, v) in e.mrs.iter().zip(mrs) {
                m.store(v, Ordering::Relaxed);
            }
            at = at.wrapping_add(1);
        }
        h.request_tail.store(at, Ordering::Release);
        true
    }

    /// Requests posted that the IOMMU PD has not taken yet: a client that still has some
    /// when it is notified notifies again (the IOMMU PD takes `QUEUE_BATCH` at a time).
    pub fn unserved(&self) -> u32 {
        let h = self.header;
        h.request_tail.load(Ordering::Relaxed).wrapping_sub(h.request_head.load(Ordering::Acquire))
    }

    /// Every completion posted and not read yet, in order, handed to `f` as (tag, label,
    /// value); returns how many. The slots are given back together, by one store of the
    /// head after the last is read (as `pop_completion` does after each).
    #[inline]
    pub fn pop_completions(&self, mut f: impl FnMut(u64, u64, u64)) -> u32 {
        let h = self.header;
        let head = h.completion_head.load(Ordering::Relaxed);
        let tail = h.completion_tail.load(Ordering::Acquire);
        // (No more than a ring's worth, whatever a scribbled tail says.)
        let n = tail.wrapping_sub(head).min(self.entries());
        for i in 0..n {
            let c = self.completion(head.wrapping_add(i));
            f(c.tag.load(Ordering::Relaxed), c.label.load(Ordering::Relaxed), c.value.load(Ordering::Relaxed));
        }
        if n > 0 {
            h.completion_head.store(head.wrapping_add(n), Ordering::Release);
        }
        n
    }

    /// The next completion, if one was posted: (tag, label, value).
    #[inline]
    pub fn pop_completion(&self) -> Option<(u64, u64, u64)> {
        let h = self.header;
        let head = h.completion_head.load(Ordering::Relaxed);
        // Acquire: the completion was written before the tail moved past it.
        if head == h.completion_tail.load(Ordering::Acquire) {
            return None;
        }
        let c = self.completion(head);
        let out = (c.tag.load(Ordering::Relaxed), c.label.load(Ordering::Relaxed), c.value.load(Ordering::Relaxed));
        // Release: the slot is read before the IOMMU PD may write it again.
        h.completion_head.store(head.wrapping_add(1), Ordering::Release);
        Some(out)
    }

    // The IOMMU PD's side.

    /// How many requests the IOMMU PD may take now, at most `max`: those posted (the
    /// client's tail, acquired, so the entries before it are visible), and no more than the
    /// completion ring has room for. A tail more than a ring ahead (a client that wrote
    /// nonsense) counts as a full ring: its entries are read and judged like any others.
    #[inline]
    pub fn takeable(&self, cursor: &Cursor, max: usize) -> usize {
        let h = self.header;
        let posted = h.request_tail.load(Ordering::Acquire).wrapping_sub(cursor.request_head).min(self.entries());
        let used = cursor.completion_tail.wrapping_sub(h.completion_head.load(Ordering::Acquire));
        let room = self.entries().saturating_sub(used);
        (posted.min(room) as usize).min(max)
    }

    /// Take the `i`-th request after the cursor (`i < takeable`): copy it, each word read
    /// once, and claim it, its label swapped for `TAKEN`, so that the client can no longer
    /// withdraw it (`withdraw`; a label it withdrew first reads `WITHDRAWN`). The IOMMU PD
    /// takes each entry once.
    #[inline]
    pub fn read(&self, cursor: &Cursor, i: usize) -> Taken {
        let e = self.request(cursor.request_head.wrapping_add(i as u32));
        let mut mrs = [0; ENTRY_MRS];
        for (v, m) in mrs.iter_mut().zip(&e.mrs) {
            *v = m.load(Ordering::Relaxed);
        }
        // (Relaxed: the entry's words were made visible by the tail's acquire in `takeable`,
        // and the client changes none but the label until the head has passed the slot.)
        Taken { label: e.label.swap(TAKEN, Ordering::Relaxed), tag: e.tag.load(Ordering::Relaxed), mrs }
    }

    /// Write the `i`-th completion after the cursor (not yet visible to the client).
    #[inline]
    pub fn write_completion(&self, cursor: &Cursor, i: usize, tag: u64, label: u64, value: u64) {
        let c = self.completion(cursor.completion_tail.wrapping_add(i as u32));
        c.tag.store(tag, Ordering::Relaxed);
        c.label.store(label, Ordering::Relaxed);
        c.value.store(value, Ordering::Relaxed);
    }

    /// `n` requests are done and their completions written: publish both, and advance the
    /// cursor.
    #[inline]
    pub fn publish(&self, cursor: &mut Cursor, n: usize) {
        cursor.request_head = cursor.request_head.wrapping_add(n as u32);
        cursor.completion_tail = cursor.completion_tail.wrapping_add(n as u32);
        // Release: the completions are written before the client can see the tail, and
        // the requests were read before the client can reuse their slots.
        self.header.completion_tail.store(cursor.completion_tail, Ordering::Release);
        self.header.request_head.store(cursor.request_head, Ordering::Release);
    }

    /// Start the queue over at `cursor`, empty both ways: for a client that is not running
    /// (it faulted and is being restarted). The client's indices are written too, so what
    /// the dead client posted and a wake-up it left pending serve nothing, whether or not
    /// the restarted client's init has run yet.
    pub fn reset(&self, cursor: &Cursor) {
        let h = self.header;
        h.request_tail.store(cursor.request_head, Ordering::Relaxed);
        h.completion_head.store(cursor.completion_tail, Ordering::Relaxed);
        h.completion_tail.store(cursor.completion_tail, Ordering::Release);
        h.request_head.store(cursor.request_head, Ordering::Release);
    }
}

/// A queue region in one value, for tests and for a client and an IOMMU PD in one program.
#[derive(Debug)]
#[repr(C)]
pub struct OwnedQueue<const N: usize> {
    header: Header,
    requests: [Entry; N],
    completions: [Completion; N],
}

impl<const N: usize> Default for OwnedQueue<N> {
    fn default() -> Self {
        OwnedQueue {
            header: Header::default(),
            requests: core::array::from_fn(|_| Entry::default()),
            completions: core::array::from_fn(|_| Completion::default()),
        }
    }
}

impl<const N: usize> OwnedQueue<N> {
    /// The queue (`None` unless `N` is a power of two).
    pub fn queue(&self) -> Option<Queue<'_>> {
        Queue::new(&self.header, &self.requests, &self.completions)
    }

    /// The header, for tests that play a hostile client.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_what_c_and_the_tool_read() {
        assert_eq!((layout::REQUEST_TAIL, layout::COMPLETION_HEAD), (0, 4));
        assert_eq!((layout::REQUEST_HEAD, layout::COMPLETION_TAIL), (64, 68));
        assert_eq!((layout::REQUESTS, layout::ENTRY, layout::COMPLETION), (128, 48, 24));
        assert_eq!(layout::region_size(64), 128 + 64 * 72);
        // The owned region has the same layout as the raw one.
        let q = OwnedQueue::<8>::default();
        let base = &q as *const OwnedQueue<8> as usize;
        assert_eq!(q.requests.as_ptr() as usize - base, layout::REQUESTS);
        assert_eq!(q.completions.as_ptr() as usize - base, layout::completions(8));
        assert_eq!(core::mem::size_of::<OwnedQueue<8>>(), layout::region_size(8));
    }

    #[test]
    fn rings_fill_wrap_and_never_take_more_than_there_is_room_to_complete() {
        let region = OwnedQueue::<4>::default();
        let q = region.queue().unwrap();
        let mut cur = Cursor::default();
        for round in 0..3u64 {
            for i in 0..4 {
                assert!(q.post(1, round * 10 + i, [i, 0, 0, 0]));
            }
            assert!(!q.post(1, 99, [0; 4]), "a full ring refuses");
            assert_eq!(q.takeable(&cur, QUEUE_BATCH), 4);
            assert_eq!(q.takeable(&cur, 3), 3);
            for i in 0..4 {
                let t = q.read(&cur, i);
                assert_eq!((t.label, t.tag, t.mrs[0]), (1, round * 10 + i as u64, i as u64));
                q.write_completion(&cur, i, t.tag, 0, 7);
            }
            q.publish(&mut cur, 4);
            assert_eq!(q.unserved(), 0);
            // Four completions unread: nothing more can be taken, however much is posted.
            assert!(q.post(1, 5, [0; 4]));
            assert_eq!(q.takeable(&cur, QUEUE_BATCH), 0);
            for i in 0..4 {
                assert_eq!(q.pop_completion(), Some((round * 10 + i, 0, 7)));
            }
            assert_eq!(q.pop_completion(), None);
            assert_eq!(q.takeable(&cur, QUEUE_BATCH), 1);
            let t = q.read(&cur, 0);
            q.write_completion(&cur, 0, t.tag, 0, 0);
            q.publish(&mut cur, 1);
            assert_eq!(q.pop_completion(), Some((5, 0, 0)));
        }
    }

    #[test]
    fn a_batch_is_posted_whole_or_not_at_all_and_its_completions_read_together() {
        let region = OwnedQueue::<4>::default();
        let q = region.queue().unwrap();
        let mut cur = Cursor::default();
        let batch = |first: u64, n: u32| (0..n).map(move |i| (1, first + i as u64, [first + i as u64, 0, 0, 0]));
        for round in 0..3u64 {
            // Three of four slots: a batch of two finds no room and writes nothing.
            assert!(q.post(1, 100, [100, 0, 0, 0]));
            assert!(q.post_all(batch(round * 10, 2)));
            assert!(!q.post_all(batch(50, 2)), "two entries, one slot");
            assert_eq!((q.unserved(), q.takeable(&cur, QUEUE_BATCH)), (3, 3));
            assert!(q.post_all(batch(round * 10 + 2, 1)));
            assert!(!q.post_all(batch(60, 1)), "a full ring refuses");
            // The IOMMU PD takes the four in order, across the ring's end from round 1 on.
            let tags: [u64; 4] = core::array::from_fn(|i| q.read(&cur, i).tag);
            assert_eq!(tags, [100, round * 10, round * 10 + 1, round * 10 + 2]);
            for (i, tag) in tags.into_iter().enumerate() {
                q.write_completion(&cur, i, tag, i as u64, tag + 1);
            }
            // Nothing to read before the IOMMU PD publishes, then all four, in order.
            assert_eq!(q.pop_completions(|_, _, _| panic!("unpublished")), 0);
            q.publish(&mut cur, 4);
            let mut seen = [(0, 0, 0); 4];
            let mut n = 0;
            assert_eq!(q.pop_completions(|t, l, v| (seen[n], n) = ((t, l, v), n + 1)), 4);
            assert_eq!(seen, core::array::from_fn(|i| (tags[i], i as u64, tags[i] + 1)));
            // Their slots are the client's again, and nothing is left to read.
            assert_eq!(q.pop_completions(|_, _, _| panic!("read twice")), 0);
            assert!(q.post_all(batch(0, 0)));
            assert_eq!(q.takeable(&cur, QUEUE_BATCH), 0);
        }
        // A completion tail scribbled far ahead: at most a ring's worth is read.
        region.header().completion_tail.store(1 << 30, Ordering::Relaxed);
        assert_eq!(q.pop_completions(|_, _, _| ()), 4);
    }

    #[test]
    fn a_withdrawn_request_is_read_with_its_tag_and_no_calls_label_and_a_taken_one_cannot_be() {
        let region = OwnedQueue::<4>::default();
        let q = region.queue().unwrap();
        let mut cur = Cursor::default();
        for round in 0..3u64 {
            assert!(q.post_all((0..3u32).map(|i| (2, round * 10 + i as u64, [2, 1, 0x8000, 0]))));
            assert!(q.withdraw(round * 10 + 1));
            assert!(!q.withdraw(99), "no such tag");
            assert_eq!(q.takeable(&cur, QUEUE_BATCH), 3);
            let taken: [Taken; 3] = core::array::from_fn(|i| q.read(&cur, i));
            assert_eq!(
                taken.map(|t| (t.label, t.tag)),
                [(2, round * 10), (WITHDRAWN, round * 10 + 1), (2, round * 10 + 2)]
            );
            assert_eq!(taken[1].mrs, [2, 1, 0x8000, 0], "only the label changes");
            // Taken and not yet published (the IOMMU PD on another core, mid-batch): the
            // IOMMU PD's claim came first, so the withdrawal fails and the entry is served.
            assert!(!q.withdraw(round * 10 + 2), "taken, head not yet published: too late");
            assert_eq!(region.requests[(round as usize * 3 + 2) % 4].label.load(Ordering::Relaxed), TAKEN);
            for (i, t) in taken.iter().enumerate() {
                q.write_completion(&cur, i, t.tag, 0, 0);
            }
            q.publish(&mut cur, 3);
            assert!(!q.withdraw(round * 10 + 2), "taken: too late to withdraw");
            assert_eq!(q.pop_completions(|_, _, _| ()), 3);
        }
    }

    /// ABA on the label: a slot whose entry was withdrawn, taken (as `WITHDRAWN`) and
    /// re-posted after the ring wrapped holds the new entry's label for the IOMMU PD's
    /// claim, never the old `WITHDRAWN`; the old tag cannot be withdrawn again, though its
    /// slot held it; and the new entry's claim makes its own withdrawal fail. Over 2^32
    /// as well: the indices wrap with the slots (a ring's size divides 2^32).
    #[test]
    fn a_slot_re_posted_after_a_withdrawal_is_claimed_with_its_new_label() {
        let region = OwnedQueue::<2>::default();
        let q = region.queue().unwrap();
        for start in [0u32, u32::MAX - 2] {
            region.header().request_tail.store(start, Ordering::Relaxed);
            region.header().request_head.store(start, Ordering::Relaxed);
            region.header().completion_head.store(start, Ordering::Relaxed);
            region.header().completion_tail.store(start, Ordering::Relaxed);
            let mut cur = Cursor { request_head: start, completion_tail: start };
            for round in 0..4u64 {
                let (old, new) = (round * 10, round * 10 + 1);
                assert!(q.post(2, old, [2, 1, 0x1000, 0]));
                assert!(q.withdraw(old));
                let t = q.read(&cur, 0);
                assert_eq!((t.label, t.tag), (WITHDRAWN, old));
                q.write_completion(&cur, 0, t.tag, 1, 0);
                q.publish(&mut cur, 1);
                assert_eq!(q.pop_completions(|_, _, _| ()), 1);
                // The next entry, then one in the withdrawn entry's slot.
                assert!(q.post(1, new, [0, 0x1000, 0x1000, 0]));
                assert!(q.post(2, new + 1, [2, 1, 0x2000, 0]));
                assert!(!q.withdraw(old), "the old entry is gone, though its slot is posted again");
                assert!(q.withdraw(new + 1), "the re-posted entry is untaken: withdrawable");
                let taken: [Taken; 2] = core::array::from_fn(|i| q.read(&cur, i));
                assert_eq!(taken.map(|t| (t.label, t.tag)), [(1, new), (WITHDRAWN, new + 1)]);
                assert!(!q.withdraw(new), "claimed: too late");
                for (i, t) in taken.iter().enumerate() {
                    q.write_completion(&cur, i, t.tag, 0, 0);
                }
                q.publish(&mut cur, 2);
                assert_eq!(q.pop_completions(|_, _, _| ()), 2);
                // A third post in that slot, claimed with its own label (not the
                // `WITHDRAWN` the slot last held).
                assert!(q.post(1, new + 2, [0, 0x1000, 0x1000, 0]));
                let t = q.read(&cur, 0);
                assert_eq!((t.label, t.tag), (1, new + 2));
                q.write_completion(&cur, 0, t.tag, 0, 0);
                q.publish(&mut cur, 1);
                assert_eq!(q.pop_completions(|_, _, _| ()), 1);
            }
        }
    }

    #[test]
    fn a_client_that_writes_nonsense_into_the_indices_confuses_only_itself() {
        let region = OwnedQueue::<8>::default();
        let q = region.queue().unwrap();
        let mut cur = Cursor::default();
        // A tail far ahead: at most a ring, read as it is.
        region.header().request_tail.store(1 << 31, Ordering::Relaxed);
        assert_eq!(q.takeable(&cur, QUEUE_BATCH), 8);
        // The IOMMU PD's own indices overwritten: it keeps its cursor.
        region.header().request_head.store(12345, Ordering::Relaxed);
        q.publish(&mut cur, 8);
        assert_eq!(cur, Cursor { request_head: 8, completion_tail: 8 });
        // A completion head behind the tail by more than a ring: no room, nothing taken.
        region.header().completion_head.store(8u32.wrapping_sub(100), Ordering::Relaxed);
        assert_eq!(q.takeable(&cur, QUEUE_BATCH), 0);
        // Rings that are not a power of two, or differ, are refused.
        let (e, c) = ([Entry::default(), Entry::default(), Entry::default()], [(); 3].map(|_| Completion::default()));
        assert!(Queue::new(region.header(), &e, &c).is_none());
        assert!(Queue::new(region.header(), &e[..2], &c[..1]).is_none());
    }
}
