//! Physical and virtual addresses.

/// A physical address (at most 52 bits on x86-64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// Largest physical address width x86-64 defines.
    pub const MAX_BITS: u32 = 52;

    /// A physical address, or `None` if it has bits set above bit 51.
    pub const fn new(addr: u64) -> Option<Self> {
        if addr >> Self::MAX_BITS == 0 {
            Some(PhysAddr(addr))
        } else {
            None
        }
    }

    /// The address as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

/// A canonical 48-bit (4-level paging) virtual address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct VirtAddr(u64);

/// A virtual address whose upper bits are not a sign extension of bit 47.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonCanonical(pub u64);

impl core::fmt::Display for NonCanonical {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x} is not canonical: bits 63..48 must copy bit 47", self.0)
    }
}

impl VirtAddr {
    /// A virtual address, if canonical for 48-bit addressing.
    pub const fn new(addr: u64) -> Result<Self, NonCanonical> {
        let top = addr >> 47;
        if top == 0 || top == 0x1ffff {
            Ok(VirtAddr(addr))
        } else {
            Err(NonCanonical(addr))
        }
    }

    /// The address as a number.
    pub const fn as_u64(self) -> u64 {
        self.0
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
}
