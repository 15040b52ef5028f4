//! A request as a person reads it, for logs: the operation's name as the protocol's
//! documentation spells it (MAP, CONFIG_WRITE...) and its fields, numbers in hex where
//! they are addresses. Decoding is `Request::decode`'s, so a log shows what the service
//! was asked, and a request that does not decode is shown as the label and the reason.
use core::fmt;

use crate::{DecodeError, Request, Rights};

/// `label` and its message registers, shown as the request they encode.
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a> {
    /// The call's label.
    pub label: u64,
    /// Its message registers, as many as the caller sent.
    pub mrs: &'a [u64],
}

impl Request {
    /// The operation's name, as the protocol's documentation spells it.
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Map { .. } => "MAP",
            Request::Unmap { .. } => "UNMAP",
            Request::Grant { .. } => "GRANT",
            Request::Revoke { .. } => "REVOKE",
            Request::AckFaults { .. } => "ACK_FAULTS",
            Request::Resume { .. } => "RESUME",
            Request::Query => "QUERY",
            Request::QueryMapping { .. } => "QUERY_MAPPING",
            Request::Release { .. } => "RELEASE",
            Request::Stop { .. } => "STOP",
            Request::ConfigRead { .. } => "CONFIG_READ",
            Request::ConfigWrite { .. } => "CONFIG_WRITE",
        }
    }
}

struct ShowRights(Rights);

impl fmt::Display for ShowRights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = if self.0.contains(Rights::READ) { "r" } else { "" };
        let w = if self.0.contains(Rights::WRITE) { "w" } else { "" };
        write!(f, "{r}{w}")
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = match Request::decode(self.label, self.mrs) {
            Ok(r) => r,
            Err(DecodeError::UnknownOp(op)) => return write!(f, "label {op:#x} (no such operation)"),
            Err(e) => return write!(f, "label {} with {} word(s) ({e:?})", self.label, self.mrs.len()),
        };
        write!(f, "{} (", request.op_name())?;
        match request {
            Request::Map { cap, device, offset, len, iova, rights } => {
                write!(f, "handle {}, device {}, offset {offset:#x}, {len:#x} bytes, ", cap.0, device.0)?;
                match iova {
                    Some(iova) => write!(f, "at iova {iova:#x}")?,
                    None => write!(f, "any iova")?,
                }
                write!(f, ", {}", ShowRights(rights))?;
            }
            Request::Unmap { device, iovas, count } => {
                write!(f, "device {}, {count} iova(s)", device.0)?;
                if let Some(first) = iovas[..count].first() {
                    write!(f, " from {first:#x}")?;
                }
            }
            Request::Grant { cap, to, offset, len, rights, devices } => write!(
                f,
                "handle {}, to client {}, offset {offset:#x}, {len:#x} bytes, {}, devices {devices:#x}",
                cap.0,
                to.0,
                ShowRights(rights)
            )?,
            Request::Revoke { grant } => write!(f, "grant {}", grant.0)?,
            Request::AckFaults { upto } => write!(f, "up to {upto}")?,
            Request::Resume { device } | Request::Stop { device } => write!(f, "device {}", device.0)?,
            Request::Query => {}
            Request::QueryMapping { index } => write!(f, "index {index}")?,
            Request::Release { cap } => write!(f, "handle {}", cap.0)?,
            Request::ConfigRead { device, offset, width } => {
                write!(f, "device {}, offset {offset:#x}, {width} byte(s)", device.0)?
            }
            Request::ConfigWrite { device, offset, width, value } => {
                write!(f, "device {}, offset {offset:#x}, {width} byte(s), value {value:#x}", device.0)?
            }
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientId, DeviceId, Handle, MAX_MRS, MAX_UNMAP_RANGES};

    fn shown(r: Request) -> String {
        let mut mrs = [0; MAX_MRS];
        let (label, n) = r.encode(&mut mrs);
        Shown { label, mrs: &mrs[..n] }.to_string()
    }

    #[test]
    fn requests_read_as_the_protocol_names_them() {
        let map = Request::Map {
            cap: Handle(3),
            device: DeviceId(1),
            offset: 0x1000,
            len: 0x2000,
            iova: None,
            rights: Rights::READ_WRITE,
        };
        assert_eq!(shown(map), "MAP (handle 3, device 1, offset 0x1000, 0x2000 bytes, any iova, rw)");
        let grant = Request::Grant {
            cap: Handle(0),
            to: ClientId(2),
            offset: 0,
            len: 0x1000,
            rights: Rights::READ,
            devices: 1,
        };
        assert_eq!(shown(grant), "GRANT (handle 0, to client 2, offset 0x0, 0x1000 bytes, r, devices 0x1)");
        let mut iovas = [0; MAX_UNMAP_RANGES];
        iovas[0] = 0x1_0000_0000;
        assert_eq!(
            shown(Request::Unmap { device: DeviceId(0), iovas, count: 2 }),
            "UNMAP (device 0, 2 iova(s) from 0x100000000)"
        );
        let write = Request::ConfigWrite { device: DeviceId(0), offset: 0x10, width: 4, value: 0x1010_0000 };
        assert_eq!(shown(write), "CONFIG_WRITE (device 0, offset 0x10, 4 byte(s), value 0x10100000)");
        assert_eq!(shown(Request::Query), "QUERY ()");
    }

    #[test]
    fn what_does_not_decode_is_shown_with_the_reason() {
        assert_eq!(Shown { label: 0x4d00, mrs: &[1, 1] }.to_string(), "label 0x4d00 (no such operation)");
        assert_eq!(Shown { label: 1, mrs: &[0] }.to_string(), "label 1 with 1 word(s) (Truncated)");
    }
}
