//! The device side of a split virtqueue: takes chains the driver made available, returns them
//! as used.

use crate::notify::Notify;
use crate::sync::{fence, Ordering};
use crate::virtio::chain::{walk, Chain, Segment};
use crate::virtio::error::{DeviceError, LayoutError};
use crate::virtio::layout::{
    vring_need_event, QueueFeatures, QueueLayout, UsedElem, VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_USED_F_NO_NOTIFY,
};
use crate::virtio::memory::GuestMemory;
use crate::virtio::rings::Rings;

/// The device's handle on a split virtqueue (what a VMM, a vhost-user back end or a device
/// model holds).
///
/// Trusts nothing the driver wrote. The available `idx` is read with Acquire and validated: an
/// index more than the queue size ahead of the next entry, or one that moves backwards, stops
/// the queue ([`DeviceError::is_latched`]): every later pop returns the same error and nothing
/// more is read, so a hostile driver causes an error, never a loop. Each chain is walked once
/// and validated as described in [`chain`](crate::virtio::chain).
///
/// Used entries are written with [`add_used`](Self::add_used) and published together by
/// [`push_used`](Self::push_used) with one store of the used `idx`, which says whether the
/// driver wants an interrupt.
pub struct DeviceQueue<'m, M: ?Sized> {
    mem: &'m M,
    rings: Rings<'m>,
    features: QueueFeatures,
    /// Cap on a chain's total bytes (at most `u32::MAX`).
    max_chain_bytes: u32,
    /// Next available entry to take (`last_avail_idx`). Invariant: `next_avail` never passes
    /// `avail_seen`, and `avail_seen - next_avail <= size` (wrapping).
    next_avail: u16,
    /// The last validated available `idx`.
    avail_seen: u16,
    /// Next used slot to fill (private used index, including unpublished entries).
    next_used: u16,
    /// The value last stored to the shared used `idx`.
    used_pushed: u16,
    /// Chains popped (with a head inside the table) and not yet given to `add_used`.
    in_flight: u32,
    broken: Option<DeviceError>,
}

impl<'m, M: GuestMemory + ?Sized> DeviceQueue<'m, M> {
    /// Attaches to the queue at `layout` in `mem`, with negotiated `features`; all indices
    /// start at 0, as after the driver enabled the queue (§2.7.12, §4.1.5.1.3). The rings are
    /// translated and checked once, here.
    pub fn new(mem: &'m M, layout: QueueLayout, features: QueueFeatures) -> Result<Self, LayoutError> {
        Ok(DeviceQueue {
            rings: Rings::new(mem, &layout)?,
            mem,
            features,
            max_chain_bytes: u32::MAX,
            next_avail: 0,
            avail_seen: 0,
            next_used: 0,
            used_pushed: 0,
            in_flight: 0,
            broken: None,
        })
    }

    /// Caps the total bytes of a chain: longer chains are rejected with
    /// [`DeviceError::ChainTooLarge`]. The default is `u32::MAX` (§2.7.5.2).
    pub fn set_max_chain_bytes(&mut self, max: u32) {
        self.max_chain_bytes = max;
    }

    /// Queue size.
    pub fn size(&self) -> u16 {
        self.rings.size()
    }

    /// The features the queue operates with.
    pub fn features(&self) -> QueueFeatures {
        self.features
    }

    /// The next available entry to take (`last_avail_idx`).
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    /// The private used index (entries added, published or not).
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// The protocol error that stopped the queue, if any.
    pub fn error(&self) -> Option<DeviceError> {
        self.broken
    }

