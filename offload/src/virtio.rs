//! `struct virtio_net_hdr` (virtio 1.x §5.1.6, the 12-byte form with `num_buffers`), always
//! little-endian, and its conversion to and from [`OffloadMeta`].

use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::meta::{ChecksumState, GsoKind, MetaError, OffloadMeta, RscInfo};

/// Values of [`VirtioNetHdr::flags`].
pub mod flags {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: complete the checksum at `csum_start + csum_offset`.
    pub const NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
    pub const DATA_VALID: u8 = 2;
    /// `VIRTIO_NET_HDR_F_RSC_INFO`: `csum_start`/`csum_offset` carry coalescing counts.
    pub const RSC_INFO: u8 = 4;
}

/// Values of [`VirtioNetHdr::gso_type`].
pub mod gso_type {
    /// `VIRTIO_NET_HDR_GSO_NONE`.
    pub const NONE: u8 = 0;
    /// `VIRTIO_NET_HDR_GSO_TCPV4`.
    pub const TCPV4: u8 = 1;
    /// `VIRTIO_NET_HDR_GSO_UDP` (legacy UFO).
    pub const UDP: u8 = 3;
    /// `VIRTIO_NET_HDR_GSO_TCPV6`.
    pub const TCPV6: u8 = 4;
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`.
    pub const UDP_L4: u8 = 5;
    /// `VIRTIO_NET_HDR_GSO_ECN`, or-ed into a TCP type.
    pub const ECN: u8 = 0x80;
}

/// `struct virtio_net_hdr_v1`: the header in front of every frame on a virtio-net queue
/// (and on a TAP device opened with `IFF_VNET_HDR` and a 12-byte header size).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct VirtioNetHdr {
    /// [`flags`] bits.
    pub flags: u8,
    /// A [`gso_type`] value.
    pub gso_type: u8,
    /// Header length hint.
    pub hdr_len: U16,
    /// Payload bytes per segment.
    pub gso_size: U16,
    /// Where checksumming starts.
    pub csum_start: U16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: U16,
    /// Buffers this frame spans (mergeable receive buffers).
    pub num_buffers: U16,
}

/// Size of [`VirtioNetHdr`] on the wire.
pub const VIRTIO_NET_HDR_LEN: usize = 12;

impl OffloadMeta {
    /// Decodes a `virtio_net_hdr` (its `num_buffers` is a queue matter and is not part of
    /// the metadata).
    ///
    /// Strict where a wrong guess could be harmful: unknown flag bits, `NEEDS_CSUM` with
    /// `DATA_VALID` or with `RSC_INFO`, and unknown GSO types are errors. Like Linux, it
    /// ignores `csum_start`/`csum_offset` when neither `NEEDS_CSUM` nor `RSC_INFO` gives them
    /// a meaning, so [`OffloadMeta::to_virtio`] reproduces every header whose unused fields
    /// are zero, and every `OffloadMeta` survives the trip there and back unchanged.
    pub fn from_virtio(hdr: &VirtioNetHdr) -> Result<OffloadMeta, MetaError> {
        let f = hdr.flags;
        if f & !(flags::NEEDS_CSUM | flags::DATA_VALID | flags::RSC_INFO) != 0 {
            return Err(MetaError::UnknownFlags(f));
        }
        let needs = f & flags::NEEDS_CSUM != 0;
        if needs && f & flags::DATA_VALID != 0 {
            return Err(MetaError::ConflictingChecksumFlags);
        }
        if needs && f & flags::RSC_INFO != 0 {
            return Err(MetaError::RscWithPartialChecksum);
        }
        let (start, offset) = (hdr.csum_start.get(), hdr.csum_offset.get());
        let csum = if needs {
            ChecksumState::Partial { start, offset }
        } else if f & flags::DATA_VALID != 0 {
            ChecksumState::Validated
        } else {
            ChecksumState::None
        };
        let rsc = (f & flags::RSC_INFO != 0).then_some(RscInfo { segments: start, dup_acks: offset });
        let ecn = hdr.gso_type & gso_type::ECN != 0;
        let gso_kind = match hdr.gso_type & !gso_type::ECN {
            gso_type::NONE if !ecn => GsoKind::None,
            gso_type::TCPV4 => GsoKind::TcpV4,
            gso_type::TCPV6 => GsoKind::TcpV6,
            gso_type::UDP_L4 => GsoKind::UdpL4,
            gso_type::UDP => GsoKind::Ufo,
            _ => return Err(MetaError::UnknownGsoType(hdr.gso_type)),
        };
        Ok(OffloadMeta { gso_kind, ecn, gso_size: hdr.gso_size.get(), hdr_len: hdr.hdr_len.get(), csum, rsc })
    }

    /// Encodes as a `virtio_net_hdr` with the given `num_buffers`.
    ///
    /// Every `OffloadMeta` encodes; [`OffloadMeta::from_virtio`] gives it back unchanged
    /// except in one case the wire cannot express: a [`ChecksumState::Partial`] together with
    /// `rsc` (the two share fields), which encodes the partial checksum and drops `rsc`.
    pub fn to_virtio(&self, num_buffers: u16) -> VirtioNetHdr {
        let (mut f, mut start, mut offset) = (0, 0, 0);
        match self.csum {
            ChecksumState::None => {}
            ChecksumState::Validated => f |= flags::DATA_VALID,
            ChecksumState::Partial { start: s, offset: o } => {
                f |= flags::NEEDS_CSUM;
                (start, offset) = (s, o);
            }
        }
        if let (Some(rsc), false) = (self.rsc, f & flags::NEEDS_CSUM != 0) {
            f |= flags::RSC_INFO;
            (start, offset) = (rsc.segments, rsc.dup_acks);
        }
        let kind = match self.gso_kind {
            GsoKind::None => gso_type::NONE,
            GsoKind::TcpV4 => gso_type::TCPV4,
            GsoKind::TcpV6 => gso_type::TCPV6,
            GsoKind::UdpL4 => gso_type::UDP_L4,
            GsoKind::Ufo => gso_type::UDP,
        };
        // ECN without a kind cannot be encoded (0x80 alone is invalid); it is dropped.
        let ecn = if self.ecn && self.gso_kind != GsoKind::None { gso_type::ECN } else { 0 };
        VirtioNetHdr {
            flags: f,
            gso_type: kind | ecn,
            hdr_len: U16::new(self.hdr_len),
            gso_size: U16::new(self.gso_size),
            csum_start: U16::new(start),
            csum_offset: U16::new(offset),
            num_buffers: U16::new(num_buffers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TSO header as Linux's virtio-net driver writes it: NEEDS_CSUM, TCPV4|ECN,
    /// hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16, num_buffers 1.
    const HDR_BYTES: [u8; 12] = [0x01, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 1, 0];

    #[test]
    fn layout_is_twelve_little_endian_bytes() {
        assert_eq!(core::mem::size_of::<VirtioNetHdr>(), VIRTIO_NET_HDR_LEN);
        assert_eq!(core::mem::align_of::<VirtioNetHdr>(), 1);
        let hdr = VirtioNetHdr::read_from_bytes(&HDR_BYTES[..]).unwrap();
        assert_eq!((hdr.flags, hdr.gso_type), (flags::NEEDS_CSUM, gso_type::TCPV4 | gso_type::ECN));
        assert_eq!((hdr.hdr_len.get(), hdr.gso_size.get()), (66, 1448));
        assert_eq!((hdr.csum_start.get(), hdr.csum_offset.get(), hdr.num_buffers.get()), (34, 16, 1));
        assert_eq!(hdr.as_bytes(), &HDR_BYTES);
    }

    #[test]
    fn decodes_and_encodes_the_fixture() {
        let hdr = VirtioNetHdr::read_from_bytes(&HDR_BYTES[..]).unwrap();
        let meta = OffloadMeta::from_virtio(&hdr).unwrap();
        assert_eq!(
            meta,
            OffloadMeta {
                gso_kind: GsoKind::TcpV4,
                ecn: true,
                gso_size: 1448,
                hdr_len: 66,
                csum: ChecksumState::Partial { start: 34, offset: 16 },
                rsc: None,
            }
        );
        assert_eq!(meta.to_virtio(1).as_bytes(), &HDR_BYTES);
    }

    #[test]
    fn decode_rejects_what_it_cannot_represent() {
        let hdr = |flags, gso_type| VirtioNetHdr { flags, gso_type, ..Default::default() };
        assert_eq!(OffloadMeta::from_virtio(&hdr(8, 0)), Err(MetaError::UnknownFlags(8)));
        assert_eq!(OffloadMeta::from_virtio(&hdr(3, 0)), Err(MetaError::ConflictingChecksumFlags));
        assert_eq!(OffloadMeta::from_virtio(&hdr(5, 0)), Err(MetaError::RscWithPartialChecksum));
        for bad in [2, 6, 0x7f, 0x80, 0x82, 0xff] {
            assert_eq!(OffloadMeta::from_virtio(&hdr(0, bad)), Err(MetaError::UnknownGsoType(bad)));
        }
        let rsc = VirtioNetHdr {
            flags: 6,
            gso_type: 1,
            csum_start: U16::new(5),
            csum_offset: U16::new(2),
            ..hdr(0, 0)
        };
        let m = OffloadMeta::from_virtio(&rsc).unwrap();
        assert_eq!((m.csum, m.rsc), (ChecksumState::Validated, Some(RscInfo { segments: 5, dup_acks: 2 })));
        assert_eq!(m.to_virtio(0), rsc);
    }
}
