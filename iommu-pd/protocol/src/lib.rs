//! The protocol between driver PDs and the IOMMU PD, declared once and used by both ends.
//!
//! A request is a Microkit protected procedure call: a label (the opcode) and message
//! registers (64-bit words). A reply's label is 0 for success or an `ErrorCode`; its
//! message registers carry the results. Decoding never panics: a truncated, malformed or
//! unknown request is a `DecodeError`, which the service answers with an error code
//! without changing any state.
//!
//! Addresses and lengths are in bytes; every one the service accepts is a multiple of
//! 4 KiB.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

pub mod faults;
pub mod queue;
pub mod show;

/// Most mappings one UNMAP may remove (one message register each). seL4's IPC buffer
/// holds 120 message registers; 2 + 64 fit.
pub const MAX_UNMAP_RANGES: usize = 64;
/// Message registers a request may use.
pub const MAX_MRS: usize = 2 + MAX_UNMAP_RANGES;
/// Most values a reply carries (message registers).
pub const MAX_REPLY_VALUES: usize = 10;
/// The IOVA value that asks the service to choose one.
pub const IOVA_ANY: u64 = u64::MAX;

/// A capability handle: an index into the caller's own handle table, meaningless on any
/// other channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle(pub u32);

/// One of the caller's devices, by its index in the system description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u32);

/// Another client PD, by its index in the system description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

/// What a device may do with memory: bit 0 the device may read it, bit 1 write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rights(pub u8);

impl Rights {
    /// The device may read (DMA from memory).
    pub const READ: Rights = Rights(1);
    /// The device may write (DMA to memory).
    pub const WRITE: Rights = Rights(2);
    /// Both.
    pub const READ_WRITE: Rights = Rights(3);

    /// True if every right in `other` is in `self`.
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    /// Rights encodable in a request: no unknown bits, not empty.
    pub const fn is_valid(self) -> bool {
        self.0 != 0 && self.0 & !3 == 0
    }
}

/// Requests outside the protocol proper, for measurement. Only an IOMMU PD built for
/// measurement (its feature `measure-bypass`, or `measure-wake-ups`) answers them; the
/// service core, and so every product IOMMU PD, replies `UnknownOp`.
pub mod measure {
    /// BYPASS: mr0 = one of the caller's devices, mr1 = 1 to let its stream through
    /// untranslated (it then reaches all memory, by physical address), 0 to translate it
    /// again through its unchanged mappings. Reply: no values.
    pub const BYPASS: u64 = 0x4d00;
    /// WAKE_UP: no arguments. Reply: three values, in generic timer ticks, as the IOMMU PD
    /// timed its own wake-ups (the handling of a notification, a fault or a call, from its
    /// handler's start to its end, console output included, the kernel's entry and exit
    /// not): mr0 and mr1 = when the wake-up before this call began and ended, mr2 = the
    /// longest wake-up since the previous WAKE_UP (or since it started), which this call
    /// starts again.
    pub const WAKE_UP: u64 = 0x4d01;
    /// WAKE_UP's reply: the message register of when the wake-up before it began,
    pub const WAKE_UP_BEGAN: usize = 0;
    /// of when it ended,
    pub const WAKE_UP_ENDED: usize = 1;
    /// and of the longest since the previous WAKE_UP.
    pub const WAKE_UP_LONGEST: usize = 2;
    /// `queue::SERVE`'s mr0, to an IOMMU PD built with `measure-batch` (any other ignores
    /// it): which kind of batch the caller's doorbell asks for, so the IOMMU PD keeps each
    /// kind's time apart. A batch while the caller's device reads,
    pub const BATCH_UNDER_READS: u64 = 1;
    /// a batch with the caller's device idle,
    pub const BATCH_ALONE: u64 = 2;
    /// and not a batch but the request to print what each kind cost so far.
    pub const BATCH_REPORT: u64 = 3;
}

/// QUERY's reply: which message register holds what.
pub mod query {
    /// Mappings in use.
    pub const MAPPINGS: usize = 0;
    /// Mapping quota.
    pub const MAPPING_QUOTA: usize = 1;
    /// Pages mapped.
    pub const PAGES: usize = 2;
    /// Page quota.
    pub const PAGE_QUOTA: usize = 3;
    /// Faults recorded.
    pub const FAULTS_RECORDED: usize = 4;
    /// Faults dropped.
    pub const FAULTS_DROPPED: usize = 5;
    /// Mappings whose removal the IOMMU has not confirmed.
    pub const REMOVALS_PENDING: usize = 6;
    /// Grants made and not yet revoked or released.
    pub const GRANTS: usize = 7;
    /// Grant quota.
    pub const GRANT_QUOTA: usize = 8;
    /// How many values QUERY replies with.
    pub const VALUES: usize = 9;
}

/// QUERY_MAPPING's reply: which message register holds what.
pub mod query_mapping {
    /// The device (one of the caller's).
    pub const DEVICE: usize = 0;
    /// Where the mapping starts.
    pub const IOVA: usize = 1;
    /// Its length in bytes.
    pub const LENGTH: usize = 2;
    /// Its rights (`Rights`).
    pub const RIGHTS: usize = 3;
    /// The region it maps.
    pub const REGION: usize = 4;
    /// Where in the region.
    pub const OFFSET: usize = 5;
    /// 1 if its removal is pending (not confirmed by the IOMMU).
    pub const PENDING: usize = 6;
    /// How many values QUERY_MAPPING replies with.
    pub const VALUES: usize = 7;
}

/// ACK_FAULTS's reply: the last record acknowledged as it stands once acknowledged. Until
/// then the service may still fold later faults of the same burst into the newest record
/// (`faults::FaultRing::coalesce`), after the client copied it; acknowledged, it changes
/// no more. A client that read and then acknowledged its records had lost what was folded
/// in between (its copy said fewer repeats and a shorter range than the device made).
pub mod ack_faults {
    /// The sequence number of the record the other values are of: the one acknowledged,
    /// unless a later record has taken its slot (an acknowledgment of a record read long
    /// before).
    pub const SEQ: usize = 0;
    /// Its `repeats`.
    pub const REPEATS: usize = 1;
    /// Its `iova_last`.
    pub const IOVA_LAST: usize = 2;
    /// How many values ACK_FAULTS replies with.
    pub const VALUES: usize = 3;
}

