//! netfront: the guest's half of the pair.
//!
//! [`NetFront`] initializes the rings and the grant table in guest memory (laid out as
//! [`layout`] says), transmits frames — copied into its transmit pages, each page granted
//! read-only to the back end for the life of the request, a GSO extra after the first slot
//! of a super-frame, `NETTXF_csum_blank` for a partial checksum — and reclaims them from the
//! responses; it keeps the receive ring stocked with granted pages and hands received packets
//! (with their GSO and checksum information) to the caller.
//!
//! The back end is not trusted either: a response must name a request in flight, a receive
//! length must fit its page, and a malformed response is a [`FrontError`].

use pvio_grant::{DomId, Frame, GrantError, GrantRef, GrantTable, PAGE_SIZE};
use pvio_offload::{parse, ChecksumState, GsoKind, MetaError, OffloadMeta, L4};
use pvio_ring::xen::netif::{
    netif_rsp, netrxf, nettxf, Extra, NetifExtraInfo, NetifRxRequest, NetifRxResponse, NetifTxRequest,
    NetifTxResponse,
};
use pvio_ring::{FrontRing, Notify, RingError, SharedMem};

use crate::net::layout::{self, GNTTAB_ENTRIES, RX_FIRST_FRAME, RX_FRAMES, TX_FIRST_FRAME, TX_FRAMES};
use crate::net::mem::PageFlipper;

/// Something the back end did wrong, or a request the front end cannot carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrontError {
    /// A ring index the back end published is impossible.
    #[error("ring protocol: {0}")]
    Ring(#[from] RingError),
    /// The grant table refused.
    #[error("grant table: {0}")]
    Grant(#[from] GrantError),
    /// The metadata cannot be said in netif.
    #[error("offload metadata: {0}")]
    Meta(#[from] MetaError),
    /// A response names no request in flight.
    #[error("response id {id} names no request in flight")]
    UnknownId {
        /// The id.
        id: u16,
    },
    /// A receive response's data does not fit its page.
    #[error("rx response: {len} bytes at offset {offset} do not fit a page")]
    RxLength {
        /// Offset.
        offset: u16,
        /// Length.
        len: i16,
    },
    /// A receive response chain is malformed (extra info that does not decode, a chain cut
    /// short).
    #[error("rx response chain is malformed")]
    RxChain,
    /// A frame larger than the transmit path carries.
    #[error("frame of {len} bytes is too large")]
    FrameTooLarge {
        /// Length.
        len: usize,
    },
    /// The grant of a buffer is still in use by the back end after its response.
    #[error("grant {0:?} still in use after its response")]
    GrantInUse(GrantRef),
    /// Page flipping failed.
    #[error("page flip restore failed")]
    Flip,
}

/// A received packet's metadata (its bytes went to the caller's buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxPacket {
    /// Bytes.
    pub len: usize,
    /// GSO kind and size for a super-frame, checksum state.
    pub meta: OffloadMeta,
}

#[derive(Debug, Clone, Copy)]
struct Buf {
    /// Index in the transmit or receive pool.
    page: u16,
    gref: GrantRef,
}

/// Counters of a front end.
#[derive(Debug, Default, Clone, Copy)]
pub struct FrontStats {
    /// Packets queued for transmit.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Transmit requests the back end answered with an error.
    pub tx_errors: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Events sent to the back end.
    pub events: u64,
}

/// netfront. See the [module documentation](self).
pub struct NetFront<'a> {
    mem: SharedMem<'a>,
    backend: DomId,
    tx: FrontRing<'a, NetifTxRequest, NetifTxResponse>,
    rx: FrontRing<'a, NetifRxRequest, NetifRxResponse>,
    gnt: Box<GrantTable<'a, GNTTAB_ENTRIES>>,
    tx_free: Vec<u16>,
    /// In-flight transmit buffers by request id (= pool page).
    tx_busy: Vec<Option<Buf>>,
    rx_free: Vec<u16>,
    /// Posted receive buffers by ring slot.
    rx_posted: Vec<Option<Buf>>,
    flipper: Option<&'a PageFlipper>,
    stats: FrontStats,
    pending: Notify,
}

