//! The Xen ring (`pvio_ring::xen`) against `rtrb` 0.4 and crossbeam's `ArrayQueue`, two
//! threads pinned to two cores, same items, same run.
//!
//! Scenarios, each at batch 1 and batch 32:
//!
//! - **one way**: a producer moves 12-byte items (`NetifTxRequest`) to a consumer. On the Xen
//!   ring the back end must answer every request with a 4-byte `NetifTxResponse` so that its
//!   slot can be reused, and the front end consumes those responses to free slots: that is
//!   Xen's protocol (netback answers every transmit request). The peers move requests only.
//! - **request → response**: the front end keeps up to `batch` requests in flight and waits
//!   for their responses; the peers do the same over two queues, one each way. The rate is
//!   round trips per second.
//!
//! Both sides busy-poll (no eventfds), so the ring itself is measured, but the ring's
//! notification decisions are honoured: where a side would go to sleep it arms its event
//! threshold once (`RING_FINAL_CHECK_FOR_*`) and keeps polling, and every `Notify` that says
//! the peer must be woken is counted and reported.
//!
//! Every item carries its sequence number in all 12 bytes and every consumer checks it, so
//! the work cannot be elided and a corrupted or reordered item panics the bench.
//!
//! `cargo bench -p pvio-benches --bench xen_ring` runs the full measurement; without
//! `--bench` (e.g. under `cargo test --benches`) a short smoke run checks the code paths.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use pvio_benches::{median, pin_to_cpu, Rate};
use pvio_ring::xen::netif::{netif_rsp, NetifTxRequest, NetifTxResponse};
use pvio_ring::{BackRing, FrontRing, MemfdRegion, RingError};
use rtrb::chunks::ChunkError;
use rtrb::{Consumer, Producer, PushError, RingBuffer};

type Req = NetifTxRequest;
type Rsp = NetifTxResponse;
type Front<'a> = FrontRing<'a, Req, Rsp>;
type Back<'a> = BackRing<'a, Req, Rsp>;

/// One 4 KiB page: 256 slots of 12 bytes after the 64-byte header.
const PAGE: usize = 4096;
/// Capacity of every peer queue, equal to the Xen ring's slot count.
const CAPACITY: usize = 256;
/// The larger batch size (the smaller one is 1).
const BIG: usize = 32;

// ---------------------------------------------------------------------------------------
// Items and their checks
// ---------------------------------------------------------------------------------------

/// The request with sequence number `seq`: every one of its 12 bytes depends on `seq`.
#[inline(always)]
fn item(seq: u32) -> Req {
    Req {
        gref: seq.into(),
        offset: ((seq >> 16) as u16 ^ 0xa5a5).into(),
        flags: ((seq.wrapping_mul(0x9e37_79b9) >> 16) as u16 ^ 0x0f0f).into(),
        id: (seq as u16).into(),
        size: ((seq >> 3) as u16 | 1).into(),
    }
}

/// The back end's answer to `req`.
#[inline(always)]
fn answer(req: &Req) -> Rsp {
    Rsp { id: req.id, status: netif_rsp::OKAY.into() }
}

#[inline(always)]
fn check_req(who: &str, got: &Req, seq: u32) {
    if *got != item(seq) {
        corrupt_req(who, got, seq);
    }
}

#[inline(always)]
fn check_rsp(who: &str, got: &Rsp, seq: u32) {
    if got.id.get() != seq as u16 || got.status.get() != netif_rsp::OKAY {
        corrupt_rsp(who, got, seq);
    }
}

#[cold]
#[inline(never)]
fn corrupt_req(who: &str, got: &Req, seq: u32) -> ! {
    panic!("{who}: request {seq} corrupted or out of order: got {got:?}, expected {:?}", item(seq))
}

#[cold]
#[inline(never)]
fn corrupt_rsp(who: &str, got: &Rsp, seq: u32) -> ! {
    panic!("{who}: response {seq} corrupted or out of order: got {got:?}, expected id {}", seq as u16)
}

