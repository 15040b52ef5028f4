//! Faults, decoded: a context bank's (SMMU_CBn_FSR, FAR, FSYNR0 and SMMU_CBFRSYNRAn for
//! the StreamID; Arm IHI 0062D 10.8.12-10.8.14, 10.7.2) and the global ones
//! (SMMU_sGFSR, sGFSYNR0-1, sGFAR; 10.6.14-10.6.17), such as a stream no SMR matches
//! while sCR0.USFCFG = 1. The records carry what the SMMUv3 driver's events carry for
//! the service: StreamID, address, direction, privilege, instruction/data.

pub use smmuv3::Access;
use smmuv3::{Iova, StreamId};

/// SMMU_CBn_FSR fault bits (IHI 0062D 10.8.12), write 1 to clear.
#[allow(missing_docs)]
pub mod fsr {
    pub const TF: u32 = 1 << 1;
    pub const AFF: u32 = 1 << 2;
    pub const PF: u32 = 1 << 3;
    pub const EF: u32 = 1 << 4;
    pub const TLBMCF: u32 = 1 << 5;
    pub const TLBLKF: u32 = 1 << 6;
    pub const ASF: u32 = 1 << 7;
    pub const UUT: u32 = 1 << 8;
    pub const SS: u32 = 1 << 30;
    pub const MULTI: u32 = 1 << 31;
    /// Every bit the driver clears (Linux's `ARM_SMMU_CB_FSR_FAULT`).
    pub const ALL: u32 = TF | AFF | PF | EF | TLBMCF | TLBLKF | ASF | UUT | SS | MULTI;
}

/// SMMU_CBn_FSYNR0 fields (IHI 0062D 10.8.14; Linux's `ARM_SMMU_CB_FSYNR0_*`).
#[allow(missing_docs)]
pub mod fsynr0 {
    pub const PLVL_MASK: u32 = 0b11;
    pub const WNR: u32 = 1 << 4;
    pub const PNU: u32 = 1 << 5;
    pub const IND: u32 = 1 << 6;
    pub const PTWF: u32 = 1 << 10;
    pub const AFR: u32 = 1 << 11;
}

/// SMMU_sGFSR bits (IHI 0062D 10.6.14), write 1 to clear.
#[allow(missing_docs)]
pub mod sgfsr {
    pub const ICF: u32 = 1 << 0;
    pub const USF: u32 = 1 << 1;
    pub const SMCF: u32 = 1 << 2;
    pub const UCBF: u32 = 1 << 3;
    pub const UCIF: u32 = 1 << 4;
    pub const CAF: u32 = 1 << 5;
    pub const EF: u32 = 1 << 6;
    pub const PF: u32 = 1 << 7;
    pub const UUT: u32 = 1 << 8;
    pub const MULTI: u32 = 1 << 31;
    pub const ALL: u32 = ICF | USF | SMCF | UCBF | UCIF | CAF | EF | PF | UUT | MULTI;
    /// The faults no stream mapping the driver writes can raise (a stream routed to a
    /// bank not valid for it or not implemented, two SMRs matching one stream, a context
    /// interrupt not implemented): the SMMU's configuration is not what it wrote.
    pub const CONFIGURATION: u32 = ICF | SMCF | UCBF | UCIF;
}

/// SMMU_sGFSYNR0 fields (IHI 0062D 10.6.16).
#[allow(missing_docs)]
pub mod sgfsynr0 {
    pub const WNR: u32 = 1 << 1;
    pub const PNU: u32 = 1 << 2;
    pub const IND: u32 = 1 << 3;
}

/// What a context fault was, by the first FSR bit set in the spec's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextFaultKind {
    /// FSR.TF: no valid translation.
    Translation,
    /// FSR.AFF: the descriptor's access flag is clear.
    AccessFlag,
    /// FSR.PF: the descriptor forbids the access.
    Permission,
    /// FSR.EF: an external abort (on the walk or the access).
    External,
    /// FSR.TLBMCF: conflicting TLB entries matched.
    TlbMatchConflict,
    /// FSR.TLBLKF: a TLB lock fault.
    TlbLock,
    /// FSR.ASF: an address outside the configured input or output size.
    AddressSize,
    /// FSR.UUT: an unsupported upstream transaction.
    UnsupportedUpstream,
    /// FSR has only SS or MULTI set, or nothing the spec names.
    Other,
}

