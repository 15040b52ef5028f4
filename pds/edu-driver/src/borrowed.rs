//! What the C edu driver lends this PD: a page of its buffer, read-write, for this PD's
//! device. This PD maps it for its device, re-grants it to itself (a second handle, derived
//! from the first) and maps that too, and keeps a mapping of its own buffer beside them;
//! its device's DMA writes into the lent page through both. The lender then crashes and
//! the IOMMU PD restarts it; the restarted lender's call (`LENDER_RESTARTED`) is when this
//! PD looks again: its device's writes into the lent page must no longer land (each is a
//! fault the IOMMU PD routes to this PD), both handles must be gone, and its own mapping
//! must still carry its device's DMA.

use core::ptr::NonNull;

use client_channel::Ppc;
use iommu_client::Client;
use iommu_protocol::{ClientId, Handle, Rights};
use sel4_microkit::{debug_println, memory_region_symbol, Channel};

use crate::{fill, holds, MY_DEVICE, POLLS};

/// The C edu driver's channel to this PD (its protected procedure calls; system.xml).
pub const LENDER: Channel = Channel::new(2);
/// The C driver's calls, as `pds/c-edu-driver/main.c` makes them: "I lent you a page"
/// (mr0: its handle in this PD's table), and "I ran again" (after its crash and restart).
pub const LENT: u64 = 1;
pub const LENDER_RESTARTED: u64 = 2;

/// This PD in the policy: a re-grant to itself may only narrow, and is still a child of
/// the lender's grant.
const ME: ClientId = ClientId(0);
const MY_DEVICES: u64 = 1 << MY_DEVICE.0;
/// Where the lent page and its re-grant are mapped for the device: IOVAs this PD names,
/// above those the service picks for it (from the window's base), so the faults after
/// the lender's restart have addresses the checks know.
const LENT_IOVA: u64 = 0x1_0008_0000;
const REGRANTED_IOVA: u64 = 0x1_0009_0000;
/// Where in the lent page its device writes, through each mapping: clear of the bytes
/// the C driver's own checks use (0x0..0x100, 0x400, 0x600, 0x800..0x900).
const LENT_AT: u64 = 0xc00;
const REGRANTED_AT: u64 = 0xd00;
/// Where its device writes back into its own page, read from the page's start.
const OWN_AT: u64 = 0x100;
/// 16 bytes: QEMU's SMMU faults per 4 bytes, so a blocked write is 4 faults, far under
/// the description's storm limit for this device.
const LEN: usize = 16;
/// The bytes each phase writes: before the lender's crash, and after its restart.
const BEFORE: u8 = 0x3c;
const AFTER: u8 = 0x4b;

/// What this PD holds of the lent page, and its own mapping beside it.
pub struct Borrowed {
    lent: Handle,
    regranted: Handle,
    own_iova: u64,
    bar: NonNull<u8>,
    buf: NonNull<u8>,
    page: NonNull<u8>,
}

impl Borrowed {
    /// The C driver lent handle `lent`: map it, re-grant it to itself and map that, map a
    /// page of its own, and have its device write through all three. Said on the console;
    /// `None` if a step was refused.
    pub fn lent(iommu: &mut Client<Ppc>, bar: NonNull<u8>, buf: NonNull<u8>, lent: Handle) -> Option<Self> {
        let page: NonNull<u8> = memory_region_symbol!(lent_page: *mut u8);
        let own = iommu.map(Handle(0), MY_DEVICE, 0, 0x1000, None, Rights::READ_WRITE);
        let mapped = iommu.map(lent, MY_DEVICE, 0, 0x1000, Some(LENT_IOVA), Rights::READ_WRITE);
        let regrant = iommu.grant(lent, ME, 0, 0x1000, Rights::READ_WRITE, MY_DEVICES);
        debug_println!(
            "edu-driver: the C driver lent me a page (handle {}): MAP of it {mapped:x?}; re-granted to myself {regrant:?}; MAP of my own page {own:x?}",
            lent.0
        );
        let (Ok(own_iova), Ok(_), Ok((_, regranted))) = (own, mapped, regrant) else { return None };
        let remapped = iommu.map(regranted, MY_DEVICE, 0, 0x1000, Some(REGRANTED_IOVA), Rights::READ_WRITE);
        debug_println!("edu-driver: MAP of what I re-granted of it: {remapped:x?}");
        remapped.ok()?;
        let b = Borrowed { lent, regranted, own_iova, bar, buf, page };
        let landed = b.write_all(BEFORE);
        debug_println!(
            "edu-driver: my device wrote into the lent page through its mapping at {LENT_IOVA:#x}: {}; through the re-granted one at {REGRANTED_IOVA:#x}: {}; into my own page at iova {own_iova:#x}: {}",
            said(landed[0]),
            said(landed[1]),
            said(landed[2])
        );
        Some(b)
    }