/// Unwraps a ring result; a protocol error between two honest threads is a bug.
#[inline(always)]
fn ring<T>(r: Result<T, RingError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => ring_failed(e),
    }
}

#[cold]
#[inline(never)]
fn ring_failed(e: RingError) -> ! {
    panic!("xen ring reported a protocol error between two honest ends: {e}")
}

// ---------------------------------------------------------------------------------------
// Two pinned threads
// ---------------------------------------------------------------------------------------

/// Set when a thread could not be pinned; reported with the results.
static PIN_FAILED: AtomicBool = AtomicBool::new(false);

/// Both threads of a measurement spin here until the other has arrived, then start.
struct StartLine(CachePadded<AtomicUsize>);

impl StartLine {
    /// Waits for the other side and returns the start time.
    fn go(&self) -> Instant {
        self.0.fetch_add(1, Ordering::AcqRel);
        while self.0.load(Ordering::Acquire) < 2 {
            spin_loop();
        }
        Instant::now()
    }
}

/// What one side of a measurement reports: its start and end times and a counter (the
/// notifications it would have sent; 0 for the peers).
type Side = (Instant, Instant, u64);

/// One measurement's result.
#[derive(Clone, Copy)]
struct Sample {
    rate: Rate,
    /// Front→back events (`push_requests` said notify).
    kicks: u64,
    /// Back→front events (`push_responses` said notify).
    irqs: u64,
}

/// Runs `a` on CPU 0 and `b` on CPU 1; each does its own setup, calls [`StartLine::go`] and
/// returns when done. The elapsed time runs from the earlier start to the later end.
fn pair<A, B>(items: u32, a: A, b: B) -> Sample
where
    A: FnOnce(&StartLine) -> Side + Send,
    B: FnOnce(&StartLine) -> Side + Send,
{
    let line = StartLine(CachePadded::new(AtomicUsize::new(0)));
    let ((sa, ea, kicks), (sb, eb, irqs)) = std::thread::scope(|s| {
        let line = &line;
        let ta = s.spawn(move || {
            if !pin_to_cpu(0) {
                PIN_FAILED.store(true, Ordering::Relaxed);
            }
            a(line)
        });
        let tb = s.spawn(move || {
            if !pin_to_cpu(1) {
                PIN_FAILED.store(true, Ordering::Relaxed);
            }
            b(line)
        });
        (ta.join().expect("producer thread panicked"), tb.join().expect("consumer thread panicked"))
    });
    let elapsed = ea.max(eb) - sa.min(sb);
    Sample { rate: Rate::new(items.into(), elapsed), kicks, irqs }
}

// ---------------------------------------------------------------------------------------
// pvio: the Xen ring
// ---------------------------------------------------------------------------------------

fn page() -> MemfdRegion {
    MemfdRegion::new("pvio-bench-xen-ring", PAGE).expect("memfd_create + mmap of one page")
}

/// One way, front end: pushes `n` requests `B` at a time (`queue_request(s)` then one
/// `push_requests`), and consumes responses only when it needs their slots — netfront's
/// transmit garbage collection.
fn pvio_front_oneway<const B: usize>(front: &mut Front<'_>, line: &StartLine, n: u32) -> Side {
    let mut reqs = [Req::default(); B];
    let mut rsps = [Rsp::default(); CAPACITY];
    let (mut sent, mut freed, mut kicks) = (0u32, 0u32, 0u64);
    let mut armed = false;
    let start = line.go();
    while freed < n {
        let mut progress = false;
        if front.free_requests() < B as u32 || sent == n {
            let k = if B == 1 {
                let mut k = 0;
                while let Some(rsp) = ring(front.pop_response()) {
                    check_rsp("pvio front", &rsp, freed + k);
                    k += 1;
                }
                k
            } else {
                let k = ring(front.pop_responses(&mut rsps));
                for (i, rsp) in rsps[..k].iter().enumerate() {
                    check_rsp("pvio front", rsp, freed + i as u32);
                }
                k as u32
            };
            freed += k;
            progress |= k > 0;
        }
        let room = (front.free_requests() as usize).min(B).min((n - sent) as usize);
        if room > 0 {
            if B == 1 {
                if front.queue_request(&item(sent)).is_err() {
                    panic!("pvio front: no slot although free_requests() > 0");
                }
            } else {
                for (i, r) in reqs[..room].iter_mut().enumerate() {
                    *r = item(sent + i as u32);
                }
                assert_eq!(front.queue_requests(&reqs[..room]), room, "pvio front: queue_requests");
            }
            // Busy-polling back end: count the kicks an event channel would have carried.
            if front.push_requests().is_needed() {
                kicks += 1;
            }
            sent += room as u32;
            progress = true;
        }
        idle(progress, &mut armed, || ring(front.final_check_for_responses()));
    }
    (start, Instant::now(), kicks)
}