/// Request labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Op {
    /// Map part of a capability's memory for one of the caller's devices.
    Map = 1,
    /// Unmap ranges of one of the caller's devices.
    Unmap = 2,
    /// Derive a narrower capability and give it to another client.
    Grant = 3,
    /// Take back a capability given with GRANT, and every mapping derived from it.
    Revoke = 4,
    /// Acknowledge fault records up to a sequence number.
    AckFaults = 5,
    /// Ask to resume a quarantined, blocked or stopped device.
    Resume = 6,
    /// Read quotas and counters.
    Query = 7,
    /// Read one of the caller's mappings.
    QueryMapping = 8,
    /// Give back a capability received by GRANT, and every mapping made from it.
    Release = 9,
    /// Stop one of the caller's devices: it reaches nothing until RESUME.
    Stop = 10,
    /// Read the PCI configuration space of one of the caller's devices.
    ConfigRead = 11,
    /// Write the PCI configuration space of one of the caller's devices, where a driver may.
    ConfigWrite = 12,
}

/// The PCI configuration calls' second message register: `offset | width << 16`.
pub mod config {
    /// Bytes of one function's configuration space (PCIe, through ECAM).
    pub const SPACE: u16 = 4096;
    /// Where the width sits in the second message register.
    pub const WIDTH_SHIFT: u32 = 16;

    /// `offset | width << 16`, the way both calls carry them.
    pub const fn pack(offset: u16, width: u8) -> u64 {
        offset as u64 | (width as u64) << WIDTH_SHIFT
    }

    /// Type-0 header registers, and the capability IDs the filter knows (PCI Local Bus 3.0,
    /// PCIe Base 4.0 chapter 7).
    pub mod reg {
        /// Vendor ID (16 bits; all ones: no function).
        pub const VENDOR_ID: u16 = 0x00;
        /// Command (16 bits).
        pub const COMMAND: u16 = 0x04;
        /// Status (16 bits).
        pub const STATUS: u16 = 0x06;
        /// Header type (8 bits; bit 7: multi-function).
        pub const HEADER_TYPE: u16 = 0x0e;
        /// First BAR of a type-0 header; six, to 0x27.
        pub const BAR0: u16 = 0x10;
        /// Expansion ROM base address of a type-0 header.
        pub const ROM: u16 = 0x30;
        /// Capabilities pointer.
        pub const CAP_PTR: u16 = 0x34;
        /// Interrupt Pin (8 bits, read-only): 1 to 4 for INTA# to INTD#, 0 for none.
        pub const INTERRUPT_PIN: u16 = 0x3d;
        /// Where the standard header ends and capabilities and device-specific registers start.
        pub const HEADER_END: u16 = 0x40;
        /// Where extended configuration space starts.
        pub const EXTENDED: u16 = 0x100;
        /// Command: the function answers memory accesses to its BARs.
        pub const CMD_MEMORY: u16 = 1 << 1;
        /// Command: the function may master the bus (DMA).
        pub const CMD_BUS_MASTER: u16 = 1 << 2;
        /// Command: the function's INTx is disabled.
        pub const CMD_INTX_DISABLE: u16 = 1 << 10;
        /// Command bits a driver may change.
        pub const CMD_DRIVER: u16 = CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE;
        /// Status: the function has a capability list.
        pub const STATUS_CAP_LIST: u16 = 1 << 4;
        /// Capability IDs.
        pub const CAP_PM: u8 = 0x01;
        /// MSI.
        pub const CAP_MSI: u8 = 0x05;
        /// Vendor-specific (its length at byte 2).
        pub const CAP_VENDOR: u8 = 0x09;
        /// PCI Express.
        pub const CAP_EXP: u8 = 0x10;
        /// MSI-X.
        pub const CAP_MSIX: u8 = 0x11;
    }
}

/// STOP's reply, mr0: what was done to the device's PCI function after the IOMMU
/// confirmed the block (0 for a device that is no PCI function of the IOMMU PD's).
pub mod stop {
    /// Bus Master and I/O Space turned off, and MSI and MSI-X disabled, read back: the
    /// function masters nothing, and sends no interrupt message its last driver set up.
    /// (Its INTx is disabled too, where it has one; Memory Space stays on where the owner
    /// placed its BARs: its driver maps them.)
    pub const FUNCTION_OFF: u64 = 1 << 0;
    /// Reset by a Function Level Reset (PCIe Base 4.0, 6.6.2), which the function
    /// advertises (Device Capabilities, bit 28), followed by the spec's 100 ms wait; the
    /// function answered again afterwards.
    pub const FLR: u64 = 1 << 1;
    /// What the owner placed (BARs, expansion ROM BAR, Interrupt Line) reads back as it
    /// was before the stop, written again after an FLR cleared it.
    pub const RESTORED: u64 = 1 << 2;
    /// The function still had Transactions Pending (Device Status, bit 5) after 100 ms
    /// with Bus Master off; reset anyway, as Linux does (its DMA is blocked at the IOMMU).
    pub const PENDING: u64 = 1 << 3;
    /// Reset (by FLR, or D3hot and back), and the function did not answer within a
    /// second afterwards. Until it answers again, every configuration call and RESUME
    /// for it answers `DeviceMissing` (the device stays stopped); the first that finds it
    /// answering puts its BARs back where the description places them (it came back at
    /// its reset values), with Bus Master and MSI off, decoding only there, before doing
    /// anything else.
    pub const FLR_LOST: u64 = 1 << 4;
    /// The function has a reset (FLR, or D3hot and back) and was not reset now: resets
    /// are rationed (each holds the IOMMU PD, and everything of lower
    /// priority, for 20 ms to 100 ms or more), so it is reset when RESUME asks for it to
    /// run again. Bus Master, I/O Space and INTx are off, and its DMA blocked, all the
    /// same.
    pub const RESET_OWED: u64 = 1 << 5;
    /// Reset by a D3hot-to-D0 transition (PCI Bus Power Management 1.2: PMCSR's
    /// No_Soft_Reset clear), the function having no FLR, as Linux's `pci_pm_reset`; the
    /// function answered again afterwards.
    pub const PM_RESET: u64 = 1 << 6;
    /// A reset (FLR, or D3hot and back) was done and the function answered, but its BARs
    /// still read what the owner placed, which any reset returns to 0: it did not reset
    /// (a PMCSR No_Soft_Reset that lies, as Linux's `quirk_no_pm_reset` knows of some
    /// GPUs, or an FLR it ignores), and keeps what its last driver left. Rationed as a
    /// reset is. Told only of a function with a placed BAR (one without shows nothing).
    pub const RESET_IGNORED: u64 = 1 << 7;
}

