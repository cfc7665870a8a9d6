//! x86-64 page-table entries, their flags, and the 4 KiB table that holds 512 of them.
//!
//! Bit 7 means two things: in a 4 KiB page-table entry it is PAT (the high bit of the memory-type
//! index into IA32_PAT), in a PDE or PDPTE it is PS (the entry maps a 2 MiB or 1 GiB page), and
//! such a large entry keeps its PAT bit at bit 12. [`PageFlags`] is therefore laid out as a
//! 4 KiB entry, and [`PageTableEntry::page`] moves PAT to bit 12 and sets PS when it encodes a
//! large page; [`PageTableEntry::decode`] moves it back. (The `x86_64` crate calls bit 7
//! `HUGE_PAGE` everywhere, which reads a 4 KiB PTE's PAT bit as a huge-page bit.)

use core::fmt;
use core::ops::{Index, IndexMut};

use bitflags::bitflags;

use crate::addr::PhysAddr;
use crate::size::{PageSize, PageSizeKind, PhysFrame, Size4KiB};

/// Raw bit positions that depend on the kind of entry.
pub mod bits {
    /// Bit 7 of a PDE or PDPTE (PS): the entry maps a 2 MiB or 1 GiB page, not a table.
    pub const PAGE_SIZE: u64 = 1 << 7;
    /// Bit 7 of a 4 KiB PTE: PAT, the high bit of the memory-type index (with PCD and PWT).
    pub const PAT_4K: u64 = 1 << 7;
    /// Bit 12 of a 2 MiB or 1 GiB entry: PAT (bit 12 is an address bit in other entries).
    pub const PAT_LARGE: u64 = 1 << 12;
    /// Bits 51..12: the physical address of a 4 KiB frame or of the next table.
    pub const ADDR_4K: u64 = 0x000f_ffff_ffff_f000;
    /// Bits 51..21: the physical address of a 2 MiB frame.
    pub const ADDR_2M: u64 = 0x000f_ffff_ffe0_0000;
    /// Bits 51..30: the physical address of a 1 GiB frame.
    pub const ADDR_1G: u64 = 0x000f_ffff_c000_0000;
    /// Bits 20..13 of a PDE with PS: reserved (must be zero).
    pub const RSVD_2M: u64 = 0x001f_e000;
    /// Bits 29..13 of a PDPTE with PS: reserved (must be zero).
    pub const RSVD_1G: u64 = 0x3fff_e000;
}

bitflags! {
    /// Attributes of a mapping, laid out as in a 4 KiB page-table entry (PAT at bit 7).
    ///
    /// The mapper always sets `PRESENT`; the other bits are the caller's.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct PageFlags: u64 {
        /// Bit 0 (P): the entry is valid; a clear bit makes every access fault (error code P=0).
        const PRESENT = 1 << 0;
        /// Bit 1 (R/W): writes allowed (supervisor writes too while CR0.WP is set).
        const WRITABLE = 1 << 1;
        /// Bit 2 (U/S): user-mode (CPL 3) accesses allowed.
        const USER = 1 << 2;
        /// Bit 3 (PWT): write-through; low bit of the PAT memory-type index.
        const WRITE_THROUGH = 1 << 3;
        /// Bit 4 (PCD): cache disable; middle bit of the PAT memory-type index.
        const CACHE_DISABLE = 1 << 4;
        /// Bit 5 (A): set by the CPU when the page is accessed.
        const ACCESSED = 1 << 5;
        /// Bit 6 (D): set by the CPU when the page is written.
        const DIRTY = 1 << 6;
        /// Bit 7 in a 4 KiB entry (PAT): high bit of the PAT memory-type index (bit 12 in a large entry).
        const PAT = 1 << 7;
        /// Bit 8 (G): global; the translation survives a CR3 write while CR4.PGE is set.
        const GLOBAL = 1 << 8;
        /// Bit 9: ignored by the CPU, free for software.
        const SOFTWARE_9 = 1 << 9;
        /// Bit 10: ignored by the CPU, free for software.
        const SOFTWARE_10 = 1 << 10;
        /// Bit 11: ignored by the CPU, free for software (HLAT restart under Intel HLAT).
        const SOFTWARE_11 = 1 << 11;
        /// Bit 59: protection key bit 0 (PKRU/PKRS index, used when CR4.PKE/PKS is set).
        const PKEY_0 = 1 << 59;
        /// Bit 60: protection key bit 1.
        const PKEY_1 = 1 << 60;
        /// Bit 61: protection key bit 2.
        const PKEY_2 = 1 << 61;
        /// Bit 62: protection key bit 3.
        const PKEY_3 = 1 << 62;
        /// Bit 63 (XD/NX): instruction fetches fault (error code I/D=1) while EFER.NXE is set.
        const NO_EXECUTE = 1 << 63;
    }
}