impl std::fmt::Debug for NetFront<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetFront").field("stats", &self.stats).finish()
    }
}

/// `NETRXF_csum_blank`: the transport checksum field holds the pseudo-header sum; where it
/// is, from the packet's headers.
fn partial_csum(frame: &[u8]) -> Option<ChecksumState> {
    let layout = parse(frame).ok()?;
    let offset = match layout.l4 {
        L4::Tcp => 16,
        L4::Udp => 6,
        _ => return None,
    };
    Some(ChecksumState::Partial { start: u16::try_from(layout.l4_offset).ok()?, offset })
}

fn tx_frame(page: u16) -> Frame {
    Frame(TX_FIRST_FRAME + u32::from(page))
}

fn rx_frame(page: u16) -> Frame {
    Frame(RX_FIRST_FRAME + u32::from(page))
}

impl<'a> NetFront<'a> {
    /// Initializes rings and grant table in `mem` (the guest's view of its memory, laid out as
    /// [`layout`] says) for the back end domain `backend`.
    pub fn new(mem: SharedMem<'a>, backend: DomId) -> Result<Self, FrontError> {
        let tx = FrontRing::new(layout::tx_ring(&mem).map_err(RingError::from)?)?;
        let rx = FrontRing::new(layout::rx_ring(&mem).map_err(RingError::from)?)?;
        let gnt = Box::new(GrantTable::new(layout::gnttab(&mem).map_err(RingError::from)?)?);
        let rx_slots = rx.size() as usize;
        Ok(NetFront {
            mem,
            backend,
            tx,
            rx,
            gnt,
            tx_free: (0..TX_FRAMES as u16).rev().collect(),
            tx_busy: vec![None; TX_FRAMES as usize],
            rx_free: (0..RX_FRAMES as u16).rev().collect(),
            rx_posted: vec![None; rx_slots],
            flipper: None,
            stats: FrontStats::default(),
            pending: Notify::NOT_NEEDED,
        })
    }

    /// Receive buffers arrive by page flipping: give each page back after reading it.
    pub fn with_flipper(mut self, flipper: &'a PageFlipper) -> Self {
        self.flipper = Some(flipper);
        self
    }

    /// Counters.
    pub fn stats(&self) -> FrontStats {
        self.stats
    }

    /// Whether a frame of `len` bytes can be queued now.
    pub fn can_send(&self, len: usize) -> bool {
        let pages = len.div_ceil(PAGE_SIZE);
        self.tx_free.len() >= pages && self.tx.free_requests() as usize > pages
    }

