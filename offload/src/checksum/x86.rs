//! x86-64 SIMD engines: SSE2 (part of the x86-64 baseline, always present) and AVX2.
//!
//! Both widen each 32-bit little-endian word of the input to a 64-bit lane (an unpack against
//! zero) and add it to 64-bit accumulators, so no carry is ever lost and no lane can overflow
//! within a [`BLOCK`](super::scalar::BLOCK). Several independent accumulators hide the add
//! latency. The tail shorter than one vector iteration goes to the scalar lanes.
//!
//! The kernels are safe `#[target_feature]` functions: the arithmetic intrinsics are safe to
//! call inside them, and the only `unsafe` left is each unaligned load, whose pointer is
//! derived from a slice chunk of the right length.

use core::arch::x86_64::{
    __m128i, __m256i, _mm256_add_epi64, _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_loadu_si256,
    _mm256_setzero_si256, _mm256_unpackhi_epi32, _mm256_unpacklo_epi32, _mm_add_epi64, _mm_cvtsi128_si64,
    _mm_loadu_si128, _mm_setzero_si128, _mm_unpackhi_epi32, _mm_unpackhi_epi64, _mm_unpacklo_epi32,
};

use super::scalar::{add_carry, tail_le, BLOCK};

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

/// The two 64-bit lanes of `v`, added.
#[target_feature(enable = "sse2")]
#[inline]
fn hsum128(v: __m128i) -> u64 {
    let lo = _mm_cvtsi128_si64(v) as u64;
    let hi = _mm_cvtsi128_si64(_mm_unpackhi_epi64(v, v)) as u64;
    lo + hi
}

#[target_feature(enable = "sse2")]
#[inline]
fn block_sse2(block: &[u8]) -> u64 {
    let zero = _mm_setzero_si128();
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    let mut chunks = block.chunks_exact(64);
    for c in &mut chunks {
        let p = c.as_ptr();
        // SAFETY: `p..p + 16` lies inside `c` (64 readable bytes); `loadu` is unaligned.
        let v0 = unsafe { _mm_loadu_si128(p.cast::<__m128i>()) };
        // SAFETY: `p + 16..p + 32` lies inside `c`; `loadu` is unaligned.
        let v1 = unsafe { _mm_loadu_si128(p.wrapping_add(16).cast::<__m128i>()) };
        // SAFETY: `p + 32..p + 48` lies inside `c`; `loadu` is unaligned.
        let v2 = unsafe { _mm_loadu_si128(p.wrapping_add(32).cast::<__m128i>()) };
        // SAFETY: `p + 48..p + 64` lies inside `c`; `loadu` is unaligned.
        let v3 = unsafe { _mm_loadu_si128(p.wrapping_add(48).cast::<__m128i>()) };
        a0 = _mm_add_epi64(a0, _mm_unpacklo_epi32(v0, zero));
        a1 = _mm_add_epi64(a1, _mm_unpackhi_epi32(v0, zero));
        a2 = _mm_add_epi64(a2, _mm_unpacklo_epi32(v1, zero));
        a3 = _mm_add_epi64(a3, _mm_unpackhi_epi32(v1, zero));
        a0 = _mm_add_epi64(a0, _mm_unpacklo_epi32(v2, zero));
        a1 = _mm_add_epi64(a1, _mm_unpackhi_epi32(v2, zero));
        a2 = _mm_add_epi64(a2, _mm_unpacklo_epi32(v3, zero));
        a3 = _mm_add_epi64(a3, _mm_unpackhi_epi32(v3, zero));
    }
    // Each lane gained at most 2 * (2^32 - 1) per 64 bytes: below 2^57 for a 1 GiB block, so
    // the eight lanes add up to less than 2^60.
    let lanes = hsum128(a0) + hsum128(a1) + hsum128(a2) + hsum128(a3);
    lanes + tail_le(chunks.remainder())
}

#[target_feature(enable = "avx2")]
fn block_avx2(block: &[u8]) -> u64 {
    let zero = _mm256_setzero_si256();
    let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
    let mut chunks = block.chunks_exact(128);
    for c in &mut chunks {
        let p = c.as_ptr();
        // SAFETY: `p..p + 32` lies inside `c` (128 readable bytes); `loadu` is unaligned.
        let v0 = unsafe { _mm256_loadu_si256(p.cast::<__m256i>()) };
        // SAFETY: `p + 32..p + 64` lies inside `c`; `loadu` is unaligned.
        let v1 = unsafe { _mm256_loadu_si256(p.wrapping_add(32).cast::<__m256i>()) };
        // SAFETY: `p + 64..p + 96` lies inside `c`; `loadu` is unaligned.
        let v2 = unsafe { _mm256_loadu_si256(p.wrapping_add(64).cast::<__m256i>()) };
        // SAFETY: `p + 96..p + 128` lies inside `c`; `loadu` is unaligned.
        let v3 = unsafe { _mm256_loadu_si256(p.wrapping_add(96).cast::<__m256i>()) };
        a0 = _mm256_add_epi64(a0, _mm256_unpacklo_epi32(v0, zero));
        a1 = _mm256_add_epi64(a1, _mm256_unpackhi_epi32(v0, zero));
        a2 = _mm256_add_epi64(a2, _mm256_unpacklo_epi32(v1, zero));
        a3 = _mm256_add_epi64(a3, _mm256_unpackhi_epi32(v1, zero));
        a0 = _mm256_add_epi64(a0, _mm256_unpacklo_epi32(v2, zero));
        a1 = _mm256_add_epi64(a1, _mm256_unpackhi_epi32(v2, zero));
        a2 = _mm256_add_epi64(a2, _mm256_unpacklo_epi32(v3, zero));
        a3 = _mm256_add_epi64(a3, _mm256_unpackhi_epi32(v3, zero));
    }
    // Each lane gained at most 2 * (2^32 - 1) per 128 bytes: below 2^56 for a 1 GiB block.
    let mut lanes = 0u64;
    for v in [a0, a1, a2, a3] {
        lanes += hsum128(_mm256_castsi256_si128(v)) + hsum128(_mm256_extracti128_si256::<1>(v));
    }
    // The remainder (< 128 bytes) goes through the SSE2 kernel and then the scalar tail.
    lanes + block_sse2(chunks.remainder())
}
