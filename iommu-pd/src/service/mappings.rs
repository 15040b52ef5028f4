//! Mappings: MAP and UNMAP, the IOVA allocator, each device's index of its mappings,
//! static mappings, and removals the IOMMU must confirm (a failed one stays pending and
//! blocks its device until a retry is confirmed).

use super::map_window::MapWindow;
use super::*;
use crate::hw::MapRefused;

/// What `held` found for a MAP's handle and device: what MAP's later checks and its
/// mapping need of the capability (fixed for its life: GRANT makes new capabilities and
/// changes none), and the device's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Held {
    /// The handle and device as the request named them.
    pub(super) handle: Handle,
    pub(super) device_id: DeviceId,
    /// The capability's region, slot, memory and rights. (The region before the slot:
    /// so laid out, the two are the word the mapping's record (`Mapping`) holds them in,
    /// and the booking copies it with one store; the other way round, it swapped them
    /// first.) Its memory as MAP may take it (`MapWindow`: page-aligned, not wrapping).
    region: u16,
    ci: u16,
    mem: MapWindow,
    rights: Rights,
    device: DeviceIndex,
}

/// A client's last MAP call's lookup, kept across calls: its first message register as
/// it came (the capability, the rights and the device it names), and what `held` found
/// for them. `key` is `NO_MAP_KEY` when there is none. Valid while no capability or
/// handle goes (`Service::forget_map_lookups`, which `remove_subtree` calls before it
/// removes any; nothing else removes or changes one).
#[derive(Debug, Clone, Copy)]
pub(super) struct LastMap {
    key: u64,
    held: Held,
    /// The rights the key names, decoded.
    rights: Rights,
}

/// `LastMap::key` when there is no lookup: a first register whose rights byte is 0xff,
/// which `decode_map_names` refuses. A client may still send it, so `map_call` never
/// takes it as a hit.
const NO_MAP_KEY: u64 = u64::MAX;

impl LastMap {
    pub(super) const NONE: LastMap = LastMap {
        key: NO_MAP_KEY,
        held: Held {
            handle: Handle(0),
            device_id: DeviceId(0),
            ci: 0,
            region: 0,
            mem: MapWindow::NONE,
            rights: Rights(0),
            device: 0,
        },
        rights: Rights(0),
    };
}

/// A MAP that `map_check` allowed and `map_apply` makes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planned {
    cap: u16,
    region: u16,
    pub(super) device: DeviceIndex,
    pub(super) iova: u64,
    pa: u64,
    pub(super) len: u64,
    rights: Rights,
    /// The free slot the room check found, on top of the free stack: the one the
    /// mapping is booked in (`book_planned`), so the booking does not look at the stack
    /// again. Every `Planned` is booked or dropped before any slot is booked or freed
    /// (the call books it at once; a queue batch that confirms its removals in between
    /// checks again).
    slot: u16,
}

impl Planned {
    /// The mapping it makes.
    #[inline(always)]
    fn mapping(&self) -> Mapping {
        Mapping {
            device: self.device as u8,
            region: self.region,
            iova: self.iova,
            pages: (self.len / PAGE) as u32,
            pa: self.pa,
            rights: self.rights,
            cap: self.cap,
            pinned: false,
            pending: false,
        }
    }
}

impl<'a, H: IommuHw> Service<'a, H> {
    /// Make `device`'s static mappings (at boot, and when its client is ready again).
    pub(super) fn make_static_maps(&mut self, device: DeviceIndex) -> Result<()> {
        for (i, m) in self.cfg.static_maps.iter().enumerate().filter(|(_, m)| m.device == device) {
            // Made already (by an earlier attempt that failed further on): leave it.
            let (tree, root) = self.view(device);
            if tree.find(root, m.iova).is_some_and(|s| self.at(s).pinned) {
                continue;
            }
            let owner = self.cfg.devices[device].owner;
            // The backing capability sits right after the boot ones (`new` put it there,
            // and neither kind is ever removed).
            let ci = self.cfg.caps.len() + i;
            let pa = self.caps.get(ci).copied().flatten().map(|c| c.pa).ok_or(ErrorCode::NoCapabilitySlot)?;
            // A device no client drives has its static mappings and nothing else: no quota.
            if let (Some(u), Some(q)) = (self.clients.get(owner).map(|c| c.usage), self.cfg.clients.get(owner)) {
                if u.mappings >= q.max_mappings {
                    return Err(ErrorCode::QuotaMappings);
                }
                if u.pages + m.len / PAGE > q.max_pages {
                    return Err(ErrorCode::QuotaPages);
                }
            }
            if self.overlaps(device, m.iova, m.len) {
                return Err(ErrorCode::Overlap);
            }
            if !self.room_for_mapping(device) {
                return Err(ErrorCode::NoMappingSlot);
            }
            self.hw.map(device, m.iova, pa, m.len, m.rights).map_err(|_| ErrorCode::Hardware)?;
            self.insert_mapping(Mapping {
                device: device as u8,
                region: m.region as u16,
                iova: m.iova,
                pages: (m.len / PAGE) as u32,
                pa,
                rights: m.rights,
                cap: ci as u16,
                pinned: true,
                pending: false,
            });
            if let Some(c) = self.clients.get_mut(owner) {
                c.usage.mappings += 1;
                c.usage.pages += m.len / PAGE;
            }
        }
        Ok(())
    }

