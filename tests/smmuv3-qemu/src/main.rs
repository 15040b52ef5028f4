//! A bare-metal image that proves the SMMUv3 driver on QEMU's SMMUv3: `edu` PCI devices
//! really DMA, and each test checks memory contents and the events the SMMU reports.
//!
//! Boot: aarch64-rt turns the MMU on with an identity map of the GiB of RAM the image is
//! linked into; the device tree tells where everything else is, and only what it names is
//! mapped (RAM as normal memory, the devices as Device memory). PCI buses, bridge windows
//! and BARs are assigned here. The last line printed is `smmuv3-qemu: N passed, M failed`
//! (also when the device tree lacks something the image needs: it says what first), then
//! QEMU is powered off through PSCI.
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

/// Level-1 block descriptor bits (Arm ARM D8.3): valid, AttrIndx 1 (normal), inner
/// shareable, AF.
const BLOCK_NORMAL: usize = 1 | (1 << 2) | (3 << 8) | (1 << 10);
/// MAIR: attribute 0 Device-nGnRE, attribute 1 normal write-back.
const MAIR: u64 = 0x04 | (0xff << 8);

// Until the device tree is read, only the GiB of RAM the image is linked into (memory.ld)
// is mapped: it holds the device tree, the image, its stack and its tables. Everything
// else is mapped from what the device tree says (memory::pagetable).
initial_pagetable!(
    {
        let mut idmap = [0; 512];
        idmap[platform::FDT_ADDR >> 30] = BLOCK_NORMAL | (platform::FDT_ADDR & !((1 << 30) - 1));
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

/// Map what the device tree names and switch to those tables: RAM, then the console,
/// then each device; a device that cannot be mapped is returned by name, with why.
fn map_platform(
    ram: &[platform::Region],
    uart: Option<usize>,
    devices: &[(&'static str, usize, usize)],
) -> Result<(), (&'static str, &'static str)> {
    use memory::pagetable::{Attr, PageTables};
    let mut pt = PageTables::new();
    let mut result = Ok(());
    for r in ram {
        if let Err(e) = pt.map(r.base as u64, r.size as u64, Attr::Normal) {
            result = Err(("RAM", e));
        }
    }
    if ram.is_empty() || result.is_err() {
        // What the boot tables mapped, so that the image can still say what is wrong.
        let boot = platform::FDT_ADDR & !((1 << 30) - 1);
        let _ = pt.map(boot as u64, 1 << 30, Attr::Normal);
    }
    if let Some(uart) = uart {
        if let Err(e) = pt.map(uart as u64, 4096, Attr::Device) {
            result = Err(("the UART", e));
        }
    }
    for (name, base, size) in devices {
        if result.is_err() {
            break;
        }
        if let Err(e) = pt.map(*base as u64, *size as u64, Attr::Device) {
            result = Err((*name, e));
        }
    }
    // SAFETY: the tables map RAM (the image, its stack, the device tree) as the boot tables
    // did, and the devices used from now on.
    unsafe { pt.activate() };
    result
}

/// The device tree lacks what the image needs: say what, on the console if there is one,
/// with the verdict line, and power off.
fn missing_hardware(m: platform::Missing) -> ! {
    PSCI_HVC.store(m.psci_hvc, core::sync::atomic::Ordering::Relaxed);
    if map_platform(&m.ram, m.uart, &[]).is_ok() {
        if let Some(uart) = m.uart {
            // SAFETY: the UART was just mapped as Device memory and only the console uses it.
            unsafe { console::init(uart) };
        }
    }
    println!();
    for p in &m.problems {
        println!("smmuv3-qemu: device tree: {p}");
    }
    println!("smmuv3-qemu: cannot run on this machine: the device tree lacks what is named above");
    println!("smmuv3-qemu: 0 passed, {} failed", m.problems.len().max(1));
    power_off();
}

// 1 MiB of stack: the service (tens of KiB of fixed tables) and batches of decoded
// events live on it.
entry!(main, 256);
fn main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
    // SAFETY: QEMU left the device tree at the start of RAM, which the image (linked 2 MiB
    // above it) does not overwrite.
    let platform = match unsafe { platform::Platform::discover() } {
        Ok(p) => p,
        Err(m) => missing_hardware(m),
    };
    PSCI_HVC.store(platform.psci_hvc, core::sync::atomic::Ordering::Relaxed);
    let (_, mmio_cpu, mmio_size) = platform.mmio32;
    let mapped = map_platform(
        &platform.ram,
        Some(platform.uart),
        &[
            ("the GIC distributor", platform.gicd, platform.gicd_size),
            ("the GIC redistributors", platform.gicr, platform.gicr_size),
            ("the SMMU", platform.smmu, platform.smmu_size),
            ("the PCIe ECAM", platform.ecam, platform.ecam_size),
            ("the PCI memory window", mmio_cpu as usize, mmio_size as usize),
        ],
    );
    // SAFETY: map_platform mapped the UART as Device memory; only the console uses it.
    unsafe { console::init(platform.uart) };
    println!();
    if let Err((what, why)) = mapped {
        println!("smmuv3-qemu: cannot map {what} the device tree names: {why}");
        println!("smmuv3-qemu: 0 passed, 1 failed");
        power_off();
    }
    println!("smmuv3-qemu: booted; device tree says (each mapped as it names it):");
    for r in &platform.ram {
        println!("  RAM at {:#x} (+{:#x})", r.base, r.size);
    }
    println!(
        "  GICv3 distributor at {:#x}, redistributors at {:#x} (+{:#x})",
        platform.gicd, platform.gicr, platform.gicr_size
    );
    println!("  SMMUv3 registers at {:#x} (+{:#x})", platform.smmu, platform.smmu_size);
    let i = platform.smmu_irqs;
    println!(
        "  SMMU interrupts: eventq {:?}, priq {:?}, cmdq-sync {:?}, gerror {:?}",
        i.eventq, i.priq, i.cmdq_sync, i.gerror
    );
    let (mmio_pci, _, _) = platform.mmio32;
    println!(
        "  PCIe ECAM at {:#x} (+{:#x}: buses {:02x}-{:02x}), 32-bit window {:#x} (+{:#x}) at PCI {:#x}, iommu-map {:?}",
        platform.ecam,
        platform.ecam_size,
        platform.buses.0,
        platform.buses.1,
        mmio_cpu,
        mmio_size,
        mmio_pci,
        platform.iommu_map
    );

    // SAFETY: the GIC's registers were mapped as Device memory and are used only here.
    let mut gic = unsafe { gic::init(platform.gicd, platform.gicr) };
    // SAFETY: the ECAM and the PCI memory window were mapped as Device memory; only this
    // image's PCI code and drivers use them.
    let mut pci = match unsafe { pci::setup(&platform) } {
        Ok(e) => e,
        Err(e) => {
            println!("smmuv3-qemu: PCI set-up failed: {e}");
            println!("smmuv3-qemu: 0 passed, 1 failed");
            power_off();
        }
    };
    let edus = pci.edus.clone();

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
