//! The portable wide-lane engine: four `u32` lanes added into `u64` accumulators.
//!
//! The ones'-complement sum does not depend on byte order (RFC 1071 §2(B)): summing
//! little-endian words and byte-swapping the folded result gives the big-endian sum. So the
//! engine loads plain little-endian `u32`s, which is what the hardware does fastest, and
//! [`super`] swaps once at the end. A `u32` added into a `u64` cannot overflow it for 2^32
//! additions; [`BLOCK`] keeps every lane far below that however long the input is.

/// Bytes summed before the lanes are folded into the running total (1 GiB: 2^26 additions
/// per lane, each below 2^32, so a lane stays below 2^58).
pub(crate) const BLOCK: usize = 1 << 30;

/// Little-endian-word sum of `data`, unfolded, congruent to the true sum modulo `0xffff` and
/// zero only when every byte is zero. Below 2^62 for any input.
pub(crate) fn sum_le(data: &[u8]) -> u64 {
    let mut total: u64 = 0;
    for block in data.chunks(BLOCK) {
        total = add_carry(total, u64::from(super::fold(block_le(block))));
    }
    total
}

/// One block (at most [`BLOCK`] bytes).
#[inline(always)]
fn block_le(block: &[u8]) -> u64 {
    let mut lanes = [0u64; 4];
    let mut chunks = block.chunks_exact(16);
    for c in &mut chunks {
        for (lane, w) in lanes.iter_mut().zip(c.chunks_exact(4)) {
            *lane += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let mut acc = lanes.iter().sum::<u64>() + tail_le(chunks.remainder());
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc
}

/// Little-endian-word sum of fewer than a few dozen bytes (any length), as a `u64` below
/// 2^40.
#[inline(always)]
pub(crate) fn tail_le(tail: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = tail.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_le_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        // Big-endian padding puts the odd byte high; in the little-endian domain it is low.
        acc += u64::from(*last);
    }
    acc
}

/// Adds two accumulators below 2^63 without losing a carry.
#[inline(always)]
pub(crate) fn add_carry(a: u64, b: u64) -> u64 {
    let (s, c) = a.overflowing_add(b);
    s + u64::from(c)
}
