//! netback: the driver domain's half of the pair.
//!
//! [`NetBack`] serves any number of guests ("vifs"), each with a transmit and a receive ring
//! and a grant table in its memory, and drives one [`Nic`]. Everything a guest wrote is
//! untrusted:
//!
//! - **Transmit.** Each request is copied out of its slot once (by [`BackRing`]), its flags,
//!   offset, size and slot count are checked, the extra-info segments decoded, and the packet's
//!   headers — only the headers — are grant-copied into back-end memory, parsed and validated
//!   together with the offload metadata ([`OffloadMeta::validate`]). The payload stays in guest
//!   memory: its pages are grant-mapped for the duration of the device's transmit and handed to
//!   the NIC by reference ([`PayloadRef`]); with [`TxPayload::Remap`] each page is instead
//!   `mmap`ed and `munmap`ed per packet (the paper's grant map/unmap cost). A super-frame goes
//!   to a TSO NIC as it is; otherwise it is segmented in software ([`Segmenter`]), headers
//!   rebuilt per segment, payload still by reference, checksums left partial for a NIC with
//!   checksum offload.
//! - **Receive.** The NIC receives frames back to back into a private area ([`RX_AREA`]).
//!   They are coalesced by reference ([`GroRefTable`], optional): a super-frame is its
//!   first segment's headers, fixed up, plus the payload ranges still in the area, and is
//!   copied into the buffers the guest posted straight from there, with the GSO extra:
//!   each posted page is grant-mapped (pinned) once per frame and the header and payload
//!   ranges are written through the mapping, so every payload byte is copied once and a page
//!   that takes many ranges costs one grant-entry update (`benches/gro_rx` measured this
//!   1.16-1.23x faster than one `Broker::copy` op per (range, page) piece). Or, with
//!   [`RxDelivery::Flip`], received into a back-end page that is remapped into the guest's
//!   view ([`PageFlipper`]).
//! - **Faults.** Any violation of the protocol by a guest — an impossible ring index, a bad
//!   flag, offset, length, slot count, grant reference, extra-info segment, header or
//!   metadata — is a [`BackError`] naming the rule. The vif is disconnected (its rings are no
//!   longer read or written), the reason is logged and kept ([`VifState::Disconnected`]), and
//!   every other vif carries on.

use std::os::fd::BorrowedFd;

use pvio_grant::broker::MapHandle;
use pvio_grant::domain::frame_of;
use pvio_grant::{
    Access, Broker, CopyDst, CopyOp, CopySrc, DomId, GrantPtr, GrantRef, GrantStatus, PAGE_SIZE,
};
use pvio_offload::gro::{Received, RefDelivery};
use pvio_offload::gso::MAX_HEADER_LEN;
use pvio_offload::{
    parse, ChecksumMode, ChecksumState, GroRefTable, GsoKind, MetaError, OffloadMeta, ParseError,
};
use pvio_offload::{Segmenter, ValidMeta};
use pvio_ring::xen::netif::{
    gso_type, netif_rsp, netrxf, nettxf, Extra, ExtraError, NetifExtraInfo, NetifRxRequest, NetifRxResponse,
    NetifTxRequest, NetifTxResponse,
};
use pvio_ring::{BackRing, Notifier, RingError, SharedMem};

use crate::net::layout;
use crate::net::mem::{PageFlipper, PageMap};
use crate::net::nic::{Nic, NicCaps, PayloadRef, TxFrame};

/// Most data slots one transmitted packet may use (Linux netback's
/// `XEN_NETBK_LEGACY_SLOTS_MAX`).
pub const MAX_TX_SLOTS: usize = 18;
/// Most extra-info segments one packet may carry.
pub const MAX_EXTRAS: usize = 4;
/// Largest packet a guest may transmit: an IPv4 packet of 65535 bytes with a VLAN-tagged
/// Ethernet header.
pub const MAX_PACKET: usize = 65535 + 18;
/// Receive slots the largest delivery takes: a [`MAX_PACKET`] frame (17 pages) plus the GSO
/// extra. Larger frames are dropped.
pub const MAX_RX_SLOTS: usize = MAX_PACKET.div_ceil(PAGE_SIZE) + 1;
/// GRO flows held at once.
pub const GRO_FLOWS: usize = 8;
/// Segments one GRO super-frame may hold (by reference: one payload piece each). 64 KiB of
/// 1460-byte segments is 45.
pub const GRO_PIECES: usize = 64;
/// The NIC's receive buffer area: frames are received back to back into it and stay there,
/// referred to by GRO, until their flow is delivered (all flows are delivered at the end of
/// each receive round, or when the area is full). 1 MiB holds a round of 256 MTU frames.
pub const RX_AREA: usize = (1 << 20) + MAX_PACKET;

