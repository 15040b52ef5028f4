//! The C interface is the Rust declaration, written out: `iommu-pd/c/iommu_service.h` is
//! generated here from the protocol crate (labels, error codes, message-register layouts,
//! the fault ring's layout, with static assertions a C compiler checks), and must equal
//! the committed file; `iommu-pd/c/iommu_client.h`'s functions, compiled on the host
//! against a stand-in `microkit.h`, must send exactly what the Rust encoding sends.
//!
//! The doc comments of the error codes and of the fault record's values are carried over
//! (read from the protocol crate's source, so there is one text of each), and
//! `iommu_strerror()` returns each error code's name and the first sentence of its doc
//! comment: an error code without a doc comment, or one `ErrorCode::from_label` does not
//! know, fails `the_c_header_is_the_rust_declaration`.
//!
//! After changing the protocol: `UPDATE_C_HEADER=1 cargo test -p iommu-protocol --test
//! c_header`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use iommu_protocol::faults::{failed, kind, layout, FaultRecord, FAULT_RING, INSIDE, NEAR, NO_DEVICE, NO_REGION};
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

/// The fault record's `kind` values, as the protocol crate declares them.
const KINDS: [(&str, u32); 11] = [
    ("OTHER", kind::OTHER),
    ("F_UUT", kind::F_UUT),
    ("C_BAD_STREAMID", kind::C_BAD_STREAMID),
    ("F_WALK_EABT", kind::F_WALK_EABT),
    ("F_TRANSLATION", kind::F_TRANSLATION),
    ("F_ADDR_SIZE", kind::F_ADDR_SIZE),
    ("F_ACCESS", kind::F_ACCESS),
    ("F_PERMISSION", kind::F_PERMISSION),
    ("F_TLB_CONFLICT", kind::F_TLB_CONFLICT),
    ("SERVICE_FAILED", kind::SERVICE_FAILED),
    ("QUARANTINED_AT_OVERFLOW", kind::QUARANTINED_AT_OVERFLOW),
];

const LIB_RS: &str = include_str!("../src/lib.rs");
const FAULTS_RS: &str = include_str!("../src/faults.rs");
const QUEUE_RS: &str = include_str!("../src/queue.rs");

/// Module `module`'s constants in `src`, each `#define`d as `prefix` + its name with its
/// value from `values` and its doc comment; every one must be in `values`, documented,
/// and nothing else may be.
fn c_constants(w: &mut String, src: &str, module: &str, prefix: &str, values: &[(&str, u64)]) {
    let declared = documented_items(src, &format!("pub mod {module} {{"));
    assert_eq!(declared.len(), values.len(), "{module} and the generator's list differ");
    for (name, _, doc) in declared {
        let value = values.iter().find(|k| k.0 == name).unwrap_or_else(|| panic!("{module}::{name} is not listed")).1;
        assert!(!doc.is_empty(), "{module}::{name} has no doc comment");
        c_comment(w, &doc);
        let _ = writeln!(w, "#define {prefix}{name} {value:#x}");
    }
}

/// The items of the block that starts at the line `start` in `src` (an enum's variants or
/// a module's constants), each with its name, the text after `=`, and its doc comment (the
/// `///` lines before it, joined).
fn documented_items(src: &str, start: &str) -> Vec<(String, String, String)> {
    let mut lines = src.lines().skip_while(|l| l.trim() != start);
    assert!(lines.next().is_some(), "no `{start}` in the protocol's source");
    let (mut items, mut doc) = (Vec::new(), String::new());
    for line in lines {
        let line = line.trim();
        if line == "}" {
            break;
        }
        if let Some(text) = line.strip_prefix("///") {
            let text = text.trim();
            if !doc.is_empty() && !text.is_empty() {
                doc.push(' ');
            }
            doc.push_str(text);
        } else if let Some((lhs, rhs)) = line.split_once('=') {
            let lhs = lhs.trim().trim_start_matches("pub const ");
            let name = lhs.split(':').next().unwrap().trim().to_string();
            let value = rhs.trim().trim_end_matches([',', ';']).to_string();
            items.push((name, value, std::mem::take(&mut doc)));
        }
    }
    items
}

/// The error codes, by label: upper-snake name and doc comment.
fn error_codes() -> Vec<(u64, String, String)> {
    let mut codes = Vec::new();
    for (name, value, doc) in documented_items(LIB_RS, "pub enum ErrorCode {") {
        let label: u64 = value.parse().unwrap();
        let e = ErrorCode::from_label(label);
        assert_eq!(e.map(|e| format!("{e:?}")).as_deref(), Some(name.as_str()), "ErrorCode::from_label({label})");
        assert!(!doc.is_empty(), "ErrorCode::{name} has no doc comment: C's iommu_strerror() needs one");
        codes.push((label, upper_snake(&name), doc));
    }
    for label in 1..64 {
        if ErrorCode::from_label(label).is_some() {
            assert!(codes.iter().any(|c| c.0 == label), "label {label} is no variant of ErrorCode");
        }
    }
    codes
}

/// What `iommu_strerror(label)` returns.
fn strerror(label: u64) -> String {
    if label == 0 {
        return "ok".into();
    }
    let Some((_, name, doc)) = error_codes().into_iter().find(|c| c.0 == label) else {
        return "not an IOMMU error code".into();
    };
    // The first sentence, without its full stop; its first letter lower case unless it
    // starts an acronym or a name.
    let first = doc.split_once(". ").map_or(doc.as_str(), |(s, _)| s).trim_end_matches('.');
    let mut chars = first.chars();
    let (a, b) = (chars.next().unwrap_or(' '), chars.next().unwrap_or(' '));
    let first: String =
        if !b.is_uppercase() { a.to_lowercase().chain(first.chars().skip(1)).collect() } else { first.into() };
    format!("{name}: {first}")
}

