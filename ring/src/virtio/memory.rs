//! Guest memory: translating the guest-physical (or I/O virtual) addresses that appear in a
//! virtqueue into [`SharedMem`] regions.
//!
//! Everything a virtqueue touches — its own rings and the buffers its descriptors point to —
//! is named by a guest address. A [`GuestMemory`] maps an address range to a [`GuestSlice`]:
//! a bounds-checked window of one region. A range that is not wholly inside one region is an
//! error value ([`GuestMemoryError`]); so is one whose end overflows.
//!
//! Implementations: a single [`GuestRegion`], a no-alloc set of them ([`GuestRegions`]), with
//! `std` a set of memfd regions ([`MemfdGuestMemory`]), and
//! with the `vm-memory` feature rust-vmm's memory
//! (`VmGuestMemory`).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::shm::{SharedMem, SharedU16, ShmError};
use crate::virtio::error::GuestMemoryError;

/// Translates guest addresses into shared memory.
pub trait GuestMemory {
    /// The `len` bytes at guest address `addr`, which must lie inside one region; `len` may
    /// be zero (the address must then lie inside a region or at its end).
    fn translate(&self, addr: u64, len: usize) -> Result<GuestSlice<'_>, GuestMemoryError>;
}

impl<T: GuestMemory + ?Sized> GuestMemory for &T {
    #[inline]
    fn translate(&self, addr: u64, len: usize) -> Result<GuestSlice<'_>, GuestMemoryError> {
        (**self).translate(addr, len)
    }
}

/// A translated guest range: `len` bytes at `offset` in a region. Every access is relative to
/// the start of the range and checked against its length (and then, again, by the region).
#[derive(Debug, Clone)]
pub struct GuestSlice<'a> {
    mem: SharedMem<'a>,
    offset: usize,
    len: usize,
}

impl<'a> GuestSlice<'a> {
    /// The range `offset .. offset + len` of `mem`; fails unless it lies inside.
    pub fn new(mem: SharedMem<'a>, offset: usize, len: usize) -> Result<Self, ShmError> {
        mem.check(offset, len)?;
        Ok(GuestSlice { mem, offset, len })
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The region the range lies in, and the range's offset in it.
    pub fn region(&self) -> (&SharedMem<'a>, usize) {
        (&self.mem, self.offset)
    }

    /// Offset in the region of `len` bytes at `at` in this range.
    #[inline]
    fn at(&self, at: usize, len: usize) -> Result<usize, ShmError> {
        match at.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.offset + at),
            _ => Err(ShmError::OutOfBounds { offset: at, len, size: self.len }),
        }
    }

    /// The sub-range of `len` bytes at `at`.
    pub fn sub(&self, at: usize, len: usize) -> Result<GuestSlice<'a>, ShmError> {
        let offset = self.at(at, len)?;
        Ok(GuestSlice { mem: self.mem.clone(), offset, len })
    }

    /// Reads a `T` at `at` by value.
    #[inline]
    pub fn read<T: FromBytes + IntoBytes + KnownLayout + Immutable>(&self, at: usize) -> Result<T, ShmError> {
        self.mem.read(self.at(at, size_of::<T>())?)
    }

    /// Writes `value` at `at`.
    #[inline]
    pub fn write<T: IntoBytes + Immutable>(&self, at: usize, value: &T) -> Result<(), ShmError> {
        self.mem.write(self.at(at, size_of::<T>())?, value)
    }

    /// Copies `dst.len()` bytes at `at` out of the range.
    #[inline]
    pub fn read_bytes(&self, at: usize, dst: &mut [u8]) -> Result<(), ShmError> {
        self.mem.read_bytes(self.at(at, dst.len())?, dst)
    }

    /// Copies `src` into the range at `at`.
    #[inline]
    pub fn write_bytes(&self, at: usize, src: &[u8]) -> Result<(), ShmError> {
        self.mem.write_bytes(self.at(at, src.len())?, src)
    }

    /// The naturally aligned (in host memory) 16-bit word at `at`.
    pub fn u16_at(&self, at: usize) -> Result<SharedU16<'a>, ShmError> {
        self.mem.u16_at(self.at(at, 2)?)
    }
}

/// One region of guest memory: `mem` holds the guest addresses `base .. base + mem.len()`.
#[derive(Debug, Clone)]
pub struct GuestRegion<'a> {
    base: u64,
    mem: SharedMem<'a>,
}

