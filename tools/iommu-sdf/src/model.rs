//! The parts of a system description that DMA isolation depends on, typed.

/// A line in the description, for messages.
pub type Line = u32;

/// `<memory_region>`.
#[derive(Debug, Clone)]
pub struct MemoryRegion {
    pub name: String,
    pub size: u64,
    pub phys_addr: Option<u64>,
    pub line: Line,
}

/// `<map>` inside a protection domain.
#[derive(Debug, Clone)]
pub struct Map {
    pub mr: String,
    pub line: Line,
}

/// `<protection_domain>` (child PDs are flattened into the list).
#[derive(Debug, Clone)]
pub struct ProtectionDomain {
    pub name: String,
    pub maps: Vec<Map>,
    pub line: Line,
}

/// `<iomap>` inside an IO address space.
#[derive(Debug, Clone)]
pub struct IoMap {
    pub mr: String,
    pub iovaddr: u64,
    pub perms: Perms,
    pub line: Line,
}

/// `<io_address_space>`: Microkit's element (name, peripheral_id, domain_id, iomaps) with
/// this project's attributes: the owning PD, the IOVA window the service hands out, the
/// fault policy, and an explicit acknowledgement that a StreamID is shared.
#[derive(Debug, Clone)]
pub struct IoSpace {
    pub name: String,
    pub stream: u32,
    pub domain_id: Option<u64>,
    pub owner: Option<String>,
    pub iova_base: u64,
    pub iova_size: u64,
    pub alias_ok: bool,
    pub iomaps: Vec<IoMap>,
    pub line: Line,
}

/// Read/write permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
}

impl Perms {
    /// Every right in `other` is in `self`.
    pub fn contains(self, other: Perms) -> bool {
        (self.read || !other.read) && (self.write || !other.write)
    }
}

/// `<dma_capability>`: a client may map `[offset, offset + size)` of `mr` (or of its
/// parent capability) for `devices`, with `perms`.
#[derive(Debug, Clone)]
pub struct DmaCapability {
    pub name: String,
    pub pd: String,
    pub mr: Option<String>,
    pub parent: Option<String>,
    pub offset: u64,
    pub size: u64,
    pub perms: Perms,
    pub devices: Vec<String>,
    pub line: Line,
}

/// `<dma_quota>`: how much a client may have mapped at once.
#[derive(Debug, Clone)]
pub struct DmaQuota {
    pub pd: String,
    pub mappings: u64,
    pub pages: u64,
    pub line: Line,
}

/// `<iommu>`: which PD owns the IOMMU, the regions it keeps private (tables, queues),
/// and its page-table pool.
#[derive(Debug, Clone)]
pub struct Iommu {
    pub pd: String,
    pub private: Vec<(String, Line)>,
    pub table_pool: String,
    pub line: Line,
}

/// The whole description.
#[derive(Debug, Clone, Default)]
pub struct System {
    pub regions: Vec<MemoryRegion>,
    pub pds: Vec<ProtectionDomain>,
    pub io_spaces: Vec<IoSpace>,
    pub caps: Vec<DmaCapability>,
    pub quotas: Vec<DmaQuota>,
    pub iommu: Option<Iommu>,
}

impl System {
    pub fn region(&self, name: &str) -> Option<&MemoryRegion> {
        self.regions.iter().find(|r| r.name == name)
    }
    pub fn pd(&self, name: &str) -> Option<&ProtectionDomain> {
        self.pds.iter().find(|p| p.name == name)
    }
    pub fn io_space(&self, name: &str) -> Option<&IoSpace> {
        self.io_spaces.iter().find(|s| s.name == name)
    }
    pub fn cap(&self, name: &str) -> Option<&DmaCapability> {
        self.caps.iter().find(|c| c.name == name)
    }
}
