//! Bit fields of the 64-bit words that make up in-memory structures (STE, CD, commands,
//! event records, translation-table descriptors). A `Field` is the spec's `[hi:lo]`.

/// Bits `[hi:lo]` of a 64-bit word, as the specification writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Most significant bit, inclusive.
    pub hi: u32,
    /// Least significant bit.
    pub lo: u32,
}

impl Field {
    /// The field `[hi:lo]`.
    pub const fn new(hi: u32, lo: u32) -> Self {
        assert!(hi >= lo && hi < 64);
        Self { hi, lo }
    }

    /// A one-bit field.
    pub const fn bit(n: u32) -> Self {
        Self::new(n, n)
    }

    /// The bits of the field, in place.
    pub const fn mask(self) -> u64 {
        let width = self.hi - self.lo + 1;
        let ones = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
        ones << self.lo
    }

    /// `value` shifted into the field. Bits of `value` that do not fit are dropped, so
    /// callers check ranges before encoding (see the builders).
    pub const fn prep(self, value: u64) -> u64 {
        (value << self.lo) & self.mask()
    }

    /// The field's value, shifted down.
    pub const fn get(self, word: u64) -> u64 {
        (word & self.mask()) >> self.lo
    }

    /// `word` with the field replaced by `value`.
    pub const fn set(self, word: u64, value: u64) -> u64 {
        (word & !self.mask()) | self.prep(value)
    }

    /// True if `value` fits in the field without truncation.
    pub const fn fits(self, value: u64) -> bool {
        self.prep(value) >> self.lo == value
    }
}

/// An address field that keeps the address's own bit positions (`ADDR[hi:lo]` stored in
/// bits `[hi:lo]`), as STE.S1ContextPtr, CD.TTB0 and descriptor output addresses are.
pub const fn addr_bits(field: Field, addr: u64) -> u64 {
    addr & field.mask()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_round_trip() {
        let f = Field::new(63, 48);
        assert_eq!(f.mask(), 0xffff_0000_0000_0000);
        assert_eq!(f.prep(0x1234), 0x1234_0000_0000_0000);
        assert_eq!(f.get(0x1234_0000_0000_0000), 0x1234);
        assert!(f.fits(0xffff));
        assert!(!f.fits(0x1_0000));
        assert_eq!(Field::new(63, 0).mask(), u64::MAX);
        assert_eq!(Field::bit(31).set(0, 1), 0x8000_0000);
    }
}
