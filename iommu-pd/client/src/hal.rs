//! virtio-drivers' `Hal`, with DMA memory mapped through the IOMMU service.
//!
//! The driver PD holds a capability for a pool of pages; `DmaPool::map` maps the whole
//! pool for its device with one MAP, and everything the virtio driver shares with the
//! device goes through the pool: `dma_alloc` hands out pool pages, and `share` copies a
//! buffer into pool pages (and `unshare` copies back), because the buffer itself may lie
//! anywhere in the driver's memory, which the device must not reach. The "physical
//! addresses" virtio-drivers puts in descriptors are IOVAs.

use core::cell::UnsafeCell;
use core::ptr::NonNull;

use iommu_protocol::{DeviceId, ErrorCode, Handle, Rights};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use crate::queue::{Full, MapQueue, Notify, Posted};
use crate::{Channel, Client};

const PAGE: usize = 4096;
/// Most pages a pool can hold.
pub const MAX_POOL_PAGES: usize = 256;

/// Pages the device can reach, and who uses which.
#[derive(Debug)]
pub struct DmaPool {
    va: NonNull<u8>,
    iova: u64,
    pages: usize,
    used: [bool; MAX_POOL_PAGES],
}

// SAFETY: the pool owns its pages exclusively (by `map`'s contract).
unsafe impl Send for DmaPool {}

impl DmaPool {
    /// Map `pages` pages of capability `cap`, from `cap_offset`, read/write for `device`.
    ///
    /// # Safety
    /// `va` must be this PD's mapping of exactly those pages, unused by anything else for
    /// as long as the pool lives.
    pub unsafe fn map<C: Channel>(
        client: &mut Client<C>,
        cap: Handle,
        cap_offset: u64,
        device: DeviceId,
        va: NonNull<u8>,
        pages: usize,
    ) -> Result<Self, ErrorCode> {
        if pages == 0 || pages > MAX_POOL_PAGES {
            return Err(ErrorCode::OutOfRange);
        }
        let iova = client.map(cap, device, cap_offset, (pages * PAGE) as u64, None, Rights::READ_WRITE)?;
        // SAFETY: the caller vouches for `va`; the service just mapped the pages at `iova`.
        Ok(unsafe { Self::reachable_at(va, iova, pages) })
    }

    /// A pool of `pages` pages the device already reaches at `device_addr`: mapped there
    /// by an earlier MAP, or, for a stream the IOMMU lets through untranslated (a
    /// measurement build's bypass), at the pages' physical address.
    ///
    /// # Safety
    /// As for `map`, and the device must reach exactly these pages at `device_addr`;
    /// `pages` must be at most `MAX_POOL_PAGES`.
    pub unsafe fn reachable_at(va: NonNull<u8>, device_addr: u64, pages: usize) -> Self {
        Self { va, iova: device_addr, pages: pages.min(MAX_POOL_PAGES), used: [false; MAX_POOL_PAGES] }
    }

    /// The address at which the device reaches the pool's first page (its IOVA).
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// Pages in use.
    pub fn pages_in_use(&self) -> usize {
        self.used[..self.pages].iter().filter(|u| **u).count()
    }

    /// Take `n` contiguous pages: (IOVA, CPU address), zeroed.
    pub fn alloc(&mut self, n: usize) -> Option<(u64, NonNull<u8>)> {
        if n == 0 || n > self.pages {
            return None;
        }
        let first = (0..=self.pages - n).find(|&i| self.used[i..i + n].iter().all(|u| !u))?;
        self.used[first..first + n].iter_mut().for_each(|u| *u = true);
        // SAFETY: `first + n <= pages`, inside the pool.
        let va = unsafe { self.va.add(first * PAGE) };
        // SAFETY: as above; the pages are ours and now reserved for this allocation.
        unsafe { va.write_bytes(0, n * PAGE) };
        Some((self.iova + (first * PAGE) as u64, va))
    }

    /// Give back `n` pages starting at `iova` (from `alloc`).
    pub fn free(&mut self, iova: u64, n: usize) {
        if let Some(first) = self.index(iova) {
            let end = (first + n).min(self.pages);
            self.used[first..end].iter_mut().for_each(|u| *u = false);
        }
    }

    fn index(&self, iova: u64) -> Option<usize> {
        let off = iova.checked_sub(self.iova)? as usize;
        (off % PAGE == 0 && off / PAGE < self.pages).then_some(off / PAGE)
    }

    fn va_of(&self, iova: u64) -> Option<NonNull<u8>> {
        let i = self.index(iova)?;
        // SAFETY: page `i` is inside the pool.
        Some(unsafe { self.va.add(i * PAGE) })
    }
}

/// A call to the IOMMU PD as a plain function (the driver PD's transport), because the
/// `Hal` is static and cannot hold a `Client`.
pub type CallFn = fn(label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64;

struct FnChannel(CallFn);

impl Channel for FnChannel {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
        (self.0)(label, mrs, reply)
    }
}

/// Memory of the driver's whose buffers the device uses where they are, instead of
/// copies in the pool.
#[derive(Debug, Clone, Copy)]
pub struct InPlace {
    /// This PD's mapping of the memory, page-aligned.
    pub va: NonNull<u8>,
    /// Bytes, a whole number of pages.
    pub len: usize,
    /// How the device reaches it.
    pub reach: Reach,
}