    /// Device `d`'s mappings, ordered by IOVA.
    pub(super) fn view(&self, d: DeviceIndex) -> (&Index<'a>, &Root) {
        (&self.index, &self.devices[d].root)
    }

    /// Is there a mapping slot, and room in the index to file it under `device`?
    pub(super) fn room_for_mapping(&self, device: DeviceIndex) -> bool {
        self.room_in(&self.devices[device])
    }

    /// `room_for_mapping` for the device whose state is `st`: a free slot. That is room
    /// in the index as well, one fact, asked once: the index's pools are sized for the
    /// slot count (`index::leaves_for`, `inners_for`, which `Service::new` asks of the
    /// storage), so while a slot is free the trees hold fewer keys than there are slots,
    /// and every tree can take one more, splits and a new root included, whatever shape
    /// the trees have. (A queued removal filed again after a failed sync relies on the
    /// same argument; the audit checks it after every step of the model-based tests, and
    /// `tests/index_room.rs` fills every slot in the shape that takes the most nodes.)
    #[inline(always)]
    fn room_in(&self, st: &DeviceState) -> bool {
        debug_assert!(self.free_len == 0 || self.index.can_insert(&st.root));
        self.free_len > 0
    }

    /// The mapping in slot `i` (which the index says is in use).
    pub(super) fn at(&self, i: u16) -> Mapping {
        self.maps[i as usize].expect("an indexed slot holds a mapping")
    }

    /// Put `m` in a free slot and into its device's index (the caller checked that there is
    /// room, `room_for_mapping`, and that `m` overlaps nothing of its device). Inlined, so
    /// that `m` is built in its slot rather than on the stack and copied.
    #[inline(always)]
    pub(super) fn insert_mapping(&mut self, m: Mapping) {
        let slot = self.book_mapping(m);
        self.file_mapping(m.device as usize, m.iova, m.len(), slot);
    }

    /// `p`'s mapping in the slot its check found (`Planned::slot`, still the free stack's
    /// top), popped; returns the slot. As `book_mapping`, undone by `free_slot`.
    #[inline(always)]
    fn book_planned(&mut self, p: &Planned) -> u16 {
        debug_assert_eq!(self.free_top(), Some(p.slot), "a planned MAP's slot is the free stack's top");
        self.free_len -= 1;
        self.maps[p.slot as usize] = Some(p.mapping());
        p.slot
    }

    /// The slot a booking would take now (the free stack's top), if one is free: MAP's
    /// room check (`room_in`: a free slot is room in the index as well).
    #[inline(always)]
    fn free_top(&self) -> Option<u16> {
        self.free.get(self.free_len.wrapping_sub(1)).copied()
    }

    /// The first half of `insert_mapping`: `m` in a free slot (the caller checked that
    /// there is one); returns the slot. Until `file_mapping` files it, no index holds it,
    /// and `free_slot` undoes this exactly. (Nothing links it to its capability but
    /// `Mapping::cap`: REVOKE finds it through its device's index.)
    #[inline(always)]
    fn book_mapping(&mut self, m: Mapping) -> u16 {
        debug_assert!(self.room_for_mapping(m.device as usize));
        self.free_len -= 1;
        let slot = self.free[self.free_len];
        self.maps[slot as usize] = Some(m);
        slot
    }

    /// The second half of `insert_mapping`: the mapping booked in `slot`, `len` bytes at
    /// `iova`, filed in device `d`'s index, and the allocator's next IOVA kept.
    #[inline(always)]
    fn file_mapping(&mut self, d: DeviceIndex, iova: u64, len: u64, slot: u16) {
        // `room_for_mapping` said there is room, and nothing has been filed since.
        let st = &mut self.devices[d];
        self.index.insert_with_room(&mut st.root, iova, slot);
        st.next_iova = st.next_iova.max(iova + len);
    }

    /// A mapping of `d` that ended at `end` has left its index: if it was the highest,
    /// the allocator's next IOVA comes down to the end of the one below it (or the
    /// window's first page). (Only the highest mapping ends at `next_iova`: mappings are
    /// disjoint and not empty.)
    #[inline(always)]
    pub(super) fn unindexed(&mut self, d: DeviceIndex, end: u64) {
        if end == self.devices[d].next_iova {
            self.lower_next_iova(d);
        }
    }