/// `text` as a C comment at the start of a line, with the Rust names it gives in C's.
fn c_comment(w: &mut String, text: &str) {
    assert!(!text.contains("*/"), "{text}");
    let text = text
        .replace("`FaultRecord::", "`")
        .replace("`NO_REGION`", "IOMMU_FAULT_NO_REGION")
        .replace("`NO_DEVICE`", "IOMMU_FAULT_NO_DEVICE")
        .replace("`INSIDE`", "IOMMU_FAULT_INSIDE")
        .replace("`NEAR`", "IOMMU_FAULT_NEAR")
        .replace("one of `kind`'s values", "one of the IOMMU_FAULT_KIND_* values");
    let mut line = String::from("/*");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 96 {
            let _ = writeln!(w, "{line}");
            line = String::from(" *");
        }
        line.push(' ');
        line.push_str(word);
    }
    let _ = writeln!(w, "{line} */");
}

/// `text` as a C string literal.
fn c_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The doc comment (the `///` lines, joined) of the first line of `src` that starts with
/// `item`.
fn doc_of(src: &str, item: &str) -> String {
    let mut doc = String::new();
    for line in src.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            if !doc.is_empty() && !text.trim().is_empty() {
                doc.push(' ');
            }
            doc.push_str(text.trim());
        } else if line.starts_with(item) {
            assert!(!doc.is_empty(), "`{item}` has no doc comment");
            return doc;
        } else {
            doc.clear();
        }
    }
    panic!("no `{item}` in the protocol's source")
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
    let codes = error_codes();
    for (label, name, doc) in &codes {
        c_comment(w, doc);
        let _ = writeln!(w, "#define IOMMU_ERR_{name} {label}");
    }
    c_comment(w, "The newest error code: iommu_resume sends it, to say that its caller decodes every code up to it.");
    let _ = writeln!(w, "#define IOMMU_ERR_NEWEST IOMMU_ERR_{}", ErrorCode::NEWEST.name());
    let _ = writeln!(w);
    c_comment(
        w,
        "What a reply label means, for a log: the error code's name and what it means (the first \
         sentence of its description above), \"ok\" for 0, \"not an IOMMU error code\" for any other.",
    );
    let _ = writeln!(w, "static inline const char *iommu_strerror(uint64_t err)\n{{\n    switch (err) {{");
    let _ = writeln!(w, "    case 0:\n        return {};", c_string(&strerror(0)));
    for (label, name, _) in &codes {
        let _ = writeln!(w, "    case IOMMU_ERR_{name}:\n        return {};", c_string(&strerror(*label)));
    }
    let _ = writeln!(w, "    default:\n        return {};\n    }}\n}}", c_string(&strerror(u64::MAX)));
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
    let _ = writeln!(w, "\n/* QUERY_MAPPING's reply. */");
    {
        use iommu_protocol::query_mapping as m;
        for (name, i) in [
            ("DEVICE", m::DEVICE),
            ("IOVA", m::IOVA),
            ("LENGTH", m::LENGTH),
            ("RIGHTS", m::RIGHTS),
            ("REGION", m::REGION),
            ("OFFSET", m::OFFSET),
            ("PENDING", m::PENDING),
            ("VALUES", m::VALUES),
        ] {
            let _ = writeln!(w, "#define IOMMU_QUERY_MAPPING_{name} {i}");
        }
    }
    let _ = writeln!(w, "\n/* ACK_FAULTS's reply: the record acknowledged, as it stands once acknowledged. */");
    {
        use iommu_protocol::ack_faults as a;
        for (name, i) in [("SEQ", a::SEQ), ("REPEATS", a::REPEATS), ("IOVA_LAST", a::IOVA_LAST), ("VALUES", a::VALUES)]
        {
            let _ = writeln!(w, "#define IOMMU_ACK_FAULTS_{name} {i}");
        }
    }
    let _ = writeln!(w, "\n/* STOP's reply: what was done to the device's PCI function. */");
    let stops = [
        ("FUNCTION_OFF", iommu_protocol::stop::FUNCTION_OFF),
        ("FLR", iommu_protocol::stop::FLR),
        ("RESTORED", iommu_protocol::stop::RESTORED),
        ("PENDING", iommu_protocol::stop::PENDING),
        ("FLR_LOST", iommu_protocol::stop::FLR_LOST),
        ("RESET_OWED", iommu_protocol::stop::RESET_OWED),
        ("PM_RESET", iommu_protocol::stop::PM_RESET),
        ("RESET_IGNORED", iommu_protocol::stop::RESET_IGNORED),
    ];
    c_constants(w, LIB_RS, "stop", "IOMMU_STOP_", &stops);
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
        let doc = doc_of(FAULTS_RS, &format!("pub {name}: "));
        let mut comment = String::new();
        c_comment(&mut comment, &doc);
        for line in comment.lines() {
            let _ = writeln!(w, "    {line}");
        }
        let _ = writeln!(w, "    {ty} {name};");
    }
    let _ = writeln!(w, "}};\n");
    let _ = writeln!(w, "/* A fault record's `device`, `region` and `near`. */");
    c_comment(w, &doc_of(FAULTS_RS, "pub const NO_DEVICE: "));
    let _ = writeln!(w, "#define IOMMU_FAULT_NO_DEVICE {NO_DEVICE:#x}u");
    c_comment(w, &doc_of(FAULTS_RS, "pub const NO_REGION: "));
    let _ = writeln!(w, "#define IOMMU_FAULT_NO_REGION {NO_REGION:#x}u");
    c_comment(w, &doc_of(FAULTS_RS, "pub const INSIDE: "));
    let _ = writeln!(w, "#define IOMMU_FAULT_INSIDE {INSIDE}");
    c_comment(w, &doc_of(FAULTS_RS, "pub const NEAR: "));
    let _ = writeln!(w, "#define IOMMU_FAULT_NEAR {NEAR}\n");
    let _ = writeln!(w, "/* A fault record's `kind`. */");
    let kinds = KINDS.map(|(name, v)| (name, u64::from(v)));
    c_constants(w, FAULTS_RS, "kind", "IOMMU_FAULT_KIND_", &kinds);
    let _ = writeln!(w, "\n/* A fault ring's `failed` word, once the service has failed. */");
    let words = [("DMA_STOPPED", failed::DMA_STOPPED), ("DMA_NOT_KNOWN_STOPPED", failed::DMA_NOT_KNOWN_STOPPED)];
    c_constants(w, FAULTS_RS, "failed", "IOMMU_FAILED_", &words);
    let _ = writeln!(w);
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
    let _ = writeln!(
        w,
        "    uint64_t failed; /* nonzero once the IOMMU service failed, record or not (read with acquire) */"
    );
    let _ = writeln!(w, "}} __attribute__((aligned(4096)));\n");
    for (name, offset) in [
        ("published", layout::PUBLISHED),
        ("dropped", layout::DROPPED),
        ("acked", layout::ACKED),
        ("dropped_unreported", layout::DROPPED_UNREPORTED),
        ("records", layout::RECORDS),
        ("failed", layout::FAILED),
    ] {
        let _ =
            writeln!(w, "_Static_assert(offsetof(struct iommu_fault_ring, {name}) == {offset}, \"FaultRing.{name}\");");
    }
    let _ = writeln!(
        w,
        "_Static_assert(sizeof(struct iommu_fault_ring) == {}, \"FaultRing's size\");",
        size_of::<iommu_protocol::faults::FaultRing>()
    );
    queue_section(w);
    measure_section(w);
    let _ = writeln!(w, "\n#endif");
    h
}

