//! [`parse`]: one bounded pass over a frame that finds every header this crate knows.

use crate::error::ParseError;
use crate::ether::{self, ethertype, VlanTag, MAX_VLAN_TAGS};
use crate::ipv4::{self, protocol};
use crate::ipv6::{self, MAX_EXT_HEADERS};
use crate::{checksum, tcp, udp};

/// The network layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L3 {
    /// IPv4; its header (options included) spans `l3_offset..l4_offset`.
    Ipv4,
    /// IPv6; its fixed header and extension headers span `l3_offset..l4_offset`.
    Ipv6,
    /// Any other EtherType (ARP, MPLS, ...): not interpreted, and `l4_offset ==
    /// payload_offset == l3_offset`.
    Other(u16),
}

/// The transport layer of an IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP; its header (options included) spans `l4_offset..payload_offset`.
    Tcp,
    /// UDP; its 8-byte header spans `l4_offset..payload_offset`, and `end` is bounded by its
    /// length field.
    Udp,
    /// Another protocol, or any fragment (whose transport header, if any, is not
    /// interpreted); `payload_offset == l4_offset`.
    Other(u8),
    /// Not an IP packet.
    None,
}

/// IP fragmentation, from the IPv4 header or the IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Fragment offset in bytes.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
    /// Identification (16 bits for IPv4).
    pub ident: u32,
}

/// Stacked VLAN tags, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTags {
    tags: [VlanTag; MAX_VLAN_TAGS],
    len: u8,
}

impl VlanTags {
    /// The tags, outermost first.
    pub fn as_slice(&self) -> &[VlanTag] {
        &self.tags[..usize::from(self.len)]
    }
}

/// Where everything is in a frame. All offsets are from the start of the frame and ordered
/// `l3_offset <= l4_offset <= payload_offset <= end <= frame.len()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    /// VLAN tags between the MAC addresses and the final EtherType.
    pub vlans: VlanTags,
    /// The network layer.
    pub l3: L3,
    /// Where the network header starts (after the Ethernet header and tags).
    pub l3_offset: usize,
    /// The transport layer.
    pub l4: L4,
    /// The final IP protocol / next-header value (after IPv6 extension headers); 0 without
    /// IP.
    pub ip_protocol: u8,
    /// Fragmentation, if the IP packet is a fragment (an IPv6 atomic fragment, offset 0
    /// without more fragments, is not one).
    pub fragment: Option<Fragment>,
    /// Where the transport header starts (after IPv4 options or IPv6 extension headers).
    pub l4_offset: usize,
    /// Where the transport payload starts.
    pub payload_offset: usize,
    /// Where the packet ends: the IPv4 total length, IPv6 payload length or UDP length
    /// (whichever is innermost); anything after it is link-layer padding. The frame's end
    /// without IP.
    pub end: usize,
}

impl Layout {
    /// The Ethernet header plus VLAN tags.
    pub fn l2_len(&self) -> usize {
        self.l3_offset
    }

    /// The network header's length (IPv4 options and IPv6 extension headers included).
    pub fn l3_header_len(&self) -> usize {
        self.l4_offset - self.l3_offset
    }

    /// The transport header's length (TCP options included).
    pub fn l4_header_len(&self) -> usize {
        self.payload_offset - self.l4_offset
    }

    /// All headers: where the payload starts.
    pub fn header_len(&self) -> usize {
        self.payload_offset
    }

    /// Transport payload bytes.
    pub fn payload_len(&self) -> usize {
        self.end - self.payload_offset
    }

    /// Transport header plus payload: the length in the pseudo-header.
    pub fn l4_len(&self) -> usize {
        self.end - self.l4_offset
    }

