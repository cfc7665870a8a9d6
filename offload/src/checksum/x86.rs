//! x86-64 SIMD engines: SSE2 (part of the x86-64 baseline, always present) and AVX2.
//!
//! Both sum 16-bit little-endian words with `pmaddwd` (`_mm_madd_epi16` /
//! `_mm256_madd_epi16`): each word `w` is XORed with `0x8000`, which makes it the signed
//! 16-bit value `w - 32768`, and multiplied by a vector of ones, which adds adjacent pairs
//! into signed 32-bit lanes. That is one XOR, one multiply-add and one add per vector, no
//! shuffles. A pair adds at most 2^16 in magnitude to a lane, so the 32-bit lanes take
//! [`WIDEN_EVERY`] iterations safely before they are sign-extended into 64-bit accumulators.
//! The bias comes back at the end: the true word sum is the lane total plus 32768 for every
//! word summed. Several independent accumulators hide the add latency; the tail shorter
//! than one vector goes to the scalar loop.
//!
//! The kernels are safe `#[target_feature]` functions: the arithmetic intrinsics are safe to
//! call inside them, and the only `unsafe` left is each unaligned load, whose pointer is
//! derived from a slice chunk of the right length.

use core::arch::x86_64::{
    __m128i, __m256i, _mm256_add_epi32, _mm256_add_epi64, _mm256_castsi256_si128, _mm256_cvtepi32_epi64,
    _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_set1_epi16, _mm256_setzero_si256,
    _mm256_xor_si256, _mm_add_epi32, _mm_add_epi64, _mm_cvtsi128_si64, _mm_loadu_si128, _mm_madd_epi16,
    _mm_set1_epi16, _mm_setzero_si128, _mm_srai_epi32, _mm_unpackhi_epi32, _mm_unpackhi_epi64,
    _mm_unpacklo_epi32, _mm_xor_si128,
};

use super::scalar::{add_carry, sum_le_small, BLOCK};

/// Vector iterations each 32-bit lane takes before it is widened: a lane gains at most 2^16
/// in magnitude per iteration, so it stays below 2^28 in magnitude, far inside `i32`.
const WIDEN_EVERY: usize = 4096;

/// Little-endian-word sum with SSE2 (same contract as `scalar::sum_le`). SSE2 is part of the
/// x86-64 baseline, so callers can always uphold the `target_feature` requirement.
#[target_feature(enable = "sse2")]
pub(crate) fn sum_sse2(data: &[u8]) -> u64 {
    let mut total = 0u64;
    for block in data.chunks(BLOCK) {
        total = add_carry(total, u64::from(super::fold(block_sse2(block))));
    }
    total
}

/// Little-endian-word sum with AVX2 (same contract as `scalar::sum_le`).
#[target_feature(enable = "avx2")]
pub(crate) fn sum_avx2(data: &[u8]) -> u64 {
    let mut total = 0u64;
    for block in data.chunks(BLOCK) {
        total = add_carry(total, u64::from(super::fold(block_avx2(block))));
    }
    total
}

/// The two signed 64-bit lanes of `v`, added.
#[target_feature(enable = "sse2")]
#[inline]
fn hsum128_i64(v: __m128i) -> i64 {
    _mm_cvtsi128_si64(v) + _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v))
}

/// The four signed 32-bit lanes of `v`, sign-extended to 64 bits (as two `i64` lanes each
/// holding the sum of two of them).
#[target_feature(enable = "sse2")]
#[inline]
fn widen128(v: __m128i) -> __m128i {
    // SSE2 has no sign-extending move: interleave each lane with its sign word.
    let sign = _mm_srai_epi32::<31>(v);
    _mm_add_epi64(_mm_unpacklo_epi32(v, sign), _mm_unpackhi_epi32(v, sign))
}