/// MAP's handle field: the low 24 bits of mr0 (rights take the next 8).
pub const MAP_HANDLE_MASK: u32 = 0xff_ffff;

/// A decoded request.
// UNMAP's 64 IOVAs make it the large variant; there is no heap to box them into, and a
// request lives on the stack for the length of one call.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// MAP: mr0 = handle | rights << 24 | device << 32 (a handle is 24 bits), mr1 =
    /// offset, mr2 = length, mr3 = IOVA or `IOVA_ANY`. Reply: mr0 = the IOVA used.
    ///
    /// Four message registers, because seL4 takes its IPC fast path only for messages of
    /// at most `seL4_FastMessageRegisters` (4 on aarch64): a driver that maps each
    /// request's buffer makes this call on every request.
    Map {
        /// The capability.
        cap: Handle,
        /// Which of the caller's devices.
        device: DeviceId,
        /// Offset into the capability's memory.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Where the device should see it, or `None` to let the service choose.
        iova: Option<u64>,
        /// What the device may do.
        rights: Rights,
    },
    /// UNMAP: mr0 = device, mr1 = n, then the n IOVAs at which the mappings to remove
    /// start (MAP returned them). All are removed under one invalidation, and the reply
    /// comes once the IOMMU has confirmed it; if any IOVA is not the start of one of the
    /// caller's mappings, nothing is removed.
    Unmap {
        /// Which of the caller's devices.
        device: DeviceId,
        /// The IOVAs, `count` of them.
        iovas: [u64; MAX_UNMAP_RANGES],
        /// How many of `iovas` are used.
        count: usize,
    },
    /// GRANT: mr0 = handle | to << 32, mr1 = offset, mr2 = length, mr3 = rights,
    /// mr4 = device mask (the receiver's devices, as bits of `DeviceId`). Reply: mr0 =
    /// the grant (a handle in the caller's table, for REVOKE), mr1 = the handle the
    /// receiver will use. Only to a client the description lets the capability (its root)
    /// go to; otherwise `Denied`.
    Grant {
        /// The capability to derive from.
        cap: Handle,
        /// The receiving client.
        to: ClientId,
        /// Offset into the capability's memory.
        offset: u64,
        /// Bytes.
        len: u64,
        /// Rights, a subset of the capability's.
        rights: Rights,
        /// Devices (of the receiver) the new capability may be mapped for.
        devices: u64,
    },
    /// REVOKE: mr0 = the grant handle. The capability, everything derived from it and
    /// their handles are gone whatever the reply. `Ok` once every derived mapping is gone
    /// and its invalidation confirmed; `Hardware` if the IOMMU did not confirm some: those
    /// mappings stay, pending, on devices that are blocked until the removal is retried and
    /// confirmed (RESUME, or the owner's UNMAP, retries it).
    Revoke {
        /// The grant, as GRANT returned it.
        grant: Handle,
    },
    /// ACK_FAULTS: mr0 = the sequence number of the last record read. Replies with that
    /// record as it stands now (`ack_faults`).
    AckFaults {
        /// Last record read.
        upto: u64,
    },
    /// RESUME: mr0 = device. A device quarantined by a storm (if the description allows),
    /// blocked by an unconfirmed removal, or stopped by STOP runs again, once every removal
    /// pending on it is confirmed; a stopped one with its static mappings made again, and
    /// its function reset first if STOP left the reset owed (`stop::RESET_OWED`;
    /// `ResetRationed` and nothing done while the ration of resets does not allow it).
    /// `DeviceMissing`, and the device left as it was, while its function does not answer
    /// after a reset it did not come back from (`stop::FLR_LOST`, that reset included).
    /// A device quarantined by a storm is resumed at most once per storm window
    /// (`ResumeRationed` and nothing done before then). mr1, when sent, is the newest
    /// error code the caller decodes (`ErrorCode::NEWEST`); a caller that does not send it
    /// is answered only the codes up to `ErrorCode::UNDECLARED` (`ErrorCode::as_known_to`:
    /// `Quarantined` for `ResumeRationed`).
    Resume {
        /// The quarantined device.
        device: DeviceId,
    },
    /// QUERY: no arguments. Reply: mr0 = mappings in use, mr1 = mapping quota,
    /// mr2 = pages mapped, mr3 = page quota, mr4 = faults recorded, mr5 = faults dropped,
    /// mr6 = mappings whose removal the IOMMU has not confirmed (still counted in mr0 and
    /// mr2), mr7 = grants made and not yet revoked or released, mr8 = grant quota.
    Query,
    /// QUERY_MAPPING: mr0 = n. Reply: the caller's n-th mapping (in IOVA order over its
    /// devices): mr0 = device, mr1 = IOVA, mr2 = length, mr3 = rights, mr4 = region,
    /// mr5 = offset in the region, mr6 = 1 if its removal is pending (not confirmed by the
    /// IOMMU; the device is blocked until it is); `NotMapped` past the last one.
    QueryMapping {
        /// Which mapping, from 0.
        index: u64,
    },
    /// RELEASE: mr0 = a handle to a capability the caller received by GRANT. The
    /// capability, what was derived from it and its mappings go, as for REVOKE by the
    /// granter (same replies); a capability from the description cannot be released
    /// (`Denied`). The receiver's way to free the handle slot a grant took.
    Release {
        /// The received capability.
        cap: Handle,
    },
    /// STOP: mr0 = one of the caller's devices. The device is blocked (every transaction
    /// aborts) and loses every mapping, the description's static ones too; once the IOMMU
    /// has confirmed both, a device that is a PCI function of the IOMMU PD's is stopped
    /// there too: Bus Master and I/O Space off, INTx and MSI and MSI-X disabled (Memory
    /// Space stays on where the owner placed its BARs, which its driver maps), a Function
    /// Level Reset where the function has one (with the spec's 100 ms wait), or else a
    /// D3hot-to-D0 reset where its PM capability allows one, and the BARs the owner placed
    /// written back (resets rationed, one ration for all clients taken in turn, else owed
    /// to RESUME: `stop::RESET_OWED`).
    /// Reply: mr0 = what was done to the function (`stop`). A VMM sends it
    /// when it stops the virtual machine the device is passed through to, whose memory
    /// the device must no longer reach, and whose next guest must not inherit the device's
    /// state. RESUME starts the device again with its static mappings (and only those;
    /// the function's Bus Master stays off until its driver turns it on); until then
    /// requests for it answer `Stopped`. `Hardware` if the IOMMU did not confirm: the
    /// device stays blocked (its function stopped all the same), and what was not
    /// confirmed stays pending for RESUME or another STOP to retry.
    Stop {
        /// Which of the caller's devices.
        device: DeviceId,
    },
    /// CONFIG_READ: mr0 = one of the caller's devices, mr1 = offset | width << 16 (width
    /// 1, 2 or 4 bytes, offset a multiple of it, inside the function's 4 KiB). Reply:
    /// mr0 = the value read. The IOMMU PD owns PCI configuration space: no driver maps
    /// ECAM, and each reads its own function's registers through this call.
    ConfigRead {
        /// Which of the caller's devices.
        device: DeviceId,
        /// Byte offset in the function's configuration space.
        offset: u16,
        /// 1, 2 or 4.
        width: u8,
    },
    /// CONFIG_WRITE: mr0 = one of the caller's devices, mr1 = offset | width << 16 (as
    /// CONFIG_READ), mr2 = the value (no bits above the width). Only what is safe for a
    /// driver: Command's Memory Space, Bus Master and INTx-disable bits (its other bits
    /// keep their value, Status is not written), the MSI and MSI-X capabilities past
    /// their headers, and device-specific registers at 0x40..0x100 outside every
    /// capability (as the function's capability list was at boot). Anything else (BARs,
    /// expansion ROM, a bridge's header, capability headers, the rest of the standard
    /// header, extended configuration space with ACS) is `ConfigDenied` and nothing is
    /// written. Turning Memory Space on puts the BARs back where the IOMMU PD placed them
    /// first (`DeviceMissing` if they cannot be, nothing written). Reply: mr0 = what the
    /// register reads afterwards; Command's bits the IOMMU PD keeps off read 0 there:
    /// Memory and I/O Space on a function whose BARs it did not place at boot, Bus Master
    /// on one whose MSI or MSI-X Enable stayed set when it cleared it at boot or whose
    /// last stop did not read back off.
    ConfigWrite {
        /// Which of the caller's devices.
        device: DeviceId,
        /// Byte offset in the function's configuration space.
        offset: u16,
        /// 1, 2 or 4.
        width: u8,
        /// The value.
        value: u32,
    },
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The label is not an opcode.
    UnknownOp(u64),
    /// Fewer message registers than the opcode needs.
    Truncated,
    /// A field holds a value no request can have.
    Malformed,
}

