//! The mapper: builds, walks and edits a page-table hierarchy through [`PhysMem`].
//!
//! Every operation reads and writes single entries, fills a new table completely before
//! linking it, and unlinks a table before freeing it, so a CPU walking the tables concurrently
//! always sees a consistent tree (stale TLB entries aside: that is what [`Flush`] is for).
//! Walks are bounded by the paging depth; no operation allocates from the heap or panics.

use core::marker::PhantomData;

use crate::addr::PhysAddr;
use crate::entry::EntryKind;
use crate::error::{MapError, TranslateError};
use crate::flush::Flush;
use crate::format::{EntryFormat, X86};
use crate::frame::FrameAllocator;
use crate::mem::PhysMem;
use crate::size::{Levels, Page, PageSize, PageSizeKind, PhysFrame};

const ENTRIES: u64 = 512;

/// Bytes one entry at `level` covers.
const fn coverage(level: u8) -> u64 {
    1 << coverage_shift(level)
}

/// log2 of [`coverage`].
const fn coverage_shift(level: u8) -> u32 {
    12 + 9 * (level as u32 - 1)
}

/// A translation found by [`Mapper::translate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation<F> {
    /// Start of the mapped frame.
    pub frame: PhysAddr,
    /// Offset of the address within the page.
    pub offset: u64,
    /// Size of the page.
    pub size: PageSizeKind,
    /// The leaf's flags as limited by the tables above it (R/W and U/S are ANDed, NX ORed).
    pub flags: F,
}

impl<F> Translation<F> {
    /// The physical address the input address translates to.
    pub fn phys_addr(&self) -> PhysAddr {
        PhysAddr::new_masked(self.frame.as_u64() + self.offset)
    }
}

/// One leaf entry, as [`Mapper::for_each_leaf`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf<F> {
    /// First input address it maps (sign-extended for x86).
    pub addr: u64,
    /// Start of the frame.
    pub frame: PhysAddr,
    /// Page size.
    pub size: PageSizeKind,
    /// The leaf's own flags.
    pub flags: F,
}

/// What `map_range` maps: `[start, end)` (linear) to `start + delta` onwards, with `flags`.
struct MapJob<Fl> {
    start: u64,
    end: u64,
    delta: u64,
    flags: Fl,
}

/// Where a walk stands: the table to read next and the fold of the non-leaf entries so far.
struct Walk {
    table: PhysAddr,
    tables: u64,
}

#[derive(Clone, Copy)]
enum Edit<Fl> {
    Unmap,
    Protect(Fl),
}

/// Builds and edits one page-table hierarchy of format `F` ([`X86`] paging by default, or
/// [`crate::Ept`]) rooted at a 4 KiB frame, reached through the accessor `M`.
#[derive(Debug)]
pub struct Mapper<M, F: EntryFormat = X86> {
    mem: M,
    root: PhysAddr,
    levels: Levels,
    max: PageSizeKind,
    format: PhantomData<F>,
}

impl<M: PhysMem> Mapper<M, X86> {
    /// An x86-64 paging mapper for the hierarchy whose root table (PML4 or PML5) is `root`.
    /// Pages up to 1 GiB are used; see [`Mapper::with_max_page_size`].
    pub fn new(mem: M, root: PhysFrame, levels: Levels) -> Self {
        Self::with_format(mem, root, levels)
    }
}

impl<M: PhysMem> Mapper<M, crate::Ept> {
    /// An EPT mapper for the hierarchy whose root table (EPT PML4 or PML5) is `root`; input
    /// addresses are guest-physical.
    pub fn new_ept(mem: M, root: PhysFrame, levels: Levels) -> Self {
        Self::with_format(mem, root, levels)
    }
}

impl<M: PhysMem, F: EntryFormat> Mapper<M, F> {
    /// A mapper of format `F` for the hierarchy rooted at `root` (what [`Mapper::new`] and
    /// [`Mapper::new_ept`] call).
    pub fn with_format(mem: M, root: PhysFrame, levels: Levels) -> Self {
        Mapper { mem, root: root.start_address(), levels, max: PageSizeKind::Size1GiB, format: PhantomData }
    }

