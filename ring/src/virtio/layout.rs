//! Wire layouts of the split virtqueue (virtio 1.x, spec §2.7): descriptors, the available and
//! used rings, their flags, the feature bits that change the protocol, and the byte sizes and
//! alignments of each part.
//!
//! The rings are not Rust structs over shared memory (they could not be: `ring[N]` has a
//! run-time length, and no reference into peer-writable memory is ever formed). Instead this
//! module gives the fixed-size entries as little-endian zerocopy structs, and the offsets of
//! every field, which the queue code reads and writes through [`shm`](crate::shm) accessors.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::virtio::error::LayoutError;

/// Descriptor flag: the buffer continues in the descriptor named by `next` (§2.7.5).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable; otherwise device-readable (§2.7.5).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer holds a table of descriptors (§2.7.5.3).
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Available-ring flag: the driver asks the device not to interrupt it (§2.7.7, without
/// `VIRTIO_F_EVENT_IDX`).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used-ring flag: the device asks the driver not to notify it (§2.7.10, without
/// `VIRTIO_F_EVENT_IDX`).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// Feature bit: descriptors may point to indirect tables (§2.7.5.3).
pub const VIRTIO_F_INDIRECT_DESC: u32 = 28;
/// Feature bit: notifications are suppressed with `used_event` / `avail_event` instead of the
/// ring flags (§2.7.7, §2.7.10).
pub const VIRTIO_F_EVENT_IDX: u32 = 29;
/// Feature bit: the device complies with virtio 1.x (little-endian rings, §6).
pub const VIRTIO_F_VERSION_1: u32 = 32;
/// Feature bit: buffer addresses are I/O virtual addresses translated by a platform IOMMU
/// (§6); pvio's [`GuestMemory`](crate::virtio::GuestMemory) does the translation either way.
pub const VIRTIO_F_ACCESS_PLATFORM: u32 = 33;

/// Largest queue size (§2.7: "the maximum Queue Size value is 32768").
pub const MAX_QUEUE_SIZE: u16 = 32768;

/// Minimum alignment of the descriptor table in guest memory (§2.7, table of parts).
pub const DESC_TABLE_ALIGN: u64 = 16;
/// Minimum alignment of the available ring in guest memory (§2.7).
pub const AVAIL_RING_ALIGN: u64 = 2;
/// Minimum alignment of the used ring in guest memory (§2.7).
pub const USED_RING_ALIGN: u64 = 4;

/// `struct virtq_desc` (§2.7.5): one buffer of a chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct Descriptor {
    /// Guest-physical (or I/O virtual) address of the buffer.
    pub addr: U64,
    /// Length of the buffer in bytes.
    pub len: U32,
    /// `VIRTQ_DESC_F_*` flags.
    pub flags: U16,
    /// Index of the next descriptor when `flags` has `VIRTQ_DESC_F_NEXT`.
    pub next: U16,
}

impl Descriptor {
    /// A descriptor from native values.
    pub fn new(addr: u64, len: u32, flags: u16, next: u16) -> Self {
        Descriptor { addr: addr.into(), len: len.into(), flags: flags.into(), next: next.into() }
    }
}

/// `struct virtq_used_elem` (§2.7.8): a chain the device has finished with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct UsedElem {
    /// Index of the head descriptor of the chain (`u32` for padding reasons, §2.7.8).
    pub id: U32,
    /// Bytes the device wrote into the chain's device-writable buffers.
    pub len: U32,
}

/// Size in bytes of a descriptor.
pub const DESC_SIZE: usize = 16;
/// Size in bytes of a used-ring element.
pub const USED_ELEM_SIZE: usize = 8;

/// Byte offset of `flags` in the available ring.
pub const AVAIL_FLAGS: usize = 0;
/// Byte offset of `idx` in the available ring.
pub const AVAIL_IDX: usize = 2;
/// Byte offset of `ring[0]` in the available ring.
pub const AVAIL_RING: usize = 4;
/// Byte offset of `flags` in the used ring.
pub const USED_FLAGS: usize = 0;
/// Byte offset of `idx` in the used ring.
pub const USED_IDX: usize = 2;
/// Byte offset of `ring[0]` in the used ring.
pub const USED_RING: usize = 4;

/// A queue size: a power of two from 1 to 32768 (§2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueSize(u16);

impl QueueSize {
    /// Checks that `size` is a power of two no larger than [`MAX_QUEUE_SIZE`].
    pub const fn new(size: u16) -> Result<Self, LayoutError> {
        if size.is_power_of_two() && size <= MAX_QUEUE_SIZE {
            Ok(QueueSize(size))
        } else {
            Err(LayoutError::BadQueueSize { size })
        }
    }

    /// The number of entries.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Bytes of the descriptor table: `16 * size`.
    pub const fn desc_table_bytes(self) -> usize {
        DESC_SIZE * self.0 as usize
    }

