//! Offload metadata: what a super-frame asks of the side that sends it on, and the
//! validation that turns a peer's claim into something the segmentation engine can trust.
//!
//! [`OffloadMeta`] is the common form; [`virtio`](crate::virtio) and [`netif`](crate::netif)
//! convert it to and from the two wire encodings. A peer's metadata is checked by
//! [`OffloadMeta::validate`] against the frame it came with, following Linux's
//! `virtio_net_hdr_to_skb` (and the GSO handlers' own checks), a little stricter where noted;
//! only a [`ValidMeta`] reaches the GSO engine, so no metadata can make it read or write out
//! of bounds.

use thiserror::Error;

use crate::error::ParseError;
use crate::ipv4::protocol;
use crate::ipv6::{self, MAX_EXT_HEADERS};
use crate::parse::{parse, Layout, L3, L4};
use crate::{checksum, tcp, udp};

/// Which segmentation a super-frame asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// Not a super-frame.
    None,
    /// TCP over IPv4 (TSO).
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP segmentation (`UDP_SEGMENT`): each segment a complete datagram.
    UdpL4,
    /// Legacy UDP fragmentation offload (UFO, virtio `GSO_UDP`): decoded so the conversion is
    /// lossless, but refused by [`OffloadMeta::validate`] (Linux no longer performs it either;
    /// it only accepts it from old peers).
    Ufo,
}

/// The state of the packet's transport checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumState {
    /// Nothing is known: the checksum field holds whatever it holds.
    None,
    /// `CHECKSUM_PARTIAL`: the field at `start + offset` holds the folded pseudo-header sum,
    /// and the sum over `start..` is still to be done (virtio `NEEDS_CSUM`, Xen
    /// `csum_blank`). See [`checksum::complete_partial`].
    Partial {
        /// Where checksumming starts (the transport header), from the start of the frame.
        start: u16,
        /// Where the checksum field is, from `start`.
        offset: u16,
    },
    /// The checksum was already verified (virtio `DATA_VALID`, Xen `data_validated`).
    Validated,
}

/// Receive-side coalescing information (virtio `VIRTIO_NET_HDR_F_RSC_INFO`), carried in the
/// `csum_start`/`csum_offset` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RscInfo {
    /// How many segments were coalesced.
    pub segments: u16,
    /// How many duplicate ACKs were coalesced.
    pub dup_acks: u16,
}

/// Offload metadata of one (super-)frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffloadMeta {
    /// Requested segmentation.
    pub gso_kind: GsoKind,
    /// The sender set CWR in this flow: segments must keep ECN semantics (virtio `GSO_ECN`).
    pub ecn: bool,
    /// Payload bytes per segment (the MSS for TCP). Meaningless with [`GsoKind::None`], but
    /// kept so the conversions are lossless.
    pub gso_size: u16,
    /// The sender's idea of the header length (Ethernet to the end of the transport header).
    /// A hint only: validation never trusts it for bounds.
    pub hdr_len: u16,
    /// The checksum state.
    pub csum: ChecksumState,
    /// Coalescing information, on frames a device delivers.
    pub rsc: Option<RscInfo>,
}

impl OffloadMeta {
    /// No offload at all.
    pub const NONE: OffloadMeta = OffloadMeta {
        gso_kind: GsoKind::None,
        ecn: false,
        gso_size: 0,
        hdr_len: 0,
        csum: ChecksumState::None,
        rsc: None,
    };
}

/// Linux's `GSO_BY_FRAGS`: a `gso_size` with a special meaning that a peer may not use.
pub const GSO_BY_FRAGS: u16 = 0xffff;
/// Linux's `UDP_MAX_SEGMENTS`: the most datagrams one UDP GSO super-frame may become.
pub const UDP_MAX_SEGMENTS: usize = 128;
/// Linux's `GSO_MAX_SEGS`: the most segments any super-frame may become.
pub const GSO_MAX_SEGS: usize = 65535;

