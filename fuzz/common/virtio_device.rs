//! Harness of the `virtio_device` fuzz target: a hostile driver against pvio's virtio
//! [`DeviceQueue`].
//!
//! Shared by `fuzz/fuzz_targets/virtio_device.rs` (libFuzzer) and by the stable tests
//! `ring/tests/fuzz_replay.rs` (replays the corpus and regressions) and
//! `ring/tests/proptest_virtqueue.rs` (random inputs, also under miri), which pull it in with
//! `#[path = ...] mod`. It therefore uses nothing but `pvio_ring` and `std`, and decodes its
//! input by hand.
//!
//! Guest memory is two heap regions: A at guest address 0 (16 KiB: descriptor table at 0,
//! available ring at 0x800, used ring at 0xa00, indirect tables from 0x1000) and B at 0x10000
//! (16 KiB of buffers); everything else is unmapped. An honest pvio [`DriverQueue`] shares
//! the queue; hostile operations write anything anywhere in A.
//!
//! # Input format
//!
//! ```text
//! byte 0   bits 0-2: queue size 1 << (b & 7) (1 .. 128); bit 3: EVENT_IDX; bit 4: INDIRECT_DESC;
//!          bits 5-7: segment capacity given to pop, SEGS[b >> 5]
//! byte 1   chain byte cap: 0 => u32::MAX, 1 => 4096, n => 64 * n
//! then ops one opcode byte (modulo 16) and its arguments, until the input ends
//! ```
//!
//! A missing byte reads as 0, so every input is valid. Opcodes:
//!
//! | op | action                                     | arguments                                   |
//! |----|--------------------------------------------|---------------------------------------------|
//! |  0 | honest driver: add a chain                 | shape byte, length byte, offset byte         |
//! |  1 | honest driver: publish                     |                                             |
//! |  2 | device: pop                                |                                             |
//! |  3 | device: pop, repeatedly                    | count (mod 8)                               |
//! |  4 | device: add_used of a popped chain         | pick, written-length byte                    |
//! |  5 | device: add_used of any head               | head u16, len u32                           |
//! |  6 | device: push_used                          |                                             |
//! |  7 | device: enable_notification                |                                             |
//! |  8 | device: disable_notification               |                                             |
//! |  9 | hostile: write avail idx                   | wild index                                  |
//! | 10 | hostile: write bytes into region A         | offset u16 (mod len), n (mod 17), n bytes    |
//! | 11 | hostile: write a descriptor                | index u8, wild addr, wild len, flags, next   |
//! | 12 | hostile: write an avail ring entry         | slot u8, head u16                           |
//! | 13 | honest driver: reclaim used chains         |                                             |
//! | 14 | hostile: write an indirect-table entry     | table u8, entry u8, wild addr, wild len, flags, next |
//! | 15 | device: pending                            |                                             |
//!
//! A wild index is a kind byte (mod 4) and then: 0 => u16 (absolute), 1 => next_avail + i8,
//! 2 => next_avail + size + i8, 3 => current avail idx + i8. A wild address is a kind byte
//! (mod 4): 0 => u64, 1 => region A + u16, 2 => region B + u16, 3 => end of B - u8. A wild
//! length is a kind byte (mod 4): 0 => u32, 1 => u8, 2 => u16, 3 => u32::MAX - u8.
//!
//! # Invariants checked (a failed `assert!` is a finding)
//!
//! - no panic, no out-of-bounds access, bounded work: a pop translates at most
//!   `size + 65536 + 1` guest ranges (a descriptor walk is bounded by its tables);
//! - a chain handed out has a head inside the table, at most `capacity` segments, readable
//!   before writable, lengths that add up, a total within the cap, and every buffer inside
//!   guest memory (it translates);
//! - errors are values that name the rule: a chain-level error names a head inside the table
//!   and consumes one available entry; `HeadOutOfRange` names a head outside it; a latched
//!   error (`AvailIdxOverflow`/`AvailIdxRewound`) carries the avail idx that was in memory and
//!   is impossible, and from then on every pop, `pending` and `enable_notification` returns
//!   it and `error()` reports it;
//! - `add_used` fails exactly for a head outside the table or when no popped chain is
//!   outstanding; `push_used` publishes the device's own count and decides interrupts by the
//!   spec's rule on what the driver wrote (EVENT_IDX `used_event`, or the NO_INTERRUPT flag);
//!   `enable_notification` publishes `avail_event` = next_avail (or clears NO_NOTIFY);
//! - while the input has made no hostile write, the traffic is exactly the honest driver's:
//!   the same chains in the same order, no error on either side, every chain returned with its
//!   token and written length.

