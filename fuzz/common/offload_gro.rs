//! Harness of the `offload_gro` fuzz target: a sequence of received frames, with checksum
//! hints and explicit flushes, through a small [`GroTable`].
//!
//! Shared by `fuzz/fuzz_targets/offload_gro.rs` (libFuzzer) and the stable replay test
//! `offload/tests/fuzz_replay.rs`, next to `offload_frames.rs`; uses nothing but
//! `pvio_offload` and `std`.
//!
//! # Input format
//!
//! ```text
//! byte 0     table: bits 0..2 FLOWS (1, 2, 4, 8), bits 2..4 per-flow share (2048, 4096,
//!            16384, FLOW_BUF_LEN bytes)
//! then ops   one op byte and its arguments, until the input ends (at most MAX_FRAMES frames)
//! ```
//!
//! Op byte: bits 0..3 the op, bits 3..8 modifiers.
//!
//! | op | action | arguments |
//! |----|--------|-----------|
//! | 0, 1, 2 | receive a raw frame with hint None, Validated, Partial at its TCP checksum field (or at 0/0 if it has none) | length u16 LE (mod 16384), then the bytes; modifiers: bit 3 fix the IP lengths, bit 4 fill the IPv4 header checksum, bit 5 fill the TCP checksum |
//! | 3 | `flush_all` | |
//! | 4, 5, 6 | receive the next segment of the last frame (its headers; sequence number advanced by its payload; IPv4 ID + 1; lengths and checksums filled; for hint Partial the field holds the pseudo-header sum), hint as for 0..3 | payload length u16 LE (mod 9001), TCP flags byte; modifiers: bit 3 keep the IPv4 ID, bit 4 ID + 2, bit 5 leave a one-byte sequence gap, bit 6 change the ACK, bit 7 change the window |
//! | 7 | receive a raw frame with hint Partial { start, offset } | start u16 LE, offset u16 LE, length u16 LE (mod 16384), bytes |
//!
//! A final `flush_all` ends every input.
//!
//! # Invariants checked (a failed `assert!` is a finding)
//!
//! - nothing panics; a buffer too small for `FLOWS` shares is refused; `held() <= FLOWS`, and
//!   0 after `flush_all`;
//! - a frame passed through is delivered as the very slice received, before `receive`
//!   returns, with no GSO metadata and one segment;
//! - a held frame delivered alone is byte for byte the frame received (link-layer padding
//!   dropped), no GSO metadata;
//! - a super-frame's metadata is TCP GSO matching its IP version, with `hdr_len` its header
//!   length and a partial checksum at the TCP checksum field holding the pseudo-header sum; it
//!   validates, and segments into exactly the segments it claims; each segment is one of the
//!   frames received (up to the IPv4 header checksum's and, where GRO verified it, the TCP
//!   checksum's two zeros; the TCP checksum where GRO did not verify it; the IPv4 ID when
//!   `fixed_ip_id`; and the urgent pointer, which without URG means nothing and which Linux
//!   does not compare either), and the frames a super-frame holds were received in that
//!   order;
//! - every frame received is delivered exactly once: the segments delivered add up to the
//!   frames received, and each matches a distinct one;
//! - GRO by reference ([`GroRefTable`] of the same size, its pieces gathered from the frames
//!   received) delivers exactly what [`GroTable`] delivers, at the same moments, and names no
//!   frame after `flush_all`.

use pvio_offload::gro::{Cause, GroRefTable, GroTable, RefDelivery, FLOW_BUF_LEN, MIN_FLOW_BUF_LEN};
use pvio_offload::{parse, ChecksumMode, ChecksumState, GsoKind, Layout, OffloadMeta, Segmenter, L3, L4};

use super::offload_frames::{csum_eq, fill_l4_checksum, fill_pseudo, fix_ipv4_checksum, fix_lengths, Input};

/// The most frames one input feeds.
const MAX_FRAMES: usize = 512;

const SHARES: [usize; 4] = [MIN_FLOW_BUF_LEN, 4096, 16384, FLOW_BUF_LEN];

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let config = input.byte();
    let share = SHARES[usize::from(config >> 2) & 3];
    match config & 3 {
        0 => drive::<1>(share, input),
        1 => drive::<2>(share, input),
        2 => drive::<4>(share, input),
        _ => drive::<8>(share, input),
    }
}

