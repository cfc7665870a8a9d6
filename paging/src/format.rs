//! Entry formats the mapper can build: x86-64 paging ([`X86`]) and Intel EPT ([`crate::Ept`]).
//!
//! Both are radix trees of 512-entry, 4 KiB tables indexed by 9 address bits per level with
//! leaves at levels 1..=3; they differ in how an entry encodes presence, permissions and page
//! size. The mapper is written once against this trait.

use core::fmt;

use crate::addr::{PhysAddr, VirtAddr};
use crate::entry::{EntryKind, PageFlags, PageTableEntry, ReservedBits};
use crate::size::{PageSizeKind, PhysFrame};

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// An entry format: how present, table and leaf entries are encoded at each level.
///
/// Sealed; implemented by [`X86`] and [`crate::Ept`].
pub trait EntryFormat: sealed::Sealed {
    /// Attributes of a leaf.
    type Flags: Copy + Eq + fmt::Debug;
    /// The address translated from (virtual for x86 paging, guest-physical for EPT).
    type Addr: Copy + Eq + fmt::Debug;

    /// The input address as a number.
    fn addr_bits(addr: Self::Addr) -> u64;
    /// Whether `[start, end)` (bits below `width` of the input addresses, `end` exclusive) may
    /// be translated at all: x86 forbids ranges across the non-canonical hole.
    fn range_ok(start: u64, end: u64, width: u32) -> bool;
    /// An input address from the low `width` bits of `linear` (x86 sign-extends).
    fn external(linear: u64, width: u32) -> u64;
    /// Whether `flags` make a valid leaf (EPT: some access allowed, no write-only, a defined
    /// memory type), or the rule they break.
    fn leaf_flags_ok(flags: Self::Flags) -> Result<(), &'static str>;
    /// Whether the entry is present.
    fn is_present(raw: u64) -> bool;
    /// A non-leaf entry pointing to `table`, granting everything (the leaf decides).
    fn table(table: PhysAddr) -> u64;
    /// A leaf entry mapping `frame` as a page of `size` with `flags`.
    fn page(frame: PhysAddr, size: PageSizeKind, flags: Self::Flags) -> u64;
    /// What `raw` means at `level`, or the reserved bits that make the hardware fault.
    fn decode(raw: u64, level: u8) -> Result<EntryKind<Self::Flags>, ReservedBits>;
    /// Fast path of [`EntryFormat::decode`] for walks: the next table if `raw` is a valid
    /// non-leaf entry at `level` (2..=5), else `None` (then `decode` says what it is).
    fn next_table(raw: u64, level: u8) -> Option<PhysAddr>;
    /// The value [`EntryFormat::fold_table`] starts from: a table entry restricting nothing.
    const TABLES_NEUTRAL: u64;
    /// Combines the non-leaf entries met on a walk into one value with the access rights they
    /// jointly grant (x86: R/W and U/S ANDed, NX ORed; EPT: R/W/X ANDed).
    fn fold_table(acc: u64, table_raw: u64) -> u64;
    /// `flags` as limited by the non-leaf entries above the leaf (`tables`, a fold of them).
    fn restrict(flags: Self::Flags, tables: u64) -> Self::Flags;
    /// Whether a mapping with `flags` survives a CR3 reload (x86 GLOBAL).
    fn is_global(flags: Self::Flags) -> bool;
    /// `flags` without the bits the hardware sets by itself (accessed, dirty), for comparing
    /// entries before a promotion.
    fn without_hw_bits(flags: Self::Flags) -> Self::Flags;
    /// `flags` with the hardware-set bits of `other` added.
    fn with_hw_bits_of(flags: Self::Flags, other: Self::Flags) -> Self::Flags;
}

const NX: u64 = PageFlags::NO_EXECUTE.bits();

/// x86-64 4- and 5-level paging (IA-32e), the format of [`PageTableEntry`] and [`PageFlags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X86 {}

impl sealed::Sealed for X86 {}

impl EntryFormat for X86 {
    type Flags = PageFlags;
    type Addr = VirtAddr;

    #[inline]
    fn addr_bits(addr: VirtAddr) -> u64 {
        addr.as_u64()
    }

    #[inline]
    fn range_ok(start: u64, end: u64, width: u32) -> bool {
        let half = 1u64 << (width - 1);
        end <= 1u64 << width && (start >= half || end <= half)
    }

