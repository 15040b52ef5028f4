//! A driver PD for QEMU's edu device. It maps its DMA buffer through the IOMMU PD (a
//! protected procedure call on its channel), runs DMA through the IOVAs it was given, and
//! shows that what it did not map, or unmapped, the device cannot reach. Then it lends a
//! page of its buffer to the disk driver (GRANT, read-only, for the disk), and takes it
//! back (REVOKE) when the disk driver is done. It also borrows: the C edu driver lends it a
//! page, which it maps for its device (and re-grants to itself), and after the lender's
//! crash and restart it shows that its device no longer reaches that page, while its own
//! mapping still works (`borrowed`).
#![no_std]
#![no_main]

use core::ptr::NonNull;

use client_channel::Ppc;
use iommu_client::Client;
use iommu_protocol::config::reg;
use iommu_protocol::{ClientId, DeviceId, Handle, Rights};
use sel4_microkit::{
    debug_println, memory_region_symbol, protection_domain, with_msg_regs, Channel, Handler, Infallible, MessageInfo,
};

mod borrowed;

const IOMMU: Channel = Channel::new(0);
/// To and from the disk driver: "a page is lent", "done with it", "taken back".
const BLK: Channel = Channel::new(1);
/// The disk driver in the policy, and its disk.
const BLK_CLIENT: ClientId = ClientId(2);
const BLK_DISK: u64 = 1 << 2;
/// Where the IOMMU PD puts the edu's BAR0 in the PCI memory window (PCI == CPU address on
/// QEMU virt); the description maps the same physical range into this PD.
const BAR0: u32 = 0x1000_0000;
/// Its device in the policy.
const MY_DEVICE: DeviceId = DeviceId(0);
const POLLS: u32 = 200_000_000;

fn fill(p: NonNull<u8>, len: usize, byte: u8) {
    for i in 0..len {
        // SAFETY: inside this PD's DMA buffer mapping.
        unsafe { p.add(i).write_volatile(byte) };
    }
}

fn holds(p: NonNull<u8>, len: usize, byte: u8) -> bool {
    // SAFETY: inside this PD's DMA buffer mapping.
    (0..len).all(|i| unsafe { p.add(i).read_volatile() } == byte)
}

/// What became of a write that must miss: "blocked" only if the device finished it
/// (`done`) and the page it must not reach is `untouched`; a write not finished shows
/// nothing in memory, whatever the IOMMU does.
fn missed(done: Result<(), edu::Error>, untouched: bool) -> &'static str {
    match (done, untouched) {
        (Ok(()), true) => "blocked",
        (Ok(()), false) => "LANDED",
        (Err(_), _) => "NOT FINISHED by the device",
    }
}

#[protection_domain]
fn init() -> EduDriver {
    let buf: NonNull<u8> = memory_region_symbol!(dma_buffers: *mut u8);
    let bar: NonNull<u8> = memory_region_symbol!(edu_bar: *mut u8);
    let mut iommu = Client::new(Ppc(IOMMU));
    // Its own function, through the IOMMU PD, which owns configuration space: the BAR
    // must be where the description maps it, and the device is turned on (the IOMMU PD
    // left memory decoding and bus mastering off).
    let id = iommu.config_read(MY_DEVICE, reg::VENDOR_ID, 4);
    let bar0 = iommu.config_read(MY_DEVICE, reg::BAR0, 4);
    if bar0.map(|b| b & !0xf) != Ok(BAR0) {
        debug_println!("edu-driver: BAR0 is not where the description maps it: {bar0:x?}");
        return EduDriver { grant: None, borrowed: None, bar, buf };
    }
    // Its first MAP at its start, before the device is turned on: were the device left
    // stopped for this run (its function away at a crashed predecessor's teardown), the
    // RESUME `map_at_start` sends would stop the function (Bus Master off) first.
    let iova = match iommu.map_at_start(Handle(0), MY_DEVICE, 0, 0x2000, None, Rights::READ_WRITE) {
        Ok(v) => v,
        Err(e) => {
            debug_println!("edu-driver: MAP refused: {e}");
            return EduDriver { grant: None, borrowed: None, bar, buf };
        }
    };
    let on = iommu.config_write(MY_DEVICE, reg::COMMAND, 2, u32::from(reg::CMD_MEMORY | reg::CMD_BUS_MASTER));
    debug_println!(
        "edu-driver: its function through the IOMMU PD: id {id:x?}, BAR0 {BAR0:#x}, memory and bus master on: {on:x?}"
    );
    // SAFETY: BAR0 is at the range the description maps here, decoding memory.
    let mut edu = unsafe { edu::Edu::new(bar) };
    debug_println!("edu-driver: edu ident {:x?}", edu.probe());

    debug_println!("edu-driver: the IOMMU PD mapped 2 pages of my buffer at iova {iova:#x}");
    // SAFETY: pages 1 and 2 of the 3-page buffer.
    let (page1, page2) = unsafe { (buf.add(0x1000), buf.add(0x2000)) };
    fill(buf, 256, 0xa5);
    fill(page1, 256, 0);
    let _ = edu.dma_from_ram(iova, 0, 256, POLLS);
    let _ = edu.dma_to_ram(0, iova + 0x1000, 256, POLLS);
    debug_println!(
        "edu-driver: DMA through the mapping: {}",
        if holds(page1, 256, 0xa5) { "data arrived" } else { "data MISSING" }
    );

    // Page 2 is mine but not mapped for the device: the DMA to the IOVA it would have
    // must not land.
    fill(page2, 256, 0x22);
    let done = edu.dma_to_ram(0, iova + 0x2000, 256, POLLS);
    debug_println!("edu-driver: DMA past the mapping: {}", missed(done, holds(page2, 256, 0x22)));

    let r = iommu.unmap(MY_DEVICE, &[iova]);
    fill(page1, 256, 0x11);
    let done = edu.dma_to_ram(0, iova + 0x1000, 256, POLLS);
    debug_println!("edu-driver: UNMAP {r:?}; DMA to the old iova: {}", missed(done, holds(page1, 256, 0x11)));
    let refused = iommu.map(Handle(1), MY_DEVICE, 0, 0x1000, None, Rights::READ);
    debug_println!("edu-driver: MAP with a handle I do not hold: {refused:?}");

    // Lend page 2 to the disk driver, read-only, for its disk: what the page holds is
    // what the disk driver will write to its disk, without a copy.
    for i in 0..0x1000 {
        // SAFETY: page 2 of this PD's buffer.
        unsafe { page2.add(i).write_volatile((i as u8).wrapping_mul(7) ^ 0x5a) };
    }
    let lent = iommu.grant(Handle(0), BLK_CLIENT, 0x2000, 0x1000, Rights::READ, BLK_DISK);
    debug_println!("edu-driver: GRANT of page 2, read-only, to blk_driver for its disk: {lent:?}");
    let Ok((grant, theirs)) = lent else { return EduDriver { grant: None, borrowed: None, bar, buf } };
    let handoff: NonNull<u64> = memory_region_symbol!(handoff: *mut u64);
    // SAFETY: the hand-off page, this PD's to write; the disk driver reads it after the
    // notification below.
    unsafe { handoff.write_volatile(1 << 32 | u64::from(theirs.0)) };
    BLK.notify();
    EduDriver { grant: Some(grant), borrowed: None, bar, buf }
}