    /// Queues a frame made of `parts` (concatenated) with offload `meta`. Returns `false`
    /// (and queues nothing) when there is no room; call [`reclaim`](Self::reclaim) and retry.
    /// Requests are published by [`flush`](Self::flush).
    pub fn send(&mut self, parts: &[&[u8]], meta: &OffloadMeta) -> Result<bool, FrontError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > usize::from(u16::MAX) || len == 0 {
            return Err(FrontError::FrameTooLarge { len });
        }
        let (flags, gso) = meta.to_netif_tx()?;
        let pages = len.div_ceil(PAGE_SIZE);
        let slots = pages + usize::from(gso.is_some());
        if self.tx_free.len() < pages || (self.tx.free_requests() as usize) < slots {
            return Ok(false);
        }
        // Copy the frame into pages, contiguously.
        let mut page_list = [0u16; 17];
        for p in page_list.iter_mut().take(pages) {
            *p = self.tx_free.pop().expect("counted above");
        }
        let mut at = 0usize;
        for part in parts {
            let mut part: &[u8] = part;
            while !part.is_empty() {
                let (pi, off) = (at / PAGE_SIZE, at % PAGE_SIZE);
                let n = part.len().min(PAGE_SIZE - off);
                let base = tx_frame(page_list[pi]).offset() as usize;
                self.mem.write_bytes(base + off, &part[..n]).map_err(RingError::from)?;
                part = &part[n..];
                at += n;
            }
        }
        for (i, &page) in page_list[..pages].iter().enumerate() {
            let gref = self.gnt.grant_access(self.backend, tx_frame(page), true)?;
            self.tx_busy[usize::from(page)] = Some(Buf { page, gref });
            let mut f = if i + 1 < pages { nettxf::MORE_DATA } else { 0 };
            let size = if i == 0 {
                f |= flags;
                if gso.is_some() {
                    f |= nettxf::EXTRA_INFO;
                }
                len
            } else {
                (len - i * PAGE_SIZE).min(PAGE_SIZE)
            };
            let req = NetifTxRequest {
                gref: gref.0.into(),
                offset: 0.into(),
                flags: f.into(),
                id: page.into(),
                size: (size as u16).into(),
            };
            self.tx.queue_request(&req).map_err(|_| RingError::RegionTooSmall { len: 0, entry_size: 0 })?;
            if i == 0 {
                if let Some((ty, size)) = gso {
                    let extra = NetifExtraInfo::gso(ty, size);
                    let mut slot = NetifTxRequest::from_extra(&extra);
                    slot.id = u16::MAX.into();
                    self.tx
                        .queue_request(&slot)
                        .map_err(|_| RingError::RegionTooSmall { len: 0, entry_size: 0 })?;
                }
            }
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        Ok(true)
    }

    /// Publishes queued transmit requests and posted receive buffers; returns whether the
    /// back end must be notified (then send the event and count it with
    /// [`note_event`](Self::note_event)).
    pub fn flush(&mut self) -> Notify {
        let n = self.tx.push_requests().or(self.rx.push_requests()).or(self.pending);
        self.pending = Notify::NOT_NEEDED;
        n
    }

    /// Counts an event sent to the back end.
    pub fn note_event(&mut self) {
        self.stats.events += 1;
    }

    /// Consumes transmit responses, ending the grants and freeing the pages. Returns how many
    /// packets' slots were answered.
    pub fn reclaim(&mut self) -> Result<usize, FrontError> {
        let mut buf = [NetifTxResponse::default(); 64];
        let mut done = 0;
        loop {
            let n = self.tx.pop_responses(&mut buf)?;
            for rsp in &buf[..n] {
                let status = rsp.status.get();
                if status == netif_rsp::NULL {
                    continue;
                }
                if status != netif_rsp::OKAY {
                    self.stats.tx_errors += 1;
                }
                let id = rsp.id.get();
                let b = self
                    .tx_busy
                    .get_mut(usize::from(id))
                    .and_then(Option::take)
                    .ok_or(FrontError::UnknownId { id })?;
                self.gnt.end_access(b.gref).map_err(|_| FrontError::GrantInUse(b.gref))?;
                self.tx_free.push(b.page);
                done += 1;
            }
            if n < buf.len() {
                return Ok(done);
            }
        }
    }

    /// Transmit requests not yet answered.
    pub fn tx_in_flight(&self) -> u32 {
        self.tx.in_flight()
    }

    /// Posts every free receive page (granted writable to the back end).
    pub fn post_rx(&mut self) -> Result<usize, FrontError> {
        let mut n = 0;
        while self.rx.free_requests() > 0 {
            let Some(page) = self.rx_free.pop() else { break };
            let gref = self.gnt.grant_access(self.backend, rx_frame(page), false)?;
            let slot = self.rx.req_prod_pvt() as usize % self.rx_posted.len();
            self.rx_posted[slot] = Some(Buf { page, gref });
            let req = NetifRxRequest { id: page.into(), pad: 0.into(), gref: gref.0.into() };
            self.rx.queue_request(&req).map_err(|_| RingError::RegionTooSmall { len: 0, entry_size: 0 })?;
            n += 1;
        }
        Ok(n)
    }

