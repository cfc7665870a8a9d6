//! GSO/TSO: software segmentation of a validated super-frame into `gso_size` pieces, byte
//! for byte what Linux's software GSO emits (`tcp_gso_segment`, `__udp_gso_segment`,
//! `inet_gso_segment`, `ipv6_gso_segment`; checked against the running kernel by
//! `tests/linux_gso.rs`).
//!
//! # What each segment gets
//!
//! Every segment carries a copy of the super-frame's headers (Ethernet, VLAN tags, IPv4 with
//! its options or IPv6 with its extension headers, TCP with its options or UDP) followed by
//! the next `gso_size` payload bytes (the last segment may be shorter). Then:
//!
//! - **IPv4**: total length; identification = the super-frame's + segment index (wrapping;
//!   Linux increments it whatever DF says, for TCP and for UDP GSO alike, unless the stack
//!   asked for `SKB_GSO_TCP_FIXEDID`, which a peer cannot); header checksum recomputed (from
//!   the sum of the header's unchanging words, taken once per super-frame, plus the two
//!   changed fields: the same value as a full recomputation, whatever checksum the
//!   super-frame carried).
//! - **IPv6**: payload length (extension headers count, and are copied unchanged).
//! - **TCP**: sequence number = the super-frame's + `index * gso_size` (wrapping); FIN and
//!   PSH only on the last segment; CWR only on the first; every other bit, the reserved
//!   bits included, copied.
//! - **UDP** (`UDP_L4`): every segment is a complete datagram with its own length.
//! - **Checksums**: the transport checksum field of the super-frame holds a partial
//!   (pseudo-header) sum over the whole transport length (validation insists on a partial
//!   checksum). Like Linux, each segment's field is derived from that value by swapping the
//!   length in it for the segment's (RFC 1624 arithmetic), so the pseudo-header is never
//!   rebuilt (and an IPv6 routing header's final destination needs no special case). Then,
//!   per [`ChecksumMode`]: [`Full`](ChecksumMode::Full) completes it over the segment's
//!   transport header and payload (a UDP result of 0 is sent as `0xffff`; TCP keeps 0, as
//!   Linux's GSO does), or [`Partial`](ChecksumMode::Partial) leaves the pseudo-header sum
//!   in the field and reports `csum_start`/`csum_offset` for a NIC that has checksum
//!   offload but no TSO.
//!
//! The virtio `GSO_ECN` bit changes nothing here: it tells a TSO-capable device that CWR may
//! be set; software GSO (Linux's too) clears CWR after the first segment either way.
//!
//! # Zero copy
//!
//! [`Segmenter`] is an iterator of [`Segment`]s: a small header buffer (at most
//! [`MAX_HEADER_LEN`] bytes, inline, no allocation) plus the `Range` of the input frame that
//! is the segment's payload, ready for `writev` or a DMA scatter list. In
//! [`ChecksumMode::Partial`] the payload is never read. [`Segmenter::write_frames`] is the
//! convenience that writes complete frames back to back into a caller's buffer.
//!
//! ```
//! use pvio_offload::{parse, ChecksumMode, ChecksumState, GsoKind, OffloadMeta, Segmenter};
//!
//! // A TCP/IPv4 super-frame: 3000 payload bytes, to leave as 1000-byte segments.
//! let mut frame = vec![
//!     2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet, IPv4
//!     0x45, 0, 0x0b, 0xe0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // 3040 bytes
//!     0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x19, 0xff, 0xff, 0, 0, 0, 0, // ACK PSH FIN
//! ];
//! frame.resize(54 + 3000, 0xab);
//! let pseudo = parse(&frame)?.pseudo_header_sum(&frame).unwrap();
//! frame[50..52].copy_from_slice(&pseudo.to_be_bytes()); // the guest's partial checksum
//! let meta = OffloadMeta {
//!     gso_kind: GsoKind::TcpV4,
//!     ecn: false,
//!     gso_size: 1000,
//!     hdr_len: 54,
//!     csum: ChecksumState::Partial { start: 34, offset: 16 },
//!     rsc: None,
//! };
//! let valid = meta.validate(&frame)?;
//! for (i, seg) in Segmenter::new(&frame, &valid, ChecksumMode::Full)?.enumerate() {
//!     // Zero copy: hand `[seg.header(), &frame[seg.payload_range()]]` to writev or a NIC.
//!     assert_eq!(seg.payload_range(), 54 + i * 1000..54 + (i + 1) * 1000);
//!     let mut out = vec![0; seg.len()];
//!     seg.write_to(&frame, &mut out)?;
//!     assert_eq!(parse(&out)?.verify_l4_checksum(&out), Some(true));
//!     assert_eq!(out[47] & 0x09 != 0, i == 2); // PSH and FIN on the last segment only
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sizes, and super-frames beyond 64 KiB
//!
//! IPv4's total length and IPv6's payload length are 16-bit, and validation requires them
//! (and UDP's length) to end exactly where the frame ends, so a validated super-frame carries
//! at most 65535 bytes of IP packet: less than 64 KiB of payload. Larger frames (IPv6
//! jumbograms with a hop-by-hop jumbo option, Linux's "BIG TCP") are refused by
//! [`OffloadMeta::validate`](crate::OffloadMeta::validate) with
//! [`MetaError::GsoLengthMismatch`](crate::MetaError::GsoLengthMismatch); the sender must
//! split them. The segment count is bounded by validation too (at most 65535 for TCP with a
//! `gso_size` of 1, [`UDP_MAX_SEGMENTS`](crate::meta::UDP_MAX_SEGMENTS) for UDP), and since
//! segments are produced one at a time nothing here is sized by it.
//!
//! # Untrusted input
//!
//! Only a [`ValidMeta`] is accepted, and [`Segmenter::new`] checks that the frame is the one
//! it was validated against (same length, same header bytes by their sum), so every offset
//! used here lies inside the frame. The arithmetic is checked or proven in range anyway, with
//! `debug_assert!`s on the invariants; a frame whose headers are longer than
//! [`MAX_HEADER_LEN`] is an error, not a truncation.

