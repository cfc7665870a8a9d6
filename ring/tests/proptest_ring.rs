//! Property tests of the Xen `io/ring.h` ring ([`FrontRing`], [`BackRing`]).
//!
//! 1. `honest_pair_matches_model`: random operation sequences on an honest front/back pair
//!    over one [`HeapRegion`], checked step by step against a `VecDeque` model: payloads and
//!    their order, every count the API reports, the shared header words, and every
//!    notification decision (exactly Xen's `RING_PUSH_*_AND_CHECK_NOTIFY` arithmetic, and the
//!    protocol property "a push notifies iff the consumer armed its event since the last
//!    notification": no lost wake-up after a `final_check_*` that returned `false`, no
//!    spurious one).
//! 2. `back_ring_survives_hostile_front` / `front_ring_survives_hostile_back`: honest
//!    operations of one end interleaved with raw writes of random bytes anywhere in the shared
//!    region and wild index values, against the checked end. Nothing may panic or loop, every
//!    copied entry comes from the right slot, the consumer never runs past a producer index
//!    it could have validated, an error is raised exactly when the index read is impossible,
//!    names the broken rule with the values read, and is latched.
//! 3. `fuzz_harness_on_random_bytes`: the byte-driven harness of the `xen_back_ring` fuzz
//!    target (`fuzz/common/xen_back_ring.rs`) on random inputs.
//!
//! Ring sizes: small regions of `64 + n * 12` bytes (rings of 1 to 16 entries), one, two and
//! four pages; private indices start at 0 or near `u32::MAX` so that they wrap during a run.
//!
//! 256 cases each (a few seconds in the test profile); under miri 4 cases of at most 24
//! operations, run as CI does: `MIRIFLAGS=-Zmiri-disable-weak-memory-emulation cargo +nightly
//! miri test -p pvio-ring --test proptest_ring` (with weak-memory emulation on, miri aborts on
//! the mixed-size atomic accesses that byte-granular hostile writes make, see
//! `scripts/test-all.sh`).

use std::collections::VecDeque;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use pvio_ring::xen::netif::{NetifTxRequest, NetifTxResponse};
use pvio_ring::{BackRing, FrontRing, Full, HeapRegion, RingError, SharedMem};

#[path = "../../fuzz/common/bytes.rs"]
mod bytes;
#[path = "../../fuzz/common/xen_back_ring.rs"]
mod xen_back_ring;

type Req = NetifTxRequest;
type Rsp = NetifTxResponse;
type Front<'a> = FrontRing<'a, Req, Rsp>;
type Back<'a> = BackRing<'a, Req, Rsp>;

const HEADER: usize = 64;
/// `sizeof(union netif_tx_sring_entry)`.
const STRIDE: usize = 12;
const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;

/// The documented latch contract (`RingError`): after an impossible index, "every later
/// consuming call returns the same error" and "nothing is read from the entries" — not even
/// entries validated before the error (`latched_back_ring_stops_serving`). With `false` the
/// checks would only require every error returned to be the latched one and every entry
/// served to lie below a producer index validated before the error.
const STRICT_LATCH: bool = true;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        // Miri runs isolated from the file system: no regression files there.
        failure_persistence: if cfg!(miri) { None } else { ProptestConfig::default().failure_persistence },
        ..ProptestConfig::default()
    }
}

fn max_ops() -> usize {
    if cfg!(miri) {
        24
    } else {
        96
    }
}

// ---------------------------------------------------------------------------------------
// Geometry and helpers

/// Region lengths: small rings (1..=16 entries, including lengths that are not a power of
/// two of entries) and rings of 1, 2 and 4 pages.
fn region_len() -> impl Strategy<Value = usize> {
    let pages = if cfg!(miri) { vec![4096] } else { vec![4096, 8192, 4 * 4096] };
    prop_oneof![
        3 => (1usize..=17).prop_map(|n| HEADER + n * STRIDE),
        1 => (1usize..=17).prop_map(|n| HEADER + n * STRIDE + STRIDE - 1),
        2 => proptest::sample::select(pages),
    ]
}

/// Where the private indices start: 0 (a fresh ring), just below the 32-bit wrap, anywhere.
fn start_index() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), (0u32..48).prop_map(|d| u32::MAX - d), any::<u32>()]
}

/// A count relative to the ring size, resolved once the size is known.
#[derive(Debug, Clone, Copy)]
enum Count {
    Small(u8),
    NearSize(i8),
    Any(u16),
}

impl Count {
    fn resolve(self, size: u32) -> usize {
        match self {
            Count::Small(n) => n as usize,
            Count::NearSize(d) => (size as i64 + d as i64).max(0) as usize,
            Count::Any(x) => x as usize % (size as usize + 3),
        }
    }
}

fn count() -> impl Strategy<Value = Count> {
    prop_oneof![
        6 => (0u8..4).prop_map(Count::Small),
        1 => (-1i8..=1).prop_map(Count::NearSize),
        2 => any::<u16>().prop_map(Count::Any),
    ]
}

/// Initializes a ring in `mem` (`FrontRing::new`) and opens both ends with every index at
/// `start`: for `start != 0` the header is set as a live ring's would be after `start`
/// requests, and both ends attach there.
fn ends<'a>(mem: &SharedMem<'a>, start: u32) -> (Front<'a>, Back<'a>) {
    let front = Front::new(mem.clone()).unwrap();
    if start == 0 {
        return (front, Back::new(mem.clone()).unwrap());
    }
    let event = start.wrapping_add(1);
    for (off, v) in [(REQ_PROD, start), (REQ_EVENT, event), (RSP_PROD, start), (RSP_EVENT, event)] {
        mem.write(off, &v).unwrap();
    }
    (Front::attach(mem.clone(), start).unwrap(), Back::attach(mem.clone(), start).unwrap())
}

fn slot(size: u32, idx: u32) -> usize {
    HEADER + (idx & (size - 1)) as usize * STRIDE
}

fn read_u32(mem: &SharedMem<'_>, off: usize) -> u32 {
    mem.read::<u32>(off).unwrap()
}

