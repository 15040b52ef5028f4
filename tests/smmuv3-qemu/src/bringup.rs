//! Before the SMMU driver runs: every edu device answers and DMA works untranslated
//! (QEMU's SMMU, while disabled, lets transactions through). This proves the harness
//! and the devices, so a later "blocked" means the SMMU blocked it.
//!
//! edu's buffer is reachable only by DMA, so data is checked by a round trip: RAM ->
//! device from one place, device -> RAM to another, and the two compared by the CPU.

use crate::memory::{self, page};
use crate::pci::EduDev;
use crate::println;
use crate::report::Report;

/// Polls of the edu status register before a DMA counts as hung (edu completes a DMA
/// on a 100 ms virtual-clock timer).
pub const DMA_POLLS: u32 = 200_000_000;

pub fn run(edus: &[EduDev], report: &mut Report) {
    println!("bring-up: the SMMU is still off; each device DMAs straight to RAM");
    report.check("edu devices found", edus.len() >= 3, format_args!("{} edu devices (need 3)", edus.len()));
    for (i, d) in edus.iter().enumerate() {
        // SAFETY: BAR0 was assigned by `pci::setup`, is identity-mapped as Device
        // memory, and this is the only driver for it.
        let mut edu = unsafe { edu::Edu::new(core::ptr::NonNull::new(d.bar0 as *mut u8).unwrap()) };
        let probe = edu.probe();
        report.check("edu answers", probe.is_ok(), format_args!("stream {:#x}: ident {:x?}", d.sid, probe));
        let buf = page(i);
        let mut pattern = [0u8; 64];
        for (j, b) in pattern.iter_mut().enumerate() {
            *b = (j as u8) ^ (0xa0 + i as u8);
        }
        memory::fill(&buf, 0);
        memory::write(&buf, 0, &pattern);
        let r1 = edu.dma_from_ram(buf.pa.0, 0, 64, DMA_POLLS);
        let r2 = edu.dma_to_ram(0, buf.pa.0 + 1024, 64, DMA_POLLS);
        let mut got = [0u8; 64];
        memory::read(&buf, 1024, &mut got);
        report.check(
            "untranslated DMA round trip",
            r1.is_ok() && r2.is_ok() && got == pattern,
            format_args!(
                "stream {:#x} read {:#x} and wrote {:#x}: {:02x?}...",
                d.sid,
                buf.pa.0,
                buf.pa.0 + 1024,
                &got[..4]
            ),
        );
    }
}
