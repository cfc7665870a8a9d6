//! Device-side processing of a virtio split virtqueue: pvio's `DeviceQueue` (through its
//! `vm-memory` adapter, `VmGuestMemory`) against rust-vmm's `virtio-queue` 0.18 `Queue`, on the
//! same `vm_memory::GuestMemoryMmap`, same driver, same run.
//!
//! The work per chain, on both: take the next available chain, walk its descriptors, check
//! every buffer lies in guest memory (pvio's `pop` validates and translates each buffer;
//! `virtio-queue` walks lazily, so its loop calls `GuestMemory::get_slice` on each descriptor,
//! which is what building its `Reader`/`Writer` does), sum the device-writable bytes, and
//! return the chain with `add_used`; after each batch, publish and decide on an interrupt
//! (`push_used`; `needs_notification`). Batch 1: one chain per round. Batch 32: up to 32
//! chains popped, then 32 `add_used`, then one publish (pvio stores the used `idx` once per
//! batch; `virtio-queue` has no batch API and stores it per `add_used`, and its `iter` reads
//! the avail `idx` once per batch where `pop_descriptor_chain` reads it per chain).
//! Queue size 256, `VIRTIO_F_EVENT_IDX` negotiated, chains of one descriptor (a 1514-byte
//! device-readable buffer, a transmitted frame) or two (a 12-byte readable header and a
//! 1514-byte device-writable buffer).
//!
//! The driver is the same hand-written code for both (descriptors written once; it re-offers
//! each chain when it comes back, checking that used entries return the expected heads in
//! order and with the expected length), so the device side is what differs:
//!
//! - **single thread**: the driver fills the whole ring, then the device drains it, batch by
//!   batch; only the drain is timed.
//! - **two threads**: the driver on CPU 0 keeps the ring full (it reclaims what came back and
//!   offers every free chain with one avail `idx` store), the device on CPU 1 processes `batch`
//!   chains per round; rate from the first start to the last end. An idle device re-arms its
//!   notification (`enable_notification`) once and polls. Printed with each row: the share of
//!   the device's polls that found nothing, and the device thread's CPU time over wall time
//!   and involuntary context switches (`getrusage`): on a loaded machine the threads are
//!   descheduled for much of the run and the two-thread rates say more about the load than
//!   about the queue. (Offering only `batch` chains per store makes the shared driver the
//!   bottleneck at batch 1: both devices then find ~95% of their polls empty.)
//!
//! `cargo bench -p pvio-benches --bench virtqueue` runs the full measurement; without
//! `--bench` (e.g. under `cargo test --benches`) a short smoke run checks the code paths.

use std::hint::{black_box, spin_loop};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use pvio_benches::{cpu_model, median, min_max, paired_ratio, pin_to_cpu, Rate};
use pvio_ring::virtio::{DeviceQueue, QueueFeatures, QueueLayout, QueueSize, Segment, VmGuestMemory};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

const SIZE: u16 = 256;
const DESC: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const BUFS: u64 = 0x1_0000;
const MEM_LEN: usize = 0x10_0000 + 256 * 0x2000;
const HDR: u32 = 12;
const FRAME: u32 = 1514;
const BIG: usize = 32;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

// ---------------------------------------------------------------------------------------
// The shared driver
// ---------------------------------------------------------------------------------------

/// The driver both devices serve: `chains` fixed chains of `descs` descriptors each, re-offered
/// in order as they come back.
struct Driver<'m> {
    mem: &'m GuestMemoryMmap,
    descs: u16,
    chains: u16,
    /// Chains offered so far (the avail `idx`, unwrapped).
    offered: u64,
    /// Chains returned so far.
    returned: u64,
    kicks: u64,
}