/// A distinct request for each sequence number.
fn mk_req(seq: u32, salt: u32) -> Req {
    Req {
        gref: (seq ^ salt).into(),
        offset: (seq.wrapping_mul(7) as u16).into(),
        flags: ((salt >> 3) as u16 & 0xf).into(),
        id: (seq as u16).into(),
        size: ((seq >> 16) as u16 ^ salt as u16).into(),
    }
}

fn answer(req: &Req) -> Rsp {
    Rsp { id: req.id, status: ((req.gref.get() % 5) as i16 - 2).into() }
}

/// `RING_PUSH_*_AND_CHECK_NOTIFY`: notify iff the event lies in `(old, new]`.
fn xen_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

// ---------------------------------------------------------------------------------------
// 1. Honest pair against a model

#[derive(Debug, Clone)]
enum HonestOp {
    QueueRequests { n: Count, batch: bool },
    PushRequests,
    PopRequests { n: Count, batch: bool },
    QueueResponses { n: Count, batch: bool },
    PushResponses,
    PopResponses { n: Count, batch: bool },
    FinalCheckRequests,
    FinalCheckResponses,
    Peek,
}

fn honest_op() -> impl Strategy<Value = HonestOp> {
    prop_oneof![
        3 => (count(), any::<bool>()).prop_map(|(n, batch)| HonestOp::QueueRequests { n, batch }),
        2 => Just(HonestOp::PushRequests),
        3 => (count(), any::<bool>()).prop_map(|(n, batch)| HonestOp::PopRequests { n, batch }),
        3 => (count(), any::<bool>()).prop_map(|(n, batch)| HonestOp::QueueResponses { n, batch }),
        2 => Just(HonestOp::PushResponses),
        3 => (count(), any::<bool>()).prop_map(|(n, batch)| HonestOp::PopResponses { n, batch }),
        1 => Just(HonestOp::FinalCheckRequests),
        1 => Just(HonestOp::FinalCheckResponses),
        1 => Just(HonestOp::Peek),
    ]
}

/// What both ends must agree on, kept by the test.
#[derive(Debug, Default)]
struct Model {
    size: u32,
    salt: u32,
    next_seq: u32,
    /// Queued by the front end, not yet pushed.
    queued: VecDeque<Req>,
    /// Pushed, not yet popped by the back end.
    published: VecDeque<Req>,
    /// Popped by the back end, not yet answered.
    unanswered: VecDeque<Req>,
    /// Responses queued by the back end, not yet pushed.
    rsp_queued: VecDeque<Rsp>,
    /// Responses pushed, not yet popped by the front end.
    rsp_published: VecDeque<Rsp>,
    req_prod_pvt: u32,
    req_prod_pushed: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
    rsp_prod_pushed: u32,
    rsp_cons: u32,
    req_event: u32,
    rsp_event: u32,
    /// The back end armed `req_event` and has not been notified since.
    back_armed: bool,
    /// The front end armed `rsp_event` and has not been notified since.
    front_armed: bool,
}

impl Model {
    fn in_flight(&self) -> usize {
        self.queued.len()
            + self.published.len()
            + self.unanswered.len()
            + self.rsp_queued.len()
            + self.rsp_published.len()
    }

    fn free(&self) -> usize {
        self.size as usize - self.in_flight()
    }

    fn new_req(&mut self) -> Req {
        let r = mk_req(self.next_seq, self.salt);
        self.next_seq = self.next_seq.wrapping_add(1);
        r
    }

    fn check(&self, mem: &SharedMem<'_>, f: &Front<'_>, b: &Back<'_>) -> Result<(), TestCaseError> {
        prop_assert!(self.in_flight() <= self.size as usize);
        prop_assert_eq!(f.free_requests() as usize, self.free());
        prop_assert_eq!(f.in_flight() as usize, self.in_flight());
        prop_assert_eq!(f.is_full(), self.free() == 0);
        prop_assert_eq!(f.req_prod_pvt(), self.req_prod_pvt);
        prop_assert_eq!(f.rsp_cons(), self.rsp_cons);
        prop_assert_eq!(b.req_cons(), self.req_cons);
        prop_assert_eq!(b.rsp_prod_pvt(), self.rsp_prod_pvt);
        prop_assert_eq!(b.pending_responses() as usize, self.unanswered.len());
        prop_assert_eq!(b.error(), None);
        prop_assert_eq!(read_u32(mem, REQ_PROD), self.req_prod_pushed);
        prop_assert_eq!(read_u32(mem, RSP_PROD), self.rsp_prod_pushed);
        prop_assert_eq!(read_u32(mem, REQ_EVENT), self.req_event);
        prop_assert_eq!(read_u32(mem, RSP_EVENT), self.rsp_event);
        // Index identities of the protocol.
        prop_assert_eq!(self.req_prod_pvt.wrapping_sub(self.req_prod_pushed) as usize, self.queued.len());
        prop_assert_eq!(self.req_prod_pushed.wrapping_sub(self.req_cons) as usize, self.published.len());
        prop_assert_eq!(self.rsp_prod_pvt.wrapping_sub(self.rsp_prod_pushed) as usize, self.rsp_queued.len());
        prop_assert_eq!(self.rsp_prod_pushed.wrapping_sub(self.rsp_cons) as usize, self.rsp_published.len());
        Ok(())
    }
}

fn queue_requests(m: &mut Model, f: &mut Front<'_>, n: usize, batch: bool) -> Result<(), TestCaseError> {
    if batch {
        let reqs: Vec<Req> = (0..n).map(|_| m.new_req()).collect();
        let k = f.queue_requests(&reqs);
        prop_assert_eq!(k, n.min(m.free()));
        m.queued.extend(&reqs[..k]);
        m.req_prod_pvt = m.req_prod_pvt.wrapping_add(k as u32);
    } else {
        for _ in 0..n {
            let r = m.new_req();
            match f.queue_request(&r) {
                Ok(()) => {
                    prop_assert!(m.free() > 0, "queued into a full ring");
                    m.queued.push_back(r);
                    m.req_prod_pvt = m.req_prod_pvt.wrapping_add(1);
                }
                Err(Full(back)) => {
                    prop_assert_eq!(m.free(), 0, "refused with free slots");
                    prop_assert_eq!(back, r, "handed back a different request");
                }
            }
        }
    }
    Ok(())
}

