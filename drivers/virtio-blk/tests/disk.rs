//! `Disk` against a model of a virtio-blk device behind a fake transport: what it
//! negotiates (virtio 1.2 §3.1.1, §6), what the device reads and writes through its queue
//! (§2.7 split virtqueues, §5.2.6 requests), and what it answers. The device model is
//! written from the specification, not from virtio-drivers: it walks the descriptor table
//! and the available ring at the addresses `queue_set` gave, fills each read's buffer with
//! the disk's contents (each 64-bit word its own byte offset, as blk-bench's file) and
//! writes the status byte, then the used ring, in whatever order a test asks.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use virtio_blk_reader::{Disk, OpenError, UNWRITTEN};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Error, Hal, PhysAddr, PAGE_SIZE};

const VERSION_1: u64 = 1 << 32;
const ACCESS_PLATFORM: u64 = 1 << 33;
const EVENT_IDX: u64 = 1 << 29;
const INDIRECT_DESC: u64 = 1 << 28;
const FLUSH: u64 = 1 << 9;
const RO: u64 = 1 << 5;
/// What QEMU's virtio-blk-pci with `iommu_platform=on` offers, as far as this reader cares.
const QEMU_LIKE: u64 = VERSION_1 | ACCESS_PLATFORM | EVENT_IDX | INDIRECT_DESC | FLUSH;
const CHUNK: usize = 64 << 10;
const SIZE: usize = 64;

/// Identity-mapped DMA: the "physical" address the device sees is the host pointer.
struct HostHal;

// SAFETY: allocations are page-aligned, zeroed and freed once; share hands the device the
// buffer's own address, valid while the driver keeps it shared.
unsafe impl Hal for HostHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap();
        // SAFETY: a non-zero size.
        let p = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
        (p.as_ptr() as PhysAddr, p)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: allocated by `dma_alloc` with this layout.
        unsafe { dealloc(vaddr.as_ptr(), Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).unwrap()) };
        0
    }

    unsafe fn mmio_phys_to_virt(_paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        unreachable!("the fake transport has no MMIO")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// The device's state, shared between the test and the transport the `Disk` owns.
#[derive(Default)]
struct Device {
    offered: u64,
    /// Features the device refuses FEATURES_OK without (QEMU: ACCESS_PLATFORM).
    required: u64,
    accepted: u64,
    status: u32,
    max_queue: u32,
    /// The queue as `queue_set` gave it: (size, descriptors, driver area, device area).
    queue: Option<(u16, u64, u64, u64)>,
    next_avail: u16,
    next_used: u16,
    /// Heads of requests taken from the available ring, not yet completed.
    taken: Vec<u16>,
    /// Complete every request as soon as it is notified (one in flight).
    at_once: bool,
    /// The status byte written; `None`: left unwritten.
    status_byte: Option<u8>,
    /// Each completed request's (sector, bytes written).
    served: Vec<(u64, usize)>,
    /// Each completed write's (sector, the bytes the device read from the driver).
    stored: Vec<(u64, Vec<u8>)>,
}

impl Device {
    fn new(offered: u64) -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Device { offered, max_queue: 256, status_byte: Some(0), ..Device::default() }))
    }

    /// Take what the driver made available since last time (§2.7.13: avail ring at the
    /// driver area: flags, idx, ring[size]).
    fn take_available(&mut self) {
        let (size, _, avail, _) = self.queue.expect("notified before the queue was set");
        // SAFETY: the driver area the driver gave, 2-byte aligned, alive while the queue is.
        let idx = unsafe { &*((avail + 2) as *const AtomicU16) }.load(Ordering::Acquire);
        while self.next_avail != idx {
            let slot = (self.next_avail % size) as u64;
            // SAFETY: inside the ring of `size` entries.
            let head = unsafe { *((avail + 4 + 2 * slot) as *const u16) };
            self.taken.push(head);
            self.next_avail = self.next_avail.wrapping_add(1);
        }
    }

    /// Serve the request at `head` (§5.2.6): the header read, the data and status written,
    /// then the used ring (§2.7.14: flags, idx, ring[size] of {id u32, len u32}).
    fn complete(&mut self, head: u16) {
        self.taken.retain(|&h| h != head);
        let (size, desc, _, used) = self.queue.unwrap();
        let d = |i: u16| {
            let at = desc + 16 * u64::from(i);
            // SAFETY: inside the descriptor table of `size` entries.
            unsafe {
                (*(at as *const u64), *((at + 8) as *const u32), *((at + 12) as *const u16), *((at + 14) as *const u16))
            }
        };
        let (hdr, hdr_len, mut flags, mut next) = d(head);
        assert_eq!((hdr_len, flags & 2), (16, 0), "the header: 16 bytes, read by the device");
        // SAFETY: the header the driver shared, 16 bytes, at any alignment.
        let (kind, sector) =
            unsafe { ((hdr as *const u32).read_unaligned(), ((hdr + 8) as *const u64).read_unaligned()) };
        assert!(kind <= 1, "VIRTIO_BLK_T_IN or VIRTIO_BLK_T_OUT");
        let (mut written, mut offset) = (0usize, sector as usize * 512);
        let mut parts = vec![];
        while flags & 1 != 0 {
            let (addr, len, f, n) = d(next);
            // A write's data the device reads; every other buffer it writes (§5.2.6).
            let last = f & 1 == 0;
            assert_eq!(f & 2 != 0, kind == 0 || last, "who writes each buffer after the header");
            parts.push((addr, len as usize));
            (flags, next) = (f, n);
        }
        if kind == 1 {
            let (status_addr, _) = *parts.last().expect("a status byte");
            let mut data = vec![];
            for &(addr, len) in &parts[..parts.len() - 1] {
                // SAFETY: inside the buffer the driver shared for the device to read.
                data.extend_from_slice(unsafe { core::slice::from_raw_parts(addr as *const u8, len) });
            }
            self.stored.push((sector, data));
            parts = vec![(status_addr, 1)];
        }
        let (status_addr, status_len) = parts.pop().expect("a status byte");
        assert_eq!(status_len, 1);
        for (addr, len) in parts {
            for w in 0..len / 8 {
                // SAFETY: inside the buffer the driver shared for the device to write.
                unsafe { ((addr as usize + 8 * w) as *mut u64).write_unaligned((offset + 8 * w) as u64) };
            }
            offset += len;
            written += len;
        }
        if let Some(b) = self.status_byte {
            // SAFETY: the status byte the driver shared.
            unsafe { *(status_addr as *mut u8) = b };
            written += 1;
        }
        self.served.push((sector, written));
        let slot = u64::from(self.next_used % size);
        // SAFETY: inside the used ring of `size` entries.
        unsafe {
            *((used + 4 + 8 * slot) as *mut u32) = u32::from(head);
            *((used + 8 + 8 * slot) as *mut u32) = written as u32;
        }
        self.next_used = self.next_used.wrapping_add(1);
        // SAFETY: the used ring's idx, 2-byte aligned.
        unsafe { &*((used + 2) as *const AtomicU16) }.store(self.next_used, Ordering::Release);
    }
}

