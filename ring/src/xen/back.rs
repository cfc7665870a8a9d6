//! The back end of a Xen ring: consumes requests, produces responses.

use crate::notify::Notify;
use crate::shm::SharedMem;
use crate::sync::{fence, Ordering};
use crate::xen::sring::Sring;
use crate::xen::{Entry, Full, RingError};

/// The back end's handle on a shared ring (`struct NAME_back_ring` plus the macros that
/// operate on it).
///
/// The back end trusts nothing in shared memory. Each request is copied out of its slot
/// exactly once (`RING_COPY_REQUEST`) and returned by value; the caller validates the copy
/// and never looks at the slot again. The shared `req_prod` is read once per batch and
/// checked: an index that claims more requests than the ring can hold
/// (`RING_REQUEST_PROD_OVERFLOW`) or that moves backwards is reported, latched, and the ring
/// stops serving the peer: every later consuming call returns the same error, and no entry is
/// read past that point.
pub struct BackRing<'a, Req, Rsp> {
    sring: Sring<'a, Req, Rsp>,
    /// Next request to consume. Invariant: `rsp_prod_pvt <= req_cons <= req_prod_seen` and
    /// `req_prod_seen - rsp_prod_pvt <= size` (wrapping).
    req_cons: u32,
    /// The last validated shared `req_prod`.
    req_prod_seen: u32,
    /// Next slot to fill with a response.
    rsp_prod_pvt: u32,
    /// The value last stored to the shared `rsp_prod`.
    rsp_prod_pushed: u32,
    broken: Option<RingError>,
}

impl<'a, Req: Entry, Rsp: Entry> BackRing<'a, Req, Rsp> {
    /// Attaches to a ring that the front end initialized (`BACK_RING_INIT`): all private
    /// indices start at 0.
    pub fn new(mem: SharedMem<'a>) -> Result<Self, RingError> {
        Self::attach(mem, 0)
    }

    /// Attaches with all private indices at `index` (`BACK_RING_ATTACH`), for a back end
    /// that reconnects to a live ring. The caller takes `index` from its own records.
    pub fn attach(mem: SharedMem<'a>, index: u32) -> Result<Self, RingError> {
        Ok(BackRing {
            sring: Sring::new(mem)?,
            req_cons: index,
            req_prod_seen: index,
            rsp_prod_pvt: index,
            rsp_prod_pushed: index,
            broken: None,
        })
    }

