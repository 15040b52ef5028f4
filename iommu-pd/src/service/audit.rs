//! An audit of the service's books (tests and the model only): every structure that
//! describes the same facts agrees with the others. The per-device indexes hold exactly
//! the live mappings, in order and without overlap; the free list holds exactly the
//! other slots; each mapping names the live capability it was made with, on one of that
//! capability's devices and inside its memory and rights (where REVOKE looks for it), or
//! is pending with no capability; no capability is left marked going; child lists and
//! parents are live; handles name live capabilities of the right holder; the usage,
//! grant and pending counters are what the tables say; while a slot is free, every index
//! has room for one more key (MAP asks only for the slot). The model-based and exhaustive
//! tests run it after every step.

extern crate std;

use std::vec::Vec;

use super::{Service, Slot, NO_CAP};
use crate::hw::IommuHw;
use crate::index::NIL;

impl<H: IommuHw> Service<'_, H> {
    /// `Err` naming the first disagreement found.
    pub fn audit(&self) -> Result<(), &'static str> {
        let check = |ok: bool, what: &'static str| if ok { Ok(()) } else { Err(what) };
        let mut indexed = 0;
        for d in 0..self.cfg.devices.len() {
            let (tree, root) = self.view(d);
            let (mut last_end, mut pending, mut n, mut ok) = (0u64, 0u32, 0usize, true);
            tree.walk(root, |i| {
                match self.maps[i as usize] {
                    Some(m) => {
                        ok &= m.device as usize == d && m.iova >= last_end && tree.find(root, m.iova) == Some(i);
                        last_end = m.iova + m.len();
                        pending += m.pending as u32;
                        n += 1;
                    }
                    None => ok = false,
                }
                true
            });
            check(ok, "a device's index holds an empty slot, another device's mapping, or overlaps")?;
            tree.check(root)?;
            check(root.len() == n, "a device's index miscounts its mappings")?;
            // The allocator's next IOVA: the end of the highest mapping (the walk's last),
            // or the window's first page.
            let dc = &self.cfg.devices[d];
            let base = super::window_first_page(dc);
            let end = dc.iova_base.checked_add(dc.iova_size);
            let window_end = base.and(end).unwrap_or(0);
            let base = base.unwrap_or(0);
            let next = if n == 0 { base } else { last_end.max(base) };
            check(self.devices[d].next_iova == next, "a device's next IOVA is not the end of its highest mapping")?;
            check(self.devices[d].window_end == window_end, "a device's window end is wrong")?;
            check(pending == self.devices[d].pending, "a device's pending counter is wrong")?;
            check(pending == 0 || self.devices[d].unconfirmed(), "a pending removal on a device not marked")?;
            // MAP asks only for a free slot (`room_in`): that must be room in every index.
            check(self.free_len == 0 || tree.can_insert(root), "a free slot, and no room in a device's index")?;
            indexed += n;
        }
        let live = self.maps.iter().flatten().count();
        check(live == indexed, "a live mapping is in no index")?;
        let mut seen = std::vec![false; self.maps.len()];
        for &at in &self.free[..self.free_len] {
            check(self.maps[at as usize].is_none(), "a slot in the free list is in use")?;
            check(!core::mem::replace(&mut seen[at as usize], true), "a slot is in the free list twice")?;
        }
        check(self.free_len + live == self.maps.len(), "the free list misses slots")?;
        for m in self.maps.iter().flatten() {
            if m.cap == NO_CAP {
                check(m.pending, "a mapping with no capability is not pending")?;
                continue;
            }
            let cap = self.caps.get(m.cap as usize).copied().flatten().ok_or("a mapping names a freed capability")?;
            let owner = self.cfg.devices[m.device as usize].owner as u16;
            // REVOKE finds a capability's mappings on its devices only.
            check(cap.devices & (1 << m.device) != 0, "a mapping is on a device its capability does not name")?;
            check(cap.holder == owner, "a mapping's capability is not its device owner's")?;
            // (In 128 bits: a capability's memory may be described past 2^64.)
            let end = |pa: u64, len: u64| u128::from(pa) + u128::from(len);
            let inside = m.pa >= cap.pa && end(m.pa, m.len()) <= end(cap.pa, cap.len) && cap.rights.contains(m.rights);
            check(inside, "a mapping leaves its capability's memory or rights")?;
        }
        for (ci, cap) in self.caps.iter().enumerate() {
            let Some(cap) = cap else { continue };
            check(!cap.going, "a capability is left marked going")?;
            let mut child = cap.first_child;
            while child != NIL {
                let c = self.caps[child as usize].ok_or("a capability lists a freed child")?;
                check(c.parent == Some(ci as u16), "a child does not name its parent")?;
                child = c.next_sibling;
            }
            if let Some(p) = cap.parent {
                check(self.caps[p as usize].is_some(), "a capability's parent is gone")?;
            }
        }
        for (client, table) in self.clients.iter().enumerate().take(self.cfg.clients.len()) {
            for slot in table.handles.iter().flatten() {
                let ok = match *slot {
                    Slot::Cap(i) => self.caps[i as usize].is_some_and(|c| c.holder as usize == client),
                    Slot::Grant(i) => self.caps[i as usize]
                        .and_then(|c| c.parent)
                        .and_then(|p| self.caps[p as usize])
                        .is_some_and(|p| p.holder as usize == client),
                };
                check(ok, "a handle names a freed capability or another client's")?;
            }
            let c = &self.cfg.clients[client];
            let quota = super::Quota { mappings: c.max_mappings, pages: c.max_pages };
            check(table.quota == quota, "a client's quotas are not its description's")?;
            check(self.last_map_stands(client), "a client's last MAP lookup is not what its key names now")?;
            let granted = self
                .caps
                .iter()
                .flatten()
                .filter(|c| c.parent.and_then(|p| self.caps[p as usize]).is_some_and(|p| p.holder as usize == client))
                .count();
            check(granted as u32 == table.usage.grants, "a grant counter is wrong")?;
            let mine: Vec<_> =
                self.maps.iter().flatten().filter(|m| self.cfg.devices[m.device as usize].owner == client).collect();
            let pages: u64 = mine.iter().map(|m| m.pages as u64).sum();
            check(mine.len() as u32 == table.usage.mappings && pages == table.usage.pages, "a usage counter is wrong")?;
        }
        Ok(())
    }
}
