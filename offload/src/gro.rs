//! GRO: receive-side coalescing of in-order TCP segments into super-frames with GSO
//! metadata, following Linux's `dev_gro_receive` / `inet_gro_receive` / `ipv6_gro_receive`
//! / `tcp_gro_receive` / `tcp_gro_complete` (6.10+ rules), so that a driver domain can hand
//! its guest one 64 KiB frame instead of forty-five 1500-byte ones.
//!
//! # Use
//!
//! A [`GroTable`] holds up to `FLOWS` flows, each coalescing into its own slice of one
//! buffer the caller provides (no allocation, ever). Feed it the NIC's frames in arrival
//! order with [`GroTable::receive`]; everything that leaves — coalesced super-frames, held
//! frames that stayed alone, and frames that cannot be coalesced — leaves through the
//! `deliver` callback, as a [`Delivery`] (bytes plus [`OffloadMeta`]) ready to be copied into
//! the guest's posted buffers, **in arrival order for each flow**. At the end of a receive
//! batch (Linux: the end of a NAPI poll) call [`GroTable::flush_all`]. After `receive`
//! returns, the frame's buffer is free again: GRO either copied what it holds or delivered
//! the frame before returning. Memory: `FLOWS *` [`FLOW_BUF_LEN`] bytes for full 64 KiB
//! super-frames (Linux holds at most 8 flows per bucket); the work per frame is one parse,
//! the checksum verification unless the NIC vouches for it, a compare against each held
//! flow's headers, and one copy of the payload.
//!
//! ```
//! use pvio_offload::gro::{Cause, FlushReason, GroTable, FLOW_BUF_LEN};
//! use pvio_offload::{parse, ChecksumState, GsoKind, OffloadMeta};
//!
//! // Three segments of one TCP/IPv4 flow, 1000 payload bytes each, the last with PSH.
//! let segment = |i: u32, flags: u8| {
//!     let mut f = vec![
//!         2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet, IPv4
//!         0x45, 0, 0x04, 0x10, 0, i as u8, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
//!         0x30, 0x39, 0, 80, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
//!     ];
//!     let ip_csum = pvio_offload::checksum::checksum(&f[14..34]);
//!     f[24..26].copy_from_slice(&ip_csum.to_be_bytes());
//!     f[38..42].copy_from_slice(&(1000 * (i + 1)).to_be_bytes()); // sequence number
//!     f.resize(54 + 1000, i as u8);
//!     let l = parse(&f).unwrap();
//!     let pseudo = l.pseudo_header_sum(&f).unwrap();
//!     f[50..52].copy_from_slice(&pseudo.to_be_bytes());
//!     pvio_offload::checksum::complete_partial(&mut f, 34, 16).unwrap();
//!     f
//! };
//! let mut buf = vec![0u8; 4 * FLOW_BUF_LEN]; // the caller's memory, four flows
//! let mut gro = GroTable::<4>::new(&mut buf)?;
//! let mut out = Vec::new();
//! for (i, flags) in [(0, 0x10), (1, 0x10), (2, 0x18)] {
//!     // The NIC did not validate checksums: GRO verifies them itself.
//!     gro.receive(&segment(i, flags), ChecksumState::None, |d| {
//!         out.push((d.frame.to_vec(), d.meta, d.segments, d.cause))
//!     });
//! }
//! // PSH ended the flow: one super-frame, marked partial as Linux marks it.
//! let (frame, meta, segments, cause) = &out[0];
//! assert_eq!((out.len(), *segments, *cause), (1, 3, Cause::Flushed(FlushReason::EndFlags)));
//! assert_eq!((meta.gso_kind, meta.gso_size, frame.len()), (GsoKind::TcpV4, 1000, 54 + 3000));
//! assert_eq!(meta.csum, ChecksumState::Partial { start: 34, offset: 16 });
//! meta.validate(frame)?; // ready for the guest, or for GSO again
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **By reference.** [`GroRefTable`] applies the same rules and delivers the same frames, but
//! copies no payload: a held flow keeps its first segment's headers and a list of
//! [`Piece`]s (which of the caller's received frames, which bytes), and a super-frame leaves
//! as fixed-up headers plus that list ([`RefDelivery`]). The caller, which must leave those
//! frames untouched until they are delivered, then copies each payload byte once, from the
//! NIC's buffer to its destination — what Linux's GRO achieves by chaining the segments'
//! pages as frags. Bounded by `PIECES` segments per super-frame as well as by 64 KiB.
//!
//! # What coalesces (the rules, and where they differ from Linux)
//!
//! A frame is a **candidate** if it is Ethernet (up to two VLAN tags) + IPv4 without options
//! (Linux: `*(u8 *)iph != 0x45` is never coalesced) or IPv6 with only hop-by-hop, routing
//! and destination-options extension headers (what `ipv6_gso_pull_exthdrs` steps over) +
//! TCP; not a fragment; its IPv4 header checksum verifies (always checked, as
//! `inet_gro_receive` does); its TCP checksum verifies or is vouched for (see below); it
//! carries payload; it has none of URG, RST, SYN; and it fits a flow buffer. Anything else
//! is delivered unchanged ([`Cause::PassedThrough`], with the [`PassReason`]).
//!
//! Two frames belong to the **same flow** when everything Linux treats as the flow key is
//! equal: the whole link-layer header (MAC addresses, every VLAN tag, the EtherType), IP
//! source and destination, for IPv6 the flow label, first next-header value and the
//! extension headers byte for byte, and the TCP ports. Frames of other flows never affect a
//! held flow (except by evicting the oldest when the table is full: [`FlushReason::Evicted`],
//! Linux's `gro_flush_oldest`).
//!
//! A candidate is **appended** to its flow's held super-frame only if (else the held one is
//! delivered first, with the [`FlushReason`] named here, and the candidate starts anew):
//!
//! - it has no CWR ([`FlushReason::Cwr`]; a CWR segment starts a new super-frame, so CWR
//!   only ever sits on a super-frame's first segment, where GSO puts it back);
//! - its 32-bit word of data offset, reserved bits, flags and **window** equals the held
//!   one's except for CWR, FIN and PSH (Linux compares `tcp_flag_word`, which includes the
//!   window: [`FlushReason::WindowChanged`], [`FlushReason::FlagsChanged`]);
//! - the same ACK number ([`FlushReason::AckChanged`]) and the same option bytes, all of
//!   them, timestamps included ([`FlushReason::OptionsChanged`]);
//! - IPv4: the same TOS, TTL and flags/fragment word (Linux compares DF only; the others are
//!   zero in a non-fragment, except the reserved bit, which we compare too); IPv6: the same
//!   traffic class and hop limit ([`FlushReason::IpChanged`]);
//! - IPv4 ID: the held flow's first ID + the number of held segments (wrapping), or — if
//!   DF is set and the second segment repeated the first's ID — the same ID throughout
//!   (Linux's `ip_fixedid`; [`FlushReason::IpIdNotSequential`]);
//! - its payload is at most the flow's MSS, the first segment's payload length
//!   ([`FlushReason::LargerThanMss`]);
//! - its sequence number continues the held payload exactly ([`FlushReason::SeqNotNext`]:
//!   gaps, reordering and retransmissions alike);
//! - the IP packet stays within 65535 bytes (IPv4 total length; for IPv6 Linux's
//!   `p->len + len >= 65536` bound, measured from the IPv6 header) and within the flow's
//!   buffer ([`FlushReason::Full`]).
//!
//! After appending, the flow is delivered at once if the segment was shorter than the MSS
//! ([`FlushReason::ShortSegment`]) or carried PSH or FIN ([`FlushReason::EndFlags`]; they are
//! OR-ed into the super-frame's header). A candidate with PSH or FIN that starts anew is not
//! held but delivered unchanged, as Linux does.
//!
//! A frame of a held flow that is not a candidate (a pure ACK, URG/RST/SYN, a bad checksum,
//! IPv4 options...) delivers the held flow first ([`FlushReason::NotCoalescible`]) and then
//! itself. Linux does the same for the flag and length cases, but lets a frame that fails
//! its IP or TCP checksum, or carries IPv4 options, overtake the held flow; we keep each
//! flow in order instead. Fragments (which carry no ports to name a flow by), non-TCP frames
//! and frames that do not parse are delivered without touching the table, as in Linux.
//!
//! Not modelled: Linux's AccECN variant (6.18+, where a changed CWR also flushes), TLS
//! device offload state, and the GRO of already-coalesced (GSO) input.
//!
//! # Checksums
//!
//! The `csum` argument of [`GroTable::receive`] says what the NIC knows:
//! [`ChecksumState::None`] — GRO verifies the TCP checksum in software (Linux's
//! `skb_gro_checksum_validate` for `CHECKSUM_NONE`); [`ChecksumState::Validated`] — the NIC
//! verified it (`CHECKSUM_UNNECESSARY`), trusted; [`ChecksumState::Partial`] — a locally
//! generated frame whose field holds the pseudo-header sum, trusted if it names the TCP
//! checksum field. A frame that fails is delivered unchanged.
//!
//! A **super-frame** (two segments or more) leaves as Linux's `tcp_gro_complete` leaves it:
//! IPv4 total length set and header checksum recomputed, or IPv6 payload length set; the TCP
//! checksum field holds the folded pseudo-header sum over the new length, and the metadata
//! says [`ChecksumState::Partial`] at the TCP checksum (`CHECKSUM_PARTIAL`; virtio
//! `NEEDS_CSUM`, or Xen `csum_blank | data_validated`). Partial, not a completed checksum,
//! because it is the only state in which virtio and netif can carry GSO metadata at all
//! ([`OffloadMeta::validate`] insists on it), because every byte was already verified, and
//! because it costs a header's worth of work instead of a second pass over 64 KiB. A guest
//! that needs the full checksum gets it with [`checksum::complete_partial`]. A frame held
//! alone leaves byte for byte as it came, marked [`ChecksumState::Validated`] if it was
//! verified or vouched for (or with the caller's `Partial`, unchanged).
//!
//! # The round trip
//!
//! The metadata of a super-frame is [`GsoKind::TcpV4`]/[`GsoKind::TcpV6`], `gso_size` = the
//! MSS, `hdr_len` = Ethernet to the end of TCP, `ecn` = CWR set on its first segment
//! (Linux's `SKB_GSO_TCP_ECN`). Every segment but the last carried exactly `gso_size`
//! bytes, so [`gso::Segmenter`](crate::gso::Segmenter) (full checksums) gives back the
//! segments that went in, byte for byte — except the IPv4 IDs of an `ip_fixedid` flow
//! (which GSO increments; [`Delivery::fixed_ip_id`] says so; Linux has a
//! `SKB_GSO_TCP_FIXEDID` bit for it that neither virtio nor netif can carry), a TCP
//! checksum that a sender wrote as `0xffff` where the complement of the sum is 0, and the
//! urgent pointer of later segments: without URG (URG segments are never coalesced) the
//! field means nothing, and like Linux's `tcp_gro_receive` the super-frame keeps the first
//! segment's without comparing the others (`fuzz/regressions/offload_gro/` keeps a case).
//! `tests/proptest_gro.rs` checks this on random flows.
//!
//! # Untrusted input
//!
//! Frames come from the wire. Every offset is from [`parse()`](crate::parse()), which bounds
//! it by the frame; the bytes compared or copied are bounded by it and by the flow buffer;
//! no input makes this module panic, loop or allocate.

