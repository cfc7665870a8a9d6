//! Validated descriptor chains (device side).
//!
//! [`DeviceQueue::pop`](crate::virtio::DeviceQueue::pop) walks a chain the driver made
//! available and, if it obeys every rule below, hands it out as a [`Chain`]: the chain's
//! buffers as [`Segment`]s in a caller-provided array (no allocation), readable ones first.
//! Each descriptor is copied out of guest memory exactly once, by value; nothing is read from
//! the descriptor table again, so a driver rewriting the table concurrently cannot change a
//! chain after it was validated.
//!
//! The rules (each rejection is a [`DeviceError`] citing the specification):
//! - the head and every `next` lie inside the table being walked (§2.7.5);
//! - the walk visits at most as many descriptors as its table has: a loop ends the walk with
//!   an error, never a hang (§2.7.5.2);
//! - the buffers add up to at most `u32::MAX` bytes and at most the device's cap (§2.7.5.2);
//! - indirect tables need `VIRTIO_F_INDIRECT_DESC`, are not nested, are not combined with
//!   `VIRTQ_DESC_F_NEXT`, and have a non-zero length that is a multiple of 16 (§2.7.5.3); an
//!   indirect descriptor may end a chain of direct ones (§2.7.5.3.2) and its `WRITE` flag is
//!   ignored;
//! - no device-readable buffer follows a device-writable one (§2.7.4.2);
//! - every buffer (and every indirect table) lies wholly inside one guest memory region.
//!   Zero-length buffers are accepted and never accessed.

use crate::virtio::error::{DeviceError, GuestMemoryError};
use crate::virtio::layout::{
    Descriptor, DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};
use crate::virtio::memory::{GuestMemory, GuestSlice};
use crate::virtio::rings::Rings;

/// Largest indirect table: `next` is 16 bits, so no chain can address more entries.
pub const MAX_INDIRECT_DESCS: u32 = 1 << 16;

/// One buffer of a validated chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// Guest address of the buffer.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (`VIRTQ_DESC_F_WRITE`); otherwise device-readable.
    pub writable: bool,
}

/// A validated descriptor chain: its head (to return with
/// [`add_used`](crate::virtio::DeviceQueue::add_used)) and its buffers, device-readable ones
/// first. Holds the guest memory to copy data out of and into the buffers; borrows the
/// caller's segment array, not the queue.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'b, 'm, M: ?Sized> {
    mem: &'m M,
    head: u16,
    segments: &'b [Segment],
    readable: usize,
    readable_len: u32,
    writable_len: u32,
}

