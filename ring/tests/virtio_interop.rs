//! Interop of pvio's split virtqueue with rust-vmm's `virtio-queue` 0.18, an implementation
//! nobody here wrote, over one `vm_memory::GuestMemoryMmap` both sides share:
//!
//! - **rust-vmm driver → pvio device** ([`vq_driver_pvio_device`]): a driver assembled from
//!   `virtio-queue`'s mock driver parts (`mock::DescriptorTable`, `mock::AvailRing`,
//!   `mock::UsedRing`, its `Descriptor`/`RawDescriptor` encoding) writes random chains
//!   (readable then writable buffers, indirect tables, chains that end in an indirect table);
//!   pvio's [`DeviceQueue`] pops, reads, writes and returns them. The test's own rings sit at
//!   random, independently aligned addresses, because the mock's `MockSplitQueue` places the
//!   used ring inside the available ring for all but tiny queues (its `SplitQueueRing::end`
//!   adds the element count, not the byte length).
//! - **pvio driver → rust-vmm device** ([`pvio_driver_vq_device`]): pvio's [`DriverQueue`]
//!   adds random chains (direct and indirect); `virtio_queue::Queue` pops them with
//!   `iter`/`pop_descriptor_chain`, reads and writes the buffers through `vm-memory`, and
//!   `add_used`s them; pvio's driver reclaims them.
//!
//! Both directions, with `VIRTIO_F_EVENT_IDX` on and off: every descriptor the device sees is
//! the one the driver wrote (address, length, direction, order), every readable byte arrives,
//! every written byte and used length comes back, every chain is returned exactly once with
//! its token, no descriptor leaks, and the notification decisions of each side agree with
//! what the other side published (the kick/interrupt rules of §2.7.7/§2.7.10 as
//! `virtio-queue`'s `needs_notification` and `enable_notification` implement them), including
//! "no lost wake-up": a side that armed its notification and went idle is always notified.
//!
//! Needs the `vm-memory` feature: `cargo test -p pvio-ring --features vm-memory --test virtio_interop`.

#[cfg(not(feature = "vm-memory"))]
#[test]
fn virtio_interop_needs_the_vm_memory_feature() {
    println!("skipped: build with `--features vm-memory` to run the virtio-queue interop tests");
}

#[cfg(feature = "vm-memory")]
mod interop {
    use std::collections::{HashMap, HashSet, VecDeque};
    use std::sync::atomic::Ordering;

    use proptest::prelude::*;
    use pvio_ring::virtio::{DeviceQueue, QueueFeatures, QueueLayout, QueueSize, Segment, VmGuestMemory};
    use virtio_queue::desc::split::Descriptor as VqDesc;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::{AvailRing, DescriptorTable, UsedRing};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    // Spec constants (§2.7.5, §2.7.7, §2.7.10), written out rather than taken from either
    // implementation under test.
    const F_NEXT: u16 = 1;
    const F_WRITE: u16 = 2;
    const F_INDIRECT: u16 = 4;
    const AVAIL_F_NO_INTERRUPT: u16 = 1;
    const USED_F_NO_NOTIFY: u16 = 1;

    /// Guest memory: the rings live in the first region, buffers and indirect tables in a
    /// second one, so translation across regions is exercised.
    const RING_REGION: (u64, usize) = (0, 0x4_0000);
    const BUF_BASE: u64 = 0x10_0000;
    /// Buffers are carved out of 1 KiB slots.
    const SLOT: u64 = 1024;
    const SLOTS: u64 = 4096;
    /// One indirect table slot per head: up to 16 entries.
    const MAX_INDIRECT: usize = 16;
    const TABLE_BASE: u64 = BUF_BASE + SLOT * SLOTS;
    const BUF_REGION_LEN: usize = (SLOT * SLOTS) as usize + 32768 * 16 * MAX_INDIRECT;
    /// Bytes after the written part of a device-writable buffer keep this value.
    const UNTOUCHED: u8 = 0xee;

    // -------------------------------------------------------------------------------------
    // Small helpers
    // -------------------------------------------------------------------------------------

    /// SplitMix64: a seeded, reproducible stream (proptest supplies the seed).
    pub struct Rng(u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        pub fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
    }

    /// `virtio-queue`'s interrupt rule (`Queue::needs_notification`): with EVENT_IDX, notify
    /// if `used_event` lies in the range `old .. new` just published; without it,
    /// `virtio-queue` always notifies (it ignores `VIRTQ_AVAIL_F_NO_INTERRUPT`), while the
    /// spec lets a device skip the interrupt when the flag is set — pvio does, so the flag
    /// is the reference there.
    pub fn interrupt_rule(event_idx: bool, used_event: u16, avail_flags: u16, new: u16, old: u16) -> bool {
        if event_idx {
            new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            avail_flags & AVAIL_F_NO_INTERRUPT == 0
        }
    }

    /// The driver's kick rule against what the device published (§2.7.10): with EVENT_IDX,
    /// `vring_need_event(avail_event, new, old)`; otherwise unless `VIRTQ_USED_F_NO_NOTIFY`.
    pub fn kick_rule(event_idx: bool, avail_event: u16, used_flags: u16, new: u16, old: u16) -> bool {
        if event_idx {
            new.wrapping_sub(avail_event).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            used_flags & USED_F_NO_NOTIFY == 0
        }
    }

    /// Byte `i` of readable buffer data for chain `serial`.
    pub fn read_byte(serial: u64, i: usize) -> u8 {
        (serial.wrapping_mul(31).wrapping_add(i as u64 * 7) ^ (i as u64 >> 8)) as u8
    }

    /// Byte `i` that the device writes into chain `serial`.
    pub fn write_byte(serial: u64, i: usize) -> u8 {
        (serial.wrapping_mul(131).wrapping_add(i as u64 * 13) ^ 0x5a ^ (i as u64 >> 8)) as u8
    }

