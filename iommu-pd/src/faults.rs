//! Fault records and rings: their layout is shared with clients, so it is declared in the
//! protocol crate; the service writes them.

pub use iommu_protocol::faults::{FaultRecord, FaultRing, FAULT_RING};