    /// Limits the page sizes `map_range`, `map_page` and `promote` use (2 MiB where the CPU
    /// lacks 1 GiB pages, CPUID.80000001H:EDX.PDPE1GB).
    #[must_use]
    pub fn with_max_page_size(mut self, max: PageSizeKind) -> Self {
        self.max = max;
        self
    }

    /// The root table.
    pub fn root(&self) -> PhysFrame {
        PhysFrame::containing_address(self.root)
    }

    /// The paging depth.
    pub fn levels(&self) -> Levels {
        self.levels
    }

    /// The largest page size this mapper creates.
    pub fn max_page_size(&self) -> PageSizeKind {
        self.max
    }

    /// The memory accessor.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The memory accessor, mutably.
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// Gives the accessor back.
    pub fn into_mem(self) -> M {
        self.mem
    }

    fn width(&self) -> u32 {
        self.levels.va_bits()
    }

    fn root_level(&self) -> u8 {
        self.levels.root_level()
    }

    fn ext(&self, linear: u64) -> u64 {
        F::external(linear, self.width())
    }

    /// The address without sign extension, or `None` if the hierarchy cannot translate it.
    fn linear(&self, addr: u64) -> Option<u64> {
        let width = self.width();
        let lin = addr & ((1u64 << width) - 1);
        (F::external(lin, width) == addr).then_some(lin)
    }

    fn linear_range(&self, start: F::Addr, len: u64) -> Result<(u64, u64), MapError> {
        let addr = F::addr_bits(start);
        for value in [addr, len] {
            if value % 4096 != 0 {
                return Err(MapError::Misaligned { value, align: 4096 });
            }
        }
        let bad = MapError::BadRange { start: addr, len, bits: self.width() };
        let lin = self.linear(addr).ok_or(bad)?;
        let end = lin.checked_add(len).ok_or(bad)?;
        if !F::range_ok(lin, end, self.width()) {
            return Err(bad);
        }
        Ok((lin, end))
    }

    fn check_flags(flags: F::Flags) -> Result<(), MapError> {
        F::leaf_flags_ok(flags).map_err(|reason| MapError::BadFlags { reason })
    }

    fn check_size(&self, size: PageSizeKind) -> Result<(), MapError> {
        if size > self.max {
            return Err(MapError::SizeNotAllowed { size, max: self.max });
        }
        Ok(())
    }

    fn entry_addr(table: PhysAddr, index: u64) -> PhysAddr {
        PhysAddr::new_masked(table.as_u64() + 8 * index)
    }

    fn index(lin: u64, level: u8) -> u64 {
        (lin >> (12 + 9 * (level as u32 - 1))) & (ENTRIES - 1)
    }

    /// Maps one page of `size` at `addr` to `frame`. Fails with `AlreadyMapped` if any part
    /// of the page is mapped.
    #[inline]
    pub fn map_page(
        &mut self,
        addr: F::Addr,
        frame: PhysAddr,
        size: PageSizeKind,
        flags: F::Flags,
        alloc: &mut impl FrameAllocator,
    ) -> Result<Flush, MapError> {
        self.check_size(size)?;
        Self::check_flags(flags)?;
        let bytes = size.bytes();
        let addr_bits = F::addr_bits(addr);
        for value in [addr_bits, frame.as_u64()] {
            if value % bytes != 0 {
                return Err(MapError::Misaligned { value, align: bytes });
            }
        }
        let (lin, _) = self.linear_range(addr, bytes)?;
        if frame.checked_add(bytes).is_none() {
            return Err(MapError::PhysOutOfRange { start: frame.as_u64(), len: bytes });
        }
        self.map_one(lin, frame, size, flags, alloc)?;
        Ok(Flush::none())
    }

