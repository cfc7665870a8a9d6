//! Raw access to memory that a peer can write.
//!
//! This module is the only place in pvio that touches peer-writable memory through a raw
//! pointer. It keeps two rules (the same two that rust-vmm's `volatile_memory` states):
//!
//! 1. **No Rust reference is ever formed over the bytes.** A `&T` or `&[u8]` into memory that
//!    another party may change at any moment would let the compiler assume the bytes are stable
//!    (and re-read or cache them at will): that is how double-fetch bugs like Xen's XSA-155 are
//!    born. Every access here is a relaxed atomic load or store of a `u8`, `u32` or `u64` word,
//!    which compiles to a plain move on x86-64 and AArch64 but is never merged, split or
//!    repeated by the compiler, and is not a data race in Rust's memory model even when the
//!    peer writes concurrently. The only references handed out are to atomics
//!    ([`SharedU32`]), whose interior mutability makes concurrent peer writes sound.
//!
//!    Bulk copies between shared memory and a private buffer (at least [`BULK_MIN`] bytes, on
//!    x86-64 outside miri and loom) are inline assembly instead of the word loop: 64-byte
//!    blocks of unaligned 16-byte SSE2 moves, then one `rep movsb` for the rest (all of it
//!    without SSE): every byte is read (or written) exactly once, in ascending blocks, by
//!    accesses that x86 makes single-copy atomic per byte, so the effect is that of a loop of
//!    relaxed `AtomicU8` accesses — the same accesses the word loop makes, at a finer grain — done
//!    outside the Rust abstract machine like a device's access. The compiler sees an opaque
//!    block that reads and writes memory through two pointers: it cannot split, merge or
//!    repeat its reads, and no reference to the shared bytes exists. It runs at `memcpy` speed
//!    (one `rep movsb` alone does too, except when the destination sits just above the source
//!    modulo 4 KiB: see `bulk::copy`), which relaxed 8-byte atomics (no vector moves) do not
//!    reach. Under miri, loom and on
//!    other architectures the word loop is used.
//! 2. **Every offset is checked.** Public accessors take an offset and fail with
//!    [`ShmError`] unless `offset + len` lies inside the region, computed without overflow.
//!
//! A [`SharedMem`] is created once, by the `unsafe` constructor [`SharedMem::new`], whose
//! contract is the only thing the rest of pvio trusts. With the `std` feature,
//! [`MemfdRegion`](crate::MemfdRegion) owns a shared memfd mapping and hands out views safely.
//!
//! Under `cfg(loom)` the region is modelled as an array of loom atomics so that the ring
//! protocols built on top are model-checked with the same code paths.

use core::marker::PhantomData;
#[cfg(not(loom))]
use core::ptr::NonNull;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::sync::{AtomicU32, Ordering};
#[cfg(not(loom))]
use crate::sync::{AtomicU64, AtomicU8};
// The 16-bit fields of virtio rings; under loom they are modelled on the 32-bit word.
#[cfg(not(loom))]
use core::sync::atomic::AtomicU16;

/// Copies of at least this many bytes between shared memory and a private buffer use the bulk
/// path (SSE2 moves and `rep movsb`) on x86-64 outside miri and loom; shorter ones (ring entries, headers)
/// use relaxed word atomics. See the [module documentation](self).
pub const BULK_MIN: usize = 256;

/// An access to shared memory that was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShmError {
    /// `offset + len` does not lie inside the region (or overflows).
    #[error("access of {len} bytes at offset {offset} lies outside the {size}-byte region")]
    OutOfBounds {
        /// Requested offset from the start of the region.
        offset: usize,
        /// Requested length in bytes.
        len: usize,
        /// Size of the region in bytes.
        size: usize,
    },
    /// An atomic word view was requested at an offset that is not suitably aligned.
    #[error("offset {offset} is not aligned to {align} bytes")]
    Misaligned {
        /// Requested offset from the start of the region.
        offset: usize,
        /// Alignment the access needs.
        align: usize,
    },
    /// The base pointer given to [`SharedMem::new`] is null or not 8-byte aligned.
    #[error("region base address {addr:#x} is null or not 8-byte aligned")]
    BadBase {
        /// The rejected address.
        addr: usize,
    },
}

/// A view of memory that another party (a guest, a back end, a device) may read and write
/// concurrently.
///
/// All access is by value through checked, word-atomic accessors; see the
/// [module documentation](self). A `SharedMem` is a cheap handle: cloning it or taking a
/// [`slice`](Self::slice) does not copy memory, and every clone refers to the same bytes.
pub struct SharedMem<'a> {
    #[cfg(not(loom))]
    base: NonNull<u8>,
    #[cfg(loom)]
    words: std::sync::Arc<[AtomicU32]>,
    #[cfg(loom)]
    start: usize,
    len: usize,
    _life: PhantomData<&'a [core::sync::atomic::AtomicU8]>,
}

// SAFETY: a `SharedMem` only ever accesses its memory through atomic operations, which are
// sound to perform from any thread, concurrently; the constructor's contract guarantees the
// memory stays valid for `'a` regardless of which thread holds the handle.
unsafe impl Send for SharedMem<'_> {}
// SAFETY: as for `Send`: every method takes `&self` and performs only atomic accesses.
unsafe impl Sync for SharedMem<'_> {}

