//! Memory for a driver running against the host model: page-aligned, zeroed, leaked,
//! with physical address == host address (as the model expects).
// Each test binary uses only some of these.
#![allow(dead_code, unused_imports)]

use smmuv3::DmaRegion;

pub use smmuv3::model::{host_config as config, host_memory as memory, host_region as region, host_smmu as smmu};

/// Host memory to map: `len` bytes aligned to `align`.
pub fn buffer(len: usize, align: usize) -> DmaRegion {
    region(len, align)
}

/// xorshift64*: reproducible random tests without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
