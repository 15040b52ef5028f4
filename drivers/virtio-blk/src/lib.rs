//! A virtio-blk reader of our own, for more reads in flight than virtio-drivers' `VirtIOBlk`
//! allows: its queue is fixed at 16 descriptors and, without a heap (its `alloc` feature),
//! takes no indirect ones, so at most five reads (three descriptors each) are in flight.
//! `Disk` drives the same virtio-drivers parts `VirtIOBlk` does (the public `Transport` and
//! `queue::VirtQueue`), with a queue of `SIZE` descriptors: no heap, no copy of its code;
//! reads many at once, writes one at a time. What it must never do: hand a buffer back while the device may still write
//! it (`read_blocks_nb`'s contract, which `blk_driver::in_flight::Group` keeps), or set up a queue
//! larger than the device says it takes.
//!
//! Device initialisation follows virtio 1.2 §3.1.1 as `VirtIOBlk::new` does it (reset,
//! ACKNOWLEDGE and DRIVER, the features, FEATURES_OK, the queue, DRIVER_OK), and also
//! checks what `VirtIOBlk` leaves unchecked: that the device offers VIRTIO_F_VERSION_1 (the
//! PCI transport is the modern one) and that it kept FEATURES_OK (§3.1.1 step 6).
//!
//! Hardware-free: tested on the host against a model of a virtio-blk device
//! (`tests/disk.rs`); `pds/blk-driver` runs it on `IommuHal` and virtio-drivers'
//! `PciTransport` (`blk_driver::Wide`).
#![cfg_attr(not(test), no_std)]

use virtio_drivers::device::blk::SECTOR_SIZE;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_drivers::{Error, Hal, PAGE_SIZE};

/// The request queue (virtio 1.2 §5.2.2: requestq1).
const QUEUE: u16 = 0;

/// Feature bits (virtio 1.2 §5.2.3 and §6): the only ones this reader accepts. Not
/// VIRTIO_F_INDIRECT_DESC (indirect tables need memory per request: virtio-drivers takes
/// them from a heap), nor FLUSH (it does not write). VIRTIO_F_ACCESS_PLATFORM, because it
/// is true: the device's addresses go through the SMMU, never straight to memory; and a
/// device behind an IOMMU may refuse FEATURES_OK without it (QEMU's does, with
/// `iommu_platform=on`: `virtio_validate_features`), which `VirtIOBlk` never checks.
const VIRTIO_BLK_F_RO: u64 = 1 << 5;
const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;
const ACCEPTED: u64 = VIRTIO_BLK_F_RO | VIRTIO_F_EVENT_IDX | VIRTIO_F_VERSION_1 | VIRTIO_F_ACCESS_PLATFORM;

/// `struct virtio_blk_req`'s header (virtio 1.2 §5.2.6): `type` (VIRTIO_BLK_T_IN, 0, or
/// VIRTIO_BLK_T_OUT, 1), a reserved word, `sector`, little-endian: what the device reads.
pub type Header = [u8; 16];
const VIRTIO_BLK_T_OUT: u32 = 1;
/// The status byte the device writes last (§5.2.6: VIRTIO_BLK_S_OK is 0).
pub type Status = [u8; 1];
/// A status no device writes, put there before each request so that one the device never
/// completed is not taken for VIRTIO_BLK_S_OK.
pub const UNWRITTEN: Status = [0xff];