use core::ops::Range;

use thiserror::Error;

use crate::checksum;
use crate::meta::{ChecksumState, GsoKind, ValidMeta};
use crate::parse::{L3, L4};
use crate::{ipv4, ipv6, tcp, udp};

/// The most header bytes (Ethernet + VLAN tags + IP with options or extension headers +
/// TCP with options, or UDP) a segment can carry: enough for QinQ + IPv4 with 40 bytes of
/// options + TCP with 40 bytes of options (142), or IPv6 with up to 134 bytes of extension
/// headers and a full TCP header. Larger headers are [`GsoError::HeadersTooLong`].
pub const MAX_HEADER_LEN: usize = 256;

/// The TCP header byte with FIN..CWR (the low byte of the data-offset/flags word).
const TCP_FLAGS_LOW_BYTE: usize = 13;

/// Who computes the transport checksum of each segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumMode {
    /// The segmenter: every segment leaves with a complete, verifying checksum.
    Full,
    /// The NIC (checksum offload without TSO): the field holds the segment's folded
    /// pseudo-header sum and [`Segment::csum`] says where checksumming starts.
    Partial,
}

/// Why a super-frame cannot be segmented. Each variant names the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum GsoError {
    /// The metadata asks for no segmentation (no GSO kind, or a payload that fits in one
    /// segment, which Linux does not treat as GSO either).
    #[error("the metadata asks for no segmentation")]
    NotGso,
    /// The frame is not as long as the one the metadata was validated against.
    #[error("frame is {len} bytes but the metadata was validated against {validated} bytes")]
    FrameLenMismatch {
        /// The validated frame's length.
        validated: usize,
        /// This frame's length.
        len: usize,
    },
    /// The frame's headers are not the bytes the metadata was validated against.
    #[error("frame headers differ from the ones the metadata was validated against")]
    HeaderMismatch,
    /// The headers do not fit a segment's header buffer.
    #[error("headers of {len} bytes exceed the {max}-byte segment header limit")]
    HeadersTooLong {
        /// Ethernet to the end of the transport header.
        len: usize,
        /// [`MAX_HEADER_LEN`].
        max: usize,
    },
    /// The output buffer of [`Segmenter::write_frames`] is too small.
    #[error("writing the segments needs {needed} bytes, the buffer has {available}")]
    BufferTooSmall {
        /// Bytes all segments take.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

/// One output segment: its own headers plus a range of the input frame as payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    payload: Range<usize>,
    csum: ChecksumState,
}