    #[inline]
    fn map_one(
        &mut self,
        lin: u64,
        frame: PhysAddr,
        size: PageSizeKind,
        flags: F::Flags,
        alloc: &mut impl FrameAllocator,
    ) -> Result<(), MapError> {
        // Unrolled like `translate`: constant levels make each step's index and checks cheap.
        let target = size.level();
        let mut table = self.root;
        if self.levels == Levels::Five {
            table = self.descend::<5>(lin, table, alloc)?;
        }
        table = self.descend::<4>(lin, table, alloc)?;
        if target < 3 {
            table = self.descend::<3>(lin, table, alloc)?;
        }
        if target < 2 {
            table = self.descend::<2>(lin, table, alloc)?;
        }
        let ea = Self::entry_addr(table, Self::index(lin, target));
        let raw = self.mem.read_entry(ea)?;
        if F::is_present(raw) {
            return Err(MapError::AlreadyMapped { addr: self.ext(lin), level: target });
        }
        self.mem.write_entry(ea, F::page(frame, size, flags))?;
        Ok(())
    }

    /// One level of [`Mapper::map_one`] above the leaf: the table the entry for `lin` in
    /// `table` points to, created (zeroed, then linked) if the entry is not present.
    #[inline(always)]
    fn descend<const LEVEL: u8>(
        &mut self,
        lin: u64,
        table: PhysAddr,
        alloc: &mut impl FrameAllocator,
    ) -> Result<PhysAddr, MapError> {
        let ea = Self::entry_addr(table, Self::index(lin, LEVEL));
        let raw = self.mem.read_entry(ea)?;
        if let Some(t) = F::next_table(raw, LEVEL) {
            return Ok(t);
        }
        match F::decode(raw, LEVEL)? {
            EntryKind::Table(t) => Ok(t),
            EntryKind::Page { .. } => {
                let at = lin & !(coverage(LEVEL) - 1);
                Err(MapError::AlreadyMapped { addr: self.ext(at), level: LEVEL })
            }
            EntryKind::NotPresent => self.new_table(ea, alloc),
        }
    }

    /// Allocates and zeroes a table and links it at `ea`; returns it.
    fn new_table(&mut self, ea: PhysAddr, alloc: &mut impl FrameAllocator) -> Result<PhysAddr, MapError> {
        let new = alloc.allocate_frame().ok_or(MapError::OutOfFrames)?;
        let t = new.start_address();
        if let Err(e) = self.mem.zero_frame(t) {
            alloc.deallocate_frame(new);
            return Err(e.into());
        }
        self.mem.write_entry(ea, F::table(t))?;
        Ok(t)
    }

    /// Maps `[start, start + len)` to `[phys, phys + len)` with the fewest entries: at each
    /// step the largest page (up to the mapper's limit) that the virtual and physical
    /// addresses are both aligned to and that fits in what is left.
    ///
    /// Pages are mapped in address order; the first page found mapped fails the call with
    /// `AlreadyMapped` (or `OutOfFrames` if frames ran out before it). On any error, what this
    /// call had mapped is unmapped again and the tables it created are freed.
    #[inline]
    pub fn map_range(
        &mut self,
        start: F::Addr,
        phys: PhysAddr,
        len: u64,
        flags: F::Flags,
        alloc: &mut impl FrameAllocator,
    ) -> Result<Flush, MapError> {
        let (lin, end) = self.linear_range(start, len)?;
        Self::check_flags(flags)?;
        if len == 0 {
            return Ok(Flush::none());
        }
        if phys.as_u64() % 4096 != 0 {
            return Err(MapError::Misaligned { value: phys.as_u64(), align: 4096 });
        }
        if phys.checked_add(len).is_none() {
            return Err(MapError::PhysOutOfRange { start: phys.as_u64(), len });
        }
        // A range that is one page (the largest allowed size, aligned on both sides) takes
        // the unrolled single-page walk, inlined like `map_page`; it maps nothing unless it
        // succeeds. Longer ranges take the table-at-a-time walk, out of line.
        let single = PageSizeKind::LARGEST_FIRST
            .into_iter()
            .find(|s| *s <= self.max && len == s.bytes() && (lin | phys.as_u64()) & (len - 1) == 0);
        let (result, done) = match single {
            Some(size) => (self.map_one(lin, phys, size, flags, alloc), lin),
            None => self.map_many(lin, end, phys, flags, alloc),
        };
        if let Err(e) = result {
            self.undo_map(lin, done, end, e, alloc);
            return Err(e);
        }
        Ok(Flush::none())
    }

