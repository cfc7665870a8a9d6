//! GRO properties on random flows built by `tests/common` and cut by the crate's own GSO
//! (full checksums):
//!
//! - **round trip**: the segments of one super-frame, fed to GRO, come back as exactly that
//!   super-frame, byte for byte (Linux's `tcp_gro_complete` leaves the IPv4 header checksum
//!   recomputed and the TCP field holding the pseudo-header sum, which is what the guest's
//!   partial-checksum super-frame held), with metadata that validates and segments again
//!   into the very same segments;
//! - **order and conservation** with interleaved flows, a table smaller than the number of
//!   flows, and dropped, duplicated, swapped and corrupted segments: for every flow, the frames
//!   delivered (super-frames segmented again) are the frames received, in order;
//! - **by reference**: [`GroRefTable`] delivers exactly what [`GroTable`] does (header plus
//!   the payload pieces it names, gathered from the frames received), interleaved flows,
//!   duplicates, corruption and noise included, and names no frame after `flush_all`;
//! - **hostile input** (random bytes, truncated and bit-flipped segments, any checksum hint)
//!   never panics, every frame is delivered exactly once, and every super-frame's metadata
//!   validates and segments into the number of frames it claims.

mod common;

use common::{Spec, DEST_OPTS, HOP_BY_HOP, ROUTING, TCP_TIMESTAMPS};
use proptest::prelude::*;
use pvio_offload::gro::{Cause, FlushReason, GroRefTable, GroTable, FLOW_BUF_LEN};
use pvio_offload::gso::{ChecksumMode, Segmenter};
use pvio_offload::{parse, ChecksumState, OffloadMeta};

/// Flag bits GRO can coalesce (no URG, RST, SYN): FIN, PSH, ACK, ECE, CWR.
const COALESCIBLE_FLAGS: u8 = 0x01 | 0x08 | 0x10 | 0x40 | 0x80;

fn tcp_spec(max_payload: usize) -> impl Strategy<Value = Spec> {
    let vlans =
        prop_oneof![Just(vec![]), Just(vec![(0x8100, 0x0123)]), Just(vec![(0x88a8, 0x0fff), (0x8100, 1)])];
    let ext = prop_oneof![
        Just(vec![]),
        Just(vec![HOP_BY_HOP]),
        Just(vec![DEST_OPTS]),
        Just(vec![HOP_BY_HOP, ROUTING, DEST_OPTS]),
    ];
    let tcp_options = prop_oneof![
        Just(vec![]),
        Just(TCP_TIMESTAMPS.to_vec()),
        (1usize..=10).prop_map(|w| vec![1u8; w * 4])
    ];
    (
        (any::<bool>(), vlans, ext, tcp_options),
        (any::<u8>(), any::<u32>(), any::<u16>(), any::<bool>(), any::<u8>()),
        (1u16..=1500, 2usize..=60, any::<u32>()),
    )
        .prop_map(
            move |((v6, vlans, ext, tcp_options), (flags, seq, ident, dont_frag, tos), (mss, segs, seed))| {
                let mut s = Spec::tcp4(1, 0, mss);
                s.v6 = v6;
                s.vlans = vlans;
                s.ext_headers = if v6 { ext } else { vec![] };
                s.tcp_options = tcp_options;
                s.tcp_flags = flags & COALESCIBLE_FLAGS;
                s.tcp_reserved = (seed >> 24) as u8 & 0x0f;
                s.seq = seq;
                s.ack = seed;
                s.ident = ident;
                s.dont_frag = dont_frag;
                s.tos = tos;
                s.ecn = s.tcp_flags & 0x80 != 0;
                s.seed = seed;
                let mss = usize::from(mss);
                let last = 1 + seed as usize % mss;
                s.payload_len = ((segs - 1) * mss + last).min(max_payload).max(mss + 1);
                s
            },
        )
}

