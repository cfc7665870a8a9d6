//! Property tests of the virtio split virtqueue (`pvio_ring::virtio`).
//!
//! 1. `round_trip_matches_model`: pvio's `DriverQueue` and `DeviceQueue` on one queue, driven
//!    by random operation sequences (add direct or indirect chains, publish, pop, complete in
//!    any order, push used, reclaim, enable/disable notifications and interrupts) and checked
//!    against a model: a `VecDeque` of chains published and not yet popped, plus the chains
//!    the device holds and those it returned. Every chain arrives with its buffers in order,
//!    every readable byte reaches the device, every written byte and used length reaches the
//!    driver, every token comes back exactly once, no descriptor leaks, and kick/interrupt
//!    decisions follow the spec's rules on what the other side published (never a lost
//!    wake-up).
//! 2. `fuzz_harness_on_random_bytes`: the byte-driven hostile-driver harness of the
//!    `virtio_device` fuzz target (`fuzz/common/virtio_device.rs`) on random inputs: random
//!    descriptor tables, avail entries and indices, loops, huge lengths, wild addresses.
//! 3. `concurrent_rewrites`: a second thread rewrites the descriptor table, the available
//!    ring and the indirect tables with random bytes while the device pops, returns and
//!    re-arms: no panic, every call returns (the walk is bounded), every chain handed out is
//!    valid, and every error is a value.
//!
//! Under miri the case counts shrink (`cfg!(miri)`): `MIRIFLAGS=-Zmiri-disable-weak-memory-emulation
//! cargo +nightly-2026-05-20 miri test -p pvio-ring --test proptest_virtqueue`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use proptest::prelude::*;
use pvio_ring::virtio::{
    Buffer, DeviceQueue, DriverQueue, GuestMemory, GuestRegion, GuestRegions, QueueFeatures, QueueLayout,
    QueueSize, Segment,
};
use pvio_ring::HeapRegion;

#[path = "../../fuzz/common/bytes.rs"]
mod bytes;
#[path = "../../fuzz/common/virtio_device.rs"]
mod virtio_device;

const A_BASE: u64 = 0;
const A_LEN: usize = 0x4000;
const B_BASE: u64 = 0x1_0000;
const B_LEN: usize = 0x4000;
const DESC: u64 = 0;
const AVAIL: u64 = 0x800;
const USED: u64 = 0xa00;
const TABLES: u64 = 0x1000;
const TABLE_SLOT: u64 = 256;
/// Buffers are 256-byte slots of region B.
const SLOT: u64 = 256;
const UNTOUCHED: u8 = 0xee;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 128 },
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    }
}

fn max_ops() -> usize {
    if cfg!(miri) {
        24
    } else {
        300
    }
}

fn read_byte(token: u64, i: usize) -> u8 {
    (token.wrapping_mul(31).wrapping_add(i as u64 * 7) ^ (i as u64 >> 8)) as u8
}

fn write_byte(token: u64, i: usize) -> u8 {
    (token.wrapping_mul(131).wrapping_add(i as u64 * 13) ^ 0x5a) as u8
}

#[derive(Debug, Clone)]
enum Op {
    Add { readable: Vec<u16>, writable: Vec<u16>, indirect: bool },
    Publish,
    Pop(u8),
    Complete { pick: u8 },
    PushUsed,
    Reclaim,
    DeviceEnable,
    DeviceDisable,
    DriverEnable,
    DriverDisable,
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![Just(0u16), Just(1), Just(256), 1..256u16];
    prop_oneof![
        4 => (prop::collection::vec(len.clone(), 0..4), prop::collection::vec(len, 0..4), any::<bool>())
            .prop_map(|(readable, writable, indirect)| Op::Add { readable, writable, indirect }),
        2 => Just(Op::Publish),
        3 => (1..5u8).prop_map(Op::Pop),
        3 => any::<u8>().prop_map(|pick| Op::Complete { pick }),
        2 => Just(Op::PushUsed),
        2 => Just(Op::Reclaim),
        1 => Just(Op::DeviceEnable),
        1 => Just(Op::DeviceDisable),
        1 => Just(Op::DriverEnable),
        1 => Just(Op::DriverDisable),
    ]
}

