//! Harness of the `offload_gso` fuzz target: a peer's super-frame and `virtio_net_hdr`
//! through validation and [`Segmenter`], zero-copy and contiguous, full and partial
//! checksums.
//!
//! Shared by `fuzz/fuzz_targets/offload_gso.rs` (libFuzzer) and the stable replay test
//! `offload/tests/fuzz_replay.rs`, next to `offload_frames.rs`; uses nothing but
//! `pvio_offload` and `std`.
//!
//! # Input format
//!
//! ```text
//! byte 0        control: bit 0 partial checksums (else full); bit 1 fix the IP/UDP lengths
//!               to the frame; bit 2 write the pseudo-header sum into the transport checksum
//!               field; bit 3 point NEEDS_CSUM/csum_start/csum_offset at the parsed transport
//!               checksum; bit 4 take the GSO kind from the parsed headers (ECN bit kept);
//!               bits 5..8 how many segments to take before `write_frames` resumes
//! bytes 1..13   virtio_net_hdr (v1, little-endian)
//! bytes 13..    the frame (fixed up as the control byte says, then used as is)
//! ```
//!
//! The fix-ups only help the fuzzer past validation; the metadata and frame that reach
//! `validate` are still whatever the input made of them.
//!
//! # Invariants checked (a failed `assert!` is a finding)
//!
//! - nothing panics, errors are values;
//! - metadata without GSO (or with one segment's worth of payload) gives `NotGso`;
//!   `Segmenter::new` fails on an accepted frame only with `HeadersTooLong`, and then only if
//!   the headers exceed `MAX_HEADER_LEN`; it refuses the frame one byte shorter and the frame
//!   with a header byte changed, and accepts it with a payload byte changed;
//! - exactly `segments()` segments, `ExactSizeIterator` honest; segment `i`'s payload is
//!   `hl + i * gso_size .. min(len, hl + (i + 1) * gso_size)`: in the frame, contiguous, and
//!   concatenating to the input payload; every header is `hl` bytes;
//! - every segment parses with the super-frame's offsets and kinds, ends where it is long,
//!   and differs from the super-frame's headers only in IPv4 total length / ID / header
//!   checksum, IPv6 payload length, TCP sequence / flags / checksum, UDP length / checksum;
//!   those are right: lengths, ID `+ i`, sequence `+ i * gso_size`, FIN/PSH only on the last
//!   segment, CWR only on the first, an IPv4 header checksum that verifies;
//! - checksums (when the super-frame's field held its pseudo-header sum, as a partial checksum
//!   promises): full mode verifies (UDP never 0); partial mode reports `csum_start` at the
//!   transport header, leaves the segment's pseudo-header sum there, and completing it
//!   verifies;
//! - `frames_len` is what the segments take; `write_frames` writes exactly those bytes (also
//!   when resumed after some segments) and refuses a buffer one byte short.

use pvio_offload::gso::MAX_HEADER_LEN;
use pvio_offload::virtio::{flags, gso_type};
use pvio_offload::{
    checksum, ipv4, ipv6, parse, tcp, udp, ChecksumMode, ChecksumState, GsoError, Layout, OffloadMeta,
    Segment, Segmenter, L3, L4,
};

use super::offload_frames::{csum_eq, fill_pseudo, fix_lengths, l4_checksum_field, virtio_hdr, Input};