/// A read's header for `sector`.
pub fn read_header(sector: u64) -> Header {
    let mut h = [0; 16];
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

/// A write's header for `sector`.
fn write_header(sector: u64) -> Header {
    let mut h = read_header(sector);
    h[..4].copy_from_slice(&VIRTIO_BLK_T_OUT.to_le_bytes());
    h
}

/// What a completed request's status byte says, as virtio-drivers' errors (§5.2.6:
/// VIRTIO_BLK_S_IOERR 1, UNSUPP 2; anything else, never written included, an I/O error).
pub fn status_result(status: Status) -> Result<(), Error> {
    match status[0] {
        0 => Ok(()),
        2 => Err(Error::Unsupported),
        _ => Err(Error::IoError),
    }
}

/// Why a disk could not be opened; the device is left reset or failed, not live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// The device does not offer VIRTIO_F_VERSION_1.
    NotModern,
    /// The device cleared FEATURES_OK: it does not take the features accepted.
    FeaturesRefused,
    /// The device's request queue holds fewer descriptors than this reader's `SIZE`.
    QueueTooSmall { device: u32 },
    /// The queue could not be set up (virtio-drivers' error: no DMA memory, say).
    Queue(Error),
    /// The configuration space could not be read.
    Config(Error),
}

/// A virtio-blk device, read through one request queue of `SIZE` descriptors (a power of
/// two), so `SIZE / 3` reads in flight at most (a read takes three: header, data, status).
pub struct Disk<H: Hal, T: Transport, const SIZE: usize> {
    // Dropped first: a transport resets its device when dropped (virtio-drivers'
    // `PciTransport`), so the queue's memory is freed only once the device stopped using it.
    transport: T,
    queue: VirtQueue<H, SIZE>,
    capacity: u64,
}

impl<H: Hal, T: Transport, const SIZE: usize> Disk<H, T, SIZE> {
    /// The most reads in flight at once.
    pub const MAX_IN_FLIGHT: usize = SIZE / 3;

