//! The naive reference: one big-endian 16-bit word at a time into a `u64`.
//!
//! Deliberately the plainest reading of RFC 1071 (no lanes, no byte-order tricks), kept public
//! so that tests and benchmarks can hold every fast engine against it.

/// The folded ones'-complement sum of `data` as big-endian 16-bit words, an odd final byte
/// padded with a zero byte. Never overflows: a `u64` holds 2^48 words of `0xffff`, and the
/// sum is folded every 2^32 words anyway.
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for (i, pair) in (&mut chunks).enumerate() {
        acc += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        if i & 0xffff_ffff == 0xffff_ffff {
            acc = u64::from(super::fold(acc));
        }
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    super::fold(acc)
}