fn push_requests(m: &mut Model, f: &mut Front<'_>) -> Result<(), TestCaseError> {
    let (old, new) = (m.req_prod_pushed, m.req_prod_pvt);
    let notify = f.push_requests().is_needed();
    if old == new {
        prop_assert!(!notify, "notified for an empty push");
        return Ok(());
    }
    prop_assert_eq!(notify, xen_notify(old, new, m.req_event), "push_requests: not Xen's rule");
    prop_assert_eq!(notify, m.back_armed, "push_requests: lost or spurious notification");
    if notify {
        m.back_armed = false;
    }
    m.published.extend(m.queued.drain(..));
    m.req_prod_pushed = new;
    Ok(())
}

fn pop_requests(m: &mut Model, b: &mut Back<'_>, n: usize, batch: bool) -> Result<(), TestCaseError> {
    if batch {
        let mut out = vec![Req::default(); n];
        let k = b.pop_requests(&mut out).unwrap();
        prop_assert_eq!(k, n.min(m.published.len()));
        for got in &out[..k] {
            let want = m.published.pop_front().unwrap();
            prop_assert_eq!(*got, want);
            m.unanswered.push_back(want);
        }
        m.req_cons = m.req_cons.wrapping_add(k as u32);
    } else {
        for _ in 0..n {
            match b.pop_request().unwrap() {
                Some(got) => {
                    let want = m.published.pop_front();
                    prop_assert_eq!(Some(got), want, "popped a request that was not published next");
                    m.unanswered.push_back(got);
                    m.req_cons = m.req_cons.wrapping_add(1);
                }
                None => prop_assert!(m.published.is_empty(), "missed a published request"),
            }
        }
    }
    Ok(())
}

fn queue_responses(m: &mut Model, b: &mut Back<'_>, n: usize, batch: bool) -> Result<(), TestCaseError> {
    let filler = Rsp { id: 0xdead.into(), status: 1.into() };
    if batch {
        let rsps: Vec<Rsp> = (0..n).map(|i| m.unanswered.get(i).map_or(filler, answer)).collect();
        let k = b.queue_responses(&rsps);
        prop_assert_eq!(k, n.min(m.unanswered.len()));
        m.unanswered.drain(..k);
        m.rsp_queued.extend(&rsps[..k]);
        m.rsp_prod_pvt = m.rsp_prod_pvt.wrapping_add(k as u32);
    } else {
        for _ in 0..n {
            match m.unanswered.front().map(answer) {
                Some(rsp) => {
                    prop_assert!(b.queue_response(&rsp).is_ok());
                    m.unanswered.pop_front();
                    m.rsp_queued.push_back(rsp);
                    m.rsp_prod_pvt = m.rsp_prod_pvt.wrapping_add(1);
                }
                None => prop_assert_eq!(b.queue_response(&filler), Err(Full(filler))),
            }
        }
    }
    Ok(())
}

fn push_responses(m: &mut Model, b: &mut Back<'_>) -> Result<(), TestCaseError> {
    let (old, new) = (m.rsp_prod_pushed, m.rsp_prod_pvt);
    let notify = b.push_responses().is_needed();
    if old == new {
        prop_assert!(!notify, "notified for an empty push");
        return Ok(());
    }
    prop_assert_eq!(notify, xen_notify(old, new, m.rsp_event), "push_responses: not Xen's rule");
    prop_assert_eq!(notify, m.front_armed, "push_responses: lost or spurious notification");
    if notify {
        m.front_armed = false;
    }
    m.rsp_published.extend(m.rsp_queued.drain(..));
    m.rsp_prod_pushed = new;
    Ok(())
}

fn pop_responses(m: &mut Model, f: &mut Front<'_>, n: usize, batch: bool) -> Result<(), TestCaseError> {
    if batch {
        let mut out = vec![Rsp::default(); n];
        let k = f.pop_responses(&mut out).unwrap();
        prop_assert_eq!(k, n.min(m.rsp_published.len()));
        for got in &out[..k] {
            prop_assert_eq!(Some(*got), m.rsp_published.pop_front());
        }
        m.rsp_cons = m.rsp_cons.wrapping_add(k as u32);
    } else {
        for _ in 0..n {
            match f.pop_response().unwrap() {
                Some(got) => {
                    prop_assert_eq!(Some(got), m.rsp_published.pop_front());
                    m.rsp_cons = m.rsp_cons.wrapping_add(1);
                }
                None => prop_assert!(m.rsp_published.is_empty(), "missed a published response"),
            }
        }
    }
    Ok(())
}

fn run_honest(len: usize, start: u32, salt: u32, ops: &[HonestOp]) -> Result<(), TestCaseError> {
    let region = HeapRegion::new(len);
    let mem = region.mem();
    let (mut f, mut b) = ends(&mem, start);
    let size = f.size();
    prop_assert_eq!(size, b.size());
    prop_assert!(size.is_power_of_two());
    prop_assert!(HEADER + size as usize * STRIDE <= len && HEADER + 2 * size as usize * STRIDE > len);
    let mut m = Model {
        size,
        salt,
        req_prod_pvt: start,
        req_prod_pushed: start,
        req_cons: start,
        rsp_prod_pvt: start,
        rsp_prod_pushed: start,
        rsp_cons: start,
        req_event: start.wrapping_add(1),
        rsp_event: start.wrapping_add(1),
        back_armed: true,
        front_armed: true,
        ..Model::default()
    };
    m.check(&mem, &f, &b)?;
    for op in ops {
        match *op {
            HonestOp::QueueRequests { n, batch } => queue_requests(&mut m, &mut f, n.resolve(size), batch)?,
            HonestOp::PushRequests => push_requests(&mut m, &mut f)?,
            HonestOp::PopRequests { n, batch } => pop_requests(&mut m, &mut b, n.resolve(size), batch)?,
            HonestOp::QueueResponses { n, batch } => queue_responses(&mut m, &mut b, n.resolve(size), batch)?,
            HonestOp::PushResponses => push_responses(&mut m, &mut b)?,
            HonestOp::PopResponses { n, batch } => pop_responses(&mut m, &mut f, n.resolve(size), batch)?,
            HonestOp::FinalCheckRequests => {
                let pending = b.final_check_for_requests().unwrap();
                prop_assert_eq!(pending, !m.published.is_empty());
                if !pending {
                    m.req_event = m.req_cons.wrapping_add(1);
                    m.back_armed = true;
                }
            }
            HonestOp::FinalCheckResponses => {
                let pending = f.final_check_for_responses().unwrap();
                prop_assert_eq!(pending, !m.rsp_published.is_empty());
                if !pending {
                    m.rsp_event = m.rsp_cons.wrapping_add(1);
                    m.front_armed = true;
                }
            }
            HonestOp::Peek => {
                prop_assert_eq!(b.unconsumed_requests().unwrap() as usize, m.published.len());
                prop_assert_eq!(f.unconsumed_responses().unwrap() as usize, m.rsp_published.len());
            }
        }
        m.check(&mem, &f, &b)?;
    }
    // Drain: everything in flight comes back, in order, and the ring is empty again.
    push_requests(&mut m, &mut f)?;
    let n = m.published.len();
    pop_requests(&mut m, &mut b, n, true)?;
    let n = m.unanswered.len();
    queue_responses(&mut m, &mut b, n, false)?;
    push_responses(&mut m, &mut b)?;
    let n = m.rsp_published.len() + 1;
    pop_responses(&mut m, &mut f, n, false)?;
    m.check(&mem, &f, &b)?;
    prop_assert_eq!(f.free_requests(), size);
    prop_assert!(!b.final_check_for_requests().unwrap());
    prop_assert!(!f.final_check_for_responses().unwrap());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn honest_pair_matches_model(
        len in region_len(),
        start in start_index(),
        salt in any::<u32>(),
        ops in proptest::collection::vec(honest_op(), 0..max_ops()),
    ) {
        run_honest(len, start, salt, &ops)?;
    }
}

