//! A driver PD for the boards' images: its device is a DMA engine of the SoC, and its
//! buffer reaches the device only through the mappings the IOMMU PD makes for it.
//!
//! On ZynqMP (`gdma_regs` mapped: images/zcu102.xml) it copies a page with GDMA channel 1
//! through its mapping, then copies to an IOVA it never had mapped and to the one it
//! unmapped: those must not land. On i.MX8QXP (`usdhc_regs` mapped:
//! images/tqma8xqp1gb.xml) it has its buffer mapped for uSDHC1 and takes it back, and
//! programs no transfer (that needs a card). If the IOMMU PD refuses the mapping it says
//! so and starts no DMA: without a mapping there is nothing the device may reach, and on
//! a machine with no SMMU (QEMU's xlnx-zcu102) a DMA would not be confined at all.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use client_channel::Ppc;
use iommu_client::Client;
use iommu_protocol::{DeviceId, Handle, Rights};
use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, var, Channel, Handler, Infallible};

mod gdma;

const IOMMU: Channel = Channel::new(0);
/// Its device in the policy, and its capability over its buffer.
const MY_DEVICE: DeviceId = DeviceId(0);
const MY_BUFFER: Handle = Handle(0);
const LEN: u32 = 256;
const POLLS: u32 = 10_000_000;

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

/// Clean and invalidate `len` bytes at `p` to the point of coherency: the GDMA does not
/// snoop this PD's caches (its descriptors ask for no coherent access), so what the CPU
/// wrote must be in memory before a copy, and what the engine wrote read from memory
/// after.
fn flush(p: NonNull<u8>, len: usize) {
    for line in (0..len).step_by(64) {
        // SAFETY: `dc civac` on an address this PD maps: cache maintenance only, no
        // access the mapping does not allow.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) p.as_ptr().add(line)) };
    }
    // SAFETY: a barrier.
    unsafe { core::arch::asm!("dsb sy") };
}

/// What QEMU's xlnx-zcu102 does with DMA when no SMMU stands between the device and memory
/// (images/zcu102-unconfined.xml, a plain Microkit system with no IOMMU PD, which alone
/// sets `unconfined_paddr`, its buffer's physical address): GDMA channel 1 copies page 0
/// to page 1 at their physical addresses, and nothing checks where it writes. The same
/// copy code as the confined path, so this shows it drives QEMU's GDMA model.
fn unconfined(buf: NonNull<u8>, regs: NonNull<u8>, pa: u64) {
    // SAFETY: the description maps GDMA channel 1's register page here, uncached.
    let mut ch = unsafe { gdma::Channel::new(regs) };
    // SAFETY: page 1 of the 3-page buffer.
    let page1 = unsafe { buf.add(0x1000) };
    fill(buf, LEN as usize, 0x5a);
    fill(page1, LEN as usize, 0);
    flush(buf, 0x2000);
    let r = ch.copy(pa, pa + 0x1000, LEN, POLLS);
    flush(page1, LEN as usize);
    debug_println!(
        "soc-dma-driver: NO IOMMU in this system: GDMA channel 1 copied by physical address {pa:#x} -> {:#x}: {r:?}, {}",
        pa + 0x1000,
        if holds(page1, LEN as usize, 0x5a) { "data arrived" } else { "data MISSING" }
    );
}

