//! Moves netif transmit requests between two threads through a Xen ring, the way netfront
//! and netback do, and measures the rate.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvio_ring::xen::netif::{netif_rsp, NetifTxRequest, NetifTxResponse};
use pvio_ring::{BackRing, EventFd, FrontRing, MemfdRegion, Notify, RingError, Waiter};

/// What one run measured.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Requests the front end pushed.
    pub requests: u64,
    /// Responses the front end consumed, each matched to its request.
    pub responses: u64,
    /// Wall time from the first push to the last response.
    pub elapsed: Duration,
    /// Events the front end sent to the back end.
    pub kicks: u64,
    /// Events the back end sent to the front end.
    pub interrupts: u64,
}

impl Report {
    /// Request/response round trips per second.
    pub fn rate(&self) -> f64 {
        self.responses as f64 / self.elapsed.as_secs_f64()
    }
}

/// Why a demo run failed.
#[derive(Debug)]
pub enum DemoError {
    /// Creating or using shared memory or an eventfd failed.
    Io(io::Error),
    /// A ring reported a protocol violation.
    Ring(RingError),
    /// A response did not answer the request expected next.
    Mismatch {
        /// The id expected.
        expected: u16,
        /// The id received.
        got: u16,
    },
    /// The back-end thread panicked.
    BackEndPanicked,
}

impl std::fmt::Display for DemoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DemoError::Io(e) => write!(f, "I/O: {e}"),
            DemoError::Ring(e) => write!(f, "ring protocol: {e}"),
            DemoError::Mismatch { expected, got } => write!(f, "response id {got}, expected {expected}"),
            DemoError::BackEndPanicked => write!(f, "the back-end thread panicked"),
        }
    }
}

impl std::error::Error for DemoError {}

impl From<io::Error> for DemoError {
    fn from(e: io::Error) -> Self {
        DemoError::Io(e)
    }
}

impl From<RingError> for DemoError {
    fn from(e: RingError) -> Self {
        DemoError::Ring(e)
    }
}

fn send(n: Notify, ev: &EventFd, count: &mut u64) -> io::Result<()> {
    if n.send(ev)? {
        *count += 1;
    }
    Ok(())
}

/// How long a side sleeps before re-checking whether the other side gave up.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Sends `total` requests from a front-end thread to a back-end thread through a one-page
/// netif transmit ring, publishing at most `batch` at a time, with eventfd notifications
/// under Xen's event-suppression rules. Every response is checked against its request.
pub fn run(total: u64, batch: usize) -> Result<Report, DemoError> {
    let page = MemfdRegion::new("pvio-ring-demo", 4096)?;
    let to_back = EventFd::new()?;
    let to_front = EventFd::new()?;
    let mut front = FrontRing::<NetifTxRequest, NetifTxResponse>::new(page.mem())?;
    let mut back = BackRing::<NetifTxRequest, NetifTxResponse>::new(page.mem())?;
    let batch = batch.clamp(1, front.size() as usize);
    let gave_up = AtomicBool::new(false);

    std::thread::scope(|s| {
        let backend = s.spawn(|| {
            let r = serve(&mut back, total, batch, &to_back, &to_front, &gave_up);
            if r.is_err() {
                gave_up.store(true, Ordering::Relaxed);
            }
            r
        });
        let start = Instant::now();
        let front_result = drive(&mut front, total, batch, &to_back, &to_front, &gave_up);
        let elapsed = start.elapsed();
        if front_result.is_err() {
            gave_up.store(true, Ordering::Relaxed);
        }
        let back_result = backend.join().map_err(|_| DemoError::BackEndPanicked)?;
        let (requests, responses, kicks) = front_result?;
        let interrupts = back_result?;
        Ok(Report { requests, responses, elapsed, kicks, interrupts })
    })
}

/// The back end: copy requests out, answer each, publish responses once per batch.
fn serve(
    back: &mut BackRing<'_, NetifTxRequest, NetifTxResponse>,
    total: u64,
    batch: usize,
    to_back: &EventFd,
    to_front: &EventFd,
    gave_up: &AtomicBool,
) -> Result<u64, DemoError> {
    let mut interrupts = 0;
    let mut reqs = vec![NetifTxRequest::default(); batch];
    let mut rsps = vec![NetifTxResponse::default(); batch];
    let mut served = 0u64;
    while served < total && !gave_up.load(Ordering::Relaxed) {
        let n = back.pop_requests(&mut reqs)?;
        if n == 0 {
            if !back.final_check_for_requests()? {
                to_back.wait(Some(WAIT_SLICE))?;
            }
            continue;
        }
        for (req, rsp) in reqs[..n].iter().zip(&mut rsps[..n]) {
            *rsp = NetifTxResponse { id: req.id, status: netif_rsp::OKAY.into() };
        }
        back.queue_responses(&rsps[..n]);
        send(back.push_responses(), to_front, &mut interrupts)?;
        served += n as u64;
    }
    Ok(interrupts)
}

/// The front end: queue a batch, push it, collect and check responses, sleep when idle.
fn drive(
    front: &mut FrontRing<'_, NetifTxRequest, NetifTxResponse>,
    total: u64,
    batch: usize,
    to_back: &EventFd,
    to_front: &EventFd,
    gave_up: &AtomicBool,
) -> Result<(u64, u64, u64), DemoError> {
    let mut kicks = 0;
    let (mut sent, mut answered) = (0u64, 0u64);
    let mut reqs = vec![NetifTxRequest::default(); batch];
    let mut rsps = vec![NetifTxResponse::default(); batch];
    while answered < total && !gave_up.load(Ordering::Relaxed) {
        let room = (front.free_requests() as usize).min(batch).min((total - sent) as usize);
        if room > 0 {
            for (i, r) in reqs[..room].iter_mut().enumerate() {
                let id = ((sent + i as u64) as u16).into();
                *r = NetifTxRequest {
                    gref: 1.into(),
                    offset: 0.into(),
                    flags: 0.into(),
                    id,
                    size: 1514.into(),
                };
            }
            front.queue_requests(&reqs[..room]);
            send(front.push_requests(), to_back, &mut kicks)?;
            sent += room as u64;
        }
        let n = front.pop_responses(&mut rsps)?;
        for rsp in &rsps[..n] {
            let expected = answered as u16;
            if rsp.id.get() != expected || rsp.status.get() != netif_rsp::OKAY {
                return Err(DemoError::Mismatch { expected, got: rsp.id.get() });
            }
            answered += 1;
        }
        if n == 0 && (room == 0 || sent == total) && !front.final_check_for_responses()? {
            to_front.wait(Some(WAIT_SLICE))?;
        }
    }
    Ok((sent, answered, kicks))
}
