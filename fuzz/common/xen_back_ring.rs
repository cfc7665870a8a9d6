//! Harness of the `xen_back_ring` fuzz target: a hostile front end against [`BackRing`].
//!
//! Shared by `fuzz/fuzz_targets/xen_back_ring.rs` (libFuzzer) and by the stable tests
//! `ring/tests/fuzz_replay.rs` (replays the corpus and regressions) and
//! `ring/tests/proptest_ring.rs`, which pull it in with `#[path = ...] mod`. It therefore uses
//! nothing but `pvio_ring` and `std`, and decodes its input by hand.
//!
//! # Input format
//!
//! ```text
//! byte 0        geometry: index into REGION_LENS (modulo its length)
//! byte 1        start of the private indices: 0 => 0, 1 => u32::MAX - byte,
//!               2 => next four bytes (LE), anything else => 0
//! then ops      one opcode byte (modulo 16) and its arguments, until the input ends
//! ```
//!
//! A missing byte reads as 0, so every input is valid. Opcodes:
//!
//! | op | action                                   | arguments                      |
//! |----|------------------------------------------|--------------------------------|
//! |  0 | honest front: queue requests             | count                          |
//! |  1 | honest front: push requests              |                                |
//! |  2 | honest front: pop responses              | count                          |
//! |  3 | honest front: final check for responses  |                                |
//! |  4 | hostile: write `req_prod`                | wild value                     |
//! |  5 | hostile: write a header word             | word (mod 16), wild value      |
//! |  6 | hostile: write bytes anywhere            | offset u16 (mod len), n (mod 17), n bytes |
//! |  7 | back: `pop_request`                      |                                |
//! |  8 | back: `pop_requests`                     | count                          |
//! |  9 | back: queue responses                    | count, mode (bit 0: batch)     |
//! | 10 | back: `push_responses`                   |                                |
//! | 11 | back: `final_check_for_requests`         |                                |
//! | 12 | back: `unconsumed_requests`              |                                |
//! | 13 | back: `pop_request`, repeatedly          | count                          |
//! | 14 | honest front: queue and push             | count                          |
//! | 15 | hostile: overwrite one entry             | slot u16, 12 bytes             |
//!
//! A count byte `c` is `c & 3` for `c < 64`, `size - 1 + (c & 3)` for `c < 128`, otherwise
//! `(c & 127) % (size + 3)`. A wild value is a kind byte (mod 5) and then: 0 => four bytes
//! (LE, absolute), 1 => `req_cons + i8`, 2 => `rsp_prod_pvt + size + i8`,
//! 3 => front `req_prod_pvt + i8`, 4 => current `req_prod + i8`.
//!
//! # Invariants checked (a failed `assert!` is a finding)
//!
//! - no panic, no out-of-bounds access (every access goes through checked `SharedMem`);
//! - every request popped is a copy of its own slot, taken at the time of the pop;
//! - the back end never consumes past a `req_prod` it validated: never more requests
//!   outstanding than slots, and an index it accepts is possible;
//! - an error is returned exactly when the index read is impossible, is
//!   `RequestProdOverflow` / `RequestProdRewound` with the values read, names the rule, and is
//!   latched: every later error is the same, `error()` reports it, and calls that re-read
//!   `req_prod` fail with it;
//! - responses: never more queued than requests consumed; `rsp_prod` is published from the
//!   back end's own records; notification decisions follow Xen's rule on the `rsp_event` in
//!   shared memory;
//! - while the input has made no hostile write, the traffic is exactly the front end's: same
//!   requests in the same order, no error anywhere.

use std::collections::VecDeque;

use pvio_ring::xen::netif::{NetifTxRequest, NetifTxResponse};
use pvio_ring::{BackRing, FrontRing, HeapRegion, RingError, SharedMem};

type Req = NetifTxRequest;
type Rsp = NetifTxResponse;

const HEADER: usize = 64;
const STRIDE: usize = 12;
const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

