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
    // Descriptors read in all: a second bound, independent of the per-table one (at most the
    // ring's table plus one indirect table), so no single check stands between a hostile
    // table and an endless walk.
    let mut budget = size + MAX_INDIRECT_DESCS;
    let mut n = 0usize;
    let mut total = 0u32;
    let mut readable = 0usize;
    let mut readable_len = 0u32;
    let mut seen_writable = false;
    loop {
        if visited == table_len || budget == 0 {
            return Err(DeviceError::ChainLoop { head, table_len });
        }
        visited += 1;
        budget -= 1;
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

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use super::*;
    use crate::virtio::layout::QueueFeatures;
    use crate::virtio::testutil::*;
    use crate::virtio::{DeviceQueue, GuestMemory, QueueLayout};

    const N: u16 = 8;
    const R: u16 = 0;
    const W: u16 = VIRTQ_DESC_F_WRITE;
    const NX: u16 = VIRTQ_DESC_F_NEXT;
    const IND: u16 = VIRTQ_DESC_F_INDIRECT;

    /// Pops the chain at `head` after `setup` wrote descriptors; returns the result as
    /// (head, segments) or the error.
    fn pop_with(
        features: QueueFeatures,
        setup: impl FnOnce(&GuestRegion<'_>, &QueueLayout),
        head: u16,
    ) -> Result<(u16, Vec<Segment>), DeviceError> {
        let g = Guest::new();
        let m = g.mem();
        let l = layout(N);
        setup(&m, &l);
        put_avail(&m, &l, 0, &[head]);
        let mut dev = DeviceQueue::new(&m, l, features).unwrap();
        let mut segs = [Segment::default(); 16];
        let chain = dev.pop(&mut segs)?.expect("one chain available");
        Ok((chain.head(), chain.segments().to_vec()))
    }

    use crate::virtio::memory::GuestRegion;
    use alloc::vec::Vec;

    fn d(addr: u64, len: u32, flags: u16, next: u16) -> Descriptor {
        Descriptor::new(addr, len, flags, next)
    }

    #[test]
    fn a_valid_chain_is_described_readable_first() {
        let (head, segs) = pop_with(
            FLAGS,
            |m, l| {
                put_desc(m, l, 5, d(DATA, 10, R | NX, 2));
                put_desc(m, l, 2, d(DATA + 0x100, 20, W | NX, 7));
                put_desc(m, l, 7, d(DATA + 0x200, 30, W, 0));
            },
            5,
        )
        .unwrap();
        assert_eq!(head, 5);
        assert_eq!(
            segs,
            [
                Segment { addr: DATA, len: 10, writable: false },
                Segment { addr: DATA + 0x100, len: 20, writable: true },
                Segment { addr: DATA + 0x200, len: 30, writable: true },
            ]
        );
    }

    #[test]
    fn loops_and_wild_indices_are_errors() {
        let looped = pop_with(
            FLAGS,
            |m, l| {
                put_desc(m, l, 0, d(DATA, 1, R | NX, 1));
                put_desc(m, l, 1, d(DATA, 1, R | NX, 0));
            },
            0,
        );
        assert_eq!(looped.unwrap_err(), DeviceError::ChainLoop { head: 0, table_len: 8 });
        let wild_next = pop_with(FLAGS, |m, l| put_desc(m, l, 3, d(DATA, 1, R | NX, 8)), 3);
        assert_eq!(wild_next.unwrap_err(), DeviceError::NextOutOfRange { head: 3, next: 8, table_len: 8 });
        let wild_head = pop_with(FLAGS, |_, _| {}, 8);
        assert_eq!(wild_head.unwrap_err(), DeviceError::HeadOutOfRange { head: 8, size: 8 });
    }

    #[test]
    fn indirect_tables_follow_the_rules() {
        let table = DATA + 0x1000;
        let ok = pop_with(
            FLAGS,
            |m, l| {
                // A direct descriptor, then an indirect one ending the chain (§2.7.5.3.2); the
                // WRITE flag of the indirect descriptor is ignored.
                put_desc(m, l, 1, d(DATA, 4, R | NX, 6));
                put_desc(m, l, 6, d(table, 32, IND | W, 0));
                let t = m.translate(table, 32).unwrap();
                t.write(0, &d(DATA + 4, 4, R | NX, 1)).unwrap();
                t.write(16, &d(DATA + 8, 8, W, 0)).unwrap();
            },
            1,
        );
        assert_eq!(
            ok.unwrap().1,
            [
                Segment { addr: DATA, len: 4, writable: false },
                Segment { addr: DATA + 4, len: 4, writable: false },
                Segment { addr: DATA + 8, len: 8, writable: true },
            ]
        );
        let not_negotiated = QueueFeatures { indirect_desc: false, ..FLAGS };
        let e = pop_with(not_negotiated, |m, l| put_desc(m, l, 0, d(table, 16, IND, 0)), 0);
        assert_eq!(e.unwrap_err(), DeviceError::IndirectNotNegotiated { head: 0 });
        let e = pop_with(FLAGS, |m, l| put_desc(m, l, 0, d(table, 16, IND | NX, 1)), 0);
        assert_eq!(e.unwrap_err(), DeviceError::IndirectWithNext { head: 0 });
        for len in [0, 8, 17, 24] {
            let e = pop_with(FLAGS, |m, l| put_desc(m, l, 0, d(table, len, IND, 0)), 0);
            assert_eq!(e.unwrap_err(), DeviceError::BadIndirectLen { head: 0, len });
        }
        let nested = pop_with(
            FLAGS,
            |m, l| {
                put_desc(m, l, 0, d(table, 16, IND, 0));
                m.translate(table, 16).unwrap().write(0, &d(table, 16, IND, 0)).unwrap();
            },
            0,
        );
        assert_eq!(nested.unwrap_err(), DeviceError::NestedIndirect { head: 0 });
        let looped = pop_with(
            FLAGS,
            |m, l| {
                put_desc(m, l, 0, d(table, 32, IND, 0));
                let t = m.translate(table, 32).unwrap();
                t.write(0, &d(DATA, 1, R | NX, 1)).unwrap();
                t.write(16, &d(DATA, 1, R | NX, 0)).unwrap();
            },
            0,
        );
        assert_eq!(looped.unwrap_err(), DeviceError::ChainLoop { head: 0, table_len: 2 });
        let beyond = pop_with(
            FLAGS,
            |m, l| {
                put_desc(m, l, 0, d(table, 16, IND, 0));
                m.translate(table, 16).unwrap().write(0, &d(DATA, 1, R | NX, 1)).unwrap();
            },
            0,
        );
        assert_eq!(beyond.unwrap_err(), DeviceError::NextOutOfRange { head: 0, next: 1, table_len: 1 });
        let outside = pop_with(FLAGS, |m, l| put_desc(m, l, 0, d(BASE + LEN as u64 - 16, 32, IND, 0)), 0);
        assert!(matches!(outside.unwrap_err(), DeviceError::BadBuffer { head: 0, len: 32, .. }));
    }

    #[test]
    fn readable_after_writable_is_an_error() {
        let e = pop_with(
            FLAGS,
            |m, l| {
                put_desc(m, l, 0, d(DATA, 1, W | NX, 1));
                put_desc(m, l, 1, d(DATA, 1, R, 0));
            },
            0,
        );
        assert_eq!(e.unwrap_err(), DeviceError::ReadableAfterWritable { head: 0 });
    }

    #[test]
    fn lengths_and_addresses_are_checked() {
        let crossing = pop_with(FLAGS, |m, l| put_desc(m, l, 0, d(BASE + LEN as u64 - 4, 8, W, 0)), 0);
        let end = BASE + LEN as u64;
        assert_eq!(
            crossing.unwrap_err(),
            DeviceError::BadBuffer {
                head: 0,
                addr: end - 4,
                len: 8,
                source: GuestMemoryError::CrossesRegionEnd { addr: end - 4, len: 8, region_end: end }
            }
        );
        let unmapped = pop_with(FLAGS, |m, l| put_desc(m, l, 0, d(0x1000, 8, W, 0)), 0);
        assert!(matches!(
            unmapped.unwrap_err(),
            DeviceError::BadBuffer { source: GuestMemoryError::Unmapped { addr: 0x1000, len: 8 }, .. }
        ));
        let wrapping = pop_with(FLAGS, |m, l| put_desc(m, l, 0, d(u64::MAX - 2, 8, W, 0)), 0);
        assert!(matches!(
            wrapping.unwrap_err(),
            DeviceError::BadBuffer { source: GuestMemoryError::Overflow { .. }, .. }
        ));
    }

    /// Two 2 GiB buffers: more than `u32::MAX` bytes in one chain (§2.7.5.2). Sparse memfd
    /// memory, so only the touched pages exist.
    #[cfg(feature = "std")]
    #[test]
    #[cfg_attr(miri, ignore = "memfd_create is a foreign call")]
    fn chains_longer_than_4_gib_are_errors() {
        let g = crate::virtio::MemfdGuestMemory::single(BASE, 0x8000_0000 + 0x10000).unwrap();
        let l = layout(N);
        let desc = |i: u16, d: Descriptor| {
            g.translate(l.desc_table + 16 * u64::from(i), 16).unwrap().write(0, &d).unwrap()
        };
        // Zero-length buffers are never accessed, so their address is not checked.
        desc(0, d(u64::MAX, 0, R | NX, 1));
        desc(1, d(DATA, 0x8000_0000, R | NX, 2));
        desc(2, d(DATA, 0x8000_0000, W, 0));
        let ring = g.translate(l.avail_ring, 6).unwrap();
        ring.write(4, &zerocopy::little_endian::U16::new(0)).unwrap();
        ring.write(2, &zerocopy::little_endian::U16::new(1)).unwrap();
        let mut dev = DeviceQueue::new(&g, l, FLAGS).unwrap();
        let mut segs = [Segment::default(); 4];
        assert_eq!(dev.pop(&mut segs).unwrap_err(), DeviceError::ChainTooLarge { head: 0, limit: u32::MAX });
    }

    #[test]
    fn the_segment_array_and_the_byte_cap_bound_a_chain() {
        let g = Guest::new();
        let m = g.mem();
        let l = layout(N);
        for i in 0..5 {
            put_desc(&m, &l, i, d(DATA, 100, if i < 4 { R | NX } else { R }, i + 1));
        }
        put_avail(&m, &l, 0, &[0, 0]);
        let mut dev = DeviceQueue::new(&m, l, FLAGS).unwrap();
        let mut segs = [Segment::default(); 4];
        assert_eq!(dev.pop(&mut segs).unwrap_err(), DeviceError::TooManySegments { head: 0, capacity: 4 });
        dev.set_max_chain_bytes(499);
        let mut segs = [Segment::default(); 8];
        assert_eq!(dev.pop(&mut segs).unwrap_err(), DeviceError::ChainTooLarge { head: 0, limit: 499 });
        assert_eq!(dev.error(), None, "chain errors do not stop the queue");
    }

    #[test]
    fn data_is_copied_across_segments() {
        let g = Guest::new();
        let m = g.mem();
        let l = layout(N);
        put_desc(&m, &l, 0, d(DATA, 3, R | NX, 1));
        put_desc(&m, &l, 1, d(DATA + 0x10, 5, R | NX, 2));
        put_desc(&m, &l, 2, d(DATA + 0x20, 4, W | NX, 3));
        put_desc(&m, &l, 3, d(DATA + 0x30, 4, W, 0));
        m.translate(DATA, 3).unwrap().write_bytes(0, b"abc").unwrap();
        m.translate(DATA + 0x10, 5).unwrap().write_bytes(0, b"defgh").unwrap();
        put_avail(&m, &l, 0, &[0]);
        let mut dev = DeviceQueue::new(&m, l, FLAGS).unwrap();
        let mut segs = [Segment::default(); 4];
        let chain = dev.pop(&mut segs).unwrap().unwrap();
        assert_eq!((chain.readable_len(), chain.writable_len()), (8, 8));
        assert_eq!((chain.readable().len(), chain.writable().len()), (2, 2));
        let mut buf = [0u8; 10];
        assert_eq!(chain.read_at(0, &mut buf), Ok(8));
        assert_eq!(&buf[..8], b"abcdefgh");
        assert_eq!(chain.read_at(2, &mut buf[..3]), Ok(3));
        assert_eq!(&buf[..3], b"cde");
        assert_eq!(chain.read_at(8, &mut buf), Ok(0));
        assert_eq!(chain.write_at(1, b"0123456789"), Ok(7));
        let mut out = [0u8; 4];
        m.translate(DATA + 0x20, 4).unwrap().read_bytes(0, &mut out).unwrap();
        assert_eq!(&out, &[0, b'0', b'1', b'2']);
        m.translate(DATA + 0x30, 4).unwrap().read_bytes(0, &mut out).unwrap();
        assert_eq!(&out, b"3456");
        // The chain was copied once: rewriting the table afterwards changes nothing.
        put_desc(&m, &l, 0, d(0xdead, 1, W, 0));
        assert_eq!(chain.segments()[0], Segment { addr: DATA, len: 3, writable: false });
    }
}
