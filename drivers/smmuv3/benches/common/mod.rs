//! What the driver's benchmarks share: timing maps and unmaps of one size in a domain.

use std::hint::black_box;
use std::time::{Duration, Instant};

use smmuv3::model::InstantSmmu;
use smmuv3::{DomainId, Iova, MemType, Perm, PhysAddr, Smmu};

/// Maps (and unmaps) in a window of this many.
pub const PAGES: u64 = 512;
/// Where the window starts (guest-physical RAM, as the Linux guest's).
pub const BASE: u64 = 0x4000_0000;
/// Physical memory the mappings point at: never touched, only named.
pub const OUT: u64 = 0x8000_0000;

/// Time maps of `size` bytes (pages or blocks) at `out` onwards into tables made warm by
/// mapping and unmapping the same window first; unmap (untimed) every `PAGES` maps.
pub fn warm_maps(b: &mut criterion::Bencher, (mut smmu, d): (Smmu<InstantSmmu>, DomainId), size: u64, out: u64) {
    smmu.map(d, Iova(BASE), PhysAddr(out), size * PAGES, Perm::ReadWrite, MemType::Normal).unwrap();
    smmu.unmap(d, Iova(BASE), size * PAGES).unwrap();
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let n = (iters - done).min(PAGES);
            let t = Instant::now();
            for i in 0..n {
                let (iova, pa) = (Iova(BASE + i * size), PhysAddr(out + i * size));
                smmu.map(d, iova, pa, size, Perm::ReadWrite, MemType::Normal).unwrap();
            }
            total += t.elapsed();
            smmu.unmap(d, Iova(BASE), n * size).unwrap();
            done += n;
        }
        total
    });
}

/// Time unmaps of one 4 KiB page each, with its TLBI and CMD_SYNC; the window is mapped
/// again (untimed) every `PAGES` unmaps.
pub fn unmaps(b: &mut criterion::Bencher, (mut smmu, d): (Smmu<InstantSmmu>, DomainId)) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let n = (iters - done).min(PAGES);
            // An output address off 2 MiB alignment keeps these 4 KiB pages, not a block.
            smmu.map(d, Iova(BASE), PhysAddr(OUT + 4096), n * 4096, Perm::ReadWrite, MemType::Normal).unwrap();
            let t = Instant::now();
            for i in 0..n {
                black_box(smmu.unmap(d, Iova(BASE + i * 4096), 4096).unwrap());
            }
            total += t.elapsed();
            done += n;
        }
        total
    });
}
