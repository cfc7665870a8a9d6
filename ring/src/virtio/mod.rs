//! virtio 1.x split virtqueues (spec §2.7), both sides, under the same untrusted-memory rules
//! as the Xen ring.
//!
//! - [`layout`]: descriptors, the available and used rings, flags, feature bits, queue sizes
//!   and the alignments of §2.7.
//! - [`GuestMemory`]: translation of guest-physical (or I/O virtual) ranges to
//!   [`SharedMem`](crate::SharedMem) regions, refusing ranges that leave a region:
//!   [`GuestRegion`], [`GuestRegions`] (no allocation), with `std` [`MemfdGuestMemory`], with
//!   the `vm-memory` feature `VmGuestMemory` over rust-vmm's `GuestMemoryMmap`.
//! - [`DriverQueue`] (needs `alloc`): adds chains of readable then writable buffers (direct or
//!   through indirect tables), publishes a batch with one index store and says whether to
//!   kick, reclaims used chains returning the caller's token, suppresses interrupts.
//! - [`DeviceQueue`]: pops validated [`Chain`]s into a caller-provided [`Segment`] array (no
//!   allocation), copies data out of and into their buffers, returns them with one used-index
//!   store per batch and says whether to interrupt, suppresses notifications.
//!
//! The queue's own rings live in guest memory at guest addresses ([`QueueLayout`]), as in the
//! specification. Rings are little-endian (virtio 1.x, `VIRTIO_F_VERSION_1`); legacy
//! (guest-endian) queues are not supported.
//!
//! ## Example: one request through a queue, both sides in one process
//!
//! ```
//! use pvio_ring::virtio::{Buffer, DeviceQueue, DriverQueue, GuestMemory, GuestRegion};
//! use pvio_ring::virtio::{QueueFeatures, QueueLayout, QueueSize, Segment};
//! use pvio_ring::HeapRegion;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ram = HeapRegion::new(64 * 1024);
//! let guest = GuestRegion::new(0x8000_0000, ram.mem())?; // 64 KiB of "guest RAM" at 2 GiB
//! let layout = QueueLayout::contiguous(QueueSize::new(256)?, 0x8000_0000)?;
//! let features = QueueFeatures { event_idx: true, indirect_desc: false };
//! let mut driver = DriverQueue::new(&guest, layout, features)?;
//! let mut device = DeviceQueue::new(&guest, layout, features)?;
//!
//! // The driver: a request buffer and a response buffer, with a token of its choice.
//! let (req, rsp) = (0x8000_8000, 0x8000_9000);
//! guest.translate(req, 5)?.write_bytes(0, b"hello")?;
//! driver.add(&[Buffer::new(req, 5)], &[Buffer::new(rsp, 64)], "my request").map_err(|e| e.error)?;
//! assert!(driver.publish().is_needed()); // avail_event is 0: kick the device
//!
//! // The device: a validated chain, described in a caller-provided array.
//! let mut segments = [Segment::default(); 8];
//! let chain = device.pop(&mut segments)?.expect("published");
//! let mut data = [0u8; 16];
//! let n = chain.read_at(0, &mut data)?;
//! assert_eq!(&data[..n], b"hello");
//! let written = chain.write_at(0, b"world")?;
//! device.add_used(chain.head(), written as u32)?;
//! assert!(device.push_used().is_needed()); // used_event is 0: interrupt the driver
//!
//! let used = driver.pop_used()?.expect("used");
//! assert_eq!((used.token, used.len), ("my request", 5));
//! # Ok(())
//! # }
//! ```
//!
//! ## Memory ordering
//!
//! Each index is published with a Release store and read with an Acquire load (available
//! `idx`: `DriverQueue::publish` → `DeviceQueue::pop`; used `idx`: `DeviceQueue::push_used` →
//! `DriverQueue::pop_used`). Notification suppression follows the classic store-buffer
//! pattern: a side that publishes work stores its index, executes a SeqCst fence, then reads
//! the peer's event field or flag; a side that goes idle writes its event field or flag,
//! executes a SeqCst fence, then re-reads the peer's index. So either the idle side sees the
//! work, or the busy side sees the request and notifies: no kick or interrupt is lost. The
//! loom models in `tests/loom_virtio.rs` check this, with `VIRTIO_F_EVENT_IDX` and with the
//! flags.