impl<'m> Driver<'m> {
    fn new(mem: &'m GuestMemoryMmap, descs: u16) -> Self {
        let chains = SIZE / descs;
        for c in 0..chains {
            let buf = BUFS + u64::from(c) * 0x2000;
            let head = c * descs;
            if descs == 1 {
                write_desc(mem, head, buf, FRAME, 0, 0);
            } else {
                write_desc(mem, head, buf, HDR, F_NEXT, head + 1);
                write_desc(mem, head + 1, buf + 0x1000, FRAME, F_WRITE, 0);
            }
        }
        Driver { mem, descs, chains, offered: 0, returned: 0, kicks: 0 }
    }

    fn expected_len(&self) -> u32 {
        if self.descs == 1 {
            0
        } else {
            FRAME
        }
    }

    /// Reclaims returned chains (checking each), then offers up to `max` more (never more
    /// than `limit` in total) with one avail `idx` store; returns how many it offered.
    fn refill(&mut self, max: u64, limit: u64) -> u64 {
        let used_idx: u16 = self.mem.load(GuestAddress(USED + 2), Ordering::Acquire).expect("used idx");
        let used_idx = u16::from_le(used_idx);
        while self.returned as u16 != used_idx {
            let slot = u64::from(self.returned as u16 % SIZE);
            let id: u32 = self.mem.read_obj(GuestAddress(USED + 4 + 8 * slot)).expect("used elem");
            let len: u32 = self.mem.read_obj(GuestAddress(USED + 8 + 8 * slot)).expect("used elem");
            let want = u32::from((self.returned % u64::from(self.chains)) as u16 * self.descs);
            if u32::from_le(id) != want || u32::from_le(len) != self.expected_len() {
                corrupt(self.returned, id, len, want);
            }
            self.returned += 1;
        }
        let room = u64::from(self.chains) - (self.offered - self.returned);
        let n = room.min(max).min(limit - self.offered);
        if n == 0 {
            return 0;
        }
        for i in self.offered..self.offered + n {
            let head = (i % u64::from(self.chains)) as u16 * self.descs;
            let slot = u64::from(i as u16 % SIZE);
            self.mem.write_obj(head.to_le(), GuestAddress(AVAIL + 4 + 2 * slot)).expect("avail ring");
        }
        let (old, new) = (self.offered as u16, (self.offered + n) as u16);
        self.mem.store(new.to_le(), GuestAddress(AVAIL + 2), Ordering::Release).expect("avail idx");
        self.offered += n;
        // Pairs with the device's fence between writing avail_event and re-reading idx.
        fence(Ordering::SeqCst);
        let event: u16 = self
            .mem
            .load(GuestAddress(USED + 4 + 8 * u64::from(SIZE)), Ordering::Relaxed)
            .expect("avail_event");
        if new.wrapping_sub(u16::from_le(event)).wrapping_sub(1) < new.wrapping_sub(old) {
            self.kicks += 1;
        }
        n
    }
}

fn write_desc(mem: &GuestMemoryMmap, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..12].copy_from_slice(&len.to_le_bytes());
    d[12..14].copy_from_slice(&flags.to_le_bytes());
    d[14..].copy_from_slice(&next.to_le_bytes());
    mem.write_slice(&d, GuestAddress(DESC + 16 * u64::from(i))).expect("descriptor table");
}

#[cold]
#[inline(never)]
fn corrupt(n: u64, id: u32, len: u32, want: u32) -> ! {
    panic!("used entry {n}: id {id} len {len}, expected id {want}")
}

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_LEN)]).expect("anonymous guest memory")
}

// ---------------------------------------------------------------------------------------
// The two devices
// ---------------------------------------------------------------------------------------

/// A device: processes up to `B` chains (pop, validate, add_used; then publish), returns how
/// many; and re-arms its notification, returning whether work arrived meanwhile.
trait Device {
    fn batch<const B: usize>(&mut self) -> usize;
    fn arm(&mut self) -> bool;
    fn irqs(&self) -> u64;
}

struct Pvio<'q, 'm> {
    q: DeviceQueue<'q, VmGuestMemory<'m>>,
    segs: [Segment; 4],
    /// Chains seen, to check heads arrive in order.
    seen: u64,
    descs: u16,
    irqs: u64,
}