/// A rule a guest broke. The vif that broke it is disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BackError {
    /// A ring index was impossible (`RING_REQUEST_PROD_OVERFLOW`, a rewind, ...).
    #[error("ring protocol: {0}")]
    Ring(#[from] RingError),
    /// A transmit request has flags `NETTXF_*` does not define.
    #[error("tx request flags {flags:#x} include undefined bits")]
    UnknownTxFlags {
        /// The flags.
        flags: u16,
    },
    /// A packet's slots were not all published with it (`NETTXF_more_data` or
    /// `NETTXF_extra_info` promised a slot that is not there).
    #[error("packet promises another slot, but the front end published only {published} of its slots")]
    IncompletePacket {
        /// Slots of the packet that were published.
        published: usize,
    },
    /// More data slots than a packet may use.
    #[error("packet uses more than {max} data slots")]
    TooManySlots {
        /// The limit ([`MAX_TX_SLOTS`]).
        max: usize,
    },
    /// More extra-info segments than allowed.
    #[error("packet carries more than {max} extra-info segments")]
    TooManyExtras {
        /// The limit ([`MAX_EXTRAS`]).
        max: usize,
    },
    /// An extra-info segment that does not decode.
    #[error("extra info: {0}")]
    BadExtra(#[from] ExtraError),
    /// An extra-info segment a transmit packet may not carry (or a second GSO extra).
    #[error("extra-info type {ty} is not allowed here (or repeated)")]
    UnexpectedExtra {
        /// `XEN_NETIF_EXTRA_TYPE_*`.
        ty: u8,
    },
    /// A GSO extra with a non-zero pad or features field.
    #[error("GSO extra has non-zero pad/features")]
    GsoExtraReserved,
    /// The first slot's `size` (the packet's) is smaller than the other slots' sizes.
    #[error("packet size {size} does not exceed the {rest} bytes of its other slots")]
    SizeMismatch {
        /// The first slot's size.
        size: u16,
        /// Sum of the other slots' sizes.
        rest: usize,
    },
    /// A slot's data runs beyond its page.
    #[error("slot data at offset {offset}, {len} bytes, runs beyond the {PAGE_SIZE}-byte page")]
    SlotBeyondPage {
        /// Offset in the page.
        offset: u16,
        /// Data length.
        len: usize,
    },
    /// A packet too short for an Ethernet header, or longer than [`MAX_PACKET`].
    #[error("packet of {len} bytes is outside {min}..={max}")]
    PacketSize {
        /// The packet size.
        len: usize,
        /// Minimum.
        min: usize,
        /// Maximum.
        max: usize,
    },
    /// A grant copy or map was refused.
    #[error("grant {gref}: {status:?}")]
    Grant {
        /// The reference.
        gref: u32,
        /// Why the broker refused.
        status: GrantStatus,
    },
    /// The packet's headers do not parse.
    #[error("headers: {0}")]
    Headers(#[from] ParseError),
    /// The headers do not fit in the first slot.
    #[error("headers of {hdr_len} bytes do not fit in the first slot's {first_len} bytes")]
    HeadersBeyondFirstSlot {
        /// Header length.
        hdr_len: usize,
        /// Bytes in the first slot (capped at the header copy length).
        first_len: usize,
    },
    /// The offload metadata does not fit the packet.
    #[error("offload metadata: {0}")]
    Meta(#[from] MetaError),
    /// A receive request names a buffer the back end cannot use.
    #[error("rx response does not fit the posted buffer")]
    RxBuffer,
}

/// How transmit payload reaches the NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxPayload {
    /// By reference: the grant-mapped page of the back end's view of guest memory.
    Reference,
    /// Per-packet remapping: each payload page `mmap`ed from the guest's memfd and `munmap`ed
    /// after the transmit (needs [`VifConfig::memfd`]).
    Remap,
}

/// How received frames reach the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDelivery {
    /// Grant copy into the guest's posted buffers.
    Copy,
    /// Page flipping through the vif's [`PageFlipper`] (one frame per page; no GRO; only the
    /// first vif receives).
    Flip,
}

/// Back-end policy.
#[derive(Debug, Clone, Copy)]
pub struct BackOptions {
    /// Coalesce received frames (copy delivery only).
    pub gro: bool,
    /// Transmit payload path.
    pub tx_payload: TxPayload,
    /// Receive delivery.
    pub rx: RxDelivery,
    /// Packets per vif and direction per [`NetBack::poll`].
    pub budget: usize,
    /// Frames taken from the NIC per [`NetBack::poll`] (GRO coalesces within one round, so
    /// this bounds super-frames: 44 MTU segments make a 64 KiB one).
    pub rx_budget: usize,
}

impl Default for BackOptions {
    fn default() -> Self {
        BackOptions {
            gro: true,
            tx_payload: TxPayload::Reference,
            rx: RxDelivery::Copy,
            budget: 64,
            rx_budget: 256,
        }
    }
}

/// How to reach one guest.
#[derive(Debug)]
pub struct VifConfig<'a, K> {
    /// The guest's domain id (must be unique on this back end).
    pub domid: DomId,
    /// The guest's MAC: received frames addressed to it are delivered to this vif.
    pub mac: [u8; 6],
    /// The back end's view of the guest's memory, laid out as [`layout`] says.
    pub mem: SharedMem<'a>,
    /// The guest memory's memfd, for [`TxPayload::Remap`].
    pub memfd: Option<BorrowedFd<'a>>,
    /// Wakes the guest.
    pub notify: K,
    /// Page flipping service, for [`RxDelivery::Flip`].
    pub flipper: Option<&'a PageFlipper>,
    /// The I/O-virtual address at which the device sees the guest's frame 0
    /// ([`PayloadRef::iova`] is this plus the frame's offset). A back end whose device is
    /// the kernel (TAP, AF_PACKET) passes the address of its own mapping of `mem`, so that an
    /// iova is a pointer usable in an iovec ("identity IOMMU").
    pub iova_base: u64,
    /// Whether the guest takes TCP GSO super-frames on receive (`feature-gso-tcpv4`/`v6`);
    /// if not, super-frames are segmented in software before delivery.
    pub rx_gso: bool,
}

/// Whether a vif is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VifState {
    /// Served.
    Connected,
    /// Disconnected for this reason; its rings are no longer touched.
    Disconnected(BackError),
}