struct FakeTransport(Rc<RefCell<Device>>);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Block
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.borrow().offered
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.borrow_mut().accepted = driver_features;
    }
    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        self.0.borrow().max_queue
    }
    fn notify(&mut self, _queue: u16) {
        let mut d = self.0.borrow_mut();
        d.take_available();
        if d.at_once {
            while let Some(&h) = d.taken.first() {
                d.complete(h);
            }
        }
    }
    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(self.0.borrow().status)
    }
    fn set_status(&mut self, status: DeviceStatus) {
        let mut d = self.0.borrow_mut();
        let mut s = status.bits();
        // §3.1.1 step 6: the device clears FEATURES_OK for features it cannot work with.
        let ok = d.accepted & !d.offered == 0 && d.accepted & d.required == d.required;
        if !ok {
            s &= !DeviceStatus::FEATURES_OK.bits();
        }
        d.status = s;
    }
    fn set_guest_page_size(&mut self, _guest_page_size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(
        &mut self,
        _queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0.borrow_mut().queue = Some((size as u16, descriptors, driver_area, device_area));
    }
    fn queue_unset(&mut self, _queue: u16) {
        self.0.borrow_mut().queue = None;
    }
    fn queue_used(&mut self, _queue: u16) -> bool {
        self.0.borrow().queue.is_some()
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }
    fn read_config_generation(&self) -> u32 {
        0
    }
    fn read_config_space<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        // §5.2.4: capacity, 0x2_0000_0800 sectors (a high word, to see both read).
        let capacity: u64 = 0x2_0000_0800;
        let bytes = capacity.to_le_bytes();
        T::read_from_prefix(bytes.get(offset..).ok_or(Error::ConfigSpaceTooSmall)?)
            .map(|(t, _)| t)
            .map_err(|_| Error::ConfigSpaceTooSmall)
    }
    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        _offset: usize,
        _value: T,
    ) -> virtio_drivers::Result<()> {
        unreachable!("a reader writes no configuration")
    }
}

type TestDisk = Disk<HostHal, FakeTransport, SIZE>;

fn open(offered: u64) -> (Rc<RefCell<Device>>, Result<TestDisk, OpenError>) {
    let dev = Device::new(offered);
    let disk = TestDisk::new(FakeTransport(dev.clone()));
    (dev, disk)
}

