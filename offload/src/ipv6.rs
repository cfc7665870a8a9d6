//! IPv6 packets (RFC 8200) and their extension headers.

use crate::error::{truncated, Header, ParseError};
use crate::ipv4::protocol;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
    pub const PAYLOAD: usize = 40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The most chained extension headers [`parse`](crate::parse()) walks before giving up.
/// RFC 8200 allows each kind once (destination options twice), six in all; a little slack
/// for repeated ones, and a hard bound on a chain a peer controls.
pub const MAX_EXT_HEADERS: usize = 8;

/// Whether `next_header` names an extension header that [`ExtHeader`] or
/// [`FragmentHeader`] describes (hop-by-hop, routing, fragment, destination options,
/// authentication).
pub const fn is_extension(next_header: u8) -> bool {
    matches!(
        next_header,
        protocol::HOP_BY_HOP
            | protocol::IPV6_ROUTE
            | protocol::IPV6_FRAG
            | protocol::IPV6_OPTS
            | protocol::AH
    )
}

/// A view of an IPv6 packet.
///
/// After [`Self::check_len`], `40 + payload_len() <= buffer.len()`, so no accessor panics.
/// The version nibble is not checked here ([`parse`](crate::parse()) does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; accessors may panic until [`Self::check_len`]
    /// passes.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed header and the payload length against the buffer.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(truncated(Header::Ipv6, HEADER_LEN, len));
        }
        let payload_len = self.payload_len();
        if usize::from(payload_len) > len - HEADER_LEN {
            return Err(ParseError::Ipv6PayloadLenBeyondFrame {
                offset: 0,
                payload_len,
                available: len - HEADER_LEN,
            });
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word0(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The version nibble (6 for a well-formed packet).
    pub fn version(&self) -> u8 {
        (self.word0() >> 28) as u8
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    /// Payload length: extension headers plus upper-layer data.
    pub fn payload_len(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The first next-header value.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        a
    }

    /// Destination address.
    pub fn dst_addr(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        a
    }

    /// The payload (extension headers included), up to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, the traffic class and the flow label (low 20 bits).
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the first next-header value.
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = nh;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hl: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hl;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr);
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: [u8; 16]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr);
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

mod ext_field {
    pub const NXT_HDR: usize = 0;
    pub const LENGTH: usize = 1;
    pub const DATA: usize = 2;
}

/// A view of a length-prefixed extension header: hop-by-hop options, routing, destination
/// options (length in 8-octet units past the first 8), or authentication (RFC 4302: length in
/// 4-octet units minus 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    kind: u8,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wraps `buffer` as an extension header of kind `kind` (the next-header value that
    /// announced it, which decides how its length is counted) without checking it.
    pub const fn new_unchecked(buffer: T, kind: u8) -> Self {
        ExtHeader { buffer, kind }
    }

    /// Wraps `buffer` after [`Self::check_len`].
    pub fn new_checked(buffer: T, kind: u8) -> Result<Self, ParseError> {
        let h = Self::new_unchecked(buffer, kind);
        h.check_len()?;
        Ok(h)
    }

    /// Checks the two-byte prefix and then the whole header against the buffer.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < ext_field::DATA {
            return Err(truncated(Header::Ipv6Extension, 8, len));
        }
        if len < self.header_len() {
            return Err(truncated(Header::Ipv6Extension, self.header_len(), len));
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The next-header value that announced this header.
    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// The next header after this one.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[ext_field::NXT_HDR]
    }

    /// The whole header's length in bytes.
    pub fn header_len(&self) -> usize {
        let units = usize::from(self.buffer.as_ref()[ext_field::LENGTH]);
        if self.kind == protocol::AH {
            (units + 2) * 4
        } else {
            (units + 1) * 8
        }
    }

    /// The header's data after the two-byte prefix (options, routing data, ICV).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[ext_field::DATA..self.header_len()]
    }
}

mod frag_field {
    pub type Field = core::ops::Range<usize>;
    pub const NXT_HDR: usize = 0;
    pub const FRAG_OFF: Field = 2..4;
    pub const IDENT: Field = 4..8;
}