/// How the device reaches in-place memory.
#[derive(Debug, Clone, Copy)]
pub enum Reach {
    /// A buffer is mapped when virtio-drivers shares it (one MAP of the pages it touches)
    /// and unmapped when it is unshared (one UNMAP, which returns once the IOMMU has
    /// confirmed; if it did not, the UNMAP is called again, and then the device stopped,
    /// `IommuHal::failure`): the device reaches a buffer only while its request is in
    /// flight, for two calls to the IOMMU PD per buffer.
    PerRequest {
        /// The capability for the memory.
        cap: Handle,
        /// Offset of `va`'s page in the capability (page-aligned).
        cap_offset: u64,
        /// The device the buffers are mapped for.
        device: DeviceId,
        /// How to reach the IOMMU PD.
        call: CallFn,
    },
    /// As `PerRequest`, through the mapping queue installed with `IommuHal::install_queue`
    /// instead of two calls: a buffer's UNMAP is posted when it is unshared, and sent with
    /// the next buffer's MAP when that one is shared, one notification for both; `share`
    /// returns once both completions are in, so the previous buffer is then out of the
    /// device's reach, confirmed (`IommuHal::retired`), and only then is it the driver's
    /// to read or reuse. An UNMAP the queue does not confirm (the ring full, the IOMMU PD
    /// silent, or its answer an error) is made by the call before that, and if the call
    /// does not confirm it either, the device is stopped (`IommuHal::failure`). The device
    /// reaches a buffer from its request's start until the next request's start (or
    /// `IommuHal::flush_queue`). With several requests in flight,
    /// `IommuHal::map_queued` maps a group's buffers ahead of its requests, with the UNMAPs
    /// the previous group left pending, one wake-up for all: the device then reaches a
    /// group's buffers from its batch until the next group's (or the flush). Called while a
    /// group's requests are in flight, it overlaps the batch with them (tests/in_place_overlap.rs):
    /// the group before's UNMAPs and the group after's MAPs, the in-flight group's mappings
    /// left alone; a group's buffers are then the device's from the batch under the
    /// group before's requests until the batch under the group after's.
    Queued {
        /// The capability for the memory.
        cap: Handle,
        /// Offset of `va`'s page in the capability (page-aligned).
        cap_offset: u64,
        /// The device the buffers are mapped for.
        device: DeviceId,
    },
    /// All of it, all the time, at `device_addr`: mapped once (a MAP the driver made), or
    /// by physical address for a stream in bypass. No call per buffer; the device can
    /// reach every buffer in it at any time.
    Always {
        /// Where the device sees `va`.
        device_addr: u64,
    },
}

/// The pages a buffer touches in in-place memory, and the rights its direction needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pages {
    /// The buffer's offset in the memory, and its first page's.
    start: usize,
    first: usize,
    /// Bytes from `first`, whole pages.
    len: u64,
    rights: Rights,
}

impl InPlace {
    /// Which pages of this memory `buffer` touches, if it lies in it.
    fn pages(&self, buffer: NonNull<[u8]>, direction: BufferDirection) -> Option<Pages> {
        let start = (buffer.cast::<u8>().as_ptr() as usize).checked_sub(self.va.as_ptr() as usize)?;
        let end = start.checked_add(buffer.len())?;
        if end > self.len || buffer.is_empty() {
            return None;
        }
        let first = start / PAGE * PAGE;
        let len = (end.div_ceil(PAGE) * PAGE - first) as u64;
        // Stage-1 tables cannot say write-only, so a buffer the device writes is mapped
        // read/write; one it only reads is mapped read-only.
        let rights = if direction == BufferDirection::DriverToDevice { Rights::READ } else { Rights::READ_WRITE };
        Some(Pages { start, first, len, rights })
    }

    /// Where the device reaches `buffer`, if it lies in this memory (mapping it first
    /// when mapped per request, unless `IommuHal::map_queued` mapped it already).
    fn share(&self, buffer: NonNull<[u8]>, direction: BufferDirection) -> Option<u64> {
        let p = self.pages(buffer, direction)?;
        let iova = match self.reach {
            Reach::Always { device_addr } => return Some(device_addr + p.start as u64),
            Reach::PerRequest { cap, cap_offset, device, call } => Client::new(FnChannel(call))
                .map(cap, device, cap_offset + p.first as u64, p.len, None, p.rights)
                .ok()?,
            Reach::Queued { cap, cap_offset, device } => match take_premapped(&p) {
                Some(iova) => iova,
                None => queued_map(MapArgs {
                    cap,
                    device,
                    offset: cap_offset + p.first as u64,
                    len: p.len,
                    rights: p.rights,
                })?,
            },
        };
        Some(iova + (p.start - p.first) as u64)
    }

    /// The device is done with the buffer whose first page it reaches at `page`: unmap it
    /// if it was mapped for the request.
    fn unshare(&self, page: u64) {
        match self.reach {
            // Returns with the buffer out of the device's reach, confirmed, or the device
            // stopped (`unmapped_or_stopped`): virtio-drivers takes the buffer back now.
            Reach::PerRequest { device, call, .. } => {
                if !unmapped(call, device, page) {
                    state().unmap_failures += 1;
                    unmapped_or_stopped(call, device, page);
                }
            }
            // Posted, sent with the next MAP (or by `flush_queue`); with as many pending as a
            // group leaves already, those go first, alone. That leaves room (every exchange
            // ends its UNMAPs); were there none, the call would make this one now.
            Reach::Queued { device, .. } => {
                if state().pending.len() == MAX_GROUP {
                    IommuHal::flush_queue();
                }
                if !state().pending.push((device, page)) {
                    unmap_by_call(device, page);
                }
            }
            Reach::Always { .. } => {}
        }
    }
}