/// A chain as the driver made it.
#[derive(Debug, Clone)]
struct Rec {
    token: u64,
    head: u16,
    segs: Vec<Segment>,
    slots: Vec<u64>,
    table: Option<u64>,
    descs: u16,
}

/// The model: chains by state, and the notification arming of each side.
#[derive(Default)]
struct Model {
    /// Added, not yet published.
    added: VecDeque<Rec>,
    /// Published, not yet popped, in available order.
    published: VecDeque<Rec>,
    /// Popped by the device: chain and bytes written.
    popped: Vec<(Rec, u32)>,
    /// Returned by the device, not yet reclaimed, in used order.
    used: VecDeque<(Rec, u32)>,
    /// Added as used but not published yet (count at the tail of `used`).
    unpushed: usize,
    free_slots: Vec<u64>,
    free_tables: Vec<u64>,
    descs_in_use: u16,
    next_token: u64,
    returned: Vec<u64>,
    /// The device re-armed and found nothing: the next publish must kick.
    device_idle: bool,
    /// The driver re-armed and found nothing: the next push must interrupt.
    driver_idle: bool,
}

fn word(a: &pvio_ring::SharedMem<'_>, at: u64) -> u16 {
    u16::from_le(a.read::<u16>(at as usize).expect("ring word"))
}