/// Counters of one vif.
#[derive(Debug, Default, Clone, Copy)]
pub struct VifStats {
    /// Packets taken from the transmit ring and handed to the NIC.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames handed to the NIC for them (segments when segmented in software).
    pub tx_nic_frames: u64,
    /// Packets delivered into the guest.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Received frames dropped for lack of posted buffers.
    pub rx_dropped: u64,
    /// Events sent to the guest.
    pub events: u64,
}

struct Vif<'a, K> {
    domid: DomId,
    mac: [u8; 6],
    mem: SharedMem<'a>,
    memfd: Option<BorrowedFd<'a>>,
    notify: K,
    flipper: Option<&'a PageFlipper>,
    rx_gso: bool,
    tx: BackRing<'a, NetifTxRequest, NetifTxResponse>,
    rx: BackRing<'a, NetifRxRequest, NetifRxResponse>,
    state: VifState,
    stats: VifStats,
}

impl<K> Vif<'_, K> {
    fn connected(&self) -> bool {
        self.state == VifState::Connected
    }

    fn fail(&mut self, err: BackError) {
        if self.connected() {
            eprintln!("netback: vif for domain {} disconnected: {err}", self.domid.0);
            self.state = VifState::Disconnected(err);
        }
    }

    /// Posted receive buffers not yet used (0 for a ring in error, which `fail`s the vif).
    fn rx_space(&mut self) -> usize {
        match self.rx.unconsumed_requests() {
            Ok(n) => n as usize,
            Err(e) => {
                self.fail(e.into());
                0
            }
        }
    }
}

/// Why [`NetBack::poll`] stopped: a device or notification failure, not a guest's fault.
#[derive(Debug, thiserror::Error)]
pub enum PollError<E: std::error::Error + 'static> {
    /// The NIC failed.
    #[error("NIC: {0}")]
    Nic(#[source] E),
    /// An event could not be sent.
    #[error("notify: {0}")]
    Notify(String),
}

/// What one [`NetBack::poll`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// Packets transmitted.
    pub tx: usize,
    /// Frames received from the NIC.
    pub rx: usize,
}

impl Work {
    /// Whether anything happened.
    pub fn any(&self) -> bool {
        self.tx + self.rx > 0
    }
}

/// The packet-processing state shared by all vifs.
struct Engine<'a, N> {
    me: DomId,
    broker: Broker<'a>,
    nic: N,
    opts: BackOptions,
    /// The packet as the back end sees it: grant-copied headers at the front; beyond them only
    /// what a software checksum or `ChecksumMode::Full` needed copied. `MAX_PACKET` bytes.
    image: Vec<u8>,
    /// Where the NIC receives: [`RX_AREA`] bytes; frames a held GRO flow names stay put.
    rx_area: Vec<u8>,
    gro: Option<Box<GroRefTable<usize, GRO_FLOWS, GRO_PIECES>>>,
    handles: Vec<MapHandle<'a>>,
}

/// A data slot of a packet: grant, offset and length of its bytes.
#[derive(Debug, Clone, Copy)]
struct Frag {
    gref: u32,
    offset: usize,
    len: usize,
}

fn grant_err(gref: u32) -> impl Fn(GrantStatus) -> BackError {
    move |status| BackError::Grant { gref, status }
}

/// The guest's fault or the device's.
enum Fault<E> {
    Vif(BackError),
    Nic(E),
}

impl<E> From<BackError> for Fault<E> {
    fn from(e: BackError) -> Self {
        Fault::Vif(e)
    }
}

impl<E> From<RingError> for Fault<E> {
    fn from(e: RingError) -> Self {
        Fault::Vif(e.into())
    }
}

/// netback: serves vifs, drives a NIC. See the [module documentation](self).
pub struct NetBack<'a, N, K> {
    engine: Engine<'a, N>,
    vifs: Vec<Vif<'a, K>>,
}

impl<N, K> std::fmt::Debug for NetBack<'_, N, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetBack")
            .field("domid", &self.engine.me)
            .field("vifs", &self.vifs.len())
            .field("opts", &self.engine.opts)
            .finish()
    }
}

