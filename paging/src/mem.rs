//! Access to the physical memory that holds page tables.
//!
//! The mapper never forms a reference to a table; it reads and writes single 8-byte entries
//! through [`PhysMem`], so the same code serves a kernel with an identity or fixed-offset map,
//! a hypervisor editing a guest's tables through its host mapping, and tests over a byte
//! buffer. Entries are little-endian, 8-byte aligned.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::addr::PhysAddr;

/// A physical address the accessor cannot reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("physical address {addr:#x} (+{len:#x} bytes) is outside the accessible memory")]
pub struct MemError {
    /// The address.
    pub addr: u64,
    /// Bytes the access needed.
    pub len: u64,
}

/// Reads and writes page-table entries by physical address.
pub trait PhysMem {
    /// The 8-byte entry at `addr` (8-byte aligned).
    fn read_entry(&self, addr: PhysAddr) -> Result<u64, MemError>;

    /// Stores `value` at `addr` (8-byte aligned) as one 8-byte write, so a CPU walking the
    /// table concurrently sees the old or the new entry, never a mix.
    fn write_entry(&mut self, addr: PhysAddr, value: u64) -> Result<(), MemError>;

    /// Zeroes the 4 KiB frame at `frame` (4 KiB aligned), for a new table. The mapper calls it
    /// only for a frame its allocator has just returned, before linking it into a table.
    #[inline]
    fn zero_frame(&mut self, frame: PhysAddr) -> Result<(), MemError> {
        for i in 0..512 {
            let a = PhysAddr::new_masked(frame.as_u64() + 8 * i);
            self.write_entry(a, 0)?;
        }
        Ok(())
    }
}

impl<M: PhysMem + ?Sized> PhysMem for &mut M {
    #[inline]
    fn read_entry(&self, addr: PhysAddr) -> Result<u64, MemError> {
        (**self).read_entry(addr)
    }
    #[inline]
    fn write_entry(&mut self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        (**self).write_entry(addr, value)
    }
    #[inline]
    fn zero_frame(&mut self, frame: PhysAddr) -> Result<(), MemError> {
        (**self).zero_frame(frame)
    }
}

/// Physical memory `[base, base + bytes.len())` held in a byte slice: a host mapping of guest
/// RAM the caller owns exclusively while the mapper runs (no vCPU running), or a test buffer.
#[derive(Debug)]
pub struct SliceMem<'a> {
    bytes: &'a mut [u8],
    base: u64,
}

impl<'a> SliceMem<'a> {
    /// Memory whose first byte is physical address `base`.
    pub fn new(bytes: &'a mut [u8], base: PhysAddr) -> Self {
        SliceMem { bytes, base: base.as_u64() }
    }

    #[inline]
    fn range(&self, addr: PhysAddr, len: u64) -> Result<core::ops::Range<usize>, MemError> {
        let err = MemError { addr: addr.as_u64(), len };
        let off = addr.as_u64().checked_sub(self.base).ok_or(err)?;
        let end = off.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() as u64 {
            return Err(err);
        }
        Ok(off as usize..end as usize)
    }
}

impl PhysMem for SliceMem<'_> {
    #[inline]
    fn read_entry(&self, addr: PhysAddr) -> Result<u64, MemError> {
        let r = self.range(addr, 8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[r]);
        Ok(u64::from_le_bytes(b))
    }

    #[inline]
    fn write_entry(&mut self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        let r = self.range(addr, 8)?;
        self.bytes[r].copy_from_slice(&value.to_le_bytes());
        Ok(())
    }

    #[inline]
    fn zero_frame(&mut self, frame: PhysAddr) -> Result<(), MemError> {
        let r = self.range(frame, 4096)?;
        self.bytes[r].fill(0);
        Ok(())
    }
}

/// Physical memory `[start, end)` visible at virtual address `physical + offset`: a kernel's
/// direct map (offset 0 is an identity map), or a hypervisor's mapping of a running guest's RAM.
///
/// Every entry access is one relaxed 8-byte atomic load or store, so a CPU (or vCPU) that sets
/// the accessed and dirty bits concurrently is not a data race, and a walker never sees a torn
/// entry. Zeroing a new table is the exception: plain stores, to a frame no one else can see yet
/// (see [`OffsetMem::new`]).
#[derive(Debug, Clone, Copy)]
pub struct OffsetMem {
    offset: usize,
    start: u64,
    end: u64,
}

impl OffsetMem {
    /// Memory where physical address `p` in `start..end` is at virtual address `p + offset`.
    ///
    /// # Safety
    /// For every 8-byte aligned `p` in `start..end`, `p + offset` must not overflow and must be valid
    /// for 8-byte atomic reads and writes, with exposed provenance, for as long as the value
    /// (or a copy) is used; no Rust reference may cover those bytes meanwhile (other CPUs and
    /// atomic accesses are fine). Writes change translations: the caller owns the tables.
    ///
    /// [`PhysMem::zero_frame`] clears a frame with plain (non-atomic) stores, i.e. `memset`
    /// with wide vector stores rather than 512 separate atomic ones: nothing else (no other
    /// thread, no CPU walking it) may access a frame while it is being zeroed. The mapper
    /// zeroes only frames its [`crate::FrameAllocator`] has just handed out, before linking
    /// them, so an allocator that returns free frames (as it must anyway) is enough.
    pub const unsafe fn new(offset: usize, start: u64, end: u64) -> Self {
        OffsetMem { offset, start, end }
    }

