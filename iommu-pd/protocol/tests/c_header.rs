//! The C interface is the Rust declaration, written out: `iommu-pd/c/iommu_service.h` is
//! generated here from the protocol crate (labels, error codes, message-register layouts,
//! the fault ring's layout, with static assertions a C compiler checks), and must equal
//! the committed file; `iommu-pd/c/iommu_client.h`'s functions, compiled on the host
//! against a stand-in `microkit.h`, must send exactly what the Rust encoding sends.
//!
//! After changing the protocol: `UPDATE_C_HEADER=1 cargo test -p iommu-protocol --test
//! c_header`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use iommu_protocol::faults::{layout, FaultRecord, FAULT_RING};
use iommu_protocol::{
    query, ClientId, DeviceId, ErrorCode, Handle, Op, Request, Rights, IOVA_ANY, MAP_HANDLE_MASK, MAX_MRS,
    MAX_REPLY_VALUES, MAX_UNMAP_RANGES,
};

const OPS: [(&str, Op); 12] = [
    ("MAP", Op::Map),
    ("UNMAP", Op::Unmap),
    ("GRANT", Op::Grant),
    ("REVOKE", Op::Revoke),
    ("ACK_FAULTS", Op::AckFaults),
    ("RESUME", Op::Resume),
    ("QUERY", Op::Query),
    ("QUERY_MAPPING", Op::QueryMapping),
    ("RELEASE", Op::Release),
    ("STOP", Op::Stop),
    ("CONFIG_READ", Op::ConfigRead),
    ("CONFIG_WRITE", Op::ConfigWrite),
];

fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../c")
}