/// Error codes carried in a reply's label. Stable numbers; 0 is success.
///
/// C reads the same: `iommu_service.h`'s `IOMMU_ERR_*`, each with its doc comment, and
/// `iommu_strerror()`, which returns the name and the first sentence of the doc comment
/// (so keep that sentence a summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum ErrorCode {
    /// The label is not an opcode.
    UnknownOp = 1,
    /// Too few message registers.
    Truncated = 2,
    /// A field is out of its range.
    Malformed = 3,
    /// The handle names no capability of the caller.
    BadHandle = 4,
    /// The device is not the caller's, or the capability does not allow it.
    BadDevice = 5,
    /// The capability does not grant these rights.
    NoRights = 6,
    /// The range is not page aligned, wraps, or leaves the capability.
    OutOfRange = 7,
    /// The IOVA range overlaps an existing mapping.
    Overlap = 8,
    /// The range to unmap is not exactly a set of the caller's mappings.
    NotMapped = 9,
    /// The caller's quota of mappings is used up.
    QuotaMappings = 10,
    /// The service's capability table is full.
    NoCapabilitySlot = 11,
    /// The target client does not exist.
    BadClient = 12,
    /// The device is quarantined.
    Quarantined = 13,
    /// The policy does not allow this. Resume not permitted, a grant to a client the
    /// description does not let the capability go to, or for a device it keeps the
    /// capability from, revoke of a capability the caller did not grant, release of a
    /// capability from the description.
    Denied = 14,
    /// The IOMMU failed or did not confirm in time. A removal of access that was not
    /// confirmed stays pending and the device is blocked until it is retried and
    /// confirmed; anything else asked for did not happen.
    Hardware = 15,
    /// No IOVA space left for "choose one".
    NoIova = 16,
    /// The caller's quota of mapped pages is used up.
    QuotaPages = 17,
    /// The service's mapping table is full.
    NoMappingSlot = 18,
    /// The caller's (or the receiver's) handle table is full.
    NoHandleSlot = 19,
    /// The device is blocked: the IOMMU did not confirm a removal of access. RESUME
    /// retries the removal and, once it is confirmed, lets the device run again.
    RemovalPending = 20,
    /// The caller's quota of grants (made and not yet revoked or released) is used up.
    QuotaGrants = 21,
    /// The device was stopped (STOP); RESUME starts it again.
    Stopped = 22,
    /// The IOMMU PD is not serving. It could not start (the SMMU was refused, or its
    /// devices or the policy could not be set up; its log says why); it made every
    /// device's DMA abort instead, and refuses every request.
    Unavailable = 23,
    /// The configuration-space write is not a driver's to make; nothing was written. The
    /// registers (or bits) refused: BARs, expansion ROM, a bridge's header (bus numbers,
    /// windows), capability headers and pointers, extended configuration space (ACS among
    /// it), and the rest of the standard header but Command.
    ConfigDenied = 24,
    /// The device has no configuration space this IOMMU PD owns. It is not a PCI function
    /// there (the description gives it no ECAM, or gives the device no PCI address).
    NoConfigSpace = 25,
    /// The device is missing. Nothing answers at the PCI address the description gives
    /// it, or the bridge above it was absent or not what the description declares and was
    /// left closed; the IOMMU PD named it at boot (`iommu: pci: NAME MISSING`). Or it
    /// stopped answering since (`stop::FLR_LOST`), and does not answer yet, or came back
    /// with BARs that cannot be put back where the description places them.
    DeviceMissing = 26,
    /// The device's function owes a reset (STOP's `RESET_OWED`) that its client may not
    /// have yet: nothing was done, the device stays stopped; RESUME again later (within a
    /// second keeps its turn). Function resets are rationed to a tenth of the time for
    /// all clients together (after a reset that took t, the next, anyone's, waits 9t, at
    /// least 900 ms), since each holds the IOMMU PD; the turns go first to the client that
    /// had one least recently.
    ResetRationed = 27,
    /// The device was quarantined by a fault storm and was last resumed from one less than
    /// a storm window ago: nothing was done, it stays quarantined; RESUME again later. Each
    /// storm may overflow the IOMMU's event queue, which every client shares (each then
    /// counts a record lost), so a device is resumed from a storm once per window.
    ResumeRationed = 28,
    /// The IOMMU service failed while serving this call, and serves no more. Its fault ring's
    /// `failed` word says whether every device's DMA now aborts; no later call is answered.
    /// The IOMMU PD panicked in the call and answered it from its panic hook, after failing
    /// the IOMMU closed and telling every client.
    ServiceFailed = 29,
}

