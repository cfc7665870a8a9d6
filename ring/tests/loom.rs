//! Loom models of the Xen ring protocol (`--cfg loom` only).
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p pvio-ring --test loom --release --target-dir target/loom
//! ```
//!
//! Under `cfg(loom)` the shared region is an array of loom atomics and the ring code uses
//! loom's atomics, fences, `Mutex` and `Condvar` (see `src/sync.rs`), so these models check
//! the code that ships. Each model runs the front end and the back end in their own loom
//! threads and checks two properties in every explored execution:
//!
//! - **Entries are seen complete and in order.** Every word of an entry is derived from its
//!   sequence number (`check == !word`), so a consumer that copies a slot before the
//!   producer's writes are visible to it (a missing Release/Acquire pairing on `req_prod` or
//!   `rsp_prod`) sees a torn, zeroed or stale entry and the assertion fails.
//! - **No wake-up is lost.** A consumer with nothing to do calls `final_check_for_*` and, if
//!   that finds nothing, blocks on an [`InProcessEvent`]; a producer notifies only when its
//!   push says `is_needed()`. If the `req_event`/`rsp_event` handshake could miss, a consumer
//!   would block forever and loom reports the deadlock.
//!
//! Each model also asserts that loom explored more than one execution, so a model that
//! silently stops branching cannot pass vacuously.
//!
//! A deadlock makes loom panic again while unwinding, which aborts the whole test binary
//! (SIGABRT) after printing `deadlock; threads = [...]`; pass a test name as a filter to run
//! the other models. `LOOM_MAX_PREEMPTIONS` overrides each model's preemption bound and
//! `LOOM_LOCATION=1` makes the deadlock report say where each thread is blocked.
#![cfg(loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use loom::sync::Arc;
use loom::thread;
use pvio_ring::{BackRing, FrontRing, InProcessEvent, Notifier, SharedMem, Waiter};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A ring entry whose every word is derived from one value: `check == !word`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct Msg {
    word: u32,
    check: u32,
}

/// Tag of request words; the low bits hold the sequence number.
const REQ: u32 = 0x5245_0000;
/// Tag of response words.
const RSP: u32 = 0x5250_0000;

impl Msg {
    fn new(tag: u32, seq: u32) -> Self {
        let word = tag | seq;
        Msg { word, check: !word }
    }

    /// Asserts that `self` is the complete entry `seq` of kind `tag`.
    fn expect(self, tag: u32, seq: u32) {
        assert_eq!(
            self.check,
            !self.word,
            "incomplete entry: {self:x?} (expected {:x?})",
            Msg::new(tag, seq)
        );
        assert!(
            self == Msg::new(tag, seq),
            "stale or out-of-order entry: {self:x?} (expected {:x?})",
            Msg::new(tag, seq)
        );
    }
}

type Front = FrontRing<'static, Msg, Msg>;
type Back = BackRing<'static, Msg, Msg>;

/// How an end moves entries: one at a time with a push (and a notification decision) per
/// entry, or in batches with the slice APIs and one push per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    OneByOne,
    Batched,
}

/// The back end: consumes `n` requests, checking each; sleeps on `wake_me` when idle
/// (`pop`, then `final_check_for_requests`, then `wait`). With `wake_front`, answers the
/// requests, pushing the responses of each pop (one, or a batch) at once and notifying when
/// the push says one is needed.
fn back_end(
    mut back: Back,
    wake_me: &InProcessEvent,
    wake_front: Option<&InProcessEvent>,
    n: u32,
    style: Style,
) -> Back {
    let mut next = 0;
    while next < n {
        let mut reqs = [Msg::new(0, 0); 2];
        let popped = match style {
            Style::OneByOne => match back.pop_request().expect("honest front end") {
                Some(req) => {
                    reqs[0] = req;
                    1
                }
                None => 0,
            },
            Style::Batched => back.pop_requests(&mut reqs).expect("honest front end"),
        };
        if popped == 0 {
            if !back.final_check_for_requests().expect("honest front end") {
                wake_me.wait(None).unwrap();
            }
            continue;
        }
        let mut rsps = [Msg::new(0, 0); 2];
        for (req, rsp) in reqs[..popped].iter().zip(&mut rsps) {
            req.expect(REQ, next);
            *rsp = Msg::new(RSP, next);
            next += 1;
        }
        if let Some(front) = wake_front {
            match style {
                Style::OneByOne => back.queue_response(&rsps[0]).expect("a request to answer"),
                Style::Batched => assert_eq!(back.queue_responses(&rsps[..popped]), popped),
            }
            if back.push_responses().is_needed() {
                front.notify().unwrap();
            }
        }
    }
    back
}