use core::fmt;

use thiserror::Error;

use crate::checksum;
use crate::error::ParseError;
use crate::ether::{self, MAX_VLAN_TAGS};
use crate::gso::MAX_HEADER_LEN;
use crate::ipv4;
use crate::ipv6;
use crate::meta::{non_gso_extension, ChecksumState, GsoKind, OffloadMeta};
use crate::parse::{parse, L3, L4};
use crate::tcp::{self, TcpFlags};

/// The largest IP packet a super-frame may become (IPv4's 16-bit total length; Linux's
/// `GRO_LEGACY_MAX_SIZE` bound for both versions).
pub const MAX_IP_LEN: usize = 65535;

/// A flow buffer of this many bytes holds the largest super-frame: Ethernet + two VLAN tags +
/// [`MAX_IP_LEN`]. Larger per-flow shares are not used.
pub const FLOW_BUF_LEN: usize = ether::HEADER_LEN + MAX_VLAN_TAGS * ether::VLAN_HEADER_LEN + MAX_IP_LEN;

/// The smallest per-flow share [`GroTable::new`] accepts: a 1500-byte-MTU frame with tags.
/// Smaller shares coalesce less (a flow is delivered when the next segment would not fit),
/// but work.
pub const MIN_FLOW_BUF_LEN: usize = 2048;

/// The TCP flags byte (FIN..CWR), the low byte of the data-offset/flags word.
const TCP_FLAGS_BYTE: usize = 13;
/// The TCP data offset/reserved/flags/window word (`tcp_flag_word`).
const TCP_FLAG_WORD: core::ops::Range<usize> = 12..16;
/// The options, after the fixed header.
const TCP_OPTIONS: usize = tcp::MIN_HEADER_LEN;

/// Why a [`GroTable`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum GroError {
    /// The buffer does not give every flow [`MIN_FLOW_BUF_LEN`] bytes (or `FLOWS` is 0).
    #[error("a {available}-byte buffer cannot hold {flows} flows of at least {min} bytes each")]
    BufferTooSmall {
        /// The buffer's length.
        available: usize,
        /// `FLOWS`.
        flows: usize,
        /// [`MIN_FLOW_BUF_LEN`].
        min: usize,
    },
}

/// Why a frame was delivered as it came instead of being held or appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassReason {
    /// It does not parse (Linux would drop or pass it; GRO does not judge).
    Malformed(ParseError),
    /// Not TCP over IPv4 or IPv6.
    NotTcp,
    /// An IP fragment.
    Fragment,
    /// IPv4 with options (Linux coalesces only IHL 5).
    Ipv4Options,
    /// An IPv6 extension header GRO cannot step over (fragment, AH, ...), with its
    /// next-header value.
    Ipv6Extension(u8),
    /// The IPv4 header checksum fails.
    BadIpChecksum,
    /// The TCP checksum fails (verified in software because the caller said
    /// [`ChecksumState::None`]).
    BadTcpChecksum,
    /// The caller's [`ChecksumState::Partial`] does not name this frame's TCP checksum field.
    PartialNotTcp,
    /// No payload (a pure ACK, a bare FIN...).
    NoPayload,
    /// URG, RST or SYN: never coalesced.
    ControlFlags(TcpFlags),
    /// PSH or FIN on a segment with nothing held to end: delivered at once, as Linux does.
    EndFlags(TcpFlags),
    /// The frame does not fit a flow buffer.
    TooLarge,
    /// Its headers are longer than [`gso::MAX_HEADER_LEN`](crate::gso::MAX_HEADER_LEN): a
    /// super-frame of such segments could not be segmented again.
    HeadersTooLong,
}

/// Why a held flow was delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushReason {
    /// The last appended segment carried PSH or FIN.
    EndFlags,
    /// The last appended segment was shorter than the MSS.
    ShortSegment,
    /// A segment of the flow arrived with CWR set.
    Cwr,
    /// A segment's data offset, reserved bits or flags (other than CWR, FIN, PSH) differ.
    FlagsChanged,
    /// A segment's window differs.
    WindowChanged,
    /// A segment's ACK number differs.
    AckChanged,
    /// A segment's TCP option bytes differ.
    OptionsChanged,
    /// IPv4 TOS, TTL or flags, or IPv6 traffic class or hop limit, differ.
    IpChanged,
    /// The IPv4 ID neither increments by one per segment nor (with DF) stays fixed.
    IpIdNotSequential,
    /// A segment carries more payload than the MSS.
    LargerThanMss,
    /// A segment's sequence number does not continue the held payload.
    SeqNotNext,
    /// Appending the next segment would pass [`MAX_IP_LEN`] or the flow buffer.
    Full,
    /// A frame of the flow that cannot be coalesced arrived (it is delivered next).
    NotCoalescible(PassReason),
    /// The table was full and this was the oldest flow.
    Evicted,
    /// [`GroTable::flush_all`].
    Explicit,
}

/// Why a [`Delivery`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A held flow (one frame or a super-frame) was delivered.
    Flushed(FlushReason),
    /// The frame just received is delivered unchanged.
    PassedThrough(PassReason),
}

/// One frame leaving GRO, in order, for the guest.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// The frame: a super-frame, a held frame (link-layer padding dropped), or the received
    /// frame unchanged.
    pub frame: &'a [u8],
    /// Its metadata: for a super-frame, TCP GSO with a partial checksum; otherwise no GSO and
    /// the checksum state as known.
    pub meta: OffloadMeta,
    /// How many received frames it holds (1 unless it is a super-frame).
    pub segments: u32,
    /// The IPv4 IDs of its segments were all equal (Linux's `ip_fixedid`); re-segmenting
    /// would increment them.
    pub fixed_ip_id: bool,
    /// Why it left.
    pub cause: Cause,
}

/// What [`GroTable::receive`] did with the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Appended to a held flow (which may have been delivered at once).
    Appended,
    /// Held as the first segment of a new super-frame.
    Held,
    /// Delivered unchanged.
    PassedThrough,
}

/// A held flow: the first segment's headers and all payload so far sit in the slot's
/// buffer at `..len`.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// Bytes used in the buffer: `payload_offset + payload`.
    len: usize,
    l3: usize,
    l4: usize,
    /// Where the payload starts (header length).
    hl: usize,
    v4: bool,
    /// The first segment's payload length.
    mss: usize,
    /// Segments held, at least 1.
    count: u32,
    /// The sequence number the next segment must carry.
    next_seq: u32,
    fixed_id: bool,
    /// When the flow started (for eviction).
    born: u64,
    /// The checksum state to report if the flow stays one frame.
    csum: ChecksumState,
    /// The TCP ports word, to turn other flows away before comparing headers.
    ports: u32,
}

struct Slot<'b> {
    buf: &'b mut [u8],
    held: Option<Held>,
}

/// Coalesces TCP segments of up to `FLOWS` flows at once, each into its share of a buffer
/// the caller provides. See the [module docs](self).
pub struct GroTable<'b, const FLOWS: usize> {
    slots: [Slot<'b>; FLOWS],
    clock: u64,
}

impl<const FLOWS: usize> fmt::Debug for GroTable<'_, FLOWS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroTable")
            .field("flows", &FLOWS)
            .field("flow_buf_len", &self.slots.first().map_or(0, |s| s.buf.len()))
            .field("held", &self.held())
            .finish()
    }
}

/// A received frame that passed the candidate checks.
#[derive(Clone, Copy)]
struct Candidate<'f> {
    /// The IP packet's frame, without link-layer padding.
    frame: &'f [u8],
    l3: usize,
    l4: usize,
    hl: usize,
    v4: bool,
    seq: u32,
    flags: TcpFlags,
    csum: ChecksumState,
}

impl Candidate<'_> {
    fn payload_len(&self) -> usize {
        self.frame.len() - self.hl
    }
}

/// Where a parsed TCP frame's flow key lies.
#[derive(Clone, Copy)]
struct Key {
    l3: usize,
    l4: usize,
    v4: bool,
}

/// Where a frame stands before the table is consulted.
enum Classified<'f> {
    /// A candidate.
    Candidate(Candidate<'f>),
    /// TCP with a known flow key, but not coalescible: flush its flow, then deliver it.
    Rejected(PassReason, Key),
    /// Not attributable to a flow: deliver it and touch nothing.
    Foreign(PassReason),
}

