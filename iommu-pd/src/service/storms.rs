//! Faults: attribution of a device's fault to its owner and the region it was nearest,
//! the storm check that quarantines a device, and RESUME.

use super::*;

/// A fault as the hardware reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultInput {
    /// StreamID.
    pub stream: u32,
    /// Faulting bus address.
    pub iova: u64,
    /// The device tried to write.
    pub write: bool,
    /// Hardware event type.
    pub kind: u32,
    /// Now, in ticks (for the storm window).
    pub now: u64,
}

/// What became of a fault or stream event the service took (`Service::route_fault`,
/// `Service::route_stream_event`). Only `Client` is told to anyone but the IOMMU PD; the
/// rest are the IOMMU PD's to report, each counted (`Service::stats`) with `n` the count
/// so far, so it can print the first and then every power of two (`Routed::printed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Queued for the client that owns the device: notify it.
    Client(ClientId),
    /// A described device no client drives (it has only the description's iomaps).
    Unowned {
        /// The device, an index into the description's devices.
        device: usize,
        /// Such faults so far (`Stats::unowned_faults`).
        n: u64,
    },
    /// A StreamID no description names: a device nobody described, or one behind a
    /// requester ID the description got wrong.
    Unnamed {
        /// Such faults and events so far (`Stats::unattributed_faults`).
        n: u64,
    },
    /// An event about a described device's stream that is not a translation fault.
    StreamEvent {
        /// The device.
        device: usize,
        /// Such events so far (`Stats::stream_events`).
        n: u64,
    },
}

impl Routed {
    /// Whether the IOMMU PD prints this one: the first of its kind, then at powers of two,
    /// as the PD's log of refused requests is kept, so a device that faults in a loop can
    /// neither flood the console nor keep the PD printing, and the count still shows.
    pub fn printed(&self) -> bool {
        match *self {
            Routed::Client(_) => false,
            Routed::Unowned { n, .. } | Routed::Unnamed { n } | Routed::StreamEvent { n, .. } => n.is_power_of_two(),
        }
    }
}

impl DeviceState {
    /// Counts a fault at `now` and returns how many faults the last `window` ticks hold,
    /// by the sliding-window estimate: the open window's faults, plus the previous
    /// window's in proportion to how much of it the last `window` ticks still cover.
    ///
    /// A window opens at the first fault after a quiet spell (two windows with no fault),
    /// not on a grid fixed at boot: a flood that starts late in a boot-anchored window
    /// would otherwise be cut in two halves that each stay under the limit. The previous
    /// window's share closes the same gap at every later boundary: faults bunched either
    /// side of one still count together.
    fn count_fault(&mut self, now: u64, window: u64) -> u64 {
        let window = window.max(1);
        let elapsed = now.saturating_sub(self.window_start);
        let quiet = self.window_faults == 0 && self.previous_faults == 0;
        if quiet || elapsed >= window.saturating_mul(2) {
            self.window_start = now;
            self.window_faults = 0;
            self.previous_faults = 0;
        } else if elapsed >= window {
            self.window_start += window;
            self.previous_faults = self.window_faults;
            self.window_faults = 0;
        }
        self.window_faults = self.window_faults.saturating_add(1);
        let into = now.saturating_sub(self.window_start).min(window);
        let carried = u128::from(self.previous_faults) * u128::from(window - into) / u128::from(window);
        let recent = carried as u64 + u64::from(self.window_faults);
        self.recent_faults = u32::try_from(recent).unwrap_or(u32::MAX);
        recent
    }

    /// Counts a fault in the drain stamped `now`.
    fn count_drained(&mut self, now: u64) {
        if self.drained[0].0 != now {
            self.drained = [(now, 0), self.drained[0]];
        }
        self.drained[0].1 = self.drained[0].1.saturating_add(1);
    }

    /// Its faults in the drains stamped `stamps`.
    fn drained_in(&self, stamps: [u64; 2]) -> u32 {
        let mut n = 0u32;
        for (at, faults) in self.drained {
            if stamps.contains(&at) {
                n = n.saturating_add(faults);
            }
        }
        n
    }
}

