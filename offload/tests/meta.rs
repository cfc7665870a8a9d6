//! Offload metadata: lossless round trips through `virtio_net_hdr` and netif, and
//! validation that rejects crafted bad metadata with the named error.

use etherparse::PacketBuilder;
use proptest::prelude::*;
use pvio_offload::meta::{RscInfo, GSO_MAX_SEGS, UDP_MAX_SEGMENTS};
use pvio_offload::netif::{NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED};
use pvio_offload::virtio::{flags, gso_type};
use pvio_offload::{
    checksum, parse, ChecksumState, GsoKind, MetaError, OffloadMeta, ParseError, VirtioNetHdr, L3, L4,
};
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, IntoBytes};

fn gso_kind() -> impl Strategy<Value = GsoKind> {
    prop_oneof![
        Just(GsoKind::None),
        Just(GsoKind::TcpV4),
        Just(GsoKind::TcpV6),
        Just(GsoKind::UdpL4),
        Just(GsoKind::Ufo)
    ]
}

fn csum_state() -> impl Strategy<Value = ChecksumState> {
    prop_oneof![
        Just(ChecksumState::None),
        Just(ChecksumState::Validated),
        (any::<u16>(), any::<u16>()).prop_map(|(start, offset)| ChecksumState::Partial { start, offset }),
    ]
}

/// Every `OffloadMeta` the virtio header can express (ECN needs a kind; RSC excludes a
/// partial checksum).
fn virtio_meta() -> impl Strategy<Value = OffloadMeta> {
    (
        gso_kind(),
        any::<bool>(),
        any::<u16>(),
        any::<u16>(),
        csum_state(),
        proptest::option::of(any::<(u16, u16)>()),
    )
        .prop_map(|(gso_kind, ecn, gso_size, hdr_len, csum, rsc)| OffloadMeta {
            gso_kind,
            ecn: ecn && gso_kind != GsoKind::None,
            gso_size,
            hdr_len,
            csum,
            rsc: rsc
                .filter(|_| !matches!(csum, ChecksumState::Partial { .. }))
                .map(|(segments, dup_acks)| RscInfo { segments, dup_acks }),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn meta_round_trips_through_virtio(meta in virtio_meta(), nb in any::<u16>()) {
        let hdr = meta.to_virtio(nb);
        let bytes = hdr.as_bytes();
        prop_assert_eq!(bytes.len(), 12);
        let back = VirtioNetHdr::read_from_bytes(bytes).unwrap();
        prop_assert_eq!(back.num_buffers.get(), nb);
        prop_assert_eq!(OffloadMeta::from_virtio(&back), Ok(meta));
    }

    /// Any 12 bytes: decoding either fails with a named error or gives metadata that encodes
    /// back to the same header with its unused checksum fields zeroed.
    #[test]
    fn virtio_bytes_round_trip_when_they_decode(bytes in any::<[u8; 12]>()) {
        let hdr = VirtioNetHdr::read_from_bytes(&bytes[..]).unwrap();
        if let Ok(meta) = OffloadMeta::from_virtio(&hdr) {
            let mut canonical = hdr;
            if hdr.flags & (flags::NEEDS_CSUM | flags::RSC_INFO) == 0 {
                canonical.csum_start = U16::ZERO;
                canonical.csum_offset = U16::ZERO;
            }
            prop_assert_eq!(meta.to_virtio(hdr.num_buffers.get()), canonical);
        }
    }

    /// netif: (flags, gso) -> meta -> (flags, gso) is the identity for what netfront sends,
    /// and meta -> netif -> meta for what netif can carry.
    #[test]
    fn netif_round_trips(csum in 0u8..3, gso in proptest::option::of((1u8..=2, any::<u16>())), v6 in any::<bool>()) {
        let frame = if v6 { tcp6_frame(100) } else { tcp4_frame(100, &[]) };
        let layout = parse(&frame).unwrap();
        let tx = [0, NETTXF_DATA_VALIDATED, NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED][usize::from(csum)];
        let meta = OffloadMeta::from_netif_tx(tx, gso, &layout).unwrap();
        prop_assert_eq!(meta.to_netif_tx(), Ok((tx, gso)));
        prop_assert_eq!(OffloadMeta::from_netif_tx(tx, gso, &layout), Ok(meta));
        if csum == 2 {
            prop_assert_eq!(meta.csum, ChecksumState::Partial { start: layout.l4_offset as u16, offset: 16 });
        }
    }

    /// Validation never panics and a valid result is always in bounds.
    #[test]
    fn validate_is_total(meta in virtio_meta(), bytes in proptest::collection::vec(any::<u8>(), 0..300), payload in 0usize..3000) {
        let mut frames = [bytes, tcp4_frame(payload, &[]), tcp6_frame(payload), udp4_frame(payload)];
        for f in frames.iter_mut() {
            if let Ok(v) = meta.validate(f) {
                prop_assert!(v.hdr_len() <= f.len());
                if let ChecksumState::Partial { start, offset } = v.csum() {
                    prop_assert!(usize::from(start) + usize::from(offset) + 2 <= f.len());
                    checksum::complete_partial(f, start.into(), offset.into()).unwrap();
                }
                if let Some(g) = v.gso() {
                    prop_assert_eq!(g.layout().end, f.len());
                    prop_assert!(g.segments() >= 2);
                    prop_assert!(g.segments() * usize::from(g.size()) >= g.layout().payload_len());
                }
            }
        }
    }
}

fn tcp4_frame(payload: usize, vlans: &[u16]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let b = match vlans {
        [] => eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64),
        [a] => eth.single_vlan((*a).try_into().unwrap()).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64),
        _ => unimplemented!(),
    };
    let mut out = Vec::new();
    b.tcp(1000, 2000, 1, 65535).write(&mut out, &vec![0x42; payload]).unwrap();
    out
}

