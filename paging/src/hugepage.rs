//! (`std`, Linux) Hugepage-backed memory for guest RAM and packet buffers.
//!
//! [`HugeMem::hugetlb`] makes a memfd with `MFD_HUGETLB` (2 MiB or 1 GiB pages from the
//! kernel's reserved pool) and maps it shared, so its fd can be handed to another process
//! (which maps it with [`HugeMem::from_file`]). [`HugeMem::new`] falls back to transparent huge
//! pages (`madvise(MADV_HUGEPAGE)`) when the pool is empty. Either way
//! [`HugeMem::obtained`] reads `/proc/self/smaps` to say what the kernel really gave.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use crate::size::PageSizeKind;

/// Why hugepage memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HugeError {
    /// The length is zero or not a multiple of the page size asked for.
    #[error("length {len:#x} is not a non-zero multiple of {page:#x}")]
    BadLength {
        /// The length.
        len: u64,
        /// The page size.
        page: u64,
    },
    /// 4 KiB is not a huge page size.
    #[error("{0:?} is not a huge page size")]
    NotHuge(PageSizeKind),
    /// A system call failed (`ENOMEM` from `mmap` usually means the hugepage pool is empty).
    #[error("{call}: {source}")]
    Sys {
        /// The call.
        call: &'static str,
        /// The error.
        source: io::Error,
    },
}

fn sys(call: &'static str) -> HugeError {
    HugeError::Sys { call, source: io::Error::last_os_error() }
}

/// How a [`HugeMem`] is backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A hugetlbfs memfd of pages of this size (shareable).
    Hugetlb(PageSizeKind),
    /// A memfd (shareable) advised `MADV_HUGEPAGE`: huge only if shmem THP is enabled.
    SharedTransparent,
    /// Private anonymous memory advised `MADV_HUGEPAGE` (not shareable).
    PrivateTransparent,
}

/// What `/proc/self/smaps` reports for the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obtained {
    /// `KernelPageSize`: the page size of the mapping (2 MiB / 1 GiB for hugetlb, 4 KiB else).
    pub kernel_page_size: u64,
    /// Bytes mapped by transparent huge pages (`AnonHugePages` + `ShmemPmdMapped` +
    /// `FilePmdMapped`).
    pub thp_bytes: u64,
    /// Size of the mapping.
    pub size: u64,
}

impl Obtained {
    /// The largest page size that backs all of the mapping.
    pub fn page_size(&self) -> PageSizeKind {
        match self.kernel_page_size {
            s if s >= PageSizeKind::Size1GiB.bytes() => PageSizeKind::Size1GiB,
            s if s >= PageSizeKind::Size2MiB.bytes() => PageSizeKind::Size2MiB,
            _ if self.size > 0 && self.thp_bytes >= self.size => PageSizeKind::Size2MiB,
            _ => PageSizeKind::Size4KiB,
        }
    }
}

/// A mapping of (hopefully) huge pages, unmapped on drop.
///
/// The bytes may be shared with another process (or a guest) that writes them at any time, so
/// this type hands out a raw pointer, not a slice; wrap it in the access discipline the data
/// needs (e.g. `pvio_ring::shm::SharedMem`).
#[derive(Debug)]
pub struct HugeMem {
    ptr: NonNull<u8>,
    len: usize,
    fd: Option<OwnedFd>,
    backing: Backing,
}

// SAFETY: HugeMem owns a mapping and an fd; it only exposes a raw pointer, so moving it to
// another thread or sharing `&HugeMem` gives no unsynchronised access by itself.
unsafe impl Send for HugeMem {}
// SAFETY: as above: `&HugeMem` offers only the pointer, length, fd and metadata.
unsafe impl Sync for HugeMem {}

