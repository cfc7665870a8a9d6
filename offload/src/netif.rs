//! Xen netif (`io/netif.h`) transmit offload: the `NETTXF_csum_blank` /
//! `NETTXF_data_validated` request flags and the `XEN_NETIF_EXTRA_TYPE_GSO` extra, as plain
//! values so this crate does not depend on the ring crate.
//!
//! Xen's protocol says less than virtio's: `csum_blank` has no start or offset (the back end
//! finds the transport header itself, as Linux netback's `checksum_setup` does), there is no
//! `hdr_len`, no UDP segmentation and no ECN bit. So decoding needs the frame's parsed
//! [`Layout`], and encoding refuses what netif cannot say.

use crate::meta::{ChecksumState, GsoKind, MetaError, OffloadMeta};
use crate::parse::{Layout, L4};
use crate::{tcp, udp};

/// `NETTXF_csum_blank` (bit 0): the transport checksum is to be completed.
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `NETTXF_data_validated` (bit 1): the data was validated.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// A netif GSO extra's `(type, size)`.
pub type NetifGso = (u8, u16);

impl OffloadMeta {
    /// Decodes a netif transmit request's checksum flags and optional GSO extra for the frame
    /// whose headers are `layout`.
    ///
    /// Only the two checksum bits of `tx_flags` are read (`more_data` and `extra_info` are
    /// the ring's business). `csum_blank`, with or without `data_validated` (Linux netfront
    /// sends both), becomes a [`ChecksumState::Partial`] at the parsed transport header;
    /// `data_validated` alone becomes [`ChecksumState::Validated`]. `hdr_len` is 0: netif
    /// has none (validation uses the parsed headers).
    pub fn from_netif_tx(
        tx_flags: u16,
        gso: Option<NetifGso>,
        layout: &Layout,
    ) -> Result<OffloadMeta, MetaError> {
        let csum = if tx_flags & NETTXF_CSUM_BLANK != 0 {
            let offset = match layout.l4 {
                L4::Tcp => tcp::CHECKSUM_OFFSET,
                L4::Udp => udp::CHECKSUM_OFFSET,
                _ => return Err(MetaError::CsumBlankWithoutL4),
            };
            let start = u16::try_from(layout.l4_offset).map_err(|_| MetaError::CsumBlankWithoutL4)?;
            ChecksumState::Partial { start, offset: offset as u16 }
        } else if tx_flags & NETTXF_DATA_VALIDATED != 0 {
            ChecksumState::Validated
        } else {
            ChecksumState::None
        };
        let (gso_kind, gso_size) = match gso {
            None => (GsoKind::None, 0),
            Some((XEN_NETIF_GSO_TYPE_TCPV4, size)) => (GsoKind::TcpV4, size),
            Some((XEN_NETIF_GSO_TYPE_TCPV6, size)) => (GsoKind::TcpV6, size),
            Some((other, _)) => return Err(MetaError::UnknownNetifGsoType(other)),
        };
        Ok(OffloadMeta { gso_kind, ecn: false, gso_size, hdr_len: 0, csum, rsc: None })
    }

    /// Encodes as netif transmit flags (only the two checksum bits) and an optional GSO
    /// extra, the way Linux netfront does: a partial checksum is `csum_blank |
    /// data_validated`, a validated one `data_validated`.
    ///
    /// `hdr_len` and the partial checksum's start and offset are not carried (the back end
    /// re-derives them from the headers). Refused: UDP segmentation, UFO, ECN, RSC
    /// information, and a `gso_size` without a GSO kind.
    pub fn to_netif_tx(&self) -> Result<(u16, Option<NetifGso>), MetaError> {
        let flags = match self.csum {
            ChecksumState::None => 0,
            ChecksumState::Validated => NETTXF_DATA_VALIDATED,
            ChecksumState::Partial { .. } => NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED,
        };
        let refuse = |what| Err(MetaError::NotRepresentableInNetif { what });
        if self.ecn {
            return refuse("the GSO ECN bit");
        }
        if self.rsc.is_some() {
            return refuse("RSC information");
        }
        let gso = match self.gso_kind {
            GsoKind::None if self.gso_size != 0 => return refuse("a gso_size without a GSO type"),
            GsoKind::None => None,
            GsoKind::TcpV4 => Some((XEN_NETIF_GSO_TYPE_TCPV4, self.gso_size)),
            GsoKind::TcpV6 => Some((XEN_NETIF_GSO_TYPE_TCPV6, self.gso_size)),
            GsoKind::UdpL4 => return refuse("UDP segmentation"),
            GsoKind::Ufo => return refuse("UDP fragmentation offload"),
        };
        Ok((flags, gso))
    }
}
