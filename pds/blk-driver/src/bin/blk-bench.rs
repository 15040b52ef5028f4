//! The bypass-vs-service measurement: the virtio-blk driver reads a 64 MiB file from its
//! disk, in one run, on eleven paths, and reports the ratios of the times and the MAP/UNMAP
//! calls it made per request. The paths (`Path`) differ in whether the SMMU translates
//! (through the service, or the stream in bypass) and in where the device puts the data:
//! copied through the driver's pool (as `system.xml`'s driver does), in the driver's
//! buffer mapped for each request (a MAP when shared, an UNMAP, confirmed, when
//! unshared; or the same through the mapping queue, a request's MAP posted with the
//! previous request's UNMAP, one doorbell call or one notification for both), or in its
//! buffer mapped once; and, to tell what mapping per request costs
//! apart from the calls it takes, mapped once with two calls per request that change
//! nothing (RESUME of its running device), the same number of protected procedure calls.
//! Those eight paths keep one request in flight (`Wide::read_blocks`, virtio-drivers'
//! `add_notify_wait_pop` as its `VirtIOBlk::read_blocks` does). Three more keep `IN_FLIGHT`
//! in flight (`blk_driver::in_flight`), in groups, the same loop on each: in place in
//! bypass, in place mapped once, and in place with the next group's buffers mapped through
//! the mapping queue while a group is in flight, posted with the UNMAPs of the group before
//! it, one doorbell call for them all (`IommuHal::map_queued`, `BATCH_GROUPS`). Every path
//! reads with this crate's own reader (`blk_driver::disk`, a queue of 64 descriptors):
//! virtio-drivers' `VirtIOBlk` holds at most five reads in flight.
//!
//! Only a measurement build of the IOMMU PD (images/blk-bench.xml) lets it switch to
//! bypass. The pool and the buffer are mapped at IOVA = their physical addresses, so the
//! device uses the same addresses translated or not and the driver switches without
//! resetting it: it reads each block (16 MiB) of the file once on each path, back to back,
//! rotating which goes first. Reads of the same block a few hundred milliseconds apart see the same host, so
//! the host's drift (which under emulation is large) falls on every path alike.
//!
//! Every read is checked (each 64-bit word of the file holds its own offset), outside the
//! timed part, so a pass that read the wrong data does not count.
#![no_std]
#![no_main]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use blk_driver::in_flight::Group;
use blk_driver::{place_device, Wide};
use client_channel::{calls, Ppc};
use generic_timer::{ms, ticks};
use iommu_client::hal::{DmaPool, InPlace, IommuHal, NotifyFn, Reach};
use iommu_client::queue::MapQueue;
use iommu_client::Client;
use iommu_protocol::measure::{BATCH_ALONE, BATCH_REPORT, BATCH_UNDER_READS};
use iommu_protocol::queue::{self, layout, Queue};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Op, Rights};
use sel4_microkit::{
    debug_println, memory_region_symbol, protection_domain, var, with_msg_regs_mut, Channel, ChannelSet, Handler,
    Infallible, MessageInfo,
};
use virtio_drivers::device::blk::SECTOR_SIZE;
use virtio_drivers::BufferDirection;

const IOMMU: Channel = Channel::new(0);
/// images/blk-bench.xml's `blk_pool`: every request's header and status go through it (a
/// page each, 32 with sixteen in flight), beside the queue's rings.
const POOL_PAGES: usize = 64;
/// The disk, the one device of images/blk-bench.xml.
const MY_DEVICE: DeviceId = DeviceId(0);
/// The file: 64 MiB from 1 MiB into the disk (images/Makefile writes it).
const FILE_SECTOR: usize = (1 << 20) / SECTOR_SIZE;
const FILE_BYTES: usize = 64 << 20;
/// Bytes per request: what a block driver commonly asks for at once.
const CHUNK: usize = 64 << 10;
/// The buffer the in-place paths read into: the capability the description gives after
/// the pool's.
const BUFFER_CAP: Handle = Handle(1);
/// Requests in flight at once on the in-flight paths. Sixteen: `blk_driver::disk`'s queue
/// holds 21 (`in_flight::MAX_IN_FLIGHT`), and sixteen divide a block's requests into whole
/// groups. A batch in the IOMMU PD is then 32 entries (a group's sixteen UNMAPs, the
/// next's sixteen MAPs) under one CMD_SYNC, for one doorbell call.
const IN_FLIGHT: usize = 16;
const _: () = assert!(IN_FLIGHT == 16 && IN_FLIGHT <= blk_driver::in_flight::MAX_IN_FLIGHT, "the paths' names say 16");
/// Groups mapped by one batch of the in-flight queue path: a batch under each group's reads
/// unmaps the group before it and maps the one after it, so the IOMMU PD is woken (a
/// doorbell call, a CMD_SYNC, two register accesses) once per group of sixteen.
/// MAX_GROUP (16) buffers a batch at most: one group.
const BATCH_GROUPS: usize = 1;
const _: () = assert!(BATCH_GROUPS * IN_FLIGHT <= iommu_client::hal::MAX_GROUP);
const _: () =
    assert!((BLOCK / CHUNK / IN_FLIGHT).is_multiple_of(BATCH_GROUPS), "a block's groups split into whole batches");