impl PageFlags {
    const PKEY_SHIFT: u32 = 59;

    /// The 4-bit protection key (0..=15).
    #[inline]
    pub const fn protection_key(self) -> u8 {
        ((self.bits() >> Self::PKEY_SHIFT) & 0xf) as u8
    }

    /// The same flags with protection key `key` (only its low 4 bits are used).
    #[must_use]
    #[inline]
    pub const fn with_protection_key(self, key: u8) -> Self {
        let cleared = self.bits() & !(0xf << Self::PKEY_SHIFT);
        PageFlags::from_bits_retain(cleared | ((key as u64 & 0xf) << Self::PKEY_SHIFT))
    }
}

/// One 8-byte x86-64 paging-structure entry at any level.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct PageTableEntry(u64);

/// What a present or absent entry means at a given level, with leaf flags of type `F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind<F = PageFlags> {
    /// P is clear.
    NotPresent,
    /// A pointer to the next-lower table.
    Table(PhysAddr),
    /// A leaf: it maps a page.
    Page {
        /// Start of the mapped frame.
        frame: PhysAddr,
        /// Size of the page.
        size: PageSizeKind,
        /// Its flags (for x86: PAT normalised to bit 7, PS removed).
        flags: F,
    },
}

/// An entry with a reserved bit set: the CPU faults on it with RSVD=1 in the error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("entry {raw:#018x} at level {level} sets reserved bits {bits:#x}")]
pub struct ReservedBits {
    /// The entry.
    pub raw: u64,
    /// Its paging level (1 = PT .. 5 = PML5).
    pub level: u8,
    /// The offending bits.
    pub bits: u64,
}

impl PageTableEntry {
    /// An all-zero (not present) entry.
    #[inline]
    pub const fn zero() -> Self {
        PageTableEntry(0)
    }

    /// An entry from its raw value.
    #[inline]
    pub const fn from_raw(raw: u64) -> Self {
        PageTableEntry(raw)
    }

    /// The raw value.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether P is set.
    #[inline]
    pub const fn is_present(self) -> bool {
        self.0 & PageFlags::PRESENT.bits() != 0
    }

    /// A non-leaf entry pointing to `table`, permissive (P, R/W, U/S; NX clear) so the leaf
    /// alone decides access. G is left clear: it is reserved in non-leaf entries on AMD.
    #[inline]
    pub const fn table(table: PhysFrame<Size4KiB>) -> Self {
        PageTableEntry(table.start_address().as_u64() | 0b111)
    }

    /// A leaf mapping `frame` with `flags` (PRESENT added; PAT moved to bit 12 and PS set for
    /// 2 MiB and 1 GiB pages).
    #[inline]
    pub const fn page<S: PageSize>(frame: PhysFrame<S>, flags: PageFlags) -> Self {
        Self::page_raw(frame.start_address(), S::KIND, flags)
    }

    #[inline]
    pub(crate) const fn page_raw(frame: PhysAddr, size: PageSizeKind, flags: PageFlags) -> Self {
        let f = flags.bits() | PageFlags::PRESENT.bits();
        let raw = match size {
            PageSizeKind::Size4KiB => f,
            PageSizeKind::Size2MiB | PageSizeKind::Size1GiB => {
                let pat = if f & bits::PAT_4K != 0 { bits::PAT_LARGE } else { 0 };
                (f & !bits::PAT_4K) | pat | bits::PAGE_SIZE
            }
        };
        PageTableEntry(frame.as_u64() | raw)
    }

