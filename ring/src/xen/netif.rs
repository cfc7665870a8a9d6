//! Xen's paravirtual network interface (`xen/io/netif.h`): the entries of the transmit and
//! receive rings, the extra-info segments that carry GSO and multicast metadata, and their
//! flags.
//!
//! All structures are little-endian and byte-compatible with the C header on every
//! architecture Xen supports; sizes, alignments and offsets are tested against the header
//! itself in `tests/c_interop.rs` (`layout_matches_xen_headers`).
//!
//! Extra-info segments travel *in request slots* of the transmit ring (and response slots of
//! the receive ring): the C code casts the slot. Here the conversion is explicit and happens
//! on a local copy: [`NetifExtraInfo::from_tx_slot`] / [`NetifTxRequest::from_extra`] and
//! their rx counterparts.

use zerocopy::little_endian::{I16, U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::xen::sring::{entry_size, ring_size};

/// A grant reference (`grant_ref_t`).
pub type GrantRef = u32;

/// `struct netif_tx_request`: one fragment of a packet the front end transmits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(4))]
pub struct NetifTxRequest {
    /// Grant of the page holding the fragment.
    pub gref: U32,
    /// Offset of the fragment within the page.
    pub offset: U16,
    /// `NETTXF_*` flags.
    pub flags: U16,
    /// Echoed in the response.
    pub id: U16,
    /// For the first fragment: the size of the whole packet; otherwise this fragment's size.
    pub size: U16,
}

/// `struct netif_tx_response`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(2))]
pub struct NetifTxResponse {
    /// The `id` of the request answered.
    pub id: U16,
    /// `NETIF_RSP_*` status.
    pub status: I16,
}

/// `struct netif_rx_request`: a buffer the front end posts for received packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(4))]
pub struct NetifRxRequest {
    /// Echoed in the response.
    pub id: U16,
    /// Padding (`pad`).
    pub pad: U16,
    /// Grant of the page to receive into.
    pub gref: U32,
}

/// `struct netif_rx_response`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(2))]
pub struct NetifRxResponse {
    /// The `id` of the request whose buffer was filled.
    pub id: U16,
    /// Offset of the data within the page.
    pub offset: U16,
    /// `NETRXF_*` flags.
    pub flags: U16,
    /// Bytes received (> 0) or a negative `NETIF_RSP_*` status.
    pub status: I16,
}

/// `struct netif_extra_info`: 8 bytes of metadata in a ring slot of its own, following a
/// request or response flagged with `NETTXF_extra_info` / `NETRXF_extra_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(2))]
pub struct NetifExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub ty: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The type-specific union `u`: see [`gso`](Self::gso), [`mcast_addr`](Self::mcast_addr).
    pub u: [u8; 6],
}

/// The GSO member of the extra-info union (`u.gso`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(2))]
pub struct NetifGsoInfo {
    /// Maximum payload size of each segment (the MSS).
    pub size: U16,
    /// `XEN_NETIF_GSO_TYPE_*`.
    pub ty: u8,
    /// Must be zero.
    pub pad: u8,
    /// `XEN_NETIF_GSO_FEAT_*` (none defined); must be zero.
    pub features: U16,
}

/// The transmit ring's request/response pair.
pub type TxRingTypes = (NetifTxRequest, NetifTxResponse);
/// The receive ring's request/response pair.
pub type RxRingTypes = (NetifRxRequest, NetifRxResponse);

/// Entries in a one-page transmit ring (`NET_TX_RING_SIZE` for 4 KiB pages): 256.
pub const NET_TX_RING_SIZE: u32 = ring_size(4096, entry_size::<NetifTxRequest, NetifTxResponse>());
/// Entries in a one-page receive ring (`NET_RX_RING_SIZE` for 4 KiB pages): 256.
pub const NET_RX_RING_SIZE: u32 = ring_size(4096, entry_size::<NetifRxRequest, NetifRxResponse>());

/// `NETTXF_*`: transmit request flags.
pub mod nettxf {
    /// Protocol checksum field is blank: the back end (or NIC) must fill it in.
    pub const CSUM_BLANK: u16 = 1 << 0;
    /// Protocol checksum already validated (e.g. the packet came from another guest).
    pub const DATA_VALIDATED: u16 = 1 << 1;
    /// More fragments of this packet follow in the next request.
    pub const MORE_DATA: u16 = 1 << 2;
    /// An extra-info segment follows in the next slot.
    pub const EXTRA_INFO: u16 = 1 << 3;
    /// Every defined flag.
    pub const ALL: u16 = CSUM_BLANK | DATA_VALIDATED | MORE_DATA | EXTRA_INFO;
}

