//! Guest memory for the pair: one region holding the rings, the grant table and the packet
//! buffers, on 4 KiB pages (a memfd), on 2 MiB pages (hugetlbfs memfd, or anonymous memory with
//! transparent huge pages), plus the two "hypervisor" services the paper's slower
//! configurations need: per-packet remapping of a guest page into the back end (the analogue of
//! grant map/unmap done with `mmap`/`munmap`) and page flipping (a back-end page remapped into
//! the guest's view of its own memory).
//!
//! The raw mappings live here and nowhere else in the example: each is wrapped at once in a
//! [`SharedMem`], the only way the rest of the code touches it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use pvio_grant::{Frame, PAGE_SIZE};
use pvio_ring::SharedMem;

/// Size of a huge page (x86-64 PMD).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// What backs a [`GuestMemory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A memfd on ordinary 4 KiB pages (shareable with another process).
    Memfd4K,
    /// A memfd on hugetlbfs 2 MiB pages (`MFD_HUGETLB`; needs `vm.nr_hugepages`).
    HugeTlb,
    /// Anonymous private memory with `MADV_HUGEPAGE`: transparent huge pages. Usable only
    /// within one process (no descriptor to hand over).
    Thp {
        /// Bytes the kernel reported as backed by huge pages (`AnonHugePages` in
        /// `/proc/self/smaps`) after the region was touched.
        huge_bytes: usize,
    },
}

impl std::fmt::Display for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backing::Memfd4K => write!(f, "memfd, 4 KiB pages"),
            Backing::HugeTlb => write!(f, "memfd on hugetlbfs, 2 MiB pages"),
            Backing::Thp { huge_bytes } => {
                write!(f, "anonymous THP, {} MiB on 2 MiB pages", huge_bytes >> 20)
            }
        }
    }
}

/// One mapping of guest memory: the guest's own view, or a back end's view of the same memfd.
#[derive(Debug)]
pub struct GuestMemory {
    fd: Option<OwnedFd>,
    /// Start of the mapping: page-aligned, `len` bytes, unmapped on drop.
    base: NonNull<u8>,
    len: usize,
    backing: Backing,
}

// SAFETY: the mapping is plain memory reached only through `SharedMem` (atomic accesses) and
// the `mmap` calls below, which the kernel serializes; the pointer is not tied to a thread.
unsafe impl Send for GuestMemory {}
// SAFETY: as for `Send`; `&GuestMemory` hands out only `SharedMem` views.
unsafe impl Sync for GuestMemory {}

fn check_len(len: usize, unit: usize) -> io::Result<()> {
    if len == 0 || len % unit != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "length is not a whole number of pages"));
    }
    Ok(())
}

fn memfd(name: &str, flags: libc::c_uint, len: usize) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(len as u64)?;
    Ok(file.into())
}

/// `mmap` of `len` bytes of `fd` at `offset` (shared, read-write unless `read_only`), or
/// anonymous private memory with `fd == None`.
fn map(fd: Option<BorrowedFd<'_>>, offset: usize, len: usize, read_only: bool) -> io::Result<NonNull<u8>> {
    let prot = if read_only { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_WRITE };
    let (flags, raw) = match fd {
        Some(fd) => (libc::MAP_SHARED, fd.as_raw_fd()),
        None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
    };
    // SAFETY: a fresh mapping chosen by the kernel (no MAP_FIXED): no existing memory changes.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, raw, offset as libc::off_t) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))
}

impl GuestMemory {
    /// `len` bytes (whole 4 KiB pages) of a new memfd, mapped shared.
    pub fn new_4k(name: &str, len: usize) -> io::Result<Self> {
        check_len(len, PAGE_SIZE)?;
        let fd = memfd(name, 0, len)?;
        let base = map(Some(fd.as_fd()), 0, len, false)?;
        Ok(GuestMemory { fd: Some(fd), base, len, backing: Backing::Memfd4K })
    }

