//! What the Microkit board a description is for gives it: which IOMMU there is and who
//! drives it, how wide its StreamIDs, IOVAs and physical addresses are, the page sizes and
//! the top of a PD's address space. `check` refuses what does not fit the board: a
//! StreamID wider than the SMMU's is never translated, and a region past the physical
//! address width is never mapped.

/// What a description is for, from the Microkit tool's `--board`: on x86_64 boards the
/// Microkit tool programs the IOMMU from its own elements; on Arm boards the IOMMU PD
/// enforces them and this project's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// An Arm board: the IOMMU PD drives the SMMU.
    #[default]
    Arm,
    /// An x86_64 board: Microkit programs VT-d.
    X86_64,
}

impl Target {
    /// The target of a Microkit board name (`x86_64_generic`, `qemu_virt_aarch64`, ...).
    pub fn of_board(board: &str) -> Target {
        if board.starts_with("x86_64") {
            Target::X86_64
        } else {
            Target::Arm
        }
    }
}

/// The IOMMU of a board, as far as this project is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardIommu {
    /// An SMMUv3 the IOMMU PD drives, with `stream_bits` StreamID bits (IDR1.SIDSIZE),
    /// whose register frame (both 64 KiB pages) is `frame` (physical address, size).
    /// `coherent`: the board's device tree marks the SMMU and the bus its devices sit on
    /// `dma-coherent` (their accesses snoop the CPUs' caches); the IOMMU PD combines it
    /// with SMMU_IDR0.COHACC and with how seL4 maps memory (`smmuv3::Coherency`).
    /// `irqs`: the lines it raises its event queue's and its global errors' interrupts on
    /// (the IOMMU PD's ids 10 and 11). `eventq_log2`: log2 of the largest event queue it
    /// takes (IDR1.EVENTQS), the most records one drain of it can hold.
    SmmuV3 { stream_bits: u32, frame: (u64, u64), coherent: bool, irqs: (u64, u64), eventq_log2: u32 },
    /// An Arm MMU-500 (SMMUv2) the IOMMU PD drives (`smmuv2-service`), each device in a
    /// stage-1 context bank of its own, each StreamID in a stream match register.
    Mmu500(Mmu500),
    /// VT-d, which the Microkit tool programs itself.
    Vtd,
    /// None this project knows of.
    Unknown,
}

/// What a board's MMU-500 is and has: where its registers are, its interrupt, how its
/// StreamIDs are made, and how many stage-1 context banks and stream match registers
/// (SMRs) it has. The counts are `drivers/smmuv2`'s ID-register profiles
/// (`smmuv2::model::ZYNQMP`, `IMX8QXP`, with their sources; iommu-sdf's tests hold these
/// numbers to those profiles); a bring-up on the board reads IDR0/IDR1 and the IOMMU PD
/// refuses to start if the hardware has fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mmu500 {
    /// The SoC, for messages.
    pub soc: &'static str,
    /// The register file: physical address and size (the device tree's `reg`).
    pub frame: (u64, u64),
    /// StreamID bits the SMRs match (IDR0.NUMSIDB).
    pub stream_bits: u32,
    /// Stage-1 context banks (NUMCB - NUMS2CB): one per device, and one the IOMMU PD's
    /// sink for blocked devices (`device_banks`).
    pub context_banks: usize,
    /// Stream match register groups (IDR0.NUMSMRG): one per StreamID.
    pub smrs: usize,
    /// The GIC interrupt (INTID, SPI + 32) that carries the global fault and every context
    /// fault: one line, shared, on both SoCs.
    pub irq: u64,
    /// How the SoC makes a StreamID.
    pub scheme: StreamScheme,
    /// The SMR mask the IOMMU PD attaches each StreamID with: bits the SMMU ignores when
    /// matching (0: exact match).
    pub smr_mask: u16,
}

impl Mmu500 {
    /// Context banks for devices: every stage-1 bank but the one the SMMUv2 driver
    /// reserves at start-up as the sink of blocked devices' streams (`smmuv2::Smmu::
    /// sink_bank`: their DMA faults there without waking the IOMMU PD).
    pub fn device_banks(&self) -> usize {
        self.context_banks.saturating_sub(1)
    }
}