/// Metadata that cannot be decoded, or that does not fit the frame it came with. Each
/// variant names the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum MetaError {
    /// `virtio_net_hdr.flags` has bits this crate does not know.
    #[error("virtio_net_hdr flags {0:#04x} carry unknown bits")]
    UnknownFlags(u8),
    /// `NEEDS_CSUM` together with `DATA_VALID`: the checksum is both missing and verified.
    #[error("NEEDS_CSUM and DATA_VALID are both set")]
    ConflictingChecksumFlags,
    /// `RSC_INFO` reuses `csum_start`/`csum_offset`, so it cannot go with `NEEDS_CSUM`.
    #[error("RSC_INFO and NEEDS_CSUM are both set (they share csum_start/csum_offset)")]
    RscWithPartialChecksum,
    /// `virtio_net_hdr.gso_type` is not NONE, TCPV4, UDP, TCPV6 or UDP_L4 (optionally with
    /// ECN); ECN alone is not a kind.
    #[error("unknown virtio gso_type {0:#04x}")]
    UnknownGsoType(u8),
    /// The netif GSO extra names a type other than TCPV4 (1) or TCPV6 (2).
    #[error("unknown Xen netif GSO type {0}")]
    UnknownNetifGsoType(u8),
    /// The metadata has something Xen's netif protocol has no way to say.
    #[error("Xen netif cannot carry {what}")]
    NotRepresentableInNetif {
        /// What is lost.
        what: &'static str,
    },
    /// `csum_blank` on a frame that is not TCP or UDP over IP: there is no checksum field to
    /// complete (Linux netback's `checksum_setup` refuses it too).
    #[error("csum_blank on a frame without a TCP or UDP header")]
    CsumBlankWithoutL4,
    /// A GSO request with `gso_size` 0 (Linux: `-EINVAL`).
    #[error("GSO requested with gso_size 0")]
    GsoSizeZero,
    /// `gso_size` is Linux's `GSO_BY_FRAGS` (0xffff), which a peer may not use.
    #[error("gso_size 0xffff (GSO_BY_FRAGS) is reserved")]
    GsoSizeByFrags,
    /// Legacy UFO is not performed.
    #[error("UDP fragmentation offload (virtio GSO_UDP) is not supported")]
    UfoUnsupported,
    /// ECN with UDP segmentation (Linux: `-EINVAL`).
    #[error("the ECN bit is only valid with TCP segmentation")]
    EcnWithoutTcp,
    /// GSO without `NEEDS_CSUM`/`csum_blank`: the segments' checksums could not be made.
    #[error("GSO requested without a partial checksum (NEEDS_CSUM / csum_blank)")]
    GsoWithoutPartialChecksum,
    /// `csum_start + csum_offset + 2` lies beyond the frame (Linux's `pskb_may_pull` /
    /// `skb_partial_csum_set` check).
    #[error(
        "checksum field at csum_start {start} + csum_offset {offset} (+2) lies beyond the {len}-byte frame"
    )]
    ChecksumOutOfFrame {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// `hdr_len` (after Linux tun's fix-up to cover the checksum field) exceeds the frame.
    #[error("hdr_len {hdr_len} exceeds the {len}-byte frame")]
    HdrLenBeyondFrame {
        /// The effective `hdr_len`.
        hdr_len: usize,
        /// Frame length.
        len: usize,
    },
    /// A GSO frame that does not parse.
    #[error("GSO frame does not parse: {0}")]
    Parse(#[from] ParseError),
    /// The GSO kind does not match the headers (TCPv4 needs IPv4 + TCP, TCPv6 needs IPv6 +
    /// TCP, UDP_L4 needs IP + UDP).
    #[error("GSO kind {kind:?} does not match the frame's {l3:?} / {l4:?} headers")]
    GsoKindMismatch {
        /// The requested kind.
        kind: GsoKind,
        /// What the frame has.
        l3: L3,
        /// What the frame has.
        l4: L4,
    },
    /// A GSO frame that is itself an IP fragment.
    #[error("GSO requested on an IP fragment")]
    GsoOnFragment,
    /// An IPv6 extension header that Linux's GSO cannot step over: only hop-by-hop,
    /// routing and destination options have GSO handlers, so `ipv6_gso_segment` drops a
    /// super-frame carrying a fragment header (even an atomic fragment's) or AH.
    #[error(
        "GSO frame carries IPv6 extension header {next_header} at offset {offset}, which GSO cannot segment"
    )]
    GsoExtensionHeader {
        /// Where the header starts.
        offset: usize,
        /// Its next-header value.
        next_header: u8,
    },
    /// For GSO, `csum_start` must be the transport header (Linux 6.11+ drops it otherwise).
    #[error("GSO csum_start {start} is not the transport header offset {l4_offset}")]
    ChecksumStartNotL4 {
        /// `csum_start`.
        start: u16,
        /// The parsed transport header offset.
        l4_offset: usize,
    },
    /// For GSO, `csum_offset` must point at the TCP (16) or UDP (6) checksum field.
    #[error("GSO csum_offset {offset} is not the {expected} of the transport checksum field")]
    ChecksumOffsetWrong {
        /// `csum_offset`.
        offset: u16,
        /// 16 for TCP, 6 for UDP.
        expected: usize,
    },
    /// The IP (or UDP) length of a GSO super-frame does not end where the frame ends.
    /// Stricter than Linux, which segments trailing bytes as payload; a real sender never
    /// produces them.
    #[error("GSO frame is {frame_len} bytes but its IP/UDP length ends at {end}")]
    GsoLengthMismatch {
        /// Where the headers say the packet ends.
        end: usize,
        /// Frame length.
        frame_len: usize,
    },
    /// More segments than Linux allows (`UDP_MAX_SEGMENTS` for UDP, `GSO_MAX_SEGS`).
    #[error("{segments} segments exceed the limit of {max}")]
    TooManySegments {
        /// Segments the frame would become.
        segments: usize,
        /// The limit.
        max: usize,
    },
}