/// `NETRXF_*`: receive response flags.
pub mod netrxf {
    /// Protocol checksum validated.
    pub const DATA_VALIDATED: u16 = 1 << 0;
    /// Protocol checksum field is blank (the packet was sent with a partial checksum).
    pub const CSUM_BLANK: u16 = 1 << 1;
    /// More fragments of this packet follow in the next response.
    pub const MORE_DATA: u16 = 1 << 2;
    /// An extra-info segment follows in the next slot.
    pub const EXTRA_INFO: u16 = 1 << 3;
    /// GSO prefix descriptor (old protocol): the response carries GSO info, not data.
    pub const GSO_PREFIX: u16 = 1 << 4;
    /// Every defined flag.
    pub const ALL: u16 = DATA_VALIDATED | CSUM_BLANK | MORE_DATA | EXTRA_INFO | GSO_PREFIX;
}

/// `NETIF_RSP_*`: response status codes.
pub mod netif_rsp {
    /// The packet was dropped (no buffer, or refused).
    pub const DROPPED: i16 = -2;
    /// The request was malformed or could not be carried out.
    pub const ERROR: i16 = -1;
    /// Success.
    pub const OKAY: i16 = 0;
    /// Response to an extra-info slot (carries no status).
    pub const NULL: i16 = 1;
}

/// `XEN_NETIF_EXTRA_TYPE_*`.
pub mod extra_type {
    /// Never used.
    pub const NONE: u8 = 0;
    /// `u.gso` is valid.
    pub const GSO: u8 = 1;
    /// `u.mcast` is valid: add a multicast address.
    pub const MCAST_ADD: u8 = 2;
    /// `u.mcast` is valid: remove a multicast address.
    pub const MCAST_DEL: u8 = 3;
    /// `u.hash` is valid.
    pub const HASH: u8 = 4;
    /// One past the last defined type.
    pub const MAX: u8 = 5;
}

/// `XEN_NETIF_EXTRA_FLAG_*`.
pub mod extra_flag {
    /// Another extra-info segment follows.
    pub const MORE: u8 = 1 << 0;
}

/// `XEN_NETIF_GSO_TYPE_*`.
pub mod gso_type {
    /// No segmentation.
    pub const NONE: u8 = 0;
    /// TCP over IPv4.
    pub const TCPV4: u8 = 1;
    /// TCP over IPv6.
    pub const TCPV6: u8 = 2;
}

/// A decoded extra-info segment, produced from a local copy of a ring slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// Segmentation offload: the packet is a super-frame to be cut into `size`-byte segments.
    Gso {
        /// `XEN_NETIF_GSO_TYPE_*`.
        ty: u8,
        /// Segment payload size (MSS).
        size: u16,
    },
    /// Add a multicast MAC address to the filter.
    McastAdd([u8; 6]),
    /// Remove a multicast MAC address from the filter.
    McastDel([u8; 6]),
    /// Receive-side hash (`u.hash`: type, algorithm, 4-byte value), passed through as bytes.
    Hash([u8; 6]),
}

/// An extra-info segment that the peer encoded wrongly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtraError {
    /// `type` is `NONE` or beyond `XEN_NETIF_EXTRA_TYPE_MAX`.
    #[error("extra-info type {0} is not a defined XEN_NETIF_EXTRA_TYPE_*")]
    UnknownType(u8),
    /// Flags other than `XEN_NETIF_EXTRA_FLAG_MORE` are set.
    #[error("extra-info flags {0:#x} include undefined bits")]
    UnknownFlags(u8),
}

impl NetifExtraInfo {
    /// Reinterprets a local copy of a transmit-ring request slot as extra info (the first 8
    /// of its 12 bytes, as the C union overlays them).
    pub fn from_tx_slot(slot: &NetifTxRequest) -> Self {
        Self::read_from_prefix(slot.as_bytes()).map(|(v, _)| v).unwrap_or_default()
    }

    /// Reinterprets a local copy of a receive-ring response slot as extra info.
    pub fn from_rx_slot(slot: &NetifRxResponse) -> Self {
        Self::read_from_prefix(slot.as_bytes()).map(|(v, _)| v).unwrap_or_default()
    }

    /// Builds a GSO extra-info segment.
    pub fn gso(ty: u8, size: u16) -> Self {
        let gso = NetifGsoInfo { size: size.into(), ty, pad: 0, features: 0.into() };
        let mut u = [0u8; 6];
        u.copy_from_slice(gso.as_bytes());
        NetifExtraInfo { ty: extra_type::GSO, flags: 0, u }
    }

    /// The `u.gso` member, whatever `ty` says.
    pub fn gso_info(&self) -> NetifGsoInfo {
        NetifGsoInfo::read_from_bytes(&self.u).unwrap_or_default()
    }