/// Wakes the IOMMU PD, for the Hal's mapping queue (`Notify` as a plain function, because
/// the `Hal` is static).
#[derive(Debug, Clone, Copy)]
pub struct NotifyFn(pub fn());

impl Notify for NotifyFn {
    fn notify(&mut self) {
        (self.0)()
    }
}

/// How many times `queued_exchange` looks for its completions before it gives up: the
/// IOMMU PD runs at a higher priority on this core, so they are there when the
/// notification returns, unless it is not serving at all.
const QUEUE_PATIENCE: u32 = 1 << 20;

/// The most buffers one `IommuHal::map_queued` maps (a group of requests in flight), and
/// so the most UNMAPs a group leaves pending for the next: 16, what blk-bench keeps in
/// flight with `blk_driver::disk` (a batch of 32 entries with the group before's UNMAPs).
pub const MAX_GROUP: usize = 16;

/// A MAP for the queue: the calls' arguments, the IOVA left to the service.
#[derive(Debug, Clone, Copy)]
struct MapArgs {
    cap: Handle,
    device: DeviceId,
    offset: u64,
    len: u64,
    rights: Rights,
}

/// At most `MAX_GROUP` things, in a fixed array (no heap).
#[derive(Debug, Clone, Copy)]
struct Group<T: Copy> {
    items: [Option<T>; MAX_GROUP],
}

impl<T: Copy> Group<T> {
    const EMPTY: Self = Group { items: [None; MAX_GROUP] };

    fn len(&self) -> usize {
        self.items.iter().flatten().count()
    }

    /// False, and nothing added, when it is full.
    fn push(&mut self, item: T) -> bool {
        match self.items.iter_mut().find(|i| i.is_none()) {
            Some(slot) => {
                *slot = Some(item);
                true
            }
            None => false,
        }
    }

    /// The first item `pick` accepts, removed.
    fn take_first(&mut self, mut pick: impl FnMut(&T) -> bool) -> Option<T> {
        self.items.iter_mut().find(|i| i.as_ref().is_some_and(&mut pick))?.take()
    }

    fn take_all(&mut self) -> Self {
        core::mem::replace(self, Self::EMPTY)
    }

    /// Keep only the items `keep` accepts.
    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.items.iter_mut().filter(|i| i.as_ref().is_some_and(|t| !keep(t))).for_each(|i| *i = None);
    }

    fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.items.iter().flatten().copied()
    }
}