// ---------------------------------------------------------------------------------------
// 2. Hostile peers

/// The values a consumer may hold as its last validated producer index, as far as can be
/// told from outside. The true one is always among them.
#[derive(Debug)]
struct Seen(Vec<u32>);

impl Seen {
    /// `p` is behind some candidate, counting from `base`: it may be a rewind.
    fn behind_any(&self, p: u32, base: u32) -> bool {
        self.0.iter().any(|&s| p.wrapping_sub(base) < s.wrapping_sub(base))
    }
    /// `p` is behind every candidate: it certainly is a rewind.
    fn behind_all(&self, p: u32, base: u32) -> bool {
        self.0.iter().all(|&s| p.wrapping_sub(base) < s.wrapping_sub(base))
    }
    /// Every candidate is fewer than `n` ahead of `cons`.
    fn all_below(&self, cons: u32, n: usize) -> bool {
        self.0.iter().all(|&s| (s.wrapping_sub(cons) as usize) < n)
    }
    fn set(&mut self, p: u32) {
        self.0.clear();
        self.0.push(p);
    }
    fn add(&mut self, p: u32) {
        if !self.0.contains(&p) {
            self.0.push(p);
        }
    }
    /// Drops candidates outside `cons..=hi`: the consumer never runs ahead of its index.
    fn keep_within(&mut self, cons: u32, hi: u32) {
        self.0.retain(|&s| s.wrapping_sub(cons) <= hi.wrapping_sub(cons));
    }
}

/// A value for an index word, wild or plausible.
#[derive(Debug, Clone, Copy)]
enum Wild {
    Abs(u32),
    /// Relative to the consumer's private index.
    FromCons(i16),
    /// Relative to the largest value the consumer may accept.
    FromLimit(i16),
    /// Relative to the honest producer's private index.
    FromProducer(i16),
}

fn wild() -> impl Strategy<Value = Wild> {
    prop_oneof![
        1 => any::<u32>().prop_map(Wild::Abs),
        2 => (-3i16..=20).prop_map(Wild::FromCons),
        2 => (-3i16..=3).prop_map(Wild::FromLimit),
        3 => (-4i16..=4).prop_map(Wild::FromProducer),
        1 => any::<i16>().prop_map(Wild::FromCons),
    ]
}

impl Wild {
    fn value(self, cons: u32, limit: u32, producer: u32) -> u32 {
        match self {
            Wild::Abs(v) => v,
            Wild::FromCons(d) => cons.wrapping_add(d as i32 as u32),
            Wild::FromLimit(d) => limit.wrapping_add(d as i32 as u32),
            Wild::FromProducer(d) => producer.wrapping_add(d as i32 as u32),
        }
    }
}

/// A raw write by the hostile peer.
#[derive(Debug, Clone)]
enum Scribble {
    /// The producer index the checked end consumes.
    Prod(Wild),
    /// Any of the 16 header words (the four indices, `pvt`, padding).
    HeaderWord { word: u8, value: Wild },
    /// Random bytes anywhere in the region (offset taken modulo its length).
    Bytes { at: u32, bytes: Vec<u8> },
}

fn scribble() -> impl Strategy<Value = Scribble> {
    prop_oneof![
        3 => wild().prop_map(Scribble::Prod),
        1 => (0u8..16, wild()).prop_map(|(word, value)| Scribble::HeaderWord { word, value }),
        2 => (any::<u32>(), proptest::collection::vec(any::<u8>(), 1..=16))
            .prop_map(|(at, bytes)| Scribble::Bytes { at, bytes }),
        1 => (0u32..64, proptest::collection::vec(any::<u8>(), 1..=16))
            .prop_map(|(at, bytes)| Scribble::Bytes { at, bytes }),
    ]
}

impl Scribble {
    fn apply(&self, mem: &SharedMem<'_>, prod_off: usize, cons: u32, limit: u32, producer: u32) {
        match self {
            Scribble::Prod(w) => mem.write(prod_off, &w.value(cons, limit, producer)).unwrap(),
            Scribble::HeaderWord { word, value } => {
                mem.write(*word as usize * 4, &value.value(cons, limit, producer)).unwrap()
            }
            Scribble::Bytes { at, bytes } => {
                let off = *at as usize % mem.len();
                let n = bytes.len().min(mem.len() - off);
                mem.write_bytes(off, &bytes[..n]).unwrap();
            }
        }
    }
}

/// A call that consumes the peer's producer index.
#[derive(Debug, Clone, Copy)]
enum Consume {
    PopOne,
    PopBatch(Count),
    FinalCheck,
    Unconsumed,
}