/// Length of the IPv6 fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// A view of the IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentHeader<T> {
    /// Wraps `buffer` without checking it; accessors may panic until [`Self::check_len`]
    /// passes.
    pub const fn new_unchecked(buffer: T) -> Self {
        FragmentHeader { buffer }
    }

    /// Wraps `buffer` after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Checks that the eight bytes fit.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < FRAGMENT_HEADER_LEN {
            return Err(truncated(Header::Ipv6Fragment, FRAGMENT_HEADER_LEN, len));
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The next header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[frag_field::NXT_HDR]
    }

    fn off_field(&self) -> u16 {
        let b = &self.buffer.as_ref()[frag_field::FRAG_OFF];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        self.off_field() & 0xfff8
    }

    /// The more-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.off_field() & 1 != 0
    }

    /// Identification.
    pub fn ident(&self) -> u32 {
        let b = &self.buffer.as_ref()[frag_field::IDENT];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragmentHeader<T> {
    /// Writes the whole header: next header, offset in bytes (a multiple of 8), the
    /// more-fragments flag and the identification.
    pub fn set(&mut self, next_header: u8, offset: u16, more: bool, ident: u32) {
        let b = self.buffer.as_mut();
        b[frag_field::NXT_HDR] = next_header;
        b[1] = 0;
        b[frag_field::FRAG_OFF].copy_from_slice(&((offset & 0xfff8) | u16::from(more)).to_be_bytes());
        b[frag_field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IPv6, hop-by-hop (8 bytes, PadN), fragment header, 4 bytes of UDP-ish payload.
    const PACKET_BYTES: [u8; 60] = [
        0x60, 0xa1, 0x23, 0x45, // v6, TC 0x0a, flow 0x12345
        0x00, 0x14, 0x00, 0x40, // payload 20, next HBH, hop limit 64
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src fe80::1
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst fe80::2
        0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // HBH: next fragment, len 0, PadN(4)
        0x11, 0x00, 0x05, 0x51, 0xde, 0xad, 0xbe, 0xef, // frag: next UDP, offset 1360, M, ident
        0x01, 0x02, 0x03, 0x04, // payload
    ];

    #[test]
    fn getters() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0x0a, 0x12345));
        assert_eq!((p.payload_len(), p.next_header(), p.hop_limit()), (20, protocol::HOP_BY_HOP, 64));
        assert_eq!(p.src_addr()[..2], [0xfe, 0x80]);
        assert_eq!(p.dst_addr()[15], 2);
        let hbh = ExtHeader::new_checked(p.payload(), p.next_header()).unwrap();
        assert_eq!((hbh.next_header(), hbh.header_len()), (protocol::IPV6_FRAG, 8));
        assert_eq!(hbh.data(), &[0x01, 0x04, 0, 0, 0, 0]);
        let frag = FragmentHeader::new_checked(&p.payload()[8..]).unwrap();
        assert_eq!(frag.next_header(), protocol::UDP);
        assert_eq!((frag.frag_offset(), frag.more_frags(), frag.ident()), (1360, true, 0xdead_beef));
    }

    #[test]
    fn setters_rebuild_the_fixture() {
        let mut b = [0u8; 60];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_tc_flow(0x0a, 0x12345);
        p.set_payload_len(20);
        p.set_next_header(protocol::HOP_BY_HOP);
        p.set_hop_limit(64);
        p.set_src_addr(PACKET_BYTES[8..24].try_into().unwrap());
        p.set_dst_addr(PACKET_BYTES[24..40].try_into().unwrap());
        p.payload_mut()[..8].copy_from_slice(&PACKET_BYTES[40..48]);
        FragmentHeader::new_checked(&mut p.payload_mut()[8..]).unwrap().set(
            protocol::UDP,
            1360,
            true,
            0xdead_beef,
        );
        p.payload_mut()[16..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(b, PACKET_BYTES);
    }

    #[test]
    fn ah_length_counts_in_four_octet_units() {
        let ah = [
            protocol::TCP,
            4,
            0,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            2,
            0xaa,
            0xbb,
            0xcc,
            0xdd,
            0xee,
            0xff,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        let h = ExtHeader::new_checked(&ah[..], protocol::AH).unwrap();
        assert_eq!(h.header_len(), 24);
        let h = ExtHeader::new_checked(&ah[..], protocol::IPV6_OPTS);
        assert_eq!(
            h,
            Err(ParseError::Truncated {
                header: Header::Ipv6Extension,
                offset: 0,
                needed: 40,
                available: 24
            })
        );
    }

    #[test]
    fn check_len_names_each_rule() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..39]),
            Err(ParseError::Truncated { header: Header::Ipv6, offset: 0, needed: 40, available: 39 })
        );
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..59]),
            Err(ParseError::Ipv6PayloadLenBeyondFrame { offset: 0, payload_len: 20, available: 19 })
        );
        assert_eq!(
            FragmentHeader::new_checked(&PACKET_BYTES[48..55]),
            Err(ParseError::Truncated { header: Header::Ipv6Fragment, offset: 0, needed: 8, available: 7 })
        );
        assert_eq!(
            ExtHeader::new_checked(&PACKET_BYTES[40..41], 0),
            Err(ParseError::Truncated { header: Header::Ipv6Extension, offset: 0, needed: 8, available: 1 })
        );
    }
}