/// The measurement requests C drivers make (`iommu_protocol::measure`), which only an
/// IOMMU PD built for measurement answers.
fn measure_section(w: &mut String) {
    use iommu_protocol::measure::{WAKE_UP, WAKE_UP_BEGAN, WAKE_UP_ENDED, WAKE_UP_LONGEST};
    let _ = writeln!(w, "\n/* For measurement only: a product IOMMU PD answers IOMMU_ERR_UNKNOWN_OP. */");
    c_comment(w, &doc_of(LIB_RS, "pub const WAKE_UP: "));
    let _ = writeln!(w, "#define IOMMU_MEASURE_WAKE_UP {WAKE_UP:#x}");
    let _ = writeln!(w, "#define IOMMU_MEASURE_WAKE_UP_BEGAN {WAKE_UP_BEGAN}");
    let _ = writeln!(w, "#define IOMMU_MEASURE_WAKE_UP_ENDED {WAKE_UP_ENDED}");
    let _ = writeln!(w, "#define IOMMU_MEASURE_WAKE_UP_LONGEST {WAKE_UP_LONGEST}");
}

/// The mapping queue (`iommu_protocol::queue`): its doorbell label, its bounds, and the
/// region's layout as C structs, every offset and size asserted.
fn queue_section(w: &mut String) {
    use iommu_protocol::queue::{
        layout as q, Completion, Entry, Header, ENTRY_MRS, MAX_QUEUE_ENTRIES, QUEUE_BATCH, SERVE, TAKEN, WITHDRAWN,
    };
    let _ = writeln!(w, "\n/* The mapping queue: MAP and UNMAP posted in a region shared with the IOMMU PD. */");
    c_comment(w, &doc_of(QUEUE_RS, "pub const SERVE: "));
    let _ = writeln!(w, "#define IOMMU_QUEUE_SERVE {SERVE:#x}");
    c_comment(w, &doc_of(QUEUE_RS, "pub const QUEUE_BATCH: "));
    let _ = writeln!(w, "#define IOMMU_QUEUE_BATCH {QUEUE_BATCH}");
    let _ = writeln!(w, "#define IOMMU_QUEUE_MAX_ENTRIES {MAX_QUEUE_ENTRIES}");
    let _ = writeln!(w, "#define IOMMU_QUEUE_ENTRY_MRS {ENTRY_MRS}");
    c_comment(w, &doc_of(QUEUE_RS, "pub const WITHDRAWN: "));
    let _ = writeln!(w, "#define IOMMU_QUEUE_WITHDRAWN {WITHDRAWN}");
    c_comment(w, &doc_of(QUEUE_RS, "pub const TAKEN: "));
    let _ = writeln!(w, "#define IOMMU_QUEUE_TAKEN {TAKEN:#x}ull\n");
    let _ = writeln!(w, "/* Read and written with atomics only: the other side is another address space. */");
    let _ = writeln!(w, "struct iommu_queue_header {{");
    let _ = writeln!(w, "    uint32_t request_tail;    /* requests posted (the client's; stored with release) */");
    let _ = writeln!(w, "    uint32_t completion_head; /* completions read (the client's; stored with release) */");
    let _ = writeln!(w, "    uint32_t client_pad[14];");
    let _ = writeln!(w, "    uint32_t request_head;    /* requests taken (the IOMMU PD's; load with acquire) */");
    let _ = writeln!(w, "    uint32_t completion_tail; /* completions posted (the IOMMU PD's; load with acquire) */");
    let _ = writeln!(w, "    uint32_t server_pad[14];");
    let _ = writeln!(w, "}};\n");
    let _ = writeln!(w, "struct iommu_queue_entry {{");
    let _ = writeln!(w, "    uint64_t label; /* IOMMU_OP_MAP or IOMMU_OP_UNMAP */");
    let _ = writeln!(w, "    uint64_t tag;   /* the client's, copied into the completion */");
    let _ = writeln!(w, "    uint64_t mrs[IOMMU_QUEUE_ENTRY_MRS]; /* the call's message registers */");
    let _ = writeln!(w, "}};\n");
    let _ = writeln!(w, "struct iommu_queue_completion {{");
    let _ = writeln!(w, "    uint64_t tag;   /* the entry's */");
    let _ = writeln!(w, "    uint64_t label; /* 0 or an IOMMU_ERR_* code */");
    let _ = writeln!(w, "    uint64_t value; /* MAP's IOVA */");
    let _ = writeln!(w, "}};\n");
    let _ = writeln!(w, "/* The region: the header, then `entries` requests, then `entries` completions. */");
    let _ = writeln!(w, "#define IOMMU_QUEUE_REQUESTS {}", q::REQUESTS);
    let _ = writeln!(
        w,
        "#define IOMMU_QUEUE_COMPLETIONS(entries) (IOMMU_QUEUE_REQUESTS + {} * (uint64_t)(entries))",
        q::ENTRY
    );
    let _ = writeln!(
        w,
        "#define IOMMU_QUEUE_REGION_SIZE(entries) (IOMMU_QUEUE_COMPLETIONS(entries) + {} * (uint64_t)(entries))\n",
        q::COMPLETION
    );
    let header = [
        ("request_tail", q::REQUEST_TAIL),
        ("completion_head", q::COMPLETION_HEAD),
        ("request_head", q::REQUEST_HEAD),
        ("completion_tail", q::COMPLETION_TAIL),
    ];
    assert_layout(w, "iommu_queue_header", "Header", &header, size_of::<Header>());
    let entry = [
        ("label", core::mem::offset_of!(Entry, label)),
        ("tag", core::mem::offset_of!(Entry, tag)),
        ("mrs", core::mem::offset_of!(Entry, mrs)),
    ];
    assert_layout(w, "iommu_queue_entry", "Entry", &entry, size_of::<Entry>());
    let completion = [
        ("tag", core::mem::offset_of!(Completion, tag)),
        ("label", core::mem::offset_of!(Completion, label)),
        ("value", core::mem::offset_of!(Completion, value)),
    ];
    assert_layout(w, "iommu_queue_completion", "Completion", &completion, size_of::<Completion>());
}