impl Clone for SharedMem<'_> {
    fn clone(&self) -> Self {
        SharedMem {
            #[cfg(not(loom))]
            base: self.base,
            #[cfg(loom)]
            words: self.words.clone(),
            #[cfg(loom)]
            start: self.start,
            len: self.len,
            _life: PhantomData,
        }
    }
}

impl core::fmt::Debug for SharedMem<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("SharedMem");
        #[cfg(not(loom))]
        d.field("base", &self.base);
        d.field("len", &self.len).finish()
    }
}

impl<'a> SharedMem<'a> {
    /// Wraps `len` bytes at `ptr` as shared memory.
    ///
    /// The base must be 8-byte aligned (pages always are), so that the word accessors can use
    /// naturally aligned atomics.
    ///
    /// # Safety
    ///
    /// For the whole lifetime `'a`:
    /// - `ptr .. ptr + len` is one allocation (or one mapping) that stays mapped, readable and
    ///   writable;
    /// - nobody accesses those bytes through a Rust reference (`&T`, `&mut T`, `&[u8]`) or
    ///   through non-atomic reads and writes; other parties — other threads, other processes,
    ///   devices, a peer domain — may access them only with atomic or volatile word accesses,
    ///   or from outside the Rust abstract machine (another process, a device).
    ///
    /// What the other parties *write* is unconstrained: pvio never trusts the contents.
    #[cfg(not(loom))]
    pub unsafe fn new(ptr: *mut u8, len: usize) -> Result<Self, ShmError> {
        let addr = ptr as usize;
        let base = NonNull::new(ptr).ok_or(ShmError::BadBase { addr })?;
        if addr % 8 != 0 || addr.checked_add(len).is_none() {
            return Err(ShmError::BadBase { addr });
        }
        Ok(SharedMem { base, len, _life: PhantomData })
    }

    /// Wraps memory already known to be non-null and 8-byte aligned.
    ///
    /// # Safety
    ///
    /// `base` is 8-byte aligned, and the contract of [`SharedMem::new`] holds.
    #[cfg(all(feature = "alloc", not(loom)))]
    pub(crate) unsafe fn from_raw_parts(base: NonNull<u8>, len: usize) -> Self {
        debug_assert!(base.as_ptr() as usize % 8 == 0);
        SharedMem { base, len, _life: PhantomData }
    }

