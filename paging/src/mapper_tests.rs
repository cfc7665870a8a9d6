//! Unit tests of the mapper over a byte buffer (also run under miri).

use super::*;
use crate::entry::PageFlags;
use crate::frame::RangeFrameAllocator;
use crate::mem::SliceMem;
use crate::VirtAddr;

const MEM: usize = 4 << 20; // physical [0, 4 MiB) holds the tables; frames mapped can be anywhere

fn pa(a: u64) -> PhysAddr {
    PhysAddr::new(a).unwrap()
}

fn va(a: u64) -> VirtAddr {
    VirtAddr::new_la57(a).unwrap()
}

fn setup(buf: &mut [u8], levels: Levels) -> (Mapper<SliceMem<'_>>, RangeFrameAllocator) {
    let alloc = RangeFrameAllocator::new(pa(0x1000), pa(buf.len() as u64));
    let m = Mapper::new(SliceMem::new(buf, pa(0)), PhysFrame::containing_address(pa(0)), levels);
    (m, alloc)
}

fn leaves<M: PhysMem>(m: &Mapper<M>) -> std::vec::Vec<Leaf<PageFlags>> {
    let mut v = std::vec::Vec::new();
    m.for_each_leaf(|l| v.push(l)).unwrap();
    v
}

fn count(ls: &[Leaf<PageFlags>], size: PageSizeKind) -> usize {
    ls.iter().filter(|l| l.size == size).count()
}

const RW: PageFlags = PageFlags::WRITABLE;
const P: PageFlags = PageFlags::PRESENT;
const K4: PageSizeKind = PageSizeKind::Size4KiB;
const M2: PageSizeKind = PageSizeKind::Size2MiB;
const G1: PageSizeKind = PageSizeKind::Size1GiB;

#[test]
fn map_range_uses_largest_pages() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    // [1G - 8K, 2G + 2M + 4K) mapped to the same physical range: 2 x 4K, 1 x 1G, 1 x 2M, 1 x 4K.
    let start = (1 << 30) - 0x2000;
    let len = 0x2000 + (1 << 30) + (2 << 20) + 0x1000;
    m.map_range(va(start), pa(start), len, RW, &mut a).unwrap().ignore();
    let ls = leaves(&m);
    assert_eq!((count(&ls, K4), count(&ls, M2), count(&ls, G1)), (3, 1, 1));
    let t = m.translate(va((1 << 30) + 0x1234_5678)).unwrap();
    assert_eq!((t.size, t.phys_addr().as_u64(), t.flags), (G1, (1 << 30) + 0x1234_5678, RW | P));
    // Physical offset by 2 MiB relative to virtual: no 1 GiB page can be used.
    let mut buf2 = std::vec![0u8; MEM];
    let (mut m2, mut a2) = setup(&mut buf2, Levels::Four);
    m2.map_range(va(1 << 30), pa((1 << 30) + (2 << 20)), 1 << 30, RW, &mut a2).unwrap().ignore();
    let ls = leaves(&m2);
    assert_eq!((count(&ls, K4), count(&ls, M2), count(&ls, G1)), (0, 512, 0));
}

#[test]
fn max_page_size_is_respected() {
    let mut buf = std::vec![0u8; MEM];
    let (m, mut a) = setup(&mut buf, Levels::Four);
    let mut m = m.with_max_page_size(M2);
    m.map_range(va(1 << 30), pa(1 << 30), 1 << 30, RW, &mut a).unwrap().ignore();
    assert_eq!(count(&leaves(&m), M2), 512);
    assert_eq!(
        m.map_page(va(2 << 30), pa(2 << 30), G1, RW, &mut a),
        Err(MapError::SizeNotAllowed { size: G1, max: M2 })
    );
    assert!(m.promote(va(1 << 30), G1, &mut a).is_err());
}

#[test]
fn five_level_paging() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Five);
    let addr = 0xff12_3456_7800_0000u64; // PML5 index 0x1e2 in the upper half
    m.map_range(va(addr), pa(0x20_0000), 0x20_0000, RW, &mut a).unwrap().ignore();
    let t = m.translate(va(addr + 0x42)).unwrap();
    assert_eq!((t.size, t.phys_addr().as_u64()), (M2, 0x20_0042));
    let ls = leaves(&m);
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].addr, addr);
    let _ = m.into_mem();
    // Root entry for PML5 index of `addr`.
    let i5 = ((addr >> 48) & 0x1ff) as usize;
    assert_eq!(i5, 0x112);
    assert_ne!(buf[i5 * 8], 0);
    // Under 4 levels the same address is non-canonical.
    let mut buf = std::vec![0u8; MEM];
    let (mut m4, mut a4) = setup(&mut buf, Levels::Four);
    assert!(matches!(
        m4.map_range(va(addr), pa(0), 0x1000, RW, &mut a4),
        Err(MapError::BadRange { bits: 48, .. })
    ));
    assert_eq!(m4.translate(va(addr)), Err(TranslateError::BadAddress { addr, bits: 48 }));
}