    /// Takes back the buffer of the response in ring slot `slot`: ends its grant, restores a
    /// flipped page, frees it.
    fn take_rx(&mut self, slot: u32, id: Option<u16>) -> Result<Buf, FrontError> {
        let i = slot as usize % self.rx_posted.len();
        let b = self.rx_posted[i].take().ok_or(FrontError::RxChain)?;
        if let Some(id) = id {
            if id != b.page {
                return Err(FrontError::UnknownId { id });
            }
        }
        self.gnt.end_access(b.gref).map_err(|_| FrontError::GrantInUse(b.gref))?;
        Ok(b)
    }

    fn release_rx(&mut self, b: Buf) -> Result<(), FrontError> {
        if let Some(f) = self.flipper {
            f.restore(rx_frame(b.page)).map_err(|_| FrontError::Flip)?;
        }
        self.rx_free.push(b.page);
        Ok(())
    }

    /// Receives the next packet into `out[..len]` (the returned [`RxPacket::len`]), if a whole
    /// one has arrived. `out` is grown as needed and never shrunk, so a buffer reused across
    /// calls is zero-filled at most once.
    pub fn receive(&mut self, out: &mut Vec<u8>) -> Result<Option<RxPacket>, FrontError> {
        if self.rx.unconsumed_responses()? == 0 {
            return Ok(None);
        }
        let mut meta = OffloadMeta::NONE;
        let mut first = true;
        let mut csum_blank = false;
        let mut len = 0usize;
        loop {
            let slot = self.rx.rsp_cons();
            let Some(rsp) = self.rx.pop_response()? else { return Err(FrontError::RxChain) };
            let b = self.take_rx(slot, Some(rsp.id.get()))?;
            let (offset, status, flags) = (rsp.offset.get(), rsp.status.get(), rsp.flags.get());
            let ok = status >= 0 && usize::from(offset) + status as usize <= PAGE_SIZE;
            if ok {
                let end = len + status as usize;
                if out.len() < end {
                    out.resize(end, 0);
                }
                let base = rx_frame(b.page).offset() as usize + usize::from(offset);
                self.mem.read_bytes(base, &mut out[len..end]).map_err(RingError::from)?;
                len = end;
            }
            self.release_rx(b)?;
            if !ok {
                return Err(FrontError::RxLength { offset, len: status });
            }
            if first {
                first = false;
                if flags & netrxf::CSUM_BLANK != 0 {
                    csum_blank = true;
                } else if flags & netrxf::DATA_VALIDATED != 0 {
                    meta.csum = ChecksumState::Validated;
                }
                if flags & netrxf::EXTRA_INFO != 0 {
                    let slot = self.rx.rsp_cons();
                    let Some(x) = self.rx.pop_response()? else { return Err(FrontError::RxChain) };
                    let b = self.take_rx(slot, None)?;
                    self.release_rx(b)?;
                    match NetifExtraInfo::from_rx_slot(&x).decode() {
                        Ok(Extra::Gso { ty: 1, size }) => {
                            meta.gso_kind = GsoKind::TcpV4;
                            meta.gso_size = size;
                        }
                        Ok(Extra::Gso { ty: 2, size }) => {
                            meta.gso_kind = GsoKind::TcpV6;
                            meta.gso_size = size;
                        }
                        _ => return Err(FrontError::RxChain),
                    }
                }
            }
            if flags & netrxf::MORE_DATA == 0 {
                break;
            }
        }
        if csum_blank {
            meta.csum = partial_csum(&out[..len]).ok_or(FrontError::RxChain)?;
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += len as u64;
        Ok(Some(RxPacket { len, meta }))
    }

    /// Before sleeping in a transmit loop: `true` if transmit responses are pending.
    pub fn final_check_tx(&mut self) -> Result<bool, FrontError> {
        Ok(self.tx.final_check_for_responses()?)
    }

    /// Before sleeping in a receive loop: `true` if receive responses are pending.
    pub fn final_check_rx(&mut self) -> Result<bool, FrontError> {
        Ok(self.rx.final_check_for_responses()?)
    }
}