/// The sets of `IN_FLIGHT` buffers: through the queue, while a group is in flight, the
/// `BATCH_GROUPS` groups before it are being unmapped and the `BATCH_GROUPS` after it
/// mapped, so 2 `BATCH_GROUPS` + 1 groups' buffers are in use at once. The other in-flight
/// paths rotate over the first three, the one-in-flight paths use the first one or two
/// buffers.
const SETS: usize = 2 * BATCH_GROUPS + 1;
const BUFFERS: usize = SETS * IN_FLIGHT;
/// Bytes read on one path before the same bytes are read on the next. 16 MiB, not less:
/// through the queue with requests in flight, a block's first group's MAPs and last
/// group's UNMAPs have no reads to overlap (two wake-ups of the IOMMU PD on the critical
/// path per block, sixteen entries each), so the block must hold enough groups for those
/// to be a small part of it (2 of 18 batches; at 4 MiB, 2 of 6).
const BLOCK: usize = 16 << 20;
const BLOCKS: usize = FILE_BYTES / BLOCK;
/// Passes over the file (each reads it once on every path), after one warm-up pass.
const PASSES: usize = 3;
/// The slots of each ring of this PD's mapping queue: images/blk-bench.xml's
/// `<dma_queue entries>` (the region's size, which the Microkit tool patches, is checked
/// against it before the queue is used).
const QUEUE_ENTRIES: u32 = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// The stream in bypass; data copied through the pool. The baseline: the same driver
    /// with no isolation.
    Bypass,
    /// Through the service, the pool mapped once, data copied through it.
    Pool,
    /// Through the service, the driver's buffer mapped for each request, no copy.
    PerRequest,
    /// Through the service, the driver's buffer mapped once, no copy.
    MappedOnce,
    /// As `MappedOnce`, with two calls to the IOMMU PD per request that change nothing:
    /// what the calls of `PerRequest` cost without the mapping work.
    TwoCalls,
    /// The stream in bypass, the driver's buffer by physical address, no copy: the best a
    /// driver can do without an IOMMU.
    BypassInPlace,
    /// Through the service, the driver's buffers mapped for each request through the
    /// mapping queue: a request's MAP goes with the previous request's UNMAP, so requests
    /// alternate between two buffers, and each is read only once its UNMAP is confirmed.
    /// The IOMMU PD is woken by the doorbell call (`queue::SERVE`).
    Queued,
    /// As `Queued`, the IOMMU PD woken by a notification, which it answers with one.
    QueuedNotified,
    /// As `BypassInPlace`, `IN_FLIGHT` requests in flight at once: the baseline of
    /// `QueuedInFlight`.
    BypassInFlight,
    /// As `MappedOnce`, `IN_FLIGHT` requests in flight at once: what translation costs
    /// them, without mapping.
    MappedOnceInFlight,
    /// Through the service, `IN_FLIGHT` requests in flight at once, the buffers of
    /// `BATCH_GROUPS` groups at a time mapped through the queue while the group before them
    /// is in flight, their MAPs posted with the UNMAPs of the `BATCH_GROUPS` groups before
    /// that, one doorbell call for all; a group starts once its MAPs are done, and its
    /// buffers are read only once their UNMAPs are confirmed.
    QueuedInFlight,
}

const PATHS: [Path; 11] = [
    Path::Bypass,
    Path::Pool,
    Path::PerRequest,
    Path::MappedOnce,
    Path::TwoCalls,
    Path::BypassInPlace,
    Path::Queued,
    Path::QueuedNotified,
    Path::BypassInFlight,
    Path::MappedOnceInFlight,
    Path::QueuedInFlight,
];

impl Path {
    fn bypassed(self) -> bool {
        matches!(self, Path::Bypass | Path::BypassInPlace | Path::BypassInFlight)
    }

    fn name(self) -> &'static str {
        match self {
            Path::Bypass => "in bypass, copied through the pool",
            Path::Pool => "through the service, copied through the pool mapped once",
            Path::PerRequest => "through the service, in place, mapped per request",
            Path::MappedOnce => "through the service, in place, mapped once",
            Path::TwoCalls => "through the service, in place, mapped once, two calls per request",
            Path::BypassInPlace => "in bypass, in place",
            Path::Queued => "through the service, in place, mapped per request through the queue",
            Path::QueuedNotified => "through the service, in place, mapped per request through the queue, notified",
            Path::BypassInFlight => "in bypass, in place, 16 in flight",
            Path::MappedOnceInFlight => "through the service, in place, mapped once, 16 in flight",
            Path::QueuedInFlight => "through the service, in place, mapped per request through the queue, 16 in flight",
        }
    }
}

/// The IOMMU PD, for `IommuHal`'s own MAP and UNMAP of per-request buffers, and the UNMAP
/// (then STOP) it falls back to when the queue does not confirm one.
fn iommu_call(label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
    iommu_client::Channel::call(&mut Ppc(IOMMU), label, mrs, reply)
}

/// Hundredths, printed as a decimal.
struct Ratio(u64);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

fn ratio(a: u64, b: u64) -> Ratio {
    Ratio(a.saturating_mul(100) / b.max(1))
}