/// Static assertions that C's `struct c_struct` has Rust's `rust` fields at `fields`'
/// offsets and is `size` bytes.
fn assert_layout(w: &mut String, c_struct: &str, rust: &str, fields: &[(&str, usize)], size: usize) {
    for (name, off) in fields {
        let _ = writeln!(w, "_Static_assert(offsetof(struct {c_struct}, {name}) == {off}, \"{rust}.{name}\");");
    }
    let _ = writeln!(w, "_Static_assert(sizeof(struct {c_struct}) == {size}, \"{rust}'s size\");");
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

/// Compile `tests/c/encode.c` (iommu_client.h against the stand-in microkit.h) into `out`.
/// `ErrorCode`'s `Display` is the wire table C reads: for every `#define IOMMU_ERR_NAME
/// LABEL` of the committed `iommu_service.h` (every code, `error_codes` checks), the code
/// with that label shows as `NAME (LABEL)`, and no label without a define is a code.
#[test]
fn every_error_code_displays_as_the_c_header_names_it() {
    let header = std::fs::read_to_string(c_dir().join("iommu_service.h")).unwrap();
    let mut defined = Vec::new();
    for line in header.lines() {
        let Some(rest) = line.strip_prefix("#define IOMMU_ERR_") else { continue };
        let (name, value) = rest.split_once(' ').unwrap();
        let Ok(label) = value.parse::<u64>() else { continue };
        let e = ErrorCode::from_label(label).unwrap_or_else(|| panic!("IOMMU_ERR_{name} {label} is no code"));
        assert_eq!(e.to_string(), format!("{name} ({label})"));
        assert_eq!(e as u64, label);
        defined.push(label);
    }
    assert_eq!(defined, (1..=ErrorCode::NEWEST as u64).collect::<Vec<_>>(), "the header's codes");
    for label in ErrorCode::NEWEST as u64 + 1..256 {
        assert_eq!(ErrorCode::from_label(label), None, "{label}");
    }
    assert!(header.contains(&format!("#define IOMMU_ERR_NEWEST IOMMU_ERR_{}\n", ErrorCode::NEWEST.name())));
}

fn build_encode_c(out: &Path) {
    build_c("encode.c", out);
}

/// Compile `tests/c/<source>` (against iommu_client.h, the C PDs' shared headers in
/// `pds/include` and the stand-in microkit.h) into `out`.
fn build_c(source: &str, out: &Path) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(out)
        .arg(here.join(source))
        .arg("-I")
        .arg(&here)
        .arg("-I")
        .arg(c_dir())
        .arg("-I")
        .arg(here.join("../../../../pds/include"))
        .status()
        .expect("a C compiler (cc) on the host");
    assert!(built.success(), "the C client does not compile");
}