    /// `d`'s next IOVA from its index and its window: the end of its highest mapping, or
    /// its window's first page (0 if that does not fit).
    #[cold]
    fn lower_next_iova(&mut self, d: DeviceIndex) {
        let (tree, root) = self.view(d);
        let top = tree.last(root).and_then(|i| self.maps[i as usize]).map(|m| m.iova + m.len());
        let dc = &self.cfg.devices[d];
        let base = window_first_page(dc).unwrap_or(0);
        self.devices[d].next_iova = top.unwrap_or(base).max(base);
    }

    /// Take the mapping in slot `i` out of its device's index and free the slot.
    pub(super) fn remove_mapping(&mut self, i: usize) -> Option<Mapping> {
        let m = self.maps[i]?;
        self.index.remove(&mut self.devices[m.device as usize].root, m.iova);
        self.unindexed(m.device as usize, m.iova + m.len());
        self.free_slot(i);
        Some(m)
    }

    /// Free slot `i`, whose mapping is out of its device's index already: back on the
    /// free stack.
    #[inline]
    pub(super) fn free_slot(&mut self, i: usize) {
        self.maps[i] = None;
        self.free[self.free_len] = i as u16;
        self.free_len += 1;
    }

    /// Does `[iova, iova + len)` overlap a mapping of `device`? Mappings of a device are
    /// disjoint, so only the last one starting below the range's end can.
    pub(super) fn overlaps(&self, device: DeviceIndex, iova: u64, len: u64) -> bool {
        let (tree, root) = self.view(device);
        // At or above the end of the highest mapping (the index keeps it: no search), as
        // where a window filled upwards takes its next buffer: nothing to overlap.
        let top = tree.last(root).and_then(|i| self.maps[i as usize].as_ref()).map_or(0, |m| m.iova + m.len());
        if iova >= top {
            return false;
        }
        let last = iova.saturating_add(len - 1);
        tree.floor(root, last)
            .is_some_and(|i| self.maps[i as usize].is_some_and(|m| m.iova.saturating_add(m.len()) > iova))
    }

    /// A free, page-aligned IOVA range of `len` bytes in the device's window, from the
    /// description and the index alone: just above the device's highest mapping if that
    /// fits, otherwise the lowest gap that fits (first fit, a walk in IOVA order). MAP
    /// asks only when the range does not fit at `next_iova` (`DeviceState::fits_above`),
    /// where this gives the same answer without a search.
    #[cold]
    pub(super) fn alloc_iova_searched(&self, device: DeviceIndex, len: u64) -> Option<u64> {
        let dc = &self.cfg.devices[device];
        let end = dc.iova_base.checked_add(dc.iova_size)?;
        let base = window_first_page(dc)?;
        let (tree, root) = self.view(device);
        let top = tree.last(root).map(|i| self.at(i).iova + self.at(i).len());
        let bump = top.unwrap_or(base).max(base);
        if bump.checked_add(len).is_some_and(|t| t <= end) {
            return Some(bump);
        }
        self.first_fit(device, base, end, len)
    }

    /// The lowest gap of `len` bytes in `[base, end)` between `device`'s mappings.
    #[cold]
    fn first_fit(&self, device: DeviceIndex, base: u64, end: u64, len: u64) -> Option<u64> {
        let (tree, root) = self.view(device);
        let mut candidate = base;
        let mut found = None;
        tree.walk(root, |i| {
            let m = self.at(i);
            if m.iova.saturating_add(m.len()) <= candidate {
                return true;
            }
            if candidate.checked_add(len).is_some_and(|t| t <= m.iova) {
                found = Some(candidate);
                return false;
            }
            candidate = m.iova + m.len();
            true
        });
        found.or_else(|| candidate.checked_add(len).is_some_and(|t| t <= end).then_some(candidate))
    }