/// A context bank's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextFault {
    /// The context bank (the domain).
    pub cb: u8,
    /// The stream whose transaction faulted (CBFRSYNRAn.StreamID).
    pub sid: StreamId,
    /// The input address (FAR).
    pub iova: Iova,
    /// Read or write (FSYNR0.WNR).
    pub access: Access,
    /// Privileged (FSYNR0.PNU).
    pub privileged: bool,
    /// Instruction fetch (FSYNR0.IND).
    pub instruction: bool,
    /// The fault arose on a table walk (FSYNR0.PTWF).
    pub walk: bool,
    /// The level of the table walk (FSYNR0.PLVL).
    pub level: u8,
    /// What the fault was.
    pub kind: ContextFaultKind,
    /// More faults arose while this one was recorded (FSR.MULTI): they are lost.
    pub multi: bool,
    /// The raw FSR.
    pub fsr: u32,
}

impl ContextFault {
    /// Decode a context bank's fault registers; `None` when FSR records none.
    pub fn decode(cb: u8, fsr: u32, far: u64, fsynr0: u32, cbfrsynra: u32) -> Option<ContextFault> {
        if fsr & fsr::ALL == 0 {
            return None;
        }
        let kind = [
            (fsr::TF, ContextFaultKind::Translation),
            (fsr::AFF, ContextFaultKind::AccessFlag),
            (fsr::PF, ContextFaultKind::Permission),
            (fsr::EF, ContextFaultKind::External),
            (fsr::TLBMCF, ContextFaultKind::TlbMatchConflict),
            (fsr::TLBLKF, ContextFaultKind::TlbLock),
            (fsr::ASF, ContextFaultKind::AddressSize),
            (fsr::UUT, ContextFaultKind::UnsupportedUpstream),
        ]
        .into_iter()
        .find(|(bit, _)| fsr & bit != 0)
        .map_or(ContextFaultKind::Other, |(_, k)| k);
        Some(ContextFault {
            cb,
            sid: StreamId(cbfrsynra & 0xffff),
            iova: Iova(far),
            access: if fsynr0 & fsynr0::WNR != 0 { Access::Write } else { Access::Read },
            privileged: fsynr0 & fsynr0::PNU != 0,
            instruction: fsynr0 & fsynr0::IND != 0,
            walk: fsynr0 & fsynr0::PTWF != 0,
            level: (fsynr0 & fsynr0::PLVL_MASK) as u8,
            kind,
            multi: fsr & fsr::MULTI != 0,
            fsr,
        })
    }
}

/// What a global fault was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalFaultKind {
    /// sGFSR.USF: no SMR matched the stream and sCR0.USFCFG = 1: a device the driver
    /// never attached tried to reach memory.
    UnidentifiedStream,
    /// sGFSR.ICF: an S2CR routed a stream to a context bank that is not valid for it.
    InvalidContext,
    /// sGFSR.SMCF: more than one SMR matched the stream (sCR0.SMCFCFG = 1).
    StreamMatchConflict,
    /// sGFSR.UCBF: an S2CR names a context bank that does not exist.
    UnimplementedContextBank,
    /// sGFSR.UCIF: a CBAR names a context interrupt that does not exist.
    UnimplementedContextInterrupt,
    /// sGFSR.CAF: a configuration access fault.
    ConfigAccess,
    /// sGFSR.EF: an external abort.
    External,
    /// sGFSR.PF: a permission fault (bypass with a privilege override).
    Permission,
    /// sGFSR.UUT: an unsupported upstream transaction.
    UnsupportedUpstream,
    /// Nothing else the spec names.
    Other,
}

/// A global fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalFault {
    /// What it was.
    pub kind: GlobalFaultKind,
    /// The stream (sGFSYNR1.StreamID).
    pub sid: StreamId,
    /// The input address (sGFAR).
    pub iova: Iova,
    /// Read or write (sGFSYNR0.WNR).
    pub access: Access,
    /// Privileged (sGFSYNR0.PNU).
    pub privileged: bool,
    /// Instruction fetch (sGFSYNR0.IND).
    pub instruction: bool,
    /// More faults arose meanwhile (sGFSR.MULTI).
    pub multi: bool,
    /// The raw sGFSR.
    pub sgfsr: u32,
}