/// Write `ring`'s page to the file beside `out` that the C programs read, and return it.
fn ring_file(ring: &iommu_protocol::faults::FaultRing, out: &Path) -> PathBuf {
    // SAFETY: the ring is plain memory of its own size; reading its bytes is reading it.
    let bytes = unsafe {
        std::slice::from_raw_parts((ring as *const iommu_protocol::faults::FaultRing).cast::<u8>(), size_of_val(ring))
    };
    let file = out.with_extension("ring");
    std::fs::write(&file, bytes).unwrap();
    file
}

/// The C compiler agrees with the Rust layout (the header's static assertions), and the C
/// functions send what the Rust encoding sends.
#[test]
fn c_calls_encode_as_the_rust_ones() {
    let out = std::env::temp_dir().join(format!("iommu-c-encode-{}", std::process::id()));
    build_encode_c(&out);
    // A ring as the service leaves it: three records, the first already read (the C
    // reader starts at sequence number 1).
    let mut ring = iommu_protocol::faults::FaultRing::default();
    for i in 0..3u64 {
        let r = FaultRecord { stream: 0x18, iova: 0x1000 * (i + 1), ..FaultRecord::default() };
        assert!(ring.push(r));
    }
    let ring_file = ring_file(&ring, &out);
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
    // iommu_strerror names every error code as the Rust declaration does.
    for label in 0..64 {
        let want = format!("strerror {label} {}", strerror(label));
        assert!(text.lines().any(|l| l == want), "C's iommu_strerror: want `{want}`\n{text}");
    }
    assert!(strerror(ErrorCode::BadHandle as u64).starts_with("BAD_HANDLE: the handle names"));
    // The ring reads as the Rust reader reads it, and the last record read is acknowledged.
    for (seq, iova) in [(1, 0x2000), (2, 0x3000)] {
        assert!(text.lines().any(|l| l == format!("fault {seq} {iova} {iova} 0 24")), "{text}");
    }
    assert!(text.lines().any(|l| l == "next 3"), "{text}");
    assert!(text.lines().any(|l| l == format!("take_faults {} 1 2", Op::AckFaults as u64)), "{text}");
}

/// The C queue functions write what the Rust queue reads (the same labels and message
/// registers as the Rust encoding of the same MAP and UNMAP), wake the IOMMU PD both ways,
/// stop at a full ring, and read back the completions the Rust side posts.
#[test]
fn c_queue_entries_are_the_rust_encoding() {
    use iommu_protocol::queue::{Cursor, OwnedQueue, QUEUE_BATCH, SERVE};
    let out = std::env::temp_dir().join(format!("iommu-c-queue-{}", std::process::id()));
    build_encode_c(&out);
    // The IOMMU PD has served 5 entries of this queue before: the C side starts from there.
    let region = OwnedQueue::<8>::default();
    let q = region.queue().unwrap();
    let mut cursor = Cursor { request_head: 5, completion_tail: 5 };
    q.reset(&cursor);
    let file = out.with_extension("queue");
    let bytes = |r: &OwnedQueue<8>| {
        // SAFETY: the region is plain memory of its own size.
        unsafe { std::slice::from_raw_parts((r as *const OwnedQueue<8>).cast::<u8>(), size_of::<OwnedQueue<8>>()) }
            .to_vec()
    };
    std::fs::write(&file, bytes(&region)).unwrap();
    let run = |phase: &str| {
        let r = Command::new(&out).arg(phase).arg(&file).output().unwrap();
        String::from_utf8(r.stdout).unwrap()
    };
    let text = run("qp");
    let read_back = || {
        let b = std::fs::read(&file).unwrap();
        let r = Box::<OwnedQueue<8>>::default();
        // SAFETY: as above, and `b` holds that many bytes (the C program wrote the region).
        unsafe {
            std::ptr::copy_nonoverlapping(b.as_ptr(), (&*r as *const OwnedQueue<8>).cast_mut().cast::<u8>(), b.len())
        };
        r
    };
    let region = read_back();
    let q = region.queue().unwrap();
    assert!(text.lines().any(|l| l == "queue_init_bad 7 7"), "a count not a power of two, a region too small: {text}");
    assert!(text.lines().any(|l| l == "queue_posted 0 0 0 1 2"), "{text}");
    assert!(text.lines().any(|l| l == "queue_notified 2"), "{text}");
    assert!(text.lines().any(|l| l == format!("queue_serve {SERVE} 0")), "{text}");
    assert!(text.lines().any(|l| l == "queue_full 1 8"), "the ring holds 8 and refuses the ninth: {text}");
    assert_eq!(q.takeable(&cursor, QUEUE_BATCH), 8);
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = 0x8000;
    let wants = [
        Request::Map {
            cap: Handle(3),
            device: DeviceId(1),
            offset: 0x1000,
            len: 0x4000,
            iova: Some(0x10_0000),
            rights: Rights::READ,
        },
        Request::Unmap { device: DeviceId(2), iovas, count: 1 },
    ];
    for (i, want) in wants.into_iter().enumerate() {
        let mut mrs = [0; MAX_MRS];
        let (label, _) = want.encode(&mut mrs);
        let t = q.read(&cursor, i);
        assert_eq!((t.label, t.tag, t.mrs), (label, i as u64, [mrs[0], mrs[1], mrs[2], mrs[3]]), "entry {i}");
    }
    // The Rust side answers the first two; the C side reads the answers in order.
    q.write_completion(&cursor, 0, 0, 0, 0x10_0000);
    q.write_completion(&cursor, 1, 1, ErrorCode::NotMapped as u64, 0);
    q.publish(&mut cursor, 2);
    std::fs::write(&file, bytes(&region)).unwrap();
    let text = run("qt");
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&file);
    let done: Vec<&str> = text.lines().filter(|l| l.starts_with("queue_done")).collect();
    assert_eq!(
        done,
        [format!("queue_done 0 0 {}", 0x10_0000), format!("queue_done 1 {} 0", ErrorCode::NotMapped as u64)]
    );
}