fn run_round_trip(size: u16, features: QueueFeatures, ops: &[Op]) -> Result<(), TestCaseError> {
    let (ra, rb) = (HeapRegion::new(A_LEN), HeapRegion::new(B_LEN));
    let regions = [GuestRegion::new(A_BASE, ra.mem()).unwrap(), GuestRegion::new(B_BASE, rb.mem()).unwrap()];
    let mem = GuestRegions::new(&regions).unwrap();
    let a = ra.mem();
    let layout = QueueLayout::new(QueueSize::new(size).unwrap(), DESC, AVAIL, USED).unwrap();
    let mut drv: DriverQueue<'_, _, u64> = DriverQueue::new(&mem, layout, features).unwrap();
    let mut dev = DeviceQueue::new(&mem, layout, features).unwrap();
    let ev = features.event_idx;
    let used_event_at = AVAIL + 4 + 2 * u64::from(size);
    let avail_event_at = USED + 4 + 8 * u64::from(size);
    let mut m = Model {
        free_slots: (0..B_LEN as u64 / SLOT).rev().collect(),
        free_tables: (0..(A_LEN as u64 - TABLES) / TABLE_SLOT).rev().collect(),
        ..Model::default()
    };
    let mut segs = [Segment::default(); 16];

    let fill = |rec: &Rec| -> Result<(), TestCaseError> {
        let mut k = 0;
        for s in &rec.segs {
            let bytes: Vec<u8> = if s.writable {
                vec![UNTOUCHED; s.len as usize]
            } else {
                let v = (0..s.len as usize).map(|i| read_byte(rec.token, k + i)).collect();
                k += s.len as usize;
                v
            };
            mem.translate(s.addr, bytes.len()).unwrap().write_bytes(0, &bytes).unwrap();
        }
        Ok(())
    };

    for op in ops {
        match op {
            Op::Add { readable, writable, indirect } => {
                let n = readable.len() + writable.len();
                if n == 0 || m.free_slots.len() < n || (*indirect && m.free_tables.is_empty()) {
                    continue;
                }
                let indirect = *indirect && features.indirect_desc;
                let token = m.next_token;
                let mut slots = Vec::new();
                let segs_rec: Vec<Segment> = readable
                    .iter()
                    .map(|&l| (l, false))
                    .chain(writable.iter().map(|&l| (l, true)))
                    .map(|(len, writable)| {
                        let slot = m.free_slots.pop().unwrap();
                        slots.push(slot);
                        let addr = B_BASE + slot * SLOT + (SLOT - u64::from(len)) / 2;
                        Segment { addr, len: u32::from(len), writable }
                    })
                    .collect();
                let table = if indirect { m.free_tables.pop() } else { None };
                let descs = if indirect { 1 } else { n as u16 };
                let mut rec = Rec { token, head: 0, segs: segs_rec, slots, table, descs };
                fill(&rec)?;
                let buf = |s: &Segment| Buffer::new(s.addr, s.len);
                let r: Vec<Buffer> = rec.segs.iter().filter(|s| !s.writable).map(buf).collect();
                let w: Vec<Buffer> = rec.segs.iter().filter(|s| s.writable).map(buf).collect();
                let res = match table {
                    Some(t) => drv.add_indirect(A_BASE + TABLES + t * TABLE_SLOT, &r, &w, token),
                    None => drv.add(&r, &w, token),
                };
                let room = size - m.descs_in_use >= descs && (indirect || n <= usize::from(size));
                match res {
                    Ok(head) => {
                        prop_assert!(
                            room,
                            "accepted a chain of {descs} descriptors with {} in use",
                            m.descs_in_use
                        );
                        prop_assert!(head < size);
                        rec.head = head;
                        m.descs_in_use += descs;
                        m.next_token += 1;
                        m.added.push_back(rec);
                    }
                    Err(rej) => {
                        prop_assert!(!room, "refused a chain that fits: {:?}", rej.error);
                        prop_assert_eq!(rej.token, token);
                        m.free_slots.extend(rec.slots);
                        m.free_tables.extend(table);
                    }
                }
                prop_assert_eq!(drv.num_free(), size - m.descs_in_use);
            }
            Op::Publish => {
                let old = word(&a, AVAIL + 2);
                let n = m.added.len() as u16;
                let kick = drv.publish().is_needed();
                let new = word(&a, AVAIL + 2);
                prop_assert_eq!(new, old.wrapping_add(n), "publish stores the new idx once");
                let want = n > 0
                    && if ev {
                        new.wrapping_sub(word(&a, avail_event_at)).wrapping_sub(1) < n
                    } else {
                        word(&a, USED) & 1 == 0
                    };
                prop_assert_eq!(kick, want, "kick decision");
                if n > 0 && m.device_idle {
                    prop_assert!(kick, "lost kick");
                }
                if kick {
                    m.device_idle = false;
                }
                m.published.extend(m.added.drain(..));
            }
            Op::Pop(k) => {
                for _ in 0..*k {
                    let got =
                        dev.pop(&mut segs).map_err(|e| TestCaseError::fail(format!("honest pop: {e}")))?;
                    let Some(chain) = got else {
                        prop_assert!(m.published.is_empty(), "published chains not popped");
                        break;
                    };
                    let rec = m
                        .published
                        .pop_front()
                        .ok_or_else(|| TestCaseError::fail("popped an unpublished chain"))?;
                    prop_assert_eq!(chain.head(), rec.head);
                    prop_assert_eq!(chain.segments(), &rec.segs[..], "chain {} buffers", rec.token);
                    let mut data = vec![0u8; chain.readable_len() as usize];
                    prop_assert_eq!(chain.read_at(0, &mut data), Ok(data.len()));
                    for (i, &b) in data.iter().enumerate() {
                        prop_assert_eq!(
                            b,
                            read_byte(rec.token, i),
                            "chain {} readable byte {}",
                            rec.token,
                            i
                        );
                    }
                    // The device writes a prefix of the writable space (all, none, or part).
                    let wl = chain.writable_len() as usize;
                    let w = wl * (rec.token.wrapping_mul(37) % 256) as usize / 255;
                    let bytes: Vec<u8> = (0..w).map(|i| write_byte(rec.token, i)).collect();
                    prop_assert_eq!(chain.write_at(0, &bytes), Ok(w));
                    m.popped.push((rec, w as u32));
                }
            }
            Op::Complete { pick } => {
                if m.popped.is_empty() {
                    prop_assert_eq!(dev.add_used(0, 0), Err(pvio_ring::virtio::DeviceError::NothingToReturn));
                    continue;
                }
                let (rec, len) = m.popped.swap_remove(usize::from(*pick) % m.popped.len());
                prop_assert_eq!(dev.add_used(rec.head, len), Ok(()));
                m.used.push_back((rec, len));
                m.unpushed += 1;
            }
            Op::PushUsed => {
                let n = m.unpushed as u16;
                let new = dev.next_used();
                let old = new.wrapping_sub(n);
                let (ue, flags) = (word(&a, used_event_at), word(&a, AVAIL));
                let irq = dev.push_used().is_needed();
                prop_assert_eq!(word(&a, USED + 2), new);
                let want =
                    n > 0 && if ev { new.wrapping_sub(ue).wrapping_sub(1) < n } else { flags & 1 == 0 };
                prop_assert_eq!(irq, want, "interrupt decision for used {}..{}", old, new);
                if n > 0 && m.driver_idle {
                    prop_assert!(irq, "lost interrupt");
                }
                if irq {
                    m.driver_idle = false;
                }
                m.unpushed = 0;
            }
            Op::Reclaim => {
                let published = m.used.len() - m.unpushed;
                for _ in 0..published {
                    let u =
                        drv.pop_used().map_err(|e| TestCaseError::fail(format!("honest reclaim: {e}")))?;
                    let (rec, len) = m.used.pop_front().unwrap();
                    let u =
                        u.ok_or_else(|| TestCaseError::fail("a published used element was not reclaimed"))?;
                    prop_assert_eq!((u.token, u.len, u.head), (rec.token, len, rec.head));
                    let mut k = 0usize;
                    for s in rec.segs.iter().filter(|s| s.writable) {
                        let mut got = vec![0u8; s.len as usize];
                        mem.translate(s.addr, got.len()).unwrap().read_bytes(0, &mut got).unwrap();
                        for (i, &g) in got.iter().enumerate() {
                            let want =
                                if k + i < len as usize { write_byte(rec.token, k + i) } else { UNTOUCHED };
                            prop_assert_eq!(g, want, "chain {} written byte {}", rec.token, k + i);
                        }
                        k += s.len as usize;
                    }
                    m.descs_in_use -= rec.descs;
                    m.free_slots.extend(&rec.slots);
                    m.free_tables.extend(rec.table);
                    m.returned.push(rec.token);
                }
                prop_assert!(drv.pop_used().unwrap().is_none(), "reclaimed more than was published");
            }
            Op::DeviceEnable => {
                let pending = dev.enable_notification().unwrap();
                prop_assert_eq!(pending, !m.published.is_empty());
                if ev {
                    prop_assert_eq!(word(&a, avail_event_at), dev.next_avail());
                } else {
                    prop_assert_eq!(word(&a, USED) & 1, 0);
                }
                m.device_idle = !pending;
            }
            Op::DeviceDisable => {
                dev.disable_notification();
                if !ev {
                    prop_assert_eq!(word(&a, USED) & 1, 1);
                }
                m.device_idle = false;
            }
            Op::DriverEnable => {
                let pending = drv.enable_interrupts().unwrap();
                prop_assert_eq!(pending, m.used.len() > m.unpushed);
                if !ev {
                    prop_assert_eq!(word(&a, AVAIL) & 1, 0);
                }
                m.driver_idle = !pending;
            }
            Op::DriverDisable => {
                drv.disable_interrupts();
                if !ev {
                    prop_assert_eq!(word(&a, AVAIL) & 1, 1);
                }
                m.driver_idle = false;
            }
        }
        prop_assert_eq!(dev.error(), None);
        prop_assert_eq!(drv.error(), None);
        prop_assert_eq!(
            drv.in_flight() as usize,
            m.added.len() + m.published.len() + m.popped.len() + m.used.len()
        );
    }
    // Drain everything.
    let _ = drv.publish();
    m.published.extend(m.added.drain(..));
    while let Some(chain) = dev.pop(&mut segs).unwrap() {
        let rec = m.published.pop_front().unwrap();
        prop_assert_eq!(chain.head(), rec.head);
        m.popped.push((rec, 0));
    }
    for (rec, _) in m.popped.drain(..) {
        dev.add_used(rec.head, 0).unwrap();
        m.used.push_back((rec, 0));
    }
    let _ = dev.push_used();
    while let Some(u) = drv.pop_used().unwrap() {
        let (rec, len) = m.used.pop_front().unwrap();
        prop_assert_eq!((u.token, u.len), (rec.token, len));
        m.returned.push(u.token);
    }
    prop_assert!(m.published.is_empty() && m.used.is_empty());
    m.returned.sort_unstable();
    prop_assert_eq!(m.returned, (0..m.next_token).collect::<Vec<_>>(), "every token exactly once");
    prop_assert_eq!(drv.num_free(), size, "descriptors leaked");
    Ok(())
}

