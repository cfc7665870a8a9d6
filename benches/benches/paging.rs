//! Page tables (`pvio_paging`) against the `x86_64` crate's `OffsetPageTable`, same process,
//! same run, same memory: tables live in one 4 MiB host buffer that both mappers reach at a
//! fixed offset (pvio through `OffsetMem`, `x86_64` through `OffsetPageTable`).
//!
//! - **map 1 GiB, 4 KiB pages**: pvio `map_range` limited to 4 KiB pages, and pvio `map_page`
//!   per page (the x86_64 crate's shape of work), against 262 144 `map_to::<Size4KiB>`.
//! - **map 1 GiB, 2 MiB pages**: `map_range` limited to 2 MiB against 512 `map_to::<Size2MiB>`.
//! - **map 1 GiB, 1 GiB page**: `map_range` against one `map_to::<Size1GiB>`.
//! - **translate**: random addresses in the 4 KiB- and 2 MiB-mapped GiB, `Mapper::translate`
//!   against `Translate::translate_addr`, ns/op, each called through an `#[inline(never)]`
//!   wrapper so both are measured as calls, not as whatever the optimiser makes of them inlined
//!   into the timing loop (which varied by 2x with unrelated code changes). The map rows call
//!   the mappers directly: both `map_page` and `map_to` inline into the loop.
//!
//! The `x86_64` crate checks nothing at run time that pvio checks: no bounds on the physical
//! memory accessor (pvio checks every access against `OffsetMem`'s range), no reserved bits, no
//! canonical-range checks beyond its address types. Without LTO its `frame_to_pointer` is an
//! out-of-line call per level (the crate does not mark it `#[inline]`); that is how it ships.
//!
//! Entries written: pvio's are counted by wrapping the accessor in `CountingMem` (one extra,
//! untimed run; zeroing a new table counts 512); the x86_64 crate's are computed the same way
//! (leaves + 513 per table it creates: 512 zeroed entries and the link).
//!
//! Runs are interleaved; tables give medians and the median of per-run ratios ("paired").
//! `cargo bench -p pvio-benches --bench paging` measures 1 GiB; without `--bench` a smoke run
//! maps 64 MiB once.

use std::hint::black_box;
use std::time::Instant;

use pvio_benches::{cpu_model, median, paired_ratio, pin_to_cpu};
use pvio_paging::{
    CountingMem, FrameAllocator, Levels, Mapper, OffsetMem, PageFlags, PageSizeKind, PageTable, PhysAddr,
    PhysFrame, VirtAddr,
};
use x86_64::structures::paging as x;
use x86_64::structures::paging::{Mapper as _, Translate as _};

/// Tables: 1024 frames (4 MiB), physical 0.. of the buffer; the root is frame 0.
const TABLES: usize = 1024;
const BASE: u64 = 0x40_0000_0000;
const PHYS: u64 = 0x1_0000_0000;

struct Bump {
    next: u64,
}

impl FrameAllocator for Bump {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        (self.next < (TABLES as u64) * 4096).then(|| {
            self.next += 4096;
            PhysFrame::containing_address(PhysAddr::new(self.next - 4096).unwrap())
        })
    }
    fn deallocate_frame(&mut self, _frame: PhysFrame) {}
}

// SAFETY: every frame handed out is a distinct, unused 4 KiB frame of the table buffer.
unsafe impl x::FrameAllocator<x::Size4KiB> for Bump {
    fn allocate_frame(&mut self) -> Option<x::PhysFrame> {
        (self.next < (TABLES as u64) * 4096).then(|| {
            self.next += 4096;
            x::PhysFrame::containing_address(x86_64::PhysAddr::new(self.next - 4096))
        })
    }
}

struct Tables {
    buf: Vec<PageTable>,
}

impl Tables {
    fn new() -> Self {
        Tables { buf: vec![PageTable::new(); TABLES] }
    }

    fn reset(&mut self) {
        for t in &mut self.buf {
            *t = PageTable::new();
        }
    }

    fn base(&mut self) -> usize {
        self.buf.as_mut_ptr().expose_provenance()
    }

    fn pvio(&mut self) -> Mapper<OffsetMem> {
        let base = self.base();
        // SAFETY: physical [0, 4 MiB) is `buf` (exposed above); nothing else accesses `buf`
        // while the mapper lives (the caller holds `&mut self` for that long).
        let mem = unsafe { OffsetMem::new(base, 0, (TABLES * 4096) as u64) };
        Mapper::new(mem, PhysFrame::containing_address(PhysAddr::new(0).unwrap()), Levels::Four)
    }