/// `CamelCase` -> `CAMEL_CASE`.
fn upper_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn header() -> String {
    let mut h = String::new();
    let w = &mut h;
    let _ = writeln!(w, "/* Generated from the Rust declaration of the IOMMU service's protocol (iommu-pd/protocol)");
    let _ = writeln!(w, " * by `UPDATE_C_HEADER=1 cargo test -p iommu-protocol --test c_header`; do not edit. */");
    let _ =
        writeln!(w, "#ifndef IOMMU_SERVICE_H\n#define IOMMU_SERVICE_H\n\n#include <stddef.h>\n#include <stdint.h>\n");
    let _ = writeln!(w, "/* Request labels. */");
    for (name, op) in OPS {
        let _ = writeln!(w, "#define IOMMU_OP_{name} {}", op as u64);
    }
    let _ = writeln!(w, "\n/* Reply labels: 0 is success. */");
    for label in 1..64 {
        if let Some(e) = ErrorCode::from_label(label) {
            let _ = writeln!(w, "#define IOMMU_ERR_{} {label}", upper_snake(&format!("{e:?}")));
        }
    }
    let _ = writeln!(w, "\n/* Message registers. */");
    let _ = writeln!(w, "#define IOMMU_MAX_UNMAP_RANGES {MAX_UNMAP_RANGES}");
    let _ = writeln!(w, "#define IOMMU_MAP_HANDLE_MASK {MAP_HANDLE_MASK:#x}");
    let _ = writeln!(w, "#define IOMMU_MAX_MRS {MAX_MRS}");
    let _ = writeln!(w, "#define IOMMU_MAX_REPLY_VALUES {MAX_REPLY_VALUES}");
    let _ = writeln!(w, "#define IOMMU_IOVA_ANY {IOVA_ANY:#x}ULL");
    let _ = writeln!(w, "#define IOMMU_RIGHTS_READ {}", Rights::READ.0);
    let _ = writeln!(w, "#define IOMMU_RIGHTS_WRITE {}", Rights::WRITE.0);
    let _ = writeln!(w, "#define IOMMU_RIGHTS_READ_WRITE {}", Rights::READ_WRITE.0);
    let _ = writeln!(w, "#define IOMMU_CONFIG_SPACE {}", iommu_protocol::config::SPACE);
    let _ = writeln!(w, "#define IOMMU_CONFIG_WIDTH_SHIFT {}", iommu_protocol::config::WIDTH_SHIFT);
    let _ = writeln!(w, "\n/* QUERY's reply. */");
    for (name, i) in [
        ("MAPPINGS", query::MAPPINGS),
        ("MAPPING_QUOTA", query::MAPPING_QUOTA),
        ("PAGES", query::PAGES),
        ("PAGE_QUOTA", query::PAGE_QUOTA),
        ("FAULTS_RECORDED", query::FAULTS_RECORDED),
        ("FAULTS_DROPPED", query::FAULTS_DROPPED),
        ("REMOVALS_PENDING", query::REMOVALS_PENDING),
        ("GRANTS", query::GRANTS),
        ("GRANT_QUOTA", query::GRANT_QUOTA),
    ] {
        let _ = writeln!(w, "#define IOMMU_QUERY_{name} {i}");
    }
    let _ = writeln!(w, "#define IOMMU_QUERY_VALUES {}", query::VALUES);
    let _ = writeln!(w, "\n/* The fault ring: one page the IOMMU PD writes and this PD maps read-only. */");
    let _ = writeln!(w, "#define IOMMU_FAULT_RING {FAULT_RING}\n");
    let fields = [
        ("uint64_t", "seq", core::mem::offset_of!(FaultRecord, seq)),
        ("uint32_t", "device", core::mem::offset_of!(FaultRecord, device)),
        ("uint32_t", "stream", core::mem::offset_of!(FaultRecord, stream)),
        ("uint64_t", "iova", core::mem::offset_of!(FaultRecord, iova)),
        ("uint32_t", "kind", core::mem::offset_of!(FaultRecord, kind)),
        ("uint32_t", "write", core::mem::offset_of!(FaultRecord, write)),
        ("uint32_t", "region", core::mem::offset_of!(FaultRecord, region)),
        ("uint32_t", "near", core::mem::offset_of!(FaultRecord, near)),
        ("uint64_t", "offset", core::mem::offset_of!(FaultRecord, offset)),
        ("uint32_t", "quarantined", core::mem::offset_of!(FaultRecord, quarantined)),
        ("uint32_t", "dropped_before", core::mem::offset_of!(FaultRecord, dropped_before)),
        ("uint32_t", "repeats", core::mem::offset_of!(FaultRecord, repeats)),
        ("uint64_t", "iova_last", core::mem::offset_of!(FaultRecord, iova_last)),
    ];
    let _ = writeln!(w, "struct iommu_fault_record {{");
    for (ty, name, _) in fields {
        let _ = writeln!(w, "    {ty} {name};");
    }
    let _ = writeln!(w, "}};\n");
    let _ = writeln!(
        w,
        "_Static_assert(sizeof(struct iommu_fault_record) == {}, \"FaultRecord's size\");",
        size_of::<FaultRecord>()
    );
    for (_, name, offset) in fields {
        let _ = writeln!(
            w,
            "_Static_assert(offsetof(struct iommu_fault_record, {name}) == {offset}, \"FaultRecord.{name}\");"
        );
    }
    let _ = writeln!(w, "\nstruct iommu_fault_ring {{");
    let _ = writeln!(w, "    uint64_t published; /* records with seq < published are valid (read with acquire) */");
    let _ = writeln!(w, "    uint64_t dropped;");
    let _ = writeln!(w, "    uint64_t acked;");
    let _ = writeln!(w, "    uint64_t dropped_unreported;");
    let _ = writeln!(w, "    struct iommu_fault_record records[IOMMU_FAULT_RING];");
    let _ = writeln!(w, "}} __attribute__((aligned(4096)));\n");
    for (name, offset) in [
        ("published", layout::PUBLISHED),
        ("dropped", layout::DROPPED),
        ("acked", layout::ACKED),
        ("dropped_unreported", layout::DROPPED_UNREPORTED),
        ("records", layout::RECORDS),
    ] {
        let _ =
            writeln!(w, "_Static_assert(offsetof(struct iommu_fault_ring, {name}) == {offset}, \"FaultRing.{name}\");");
    }
    let _ = writeln!(
        w,
        "_Static_assert(sizeof(struct iommu_fault_ring) == {}, \"FaultRing's size\");",
        size_of::<iommu_protocol::faults::FaultRing>()
    );
    let _ = writeln!(w, "\n#endif");
    h
}