#[test]
fn range_checks() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    // Crossing the canonical hole from below.
    assert!(matches!(
        m.map_range(va(0x7fff_ffff_f000), pa(0), 0x2000, RW, &mut a),
        Err(MapError::BadRange { .. })
    ));
    assert_eq!(
        m.map_range(va(0x1000), pa(0x1800), 0x1000, RW, &mut a),
        Err(MapError::Misaligned { value: 0x1800, align: 4096 })
    );
    assert_eq!(
        m.map_range(va(0x1000), pa(0), 0x1001, RW, &mut a),
        Err(MapError::Misaligned { value: 0x1001, align: 4096 })
    );
    assert!(matches!(
        m.map_range(va(0x1000), pa((1 << 52) - 0x1000), 0x2000, RW, &mut a),
        Err(MapError::PhysOutOfRange { .. })
    ));
    // The very top page of the upper half is fine.
    m.map_range(va(0xffff_ffff_ffff_f000), pa(0x5000), 0x1000, RW, &mut a).unwrap().ignore();
    assert_eq!(m.translate(va(0xffff_ffff_ffff_fff8)).unwrap().phys_addr().as_u64(), 0x5ff8);
    let f = m.unmap_range(va(0xffff_ffff_ffff_f000), 0x1000, &mut a).unwrap();
    assert_eq!(f.range(), Some(0xffff_ffff_ffff_f000..=u64::MAX));
    assert_eq!(a.in_use(), 0);
}

#[test]
fn empty_ranges_change_nothing() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    for at in [0, 0x1000, 0x20_1000, 0xffff_8000_0000_0000] {
        assert_eq!(m.map_range(va(at), pa(0x5000), 0, RW, &mut a), Ok(Flush::none()));
        assert_eq!(m.unmap_range(va(at), 0, &mut a), Ok(Flush::none()));
        assert_eq!(m.protect_range(va(at), 0, RW, &mut a), Ok(Flush::none()));
    }
    assert_eq!(a.in_use(), 0);
    assert!(leaves(&m).is_empty());
}

#[test]
fn already_mapped_and_rollback() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    m.map_range(va(0x40_0000), pa(0x40_0000), 0x20_0000, RW, &mut a).unwrap().ignore();
    let before = a.in_use();
    // Overlaps the 2 MiB page at its last 4 KiB.
    assert_eq!(
        m.map_range(va(0x3f_0000), pa(0), 0x11000, RW, &mut a),
        Err(MapError::AlreadyMapped { addr: 0x40_0000, level: 2 })
    );
    // The 4 KiB pages mapped before the failure were undone; the new PT was freed.
    assert!(m.translate(va(0x3f_0000)).is_err());
    assert_eq!(a.in_use(), before);
    assert_eq!(leaves(&m).len(), 1);
    // A 4 KiB page below an existing table.
    m.map_range(va(0x80_0000), pa(0), 0x1000, RW, &mut a).unwrap().ignore();
    assert_eq!(
        m.map_page(va(0x80_0000), pa(0x80_0000), M2, RW, &mut a),
        Err(MapError::AlreadyMapped { addr: 0x80_0000, level: 2 })
    );
}

#[test]
fn out_of_frames_undoes_everything() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, _) = setup(&mut buf, Levels::Four);
    // Three frames: PDPT, PD, one PT; the second PT cannot be had.
    let mut a = RangeFrameAllocator::new(pa(0x1000), pa(0x4000));
    assert_eq!(m.map_range(va(0x1f_f000), pa(0x1f_f000), 0x2000, RW, &mut a), Err(MapError::OutOfFrames));
    assert_eq!(a.in_use(), 0);
    assert!(leaves(&m).is_empty());
    let _ = m.into_mem();
    assert!(buf[..4096].iter().all(|&b| b == 0));
}

#[test]
fn out_of_frames_on_the_first_page_frees_the_tables_made_for_it() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, _) = setup(&mut buf, Levels::Four);
    // Two frames: the PDPT and the PD are made, the PT is not; nothing was mapped yet.
    let mut a = RangeFrameAllocator::new(pa(0x1000), pa(0x3000));
    assert_eq!(m.map_range(va(0x1000), pa(0x1000), 0x1000, RW, &mut a), Err(MapError::OutOfFrames));
    assert_eq!(a.in_use(), 0);
    let _ = m.into_mem();
    assert!(buf[..4096].iter().all(|&b| b == 0));
}