/// One frame received, and whether it has been delivered.
struct Received {
    frame: Vec<u8>,
    hint: ChecksumState,
    delivered: bool,
}

/// One delivery, copied out of the callback.
struct Out {
    frame: Vec<u8>,
    meta: OffloadMeta,
    segments: u32,
    fixed_ip_id: bool,
    cause: Cause,
    /// The delivery is the very slice handed to `receive`.
    same_slice: bool,
}

fn drive<const F: usize>(share: usize, mut input: Input<'_>) {
    let mut tiny = vec![0u8; F * MIN_FLOW_BUF_LEN - 1];
    assert!(GroTable::<F>::new(&mut tiny).is_err(), "a buffer too small was accepted");
    let mut buf = vec![0u8; F * share];
    let mut gro = GroTable::<F>::new(&mut buf).expect("buffer is large enough");
    // Enough pieces that only bytes, never pieces, end a super-frame: the same as `gro`.
    let mut by_ref =
        Box::new(GroRefTable::<usize, F, MAX_FRAMES>::new(share).expect("share is large enough"));
    let mut all: Vec<Vec<u8>> = Vec::new();

    let mut received: Vec<Received> = Vec::new();
    let mut last: Vec<u8> = Vec::new();
    while !input.is_empty() && received.len() < MAX_FRAMES {
        let op = input.byte();
        let mods = op >> 3;
        let (frame, hint) = match op & 7 {
            3 => {
                let mut outs = Vec::new();
                gro.flush_all(|d| outs.push(copy(&d, None)));
                assert_eq!(gro.held(), 0, "flows held after flush_all");
                let mut refs = Vec::new();
                by_ref.flush_all(|d| refs.push(gather(&d, &all)));
                same(&outs, &refs);
                check(&mut received, outs);
                continue;
            }
            k @ 0..=2 => {
                let len = usize::from(input.u16_le()) % 16384;
                let mut f = input.take(len).to_vec();
                if mods & 1 != 0 {
                    fix_lengths(&mut f);
                }
                if mods & 2 != 0 {
                    fix_ipv4_checksum(&mut f);
                }
                if mods & 4 != 0 {
                    fill_l4_checksum(&mut f);
                }
                let hint = hint_for(k, &f);
                (f, hint)
            }
            k @ 4..=6 => {
                let payload = usize::from(input.u16_le()) % 9001;
                let flags = input.byte();
                let Some(f) = next_segment(&last, payload, flags, mods, k == 6) else { continue };
                let hint = hint_for(k - 4, &f);
                (f, hint)
            }
            _ => {
                let (start, offset) = (input.u16_le(), input.u16_le());
                let len = usize::from(input.u16_le()) % 16384;
                (input.take(len).to_vec(), ChecksumState::Partial { start, offset })
            }
        };
        let mut outs = Vec::new();
        gro.receive(&frame, hint, |d| outs.push(copy(&d, Some(&frame))));
        assert!(gro.held() <= F);
        all.push(frame.clone());
        let mut refs = Vec::new();
        by_ref.receive(&frame, all.len() - 1, hint, |d| refs.push(gather(&d, &all)));
        same(&outs, &refs);
        assert_eq!(gro.held(), by_ref.held());
        received.push(Received { frame: frame.clone(), hint, delivered: false });
        check(&mut received, outs);
        last = frame;
    }
    let mut outs = Vec::new();
    gro.flush_all(|d| outs.push(copy(&d, None)));
    assert_eq!(gro.held(), 0, "flows held after flush_all");
    let mut refs = Vec::new();
    by_ref.flush_all(|d| refs.push(gather(&d, &all)));
    same(&outs, &refs);
    assert!((0..all.len()).all(|i| !by_ref.refers_to(i)), "a frame named after flush_all");
    check(&mut received, outs);
    let missing = received.iter().filter(|r| !r.delivered).count();
    assert_eq!(missing, 0, "{missing} of {} frames never delivered", received.len());
}

