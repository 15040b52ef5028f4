//! The static policy, as the system description gives it: clients, their devices, the
//! memory regions, the capabilities each client starts with, quotas and fault policy.
//! The IOMMU PD's copy is generated at build time; tests write it by hand.

use iommu_protocol::Rights;

/// A client PD.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Name, for fault reports.
    pub name: &'static str,
    /// Most mappings it may hold at once, over all its devices.
    pub max_mappings: u32,
    /// Most 4 KiB pages it may have mapped at once.
    pub max_pages: u64,
    /// Most capabilities it may have granted at once (made by GRANT and not yet revoked
    /// or released). The service's tables are sized for every client's quota, so no
    /// client can use up a slot another needs.
    pub max_grants: u32,
}

/// A DMA-capable device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceConfig {
    /// Name, for fault reports.
    pub name: &'static str,
    /// Its StreamID.
    pub stream: u32,
    /// More StreamIDs of the same device, sharing its address space (a device that emits
    /// several: the functions of one PCIe device, a controller's masters). Its faults on
    /// any of them are its own.
    pub extra_streams: &'static [u32],
    /// The client that drives it, or `NO_OWNER` for a device that only has the
    /// description's static mappings (Microkit's `io_address_space` with `iomap`s, as on
    /// x86: no PD asks for anything).
    pub owner: usize,
    /// Start of the IOVA window the service hands out and accepts for it.
    pub iova_base: u64,
    /// Size of that window.
    pub iova_size: u64,
    /// May the owner resume the device after a quarantine?
    pub resume_allowed: bool,
}

/// `DeviceConfig::owner` of a device no client drives.
pub const NO_OWNER: usize = usize::MAX;

/// A memory region devices may be given.
#[derive(Debug, Clone, Copy)]
pub struct RegionConfig {
    /// Name, for fault reports.
    pub name: &'static str,
    /// Physical address.
    pub pa: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A capability a client holds from boot: handle number = its position among the
/// client's capabilities in this list.
#[derive(Debug, Clone, Copy)]
pub struct CapConfig {
    /// Holder.
    pub client: usize,
    /// Region.
    pub region: usize,
    /// Offset into the region.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// What devices may do with it.
    pub rights: Rights,
    /// Which devices (bit n = device n, all the holder's) it may be mapped for.
    pub devices: u64,
    /// Which clients (bit n = client n) it, or anything derived from it, may be granted
    /// to; 0 for none. Delegation is bounded by the description, so what a device can
    /// ever reach is known before the system runs.
    pub grant_to: u64,
}

/// A mapping the description fixes (Microkit's `iomap`): made at boot and after a
/// client restart, never removed by the client.
#[derive(Debug, Clone, Copy)]
pub struct StaticMapConfig {
    /// The device.
    pub device: usize,
    /// The region.
    pub region: usize,
    /// Offset into the region.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Where the device sees it.
    pub iova: u64,
    /// What the device may do.
    pub rights: Rights,
}

/// Fault storms: more than `max_faults` faults from one device within `window` ticks
/// quarantine it (its stream aborts) until the owner resumes it, if allowed. "Within" is
/// a sliding window, estimated from the open window and the one before it (see
/// `DeviceState::count_fault`).
#[derive(Debug, Clone, Copy)]
pub struct FaultPolicy {
    /// Length of the window, in the caller's ticks.
    pub window: u64,
    /// Faults allowed per window.
    pub max_faults: u32,
    /// The window again, in `ConfigSpace::now_ms` milliseconds (rounded up): a device
    /// resumed from a storm quarantine may be resumed from the next one only this much
    /// later (`ResumeRationed`). A storm can overflow the IOMMU's event queue, which every
    /// device shares, before it is drained, and RESUME starts the device's window afresh:
    /// unrationed, an owner resuming in a loop could overflow it at will. 0: no ration.
    pub resume_rest_ms: u64,
}

/// The whole static policy.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    /// Clients, by index.
    pub clients: &'a [ClientConfig],
    /// Devices, by index.
    pub devices: &'a [DeviceConfig],
    /// Regions, by index.
    pub regions: &'a [RegionConfig],
    /// Capabilities held at boot.
    pub caps: &'a [CapConfig],
    /// Mappings fixed by the description.
    pub static_maps: &'a [StaticMapConfig],
    /// Fault storms.
    pub faults: FaultPolicy,
}

