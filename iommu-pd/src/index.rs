//! The mapping table's index: for each device, an AVL tree of its mapping slots ordered by
//! IOVA, and a list of free slots, all in a fixed array of `Node`s parallel to the mapping
//! slots. Lookup by IOVA, the neighbours of an address, the n-th mapping, insertion and
//! removal cost O(log n) in the device's live mappings; taking or returning a slot O(1).
//! Nothing depends on how many slots are unused.
//!
//! AVL rather than a randomised tree: its depth is bounded (1.44 log2 n, under 24 for the
//! 65,535 slots a table may have) whatever IOVAs a hostile client picks, so the recursion
//! below has a small fixed worst case.

/// No slot.
pub const NIL: u16 = u16::MAX;

/// Most slots an index can hold (slot numbers are 16-bit, and `NIL` is one of them).
pub const MAX_SLOTS: usize = NIL as usize;

/// One slot's place in its device's tree, or in the free list (`left` is then the next
/// free slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// The IOVA of the slot's mapping: kept here so a walk reads only this array.
    key: u64,
    left: u16,
    right: u16,
    /// Nodes in this subtree.
    size: u16,
    /// Height of this subtree (a leaf is 1).
    height: u8,
}

impl Default for Node {
    fn default() -> Self {
        Node { key: 0, left: NIL, right: NIL, size: 0, height: 0 }
    }
}

/// Link every slot into the free list; returns its head.
pub fn init_free(nodes: &mut [Node]) -> u16 {
    let n = nodes.len().min(MAX_SLOTS);
    for (i, node) in nodes.iter_mut().enumerate().take(n) {
        *node = Node { left: if i + 1 < n { (i + 1) as u16 } else { NIL }, ..Node::default() };
    }
    if n == 0 {
        NIL
    } else {
        0
    }
}

/// Take a free slot (`None` when there is none).
pub fn take_free(nodes: &mut [Node], head: &mut u16) -> Option<u16> {
    let slot = *head;
    if slot == NIL {
        return None;
    }
    *head = nodes[slot as usize].left;
    nodes[slot as usize] = Node::default();
    Some(slot)
}

/// The free slot after `slot` in the free list (`NIL` at its end).
pub fn free_next(nodes: &[Node], slot: u16) -> u16 {
    nodes[slot as usize].left
}

/// Return `slot` to the free list.
pub fn give_free(nodes: &mut [Node], head: &mut u16, slot: u16) {
    nodes[slot as usize] = Node { left: *head, ..Node::default() };
    *head = slot;
}

/// A device's tree, keyed by the IOVA of each slot's mapping; keys are unique.
pub struct Tree<'a> {
    nodes: &'a mut [Node],
}

impl core::fmt::Debug for Tree<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tree").field("slots", &self.nodes.len()).finish()
    }
}

impl<'a> Tree<'a> {
    /// The trees over `nodes`.
    pub fn new(nodes: &'a mut [Node]) -> Self {
        Tree { nodes }
    }

    fn n(&self, i: u16) -> &Node {
        &self.nodes[i as usize]
    }

    fn height(&self, i: u16) -> u8 {
        if i == NIL {
            0
        } else {
            self.n(i).height
        }
    }

    fn size(&self, i: u16) -> u16 {
        if i == NIL {
            0
        } else {
            self.n(i).size
        }
    }

    fn fix(&mut self, i: u16) {
        let (l, r) = (self.n(i).left, self.n(i).right);
        let (height, size) = (1 + self.height(l).max(self.height(r)), 1 + self.size(l) + self.size(r));
        let node = &mut self.nodes[i as usize];
        node.height = height;
        node.size = size;
    }

    fn rotate_right(&mut self, i: u16) -> u16 {
        let l = self.n(i).left;
        self.nodes[i as usize].left = self.n(l).right;
        self.nodes[l as usize].right = i;
        self.fix(i);
        self.fix(l);
        l
    }

