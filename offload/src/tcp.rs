//! TCP segments (RFC 9293), options included.

use crate::error::{truncated, Header, ParseError};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const SEQ_NUM: Field = 4..8;
    pub const ACK_NUM: Field = 8..12;
    pub const FLAGS: Field = 12..14;
    pub const WIN_SIZE: Field = 14..16;
    pub const CHECKSUM: Field = 16..18;
    pub const URGENT: Field = 18..20;
    pub const OPTIONS: usize = 20;
}

/// Length of the TCP header without options.
pub const MIN_HEADER_LEN: usize = field::OPTIONS;

/// Offset of the checksum field in the TCP header (virtio's `csum_offset` for TCP).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

bitflags::bitflags! {
    /// The TCP control bits (the low 9 bits of the data-offset/flags word).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct TcpFlags: u16 {
        /// No more data from the sender.
        const FIN = 0x001;
        /// Synchronize sequence numbers.
        const SYN = 0x002;
        /// Reset the connection.
        const RST = 0x004;
        /// Push function.
        const PSH = 0x008;
        /// The acknowledgment field is significant.
        const ACK = 0x010;
        /// The urgent pointer is significant.
        const URG = 0x020;
        /// ECN-echo (RFC 3168).
        const ECE = 0x040;
        /// Congestion window reduced (RFC 3168).
        const CWR = 0x080;
        /// Accurate-ECN / the former nonce sum bit (RFC 3540, historic).
        const AE = 0x100;
    }
}

/// A view of a TCP segment.
///
/// After [`Self::check_len`], `20 <= header_len() <= buffer.len()`, so no accessor panics.
/// The payload is everything after the header: bound the buffer by the IP length first.
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

    /// Checks the fixed header, the data offset and the options against the buffer.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(truncated(Header::Tcp, MIN_HEADER_LEN, len));
        }
        let data_offset = self.buffer.as_ref()[field::FLAGS.start] >> 4;
        if data_offset < 5 {
            return Err(ParseError::TcpDataOffset { offset: 0, data_offset });
        }
        if len < self.header_len() {
            return Err(truncated(Header::Tcp, self.header_len(), len));
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, f: field::Field) -> u16 {
        let b = &self.buffer.as_ref()[f];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn u32_at(&self, f: field::Field) -> u32 {
        let b = &self.buffer.as_ref()[f];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        self.u32_at(field::SEQ_NUM)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        self.u32_at(field::ACK_NUM)
    }

    /// Header length in bytes (data offset * 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    /// The control bits.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags::from_bits_truncate(self.u16_at(field::FLAGS))
    }

    /// Window size.
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WIN_SIZE)
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT)
    }

    /// The option bytes (empty when the data offset is 5).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The options, decoded one at a time.
    pub fn option_iter(&self) -> TcpOptions<'_> {
        TcpOptions::new(self.options())
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_u16_at(&mut self, f: field::Field, v: u16) {
        self.buffer.as_mut()[f].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16_at(field::SRC_PORT, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16_at(field::DST_PORT, port);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, ack: u32) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&ack.to_be_bytes());
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60) and the control bits.
    pub fn set_header_len_and_flags(&mut self, header_len: usize, flags: TcpFlags) {
        let v = (((header_len / 4) as u16 & 0x0f) << 12) | flags.bits();
        self.set_u16_at(field::FLAGS, v);
    }

    /// Sets the control bits, keeping the data offset.
    pub fn set_flags(&mut self, flags: TcpFlags) {
        let hl = self.header_len();
        self.set_header_len_and_flags(hl, flags);
    }

    /// Sets the window size.
    pub fn set_window_len(&mut self, win: u16) {
        self.set_u16_at(field::WIN_SIZE, win);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, csum: u16) {
        self.set_u16_at(field::CHECKSUM, csum);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_at(&mut self, urg: u16) {
        self.set_u16_at(field::URGENT, urg);
    }

    /// The option bytes, mutably.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..hl]
    }

    /// Everything after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0); the iterator stops after it.
    End,
    /// No-operation padding (kind 1).
    Nop,
    /// Maximum segment size (kind 2).
    Mss(u16),
    /// Window scale shift (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5), raw: pairs of 32-bit edges.
    Sack(&'a [u8]),
    /// Timestamps (kind 8).
    Timestamps {
        /// TSval.
        value: u32,
        /// TSecr.
        echo: u32,
    },
    /// Any other option: its kind and data (after the kind and length bytes).
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data.
        data: &'a [u8],
    },
}

/// A malformed TCP option: a length byte below 2, past the options area, or wrong for the
/// kind. The offset is from the start of the options area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed TCP option of kind {kind} at option offset {offset}")]
pub struct TcpOptionError {
    /// The option kind.
    pub kind: u8,
    /// Where it starts, from the start of the options.
    pub offset: usize,
}

/// Iterator over TCP options; at most 40 bytes, so at most 40 items. Yields one error and
/// then stops on a malformed option.
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    rest: &'a [u8],
    pos: usize,
}