    /// Bytes of the available ring with `used_event`: `6 + 2 * size`.
    pub const fn avail_ring_bytes(self) -> usize {
        6 + 2 * self.0 as usize
    }

    /// Bytes of the used ring with `avail_event`: `6 + 8 * size`.
    pub const fn used_ring_bytes(self) -> usize {
        6 + USED_ELEM_SIZE * self.0 as usize
    }

    /// Byte offset of `ring[slot]` in the available ring.
    pub const fn avail_entry(self, slot: u16) -> usize {
        AVAIL_RING + 2 * (slot & (self.0 - 1)) as usize
    }

    /// Byte offset of `used_event` (after `ring[size]`) in the available ring.
    pub const fn used_event(self) -> usize {
        AVAIL_RING + 2 * self.0 as usize
    }

    /// Byte offset of `ring[slot]` in the used ring.
    pub const fn used_entry(self, slot: u16) -> usize {
        USED_RING + USED_ELEM_SIZE * (slot & (self.0 - 1)) as usize
    }

    /// Byte offset of `avail_event` (after `ring[size]`) in the used ring.
    pub const fn avail_event(self) -> usize {
        USED_RING + USED_ELEM_SIZE * self.0 as usize
    }
}

/// Where a queue's three parts live in guest memory (the addresses a driver writes to the
/// transport's `queue_desc`, `queue_driver` and `queue_device` registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLayout {
    /// Number of entries.
    pub size: QueueSize,
    /// Guest address of the descriptor table (16-byte aligned).
    pub desc_table: u64,
    /// Guest address of the available ring (2-byte aligned).
    pub avail_ring: u64,
    /// Guest address of the used ring (4-byte aligned).
    pub used_ring: u64,
}

impl QueueLayout {
    /// A layout at the given addresses, checked for the alignments of §2.7 and for parts that
    /// would wrap around the end of the address space.
    pub fn new(
        size: QueueSize,
        desc_table: u64,
        avail_ring: u64,
        used_ring: u64,
    ) -> Result<Self, LayoutError> {
        let parts = [
            ("descriptor table", desc_table, DESC_TABLE_ALIGN, size.desc_table_bytes()),
            ("available ring", avail_ring, AVAIL_RING_ALIGN, size.avail_ring_bytes()),
            ("used ring", used_ring, USED_RING_ALIGN, size.used_ring_bytes()),
        ];
        for (part, addr, align, len) in parts {
            if addr % align != 0 {
                return Err(LayoutError::Misaligned { part, addr, align });
            }
            if addr.checked_add(len as u64).is_none() {
                return Err(LayoutError::Wraps { part, addr, len });
            }
        }
        Ok(QueueLayout { size, desc_table, avail_ring, used_ring })
    }

    /// The three parts packed one after the other from `base` (descriptor table, available
    /// ring, used ring), each at its minimum alignment; `base` must be 16-byte aligned.
    pub fn contiguous(size: QueueSize, base: u64) -> Result<Self, LayoutError> {
        let avail = base.wrapping_add(size.desc_table_bytes() as u64);
        let used = avail.wrapping_add(size.avail_ring_bytes() as u64).next_multiple_of(USED_RING_ALIGN);
        if base.checked_add(Self::contiguous_bytes(size) as u64).is_none() {
            return Err(LayoutError::Wraps { part: "queue", addr: base, len: Self::contiguous_bytes(size) });
        }
        Self::new(size, base, avail, used)
    }

    /// Bytes that [`contiguous`](Self::contiguous) occupies.
    pub const fn contiguous_bytes(size: QueueSize) -> usize {
        (size.desc_table_bytes() + size.avail_ring_bytes()).next_multiple_of(USED_RING_ALIGN as usize)
            + size.used_ring_bytes()
    }
}

/// The negotiated features that change how a split virtqueue operates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueFeatures {
    /// `VIRTIO_F_EVENT_IDX`: notifications are suppressed with `used_event`/`avail_event`.
    pub event_idx: bool,
    /// `VIRTIO_F_INDIRECT_DESC`: descriptors may refer to indirect tables.
    pub indirect_desc: bool,
}

impl QueueFeatures {
    /// The queue features among negotiated feature bits (`1 << VIRTIO_F_*`).
    pub const fn from_bits(features: u64) -> Self {
        QueueFeatures {
            event_idx: features & (1 << VIRTIO_F_EVENT_IDX) != 0,
            indirect_desc: features & (1 << VIRTIO_F_INDIRECT_DESC) != 0,
        }
    }

    /// The feature bits these stand for.
    pub const fn bits(self) -> u64 {
        (self.event_idx as u64) << VIRTIO_F_EVENT_IDX | (self.indirect_desc as u64) << VIRTIO_F_INDIRECT_DESC
    }
}