/// Region lengths: too small for one entry, rings of 1, 2, 2, 4, 8, 16 and 32 entries
/// (some with slack that is not a whole entry), one, two and four pages.
const REGION_LENS: [usize; 13] = [
    HEADER + STRIDE - 1,
    HEADER + STRIDE,
    HEADER + 2 * STRIDE,
    HEADER + 3 * STRIDE + 5,
    HEADER + 4 * STRIDE,
    HEADER + 8 * STRIDE,
    HEADER + 15 * STRIDE,
    HEADER + 16 * STRIDE + 11,
    HEADER + 33 * STRIDE,
    4096,
    8192,
    16384,
    HEADER + 7 * STRIDE,
];

/// Upper bound on operations per input, to keep every run short.
const MAX_OPS: usize = 4096;

/// The documented latch: after an error every consuming call fails with it, even for
/// requests validated before the error. With `false` the harness would only require such
/// requests to lie below an index validated before the error.
const STRICT_LATCH: bool = true;

use super::bytes::Bytes as Input;

/// This harness's draws from the input.
trait Draw {
    fn delta(&mut self) -> u32;
    fn count(&mut self, size: u32) -> usize;
}

impl Draw for Input<'_> {
    fn delta(&mut self) -> u32 {
        self.u8() as i8 as i32 as u32
    }

    fn count(&mut self, size: u32) -> usize {
        let c = self.u8();
        let size = size as usize;
        match c {
            0..=63 => (c & 3) as usize,
            64..=127 => size - 1 + (c & 3) as usize,
            _ => (c & 127) as usize % (size + 3),
        }
    }
}

fn mk_req(seq: u32) -> Req {
    Req {
        gref: seq.wrapping_mul(0x9e37_79b9).into(),
        offset: (seq as u16).into(),
        flags: ((seq >> 16) as u16).into(),
        id: (seq as u16 ^ 0x5a5a).into(),
        size: 60.into(),
    }
}

fn rsp_for(i: u32) -> Rsp {
    Rsp { id: (i as u16).into(), status: ((i % 3) as i16 - 1).into() }
}

fn read_u32(mem: &SharedMem<'_>, off: usize) -> u32 {
    mem.read::<u32>(off).expect("header word in bounds")
}

/// Xen's `RING_PUSH_*_AND_CHECK_NOTIFY` decision.
fn xen_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    PopOne,
    PopBatch(usize),
    FinalCheck,
    Unconsumed,
}

struct Harness<'m> {
    mem: SharedMem<'m>,
    front: FrontRing<'m, Req, Rsp>,
    back: BackRing<'m, Req, Rsp>,
    size: u32,
    /// Every value the back end may hold as its last validated `req_prod`; the true one is
    /// always among them.
    seen: Vec<u32>,
    latched: Option<RingError>,
    /// The value the back end last stored to `rsp_prod`.
    rsp_pushed: u32,
    /// Requests popped and responses queued, since the start.
    popped: u64,
    answered: u64,
    /// No hostile write yet: the traffic must be exactly the honest front end's.
    honest: bool,
    /// Requests queued by the front end and not yet popped (meaningful while `honest`).
    sent: VecDeque<Req>,
    next_seq: u32,
    /// Where the private indices started.
    start: u32,
}

