//! The back end's view of a network device ("NIC"): what netback hands it to transmit and how
//! it receives, independent of what the device is. [`ModelNic`] is the embedded default: a NIC
//! model that validates every frame it is given and generates receive traffic; the TAP and
//! AF_PACKET back ends implement the same [`Nic`] trait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bitflags::bitflags;
use pvio_offload::{ChecksumState, GsoKind, OffloadMeta};
use pvio_ring::{SharedMem, ShmError};

use crate::net::back::MAX_PACKET;
use crate::net::traffic::{
    complete_tcp_partial, FlowId, Invalid, RxCsum, StreamChecker, TcpSender, TxChecksum, HDR_LEN, MAX_FRAME,
    MSS,
};

bitflags! {
    /// What a NIC offloads.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct NicCaps: u8 {
        /// TCP segmentation offload: takes super-frames with GSO metadata.
        const TSO = 1 << 0;
        /// Transmit checksum offload: completes partial checksums.
        const TX_CSUM = 1 << 1;
        /// Receive checksum offload: reports verified checksums.
        const RX_CSUM = 1 << 2;
    }
}

/// Payload bytes the device reads in place from guest memory: `len` bytes at `offset` of one
/// guest page (a granted frame the back end holds mapped while the device uses it).
#[derive(Debug, Clone)]
pub struct PayloadRef<'g> {
    /// The whole page.
    pub page: SharedMem<'g>,
    /// Where the bytes start in the page.
    pub offset: usize,
    /// How many bytes.
    pub len: usize,
    /// The page's I/O-virtual address (for a device that DMAs; `iova + offset` is the first
    /// byte).
    pub iova: u64,
}

impl PayloadRef<'_> {
    /// Copies the bytes into `dst` (`dst.len() >= self.len`).
    pub fn read_into(&self, dst: &mut [u8]) -> Result<(), ShmError> {
        let size = dst.len();
        let dst = dst.get_mut(..self.len).ok_or(ShmError::OutOfBounds {
            offset: self.offset,
            len: self.len,
            size,
        })?;
        self.page.read_bytes(self.offset, dst)
    }
}

/// One frame (or super-frame) to transmit: headers built or copied by the back end, payload
/// by reference into guest memory, and what the device is asked to do with it.
#[derive(Debug)]
pub struct TxFrame<'f, 'g> {
    /// Ethernet to the end of the transport header (or more), in back-end memory.
    pub header: &'f [u8],
    /// The rest of the frame, in order.
    pub payload: &'f [PayloadRef<'g>],
    /// Offloads requested: `gso_kind`/`gso_size` only if the NIC has [`NicCaps::TSO`], a
    /// partial checksum only with [`NicCaps::TX_CSUM`] or TSO.
    pub meta: OffloadMeta,
}