impl GlobalFault {
    /// Decode the global fault registers; `None` when sGFSR records none, MULTI alone
    /// included: a fault that came while the previous one was held (between a drain's
    /// read and its clear) sets only MULTI and leaves the syndrome registers as they
    /// were, so they name the previous fault's stream, which sGFSR is shared by all.
    pub fn decode(sgfsr: u32, sgfar: u64, sgfsynr0: u32, sgfsynr1: u32) -> Option<GlobalFault> {
        if sgfsr & sgfsr::ALL & !sgfsr::MULTI == 0 {
            return None;
        }
        let kind = [
            (sgfsr::USF, GlobalFaultKind::UnidentifiedStream),
            (sgfsr::ICF, GlobalFaultKind::InvalidContext),
            (sgfsr::SMCF, GlobalFaultKind::StreamMatchConflict),
            (sgfsr::UCBF, GlobalFaultKind::UnimplementedContextBank),
            (sgfsr::UCIF, GlobalFaultKind::UnimplementedContextInterrupt),
            (sgfsr::CAF, GlobalFaultKind::ConfigAccess),
            (sgfsr::EF, GlobalFaultKind::External),
            (sgfsr::PF, GlobalFaultKind::Permission),
            (sgfsr::UUT, GlobalFaultKind::UnsupportedUpstream),
        ]
        .into_iter()
        .find(|(bit, _)| sgfsr & bit != 0)
        .map_or(GlobalFaultKind::Other, |(_, k)| k);
        Some(GlobalFault {
            kind,
            sid: StreamId(sgfsynr1 & 0xffff),
            iova: Iova(sgfar),
            access: if sgfsynr0 & sgfsynr0::WNR != 0 { Access::Write } else { Access::Read },
            privileged: sgfsynr0 & sgfsynr0::PNU != 0,
            instruction: sgfsynr0 & sgfsynr0::IND != 0,
            multi: sgfsr & sgfsr::MULTI != 0,
            sgfsr,
        })
    }
}

/// A fault, of either kind: what the service attributes to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A stream's translation faulted in its domain's context bank.
    Context(ContextFault),
    /// A global fault (an unmatched stream, a stream-match conflict...).
    Global(GlobalFault),
}

impl Fault {
    /// The stream the fault is about.
    pub fn sid(&self) -> StreamId {
        match self {
            Fault::Context(c) => c.sid,
            Fault::Global(g) => g.sid,
        }
    }

    /// The address.
    pub fn iova(&self) -> Iova {
        match self {
            Fault::Context(c) => c.iova,
            Fault::Global(g) => g.iova,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write translation fault at level 3 for StreamID 0x873 in context bank 2: FSR,
    /// FSYNR0 and CBFRSYNRA with the bit positions of IHI 0062D 10.8.12/10.8.14/10.7.2.
    #[test]
    fn context_fault_decodes() {
        let f = ContextFault::decode(2, 0x2, 0x4000_1234, (1 << 4) | 3, 0x873).unwrap();
        assert_eq!(f.kind, ContextFaultKind::Translation);
        assert_eq!(f.sid, StreamId(0x873));
        assert_eq!(f.iova, Iova(0x4000_1234));
        assert_eq!(f.access, Access::Write);
        assert_eq!(f.level, 3);
        assert!(!f.multi && !f.privileged);
        let pf = ContextFault::decode(0, (1 << 3) | (1 << 31), 0, 1 << 5, 0).unwrap();
        assert_eq!(pf.kind, ContextFaultKind::Permission);
        assert!(pf.multi && pf.privileged);
        assert_eq!(pf.access, Access::Read);
        assert_eq!(ContextFault::decode(0, 0, 0, 0, 0), None);
    }

    #[test]
    fn global_fault_decodes() {
        let g = GlobalFault::decode(0x2, 0x1000, 0x2, 0x0042).unwrap();
        assert_eq!(g.kind, GlobalFaultKind::UnidentifiedStream);
        assert_eq!(g.sid, StreamId(0x42));
        assert_eq!(g.access, Access::Write);
        assert_eq!(GlobalFault::decode(0, 0, 0, 0), None);
    }
}
