//! Random map / unmap / protect / promote sequences against a model of 4 KiB pages, and
//! `map_range`'s entry count against an exhaustive optimum.

use std::collections::BTreeMap;

use proptest::prelude::*;
use pvio_paging::{
    Levels, MapError, Mapper, PageFlags, PageSizeKind, PhysAddr, PhysFrame, RangeFrameAllocator, SliceMem,
    TranslateError, VirtAddr,
};

const PAGE: u64 = 4096;
/// The window the sequences work in: 8 MiB = four 2 MiB regions, 2048 pages.
const WINDOW_PAGES: u64 = 2048;
const TABLE_MEM: usize = 8 << 20;

/// Model: virtual page number (within the window) -> (physical page number, flags incl. PRESENT).
type Model = BTreeMap<u64, (u64, PageFlags)>;

#[derive(Debug, Clone)]
enum Op {
    Map { start: u64, pages: u64, phys: u64, flags: PageFlags },
    Unmap { start: u64, pages: u64 },
    Protect { start: u64, pages: u64, flags: PageFlags },
    Promote { region: u64 },
}

fn flags() -> impl Strategy<Value = PageFlags> {
    (any::<u8>(), 0u8..16).prop_map(|(b, key)| {
        let mut f = PageFlags::empty();
        let choices = [
            PageFlags::WRITABLE,
            PageFlags::USER,
            PageFlags::NO_EXECUTE,
            PageFlags::GLOBAL,
            PageFlags::PAT,
            PageFlags::CACHE_DISABLE,
            PageFlags::ACCESSED,
            PageFlags::DIRTY,
        ];
        for (i, c) in choices.iter().enumerate() {
            if b & (1 << i) != 0 {
                f |= *c;
            }
        }
        // Few distinct keys, so promotions with equal flags happen.
        f.with_protection_key(key % 2)
    })
}

/// Ranges biased to 2 MiB boundaries and sizes so superpages, splits and promotions happen.
fn range() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        (0..WINDOW_PAGES, 1..64u64),
        (0..4u64, 1..3u64).prop_map(|(r, n)| (r * 512, n * 512)),
        (0..4u64, 0..512u64, 1..1100u64).prop_map(|(r, o, n)| (r * 512 + o, n)),
    ]
    .prop_map(|(s, n)| (s, n.min(WINDOW_PAGES - s).max(1)))
}

fn op() -> impl Strategy<Value = Vec<Op>> {
    prop_oneof![
        4 => (range(), prop_oneof![Just(0u64), Just(512), Just(1024), 0..4096u64], flags()).prop_map(
            |((start, pages), delta, flags)| vec![Op::Map { start, pages, phys: (start + delta) % 8192, flags }]
        ),
        // A 2 MiB region filled by two 4 KiB-page maps, contiguous or not, flags equal or
        // differing in A/D only or more: candidates for promotion.
        2 => (0..4u64, 1..512u64, prop_oneof![Just(0u64), Just(0), Just(1), Just(512)], flags(),
              prop_oneof![Just(PageFlags::empty()), Just(PageFlags::DIRTY), Just(PageFlags::WRITABLE)])
            .prop_map(|(region, k, gap, flags, extra)| {
                let (start, phys) = (region * 512, 2048 + region * 512);
                vec![
                    Op::Map { start, pages: k, phys, flags },
                    Op::Map { start: start + k, pages: 512 - k, phys: phys + k + gap, flags: flags ^ extra },
                ]
            }),
        2 => range().prop_map(|(start, pages)| vec![Op::Unmap { start, pages }]),
        2 => (range(), flags()).prop_map(|((start, pages), flags)| vec![Op::Protect { start, pages, flags }]),
        3 => (0..4u64).prop_map(|region| vec![Op::Promote { region }]),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..24).prop_map(|v| v.into_iter().flatten().collect())
}

const HW: PageFlags = PageFlags::ACCESSED.union(PageFlags::DIRTY);

/// Whether the model says the 512 pages of `region` can become one 2 MiB page.
fn promotable(model: &Model, region: u64) -> Option<PageFlags> {
    let base = region * 512;
    let (p0, f0) = *model.get(&base)?;
    if p0 % 512 != 0 {
        return None;
    }
    let mut merged = f0;
    for i in 0..512 {
        let (p, f) = *model.get(&(base + i))?;
        if p != p0 + i || f - HW != f0 - HW {
            return None;
        }
        merged |= f & HW;
    }
    Some(merged)
}