#[protection_domain]
fn init() -> Driver {
    let buf: NonNull<u8> = memory_region_symbol!(dma_buffers: *mut u8);
    let gdma_regs = *var!(gdma_regs: usize = 0);
    // Not set (all ones) but in images/zcu102-unconfined.xml. 0 is a physical address
    // like any other: on zcu102 RAM starts there, and the Microkit tool may put the
    // buffer at it.
    let unconfined_paddr = *var!(unconfined_paddr: usize = usize::MAX);
    if let (Some(regs), true) = (NonNull::new(gdma_regs as *mut u8), unconfined_paddr != usize::MAX) {
        unconfined(buf, regs, unconfined_paddr as u64);
        return Driver;
    }
    let usdhc_regs = *var!(usdhc_regs: usize = 0);
    let device = if gdma_regs != 0 { "GDMA channel 1" } else { "uSDHC1" };
    let mut iommu = Client::new(Ppc(IOMMU));
    debug_println!("soc-dma-driver: asking the IOMMU PD to map 2 pages of my buffer for {device}");
    // Its first MAP at its start: a device left stopped for this run is RESUMEd first.
    let iova = match iommu.map_at_start(MY_BUFFER, MY_DEVICE, 0, 0x2000, None, Rights::READ_WRITE) {
        Ok(v) => v,
        Err(e) => {
            debug_println!("soc-dma-driver: MAP refused: {e}; no DMA started: {device} was given no memory to reach");
            return Driver;
        }
    };
    debug_println!("soc-dma-driver: the IOMMU PD mapped 2 pages of my buffer for {device} at iova {iova:#x}");
    let Some(regs) = NonNull::new(gdma_regs as *mut u8) else {
        // uSDHC1: the mapping is what a transfer would use; none is programmed here.
        let r = iommu.unmap(MY_DEVICE, &[iova]);
        debug_println!(
            "soc-dma-driver: no transfer programmed on {device} (registers at {usdhc_regs:#x}; needs a card); UNMAP {r:?}"
        );
        return Driver;
    };
    // SAFETY: the description maps GDMA channel 1's register page here, uncached, for
    // this PD alone.
    let mut ch = unsafe { gdma::Channel::new(regs) };
    // SAFETY: pages 1 and 2 of the 3-page buffer.
    let (page1, page2) = unsafe { (buf.add(0x1000), buf.add(0x2000)) };
    fill(buf, LEN as usize, 0xa5);
    fill(page1, LEN as usize, 0);
    flush(buf, 0x3000);
    let r = ch.copy(iova, iova + 0x1000, LEN, POLLS);
    flush(page1, LEN as usize);
    debug_println!(
        "soc-dma-driver: GDMA copy through the mapping: {r:?}, {}",
        if holds(page1, LEN as usize, 0xa5) { "data arrived" } else { "data MISSING" }
    );
    // Page 2 is mine but never mapped for the device: a copy to the IOVA it would have
    // must not land.
    fill(page2, LEN as usize, 0x22);
    flush(page2, LEN as usize);
    let r = ch.copy(iova, iova + 0x2000, LEN, POLLS);
    flush(page2, LEN as usize);
    debug_println!(
        "soc-dma-driver: GDMA copy past the mapping: {r:?}, {}",
        if holds(page2, LEN as usize, 0x22) { "blocked" } else { "LANDED" }
    );
    let u = iommu.unmap(MY_DEVICE, &[iova]);
    fill(page1, LEN as usize, 0x11);
    flush(page1, LEN as usize);
    let r = ch.copy(iova, iova + 0x1000, LEN, POLLS);
    flush(page1, LEN as usize);
    debug_println!(
        "soc-dma-driver: UNMAP {u:?}; GDMA copy to the old iova: {r:?}, {}",
        if holds(page1, LEN as usize, 0x11) { "blocked" } else { "LANDED" }
    );
    Driver
}

struct Driver;

impl Handler for Driver {
    type Error = Infallible;

    /// The IOMMU PD signals this channel when a fault of this driver's device is in the
    /// ring it shares with this PD.
    fn notified(&mut self, channels: sel4_microkit::ChannelSet) -> Result<(), Self::Error> {
        if !channels.contains(IOMMU) {
            return Ok(());
        }
        let ring: NonNull<iommu_protocol::faults::FaultRing> =
            memory_region_symbol!(fault_ring: *mut iommu_protocol::faults::FaultRing);
        let mut out = [iommu_protocol::faults::FaultRecord::default(); 8];
        // SAFETY: the description maps this PD's fault ring here, read-only.
        let n = unsafe { client_channel::take_faults(ring, IOMMU, &mut out) };
        for r in out[..n].iter().filter(|r| !client_channel::told_notice("soc-dma-driver", r)) {
            debug_println!(
                "soc-dma-driver: fault notified: stream {:#x} {} at iova {:#x}..={:#x} ({} more), kind {:#x}",
                r.stream,
                if r.write == 1 { "write" } else { "read" },
                r.iova,
                r.iova_last,
                r.repeats,
                r.kind
            );
        }
        // SAFETY: the description maps this PD's fault ring here, read-only.
        unsafe { client_channel::told_service_failed("soc-dma-driver", ring) };
        Ok(())
    }
}