impl Segment {
    /// The segment's headers (Ethernet to the end of the transport header).
    pub fn header(&self) -> &[u8] {
        &self.header[..self.header_len]
    }

    /// The segment's payload, as a range of the input frame.
    pub fn payload_range(&self) -> Range<usize> {
        self.payload.clone()
    }

    /// The segment's payload in `frame`, the input frame (`None` if `frame` is too short,
    /// i.e. not the input frame).
    pub fn payload<'f>(&self, frame: &'f [u8]) -> Option<&'f [u8]> {
        frame.get(self.payload.clone())
    }

    /// The frame length: headers plus payload.
    pub fn len(&self) -> usize {
        self.header_len + self.payload.len()
    }

    /// Always `false`: a segment has headers.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// [`ChecksumState::Partial`] with `csum_start` (from the first byte of the Ethernet
    /// header) and `csum_offset` in [`ChecksumMode::Partial`]; [`ChecksumState::None`] when
    /// the checksum is complete.
    pub fn csum(&self) -> ChecksumState {
        self.csum
    }

    /// Writes the whole frame (headers, then payload from `frame`) to the start of `out`
    /// and returns its length.
    pub fn write_to(&self, frame: &[u8], out: &mut [u8]) -> Result<usize, GsoError> {
        let len = self.len();
        let available = out.len();
        let dst = out.get_mut(..len).ok_or(GsoError::BufferTooSmall { needed: len, available })?;
        let payload = self
            .payload(frame)
            .ok_or(GsoError::FrameLenMismatch { validated: self.payload.end, len: frame.len() })?;
        let (h, p) = dst.split_at_mut(self.header_len);
        h.copy_from_slice(self.header());
        p.copy_from_slice(payload);
        Ok(len)
    }
}

/// Splits one validated super-frame into segments, one [`Segment`] per
/// [`Iterator::next`].
#[derive(Clone, Debug)]
pub struct Segmenter<'a> {
    frame: &'a [u8],
    mode: ChecksumMode,
    is_tcp: bool,
    is_ipv4: bool,
    l3_offset: usize,
    l4_offset: usize,
    /// Where the payload starts: the header length, `<= MAX_HEADER_LEN`.
    payload_offset: usize,
    /// The frame length; `payload_offset < end`.
    end: usize,
    /// `gso_size`, non-zero.
    mss: usize,
    /// Segments in all: `ceil((end - payload_offset) / mss)`, at least 2.
    count: usize,
    /// The next segment's index, in `0..=count`.
    next: usize,
    /// The super-frame's IPv4 identification.
    ident: u16,
    /// The super-frame's TCP sequence number.
    seq: u32,
    /// The super-frame's transport checksum field: its pseudo-header sum.
    pseudo: u16,
    /// The super-frame's transport length, as it appears in that sum.
    l4_len: u16,
    /// IPv4: the sum of the header's big-endian words other than total length,
    /// identification and checksum (the ones every segment changes). Below 2^22.
    ip_base: u64,
}

