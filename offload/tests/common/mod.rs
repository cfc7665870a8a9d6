//! Super-frames for the GSO tests, written byte by byte (not with the crate's header
//! setters), with the partial checksum Linux expects: the transport checksum field holds the
//! folded, non-complemented pseudo-header sum over the whole transport length.
#![allow(dead_code)]

use pvio_offload::checksum;
use pvio_offload::{ChecksumState, GsoKind, OffloadMeta};

/// IPv6 extension header kinds the builder can add (8 bytes each).
pub const HOP_BY_HOP: u8 = 0;
/// Routing header (type 253, experimental, no segments left).
pub const ROUTING: u8 = 43;
/// Destination options.
pub const DEST_OPTS: u8 = 60;
/// Fragment header of an atomic fragment (offset 0, no more fragments).
pub const FRAGMENT: u8 = 44;

/// TCP flag bits.
pub const FIN: u8 = 0x01;
/// Push.
pub const PSH: u8 = 0x08;
/// Acknowledgment.
pub const ACK: u8 = 0x10;
/// Urgent.
pub const URG: u8 = 0x20;
/// ECN echo.
pub const ECE: u8 = 0x40;
/// Congestion window reduced.
pub const CWR: u8 = 0x80;

/// NOP, NOP, timestamps (12 bytes).
pub const TCP_TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];

/// One super-frame to build.
#[derive(Clone, Debug)]
pub struct Spec {
    /// IPv6 instead of IPv4.
    pub v6: bool,
    /// UDP (UDP_L4 GSO) instead of TCP.
    pub udp: bool,
    /// VLAN tags, outermost first: (TPID, TCI).
    pub vlans: Vec<(u16, u16)>,
    /// IPv4 options (a multiple of 4 bytes).
    pub ip_options: Vec<u8>,
    /// IPv6 extension headers, in order.
    pub ext_headers: Vec<u8>,
    /// TCP options (a multiple of 4 bytes).
    pub tcp_options: Vec<u8>,
    /// The low byte of the TCP flags word.
    pub tcp_flags: u8,
    /// The low nibble of the data-offset byte: three reserved bits and AE.
    pub tcp_reserved: u8,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgment number.
    pub ack: u32,
    /// IPv4 identification.
    pub ident: u16,
    /// IPv4 DF.
    pub dont_frag: bool,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// Transport source port (one flow per case).
    pub sport: u16,
    /// Transport payload bytes.
    pub payload_len: usize,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// The virtio ECN bit.
    pub ecn: bool,
    /// Seeds the payload bytes.
    pub seed: u32,
}

impl Spec {
    /// TCPv4, no options, ACK only.
    pub fn tcp4(sport: u16, payload_len: usize, gso_size: u16) -> Spec {
        Spec {
            v6: false,
            udp: false,
            vlans: Vec::new(),
            ip_options: Vec::new(),
            ext_headers: Vec::new(),
            tcp_options: Vec::new(),
            tcp_flags: ACK,
            tcp_reserved: 0,
            seq: 0x1000_0000,
            ack: 0x2000_0000,
            ident: 0x1234,
            dont_frag: true,
            tos: 0,
            sport,
            payload_len,
            gso_size,
            ecn: false,
            seed: u32::from(sport),
        }
    }

    /// TCPv6, no extension headers or options, ACK only.
    pub fn tcp6(sport: u16, payload_len: usize, gso_size: u16) -> Spec {
        Spec { v6: true, ..Spec::tcp4(sport, payload_len, gso_size) }
    }

    /// UDP over IPv4.
    pub fn udp4(sport: u16, payload_len: usize, gso_size: u16) -> Spec {
        Spec { udp: true, tcp_flags: 0, ..Spec::tcp4(sport, payload_len, gso_size) }
    }

    /// UDP over IPv6.
    pub fn udp6(sport: u16, payload_len: usize, gso_size: u16) -> Spec {
        Spec { v6: true, ..Spec::udp4(sport, payload_len, gso_size) }
    }

    /// The GSO kind this spec asks for.
    pub fn kind(&self) -> GsoKind {
        match (self.udp, self.v6) {
            (true, _) => GsoKind::UdpL4,
            (false, false) => GsoKind::TcpV4,
            (false, true) => GsoKind::TcpV6,
        }
    }