fn copy(d: &pvio_offload::Delivery<'_>, current: Option<&[u8]>) -> Out {
    Out {
        frame: d.frame.to_vec(),
        meta: d.meta,
        segments: d.segments,
        fixed_ip_id: d.fixed_ip_id,
        cause: d.cause,
        same_slice: current.is_some_and(|c| core::ptr::eq(c, d.frame)),
    }
}

/// A by-reference delivery with its pieces gathered from the frames received (`all`).
fn gather(d: &RefDelivery<'_, usize>, all: &[Vec<u8>]) -> Out {
    let mut frame = d.header.to_vec();
    for p in d.pieces {
        frame.extend_from_slice(&all[p.frame][p.offset..p.offset + p.len]);
    }
    if matches!(d.cause, Cause::Flushed(_)) {
        assert_eq!(d.pieces.len(), d.segments as usize, "one piece per segment");
    }
    Out {
        frame,
        meta: d.meta,
        segments: d.segments,
        fixed_ip_id: d.fixed_ip_id,
        cause: d.cause,
        same_slice: false,
    }
}

/// The contiguous and the by-reference table delivered the same.
fn same(outs: &[Out], refs: &[Out]) {
    assert_eq!(outs.len(), refs.len(), "deliveries: contiguous vs by reference");
    for (o, r) in outs.iter().zip(refs) {
        assert_eq!(
            (o.meta, o.segments, o.fixed_ip_id, o.cause),
            (r.meta, r.segments, r.fixed_ip_id, r.cause)
        );
        assert!(o.frame == r.frame, "by reference delivered other bytes: {:?}", o.cause);
    }
}

/// Hint 0: None, 1: Validated, 2: Partial at the frame's TCP checksum field (or 0/0).
fn hint_for(k: u8, frame: &[u8]) -> ChecksumState {
    match k {
        0 => ChecksumState::None,
        1 => ChecksumState::Validated,
        _ => match parse(frame) {
            Ok(l) if l.l4 == L4::Tcp => ChecksumState::Partial { start: l.l4_offset as u16, offset: 16 },
            _ => ChecksumState::Partial { start: 0, offset: 0 },
        },
    }
}

/// The segment that follows `last` (a TCP frame) in its flow, with `payload` bytes.
fn next_segment(last: &[u8], payload: usize, flags: u8, mods: u8, partial: bool) -> Option<Vec<u8>> {
    let l = parse(last).ok()?;
    if l.l4 != L4::Tcp || l.fragment.is_some() {
        return None;
    }
    let (l3, l4, hl) = (l.l3_offset, l.l4_offset, l.payload_offset);
    let mut f = last[..hl].to_vec();
    let seq = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
    let next = seq.wrapping_add(l.payload_len() as u32).wrapping_add(u32::from(mods >> 2 & 1));
    f[l4 + 4..l4 + 8].copy_from_slice(&next.to_be_bytes());
    f[l4 + 13] = flags;
    if mods & 8 != 0 {
        f[l4 + 8] ^= 1; // ACK
    }
    if mods & 16 != 0 {
        f[l4 + 14] ^= 1; // window
    }
    if l.l3 == L3::Ipv4 {
        let id = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]);
        let id = match mods & 3 {
            1 => id,
            2 => id.wrapping_add(2),
            _ => id.wrapping_add(1),
        };
        f[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
    }
    f.extend((0..payload).map(|i| (next as usize).wrapping_add(i) as u8));
    fix_lengths(&mut f);
    if partial {
        fill_pseudo(&mut f);
    } else {
        fill_l4_checksum(&mut f);
    }
    Some(f)
}

/// Checks the deliveries of one call and marks the frames they carry as delivered.
fn check(received: &mut [Received], outs: Vec<Out>) {
    for out in outs {
        let flushed = match out.cause {
            Cause::PassedThrough(_) => false,
            Cause::Flushed(_) => true,
        };
        if !flushed {
            assert!(out.same_slice, "a pass-through is not the frame received: {:?}", out.cause);
            assert_eq!((out.segments, out.meta.gso_kind), (1, GsoKind::None));
            let cur = received.last_mut().expect("a frame was received");
            assert!(!cur.delivered, "frame delivered twice");
            assert_eq!(out.frame, cur.frame);
            cur.delivered = true;
            continue;
        }
        assert!(out.segments >= 1);
        if out.segments == 1 {
            assert_eq!(out.meta.gso_kind, GsoKind::None, "a single frame with GSO metadata");
            assert!(!out.fixed_ip_id);
            let i = received
                .iter()
                .position(|r| !r.delivered && trimmed(&r.frame) == out.frame.as_slice())
                .unwrap_or_else(|| {
                    panic!("held frame delivered that was never received: {:02x?}", out.frame)
                });
            received[i].delivered = true;
            continue;
        }
        check_super_frame(received, &out);
    }
}

