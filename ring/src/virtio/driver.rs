//! The driver side of a split virtqueue: makes chains available, reclaims them when used.
//! Needs the `alloc` feature (the private per-descriptor state is allocated once, at
//! construction; nothing is allocated afterwards).

use alloc::vec::Vec;

use crate::notify::Notify;
use crate::sync::{fence, Ordering};
use crate::virtio::error::{AddError, DriverError, LayoutError, Rejected};
use crate::virtio::layout::{
    vring_need_event, Descriptor, QueueFeatures, QueueLayout, DESC_SIZE, VIRTQ_AVAIL_F_NO_INTERRUPT,
    VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY,
};
use crate::virtio::memory::GuestMemory;
use crate::virtio::rings::Rings;

/// A buffer to make available: `len` bytes at guest address `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Guest address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

impl Buffer {
    /// A buffer of `len` bytes at `addr`.
    pub const fn new(addr: u64, len: u32) -> Self {
        Buffer { addr, len }
    }
}

/// A chain the device returned: the caller's token and the bytes the device wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used<T> {
    /// The token given to [`DriverQueue::add`].
    pub token: T,
    /// Bytes the device wrote into the chain's writable buffers (checked not to exceed them).
    pub len: u32,
    /// Head descriptor index the chain had.
    pub head: u16,
}

/// Where a descriptor stands, in the driver's private records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// On the free list, or a non-head descriptor of a chain.
    Idle,
    /// Head of a chain written to the ring but not yet published.
    Added,
    /// Head of a chain published to the device.
    Published,
}

/// Private state of one descriptor of the ring's table.
#[derive(Debug)]
struct Slot<T> {
    /// Next descriptor on the free list or in the chain (the driver's own copy: the device
    /// could scribble on the table's `next` fields).
    next: u16,
    state: State,
    /// For a head: descriptors of the ring's table the chain occupies.
    descs: u16,
    /// For a head: device-writable bytes of the chain.
    writable: u64,
    token: Option<T>,
}

/// The driver's handle on a split virtqueue (what a guest's virtio driver holds).
///
/// Chains are written with [`add`](Self::add) / [`add_indirect`](Self::add_indirect) and made
/// available together by [`publish`](Self::publish), with one store of the available `idx`,
/// which says whether the device must be notified. [`pop_used`](Self::pop_used) returns the
/// caller's token for each chain the device used. The used ring is written by the device and
/// trusted no more than the driver trusts the device: the used `idx`, each element's `id` and
/// `len` are checked, and a violation stops the queue (latched [`DriverError`]).
pub struct DriverQueue<'m, M: ?Sized, T> {
    mem: &'m M,
    rings: Rings<'m>,
    features: QueueFeatures,
    slots: Vec<Slot<T>>,
    /// Heads in the order added, by available slot (the driver's copy of its ring).
    heads: Vec<u16>,
    free_head: u16,
    num_free: u16,
    /// Next available slot to fill (private available `idx`, including unpublished chains).
    next_avail: u16,
    /// The value last stored to the shared available `idx`.
    avail_pushed: u16,
    /// Next used entry to read (`last_used_idx`). Invariant: `used_seen - last_used <=
    /// avail_pushed - last_used` (wrapping).
    last_used: u16,
    /// The last validated used `idx`.
    used_seen: u16,
    /// Our copy of the available ring's `flags` (we are its only writer).
    avail_flags: u16,
    broken: Option<DriverError>,
}