/// The super-frame of `s` and its segments (full checksums).
fn build(s: &Spec) -> (Vec<u8>, OffloadMeta, Vec<Vec<u8>>) {
    let (frame, meta) = s.build();
    let valid = meta.validate(&frame).unwrap();
    let seg = Segmenter::new(&frame, &valid, ChecksumMode::Full).unwrap();
    let mut buf = vec![0; seg.frames_len()];
    let segs = seg.write_frames(&mut buf).unwrap().map(<[u8]>::to_vec).collect();
    (frame, meta, segs)
}

/// What one delivery stands for: the frames that went in (a super-frame segmented again).
fn expand(frame: &[u8], meta: &OffloadMeta, segments: u32) -> Vec<Vec<u8>> {
    if segments == 1 {
        return vec![frame.to_vec()];
    }
    let valid = meta.validate(frame).expect("a super-frame's metadata validates");
    let seg = Segmenter::new(frame, &valid, ChecksumMode::Full).expect("and segments");
    assert_eq!(seg.len(), segments as usize, "into as many frames as it holds");
    let mut buf = vec![0; seg.frames_len()];
    seg.write_frames(&mut buf).unwrap().map(<[u8]>::to_vec).collect()
}

fn csum_hint(validated: bool) -> ChecksumState {
    if validated {
        ChecksumState::Validated
    } else {
        ChecksumState::None
    }
}

/// The TCP source port of a frame known to be TCP.
fn sport(frame: &[u8]) -> u16 {
    let l = parse(frame).unwrap();
    u16::from_be_bytes([frame[l.l4_offset], frame[l.l4_offset + 1]])
}