    fn x86(&mut self) -> x::OffsetPageTable<'_> {
        let base = self.base() as u64;
        let root = self.buf.as_mut_ptr().cast::<x::PageTable>();
        // SAFETY: `x86_64::PageTable` and ours are both 512 u64 entries, 4 KiB aligned, and
        // frame 0 of the buffer is initialised; `&mut self` makes the borrow exclusive.
        let root = unsafe { &mut *root };
        // SAFETY: physical memory (the table buffer) is mapped at offset `base`, and `root` is
        // its frame 0.
        unsafe { x::OffsetPageTable::new(root, x86_64::VirtAddr::new(base)) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Row {
    PvioRange4K,
    PvioPages4K,
    X86Pages4K,
    PvioRange2M,
    X86Pages2M,
    PvioRange1G,
    X86Page1G,
}

const ROWS: [Row; 7] = [
    Row::PvioRange4K,
    Row::PvioPages4K,
    Row::X86Pages4K,
    Row::PvioRange2M,
    Row::X86Pages2M,
    Row::PvioRange1G,
    Row::X86Page1G,
];

fn page_size(row: Row) -> PageSizeKind {
    match row {
        Row::PvioRange4K | Row::PvioPages4K | Row::X86Pages4K => PageSizeKind::Size4KiB,
        Row::PvioRange2M | Row::X86Pages2M => PageSizeKind::Size2MiB,
        Row::PvioRange1G | Row::X86Page1G => PageSizeKind::Size1GiB,
    }
}

/// Maps `len` bytes as `row` says; returns the seconds taken.
fn map(t: &mut Tables, row: Row, len: u64) -> f64 {
    t.reset();
    let mut a = Bump { next: 4096 };
    let size = page_size(row);
    let start = Instant::now();
    match row {
        Row::PvioRange4K | Row::PvioRange2M | Row::PvioRange1G => {
            let mut m = t.pvio().with_max_page_size(size);
            let va = VirtAddr::new(BASE).unwrap();
            m.map_range(va, PhysAddr::new(PHYS).unwrap(), len, PageFlags::WRITABLE, &mut a).unwrap().ignore();
        }
        Row::PvioPages4K => {
            let mut m = t.pvio();
            for off in (0..len).step_by(4096) {
                let va = VirtAddr::new(BASE + off).unwrap();
                let pa = PhysAddr::new(PHYS + off).unwrap();
                m.map_page(va, pa, PageSizeKind::Size4KiB, PageFlags::WRITABLE, &mut a).unwrap().ignore();
            }
        }
        Row::X86Pages4K | Row::X86Pages2M | Row::X86Page1G => {
            let mut m = t.x86();
            let flags = x::PageTableFlags::PRESENT | x::PageTableFlags::WRITABLE;
            macro_rules! each {
                ($s:ty) => {
                    for off in (0..len).step_by(<$s as x::PageSize>::SIZE as usize) {
                        let page = x::Page::<$s>::containing_address(x86_64::VirtAddr::new(BASE + off));
                        let frame = x::PhysFrame::<$s>::containing_address(x86_64::PhysAddr::new(PHYS + off));
                        // SAFETY: the frames are never accessed; only the tables are written.
                        unsafe { m.map_to(page, frame, flags, &mut a) }.unwrap().ignore();
                    }
                };
            }
            match size {
                PageSizeKind::Size4KiB => each!(x::Size4KiB),
                PageSizeKind::Size2MiB => each!(x::Size2MiB),
                PageSizeKind::Size1GiB => each!(x::Size1GiB),
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(&t.buf);
    secs
}

/// Entries written by `row` for `len` bytes.
fn entries(t: &mut Tables, row: Row, len: u64) -> u64 {
    let size = page_size(row);
    let leaves = len / size.bytes();
    match row {
        Row::X86Pages4K | Row::X86Pages2M | Row::X86Page1G => {
            // Tables below the root the crate creates for one aligned GiB: PDPT (+ PD (+ PTs)).
            let tables = match size {
                PageSizeKind::Size4KiB => 2 + len.div_ceil(2 << 20),
                PageSizeKind::Size2MiB => 2,
                PageSizeKind::Size1GiB => 1,
            };
            leaves + 513 * tables
        }
        _ => {
            t.reset();
            let base = t.base();
            // SAFETY: as in `Tables::pvio`.
            let mem = CountingMem::new(unsafe { OffsetMem::new(base, 0, (TABLES * 4096) as u64) });
            let root = PhysFrame::containing_address(PhysAddr::new(0).unwrap());
            let mut m = Mapper::new(mem, root, Levels::Four).with_max_page_size(size);
            let mut a = Bump { next: 4096 };
            let va = VirtAddr::new(BASE).unwrap();
            if row == Row::PvioPages4K {
                for off in (0..len).step_by(4096) {
                    let v = VirtAddr::new(BASE + off).unwrap();
                    let p = PhysAddr::new(PHYS + off).unwrap();
                    m.map_page(v, p, size, PageFlags::WRITABLE, &mut a).unwrap().ignore();
                }
            } else {
                m.map_range(va, PhysAddr::new(PHYS).unwrap(), len, PageFlags::WRITABLE, &mut a)
                    .unwrap()
                    .ignore();
            }
            m.into_mem().writes
        }
    }
}

fn addresses(len: u64, n: usize) -> Vec<u64> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            BASE + (s % len) / 8 * 8
        })
        .collect()
}

/// One `x86_64` translation, out of line (as [`pvio_translate`]), so both sides are measured
/// as a call rather than as whatever the optimiser makes of them inside the timing loop.
#[inline(never)]
fn x86_translate(m: &x::OffsetPageTable<'_>, a: u64) -> u64 {
    m.translate_addr(x86_64::VirtAddr::new(a)).unwrap().as_u64()
}

/// One pvio translation, out of line.
#[inline(never)]
fn pvio_translate(m: &Mapper<OffsetMem>, a: u64) -> u64 {
    m.translate(VirtAddr::new(a).unwrap()).unwrap().phys_addr().as_u64()
}

/// ns per translation of `addrs` after mapping with 4 KiB or 2 MiB pages: (pvio, x86_64).
fn translate(t: &mut Tables, size: PageSizeKind, len: u64, addrs: &[u64], reps: usize) -> (f64, f64) {
    let row = if size == PageSizeKind::Size4KiB { Row::PvioRange4K } else { Row::PvioRange2M };
    map(t, row, len);
    let n = (addrs.len() * reps) as f64;
    let xm = t.x86();
    let start = Instant::now();
    let mut x86_sum = 0u64;
    for _ in 0..reps {
        for &a in addrs {
            x86_sum = x86_sum.wrapping_add(x86_translate(&xm, a));
        }
    }
    let x86 = start.elapsed().as_secs_f64() * 1e9 / n;
    let m = t.pvio();
    let start = Instant::now();
    let mut sum = 0u64;
    for _ in 0..reps {
        for &a in addrs {
            sum = sum.wrapping_add(pvio_translate(&m, a));
        }
    }
    let pvio = start.elapsed().as_secs_f64() * 1e9 / n;
    assert_eq!(black_box(x86_sum), black_box(sum), "the two mappers disagree");
    (pvio, x86)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (len, runs, reps) = if full { (1u64 << 30, 31, 50) } else { (64u64 << 20, 1, 2) };
    let pinned = pin_to_cpu(0);
    println!("paging: map {} MiB and translate; cpu {} (pinned: {pinned})", len >> 20, cpu_model());
    let mut t = Tables::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); ROWS.len()];
    for run in 0..runs {
        for k in 0..ROWS.len() {
            let i = (k + run) % ROWS.len();
            times[i].push(map(&mut t, ROWS[i], len));
        }
    }
    println!("\n{:<34} {:>12} {:>16}", "map", "median µs", "entries written");
    let mut med = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let m = median(&mut times[i].clone()) * 1e6;
        med.push(m);
        let e = entries(&mut t, *row, len);
        println!("{:<34} {:>12.2} {:>16}", format!("{row:?}"), m, e);
    }
    let ratio = |a: Row, b: Row| {
        let (ia, ib) =
            (ROWS.iter().position(|r| *r == a).unwrap(), ROWS.iter().position(|r| *r == b).unwrap());
        paired_ratio(&times[ia], &times[ib])
    };
    println!("\nratios (time, paired median; < 1 means pvio is faster; goal <= 1.0):");
    for (a, b) in [
        (Row::PvioRange4K, Row::X86Pages4K),
        (Row::PvioPages4K, Row::X86Pages4K),
        (Row::PvioRange2M, Row::X86Pages2M),
        (Row::PvioRange1G, Row::X86Page1G),
        (Row::PvioRange2M, Row::PvioRange4K),
    ] {
        println!("  {:<14} / {:<14} {:>7.3}x", format!("{a:?}"), format!("{b:?}"), ratio(a, b));
    }
    let addrs = addresses(len, 4096);
    println!("\n{:<34} {:>10} {:>10} {:>8}", "translate (random, ns/op)", "pvio", "x86_64", "ratio");
    for size in [PageSizeKind::Size4KiB, PageSizeKind::Size2MiB] {
        let mut p = Vec::new();
        let mut x = Vec::new();
        for _ in 0..runs {
            let (a, b) = translate(&mut t, size, len, &addrs, reps);
            p.push(a);
            x.push(b);
        }
        let r = paired_ratio(&p, &x);
        println!(
            "{:<34} {:>10.2} {:>10.2} {:>7.3}x",
            format!("{size:?} pages"),
            median(&mut p),
            median(&mut x),
            r
        );
    }
    if !full {
        println!("  (smoke run: pass --bench, as `cargo bench` does, for the real measurement)");
    }
}
