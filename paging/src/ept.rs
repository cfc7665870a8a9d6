//! Intel EPT (extended page tables) entries, mapped by the same [`crate::Mapper`].
//!
//! EPT translates guest-physical to host-physical addresses with the same radix-tree shape as
//! x86 paging, but an entry is present when any of read/write/execute is set, leaves carry an
//! EPT memory type instead of PAT/PCD/PWT, bit 7 marks a 2 MiB or 1 GiB page, and bits 12
//! and up of a large leaf below its alignment are reserved (no PAT bit there). Intel SDM
//! Vol. 3C, 29.3.2 ("EPT Translation Mechanism") and Table 29-6.

use bitflags::bitflags;

use crate::addr::PhysAddr;
use crate::entry::{EntryKind, ReservedBits};
use crate::format::{sealed, EntryFormat};
use crate::size::{Levels, PageSizeKind, PhysFrame};

bitflags! {
    /// Attributes of an EPT leaf (the large-page bit 7 is the mapper's).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct EptFlags: u64 {
        /// Bit 0: reads allowed.
        const READ = 1 << 0;
        /// Bit 1: writes allowed (needs READ: write-only is a misconfiguration).
        const WRITE = 1 << 1;
        /// Bit 2: instruction fetches allowed (supervisor-mode fetches under mode-based execute control).
        const EXECUTE = 1 << 2;
        /// Bit 3: memory type bit 0 (bits 5:3 hold the EPT memory type of a leaf).
        const MEMORY_TYPE_0 = 1 << 3;
        /// Bit 4: memory type bit 1.
        const MEMORY_TYPE_1 = 1 << 4;
        /// Bit 5: memory type bit 2.
        const MEMORY_TYPE_2 = 1 << 5;
        /// Bit 6: ignore the guest's PAT; the EPT memory type alone decides.
        const IGNORE_PAT = 1 << 6;
        /// Bit 8: accessed, set by the CPU when EPTP enables accessed/dirty flags.
        const ACCESSED = 1 << 8;
        /// Bit 9: dirty, set by the CPU on a write when EPTP enables accessed/dirty flags.
        const DIRTY = 1 << 9;
        /// Bit 10: user-mode instruction fetches allowed (mode-based execute control only).
        const USER_EXECUTE = 1 << 10;
        /// Bit 11: ignored by the CPU, free for software.
        const SOFTWARE_11 = 1 << 11;
        /// Bit 57: verify guest paging (HLAT / guest-paging verification).
        const VERIFY_GUEST_PAGING = 1 << 57;
        /// Bit 58: paging-write access (guest-paging verification).
        const PAGING_WRITE = 1 << 58;
        /// Bit 60: supervisor shadow-stack page.
        const SUPERVISOR_SHADOW_STACK = 1 << 60;
        /// Bit 61: sub-page write permissions apply (SPP).
        const SUB_PAGE_WRITE = 1 << 61;
        /// Bit 63: suppress #VE: EPT violations here cause VM exits, never #VE.
        const SUPPRESS_VE = 1 << 63;
    }
}

/// EPT memory types (leaf bits 5:3; also EPTP bits 2:0 for the paging structures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EptMemoryType {
    /// Uncacheable.
    Uncacheable = 0,
    /// Write-combining.
    WriteCombining = 1,
    /// Write-through.
    WriteThrough = 4,
    /// Write-protected.
    WriteProtected = 5,
    /// Write-back (what guest RAM uses).
    WriteBack = 6,
}

impl EptFlags {
    const MT_SHIFT: u32 = 3;
    const MT_MASK: u64 = 0b111 << Self::MT_SHIFT;

    /// The same flags with memory type `t`.
    #[must_use]
    #[inline]
    pub const fn with_memory_type(self, t: EptMemoryType) -> Self {
        EptFlags::from_bits_retain((self.bits() & !Self::MT_MASK) | ((t as u64) << Self::MT_SHIFT))
    }

