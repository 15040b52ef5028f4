//! Memory for a driver running against the host model: page-aligned, zeroed, leaked,
//! with physical address == host address (as the model expects).
#![allow(dead_code)]

use smmuv3::model::SmmuModel;
use smmuv3::{Config, DmaRegion, Memory, Smmu};

pub use smmuv3::model::host_region as region;

/// Memory like the QEMU image gives: 64 KiB two-level stream table, 4 KiB queues.
pub fn memory(table_pages: usize) -> Memory {
    Memory {
        stream_table: region(64 << 10, 64 << 10),
        cmdq: region(4096, 4096),
        eventq: region(4096, 4096),
        cds: region(4096, 4096),
        tables: region(table_pages * 4096, 4096),
    }
}

pub fn config() -> Config {
    Config { ias_bits: 48, sid_bits: 16, poll_limit: 1000, interrupts: true }
}

/// A driver initialised on a QEMU-like model (48-bit output addresses).
pub fn smmu(table_pages: usize) -> Smmu<SmmuModel> {
    // SAFETY: the memory is fresh and leaked; the model is the only register file.
    unsafe { Smmu::init(SmmuModel::host(), memory(table_pages), config()) }.expect("init")
}

/// Host memory to map: `pages` pages aligned to `align`.
pub fn buffer(len: usize, align: usize) -> DmaRegion {
    region(len, align)
}
