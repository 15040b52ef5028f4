//! Capabilities: the handle check, GRANT of a narrower capability, and REVOKE and
//! RELEASE, which remove a capability's whole subtree and every mapping made from it.

use super::*;

impl<'a, H: IommuHw> Service<'a, H> {
    pub(super) fn cap_of(&self, client: usize, h: Handle) -> Result<(u16, Cap)> {
        match self.clients[client].handles.get(h.0 as usize).copied().flatten() {
            Some(Slot::Cap(i)) => match self.caps[i as usize] {
                // The holder check is redundant with the per-client table; it stays as a
                // second guard on the one thing that must never go wrong.
                Some(cap) if cap.holder as usize == client => Ok((i, cap)),
                _ => Err(ErrorCode::BadHandle),
            },
            _ => Err(ErrorCode::BadHandle),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn grant(
        &mut self,
        client: usize,
        h: Handle,
        to: ClientId,
        offset: u64,
        len: u64,
        rights: Rights,
        devices: u64,
    ) -> Result<(Handle, Handle)> {
        let (ci, cap) = self.cap_of(client, h)?;
        let to = to.0 as usize;
        if to >= self.cfg.clients.len() {
            return Err(ErrorCode::BadClient);
        }
        if to >= 64 || cap.grant_to & (1 << to) == 0 {
            return Err(ErrorCode::Denied);
        }
        if !cap.rights.contains(rights) {
            return Err(ErrorCode::NoRights);
        }
        let end = offset.checked_add(len).ok_or(ErrorCode::OutOfRange)?;
        if len == 0 || offset % PAGE != 0 || len % PAGE != 0 || end > cap.len {
            return Err(ErrorCode::OutOfRange);
        }
        // A capability described past 2^64 has no memory there to lend: unchecked, the
        // sum wrapped (a release build's) and the grant named physical 0 on.
        let pa = cap.pa.checked_add(offset).ok_or(ErrorCode::OutOfRange)?;
        let owned = self.devices_of(to);
        if devices == 0 || devices & !owned != 0 {
            return Err(ErrorCode::BadDevice);
        }
        let (root, narrowed) = self.lineage(ci, to);
        // What a granter narrowed stays narrow: back at a client it passed through (a
        // grant to oneself is the shortest way back), a capability names no more of that
        // client's devices than it did there.
        if devices & !narrowed != 0 {
            return Err(ErrorCode::Denied);
        }
        // The receiver's devices, but not ones the description keeps this memory from.
        if devices & !reach::devices_for(root.holder as usize, root.devices, root.grant_to, to, owned) != 0 {
            return Err(ErrorCode::Denied);
        }
        if self.clients[client].usage.grants >= self.cfg.clients[client].max_grants {
            return Err(ErrorCode::QuotaGrants);
        }
        let child = self.caps.iter().position(Option::is_none).ok_or(ErrorCode::NoCapabilitySlot)?;
        let theirs = self.clients[to].handles.iter().position(Option::is_none).ok_or(ErrorCode::NoHandleSlot)?;
        let ours = self.clients[client]
            .handles
            .iter()
            .enumerate()
            .position(|(i, s)| s.is_none() && !(client == to && i == theirs))
            .ok_or(ErrorCode::NoHandleSlot)?;
        self.caps[child] = Some(Cap {
            holder: to as u16,
            region: cap.region,
            pa,
            len,
            rights,
            devices,
            grant_to: cap.grant_to,
            parent: Some(ci),
            first_child: NIL,
            next_sibling: cap.first_child,
            going: false,
        });
        if let Some(parent) = self.caps[ci as usize].as_mut() {
            parent.first_child = child as u16;
        }
        self.clients[to].handles[theirs] = Some(Slot::Cap(child as u16));
        self.clients[client].handles[ours] = Some(Slot::Grant(child as u16));
        self.clients[client].usage.grants += 1;
        Ok((Handle(ours as u32), Handle(theirs as u32)))
    }

    /// The description's capability that capability `i` derives from, and the devices
    /// that every capability on the way from `i` to it (both included) held by client
    /// `to` names (all devices if `to` holds none of them).
    pub(super) fn lineage(&self, mut i: u16, to: usize) -> (Cap, u64) {
        let mut narrowed = u64::MAX;
        // Parents are always older and a subtree is always removed whole, so chains end
        // at a root; the bound only guards against a bug.
        for _ in 0..self.caps.len() {
            let Some(c) = self.caps[i as usize] else { break };
            if c.holder as usize == to {
                narrowed &= c.devices;
            }
            match c.parent {
                Some(p) => i = p,
                None => break,
            }
        }
        let root = self.caps[i as usize].unwrap_or(Cap {
            holder: u16::MAX,
            region: 0,
            pa: 0,
            len: 0,
            rights: Rights(0),
            devices: 0,
            grant_to: 0,
            parent: None,
            first_child: NIL,
            next_sibling: NIL,
            going: false,
        });
        (root, narrowed)
    }

    /// RELEASE: a received capability goes, with what was derived from it.
    pub(super) fn release(&mut self, client: usize, h: Handle) -> Result<()> {
        let (ci, cap) = self.cap_of(client, h)?;
        if cap.parent.is_none() {
            return Err(ErrorCode::Denied);
        }
        self.remove_subtree(ci)
    }

    pub(super) fn revoke(&mut self, client: usize, g: Handle) -> Result<()> {
        let root = match self.clients[client].handles.get(g.0 as usize).copied().flatten() {
            Some(Slot::Grant(i)) => i,
            Some(Slot::Cap(_)) => return Err(ErrorCode::Denied),
            None => return Err(ErrorCode::BadHandle),
        };
        self.remove_subtree(root)
    }

    /// Remove capability `root`, everything derived from it, and every mapping made with
    /// any of them, on every device. `Ok` once the IOMMU confirmed every removal;
    /// `Hardware` if it did not confirm some (those are pending, their devices blocked).
    /// The capabilities go either way: what is pending no longer depends on them.
    ///
    /// The subtree is marked, then each device any of it may map for is walked once
    /// (`remove_marked`): the cost is the subtree's size and the mappings of its holders'
    /// devices, which their mapping quotas bound, not the tables' sizes.
    pub(super) fn remove_subtree(&mut self, root: u16) -> Result<()> {
        if self.caps.get(root as usize).is_none_or(Option::is_none) {
            return Ok(());
        }
        let devices = self.mark_going(root);
        let result = self.remove_marked(devices);
        self.drop_subtree(root);
        result
    }

    /// Mark capability `root` and everything derived from it as going; returns the
    /// devices their mappings may be on (the union of their `devices`). The subtree is
    /// walked through its own links (children, siblings, parents), so the walk needs no
    /// memory in proportion to the capability table.
    pub(super) fn mark_going(&mut self, root: u16) -> u64 {
        let mut devices = 0;
        let mut c = root;
        while c != NIL {
            if let Some(cap) = self.caps.get_mut(c as usize).and_then(Option::as_mut) {
                cap.going = true;
                devices |= cap.devices;
            }
            c = self.next_before_children(root, c);
        }
        devices
    }

    /// Is `ci` a live capability marked going? (`NO_CAP` is not.)
    #[inline(always)]
    fn going(&self, ci: u16) -> bool {
        self.caps.get(ci as usize).and_then(Option::as_ref).is_some_and(|c| c.going)
    }

    /// Remove every mapping of a capability marked going from `devices` (those the marked
    /// capabilities may map for), each device's index walked once, and then retry every
    /// removal pending on any device. `Ok` once the IOMMU confirmed every one; `Hardware`
    /// if not (those pending, their devices blocked, their `cap` `NO_CAP`).
    pub(super) fn remove_marked(&mut self, devices: u64) -> Result<()> {
        let mut result = Ok(());
        let mut left = devices;
        while left != 0 {
            let d = left.trailing_zeros() as usize;
            left &= left - 1;
            if d < self.cfg.devices.len() {
                if let Err(e) = self.remove_going_from(d) {
                    result = Err(e);
                }
            }
        }
        // A removal an earlier request could not confirm may be of the same memory (the
        // subtree's, or an earlier grant of it whose capability is gone): `Ok` only once
        // every removal pending on any device is confirmed.
        for d in 0..self.cfg.devices.len() {
            if self.devices[d].pending > 0 && result.is_ok() {
                result = self.settle(d);
            }
        }
        result
    }

    /// Remove device `d`'s mappings of capabilities marked going, in IOVA order,
    /// `UNMAP_BATCH` under one invalidation (`remove_mappings`): a walk of its index
    /// collects a batch and stops, the batch is removed, and the walk resumes above it.
    /// What the IOMMU did not confirm, and what was pending already, stays pending with
    /// its `cap` `NO_CAP`: the capability is about to go.
    fn remove_going_from(&mut self, d: DeviceIndex) -> Result<()> {
        let mut result = Ok(());
        let mut from = 0;
        loop {
            let mut batch = [0u16; UNMAP_BATCH];
            let (mut n, mut resume) = (0, None);
            // The last capability looked at, and whether it is going: a device's mappings
            // are mostly of few capabilities, so most steps look at none.
            let mut last = (NO_CAP, false);
            let (tree, root) = self.view(d);
            // (Each mapping and capability read where it is, not copied out: a walk
            // step is what a REVOKE costs per mapping of the devices.)
            tree.walk_from(root, from, |i| {
                let Some(m) = self.maps.get(i as usize).and_then(Option::as_ref) else { return true };
                if m.cap != last.0 {
                    last = (m.cap, self.going(m.cap));
                }
                if last.1 {
                    batch[n] = i;
                    n += 1;
                    if n == UNMAP_BATCH {
                        resume = Some(m.iova + m.len());
                        return false;
                    }
                }
                true
            });
            // Pending already: not sent again (its device is blocked until a retry, which
            // `settle` makes), only orphaned. The others, to the IOMMU.
            let mut k = 0;
            for j in 0..n {
                let i = batch[j];
                if let Some(m) = self.maps[i as usize].as_mut() {
                    if m.pending {
                        m.cap = NO_CAP;
                    } else {
                        batch[k] = i;
                        k += 1;
                    }
                }
            }
            if let Err(e) = self.remove_mappings(d, &batch[..k]) {
                result = Err(e);
                for &i in &batch[..k] {
                    if let Some(m) = self.maps[i as usize].as_mut() {
                        m.cap = NO_CAP;
                    }
                }
            }
            match resume {
                Some(f) => from = f,
                None => return result,
            }
        }
    }

    /// Capability `root` and its subtree, marked going and their mappings removed or
    /// orphaned (`remove_marked`), go: out of the parent's list of children, their
    /// handles and their granters' grant handles and counts, their slots.
    pub(super) fn drop_subtree(&mut self, root: u16) {
        if self.caps.get(root as usize).is_none_or(Option::is_none) {
            return;
        }
        // Capabilities and handles go only here: no client's last MAP lookup outlives them.
        self.forget_map_lookups();
        // Out of its parent's list of children.
        if let Some(parent) = self.caps[root as usize].and_then(|c| c.parent) {
            let mut at = self.caps[parent as usize].map_or(NIL, |p| p.first_child);
            if at == root {
                let after = self.caps[root as usize].map_or(NIL, |c| c.next_sibling);
                if let Some(p) = self.caps[parent as usize].as_mut() {
                    p.first_child = after;
                }
            } else {
                while at != NIL {
                    let after = self.caps[at as usize].map_or(NIL, |c| c.next_sibling);
                    if after == root {
                        let skip = self.caps[root as usize].map_or(NIL, |c| c.next_sibling);
                        if let Some(prev) = self.caps[at as usize].as_mut() {
                            prev.next_sibling = skip;
                        }
                        break;
                    }
                    at = after;
                }
            }
        }
        // Handles parents before children while nothing is freed, then the slots children
        // before parents.
        let mut c = root;
        while c != NIL {
            let Some(cap) = self.caps[c as usize] else { break };
            // Its granter is its parent's holder; the parent is still there (nothing is
            // freed until the walk below).
            let granter = cap.parent.and_then(|p| self.caps[p as usize]).map(|p| p.holder as usize);
            if let Some(g) = granter {
                self.clients[g].usage.grants = self.clients[g].usage.grants.saturating_sub(1);
                for slot in self.clients[g].handles.iter_mut() {
                    if *slot == Some(Slot::Grant(c)) {
                        *slot = None;
                    }
                }
            }
            for slot in self.clients[cap.holder as usize].handles.iter_mut() {
                if *slot == Some(Slot::Cap(c)) {
                    *slot = None;
                }
            }
            c = self.next_before_children(root, c);
        }
        let mut c = self.deepest_first(root);
        while c != NIL {
            // The next one is found before `c` goes: it needs `c`'s sibling and parent.
            let next = self.next_after_children(root, c);
            self.caps[c as usize] = None;
            c = next;
        }
    }

    /// The links of capability `c` (`NIL` for none): first child, next sibling, parent.
    fn links(&self, c: u16) -> (u16, u16, u16) {
        self.caps
            .get(c as usize)
            .copied()
            .flatten()
            .map_or((NIL, NIL, NIL), |c| (c.first_child, c.next_sibling, c.parent.unwrap_or(NIL)))
    }

    /// After `c` in `root`'s subtree, parents before children (`NIL` after the last).
    fn next_before_children(&self, root: u16, c: u16) -> u16 {
        let (child, _, _) = self.links(c);
        if child != NIL {
            return child;
        }
        let mut at = c;
        while at != root && at != NIL {
            let (_, sibling, parent) = self.links(at);
            if sibling != NIL {
                return sibling;
            }
            at = parent;
        }
        NIL
    }

    /// The first of `c`'s subtree with its children before it: down the first children.
    fn deepest_first(&self, mut c: u16) -> u16 {
        loop {
            let (child, _, _) = self.links(c);
            if child == NIL {
                return c;
            }
            c = child;
        }
    }

    /// After `c` in `root`'s subtree, children before parents (`NIL` after `root`).
    fn next_after_children(&self, root: u16, c: u16) -> u16 {
        if c == root {
            return NIL;
        }
        match self.links(c) {
            (_, sibling, _) if sibling != NIL => self.deepest_first(sibling),
            (_, _, parent) => parent,
        }
    }
}
