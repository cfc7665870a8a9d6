//! Harness of the `paging_mapper` fuzz target: arbitrary sequences of map / unmap / protect /
//! promote / translate, and raw scribbles into the tables, against `pvio_paging::Mapper`.
//!
//! Shared by `fuzz/fuzz_targets/paging_mapper.rs` (libFuzzer) and the stable test
//! `paging/tests/fuzz_replay.rs`, which include it with `#[path = ...] mod`. It uses only
//! `pvio_paging` and `std` and decodes its input by hand; a missing byte reads as 0.
//!
//! # Setup
//!
//! A 4 MiB buffer is physical memory `[0, 4 MiB)`: the root table at 0 and 1023 frames for
//! tables (so large 4 KiB mappings run out of frames, exercising the undo paths). Mapped
//! frames are never touched. The window is 4 GiB of virtual (or guest-physical) pages at a
//! base that depends on the configuration.
//!
//! # Input format
//!
//! ```text
//! byte 0   bit 0: 5-level; bits 2..1: largest page (0 4 KiB, 1 2 MiB, else 1 GiB);
//!          bit 3: upper-half window (x86)
//! then ops one opcode byte (mod 7) and its arguments, until the input ends (at most 64 ops)
//! ```
//!
//! | op | action                          | arguments                                  |
//! |----|---------------------------------|--------------------------------------------|
//! |  0 | `map_range`                     | position, length, physical delta, flags    |
//! |  1 | `unmap_range`                   | position, length                           |
//! |  2 | `protect_range`                 | position, length, flags                    |
//! |  3 | `promote`                       | position, size bit (2 MiB / 1 GiB)          |
//! |  4 | `translate`                     | position                                   |
//! |  5 | scribble a raw entry            | frame (u16 mod 1024), index u16, value u64 |
//! |  6 | `map_page`                      | position, size (mod 3), physical delta, flags |
//!
//! A position is a u32 LE page number mod 2^20. A length byte `a < 0x40` is `a + 1` pages,
//! `a < 0x80` is `(a - 0x3f) * 512`, `a < 0xc0` is `(a - 0x7f) * 32768`, otherwise a u32 LE page
//! count mod 2^20 (then clamped to the window). A physical delta byte `d`: 0 same as virtual, 1
//! plus 2 MiB, 2 plus 1 GiB, else `d` pages. A flags byte maps its bits onto WRITABLE, USER,
//! PWT, PCD, PAT, GLOBAL, NX and DIRTY.
//!
//! # Invariants checked (a failed `assert!` is a finding)
//!
//! - no panic, no hang (every walk is bounded; every op is a value);
//! - until a scribble: a model of extents (virtual page run -> physical run, flags) predicts
//!   every outcome: `map_range` fails with `AlreadyMapped` only when the range overlaps the
//!   model (or runs out of frames before reaching it), otherwise succeeds or runs out of
//!   frames, and a failure leaves nothing changed; unmap and protect
//!   succeed or run out of frames leaving translations unchanged; `promote` succeeds only where
//!   the model has 512 contiguous, aligned pages with equal flags; `translate` agrees with the
//!   model at the probed pages after every op; the leaves cover exactly the model's pages;
//!   unmapping everything gives every table frame back;
//! - after a scribble: only that nothing panics.

use std::collections::BTreeMap;

use pvio_paging::{
    Levels, MapError, Mapper, PageFlags, PageSizeKind, PhysAddr, PhysFrame, PhysMem, RangeFrameAllocator,
    SliceMem, TranslateError, VirtAddr,
};

const PAGE: u64 = 4096;
const WINDOW_PAGES: u64 = 1 << 20;
const MEM: usize = 4 << 20;
const MAX_OPS: usize = 64;
const HW: PageFlags = PageFlags::ACCESSED.union(PageFlags::DIRTY);

use super::bytes::Bytes as Input;

/// This harness's draws from the input.
trait Draw {
    fn position(&mut self) -> u64;
    fn length(&mut self, start: u64) -> u64;
    fn delta(&mut self) -> u64;
    fn flags(&mut self) -> PageFlags;
}