    /// Number of entries in the ring (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.sring.size()
    }

    /// Private request consumer index (`req_cons`).
    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    /// Private response producer index (`rsp_prod_pvt`).
    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    /// The protocol error that stopped this ring, if any.
    pub fn error(&self) -> Option<RingError> {
        self.broken
    }

    /// Reads and validates the shared `req_prod`; returns the number of unconsumed requests.
    fn refresh(&mut self) -> Result<u32, RingError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        // Acquire: pairs with the Release store in `FrontRing::push_requests`, so the entries
        // below `req_prod` are complete before we copy them.
        let req_prod = self.sring.req_prod.load(Ordering::Acquire);
        let outstanding = req_prod.wrapping_sub(self.rsp_prod_pvt);
        let unconsumed = req_prod.wrapping_sub(self.req_cons);
        let seen = self.req_prod_seen.wrapping_sub(self.req_cons);
        if outstanding > self.size() {
            return Err(self.latch(RingError::RequestProdOverflow {
                req_prod,
                rsp_prod_pvt: self.rsp_prod_pvt,
                size: self.size(),
            }));
        }
        // Within the ring but behind what was already validated (`unconsumed < seen`), or
        // behind `req_cons` itself (`unconsumed` wrapped past `outstanding`).
        if unconsumed > outstanding || unconsumed < seen {
            return Err(self.latch(RingError::RequestProdRewound { req_prod, seen: self.req_prod_seen }));
        }
        self.req_prod_seen = req_prod;
        Ok(unconsumed)
    }

    /// Stops serving the peer: records `err` for every later consuming call and forgets the
    /// requests validated before it, so none is handed out after the error.
    fn latch(&mut self, err: RingError) -> RingError {
        self.broken = Some(err);
        self.req_prod_seen = self.req_cons;
        err
    }

    /// Requests published and not yet consumed (`RING_HAS_UNCONSUMED_REQUESTS`), after
    /// validating `req_prod`.
    pub fn unconsumed_requests(&mut self) -> Result<u32, RingError> {
        self.refresh()
    }

    /// Copies out the next published request, if any (`RING_COPY_REQUEST` then `req_cons++`).
    #[inline]
    pub fn pop_request(&mut self) -> Result<Option<Req>, RingError> {
        if self.req_cons == self.req_prod_seen && self.refresh()? == 0 {
            return Ok(None);
        }
        let req = self.sring.read_req(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(req))
    }

    /// Copies out up to `out.len()` published requests with at most one read of `req_prod`;
    /// returns how many were written to `out`.
    #[inline]
    pub fn pop_requests(&mut self, out: &mut [Req]) -> Result<usize, RingError> {
        if let Some(err) = self.broken {
            return Err(err);
        }
        let mut available = self.req_prod_seen.wrapping_sub(self.req_cons);
        if (available as usize) < out.len() {
            available = self.refresh()?;
        }
        // `available <= size`: `refresh` validated it.
        let n = out.len().min(available as usize);
        self.sring.read_reqs(self.req_cons, &mut out[..n]);
        self.req_cons = self.req_cons.wrapping_add(n as u32);
        Ok(n)
    }

    /// Consumed requests that have no response yet: how many responses can be queued.
    pub fn pending_responses(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Writes `rsp` into the next response slot without publishing it. A response answers a
    /// consumed request; with none left to answer the response is handed back.
    #[inline]
    pub fn queue_response(&mut self, rsp: &Rsp) -> Result<(), Full<Rsp>> {
        if self.pending_responses() == 0 {
            return Err(Full(*rsp));
        }
        self.sring.write_rsp(self.rsp_prod_pvt, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Queues as many of `rsps` as there are consumed, unanswered requests; returns how many.
    #[inline]
    pub fn queue_responses(&mut self, rsps: &[Rsp]) -> usize {
        // `pending_responses() <= size`: `req_cons` never passes a validated `req_prod`.
        let n = rsps.len().min(self.pending_responses() as usize);
        self.sring.write_rsps(self.rsp_prod_pvt, &rsps[..n]);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(n as u32);
        n
    }

    /// Publishes every queued response with one store of `rsp_prod`
    /// (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`) and says whether the front end asked to be
    /// notified (its `rsp_event` lies in the newly published range).
    #[inline]
    pub fn push_responses(&mut self) -> Notify {
        // The previous value comes from our own records, never from shared memory, which the
        // front end could have scribbled on.
        let old = self.rsp_prod_pushed;
        let new = self.rsp_prod_pvt;
        if old == new {
            return Notify::NOT_NEEDED;
        }
        // Release: pairs with the Acquire load of `rsp_prod` in `FrontRing::refresh`.
        self.sring.rsp_prod.store(new, Ordering::Release);
        // xen_mb(): pairs with the SeqCst fence in `FrontRing::final_check_for_responses`.
        fence(Ordering::SeqCst);
        let event = self.sring.rsp_event.load(Ordering::Relaxed);
        self.rsp_prod_pushed = new;
        Notify::from_needed(new.wrapping_sub(event) < new.wrapping_sub(old))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: call before sleeping. Returns `true` if requests are
    /// pending; otherwise sets `req_event` so the front end notifies on the next request, and
    /// re-checks to close the race with a request published meanwhile.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingError> {
        if self.refresh()? > 0 {
            return Ok(true);
        }
        self.sring.req_event.store(self.req_cons.wrapping_add(1), Ordering::Relaxed);
        // xen_mb(): the store of `req_event` is ordered before the re-load of `req_prod`.
        // Pairs with the SeqCst fence in `FrontRing::push_requests`.
        fence(Ordering::SeqCst);
        Ok(self.refresh()? > 0)
    }

    /// Like [`final_check_for_requests`](Self::final_check_for_requests), for a consumer
    /// that needs `n` requests at once (netback's receive side needs a whole packet's worth of
    /// buffers): returns `true` if at least `n` are unconsumed; otherwise sets `req_event` one
    /// past the `req_prod` just read, so the front end notifies on its next request (Linux
    /// netback's `xenvif_rx_ring_slots_available`), and re-checks.
    pub fn final_check_for_requests_at_least(&mut self, n: u32) -> Result<bool, RingError> {
        if self.refresh()? >= n {
            return Ok(true);
        }
        self.sring.req_event.store(self.req_prod_seen.wrapping_add(1), Ordering::Relaxed);
        // xen_mb(): as in `final_check_for_requests`; pairs with the SeqCst fence in
        // `FrontRing::push_requests`.
        fence(Ordering::SeqCst);
        Ok(self.refresh()? >= n)
    }

    /// Copies out the protocol-private header bytes (`pvt`). Untrusted, like everything else.
    pub fn private(&self) -> Result<[u8; 4], RingError> {
        self.sring.read_private()
    }
}

impl<Req, Rsp> core::fmt::Debug for BackRing<'_, Req, Rsp> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BackRing")
            .field("req_cons", &self.req_cons)
            .field("req_prod_seen", &self.req_prod_seen)
            .field("rsp_prod_pvt", &self.rsp_prod_pvt)
            .field("rsp_prod_pushed", &self.rsp_prod_pushed)
            .field("broken", &self.broken)
            .field("shared", &self.sring)
            .finish()
    }
}