    /// The payload bytes.
    pub fn payload(&self) -> Vec<u8> {
        let mut x = self.seed.wrapping_mul(2_654_435_761) | 1;
        (0..self.payload_len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as u8
            })
            .collect()
    }

    /// The super-frame and its metadata (partial checksum, GSO kind and size, `hdr_len`).
    pub fn build(&self) -> (Vec<u8>, OffloadMeta) {
        assert_eq!(self.ip_options.len() % 4, 0);
        assert_eq!(self.tcp_options.len() % 4, 0);
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
        for &(tpid, tci) in &self.vlans {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        let proto: u8 = if self.udp { 17 } else { 6 };
        let l4_hdr = if self.udp { 8 } else { 20 + self.tcp_options.len() };
        let l4_len = l4_hdr + self.payload_len;
        let src4 = [10, 0, 0, 1];
        let dst4 = [10, 0, 0, 2];
        let mut src6 = [0u8; 16];
        src6[0] = 0xfd;
        src6[15] = 1;
        let mut dst6 = src6;
        dst6[15] = 2;
        if self.v6 {
            f.extend_from_slice(&[0x86, 0xdd]);
            let payload_len = self.ext_headers.len() * 8 + l4_len;
            let first = self.ext_headers.first().copied().unwrap_or(proto);
            f.extend_from_slice(&[0x60 | (self.tos >> 4), self.tos << 4, 0x12, 0x34]);
            f.extend_from_slice(&(payload_len as u16).to_be_bytes());
            f.extend_from_slice(&[first, 64]);
            f.extend_from_slice(&src6);
            f.extend_from_slice(&dst6);
            for (i, &kind) in self.ext_headers.iter().enumerate() {
                let next = self.ext_headers.get(i + 1).copied().unwrap_or(proto);
                match kind {
                    ROUTING => f.extend_from_slice(&[next, 0, 253, 0, 0, 0, 0, 0]),
                    FRAGMENT => f.extend_from_slice(&[next, 0, 0, 0, 0xca, 0xfe, 0xf0, 0x0d]),
                    _ => f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]), // PadN
                }
            }
        } else {
            f.extend_from_slice(&[0x08, 0x00]);
            let ihl = 20 + self.ip_options.len();
            let total = ihl + l4_len;
            let start = f.len();
            f.extend_from_slice(&[0x40 | (ihl / 4) as u8, self.tos]);
            f.extend_from_slice(&(total as u16).to_be_bytes());
            f.extend_from_slice(&self.ident.to_be_bytes());
            f.extend_from_slice(&[if self.dont_frag { 0x40 } else { 0 }, 0, 64, proto, 0, 0]);
            f.extend_from_slice(&src4);
            f.extend_from_slice(&dst4);
            f.extend_from_slice(&self.ip_options);
            let c = checksum::checksum(&f[start..]);
            f[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
        }
        let l4_offset = f.len();
        if self.udp {
            f.extend_from_slice(&self.sport.to_be_bytes());
            f.extend_from_slice(&[0, 9]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        } else {
            f.extend_from_slice(&self.sport.to_be_bytes());
            f.extend_from_slice(&[0, 80]);
            f.extend_from_slice(&self.seq.to_be_bytes());
            f.extend_from_slice(&self.ack.to_be_bytes());
            f.extend_from_slice(&[
                (((l4_hdr / 4) as u8) << 4) | (self.tcp_reserved & 0x0f),
                self.tcp_flags,
                0xff,
                0xff,
                0,
                0,
                0,
                0,
            ]);
            f.extend_from_slice(&self.tcp_options);
        }
        let hdr_len = f.len();
        f.extend_from_slice(&self.payload());
        let pseudo = if self.v6 {
            checksum::pseudo_header_v6(src6, dst6, proto, l4_len as u32)
        } else {
            checksum::pseudo_header_v4(src4, dst4, proto, l4_len as u16)
        };
        let csum_offset: u16 = if self.udp { 6 } else { 16 };
        let field = l4_offset + usize::from(csum_offset);
        f[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
        let meta = OffloadMeta {
            gso_kind: self.kind(),
            ecn: self.ecn,
            gso_size: self.gso_size,
            hdr_len: hdr_len as u16,
            csum: ChecksumState::Partial { start: l4_offset as u16, offset: csum_offset },
            rsc: None,
        };
        (f, meta)
    }
}

/// Hex dump of the lines where `a` and `b` differ (16 bytes a line), for a failure message.
pub fn hex_diff(a: &[u8], b: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let lines = a.len().max(b.len()).div_ceil(16);
    let mut shown = 0;
    for line in 0..lines {
        let r = line * 16..(line + 1) * 16;
        let pa = a.get(r.start..r.end.min(a.len())).unwrap_or(&[]);
        let pb = b.get(r.start..r.end.min(b.len())).unwrap_or(&[]);
        if pa == pb {
            continue;
        }
        shown += 1;
        if shown > 24 {
            out.push_str("  ...\n");
            break;
        }
        let hex = |p: &[u8]| p.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ");
        let _ = writeln!(out, "  {:04x} linux: {}", r.start, hex(pa));
        let _ = writeln!(out, "  {:04x} pvio:  {}", r.start, hex(pb));
    }
    out
}
