//! The IOMMU service core over the SMMUv3 driver, on QEMU: three driver "PDs" (clients)
//! send encoded requests, as they would over their Microkit channels, and their edu
//! devices DMA through whatever the service allowed. Faults from the SMMU's event queue
//! are attributed by the service and routed to the owning client's fault ring.

use core::ptr::NonNull;

use iommu_pd::{CapConfig, ClientConfig, Config, DeviceConfig, FaultInput, FaultPolicy, RegionConfig, Service};
use iommu_protocol::{ClientId, DeviceId, ErrorCode, Handle, Reply, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};
use smmuv3::{Config as SmmuConfig, MmioRegisters, Smmu};
use smmuv3_service::SmmuBackend;

use crate::bringup::DMA_POLLS;
use crate::memory::{self, service_page};
use crate::pci::{EduDev, Pci};
use crate::platform::Platform;
use crate::println;
use crate::report::Report;

const A: usize = 0;
const B: usize = 1;
const HOSTILE: usize = 2;
const BLK: usize = 3;
const LEN: usize = 256;
const WINDOW: u64 = 0x1_0000_0000;

type Svc<'a> = Service<'a, SmmuBackend<MmioRegisters>>;

fn now() -> u64 {
    let t: u64;
    // SAFETY: reading the virtual counter has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntvct_el0", out(reg) t, options(nomem, nostack)) };
    t
}

