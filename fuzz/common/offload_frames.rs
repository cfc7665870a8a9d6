//! Helpers shared by the `offload_*` fuzz harnesses: a byte reader that never fails, the
//! `virtio_net_hdr` decoder, and the fix-ups (lengths, checksums) that keep a mutated frame
//! acceptable so that the fuzzer spends its time past validation.
//!
//! Included next to the harness that uses it (`#[path = ".../offload_frames.rs"] mod
//! offload_frames;` at the crate root, the harness says `super::offload_frames`), by the fuzz
//! targets and by `offload/tests/fuzz_replay.rs`. Uses nothing but `pvio_offload` and `std`.
//! The fix-ups find the headers by hand, not with `parse`, so a frame whose lengths are
//! wrong can still be repaired; they never panic on any input.
#![allow(dead_code)]

use pvio_offload::{checksum, parse, VirtioNetHdr, L3, L4};

/// Reads an input front to back; a missing byte reads as 0.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16_le(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Exactly `N` bytes, zero-padded.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.take(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.data)
    }
}

/// The 12 little-endian bytes of a `virtio_net_hdr` (v1), field by field.
pub fn virtio_hdr(b: [u8; 12]) -> VirtioNetHdr {
    let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    VirtioNetHdr {
        flags: b[0],
        gso_type: b[1],
        hdr_len: le(2).into(),
        gso_size: le(4).into(),
        csum_start: le(6).into(),
        csum_offset: le(8).into(),
        num_buffers: le(10).into(),
    }
}

/// Ones'-complement equality: `0x0000` and `0xffff` are the same checksum value.
pub fn csum_eq(a: u16, b: u16) -> bool {
    a == b || (matches!(a, 0 | 0xffff) && matches!(b, 0 | 0xffff))
}

fn be16(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
}

fn put16(frame: &mut [u8], at: usize, v: u16) {
    if let Some(f) = frame.get_mut(at..at + 2) {
        f.copy_from_slice(&v.to_be_bytes());
    }
}

/// Where the IP header starts and its EtherType, found by hand (up to two VLAN tags).
pub fn l3_start(frame: &[u8]) -> Option<(usize, u16)> {
    let mut at = 12;
    for _ in 0..=2 {
        let ty = be16(frame, at)?;
        if !matches!(ty, 0x8100 | 0x88a8 | 0x9100) {
            return Some((at + 2, ty));
        }
        at += 4;
    }
    None
}

/// Where the transport header starts and its protocol, found by hand: IPv4 options, up to
/// eight IPv6 extension headers.
pub fn l4_start(frame: &[u8]) -> Option<(usize, u8)> {
    let (l3, ty) = l3_start(frame)?;
    match ty {
        0x0800 => Some((l3 + usize::from(frame.get(l3)? & 0x0f) * 4, *frame.get(l3 + 9)?)),
        0x86dd => {
            let mut next = *frame.get(l3 + 6)?;
            let mut at = l3 + 40;
            for _ in 0..8 {
                let len = match next {
                    0 | 43 | 60 => (usize::from(*frame.get(at + 1)?) + 1) * 8,
                    44 => 8,
                    51 => (usize::from(*frame.get(at + 1)?) + 2) * 4,
                    _ => break,
                };
                next = *frame.get(at)?;
                at += len;
            }
            Some((at, next))
        }
        _ => None,
    }
}

/// Makes the IPv4 total length or IPv6 payload length (and, for UDP, the UDP length) end
/// where the frame ends, as far as 16 bits allow, and refills the IPv4 header checksum.
pub fn fix_lengths(frame: &mut [u8]) {
    let Some((l3, ty)) = l3_start(frame) else { return };
    let ip_len = frame.len().saturating_sub(l3);
    match ty {
        0x0800 => put16(frame, l3 + 2, ip_len.min(0xffff) as u16),
        0x86dd => put16(frame, l3 + 4, ip_len.saturating_sub(40).min(0xffff) as u16),
        _ => return,
    }
    if let Some((l4, 17)) = l4_start(frame) {
        put16(frame, l4 + 4, frame.len().saturating_sub(l4).min(0xffff) as u16);
    }
    fix_ipv4_checksum(frame);
}

/// Refills the IPv4 header checksum if the header is all there.
pub fn fix_ipv4_checksum(frame: &mut [u8]) {
    let Some((l3, 0x0800)) = l3_start(frame) else { return };
    let ihl = frame.get(l3).map_or(0, |b| usize::from(b & 0x0f) * 4);
    if ihl < 20 || frame.len() < l3 + ihl {
        return;
    }
    put16(frame, l3 + 10, 0);
    let c = checksum::checksum(&frame[l3..l3 + ihl]);
    put16(frame, l3 + 10, c);
}

/// The transport checksum field of a parsed TCP or UDP frame (not a fragment), from the
/// start of the frame, and where the packet ends.
pub fn l4_checksum_field(frame: &[u8]) -> Option<(usize, usize, usize)> {
    let l = parse(frame).ok()?;
    if !matches!(l.l3, L3::Ipv4 | L3::Ipv6) {
        return None;
    }
    let offset = match l.l4 {
        L4::Tcp => 16,
        L4::Udp => 6,
        _ => return None,
    };
    Some((l.l4_offset, offset, l.end))
}

/// Writes the pseudo-header sum into the transport checksum field (what a sender asking for
/// a partial checksum leaves there). Returns whether the frame had such a field.
pub fn fill_pseudo(frame: &mut [u8]) -> bool {
    let Some((l4, offset, _)) = l4_checksum_field(frame) else { return false };
    let Some(pseudo) = parse(frame).ok().and_then(|l| l.pseudo_header_sum(frame)) else { return false };
    put16(frame, l4 + offset, pseudo);
    true
}

/// Writes a complete, verifying transport checksum. Returns whether the frame had a field.
pub fn fill_l4_checksum(frame: &mut [u8]) -> bool {
    if !fill_pseudo(frame) {
        return false;
    }
    let Some((l4, offset, end)) = l4_checksum_field(frame) else { return false };
    checksum::complete_partial(&mut frame[..end], l4, offset).is_ok()
}