    /// `map_range` of more than one page: maps `[lin, end)` table by table. Returns how far
    /// it got (the first address not mapped) with the result.
    fn map_many(
        &mut self,
        lin: u64,
        end: u64,
        phys: PhysAddr,
        flags: F::Flags,
        alloc: &mut impl FrameAllocator,
    ) -> (Result<(), MapError>, u64) {
        let mut done = lin;
        let root_level = self.root_level();
        let delta = phys.as_u64().wrapping_sub(lin);
        let job = MapJob { start: lin, end, delta, flags };
        let result = self.map_in(self.root, root_level, 0, &job, &mut done, alloc);
        (result, done)
    }

    /// After `map_range` of `[lin, end)` failed with `e` having mapped `[lin, done)`: unmaps
    /// that and frees the tables the call created.
    #[cold]
    fn undo_map(&mut self, lin: u64, done: u64, end: u64, e: MapError, alloc: &mut impl FrameAllocator) {
        // Undo what this call mapped: whole pages in [lin, done), so no split and no
        // frame is needed. Out of frames, the page at `done` lies under the entry whose
        // table could not be made (nothing is mapped there), so including it frees the
        // tables made on the way; after `AlreadyMapped` it must stay as it was.
        let undo_end = match e {
            MapError::OutOfFrames => (done + 4096).min(end),
            _ => done,
        };
        let mut flush = Flush::none();
        // Nothing this call mapped was reported to anyone, so no TLB can hold it unless
        // a CPU walked the tables meanwhile; an undo failure (memory error) is moot.
        let _ = self.edit_range(lin, undo_end, Edit::Unmap, alloc, &mut flush);
        flush.ignore();
    }

    /// Maps `job`'s part of the table at `level` covering `[base, base + 512 * coverage)`:
    /// an entry the range covers whole, at both-aligned addresses and within the size limit,
    /// becomes a leaf; otherwise the walk descends, creating tables. Leaves are written in
    /// address order; `done` is the first address not yet mapped.
    fn map_in(
        &mut self,
        table: PhysAddr,
        level: u8,
        base: u64,
        job: &MapJob<F::Flags>,
        done: &mut u64,
        alloc: &mut impl FrameAllocator,
    ) -> Result<(), MapError> {
        let cover = coverage(level);
        let (start, end) = (job.start.max(base), job.end.min(base + cover * ENTRIES));
        let leaf_size = PageSizeKind::from_level(level).filter(|s| *s <= self.max);
        let shift = coverage_shift(level);
        for idx in (start - base) >> shift..=(end - 1 - base) >> shift {
            let ea = Self::entry_addr(table, idx);
            let e_start = base + idx * cover;
            let raw = self.mem.read_entry(ea)?;
            let whole = job.start <= e_start && e_start + cover <= job.end;
            if let (Some(size), true) = (leaf_size, whole && e_start.wrapping_add(job.delta) % cover == 0) {
                if F::is_present(raw) {
                    return Err(MapError::AlreadyMapped { addr: self.ext(e_start), level });
                }
                let frame = PhysAddr::new_masked(e_start.wrapping_add(job.delta));
                self.mem.write_entry(ea, F::page(frame, size, job.flags))?;
                *done = e_start + cover;
                continue;
            }
            let child = match F::decode(raw, level)? {
                EntryKind::Table(t) => t,
                EntryKind::Page { .. } => {
                    return Err(MapError::AlreadyMapped { addr: self.ext(e_start), level })
                }
                EntryKind::NotPresent => self.new_table(ea, alloc)?,
            };
            self.map_in(child, level - 1, e_start, job, done, alloc)?;
        }
        Ok(())
    }

