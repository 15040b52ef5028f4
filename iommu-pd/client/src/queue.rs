//! The mapping queue from the driver's side (`iommu_protocol::queue`): MAP and UNMAP
//! posted as entries, one notification for many, completions read back as the calls'
//! results. A buffer whose UNMAP was posted is the device's until that UNMAP's completion
//! says `Ok` (the IOMMU confirmed it gone): only then may the driver reuse or return it.

use iommu_protocol::queue::{Queue, ENTRY_MRS};
use iommu_protocol::{DeviceId, ErrorCode, Handle, Request, Rights, MAX_MRS, MAX_UNMAP_RANGES};

/// Wakes the IOMMU PD (on seL4 Microkit, `Channel::notify` on the client's channel to it).
pub trait Notify {
    /// Tell the IOMMU PD that entries are waiting.
    fn notify(&mut self);
}

/// The request ring is full: nothing was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A completion: the posted entry's tag and its call's result (MAP's IOVA; 0 for UNMAP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// The tag `post_map` or `post_unmap` returned.
    pub tag: u64,
    /// What the call would have answered.
    pub result: Result<u64, ErrorCode>,
}

/// One request of a batch (`MapQueue::post_all`): what `post_map` and `post_unmap` post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// A MAP (as `Client::map`).
    Map {
        /// The capability's handle.
        cap: Handle,
        /// The device the mapping is for.
        device: DeviceId,
        /// Where in the capability's memory, in bytes.
        offset: u64,
        /// How many bytes (whole pages).
        len: u64,
        /// The IOVA asked for, or `None`: the IOMMU PD's allocator picks one.
        iova: Option<u64>,
        /// What the device may do.
        rights: Rights,
    },
    /// An UNMAP of the mapping of `device` at `iova`.
    Unmap {
        /// The device.
        device: DeviceId,
        /// Where its mapping starts.
        iova: u64,
    },
}

impl Posted {
    /// The queue entry: the call's label and first four message registers (all a MAP and
    /// a one-IOVA UNMAP have).
    fn entry(self) -> (u64, [u64; ENTRY_MRS]) {
        let req = match self {
            Posted::Map { cap, device, offset, len, iova, rights } => {
                Request::Map { cap, device, offset, len, iova, rights }
            }
            Posted::Unmap { device, iova } => {
                let mut iovas = [0; MAX_UNMAP_RANGES];
                iovas[0] = iova;
                Request::Unmap { device, iovas, count: 1 }
            }
        };
        let mut mrs = [0; MAX_MRS];
        let (label, _) = req.encode(&mut mrs);
        let mut entry = [0; ENTRY_MRS];
        entry.copy_from_slice(&mrs[..ENTRY_MRS]);
        (label, entry)
    }
}

/// A driver's mapping queue.
#[derive(Debug)]
pub struct MapQueue<'a, N: Notify> {
    queue: Queue<'a>,
    notify: N,
    next_tag: u64,
}

impl<'a, N: Notify> MapQueue<'a, N> {
    /// The queue in `queue`'s region, waking the IOMMU PD through `notify`, starting from
    /// what the IOMMU PD published (as C's `iommu_queue_init`): entries posted before and not
    /// taken are dropped, completions not read are skipped, and tags start again at 0. At
    /// boot the region is all zeros and there is nothing to drop; a client that starts its
    /// queue again (a restarted PD; after a crash the IOMMU PD has also started it over)
    /// never sees its earlier run's completions under its new tags, and an entry of its
    /// earlier run is never served. Not while the IOMMU PD may be serving this queue
    /// (`Queue::start_client_over`).
    pub fn new(queue: Queue<'a>, notify: N) -> Self {
        queue.start_client_over();
        Self { queue, notify, next_tag: 0 }
    }

    fn post(&mut self, req: Posted) -> Result<u64, Full> {
        let (label, entry) = req.entry();
        let tag = self.next_tag;
        if !self.queue.post(label, tag, entry) {
            return Err(Full);
        }
        self.next_tag += 1;
        Ok(tag)
    }

    /// Post `requests` in order, all or none (`Full`, nothing posted, if the ring has no
    /// room for all of them); returns the first one's tag, the others' following it. The
    /// IOMMU PD sees them together (one store of the ring's tail, where `post_map` and
    /// `post_unmap` make one each). Not sent until `notify`.
    pub fn post_all(&mut self, requests: &[Posted]) -> Result<u64, Full> {
        let first = self.next_tag;
        let entries = requests.iter().enumerate().map(|(i, r)| {
            let (label, entry) = r.entry();
            (label, first + i as u64, entry)
        });
        if !self.queue.post_all(entries) {
            return Err(Full);
        }
        self.next_tag += requests.len() as u64;
        Ok(first)
    }

    /// Withdraw the request tagged `tag` if the IOMMU PD has not taken it yet
    /// (`Queue::withdraw`): it is answered `UnknownOp` and does nothing. True if withdrawn.
    pub fn withdraw(&mut self, tag: u64) -> bool {
        self.queue.withdraw(tag)
    }

    /// Post a MAP (as `Client::map`); returns its tag. Not sent until `notify`.
    pub fn post_map(
        &mut self,
        cap: Handle,
        device: DeviceId,
        offset: u64,
        len: u64,
        iova: Option<u64>,
        rights: Rights,
    ) -> Result<u64, Full> {
        self.post(Posted::Map { cap, device, offset, len, iova, rights })
    }

    /// Post an UNMAP of the mapping of `device` at `iova`; returns its tag. Not sent until
    /// `notify`.
    pub fn post_unmap(&mut self, device: DeviceId, iova: u64) -> Result<u64, Full> {
        self.post(Posted::Unmap { device, iova })
    }

    /// Wake the IOMMU PD for everything posted so far.
    pub fn notify(&mut self) {
        self.notify.notify();
    }

    /// The next completion, if one arrived. When the IOMMU PD notifies and entries are
    /// still untaken (`untaken`), notify again: it takes at most `QUEUE_BATCH` a time.
    pub fn completion(&mut self) -> Option<Done> {
        let (tag, label, value) = self.queue.pop_completion()?;
        Some(Done { tag, result: Self::result(label, value) })
    }

    /// Every completion that arrived, in order, handed to `f`; returns how many. Their
    /// slots go back to the IOMMU PD together (one store of the ring's head, where
    /// `completion` makes one each).
    pub fn completions(&mut self, mut f: impl FnMut(Done)) -> u32 {
        self.queue.pop_completions(|tag, label, value| f(Done { tag, result: Self::result(label, value) }))
    }

    fn result(label: u64, value: u64) -> Result<u64, ErrorCode> {
        match label {
            0 => Ok(value),
            l => Err(ErrorCode::from_label(l).unwrap_or(ErrorCode::Malformed)),
        }
    }

    /// Entries posted that the IOMMU PD has not taken yet.
    pub fn untaken(&self) -> u32 {
        self.queue.unserved()
    }
}