/// Post `unmaps` (device, IOVA) and `maps`, wake the IOMMU PD once, and wait for every
/// completion (with `late`, also for the answers of MAPs given up on before). Returns each
/// MAP's IOVA, in order (`None` if refused, or not posted because the ring was full or
/// `map_room` was used up). A confirmed UNMAP is counted in `retired`; one the queue does
/// not confirm (the ring full even after a wake-up, never answered, or refused) is made
/// by the call before this returns (`unmap_by_call`), so none is left for later: every
/// caller hands the buffers back once this returns.
fn queued_exchange(unmaps: &Group<(DeviceId, u64)>, maps: &[MapArgs], late: bool) -> [Option<u64>; MAX_GROUP] {
    let mut mapped = [None; MAX_GROUP];
    // The UNMAPs the queue did not confirm, for the call.
    let mut unconfirmed = Group::EMPTY;
    let st = state();
    let room = map_room(st);
    let Some(q) = st.queue.as_mut() else {
        unmaps.iter().for_each(|(device, iova)| {
            let _stopped = unmap_by_call(device, iova);
        });
        return mapped;
    };
    // A MAP this Hal could not keep track of were it given up on (`map_room`) is held
    // back, and its buffer copied.
    let held = maps.len().saturating_sub(room);
    st.maps_held_back += held as u64;
    let maps = &maps[..maps.len() - held];
    // One batch, the UNMAPs then the MAPs, posted with one store of the ring's tail.
    let requests = unmaps.iter().map(|(device, iova)| Posted::Unmap { device, iova }).chain(maps.iter().map(|m| {
        Posted::Map { cap: m.cap, device: m.device, offset: m.offset, len: m.len, iova: None, rights: m.rights }
    }));
    let mut batch = [Posted::Unmap { device: DeviceId(0), iova: 0 }; 2 * MAX_GROUP];
    let mut posting = 0;
    for (slot, r) in batch.iter_mut().zip(requests) {
        *slot = r;
        posting += 1;
    }
    // The ring full holds a stalled batch's entries still: the IOMMU PD, if it serves
    // again, takes them when woken, and then there is room.
    let posted = q.post_all(&batch[..posting]).or_else(|Full| {
        q.notify();
        q.post_all(&batch[..posting])
    });
    // Each posted entry's tag, UNMAPs then MAPs (tags are never `u64::MAX`: one a post).
    let mut tags = [u64::MAX; 2 * MAX_GROUP];
    let mut waiting = 0;
    match posted {
        Ok(first) => {
            let (unmap_tags, map_tags) = tags.split_at_mut(MAX_GROUP);
            let mut next = first..;
            unmap_tags.iter_mut().take(unmaps.len()).chain(map_tags.iter_mut().take(maps.len())).for_each(|t| {
                *t = next.next().unwrap_or(u64::MAX);
            });
            waiting = posting;
        }
        // Still full: the IOMMU PD serves nothing. The call makes the UNMAPs (`unmapped`);
        // the MAPs are not posted, their buffers copied.
        Err(Full) => unmaps.iter().for_each(|u| {
            let _room = unconfirmed.push(u);
        }),
    }
    if waiting == 0 && !(late && st.abandoned.len() > 0) {
        return mapped;
    }
    q.notify();
    let mut patience = QUEUE_PATIENCE;
    while (waiting > 0 || (late && st.abandoned.len() > 0)) && patience > 0 {
        patience -= 1;
        // Every completion there, their slots given back with one store of the head.
        let read = q.completions(|done| {
            // A completion of an earlier exchange that gave up waiting is not ours; if it
            // is a MAP's, the mapping it made is nobody's and goes with the next UNMAPs.
            let Some(i) = tags.iter().position(|&t| t == done.tag) else {
                if let Some((_, device)) = st.abandoned.take_first(|&(t, _)| t == done.tag) {
                    if let Ok(iova) = done.result {
                        // Never full: it takes the place the MAP held in `abandoned`
                        // (`map_room`).
                        let _held = st.orphans.push((device, iova));
                    }
                }
                return;
            };
            tags[i] = u64::MAX;
            waiting -= 1;
            match (i < MAX_GROUP, done.result) {
                (true, Ok(_)) => st.retired += 1,
                // No mapping starts there any more (a STOP or a REVOKE took it): gone, as
                // the index the IOMMU PD answers from holds every mapping the tables do.
                (true, Err(ErrorCode::NotMapped)) => {}
                // Refused (`Hardware`: the IOMMU did not confirm; the IOMMU PD blocks the
                // device, or retries the block at its next request, which the call is).
                (true, Err(_)) => {
                    if let Some(u) = unmaps.iter().nth(i) {
                        let _room = unconfirmed.push(u);
                    }
                }
                (false, r) => {
                    let map = &maps[i - MAX_GROUP];
                    if let Ok(iova) = r {
                        forget_orphans_at(&mut st.orphans, map.device, iova);
                    }
                    mapped[i - MAX_GROUP] = r.ok();
                }
            }
        });
        if read == 0 && q.untaken() > 0 {
            q.notify();
        }
    }
    if waiting > 0 {
        // Never answered: those UNMAPs are not known to be done, and the call makes them.
        // Each is withdrawn from the ring first: served later, it would take whatever was
        // mapped at its IOVA since, by the call (the pool, mapped again after a reset:
        // tests/in_place_stale_unmap_after_reset.rs). (Not taken, so not answered: the
        // IOMMU PD, above this PD on its core, is not serving the ring while this runs.)
        for (&tag, u) in tags[..MAX_GROUP].iter().zip(unmaps.iter()).filter(|(&t, _)| t != u64::MAX) {
            let _untaken = q.withdraw(tag);
            let _room = unconfirmed.push(u);
        }
        st.queue_stalls += 1;
        // Unanswered MAPs may still be served: their answers are watched for. Never full:
        // each was posted only with room kept for it (`map_room`).
        for (&tag, m) in tags[MAX_GROUP..].iter().zip(maps).filter(|(&t, _)| t != u64::MAX) {
            let _held = st.abandoned.push((tag, m.device));
        }
    }
    // (Never full: it holds some of `unmaps`, at most a group.) A device stopped for one
    // lost this exchange's mappings too: they are not handed out.
    let mut stopped = Group::EMPTY;
    for (device, iova) in unconfirmed.iter() {
        if unmap_by_call(device, iova) {
            let _room = stopped.push(device);
        }
    }
    for (m, iova) in maps.iter().zip(&mut mapped) {
        if stopped.iter().any(|d| d == m.device) {
            *iova = None;
        }
    }
    mapped
}

/// A MAP was just served at `device`'s `iova`, so whatever a MAP given up on had mapped
/// there (in `orphans`) is gone: its answer, read earlier (answers come in the ring's
/// order), named a mapping that an UNMAP of that IOVA took since. Its UNMAP would take
/// this one, under its request (tests/in_place_stale_unmap.rs). (An UNMAP left in the ring
/// unanswered and made by the call was one way there; such entries are withdrawn now, and
/// this stays as a second line.)
fn forget_orphans_at(orphans: &mut Group<(DeviceId, u64)>, device: DeviceId, iova: u64) {
    while orphans.take_first(|&(d, v)| d == device && v == iova).is_some() {}
}

/// An UNMAP the queue did not confirm (the ring full, the IOMMU PD silent past the
/// client's patience, or its answer an error), counted in `unmap_failures`: made by the
/// call instead (`unmapped_or_stopped`). True if the device was stopped for it.
fn unmap_by_call(device: DeviceId, iova: u64) -> bool {
    let st = state();
    st.unmap_failures += 1;
    unmapped_or_stopped(st.call, device, iova)
}

