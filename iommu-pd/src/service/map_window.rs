//! The memory a MAP may take from a capability, as a type: what MAP's range check rests
//! on about the capability itself is checked once, where the capability is looked up
//! (`Service::held`, whose result a client's next MAP calls and a queue batch keep),
//! rather than on every MAP.

use super::PAGE;

/// The memory a MAP may take whole pages of: `len` bytes from `pa`, where `pa` is
/// page-aligned and `pa + len` is at most 2^64; or none (`len` 0) when the capability's
/// memory does not start on a page (a region placed off a page boundary, which the
/// service accepts and maps no page of). The fields are this module's, so `of` makes
/// every one. MAP's range check rests on it: an offset that is whole pages lands on a
/// page-aligned address, and one whose range ends within `len` does not wrap (`at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MapWindow {
    pa: u64,
    len: u64,
}

impl MapWindow {
    /// No memory.
    pub(super) const NONE: MapWindow = MapWindow { pa: 0, len: 0 };

    /// The window of a capability's `len` bytes from `pa`: none of them if `pa` is not
    /// page-aligned, else those below 2^64 (all, in any real system).
    pub(super) fn of(pa: u64, len: u64) -> MapWindow {
        if pa % PAGE != 0 {
            return MapWindow { pa, len: 0 };
        }
        // (Past 2^64 only if `pa` is not 0: then 2^64 - `pa`, whole pages, fits.)
        let len = if pa.checked_add(len).is_some() { len } else { pa.wrapping_neg() };
        MapWindow { pa, len }
    }

    /// Its length in bytes.
    #[inline(always)]
    pub(super) fn len(self) -> u64 {
        self.len
    }

    /// The address `offset` bytes in, for an `offset` below `len` (the start of a range
    /// the caller found inside it): it does not wrap (`pa + len` is at most 2^64), and it
    /// is page-aligned if `offset` is whole pages.
    #[inline(always)]
    pub(super) fn at(self, offset: u64) -> u64 {
        debug_assert!(offset < self.len);
        self.pa + offset
    }
}