    /// Creates a zeroed region of `len` bytes modelled by loom atomics (`cfg(loom)` only).
    #[cfg(loom)]
    pub fn loom_new(len: usize) -> SharedMem<'static> {
        let words: std::vec::Vec<AtomicU32> = (0..len.div_ceil(4)).map(|_| AtomicU32::new(0)).collect();
        SharedMem { words: words.into(), start: 0, len, _life: PhantomData }
    }

    /// Size of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks that `len` bytes at `offset` lie inside the region.
    pub fn check(&self, offset: usize, len: usize) -> Result<(), ShmError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(ShmError::OutOfBounds { offset, len, size: self.len }),
        }
    }

    /// A view of `len` bytes starting at `offset`; the offset must keep 8-byte alignment.
    pub fn slice(&self, offset: usize, len: usize) -> Result<SharedMem<'a>, ShmError> {
        self.check(offset, len)?;
        if offset % 8 != 0 {
            return Err(ShmError::Misaligned { offset, align: 8 });
        }
        Ok(SharedMem {
            #[cfg(not(loom))]
            // SAFETY: `offset <= self.len`, so the result stays inside (or one past the end
            // of) the allocation described by the constructor's contract, and is non-null.
            base: unsafe { self.base.add(offset) },
            #[cfg(loom)]
            words: self.words.clone(),
            #[cfg(loom)]
            start: self.start + offset,
            len,
            _life: PhantomData,
        })
    }

    /// Reads a `T` at `offset` by value (one copy, word-atomic).
    #[inline]
    pub fn read<T: FromBytes + IntoBytes + KnownLayout + Immutable>(
        &self,
        offset: usize,
    ) -> Result<T, ShmError> {
        self.check(offset, size_of::<T>())?;
        // SAFETY: checked just above.
        Ok(unsafe { self.read_unchecked(offset) })
    }

    /// Writes `value` at `offset` (word-atomic stores).
    #[inline]
    pub fn write<T: IntoBytes + Immutable>(&self, offset: usize, value: &T) -> Result<(), ShmError> {
        self.check(offset, size_of::<T>())?;
        // SAFETY: checked just above. (Not `write_bytes`: with the size known here, the copy
        // folds to the word stores of one entry.)
        unsafe { self.write_unchecked(offset, value) };
        Ok(())
    }

    /// Copies `dst.len()` bytes at `offset` out of the region.
    pub fn read_bytes(&self, offset: usize, dst: &mut [u8]) -> Result<(), ShmError> {
        self.check(offset, dst.len())?;
        // SAFETY: checked just above.
        unsafe { self.copy_out(offset, dst) };
        Ok(())
    }

    /// Copies `src` into the region at `offset`.
    pub fn write_bytes(&self, offset: usize, src: &[u8]) -> Result<(), ShmError> {
        self.check(offset, src.len())?;
        // SAFETY: checked just above.
        unsafe { self.copy_in(offset, src) };
        Ok(())
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), ShmError> {
        self.check(offset, len)?;
        let chunk = [byte; 64];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len());
            // SAFETY: `offset + done + n <= offset + len`, checked above.
            unsafe { self.copy_in(offset + done, &chunk[..n]) };
            done += n;
        }
        Ok(())
    }

    /// A handle to the naturally aligned 32-bit word at `offset`, for index fields that both
    /// parties update atomically.
    pub fn u32_at(&self, offset: usize) -> Result<SharedU32<'a>, ShmError> {
        self.check(offset, 4)?;
        if offset % 4 != 0 {
            return Err(ShmError::Misaligned { offset, align: 4 });
        }
        Ok(SharedU32 {
            #[cfg(not(loom))]
            // SAFETY: `offset + 4 <= len` (checked above), so the pointer is in bounds.
            ptr: unsafe { self.base.add(offset).cast::<AtomicU32>() },
            #[cfg(loom)]
            words: self.words.clone(),
            #[cfg(loom)]
            index: (self.start + offset) / 4,
            _life: PhantomData,
        })
    }

    /// A handle to the naturally aligned 16-bit word at `offset`, for the 16-bit index and
    /// event fields of virtio rings. Under `cfg(loom)` it is modelled on the 32-bit loom word
    /// that contains it.
    pub fn u16_at(&self, offset: usize) -> Result<SharedU16<'a>, ShmError> {
        self.check(offset, 2)?;
        if offset % 2 != 0 {
            return Err(ShmError::Misaligned { offset, align: 2 });
        }
        Ok(SharedU16 {
            #[cfg(not(loom))]
            // SAFETY: `offset + 2 <= len` (checked above), so the pointer is in bounds.
            ptr: unsafe { self.base.add(offset).cast::<AtomicU16>() },
            #[cfg(loom)]
            words: self.words.clone(),
            #[cfg(loom)]
            index: (self.start + offset) / 4,
            #[cfg(loom)]
            shift: 8 * ((self.start + offset) % 4) as u32,
            _life: PhantomData,
        })
    }

    /// Reads a `T` at `offset` without the bounds check.
    ///
    /// # Safety
    ///
    /// `offset + size_of::<T>()` must not exceed [`len`](Self::len).
    #[inline]
    pub(crate) unsafe fn read_unchecked<T: FromBytes + IntoBytes + KnownLayout + Immutable>(
        &self,
        offset: usize,
    ) -> T {
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds by the caller's guarantee.
            let p = unsafe { self.base.as_ptr().add(offset) };
            // The word paths fill a local of their own: with no byte-indexed writes to it, it
            // lives in registers, and the value goes from shared memory to its destination in
            // plain word moves.
            match word_size(size_of::<T>(), 0, p) {
                8 => {
                    let mut value = T::new_zeroed();
                    // SAFETY: `p` is 8-aligned, the size a multiple of 8, the range in bounds.
                    unsafe { load_words::<8>(p, value.as_mut_bytes()) };
                    return value;
                }
                4 => {
                    let mut value = T::new_zeroed();
                    // SAFETY: as above, for 4-byte words.
                    unsafe { load_words::<4>(p, value.as_mut_bytes()) };
                    return value;
                }
                _ => {}
            }
        }
        let mut value = T::new_zeroed();
        // SAFETY: the caller guarantees the range is in bounds.
        unsafe { self.copy_out(offset, value.as_mut_bytes()) };
        value
    }

    /// Writes `value` at `offset` without the bounds check.
    ///
    /// # Safety
    ///
    /// `offset + size_of::<T>()` must not exceed [`len`](Self::len).
    #[inline]
    pub(crate) unsafe fn write_unchecked<T: IntoBytes + Immutable>(&self, offset: usize, value: &T) {
        // SAFETY: the caller guarantees the range is in bounds.
        unsafe { self.copy_in(offset, value.as_bytes()) }
    }

    /// Copies `out.len()` values of `T` out of the region, the `k`-th from
    /// `offset + k * stride`: the entries of a run of ring slots, each copied exactly once.
    ///
    /// When `T`, `stride` and the first entry are all word-aligned (every ring entry type is),
    /// alignment is tested once for the whole run and each entry is a few plain word moves.
    ///
    /// # Safety
    ///
    /// `out` is empty, or `offset + (out.len() - 1) * stride + size_of::<T>()` does not exceed
    /// [`len`](Self::len).
    #[inline]
    pub(crate) unsafe fn read_run_unchecked<T: FromBytes + IntoBytes + KnownLayout + Immutable>(
        &self,
        offset: usize,
        stride: usize,
        out: &mut [T],
    ) {
        if out.is_empty() {
            return;
        }
        #[cfg(not(loom))]
        {
            // SAFETY: the first entry is in bounds by the caller's guarantee.
            let first = unsafe { self.base.as_ptr().add(offset) };
            match word_size(size_of::<T>(), stride, first) {
                8 => {
                    for (k, slot) in out.iter_mut().enumerate() {
                        // SAFETY: entry `k` is in bounds by the caller's guarantee.
                        let p = unsafe { first.add(k * stride) };
                        let mut value = T::new_zeroed();
                        // SAFETY: `p` is 8-aligned (`first` and `stride` are) and in bounds.
                        unsafe { load_words::<8>(p, value.as_mut_bytes()) };
                        *slot = value;
                    }
                    return;
                }
                4 => {
                    for (k, slot) in out.iter_mut().enumerate() {
                        // SAFETY: entry `k` is in bounds by the caller's guarantee.
                        let p = unsafe { first.add(k * stride) };
                        let mut value = T::new_zeroed();
                        // SAFETY: `p` is 4-aligned (`first` and `stride` are) and in bounds.
                        unsafe { load_words::<4>(p, value.as_mut_bytes()) };
                        *slot = value;
                    }
                    return;
                }
                _ => {}
            }
        }
        for (k, slot) in out.iter_mut().enumerate() {
            // SAFETY: entry `k` is in bounds by the caller's guarantee.
            *slot = unsafe { self.read_unchecked(offset + k * stride) };
        }
    }

    /// Writes `src[k]` at `offset + k * stride` for every `k`: the entries of a run of ring
    /// slots, word-aligned runs with one alignment test (see
    /// [`read_run_unchecked`](Self::read_run_unchecked)).
    ///
    /// # Safety
    ///
    /// `src` is empty, or `offset + (src.len() - 1) * stride + size_of::<T>()` does not exceed
    /// [`len`](Self::len).
    #[inline]
    pub(crate) unsafe fn write_run_unchecked<T: IntoBytes + Immutable>(
        &self,
        offset: usize,
        stride: usize,
        src: &[T],
    ) {
        if src.is_empty() {
            return;
        }
        #[cfg(not(loom))]
        {
            // SAFETY: the first entry is in bounds by the caller's guarantee.
            let first = unsafe { self.base.as_ptr().add(offset) };
            match word_size(size_of::<T>(), stride, first) {
                8 => {
                    for (k, value) in src.iter().enumerate() {
                        // SAFETY: entry `k` is in bounds by the caller's guarantee.
                        let p = unsafe { first.add(k * stride) };
                        // SAFETY: `p` is 8-aligned (`first` and `stride` are) and in bounds.
                        unsafe { store_words::<8>(p, value.as_bytes()) };
                    }
                    return;
                }
                4 => {
                    for (k, value) in src.iter().enumerate() {
                        // SAFETY: entry `k` is in bounds by the caller's guarantee.
                        let p = unsafe { first.add(k * stride) };
                        // SAFETY: `p` is 4-aligned (`first` and `stride` are) and in bounds.
                        unsafe { store_words::<4>(p, value.as_bytes()) };
                    }
                    return;
                }
                _ => {}
            }
        }
        for (k, value) in src.iter().enumerate() {
            // SAFETY: entry `k` is in bounds by the caller's guarantee.
            unsafe { self.write_unchecked(offset + k * stride, value) };
        }
    }

    /// # Safety
    ///
    /// `offset + dst.len() <= self.len`.
    #[cfg(not(loom))]
    #[inline]
    unsafe fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        debug_assert!(offset + dst.len() <= self.len);
        // SAFETY: in bounds by the caller's guarantee.
        let base = unsafe { self.base.as_ptr().add(offset) };
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if dst.len() >= BULK_MIN {
            // SAFETY: the `dst.len()` bytes at `base` are inside the region (caller's
            // guarantee), whose contract allows access from outside the abstract machine;
            // `dst` is a private buffer of that length, which cannot overlap the region (no
            // Rust reference to the region's bytes exists).
            return unsafe { bulk::copy(base, dst.as_mut_ptr(), dst.len()) };
        }
        // A whole number of aligned words (every ring entry): no per-word tests.
        match word_size(dst.len(), 0, base) {
            // SAFETY: `base` is 8-aligned, the length a multiple of 8, the range in bounds.
            8 => return unsafe { load_words::<8>(base, dst) },
            // SAFETY: as above, for 4-byte words.
            4 => return unsafe { load_words::<4>(base, dst) },
            _ => {}
        }
        let mut i = 0;
        while i < dst.len() {
            // SAFETY: `i < dst.len()`, so `base + i` is inside the checked range.
            let p = unsafe { base.add(i) };
            let rest = dst.len() - i;
            let addr = p as usize;
            if addr % 8 == 0 && rest >= 8 {
                // SAFETY: `p` is 8-aligned, 8 bytes are in bounds, and the constructor's
                // contract allows atomic access to every byte of the region.
                let v = unsafe { AtomicU64::from_ptr(p.cast()) }.load(Ordering::Relaxed);
                dst[i..i + 8].copy_from_slice(&v.to_ne_bytes());
                i += 8;
            } else if addr % 4 == 0 && rest >= 4 {
                // SAFETY: as above, for an aligned 4-byte word.
                let v = unsafe { AtomicU32::from_ptr(p.cast()) }.load(Ordering::Relaxed);
                dst[i..i + 4].copy_from_slice(&v.to_ne_bytes());
                i += 4;
            } else {
                // SAFETY: as above, for one byte.
                dst[i] = unsafe { AtomicU8::from_ptr(p) }.load(Ordering::Relaxed);
                i += 1;
            }
        }
    }

    /// # Safety
    ///
    /// `offset + src.len() <= self.len`.
    #[cfg(not(loom))]
    #[inline]
    unsafe fn copy_in(&self, offset: usize, src: &[u8]) {
        debug_assert!(offset + src.len() <= self.len);
        // SAFETY: in bounds by the caller's guarantee.
        let base = unsafe { self.base.as_ptr().add(offset) };
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if src.len() >= BULK_MIN {
            // SAFETY: as in `copy_out`, with the private buffer as the source.
            return unsafe { bulk::copy(src.as_ptr(), base, src.len()) };
        }
        // A whole number of aligned words (every ring entry): no per-word tests.
        match word_size(src.len(), 0, base) {
            // SAFETY: `base` is 8-aligned, the length a multiple of 8, the range in bounds.
            8 => return unsafe { store_words::<8>(base, src) },
            // SAFETY: as above, for 4-byte words.
            4 => return unsafe { store_words::<4>(base, src) },
            _ => {}
        }
        let mut i = 0;
        while i < src.len() {
            // SAFETY: `i < src.len()`, so `base + i` is inside the checked range.
            let p = unsafe { base.add(i) };
            let rest = src.len() - i;
            let addr = p as usize;
            if addr % 8 == 0 && rest >= 8 {
                let mut w = [0u8; 8];
                w.copy_from_slice(&src[i..i + 8]);
                // SAFETY: `p` is 8-aligned, 8 bytes are in bounds, atomic access allowed.
                unsafe { AtomicU64::from_ptr(p.cast()) }.store(u64::from_ne_bytes(w), Ordering::Relaxed);
                i += 8;
            } else if addr % 4 == 0 && rest >= 4 {
                let mut w = [0u8; 4];
                w.copy_from_slice(&src[i..i + 4]);
                // SAFETY: as above, for an aligned 4-byte word.
                unsafe { AtomicU32::from_ptr(p.cast()) }.store(u32::from_ne_bytes(w), Ordering::Relaxed);
                i += 4;
            } else {
                // SAFETY: as above, for one byte.
                unsafe { AtomicU8::from_ptr(p) }.store(src[i], Ordering::Relaxed);
                i += 1;
            }
        }
    }

    #[cfg(loom)]
    unsafe fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        let mut i = 0;
        while i < dst.len() {
            let at = self.start + offset + i;
            let w = self.words[at / 4].load(Ordering::Relaxed).to_ne_bytes();
            if at % 4 == 0 && dst.len() - i >= 4 {
                dst[i..i + 4].copy_from_slice(&w);
                i += 4;
            } else {
                dst[i] = w[at % 4];
                i += 1;
            }
        }
    }

    #[cfg(loom)]
    unsafe fn copy_in(&self, offset: usize, src: &[u8]) {
        let mut i = 0;
        while i < src.len() {
            let at = self.start + offset + i;
            if at % 4 == 0 && src.len() - i >= 4 {
                let mut w = [0u8; 4];
                w.copy_from_slice(&src[i..i + 4]);
                self.words[at / 4].store(u32::from_ne_bytes(w), Ordering::Relaxed);
                i += 4;
            } else {
                let byte = src[i];
                let _ = self.words[at / 4].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                    let mut b = w.to_ne_bytes();
                    b[at % 4] = byte;
                    Some(u32::from_ne_bytes(b))
                });
                i += 1;
            }
        }
    }
}