fn consume() -> impl Strategy<Value = Consume> {
    prop_oneof![
        3 => Just(Consume::PopOne),
        3 => count().prop_map(Consume::PopBatch),
        1 => Just(Consume::FinalCheck),
        1 => Just(Consume::Unconsumed),
    ]
}

/// A consuming call and what it returned, reduced to what the checker needs.
struct Consumed<T> {
    /// How many entries the call asked for (1 for `PopOne`, 0 for the others).
    n: usize,
    /// The contents of the `n` slots from the consumer's index on, copied before the call.
    slots: Vec<T>,
    result: Result<Vec<T>, RingError>,
    /// For `FinalCheck` / `Unconsumed`: the boolean / count returned.
    reported: Option<u32>,
}

/// State of the checks on one consuming end, shared by both directions.
struct Checker {
    seen: Seen,
    latched: Option<RingError>,
}

/// What the checker knows about a consuming call before making it.
struct Before {
    /// The producer index in shared memory (what the consumer will read, if it reads).
    p: u32,
    /// The consumer's private index.
    cons: u32,
    /// Base from which indices are compared (`rsp_prod_pvt` at the back end, `rsp_cons` at
    /// the front end).
    base: u32,
    /// The largest producer index the consumer may accept.
    limit: u32,
}

impl Checker {
    fn new(start: u32) -> Self {
        Checker { seen: Seen(vec![start]), latched: None }
    }