/// Read block `block` of the file: the ticks spent in the requests, and whether every word
/// was right. With `calls`, each request is
/// bracketed by two calls to the IOMMU PD that change nothing, timed with it.
fn read_block(blk: &mut Wide, block: usize, buf: &mut [u8; CHUNK], calls_too: bool) -> (u64, bool) {
    let mut spent = 0;
    let mut iommu = Client::new(Ppc(IOMMU));
    for c in 0..BLOCK / CHUNK {
        let offset = block * BLOCK + c * CHUNK;
        buf.fill(0xa5);
        let t0 = ticks();
        let before = !calls_too || iommu.resume(MY_DEVICE).is_ok();
        let res = blk.read_blocks(FILE_SECTOR + offset / SECTOR_SIZE, buf);
        let after = !calls_too || iommu.resume(MY_DEVICE).is_ok();
        spent += ticks() - t0;
        if !(before && after) {
            debug_println!("blk-bench: a RESUME of the running disk was refused");
            return (spent, false);
        }
        let right = right(buf, offset);
        if res.is_err() || !right {
            debug_println!("blk-bench: read at file offset {offset:#x}: {res:?}, data right: {right}");
            return (spent, false);
        }
    }
    (spent, true)
}

/// Whether `buf` holds the file's bytes at `offset` (each 64-bit word its own offset).
fn right(buf: &[u8; CHUNK], offset: usize) -> bool {
    buf.chunks_exact(8)
        .enumerate()
        .all(|(i, w)| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == (offset + 8 * i) as u64)
}

/// Read block `block` of the file in place through the mapping queue, alternating between
/// the two halves of the buffer: request c's share sends c's MAP with c - 1's UNMAP, and
/// half (c - 1) % 2 is checked only after that (it is out of the device's reach by
/// then, confirmed); the last is unmapped by `flush_queue`, timed too. The ticks spent,
/// the queued UNMAPs confirmed meanwhile, and whether every word was right.
fn read_block_queued(blk: &mut Wide, block: usize, halves: [NonNull<[u8; CHUNK]>; 2]) -> (u64, u64, bool) {
    let retired = IommuHal::retired();
    let (mut spent, mut ok) = (0, true);
    let chunks = BLOCK / CHUNK;
    let offset = |c: usize| block * BLOCK + c * CHUNK;
    for c in 0..=chunks {
        if c < chunks {
            // SAFETY: this half's last UNMAP was confirmed (at request c - 1's share), so
            // it is this PD's alone until it is shared again, in read_blocks below.
            let buf = unsafe { &mut *halves[c % 2].as_ptr() };
            buf.fill(0xa5);
            let t0 = ticks();
            let res = blk.read_blocks(FILE_SECTOR + offset(c) / SECTOR_SIZE, buf);
            spent += ticks() - t0;
            if res.is_err() {
                debug_println!("blk-bench: queued read at file offset {:#x}: {res:?}", offset(c));
                return (spent, 0, false);
            }
        } else {
            let t0 = ticks();
            ok &= IommuHal::flush_queue();
            spent += ticks() - t0;
        }
        if c > 0 {
            // SAFETY: request c - 1's half, whose UNMAP is confirmed.
            let done = unsafe { &*halves[(c - 1) % 2].as_ptr() };
            if !right(done, offset(c - 1)) {
                debug_println!("blk-bench: queued read at file offset {:#x}: data wrong", offset(c - 1));
                return (spent, 0, false);
            }
        }
    }
    (spent, IommuHal::retired() - retired, ok)
}

/// A group's buffers.
type Set = [NonNull<[u8; CHUNK]>; IN_FLIGHT];

/// What `read_block_in_flight` did: the ticks spent, and of them (through the queue) those
/// in batches while a group's reads were in flight, those waiting for the reads after
/// such a batch, and those in batches with no read in flight (a block's first group's
/// MAPs, its last group's UNMAPs), each as the driver sees it (posting, the doorbell call,
/// reading the completions); the batches of each kind; the UNMAPs confirmed; and whether
/// every word was right.
#[derive(Default)]
struct InFlight {
    ticks: u64,
    overlapped_ticks: u64,
    wait_ticks: u64,
    alone_ticks: u64,
    overlapped_batches: u64,
    alone_batches: u64,
    confirmed: u64,
    right: bool,
}

impl InFlight {
    /// Add `other`'s counts to these (what a run did, block by block).
    fn add(&mut self, other: &InFlight) {
        self.ticks += other.ticks;
        self.overlapped_ticks += other.overlapped_ticks;
        self.wait_ticks += other.wait_ticks;
        self.alone_ticks += other.alone_ticks;
        self.overlapped_batches += other.overlapped_batches;
        self.alone_batches += other.alone_batches;
        self.confirmed += other.confirmed;
    }
}

/// Fill `set`'s buffers with a pattern the file never holds, so that a read which left
/// one untouched is caught.
fn fill(set: &Set) {
    for b in set {
        // SAFETY: callers fill a set only while it is this PD's alone: not in flight, and
        // (through the queue) its last UNMAPs confirmed and its next MAPs not yet posted.
        unsafe { &mut *b.as_ptr() }.fill(0xa5);
    }
}