impl Device for Pvio<'_, '_> {
    #[inline(always)]
    fn batch<const B: usize>(&mut self) -> usize {
        let mut done = [(0u16, 0u32); B];
        let mut k = 0;
        while k < B {
            match self.q.pop(&mut self.segs) {
                Ok(Some(chain)) => {
                    done[k] = (chain.head(), chain.writable_len());
                    k += 1;
                }
                Ok(None) => break,
                Err(e) => panic!("pvio: error between honest sides: {e}"),
            }
        }
        for &(head, len) in &done[..k] {
            check_head("pvio", head, self.seen, self.descs);
            self.seen += 1;
            if let Err(e) = self.q.add_used(head, len) {
                panic!("pvio add_used: {e}");
            }
        }
        if k > 0 && self.q.push_used().is_needed() {
            self.irqs += 1;
        }
        k
    }

    fn arm(&mut self) -> bool {
        self.q.enable_notification().expect("honest driver")
    }

    fn irqs(&self) -> u64 {
        self.irqs
    }
}

struct Vq<'m> {
    q: Queue,
    mem: &'m GuestMemoryMmap,
    seen: u64,
    descs: u16,
    irqs: u64,
}

impl Vq<'_> {
    /// Walks a chain: every descriptor's buffer translated, writable bytes summed.
    #[inline(always)]
    fn walk(mem: &GuestMemoryMmap, chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>) -> (u16, u32) {
        let head = chain.head_index();
        let mut written = 0;
        for d in chain {
            match mem.get_slice(d.addr(), d.len() as usize) {
                Ok(s) => {
                    black_box(s);
                }
                Err(e) => panic!("virtio-queue: buffer outside memory: {e}"),
            }
            if d.is_write_only() {
                written += d.len();
            }
        }
        (head, written)
    }
}

impl Device for Vq<'_> {
    #[inline(always)]
    fn batch<const B: usize>(&mut self) -> usize {
        let mem = self.mem;
        let mut done = [(0u16, 0u32); B];
        let mut k = 0;
        if B == 1 {
            if let Some(chain) = self.q.pop_descriptor_chain(mem) {
                done[0] = Self::walk(mem, chain);
                k = 1;
            }
        } else {
            let iter = match self.q.iter(mem) {
                Ok(it) => it,
                Err(e) => panic!("virtio-queue iter: {e}"),
            };
            for chain in iter.take(B) {
                done[k] = Self::walk(mem, chain);
                k += 1;
            }
        }
        for &(head, len) in &done[..k] {
            check_head("virtio-queue", head, self.seen, self.descs);
            self.seen += 1;
            if let Err(e) = self.q.add_used(mem, head, len) {
                panic!("virtio-queue add_used: {e}");
            }
        }
        if k > 0 && self.q.needs_notification(mem).expect("used_event readable") {
            self.irqs += 1;
        }
        k
    }

    fn arm(&mut self) -> bool {
        self.q.enable_notification(self.mem).expect("avail idx readable")
    }

    fn irqs(&self) -> u64 {
        self.irqs
    }
}

#[inline(always)]
fn check_head(who: &str, head: u16, seen: u64, descs: u16) {
    let want = (seen % u64::from(SIZE / descs)) as u16 * descs;
    if head != want {
        wrong_head(who, head, want, seen);
    }
}

#[cold]
#[inline(never)]
fn wrong_head(who: &str, head: u16, want: u16, seen: u64) -> ! {
    panic!("{who}: chain {seen} has head {head}, expected {want}")
}

fn layout() -> QueueLayout {
    QueueLayout::new(QueueSize::new(SIZE).expect("power of two"), DESC, AVAIL, USED).expect("aligned")
}

fn features() -> QueueFeatures {
    QueueFeatures { event_idx: true, indirect_desc: false }
}