    /// Reads and validates the available `idx`; returns the number of entries not yet taken.
    fn refresh(&mut self) -> Result<u16, DeviceError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        // Acquire: pairs with the Release store in `DriverQueue::publish`, so the ring entries
        // and descriptors the driver wrote before it are visible before we copy them.
        let avail_idx = u16::from_le(self.rings.avail_idx.load(Ordering::Acquire));
        let pending = avail_idx.wrapping_sub(self.next_avail);
        let seen = self.avail_seen.wrapping_sub(self.next_avail);
        // Behind what was already validated (serial-number arithmetic: less than half the
        // index space back), whether or not behind `next_avail` itself.
        let behind = self.avail_seen.wrapping_sub(avail_idx);
        if pending < seen || (pending > self.size() && behind != 0 && behind <= 0x8000) {
            return Err(self.latch(DeviceError::AvailIdxRewound { avail_idx, seen: self.avail_seen }));
        }
        if pending > self.size() {
            return Err(self.latch(DeviceError::AvailIdxOverflow {
                avail_idx,
                next_avail: self.next_avail,
                size: self.size(),
            }));
        }
        self.avail_seen = avail_idx;
        Ok(pending)
    }

    fn latch(&mut self, err: DeviceError) -> DeviceError {
        self.broken = Some(err);
        self.avail_seen = self.next_avail;
        err
    }

    /// Available entries not yet taken, after validating the available `idx`.
    pub fn pending(&mut self) -> Result<u16, DeviceError> {
        self.refresh()
    }

    /// Takes the next available chain, validates it and describes its buffers in `segments`
    /// (which bounds the number of buffers a chain may have: a longer chain is rejected with
    /// [`DeviceError::TooManySegments`]). `Ok(None)` when the driver made nothing more
    /// available.
    ///
    /// A chain-level error consumes the available entry: return its head
    /// ([`DeviceError::chain_head`]) with `add_used(head, 0)`. A latched error stops the queue.
    pub fn pop<'b>(&mut self, segments: &'b mut [Segment]) -> Result<Option<Chain<'b, 'm, M>>, DeviceError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        if self.next_avail == self.avail_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        // One copy of the ring entry.
        let head = self.rings.read_avail(self.next_avail)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        let size = self.size();
        if head >= size {
            return Err(DeviceError::HeadOutOfRange { head, size });
        }
        self.in_flight += 1;
        walk(self.mem, &self.rings, head, self.features.indirect_desc, self.max_chain_bytes, segments)
            .map(Some)
    }

    /// Writes a used element for the chain at `head`, of which the device wrote `len` bytes,
    /// without publishing it (§2.7.8.2: the element is complete before `idx` moves). Fails if
    /// `head` is outside the table or every popped chain was already returned.
    pub fn add_used(&mut self, head: u16, len: u32) -> Result<(), DeviceError> {
        if head >= self.size() {
            return Err(DeviceError::UsedHeadOutOfRange { head: head.into(), size: self.size() });
        }
        if self.in_flight == 0 {
            return Err(DeviceError::NothingToReturn);
        }
        self.rings.write_used(self.next_used, &UsedElem { id: u32::from(head).into(), len: len.into() })?;
        self.next_used = self.next_used.wrapping_add(1);
        self.in_flight -= 1;
        Ok(())
    }

    /// Publishes every added used element with one store of the used `idx` and says whether
    /// the driver asked for an interrupt: with `VIRTIO_F_EVENT_IDX`, whether `used_event` lies
    /// in the newly published range (§2.7.7.2); otherwise whether `VIRTQ_AVAIL_F_NO_INTERRUPT`
    /// is clear.
    pub fn push_used(&mut self) -> Notify {
        // The previous value comes from our own records, never from shared memory.
        let old = self.used_pushed;
        let new = self.next_used;
        if old == new {
            return Notify::NOT_NEEDED;
        }
        // Release: pairs with the Acquire load of the used `idx` in `DriverQueue::refresh`, so
        // the used elements are complete before the driver reads them.
        self.rings.used_idx.store(new.to_le(), Ordering::Release);
        self.used_pushed = new;
        // Full barrier between publishing `idx` and reading the driver's suppression field:
        // pairs with the SeqCst fence in `DriverQueue::enable_interrupts` (which writes
        // `used_event` or clears the flag, then re-reads `idx`). Either the driver sees our
        // new `idx`, or we see its request for an interrupt.
        fence(Ordering::SeqCst);
        let needed = if self.features.event_idx {
            vring_need_event(u16::from_le(self.rings.used_event.load(Ordering::Relaxed)), new, old)
        } else {
            u16::from_le(self.rings.avail_flags.load(Ordering::Relaxed)) & VIRTQ_AVAIL_F_NO_INTERRUPT == 0
        };
        Notify::from_needed(needed)
    }

    /// Asks the driver not to notify the device of new chains (while the device is polling):
    /// sets `VIRTQ_USED_F_NO_NOTIFY`, or with `VIRTIO_F_EVENT_IDX` moves `avail_event` behind
    /// the next entry so no new index passes it.
    pub fn disable_notification(&mut self) {
        if self.features.event_idx {
            self.rings.avail_event.store(self.next_avail.wrapping_sub(1).to_le(), Ordering::Relaxed);
        } else {
            self.rings.used_flags.store(VIRTQ_USED_F_NO_NOTIFY.to_le(), Ordering::Relaxed);
        }
    }

    /// Asks the driver to notify the device of the next chain, then re-checks the available
    /// ring: call before the device goes idle, and keep popping if it returns `true` (a chain
    /// was made available before the request could be seen, so no notification may come for
    /// it). With `VIRTIO_F_EVENT_IDX` publishes `avail_event` = the next entry (§2.7.10).
    pub fn enable_notification(&mut self) -> Result<bool, DeviceError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        if self.features.event_idx {
            self.rings.avail_event.store(self.next_avail.to_le(), Ordering::Relaxed);
        } else {
            self.rings.used_flags.store(0, Ordering::Relaxed);
        }
        // Full barrier between publishing the request and re-reading the available `idx`:
        // pairs with the SeqCst fence in `DriverQueue::publish` (store `idx`, fence, read
        // `avail_event`/flags). Either we see the new `idx` here, or the driver sees our
        // request and notifies.
        fence(Ordering::SeqCst);
        Ok(self.refresh()? > 0)
    }
}