/// The bulk path between shared memory and a private buffer (see the module documentation).
#[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
mod bulk {
    /// Copies `len` bytes from `src` to `dst`: 64-byte blocks as four unaligned 16-byte SSE2
    /// moves (`movdqu`, baseline on x86-64 user-space targets), then the remaining `len % 64` bytes with one
    /// `rep movsb`.
    ///
    /// Not one `rep movsb` for everything: on this project's AMD EPYC hosts `rep movsb` of a
    /// 1500-byte run whose destination sits just above its source modulo 4 KiB (a page-aligned
    /// guest frame copied to a heap buffer 16 bytes into its page) took ~760 ns against ~100
    /// for SSE moves and ~110-140 for glibc's `memcpy` (4 KiB aliasing of its loads with its
    /// own earlier stores); with other alignments the three are within noise of each other.
    ///
    /// # Safety
    ///
    /// `src .. src + len` is readable and `dst .. dst + len` writable; the two ranges do not
    /// overlap; one of them is a private buffer and the other lies in a region under the
    /// contract of [`SharedMem::new`](super::SharedMem::new) (accessed only atomically or from
    /// outside the abstract machine).
    #[inline(always)]
    pub(super) unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
        // Targets without SSE (kernels, `x86_64-unknown-none`) use `rep movsb` for all of it.
        #[cfg(not(target_feature = "sse2"))]
        let tail = len;
        #[cfg(target_feature = "sse2")]
        let (tail, src, dst) = (len % 64, src, dst);
        #[cfg(target_feature = "sse2")]
        let (mut src, mut dst) = (src, dst);
        #[cfg(target_feature = "sse2")]
        let blocks = len / 64;
        #[cfg(target_feature = "sse2")]
        if blocks > 0 {
            // SAFETY: the loop reads bytes `src .. src + 64 * blocks` and writes `dst .. dst +
            // 64 * blocks`, each byte exactly once (disjoint, non-overlapping 16-byte moves in
            // ascending blocks; no overlapping tail trick), all inside the ranges the caller
            // guarantees. Every byte access of an SSE move is single-copy atomic at byte
            // granularity on x86, so on the shared side this is, as for `rep movsb`, a run of
            // relaxed byte-atomic accesses made outside the abstract machine, which may race
            // with the peer without undefined behaviour; the private side is exclusively ours
            // (`dst`) or only read (`src`) for the duration. The compiler sees an opaque
            // block: it cannot split, merge or repeat these reads. No stack is used; the
            // flags are changed (`add`, `dec`), so `preserves_flags` is not claimed; the
            // four xmm temporaries are declared clobbered.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "movdqu {a}, xmmword ptr [{s}]",
                    "movdqu {b}, xmmword ptr [{s} + 16]",
                    "movdqu {c}, xmmword ptr [{s} + 32]",
                    "movdqu {d}, xmmword ptr [{s} + 48]",
                    "movdqu xmmword ptr [{t}], {a}",
                    "movdqu xmmword ptr [{t} + 16], {b}",
                    "movdqu xmmword ptr [{t} + 32], {c}",
                    "movdqu xmmword ptr [{t} + 48], {d}",
                    "add {s}, 64",
                    "add {t}, 64",
                    "dec {n}",
                    "jnz 2b",
                    s = inout(reg) src,
                    t = inout(reg) dst,
                    n = inout(reg) blocks => _,
                    a = out(xmm_reg) _,
                    b = out(xmm_reg) _,
                    c = out(xmm_reg) _,
                    d = out(xmm_reg) _,
                    options(nostack),
                );
            }
        }
        if tail > 0 {
            // SAFETY: `rep movsb` reads the `tail` bytes at `rsi` (just past the blocks) and
            // writes `tail` bytes at `rdi`, each byte once, ascending (the direction flag is
            // clear on entry to any asm block, by Rust's inline-asm rules, and `rep movsb`
            // leaves it so); both ranges are the ends of the caller's ranges. Byte accesses
            // are single-copy atomic on x86, as above. No stack is used and no flags are
            // changed.
            unsafe {
                core::arch::asm!(
                    "rep movsb",
                    inout("rcx") tail => _,
                    inout("rsi") src => _,
                    inout("rdi") dst => _,
                    options(nostack, preserves_flags),
                );
            }
        }
    }
}

