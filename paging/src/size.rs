//! Page sizes as types, paging depth, and pages and frames generic over their size.

use core::fmt;
use core::marker::PhantomData;

use crate::addr::{PhysAddr, VirtAddr};

mod sealed {
    pub trait Sealed {}
}

/// A page size x86-64 paging can map: [`Size4KiB`], [`Size2MiB`] or [`Size1GiB`].
///
/// Sealed: no other sizes exist.
pub trait PageSize: sealed::Sealed + Copy + Eq + Ord + fmt::Debug + core::hash::Hash {
    /// Size in bytes.
    const SIZE: u64;
    /// The same size as a value.
    const KIND: PageSizeKind;
}

/// 4 KiB pages, mapped by a page-table entry (level 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Size4KiB {}
/// 2 MiB pages, mapped by a page-directory entry with PS set (level 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Size2MiB {}
/// 1 GiB pages, mapped by a PDPT entry with PS set (level 3; needs CPUID PDPE1GB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Size1GiB {}

impl sealed::Sealed for Size4KiB {}
impl sealed::Sealed for Size2MiB {}
impl sealed::Sealed for Size1GiB {}
impl PageSize for Size4KiB {
    const SIZE: u64 = 1 << 12;
    const KIND: PageSizeKind = PageSizeKind::Size4KiB;
}
impl PageSize for Size2MiB {
    const SIZE: u64 = 1 << 21;
    const KIND: PageSizeKind = PageSizeKind::Size2MiB;
}
impl PageSize for Size1GiB {
    const SIZE: u64 = 1 << 30;
    const KIND: PageSizeKind = PageSizeKind::Size1GiB;
}

/// A page size as a run-time value (what a walk finds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSizeKind {
    /// 4 KiB.
    Size4KiB,
    /// 2 MiB.
    Size2MiB,
    /// 1 GiB.
    Size1GiB,
}

impl PageSizeKind {
    /// All sizes, largest first (the order `map_range` tries them in).
    pub const LARGEST_FIRST: [PageSizeKind; 3] =
        [PageSizeKind::Size1GiB, PageSizeKind::Size2MiB, PageSizeKind::Size4KiB];

    /// Size in bytes.
    #[inline]
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// log2 of the size.
    #[inline]
    pub const fn shift(self) -> u32 {
        match self {
            PageSizeKind::Size4KiB => 12,
            PageSizeKind::Size2MiB => 21,
            PageSizeKind::Size1GiB => 30,
        }
    }

    /// The paging level whose entries map pages of this size (1, 2 or 3).
    #[inline]
    pub const fn level(self) -> u8 {
        match self {
            PageSizeKind::Size4KiB => 1,
            PageSizeKind::Size2MiB => 2,
            PageSizeKind::Size1GiB => 3,
        }
    }

    /// The size a leaf at `level` maps, if a leaf may sit there.
    #[inline]
    pub const fn from_level(level: u8) -> Option<Self> {
        match level {
            1 => Some(PageSizeKind::Size4KiB),
            2 => Some(PageSizeKind::Size2MiB),
            3 => Some(PageSizeKind::Size1GiB),
            _ => None,
        }
    }
}

/// Paging depth: 4-level (48-bit virtual addresses) or 5-level (LA57, 57-bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Levels {
    /// PML4 at the root.
    Four,
    /// PML5 at the root (CR4.LA57).
    Five,
}

impl Levels {
    /// Level number of the root table (4 or 5).
    #[inline]
    pub const fn root_level(self) -> u8 {
        match self {
            Levels::Four => 4,
            Levels::Five => 5,
        }
    }

    /// Width of a canonical virtual address (48 or 57).
    #[inline]
    pub const fn va_bits(self) -> u32 {
        12 + 9 * self.root_level() as u32
    }
}