#[test]
fn unmap_splits_superpages_and_frees_tables() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    let base = 3u64 << 30;
    m.map_range(va(base), pa(base), 1 << 30, RW | PageFlags::GLOBAL, &mut a).unwrap().ignore();
    assert_eq!(a.in_use(), 1); // the PDPT
    let hole = base + (2 << 20) + 0x1000;
    let f = m.unmap_range(va(hole), 0x1000, &mut a).unwrap();
    assert!(f.needs_global_flush() && f.structure_changed());
    assert_eq!(f.range(), Some(base..=base + (1 << 30) - 1));
    let ls = leaves(&m);
    assert_eq!((count(&ls, K4), count(&ls, M2), count(&ls, G1)), (511, 511, 0));
    assert_eq!(a.in_use(), 3); // PDPT, PD, PT
    assert!(matches!(m.translate(va(hole)), Err(TranslateError::NotMapped { level: 1, .. })));
    for probe in [base, hole - 0x1000, hole + 0x1000, base + (1 << 30) - 8] {
        let t = m.translate(va(probe)).unwrap();
        assert_eq!(t.phys_addr().as_u64(), probe);
        assert_eq!(t.flags, RW | P | PageFlags::GLOBAL);
    }
    // Unmap everything (holes included): every table but the root goes back.
    let f = m.unmap_range(va(0), 1 << 40, &mut a).unwrap();
    assert!(f.needs_global_flush());
    assert_eq!(a.in_use(), 0);
    assert!(leaves(&m).is_empty());
}

#[test]
fn protect_splits_only_when_needed() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    m.map_range(va(0x20_0000), pa(0x20_0000), 0x40_0000, RW, &mut a).unwrap().ignore();
    // Same flags: no split, nothing to flush.
    let f = m.protect_range(va(0x20_1000), 0x1000, RW, &mut a).unwrap();
    assert!(!f.is_needed());
    assert_eq!(leaves(&m).len(), 2);
    // Read-only + NX for one 4 KiB page inside the first superpage.
    let ro = PageFlags::NO_EXECUTE;
    let f = m.protect_range(va(0x20_1000), 0x1000, ro, &mut a).unwrap();
    assert!(f.is_needed() && f.structure_changed() && !f.needs_global_flush());
    assert_eq!(m.translate(va(0x20_1000)).unwrap().flags, ro | P);
    assert_eq!(m.translate(va(0x20_2000)).unwrap().flags, RW | P);
    assert_eq!(m.translate(va(0x40_0000)).unwrap().size, M2);
    assert_eq!(leaves(&m).len(), 513);
    // Making it global again over the whole second superpage: no split, flush says global.
    let f = m.protect_range(va(0x40_0000), 0x20_0000, RW | PageFlags::GLOBAL, &mut a).unwrap();
    assert!(f.needs_global_flush() && !f.structure_changed());
}

#[test]
fn protect_keeps_accessed_and_dirty() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    m.map_range(va(0x1000), pa(0x9000), 0x1000, RW | PageFlags::ACCESSED | PageFlags::DIRTY, &mut a)
        .unwrap()
        .ignore();
    m.protect_range(va(0x1000), 0x1000, PageFlags::empty(), &mut a).unwrap().ignore();
    assert_eq!(m.translate(va(0x1000)).unwrap().flags, P | PageFlags::ACCESSED | PageFlags::DIRTY);
}

#[test]
fn promote_rebuilds_the_superpage() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    let base = 0x4000_0000u64;
    for i in 0..512 {
        let extra = if i == 7 { PageFlags::DIRTY } else { PageFlags::empty() };
        m.map_page(
            va(base + i * 0x1000),
            pa(0x60_0000 + i * 0x1000),
            K4,
            RW | PageFlags::PAT | extra,
            &mut a,
        )
        .unwrap()
        .ignore();
    }
    assert_eq!(a.in_use(), 3);
    let f = m.promote(va(base), M2, &mut a).unwrap();
    assert!(f.structure_changed() && !f.needs_global_flush());
    assert_eq!(f.range(), Some(base..=base + 0x1f_ffff));
    assert_eq!(a.in_use(), 2);
    let t = m.translate(va(base + 0x12345)).unwrap();
    assert_eq!((t.size, t.phys_addr().as_u64()), (M2, 0x61_2345));
    // PAT survived the move from bit 7 to bit 12; dirty was ORed in.
    assert_eq!(t.flags, RW | P | PageFlags::PAT | PageFlags::DIRTY);
    assert_eq!(
        m.promote(va(base), M2, &mut a),
        Err(MapError::NotPromotable { addr: base, reason: "already a page of this size" })
    );
    // Then to 1 GiB is refused: the frame is not 1 GiB aligned (checked first) and the
    // other 511 entries are not present.
    assert_eq!(
        m.promote(va(base), G1, &mut a),
        Err(MapError::NotPromotable {
            addr: base,
            reason: "the first frame is not aligned to the superpage size"
        })
    );
}