    #[inline]
    fn cell(&self, addr: PhysAddr) -> Result<&AtomicU64, MemError> {
        let a = addr.as_u64();
        // One compare for the range (wrapping below `start`), one for alignment.
        let off = a.wrapping_sub(self.start);
        if off >= (self.end - self.start).saturating_sub(7) || a % 8 != 0 {
            return Err(MemError { addr: a, len: 8 });
        }
        let p: *mut u64 = core::ptr::with_exposed_provenance_mut(self.offset + a as usize);
        // SAFETY: `new`'s contract makes `p` valid, 8-byte aligned (a is, and so is the
        // mapping) and free of references for atomic access during our lifetime.
        Ok(unsafe { AtomicU64::from_ptr(p) })
    }
}

impl PhysMem for OffsetMem {
    #[inline]
    fn read_entry(&self, addr: PhysAddr) -> Result<u64, MemError> {
        // Relaxed: an entry is a value on its own; ordering against the CPU's walks comes from
        // the TLB flush the caller performs, not from memory ordering.
        Ok(self.cell(addr)?.load(Ordering::Relaxed))
    }

    #[inline]
    fn write_entry(&mut self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.cell(addr)?.store(value, Ordering::Relaxed);
        Ok(())
    }

    #[inline]
    fn zero_frame(&mut self, frame: PhysAddr) -> Result<(), MemError> {
        let a = frame.as_u64();
        // The first and last entry in range, and 4 KiB alignment, cover the whole frame.
        self.cell(frame)?;
        self.cell(PhysAddr::new_masked(a + 4088))?;
        if a % 4096 != 0 {
            return Err(MemError { addr: a, len: 4096 });
        }
        let p: *mut u64 = core::ptr::with_exposed_provenance_mut(self.offset + a as usize);
        // SAFETY: the frame lies in `start..end` (checked above), so `new`'s contract makes it
        // valid for writes with exposed provenance, and it also promises that nothing else
        // accesses a frame being zeroed, so plain stores race with nothing.
        unsafe { core::ptr::write_bytes(p, 0, 512) };
        Ok(())
    }
}

/// Wraps an accessor and counts the entries written (for benchmarks and tests).
#[derive(Debug)]
pub struct CountingMem<M> {
    /// The wrapped accessor.
    pub inner: M,
    /// Entries written so far (zeroing a frame counts 512).
    pub writes: u64,
}

impl<M> CountingMem<M> {
    /// Counts writes through `inner`, starting at zero.
    pub fn new(inner: M) -> Self {
        CountingMem { inner, writes: 0 }
    }
}

impl<M: PhysMem> PhysMem for CountingMem<M> {
    #[inline]
    fn read_entry(&self, addr: PhysAddr) -> Result<u64, MemError> {
        self.inner.read_entry(addr)
    }
    #[inline]
    fn write_entry(&mut self, addr: PhysAddr, value: u64) -> Result<(), MemError> {
        self.writes += 1;
        self.inner.write_entry(addr, value)
    }
    #[inline]
    fn zero_frame(&mut self, frame: PhysAddr) -> Result<(), MemError> {
        self.writes += 512;
        self.inner.zero_frame(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pa(a: u64) -> PhysAddr {
        PhysAddr::new(a).unwrap()
    }

    #[test]
    fn slice_mem_bounds_and_endianness() {
        let mut buf = [0u8; 8192];
        let mut m = SliceMem::new(&mut buf, pa(0x10_0000));
        m.write_entry(pa(0x10_0008), 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_entry(pa(0x10_0008)), Ok(0x1122_3344_5566_7788));
        assert_eq!(m.read_entry(pa(0x10_1ff8)), Ok(0));
        assert_eq!(m.read_entry(pa(0x10_2000)), Err(MemError { addr: 0x10_2000, len: 8 }));
        assert_eq!(m.read_entry(pa(0x0f_fff8)), Err(MemError { addr: 0x0f_fff8, len: 8 }));
        assert_eq!(m.zero_frame(pa(0x10_1000)), Ok(()));
        assert!(m.zero_frame(pa(0x10_1008)).is_err());
        m.zero_frame(pa(0x10_0000)).unwrap();
        let _ = m;
        assert_eq!(buf[8..16], [0; 8]);
        buf[16] = 0x88;
        let m = SliceMem::new(&mut buf, pa(0));
        assert_eq!(m.read_entry(pa(16)), Ok(0x88));
    }

    #[test]
    fn offset_mem_reads_and_writes_through_the_offset() {
        let mut frames = std::vec![0u64; 1024];
        let base = frames.as_mut_ptr().expose_provenance();
        // Physical 0x1000.. maps to the buffer: offset = base - 0x1000.
        // SAFETY: physical [0x1000, 0x3000) maps onto `frames` (8 KiB, 8-aligned, exposed);
        // no reference to `frames` is used until the accessor is dead.
        let mut m = unsafe { OffsetMem::new(base - 0x1000, 0x1000, 0x3000) };
        m.write_entry(pa(0x1008), 42).unwrap();
        m.write_entry(pa(0x2ff8), 7).unwrap();
        assert_eq!(m.read_entry(pa(0x1008)), Ok(42));
        assert!(m.read_entry(pa(0x3000)).is_err());
        assert!(m.read_entry(pa(0x2ffc)).is_err());
        assert!(m.read_entry(pa(0x0ff8)).is_err());
        let mut c = CountingMem::new(m);
        c.zero_frame(pa(0x2000)).unwrap();
        assert_eq!(c.writes, 512);
        assert_eq!(frames[1], 42);
        assert_eq!(frames[1023], 0);
    }
}
