//! Shared regions backed by a memfd (`std` only): memory that two processes can map.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use memmap2::{MmapOptions, MmapRaw};

use crate::shm::SharedMem;

/// An anonymous shared-memory file (`memfd_create`) mapped `MAP_SHARED` into this process.
///
/// The descriptor can be sent to another process, which maps the same pages with
/// [`MemfdRegion::from_fd`]. Views of the mapping are handed out as [`SharedMem`], so the
/// bytes are only ever touched through the checked, atomic accessors.
#[derive(Debug)]
pub struct MemfdRegion {
    fd: OwnedFd,
    map: MmapRaw,
    /// Start of `map`: non-null and page-aligned.
    base: NonNull<u8>,
}

// SAFETY: the region is plain shared memory; the raw base pointer is only used to build
// `SharedMem` views, which are themselves `Send` and `Sync`.
unsafe impl Send for MemfdRegion {}
// SAFETY: as for `Send`; `&MemfdRegion` gives only atomic access through `SharedMem`.
unsafe impl Sync for MemfdRegion {}

impl MemfdRegion {
    /// Creates a zero-filled memfd of `len` bytes and maps it.
    pub fn new(name: &str, len: usize) -> io::Result<Self> {
        Self::with_flags(name, len, 0)
    }

    /// Creates a memfd backed by 2 MiB huge pages (`MFD_HUGETLB`); `len` must be a multiple
    /// of 2 MiB and huge pages must be reserved (`/proc/sys/vm/nr_hugepages`).
    pub fn new_huge(name: &str, len: usize) -> io::Result<Self> {
        Self::with_flags(name, len, libc::MFD_HUGETLB)
    }

    fn with_flags(name: &str, len: usize, extra: libc::c_uint) -> io::Result<Self> {
        let cname = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | extra) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        file.set_len(len as u64)?;
        Self::map(file.into(), len)
    }

    /// Maps a memfd (or any shareable file) received from another process. Fails if the file
    /// is shorter than `len`.
    pub fn from_fd(fd: OwnedFd, len: usize) -> io::Result<Self> {
        let file = std::fs::File::from(fd);
        if file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared file is shorter than the region",
            ));
        }
        Self::map(file.into(), len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty region"));
        }
        let map = MmapOptions::new().len(len).map_raw(&std::fs::File::from(fd.try_clone()?))?;
        let base = NonNull::new(map.as_mut_ptr())
            .filter(|p| p.as_ptr() as usize % 8 == 0)
            .ok_or_else(|| io::Error::other("mmap returned a null or unaligned address"))?;
        Ok(MemfdRegion { fd, map, base })
    }

    /// The whole mapping as shared memory.
    pub fn mem(&self) -> SharedMem<'_> {
        // SAFETY: `base` is the start of this mapping (checked non-null and 8-aligned in
        // `map`), which is `len` bytes, readable and writable, and stays mapped while `self`
        // is borrowed. This process never forms references to it (all access goes through
        // `SharedMem`); other processes map it only as shared memory.
        unsafe { SharedMem::from_raw_parts(self.base, self.map.len()) }
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never true for a region that was created successfully).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Duplicates the descriptor for sending to another process.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl AsFd for MemfdRegion {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for MemfdRegion {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_memfd_share_bytes() {
        let a = MemfdRegion::new("pvio-test", 8192).unwrap();
        let b = MemfdRegion::from_fd(a.try_clone_fd().unwrap(), 8192).unwrap();
        a.mem().write(4100, &0xdead_beef_u32).unwrap();
        assert_eq!(b.mem().read::<u32>(4100).unwrap(), 0xdead_beef);
        b.mem().write_bytes(1, b"hello").unwrap();
        let mut got = [0u8; 5];
        a.mem().read_bytes(1, &mut got).unwrap();
        assert_eq!(&got, b"hello");
    }

    #[test]
    fn mapping_more_than_the_file_holds_is_refused() {
        let a = MemfdRegion::new("pvio-test", 4096).unwrap();
        assert!(MemfdRegion::from_fd(a.try_clone_fd().unwrap(), 8192).is_err());
        assert!(MemfdRegion::new("pvio-test", 0).is_err());
        assert!(MemfdRegion::new("bad\0name", 4096).is_err());
    }
}