impl ErrorCode {
    /// The code for a label, if it is one.
    pub fn from_label(label: u64) -> Option<ErrorCode> {
        use ErrorCode::*;
        Some(match label {
            1 => UnknownOp,
            2 => Truncated,
            3 => Malformed,
            4 => BadHandle,
            5 => BadDevice,
            6 => NoRights,
            7 => OutOfRange,
            8 => Overlap,
            9 => NotMapped,
            10 => QuotaMappings,
            11 => NoCapabilitySlot,
            12 => BadClient,
            13 => Quarantined,
            14 => Denied,
            15 => Hardware,
            16 => NoIova,
            17 => QuotaPages,
            18 => NoMappingSlot,
            19 => NoHandleSlot,
            20 => RemovalPending,
            21 => QuotaGrants,
            22 => Stopped,
            23 => Unavailable,
            24 => ConfigDenied,
            25 => NoConfigSpace,
            26 => DeviceMissing,
            27 => ResetRationed,
            28 => ResumeRationed,
            29 => ServiceFailed,
            _ => return None,
        })
    }
}

impl ErrorCode {
    /// The newest code. A RESUME carries it (its second message register, `Request::encode`
    /// writes it) to say that its caller decodes every code up to it.
    pub const NEWEST: ErrorCode = ErrorCode::ServiceFailed;

    /// What a RESUME that does not say is taken to decode: the codes up to this one, those
    /// a client had before RESUME said (a client built then decodes 28 as `Malformed`,
    /// `Reply::decode`).
    pub const UNDECLARED: ErrorCode = ErrorCode::ResetRationed;

    /// The newest code the caller of a RESUME sent with `mrs` decodes: its second message
    /// register, or `UNDECLARED` without one.
    pub fn declared_by_resume(mrs: &[u64]) -> u64 {
        mrs.get(1).copied().unwrap_or(ErrorCode::UNDECLARED as u64)
    }

    /// This code as a caller that decodes the codes up to `newest` is to see it: itself if
    /// it knows it, else the older code that leaves it in the same state and asks the same
    /// of it (`ResumeRationed`: the device stays `Quarantined`, RESUME again later;
    /// `ResetRationed`: it stays `Stopped`, RESUME starts it). A code with no such
    /// older one goes as it is.
    pub fn as_known_to(self, newest: u64) -> ErrorCode {
        match self {
            e if e as u64 <= newest => e,
            ErrorCode::ResumeRationed => ErrorCode::Quarantined.as_known_to(newest),
            ErrorCode::ResetRationed => ErrorCode::Stopped.as_known_to(newest),
            e => e,
        }
    }

    /// Its name as C spells it after `IOMMU_ERR_` (`iommu_service.h`).
    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            UnknownOp => "UNKNOWN_OP",
            Truncated => "TRUNCATED",
            Malformed => "MALFORMED",
            BadHandle => "BAD_HANDLE",
            BadDevice => "BAD_DEVICE",
            NoRights => "NO_RIGHTS",
            OutOfRange => "OUT_OF_RANGE",
            Overlap => "OVERLAP",
            NotMapped => "NOT_MAPPED",
            QuotaMappings => "QUOTA_MAPPINGS",
            NoCapabilitySlot => "NO_CAPABILITY_SLOT",
            BadClient => "BAD_CLIENT",
            Quarantined => "QUARANTINED",
            Denied => "DENIED",
            Hardware => "HARDWARE",
            NoIova => "NO_IOVA",
            QuotaPages => "QUOTA_PAGES",
            NoMappingSlot => "NO_MAPPING_SLOT",
            NoHandleSlot => "NO_HANDLE_SLOT",
            RemovalPending => "REMOVAL_PENDING",
            QuotaGrants => "QUOTA_GRANTS",
            Stopped => "STOPPED",
            Unavailable => "UNAVAILABLE",
            ConfigDenied => "CONFIG_DENIED",
            NoConfigSpace => "NO_CONFIG_SPACE",
            DeviceMissing => "DEVICE_MISSING",
            ResetRationed => "RESET_RATIONED",
            ResumeRationed => "RESUME_RATIONED",
            ServiceFailed => "SERVICE_FAILED",
        }
    }
}

/// The name C gives it and the label on the wire: `RESUME_RATIONED (28)`.
impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u64)
    }
}