impl<'a, N: Nic, K: Notifier> NetBack<'a, N, K>
where
    K::Error: std::fmt::Display,
{
    /// A back end running as domain `me`, driving `nic`.
    pub fn new(me: DomId, nic: N, opts: BackOptions) -> Self {
        NetBack {
            engine: Engine {
                me,
                broker: Broker::new(),
                nic,
                opts,
                image: vec![0; MAX_PACKET],
                rx_area: vec![0; RX_AREA],
                gro: if opts.gro {
                    GroRefTable::new(pvio_offload::gro::FLOW_BUF_LEN).ok().map(Box::new)
                } else {
                    None
                },
                handles: Vec::with_capacity(MAX_TX_SLOTS),
            },
            vifs: Vec::new(),
        }
    }

    /// Connects a guest whose front end has initialized its rings and grant table; returns
    /// the vif's index.
    pub fn connect(&mut self, cfg: VifConfig<'a, K>) -> Result<usize, BackError> {
        let grant = grant_err(0);
        let tx_page = layout::tx_ring(&cfg.mem).map_err(RingError::from)?;
        let rx_page = layout::rx_ring(&cfg.mem).map_err(RingError::from)?;
        let table = layout::gnttab(&cfg.mem).map_err(RingError::from)?;
        self.engine.broker.register(cfg.domid, cfg.mem.clone(), table, cfg.iova_base).map_err(grant)?;
        self.vifs.push(Vif {
            domid: cfg.domid,
            mac: cfg.mac,
            mem: cfg.mem,
            memfd: cfg.memfd,
            notify: cfg.notify,
            flipper: cfg.flipper,
            rx_gso: cfg.rx_gso,
            tx: BackRing::new(tx_page)?,
            rx: BackRing::new(rx_page)?,
            state: VifState::Connected,
            stats: VifStats::default(),
        });
        Ok(self.vifs.len() - 1)
    }

    /// Vif `i`'s state.
    pub fn vif_state(&self, i: usize) -> Option<VifState> {
        self.vifs.get(i).map(|v| v.state)
    }

    /// Vif `i`'s counters.
    pub fn vif_stats(&self, i: usize) -> Option<VifStats> {
        self.vifs.get(i).map(|v| v.stats)
    }

    /// The NIC.
    pub fn nic(&self) -> &N {
        &self.engine.nic
    }

    /// Stops serving vif `i` (its peer went away): its rings are no longer touched.
    pub fn disconnect(&mut self, i: usize, reason: BackError) {
        if let Some(v) = self.vifs.get_mut(i) {
            v.fail(reason);
        }
    }

    /// Takes the NIC back (to serve a new peer with a new `NetBack`).
    pub fn into_nic(self) -> N {
        self.engine.nic
    }

    /// The NIC, mutably.
    pub fn nic_mut(&mut self) -> &mut N {
        &mut self.engine.nic
    }

    /// One round of work: up to `budget` packets from each vif's transmit ring, up to
    /// `rx_budget` frames from the NIC into the vifs; then responses are published and guests
    /// notified as they asked.
    pub fn poll(&mut self) -> Result<Work, PollError<N::Error>> {
        let mut work = Work::default();
        let budget = self.engine.opts.budget;
        for vif in self.vifs.iter_mut() {
            for _ in 0..budget {
                if !vif.connected() {
                    break;
                }
                match self.engine.tx_packet(vif) {
                    Ok(true) => work.tx += 1,
                    Ok(false) => break,
                    Err(Fault::Vif(e)) => vif.fail(e),
                    Err(Fault::Nic(e)) => return Err(PollError::Nic(e)),
                }
            }
        }
        work.rx = self.engine.rx_round(&mut self.vifs).map_err(PollError::Nic)?;
        for vif in self.vifs.iter_mut().filter(|v| v.connected()) {
            let n = vif.tx.push_responses().or(vif.rx.push_responses());
            match n.send(&vif.notify) {
                Ok(true) => vif.stats.events += 1,
                Ok(false) => {}
                Err(e) => return Err(PollError::Notify(e.to_string())),
            }
        }
        Ok(work)
    }

    /// Call before sleeping: re-arms every connected vif's request events and re-checks.
    /// Returns `true` if there is work (sleeping now could lose it).
    pub fn prepare_to_wait(&mut self) -> bool {
        let mut pending = false;
        for vif in self.vifs.iter_mut().filter(|v| v.connected()) {
            match vif.tx.final_check_for_requests() {
                Ok(p) => pending |= p,
                Err(e) => vif.fail(e.into()),
            }
            // Ask for an event as soon as the guest posts more buffers, unless a whole
            // packet's worth is already there (then `rx_ready` says so).
            if let Err(e) = vif.rx.final_check_for_requests_at_least(MAX_RX_SLOTS as u32) {
                vif.fail(e.into());
            }
        }
        pending
    }

    /// Whether some connected vif has room for the largest delivery.
    pub fn rx_ready(&mut self) -> bool {
        self.vifs.iter_mut().any(|v| v.connected() && v.rx_space() >= MAX_RX_SLOTS)
    }
}

impl<'a, N: Nic> Engine<'a, N> {
    /// Takes one packet from `vif`'s transmit ring to the NIC. `Ok(false)`: the ring is empty.
    fn tx_packet<K>(&mut self, vif: &mut Vif<'a, K>) -> Result<bool, Fault<N::Error>> {
        let Some(first) = vif.tx.pop_request()? else { return Ok(false) };
        // Responses in ring order: (id, status) per consumed slot.
        let mut rsps = [(0u16, 0i16); MAX_TX_SLOTS + MAX_EXTRAS + 1];
        let mut nrsp = 0;
        let mut push_rsp = |id: u16, st: i16| {
            rsps[nrsp] = (id, st);
            nrsp += 1;
        };
        let check_flags = |f: u16| {
            if f & !nettxf::ALL != 0 {
                Err(BackError::UnknownTxFlags { flags: f })
            } else {
                Ok(())
            }
        };
        let flags = first.flags.get();
        check_flags(flags)?;
        push_rsp(first.id.get(), netif_rsp::OKAY);
        let mut published = 1;
        let mut pop = |vif: &mut Vif<'a, _>| -> Result<NetifTxRequest, BackError> {
            match vif.tx.pop_request()? {
                Some(r) => {
                    published += 1;
                    Ok(r)
                }
                None => Err(BackError::IncompletePacket { published }),
            }
        };

