//! rust-vmm `vm-memory` adapter (feature `vm-memory`): a VMM that keeps guest memory in a
//! `vm_memory::GuestMemoryMmap` (or any `GuestMemoryBackend` whose regions have host
//! mappings) can serve pvio queues from it, and share one memory with rust-vmm's
//! `virtio-queue`.

use std::vec::Vec;

use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use super::memory::{check_disjoint, translate_in, GuestMemory, GuestRegion, GuestSlice};
use crate::shm::SharedMem;
use crate::virtio::error::GuestMemoryError;

/// pvio guest memory over the host mappings of a `vm-memory` guest memory.
#[derive(Debug)]
pub struct VmGuestMemory<'a> {
    regions: Vec<GuestRegion<'a>>,
}

impl<'a> VmGuestMemory<'a> {
    /// Wraps every region of `mem` as [`SharedMem`] over its host mapping.
    ///
    /// Fails with [`GuestMemoryError::Unmapped`] for a region without a host address (e.g. a
    /// Xen grant mapping that is mapped on demand), and with
    /// [`ShmError::BadBase`](crate::ShmError::BadBase) for a mapping that is not 8-byte
    /// aligned (mmap'd regions are page aligned).
    ///
    /// # Safety
    ///
    /// For as long as `'a` (the borrow of `mem`) lasts, the contract of [`SharedMem::new`]
    /// must hold for every region's host mapping: the mapping is not removed or replaced, and
    /// nobody in this process forms Rust references (`&[u8]`, `&mut T`) into it or accesses it
    /// with plain non-atomic loads and stores. `vm-memory`'s own `Bytes` accessors and
    /// `VolatileSlice` copies (which `virtio-queue` uses) are volatile accesses, which the
    /// contract allows; `as_slice`-style accessors that hand out references, and `unsafe` code
    /// that writes through the host address with ordinary stores, are not. The guest itself
    /// (outside this process's abstract machine) may do anything.
    pub unsafe fn new<G: GuestMemoryBackend + ?Sized>(mem: &'a G) -> Result<Self, GuestMemoryError> {
        let mut regions = Vec::new();
        for r in mem.iter() {
            let base = r.start_addr().0;
            let len = usize::try_from(r.len()).map_err(|_| GuestMemoryError::BadRegion { base })?;
            let ptr = r
                .get_host_address(MemoryRegionAddress(0))
                .map_err(|_| GuestMemoryError::Unmapped { addr: base, len })?;
            // SAFETY: `ptr .. ptr + len` is the region's host mapping, which `mem` keeps
            // mapped while borrowed for `'a`; the caller guarantees the access rules of
            // `SharedMem::new` for that time.
            let shm = unsafe { SharedMem::new(ptr, len) }?;
            regions.push(GuestRegion::new(base, shm)?);
        }
        check_disjoint(&regions)?;
        Ok(VmGuestMemory { regions })
    }

    /// The regions, as pvio sees them.
    pub fn regions(&self) -> &[GuestRegion<'a>] {
        &self.regions
    }
}

impl GuestMemory for VmGuestMemory<'_> {
    #[inline]
    fn translate(&self, addr: u64, len: usize) -> Result<GuestSlice<'_>, GuestMemoryError> {
        translate_in(&self.regions, addr, len)
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "mmap is a foreign call")]
    fn translates_into_the_same_bytes_vm_memory_sees() {
        let gm = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0x1000), 0x1000),
            (GuestAddress(0x2000), 0x2000),
        ])
        .unwrap();
        // SAFETY: `gm` is only accessed through pvio's atomics and vm-memory's volatile `Bytes`
        // accessors while the adapter lives.
        let mem = unsafe { VmGuestMemory::new(&gm) }.unwrap();
        assert_eq!(mem.regions().len(), 2);
        mem.translate(0x1ff8, 8).unwrap().write(0, &0x0102_0304_0506_0708u64).unwrap();
        assert_eq!(gm.read_obj::<u64>(GuestAddress(0x1ff8)).unwrap(), 0x0102_0304_0506_0708);
        gm.write_obj(0xabcd_u32, GuestAddress(0x3ffc)).unwrap();
        assert_eq!(mem.translate(0x3ffc, 4).unwrap().read::<u32>(0), Ok(0xabcd));
        assert_eq!(
            mem.translate(0x1ffc, 8).unwrap_err(),
            GuestMemoryError::CrossesRegionEnd { addr: 0x1ffc, len: 8, region_end: 0x2000 },
            "adjacent mappings are separate host allocations"
        );
        assert_eq!(
            mem.translate(0x4000, 1).unwrap_err(),
            GuestMemoryError::Unmapped { addr: 0x4000, len: 1 }
        );
    }
}