use std::cell::Cell;
use std::collections::VecDeque;

use pvio_ring::virtio::{
    DeviceError, DeviceQueue, DriverQueue, GuestMemory, GuestMemoryError, GuestRegion, GuestRegions,
    GuestSlice, QueueFeatures, QueueLayout, QueueSize, Segment,
};
use pvio_ring::{HeapRegion, SharedMem};

const A_BASE: u64 = 0;
const A_LEN: usize = 0x4000;
const B_BASE: u64 = 0x1_0000;
const B_LEN: usize = 0x4000;
const DESC: u64 = 0;
const AVAIL: u64 = 0x800;
const USED: u64 = 0xa00;
const TABLES: u64 = 0x1000;
/// Bytes per indirect table slot (16 entries).
const TABLE_SLOT: u64 = 256;
const SEGS: [usize; 8] = [1, 2, 3, 4, 8, 16, 64, 300];
/// Upper bound on operations per input, to keep every run short.
const MAX_OPS: usize = 2048;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

use super::bytes::Bytes as Input;

/// This harness's draws from the input.
trait Draw {
    fn delta(&mut self) -> u16;
    fn addr(&mut self) -> u64;
    fn len(&mut self) -> u32;
}

impl Draw for Input<'_> {
    fn delta(&mut self) -> u16 {
        self.u8() as i8 as i16 as u16
    }

    fn addr(&mut self) -> u64 {
        match self.u8() % 4 {
            0 => self.u64(),
            1 => A_BASE + u64::from(self.u16()),
            2 => B_BASE + u64::from(self.u16()),
            _ => B_BASE + B_LEN as u64 - u64::from(self.u8()),
        }
    }

    fn len(&mut self) -> u32 {
        match self.u8() % 4 {
            0 => self.u32(),
            1 => u32::from(self.u8()),
            2 => u32::from(self.u16()),
            _ => u32::MAX - u32::from(self.u8()),
        }
    }
}

/// Guest memory that counts translations: the device's work per call, measured.
struct Counting<'r, 'a> {
    inner: GuestRegions<'r, 'a>,
    calls: Cell<u64>,
}

impl GuestMemory for Counting<'_, '_> {
    fn translate(&self, addr: u64, len: usize) -> Result<GuestSlice<'_>, GuestMemoryError> {
        self.calls.set(self.calls.get() + 1);
        self.inner.translate(addr, len)
    }
}

/// A chain the honest driver added.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    token: u64,
    head: u16,
    segs: Vec<Segment>,
}

struct Harness<'m, 'r, 'a> {
    mem: &'m Counting<'r, 'a>,
    a: SharedMem<'a>,
    dev: DeviceQueue<'m, Counting<'r, 'a>>,
    drv: DriverQueue<'m, Counting<'r, 'a>, u64>,
    size: u16,
    event_idx: bool,
    cap: usize,
    max_bytes: u32,
    /// No hostile write yet.
    honest: bool,
    /// Honest chains added, in available order, not yet popped (published or not).
    sent: VecDeque<Sent>,
    unpublished: usize,
    /// Popped by the device, not yet returned: (head, writable bytes, token if honest).
    popped: Vec<(u16, u32, Option<u64>)>,
    /// Returned by the device (honest chains): token => written length.
    used: Vec<(u64, u32)>,
    in_flight: u32,
    pushed: u16,
    latched: Option<DeviceError>,
    next_token: u64,
    returned: u64,
    /// Free indirect-table slots, and the slot of each outstanding indirect chain.
    tables: Vec<u64>,
    table_of: Vec<(u64, u64)>,
}