    /// MAP of a decoded request, checked and made: `dispatch`'s, which `handle_with`
    /// never hands a MAP (the call's own way is `map_call`, with the client's last
    /// lookup), so that every decoded request still has its path.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn map(
        &mut self,
        client: usize,
        h: Handle,
        device: DeviceId,
        offset: u64,
        len: u64,
        iova: Option<u64>,
        rights: Rights,
    ) -> Result<u64> {
        let p = self.map_check(client, h, device, offset, len, iova, rights)?;
        self.map_apply(client, p)
    }

    /// MAP checked in full, nothing changed yet: the capability, the device, the range,
    /// the quotas, room in the tables, and the IOVA (the one asked for, in the window and
    /// free, unless the IOMMU checks that in `map_apply`; or one the allocator found).
    /// The queue looks at the IOVA before `map_apply` (break-before-make against its
    /// removals in flight).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn map_check(
        &self,
        client: usize,
        h: Handle,
        device: DeviceId,
        offset: u64,
        len: u64,
        iova: Option<u64>,
        rights: Rights,
    ) -> Result<Planned> {
        let held = self.held(client, h, device)?;
        self.map_check_held(&held, offset, len, iova, rights, |s| s.usage_of(client))
    }

    /// The first of MAP's checks: `h` names a capability `client` holds, and `device` is
    /// the client's and one the capability may map for. What it finds depends on nothing
    /// a MAP or an UNMAP changes (only GRANT, REVOKE, RELEASE and a teardown change
    /// capabilities, and the description owns the devices), so a queue batch keeps it for
    /// its entries that name the same handle and device.
    #[inline(always)]
    pub(super) fn held(&self, client: usize, h: Handle, device: DeviceId) -> Result<Held> {
        let (ci, cap) = self.cap_of(client, h)?;
        let d = self.own_device(client, device)?;
        if cap.devices & (1 << d) == 0 {
            return Err(ErrorCode::BadDevice);
        }
        Ok(Held {
            handle: h,
            device_id: device,
            ci,
            region: cap.region,
            mem: MapWindow::of(cap.pa, cap.len),
            rights: cap.rights,
            device: d,
        })
    }

    /// MAP as a call, from its message registers. Its first register names the
    /// capability, the rights and the device; when it is the one the client's last MAP
    /// sent, what that MAP's `held` found stands (no capability or handle has gone since:
    /// `forget_map_lookups`), so its decoding and `held` are not made again. Every check
    /// after them is made as always, in the same order (`map_check_held`).
    #[inline(always)]
    pub(super) fn map_call(&mut self, client: usize, mrs: &[u64]) -> Result<u64> {
        let (key, offset, len, iova) = iommu_protocol::decode_map(mrs)?;
        let last = &self.clients[client].last_map;
        // `NO_MAP_KEY` is a register a client can send: it is decoded (and refused), never
        // taken for the "no lookup" entry's device 0 and empty capability.
        let hit = last.key == key && key != NO_MAP_KEY;
        let (held, rights) = if hit { (last.held, last.rights) } else { self.map_lookup(client, key)? };
        let p = self.map_check_held(&held, offset, len, iova, rights, |s| s.usage_of(client))?;
        self.map_booked(client, p)
    }

    /// `map_apply` for the call, in another order: the mapping is booked (its slot,
    /// record and its client's usage) before the IOMMU maps it, and filed in its
    /// device's index after. Fewer of its values are then kept across the driver's
    /// call, which must save them. If the IOMMU refuses, the booking is undone before the
    /// refusal is looked at (`map_refused` searches the index, which never held it): the
    /// same reply, nothing changed.
    #[inline(always)]
    fn map_booked(&mut self, client: usize, p: Planned) -> Result<u64> {
        // Usage first: `map_check_held` has just looked at the client's tables, with
        // nothing stored since, so the compiler finds them again without a bounds check.
        let usage = &mut self.clients[client].usage;
        usage.mappings += 1;
        usage.pages += p.len / PAGE;
        let slot = self.book_planned(&p);
        if let Err(e) = self.hw.map_if_free(p.device, p.iova, p.pa, p.len, p.rights) {
            self.unbook(client, slot);
            return Err(self.map_refused(p.device, p.iova, p.len, e));
        }
        self.file_mapping(p.device, p.iova, p.len, slot);
        Ok(p.iova)
    }

    /// `map_booked`'s booking in `slot` undone: the IOMMU refused the mapping.
    #[cold]
    #[inline(never)]
    fn unbook(&mut self, client: usize, slot: u16) {
        if let Some(m) = self.maps[slot as usize] {
            self.free_slot(slot as usize);
            let usage = &mut self.clients[client].usage;
            usage.mappings -= 1;
            usage.pages -= m.len() / PAGE;
        }
    }

    /// A MAP call's first register decoded and `held` made for it, remembered as the
    /// client's last lookup if it was found (a refusal is not).
    #[inline(never)]
    fn map_lookup(&mut self, client: usize, key: u64) -> Result<(Held, Rights)> {
        let (h, device, rights) = iommu_protocol::decode_map_names(key)?;
        let held = self.held(client, h, device)?;
        self.clients[client].last_map = LastMap { key, held, rights };
        Ok((held, rights))
    }

    /// Does `client`'s last MAP lookup (if it has one) say what decoding its key and
    /// `held` would find now? (The audit's question.)
    #[cfg(any(test, feature = "model"))]
    pub(super) fn last_map_stands(&self, client: usize) -> bool {
        let last = &self.clients[client].last_map;
        if last.key == NO_MAP_KEY {
            return true;
        }
        let now = iommu_protocol::decode_map_names(last.key)
            .ok()
            .and_then(|(h, device, rights)| Some((self.held(client, h, device).ok()?, rights)));
        now == Some((last.held, last.rights))
    }

    /// Every client's last MAP lookup forgotten: a capability or a handle is about to go,
    /// and one may name it (or a handle may name another capability later).
    pub(super) fn forget_map_lookups(&mut self) {
        for c in self.clients.iter_mut() {
            c.last_map = LastMap::NONE;
        }
    }

    /// `client`'s usage and quota, for `map_check_held`.
    #[inline(always)]
    pub(super) fn usage_of(&self, client: usize) -> (Usage, Quota) {
        let ct = &self.clients[client];
        (ct.usage, ct.quota)
    }

    /// MAP's checks after `held`'s, in the same order as the call has always made them.
    /// `usage` gives the client's usage and quota (`usage_of`) where the quota check needs
    /// them: the call reads them there (`|s| s.usage_of(client)`), a queue entry before
    /// the checks (`|_| usage`, read just before). The same values either way, but where
    /// the client's table is read changes what the compiler keeps in registers around
    /// it: read first, a queued request took 8.5 instructions fewer and a MAP call 4.6
    /// more (`benches/instructions.sh`).
    #[inline(always)]
    pub(super) fn map_check_held(
        &self,
        held: &Held,
        offset: u64,
        len: u64,
        iova: Option<u64>,
        rights: Rights,
        usage: impl FnOnce(&Self) -> (Usage, Quota),
    ) -> Result<Planned> {
        let (ci, cap, d) = (held.ci, held, held.device);
        // The device's and the client's state each looked up once for all the checks.
        let st = &self.devices[d];
        if st.blocked() {
            return Err(self.not_running(d));
        }
        if !cap.rights.contains(rights) {
            return Err(ErrorCode::NoRights);
        }
        // Whole pages, inside the capability: a page is mapped only if the capability
        // covers all of it. (Its memory starts on a page and ends by 2^64, or MAP may
        // take none of it: `MapWindow`, made when `held` looked the capability up.)
        let end = offset.checked_add(len).ok_or(ErrorCode::OutOfRange)?;
        if len == 0 || offset % PAGE != 0 || len % PAGE != 0 || end > cap.mem.len() || len / PAGE > u32::MAX as u64 {
            return Err(ErrorCode::OutOfRange);
        }
        let pa = cap.mem.at(offset);
        let (u, q) = usage(self);
        if u.mappings >= q.mappings {
            return Err(ErrorCode::QuotaMappings);
        }
        if u.pages + len / PAGE > q.pages {
            return Err(ErrorCode::QuotaPages);
        }
        // The room check (`room_in`: a free slot), which finds the slot the booking takes.
        debug_assert_eq!(self.room_in(st), self.free_top().is_some());
        let Some(slot) = self.free_top() else {
            return Err(ErrorCode::NoMappingSlot);
        };
        let iova = match iova {
            Some(v) => {
                let dc = &self.cfg.devices[d];
                let top = v.checked_add(len).ok_or(ErrorCode::OutOfRange)?;
                if v % PAGE != 0 || v < dc.iova_base || top > dc.iova_base.saturating_add(dc.iova_size) {
                    return Err(ErrorCode::OutOfRange);
                }
                // An IOMMU that checks the range itself, before writing, does it in
                // `map_apply`: the same check, once.
                if !H::CHECKS_RANGE_FREE && self.overlaps(d, v, len) {
                    return Err(ErrorCode::Overlap);
                }
                v
            }
            // Just above the highest mapping, where a window filled upwards takes its
            // next buffer: no search.
            None if st.fits_above(len) => st.next_iova,
            None => self.alloc_iova_searched(d, len).ok_or(ErrorCode::NoIova)?,
        };
        Ok(Planned { cap: ci, region: cap.region, device: d, iova, pa, len, rights, slot })
    }

    /// Make the mapping `map_check` allowed: in the IOMMU, then in the books. `Overlap` if
    /// part of the range is mapped (found by the IOMMU when it checks the range,
    /// `IommuHw::CHECKS_RANGE_FREE`, else by `map_check`), `Hardware` if the IOMMU fails;
    /// nothing changed either way.
    #[inline(always)]
    pub(super) fn map_apply(&mut self, client: usize, p: Planned) -> Result<u64> {
        if let Err(e) = self.hw.map_if_free(p.device, p.iova, p.pa, p.len, p.rights) {
            return Err(self.map_refused(p.device, p.iova, p.len, e));
        }
        let slot = self.book_planned(&p);
        self.file_mapping(p.device, p.iova, p.len, slot);
        let usage = &mut self.clients[client].usage;
        usage.mappings += 1;
        usage.pages += p.len / PAGE;
        Ok(p.iova)
    }

    /// The reply to a MAP the IOMMU refused. An IOMMU that checks the range may refuse
    /// for another reason before it looks (a failed SMMU refuses every map first; rights
    /// its descriptors cannot express): its `Hardware` would then hide an overlap that a
    /// service searching its index answers `Overlap`, so the index is searched here, only
    /// when the IOMMU said no, off the path of every MAP that succeeds.
    #[cold]
    #[inline(never)]
    fn map_refused(&self, device: DeviceIndex, iova: u64, len: u64, e: MapRefused) -> ErrorCode {
        match e {
            MapRefused::InUse => ErrorCode::Overlap,
            MapRefused::Hardware if H::CHECKS_RANGE_FREE && self.overlaps(device, iova, len) => ErrorCode::Overlap,
            MapRefused::Hardware => ErrorCode::Hardware,
        }
    }

    pub(super) fn unmap(&mut self, client: usize, device: DeviceId, iovas: &[u64]) -> Result<()> {
        let d = self.own_device(client, device)?;
        // One IOVA, the usual UNMAP: no list to build or to check for repeats.
        if let [iova] = *iovas {
            if !self.devices[d].unconfirmed() {
                return self.unmap_single(d, iova);
            }
            let m = self.unmappable(d, iova)?;
            self.settle(d)?;
            return self.remove_mappings(d, &[m]);
        }
        let mut found = [0u16; MAX_UNMAP_RANGES];
        for (i, &iova) in iovas.iter().enumerate() {
            let m = self.unmappable(d, iova)?;
            if found[..i].contains(&m) {
                return Err(ErrorCode::NotMapped);
            }
            found[i] = m;
        }
        // Removals of this device that the IOMMU did not confirm go first (the ones asked
        // for again among them): until they are, nothing else is removed.
        self.settle(d)?;
        self.remove_mappings(d, &found[..iovas.len()])
    }

    /// UNMAP of one IOVA of a device with no removal pending, in one descent of the index
    /// (`take_removed`), confirmed by the IOMMU before the mapping leaves the index.
    fn unmap_single(&mut self, device: DeviceIndex, iova: u64) -> Result<()> {
        let (slot, _) = self.take_removed(device, iova, false)?;
        let m = self.at(slot);
        self.free_slot(slot as usize);
        self.count_removed(&m);
        Ok(())
    }

    /// Take `device`'s mapping at `iova` out of its index if the IOMMU removes it, in one
    /// descent: at the IOVA's leaf, before anything changes, the mapping is
    /// checked (not pinned) and the IOMMU asked to remove its range (`unmap_one`, or when
    /// `deferred` `unmap_deferred`, which a later sync confirms); only if it does does
    /// it leave the index (its slot still filled: the caller frees it). Otherwise the index
    /// is as it was: `NotMapped`, `Denied`, or, when the IOMMU was asked and failed, the
    /// removal unconfirmed (`Hardware`, pending, its device blocked). Taken, or kept
    /// unconfirmed: the slot and the mapping's end.
    #[inline(always)]
    pub(super) fn take_removed(&mut self, device: DeviceIndex, iova: u64, deferred: bool) -> Result<(u16, u64)> {
        // Whether the IOMMU was asked (the mapping's end, 0 if not): a mapping kept after
        // that is one it did not remove.
        let mut asked = 0;
        let gate = RemovalGate { maps: self.maps, hw: &mut self.hw, asked: &mut asked, device, deferred };
        match self.index.take(&mut self.devices[device].root, iova, gate) {
            // (Also a mapping a queued UNMAP took out earlier in its batch: gone, for all a
            // call would know.)
            Take::Missing => Err(ErrorCode::NotMapped),
            Take::Kept(slot) if asked != 0 => self.removal_unconfirmed(device, &[slot]).map(|()| (slot, asked)),
            Take::Kept(_) => Err(ErrorCode::Denied),
            Take::Taken(slot) => {
                self.unindexed(device, asked);
                Ok((slot, asked))
            }
        }
    }

    /// The slot of `device`'s mapping at `iova`, if its client may unmap it.
    pub(super) fn unmappable(&self, device: DeviceIndex, iova: u64) -> Result<u16> {
        let (tree, root) = self.view(device);
        let m = tree.find(root, iova).ok_or(ErrorCode::NotMapped)?;
        if self.maps[m as usize].is_some_and(|m| m.pinned) {
            return Err(ErrorCode::Denied);
        }
        Ok(m)
    }

    /// Put the (IOVA, length) of the mappings at `indices` (at most `UNMAP_BATCH`) in
    /// `self.ranges`; returns how many.
    pub(super) fn ranges_of(&mut self, indices: &[u16]) -> usize {
        let mut n = 0;
        for m in indices.iter().take(UNMAP_BATCH).filter_map(|&i| self.maps[i as usize]) {
            self.ranges[n] = (m.iova, m.len());
            n += 1;
        }
        n
    }

    /// Forget the mappings at `indices`: the IOMMU confirmed them gone.
    pub(super) fn forget(&mut self, indices: &[u16]) {
        for &i in indices.iter().take(UNMAP_BATCH) {
            if let Some(m) = self.remove_mapping(i as usize) {
                self.count_removed(&m);
            }
        }
    }

    /// `m` is gone: its owner's usage, and its device's pending count if it was pending.
    pub(super) fn count_removed(&mut self, m: &Mapping) {
        let (d, owner) = (m.device as usize, self.cfg.devices[m.device as usize].owner);
        if let Some(c) = self.clients.get_mut(owner) {
            c.usage.mappings -= 1;
            c.usage.pages -= m.len() / PAGE;
        }
        if m.pending {
            self.devices[d].pending -= 1;
        }
    }

    /// Unmap the mappings at `indices` (all of `device`, none pending, at most
    /// `UNMAP_BATCH`) in the IOMMU under one invalidation, then forget them. If the IOMMU
    /// does not confirm, they stay in the books as pending, the device is blocked, and the
    /// caller hears `Hardware`.
    pub(super) fn remove_mappings(&mut self, device: DeviceIndex, indices: &[u16]) -> Result<()> {
        let confirmed = match *indices {
            [] => return Ok(()),
            [i] => match self.maps[i as usize] {
                Some(m) => self.hw.unmap_one(device, m.iova, m.len()),
                None => return Ok(()),
            },
            _ => match self.ranges_of(indices) {
                0 => return Ok(()),
                n => self.hw.unmap(device, &self.ranges[..n]),
            },
        };
        if confirmed.is_ok() {
            self.forget(indices);
            return Ok(());
        }
        self.removal_unconfirmed(device, indices)
    }

    /// The IOMMU did not confirm the removal of the mappings at `indices` (all of
    /// `device`, in its index): they stay in the books, pending, and the device is blocked.
    /// Always `Err(Hardware)`.
    pub(super) fn removal_unconfirmed(&mut self, device: DeviceIndex, indices: &[u16]) -> Result<()> {
        for &i in indices.iter().take(UNMAP_BATCH) {
            if let Some(m) = self.maps[i as usize].as_mut() {
                if !m.pending {
                    m.pending = true;
                    self.devices[device].pending += 1;
                }
            }
        }
        self.devices[device].set_blocked(Blocks::UNCONFIRMED, true);
        // The translations may still be cached: stop the device. If even that fails, it
        // is retried before any request of any client is served (`retry_blocks`), and
        // every request that could let the device run retries the removal first.
        if self.hw.block(device).is_err() {
            self.block_failed(device);
        }
        Err(ErrorCode::Hardware)
    }

    /// Retry every pending removal of `device`. Once the IOMMU has confirmed them all,
    /// no stale translation is left, so the device translates again unless it is blocked
    /// for another reason (a storm, its client torn down). `Hardware`, with what is still
    /// pending kept and the device blocked, if the IOMMU fails again. (Inline: every
    /// UNMAP asks, and almost never is there anything to retry.)
    #[inline]
    pub(super) fn settle(&mut self, device: DeviceIndex) -> Result<()> {
        if self.devices[device].unconfirmed() {
            self.settle_pending(device)
        } else {
            Ok(())
        }
    }

    fn settle_pending(&mut self, device: DeviceIndex) -> Result<()> {
        let mut from = 0;
        while self.devices[device].unconfirmed() {
            let (idx, n, resume) = self.select_from(device, from, |m| m.pending);
            let found = &idx[..n];
            if found.is_empty() {
                let st = self.devices[device];
                if !st.quarantined() && !st.torn_down() && !st.stopped() {
                    self.enable_or_block(device)?;
                }
                self.devices[device].set_blocked(Blocks::UNCONFIRMED, false);
                break;
            }
            let n = self.ranges_of(found);
            self.hw.retry_unmap(device, &self.ranges[..n]).map_err(|_| ErrorCode::Hardware)?;
            self.forget(found);
            from = resume;
        }
        Ok(())
    }

    /// Up to `UNMAP_BATCH` indices of `device`'s mappings at or above IOVA `from` that
    /// `pick` selects, in IOVA order, and where the next call resumes: the end of the last
    /// one selected. A caller that removes what it selected, or changes it so that `pick`
    /// no longer selects it, resumes there with nothing below left to select, and walks
    /// each mapping it does not select once, not once per batch.
    pub(super) fn select_from(
        &self,
        device: DeviceIndex,
        from: u64,
        pick: impl Fn(&Mapping) -> bool,
    ) -> ([u16; UNMAP_BATCH], usize, u64) {
        let mut idx = [0u16; UNMAP_BATCH];
        let (mut n, mut resume) = (0, from);
        let (tree, root) = self.view(device);
        tree.walk_from(root, from, |i| {
            let m = self.at(i);
            if pick(&m) {
                idx[n] = i;
                n += 1;
                resume = m.iova + m.len();
            }
            n < UNMAP_BATCH
        });
        (idx, n, resume)
    }

    /// Remove every mapping of `device` that `doomed` selects, `UNMAP_BATCH` at a time.
    /// `Err(Hardware)`: some removals were not confirmed and are pending, the device
    /// blocked; the rest are gone.
    pub(super) fn remove_where(&mut self, device: DeviceIndex, doomed: impl Fn(&Mapping) -> bool) -> Result<()> {
        let mut result = Ok(());
        let mut from = 0;
        loop {
            let (idx, n, resume) = self.select_from(device, from, |m| !m.pending && doomed(m));
            if n == 0 {
                return result;
            }
            // Each pass forgets the `n` mappings it found or marks them pending, which the
            // next pass does not select, and the next resumes above them, so this ends.
            if let Err(e) = self.remove_mappings(device, &idx[..n]) {
                result = Err(e);
            }
            from = resume;
        }
    }

    /// The caller's `index`-th mapping, ordered by (device, IOVA).
    pub(super) fn query_mapping(&self, client: usize, index: u64) -> Result<Reply> {
        let mut k = usize::try_from(index).map_err(|_| ErrorCode::NotMapped)?;
        let mut found = None;
        for d in (0..self.cfg.devices.len()).filter(|d| self.cfg.devices[*d].owner == client) {
            let (tree, root) = self.view(d);
            let n = root.len();
            if k < n {
                found = tree.select(root, k).map(|i| (d, self.at(i)));
                break;
            }
            k -= n;
        }
        let (d, m) = found.ok_or(ErrorCode::NotMapped)?;
        let region = self.cfg.regions.get(m.region as usize).ok_or(ErrorCode::NotMapped)?;
        // Laid out by the protocol's `query_mapping` (one definition, which the C header's
        // IOMMU_QUERY_MAPPING_* are generated from), as QUERY's reply is by `query`.
        use iommu_protocol::query_mapping as at;
        let mut v = [0u64; at::VALUES];
        v[at::DEVICE] = d as u64;
        v[at::IOVA] = m.iova;
        v[at::LENGTH] = m.len();
        v[at::RIGHTS] = m.rights.0 as u64;
        v[at::REGION] = m.region as u64;
        v[at::OFFSET] = m.pa - region.pa;
        v[at::PENDING] = m.pending as u64;
        Ok(Reply::ok(&v))
    }

    /// Every device-reachable page as (device, IOVA page, physical page, rights), for
    /// tests and reports.
    pub fn for_each_mapped_page(&self, mut f: impl FnMut(DeviceIndex, u64, u64, Rights)) {
        for m in self.maps.iter().flatten() {
            for p in 0..m.len() / PAGE {
                f(m.device as usize, m.iova + p * PAGE, m.pa + p * PAGE, m.rights);
            }
        }
    }
}

/// `take_removed`'s question at the mapping's leaf (`index::Gate`): a mapping that is not
/// pinned goes if the IOMMU removes it (`IommuHw::unmap_one`, or `unmap_deferred` for a
/// queued UNMAP, which the batch's sync confirms); `asked` becomes its end when the IOMMU
/// is asked. A struct with an inlined method rather than closures, so that the descent
/// holds it inline (a queued UNMAP's hot path).
struct RemovalGate<'m, 'h, H> {
    maps: &'m [Option<Mapping>],
    hw: &'h mut H,
    asked: &'h mut u64,
    device: DeviceIndex,
    deferred: bool,
}

impl<H: IommuHw> crate::index::Gate for RemovalGate<'_, '_, H> {
    #[inline(always)]
    fn allow(self, slot: u16) -> bool {
        match self.maps.get(slot as usize).copied().flatten() {
            Some(m) if !m.pinned => {
                *self.asked = m.iova + m.len();
                let removed = if self.deferred {
                    self.hw.unmap_deferred(self.device, m.iova, m.len())
                } else {
                    self.hw.unmap_one(self.device, m.iova, m.len())
                };
                removed.is_ok()
            }
            _ => false,
        }
    }
}
