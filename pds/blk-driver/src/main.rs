//! A virtio-blk driver PD: the reader of `drivers/virtio-blk` (`blk_driver::Wide`, which
//! negotiates VIRTIO_F_ACCESS_PLATFORM and checks FEATURES_OK) on virtio-drivers' PCI
//! transport and `IommuHal`, so its DMA pool is mapped through the IOMMU PD (one MAP) and
//! the device reaches nothing else. When the edu driver lends it a page (GRANT), it maps
//! the page for its disk and writes it to the disk in place, then hands it back; after the
//! REVOKE the handle is dead, and the disk is sent to an IOVA it was never given: the SMMU
//! refuses that, a fault attributed to the disk.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use blk_driver::{place_device, Wide};
use client_channel::Ppc;
use iommu_client::hal::{DmaPool, InPlace, IommuHal, Reach};
use iommu_client::Client;
use iommu_protocol::{DeviceId, Handle, Op, Rights};
use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, Channel, Handler, Infallible};
use virtio_drivers::device::blk::SECTOR_SIZE;
use virtio_drivers::transport::DeviceStatus;

const IOMMU: Channel = Channel::new(0);
/// To and from the edu driver: "a page is lent", "done with it", "taken back".
const EDU: Channel = Channel::new(1);
const POOL_PAGES: usize = 32;
/// Its device in the policy (after the two edu devices).
const MY_DEVICE: DeviceId = DeviceId(2);
/// An IOVA this PD never maps for its disk: 1 MiB past its pool's (0x1_0000_0000, 128 KiB),
/// beyond where a lent page goes.
const UNMAPPED_IOVA: u64 = 0x1_0010_0000;
/// Reads of the device's status or used ring before the check stops waiting (a count,
/// not a time: QEMU serves the request within the notify's register write).
const POLLS: u32 = 1_000_000;

#[protection_domain]
fn init() -> BlkDriver {
    // What the probe costs now that configuration space is the IOMMU PD's: every
    // register access is a call (timed with the pool's MAP and the device's reset and
    // queue set-up, which the probe includes).
    let start = generic_timer::ticks();
    let mut root = place_device(IOMMU, MY_DEVICE);

    let pool_va: NonNull<u8> = memory_region_symbol!(dma_pool: *mut u8);
    let mut client = Client::new(Ppc(IOMMU));
    // SAFETY: the pool region is this PD's, mapped at `dma_pool`, used for nothing else.
    let pool = match unsafe { DmaPool::map(&mut client, Handle(0), 0, MY_DEVICE, pool_va, POOL_PAGES) } {
        Ok(p) => p,
        Err(e) => {
            debug_println!("blk-driver: the IOMMU PD refused the pool: {e}");
            return BlkDriver::default();
        }
    };
    debug_println!("blk-driver: DMA pool ({POOL_PAGES} pages) mapped once at iova {:#x}", pool.iova());
    IommuHal::install(pool);
    let mut blk = match blk_driver::open(&mut root) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("blk-driver: the disk did not open: {e:?}");
            return BlkDriver::default();
        }
    };
    let took = generic_timer::ticks() - start;
    // Read back, not assumed: a device that clears FEATURES_OK never reaches DRIVER_OK, and
    // QEMU serves its queue all the same (virtio-drivers' `VirtIOBlk` went on so).
    let status = blk.status();
    debug_println!(
        "blk-driver: the disk's status after opening: FEATURES_OK {}, DRIVER_OK {}",
        status.contains(DeviceStatus::FEATURES_OK),
        status.contains(DeviceStatus::DRIVER_OK)
    );
    debug_println!(
        "blk-driver: probe through the IOMMU PD: {} CONFIG_READ and {} CONFIG_WRITE calls, {} us in all",
        client_channel::calls(Op::ConfigRead),
        client_channel::calls(Op::ConfigWrite),
        u128::from(took) * 1_000_000 / u128::from(generic_timer::hz().max(1))
    );
    let mut sector = [0u8; SECTOR_SIZE];
    let r = blk.read_blocks(0, &mut sector);
    let label = b"microkit-iommu test disk";
    debug_println!(
        "blk-driver: read sector 0 ({r:?}): \"{}\"",
        core::str::from_utf8(&sector[..label.len()]).unwrap_or("(not text)")
    );
    let mut pattern = [0u8; SECTOR_SIZE];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13) ^ 0x3c;
    }
    let w = blk.write_blocks(1, &pattern);
    let mut back = [0u8; SECTOR_SIZE];
    let r = blk.read_blocks(1, &mut back);
    debug_println!(
        "blk-driver: wrote and read back sector 1: {}",
        if w.is_ok() && r.is_ok() && back == pattern { "same data" } else { "DIFFERENT" }
    );
    let q = client.query();
    debug_println!("blk-driver: mappings held: {:?} (no MAP or UNMAP per request)", q.map(|q| q[0]));
    BlkDriver { blk: Some(blk), lent: None }
}

#[derive(Default)]
struct BlkDriver {
    blk: Option<Wide>,
    /// The handle of the page the edu driver lent, once it was used.
    lent: Option<Handle>,
}