#[cfg(all(test, feature = "alloc", not(loom)))]
mod tests {
    use crate::xen::netif::{NetifTxRequest, NetifTxResponse};
    use crate::{BackRing, FrontRing, HeapRegion, RingError};

    type Back<'a> = BackRing<'a, NetifTxRequest, NetifTxResponse>;

    #[test]
    fn waiting_for_several_requests_is_woken_by_each_new_one() {
        let r = HeapRegion::new(4096);
        let mut f = FrontRing::<NetifTxRequest, NetifTxResponse>::new(r.mem()).unwrap();
        let mut b = Back::new(r.mem()).unwrap();
        f.queue_request(&NetifTxRequest::default()).unwrap();
        let _ = f.push_requests();
        // One is there but three are needed: the back end sleeps, asking for the next one.
        assert!(!b.final_check_for_requests_at_least(3).unwrap());
        f.queue_request(&NetifTxRequest::default()).unwrap();
        assert!(f.push_requests().is_needed(), "the next request must wake the back end");
        assert!(!b.final_check_for_requests_at_least(3).unwrap());
        f.queue_request(&NetifTxRequest::default()).unwrap();
        assert!(f.push_requests().is_needed());
        assert!(b.final_check_for_requests_at_least(3).unwrap());
        assert_eq!(b.unconsumed_requests().unwrap(), 3);
    }

    #[test]
    fn overflowing_req_prod_is_latched_and_nothing_is_read() {
        let r = HeapRegion::new(4096);
        let _f = FrontRing::<NetifTxRequest, NetifTxResponse>::new(r.mem()).unwrap();
        let mut b = Back::new(r.mem()).unwrap();
        r.mem().write(0, &257u32).unwrap();
        let err = b.pop_request().unwrap_err();
        assert_eq!(err, RingError::RequestProdOverflow { req_prod: 257, rsp_prod_pvt: 0, size: 256 });
        r.mem().write(0, &1u32).unwrap();
        assert_eq!(b.pop_request().unwrap_err(), err);
        assert_eq!(b.final_check_for_requests().unwrap_err(), err);
        assert_eq!(b.error(), Some(err));
    }

    #[test]
    fn rewound_req_prod_is_an_error() {
        let r = HeapRegion::new(4096);
        let mut f = FrontRing::<NetifTxRequest, NetifTxResponse>::new(r.mem()).unwrap();
        let mut b = Back::new(r.mem()).unwrap();
        for i in 0..4u16 {
            f.queue_request(&NetifTxRequest { id: i.into(), ..Default::default() }).unwrap();
        }
        let _ = f.push_requests();
        let mut out = [NetifTxRequest::default(); 3];
        assert_eq!(b.pop_requests(&mut out).unwrap(), 3);
        r.mem().write(0, &2u32).unwrap();
        // Request 3 was published and validated with the last read of req_prod: still served.
        assert_eq!(b.pop_request().unwrap().unwrap().id.get(), 3);
        assert!(matches!(b.pop_request(), Err(RingError::RequestProdRewound { req_prod: 2, seen: 4 })));
    }

    #[test]
    fn responses_cannot_outrun_requests() {
        let r = HeapRegion::new(4096);
        let mut b = Back::new(r.mem()).unwrap();
        let rsp = NetifTxResponse::default();
        assert!(b.queue_response(&rsp).is_err());
        assert_eq!(b.queue_responses(&[rsp; 4]), 0);
        assert!(!b.push_responses().is_needed());
    }
}