/// C's strict UNMAP (`iommu_unmap_strict`) against a stand-in IOMMU PD answering as each
/// case says: confirmed by the queue when its completion says so, else by the UNMAP call,
/// else the device stopped, else (STOP not confirmed, asked `IOMMU_STOP_TRIES` times while
/// the IOMMU fails) said so; and what it posts and calls is the Rust encoding.
#[test]
fn c_strict_unmap_falls_back_to_the_call_then_to_stop() {
    let out = std::env::temp_dir().join(format!("iommu-c-strict-{}", std::process::id()));
    build_c("strict.c", &out);
    let run = Command::new(&out).output().unwrap();
    let _ = std::fs::remove_file(&out);
    let text = String::from_utf8(run.stdout).unwrap();
    let (hw, bad_device) = (ErrorCode::Hardware as u64, ErrorCode::BadDevice as u64);
    let not_mapped = ErrorCode::NotMapped as u64;
    // The result (0 by the queue, 1 by the call, 2 stopped, 3 not stopped), the last error
    // answered, completions of other entries handed back, and the requests made.
    let cases = [
        ("queue", 0, 0, 0, "serve"),
        ("queue_not_mapped", 0, 0, 0, "serve query query query"),
        ("queue_inside", 2, not_mapped, 0, "serve query unmap query stop"),
        ("call_inside", 2, not_mapped, 0, "unmap query stop"),
        ("queue_others", 0, 0, 2, "serve"),
        ("queue_refused", 1, hw, 0, "serve unmap"),
        ("queue_silent", 1, 0, 0, "serve unmap"),
        ("ring_full", 1, 0, 0, "serve unmap query query query"),
        ("no_queue", 1, 0, 0, "unmap"),
        ("stopped", 2, hw, 0, "serve unmap stop"),
        ("not_stopped", 3, hw, 0, "serve unmap stop stop stop stop"),
        ("stop_refused", 3, bad_device, 0, "unmap stop"),
    ];
    for (name, result, err, others, made) in cases {
        let want = format!("strict {name} {result} {err} others {others} made {made}");
        assert!(text.lines().any(|l| l == want), "want `{want}`\n{text}");
    }
    // An entry the IOMMU PD left untaken (silent) is withdrawn before the call: served
    // afterwards it unmaps nothing and answers UnknownOp; with the ring full it was never
    // posted, and only the MAPs ahead of it are served.
    let unknown = ErrorCode::UnknownOp as u64;
    for want in [
        format!("later queue_silent unmaps 0 answers {unknown}"),
        String::from("later ring_full unmaps 0 answers 0 0 0 0 0 0 0 0"),
    ] {
        assert!(text.lines().any(|l| l == want), "want `{want}`\n{text}");
    }
    // The queue's entry and the call are the Rust encoding of the same UNMAP.
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = 0x8000;
    let mut mrs = [0; MAX_MRS];
    let (label, n) = Request::Unmap { device: DeviceId(2), iovas, count: 1 }.encode(&mut mrs);
    let entry = format!("entry queue {label} {} {} {} {}", mrs[0], mrs[1], mrs[2], mrs[3]);
    assert!(text.lines().any(|l| l == entry), "want `{entry}`\n{text}");
    let call = format!("call queue_refused {label} {n} {} {} {}", mrs[0], mrs[1], mrs[2]);
    assert_eq!(n, 3);
    assert!(text.lines().any(|l| l == call), "want `{call}`\n{text}");
}