impl From<DecodeError> for ErrorCode {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::UnknownOp(_) => ErrorCode::UnknownOp,
            DecodeError::Truncated => ErrorCode::Truncated,
            DecodeError::Malformed => ErrorCode::Malformed,
        }
    }
}

fn mr(mrs: &[u64], i: usize) -> Result<u64, DecodeError> {
    mrs.get(i).copied().ok_or(DecodeError::Truncated)
}

/// MAP's message registers (label `Op::Map`): the first whole (it names the capability,
/// the device and the rights, `decode_map_names`), the offset, the length, and the IOVA
/// (`None` for `IOVA_ANY`). With `decode_map_names`, what `Request::decode` does for MAP;
/// the service keys a client's last MAP's lookup on the first register as it came.
#[inline]
pub fn decode_map(mrs: &[u64]) -> Result<(u64, u64, u64, Option<u64>), DecodeError> {
    match *mrs {
        [names, offset, len, iova, ..] => Ok((names, offset, len, (iova != IOVA_ANY).then_some(iova))),
        _ => Err(DecodeError::Truncated),
    }
}

/// The capability (24 bits), rights (8) and device (32) that MAP's first message
/// register names; `Malformed` if the rights are not valid ones.
#[inline]
pub fn decode_map_names(names: u64) -> Result<(Handle, DeviceId, Rights), DecodeError> {
    let (lo, hi) = (names as u32, (names >> 32) as u32);
    Ok((Handle(lo & MAP_HANDLE_MASK), DeviceId(hi), rights(u64::from(lo >> 24))?))
}

/// UNMAP's message registers (label `Op::Unmap`) read in place: the device, and the
/// IOVAs as a slice of `mrs`. What `Request::decode` does for UNMAP, without copying the
/// IOVAs into a `Request` sized for 64 of them: the service's path for its most frequent
/// request.
#[inline]
pub fn decode_unmap(mrs: &[u64]) -> Result<(DeviceId, &[u64]), DecodeError> {
    let device = DeviceId(u32::try_from(mr(mrs, 0)?).map_err(|_| DecodeError::Malformed)?);
    let count = mr(mrs, 1)?;
    if count == 0 || count > MAX_UNMAP_RANGES as u64 {
        return Err(DecodeError::Malformed);
    }
    let iovas = mrs.get(2..2 + count as usize).ok_or(DecodeError::Truncated)?;
    Ok((device, iovas))
}

/// An UNMAP of one IOVA (a mapping queue's entry, `queue::ENTRY_MRS` registers): the
/// device and the IOVA. Anything else answers what `decode_unmap` does, or `Malformed`
/// for more IOVAs than one, which an entry cannot carry. The one IOVA checked first, two
/// tests where `decode_unmap`'s general count and bounds took five.
#[inline]
pub fn decode_unmap_one(mrs: &[u64; queue::ENTRY_MRS]) -> Result<(DeviceId, u64), DecodeError> {
    match (u32::try_from(mrs[0]), mrs[1]) {
        (Ok(device), 1) => Ok((DeviceId(device), mrs[2])),
        _ => decode_unmap(mrs).and(Err(DecodeError::Malformed)),
    }
}

/// A configuration access's place: offset and width from `config::pack`'s encoding, each
/// checked (width 1, 2 or 4, offset a multiple of it, inside one function's space).
fn config_place(v: u64) -> Result<(u16, u8), DecodeError> {
    let offset = v & 0xffff;
    let width = v >> config::WIDTH_SHIFT;
    let ok = matches!(width, 1 | 2 | 4) && offset % width == 0 && offset + width <= config::SPACE as u64;
    if ok {
        Ok((offset as u16, width as u8))
    } else {
        Err(DecodeError::Malformed)
    }
}

fn rights(v: u64) -> Result<Rights, DecodeError> {
    let r = Rights(u8::try_from(v).map_err(|_| DecodeError::Malformed)?);
    if r.is_valid() {
        Ok(r)
    } else {
        Err(DecodeError::Malformed)
    }
}

impl Request {
    /// Decode a request from its label and message registers.
    #[inline]
    pub fn decode(label: u64, mrs: &[u64]) -> Result<Request, DecodeError> {
        let lo = |v: u64| v as u32;
        let hi = |v: u64| (v >> 32) as u32;
        Ok(match label {
            1 => {
                let (names, offset, len, iova) = decode_map(mrs)?;
                let (cap, device, rights) = decode_map_names(names)?;
                Request::Map { cap, device, offset, len, iova, rights }
            }
            2 => {
                let (device, list) = decode_unmap(mrs)?;
                let mut iovas = [0; MAX_UNMAP_RANGES];
                iovas[..list.len()].copy_from_slice(list);
                Request::Unmap { device, iovas, count: list.len() }
            }
            3 => {
                let m0 = mr(mrs, 0)?;
                Request::Grant {
                    cap: Handle(lo(m0)),
                    to: ClientId(hi(m0)),
                    offset: mr(mrs, 1)?,
                    len: mr(mrs, 2)?,
                    rights: rights(mr(mrs, 3)?)?,
                    devices: mr(mrs, 4)?,
                }
            }
            4 => Request::Revoke { grant: Handle(u32::try_from(mr(mrs, 0)?).map_err(|_| DecodeError::Malformed)?) },
            5 => Request::AckFaults { upto: mr(mrs, 0)? },
            6 => Request::Resume { device: DeviceId(u32::try_from(mr(mrs, 0)?).map_err(|_| DecodeError::Malformed)?) },
            7 => Request::Query,
            8 => Request::QueryMapping { index: mr(mrs, 0)? },
            9 => Request::Release { cap: Handle(u32::try_from(mr(mrs, 0)?).map_err(|_| DecodeError::Malformed)?) },
            10 => Request::Stop { device: DeviceId(u32::try_from(mr(mrs, 0)?).map_err(|_| DecodeError::Malformed)?) },
            11 | 12 => {
                let device = DeviceId(u32::try_from(mr(mrs, 0)?).map_err(|_| DecodeError::Malformed)?);
                let (offset, width) = config_place(mr(mrs, 1)?)?;
                if label == 11 {
                    Request::ConfigRead { device, offset, width }
                } else {
                    let value = mr(mrs, 2)?;
                    // No bits above the width: a write is exactly what it says.
                    if value >> (8 * width as u32) != 0 {
                        return Err(DecodeError::Malformed);
                    }
                    Request::ConfigWrite { device, offset, width, value: value as u32 }
                }
            }
            other => return Err(DecodeError::UnknownOp(other)),
        })
    }