const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let control = input.byte();
    let mut hdr = virtio_hdr(input.array::<12>());
    let mut frame = input.rest().to_vec();
    let mode = if control & 1 != 0 { ChecksumMode::Partial } else { ChecksumMode::Full };
    if control & 2 != 0 {
        fix_lengths(&mut frame);
    }
    if control & 4 != 0 {
        fill_pseudo(&mut frame);
    }
    if control & 8 != 0 {
        if let Some((l4, offset, _)) = l4_checksum_field(&frame) {
            hdr.flags = flags::NEEDS_CSUM;
            hdr.csum_start = (l4.min(0xffff) as u16).into();
            hdr.csum_offset = (offset as u16).into();
        }
    }
    if control & 16 != 0 {
        if let Ok(l) = parse(&frame) {
            let kind = match (l.l3, l.l4) {
                (L3::Ipv4, L4::Tcp) => gso_type::TCPV4,
                (L3::Ipv6, L4::Tcp) => gso_type::TCPV6,
                _ => gso_type::UDP_L4,
            };
            hdr.gso_type = kind | (hdr.gso_type & gso_type::ECN);
        }
    }
    let resume_after = usize::from(control >> 5);

    let Ok(meta) = OffloadMeta::from_virtio(&hdr) else { return };
    let Ok(valid) = meta.validate(&frame) else { return };
    let Some(gso) = valid.gso() else {
        assert_eq!(Segmenter::new(&frame, &valid, mode).unwrap_err(), GsoError::NotGso);
        return;
    };
    let layout = *gso.layout();
    let hl = layout.header_len();
    let segmenter = match Segmenter::new(&frame, &valid, mode) {
        Ok(s) => s,
        Err(GsoError::HeadersTooLong { len, max }) => {
            assert!(len == hl && max == MAX_HEADER_LEN && hl > MAX_HEADER_LEN, "HeadersTooLong {len}/{max}");
            return;
        }
        Err(e) => panic!("validated frame refused: {e}"),
    };
    assert!(hl <= MAX_HEADER_LEN);
    let count = gso.segments();
    assert_eq!(segmenter.segment_count(), count);
    assert_eq!(segmenter.header_len(), hl);
    assert_eq!(segmenter.len(), count);
    tampering(&frame, &valid, mode, hl, control);

    // The super-frame's field held its pseudo-header sum: the checksums can be checked.
    let csum_field = layout.l4_offset + if layout.l4 == L4::Tcp { tcp::CHECKSUM_OFFSET } else { 6 };
    let pseudo_ok = layout
        .pseudo_header_sum(&frame)
        .is_some_and(|p| csum_eq(p, u16::from_be_bytes([frame[csum_field], frame[csum_field + 1]])));

    let frames_len = segmenter.frames_len();
    let segments: Vec<Segment> = segmenter.clone().collect();
    assert_eq!(segments.len(), count);
    let mss = usize::from(gso.size());
    let mut payload = Vec::with_capacity(frame.len() - hl);
    let mut total = 0;
    let mut written = Vec::with_capacity(count);
    for (i, seg) in segments.iter().enumerate() {
        let want = hl + i * mss..frame.len().min(hl + (i + 1) * mss);
        assert!(!want.is_empty());
        assert_eq!(seg.payload_range(), want, "payload range of segment {i}");
        assert_eq!(seg.header().len(), hl);
        assert_eq!(seg.len(), hl + want.len());
        payload.extend_from_slice(seg.payload(&frame).expect("payload within the frame"));
        let mut out = vec![0u8; seg.len()];
        assert_eq!(seg.write_to(&frame, &mut out), Ok(seg.len()));
        assert!(seg.write_to(&frame, &mut out[..seg.len() - 1]).is_err());
        check_segment(&frame, &layout, &out, i, count, mss, mode, seg.csum(), pseudo_ok);
        total += out.len();
        written.push(out);
    }
    assert_eq!(payload, &frame[hl..], "payloads do not concatenate to the input payload");
    assert_eq!(frames_len, total, "frames_len");

    // Contiguous output, also resumed after some segments.
    let mut s = segmenter.clone();
    let skip = resume_after % count;
    for _ in 0..skip {
        s.next();
    }
    assert_eq!(s.len(), count - skip);
    let needed: usize = written[skip..].iter().map(Vec::len).sum();
    assert_eq!(s.frames_len(), needed);
    let mut short = vec![0u8; needed - 1];
    assert_eq!(
        s.clone().write_frames(&mut short).unwrap_err(),
        GsoError::BufferTooSmall { needed, available: needed - 1 }
    );
    let mut buf = vec![0u8; needed + 7];
    let frames = s.write_frames(&mut buf).expect("buffer is large enough");
    assert_eq!(frames.as_bytes(), written[skip..].concat().as_slice());
    let frames: Vec<&[u8]> = frames.collect();
    assert_eq!(frames.len(), count - skip);
    for (got, want) in frames.iter().zip(&written[skip..]) {
        assert_eq!(got, want, "write_frames differs from the zero-copy output");
    }
}

/// The frame one byte short, with a header byte changed, or with a payload byte changed.
fn tampering(frame: &[u8], valid: &pvio_offload::ValidMeta, mode: ChecksumMode, hl: usize, pick: u8) {
    let len = frame.len();
    assert_eq!(
        Segmenter::new(&frame[..len - 1], valid, mode).unwrap_err(),
        GsoError::FrameLenMismatch { validated: len, len: len - 1 }
    );
    let mut f = frame.to_vec();
    f[usize::from(pick) % hl] ^= 0x10;
    assert_eq!(Segmenter::new(&f, valid, mode).unwrap_err(), GsoError::HeaderMismatch);
    let mut f = frame.to_vec();
    f[hl + usize::from(pick) % (len - hl)] ^= 0x10;
    assert!(Segmenter::new(&f, valid, mode).is_ok(), "a changed payload byte was refused");
}