/// The word size (8 or 4) in which `len`-byte values at `first`, `first + stride`, … can all
/// be copied as naturally aligned words, or 0 if they cannot. For fixed-size entries `len` and
/// `stride` are constants, so only the alignment of `first` is tested at run time.
#[cfg(not(loom))]
#[inline(always)]
fn word_size(len: usize, stride: usize, first: *mut u8) -> usize {
    let addr = first as usize;
    if len % 8 == 0 && stride % 8 == 0 && addr % 8 == 0 {
        8
    } else if len % 4 == 0 && stride % 4 == 0 && addr % 4 == 0 {
        4
    } else {
        0
    }
}

/// Copies `dst.len()` bytes out of shared memory at `src` as `W`-byte relaxed atomic loads
/// (`W` is 8 or 4): each byte is read exactly once.
///
/// # Safety
///
/// `src` is `W`-aligned, `dst.len()` is a multiple of `W`, and the `dst.len()` bytes at `src`
/// lie inside one region under the contract of [`SharedMem::new`].
#[cfg(not(loom))]
#[inline(always)]
unsafe fn load_words<const W: usize>(src: *mut u8, dst: &mut [u8]) {
    const { assert!(W == 8 || W == 4) };
    for (i, word) in dst.chunks_exact_mut(W).enumerate() {
        // SAFETY: `W * i + W <= dst.len()`: the word is inside the range.
        let p = unsafe { src.add(W * i) };
        if W == 8 {
            // SAFETY: `p` is 8-aligned (`src` is, and so is `8 * i`), and the region's
            // contract allows atomic access to every byte of it.
            let v = unsafe { AtomicU64::from_ptr(p.cast()) }.load(Ordering::Relaxed);
            word.copy_from_slice(&v.to_ne_bytes());
        } else {
            // SAFETY: as above, for a 4-aligned 4-byte word.
            let v = unsafe { AtomicU32::from_ptr(p.cast()) }.load(Ordering::Relaxed);
            word.copy_from_slice(&v.to_ne_bytes());
        }
    }
}

