//! The shared page of a Xen ring (`struct NAME_sring` from `io/ring.h`) and its size rules.
//!
//! ```text
//! offset  field
//!      0  req_prod   u32  written by the front end
//!      4  req_event  u32  written by the back end: "notify me when req_prod passes this"
//!      8  rsp_prod   u32  written by the back end
//!     12  rsp_event  u32  written by the front end: "notify me when rsp_prod passes this"
//!     16  pvt        4 bytes, private to the protocol (netif: smartpoll_active)
//!     20  __pad      44 bytes
//!     64  ring[]     entries, each a `union { request; response; }`
//! ```

use core::marker::PhantomData;

use crate::shm::{SharedMem, SharedU32};
use crate::sync::Ordering;
use crate::xen::{Entry, RingError};

/// Byte offset of `req_prod`.
pub const REQ_PROD_OFFSET: usize = 0;
/// Byte offset of `req_event`.
pub const REQ_EVENT_OFFSET: usize = 4;
/// Byte offset of `rsp_prod`.
pub const RSP_PROD_OFFSET: usize = 8;
/// Byte offset of `rsp_event`.
pub const RSP_EVENT_OFFSET: usize = 12;
/// Byte offset of the protocol-private bytes (`pvt`).
pub const PVT_OFFSET: usize = 16;
/// Size of the header before the first entry; entries start here.
pub const HEADER_LEN: usize = 64;
/// Largest number of entries a ring may have (`RING_IDX` arithmetic needs `size <= 2^31`;
/// Xen's own limit via `XENBUS_MAX_RING_GRANT_ORDER` is far below this).
pub const MAX_ENTRIES: u32 = 1 << 31;

/// `sizeof(union NAME_sring_entry)`: the larger of the two sizes, rounded up to the larger
/// alignment, exactly as a C compiler lays out the union.
pub const fn entry_size<Req, Rsp>() -> usize {
    let size = max(size_of::<Req>(), size_of::<Rsp>());
    let align = max(align_of::<Req>(), align_of::<Rsp>());
    size.div_ceil(align) * align
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Number of entries in a ring occupying `ring_bytes` bytes (header included) with entries of
/// `entry_size` bytes: Xen's `__RING_SIZE`/`__CONST_RING_SIZE`, the largest power of two that
/// fits after the 64-byte header. Returns 0 when not even one entry fits.
pub const fn ring_size(ring_bytes: usize, entry_size: usize) -> u32 {
    if entry_size == 0 || ring_bytes <= HEADER_LEN {
        return 0;
    }
    let n = (ring_bytes - HEADER_LEN) / entry_size;
    if n == 0 {
        return 0;
    }
    let p = 1usize << (usize::BITS - 1 - n.leading_zeros());
    if p > MAX_ENTRIES as usize {
        MAX_ENTRIES
    } else {
        p as u32
    }
}

/// The part of a ring both ends share: the four index words and the entry array.
pub(crate) struct Sring<'a, Req, Rsp> {
    pub(crate) req_prod: SharedU32<'a>,
    pub(crate) req_event: SharedU32<'a>,
    pub(crate) rsp_prod: SharedU32<'a>,
    pub(crate) rsp_event: SharedU32<'a>,
    mem: SharedMem<'a>,
    /// Number of entries, a power of two in `1..=MAX_ENTRIES`.
    size: u32,
    _types: PhantomData<fn() -> (Req, Rsp)>,
}

impl<'a, Req: Entry, Rsp: Entry> Sring<'a, Req, Rsp> {
    const STRIDE: usize = entry_size::<Req, Rsp>();

    /// Validates that `mem` can hold a ring and computes its size.
    pub(crate) fn new(mem: SharedMem<'a>) -> Result<Self, RingError> {
        let size = ring_size(mem.len(), Self::STRIDE);
        if size == 0 {
            return Err(RingError::RegionTooSmall { len: mem.len(), entry_size: Self::STRIDE });
        }
        Ok(Sring {
            req_prod: mem.u32_at(REQ_PROD_OFFSET)?,
            req_event: mem.u32_at(REQ_EVENT_OFFSET)?,
            rsp_prod: mem.u32_at(RSP_PROD_OFFSET)?,
            rsp_event: mem.u32_at(RSP_EVENT_OFFSET)?,
            mem,
            size,
            _types: PhantomData,
        })
    }