impl Harness<'_, '_, '_> {
    fn word(&self, addr: u64) -> u16 {
        self.a.read::<u16>(addr as usize).expect("ring word in region A")
    }

    fn wild_index(&self, input: &mut Input<'_>) -> u16 {
        let next = self.dev.next_avail();
        match input.u8() % 4 {
            0 => input.u16(),
            1 => next.wrapping_add(input.delta()),
            2 => next.wrapping_add(self.size).wrapping_add(input.delta()),
            _ => self.word(AVAIL + 2).wrapping_add(input.delta()),
        }
    }

    fn add_honest(&mut self, input: &mut Input<'_>) {
        let shape = input.u8();
        let len_seed = input.u8();
        let off = u64::from(input.u8()) * 16;
        let (nr, nw) = (usize::from(shape & 3), usize::from((shape >> 2) & 3));
        let n = (nr + nw).max(1);
        let nr = if nr + nw == 0 { 1 } else { nr };
        let indirect = shape & 0x10 != 0 && self.dev.features().indirect_desc;
        let segs: Vec<Segment> = (0..n)
            .map(|i| {
                let len = (u32::from(len_seed) * (i as u32 + 1)) % 512;
                let addr = B_BASE + (off + i as u64 * 700) % (B_LEN as u64 - 512);
                Segment { addr, len, writable: i >= nr }
            })
            .collect();
        let buf = |s: &Segment| pvio_ring::virtio::Buffer::new(s.addr, s.len);
        let r: Vec<_> = segs.iter().filter(|s| !s.writable).map(buf).collect();
        let w: Vec<_> = segs.iter().filter(|s| s.writable).map(buf).collect();
        // Only chains the device is configured to take: the capacity given to pop and the cap.
        let total: u64 = segs.iter().map(|s| u64::from(s.len)).sum();
        if n > self.cap || total > u64::from(self.max_bytes) {
            return;
        }
        let token = self.next_token;
        let table = if indirect {
            // A table slot stays with its chain until the chain is reclaimed.
            match self.tables.pop() {
                Some(t) => Some(t),
                None => return,
            }
        } else {
            None
        };
        let res = match table {
            Some(t) => self.drv.add_indirect(A_BASE + TABLES + t * TABLE_SLOT, &r, &w, token),
            None => self.drv.add(&r, &w, token),
        };
        match res {
            Ok(head) => {
                assert!(head < self.size);
                self.next_token += 1;
                self.unpublished += 1;
                self.sent.push_back(Sent { token, head, segs });
                if let Some(t) = table {
                    self.table_of.push((token, t));
                }
            }
            Err(rej) => {
                self.tables.extend(table);
                assert_eq!(rej.token, token, "a refused chain hands its token back");
                if self.honest {
                    let needed = if indirect { 1 } else { n };
                    assert!(
                        usize::from(self.drv.num_free()) < needed || n > usize::from(self.size) && !indirect,
                        "honest chain refused with room: {:?}",
                        rej.error
                    );
                }
            }
        }
    }

    fn publish(&mut self) {
        let _ = self.drv.publish();
        self.unpublished = 0;
    }

    fn check_latched(&mut self, e: DeviceError, avail_idx: u16, next: u16) {
        assert!(!self.honest, "latched error {e:?} from an honest driver");
        match self.latched {
            Some(l) => assert_eq!(e, l, "a latched queue returned a different error"),
            None => {
                match e {
                    DeviceError::AvailIdxOverflow { avail_idx: a, next_avail, size } => {
                        assert_eq!((a, next_avail, size), (avail_idx, next, self.size), "{e:?}");
                        assert!(a.wrapping_sub(next_avail) > size, "overflow for a possible index: {e:?}");
                    }
                    DeviceError::AvailIdxRewound { avail_idx: a, seen } => {
                        assert_eq!(a, avail_idx, "{e:?}");
                        assert!(seen.wrapping_sub(next) <= self.size, "{e:?}: seen was once valid");
                        // Behind the last validated index: within the entries seen, or (serial
                        // arithmetic) less than half the index space back.
                        let back = seen.wrapping_sub(a);
                        assert!(
                            a.wrapping_sub(next) < seen.wrapping_sub(next) || (back != 0 && back <= 0x8000),
                            "rewound but not behind: {e:?}"
                        );
                    }
                    _ => panic!("not a latched error: {e:?}"),
                }
                assert!(e.to_string().contains('§'), "error names no rule: {e}");
                self.latched = Some(e);
            }
        }
    }

    fn pop(&mut self) {
        let before = self.dev.next_avail();
        let avail_idx = self.word(AVAIL + 2);
        let mut segs = vec![Segment::default(); self.cap];
        self.mem.calls.set(0);
        let res = self.dev.pop(&mut segs);
        let calls = self.mem.calls.get();
        assert!(calls <= u64::from(self.size) + 65536 + 1, "{calls} translations for one pop");
        match res {
            Ok(None) => {
                assert!(self.latched.is_none(), "latched, yet pop succeeded");
                assert_eq!(self.dev.next_avail(), before);
                if self.honest {
                    assert_eq!(self.sent.len(), self.unpublished, "published chains not popped");
                }
            }
            Ok(Some(chain)) => {
                assert!(self.latched.is_none(), "latched, yet pop succeeded");
                assert_eq!(self.dev.next_avail(), before.wrapping_add(1), "one available entry per pop");
                let head = chain.head();
                assert!(head < self.size, "head {head} outside the table");
                let s = chain.segments();
                assert!(s.len() <= self.cap && !s.is_empty());
                let r = s.iter().take_while(|x| !x.writable).count();
                assert!(s[r..].iter().all(|x| x.writable), "readable after writable: {s:?}");
                assert_eq!(chain.readable().len(), r);
                let rl: u64 = s[..r].iter().map(|x| u64::from(x.len)).sum();
                let wl: u64 = s[r..].iter().map(|x| u64::from(x.len)).sum();
                assert_eq!((u64::from(chain.readable_len()), u64::from(chain.writable_len())), (rl, wl));
                assert!(rl + wl <= u64::from(self.max_bytes), "chain over the cap");
                for x in s.iter().filter(|x| x.len > 0) {
                    assert!(
                        self.mem.inner.translate(x.addr, x.len as usize).is_ok(),
                        "segment outside memory: {x:?}"
                    );
                }
                let wl = chain.writable_len();
                let token = if self.honest {
                    let sent = self.sent.pop_front().expect("a chain was popped that the driver never added");
                    assert_eq!((head, s), (sent.head, &sent.segs[..]), "honest chain {} changed", sent.token);
                    Some(sent.token)
                } else {
                    None
                };
                self.popped.push((head, wl, token));
                self.in_flight += 1;
            }
            Err(e) if e.is_latched() => {
                assert_eq!(self.dev.next_avail(), before);
                self.check_latched(e, avail_idx, before);
            }
            Err(e) => {
                assert!(!self.honest, "error {e:?} from an honest driver");
                assert!(self.latched.is_none(), "latched, yet pop returned {e:?}");
                assert_eq!(self.dev.next_avail(), before.wrapping_add(1), "{e:?} consumed no entry");
                assert!(e.to_string().contains('§'), "error names no rule: {e}");
                match e {
                    DeviceError::HeadOutOfRange { head, size } => {
                        assert!(head >= size && size == self.size, "{e:?}");
                    }
                    DeviceError::Ring(_) => panic!("the rings were checked at construction: {e:?}"),
                    _ => {
                        let head = e.chain_head().expect("chain-level errors name their head");
                        assert!(head < self.size, "{e:?}");
                        // The chain is in flight: the device must return it, with length 0.
                        self.popped.push((head, 0, None));
                        self.in_flight += 1;
                    }
                }
            }
        }
        assert_eq!(self.dev.error(), self.latched);
    }

    fn add_used(&mut self, head: u16, len: u32, token: Option<u64>) -> bool {
        let res = self.dev.add_used(head, len);
        if head >= self.size {
            assert!(matches!(res, Err(DeviceError::UsedHeadOutOfRange { .. })), "{res:?}");
            false
        } else if self.in_flight == 0 {
            assert_eq!(res, Err(DeviceError::NothingToReturn));
            false
        } else {
            assert_eq!(res, Ok(()));
            self.in_flight -= 1;
            if let Some(t) = token {
                self.used.push((t, len));
            }
            true
        }
    }

    fn push_used(&mut self) {
        let (old, new) = (self.pushed, self.dev.next_used());
        let used_event = self.word(AVAIL + 4 + 2 * u64::from(self.size));
        let flags = self.word(AVAIL);
        let notify = self.dev.push_used().is_needed();
        let want = old != new
            && if self.event_idx {
                new.wrapping_sub(used_event).wrapping_sub(1) < new.wrapping_sub(old)
            } else {
                flags & 1 == 0
            };
        assert_eq!(notify, want, "push_used {old}..{new}: not the spec's interrupt rule");
        if old != new {
            assert_eq!(self.word(USED + 2), new, "used idx not published from the device's own count");
        }
        self.pushed = new;
    }

    fn refresh_call(&mut self, enable: bool) {
        let before = self.dev.next_avail();
        let avail_idx = self.word(AVAIL + 2);
        let res = if enable { self.dev.enable_notification().map(u16::from) } else { self.dev.pending() };
        match res {
            Ok(v) => {
                assert!(self.latched.is_none(), "latched, yet the avail idx was accepted");
                let pending = avail_idx.wrapping_sub(before);
                assert!(pending <= self.size, "accepted avail idx {avail_idx} with next_avail {before}");
                assert_eq!(v, if enable { u16::from(pending > 0) } else { pending });
                if enable {
                    if self.event_idx {
                        assert_eq!(self.word(USED + 4 + 8 * u64::from(self.size)), before, "avail_event");
                    } else {
                        assert_eq!(self.word(USED) & 1, 0, "NO_NOTIFY still set");
                    }
                }
            }
            Err(e) => {
                assert!(e.is_latched(), "{e:?}");
                self.check_latched(e, avail_idx, before);
            }
        }
        assert_eq!(self.dev.next_avail(), before);
    }

    fn reclaim(&mut self) {
        loop {
            match self.drv.pop_used() {
                Ok(Some(u)) => {
                    if let Some(i) = self.table_of.iter().position(|&(t, _)| t == u.token) {
                        let (_, slot) = self.table_of.swap_remove(i);
                        self.tables.push(slot);
                    }
                    if self.honest {
                        let i = self
                            .used
                            .iter()
                            .position(|&(t, _)| t == u.token)
                            .expect("reclaimed a chain never used");
                        let (_, len) = self.used.swap_remove(i);
                        assert_eq!(u.len, len, "used length of chain {}", u.token);
                    }
                    self.returned += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    assert!(!self.honest, "the honest driver failed: {e:?}");
                    break;
                }
            }
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        match input.u8() % 16 {
            0 => self.add_honest(input),
            1 => self.publish(),
            2 => self.pop(),
            3 => {
                for _ in 0..input.u8() % 8 {
                    self.pop();
                }
            }
            4 => {
                let pick = usize::from(input.u8());
                let frac = u64::from(input.u8());
                if !self.popped.is_empty() {
                    let (head, wl, token) = self.popped.swap_remove(pick % self.popped.len());
                    let len = (u64::from(wl) * frac / 255) as u32;
                    self.add_used(head, len, token);
                }
            }
            5 => {
                let head = input.u16();
                let len = input.u32();
                // Returning a head the device never popped is the device's own bug, not the
                // driver's: afterwards the honest driver may reject the used ring.
                if self.add_used(head, len, None) {
                    self.honest = false;
                    self.popped.pop();
                }
            }
            6 => self.push_used(),
            7 => self.refresh_call(true),
            8 => {
                self.dev.disable_notification();
                if !self.event_idx {
                    assert_eq!(self.word(USED) & 1, 1, "NO_NOTIFY not set");
                }
            }
            9 => {
                let v = self.wild_index(input);
                self.a.write((AVAIL + 2) as usize, &v).expect("in region A");
                self.honest = false;
            }
            10 => {
                let off = usize::from(input.u16()) % A_LEN;
                let n = usize::from(input.u8() % 17);
                let bytes: Vec<u8> = (0..n).map(|_| input.u8()).collect();
                let n = n.min(A_LEN - off);
                self.a.write_bytes(off, &bytes[..n]).expect("in region A");
                self.honest = false;
            }
            11 => {
                let i = u64::from(input.u8()) % u64::from(self.size);
                let d = self.wild_desc(input);
                self.a.write_bytes((DESC + 16 * i) as usize, &d).expect("table in region A");
                self.honest = false;
            }
            12 => {
                let slot = u64::from(input.u8()) % u64::from(self.size);
                let head = input.u16();
                self.a.write((AVAIL + 4 + 2 * slot) as usize, &head).expect("in region A");
                self.honest = false;
            }
            13 => self.reclaim(),
            14 => {
                let t = u64::from(input.u8()) % ((A_LEN as u64 - TABLES) / TABLE_SLOT);
                let e = u64::from(input.u8() % 16);
                let d = self.wild_desc(input);
                self.a.write_bytes((TABLES + t * TABLE_SLOT + 16 * e) as usize, &d).expect("in region A");
                self.honest = false;
            }
            _ => self.refresh_call(false),
        }
    }

    fn wild_desc(&self, input: &mut Input<'_>) -> [u8; 16] {
        let addr = input.addr();
        let len = input.len();
        let flags = u16::from(input.u8()) & (F_NEXT | F_WRITE | F_INDIRECT | 0x80);
        let next = match input.u8() % 3 {
            0 => u16::from(input.u8()) % self.size.max(1),
            1 => input.u16(),
            _ => 0,
        };
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        d
    }
}