    /// The `u.mcast.addr` member, whatever `ty` says.
    pub fn mcast_addr(&self) -> [u8; 6] {
        self.u
    }

    /// Whether another extra-info segment follows (`XEN_NETIF_EXTRA_FLAG_MORE`).
    pub fn has_more(&self) -> bool {
        self.flags & extra_flag::MORE != 0
    }

    /// Decodes the segment, rejecting undefined types and flags.
    pub fn decode(&self) -> Result<Extra, ExtraError> {
        if self.flags & !extra_flag::MORE != 0 {
            return Err(ExtraError::UnknownFlags(self.flags));
        }
        match self.ty {
            extra_type::GSO => {
                let g = self.gso_info();
                Ok(Extra::Gso { ty: g.ty, size: g.size.get() })
            }
            extra_type::MCAST_ADD => Ok(Extra::McastAdd(self.u)),
            extra_type::MCAST_DEL => Ok(Extra::McastDel(self.u)),
            extra_type::HASH => Ok(Extra::Hash(self.u)),
            other => Err(ExtraError::UnknownType(other)),
        }
    }
}

impl NetifTxRequest {
    /// Packs an extra-info segment into a transmit-ring slot (trailing bytes zero).
    pub fn from_extra(extra: &NetifExtraInfo) -> Self {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(extra.as_bytes());
        Self::read_from_bytes(&bytes).unwrap_or_default()
    }
}

impl NetifRxResponse {
    /// Packs an extra-info segment into a receive-ring slot.
    pub fn from_extra(extra: &NetifExtraInfo) -> Self {
        Self::read_from_bytes(extra.as_bytes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn sizes_and_offsets_match_netif_h() {
        assert_eq!((size_of::<NetifTxRequest>(), align_of::<NetifTxRequest>()), (12, 4));
        assert_eq!(offset_of!(NetifTxRequest, offset), 4);
        assert_eq!(offset_of!(NetifTxRequest, flags), 6);
        assert_eq!(offset_of!(NetifTxRequest, id), 8);
        assert_eq!(offset_of!(NetifTxRequest, size), 10);
        assert_eq!((size_of::<NetifTxResponse>(), align_of::<NetifTxResponse>()), (4, 2));
        assert_eq!((size_of::<NetifRxRequest>(), align_of::<NetifRxRequest>()), (8, 4));
        assert_eq!(offset_of!(NetifRxRequest, gref), 4);
        assert_eq!((size_of::<NetifRxResponse>(), align_of::<NetifRxResponse>()), (8, 2));
        assert_eq!(offset_of!(NetifRxResponse, offset), 2);
        assert_eq!(offset_of!(NetifRxResponse, flags), 4);
        assert_eq!(offset_of!(NetifRxResponse, status), 6);
        assert_eq!((size_of::<NetifExtraInfo>(), align_of::<NetifExtraInfo>()), (8, 2));
        assert_eq!(offset_of!(NetifExtraInfo, u), 2);
        assert_eq!(size_of::<NetifGsoInfo>(), 6);
        assert_eq!(offset_of!(NetifGsoInfo, features), 4);
        assert_eq!(NET_TX_RING_SIZE, 256);
        assert_eq!(NET_RX_RING_SIZE, 256);
    }

    #[test]
    fn extra_info_round_trips_through_slots() {
        let gso = NetifExtraInfo::gso(gso_type::TCPV4, 1448);
        let slot = NetifTxRequest::from_extra(&gso);
        let back = NetifExtraInfo::from_tx_slot(&slot);
        assert_eq!(back, gso);
        assert_eq!(back.decode(), Ok(Extra::Gso { ty: gso_type::TCPV4, size: 1448 }));
        // Little-endian on the wire: type, flags, size lo, size hi, gso type, pad, features.
        assert_eq!(&slot.as_bytes()[..8], &[1, 0, 0xa8, 0x05, 1, 0, 0, 0]);
        let rx = NetifRxResponse::from_extra(&gso);
        assert_eq!(NetifExtraInfo::from_rx_slot(&rx), gso);
    }

    #[test]
    fn extra_info_rejects_garbage() {
        let mut e = NetifExtraInfo::gso(gso_type::TCPV6, 9000);
        e.flags = 0x80;
        assert_eq!(e.decode(), Err(ExtraError::UnknownFlags(0x80)));
        e.flags = extra_flag::MORE;
        assert!(e.has_more());
        e.ty = 0;
        assert_eq!(e.decode(), Err(ExtraError::UnknownType(0)));
        e.ty = extra_type::MAX;
        assert_eq!(e.decode(), Err(ExtraError::UnknownType(5)));
    }
}