/// The front end: sends `n` requests, publishing each with its own push (or, `Batched`,
/// everything that fits with one push) and notifying when the push says so. With `wake_me`,
/// also collects and checks the `n` responses, sleeping on `wake_me` when it can neither send
/// nor receive (`pop`, then `final_check_for_responses`, then `wait`).
fn front_end(
    mut front: Front,
    wake_me: Option<&InProcessEvent>,
    wake_back: &InProcessEvent,
    n: u32,
    style: Style,
) -> Front {
    let all: Vec<Msg> = (0..n).map(|seq| Msg::new(REQ, seq)).collect();
    let mut sent = 0;
    let mut got = 0;
    loop {
        match style {
            Style::OneByOne => {
                while sent < n && front.queue_request(&all[sent as usize]).is_ok() {
                    sent += 1;
                    if front.push_requests().is_needed() {
                        wake_back.notify().unwrap();
                    }
                }
            }
            Style::Batched => {
                sent += front.queue_requests(&all[sent as usize..]) as u32;
                if front.push_requests().is_needed() {
                    wake_back.notify().unwrap();
                }
            }
        }
        let Some(wake_me) = wake_me else {
            assert_eq!(sent, n, "without responses, every request must fit in the ring");
            return front;
        };
        if got == n {
            return front;
        }
        let mut rsps = [Msg::new(0, 0); 2];
        let popped = match style {
            Style::OneByOne => match front.pop_response().expect("honest back end") {
                Some(rsp) => {
                    rsps[0] = rsp;
                    1
                }
                None => 0,
            },
            Style::Batched => front.pop_responses(&mut rsps).expect("honest back end"),
        };
        if popped == 0 {
            if !front.final_check_for_responses().expect("honest back end") {
                wake_me.wait(None).unwrap();
            }
            continue;
        }
        for rsp in &rsps[..popped] {
            rsp.expect(RSP, got);
            got += 1;
        }
    }
}

const PREEMPTIONS_REQUESTS: usize = 4;
const PREEMPTIONS_RESPONSES: usize = 3;
const PREEMPTIONS_ROUND_TRIPS: usize = 2;
const PREEMPTIONS_BATCHES: usize = 3;

/// Runs `model` under loom, then checks and reports how many executions were explored.
/// `preemption_bound` keeps the model tractable; `LOOM_MAX_PREEMPTIONS` overrides it for a
/// deeper (slower) search.
fn check(name: &str, preemption_bound: usize, executions: &'static AtomicUsize, model: fn()) {
    let start = Instant::now();
    let mut builder = loom::model::Builder::new();
    let bound = *builder.preemption_bound.get_or_insert(preemption_bound);
    builder.check(move || {
        executions.fetch_add(1, Ordering::Relaxed);
        model();
    });
    let explored = executions.load(Ordering::Relaxed);
    println!("{name}: {explored} executions in {:.1?} (preemption bound {bound})", start.elapsed());
    assert!(explored > 1, "{name}: loom explored only {explored} execution(s)");
}

/// One model: a ring of `entries` slots, `n` requests; both ends in their own loom threads.
/// With `responses`, the back end answers every request and the front end collects the
/// answers; otherwise only requests flow (and must all fit in the ring).
fn run(entries: usize, n: u32, front_style: Style, back_style: Style, responses: bool) {
    let mem = SharedMem::loom_new(64 + entries * size_of::<Msg>());
    let front = Front::new(mem.clone()).unwrap();
    let back = Back::new(mem).unwrap();
    assert_eq!(front.size() as usize, entries);
    let wake_back = Arc::new(InProcessEvent::new());
    let wake_front = responses.then(|| Arc::new(InProcessEvent::new()));

    let (wf, wb) = (wake_front.clone(), wake_back.clone());
    let f = thread::spawn(move || front_end(front, wf.as_deref(), &wb, n, front_style));
    let (wf, wb) = (wake_front.clone(), wake_back.clone());
    let b = thread::spawn(move || back_end(back, &wb, wf.as_deref(), n, back_style));

    let front = f.join().unwrap();
    let back = b.join().unwrap();
    assert_eq!((front.req_prod_pvt(), back.req_cons()), (n, n));
    if responses {
        assert_eq!((front.rsp_cons(), front.in_flight(), back.rsp_prod_pvt()), (n, 0, n));
    }
}

/// Requests only: the front end pushes each request on its own into a four-entry ring; the
/// back end sleeps whenever it runs dry. Checks Release/Acquire on `req_prod` and the
/// `req_event` handshake (`push_requests` against `final_check_for_requests`).
#[test]
fn requests_arrive_complete_and_wake_the_back_end() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("requests", PREEMPTIONS_REQUESTS, &EXECUTIONS, || {
        run(4, 3, Style::OneByOne, Style::OneByOne, false)
    });
}

/// Responses: the front end publishes all requests with one push, then waits for the
/// answers; the back end answers each request with its own push. Checks Release/Acquire on
/// `rsp_prod` and the `rsp_event` handshake (`push_responses` against
/// `final_check_for_responses`).
#[test]
fn responses_arrive_complete_and_wake_the_front_end() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("responses", PREEMPTIONS_RESPONSES, &EXECUTIONS, || {
        run(4, 3, Style::Batched, Style::OneByOne, true)
    });
}

/// Full duplex on a two-entry ring, one entry per push: four requests, so the front end
/// runs out of slots and sleeps on responses, and slots are reused (a stale read sees the
/// previous request or response of the slot). Both ends sleep and wake each other.
#[test]
fn round_trips_reuse_slots_without_losing_wake_ups() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("round trips", PREEMPTIONS_ROUND_TRIPS, &EXECUTIONS, || {
        run(2, 4, Style::OneByOne, Style::OneByOne, true)
    });
}

/// Full duplex on a two-entry ring with the batch APIs on both sides (`queue_requests`,
/// `pop_requests`, `queue_responses`, `pop_responses`), one push per batch.
#[test]
fn batches_reuse_slots_without_losing_wake_ups() {
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    check("batches", PREEMPTIONS_BATCHES, &EXECUTIONS, || run(2, 4, Style::Batched, Style::Batched, true));
}