impl<'a, H: IommuHw> Service<'a, H> {
    /// Attribute a fault to its device, owner and region, rate-limit the device, and
    /// queue the record for the owner. Returns the client to notify.
    pub fn record_fault(&mut self, f: FaultInput) -> Option<ClientId> {
        match self.route_fault(f) {
            Routed::Client(c) => Some(c),
            _ => None,
        }
    }

    /// The device that has `stream`, as its first StreamID or another.
    fn device_of_stream(&self, stream: u32) -> Option<usize> {
        self.cfg.devices.iter().position(|dc| dc.stream == stream || dc.extra_streams.contains(&stream))
    }

    /// An event that names a StreamID but is not a translation fault (C_BAD_STREAMID,
    /// C_BAD_STE, F_STREAM_DISABLED...): no client is told (it has no address to place,
    /// and it is the IOMMU's configuration that refused the transaction), but it is
    /// counted, as an unnamed stream's or as a described device's, for the IOMMU PD to
    /// report. On an SMMU whose table does not cover a StreamID, its traffic comes only
    /// as such events.
    pub fn route_stream_event(&mut self, stream: u32) -> Routed {
        match self.device_of_stream(stream) {
            Some(device) => {
                self.stats.stream_events = self.stats.stream_events.saturating_add(1);
                Routed::StreamEvent { device, n: self.stats.stream_events }
            }
            None => {
                self.stats.unattributed_faults = self.stats.unattributed_faults.saturating_add(1);
                Routed::Unnamed { n: self.stats.unattributed_faults }
            }
        }
    }

    /// The IOMMU lost fault records before the service saw them (its event queue
    /// overflowed: on the SMMUv3, EVENTQ_PROD.OVFLG). Whose they were is unknown, and one
    /// device's storm can overflow the queue with another's fault in it: every client's
    /// ring counts one record dropped (carried by its next record and by QUERY). Returns
    /// the clients to notify.
    ///
    /// Devices on probation (resumed from a storm's quarantine) whose records together
    /// filled at least a quarter of the queue (`queue_records`, its capacity) in the drain
    /// that saw the overflow or the drain before it are quarantined again, the largest
    /// contributors first (equals together), until those left running made less than a
    /// quarter together: a
    /// device's storm allowance (`max_faults` faults a window) can hold more than a queue,
    /// so it could otherwise overflow the queue several times after each RESUME before its
    /// faults reached the limit, and several devices each under a quarter could do so
    /// together (before 2026-12-08 each was judged alone). A device on probation whose
    /// records, with those of every device on probation that made no more, are under a
    /// quarter is left running (so a device can be charged in a quiet one's place only by
    /// devices each making fewer records than it, together a quarter), a few faults of its own included: whose records were
    /// lost is unknown, and another device's flood must not keep a well-behaved device
    /// aborting. `now` is the stamp of that drain's records (`FaultInput::now`, one for
    /// the drain); the drain before counts too, since the records that filled the queue
    /// may have been taken just before the SMMU lost one and set the flag. Each quarantined
    /// device's owner's ring gets a record of kind `QUARANTINED_AT_OVERFLOW` naming
    /// it: no fault of its own says so, and the overflow's lost record is every client's.
    pub fn events_lost(&mut self, now: u64, queue_records: u32) -> u64 {
        // First, so that the record below carries the overflow (`dropped_before`).
        let notify = self.every_ring(FaultRing::lost);
        if self.drain_stamps[0] != now {
            self.drain_stamps = [now, self.drain_stamps[0]];
        }
        // The drain before counts unless it saw an overflow of its own: its records were
        // judged there.
        let mut stamps = self.drain_stamps;
        if self.overflow_drain == Some(stamps[1]) {
            stamps[1] = now;
        }
        self.overflow_drain = Some(now);
        let share = queue_records.div_ceil(4).max(1);
        // Charged largest first while the rest still make a quarter together: a flood
        // split over several devices on probation is charged as one device's would be,
        // and what is left unquarantined holds less than a quarter of the queue.
        let devices = self.cfg.devices.len().min(self.devices.len());
        let charged = |st: &DeviceState| if st.probation && !st.quarantined() { st.drained_in(stamps) } else { 0 };
        let mut left: u32 = self.devices[..devices].iter().map(charged).fold(0, u32::saturating_add);
        while left >= share {
            // The largest contributors still running, equals together: a device that
            // made as many as another is charged with it, so that none can have another
            // charged in its place by matching it.
            let most = (0..devices).map(|d| charged(&self.devices[d])).max().unwrap_or(0);
            if most == 0 {
                break;
            }
            for d in 0..devices {
                if charged(&self.devices[d]) == most {
                    left = left.saturating_sub(most);
                    self.quarantine_at_overflow(d);
                }
            }
        }
        notify
    }

