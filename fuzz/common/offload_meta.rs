//! Harness of the `offload_meta` fuzz target: a peer's `virtio_net_hdr` and frame through
//! [`OffloadMeta::from_virtio`] and [`OffloadMeta::validate`], and the Xen netif conversions.
//!
//! Shared by `fuzz/fuzz_targets/offload_meta.rs` (libFuzzer) and the stable replay test
//! `offload/tests/fuzz_replay.rs`, next to `offload_frames.rs`; uses nothing but
//! `pvio_offload` and `std`.
//!
//! # Input format
//!
//! ```text
//! bytes 0..12   virtio_net_hdr (v1, little-endian; missing bytes read as 0)
//! bytes 12..    the frame
//! ```
//!
//! The netif side reuses the header: the low byte of `num_buffers` is the netif tx flags
//! (its two low bits meaningful, the rest kept as noise), bit 0 of its high byte says whether
//! a GSO extra is present, and the rest of that byte is the extra's type; the extra's size is
//! `gso_size`.
//!
//! # Invariants checked (a failed `assert!` is a finding)
//!
//! - nothing panics; errors format;
//! - `from_virtio` then `to_virtio` gives the header back, with `csum_start`/`csum_offset`
//!   zeroed when neither `NEEDS_CSUM` nor `RSC_INFO` gives them a meaning (the only loss), and
//!   `from_virtio(to_virtio(m)) == m`;
//! - when `validate` accepts: `frame_len` is the frame's, `meta` is the input, a partial
//!   checksum has `csum_start + csum_offset + 2 <= len` and `complete_partial` succeeds on it,
//!   `hdr_len` covers that field and the sender's `hdr_len` and stays within the frame; a GSO
//!   request has a known kind matching the parsed headers, `gso_size` not 0 or `0xffff`, no
//!   ECN with UDP, `csum_start` at the transport header and `csum_offset` at its checksum
//!   field, IP/UDP length ending with the frame, and `segments = ceil(payload / gso_size)`
//!   in `2..=limit`; `hdr_len` covers its headers; no GSO is requested when the metadata
//!   has none;
//! - `validate` rejects a partial checksum beyond the frame, and GSO without `NEEDS_CSUM`;
//! - netif: `from_netif_tx` on the parsed layout, then `to_netif_tx`, then `from_netif_tx`
//!   again, is the identity; `to_netif_tx` of the virtio metadata, when it succeeds, keeps
//!   the GSO kind and size.

use pvio_offload::meta::{GSO_BY_FRAGS, GSO_MAX_SEGS, UDP_MAX_SEGMENTS};
use pvio_offload::virtio::flags;
use pvio_offload::{checksum, parse, ChecksumState, GsoKind, MetaError, OffloadMeta, L3, L4};

use super::offload_frames::{virtio_hdr, Input};

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let raw = input.array::<12>();
    let frame = input.rest();
    let hdr = virtio_hdr(raw);

    let meta = match OffloadMeta::from_virtio(&hdr) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            netif(frame, raw, None);
            return;
        }
    };
    // Lossless, up to the two fields nothing gives a meaning to.
    let back = meta.to_virtio(hdr.num_buffers.get());
    let mut canonical = hdr;
    if hdr.flags & (flags::NEEDS_CSUM | flags::RSC_INFO) == 0 {
        canonical.csum_start = 0u16.into();
        canonical.csum_offset = 0u16.into();
    }
    assert_eq!(back, canonical, "to_virtio(from_virtio(h)) != h");
    assert_eq!(OffloadMeta::from_virtio(&back), Ok(meta), "from_virtio(to_virtio(m)) != m");

    check_validate(&meta, frame);
    netif(frame, raw, Some(&meta));
}

