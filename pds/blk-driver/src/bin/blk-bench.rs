//! The bypass-vs-service measurement: the virtio-blk driver reads a 64 MiB file from its
//! disk through the IOMMU service (its pool mapped once, every DMA translated by the
//! SMMU) and, in the same run, with its stream in bypass (nothing translated), and
//! reports the ratio of the times and the MAP/UNMAP calls it made per request. Only a
//! measurement build of the IOMMU PD (images/blk-bench.xml) lets it switch to bypass.
//!
//! The pool is mapped at IOVA = its physical address, so the device uses the same
//! addresses on both paths and the driver switches between them without resetting it:
//! it reads each MiB of the file once on each path, back to back, alternating which goes
//! first. Two reads of the same MiB a few milliseconds apart see the same host, so the
//! host's drift (which under emulation is large) falls on both paths alike.
//!
//! Every read is checked (each 64-bit word of the file holds its own offset), outside the
//! timed part, so a pass that read the wrong data does not count.
#![no_std]
#![no_main]

use core::ptr::NonNull;

use blk_driver::{place_device, Blk};
use client_channel::{calls, Ppc};
use iommu_client::hal::{DmaPool, IommuHal};
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
/// Bytes read on one path before the same bytes are read on the other.
const BLOCK: usize = 1 << 20;
const BLOCKS: usize = FILE_BYTES / BLOCK;
/// Passes over the file (each reads it once on each path), after one warm-up pass.
const PASSES: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Service,
    Bypass,
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

fn ms(ticks: u64, hz: u64) -> u64 {
    ticks.saturating_mul(1000) / hz.max(1)
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
        Ok(iova) => debug_println!(
            "blk-bench: DMA pool ({POOL_PAGES} pages) mapped once, at iova {iova:#x} = its physical address"
        ),
        Err(e) => {
            debug_println!("blk-bench: the IOMMU PD refused the pool at iova {pool_pa:#x}: {e:?}");
            return BlkBench;
        }
    }
    // SAFETY: the pool region is this PD's, mapped at `dma_pool`, used for nothing else;
    // the device reaches it at `pool_pa` translated (the MAP above) and in bypass.
    IommuHal::install(unsafe { DmaPool::reachable_at(pool_va, pool_pa, POOL_PAGES) });
    let mut blk = match blk_driver::open(&mut root) {
        Ok(b) => b,
        Err(e) => {
            debug_println!("blk-bench: {e}");
            return BlkBench;
        }
    };
    let hz = tick_hz();
    let mut buf = [0u8; CHUNK];

    // The first pass warms what neither path should pay for: QEMU's translation of this
    // code, the host's page cache of the disk image. It is shown, not counted.
    let (mut warm, mut verified) = (0, true);
    for block in 0..BLOCKS {
        let (t, _, ok) = read_block(&mut blk, block, &mut buf);
        warm += t;
        verified &= ok;
    }
    debug_println!(
        "blk-bench: warm-up through the service: {} MiB in {} requests of {} KiB, {} ms, data {}",
        FILE_BYTES >> 20,
        FILE_BYTES / CHUNK,
        CHUNK >> 10,
        ms(warm, hz),
        if verified { "verified" } else { "WRONG" }
    );

    let mut path = Path::Service;
    let (mut total, mut service_calls) = ([0u64; 2], 0);
    let (mut lowest, mut highest) = (u64::MAX, 0);
    for pass in 0..PASSES {
        let mut spent = [0u64; 2];
        for block in 0..BLOCKS {
            let order = if (pass * BLOCKS + block).is_multiple_of(2) {
                [Path::Service, Path::Bypass]
            } else {
                [Path::Bypass, Path::Service]
            };
            for next in order {
                if next != path {
                    match client.measure_bypass(MY_DEVICE, next == Path::Bypass) {
                        Ok(()) => path = next,
                        Err(e) => {
                            let why = if e == ErrorCode::UnknownOp {
                                "the IOMMU PD is not a measurement build"
                            } else {
                                "refused"
                            };
                            debug_println!("blk-bench: cannot switch the stream: {why} ({e:?})");
                            return BlkBench;
                        }
                    }
                }
                let (t, n, ok) = read_block(&mut blk, block, &mut buf);
                spent[path as usize] += t;
                verified &= ok;
                if path == Path::Service {
                    service_calls += n;
                }
            }
        }
        let r = ratio(spent[0], spent[1]).0;
        (lowest, highest) = (lowest.min(r), highest.max(r));
        debug_println!(
            "blk-bench: pass {pass}: {} MiB through the service {} ms, in bypass {} ms, ratio {}, data {}",
            FILE_BYTES >> 20,
            ms(spent[Path::Service as usize], hz),
            ms(spent[Path::Bypass as usize], hz),
            Ratio(r),
            if verified { "verified" } else { "WRONG" }
        );
        total[0] += spent[0];
        total[1] += spent[1];
    }
    // Leave the device translated, as it started.
    if path == Path::Bypass && client.measure_bypass(MY_DEVICE, false).is_err() {
        debug_println!("blk-bench: could not put the stream back to translation");
        return BlkBench;
    }
    if !verified {
        debug_println!("blk-bench: no ratio: a read returned wrong data");
        return BlkBench;
    }
    let requests = (PASSES * FILE_BYTES / CHUNK) as u64;
    debug_println!(
        "blk-bench: service/bypass time ratio {} over {PASSES} passes (per pass {} to {}; {} ms / {} ms of emulated time)",
        ratio(total[Path::Service as usize], total[Path::Bypass as usize]),
        Ratio(lowest),
        Ratio(highest),
        ms(total[Path::Service as usize], hz),
        ms(total[Path::Bypass as usize], hz)
    );
    debug_println!(
        "blk-bench: MAP/UNMAP calls per request through the service: {} ({service_calls} over {requests} requests; the pool's one MAP came before)",
        service_calls / requests
    );
    BlkBench
}

struct BlkBench;

impl Handler for BlkBench {
    type Error = Infallible;
}