impl<'b, const FLOWS: usize> GroTable<'b, FLOWS> {
    /// Splits `buf` into `FLOWS` equal shares (each capped at [`FLOW_BUF_LEN`]; give
    /// `FLOWS * FLOW_BUF_LEN` bytes for full 64 KiB super-frames). Fails if a share would be
    /// below [`MIN_FLOW_BUF_LEN`].
    pub fn new(buf: &'b mut [u8]) -> Result<Self, GroError> {
        let share = buf.len().checked_div(FLOWS).unwrap_or(0).min(FLOW_BUF_LEN);
        if share < MIN_FLOW_BUF_LEN {
            return Err(GroError::BufferTooSmall {
                available: buf.len(),
                flows: FLOWS,
                min: MIN_FLOW_BUF_LEN,
            });
        }
        let mut rest = buf;
        let slots = core::array::from_fn(|_| {
            // share * FLOWS <= buf.len(): every split is within bounds.
            let (head, tail) = core::mem::take(&mut rest).split_at_mut(share);
            rest = tail;
            Slot { buf: head, held: None }
        });
        Ok(GroTable { slots, clock: 0 })
    }

    /// How many flows are held.
    pub fn held(&self) -> usize {
        self.slots.iter().filter(|s| s.held.is_some()).count()
    }

    /// Takes one received frame. Whatever leaves — a flow this frame ends or interrupts, a
    /// flow evicted to make room, or this frame itself — goes to `deliver` before this
    /// returns, in arrival order per flow. `csum` is what the NIC knows of the frame's
    /// checksum (see the [module docs](self#checksums)).
    pub fn receive<F: FnMut(Delivery<'_>)>(
        &mut self,
        frame: &[u8],
        csum: ChecksumState,
        mut deliver: F,
    ) -> Received {
        let max_len = self.slots.first().map_or(0, |s| s.buf.len());
        let cand = match classify(frame, csum, max_len) {
            Classified::Foreign(why) => return pass(frame, csum, why, &mut deliver),
            Classified::Rejected(why, key) => {
                if let Some(i) = self.find(frame, key) {
                    self.flush(i, FlushReason::NotCoalescible(why), &mut deliver);
                }
                return pass(frame, csum, why, &mut deliver);
            }
            Classified::Candidate(c) => c,
        };
        if let Some(i) = self.find(cand.frame, Key { l3: cand.l3, l4: cand.l4, v4: cand.v4 }) {
            match self.slots[i].try_append(&cand) {
                Ok(done) => {
                    if let Some(why) = done {
                        self.flush(i, why, &mut deliver);
                    }
                    return Received::Appended;
                }
                Err(why) => self.flush(i, why, &mut deliver),
            }
        }
        let end = cand.flags & (TcpFlags::PSH | TcpFlags::FIN);
        if !end.is_empty() {
            return pass(frame, cand.csum, PassReason::EndFlags(end), &mut deliver);
        }
        let i = match self.slots.iter().position(|s| s.held.is_none()) {
            Some(i) => i,
            None => {
                let oldest = self.oldest().unwrap_or(0);
                self.flush(oldest, FlushReason::Evicted, &mut deliver);
                oldest
            }
        };
        self.clock += 1;
        self.slots[i].hold(&cand, self.clock);
        Received::Held
    }

    /// Delivers every held flow, oldest first.
    pub fn flush_all<F: FnMut(Delivery<'_>)>(&mut self, mut deliver: F) {
        while let Some(i) = self.oldest() {
            self.flush(i, FlushReason::Explicit, &mut deliver);
        }
    }

    /// The held flow `frame` (a parsed TCP frame, its flow key at `key`) belongs to.
    fn find(&self, frame: &[u8], key: Key) -> Option<usize> {
        let p = ports(frame, key.l4);
        self.slots.iter().position(|s| {
            s.held.as_ref().is_some_and(|h| h.ports == p && same_flow(&s.buf[..h.hl], h, frame, key))
        })
    }

    fn oldest(&self) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(h) = &s.held {
                if best.is_none_or(|(_, born)| h.born < born) {
                    best = Some((i, h.born));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    fn flush<F: FnMut(Delivery<'_>)>(&mut self, i: usize, why: FlushReason, deliver: &mut F) {
        let slot = &mut self.slots[i];
        let Some(h) = slot.held.take() else { return };
        let meta = if h.count == 1 {
            OffloadMeta { csum: h.csum, ..OffloadMeta::NONE }
        } else {
            complete(&mut slot.buf[..h.hl], h.len, &h)
        };
        deliver(Delivery {
            frame: &slot.buf[..h.len],
            meta,
            segments: h.count,
            fixed_ip_id: h.fixed_id,
            cause: Cause::Flushed(why),
        });
    }
}

/// A run of payload bytes that a by-reference super-frame holds: `len` bytes at `offset` of
/// the received frame the caller named `frame` when it handed it to
/// [`GroRefTable::receive`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Piece<T> {
    /// The caller's name for the received frame (an index or offset into its receive
    /// buffers).
    pub frame: T,
    /// Where the bytes start in that frame.
    pub offset: usize,
    /// How many bytes.
    pub len: usize,
}

/// One frame leaving a [`GroRefTable`]: `header` followed by the bytes of `pieces`, in order.
#[derive(Clone, Copy, Debug)]
pub struct RefDelivery<'a, T> {
    /// A super-frame's or held frame's headers, fixed up as [`Delivery::frame`]'s are; or,
    /// for a frame passed through, the whole received frame, unchanged (then `pieces` is
    /// empty).
    pub header: &'a [u8],
    /// The payload, by reference into the caller's received frames: one piece per segment.
    pub pieces: &'a [Piece<T>],
    /// As [`Delivery::meta`].
    pub meta: OffloadMeta,
    /// As [`Delivery::segments`] (= `pieces.len()` for a held flow).
    pub segments: u32,
    /// As [`Delivery::fixed_ip_id`].
    pub fixed_ip_id: bool,
    /// As [`Delivery::cause`].
    pub cause: Cause,
}

impl<T> RefDelivery<'_, T> {
    /// The frame's length: header plus pieces.
    pub fn len(&self) -> usize {
        self.header.len() + self.pieces.iter().map(|p| p.len).sum::<usize>()
    }

    /// Whether the frame is empty (never, for a delivery).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A held flow of a [`GroRefTable`]: the first segment's headers, and one piece per segment.
struct RefSlot<T, const PIECES: usize> {
    hdr: [u8; MAX_HEADER_LEN],
    pieces: [Piece<T>; PIECES],
    held: Option<Held>,
}

/// GRO **by reference**: the same rules, flows and deliveries as [`GroTable`], but a held
/// flow keeps only a copy of its first segment's headers (at most
/// [`gso::MAX_HEADER_LEN`](crate::gso::MAX_HEADER_LEN) bytes) and a list of [`Piece`]s — where
/// each segment's payload lies in the caller's receive buffers — instead of copying the
/// payload. A super-frame leaves as its fixed-up headers plus that list
/// ([`RefDelivery`]), so the caller copies every payload byte once, from the buffer the NIC
/// wrote it to straight to its destination (Linux's GRO chains the segments' pages as frags in
/// the same way).
///
/// Limits: a super-frame holds at most `PIECES` segments (then [`FlushReason::Full`], as for
/// 64 KiB) and at most `max_len` bytes ([`new`](Self::new)); `FLOWS` flows are held at once.
/// No allocation; the table is `FLOWS * (256 + PIECES * size_of::<Piece<T>>())` bytes.
///
/// **The caller's promise:** the bytes of a frame handed to [`receive`](Self::receive) stay
/// where they are, unchanged, until every delivery naming it has been made — until
/// [`held`](Self::held) is 0 (after [`flush_all`](Self::flush_all)), or, finer, until the
/// held flows no longer name it. The checks GRO made (checksums, sequence numbers) are only
/// true of the bytes as they were. Memory the caller shares with an untrusted peer is no place
/// for received frames; a NIC's private receive buffers are.
///
/// ```
/// use pvio_offload::gro::{GroRefTable, Piece, FLOW_BUF_LEN};
/// use pvio_offload::ChecksumState;
/// # let segment = |_i: u32| -> Vec<u8> { vec![0u8; 60] };
/// // Frames stay in the caller's buffers, named by their index.
/// let frames: Vec<Vec<u8>> = (0..3).map(segment).collect();
/// let mut gro = GroRefTable::<usize, 4, 64>::new(FLOW_BUF_LEN)?;
/// let mut out = Vec::new();
/// let gather = |d: pvio_offload::gro::RefDelivery<'_, usize>, out: &mut Vec<Vec<u8>>| {
///     let mut f = d.header.to_vec();
///     for p in d.pieces {
///         f.extend_from_slice(&frames[p.frame][p.offset..p.offset + p.len]);
///     }
///     out.push(f);
/// };
/// for (i, f) in frames.iter().enumerate() {
///     gro.receive(f, i, ChecksumState::None, |d| gather(d, &mut out));
/// }
/// gro.flush_all(|d| gather(d, &mut out));
/// assert_eq!(out.len(), 3); // not TCP: passed through
/// # Ok::<(), pvio_offload::gro::GroError>(())
/// ```
pub struct GroRefTable<T, const FLOWS: usize, const PIECES: usize> {
    slots: [RefSlot<T, PIECES>; FLOWS],
    max_len: usize,
    clock: u64,
}

impl<T, const FLOWS: usize, const PIECES: usize> fmt::Debug for GroRefTable<T, FLOWS, PIECES> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroRefTable")
            .field("flows", &FLOWS)
            .field("pieces", &PIECES)
            .field("max_len", &self.max_len)
            .field("held", &self.held())
            .finish()
    }
}

impl<T, const FLOWS: usize, const PIECES: usize> GroRefTable<T, FLOWS, PIECES> {
    /// How many flows are held.
    pub fn held(&self) -> usize {
        self.slots.iter().filter(|s| s.held.is_some()).count()
    }
}

impl<T: Copy + Default, const FLOWS: usize, const PIECES: usize> GroRefTable<T, FLOWS, PIECES> {
    /// A table whose super-frames reach at most `max_len` bytes (capped at
    /// [`FLOW_BUF_LEN`]; a [`GroTable`] share of the same size coalesces the same). Fails if
    /// `max_len` is below [`MIN_FLOW_BUF_LEN`] or `FLOWS` is 0. `PIECES` must be at least 1
    /// (checked at compile time).
    pub fn new(max_len: usize) -> Result<Self, GroError> {
        const { assert!(PIECES > 0, "a flow holds at least one piece") };
        if max_len < MIN_FLOW_BUF_LEN || FLOWS == 0 {
            return Err(GroError::BufferTooSmall { available: max_len, flows: FLOWS, min: MIN_FLOW_BUF_LEN });
        }
        Ok(GroRefTable {
            slots: core::array::from_fn(|_| RefSlot {
                hdr: [0; MAX_HEADER_LEN],
                pieces: [Piece::default(); PIECES],
                held: None,
            }),
            max_len: max_len.min(FLOW_BUF_LEN),
            clock: 0,
        })
    }