    fn rotate_left(&mut self, i: u16) -> u16 {
        let r = self.n(i).right;
        self.nodes[i as usize].right = self.n(r).left;
        self.nodes[r as usize].left = i;
        self.fix(i);
        self.fix(r);
        r
    }

    fn balance(&mut self, i: u16) -> u16 {
        self.fix(i);
        let (l, r) = (self.n(i).left, self.n(i).right);
        let lean = i16::from(self.height(l)) - i16::from(self.height(r));
        if lean > 1 {
            if self.height(self.n(l).left) < self.height(self.n(l).right) {
                let nl = self.rotate_left(l);
                self.nodes[i as usize].left = nl;
            }
            return self.rotate_right(i);
        }
        if lean < -1 {
            if self.height(self.n(r).right) < self.height(self.n(r).left) {
                let nr = self.rotate_right(r);
                self.nodes[i as usize].right = nr;
            }
            return self.rotate_left(i);
        }
        i
    }

    /// Insert `slot` with `key` (which no other slot of the tree has); returns the new
    /// root.
    pub fn insert(&mut self, root: u16, slot: u16, key: u64) -> u16 {
        if root == NIL {
            self.nodes[slot as usize] = Node { key, left: NIL, right: NIL, size: 1, height: 1 };
            return slot;
        }
        if key < self.n(root).key {
            let l = self.insert(self.n(root).left, slot, key);
            self.nodes[root as usize].left = l;
        } else {
            let r = self.insert(self.n(root).right, slot, key);
            self.nodes[root as usize].right = r;
        }
        self.balance(root)
    }

    fn remove_min(&mut self, root: u16) -> (u16, u16) {
        let l = self.n(root).left;
        if l == NIL {
            return (self.n(root).right, root);
        }
        let (nl, min) = self.remove_min(l);
        self.nodes[root as usize].left = nl;
        (self.balance(root), min)
    }

    /// Remove the slot whose key is `key` (if any); returns the new root.
    pub fn remove(&mut self, root: u16, key: u64) -> u16 {
        if root == NIL {
            return NIL;
        }
        let here = self.n(root).key;
        if key < here {
            let l = self.remove(self.n(root).left, key);
            self.nodes[root as usize].left = l;
        } else if key > here {
            let r = self.remove(self.n(root).right, key);
            self.nodes[root as usize].right = r;
        } else {
            let (l, r) = (self.n(root).left, self.n(root).right);
            if l == NIL {
                return r;
            }
            if r == NIL {
                return l;
            }
            let (nr, min) = self.remove_min(r);
            self.nodes[min as usize].left = l;
            self.nodes[min as usize].right = nr;
            return self.balance(min);
        }
        self.balance(root)
    }

    /// The trees, read-only.
    pub fn view(&self) -> View<'_> {
        View { nodes: self.nodes }
    }
}

/// The trees, read-only.
pub struct View<'a> {
    nodes: &'a [Node],
}

impl core::fmt::Debug for View<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("View").field("slots", &self.nodes.len()).finish()
    }
}

impl<'a> View<'a> {
    /// The trees over `nodes`.
    pub fn new(nodes: &'a [Node]) -> Self {
        View { nodes }
    }

    fn n(&self, i: u16) -> &Node {
        &self.nodes[i as usize]
    }

    fn size(&self, i: u16) -> u16 {
        if i == NIL {
            0
        } else {
            self.n(i).size
        }
    }

    #[cfg(test)]
    fn height(&self, i: u16) -> u8 {
        if i == NIL {
            0
        } else {
            self.n(i).height
        }
    }

    /// The slot whose key is `key`.
    pub fn find(&self, root: u16, key: u64) -> Option<u16> {
        let mut i = root;
        while i != NIL {
            let here = self.n(i).key;
            if key == here {
                return Some(i);
            }
            i = if key < here { self.n(i).left } else { self.n(i).right };
        }
        None
    }