        let mut gso = None;
        if flags & nettxf::EXTRA_INFO != 0 {
            for n in 0.. {
                if n == MAX_EXTRAS {
                    return Err(BackError::TooManyExtras { max: MAX_EXTRAS }.into());
                }
                let slot = pop(vif)?;
                let extra = NetifExtraInfo::from_tx_slot(&slot);
                match extra.decode().map_err(BackError::from)? {
                    Extra::Gso { ty, size } if gso.is_none() => {
                        let info = extra.gso_info();
                        if info.pad != 0 || info.features.get() != 0 {
                            return Err(BackError::GsoExtraReserved.into());
                        }
                        gso = Some((ty, size));
                    }
                    _ => return Err(BackError::UnexpectedExtra { ty: extra.ty }.into()),
                }
                push_rsp(slot.id.get(), netif_rsp::NULL);
                if !extra.has_more() {
                    break;
                }
            }
        }
        let mut frags = [Frag { gref: 0, offset: 0, len: 0 }; MAX_TX_SLOTS];
        let mut nfrags = 1;
        let mut more = flags & nettxf::MORE_DATA != 0;
        let mut rest = 0usize;
        while more {
            if nfrags == MAX_TX_SLOTS {
                return Err(BackError::TooManySlots { max: MAX_TX_SLOTS }.into());
            }
            let r = pop(vif)?;
            check_flags(r.flags.get())?;
            more = r.flags.get() & nettxf::MORE_DATA != 0;
            let len = usize::from(r.size.get());
            frags[nfrags] = Frag { gref: r.gref.get(), offset: usize::from(r.offset.get()), len };
            rest += len;
            nfrags += 1;
            push_rsp(r.id.get(), netif_rsp::OKAY);
        }
        let size = first.size.get();
        if usize::from(size) <= rest {
            return Err(BackError::SizeMismatch { size, rest }.into());
        }
        let total = usize::from(size);
        frags[0] =
            Frag { gref: first.gref.get(), offset: usize::from(first.offset.get()), len: total - rest };
        for f in &frags[..nfrags] {
            if f.offset + f.len > PAGE_SIZE {
                return Err(BackError::SlotBeyondPage { offset: f.offset as u16, len: f.len }.into());
            }
        }
        if !(14..=MAX_PACKET).contains(&total) {
            return Err(BackError::PacketSize { len: total, min: 14, max: MAX_PACKET }.into());
        }

