//! Real TCP traffic: senders that build valid Ethernet/IPv4/TCP frames and 64 KiB super-frames
//! (full or partial checksums, correct sequence numbers, IPv4 IDs), and a checker that
//! validates what arrives at the other end (checksums, sizes, sequence continuity, payload
//! contents).
//!
//! Payload bytes are a fixed pseudo-random function of the TCP sequence number
//! ([`payload`]), so any receiver can check every byte it gets without knowing the sender:
//! a byte copied from the wrong place, a dropped or repeated segment, or a stale buffer shows
//! up as an invalid frame.

use std::sync::OnceLock;

use pvio_offload::{checksum, parse, ChecksumState, GsoKind, OffloadMeta, ParseError, L3, L4};

/// Ethernet + IPv4 + TCP header length (no options).
pub const HDR_LEN: usize = 14 + 20 + 20;
/// IP MTU of the simulated wire.
pub const MTU: usize = 1500;
/// TCP payload per wire segment.
pub const MSS: usize = MTU - 40;
/// Largest Ethernet frame on the wire (no FCS).
pub const MAX_WIRE_FRAME: usize = MTU + 14;
/// Segments in a super-frame: 44 × 1460 = 64240 payload bytes, 64294-byte frame.
pub const SUPER_SEGMENTS: usize = 44;
/// Payload of a full super-frame.
pub const SUPER_PAYLOAD: usize = SUPER_SEGMENTS * MSS;
/// Largest frame the pair carries (a super-frame).
pub const MAX_FRAME: usize = HDR_LEN + SUPER_PAYLOAD;

const L3_OFF: usize = 14;
const L4_OFF: usize = 34;
const PERIOD: usize = 1 << 16;

fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        (0..2 * PERIOD)
            .map(|i| {
                let x = (i % PERIOD) as u32;
                (x.wrapping_mul(0x9e37_79b1).rotate_right(13) ^ (x >> 7)) as u8
            })
            .collect()
    })
}

/// The `len` payload bytes that follow TCP sequence number `seq` (`len <= 65536`). Periodic
/// in 64 KiB, which divides 2^32, so wrapping sequence numbers stay consistent.
pub fn payload(seq: u32, len: usize) -> &'static [u8] {
    let o = seq as usize % PERIOD;
    &pattern()[o..o + len.min(PERIOD)]
}

/// The addresses and ports of one TCP connection, and its MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowId {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address.
    pub src_ip: [u8; 4],
    /// Destination IPv4 address.
    pub dst_ip: [u8; 4],
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// Who computes a sent frame's TCP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxChecksum {
    /// The sender: the frame leaves with a complete checksum.
    Full,
    /// Offloaded: the field holds the pseudo-header sum (`CHECKSUM_PARTIAL`).
    Partial,
}

/// The sending half of a TCP connection: produces consecutive segments or super-frames.
#[derive(Debug, Clone)]
pub struct TcpSender {
    id: FlowId,
    seq: u32,
    ip_id: u16,
}

impl TcpSender {
    /// A sender whose first byte has sequence number `isn`.
    pub fn new(id: FlowId, isn: u32) -> Self {
        TcpSender { id, seq: isn, ip_id: 1 }
    }

    /// The connection.
    pub fn id(&self) -> FlowId {
        self.id
    }