/// Whether `buf` holds the disk's bytes from `sector` (each word its own offset).
fn right(buf: &[u8], sector: usize) -> bool {
    buf.chunks_exact(8)
        .enumerate()
        .all(|(i, w)| u64::from_le_bytes(w.try_into().unwrap()) == (sector * 512 + 8 * i) as u64)
}

#[test]
fn a_device_behind_an_iommu_is_opened_with_access_platform_and_nothing_it_cannot_use() {
    let dev = Device::new(QEMU_LIKE | RO);
    // As QEMU's virtio-blk with iommu_platform=on: no FEATURES_OK without ACCESS_PLATFORM.
    dev.borrow_mut().required = ACCESS_PLATFORM;
    let disk = TestDisk::new(FakeTransport(dev.clone())).expect("opened");
    let d = dev.borrow();
    assert_eq!(d.accepted, VERSION_1 | ACCESS_PLATFORM | EVENT_IDX | RO, "no indirect descriptors, no flush");
    let all = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK;
    assert_eq!(d.status, all.bits());
    assert_eq!(d.queue.map(|q| q.0), Some(SIZE as u16));
    assert_eq!(disk.capacity(), 0x2_0000_0800);
}

#[test]
fn a_device_that_clears_features_ok_is_refused_and_marked_failed() {
    let dev = Device::new(QEMU_LIKE | (1 << 34));
    dev.borrow_mut().required = 1 << 34;
    let r = TestDisk::new(FakeTransport(dev.clone()));
    assert_eq!(r.err(), Some(OpenError::FeaturesRefused));
    let d = dev.borrow();
    assert!(d.status & DeviceStatus::FAILED.bits() != 0 && d.status & DeviceStatus::DRIVER_OK.bits() == 0);
    assert!(d.queue.is_none(), "no queue set up");
}

#[test]
fn a_legacy_only_device_is_refused() {
    let (dev, r) = open(EVENT_IDX);
    assert_eq!(r.err(), Some(OpenError::NotModern));
    assert_eq!(dev.borrow().status, DeviceStatus::FAILED.bits());
}

#[test]
fn a_device_queue_smaller_than_size_is_refused_before_any_is_set_up() {
    let dev = Device::new(QEMU_LIKE);
    dev.borrow_mut().max_queue = 32;
    let r = TestDisk::new(FakeTransport(dev.clone()));
    assert_eq!(r.err(), Some(OpenError::QueueTooSmall { device: 32 }));
    let d = dev.borrow();
    assert!(d.queue.is_none() && d.status & DeviceStatus::DRIVER_OK.bits() == 0);
}

#[test]
fn sixteen_reads_in_flight_come_back_in_any_order_each_with_its_own_data() {
    let (dev, disk) = open(QEMU_LIKE);
    let mut disk = disk.unwrap();
    let mut bufs = vec![vec![0xa5u8; CHUNK]; 16];
    let mut headers = [[0u8; 16]; 16];
    let mut statuses = [UNWRITTEN; 16];
    let sector = |i: usize| 2048 + i * (CHUNK / 512);
    let mut tokens = vec![];
    for (i, ((buf, h), s)) in bufs.iter_mut().zip(&mut headers).zip(&mut statuses).enumerate() {
        // SAFETY: the buffers outlive the requests, completed below before any is touched.
        tokens.push(unsafe { disk.read_blocks_nb(sector(i), h, buf, s) }.unwrap());
    }
    assert_eq!(dev.borrow().taken.len(), 16, "the device sees all sixteen before any completes");
    assert_eq!(disk.peek_used(), None);
    // The device serves them last first.
    let order: Vec<u16> = dev.borrow().taken.iter().rev().copied().collect();
    for head in order {
        dev.borrow_mut().complete(head);
    }
    for _ in 0..16 {
        let token = disk.peek_used().expect("one handed back");
        let i = tokens.iter().position(|&t| t == token).expect("one of ours");
        // SAFETY: the same header, buffer and status as submitted for `token`.
        unsafe { disk.complete_read_blocks(token, &headers[i], &mut bufs[i], &mut statuses[i]) }.unwrap();
        assert!(right(&bufs[i], sector(i)), "read {i} holds its own sectors");
    }
    assert_eq!(disk.peek_used(), None);
    let served = dev.borrow().served.clone();
    assert_eq!(served.len(), 16);
    assert!(served.iter().all(|&(_, n)| n == CHUNK + 1));
    // Every descriptor is free again: sixteen more fit.
    assert_eq!(format!("{disk:?}"), "Disk { capacity: 8589936640, free_descriptors: 64, .. }");
}