        self.transmit(vif, &frags[..nfrags], total, flags, gso)?;
        vif.stats.tx_packets += 1;
        vif.stats.tx_bytes += total as u64;
        for &(id, st) in &rsps[..nrsp] {
            let _ = vif.tx.queue_response(&NetifTxResponse { id: id.into(), status: st.into() });
        }
        Ok(true)
    }

    /// Header copy, validation, payload mapping and the NIC's transmit for one packet.
    fn transmit<K>(
        &mut self,
        vif: &mut Vif<'a, K>,
        frags: &[Frag],
        total: usize,
        flags: u16,
        gso: Option<(u8, u16)>,
    ) -> Result<(), Fault<N::Error>> {
        let first = frags[0];
        let copy_len = first.len.min(MAX_HEADER_LEN);
        let domid = vif.domid;
        let src = CopySrc::Grant(GrantPtr { domid, gref: GrantRef(first.gref), offset: first.offset as u16 });
        let mut ops = [CopyOp::new(src, CopyDst::Local(&mut self.image[..copy_len]), copy_len as u16)];
        self.broker.copy(self.me, &mut ops);
        ops[0].status.map_err(grant_err(first.gref))?;

        let frame = &self.image[..total];
        let layout = parse(frame).map_err(BackError::from)?;
        let meta = OffloadMeta::from_netif_tx(flags, gso, &layout).map_err(BackError::from)?;
        let valid = meta.validate(frame).map_err(BackError::from)?;
        let hl = layout.header_len().max(valid.hdr_len());
        if hl > copy_len {
            return Err(BackError::HeadersBeyondFirstSlot { hdr_len: hl, first_len: copy_len }.into());
        }

        // Payload: the rest of the first slot, then the other slots, as (grant, offset, len).
        let mut payload = [Frag { gref: 0, offset: 0, len: 0 }; MAX_TX_SLOTS];
        let mut np = 0;
        for (i, f) in frags.iter().enumerate() {
            let skip = if i == 0 { hl } else { 0 };
            if f.len > skip {
                payload[np] = Frag { gref: f.gref, offset: f.offset + skip, len: f.len - skip };
                np += 1;
            }
        }
        let payload = &payload[..np];

        // Pin every payload page for the device's use; unpinned below whatever happens.
        debug_assert!(self.handles.is_empty());
        let mut result = Ok(());
        for f in payload {
            match self.broker.map(self.me, domid, GrantRef(f.gref), Access::Read) {
                Ok(h) => self.handles.push(h),
                Err(status) => {
                    result = Err(BackError::Grant { gref: f.gref, status });
                    break;
                }
            }
        }
        let result = match result {
            Ok(()) => self.transmit_mapped(vif, payload, total, hl, &valid),
            Err(e) => Err(e.into()),
        };
        for h in self.handles.drain(..) {
            let unmapped = self.broker.unmap(h);
            debug_assert!(unmapped.is_ok(), "our own handle");
        }
        result
    }

    fn transmit_mapped<K>(
        &mut self,
        vif: &mut Vif<'a, K>,
        payload: &[Frag],
        total: usize,
        hl: usize,
        valid: &ValidMeta,
    ) -> Result<(), Fault<N::Error>> {
        let remaps: Vec<PageMap> = match self.opts.tx_payload {
            TxPayload::Reference => Vec::new(),
            TxPayload::Remap => {
                let fd = vif.memfd.ok_or(BackError::Grant { gref: 0, status: GrantStatus::BadVirtAddr })?;
                let mut v = Vec::with_capacity(self.handles.len());
                for h in &self.handles {
                    v.push(PageMap::new(fd, h.frame()).map_err(|_| BackError::Grant {
                        gref: h.gref().0,
                        status: GrantStatus::BadVirtAddr,
                    })?);
                }
                v
            }
        };
        let mut refs = Vec::with_capacity(payload.len());
        for (i, (f, h)) in payload.iter().zip(&self.handles).enumerate() {
            let page = match remaps.get(i) {
                Some(m) => m.mem(),
                None => frame_of(&vif.mem, h.frame())
                    .map_err(|_| BackError::Grant { gref: f.gref, status: GrantStatus::BadPage })?,
            };
            refs.push(PayloadRef { page, offset: f.offset, len: f.len, iova: h.iova() });
        }

        let caps = self.nic.caps();
        let csum_offload = caps.intersects(NicCaps::TX_CSUM | NicCaps::TSO);
        let mut meta = *valid.meta();
        meta.hdr_len = hl as u16;
        let nic_frames;
        match valid.gso() {
            Some(_) if caps.contains(NicCaps::TSO) => {
                self.nic
                    .transmit(&TxFrame { header: &self.image[..hl], payload: &refs, meta })
                    .map_err(Fault::Nic)?;
                nic_frames = 1;
            }
            Some(_) => {
                let mode = if csum_offload { ChecksumMode::Partial } else { ChecksumMode::Full };
                if mode == ChecksumMode::Full {
                    gather(&refs, &mut self.image[hl..total])?;
                }
                let seg = Segmenter::new(&self.image[..total], valid, mode)
                    .map_err(|_| BackError::Meta(MetaError::GsoSizeZero))?;
                let mut n = 0;
                let mut sub = Vec::with_capacity(4);
                for s in seg {
                    sub_refs(&refs, hl, s.payload_range(), &mut sub);
                    let m =
                        OffloadMeta { csum: s.csum(), hdr_len: s.header().len() as u16, ..OffloadMeta::NONE };
                    self.nic
                        .transmit(&TxFrame { header: s.header(), payload: &sub, meta: m })
                        .map_err(Fault::Nic)?;
                    n += 1;
                }
                nic_frames = n;
            }
            None => {
                if let (ChecksumState::Partial { start, offset }, false) = (meta.csum, csum_offload) {
                    // Complete the checksum in software: the whole packet is needed.
                    gather(&refs, &mut self.image[hl..total])?;
                    pvio_offload::checksum::complete_partial(
                        &mut self.image[..total],
                        start.into(),
                        offset.into(),
                    )
                    .map_err(|_| {
                        BackError::Meta(MetaError::ChecksumOutOfFrame { start, offset, len: total })
                    })?;
                    let m = OffloadMeta { hdr_len: total as u16, ..OffloadMeta::NONE };
                    self.nic
                        .transmit(&TxFrame { header: &self.image[..total], payload: &[], meta: m })
                        .map_err(Fault::Nic)?;
                } else {
                    if meta.gso_kind != GsoKind::None {
                        // A GSO request that fits one segment: send it as a plain frame.
                        meta = OffloadMeta { gso_kind: GsoKind::None, gso_size: 0, ..meta };
                    }
                    self.nic
                        .transmit(&TxFrame { header: &self.image[..hl], payload: &refs, meta })
                        .map_err(Fault::Nic)?;
                }
                nic_frames = 1;
            }
        }
        vif.stats.tx_nic_frames += nic_frames;
        drop(refs);
        drop(remaps);
        Ok(())
    }

    /// Frames from the NIC into the vifs. Returns how many were received.
    fn rx_round<K>(&mut self, vifs: &mut [Vif<'a, K>]) -> Result<usize, N::Error> {
        if !vifs.iter().any(|v| v.connected()) {
            return Ok(0);
        }
        match self.opts.rx {
            RxDelivery::Flip => self.rx_flip(&mut vifs[0]),
            RxDelivery::Copy => self.rx_copy(vifs),
        }
    }

    fn rx_copy<K>(&mut self, vifs: &mut [Vif<'a, K>]) -> Result<usize, N::Error> {
        let Engine { me, broker, nic, opts, rx_area, gro, .. } = self;
        let me = *me;
        let mut received = 0;
        // Where the next frame is received in `rx_area`. Frames before it are named by held
        // GRO flows (by reference: the payload is copied once, from here to the guest, when
        // the flow is delivered); a frame nothing holds is received over.
        let mut at = 0usize;
        // Posted buffers per vif as last read from its ring, and `req_cons` then: the space
        // left is known without re-reading the guest's `req_prod` (a cache line the guest
        // keeps writing) for every frame.
        let mut known: Vec<(usize, u32)> = vifs.iter_mut().map(|v| (v.rx_space(), v.rx.req_cons())).collect();
        while received < opts.rx_budget {
            // Pull only while some vif could take everything GRO holds plus this frame.
            let need = (gro.as_ref().map_or(0, |g| g.held()) + 1) * MAX_RX_SLOTS;
            let left = |v: &Vif<'a, K>, k: &(usize, u32)| {
                k.0.saturating_sub(v.rx.req_cons().wrapping_sub(k.1) as usize)
            };
            if !vifs.iter().zip(&known).any(|(v, k)| v.connected() && left(v, k) >= need) {
                for (v, k) in vifs.iter_mut().zip(known.iter_mut()) {
                    *k = (v.rx_space(), v.rx.req_cons());
                }
                if !vifs.iter().zip(&known).any(|(v, k)| v.connected() && k.0 >= need) {
                    break;
                }
            }
            if at + MAX_PACKET > rx_area.len() {
                // The area is full of held frames: deliver them, start over.
                if let Some(g) = gro.as_mut() {
                    g.flush_all(|d| deliver_ref(me, broker, vifs, rx_area, &d));
                }
                at = 0;
            }
            let Some(info) = nic.receive(&mut rx_area[at..at + MAX_PACKET])? else { break };
            received += 1;
            let area: &[u8] = rx_area;
            let frame = &area[at..at + info.len.min(MAX_PACKET)];
            match gro.as_mut() {
                Some(g) if info.meta.gso_kind == GsoKind::None => {
                    let r = g.receive(frame, at, info.meta.csum, |d| deliver_ref(me, broker, vifs, area, &d));
                    if r != Received::PassedThrough {
                        // Held, or appended to a held flow: its bytes must stay. (Appended
                        // and delivered at once: the space is merely skipped this round.)
                        at = (at + frame.len()).next_multiple_of(64);
                    }
                }
                _ => deliver(me, broker, vifs, &[frame], &info.meta),
            }
        }
        if let Some(g) = gro.as_mut() {
            g.flush_all(|d| deliver_ref(me, broker, vifs, rx_area, &d));
        }
        Ok(received)
    }

    fn rx_flip<K>(&mut self, vif: &mut Vif<'a, K>) -> Result<usize, N::Error> {
        let Some(flipper) = vif.flipper else {
            vif.fail(BackError::RxBuffer);
            return Ok(0);
        };
        let mut received = 0;
        while received < self.opts.rx_budget && vif.connected() && vif.rx_space() > 0 {
            // The pool page that goes with the request about to be consumed: reused only
            // after the guest consumed this response and posted a new request in its slot.
            let page = vif.rx.req_cons() as usize % flipper.pool_pages();
            let Ok(dst) = flipper.pool().slice(page * PAGE_SIZE, PAGE_SIZE) else { break };
            let Some(info) = self.nic.receive_shared(&dst)? else { break };
            received += 1;
            let req = match vif.rx.pop_request() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    vif.fail(e.into());
                    break;
                }
            };
            let gref = req.gref.get();
            let flipped = self
                .broker
                .map(self.me, vif.domid, GrantRef(gref), Access::Write)
                .map_err(grant_err(gref))
                .and_then(|h| {
                    let r = flipper.flip_in(h.frame(), page).map_err(|_| BackError::RxBuffer);
                    let _ = self.broker.unmap(h);
                    r
                });
            if let Err(e) = flipped {
                vif.fail(e);
                break;
            }
            let flags = rx_csum_flags(info.meta.csum);
            let rsp = NetifRxResponse {
                id: req.id,
                offset: 0.into(),
                flags: flags.into(),
                status: (info.len.min(PAGE_SIZE) as i16).into(),
            };
            let _ = vif.rx.queue_response(&rsp);
            vif.stats.rx_packets += 1;
            vif.stats.rx_bytes += info.len as u64;
        }
        Ok(received)
    }
}