    /// Unmaps every page in `[start, start + len)`; holes are skipped. A superpage that
    /// straddles either end is split first (needing frames), so the part outside stays mapped.
    /// Tables left empty are freed.
    pub fn unmap_range(
        &mut self,
        start: F::Addr,
        len: u64,
        alloc: &mut impl FrameAllocator,
    ) -> Result<Flush, MapError> {
        let (lin, end) = self.linear_range(start, len)?;
        let mut flush = Flush::none();
        self.edit_range(lin, end, Edit::Unmap, alloc, &mut flush)?;
        Ok(flush)
    }

    /// Gives every mapped page in `[start, start + len)` the flags `flags` (the accessed and
    /// dirty bits the CPU set are kept); holes are skipped. A superpage that straddles either
    /// end and would change is split first.
    pub fn protect_range(
        &mut self,
        start: F::Addr,
        len: u64,
        flags: F::Flags,
        alloc: &mut impl FrameAllocator,
    ) -> Result<Flush, MapError> {
        let (lin, end) = self.linear_range(start, len)?;
        Self::check_flags(flags)?;
        let mut flush = Flush::none();
        self.edit_range(lin, end, Edit::Protect(flags), alloc, &mut flush)?;
        Ok(flush)
    }

    /// Splits, at both ends, superpages that straddle the range, then edits the range. Splits
    /// keep every translation, so running out of frames leaves the mappings as they were.
    fn edit_range(
        &mut self,
        lin: u64,
        end: u64,
        op: Edit<F::Flags>,
        alloc: &mut impl FrameAllocator,
        flush: &mut Flush,
    ) -> Result<(), MapError> {
        if lin == end {
            return Ok(());
        }
        self.split_at(lin, op, alloc, flush)?;
        if end < 1u64 << self.width() {
            self.split_at(end, op, alloc, flush)?;
        }
        let root_level = self.root_level();
        self.edit(self.root, root_level, 0, lin, end, op, alloc, flush)
    }

    /// The leaf entry `leaf` (mapping `frame`, `size`, `flags`) as `op` would leave it.
    fn edited(frame: PhysAddr, size: PageSizeKind, flags: F::Flags, op: Edit<F::Flags>) -> Option<u64> {
        match op {
            Edit::Unmap => None,
            Edit::Protect(new) => Some(F::page(frame, size, F::with_hw_bits_of(new, flags))),
        }
    }

    /// Splits every superpage that contains `boundary` without starting at it (unless the
    /// edit would not change it).
    fn split_at(
        &mut self,
        boundary: u64,
        op: Edit<F::Flags>,
        alloc: &mut impl FrameAllocator,
        flush: &mut Flush,
    ) -> Result<(), MapError> {
        let mut table = self.root;
        let mut level = self.root_level();
        while level > 1 {
            let ea = Self::entry_addr(table, Self::index(boundary, level));
            let raw = self.mem.read_entry(ea)?;
            table = match F::decode(raw, level)? {
                EntryKind::NotPresent => return Ok(()),
                EntryKind::Table(t) => t,
                EntryKind::Page { frame, size, flags } => {
                    let cover = coverage(level);
                    let start = boundary & !(cover - 1);
                    if start == boundary || Self::edited(frame, size, flags, op) == Some(raw) {
                        return Ok(());
                    }
                    let child = self.split(ea, level, frame, flags, alloc)?;
                    flush.add(self.ext(start), self.ext(start + cover - 1), F::is_global(flags));
                    flush.set_structure();
                    child
                }
            };
            level -= 1;
        }
        Ok(())
    }