    #[inline]
    fn external(linear: u64, width: u32) -> u64 {
        let shift = 64 - width;
        (((linear << shift) as i64) >> shift) as u64
    }

    #[inline]
    fn leaf_flags_ok(_flags: PageFlags) -> Result<(), &'static str> {
        Ok(())
    }

    #[inline]
    fn is_present(raw: u64) -> bool {
        PageTableEntry::from_raw(raw).is_present()
    }

    #[inline]
    fn table(table: PhysAddr) -> u64 {
        PageTableEntry::table(PhysFrame::containing_address(table)).raw()
    }

    #[inline]
    fn page(frame: PhysAddr, size: PageSizeKind, flags: PageFlags) -> u64 {
        PageTableEntry::page_raw(frame, size, flags).raw()
    }

    #[inline]
    fn decode(raw: u64, level: u8) -> Result<EntryKind<PageFlags>, ReservedBits> {
        PageTableEntry::from_raw(raw).decode(level)
    }

    const TABLES_NEUTRAL: u64 = !NX;

    #[inline]
    fn fold_table(acc: u64, table_raw: u64) -> u64 {
        ((acc & table_raw) & !NX) | ((acc | table_raw) & NX)
    }

    #[inline]
    fn next_table(raw: u64, level: u8) -> Option<PhysAddr> {
        // Present and PS clear: a table at every level (PS is reserved at 4 and 5 and means
        // a page at 2 and 3, both for `decode`).
        (level > 1 && raw & (1 | crate::entry::bits::PAGE_SIZE) == 1)
            .then(|| PhysAddr::new_masked(raw & crate::entry::bits::ADDR_4K))
    }

    #[inline]
    fn restrict(flags: PageFlags, table_raw: u64) -> PageFlags {
        let t = PageFlags::from_bits_retain(table_raw);
        let mut f = flags;
        if !t.contains(PageFlags::WRITABLE) {
            f.remove(PageFlags::WRITABLE);
        }
        if !t.contains(PageFlags::USER) {
            f.remove(PageFlags::USER);
        }
        if t.contains(PageFlags::NO_EXECUTE) {
            f.insert(PageFlags::NO_EXECUTE);
        }
        f
    }

    #[inline]
    fn is_global(flags: PageFlags) -> bool {
        flags.contains(PageFlags::GLOBAL)
    }

    #[inline]
    fn without_hw_bits(flags: PageFlags) -> PageFlags {
        flags - (PageFlags::ACCESSED | PageFlags::DIRTY)
    }

    #[inline]
    fn with_hw_bits_of(flags: PageFlags, other: PageFlags) -> PageFlags {
        flags | (other & (PageFlags::ACCESSED | PageFlags::DIRTY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ranges_and_sign_extension() {
        assert!(X86::range_ok(0, 1 << 47, 48));
        assert!(!X86::range_ok((1 << 47) - 4096, (1 << 47) + 4096, 48));
        assert!(X86::range_ok(1 << 47, 1 << 48, 48));
        assert!(!X86::range_ok(1 << 47, (1 << 48) + 4096, 48));
        assert_eq!(X86::external(1 << 47, 48), 0xffff_8000_0000_0000);
        assert_eq!(X86::external((1 << 47) - 1, 48), 0x7fff_ffff_ffff);
        assert_eq!(X86::external(1 << 56, 57), 0xff00_0000_0000_0000);
    }

    #[test]
    fn restriction_by_upper_levels() {
        let leaf = PageFlags::PRESENT | PageFlags::WRITABLE | PageFlags::USER;
        assert_eq!(X86::restrict(leaf, 0x1007), leaf);
        assert_eq!(X86::restrict(leaf, 0x1005), PageFlags::PRESENT | PageFlags::USER);
        assert_eq!(X86::restrict(leaf, 0x1003), PageFlags::PRESENT | PageFlags::WRITABLE);
        assert_eq!(X86::restrict(leaf, 0x1007 | (1 << 63)), leaf | PageFlags::NO_EXECUTE);
        // Folding: any table without R/W or U/S removes it, any with NX adds it.
        let acc = [0x1007u64, 0x2005 | (1 << 63), 0x3003]
            .iter()
            .fold(X86::TABLES_NEUTRAL, |a, &t| X86::fold_table(a, t));
        assert_eq!(X86::restrict(leaf, acc), PageFlags::PRESENT | PageFlags::NO_EXECUTE);
        assert_eq!(X86::restrict(leaf, X86::TABLES_NEUTRAL), leaf);
    }
}