/// How a SoC numbers the StreamIDs its masters present to the MMU-500.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamScheme {
    /// ZynqMP: the TBU the master sits behind in bits [14:10], its master ID in [9:0]
    /// (Xilinx UG1085, "System Memory Management Unit", the master ID table); TBUs 0 to
    /// `tbus - 1` exist.
    TbuMaster { tbus: u32 },
    /// i.MX8QXP: the System Controller Unit's firmware gives each master a StreamID of
    /// `bits` bits (`sc_rm_set_master_sid`); the SMMU sees the rest of the 15 bits as
    /// the interconnect fills them, so each is matched under the mask NXP's device trees
    /// give (`iommus = <&smmu SID 0x7f80>`).
    Scu { bits: u32 },
}

/// ZynqMP's MMU-500 (zcu102, ultra96v2, kria_k26): Linux's `zynqmp.dtsi`
/// (`smmu: iommu@fd800000`, `reg = <0x0 0xfd800000 0x0 0x20000>`, every interrupt
/// `<0 155 4>`: SPI 155, INTID 187, as seL4's zynqmp platform header has it,
/// `INTERRUPT_SMMU 187`); `smmuv2::model::ZYNQMP` (16 context banks, 48 SMRs, 15 StreamID
/// bits); TBU0 to TBU5 (UG1085's SMMU chapter).
pub const ZYNQMP_MMU500: Mmu500 = Mmu500 {
    soc: "ZynqMP",
    frame: (0xfd80_0000, 0x2_0000),
    stream_bits: 15,
    context_banks: 16,
    smrs: 48,
    irq: 187,
    scheme: StreamScheme::TbuMaster { tbus: 6 },
    smr_mask: 0,
};

/// i.MX8QXP's MMU-500 (tqma8xqp1gb): NXP's i.MX8 device trees (`smmu: iommu@51400000`,
/// `reg = <0 0x51400000 0 0x40000>`, every interrupt `<GIC_SPI 32 ...>`: INTID 64;
/// `iommus = <&smmu SID 0x7f80>`); `smmuv2::model::IMX8QXP` (32 context banks, 32 SMRs,
/// 15 StreamID bits, of which the SCU assigns 7).
pub const IMX8QXP_MMU500: Mmu500 = Mmu500 {
    soc: "i.MX8QXP",
    frame: (0x5140_0000, 0x4_0000),
    stream_bits: 15,
    context_banks: 32,
    smrs: 32,
    irq: 64,
    scheme: StreamScheme::Scu { bits: 7 },
    smr_mask: 0x7f80,
};

/// One entry of a PCI host bridge's `iommu-map` (Documentation/devicetree/bindings/pci/
/// pci-iommu.yaml): requester IDs `rid_base..rid_base + length` (after `iommu-map-mask`)
/// are StreamIDs `stream_base..` of the SMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IommuMap {
    pub rid_base: u32,
    pub stream_base: u32,
    pub length: u32,
}

/// A board's PCI Express host bridge, as its device tree gives it: where configuration
/// space (ECAM) and the memory and I/O windows are, and how requester IDs become
/// StreamIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciHost {
    /// ECAM: physical address and size (1 MiB a bus).
    pub ecam: (u64, u64),
    /// The 32-bit memory window (physical = PCI bus address): where BARs are placed, and
    /// addresses a device's request may be routed to a peer at rather than to the SMMU.
    pub mem: (u64, u64),
    /// The I/O port window, seen by the CPUs as memory.
    pub io: (u64, u64),
    /// `iommu-map`, and `iommu-map-mask` (all ones when the property is absent).
    pub iommu_map: &'static [IommuMap],
    pub iommu_map_mask: u32,
    /// The host bridge routes one root-bus function's request to another's BAR (peer to
    /// peer) instead of to the SMMU. Where it does not, a root-bus function's IOVAs inside
    /// the memory window still reach the SMMU; below a bridge they never may (PCI Express
    /// bridges route by their windows).
    pub root_bus_peer_to_peer: bool,
    /// Its `interrupt-map` (with `interrupt-map-mask = <0x1800 0 0 7>`: the low two bits
    /// of the slot, and the pin): the interrupt number (the GIC's INTID, as an `<irq>`
    /// names it) of INTx pin `[slot & 3][pin]` (0 INTA# .. 3 INTD#) of a root-bus slot.
    pub intx: [[u64; 4]; 4],
}

