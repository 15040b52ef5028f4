//! The IOMMU service core: the hardware-independent logic of the IOMMU protection domain.
//!
//! What it is for: deciding, for every request a driver PD makes over its channel, whether
//! a device may reach some memory, and keeping the IOMMU's tables equal to what the
//! capabilities allow; attributing device faults and routing them to their owners.
//!
//! What it must never do: let a device reach memory its owner holds no capability for
//! (by any sequence of requests from any number of clients), answer before a removal of
//! access is confirmed by the IOMMU, panic on a request, or allocate. Running out of a
//! fixed table is an error reply.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod faults;
pub mod hw;
pub mod index;
pub mod lines;
#[cfg(any(test, feature = "model"))]
pub mod model;
pub mod pacing;
pub mod pci;
pub mod poll;
pub mod reach;
pub mod service;

pub use config::{
    BridgeConfig, BridgeKind, CapConfig, ClientConfig, Config, DeviceConfig, FaultPolicy, PciFunctionConfig,
    RegionConfig, StaticMapConfig,
};
pub use faults::{FaultRecord, FaultRing};
pub use hw::{DeviceIndex, HwError, IommuHw, MapRefused};
pub use service::{
    state_sizes, ClientTables, ConfigError, FaultInput, OwnedStorage, Routed, Service, StateSizes, Stats, Storage,
};