/// Whether the UNMAP call for `device`'s mapping at `iova` says it is gone. The IOMMU PD
/// answers only once the IOMMU confirmed, and before it serves the call it retries a block
/// it could not confirm, and before the removal any removal of the device it could not:
/// the call is the "next request" those wait for. `NotMapped`: no mapping starts there
/// any more (the queue's UNMAP, served meanwhile, a STOP or a REVOKE took it), gone as
/// surely, since the IOMMU PD's index holds every mapping its tables do.
fn unmapped(call: CallFn, device: DeviceId, iova: u64) -> bool {
    matches!(Client::new(FnChannel(call)).unmap(device, &[iova]), Ok(()) | Err(ErrorCode::NotMapped))
}

/// Unmap `device`'s mapping at `iova` by the call; if the IOMMU does not confirm that
/// either, stop the device (STOP: blocked, every mapping gone, confirmed; asked up to
/// `STOP_TRIES` times), and record it in `failure`, which every later `map_queued` and
/// `flush_queue` answers. When this returns the buffer is out of the device's reach,
/// confirmed, or `failure` says that not even STOP was confirmed (`Failure::NotStopped`:
/// the Hal asks again before anything else it does, `fence`). True if it stopped the
/// device, confirmed.
fn unmapped_or_stopped(call: CallFn, device: DeviceId, iova: u64) -> bool {
    if unmapped(call, device, iova) {
        return false;
    }
    stop_recorded(call, device)
}

/// STOP `device` (`stop_asked`, `STOP_TRIES` times while the IOMMU does not confirm it)
/// and record it in `failure`. True if it stopped, confirmed.
fn stop_recorded(call: CallFn, device: DeviceId) -> bool {
    let failure = stop_asked(call, device, STOP_TRIES);
    let st = state();
    st.stop_call = call;
    // The worse is kept: a device stopped does not make up for one that could not be
    // (until `fence` gets that one stopped too).
    if !matches!(st.failure, Some(Failure::NotStopped(..))) {
        st.failure = Some(failure);
    }
    matches!(failure, Failure::Stopped(_))
}

/// How many times the Hal asks for a STOP the IOMMU does not confirm before it hands the
/// buffer back all the same (virtio-drivers' `unshare` has no error): each is a request,
/// and before any request the IOMMU PD retries the blocks and removals it could not
/// confirm, so an IOMMU that failed once and obeys again is caught before the buffer goes
/// back (tests/in_place_per_request_refused.rs).
const STOP_TRIES: u32 = 4;

/// STOP `device`, asked up to `tries` times while the IOMMU does not confirm it
/// (`Hardware`); once confirmed, what the Hal meant to unmap of it is forgotten
/// (`Client::stop` calls `forget_device`).
fn stop_asked(call: CallFn, device: DeviceId, tries: u32) -> Failure {
    let mut last = ErrorCode::Hardware;
    for _ in 0..tries {
        match Client::new(FnChannel(call)).stop(device) {
            Ok(_) => return Failure::Stopped(device),
            Err(ErrorCode::Hardware) => last = ErrorCode::Hardware,
            Err(e) => return Failure::NotStopped(device, e),
        }
    }
    Failure::NotStopped(device, last)
}

/// A device whose STOP the IOMMU did not confirm (`Failure::NotStopped`) is asked to stop
/// again before anything else the Hal does (share, unshare, `map_queued`, `flush_queue`),
/// once each time, until it is confirmed (then `Failure::Stopped`). True while it is
/// not: the Hal then maps nothing in place (a buffer is copied through the pool).
fn fence() -> bool {
    let st = state();
    let Some(Failure::NotStopped(device, _)) = st.failure else {
        return false;
    };
    let failure = stop_asked(st.stop_call, device, 1);
    state().failure = Some(failure);
    matches!(failure, Failure::NotStopped(..))
}

/// `device` was stopped, confirmed: every mapping it had is gone, and after a RESUME its
/// IOVAs are handed out again from its window's start, also to mappings the Hal never
/// sees (the driver's pool, mapped again by the call). So nothing the Hal meant to unmap
/// of it may be sent any more: an UNMAP left pending, a mapping made ahead and not yet
/// taken, a late MAP's mapping; and a MAP given up on whose answer is already published
/// was served before the STOP (or refused, the device stopped), its mapping gone too
/// (tests/in_place_late_after_stop.rs). One still unanswered is watched for as before:
/// served after the RESUME, its mapping is real, and nothing can be mapped at its IOVA
/// until it is unmapped. Called by `Client::stop` once the STOP is confirmed, whichever
/// `Client` of the PD made it (the Hal's own or the driver's).
pub(crate) fn forget_device(device: DeviceId) {
    let st = state();
    if let Some(q) = st.queue.as_mut() {
        q.completions(|done| {
            if let Some((_, d)) = st.abandoned.take_first(|&(t, _)| t == done.tag) {
                if let (true, Ok(iova)) = (d != device, done.result) {
                    // Never full: it takes the place the MAP held in `abandoned`.
                    let _held = st.orphans.push((d, iova));
                }
            }
        });
    }
    st.orphans.retain(|&(d, _)| d != device);
    st.pending.retain(|&(d, _)| d != device);
    st.premapped.retain(|&(_, d, _)| d != device);
}

/// What the Hal did when the IOMMU confirmed neither a buffer's UNMAP nor, after it, the
/// UNMAP call: it stopped the device, through the IOMMU PD, before handing the buffer back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// STOP confirmed: the device reaches nothing (the pool neither), so its requests cannot
    /// complete, until the driver resumes it (`Client::resume`) and starts it again.
    Stopped(DeviceId),
    /// STOP was refused too, `STOP_TRIES` times (the last answer): the device may still
    /// reach the buffer the Hal handed back. The IOMMU PD keeps a device whose removal it
    /// could not confirm marked, and retries its block before every request it serves; the
    /// Hal asks for the STOP again before anything else it does, and maps nothing in place
    /// meanwhile; once confirmed, `Stopped`.
    NotStopped(DeviceId, ErrorCode),
}