    /// Random ring addresses with exactly the required alignment (16, 2, 4), in separate
    /// areas of the ring region, so an offset or alignment mix-up lands on the wrong bytes.
    pub fn random_layout(rng: &mut Rng, size: u16) -> (u64, u64, u64) {
        let desc = 0x1000 + 16 * rng.below(64);
        let avail = 0x1_8000 + 2 * (2 * rng.below(256) + 1);
        let used = 0x2_8000 + 4 * (2 * rng.below(256) + 1);
        assert!(desc + 16 * u64::from(size) <= 0x1_8000 && avail + 6 + 2 * u64::from(size) <= 0x2_8000);
        assert!(used + 6 + 8 * u64::from(size) <= RING_REGION.1 as u64);
        (desc, avail, used)
    }

    pub fn guest_memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(RING_REGION.0), RING_REGION.1),
            (GuestAddress(BUF_BASE), BUF_REGION_LEN),
        ])
        .expect("anonymous guest memory")
    }

    /// One buffer of a chain as the driver made it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Buf {
        pub addr: u64,
        pub len: u32,
        pub writable: bool,
    }

    /// A random chain shape: readable then writable buffer lengths.
    pub fn random_bufs(rng: &mut Rng, max_bufs: usize) -> Vec<(u32, bool)> {
        let n = if rng.chance(10) {
            1 + rng.below(max_bufs as u64) as usize
        } else {
            1 + rng.below(4.min(max_bufs as u64)) as usize
        };
        let readable = rng.below(n as u64 + 1) as usize;
        (0..n)
            .map(|i| {
                let len = match rng.below(10) {
                    0 => 0,
                    1 => 1,
                    2 => SLOT as u32,
                    _ => 1 + rng.below(600) as u32,
                };
                (len, i >= readable)
            })
            .collect()
    }

    /// A free list of 1 KiB buffer slots.
    pub struct Slots(Vec<u64>);

    impl Slots {
        pub fn new() -> Self {
            Slots((0..SLOTS).rev().collect())
        }

        /// A buffer of `len` bytes at a random offset inside a free slot.
        pub fn take(&mut self, rng: &mut Rng, len: u32) -> (u64, u64) {
            let slot = self.0.pop().expect("enough buffer slots for every outstanding buffer");
            let off = rng.below(SLOT - u64::from(len) + 1);
            (slot, BUF_BASE + slot * SLOT + off)
        }

        pub fn give(&mut self, slot: u64) {
            self.0.push(slot);
        }

        pub fn free(&self) -> usize {
            self.0.len()
        }
    }

    // -------------------------------------------------------------------------------------
    // (a) A driver built from virtio-queue's mock parts, against pvio's DeviceQueue
    // -------------------------------------------------------------------------------------

    struct Outstanding {
        serial: u64,
        descs: Vec<u16>,
        slots: Vec<u64>,
        bufs: Vec<Buf>,
        indirect: bool,
    }

    struct VqDriver<'m> {
        mem: &'m GuestMemoryMmap,
        size: u16,
        avail_addr: u64,
        used_addr: u64,
        table: DescriptorTable<'m, GuestMemoryMmap>,
        avail: AvailRing<'m, GuestMemoryMmap>,
        used: UsedRing<'m, GuestMemoryMmap>,
        free: Vec<u16>,
        slots: Slots,
        /// Next avail slot to fill, and the value last stored to avail `idx`.
        avail_idx: u16,
        published: u16,
        last_used: u16,
        outstanding: HashMap<u16, Outstanding>,
        /// Heads in the available ring order, not yet seen by the device.
        in_ring: VecDeque<u16>,
        returned: HashSet<u64>,
        next_serial: u64,
    }

    impl<'m> VqDriver<'m> {
        fn new(mem: &'m GuestMemoryMmap, size: u16, desc: u64, avail: u64, used: u64) -> Self {
            VqDriver {
                mem,
                size,
                avail_addr: avail,
                used_addr: used,
                table: DescriptorTable::new(mem, GuestAddress(desc), size),
                // `new` zeroes flags, idx and the event field of each ring.
                avail: AvailRing::new(mem, GuestAddress(avail), size),
                used: UsedRing::new(mem, GuestAddress(used), size),
                free: (0..size).rev().collect(),
                slots: Slots::new(),
                avail_idx: 0,
                published: 0,
                last_used: 0,
                outstanding: HashMap::new(),
                in_ring: VecDeque::new(),
                returned: HashSet::new(),
                next_serial: 1,
            }
        }

        fn store_desc(&self, table: &DescriptorTable<'m, GuestMemoryMmap>, i: u16, d: VqDesc) {
            table.store(i, RawDescriptor::from(d)).expect("descriptor index inside the table");
        }

        fn fill(&self, serial: u64, bufs: &[Buf]) {
            let mut k = 0usize;
            for b in bufs {
                let bytes: Vec<u8> = if b.writable {
                    vec![UNTOUCHED; b.len as usize]
                } else {
                    (0..b.len as usize).map(|i| read_byte(serial, k + i)).collect()
                };
                if !b.writable {
                    k += b.len as usize;
                }
                self.mem.write_slice(&bytes, GuestAddress(b.addr)).expect("buffer in guest memory");
            }
        }

        /// Adds a chain of `shape` (direct, fully indirect, or direct buffers ending in an
        /// indirect table) without publishing it. Returns false when descriptors run out.
        fn add(&mut self, rng: &mut Rng, shape: &[(u32, bool)], mode: u8) -> bool {
            let indirect_n = match mode {
                1 => shape.len(),
                2 if shape.len() > 1 => 1 + rng.below(shape.len() as u64 - 1) as usize,
                _ => 0,
            };
            let direct_n = shape.len() - indirect_n;
            let need = direct_n + usize::from(indirect_n > 0);
            if need > self.free.len() || self.slots.free() < shape.len() {
                return false;
            }
            let serial = self.next_serial;
            self.next_serial += 1;
            let mut slots = Vec::new();
            let bufs: Vec<Buf> = shape
                .iter()
                .map(|&(len, writable)| {
                    let (slot, addr) = self.slots.take(rng, len);
                    slots.push(slot);
                    Buf { addr, len, writable }
                })
                .collect();
            self.fill(serial, &bufs);
            // Free descriptors in a random order, so chains are scattered through the table.
            let descs: Vec<u16> = (0..need)
                .map(|_| {
                    let i = rng.below(self.free.len() as u64) as usize;
                    self.free.swap_remove(i)
                })
                .collect();
            for (k, &d) in descs.iter().enumerate() {
                let desc = if k < direct_n {
                    let b = bufs[k];
                    let more = k + 1 < need;
                    let flags = if b.writable { F_WRITE } else { 0 } | if more { F_NEXT } else { 0 };
                    let next = if more { descs[k + 1] } else { rng.below(65536) as u16 };
                    VqDesc::new(b.addr, b.len, flags, next)
                } else {
                    let head = descs[0];
                    let table_addr = TABLE_BASE + u64::from(head) * 16 * MAX_INDIRECT as u64;
                    let table = DescriptorTable::new(self.mem, GuestAddress(table_addr), indirect_n as u16);
                    // Entries in a random order inside the table, linked by `next`.
                    let mut order: Vec<u16> = (0..indirect_n as u16).collect();
                    for i in (1..order.len()).rev() {
                        order.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    // The walk starts at entry 0 (§2.7.5.3.2): put the first buffer there.
                    let zero = order.iter().position(|&x| x == 0).expect("entry 0");
                    order.swap(0, zero);
                    for (j, &slot) in order.iter().enumerate() {
                        let b = bufs[direct_n + j];
                        let more = j + 1 < indirect_n;
                        let flags = if b.writable { F_WRITE } else { 0 } | if more { F_NEXT } else { 0 };
                        let next = if more { order[j + 1] } else { 0 };
                        self.store_desc(&table, slot, VqDesc::new(b.addr, b.len, flags, next));
                    }
                    // A stray WRITE flag on the indirect descriptor itself is ignored (§2.7.5.3.1).
                    let stray = if rng.chance(20) { F_WRITE } else { 0 };
                    VqDesc::new(
                        table_addr,
                        16 * indirect_n as u32,
                        F_INDIRECT | stray,
                        rng.below(65536) as u16,
                    )
                };
                self.store_desc(&self.table, d, desc);
            }
            let head = descs[0];
            self.avail
                .ring()
                .ref_at(usize::from(self.avail_idx % self.size))
                .expect("slot inside the ring")
                .store(u16::to_le(head));
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.in_ring.push_back(head);
            self.outstanding
                .insert(head, Outstanding { serial, descs, slots, bufs, indirect: indirect_n > 0 });
            true
        }

        /// Stores avail `idx` (one store per batch) and decides whether to kick.
        fn publish(&mut self, event_idx: bool) -> Option<bool> {
            let (old, new) = (self.published, self.avail_idx);
            if old == new {
                return None;
            }
            self.avail.idx().store(u16::to_le(new));
            self.published = new;
            let avail_event = self.used_word(self.size_used_event_offset());
            let used_flags = self.used_word(0);
            Some(kick_rule(event_idx, avail_event, used_flags, new, old))
        }

        fn size_used_event_offset(&self) -> u64 {
            4 + 8 * u64::from(self.size)
        }

        fn used_word(&self, off: u64) -> u16 {
            u16::from_le(
                self.mem.load(GuestAddress(self.used_addr + off), Ordering::Acquire).expect("used ring"),
            )
        }

        fn set_avail_flags(&self, flags: u16) {
            self.mem
                .store(u16::to_le(flags), GuestAddress(self.avail_addr), Ordering::Relaxed)
                .expect("avail ring");
        }

        fn set_used_event(&self, v: u16) {
            let at = self.avail_addr + 4 + 2 * u64::from(self.size);
            self.mem.store(u16::to_le(v), GuestAddress(at), Ordering::Relaxed).expect("avail ring");
        }

        /// Reclaims every used element the device published; `written` maps heads to the
        /// bytes the device said it wrote. Returns how many it reclaimed.
        fn reclaim(&mut self, written: &mut HashMap<u16, u32>) -> usize {
            let used_idx = u16::from_le(self.used.idx().load());
            let n = used_idx.wrapping_sub(self.last_used);
            assert!(n <= self.size, "used idx {used_idx} runs {n} ahead of {}", self.last_used);
            for _ in 0..n {
                let e =
                    self.used.ring().ref_at(usize::from(self.last_used % self.size)).expect("slot").load();
                self.last_used = self.last_used.wrapping_add(1);
                let head = u16::try_from(e.id()).expect("used id fits a descriptor index");
                let o = self
                    .outstanding
                    .remove(&head)
                    .unwrap_or_else(|| panic!("used id {head} is not outstanding"));
                let w = written
                    .remove(&head)
                    .unwrap_or_else(|| panic!("chain {head} returned but never added as used"));
                assert_eq!(e.len(), w, "used len of chain {head}");
                // The written bytes, then the untouched rest, buffer by buffer.
                let mut k = 0usize;
                for b in o.bufs.iter().filter(|b| b.writable) {
                    let mut got = vec![0u8; b.len as usize];
                    self.mem.read_slice(&mut got, GuestAddress(b.addr)).expect("buffer");
                    for (i, &g) in got.iter().enumerate() {
                        let want = if k + i < w as usize { write_byte(o.serial, k + i) } else { UNTOUCHED };
                        assert_eq!(
                            g,
                            want,
                            "chain {head} (serial {}) byte {} of the writable data",
                            o.serial,
                            k + i
                        );
                    }
                    k += b.len as usize;
                }
                assert!(self.returned.insert(o.serial), "chain serial {} returned twice", o.serial);
                self.free.extend(&o.descs);
                for s in o.slots {
                    self.slots.give(s);
                }
            }
            n as usize
        }
    }

    struct Case {
        size: u16,
        event_idx: bool,
        indirect: bool,
        steps: usize,
    }

    fn check_chain(drv: &VqDriver<'_>, head: u16, segs: &[Segment], readable_len: u32, writable_len: u32) {
        let o = &drv.outstanding[&head];
        let got: Vec<Buf> =
            segs.iter().map(|s| Buf { addr: s.addr, len: s.len, writable: s.writable }).collect();
        assert_eq!(got, o.bufs, "chain {head} (indirect {}) seen by the device", o.indirect);
        let r: u32 = o.bufs.iter().filter(|b| !b.writable).map(|b| b.len).sum();
        let w: u32 = o.bufs.iter().filter(|b| b.writable).map(|b| b.len).sum();
        assert_eq!((readable_len, writable_len), (r, w), "chain {head} lengths");
    }

    fn run_vq_driver_pvio_device(seed: u64, case: Case) {
        let mut rng = Rng(seed);
        let mem = guest_memory();
        let (desc, avail, used) = random_layout(&mut rng, case.size);
        let mut drv = VqDriver::new(&mem, case.size, desc, avail, used);
        // SAFETY: `mem` outlives `vm`; this process touches guest memory only through
        // vm-memory's volatile accessors and pvio's atomic ones, never through references.
        let vm = unsafe { VmGuestMemory::new(&mem) }.expect("mmap regions are host-mapped");
        let layout = QueueLayout::new(QueueSize::new(case.size).unwrap(), desc, avail, used).unwrap();
        let features = QueueFeatures { event_idx: case.event_idx, indirect_desc: case.indirect };
        let mut dev = DeviceQueue::new(&vm, layout, features).expect("queue inside guest memory");
        let mut segs = [Segment::default(); 64];

        // Device state: popped and not yet added as used (head, bytes written).
        let mut popped: Vec<(u16, u32)> = Vec::new();
        // Added as used, not yet reclaimed by the driver.
        let mut written: HashMap<u16, u32> = HashMap::new();
        // Notification state: the device re-armed and found nothing (idle), the driver
        // re-armed interrupts and found nothing.
        let mut dev_idle = false;
        let mut drv_idle = false;
        let mut kicks = 0u32;
        let mut irqs = 0u32;

        for _ in 0..case.steps {
            match rng.below(12) {
                0..=2 => {
                    // 0: direct; 1: one indirect table; 2: direct buffers ending in a table.
                    let mode = if case.indirect { rng.below(3) as u8 } else { 0 };
                    let max = if mode == 1 { MAX_INDIRECT } else { 8.min(usize::from(case.size)) };
                    let shape = random_bufs(&mut rng, max);
                    drv.add(&mut rng, &shape, mode);
                }
                3 => {
                    if let Some(kick) = drv.publish(case.event_idx) {
                        if dev_idle {
                            assert!(
                                kick,
                                "lost kick: the device re-armed and went idle, the driver did not notify"
                            );
                        }
                        if kick {
                            kicks += 1;
                            dev_idle = false;
                        }
                    }
                }
                4..=5 => {
                    for _ in 0..=rng.below(4) {
                        let Some(chain) = dev.pop(&mut segs).expect("honest chains are accepted") else {
                            assert_eq!(drv.in_ring.len() as u16, drv.avail_idx.wrapping_sub(drv.published));
                            break;
                        };
                        let head = chain.head();
                        assert_eq!(Some(head), drv.in_ring.pop_front(), "chains popped in available order");
                        check_chain(&drv, head, chain.segments(), chain.readable_len(), chain.writable_len());
                        let serial = drv.outstanding[&head].serial;
                        let mut data = vec![0u8; chain.readable_len() as usize + 3];
                        let n = chain.read_at(0, &mut data).expect("readable data");
                        assert_eq!(n, chain.readable_len() as usize);
                        for (i, &b) in data[..n].iter().enumerate() {
                            assert_eq!(b, read_byte(serial, i), "chain {head} readable byte {i}");
                        }
                        // A read from the middle.
                        if n > 2 {
                            let mut two = [0u8; 2];
                            assert_eq!(chain.read_at(n - 2, &mut two), Ok(2));
                            assert_eq!(two, [read_byte(serial, n - 2), read_byte(serial, n - 1)]);
                        }
                        let wl = chain.writable_len() as usize;
                        let w = if wl == 0 || rng.chance(10) { 0 } else { 1 + rng.below(wl as u64) as usize };
                        let bytes: Vec<u8> = (0..w).map(|i| write_byte(serial, i)).collect();
                        // In two pieces, the second from an offset.
                        let cut = w / 2;
                        assert_eq!(chain.write_at(0, &bytes[..cut]), Ok(cut));
                        assert_eq!(chain.write_at(cut, &bytes[cut..]), Ok(w - cut));
                        assert_eq!(chain.write_at(wl, &[1]), Ok(0), "nothing is written past the chain");
                        popped.push((head, w as u32));
                    }
                }
                6..=7 => {
                    // Complete some popped chains, in any order (§2.7.8: used order is free).
                    let k = rng.below(popped.len() as u64 + 1) as usize;
                    for _ in 0..k {
                        let (head, w) = popped.swap_remove(rng.below(popped.len() as u64) as usize);
                        dev.add_used(head, w).expect("add_used of a popped chain");
                        written.insert(head, w);
                    }
                    if rng.chance(70) {
                        let old = drv.used_word(2);
                        let new = dev.next_used();
                        let used_event = u16::from_le(
                            mem.load(GuestAddress(avail + 4 + 2 * u64::from(case.size)), Ordering::Relaxed)
                                .unwrap(),
                        );
                        let flags = u16::from_le(mem.load(GuestAddress(avail), Ordering::Relaxed).unwrap());
                        let notify = dev.push_used().is_needed();
                        assert_eq!(drv.used_word(2), new, "push_used publishes every added element");
                        let want = old != new && interrupt_rule(case.event_idx, used_event, flags, new, old);
                        assert_eq!(notify, want, "interrupt decision for used {old}..{new}, used_event {used_event}, flags {flags}");
                        if old != new && drv_idle {
                            assert!(notify, "lost interrupt: the driver re-armed and went idle");
                        }
                        if notify {
                            irqs += 1;
                            drv_idle = false;
                        }
                    }
                }
                8 => {
                    let pending = dev.enable_notification().expect("honest driver");
                    if case.event_idx {
                        assert_eq!(
                            drv.used_word(drv.size_used_event_offset()),
                            dev.next_avail(),
                            "avail_event"
                        );
                    } else {
                        assert_eq!(drv.used_word(0) & USED_F_NO_NOTIFY, 0, "NO_NOTIFY cleared");
                    }
                    // virtio-queue's enable_notification returns whether avail idx moved past
                    // next_avail; the device's answer must be the same.
                    assert_eq!(pending, drv.published != dev.next_avail(), "enable_notification re-check");
                    dev_idle = !pending;
                }
                9 => {
                    dev.disable_notification();
                    if !case.event_idx {
                        assert_eq!(drv.used_word(0) & USED_F_NO_NOTIFY, USED_F_NO_NOTIFY, "NO_NOTIFY set");
                    }
                    dev_idle = false;
                }
                10 => {
                    drv.reclaim(&mut written);
                }
                _ => {
                    // The driver re-arms interrupts (as virtio's `virtqueue_enable_cb`):
                    // used_event = last used it saw, or clears NO_INTERRUPT; then re-checks.
                    // Or it suppresses them.
                    if rng.chance(70) {
                        if case.event_idx {
                            drv.set_used_event(drv.last_used);
                        } else {
                            drv.set_avail_flags(0);
                        }
                        drv_idle = drv.used_word(2) == drv.last_used;
                    } else {
                        if case.event_idx {
                            drv.set_used_event(drv.last_used.wrapping_sub(1 + rng.below(3) as u16));
                        } else {
                            drv.set_avail_flags(AVAIL_F_NO_INTERRUPT);
                        }
                        drv_idle = false;
                    }
                }
            }
            assert_eq!(dev.error(), None);
        }

        // Drain: publish, pop, complete and reclaim everything.
        drv.publish(case.event_idx);
        let mut segs2 = [Segment::default(); 64];
        while let Some(chain) = dev.pop(&mut segs2).expect("honest chains") {
            let head = chain.head();
            assert_eq!(Some(head), drv.in_ring.pop_front());
            check_chain(&drv, head, chain.segments(), chain.readable_len(), chain.writable_len());
            popped.push((head, 0));
        }
        for (head, w) in popped.drain(..) {
            dev.add_used(head, w).unwrap();
            written.insert(head, w);
        }
        let _ = dev.push_used();
        drv.reclaim(&mut written);
        assert!(drv.in_ring.is_empty() && written.is_empty());
        assert!(
            drv.outstanding.is_empty(),
            "chains never returned: {:?}",
            drv.outstanding.keys().collect::<Vec<_>>()
        );
        assert_eq!(drv.free.len(), usize::from(case.size), "descriptors leaked");
        assert_eq!(drv.slots.free(), SLOTS as usize);
        assert_eq!(drv.returned.len() as u64, drv.next_serial - 1, "every chain returned exactly once");
        assert_eq!(dev.add_used(0, 0), Err(pvio_ring::virtio::DeviceError::NothingToReturn));
        assert!(
            drv.next_serial > case.steps as u64 / 100 && kicks > 0 && irqs > 0,
            "the run moved too few chains to mean anything"
        );
    }

    // -------------------------------------------------------------------------------------
    // (b) pvio's DriverQueue against virtio-queue's Queue (device side)
    // -------------------------------------------------------------------------------------

    struct Sent {
        head: u16,
        bufs: Vec<Buf>,
        slots: Vec<u64>,
        table: Option<u64>,
    }

    fn run_pvio_driver_vq_device(seed: u64, case: Case) {
        use pvio_ring::virtio::{Buffer, DriverQueue};
        use virtio_queue::{Queue, QueueOwnedT, QueueT};

        let mut rng = Rng(seed);
        let mem = guest_memory();
        let (desc, avail, used) = random_layout(&mut rng, case.size);
        // SAFETY: as in `run_vq_driver_pvio_device`.
        let vm = unsafe { VmGuestMemory::new(&mem) }.expect("mmap regions are host-mapped");
        let layout = QueueLayout::new(QueueSize::new(case.size).unwrap(), desc, avail, used).unwrap();
        let features = QueueFeatures { event_idx: case.event_idx, indirect_desc: case.indirect };
        let mut drv: DriverQueue<'_, _, u64> =
            DriverQueue::new(&vm, layout, features).expect("queue in memory");

        let mut q = Queue::new(case.size).expect("power-of-two size");
        q.set_size(case.size);
        q.set_desc_table_address(Some(desc as u32), Some((desc >> 32) as u32));
        q.set_avail_ring_address(Some(avail as u32), Some((avail >> 32) as u32));
        q.set_used_ring_address(Some(used as u32), Some((used >> 32) as u32));
        q.set_event_idx(case.event_idx);
        q.set_ready(true);
        assert!(q.is_valid(&mem), "virtio-queue accepts pvio's layout");

        let word =
            |addr: u64| -> u16 { u16::from_le(mem.load(GuestAddress(addr), Ordering::Acquire).unwrap()) };
        let used_event_at = avail + 4 + 2 * u64::from(case.size);
        let avail_event_at = used + 4 + 8 * u64::from(case.size);

        let mut slots = Slots::new();
        let mut tables: Vec<u64> = (0..u64::from(case.size)).rev().collect();
        let mut sent: HashMap<u64, Sent> = HashMap::new();
        let mut order: VecDeque<u64> = VecDeque::new(); // added, in available order, not yet popped
        let mut unpublished = 0usize;
        let mut popped: Vec<(u64, u16, u32)> = Vec::new(); // (token, head, written)
        let mut written: HashMap<u64, u32> = HashMap::new();
        let mut returned: HashSet<u64> = HashSet::new();
        let mut next_serial = 1u64;
        let mut used_at_last_check = 0u16;
        let (mut dev_idle, mut drv_idle) = (false, false);
        let (mut kicks, mut irqs) = (0u32, 0u32);

        for _ in 0..case.steps {
            match rng.below(12) {
                0..=2 => {
                    let indirect = case.indirect && rng.chance(40);
                    let max = if indirect { MAX_INDIRECT } else { 8.min(usize::from(case.size)) };
                    let shape = random_bufs(&mut rng, max);
                    if slots.free() < shape.len() {
                        continue;
                    }
                    let serial = next_serial;
                    let mut taken = Vec::new();
                    let bufs: Vec<Buf> = shape
                        .iter()
                        .map(|&(len, writable)| {
                            let (slot, addr) = slots.take(&mut rng, len);
                            taken.push(slot);
                            Buf { addr, len, writable }
                        })
                        .collect();
                    let mut k = 0usize;
                    for b in &bufs {
                        let bytes: Vec<u8> = if b.writable {
                            vec![UNTOUCHED; b.len as usize]
                        } else {
                            let v = (0..b.len as usize).map(|i| read_byte(serial, k + i)).collect();
                            k += b.len as usize;
                            v
                        };
                        mem.write_slice(&bytes, GuestAddress(b.addr)).unwrap();
                    }
                    let r: Vec<Buffer> =
                        bufs.iter().filter(|b| !b.writable).map(|b| Buffer::new(b.addr, b.len)).collect();
                    let w: Vec<Buffer> =
                        bufs.iter().filter(|b| b.writable).map(|b| Buffer::new(b.addr, b.len)).collect();
                    let table = if indirect { tables.pop() } else { None };
                    let res = match table {
                        Some(t) => {
                            drv.add_indirect(TABLE_BASE + t * 16 * MAX_INDIRECT as u64, &r, &w, serial)
                        }
                        None => drv.add(&r, &w, serial),
                    };
                    match res {
                        Ok(head) => {
                            assert!(head < case.size);
                            next_serial += 1;
                            order.push_back(serial);
                            unpublished += 1;
                            sent.insert(serial, Sent { head, bufs, slots: taken, table });
                        }
                        Err(rej) => {
                            assert_eq!(rej.token, serial, "a refused chain hands its token back");
                            let needed = if indirect { 1 } else { shape.len() };
                            assert!(
                                usize::from(drv.num_free()) < needed,
                                "refused with room: {:?}",
                                rej.error
                            );
                            taken.into_iter().for_each(|s| slots.give(s));
                            tables.extend(table);
                        }
                    }
                }
                3 => {
                    let old = word(avail + 2);
                    let notify = drv.publish().is_needed();
                    let new = word(avail + 2);
                    assert_eq!(
                        usize::from(new.wrapping_sub(old)),
                        unpublished,
                        "one idx store publishes the batch"
                    );
                    unpublished = 0;
                    if old != new {
                        let want = kick_rule(case.event_idx, word(avail_event_at), word(used), new, old);
                        assert_eq!(notify, want, "kick decision for avail {old}..{new}");
                        if dev_idle {
                            assert!(notify, "lost kick: virtio-queue re-armed notifications and went idle");
                        }
                        if notify {
                            kicks += 1;
                            dev_idle = false;
                        }
                    } else {
                        assert!(!notify);
                    }
                }
                4..=5 => {
                    let k = 1 + rng.below(4) as usize;
                    let chains: Vec<_> = if rng.chance(50) {
                        q.iter(&mem).expect("valid avail idx").take(k).collect()
                    } else {
                        (0..k).map_while(|_| q.pop_descriptor_chain(&mem)).collect()
                    };
                    for chain in chains {
                        let serial =
                            order.pop_front().expect("virtio-queue popped a chain that was never published");
                        let s = &sent[&serial];
                        assert_eq!(chain.head_index(), s.head, "head of chain {serial}");
                        let descs: Vec<Buf> = chain
                            .clone()
                            .map(|d| Buf { addr: d.addr().0, len: d.len(), writable: d.is_write_only() })
                            .collect();
                        assert_eq!(
                            descs, s.bufs,
                            "chain {serial} as virtio-queue walks it (indirect {:?})",
                            s.table
                        );
                        // Read every readable byte, write a prefix of the writable space:
                        // through virtio-queue's own `Reader`/`Writer` (which walk the chain
                        // again and translate it), or buffer by buffer through vm-memory.
                        let rl: usize = s.bufs.iter().filter(|b| !b.writable).map(|b| b.len as usize).sum();
                        let wl: usize = s.bufs.iter().filter(|b| b.writable).map(|b| b.len as usize).sum();
                        let w = if wl == 0 || rng.chance(10) { 0 } else { 1 + rng.below(wl as u64) as usize };
                        let want_read: Vec<u8> = (0..rl).map(|i| read_byte(serial, i)).collect();
                        let to_write: Vec<u8> = (0..w).map(|i| write_byte(serial, i)).collect();
                        if rng.chance(50) {
                            use std::io::{Read, Write};
                            let mut r = chain.clone().reader(&mem).expect("virtio-queue accepts the chain");
                            assert_eq!(
                                r.available_bytes(),
                                rl,
                                "chain {serial}: readable bytes per virtio-queue"
                            );
                            let mut got = vec![0u8; rl];
                            r.read_exact(&mut got).unwrap();
                            assert_eq!(
                                got, want_read,
                                "chain {serial} readable data via virtio-queue's Reader"
                            );
                            let mut wr = chain.writer(&mem).expect("virtio-queue accepts the chain");
                            assert_eq!(
                                wr.available_bytes(),
                                wl,
                                "chain {serial}: writable bytes per virtio-queue"
                            );
                            wr.write_all(&to_write).unwrap();
                            assert_eq!(wr.bytes_written(), w);
                        } else {
                            let mut k = 0usize;
                            for b in s.bufs.iter().filter(|b| !b.writable) {
                                let mut got = vec![0u8; b.len as usize];
                                mem.read_slice(&mut got, GuestAddress(b.addr)).unwrap();
                                assert_eq!(
                                    got,
                                    want_read[k..k + b.len as usize],
                                    "chain {serial} readable data at {k}"
                                );
                                k += b.len as usize;
                            }
                            let mut k = 0usize;
                            for b in s.bufs.iter().filter(|b| b.writable) {
                                let n = (b.len as usize).min(w.saturating_sub(k));
                                let lo = k.min(w);
                                mem.write_slice(&to_write[lo..lo + n], GuestAddress(b.addr)).unwrap();
                                k += b.len as usize;
                            }
                        }
                        popped.push((serial, s.head, w as u32));
                    }
                }
                6..=7 => {
                    let k = rng.below(popped.len() as u64 + 1) as usize;
                    for _ in 0..k {
                        let (serial, head, w) = popped.swap_remove(rng.below(popped.len() as u64) as usize);
                        q.add_used(&mem, head, w).expect("add_used");
                        written.insert(serial, w);
                    }
                    if k > 0 {
                        let (old, new) = (used_at_last_check, q.next_used());
                        let (used_event, flags) = (word(used_event_at), word(avail));
                        let notify = q.needs_notification(&mem).expect("needs_notification");
                        used_at_last_check = new;
                        if case.event_idx {
                            assert_eq!(
                                notify,
                                interrupt_rule(true, used_event, flags, new, old),
                                "virtio-queue's own rule"
                            );
                        }
                        if drv_idle {
                            assert!(notify, "lost interrupt: pvio re-armed interrupts and went idle");
                        }
                        if !case.event_idx && flags & AVAIL_F_NO_INTERRUPT != 0 {
                            // virtio-queue ignores the flag (it always interrupts); the flag
                            // must still be what pvio's driver last asked for.
                            assert!(!drv_idle);
                        }
                        if notify {
                            irqs += 1;
                            drv_idle = false;
                        }
                    }
                }
                8 => {
                    let more = q.enable_notification(&mem).expect("enable_notification");
                    if case.event_idx {
                        assert_eq!(word(avail_event_at), q.next_avail());
                    }
                    assert_eq!(more, order.len() > unpublished, "virtio-queue's re-check");
                    dev_idle = !more;
                }
                9 => {
                    q.disable_notification(&mem).expect("disable_notification");
                    dev_idle = false;
                }
                10 => {
                    while let Some(u) = drv.pop_used().expect("virtio-queue's used ring is valid") {
                        let s = sent
                            .remove(&u.token)
                            .unwrap_or_else(|| panic!("token {} not outstanding", u.token));
                        assert!(returned.insert(u.token), "token {} returned twice", u.token);
                        assert_eq!(u.head, s.head);
                        let w = written.remove(&u.token).expect("reclaimed a chain the device never used");
                        assert_eq!(u.len, w, "used len of chain {}", u.token);
                        let mut k = 0usize;
                        for b in s.bufs.iter().filter(|b| b.writable) {
                            let mut got = vec![0u8; b.len as usize];
                            mem.read_slice(&mut got, GuestAddress(b.addr)).unwrap();
                            for (i, &g) in got.iter().enumerate() {
                                let want =
                                    if k + i < w as usize { write_byte(u.token, k + i) } else { UNTOUCHED };
                                assert_eq!(g, want, "chain {} writable byte {}", u.token, k + i);
                            }
                            k += b.len as usize;
                        }
                        s.slots.into_iter().for_each(|x| slots.give(x));
                        tables.extend(s.table);
                    }
                }
                _ => {
                    if rng.chance(70) {
                        let pending = drv.enable_interrupts().expect("valid used ring");
                        if case.event_idx {
                            assert_eq!(
                                word(used_event_at),
                                q.next_used().wrapping_sub(written.len() as u16),
                                "used_event = last used reclaimed"
                            );
                        } else {
                            assert_eq!(word(avail) & AVAIL_F_NO_INTERRUPT, 0);
                        }
                        assert_eq!(pending, !written.is_empty(), "pvio's re-check of the used ring");
                        drv_idle = !pending;
                    } else {
                        drv.disable_interrupts();
                        if !case.event_idx {
                            assert_eq!(word(avail) & AVAIL_F_NO_INTERRUPT, AVAIL_F_NO_INTERRUPT);
                        }
                        drv_idle = false;
                    }
                }
            }
            assert_eq!(drv.error(), None);
        }

        // Drain.
        let _ = drv.publish();
        let rest: Vec<_> = q.iter(&mem).unwrap().collect();
        for chain in rest {
            let serial = order.pop_front().expect("published");
            assert_eq!(chain.head_index(), sent[&serial].head);
            popped.push((serial, chain.head_index(), 0));
        }
        for (serial, head, w) in popped.drain(..) {
            q.add_used(&mem, head, w).unwrap();
            written.insert(serial, w);
        }
        while let Some(u) = drv.pop_used().unwrap() {
            let s = sent.remove(&u.token).expect("outstanding");
            assert!(returned.insert(u.token));
            assert_eq!(Some(u.len), written.remove(&u.token));
            s.slots.into_iter().for_each(|x| slots.give(x));
        }
        assert!(order.is_empty() && sent.is_empty() && written.is_empty(), "chains lost");
        assert_eq!(drv.num_free(), case.size, "descriptors leaked");
        assert_eq!(drv.in_flight(), 0);
        assert_eq!(returned.len() as u64, next_serial - 1, "every token returned exactly once");
        assert_eq!(slots.free(), SLOTS as usize);
        assert!(
            next_serial > case.steps as u64 / 100 && kicks > 0 && irqs > 0,
            "the run moved too few chains to mean anything"
        );
    }

    // -------------------------------------------------------------------------------------
    // virtio-queue's MockSplitQueue itself
    // -------------------------------------------------------------------------------------

    /// `MockSplitQueue`'s own helpers (`add_chain`, `add_indirect_chain`, `add_desc_chains`)
    /// write chains, at the mock's own ring addresses; pvio's device pops them and returns
    /// them, and the mock's used-ring accessors read what pvio wrote. The mock reuses
    /// descriptors from index 0 for every `add_chain` and places its used ring inside its
    /// available ring beyond entry 7 (for 16 entries), so each chain is popped before the next
    /// is written and at most 4 chains are offered in all.
    #[test]
    fn mock_split_queue_chains_through_pvio_device() {
        use virtio_queue::mock::MockSplitQueue;

        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1_0000),
            (GuestAddress(0x3000_0000), 0x1_0000),
        ])
        .expect("anonymous guest memory");
        let size = 16u16;
        let mut vq = MockSplitQueue::new(&mem, size);
        let (desc, avail, used) = (vq.desc_table_addr().0, vq.avail_addr().0, vq.used_addr().0);
        // SAFETY: as in `run_vq_driver_pvio_device`.
        let vm = unsafe { VmGuestMemory::new(&mem) }.expect("mmap regions are host-mapped");
        let layout = QueueLayout::new(QueueSize::new(size).unwrap(), desc, avail, used).unwrap();
        let features = QueueFeatures { event_idx: false, indirect_desc: true };
        let mut dev = DeviceQueue::new(&vm, layout, features).unwrap();
        let mut segs = [Segment::default(); 16];
        let mut returned = 0u16;
        let mut complete = |dev: &mut DeviceQueue<'_, VmGuestMemory<'_>>,
                            vq: &MockSplitQueue<'_, GuestMemoryMmap>,
                            head: u16,
                            len: u32| {
            dev.add_used(head, len).unwrap();
            let _ = dev.push_used();
            let e = vq.used().ring().ref_at(usize::from(returned)).unwrap().load();
            returned += 1;
            assert_eq!((e.id(), e.len()), (u32::from(head), len), "the mock reads pvio's used element");
            assert_eq!(u16::from_le(vq.used().idx().load()), returned, "the mock reads pvio's used idx");
        };

        // add_chain(3): descriptors 0 -> 1 -> 2, each 0x1000 bytes at 0x1000, device-readable.
        vq.add_chain(3).unwrap();
        let c = dev.pop(&mut segs).unwrap().expect("the mock's chain");
        assert_eq!(c.head(), 0);
        assert_eq!(c.segments(), &[Segment { addr: 0x1000, len: 0x1000, writable: false }; 3]);
        complete(&mut dev, &vq, 0, 0);

        // add_indirect_chain(4): descriptor 0 points at a 4-entry table at 0x3000_0000.
        vq.add_indirect_chain(4).unwrap();
        let c = dev.pop(&mut segs).unwrap().expect("the mock's indirect chain");
        assert_eq!(c.head(), 0);
        assert_eq!(c.segments(), &[Segment { addr: 0x1000, len: 0x1000, writable: false }; 4]);
        assert_eq!(c.readable_len(), 0x4000);
        complete(&mut dev, &vq, 0, 0);

        // add_desc_chains: two chains (readable + writable, then one writable) at index 5.
        let d = |addr: u64, len: u32, flags: u16, next: u16| {
            RawDescriptor::from(VqDesc::new(addr, len, flags, next))
        };
        let descs = [d(0x2000, 100, F_NEXT, 6), d(0x3000, 200, F_WRITE, 0), d(0x4000, 300, F_WRITE, 0)];
        vq.add_desc_chains(&descs, 5).unwrap();
        assert_eq!(dev.pending(), Ok(2));
        let c = dev.pop(&mut segs).unwrap().expect("first chain");
        assert_eq!(c.head(), 5);
        assert_eq!(
            c.segments(),
            &[
                Segment { addr: 0x2000, len: 100, writable: false },
                Segment { addr: 0x3000, len: 200, writable: true }
            ]
        );
        assert_eq!(c.write_at(0, &[7; 200]), Ok(200));
        let c2 = dev.pop(&mut segs).unwrap().expect("second chain");
        assert_eq!(
            (c2.head(), c2.segments()),
            (7, &[Segment { addr: 0x4000, len: 300, writable: true }][..])
        );
        complete(&mut dev, &vq, 5, 200);
        complete(&mut dev, &vq, 7, 0);
        let mut got = [0u8; 200];
        mem.read_slice(&mut got, GuestAddress(0x3000)).unwrap();
        assert_eq!(got, [7; 200]);
        assert_eq!(dev.pop(&mut segs).unwrap().map(|c| c.head()), None);
        assert_eq!(dev.error(), None);
    }

    const SIZES: [u16; 8] = [1, 2, 4, 8, 16, 64, 256, 1024];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// rust-vmm's mock driver parts write chains; pvio's device pops and returns them.
        #[test]
        fn vq_driver_pvio_device(seed in any::<u64>(), size in 0..SIZES.len(), event_idx in any::<bool>(), indirect in any::<bool>()) {
            run_vq_driver_pvio_device(seed, Case { size: SIZES[size], event_idx, indirect, steps: 1500 });
        }

        /// pvio's driver writes chains; virtio-queue's `Queue` pops, uses and returns them.
        #[test]
        fn pvio_driver_vq_device(seed in any::<u64>(), size in 0..SIZES.len(), event_idx in any::<bool>(), indirect in any::<bool>()) {
            run_pvio_driver_vq_device(seed, Case { size: SIZES[size], event_idx, indirect, steps: 1500 });
        }
    }

    /// Every combination of the two features, on a small and a large queue, both ways.
    #[test]
    fn all_features_both_ways() {
        for (i, &size) in [2u16, 256].iter().enumerate() {
            for mask in 0..4u64 {
                let case = |steps| Case { size, event_idx: mask & 1 != 0, indirect: mask & 2 != 0, steps };
                run_vq_driver_pvio_device(0x5eed_0000 + 16 * i as u64 + mask, case(3000));
                run_pvio_driver_vq_device(0x5eed_1000 + 16 * i as u64 + mask, case(3000));
            }
        }
    }
}
