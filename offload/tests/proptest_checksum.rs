//! Property tests of the checksum engine against the naive reference and etherparse.

use proptest::prelude::*;
use pvio_offload::checksum::{self, reference, Engine};

fn etherparse_checksum(data: &[u8]) -> u16 {
    // etherparse returns the checksum in native byte order, ready for `to_ne_bytes`.
    etherparse::checksum::Sum16BitWords::new().add_slice(data).ones_complement().to_be()
}

/// ±0 are the same ones'-complement number.
fn same_ones(a: u16, b: u16) -> bool {
    a == b || (a | b == 0xffff && (a == 0 || b == 0))
}

fn buffer(max: usize) -> impl Strategy<Value = (Vec<u8>, usize)> {
    (0..max, 0usize..64)
        .prop_flat_map(|(len, start)| (proptest::collection::vec(any::<u8>(), len + start), Just(start)))
}

proptest! {
    // Few cases: each is up to 300 KiB summed by five implementations in a debug build.
    #![proptest_config(ProptestConfig::with_cases(20))]

    /// Every engine equals the reference at every offset and length up to ~300 KiB, and the
    /// dispatching `sum` and etherparse agree.
    #[test]
    fn engines_match_reference_and_etherparse((buf, start) in buffer(300 * 1024)) {
        let data = &buf[start..];
        let want = reference::sum(data);
        prop_assert_eq!(checksum::sum(data), want);
        for e in Engine::ALL.into_iter().filter(|e| e.is_available()) {
            prop_assert_eq!(e.sum(data), Some(want), "{:?}", e);
        }
        prop_assert_eq!(checksum::checksum(data), etherparse_checksum(data));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Small inputs hit every tail path of every kernel.
    #[test]
    fn small_inputs_match((buf, start) in buffer(700)) {
        let data = &buf[start..];
        let want = reference::sum(data);
        for e in Engine::ALL.into_iter().filter(|e| e.is_available()) {
            prop_assert_eq!(e.sum(data), Some(want), "{:?}", e);
        }
        prop_assert_eq!(checksum::checksum(data), etherparse_checksum(data));
    }

    /// Splitting anywhere (odd split points included) and combining with `combine_at` gives
    /// the whole sum.
    #[test]
    fn split_and_combine_at(data in proptest::collection::vec(any::<u8>(), 0..4000), cut in any::<prop::sample::Index>()) {
        let cut = cut.index(data.len() + 1);
        let whole = checksum::sum(&data);
        let (a, b) = data.split_at(cut);
        prop_assert_eq!(checksum::combine_at(checksum::sum(a), checksum::sum(b), cut), whole);
    }

    /// RFC 1624: patching a 16-bit word (or a 32-bit field) gives the recomputed checksum.
    #[test]
    fn incremental_update_equals_recompute(
        mut data in proptest::collection::vec(any::<u8>(), 4..400),
        at in any::<prop::sample::Index>(),
        new16 in any::<u16>(),
        new32 in any::<u32>(),
    ) {
        let words = data.len() / 2;
        let i = at.index(words) * 2;
        let hc = checksum::checksum(&data);
        let old = u16::from_be_bytes([data[i], data[i + 1]]);
        data[i..i + 2].copy_from_slice(&new16.to_be_bytes());
        prop_assert!(same_ones(checksum::update16(hc, old, new16), checksum::checksum(&data)));
        if words >= 2 {
            let j = at.index(words - 1) * 2;
            let hc = checksum::checksum(&data);
            let old = u32::from_be_bytes([data[j], data[j + 1], data[j + 2], data[j + 3]]);
            data[j..j + 4].copy_from_slice(&new32.to_be_bytes());
            prop_assert!(same_ones(checksum::update32(hc, old, new32), checksum::checksum(&data)));
        }
    }

    /// Completing a partial checksum makes the packet verify, at any start and any even field
    /// offset (a checksum field is 16-bit aligned relative to its start), and any bit flip
    /// afterwards makes it fail.
    #[test]
    fn complete_then_verify(
        mut pkt in proptest::collection::vec(any::<u8>(), 2..3000),
        start in any::<prop::sample::Index>(),
        field in any::<prop::sample::Index>(),
        pseudo in any::<u16>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let start = start.index(pkt.len() - 1);
        let offset = field.index((pkt.len() - start) / 2) * 2;
        pkt[start + offset..start + offset + 2].copy_from_slice(&pseudo.to_be_bytes());
        let written = checksum::complete_partial(&mut pkt, start, offset).unwrap();
        prop_assert_ne!(written, 0);
        prop_assert!(checksum::verify(&pkt[start..], pseudo));
        let bit = flip.index((pkt.len() - start) * 8);
        pkt[start + bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!checksum::verify(&pkt[start..], pseudo));
    }
}

#[test]
fn every_alignment_and_length_up_to_two_kib() {
    let buf: Vec<u8> = (0..2200u32).map(|i| (i * 7919 % 251) as u8 ^ 0xa5).collect();
    for start in 0..64 {
        for len in (0..2048).step_by(7).chain([63, 64, 65, 127, 128, 129, 255, 256, 257]) {
            let d = &buf[start..start + len];
            assert_eq!(checksum::sum(d), reference::sum(d), "start {start} len {len}");
        }
    }
}