/// Copies `src` into shared memory at `dst` as `W`-byte relaxed atomic stores (`W` is 8 or 4).
///
/// # Safety
///
/// As for [`load_words`], with `dst` and `src.len()`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn store_words<const W: usize>(dst: *mut u8, src: &[u8]) {
    const { assert!(W == 8 || W == 4) };
    for (i, word) in src.chunks_exact(W).enumerate() {
        // SAFETY: `W * i + W <= src.len()`: the word is inside the range.
        let p = unsafe { dst.add(W * i) };
        if W == 8 {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            // SAFETY: `p` is 8-aligned (`dst` is, and so is `8 * i`), and the region's
            // contract allows atomic access to every byte of it.
            unsafe { AtomicU64::from_ptr(p.cast()) }.store(u64::from_ne_bytes(w), Ordering::Relaxed);
        } else {
            let mut w = [0u8; 4];
            w.copy_from_slice(word);
            // SAFETY: as above, for a 4-aligned 4-byte word.
            unsafe { AtomicU32::from_ptr(p.cast()) }.store(u32::from_ne_bytes(w), Ordering::Relaxed);
        }
    }
}

/// A naturally aligned 32-bit word in shared memory that both parties access atomically
/// (ring indices, event thresholds).
pub struct SharedU32<'a> {
    #[cfg(not(loom))]
    ptr: NonNull<AtomicU32>,
    #[cfg(loom)]
    words: std::sync::Arc<[AtomicU32]>,
    #[cfg(loom)]
    index: usize,
    _life: PhantomData<&'a AtomicU32>,
}