impl PciHost {
    /// The interrupt number an `<irq>` names for INTx pin `pin` (0 INTA# .. 3 INTD#) of
    /// root-bus slot `slot` (`intx`).
    pub fn intx_line(&self, slot: u8, pin: u8) -> u64 {
        self.intx[usize::from(slot & 3)][usize::from(pin & 3)]
    }

    /// The buses ECAM covers.
    pub fn buses(&self) -> u64 {
        self.ecam.1 >> 20
    }

    /// The StreamID the SMMU sees for requester ID `rid` (after DMA aliasing), through
    /// `iommu-map` as Linux's `of_map_id` reads it (drivers/of/base.c): the ID masked with
    /// `iommu-map-mask`, then the first entry whose range holds it; `None` when none does
    /// (the device has no StreamID on this SMMU).
    pub fn stream_of(&self, rid: u16) -> Option<u32> {
        let id = u32::from(rid) & self.iommu_map_mask;
        self.iommu_map
            .iter()
            .find(|m| id >= m.rid_base && id - m.rid_base < m.length)
            .map(|m| id - m.rid_base + m.stream_base)
    }
}

/// QEMU virt with `highmem=off` (hw/arm/virt.c, `base_memmap`): VIRT_PCIE_MMIO at
/// 0x1000_0000, 0x2eff_0000 bytes; VIRT_PCIE_PIO at 0x3eff_0000, 0x1_0000 bytes;
/// VIRT_PCIE_ECAM at 0x3f00_0000, 0x100_0000 bytes (16 buses). `create_pcie` gives the
/// host bridge `iommu-map = <0x0 &smmu 0x0 0x10000>` and no `iommu-map-mask`: the
/// identity. Its host bridge (GPEX) routes no request between root-bus functions: every
/// device's DMA goes to the SMMU's address space (hw/pci/pci.c,
/// `pci_device_iommu_address_space`).
pub const QEMU_VIRT_PCI: PciHost = PciHost {
    ecam: (0x3f00_0000, 0x100_0000),
    mem: (0x1000_0000, 0x2eff_0000),
    io: (0x3eff_0000, 0x1_0000),
    iommu_map: &[IommuMap { rid_base: 0, stream_base: 0, length: 0x1_0000 }],
    iommu_map_mask: 0xffff_ffff,
    root_bus_peer_to_peer: false,
    intx: qemu_virt_intx(),
};

/// QEMU virt's INTx lines (hw/arm/virt.c, `create_pcie_irq_map`): pin `pin` of slot
/// `slot` is SPI `3 + (pin + slot) % 4` (VIRT_PCIE's SPI is 3), INTID 32 more; 35 to 38.
const fn qemu_virt_intx() -> [[u64; 4]; 4] {
    let mut map = [[0; 4]; 4];
    let mut slot = 0;
    while slot < 4 {
        let mut pin = 0;
        while pin < 4 {
            map[slot][pin] = 32 + 3 + ((pin + slot) % 4) as u64;
            pin += 1;
        }
        slot += 1;
    }
    map
}