/// Feeds `frames` to a `FLOWS`-flow table, flushes, and returns the per-flow (by source
/// port) expansion of what was delivered, with the number of deliveries.
fn run<const FLOWS: usize>(frames: &[Vec<u8>], validated: bool) -> (Vec<(u16, Vec<u8>)>, usize) {
    let mut buf = vec![0u8; FLOWS * FLOW_BUF_LEN];
    let mut gro = GroTable::<FLOWS>::new(&mut buf).unwrap();
    let mut out = Vec::new();
    let mut deliveries = 0;
    let mut sink = |d: pvio_offload::Delivery<'_>| {
        deliveries += 1;
        for f in expand(d.frame, &d.meta, d.segments) {
            out.push((sport(&f), f));
        }
    };
    for f in frames {
        gro.receive(f, csum_hint(validated), &mut sink);
    }
    gro.flush_all(&mut sink);
    (out, deliveries)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 96 }))]

    /// "Segmenting what GRO built gives back the original frames", and what GRO built is the
    /// super-frame they were cut from.
    #[test]
    fn segments_of_a_super_frame_coalesce_back_into_it(s in tcp_spec(60_000), validated in any::<bool>()) {
        let (frame, meta, segs) = build(&s);
        let mut buf = vec![0u8; FLOW_BUF_LEN];
        let mut gro = GroTable::<1>::new(&mut buf).unwrap();
        let mut out = Vec::new();
        for f in &segs {
            gro.receive(f, csum_hint(validated), |d| {
                out.push((d.frame.to_vec(), d.meta, d.segments, d.fixed_ip_id, d.cause))
            });
        }
        gro.flush_all(|d| out.push((d.frame.to_vec(), d.meta, d.segments, d.fixed_ip_id, d.cause)));
        prop_assert_eq!(out.len(), 1);
        let (got, got_meta, n, fixed, cause) = &out[0];
        prop_assert_eq!(*n as usize, segs.len());
        prop_assert!(!fixed);
        prop_assert!(got == &frame, "super-frame differs:\n{}", common::hex_diff(&frame, got));
        prop_assert_eq!(got_meta, &OffloadMeta { ecn: s.tcp_flags & 0x80 != 0, ..meta });
        let last_short = s.payload_len % usize::from(s.gso_size) != 0;
        let want = if s.tcp_flags & 0x09 != 0 {
            FlushReason::EndFlags
        } else if last_short {
            FlushReason::ShortSegment
        } else {
            FlushReason::Explicit
        };
        prop_assert_eq!(*cause, Cause::Flushed(want));
        prop_assert_eq!(expand(got, got_meta, *n), segs);
    }

    /// Interleaved flows, fewer slots than flows, and dropped / duplicated / swapped /
    /// corrupted segments: per flow, what leaves (segmented again) is what came in, in order.
    #[test]
    fn every_flow_leaves_in_order_whatever_arrives(
        specs in prop::collection::vec(tcp_spec(12_000), 1..=4),
        schedule in prop::collection::vec((0usize..4, 0u8..16), 0..200),
        validated in any::<bool>(),
    ) {
        let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let s = Spec { sport: 100 + i as u16, seed: s.seed ^ i as u32, ..s.clone() };
                build(&s).2.into()
            })
            .collect();
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut pick = schedule.into_iter().cycle();
        while queues.iter().any(|q| !q.is_empty()) {
            let (which, fate) = pick.next().unwrap_or((0, 0));
            let n = queues.len();
            let Some(k) = (0..n).map(|d| (which + d) % n).find(|&k| !queues[k].is_empty()) else { break };
            let q = &mut queues[k];
            let f = q.pop_front().unwrap();
            match fate {
                0 => {}                                   // dropped
                1 => frames.extend([f.clone(), f]),      // duplicated
                2 if !q.is_empty() => {                  // swapped with the next of its flow
                    let g = q.pop_front().unwrap();
                    frames.extend([g, f]);
                }
                // A bad TCP checksum (when GRO checks): it must not overtake its flow.
                3 if !validated => {
                    let mut f = f;
                    let n = f.len();
                    f[n - 1] ^= 0x5a;
                    frames.push(f);
                }
                _ => frames.push(f),
            }
        }
        let per_flow = |v: &[(u16, Vec<u8>)], p: u16| -> Vec<Vec<u8>> {
            v.iter().filter(|(s, _)| *s == p).map(|(_, f)| f.clone()).collect()
        };
        let input: Vec<(u16, Vec<u8>)> = frames.iter().map(|f| (sport(f), f.clone())).collect();
        let (two, d2) = run::<2>(&frames, validated);
        let (four, d4) = run::<4>(&frames, validated);
        prop_assert_eq!(two.len(), frames.len());
        prop_assert_eq!(four.len(), frames.len());
        prop_assert!(d4 <= d2, "more slots never split more");
        for p in 100..104 {
            let want = per_flow(&input, p);
            prop_assert!(per_flow(&two, p) == want, "flow {} through 2 slots", p);
            prop_assert!(per_flow(&four, p) == want, "flow {} through 4 slots", p);
        }
    }

    /// Hostile input never panics; every frame is delivered once; super-frames are sound.
    #[test]
    fn hostile_frames_are_delivered_once_and_never_panic(
        specs in prop::collection::vec(tcp_spec(6_000), 1..=3),
        noise in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..8),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 0..40),
        hints in prop::collection::vec((0u8..3, any::<u16>(), any::<u16>()), 1..8),
    ) {
        let mut frames: Vec<Vec<u8>> = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            frames.extend(build(&Spec { sport: 200 + i as u16, ..s.clone() }).2);
        }
        for (i, (at, x, how)) in edits.iter().enumerate() {
            if frames.is_empty() {
                break;
            }
            let k = (at / 7) % frames.len();
            let f = &mut frames[k];
            match how {
                0 => { let n = at % (f.len() + 1); f.truncate(n); }
                1 => { let n = f.len(); if n > 0 { f[at % n] ^= x | 1; } }
                2 => { let g = f.clone(); frames.insert(i % (frames.len() + 1), g); }
                _ => { let n = f.len(); if n > 14 { f[14 + at % (n - 14).min(60)] = *x; } }
            }
        }
        for (i, n) in noise.into_iter().enumerate() {
            let at = (i * 5) % (frames.len() + 1);
            frames.insert(at, n);
        }
        let mut buf = vec![0u8; 2 * FLOW_BUF_LEN];
        let mut gro = GroTable::<2>::new(&mut buf).unwrap();
        let mut delivered = 0usize;
        let mut sink = |d: pvio_offload::Delivery<'_>| {
            delivered += d.segments as usize;
            if d.segments > 1 {
                let _ = expand(d.frame, &d.meta, d.segments);
            }
        };
        for (i, f) in frames.iter().enumerate() {
            let (kind, start, offset) = hints[i % hints.len()];
            let hint = match kind {
                0 => ChecksumState::None,
                1 => ChecksumState::Validated,
                _ => ChecksumState::Partial { start: start % 128, offset: offset % 32 },
            };
            gro.receive(f, hint, &mut sink);
        }
        gro.flush_all(&mut sink);
        prop_assert_eq!(delivered, frames.len());
    }
    /// GRO by reference is GRO: the same deliveries, once the pieces are gathered.
    #[test]
    fn by_reference_delivers_what_the_contiguous_table_does(
        specs in prop::collection::vec(tcp_spec(12_000), 1..=3),
        schedule in prop::collection::vec((0usize..3, 0u8..8), 1..100),
        noise in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..4),
        validated in any::<bool>(),
    ) {
        let mut queues: Vec<std::collections::VecDeque<Vec<u8>>> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| build(&Spec { sport: 300 + i as u16, ..s.clone() }).2.into())
            .collect();
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut pick = schedule.into_iter().cycle();
        while let Some(k) = {
            let (which, _) = pick.next().unwrap_or((0, 0));
            let n = queues.len();
            (0..n).map(|d| (which + d) % n).find(|&k| !queues[k].is_empty())
        } {
            let f = queues[k].pop_front().unwrap();
            let (_, fate) = pick.next().unwrap_or((0, 0));
            match fate {
                0 => frames.extend([f.clone(), f]),
                1 => {
                    let mut f = f;
                    let n = f.len();
                    f[n - 1] ^= 0x21;
                    frames.push(f);
                }
                _ => frames.push(f),
            }
        }
        for (i, n) in noise.into_iter().enumerate() {
            let at = (i * 11) % (frames.len() + 1);
            frames.insert(at, n);
        }
        type Out = (Vec<u8>, OffloadMeta, u32, bool, Cause);
        let mut buf = vec![0u8; 2 * FLOW_BUF_LEN];
        let mut gro = GroTable::<2>::new(&mut buf).unwrap();
        let mut by_ref = GroRefTable::<usize, 2, 64>::new(FLOW_BUF_LEN).unwrap();
        let (mut want, mut got): (Vec<Out>, Vec<Out>) = (Vec::new(), Vec::new());
        let gather = |d: pvio_offload::RefDelivery<'_, usize>, frames: &[Vec<u8>]| -> Out {
            let mut f = d.header.to_vec();
            for p in d.pieces {
                f.extend_from_slice(&frames[p.frame][p.offset..p.offset + p.len]);
            }
            (f, d.meta, d.segments, d.fixed_ip_id, d.cause)
        };
        for (i, f) in frames.iter().enumerate() {
            gro.receive(f, csum_hint(validated), |d| {
                want.push((d.frame.to_vec(), d.meta, d.segments, d.fixed_ip_id, d.cause))
            });
            by_ref.receive(f, i, csum_hint(validated), |d| got.push(gather(d, &frames)));
        }
        gro.flush_all(|d| want.push((d.frame.to_vec(), d.meta, d.segments, d.fixed_ip_id, d.cause)));
        by_ref.flush_all(|d| got.push(gather(d, &frames)));
        prop_assert!((0..frames.len()).all(|i| !by_ref.refers_to(i)));
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert!(g == w, "by reference: {:?}, contiguous: {:?}", (g.1, g.2, g.4), (w.1, w.2, w.4));
        }
    }
}