    /// `len` bytes (whole 2 MiB pages) on huge pages: a hugetlbfs memfd if the system has huge
    /// pages reserved, else anonymous memory with transparent huge pages if the kernel backs it
    /// with at least one. The error says why neither worked.
    pub fn new_huge(name: &str, len: usize) -> Result<Self, String> {
        check_len(len, HUGE_PAGE_SIZE).map_err(|e| e.to_string())?;
        let hugetlb = match memfd(name, libc::MFD_HUGETLB, len) {
            Ok(fd) => match map(Some(fd.as_fd()), 0, len, false) {
                Ok(base) => {
                    let m = GuestMemory { fd: Some(fd), base, len, backing: Backing::HugeTlb };
                    // Touch every huge page now: with none reserved the fault would be SIGBUS.
                    match m.mem().fill(0, len, 0) {
                        Ok(()) => return Ok(m),
                        Err(e) => e.to_string(),
                    }
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        match Self::new_thp(len) {
            Ok(m) => Ok(m),
            Err(thp) => Err(format!("hugetlbfs memfd: {hugetlb}; transparent huge pages: {thp}")),
        }
    }

    fn new_thp(len: usize) -> Result<Self, String> {
        // Over-allocate by one huge page so the region can start on a 2 MiB boundary.
        let whole = len + HUGE_PAGE_SIZE;
        let raw = map(None, 0, whole, false).map_err(|e| e.to_string())?;
        let addr = raw.as_ptr() as usize;
        let aligned = addr.next_multiple_of(HUGE_PAGE_SIZE);
        let head = aligned - addr;
        if head > 0 {
            // SAFETY: unmapping the unaligned head of the mapping made just above, which
            // nothing references.
            unsafe { libc::munmap(raw.as_ptr().cast(), head) };
        }
        // SAFETY: as above, for the tail beyond the aligned region.
        unsafe { libc::munmap((aligned + len) as *mut libc::c_void, whole - head - len) };
        let base = NonNull::new(aligned as *mut u8).ok_or("null mapping")?;
        let mut m = GuestMemory { fd: None, base, len, backing: Backing::Thp { huge_bytes: 0 } };
        // SAFETY: advice on a mapping we own; it changes no contents.
        if unsafe { libc::madvise(base.as_ptr().cast(), len, libc::MADV_HUGEPAGE) } != 0 {
            return Err(format!("madvise(MADV_HUGEPAGE): {}", io::Error::last_os_error()));
        }
        m.mem().fill(0, len, 0).map_err(|e| e.to_string())?;
        let huge = anon_huge_bytes(aligned).unwrap_or(0);
        if huge == 0 {
            return Err("the kernel backed the region with no huge page (THP disabled or fragmented)".into());
        }
        m.backing = Backing::Thp { huge_bytes: huge };
        Ok(m)
    }

    /// Maps `len` bytes of guest memory received as a memfd (a back end's view).
    pub fn from_fd(fd: OwnedFd, len: usize) -> io::Result<Self> {
        check_len(len, PAGE_SIZE)?;
        let file = std::fs::File::from(fd);
        if file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "memfd shorter than the region"));
        }
        let fd: OwnedFd = file.into();
        let base = map(Some(fd.as_fd()), 0, len, false)?;
        Ok(GuestMemory { fd: Some(fd), base, len, backing: Backing::Memfd4K })
    }

    /// A second, independent mapping of the same memfd (what a back end in this process
    /// uses, so that remapping pages in the guest's view does not change its own).
    pub fn second_view(&self) -> io::Result<Self> {
        let fd = self.fd.as_ref().ok_or_else(|| io::Error::other("anonymous memory has no second view"))?;
        let mut m = Self::from_fd(fd.try_clone()?, self.len)?;
        m.backing = self.backing;
        Ok(m)
    }

    /// The whole region, as shared memory.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `base` is a live mapping of `len` bytes, readable and writable, until `self`
        // drops; it is page-aligned. Nothing forms references to it: all access goes through
        // `SharedMem` or another process's/the kernel's mappings of the same memfd. Page
        // flips (`PageFlipper`) replace pages atomically with MAP_FIXED, so the range stays
        // mapped and readable/writable throughout.
        unsafe { SharedMem::new(self.base.as_ptr(), self.len) }.expect("page-aligned, non-null mapping")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The mapping's address in this process: what a back end whose device is the kernel
    /// (TAP, AF_PACKET) registers as the IOVA base, so that an iova is usable in an iovec.
    pub fn addr(&self) -> u64 {
        self.base.as_ptr() as u64
    }

    /// Always `false`: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What backs the region.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// The memfd, if the region has one (not for THP).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is our mapping; every `SharedMem` view borrows `self`, so
        // none outlives this.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// `AnonHugePages` of the smaps entry that starts at `addr`, in bytes.
fn anon_huge_bytes(addr: usize) -> Option<usize> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
    let mut in_entry = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, _)) = range.split_once('-') {
                if start.chars().all(|c| c.is_ascii_hexdigit()) && !start.is_empty() {
                    in_entry = usize::from_str_radix(start, 16).ok() == Some(addr);
                    continue;
                }
            }
        }
        if in_entry {
            if let Some(v) = line.strip_prefix("AnonHugePages:") {
                let kb: usize = v.trim().trim_end_matches("kB").trim().parse().ok()?;
                return Some(kb * 1024);
            }
        }
    }
    None
}

/// One guest page mapped into the back end for the duration of one packet: `mmap` of the
/// guest's memfd at the frame, `munmap` on drop (configuration c's "per-packet remapping").
#[derive(Debug)]
pub struct PageMap {
    base: NonNull<u8>,
}

impl PageMap {
    /// Maps frame `frame` of the memfd `fd` read-only.
    pub fn new(fd: BorrowedFd<'_>, frame: Frame) -> io::Result<Self> {
        let offset =
            usize::try_from(frame.offset()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(PageMap { base: map(Some(fd), offset, PAGE_SIZE, true)? })
    }

    /// The page. Read-only: a write through this view faults, which is the point.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: a live, page-aligned, readable mapping of one page, unmapped only when
        // `self` drops (views borrow `self`). Only reads are made through it (the transmit
        // path never writes to payload).
        unsafe { SharedMem::new(self.base.as_ptr(), PAGE_SIZE) }.expect("page-aligned mapping")
    }
}