impl<'m, M: GuestMemory + ?Sized, T> DriverQueue<'m, M, T> {
    /// Sets up the queue at `layout` in `mem` with negotiated `features`: every descriptor
    /// free, the available ring's `flags`, `idx` and `used_event` zeroed. The used ring must
    /// be zeroed too (the memory is the driver's, freshly allocated, §2.7.12).
    pub fn new(mem: &'m M, layout: QueueLayout, features: QueueFeatures) -> Result<Self, LayoutError> {
        let rings = Rings::new(mem, &layout)?;
        let size = rings.size();
        rings.avail_flags.store(0, Ordering::Relaxed);
        rings.avail_idx.store(0, Ordering::Relaxed);
        rings.used_event.store(0, Ordering::Relaxed);
        let slots = (0..size)
            .map(|i| Slot { next: i.wrapping_add(1), state: State::Idle, descs: 0, writable: 0, token: None })
            .collect();
        Ok(DriverQueue {
            mem,
            rings,
            features,
            slots,
            heads: alloc::vec![0; size as usize],
            free_head: 0,
            num_free: size,
            next_avail: 0,
            avail_pushed: 0,
            last_used: 0,
            used_seen: 0,
            avail_flags: 0,
            broken: None,
        })
    }

    /// Queue size.
    pub fn size(&self) -> u16 {
        self.rings.size()
    }

    /// Free descriptors in the ring's table.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// The protocol error that stopped the queue, if any.
    pub fn error(&self) -> Option<DriverError> {
        self.broken
    }

    /// Chains added (published or not) and not yet reclaimed.
    pub fn in_flight(&self) -> u16 {
        self.next_avail.wrapping_sub(self.last_used)
    }

    fn reject(&self, error: AddError, token: T) -> Rejected<T> {
        Rejected { error, token }
    }

    /// Checks `readable` + `writable` as a chain; returns (buffers, writable bytes).
    fn check_chain(
        &self,
        readable: &[Buffer],
        writable: &[Buffer],
        limit: usize,
    ) -> Result<(usize, u64), AddError> {
        if let Some(err) = self.broken {
            return Err(AddError::Broken(err));
        }
        let n = readable.len() + writable.len();
        if n == 0 {
            return Err(AddError::Empty);
        }
        if n > limit {
            return Err(AddError::TooLong { buffers: n, limit });
        }
        let sum = |bufs: &[Buffer]| bufs.iter().map(|b| u64::from(b.len)).sum::<u64>();
        let writable_len = sum(writable);
        if sum(readable) + writable_len > u64::from(u32::MAX) {
            return Err(AddError::TooLarge);
        }
        Ok((n, writable_len))
    }

    /// Writes a chain of device-readable buffers followed by device-writable ones into the
    /// ring's descriptor table and the next available slot, without publishing it; returns
    /// the head index. `token` comes back from [`pop_used`](Self::pop_used) (or, if the chain
    /// is refused, in the error).
    pub fn add(&mut self, readable: &[Buffer], writable: &[Buffer], token: T) -> Result<u16, Rejected<T>> {
        let (n, writable_len) = match self.check_chain(readable, writable, self.size() as usize) {
            Ok(v) => v,
            Err(e) => return Err(self.reject(e, token)),
        };
        if n > self.num_free as usize {
            return Err(self.reject(AddError::NoSpace { needed: n, free: self.num_free }, token));
        }
        let head = self.free_head;
        let mut i = head;
        let bufs = readable.iter().map(|b| (b, 0)).chain(writable.iter().map(|b| (b, VIRTQ_DESC_F_WRITE)));
        for (k, (b, write)) in bufs.enumerate() {
            let next = self.slots[i as usize].next;
            let flags = if k + 1 < n { write | VIRTQ_DESC_F_NEXT } else { write };
            if let Err(e) = self.rings.write_desc(i, &Descriptor::new(b.addr, b.len, flags, next)) {
                return Err(self.reject(AddError::Memory(e), token));
            }
            if k + 1 < n {
                i = next;
            }
        }
        // `i` is the chain's last descriptor; the free list continues after it.
        self.free_head = self.slots[i as usize].next;
        self.num_free -= n as u16;
        Ok(self.make_available(head, n as u16, writable_len, token))
    }