    /// Replaces the superpage leaf at `ea` (level `level`) by a table of 512 next-smaller
    /// leaves with the same frames and flags. Returns the new table.
    fn split(
        &mut self,
        ea: PhysAddr,
        level: u8,
        frame: PhysAddr,
        flags: F::Flags,
        alloc: &mut impl FrameAllocator,
    ) -> Result<PhysAddr, MapError> {
        let small = PageSizeKind::from_level(level - 1).unwrap_or(PageSizeKind::Size4KiB);
        let new = alloc.allocate_frame().ok_or(MapError::OutOfFrames)?;
        let t = new.start_address();
        for i in 0..ENTRIES {
            let f = PhysAddr::new_masked(frame.as_u64() + i * small.bytes());
            if let Err(e) = self.mem.write_entry(Self::entry_addr(t, i), F::page(f, small, flags)) {
                alloc.deallocate_frame(new);
                return Err(e.into());
            }
        }
        self.mem.write_entry(ea, F::table(t))?;
        Ok(t)
    }

    #[allow(clippy::too_many_arguments)]
    fn edit(
        &mut self,
        table: PhysAddr,
        level: u8,
        base: u64,
        start: u64,
        end: u64,
        op: Edit<F::Flags>,
        alloc: &mut impl FrameAllocator,
        flush: &mut Flush,
    ) -> Result<(), MapError> {
        let cover = coverage(level);
        let first = (start - base) >> coverage_shift(level);
        let last = (end - 1 - base) >> coverage_shift(level);
        for idx in first..=last {
            let ea = Self::entry_addr(table, idx);
            let (e_start, e_end) = (base + idx * cover, base + idx * cover + cover);
            let (s, e) = (start.max(e_start), end.min(e_end));
            let raw = self.mem.read_entry(ea)?;
            match F::decode(raw, level)? {
                EntryKind::NotPresent => {}
                EntryKind::Page { frame, size, flags } => {
                    let new = Self::edited(frame, size, flags, op);
                    if new == Some(raw) {
                        continue;
                    }
                    let global = F::is_global(flags) || new.is_some_and(|n| Self::raw_global(n, level));
                    if s == e_start && e == e_end {
                        self.mem.write_entry(ea, new.unwrap_or(0))?;
                        flush.add(self.ext(e_start), self.ext(e_end - 1), global);
                    } else {
                        // Only reached if `split_at` did not split it (it always does).
                        let child = self.split(ea, level, frame, flags, alloc)?;
                        flush.set_structure();
                        flush.add(self.ext(e_start), self.ext(e_end - 1), global);
                        self.edit(child, level - 1, e_start, s, e, op, alloc, flush)?;
                        self.free_if_empty(ea, child, op, alloc, flush)?;
                    }
                }
                EntryKind::Table(child) => {
                    self.edit(child, level - 1, e_start, s, e, op, alloc, flush)?;
                    self.free_if_empty(ea, child, op, alloc, flush)?;
                }
            }
        }
        Ok(())
    }

    fn raw_global(raw: u64, level: u8) -> bool {
        matches!(F::decode(raw, level), Ok(EntryKind::Page { flags, .. }) if F::is_global(flags))
    }

    fn free_if_empty(
        &mut self,
        ea: PhysAddr,
        child: PhysAddr,
        op: Edit<F::Flags>,
        alloc: &mut impl FrameAllocator,
        flush: &mut Flush,
    ) -> Result<(), MapError> {
        if !matches!(op, Edit::Unmap) {
            return Ok(());
        }
        for i in 0..ENTRIES {
            if self.mem.read_entry(Self::entry_addr(child, i))? != 0 {
                return Ok(());
            }
        }
        self.mem.write_entry(ea, 0)?;
        alloc.deallocate_frame(PhysFrame::containing_address(child));
        // The leaves under it were cleared (and added to the range) or never existed; what
        // is owed for the table itself is a paging-structure-cache invalidation.
        flush.set_structure();
        Ok(())
    }

