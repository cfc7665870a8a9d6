//! Physical and virtual addresses.

use crate::size::Levels;

/// A physical address (at most 52 bits on x86-64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// Largest physical address width x86-64 defines.
    pub const MAX_BITS: u32 = 52;

    /// A physical address, or `None` if it has bits set above bit 51.
    #[inline]
    pub const fn new(addr: u64) -> Option<Self> {
        if addr >> Self::MAX_BITS == 0 {
            Some(PhysAddr(addr))
        } else {
            None
        }
    }

    /// The address made of bits 51..0 of `addr` (the rest dropped).
    #[inline]
    pub const fn new_masked(addr: u64) -> Self {
        PhysAddr(addr & ((1 << Self::MAX_BITS) - 1))
    }

    /// The address as a number.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether the address is a multiple of `align` (a power of two).
    #[inline]
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }

    /// The address rounded down to a multiple of `align` (a power of two).
    #[inline]
    pub const fn align_down(self, align: u64) -> Self {
        PhysAddr(self.0 & !(align - 1))
    }

    /// `self + off`, or `None` if that leaves the 52-bit physical address space.
    #[inline]
    pub const fn checked_add(self, off: u64) -> Option<Self> {
        match self.0.checked_add(off) {
            Some(a) => Self::new(a),
            None => None,
        }
    }
}

/// A canonical virtual address.
///
/// Canonical means bits 63..N copy bit N-1, with N = 48 under 4-level paging and N = 57 under
/// 5-level paging (LA57). Every 48-bit canonical address is also 57-bit canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct VirtAddr(u64);

/// A virtual address whose upper bits are not a sign extension of its top implemented bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{addr:#x} is not canonical for {bits}-bit addresses: bits 63..{bits} must copy bit {}", bits - 1)]
pub struct NonCanonical {
    /// The rejected address.
    pub addr: u64,
    /// Implemented virtual-address width (48 or 57).
    pub bits: u32,
}

impl VirtAddr {
    /// A virtual address, if canonical for 48-bit (4-level) addressing.
    #[inline]
    pub const fn new(addr: u64) -> Result<Self, NonCanonical> {
        Self::new_bits(addr, 48)
    }

    /// A virtual address, if canonical for 57-bit (5-level, LA57) addressing.
    #[inline]
    pub const fn new_la57(addr: u64) -> Result<Self, NonCanonical> {
        Self::new_bits(addr, 57)
    }

    /// A virtual address, if canonical for the width that `levels` of paging translate.
    #[inline]
    pub const fn new_for(addr: u64, levels: Levels) -> Result<Self, NonCanonical> {
        Self::new_bits(addr, levels.va_bits())
    }

    #[inline]
    const fn new_bits(addr: u64, bits: u32) -> Result<Self, NonCanonical> {
        if Self::is_canonical(addr, bits) {
            Ok(VirtAddr(addr))
        } else {
            Err(NonCanonical { addr, bits })
        }
    }

    /// Whether `addr` is canonical for a `bits`-wide (48 or 57) virtual address space.
    #[inline]
    pub const fn is_canonical(addr: u64, bits: u32) -> bool {
        let top = addr >> (bits - 1);
        top == 0 || top == u64::MAX >> (bits - 1)
    }

    /// The address as a number.
    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether the address is a multiple of `align` (a power of two).
    #[inline]
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }

    /// The address rounded down to a multiple of `align` (a power of two); canonical because
    /// aligning never changes bits above 30.
    #[inline]
    pub const fn align_down(self, align: u64) -> Self {
        debug_assert!(align <= 1 << 30);
        VirtAddr(self.0 & !(align - 1))
    }

    /// The 9-bit table index this address selects at paging `level` (1 = page table,
    /// 2 = page directory, 3 = PDPT, 4 = PML4, 5 = PML5).
    #[inline]
    pub const fn table_index(self, level: u8) -> usize {
        ((self.0 >> (12 + 9 * (level as u32 - 1))) & 0x1ff) as usize
    }

    /// The offset within a 4 KiB page.
    #[inline]
    pub const fn page_offset(self) -> u64 {
        self.0 & 0xfff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_boundaries() {
        assert!(VirtAddr::new(0x0000_7fff_ffff_ffff).is_ok());
        assert!(VirtAddr::new(0x0000_8000_0000_0000).is_err());
        assert!(VirtAddr::new(0xffff_7fff_ffff_ffff).is_err());
        assert!(VirtAddr::new(0xffff_8000_0000_0000).is_ok());
        assert!(PhysAddr::new(1 << 52).is_none());
        assert_eq!(PhysAddr::new((1 << 52) - 1).map(PhysAddr::as_u64), Some((1 << 52) - 1));
    }

    #[test]
    fn canonical_la57() {
        assert!(VirtAddr::new_la57(0x0000_8000_0000_0000).is_ok()); // hole under 48, fine under 57
        assert!(VirtAddr::new_la57(0x00ff_ffff_ffff_ffff).is_ok());
        assert!(VirtAddr::new_la57(0x0100_0000_0000_0000).is_err());
        assert!(VirtAddr::new_la57(0xfeff_ffff_ffff_ffff).is_err());
        assert!(VirtAddr::new_la57(0xff00_0000_0000_0000).is_ok());
        assert_eq!(
            VirtAddr::new_la57(0x0100_0000_0000_0000),
            Err(NonCanonical { addr: 0x0100_0000_0000_0000, bits: 57 })
        );
        assert!(VirtAddr::new_for(0xff00_0000_0000_0000, Levels::Four).is_err());
        assert!(VirtAddr::new_for(0xff00_0000_0000_0000, Levels::Five).is_ok());
    }

    #[test]
    fn indices() {
        let va = VirtAddr::new_la57((0x0a5u64 << 48) | (0x0ff << 39) | (3 << 30) | (7 << 21) | (9 << 12) | 5)
            .unwrap();
        assert_eq!(
            [va.table_index(5), va.table_index(4), va.table_index(3), va.table_index(2), va.table_index(1)],
            [0x0a5, 0x0ff, 3, 7, 9]
        );
        assert_eq!(va.page_offset(), 5);
    }
}