    /// What the entry means at paging `level` (1..=5), assuming a 52-bit physical address
    /// width; reserved bits (PS in a PML4E/PML5E, a large frame not aligned to its size) are
    /// an error, as they are a fault for the CPU.
    #[inline]
    pub const fn decode(self, level: u8) -> Result<EntryKind, ReservedBits> {
        let raw = self.0;
        if !self.is_present() {
            return Ok(EntryKind::NotPresent);
        }
        let leaf = level == 1 || (raw & bits::PAGE_SIZE != 0);
        let rsvd = if level >= 4 {
            raw & bits::PAGE_SIZE
        } else if level == 3 && leaf {
            raw & bits::RSVD_1G
        } else if level == 2 && leaf {
            raw & bits::RSVD_2M
        } else {
            0
        };
        if rsvd != 0 {
            return Err(ReservedBits { raw, level, bits: rsvd });
        }
        if !leaf {
            // Bits 51..12 only; the mask keeps the value below 2^52.
            return Ok(EntryKind::Table(PhysAddr::new_masked(raw & bits::ADDR_4K)));
        }
        let attrs = PageFlags::all().bits() & !bits::PAT_4K;
        let (size, addr, pat) = match level {
            1 => (PageSizeKind::Size4KiB, raw & bits::ADDR_4K, raw & bits::PAT_4K != 0),
            2 => (PageSizeKind::Size2MiB, raw & bits::ADDR_2M, raw & bits::PAT_LARGE != 0),
            _ => (PageSizeKind::Size1GiB, raw & bits::ADDR_1G, raw & bits::PAT_LARGE != 0),
        };
        let mut flags = raw & attrs;
        if pat {
            flags |= bits::PAT_4K;
        }
        Ok(EntryKind::Page {
            frame: PhysAddr::new_masked(addr),
            size,
            flags: PageFlags::from_bits_retain(flags),
        })
    }
}

impl fmt::Debug for PageTableEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageTableEntry({:#018x})", self.0)
    }
}

/// One 4 KiB paging structure: 512 entries, 4 KiB aligned.
#[derive(Clone, PartialEq, Eq)]
#[repr(C, align(4096))]
pub struct PageTable {
    entries: [PageTableEntry; 512],
}

const _: () = assert!(core::mem::size_of::<PageTable>() == 4096);
const _: () = assert!(core::mem::align_of::<PageTable>() == 4096);
const _: () = assert!(core::mem::size_of::<PageTableEntry>() == 8);

impl PageTable {
    /// Number of entries.
    pub const ENTRIES: usize = 512;

    /// A table of not-present entries.
    pub const fn new() -> Self {
        PageTable { entries: [PageTableEntry::zero(); 512] }
    }

    /// The entries.
    pub fn entries(&self) -> &[PageTableEntry; 512] {
        &self.entries
    }

    /// The entries, writable.
    pub fn entries_mut(&mut self) -> &mut [PageTableEntry; 512] {
        &mut self.entries
    }

    /// Whether every entry is zero.
    pub fn is_empty(&self) -> bool {
        self.entries.iter().all(|e| e.raw() == 0)
    }
}

impl Default for PageTable {
    fn default() -> Self {
        Self::new()
    }
}

impl Index<usize> for PageTable {
    type Output = PageTableEntry;
    fn index(&self, i: usize) -> &PageTableEntry {
        &self.entries[i]
    }
}

impl IndexMut<usize> for PageTable {
    fn index_mut(&mut self, i: usize) -> &mut PageTableEntry {
        &mut self.entries[i]
    }
}

impl fmt::Debug for PageTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (i, e) in self.entries.iter().enumerate().filter(|(_, e)| e.raw() != 0) {
            m.entry(&i, e);
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::{Size1GiB, Size2MiB};

    fn pa(a: u64) -> PhysAddr {
        PhysAddr::new(a).unwrap()
    }

