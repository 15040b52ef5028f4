//! The bypass-vs-service measurement: the virtio-blk driver reads a 64 MiB file from its
//! disk through the IOMMU service (its pool mapped once, every DMA translated by the
//! SMMU) and, in the same run, with its stream in bypass (the same pool by physical
//! address, nothing translated), alternating, and reports the ratio of the times and the
//! MAP/UNMAP calls it made per request. Only a measurement build of the IOMMU PD
//! (images/blk-bench.xml) lets it switch to bypass.
//!
//! Every chunk read is checked (each 64-bit word of the file holds its own offset), outside
//! the timed part, so a pass that read the wrong data does not count.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use blk_driver::{place_device, Blk, Root};
use client_channel::{calls, Ppc};
use iommu_client::hal::{DmaPool, IommuHal};
use iommu_client::Client;
use iommu_protocol::{DeviceId, Handle, Op};
use sel4_microkit::{debug_println, memory_region_symbol, protection_domain, var, Channel, Handler, Infallible};
use virtio_drivers::device::blk::SECTOR_SIZE;

const IOMMU: Channel = Channel::new(0);
const POOL_PAGES: usize = 32;
/// The disk, the one device of images/blk-bench.xml.
const MY_DEVICE: DeviceId = DeviceId(0);
/// The file: 64 MiB from 1 MiB into the disk (images/Makefile writes it).
const FILE_SECTOR: usize = (1 << 20) / SECTOR_SIZE;
const FILE_BYTES: usize = 64 << 20;
/// Bytes per request: what a block driver commonly asks for at once.
const CHUNK: usize = 64 << 10;
const REQUESTS: usize = FILE_BYTES / CHUNK;
/// Passes per path, alternating, so that neither path has the warm host page cache to
/// itself.
const ROUNDS: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Service,
    Bypass,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Service => "through the service",
            Path::Bypass => "in bypass",
        }
    }
}

/// The generic timer's count; seL4 lets user level read it (KernelArmExportPCNTUser).
fn ticks() -> u64 {
    let v: u64;
    // SAFETY: reads a system register the kernel exports to EL0; no memory is touched.
    // The ISB keeps the read from being taken before the work it measures.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn tick_hz() -> u64 {
    let v: u64;
    // SAFETY: as in `ticks`.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// One pass over the file: timer ticks spent in the reads, requests, and whether every
/// byte was what the file holds.
struct Pass {
    ticks: u64,
    requests: u64,
    maps: u64,
    unmaps: u64,
    verified: bool,
}

fn read_file(blk: &mut Blk) -> Pass {
    let mut buf = [0u8; CHUNK];
    let (maps, unmaps) = (calls(Op::Map), calls(Op::Unmap));
    let mut pass = Pass { ticks: 0, requests: 0, maps: 0, unmaps: 0, verified: true };
    for r in 0..REQUESTS {
        buf.fill(0xa5);
        let t0 = ticks();
        let res = blk.read_blocks(FILE_SECTOR + r * (CHUNK / SECTOR_SIZE), &mut buf);
        pass.ticks += ticks() - t0;
        pass.requests += 1;
        let base = (r * CHUNK) as u64;
        let right = buf.chunks_exact(8).enumerate().all(|(i, w)| {
            u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == base + 8 * i as u64
        });
        if res.is_err() || !right {
            debug_println!("blk-bench: request {r} {}: {res:?}, data right: {right}", "failed");
            pass.verified = false;
            break;
        }
    }
    pass.maps = calls(Op::Map) - maps;
    pass.unmaps = calls(Op::Unmap) - unmaps;
    pass
}

/// The PD's state between passes: the device open on one of the two pools.
struct Bench {
    client: Client<Ppc>,
    root: Root,
    /// The pool not installed in `IommuHal` at the moment.
    spare: Option<DmaPool>,
    path: Path,
}

impl Bench {
    /// Close the device, switch the stream and the pool to `path`, open it again. The
    /// device is reset first, so it holds no address of the other path.
    fn switch(&mut self, blk: Blk, path: Path) -> Result<Blk, &'static str> {
        drop(blk);
        let old = IommuHal::uninstall().ok_or("no pool installed")?;
        self.client.measure_bypass(MY_DEVICE, path == Path::Bypass).map_err(|e| match e {
            iommu_protocol::ErrorCode::UnknownOp => "the IOMMU PD is not a measurement build",
            _ => "the IOMMU PD refused the switch",
        })?;
        IommuHal::install(self.spare.take().ok_or("no spare pool")?);
        self.spare = Some(old);
        self.path = path;
        blk_driver::open(&mut self.root)
    }
}