impl TxFrame<'_, '_> {
    /// Frame length: headers plus payload.
    pub fn len(&self) -> usize {
        self.header.len() + self.payload.iter().map(|p| p.len).sum::<usize>()
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gathers the whole frame into `out` (what a device's DMA does); returns its length.
    pub fn gather(&self, out: &mut [u8]) -> Result<usize, ShmError> {
        let len = self.len();
        if out.len() < len {
            return Err(ShmError::OutOfBounds { offset: 0, len, size: out.len() });
        }
        out[..self.header.len()].copy_from_slice(self.header);
        let mut at = self.header.len();
        for p in self.payload {
            p.read_into(&mut out[at..])?;
            at += p.len;
        }
        Ok(len)
    }
}

/// A received frame: its length in the buffer and its offload metadata.
#[derive(Debug, Clone, Copy)]
pub struct RxInfo {
    /// Bytes written.
    pub len: usize,
    /// What the device knows: checksum state, and GSO for a super-frame (a TAP device can
    /// deliver those).
    pub meta: OffloadMeta,
}

/// A network device as netback drives it.
pub trait Nic {
    /// Why the device failed (not the guest's fault; the back end stops).
    type Error: std::error::Error + Send + Sync + 'static;
    /// What the device offloads.
    fn caps(&self) -> NicCaps;
    /// Sends one frame. Returns once the device no longer needs the payload pages.
    fn transmit(&mut self, frame: &TxFrame<'_, '_>) -> Result<(), Self::Error>;
    /// Receives one frame into `buf` ([`MAX_PACKET`] bytes), or `None` if none is
    /// waiting.
    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxInfo>, Self::Error>;
    /// Receives one frame directly into shared memory (a back-end page about to be flipped
    /// into a guest). The default receives into a bounce buffer and copies.
    fn receive_shared(&mut self, dst: &SharedMem<'_>) -> Result<Option<RxInfo>, Self::Error> {
        let mut buf = vec![0u8; MAX_PACKET];
        let Some(info) = self.receive(&mut buf)? else { return Ok(None) };
        let n = info.len.min(dst.len());
        // A frame larger than the page is cut; `len` says how much arrived.
        let _ = dst.write_bytes(0, &buf[..n]);
        Ok(Some(RxInfo { len: n, ..info }))
    }
}

/// Counters of a [`ModelNic`], readable from another thread while it runs.
#[derive(Debug, Default)]
pub struct NicStats {
    /// Valid frames transmitted (super-frames count once).
    pub tx_frames: AtomicU64,
    /// Wire segments transmitted (a super-frame counts its segments).
    pub tx_segments: AtomicU64,
    /// TCP payload bytes in valid transmitted frames.
    pub tx_bytes: AtomicU64,
    /// Invalid frames given to transmit.
    pub tx_invalid: AtomicU64,
    /// Frames generated for receive.
    pub rx_frames: AtomicU64,
    /// TCP payload bytes generated for receive.
    pub rx_bytes: AtomicU64,
    /// The first reason a transmitted frame was invalid.
    pub first_invalid: Mutex<Option<Invalid>>,
    /// Time the model itself spends (DMA, validation, the far end's traffic generation), in
    /// transmit calls and in receive calls: see [`ModelTime`].
    pub model_time: [ModelTime; 2],
}

/// A sampled estimate of the time a [`ModelNic`] spends in one kind of call, so that a
/// measurement can tell the model's work (which a real NIC, or the far end of its wire, would
/// do) from the back end's. About one call in eight, chosen pseudo-randomly, is timed with the
/// monotonic clock; a timed call that took more than [`ModelTime::OUTLIER_NS`] was preempted
/// and its sample is discarded (wall time, not CPU time). The estimate is the mean of the
/// samples times the number of calls.
#[derive(Debug, Default)]
pub struct ModelTime {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls timed (and kept).
    pub sampled: AtomicU64,
    /// Their total nanoseconds.
    pub sampled_ns: AtomicU64,
}

impl ModelTime {
    /// A timed call longer than this was preempted: its sample is discarded. A 64 KiB
    /// super-frame's DMA, checksum and validation take some tens of microseconds.
    pub const OUTLIER_NS: u64 = 500_000;

    /// Estimated seconds spent in the calls so far.
    pub fn secs(&self) -> f64 {
        let sampled = self.sampled.load(Ordering::Relaxed);
        if sampled == 0 {
            return 0.0;
        }
        let mean = self.sampled_ns.load(Ordering::Relaxed) as f64 / sampled as f64;
        mean * self.calls.load(Ordering::Relaxed) as f64 / 1e9
    }
}

/// Index of transmit calls in [`NicStats::model_time`].
pub const MODEL_TX: usize = 0;
/// Index of receive calls in [`NicStats::model_time`].
pub const MODEL_RX: usize = 1;

/// Why the model NIC failed: only a refused read of guest memory (a back-end bug: the pages
/// it hands over are checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ModelNicError {
    /// Reading a payload page failed.
    #[error("payload read refused: {0}")]
    Shm(#[from] ShmError),
}

/// The embedded NIC model. On transmit it does what hardware would (gathers the frame by DMA,
/// completes a partial checksum after checking the pseudo-header sum in its field, segments a
/// super-frame) and validates what would reach the wire with a [`StreamChecker`]: sizes, IPv4
/// checksums, TCP checksums the sender computed, sequence continuity per connection and every
/// payload byte. Frames asking for an offload it does not offer are
/// invalid. On receive it generates MTU-sized TCP segments of a few connections towards the
/// guest, round robin, with complete checksums.
#[derive(Debug)]
pub struct ModelNic {
    caps: NicCaps,
    stats: Arc<NicStats>,
    checker: StreamChecker,
    dma: Vec<u8>,
    rx: Vec<TcpSender>,
    next_rx: usize,
    /// xorshift state choosing the calls that are timed.
    sample_rng: u32,
}

impl ModelNic {
    /// Runs `f`, counting the call in `model_time[kind]` and timing about one in eight.
    fn timed<R>(&mut self, kind: usize, f: impl FnOnce(&mut Self) -> R) -> R {
        let mut x = self.sample_rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.sample_rng = x;
        self.stats.model_time[kind].calls.fetch_add(1, Ordering::Relaxed);
        if x & 7 != 0 {
            return f(self);
        }
        let start = std::time::Instant::now();
        let r = f(self);
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let t = &self.stats.model_time[kind];
        if ns <= ModelTime::OUTLIER_NS {
            t.sampled.fetch_add(1, Ordering::Relaxed);
            t.sampled_ns.fetch_add(ns, Ordering::Relaxed);
        }
        r
    }

    /// A NIC with these offloads and no receive traffic.
    pub fn new(caps: NicCaps) -> Self {
        ModelNic {
            caps,
            stats: Arc::default(),
            checker: StreamChecker::new(),
            dma: vec![0; MAX_FRAME + 4096],
            rx: Vec::new(),
            next_rx: 0,
            sample_rng: 0x9e37_79b9,
        }
    }

    /// Generates receive traffic on these connections (destination MAC = the guest's).
    pub fn with_rx_flows(mut self, flows: &[FlowId]) -> Self {
        self.rx = flows.iter().enumerate().map(|(i, f)| TcpSender::new(*f, 1000 + i as u32 * 7919)).collect();
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<NicStats> {
        self.stats.clone()
    }

    fn validate(&mut self, frame: &TxFrame<'_, '_>) -> Result<(), Invalid> {
        let meta = frame.meta;
        let len = frame.len();
        if len > self.dma.len() {
            return Err(Invalid::TooLong { len, max: self.dma.len() });
        }
        let gso = match meta.gso_kind {
            GsoKind::None => None,
            GsoKind::TcpV4 if self.caps.contains(NicCaps::TSO) => Some(meta.gso_size),
            _ => return Err(Invalid::NotOffered("segmentation offload")),
        };
        if matches!(meta.csum, ChecksumState::Partial { .. })
            && !self.caps.intersects(NicCaps::TX_CSUM | NicCaps::TSO)
        {
            return Err(Invalid::NotOffered("checksum offload"));
        }
        frame.gather(&mut self.dma).map_err(|_| Invalid::TooLong { len, max: self.dma.len() })?;
        let wire = &mut self.dma[..len];
        let completed = complete_tcp_partial(wire, meta.csum)?;
        let csum = if completed { RxCsum::Verified } else { RxCsum::Unknown };
        self.checker.check(wire, csum, gso)
    }
}

impl Nic for ModelNic {
    type Error = ModelNicError;

    fn caps(&self) -> NicCaps {
        self.caps
    }

    fn transmit(&mut self, frame: &TxFrame<'_, '_>) -> Result<(), ModelNicError> {
        self.timed(MODEL_TX, |nic| nic.transmit_inner(frame))
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxInfo>, ModelNicError> {
        self.timed(MODEL_RX, |nic| nic.receive_inner(buf))
    }

    fn receive_shared(&mut self, dst: &SharedMem<'_>) -> Result<Option<RxInfo>, ModelNicError> {
        self.timed(MODEL_RX, |nic| nic.receive_shared_inner(dst))
    }
}

impl ModelNic {
    fn transmit_inner(&mut self, frame: &TxFrame<'_, '_>) -> Result<(), ModelNicError> {
        let (segs, bytes) = (self.checker.segments, self.checker.bytes);
        match self.validate(frame) {
            Ok(()) => {
                self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
                self.stats.tx_segments.fetch_add(self.checker.segments - segs, Ordering::Relaxed);
                self.stats.tx_bytes.fetch_add(self.checker.bytes - bytes, Ordering::Relaxed);
            }
            Err(e) => {
                self.stats.tx_invalid.fetch_add(1, Ordering::Relaxed);
                let mut first = self.stats.first_invalid.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert(e);
            }
        }
        Ok(())
    }

    fn receive_inner(&mut self, buf: &mut [u8]) -> Result<Option<RxInfo>, ModelNicError> {
        let Some(info) = self.next_rx_frame(|hdr, payload| {
            let len = HDR_LEN + payload.len();
            let out = buf.get_mut(..len)?;
            out[..HDR_LEN].copy_from_slice(hdr);
            out[HDR_LEN..].copy_from_slice(payload);
            Some(len)
        }) else {
            return Ok(None);
        };
        Ok(Some(info))
    }

    fn receive_shared_inner(&mut self, dst: &SharedMem<'_>) -> Result<Option<RxInfo>, ModelNicError> {
        let mut err = None;
        let info = self.next_rx_frame(|hdr, payload| {
            let r = dst.write_bytes(0, hdr).and_then(|()| dst.write_bytes(HDR_LEN, payload));
            match r {
                Ok(()) => Some(HDR_LEN + payload.len()),
                Err(e) => {
                    err = Some(e);
                    None
                }
            }
        });
        match err {
            Some(e) => Err(e.into()),
            None => Ok(info),
        }
    }
}

impl ModelNic {
    /// Builds the next receive frame and hands its header and payload to `put` (the DMA),
    /// which returns the length written (or `None` if it did not fit; the frame is then not
    /// consumed).
    fn next_rx_frame(&mut self, put: impl FnOnce(&[u8], &[u8]) -> Option<usize>) -> Option<RxInfo> {
        if self.rx.is_empty() {
            return None;
        }
        let i = self.next_rx % self.rx.len();
        let mut sender = self.rx[i].clone();
        let mut hdr = [0u8; HDR_LEN];
        let (payload, _) = sender.next_frame(MSS, TxChecksum::Full, &mut hdr);
        let len = put(&hdr, payload)?;
        self.rx[i] = sender;
        self.next_rx += 1;
        self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
        self.stats.rx_bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
        let csum =
            if self.caps.contains(NicCaps::RX_CSUM) { ChecksumState::Validated } else { ChecksumState::None };
        Some(RxInfo { len, meta: OffloadMeta { csum, ..OffloadMeta::NONE } })
    }
}
