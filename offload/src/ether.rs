//! Ethernet II frames and 802.1Q / 802.1ad VLAN tags.

use crate::error::{truncated, Header, ParseError};

/// EtherType values this crate looks at.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (S-tag, the outer tag of QinQ).
    pub const QINQ: u16 = 0x88a8;
    /// The pre-standard QinQ TPID some switches still send.
    pub const QINQ_LEGACY: u16 = 0x9100;

    /// Whether `ty` is a TPID announcing a VLAN tag.
    pub const fn is_vlan_tpid(ty: u16) -> bool {
        matches!(ty, VLAN | QINQ | QINQ_LEGACY)
    }
}

/// The most stacked VLAN tags [`parse`](crate::parse()) accepts (an S-tag and a C-tag).
pub const MAX_VLAN_TAGS: usize = 2;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` without checking it; accessors may panic until [`Self::check_len`]
    /// passes.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps `buffer` after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header fits; afterwards no accessor panics.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(truncated(Header::Ethernet, HEADER_LEN, len));
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    pub fn destination(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        a
    }

    /// Source MAC address.
    pub fn source(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        a
    }

    /// The EtherType (or the TPID of a first VLAN tag).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the 14-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    pub fn set_destination(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&mac);
    }

    /// Sets the source MAC address.
    pub fn set_source(&mut self, mac: [u8; 6]) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&mac);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, ty: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ty.to_be_bytes());
    }

    /// Everything after the 14-byte header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// One VLAN tag as it sits in a frame: the TPID that announced it and its tag control
/// information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VlanTag {
    /// [`ethertype::VLAN`], [`ethertype::QINQ`] or [`ethertype::QINQ_LEGACY`].
    pub tpid: u16,
    /// Priority (3 bits), drop-eligible (1 bit), VLAN ID (12 bits).
    pub tci: u16,
}

impl VlanTag {
    /// Priority code point (0..=7).
    pub const fn pcp(self) -> u8 {
        (self.tci >> 13) as u8
    }

    /// Drop-eligible indicator.
    pub const fn dei(self) -> bool {
        self.tci & 0x1000 != 0
    }

    /// VLAN identifier (0..=4095).
    pub const fn vid(self) -> u16 {
        self.tci & 0x0fff
    }
}

mod vlan_field {
    pub type Field = core::ops::Range<usize>;
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: usize = 4;
}

/// Length of a VLAN tag after its TPID (TCI and the next EtherType).
pub const VLAN_HEADER_LEN: usize = vlan_field::PAYLOAD;

/// A view of the four bytes that follow a VLAN TPID: the TCI and the next EtherType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Wraps `buffer` without checking it; accessors may panic until [`Self::check_len`]
    /// passes.
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    /// Wraps `buffer` after [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let h = Self::new_unchecked(buffer);
        h.check_len()?;
        Ok(h)
    }

    /// Checks that the four bytes fit; afterwards no accessor panics.
    pub fn check_len(&self) -> Result<(), ParseError> {
        let len = self.buffer.as_ref().len();
        if len < VLAN_HEADER_LEN {
            return Err(truncated(Header::Vlan, VLAN_HEADER_LEN, len));
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Tag control information.
    pub fn tci(&self) -> u16 {
        let b = &self.buffer.as_ref()[vlan_field::TCI];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The EtherType (or TPID) that follows the tag.
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[vlan_field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[vlan_field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Sets the tag control information.
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[vlan_field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    /// Sets the EtherType that follows the tag.
    pub fn set_ethertype(&mut self, ty: u16) {
        self.buffer.as_mut()[vlan_field::ETHERTYPE].copy_from_slice(&ty.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An 802.1ad + 802.1Q tagged IPv4 frame's first 22 bytes.
    const QINQ_FRAME: [u8; 22] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // destination
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // source
        0x88, 0xa8, 0xa0, 0x64, // S-tag: PCP 5, VID 100
        0x81, 0x00, 0x10, 0x0a, // C-tag: DEI, VID 10
        0x08, 0x00, // IPv4
    ];

    #[test]
    fn ethernet_fields() {
        let f = EthernetFrame::new_checked(&QINQ_FRAME[..]).unwrap();
        assert_eq!(f.destination(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.source(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), ethertype::QINQ);
        let s = VlanHeader::new_checked(f.payload()).unwrap();
        let s_tag = VlanTag { tpid: f.ethertype(), tci: s.tci() };
        assert_eq!((s_tag.pcp(), s_tag.dei(), s_tag.vid()), (5, false, 100));
        assert_eq!(s.ethertype(), ethertype::VLAN);
        let c = VlanHeader::new_checked(s.payload()).unwrap();
        let c_tag = VlanTag { tpid: s.ethertype(), tci: c.tci() };
        assert_eq!((c_tag.pcp(), c_tag.dei(), c_tag.vid()), (0, true, 10));
        assert_eq!(c.ethertype(), ethertype::IPV4);
    }

    #[test]
    fn setters_round_trip() {
        let mut buf = [0u8; 18];
        let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
        f.set_destination([1, 2, 3, 4, 5, 6]);
        f.set_source([7, 8, 9, 10, 11, 12]);
        f.set_ethertype(ethertype::VLAN);
        let mut v = VlanHeader::new_checked(f.payload_mut()).unwrap();
        v.set_tci(0xe123);
        v.set_ethertype(ethertype::IPV6);
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x81, 0x00, 0xe1, 0x23, 0x86, 0xdd]);
    }

    #[test]
    fn short_buffers_are_truncated() {
        assert_eq!(
            EthernetFrame::new_checked(&QINQ_FRAME[..13]),
            Err(ParseError::Truncated { header: Header::Ethernet, offset: 0, needed: 14, available: 13 })
        );
        assert_eq!(
            VlanHeader::new_checked(&QINQ_FRAME[..3]),
            Err(ParseError::Truncated { header: Header::Vlan, offset: 0, needed: 4, available: 3 })
        );
    }
}