    /// Like [`add`](Self::add), but writes the chain into an indirect table at guest address
    /// `table` (which must hold `16 * (readable.len() + writable.len())` bytes and must not be
    /// touched until the chain is reclaimed) and uses a single descriptor of the ring.
    /// Needs `VIRTIO_F_INDIRECT_DESC` (§2.7.5.3).
    pub fn add_indirect(
        &mut self,
        table: u64,
        readable: &[Buffer],
        writable: &[Buffer],
        token: T,
    ) -> Result<u16, Rejected<T>> {
        if !self.features.indirect_desc {
            return Err(self.reject(AddError::IndirectNotNegotiated, token));
        }
        let (n, writable_len) = match self.check_chain(readable, writable, 1 << 16) {
            Ok(v) => v,
            Err(e) => return Err(self.reject(e, token)),
        };
        if self.num_free == 0 {
            return Err(self.reject(AddError::NoSpace { needed: 1, free: 0 }, token));
        }
        let bytes = n * DESC_SIZE;
        let t = match self.mem.translate(table, bytes) {
            Ok(t) => t,
            Err(e) => return Err(self.reject(AddError::Memory(e), token)),
        };
        let bufs = readable.iter().map(|b| (b, 0)).chain(writable.iter().map(|b| (b, VIRTQ_DESC_F_WRITE)));
        for (k, (b, write)) in bufs.enumerate() {
            let (flags, next) =
                if k + 1 < n { (write | VIRTQ_DESC_F_NEXT, k as u16 + 1) } else { (write, 0) };
            if let Err(e) = t.write(k * DESC_SIZE, &Descriptor::new(b.addr, b.len, flags, next)) {
                return Err(self.reject(AddError::Memory(e.into()), token));
            }
        }
        let head = self.free_head;
        let desc = Descriptor::new(table, bytes as u32, VIRTQ_DESC_F_INDIRECT, 0);
        if let Err(e) = self.rings.write_desc(head, &desc) {
            return Err(self.reject(AddError::Memory(e), token));
        }
        self.free_head = self.slots[head as usize].next;
        self.num_free -= 1;
        Ok(self.make_available(head, 1, writable_len, token))
    }

    /// Records the chain at `head` and writes it to the next available slot.
    fn make_available(&mut self, head: u16, descs: u16, writable: u64, token: T) -> u16 {
        let slot = &mut self.slots[head as usize];
        slot.state = State::Added;
        slot.descs = descs;
        slot.writable = writable;
        slot.token = Some(token);
        // Cannot fail: the ring was translated and checked at construction.
        let _ = self.rings.write_avail(self.next_avail, head);
        let mask = self.size() - 1;
        self.heads[(self.next_avail & mask) as usize] = head;
        self.next_avail = self.next_avail.wrapping_add(1);
        head
    }

    /// Makes every added chain available with one store of the available `idx` and says
    /// whether the device must be notified: with `VIRTIO_F_EVENT_IDX`, whether `avail_event`
    /// lies in the newly published range (§2.7.10.1, `vring_need_event`); otherwise whether
    /// `VIRTQ_USED_F_NO_NOTIFY` is clear.
    pub fn publish(&mut self) -> Notify {
        let old = self.avail_pushed;
        let new = self.next_avail;
        if old == new {
            return Notify::NOT_NEEDED;
        }
        let mask = self.size() - 1;
        let mut slot = old;
        while slot != new {
            let head = self.heads[(slot & mask) as usize];
            self.slots[head as usize].state = State::Published;
            slot = slot.wrapping_add(1);
        }
        // Release: pairs with the Acquire load of the available `idx` in
        // `DeviceQueue::refresh`, so descriptors and ring entries are visible first.
        self.rings.avail_idx.store(new.to_le(), Ordering::Release);
        self.avail_pushed = new;
        // Full barrier between publishing `idx` and reading the device's suppression field:
        // pairs with the SeqCst fence in `DeviceQueue::enable_notification` (which writes
        // `avail_event` or clears the flag, then re-reads `idx`).
        fence(Ordering::SeqCst);
        let needed = if self.features.event_idx {
            vring_need_event(u16::from_le(self.rings.avail_event.load(Ordering::Relaxed)), new, old)
        } else {
            u16::from_le(self.rings.used_flags.load(Ordering::Relaxed)) & VIRTQ_USED_F_NO_NOTIFY == 0
        };
        Notify::from_needed(needed)
    }