/// A Microkit board's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    pub name: &'static str,
    pub target: Target,
    pub iommu: BoardIommu,
    /// Physical address bits seL4 is built for on the board (`CONFIG_ARM_PA_SIZE_BITS_*`):
    /// no region can lie above them.
    pub pa_bits: u32,
    /// The end (exclusive) of what a PD may map, before its stack and IPC buffer: the
    /// Microkit tool's `pd_map_max_vaddr` with the default 8 KiB stack
    /// (`vspace_user_top` + 1 - IPC buffer page - guard page - stack).
    pub pd_vaddr_end: u64,
    /// The end (exclusive) of a guest's physical address space (`vm_map_max_vaddr`).
    pub vm_vaddr_end: u64,
    /// Its PCI Express host bridge, where this tool knows it.
    pub pci: Option<PciHost>,
    /// Its RAM, (physical address, size) per range: every fixed-address region a device may
    /// reach lies inside one. Empty where this tool does not know the board (there it
    /// refuses `<iommu>`, so no device is given anything).
    pub ram: &'static [(u64, u64)],
    /// Where the SDK's loader puts the kernel and, after it, the capDL initialiser (every
    /// program's pages and the spec): from the kernel's load address to the loader's link
    /// address, (physical address, size). The Microkit tool refuses a fixed-address region
    /// whose frames fall where it placed those ("is not in any valid memory region"), and
    /// the initialiser's size is known only to it, so a fixed-address region anywhere in
    /// this room is refused here (`regions`). `None` where this tool does not know it.
    pub kernel_room: Option<(u64, u64)>,
    /// The cores seL4 is built for in the Microkit configuration the description is for
    /// (`--config`), or `None` where it is not given: a PD's or vCPU's `cpu` must be below
    /// it, and domains are scheduled on one core only (sdf.rs).
    pub cores: Option<u64>,
    /// The highest interrupt number seL4 takes on the board (its `maxIRQ`: MAX_IRQ in
    /// seL4's src/plat/<platform>/config.cmake at the SDK's commit; `Arch_checkIRQ` refuses a
    /// higher one, "IRQ is out of range", and the capDL initialiser stops at boot), or
    /// `None` where this tool does not know the board (every Arm `irq` is then unproven).
    pub max_irq: Option<u64>,
    /// Its generic timer's frequency, Hz (the SDK's CONFIG_TIMER_FREQUENCY, board/<board>/
    /// <config>/include/kernel/gen_config.h): what the IOMMU PD counts its fault storm
    /// window in.
    pub timer_hz: Option<u64>,
    /// A PD may program the EL1 physical timer (CNTP_CTL_EL0, CNTP_CVAL_EL0), so its
    /// interrupt (PPI 30) can fire: the SDK builds the board with KernelArmExportPTMRUser
    /// (Microkit's build_sdk.py: qemu_virt_aarch64 only; the SDK's gen_config.h,
    /// CONFIG_EXPORT_PTMR_USER). Elsewhere seL4 leaves CNTKCTL_EL1.EL0PTEN and
    /// CNTHCTL_EL2.EL1PCEN 0 (src/arch/arm/armv/armv8-a/64/user_access.c) and the access traps.
    pub user_timer: bool,
}

/// QEMU virt's RAM as the SDK's seL4 for `qemu_virt_aarch64` is built for: VIRT_MEM at
/// 0x4000_0000 (hw/arm/virt.c, `base_memmap`), 2 GiB (Microkit's build_sdk.py,
/// `QEMU_MEMORY: 2048`; the images boot with `-m size=2G`). seL4's hypervisor build
/// reserves the first 512 MiB for guests (src/plat/qemu-arm-virt/
/// overlay-reserve-vm-memory.dts, `no-map`), so the SDK's platform_gen.json lists only
/// 0x6000_0000..0xc000_0000 as memory and Microkit makes device untypeds of the rest; it
/// is RAM all the same (libvmm's examples put their guests' RAM there).
pub const QEMU_VIRT_RAM: &[(u64, u64)] = &[(0x4000_0000, 0x8000_0000)];

/// zcu102's DDR: seL4's tools/dts/zynqmp.dts, `memory@0`, `reg = <0x0 0x0 0x0 0x80000000
/// 0x8 0x0 0x0 0x80000000>`; the SDK's platform_gen.json lists the same two ranges.
pub const ZCU102_RAM: &[(u64, u64)] = &[(0, 0x8000_0000), (0x8_0000_0000, 0x8000_0000)];

/// ultra96v2's: seL4's tools/dts/ultra96v2.dts, `memory`, `reg = <0x0 0x0 0x0
/// 0x7ff00000>` (the last MiB below 2 GiB is not in it). Its `reserved-memory`
/// (`rproc@3ed000000`, 16 MiB for the R5s, `no-map`) is RAM, and stays in.
pub const ULTRA96V2_RAM: &[(u64, u64)] = &[(0, 0x7ff0_0000)];

/// kria_k26's: Microkit's custom_dts/overlay-zynqmp-kria-k26.dts (the SDK's build_sdk.py
/// builds the board with it), `memory@0`, `reg = <0x00 0x00 0x00 0x7ff00000 0x08 0x00
/// 0x00 0x80000000>`.
pub const KRIA_K26_RAM: &[(u64, u64)] = &[(0, 0x7ff0_0000), (0x8_0000_0000, 0x8000_0000)];