impl<'a> Segmenter<'a> {
    /// Prepares to segment `frame`, which must be the frame `meta` was validated against,
    /// computing full checksums or leaving partial ones as `mode` says.
    pub fn new(frame: &'a [u8], meta: &ValidMeta, mode: ChecksumMode) -> Result<Self, GsoError> {
        let gso = meta.gso().ok_or(GsoError::NotGso)?;
        if frame.len() != meta.frame_len() {
            return Err(GsoError::FrameLenMismatch { validated: meta.frame_len(), len: frame.len() });
        }
        let layout = gso.layout();
        let (l3_offset, l4_offset, payload_offset, end) =
            (layout.l3_offset, layout.l4_offset, layout.payload_offset, layout.end);
        // Validation guarantees all of this; a violation would be a bug in this crate.
        debug_assert!(l3_offset <= l4_offset && l4_offset < payload_offset && payload_offset < end);
        debug_assert_eq!(end, frame.len());
        if payload_offset > MAX_HEADER_LEN {
            return Err(GsoError::HeadersTooLong { len: payload_offset, max: MAX_HEADER_LEN });
        }
        let headers = frame.get(..payload_offset).ok_or(GsoError::HeaderMismatch)?;
        if end != frame.len() || checksum::sum(headers) != gso.header_sum() {
            return Err(GsoError::HeaderMismatch);
        }
        let is_tcp = match (gso.kind(), layout.l4) {
            (GsoKind::TcpV4 | GsoKind::TcpV6, L4::Tcp) => true,
            (GsoKind::UdpL4, L4::Udp) => false,
            _ => return Err(GsoError::HeaderMismatch),
        };
        let is_ipv4 = match layout.l3 {
            L3::Ipv4 => true,
            L3::Ipv6 => false,
            L3::Other(_) => return Err(GsoError::HeaderMismatch),
        };
        let l4 = &frame[l4_offset..payload_offset];
        let (pseudo, seq) = if is_tcp {
            let t = tcp::Packet::new_unchecked(l4);
            (t.checksum(), t.seq_number())
        } else {
            (udp::Packet::new_unchecked(l4).checksum(), 0)
        };
        let ident =
            if is_ipv4 { ipv4::Packet::new_unchecked(&frame[l3_offset..l4_offset]).ident() } else { 0 };
        // Words 1 (total length), 2 (identification) and 5 (checksum) change per segment.
        let ip_base = if is_ipv4 {
            frame[l3_offset..l4_offset]
                .chunks_exact(2)
                .enumerate()
                .filter(|(i, _)| !matches!(i, 1 | 2 | 5))
                .map(|(_, w)| u64::from(u16::from_be_bytes([w[0], w[1]])))
                .sum()
        } else {
            0
        };
        let l4_len = u16::try_from(end - l4_offset).map_err(|_| GsoError::HeaderMismatch)?;
        let mss = usize::from(gso.size());
        let count = (end - payload_offset).div_ceil(mss);
        debug_assert_eq!(count, gso.segments());
        debug_assert!(count >= 2);
        Ok(Segmenter {
            frame,
            mode,
            is_tcp,
            is_ipv4,
            l3_offset,
            l4_offset,
            payload_offset,
            end,
            mss,
            count,
            next: 0,
            ident,
            seq,
            pseudo,
            l4_len,
            ip_base,
        })
    }

    /// How many segments the frame becomes in all (including those already produced).
    pub fn segment_count(&self) -> usize {
        self.count
    }

    /// The header length every segment carries.
    pub fn header_len(&self) -> usize {
        self.payload_offset
    }

    /// Bytes all remaining segments take as complete frames: what
    /// [`Segmenter::write_frames`] needs.
    pub fn frames_len(&self) -> usize {
        let remaining = self.count - self.next;
        let payload_start = (self.payload_offset + self.next * self.mss).min(self.end);
        remaining * self.payload_offset + (self.end - payload_start)
    }

    /// The checksum state of every segment: `Partial` with the transport header as
    /// `csum_start` in [`ChecksumMode::Partial`], `None` otherwise.
    pub fn csum(&self) -> ChecksumState {
        match self.mode {
            ChecksumMode::Full => ChecksumState::None,
            ChecksumMode::Partial => ChecksumState::Partial {
                // <= MAX_HEADER_LEN, checked in `new`.
                start: self.l4_offset as u16,
                offset: if self.is_tcp { tcp::CHECKSUM_OFFSET } else { udp::CHECKSUM_OFFSET } as u16,
            },
        }
    }

