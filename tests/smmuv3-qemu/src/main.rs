//! A bare-metal image that proves the SMMUv3 driver on QEMU's SMMUv3: `edu` PCI devices
//! really DMA, and each test checks memory contents and the events the SMMU reports.
//!
//! Boot: aarch64-rt turns the MMU on with an identity map; the device tree tells where
//! everything is; PCI BARs are assigned here. The last line printed is
//! `smmuv3-qemu: N passed, M failed`, then QEMU is powered off through PSCI.
#![no_std]
#![no_main]

mod bringup;
mod console;
mod gic;
mod memory;
mod pci;
mod platform;
mod report;
mod service_demo;
mod tests;

use core::panic::PanicInfo;

use aarch64_rt::{entry, exception_handlers, initial_pagetable, ExceptionHandlers, InitialPagetable, RegisterStateRef};
use smccc::psci::system_off;
use smccc::{Hvc, Smc};

/// Level-1 block descriptor bits (Arm ARM D8.3): valid, AttrIndx[4:2], SH[9:8], AF, PXN, UXN.
// Device: AttrIndx 0 (so no bits), not shareable.
const BLOCK_DEVICE: usize = 1 | (1 << 10) | (1 << 53) | (1 << 54);
const BLOCK_NORMAL: usize = 1 | (1 << 2) | (3 << 8) | (1 << 10);
/// MAIR: attribute 0 Device-nGnRE, attribute 1 normal write-back.
const MAIR: u64 = 0x04 | (0xff << 8);

initial_pagetable!(
    {
        let mut idmap = [0; 512];
        // 0-1 GiB: GIC, UART, SMMU, PCIe memory window and low ECAM.
        idmap[0] = BLOCK_DEVICE;
        // 1-2 GiB: RAM (the device tree, this image, its tables and buffers).
        idmap[1] = BLOCK_NORMAL | 0x4000_0000;
        // 256-257 GiB: the high PCIe ECAM.
        idmap[256] = BLOCK_DEVICE | 0x40_0000_0000;
        InitialPagetable(idmap)
    },
    MAIR
);

exception_handlers!(Exceptions);

struct Exceptions;

impl ExceptionHandlers for Exceptions {
    extern "C" fn irq_current(_state: RegisterStateRef) {
        gic::handle_irq();
    }
}

static PSCI_HVC: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

fn power_off() -> ! {
    if PSCI_HVC.load(core::sync::atomic::Ordering::Relaxed) {
        let _ = system_off::<Hvc>();
    } else {
        let _ = system_off::<Smc>();
    }
    loop {
        core::hint::spin_loop();
    }
}

// 1 MiB of stack: the service (tens of KiB of fixed tables) and batches of decoded
// events live on it.
entry!(main, 256);
fn main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    // SAFETY: QEMU left the device tree at the start of RAM, which the image (linked 2 MiB
    // above it) does not overwrite.
    let platform = match unsafe { platform::Platform::discover() } {
        Ok(p) => p,
        Err(_) => power_off(),
    };
    PSCI_HVC.store(platform.psci_hvc, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: the UART is in the identity-mapped device range and only the console uses it.
    unsafe { console::init(platform.uart) };
    println!();
    println!("smmuv3-qemu: booted; device tree says:");
    println!("  SMMUv3 registers at {:#x} (+{:#x})", platform.smmu, platform.smmu_size);
    let i = platform.smmu_irqs;
    println!(
        "  SMMU interrupts: eventq {:?}, priq {:?}, cmdq-sync {:?}, gerror {:?}",
        i.eventq, i.priq, i.cmdq_sync, i.gerror
    );
    println!(
        "  PCIe ECAM at {:#x}, 32-bit window {:#x?}, iommu-map {:?}",
        platform.ecam, platform.mmio32, platform.iommu_map
    );

    // SAFETY: the GIC is in the identity-mapped device range and used only here.
    let mut gic = unsafe { gic::init(platform.gicd, platform.gicr) };
    // SAFETY: the ECAM is in the identity-mapped device range and used only here.
    let mut pci = match unsafe { pci::setup(&platform) } {
        Ok(e) => e,
        Err(e) => {
            println!("smmuv3-qemu: PCI set-up failed: {e}");
            println!("smmuv3-qemu: 0 passed, 1 failed");
            power_off();
        }
    };
    let edus = pci.edus.clone();
    for d in &edus {
        println!(
            "  edu at {:02x}:{:02x}.{} (requester {:#x}) -> StreamID {:#x}, BAR0 at {:#x}",
            d.bus,
            d.device,
            d.function,
            d.rid(),
            d.sid,
            d.bar0
        );
    }

    let mut report = report::Report::default();
    bringup::run(&edus, &mut report);
    tests::run(&platform, &mut gic, &edus, &mut report);
    service_demo::run(&platform, &edus, &mut pci, &mut report);
    println!("smmuv3-qemu: {} passed, {} failed", report.passed, report.failed);
    power_off();
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("smmuv3-qemu: panic: {info}");
    println!("smmuv3-qemu: 0 passed, 1 failed");
    power_off();
}