    /// Quarantine `d` at an overflow, and name it in its owner's ring: no fault of its
    /// own says so, and the overflow's lost record is every client's.
    fn quarantine_at_overflow(&mut self, d: usize) {
        self.quarantine(d);
        let dc = &self.cfg.devices[d];
        if let Some(ring) = self.rings.get_mut(dc.owner) {
            ring.push(FaultRecord {
                device: d as u32,
                stream: dc.stream,
                kind: iommu_protocol::faults::kind::QUARANTINED_AT_OVERFLOW,
                region: iommu_protocol::faults::NO_REGION,
                quarantined: 1,
                ..FaultRecord::default()
            });
        }
    }

    /// Quarantine `d`, whatever the IOMMU answers: a block it does not confirm is owed and
    /// retried before the next request (`retry_blocks`), and meanwhile the device may not
    /// map. Leaving it unquarantined would forget the storm when the faults stop, with the
    /// device still translating.
    fn quarantine(&mut self, d: usize) {
        self.devices[d].set_blocked(Blocks::QUARANTINED, true);
        self.devices[d].times_quarantined = self.devices[d].times_quarantined.wrapping_add(1);
        self.stats.quarantines += 1;
        if self.hw.block(d).is_err() {
            self.block_failed(d);
        }
    }

    /// `f` on every client's ring; returns the clients (all of them), to notify.
    fn every_ring(&mut self, f: impl FnMut(&mut FaultRing)) -> u64 {
        let clients = self.cfg.clients.len().min(self.rings.len());
        crate::faults::every_ring(&mut self.rings[..clients], f)
    }

    /// The IOMMU failed while serving and was failed closed as far as it could be (SMMUv3
    /// service failure, or it stopped answering; an MMU-500 failed by its driver): nothing will be served again, and a client waiting on its
    /// mappings (a queued batch, a removal still pending) would wait for ever. Every
    /// client's ring gets a record of kind `SERVICE_FAILED`, for it to learn without
    /// calling; a full ring counts it dropped, as any record, and every ring's `failed`
    /// is set all the same (`FaultRing::fail`), saying whether `dma_stopped`: what
    /// failing the IOMMU closed confirmed. Returns the clients to notify: every client.
    pub fn service_failed(&mut self, dma_stopped: bool) -> u64 {
        self.every_ring(|ring| ring.fail(dma_stopped))
    }

    /// `record_fault`, saying what became of the fault when no client is told: a
    /// StreamID no description names, or a device no client drives, counted for the
    /// IOMMU PD to report.
    pub fn route_fault(&mut self, f: FaultInput) -> Routed {
        if self.drain_stamps[0] != f.now {
            self.drain_stamps = [f.now, self.drain_stamps[0]];
        }
        let Some(d) = self.device_of_stream(f.stream) else {
            self.stats.unattributed_faults = self.stats.unattributed_faults.saturating_add(1);
            return Routed::Unnamed { n: self.stats.unattributed_faults };
        };
        let owner = self.cfg.devices[d].owner;
        let (mut region, mut offset, mut near) = (u32::MAX, 0, 0);
        let mut best = u64::MAX;
        // The nearest mappings are the last one starting at or below the address and the
        // first one above it.
        let neighbours = {
            let (tree, root) = self.view(d);
            [tree.floor(root, f.iova), tree.ceil(root, f.iova)]
        };
        for m in neighbours.into_iter().flatten().map(|i| self.at(i)).filter(|m| !m.pending) {
            let dist = if f.iova < m.iova {
                m.iova - f.iova
            } else if f.iova >= m.iova + m.len() {
                f.iova - (m.iova + m.len() - 1)
            } else {
                0
            };
            if dist < best && dist <= PAGE {
                best = dist;
                let reg = m.region as usize;
                let base = self.cfg.regions.get(reg).map(|r| r.pa).unwrap_or(0);
                let at = if dist == 0 {
                    m.pa + (f.iova - m.iova)
                } else if f.iova < m.iova {
                    m.pa
                } else {
                    // (Its last byte: a mapping may end at 2^64, `MapWindow`.)
                    m.pa + (m.len() - 1)
                };
                region = reg as u32;
                offset = at - base;
                near = (dist != 0) as u32;
            }
        }
        let policy = self.cfg.faults;
        let st = &mut self.devices[d];
        st.count_drained(f.now);
        let storm = st.count_fault(f.now, policy.window) > u64::from(policy.max_faults);
        let mut quarantined = 0;
        if storm && !st.quarantined() {
            self.quarantine(d);
            quarantined = 1;
        }
        let record = FaultRecord {
            seq: 0,
            device: d as u32,
            stream: f.stream,
            iova: f.iova,
            kind: f.kind,
            write: f.write as u32,
            region,
            near,
            offset,
            quarantined,
            dropped_before: 0,
            repeats: 0,
            iova_last: f.iova,
        };
        // A device no client drives (it has only the description's iomaps): its faults are
        // the IOMMU PD's to report.
        let Some(ring) = self.rings.get_mut(owner) else {
            self.stats.unowned_faults = self.stats.unowned_faults.saturating_add(1);
            return Routed::Unowned { device: d, n: self.stats.unowned_faults };
        };
        if !ring.coalesce(&record) {
            ring.push(record);
        }
        Routed::Client(ClientId(owner as u32))
    }

