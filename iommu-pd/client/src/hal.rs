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
    /// confirmed): the device reaches a buffer only while its request is in flight, for
    /// two calls to the IOMMU PD per buffer.
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
    /// All of it, all the time, at `device_addr`: mapped once (a MAP the driver made), or
    /// by physical address for a stream in bypass. No call per buffer; the device can
    /// reach every buffer in it at any time.
    Always {
        /// Where the device sees `va`.
        device_addr: u64,
    },
}

impl InPlace {
    /// Where the device reaches `buffer`, if it lies in this memory (mapping it first
    /// when mapped per request).
    fn share(&self, buffer: NonNull<[u8]>, direction: BufferDirection) -> Option<u64> {
        let start = (buffer.cast::<u8>().as_ptr() as usize).checked_sub(self.va.as_ptr() as usize)?;
        let end = start.checked_add(buffer.len())?;
        if end > self.len || buffer.is_empty() {
            return None;
        }
        let (cap, cap_offset, device, call) = match self.reach {
            Reach::Always { device_addr } => return Some(device_addr + start as u64),
            Reach::PerRequest { cap, cap_offset, device, call } => (cap, cap_offset, device, call),
        };
        let first = start / PAGE * PAGE;
        let len = (end.div_ceil(PAGE) * PAGE - first) as u64;
        // Stage-1 tables cannot say write-only, so a buffer the device writes is mapped
        // read/write; one it only reads is mapped read-only.
        let rights = if direction == BufferDirection::DriverToDevice { Rights::READ } else { Rights::READ_WRITE };
        let iova = Client::new(FnChannel(call)).map(cap, device, cap_offset + first as u64, len, None, rights).ok()?;
        Some(iova + (start - first) as u64)
    }

    /// The device is done with the buffer whose first page it reaches at `page`: unmap it
    /// if it was mapped for the request. False if the IOMMU PD did not confirm the UNMAP.
    fn unshare(&self, page: u64) -> bool {
        match self.reach {
            Reach::PerRequest { device, call, .. } => Client::new(FnChannel(call)).unmap(device, &[page]).is_ok(),
            Reach::Always { .. } => true,
        }
    }
}

struct Installed {
    pool: Option<DmaPool>,
    in_place: Option<InPlace>,
    /// In-place UNMAPs the IOMMU PD did not confirm (it blocks the device when that
    /// happens, so the buffer is safe, but the driver should know).
    unmap_failures: u64,
    mmio: fn(u64, usize) -> NonNull<u8>,
}

struct HalCell(UnsafeCell<Installed>);

// SAFETY: a driver PD is single-threaded and virtio-drivers calls the Hal from that one
// thread; nothing touches the cell from an interrupt context.
unsafe impl Sync for HalCell {}

fn identity(paddr: u64, _size: usize) -> NonNull<u8> {
    NonNull::new(paddr as *mut u8).expect("MMIO at address 0")
}

static STATE: HalCell =
    HalCell(UnsafeCell::new(Installed { pool: None, in_place: None, unmap_failures: 0, mmio: identity }));

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

    /// Stop sharing buffers in place.
    pub fn stop_sharing_in_place() {
        state().in_place = None;
    }

    /// In-place UNMAPs the IOMMU PD did not confirm.
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
        if let Some(iova) = state().in_place.and_then(|m| m.share(buffer, direction)) {
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
        let len = buffer.len();
        // Not from the pool, so in place: the device wrote the buffer itself, and a
        // per-request mapping goes (in-place addresses never fall in the pool's, since one
        // device's mappings never overlap).
        let page = paddr / PAGE as u64 * PAGE as u64;
        let st = state();
        if st.pool.as_ref().is_none_or(|p| p.index(page).is_none()) {
            if let Some(m) = st.in_place {
                if !m.unshare(page) {
                    st.unmap_failures += 1;
                }
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