impl Harness<'_> {
    fn base(&self) -> u32 {
        self.back.rsp_prod_pvt()
    }

    fn limit(&self) -> u32 {
        self.back.rsp_prod_pvt().wrapping_add(self.size)
    }

    fn slot_at(&self, idx: u32) -> usize {
        HEADER + (idx & (self.size - 1)) as usize * STRIDE
    }

    fn front_queue(&mut self, n: usize) {
        let reqs: Vec<Req> = (0..n as u32).map(|i| mk_req(self.next_seq.wrapping_add(i))).collect();
        let k = self.front.queue_requests(&reqs);
        self.next_seq = self.next_seq.wrapping_add(k as u32);
        self.sent.extend(&reqs[..k]);
    }

    fn front_push(&mut self) {
        let _ = self.front.push_requests();
    }

    fn front_result<T>(&self, r: Result<T, RingError>) {
        if self.honest {
            assert!(r.is_ok(), "honest back end, yet the front end failed: {:?}", r.err());
        }
    }

    fn wild(&self, input: &mut Input<'_>) -> u32 {
        match input.u8() % 5 {
            0 => input.u32(),
            1 => self.back.req_cons().wrapping_add(input.delta()),
            2 => self.limit().wrapping_add(input.delta()),
            3 => self.front.req_prod_pvt().wrapping_add(input.delta()),
            _ => read_u32(&self.mem, REQ_PROD).wrapping_add(input.delta()),
        }
    }

    fn consume(&mut self, call: Call) {
        let p = read_u32(&self.mem, REQ_PROD);
        let cons = self.back.req_cons();
        let base = self.base();
        let limit = self.limit();
        let rel = |x: u32| x.wrapping_sub(base);
        let over = rel(p) > rel(limit);
        let behind_all = self.seen.iter().all(|&s| rel(p) < rel(s));
        let behind_any = self.seen.iter().any(|&s| rel(p) < rel(s));
        let n = match call {
            Call::PopOne => 1,
            Call::PopBatch(n) => n,
            Call::FinalCheck | Call::Unconsumed => 0,
        };
        let must_refresh = match call {
            Call::PopOne => self.seen.iter().all(|&s| s == cons),
            Call::PopBatch(n) => self.seen.iter().all(|&s| (s.wrapping_sub(cons) as usize) < n),
            Call::FinalCheck | Call::Unconsumed => true,
        };
        let slots: Vec<Req> = (0..n as u32)
            .map(|i| self.mem.read::<Req>(self.slot_at(cons.wrapping_add(i))).expect("slot in bounds"))
            .collect();

        let mut reported = None;
        let result: Result<Vec<Req>, RingError> = match call {
            Call::PopOne => self.back.pop_request().map(|r| r.into_iter().collect()),
            Call::PopBatch(n) => {
                let mut out = vec![Req::default(); n];
                self.back.pop_requests(&mut out).map(|k| {
                    out.truncate(k);
                    out
                })
            }
            Call::FinalCheck => self.back.final_check_for_requests().map(|pending| {
                reported = Some(pending as u32);
                Vec::new()
            }),
            Call::Unconsumed => self.back.unconsumed_requests().map(|k| {
                reported = Some(k);
                Vec::new()
            }),
        };
        let new_cons = self.back.req_cons();

        match result {
            Err(e) => {
                assert!(!self.honest, "error {e:?} from an honest front end");
                assert_eq!(new_cons, cons, "requests consumed by a failing call");
                match self.latched {
                    Some(l) => assert_eq!(e, l, "a latched ring returned a different error"),
                    None => {
                        self.classify(&e, p, base, over, behind_any);
                        self.latched = Some(e);
                    }
                }
            }
            Ok(items) => {
                if let Some(l) = self.latched {
                    if STRICT_LATCH {
                        panic!("latched {l:?}, yet {call:?} succeeded");
                    }
                    assert!(!must_refresh, "latched {l:?}, yet {call:?} re-read req_prod and succeeded");
                }
                let refreshed = must_refresh
                    || match call {
                        Call::PopOne => items.is_empty(),
                        Call::PopBatch(n) => items.len() < n,
                        Call::FinalCheck | Call::Unconsumed => true,
                    };
                if refreshed {
                    assert!(!over && !behind_all, "accepted impossible req_prod {p} ({call:?}, cons {cons})");
                    self.seen.clear();
                    self.seen.push(p);
                } else if self.latched.is_none() && !over && !behind_all && !self.seen.contains(&p) {
                    self.seen.push(p);
                }
                match call {
                    Call::Unconsumed => assert_eq!(reported, Some(p.wrapping_sub(cons))),
                    Call::FinalCheck => {
                        assert_eq!(reported, Some((p != cons) as u32));
                        if p == cons {
                            assert_eq!(
                                read_u32(&self.mem, REQ_EVENT),
                                cons.wrapping_add(1),
                                "req_event not armed"
                            );
                        }
                    }
                    Call::PopOne | Call::PopBatch(_) => assert!(items.len() <= n),
                }
                assert_eq!(&items[..], &slots[..items.len()], "a request was not copied from its slot");
                assert_eq!(new_cons, cons.wrapping_add(items.len() as u32));
                assert!(rel(new_cons) <= self.size, "more requests outstanding than slots");
                self.seen.retain(|&s| s.wrapping_sub(new_cons) <= limit.wrapping_sub(new_cons));
                assert!(!self.seen.is_empty(), "consumed up to {new_cons}, past every validated req_prod");
                self.popped += items.len() as u64;
                if self.honest {
                    for got in &items {
                        assert_eq!(
                            Some(*got),
                            self.sent.pop_front(),
                            "honest traffic reordered or corrupted"
                        );
                    }
                }
            }
        }
        assert_eq!(self.back.error(), self.latched);
        if let Some(l) = self.latched {
            assert_eq!(self.back.unconsumed_requests(), Err(l), "latch forgotten");
        }
    }

    fn classify(&self, e: &RingError, p: u32, base: u32, over: bool, behind_any: bool) {
        let text = e.to_string();
        match *e {
            RingError::RequestProdOverflow { req_prod, rsp_prod_pvt, size } => {
                assert_eq!((req_prod, rsp_prod_pvt, size), (p, base, self.size), "{e:?}");
                assert!(over, "RequestProdOverflow for a req_prod within the ring: {e:?}");
                assert!(text.contains("RING_REQUEST_PROD_OVERFLOW"), "{text}");
            }
            RingError::RequestProdRewound { req_prod, seen } => {
                assert_eq!(req_prod, p, "{e:?}");
                assert!(seen.wrapping_sub(base) <= self.size, "{e:?}: seen is an index once validated");
                assert!(
                    !over && behind_any,
                    "RequestProdRewound for a req_prod that did not move back: {e:?}"
                );
                assert!(text.contains("producer indices only grow"), "{text}");
            }
            _ => panic!("unexpected error from the back end: {e:?}"),
        }
    }

    fn queue_responses(&mut self, n: usize, batch: bool) {
        let pending = self.back.req_cons().wrapping_sub(self.back.rsp_prod_pvt()) as usize;
        assert_eq!(self.back.pending_responses() as usize, pending);
        assert_eq!(self.popped - self.answered, pending as u64);
        let first = self.back.rsp_prod_pvt();
        let k = if batch {
            let rsps: Vec<Rsp> = (0..n as u32).map(rsp_for).collect();
            self.back.queue_responses(&rsps)
        } else {
            (0..n as u32).filter(|&i| self.back.queue_response(&rsp_for(i)).is_ok()).count()
        };
        assert_eq!(k, n.min(pending), "queued more responses than requests consumed");
        for i in 0..k as u32 {
            let got = self.mem.read::<Rsp>(self.slot_at(first.wrapping_add(i))).expect("slot in bounds");
            assert_eq!(got, rsp_for(i), "response not written to its slot");
        }
        self.answered += k as u64;
    }

    fn push_responses(&mut self) {
        let (old, new) = (self.rsp_pushed, self.back.rsp_prod_pvt());
        let event = read_u32(&self.mem, RSP_EVENT);
        let notify = self.back.push_responses().is_needed();
        assert_eq!(notify, old != new && xen_notify(old, new, event), "push_responses: not Xen's rule");
        if old != new {
            assert_eq!(read_u32(&self.mem, RSP_PROD), new, "rsp_prod not published from own records");
        }
        self.rsp_pushed = new;
    }

    fn step(&mut self, input: &mut Input<'_>) {
        match input.u8() % 16 {
            0 => {
                let n = input.count(self.size);
                self.front_queue(n);
            }
            1 => self.front_push(),
            2 => {
                let mut out = vec![Rsp::default(); input.count(self.size)];
                let r = self.front.pop_responses(&mut out);
                self.front_result(r);
            }
            3 => {
                let r = self.front.final_check_for_responses();
                self.front_result(r);
            }
            4 => {
                let v = self.wild(input);
                self.mem.write(REQ_PROD, &v).expect("header in bounds");
                self.honest = false;
            }
            5 => {
                let word = (input.u8() % 16) as usize;
                let v = self.wild(input);
                self.mem.write(word * 4, &v).expect("header in bounds");
                self.honest = false;
            }
            6 => {
                let off = input.u16() as usize % self.mem.len();
                let n = (input.u8() % 17) as usize;
                let bytes: Vec<u8> = (0..n).map(|_| input.u8()).collect();
                let n = n.min(self.mem.len() - off);
                self.mem.write_bytes(off, &bytes[..n]).expect("in bounds");
                self.honest = false;
            }
            7 => self.consume(Call::PopOne),
            8 => {
                let n = input.count(self.size);
                self.consume(Call::PopBatch(n));
            }
            9 => {
                let n = input.count(self.size);
                let batch = input.u8() & 1 == 1;
                self.queue_responses(n, batch);
            }
            10 => self.push_responses(),
            11 => self.consume(Call::FinalCheck),
            12 => self.consume(Call::Unconsumed),
            13 => {
                for _ in 0..input.count(self.size) {
                    self.consume(Call::PopOne);
                }
            }
            14 => {
                let n = input.count(self.size);
                self.front_queue(n);
                self.front_push();
            }
            _ => {
                let at = self.slot_at(input.u16() as u32);
                let bytes: Vec<u8> = (0..STRIDE).map(|_| input.u8()).collect();
                self.mem.write_bytes(at, &bytes).expect("slot in bounds");
                self.honest = false;
            }
        }
        assert!(self.back.pending_responses() <= self.size, "more consumed requests unanswered than slots");
        assert!(self.answered <= self.popped, "more responses than requests consumed");
        assert_eq!(self.back.rsp_prod_pvt(), self.start_plus(self.answered));
        assert_eq!(self.back.req_cons(), self.start_plus(self.popped));
    }

    fn start_plus(&self, n: u64) -> u32 {
        self.start.wrapping_add(n as u32)
    }
}