/// A validated GSO request: everything the segmentation engine needs, consistent with the
/// frame it was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValidGso {
    kind: GsoKind,
    ecn: bool,
    size: u16,
    layout: Layout,
    segments: usize,
    /// The folded sum of the frame's headers (`..layout.header_len()`), so that the
    /// segmentation engine can tell the frame it is handed from the one validated.
    header_sum: u16,
}

impl ValidGso {
    /// TCPv4, TCPv6 or UDP L4.
    pub fn kind(&self) -> GsoKind {
        self.kind
    }

    /// Whether ECN (CWR) handling was requested.
    pub fn ecn(&self) -> bool {
        self.ecn
    }

    /// Payload bytes per segment (non-zero, not `GSO_BY_FRAGS`).
    pub fn size(&self) -> u16 {
        self.size
    }

    /// The parsed headers: `layout().header_len()` is the real header length and
    /// `layout().end` the frame length.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// How many segments the frame becomes (at least 2: smaller frames are not GSO).
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// The folded ones'-complement sum of the validated frame's headers (everything before
    /// the payload): a cheap fingerprint [`Segmenter::new`](crate::gso::Segmenter::new)
    /// checks to refuse a frame other than the one validated.
    pub fn header_sum(&self) -> u16 {
        self.header_sum
    }
}

/// Metadata checked against its frame by [`OffloadMeta::validate`]; only this type is
/// accepted by the segmentation engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValidMeta {
    meta: OffloadMeta,
    frame_len: usize,
    hdr_len: usize,
    gso: Option<ValidGso>,
}

impl ValidMeta {
    /// The metadata as the peer sent it.
    pub fn meta(&self) -> &OffloadMeta {
        &self.meta
    }

    /// The length of the frame it was validated against.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// `hdr_len` as Linux's tun uses it: at least up to the end of the checksum field (and
    /// for GSO at least the parsed header length), never beyond the frame.
    pub fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// The checksum state (for a partial one, `start + offset + 2 <= frame_len()`).
    pub fn csum(&self) -> ChecksumState {
        self.meta.csum
    }

    /// The GSO request, if the frame is to be segmented. A request whose payload fits in one
    /// segment is dropped here, as Linux does ("too small packets are not really GSO ones").
    pub fn gso(&self) -> Option<&ValidGso> {
        self.gso.as_ref()
    }
}

impl OffloadMeta {
    /// Checks this metadata against `frame`, the bytes it came with, the way Linux's
    /// `virtio_net_hdr_to_skb` and its GSO handlers do:
    ///
    /// - GSO: `gso_size` non-zero and not `GSO_BY_FRAGS`; no UFO; ECN only with TCP; a
    ///   partial checksum is required; the frame must parse, must not be a fragment, and its
    ///   headers must match the kind (TCPv4: IPv4 + TCP, TCPv6: IPv6 + TCP, UDP_L4: IP +
    ///   UDP); `csum_start` must be the transport header and `csum_offset` its checksum
    ///   field; the IP/UDP length must end with the frame; the segment count is bounded by
    ///   `UDP_MAX_SEGMENTS` (UDP) and `GSO_MAX_SEGS`.
    /// - Partial checksum: `csum_start + csum_offset + 2 <= frame.len()`.
    /// - `hdr_len`: raised to cover the checksum field (as tun does) and, for GSO, the parsed
    ///   headers; more than the frame is an error.
    ///
    /// `rsc` (receive-side information) is not checked: it never drives a memory access.
    pub fn validate(&self, frame: &[u8]) -> Result<ValidMeta, MetaError> {
        let len = frame.len();
        let mut hdr_len = usize::from(self.hdr_len);
        if let ChecksumState::Partial { start, offset } = self.csum {
            let field_end = usize::from(start) + usize::from(offset) + 2;
            if field_end > len {
                return Err(MetaError::ChecksumOutOfFrame { start, offset, len });
            }
            hdr_len = hdr_len.max(field_end);
        }
        let gso = self.validate_gso(frame)?;
        if let Some(g) = &gso {
            hdr_len = hdr_len.max(g.layout.header_len());
        }
        if hdr_len > len {
            return Err(MetaError::HdrLenBeyondFrame { hdr_len, len });
        }
        let gso = gso.filter(|g| g.segments > 1);
        Ok(ValidMeta { meta: *self, frame_len: len, hdr_len, gso })
    }