    /// The memory type field, or `None` for the reserved values 2, 3 and 7.
    #[inline]
    pub const fn memory_type(self) -> Option<EptMemoryType> {
        match (self.bits() & Self::MT_MASK) >> Self::MT_SHIFT {
            0 => Some(EptMemoryType::Uncacheable),
            1 => Some(EptMemoryType::WriteCombining),
            4 => Some(EptMemoryType::WriteThrough),
            5 => Some(EptMemoryType::WriteProtected),
            6 => Some(EptMemoryType::WriteBack),
            _ => None,
        }
    }

    /// Read, write and execute, write-back: ordinary guest RAM.
    pub const RAM: EptFlags = EptFlags::READ
        .union(EptFlags::WRITE)
        .union(EptFlags::EXECUTE)
        .union(EptFlags::MEMORY_TYPE_1)
        .union(EptFlags::MEMORY_TYPE_2);
}

/// Intel EPT entry format for [`crate::Mapper`]; the input addresses are guest-physical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ept {}

impl sealed::Sealed for Ept {}

const LARGE: u64 = 1 << 7;
const ADDR_4K: u64 = 0x000f_ffff_ffff_f000;
const RWX: u64 = 0b111;

impl Ept {
    /// The EPT pointer (VMCS field) for a hierarchy rooted at `root`: write-back paging
    /// structures, page-walk length `levels - 1`, and accessed/dirty flags if `accessed_dirty`.
    pub const fn eptp(root: PhysFrame, levels: Levels, accessed_dirty: bool) -> u64 {
        let walk = (levels.root_level() as u64 - 1) << 3;
        let ad = if accessed_dirty { 1 << 6 } else { 0 };
        root.start_address().as_u64() | walk | ad | EptMemoryType::WriteBack as u64
    }
}

impl EntryFormat for Ept {
    type Flags = EptFlags;
    type Addr = PhysAddr;

    #[inline]
    fn addr_bits(addr: PhysAddr) -> u64 {
        addr.as_u64()
    }

    #[inline]
    fn range_ok(_start: u64, end: u64, width: u32) -> bool {
        end <= 1u64 << width
    }

    #[inline]
    fn external(linear: u64, _width: u32) -> u64 {
        linear
    }