/// Request → response, front end: keeps up to `B` requests in flight.
fn pvio_front_rr<const B: usize>(front: &mut Front<'_>, line: &StartLine, n: u32) -> Side {
    let mut reqs = [Req::default(); B];
    let mut rsps = [Rsp::default(); B];
    let (mut sent, mut done, mut kicks) = (0u32, 0u32, 0u64);
    let mut armed = false;
    let start = line.go();
    while done < n {
        let room = (B - front.in_flight() as usize).min((n - sent) as usize);
        if room > 0 {
            if B == 1 {
                if front.queue_request(&item(sent)).is_err() {
                    panic!("pvio front: no slot with nothing in flight");
                }
            } else {
                for (i, r) in reqs[..room].iter_mut().enumerate() {
                    *r = item(sent + i as u32);
                }
                assert_eq!(front.queue_requests(&reqs[..room]), room, "pvio front: queue_requests");
            }
            if front.push_requests().is_needed() {
                kicks += 1;
            }
            sent += room as u32;
        }
        let k = if B == 1 {
            match ring(front.pop_response()) {
                Some(rsp) => {
                    check_rsp("pvio front", &rsp, done);
                    1
                }
                None => 0,
            }
        } else {
            let k = ring(front.pop_responses(&mut rsps));
            for (i, rsp) in rsps[..k].iter().enumerate() {
                check_rsp("pvio front", rsp, done + i as u32);
            }
            k as u32
        };
        done += k;
        idle(room > 0 || k > 0, &mut armed, || ring(front.final_check_for_responses()));
    }
    (start, Instant::now(), kicks)
}

/// Back end (both scenarios): copies up to `B` requests out, checks them, answers each and
/// publishes the answers with one `push_responses`.
fn pvio_back<const B: usize>(back: &mut Back<'_>, line: &StartLine, n: u32) -> Side {
    let mut reqs = [Req::default(); B];
    let mut rsps = [Rsp::default(); B];
    let (mut got, mut irqs) = (0u32, 0u64);
    let mut armed = false;
    let start = line.go();
    while got < n {
        let k = if B == 1 {
            match ring(back.pop_request()) {
                Some(req) => {
                    reqs[0] = req;
                    1
                }
                None => 0,
            }
        } else {
            ring(back.pop_requests(&mut reqs))
        };
        idle(k > 0, &mut armed, || ring(back.final_check_for_requests()));
        if k == 0 {
            continue;
        }
        for (i, (req, rsp)) in reqs[..k].iter().zip(&mut rsps[..k]).enumerate() {
            check_req("pvio back", req, got + i as u32);
            *rsp = answer(req);
        }
        if B == 1 {
            if back.queue_response(&rsps[0]).is_err() {
                panic!("pvio back: response refused for a consumed request");
            }
        } else {
            assert_eq!(back.queue_responses(&rsps[..k]), k, "pvio back: queue_responses");
        }
        // Busy-polling front end: count the interrupts an event channel would have carried.
        if back.push_responses().is_needed() {
            irqs += 1;
        }
        got += k as u32;
    }
    (start, Instant::now(), irqs)
}