impl<M: ?Sized> core::fmt::Debug for DeviceQueue<'_, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceQueue")
            .field("features", &self.features)
            .field("next_avail", &self.next_avail)
            .field("avail_seen", &self.avail_seen)
            .field("next_used", &self.next_used)
            .field("used_pushed", &self.used_pushed)
            .field("in_flight", &self.in_flight)
            .field("broken", &self.broken)
            .field("shared", &self.rings)
            .finish()
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use super::*;
    use crate::virtio::layout::{Descriptor, VIRTQ_DESC_F_WRITE};
    use crate::virtio::testutil::*;

    const N: u16 = 4;

    #[test]
    fn an_avail_idx_too_far_ahead_stops_the_queue() {
        let g = Guest::new();
        let m = g.mem();
        let l = layout(N);
        put_desc(&m, &l, 0, Descriptor::new(DATA, 8, VIRTQ_DESC_F_WRITE, 0));
        put_avail(&m, &l, 0, &[0, 0]);
        let mut dev = DeviceQueue::new(&m, l, FLAGS).unwrap();
        let mut segs = [Segment::default(); 2];
        assert_eq!(dev.pop(&mut segs).unwrap().unwrap().head(), 0);
        set_avail_idx(&m, &l, 2 + N + 1);
        // One validated entry is still there; the next refresh sees the wild index.
        assert_eq!(dev.pop(&mut segs).unwrap().unwrap().head(), 0);
        let err = DeviceError::AvailIdxOverflow { avail_idx: 7, next_avail: 2, size: 4 };
        assert_eq!(dev.pop(&mut segs).unwrap_err(), err);
        assert!(err.is_latched());
        set_avail_idx(&m, &l, 3);
        assert_eq!(dev.pop(&mut segs).unwrap_err(), err, "latched: nothing more is served");
        assert_eq!(dev.enable_notification().unwrap_err(), err);
        assert_eq!(dev.pending().unwrap_err(), err);
        assert_eq!(dev.error(), Some(err));
        assert_eq!(dev.next_avail(), 2);
    }

    #[test]
    fn a_rewound_avail_idx_stops_the_queue() {
        let g = Guest::new();
        let m = g.mem();
        let l = layout(N);
        put_desc(&m, &l, 1, Descriptor::new(DATA, 8, 0, 0));
        put_avail(&m, &l, 0, &[1, 1, 1]);
        let mut dev = DeviceQueue::new(&m, l, FLAGS).unwrap();
        assert_eq!(dev.pending(), Ok(3));
        let mut segs = [Segment::default(); 2];
        assert!(dev.pop(&mut segs).unwrap().is_some());
        set_avail_idx(&m, &l, 2);
        // Entries 1 and 2 were validated with idx 3: served; then the rewind is seen.
        assert!(dev.pop(&mut segs).unwrap().is_some());
        assert!(dev.pop(&mut segs).unwrap().is_some());
        assert_eq!(dev.pop(&mut segs).unwrap_err(), DeviceError::AvailIdxRewound { avail_idx: 2, seen: 3 });
        // Rewound but still ahead of the next entry.
        let mut dev = DeviceQueue::new(&m, l, FLAGS).unwrap();
        set_avail_idx(&m, &l, 3);
        assert!(dev.pop(&mut segs).unwrap().is_some());
        set_avail_idx(&m, &l, 2);
        assert_eq!(dev.pending(), Err(DeviceError::AvailIdxRewound { avail_idx: 2, seen: 3 }));
    }

    #[test]
    fn used_entries_need_popped_chains() {
        let g = Guest::new();
        let m = g.mem();
        let l = layout(N);
        let mut dev = DeviceQueue::new(&m, l, FLAGS).unwrap();
        assert_eq!(dev.add_used(0, 0), Err(DeviceError::NothingToReturn));
        assert_eq!(dev.add_used(4, 0), Err(DeviceError::UsedHeadOutOfRange { head: 4, size: 4 }));
        assert!(!dev.push_used().is_needed(), "nothing to publish");
        put_desc(&m, &l, 0, Descriptor::new(DATA, 8, 0, 0));
        put_avail(&m, &l, 0, &[0, 9]);
        let mut segs = [Segment::default(); 2];
        assert!(dev.pop(&mut segs).unwrap().is_some());
        assert_eq!(dev.pop(&mut segs).unwrap_err(), DeviceError::HeadOutOfRange { head: 9, size: 4 });
        dev.add_used(0, 5).unwrap();
        assert_eq!(dev.add_used(0, 5), Err(DeviceError::NothingToReturn), "head 9 cannot be returned");
        assert!(dev.push_used().is_needed());
        let used = m.translate(l.used_ring, l.size.used_ring_bytes()).unwrap();
        assert_eq!(used.read::<u16>(2), Ok(1));
        assert_eq!(used.read::<UsedElem>(4), Ok(UsedElem { id: 0.into(), len: 5.into() }));
    }

    #[test]
    fn interrupts_follow_the_flag_or_used_event() {
        for features in [FLAGS, EVENT] {
            let g = Guest::new();
            let m = g.mem();
            let l = layout(N);
            put_desc(&m, &l, 0, Descriptor::new(DATA, 8, 0, 0));
            let avail = m.translate(l.avail_ring, l.size.avail_ring_bytes()).unwrap();
            let mut dev = DeviceQueue::new(&m, l, features).unwrap();
            let mut segs = [Segment::default(); 2];
            let mut complete = |dev: &mut DeviceQueue<'_, _>, n: u16| {
                let first = dev.next_avail();
                put_avail(&m, &l, first, &[0; 4][..n as usize]);
                for _ in 0..n {
                    let head = dev.pop(&mut segs).unwrap().unwrap().head();
                    dev.add_used(head, 0).unwrap();
                }
                dev.push_used().is_needed()
            };
            if features.event_idx {
                avail.write(l.size.used_event(), &5u16).unwrap(); // interrupt when idx passes 5
                assert!(!complete(&mut dev, 3), "used idx 0 -> 3");
                assert!(!complete(&mut dev, 2), "used idx 3 -> 5");
                assert!(complete(&mut dev, 1), "used idx 5 -> 6 passes used_event 5");
                assert!(!complete(&mut dev, 1), "6 -> 7: used_event not moved");
                avail.write(0, &VIRTQ_AVAIL_F_NO_INTERRUPT).unwrap();
                avail.write(l.size.used_event(), &7u16).unwrap();
                assert!(complete(&mut dev, 1), "the flag is ignored with EVENT_IDX");
            } else {
                assert!(complete(&mut dev, 1));
                avail.write(0, &VIRTQ_AVAIL_F_NO_INTERRUPT).unwrap();
                assert!(!complete(&mut dev, 2));
                avail.write(0, &0u16).unwrap();
                assert!(complete(&mut dev, 1));
            }
        }
    }

    #[test]
    fn enable_notification_publishes_then_rechecks() {
        for features in [FLAGS, EVENT] {
            let g = Guest::new();
            let m = g.mem();
            let l = layout(N);
            put_desc(&m, &l, 0, Descriptor::new(DATA, 8, 0, 0));
            let used = m.translate(l.used_ring, l.size.used_ring_bytes()).unwrap();
            let mut dev = DeviceQueue::new(&m, l, features).unwrap();
            dev.disable_notification();
            if features.event_idx {
                assert_eq!(used.read::<u16>(l.size.avail_event()), Ok(u16::MAX));
            } else {
                assert_eq!(used.read::<u16>(0), Ok(VIRTQ_USED_F_NO_NOTIFY));
            }
            assert_eq!(dev.enable_notification(), Ok(false));
            assert_eq!(used.read::<u16>(0), Ok(0));
            assert_eq!(used.read::<u16>(l.size.avail_event()), Ok(0));
            put_avail(&m, &l, 0, &[0]);
            assert_eq!(dev.enable_notification(), Ok(true), "a chain arrived: keep going");
            let mut segs = [Segment::default(); 2];
            assert!(dev.pop(&mut segs).unwrap().is_some());
            assert_eq!(dev.enable_notification(), Ok(false));
            if features.event_idx {
                assert_eq!(used.read::<u16>(l.size.avail_event()), Ok(1), "avail_event = next entry");
            }
        }
    }
}
