//! GSO invariants on random super-frames (TCPv4/v6, UDP over either, VLAN/QinQ, IPv4
//! options, IPv6 extension headers, TCP options, any flags, sequence numbers and IDs): every
//! produced frame parses and its checksums verify, payloads concatenate to the input's,
//! headers are consistent, the count is `ceil(payload / gso_size)`, partial mode completes to
//! full mode, and the contiguous writer agrees with the zero-copy segments. Then hostile
//! input: mutated frames and arbitrary metadata never make segmentation panic or step out of
//! bounds.

mod common;

use common::{Spec, CWR, DEST_OPTS, FIN, FRAGMENT, HOP_BY_HOP, PSH, ROUTING, TCP_TIMESTAMPS};
use proptest::prelude::*;
use pvio_offload::checksum;
use pvio_offload::gso::{ChecksumMode, GsoError, Segmenter};
use pvio_offload::{ipv4, ipv6, parse, tcp, udp, ChecksumState, GsoKind, MetaError, OffloadMeta, L3, L4};

fn spec() -> impl Strategy<Value = Spec> {
    let vlans = prop_oneof![
        Just(vec![]),
        Just(vec![(0x8100, 0x0123)]),
        Just(vec![(0x88a8, 0x0fff), (0x8100, 0x0001)]),
        Just(vec![(0x9100, 0x0002), (0x8100, 0xe003)]),
    ];
    let ext = prop_oneof![
        Just(vec![]),
        Just(vec![HOP_BY_HOP]),
        Just(vec![DEST_OPTS]),
        Just(vec![HOP_BY_HOP, ROUTING, DEST_OPTS]),
        Just(vec![ROUTING, DEST_OPTS, DEST_OPTS]),
    ];
    let tcp_options = prop_oneof![
        Just(vec![]),
        Just(TCP_TIMESTAMPS.to_vec()),
        (1usize..=10).prop_map(|words| vec![1u8; words * 4]), // NOPs, up to 40 bytes
    ];
    let ip_options = (0usize..=10).prop_map(|words| vec![1u8; words * 4]);
    (
        (any::<bool>(), any::<bool>(), vlans, ext, tcp_options, ip_options),
        (any::<u8>(), any::<u32>(), any::<u16>(), any::<bool>(), any::<u8>(), any::<bool>()),
        (1u16..=2000, 1usize..=130, any::<u32>()),
    )
        .prop_map(
            |(
                (v6, udp, vlans, ext_headers, tcp_options, ip_options),
                (tcp_flags, seq, ident, dont_frag, tos, ecn),
                (gso_size, segs, seed),
            )| {
                let mut s = Spec::tcp4(1000 + (seed % 1000) as u16, 0, gso_size);
                s.v6 = v6;
                s.udp = udp;
                s.vlans = vlans;
                s.ext_headers = if v6 { ext_headers } else { vec![] };
                s.ip_options = if v6 { vec![] } else { ip_options };
                s.tcp_options = if udp { vec![] } else { tcp_options };
                s.tcp_flags = tcp_flags;
                s.tcp_reserved = (seed >> 24) as u8 & 0x0f;
                s.seq = seq;
                s.ident = ident;
                s.dont_frag = dont_frag;
                s.tos = tos;
                s.ecn = ecn && !udp;
                s.seed = seed;
                // 2..=128 segments, the last of random length, within IP's 16-bit lengths.
                let segs = segs.clamp(2, 128);
                let last = 1 + (seed as usize % usize::from(gso_size));
                s.payload_len = ((segs - 1) * usize::from(gso_size) + last).min(60_000);
                if s.payload_len <= usize::from(gso_size) {
                    s.payload_len = usize::from(gso_size) + 1;
                }
                s
            },
        )
}