fn queue_size() -> impl Strategy<Value = u16> {
    if cfg!(miri) {
        prop::sample::select(vec![1u16, 4, 16])
    } else {
        prop::sample::select(vec![1u16, 2, 4, 8, 16, 64, 128])
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn round_trip_matches_model(
        size in queue_size(),
        event_idx in any::<bool>(),
        indirect_desc in any::<bool>(),
        ops in prop::collection::vec(op(), 0..max_ops()),
    ) {
        run_round_trip(size, QueueFeatures { event_idx, indirect_desc }, &ops)?;
    }

    #[test]
    fn fuzz_harness_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..if cfg!(miri) { 64 } else { 1024 })) {
        virtio_device::run(&data);
    }

    /// Biased towards the hostile opcodes, with an honest prefix so chains exist.
    #[test]
    fn fuzz_harness_hostile_ops(
        cfg in any::<u8>(),
        honest in prop::collection::vec((0..2u8, any::<u8>(), any::<u8>(), any::<u8>()), 0..8),
        hostile in prop::collection::vec(
            (prop::sample::select(vec![2u8, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15]), prop::collection::vec(any::<u8>(), 12)),
            0..if cfg!(miri) { 12 } else { 64 },
        ),
    ) {
        let mut data = vec![cfg, 0];
        for (op, a, b, c) in honest {
            data.extend([op, a, b, c]);
        }
        data.push(1);
        for (op, args) in hostile {
            data.push(op);
            data.extend(args);
        }
        virtio_device::run(&data);
    }
}