    /// The folded TCP/UDP pseudo-header sum of `frame` (the frame this layout was parsed
    /// from), or `None` if the frame is not TCP or UDP over IP or is a fragment.
    pub fn pseudo_header_sum(&self, frame: &[u8]) -> Option<u16> {
        if !matches!(self.l4, L4::Tcp | L4::Udp) {
            return None;
        }
        let l3 = frame.get(self.l3_offset..self.end)?;
        match self.l3 {
            L3::Ipv4 => {
                let ip = ipv4::Packet::new_unchecked(l3);
                Some(checksum::pseudo_header_v4(
                    ip.src_addr(),
                    ip.dst_addr(),
                    self.ip_protocol,
                    u16::try_from(self.l4_len()).ok()?,
                ))
            }
            L3::Ipv6 => {
                let ip = ipv6::Packet::new_unchecked(l3);
                Some(checksum::pseudo_header_v6(
                    ip.src_addr(),
                    ip.dst_addr(),
                    self.ip_protocol,
                    u32::try_from(self.l4_len()).ok()?,
                ))
            }
            L3::Other(_) => None,
        }
    }

    /// Whether the TCP or UDP checksum of `frame` verifies (a zero UDP-over-IPv4 checksum
    /// means "none" and verifies); `None` if there is no transport checksum to check.
    pub fn verify_l4_checksum(&self, frame: &[u8]) -> Option<bool> {
        let pseudo = self.pseudo_header_sum(frame)?;
        let l4 = frame.get(self.l4_offset..self.end)?;
        if self.l4 == L4::Udp && self.l3 == L3::Ipv4 && udp::Packet::new_unchecked(l4).checksum() == 0 {
            return Some(true);
        }
        Some(checksum::verify(l4, pseudo))
    }
}

/// Finds the headers of an Ethernet frame: up to [`MAX_VLAN_TAGS`] VLAN tags, IPv4 (options
/// included) or IPv6 (up to [`MAX_EXT_HEADERS`] extension headers), then TCP or UDP.
///
/// Every length field is checked against the bytes that hold it; every loop is bounded; the
/// error names the rule and the offset. A non-IP EtherType, a non-TCP/UDP protocol and a
/// fragment are not errors: the layout says what they are and stops there.
pub fn parse(frame: &[u8]) -> Result<Layout, ParseError> {
    let eth = ether::EthernetFrame::new_checked(frame)?;
    let mut ty = eth.ethertype();
    let mut offset = ether::HEADER_LEN;
    let mut vlans = VlanTags::default();
    while ethertype::is_vlan_tpid(ty) {
        if usize::from(vlans.len) == MAX_VLAN_TAGS {
            return Err(ParseError::TooManyVlanTags { offset: offset - 2, max: MAX_VLAN_TAGS });
        }
        let tag = ether::VlanHeader::new_checked(&frame[offset..]).map_err(|e| e.at(offset))?;
        vlans.tags[usize::from(vlans.len)] = VlanTag { tpid: ty, tci: tag.tci() };
        vlans.len += 1;
        ty = tag.ethertype();
        offset += ether::VLAN_HEADER_LEN;
    }
    let l3_offset = offset;
    let mut layout = Layout {
        vlans,
        l3: L3::Other(ty),
        l3_offset,
        l4: L4::None,
        ip_protocol: 0,
        fragment: None,
        l4_offset: l3_offset,
        payload_offset: l3_offset,
        end: frame.len(),
    };
    match ty {
        ethertype::IPV4 => parse_ipv4(frame, &mut layout)?,
        ethertype::IPV6 => parse_ipv6(frame, &mut layout)?,
        _ => return Ok(layout),
    }
    if layout.fragment.is_some() {
        layout.l4 = L4::Other(layout.ip_protocol);
        layout.payload_offset = layout.l4_offset;
        return Ok(layout);
    }
    let l4_offset = layout.l4_offset;
    let l4_bytes = &frame[l4_offset..layout.end];
    match layout.ip_protocol {
        protocol::TCP => {
            let tcp = tcp::Packet::new_checked(l4_bytes).map_err(|e| e.at(l4_offset))?;
            layout.l4 = L4::Tcp;
            layout.payload_offset = l4_offset + tcp.header_len();
        }
        protocol::UDP => {
            let udp = udp::Packet::new_checked(l4_bytes).map_err(|e| e.at(l4_offset))?;
            layout.l4 = L4::Udp;
            layout.payload_offset = l4_offset + udp::HEADER_LEN;
            layout.end = l4_offset + usize::from(udp.len());
        }
        other => {
            layout.l4 = L4::Other(other);
            layout.payload_offset = l4_offset;
        }
    }
    Ok(layout)
}