    /// Encode the request: its label, and the message registers written to `mrs`.
    /// Returns (label, number of message registers).
    pub fn encode(&self, mrs: &mut [u64; MAX_MRS]) -> (u64, usize) {
        match *self {
            Request::Map { cap, device, offset, len, iova, rights } => {
                // A handle too wide for its 24 bits goes as the widest, which no table
                // has, rather than as another handle.
                mrs[0] = cap.0.min(MAP_HANDLE_MASK) as u64 | (rights.0 as u64) << 24 | (device.0 as u64) << 32;
                mrs[1] = offset;
                mrs[2] = len;
                mrs[3] = iova.unwrap_or(IOVA_ANY);
                (Op::Map as u64, 4)
            }
            Request::Unmap { device, iovas, count } => {
                let count = count.min(MAX_UNMAP_RANGES);
                mrs[0] = device.0 as u64;
                mrs[1] = count as u64;
                mrs[2..2 + count].copy_from_slice(&iovas[..count]);
                (Op::Unmap as u64, 2 + count)
            }
            Request::Grant { cap, to, offset, len, rights, devices } => {
                mrs[0] = cap.0 as u64 | (to.0 as u64) << 32;
                mrs[1] = offset;
                mrs[2] = len;
                mrs[3] = rights.0 as u64;
                mrs[4] = devices;
                (Op::Grant as u64, 5)
            }
            Request::Revoke { grant } => {
                mrs[0] = grant.0 as u64;
                (Op::Revoke as u64, 1)
            }
            Request::AckFaults { upto } => {
                mrs[0] = upto;
                (Op::AckFaults as u64, 1)
            }
            Request::Resume { device } => {
                mrs[0] = device.0 as u64;
                mrs[1] = ErrorCode::NEWEST as u64;
                (Op::Resume as u64, 2)
            }
            Request::Query => (Op::Query as u64, 0),
            Request::QueryMapping { index } => {
                mrs[0] = index;
                (Op::QueryMapping as u64, 1)
            }
            Request::Release { cap } => {
                mrs[0] = cap.0 as u64;
                (Op::Release as u64, 1)
            }
            Request::Stop { device } => {
                mrs[0] = device.0 as u64;
                (Op::Stop as u64, 1)
            }
            Request::ConfigRead { device, offset, width } => {
                mrs[0] = device.0 as u64;
                mrs[1] = config::pack(offset, width);
                (Op::ConfigRead as u64, 2)
            }
            Request::ConfigWrite { device, offset, width, value } => {
                mrs[0] = device.0 as u64;
                mrs[1] = config::pack(offset, width);
                mrs[2] = value as u64;
                (Op::ConfigWrite as u64, 3)
            }
        }
    }
}

/// A reply: label 0 and up to `MAX_REPLY_VALUES` values, or an error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Success, with `n` values.
    Ok {
        /// The values.
        values: [u64; MAX_REPLY_VALUES],
        /// How many are meaningful.
        n: usize,
    },
    /// Failure.
    Err(ErrorCode),
}

impl Reply {
    /// Success with the given values (at most `MAX_REPLY_VALUES`).
    #[inline]
    pub fn ok(vals: &[u64]) -> Reply {
        let mut values = [0; MAX_REPLY_VALUES];
        let n = vals.len().min(MAX_REPLY_VALUES);
        values[..n].copy_from_slice(&vals[..n]);
        Reply::Ok { values, n }
    }

    /// The reply's label.
    pub fn label(&self) -> u64 {
        match self {
            Reply::Ok { .. } => 0,
            Reply::Err(e) => *e as u64,
        }
    }