fn frames(frame: &[u8], seg: Segmenter<'_>) -> Vec<Vec<u8>> {
    seg.map(|s| {
        let mut v = vec![0; s.len()];
        assert_eq!(s.write_to(frame, &mut v), Ok(v.len()));
        v
    })
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

    #[test]
    fn segments_are_consistent_and_verify(s in spec()) {
        let (frame, meta) = s.build();
        let valid = meta.validate(&frame).unwrap();
        let gso = *valid.gso().unwrap();
        let layout = *gso.layout();
        let (hl, l4) = (layout.payload_offset, layout.l4_offset);
        let mss = usize::from(s.gso_size);
        let seg = Segmenter::new(&frame, &valid, ChecksumMode::Full).unwrap();
        let n = s.payload_len.div_ceil(mss);
        prop_assert_eq!(seg.len(), n);
        prop_assert_eq!(seg.segment_count(), n);
        let full = frames(&frame, seg.clone());
        prop_assert_eq!(full.len(), n);

        let mut payload = Vec::new();
        for (i, (out, zc)) in full.iter().zip(seg.clone()).enumerate() {
            let last = i + 1 == n;
            let plen = if last { s.payload_len - (n - 1) * mss } else { mss };
            prop_assert_eq!(zc.payload_range(), hl + i * mss..hl + i * mss + plen);
            prop_assert_eq!(zc.csum(), ChecksumState::None);
            payload.extend_from_slice(&out[hl..]);

            let l = parse(out).unwrap();
            prop_assert_eq!(l.end, out.len());
            prop_assert_eq!((l.l3, l.l4, l.l4_offset, l.payload_offset), (layout.l3, layout.l4, l4, hl));
            prop_assert_eq!(l.vlans, layout.vlans);
            prop_assert_eq!(l.payload_len(), plen);
            prop_assert_eq!(l.verify_l4_checksum(out), Some(true), "segment {}", i);
            // Ethernet and tags are copied unchanged.
            prop_assert_eq!(&out[..layout.l3_offset], &frame[..layout.l3_offset]);
            match l.l3 {
                L3::Ipv4 => {
                    let ip = ipv4::Packet::new_unchecked(&out[l.l3_offset..]);
                    let orig = ipv4::Packet::new_unchecked(&frame[l.l3_offset..]);
                    prop_assert!(ip.verify_checksum());
                    prop_assert_eq!(ip.ident(), s.ident.wrapping_add(i as u16));
                    prop_assert_eq!(usize::from(ip.total_len()), out.len() - l.l3_offset);
                    prop_assert_eq!(ip.options(), orig.options());
                    prop_assert_eq!((ip.dont_frag(), ip.dscp(), ip.ecn(), ip.ttl()),
                        (orig.dont_frag(), orig.dscp(), orig.ecn(), orig.ttl()));
                }
                L3::Ipv6 => {
                    let ip = ipv6::Packet::new_unchecked(&out[l.l3_offset..]);
                    prop_assert_eq!(usize::from(ip.payload_len()), out.len() - l.l3_offset - 40);
                    // Everything but the payload length, extension headers included.
                    prop_assert_eq!(&out[l.l3_offset..l.l3_offset + 4], &frame[l.l3_offset..l.l3_offset + 4]);
                    prop_assert_eq!(&out[l.l3_offset + 6..l4], &frame[l.l3_offset + 6..l4]);
                }
                L3::Other(_) => prop_assert!(false, "not IP"),
            }
            if s.udp {
                let u = udp::Packet::new_unchecked(&out[l4..]);
                prop_assert_eq!(usize::from(u.len()), 8 + plen);
                prop_assert_ne!(u.checksum(), 0);
            } else {
                let t = tcp::Packet::new_unchecked(&out[l4..]);
                prop_assert_eq!(t.seq_number(), s.seq.wrapping_add((i * mss) as u32));
                let mut want = s.tcp_flags;
                if !last {
                    want &= !(FIN | PSH);
                }
                if i != 0 {
                    want &= !CWR;
                }
                prop_assert_eq!(out[l4 + 13], want, "flags of segment {}", i);
                // Ports, ack, data offset, window, urgent pointer and options unchanged.
                prop_assert_eq!(&out[l4..l4 + 4], &frame[l4..l4 + 4]);
                prop_assert_eq!(&out[l4 + 8..l4 + 13], &frame[l4 + 8..l4 + 13]);
                prop_assert_eq!(&out[l4 + 14..l4 + 16], &frame[l4 + 14..l4 + 16]);
                prop_assert_eq!(&out[l4 + 18..hl], &frame[l4 + 18..hl]);
            }
        }
        prop_assert_eq!(&payload[..], &frame[hl..]);

        // Partial mode: the same frames but for the checksum field, which completes to the
        // full-mode value (a TCP checksum that computes to 0 is kept as 0 by GSO, as Linux
        // does, while completion writes 0xffff, as Linux's skb_checksum_help does).
        let partial = Segmenter::new(&frame, &valid, ChecksumMode::Partial).unwrap();
        let csum_offset = if s.udp { 6 } else { 16 };
        prop_assert_eq!(
            partial.csum(),
            ChecksumState::Partial { start: l4 as u16, offset: csum_offset as u16 }
        );
        for (i, (mut p, f)) in frames(&frame, partial).into_iter().zip(&full).enumerate() {
            let field = l4 + csum_offset;
            let l = parse(&p).unwrap();
            prop_assert_eq!(&p[field..field + 2], &l.pseudo_header_sum(&p).unwrap().to_be_bytes()[..]);
            checksum::complete_partial(&mut p, l4, csum_offset).unwrap();
            if !s.udp && f[field..field + 2] == [0, 0] {
                p[field..field + 2].copy_from_slice(&[0, 0]);
            }
            prop_assert_eq!(&p, f, "segment {}", i);
        }

        // The contiguous writer lays the same frames back to back.
        let mut buf = vec![0u8; seg.frames_len()];
        let written: Vec<&[u8]> = seg.write_frames(&mut buf).unwrap().collect();
        prop_assert_eq!(written.len(), n);
        for (w, f) in written.iter().zip(&full) {
            prop_assert_eq!(w, &&f[..]);
        }
        prop_assert_eq!(buf, full.concat());
    }

    /// A validated super-frame whose bytes are then changed (a different frame of the same
    /// length): segmentation refuses it or segments it, never panics, and every segment
    /// stays inside the frame.
    #[test]
    fn mutated_frames_never_break_segmentation(
        s in spec(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        mode in prop_oneof![Just(ChecksumMode::Full), Just(ChecksumMode::Partial)],
    ) {
        let (frame, meta) = s.build();
        let valid = meta.validate(&frame).unwrap();
        let mut g = frame.clone();
        for (at, x) in flips {
            let at = at % g.len();
            g[at] ^= x;
        }
        match Segmenter::new(&g, &valid, mode) {
            Ok(seg) => {
                for sg in seg {
                    prop_assert!(sg.payload_range().end <= g.len());
                    prop_assert!(sg.header().len() <= pvio_offload::gso::MAX_HEADER_LEN);
                }
            }
            Err(e) => prop_assert_eq!(e, GsoError::HeaderMismatch),
        }
        // Truncated or extended, it is refused by length.
        let short = &frame[..frame.len() - 1];
        prop_assert_eq!(
            Segmenter::new(short, &valid, mode).unwrap_err(),
            GsoError::FrameLenMismatch { validated: frame.len(), len: frame.len() - 1 }
        );
    }

    /// Arbitrary metadata on arbitrary (mostly valid) frames: whatever validates segments
    /// without panicking, within bounds, into the promised number of segments.
    #[test]
    fn arbitrary_metadata_is_validated_or_segmented_safely(
        s in spec(),
        kind in prop_oneof![Just(GsoKind::TcpV4), Just(GsoKind::TcpV6), Just(GsoKind::UdpL4), Just(GsoKind::None)],
        gso_size in any::<u16>(),
        start in any::<u16>(),
        offset in any::<u16>(),
        cut in any::<usize>(),
        exact_csum in any::<bool>(),
    ) {
        let (frame, built) = s.build();
        let frame = &frame[..frame.len() - cut % 4];
        let csum = if exact_csum {
            built.csum
        } else {
            ChecksumState::Partial { start: start % 200, offset: offset % 24 }
        };
        let meta = OffloadMeta { gso_kind: kind, ecn: false, gso_size, hdr_len: 0, csum, rsc: None };
        if let Ok(valid) = meta.validate(frame) {
            match Segmenter::new(frame, &valid, ChecksumMode::Full) {
                Ok(seg) => {
                    let n = seg.len();
                    let mut count = 0;
                    for sg in seg {
                        prop_assert!(sg.payload_range().end <= frame.len());
                        count += 1;
                    }
                    prop_assert_eq!(count, n);
                }
                Err(e) => prop_assert_eq!(e, GsoError::NotGso),
            }
        }
    }
}

#[test]
fn l4_kinds_are_what_the_spec_says() {
    let (f, _) = Spec::udp6(7, 100, 10).build();
    let l = parse(&f).unwrap();
    assert_eq!((l.l3, l.l4), (L3::Ipv6, L4::Udp));
}

/// Linux's IPv6 GSO steps over hop-by-hop, routing and destination options only; with a
/// fragment header (even an atomic fragment's) it drops the super-frame, and validation
/// refuses it (tests/linux_gso.rs checks the kernel's side).
#[test]
fn ipv6_gso_over_a_fragment_header_is_refused() {
    for udp in [false, true] {
        let s = Spec { udp, ext_headers: vec![DEST_OPTS, FRAGMENT], ..Spec::tcp6(9, 3000, 1000) };
        let (f, meta) = s.build();
        assert_eq!(parse(&f).unwrap().fragment, None, "an atomic fragment is a whole packet");
        assert_eq!(
            meta.validate(&f),
            Err(MetaError::GsoExtensionHeader { offset: 14 + 40 + 8, next_header: 44 })
        );
        // Without GSO the same frame is fine.
        let plain = OffloadMeta { gso_kind: GsoKind::None, ..meta };
        assert!(plain.validate(&f).unwrap().gso().is_none());
    }
}

#[test]
fn frames_without_gso_are_not_segmented() {
    let (f, meta) = Spec::tcp4(9, 1000, 1000).build();
    let valid = meta.validate(&f).unwrap();
    assert_eq!(Segmenter::new(&f, &valid, ChecksumMode::Full).unwrap_err(), GsoError::NotGso);
}

#[test]
fn headers_beyond_the_limit_are_an_error() {
    // QinQ + IPv6 + 8 destination-options headers + TCP with 40 bytes of options: 186 bytes,
    // within the limit.
    let s = Spec {
        ext_headers: vec![DEST_OPTS; 8],
        tcp_options: vec![1; 40],
        vlans: vec![(0x88a8, 1), (0x8100, 2)],
        ..Spec::tcp6(9, 3000, 1000)
    };
    let (f, meta) = s.build();
    let valid = meta.validate(&f).unwrap();
    assert_eq!(Segmenter::new(&f, &valid, ChecksumMode::Full).unwrap().header_len(), 186);

    // One destination-options header grown to 256 bytes (Pad1 options): 330 bytes of
    // headers, refused rather than truncated.
    let s = Spec { ext_headers: vec![DEST_OPTS], ..Spec::tcp6(9, 3000, 1000) };
    let (mut f, mut meta) = s.build();
    f[54 + 1] = 31; // (31 + 1) * 8 = 256 bytes
    f.splice(62..62, [0u8; 248]);
    let payload_len = u16::from_be_bytes([f[18], f[19]]) + 248;
    f[18..20].copy_from_slice(&payload_len.to_be_bytes());
    let ChecksumState::Partial { start, offset } = meta.csum else { unreachable!() };
    meta.csum = ChecksumState::Partial { start: start + 248, offset };
    let valid = meta.validate(&f).unwrap();
    assert_eq!(
        Segmenter::new(&f, &valid, ChecksumMode::Full).unwrap_err(),
        GsoError::HeadersTooLong { len: 330, max: 256 }
    );
}