fn parse_ipv4(frame: &[u8], layout: &mut Layout) -> Result<(), ParseError> {
    let off = layout.l3_offset;
    let ip = ipv4::Packet::new_unchecked(&frame[off..]);
    // Check the version before the lengths so that a wrong protocol reads as such.
    if let Some(&b) = frame.get(off) {
        if b >> 4 != 4 {
            return Err(ParseError::Ipv4Version { offset: off, version: b >> 4 });
        }
    }
    ip.check_len().map_err(|e| e.at(off))?;
    layout.l3 = L3::Ipv4;
    layout.ip_protocol = ip.protocol();
    layout.l4_offset = off + ip.header_len();
    layout.end = off + usize::from(ip.total_len());
    if ip.is_fragment() {
        layout.fragment =
            Some(Fragment { offset: ip.frag_offset(), more: ip.more_frags(), ident: u32::from(ip.ident()) });
    }
    Ok(())
}

fn parse_ipv6(frame: &[u8], layout: &mut Layout) -> Result<(), ParseError> {
    let off = layout.l3_offset;
    if let Some(&b) = frame.get(off) {
        if b >> 4 != 6 {
            return Err(ParseError::Ipv6Version { offset: off, version: b >> 4 });
        }
    }
    let ip = ipv6::Packet::new_checked(&frame[off..]).map_err(|e| e.at(off))?;
    layout.l3 = L3::Ipv6;
    layout.end = off + ipv6::HEADER_LEN + usize::from(ip.payload_len());
    let mut next = ip.next_header();
    let mut at = off + ipv6::HEADER_LEN;
    let mut count = 0;
    while ipv6::is_extension(next) {
        if count == MAX_EXT_HEADERS {
            return Err(ParseError::Ipv6ExtChainTooLong { offset: at, max: MAX_EXT_HEADERS });
        }
        if next == protocol::HOP_BY_HOP && count != 0 {
            return Err(ParseError::Ipv6HopByHopNotFirst { offset: at });
        }
        let bytes = &frame[at..layout.end];
        let len = if next == protocol::IPV6_FRAG {
            let f = ipv6::FragmentHeader::new_checked(bytes).map_err(|e| e.at(at))?;
            // An "atomic fragment" (offset 0, no more fragments; RFC 6946) is a whole
            // packet that merely carries the header: its transport header is interpreted.
            if f.frag_offset() != 0 || f.more_frags() {
                layout.fragment =
                    Some(Fragment { offset: f.frag_offset(), more: f.more_frags(), ident: f.ident() });
            }
            next = f.next_header();
            ipv6::FRAGMENT_HEADER_LEN
        } else {
            let h = ipv6::ExtHeader::new_checked(bytes, next).map_err(|e| e.at(at))?;
            next = h.next_header();
            h.header_len()
        };
        at += len;
        count += 1;
    }
    layout.ip_protocol = next;
    layout.l4_offset = at;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Header;

    /// QinQ-tagged IPv4 (with a 4-byte option) + TCP (12 bytes of options) + 5 bytes, then
    /// 3 bytes of Ethernet padding.
    fn tcp4_frame() -> Vec<u8> {
        let mut f = vec![
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, // MACs
            0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00, // S 100, C 10, IPv4
            0x46, 0x00, 0x00, 0x3d, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // total 61
            10, 0, 0, 1, 10, 0, 0, 2, 0x94, 0x04, 0x00, 0x00, // addrs, router alert
            0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 2, 0x80, 0x18, 0xff, 0xff, 0, 0, 0, 0, 0x01, 0x01,
            0x08, 0x0a, 0, 0, 0, 9, 0, 0, 0, 8, // NOP NOP TS
            b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
        ];
        let c = checksum::checksum(&f[22..46]);
        f[32..34].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn tcp4_with_qinq_and_options() {
        let f = tcp4_frame();
        let l = parse(&f).unwrap();
        assert_eq!(
            l.vlans.as_slice(),
            &[VlanTag { tpid: ethertype::QINQ, tci: 100 }, VlanTag { tpid: ethertype::VLAN, tci: 10 }]
        );
        assert_eq!((l.l3, l.l3_offset, l.l3_header_len()), (L3::Ipv4, 22, 24));
        assert_eq!((l.l4, l.ip_protocol, l.l4_offset, l.l4_header_len()), (L4::Tcp, 6, 46, 32));
        assert_eq!((l.payload_offset, l.payload_len(), l.end), (78, 5, 83));
        assert_eq!(&f[l.payload_offset..l.end], b"hello");
        assert_eq!(l.fragment, None);
    }

    #[test]
    fn l4_checksum_verification() {
        let mut f = tcp4_frame();
        let l = parse(&f).unwrap();
        let pseudo = l.pseudo_header_sum(&f).unwrap();
        f[62..64].copy_from_slice(&pseudo.to_be_bytes());
        checksum::complete_partial(&mut f[..l.end], l.l4_offset, tcp::CHECKSUM_OFFSET).unwrap();
        assert_eq!(l.verify_l4_checksum(&f), Some(true));
        f[80] ^= 0x20;
        assert_eq!(l.verify_l4_checksum(&f), Some(false));
        f[80] ^= 0x20;
        f[84] ^= 0xff; // padding is not covered
        assert_eq!(l.verify_l4_checksum(&f), Some(true));
    }

    fn udp6_frame(ext: &[u8], first_nh: u8) -> Vec<u8> {
        let payload_len = ext.len() + 8 + 3;
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, payload_len as u8, first_nh, 64]);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&[0xfe; 16]);
        f.extend_from_slice(ext);
        f.extend_from_slice(&[0x04, 0xd2, 0x16, 0x2e, 0x00, 0x0b, 0x00, 0x00, b'x', b'y', b'z']);
        f
    }

    #[test]
    fn udp6_with_extension_headers() {
        // HBH (8) -> routing (type 0 header, 24 bytes) -> dest opts (8) -> UDP.
        let mut ext = vec![43, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[60, 2, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[0; 16]);
        ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        let f = udp6_frame(&ext, 0);
        let l = parse(&f).unwrap();
        assert_eq!((l.l3, l.l3_offset, l.l3_header_len()), (L3::Ipv6, 14, 80));
        assert_eq!((l.l4, l.ip_protocol, l.l4_offset, l.payload_offset, l.end), (L4::Udp, 17, 94, 102, 105));
        assert!(l.vlans.as_slice().is_empty());
    }

    #[test]
    fn ipv6_fragment_stops_at_l4() {
        let ext = [17, 0, 0x00, 0x09, 0, 0, 0, 7]; // offset 8, M
        let f = udp6_frame(&ext, 44);
        let l = parse(&f).unwrap();
        assert_eq!(l.fragment, Some(Fragment { offset: 8, more: true, ident: 7 }));
        assert_eq!((l.l4, l.ip_protocol, l.l4_offset, l.payload_offset), (L4::Other(17), 17, 62, 62));
    }

    #[test]
    fn non_ip_is_not_an_error() {
        let mut f = vec![0xff; 12];
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x06, 0, 1, 8, 0]);
        let l = parse(&f).unwrap();
        assert_eq!(
            (l.l3, l.l4, l.l3_offset, l.payload_offset, l.end),
            (L3::Other(0x0806), L4::None, 18, 18, 22)
        );
    }

    #[test]
    fn errors_name_the_rule_and_offset() {
        let f = tcp4_frame();
        let trunc =
            |header, offset, needed, available| ParseError::Truncated { header, offset, needed, available };
        assert_eq!(parse(&f[..10]), Err(trunc(Header::Ethernet, 0, 14, 10)));
        assert_eq!(parse(&f[..16]), Err(trunc(Header::Vlan, 14, 4, 2)));
        assert_eq!(parse(&f[..40]), Err(trunc(Header::Ipv4, 22, 20, 18)));
        assert_eq!(parse(&f[..44]), Err(trunc(Header::Ipv4, 22, 24, 22)));
        assert_eq!(
            parse(&f[..82]),
            Err(ParseError::Ipv4TotalLenBeyondFrame { offset: 22, total_len: 61, available: 60 })
        );
        let mut g = f.clone();
        g[22] = 0x56;
        assert_eq!(parse(&g), Err(ParseError::Ipv4Version { offset: 22, version: 5 }));
        g[22] = 0x43;
        assert_eq!(parse(&g), Err(ParseError::Ipv4Ihl { offset: 22, ihl: 3 }));
        let mut g = f.clone();
        g[25] = 23;
        assert_eq!(
            parse(&g),
            Err(ParseError::Ipv4TotalLenBelowHeader { offset: 22, total_len: 23, header_len: 24 })
        );
        // Total length cut into the TCP options: the TCP header is truncated at the IP end.
        g[25] = 24 + 30;
        assert_eq!(parse(&g), Err(trunc(Header::Tcp, 46, 32, 30)));
        let mut g = f.clone();
        g[58] = 0x40;
        assert_eq!(parse(&g), Err(ParseError::TcpDataOffset { offset: 46, data_offset: 4 }));
        let mut g = f.clone();
        g[20..22].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(parse(&g), Err(ParseError::TooManyVlanTags { offset: 20, max: 2 }));
    }

    #[test]
    fn ipv6_errors_name_the_rule_and_offset() {
        let one_ext = [17, 0, 1, 4, 0, 0, 0, 0];
        let f = udp6_frame(&one_ext, 60);
        let mut g = f.clone();
        g[14] = 0x40;
        assert_eq!(parse(&g), Err(ParseError::Ipv6Version { offset: 14, version: 4 }));
        assert_eq!(
            parse(&f[..f.len() - 1]),
            Err(ParseError::Ipv6PayloadLenBeyondFrame { offset: 14, payload_len: 19, available: 18 })
        );
        // Dest opts claiming 16 bytes inside a 19-byte payload leaves 3 for UDP.
        let mut g = f.clone();
        g[55] = 1;
        assert_eq!(
            parse(&g),
            Err(ParseError::Truncated { header: Header::Udp, offset: 70, needed: 8, available: 3 })
        );
        g[55] = 2;
        assert_eq!(
            parse(&g),
            Err(ParseError::Truncated {
                header: Header::Ipv6Extension,
                offset: 54,
                needed: 24,
                available: 19
            })
        );
        // HBH after dest opts.
        let g = udp6_frame(&[0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0], 60);
        assert_eq!(parse(&g), Err(ParseError::Ipv6HopByHopNotFirst { offset: 62 }));
        // Nine destination-options headers in a row.
        let mut ext = Vec::new();
        for _ in 0..9 {
            ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        let g = udp6_frame(&ext, 60);
        assert_eq!(parse(&g), Err(ParseError::Ipv6ExtChainTooLong { offset: 54 + 8 * 8, max: 8 }));
        let mut g = f.clone();
        g[66..68].copy_from_slice(&[0, 20]);
        assert_eq!(parse(&g), Err(ParseError::UdpLength { offset: 62, udp_len: 20, available: 11 }));
    }
}