impl Draw for Input<'_> {
    fn position(&mut self) -> u64 {
        u64::from(self.u32()) % WINDOW_PAGES
    }
    fn length(&mut self, start: u64) -> u64 {
        let n = match self.u8() {
            a @ 0..=0x3f => u64::from(a) + 1,
            a @ 0x40..=0x7f => u64::from(a - 0x3f) * 512,
            a @ 0x80..=0xbf => u64::from(a - 0x7f) * 32768,
            _ => (u64::from(self.u32()) % WINDOW_PAGES).max(1),
        };
        n.min(WINDOW_PAGES - start)
    }
    fn delta(&mut self) -> u64 {
        match self.u8() {
            0 => 0,
            1 => 512,
            2 => 262_144,
            d => u64::from(d),
        }
    }
    fn flags(&mut self) -> PageFlags {
        let b = self.u8();
        let bits = [
            PageFlags::WRITABLE,
            PageFlags::USER,
            PageFlags::WRITE_THROUGH,
            PageFlags::CACHE_DISABLE,
            PageFlags::PAT,
            PageFlags::GLOBAL,
            PageFlags::NO_EXECUTE,
            PageFlags::DIRTY,
        ];
        bits.iter()
            .enumerate()
            .filter(|(i, _)| b & (1 << i) != 0)
            .fold(PageFlags::empty(), |f, (_, x)| f | *x)
    }
}

/// Extents: first virtual page -> (one past the last, first physical page, flags incl. PRESENT).
#[derive(Default, Clone, PartialEq, Debug)]
struct Model {
    ext: BTreeMap<u64, (u64, u64, PageFlags)>,
}

impl Model {
    fn get(&self, page: u64) -> Option<(u64, PageFlags)> {
        let (&s, &(e, p, f)) = self.ext.range(..=page).next_back()?;
        (page < e).then_some((p + page - s, f))
    }
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.ext.range(..end).next_back().is_some_and(|(_, &(e, _, _))| e > start)
    }
    /// Splits extents so that `at` starts one if it is mapped.
    fn cut(&mut self, at: u64) {
        if let Some((&s, &(e, p, f))) = self.ext.range(..at).next_back() {
            if at < e {
                self.ext.insert(s, (at, p, f));
                self.ext.insert(at, (e, p + at - s, f));
            }
        }
    }
    fn remove(&mut self, start: u64, end: u64) {
        self.cut(start);
        self.cut(end);
        let keys: Vec<u64> = self.ext.range(start..end).map(|(&k, _)| k).collect();
        for k in keys {
            self.ext.remove(&k);
        }
    }
    fn protect(&mut self, start: u64, end: u64, flags: PageFlags) {
        self.cut(start);
        self.cut(end);
        for (_, v) in self.ext.range_mut(start..end) {
            v.2 = flags | PageFlags::PRESENT | (v.2 & HW);
        }
    }
    fn pages(&self) -> u64 {
        self.ext.iter().map(|(s, (e, _, _))| e - s).sum()
    }
    /// The merged flags if `[start, start + n)` is one contiguous run with `size`-aligned
    /// physical start and flags equal but for accessed/dirty.
    fn promotable(&self, start: u64, n: u64) -> Option<PageFlags> {
        let (p0, f0) = self.get(start)?;
        if p0 % n != 0 {
            return None;
        }
        let mut merged = f0;
        let mut page = start;
        while page < start + n {
            let (&s, &(e, p, f)) = self.ext.range(..=page).next_back()?;
            if page >= e || p + page - s != p0 + page - start || f - HW != f0 - HW {
                return None;
            }
            merged |= f & HW;
            page = e;
        }
        Some(merged)
    }
}

fn pa(a: u64) -> PhysAddr {
    PhysAddr::new_masked(a)
}

struct Run<'m> {
    m: Mapper<SliceMem<'m>>,
    alloc: RangeFrameAllocator,
    model: Model,
    base: u64,
    corrupted: bool,
}