/// How many more MAPs may be posted: each one posted could be given up on and served
/// late, and its mapping must then be found and unmapped, so `abandoned` and `orphans`
/// together (a late answer moves a MAP from the one to the other) never hold more than a
/// group. A MAP beyond that is not posted. Only a stall fills them (none is posted with
/// more than a group of the IOMMU PD's answers outstanding, where a queue of the
/// description's size could hold thousands): no table sized for the largest queue.
fn map_room(st: &Installed) -> usize {
    MAX_GROUP.saturating_sub(st.abandoned.len() + st.orphans.len())
}

/// The MAP of a queued buffer `map_queued` did not map, sent with the UNMAPs left pending.
fn queued_map(map: MapArgs) -> Option<u64> {
    let unmaps = pending_unmaps();
    queued_exchange(&unmaps, &[map], false)[0]
}

/// The IOVA of a mapping `map_queued` made for these pages, which is then the request's.
fn take_premapped(p: &Pages) -> Option<u64> {
    state().premapped.take_first(|(q, _, _)| q == p).map(|(_, _, iova)| iova)
}

/// The UNMAPs to send now, taken: those left pending, and those of mappings `map_queued`
/// made that no `share` took (they must not outlive their group), and those a MAP given up
/// on made when it was served late. Beyond one group's
/// worth, the rest are sent first, alone.
fn pending_unmaps() -> Group<(DeviceId, u64)> {
    let st = state();
    let mut unmaps = st.pending.take_all();
    let orphans = st.orphans.take_all();
    let premapped = st.premapped.take_all();
    for (device, iova) in orphans.iter().chain(premapped.iter().map(|(_, device, iova)| (device, iova))) {
        if !unmaps.push((device, iova)) {
            queued_exchange(&unmaps, &[], false);
            unmaps = Group::EMPTY;
            unmaps.push((device, iova));
        }
    }
    unmaps
}

struct Installed {
    pool: Option<DmaPool>,
    in_place: Option<InPlace>,
    /// The mapping queue `Reach::Queued` posts to; the UNMAPs of buffers unshared since
    /// the last wake-up, not yet sent: (device, IOVA); and the mappings `map_queued` made
    /// that no `share` has taken yet: (pages, device, IOVA).
    queue: Option<MapQueue<'static, NotifyFn>>,
    pending: Group<(DeviceId, u64)>,
    premapped: Group<(Pages, DeviceId, u64)>,
    /// How to reach the IOMMU PD for what the queue cannot do: an UNMAP it did not
    /// confirm, then STOP (`unmapped_or_stopped`).
    call: CallFn,
    /// MAPs an exchange gave up waiting for: (tag, device); and the mappings those made when
    /// served late, to unmap with the next UNMAPs: (device, IOVA); together at most a
    /// group (`map_room`); and the MAPs not posted for want of room there.
    abandoned: Group<(u64, DeviceId)>,
    orphans: Group<(DeviceId, u64)>,
    maps_held_back: u64,
    /// Queued UNMAPs confirmed, and waits for completions that never came.
    retired: u64,
    queue_stalls: u64,
    /// In-place UNMAPs the queue (or, per request, the call) did not confirm, each then
    /// made by the call, or its device stopped; and the device stopped, if one was.
    unmap_failures: u64,
    failure: Option<Failure>,
    /// The call the Hal stopped a device by (the queue's, or per request the in-place
    /// memory's): `fence` asks again by it.
    stop_call: CallFn,
    mmio: fn(u64, usize) -> NonNull<u8>,
}

struct HalCell(UnsafeCell<Installed>);

// SAFETY: a driver PD is single-threaded and virtio-drivers calls the Hal from that one
// thread, as the driver calls `Client::stop` (which tells the Hal); nothing touches the
// cell from an interrupt context. (A host test binary that used the Hal in one test
// thread and stopped a device in another would break this: each Hal test is a binary of
// its own.)
unsafe impl Sync for HalCell {}

/// The call before `install_queue` gives one: answered `UnknownOp`, as the IOMMU PD
/// answers what it cannot serve (so an UNMAP made by it is not confirmed).
fn no_call(_label: u64, _mrs: &[u64], _reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
    ErrorCode::UnknownOp as u64
}

fn identity(paddr: u64, _size: usize) -> NonNull<u8> {
    NonNull::new(paddr as *mut u8).expect("MMIO at address 0")
}

static STATE: HalCell = HalCell(UnsafeCell::new(Installed {
    pool: None,
    in_place: None,
    queue: None,
    pending: Group::EMPTY,
    call: no_call,
    premapped: Group::EMPTY,
    abandoned: Group::EMPTY,
    orphans: Group::EMPTY,
    maps_held_back: 0,
    retired: 0,
    queue_stalls: 0,
    unmap_failures: 0,
    failure: None,
    stop_call: no_call,
    mmio: identity,
}));

fn state() -> &'static mut Installed {
    // SAFETY: see `HalCell`: one thread, and no reference outlives a Hal call.
    unsafe { &mut *STATE.0.get() }
}