fn ticks_per_second() -> u64 {
    let f: u64;
    // SAFETY: reading the counter frequency has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

/// A protected procedure call, encoded and decoded as over a channel.
fn call(s: &mut Svc<'_>, client: usize, req: Request) -> Reply {
    let mut mrs = [0; MAX_MRS];
    let (label, n) = req.encode(&mut mrs);
    s.handle(client, label, &mrs[..n])
}

fn map(s: &mut Svc<'_>, client: usize, cap: u32, device: usize, page: u64, rights: Rights) -> Reply {
    let req = Request::Map {
        cap: Handle(cap),
        device: DeviceId(device as u32),
        offset: page * 4096,
        len: 4096,
        iova: None,
        rights,
    };
    call(s, client, req)
}

fn iova_of(r: Reply) -> u64 {
    match r {
        Reply::Ok { values, .. } => values[0],
        Reply::Err(_) => u64::MAX,
    }
}

/// Drain the SMMU's events into the service; print what each client was told.
fn route_faults(s: &mut Svc<'_>) {
    let mut events: heapless::Vec<smmuv3::Event, 512> = heapless::Vec::new();
    if let Err(e) = s.hw_mut().smmu().handle_interrupt(|e| {
        let _ = events.push(e);
    }) {
        println!("    SMMU global error: {e}");
    }
    let t = now();
    for e in &events {
        let Some(f) = e.fault() else { continue };
        let write = f.txn.access == smmuv3::Access::Write;
        let input = FaultInput { stream: f.txn.sid.0, iova: f.txn.iova.0, write, kind: event_id(e), now: t };
        let _ = s.record_fault(input);
    }
}

fn event_id(e: &smmuv3::Event) -> u32 {
    match e {
        smmuv3::Event::Translation(_) => 0x10,
        smmuv3::Event::Permission(_) => 0x13,
        smmuv3::Event::AccessFlag(_) => 0x12,
        smmuv3::Event::AddressSize(_) => 0x11,
        _ => 0,
    }
}

/// What `client` would do on its notification: read its ring (as a client PD reads the
/// page shared with it) from its next unread record, print, and acknowledge.
fn read_faults(s: &mut Svc<'_>, client: usize, cfg: &Config<'_>) -> heapless::Vec<iommu_pd::FaultRecord, 32> {
    let mut out = [iommu_pd::FaultRecord::default(); 32];
    let from = s.faults(client).and_then(|r| r.pending().next().map(|f| f.seq)).unwrap_or(u64::MAX);
    let n = match s.faults(client) {
        // SAFETY: the ring lives in the service's tables, alive for this call.
        Some(ring) => unsafe { iommu_pd::FaultRing::read_shared(NonNull::from(ring), from, &mut out) },
        None => 0,
    };
    let recs: heapless::Vec<iommu_pd::FaultRecord, 32> = out[..n].iter().copied().collect();
    for r in &recs {
        let kind = match r.kind {
            0x10 => "translation fault",
            0x13 => "permission fault",
            _ => "fault",
        };
        let region = cfg.regions.get(r.region as usize).map(|g| g.name).unwrap_or("no region");
        println!(
            "    {} is told: device {} (stream {:#x}) {} at iova {:#x}..={:#x} ({} more), {} {}{}{}",
            cfg.clients[client].name,
            cfg.devices[r.device as usize].name,
            r.stream,
            kind,
            r.iova,
            r.iova_last,
            r.repeats,
            if r.write == 1 { "write;" } else { "read;" },
            region,
            if r.near == 1 { " (next to a mapping)" } else { "" },
            if r.quarantined == 1 { "; device QUARANTINED" } else { "" },
        );
    }
    if let Some(last) = recs.last() {
        let _ = call(s, client, Request::AckFaults { upto: last.seq });
    }
    recs
}

static CLIENTS: [ClientConfig; 4] = [
    ClientConfig { name: "edu-a driver", max_mappings: 8, max_pages: 8, max_grants: 2 },
    ClientConfig { name: "edu-b driver", max_mappings: 8, max_pages: 8, max_grants: 2 },
    ClientConfig { name: "hostile driver", max_mappings: 8, max_pages: 8, max_grants: 2 },
    ClientConfig { name: "virtio-blk driver", max_mappings: 2, max_pages: 32, max_grants: 2 },
];

static CAPS: [CapConfig; 4] = [
    CapConfig {
        client: BLK,
        region: 3,
        offset: 0,
        len: 32 * 4096,
        rights: Rights::READ_WRITE,
        devices: 0b1000,
        grant_to: 0,
    },
    // A may delegate to B's driver, and to no one else.
    CapConfig {
        client: A,
        region: 0,
        offset: 0,
        len: 8 * 4096,
        rights: Rights::READ_WRITE,
        devices: 0b001,
        grant_to: 1 << B,
    },
    CapConfig {
        client: B,
        region: 1,
        offset: 0,
        len: 4 * 4096,
        rights: Rights::READ_WRITE,
        devices: 0b010,
        grant_to: 0,
    },
    CapConfig {
        client: HOSTILE,
        region: 2,
        offset: 0,
        len: 2 * 4096,
        rights: Rights::READ_WRITE,
        devices: 0b100,
        grant_to: 0,
    },
];

/// A device and the two pages (by IOVA) its driver mapped to load and report data.
struct Dev {
    edu: edu::Edu,
    src_iova: u64,
    chk_iova: u64,
}

impl Dev {
    fn new(d: &EduDev) -> Self {
        // SAFETY: BAR0 was assigned by `pci::setup`, is identity-mapped as Device
        // memory, and each device gets one driver instance at a time.
        let edu = unsafe { edu::Edu::new(NonNull::new(d.bar0 as *mut u8).unwrap()) };
        Dev { edu, src_iova: u64::MAX, chk_iova: u64::MAX }
    }

    /// Load the device's buffer from `from`, then write it out to `to`.
    fn copy(&mut self, from: u64, to: u64) {
        let _ = self.edu.dma_from_ram(from, 0, LEN, DMA_POLLS);
        let _ = self.edu.dma_to_ram(0, to, LEN, DMA_POLLS);
    }
}

fn holds(page: &smmuv3::DmaRegion, byte: u8) -> bool {
    let mut got = [0u8; LEN];
    memory::read(page, 0, &mut got);
    got.iter().all(|b| *b == byte)
}

pub fn run(p: &Platform, edus: &[EduDev], pci: &mut Pci, report: &mut Report) {
    if edus.len() < 3 {
        return;
    }
    println!("service: the IOMMU service core over the SMMUv3 driver, four driver clients");
    let mem = memory::smmu_memory();
    // Coherent: QEMU virt marks its SMMU `dma-coherent`, and this image maps its memory
    // write-back inner shareable, as the SMMU walks it.
    let config =
        SmmuConfig { ias_bits: 48, sid_bits: 16, bound: smmuv3::Bound::Polls(10_000_000), ..SmmuConfig::default() };
    // SAFETY: the SMMU's registers are identity-mapped as Device memory; the driver of the
    // earlier tests is gone, so this is the only user. The static regions are reused.
    let regs = unsafe { MmioRegisters::new(NonNull::new(p.smmu as *mut u8).unwrap()) };
    // SAFETY: as above; PA == VA for the static regions.
    let smmu = match unsafe { Smmu::init(regs, mem, config) } {
        Ok(s) => s,
        Err(e) => return report.check("SMMU re-initialised", false, format_args!("{e}")),
    };
    let Some((blk_df, blk_sid)) = pci.virtio_blk else {
        return report.check("virtio-blk device present", false, format_args!("run QEMU with -device virtio-blk-pci"));
    };
    let streams = [edus[0].sid, edus[1].sid, edus[2].sid, blk_sid];
    let backend = match SmmuBackend::new(smmu, &streams) {
        Ok(b) => b,
        Err(e) => return report.check("backend", false, format_args!("{e}")),
    };
    let devices = [
        DeviceConfig {
            name: "edu A",
            stream: streams[0],
            extra_streams: &[],
            owner: A,
            iova_base: WINDOW,
            iova_size: 1 << 20,
            resume_allowed: true,
        },
        DeviceConfig {
            name: "edu B",
            stream: streams[1],
            extra_streams: &[],
            owner: B,
            iova_base: WINDOW,
            iova_size: 1 << 20,
            resume_allowed: true,
        },
        DeviceConfig {
            name: "edu C",
            stream: streams[2],
            extra_streams: &[],
            owner: HOSTILE,
            iova_base: WINDOW,
            iova_size: 1 << 20,
            resume_allowed: false,
        },
        DeviceConfig {
            name: "virtio-blk",
            stream: streams[3],
            extra_streams: &[],
            owner: BLK,
            iova_base: WINDOW,
            iova_size: 1 << 20,
            resume_allowed: true,
        },
    ];
    let base = service_page(0).pa.0;
    let regions = [
        RegionConfig { name: "a-buffers", pa: base, size: 8 * 4096 },
        RegionConfig { name: "b-buffers", pa: base + 8 * 4096, size: 4 * 4096 },
        RegionConfig { name: "hostile-scratch", pa: base + 12 * 4096, size: 2 * 4096 },
        RegionConfig { name: "virtio-dma-pool", pa: memory::VIRTIO_POOL.region().pa.0, size: 32 * 4096 },
    ];
    // Pages 14 and 15 are in no region: private memory no capability covers.
    let cfg = Config {
        clients: &CLIENTS,
        devices: &devices,
        regions: &regions,
        caps: &CAPS,
        static_maps: &[],
        faults: FaultPolicy { window: ticks_per_second(), max_faults: 300, resume_rest_ms: 0 },
    };
    let mut tables = <iommu_pd::owned_storage!(4, 4, 16, 32)>::default();
    let mut s = match Service::new(backend, cfg, tables.storage()) {
        Ok(s) => s,
        Err(e) => return report.check("service started", false, format_args!("{e:?}")),
    };
    let (mut a, mut b, mut c) = (Dev::new(&edus[0]), Dev::new(&edus[1]), Dev::new(&edus[2]));

    println!("  edu-a driver maps two pages of its buffers for device A: source read-only, destination read/write");
    a.src_iova = iova_of(map(&mut s, A, 0, 0, 0, Rights::READ));
    a.chk_iova = iova_of(map(&mut s, A, 0, 0, 1, Rights::READ_WRITE));
    println!("    the service chose iova {:#x} and {:#x}", a.src_iova, a.chk_iova);
    memory::fill(&service_page(0), 0xa5);
    memory::fill(&service_page(1), 0);
    a.copy(a.src_iova, a.chk_iova);
    report.check(
        "service: mapped DMA works",
        holds(&service_page(1), 0xa5),
        format_args!("device A copied 0xa5 from source to destination"),
    );

    println!("  the hostile driver asks for what it has no capability for");
    let r1 = map(&mut s, HOSTILE, 0, 0, 0, Rights::READ);
    let r2 = map(&mut s, HOSTILE, 1, 2, 0, Rights::READ);
    let r3 = call(
        &mut s,
        HOSTILE,
        Request::Map {
            cap: Handle(0),
            device: DeviceId(2),
            offset: 0x1000,
            len: 0x2000,
            iova: None,
            rights: Rights::READ,
        },
    );
    let r4 = call(&mut s, HOSTILE, Request::Revoke { grant: Handle(0) });
    // Its capability may be granted to no one: it cannot lend device A's driver memory
    // to launder, or widen anyone's reach.
    let r5 = call(
        &mut s,
        HOSTILE,
        Request::Grant {
            cap: Handle(0),
            to: ClientId(A as u32),
            offset: 0,
            len: 0x1000,
            rights: Rights::READ,
            devices: 0b001,
        },
    );
    let refused = [r1, r2, r3, r4, r5]
        == [ErrorCode::BadDevice, ErrorCode::BadHandle, ErrorCode::OutOfRange, ErrorCode::Denied, ErrorCode::Denied]
            .map(Reply::Err);
    report.check(
        "service: hostile requests refused",
        refused,
        format_args!("device A: {r1:?}; another client's handle: {r2:?}; past its capability: {r3:?}; revoke a boot capability: {r4:?}; grant beyond the description: {r5:?}"),
    );

    println!("  the hostile driver maps its scratch page and programs device C to DMA into edu-a's pages");
    c.src_iova = iova_of(map(&mut s, HOSTILE, 0, 2, 0, Rights::READ));
    memory::fill(&service_page(12), 0x66);
    memory::fill(&service_page(0), 0xa5);
    memory::fill(&service_page(14), 0x14);
    let _ = c.edu.dma_from_ram(c.src_iova, 0, LEN, DMA_POLLS);
    let _ = c.edu.dma_to_ram(0, a.chk_iova, LEN, DMA_POLLS); // A's IOVA, in C's own address space
    let _ = c.edu.dma_to_ram(0, service_page(0).pa.0, LEN, DMA_POLLS); // edu-a's page, by physical address
    let _ = c.edu.dma_to_ram(0, service_page(14).pa.0, LEN, DMA_POLLS); // private memory
    route_faults(&mut s);
    let to_hostile = read_faults(&mut s, HOSTILE, &cfg);
    let to_a = s.faults(A).map(|r| r.pending().count()).unwrap_or(0);
    report.check(
        "service: hostile DMA blocked",
        holds(&service_page(0), 0xa5) && holds(&service_page(1), 0xa5) && holds(&service_page(14), 0x14),
        format_args!("edu-a's pages and the private page are unchanged"),
    );
    report.check(
        "service: faults routed to the owner of the faulting device",
        to_hostile.len() == 3 && to_hostile.iter().all(|r| r.device == 2 && r.repeats == 63) && to_a == 0,
        format_args!("{} records to the hostile driver, {} to edu-a", to_hostile.len(), to_a),
    );

    println!("  edu-a grants one page, read-only, to edu-b's driver for device B");
    let g = call(
        &mut s,
        A,
        Request::Grant {
            cap: Handle(0),
            to: ClientId(B as u32),
            offset: 2 * 4096,
            len: 4096,
            rights: Rights::READ,
            devices: 0b010,
        },
    );
    let (grant, theirs) = match g {
        Reply::Ok { values, .. } => (values[0] as u32, values[1] as u32),
        _ => (u32::MAX, u32::MAX),
    };
    b.src_iova = iova_of(map(&mut s, B, theirs, 1, 0, Rights::READ));
    b.chk_iova = iova_of(map(&mut s, B, 0, 1, 0, Rights::READ_WRITE));
    let w = map(&mut s, B, theirs, 1, 0, Rights::READ_WRITE);
    memory::fill(&service_page(2), 0xb7);
    memory::fill(&service_page(8), 0);
    b.copy(b.src_iova, b.chk_iova);
    report.check(
        "service: granted page readable by B, not writable",
        holds(&service_page(8), 0xb7) && w == Reply::Err(ErrorCode::NoRights),
        format_args!("device B read 0xb7 through iova {:#x}; a writable mapping was refused: {w:?}", b.src_iova),
    );
    let r = call(&mut s, A, Request::Revoke { grant: Handle(grant) });
    memory::fill(&service_page(8), 0x08);
    b.copy(b.src_iova, b.chk_iova);
    route_faults(&mut s);
    let to_b = read_faults(&mut s, B, &cfg);
    let dead = map(&mut s, B, theirs, 1, 0, Rights::READ);
    report.check(
        "service: revoke takes effect before the reply",
        r == Reply::ok(&[])
            && !holds(&service_page(8), 0xb7)
            && to_b.iter().any(|f| f.iova == b.src_iova)
            && dead == Reply::Err(ErrorCode::BadHandle),
        format_args!("after REVOKE, device B's read of iova {:#x} faults; edu-b's handle: {dead:?}", b.src_iova),
    );

    println!("  device C floods: DMA after DMA into unmapped space");
    for i in 0..6 {
        let _ = c.edu.dma_to_ram(0, WINDOW + 0x8_0000 + i * 0x1000, LEN, DMA_POLLS);
        route_faults(&mut s);
    }
    let recs = read_faults(&mut s, HOSTILE, &cfg);
    let quarantined = recs.iter().any(|r| r.quarantined == 1);
    memory::fill(&service_page(12), 0x12);
    let _ = c.edu.dma_to_ram(0, c.src_iova, LEN, DMA_POLLS); // even its own page: the stream aborts
    route_faults(&mut s);
    let after = s.faults(HOSTILE).map(|r| r.pending().count()).unwrap_or(0);
    let resume = call(&mut s, HOSTILE, Request::Resume { device: DeviceId(2) });
    report.check(
        "service: storm quarantines the device",
        quarantined && holds(&service_page(12), 0x12) && after == 0 && resume == Reply::Err(ErrorCode::Denied),
        format_args!(
            "quarantined after more than 300 faults in a second; later DMA aborted silently; resume: {resume:?}"
        ),
    );

    virtio_blk(&mut s, pci, blk_df, report);
    unconfirmed_unmap(&mut s, &mut a, &cfg, report);

    println!("  edu-a's driver crashes: the service tears it down");
    let torn = s.client_torn_down(A);
    memory::fill(&service_page(1), 0x01);
    a.copy(a.src_iova, a.chk_iova);
    report.check(
        "service: teardown stops the device",
        torn.is_ok() && holds(&service_page(1), 0x01),
        format_args!("device A's DMA no longer lands ({torn:?})"),
    );
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = a.chk_iova;
    let gone = call(&mut s, A, Request::Unmap { device: DeviceId(0), iovas, count: 1 });
    report.check(
        "service: torn-down mappings are gone",
        gone == Reply::Err(ErrorCode::NotMapped),
        format_args!("{gone:?}"),
    );
    let st = s.stats();
    println!(
        "service: {} requests refused, {} quarantines, {} unattributed faults",
        st.refused, st.quarantines, st.unattributed_faults
    );
}

/// The SMMU rejects the invalidation of edu-a's UNMAP (injected): the page is gone from
/// the tables but QEMU's SMMU still has it in its TLB (the driver test shows it
/// translating). The service keeps the mapping, pending, and the device blocked; RESUME
/// retries the removal (a TLBI by ASID) before the device runs again, so the old page
/// never comes back.
fn unconfirmed_unmap(s: &mut Svc<'_>, a: &mut Dev, cfg: &Config<'_>, report: &mut Report) {
    println!("  the SMMU rejects the invalidation of edu-a's UNMAP of its source page (injected)");
    memory::fill(&service_page(0), 0xc3);
    memory::fill(&service_page(1), 0);
    a.copy(a.src_iova, a.chk_iova); // the source page's translation is now cached
    let warm = holds(&service_page(1), 0xc3);
    s.hw_mut().smmu().reject_next_invalidation();
    let mut iovas = [0; MAX_UNMAP_RANGES];
    iovas[0] = a.src_iova;
    let u = call(s, A, Request::Unmap { device: DeviceId(0), iovas, count: 1 });
    let _ = s.hw_mut().smmu().check_global_errors();
    let pending = match call(s, A, Request::Query) {
        Reply::Ok { values, .. } => values[6],
        Reply::Err(_) => u64::MAX,
    };
    let blocked_map = map(s, A, 0, 0, 2, Rights::READ);
    memory::fill(&service_page(0), 0xc4);
    memory::fill(&service_page(1), 0x11);
    a.copy(a.src_iova, a.chk_iova);
    report.check(
        "service: an unconfirmed unmap stays pending, the device blocked",
        warm && u == Reply::Err(ErrorCode::Hardware)
            && pending == 1
            && blocked_map == Reply::Err(ErrorCode::RemovalPending)
            && holds(&service_page(1), 0x11),
        format_args!("UNMAP: {u:?}; QUERY: {pending} removal pending; MAP: {blocked_map:?}; device A's DMA aborts"),
    );
    let r = call(s, A, Request::Resume { device: DeviceId(0) });
    a.copy(a.src_iova, a.chk_iova);
    route_faults(s);
    let told = read_faults(s, A, cfg);
    let stale = holds(&service_page(1), 0xc4);
    a.src_iova = iova_of(map(s, A, 0, 0, 0, Rights::READ));
    a.copy(a.src_iova, a.chk_iova);
    report.check(
        "service: RESUME retries the removal before the device runs again",
        r == Reply::ok(&[])
            && !stale
            && told.iter().any(|f| f.iova == iovas[0] && f.write == 0)
            && holds(&service_page(1), 0xc4),
        format_args!(
            "RESUME: {r:?}; the old iova {:#x} faults instead of reading the page; mapped afresh at {:#x}, it reads 0xc4",
            iovas[0], a.src_iova
        ),
    );
}

/// A channel to the service from a client in the same image (a Microkit PD would make a
/// protected procedure call instead).
struct Local<'s, 'a> {
    service: &'s mut Svc<'a>,
    client: usize,
}

impl iommu_client::Channel for Local<'_, '_> {
    fn call(&mut self, label: u64, mrs: &[u64], reply: &mut [u64; iommu_protocol::MAX_REPLY_VALUES]) -> u64 {
        let r = self.service.handle(self.client, label, mrs);
        if let Reply::Ok { values, .. } = r {
            *reply = values;
        }
        r.label()
    }
}

/// A virtio-blk driver whose DMA goes through the service: its pool is mapped with one MAP,
/// and every descriptor address it writes is an IOVA in it. The disk is opened with our
/// `Disk` (virtio-drivers' queue and transport), not virtio-drivers' `VirtIOBlk`: QEMU's
/// disk behind the SMMU (`iommu_platform=on`) refuses FEATURES_OK unless
/// VIRTIO_F_ACCESS_PLATFORM is accepted, which `VirtIOBlk` never does or reads back, and
/// a device that never reached DRIVER_OK is one virtio 1.2 §3.1.1 forbids a driver to use.
fn virtio_blk(
    s: &mut Svc<'_>,
    pci: &mut Pci,
    df: virtio_drivers::transport::pci::bus::DeviceFunction,
    report: &mut Report,
) {
    use iommu_client::hal::{DmaPool, IommuHal};
    use virtio_blk_reader::Disk;
    use virtio_drivers::device::blk::SECTOR_SIZE;
    use virtio_drivers::transport::pci::PciTransport;
    use virtio_drivers::transport::DeviceStatus;

    println!("  the virtio-blk driver maps its DMA pool (32 pages) through the service, once");
    let pool_va = memory::VIRTIO_POOL.region().va;
    let mut client = iommu_client::Client::new(Local { service: s, client: BLK });
    // SAFETY: the pool block is used by nothing else and is the region the capability names.
    let pool = match unsafe { DmaPool::map(&mut client, Handle(0), 0, DeviceId(3), pool_va, 32) } {
        Ok(p) => p,
        Err(e) => return report.check("virtio-blk: pool mapped", false, format_args!("{e:?}")),
    };
    println!("    pool at iova {:#x}", pool.iova());
    IommuHal::install(pool);
    let transport = match PciTransport::new::<IommuHal, _>(&mut pci.root, df) {
        Ok(t) => t,
        Err(e) => return report.check("virtio-blk: transport", false, format_args!("{e:?}")),
    };
    // The size virtio-drivers' `VirtIOBlk` used: one request at a time here.
    let mut blk = match Disk::<IommuHal, _, 16>::new(transport) {
        Ok(b) => b,
        Err(e) => return report.check("virtio-blk: device initialised", false, format_args!("{e:?}")),
    };
    let live = DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK;
    let status = blk.status();
    report.check(
        "virtio-blk: device live (FEATURES_OK and DRIVER_OK read back)",
        status.contains(live) && !status.contains(DeviceStatus::FAILED),
        format_args!("status {status:?}"),
    );
    let mut sector = [0u8; SECTOR_SIZE];
    let r = blk.read_blocks(0, &mut sector);
    let label = b"microkit-iommu test disk";
    report.check(
        "virtio-blk: read through the service",
        r.is_ok() && sector.starts_with(label),
        format_args!("sector 0 begins {:?} ({r:?})", core::str::from_utf8(&sector[..label.len()]).unwrap_or("?")),
    );
    let mut pattern = [0u8; SECTOR_SIZE];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) ^ 0x5c;
    }
    let w = blk.write_blocks(1, &pattern);
    let mut back = [0u8; SECTOR_SIZE];
    let r = blk.read_blocks(1, &mut back);
    report.check(
        "virtio-blk: write and read back",
        w.is_ok() && r.is_ok() && back == pattern,
        format_args!("sector 1 round trip, {} pool pages in use afterwards", IommuHal::pages_in_use()),
    );
    let q = client.query().unwrap_or_default();
    report.check(
        "virtio-blk: one MAP for the whole session",
        q[0] == 1,
        format_args!(
            "{} mapping(s), {} page(s) held by the virtio-blk driver; no MAP or UNMAP per request",
            q[0], q[2]
        ),
    );
}