    /// Initialise the device behind `transport` (virtio 1.2 §3.1.1) with a request queue of
    /// `SIZE` descriptors, taken from `H`'s DMA memory. On an error the device is marked
    /// FAILED where it got past feature negotiation, and the transport dropped (reset).
    pub fn new(mut transport: T) -> Result<Self, OpenError> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        if offered & VIRTIO_F_VERSION_1 == 0 {
            transport.set_status(DeviceStatus::FAILED);
            return Err(OpenError::NotModern);
        }
        let features = offered & ACCEPTED;
        transport.write_driver_features(features);
        let negotiated = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK;
        transport.set_status(negotiated);
        let failed = |mut t: T, e| {
            t.set_status(negotiated | DeviceStatus::FAILED);
            Err(e)
        };
        if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
            return failed(transport, OpenError::FeaturesRefused);
        }
        transport.set_guest_page_size(PAGE_SIZE as u32);
        // §5.2.4: `capacity`, a 64-bit count of sectors at offset 0, read as two words
        // under one configuration generation.
        let capacity = transport.read_consistent(|| {
            let low: u32 = transport.read_config_space(0)?;
            let high: u32 = transport.read_config_space(4)?;
            Ok(u64::from(low) | u64::from(high) << 32)
        });
        let capacity = match capacity {
            Ok(c) => c,
            Err(e) => return failed(transport, OpenError::Config(e)),
        };
        let device = transport.max_queue_size(QUEUE);
        if device < SIZE as u32 {
            return failed(transport, OpenError::QueueTooSmall { device });
        }
        let queue = match VirtQueue::new(&mut transport, QUEUE, false, features & VIRTIO_F_EVENT_IDX != 0) {
            Ok(q) => q,
            Err(e) => return failed(transport, OpenError::Queue(e)),
        };
        transport.finish_init();
        Ok(Disk { transport, queue, capacity })
    }

    /// The device's capacity, in sectors of `SECTOR_SIZE` bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Read `buf` (a non-zero multiple of `SECTOR_SIZE`) from `sector`, one request in
    /// flight, waiting for it as `VirtIOBlk::read_blocks` does (virtio-drivers'
    /// `add_notify_wait_pop`, with no bound: callers that need one poll `peek_used`, as `blk_driver::in_flight::Group` does).
    /// Refused (`InvalidParam`), nothing submitted, for a buffer of another size, or with
    /// another request in flight (its completion would be taken for this one's).
    pub fn read_blocks(&mut self, sector: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.check_one_request(buf.len())?;
        let header = read_header(sector as u64);
        let mut status = UNWRITTEN;
        self.queue.add_notify_wait_pop(&[&header], &mut [buf, &mut status], &mut self.transport)?;
        status_result(status)
    }

    /// Write `buf` (a non-zero multiple of `SECTOR_SIZE`) to `sector`, one request in flight,
    /// waiting as `read_blocks` does; refused (`InvalidParam`), nothing submitted, as
    /// `read_blocks` refuses. The device only reads `buf`.
    pub fn write_blocks(&mut self, sector: usize, buf: &[u8]) -> Result<(), Error> {
        self.check_one_request(buf.len())?;
        let header = write_header(sector as u64);
        let mut status = UNWRITTEN;
        self.queue.add_notify_wait_pop(&[&header, buf], &mut [&mut status], &mut self.transport)?;
        status_result(status)
    }

    /// The device's status register (virtio 1.2 §2.1): DEVICE_NEEDS_RESET set once the
    /// device met an error it cannot go on from (QEMU: a buffer it could not reach).
    pub fn status(&self) -> DeviceStatus {
        self.transport.get_status()
    }

    /// Whether a request of `len` bytes may go as the only one in flight: whole sectors,
    /// and no other request in flight (its completion would be taken for this one's).
    fn check_one_request(&self, len: usize) -> Result<(), Error> {
        if len == 0 || len % SECTOR_SIZE != 0 || self.queue.available_desc() < SIZE {
            return Err(Error::InvalidParam);
        }
        Ok(())
    }

    /// Submit a read of `buf` from `sector` and return at once: the token `peek_used`
    /// answers with once the device is done. `QueueFull` if fewer than three descriptors
    /// are free; `InvalidParam` for a buffer that is empty or not whole sectors.
    ///
    /// # Safety
    /// `header`, `buf` and `status` stay borrowed by the device until `complete_read_blocks`
    /// with this token succeeds (or the device is reset, by dropping the `Disk`): the caller
    /// must not move, touch or free them before.
    pub unsafe fn read_blocks_nb(
        &mut self,
        sector: usize,
        header: &mut Header,
        buf: &mut [u8],
        status: &mut Status,
    ) -> Result<u16, Error> {
        if buf.is_empty() || buf.len() % SECTOR_SIZE != 0 {
            return Err(Error::InvalidParam);
        }
        *header = read_header(sector as u64);
        *status = UNWRITTEN;
        // SAFETY: the caller keeps the three buffers alive and untouched until the token is
        // popped (this function's contract).
        let token = unsafe { self.queue.add(&[&header[..]], &mut [buf, &mut status[..]])? };
        if self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
        Ok(token)
    }

    /// The token of the next request the device handed back, if any, not taken.
    pub fn peek_used(&self) -> Option<u16> {
        self.queue.peek_used()
    }

    /// Take back the request `token` (it must be `peek_used`'s answer), and its status.
    ///
    /// # Safety
    /// `header`, `buf` and `status` must be those `read_blocks_nb` was given for `token`.
    pub unsafe fn complete_read_blocks(
        &mut self,
        token: u16,
        header: &Header,
        buf: &mut [u8],
        status: &mut Status,
    ) -> Result<(), Error> {
        // SAFETY: the same buffers as the request was added with (this function's
        // contract); `pop_used` checks that `token` is the next used one.
        unsafe { self.queue.pop_used(token, &[&header[..]], &mut [buf, &mut status[..]])? };
        status_result(*status)
    }
}

impl<H: Hal, T: Transport, const SIZE: usize> core::fmt::Debug for Disk<H, T, SIZE> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Disk")
            .field("capacity", &self.capacity)
            .field("free_descriptors", &self.queue.available_desc())
            .finish_non_exhaustive()
    }
}

impl<H: Hal, T: Transport, const SIZE: usize> Drop for Disk<H, T, SIZE> {
    fn drop(&mut self) {
        // As `VirtIOBlk` does: a transport that can forget the queue's addresses does so
        // before its memory goes (PCI cannot: its transport resets the device instead).
        self.transport.queue_unset(QUEUE);
    }
}
