//! The service's tables: the caller gives them (their sizes come from the system
//! description), and what each kind of slot costs.

use super::*;

/// The service's tables, given by the caller: their sizes come from the system
/// description (the IOMMU PD's are generated from it), and the fault rings can live in
/// memory shared with the clients (one page each, mapped read-only into its client).
#[derive(Debug)]
pub struct Storage<'a> {
    /// Capability slots: the boot capabilities plus room for grants.
    pub caps: &'a mut [Option<Cap>],
    /// Mapping slots, over all devices.
    pub mappings: &'a mut [Option<Mapping>],
    /// The devices' indexes: at least `index::leaves_for(mapping slots, devices)` leaves
    /// and `index::inners_for(...)` inner nodes.
    pub leaves: &'a mut [Leaf],
    /// See `leaves`.
    pub inners: &'a mut [Inner],
    /// One per mapping slot: the free slots, as a stack.
    pub free: &'a mut [u16],
    /// One per client.
    pub clients: &'a mut [ClientTables],
    /// One per device.
    pub devices: &'a mut [DeviceState],
    /// One per client.
    pub rings: &'a mut [FaultRing],
}

/// Storage in one value, for tests and for systems that do not share the rings. `LEAVES`
/// and `INNERS` are what `index::leaves_for` and `index::inners_for` say for `MAPPINGS`
/// and `DEVICES`; `owned_storage!` fills them in.
#[derive(Debug)]
pub struct OwnedStorage<
    const CLIENTS: usize,
    const DEVICES: usize,
    const CAPS: usize,
    const MAPPINGS: usize,
    const LEAVES: usize,
    const INNERS: usize,
> {
    caps: [Option<Cap>; CAPS],
    mappings: [Option<Mapping>; MAPPINGS],
    leaves: [Leaf; LEAVES],
    inners: [Inner; INNERS],
    free: [u16; MAPPINGS],
    clients: [ClientTables; CLIENTS],
    devices: [DeviceState; DEVICES],
    rings: [FaultRing; CLIENTS],
}

/// The `OwnedStorage` type for these numbers of clients, devices, capability slots and
/// mapping slots, with the index's pools sized to match.
#[macro_export]
macro_rules! owned_storage {
    ($clients:expr, $devices:expr, $caps:expr, $mappings:expr) => {
        $crate::OwnedStorage<
            { $clients },
            { $devices },
            { $caps },
            { $mappings },
            { $crate::index::leaves_for($mappings, $devices) },
            { $crate::index::inners_for($mappings, $devices) },
        >
    };
}

impl<
        const CLIENTS: usize,
        const DEVICES: usize,
        const CAPS: usize,
        const MAPPINGS: usize,
        const LEAVES: usize,
        const INNERS: usize,
    > Default for OwnedStorage<CLIENTS, DEVICES, CAPS, MAPPINGS, LEAVES, INNERS>
{
    fn default() -> Self {
        Self {
            caps: [None; CAPS],
            mappings: [None; MAPPINGS],
            leaves: [Leaf::default(); LEAVES],
            inners: [Inner::default(); INNERS],
            free: [0; MAPPINGS],
            clients: [ClientTables::default(); CLIENTS],
            devices: [DeviceState::default(); DEVICES],
            rings: core::array::from_fn(|_| FaultRing::default()),
        }
    }
}

impl<
        const CLIENTS: usize,
        const DEVICES: usize,
        const CAPS: usize,
        const MAPPINGS: usize,
        const LEAVES: usize,
        const INNERS: usize,
    > OwnedStorage<CLIENTS, DEVICES, CAPS, MAPPINGS, LEAVES, INNERS>
{
    /// Borrow it as `Storage`, with fault rings that live elsewhere (in memory shared
    /// with the clients).
    pub fn storage_with_rings<'a>(&'a mut self, rings: &'a mut [FaultRing]) -> Storage<'a> {
        Storage { rings, ..self.parts().0 }
    }

    /// Borrow it as `Storage`.
    pub fn storage(&mut self) -> Storage<'_> {
        let (storage, rings) = self.parts();
        Storage { rings, ..storage }
    }

    /// Every table but the rings, and the rings apart.
    fn parts(&mut self) -> (Storage<'_>, &mut [FaultRing]) {
        let storage = Storage {
            caps: &mut self.caps,
            mappings: &mut self.mappings,
            leaves: &mut self.leaves,
            inners: &mut self.inners,
            free: &mut self.free,
            clients: &mut self.clients,
            devices: &mut self.devices,
            rings: &mut [],
        };
        (storage, &mut self.rings)
    }
}

/// Bytes of the service's state: the tables are sized from the system description, so
/// these are the cost of one slot of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSizes {
    /// Handle table, fault ring and usage counters of one client.
    pub per_client: usize,
    /// One capability slot.
    pub per_capability: usize,
    /// One mapping slot, with its place in the index.
    pub per_mapping: usize,
    /// One device's storm and quarantine state.
    pub per_device: usize,
    /// The service value itself, without its tables and the IOMMU it drives.
    pub fixed: usize,
}

/// Bytes of index nodes a table of `slots` mapping slots over `devices` devices has.
fn pool_bytes(slots: usize, devices: usize) -> usize {
    use core::mem::size_of;
    size_of::<Leaf>() * index::leaves_for(slots, devices) + size_of::<Inner>() * index::inners_for(slots, devices)
}

/// The sizes of the service's state.
pub fn state_sizes() -> StateSizes {
    use core::mem::size_of;
    struct NoHw;
    impl IommuHw for NoHw {
        fn enable(&mut self, _: DeviceIndex) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn block(&mut self, _: DeviceIndex) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn map(
            &mut self,
            _: DeviceIndex,
            _: u64,
            _: u64,
            _: u64,
            _: Rights,
        ) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn unmap(&mut self, _: DeviceIndex, _: &[(u64, u64)]) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn retry_unmap(&mut self, _: DeviceIndex, _: &[(u64, u64)]) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn unmap_deferred(&mut self, _: DeviceIndex, _: u64, _: u64) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
        fn sync_unmaps(&mut self) -> core::result::Result<(), crate::hw::HwError> {
            Ok(())
        }
    }
    StateSizes {
        per_client: size_of::<ClientTables>() + size_of::<FaultRing>(),
        per_capability: size_of::<Option<Cap>>(),
        // A slot's share of the index's pools when the table is large: a leaf per 8 slots,
        // an inner node per 56 or so.
        per_mapping: size_of::<Option<Mapping>>()
            + size_of::<u16>()
            + (pool_bytes(MAX_MAPPINGS, 0) - pool_bytes(0, 0)).div_ceil(MAX_MAPPINGS),
        // With its share of the pools: a root leaf and a root at each inner level.
        per_device: size_of::<DeviceState>() + pool_bytes(0, 1) - pool_bytes(0, 0),
        // With the spares an insertion asks for, one set per table.
        fixed: size_of::<Service<'static, NoHw>>() + pool_bytes(0, 0),
    }
}
