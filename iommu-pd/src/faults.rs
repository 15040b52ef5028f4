//! Fault records, attributed and queued per client: a fixed ring the client reads and
//! acknowledges. When the ring is full, further records are counted as dropped (and the
//! count is reported), never lost silently.

/// Records a ring holds before the client must acknowledge.
pub const FAULT_RING: usize = 32;

/// One attributed fault, as the owning client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct FaultRecord {
    /// Sequence number, from 0, per client.
    pub seq: u64,
    /// The device (index in the system description).
    pub device: u32,
    /// Its StreamID.
    pub stream: u32,
    /// The faulting bus address.
    pub iova: u64,
    /// The hardware's event type (for SMMUv3: 0x10 F_TRANSLATION, 0x13 F_PERMISSION...).
    pub kind: u32,
    /// 1 if the device tried to write, 0 if it read.
    pub write: u32,
    /// The region the address falls in (or next to), or `u32::MAX` if none.
    pub region: u32,
    /// 1 if the address is next to a mapping rather than inside one.
    pub near: u32,
    /// Offset into the region (of the address, or of the nearest mapped byte).
    pub offset: u64,
    /// 1 if this fault quarantined the device.
    pub quarantined: u32,
    /// Records dropped for lack of room before this one.
    pub dropped_before: u32,
    /// Further faults folded into this record: same device, kind and direction, at
    /// addresses up to `iova_last` (a DMA burst faults once per bus transaction).
    pub repeats: u32,
    /// Highest faulting address folded into this record.
    pub iova_last: u64,
}

/// A client's ring.
#[derive(Debug, Clone, Copy)]
pub struct FaultRing {
    records: [FaultRecord; FAULT_RING],
    next_seq: u64,
    /// Records with `seq < acked` have been read.
    acked: u64,
    dropped: u64,
    dropped_unreported: u32,
}

impl Default for FaultRing {
    fn default() -> Self {
        Self { records: [FaultRecord::default(); FAULT_RING], next_seq: 0, acked: 0, dropped: 0, dropped_unreported: 0 }
    }
}

impl FaultRing {
    /// Queue a record; false (and counted) if the ring is full.
    pub fn push(&mut self, mut r: FaultRecord) -> bool {
        if self.next_seq - self.acked >= FAULT_RING as u64 {
            self.dropped += 1;
            self.dropped_unreported = self.dropped_unreported.saturating_add(1);
            return false;
        }
        r.seq = self.next_seq;
        r.iova_last = r.iova;
        r.repeats = 0;
        r.dropped_before = self.dropped_unreported;
        self.dropped_unreported = 0;
        self.records[(self.next_seq % FAULT_RING as u64) as usize] = r;
        self.next_seq += 1;
        true
    }

    /// Fold `r` into the newest unread record if it continues the same burst (same
    /// device, kind and direction, within a page past the last address). True if folded.
    pub fn coalesce(&mut self, r: &FaultRecord) -> bool {
        if self.next_seq == self.acked {
            return false;
        }
        let last = &mut self.records[((self.next_seq - 1) % FAULT_RING as u64) as usize];
        let continues = last.device == r.device
            && last.kind == r.kind
            && last.write == r.write
            && r.quarantined == 0
            && r.iova >= last.iova
            && r.iova <= last.iova_last.saturating_add(4096);
        if continues {
            last.repeats = last.repeats.saturating_add(1);
            last.iova_last = last.iova_last.max(r.iova);
        }
        continues
    }

    /// The client has read every record up to and including `upto`. False if `upto` was
    /// never handed out.
    pub fn ack(&mut self, upto: u64) -> bool {
        if upto >= self.next_seq {
            return false;
        }
        self.acked = self.acked.max(upto + 1);
        true
    }

    /// Records not yet acknowledged, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &FaultRecord> {
        (self.acked..self.next_seq).map(|s| &self.records[(s % FAULT_RING as u64) as usize])
    }

    /// Records ever queued.
    pub fn recorded(&self) -> u64 {
        self.next_seq
    }

    /// Records dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