fn vq_queue(mem: &GuestMemoryMmap) -> Queue {
    let mut q = Queue::new(SIZE).expect("power of two");
    q.set_desc_table_address(Some(DESC as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_event_idx(true);
    q.set_ready(true);
    assert!(q.is_valid(mem));
    q
}

// ---------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Sample {
    rate: Rate,
    kicks: u64,
    irqs: u64,
    /// Two threads: the share of polls that found nothing (the device waited for the driver).
    empty: f64,
    /// Two threads: the device thread's CPU time (user + system) over the wall time, and its
    /// involuntary context switches (another process took the core).
    on_cpu: f64,
    preempted: u64,
}

/// This thread's CPU time and involuntary context switches so far (`getrusage`).
fn thread_usage() -> (Duration, u64) {
    // SAFETY: `rusage` is plain data, valid when zeroed.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `getrusage` writes one `rusage` into the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return (Duration::ZERO, 0);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_nivcsw as u64)
}

/// Single thread: fill the ring, time the drain.
fn single<D: Device, const B: usize>(dev: &mut D, drv: &mut Driver<'_>, n: u64) -> Sample {
    let mut timed = Duration::ZERO;
    let mut done = 0u64;
    while done < n {
        drv.refill(u64::MAX, n);
        let start = Instant::now();
        loop {
            let k = dev.batch::<B>();
            if k == 0 {
                break;
            }
            done += k as u64;
        }
        timed += start.elapsed();
    }
    drv.refill(0, n);
    assert_eq!(drv.returned, n, "every chain came back");
    Sample {
        rate: Rate::new(n, timed),
        kicks: drv.kicks,
        irqs: dev.irqs(),
        empty: 0.0,
        on_cpu: 1.0,
        preempted: 0,
    }
}

static PIN_FAILED: AtomicBool = AtomicBool::new(false);

struct StartLine(CachePadded<AtomicUsize>);

impl StartLine {
    fn go(&self) -> Instant {
        self.0.fetch_add(1, Ordering::AcqRel);
        while self.0.load(Ordering::Acquire) < 2 {
            spin_loop();
        }
        Instant::now()
    }
}

/// Two threads: the driver (CPU 0) keeps the ring full, offering `B` chains per idx store;
/// the device (CPU 1) processes `B` at a time.
fn pair<D: Device + Send, const B: usize>(dev: D, mut drv: Driver<'_>, n: u64) -> Sample {
    let line = StartLine(CachePadded::new(AtomicUsize::new(0)));
    let line = &line;
    let ((s0, e0, kicks), (s1, e1, (irqs, empty, on_cpu, preempted))) = std::thread::scope(|s| {
        let d = s.spawn(move || {
            if !pin_to_cpu(0) {
                PIN_FAILED.store(true, Ordering::Relaxed);
            }
            let start = line.go();
            while drv.returned < n {
                if drv.refill(u64::MAX, n) == 0 {
                    spin_loop();
                }
            }
            (start, Instant::now(), drv.kicks)
        });
        let v = s.spawn(move || {
            let mut dev = dev;
            if !pin_to_cpu(1) {
                PIN_FAILED.store(true, Ordering::Relaxed);
            }
            let start = line.go();
            let usage = thread_usage();
            let (mut done, mut armed, mut polls, mut empty) = (0u64, false, 0u64, 0u64);
            while done < n {
                let k = dev.batch::<B>();
                done += k as u64;
                polls += 1;
                empty += u64::from(k == 0);
                if k > 0 {
                    armed = false;
                } else if !armed {
                    armed = !dev.arm();
                } else {
                    spin_loop();
                }
            }
            let end = Instant::now();
            let (cpu, preempted) = thread_usage();
            let on_cpu = (cpu - usage.0).as_secs_f64() / (end - start).as_secs_f64();
            (start, end, (dev.irqs(), empty as f64 / polls as f64, on_cpu, preempted - usage.1))
        });
        (d.join().expect("driver thread"), v.join().expect("device thread"))
    });
    Sample { rate: Rate::new(n, e0.max(e1) - s0.min(s1)), kicks, irqs, empty, on_cpu, preempted }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Imp {
    Pvio,
    VirtioQueue,
}

const IMPS: [Imp; 2] = [Imp::Pvio, Imp::VirtioQueue];

struct Scenario {
    descs: u16,
    threads: usize,
    batch: usize,
    items: u64,
}

impl Scenario {
    fn title(&self) -> String {
        format!(
            "{} descriptor{} per chain, {}, batch {}",
            self.descs,
            if self.descs == 1 { "" } else { "s" },
            if self.threads == 1 { "single thread" } else { "driver on the other core" },
            self.batch
        )
    }

    fn run(&self, imp: Imp, n: u64) -> Sample {
        let mem = guest_memory();
        let drv = Driver::new(&mem, self.descs);
        match imp {
            Imp::Pvio => {
                // SAFETY: `mem` outlives `vm`; in this process guest memory is only accessed
                // through vm-memory's volatile accessors and pvio's atomic ones.
                let vm = unsafe { VmGuestMemory::new(&mem) }.expect("host-mapped regions");
                let q = DeviceQueue::new(&vm, layout(), features()).expect("rings in memory");
                let dev = Pvio { q, segs: [Segment::default(); 4], seen: 0, descs: self.descs, irqs: 0 };
                self.go(dev, drv, n)
            }
            Imp::VirtioQueue => {
                let dev = Vq { q: vq_queue(&mem), mem: &mem, seen: 0, descs: self.descs, irqs: 0 };
                self.go(dev, drv, n)
            }
        }
    }

    fn go<D: Device + Send>(&self, mut dev: D, mut drv: Driver<'_>, n: u64) -> Sample {
        match (self.threads, self.batch) {
            (1, 1) => single::<D, 1>(&mut dev, &mut drv, n),
            (1, _) => single::<D, BIG>(&mut dev, &mut drv, n),
            (_, 1) => pair::<D, 1>(dev, drv, n),
            _ => pair::<D, BIG>(dev, drv, n),
        }
    }
}

fn scenarios() -> Vec<Scenario> {
    let mut v = Vec::new();
    for descs in [1, 2] {
        for threads in [1, 2] {
            for batch in [1, BIG] {
                let items = if threads == 1 { 2_000_000 } else { 300_000 };
                v.push(Scenario { descs, threads, batch, items });
            }
        }
    }
    v
}

const MAX_RUNS: usize = 9;
const MIN_RUNS: usize = 5;
const TIME_BUDGET: Duration = Duration::from_secs(60);

fn main() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let (max_runs, scale) = if full { (MAX_RUNS, 1) } else { (1, 1000) };
    // Other arguments that are not flags select scenarios: each must appear in the title
    // (e.g. `single`, `other core`, `batch 32`, `2 descriptors`).
    // `pvio` or `virtio-queue` selects one implementation; `--items=N` and `--runs=N` override
    // the chains per measurement and the number of runs (e.g. for a run under callgrind).
    let words: Vec<&str> = args.iter().filter(|a| !a.starts_with('-')).map(|a| a.as_str()).collect();
    let imp_name = |i: Imp| if i == Imp::Pvio { "pvio" } else { "virtio-queue" };
    let imps: Vec<Imp> = IMPS
        .into_iter()
        .filter(|&i| {
            !words.iter().any(|w| IMPS.iter().any(|&j| imp_name(j) == *w)) || words.contains(&imp_name(i))
        })
        .collect();
    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| {
            words.iter().filter(|w| !IMPS.iter().any(|&j| imp_name(j) == **w)).all(|w| s.title().contains(w))
        })
        .collect();
    let flag =
        |name: &str| args.iter().find_map(|a| a.strip_prefix(name)).and_then(|v| v.parse::<u64>().ok());
    let items_override = flag("--items=");
    let max_runs = flag("--runs=").map_or(max_runs, |r| r as usize);

    println!("virtqueue: device-side processing, pvio DeviceQueue vs rust-vmm virtio-queue 0.18 Queue");
    println!(
        "  machine: {} ({} CPUs online); one GuestMemoryMmap shared by the driver and both devices",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  queue size {SIZE}, EVENT_IDX; chains: 1 x {FRAME} B readable, or {HDR} B readable + {FRAME} B writable"
    );
    println!(
        "  per chain: pop, walk + translate every buffer, add_used; per batch: publish + interrupt decision"
    );
    if !full {
        println!("  (smoke run: pass --bench, as `cargo bench` does, for the real measurement)");
    }

    let mut samples: Vec<[Vec<Sample>; 2]> = scenarios.iter().map(|_| Default::default()).collect();
    let t0 = Instant::now();
    let mut runs = 0;
    while runs < max_runs {
        let round = Instant::now();
        for (s, sc) in scenarios.iter().enumerate() {
            for k in 0..imps.len() {
                let imp = imps[(k + runs) % imps.len()];
                samples[s][imp as usize].push(sc.run(imp, items_override.unwrap_or(sc.items / scale)));
            }
        }
        runs += 1;
        if runs >= MIN_RUNS.min(max_runs) && t0.elapsed() + round.elapsed() > TIME_BUDGET {
            break;
        }
    }
    println!("  median of {runs} runs per row; \"paired\" is the median of the per-run ratios");

    let mut goals = Vec::new();
    for (sc, per) in scenarios.iter().zip(&samples) {
        println!();
        println!("{}", sc.title());
        println!(
            "  {:<44} {:>9} {:^18} {:>8} {:>8} {:>8}",
            "implementation", "Mchains/s", "min .. max", "kicks", "irqs", ""
        );
        let rates: Vec<Vec<f64>> = per.iter().map(|v| v.iter().map(|s| s.rate.mitems()).collect()).collect();
        for imp in imps.iter().copied() {
            let i = imp as usize;
            let (lo, hi) = min_max(&rates[i]);
            let kicks = median(&mut per[i].iter().map(|s| s.kicks as f64).collect::<Vec<_>>());
            let irqs = median(&mut per[i].iter().map(|s| s.irqs as f64).collect::<Vec<_>>());
            let name = match imp {
                Imp::Pvio => "pvio DeviceQueue (VmGuestMemory)",
                Imp::VirtioQueue => "virtio-queue Queue",
            };
            println!(
                "  {:<44} {:>9.2} {:>8.2} .. {:<6.2} {:>8.0} {:>8.0}",
                name,
                median(&mut rates[i].clone()),
                lo,
                hi,
                kicks,
                irqs
            );
        }
        if imps.len() < 2 {
            continue;
        }
        let ratio = median(&mut rates[0].clone()) / median(&mut rates[1].clone());
        let paired = paired_ratio(&rates[0], &rates[1]);
        if sc.threads > 1 {
            for imp in imps.iter().copied() {
                let i = imp as usize;
                let med = |f: fn(&Sample) -> f64| median(&mut per[i].iter().map(f).collect::<Vec<_>>());
                println!(
                    "  {:<44} device: {:.0}% of polls empty, on CPU {:.0}% of the time, {:.0} preemptions",
                    if imp == Imp::Pvio { "  pvio" } else { "  virtio-queue" },
                    100.0 * med(|s| s.empty),
                    100.0 * med(|s| s.on_cpu),
                    med(|s| s.preempted as f64)
                );
            }
        }
        println!("  pvio / virtio-queue: {ratio:.2}x (paired {paired:.2}x)");
        goals.push((sc.title(), paired));
    }
    if full {
        println!();
        println!("goal (pvio at least 2x virtio-queue's rate, paired ratio):");
        for (title, paired) in &goals {
            println!("  {title:<58} {paired:>6.2}x  {}", if *paired >= 2.0 { "met" } else { "NOT met" });
        }
    }
    println!();
    if PIN_FAILED.load(Ordering::Relaxed) {
        println!("WARNING: pinning to CPUs 0 and 1 failed at least once; results are less reliable");
    }
    println!("total measurement time {:.1} s", t0.elapsed().as_secs_f64());
}
