//! The three parts of a split virtqueue in guest memory, translated once, with handles on the
//! 16-bit index and event fields. Shared by the driver and the device side; each side only
//! writes the fields the specification gives it (§2.7: "each part is write-able by either the
//! driver or the device, but not both").

use zerocopy::little_endian::U16;

use crate::shm::SharedU16;
use crate::virtio::error::{GuestMemoryError, LayoutError};
use crate::virtio::layout::{Descriptor, UsedElem, DESC_SIZE};
use crate::virtio::layout::{QueueLayout, QueueSize, AVAIL_FLAGS, AVAIL_IDX, USED_FLAGS, USED_IDX};
use crate::virtio::memory::{GuestMemory, GuestSlice};

pub(crate) struct Rings<'m> {
    pub(crate) size: QueueSize,
    pub(crate) desc: GuestSlice<'m>,
    pub(crate) avail: GuestSlice<'m>,
    pub(crate) used: GuestSlice<'m>,
    /// Driver-written.
    pub(crate) avail_flags: SharedU16<'m>,
    /// Driver-written.
    pub(crate) avail_idx: SharedU16<'m>,
    /// Driver-written (`VIRTIO_F_EVENT_IDX`).
    pub(crate) used_event: SharedU16<'m>,
    /// Device-written.
    pub(crate) used_flags: SharedU16<'m>,
    /// Device-written.
    pub(crate) used_idx: SharedU16<'m>,
    /// Device-written (`VIRTIO_F_EVENT_IDX`).
    pub(crate) avail_event: SharedU16<'m>,
}

impl<'m> Rings<'m> {
    pub(crate) fn new<M: GuestMemory + ?Sized>(
        mem: &'m M,
        layout: &QueueLayout,
    ) -> Result<Self, LayoutError> {
        let size = layout.size;
        let part = |part: &'static str, addr: u64, len: usize| {
            mem.translate(addr, len).map_err(|source| LayoutError::Memory { part, source })
        };
        let desc = part("descriptor table", layout.desc_table, size.desc_table_bytes())?;
        let avail = part("available ring", layout.avail_ring, size.avail_ring_bytes())?;
        let used = part("used ring", layout.used_ring, size.used_ring_bytes())?;
        let word = |part: &'static str, s: &GuestSlice<'m>, at: usize| {
            s.u16_at(at).map_err(|e| LayoutError::Memory { part, source: GuestMemoryError::Shm(e) })
        };
        Ok(Rings {
            avail_flags: word("available ring", &avail, AVAIL_FLAGS)?,
            avail_idx: word("available ring", &avail, AVAIL_IDX)?,
            used_event: word("available ring", &avail, size.used_event())?,
            used_flags: word("used ring", &used, USED_FLAGS)?,
            used_idx: word("used ring", &used, USED_IDX)?,
            avail_event: word("used ring", &used, size.avail_event())?,
            size,
            desc,
            avail,
            used,
        })
    }

    #[inline]
    pub(crate) fn size(&self) -> u16 {
        self.size.get()
    }

    /// Copies out `ring[slot % size]` of the available ring.
    #[inline]
    pub(crate) fn read_avail(&self, slot: u16) -> Result<u16, GuestMemoryError> {
        Ok(self.avail.read::<U16>(self.size.avail_entry(slot))?.get())
    }

    #[inline]
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))] // driver side only
    pub(crate) fn write_avail(&self, slot: u16, head: u16) -> Result<(), GuestMemoryError> {
        Ok(self.avail.write(self.size.avail_entry(slot), &U16::new(head))?)
    }

    #[inline]
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))] // driver side only
    pub(crate) fn read_used(&self, slot: u16) -> Result<UsedElem, GuestMemoryError> {
        Ok(self.used.read(self.size.used_entry(slot))?)
    }

    #[inline]
    pub(crate) fn write_used(&self, slot: u16, elem: &UsedElem) -> Result<(), GuestMemoryError> {
        Ok(self.used.write(self.size.used_entry(slot), elem)?)
    }

    /// Copies out descriptor `index` (`< size`, checked by the caller) of the table.
    #[inline]
    pub(crate) fn read_desc(&self, index: u16) -> Result<Descriptor, GuestMemoryError> {
        Ok(self.desc.read(DESC_SIZE * index as usize)?)
    }

    #[inline]
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))] // driver side only
    pub(crate) fn write_desc(&self, index: u16, desc: &Descriptor) -> Result<(), GuestMemoryError> {
        Ok(self.desc.write(DESC_SIZE * index as usize, desc)?)
    }
}

impl core::fmt::Debug for Rings<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Rings")
            .field("size", &self.size.get())
            .field("avail_flags", &self.avail_flags)
            .field("avail_idx", &self.avail_idx)
            .field("used_event", &self.used_event)
            .field("used_flags", &self.used_flags)
            .field("used_idx", &self.used_idx)
            .field("avail_event", &self.avail_event)
            .finish()
    }
}