/// tqma8xqp1gb's: seL4's tools/dts/tqma8xqp1gb.dts, `memory@80000000`, `reg = <0x0
/// 0x80200000 0x0 0x3fe00000>` (seL4's overlay deletes the DSP's and Linux's CMA
/// reservations, so those are plain RAM); the SDK's platform_gen.json lists the same. The
/// 2 MiB below it is the firmware's (ARM Trusted Firmware), not the system's.
pub const TQMA8XQP1GB_RAM: &[(u64, u64)] = &[(0x8020_0000, 0x3fe0_0000)];

/// The page sizes the Microkit tool maps with on every architecture it supports
/// (`Config::page_sizes`).
pub const PAGE_SIZES: [u64; 2] = [0x1000, 0x20_0000];

/// A PD's stack when its `stack_size` does not say (Microkit's `PD_DEFAULT_STACK_SIZE`).
pub const DEFAULT_STACK_SIZE: u64 = 0x2000;

/// `vspace_user_top + 1` of the SDK's aarch64 and x86_64 boards (2^40, the SDK's
/// `address_space_constants.json`).
pub const VSPACE_END: u64 = 1 << 40;

/// `VSPACE_END` less the IPC buffer, its guard page and the default stack.
const PD_VADDR_END: u64 = VSPACE_END - 0x1000 - 0x1000 - DEFAULT_STACK_SIZE;

/// The board `check` assumes when the command line names none.
pub const DEFAULT_BOARD: &str = "qemu_virt_aarch64";

impl Board {
    /// The end (exclusive) of what a PD with a `stack_size`-byte stack may map: its stack
    /// lies below the IPC buffer's guard page, so a larger stack than the default ends the
    /// PD's maps lower (the Microkit tool's `pd_map_max_vaddr(stack_size)`).
    pub fn pd_map_end(&self, stack_size: u64) -> u64 {
        (self.pd_vaddr_end + DEFAULT_STACK_SIZE).saturating_sub(stack_size)
    }

    /// The board named `name`, as the Microkit tool's `--board` takes it.
    pub fn named(name: &str) -> Board {
        let (iommu, pa_bits) = match name {
            // QEMU's SMMUv3 has 16 StreamID bits (hw/arm/smmuv3-internal.h,
            // SMMU_IDR1_SIDSIZE); the SDK's seL4 for qemu_virt_aarch64 is built with
            // CONFIG_ARM_PA_SIZE_BITS_40.
            // Its registers: hw/arm/virt.c's VIRT_SMMU, 0x09050000 and 0x20000 bytes.
            // Coherent: virt.c's create_smmu and create_pcie give both nodes `dma-coherent`.
            // Its interrupts: VIRT_SMMU's SPIs 74 to 77 (virt.c's a15irqmap), in the order
            // of hw/arm/smmuv3-internal.h's SMMU_IRQ_EVTQ .. SMMU_IRQ_GERROR, so the event
            // queue's is 32 + 74 and the global errors' 32 + 77. Its event queue: up to
            // 2^19 records (hw/arm/smmuv3-internal.h, SMMU_EVENTQS; smmuv3's QEMU_IDR).
            "qemu_virt_aarch64" => (
                BoardIommu::SmmuV3 {
                    stream_bits: 16,
                    frame: (0x0905_0000, 0x2_0000),
                    coherent: true,
                    irqs: (106, 109),
                    eventq_log2: 19,
                },
                40,
            ),
            // ZynqMP and i.MX8QXP: Arm MMU-500s, with 40-bit physical addresses (Xilinx
            // UG1085, NXP i.MX8QXP reference manual; the SDK's seL4 for zcu102 is built
            // with CONFIG_ARM_PA_SIZE_BITS_40).
            "zcu102" | "ultra96v2" | "kria_k26" => (BoardIommu::Mmu500(ZYNQMP_MMU500), 40),
            "tqma8xqp1gb" => (BoardIommu::Mmu500(IMX8QXP_MMU500), 40),
            n if n.starts_with("x86_64") => (BoardIommu::Vtd, 48),
            _ => (BoardIommu::Unknown, 48),
        };
        let name = BOARDS.iter().copied().find(|b| *b == name).unwrap_or("(unknown board)");
        Board {
            name,
            target: Target::of_board(name),
            iommu,
            pa_bits,
            pd_vaddr_end: PD_VADDR_END,
            vm_vaddr_end: 1 << 40,
            pci: (name == "qemu_virt_aarch64").then_some(QEMU_VIRT_PCI),
            ram: match name {
                "qemu_virt_aarch64" => QEMU_VIRT_RAM,
                "zcu102" => ZCU102_RAM,
                "ultra96v2" => ULTRA96V2_RAM,
                "kria_k26" => KRIA_K26_RAM,
                "tqma8xqp1gb" => TQMA8XQP1GB_RAM,
                _ => &[],
            },
            // The SDK's sel4.elf's LOAD paddr to its loader.elf's (program_sizes reads the
            // same room for the programs' bound).
            kernel_room: match name {
                "qemu_virt_aarch64" => Some((0x6000_0000, 0x1000_0000)),
                "tqma8xqp1gb" => Some((0x8020_0000, 0x9000_0000 - 0x8020_0000)),
                "zcu102" => Some((0, 0x4000_0000)),
                _ => None,
            },
            cores: None,
            // qemu-arm-virt: MAX_IRQ 159; zynqmp (zcu102, ultra96v2 and kria_k26 are
            // built on it): 187; tqma8xqp1gb: 511. TIMER_FREQUENCY: 62.5 MHz, 100 MHz, 8 MHz.
            max_irq: match name {
                "qemu_virt_aarch64" => Some(159),
                "zcu102" | "ultra96v2" | "kria_k26" => Some(187),
                "tqma8xqp1gb" => Some(511),
                _ => None,
            },
            timer_hz: match name {
                "qemu_virt_aarch64" => Some(62_500_000),
                "zcu102" | "ultra96v2" | "kria_k26" => Some(100_000_000),
                "tqma8xqp1gb" => Some(8_000_000),
                _ => None,
            },
            user_timer: name == "qemu_virt_aarch64",
        }
    }

