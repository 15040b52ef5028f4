//! The service's model-based and exhaustive tests (iommu-pd/tests/common: the same
//! harness, reference model and invariants that run over the model IOMMU in
//! `iommu-pd/tests/model.rs` and `exhaustive.rs`, and over the SMMUv2 backend in
//! `drivers/smmuv2-service/tests/service_model.rs`) over `SmmuBackend` on the SMMUv3 host
//! model. After every step each device tries every page it ever had a mapping at through
//! the model (filling its TLB and walk cache, as DMA would), so a skipped or unconfirmed
//! invalidation shows up as a stale translation. The IOMMU fails as an SMMUv3 can: the
//! SMMU rejects the call's invalidation (an unmap's CMD_TLBI_NH_VA, a retry's
//! CMD_TLBI_NH_ASID) or its configuration invalidation (a block's CMD_CFGI_STE) with
//! CERROR_ILL; a map or an enable, which wait for nothing on a healthy domain, fail at
//! the interface. (The model reports a translation's fault to the caller and writes no
//! event record, so fault attribution on this backend is `tests/events.rs`'s, with
//! injected records.)

#[path = "../../../iommu-pd/tests/common/mod.rs"]
mod common;

use std::cell::Cell;
use std::collections::BTreeSet;

use common::backend::{add_leaf, reach_by, Entry, Faulty, Inject, Pages, TestHw};
use common::DEVICES;
use iommu_pd::DeviceIndex;
use smmuv3::cmd::Opcode;
use smmuv3::model::{host_config, host_memory, Outcome, SmmuModel};
use smmuv3::{Memory, Perm, Smmu, StreamId, Translation};
use smmuv3_service::SmmuBackend;

type Backend = SmmuBackend<SmmuModel>;

/// Page-table pool pages: a root and at most three tables per device (its window is 1 MiB).
const POOL_PAGES: usize = 4 * DEVICES.len();

/// An opcode no command has: arming it disarms a rejection the call did not use.
const NO_COMMAND: u8 = 0xff;

thread_local! {
    /// One set of SMMU memory per test thread, reused by every service it starts (the
    /// exhaustive test starts thousands).
    static MEMORY: Cell<Option<Memory>> = const { Cell::new(None) };
}

fn backend() -> Faulty<Backend> {
    let mem = MEMORY.with(|m| {
        let mem = m.get().unwrap_or_else(|| host_memory(POOL_PAGES));
        m.set(Some(mem));
        mem
    });
    for r in [mem.stream_table, mem.cmdq, mem.eventq, mem.cds, mem.tables] {
        // SAFETY: host memory this thread allocated for these tests, `len` bytes at `va`;
        // the service (and driver) that used it last was dropped before this one is made,
        // so nothing else uses it. Zeroed as `host_memory` gives it.
        unsafe { r.va.cast::<u8>().write_bytes(0, r.len) };
    }
    // SAFETY: the memory is this thread's, zeroed, and only this driver uses it from now
    // on; the model is the only register file.
    let smmu = unsafe { Smmu::init(SmmuModel::host(), mem, host_config()) }.expect("init");
    let streams: Vec<u32> = DEVICES.iter().map(|d| d.stream).collect();
    Faulty::new(SmmuBackend::new(smmu, &streams).expect("a domain per device"))
}

fn model(b: &Backend) -> &SmmuModel {
    b.smmu_ref().regs()
}

impl Inject for Backend {
    fn break_for(&mut self, what: &'static str) -> bool {
        let opcode = match what {
            // A deferred unmap's TLBI is consumed at the batch's CMD_SYNC: rejected there,
            // the sync reports it.
            "unmap" | "sync" => Opcode::TlbiNhVa,
            "retry_unmap" => Opcode::TlbiNhAsid,
            "block" => Opcode::CfgiSte,
            _ => return false,
        };
        model(self).reject_next(opcode as u8);
        true
    }
    fn recover(&mut self) {
        model(self).reject_next(NO_COMMAND);
    }
}

impl TestHw for Faulty<Backend> {
    const FAILED_UNMAPS_STAY_CACHED: bool = false;

    fn tables(&self, d: DeviceIndex) -> Pages {
        let mut out = Pages::new();
        let Some(dom) = self.inner.domain_of(d) else { return out };
        let add = |leaf: smmuv3::pagetable::Leaf| {
            add_leaf(&mut out, leaf.iova.0, leaf.pa.0, leaf.size(), leaf.perm == Perm::ReadWrite)
        };
        self.inner.smmu_ref().for_each_mapping(dom, add).expect("the device's domain");
        out
    }

    fn enabled(&self, d: DeviceIndex) -> bool {
        let sid = StreamId(DEVICES[d].stream);
        self.inner.domain_of(d).is_some() && self.inner.smmu_ref().stream_domain(sid) == self.inner.domain_of(d)
    }

