//! Circular-queue index arithmetic (IHI 0070 3.5): a queue of 2^log2 entries is
//! indexed by PROD and CONS values whose low `log2` bits are the slot and whose next bit
//! is a wrap flag, so that full and empty can be told apart.

/// The geometry of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ring {
    /// log2 of the number of entries.
    pub log2: u32,
}

impl Ring {
    /// Entries in the queue.
    pub const fn entries(self) -> u32 {
        1 << self.log2
    }

    /// The slot an index points at.
    pub const fn slot(self, index: u32) -> u32 {
        index & (self.entries() - 1)
    }

    /// The wrap flag of an index.
    pub const fn wrap(self, index: u32) -> u32 {
        (index >> self.log2) & 1
    }

    /// The index after `index`.
    pub const fn next(self, index: u32) -> u32 {
        (index + 1) & ((self.entries() << 1) - 1)
    }

    /// Keep only the slot and wrap bits of a register value (dropping ERR, OVFLG...).
    pub const fn index(self, reg: u32) -> u32 {
        reg & ((self.entries() << 1) - 1)
    }

    /// Entries written by the producer and not yet consumed.
    pub const fn used(self, prod: u32, cons: u32) -> u32 {
        let (p, c) = (self.slot(prod), self.slot(cons));
        if self.wrap(prod) == self.wrap(cons) {
            p - c
        } else {
            self.entries() - c + p
        }
    }

    /// True if the queue holds no entry.
    pub const fn is_empty(self, prod: u32, cons: u32) -> bool {
        self.index(prod) == self.index(cons)
    }

    /// True if the producer may not write.
    pub const fn is_full(self, prod: u32, cons: u32) -> bool {
        self.slot(prod) == self.slot(cons) && self.wrap(prod) != self.wrap(cons)
    }

    /// True if the entry written at index `target` (the producer's index before it wrote
    /// it) has been consumed, given the consumer's index now: `cons` has moved past it.
    /// Valid while the producer has not lapped `target` (at most one queue length ahead).
    pub const fn consumed(self, target: u32, cons: u32) -> bool {
        // Distance from target to cons, in the 2^(log2+1) index space.
        let span = self.entries() << 1;
        let dist = (self.index(cons).wrapping_sub(self.index(target))) & (span - 1);
        dist >= 1 && dist <= self.entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_full_empty() {
        let r = Ring { log2: 2 };
        assert!(r.is_empty(0, 0));
        assert_eq!(r.next(3), 4); // slot 0, wrap 1
        assert_eq!(r.next(7), 0);
        assert!(r.is_full(4, 0));
        assert_eq!(r.used(4, 0), 4);
        assert_eq!(r.used(6, 5), 1); // same wrap
        assert_eq!(r.used(1, 6), 3); // prod slot 1 wrap 0, cons slot 2 wrap 1
        assert!(r.consumed(3, 4));
        assert!(!r.consumed(3, 3));
        assert!(r.consumed(7, 0));
        assert_eq!(r.index(0x8100_0005), 5);
    }
}
