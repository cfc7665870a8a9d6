//! The Internet checksum (RFC 1071): ones'-complement sums of 16-bit big-endian words.
//!
//! Everything here is a pure function over bytes and 16-bit sums:
//!
//! - [`sum`] is the folded, *non-complemented* sum of a byte slice, computed by the fastest
//!   [`Engine`] this CPU has; [`checksum`] is its complement, the value a header carries.
//! - [`combine`] adds two sums; [`combine_at`] adds the sum of a piece that starts `offset`
//!   bytes into the region (a piece starting at an odd offset is byte-swapped first).
//! - [`pseudo_header_v4`] and [`pseudo_header_v6`] sum the TCP/UDP pseudo-headers.
//! - [`update16`] and [`update32`] patch a checksum after a field changed (RFC 1624, eqn. 3).
//! - [`complete_partial`] finishes a `CHECKSUM_PARTIAL` packet (virtio `NEEDS_CSUM`, Xen
//!   `csum_blank`) and [`verify`] checks a received one.
//!
//! A sum is a `u16` in `0..=0xffff` where `0` means "all input bytes were zero" and `0xffff`
//! is the other ones'-complement zero; all engines agree bit for bit with [`reference::sum`],
//! for every length, alignment and size (no 32-bit accumulator anywhere).

pub mod reference;
mod scalar;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod x86;

use thiserror::Error;

/// Inputs shorter than this skip the vector engines: the scalar `u64` loop keeps up with
/// them there, without the vector set-up and the final horizontal sums.
pub(crate) const SIMD_MIN_LEN: usize = 256;

/// One implementation of the sum. [`Engine::best`] is what [`sum`] uses; the others exist so
/// tests and benchmarks can exercise and compare each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// [`reference::sum`]: one big-endian word at a time.
    Reference,
    /// Portable: little-endian `u64` words added with end-around carry.
    Scalar,
    /// x86-64 SSE2, on targets that enable it (every hosted x86-64 target; not soft-float
    /// kernel targets such as `x86_64-unknown-none`): 64 bytes per iteration.
    Sse2,
    /// x86-64 AVX2: 128 bytes per iteration. Chosen at run time with `std`
    /// (`is_x86_feature_detected!`), at compile time (`target_feature = "avx2"`) without.
    Avx2,
}

impl Engine {
    /// Every engine, slowest first.
    pub const ALL: [Engine; 4] = [Engine::Reference, Engine::Scalar, Engine::Sse2, Engine::Avx2];

    /// Whether this engine can run on this CPU (and this target).
    pub fn is_available(self) -> bool {
        match self {
            Engine::Reference | Engine::Scalar => true,
            Engine::Sse2 => cfg!(all(target_arch = "x86_64", target_feature = "sse2")),
            Engine::Avx2 => avx2_available(),
        }
    }

    /// The fastest available engine: the one [`sum`] uses for inputs of 256 bytes and more.
    pub fn best() -> Engine {
        if avx2_available() {
            Engine::Avx2
        } else if cfg!(all(target_arch = "x86_64", target_feature = "sse2")) {
            Engine::Sse2
        } else {
            Engine::Scalar
        }
    }

    /// The folded sum of `data` computed by this engine, or `None` if it cannot run here.
    pub fn sum(self, data: &[u8]) -> Option<u16> {
        let le = match self {
            Engine::Reference => return Some(reference::sum(data)),
            Engine::Scalar => scalar::sum_le(data),
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            Engine::Sse2 => sum_sse2(data),
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            Engine::Avx2 => sum_avx2_checked(data)?,
            #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
            Engine::Sse2 | Engine::Avx2 => return None,
        };
        Some(fold(le).swap_bytes())
    }
}

/// Whether the AVX2 kernel may run: known at compile time, or detected at run time with `std`.
fn avx2_available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        true
    }
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "sse2",
        not(target_feature = "avx2"),
        feature = "std"
    ))]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "sse2",
        any(target_feature = "avx2", feature = "std")
    )))]
    {
        false
    }
}