fn memfd(name: &std::ffi::CStr, flags: libc::c_uint) -> Result<OwnedFd, HugeError> {
    // SAFETY: `name` is a valid C string; memfd_create has no other preconditions.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    if fd < 0 {
        return Err(sys("memfd_create"));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mmap` of `len` bytes, shared over `fd` or private anonymous, pre-faulted.
fn map(len: usize, fd: Option<BorrowedFd<'_>>) -> Result<NonNull<u8>, HugeError> {
    let (flags, raw) = match fd {
        Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd.as_raw_fd()),
        None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
    };
    // SAFETY: a fresh mapping chosen by the kernel (addr NULL); no existing memory is affected.
    let p =
        unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, raw, 0) };
    if p == libc::MAP_FAILED {
        return Err(sys("mmap"));
    }
    NonNull::new(p.cast()).ok_or_else(|| sys("mmap"))
}

impl HugeMem {
    /// `len` bytes of hugetlb pages of `size` in a memfd, mapped shared and pre-faulted.
    /// Fails (`mmap`: ENOMEM) when the kernel's pool of such pages is too small.
    pub fn hugetlb(len: u64, size: PageSizeKind) -> Result<Self, HugeError> {
        let huge_flag = match size {
            PageSizeKind::Size2MiB => libc::MFD_HUGE_2MB,
            PageSizeKind::Size1GiB => libc::MFD_HUGE_1GB,
            PageSizeKind::Size4KiB => return Err(HugeError::NotHuge(size)),
        };
        if len == 0 || len % size.bytes() != 0 {
            return Err(HugeError::BadLength { len, page: size.bytes() });
        }
        let fd = memfd(c"pvio-hugetlb", libc::MFD_CLOEXEC | libc::MFD_HUGETLB | huge_flag)?;
        Self::with_fd(fd, len, Backing::Hugetlb(size))
    }

    fn with_fd(fd: OwnedFd, len: u64, backing: Backing) -> Result<Self, HugeError> {
        let size = libc::off_t::try_from(len).map_err(|_| HugeError::BadLength { len, page: 0 })?;
        // SAFETY: `fd` is a valid memfd we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(sys("ftruncate"));
        }
        let ptr = map(len as usize, Some(fd.as_fd()))?;
        Ok(HugeMem { ptr, len: len as usize, fd: Some(fd), backing })
    }

    /// `len` bytes (a multiple of 2 MiB) advised for transparent huge pages: a memfd mapped
    /// shared if `shared`, else private anonymous memory aligned to 2 MiB. The memory is
    /// touched once so the kernel can back it; [`HugeMem::obtained`] says whether it did.
    pub fn transparent(len: u64, shared: bool) -> Result<Self, HugeError> {
        const TWO_MIB: u64 = 2 << 20;
        if len == 0 || len % TWO_MIB != 0 {
            return Err(HugeError::BadLength { len, page: TWO_MIB });
        }
        let mem = if shared {
            let fd = memfd(c"pvio-thp", libc::MFD_CLOEXEC)?;
            Self::with_fd(fd, len, Backing::SharedTransparent)?
        } else {
            // Over-allocate by 2 MiB and trim, so the region is 2 MiB aligned.
            let total = (len + TWO_MIB) as usize;
            let raw = map(total, None)?;
            let addr = raw.as_ptr() as usize;
            let start = (addr + TWO_MIB as usize - 1) & !(TWO_MIB as usize - 1);
            let head = start - addr;
            let tail = total - head - len as usize;
            if head > 0 {
                // SAFETY: the head lies inside the mapping just made; nothing points into it.
                unsafe { libc::munmap(raw.as_ptr().cast(), head) };
            }
            if tail > 0 {
                // SAFETY: the tail lies inside the mapping just made; nothing points into it.
                unsafe { libc::munmap((start + len as usize) as *mut libc::c_void, tail) };
            }
            let ptr = NonNull::new(start as *mut u8).ok_or_else(|| sys("mmap"))?;
            HugeMem { ptr, len: len as usize, fd: None, backing: Backing::PrivateTransparent }
        };
        // SAFETY: the range is our mapping.
        if unsafe { libc::madvise(mem.ptr.as_ptr().cast(), mem.len, libc::MADV_HUGEPAGE) } != 0 {
            return Err(sys("madvise(MADV_HUGEPAGE)"));
        }
        for off in (0..mem.len).step_by(4096) {
            let p = mem.ptr.as_ptr().wrapping_add(off);
            // SAFETY: `p` is in bounds of our fresh mapping; a volatile byte write, no
            // reference formed, so a peer writing concurrently is not UB for us.
            unsafe { p.write_volatile(0) };
        }
        Ok(mem)
    }

    /// Hugetlb pages of `preferred` size, else 2 MiB hugetlb pages, else transparent huge
    /// pages (shared memfd if `shared`). Check [`HugeMem::obtained`] for the result.
    pub fn new(len: u64, preferred: PageSizeKind, shared: bool) -> Result<Self, HugeError> {
        let mut tried = [preferred, PageSizeKind::Size2MiB];
        if preferred == PageSizeKind::Size2MiB {
            tried[1] = PageSizeKind::Size4KiB;
        }
        for size in tried {
            if size != PageSizeKind::Size4KiB && len % size.bytes() == 0 {
                if let Ok(m) = Self::hugetlb(len, size) {
                    return Ok(m);
                }
            }
        }
        Self::transparent(len, shared)
    }

    /// Maps all of `file` (a memfd another process made, received over a socket or opened
    /// through `/proc/<pid>/fd/<n>`) shared.
    pub fn from_file(file: File) -> Result<Self, HugeError> {
        let len = file.metadata().map_err(|source| HugeError::Sys { call: "fstat", source })?.len();
        if len == 0 {
            return Err(HugeError::BadLength { len, page: 0 });
        }
        let fd = OwnedFd::from(file);
        let ptr = map(len as usize, Some(fd.as_fd()))?;
        let mut mem = HugeMem { ptr, len: len as usize, fd: Some(fd), backing: Backing::SharedTransparent };
        if let Ok(o) = mem.obtained() {
            if o.kernel_page_size >= PageSizeKind::Size2MiB.bytes() {
                mem.backing = Backing::Hugetlb(o.page_size());
            }
        }
        Ok(mem)
    }

    /// First byte of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping is never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd, to hand to another process; `None` for private memory.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// How the memory was asked for.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// What the kernel really gave, from this mapping's entry in `/proc/self/smaps`.
    pub fn obtained(&self) -> io::Result<Obtained> {
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        parse_smaps(&smaps, self.ptr.as_ptr() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "mapping not found in /proc/self/smaps"))
    }
}

impl Drop for HugeMem {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and no reference into it outlives `self` (only raw
        // pointers were handed out, whose users were told the lifetime is `self`'s).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The smaps entry of the mapping starting at `start`.
fn parse_smaps(smaps: &str, start: u64) -> Option<Obtained> {
    let mut lines = smaps.lines();
    let mut found = None;
    for line in lines.by_ref() {
        let Some((range, _)) = line.split_once(' ') else { continue };
        let Some((lo, hi)) = range.split_once('-') else { continue };
        if u64::from_str_radix(lo, 16) == Ok(start) {
            found = u64::from_str_radix(hi, 16).ok().map(|hi| hi - start);
            break;
        }
    }
    let size = found?;
    let mut o = Obtained { kernel_page_size: 0, thp_bytes: 0, size };
    for line in lines {
        let Some((key, rest)) = line.split_once(':') else { continue };
        if key.contains(' ') || key.contains('-') {
            break; // the next mapping's header
        }
        let kb: u64 = rest.trim().trim_end_matches(" kB").parse().unwrap_or(0);
        match key {
            "KernelPageSize" => o.kernel_page_size = kb * 1024,
            "AnonHugePages" | "ShmemPmdMapped" | "FilePmdMapped" => o.thp_bytes += kb * 1024,
            _ => {}
        }
    }
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f0000000000-7f0000400000 rw-s 00000000 00:0f 1234                       /memfd:pvio-hugetlb (deleted)
Size:               4096 kB
KernelPageSize:     2048 kB
MMUPageSize:        2048 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
7f0000400000-7f0000800000 rw-p 00000000 00:00 0
Size:               4096 kB
KernelPageSize:        4 kB
AnonHugePages:      4096 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
";

    #[test]
    fn smaps_parsing() {
        let o = parse_smaps(SMAPS, 0x7f00_0000_0000).unwrap();
        assert_eq!(o, Obtained { kernel_page_size: 2 << 20, thp_bytes: 0, size: 4 << 20 });
        assert_eq!(o.page_size(), PageSizeKind::Size2MiB);
        let o = parse_smaps(SMAPS, 0x7f00_0040_0000).unwrap();
        assert_eq!(o, Obtained { kernel_page_size: 4096, thp_bytes: 4 << 20, size: 4 << 20 });
        assert_eq!(o.page_size(), PageSizeKind::Size2MiB);
        let partial = Obtained { thp_bytes: 2 << 20, ..o };
        assert_eq!(partial.page_size(), PageSizeKind::Size4KiB);
        assert_eq!(parse_smaps(SMAPS, 0x7f00_0020_0000), None);
    }

    #[test]
    fn lengths_are_checked() {
        assert!(matches!(HugeMem::hugetlb(4096, PageSizeKind::Size2MiB), Err(HugeError::BadLength { .. })));
        assert!(matches!(HugeMem::hugetlb(2 << 20, PageSizeKind::Size4KiB), Err(HugeError::NotHuge(_))));
        assert!(matches!(HugeMem::transparent(0, false), Err(HugeError::BadLength { .. })));
    }
}