    /// Reads and validates the used `idx`; returns the number of entries not yet reclaimed.
    fn refresh(&mut self) -> Result<u16, DriverError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        // Acquire: pairs with the Release store in `DeviceQueue::push_used`, so the used
        // elements are complete before we read them.
        let used_idx = u16::from_le(self.rings.used_idx.load(Ordering::Acquire));
        let pending = used_idx.wrapping_sub(self.last_used);
        let outstanding = self.avail_pushed.wrapping_sub(self.last_used);
        let seen = self.used_seen.wrapping_sub(self.last_used);
        // Behind what was already validated (serial-number arithmetic: less than half the
        // index space back), whether or not behind `last_used` itself.
        let behind = self.used_seen.wrapping_sub(used_idx);
        if pending < seen || (pending > outstanding && behind != 0 && behind <= 0x8000) {
            return Err(self.latch(DriverError::UsedIdxRewound { used_idx, seen: self.used_seen }));
        }
        if pending > outstanding {
            return Err(self.latch(DriverError::UsedIdxOverflow {
                used_idx,
                avail_idx: self.avail_pushed,
                last_used: self.last_used,
            }));
        }
        self.used_seen = used_idx;
        Ok(pending)
    }

    fn latch(&mut self, err: DriverError) -> DriverError {
        self.broken = Some(err);
        self.used_seen = self.last_used;
        err
    }

    /// Used entries the device published and the driver has not reclaimed, after validating
    /// the used `idx`.
    pub fn pending_used(&mut self) -> Result<u16, DriverError> {
        self.refresh()
    }

    /// Reclaims the next chain the device used: frees its descriptors and returns the token.
    pub fn pop_used(&mut self) -> Result<Option<Used<T>>, DriverError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        if self.last_used == self.used_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        // One copy of the element.
        let elem = self.rings.read_used(self.last_used)?;
        let (id, len) = (elem.id.get(), elem.len.get());
        let Some(slot) = self.slots.get_mut(id as usize).filter(|s| s.state == State::Published) else {
            return Err(self.latch(DriverError::BadUsedId { id }));
        };
        if u64::from(len) > slot.writable {
            let writable = slot.writable;
            return Err(self.latch(DriverError::BadUsedLen { id: id as u16, len, writable }));
        }
        let head = id as u16;
        slot.state = State::Idle;
        let token = slot.token.take();
        let descs = slot.descs;
        // Walk our own copy of the chain to its last descriptor and return it to the free list.
        let mut last = head;
        for _ in 1..descs {
            last = self.slots[last as usize].next;
        }
        self.slots[last as usize].next = self.free_head;
        self.free_head = head;
        self.num_free += descs;
        self.last_used = self.last_used.wrapping_add(1);
        // A published head always holds its token (set in `make_available`).
        Ok(token.map(|token| Used { token, len, head }))
    }

    /// Asks the device not to interrupt (while the driver is polling): sets
    /// `VIRTQ_AVAIL_F_NO_INTERRUPT`, or with `VIRTIO_F_EVENT_IDX` moves `used_event` behind
    /// the next entry so no new used index passes it (§2.7.7).
    pub fn disable_interrupts(&mut self) {
        if self.features.event_idx {
            self.rings.used_event.store(self.last_used.wrapping_sub(1).to_le(), Ordering::Relaxed);
        } else {
            self.avail_flags |= VIRTQ_AVAIL_F_NO_INTERRUPT;
            self.rings.avail_flags.store(self.avail_flags.to_le(), Ordering::Relaxed);
        }
    }

    /// Asks the device to interrupt on the next used chain, then re-checks the used ring: call
    /// before the driver goes idle, and keep reclaiming if it returns `true` (a chain was used
    /// before the request could be seen, so no interrupt may come for it). With
    /// `VIRTIO_F_EVENT_IDX` publishes `used_event` = the next entry (§2.7.7).
    pub fn enable_interrupts(&mut self) -> Result<bool, DriverError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        if self.features.event_idx {
            self.rings.used_event.store(self.last_used.to_le(), Ordering::Relaxed);
        } else {
            self.avail_flags &= !VIRTQ_AVAIL_F_NO_INTERRUPT;
            self.rings.avail_flags.store(self.avail_flags.to_le(), Ordering::Relaxed);
        }
        // Full barrier between publishing the request and re-reading the used `idx`: pairs
        // with the SeqCst fence in `DeviceQueue::push_used` (store `idx`, fence, read
        // `used_event`/flags).
        fence(Ordering::SeqCst);
        Ok(self.refresh()? > 0)
    }
}