/// The `Hal` virtio-drivers uses.
#[derive(Debug)]
pub struct IommuHal;

impl IommuHal {
    /// Use `pool` for every DMA allocation and bounce buffer from now on.
    pub fn install(pool: DmaPool) {
        state().pool = Some(pool);
    }

    /// Stop, returning the pool (for the driver to unmap).
    pub fn uninstall() -> Option<DmaPool> {
        state().pool.take()
    }

    /// From now on, share buffers that lie in `memory` in place rather than copying them
    /// through the pool; others are still copied, and so is an in-place buffer whose MAP
    /// is refused (a full quota, say).
    ///
    /// # Safety
    /// `memory.va` must be this PD's mapping of `memory.len` bytes which the driver may let
    /// the device reach while it has them shared: for `Reach::PerRequest`, of the
    /// capability from its offset; for `Reach::Always`, reachable by the device at
    /// `device_addr`.
    pub unsafe fn share_in_place(memory: InPlace) {
        state().in_place = Some(memory);
    }

    /// Stop sharing buffers in place (a queued UNMAP still pending is sent first).
    pub fn stop_sharing_in_place() {
        Self::flush_queue();
        state().in_place = None;
    }

    /// The mapping queue that `Reach::Queued` buffers are mapped and unmapped through, and
    /// the call to the IOMMU PD for an UNMAP the queue does not confirm (and STOP, if the
    /// call does not either).
    ///
    /// Installed again (a driver that starts its queue over) while MAPs given up on are
    /// unanswered: `MapQueue::new` dropped those not taken and skipped the answers of those
    /// served, so the Hal cannot find the mappings they made; it stops their devices (STOP,
    /// every mapping gone, recorded in `failure` as when an UNMAP is not confirmed) rather
    /// than leave them reachable. (Before, the old answers were waited for under the new
    /// queue's tags, which start again at 0: a new entry's answer was taken for one, and
    /// `flush_queue` said true with the late mapping still there:
    /// tests/in_place_queue_again.rs.)
    pub fn install_queue(queue: MapQueue<'static, NotifyFn>, call: CallFn) {
        let st = state();
        st.queue = Some(queue);
        st.call = call;
        let lost = st.abandoned.take_all();
        for (i, (_, device)) in lost.iter().enumerate() {
            if lost.iter().take(i).all(|(_, d)| d != device) {
                let _stopped = stop_recorded(call, device);
            }
        }
    }

    /// Map `buffers` (each with the direction virtio-drivers will share it in) through
    /// the mapping queue ahead of their requests, posted with every UNMAP that buffers
    /// unshared since have left pending, one wake-up of the IOMMU PD for all, and wait
    /// for every completion. Then `share` of each of these buffers returns its mapping
    /// with no wake-up, and its `unshare` leaves its UNMAP pending for the next group (or
    /// `flush_queue`). A buffer whose MAP was refused is mapped at its `share` as usual.
    /// Mappings an earlier group made that were never shared are unmapped here too.
    /// Buffers shared now (a group whose requests are in flight) are left mapped, so this
    /// may run while the device works on them.
    ///
    /// Returns whether every MAP succeeded. Every UNMAP is confirmed when it returns (its
    /// buffer out of the device's reach, and the driver's again), by the queue or the
    /// call, or the device was stopped: then `false`, and from then on (`failure`).
    /// Nothing is posted, and `false`, unless the in-place memory is `Reach::Queued` with a
    /// queue installed and every buffer lies in it, at most `MAX_GROUP` of them.
    pub fn map_queued(buffers: &[(NonNull<[u8]>, BufferDirection)]) -> bool {
        if fence() {
            return false;
        }
        let st = state();
        let Some(memory @ InPlace { reach: Reach::Queued { cap, cap_offset, device }, .. }) = st.in_place else {
            return false;
        };
        if st.queue.is_none() || buffers.len() > MAX_GROUP {
            return false;
        }
        let mut pages = [None; MAX_GROUP];
        let mut maps = [MapArgs { cap, device, offset: cap_offset, len: 0, rights: Rights::READ }; MAX_GROUP];
        for ((page, map), &(buffer, direction)) in pages.iter_mut().zip(&mut maps).zip(buffers) {
            let Some(p) = memory.pages(buffer, direction) else { return false };
            *page = Some(p);
            *map = MapArgs { offset: cap_offset + p.first as u64, len: p.len, rights: p.rights, ..*map };
        }
        let unmaps = pending_unmaps();
        let iovas = queued_exchange(&unmaps, &maps[..buffers.len()], false);
        let st = state();
        for (p, iova) in pages.iter().zip(iovas) {
            if let (Some(p), Some(iova)) = (p, iova) {
                st.premapped.push((*p, device, iova));
            }
        }
        st.failure.is_none() && st.premapped.len() == buffers.len()
    }