fn check_all(m: &Mapper<SliceMem<'_>>, model: &Model, base: u64) -> Result<(), TestCaseError> {
    for vp in 0..WINDOW_PAGES {
        let addr = base + vp * PAGE + (vp * 8) % PAGE;
        let got = m.translate(VirtAddr::new_la57(addr).unwrap());
        match model.get(&vp) {
            Some(&(pp, f)) => {
                let t = got.map_err(|e| TestCaseError::fail(format!("page {vp}: {e}")))?;
                prop_assert_eq!(t.phys_addr().as_u64(), pp * PAGE + (vp * 8) % PAGE, "page {}", vp);
                prop_assert_eq!(t.flags, f, "page {}", vp);
            }
            None => prop_assert!(matches!(got, Err(TranslateError::NotMapped { .. })), "page {vp}: {got:?}"),
        }
    }
    // The leaves cover exactly the model's pages.
    let mut covered = 0;
    m.for_each_leaf(|l| covered += l.size.bytes() / PAGE).unwrap();
    prop_assert_eq!(covered, model.len() as u64);
    Ok(())
}

fn pa(a: u64) -> PhysAddr {
    PhysAddr::new(a).unwrap()
}

fn run(levels: Levels, base: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut buf = vec![0u8; TABLE_MEM];
    let mut alloc = RangeFrameAllocator::new(pa(PAGE), pa(TABLE_MEM as u64));
    let mem = SliceMem::new(&mut buf, pa(0));
    let mut m = Mapper::new(mem, PhysFrame::containing_address(pa(0)), levels)
        .with_max_page_size(PageSizeKind::Size2MiB);
    let mut model = Model::new();
    let va = |page: u64| VirtAddr::new_la57(base + page * PAGE).unwrap();
    for op in ops {
        match op {
            Op::Map { start, pages, phys, flags } => {
                let res = m.map_range(va(start), pa(phys * PAGE), pages * PAGE, flags, &mut alloc);
                if (start..start + pages).any(|p| model.contains_key(&p)) {
                    prop_assert!(matches!(res, Err(MapError::AlreadyMapped { .. })), "{res:?}");
                } else {
                    prop_assert!(res.is_ok(), "{res:?}");
                    for i in 0..pages {
                        model.insert(start + i, (phys + i, flags | PageFlags::PRESENT));
                    }
                }
            }
            Op::Unmap { start, pages } => {
                let f = m.unmap_range(va(start), pages * PAGE, &mut alloc).unwrap();
                let global = (start..start + pages)
                    .any(|p| model.get(&p).is_some_and(|e| e.1.contains(PageFlags::GLOBAL)));
                let removed = (start..start + pages).filter(|p| model.remove(p).is_some()).count();
                let any = removed > 0;
                prop_assert_eq!(f.range().is_some(), any);
                prop_assert_eq!(f.needs_global_flush(), global);
            }
            Op::Protect { start, pages, flags } => {
                m.protect_range(va(start), pages * PAGE, flags, &mut alloc).unwrap().ignore();
                for p in start..start + pages {
                    if let Some(e) = model.get_mut(&p) {
                        e.1 = flags | PageFlags::PRESENT | (e.1 & HW);
                    }
                }
            }
            Op::Promote { region } => {
                let res = m.promote(va(region * 512), PageSizeKind::Size2MiB, &mut alloc);
                match promotable(&model, region) {
                    Some(merged) => {
                        let already = Err(MapError::NotPromotable {
                            addr: base + region * 512 * PAGE,
                            reason: "already a page of this size",
                        });
                        prop_assert!(res.is_ok() || res == already, "{res:?}");
                        for i in 0..512 {
                            model.get_mut(&(region * 512 + i)).unwrap().1 = merged;
                        }
                    }
                    None => prop_assert!(res.is_err(), "promoted a region the model says cannot be: {res:?}"),
                }
            }
        }
        check_all(&m, &model, base)?;
    }
    // Unmapping everything gives every table back.
    m.unmap_range(va(0), WINDOW_PAGES * PAGE, &mut alloc).unwrap().ignore();
    prop_assert_eq!(alloc.in_use(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 2 } else { 64 }, ..ProptestConfig::default() })]

    #[test]
    fn four_level_lower_half(ops in ops()) {
        run(Levels::Four, 0x40_0000_0000, ops)?;
    }

    #[test]
    fn four_level_upper_half(ops in ops()) {
        run(Levels::Four, 0xffff_ffff_ff80_0000, ops)?;
    }

    #[test]
    fn five_level(ops in ops()) {
        run(Levels::Five, 0xff12_3400_0000_0000, ops)?;
    }
}

