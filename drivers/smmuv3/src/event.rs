//! Event-queue records (IHI 0070 7.3): four 64-bit words, decoded into a typed `Event`.
//! Field names follow the spec and Linux's `EVTQ_<word>_<FIELD>`.

use core::fmt;

use crate::addr::{Iova, PhysAddr, StreamId};
use crate::field::Field;

/// Event type.
pub const EVTQ_0_ID: Field = Field::new(7, 0);
/// SSV: the SubstreamID is valid.
pub const EVTQ_0_SSV: Field = Field::bit(11);
/// SubstreamID.
pub const EVTQ_0_SSID: Field = Field::new(31, 12);
/// StreamID.
pub const EVTQ_0_SID: Field = Field::new(63, 32);
/// STAG: stall tag.
pub const EVTQ_1_STAG: Field = Field::new(15, 0);
/// Stall: the transaction is stalled, awaiting CMD_RESUME.
pub const EVTQ_1_STALL: Field = Field::bit(31);
/// PnU: privileged (1) or unprivileged (0).
pub const EVTQ_1_PNU: Field = Field::bit(33);
/// InD: instruction (1) or data (0).
pub const EVTQ_1_IND: Field = Field::bit(34);
/// RnW: read (1) or write (0).
pub const EVTQ_1_RNW: Field = Field::bit(35);
/// S2: the fault arose at stage 2.
pub const EVTQ_1_S2: Field = Field::bit(39);
/// CLASS: what was being accessed when the fault arose.
pub const EVTQ_1_CLASS: Field = Field::new(41, 40);
/// TTRnW: for F_PERMISSION on a table-walk access, whether it was a read.
pub const EVTQ_1_TT_READ: Field = Field::bit(44);
/// Reason (F_TLB_CONFLICT, F_CFG_CONFLICT, F_UUT and fetch aborts): IMPLEMENTATION DEFINED.
pub const EVTQ_1_REASON: Field = Field::new(63, 32);
/// VMID (F_VMS_FETCH).
pub const EVTQ_0_VMID: Field = Field::new(47, 32);
/// Input address.
pub const EVTQ_2_ADDR: Field = Field::new(63, 0);
/// IPA of a stage-2 fault, bits [51:12].
pub const EVTQ_3_IPA: Field = Field::new(51, 12);
/// FetchAddr of an abort on a configuration or table fetch, bits [51:3].
pub const EVTQ_3_FETCH_ADDR: Field = Field::new(51, 3);

/// Size of an event record in bytes.
pub const EVT_SIZE: usize = 32;

/// Event type numbers (IHI 0070 7.3, table 7-1).
#[allow(missing_docs)]
pub mod id {
    pub const F_UUT: u8 = 0x01;
    pub const C_BAD_STREAMID: u8 = 0x02;
    pub const F_STE_FETCH: u8 = 0x03;
    pub const C_BAD_STE: u8 = 0x04;
    pub const F_BAD_ATS_TREQ: u8 = 0x05;
    pub const F_STREAM_DISABLED: u8 = 0x06;
    pub const F_TRANSL_FORBIDDEN: u8 = 0x07;
    pub const C_BAD_SUBSTREAMID: u8 = 0x08;
    pub const F_CD_FETCH: u8 = 0x09;
    pub const C_BAD_CD: u8 = 0x0a;
    pub const F_WALK_EABT: u8 = 0x0b;
    pub const F_TRANSLATION: u8 = 0x10;
    pub const F_ADDR_SIZE: u8 = 0x11;
    pub const F_ACCESS: u8 = 0x12;
    pub const F_PERMISSION: u8 = 0x13;
    pub const F_TLB_CONFLICT: u8 = 0x20;
    pub const F_CFG_CONFLICT: u8 = 0x21;
    pub const E_PAGE_REQUEST: u8 = 0x24;
    pub const F_VMS_FETCH: u8 = 0x25;
}

/// A raw event record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventRecord(pub [u64; 4]);