    /// Decode a reply from its label and message registers (for clients).
    pub fn decode(label: u64, mrs: &[u64]) -> Reply {
        if label == 0 {
            Reply::ok(mrs)
        } else {
            Reply::Err(ErrorCode::from_label(label).unwrap_or(ErrorCode::Malformed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_unmap_decodes_as_the_general_decoder_and_one_iova() {
        let devices = [0, 7, u32::MAX as u64, 1 << 32, u64::MAX];
        for (device, count) in devices.into_iter().flat_map(|d| (0..=MAX_UNMAP_RANGES as u64 + 2).map(move |c| (d, c)))
        {
            let mrs = [device, count, 0x8000, 0x9000];
            let general = decode_unmap(&mrs).and_then(|(d, iovas)| match *iovas {
                [iova] => Ok((d, iova)),
                _ => Err(DecodeError::Malformed),
            });
            assert_eq!(decode_unmap_one(&mrs), general, "device {device:#x}, count {count}");
        }
        assert_eq!(decode_unmap_one(&[7, 1, 0x8000, 0]), Ok((DeviceId(7), 0x8000)));
        assert_eq!(decode_unmap_one(&[7, 3, 0x8000, 0]), Err(DecodeError::Truncated));
        assert_eq!(decode_unmap_one(&[7, 2, 0x8000, 0]), Err(DecodeError::Malformed));
    }

    #[test]
    fn a_map_fits_the_ipc_fast_path_and_a_wide_handle_names_no_other() {
        let map = |cap| Request::Map {
            cap: Handle(cap),
            device: DeviceId(7),
            offset: 0x2000,
            len: 0x1000,
            iova: None,
            rights: Rights::READ_WRITE,
        };
        let mut mrs = [0; MAX_MRS];
        assert_eq!(map(5).encode(&mut mrs), (Op::Map as u64, 4), "seL4_FastMessageRegisters is 4 on aarch64");
        // 2^24 would be handle 0 if its top bit were dropped.
        let (label, n) = map(1 << 24).encode(&mut mrs);
        assert_eq!(Request::decode(label, &mrs[..n]), Ok(map(MAP_HANDLE_MASK)));
        let (label, n) = map(u32::MAX).encode(&mut mrs);
        assert_eq!(Request::decode(label, &mrs[..n]), Ok(map(MAP_HANDLE_MASK)));
    }

    #[test]
    fn every_request_round_trips() {
        let mut iovas = [0; MAX_UNMAP_RANGES];
        iovas[0] = 0x1000;
        iovas[1] = 0x8000;
        let reqs = [
            Request::Map {
                cap: Handle(3),
                device: DeviceId(1),
                offset: 0x1000,
                len: 0x4000,
                iova: Some(0x10_0000),
                rights: Rights::READ,
            },
            Request::Map {
                cap: Handle(0),
                device: DeviceId(0),
                offset: 0,
                len: 0x1000,
                iova: None,
                rights: Rights::READ_WRITE,
            },
            Request::Unmap { device: DeviceId(2), iovas, count: 2 },
            Request::Unmap { device: DeviceId(2), iovas: [7; MAX_UNMAP_RANGES], count: MAX_UNMAP_RANGES },
            Request::Grant {
                cap: Handle(1),
                to: ClientId(4),
                offset: 0,
                len: 0x1000,
                rights: Rights::WRITE,
                devices: 0b10,
            },
            Request::Revoke { grant: Handle(9) },
            Request::AckFaults { upto: 77 },
            Request::Resume { device: DeviceId(5) },
            Request::Query,
            Request::QueryMapping { index: 3 },
            Request::Release { cap: Handle(2) },
            Request::Stop { device: DeviceId(3) },
            Request::ConfigRead { device: DeviceId(1), offset: 0x10, width: 4 },
            Request::ConfigRead { device: DeviceId(0), offset: 0xffe, width: 2 },
            Request::ConfigWrite { device: DeviceId(2), offset: 0x04, width: 2, value: 0x6 },
            Request::ConfigWrite { device: DeviceId(2), offset: 0x41, width: 1, value: 0xff },
        ];
        for r in reqs {
            let mut mrs = [0; MAX_MRS];
            let (label, n) = r.encode(&mut mrs);
            assert_eq!(Request::decode(label, &mrs[..n]), Ok(r));
            // Every truncation of a request with arguments is refused, but a RESUME's
            // without the codes its caller decodes (an older client's).
            let needed = if label == Op::Resume as u64 { 1 } else { n };
            for short in 0..needed {
                assert_eq!(Request::decode(label, &mrs[..short]), Err(DecodeError::Truncated), "{r:?} cut to {short}");
            }
            assert_eq!(Request::decode(label, &mrs[..needed]), Ok(r));
        }
    }

    #[test]
    fn malformed_and_unknown() {
        assert_eq!(Request::decode(0, &[]), Err(DecodeError::UnknownOp(0)));
        assert_eq!(Request::decode(99, &[1, 2, 3]), Err(DecodeError::UnknownOp(99)));
        // Rights (mr0 bits 24..32) with unknown bits, or none; a valid MAP beside them.
        assert_eq!(Request::decode(1, &[4 << 24, 0, 0x1000, IOVA_ANY]), Err(DecodeError::Malformed));
        assert_eq!(Request::decode(1, &[0, 0, 0x1000, IOVA_ANY]), Err(DecodeError::Malformed));
        assert!(Request::decode(1, &[3 << 24, 0, 0x1000, IOVA_ANY]).is_ok());
        assert_eq!(Request::decode(1, &[3 << 24, 0, 0x1000]), Err(DecodeError::Truncated));
        // UNMAP with 0 or too many ranges, or a device number that does not fit.
        assert_eq!(Request::decode(2, &[0, 0]), Err(DecodeError::Malformed));
        assert_eq!(Request::decode(2, &[0, 65]), Err(DecodeError::Malformed));
        assert_eq!(Request::decode(2, &[1 << 40, 1, 0]), Err(DecodeError::Malformed));
        assert_eq!(ErrorCode::from_label(16), Some(ErrorCode::NoIova));
        assert_eq!(ErrorCode::from_label(19), Some(ErrorCode::NoHandleSlot));
        assert_eq!(ErrorCode::from_label(21), Some(ErrorCode::QuotaGrants));
        assert_eq!(ErrorCode::from_label(22), Some(ErrorCode::Stopped));
        assert_eq!(ErrorCode::from_label(23), Some(ErrorCode::Unavailable));
        assert_eq!(ErrorCode::from_label(24), Some(ErrorCode::ConfigDenied));
        assert_eq!(ErrorCode::from_label(25), Some(ErrorCode::NoConfigSpace));
        assert_eq!(ErrorCode::from_label(26), Some(ErrorCode::DeviceMissing));
        assert_eq!(ErrorCode::from_label(27), Some(ErrorCode::ResetRationed));
        assert_eq!(ErrorCode::from_label(28), Some(ErrorCode::ResumeRationed));
        assert_eq!(ErrorCode::from_label(29), Some(ErrorCode::ServiceFailed));
        assert_eq!(ErrorCode::from_label(30), None);
        // Configuration accesses: a width other than 1, 2, 4; misaligned; past 4 KiB; a
        // value wider than its width; a device number that does not fit.
        assert_eq!(Request::decode(11, &[0, config::pack(0, 3)]), Err(DecodeError::Malformed));
        assert_eq!(Request::decode(11, &[0, config::pack(2, 4)]), Err(DecodeError::Malformed));
        assert_eq!(Request::decode(11, &[0, config::pack(0x1000, 1)]), Err(DecodeError::Malformed));
        assert_eq!(Request::decode(11, &[0, 1 << 32 | config::pack(0x10, 4)]), Err(DecodeError::Malformed));
        assert_eq!(Request::decode(12, &[0, config::pack(4, 2), 0x1_0000]), Err(DecodeError::Malformed));
        assert_eq!(Request::decode(12, &[1 << 40, config::pack(4, 2), 0]), Err(DecodeError::Malformed));
        assert!(Request::decode(11, &[0, config::pack(0xffc, 4)]).is_ok());
        assert_eq!(ErrorCode::from_label(0), None);
    }
}