    /// Whether a held flow names the frame `frame` in one of its pieces (its bytes must stay
    /// as they are).
    pub fn refers_to(&self, frame: T) -> bool
    where
        T: PartialEq,
    {
        self.slots.iter().any(|s| {
            s.held.as_ref().is_some_and(|h| s.pieces[..h.count as usize].iter().any(|p| p.frame == frame))
        })
    }

    /// As [`GroTable::receive`], for the frame the caller names `name`; a held flow records
    /// where its payload lies instead of copying it (see the [type docs](Self) for the
    /// promise this asks of the caller).
    pub fn receive<F: FnMut(RefDelivery<'_, T>)>(
        &mut self,
        frame: &[u8],
        name: T,
        csum: ChecksumState,
        mut deliver: F,
    ) -> Received {
        let cand = match classify(frame, csum, self.max_len) {
            Classified::Foreign(why) => return pass_ref(frame, csum, why, &mut deliver),
            Classified::Rejected(why, key) => {
                if let Some(i) = self.find(frame, key) {
                    self.flush(i, FlushReason::NotCoalescible(why), &mut deliver);
                }
                return pass_ref(frame, csum, why, &mut deliver);
            }
            Classified::Candidate(c) => c,
        };
        if let Some(i) = self.find(cand.frame, Key { l3: cand.l3, l4: cand.l4, v4: cand.v4 }) {
            let slot = &mut self.slots[i];
            let appended = match slot.held.as_mut() {
                Some(h) => may_append(&slot.hdr[..h.hl], h, &cand, self.max_len).and_then(|fixed| {
                    let n = h.count as usize;
                    let piece = slot.pieces.get_mut(n).ok_or(FlushReason::Full)?;
                    *piece = Piece { frame: name, offset: cand.hl, len: cand.payload_len() };
                    Ok(h.appended(&mut slot.hdr[..h.hl], &cand, fixed))
                }),
                None => Err(FlushReason::Explicit),
            };
            match appended {
                Ok(done) => {
                    if let Some(why) = done {
                        self.flush(i, why, &mut deliver);
                    }
                    return Received::Appended;
                }
                Err(why) => self.flush(i, why, &mut deliver),
            }
        }
        let end = cand.flags & (TcpFlags::PSH | TcpFlags::FIN);
        if !end.is_empty() {
            return pass_ref(frame, cand.csum, PassReason::EndFlags(end), &mut deliver);
        }
        let i = match self.slots.iter().position(|s| s.held.is_none()) {
            Some(i) => i,
            None => {
                let oldest = self.oldest().unwrap_or(0);
                self.flush(oldest, FlushReason::Evicted, &mut deliver);
                oldest
            }
        };
        self.clock += 1;
        let slot = &mut self.slots[i];
        // `classify` bounded the headers by MAX_HEADER_LEN.
        slot.hdr[..cand.hl].copy_from_slice(&cand.frame[..cand.hl]);
        slot.pieces[0] = Piece { frame: name, offset: cand.hl, len: cand.payload_len() };
        slot.held = Some(Held::first(&cand, self.clock));
        Received::Held
    }

    /// Delivers every held flow, oldest first. Afterwards no frame is referred to.
    pub fn flush_all<F: FnMut(RefDelivery<'_, T>)>(&mut self, mut deliver: F) {
        while let Some(i) = self.oldest() {
            self.flush(i, FlushReason::Explicit, &mut deliver);
        }
    }

    fn find(&self, frame: &[u8], key: Key) -> Option<usize> {
        let p = ports(frame, key.l4);
        self.slots.iter().position(|s| {
            s.held.as_ref().is_some_and(|h| h.ports == p && same_flow(&s.hdr[..h.hl], h, frame, key))
        })
    }

    fn oldest(&self) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(h) = &s.held {
                if best.is_none_or(|(_, born)| h.born < born) {
                    best = Some((i, h.born));
                }
            }
        }
        best.map(|(i, _)| i)
    }

    fn flush<F: FnMut(RefDelivery<'_, T>)>(&mut self, i: usize, why: FlushReason, deliver: &mut F) {
        let slot = &mut self.slots[i];
        let Some(h) = slot.held.take() else { return };
        let meta = if h.count == 1 {
            OffloadMeta { csum: h.csum, ..OffloadMeta::NONE }
        } else {
            complete(&mut slot.hdr[..h.hl], h.len, &h)
        };
        deliver(RefDelivery {
            header: &slot.hdr[..h.hl],
            pieces: &slot.pieces[..h.count as usize],
            meta,
            segments: h.count,
            fixed_ip_id: h.fixed_id,
            cause: Cause::Flushed(why),
        });
    }
}

/// [`pass`] for a [`GroRefTable`]: the whole frame as the header, no pieces.
fn pass_ref<T, F: FnMut(RefDelivery<'_, T>)>(
    frame: &[u8],
    csum: ChecksumState,
    why: PassReason,
    deliver: &mut F,
) -> Received {
    deliver(RefDelivery {
        header: frame,
        pieces: &[],
        meta: OffloadMeta { csum, ..OffloadMeta::NONE },
        segments: 1,
        fixed_ip_id: false,
        cause: Cause::PassedThrough(why),
    });
    Received::PassedThrough
}

impl Held {
    /// The state of a flow that `c` starts.
    fn first(c: &Candidate<'_>, born: u64) -> Held {
        Held {
            len: c.frame.len(),
            l3: c.l3,
            l4: c.l4,
            hl: c.hl,
            v4: c.v4,
            mss: c.payload_len(),
            count: 1,
            next_seq: c.seq.wrapping_add(c.payload_len() as u32),
            fixed_id: false,
            born,
            csum: c.csum,
            ports: ports(c.frame, c.l4),
        }
    }

    /// Records `c`'s payload as appended: ORs its FIN/PSH into the held headers `hdr`
    /// (`..hl`); `Some(reason)` if the flow is to be delivered now.
    fn appended(&mut self, hdr: &mut [u8], c: &Candidate<'_>, fixed_id: bool) -> Option<FlushReason> {
        let plen = c.payload_len();
        let end = c.flags & (TcpFlags::FIN | TcpFlags::PSH);
        hdr[self.l4 + TCP_FLAGS_BYTE] |= end.bits() as u8;
        self.len += plen;
        self.count += 1;
        self.next_seq = self.next_seq.wrapping_add(plen as u32);
        self.fixed_id = fixed_id;
        if !end.is_empty() {
            Some(FlushReason::EndFlags)
        } else if plen < self.mss {
            Some(FlushReason::ShortSegment)
        } else {
            None
        }
    }
}

impl Slot<'_> {
    fn hold(&mut self, c: &Candidate<'_>, born: u64) {
        let len = c.frame.len();
        // `classify` checked that the frame fits a share.
        self.buf[..len].copy_from_slice(c.frame);
        self.held = Some(Held::first(c, born));
    }

    /// Appends `c` (of this slot's flow) if Linux would; `Ok(Some(reason))` if the flow is
    /// to be delivered now, `Err(reason)` if `c` cannot be appended.
    fn try_append(&mut self, c: &Candidate<'_>) -> Result<Option<FlushReason>, FlushReason> {
        let Some(h) = self.held.as_mut() else { return Err(FlushReason::Explicit) };
        let fixed_id = may_append(&self.buf[..h.hl], h, c, self.buf.len())?;
        let new_len = h.len + c.payload_len();
        self.buf[h.len..new_len].copy_from_slice(&c.frame[c.hl..]);
        Ok(h.appended(&mut self.buf[..h.hl], c, fixed_id))
    }
}

/// Linux's rules for appending the candidate `c` to the held flow `h`, whose first
/// segment's headers are `old` (`..h.hl`), in a super-frame of at most `cap` bytes.
/// `Ok(fixed_id)` if it may be appended (the flow's IPv4 IDs are then fixed, or not),
/// `Err(reason)` if the held flow must be delivered first.
fn may_append(old: &[u8], h: &Held, c: &Candidate<'_>, cap: usize) -> Result<bool, FlushReason> {
    let new = c.frame;
    // Same flow: same link header and IP header length, so the same offsets.
    debug_assert!(c.l3 == h.l3 && c.l4 == h.l4);
    if c.hl != h.hl {
        return Err(FlushReason::FlagsChanged); // data offset differs
    }
    let (l3, l4) = (h.l3, h.l4);
    let (ot, nt) = (&old[l4..h.hl], &new[l4..c.hl]);
    if c.flags.contains(TcpFlags::CWR) {
        return Err(FlushReason::Cwr);
    }
    let word = |t: &[u8]| {
        let w = &t[TCP_FLAG_WORD];
        u32::from_be_bytes([w[0], w[1], w[2], w[3]])
    };
    let mask = !((u32::from((TcpFlags::CWR | TcpFlags::FIN | TcpFlags::PSH).bits())) << 16);
    let diff = (word(ot) ^ word(nt)) & mask;
    if diff & 0xffff_0000 != 0 {
        return Err(FlushReason::FlagsChanged);
    }
    if diff != 0 {
        return Err(FlushReason::WindowChanged);
    }
    let (ot, nt) = (tcp::Packet::new_unchecked(ot), tcp::Packet::new_unchecked(nt));
    if ot.ack_number() != nt.ack_number() {
        return Err(FlushReason::AckChanged);
    }
    if !bytes_eq(&old[l4 + TCP_OPTIONS..h.hl], &new[l4 + TCP_OPTIONS..c.hl]) {
        return Err(FlushReason::OptionsChanged);
    }
    let mut fixed_id = h.fixed_id;
    if h.v4 {
        let (oi, ni) = (ipv4::Packet::new_unchecked(&old[l3..l4]), ipv4::Packet::new_unchecked(&new[l3..l4]));
        // TOS (byte 1), flags/fragment word (6..8), TTL (8).
        if old[l3 + 1] != new[l3 + 1] || !bytes_eq(&old[l3 + 6..l3 + 9], &new[l3 + 6..l3 + 9]) {
            return Err(FlushReason::IpChanged);
        }
        let offset = ni.ident().wrapping_sub(oi.ident());
        if h.count == 1 && ni.dont_frag() && offset == 0 {
            fixed_id = true;
        }
        let expected = if fixed_id { 0 } else { h.count as u16 };
        if offset != expected {
            return Err(FlushReason::IpIdNotSequential);
        }
    } else {
        let (oi, ni) = (ipv6::Packet::new_unchecked(&old[l3..l4]), ipv6::Packet::new_unchecked(&new[l3..l4]));
        if oi.traffic_class() != ni.traffic_class() || oi.hop_limit() != ni.hop_limit() {
            return Err(FlushReason::IpChanged);
        }
    }
    let plen = c.payload_len();
    if plen > h.mss {
        return Err(FlushReason::LargerThanMss);
    }
    if c.seq != h.next_seq {
        return Err(FlushReason::SeqNotNext);
    }
    let new_len = h.len + plen;
    if new_len - l3 > MAX_IP_LEN || new_len > cap {
        return Err(FlushReason::Full);
    }
    Ok(fixed_id)
}