/// Direction of the transaction that faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The device read memory.
    Read,
    /// The device wrote memory.
    Write,
}

/// CLASS: what the SMMU was accessing when the fault arose (7.3.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultClass {
    /// Fetching the context descriptor.
    ContextDescriptor,
    /// Walking the translation tables.
    TranslationTable,
    /// Translating the transaction's input address.
    Input,
    /// A reserved encoding.
    Reserved,
}

/// The transaction an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transaction {
    /// The stream that issued it.
    pub sid: StreamId,
    /// The SubstreamID, if it had one.
    pub ssid: Option<u32>,
    /// The input (I/O virtual) address.
    pub iova: Iova,
    /// Read or write.
    pub access: Access,
    /// Privileged (PnU = 1) or not.
    pub privileged: bool,
    /// Instruction fetch (InD = 1) or data.
    pub instruction: bool,
}

/// A translation-class fault (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION,
/// F_WALK_EABT, F_TLB_CONFLICT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// The faulting transaction.
    pub txn: Transaction,
    /// The fault arose at stage 2.
    pub stage2: bool,
    /// What was being accessed.
    pub class: FaultClass,
    /// The transaction is stalled (never, with this driver: CD.S = 0).
    pub stall: bool,
    /// Stall tag, for CMD_RESUME.
    pub stag: u16,
    /// Stage-2 IPA, when `stage2`.
    pub ipa: u64,
}

/// A decoded event. Field names are the spec's (`sid`, `ssid`, `reason`...).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// F_UUT: an unsupported upstream transaction.
    UnsupportedUpstream { txn: Transaction, reason: u32 },
    /// C_BAD_STREAMID: the StreamID is outside the stream table.
    BadStreamId { sid: StreamId, ssid: Option<u32> },
    /// F_STE_FETCH: fetching the STE aborted.
    SteFetchAbort { sid: StreamId, ssid: Option<u32>, fetch_addr: PhysAddr },
    /// C_BAD_STE: the STE is invalid or illegal.
    BadSte { sid: StreamId, ssid: Option<u32> },
    /// F_BAD_ATS_TREQ: an ATS translation request that is not allowed.
    BadAtsRequest { txn: Transaction },
    /// F_STREAM_DISABLED: a stream with a disabled configuration (for example, a
    /// substream transaction when substreams are off).
    StreamDisabled { sid: StreamId },
    /// F_TRANSL_FORBIDDEN: a translated (ATS) transaction where they are not allowed.
    TranslationForbidden { txn: Transaction },
    /// C_BAD_SUBSTREAMID: the SubstreamID is out of range.
    BadSubstreamId { sid: StreamId, ssid: Option<u32> },
    /// F_CD_FETCH: fetching the CD aborted.
    CdFetchAbort { sid: StreamId, ssid: Option<u32>, fetch_addr: PhysAddr },
    /// C_BAD_CD: the CD is invalid or illegal.
    BadCd { sid: StreamId, ssid: Option<u32> },
    /// F_WALK_EABT: an external abort during a table walk.
    WalkExternalAbort { fault: Fault, fetch_addr: PhysAddr },
    /// F_TRANSLATION: no valid translation for the address.
    Translation(Fault),
    /// F_ADDR_SIZE: an address outside the configured input or output size.
    AddressSize(Fault),
    /// F_ACCESS: the access flag of the descriptor is clear.
    AccessFlag(Fault),
    /// F_PERMISSION: the descriptor does not allow this access.
    Permission(Fault),
    /// F_TLB_CONFLICT: conflicting TLB entries matched.
    TlbConflict { fault: Fault, reason: u32 },
    /// F_CFG_CONFLICT: conflicting configuration-cache entries matched.
    ConfigConflict { sid: StreamId, ssid: Option<u32>, reason: u32 },
    /// E_PAGE_REQUEST: a speculative page request hint.
    PageRequest { txn: Transaction },
    /// F_VMS_FETCH: fetching a VMS aborted.
    VmsFetchAbort { vmid: u16, fetch_addr: PhysAddr },
    /// An IMPLEMENTATION DEFINED event (0xe0..=0xef).
    ImplementationDefined { id: u8, raw: EventRecord },
    /// An event type the spec does not define.
    Unknown { id: u8, raw: EventRecord },
}