/// Where a real end would sleep: after a round without progress it arms its event threshold
/// once (`final_check` returns whether work arrived meanwhile) and from then on polls
/// read-only until there is work again, as if woken by the (counted) event.
#[inline(always)]
fn idle(progress: bool, armed: &mut bool, final_check: impl FnOnce() -> bool) {
    if progress {
        *armed = false;
    } else if !*armed {
        *armed = !final_check();
    } else {
        spin_loop();
    }
}

fn pvio<const B: usize>(round_trip: bool, n: u32) -> Sample {
    let page = page();
    let page = &page;
    pair(
        n,
        move |line| {
            let mut front = ring(Front::new(page.mem()));
            if round_trip {
                pvio_front_rr::<B>(&mut front, line, n)
            } else {
                pvio_front_oneway::<B>(&mut front, line, n)
            }
        },
        move |line| {
            // Nothing is read from the page before `go()`, which orders it after `Front::new`.
            let mut back = ring(Back::new(page.mem()));
            pvio_back::<B>(&mut back, line, n)
        },
    )
}

// ---------------------------------------------------------------------------------------
// rtrb 0.4
// ---------------------------------------------------------------------------------------

/// Pushes `count` items with sequence numbers from `first`: `push` for `B == 1`, otherwise
/// chunks of up to `B` (`write_chunk_uninit` + `fill_from_iter`). Returns how many it pushed
/// (fewer than `count` when the queue is full).
#[inline(always)]
fn rtrb_push<T, const B: usize>(p: &mut Producer<T>, first: u32, count: u32, make: impl Fn(u32) -> T) -> u32 {
    if count == 0 {
        return 0;
    }
    if B == 1 {
        return match p.push(make(first)) {
            Ok(()) => 1,
            Err(PushError::Full(_)) => 0,
        };
    }
    let want = (count as usize).min(B);
    let chunk = match p.write_chunk_uninit(want) {
        Ok(chunk) => chunk,
        Err(ChunkError::TooFewSlots(0)) => return 0,
        Err(ChunkError::TooFewSlots(k)) => p.write_chunk_uninit(k).expect("rtrb: k slots were free"),
    };
    chunk.fill_from_iter((first..).map(make)) as u32
}

/// Pops and checks up to `B` items (`pop`, or one `read_chunk`); returns how many.
#[inline(always)]
fn rtrb_pop<T, const B: usize>(c: &mut Consumer<T>, mut check: impl FnMut(usize, &T)) -> u32 {
    if B == 1 {
        return match c.pop() {
            Ok(v) => {
                check(0, &v);
                1
            }
            Err(_) => 0,
        };
    }
    let chunk = match c.read_chunk(B) {
        Ok(chunk) => chunk,
        Err(ChunkError::TooFewSlots(0)) => return 0,
        Err(ChunkError::TooFewSlots(k)) => c.read_chunk(k).expect("rtrb: k slots were readable"),
    };
    let (a, b) = chunk.as_slices();
    for (i, v) in a.iter().chain(b).enumerate() {
        check(i, v);
    }
    let k = chunk.len();
    chunk.commit_all();
    k as u32
}

fn rtrb<const B: usize>(round_trip: bool, n: u32) -> Sample {
    let (mut req_p, mut req_c) = RingBuffer::<Req>::new(CAPACITY);
    let (mut rsp_p, mut rsp_c) = RingBuffer::<Rsp>::new(CAPACITY);
    pair(
        n,
        move |line| {
            let (mut sent, mut done) = (0u32, 0u32);
            let start = line.go();
            if round_trip {
                while done < n {
                    let room = (B as u32 - (sent - done)).min(n - sent);
                    sent += rtrb_push::<_, B>(&mut req_p, sent, room, item);
                    let k = rtrb_pop::<_, B>(&mut rsp_c, |i, r| check_rsp("rtrb front", r, done + i as u32));
                    done += k;
                    if k == 0 {
                        spin_loop();
                    }
                }
            } else {
                while sent < n {
                    let k = rtrb_push::<_, B>(&mut req_p, sent, n - sent, item);
                    sent += k;
                    if k == 0 {
                        spin_loop();
                    }
                }
            }
            (start, Instant::now(), 0)
        },
        move |line| {
            let mut got = 0u32;
            let mut rsps = [Rsp::default(); B];
            let start = line.go();
            while got < n {
                let k = if round_trip {
                    let k = rtrb_pop::<_, B>(&mut req_c, |i, r| {
                        check_req("rtrb back", r, got + i as u32);
                        rsps[i] = answer(r);
                    });
                    let mut answered = 0;
                    while answered < k {
                        let rs = &rsps[answered as usize..k as usize];
                        answered += rtrb_push::<_, B>(&mut rsp_p, 0, rs.len() as u32, |j| rs[j as usize]);
                    }
                    k
                } else {
                    rtrb_pop::<_, B>(&mut req_c, |i, r| check_req("rtrb consumer", r, got + i as u32))
                };
                got += k;
                if k == 0 {
                    spin_loop();
                }
            }
            (start, Instant::now(), 0)
        },
    )
}