/// Runs one input. Panics (through `assert!`) on any broken invariant.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let len = REGION_LENS[input.u8() as usize % REGION_LENS.len()];
    let start = match input.u8() {
        0 => 0,
        1 => u32::MAX - input.u8() as u32,
        2 => input.u32(),
        _ => 0,
    };
    let region = HeapRegion::new(len);
    let mem = region.mem();
    let front = match FrontRing::<Req, Rsp>::new(mem.clone()) {
        Ok(f) => f,
        Err(e) => {
            assert!(len < HEADER + STRIDE, "a {len}-byte region was refused: {e}");
            assert_eq!(e, RingError::RegionTooSmall { len, entry_size: STRIDE });
            assert_eq!(BackRing::<Req, Rsp>::new(mem).err(), Some(e));
            return;
        }
    };
    let (front, back) = if start == 0 {
        (front, BackRing::new(mem.clone()).expect("region fits a ring"))
    } else {
        let event = start.wrapping_add(1);
        for (off, v) in [(REQ_PROD, start), (REQ_EVENT, event), (RSP_PROD, start), (RSP_EVENT, event)] {
            mem.write(off, &v).expect("header in bounds");
        }
        (
            FrontRing::attach(mem.clone(), start).expect("region fits a ring"),
            BackRing::attach(mem.clone(), start).expect("region fits a ring"),
        )
    };
    let size = back.size();
    assert!(size.is_power_of_two() && HEADER + size as usize * STRIDE <= len && front.size() == size);
    let mut h = Harness {
        mem,
        front,
        back,
        size,
        seen: vec![start],
        latched: None,
        rsp_pushed: start,
        popped: 0,
        answered: 0,
        honest: true,
        sent: VecDeque::new(),
        next_seq: 0,
        start,
    };
    let mut ops = 0;
    while !input.done() && ops < MAX_OPS {
        h.step(&mut input);
        ops += 1;
    }
}