/// Runs one input. Panics (through `assert!`) on any broken invariant.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let cfg = input.u8();
    let size = 1u16 << (cfg & 7);
    let features = QueueFeatures { event_idx: cfg & 8 != 0, indirect_desc: cfg & 16 != 0 };
    let cap = SEGS[usize::from(cfg >> 5)];
    let max_bytes = match input.u8() {
        0 => u32::MAX,
        1 => 4096,
        n => 64 * u32::from(n),
    };
    let (ra, rb) = (HeapRegion::new(A_LEN), HeapRegion::new(B_LEN));
    let regions = [
        GuestRegion::new(A_BASE, ra.mem()).expect("region A"),
        GuestRegion::new(B_BASE, rb.mem()).expect("region B"),
    ];
    let mem = Counting { inner: GuestRegions::new(&regions).expect("disjoint"), calls: Cell::new(0) };
    let layout =
        QueueLayout::new(QueueSize::new(size).expect("power of two"), DESC, AVAIL, USED).expect("aligned");
    let drv = DriverQueue::new(&mem, layout, features).expect("rings in memory");
    let mut dev = DeviceQueue::new(&mem, layout, features).expect("rings in memory");
    dev.set_max_chain_bytes(max_bytes);
    let mut h = Harness {
        mem: &mem,
        a: ra.mem(),
        dev,
        drv,
        size,
        event_idx: features.event_idx,
        cap,
        max_bytes,
        honest: true,
        sent: VecDeque::new(),
        unpublished: 0,
        popped: Vec::new(),
        used: Vec::new(),
        in_flight: 0,
        pushed: 0,
        latched: None,
        next_token: 0,
        returned: 0,
        tables: (0..(A_LEN as u64 - TABLES) / TABLE_SLOT).collect(),
        table_of: Vec::new(),
    };
    let mut ops = 0;
    while !input.done() && ops < MAX_OPS {
        h.step(&mut input);
        ops += 1;
    }
    if h.honest && h.latched.is_none() {
        // Finish the honest traffic: everything added comes back exactly once.
        h.publish();
        while !h.sent.is_empty() {
            h.pop();
        }
        for (head, wl, token) in std::mem::take(&mut h.popped) {
            assert!(h.add_used(head, wl, token));
        }
        h.push_used();
        h.reclaim();
        assert!(h.used.is_empty(), "chains used but never reclaimed: {:?}", h.used);
        assert_eq!(h.returned, h.next_token, "every honest chain returned exactly once");
        assert_eq!(h.drv.num_free(), size, "descriptors leaked");
    }
}