    /// The slot with the largest key not above `key`.
    pub fn floor(&self, root: u16, key: u64) -> Option<u16> {
        let (mut i, mut best) = (root, None);
        while i != NIL {
            if self.n(i).key <= key {
                best = Some(i);
                i = self.n(i).right;
            } else {
                i = self.n(i).left;
            }
        }
        best
    }

    /// The slot with the smallest key not below `key`.
    pub fn ceil(&self, root: u16, key: u64) -> Option<u16> {
        let (mut i, mut best) = (root, None);
        while i != NIL {
            if self.n(i).key >= key {
                best = Some(i);
                i = self.n(i).left;
            } else {
                i = self.n(i).right;
            }
        }
        best
    }

    /// The slot with the `k`-th smallest key (from 0).
    pub fn select(&self, root: u16, mut k: usize) -> Option<u16> {
        let mut i = root;
        while i != NIL {
            let left = self.size(self.n(i).left) as usize;
            if k < left {
                i = self.n(i).left;
            } else if k == left {
                return Some(i);
            } else {
                k -= left + 1;
                i = self.n(i).right;
            }
        }
        None
    }

    /// How many slots the tree holds.
    pub fn len(&self, root: u16) -> usize {
        self.size(root) as usize
    }

    /// Visit the slots in key order while `f` returns true.
    pub fn walk(&self, root: u16, mut f: impl FnMut(u16) -> bool) {
        // The depth of an AVL tree of at most 65,535 nodes is at most 23.
        let mut stack = [NIL; 32];
        let (mut depth, mut i) = (0, root);
        loop {
            while i != NIL && depth < stack.len() {
                stack[depth] = i;
                depth += 1;
                i = self.n(i).left;
            }
            if depth == 0 {
                return;
            }
            depth -= 1;
            let here = stack[depth];
            if !f(here) {
                return;
            }
            i = self.n(here).right;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random inserts and removals against a sorted list of keys, checking the order,
    /// sizes and AVL heights after each.
    #[test]
    fn the_tree_agrees_with_a_sorted_list() {
        const N: usize = 300;
        let mut nodes = [Node::default(); N];
        let mut keys = [0u64; N];
        let mut head = init_free(&mut nodes);
        let mut root = NIL;
        let mut live: std::vec::Vec<(u64, u16)> = std::vec::Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..20_000 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            let key = (r >> 20) % 1000 * 0x1000;
            let present = live.iter().position(|(k, _)| *k == key);
            if let (Some(p), true) = (present, r & 1 == 0) {
                let (_, slot) = live.remove(p);
                root = Tree::new(&mut nodes).remove(root, key);
                give_free(&mut nodes, &mut head, slot);
            } else if present.is_none() {
                let Some(slot) = take_free(&mut nodes, &mut head) else { continue };
                keys[slot as usize] = key;
                root = Tree::new(&mut nodes).insert(root, slot, key);
                live.push((key, slot));
            }
            live.sort();
            let snapshot = keys;
            let t = View::new(&nodes);
            let mut seen = std::vec::Vec::new();
            t.walk(root, |s| {
                seen.push(snapshot[s as usize]);
                true
            });
            let want: std::vec::Vec<u64> = live.iter().map(|(k, _)| *k).collect();
            assert_eq!(seen, want, "step {step}");
            assert_eq!(t.len(root), live.len());
            assert!(t.height(root) as f64 <= 1.45 * ((live.len() + 2) as f64).log2(), "step {step}");
            if let Some(&(k, s)) = live.get(live.len() / 2) {
                assert_eq!(t.find(root, k), Some(s));
                assert_eq!(t.select(root, live.len() / 2), Some(s));
                assert_eq!(t.floor(root, k + 0xfff), Some(s));
                assert!(t.ceil(root, k.saturating_sub(0xfff)).is_some_and(|c| snapshot[c as usize] <= k));
            }
        }
    }
}