impl Drop for PageMap {
    fn drop(&mut self) {
        // SAFETY: our one-page mapping; no view outlives `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), PAGE_SIZE) };
    }
}

/// The hypervisor's page-flipping service for one guest: remaps a back-end page into the
/// guest's view of its memory at a frame (what Xen's `GNTTABOP_transfer` achieved for
/// receive), and later restores the guest's own page there. Each call is an `mmap` with
/// `MAP_FIXED`, which replaces the page table entry and shoots down the TLB of every CPU
/// running this process: the cost the paper measured.
#[derive(Debug)]
pub struct PageFlipper {
    /// Start of the guest's view (a [`GuestMemory`] that outlives the flipper).
    guest_base: usize,
    guest_len: usize,
    guest_fd: OwnedFd,
    /// The back end's page pool.
    pool: GuestMemory,
}

impl PageFlipper {
    /// A flipper for `guest` (its own view, memfd-backed) with a back-end pool of `pages`.
    ///
    /// The flipper remembers the guest view's address: `guest` must outlive it and must not
    /// move its mapping (it never does).
    pub fn new(guest: &GuestMemory, pages: usize) -> io::Result<Self> {
        let guest_fd = guest.fd().ok_or_else(|| io::Error::other("page flipping needs a memfd"))?;
        Ok(PageFlipper {
            guest_base: guest.base.as_ptr() as usize,
            guest_len: guest.len,
            guest_fd: guest_fd.try_clone_to_owned()?,
            pool: GuestMemory::new_4k("pvio-flip-pool", pages * PAGE_SIZE)?,
        })
    }

    /// The back end's pool (where its NIC receives before a flip).
    pub fn pool(&self) -> SharedMem<'_> {
        self.pool.mem()
    }

    /// Pages in the pool.
    pub fn pool_pages(&self) -> usize {
        self.pool.len / PAGE_SIZE
    }

    fn remap(&self, frame: Frame, fd: BorrowedFd<'_>, offset: usize) -> io::Result<()> {
        let at = usize::try_from(frame.offset()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if at + PAGE_SIZE > self.guest_len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame beyond guest memory"));
        }
        let addr = (self.guest_base + at) as *mut libc::c_void;
        // SAFETY: MAP_FIXED over one page inside the guest view (bounds checked above), which
        // stays mapped read-write throughout (the kernel swaps the page atomically). Nothing
        // holds a reference into it: all access is through `SharedMem`'s atomic accessors.
        let p = unsafe {
            libc::mmap(
                addr,
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Flips pool page `page` into the guest's view at `frame`.
    pub fn flip_in(&self, frame: Frame, page: usize) -> io::Result<()> {
        if page >= self.pool_pages() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no such pool page"));
        }
        self.remap(frame, self.pool.fd().expect("pool is a memfd"), page * PAGE_SIZE)
    }

    /// Gives the guest its own page back at `frame`.
    pub fn restore(&self, frame: Frame) -> io::Result<()> {
        let off =
            usize::try_from(frame.offset()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.remap(frame, self.guest_fd.as_fd(), off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flip_shows_the_pool_page_then_restores() {
        let g = GuestMemory::new_4k("t", 4 * PAGE_SIZE).unwrap();
        let back = g.second_view().unwrap();
        g.mem().write_bytes(PAGE_SIZE, b"guest").unwrap();
        let f = PageFlipper::new(&g, 2).unwrap();
        f.pool().write_bytes(PAGE_SIZE, b"flip!").unwrap();
        f.flip_in(Frame(1), 1).unwrap();
        let mut b = [0u8; 5];
        g.mem().read_bytes(PAGE_SIZE, &mut b).unwrap();
        assert_eq!(&b, b"flip!");
        // The back end's own view of guest memory is not affected.
        back.mem().read_bytes(PAGE_SIZE, &mut b).unwrap();
        assert_eq!(&b, b"guest");
        f.restore(Frame(1)).unwrap();
        g.mem().read_bytes(PAGE_SIZE, &mut b).unwrap();
        assert_eq!(&b, b"guest");
        assert!(f.flip_in(Frame(4), 0).is_err());
    }

    #[test]
    fn page_map_reads_the_guest_page() {
        let g = GuestMemory::new_4k("t", 2 * PAGE_SIZE).unwrap();
        g.mem().write_bytes(PAGE_SIZE + 7, b"abc").unwrap();
        let m = PageMap::new(g.fd().unwrap(), Frame(1)).unwrap();
        let mut b = [0u8; 3];
        m.mem().read_bytes(7, &mut b).unwrap();
        assert_eq!(&b, b"abc");
    }
}