impl Config<'_> {
    /// Capability slots the service needs: the description's, one backing each static
    /// mapping, and every client's grant quota.
    pub fn caps_needed(&self) -> usize {
        self.caps.len() + self.static_maps.len() + self.clients.iter().map(|c| c.max_grants as usize).sum::<usize>()
    }

    /// Mapping slots the service needs: every client's mapping quota, and each static
    /// mapping of a device no client owns (those count against no quota; an owned
    /// device's count against its owner's). With fewer, one client within its quota could
    /// take the slot another's MAP needs.
    pub fn mappings_needed(&self) -> usize {
        let quotas: usize = self.clients.iter().map(|c| c.max_mappings as usize).sum();
        let ownerless = self
            .static_maps
            .iter()
            .filter(|m| self.devices.get(m.device).is_none_or(|d| d.owner >= self.clients.len()));
        quotas + ownerless.count()
    }

    /// Handle-table entries `client` may need at once: its own capabilities from the
    /// description, one per grant it may make (to revoke it by), and one per grant every
    /// client that could lend to it may make. A client could lend to it if it holds, or may
    /// be lent, a capability whose `grant_to` lists it.
    pub fn handles_needed(&self, client: usize) -> usize {
        let own = self.caps.iter().filter(|c| c.client == client).count();
        let listed = |c: &&crate::CapConfig| client < 64 && c.grant_to & (1 << client) != 0;
        let lenders = self
            .caps
            .iter()
            .filter(listed)
            .fold(0u64, |m, c| m | c.grant_to | 1u64.checked_shl(c.client as u32).unwrap_or(0));
        let lent: usize = (0..self.clients.len())
            .filter(|x| *x < 64 && lenders & (1 << x) != 0)
            .map(|x| self.clients[x].max_grants as usize)
            .sum();
        own + self.clients[client].max_grants as usize + lent
    }
}

/// What a PCI bridge is, as the description declares it and the PCI owner checks at boot
/// (against the header type and the PCI Express capability's port type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeKind {
    /// A PCI Express root port (port type 4).
    RootPort,
    /// A switch's upstream port (port type 5).
    SwitchUpstream,
    /// A switch's downstream port (port type 6).
    SwitchDownstream,
    /// A PCI Express to PCI/PCI-X bridge (port type 7): the functions below it are seen
    /// by the SMMU as requester ID (secondary bus, 0.0).
    PcieToPci,
    /// A conventional PCI-to-PCI bridge (no PCI Express capability): the functions below
    /// it are seen as the bridge's own requester ID.
    PciToPci,
}

/// A PCI bridge of the description (`<pci_bridge>`): where it sits and the bus numbers
/// the PCI owner gives it. Bus numbers are the description's, not discovered, so that
/// every requester ID (and so every StreamID) is known before the system runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Its requester ID: bus << 8 | device << 3 | function.
    pub rid: u16,
    /// What it is.
    pub kind: BridgeKind,
    /// The bus right below it.
    pub secondary: u8,
    /// The highest bus below it.
    pub subordinate: u8,
    /// The description says the port has Access Control Services: the owner enables
    /// source validation, request and completion redirect and upstream forwarding, and
    /// leaves the port closed (no buses below it) if the capability is not there.
    pub acs: bool,
}

/// A device that is a PCI function (`<io_address_space peripheral_id="bus:device.function"
/// bar="...">`): where its configuration space is, and where the PCI owner places its
/// memory BARs. Its requester ID is its configuration address, which is not always its
/// StreamID: below a PCI Express to PCI bridge the SMMU sees the bridge's alias, and the
/// board's `iommu-map` may translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciFunctionConfig {
    /// The device (index into the devices).
    pub device: usize,
    /// Its requester ID: bus << 8 | device << 3 | function.
    pub rid: u16,
    /// Physical (= PCI bus) address of the region its driver maps as its BAR window, where
    /// the owner places its memory BARs; 0 with `bar_size` 0 for none.
    pub bar_base: u64,
    /// Bytes of that window.
    pub bar_size: u64,
    /// The INTx pins (bit 0 INTA# .. bit 3 INTD#) whose interrupt line, after the board's
    /// swizzle, is an `<irq>` of the PD that owns the function: its driver may clear
    /// Interrupt Disable only if the pin the function shows is one of them. On another
    /// pin the line is no PD's or another PD's (QEMU virt swizzles every slot onto four
    /// SPIs), and an asserted INTx would storm or starve whoever holds it.
    pub intx: u8,
}