impl EventRecord {
    /// The event type number.
    pub const fn id(&self) -> u8 {
        EVTQ_0_ID.get(self.0[0]) as u8
    }

    fn sid(&self) -> StreamId {
        StreamId(EVTQ_0_SID.get(self.0[0]) as u32)
    }

    fn ssid(&self) -> Option<u32> {
        (EVTQ_0_SSV.get(self.0[0]) == 1).then(|| EVTQ_0_SSID.get(self.0[0]) as u32)
    }

    fn txn(&self) -> Transaction {
        let w1 = self.0[1];
        Transaction {
            sid: self.sid(),
            ssid: self.ssid(),
            iova: Iova(EVTQ_2_ADDR.get(self.0[2])),
            access: if EVTQ_1_RNW.get(w1) == 1 { Access::Read } else { Access::Write },
            privileged: EVTQ_1_PNU.get(w1) == 1,
            instruction: EVTQ_1_IND.get(w1) == 1,
        }
    }

    fn fault(&self) -> Fault {
        let w1 = self.0[1];
        Fault {
            txn: self.txn(),
            stage2: EVTQ_1_S2.get(w1) == 1,
            class: match EVTQ_1_CLASS.get(w1) {
                0b00 => FaultClass::ContextDescriptor,
                0b01 => FaultClass::TranslationTable,
                0b10 => FaultClass::Input,
                _ => FaultClass::Reserved,
            },
            stall: EVTQ_1_STALL.get(w1) == 1,
            stag: EVTQ_1_STAG.get(w1) as u16,
            ipa: self.0[3] & EVTQ_3_IPA.mask(),
        }
    }

    fn fetch_addr(&self) -> PhysAddr {
        PhysAddr(self.0[3] & EVTQ_3_FETCH_ADDR.mask())
    }

    fn reason(&self) -> u32 {
        EVTQ_1_REASON.get(self.0[1]) as u32
    }

    /// Decode the record. Every bit pattern decodes to something; nothing panics.
    pub fn decode(&self) -> Event {
        let (sid, ssid) = (self.sid(), self.ssid());
        match self.id() {
            id::F_UUT => Event::UnsupportedUpstream { txn: self.txn(), reason: self.reason() },
            id::C_BAD_STREAMID => Event::BadStreamId { sid, ssid },
            id::F_STE_FETCH => Event::SteFetchAbort { sid, ssid, fetch_addr: self.fetch_addr() },
            id::C_BAD_STE => Event::BadSte { sid, ssid },
            id::F_BAD_ATS_TREQ => Event::BadAtsRequest { txn: self.txn() },
            id::F_STREAM_DISABLED => Event::StreamDisabled { sid },
            id::F_TRANSL_FORBIDDEN => Event::TranslationForbidden { txn: self.txn() },
            id::C_BAD_SUBSTREAMID => Event::BadSubstreamId { sid, ssid },
            id::F_CD_FETCH => Event::CdFetchAbort { sid, ssid, fetch_addr: self.fetch_addr() },
            id::C_BAD_CD => Event::BadCd { sid, ssid },
            id::F_WALK_EABT => Event::WalkExternalAbort { fault: self.fault(), fetch_addr: self.fetch_addr() },
            id::F_TRANSLATION => Event::Translation(self.fault()),
            id::F_ADDR_SIZE => Event::AddressSize(self.fault()),
            id::F_ACCESS => Event::AccessFlag(self.fault()),
            id::F_PERMISSION => Event::Permission(self.fault()),
            id::F_TLB_CONFLICT => Event::TlbConflict { fault: self.fault(), reason: self.reason() },
            id::F_CFG_CONFLICT => Event::ConfigConflict { sid, ssid, reason: self.reason() },
            id::E_PAGE_REQUEST => Event::PageRequest { txn: self.txn() },
            id::F_VMS_FETCH => {
                Event::VmsFetchAbort { vmid: EVTQ_0_VMID.get(self.0[0]) as u16, fetch_addr: self.fetch_addr() }
            }
            id @ 0xe0..=0xef => Event::ImplementationDefined { id, raw: *self },
            id => Event::Unknown { id, raw: *self },
        }
    }
}