    /// Builds segment `index` (`< count`).
    fn build(&self, index: usize) -> Segment {
        let hl = self.payload_offset;
        let mut header = [0u8; MAX_HEADER_LEN];
        header[..hl].copy_from_slice(&self.frame[..hl]);
        let payload = self.fill_header(index, &mut header[..hl]);
        Segment { header, header_len: hl, payload, csum: self.csum() }
    }

    /// Turns `header`, a copy of the super-frame's `payload_offset` header bytes, into
    /// segment `index`'s (`< count`) headers, and returns the segment's payload range.
    fn fill_header(&self, index: usize, header: &mut [u8]) -> Range<usize> {
        debug_assert!(index < self.count);
        let (hl, l3, l4) = (self.payload_offset, self.l3_offset, self.l4_offset);
        debug_assert_eq!(header.len(), hl);
        // index < count = ceil(payload / mss), so start < end, and no sum overflows: each
        // is at most `end`.
        let start = hl + index * self.mss;
        let stop = self.end.min(start + self.mss);
        debug_assert!(start < stop && stop <= self.frame.len());
        let last = index + 1 == self.count;

        // Fits in 16 bits: at most the super-frame's own transport length.
        let l4_len = (hl - l4 + (stop - start)) as u16;
        debug_assert!(l4_len <= self.l4_len);

        if self.is_ipv4 {
            let mut ip = ipv4::Packet::new_unchecked(&mut header[l3..l4]);
            let total_len = (l4 - l3) as u16 + l4_len;
            let ident = self.ident.wrapping_add(index as u16);
            ip.set_total_len(total_len);
            ip.set_ident(ident);
            // What `fill_checksum` computes: the header's sum is never 0 (the version
            // nibble is 4), so the folded value is the same however it was added up.
            let sum = self.ip_base + u64::from(total_len) + u64::from(ident);
            ip.set_checksum(!checksum::fold(sum));
        } else {
            let mut ip = ipv6::Packet::new_unchecked(&mut header[l3..l4]);
            ip.set_payload_len((l4 - l3 - ipv6::HEADER_LEN) as u16 + l4_len);
        }

        // The super-frame's pseudo-header sum with its length swapped for this segment's
        // (`tcp_gso_segment`'s `delta`, `__udp_gso_segment`'s `csum16_sub`/`csum16_add`).
        let pseudo = checksum::combine(checksum::combine(self.pseudo, !self.l4_len), l4_len);
        let csum_offset = if self.is_tcp {
            let mut t = tcp::Packet::new_unchecked(&mut header[l4..hl]);
            t.set_seq_number(self.seq.wrapping_add((index * self.mss) as u32));
            let mut clear = 0u8;
            if !last {
                clear |= (tcp::TcpFlags::FIN | tcp::TcpFlags::PSH).bits() as u8;
            }
            if index != 0 {
                clear |= tcp::TcpFlags::CWR.bits() as u8;
            }
            // The low byte of the flags word: the reserved bits and AE stay as sent.
            header[l4 + TCP_FLAGS_LOW_BYTE] &= !clear;
            tcp::CHECKSUM_OFFSET
        } else {
            udp::Packet::new_unchecked(&mut header[l4..hl]).set_len(l4_len);
            udp::CHECKSUM_OFFSET
        };
        let field = l4 + csum_offset;
        header[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
        if self.mode == ChecksumMode::Full {
            let head = checksum::sum(&header[l4..hl]);
            let body = checksum::sum(&self.frame[start..stop]);
            let mut csum = !checksum::combine_at(head, body, hl - l4);
            if !self.is_tcp && csum == 0 {
                csum = 0xffff; // RFC 768: a computed 0 is sent as all ones.
            }
            header[field..field + 2].copy_from_slice(&csum.to_be_bytes());
        }
        start..stop
    }

    /// Writes every remaining segment as a complete frame, back to back, into `out`, and
    /// returns an iterator over the written frames. Needs [`Segmenter::frames_len`] bytes;
    /// nothing is written if `out` is shorter.
    pub fn write_frames<'o>(mut self, out: &'o mut [u8]) -> Result<Frames<'o>, GsoError> {
        let needed = self.frames_len();
        if out.len() < needed {
            return Err(GsoError::BufferTooSmall { needed, available: out.len() });
        }
        let first = self.next;
        let (frame, hl) = (self.frame, self.payload_offset);
        let mut at = 0;
        // Each header is built in place in `out`, then its payload copied after it.
        for index in first..self.count {
            let (header, rest) = out[at..].split_at_mut(hl);
            header.copy_from_slice(&frame[..hl]);
            let payload = self.fill_header(index, header);
            let len = payload.len();
            rest[..len].copy_from_slice(&frame[payload]);
            at += hl + len;
        }
        self.next = self.count;
        debug_assert_eq!(at, needed);
        Ok(Frames {
            buf: &out[..needed],
            header_len: self.payload_offset,
            mss: self.mss,
            remaining_payload: self.end - self.payload_offset - first * self.mss,
        })
    }
}