pub mod chain;
pub mod device;
#[cfg(feature = "alloc")]
pub mod driver;
pub mod error;
pub mod layout;
pub mod memory;
mod rings;
#[cfg(all(feature = "vm-memory", not(loom)))]
mod vm_memory;

pub use chain::{Chain, Segment};
pub use device::DeviceQueue;
#[cfg(feature = "alloc")]
pub use driver::{Buffer, DriverQueue, Used};
pub use error::{AddError, DeviceError, DriverError, GuestMemoryError, LayoutError, Rejected};
pub use layout::{vring_need_event, Descriptor, QueueFeatures, QueueLayout, QueueSize, UsedElem};
#[cfg(all(feature = "std", not(loom)))]
pub use memory::MemfdGuestMemory;
pub use memory::{GuestMemory, GuestRegion, GuestRegions, GuestSlice};
#[cfg(all(feature = "vm-memory", not(loom)))]
pub use vm_memory::VmGuestMemory;

/// Fixtures for the unit tests: one heap region as guest memory, a queue at its start.
#[cfg(all(test, feature = "alloc", not(loom)))]
pub(crate) mod testutil {
    use super::*;
    use crate::HeapRegion;

    /// Guest address of the region.
    pub(crate) const BASE: u64 = 0x10_0000;
    /// Guest address of the data area (after the queue).
    pub(crate) const DATA: u64 = BASE + 0x8000;
    /// Bytes of guest memory.
    pub(crate) const LEN: usize = 0x1_0000;

    pub(crate) struct Guest {
        pub(crate) heap: HeapRegion,
    }

    impl Guest {
        pub(crate) fn new() -> Self {
            Guest { heap: HeapRegion::new(LEN) }
        }

        pub(crate) fn mem(&self) -> GuestRegion<'_> {
            GuestRegion::new(BASE, self.heap.mem()).unwrap()
        }
    }

    pub(crate) fn layout(size: u16) -> QueueLayout {
        QueueLayout::contiguous(QueueSize::new(size).unwrap(), BASE).unwrap()
    }

    pub(crate) const FLAGS: QueueFeatures = QueueFeatures { event_idx: false, indirect_desc: true };
    pub(crate) const EVENT: QueueFeatures = QueueFeatures { event_idx: true, indirect_desc: true };

    /// Writes descriptor `i` of the ring's table directly (a hand-made, possibly hostile, driver).
    pub(crate) fn put_desc(m: &GuestRegion<'_>, l: &QueueLayout, i: u16, d: Descriptor) {
        m.translate(l.desc_table + 16 * u64::from(i), 16).unwrap().write(0, &d).unwrap();
    }

    /// Makes `heads` available by hand: ring entries from slot `first`, then `idx`.
    pub(crate) fn put_avail(m: &GuestRegion<'_>, l: &QueueLayout, first: u16, heads: &[u16]) {
        let ring = m.translate(l.avail_ring, l.size.avail_ring_bytes()).unwrap();
        for (k, h) in heads.iter().enumerate() {
            let slot = first.wrapping_add(k as u16);
            ring.write(l.size.avail_entry(slot), &zerocopy::little_endian::U16::new(*h)).unwrap();
        }
        set_avail_idx(m, l, first.wrapping_add(heads.len() as u16));
    }

    pub(crate) fn set_avail_idx(m: &GuestRegion<'_>, l: &QueueLayout, idx: u16) {
        let ring = m.translate(l.avail_ring, 4).unwrap();
        ring.write(layout::AVAIL_IDX, &zerocopy::little_endian::U16::new(idx)).unwrap();
    }

    pub(crate) fn set_used_idx(m: &GuestRegion<'_>, l: &QueueLayout, idx: u16) {
        let ring = m.translate(l.used_ring, 4).unwrap();
        ring.write(layout::USED_IDX, &zerocopy::little_endian::U16::new(idx)).unwrap();
    }
}