impl<'b, 'm, M: GuestMemory + ?Sized> Chain<'b, 'm, M> {
    /// Index of the head descriptor.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// All buffers, readable then writable.
    pub fn segments(&self) -> &'b [Segment] {
        self.segments
    }

    /// The device-readable buffers.
    pub fn readable(&self) -> &'b [Segment] {
        &self.segments[..self.readable]
    }

    /// The device-writable buffers.
    pub fn writable(&self) -> &'b [Segment] {
        &self.segments[self.readable..]
    }

    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> u32 {
        self.readable_len
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> u32 {
        self.writable_len
    }

    /// Copies readable bytes, starting `offset` bytes into the chain's readable data, into
    /// `dst`; returns how many were copied (less than `dst.len()` at the end of the data).
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<usize, GuestMemoryError> {
        let mut done = 0;
        self.each(self.readable(), offset, dst.len(), |slice, at, n| {
            slice.read_bytes(at, &mut dst[done..done + n])?;
            done += n;
            Ok(())
        })?;
        Ok(done)
    }

    /// Copies `src` into the writable buffers, starting `offset` bytes into the chain's
    /// writable space; returns how many bytes were written (less than `src.len()` at the end).
    pub fn write_at(&self, offset: usize, src: &[u8]) -> Result<usize, GuestMemoryError> {
        let mut done = 0;
        self.each(self.writable(), offset, src.len(), |slice, at, n| {
            slice.write_bytes(at, &src[done..done + n])?;
            done += n;
            Ok(())
        })?;
        Ok(done)
    }

    /// Calls `f(slice, offset_in_slice, n)` for consecutive pieces of `segments` covering up
    /// to `want` bytes from byte `offset` of their concatenation.
    fn each(
        &self,
        segments: &[Segment],
        mut offset: usize,
        mut want: usize,
        mut f: impl FnMut(&GuestSlice<'_>, usize, usize) -> Result<(), GuestMemoryError>,
    ) -> Result<(), GuestMemoryError> {
        for seg in segments {
            if want == 0 {
                break;
            }
            let len = seg.len as usize;
            if offset >= len {
                offset -= len;
                continue;
            }
            let n = want.min(len - offset);
            let slice = self.mem.translate(seg.addr, len)?;
            f(&slice, offset, n)?;
            offset = 0;
            want -= n;
        }
        Ok(())
    }
}

/// Where the walk currently reads descriptors from.
enum Table<'m> {
    Ring,
    Indirect(GuestSlice<'m>),
}

/// Walks and validates the chain at `head` (already checked `< size`), filling `out`.
pub(crate) fn walk<'b, 'm, M: GuestMemory + ?Sized>(
    mem: &'m M,
    rings: &Rings<'_>,
    head: u16,
    indirect_ok: bool,
    max_bytes: u32,
    out: &'b mut [Segment],
) -> Result<Chain<'b, 'm, M>, DeviceError> {
    let size = u32::from(rings.size());
    let mut table = Table::Ring;
    let mut table_len = size;
    let mut index = head;
    // Descriptors read from the current table: the walk's time to live.
    let mut visited = 0u32;
    let mut n = 0usize;
    let mut total = 0u32;
    let mut readable = 0usize;
    let mut readable_len = 0u32;
    let mut seen_writable = false;
    loop {
        if visited == table_len {
            return Err(DeviceError::ChainLoop { head, table_len });
        }
        visited += 1;
        // The only read of this descriptor: everything below uses the copy.
        let d: Descriptor = match &table {
            Table::Ring => rings.read_desc(index)?,
            Table::Indirect(t) => {
                t.read(DESC_SIZE * index as usize).map_err(|e| DeviceError::Ring(GuestMemoryError::Shm(e)))?
            }
        };
        let (addr, len, flags, next) = (d.addr.get(), d.len.get(), d.flags.get(), d.next.get());
        if flags & VIRTQ_DESC_F_INDIRECT != 0 {
            if !indirect_ok {
                return Err(DeviceError::IndirectNotNegotiated { head });
            }
            if matches!(table, Table::Indirect(..)) {
                return Err(DeviceError::NestedIndirect { head });
            }
            if flags & VIRTQ_DESC_F_NEXT != 0 {
                return Err(DeviceError::IndirectWithNext { head });
            }
            if len == 0 || len as usize % DESC_SIZE != 0 || len / DESC_SIZE as u32 > MAX_INDIRECT_DESCS {
                return Err(DeviceError::BadIndirectLen { head, len });
            }
            let t = mem.translate(addr, len as usize).map_err(|source| DeviceError::BadBuffer {
                head,
                addr,
                len,
                source,
            })?;
            table_len = len / DESC_SIZE as u32;
            table = Table::Indirect(t);
            index = 0;
            visited = 0;
            continue;
        }
        let writable = flags & VIRTQ_DESC_F_WRITE != 0;
        if writable {
            seen_writable = true;
        } else if seen_writable {
            return Err(DeviceError::ReadableAfterWritable { head });
        }
        total = match total.checked_add(len) {
            Some(t) if t <= max_bytes => t,
            _ => return Err(DeviceError::ChainTooLarge { head, limit: max_bytes }),
        };
        if len > 0 {
            mem.translate(addr, len as usize).map_err(|source| DeviceError::BadBuffer {
                head,
                addr,
                len,
                source,
            })?;
        }
        let Some(slot) = out.get_mut(n) else {
            return Err(DeviceError::TooManySegments { head, capacity: out.len() });
        };
        *slot = Segment { addr, len, writable };
        n += 1;
        if !writable {
            readable = n;
            readable_len += len;
        }
        if flags & VIRTQ_DESC_F_NEXT == 0 {
            break;
        }
        if u32::from(next) >= table_len {
            return Err(DeviceError::NextOutOfRange { head, next, table_len });
        }
        index = next;
    }
    Ok(Chain { mem, head, segments: &out[..n], readable, readable_len, writable_len: total - readable_len })
}