    /// This board in the Microkit configuration `config` (as the Microkit tool's `--config`
    /// takes it): its cores are the SDK's CONFIG_MAX_NUM_NODES, 4 in an `smp-` configuration
    /// and 1 in any other (board/<board>/<config>/include/kernel/gen_config.h, the same for
    /// the three boards the SDK has).
    pub fn with_config(self, config: &str) -> Board {
        Board { cores: Some(if config.starts_with("smp-") { 4 } else { 1 }), ..self }
    }

    /// The SMMU's StreamID bits, on a board whose SMMU the IOMMU PD drives.
    pub fn stream_bits(&self) -> Option<u32> {
        match self.iommu {
            BoardIommu::SmmuV3 { stream_bits, .. } => Some(stream_bits),
            BoardIommu::Mmu500(m) => Some(m.stream_bits),
            _ => None,
        }
    }

    /// The SMMU's register frame (physical address, size), on a board whose SMMU the
    /// IOMMU PD drives.
    pub fn smmu_frame(&self) -> Option<(u64, u64)> {
        match self.iommu {
            BoardIommu::SmmuV3 { frame, .. } | BoardIommu::Mmu500(Mmu500 { frame, .. }) => Some(frame),
            _ => None,
        }
    }

    /// `[start, end)` lies wholly inside one of the board's RAM ranges.
    pub fn in_ram(&self, start: u128, end: u128) -> bool {
        self.ram.iter().any(|&(base, size)| start >= u128::from(base) && end <= u128::from(base) + u128::from(size))
    }

    /// The board's RAM ranges, for messages: `0x40000000..0xc0000000`, comma-separated.
    pub fn ram_text(&self) -> String {
        let ranges: Vec<String> =
            self.ram.iter().map(|&(b, s)| format!("{b:#x}..{:#x}", u128::from(b) + u128::from(s))).collect();
        ranges.join(", ")
    }

    /// The end (exclusive) of physical memory on the board.
    pub fn pa_end(&self) -> u128 {
        1u128 << self.pa_bits
    }
}

impl Default for Board {
    fn default() -> Board {
        Board::named(DEFAULT_BOARD)
    }
}

/// The boards this tool knows by name (others are Arm boards with no IOMMU it drives).
const BOARDS: &[&str] =
    &["qemu_virt_aarch64", "zcu102", "ultra96v2", "kria_k26", "tqma8xqp1gb", "x86_64_generic", "x86_64_generic_vtx"];