    /// Replaces the table of 512 pages under the `size`-aligned `addr` by one page of `size`:
    /// the entries must be leaves of the next-smaller size with contiguous frames starting at
    /// a `size`-aligned frame and equal flags (accessed and dirty are ORed). The table is given
    /// back to `alloc`.
    pub fn promote(
        &mut self,
        addr: F::Addr,
        size: PageSizeKind,
        alloc: &mut impl FrameAllocator,
    ) -> Result<Flush, MapError> {
        self.check_size(size)?;
        let addr_bits = F::addr_bits(addr);
        let not = |reason| MapError::NotPromotable { addr: addr_bits, reason };
        if size == PageSizeKind::Size4KiB {
            return Err(not("4 KiB is the smallest page"));
        }
        if addr_bits % size.bytes() != 0 {
            return Err(MapError::Misaligned { value: addr_bits, align: size.bytes() });
        }
        let (lin, _) = self.linear_range(addr, size.bytes())?;
        let target = size.level();
        let mut table = self.root;
        let mut level = self.root_level();
        let ea = loop {
            let ea = Self::entry_addr(table, Self::index(lin, level));
            let raw = self.mem.read_entry(ea)?;
            let kind = F::decode(raw, level)?;
            if level == target {
                break ea;
            }
            table = match kind {
                EntryKind::Table(t) => t,
                EntryKind::NotPresent => return Err(MapError::NotMapped { addr: addr_bits, level }),
                EntryKind::Page { .. } => return Err(not("already inside a larger page")),
            };
            level -= 1;
        };
        let child = match F::decode(self.mem.read_entry(ea)?, target)? {
            EntryKind::Table(t) => t,
            EntryKind::NotPresent => return Err(MapError::NotMapped { addr: addr_bits, level: target }),
            EntryKind::Page { .. } => return Err(not("already a page of this size")),
        };
        let small = coverage(target - 1);
        let mut first: Option<(PhysAddr, F::Flags)> = None;
        let mut merged = None;
        for i in 0..ENTRIES {
            match F::decode(self.mem.read_entry(Self::entry_addr(child, i))?, target - 1)? {
                EntryKind::Page { frame, flags, .. } => match first {
                    None => {
                        if frame.as_u64() % size.bytes() != 0 {
                            return Err(not("the first frame is not aligned to the superpage size"));
                        }
                        first = Some((frame, flags));
                        merged = Some(flags);
                    }
                    Some((f0, fl0)) => {
                        if frame.as_u64() != f0.as_u64() + i * small {
                            return Err(not("frames are not contiguous"));
                        }
                        if F::without_hw_bits(flags) != F::without_hw_bits(fl0) {
                            return Err(not("flags differ"));
                        }
                        merged = merged.map(|m| F::with_hw_bits_of(m, flags));
                    }
                },
                EntryKind::NotPresent => return Err(not("an entry is not present")),
                EntryKind::Table(_) => return Err(not("an entry is a table: promote it first")),
            }
        }
        let (Some((frame, _)), Some(flags)) = (first, merged) else {
            return Err(not("an entry is not present"));
        };
        self.mem.write_entry(ea, F::page(frame, size, flags))?;
        alloc.deallocate_frame(PhysFrame::containing_address(child));
        let mut flush = Flush::none();
        flush.add(self.ext(lin), self.ext(lin + size.bytes() - 1), F::is_global(flags));
        flush.set_structure();
        Ok(flush)
    }