fn ms(ticks: u64, hz: u64) -> u64 {
    ticks.saturating_mul(1000) / hz.max(1)
}

#[protection_domain]
fn init() -> BlkBench {
    let ecam: NonNull<u8> = memory_region_symbol!(ecam: *mut u8);
    let bar: NonNull<u8> = memory_region_symbol!(blk_bar: *mut u8);
    // SAFETY: the description maps bus 0's configuration space at `ecam` and the BAR
    // range at `blk_bar`, both uncached.
    let root = unsafe { place_device(ecam, bar) };
    let pool_va: NonNull<u8> = memory_region_symbol!(dma_pool: *mut u8);
    let pool_pa = *var!(dma_pool_paddr: u64 = 0);
    let mut client = Client::new(Ppc(IOMMU));
    // SAFETY: the pool region is this PD's, mapped at `dma_pool`, used for nothing else.
    let mapped = match unsafe { DmaPool::map(&mut client, Handle(0), 0, MY_DEVICE, pool_va, POOL_PAGES) } {
        Ok(p) => p,
        Err(e) => {
            debug_println!("blk-bench: the IOMMU PD refused the pool: {e:?}");
            return BlkBench;
        }
    };
    debug_println!("blk-bench: DMA pool ({POOL_PAGES} pages) mapped once at iova {:#x}", mapped.iova());
    // SAFETY: the same pages; in bypass the device reaches them at their physical address,
    // which the Microkit tool wrote into `dma_pool_paddr`.
    let direct = unsafe { DmaPool::unmapped(pool_va, pool_pa, POOL_PAGES) };
    IommuHal::install(mapped);
    let mut bench = Bench { client, root, spare: Some(direct), path: Path::Service };
    let mut blk = match blk_driver::open(&mut bench.root) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("blk-bench: {e}");
            return BlkBench;
        }
    };

    let hz = tick_hz();
    let mut total = [0u64; 2];
    let mut all_verified = true;
    let (mut maps, mut unmaps, mut requests) = (0, 0, 0);
    for round in 0..ROUNDS {
        for path in [Path::Service, Path::Bypass] {
            if path != bench.path {
                blk = match bench.switch(blk, path) {
                    Ok(b) => b,
                    Err(e) => {
                        debug_println!("blk-bench: cannot measure {}: {e}", path.name());
                        return BlkBench;
                    }
                };
            }
            let p = read_file(&mut blk);
            debug_println!(
                "blk-bench: round {round}, {}: {} MiB in {} requests of {} KiB: {} ms, data {}; MAP calls {}, UNMAP calls {}",
                path.name(),
                FILE_BYTES >> 20,
                p.requests,
                CHUNK >> 10,
                ms(p.ticks, hz),
                if p.verified { "verified" } else { "WRONG" },
                p.maps,
                p.unmaps
            );
            all_verified &= p.verified;
            total[path as usize] += p.ticks;
            if path == Path::Service {
                (maps, unmaps, requests) = (maps + p.maps, unmaps + p.unmaps, requests + p.requests);
            }
        }
    }
    // Leave the device translated again, as it started.
    if let Err(e) = bench.switch(blk, Path::Service).map(drop) {
        debug_println!("blk-bench: could not go back to translation: {e}");
    }
    let (service, bypass) = (total[Path::Service as usize], total[Path::Bypass as usize]);
    if all_verified && bypass > 0 && requests > 0 {
        // Hundredths, in integers: the ratio is the figure that means something under
        // emulation.
        let ratio = service * 100 / bypass;
        debug_println!(
            "blk-bench: service/bypass time ratio {}.{:02} ({} ms / {} ms of emulated time, {} x {} MiB each)",
            ratio / 100,
            ratio % 100,
            ms(service, hz),
            ms(bypass, hz),
            ROUNDS,
            FILE_BYTES >> 20
        );
        debug_println!(
            "blk-bench: MAP/UNMAP calls per request through the service: {}/{} ({} MAP, {} UNMAP over {} requests; the pool's one MAP came before)",
            maps / requests,
            unmaps / requests,
            maps,
            unmaps,
            requests
        );
    } else {
        debug_println!("blk-bench: no ratio: a pass failed or took no time");
    }
    BlkBench
}

struct BlkBench;

impl Handler for BlkBench {
    type Error = Infallible;
}