/// Whether `frame` (which parsed as TCP over IP with its IP header at `key.l3` and TCP
/// header at `key.l4`) belongs to the flow whose first segment's headers are `held`
/// (`..h.hl`).
fn same_flow(held: &[u8], h: &Held, frame: &[u8], key: Key) -> bool {
    if key.l3 != h.l3 || key.v4 != h.v4 || (!h.v4 && key.l4 != h.l4) {
        return false;
    }
    let (l3, l4) = (h.l3, h.l4);
    // The ports first: what tells the flows of one host pair apart, so a frame of another
    // flow is usually turned away by one four-byte compare.
    if !bytes_eq(&held[l4..l4 + 4], &frame[key.l4..key.l4 + 4]) {
        return false;
    }
    let ip_key = if h.v4 {
        // Source and destination (the protocol is TCP in both).
        bytes_eq(&held[l3 + 12..l3 + 20], &frame[l3 + 12..l3 + 20])
    } else {
        let w = |f: &[u8]| u32::from_be_bytes([f[l3], f[l3 + 1], f[l3 + 2], f[l3 + 3]]) & 0xf00f_ffff;
        // Version and flow label, next header, addresses, extension headers.
        w(held) == w(frame)
            && held[l3 + 6] == frame[l3 + 6]
            && bytes_eq(&held[l3 + 8..l4], &frame[l3 + 8..l4])
    };
    // The link header (MACs, tags, EtherType, hence the IP version).
    ip_key && bytes_eq(&frame[..l3], &held[..l3])
}

/// The TCP source and destination ports of a parsed TCP frame whose header is at `l4` (0 if
/// the frame is too short, which a parsed one is not).
fn ports(frame: &[u8], l4: usize) -> u32 {
    frame.get(l4..l4 + 4).map_or(0, |p| u32::from_ne_bytes([p[0], p[1], p[2], p[3]]))
}

/// `a == b` for the short runs of header bytes GRO compares, eight bytes at a time, inline
/// (a call to `memcmp` per compare cost more than the compare).
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a, b);
    while let (Some((x, ra)), Some((y, rb))) = (a.split_first_chunk::<8>(), b.split_first_chunk::<8>()) {
        if u64::from_ne_bytes(*x) != u64::from_ne_bytes(*y) {
            return false;
        }
        (a, b) = (ra, rb);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Parses and checks one received frame.
fn classify(frame: &[u8], csum: ChecksumState, max_len: usize) -> Classified<'_> {
    use Classified::{Foreign, Rejected};
    let l = match parse(frame) {
        Ok(l) => l,
        Err(e) => return Foreign(PassReason::Malformed(e)),
    };
    if l.fragment.is_some() {
        return Foreign(PassReason::Fragment);
    }
    if l.l4 != L4::Tcp || !matches!(l.l3, L3::Ipv4 | L3::Ipv6) {
        return Foreign(PassReason::NotTcp);
    }
    // From here on the flow key (addresses, ports) is known.
    let (l3, l4, hl, end) = (l.l3_offset, l.l4_offset, l.payload_offset, l.end);
    let v4 = l.l3 == L3::Ipv4;
    let key = Key { l3, l4, v4 };
    if v4 {
        let ip = ipv4::Packet::new_unchecked(&frame[l3..l4]);
        if ip.header_len() != ipv4::MIN_HEADER_LEN {
            return Rejected(PassReason::Ipv4Options, key);
        }
        if !ip.verify_checksum() {
            return Rejected(PassReason::BadIpChecksum, key);
        }
    } else if let Some((_, next_header)) = non_gso_extension(frame, &l) {
        return Rejected(PassReason::Ipv6Extension(next_header), key);
    }
    // Whatever GRO builds must be segmentable again (found by the `offload_gro` fuzz target:
    // an IPv6 flow with 638 bytes of extension headers).
    if hl > crate::gso::MAX_HEADER_LEN {
        return Rejected(PassReason::HeadersTooLong, key);
    }
    let csum = match csum {
        ChecksumState::Validated => ChecksumState::Validated,
        ChecksumState::Partial { start, offset } => {
            if usize::from(start) != l4 || usize::from(offset) != tcp::CHECKSUM_OFFSET {
                return Rejected(PassReason::PartialNotTcp, key);
            }
            csum
        }
        ChecksumState::None => {
            if l.verify_l4_checksum(frame) != Some(true) {
                return Rejected(PassReason::BadTcpChecksum, key);
            }
            ChecksumState::Validated
        }
    };
    let t = tcp::Packet::new_unchecked(&frame[l4..hl]);
    let flags = t.flags();
    let control = flags & (TcpFlags::URG | TcpFlags::RST | TcpFlags::SYN);
    if !control.is_empty() {
        return Rejected(PassReason::ControlFlags(control), key);
    }
    if end == hl {
        return Rejected(PassReason::NoPayload, key);
    }
    if end > max_len || end - l3 > MAX_IP_LEN {
        return Rejected(PassReason::TooLarge, key);
    }
    Classified::Candidate(Candidate {
        frame: &frame[..end],
        l3,
        l4,
        hl,
        v4,
        seq: t.seq_number(),
        flags,
        csum,
    })
}

/// Delivers `frame` unchanged. A TCP checksum the caller vouched for or GRO verified is
/// reported as such; otherwise the caller's state is passed on.
fn pass<F: FnMut(Delivery<'_>)>(
    frame: &[u8],
    csum: ChecksumState,
    why: PassReason,
    deliver: &mut F,
) -> Received {
    deliver(Delivery {
        frame,
        meta: OffloadMeta { csum, ..OffloadMeta::NONE },
        segments: 1,
        fixed_ip_id: false,
        cause: Cause::PassedThrough(why),
    });
    Received::PassedThrough
}