impl<'a> TcpOptions<'a> {
    /// Iterates over raw option bytes.
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptions { rest: options, pos: 0 }
    }
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>, TcpOptionError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after) = self.rest.split_first()?;
        match kind {
            0 => {
                self.rest = &[];
                return Some(Ok(TcpOption::End));
            }
            1 => {
                self.rest = after;
                self.pos += 1;
                return Some(Ok(TcpOption::Nop));
            }
            _ => {}
        }
        // Every other option is kind, length (counting both), data.
        let bad = TcpOptionError { kind, offset: self.pos };
        let len = match after.first() {
            Some(&l) if l >= 2 && usize::from(l) <= self.rest.len() => usize::from(l),
            _ => {
                self.rest = &[];
                return Some(Err(bad));
            }
        };
        let data = &self.rest[2..len];
        self.rest = &self.rest[len..];
        self.pos += len;
        let opt = match (kind, data.len()) {
            (2, 2) => TcpOption::Mss(u16::from_be_bytes([data[0], data[1]])),
            (3, 1) => TcpOption::WindowScale(data[0]),
            (4, 0) => TcpOption::SackPermitted,
            (5, n) if n % 8 == 0 && n > 0 => TcpOption::Sack(data),
            (8, 8) => TcpOption::Timestamps {
                value: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
                echo: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            },
            (2..=5 | 8, _) => {
                self.rest = &[];
                return Some(Err(bad));
            }
            _ => TcpOption::Unknown { kind, data },
        };
        Some(Ok(opt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP header with MSS, SACK-permitted, timestamps, NOP, window scale, then 3 bytes.
    const PACKET_BYTES: [u8; 43] = [
        0x30, 0x39, 0x00, 0x50, // 12345 -> 80
        0x01, 0x02, 0x03, 0x04, // seq
        0x0a, 0x0b, 0x0c, 0x0d, // ack
        0xa0, 0x18, 0xfa, 0xf0, // data offset 10, PSH|ACK, window 64240
        0x12, 0x34, 0x00, 0x07, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, // timestamps 1, 2
        0x01, // NOP
        0x03, 0x03, 0x07, // window scale 7
        b'a', b'b', b'c',
    ];

    #[test]
    fn getters() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (12345, 80));
        assert_eq!((p.seq_number(), p.ack_number()), (0x0102_0304, 0x0a0b_0c0d));
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!((p.window_len(), p.checksum(), p.urgent_at()), (64240, 0x1234, 7));
        assert_eq!(p.payload(), b"abc");
        let opts: Vec<_> = p.option_iter().collect();
        assert_eq!(
            opts,
            [
                Ok(TcpOption::Mss(1460)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamps { value: 1, echo: 2 }),
                Ok(TcpOption::Nop),
                Ok(TcpOption::WindowScale(7)),
            ]
        );
    }

    #[test]
    fn setters_rebuild_the_fixture() {
        let mut b = [0u8; 43];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_src_port(12345);
        p.set_dst_port(80);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0x0a0b_0c0d);
        p.set_header_len_and_flags(40, TcpFlags::PSH | TcpFlags::ACK);
        p.set_window_len(64240);
        p.set_checksum(0x1234);
        p.set_urgent_at(7);
        p.options_mut().copy_from_slice(&PACKET_BYTES[20..40]);
        p.payload_mut().copy_from_slice(b"abc");
        assert_eq!(b, PACKET_BYTES);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_flags(TcpFlags::FIN | TcpFlags::CWR | TcpFlags::AE);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::FIN | TcpFlags::CWR | TcpFlags::AE);
    }

    #[test]
    fn check_len_names_each_rule() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..19]),
            Err(ParseError::Truncated { header: Header::Tcp, offset: 0, needed: 20, available: 19 })
        );
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..39]),
            Err(ParseError::Truncated { header: Header::Tcp, offset: 0, needed: 40, available: 39 })
        );
        let mut bad = PACKET_BYTES;
        bad[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseError::TcpDataOffset { offset: 0, data_offset: 4 })
        );
    }

    #[test]
    fn malformed_options_yield_one_error_then_stop() {
        let cases: [&[u8]; 4] = [&[2, 4, 5], &[2, 3, 5], &[8, 1], &[99, 0, 1, 1]];
        for c in cases {
            let mut it = TcpOptions::new(c);
            assert!(matches!(it.next(), Some(Err(TcpOptionError { kind, .. })) if kind == c[0]), "{c:?}");
            assert_eq!(it.next(), None);
        }
        let mut it = TcpOptions::new(&[1, 1, 3, 3, 7, 2, 9]);
        assert_eq!(it.nth(3), Some(Err(TcpOptionError { kind: 2, offset: 5 })));
        let ok: Vec<_> = TcpOptions::new(&[1, 99, 3, 7, 0, 0xff]).collect();
        assert_eq!(
            ok,
            [Ok(TcpOption::Nop), Ok(TcpOption::Unknown { kind: 99, data: &[7] }), Ok(TcpOption::End)]
        );
    }
}