impl<'a> GuestRegion<'a> {
    /// A region at guest address `base`; fails if it would wrap the address space.
    pub fn new(base: u64, mem: SharedMem<'a>) -> Result<Self, GuestMemoryError> {
        if base.checked_add(mem.len() as u64).is_none() {
            return Err(GuestMemoryError::BadRegion { base });
        }
        Ok(GuestRegion { base, mem })
    }

    /// Guest address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The region's memory.
    pub fn mem(&self) -> &SharedMem<'a> {
        &self.mem
    }

    /// First guest address past the region.
    fn end(&self) -> u64 {
        self.base + self.mem.len() as u64
    }

    /// Translates `addr .. addr + len` if `addr` is in this region: `None` if it is not,
    /// otherwise the slice or why it cannot be had.
    #[inline]
    fn try_translate(&self, addr: u64, len: usize) -> Option<Result<GuestSlice<'a>, GuestMemoryError>> {
        let offset = addr.checked_sub(self.base)?;
        if offset > self.mem.len() as u64 {
            return None;
        }
        let offset = offset as usize;
        if offset == self.mem.len() && len > 0 {
            return None;
        }
        Some(match offset.checked_add(len) {
            Some(end) if end <= self.mem.len() => Ok(GuestSlice { mem: self.mem.clone(), offset, len }),
            _ => Err(GuestMemoryError::CrossesRegionEnd { addr, len, region_end: self.end() }),
        })
    }
}

/// Translates in the first region of `regions` that contains `addr`.
#[inline]
pub(crate) fn translate_in<'a>(
    regions: &[GuestRegion<'a>],
    addr: u64,
    len: usize,
) -> Result<GuestSlice<'a>, GuestMemoryError> {
    if addr.checked_add(len as u64).is_none() {
        return Err(GuestMemoryError::Overflow { addr, len });
    }
    regions
        .iter()
        .find_map(|r| r.try_translate(addr, len))
        .unwrap_or(Err(GuestMemoryError::Unmapped { addr, len }))
}

/// Checks that no two regions overlap.
pub(crate) fn check_disjoint(regions: &[GuestRegion<'_>]) -> Result<(), GuestMemoryError> {
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            if a.base < b.end() && b.base < a.end() {
                return Err(GuestMemoryError::BadRegion { base: b.base });
            }
        }
    }
    Ok(())
}

impl GuestMemory for GuestRegion<'_> {
    #[inline]
    fn translate(&self, addr: u64, len: usize) -> Result<GuestSlice<'_>, GuestMemoryError> {
        translate_in(core::slice::from_ref(self), addr, len)
    }
}

/// A set of disjoint regions, borrowed: guest memory without allocation (`no_std`).
#[derive(Debug, Clone, Copy)]
pub struct GuestRegions<'r, 'a> {
    regions: &'r [GuestRegion<'a>],
}

impl<'r, 'a> GuestRegions<'r, 'a> {
    /// The regions, checked to be pairwise disjoint. Lookups try them in order.
    pub fn new(regions: &'r [GuestRegion<'a>]) -> Result<Self, GuestMemoryError> {
        check_disjoint(regions)?;
        Ok(GuestRegions { regions })
    }

    /// The regions.
    pub fn regions(&self) -> &'r [GuestRegion<'a>] {
        self.regions
    }
}

impl GuestMemory for GuestRegions<'_, '_> {
    #[inline]
    fn translate(&self, addr: u64, len: usize) -> Result<GuestSlice<'_>, GuestMemoryError> {
        translate_in(self.regions, addr, len)
    }
}

#[cfg(all(feature = "std", not(loom)))]
pub use memfd::MemfdGuestMemory;

#[cfg(all(feature = "std", not(loom)))]
mod memfd {
    use std::vec::Vec;

    use super::{check_disjoint, translate_in, GuestMemory, GuestRegion, GuestSlice};
    use crate::virtio::error::GuestMemoryError;
    use crate::MemfdRegion;

    /// Guest memory made of memfd regions at guest base addresses, which can be shared with
    /// another process (a VMM, a vhost-user back end). Needs `std`.
    #[derive(Debug)]
    pub struct MemfdGuestMemory {
        regions: Vec<(u64, MemfdRegion)>,
    }