/// Fixes up the headers `hdr` (`..h.hl`) of a held super-frame of `len` bytes
/// (`h.count >= 2`) as `inet_gro_complete` / `ipv6_gro_complete` / `tcp_gro_complete` do, and
/// returns its metadata.
fn complete(hdr: &mut [u8], len: usize, h: &Held) -> OffloadMeta {
    let (l3, l4, hl) = (h.l3, h.l4, h.hl);
    let l4_len = len - l4;
    // `may_append` kept the IP packet within MAX_IP_LEN.
    let ip_len = (len - l3) as u16;
    let pseudo = if h.v4 {
        let mut ip = ipv4::Packet::new_unchecked(&mut hdr[l3..l4]);
        ip.set_total_len(ip_len);
        ip.fill_checksum();
        checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), ipv4::protocol::TCP, l4_len as u16)
    } else {
        let mut ip = ipv6::Packet::new_unchecked(&mut hdr[l3..l4]);
        ip.set_payload_len(ip_len - ipv6::HEADER_LEN as u16);
        checksum::pseudo_header_v6(ip.src_addr(), ip.dst_addr(), ipv4::protocol::TCP, l4_len as u32)
    };
    let mut t = tcp::Packet::new_unchecked(&mut hdr[l4..hl]);
    t.set_checksum(pseudo);
    OffloadMeta {
        gso_kind: if h.v4 { GsoKind::TcpV4 } else { GsoKind::TcpV6 },
        ecn: t.flags().contains(TcpFlags::CWR),
        gso_size: h.mss as u16,
        hdr_len: hl as u16,
        // hl <= l4 + 60 within a 64 KiB buffer share: fits.
        csum: ChecksumState::Partial { start: l4 as u16, offset: tcp::CHECKSUM_OFFSET as u16 },
        rsc: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gso::{ChecksumMode, Segmenter};

    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;
    const FIN: u8 = 0x01;
    const CWR: u8 = 0x80;
    const ECE: u8 = 0x40;
    const URG: u8 = 0x20;
    const RST: u8 = 0x04;
    const SYN: u8 = 0x02;
    const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8];

    /// One TCP segment, with valid checksums.
    #[derive(Clone)]
    struct Seg {
        v6: bool,
        vlan: Option<u16>,
        sport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        ident: u16,
        df: bool,
        ttl: u8,
        tos: u8,
        flow_label: u32,
        ip_options: usize,
        options: Vec<u8>,
        payload: usize,
    }

    fn seg(seq: u32, payload: usize) -> Seg {
        Seg {
            v6: false,
            vlan: None,
            sport: 1000,
            seq,
            ack: 77,
            flags: ACK,
            window: 500,
            ident: 0,
            df: true,
            ttl: 64,
            tos: 0,
            flow_label: 0x12345,
            ip_options: 0,
            options: TS.to_vec(),
            payload,
        }
    }

    impl Seg {
        fn v6(mut self) -> Seg {
            self.v6 = true;
            self
        }

        /// The `i`th of a run of `mss`-byte segments starting at sequence 1000, ID 100.
        fn nth(&self, i: u32, mss: usize) -> Seg {
            Seg { seq: 1000 + i * mss as u32, ident: 100 + i as u16, payload: mss, ..self.clone() }
        }

        fn build(&self) -> Vec<u8> {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
            if let Some(tci) = self.vlan {
                f.extend_from_slice(&[0x81, 0x00]);
                f.extend_from_slice(&tci.to_be_bytes());
            }
            let l4_len = 20 + self.options.len() + self.payload;
            let l3 = f.len() + 2;
            if self.v6 {
                f.extend_from_slice(&[0x86, 0xdd]);
                let w = (6 << 28) | (u32::from(self.tos) << 20) | self.flow_label;
                f.extend_from_slice(&w.to_be_bytes());
                f.extend_from_slice(&(l4_len as u16).to_be_bytes());
                f.extend_from_slice(&[6, self.ttl]);
                f.extend_from_slice(&[0xfd; 16]);
                f.extend_from_slice(&[0xfe; 16]);
            } else {
                f.extend_from_slice(&[0x08, 0x00]);
                let ihl = 20 + self.ip_options;
                f.extend_from_slice(&[0x40 | (ihl / 4) as u8, self.tos]);
                f.extend_from_slice(&((ihl + l4_len) as u16).to_be_bytes());
                f.extend_from_slice(&self.ident.to_be_bytes());
                f.extend_from_slice(&[if self.df { 0x40 } else { 0 }, 0, self.ttl, 6, 0, 0]);
                f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
                f.extend(core::iter::repeat_n(1u8, self.ip_options));
                let c = checksum::checksum(&f[l3..]);
                f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            }
            let l4 = f.len();
            f.extend_from_slice(&self.sport.to_be_bytes());
            f.extend_from_slice(&[0, 80]);
            f.extend_from_slice(&self.seq.to_be_bytes());
            f.extend_from_slice(&self.ack.to_be_bytes());
            f.extend_from_slice(&[(((20 + self.options.len()) / 4) as u8) << 4, self.flags]);
            f.extend_from_slice(&self.window.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0]);
            f.extend_from_slice(&self.options);
            f.extend((0..self.payload).map(|i| (self.seq as usize + i) as u8));
            let pseudo = parse(&f).unwrap().pseudo_header_sum(&f).unwrap();
            f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
            checksum::complete_partial(&mut f, l4, 16).unwrap();
            f
        }
    }

    #[derive(Debug)]
    struct Out {
        frame: Vec<u8>,
        meta: OffloadMeta,
        segments: u32,
        fixed: bool,
        cause: Cause,
    }

    struct Harness {
        buf: Vec<u8>,
    }

    impl Harness {
        fn new(flows: usize, share: usize) -> Harness {
            Harness { buf: vec![0; flows * share] }
        }
    }

    fn feed<const N: usize>(gro: &mut GroTable<'_, N>, frames: &[Vec<u8>]) -> (Vec<Received>, Vec<Out>) {
        feed_csum(gro, frames, ChecksumState::None)
    }

    fn feed_csum<const N: usize>(
        gro: &mut GroTable<'_, N>,
        frames: &[Vec<u8>],
        csum: ChecksumState,
    ) -> (Vec<Received>, Vec<Out>) {
        let mut out = Vec::new();
        let mut got = Vec::new();
        for f in frames {
            got.push(gro.receive(f, csum, |d| out.push(to_out(d))));
        }
        (got, out)
    }

    fn to_out(d: Delivery<'_>) -> Out {
        Out {
            frame: d.frame.to_vec(),
            meta: d.meta,
            segments: d.segments,
            fixed: d.fixed_ip_id,
            cause: d.cause,
        }
    }

    fn flush<const N: usize>(gro: &mut GroTable<'_, N>) -> Vec<Out> {
        let mut out = Vec::new();
        gro.flush_all(|d| out.push(to_out(d)));
        out
    }

    /// Segments `o`'s super-frame back into frames.
    fn resegment(o: &Out) -> Vec<Vec<u8>> {
        let valid = o.meta.validate(&o.frame).unwrap();
        let seg = Segmenter::new(&o.frame, &valid, ChecksumMode::Full).unwrap();
        let mut buf = vec![0; seg.frames_len()];
        seg.write_frames(&mut buf).unwrap().map(<[u8]>::to_vec).collect()
    }

    use Received::{Appended, Held, PassedThrough};

    #[test]
    fn in_order_segments_coalesce_and_psh_ends_them() {
        for v6 in [false, true] {
            let base = if v6 { seg(0, 0).v6() } else { seg(0, 0) };
            let mut frames: Vec<Vec<u8>> = (0..4).map(|i| base.nth(i, 1000).build()).collect();
            frames.push(Seg { flags: ACK | PSH, ..base.nth(4, 1000) }.build());
            let mut h = Harness::new(4, FLOW_BUF_LEN);
            let mut gro = GroTable::<4>::new(&mut h.buf).unwrap();
            let (got, out) = feed(&mut gro, &frames);
            assert_eq!(got, [Held, Appended, Appended, Appended, Appended]);
            assert_eq!(out.len(), 1);
            let o = &out[0];
            assert_eq!((o.segments, o.cause, o.fixed), (5, Cause::Flushed(FlushReason::EndFlags), false));
            let hl = if v6 { 14 + 40 + 32 } else { 14 + 20 + 32 };
            assert_eq!(o.frame.len(), hl + 5000);
            let kind = if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 };
            let l4 = hl as u16 - 32;
            assert_eq!(
                o.meta,
                OffloadMeta {
                    gso_kind: kind,
                    ecn: false,
                    gso_size: 1000,
                    hdr_len: hl as u16,
                    csum: ChecksumState::Partial { start: l4, offset: 16 },
                    rsc: None
                }
            );
            // PSH is on the super-frame; payloads concatenate; segmenting gives the input back.
            assert_eq!(o.frame[usize::from(l4) + 13], ACK | PSH);
            assert_eq!(resegment(o), frames);
            assert_eq!(gro.held(), 0);
        }
    }

    #[test]
    fn fin_ends_the_flow_and_short_segment_is_appended_last() {
        let frames = [
            seg(0, 0).nth(0, 800).build(),
            seg(0, 0).nth(1, 800).build(),
            Seg { flags: ACK | FIN, ..seg(0, 0).nth(2, 800) }.build(),
        ];
        let mut h = Harness::new(1, FLOW_BUF_LEN);
        let mut gro = GroTable::<1>::new(&mut h.buf).unwrap();
        let (_, out) = feed(&mut gro, &frames);
        assert_eq!((out.len(), out[0].segments, out[0].cause), (1, 3, Cause::Flushed(FlushReason::EndFlags)));
        assert_eq!(out[0].frame[14 + 20 + 13], ACK | FIN);

        let frames = [
            seg(0, 0).nth(0, 800).build(),
            seg(0, 0).nth(1, 800).build(),
            Seg { payload: 10, ..seg(0, 0).nth(2, 800) }.build(),
        ];
        let (got, out) = feed(&mut gro, &frames);
        assert_eq!(got, [Held, Appended, Appended]);
        assert_eq!(
            (out.len(), out[0].segments, out[0].cause),
            (1, 3, Cause::Flushed(FlushReason::ShortSegment))
        );
        assert_eq!(out[0].frame.len(), 66 + 1610);
        assert_eq!(resegment(&out[0]), frames);
    }

    /// Feeds `first` and `second` (a segment that breaks one rule) and checks that the held
    /// `first` leaves with `why` and `second` is held anew (or passed through).
    fn breaks(first: &Seg, second: &Seg, why: FlushReason, then: Received) {
        let (a, b) = (first.build(), second.build());
        let mut h = Harness::new(2, FLOW_BUF_LEN);
        let mut gro = GroTable::<2>::new(&mut h.buf).unwrap();
        let (got, out) = feed(&mut gro, &[a.clone(), b.clone()]);
        assert_eq!(got, [Held, then], "{why:?}");
        assert_eq!(out[0].cause, Cause::Flushed(why));
        assert_eq!((out[0].segments, &out[0].frame), (1, &a), "{why:?}: a lone frame leaves unchanged");
        assert_eq!(out[0].meta, OffloadMeta { csum: ChecksumState::Validated, ..OffloadMeta::NONE });
        if then == PassedThrough {
            assert_eq!(out.len(), 2);
            assert_eq!(out[1].frame, b);
        } else {
            assert_eq!(out.len(), 1);
            assert_eq!(gro.held(), 1);
            assert_eq!(flush(&mut gro)[0].frame, b);
        }
    }

    #[test]
    fn each_mismatch_delivers_the_held_flow_first() {
        let a = seg(0, 0).nth(0, 1000);
        let b = a.nth(1, 1000);
        use FlushReason::*;
        breaks(&a, &Seg { flags: ACK | CWR, ..b.clone() }, Cwr, Held);
        breaks(&a, &Seg { flags: ACK | ECE, ..b.clone() }, FlagsChanged, Held);
        breaks(&a, &Seg { window: 501, ..b.clone() }, WindowChanged, Held);
        breaks(&a, &Seg { ack: 78, ..b.clone() }, AckChanged, Held);
        let mut ts = TS;
        ts[7] = 10; // a newer TSval
        breaks(&a, &Seg { options: ts.to_vec(), ..b.clone() }, OptionsChanged, Held);
        breaks(&a, &Seg { options: vec![1; 8], ..b.clone() }, FlagsChanged, Held); // data offset
        breaks(&a, &Seg { ttl: 63, ..b.clone() }, IpChanged, Held);
        breaks(&a, &Seg { tos: 4, ..b.clone() }, IpChanged, Held);
        breaks(&a, &Seg { df: false, ..b.clone() }, IpChanged, Held);
        breaks(&a, &Seg { ident: 102, ..b.clone() }, IpIdNotSequential, Held);
        breaks(&a, &Seg { payload: 1001, ..b.clone() }, LargerThanMss, Held);
        breaks(&a, &Seg { seq: b.seq + 1, ..b.clone() }, SeqNotNext, Held); // gap
        breaks(&a, &Seg { seq: a.seq, ..b.clone() }, SeqNotNext, Held); // retransmission
        breaks(&a, &Seg { seq: a.seq - 1000, ..b.clone() }, SeqNotNext, Held); // reordered
                                                                               // A mismatching segment with PSH ends nothing it could join: it leaves as it came.
        breaks(&a, &Seg { ack: 1, flags: ACK | PSH, ..b.clone() }, AckChanged, PassedThrough);
        let (a6, b6) = (a.clone().v6(), b.clone().v6());
        breaks(&a6, &Seg { ttl: 1, ..b6.clone() }, IpChanged, Held);
        breaks(&a6, &Seg { tos: 0x10, ..b6.clone() }, IpChanged, Held);
        breaks(&a6, &Seg { window: 1, ..b6.clone() }, WindowChanged, Held);
    }

    #[test]
    fn frames_of_a_held_flow_that_cannot_coalesce_flush_it_then_pass() {
        let a = seg(0, 0).nth(0, 1000);
        let b = a.nth(1, 1000);
        use PassReason::*;
        let nc = FlushReason::NotCoalescible;
        breaks(&a, &Seg { payload: 0, ..b.clone() }, nc(NoPayload), PassedThrough);
        breaks(&a, &Seg { payload: 0, flags: ACK | FIN, ..b.clone() }, nc(NoPayload), PassedThrough);
        for (flag, bits) in [(URG, TcpFlags::URG), (RST, TcpFlags::RST), (SYN, TcpFlags::SYN)] {
            breaks(&a, &Seg { flags: ACK | flag, ..b.clone() }, nc(ControlFlags(bits)), PassedThrough);
        }
        breaks(&a, &Seg { ip_options: 4, ..b.clone() }, nc(Ipv4Options), PassedThrough);
        // A corrupted payload byte (the TCP checksum fails), then a corrupted IP header.
        let (fa, mut fb) = (a.build(), b.build());
        let n = fb.len();
        fb[n - 1] ^= 1;
        let mut h = Harness::new(1, FLOW_BUF_LEN);
        let mut gro = GroTable::<1>::new(&mut h.buf).unwrap();
        let (got, out) = feed(&mut gro, &[fa.clone(), fb.clone()]);
        assert_eq!(got, [Held, PassedThrough]);
        assert_eq!(out[0].cause, Cause::Flushed(nc(BadTcpChecksum)));
        assert_eq!((out[1].cause, &out[1].frame), (Cause::PassedThrough(BadTcpChecksum), &fb));
        assert_eq!(out[1].meta, OffloadMeta::NONE);
        // The NIC vouched for it: trusted, appended.
        let (got, _) = feed_csum(&mut gro, &[fa.clone(), fb.clone()], ChecksumState::Validated);
        assert_eq!(got, [Held, Appended]);
        let out = flush(&mut gro);
        assert_eq!(out[0].segments, 2);
        let mut fb = b.build();
        fb[14 + 8] ^= 1; // TTL: the IP header checksum fails, whatever the NIC says
        let (got, out) = feed_csum(&mut gro, &[fa, fb], ChecksumState::Validated);
        assert_eq!(got, [Held, PassedThrough]);
        assert_eq!(out[1].cause, Cause::PassedThrough(BadIpChecksum));
    }

    #[test]
    fn frames_of_other_flows_or_no_flow_leave_the_held_one_alone() {
        let a = seg(0, 0).nth(0, 1000);
        let b = a.nth(1, 1000);
        let others = [
            Seg { sport: 1001, ..b.clone() }.build(),
            Seg { vlan: Some(5), ..b.clone() }.build(),
            Seg { v6: true, ..b.clone() }.build(),
            Seg { flags: ACK | RST, sport: 9, ..b.clone() }.build(),
        ];
        let mut udp = b.build();
        udp[14 + 9] = 1; // protocol ICMP
        udp[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&udp[14..34]);
        udp[24..26].copy_from_slice(&c.to_be_bytes());
        let mut frag = b.build();
        frag[14 + 6] = 0x20; // MF
        frag[24..26].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&frag[14..34]);
        frag[24..26].copy_from_slice(&c.to_be_bytes());
        let arp = [[0xff; 12].as_slice(), &[0x08, 0x06], &[0; 28]].concat();
        let short = b.build()[..40].to_vec();
        let mut h = Harness::new(8, FLOW_BUF_LEN);
        let mut gro = GroTable::<8>::new(&mut h.buf).unwrap();
        let mut frames = vec![a.build()];
        frames.extend(others.iter().cloned());
        frames.extend([udp, frag, arp, short]);
        frames.push(b.build());
        let (got, out) = feed(&mut gro, &frames);
        assert_eq!(got[1..4], [Held, Held, Held]);
        assert_eq!(got[4..9], [PassedThrough; 5]);
        assert_eq!(*got.last().unwrap(), Appended);
        let causes: Vec<Cause> = out.iter().map(|o| o.cause).collect();
        assert_eq!(
            causes,
            [
                Cause::PassedThrough(PassReason::ControlFlags(TcpFlags::RST)),
                Cause::PassedThrough(PassReason::NotTcp),
                Cause::PassedThrough(PassReason::Fragment),
                Cause::PassedThrough(PassReason::NotTcp),
                Cause::PassedThrough(PassReason::Malformed(ParseError::Ipv4TotalLenBeyondFrame {
                    offset: 14,
                    total_len: 1052,
                    available: 26,
                })),
            ]
        );
        assert_eq!(gro.held(), 4);
        let out = flush(&mut gro);
        assert_eq!(out.iter().map(|o| o.segments).collect::<Vec<_>>(), [2, 1, 1, 1], "oldest first");
        assert!(out.iter().all(|o| o.cause == Cause::Flushed(FlushReason::Explicit)));
    }

    #[test]
    fn a_lone_psh_segment_passes_and_a_cwr_one_starts_a_flow() {
        let mut h = Harness::new(1, FLOW_BUF_LEN);
        let mut gro = GroTable::<1>::new(&mut h.buf).unwrap();
        let a = seg(0, 0).nth(0, 1000);
        let (got, out) = feed(&mut gro, &[Seg { flags: ACK | PSH, ..a.clone() }.build()]);
        assert_eq!(
            (got[0], out[0].cause),
            (PassedThrough, Cause::PassedThrough(PassReason::EndFlags(TcpFlags::PSH)))
        );
        assert_eq!(out[0].meta.csum, ChecksumState::Validated, "verified on the way");
        // CWR on the first segment only, as GSO leaves it: coalesced, ECN in the metadata.
        let frames = [Seg { flags: ACK | CWR, ..a.clone() }.build(), a.nth(1, 1000).build()];
        let (got, _) = feed(&mut gro, &frames);
        assert_eq!(got, [Held, Appended]);
        let out = flush(&mut gro);
        assert!(out[0].meta.ecn);
        assert_eq!(resegment(&out[0]), frames);
    }

    #[test]
    fn ip_ids_increment_or_stay_fixed_with_df() {
        let a = seg(0, 0).nth(0, 500);
        let mut h = Harness::new(1, FLOW_BUF_LEN);
        let mut gro = GroTable::<1>::new(&mut h.buf).unwrap();
        // Wrapping increment.
        let frames: Vec<Vec<u8>> = (0..3)
            .map(|i| Seg { ident: 0xffffu16.wrapping_add(i as u16), ..a.nth(i, 500) }.build())
            .collect();
        let (got, _) = feed(&mut gro, &frames);
        assert_eq!(got, [Held, Appended, Appended]);
        let out = flush(&mut gro);
        assert!(!out[0].fixed);
        assert_eq!(resegment(&out[0]), frames);
        // Fixed with DF: Linux's ip_fixedid; re-segmenting increments them.
        let frames: Vec<Vec<u8>> = (0..3).map(|i| Seg { ident: 7, ..a.nth(i, 500) }.build()).collect();
        let (got, _) = feed(&mut gro, &frames);
        assert_eq!(got, [Held, Appended, Appended]);
        let out = flush(&mut gro);
        assert!(out[0].fixed);
        assert_eq!(out[0].segments, 3);
        // Fixed: a later increment breaks it.
        let mut frames: Vec<Vec<u8>> = (0..2).map(|i| Seg { ident: 7, ..a.nth(i, 500) }.build()).collect();
        frames.push(Seg { ident: 9, ..a.nth(2, 500) }.build());
        let (got, out) = feed(&mut gro, &frames);
        assert_eq!(got, [Held, Appended, Held]);
        assert_eq!(out[0].cause, Cause::Flushed(FlushReason::IpIdNotSequential));
        flush(&mut gro);
        // Fixed without DF is not accepted.
        let frames: Vec<Vec<u8>> =
            (0..2).map(|i| Seg { ident: 7, df: false, ..a.nth(i, 500) }.build()).collect();
        let (got, _) = feed(&mut gro, &frames);
        assert_eq!(got, [Held, Held]);
    }

    #[test]
    fn a_super_frame_stops_at_64_kib_and_at_the_buffer() {
        let a = seg(0, 0).nth(0, 1448);
        let frames: Vec<Vec<u8>> = (0..46).map(|i| a.nth(i, 1448).build()).collect();
        let mut h = Harness::new(1, FLOW_BUF_LEN);
        let mut gro = GroTable::<1>::new(&mut h.buf).unwrap();
        let (got, out) = feed(&mut gro, &frames);
        // 20 + 32 + 45 * 1448 = 65212 fits; one more does not.
        assert_eq!((got[44], got[45]), (Appended, Held));
        assert_eq!((out.len(), out[0].segments, out[0].cause), (1, 45, Cause::Flushed(FlushReason::Full)));
        assert_eq!(resegment(&out[0]), frames[..45]);
        flush(&mut gro);

        let mut h = Harness::new(2, MIN_FLOW_BUF_LEN);
        let mut gro = GroTable::<2>::new(&mut h.buf).unwrap();
        let (got, out) = feed(&mut gro, &frames[..3]);
        assert_eq!(got, [Held, Held, Held], "66 + 2 * 1448 > 2048");
        assert_eq!(out.iter().map(|o| o.cause).collect::<Vec<_>>(), [Cause::Flushed(FlushReason::Full); 2]);
        let jumbo = Seg { payload: 2000, ..a }.build();
        let (got, out) = feed(&mut gro, &[jumbo]);
        assert_eq!(got, [PassedThrough]);
        assert_eq!(out[0].cause, Cause::Flushed(FlushReason::NotCoalescible(PassReason::TooLarge)));
    }

    #[test]
    fn the_oldest_flow_is_evicted_when_the_table_is_full() {
        let mut h = Harness::new(2, FLOW_BUF_LEN);
        let mut gro = GroTable::<2>::new(&mut h.buf).unwrap();
        let flows: Vec<Vec<u8>> = (0..3).map(|p| Seg { sport: p, ..seg(0, 0).nth(0, 100) }.build()).collect();
        let (got, out) = feed(&mut gro, &flows);
        assert_eq!(got, [Held, Held, Held]);
        assert_eq!(
            (out.len(), &out[0].frame, out[0].cause),
            (1, &flows[0], Cause::Flushed(FlushReason::Evicted))
        );
        let rest: Vec<Vec<u8>> = flush(&mut gro).into_iter().map(|o| o.frame).collect();
        assert_eq!(rest, flows[1..]);
    }

    #[test]
    fn checksum_hints() {
        let a = seg(0, 0).nth(0, 1000);
        let mut f = a.build();
        f[50..52].copy_from_slice(&[0xde, 0xad]);
        let mut h = Harness::new(1, FLOW_BUF_LEN);
        let mut gro = GroTable::<1>::new(&mut h.buf).unwrap();
        let partial = ChecksumState::Partial { start: 34, offset: 16 };
        let (got, _) = feed_csum(&mut gro, &[f.clone()], partial);
        assert_eq!(got, [Held]);
        let out = flush(&mut gro);
        assert_eq!((out[0].meta.csum, &out[0].frame), (partial, &f), "a lone frame keeps the caller's state");
        let (got, out) = feed_csum(&mut gro, &[f], ChecksumState::Partial { start: 34, offset: 6 });
        assert_eq!((got[0], out[0].cause), (PassedThrough, Cause::PassedThrough(PassReason::PartialNotTcp)));
        assert_eq!(out[0].meta.csum, ChecksumState::Partial { start: 34, offset: 6 });
    }

    #[test]
    fn padding_is_not_payload() {
        let a = seg(0, 0).nth(0, 3);
        let mut f = Seg { options: vec![], ..a.clone() }.build();
        f.extend_from_slice(&[0; 3]); // 57 -> 60 bytes on the wire
        let mut h = Harness::new(1, FLOW_BUF_LEN);
        let mut gro = GroTable::<1>::new(&mut h.buf).unwrap();
        let (got, _) = feed(&mut gro, &[f.clone()]);
        assert_eq!(got, [Held]);
        let g = Seg { options: vec![], ..a.nth(1, 3) }.build();
        let (got, _) = feed(&mut gro, &[g]);
        assert_eq!(got, [Appended]);
        let out = flush(&mut gro);
        assert_eq!(out[0].frame.len(), 54 + 6);
    }

    /// Materializes a by-reference delivery from the frames it names.
    fn to_out_ref(d: RefDelivery<'_, usize>, frames: &[Vec<u8>]) -> Out {
        let mut frame = d.header.to_vec();
        for p in d.pieces {
            frame.extend_from_slice(&frames[p.frame][p.offset..p.offset + p.len]);
        }
        assert_eq!(frame.len(), d.len());
        if let Cause::Flushed(_) = d.cause {
            assert_eq!(d.pieces.len(), d.segments as usize, "one piece per segment");
        } else {
            assert!(d.pieces.is_empty());
        }
        Out { frame, meta: d.meta, segments: d.segments, fixed: d.fixed_ip_id, cause: d.cause }
    }

    /// Feeds `frames` to a contiguous table of `N` shares of `share` bytes and to a
    /// by-reference table of the same size, and checks that they deliver the same frames, in
    /// the same order, with the same metadata and causes.
    fn same_as_contiguous<const N: usize>(share: usize, frames: &[Vec<u8>], csum: ChecksumState) -> Vec<Out> {
        let mut h = Harness::new(N, share);
        let mut gro = GroTable::<N>::new(&mut h.buf).unwrap();
        let mut by_ref = GroRefTable::<usize, N, 64>::new(share).unwrap();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for (i, f) in frames.iter().enumerate() {
            let a = gro.receive(f, csum, |d| want.push(to_out(d)));
            let b = by_ref.receive(f, i, csum, |d| got.push(to_out_ref(d, frames)));
            assert_eq!(a, b);
            assert_eq!(gro.held(), by_ref.held());
        }
        gro.flush_all(|d| want.push(to_out(d)));
        by_ref.flush_all(|d| got.push(to_out_ref(d, frames)));
        assert_eq!(by_ref.held(), 0);
        assert!((0..frames.len()).all(|i| !by_ref.refers_to(i)), "nothing named after flush_all");
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (&g.frame, g.meta, g.segments, g.fixed, g.cause),
                (&w.frame, w.meta, w.segments, w.fixed, w.cause)
            );
        }
        got
    }

    #[test]
    fn by_reference_delivers_what_the_contiguous_table_does() {
        let a = seg(0, 0).nth(0, 1000);
        let mut frames: Vec<Vec<u8>> = (0..4).map(|i| a.nth(i, 1000).build()).collect();
        frames.push(Seg { flags: ACK | PSH, ..a.nth(4, 1000) }.build());
        // Another flow, a v6 flow, interleaved; a mismatch; a pass-through; a fragment.
        for i in 0..6 {
            frames.push(Seg { sport: 7, ..a.nth(i, 700) }.build());
            frames.push(a.clone().v6().nth(i, 1200).build());
        }
        frames.push(Seg { window: 9, ..a.nth(5, 1000) }.build());
        frames.push(Seg { flags: ACK | RST, ..a.nth(6, 1000) }.build());
        let mut frag = a.nth(7, 1000).build();
        frag[14 + 6] = 0x20;
        frames.push(frag);
        frames.extend((0..3).map(|i| Seg { sport: 9, ident: 7, ..a.nth(i, 300) }.build()));
        frames.push(Seg { payload: 10, ..a.nth(6, 1000) }.build());
        for csum in [ChecksumState::None, ChecksumState::Validated] {
            let out = same_as_contiguous::<2>(FLOW_BUF_LEN, &frames, csum);
            assert!(out.iter().any(|o| o.segments > 2), "something coalesced");
            same_as_contiguous::<8>(FLOW_BUF_LEN, &frames, csum);
            same_as_contiguous::<1>(MIN_FLOW_BUF_LEN, &frames, csum);
        }
        // 64 KiB.
        let big: Vec<Vec<u8>> = (0..46).map(|i| a.nth(i, 1448).build()).collect();
        let out = same_as_contiguous::<1>(FLOW_BUF_LEN, &big, ChecksumState::None);
        assert_eq!((out[0].segments, out[0].cause), (45, Cause::Flushed(FlushReason::Full)));
    }

    #[test]
    fn by_reference_super_frames_stop_at_the_piece_limit_and_segment_back() {
        let a = seg(0, 0).nth(0, 500);
        let frames: Vec<Vec<u8>> = (0..10).map(|i| a.nth(i, 500).build()).collect();
        let mut gro = GroRefTable::<usize, 1, 4>::new(FLOW_BUF_LEN).unwrap();
        let mut out = Vec::new();
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            got.push(gro.receive(f, i, ChecksumState::None, |d| out.push(to_out_ref(d, &frames))));
            assert!(gro.refers_to(i), "the held flow names the frame just appended or held");
        }
        assert!(!gro.refers_to(0), "a delivered flow names nothing");
        gro.flush_all(|d| out.push(to_out_ref(d, &frames)));
        assert_eq!(
            got,
            [Held, Appended, Appended, Appended, Held, Appended, Appended, Appended, Held, Appended]
        );
        let n: Vec<u32> = out.iter().map(|o| o.segments).collect();
        assert_eq!(n, [4, 4, 2]);
        assert_eq!(out[0].cause, Cause::Flushed(FlushReason::Full));
        let back: Vec<Vec<u8>> = out.iter().flat_map(resegment).collect();
        assert_eq!(back, frames, "segmenting the by-reference super-frames gives the frames back");
        // The byte limit, as for a contiguous share.
        let mut gro = GroRefTable::<usize, 1, 64>::new(MIN_FLOW_BUF_LEN).unwrap();
        let mut out = Vec::new();
        for (i, f) in frames[..4].iter().enumerate() {
            gro.receive(f, i, ChecksumState::None, |d| out.push(to_out_ref(d, &frames)));
        }
        gro.flush_all(|d| out.push(to_out_ref(d, &frames)));
        let n: Vec<u32> = out.iter().map(|o| o.segments).collect();
        assert_eq!(n, [3, 1], "66 + 4 * 500 > 2048");
        assert!(out.iter().all(|o| o.frame.len() <= MIN_FLOW_BUF_LEN));
        let err = GroError::BufferTooSmall { available: 100, flows: 1, min: MIN_FLOW_BUF_LEN };
        assert_eq!(GroRefTable::<usize, 1, 4>::new(100).unwrap_err(), err);
        assert!(GroRefTable::<usize, 0, 4>::new(FLOW_BUF_LEN).is_err());
        assert!(format!("{gro:?}").contains("pieces: 64"));
    }

    #[test]
    fn new_refuses_small_buffers() {
        let mut buf = vec![0; 2 * MIN_FLOW_BUF_LEN - 1];
        let err = GroError::BufferTooSmall { available: buf.len(), flows: 2, min: MIN_FLOW_BUF_LEN };
        assert_eq!(GroTable::<2>::new(&mut buf).unwrap_err(), err);
        assert!(GroTable::<0>::new(&mut buf).is_err());
        assert!(GroTable::<1>::new(&mut buf).is_ok());
        let mut big = vec![0; 3 * FLOW_BUF_LEN];
        let gro = GroTable::<2>::new(&mut big).unwrap();
        assert!(format!("{gro:?}").contains(&format!("flow_buf_len: {FLOW_BUF_LEN}")));
    }
}