// ---------------------------------------------------------------------------------------
// crossbeam ArrayQueue (no batch API: a batch is B single pushes/pops)
// ---------------------------------------------------------------------------------------

fn array_queue<const B: usize>(round_trip: bool, n: u32) -> Sample {
    let reqs = ArrayQueue::<Req>::new(CAPACITY);
    let rsps = ArrayQueue::<Rsp>::new(CAPACITY);
    let (reqs, rsps) = (&reqs, &rsps);
    pair(
        n,
        move |line| {
            let (mut sent, mut done) = (0u32, 0u32);
            let start = line.go();
            if round_trip {
                while done < n {
                    let room = (B as u32 - (sent - done)).min(n - sent);
                    for _ in 0..room {
                        if reqs.push(item(sent)).is_err() {
                            panic!("ArrayQueue front: full with at most {B} in flight");
                        }
                        sent += 1;
                    }
                    let mut k = 0;
                    while let Some(r) = rsps.pop() {
                        check_rsp("ArrayQueue front", &r, done);
                        done += 1;
                        k += 1;
                    }
                    if k == 0 {
                        spin_loop();
                    }
                }
            } else {
                while sent < n {
                    if reqs.push(item(sent)).is_ok() {
                        sent += 1;
                    } else {
                        spin_loop();
                    }
                }
            }
            (start, Instant::now(), 0)
        },
        move |line| {
            let mut got = 0u32;
            let start = line.go();
            while got < n {
                match reqs.pop() {
                    Some(r) => {
                        check_req("ArrayQueue back", &r, got);
                        if round_trip && rsps.push(answer(&r)).is_err() {
                            panic!("ArrayQueue back: response queue full");
                        }
                        got += 1;
                    }
                    None => spin_loop(),
                }
            }
            (start, Instant::now(), 0)
        },
    )
}

// ---------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Imp {
    Pvio,
    Rtrb,
    ArrayQueue,
}

const IMPS: [Imp; 3] = [Imp::Pvio, Imp::Rtrb, Imp::ArrayQueue];

impl Imp {
    fn name(self) -> &'static str {
        match self {
            Imp::Pvio => "pvio",
            Imp::Rtrb => "rtrb",
            Imp::ArrayQueue => "ArrayQueue",
        }
    }
}

/// Runs per measurement (each run measures every row once) ...
const MAX_RUNS: usize = 9;
/// ... unless the machine is so slow that the bench would take much more than a minute; but
/// never fewer than this.
const MIN_RUNS: usize = 5;
const TIME_BUDGET: std::time::Duration = std::time::Duration::from_secs(50);