    /// Next sequence number to send.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// Writes the headers of the next frame, carrying `payload_len` bytes (at most
    /// [`SUPER_PAYLOAD`]; more than [`MSS`] makes a TCPv4 GSO super-frame, which needs
    /// [`TxChecksum::Partial`]) into `hdr`, advances the connection and returns the payload
    /// and the frame's offload metadata.
    pub fn next_frame(
        &mut self,
        payload_len: usize,
        csum: TxChecksum,
        hdr: &mut [u8; HDR_LEN],
    ) -> (&'static [u8], OffloadMeta) {
        let payload_len = payload_len.min(SUPER_PAYLOAD);
        let data = payload(self.seq, payload_len);
        let id = self.id;
        hdr[0..6].copy_from_slice(&id.dst_mac);
        hdr[6..12].copy_from_slice(&id.src_mac);
        hdr[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut hdr[L3_OFF..L4_OFF];
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&((40 + payload_len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
        ip[8] = 64;
        ip[9] = 6;
        ip[10..12].fill(0);
        ip[12..16].copy_from_slice(&id.src_ip);
        ip[16..20].copy_from_slice(&id.dst_ip);
        let ipsum = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&ipsum.to_be_bytes());
        let tcp = &mut hdr[L4_OFF..HDR_LEN];
        tcp[0..2].copy_from_slice(&id.src_port.to_be_bytes());
        tcp[2..4].copy_from_slice(&id.dst_port.to_be_bytes());
        tcp[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&1u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x10; // ACK
        tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        tcp[16..20].fill(0);
        let pseudo = checksum::pseudo_header_v4(id.src_ip, id.dst_ip, 6, (20 + payload_len) as u16);
        let gso = payload_len > MSS;
        let meta = match csum {
            TxChecksum::Full if !gso => {
                let head = checksum::combine(pseudo, checksum::sum(tcp));
                let c = !checksum::combine_at(head, checksum::sum(data), 20);
                tcp[16..18].copy_from_slice(&c.to_be_bytes());
                OffloadMeta::NONE
            }
            _ => {
                tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
                OffloadMeta {
                    gso_kind: if gso { GsoKind::TcpV4 } else { GsoKind::None },
                    ecn: false,
                    gso_size: if gso { MSS as u16 } else { 0 },
                    hdr_len: HDR_LEN as u16,
                    csum: ChecksumState::Partial { start: L4_OFF as u16, offset: 16 },
                    rsc: None,
                }
            }
        };
        self.seq = self.seq.wrapping_add(payload_len as u32);
        self.ip_id = self.ip_id.wrapping_add(if gso { payload_len.div_ceil(MSS) as u16 } else { 1 });
        (data, meta)
    }
}

/// Why a received frame is invalid. Each variant names the check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The headers do not parse.
    #[error("headers do not parse: {0}")]
    Parse(#[from] ParseError),
    /// Not TCP over IPv4.
    #[error("not TCP over IPv4")]
    NotTcpV4,
    /// Link-layer padding or a truncated IP packet.
    #[error("IP length {ip_end} does not match the {len}-byte frame")]
    Length {
        /// Where the IP packet ends.
        ip_end: usize,
        /// The frame length.
        len: usize,
    },
    /// Larger than the wire (or the stated segment size) allows.
    #[error("{len}-byte frame exceeds the {max}-byte limit")]
    TooLong {
        /// Frame (or segment) length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A GSO segment size the wire cannot carry.
    #[error("GSO segment size {mss} exceeds the MSS {max}")]
    BadMss {
        /// The requested segment size.
        mss: u16,
        /// The wire's MSS.
        max: usize,
    },
    /// The IPv4 header checksum is wrong.
    #[error("IPv4 header checksum is wrong")]
    IpChecksum,
    /// The TCP checksum is wrong.
    #[error("TCP checksum is wrong")]
    TcpChecksum,
    /// A segment is missing, repeated or out of order.
    #[error("sequence gap on port {port}: expected {expected}, got {got}")]
    SeqGap {
        /// The flow's source port.
        port: u16,
        /// The sequence number expected.
        expected: u32,
        /// The sequence number received.
        got: u32,
    },
    /// Payload bytes are not the ones sent at that sequence number.
    #[error("payload at sequence {seq} differs from what was sent")]
    Payload {
        /// The frame's sequence number.
        seq: u32,
    },
    /// The checksum metadata points somewhere other than the TCP checksum.
    #[error("partial checksum metadata does not point at the TCP checksum")]
    BadPartial,
    /// The frame asks for an offload the NIC does not offer.
    #[error("the frame asks for {0}, which the NIC does not offer")]
    NotOffered(&'static str),
}

/// What the checker knows of a frame's checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxCsum {
    /// Nothing: verify it.
    Unknown,
    /// Verified by hardware or by GRO: trust it (the field may hold a pseudo-header sum).
    Verified,
}

#[derive(Debug, Clone, Copy)]
struct FlowState {
    key: [u8; 12],
    next_seq: u32,
}

/// Validates the frames of any number of TCP connections: every frame must parse as
/// TCP/IPv4, fit the size limit, carry correct checksums, continue its connection's
/// sequence exactly, and carry the [`payload`] for its sequence numbers.
#[derive(Debug, Default)]
pub struct StreamChecker {
    flows: Vec<FlowState>,
    /// Valid frames seen.
    pub frames: u64,
    /// Wire segments those frames stand for (a super-frame stands for several).
    pub segments: u64,
    /// Payload bytes in valid frames.
    pub bytes: u64,
    /// Invalid frames seen.
    pub invalid: u64,
    /// Sequence gaps seen while gaps are tolerated (see [`StreamChecker::tolerating_gaps`]).
    pub gaps: u64,
    tolerate_gaps: bool,
    /// The first reason a frame was invalid.
    pub first_invalid: Option<Invalid>,
}

impl StreamChecker {
    /// A checker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A checker that counts a sequence gap in [`gaps`](Self::gaps) instead of as an invalid
    /// frame: for a receiver behind a path that may drop frames (and says how many it
    /// dropped), as long as what does arrive is intact.
    pub fn tolerating_gaps() -> Self {
        StreamChecker { tolerate_gaps: true, ..Self::default() }
    }

    /// Checks one frame. `gso_size` is the segment size of a super-frame (`None` for a wire
    /// frame, which must fit [`MAX_WIRE_FRAME`]). Counts it as valid or invalid and returns
    /// the verdict.
    pub fn check(&mut self, frame: &[u8], csum: RxCsum, gso_size: Option<u16>) -> Result<(), Invalid> {
        match self.check_inner(frame, csum, gso_size) {
            Ok((segments, bytes)) => {
                self.frames += 1;
                self.segments += segments;
                self.bytes += bytes;
                Ok(())
            }
            Err(e) => {
                self.invalid += 1;
                self.first_invalid.get_or_insert(e);
                Err(e)
            }
        }
    }

    fn check_inner(&mut self, frame: &[u8], csum: RxCsum, gso: Option<u16>) -> Result<(u64, u64), Invalid> {
        let layout = parse(frame)?;
        if layout.l3 != L3::Ipv4 || layout.l4 != L4::Tcp || layout.fragment.is_some() {
            return Err(Invalid::NotTcpV4);
        }
        if layout.end != frame.len() {
            return Err(Invalid::Length { ip_end: layout.end, len: frame.len() });
        }
        let payload_len = layout.payload_len();
        let segments = match gso {
            None => {
                if frame.len() > MAX_WIRE_FRAME {
                    return Err(Invalid::TooLong { len: frame.len(), max: MAX_WIRE_FRAME });
                }
                1
            }
            Some(mss) => {
                if mss == 0 || usize::from(mss) > MSS {
                    return Err(Invalid::BadMss { mss, max: MSS });
                }
                payload_len.div_ceil(usize::from(mss)).max(1) as u64
            }
        };
        let ip = &frame[layout.l3_offset..layout.l4_offset];
        if checksum::sum(ip) != 0xffff {
            return Err(Invalid::IpChecksum);
        }
        if csum == RxCsum::Unknown && layout.verify_l4_checksum(frame) != Some(true) {
            return Err(Invalid::TcpChecksum);
        }
        let l4 = layout.l4_offset;
        let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
        let data = &frame[layout.payload_offset..];
        if data != payload(seq, data.len()) {
            return Err(Invalid::Payload { seq });
        }
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&ip[12..20]);
        key[8..].copy_from_slice(&frame[l4..l4 + 4]);
        let next = seq.wrapping_add(payload_len as u32);
        match self.flows.iter_mut().find(|f| f.key == key) {
            Some(f) if f.next_seq != seq && self.tolerate_gaps => {
                f.next_seq = next;
                self.gaps += 1;
            }
            Some(f) if f.next_seq != seq => {
                let port = u16::from_be_bytes([key[8], key[9]]);
                let expected = f.next_seq;
                // Resynchronize so one gap is one invalid frame, not all that follow.
                f.next_seq = next;
                return Err(Invalid::SeqGap { port, expected, got: seq });
            }
            Some(f) => f.next_seq = next,
            None => self.flows.push(FlowState { key, next_seq: next }),
        }
        Ok((segments, payload_len as u64))
    }
}

/// Completes a frame's partial checksum as a NIC's checksum offload does, after checking that
/// the metadata points at the TCP checksum field and that the field holds the frame's
/// pseudo-header sum (what the sender — guest, or back end after segmenting — must have put
/// there). Returns whether it completed one: the checksum is then right by construction
/// (the data it covers is still checked byte for byte by [`StreamChecker`]), so the caller
/// need not verify it a second time.
pub fn complete_tcp_partial(frame: &mut [u8], csum: ChecksumState) -> Result<bool, Invalid> {
    let ChecksumState::Partial { start, offset } = csum else { return Ok(false) };
    let layout = parse(frame)?;
    if usize::from(start) != layout.l4_offset || offset != 16 || layout.l4 != L4::Tcp {
        return Err(Invalid::BadPartial);
    }
    let field = layout.l4_offset + 16;
    let have = u16::from_be_bytes([frame[field], frame[field + 1]]);
    if layout.pseudo_header_sum(frame) != Some(have) {
        return Err(Invalid::TcpChecksum);
    }
    checksum::complete_partial(frame, start.into(), offset.into()).map_err(|_| Invalid::BadPartial)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> FlowId {
        FlowId {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: [10, 0, 0, 1],
            dst_ip: [10, 0, 0, 2],
            src_port: 40000,
            dst_port: 5201,
        }
    }

    fn frame(s: &mut TcpSender, len: usize, csum: TxChecksum) -> (Vec<u8>, OffloadMeta) {
        let mut h = [0u8; HDR_LEN];
        let (p, meta) = s.next_frame(len, csum, &mut h);
        let mut f = h.to_vec();
        f.extend_from_slice(p);
        (f, meta)
    }

    #[test]
    fn valid_frames_pass_and_etherparse_agrees() {
        let mut s = TcpSender::new(flow(), u32::MAX - 2000);
        let mut c = StreamChecker::new();
        for _ in 0..4 {
            let (f, _) = frame(&mut s, MSS, TxChecksum::Full);
            c.check(&f, RxCsum::Unknown, None).unwrap();
            // An independent parser agrees the checksums are right.
            let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("not ipv4") };
            let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else { panic!("not tcp") };
            let want = tcp.to_header().calc_checksum_ipv4(&ip.header().to_header(), tcp.payload()).unwrap();
            assert_eq!(tcp.checksum(), want);
        }
        assert_eq!((c.frames, c.bytes, c.invalid), (4, 4 * MSS as u64, 0));
    }

    #[test]
    fn corruption_gaps_and_bad_checksums_are_caught() {
        let mut s = TcpSender::new(flow(), 7);
        let mut c = StreamChecker::new();
        let (mut f, _) = frame(&mut s, MSS, TxChecksum::Full);
        f[100] ^= 1;
        assert_eq!(c.check(&f, RxCsum::Unknown, None), Err(Invalid::TcpChecksum));
        assert!(matches!(c.check(&f, RxCsum::Verified, None), Err(Invalid::Payload { .. })));
        let (f, _) = frame(&mut s, MSS, TxChecksum::Full);
        c.check(&f, RxCsum::Unknown, None).unwrap();
        let _skipped = frame(&mut s, MSS, TxChecksum::Full);
        let (f, _) = frame(&mut s, MSS, TxChecksum::Full);
        assert!(matches!(c.check(&f, RxCsum::Unknown, None), Err(Invalid::SeqGap { .. })));
        let (mut f, _) = frame(&mut s, 100, TxChecksum::Full);
        f[24] ^= 0x40;
        assert_eq!(c.check(&f, RxCsum::Unknown, None), Err(Invalid::IpChecksum));
        assert_eq!(c.invalid, 4);
    }

    #[test]
    fn super_frames_complete_and_verify() {
        let mut s = TcpSender::new(flow(), 1);
        let (mut f, meta) = frame(&mut s, SUPER_PAYLOAD, TxChecksum::Partial);
        assert_eq!(f.len(), MAX_FRAME);
        assert_eq!(meta.gso_kind, GsoKind::TcpV4);
        meta.validate(&f).unwrap();
        let mut c = StreamChecker::new();
        assert!(c.check(&f, RxCsum::Unknown, Some(MSS as u16)).is_err());
        let mut wrong = f.clone();
        wrong[HDR_LEN - 3] ^= 1; // the pseudo-header sum in the TCP checksum field
        assert_eq!(complete_tcp_partial(&mut wrong, meta.csum), Err(Invalid::TcpChecksum));
        assert_eq!(complete_tcp_partial(&mut f, meta.csum), Ok(true));
        c.check(&f, RxCsum::Unknown, Some(MSS as u16)).unwrap();
        assert_eq!(c.segments, SUPER_SEGMENTS as u64);
        assert_eq!(
            c.check(&f, RxCsum::Unknown, None),
            Err(Invalid::TooLong { len: MAX_FRAME, max: MAX_WIRE_FRAME })
        );
    }
}
