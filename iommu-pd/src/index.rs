//! The mapping table's index: for each device, a B+ tree of its mapping slots keyed by
//! IOVA, its nodes taken from two fixed pools (leaves and inner nodes) that all devices
//! share. Lookup, the neighbours of an address, the n-th mapping, insertion and removal
//! walk the tree's height, which is 1 up to 16 mappings and 5 at 16,384; nothing depends on
//! how much of the pools is unused. Two cases a driver's MAP and UNMAP hit most walk
//! nothing: a tree of one leaf keeps it in no order (an insertion at its end, a removal
//! fills the hole with the last entry), and a deeper tree's root keeps its rightmost leaf
//! (the finger), where an append and a removal that leaves it half full are served.
//!
//! Why a B+ tree: a request's cost should not grow with the mappings a device has. A
//! binary tree's depth (an AVL tree's was 14 at 16,384 mappings, each level rebalanced on
//! the way back) grows the cost by a level per doubling; sixteen keys to a node take four
//! doublings per level, and a node's keys are contiguous, so a search reads a line or two
//! per level. Every node but a root is at least half full, which bounds the pools a table
//! of mapping slots needs (`leaves_for`, `inners_for`) whatever IOVAs a hostile client
//! picks; an insertion checks the pools first and changes nothing when they are short.

/// No node, no slot.
pub const NIL: u16 = u16::MAX;

/// Most slots an index can hold (slot numbers are 16-bit, and `NIL` is one of them).
pub const MAX_SLOTS: usize = NIL as usize;

/// Keys (mappings) in a leaf.
const LEAF: usize = 16;
/// Children of an inner node.
const FAN: usize = 16;
/// Fewest keys in a leaf that is not a root, and fewest children of such an inner node.
const MIN_LEAF: usize = LEAF / 2;
const MIN_FAN: usize = FAN / 2;
/// Inner levels a tree of `MAX_SLOTS` keys can have: leaves hold 8 or more keys, so at
/// most 8,191 of them, under 8 or more children per inner node: 1,023, 127, 15, 1.
const MAX_INNER_LEVELS: usize = 5;

/// A leaf: up to 16 keys, each with its mapping slot; slots past the leaf's length are
/// `NIL`. A leaf under an inner node keeps its keys in increasing order; a root leaf (a
/// tree of up to 16 keys) keeps them in the order they came, less the ones removed, so
/// that an insertion writes at its end and a removal moves its last entry into the hole,
/// with no scan for a place and no shift (a driver that maps each request's buffer keeps
/// a few mappings and replaces them all the time). Its ordered reads scan it or sort a
/// copy (at most 16 entries), and it is sorted in place before it splits. (A leaf's
/// length is known on the way down: its parent's count for it, or the tree's length for a
/// root leaf, so none is stored: 160 bytes.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    keys: [u64; LEAF],
    slots: [u16; LEAF],
}

impl Leaf {
    /// Move entries `at..len` (`len < LEAF`) one place right, to make room at `at`. A loop,
    /// not `copy_within`: the shift is a few entries of one node, which cost less to move
    /// than two calls to `memmove` (keys, then slots) do to make. Two entries a step (on
    /// x86-64 a 16-byte load and store of keys, one 4-byte of slots): about half the
    /// instructions of one a step (four a step saved little more).
    #[inline(always)]
    fn open_gap(&mut self, at: usize, len: usize) {
        let mut j = len.min(LEAF - 1);
        while j >= at + 2 {
            let (k, s) = ([self.keys[j - 2], self.keys[j - 1]], [self.slots[j - 2], self.slots[j - 1]]);
            self.keys[j - 1..j + 1].copy_from_slice(&k);
            self.slots[j - 1..j + 1].copy_from_slice(&s);
            j -= 2;
        }
        if j > at {
            self.keys[j] = self.keys[j - 1];
            self.slots[j] = self.slots[j - 1];
        }
    }

    /// Move entries `at + 1..len` one place left, over the entry at `at` (as `open_gap`).
    #[inline(always)]
    fn close_gap(&mut self, at: usize, len: usize) {
        let len = len.min(LEAF);
        let mut j = at + 1;
        while j + 1 < len {
            let (k, s) = ([self.keys[j], self.keys[j + 1]], [self.slots[j], self.slots[j + 1]]);
            self.keys[j - 1..j + 1].copy_from_slice(&k);
            self.slots[j - 1..j + 1].copy_from_slice(&s);
            j += 2;
        }
        if j < len {
            self.keys[j - 1] = self.keys[j];
            self.slots[j - 1] = self.slots[j];
        }
    }
}

impl Leaf {
    /// Where `key` is among the first `len` entries of a root leaf (in no order).
    #[inline(always)]
    fn position(&self, len: usize, key: u64) -> Option<usize> {
        self.keys[..len.min(LEAF)].iter().position(|&k| k == key)
    }

    /// The first `len` entries sorted by key (insertion sort: at most 16, distinct). A
    /// leaf filled in increasing order (how the allocator fills a window) is left as it
    /// is after one look, which costs less than the sort's loop finding nothing to move.
    fn sort(&mut self, len: usize) {
        let len = len.min(LEAF);
        if (1..len).all(|i| self.keys[i - 1] < self.keys[i]) {
            return;
        }
        for i in 1..len {
            let (k, s) = (self.keys[i], self.slots[i]);
            let mut j = i;
            while j > 0 && self.keys[j - 1] > k {
                self.keys[j] = self.keys[j - 1];
                self.slots[j] = self.slots[j - 1];
                j -= 1;
            }
            (self.keys[j], self.slots[j]) = (k, s);
        }
    }

    /// A copy of the first `len` entries of a root leaf, sorted: for its ordered reads.
    fn sorted(&self, len: usize) -> Leaf {
        let mut copy = *self;
        copy.sort(len);
        copy
    }

    /// The greatest of the first `len` entries (`len > 0`) of a root leaf, and its slot.
    fn greatest(&self, len: usize) -> (u64, u16) {
        let len = len.clamp(1, LEAF);
        let mut at = 0;
        for i in 1..len {
            if self.keys[i] > self.keys[at] {
                at = i;
            }
        }
        (self.keys[at], self.slots[at])
    }
}

impl Default for Leaf {
    fn default() -> Self {
        Leaf { keys: [0; LEAF], slots: [NIL; LEAF] }
    }
}

/// An inner node: `len` children; every key under `children[i]` is at least `keys[i - 1]`
/// and below `keys[i]`; `counts[i]` keys are under `children[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inner {
    keys: [u64; FAN - 1],
    children: [u16; FAN],
    counts: [u16; FAN],
    len: u8,
}

impl Default for Inner {
    fn default() -> Self {
        Inner { keys: [0; FAN - 1], children: [NIL; FAN], counts: [0; FAN], len: 0 }
    }
}

/// A device's tree: its root node, how many inner levels are above the leaves, how many
/// keys it holds, and its greatest key with that key's slot. The greatest key is kept
/// because the service's IOVA allocator places a new mapping above the highest one: that
/// makes `last` free and such an insertion an append at the rightmost leaf, no search.
///
/// # Invariants (the finger)
/// In a tree with inner levels, `tail` is the rightmost leaf and `tail_len` its length,
/// so that an append writes there, and a removal from it that leaves it at least half
/// full takes from there, without walking down; each inner node on the rightmost path
/// counts `owed` keys fewer under its last child than it holds (the appends less those
/// removals since the last walk down that path, at most 16 either way), which every
/// other insertion and removal adds first (`settle`), but a split at the rightmost
/// leaf's end, which adds them on its own walk (`append_split`). A reader that reaches
/// `tail` takes its length from `tail_len`. In a root leaf: `tail` is `NIL`, `tail_len`
/// and `owed` 0.
/// (All three fit in the padding the other fields leave: 24 bytes, as before.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    node: u16,
    height: u8,
    len: u32,
    last_slot: u16,
    last_key: u64,
    tail: u16,
    tail_len: u8,
    owed: i8,
}

impl Default for Root {
    fn default() -> Self {
        Root { node: NIL, height: 0, len: 0, last_slot: NIL, last_key: 0, tail: NIL, tail_len: 0, owed: 0 }
    }
}

/// The rightmost leaf and its length, as insertions and removals below the root keep it
/// (`Root::tail`, `Root::tail_len`).
struct Tail {
    leaf: u16,
    len: u8,
}