struct Scenario {
    title: &'static str,
    round_trip: bool,
    batch: usize,
    /// Items (or round trips) per measurement.
    items: u32,
    /// How each implementation moves items here.
    how: [&'static str; 3],
}

impl Scenario {
    fn run(&self, imp: Imp, items: u32) -> Sample {
        match (imp, self.batch) {
            (Imp::Pvio, 1) => pvio::<1>(self.round_trip, items),
            (Imp::Pvio, _) => pvio::<BIG>(self.round_trip, items),
            (Imp::Rtrb, 1) => rtrb::<1>(self.round_trip, items),
            (Imp::Rtrb, _) => rtrb::<BIG>(self.round_trip, items),
            (Imp::ArrayQueue, 1) => array_queue::<1>(self.round_trip, items),
            (Imp::ArrayQueue, _) => array_queue::<BIG>(self.round_trip, items),
        }
    }
}

fn scenarios() -> [Scenario; 4] {
    [
        Scenario {
            title: "one way, batch 1",
            round_trip: false,
            batch: 1,
            items: 1_000_000,
            how: [
                "pvio Xen ring (queue_request+push per item; back answers each)",
                "rtrb push/pop",
                "crossbeam ArrayQueue push/pop",
            ],
        },
        Scenario {
            title: "one way, batch 32",
            round_trip: false,
            batch: BIG,
            items: 4_000_000,
            how: [
                "pvio Xen ring (queue_requests+push per 32; back answers each)",
                "rtrb write_chunk_uninit/read_chunk(32)",
                "crossbeam ArrayQueue push/pop (no batch API)",
            ],
        },
        Scenario {
            title: "request -> response, 1 in flight",
            round_trip: true,
            batch: 1,
            items: 150_000,
            how: [
                "pvio Xen ring (one ring, both directions)",
                "rtrb push/pop, two queues",
                "crossbeam ArrayQueue, two queues",
            ],
        },
        Scenario {
            title: "request -> response, up to 32 in flight",
            round_trip: true,
            batch: BIG,
            items: 1_000_000,
            how: [
                "pvio Xen ring (one ring, both directions)",
                "rtrb chunks(32), two queues",
                "crossbeam ArrayQueue, two queues",
            ],
        },
    ]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.to_owned()))
        .and_then(|l| l.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn main() {
    // A corrupted item panics one thread while the other may be spinning on it: end the
    // whole bench instead of hanging.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));

    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    // Other arguments that are not flags select scenarios (by a part of their title) and
    // implementations (`pvio`, `rtrb`, `ArrayQueue`).
    let words: Vec<&str> = args.iter().filter(|a| !a.starts_with('-')).map(|a| a.as_str()).collect();
    let imp_words: Vec<&str> =
        words.iter().copied().filter(|w| IMPS.iter().any(|i| i.name() == *w)).collect();
    let title_words: Vec<&str> = words.iter().copied().filter(|w| !imp_words.contains(w)).collect();
    let imps: Vec<Imp> =
        IMPS.into_iter().filter(|i| imp_words.is_empty() || imp_words.contains(&i.name())).collect();
    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| title_words.is_empty() || title_words.iter().any(|w| s.title.contains(w)))
        .collect();
    let (max_runs, scale) = if full { (MAX_RUNS, 1) } else { (1, 100) };

    println!("xen_ring: pvio Xen ring vs rtrb 0.4 vs crossbeam ArrayQueue, 2 threads pinned to CPUs 0 and 1");
    println!(
        "  machine: {} ({} CPUs online); both sides busy-poll, no eventfds",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "  items: NetifTxRequest, 12 bytes (responses: NetifTxResponse, 4 bytes); Xen ring: one 4096-byte memfd \
         page = {} slots; peer queues: capacity {CAPACITY}",
        pvio_ring::xen::netif::NET_TX_RING_SIZE
    );
    println!(
        "  one way on the Xen ring: the back end answers every request with a 4-byte response and the front"
    );
    println!(
        "    end consumes the responses to free the slots (Xen's protocol; netback does this); rtrb and"
    );
    println!("    ArrayQueue move the requests only");
    println!("  Notify decisions are honoured: an idle side arms its event once (RING_FINAL_CHECK_FOR_*) and keeps");
    println!("    polling; each event that would have been sent is counted");
    if !full {
        println!("  (smoke run: pass --bench, as `cargo bench` does, for the real measurement)");
    }

    // samples[scenario][imp], filled run by run: every run measures every implementation of
    // every scenario, in an order rotated from run to run, so slow phases of a noisy machine
    // hit all of them alike.
    let mut samples: Vec<[Vec<Sample>; 3]> = scenarios.iter().map(|_| Default::default()).collect();
    let t0 = Instant::now();
    let mut runs = 0;
    while runs < max_runs {
        let round = Instant::now();
        for (s, sc) in scenarios.iter().enumerate() {
            for k in 0..imps.len() {
                let imp = imps[(k + runs) % imps.len()];
                samples[s][imp as usize].push(sc.run(imp, sc.items / scale));
            }
        }
        runs += 1;
        // Keep the whole bench within about a minute on a loaded machine: stop early (with at
        // least MIN_RUNS runs) when another round would not fit.
        let spent = t0.elapsed();
        if runs >= MIN_RUNS && spent + round.elapsed() > TIME_BUDGET {
            break;
        }
    }
    let total = t0.elapsed();
    println!("  median of {runs} runs per row; \"paired\" is the median of the per-run ratios");

    for (sc, per_imp) in scenarios.iter().zip(&samples) {
        println!();
        println!("{}", sc.title);
        println!(
            "  {:<62} {:>9} {:^18} {:>9} {:>7}",
            if sc.round_trip { "implementation (rate: round trips)" } else { "implementation" },
            "Mitems/s",
            "min .. max",
            "pvio/this",
            "paired"
        );
        let rates: Vec<Vec<f64>> =
            per_imp.iter().map(|v| v.iter().map(|s| s.rate.mitems()).collect()).collect();
        let medians: Vec<f64> = rates.iter().map(|r| median(&mut r.clone())).collect();
        for imp in imps.iter().copied() {
            let i = imp as usize;
            let (lo, hi) =
                rates[i].iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
            let (ratio, paired) = if imp == Imp::Pvio || rates[0].is_empty() {
                ("-".to_owned(), "-".to_owned())
            } else {
                let mut per_run: Vec<f64> = rates[0].iter().zip(&rates[i]).map(|(p, o)| p / o).collect();
                (format!("{:.2}x", medians[0] / medians[i]), format!("{:.2}x", median(&mut per_run)))
            };
            println!(
                "  {:<62} {:>9.2} {:>8.2} .. {:<6.2} {:>9} {:>7}",
                sc.how[i], medians[i], lo, hi, ratio, paired
            );
        }
        if imps.contains(&Imp::Pvio) {
            let pv = &per_imp[0];
            let kicks = median(&mut pv.iter().map(|s| s.kicks as f64).collect::<Vec<_>>());
            let irqs = median(&mut pv.iter().map(|s| s.irqs as f64).collect::<Vec<_>>());
            println!(
                "  pvio events that would have been sent per {} {}: {kicks:.0} kicks (front->back), \
                 {irqs:.0} interrupts (back->front)",
                sc.items / scale,
                if sc.round_trip { "round trips" } else { "items" },
            );
        }
    }
    // The goal, stated with this run's numbers.
    if let Some(s) = scenarios.iter().position(|s| full && !s.round_trip && s.batch == BIG) {
        let (pv, rt) = (&samples[s][Imp::Pvio as usize], &samples[s][Imp::Rtrb as usize]);
        if !pv.is_empty() && !rt.is_empty() {
            let mut per_run: Vec<f64> =
                pv.iter().zip(rt).map(|(p, r)| p.rate.mitems() / r.rate.mitems()).collect();
            let paired = median(&mut per_run);
            let wins = per_run.iter().filter(|&&r| r >= 1.0).count();
            println!();
            println!(
                "goal (one way, batch 32: pvio at least as fast as rtrb): pvio/rtrb {paired:.2}x (median of \
                 per-run ratios; pvio ahead in {wins} of {} runs): {}",
                per_run.len(),
                if paired >= 1.0 { "met" } else { "NOT met" }
            );
        }
    }
    println!();
    if PIN_FAILED.load(Ordering::Relaxed) {
        println!("WARNING: pinning to CPUs 0 and 1 failed at least once; results are less reliable");
    }
    println!("total measurement time {:.1} s", total.as_secs_f64());
}