    fn reach(&self, d: DeviceIndex, iovas: &BTreeSet<u64>) -> Pages {
        let (m, sid) = (model(&self.inner), DEVICES[d].stream);
        reach_by(iovas, |iova, write| match m.translate(sid, iova, write) {
            Outcome::Ok(pa) | Outcome::Bypass(pa) => Some(pa),
            _ => None,
        })
    }

    fn fail_next(&mut self, what: Option<&'static str>) {
        self.fail = what;
    }

    fn entry(&self, d: DeviceIndex) -> Option<Entry> {
        let want = self.inner.translation_of(d);
        Some(stream_entry(model(&self.inner), DEVICES[d].stream, want))
    }

    fn stray_entries(&self) -> Vec<(u32, String)> {
        let m = model(&self.inner);
        let mut sids = vec![0, 0xffff];
        sids.extend(DEVICES.iter().flat_map(|d| [d.stream - 1, d.stream + 1]));
        sids.into_iter()
            .filter(|sid| !DEVICES.iter().any(|d| d.stream == *sid))
            .filter_map(|sid| match stream_entry(m, sid, None) {
                Entry::Aborts => None,
                e => Some((sid, format!("{e:?}"))),
            })
            .collect()
    }
}

/// What the SMMU makes of `sid` by its STEs (IHI 0070 5.2): the one it has cached, if any,
/// and the one in the stream table (the SMMU may use either: a cached entry until it is
/// invalidated, the table's once it is evicted). Each must abort, or translate through
/// `want`, the device's own domain: stage 1 through a CD with its ASID, or stage 2 with
/// its VMID. A missing one (no table, an invalid level-1 descriptor) terminates the stream.
fn stream_entry(m: &SmmuModel, sid: u32, want: Option<Translation>) -> Entry {
    let (cached, table) = m.stream_entries(sid);
    let of = |ste: Option<[u64; 8]>| -> Entry {
        let Some(ste) = ste else { return Entry::Aborts };
        // STE.V (word 0 bit 0) = 0: C_BAD_STE, the transaction terminated.
        if ste[0] & 1 == 0 {
            return Entry::Aborts;
        }
        // STE.Config, word 0 bits [3:1].
        let got = match (ste[0] >> 1) & 0b111 {
            0b000 => return Entry::Aborts,
            0b100 => return Entry::Other("STE.Config = bypass".into()),
            // S1ContextPtr, word 0 bits [51:6]; the CD's ASID, its word 0 bits [63:48].
            0b101 => {
                Translation::Stage1 { asid: smmuv3::Asid((m.read_u64(ste[0] & 0x000f_ffff_ffff_ffc0) >> 48) as u16) }
            }
            // S2VMID, word 2 bits [15:0].
            0b110 => Translation::Stage2 { vmid: smmuv3::Vmid(ste[2] as u16) },
            c => return Entry::Other(format!("STE.Config = {c:#05b}")),
        };
        if Some(got) == want {
            Entry::OwnDomain
        } else {
            Entry::Other(format!("translates as {got:?}, its device's domain is {want:?}"))
        }
    };
    match (of(cached), of(table)) {
        (Entry::Other(why), _) => Entry::Other(format!("cached STE: {why}")),
        (_, Entry::Other(why)) => Entry::Other(format!("STE in the table: {why}")),
        (Entry::Aborts, Entry::Aborts) => Entry::Aborts,
        _ => Entry::OwnDomain,
    }
}

#[test]
fn model_based_over_smmuv3() {
    common::suite::model_based(backend);
}

#[test]
fn exhaustive_over_smmuv3() {
    common::suite::exhaustive(backend);
}

/// The mapping queue under each SMMU failure point of a batch, and each pair of them:
/// a rejected TLBI of a deferred unmap, of the batch's sync, of a retry; a rejected
/// CFGI_STE of a block.
#[test]
fn queue_failure_points_over_smmuv3() {
    common::failure_points::sweep(backend);
}

/// The same requests as calls (a MAP booked before the SMMU maps it), under each failure
/// point and each pair.
#[test]
fn call_failure_points_over_smmuv3() {
    common::failure_points::sweep_calls(backend);
}

/// A REVOKE and a teardown under each SMMU failure point and each pair
/// (`common::revoke_points`; iommu-pd's `tests/revoke_failure_points.rs` also sweeps a
/// RELEASE and two REVOKEs in a row over the model): more than a batch of removals on a
/// device, among mappings that stay, on four devices of three clients.
#[test]
fn revoke_failure_points_over_smmuv3() {
    use common::revoke_points::{sweep, Op};
    for op in [Op::RevokeLoan, Op::TearDownNet] {
        sweep(backend, op);
    }
}

#[test]
#[ignore = "long: 10^5 steps and every sequence of three; run with --release -- --ignored"]
fn long_over_smmuv3() {
    common::suite::long(backend);
}