/// C's `iommu_map_at_start` (`tests/c/map_at_start.c`) against a stand-in IOMMU PD: a
/// device left stopped for a restarted driver is RESUMEd and mapped; RESUME's refusal is
/// returned and nothing more is asked; a quarantined device is not resumed; and its MAP
/// and RESUME are the Rust encoding (RESUME saying the newest code it decodes).
#[test]
fn c_map_at_start_resumes_only_a_stopped_device() {
    let out = std::env::temp_dir().join(format!("iommu-c-map-at-start-{}", std::process::id()));
    build_c("map_at_start.c", &out);
    let run = Command::new(&out).output().unwrap();
    let _ = std::fs::remove_file(&out);
    let text = String::from_utf8(run.stdout).unwrap();
    let code = |e: ErrorCode| e as u64;
    let cases = [
        ("running", 0, "0x100000", "map"),
        ("stopped", 0, "0x100000", "map resume map"),
        ("still_away", code(ErrorCode::DeviceMissing), "0x0", "map resume"),
        ("rationed", code(ErrorCode::ResetRationed), "0x0", "map resume"),
        ("quarantined", code(ErrorCode::Quarantined), "0x0", "map"),
    ];
    let mut mrs = [0; MAX_MRS];
    let map = Request::Map {
        cap: Handle(3),
        device: DeviceId(2),
        offset: 0x2000,
        len: 0x1000,
        iova: None,
        rights: Rights::READ_WRITE,
    };
    let (_, n) = map.encode(&mut mrs);
    assert_eq!(n, 4);
    let map_mrs = format!("{} {} {} {}", mrs[0], mrs[1], mrs[2], mrs[3]);
    for (name, err, iova, made) in cases {
        for want in [format!("start {name} {err} {iova} made {made}"), format!("map {name} {map_mrs}")] {
            assert!(text.lines().any(|l| l == want), "want `{want}`\n{text}");
        }
        let resumed = format!("resume {name} 2 {}", ErrorCode::NEWEST as u64);
        assert_eq!(text.lines().any(|l| l == resumed), made.contains("resume"), "`{resumed}`\n{text}");
    }
}

/// C's `iommu_queue_withdraw` while the IOMMU PD serves the ring on another core
/// (`tests/c/withdraw_race.c`: a thread taking entries as `Queue::read` does, the main
/// thread withdrawing at random moments): a withdrawal that succeeded is never applied,
/// one that failed is, and each entry is answered once, in order. With the label rewritten
/// by a plain store (before), withdrawals landing inside the stand-in's work on an entry
/// were applied.
#[test]
fn c_withdrawal_races_the_iommu_pd_and_exactly_one_side_wins() {
    let out = std::env::temp_dir().join(format!("iommu-c-withdraw-{}", std::process::id()));
    build_c("withdraw_race.c", &out);
    let run = Command::new(&out).output().unwrap();
    let _ = std::fs::remove_file(&out);
    let text = String::from_utf8(run.stdout).unwrap();
    let last = text.lines().last().unwrap_or_default();
    let n: Vec<u64> = last.split(' ').filter_map(|w| w.parse().ok()).collect();
    let [rounds, won, lost, broken] = n[..] else { panic!("{text}") };
    assert_eq!(broken, 0, "{text}");
    assert!(won > rounds / 50 && lost > rounds / 50, "both sides must win often: {text}");
}

/// What the C PDs print of their fault ring (`pds/include/pd_print.h`'s `print_faults`,
/// which `c-edu-driver`, `c-edu-topology` and `c-vmm` use; `tests/c/print_faults.c`) over
/// `ring`.
fn printed_faults(ring: &iommu_protocol::faults::FaultRing, name: &str) -> String {
    printed_faults_preempted(ring, name, &[])
}

/// `printed_faults`, with the IOMMU PD preempting the PD between its copy of the records
/// and its ACK_FAULTS when `fold` is (more faults, up to this address): it folds them into
/// the newest record first.
fn printed_faults_preempted(ring: &iommu_protocol::faults::FaultRing, name: &str, fold: &[&str]) -> String {
    let out = std::env::temp_dir().join(format!("iommu-c-print-faults-{name}-{}", std::process::id()));
    build_c("print_faults.c", &out);
    let ring_file = ring_file(ring, &out);
    let run = Command::new(&out).arg(&ring_file).args(fold).output().unwrap();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&ring_file);
    assert!(run.status.success());
    String::from_utf8(run.stdout).unwrap()
}

/// How the C PDs tell of the IOMMU service's failure, every device's DMA aborting.
const SERVICE_FAILED_TOLD: &str = "drv: told: the IOMMU service FAILED: every call is refused from now on, and no \
                                   mapping or removal in progress will complete; every device's DMA aborts";

/// The failure where the IOMMU could not confirm that DMA stopped (`fail(false)`): the C
/// PDs say so. Failing before: they printed the same line whatever the IOMMU was left
/// doing.
#[test]
fn c_pds_say_when_dma_is_not_known_to_be_stopped() {
    let mut ring = iommu_protocol::faults::FaultRing::default();
    ring.fail(false);
    let text = printed_faults(&ring, "not-stopped");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        ["drv: told: the IOMMU service FAILED: every call is refused from now on, and no mapping or removal in \
             progress will complete; DMA NOT KNOWN TO BE STOPPED: a device may still reach what it had mapped"],
        "{text}"
    );
    // The Rust PDs (`client-channel`) print the same words.
    let told = iommu_protocol::faults::ServiceFailure(iommu_protocol::faults::failed::DMA_NOT_KNOWN_STOPPED);
    assert_eq!(format!("drv: told: {told}"), lines[0]);
}

/// A fault, then the failure (`FaultRing::fail`, as `iommu_pd::Service::service_failed`
/// calls it): the fault is printed as a fault, the failure as the failure, from the ring's
/// `failed`. (Before, the failure's record was printed as "drv: told: stream 0x0 read at
/// iova 0x0..=0x0".)
#[test]
fn c_pds_print_a_service_failure_as_such_not_as_a_fault() {
    let mut ring = iommu_protocol::faults::FaultRing::default();
    assert!(ring.push(FaultRecord { device: 0, stream: 0x18, iova: 0x1000, write: 1, ..FaultRecord::default() }));
    ring.fail(true);
    assert_eq!(ring.recorded(), 2, "the failure's record found room");
    let text = printed_faults(&ring, "room");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["drv: told: stream 0x18 write at iova 0x1000..=0x1000", SERVICE_FAILED_TOLD], "{text}");
    // The Rust PDs (`client-channel`) print the same words.
    let failure = ring.pending().last().copied().unwrap();
    assert_eq!(failure.notice(), Some(iommu_protocol::faults::Notice::ServiceFailed));
    let told = iommu_protocol::faults::ServiceFailure(iommu_protocol::faults::failed::DMA_STOPPED);
    assert_eq!(format!("drv: told: {told}"), SERVICE_FAILED_TOLD);
}

