//! The front end of a Xen ring: produces requests, consumes responses.

use crate::notify::Notify;
use crate::shm::SharedMem;
use crate::sync::{fence, Ordering};
use crate::xen::sring::Sring;
use crate::xen::{Entry, Full, RingError};

/// The front end's handle on a shared ring (`struct NAME_front_ring` plus the macros that
/// operate on it).
///
/// The handle owns the front end's private indices; shared memory holds only what the
/// protocol publishes. Requests are written with [`queue_request`](Self::queue_request) (or
/// [`queue_requests`](Self::queue_requests)) and become visible to the back end only when
/// [`push_requests`](Self::push_requests) publishes `req_prod` — once per batch — and says
/// whether the back end must be notified. Responses are copied out exactly once each.
///
/// The back end is not trusted either: a `rsp_prod` that claims responses to requests never
/// pushed is reported as [`RingError::ResponseProdOverflow`] and latched.
pub struct FrontRing<'a, Req, Rsp> {
    sring: Sring<'a, Req, Rsp>,
    /// Next slot to fill. Invariant: `req_prod_pvt - rsp_cons <= size` (wrapping).
    req_prod_pvt: u32,
    /// The value last stored to the shared `req_prod`. In `rsp_cons..=req_prod_pvt`.
    req_prod_pushed: u32,
    /// Next response to consume.
    rsp_cons: u32,
    /// The last validated shared `rsp_prod`. In `rsp_cons..=req_prod_pushed`.
    rsp_prod_seen: u32,
    broken: Option<RingError>,
}

impl<'a, Req: Entry, Rsp: Entry> FrontRing<'a, Req, Rsp> {
    /// Initializes the shared ring in `mem` (`SHARED_RING_INIT`) and returns the front end of
    /// it (`FRONT_RING_INIT`). The ring size is the largest power of two of entries that fits
    /// in `mem` after the 64-byte header.
    pub fn new(mem: SharedMem<'a>) -> Result<Self, RingError> {
        let sring = Sring::new(mem)?;
        sring.init()?;
        Ok(Self::at(sring, 0))
    }

    /// Attaches to a ring that is already live (`FRONT_RING_ATTACH`), for example after the
    /// front end restarted. Both private indices start at `index`, which the caller takes
    /// from its own records (the value in shared memory is not trusted).
    pub fn attach(mem: SharedMem<'a>, index: u32) -> Result<Self, RingError> {
        Ok(Self::at(Sring::new(mem)?, index))
    }

    fn at(sring: Sring<'a, Req, Rsp>, index: u32) -> Self {
        FrontRing {
            sring,
            req_prod_pvt: index,
            req_prod_pushed: index,
            rsp_cons: index,
            rsp_prod_seen: index,
            broken: None,
        }
    }

