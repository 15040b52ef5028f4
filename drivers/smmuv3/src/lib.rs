//! An Arm SMMUv3 driver (Arm IHI 0070) for the IOMMU protection domain: stream table,
//! context descriptors, stage-1 and stage-2 VMSAv8-64 page tables, command and event queues.
//!
//! What it is for: making sure a DMA-capable device reaches only the memory it has been
//! given. From `Smmu::init` on, every stream aborts until `attach` gives it a context;
//! everything that removes or narrows access returns only after the SMMU has confirmed
//! the invalidation (CMD_SYNC consumed), or returns an error.
//!
//! What it must never do: allocate (all memory is handed in at `init`), panic on a
//! caller's request, hang on the hardware (every wait is bounded), or let a device map
//! the SMMU's own tables and queues.
//!
//! The registers sit behind the `Mmio` trait: `MmioRegisters` is the real register file;
//! `model::SmmuModel` (feature `model`) is a host model used by tests and benchmarks.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod addr;
pub mod barrier;
pub mod cd;
pub mod cmd;
pub mod coherency;
// The register macros generate items that cannot carry doc comments.
#[allow(missing_docs)]
pub mod device;
pub mod entry;
pub mod errata;
pub mod event;
pub mod field;
pub mod mmio;
#[cfg(any(test, feature = "model"))]
pub mod model;
pub mod pagetable;
pub mod probe;
pub mod queue;
pub mod ste;
pub mod tlbi;

mod driver;

pub use addr::{Asid, DmaRegion, Iova, PhysAddr, StreamId, Vmid};
#[cfg(target_arch = "aarch64")]
pub use coherency::ArmCacheOps;
pub use coherency::{CacheOps, Coherency};
pub use driver::*;
pub use event::{Access, Event, EventRecord};
pub use mmio::{Mmio, MmioRegisters};
pub use pagetable::{MemType, PageTableError, Perm};
pub use probe::{Features, Unsupported};
