//! Which TLB invalidations cover the leaves an unmap or a permission drop removed.
//!
//! Without range invalidation, one CMD_TLBI_NH_VA (or CMD_TLBI_S2_IPA) per leaf, with no
//! hint (TG = TTL = 0). With it (SMMU_IDR3.RIL, SMMUv3.2; IHI 0070 4.4.1), a run of
//! contiguous leaves of one level goes out as few range commands: TG = 4 KiB, TTL = the
//! leaves' level, and (NUM + 1) * 2^SCALE pages each, split the way Linux's
//! `__arm_smmu_tlb_inv_range` (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c) splits: each
//! command takes the lowest set bit of the pages left as SCALE and the five bits from it
//! as NUM + 1. A 64 KiB buffer of 16 pages is one command, not 16; under an emulator each
//! command is work, on hardware each is a queue slot and a walk of the TLB.

use crate::addr::Iova;
use crate::cmd::{Command, TlbiRange};
use crate::driver::Translation;
use crate::pagetable::Leaf;

/// Bits of a 4 KiB page.
const PAGE_SHIFT: u32 = 12;
/// NUM is 5 bits: at most 32 chunks per command.
const NUM_MAX: u64 = 0x1f;
/// SCALE is 5 bits: chunks of at most 2^31 pages.
const SCALE_MAX: u32 = 31;

/// Emit the range commands covering `pages` pages of 4 KiB from `iova`, whose leaves are
/// all at `level`: 5 bits of `pages` a command, up to 2^36 pages (32 chunks of 2^31)
/// a command past bit 31.
#[inline]
pub fn split(tag: Translation, iova: Iova, mut pages: u64, level: u8, emit: &mut impl FnMut(Command)) {
    // One leaf, the usual unmap of a page or a block: NUM 0, SCALE 0, as the loop would
    // give, without its arithmetic.
    if pages == 1 {
        emit(tag.invalidate_range(iova, TlbiRange { num: 0, scale: 0, ttl: level }));
        return;
    }
    let mut at = iova.0;
    while pages > 0 {
        // SCALE is five bits too: a run whose lowest set bit is past 31 goes out in
        // chunks of 2^31 pages, up to 32 of them, or SCALE would be cut to its low bits.
        let scale = pages.trailing_zeros().min(SCALE_MAX);
        let num = if pages.trailing_zeros() > SCALE_MAX {
            (pages >> SCALE_MAX).min(NUM_MAX + 1)
        } else {
            (pages >> scale) & NUM_MAX
        };
        let range = TlbiRange { num: (num - 1) as u8, scale: scale as u8, ttl: level };
        emit(tag.invalidate_range(Iova(at), range));
        at += num << (scale + PAGE_SHIFT);
        pages -= num << scale;
    }
}

/// A run of contiguous leaves of one level not yet invalidated.
#[derive(Debug, Clone, Copy)]
struct Run {
    iova: u64,
    pages: u64,
    level: u8,
}

/// Collects removed leaves into the commands that invalidate them: one per leaf, or, with
/// range invalidation, one run of contiguous leaves of a level at a time. `finish` must
/// follow the last leaf, or the last run is not invalidated.
///
/// Deferred unmaps keep one open across calls (the driver's `CommandQueue::open`): the
/// next deferred unmap of the same domain extends its run when its first leaf is
/// adjacent (same tag, same level, the next address), so a batch that unmaps adjacent
/// buffers sends one range command for all of them; any CMD_SYNC sends it first.
/// Runs that are not adjacent are never joined over the gap between them: see README,
/// **Range invalidation**.
#[derive(Debug)]
pub struct LeafInvalidation {
    tag: Translation,
    ranges: bool,
    run: Option<Run>,
}

impl LeafInvalidation {
    /// For a domain tagged `tag`, on an SMMU with range invalidation or not.
    pub const fn new(tag: Translation, ranges: bool) -> Self {
        Self { tag, ranges, run: None }
    }

    /// The domain whose leaves this collects.
    pub const fn tag(&self) -> Translation {
        self.tag
    }

    /// `leaf` was removed or narrowed: emit whatever commands are due.
    #[inline]
    pub fn add(&mut self, leaf: &Leaf, emit: &mut impl FnMut(Command)) {
        if !self.ranges {
            emit(self.tag.invalidate_leaf(leaf.iova));
            return;
        }
        let pages = leaf.size() >> PAGE_SHIFT;
        if let Some(run) = self.run.as_mut() {
            if run.level == leaf.level && run.iova + (run.pages << PAGE_SHIFT) == leaf.iova.0 {
                run.pages += pages;
                return;
            }
        }
        self.finish(emit);
        self.run = Some(Run { iova: leaf.iova.0, pages, level: leaf.level });
    }

    /// Emit the commands for the run still open, if any.
    #[inline]
    pub fn finish(&mut self, emit: &mut impl FnMut(Command)) {
        if let Some(run) = self.run.take() {
            split(self.tag, Iova(run.iova), run.pages, run.level, emit);
        }
    }
}