/// Map the buffers of groups `groups` through the queue (`IommuHal::map_queued`), posted
/// with the UNMAPs left pending, one doorbell call: whether every MAP succeeded and every
/// UNMAP was confirmed.
fn map_groups(sets: &[Set], groups: core::ops::Range<usize>) -> bool {
    let mut bufs = [(NonNull::slice_from_raw_parts(NonNull::<u8>::dangling(), 0), BufferDirection::DeviceToDriver);
        BATCH_GROUPS * IN_FLIGHT];
    let mut n = 0;
    for g in groups {
        for b in &sets[g % sets.len()] {
            bufs[n] = (NonNull::slice_from_raw_parts(b.cast::<u8>(), CHUNK), BufferDirection::DeviceToDriver);
            n += 1;
        }
    }
    IommuHal::map_queued(&bufs[..n])
}

/// Read block `block` of the file in place, `IN_FLIGHT` requests at a time. Each group is
/// submitted, then, while the device reads it, the overlap step runs, then the driver
/// waits for the group's reads. With `queued`, the overlap step under every
/// `BATCH_GROUPS`th group g is one batch through the mapping queue: the UNMAPs of the
/// `BATCH_GROUPS` groups before g (left pending as their reads completed) and the MAPs of
/// the `BATCH_GROUPS` groups after it, one doorbell call (`IommuHal::map_queued`; with no
/// group left to map, the UNMAPs alone, `IommuHal::flush_queue`); so a group is submitted
/// only once its MAPs are done, and a group's buffers are checked and filled again only
/// once their UNMAPs are confirmed. Every group a batch maps is submitted before the next
/// batch (which would otherwise unmap it as made ahead and never shared: `map_queued`).
/// The groups from g - `BATCH_GROUPS` to g + `BATCH_GROUPS` hold buffers at once, so the
/// sets rotate over 2 `BATCH_GROUPS` + 1 (`sets`); without the queue the step is empty, the
/// device reaches the buffers as `IommuHal`'s in-place memory says (mapped once, or in
/// bypass), and the groups rotate over the first three sets, as with one group a batch.
/// The first group's MAPs and the last groups' UNMAPs have no reads to overlap and are
/// timed alone. Checking and filling are not timed.
fn read_block_in_flight(blk: &mut Wide, block: usize, sets: &[Set; SETS], queued: bool) -> InFlight {
    let retired = IommuHal::retired();
    let mut did = InFlight { right: true, ..InFlight::default() };
    let groups = BLOCK / CHUNK / IN_FLIGHT;
    // Groups a batch maps; the sets in rotation.
    let per = if queued { BATCH_GROUPS } else { 1 };
    let sets = &sets[..2 * per + 1];
    let set = |g: usize| &sets[g % sets.len()];
    let offset = |g: usize, i: usize| block * BLOCK + (g * IN_FLIGHT + i) * CHUNK;
    let check = |g: usize| {
        set(g).iter().enumerate().all(|(i, b)| {
            // SAFETY: group g's buffers, whose reads are done and whose UNMAPs (when
            // mapped per request) are confirmed; nothing else refers to them now.
            let right = right(unsafe { b.as_ref() }, offset(g, i));
            if !right {
                debug_println!("blk-bench: in-flight read at file offset {:#x}: data wrong", offset(g, i));
            }
            right
        })
    };
    let failed = |did: InFlight| InFlight { right: false, confirmed: IommuHal::retired() - retired, ..did };
    for g in 0..groups.min(sets.len()) {
        fill(set(g));
    }
    // A batch is counted where it woke the IOMMU PD, so a step that posts nothing, or a
    // batch that moves, shows in the counts.
    let woke = |since: u64| u64::from(WAKEUPS.load(Ordering::Relaxed) > since);
    if queued {
        let (t0, w0) = (ticks(), WAKEUPS.load(Ordering::Relaxed));
        let mapped = as_kind(BATCH_ALONE, || map_groups(sets, 0..1));
        let t = ticks() - t0;
        (did.ticks, did.alone_ticks, did.alone_batches) = (t, t, woke(w0));
        if !mapped {
            debug_println!("blk-bench: group at file offset {:#x}: its MAPs were not all done", offset(0, 0));
            return failed(did);
        }
    }
    for g in 0..groups {
        let mut reads: [(usize, &mut [u8]); IN_FLIGHT] = core::array::from_fn(|i| {
            // SAFETY: filled, and (through the queue) mapped for this group: no other
            // reference to it lives until its reads are done.
            let buf = unsafe { &mut *set(g)[i].as_ptr() };
            (FILE_SECTOR + offset(g, i) / SECTOR_SIZE, &mut buf[..])
        });
        let mut group = None;
        let t0 = ticks();
        // SAFETY: `group` is completed below, where `submit` put it, before it goes.
        if let Err(e) = unsafe { Group::submit(blk, &mut reads, &mut group) } {
            debug_println!("blk-bench: group at file offset {:#x}: {e:?}", offset(g, 0));
            return failed(did);
        }
        let mut batch_done = true;
        let batch_under = g % per == 0;
        if queued && batch_under {
            let (t1, w1) = (ticks(), WAKEUPS.load(Ordering::Relaxed));
            let next = (g + 1).min(groups)..(g + per + 1).min(groups);
            batch_done = as_kind(BATCH_UNDER_READS, || {
                if next.is_empty() {
                    IommuHal::flush_queue()
                } else {
                    map_groups(sets, next)
                }
            });
            did.overlapped_ticks += ticks() - t1;
            did.overlapped_batches += woke(w1);
        }
        let t2 = ticks();
        let res = group.as_mut().map_or(Ok(()), |group| group.complete(blk));
        let t3 = ticks();
        did.wait_ticks += t3 - t2;
        did.ticks += t3 - t0;
        if let Err(e) = res {
            debug_println!("blk-bench: group at file offset {:#x}: {e:?}", offset(g, 0));
            return failed(did);
        }
        if !batch_done {
            debug_println!("blk-bench: group at file offset {:#x}: the batch under it was not all done", offset(g, 0));
            return failed(did);
        }
        // The groups whose UNMAPs the batch under this one confirmed: checked, then filled
        // for the groups that take their sets next.
        if batch_under && g >= per {
            if !(g - per..g).all(check) {
                return failed(did);
            }
            for next in g + per + 1..(g + 2 * per + 1).min(groups) {
                fill(set(next));
            }
        }
    }
    if queued {
        let (t0, w0) = (ticks(), WAKEUPS.load(Ordering::Relaxed));
        let flushed = as_kind(BATCH_ALONE, IommuHal::flush_queue);
        let t = ticks() - t0;
        did.ticks += t;
        did.alone_ticks += t;
        did.alone_batches += woke(w0);
        if !flushed {
            debug_println!("blk-bench: the last groups' UNMAPs were not all confirmed");
            return failed(did);
        }
    }
    // The groups from the last batch under reads on (the flush confirmed their UNMAPs).
    if !((groups - 1) / per * per..groups).all(check) {
        return failed(did);
    }
    InFlight { confirmed: IommuHal::retired() - retired, ..did }
}