/// A fault, then the record of the device's quarantine at an event-queue overflow
/// (`iommu_pd::Service::events_lost`, for a device on probation): the fault is printed as a
/// fault, the quarantine as the quarantine. (Before, its record was printed as "drv: told:
/// stream 0x18 read at iova 0x0..=0x0", a DMA at IOVA 0 that never happened.)
#[test]
fn c_pds_print_a_quarantine_at_an_overflow_as_such_not_as_a_fault() {
    use iommu_protocol::faults::{kind, NO_REGION};
    let mut ring = iommu_protocol::faults::FaultRing::default();
    assert!(ring.push(FaultRecord { device: 2, stream: 0x18, iova: 0x1000, write: 1, ..FaultRecord::default() }));
    let at_overflow = FaultRecord {
        device: 2,
        stream: 0x18,
        kind: kind::QUARANTINED_AT_OVERFLOW,
        region: NO_REGION,
        quarantined: 1,
        ..FaultRecord::default()
    };
    assert!(ring.push(at_overflow));
    let text = printed_faults(&ring, "overflow");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "drv: told: stream 0x18 write at iova 0x1000..=0x1000",
            "drv: told: device 0x2 QUARANTINED at an event-queue overflow; RESUME it when ready"
        ],
        "{text}"
    );
    // The Rust PDs (`client-channel::told_notice`) tell the fault from the notice by
    // `FaultRecord::notice` and print the notice in the same words.
    let records: Vec<FaultRecord> = ring.pending().copied().collect();
    assert_eq!(records[0].notice(), None, "a fault is no notice");
    let notice = records[1].notice().expect("the quarantine is a notice");
    assert_eq!(format!("drv: told: {notice}"), lines[1]);
}

/// A ring full of faults the PD has not read when the service fails: the failure's record
/// finds no room, and the PD is told all the same (before, it read 8 faults and nothing of
/// the failure and, never notified again, waited for ever).
#[test]
fn c_pds_are_told_of_a_service_failure_on_a_full_ring() {
    let mut ring = iommu_protocol::faults::FaultRing::default();
    for i in 0..FAULT_RING as u64 {
        assert!(ring.push(FaultRecord { stream: 0x18, iova: 0x10_0000 * (i + 1), ..FaultRecord::default() }));
    }
    ring.fail(true);
    assert_eq!((ring.recorded(), ring.dropped()), (FAULT_RING as u64, 1), "the failure's record found no room");
    let text = printed_faults(&ring, "full");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert!(lines[..8].iter().all(|l| l.starts_with("drv: told: stream 0x18 read at iova ")), "{text}");
    assert_eq!(lines[8], SERVICE_FAILED_TOLD, "{text}");
}

/// C's `iommu_take_faults` (what the C PDs print, through `print_faults`) when the IOMMU PD,
/// woken by the SMMU between the PD's copy of its records and its ACK_FAULTS, folds three
/// more faults of the burst into the newest record: the PD prints the burst to its last
/// address, from the acknowledgment's reply. Before, it printed its copy (the burst's first
/// address only), and the rest reached it in no record.
#[test]
fn c_pds_print_the_faults_folded_in_between_their_read_and_their_acknowledgment() {
    let mut ring = iommu_protocol::faults::FaultRing::default();
    for iova in [0x2000_0000, 0x3000_0000] {
        assert!(ring.push(FaultRecord { stream: 0x18, iova, kind: 0x10, write: 1, ..FaultRecord::default() }));
    }
    let text = printed_faults_preempted(&ring, "preempted", &["3", "0x3000000c"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "drv: told: stream 0x18 write at iova 0x20000000..=0x20000000",
            "drv: told: stream 0x18 write at iova 0x30000000..=0x3000000c",
            "next 2 acked 2"
        ],
        "the faults folded in after the copy reach the PD"
    );
}

/// The fault kinds a client reads are SMMUv3's event numbers.
#[test]
fn fault_kinds_are_smmuv3_event_numbers() {
    use smmuv3::event::id;
    for (name, value) in KINDS {
        let want = match name {
            "OTHER" => 0,
            "F_UUT" => id::F_UUT,
            "C_BAD_STREAMID" => id::C_BAD_STREAMID,
            "F_WALK_EABT" => id::F_WALK_EABT,
            "F_TRANSLATION" => id::F_TRANSLATION,
            "F_ADDR_SIZE" => id::F_ADDR_SIZE,
            "F_ACCESS" => id::F_ACCESS,
            "F_PERMISSION" => id::F_PERMISSION,
            "F_TLB_CONFLICT" => id::F_TLB_CONFLICT,
            // No event: outside their 8 bits, so that no SMMU's event is read as it.
            "SERVICE_FAILED" | "QUARANTINED_AT_OVERFLOW" => {
                assert!(value > 0xff, "kind::{name}");
                continue;
            }
            _ => panic!("kind::{name}: which SMMUv3 event?"),
        };
        assert_eq!(value, u32::from(want), "kind::{name}");
    }
}
