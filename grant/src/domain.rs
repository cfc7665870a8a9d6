//! Domains and their memory: [`DomId`], [`Frame`], and a domain's memory as 4 KiB frames.

use pvio_ring::{SharedMem, ShmError};

/// Size of a frame (page) in bytes; every grant covers one frame.
pub const PAGE_SIZE: usize = 4096;

/// `domid_t`: a domain's identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct DomId(pub u16);

impl DomId {
    /// `DOMID_SELF` (0x7ff0): not a real domain; never registered with a broker.
    pub const SELF: DomId = DomId(0x7ff0);
}

/// A frame number in a domain's memory: byte offset `frame * PAGE_SIZE` of its region
/// (Xen's guest frame number, GFN, for a translated guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Frame(pub u32);

impl Frame {
    /// Byte offset of the frame in its domain's memory (computed in `u64`, cannot overflow).
    pub fn offset(self) -> u64 {
        u64::from(self.0) * PAGE_SIZE as u64
    }
}

/// The view of frame `frame` of `mem` (a region of whole frames), or an error if it is not
/// inside.
pub fn frame_of<'a>(mem: &SharedMem<'a>, frame: Frame) -> Result<SharedMem<'a>, ShmError> {
    let offset = usize::try_from(frame.offset()).map_err(|_| ShmError::OutOfBounds {
        offset: usize::MAX,
        len: PAGE_SIZE,
        size: mem.len(),
    })?;
    mem.slice(offset, PAGE_SIZE)
}

#[cfg(all(feature = "std", not(loom)))]
pub use memory::DomainMemory;

#[cfg(all(feature = "std", not(loom)))]
mod memory {
    use std::io;

    use pvio_ring::{MemfdRegion, SharedMem};

    use super::{Frame, PAGE_SIZE};

    /// A domain's memory: `frames` 4 KiB frames in one memfd, so the granting guest and the
    /// back end holding the broker can be separate processes (send [`memfd`](Self::memfd)'s
    /// descriptor across a Unix socket and map it with [`MemfdRegion::from_fd`]).
    #[derive(Debug)]
    pub struct DomainMemory {
        region: MemfdRegion,
    }

    impl DomainMemory {
        /// `frames` zeroed frames in a new memfd called `name`.
        pub fn new(name: &str, frames: u32) -> io::Result<Self> {
            let len = (frames as usize)
                .checked_mul(PAGE_SIZE)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many frames"))?;
            Ok(DomainMemory { region: MemfdRegion::new(name, len)? })
        }

        /// Wraps an existing region; its length must be a whole number of frames.
        pub fn from_region(region: MemfdRegion) -> io::Result<Self> {
            if region.len() % PAGE_SIZE != 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a whole number of frames"));
            }
            Ok(DomainMemory { region })
        }

        /// Number of frames.
        pub fn frames(&self) -> u32 {
            (self.region.len() / PAGE_SIZE) as u32
        }

        /// All of the memory.
        pub fn mem(&self) -> SharedMem<'_> {
            self.region.mem()
        }

        /// One frame, or `None` past the end.
        pub fn frame(&self, frame: Frame) -> Option<SharedMem<'_>> {
            super::frame_of(&self.region.mem(), frame).ok()
        }

        /// The memfd region (for its file descriptor).
        pub fn memfd(&self) -> &MemfdRegion {
            &self.region
        }
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn frames_are_bounded_pages() {
        let r = pvio_ring::HeapRegion::new(3 * PAGE_SIZE);
        let m = r.mem();
        assert_eq!(frame_of(&m, Frame(2)).unwrap().len(), PAGE_SIZE);
        assert!(frame_of(&m, Frame(3)).is_err());
        assert!(frame_of(&m, Frame(u32::MAX)).is_err());
        frame_of(&m, Frame(1)).unwrap().write_bytes(0, &[9]).unwrap();
        assert_eq!(m.read::<u8>(PAGE_SIZE), Ok(9));
    }

    #[cfg(all(feature = "std", not(miri)))]
    #[test]
    fn domain_memory_in_a_memfd() {
        let d = DomainMemory::new("dom", 4).unwrap();
        assert_eq!(d.frames(), 4);
        assert!(d.frame(Frame(3)).is_some());
        assert!(d.frame(Frame(4)).is_none());
    }
}