/// How the queue paths wake the IOMMU PD: the doorbell call, or a notification.
static DOORBELL: AtomicBool = AtomicBool::new(true);
/// Times the queue paths woke the IOMMU PD.
static WAKEUPS: AtomicU64 = AtomicU64::new(0);

/// The kind of batch the next doorbell call asks for (`measure::BATCH_*`, 0 for the
/// one-in-flight paths'), which a measurement build of the IOMMU PD times apart; and, per
/// kind, the doorbell calls and their round trips (the batch inside included).
static BATCH_KIND: AtomicU64 = AtomicU64::new(0);
static DOORBELL_CALLS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
static DOORBELL_TICKS: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];

/// Run `f` with the doorbell calls it makes counted as batches of `kind`.
fn as_kind<T>(kind: u64, f: impl FnOnce() -> T) -> T {
    BATCH_KIND.store(kind, Ordering::Relaxed);
    let r = f();
    BATCH_KIND.store(0, Ordering::Relaxed);
    r
}

/// Ask the doorbell for `kind` of batch; the round trip's ticks.
fn doorbell(kind: u64) -> u64 {
    let t0 = ticks();
    with_msg_regs_mut(|regs| regs[0] = kind);
    // Its reply comes once the batch's completions are posted (its value, the entries
    // taken, is not needed: `IommuHal` reads the completions).
    IOMMU.pp_call(MessageInfo::new(queue::SERVE, 1));
    ticks() - t0
}

fn wake_iommu_pd() {
    WAKEUPS.fetch_add(1, Ordering::Relaxed);
    if DOORBELL.load(Ordering::Relaxed) {
        let kind = BATCH_KIND.load(Ordering::Relaxed);
        let took = doorbell(kind);
        if let (Some(n), Some(t)) = (DOORBELL_CALLS.get(kind as usize), DOORBELL_TICKS.get(kind as usize)) {
            n.fetch_add(1, Ordering::Relaxed);
            t.fetch_add(took, Ordering::Relaxed);
        }
    } else {
        IOMMU.notify();
    }
}

/// This PD's mapping queue (`<dma_queue>`), if the description gives it one of
/// `QUEUE_ENTRIES` slots.
fn map_queue() -> Option<MapQueue<'static, NotifyFn>> {
    let base: NonNull<u8> = memory_region_symbol!(iommu_queue: *mut u8);
    let size = *var!(iommu_queue_size: usize = 0);
    if size < layout::region_size(QUEUE_ENTRIES) {
        debug_println!("blk-bench: no mapping queue of {QUEUE_ENTRIES} entries here ({size:#x} bytes mapped)");
        return None;
    }
    // SAFETY: the description maps the queue region here, `size` bytes (checked above to
    // hold the rings), shared with the IOMMU PD alone, which touches it through atomics.
    let queue = unsafe { Queue::from_raw(base, QUEUE_ENTRIES) }?;
    Some(MapQueue::new(queue, NotifyFn(wake_iommu_pd)))
}

/// Map `len` bytes of capability `cap` once, read/write, at IOVA = `pa`.
fn map_at_pa(client: &mut Client<Ppc>, what: &str, cap: Handle, len: usize, pa: u64) -> bool {
    match client.map(cap, MY_DEVICE, 0, len as u64, Some(pa), Rights::READ_WRITE) {
        Ok(iova) => {
            debug_println!(
                "blk-bench: {what} ({} pages) mapped once, at iova {iova:#x} = its physical address",
                len / 4096
            );
            true
        }
        Err(e) => {
            debug_println!("blk-bench: the IOMMU PD refused the {what} at iova {pa:#x}: {e:?}");
            false
        }
    }
}