    fn validate_gso(&self, frame: &[u8]) -> Result<Option<ValidGso>, MetaError> {
        let kind = self.gso_kind;
        match kind {
            GsoKind::None => return Ok(None),
            GsoKind::Ufo => return Err(MetaError::UfoUnsupported),
            GsoKind::UdpL4 if self.ecn => return Err(MetaError::EcnWithoutTcp),
            _ => {}
        }
        match self.gso_size {
            0 => return Err(MetaError::GsoSizeZero),
            GSO_BY_FRAGS => return Err(MetaError::GsoSizeByFrags),
            _ => {}
        }
        let ChecksumState::Partial { start, offset } = self.csum else {
            return Err(MetaError::GsoWithoutPartialChecksum);
        };
        let layout = parse(frame)?;
        let matches = match kind {
            GsoKind::TcpV4 => layout.l3 == L3::Ipv4 && layout.l4 == L4::Tcp,
            GsoKind::TcpV6 => layout.l3 == L3::Ipv6 && layout.l4 == L4::Tcp,
            _ => matches!(layout.l3, L3::Ipv4 | L3::Ipv6) && layout.l4 == L4::Udp,
        };
        if layout.fragment.is_some() {
            return Err(MetaError::GsoOnFragment);
        }
        if !matches {
            return Err(MetaError::GsoKindMismatch { kind, l3: layout.l3, l4: layout.l4 });
        }
        if let Some((offset, next_header)) = non_gso_extension(frame, &layout) {
            return Err(MetaError::GsoExtensionHeader { offset, next_header });
        }
        if usize::from(start) != layout.l4_offset {
            return Err(MetaError::ChecksumStartNotL4 { start, l4_offset: layout.l4_offset });
        }
        let expected = if layout.l4 == L4::Tcp { tcp::CHECKSUM_OFFSET } else { udp::CHECKSUM_OFFSET };
        if usize::from(offset) != expected {
            return Err(MetaError::ChecksumOffsetWrong { offset, expected });
        }
        if layout.end != frame.len() {
            return Err(MetaError::GsoLengthMismatch { end: layout.end, frame_len: frame.len() });
        }
        let segments = layout.payload_len().div_ceil(usize::from(self.gso_size));
        let max = if kind == GsoKind::UdpL4 { UDP_MAX_SEGMENTS } else { GSO_MAX_SEGS };
        if segments > max {
            return Err(MetaError::TooManySegments { segments, max });
        }
        let header_sum = checksum::sum(&frame[..layout.header_len()]);
        Ok(Some(ValidGso { kind, ecn: self.ecn, size: self.gso_size, layout, segments, header_sum }))
    }
}

/// The first IPv6 extension header of `frame` (parsed as `layout`) that Linux's GSO cannot
/// step over (`ipv6_gso_pull_exthdrs` knows hop-by-hop, routing and destination options
/// only), with its offset; `None` for IPv4 or a chain of those three.
pub(crate) fn non_gso_extension(frame: &[u8], layout: &Layout) -> Option<(usize, u8)> {
    if layout.l3 != L3::Ipv6 {
        return None;
    }
    let l3 = layout.l3_offset;
    let mut next = ipv6::Packet::new_unchecked(&frame[l3..]).next_header();
    let mut at = l3 + ipv6::HEADER_LEN;
    // `parse` walked this chain within bounds and at most MAX_EXT_HEADERS long; it ends at
    // `l4_offset`. The bound and the length check keep this walk safe on its own.
    for _ in 0..MAX_EXT_HEADERS {
        if at >= layout.l4_offset {
            return None;
        }
        match next {
            protocol::HOP_BY_HOP | protocol::IPV6_ROUTE | protocol::IPV6_OPTS => {
                let Ok(h) = ipv6::ExtHeader::new_checked(&frame[at..layout.l4_offset], next) else {
                    return Some((at, next));
                };
                next = h.next_header();
                at += h.header_len();
            }
            other => return Some((at, other)),
        }
    }
    None
}