/// The AVX2 kernel behind the availability check.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn sum_avx2_checked(data: &[u8]) -> Option<u64> {
    if !avx2_available() {
        return None;
    }
    // SAFETY: `avx2_available()` just confirmed the CPU (or the compile-time target) has AVX2,
    // the only requirement of the `#[target_feature(enable = "avx2")]` kernel.
    Some(unsafe { x86::sum_avx2(data) })
}

/// The SSE2 kernel.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn sum_sse2(data: &[u8]) -> u64 {
    // SAFETY: this is compiled only where the target enables SSE2 (every hosted x86-64
    // target; not the soft-float `x86_64-unknown-none`, which uses the scalar engine).
    unsafe { x86::sum_sse2(data) }
}

/// The folded ones'-complement sum of `data` as big-endian 16-bit words (an odd final byte is
/// padded with a zero byte), not complemented. Uses [`Engine::best`] for inputs of 256 bytes
/// and more and a scalar `u64` loop below that.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if data.len() >= SIMD_MIN_LEN {
        let le = match sum_avx2_checked(data) {
            Some(le) => le,
            None => sum_sse2(data),
        };
        return fold(le).swap_bytes();
    }
    fold(scalar::sum_le_small(data)).swap_bytes()
}

/// The Internet checksum of `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Folds a 64-bit accumulator to 16 bits with end-around carry (at most four rounds).
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Ones'-complement addition of two sums.
#[inline]
pub fn combine(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// Adds `part`, the sum of a piece that begins `offset` bytes after the start of the region
/// `acc` covers, to `acc`. A piece starting at an odd offset had its bytes paired the other
/// way round, so its sum is byte-swapped first (RFC 1071 §2(B)).
#[inline]
pub fn combine_at(acc: u16, part: u16, offset: usize) -> u16 {
    let part = if offset % 2 == 1 { part.swap_bytes() } else { part };
    combine(acc, part)
}

/// The folded sum of the IPv4 TCP/UDP pseudo-header (RFC 793 §3.1, RFC 768): source and
/// destination address, zero and `protocol`, and the L4 length (header plus payload).
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u16 {
    let acc = u64::from(u16::from_be_bytes([src[0], src[1]]))
        + u64::from(u16::from_be_bytes([src[2], src[3]]))
        + u64::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u64::from(u16::from_be_bytes([dst[2], dst[3]]))
        + u64::from(protocol)
        + u64::from(l4_len);
    fold(acc)
}

/// The folded sum of the IPv6 upper-layer pseudo-header (RFC 8200 §8.1): source and
/// destination address, the 32-bit upper-layer length and the final next-header value.
#[inline]
pub fn pseudo_header_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, l4_len: u32) -> u16 {
    let mut acc = u64::from(next_header) + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff);
    for w in src.chunks_exact(2).chain(dst.chunks_exact(2)) {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    fold(acc)
}

/// The checksum after a 16-bit word covered by checksum `hc` changed from `old` to `new`
/// (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    !combine(combine(!hc, !old), new)
}

/// [`update16`] for a 32-bit field (an address, a sequence number) at an even offset.
#[inline]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let hc = update16(hc, (old >> 16) as u16, (new >> 16) as u16);
    update16(hc, old as u16, new as u16)
}

/// Whether `data` (an L4 header with its checksum field filled in, plus payload) verifies
/// against `pseudo`, the folded pseudo-header sum: the total folds to `0xffff`.
#[inline]
pub fn verify(data: &[u8], pseudo: u16) -> bool {
    combine(pseudo, sum(data)) == 0xffff
}

/// Why a partial checksum cannot be completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ChecksumError {
    /// `csum_start + csum_offset + 2` runs beyond the buffer.
    #[error(
        "partial checksum field at csum_start {start} + csum_offset {offset} (+2 bytes) lies beyond the {len}-byte packet"
    )]
    FieldOutOfBounds {
        /// `csum_start`.
        start: usize,
        /// `csum_offset`.
        offset: usize,
        /// The packet length.
        len: usize,
    },
}