#[protection_domain]
fn init() -> BlkBench {
    let mut root = place_device(IOMMU, MY_DEVICE);
    let pool_va: NonNull<u8> = memory_region_symbol!(dma_pool: *mut u8);
    let pool_pa = *var!(dma_pool_paddr: u64 = 0);
    // The buffers: the first mapped once, per request by calls, or in bypass; the first
    // two, in turn, through the queue one in flight; all, a set of IN_FLIGHT at a time,
    // on the in-flight paths.
    let buffer: NonNull<[u8; CHUNK]> = memory_region_symbol!(dma_buffer: *mut [u8; CHUNK]);
    // SAFETY: the region is BUFFERS * CHUNK bytes (images/blk-bench.xml).
    let sets: [Set; SETS] =
        core::array::from_fn(|s| core::array::from_fn(|i| unsafe { buffer.add(s * IN_FLIGHT + i) }));
    let halves = [sets[0][0], sets[0][1]];
    let buffer_pa = *var!(dma_buffer_paddr: u64 = 0);
    let mut client = Client::new(Ppc(IOMMU));
    if !map_at_pa(&mut client, "DMA pool", Handle(0), POOL_PAGES * 4096, pool_pa)
        || !map_at_pa(&mut client, "buffer", BUFFER_CAP, BUFFERS * CHUNK, buffer_pa)
    {
        return BlkBench;
    }
    // SAFETY: the pool region is this PD's, mapped at `dma_pool`, used for nothing else;
    // the device reaches it at `pool_pa` translated (the MAP above) and in bypass.
    IommuHal::install(unsafe { DmaPool::reachable_at(pool_va, pool_pa, POOL_PAGES) });
    let per_request = InPlace {
        va: buffer.cast(),
        len: CHUNK,
        reach: Reach::PerRequest { cap: BUFFER_CAP, cap_offset: 0, device: MY_DEVICE, call: iommu_call },
    };
    // Translated through the MAP above, or in bypass: the same address.
    let always = InPlace { va: buffer.cast(), len: CHUNK, reach: Reach::Always { device_addr: buffer_pa } };
    let Some(queue) = map_queue() else { return BlkBench };
    IommuHal::install_queue(queue, iommu_call);
    let queued = InPlace {
        va: buffer.cast(),
        len: 2 * CHUNK,
        reach: Reach::Queued { cap: BUFFER_CAP, cap_offset: 0, device: MY_DEVICE },
    };
    let all_always = InPlace { len: BUFFERS * CHUNK, ..always };
    let all_queued = InPlace { len: BUFFERS * CHUNK, ..queued };
    let mut blk = match blk_driver::open(&mut root) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("blk-bench: the disk did not open: {e:?}");
            return BlkBench;
        }
    };
    // The copying paths read into the stack, which the device never reaches.
    let mut on_stack = [0u8; CHUNK];

    // The first pass warms what no path should pay for: QEMU's translation of this code,
    // the host's page cache of the disk image. It is shown, not counted.
    let (mut warm, mut verified) = (0, true);
    for block in 0..BLOCKS {
        let (t, ok) = read_block(&mut blk, block, &mut on_stack, false);
        warm += t;
        verified &= ok;
    }
    debug_println!(
        "blk-bench: warm-up through the service: {} MiB in {} requests of {} KiB, {} ms, data {}",
        FILE_BYTES >> 20,
        FILE_BYTES / CHUNK,
        CHUNK >> 10,
        ms(warm),
        if verified { "verified" } else { "WRONG" }
    );

    let mut bypassed = false;
    let (mut total, mut made) = ([0u64; PATHS.len()], [0u64; PATHS.len()]);
    // Requests read and found right, per path: what only a path that ran produces.
    let mut checked = [0u64; PATHS.len()];
    // Queued UNMAPs confirmed on both one-in-flight queue paths: one per request of each
    // when it did its work.
    let mut queue_unmaps = 0u64;
    // What the in-flight queue path and its baseline did, summed over the run, and the
    // queue path's wake-ups of the IOMMU PD (its batches, and any wake-up again for entries
    // the IOMMU PD left untaken).
    let (mut queued_in_flight, mut bypass_in_flight) = (InFlight::default(), InFlight::default());
    let mut in_flight_wakeups = 0u64;
    for pass in 0..PASSES {
        let mut spent = [0u64; PATHS.len()];
        for block in 0..BLOCKS {
            for i in 0..PATHS.len() {
                let path = PATHS[(pass * BLOCKS + block + i) % PATHS.len()];
                if path.bypassed() != bypassed {
                    if let Err(e) = client.measure_bypass(MY_DEVICE, !bypassed) {
                        let why = if e == ErrorCode::UnknownOp {
                            "the IOMMU PD is not a measurement build"
                        } else {
                            "refused"
                        };
                        debug_println!("blk-bench: cannot switch the stream: {why} ({e:?})");
                        return BlkBench;
                    }
                    bypassed = !bypassed;
                }
                let first_half = || {
                    // SAFETY: this PD's own mapping of the buffer region, whose first half
                    // the in-place paths read into; no other reference to it is live.
                    unsafe { &mut *halves[0].as_ptr() }
                };
                let calls_before = calls(Op::Map) + calls(Op::Unmap);
                let (t, ok) = match path {
                    Path::PerRequest => {
                        // SAFETY: the buffer region is capability BUFFER_CAP from its start,
                        // which the device may reach while a request has it shared.
                        unsafe { IommuHal::share_in_place(per_request) };
                        read_block(&mut blk, block, first_half(), false)
                    }
                    Path::MappedOnce | Path::TwoCalls | Path::BypassInPlace => {
                        // SAFETY: the device reaches the buffer at `buffer_pa`, translated
                        // (the MAP above) or in bypass.
                        unsafe { IommuHal::share_in_place(always) };
                        read_block(&mut blk, block, first_half(), path == Path::TwoCalls)
                    }
                    Path::Bypass | Path::Pool => read_block(&mut blk, block, &mut on_stack, false),
                    Path::Queued | Path::QueuedNotified => {
                        DOORBELL.store(path == Path::Queued, Ordering::Relaxed);
                        // SAFETY: the buffer region is capability BUFFER_CAP from its start,
                        // both halves, which the device may reach while shared.
                        unsafe { IommuHal::share_in_place(queued) };
                        let (t, retired, ok) = read_block_queued(&mut blk, block, halves);
                        queue_unmaps += retired;
                        (t, ok)
                    }
                    Path::BypassInFlight | Path::MappedOnceInFlight => {
                        // SAFETY: the device reaches the buffers at `buffer_pa`, translated
                        // (the MAP above) or in bypass.
                        unsafe { IommuHal::share_in_place(all_always) };
                        let did = read_block_in_flight(&mut blk, block, &sets, false);
                        if path == Path::BypassInFlight {
                            bypass_in_flight.add(&did);
                        }
                        (did.ticks, did.right)
                    }
                    Path::QueuedInFlight => {
                        DOORBELL.store(true, Ordering::Relaxed);
                        // SAFETY: the buffer region is capability BUFFER_CAP from its start,
                        // all of it, which the device may reach while shared.
                        unsafe { IommuHal::share_in_place(all_queued) };
                        let wakeups = WAKEUPS.load(Ordering::Relaxed);
                        let did = read_block_in_flight(&mut blk, block, &sets, true);
                        in_flight_wakeups += WAKEUPS.load(Ordering::Relaxed) - wakeups;
                        queued_in_flight.add(&did);
                        (did.ticks, did.right)
                    }
                };
                spent[path as usize] += t;
                made[path as usize] += calls(Op::Map) + calls(Op::Unmap) - calls_before;
                checked[path as usize] += if ok { (BLOCK / CHUNK) as u64 } else { 0 };
                verified &= ok;
            }
        }
        let base = spent[Path::Bypass as usize];
        debug_println!(
            "blk-bench: pass {pass}: {} MiB in bypass {} ms; through the service, pool mapped once {} ms (ratio {}), mapped per request {} ms (ratio {}), mapped per request through the queue {} ms (ratio {}, notified {}), mapped once in place {} ms (ratio {}); in bypass in place {} ms (ratio {}); 16 in flight: in bypass in place {} ms, mapped once {} ms (ratio to it {}), mapped per request through the queue {} ms (ratio to it {}); data {}",
            FILE_BYTES >> 20,
            ms(base),
            ms(spent[Path::Pool as usize]),
            ratio(spent[Path::Pool as usize], base),
            ms(spent[Path::PerRequest as usize]),
            ratio(spent[Path::PerRequest as usize], base),
            ms(spent[Path::Queued as usize]),
            ratio(spent[Path::Queued as usize], base),
            ratio(spent[Path::QueuedNotified as usize], base),
            ms(spent[Path::MappedOnce as usize]),
            ratio(spent[Path::MappedOnce as usize], base),
            ms(spent[Path::BypassInPlace as usize]),
            ratio(spent[Path::BypassInPlace as usize], base),
            ms(spent[Path::BypassInFlight as usize]),
            ms(spent[Path::MappedOnceInFlight as usize]),
            ratio(spent[Path::MappedOnceInFlight as usize], spent[Path::BypassInFlight as usize]),
            ms(spent[Path::QueuedInFlight as usize]),
            ratio(spent[Path::QueuedInFlight as usize], spent[Path::BypassInFlight as usize]),
            if verified { "verified" } else { "WRONG" }
        );
        for p in PATHS {
            total[p as usize] += spent[p as usize];
        }
    }
    // Leave the device translated, as it started.
    if bypassed && client.measure_bypass(MY_DEVICE, false).is_err() {
        debug_println!("blk-bench: could not put the stream back to translation");
        return BlkBench;
    }
    if !verified {
        debug_println!("blk-bench: no ratio: a read returned wrong data");
        return BlkBench;
    }
    let requests = (PASSES * FILE_BYTES / CHUNK) as u64;
    let base = total[Path::Bypass as usize];
    for path in PATHS {
        debug_println!(
            "blk-bench: {}: {} ms for {PASSES} x {} MiB, {} of the time in bypass; MAP/UNMAP calls per request {}.{:02} ({} over {requests} requests); {} requests read and checked",
            path.name(),
            ms(total[path as usize]),
            FILE_BYTES >> 20,
            ratio(total[path as usize], base),
            made[path as usize] / requests,
            made[path as usize] * 100 / requests % 100,
            made[path as usize],
            checked[path as usize]
        );
    }
    debug_println!(
        "blk-bench: in place, mapped once through the service vs in bypass: time ratio {}",
        ratio(total[Path::MappedOnce as usize], total[Path::BypassInPlace as usize])
    );
    // What the queue path did: one MAP and one UNMAP entry per request, every UNMAP
    // confirmed before its buffer was read, and nothing of it left mapped at the end.
    let mappings = client.query().map(|q| q[iommu_protocol::query::MAPPINGS]);
    debug_println!(
        "blk-bench: through the queue: {queue_unmaps} UNMAPs confirmed over 2 x {requests} requests, {} waits unanswered, {} UNMAPs unconfirmed; mappings left: {mappings:?} (the pool and the buffer mapped once)",
        IommuHal::queue_stalls(),
        IommuHal::unmap_failures()
    );
    debug_println!(
        "blk-bench: one in flight: queue per request vs bypass in place: time ratio {}",
        ratio(total[Path::Queued as usize], total[Path::BypassInPlace as usize])
    );
    debug_println!(
        "blk-bench: queue per request vs calls per request: time ratio {}; notified instead of called: {} of the bypass in place time",
        ratio(total[Path::Queued as usize], total[Path::PerRequest as usize]),
        ratio(total[Path::QueuedNotified as usize], total[Path::BypassInPlace as usize])
    );
    // The in-flight queue path: one MAP and one UNMAP entry per request, every UNMAP
    // confirmed before its buffer was read; a batch under each group's reads, and two per
    // block with none; and where its time went, beside its baseline's.
    let (q, b) = (&queued_in_flight, &bypass_in_flight);
    debug_println!(
        "blk-bench: through the queue, 16 in flight: {} UNMAPs confirmed over {requests} requests; {} batches while reads were in flight and {} with none, in {in_flight_wakeups} wake-ups of the IOMMU PD; of its {} ms, {} ms in batches under reads, {} ms waiting for reads after them, {} ms in batches alone (in bypass: {} ms, {} ms waiting for reads)",
        q.confirmed,
        q.overlapped_batches,
        q.alone_batches,
        ms(q.ticks),
        ms(q.overlapped_ticks),
        ms(q.wait_ticks),
        ms(q.alone_ticks),
        ms(b.ticks),
        ms(b.wait_ticks)
    );
    // Where a batch's time goes as this PD sees it: the doorbell call's round trip (the
    // IOMMU PD's handling inside it, which a measurement build of it breaks down when
    // asked, below), and the rest of the step, posting the entries and reading the
    // completions.
    let us = |t: u64, n: u64| {
        (u128::from(t) * 1_000_000 / u128::from(generic_timer::hz().max(1)) / u128::from(n.max(1))) as u64
    };
    for (kind, name, step_ticks, batches) in [
        (BATCH_UNDER_READS, "under reads", q.overlapped_ticks, q.overlapped_batches),
        (BATCH_ALONE, "alone", q.alone_ticks, q.alone_batches),
    ] {
        let (n, t) = (
            DOORBELL_CALLS[kind as usize].load(Ordering::Relaxed),
            DOORBELL_TICKS[kind as usize].load(Ordering::Relaxed),
        );
        debug_println!(
            "blk-bench: MEASUREMENT: 16 in flight through the queue, batches {name}: {batches} steps, {} us each; {n} doorbell calls, {} us each (round trip); the rest of a step (posting, reading completions) {} us",
            us(step_ticks, batches),
            us(t, n),
            us(step_ticks.saturating_sub(t), batches)
        );
    }
    // The doorbell call alone, with nothing queued (the IOMMU PD takes nothing, touches no
    // table and no register): what the kernel's round trip and the two address-space
    // switches cost, for the batches' round trips above to be set against.
    const EMPTY_CALLS: u64 = 256;
    let empty: u64 = (0..EMPTY_CALLS).map(|_| doorbell(0)).sum();
    debug_println!(
        "blk-bench: MEASUREMENT: the doorbell call with nothing queued: {} ns each (over {EMPTY_CALLS}, the disk idle)",
        u128::from(empty) * 1_000_000_000 / u128::from(generic_timer::hz().max(1)) / u128::from(EMPTY_CALLS)
    );
    doorbell(BATCH_REPORT);
    debug_println!(
        "blk-bench: 16 in flight on each: mapped once through the service vs bypass in place: time ratio {}",
        ratio(total[Path::MappedOnceInFlight as usize], total[Path::BypassInFlight as usize])
    );
    // The comparison issue 26 sets its target on: the same driver loop, the same requests
    // in flight, the device translated through per-request mappings or in bypass.
    debug_println!(
        "blk-bench: queue per request vs bypass in place: time ratio {} (16 in flight on each, the same driver loop)",
        ratio(total[Path::QueuedInFlight as usize], total[Path::BypassInFlight as usize])
    );
    let failures = IommuHal::unmap_failures();
    if failures > 0 {
        debug_println!("blk-bench: {failures} per-request UNMAPs were not confirmed");
    }
    BlkBench
}

struct BlkBench;

impl Handler for BlkBench {
    type Error = Infallible;

    /// The IOMMU PD notifies when it has posted the queue's completions; `IommuHal` has
    /// read them already (the IOMMU PD runs at a higher priority on this core, so they
    /// are there when the notification returns), so there is nothing left to do.
    fn notified(&mut self, _channels: ChannelSet) -> Result<(), Self::Error> {
        Ok(())
    }
}