impl<M: ?Sized, T> core::fmt::Debug for DriverQueue<'_, M, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DriverQueue")
            .field("features", &self.features)
            .field("num_free", &self.num_free)
            .field("next_avail", &self.next_avail)
            .field("avail_pushed", &self.avail_pushed)
            .field("last_used", &self.last_used)
            .field("used_seen", &self.used_seen)
            .field("broken", &self.broken)
            .field("shared", &self.rings)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::virtio::error::GuestMemoryError;
    use crate::virtio::layout::UsedElem;
    use crate::virtio::testutil::*;
    use crate::virtio::{DeviceQueue, GuestRegion, Segment};

    type Driver<'m> = DriverQueue<'m, GuestRegion<'m>, u64>;

    /// Runs `rounds` rounds of: the driver adds a few chains (direct and, every other round,
    /// indirect) with distinct data, publishes; the device pops each, checks the readable
    /// data, writes a reply into the writable part, returns it; the driver reclaims every
    /// token with the reply's length. Indices wrap past 65535 unless under miri.
    #[test]
    fn chains_round_trip_with_their_tokens() {
        let rounds: u64 = if cfg!(miri) { 40 } else { 17_000 };
        for features in [FLAGS, EVENT] {
            let g = Guest::new();
            let m = g.mem();
            let l = layout(16);
            let mut drv = Driver::new(&m, l, features).unwrap();
            let mut dev = DeviceQueue::new(&m, l, features).unwrap();
            let mut next_token = 0u64;
            let mut segs = [Segment::default(); 8];
            for round in 0..rounds {
                let mut added = alloc::vec::Vec::new();
                for k in 0..(1 + round % 4) {
                    let token = next_token;
                    next_token += 1;
                    let slot = DATA + 0x400 * k;
                    m.translate(slot, 8).unwrap().write(0, &token).unwrap();
                    let readable = [Buffer::new(slot, 3), Buffer::new(slot + 3, 5)];
                    let writable = [Buffer::new(slot + 0x100, 6), Buffer::new(slot + 0x200, 10)];
                    let head = if round % 2 == 1 {
                        drv.add_indirect(slot + 0x300, &readable, &writable, token)
                    } else {
                        drv.add(&readable, &writable, token)
                    };
                    head.unwrap();
                    added.push(token);
                }
                let _ = drv.publish();
                while let Some(chain) = dev.pop(&mut segs).unwrap() {
                    assert_eq!((chain.readable_len(), chain.writable_len()), (8, 16));
                    let mut data = [0u8; 8];
                    assert_eq!(chain.read_at(0, &mut data), Ok(8));
                    let token = u64::from_ne_bytes(data);
                    let reply = &token.to_ne_bytes()[..(token % 9) as usize];
                    assert_eq!(chain.write_at(4, reply), Ok(reply.len()));
                    dev.add_used(chain.head(), 4 + reply.len() as u32).unwrap();
                }
                let _ = dev.push_used();
                for expected in added {
                    let used = drv.pop_used().unwrap().expect("every chain comes back");
                    assert_eq!(used.token, expected, "in order for an in-order device");
                    assert_eq!(used.len as u64, 4 + expected % 9);
                }
                assert_eq!(drv.pop_used(), Ok(None));
                assert_eq!((drv.num_free(), drv.in_flight()), (16, 0), "every descriptor freed");
            }
            assert_eq!(dev.next_avail(), next_token as u16);
        }
    }

    #[test]
    fn refused_chains_hand_the_token_back() {
        let g = Guest::new();
        let m = g.mem();
        let mut drv = Driver::new(&m, layout(4), QueueFeatures::default()).unwrap();
        let b = Buffer::new(DATA, 1);
        assert_eq!(drv.add(&[], &[], 1), Err(Rejected { error: AddError::Empty, token: 1 }));
        assert_eq!(
            drv.add(&[b; 5], &[], 2),
            Err(Rejected { error: AddError::TooLong { buffers: 5, limit: 4 }, token: 2 })
        );
        let big = Buffer::new(DATA, u32::MAX);
        assert_eq!(drv.add(&[big], &[b], 3), Err(Rejected { error: AddError::TooLarge, token: 3 }));
        assert_eq!(drv.add_indirect(DATA, &[b], &[], 4).unwrap_err().error, AddError::IndirectNotNegotiated);
        drv.add(&[b; 3], &[], 5).unwrap();
        assert_eq!(
            drv.add(&[b], &[b], 6),
            Err(Rejected { error: AddError::NoSpace { needed: 2, free: 1 }, token: 6 })
        );
        drv.add(&[], &[b], 7).unwrap();
        assert_eq!(drv.num_free(), 0);
        let g2 = Guest::new();
        let m2 = g2.mem();
        let mut drv = Driver::new(&m2, layout(4), FLAGS).unwrap();
        let e = drv.add_indirect(BASE + LEN as u64 - 16, &[b], &[b], 8).unwrap_err();
        assert!(matches!(e.error, AddError::Memory(GuestMemoryError::CrossesRegionEnd { .. })), "{e:?}");
        assert_eq!(e.token, 8);
    }

    /// Sets up a driver with chains 0 and 1 published (heads 0 and 1, writable 4 bytes each).
    fn published<'m>(m: &'m GuestRegion<'m>, features: QueueFeatures) -> Driver<'m> {
        let mut drv = Driver::new(m, layout(4), features).unwrap();
        drv.add(&[], &[Buffer::new(DATA, 4)], 100).unwrap();
        drv.add(&[], &[Buffer::new(DATA, 4)], 101).unwrap();
        let _ = drv.publish();
        drv
    }

    fn put_used(m: &GuestRegion<'_>, slot: u16, id: u32, len: u32) {
        let l = layout(4);
        let used = m.translate(l.used_ring, l.size.used_ring_bytes()).unwrap();
        used.write(l.size.used_entry(slot), &UsedElem { id: id.into(), len: len.into() }).unwrap();
    }

    #[test]
    fn a_lying_device_stops_the_queue() {
        let l = layout(4);
        // More used entries than chains made available.
        let g = Guest::new();
        let m = g.mem();
        let mut drv = published(&m, FLAGS);
        set_used_idx(&m, &l, 3);
        let err = DriverError::UsedIdxOverflow { used_idx: 3, avail_idx: 2, last_used: 0 };
        assert_eq!(drv.pop_used(), Err(err));
        set_used_idx(&m, &l, 1);
        assert_eq!(drv.pop_used(), Err(err), "latched");
        assert_eq!(drv.enable_interrupts(), Err(err));
        assert_eq!(drv.add(&[Buffer::new(DATA, 1)], &[], 9).unwrap_err().error, AddError::Broken(err));
        // An id that is not a published head: out of range, free, added but unpublished.
        for (id, unpublished) in [(4, false), (2, false), (2, true), (1, false)] {
            let g = Guest::new();
            let m = g.mem();
            let mut drv = published(&m, FLAGS);
            if unpublished {
                drv.add(&[], &[Buffer::new(DATA, 4)], 102).unwrap();
            }
            put_used(&m, 0, 0, 0);
            put_used(&m, 1, if id == 1 { 0 } else { id }, 0);
            set_used_idx(&m, &l, 2);
            assert_eq!(drv.pop_used().unwrap().unwrap().token, 100);
            let id = if id == 1 { 0 } else { id };
            assert_eq!(
                drv.pop_used(),
                Err(DriverError::BadUsedId { id }),
                "id {id} returned twice or never made available"
            );
        }
        // More bytes written than the chain has room for.
        let g = Guest::new();
        let m = g.mem();
        let mut drv = published(&m, FLAGS);
        put_used(&m, 0, 1, 5);
        set_used_idx(&m, &l, 1);
        assert_eq!(drv.pop_used(), Err(DriverError::BadUsedLen { id: 1, len: 5, writable: 4 }));
        // A used idx that moves backwards.
        let g = Guest::new();
        let m = g.mem();
        let mut drv = published(&m, FLAGS);
        put_used(&m, 0, 1, 4);
        put_used(&m, 1, 0, 4);
        set_used_idx(&m, &l, 2);
        assert_eq!(drv.pop_used().unwrap().unwrap().token, 101);
        set_used_idx(&m, &l, 1);
        assert_eq!(drv.pop_used().unwrap().unwrap().token, 100, "validated before the rewind");
        assert_eq!(drv.pending_used(), Err(DriverError::UsedIdxRewound { used_idx: 1, seen: 2 }));
    }

    #[test]
    fn kicks_follow_the_flag_or_avail_event() {
        let l = layout(4);
        for features in [FLAGS, EVENT] {
            let g = Guest::new();
            let m = g.mem();
            let used = m.translate(l.used_ring, l.size.used_ring_bytes()).unwrap();
            let mut drv = Driver::new(&m, l, features).unwrap();
            let b = [Buffer::new(DATA, 4)];
            let add = |drv: &mut Driver<'_>, n: u16| {
                for _ in 0..n {
                    drv.add(&b, &[], 0).unwrap();
                }
                drv.publish().is_needed()
            };
            assert!(!drv.publish().is_needed(), "nothing to publish");
            if features.event_idx {
                used.write(l.size.avail_event(), &1u16).unwrap(); // kick when idx passes 1
                assert!(!add(&mut drv, 1), "0 -> 1");
                assert!(add(&mut drv, 2), "1 -> 3 passes avail_event 1");
                used.write(0, &VIRTQ_USED_F_NO_NOTIFY).unwrap();
                used.write(l.size.avail_event(), &3u16).unwrap();
                assert!(add(&mut drv, 1), "the flag is ignored with EVENT_IDX");
            } else {
                assert!(add(&mut drv, 1));
                used.write(0, &VIRTQ_USED_F_NO_NOTIFY).unwrap();
                assert!(!add(&mut drv, 2));
                used.write(0, &0u16).unwrap();
                assert!(add(&mut drv, 1));
            }
            assert_eq!(
                m.translate(l.avail_ring, 4).unwrap().read::<u16>(2),
                Ok(4),
                "one idx store per batch"
            );
        }
    }

    #[test]
    fn enable_interrupts_publishes_then_rechecks() {
        let l = layout(4);
        for features in [FLAGS, EVENT] {
            let g = Guest::new();
            let m = g.mem();
            let avail = m.translate(l.avail_ring, l.size.avail_ring_bytes()).unwrap();
            let mut drv = published(&m, features);
            drv.disable_interrupts();
            if features.event_idx {
                assert_eq!(avail.read::<u16>(l.size.used_event()), Ok(u16::MAX));
                assert_eq!(avail.read::<u16>(0), Ok(0), "flags stay 0 with EVENT_IDX (§2.7.7.1)");
            } else {
                assert_eq!(avail.read::<u16>(0), Ok(VIRTQ_AVAIL_F_NO_INTERRUPT));
            }
            assert_eq!(drv.enable_interrupts(), Ok(false));
            assert_eq!(avail.read::<u16>(0), Ok(0));
            put_used(&m, 0, 1, 0);
            set_used_idx(&m, &l, 1);
            assert_eq!(drv.enable_interrupts(), Ok(true), "a chain came back: keep going");
            assert_eq!(drv.pop_used().unwrap().unwrap().token, 101);
            assert_eq!(drv.enable_interrupts(), Ok(false));
            if features.event_idx {
                assert_eq!(avail.read::<u16>(l.size.used_event()), Ok(1), "used_event = next entry");
            }
        }
    }
}