    /// Number of entries in the ring (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.sring.size()
    }

    /// Slots free for new requests (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.size() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Whether no request can be queued until responses are consumed (`RING_FULL`).
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Requests pushed or queued that have not been answered by a consumed response.
    pub fn in_flight(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Private request producer index (`req_prod_pvt`).
    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    /// Private response consumer index (`rsp_cons`).
    pub fn rsp_cons(&self) -> u32 {
        self.rsp_cons
    }

    /// Writes `req` into the next free slot without publishing it. Hands the request back if
    /// the ring is full.
    #[inline]
    pub fn queue_request(&mut self, req: &Req) -> Result<(), Full<Req>> {
        if self.is_full() {
            return Err(Full(*req));
        }
        self.sring.write_req(self.req_prod_pvt, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Queues as many of `reqs` as fit; returns how many were queued.
    #[inline]
    pub fn queue_requests(&mut self, reqs: &[Req]) -> usize {
        let n = reqs.len().min(self.free_requests() as usize);
        self.sring.write_reqs(self.req_prod_pvt, &reqs[..n]);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(n as u32);
        n
    }

    /// Publishes every queued request with one store of `req_prod`
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`) and says whether the back end asked to be
    /// notified for them (its `req_event` lies in the newly published range).
    #[inline]
    pub fn push_requests(&mut self) -> Notify {
        let old = self.req_prod_pushed;
        let new = self.req_prod_pvt;
        if old == new {
            return Notify::NOT_NEEDED;
        }
        // Release: the entries written by `queue_request` are visible before the index that
        // covers them. Pairs with the Acquire load of `req_prod` in `BackRing::refresh`.
        self.sring.req_prod.store(new, Ordering::Release);
        // xen_mb(): the store of `req_prod` is ordered before the load of `req_event`. Pairs
        // with the SeqCst fence in `BackRing::final_check_for_requests`, which orders its
        // store of `req_event` before its re-load of `req_prod`: at least one side sees the
        // other's store, so a back end about to sleep is always notified.
        fence(Ordering::SeqCst);
        let event = self.sring.req_event.load(Ordering::Relaxed);
        self.req_prod_pushed = new;
        Notify::from_needed(new.wrapping_sub(event) < new.wrapping_sub(old))
    }

    /// Reads and validates the shared `rsp_prod`; returns the number of unconsumed responses.
    fn refresh(&mut self) -> Result<u32, RingError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        // Acquire: pairs with the Release store in `BackRing::push_responses`, so the entries
        // below `rsp_prod` are complete before we copy them.
        let rsp_prod = self.sring.rsp_prod.load(Ordering::Acquire);
        let unconsumed = rsp_prod.wrapping_sub(self.rsp_cons);
        let outstanding = self.req_prod_pushed.wrapping_sub(self.rsp_cons);
        let seen = self.rsp_prod_seen.wrapping_sub(self.rsp_cons);
        if unconsumed < seen {
            return Err(self.latch(RingError::ResponseProdRewound { rsp_prod, seen: self.rsp_prod_seen }));
        }
        if unconsumed > outstanding {
            return Err(self.latch(RingError::ResponseProdOverflow {
                rsp_prod,
                req_prod: self.req_prod_pushed,
                rsp_cons: self.rsp_cons,
            }));
        }
        self.rsp_prod_seen = rsp_prod;
        Ok(unconsumed)
    }

    /// Stops serving the peer: records `err` for every later consuming call and forgets the
    /// responses validated before it, so none is handed out after the error.
    fn latch(&mut self, err: RingError) -> RingError {
        self.broken = Some(err);
        self.rsp_prod_seen = self.rsp_cons;
        err
    }

    /// Responses published by the back end and not yet consumed
    /// (`RING_HAS_UNCONSUMED_RESPONSES`), after validating `rsp_prod`.
    pub fn unconsumed_responses(&mut self) -> Result<u32, RingError> {
        self.refresh()
    }

    /// Copies out the next response, if one is published.
    #[inline]
    pub fn pop_response(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.rsp_cons == self.rsp_prod_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        let rsp = self.sring.read_rsp(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Copies out up to `out.len()` published responses with one read of `rsp_prod`; returns
    /// how many were written to `out`.
    #[inline]
    pub fn pop_responses(&mut self, out: &mut [Rsp]) -> Result<usize, RingError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        let mut available = self.rsp_prod_seen.wrapping_sub(self.rsp_cons);
        if (available as usize) < out.len() {
            available = self.refresh()?;
        }
        // `available <= size`: `refresh` validated it against the requests pushed.
        let n = out.len().min(available as usize);
        self.sring.read_rsps(self.rsp_cons, &mut out[..n]);
        self.rsp_cons = self.rsp_cons.wrapping_add(n as u32);
        Ok(n)
    }

    /// `RING_FINAL_CHECK_FOR_RESPONSES`: call before sleeping. Returns `true` if responses
    /// are pending; otherwise sets `rsp_event` so the back end notifies on the next response,
    /// and re-checks to close the race with a response published meanwhile.
    pub fn final_check_for_responses(&mut self) -> Result<bool, RingError> {
        if self.refresh()? > 0 {
            return Ok(true);
        }
        self.sring.rsp_event.store(self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        // xen_mb(): the store of `rsp_event` is ordered before the re-load of `rsp_prod`.
        // Pairs with the SeqCst fence in `BackRing::push_responses`.
        fence(Ordering::SeqCst);
        Ok(self.refresh()? > 0)
    }

    /// Writes the protocol-private bytes of the header (`pvt`, e.g. netif's smartpoll flag).
    pub fn set_private(&self, pvt: [u8; 4]) -> Result<(), RingError> {
        self.sring.write_private(pvt)
    }
}

impl<Req, Rsp> core::fmt::Debug for FrontRing<'_, Req, Rsp> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrontRing")
            .field("req_prod_pvt", &self.req_prod_pvt)
            .field("req_prod_pushed", &self.req_prod_pushed)
            .field("rsp_cons", &self.rsp_cons)
            .field("rsp_prod_seen", &self.rsp_prod_seen)
            .field("broken", &self.broken)
            .field("shared", &self.sring)
            .finish()
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use crate::xen::netif::{NetifTxRequest, NetifTxResponse};
    use crate::{BackRing, FrontRing, HeapRegion, RingError};

    type Front<'a> = FrontRing<'a, NetifTxRequest, NetifTxResponse>;
    type Back<'a> = BackRing<'a, NetifTxRequest, NetifTxResponse>;

    fn req(id: u16) -> NetifTxRequest {
        NetifTxRequest { id: id.into(), size: 100.into(), ..Default::default() }
    }

    #[test]
    fn fills_to_size_then_hands_back() {
        let r = HeapRegion::new(4096);
        let mut f = Front::new(r.mem()).unwrap();
        for i in 0..256 {
            f.queue_request(&req(i)).unwrap();
        }
        assert!(f.is_full());
        assert_eq!(f.queue_request(&req(999)).unwrap_err().0.id.get(), 999);
        assert!(f.push_requests().is_needed(), "req_event starts at 1");
    }

    #[test]
    fn notify_only_when_event_is_crossed() {
        let r = HeapRegion::new(4096);
        let mut f = Front::new(r.mem()).unwrap();
        let mut b = Back::new(r.mem()).unwrap();
        f.queue_request(&req(0)).unwrap();
        assert!(f.push_requests().is_needed());
        // The back end has not re-armed req_event: no further notifications.
        f.queue_request(&req(1)).unwrap();
        assert!(!f.push_requests().is_needed());
        assert_eq!(b.pop_request().unwrap().unwrap().id.get(), 0);
        assert_eq!(b.pop_request().unwrap().unwrap().id.get(), 1);
        assert!(!b.final_check_for_requests().unwrap());
        f.queue_request(&req(2)).unwrap();
        assert!(f.push_requests().is_needed());
        assert!(b.final_check_for_requests().unwrap());
    }

    #[test]
    fn forged_rsp_prod_is_latched() {
        let r = HeapRegion::new(4096);
        let mut f = Front::new(r.mem()).unwrap();
        f.queue_request(&req(0)).unwrap();
        let _ = f.push_requests();
        // A back end claims two responses to one request.
        r.mem().write(8, &2u32).unwrap();
        let err = f.pop_response().unwrap_err();
        assert!(matches!(err, RingError::ResponseProdOverflow { rsp_prod: 2, req_prod: 1, rsp_cons: 0 }));
        // Latched, even once the index looks sane again.
        r.mem().write(8, &1u32).unwrap();
        assert_eq!(f.pop_response().unwrap_err(), err);
    }
}
