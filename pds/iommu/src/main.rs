//! The IOMMU protection domain (first part): brings the SMMUv3 up in default-deny order
//! before any driver PD can start a DMA, and reports what it found.
//!
//! Its memory comes from the system description: the SMMU's registers (a device region
//! at the SMMU's physical address) and the regions for the stream table, queues, context
//! descriptors and page tables, whose physical addresses the Microkit tool patches into
//! the `*_paddr` symbols (`setvar region_paddr`).
#![no_std]
#![no_main]

use core::ptr::NonNull;

use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, var, Handler, Infallible};
use smmuv3::{Config, DmaRegion, Memory, MmioRegisters, PhysAddr, Smmu, StreamId};

/// A region's virtual address (`setvar_vaddr`) and physical address (`setvar region_paddr`).
macro_rules! region {
    ($va:ident, $pa:ident, $len:expr) => {{
        let va: NonNull<u8> = memory_region_symbol!($va: *mut u8);
        let pa = *var!($pa: usize = 0) as u64;
        DmaRegion { pa: PhysAddr(pa), va, len: $len }
    }};
}

#[protection_domain]
fn init() -> IommuPd {
    let regs: NonNull<u8> = memory_region_symbol!(smmu_regs: *mut u8);
    let mem = Memory {
        stream_table: region!(smmu_strtab, smmu_strtab_paddr, 0x20_0000),
        cmdq: region!(smmu_cmdq, smmu_cmdq_paddr, 0x1000),
        eventq: region!(smmu_eventq, smmu_eventq_paddr, 0x1000),
        cds: region!(smmu_cds, smmu_cds_paddr, 0x1000),
        tables: region!(smmu_tables, smmu_tables_paddr, 0x4_0000),
    };
    let config = Config { ias_bits: 48, sid_bits: 16, poll_limit: 1_000_000, interrupts: true };
    // SAFETY: the description maps the SMMU's registers into this PD only, uncached, and
    // gives it the table and queue regions alone.
    let smmu = unsafe { Smmu::init(MmioRegisters::new(regs), mem, config) };
    match smmu {
        Ok(mut smmu) => {
            let f = *smmu.features();
            debug_println!(
                "iommu: SMMUv3.{} up: {}-bit StreamIDs, {}-bit output, two-level stream table {}",
                f.arch_minor,
                f.sid_bits,
                f.oas_bits,
                f.two_level_strtab
            );
            debug_println!(
                "iommu: GBPA.ABORT {}; every stream aborts until its driver maps memory",
                if smmu.gbpa_aborts() { "set" } else { "not implemented by this SMMU" }
            );
            // Read back one stream's entry as the SMMU sees it.
            let sid = StreamId(0x10);
            let _ = smmu.prepare_stream(sid);
            match smmu.ste(sid) {
                Ok(ste) => debug_println!("iommu: stream {sid}: {:?}", ste.config()),
                Err(e) => debug_println!("iommu: stream {sid}: {e}"),
            }
            IommuPd { smmu: Some(smmu) }
        }
        Err(e) => {
            debug_println!("iommu: SMMU not brought up: {e}");
            IommuPd { smmu: None }
        }
    }
}

struct IommuPd {
    // Held for the request and interrupt paths (issue 4); until then only owned.
    #[allow(dead_code)]
    smmu: Option<Smmu<MmioRegisters>>,
}

impl Handler for IommuPd {
    type Error = Infallible;
}
