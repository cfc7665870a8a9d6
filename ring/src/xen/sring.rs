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

    /// Copies the requests in slots `idx, idx + 1, …` (modulo the ring size) into `out`,
    /// each exactly once. At most `size` entries are copied; callers pass no more.
    #[inline]
    pub(crate) fn read_reqs(&self, idx: u32, out: &mut [Req]) {
        self.read_run(idx, out)
    }

    /// Copies the responses in slots `idx, idx + 1, …` into `out`, as `read_reqs`.
    #[inline]
    pub(crate) fn read_rsps(&self, idx: u32, out: &mut [Rsp]) {
        self.read_run(idx, out)
    }

    /// Writes `reqs` into slots `idx, idx + 1, …` (at most `size` of them).
    #[inline]
    pub(crate) fn write_reqs(&self, idx: u32, reqs: &[Req]) {
        self.write_run(idx, reqs)
    }

    /// Writes `rsps` into slots `idx, idx + 1, …` (at most `size` of them).
    #[inline]
    pub(crate) fn write_rsps(&self, idx: u32, rsps: &[Rsp]) {
        self.write_run(idx, rsps)
    }

    /// Copies entries of type `T` (the request or the response type) out of consecutive
    /// slots from `idx`, in at most two runs (before and after the wrap).
    #[inline]
    fn read_run<T: Entry>(&self, idx: u32, out: &mut [T]) {
        // Folds away for `Req` and `Rsp`, which fit a slot by the definition of `STRIDE`.
        if size_of::<T>() > Self::STRIDE {
            return;
        }
        let (first, wrapped) = self.runs(idx, out.len());
        let (a, b) = out.split_at_mut(first.1);
        let b = &mut b[..wrapped];
        // SAFETY: `runs` keeps both runs inside the ring's slots, and `new` chose `size` so
        // that `HEADER_LEN + size * STRIDE <= mem.len()`; an entry is at most `STRIDE` bytes
        // (checked above), so every entry ends inside the region.
        unsafe { self.mem.read_run_unchecked(first.0, Self::STRIDE, a) };
        // SAFETY: as above, for the run that starts at slot 0.
        unsafe { self.mem.read_run_unchecked(HEADER_LEN, Self::STRIDE, b) };
    }

    /// Writes entries of type `T` into consecutive slots from `idx`, as `read_run`.
    #[inline]
    fn write_run<T: Entry>(&self, idx: u32, src: &[T]) {
        if size_of::<T>() > Self::STRIDE {
            return;
        }
        let (first, wrapped) = self.runs(idx, src.len());
        let (a, b) = src.split_at(first.1);
        // SAFETY: as in `read_run`.
        unsafe { self.mem.write_run_unchecked(first.0, Self::STRIDE, a) };
        // SAFETY: as above, for the run that starts at slot 0.
        unsafe { self.mem.write_run_unchecked(HEADER_LEN, Self::STRIDE, &b[..wrapped]) };
    }

    /// Splits `n` consecutive slots from `idx` into at most two runs of adjacent slots:
    /// `((byte offset of slot idx, length of the first run), length of the run from slot 0)`.
    /// The first run ends at the last slot at the latest, and neither run is longer than the
    /// ring: `n` beyond `size` is cut off.
    #[inline]
    fn runs(&self, idx: u32, n: usize) -> ((usize, usize), usize) {
        let size = self.size as usize;
        debug_assert!(n <= size);
        let start = (idx & (self.size - 1)) as usize;
        let first = n.min(size - start);
        let wrapped = (n - first).min(start);
        ((HEADER_LEN + start * Self::STRIDE, first), wrapped)
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

    /// A value whose every byte depends on `seq`.
    #[cfg(all(feature = "alloc", not(loom)))]
    fn val<T: Entry>(seq: u32) -> T {
        let mut v = T::new_zeroed();
        for (i, b) in v.as_mut_bytes().iter_mut().enumerate() {
            *b = (seq.wrapping_mul(31).wrapping_add(i as u32 * 7)) as u8;
        }
        v
    }

    /// Batch copies (`queue_requests`, `pop_requests`, `queue_responses`, `pop_responses`)
    /// across many wrap-arounds, in batch sizes that straddle the end of the ring.
    #[cfg(all(feature = "alloc", not(loom)))]
    fn batches_wrap<Req: Entry + PartialEq + core::fmt::Debug, Rsp: Entry + PartialEq + core::fmt::Debug>(
        entries: usize,
    ) {
        use crate::{BackRing, FrontRing, HeapRegion};
        let r = HeapRegion::new(HEADER_LEN + entries * entry_size::<Req, Rsp>());
        let mut f = FrontRing::<Req, Rsp>::new(r.mem()).unwrap();
        let mut b = BackRing::<Req, Rsp>::new(r.mem()).unwrap();
        assert_eq!(f.size() as usize, entries);
        let (mut sent, mut served, mut answered) = (0u32, 0u32, 0u32);
        let mut reqs = [Req::new_zeroed(); 13];
        let mut rsps = [Rsp::new_zeroed(); 13];
        for round in 0..200usize {
            let want = [1, 3, 5, 7, 13][round % 5];
            let batch: [Req; 13] = core::array::from_fn(|i| val(sent + i as u32));
            let n = f.queue_requests(&batch[..want]);
            assert!(n <= want);
            sent += n as u32;
            let _ = f.push_requests();
            let k = b.pop_requests(&mut reqs[..[2, 13, 4, 9][round % 4]]).unwrap();
            for (i, req) in reqs[..k].iter().enumerate() {
                assert_eq!(*req, val::<Req>(served + i as u32), "request {}", served + i as u32);
                rsps[i] = val(served + i as u32 + 1000);
            }
            assert_eq!(b.queue_responses(&rsps[..k]), k);
            served += k as u32;
            let _ = b.push_responses();
            let k = f.pop_responses(&mut rsps[..[13, 3][round % 2]]).unwrap();
            for (i, rsp) in rsps[..k].iter().enumerate() {
                assert_eq!(*rsp, val::<Rsp>(answered + i as u32 + 1000), "response {}", answered + i as u32);
            }
            answered += k as u32;
        }
        assert!(answered as usize > 10 * entries, "the test wrapped the ring many times");
    }

    #[test]
    #[cfg(all(feature = "alloc", not(loom)))]
    fn batch_copies_wrap_for_every_word_size() {
        use crate::xen::netif::{NetifTxRequest, NetifTxResponse};
        // Each pair accesses every slot with one pattern of word sizes, so that miri's
        // weak-memory emulation (which cannot mix sizes on the same bytes) can run it too.
        // 12-byte requests and 4-byte responses, both in 4-byte words.
        batches_wrap::<NetifTxRequest, NetifTxResponse>(16);
        // 8-byte entries in 8-byte words.
        batches_wrap::<u64, u64>(8);
        // 3-byte entries: no word path, byte by byte.
        batches_wrap::<[u8; 3], [u8; 3]>(16);
        // 6-byte entries: no word path for the run; a 4-byte word where a slot is 4-aligned.
        batches_wrap::<[u16; 3], [u16; 3]>(32);
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