    /// Checks one consuming call. `new_cons` is the consumer's index after the call;
    /// `classify` checks the first error against the rule it must name.
    fn check<T: PartialEq + std::fmt::Debug>(
        &mut self,
        call: Consume,
        before: &Before,
        out: Consumed<T>,
        new_cons: u32,
        classify: impl FnOnce(&RingError, bool, bool) -> Result<(), TestCaseError>,
    ) -> Result<(), TestCaseError> {
        let Before { p, cons, base, limit } = *before;
        let Consumed { n, slots, result, reported } = out;
        let over = p.wrapping_sub(base) > limit.wrapping_sub(base);
        let certainly_bad = over || self.seen.behind_all(p, base);
        let maybe_rewound = !over && self.seen.behind_any(p, base);
        let must_refresh = match call {
            Consume::PopOne => self.seen.all_below(cons, 1),
            Consume::PopBatch(_) => self.seen.all_below(cons, n),
            Consume::FinalCheck | Consume::Unconsumed => true,
        };
        match result {
            Err(e) => {
                prop_assert_eq!(new_cons, cons, "consumed entries on error");
                if let Some(l) = self.latched {
                    prop_assert_eq!(e, l, "a latched ring returned a different error");
                } else {
                    classify(&e, over, maybe_rewound)?;
                    self.latched = Some(e);
                }
            }
            Ok(items) => {
                if let Some(l) = self.latched {
                    if STRICT_LATCH {
                        prop_assert!(false, "latched {:?} but {:?} succeeded", l, call);
                    }
                    prop_assert!(
                        !must_refresh,
                        "latched {:?} but {:?} read the index again and succeeded",
                        l,
                        call
                    );
                }
                let refreshed = must_refresh
                    || match call {
                        Consume::PopOne => items.is_empty(),
                        Consume::PopBatch(_) => items.len() < n,
                        _ => true,
                    };
                if refreshed {
                    prop_assert!(
                        !certainly_bad,
                        "accepted impossible index {} ({:?}, cons {})",
                        p,
                        call,
                        cons
                    );
                    self.seen.set(p);
                } else if self.latched.is_none() && !certainly_bad {
                    self.seen.add(p);
                }
                match call {
                    Consume::Unconsumed => prop_assert_eq!(reported, Some(p.wrapping_sub(cons))),
                    Consume::FinalCheck => prop_assert_eq!(reported, Some((p != cons) as u32)),
                    Consume::PopOne => prop_assert!(items.len() <= 1),
                    Consume::PopBatch(_) => prop_assert!(items.len() <= n),
                }
                // Every entry is copied from its own slot.
                prop_assert_eq!(&items[..], &slots[..items.len()]);
                prop_assert_eq!(new_cons, cons.wrapping_add(items.len() as u32));
                prop_assert!(
                    new_cons.wrapping_sub(base) <= limit.wrapping_sub(base),
                    "consumer index {} ran past the limit {}",
                    new_cons,
                    limit
                );
                // The consumer never runs ahead of a producer index it could have validated.
                self.seen.keep_within(new_cons, limit);
                prop_assert!(
                    !self.seen.0.is_empty(),
                    "consumed up to {} past every validated index",
                    new_cons
                );
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum HostileFrontOp {
    /// Honest front-end traffic (its own errors are the hostile side's business).
    FrontQueue(Count),
    FrontPush,
    FrontPop(Count),
    FrontFinalCheck,
    Scribble(Scribble),
    Consume(Consume),
    QueueResponses {
        n: Count,
        batch: bool,
    },
    PushResponses,
}

fn hostile_front_op() -> impl Strategy<Value = HostileFrontOp> {
    prop_oneof![
        3 => count().prop_map(HostileFrontOp::FrontQueue),
        2 => Just(HostileFrontOp::FrontPush),
        2 => count().prop_map(HostileFrontOp::FrontPop),
        1 => Just(HostileFrontOp::FrontFinalCheck),
        2 => scribble().prop_map(HostileFrontOp::Scribble),
        5 => consume().prop_map(HostileFrontOp::Consume),
        3 => (count(), any::<bool>()).prop_map(|(n, batch)| HostileFrontOp::QueueResponses { n, batch }),
        2 => Just(HostileFrontOp::PushResponses),
    ]
}

fn classify_back(
    e: &RingError,
    before: &Before,
    size: u32,
    over: bool,
    maybe_rewound: bool,
) -> Result<(), TestCaseError> {
    let text = e.to_string();
    match *e {
        RingError::RequestProdOverflow { req_prod, rsp_prod_pvt, size: s } => {
            prop_assert_eq!((req_prod, rsp_prod_pvt, s), (before.p, before.base, size));
            prop_assert!(over, "RequestProdOverflow for an index within the ring: {:?}", e);
            prop_assert!(text.contains("RING_REQUEST_PROD_OVERFLOW"), "{}", text);
        }
        RingError::RequestProdRewound { req_prod, seen } => {
            prop_assert_eq!(req_prod, before.p);
            // `seen` is an index validated earlier, so it lies within the ring's window.
            prop_assert!(seen.wrapping_sub(before.base) <= before.limit.wrapping_sub(before.base), "{:?}", e);
            prop_assert!(maybe_rewound, "RequestProdRewound for an index that did not move back: {:?}", e);
            prop_assert!(text.contains("producer indices only grow"), "{}", text);
        }
        _ => prop_assert!(false, "unexpected error from the back end: {:?}", e),
    }
    Ok(())
}

fn run_hostile_front(len: usize, start: u32, salt: u32, ops: &[HostileFrontOp]) -> Result<(), TestCaseError> {
    let region = HeapRegion::new(len);
    let mem = region.mem();
    let (mut f, mut b) = ends(&mem, start);
    let size = b.size();
    let mut seq = 0u32;
    let mut checker = Checker::new(start);
    let mut rsp_pushed = start;
    for op in ops {
        match op {
            HostileFrontOp::FrontQueue(n) => {
                let reqs: Vec<Req> =
                    (0..n.resolve(size)).map(|i| mk_req(seq.wrapping_add(i as u32), salt)).collect();
                seq = seq.wrapping_add(reqs.len() as u32);
                let _ = f.queue_requests(&reqs);
            }
            HostileFrontOp::FrontPush => {
                let _ = f.push_requests();
            }
            HostileFrontOp::FrontPop(n) => {
                let mut out = vec![Rsp::default(); n.resolve(size)];
                let _ = f.pop_responses(&mut out);
            }
            HostileFrontOp::FrontFinalCheck => {
                let _ = f.final_check_for_responses();
            }
            HostileFrontOp::Scribble(s) => {
                let limit = b.rsp_prod_pvt().wrapping_add(size);
                s.apply(&mem, REQ_PROD, b.req_cons(), limit, f.req_prod_pvt());
            }
            HostileFrontOp::Consume(call) => {
                let call = *call;
                let before = Before {
                    p: read_u32(&mem, REQ_PROD),
                    cons: b.req_cons(),
                    base: b.rsp_prod_pvt(),
                    limit: b.rsp_prod_pvt().wrapping_add(size),
                };
                let n = match call {
                    Consume::PopOne => 1,
                    Consume::PopBatch(c) => c.resolve(size),
                    _ => 0,
                };
                let slots: Vec<Req> = (0..n as u32)
                    .map(|i| mem.read::<Req>(slot(size, before.cons.wrapping_add(i))).unwrap())
                    .collect();
                let out = match call {
                    Consume::PopOne => Consumed {
                        n,
                        slots,
                        result: b.pop_request().map(|r| r.into_iter().collect()),
                        reported: None,
                    },
                    Consume::PopBatch(_) => {
                        let mut buf = vec![Req::default(); n];
                        let result = b.pop_requests(&mut buf).map(|k| buf[..k].to_vec());
                        Consumed { n, slots, result, reported: None }
                    }
                    Consume::FinalCheck => {
                        let r = b.final_check_for_requests();
                        Consumed {
                            n,
                            slots,
                            reported: r.as_ref().ok().map(|&x| x as u32),
                            result: r.map(|_| Vec::new()),
                        }
                    }
                    Consume::Unconsumed => {
                        let r = b.unconsumed_requests();
                        Consumed {
                            n,
                            slots,
                            reported: r.as_ref().ok().copied(),
                            result: r.map(|_| Vec::new()),
                        }
                    }
                };
                if let Consume::FinalCheck = call {
                    if out.reported == Some(0) {
                        prop_assert_eq!(
                            read_u32(&mem, REQ_EVENT),
                            b.req_cons().wrapping_add(1),
                            "req_event not armed"
                        );
                    }
                }
                let latched_before = checker.latched;
                checker.check(call, &before, out, b.req_cons(), |e, over, rew| {
                    classify_back(e, &before, size, over, rew)
                })?;
                prop_assert_eq!(b.error(), checker.latched);
                if let Some(l) = latched_before {
                    // Calls that always read the index report the latched error.
                    prop_assert_eq!(b.unconsumed_requests(), Err(l));
                }
            }
            HostileFrontOp::QueueResponses { n, batch } => {
                let n = n.resolve(size);
                let pending = b.req_cons().wrapping_sub(b.rsp_prod_pvt()) as usize;
                prop_assert_eq!(b.pending_responses() as usize, pending);
                let rsp = |i: usize| Rsp { id: (i as u16).into(), status: 0.into() };
                let first = b.rsp_prod_pvt();
                let k = if *batch {
                    let rsps: Vec<Rsp> = (0..n).map(rsp).collect();
                    b.queue_responses(&rsps)
                } else {
                    (0..n).filter(|&i| b.queue_response(&rsp(i)).is_ok()).count()
                };
                prop_assert_eq!(k, n.min(pending), "queued more responses than requests consumed");
                for i in 0..k {
                    let at = slot(size, first.wrapping_add(i as u32));
                    prop_assert_eq!(mem.read::<Rsp>(at).unwrap(), rsp(i));
                }
            }
            HostileFrontOp::PushResponses => {
                let (old, new) = (rsp_pushed, b.rsp_prod_pvt());
                let event = read_u32(&mem, RSP_EVENT);
                let notify = b.push_responses().is_needed();
                prop_assert_eq!(notify, old != new && xen_notify(old, new, event));
                if old != new {
                    prop_assert_eq!(read_u32(&mem, RSP_PROD), new, "rsp_prod not taken from own records");
                }
                rsp_pushed = new;
            }
        }
        // The back end never holds more consumed-but-unanswered requests than slots.
        prop_assert!(b.pending_responses() <= size);
        prop_assert_eq!(b.error(), checker.latched);
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum HostileBackOp {
    /// Honest back-end traffic.
    BackPop(Count),
    BackRespond(Count),
    BackPush,
    BackFinalCheck,
    Scribble(Scribble),
    Consume(Consume),
    Queue {
        n: Count,
        batch: bool,
    },
    Push,
}

fn hostile_back_op() -> impl Strategy<Value = HostileBackOp> {
    prop_oneof![
        2 => count().prop_map(HostileBackOp::BackPop),
        2 => count().prop_map(HostileBackOp::BackRespond),
        2 => Just(HostileBackOp::BackPush),
        1 => Just(HostileBackOp::BackFinalCheck),
        2 => scribble().prop_map(HostileBackOp::Scribble),
        5 => consume().prop_map(HostileBackOp::Consume),
        3 => (count(), any::<bool>()).prop_map(|(n, batch)| HostileBackOp::Queue { n, batch }),
        2 => Just(HostileBackOp::Push),
    ]
}

fn classify_front(
    e: &RingError,
    before: &Before,
    over: bool,
    maybe_rewound: bool,
) -> Result<(), TestCaseError> {
    let text = e.to_string();
    match *e {
        RingError::ResponseProdOverflow { rsp_prod, req_prod, rsp_cons } => {
            prop_assert_eq!((rsp_prod, req_prod, rsp_cons), (before.p, before.limit, before.cons));
            prop_assert!(over, "ResponseProdOverflow for an index within the requests pushed: {:?}", e);
            prop_assert!(text.contains("RING_RESPONSE_PROD_OVERFLOW"), "{}", text);
        }
        RingError::ResponseProdRewound { rsp_prod, seen } => {
            prop_assert_eq!(rsp_prod, before.p);
            // `seen` is a value validated earlier: ahead of the index now read.
            prop_assert!(seen.wrapping_sub(before.base) > rsp_prod.wrapping_sub(before.base), "{:?}", e);
            prop_assert!(maybe_rewound, "ResponseProdRewound for an index that did not move back: {:?}", e);
            prop_assert!(text.contains("producer indices only grow"), "{}", text);
        }
        _ => prop_assert!(false, "unexpected error from the front end: {:?}", e),
    }
    Ok(())
}

fn run_hostile_back(len: usize, start: u32, salt: u32, ops: &[HostileBackOp]) -> Result<(), TestCaseError> {
    let region = HeapRegion::new(len);
    let mem = region.mem();
    let (mut f, mut b) = ends(&mem, start);
    let size = f.size();
    let mut seq = 0u32;
    let mut checker = Checker::new(start);
    let mut req_pushed = start;
    for op in ops {
        match op {
            HostileBackOp::BackPop(n) => {
                let mut out = vec![Req::default(); n.resolve(size)];
                let _ = b.pop_requests(&mut out);
            }
            HostileBackOp::BackRespond(n) => {
                let rsps = vec![Rsp { id: 7.into(), status: 0.into() }; n.resolve(size)];
                let _ = b.queue_responses(&rsps);
            }
            HostileBackOp::BackPush => {
                let _ = b.push_responses();
            }
            HostileBackOp::BackFinalCheck => {
                let _ = b.final_check_for_requests();
            }
            HostileBackOp::Scribble(s) => {
                s.apply(&mem, RSP_PROD, f.rsp_cons(), req_pushed, b.rsp_prod_pvt());
            }
            HostileBackOp::Consume(call) => {
                let call = *call;
                let before = Before {
                    p: read_u32(&mem, RSP_PROD),
                    cons: f.rsp_cons(),
                    base: f.rsp_cons(),
                    limit: req_pushed,
                };
                let n = match call {
                    Consume::PopOne => 1,
                    Consume::PopBatch(c) => c.resolve(size),
                    _ => 0,
                };
                let slots: Vec<Rsp> = (0..n as u32)
                    .map(|i| mem.read::<Rsp>(slot(size, before.cons.wrapping_add(i))).unwrap())
                    .collect();
                let out = match call {
                    Consume::PopOne => Consumed {
                        n,
                        slots,
                        result: f.pop_response().map(|r| r.into_iter().collect()),
                        reported: None,
                    },
                    Consume::PopBatch(_) => {
                        let mut buf = vec![Rsp::default(); n];
                        let result = f.pop_responses(&mut buf).map(|k| buf[..k].to_vec());
                        Consumed { n, slots, result, reported: None }
                    }
                    Consume::FinalCheck => {
                        let r = f.final_check_for_responses();
                        Consumed {
                            n,
                            slots,
                            reported: r.as_ref().ok().map(|&x| x as u32),
                            result: r.map(|_| Vec::new()),
                        }
                    }
                    Consume::Unconsumed => {
                        let r = f.unconsumed_responses();
                        Consumed {
                            n,
                            slots,
                            reported: r.as_ref().ok().copied(),
                            result: r.map(|_| Vec::new()),
                        }
                    }
                };
                if let Consume::FinalCheck = call {
                    if out.reported == Some(0) {
                        prop_assert_eq!(
                            read_u32(&mem, RSP_EVENT),
                            f.rsp_cons().wrapping_add(1),
                            "rsp_event not armed"
                        );
                    }
                }
                let latched_before = checker.latched;
                checker.check(call, &before, out, f.rsp_cons(), |e, over, rew| {
                    classify_front(e, &before, over, rew)
                })?;
                if let Some(l) = latched_before {
                    prop_assert_eq!(f.unconsumed_responses(), Err(l));
                    prop_assert_eq!(f.final_check_for_responses(), Err(l));
                }
            }
            HostileBackOp::Queue { n, batch } => {
                let n = n.resolve(size);
                let free = size - f.req_prod_pvt().wrapping_sub(f.rsp_cons());
                prop_assert_eq!(f.free_requests(), free);
                let first = f.req_prod_pvt();
                let reqs: Vec<Req> = (0..n).map(|i| mk_req(seq.wrapping_add(i as u32), salt)).collect();
                seq = seq.wrapping_add(n as u32);
                let k = if *batch {
                    f.queue_requests(&reqs)
                } else {
                    reqs.iter().filter(|r| f.queue_request(r).is_ok()).count()
                };
                prop_assert_eq!(k, n.min(free as usize));
                for (i, r) in reqs[..k].iter().enumerate() {
                    prop_assert_eq!(mem.read::<Req>(slot(size, first.wrapping_add(i as u32))).unwrap(), *r);
                }
            }
            HostileBackOp::Push => {
                let (old, new) = (req_pushed, f.req_prod_pvt());
                let event = read_u32(&mem, REQ_EVENT);
                let notify = f.push_requests().is_needed();
                prop_assert_eq!(notify, old != new && xen_notify(old, new, event));
                if old != new {
                    prop_assert_eq!(read_u32(&mem, REQ_PROD), new);
                }
                req_pushed = new;
            }
        }
        // The front end never has more requests in flight than slots.
        prop_assert!(f.in_flight() <= size);
        prop_assert_eq!(f.free_requests(), size - f.in_flight());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn back_ring_survives_hostile_front(
        len in region_len(),
        start in start_index(),
        salt in any::<u32>(),
        ops in proptest::collection::vec(hostile_front_op(), 0..max_ops()),
    ) {
        run_hostile_front(len, start, salt, &ops)?;
    }

    #[test]
    fn front_ring_survives_hostile_back(
        len in region_len(),
        start in start_index(),
        salt in any::<u32>(),
        ops in proptest::collection::vec(hostile_back_op(), 0..max_ops()),
    ) {
        run_hostile_back(len, start, salt, &ops)?;
    }

    #[test]
    fn fuzz_harness_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        xen_back_ring::run(&data);
    }

    /// Regions too small for one entry are refused by both ends, never half-opened.
    #[test]
    fn too_small_regions_are_refused(len in 0usize..HEADER + STRIDE) {
        let region = HeapRegion::new(len);
        let want = RingError::RegionTooSmall { len, entry_size: STRIDE };
        prop_assert_eq!(Front::new(region.mem()).err(), Some(want));
        prop_assert_eq!(Back::new(region.mem()).err(), Some(want));
    }
}

// ---------------------------------------------------------------------------------------
// Findings in ring/src, kept as reproducers until it is fixed.

/// The latch documented on `RingError` and `BackRing`: "every later consuming call returns
/// the same error, and no entry is read past that point". `pop_request` / `pop_requests`
/// only re-read `req_prod` when their cached count runs out, and check the latch only then,
/// so requests validated before the error are still served afterwards.
#[test]
fn latched_back_ring_stops_serving() {
    let region = HeapRegion::new(4096);
    let mem = region.mem();
    let mut f = Front::new(mem.clone()).unwrap();
    let mut b = Back::new(mem.clone()).unwrap();
    for i in 0..4 {
        f.queue_request(&mk_req(i, 0)).unwrap();
    }
    let _ = f.push_requests();
    assert!(b.pop_request().unwrap().is_some()); // caches req_prod = 4
    mem.write(REQ_PROD, &1000u32).unwrap();
    let err = b.pop_requests(&mut [Req::default(); 8]).unwrap_err();
    assert_eq!(err, RingError::RequestProdOverflow { req_prod: 1000, rsp_prod_pvt: 0, size: 256 });
    assert_eq!(b.pop_request(), Err(err));
    assert_eq!(b.pop_requests(&mut [Req::default(); 1]), Err(err));
    assert_eq!(b.pop_requests(&mut []), Err(err));
}

/// The same for the front end.
#[test]
fn latched_front_ring_stops_serving() {
    let region = HeapRegion::new(4096);
    let mem = region.mem();
    let mut f = Front::new(mem.clone()).unwrap();
    let mut b = Back::new(mem.clone()).unwrap();
    for i in 0..4 {
        f.queue_request(&mk_req(i, 0)).unwrap();
    }
    let _ = f.push_requests();
    let mut reqs = [Req::default(); 4];
    assert_eq!(b.pop_requests(&mut reqs).unwrap(), 4);
    assert_eq!(b.queue_responses(&reqs.map(|r| answer(&r))), 4);
    let _ = b.push_responses();
    assert!(f.pop_response().unwrap().is_some()); // caches rsp_prod = 4
    mem.write(RSP_PROD, &1000u32).unwrap();
    let err = f.pop_responses(&mut [Rsp::default(); 8]).unwrap_err();
    assert_eq!(err, RingError::ResponseProdOverflow { rsp_prod: 1000, req_prod: 4, rsp_cons: 1 });
    assert_eq!(f.pop_response(), Err(err));
}

/// `RequestProdRewound` says "req_prod N moved behind req_cons C" also when `req_prod` moved
/// back from the last validated value but is still at or ahead of `req_cons`.
/// `ResponseProdRewound` says "rsp_prod N moved behind rsp_cons C" but is only ever raised
/// for `rsp_cons <= rsp_prod < rsp_prod_seen`; a `rsp_prod` really behind `rsp_cons` is
/// reported as `ResponseProdOverflow` ("ahead of the requests pushed").
#[test]
fn rewound_messages_are_true() {
    let region = HeapRegion::new(4096);
    let mem = region.mem();
    let mut f = Front::new(mem.clone()).unwrap();
    let mut b = Back::new(mem.clone()).unwrap();
    for i in 0..4 {
        f.queue_request(&mk_req(i, 0)).unwrap();
    }
    let _ = f.push_requests();
    assert!(b.pop_request().unwrap().is_some()); // req_cons 1, validated req_prod 4
    let mut reqs = [Req::default(); 3];
    assert_eq!(b.pop_requests(&mut reqs).unwrap(), 3);
    assert_eq!(b.queue_responses(&reqs.map(|r| answer(&r))), 3);
    let _ = b.push_responses();
    assert!(f.pop_response().unwrap().is_some()); // rsp_cons 1, validated rsp_prod 3

    mem.write(RSP_PROD, &2u32).unwrap();
    let err = f.unconsumed_responses().unwrap_err();
    assert_eq!(err, RingError::ResponseProdRewound { rsp_prod: 2, seen: 3 });
    assert!(err.to_string().contains("rsp_prod 2 moved back from 3"), "{err}");

    let region = HeapRegion::new(4096);
    let mem = region.mem();
    let mut f = Front::new(mem.clone()).unwrap();
    let mut b = Back::new(mem.clone()).unwrap();
    for i in 0..4 {
        f.queue_request(&mk_req(i, 0)).unwrap();
    }
    let _ = f.push_requests();
    assert!(b.pop_request().unwrap().is_some()); // req_cons 1, validated req_prod 4
    mem.write(REQ_PROD, &2u32).unwrap();
    let err = b.unconsumed_requests().unwrap_err();
    assert_eq!(err, RingError::RequestProdRewound { req_prod: 2, seen: 4 });
    assert!(err.to_string().contains("req_prod 2 moved back from 4"), "{err}");
}