    /// Send the UNMAPs queued buffers left pending (and those of mappings `map_queued`
    /// made that were never shared), and wait for them: when it returns each is confirmed,
    /// by the queue or else by the call, or the device was stopped (`failure`), and the
    /// buffers are the driver's again. MAPs given up on earlier are waited for too, and
    /// the mappings they made unmapped. True unless one is still unanswered (the IOMMU PD
    /// may serve it yet, mapping a buffer the driver has taken back) or the Hal stopped
    /// a device (`failure`).
    pub fn flush_queue() -> bool {
        let _fenced = fence();
        // Again while an exchange moved something on: an UNMAP answered, or the late
        // answer of a MAP given up on (its mapping, nobody's, is unmapped too). Each UNMAP
        // is answered once and each such MAP too, so this ends; an exchange that moves
        // nothing on (the IOMMU PD not serving, the ring still full) ends it.
        loop {
            let unmaps = pending_unmaps();
            let st = state();
            let (unanswered, retired, refused) = (st.abandoned.len(), st.retired, st.unmap_failures);
            if unmaps.len() == 0 && unanswered == 0 {
                break;
            }
            queued_exchange(&unmaps, &[], true);
            let st = state();
            if st.abandoned.len() == unanswered && st.retired == retired && st.unmap_failures == refused {
                break;
            }
        }
        let st = state();
        st.failure.is_none() && st.abandoned.len() == 0 && st.pending.len() == 0
    }

    /// Stop `device` (`Client::stop`, through the call `install_queue` gave, or else the
    /// per-request in-place memory's): once the IOMMU confirmed it, the Hal forgets what it
    /// still meant to unmap of it, since every mapping is gone and after a RESUME the same
    /// IOVAs go to new mappings, the pool's included, which an UNMAP sent for an old one
    /// would take (tests/in_place_late_after_stop.rs). The same as a STOP through the
    /// driver's own `Client`, which tells the Hal too (tests/in_place_stop_by_own_client.rs).
    pub fn stop(device: DeviceId) -> Result<u64, ErrorCode> {
        let st = state();
        let call = match st.in_place {
            Some(InPlace { reach: Reach::PerRequest { call, .. }, .. }) if st.queue.is_none() => call,
            _ => st.call,
        };
        Client::new(FnChannel(call)).stop(device)
    }

    /// Why the Hal stopped a device, if it had to: an UNMAP that neither the queue nor the
    /// call confirmed (`Failure`). Kept for as long as this PD runs: `map_queued` and
    /// `flush_queue` answer `false` from then on.
    pub fn failure() -> Option<Failure> {
        state().failure
    }

    /// Queued UNMAPs the IOMMU PD confirmed.
    pub fn retired() -> u64 {
        state().retired
    }

    /// Waits for queue completions that never came (the IOMMU PD not serving).
    pub fn queue_stalls() -> u64 {
        state().queue_stalls
    }

    /// MAPs not posted (their buffers copied through the pool instead) because a group's
    /// worth of MAPs given up on were still unanswered, or their mappings not yet unmapped:
    /// one more could not be tracked were it given up on too. Zero unless the IOMMU PD
    /// stalled.
    pub fn maps_held_back() -> u64 {
        state().maps_held_back
    }

    /// In-place UNMAPs the queue (or, per request, the call) did not confirm at first:
    /// each was then made by the call, or its device stopped (`failure`). Zero unless the
    /// IOMMU PD stalled or the IOMMU failed.
    pub fn unmap_failures() -> u64 {
        state().unmap_failures
    }

    /// How this PD sees a device's MMIO registers (default: identity-mapped).
    pub fn set_mmio_translation(f: fn(u64, usize) -> NonNull<u8>) {
        state().mmio = f;
    }

    /// Pages of the pool in use.
    pub fn pages_in_use() -> usize {
        state().pool.as_ref().map(DmaPool::pages_in_use).unwrap_or(0)
    }

    fn pool() -> &'static mut DmaPool {
        // virtio-drivers' Hal cannot report failure; a driver without a pool is a bug in
        // its start-up, and stopping it is the only safe answer.
        state().pool.as_mut().expect("IommuHal used before IommuHal::install")
    }
}

// SAFETY: allocations are zeroed pool pages the device can reach at the returned IOVA and
// nothing else uses; shared buffers are copied into such pages and back.
unsafe impl Hal for IommuHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        Self::pool().alloc(pages).expect("DMA pool exhausted")
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        Self::pool().free(paddr, pages);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        (state().mmio)(paddr, size)
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let in_place = if fence() { None } else { state().in_place };
        if let Some(iova) = in_place.and_then(|m| m.share(buffer, direction)) {
            return iova;
        }
        let len = buffer.len();
        let (iova, va) = Self::pool().alloc(len.div_ceil(PAGE).max(1)).expect("DMA pool exhausted");
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller's buffer is valid for `len` bytes; the pool pages hold at
            // least that many and do not overlap it.
            unsafe { va.copy_from_nonoverlapping(buffer.cast::<u8>(), len) };
        }
        iova
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let _fenced = fence();
        let len = buffer.len();
        // Not from the pool, so in place: the device wrote the buffer itself, and a
        // per-request mapping goes (in-place addresses never fall in the pool's, since one
        // device's mappings never overlap).
        let page = paddr / PAGE as u64 * PAGE as u64;
        let st = state();
        if st.pool.as_ref().is_none_or(|p| p.index(page).is_none()) {
            if let Some(m) = st.in_place {
                m.unshare(page);
                return;
            }
        }
        let pool = Self::pool();
        if direction != BufferDirection::DriverToDevice {
            if let Some(va) = pool.va_of(paddr) {
                // SAFETY: as in `share`, in the other direction.
                unsafe { buffer.cast::<u8>().copy_from_nonoverlapping(va, len) };
            }
        }
        pool.free(paddr, len.div_ceil(PAGE).max(1));
    }
}