impl Root {
    /// The length of leaf `n`, which its parent counts as `counted`: the rightmost leaf's
    /// is `tail_len` (its parent may be owed appends).
    #[inline(always)]
    fn leaf_len(&self, n: u16, counted: usize) -> usize {
        if n == self.tail {
            self.tail_len as usize
        } else {
            counted
        }
    }

    /// Keys in the tree.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True if the tree holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Leaves enough for `slots` keys spread over `trees` trees in any way: every leaf but a
/// root holds at least 8 keys, so the trees never use more than `slots / 8 + trees`; and
/// one more, because an insertion asks for a spare leaf before it knows whether it splits.
pub const fn leaves_for(slots: usize, trees: usize) -> usize {
    slots / MIN_LEAF + trees + 1
}

/// Inner nodes enough for `slots` keys over `trees` trees: each level has at most an
/// eighth of the nodes of the level below, plus a root per tree; and the spares an
/// insertion asks for (one per level and a new root).
pub const fn inners_for(slots: usize, trees: usize) -> usize {
    let mut below = slots / MIN_LEAF;
    let mut total = MAX_INNER_LEVELS + 1;
    let mut level = 0;
    while level < MAX_INNER_LEVELS {
        below /= MIN_FAN;
        total += below + trees;
        level += 1;
    }
    total
}

/// How many of the first `n` of `keys` (in increasing order) are at most `key`. A linear
/// scan, as Rust's own `BTreeMap` does: on 16 keys it costs about what a binary search
/// does, and its one unpredictable branch is where it stops.
#[inline]
fn count_le<const N: usize>(keys: &[u64; N], n: usize, key: u64) -> usize {
    keys[..n.min(N)].iter().position(|&k| k > key).unwrap_or(n.min(N))
}

/// How many of the first `n` of `keys` are below `key`. When the last of them is not
/// below it, the scan stops at or before it whatever `n` is, so it runs over the whole
/// array with no test of `n` per key (on the service's paths, a removal and an insertion
/// below the greatest key, it always does).
#[inline(always)]
fn count_lt<const N: usize>(keys: &[u64; N], n: usize, key: u64) -> usize {
    let n = n.min(N);
    if n == 0 || keys[n - 1] < key {
        return n;
    }
    keys.iter().position(|&k| k >= key).unwrap_or(n)
}

/// Two distinct nodes of a pool, both mutable.
#[inline(always)]
fn two<T>(pool: &mut [T], a: u16, b: u16) -> (&mut T, &mut T) {
    let (a, b) = (a as usize, b as usize);
    debug_assert_ne!(a, b);
    if a < b {
        let (lo, hi) = pool.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = pool.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}

/// A split below: the new right sibling, the key at which it starts, and the keys now
/// under the left and the right node.
struct Split {
    key: u64,
    right: u16,
    left_count: u16,
    right_count: u16,
}

/// The pools the trees' nodes come from, with their free lists (threaded through the
/// first slot or child of each free node).
#[derive(Debug)]
pub struct Index<'a> {
    leaves: &'a mut [Leaf],
    inners: &'a mut [Inner],
    free_leaf: u16,
    free_inner: u16,
    spare_leaves: usize,
    spare_inners: usize,
}

/// What `Index::take` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The key is not in the tree.
    Missing,
    /// The key's slot was not allowed: it stays.
    Kept(u16),
    /// The key is out of the tree; its slot.
    Taken(u16),
}

/// What `Index::take` asks at the key's leaf, before anything changes: may the key's
/// slot go? Any `FnOnce(u16) -> bool` answers it; a caller on a hot path implements it
/// with an `#[inline(always)]` method instead, which the descent then holds inline (a
/// closure's body is a function of its own, which the compiler may leave as a call, as
/// it did the service's queued UNMAP's).
pub trait Gate {
    /// Whether `slot` may leave the tree.
    fn allow(self, slot: u16) -> bool;
}

impl<F: FnOnce(u16) -> bool> Gate for F {
    #[inline(always)]
    fn allow(self, slot: u16) -> bool {
        self(slot)
    }
}