fn rx_csum_flags(csum: ChecksumState) -> u16 {
    match csum {
        ChecksumState::Partial { .. } => netrxf::CSUM_BLANK | netrxf::DATA_VALIDATED,
        ChecksumState::Validated => netrxf::DATA_VALIDATED,
        ChecksumState::None => 0,
    }
}

/// Copies `refs` back to back into `out`.
fn gather(refs: &[PayloadRef<'_>], out: &mut [u8]) -> Result<(), BackError> {
    let mut at = 0;
    for r in refs {
        r.read_into(&mut out[at..]).map_err(|_| BackError::PacketSize {
            len: at + r.len,
            min: 0,
            max: out.len(),
        })?;
        at += r.len;
    }
    Ok(())
}

/// The parts of `refs` (which hold the packet's bytes from frame offset `base` on) that cover
/// `range` of the frame.
fn sub_refs<'g>(
    refs: &[PayloadRef<'g>],
    base: usize,
    range: core::ops::Range<usize>,
    out: &mut Vec<PayloadRef<'g>>,
) {
    out.clear();
    let mut at = base;
    for r in refs {
        let (lo, hi) = (at, at + r.len);
        at = hi;
        let (s, e) = (range.start.max(lo), range.end.min(hi));
        if s < e {
            out.push(PayloadRef {
                page: r.page.clone(),
                offset: r.offset + (s - lo),
                len: e - s,
                iova: r.iova,
            });
        }
        if hi >= range.end {
            break;
        }
    }
}

/// Delivers what GRO released: its header and the payload pieces it names in `area` (the
/// NIC's receive area), gathered by the grant copy itself.
fn deliver_ref<K>(
    me: DomId,
    broker: &mut Broker<'_>,
    vifs: &mut [Vif<'_, K>],
    area: &[u8],
    d: &RefDelivery<'_, usize>,
) {
    let mut parts: [&[u8]; 1 + GRO_PIECES] = [&[]; 1 + GRO_PIECES];
    parts[0] = d.header;
    let mut n = 1;
    for p in d.pieces {
        // GRO names only frames received into `area` at `p.frame`, and ranges within them.
        let Some(bytes) = p.frame.checked_add(p.offset).and_then(|s| area.get(s..s + p.len)) else { return };
        let Some(slot) = parts.get_mut(n) else { return };
        *slot = bytes;
        n += 1;
    }
    deliver(me, broker, vifs, &parts[..n], &d.meta);
}

/// Delivers one frame (or super-frame), the concatenation of `parts`, to the vif it is
/// addressed to — or, for a group address (broadcast, multicast), to every connected vif, as
/// the bridge in front of a Xen vif does. A frame for no vif, or for one without enough
/// buffers, is dropped (and counted).
fn deliver<K>(
    me: DomId,
    broker: &mut Broker<'_>,
    vifs: &mut [Vif<'_, K>],
    parts: &[&[u8]],
    meta: &OffloadMeta,
) {
    let Some(dst) = parts.first().and_then(|h| h.get(..6)) else { return };
    let group = dst[0] & 1 != 0;
    for vif in vifs.iter_mut().filter(|v| v.connected() && (group || v.mac == dst)) {
        if meta.gso_kind != GsoKind::None && !vif.rx_gso {
            deliver_segmented(me, broker, vif, &parts.concat(), meta);
        } else {
            deliver_one(me, broker, vif, parts, meta);
        }
        if !group {
            break;
        }
    }
}

/// Segments a super-frame in software for a vif that does not take them, and delivers each
/// segment. A super-frame whose metadata does not validate is dropped.
fn deliver_segmented<K>(
    me: DomId,
    broker: &mut Broker<'_>,
    vif: &mut Vif<'_, K>,
    frame: &[u8],
    meta: &OffloadMeta,
) {
    let Ok(valid) = meta.validate(frame) else {
        vif.stats.rx_dropped += 1;
        return;
    };
    let Ok(seg) = Segmenter::new(frame, &valid, ChecksumMode::Full) else {
        vif.stats.rx_dropped += 1;
        return;
    };
    let mut buf = vec![0u8; MAX_HEADER_LEN + usize::from(valid.meta().gso_size)];
    for s in seg {
        let Ok(n) = s.write_to(frame, &mut buf) else { break };
        let m = OffloadMeta { csum: ChecksumState::Validated, ..OffloadMeta::NONE };
        deliver_one(me, broker, vif, &[&buf[..n]], &m);
    }
}

/// Copies the frame made of `parts` into the vif's posted buffers, one grant copy per piece
/// of a part that falls into one posted page (all in one batch), and queues the responses.
fn deliver_one<K>(
    me: DomId,
    broker: &mut Broker<'_>,
    vif: &mut Vif<'_, K>,
    parts: &[&[u8]],
    meta: &OffloadMeta,
) {
    let gso = match meta.gso_kind {
        GsoKind::TcpV4 => Some(gso_type::TCPV4),
        GsoKind::TcpV6 => Some(gso_type::TCPV6),
        _ => None,
    };
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let chunks = len.div_ceil(PAGE_SIZE).max(1);
    let needed = chunks + usize::from(gso.is_some());
    if needed > MAX_RX_SLOTS || vif.rx_space() < needed {
        vif.stats.rx_dropped += 1;
        return;
    }
    let csum = rx_csum_flags(meta.csum);
    let mut reqs = [NetifRxRequest::default(); MAX_RX_SLOTS];
    for r in reqs.iter_mut().take(needed) {
        match vif.rx.pop_request() {
            Ok(Some(q)) => *r = q,
            // `rx_space` counted them: only a ring error can take them away.
            Ok(None) => return vif.fail(BackError::RxBuffer),
            Err(e) => return vif.fail(e.into()),
        }
    }
    // Data goes into the first request's buffer and, after the GSO extra's slot, the rest:
    // page after page, each filled before the next, every part split at page boundaries.
    // Each posted page is mapped (pinned) once for the whole frame, so a page that takes many
    // parts costs one grant-entry update, not one per part.
    let data_reqs =
        core::iter::once(reqs[0]).chain(reqs[1 + usize::from(gso.is_some())..needed].iter().copied());
    let mut pages: [Option<MapHandle<'_>>; MAX_RX_SLOTS] = Default::default();
    let mut failed = None;
    for (slot, req) in pages.iter_mut().zip(data_reqs).take(chunks) {
        let gref = req.gref.get();
        match broker.map(me, vif.domid, GrantRef(gref), Access::Write) {
            Ok(h) => *slot = Some(h),
            Err(status) => {
                failed = Some(BackError::Grant { gref, status });
                break;
            }
        }
    }
    if failed.is_none() {
        let (mut page, mut used) = (0usize, 0usize);
        'parts: for part in parts {
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                if used == PAGE_SIZE {
                    page += 1;
                    used = 0;
                }
                let Some(h) = pages.get(page).and_then(Option::as_ref) else {
                    failed = Some(BackError::RxBuffer);
                    break 'parts;
                };
                let n = rest.len().min(PAGE_SIZE - used);
                if let Err(status) = h.write_bytes(used, &rest[..n]) {
                    failed = Some(BackError::Grant { gref: h.gref().0, status });
                    break 'parts;
                }
                rest = &rest[n..];
                used += n;
            }
        }
    }
    for h in pages.iter_mut().filter_map(Option::take) {
        let unmapped = broker.unmap(h);
        debug_assert!(unmapped.is_ok(), "our own handle");
    }
    if let Some(e) = failed {
        return vif.fail(e);
    }
    let mut queue = |rsp: NetifRxResponse| {
        let _ = vif.rx.queue_response(&rsp);
    };
    let more = |i: usize| if i + 1 < chunks { netrxf::MORE_DATA } else { 0 };
    let size = |i: usize| (len - i * PAGE_SIZE).min(PAGE_SIZE) as i16;
    let first_flags = csum | more(0) | if gso.is_some() { netrxf::EXTRA_INFO } else { 0 };
    queue(NetifRxResponse {
        id: reqs[0].id,
        offset: 0.into(),
        flags: first_flags.into(),
        status: size(0).into(),
    });
    if let Some(ty) = gso {
        queue(NetifRxResponse::from_extra(&NetifExtraInfo::gso(ty, meta.gso_size)));
    }
    for (i, req) in reqs[1 + usize::from(gso.is_some())..needed].iter().enumerate() {
        queue(NetifRxResponse {
            id: req.id,
            offset: 0.into(),
            flags: more(i + 1).into(),
            status: size(i + 1).into(),
        });
    }
    vif.stats.rx_packets += 1;
    vif.stats.rx_bytes += len as u64;
}