/// A second thread rewrites the queue's driver-owned memory (descriptor table, available ring
/// with its idx, indirect tables) with random bytes while the device pops, returns and
/// re-arms. Nothing may panic or hang; every chain handed out must be valid at the moment it
/// was copied (each descriptor is read once, so later rewrites cannot change it).
#[test]
fn concurrent_rewrites() {
    let rounds = if cfg!(miri) { 2 } else { 12 };
    let pops = if cfg!(miri) { 40 } else { 4000 };
    let (mut chains, mut errors) = (0u32, 0u32);
    for round in 0..rounds {
        let size = [4u16, 16, 128][round % 3];
        let features = QueueFeatures { event_idx: round % 2 == 0, indirect_desc: round % 4 < 2 };
        let (ra, rb) = (HeapRegion::new(A_LEN), HeapRegion::new(B_LEN));
        let regions =
            [GuestRegion::new(A_BASE, ra.mem()).unwrap(), GuestRegion::new(B_BASE, rb.mem()).unwrap()];
        let mem = GuestRegions::new(&regions).unwrap();
        let layout = QueueLayout::new(QueueSize::new(size).unwrap(), DESC, AVAIL, USED).unwrap();
        let mut dev = DeviceQueue::new(&mem, layout, features).unwrap();
        dev.set_max_chain_bytes(1 << 20);
        let stop = AtomicBool::new(false);
        let writes = AtomicU64::new(0);
        let a = ra.mem();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ round as u64;
                let desc_bytes = 16 * usize::from(size);
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let bytes = x.to_le_bytes();
                    // Descriptors that point at region B or at the indirect tables, with
                    // random flags and next fields; random avail entries; idx moves.
                    let (off, data): (usize, Vec<u8>) = match x % 5 {
                        0 => {
                            let i = (x >> 8) as usize % usize::from(size);
                            // Indirect tables 16-byte aligned, like the rings: see below.
                            let addr = if x & 0x100_0000 != 0 {
                                TABLES + (x >> 32) % 0x2000 / 16 * 16
                            } else {
                                B_BASE + (x >> 32) % 0x4000
                            };
                            let mut d = addr.to_le_bytes().to_vec();
                            d.extend(((x >> 40) as u32 % 0x2000).to_le_bytes());
                            d.extend(((x >> 16) as u16 & 7).to_le_bytes());
                            d.extend(((x >> 48) as u16 % (size + 2)).to_le_bytes());
                            (DESC as usize + 16 * i, d)
                        }
                        1 => (
                            AVAIL as usize + 4 + 2 * ((x >> 8) as usize % usize::from(size)),
                            bytes[..2].to_vec(),
                        ),
                        2 => (AVAIL as usize + 2, ((x >> 20) as u16 % (2 * size + 2)).to_le_bytes().to_vec()),
                        3 => (TABLES as usize + (x >> 8) as usize % 0x2000 / 8 * 8, bytes.to_vec()),
                        _ => ((x >> 8) as usize % desc_bytes / 8 * 8, bytes.to_vec()),
                    };
                    // Each field is written with the access size the device reads it with
                    // (the avail idx as one 16-bit atomic, 16-byte aligned descriptors as two
                    // 64-bit words, avail entries bytewise): in one process, racing atomic
                    // accesses of different sizes to the same bytes are undefined behaviour
                    // that miri reports. A guest writes from outside the abstract machine.
                    if off == AVAIL as usize + 2 {
                        a.u16_at(off)
                            .unwrap()
                            .store(u16::from_le_bytes([data[0], data[1]]), Ordering::Relaxed);
                    } else {
                        a.write_bytes(off, &data).unwrap();
                    }
                    // Let the device run between rewrites, also on a crowded machine.
                    if writes.fetch_add(1, Ordering::Relaxed) % 64 == 0 || cfg!(miri) {
                        std::thread::yield_now();
                    }
                }
            });
            let mut segs = [Segment::default(); 32];
            let mut held: Vec<u16> = Vec::new();
            // Pop at least `pops` times and until the writer has made as many rewrites (it
            // may start late on a loaded machine); never more than 1000 times as often.
            let mut i = 0;
            while writes.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            while (i < pops || writes.load(Ordering::Relaxed) < pops) && i < 1000 * pops {
                i += 1;
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
                match dev.pop(&mut segs) {
                    Ok(Some(chain)) => {
                        chains += 1;
                        let s = chain.segments();
                        assert!(chain.head() < size && !s.is_empty() && s.len() <= 32);
                        let r = s.iter().take_while(|x| !x.writable).count();
                        assert!(s[r..].iter().all(|x| x.writable), "readable after writable");
                        let total: u64 = s.iter().map(|x| u64::from(x.len)).sum();
                        assert!(total <= 1 << 20);
                        for x in s.iter().filter(|x| x.len > 0) {
                            assert!(
                                mem.translate(x.addr, x.len as usize).is_ok(),
                                "segment outside memory: {x:?}"
                            );
                        }
                        held.push(chain.head());
                    }
                    Ok(None) => {}
                    Err(e) => {
                        errors += 1;
                        assert!(e.to_string().contains('§'), "{e}");
                        if let Some(h) = e.chain_head() {
                            held.push(h);
                        }
                        if e.is_latched() {
                            // Start over on a fresh queue state: the device would reset it.
                            dev = DeviceQueue::new(&mem, layout, features).unwrap();
                            dev.set_max_chain_bytes(1 << 20);
                            held.clear();
                            continue;
                        }
                    }
                }
                if i % 7 == 0 {
                    for h in held.drain(..) {
                        dev.add_used(h, 0).unwrap();
                    }
                    let _ = dev.push_used();
                    let _ = dev.enable_notification();
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    // Over all rounds (one round may see an idx that never moves on a crowded machine).
    assert!(cfg!(miri) || chains + errors > 0, "the device did nothing");
}