    impl MemfdGuestMemory {
        /// The `(base, region)` pairs, checked to be disjoint and not to wrap.
        pub fn new(regions: Vec<(u64, MemfdRegion)>) -> Result<Self, GuestMemoryError> {
            let views = regions
                .iter()
                .map(|(base, r)| GuestRegion::new(*base, r.mem()))
                .collect::<Result<Vec<_>, _>>()?;
            check_disjoint(&views)?;
            Ok(MemfdGuestMemory { regions })
        }

        /// One fresh memfd region of `len` bytes at guest address `base`.
        pub fn single(base: u64, len: usize) -> std::io::Result<Self> {
            let region = MemfdRegion::new("pvio-guest", len)?;
            Self::new(std::vec![(base, region)]).map_err(std::io::Error::other)
        }

        /// The regions and their guest base addresses.
        pub fn regions(&self) -> &[(u64, MemfdRegion)] {
            &self.regions
        }
    }

    impl GuestMemory for MemfdGuestMemory {
        #[inline]
        fn translate(&self, addr: u64, len: usize) -> Result<GuestSlice<'_>, GuestMemoryError> {
            for (base, r) in &self.regions {
                let region = GuestRegion::new(*base, r.mem())?;
                if let Some(found) = region.try_translate(addr, len) {
                    return found;
                }
            }
            translate_in(&[], addr, len)
        }
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use super::*;
    use crate::HeapRegion;

    #[test]
    fn ranges_must_lie_inside_one_region() {
        let (a, b) = (HeapRegion::new(0x1000), HeapRegion::new(0x1000));
        let regions =
            [GuestRegion::new(0x10000, a.mem()).unwrap(), GuestRegion::new(0x11000, b.mem()).unwrap()];
        let m = GuestRegions::new(&regions).unwrap();
        let s = m.translate(0x10ff0, 16).unwrap();
        assert_eq!((s.region().1, s.len()), (0xff0, 16));
        assert_eq!(
            m.translate(0x10ff0, 17).unwrap_err(),
            GuestMemoryError::CrossesRegionEnd { addr: 0x10ff0, len: 17, region_end: 0x11000 },
            "adjacent regions are still two regions"
        );
        assert_eq!(m.translate(0x11000, 0x1000).unwrap().region().1, 0);
        assert!(m.translate(0x12000, 0).is_ok(), "an empty range at a region's end");
        assert_eq!(
            m.translate(0x12000, 1).unwrap_err(),
            GuestMemoryError::Unmapped { addr: 0x12000, len: 1 }
        );
        assert_eq!(m.translate(0xffff, 2).unwrap_err(), GuestMemoryError::Unmapped { addr: 0xffff, len: 2 });
        assert_eq!(
            m.translate(u64::MAX - 3, 8).unwrap_err(),
            GuestMemoryError::Overflow { addr: u64::MAX - 3, len: 8 }
        );
        // Accesses through a slice are bounded by the slice.
        s.write_bytes(0, &[1; 16]).unwrap();
        assert!(s.write_bytes(1, &[1; 16]).is_err());
        assert!(s.read::<u64>(9).is_err());
        assert_eq!(s.read::<u64>(8), Ok(0x0101_0101_0101_0101));
        assert!(s.sub(8, 9).is_err());
        assert_eq!(s.sub(8, 8).unwrap().read::<u64>(0), Ok(0x0101_0101_0101_0101));
    }

    #[test]
    fn overlapping_or_wrapping_regions_are_refused() {
        let (a, b) = (HeapRegion::new(0x1000), HeapRegion::new(0x1000));
        let regions =
            [GuestRegion::new(0x10000, a.mem()).unwrap(), GuestRegion::new(0x10800, b.mem()).unwrap()];
        assert_eq!(GuestRegions::new(&regions).unwrap_err(), GuestMemoryError::BadRegion { base: 0x10800 });
        assert!(GuestRegion::new(u64::MAX - 0xfff, a.mem()).is_err());
    }

    #[cfg(feature = "std")]
    #[test]
    #[cfg_attr(miri, ignore = "memfd_create is a foreign call")]
    fn memfd_guest_memory_translates() {
        let m = MemfdGuestMemory::single(0x4000, 4096).unwrap();
        m.translate(0x4ffc, 4).unwrap().write(0, &7u32).unwrap();
        assert_eq!(m.regions()[0].1.mem().read::<u32>(0xffc), Ok(7));
        assert!(m.translate(0x4ffc, 5).is_err());
        assert!(m.translate(0x3fff, 1).is_err());
    }
}