/// Completes a `CHECKSUM_PARTIAL` packet the way virtio's `NEEDS_CSUM`, Xen's `csum_blank`
/// and Linux's `skb_checksum_help` define it: the 16-bit field at `start + offset` holds the
/// folded, non-complemented pseudo-header sum; the checksum is the complement of the sum of
/// `packet[start..]` (that field included), written big-endian into the field. A result of
/// `0` is written as `0xffff` (the other zero; Linux's `CSUM_MANGLED_0`, and what UDP
/// requires). Returns the value written.
pub fn complete_partial(packet: &mut [u8], start: usize, offset: usize) -> Result<u16, ChecksumError> {
    let err = ChecksumError::FieldOutOfBounds { start, offset, len: packet.len() };
    let field = start.checked_add(offset).ok_or(err)?;
    let end = field.checked_add(2).ok_or(err)?;
    if end > packet.len() {
        return Err(err);
    }
    let mut csum = !sum(&packet[start..]);
    if csum == 0 {
        csum = 0xffff;
    }
    packet[field..end].copy_from_slice(&csum.to_be_bytes());
    Ok(csum)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 §3's example.
    const RFC1071_BYTES: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    /// An IPv4 header with its checksum (0xb861) filled in.
    const IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0,
        0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn rfc1071_example() {
        assert_eq!(reference::sum(&RFC1071_BYTES), 0xddf2);
        for e in Engine::ALL.into_iter().filter(|e| e.is_available()) {
            assert_eq!(e.sum(&RFC1071_BYTES), Some(0xddf2), "{e:?}");
        }
        assert_eq!(sum(&RFC1071_BYTES), 0xddf2);
        assert_eq!(checksum(&RFC1071_BYTES), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        assert_eq!(checksum(&IPV4_HEADER), 0);
        let mut zeroed = IPV4_HEADER;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(sum(&[0xff]), 0xff00);
    }

    #[test]
    fn all_zero_and_all_ones() {
        for len in [0, 1, 2, 63, 64, 65, 200, 4096] {
            assert_eq!(sum(&vec![0; len]), 0, "zeros {len}");
        }
        assert_eq!(sum(&[0xff; 2]), 0xffff);
        assert_eq!(sum(&[0xff; 4096]), 0xffff);
        // 2048 words of 0xffff, then 0xff00: 0xffff + 0xff00 folds to 0xff00.
        assert_eq!(sum(&[0xff; 4097]), 0xff00);
    }

    #[test]
    fn engines_agree_on_every_length_and_alignment_of_a_fixed_buffer() {
        let buf: Vec<u8> = (0..1200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        // Under miri: every alignment of an 8-byte word and lengths past a 64-byte block.
        let (starts, max_len) = if cfg!(miri) { (9, 100) } else { (33, 600) };
        for start in 0..starts {
            for len in 0..(buf.len() - start).min(max_len) {
                let s = &buf[start..start + len];
                let want = reference::sum(s);
                assert_eq!(sum(s), want, "start {start} len {len}");
                for e in Engine::ALL.into_iter().filter(|e| e.is_available()) {
                    assert_eq!(e.sum(s), Some(want), "{e:?} start {start} len {len}");
                }
            }
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // 5 MiB per engine: arithmetic, not memory safety; native only.
    fn huge_input_of_ones_does_not_overflow() {
        // 5 MiB of 0xff: 2.6 million words of 0xffff, far past where a 32-bit accumulator
        // would wrap. The ones'-complement sum of any number of 0xffff words is 0xffff.
        let big = vec![0xff; 5 << 20];
        for e in Engine::ALL.into_iter().filter(|e| e.is_available()) {
            assert_eq!(e.sum(&big), Some(0xffff), "{e:?}");
        }
        // Odd length: the final 0xff is padded to 0xff00, and 0xffff + 0xff00 folds to 0xff00.
        assert_eq!(sum(&big[1..]), 0xff00);
    }

    #[test]
    // Megabytes per engine: hours under miri. The kernels' memory accesses are the same at
    // every length and are covered under miri by the alignment sweep above; what this test
    // adds is the arithmetic of lane widening, which native runs check.
    #[cfg_attr(miri, ignore)]
    fn engines_agree_across_lane_widening_boundaries() {
        // The SIMD kernels widen their 32-bit lanes every 4096 iterations (256 KiB for SSE2,
        // 512 KiB for AVX2); cross several boundaries with random words, with all-zero words
        // (the most negative biased value) and with all-ones words (the most positive).
        let len = (3 << 20) + 77;
        let random: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for buf in [random, vec![0; len], vec![0xff; len]] {
            for (start, end) in
                [(0, len), (1, len), (3, len - 1), (0, (512 << 10) + 128), (5, (256 << 10) + 70)]
            {
                let s = &buf[start..end];
                let want = reference::sum(s);
                for e in Engine::ALL.into_iter().filter(|e| e.is_available()) {
                    assert_eq!(e.sum(s), Some(want), "{e:?} {start}..{end}");
                }
            }
        }
    }

    #[test]
    fn combine_at_odd_offset_swaps() {
        let data = [0x01, 0x02, 0x03, 0x04, 0x05];
        let whole = sum(&data);
        assert_eq!(combine_at(sum(&data[..1]), sum(&data[1..]), 1), whole);
        assert_eq!(combine_at(sum(&data[..3]), sum(&data[3..]), 3), whole);
        assert_eq!(combine_at(sum(&data[..2]), sum(&data[2..]), 2), whole);
    }

    #[test]
    fn pseudo_headers_by_hand() {
        // 192.168.0.1 -> 192.168.0.199, UDP, length 0x5f.
        let v4 = pseudo_header_v4([192, 168, 0, 1], [192, 168, 0, 199], 17, 0x5f);
        assert_eq!(v4, fold(0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 17 + 0x5f));
        let mut src = [0u8; 16];
        src[0] = 0xfe;
        src[1] = 0x80;
        src[15] = 1;
        let mut dst = [0u8; 16];
        dst[15] = 2;
        let v6 = pseudo_header_v6(src, dst, 6, 0x0001_0004);
        assert_eq!(v6, fold(0xfe80 + 1 + 2 + 6 + 1 + 4));
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut hdr = IPV4_HEADER;
        let old_ttl_proto = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new_ttl_proto = u16::from_be_bytes([hdr[8], hdr[9]]);
        let hc = update16(0xb861, old_ttl_proto, new_ttl_proto);
        hdr[10..12].copy_from_slice(&hc.to_be_bytes());
        assert_eq!(checksum(&hdr), 0);
        let old_src = u32::from_be_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
        hdr[12..16].copy_from_slice(&[10, 0, 0, 1]);
        let hc = update32(hc, old_src, 0x0a00_0001);
        hdr[10..12].copy_from_slice(&hc.to_be_bytes());
        assert_eq!(checksum(&hdr), 0);
    }

    #[test]
    fn complete_partial_writes_the_checksum_and_checks_bounds() {
        // A UDP header + 3 payload bytes whose checksum field holds the pseudo-header sum.
        let pseudo = pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], 17, 11);
        let mut pkt = [0x12, 0x34, 0x00, 0x35, 0x00, 0x0b, 0, 0, b'a', b'b', b'c'];
        pkt[6..8].copy_from_slice(&pseudo.to_be_bytes());
        let written = complete_partial(&mut pkt, 0, 6).unwrap();
        assert_eq!(u16::from_be_bytes([pkt[6], pkt[7]]), written);
        assert!(verify(&pkt, pseudo));
        pkt[9] ^= 1;
        assert!(!verify(&pkt, pseudo));
        assert_eq!(
            complete_partial(&mut pkt, 4, 6),
            Err(ChecksumError::FieldOutOfBounds { start: 4, offset: 6, len: 11 })
        );
        assert!(complete_partial(&mut pkt, usize::MAX, 6).is_err());
        assert!(complete_partial(&mut pkt, 9, 0).is_ok());
        assert!(complete_partial(&mut pkt, 10, 0).is_err());
    }

    #[test]
    fn complete_partial_never_writes_zero() {
        // Payload chosen so that the sum over [start..] is 0xffff: the checksum would be 0.
        let mut pkt = [0x00, 0x00, 0xff, 0xff];
        assert_eq!(complete_partial(&mut pkt, 0, 0).unwrap(), 0xffff);
        assert_eq!(pkt, [0xff, 0xff, 0xff, 0xff]);
    }
}