    /// Walks the tables for `addr`: the frame, page size and effective flags, or the fault the
    /// CPU would take (not present at some level, or reserved bits).
    #[inline]
    pub fn translate(&self, addr: F::Addr) -> Result<Translation<F::Flags>, TranslateError> {
        let addr_bits = F::addr_bits(addr);
        let lin = self
            .linear(addr_bits)
            .ok_or(TranslateError::BadAddress { addr: addr_bits, bits: self.width() })?;
        // Unrolled: each step's level is a constant, so its index shift and the decode of
        // its entry fold to a few instructions.
        let mut w = Walk { table: self.root, tables: F::TABLES_NEUTRAL };
        if self.levels == Levels::Five {
            if let Some(t) = self.step::<5>(lin, addr_bits, &mut w)? {
                return Ok(t);
            }
        }
        if let Some(t) = self.step::<4>(lin, addr_bits, &mut w)? {
            return Ok(t);
        }
        if let Some(t) = self.step::<3>(lin, addr_bits, &mut w)? {
            return Ok(t);
        }
        if let Some(t) = self.step::<2>(lin, addr_bits, &mut w)? {
            return Ok(t);
        }
        match self.step::<1>(lin, addr_bits, &mut w)? {
            Some(t) => Ok(t),
            // A format never decodes a level-1 entry as a table; treat it as the CPU would
            // treat an unusable entry.
            None => Err(TranslateError::NotMapped { addr: addr_bits, level: 1 }),
        }
    }

    /// One level of [`Mapper::translate`]: the translation if the entry at `LEVEL` is a leaf,
    /// `None` after descending into the table it points to.
    #[inline(always)]
    fn step<const LEVEL: u8>(
        &self,
        lin: u64,
        addr_bits: u64,
        w: &mut Walk,
    ) -> Result<Option<Translation<F::Flags>>, TranslateError> {
        let raw = self.mem.read_entry(Self::entry_addr(w.table, Self::index(lin, LEVEL)))?;
        // Valid non-leaf entries skip the full decode.
        if let Some(t) = F::next_table(raw, LEVEL) {
            w.tables = F::fold_table(w.tables, raw);
            w.table = t;
            return Ok(None);
        }
        match F::decode(raw, LEVEL)? {
            EntryKind::Page { frame, size, flags } => {
                let flags = F::restrict(flags, w.tables);
                Ok(Some(Translation { frame, offset: lin & (size.bytes() - 1), size, flags }))
            }
            // Not reached for formats whose `next_table` agrees with `decode` (a proptest
            // checks it); descend all the same.
            EntryKind::Table(t) if LEVEL > 1 => {
                w.tables = F::fold_table(w.tables, raw);
                w.table = t;
                Ok(None)
            }
            EntryKind::NotPresent | EntryKind::Table(_) => {
                Err(TranslateError::NotMapped { addr: addr_bits, level: LEVEL })
            }
        }
    }

    /// Calls `f` for every leaf, in address order (x86 upper-half addresses last).
    pub fn for_each_leaf(&self, mut f: impl FnMut(Leaf<F::Flags>)) -> Result<(), TranslateError> {
        self.visit(self.root, self.root_level(), 0, &mut f)
    }

    fn visit(
        &self,
        table: PhysAddr,
        level: u8,
        base: u64,
        f: &mut impl FnMut(Leaf<F::Flags>),
    ) -> Result<(), TranslateError> {
        for i in 0..ENTRIES {
            let raw = self.mem.read_entry(Self::entry_addr(table, i))?;
            let at = base + i * coverage(level);
            match F::decode(raw, level)? {
                EntryKind::NotPresent => {}
                EntryKind::Page { frame, size, flags } => f(Leaf { addr: self.ext(at), frame, size, flags }),
                EntryKind::Table(t) if level > 1 => self.visit(t, level - 1, at, f)?,
                EntryKind::Table(_) => {}
            }
        }
        Ok(())
    }
}

impl<M: PhysMem> Mapper<M, X86> {
    /// Maps `page` to `frame` (both of size `S`) with `flags`.
    #[inline]
    pub fn map<S: PageSize>(
        &mut self,
        page: Page<S>,
        frame: PhysFrame<S>,
        flags: crate::PageFlags,
        alloc: &mut impl FrameAllocator,
    ) -> Result<Flush, MapError> {
        self.map_page(page.start_address(), frame.start_address(), S::KIND, flags, alloc)
    }
}

#[cfg(test)]
#[path = "mapper_tests.rs"]
mod tests;