/// The exact (unfolded) sum of the little-endian words of one block (at most [`BLOCK`]
/// bytes: below 2^46).
#[target_feature(enable = "sse2")]
#[inline]
fn block_sse2(block: &[u8]) -> u64 {
    let zero = _mm_setzero_si128();
    let bias = _mm_set1_epi16(i16::MIN);
    let ones = _mm_set1_epi16(1);
    let mut wide = zero;
    let mut chunks = block.chunks_exact(64);
    let mut vectors = 0usize;
    loop {
        let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
        let mut n = 0;
        while n < WIDEN_EVERY {
            let Some(c) = chunks.next() else { break };
            let p = c.as_ptr();
            // SAFETY: `p..p + 16` lies inside `c` (64 readable bytes); `loadu` is unaligned.
            let v0 = unsafe { _mm_loadu_si128(p.cast::<__m128i>()) };
            // SAFETY: `p + 16..p + 32` lies inside `c`; `loadu` is unaligned.
            let v1 = unsafe { _mm_loadu_si128(p.wrapping_add(16).cast::<__m128i>()) };
            // SAFETY: `p + 32..p + 48` lies inside `c`; `loadu` is unaligned.
            let v2 = unsafe { _mm_loadu_si128(p.wrapping_add(32).cast::<__m128i>()) };
            // SAFETY: `p + 48..p + 64` lies inside `c`; `loadu` is unaligned.
            let v3 = unsafe { _mm_loadu_si128(p.wrapping_add(48).cast::<__m128i>()) };
            a0 = _mm_add_epi32(a0, _mm_madd_epi16(_mm_xor_si128(v0, bias), ones));
            a1 = _mm_add_epi32(a1, _mm_madd_epi16(_mm_xor_si128(v1, bias), ones));
            a2 = _mm_add_epi32(a2, _mm_madd_epi16(_mm_xor_si128(v2, bias), ones));
            a3 = _mm_add_epi32(a3, _mm_madd_epi16(_mm_xor_si128(v3, bias), ones));
            n += 1;
        }
        if n == 0 {
            break;
        }
        vectors += 4 * n;
        wide = _mm_add_epi64(wide, _mm_add_epi64(widen128(a0), widen128(a1)));
        wide = _mm_add_epi64(wide, _mm_add_epi64(widen128(a2), widen128(a3)));
        if n < WIDEN_EVERY {
            break;
        }
    }
    // Every 16-byte vector is 8 words, each biased by -32768: add 2^18 per vector back.
    let words = (hsum128_i64(wide) + ((vectors as i64) << 18)) as u64;
    words + sum_le_small(chunks.remainder())
}

/// [`block_sse2`] with 256-bit vectors, 128 bytes per iteration.
#[target_feature(enable = "avx2")]
fn block_avx2(block: &[u8]) -> u64 {
    let zero = _mm256_setzero_si256();
    let bias = _mm256_set1_epi16(i16::MIN);
    let ones = _mm256_set1_epi16(1);
    let mut wide = zero;
    let mut chunks = block.chunks_exact(128);
    let mut vectors = 0usize;
    loop {
        let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
        let mut n = 0;
        while n < WIDEN_EVERY {
            let Some(c) = chunks.next() else { break };
            let p = c.as_ptr();
            // SAFETY: `p..p + 32` lies inside `c` (128 readable bytes); `loadu` is unaligned.
            let v0 = unsafe { _mm256_loadu_si256(p.cast::<__m256i>()) };
            // SAFETY: `p + 32..p + 64` lies inside `c`; `loadu` is unaligned.
            let v1 = unsafe { _mm256_loadu_si256(p.wrapping_add(32).cast::<__m256i>()) };
            // SAFETY: `p + 64..p + 96` lies inside `c`; `loadu` is unaligned.
            let v2 = unsafe { _mm256_loadu_si256(p.wrapping_add(64).cast::<__m256i>()) };
            // SAFETY: `p + 96..p + 128` lies inside `c`; `loadu` is unaligned.
            let v3 = unsafe { _mm256_loadu_si256(p.wrapping_add(96).cast::<__m256i>()) };
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_xor_si256(v0, bias), ones));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_xor_si256(v1, bias), ones));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_xor_si256(v2, bias), ones));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_xor_si256(v3, bias), ones));
            n += 1;
        }
        if n == 0 {
            break;
        }
        vectors += 4 * n;
        let s = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
        // Four lanes of at most 2^28 in magnitude each: the sum is below 2^30, still an i32.
        wide = _mm256_add_epi64(wide, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(s)));
        wide = _mm256_add_epi64(wide, _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(s)));
        if n < WIDEN_EVERY {
            break;
        }
    }
    // The remainder (< 128 bytes): up to three more vectors, one lane set, then scalar.
    let mut rest = chunks.remainder().chunks_exact(32);
    let mut a = zero;
    for c in &mut rest {
        // SAFETY: `c` is 32 readable bytes; `loadu` is unaligned.
        let v = unsafe { _mm256_loadu_si256(c.as_ptr().cast::<__m256i>()) };
        a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_xor_si256(v, bias), ones));
        vectors += 1;
    }
    wide = _mm256_add_epi64(wide, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(a)));
    wide = _mm256_add_epi64(wide, _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(a)));
    let lanes = hsum128_i64(_mm256_castsi256_si128(wide)) + hsum128_i64(_mm256_extracti128_si256::<1>(wide));
    // Every 32-byte vector is 16 words, each biased by -32768: add 2^19 per vector back.
    let words = (lanes + ((vectors as i64) << 19)) as u64;
    words + sum_le_small(rest.remainder())
}