#[test]
fn promote_refusals() {
    let mut buf = std::vec![0u8; MEM];
    let (mut m, mut a) = setup(&mut buf, Levels::Four);
    let not = |addr, reason| Err(MapError::NotPromotable { addr, reason });
    // Misaligned first frame.
    m.map_range(va(0x20_0000), pa(0x1000), 0x20_0000, RW, &mut a).unwrap().ignore();
    assert_eq!(
        m.promote(va(0x20_0000), M2, &mut a),
        not(0x20_0000, "the first frame is not aligned to the superpage size")
    );
    // Not contiguous.
    m.map_range(va(0x40_0000), pa(0x40_0000), 0x10_0000, RW, &mut a).unwrap().ignore();
    m.map_range(va(0x50_0000), pa(0x90_0000), 0x10_0000, RW, &mut a).unwrap().ignore();
    assert_eq!(m.promote(va(0x40_0000), M2, &mut a), not(0x40_0000, "frames are not contiguous"));
    // Flags differ.
    m.map_range(va(0x60_0000), pa(0x60_0000), 0x20_0000, RW, &mut a).unwrap().ignore();
    m.protect_range(va(0x7f_f000), 0x1000, PageFlags::empty(), &mut a).unwrap().ignore();
    assert_eq!(m.promote(va(0x60_0000), M2, &mut a), not(0x60_0000, "flags differ"));
    // Nothing there.
    assert_eq!(
        m.promote(va(0x8000_0000), M2, &mut a),
        Err(MapError::NotMapped { addr: 0x8000_0000, level: 3 })
    );
    assert_eq!(
        m.promote(va(0x20_1000), M2, &mut a),
        Err(MapError::Misaligned { value: 0x20_1000, align: 0x20_0000 })
    );
    assert_eq!(m.promote(va(0x20_0000), K4, &mut a), not(0x20_0000, "4 KiB is the smallest page"));
}

#[test]
fn translate_reports_reserved_bits_and_restrictions() {
    let mut buf = std::vec![0u8; MEM];
    {
        let (mut m, mut a) = setup(&mut buf, Levels::Four);
        m.map_range(va(0x1000), pa(0x1000_0000), 0x1000, RW | PageFlags::USER, &mut a).unwrap().ignore();
    }
    // PML4[0] -> PDPT; clear R/W and set NX in the PML4 entry by hand.
    let pml4e = u64::from_le_bytes(buf[0..8].try_into().unwrap());
    buf[0..8].copy_from_slice(&((pml4e & !2) | (1 << 63)).to_le_bytes());
    // A misaligned 1 GiB entry in PDPT slot 5.
    let pdpt = (pml4e & crate::bits::ADDR_4K) as usize;
    let bad = (1u64 << 30) | (1 << 21) | 0x83;
    buf[pdpt + 5 * 8..pdpt + 6 * 8].copy_from_slice(&bad.to_le_bytes());
    let (m, _) = setup(&mut buf, Levels::Four);
    let t = m.translate(va(0x1000)).unwrap();
    assert_eq!(t.flags, P | PageFlags::USER | PageFlags::NO_EXECUTE);
    assert_eq!(
        m.translate(va(5 << 30)),
        Err(TranslateError::Reserved(crate::ReservedBits { raw: bad, level: 3, bits: 1 << 21 }))
    );
    assert_eq!(m.translate(va(6 << 30)), Err(TranslateError::NotMapped { addr: 6 << 30, level: 3 }));
}

#[test]
fn tables_outside_memory_are_errors() {
    let mut buf = std::vec![0u8; 0x2000];
    let (mut m, _) = setup(&mut buf, Levels::Four);
    let mut a = RangeFrameAllocator::new(pa(0x10_0000), pa(0x20_0000)); // frames the accessor cannot reach
    assert!(matches!(m.map_range(va(0), pa(0), 0x1000, RW, &mut a), Err(MapError::Memory(_))));
    assert_eq!(a.in_use(), 0);
}