    /// RESUME: a device quarantined by a storm (if the description allows), blocked by an
    /// unconfirmed removal, or stopped by its owner runs again, once every pending removal
    /// of it is confirmed; a stopped one with its static mappings made again first.
    /// A stopped device whose function owes its reset (STOP inside its client's ration)
    /// is reset first, or, inside the ration still, refused `ResetRationed` with nothing
    /// done. A quarantined one is resumed at most once per storm window
    /// (`FaultPolicy::resume_rest_ms`): `ResumeRationed`, nothing done, before then.
    pub(super) fn resume(&mut self, client: usize, device: DeviceId, pci: &mut dyn ConfigSpace) -> Result<()> {
        let d = self.own_device(client, device)?;
        // A function that stopped answering runs again only once it answers and is back
        // where the description places it.
        self.recover_function(d, pci)?;
        let st = self.devices[d];
        if !st.quarantined() && !st.unconfirmed() && !st.stopped() && !st.reset_owed {
            return Ok(());
        }
        if st.torn_down() || (st.quarantined() && !self.cfg.devices[d].resume_allowed) {
            return Err(ErrorCode::Denied);
        }
        // Each storm may overflow the event queue every device shares (`events_lost`), and
        // the fresh start below would let the next one run its whole allowance again.
        let now = pci.now_ms();
        if st.quarantined() && now < st.storm_rest_until_ms {
            return Err(ErrorCode::ResumeRationed);
        }
        if st.reset_owed {
            self.pay_owed_reset(client, d, pci)?;
        }
        self.settle(d)?;
        if st.stopped() {
            // While it is still blocked; if this fails part way, it stays stopped, and the
            // next RESUME skips what was made.
            self.make_static_maps(d)?;
        }
        self.enable_or_block(d)?;
        // A fresh start for the storm window; the device's mappings stay as they are, and
        // so do its ration and its probation, which (re)start only if this ended a storm's
        // quarantine, and
        // whether its Bus Master is kept off after a stop that did not read back off.
        let DeviceState {
            root,
            pending,
            next_iova,
            window_end,
            master_kept_off,
            mut storm_rest_until_ms,
            mut probation,
            mut drained,
            times_quarantined,
            ..
        } = self.devices[d];
        if st.quarantined() {
            storm_rest_until_ms = now.saturating_add(self.cfg.faults.resume_rest_ms);
            probation = true;
            // The records that brought the quarantine were paid for by it; a STOP's
            // RESUME keeps them, or a STOP would wipe a flood just drained.
            drained = DeviceState::default().drained;
        }
        self.devices[d] = DeviceState {
            root,
            pending,
            next_iova,
            window_end,
            master_kept_off,
            storm_rest_until_ms,
            probation,
            drained,
            times_quarantined,
            ..DeviceState::default()
        };
        Ok(())
    }
}