/// `vring_need_event` (§2.7.10, §2.7.7): whether moving an index from `old` to `new` passes
/// the peer's event index `event`, i.e. whether `event` lies in `old..new` (wrapping).
#[inline]
pub const fn vring_need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_sizes_match_the_spec() {
        assert_eq!(size_of::<Descriptor>(), 16);
        assert_eq!(size_of::<UsedElem>(), 8);
        let d = Descriptor::new(0x1122_3344_5566_7788, 0x99aa_bbcc, 0x0102, 0x0304);
        assert_eq!(
            d.as_bytes(),
            &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xcc, 0xbb, 0xaa, 0x99, 2, 1, 4, 3],
            "little-endian addr, len, flags, next in that order"
        );
        let u = UsedElem { id: 5.into(), len: 0x0102_0304.into() };
        assert_eq!(u.as_bytes(), &[5, 0, 0, 0, 4, 3, 2, 1]);
    }

    #[test]
    fn ring_sizes_and_offsets() {
        let q = QueueSize::new(256).unwrap();
        assert_eq!(q.desc_table_bytes(), 4096);
        assert_eq!(q.avail_ring_bytes(), 518);
        assert_eq!(q.used_ring_bytes(), 2054);
        assert_eq!(q.avail_entry(0), 4);
        assert_eq!(q.avail_entry(257), 6, "slots wrap modulo the size");
        assert_eq!(q.used_event(), 516);
        assert_eq!(q.used_entry(255), 4 + 8 * 255);
        assert_eq!(q.avail_event(), 2052);
        let one = QueueSize::new(1).unwrap();
        assert_eq!((one.avail_ring_bytes(), one.used_ring_bytes(), one.used_event()), (8, 14, 6));
        let max = QueueSize::new(MAX_QUEUE_SIZE).unwrap();
        assert_eq!(max.used_ring_bytes(), 6 + 8 * 32768);
        assert_eq!(max.avail_entry(u16::MAX), 4 + 2 * 32767);
    }

    #[test]
    fn queue_sizes_are_powers_of_two_up_to_32768() {
        for ok in [1u16, 2, 4, 128, 1024, 32768] {
            assert_eq!(QueueSize::new(ok).map(QueueSize::get), Ok(ok));
        }
        for bad in [0u16, 3, 6, 100, 32767, 32769, 65535] {
            assert_eq!(QueueSize::new(bad), Err(LayoutError::BadQueueSize { size: bad }));
        }
    }

    #[test]
    fn layouts_check_alignment_and_wrap() {
        let q = QueueSize::new(16).unwrap();
        assert!(QueueLayout::new(q, 0x1000, 0x1102, 0x1204).is_ok(), "2- and 4-byte alignment suffice");
        assert!(matches!(
            QueueLayout::new(q, 0x1008, 0x2000, 0x3000),
            Err(LayoutError::Misaligned { align: 16, .. })
        ));
        assert!(matches!(
            QueueLayout::new(q, 0x1000, 0x2001, 0x3000),
            Err(LayoutError::Misaligned { align: 2, .. })
        ));
        assert!(matches!(
            QueueLayout::new(q, 0x1000, 0x2000, 0x3002),
            Err(LayoutError::Misaligned { align: 4, .. })
        ));
        assert!(matches!(QueueLayout::new(q, u64::MAX - 15, 0, 0), Err(LayoutError::Wraps { .. })));
        let c = QueueLayout::contiguous(q, 0x4000).unwrap();
        assert_eq!((c.desc_table, c.avail_ring, c.used_ring), (0x4000, 0x4100, 0x4128));
        assert_eq!(QueueLayout::contiguous_bytes(q), 0x128 + 6 + 8 * 16);
    }

    #[test]
    fn need_event_is_a_wrapping_range_test() {
        // `event` in `old..new` (exclusive of `old`'s predecessor, inclusive of `new - 1`).
        assert!(vring_need_event(0, 1, 0));
        assert!(!vring_need_event(1, 1, 0));
        assert!(vring_need_event(4, 8, 2));
        assert!(!vring_need_event(8, 8, 2));
        assert!(!vring_need_event(1, 8, 2));
        assert!(vring_need_event(u16::MAX, 3, 65530), "the range wraps through zero");
        assert!(vring_need_event(1, 3, 65530));
        assert!(!vring_need_event(5, 3, 65530));
        assert!(!vring_need_event(7, 7, 7), "nothing published: never");
    }

    #[test]
    fn features_from_bits() {
        let f = QueueFeatures::from_bits(1 << VIRTIO_F_EVENT_IDX | 1 << VIRTIO_F_VERSION_1);
        assert_eq!(f, QueueFeatures { event_idx: true, indirect_desc: false });
        assert_eq!(QueueFeatures::from_bits(f.bits()), f);
        assert!(QueueFeatures::from_bits(1 << VIRTIO_F_INDIRECT_DESC).indirect_desc);
    }
}