#[test]
fn the_read_past_what_the_queue_holds_is_refused_and_the_others_still_complete() {
    let (dev, disk) = open(QEMU_LIKE);
    let mut disk = disk.unwrap();
    let n = TestDisk::MAX_IN_FLIGHT;
    assert_eq!(n, 21);
    let mut bufs = vec![vec![0u8; 512]; n + 1];
    let mut headers = vec![[0u8; 16]; n + 1];
    let mut statuses = vec![UNWRITTEN; n + 1];
    let mut results = vec![];
    for (i, ((buf, h), s)) in bufs.iter_mut().zip(&mut headers).zip(&mut statuses).enumerate() {
        // SAFETY: as above; the refused one is never handed to the device.
        results.push(unsafe { disk.read_blocks_nb(i, h, buf, s) });
    }
    assert!(results[..n].iter().all(Result::is_ok));
    assert_eq!(results[n], Err(Error::QueueFull));
    assert_eq!(dev.borrow().taken.len(), n, "the device never saw the refused one");
    let taken = dev.borrow().taken.clone();
    for head in taken {
        dev.borrow_mut().complete(head);
    }
    for i in 0..n {
        let token = disk.peek_used().unwrap();
        assert_eq!(Ok(token), results[i]);
        // SAFETY: as submitted.
        unsafe { disk.complete_read_blocks(token, &headers[i], &mut bufs[i], &mut statuses[i]) }.unwrap();
        assert!(right(&bufs[i], i));
    }
}

#[test]
fn a_status_other_than_ok_or_none_at_all_is_an_error() {
    for (byte, want) in
        [(Some(1), Error::IoError), (Some(2), Error::Unsupported), (Some(7), Error::IoError), (None, Error::IoError)]
    {
        let (dev, disk) = open(QEMU_LIKE);
        let mut disk = disk.unwrap();
        dev.borrow_mut().status_byte = byte;
        let (mut buf, mut h, mut s) = (vec![0u8; 512], [0u8; 16], [0u8]);
        // SAFETY: completed below.
        let token = unsafe { disk.read_blocks_nb(0, &mut h, &mut buf, &mut s) }.unwrap();
        let head = dev.borrow().taken[0];
        dev.borrow_mut().complete(head);
        // SAFETY: as submitted.
        let r = unsafe { disk.complete_read_blocks(token, &h, &mut buf, &mut s) };
        assert_eq!(r, Err(want), "status {byte:?}");
    }
}

#[test]
fn one_read_at_a_time_as_virtio_drivers_reads_and_not_beside_another() {
    let (dev, disk) = open(QEMU_LIKE);
    let mut disk = disk.unwrap();
    dev.borrow_mut().at_once = true;
    let mut buf = vec![0u8; CHUNK];
    assert_eq!(disk.read_blocks(4096, &mut buf), Ok(()));
    assert!(right(&buf, 4096));
    assert_eq!(disk.read_blocks(0, &mut buf[..100]), Err(Error::InvalidParam), "not whole sectors");
    // With one read in flight, the blocking read would take its completion for its own.
    dev.borrow_mut().at_once = false;
    let (mut other, mut h, mut s) = (vec![0u8; 512], [0u8; 16], [0u8]);
    // SAFETY: completed below.
    let token = unsafe { disk.read_blocks_nb(0, &mut h, &mut other, &mut s) }.unwrap();
    assert_eq!(disk.read_blocks(8, &mut buf), Err(Error::InvalidParam));
    assert_eq!(dev.borrow().served.len(), 1, "nothing more submitted");
    let head = dev.borrow().taken[0];
    dev.borrow_mut().complete(head);
    // SAFETY: as submitted.
    unsafe { disk.complete_read_blocks(token, &h, &mut other, &mut s) }.unwrap();
    assert!(right(&other, 0));
}

#[test]
fn a_write_reaches_the_device_as_one_out_request_with_its_bytes() {
    let (dev, disk) = open(QEMU_LIKE);
    let mut disk = disk.unwrap();
    dev.borrow_mut().at_once = true;
    let data: Vec<u8> = (0..1024u32).map(|i| (i as u8).wrapping_mul(13) ^ 0x3c).collect();
    assert_eq!(disk.write_blocks(7, &data), Ok(()));
    let d = dev.borrow();
    assert_eq!(d.stored, vec![(7, data.clone())], "the device read the two sectors at sector 7");
    assert_eq!(d.served, vec![(7, 1)], "and wrote only the status byte");
    drop(d);
    assert_eq!(disk.write_blocks(7, &data[..100]), Err(Error::InvalidParam), "not whole sectors");
    dev.borrow_mut().status_byte = Some(1);
    assert_eq!(disk.write_blocks(8, &data), Err(Error::IoError), "VIRTIO_BLK_S_IOERR");
    assert_eq!(dev.borrow().stored.len(), 2, "the refused write never reached the device");
}
