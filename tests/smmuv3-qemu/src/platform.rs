//! What the machine has, read from the flattened device tree QEMU hands over: RAM,
//! console, interrupt controller, SMMU (registers and interrupts), PCIe host (ECAM and the
//! buses it reaches, 32-bit memory window, requester-ID to StreamID map) and PSCI conduit.
//! Nothing here is a constant of the QEMU virt board, and what is missing is said, not
//! guessed: `discover` returns every problem it found.

use fdt::node::FdtNode;
use fdt::Fdt;

/// Physical address of the device tree: the start of RAM, where QEMU places it for an
/// image that is not a Linux kernel (hw/arm/boot.c; x0 is 0 on entry). The image is linked
/// 2 MiB above it (memory.ld), so it is the one address the image must know beforehand.
pub const FDT_ADDR: usize = 0x4000_0000;

/// A range of physical addresses.
#[derive(Debug, Clone, Copy)]
pub struct Region {
    pub base: usize,
    pub size: usize,
}

/// The SMMU's wired interrupts, as GIC INTIDs.
#[derive(Debug, Default, Clone, Copy)]
pub struct SmmuIrqs {
    pub eventq: Option<u32>,
    pub priq: Option<u32>,
    pub cmdq_sync: Option<u32>,
    pub gerror: Option<u32>,
}

/// One entry of the PCIe host's `iommu-map`: requester IDs `[rid_base, rid_base + len)`
/// reach the SMMU as StreamIDs starting at `sid_base`.
#[derive(Debug, Clone, Copy)]
pub struct IommuMap {
    pub rid_base: u32,
    pub sid_base: u32,
    pub len: u32,
}

/// The discovered machine.
#[derive(Debug)]
pub struct Platform {
    /// RAM, from the memory nodes.
    pub ram: heapless::Vec<Region, 4>,
    pub uart: usize,
    pub gicd: usize,
    pub gicd_size: usize,
    pub gicr: usize,
    pub gicr_size: usize,
    pub smmu: usize,
    pub smmu_size: usize,
    pub smmu_irqs: SmmuIrqs,
    pub ecam: usize,
    pub ecam_size: usize,
    /// The buses the ECAM reaches: `bus-range`, cut to the buses `ecam_size` covers. The
    /// ECAM starts with the first.
    pub buses: (u8, u8),
    /// 32-bit PCI memory window: (PCI address, CPU address, size).
    pub mmio32: (u64, u64, u64),
    pub iommu_map: heapless::Vec<IommuMap, 4>,
    pub psci_hvc: bool,
}

/// What the device tree lacks for this image to run, with what is needed to say so: the
/// console (when there is one) and how to power off.
#[derive(Debug)]
pub struct Missing {
    pub uart: Option<usize>,
    pub ram: heapless::Vec<Region, 4>,
    pub psci_hvc: bool,
    /// One line each.
    pub problems: heapless::Vec<&'static str, 12>,
}

fn cells(value: &[u8]) -> impl Iterator<Item = u32> + '_ {
    value.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

fn first_reg(node: FdtNode) -> Option<Region> {
    let r = node.reg()?.next()?;
    Some(Region { base: r.starting_address as usize, size: r.size.unwrap_or(0) })
}

/// The console: the node `/chosen/stdout-path` names, if it is a PL011, else the first PL011.
fn console(fdt: &Fdt) -> Option<usize> {
    let chosen = fdt
        .find_node("/chosen")
        .and_then(|c| c.property("stdout-path"))
        .and_then(|p| p.as_str())
        .and_then(|path| fdt.find_node(path.split(':').next().unwrap_or(path)))
        .filter(|n| n.compatible().is_some_and(|c| c.all().any(|c| c == "arm,pl011")));
    let node = chosen.or_else(|| fdt.find_compatible(&["arm,pl011"]))?;
    first_reg(node).map(|r| r.base)
}