    /// `SHARED_RING_INIT`: both producer indices 0, both event thresholds 1, private bytes
    /// and padding zero. Only the party that creates the ring (the front end) does this.
    pub(crate) fn init(&self) -> Result<(), RingError> {
        self.mem.fill(PVT_OFFSET, HEADER_LEN - PVT_OFFSET, 0)?;
        self.req_prod.store(0, Ordering::Relaxed);
        self.rsp_prod.store(0, Ordering::Relaxed);
        self.req_event.store(1, Ordering::Relaxed);
        self.rsp_event.store(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes the four protocol-private header bytes.
    pub(crate) fn write_private(&self, pvt: [u8; 4]) -> Result<(), RingError> {
        Ok(self.mem.write_bytes(PVT_OFFSET, &pvt)?)
    }

    /// Copies the four protocol-private header bytes out.
    pub(crate) fn read_private(&self) -> Result<[u8; 4], RingError> {
        Ok(self.mem.read(PVT_OFFSET)?)
    }

    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    #[inline]
    fn slot_offset(&self, idx: u32) -> usize {
        HEADER_LEN + (idx & (self.size - 1)) as usize * Self::STRIDE
    }

    /// Copies the request in slot `idx` (taken modulo the ring size) out of shared memory.
    #[inline]
    pub(crate) fn read_req(&self, idx: u32) -> Req {
        // SAFETY: `slot_offset` is at most `HEADER_LEN + (size - 1) * STRIDE`, and `new`
        // chose `size` so that `HEADER_LEN + size * STRIDE <= mem.len()`; a request is at
        // most `STRIDE` bytes.
        unsafe { self.mem.read_unchecked(self.slot_offset(idx)) }
    }

    /// Copies the response in slot `idx` out of shared memory.
    #[inline]
    pub(crate) fn read_rsp(&self, idx: u32) -> Rsp {
        // SAFETY: as in `read_req`; a response is at most `STRIDE` bytes.
        unsafe { self.mem.read_unchecked(self.slot_offset(idx)) }
    }

    /// Writes a request into slot `idx`.
    #[inline]
    pub(crate) fn write_req(&self, idx: u32, req: &Req) {
        // SAFETY: as in `read_req`.
        unsafe { self.mem.write_unchecked(self.slot_offset(idx), req) }
    }

    /// Writes a response into slot `idx`.
    #[inline]
    pub(crate) fn write_rsp(&self, idx: u32, rsp: &Rsp) {
        // SAFETY: as in `read_rsp`.
        unsafe { self.mem.write_unchecked(self.slot_offset(idx), rsp) }
    }
}

impl<Req, Rsp> core::fmt::Debug for Sring<'_, Req, Rsp> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Sring")
            .field("size", &self.size)
            .field("req_prod", &self.req_prod)
            .field("req_event", &self.req_event)
            .field("rsp_prod", &self.rsp_prod)
            .field("rsp_event", &self.rsp_event)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_size_matches_xen_rounding() {
        // netif tx: 12-byte entries in one page -> 336 fit -> 256.
        assert_eq!(ring_size(4096, 12), 256);
        // netif rx: 8-byte entries -> 504 fit -> 256.
        assert_eq!(ring_size(4096, 8), 256);
        // blkif-sized 112-byte entries -> 36 fit -> 32.
        assert_eq!(ring_size(4096, 112), 32);
        // Two pages of netif tx -> 677 fit -> 512.
        assert_eq!(ring_size(8192, 12), 512);
        assert_eq!(ring_size(64, 12), 0);
        assert_eq!(ring_size(75, 12), 0);
        assert_eq!(ring_size(76, 12), 1);
        assert_eq!(ring_size(4096, 0), 0);
    }

    #[test]
    fn entry_size_is_c_union_size() {
        #[allow(dead_code)]
        #[repr(C, align(4))]
        struct A([u8; 6]);
        assert_eq!(entry_size::<A, [u8; 2]>(), 8);
        assert_eq!(entry_size::<[u8; 12], [u8; 4]>(), 12);
        assert_eq!(entry_size::<u32, u64>(), 8);
    }
}
