//! What the machine has, read from the flattened device tree QEMU hands over: console,
//! interrupt controller, SMMU (registers and interrupts), PCIe host (ECAM, 32-bit memory
//! window, requester-ID to StreamID map) and PSCI conduit. Nothing here is a constant of
//! the QEMU virt board.

use fdt::Fdt;

/// Physical address of the device tree: the start of RAM, where QEMU places it for an
/// image that is not a Linux kernel (hw/arm/boot.c).
pub const FDT_ADDR: usize = 0x4000_0000;

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
    pub uart: usize,
    pub gicd: usize,
    pub gicr: usize,
    pub smmu: usize,
    pub smmu_size: usize,
    pub smmu_irqs: SmmuIrqs,
    pub ecam: usize,
    /// 32-bit PCI memory window: (PCI address, CPU address, size).
    pub mmio32: (u64, u64, u64),
    pub iommu_map: heapless::Vec<IommuMap, 4>,
    pub psci_hvc: bool,
}

fn cells(value: &[u8]) -> impl Iterator<Item = u32> + '_ {
    value.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

fn reg0(fdt: &Fdt, compatible: &[&str]) -> Option<(usize, usize)> {
    let node = fdt.find_compatible(compatible)?;
    let r = node.reg()?.next()?;
    Some((r.starting_address as usize, r.size.unwrap_or(0)))
}

impl Platform {
    /// Read the device tree at `FDT_ADDR`.
    ///
    /// # Safety
    /// The device tree must be at `FDT_ADDR`, mapped and not overwritten while `Platform`
    /// is built.
    pub unsafe fn discover() -> Result<Platform, &'static str> {
        // SAFETY: the caller guarantees a device tree at FDT_ADDR; its header carries its size.
        let fdt = unsafe { Fdt::from_ptr(FDT_ADDR as *const u8) }.map_err(|_| "no device tree at start of RAM")?;
        let (uart, _) = reg0(&fdt, &["arm,pl011"]).ok_or("no PL011")?;
        let gic = fdt.find_compatible(&["arm,gic-v3"]).ok_or("no GICv3 (use -machine gic-version=3)")?;
        let mut gic_regs = gic.reg().ok_or("GIC has no reg")?;
        let gicd = gic_regs.next().ok_or("no GICD")?.starting_address as usize;
        let gicr = gic_regs.next().ok_or("no GICR")?.starting_address as usize;

        let smmu_node = fdt.find_compatible(&["arm,smmu-v3"]).ok_or("no SMMUv3 (use -machine iommu=smmuv3)")?;
        let r = smmu_node.reg().ok_or("SMMU has no reg")?.next().ok_or("SMMU has no reg")?;
        let (smmu, smmu_size) = (r.starting_address as usize, r.size.unwrap_or(0));
        let mut smmu_irqs = SmmuIrqs::default();
        if let (Some(ints), Some(names)) = (smmu_node.property("interrupts"), smmu_node.property("interrupt-names")) {
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

        let pcie = fdt.find_compatible(&["pci-host-ecam-generic"]).ok_or("no PCIe host")?;
        let r = pcie.reg().ok_or("PCIe has no reg")?.next().ok_or("PCIe has no reg")?;
        let ecam = r.starting_address as usize;
        // ranges: (flags, pci hi, pci lo, cpu hi, cpu lo, size hi, size lo) per window.
        let ranges: heapless::Vec<u32, 32> =
            cells(pcie.property("ranges").ok_or("PCIe has no ranges")?.value).collect();
        let mut mmio32 = None;
        for w in ranges.chunks_exact(7) {
            // Space code 0b10 in bits 25:24 of the first cell: 32-bit memory.
            if (w[0] >> 24) & 3 == 2 {
                let pci = ((w[1] as u64) << 32) | w[2] as u64;
                let cpu = ((w[3] as u64) << 32) | w[4] as u64;
                let size = ((w[5] as u64) << 32) | w[6] as u64;
                mmio32 = Some((pci, cpu, size));
            }
        }
        // iommu-map: (rid-base, iommu phandle, sid-base, length) per entry; only entries
        // that name this SMMU count (another IOMMU's StreamIDs mean nothing to it).
        let smmu_phandle = smmu_node.property("phandle").and_then(|p| p.as_usize()).map(|p| p as u32);
        let mut iommu_map = heapless::Vec::new();
        if let Some(map) = pcie.property("iommu-map") {
            let c: heapless::Vec<u32, 16> = cells(map.value).collect();
            for e in c.chunks_exact(4).filter(|e| Some(e[1]) == smmu_phandle) {
                let _ = iommu_map.push(IommuMap { rid_base: e[0], sid_base: e[2], len: e[3] });
            }
        }
        let psci_hvc = fdt
            .find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
            .and_then(|n| n.property("method"))
            .map(|m| m.value.starts_with(b"hvc"))
            .unwrap_or(true);
        Ok(Platform {
            uart,
            gicd,
            gicr,
            smmu,
            smmu_size,
            smmu_irqs,
            ecam,
            mmio32: mmio32.ok_or("PCIe has no 32-bit memory window")?,
            iommu_map,
            psci_hvc,
        })
    }

    /// The StreamID a requester ID reaches the SMMU with, per `iommu-map`.
    pub fn stream_id(&self, rid: u32) -> Option<u32> {
        self.iommu_map
            .iter()
            .find(|m| rid >= m.rid_base && rid - m.rid_base < m.len)
            .map(|m| m.sid_base + (rid - m.rid_base))
    }
}