    #[test]
    fn pat_is_bit_7_in_4k_and_bit_12_in_large_entries() {
        let f = PageFlags::WRITABLE | PageFlags::PAT;
        let small = PageTableEntry::page(PhysFrame::<Size4KiB>::from_start_address(pa(0x5000)).unwrap(), f);
        assert_eq!(small.raw(), 0x5000 | 0b11 | (1 << 7));
        let big = PageTableEntry::page(PhysFrame::<Size2MiB>::from_start_address(pa(0x40_0000)).unwrap(), f);
        assert_eq!(big.raw(), 0x40_0000 | 0b11 | (1 << 7) | (1 << 12));
        let big_nopat = PageTableEntry::page(
            PhysFrame::<Size1GiB>::from_start_address(pa(1 << 30)).unwrap(),
            PageFlags::empty(),
        );
        assert_eq!(big_nopat.raw(), (1 << 30) | 1 | (1 << 7));
        // Decoding gives back what was encoded, PAT at bit 7, no PS.
        assert_eq!(
            small.decode(1),
            Ok(EntryKind::Page {
                frame: pa(0x5000),
                size: PageSizeKind::Size4KiB,
                flags: f | PageFlags::PRESENT
            })
        );
        assert_eq!(
            big.decode(2),
            Ok(EntryKind::Page {
                frame: pa(0x40_0000),
                size: PageSizeKind::Size2MiB,
                flags: f | PageFlags::PRESENT
            })
        );
        // A 4 KiB PTE with bit 7 set is PAT, not a huge page; bit 12 is an address bit there.
        let pte = PageTableEntry::from_raw(0x1000 | 1 | (1 << 7));
        assert_eq!(
            pte.decode(1),
            Ok(EntryKind::Page {
                frame: pa(0x1000),
                size: PageSizeKind::Size4KiB,
                flags: PageFlags::PRESENT | PageFlags::PAT
            })
        );
    }

    #[test]
    fn flags_and_protection_keys() {
        let f = (PageFlags::NO_EXECUTE | PageFlags::GLOBAL).with_protection_key(0xb);
        assert_eq!(f.protection_key(), 0xb);
        assert_eq!(f.bits(), (1 << 63) | (1 << 8) | (0xb << 59));
        assert_eq!(f.with_protection_key(3).protection_key(), 3);
        let e = PageTableEntry::page(PhysFrame::<Size2MiB>::from_start_address(pa(0x20_0000)).unwrap(), f);
        match e.decode(2) {
            Ok(EntryKind::Page { flags, .. }) => {
                assert_eq!(flags.protection_key(), 0xb);
                assert!(flags.contains(PageFlags::NO_EXECUTE | PageFlags::GLOBAL));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reserved_bits_are_reported() {
        // 1 GiB entry whose frame is only 2 MiB aligned: bits 29..13 reserved.
        let e = PageTableEntry::from_raw((1 << 30) | (1 << 21) | 0x83);
        assert_eq!(e.decode(3), Err(ReservedBits { raw: e.raw(), level: 3, bits: 1 << 21 }));
        // 2 MiB entry with bit 13 set.
        let e = PageTableEntry::from_raw((1 << 21) | (1 << 13) | 0x83);
        assert_eq!(e.decode(2), Err(ReservedBits { raw: e.raw(), level: 2, bits: 1 << 13 }));
        // PS in a PML4E.
        let e = PageTableEntry::from_raw(0x1000 | 0x83);
        assert_eq!(e.decode(4).map_err(|r| r.bits), Err(1 << 7));
        // Same bit 13 in a 4 KiB PTE is an address bit.
        assert!(PageTableEntry::from_raw(0x2000 | 1).decode(1).is_ok());
        assert_eq!(PageTableEntry::from_raw(0x2000).decode(3), Ok(EntryKind::NotPresent));
    }

    #[test]
    fn table_entries() {
        let t = PageTableEntry::table(PhysFrame::from_start_address(pa(0x7000)).unwrap());
        assert_eq!(t.raw(), 0x7007);
        assert_eq!(t.decode(4), Ok(EntryKind::Table(pa(0x7000))));
        assert_eq!(t.decode(2), Ok(EntryKind::Table(pa(0x7000))));
        let mut tbl = PageTable::new();
        assert!(tbl.is_empty());
        tbl[511] = t;
        assert_eq!(tbl.entries()[511], t);
        assert!(!tbl.is_empty());
        assert_eq!(core::ptr::addr_of!(tbl) as usize % 4096, 0);
    }
}