    /// The lender crashed and was restarted: what its grant gave this PD's device must be
    /// gone, and what is this PD's own must not be.
    pub fn after_the_lenders_restart(&self, iommu: &mut Client<Ppc>) {
        let landed = self.write_all(AFTER);
        debug_println!(
            "edu-driver: after the lender's restart, my device's write into the lent page at {LENT_IOVA:#x}: {}",
            dead(landed[0])
        );
        debug_println!(
            "edu-driver: after the lender's restart, my device's write into what I re-granted of it at {REGRANTED_IOVA:#x}: {}",
            dead(landed[1])
        );
        debug_println!(
            "edu-driver: after the lender's restart, my own mapping at iova {:#x} still carries my device's DMA: {}",
            self.own_iova,
            said(landed[2])
        );
        let lent = iommu.map(self.lent, MY_DEVICE, 0, 0x1000, None, Rights::READ);
        let regranted = iommu.map(self.regranted, MY_DEVICE, 0, 0x1000, None, Rights::READ);
        debug_println!("edu-driver: after the lender's restart, MAP with the lent handle: {lent:x?}; with the re-granted one: {regranted:x?}");
        let held = iommu.query().map(|v| v[iommu_protocol::query::MAPPINGS]);
        debug_println!("edu-driver: after the lender's restart, mappings held {held:?} (my own)");
    }

    /// `byte` into its own page, read by its device through its own mapping, then written
    /// by the device through the lent page's mapping, the re-granted one's and its own:
    /// which of the three writes landed, each checked in memory. The lent page's bytes
    /// are read through this PD's read-only map of it, which no IOMMU decision touches.
    fn write_all(&self, byte: u8) -> [bool; 3] {
        // SAFETY: `bar` is edu A's BAR0, mapped here uncached, decoding memory (init).
        let mut edu = unsafe { edu::Edu::new(self.bar) };
        // SAFETY: each is inside this PD's map of its buffer (page 0) or of the lent page.
        let (own_out, lent_at, regranted_at) = unsafe {
            (self.buf.add(OWN_AT as usize), self.page.add(LENT_AT as usize), self.page.add(REGRANTED_AT as usize))
        };
        fill(self.buf, LEN, byte);
        fill(own_out, LEN, !byte);
        let _ = edu.dma_from_ram(self.own_iova, 0, LEN, POLLS);
        let _ = edu.dma_to_ram(0, LENT_IOVA + LENT_AT, LEN, POLLS);
        let _ = edu.dma_to_ram(0, REGRANTED_IOVA + REGRANTED_AT, LEN, POLLS);
        let _ = edu.dma_to_ram(0, self.own_iova + OWN_AT, LEN, POLLS);
        [holds(lent_at, LEN, byte), holds(regranted_at, LEN, byte), holds(own_out, LEN, byte)]
    }
}

fn said(landed: bool) -> &'static str {
    if landed {
        "landed"
    } else {
        "MISSING"
    }
}

fn dead(landed: bool) -> &'static str {
    if landed {
        "LANDED"
    } else {
        "blocked"
    }
}