fn tcp6_frame(payload: usize) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(1000, 2000, 1, 65535)
        .write(&mut out, &vec![0x42; payload])
        .unwrap();
    out
}

fn udp4_frame(payload: usize) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1000, 2000)
        .write(&mut out, &vec![0x42; payload])
        .unwrap();
    out
}

/// A well-formed TSO request for `frame` (Ethernet + IPv4/IPv6 + TCP).
fn tso(kind: GsoKind, frame: &[u8], mss: u16) -> OffloadMeta {
    let l = parse(frame).unwrap();
    let offset = if l.l4 == L4::Tcp { 16 } else { 6 };
    OffloadMeta {
        gso_kind: kind,
        ecn: false,
        gso_size: mss,
        hdr_len: l.header_len() as u16,
        csum: ChecksumState::Partial { start: l.l4_offset as u16, offset },
        rsc: None,
    }
}

#[test]
fn valid_requests_pass_with_the_right_segment_count() {
    let f = tcp4_frame(10_000, &[7]);
    let v = tso(GsoKind::TcpV4, &f, 1448).validate(&f).unwrap();
    let g = v.gso().unwrap();
    assert_eq!((g.kind(), g.size(), g.segments()), (GsoKind::TcpV4, 1448, 7));
    assert_eq!(g.layout().header_len(), 14 + 4 + 20 + 20);
    let f6 = tcp6_frame(3000);
    assert_eq!(tso(GsoKind::TcpV6, &f6, 1000).validate(&f6).unwrap().gso().unwrap().segments(), 3);
    let fu = udp4_frame(2000);
    assert_eq!(tso(GsoKind::UdpL4, &fu, 500).validate(&fu).unwrap().gso().unwrap().segments(), 4);
    // A payload that fits one segment is not GSO (Linux clears it too).
    let small = tcp4_frame(1000, &[]);
    let v = tso(GsoKind::TcpV4, &small, 1448).validate(&small).unwrap();
    assert!(v.gso().is_none());
    // No offload at all needs no parse: any bytes will do.
    assert!(OffloadMeta::NONE.validate(&[1, 2, 3]).unwrap().gso().is_none());
}

