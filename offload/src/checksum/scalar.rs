//! The portable engine: 64-bit little-endian words added with end-around carry.
//!
//! The ones'-complement sum does not depend on byte order (RFC 1071 §2(B)): summing
//! little-endian words and byte-swapping the folded result gives the big-endian sum. So the
//! engine loads plain little-endian `u64`s, which is what the hardware does fastest, and
//! [`super`] swaps once at the end. A little-endian `u64` is four 16-bit words `w0..w3`
//! worth `w0 + w1·2^16 + w2·2^32 + w3·2^48`, congruent to `w0 + w1 + w2 + w3` modulo `0xffff`
//! (`2^16 ≡ 1`); adding with end-around carry works modulo `2^64 - 1`, a multiple of
//! `0xffff`, and never turns a non-zero total into zero. That carry chain is the fastest
//! loop for short inputs; longer ones use four `u32` lanes in `u64` accumulators, which the
//! compiler vectorizes.

/// Bytes summed before the lanes are folded into the running total (1 GiB).
pub(crate) const BLOCK: usize = 1 << 30;

/// Little-endian-word sum of `data`, unfolded, congruent to the true sum modulo `0xffff` and
/// zero only when every byte is zero. Below 2^62 for any input.
pub(crate) fn sum_le(data: &[u8]) -> u64 {
    if data.len() < super::SIMD_MIN_LEN {
        return sum_le_small(data);
    }
    let mut total: u64 = 0;
    for block in data.chunks(BLOCK) {
        total = add_carry(total, u64::from(super::fold(block_le(block))));
    }
    total
}

/// One block (at most [`BLOCK`] bytes) in four `u32` lanes added into `u64`s, which the
/// compiler vectorizes: faster than the carry chain once the input is long. A lane gains
/// below 2^32 per 16 bytes, so it stays below 2^58 within a block.
#[inline(always)]
fn block_le(block: &[u8]) -> u64 {
    let mut lanes = [0u64; 4];
    let mut chunks = block.chunks_exact(16);
    for c in &mut chunks {
        for (lane, w) in lanes.iter_mut().zip(c.chunks_exact(4)) {
            *lane += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    lanes.iter().sum::<u64>() + sum_le_small(chunks.remainder())
}

/// [`sum_le`] for short inputs (any length, best below a few hundred bytes): one `u64`
/// accumulator with end-around carry and a fixed two-step fold. Below 2^33.
#[inline(always)]
pub(crate) fn sum_le_small(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        acc = add_carry(acc, le64(w));
    }
    let rest = words.remainder();
    let mut tail = 0u64;
    let mut i = 0;
    if rest.len() >= 4 {
        tail += u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        i = 4;
    }
    if rest.len() - i >= 2 {
        tail += u64::from(u16::from_le_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if let Some(&last) = rest.get(i) {
        // Big-endian padding puts the odd byte high; in the little-endian domain it is low.
        tail += u64::from(last);
    }
    // `tail` < 2^33: no overflow concern beyond the carry `add_carry` keeps.
    fold32(add_carry(acc, tail))
}

/// The little-endian `u64` in the 8 bytes of `w`.
#[inline(always)]
fn le64(w: &[u8]) -> u64 {
    u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
}

/// `acc` folded once from 64 to at most 33 bits, congruent modulo `0xffff` and non-zero if
/// `acc` is.
#[inline(always)]
fn fold32(acc: u64) -> u64 {
    (acc & 0xffff_ffff) + (acc >> 32)
}

/// Adds two 64-bit accumulators with end-around carry (ones'-complement addition modulo
/// `2^64 - 1`), never losing a carry.
#[inline(always)]
pub(crate) fn add_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + u64::from(c)
}