// SAFETY: only atomic operations are performed through the pointer, and the memory is valid
// for `'a` by the contract of `SharedMem::new`, whichever thread holds the handle.
unsafe impl Send for SharedU32<'_> {}
// SAFETY: as for `Send`; all methods take `&self` and are atomic.
unsafe impl Sync for SharedU32<'_> {}

impl core::fmt::Debug for SharedU32<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("SharedU32").field(&self.load(Ordering::Relaxed)).finish()
    }
}

impl SharedU32<'_> {
    #[inline]
    fn atomic(&self) -> &AtomicU32 {
        #[cfg(not(loom))]
        {
            // SAFETY: the pointer is 4-aligned, in bounds and valid for `'a` (see
            // `SharedMem::u32_at` and `SharedMem::new`); atomics may alias peer writes.
            unsafe { self.ptr.as_ref() }
        }
        #[cfg(loom)]
        {
            &self.words[self.index]
        }
    }

    /// Atomically loads the word.
    #[inline]
    pub fn load(&self, order: Ordering) -> u32 {
        self.atomic().load(order)
    }

    /// Atomically stores `value`.
    #[inline]
    pub fn store(&self, value: u32, order: Ordering) {
        self.atomic().store(value, order)
    }

    /// Atomically replaces the word with `new` if it still holds `current`; returns the value
    /// found (`Ok` when it was `current`). Used for words both parties update with a
    /// read-modify-write, such as a grant entry's flags (with the `domid` beside them).
    #[inline]
    pub fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        self.atomic().compare_exchange(current, new, success, failure)
    }

    /// Atomically clears the bits not in `mask`; returns the previous value.
    #[inline]
    pub fn fetch_and(&self, mask: u32, order: Ordering) -> u32 {
        self.atomic().fetch_and(mask, order)
    }

    /// Atomically sets the bits in `bits`; returns the previous value.
    #[inline]
    pub fn fetch_or(&self, bits: u32, order: Ordering) -> u32 {
        self.atomic().fetch_or(bits, order)
    }
}

/// A naturally aligned 16-bit word in shared memory that one party writes and the other
/// reads atomically (virtio ring indices and event thresholds). Values are native-endian; the
/// virtio code converts from and to little-endian.
pub struct SharedU16<'a> {
    #[cfg(not(loom))]
    ptr: NonNull<AtomicU16>,
    #[cfg(loom)]
    words: std::sync::Arc<[AtomicU32]>,
    #[cfg(loom)]
    index: usize,
    #[cfg(loom)]
    shift: u32,
    _life: PhantomData<&'a AtomicU32>,
}

// SAFETY: only atomic operations are performed through the pointer, and the memory is valid
// for `'a` by the contract of `SharedMem::new`, whichever thread holds the handle.
unsafe impl Send for SharedU16<'_> {}
// SAFETY: as for `Send`; all methods take `&self` and are atomic.
unsafe impl Sync for SharedU16<'_> {}

impl core::fmt::Debug for SharedU16<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("SharedU16").field(&self.load(Ordering::Relaxed)).finish()
    }
}

impl Clone for SharedU16<'_> {
    fn clone(&self) -> Self {
        SharedU16 {
            #[cfg(not(loom))]
            ptr: self.ptr,
            #[cfg(loom)]
            words: self.words.clone(),
            #[cfg(loom)]
            index: self.index,
            #[cfg(loom)]
            shift: self.shift,
            _life: PhantomData,
        }
    }
}

impl SharedU16<'_> {
    /// Atomically loads the word.
    #[inline]
    pub fn load(&self, order: Ordering) -> u16 {
        #[cfg(not(loom))]
        {
            // SAFETY: the pointer is 2-aligned, in bounds and valid for `'a` (see
            // `SharedMem::u16_at` and `SharedMem::new`); atomics may alias peer writes.
            unsafe { self.ptr.as_ref() }.load(order)
        }
        #[cfg(loom)]
        {
            (self.words[self.index].load(order) >> self.shift) as u16
        }
    }

    /// Atomically stores `value`. Under `cfg(loom)` this is a read-modify-write of the
    /// containing 32-bit word with the same ordering; the other half of that word is only ever
    /// written by the same party in the virtio rings, so no update is lost.
    #[inline]
    pub fn store(&self, value: u16, order: Ordering) {
        #[cfg(not(loom))]
        {
            // SAFETY: as in `load`.
            unsafe { self.ptr.as_ref() }.store(value, order)
        }
        #[cfg(loom)]
        {
            let fetch = if order == Ordering::SeqCst { Ordering::SeqCst } else { Ordering::Relaxed };
            let mask = !(0xffff_u32 << self.shift);
            let _ = self.words[self.index]
                .fetch_update(order, fetch, |w| Some((w & mask) | (u32::from(value) << self.shift)));
        }
    }
}

#[cfg(all(feature = "alloc", not(loom)))]
pub use heap::HeapRegion;

#[cfg(all(feature = "alloc", not(loom)))]
mod heap {
    use alloc::boxed::Box;
    use core::ptr::NonNull;
    use core::sync::atomic::AtomicU64;

    use super::SharedMem;

    /// Zeroed, 8-byte aligned shared memory on the heap, for peers that are threads of one
    /// process (tests, benchmarks, the in-process demo). Needs the `alloc` feature.
    #[derive(Debug)]
    pub struct HeapRegion {
        words: Box<[AtomicU64]>,
        len: usize,
    }