#[test]
fn validation_rejects_crafted_metadata_by_name() {
    let f = tcp4_frame(5000, &[]);
    let good = tso(GsoKind::TcpV4, &f, 1448);
    let check = |m: OffloadMeta, frame: &[u8], want: MetaError| {
        assert_eq!(m.validate(frame), Err(want), "{m:?}");
    };
    check(OffloadMeta { gso_size: 0, ..good }, &f, MetaError::GsoSizeZero);
    check(OffloadMeta { gso_size: 0xffff, ..good }, &f, MetaError::GsoSizeByFrags);
    check(OffloadMeta { gso_kind: GsoKind::Ufo, ..good }, &f, MetaError::UfoUnsupported);
    check(OffloadMeta { csum: ChecksumState::None, ..good }, &f, MetaError::GsoWithoutPartialChecksum);
    check(OffloadMeta { csum: ChecksumState::Validated, ..good }, &f, MetaError::GsoWithoutPartialChecksum);
    check(
        OffloadMeta { csum: ChecksumState::Partial { start: 34, offset: 0xffff }, ..good },
        &f,
        MetaError::ChecksumOutOfFrame { start: 34, offset: 0xffff, len: f.len() },
    );
    check(
        OffloadMeta { csum: ChecksumState::Partial { start: 30, offset: 16 }, ..good },
        &f,
        MetaError::ChecksumStartNotL4 { start: 30, l4_offset: 34 },
    );
    check(
        OffloadMeta { csum: ChecksumState::Partial { start: 34, offset: 6 }, ..good },
        &f,
        MetaError::ChecksumOffsetWrong { offset: 6, expected: 16 },
    );
    check(
        OffloadMeta { gso_kind: GsoKind::TcpV6, ..good },
        &f,
        MetaError::GsoKindMismatch { kind: GsoKind::TcpV6, l3: L3::Ipv4, l4: L4::Tcp },
    );
    check(
        OffloadMeta { gso_kind: GsoKind::UdpL4, ..good },
        &f,
        MetaError::GsoKindMismatch { kind: GsoKind::UdpL4, l3: L3::Ipv4, l4: L4::Tcp },
    );
    let fu = udp4_frame(2000);
    check(OffloadMeta { ecn: true, ..tso(GsoKind::UdpL4, &fu, 500) }, &fu, MetaError::EcnWithoutTcp);
    check(
        tso(GsoKind::UdpL4, &fu, 10),
        &fu,
        MetaError::TooManySegments { segments: 200, max: UDP_MAX_SEGMENTS },
    );
    let _ = GSO_MAX_SEGS;
    // hdr_len beyond the frame.
    let mut m = good;
    m.hdr_len = f.len() as u16 + 1;
    check(m, &f, MetaError::HdrLenBeyondFrame { hdr_len: f.len() + 1, len: f.len() });
    // A partial checksum without GSO: only bounds matter.
    let p = OffloadMeta { csum: ChecksumState::Partial { start: 3, offset: 1 }, ..OffloadMeta::NONE };
    assert!(p.validate(&[0; 6]).is_ok());
    check(p, &[0; 5], MetaError::ChecksumOutOfFrame { start: 3, offset: 1, len: 5 });
    // Trailing bytes after the IP packet.
    let mut padded = f.clone();
    padded.extend_from_slice(&[0; 4]);
    check(good, &padded, MetaError::GsoLengthMismatch { end: f.len(), frame_len: f.len() + 4 });
    // A frame that does not parse, and a fragment.
    check(
        good,
        &f[..60],
        MetaError::Parse(ParseError::Ipv4TotalLenBeyondFrame { offset: 14, total_len: 5040, available: 46 }),
    );
    let mut frag = f.clone();
    frag[20] = 0x20; // more fragments
    check(good, &frag, MetaError::GsoOnFragment);
}

#[test]
fn decode_errors_are_named() {
    let hdr = |flags, gso_type| VirtioNetHdr { flags, gso_type, ..Default::default() };
    assert_eq!(OffloadMeta::from_virtio(&hdr(0x10, 0)), Err(MetaError::UnknownFlags(0x10)));
    assert_eq!(
        OffloadMeta::from_virtio(&hdr(flags::NEEDS_CSUM | flags::DATA_VALID, 0)),
        Err(MetaError::ConflictingChecksumFlags)
    );
    assert_eq!(OffloadMeta::from_virtio(&hdr(0, gso_type::ECN)), Err(MetaError::UnknownGsoType(0x80)));
    let f = udp4_frame(10);
    let l = parse(&f).unwrap();
    assert_eq!(OffloadMeta::from_netif_tx(0, Some((3, 1000)), &l), Err(MetaError::UnknownNetifGsoType(3)));
    let arp = [0xffu8; 12].iter().copied().chain([0x08, 0x06, 0, 1]).collect::<Vec<_>>();
    let la = parse(&arp).unwrap();
    assert_eq!(OffloadMeta::from_netif_tx(NETTXF_CSUM_BLANK, None, &la), Err(MetaError::CsumBlankWithoutL4));
    let udp = OffloadMeta { gso_kind: GsoKind::UdpL4, gso_size: 100, ..OffloadMeta::NONE };
    assert_eq!(udp.to_netif_tx(), Err(MetaError::NotRepresentableInNetif { what: "UDP segmentation" }));
    let ecn = OffloadMeta { gso_kind: GsoKind::TcpV4, ecn: true, gso_size: 100, ..OffloadMeta::NONE };
    assert!(matches!(ecn.to_netif_tx(), Err(MetaError::NotRepresentableInNetif { .. })));
}