/// The fewest aligned pages (4 KiB, 2 MiB, 1 GiB up to `max`) that tile `n` units of 4 KiB
/// starting at virtual unit `v` and physical unit `p`: dynamic programming over every tiling.
fn optimum(v: u64, p: u64, n: u64, max: PageSizeKind) -> u64 {
    let sizes: Vec<u64> = [1u64, 512, 512 * 512].into_iter().filter(|s| s * PAGE <= max.bytes()).collect();
    let mut best = vec![u64::MAX; n as usize + 1];
    best[n as usize] = 0;
    for i in (0..n).rev() {
        for &s in &sizes {
            if (v + i) % s == 0 && (p + i) % s == 0 && i + s <= n && best[(i + s) as usize] != u64::MAX {
                best[i as usize] = best[i as usize].min(1 + best[(i + s) as usize]);
            }
        }
    }
    best[0]
}

fn aligned_start() -> impl Strategy<Value = u64> {
    // Virtual unit: near 1 GiB / 2 MiB boundaries or anywhere in 4 GiB.
    prop_oneof![
        (0..4u64, 0..4u64).prop_map(|(g, k)| g * 262_144 + k * 512),
        (0..4u64, 0..600u64).prop_map(|(g, k)| g * 262_144 + 262_144 - k),
        0..1_048_576u64,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 1 } else { 48 }, ..ProptestConfig::default() })]

    #[test]
    fn map_range_uses_the_fewest_entries(
        v in aligned_start(),
        delta in prop_oneof![Just(0u64), Just(512), Just(262_144), 0..1_000_000u64],
        n in prop_oneof![1..1500u64, 262_000..530_000u64],
        one_gib in any::<bool>(),
    ) {
        let max = if one_gib { PageSizeKind::Size1GiB } else { PageSizeKind::Size2MiB };
        let p = v + delta;
        let mut buf = vec![0u8; TABLE_MEM];
        let mut alloc = RangeFrameAllocator::new(pa(PAGE), pa(TABLE_MEM as u64));
        let mem = SliceMem::new(&mut buf, pa(0));
        let mut m: Mapper<_> = Mapper::new(mem, PhysFrame::containing_address(pa(0)), Levels::Four).with_max_page_size(max);
        m.map_range(VirtAddr::new(v * PAGE).unwrap(), pa(p * PAGE), n * PAGE, PageFlags::WRITABLE, &mut alloc)
            .unwrap()
            .ignore();
        let mut leaves = 0;
        let mut bytes = 0;
        m.for_each_leaf(|l| {
            leaves += 1;
            bytes += l.size.bytes();
        })
        .unwrap();
        prop_assert_eq!(bytes, n * PAGE);
        prop_assert_eq!(leaves, optimum(v, p, n, max));
        for probe in [0, n / 2, n - 1] {
            let t = m.translate(VirtAddr::new((v + probe) * PAGE + 8).unwrap()).unwrap();
            prop_assert_eq!(t.phys_addr().as_u64(), (p + probe) * PAGE + 8);
        }
    }
}

proptest! {
    /// The walk's fast path never disagrees with the full decoder.
    #[test]
    fn next_table_agrees_with_decode(raw in any::<u64>(), low in 0u64..512, level in 1u8..=5) {
        use pvio_paging::{EntryFormat, EntryKind, Ept, X86};
        // Half the cases with a plausible low byte, so tables are common.
        for raw in [raw, (raw & !0x1ff) | low] {
            if let Some(t) = X86::next_table(raw, level) {
                prop_assert_eq!(X86::decode(raw, level), Ok(EntryKind::Table(t)));
            }
            if let Some(t) = Ept::next_table(raw, level) {
                prop_assert_eq!(Ept::decode(raw, level), Ok(EntryKind::Table(t)));
            }
            if let Ok(EntryKind::Table(t)) = X86::decode(raw, level) {
                prop_assert_eq!(X86::next_table(raw, level), Some(t));
            }
            if let Ok(EntryKind::Table(t)) = Ept::decode(raw, level) {
                prop_assert_eq!(Ept::next_table(raw, level), Some(t));
            }
        }
    }
}
