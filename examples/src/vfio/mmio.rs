//! Bounds-checked volatile register access to a mapped region (a BAR or a window of one).

use core::marker::PhantomData;
use core::ptr::NonNull;

use super::{Error, Result};

/// A handle to `len` bytes of device memory (MMIO). Every access is volatile, naturally aligned
/// and checked against `len`; an access outside is an [`Error::OutOfBounds`], never a fault.
#[derive(Debug, Clone, Copy)]
pub struct Mmio<'a> {
    base: NonNull<u8>,
    len: usize,
    _mapping: PhantomData<&'a ()>,
}

// SAFETY: the handle only performs volatile accesses to device memory, which the device
// serialises; sharing it between threads is no different from sharing the mapping.
unsafe impl Send for Mmio<'_> {}
// SAFETY: as for Send: no access goes through a Rust reference to the memory.
unsafe impl Sync for Mmio<'_> {}

impl<'a> Mmio<'a> {
    /// A handle on `len` bytes at `base`.
    ///
    /// # Safety
    /// `base..base+len` must stay mapped and readable/writable for `'a`, and nothing may hold a
    /// Rust reference into it.
    pub unsafe fn from_raw(base: NonNull<u8>, len: usize) -> Self {
        Mmio { base, len, _mapping: PhantomData }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sub-window `[offset, offset + len)`.
    pub fn window(&self, offset: usize, len: usize) -> Result<Mmio<'a>> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: offset <= self.len, so the pointer stays inside (or one past) the mapping.
                let p = unsafe { self.base.add(offset) };
                Ok(Mmio { base: p, len, _mapping: PhantomData })
            }
            _ => Err(self.oob(offset, len)),
        }
    }

    fn oob(&self, offset: usize, size: usize) -> Error {
        Error::OutOfBounds { offset: offset as u64, size: size as u64, len: self.len as u64 }
    }

    fn check<T>(&self, offset: usize) -> Result<*mut T> {
        let size = core::mem::size_of::<T>();
        match offset.checked_add(size) {
            Some(end)
                if end <= self.len && offset % size == 0 && (self.base.as_ptr() as usize) % size == 0 =>
            {
                // SAFETY: end <= len: the access lies inside the mapping.
                Ok(unsafe { self.base.as_ptr().add(offset) }.cast::<T>())
            }
            _ => Err(self.oob(offset, size)),
        }
    }

    /// Volatile 32-bit read at `offset`.
    pub fn read32(&self, offset: usize) -> Result<u32> {
        let p = self.check::<u32>(offset)?;
        // SAFETY: checked in bounds and aligned; the mapping lives for 'a (from_raw contract).
        Ok(unsafe { p.read_volatile() })
    }

    /// Volatile 32-bit write at `offset`.
    pub fn write32(&self, offset: usize, value: u32) -> Result<()> {
        let p = self.check::<u32>(offset)?;
        // SAFETY: as in read32.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// Volatile 16-bit read at `offset` (virtio common config has 16-bit fields).
    pub fn read16(&self, offset: usize) -> Result<u16> {
        let p = self.check::<u16>(offset)?;
        // SAFETY: as in read32.
        Ok(unsafe { p.read_volatile() })
    }

    /// Volatile 16-bit write at `offset`.
    pub fn write16(&self, offset: usize, value: u16) -> Result<()> {
        let p = self.check::<u16>(offset)?;
        // SAFETY: as in read32.
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// Volatile 8-bit read at `offset`.
    pub fn read8(&self, offset: usize) -> Result<u8> {
        let p = self.check::<u8>(offset)?;
        // SAFETY: as in read32.
        Ok(unsafe { p.read_volatile() })
    }

    /// Volatile 8-bit write at `offset`.
    pub fn write8(&self, offset: usize, value: u8) -> Result<()> {
        let p = self.check::<u8>(offset)?;
        // SAFETY: as in read32.
        unsafe { p.write_volatile(value) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_mem(f: impl FnOnce(Mmio<'_>)) {
        let mut mem = vec![0u64; 8]; // 64 bytes, 8-aligned
        let p = NonNull::new(mem.as_mut_ptr().cast::<u8>()).unwrap();
        // SAFETY: `mem` outlives the handle and no reference into it is used while f runs.
        f(unsafe { Mmio::from_raw(p, 64) });
        drop(mem);
    }

    #[test]
    fn in_bounds_accesses_round_trip() {
        with_mem(|m| {
            m.write32(60, 0xdead_beef).unwrap();
            assert_eq!(m.read32(60).unwrap(), 0xdead_beef);
            assert_eq!(m.read16(62).unwrap(), 0xdead);
            assert_eq!(m.read8(60).unwrap(), 0xef);
            m.write16(0, 0x1234).unwrap();
            m.write8(2, 0x56).unwrap();
            assert_eq!(m.read32(0).unwrap(), 0x0056_1234);
        });
    }

    #[test]
    fn out_of_bounds_and_misaligned_are_errors() {
        with_mem(|m| {
            assert!(matches!(m.read32(64), Err(Error::OutOfBounds { offset: 64, size: 4, len: 64 })));
            assert!(m.read32(2).is_err(), "misaligned though in bounds");
            assert!(m.write16(1, 0).is_err(), "misaligned though in bounds");
            assert!(m.read32(61).is_err());
            assert!(m.write32(62, 1).is_err(), "straddles the end");
            assert!(m.read16(63).is_err());
            assert!(m.read8(64).is_err());
            assert!(m.read32(usize::MAX - 1).is_err(), "overflowing offset");
            assert!(m.read8(63).is_ok());
        });
    }

    #[test]
    fn windows_are_bounded_by_their_parent_and_themselves() {
        with_mem(|m| {
            let w = m.window(16, 16).unwrap();
            w.write32(0, 7).unwrap();
            assert_eq!(m.read32(16).unwrap(), 7);
            assert!(w.read32(16).is_err(), "outside the window though inside the parent");
            assert!(m.window(60, 8).is_err());
            assert!(m.window(usize::MAX, 2).is_err());
            assert!(m.window(64, 0).unwrap().is_empty());
        });
    }
}
