//! The byte reader the structured harnesses (`xen_back_ring`, `virtio_device`, `grant_broker`,
//! `paging_mapper`) decode their input with: front to back, little-endian, and a missing byte
//! reads as 0, so every input — including a truncated one — is a valid program.
//!
//! Included next to the harness that uses it (`#[path = ".../bytes.rs"] mod bytes;` at the
//! crate root; the harness says `super::bytes`), by the fuzz targets and the replay tests.
//! Each harness adds its own draws (`delta`, `len`, `gref`, ...) through a local trait.
#![allow(dead_code)]

/// A cursor over the fuzzer's bytes.
pub struct Bytes<'d> {
    data: &'d [u8],
    pos: usize,
}

impl<'d> Bytes<'d> {
    pub fn new(data: &'d [u8]) -> Self {
        Bytes { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
}