#[test]
fn the_c_header_is_the_rust_declaration() {
    let path = c_dir().join("iommu_service.h");
    let want = header();
    if std::env::var_os("UPDATE_C_HEADER").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(have, want, "iommu_service.h is stale: UPDATE_C_HEADER=1 cargo test -p iommu-protocol --test c_header");
    // Every label the protocol decodes is in the header.
    for label in 1..64u64 {
        let known = !matches!(Request::decode(label, &[0; MAX_MRS]), Err(iommu_protocol::DecodeError::UnknownOp(_)));
        assert_eq!(known, OPS.iter().any(|(_, op)| *op as u64 == label), "label {label}");
    }
}

/// The C compiler agrees with the Rust layout (the header's static assertions), and the C
/// functions send what the Rust encoding sends.
#[test]
fn c_calls_encode_as_the_rust_ones() {
    let out = std::env::temp_dir().join(format!("iommu-c-encode-{}", std::process::id()));
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg(here.join("encode.c"))
        .arg("-I")
        .arg(&here)
        .arg("-I")
        .arg(c_dir())
        .status()
        .expect("a C compiler (cc) on the host");
    assert!(built.success(), "the C client does not compile");
    // A ring as the service leaves it: three records, the first already read (the C
    // reader starts at sequence number 1).
    let mut ring = iommu_protocol::faults::FaultRing::default();
    for i in 0..3u64 {
        let r = FaultRecord { stream: 0x18, iova: 0x1000 * (i + 1), ..FaultRecord::default() };
        assert!(ring.push(r));
    }
    // SAFETY: the ring is plain memory of its own size; reading its bytes is reading it.
    let bytes = unsafe {
        std::slice::from_raw_parts((&ring as *const iommu_protocol::faults::FaultRing).cast::<u8>(), size_of_val(&ring))
    };
    let ring_file = out.with_extension("ring");
    std::fs::write(&ring_file, bytes).unwrap();
    let run = Command::new(&out).arg(&ring_file).output().unwrap();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&ring_file);
    let text = String::from_utf8(run.stdout).unwrap();
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = 0x1000;
    iovas[1] = 0x8000;
    let cases = [
        (
            "map",
            Request::Map {
                cap: Handle(3),
                device: DeviceId(1),
                offset: 0x1000,
                len: 0x4000,
                iova: Some(0x10_0000),
                rights: Rights::READ,
            },
        ),
        (
            "map_any",
            Request::Map {
                cap: Handle(0),
                device: DeviceId(0),
                offset: 0,
                len: 0x1000,
                iova: None,
                rights: Rights::READ_WRITE,
            },
        ),
        ("unmap", Request::Unmap { device: DeviceId(2), iovas, count: 2 }),
        (
            "grant",
            Request::Grant {
                cap: Handle(1),
                to: ClientId(4),
                offset: 0,
                len: 0x1000,
                rights: Rights::WRITE,
                devices: 2,
            },
        ),
        ("revoke", Request::Revoke { grant: Handle(9) }),
        ("ack_faults", Request::AckFaults { upto: 77 }),
        ("resume", Request::Resume { device: DeviceId(5) }),
        ("query", Request::Query),
        ("release", Request::Release { cap: Handle(2) }),
        ("stop", Request::Stop { device: DeviceId(3) }),
        ("config_read", Request::ConfigRead { device: DeviceId(2), offset: 0x10, width: 4 }),
        ("config_write", Request::ConfigWrite { device: DeviceId(1), offset: 0x04, width: 2, value: 0x6 }),
    ];
    for (name, req) in cases {
        let mut mrs = [0; MAX_MRS];
        let (label, n) = req.encode(&mut mrs);
        let want: String =
            format!("{name} {label} {n}") + &mrs[..n].iter().map(|v| format!(" {v}")).collect::<String>();
        assert!(text.lines().any(|l| l == want), "C sent something else for {name}: want `{want}`\n{text}");
    }
    // Replies are read back from the right registers.
    assert!(text.lines().any(|l| l == "reply 4294967301 5 7"), "{text}");
    // The ring reads as the Rust reader reads it, and the last record read is acknowledged.
    for (seq, iova) in [(1, 0x2000), (2, 0x3000)] {
        assert!(text.lines().any(|l| l == format!("fault {seq} {iova} {iova} 0 24")), "{text}");
    }
    assert!(text.lines().any(|l| l == "next 3"), "{text}");
    assert!(text.lines().any(|l| l == format!("take_faults {} 1 2", Op::AckFaults as u64)), "{text}");
}
