//! Why a frame does not parse: one variant per broken rule, each with the offset (from the
//! start of the frame, or of the view for a view's own `check_len`) where it was found.

use core::fmt;
use thiserror::Error;

/// A header kind, for naming what is truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Header {
    /// The 14-byte Ethernet II header.
    Ethernet,
    /// An 802.1Q / 802.1ad tag (4 bytes after the TPID).
    Vlan,
    /// The IPv4 header (20 bytes fixed, up to 60 with options).
    Ipv4,
    /// The 40-byte IPv6 header.
    Ipv6,
    /// An IPv6 extension header (hop-by-hop, routing, destination options, authentication).
    Ipv6Extension,
    /// The 8-byte IPv6 fragment header.
    Ipv6Fragment,
    /// The TCP header (20 bytes fixed, up to 60 with options).
    Tcp,
    /// The 8-byte UDP header.
    Udp,
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Header::Ethernet => "Ethernet",
            Header::Vlan => "VLAN",
            Header::Ipv4 => "IPv4",
            Header::Ipv6 => "IPv6",
            Header::Ipv6Extension => "IPv6 extension",
            Header::Ipv6Fragment => "IPv6 fragment",
            Header::Tcp => "TCP",
            Header::Udp => "UDP",
        })
    }
}

/// A malformed frame or header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum ParseError {
    /// The bytes run out before the header (or its options) does.
    #[error("truncated {header} header at offset {offset}: needs {needed} bytes, {available} available")]
    Truncated {
        /// Which header.
        header: Header,
        /// Where it starts.
        offset: usize,
        /// Bytes the header needs (its fixed part, or its full length once that is known).
        needed: usize,
        /// Bytes there are from `offset` (to the end of the frame or of the enclosing packet).
        available: usize,
    },
    /// More stacked 802.1Q/802.1ad tags than [`MAX_VLAN_TAGS`](crate::ether::MAX_VLAN_TAGS).
    #[error("more than {max} stacked VLAN tags; the next one is at offset {offset}")]
    TooManyVlanTags {
        /// Where the tag beyond the limit starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// The EtherType says IPv4 but the version nibble is not 4.
    #[error("IPv4 header at offset {offset} has version {version}")]
    Ipv4Version {
        /// Where the IPv4 header starts.
        offset: usize,
        /// The version nibble found.
        version: u8,
    },
    /// IHL below 5 (RFC 791: the header is at least five 32-bit words).
    #[error("IPv4 header at offset {offset} has IHL {ihl}, below the minimum of 5")]
    Ipv4Ihl {
        /// Where the IPv4 header starts.
        offset: usize,
        /// The IHL found.
        ihl: u8,
    },
    /// The total length is shorter than the header itself.
    #[error("IPv4 total length {total_len} at offset {offset} is below its header length {header_len}")]
    Ipv4TotalLenBelowHeader {
        /// Where the IPv4 header starts.
        offset: usize,
        /// The total-length field.
        total_len: u16,
        /// IHL * 4.
        header_len: usize,
    },
    /// The total length claims more bytes than the frame holds.
    #[error("IPv4 total length {total_len} at offset {offset} runs beyond the frame ({available} bytes available)")]
    Ipv4TotalLenBeyondFrame {
        /// Where the IPv4 header starts.
        offset: usize,
        /// The total-length field.
        total_len: u16,
        /// Bytes from `offset` to the end of the frame.
        available: usize,
    },
    /// The EtherType says IPv6 but the version nibble is not 6.
    #[error("IPv6 header at offset {offset} has version {version}")]
    Ipv6Version {
        /// Where the IPv6 header starts.
        offset: usize,
        /// The version nibble found.
        version: u8,
    },
    /// The payload length claims more bytes than the frame holds.
    #[error("IPv6 payload length {payload_len} at offset {offset} runs beyond the frame ({available} bytes after the header)")]
    Ipv6PayloadLenBeyondFrame {
        /// Where the IPv6 header starts.
        offset: usize,
        /// The payload-length field.
        payload_len: u16,
        /// Bytes after the fixed header to the end of the frame.
        available: usize,
    },
    /// More chained extension headers than [`MAX_EXT_HEADERS`](crate::ipv6::MAX_EXT_HEADERS).
    #[error("IPv6 extension header chain longer than {max} headers; the next one is at offset {offset}")]
    Ipv6ExtChainTooLong {
        /// Where the header beyond the limit starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// A hop-by-hop options header somewhere other than right after the IPv6 header
    /// (RFC 8200 §4.1).
    #[error("IPv6 hop-by-hop options header at offset {offset} does not immediately follow the IPv6 header")]
    Ipv6HopByHopNotFirst {
        /// Where the misplaced header starts.
        offset: usize,
    },
    /// TCP data offset below 5 (RFC 9293: the header is at least five 32-bit words).
    #[error("TCP header at offset {offset} has data offset {data_offset}, below the minimum of 5")]
    TcpDataOffset {
        /// Where the TCP header starts.
        offset: usize,
        /// The data offset found.
        data_offset: u8,
    },
    /// The UDP length field is below 8 or beyond the bytes the IP packet carries.
    #[error("UDP length {udp_len} at offset {offset} is below 8 or beyond the {available} bytes available")]
    UdpLength {
        /// Where the UDP header starts.
        offset: usize,
        /// The length field.
        udp_len: u16,
        /// Bytes from `offset` to the end of the IP packet.
        available: usize,
    },
}

impl ParseError {
    /// The same error with its offset moved by `base` (a view's error, placed in its frame).
    pub(crate) fn at(self, base: usize) -> ParseError {
        use ParseError::*;
        match self {
            Truncated { header, offset, needed, available } => {
                Truncated { header, offset: offset + base, needed, available }
            }
            TooManyVlanTags { offset, max } => TooManyVlanTags { offset: offset + base, max },
            Ipv4Version { offset, version } => Ipv4Version { offset: offset + base, version },
            Ipv4Ihl { offset, ihl } => Ipv4Ihl { offset: offset + base, ihl },
            Ipv4TotalLenBelowHeader { offset, total_len, header_len } => {
                Ipv4TotalLenBelowHeader { offset: offset + base, total_len, header_len }
            }
            Ipv4TotalLenBeyondFrame { offset, total_len, available } => {
                Ipv4TotalLenBeyondFrame { offset: offset + base, total_len, available }
            }
            Ipv6Version { offset, version } => Ipv6Version { offset: offset + base, version },
            Ipv6PayloadLenBeyondFrame { offset, payload_len, available } => {
                Ipv6PayloadLenBeyondFrame { offset: offset + base, payload_len, available }
            }
            Ipv6ExtChainTooLong { offset, max } => Ipv6ExtChainTooLong { offset: offset + base, max },
            Ipv6HopByHopNotFirst { offset } => Ipv6HopByHopNotFirst { offset: offset + base },
            TcpDataOffset { offset, data_offset } => TcpDataOffset { offset: offset + base, data_offset },
            UdpLength { offset, udp_len, available } => {
                UdpLength { offset: offset + base, udp_len, available }
            }
        }
    }
}

/// `Truncated` at offset 0 of a view.
pub(crate) fn truncated(header: Header, needed: usize, available: usize) -> ParseError {
    ParseError::Truncated { header, offset: 0, needed, available }
}
