//! The bypass-vs-service measurement: the virtio-blk driver reads a 64 MiB file from its
//! disk, in one run, on three paths, and reports the ratios of the times and the MAP/UNMAP
//! calls it made per request:
//! - through the service, as `system.xml`'s driver does: its pool mapped once, every
//!   buffer copied through it, every DMA translated by the SMMU;
//! - through the service, mapping each request's buffer in place (one MAP when it is
//!   shared, one UNMAP, confirmed, when it is unshared), with no copy;
//! - with its stream in bypass: the pool's pages by physical address, nothing translated.
//!
//! Only a measurement build of the IOMMU PD (images/blk-bench.xml) lets it switch to
//! bypass. The pool is mapped at IOVA = its physical address, so the device uses the same
//! addresses translated or not and the driver switches without resetting it: it reads
//! each MiB of the file once on each path, back to back, rotating which goes first. Reads
//! of the same MiB a few milliseconds apart see the same host, so the host's drift (which
//! under emulation is large) falls on every path alike.
//!
//! Every read is checked (each 64-bit word of the file holds its own offset), outside the
//! timed part, so a pass that read the wrong data does not count.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use blk_driver::{place_device, Blk};
use client_channel::{calls, Ppc};
use generic_timer::{ms, ticks};
use iommu_client::hal::{DmaPool, InPlace, IommuHal};
use iommu_client::Client;
use iommu_protocol::{DeviceId, ErrorCode, Handle, Op, Rights};
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
/// The in-place buffer: the capability the description gives after the pool's.
const BUFFER_CAP: Handle = Handle(1);
/// Bytes read on one path before the same bytes are read on the other.
const BLOCK: usize = 1 << 20;
const BLOCKS: usize = FILE_BYTES / BLOCK;
/// Passes over the file (each reads it once on each path), after one warm-up pass.
const PASSES: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Pool mapped once, buffers copied through it.
    Service,
    /// Nothing translated; the same pool and copies.
    Bypass,
    /// Each buffer mapped in place for its request.
    InPlace,
}

const PATHS: [Path; 3] = [Path::Service, Path::Bypass, Path::InPlace];

/// The IOMMU PD, for `IommuHal`'s own MAP and UNMAP of in-place buffers.
fn iommu_call(label: u64, mrs: &[u64], reply: &mut [u64; 6]) -> u64 {
    iommu_client::Channel::call(&mut Ppc(IOMMU), label, mrs, reply)
}

/// Hundredths, printed as a decimal.
struct Ratio(u64);

impl core::fmt::Display for Ratio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

fn ratio(a: u64, b: u64) -> Ratio {
    Ratio(a.saturating_mul(100) / b.max(1))
}

/// Read MiB `block` of the file: the ticks spent in the requests, the MAP and UNMAP calls
/// made meanwhile, and whether every word was right.
fn read_block(blk: &mut Blk, block: usize, buf: &mut [u8; CHUNK]) -> (u64, u64, bool) {
    let calls_before = calls(Op::Map) + calls(Op::Unmap);
    let mut spent = 0;
    for c in 0..BLOCK / CHUNK {
        let offset = block * BLOCK + c * CHUNK;
        buf.fill(0xa5);
        let t0 = ticks();
        let res = blk.read_blocks(FILE_SECTOR + offset / SECTOR_SIZE, buf);
        spent += ticks() - t0;
        let right = buf.chunks_exact(8).enumerate().all(|(i, w)| {
            u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == (offset + 8 * i) as u64
        });
        if res.is_err() || !right {
            debug_println!("blk-bench: read at file offset {offset:#x}: {res:?}, data right: {right}");
            return (spent, 0, false);
        }
    }
    (spent, calls(Op::Map) + calls(Op::Unmap) - calls_before, true)
}