impl Iterator for Segmenter<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        if self.next == self.count {
            return None;
        }
        let seg = self.build(self.next);
        self.next += 1;
        Some(seg)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.count - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Segmenter<'_> {}

impl core::iter::FusedIterator for Segmenter<'_> {}

/// The frames [`Segmenter::write_frames`] wrote, in order.
#[derive(Clone, Debug)]
pub struct Frames<'o> {
    buf: &'o [u8],
    header_len: usize,
    mss: usize,
    remaining_payload: usize,
}

impl<'o> Frames<'o> {
    /// All frames, back to back.
    pub fn as_bytes(&self) -> &'o [u8] {
        self.buf
    }
}

impl<'o> Iterator for Frames<'o> {
    type Item = &'o [u8];

    fn next(&mut self) -> Option<&'o [u8]> {
        if self.remaining_payload == 0 {
            return None;
        }
        let payload = self.remaining_payload.min(self.mss);
        self.remaining_payload -= payload;
        let (frame, rest) = self.buf.split_at(self.header_len + payload);
        self.buf = rest;
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, OffloadMeta};

    /// TCPv4 with a timestamp option, `payload` bytes of payload, partial checksum, flags
    /// `flags` and sequence number `seq`.
    fn tcp4(payload: usize, flags: u8, seq: u32, ident: u16) -> Vec<u8> {
        let total = 20 + 32 + payload;
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0x02, (total >> 8) as u8, total as u8]);
        f.extend_from_slice(&ident.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x30, 0x39, 0x00, 0x50]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 7, 0x80, flags, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8]);
        f.extend((0..payload).map(|i| (i * 7 + 3) as u8));
        let l = parse(&f).unwrap();
        let p = l.pseudo_header_sum(&f).unwrap();
        f[50..52].copy_from_slice(&p.to_be_bytes());
        f
    }

    fn meta(kind: GsoKind, size: u16, l4: u16, off: u16) -> OffloadMeta {
        OffloadMeta {
            gso_kind: kind,
            ecn: false,
            gso_size: size,
            hdr_len: 0,
            csum: ChecksumState::Partial { start: l4, offset: off },
            rsc: None,
        }
    }

    #[test]
    fn tcp4_headers_follow_linux_rules() {
        let flags = 0x80 | 0x10 | 0x08 | 0x01; // CWR ACK PSH FIN
        let f = tcp4(1000, flags, 0xffff_fe00, 0xfffe);
        let v = meta(GsoKind::TcpV4, 400, 34, 16).validate(&f).unwrap();
        let segs: Vec<Segment> = Segmenter::new(&f, &v, ChecksumMode::Full).unwrap().collect();
        assert_eq!(segs.len(), 3);
        let mut payload = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let mut out = vec![0; s.len()];
            s.write_to(&f, &mut out).unwrap();
            let l = parse(&out).unwrap();
            assert_eq!(l.verify_l4_checksum(&out), Some(true), "segment {i}");
            let ip = ipv4::Packet::new_unchecked(&out[14..]);
            assert!(ip.verify_checksum());
            assert_eq!(ip.ident(), 0xfffeu16.wrapping_add(i as u16));
            assert_eq!(usize::from(ip.total_len()), 52 + [400, 400, 200][i]);
            let t = tcp::Packet::new_unchecked(&out[34..]);
            assert_eq!(t.seq_number(), 0xffff_fe00u32.wrapping_add(400 * i as u32));
            let want = match i {
                0 => 0x80 | 0x10,
                1 => 0x10,
                _ => 0x10 | 0x08 | 0x01,
            };
            assert_eq!(out[47], want, "flags of segment {i}");
            assert_eq!(s.csum(), ChecksumState::None);
            payload.extend_from_slice(s.payload(&f).unwrap());
        }
        assert_eq!(payload, &f[66..]);
    }

    #[test]
    fn partial_mode_leaves_the_pseudo_header_sum() {
        let f = tcp4(1000, 0x10, 1, 1);
        let v = meta(GsoKind::TcpV4, 600, 34, 16).validate(&f).unwrap();
        let full: Vec<Segment> = Segmenter::new(&f, &v, ChecksumMode::Full).unwrap().collect();
        for (i, s) in Segmenter::new(&f, &v, ChecksumMode::Partial).unwrap().enumerate() {
            assert_eq!(s.csum(), ChecksumState::Partial { start: 34, offset: 16 });
            let mut out = vec![0; s.len()];
            s.write_to(&f, &mut out).unwrap();
            let l = parse(&out).unwrap();
            assert_eq!(&out[50..52], &l.pseudo_header_sum(&out).unwrap().to_be_bytes());
            checksum::complete_partial(&mut out, 34, 16).unwrap();
            assert_eq!(&out[..s.header_len], full[i].header(), "segment {i}");
        }
    }

    #[test]
    fn write_frames_lays_segments_back_to_back() {
        let f = tcp4(1000, 0x10, 1, 1);
        let v = meta(GsoKind::TcpV4, 300, 34, 16).validate(&f).unwrap();
        let s = Segmenter::new(&f, &v, ChecksumMode::Full).unwrap();
        assert_eq!(s.frames_len(), 4 * 66 + 1000);
        let mut small = vec![0; 4 * 66 + 999];
        assert_eq!(
            s.clone().write_frames(&mut small).unwrap_err(),
            GsoError::BufferTooSmall { needed: 1264, available: 1263 }
        );
        let mut buf = vec![0; 2000];
        let frames: Vec<&[u8]> = s.clone().write_frames(&mut buf).unwrap().collect();
        let segs: Vec<Segment> = s.collect();
        assert_eq!(frames.len(), 4);
        for (fr, seg) in frames.iter().zip(&segs) {
            assert_eq!(&fr[..66], seg.header());
            assert_eq!(&fr[66..], seg.payload(&f).unwrap());
        }
        // Resuming after the first segment writes only the rest.
        let mut s = Segmenter::new(&f, &v, ChecksumMode::Full).unwrap();
        s.next();
        assert_eq!(s.len(), 3);
        assert_eq!(s.frames_len(), 3 * 66 + 700);
        assert_eq!(s.write_frames(&mut buf).unwrap().count(), 3);
    }

    #[test]
    fn refuses_a_frame_other_than_the_validated_one() {
        let f = tcp4(1000, 0x10, 1, 1);
        let v = meta(GsoKind::TcpV4, 300, 34, 16).validate(&f).unwrap();
        assert_eq!(
            Segmenter::new(&f[..999], &v, ChecksumMode::Full).unwrap_err(),
            GsoError::FrameLenMismatch { validated: f.len(), len: 999 }
        );
        let mut g = f.clone();
        g[40] ^= 1; // a sequence-number byte
        assert_eq!(Segmenter::new(&g, &v, ChecksumMode::Full).unwrap_err(), GsoError::HeaderMismatch);
        let mut g = f.clone();
        g[500] ^= 1; // payload may differ: it is not validated
        assert!(Segmenter::new(&g, &v, ChecksumMode::Full).is_ok());
        let small = meta(GsoKind::TcpV4, 1000, 34, 16).validate(&f).unwrap();
        assert_eq!(Segmenter::new(&f, &small, ChecksumMode::Full).unwrap_err(), GsoError::NotGso);
    }
}
