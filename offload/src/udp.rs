//! UDP datagrams (RFC 768).

use crate::error::{truncated, Header, ParseError};

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Offset of the checksum field in the UDP header (virtio's `csum_offset` for UDP).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM.start;

/// A view of a UDP datagram.
///
/// After [`Self::check_len`], `8 <= len() <= buffer.len()`, so no accessor panics.
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

    /// Checks the header and the length field against the buffer.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(truncated(Header::Udp, HEADER_LEN, len));
        }
        let udp_len = self.len();
        if usize::from(udp_len) < HEADER_LEN || usize::from(udp_len) > len {
            return Err(ParseError::UdpLength { offset: 0, udp_len, available: len });
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

    /// Source port.
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// The checksum field (0: none, over IPv4).
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.len())]
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

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, csum: u16) {
        self.set_u16_at(field::CHECKSUM, csum);
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::PAYLOAD..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DNS-ish: 53000 -> 53, length 11, checksum 0xbeef, "abc", then 2 bytes of padding.
    const PACKET_BYTES: [u8; 13] = [0xcf, 0x08, 0x00, 0x35, 0x00, 0x0b, 0xbe, 0xef, b'a', b'b', b'c', 0, 0];

    #[test]
    fn getters_and_setters() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len(), p.checksum()), (53000, 53, 11, 0xbeef));
        assert_eq!(p.payload(), b"abc");
        let mut b = [0u8; 13];
        let mut q = Packet::new_unchecked(&mut b[..]);
        q.set_src_port(53000);
        q.set_dst_port(53);
        q.set_len(11);
        q.set_checksum(0xbeef);
        q.payload_mut().copy_from_slice(b"abc");
        assert_eq!(b, PACKET_BYTES);
    }

    #[test]
    fn check_len_names_each_rule() {
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..7]),
            Err(ParseError::Truncated { header: Header::Udp, offset: 0, needed: 8, available: 7 })
        );
        assert_eq!(
            Packet::new_checked(&PACKET_BYTES[..10]),
            Err(ParseError::UdpLength { offset: 0, udp_len: 11, available: 10 })
        );
        let mut bad = PACKET_BYTES;
        bad[5] = 7;
        assert_eq!(
            Packet::new_checked(&bad[..]),
            Err(ParseError::UdpLength { offset: 0, udp_len: 7, available: 13 })
        );
    }
}