#[protection_domain]
fn init() -> BlkBench {
    let ecam: NonNull<u8> = memory_region_symbol!(ecam: *mut u8);
    let bar: NonNull<u8> = memory_region_symbol!(blk_bar: *mut u8);
    // SAFETY: the description maps bus 0's configuration space at `ecam` and the BAR
    // range at `blk_bar`, both uncached.
    let mut root = unsafe { place_device(ecam, bar) };
    let pool_va: NonNull<u8> = memory_region_symbol!(dma_pool: *mut u8);
    let pool_pa = *var!(dma_pool_paddr: u64 = 0);
    let mut client = Client::new(Ppc(IOMMU));
    let len = (POOL_PAGES * 4096) as u64;
    match client.map(Handle(0), MY_DEVICE, 0, len, Some(pool_pa), Rights::READ_WRITE) {
        Ok(iova) => {
            debug_println!(
                "blk-bench: DMA pool ({POOL_PAGES} pages) mapped once, at iova {iova:#x} = its physical address"
            )
        }
        Err(e) => {
            debug_println!("blk-bench: the IOMMU PD refused the pool at iova {pool_pa:#x}: {e:?}");
            return BlkBench;
        }
    }
    // SAFETY: the pool region is this PD's, mapped at `dma_pool`, used for nothing else;
    // the device reaches it at `pool_pa` translated (the MAP above) and in bypass.
    IommuHal::install(unsafe { DmaPool::reachable_at(pool_va, pool_pa, POOL_PAGES) });
    let in_place: NonNull<[u8; CHUNK]> = memory_region_symbol!(dma_buffer: *mut [u8; CHUNK]);
    // SAFETY: the description maps the buffer region (capability BUFFER_CAP, from its
    // start) at `dma_buffer`; the device may reach it while a request has it shared.
    unsafe {
        IommuHal::share_in_place(InPlace {
            va: in_place.cast(),
            len: CHUNK,
            cap: BUFFER_CAP,
            cap_offset: 0,
            device: MY_DEVICE,
            call: iommu_call,
        })
    };
    // SAFETY: this PD's own mapping of the region, used only here.
    let in_place = unsafe { &mut *in_place.as_ptr() };
    let mut blk = match blk_driver::open(&mut root) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("blk-bench: {e}");
            return BlkBench;
        }
    };
    // The copied paths read into the stack, which the device never reaches.
    let mut on_stack = [0u8; CHUNK];

    // The first pass warms what no path should pay for: QEMU's translation of this code,
    // the host's page cache of the disk image. It is shown, not counted.
    let (mut warm, mut verified) = (0, true);
    for block in 0..BLOCKS {
        let (t, _, ok) = read_block(&mut blk, block, &mut on_stack);
        warm += t;
        verified &= ok;
    }
    debug_println!(
        "blk-bench: warm-up through the service: {} MiB in {} requests of {} KiB, {} ms, data {}",
        FILE_BYTES >> 20,
        FILE_BYTES / CHUNK,
        CHUNK >> 10,
        ms(warm),
        if verified { "verified" } else { "WRONG" }
    );

    let mut bypassed = false;
    let (mut total, mut made) = ([0u64; 3], [0u64; 3]);
    let mut spread = [(u64::MAX, 0u64); 3];
    for pass in 0..PASSES {
        let mut spent = [0u64; 3];
        for block in 0..BLOCKS {
            for i in 0..PATHS.len() {
                let path = PATHS[(pass * BLOCKS + block + i) % PATHS.len()];
                if (path == Path::Bypass) != bypassed {
                    if let Err(e) = client.measure_bypass(MY_DEVICE, !bypassed) {
                        let why = if e == ErrorCode::UnknownOp {
                            "the IOMMU PD is not a measurement build"
                        } else {
                            "refused"
                        };
                        debug_println!("blk-bench: cannot switch the stream: {why} ({e:?})");
                        return BlkBench;
                    }
                    bypassed = !bypassed;
                }
                let buf = if path == Path::InPlace { &mut *in_place } else { &mut on_stack };
                let (t, n, ok) = read_block(&mut blk, block, buf);
                spent[path as usize] += t;
                made[path as usize] += n;
                verified &= ok;
            }
        }
        let bypass = spent[Path::Bypass as usize];
        for p in PATHS {
            let r = ratio(spent[p as usize], bypass).0;
            spread[p as usize] = (spread[p as usize].0.min(r), spread[p as usize].1.max(r));
            total[p as usize] += spent[p as usize];
        }
        debug_println!(
            "blk-bench: pass {pass}: {} MiB in bypass {} ms; through the service, pool mapped once {} ms (ratio {}), mapped per request {} ms (ratio {}); data {}",
            FILE_BYTES >> 20,
            ms(bypass),
            ms(spent[Path::Service as usize]),
            ratio(spent[Path::Service as usize], bypass),
            ms(spent[Path::InPlace as usize]),
            ratio(spent[Path::InPlace as usize], bypass),
            if verified { "verified" } else { "WRONG" }
        );
    }
    // Leave the device translated, as it started.
    if bypassed && client.measure_bypass(MY_DEVICE, false).is_err() {
        debug_println!("blk-bench: could not put the stream back to translation");
        return BlkBench;
    }
    if !verified {
        debug_println!("blk-bench: no ratio: a read returned wrong data");
        return BlkBench;
    }
    let requests = (PASSES * FILE_BYTES / CHUNK) as u64;
    let bypass = total[Path::Bypass as usize];
    for (path, what) in [(Path::Service, "pool mapped once"), (Path::InPlace, "mapped per request")] {
        let (lo, hi) = spread[path as usize];
        debug_println!(
            "blk-bench: {what}: service/bypass time ratio {} over {PASSES} passes (per pass {} to {}; {} ms / {} ms of emulated time); MAP/UNMAP calls per request {}.{:02} ({} over {requests} requests)",
            ratio(total[path as usize], bypass),
            Ratio(lo),
            Ratio(hi),
            ms(total[path as usize]),
            ms(bypass),
            made[path as usize] / requests,
            made[path as usize] * 100 / requests % 100,
            made[path as usize]
        );
    }
    let failures = IommuHal::unmap_failures();
    if failures > 0 {
        debug_println!("blk-bench: {failures} in-place UNMAPs were not confirmed");
    }
    BlkBench
}

struct BlkBench;

impl Handler for BlkBench {
    type Error = Infallible;
}