impl Platform {
    /// Read the device tree at `FDT_ADDR`.
    ///
    /// # Safety
    /// The device tree must be at `FDT_ADDR`, mapped and not overwritten while `Platform`
    /// is built.
    // Called once, at boot; the error carries the problems it found.
    #[allow(clippy::result_large_err)]
    pub unsafe fn discover() -> Result<Platform, Missing> {
        let mut problems = heapless::Vec::new();
        let mut missing = |p: &'static str| {
            let _ = problems.push(p);
        };
        // SAFETY: the caller guarantees a device tree at FDT_ADDR; its header carries its size.
        let Ok(fdt) = (unsafe { Fdt::from_ptr(FDT_ADDR as *const u8) }) else {
            missing("no device tree at the start of RAM");
            return Err(Missing { uart: None, ram: heapless::Vec::new(), psci_hvc: true, problems });
        };
        let psci_hvc = fdt
            .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
            .and_then(|n| n.property("method"))
            .map(|m| m.value.starts_with(b"hvc"))
            .unwrap_or(true);
        let mut ram = heapless::Vec::new();
        for node in fdt.all_nodes() {
            if node.property("device_type").and_then(|p| p.as_str()) == Some("memory") {
                for r in node.reg().into_iter().flatten() {
                    let _ = ram.push(Region { base: r.starting_address as usize, size: r.size.unwrap_or(0) });
                }
            }
        }
        if ram.is_empty() {
            missing("no memory node (device_type = \"memory\")");
        }
        let uart = console(&fdt);
        if uart.is_none() {
            missing("no PL011 UART (arm,pl011) to print on");
        }

        let mut gic = None;
        if let Some(node) = fdt.find_compatible(&["arm,gic-v3"]) {
            let regs: heapless::Vec<Region, 4> = node
                .reg()
                .into_iter()
                .flatten()
                .map(|r| Region { base: r.starting_address as usize, size: r.size.unwrap_or(0) })
                .take(4)
                .collect();
            match regs.as_slice() {
                [d, r, ..] => gic = Some((*d, *r)),
                _ => missing("the GICv3 node has no distributor and redistributor registers (reg)"),
            }
        } else if fdt.find_compatible(&["arm,cortex-a15-gic", "arm,gic-400", "arm,cortex-a9-gic"]).is_some() {
            missing(
                "no GICv3 (arm,gic-v3): the interrupt controller is a GICv2 (arm,cortex-a15-gic), \
                 which this image does not drive; run QEMU with -machine virt,gic-version=3",
            );
        } else {
            missing("no GICv3 (arm,gic-v3) interrupt controller; run QEMU with -machine virt,gic-version=3");
        }

        let mut smmu = None;
        let mut smmu_irqs = SmmuIrqs::default();
        let smmu_node = fdt.find_compatible(&["arm,smmu-v3"]);
        if let Some(node) = smmu_node {
            smmu = first_reg(node);
            if smmu.is_none() {
                missing("the SMMUv3 node has no registers (reg)");
            }
            if let (Some(ints), Some(names)) = (node.property("interrupts"), node.property("interrupt-names")) {
                // GIC interrupt specifiers are three cells: type (0 = SPI, 1 = PPI), number, flags.
                let specs: heapless::Vec<u32, 16> = cells(ints.value).collect();
                for (i, name) in names.value.split(|b| *b == 0).filter(|s| !s.is_empty()).enumerate() {
                    let Some(spec) = specs.get(i * 3..i * 3 + 3) else { break };
                    let intid = if spec[0] == 0 { 32 + spec[1] } else { 16 + spec[1] };
                    match name {
                        b"eventq" => smmu_irqs.eventq = Some(intid),
                        b"priq" => smmu_irqs.priq = Some(intid),
                        b"cmdq-sync" => smmu_irqs.cmdq_sync = Some(intid),
                        b"gerror" => smmu_irqs.gerror = Some(intid),
                        _ => {}
                    }
                }
            }
        } else {
            missing("no SMMUv3 (arm,smmu-v3): run QEMU with -machine virt,iommu=smmuv3");
        }