    impl HeapRegion {
        /// A zeroed region of `len` bytes.
        pub fn new(len: usize) -> Self {
            let words = (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect();
            HeapRegion { words, len }
        }

        /// The region as shared memory.
        pub fn mem(&self) -> SharedMem<'_> {
            let base = NonNull::from(&*self.words).cast::<u8>();
            // SAFETY: the allocation holds `len.div_ceil(8) * 8 >= len` bytes, is 8-aligned
            // (it is an array of `AtomicU64`), lives while `self` is borrowed, and is only
            // ever accessed atomically: `HeapRegion` exposes it through `SharedMem` alone.
            unsafe { SharedMem::from_raw_parts(base, self.len) }
        }
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_access_is_bounds_checked() {
        let r = HeapRegion::new(100);
        let m = r.mem();
        assert_eq!(m.len(), 100);
        assert_eq!(m.read::<u32>(96), Ok(0));
        assert_eq!(m.read::<u32>(97), Err(ShmError::OutOfBounds { offset: 97, len: 4, size: 100 }));
        assert!(m.read::<u64>(usize::MAX - 3).is_err(), "offset + len overflows");
        assert!(m.write_bytes(99, &[1, 2]).is_err());
        assert!(m.fill(0, 101, 0).is_err());
        assert_eq!(m.u32_at(2).unwrap_err(), ShmError::Misaligned { offset: 2, align: 4 });
        assert!(m.u32_at(100).is_err());
        assert!(m.slice(96, 8).is_err());
        assert_eq!(m.slice(4, 8).unwrap_err(), ShmError::Misaligned { offset: 4, align: 8 });
    }

    #[test]
    fn copies_are_exact_at_every_alignment() {
        let r = HeapRegion::new(256);
        let m = r.mem();
        let src: [u8; 37] = core::array::from_fn(|i| i as u8 ^ 0x5a);
        for off in 0..64 {
            m.fill(0, 256, 0xee).unwrap();
            m.write_bytes(off, &src).unwrap();
            let mut all = [0u8; 256];
            m.read_bytes(0, &mut all).unwrap();
            assert!(all[..off].iter().all(|&b| b == 0xee), "bytes before {off} untouched");
            assert_eq!(&all[off..off + src.len()], &src);
            assert!(all[off + src.len()..].iter().all(|&b| b == 0xee), "bytes after untouched");
            let mut back = [0u8; 37];
            m.read_bytes(off, &mut back).unwrap();
            assert_eq!(back, src);
        }
    }

    #[test]
    fn bulk_copies_are_exact_at_every_alignment() {
        let r = HeapRegion::new(1024);
        let m = r.mem();
        for n in [BULK_MIN - 1, BULK_MIN, BULK_MIN + 13, 700] {
            let src: alloc::vec::Vec<u8> = (0..n).map(|i| (i * 7) as u8 ^ 0xa5).collect();
            for off in 0..17 {
                m.fill(0, 1024, 0xee).unwrap();
                m.write_bytes(off, &src).unwrap();
                let mut all = [0u8; 1024];
                m.read_bytes(0, &mut all).unwrap();
                assert!(all[..off].iter().all(|&b| b == 0xee), "bytes before {off} untouched");
                assert_eq!(&all[off..off + n], &src[..]);
                assert!(all[off + n..].iter().all(|&b| b == 0xee), "bytes after untouched");
                let mut back = alloc::vec![0u8; n];
                m.read_bytes(off, &mut back).unwrap();
                assert_eq!(back, src);
            }
        }
    }

    #[test]
    fn u16_words_are_checked_and_alias_the_bytes() {
        let r = HeapRegion::new(8);
        let m = r.mem();
        assert_eq!(m.u16_at(1).unwrap_err(), ShmError::Misaligned { offset: 1, align: 2 });
        assert!(m.u16_at(7).is_err());
        assert!(m.u16_at(8).is_err());
        let w = m.u16_at(6).unwrap();
        w.store(0xbeef, Ordering::Release);
        assert_eq!(m.read::<u16>(6), Ok(0xbeef));
        assert_eq!(m.read::<u16>(4), Ok(0), "the other half of the word is untouched");
        m.write(6, &0x1234u16).unwrap();
        assert_eq!(w.clone().load(Ordering::Acquire), 0x1234);
    }

    #[test]
    fn slices_and_words_alias_the_same_bytes() {
        let r = HeapRegion::new(64);
        let m = r.mem();
        let s = m.slice(16, 16).unwrap();
        s.write(4, &0x0102_0304_u32).unwrap();
        assert_eq!(m.read::<u32>(20), Ok(0x0102_0304));
        let w = m.u32_at(20).unwrap();
        w.store(7, Ordering::Relaxed);
        assert_eq!(s.read::<u32>(4), Ok(7));
        assert_eq!(w.compare_exchange(6, 9, Ordering::AcqRel, Ordering::Acquire), Err(7));
        assert_eq!(w.compare_exchange(7, 9, Ordering::AcqRel, Ordering::Acquire), Ok(7));
        assert_eq!(w.fetch_or(0x30, Ordering::AcqRel), 9);
        assert_eq!(w.fetch_and(!0x10, Ordering::AcqRel), 0x39);
        assert_eq!(s.read::<u32>(4), Ok(0x29));
        assert!(s.read::<u32>(13).is_err(), "a slice is bounded by its own length");
    }
}