#[allow(clippy::too_many_arguments)]
fn check_segment(
    frame: &[u8],
    sl: &Layout,
    out: &[u8],
    i: usize,
    count: usize,
    mss: usize,
    mode: ChecksumMode,
    csum: ChecksumState,
    pseudo_ok: bool,
) {
    let l = parse(out).unwrap_or_else(|e| panic!("segment {i} does not parse: {e}"));
    assert_eq!(
        (l.vlans, l.l3, l.l3_offset, l.l4, l.l4_offset, l.payload_offset, l.fragment),
        (sl.vlans, sl.l3, sl.l3_offset, sl.l4, sl.l4_offset, sl.payload_offset, None),
        "segment {i} layout"
    );
    assert_eq!(l.end, out.len(), "segment {i} has trailing bytes");
    let (l3, l4, hl) = (l.l3_offset, l.l4_offset, l.payload_offset);
    let is_tcp = l.l4 == L4::Tcp;

    // Only the fields GSO rewrites differ from the super-frame's headers.
    let mut may_differ = vec![false; hl];
    let mut mark = |r: core::ops::Range<usize>| may_differ[r].iter_mut().for_each(|b| *b = true);
    if l.l3 == L3::Ipv4 {
        mark(l3 + 2..l3 + 6);
        mark(l3 + 10..l3 + 12);
    } else {
        mark(l3 + 4..l3 + 6);
    }
    if is_tcp {
        mark(l4 + 4..l4 + 8);
        mark(l4 + 13..l4 + 14);
        mark(l4 + 16..l4 + 18);
    } else {
        mark(l4 + 4..l4 + 8);
    }
    for (at, (a, b)) in frame[..hl].iter().zip(&out[..hl]).enumerate() {
        assert!(a == b || may_differ[at], "segment {i} changed header byte {at}: {a:#04x} -> {b:#04x}");
    }

    if l.l3 == L3::Ipv4 {
        let (sip, ip) = (ipv4::Packet::new_unchecked(&frame[l3..]), ipv4::Packet::new_unchecked(&out[l3..]));
        assert_eq!(usize::from(ip.total_len()), out.len() - l3);
        assert_eq!(ip.ident(), sip.ident().wrapping_add(i as u16), "IPv4 ID of segment {i}");
        assert!(ip.verify_checksum(), "IPv4 header checksum of segment {i}");
    } else {
        let ip = ipv6::Packet::new_unchecked(&out[l3..]);
        assert_eq!(usize::from(ip.payload_len()), out.len() - l3 - ipv6::HEADER_LEN);
    }
    if is_tcp {
        let (st, t) = (tcp::Packet::new_unchecked(&frame[l4..hl]), tcp::Packet::new_unchecked(&out[l4..hl]));
        assert_eq!(t.seq_number(), st.seq_number().wrapping_add((i * mss) as u32), "seq of segment {i}");
        let mut clear = 0;
        if i + 1 != count {
            clear |= FIN | PSH;
        }
        if i != 0 {
            clear |= CWR;
        }
        assert_eq!(out[l4 + 13], frame[l4 + 13] & !clear, "TCP flags of segment {i}");
    } else {
        let u = udp::Packet::new_unchecked(&out[l4..]);
        assert_eq!(usize::from(u.len()), out.len() - l4);
    }

    let field = l4 + if is_tcp { tcp::CHECKSUM_OFFSET } else { udp::CHECKSUM_OFFSET };
    let value = u16::from_be_bytes([out[field], out[field + 1]]);
    match mode {
        ChecksumMode::Full => {
            assert_eq!(csum, ChecksumState::None);
            if !is_tcp {
                assert_ne!(value, 0, "UDP segment {i} left with checksum 0");
            }
            if pseudo_ok {
                assert_eq!(l.verify_l4_checksum(out), Some(true), "checksum of segment {i}");
            }
        }
        ChecksumMode::Partial => {
            let offset = (field - l4) as u16;
            assert_eq!(csum, ChecksumState::Partial { start: l4 as u16, offset });
            if pseudo_ok {
                let pseudo = l.pseudo_header_sum(out).expect("TCP/UDP segment");
                assert!(csum_eq(value, pseudo), "segment {i} field {value:#06x}, pseudo {pseudo:#06x}");
                let mut f = out.to_vec();
                checksum::complete_partial(&mut f, l4, field - l4).expect("field in bounds");
                assert_eq!(l.verify_l4_checksum(&f), Some(true), "completed checksum of segment {i}");
            }
        }
    }
}