        let mut ecam = None;
        let mut mmio32 = None;
        let mut iommu_map = heapless::Vec::new();
        if let Some(pcie) = fdt.find_compatible(&["pci-host-ecam-generic"]) {
            // bus-range: first and last bus; without it, buses 0-255.
            let range: heapless::Vec<u32, 2> =
                pcie.property("bus-range").map(|p| cells(p.value).take(2).collect()).unwrap_or_default();
            let (first, last) = match range.as_slice() {
                [f, l] if f <= l && *l <= 255 => (*f, *l),
                _ => (0, 255),
            };
            match first_reg(pcie) {
                Some(r) if r.size >= 1 << 20 => {
                    // One bus per MiB of ECAM.
                    let last = last.min(first + (r.size >> 20) as u32 - 1).min(255);
                    ecam = Some((r, (first as u8, last as u8)));
                }
                _ => missing("the PCIe host's ECAM (reg) is missing or smaller than one bus (1 MiB)"),
            }
            // ranges: (flags, pci hi, pci lo, cpu hi, cpu lo, size hi, size lo) per window.
            let ranges: heapless::Vec<u32, 32> =
                pcie.property("ranges").map(|p| cells(p.value).collect()).unwrap_or_default();
            for w in ranges.chunks_exact(7) {
                // Space code 0b10 in bits 25:24 of the first cell: 32-bit memory.
                if (w[0] >> 24) & 3 == 2 {
                    let pci = ((w[1] as u64) << 32) | w[2] as u64;
                    let cpu = ((w[3] as u64) << 32) | w[4] as u64;
                    let size = ((w[5] as u64) << 32) | w[6] as u64;
                    mmio32 = Some((pci, cpu, size));
                }
            }
            if mmio32.is_none() {
                missing("the PCIe host has no 32-bit memory window (ranges)");
            }
            // iommu-map: (rid-base, iommu phandle, sid-base, length) per entry; only entries
            // that name this SMMU count (another IOMMU's StreamIDs mean nothing to it).
            let smmu_phandle =
                smmu_node.and_then(|n| n.property("phandle")).and_then(|p| p.as_usize()).map(|p| p as u32);
            if let Some(map) = pcie.property("iommu-map") {
                let c: heapless::Vec<u32, 16> = cells(map.value).collect();
                for e in c.chunks_exact(4).filter(|e| Some(e[1]) == smmu_phandle) {
                    let _ = iommu_map.push(IommuMap { rid_base: e[0], sid_base: e[2], len: e[3] });
                }
            }
            if smmu_node.is_some() && iommu_map.is_empty() {
                missing("the PCIe host's iommu-map does not name the SMMUv3: its devices' DMA would not go through it");
            }
        } else {
            missing("no PCIe host (pci-host-ecam-generic)");
        }

        match (gic, smmu, ecam, mmio32) {
            (Some((gicd, gicr)), Some(smmu), Some((ecam, buses)), Some(mmio32)) if problems.is_empty() => {
                Ok(Platform {
                    ram,
                    uart: uart.unwrap_or_default(),
                    gicd: gicd.base,
                    gicd_size: gicd.size,
                    gicr: gicr.base,
                    gicr_size: gicr.size,
                    smmu: smmu.base,
                    smmu_size: smmu.size,
                    smmu_irqs,
                    ecam: ecam.base,
                    ecam_size: ecam.size,
                    buses,
                    mmio32,
                    iommu_map,
                    psci_hvc,
                })
            }
            _ => Err(Missing { uart, ram, psci_hvc, problems }),
        }
    }

    /// The StreamID a requester ID reaches the SMMU with, per `iommu-map`.
    pub fn stream_id(&self, rid: u32) -> Option<u32> {
        self.iommu_map
            .iter()
            .find(|m| rid >= m.rid_base && rid - m.rid_base < m.len)
            .map(|m| m.sid_base + (rid - m.rid_base))
    }
}