impl BlkDriver {
    /// The edu driver lent a page: map it for the disk, read-only, and write it to sector
    /// 2 in place (the disk reads the page itself); read the sector back to check.
    fn write_lent_page(&mut self) {
        let handoff: NonNull<u64> = memory_region_symbol!(handoff: *mut u64);
        // SAFETY: the hand-off page, mapped read-only; the edu driver wrote it before it
        // notified.
        let word = unsafe { handoff.read_volatile() };
        let (Some(blk), true) = (self.blk.as_mut(), word >> 32 == 1) else { return };
        let handle = Handle(word as u32);
        self.lent = Some(handle);
        let mut client = Client::new(Ppc(IOMMU));
        let iova = match client.map(handle, MY_DEVICE, 0, 0x1000, None, Rights::READ) {
            Ok(iova) => iova,
            Err(e) => {
                debug_println!("blk-driver: MAP of the lent page refused: {e}");
                return;
            }
        };
        // SAFETY: page 2 of the edu driver's buffer, which the description maps here
        // read-only; the disk reaches it at `iova` for as long as the grant lasts.
        let page: NonNull<u8> = unsafe { memory_region_symbol!(edu_buffers: *mut u8).add(0x2000) };
        // SAFETY: as above; the disk only reads it.
        unsafe {
            IommuHal::share_in_place(InPlace { va: page, len: 0x1000, reach: Reach::Always { device_addr: iova } })
        };
        // SAFETY: the first sector's worth of the mapped page.
        let data = unsafe { core::slice::from_raw_parts(page.as_ptr(), SECTOR_SIZE) };
        let w = blk.write_blocks(2, data);
        IommuHal::stop_sharing_in_place();
        let mut back = [0u8; SECTOR_SIZE];
        let r = blk.read_blocks(2, &mut back);
        debug_println!(
            "blk-driver: wrote sector 2 straight from the page edu_driver lent (read-only at iova {iova:#x}, no copy): {}",
            if w.is_ok() && r.is_ok() && back[..] == data[..] { "same data" } else { "DIFFERENT" }
        );
        EDU.notify();
    }

    /// The edu driver took its page back.
    fn after_revoke(&mut self, handle: Handle) {
        let mut client = Client::new(Ppc(IOMMU));
        let held = client.query().map(|q| q[0]);
        let again = client.map(handle, MY_DEVICE, 0, 0x1000, None, Rights::READ);
        debug_println!("blk-driver: after the REVOKE: mappings held {held:?}; MAP with the lent handle: {again:?}");
        self.read_where_nothing_is_mapped();
    }

    /// Send the disk to read sector 0 into `UNMAPPED_IOVA`, which nothing maps for it: with
    /// its DMA translated by the SMMU this is a fault the IOMMU PD attributes to the disk
    /// (the image's check), and the buffer behind the IOVA's name here is never written.
    /// The device is reset after (the `Wide` dropped): QEMU may have marked it
    /// DEVICE_NEEDS_RESET.
    fn read_where_nothing_is_mapped(&mut self) {
        let Some(mut blk) = self.blk.take() else { return };
        let mut buf = [0x5au8; SECTOR_SIZE];
        let (mut header, mut status) = ([0; 16], blk_driver::disk::UNWRITTEN);
        // SAFETY: `buf` is this PD's stack, shared in place only for this one request, named
        // to the device at an IOVA nothing maps: the device reaches no memory through it.
        unsafe {
            IommuHal::share_in_place(InPlace {
                va: NonNull::from(&mut buf).cast(),
                len: SECTOR_SIZE,
                reach: Reach::Always { device_addr: UNMAPPED_IOVA },
            })
        };
        // SAFETY: the three buffers stay untouched until the request completes or the device
        // is reset (the `Wide` dropped below), whichever comes first.
        let token = unsafe { blk.read_blocks_nb(0, &mut header, &mut buf, &mut status) };
        let mut polls = 0;
        let done = loop {
            if blk.peek_used().is_some() || blk.status().contains(DeviceStatus::DEVICE_NEEDS_RESET) || polls == POLLS {
                break blk.peek_used();
            }
            polls += 1;
        };
        let device = blk.status();
        let completed = match (done, token) {
            (Some(t), Ok(mine)) if t == mine => {
                // SAFETY: the buffers `read_blocks_nb` was given for this token.
                Some(unsafe { blk.complete_read_blocks(t, &header, &mut buf, &mut status) })
            }
            // Not completed: the pool's copies of the header and status stay taken; the
            // disk is not used again.
            _ => None,
        };
        drop(blk);
        IommuHal::stop_sharing_in_place();
        debug_println!(
            "blk-driver: the disk read sector 0 to iova {UNMAPPED_IOVA:#x}, never mapped ({}): completed {:?}; needs reset: {}; the buffer named there {}",
            if token.is_ok() { "submitted" } else { "NOT SUBMITTED" },
            completed,
            device.contains(DeviceStatus::DEVICE_NEEDS_RESET),
            if buf.iter().all(|&b| b == 0x5a) { "unwritten" } else { "WRITTEN" }
        );
    }
}

impl Handler for BlkDriver {
    type Error = Infallible;

    fn notified(&mut self, channels: sel4_microkit::ChannelSet) -> Result<(), Self::Error> {
        if channels.contains(EDU) {
            match self.lent {
                None => self.write_lent_page(),
                Some(handle) => self.after_revoke(handle),
            }
        }
        Ok(())
    }
}