/// The frame as GRO holds it: without link-layer padding.
fn trimmed(frame: &[u8]) -> &[u8] {
    match parse(frame) {
        Ok(l) if l.l4 == L4::Tcp => &frame[..l.end],
        _ => frame,
    }
}

fn check_super_frame(received: &mut [Received], out: &Out) {
    let frame = &out.frame;
    let l = parse(frame).unwrap_or_else(|e| panic!("super-frame does not parse: {e}"));
    let kind = match l.l3 {
        L3::Ipv4 => GsoKind::TcpV4,
        _ => GsoKind::TcpV6,
    };
    assert_eq!((l.l4, out.meta.gso_kind), (L4::Tcp, kind), "super-frame kind");
    assert_eq!(l.end, frame.len());
    assert_eq!(usize::from(out.meta.hdr_len), l.header_len());
    assert_eq!(out.meta.csum, ChecksumState::Partial { start: l.l4_offset as u16, offset: 16 });
    let field = l.l4_offset + 16;
    let pseudo = l.pseudo_header_sum(frame).expect("TCP");
    assert_eq!(u16::from_be_bytes([frame[field], frame[field + 1]]), pseudo, "super-frame's partial sum");
    let valid = out.meta.validate(frame).unwrap_or_else(|e| panic!("super-frame metadata refused: {e}"));
    let gso = valid.gso().expect("a super-frame is GSO");
    assert_eq!(gso.segments(), out.segments as usize, "segments claimed vs segments made");
    let segs = Segmenter::new(frame, &valid, ChecksumMode::Full).expect("super-frame segments");
    assert_eq!(segs.len(), out.segments as usize);
    let mut after = None;
    for (n, seg) in segs.enumerate() {
        let mut bytes = vec![0u8; seg.len()];
        seg.write_to(frame, &mut bytes).expect("segment fits");
        let i = received
            .iter()
            .position(|r| !r.delivered && same_segment(&l, &bytes, r, out.fixed_ip_id))
            .unwrap_or_else(|| panic!("segment {n} of a super-frame was never received: {bytes:02x?}"));
        assert!(after.is_none_or(|a| i > a), "segments of a super-frame out of order");
        after = Some(i);
        received[i].delivered = true;
    }
}

/// Whether `seg` (cut from a super-frame of layout `l`) is the received frame `r`, up to the
/// checksum representations and the IPv4 ID of a fixed-ID flow.
fn same_segment(l: &Layout, seg: &[u8], r: &Received, fixed_ip_id: bool) -> bool {
    let frame = trimmed(&r.frame);
    if frame.len() != seg.len() {
        return false;
    }
    let be = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    let tcp_field = l.l4_offset + 16;
    // Verified by GRO: the same checksum value. Otherwise the field may hold anything.
    if r.hint == ChecksumState::None && !csum_eq(be(frame, tcp_field), be(seg, tcp_field)) {
        return false;
    }
    // The urgent pointer (URG frames are never coalesced, so it is meaningless here): like
    // Linux's `tcp_gro_receive`, GRO does not compare it, and keeps the first segment's.
    let mut skip = vec![tcp_field, tcp_field + 1, tcp_field + 2, tcp_field + 3];
    if l.l3 == L3::Ipv4 {
        let c = l.l3_offset + 10;
        if fixed_ip_id {
            // GSO increments the ID, so the header checksum differs too.
            skip.extend([l.l3_offset + 4, l.l3_offset + 5]);
        } else if !csum_eq(be(frame, c), be(seg, c)) {
            return false;
        }
        skip.extend([c, c + 1]);
    }
    frame.iter().zip(seg).enumerate().all(|(at, (a, b))| a == b || skip.contains(&at))
}