impl Run<'_> {
    fn va(&self, page: u64) -> VirtAddr {
        VirtAddr::new_la57(self.base + page * PAGE).expect("the window is canonical")
    }

    fn check(&self, page: u64) {
        if self.corrupted || page >= WINDOW_PAGES {
            return;
        }
        let off = (page * 8) % PAGE;
        let got = self.m.translate(VirtAddr::new_la57(self.base + page * PAGE + off).unwrap());
        match self.model.get(page) {
            Some((p, f)) => {
                let t = got.unwrap_or_else(|e| panic!("page {page:#x} should map {p:#x}: {e}"));
                assert_eq!(t.phys_addr().as_u64(), p * PAGE + off, "page {page:#x}");
                assert_eq!(t.flags, f, "page {page:#x}");
            }
            None => assert!(matches!(got, Err(TranslateError::NotMapped { .. })), "page {page:#x}: {got:?}"),
        }
    }

    fn check_around(&self, start: u64, end: u64) {
        for p in [start.wrapping_sub(1), start, start + (end - start) / 2, end - 1, end] {
            self.check(p);
        }
    }
}

/// Runs one input; panics on a broken invariant.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let cfg = input.u8();
    let levels = if cfg & 1 != 0 { Levels::Five } else { Levels::Four };
    let max = match (cfg >> 1) & 3 {
        0 => PageSizeKind::Size4KiB,
        1 => PageSizeKind::Size2MiB,
        _ => PageSizeKind::Size1GiB,
    };
    let base = match (cfg & 8 != 0, levels) {
        (false, Levels::Four) => 0x40_0000_0000,
        (true, Levels::Four) => 0xffff_ff00_0000_0000,
        (false, Levels::Five) => 0x00ab_0000_0000_0000,
        (true, Levels::Five) => 0xff12_3400_0000_0000,
    };
    let mut buf = vec![0u8; MEM];
    let alloc = RangeFrameAllocator::new(pa(PAGE), pa(MEM as u64));
    let m = Mapper::new(SliceMem::new(&mut buf, pa(0)), PhysFrame::containing_address(pa(0)), levels)
        .with_max_page_size(max);
    let mut r = Run { m, alloc, model: Model::default(), base, corrupted: false };
    for _ in 0..MAX_OPS {
        if input.done() {
            break;
        }
        match input.u8() % 7 {
            0 => {
                let start = input.position();
                let n = input.length(start);
                let phys = start + input.delta();
                let flags = input.flags();
                let res = r.m.map_range(r.va(start), pa(phys * PAGE), n * PAGE, flags, &mut r.alloc);
                if !r.corrupted {
                    if r.model.overlaps(start, start + n) {
                        // Pages are mapped in address order: frames may run out before the
                        // first mapped page is reached. Either way nothing changes.
                        assert!(
                            matches!(res, Err(MapError::AlreadyMapped { .. } | MapError::OutOfFrames)),
                            "{res:?}"
                        );
                    } else {
                        match res {
                            Ok(f) => {
                                f.ignore();
                                r.model.ext.insert(start, (start + n, phys, flags | PageFlags::PRESENT));
                            }
                            Err(MapError::OutOfFrames) => {}
                            Err(e) => panic!("map_range of a free range: {e}"),
                        }
                    }
                    r.check_around(start, start + n);
                }
            }
            op @ (1 | 2) => {
                let start = input.position();
                let n = input.length(start);
                let flags = if op == 2 { Some(input.flags()) } else { None };
                let before = r.model.clone();
                let res = match flags {
                    None => r.m.unmap_range(r.va(start), n * PAGE, &mut r.alloc),
                    Some(f) => r.m.protect_range(r.va(start), n * PAGE, f, &mut r.alloc),
                };
                if !r.corrupted {
                    match (res, flags) {
                        (Ok(f), None) => {
                            f.ignore();
                            r.model.remove(start, start + n);
                        }
                        (Ok(f), Some(fl)) => {
                            f.ignore();
                            r.model.protect(start, start + n, fl);
                        }
                        (Err(MapError::OutOfFrames), _) => assert_eq!(r.model, before),
                        (Err(e), _) => panic!("unmap/protect: {e}"),
                    }
                    r.check_around(start, start + n);
                }
            }
            3 => {
                let size = if input.u8() & 1 == 0 { PageSizeKind::Size2MiB } else { PageSizeKind::Size1GiB };
                let n = size.bytes() / PAGE;
                let start = input.position() / n * n;
                let res = r.m.promote(r.va(start), size, &mut r.alloc);
                if !r.corrupted {
                    match (r.model.promotable(start, n), size <= max) {
                        (Some(merged), true) => {
                            // Refusals that depend on the table shape, which the model does not
                            // know: the region is already one page (of this size or inside a
                            // larger one), or a 1 GiB region whose 2 MiB parts are still tables.
                            let shape = matches!(
                                res,
                                Err(MapError::NotPromotable {
                                    reason: "already a page of this size"
                                        | "already inside a larger page"
                                        | "an entry is a table: promote it first",
                                    ..
                                })
                            );
                            assert!(res.is_ok() || shape, "{res:?}");
                            if res.is_ok() {
                                r.model.cut(start);
                                r.model.cut(start + n);
                                for (_, v) in r.model.ext.range_mut(start..start + n) {
                                    v.2 = merged;
                                }
                            }
                        }
                        _ => assert!(res.is_err(), "promoted {start:#x} against the model: {res:?}"),
                    }
                    r.check_around(start, start + n);
                }
            }
            4 => {
                let p = input.position();
                r.check(p);
                let _ = r.m.translate(r.va(p));
            }
            5 => {
                let frame = u64::from(input.u16()) % (MEM as u64 / PAGE);
                let idx = u64::from(input.u16()) % 512;
                let value = input.u64();
                r.m.mem_mut().write_entry(pa(frame * PAGE + idx * 8), value).expect("inside the buffer");
                r.corrupted = true;
            }
            _ => {
                let start = input.position();
                let size = match input.u8() % 3 {
                    0 => PageSizeKind::Size4KiB,
                    1 => PageSizeKind::Size2MiB,
                    _ => PageSizeKind::Size1GiB,
                };
                let n = size.bytes() / PAGE;
                let start = start / n * n;
                let phys = start + input.delta();
                let flags = input.flags();
                let res = r.m.map_page(r.va(start), pa(phys * PAGE), size, flags, &mut r.alloc);
                if !r.corrupted {
                    let expect_misaligned = phys % n != 0;
                    match res {
                        Ok(f) => {
                            assert!(size <= max && !expect_misaligned && !r.model.overlaps(start, start + n));
                            f.ignore();
                            r.model.ext.insert(start, (start + n, phys, flags | PageFlags::PRESENT));
                        }
                        Err(MapError::SizeNotAllowed { .. }) => assert!(size > max),
                        Err(MapError::Misaligned { .. }) => assert!(expect_misaligned),
                        Err(MapError::AlreadyMapped { .. }) => assert!(r.model.overlaps(start, start + n)),
                        Err(MapError::OutOfFrames) => {}
                        Err(e) => panic!("map_page: {e}"),
                    }
                    r.check_around(start, start + n);
                }
            }
        }
    }
    if r.corrupted {
        // Everything must still be a value: a full walk and a full unmap.
        let _ = r.m.for_each_leaf(|_| {});
        let _ = r.m.unmap_range(r.va(0), WINDOW_PAGES * PAGE, &mut r.alloc);
        return;
    }
    let mut covered = 0;
    r.m.for_each_leaf(|l| covered += l.size.bytes() / PAGE).expect("the tables are sound");
    assert_eq!(covered, r.model.pages());
    r.m.unmap_range(r.va(0), WINDOW_PAGES * PAGE, &mut r.alloc)
        .expect("unmapping everything needs no frame")
        .ignore();
    assert_eq!(r.alloc.in_use(), 0, "tables leaked");
}