/// An address that is not a multiple of the page size it was meant to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{addr:#x} is not aligned to a {size:#x}-byte page")]
pub struct Misaligned {
    /// The address.
    pub addr: u64,
    /// The page size it should be a multiple of.
    pub size: u64,
}

/// A virtual page of size `S`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Page<S: PageSize = Size4KiB> {
    start: VirtAddr,
    size: PhantomData<S>,
}

impl<S: PageSize> Page<S> {
    /// The page starting at `start`, which must be aligned to `S::SIZE`.
    #[inline]
    pub const fn from_start_address(start: VirtAddr) -> Result<Self, Misaligned> {
        if start.is_aligned(S::SIZE) {
            Ok(Page { start, size: PhantomData })
        } else {
            Err(Misaligned { addr: start.as_u64(), size: S::SIZE })
        }
    }

    /// The page containing `addr`.
    #[inline]
    pub const fn containing_address(addr: VirtAddr) -> Self {
        Page { start: addr.align_down(S::SIZE), size: PhantomData }
    }

    /// First byte of the page.
    #[inline]
    pub const fn start_address(self) -> VirtAddr {
        self.start
    }

    /// Size in bytes.
    #[inline]
    pub const fn size(self) -> u64 {
        S::SIZE
    }
}

impl<S: PageSize> fmt::Debug for Page<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Page<{:?}>({:#x})", S::KIND, self.start.as_u64())
    }
}

/// A physical frame of size `S`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysFrame<S: PageSize = Size4KiB> {
    start: PhysAddr,
    size: PhantomData<S>,
}

impl<S: PageSize> PhysFrame<S> {
    /// The frame starting at `start`, which must be aligned to `S::SIZE`.
    #[inline]
    pub const fn from_start_address(start: PhysAddr) -> Result<Self, Misaligned> {
        if start.is_aligned(S::SIZE) {
            Ok(PhysFrame { start, size: PhantomData })
        } else {
            Err(Misaligned { addr: start.as_u64(), size: S::SIZE })
        }
    }

    /// The frame containing `addr`.
    #[inline]
    pub const fn containing_address(addr: PhysAddr) -> Self {
        PhysFrame { start: addr.align_down(S::SIZE), size: PhantomData }
    }

    /// First byte of the frame.
    #[inline]
    pub const fn start_address(self) -> PhysAddr {
        self.start
    }

    /// Size in bytes.
    #[inline]
    pub const fn size(self) -> u64 {
        S::SIZE
    }
}

impl<S: PageSize> fmt::Debug for PhysFrame<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysFrame<{:?}>({:#x})", S::KIND, self.start.as_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_levels() {
        assert_eq!(Size4KiB::SIZE, 4096);
        assert_eq!(Size2MiB::SIZE, 512 * 4096);
        assert_eq!(Size1GiB::SIZE, 512 * 512 * 4096);
        for k in PageSizeKind::LARGEST_FIRST {
            assert_eq!(PageSizeKind::from_level(k.level()), Some(k));
        }
        assert_eq!(PageSizeKind::from_level(4), None);
        assert_eq!(Levels::Four.va_bits(), 48);
        assert_eq!(Levels::Five.va_bits(), 57);
    }

    #[test]
    fn alignment_is_enforced() {
        let a = VirtAddr::new(0x20_1000).unwrap();
        assert!(Page::<Size4KiB>::from_start_address(a).is_ok());
        assert_eq!(
            Page::<Size2MiB>::from_start_address(a),
            Err(Misaligned { addr: 0x20_1000, size: 0x20_0000 })
        );
        assert_eq!(Page::<Size2MiB>::containing_address(a).start_address().as_u64(), 0x20_0000);
        let p = PhysAddr::new(0x4000_0000).unwrap();
        assert!(PhysFrame::<Size1GiB>::from_start_address(p).is_ok());
        assert!(PhysFrame::<Size1GiB>::from_start_address(PhysAddr::new(0x4020_0000).unwrap()).is_err());
    }
}