impl Event {
    /// The spec's name for the event type.
    pub const fn name(&self) -> &'static str {
        match self {
            Event::UnsupportedUpstream { .. } => "F_UUT",
            Event::BadStreamId { .. } => "C_BAD_STREAMID",
            Event::SteFetchAbort { .. } => "F_STE_FETCH",
            Event::BadSte { .. } => "C_BAD_STE",
            Event::BadAtsRequest { .. } => "F_BAD_ATS_TREQ",
            Event::StreamDisabled { .. } => "F_STREAM_DISABLED",
            Event::TranslationForbidden { .. } => "F_TRANSL_FORBIDDEN",
            Event::BadSubstreamId { .. } => "C_BAD_SUBSTREAMID",
            Event::CdFetchAbort { .. } => "F_CD_FETCH",
            Event::BadCd { .. } => "C_BAD_CD",
            Event::WalkExternalAbort { .. } => "F_WALK_EABT",
            Event::Translation(_) => "F_TRANSLATION",
            Event::AddressSize(_) => "F_ADDR_SIZE",
            Event::AccessFlag(_) => "F_ACCESS",
            Event::Permission(_) => "F_PERMISSION",
            Event::TlbConflict { .. } => "F_TLB_CONFLICT",
            Event::ConfigConflict { .. } => "F_CFG_CONFLICT",
            Event::PageRequest { .. } => "E_PAGE_REQUEST",
            Event::VmsFetchAbort { .. } => "F_VMS_FETCH",
            Event::ImplementationDefined { .. } => "IMPDEF",
            Event::Unknown { .. } => "UNKNOWN",
        }
    }

    /// The stream the event is about, if it names one.
    pub fn stream_id(&self) -> Option<StreamId> {
        match *self {
            Event::UnsupportedUpstream { txn, .. }
            | Event::BadAtsRequest { txn }
            | Event::TranslationForbidden { txn }
            | Event::PageRequest { txn } => Some(txn.sid),
            Event::BadStreamId { sid, .. }
            | Event::SteFetchAbort { sid, .. }
            | Event::BadSte { sid, .. }
            | Event::StreamDisabled { sid }
            | Event::BadSubstreamId { sid, .. }
            | Event::CdFetchAbort { sid, .. }
            | Event::BadCd { sid, .. }
            | Event::ConfigConflict { sid, .. } => Some(sid),
            Event::WalkExternalAbort { fault, .. } | Event::TlbConflict { fault, .. } => Some(fault.txn.sid),
            Event::Translation(f) | Event::AddressSize(f) | Event::AccessFlag(f) | Event::Permission(f) => {
                Some(f.txn.sid)
            }
            Event::VmsFetchAbort { .. } | Event::ImplementationDefined { .. } | Event::Unknown { .. } => None,
        }
    }

    /// The translation fault carried by the event, if it is one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Event::WalkExternalAbort { fault, .. } | Event::TlbConflict { fault, .. } => Some(fault),
            Event::Translation(f) | Event::AddressSize(f) | Event::AccessFlag(f) | Event::Permission(f) => Some(f),
            _ => None,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(sid) = self.stream_id() {
            write!(f, " stream {sid}")?;
        }
        if let Some(fault) = self.fault() {
            let dir = match fault.txn.access {
                Access::Read => "read",
                Access::Write => "write",
            };
            let who = if fault.txn.privileged { "privileged" } else { "unprivileged" };
            write!(f, ": {who} {dir} of iova {}", fault.txn.iova)?;
        }
        Ok(())
    }
}