struct EduDriver {
    /// The page lent to the disk driver, until it is taken back.
    grant: Option<Handle>,
    /// What the C edu driver lent this PD, once it has.
    borrowed: Option<borrowed::Borrowed>,
    /// Its device's BAR0 and its DMA buffer, as the description maps them here.
    bar: NonNull<u8>,
    buf: NonNull<u8>,
}

impl Handler for EduDriver {
    type Error = Infallible;

    /// The C edu driver's calls (`borrowed::LENDER`): "I lent you a page" and, once it was
    /// restarted after its crash, "I ran again".
    fn protected(&mut self, channel: Channel, msg_info: MessageInfo) -> Result<MessageInfo, Self::Error> {
        if channel != borrowed::LENDER {
            return Ok(MessageInfo::new(1, 0));
        }
        let mut iommu = Client::new(Ppc(IOMMU));
        match msg_info.label() {
            borrowed::LENT if msg_info.count() >= 1 => {
                let theirs = with_msg_regs(|regs| regs[0]);
                self.borrowed = u32::try_from(theirs)
                    .ok()
                    .and_then(|h| borrowed::Borrowed::lent(&mut iommu, self.bar, self.buf, Handle(h)));
            }
            borrowed::LENDER_RESTARTED => match &self.borrowed {
                Some(b) => b.after_the_lenders_restart(&mut iommu),
                None => debug_println!("edu-driver: the C driver ran again, but it had lent me nothing"),
            },
            _ => return Ok(MessageInfo::new(1, 0)),
        }
        Ok(MessageInfo::new(0, 0))
    }

    /// The IOMMU PD signals this channel when a fault of this driver's device is in the
    /// ring it shares with this PD.
    fn notified(&mut self, channels: sel4_microkit::ChannelSet) -> Result<(), Self::Error> {
        if channels.contains(BLK) {
            if let Some(grant) = self.grant.take() {
                let r = Client::new(Ppc(IOMMU)).revoke(grant);
                debug_println!("edu-driver: the disk driver is done with the page; REVOKE: {r:?}");
                BLK.notify();
            }
        }
        if !channels.contains(IOMMU) {
            return Ok(());
        }
        let ring: NonNull<iommu_protocol::faults::FaultRing> =
            memory_region_symbol!(fault_ring: *mut iommu_protocol::faults::FaultRing);
        let mut out = [iommu_protocol::faults::FaultRecord::default(); 8];
        // SAFETY: the description maps this PD's fault ring here, read-only.
        let n = unsafe { client_channel::take_faults(ring, IOMMU, &mut out) };
        for r in out[..n].iter().filter(|r| !client_channel::told_notice("edu-driver", r)) {
            debug_println!(
                "edu-driver: fault notified: stream {:#x} {} at iova {:#x}..={:#x} ({} more), region {} offset {:#x}",
                r.stream,
                if r.write == 1 { "write" } else { "read" },
                r.iova,
                r.iova_last,
                r.repeats,
                r.region,
                r.offset
            );
        }
        // SAFETY: the description maps this PD's fault ring here, read-only.
        unsafe { client_channel::told_service_failed("edu-driver", ring) };
        Ok(())
    }
}