/// The pools cannot take an insertion: nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<'a> Index<'a> {
    /// Trees over these pools, all nodes free (at most `MAX_SLOTS` of each are used).
    pub fn new(leaves: &'a mut [Leaf], inners: &'a mut [Inner]) -> Self {
        let (nl, ni) = (leaves.len().min(MAX_SLOTS), inners.len().min(MAX_SLOTS));
        for (i, l) in leaves.iter_mut().enumerate().take(nl) {
            *l = Leaf::default();
            l.slots[0] = if i + 1 < nl { (i + 1) as u16 } else { NIL };
        }
        for (i, n) in inners.iter_mut().enumerate().take(ni) {
            *n = Inner::default();
            n.children[0] = if i + 1 < ni { (i + 1) as u16 } else { NIL };
        }
        let head = |n: usize| if n == 0 { NIL } else { 0 };
        Index { free_leaf: head(nl), free_inner: head(ni), spare_leaves: nl, spare_inners: ni, leaves, inners }
    }

    /// Nodes of each pool not in use: (leaves, inner nodes).
    pub fn spare(&self) -> (usize, usize) {
        (self.spare_leaves, self.spare_inners)
    }

    /// A free leaf, empty: `give_leaf` emptied it, but for the free-list link.
    fn take_leaf(&mut self) -> u16 {
        let l = self.free_leaf;
        self.free_leaf = self.leaves[l as usize].slots[0];
        self.leaves[l as usize].slots[0] = NIL;
        self.spare_leaves -= 1;
        l
    }

    fn give_leaf(&mut self, l: u16) {
        self.leaves[l as usize] = Leaf::default();
        self.leaves[l as usize].slots[0] = self.free_leaf;
        self.free_leaf = l;
        self.spare_leaves += 1;
    }

    /// A free inner node, empty: `give_inner` emptied it, but for the free-list link.
    fn take_inner(&mut self) -> u16 {
        let n = self.free_inner;
        self.free_inner = self.inners[n as usize].children[0];
        self.inners[n as usize].children[0] = NIL;
        self.spare_inners -= 1;
        n
    }

    fn give_inner(&mut self, n: u16) {
        self.inners[n as usize] = Inner::default();
        self.inners[n as usize].children[0] = self.free_inner;
        self.free_inner = n;
        self.spare_inners += 1;
    }

    /// Do the pools have the nodes an insertion into `root`'s tree may need (a split at
    /// every level and a new root)?
    pub fn can_insert(&self, root: &Root) -> bool {
        self.spare_leaves >= 1 && self.spare_inners > root.height as usize && root.len < MAX_SLOTS as u32
    }

    /// Add `key` (not already in the tree) with its slot. `Full`, changing nothing, if
    /// the pools might not have the nodes a split all the way up needs.
    pub fn insert(&mut self, root: &mut Root, key: u64, slot: u16) -> Result<(), Full> {
        if !self.can_insert(root) {
            return Err(Full);
        }
        self.insert_with_room(root, key, slot);
        Ok(())
    }

    /// `insert`, for a caller that asked `can_insert` and has changed nothing in the
    /// pools since (the service's MAP: its checks ask, then the IOMMU maps, then this).
    /// Inlined: an insertion into a root leaf with room (a device with up to 16 mappings)
    /// and an append into a rightmost leaf with room (how the allocator fills a window,
    /// most MAPs) are a few moves, and cost less than the call of the general insertion
    /// (`insert_searched`) would.
    #[inline(always)]
    pub fn insert_with_room(&mut self, root: &mut Root, key: u64, slot: u16) {
        debug_assert!(self.can_insert(root));
        if root.node != NIL {
            if root.height == 0 {
                let len = root.len as usize;
                if len < LEAF {
                    // At the end of the root leaf, which keeps no order: no scan, no shift.
                    let leaf = &mut self.leaves[root.node as usize];
                    leaf.keys[len] = key;
                    leaf.slots[len] = slot;
                    root.len += 1;
                    if key > root.last_key {
                        (root.last_key, root.last_slot) = (key, slot);
                    }
                    return;
                }
                // Full: split at its end if `key` is above every key in it.
                if key > root.last_key && self.append_split(root, key, slot) {
                    return;
                }
            } else if key > root.last_key {
                if (root.tail_len as usize) < LEAF {
                    // Above every key, in the rightmost leaf with room (how the allocator
                    // fills a window, most MAPs): at its end, no walk down; its ancestors'
                    // counts are owed it until the next other change (`settle`).
                    let at = root.tail_len as usize;
                    let leaf = &mut self.leaves[root.tail as usize];
                    leaf.keys[at] = key;
                    leaf.slots[at] = slot;
                    root.tail_len += 1;
                    root.owed += 1;
                    root.len += 1;
                    (root.last_key, root.last_slot) = (key, slot);
                    return;
                }
                // The rightmost leaf is full: split at its end, unless its parent is full.
                if self.append_split(root, key, slot) {
                    return;
                }
            }
        }
        self.insert_searched(root, key, slot);
    }

    /// `insert_with_room` where it cannot insert in place, nor split at the end
    /// (`append_split`): an empty tree, a key below the greatest (into a full root leaf:
    /// sorted here, then split), or a full rightmost leaf whose parent is full.
    #[inline(never)]
    fn insert_searched(&mut self, root: &mut Root, key: u64, slot: u16) {
        if root.node == NIL {
            let l = self.take_leaf();
            self.leaves[l as usize].keys[0] = key;
            self.leaves[l as usize].slots[0] = slot;
            *root = Root { len: 1, node: l, last_slot: slot, last_key: key, ..Root::default() };
            return;
        }
        self.settle(root);
        let append = key > root.last_key;
        let mut tail = Tail { leaf: root.tail, len: root.tail_len };
        let split = if root.height == 0 {
            // A root leaf keeps no order; the two it splits into do.
            self.leaves[root.node as usize].sort(root.len as usize);
            self.leaf_insert(root.node, root.len as usize, key, slot, append)
        } else {
            self.inner_insert(root.node, root.height, key, slot, append, &mut tail)
        };
        (root.tail, root.tail_len) = (tail.leaf, tail.len);
        root.len += 1;
        if append {
            (root.last_key, root.last_slot) = (key, slot);
        }
        if let Some(s) = split {
            let n = self.take_inner();
            let top = &mut self.inners[n as usize];
            top.keys[0] = s.key;
            top.children[..2].copy_from_slice(&[root.node, s.right]);
            top.counts[..2].copy_from_slice(&[s.left_count, s.right_count]);
            top.len = 2;
            root.node = n;
            root.height += 1;
            if root.height == 1 {
                // A root leaf split: the right one is the rightmost.
                (root.tail, root.tail_len) = (s.right, s.right_count as u8);
            }
        }
    }

    /// Add the counts owed to the rightmost path (`Root::owed`), before any change but an
    /// append at the rightmost leaf. (Out of line: after a run of appends, once.)
    #[inline(always)]
    fn settle(&mut self, root: &mut Root) {
        if root.owed != 0 {
            self.settle_owed(root);
        }
    }

    #[inline(never)]
    fn settle_owed(&mut self, root: &mut Root) {
        let mut n = root.node;
        for _ in 0..root.height {
            let node = &mut self.inners[n as usize];
            let last = node.len as usize - 1;
            node.counts[last] = node.counts[last].wrapping_add_signed(root.owed.into());
            n = node.children[last];
        }
        root.owed = 0;
    }

    /// Put `key`, above every key of the tree, after a full rightmost leaf whose parent has
    /// room, or after a full root leaf: the leaf's upper 8 entries and `key` go to a new
    /// leaf at the parent's end, or under a new root beside it (the 8/9 split `leaf_split`
    /// makes at the end of a leaf, without the general insertion's search, recursion and
    /// shifts). `false`, changing nothing, if the leaf is not full or its parent is (the
    /// general insertion splits upwards). The counts owed the rightmost path
    /// (`Root::owed`) are paid on the same walk (the parent's counts for the two leaves
    /// are set outright), so no `settle` comes first.
    #[cold]
    #[inline(never)]
    fn append_split(&mut self, root: &mut Root, key: u64, slot: u16) -> bool {
        let r = if root.height == 0 {
            if root.len as usize != LEAF {
                return false;
            }
            // A root leaf keeps no order; the two it splits into do.
            self.leaves[root.node as usize].sort(LEAF);
            let (r, start) = self.split_end(root.node, key, slot);
            let n = self.take_inner();
            let top = &mut self.inners[n as usize];
            top.keys[0] = start;
            top.children[..2].copy_from_slice(&[root.node, r]);
            top.counts[..2].copy_from_slice(&[MIN_LEAF as u16, (LEAF - MIN_LEAF + 1) as u16]);
            top.len = 2;
            (root.node, root.height) = (n, 1);
            r
        } else {
            if root.tail_len as usize != LEAF {
                return false;
            }
            // Down to the rightmost leaf's parent.
            let mut n = root.node;
            for _ in 1..root.height {
                let node = &self.inners[n as usize];
                n = node.children[node.len as usize - 1];
            }
            let parent = &self.inners[n as usize];
            let at = parent.len as usize - 1;
            if parent.len as usize == FAN {
                return false;
            }
            let (r, start) = self.split_end(parent.children[at], key, slot);
            let parent = &mut self.inners[n as usize];
            parent.keys[at] = start;
            parent.children[at + 1] = r;
            parent.counts[at] = MIN_LEAF as u16;
            parent.counts[at + 1] = (LEAF - MIN_LEAF + 1) as u16;
            parent.len += 1;
            // The key, and what they were owed, counted under each ancestor above the
            // parent.
            let add = i16::from(root.owed) + 1;
            let mut n = root.node;
            for _ in 1..root.height {
                let node = &mut self.inners[n as usize];
                let last = node.len as usize - 1;
                node.counts[last] = node.counts[last].wrapping_add_signed(add);
                n = node.children[last];
            }
            r
        };
        (root.tail, root.tail_len, root.owed) = (r, (LEAF - MIN_LEAF + 1) as u8, 0);
        root.len += 1;
        (root.last_key, root.last_slot) = (key, slot);
        true
    }

    /// Leaf `l` (full, in order) split at its end: its upper 8 entries and `key`, above
    /// them all, go to a new leaf; returns it and its first key.
    #[inline(always)]
    fn split_end(&mut self, l: u16, key: u64, slot: u16) -> (u16, u64) {
        let r = self.take_leaf();
        let (left, right) = two(self.leaves, l, r);
        let moved = LEAF - MIN_LEAF;
        right.keys[..moved].copy_from_slice(&left.keys[MIN_LEAF..]);
        right.slots[..moved].copy_from_slice(&left.slots[MIN_LEAF..]);
        right.keys[moved] = key;
        right.slots[moved] = slot;
        left.slots[MIN_LEAF..].fill(NIL);
        (r, right.keys[0])
    }

    /// Insert into leaf `l` of `len` keys; `append`: `key` is above every key of the tree.
    /// (Inlined: a leaf with room is the usual case, a few moves; a split is apart.)
    #[inline(always)]
    fn leaf_insert(&mut self, l: u16, len: usize, key: u64, slot: u16, append: bool) -> Option<Split> {
        let leaf = &mut self.leaves[l as usize];
        let at = if append { len } else { count_lt(&leaf.keys, len, key) };
        if len < LEAF {
            // (An append moves nothing: no call to copy nothing.)
            leaf.open_gap(at, len);
            leaf.keys[at] = key;
            leaf.slots[at] = slot;
            return None;
        }
        Some(self.leaf_split(l, at, key, slot))
    }

    /// Insert into the full leaf `l` at `at`: the 17 entries go 8 to this leaf and 9 to a
    /// new one on its right, moved in place (no 17-entry copy).
    #[inline(never)]
    fn leaf_split(&mut self, l: u16, at: usize, key: u64, slot: u16) -> Split {
        let r = self.take_leaf();
        let (left, right) = two(self.leaves, l, r);
        let rn = LEAF + 1 - MIN_LEAF;
        if at < MIN_LEAF {
            // The new key stays on the left: the right takes the last 9.
            right.keys[..rn].copy_from_slice(&left.keys[MIN_LEAF - 1..]);
            right.slots[..rn].copy_from_slice(&left.slots[MIN_LEAF - 1..]);
            left.keys.copy_within(at..MIN_LEAF - 1, at + 1);
            left.slots.copy_within(at..MIN_LEAF - 1, at + 1);
            left.keys[at] = key;
            left.slots[at] = slot;
        } else {
            let k = at - MIN_LEAF;
            right.keys[..k].copy_from_slice(&left.keys[MIN_LEAF..at]);
            right.slots[..k].copy_from_slice(&left.slots[MIN_LEAF..at]);
            right.keys[k] = key;
            right.slots[k] = slot;
            right.keys[k + 1..rn].copy_from_slice(&left.keys[at..]);
            right.slots[k + 1..rn].copy_from_slice(&left.slots[at..]);
        }
        left.slots[MIN_LEAF..].fill(NIL);
        Split { key: right.keys[0], right: r, left_count: MIN_LEAF as u16, right_count: rn as u16 }
    }

    /// The child of inner node `n` whose range holds `key`.
    fn child_at(&self, n: u16, key: u64) -> usize {
        let node = &self.inners[n as usize];
        count_le(&node.keys, node.len as usize - 1, key)
    }

    /// Insert below inner node `n`; `tail`, the rightmost leaf and its length, kept.
    fn inner_insert(
        &mut self,
        n: u16,
        height: u8,
        key: u64,
        slot: u16,
        append: bool,
        tail: &mut Tail,
    ) -> Option<Split> {
        let at = if append { self.inners[n as usize].len as usize - 1 } else { self.child_at(n, key) };
        let (child, count) = {
            let node = &self.inners[n as usize];
            (node.children[at], node.counts[at])
        };
        let split = if height == 1 {
            let split = self.leaf_insert(child, count as usize, key, slot, append);
            if child == tail.leaf {
                // The rightmost leaf took the key, or split and its right half is.
                *tail = match &split {
                    None => Tail { leaf: child, len: tail.len + 1 },
                    Some(s) => Tail { leaf: s.right, len: s.right_count as u8 },
                };
            }
            split
        } else {
            self.inner_insert(child, height - 1, key, slot, append, tail)
        };
        let node = &mut self.inners[n as usize];
        node.counts[at] += 1;
        let s = split?;
        node.counts[at] = s.left_count;
        let len = node.len as usize;
        if len < FAN {
            if at + 1 < len {
                node.keys.copy_within(at..len - 1, at + 1);
                node.children.copy_within(at + 1..len, at + 2);
                node.counts.copy_within(at + 1..len, at + 2);
            }
            node.keys[at] = s.key;
            node.children[at + 1] = s.right;
            node.counts[at + 1] = s.right_count;
            node.len += 1;
            return None;
        }
        // Full: 17 children and 16 keys. The left keeps 8 children, the right takes 9, and
        // the key between them goes up.
        let (mut keys, mut children, mut counts) = ([0u64; FAN], [NIL; FAN + 1], [0u16; FAN + 1]);
        keys[..at].copy_from_slice(&node.keys[..at]);
        keys[at] = s.key;
        keys[at + 1..].copy_from_slice(&node.keys[at..]);
        children[..=at].copy_from_slice(&node.children[..=at]);
        children[at + 1] = s.right;
        children[at + 2..].copy_from_slice(&node.children[at + 1..]);
        counts[..=at].copy_from_slice(&node.counts[..=at]);
        counts[at + 1] = s.right_count;
        counts[at + 2..].copy_from_slice(&node.counts[at + 1..]);
        let r = self.take_inner();
        let up = keys[MIN_FAN - 1];
        let left = &mut self.inners[n as usize];
        *left = Inner::default();
        left.keys[..MIN_FAN - 1].copy_from_slice(&keys[..MIN_FAN - 1]);
        left.children[..MIN_FAN].copy_from_slice(&children[..MIN_FAN]);
        left.counts[..MIN_FAN].copy_from_slice(&counts[..MIN_FAN]);
        left.len = MIN_FAN as u8;
        let rn = FAN + 1 - MIN_FAN;
        let right = &mut self.inners[r as usize];
        right.keys[..rn - 1].copy_from_slice(&keys[MIN_FAN..]);
        right.children[..rn].copy_from_slice(&children[MIN_FAN..]);
        right.counts[..rn].copy_from_slice(&counts[MIN_FAN..]);
        right.len = rn as u8;
        let sum = |c: &[u16]| c.iter().map(|&c| c as u32).sum::<u32>() as u16;
        Some(Split { key: up, right: r, left_count: sum(&counts[..MIN_FAN]), right_count: sum(&counts[MIN_FAN..]) })
    }

    /// Take `key` out of the tree; its slot, or `None` if it was not there.
    pub fn remove(&mut self, root: &mut Root, key: u64) -> Option<u16> {
        match self.take(root, key, |_| true) {
            Take::Taken(slot) => Some(slot),
            Take::Missing | Take::Kept(_) => None,
        }
    }

    /// Take `key` out of the tree if `allow` allows its slot: a lookup and a removal in
    /// one descent. `allow` runs once, when the key is found and before anything changes;
    /// nothing changes unless the answer is `Taken`.
    ///
    /// A tree of one leaf (up to 16 mappings: a device whose buffers come and go, as a
    /// driver mapping each request's) is served inline, with no call: the key found by
    /// a scan for it, and the leaf's last entry moved into its place (a root leaf keeps
    /// no order); a deeper one by `take_deep`.
    #[inline(always)]
    pub fn take(&mut self, root: &mut Root, key: u64, allow: impl Gate) -> Take {
        if root.height != 0 || root.node == NIL {
            return self.take_deep(root, key, allow);
        }
        let len = root.len as usize;
        let leaf = &mut self.leaves[root.node as usize];
        let Some(at) = leaf.position(len, key) else { return Take::Missing };
        let slot = leaf.slots[at];
        if !allow.allow(slot) {
            return Take::Kept(slot);
        }
        let last = len - 1;
        (leaf.keys[at], leaf.slots[at]) = (leaf.keys[last], leaf.slots[last]);
        leaf.slots[last] = NIL;
        root.len -= 1;
        if root.len == 0 {
            self.give_leaf(root.node);
            *root = Root::default();
        } else if key == root.last_key {
            self.root_leaf_greatest(root);
        }
        Take::Taken(slot)
    }

    /// A root leaf lost its greatest key: find the one left (a scan; out of line, since
    /// a driver unmapping oldest first seldom takes the greatest).
    #[inline(never)]
    fn root_leaf_greatest(&self, root: &mut Root) {
        (root.last_key, root.last_slot) = self.leaves[root.node as usize].greatest(root.len as usize);
    }

    /// `take` where the tree is empty or has inner levels (`take` serves a root leaf).
    #[inline(never)]
    fn take_deep(&mut self, root: &mut Root, key: u64, allow: impl Gate) -> Take {
        if root.node == NIL {
            return Take::Missing;
        }
        let len = root.tail_len as usize;
        let leaf = &mut self.leaves[root.tail as usize];
        if key >= leaf.keys[0] && len > MIN_LEAF {
            // In the rightmost leaf (every key from its first is), which stays at least
            // half full: taken there, no walk down; its ancestors' counts owe it.
            let taken = self.leaf_remove(root.tail, len, key, allow);
            if let Take::Taken(_) = taken {
                root.tail_len -= 1;
                root.owed -= 1;
                root.len -= 1;
                if key == root.last_key {
                    let leaf = &self.leaves[root.tail as usize];
                    (root.last_key, root.last_slot) = (leaf.keys[len - 2], leaf.slots[len - 2]);
                }
            }
            return taken;
        }
        // (The counts the appends owe, added whatever the answer: the same keys.)
        self.settle(root);
        let mut tail = Tail { leaf: root.tail, len: root.tail_len };
        let taken = self.inner_remove(root.node, root.height, key, allow, &mut tail);
        let Take::Taken(slot) = taken else { return taken };
        (root.tail, root.tail_len) = (tail.leaf, tail.len);
        root.len -= 1;
        // (A tree with inner levels keeps at least 8 keys after a removal.)
        if self.inners[root.node as usize].len == 1 {
            // (A leaf that becomes the root is sorted, which a root leaf may be.)
            let only = self.inners[root.node as usize].children[0];
            self.give_inner(root.node);
            root.node = only;
            root.height -= 1;
            if root.height == 0 {
                (root.tail, root.tail_len) = (NIL, 0);
            }
        }
        if key == root.last_key {
            (root.last_key, root.last_slot) = self.rightmost(root);
        }
        Take::Taken(slot)
    }

    #[inline(always)]
    fn leaf_remove(&mut self, l: u16, len: usize, key: u64, allow: impl Gate) -> Take {
        let leaf = &mut self.leaves[l as usize];
        let at = count_lt(&leaf.keys, len, key);
        if at == len || leaf.keys[at] != key {
            return Take::Missing;
        }
        let slot = leaf.slots[at];
        if !allow.allow(slot) {
            return Take::Kept(slot);
        }
        leaf.close_gap(at, len);
        leaf.slots[len - 1] = NIL;
        Take::Taken(slot)
    }

    /// Remove below inner node `n`; `tail`, the rightmost leaf and its length, kept.
    fn inner_remove(&mut self, n: u16, height: u8, key: u64, allow: impl Gate, tail: &mut Tail) -> Take {
        let at = self.child_at(n, key);
        let (child, count) = {
            let node = &self.inners[n as usize];
            (node.children[at], node.counts[at])
        };
        let taken = if height == 1 {
            self.leaf_remove(child, count as usize, key, allow)
        } else {
            self.inner_remove(child, height - 1, key, allow, tail)
        };
        let Take::Taken(slot) = taken else { return taken };
        // (A removal from the rightmost leaf comes down here only when it leaves the leaf
        // short: `rebalance_leaves` then sets the finger.)
        self.inners[n as usize].counts[at] -= 1;
        let short = if height == 1 {
            (self.inners[n as usize].counts[at] as usize) < MIN_LEAF
        } else {
            (self.inners[child as usize].len as usize) < MIN_FAN
        };
        if short {
            // An inner node has two children or more (a root that came down to one is
            // replaced by it), so the short child has a sibling.
            let a = at.min(self.inners[n as usize].len as usize - 2);
            if height == 1 {
                self.rebalance_leaves(n, a, tail);
            } else {
                self.rebalance_inners(n, a);
            }
        }
        Take::Taken(slot)
    }

    /// Children `a` and `a + 1` of `n` are leaves, one of them short: merge them if their
    /// keys fit in one, otherwise share their keys evenly. If the right one is the
    /// rightmost leaf (`tail`), the merged one is, or it keeps its share.
    fn rebalance_leaves(&mut self, n: u16, a: usize, tail: &mut Tail) {
        let node = &self.inners[n as usize];
        let (l, r) = (node.children[a], node.children[a + 1]);
        let (ln, rn) = (node.counts[a] as usize, node.counts[a + 1] as usize);
        let total = ln + rn;
        if r == tail.leaf {
            *tail = if total <= LEAF {
                Tail { leaf: l, len: total as u8 }
            } else {
                Tail { leaf: r, len: (total - total / 2) as u8 }
            };
        }
        let (left, right) = two(self.leaves, l, r);
        if total <= LEAF {
            left.keys[ln..total].copy_from_slice(&right.keys[..rn]);
            left.slots[ln..total].copy_from_slice(&right.slots[..rn]);
            self.give_leaf(r);
            self.remove_child(n, a + 1, total as u16);
            return;
        }
        // Share evenly, moving only what crosses over.
        let half = total / 2;
        if ln < half {
            let k = half - ln;
            left.keys[ln..half].copy_from_slice(&right.keys[..k]);
            left.slots[ln..half].copy_from_slice(&right.slots[..k]);
            right.keys.copy_within(k..rn, 0);
            right.slots.copy_within(k..rn, 0);
            right.slots[rn - k..rn].fill(NIL);
        } else {
            let k = ln - half;
            right.keys.copy_within(..rn, k);
            right.slots.copy_within(..rn, k);
            right.keys[..k].copy_from_slice(&left.keys[half..ln]);
            right.slots[..k].copy_from_slice(&left.slots[half..ln]);
            left.slots[half..ln].fill(NIL);
        }
        let first = right.keys[0];
        let node = &mut self.inners[n as usize];
        node.keys[a] = first;
        node.counts[a] = half as u16;
        node.counts[a + 1] = (total - half) as u16;
    }

    /// Children `a` and `a + 1` of `n` are inner nodes, one of them short: merge them
    /// (with the key between them) if their children fit in one, otherwise share them.
    fn rebalance_inners(&mut self, n: u16, a: usize) {
        let node = self.inners[n as usize];
        let (l, r) = (node.children[a], node.children[a + 1]);
        let (left, right) = (self.inners[l as usize], self.inners[r as usize]);
        let (ln, rn) = (left.len as usize, right.len as usize);
        let total = ln + rn;
        let (mut keys, mut children, mut counts) = ([0u64; 2 * FAN], [NIL; 2 * FAN], [0u16; 2 * FAN]);
        keys[..ln - 1].copy_from_slice(&left.keys[..ln - 1]);
        keys[ln - 1] = node.keys[a];
        keys[ln..total - 1].copy_from_slice(&right.keys[..rn - 1]);
        children[..ln].copy_from_slice(&left.children[..ln]);
        children[ln..total].copy_from_slice(&right.children[..rn]);
        counts[..ln].copy_from_slice(&left.counts[..ln]);
        counts[ln..total].copy_from_slice(&right.counts[..rn]);
        let sum = |c: &[u16]| c.iter().map(|&c| c as u32).sum::<u32>() as u16;
        let fill = |into: &mut Inner, keys: &[u64], children: &[u16], counts: &[u16]| {
            *into = Inner::default();
            into.keys[..keys.len()].copy_from_slice(keys);
            into.children[..children.len()].copy_from_slice(children);
            into.counts[..counts.len()].copy_from_slice(counts);
            into.len = children.len() as u8;
        };
        if total <= FAN {
            fill(&mut self.inners[l as usize], &keys[..total - 1], &children[..total], &counts[..total]);
            self.give_inner(r);
            self.remove_child(n, a + 1, sum(&counts[..total]));
            return;
        }
        let half = total / 2;
        fill(&mut self.inners[l as usize], &keys[..half - 1], &children[..half], &counts[..half]);
        fill(&mut self.inners[r as usize], &keys[half..total - 1], &children[half..total], &counts[half..total]);
        let node = &mut self.inners[n as usize];
        node.keys[a] = keys[half - 1];
        node.counts[a] = sum(&counts[..half]);
        node.counts[a + 1] = sum(&counts[half..total]);
    }

    /// Drop child `at` (merged into child `at - 1`, which now holds `merged` keys) and
    /// the key before it from `n`.
    fn remove_child(&mut self, n: u16, at: usize, merged: u16) {
        let node = &mut self.inners[n as usize];
        let len = node.len as usize;
        node.keys.copy_within(at..len - 1, at - 1);
        node.children.copy_within(at + 1..len, at);
        node.counts.copy_within(at + 1..len, at);
        node.children[len - 1] = NIL;
        node.counts[len - 1] = 0;
        node.counts[at - 1] = merged;
        node.len -= 1;
    }

    /// The slot of `key`, if it is in the tree.
    pub fn find(&self, root: &Root, key: u64) -> Option<u16> {
        let (l, len) = self.leaf_for(root, key)?;
        let leaf = &self.leaves[l as usize];
        if root.height == 0 {
            return leaf.position(len, key).map(|at| leaf.slots[at]);
        }
        let at = count_lt(&leaf.keys, len, key);
        (at < len && leaf.keys[at] == key).then(|| leaf.slots[at])
    }

    /// The leaf whose range holds `key`, and its length.
    fn leaf_for(&self, root: &Root, key: u64) -> Option<(u16, usize)> {
        let (mut n, mut len) = (root.node, root.len as usize);
        if n == NIL {
            return None;
        }
        for _ in 0..root.height {
            let at = self.child_at(n, key);
            let node = &self.inners[n as usize];
            (n, len) = (node.children[at], node.counts[at] as usize);
        }
        Some((n, root.leaf_len(n, len)))
    }

    /// The slot of the greatest key at or below `key`.
    pub fn floor(&self, root: &Root, key: u64) -> Option<u16> {
        // Down the path to `key`, remembering the last subtree seen just left of it: if
        // the leaf holds nothing at or below `key` (a separator can be below every key
        // under it once keys are removed), the answer is that subtree's greatest key.
        let (mut n, mut len) = (root.node, root.len as usize);
        if n == NIL {
            return None;
        }
        if root.height == 0 {
            // A root leaf keeps no order: the greatest of its keys at or below `key`.
            let leaf = &self.leaves[n as usize];
            let below = (0..len.min(LEAF)).filter(|&i| leaf.keys[i] <= key);
            return below.max_by_key(|&i| leaf.keys[i]).map(|i| leaf.slots[i]);
        }
        let mut left = None;
        for h in (0..root.height).rev() {
            let at = self.child_at(n, key);
            let node = &self.inners[n as usize];
            if at > 0 {
                left = Some((node.children[at - 1], node.counts[at - 1] as usize, h));
            }
            (n, len) = (node.children[at], node.counts[at] as usize);
        }
        let leaf = &self.leaves[n as usize];
        // (The subtree left of the path holds no rightmost leaf: its counts are whole.)
        match count_le(&leaf.keys, root.leaf_len(n, len), key) {
            0 => left.map(|(mut n, mut len, h)| {
                for _ in 0..h {
                    let node = &self.inners[n as usize];
                    let last = node.len as usize - 1;
                    (n, len) = (node.children[last], node.counts[last] as usize);
                }
                self.leaves[n as usize].slots[len - 1]
            }),
            at => Some(leaf.slots[at - 1]),
        }
    }

    /// The slot of the greatest key.
    pub fn last(&self, root: &Root) -> Option<u16> {
        (root.len > 0).then_some(root.last_slot)
    }

    /// The greatest key of a tree that is not empty, and its slot: down the rightmost
    /// path, no search (a root leaf, in no order, is scanned).
    fn rightmost(&self, root: &Root) -> (u64, u16) {
        if root.height == 0 {
            return self.leaves[root.node as usize].greatest(root.len as usize);
        }
        let (leaf, len) = (&self.leaves[root.tail as usize], root.tail_len as usize);
        (leaf.keys[len - 1], leaf.slots[len - 1])
    }

    /// The slot of the least key at or above `key`.
    pub fn ceil(&self, root: &Root, key: u64) -> Option<u16> {
        // As `floor`, with the subtree just right of the path.
        let (mut n, mut len) = (root.node, root.len as usize);
        if n == NIL {
            return None;
        }
        if root.height == 0 {
            // As in `floor`: the least of the root leaf's keys at or above `key`.
            let leaf = &self.leaves[n as usize];
            let above = (0..len.min(LEAF)).filter(|&i| leaf.keys[i] >= key);
            return above.min_by_key(|&i| leaf.keys[i]).map(|i| leaf.slots[i]);
        }
        let mut right = None;
        for h in (0..root.height).rev() {
            let at = self.child_at(n, key);
            let node = &self.inners[n as usize];
            if at + 1 < node.len as usize {
                right = Some((node.children[at + 1], h));
            }
            (n, len) = (node.children[at], node.counts[at] as usize);
        }
        let leaf = &self.leaves[n as usize];
        let len = root.leaf_len(n, len);
        match count_lt(&leaf.keys, len, key) {
            at if at < len => Some(leaf.slots[at]),
            _ => right.map(|(mut n, h)| {
                for _ in 0..h {
                    n = self.inners[n as usize].children[0];
                }
                self.leaves[n as usize].slots[0]
            }),
        }
    }

    /// The slot of the `k`-th key (from 0) in order.
    pub fn select(&self, root: &Root, mut k: usize) -> Option<u16> {
        if k >= root.len as usize {
            return None;
        }
        if root.height == 0 {
            return Some(self.leaves[root.node as usize].sorted(root.len as usize).slots[k]);
        }
        let mut n = root.node;
        for _ in 0..root.height {
            let node = &self.inners[n as usize];
            let mut i = 0;
            // (Not past the last child, which may be owed appends: `k` is below the
            // tree's length, so what the others do not hold is under it.)
            while i + 1 < node.len as usize && k >= node.counts[i] as usize {
                k -= node.counts[i] as usize;
                i += 1;
            }
            n = node.children[i];
        }
        Some(self.leaves[n as usize].slots[k])
    }

    /// Call `f` with each slot in key order while it returns true.
    pub fn walk(&self, root: &Root, mut f: impl FnMut(u16) -> bool) {
        if root.node == NIL {
            return;
        }
        if root.height == 0 {
            let sorted = self.leaves[root.node as usize].sorted(root.len as usize);
            sorted.slots[..root.len as usize].iter().all(|&s| f(s));
            return;
        }
        // Down the rightmost path, whose counts may be owed appends: at each level the
        // children left of it whole (their counts are right), then its last; at the
        // bottom the rightmost leaf, as long as the finger says.
        let mut n = root.node;
        for h in (0..root.height).rev() {
            let node = &self.inners[n as usize];
            let last = node.len as usize - 1;
            if !(0..last).all(|i| self.walk_in(node.children[i], h, node.counts[i] as usize, &mut f)) {
                return;
            }
            n = node.children[last];
        }
        self.leaves[n as usize].slots[..root.tail_len as usize].iter().all(|&s| f(s));
    }

    fn walk_in(&self, n: u16, height: u8, len: usize, f: &mut impl FnMut(u16) -> bool) -> bool {
        if height == 0 {
            return self.leaves[n as usize].slots[..len].iter().all(|&s| f(s));
        }
        let node = &self.inners[n as usize];
        (0..node.len as usize).all(|i| self.walk_in(node.children[i], height - 1, node.counts[i] as usize, f))
    }

    /// `walk` from the least key at or above `key`: down the path to `key`, then on in
    /// order. A walk that stops to change the tree resumes here, with no pass over what
    /// it has seen.
    pub fn walk_from(&self, root: &Root, key: u64, mut f: impl FnMut(u16) -> bool) {
        if root.node == NIL {
            return;
        }
        if root.height == 0 {
            // A root leaf keeps no order: a sorted copy is walked.
            let len = root.len as usize;
            let sorted = self.leaves[root.node as usize].sorted(len);
            let from = count_lt(&sorted.keys, len, key);
            sorted.slots[from..len].iter().all(|&s| f(s));
            return;
        }
        self.walk_from_in(root, root.node, root.height, None, key, &mut f);
    }

    /// `n`'s subtree from `key` on; `len` its count, `None` on the rightmost path, whose
    /// counts may be owed appends: there the children left of the path are whole (their
    /// counts are right), and the rightmost leaf is as long as the finger says.
    fn walk_from_in(
        &self,
        root: &Root,
        n: u16,
        height: u8,
        len: Option<usize>,
        key: u64,
        f: &mut impl FnMut(u16) -> bool,
    ) -> bool {
        if height == 0 {
            let leaf = &self.leaves[n as usize];
            let len = len.unwrap_or(root.tail_len as usize).min(LEAF);
            return leaf.slots[count_lt(&leaf.keys, len, key)..len].iter().all(|&s| f(s));
        }
        // Keys below the child `key` falls in are below `key`; those above it, above.
        let first = self.child_at(n, key);
        let node = &self.inners[n as usize];
        let last = node.len as usize - 1;
        let count = |i: usize| if len.is_none() && i == last { None } else { Some(node.counts[i] as usize) };
        // After it, the children left of the rightmost path whole (`walk_in`), and the
        // path's own child as the path is walked.
        self.walk_from_in(root, node.children[first], height - 1, count(first), key, f)
            && (first + 1..=last).all(|i| match count(i) {
                Some(len) => self.walk_in(node.children[i], height - 1, len, f),
                None => self.walk_from_in(root, node.children[i], height - 1, None, 0, f),
            })
    }

    /// Every invariant of `root`'s tree: keys in order and within their separators,
    /// counts right, nodes at least half full (but the root), all leaves at one depth.
    /// `Err` names the first broken one. For the service's audit and the tests.
    pub fn check(&self, root: &Root) -> Result<(), &'static str> {
        if root.node == NIL {
            return if root.len == 0 { Ok(()) } else { Err("an empty tree counts keys") };
        }
        if root.height == 0 && (root.tail, root.tail_len, root.owed) != (NIL, 0, 0) {
            return Err("a root leaf has a finger");
        }
        let n = self.check_in(root, root.node, root.height, root.len as usize, (true, true), (0, None))?;
        if n != root.len as usize {
            return Err("a tree's length is not its keys");
        }
        if (root.last_key, root.last_slot) != self.rightmost(root) {
            return Err("a tree's greatest key is not the one it keeps");
        }
        Ok(())
    }

    /// `n`'s subtree, which should hold `len` keys in `range` (at least the first, below
    /// the second; `None`: no bound, as right of the last separator, where `u64::MAX` may
    /// be); `(is_root, edge)`: `n` is the root, and on the rightmost path (whose counts
    /// for their last child are owed `root.owed`, and whose leaf is the finger,
    /// `root.tail`).
    fn check_in(
        &self,
        root: &Root,
        n: u16,
        height: u8,
        len: usize,
        (is_root, edge): (bool, bool),
        range: (u64, Option<u64>),
    ) -> Result<usize, &'static str> {
        let ok = |c: bool, what| if c { Ok(()) } else { Err(what) };
        if height == 0 {
            if !is_root {
                ok((n == root.tail) == edge, "the finger is not the rightmost leaf")?;
                ok(!edge || len == root.tail_len as usize, "the finger's length is not its leaf's")?;
            }
            let leaf = &self.leaves[n as usize];
            ok(len <= LEAF && (is_root || len >= MIN_LEAF), "a leaf is over- or under-full")?;
            ok(leaf.slots[..len].iter().all(|&s| s != NIL), "a leaf's slot is missing")?;
            ok(leaf.slots[len..].iter().all(|&s| s == NIL), "a leaf has slots past its length")?;
            // A root leaf keeps its keys in no order, but each once.
            let keys = if is_root { leaf.sorted(len).keys } else { leaf.keys };
            ok(keys[..len].windows(2).all(|w| w[0] < w[1]), "a leaf's keys are out of order or repeated")?;
            let inside = |k: u64| k >= range.0 && range.1.is_none_or(|hi| k < hi);
            ok(leaf.keys[..len].iter().all(|&k| inside(k)), "a key is outside its separators")?;
            return Ok(len);
        }
        let node = &self.inners[n as usize];
        let c = node.len as usize;
        ok(c <= FAN && c >= if is_root { 2 } else { MIN_FAN }, "an inner node is over- or under-full")?;
        ok(node.keys[..c - 1].windows(2).all(|w| w[0] < w[1]), "an inner node's keys are out of order")?;
        ok(node.children[c..].iter().all(|&s| s == NIL), "an inner node has children past its length")?;
        let mut total = 0;
        for i in 0..c {
            let lo = if i == 0 { range.0 } else { node.keys[i - 1] };
            let hi = if i + 1 == c { range.1 } else { Some(node.keys[i]) };
            let last = edge && i + 1 == c;
            let owed = if last { root.owed.into() } else { 0 };
            let counted = (node.counts[i] as usize).wrapping_add_signed(owed);
            let below = self.check_in(root, node.children[i], height - 1, counted, (false, last), (lo, hi))?;
            ok(below == counted, "an inner node miscounts a child")?;
            total += below;
        }
        ok(total == len, "a subtree's count is wrong")?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;
    use std::vec::Vec;

    fn rng(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Random insertions and removals in several trees sharing the pools, sized by
    /// `leaves_for`/`inners_for`, against `BTreeMap`: after every step every query
    /// agrees and every invariant holds; and the pools are never short.
    /// The tree's greatest, a random rank's and (with `walk`) every slot in order, against
    /// the BTreeMap's.
    fn agrees_in_order(
        ix: &Index,
        root: &Root,
        map: &BTreeMap<u64, u16>,
        step: usize,
        walk: bool,
        r: &mut impl FnMut() -> u64,
    ) {
        assert_eq!(ix.last(root), map.values().next_back().copied(), "step {step} last");
        if !map.is_empty() {
            let k = (r() % map.len() as u64) as usize;
            assert_eq!(ix.select(root, k), map.values().nth(k).copied(), "step {step} select");
        }
        if walk {
            let mut seen = Vec::new();
            ix.walk(root, |s| {
                seen.push(s);
                true
            });
            assert_eq!(seen, map.values().copied().collect::<Vec<_>>(), "step {step} walk");
            // From a key, half a page below one, or half a page above one (or above all),
            // stopped after 40 slots.
            let k = (r() % (map.len() as u64 + 1)) as usize;
            let from = map.keys().nth(k).map_or(u64::MAX, |&key| (key + (r() % 3) * 0x800).saturating_sub(0x800));
            let mut seen = Vec::new();
            ix.walk_from(root, from, |s| {
                seen.push(s);
                seen.len() < 40
            });
            assert_eq!(seen, map.range(from..).map(|e| *e.1).take(40).collect::<Vec<_>>(), "step {step} walk_from");
        }
    }

    fn against_btreemap(slots: usize, trees: usize, keyspace: u64, steps: usize, seed: u64) {
        let mut leaves = vec![Leaf::default(); leaves_for(slots, trees)];
        let mut inners = vec![Inner::default(); inners_for(slots, trees)];
        let mut ix = Index::new(&mut leaves, &mut inners);
        let mut roots = vec![Root::default(); trees];
        let mut reference: Vec<BTreeMap<u64, u16>> = vec![BTreeMap::new(); trees];
        let mut free: Vec<u16> = (0..slots as u16).rev().collect();
        let mut r = rng(seed);
        for step in 0..steps {
            let t = (r() % trees as u64) as usize;
            // Lean towards filling up, then towards emptying, in long waves.
            let fill = (step / 5_000) % 2 == 0;
            let insert = r() % 8 < if fill { 6 } else { 2 };
            // A quarter of the time at the top, as the service's allocator places new
            // mappings: just above the greatest key, or the greatest key itself.
            let key = match reference[t].keys().next_back() {
                Some(&top) if r() % 4 == 0 => top + if insert { (r() % 3 + 1) << 12 } else { 0 },
                _ => (r() % keyspace) << 12,
            };
            if insert && !reference[t].contains_key(&key) {
                let Some(slot) = free.pop() else { continue };
                assert_eq!(ix.insert(&mut roots[t], key, slot), Ok(()), "step {step}: pools short");
                reference[t].insert(key, slot);
            } else if !insert && r() % 4 == 0 {
                // `take`, which UNMAP uses: refused, it changes nothing.
                let allow = r() % 2 == 0;
                let want = match reference[t].get(&key).copied() {
                    None => Take::Missing,
                    Some(slot) if allow => Take::Taken(slot),
                    Some(slot) => Take::Kept(slot),
                };
                assert_eq!(ix.take(&mut roots[t], key, |_| allow), want, "step {step} take");
                if let Take::Taken(slot) = want {
                    reference[t].remove(&key);
                    free.push(slot);
                }
            } else if !insert {
                let want = reference[t].remove(&key);
                assert_eq!(ix.remove(&mut roots[t], key), want, "step {step}");
                free.extend(want);
            }
            ix.check(&roots[t]).unwrap_or_else(|e| panic!("step {step}: {e}"));
            let map = &reference[t];
            assert_eq!(roots[t].len(), map.len());
            let probe = ((r() % keyspace) << 12) | ((r() % 3) * 0x800);
            assert_eq!(ix.find(&roots[t], probe), map.get(&probe).copied(), "step {step} find");
            assert_eq!(ix.floor(&roots[t], probe), map.range(..=probe).next_back().map(|e| *e.1), "step {step} floor");
            assert_eq!(ix.ceil(&roots[t], probe), map.range(probe..).next().map(|e| *e.1), "step {step} ceil");
            // (Small trees are walked at every step: most are root leaves, sorted for it.)
            agrees_in_order(&ix, &roots[t], map, step, keyspace <= 64 || step % 97 == 0, &mut r);
        }
        // Empty every tree: all nodes come back.
        for (t, map) in reference.iter().enumerate() {
            for k in map.keys() {
                assert!(ix.remove(&mut roots[t], *k).is_some());
            }
            assert_eq!(roots[t], Root::default());
        }
        assert_eq!(ix.spare(), (leaves_for(slots, trees), inners_for(slots, trees)));
    }

    #[test]
    fn one_small_tree_agrees_with_btreemap() {
        against_btreemap(300, 1, 1000, 40_000, 1);
    }

    #[test]
    fn root_leaves_in_no_order_agree_with_btreemap() {
        // Trees about 16 keys, most of the time root leaves (which keep no order), often
        // split from one and merged back into one: every read, the walk included,
        // checked at every step.
        against_btreemap(120, 4, 24, 40_000, 3);
    }

    #[test]
    fn a_root_leaf_keeps_its_greatest_and_sorts_before_it_splits() {
        // Keys out of order into a root leaf; the greatest taken (the one left is found
        // by a scan), then the leaf filled until it splits, sorted: each step checked.
        let mut leaves = vec![Leaf::default(); leaves_for(40, 1)];
        let mut inners = vec![Inner::default(); inners_for(40, 1)];
        let mut ix = Index::new(&mut leaves, &mut inners);
        let mut root = Root::default();
        let keys = [7u64, 3, 12, 1, 9, 15, 4];
        for (i, k) in keys.iter().enumerate() {
            ix.insert(&mut root, k << 12, i as u16).unwrap();
        }
        assert_eq!(ix.last(&root), Some(5));
        assert_eq!(ix.remove(&mut root, 15 << 12), Some(5));
        assert_eq!(ix.last(&root), Some(2), "12 is the greatest left");
        assert_eq!(ix.take(&mut root, 12 << 12, |_| false), Take::Kept(2));
        assert_eq!(ix.last(&root), Some(2));
        assert_eq!(ix.floor(&root, (8 << 12) + 1), Some(0));
        assert_eq!(ix.ceil(&root, (8 << 12) + 1), Some(4));
        assert_eq!(ix.select(&root, 0), Some(3));
        ix.check(&root).unwrap();
        for i in 0..20u64 {
            ix.insert(&mut root, (100 - i) << 12, 10 + i as u16).unwrap();
            ix.check(&root).unwrap();
        }
        assert_eq!(root.height, 1);
        let mut seen = Vec::new();
        ix.walk(&root, |s| {
            seen.push(s);
            true
        });
        assert_eq!(&seen[..6], &[3, 1, 6, 0, 4, 2]);
    }

    #[test]
    fn trees_sharing_pools_agree_with_btreemap() {
        against_btreemap(2_000, 5, 4_000, 60_000, 2);
    }

    #[test]
    fn appends_in_order_keep_every_invariant() {
        // How the allocator fills a window: each key above the last, through appends into
        // the rightmost leaf, their splits (`append_split`) and, when a parent is full,
        // the general insertion; three inner levels. Checked after every insertion.
        let slots = 5_000;
        let mut leaves = vec![Leaf::default(); leaves_for(slots, 1)];
        let mut inners = vec![Inner::default(); inners_for(slots, 1)];
        let mut ix = Index::new(&mut leaves, &mut inners);
        let mut root = Root::default();
        for i in 0..slots as u64 {
            assert_eq!(ix.insert(&mut root, (i + 1) << 12, i as u16), Ok(()));
            ix.check(&root).unwrap_or_else(|e| panic!("key {i}: {e}"));
            assert_eq!(ix.last(&root), Some(i as u16));
            assert_eq!(ix.select(&root, (i / 2) as usize), Some((i / 2) as u16));
            assert_eq!(ix.floor(&root, ((i + 1) << 12) - 1), i.checked_sub(1).map(|j| j as u16));
        }
        assert_eq!(root.height, 3);
        // Half the leaves are filled to 8 and left (8/9 splits), so the pools stay within
        // what the table's size allows, and everything comes back.
        for i in 0..slots as u64 {
            assert_eq!(ix.remove(&mut root, (i + 1) << 12), Some(i as u16));
        }
        assert_eq!(ix.spare(), (leaves_for(slots, 1), inners_for(slots, 1)));
    }

    #[test]
    fn appends_removals_of_the_greatest_and_refills_agree_with_btreemap() {
        // How the allocator's next IOVA drives the index: most insertions just above the
        // greatest key (at the finger's leaf, `append_split`), the greatest removed and
        // appended again, frees in the middle refilled below the greatest (first fit);
        // each tree filled until the shared pools' slots run out, then emptied, in waves.
        // Pools sized as the service sizes them; checked against a BTreeMap every step.
        let (slots, trees) = (600, 3);
        let mut leaves = vec![Leaf::default(); leaves_for(slots, trees)];
        let mut inners = vec![Inner::default(); inners_for(slots, trees)];
        let mut ix = Index::new(&mut leaves, &mut inners);
        let mut roots = vec![Root::default(); trees];
        let mut reference: Vec<BTreeMap<u64, u16>> = vec![BTreeMap::new(); trees];
        let mut free: Vec<u16> = (0..slots as u16).rev().collect();
        let mut r = rng(7);
        let (mut appends, mut full) = (0, 0);
        for step in 0..60_000 {
            let t = (r() % trees as u64) as usize;
            let fill = (step / 3_000) % 2 == 0;
            let top = reference[t].keys().next_back().copied();
            let roll = r() % 10;
            if roll < if fill { 7 } else { 3 } {
                // Above the greatest, or into a gap below it.
                let key = match top {
                    Some(top) if roll < 5 => top + ((r() % 2 + 1) << 12),
                    _ => (r() % 4_000) << 12,
                };
                if reference[t].contains_key(&key) {
                    continue;
                }
                let Some(slot) = free.pop() else {
                    full += 1;
                    continue;
                };
                appends += usize::from(top.is_some_and(|top| key > top));
                assert_eq!(ix.insert(&mut roots[t], key, slot), Ok(()), "step {step}: pools short");
                reference[t].insert(key, slot);
            } else if let Some(top) = top.filter(|_| roll < 8) {
                let want = reference[t].remove(&top);
                assert_eq!(ix.remove(&mut roots[t], top), want, "step {step}: the greatest");
                free.extend(want);
            } else if !reference[t].is_empty() {
                let k = (r() % reference[t].len() as u64) as usize;
                let key = *reference[t].keys().nth(k).unwrap();
                let want = reference[t].remove(&key);
                assert_eq!(ix.remove(&mut roots[t], key), want, "step {step}");
                free.extend(want);
            }
            ix.check(&roots[t]).unwrap_or_else(|e| panic!("step {step}: {e}"));
            let map = &reference[t];
            assert_eq!(roots[t].len(), map.len(), "step {step}");
            agrees_in_order(&ix, &roots[t], map, step, step % 101 == 0, &mut r);
        }
        assert!(appends > 10_000 && full > 100, "{appends} appends, {full} insertions with every slot in use");
        for (t, map) in reference.iter().enumerate() {
            for k in map.keys() {
                assert!(ix.remove(&mut roots[t], *k).is_some());
            }
        }
        assert_eq!(ix.spare(), (leaves_for(slots, trees), inners_for(slots, trees)));
    }

    #[test]
    fn a_full_table_in_one_tree_fits_the_pools() {
        // Every slot in one tree, keys in an order that splits leaves unevenly, then
        // everything removed: the pools sized for the table always suffice.
        for (slots, stride) in [(MAX_SLOTS, 1u64), (4_096, 7919)] {
            let mut leaves = vec![Leaf::default(); leaves_for(slots, 1)];
            let mut inners = vec![Inner::default(); inners_for(slots, 1)];
            let mut ix = Index::new(&mut leaves, &mut inners);
            let mut root = Root::default();
            for i in 0..slots as u64 {
                let key = (i * stride % slots as u64) << 12;
                assert_eq!(ix.insert(&mut root, key, i as u16), Ok(()));
            }
            ix.check(&root).unwrap();
            assert_eq!(root.len(), slots);
            assert!(root.height as usize <= MAX_INNER_LEVELS);
            assert_eq!(ix.find(&root, 5 << 12).map(|_| ()), Some(()));
            for i in 0..slots as u64 {
                assert!(ix.remove(&mut root, (i * 31 % slots as u64) << 12).is_some());
                if i % 1024 == 0 {
                    ix.check(&root).unwrap();
                }
            }
            assert_eq!(root, Root::default());
        }
    }

    #[test]
    fn every_slot_of_a_small_table_can_be_used() {
        // Pools sized for the table take every slot, in one tree or spread over several,
        // keys ascending (the worst fill) or descending.
        for slots in 1..70 {
            for trees in 1..4 {
                for descending in [false, true] {
                    let mut leaves = vec![Leaf::default(); leaves_for(slots, trees)];
                    let mut inners = vec![Inner::default(); inners_for(slots, trees)];
                    let mut ix = Index::new(&mut leaves, &mut inners);
                    let mut roots = vec![Root::default(); trees];
                    for i in 0..slots {
                        let key = if descending { slots - i } else { i } as u64 * 0x1000;
                        let t = if i % 2 == 0 { 0 } else { i % trees };
                        assert_eq!(ix.insert(&mut roots[t], key, i as u16), Ok(()), "{slots} slots, {trees} trees");
                    }
                }
            }
        }
    }

    #[test]
    fn short_pools_refuse_and_change_nothing() {
        let mut leaves = vec![Leaf::default(); 1];
        let mut inners: Vec<Inner> = Vec::new();
        let mut ix = Index::new(&mut leaves, &mut inners);
        let mut root = Root::default();
        assert_eq!(ix.insert(&mut root, 0, 0), Err(Full), "no inner node for a split");
        assert_eq!(root, Root::default());
    }
}