    #[inline]
    fn leaf_flags_ok(flags: EptFlags) -> Result<(), &'static str> {
        if flags.bits() & RWX == 0 {
            return Err("an EPT leaf needs read, write or execute (else it is not present)");
        }
        if flags.contains(EptFlags::WRITE) && !flags.contains(EptFlags::READ) {
            return Err("write without read is an EPT misconfiguration");
        }
        if flags.memory_type().is_none() {
            return Err("EPT memory types 2, 3 and 7 are reserved");
        }
        Ok(())
    }

    #[inline]
    fn is_present(raw: u64) -> bool {
        raw & RWX != 0
    }

    #[inline]
    fn table(table: PhysAddr) -> u64 {
        (table.as_u64() & ADDR_4K) | RWX
    }

    #[inline]
    fn page(frame: PhysAddr, size: PageSizeKind, flags: EptFlags) -> u64 {
        let large = if size == PageSizeKind::Size4KiB { 0 } else { LARGE };
        frame.as_u64() | (flags.bits() & EptFlags::all().bits()) | large
    }

    #[inline]
    fn decode(raw: u64, level: u8) -> Result<EntryKind<EptFlags>, ReservedBits> {
        if raw & RWX == 0 {
            return Ok(EntryKind::NotPresent);
        }
        let leaf = level == 1 || (level <= 3 && raw & LARGE != 0);
        let err = |bits| Err(ReservedBits { raw, level, bits });
        if raw & RWX == 0b010 || raw & RWX == 0b110 {
            return err(raw & RWX);
        }
        if !leaf {
            // Bits 7:3 are reserved in a non-leaf entry (bit 7 at levels 4 and 5 always).
            if raw & 0xf8 != 0 {
                return err(raw & 0xf8);
            }
            return Ok(EntryKind::Table(PhysAddr::new_masked(raw & ADDR_4K)));
        }
        let flags = EptFlags::from_bits_retain(raw & EptFlags::all().bits());
        if flags.memory_type().is_none() {
            return err(raw & EptFlags::MT_MASK);
        }
        let size = PageSizeKind::from_level(level).unwrap_or(PageSizeKind::Size4KiB);
        let addr_mask = ADDR_4K & !(size.bytes() - 1);
        let rsvd = raw & ADDR_4K & (size.bytes() - 1);
        if rsvd != 0 {
            return err(rsvd);
        }
        Ok(EntryKind::Page { frame: PhysAddr::new_masked(raw & addr_mask), size, flags })
    }

    const TABLES_NEUTRAL: u64 = u64::MAX;

    #[inline]
    fn fold_table(acc: u64, table_raw: u64) -> u64 {
        acc & table_raw
    }

    #[inline]
    fn next_table(raw: u64, level: u8) -> Option<PhysAddr> {
        // Some access, not write-only, bits 7:3 clear (no large page, no reserved bits).
        let rwx = raw & RWX;
        (level > 1 && rwx != 0 && rwx != 0b010 && rwx != 0b110 && raw & 0xf8 == 0)
            .then(|| PhysAddr::new_masked(raw & ADDR_4K))
    }

    #[inline]
    fn restrict(flags: EptFlags, table_raw: u64) -> EptFlags {
        flags & EptFlags::from_bits_retain(!RWX | (table_raw & RWX))
    }

    #[inline]
    fn is_global(_flags: EptFlags) -> bool {
        false
    }

    #[inline]
    fn without_hw_bits(flags: EptFlags) -> EptFlags {
        flags - (EptFlags::ACCESSED | EptFlags::DIRTY)
    }

    #[inline]
    fn with_hw_bits_of(flags: EptFlags, other: EptFlags) -> EptFlags {
        flags | (other & (EptFlags::ACCESSED | EptFlags::DIRTY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameAllocator, MapError, Mapper, RangeFrameAllocator, SliceMem, TranslateError};

    fn pa(a: u64) -> PhysAddr {
        PhysAddr::new(a).unwrap()
    }

    #[test]
    fn encodings_follow_the_sdm() {
        // 4 KiB leaf: RWX, WB (6 << 3), ignore PAT.
        let f = EptFlags::RAM | EptFlags::IGNORE_PAT;
        assert_eq!(Ept::page(pa(0x1234_5000), PageSizeKind::Size4KiB, f), 0x1234_5000 | 0x77);
        // 2 MiB leaf: bit 7 set; suppress-#VE is bit 63.
        assert_eq!(
            Ept::page(pa(0x4020_0000), PageSizeKind::Size2MiB, EptFlags::READ | EptFlags::SUPPRESS_VE),
            0x4020_0000 | 0x81 | (1 << 63)
        );
        assert_eq!(Ept::table(pa(0x7000)), 0x7007);
        assert_eq!(EptFlags::RAM.memory_type(), Some(EptMemoryType::WriteBack));
        assert_eq!(
            EptFlags::RAM.with_memory_type(EptMemoryType::Uncacheable).bits(),
            EptFlags::READ.union(EptFlags::WRITE).union(EptFlags::EXECUTE).bits()
        );
        // EPTP: WB (6), 4-level walk (3 << 3), A/D (bit 6).
        let root = PhysFrame::containing_address(pa(0x5000));
        assert_eq!(Ept::eptp(root, Levels::Four, true), 0x5000 | 0x5e);
        assert_eq!(Ept::eptp(root, Levels::Five, false), 0x5000 | 0x26);
    }

    #[test]
    fn misconfigurations_are_reserved_bits() {
        // Write-only.
        assert!(Ept::decode(0x1000 | 0b010 | 0x30, 1).is_err());
        // Memory type 2 in a leaf.
        assert_eq!(Ept::decode(0x1000 | 0b001 | (2 << 3), 1).map_err(|r| r.bits), Err(2 << 3));
        // Large page at level 4.
        assert!(Ept::decode(0x1000 | 0x87, 4).is_err());
        // 2 MiB leaf with bit 12 set: reserved in EPT (no PAT bit there).
        assert_eq!(Ept::decode((1 << 21) | (1 << 12) | 0xb7, 2).map_err(|r| r.bits), Err(1 << 12));
        // Execute-only is fine, and not present when R/W/X are all clear.
        assert!(matches!(Ept::decode(0x1000 | 0b100 | 0x30, 1), Ok(EntryKind::Page { .. })));
        assert_eq!(Ept::decode(0x1000 | 0x30, 1), Ok(EntryKind::NotPresent));
    }

    #[test]
    fn mapper_over_ept() {
        let mut buf = std::vec![0u8; 1 << 20];
        let mut a = RangeFrameAllocator::new(pa(0x1000), pa(1 << 20));
        let mem = SliceMem::new(&mut buf, pa(0));
        let mut m = Mapper::new_ept(mem, PhysFrame::containing_address(pa(0)), Levels::Four);
        // 1 GiB + 2 MiB + 4 KiB of guest RAM at guest-physical 0 -> host-physical 4 GiB.
        let len = (1 << 30) + (2 << 20) + 0x1000;
        m.map_range(pa(0), pa(4 << 30), len, EptFlags::RAM, &mut a).unwrap().ignore();
        let mut sizes = std::vec::Vec::new();
        m.for_each_leaf(|l| sizes.push(l.size)).unwrap();
        assert_eq!(sizes, [PageSizeKind::Size1GiB, PageSizeKind::Size2MiB, PageSizeKind::Size4KiB]);
        let t = m.translate(pa((1 << 30) + 0x1234)).unwrap();
        assert_eq!((t.size, t.phys_addr().as_u64()), (PageSizeKind::Size2MiB, (5 << 30) + 0x1234));
        // Write-protect one page inside the 1 GiB leaf: split twice.
        let f = m.protect_range(pa(0x3000), 0x1000, EptFlags::READ | EptFlags::EXECUTE, &mut a).unwrap();
        assert!(f.structure_changed() && !f.needs_global_flush());
        assert_eq!(m.translate(pa(0x3000)).unwrap().flags, EptFlags::READ | EptFlags::EXECUTE);
        assert_eq!(m.translate(pa(0x4000)).unwrap().flags, EptFlags::RAM);
        assert_eq!(m.translate(pa(0x20_0000)).unwrap().size, PageSizeKind::Size2MiB);
        // Restore and promote back twice.
        m.protect_range(pa(0x3000), 0x1000, EptFlags::RAM, &mut a).unwrap().ignore();
        m.promote(pa(0), PageSizeKind::Size2MiB, &mut a).unwrap().ignore();
        m.promote(pa(0), PageSizeKind::Size1GiB, &mut a).unwrap().ignore();
        assert_eq!(m.translate(pa(0x3000)).unwrap().size, PageSizeKind::Size1GiB);
        // Flags that would not be a valid leaf are refused.
        assert_eq!(
            m.map_range(pa(2 << 30), pa(0), 0x1000, EptFlags::WRITE, &mut a),
            Err(MapError::BadFlags { reason: "write without read is an EPT misconfiguration" })
        );
        assert!(m.protect_range(pa(0), 0x1000, EptFlags::empty(), &mut a).is_err());
        // Single pages too (the walk's fast path), then a write-only leaf in their table.
        m.map_page(pa(3 << 30), pa(0x7000), PageSizeKind::Size4KiB, EptFlags::READ, &mut a).unwrap().ignore();
        m.map_page(pa((3 << 30) + 0x1000), pa(0x8000), PageSizeKind::Size4KiB, EptFlags::RAM, &mut a)
            .unwrap()
            .ignore();
        assert_eq!(m.translate(pa((3 << 30) + 0x1008)).unwrap().phys_addr().as_u64(), 0x8008);
        assert_eq!(
            m.map_page(pa(3 << 30), pa(0x9000), PageSizeKind::Size4KiB, EptFlags::READ, &mut a),
            Err(MapError::AlreadyMapped { addr: 3 << 30, level: 1 })
        );
        m.unmap_range(pa(3 << 30), 0x2000, &mut a).unwrap().ignore();
        // Guest-physical addresses beyond 48 bits are not translatable under a 4-level EPT.
        assert_eq!(m.translate(pa(1 << 48)), Err(TranslateError::BadAddress { addr: 1 << 48, bits: 48 }));
        m.unmap_range(pa(0), 2 << 30, &mut a).unwrap().ignore();
        assert_eq!(a.in_use(), 0);
        assert!(a.allocate_frame().is_some());
    }
}