fn check_validate(meta: &OffloadMeta, frame: &[u8]) {
    let len = frame.len();
    let v = match meta.validate(frame) {
        Ok(v) => v,
        Err(e) => {
            let _ = e.to_string();
            // The GSO checks that come before the one for a partial checksum.
            let refused_earlier = matches!(meta.gso_kind, GsoKind::None | GsoKind::Ufo)
                || matches!(meta.gso_size, 0 | GSO_BY_FRAGS)
                || (meta.ecn && meta.gso_kind == GsoKind::UdpL4);
            match meta.csum {
                ChecksumState::Partial { start, offset }
                    if usize::from(start) + usize::from(offset) + 2 > len =>
                {
                    assert_eq!(e, MetaError::ChecksumOutOfFrame { start, offset, len });
                }
                ChecksumState::Partial { .. } => {}
                _ if !refused_earlier => assert_eq!(e, MetaError::GsoWithoutPartialChecksum),
                _ => {}
            }
            return;
        }
    };
    assert_eq!(v.frame_len(), len);
    assert_eq!(v.meta(), meta);
    assert_eq!(v.csum(), meta.csum);
    assert!(v.hdr_len() <= len, "hdr_len {} beyond the {len}-byte frame", v.hdr_len());
    assert!(v.hdr_len() >= usize::from(meta.hdr_len));
    if let ChecksumState::Partial { start, offset } = v.csum() {
        let (start, offset) = (usize::from(start), usize::from(offset));
        assert!(start + offset + 2 <= len, "partial checksum field beyond the frame");
        assert!(v.hdr_len() >= start + offset + 2);
        let mut f = frame.to_vec();
        let c = checksum::complete_partial(&mut f, start, offset).expect("validated field is in bounds");
        assert_eq!(&f[start + offset..start + offset + 2], &c.to_be_bytes());
    }
    match meta.gso_kind {
        GsoKind::None => assert!(v.gso().is_none(), "GSO without a GSO kind"),
        GsoKind::Ufo => panic!("UFO accepted"),
        _ => {}
    }
    let Some(g) = v.gso() else { return };
    assert_eq!((g.kind(), g.ecn(), g.size()), (meta.gso_kind, meta.ecn, meta.gso_size));
    assert!(g.size() != 0 && g.size() != GSO_BY_FRAGS);
    let l = g.layout();
    assert_eq!(parse(frame).as_ref(), Ok(l), "GSO layout is not the frame's");
    assert_eq!(l.fragment, None);
    let (l3_ok, csum_offset) = match g.kind() {
        GsoKind::TcpV4 => (l.l3 == L3::Ipv4 && l.l4 == L4::Tcp, 16),
        GsoKind::TcpV6 => (l.l3 == L3::Ipv6 && l.l4 == L4::Tcp, 16),
        GsoKind::UdpL4 => (matches!(l.l3, L3::Ipv4 | L3::Ipv6) && l.l4 == L4::Udp && !g.ecn(), 6),
        other => panic!("GSO kind {other:?} accepted"),
    };
    assert!(l3_ok, "GSO kind {:?} on {:?}/{:?}", g.kind(), l.l3, l.l4);
    assert_eq!(meta.csum, ChecksumState::Partial { start: l.l4_offset as u16, offset: csum_offset });
    assert_eq!(l.end, len, "GSO frame with trailing bytes");
    assert!(v.hdr_len() >= l.header_len());
    let segments = l.payload_len().div_ceil(usize::from(g.size()));
    assert_eq!(g.segments(), segments);
    let max = if g.kind() == GsoKind::UdpL4 { UDP_MAX_SEGMENTS } else { GSO_MAX_SEGS };
    assert!((2..=max).contains(&segments), "{segments} segments");
    assert_eq!(g.header_sum(), checksum::sum(&frame[..l.header_len()]));
}

fn netif(frame: &[u8], raw: [u8; 12], meta: Option<&OffloadMeta>) {
    let tx_flags = u16::from(raw[10]);
    let gso = (raw[11] & 1 != 0).then_some((raw[11] >> 1, u16::from_le_bytes([raw[4], raw[5]])));
    if let Some(meta) = meta {
        if let Ok((f, g)) = meta.to_netif_tx() {
            assert_eq!(g.map(|(_, size)| size), (meta.gso_kind != GsoKind::None).then_some(meta.gso_size));
            if let Ok(l) = parse(frame) {
                if let Ok(m) = OffloadMeta::from_netif_tx(f, g, &l) {
                    assert_eq!((m.gso_kind, m.gso_size), (meta.gso_kind, meta.gso_size));
                }
            }
        }
    }
    let Ok(l) = parse(frame) else { return };
    match OffloadMeta::from_netif_tx(tx_flags, gso, &l) {
        Ok(m) => {
            let (f, g) = m.to_netif_tx().expect("netif metadata converts back");
            assert_eq!(OffloadMeta::from_netif_tx(f, g, &l), Ok(m), "netif round trip");
            let _ = m.validate(frame);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
