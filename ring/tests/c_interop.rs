//! pvio-ring against Xen's own C ring macros, across processes.
//!
//! `tests/c/xen_peer.c` is compiled at test time against the system's Xen public headers
//! (`/usr/include/xen/io/ring.h` and `io/netif.h`, Debian package `libxen-dev`) and uses only
//! Xen's macros (`SHARED_RING_INIT`, `FRONT_RING_INIT`, `BACK_RING_INIT`, `RING_COPY_*`,
//! `RING_PUSH_*_AND_CHECK_NOTIFY`, `RING_FINAL_CHECK_FOR_*`, ...). It runs as a separate
//! process on the same memfd pages as this test:
//!
//! - `c_front_rust_back`: C front end (it initializes the shared rings) against [`BackRing`];
//! - `rust_front_c_back`: [`FrontRing`] (which initializes) against a C back end;
//! - `layout_matches_xen_headers`: sizes, offsets, signedness and constants, key by key.
//!
//! Each run drives the netif transmit ring (page 0) and receive ring (page 1) at once,
//! [`SLOTS`] slots through each, with event suppression on: one eventfd per direction, a side
//! sleeps only after the final-check protocol found nothing, and signals only when a push says
//! the peer asked for it. Every eighth packet carries a GSO extra-info slot (written by the
//! front end on the transmit ring, by the back end on the receive ring). Both sides check every
//! slot they receive against the same schedule (see the C file's header comment) and fail on
//! the first mismatch.
//!
//! Without a C compiler or the Xen headers each test prints `skipped: <reason>` and passes.
#![cfg(not(loom))]
#![cfg(all(target_os = "linux", feature = "std", not(loom), not(miri)))]

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pvio_ring::xen::netif::{
    extra_flag, extra_type, gso_type, netif_rsp, netrxf, nettxf, Extra, NetifExtraInfo, NetifGsoInfo,
    NetifRxRequest, NetifRxResponse, NetifTxRequest, NetifTxResponse, NET_RX_RING_SIZE, NET_TX_RING_SIZE,
};
use pvio_ring::xen::sring;
use pvio_ring::{BackRing, EventFd, FrontRing, HeapRegion, MemfdRegion, Waiter};
use zerocopy::little_endian::{I16, U16, U32};
use zerocopy::IntoBytes;

/// Slots moved through each of the two rings per run (even: slots travel in pairs).
const SLOTS: u32 = 1 << 20;
const PAGE: usize = 4096;
/// A side that sleeps this long without an event has lost a wake-up (or its peer died).
const STALL: Duration = Duration::from_secs(20);
/// The C peer is killed and the test fails after this long.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

const RING_H: &str = "/usr/include/xen/io/ring.h";
const NETIF_H: &str = "/usr/include/xen/io/netif.h";

// ------------------------------------------------------------------------------ schedule
// Mirrors the schedule in tests/c/xen_peer.c exactly.

fn has_extra(k: u32) -> bool {
    k % 8 == 0
}

fn is_extra(k: u32) -> bool {
    k % 8 == 1
}

fn tx_request(k: u32) -> NetifTxRequest {
    let flags = (if has_extra(k) { nettxf::EXTRA_INFO } else { 0 })
        | (if k % 3 == 0 { nettxf::CSUM_BLANK } else { 0 })
        | (if k % 5 == 0 { nettxf::DATA_VALIDATED } else { 0 })
        | (if k % 4 == 2 { nettxf::MORE_DATA } else { 0 });
    NetifTxRequest {
        gref: k.into(),
        offset: ((k * 7) as u16 & 0xfff).into(),
        flags: flags.into(),
        id: (k as u16).into(),
        size: ((60 + k % 1455) as u16).into(),
    }
}

/// GSO segment size and type carried by transmit slot `k` (`k % 8 == 1`).
fn tx_extra(k: u32) -> (u16, u8) {
    let ty = if (k / 8) & 1 == 1 { gso_type::TCPV6 } else { gso_type::TCPV4 };
    ((536 + (k / 8) % 1000) as u16, ty)
}

fn tx_response(k: u32) -> NetifTxResponse {
    if is_extra(k) {
        return NetifTxResponse { id: ((k - 1) as u16).into(), status: netif_rsp::NULL.into() };
    }
    let status = match k % 13 {
        7 => netif_rsp::ERROR,
        11 => netif_rsp::DROPPED,
        _ => netif_rsp::OKAY,
    };
    NetifTxResponse { id: (k as u16).into(), status: status.into() }
}

fn rx_request(k: u32) -> NetifRxRequest {
    NetifRxRequest { id: (k as u16).into(), pad: 0.into(), gref: (k + 0x4000_0000).into() }
}

fn rx_response(k: u32) -> NetifRxResponse {
    let flags = (if has_extra(k) { netrxf::EXTRA_INFO } else { 0 })
        | (if k % 3 == 0 { netrxf::DATA_VALIDATED } else { 0 })
        | (if k % 7 == 0 { netrxf::CSUM_BLANK } else { 0 });
    let status = if k % 13 == 7 { netif_rsp::ERROR } else { (1 + k % 1500) as i16 };
    NetifRxResponse {
        id: (k as u16).into(),
        offset: ((k * 3) as u16 & 0x7ff).into(),
        flags: flags.into(),
        status: status.into(),
    }
}

/// GSO segment size and type carried by receive slot `k` (`k % 8 == 1`).
fn rx_extra(k: u32) -> (u16, u8) {
    let ty = if (k / 8) & 1 == 1 { gso_type::TCPV4 } else { gso_type::TCPV6 };
    ((1000 + (k / 8) % 400) as u16, ty)
}

/// Decodes a GSO extra-info segment found in a slot and checks it against the schedule,
/// including the raw bytes (reserved fields and the slot's unused tail must be zero).
fn check_extra(ring: &str, k: u32, slot: &[u8], extra: NetifExtraInfo, (size, ty): (u16, u8)) {
    assert_eq!(extra.decode(), Ok(Extra::Gso { ty, size }), "{ring} slot {k}: wrong extra info {extra:?}");
    assert!(!extra.has_more(), "{ring} slot {k}: XEN_NETIF_EXTRA_FLAG_MORE set");
    let gso = extra.gso_info();
    assert_eq!((gso.pad, gso.features.get()), (0, 0), "{ring} slot {k}: reserved GSO fields");
    let mut want = [0u8; 12];
    want[0] = extra_type::GSO;
    want[2..4].copy_from_slice(&size.to_le_bytes());
    want[4] = ty;
    assert_eq!(slot, &want[..slot.len()], "{ring} slot {k}: raw bytes of the extra-info slot");
}

// --------------------------------------------------------------------- the C peer

/// Compiles `tests/c/xen_peer.c` once per test process. `Err` is a reason to skip.
fn peer() -> Result<&'static Path, String> {
    static PEER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PEER.get_or_init(build_peer).as_deref().map_err(Clone::clone)
}

fn build_peer() -> Result<PathBuf, String> {
    for header in [RING_H, NETIF_H] {
        if !Path::new(header).exists() {
            return Err(format!("{header} not found (install libxen-dev)"));
        }
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    match Command::new(&cc).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("C compiler `{cc} --version` failed ({s})")),
        Err(e) => return Err(format!("no C compiler `{cc}` ({e})")),
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/xen_peer.c");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // Build under a private name, then rename into place: concurrent test processes (debug
    // and release) never see a half-written binary.
    let tmp = dir.join(format!("xen_peer.{}.tmp", std::process::id()));
    let exe = dir.join("xen_peer");
    let out = Command::new(&cc)
        .args(["-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    let diagnostics = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "compiling {} failed ({}):\n{diagnostics}", src.display(), out.status);
    if !diagnostics.trim().is_empty() {
        println!("{cc} warnings for {}:\n{diagnostics}", src.display());
    }
    std::fs::rename(&tmp, &exe).unwrap_or_else(|e| panic!("renaming {}: {e}", tmp.display()));
    Ok(exe)
}

macro_rules! peer_or_skip {
    () => {
        match peer() {
            Ok(exe) => exe,
            Err(reason) => {
                println!("skipped: {reason}");
                return;
            }
        }
    };
}

/// The C peer process; killed and reaped if the test ends early.
struct Peer {
    child: Option<Child>,
}

/// What the C peer printed, and how it ended.
struct PeerExit {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for PeerExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "C peer {}\n--- stdout:\n{}--- stderr:\n{}", self.status, self.stdout, self.stderr)
    }
}

impl Peer {
    /// Starts `xen_peer ROLE MEMFD EVT_IN EVT_OUT SLOTS`, with the three descriptors inherited
    /// under their own numbers.
    fn spawn(exe: &Path, role: &str, memfd: &MemfdRegion, evt_in: &EventFd, evt_out: &EventFd) -> Self {
        let fds: [RawFd; 3] = [memfd.as_raw_fd(), evt_in.as_raw_fd(), evt_out.as_raw_fd()];
        let mut cmd = Command::new(exe);
        cmd.arg(role)
            .args(fds.map(|fd| fd.to_string()))
            .arg(SLOTS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let clear_cloexec = move || -> io::Result<()> {
            for fd in fds {
                // SAFETY: fcntl(F_SETFD) on a descriptor number; async-signal-safe, touches no
                // memory. In the forked child these descriptors are still open (they are
                // owned by the parent's live objects), and only the child's table changes.
                if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the hook runs between fork and exec and only calls fcntl, which is
        // async-signal-safe; it allocates nothing and takes no locks.
        unsafe { cmd.pre_exec(clear_cloexec) };
        let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        Peer { child: Some(child) }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("peer already reaped")
    }

    /// If the peer has exited, reaps it and returns what it printed.
    fn try_exit(&mut self) -> Option<PeerExit> {
        let status = self.child().try_wait().expect("waitpid")?;
        Some(self.collect(status))
    }

    fn collect(&mut self, status: ExitStatus) -> PeerExit {
        let mut child = self.child.take().expect("peer already reaped");
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        // Already reaped by the caller; std keeps the status, so this returns at once.
        let _ = child.wait();
        PeerExit { status, stdout, stderr }
    }

    /// Waits for the peer to exit, killing it at `deadline`.
    fn finish(&mut self, deadline: Instant) -> PeerExit {
        loop {
            if let Some(exit) = self.try_exit() {
                return exit;
            }
            if Instant::now() > deadline {
                let _ = self.child().kill();
                let status = self.child().wait().expect("waitpid");
                panic!("killed the C peer after {CHILD_TIMEOUT:?}:\n{}", self.collect(status));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sleeps on `evt` until the peer signals it. Panics if the peer exits meanwhile, if nothing
/// arrives within [`STALL`] (a lost wake-up), or at `deadline`. Timed-out slices never
/// resume ring work: progress after sleeping is only ever driven by a real event.
fn sleep_until_event(evt: &EventFd, peer: &mut Peer, deadline: Instant, state: &dyn Fn() -> String) {
    let start = Instant::now();
    loop {
        if evt.wait(Some(Duration::from_millis(50))).expect("eventfd wait") {
            return;
        }
        if let Some(exit) = peer.try_exit() {
            panic!("the C peer exited while we slept waiting for it ({}):\n{exit}", state());
        }
        if start.elapsed() > STALL {
            panic!("no event for {STALL:?} while asleep (lost wake-up?): {}", state());
        }
        if Instant::now() > deadline {
            panic!("run did not finish within {CHILD_TIMEOUT:?}: {}", state());
        }
    }
}

/// Event counters of one side.
#[derive(Debug, Default, Clone, Copy)]
struct Events {
    /// Notifications sent to the peer (pushes that said `is_needed`).
    sent: u64,
    /// Sleeps that ended with an event.
    wakeups: u64,
    /// Times the side armed an event threshold before sleeping (an upper bound).
    arms: u64,
}

/// Parses the C peer's `stats key=value ...` line.
fn parse_stats(exit: &PeerExit) -> BTreeMap<String, String> {
    let line = exit
        .stdout
        .lines()
        .find(|l| l.starts_with("stats "))
        .unwrap_or_else(|| panic!("no stats line from the C peer:\n{exit}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn stat(stats: &BTreeMap<String, String>, key: &str) -> u64 {
    stats.get(key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("C stats lack {key}: {stats:?}"))
}

/// One run: checks the peer's exit and counters, prints the summary.
fn report(what: &str, exit: &PeerExit, c_is_front: bool, rust: Events, elapsed: Duration) {
    assert!(exit.status.success(), "{what}: the C peer failed:\n{exit}");
    if !exit.stderr.trim().is_empty() {
        println!("{what}: C peer stderr:\n{}", exit.stderr);
    }
    let stats = parse_stats(exit);
    assert_eq!(stat(&stats, "tx_slots"), u64::from(SLOTS), "{what}: C tx count");
    assert_eq!(stat(&stats, "rx_slots"), u64::from(SLOTS), "{what}: C rx count");
    let c = Events {
        sent: stat(&stats, "notifications_sent"),
        wakeups: stat(&stats, "wakeups"),
        arms: stat(&stats, "arms"),
    };
    let (front, back) = if c_is_front { (c, rust) } else { (rust, c) };
    let (front_lang, back_lang) = if c_is_front { ("C", "Rust") } else { ("Rust", "C") };
    let slots = 2 * u64::from(SLOTS);
    println!(
        "{what}: {slots} requests and {slots} responses ({SLOTS} tx + {SLOTS} rx each, {} GSO extra-info slots per ring) in {:.2?}",
        SLOTS / 8,
        elapsed
    );
    println!(
        "  notifications front->back: {:>7} ({front_lang} front sent; {back_lang} back woke {} times, armed req_event <= {} times)",
        front.sent, back.wakeups, back.arms
    );
    println!(
        "  notifications back->front: {:>7} ({back_lang} back sent; {front_lang} front woke {} times, armed rsp_event <= {} times)",
        back.sent, front.wakeups, front.arms
    );
    // A push notifies only when it crosses an event threshold the peer armed, and each armed
    // value is crossed at most once (plus the initial thresholds of 1 on each ring).
    assert!(front.sent <= back.arms + 2, "{what}: front notified more often than the back armed req_event");
    assert!(back.sent <= front.arms + 2, "{what}: back notified more often than the front armed rsp_event");
    // An eventfd coalesces notifications: never more wake-ups than notifications.
    assert!(back.wakeups <= front.sent, "{what}: back woke more often than notified");
    assert!(front.wakeups <= back.sent, "{what}: front woke more often than notified");
    // Suppression at work: far fewer notifications than requests.
    assert!(front.sent < slots / 4 && back.sent < slots / 4, "{what}: event suppression not effective");
}

/// The two interop runs each keep two processes busy; on small machines they would only slow
/// each other down.
static SERIAL: Mutex<()> = Mutex::new(());

struct Shared {
    region: MemfdRegion,
    /// Signalled by the front end, slept on by the back end.
    to_back: EventFd,
    /// Signalled by the back end, slept on by the front end.
    to_front: EventFd,
}

impl Shared {
    fn new() -> Self {
        Shared {
            region: MemfdRegion::new("pvio-c-interop", 2 * PAGE).expect("memfd"),
            to_back: EventFd::new().expect("eventfd"),
            to_front: EventFd::new().expect("eventfd"),
        }
    }
}

// --------------------------------------------------------------- Rust back end

#[test]
fn c_front_rust_back() {
    let exe = peer_or_skip!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sh = Shared::new();
    let start = Instant::now();
    let deadline = start + CHILD_TIMEOUT;
    let mut peer = Peer::spawn(exe, "front", &sh.region, &sh.to_front, &sh.to_back);
    // The C front end initializes both rings, then signals once (the xenstore handshake).
    sleep_until_event(&sh.to_back, &mut peer, deadline, &|| {
        "waiting for the C front end to initialize".into()
    });
    let events = rust_back(&sh, &mut peer, deadline);
    let exit = peer.finish(deadline);
    report("C front <-> Rust BackRing", &exit, true, events, start.elapsed());
}

fn rust_back(sh: &Shared, peer: &mut Peer, deadline: Instant) -> Events {
    let mem = sh.region.mem();
    let mut tx = BackRing::<NetifTxRequest, NetifTxResponse>::new(mem.slice(0, PAGE).unwrap()).unwrap();
    let mut rx = BackRing::<NetifRxRequest, NetifRxResponse>::new(mem.slice(PAGE, PAGE).unwrap()).unwrap();
    assert_eq!((tx.size(), rx.size()), (NET_TX_RING_SIZE, NET_RX_RING_SIZE));
    let mut ev = Events::default();
    let (mut tx_done, mut rx_done) = (0u32, 0u32);
    let mut tx_extra_next = false;
    let mut tx_reqs = [NetifTxRequest::default(); 64];
    let mut tx_rsps = [NetifTxResponse::default(); 64];
    let mut rx_reqs = [NetifRxRequest::default(); 64];
    let mut rx_rsps: Vec<NetifRxResponse> = Vec::with_capacity(65);

    while tx_done < SLOTS || rx_done < SLOTS {
        // Never spin forever, even if the rings keep claiming work that never comes.
        assert!(Instant::now() < deadline, "Rust back end: no completion within {CHILD_TIMEOUT:?}: tx done {tx_done}, rx done {rx_done}; {tx:?}; {rx:?}");
        let mut progress = false;

        // Transmit: answer every slot in order; the slot after a request flagged
        // NETTXF_extra_info is a GSO segment and gets NETIF_RSP_NULL.
        loop {
            let got = tx.pop_requests(&mut tx_reqs).expect("tx ring");
            if got == 0 {
                break;
            }
            for (req, rsp) in tx_reqs[..got].iter().zip(&mut tx_rsps) {
                let k = tx_done;
                assert!(k < SLOTS, "tx: more than {SLOTS} requests");
                if tx_extra_next {
                    assert!(is_extra(k), "tx slot {k}: extra info where the schedule has none");
                    check_extra("tx", k, req.as_bytes(), NetifExtraInfo::from_tx_slot(req), tx_extra(k));
                    tx_extra_next = false;
                } else {
                    assert_eq!(*req, tx_request(k), "tx request {k}");
                    tx_extra_next = req.flags.get() & nettxf::EXTRA_INFO != 0;
                }
                *rsp = tx_response(k);
                tx_done += 1;
            }
            assert_eq!(tx.queue_responses(&tx_rsps[..got]), got);
            progress = true;
        }
        let notify_tx = tx.push_responses();

        // Receive: fill buffer k; a GSO packet also takes buffer k + 1 for its extra info.
        loop {
            let got = rx.pop_requests(&mut rx_reqs).expect("rx ring");
            if got == 0 {
                break;
            }
            rx_rsps.clear();
            let mut reqs = rx_reqs[..got].iter().copied();
            while let Some(req) = reqs.next() {
                let k = rx_done;
                assert!(k < SLOTS, "rx: more than {SLOTS} requests");
                assert_eq!(req, rx_request(k), "rx request {k}");
                rx_rsps.push(rx_response(k));
                if has_extra(k) {
                    // The front end pushes requests in pairs: the second one must be there.
                    let next = match reqs.next() {
                        Some(r) => r,
                        None => {
                            rx.pop_request().expect("rx ring").expect("rx: extra-info buffer not published")
                        }
                    };
                    assert_eq!(next, rx_request(k + 1), "rx request {}", k + 1);
                    let (size, ty) = rx_extra(k + 1);
                    rx_rsps.push(NetifRxResponse::from_extra(&NetifExtraInfo::gso(ty, size)));
                    rx_done += 1;
                }
                rx_done += 1;
            }
            assert_eq!(rx.queue_responses(&rx_rsps), rx_rsps.len());
            progress = true;
        }
        let notify_rx = rx.push_responses();

        if notify_tx.or(notify_rx).send(&sh.to_front).expect("eventfd notify") {
            ev.sent += 1;
        }
        if progress || (tx_done == SLOTS && rx_done == SLOTS) {
            continue;
        }
        // Idle: arm req_event on both rings, re-check, sleep.
        ev.arms += u64::from(tx.unconsumed_requests().expect("tx ring") == 0);
        let work_tx = tx.final_check_for_requests().expect("tx ring");
        ev.arms += u64::from(rx.unconsumed_requests().expect("rx ring") == 0);
        let work_rx = rx.final_check_for_requests().expect("rx ring");
        if work_tx || work_rx {
            continue;
        }
        sleep_until_event(&sh.to_back, peer, deadline, &|| {
            format!("Rust back end idle: tx done {tx_done}, rx done {rx_done}; {tx:?}; {rx:?}")
        });
        ev.wakeups += 1;
    }
    ev
}

// -------------------------------------------------------------- Rust front end

#[test]
fn rust_front_c_back() {
    let exe = peer_or_skip!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sh = Shared::new();
    let mem = sh.region.mem();
    // The front end initializes the shared rings before the back end attaches.
    let tx = FrontRing::<NetifTxRequest, NetifTxResponse>::new(mem.slice(0, PAGE).unwrap()).unwrap();
    let rx = FrontRing::<NetifRxRequest, NetifRxResponse>::new(mem.slice(PAGE, PAGE).unwrap()).unwrap();
    let start = Instant::now();
    let deadline = start + CHILD_TIMEOUT;
    let mut peer = Peer::spawn(exe, "back", &sh.region, &sh.to_back, &sh.to_front);
    let events = rust_front(&sh, tx, rx, &mut peer, deadline);
    let exit = peer.finish(deadline);
    report("Rust FrontRing <-> C back", &exit, false, events, start.elapsed());
}

fn rust_front(
    sh: &Shared,
    mut tx: FrontRing<'_, NetifTxRequest, NetifTxResponse>,
    mut rx: FrontRing<'_, NetifRxRequest, NetifRxResponse>,
    peer: &mut Peer,
    deadline: Instant,
) -> Events {
    assert_eq!((tx.size(), rx.size()), (NET_TX_RING_SIZE, NET_RX_RING_SIZE));
    let mut ev = Events::default();
    let (mut tx_sent, mut tx_done, mut rx_sent, mut rx_done) = (0u32, 0u32, 0u32, 0u32);
    let mut rx_extra_next = false;
    let mut tx_reqs = [NetifTxRequest::default(); 64];
    let mut tx_rsps = [NetifTxResponse::default(); 64];

    while tx_done < SLOTS || rx_done < SLOTS {
        // Never spin forever, even if the rings keep claiming work that never comes.
        assert!(Instant::now() < deadline, "Rust front end: no completion within {CHILD_TIMEOUT:?}: tx done {tx_done}, rx done {rx_done}; {tx:?}; {rx:?}");
        let mut progress = false;

        // Transmit: batches of whole pairs, a GSO extra-info slot after every eighth packet.
        while tx_sent < SLOTS && tx.free_requests() >= 2 {
            let n = (tx.free_requests() as usize).min((SLOTS - tx_sent) as usize).min(tx_reqs.len()) & !1;
            for (i, slot) in tx_reqs[..n].iter_mut().enumerate() {
                let k = tx_sent + i as u32;
                *slot = if is_extra(k) {
                    let (size, ty) = tx_extra(k);
                    NetifTxRequest::from_extra(&NetifExtraInfo::gso(ty, size))
                } else {
                    tx_request(k)
                };
            }
            assert_eq!(tx.queue_requests(&tx_reqs[..n]), n);
            tx_sent += n as u32;
            progress = true;
        }
        let notify_tx = tx.push_requests();

        // Receive: post buffers one at a time, pushed in pairs.
        while rx_sent < SLOTS && rx.free_requests() >= 2 {
            for k in [rx_sent, rx_sent + 1] {
                rx.queue_request(&rx_request(k)).expect("rx ring has room");
            }
            rx_sent += 2;
            progress = true;
        }
        let notify_rx = rx.push_requests();

        if notify_tx.or(notify_rx).send(&sh.to_back).expect("eventfd notify") {
            ev.sent += 1;
        }

        loop {
            let got = tx.pop_responses(&mut tx_rsps).expect("tx ring");
            if got == 0 {
                break;
            }
            for rsp in &tx_rsps[..got] {
                assert!(tx_done < tx_sent, "tx: response {tx_done} to a request never sent");
                assert_eq!(*rsp, tx_response(tx_done), "tx response {tx_done}");
                tx_done += 1;
            }
            progress = true;
        }

        while let Some(rsp) = rx.pop_response().expect("rx ring") {
            let k = rx_done;
            assert!(k < rx_sent, "rx: response {k} to a request never sent");
            if rx_extra_next {
                assert!(is_extra(k), "rx slot {k}: extra info where the schedule has none");
                check_extra("rx", k, rsp.as_bytes(), NetifExtraInfo::from_rx_slot(&rsp), rx_extra(k));
                rx_extra_next = false;
            } else {
                assert_eq!(rsp, rx_response(k), "rx response {k}");
                rx_extra_next = rsp.flags.get() & netrxf::EXTRA_INFO != 0;
            }
            rx_done += 1;
            progress = true;
        }

        if progress || (tx_done == SLOTS && rx_done == SLOTS) {
            continue;
        }
        ev.arms += u64::from(tx.unconsumed_responses().expect("tx ring") == 0);
        let work_tx = tx.final_check_for_responses().expect("tx ring");
        ev.arms += u64::from(rx.unconsumed_responses().expect("rx ring") == 0);
        let work_rx = rx.final_check_for_responses().expect("rx ring");
        if work_tx || work_rx {
            continue;
        }
        sleep_until_event(&sh.to_front, peer, deadline, &|| {
            format!("Rust front end idle: tx sent {tx_sent} done {tx_done}, rx sent {rx_sent} done {rx_done}; {tx:?}; {rx:?}")
        });
        ev.wakeups += 1;
    }
    ev
}

// ------------------------------------------------------------------------ layout

/// Signedness of a field type, for comparison with C's `(typeof(f))-1 < 0`.
trait Signedness {
    const SIGNED: bool;
}
impl Signedness for u8 {
    const SIGNED: bool = false;
}
impl Signedness for U16 {
    const SIGNED: bool = false;
}
impl Signedness for U32 {
    const SIGNED: bool = false;
}
impl Signedness for I16 {
    const SIGNED: bool = true;
}
fn signed_of<T: Signedness>(_: &T) -> bool {
    T::SIGNED
}

#[test]
fn layout_matches_xen_headers() {
    let exe = peer_or_skip!();
    let out = Command::new(exe).arg("layout").output().expect("running xen_peer layout");
    assert!(out.status.success(), "xen_peer layout failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let mut c: BTreeMap<String, i64> = BTreeMap::new();
    for line in stdout.lines() {
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("bad layout line {line:?}"));
        let v = v.parse().unwrap_or_else(|_| panic!("bad layout value in {line:?}"));
        assert!(c.insert(k.to_owned(), v).is_none(), "duplicate layout key {k}");
    }

    let mut rust: Vec<(String, i64)> = Vec::new();
    let mut put = |k: &str, v: i64| rust.push((k.to_owned(), v));

    macro_rules! strukt {
        ($c:literal, $t:ty) => {
            put(concat!("size.", $c), size_of::<$t>() as i64);
            put(concat!("align.", $c), align_of::<$t>() as i64);
        };
    }
    // An integer field: offset, width, signedness (as the C side's FIELD()).
    macro_rules! field {
        ($c:literal, $t:ty, $cf:literal, $f:ident) => {{
            let v = <$t>::default();
            put(concat!("offset.", $c, ".", $cf), core::mem::offset_of!($t, $f) as i64);
            put(concat!("size.", $c, ".", $cf), size_of_val(&v.$f) as i64);
            put(concat!("signed.", $c, ".", $cf), i64::from(signed_of(&v.$f)));
        }};
    }

    strukt!("netif_tx_request", NetifTxRequest);
    field!("netif_tx_request", NetifTxRequest, "gref", gref);
    field!("netif_tx_request", NetifTxRequest, "offset", offset);
    field!("netif_tx_request", NetifTxRequest, "flags", flags);
    field!("netif_tx_request", NetifTxRequest, "id", id);
    field!("netif_tx_request", NetifTxRequest, "size", size);

    strukt!("netif_tx_response", NetifTxResponse);
    field!("netif_tx_response", NetifTxResponse, "id", id);
    field!("netif_tx_response", NetifTxResponse, "status", status);

    strukt!("netif_rx_request", NetifRxRequest);
    field!("netif_rx_request", NetifRxRequest, "id", id);
    field!("netif_rx_request", NetifRxRequest, "pad", pad);
    field!("netif_rx_request", NetifRxRequest, "gref", gref);

    strukt!("netif_rx_response", NetifRxResponse);
    field!("netif_rx_response", NetifRxResponse, "id", id);
    field!("netif_rx_response", NetifRxResponse, "offset", offset);
    field!("netif_rx_response", NetifRxResponse, "flags", flags);
    field!("netif_rx_response", NetifRxResponse, "status", status);

    strukt!("netif_extra_info", NetifExtraInfo);
    field!("netif_extra_info", NetifExtraInfo, "type", ty);
    field!("netif_extra_info", NetifExtraInfo, "flags", flags);
    put("offset.netif_extra_info.u", core::mem::offset_of!(NetifExtraInfo, u) as i64);
    put("size.netif_extra_info.u", size_of_val(&NetifExtraInfo::default().u) as i64);
    strukt!("netif_extra_info.u.gso", NetifGsoInfo);
    field!("netif_extra_info.u.gso", NetifGsoInfo, "size", size);
    field!("netif_extra_info.u.gso", NetifGsoInfo, "type", ty);
    field!("netif_extra_info.u.gso", NetifGsoInfo, "pad", pad);
    field!("netif_extra_info.u.gso", NetifGsoInfo, "features", features);
    put("size.netif_extra_info.u.mcast.addr", NetifExtraInfo::default().mcast_addr().len() as i64);
    put(
        "fits.netif_extra_info.in.netif_tx_request",
        i64::from(size_of::<NetifExtraInfo>() <= size_of::<NetifTxRequest>()),
    );
    put(
        "fits.netif_extra_info.in.netif_rx_response",
        i64::from(size_of::<NetifExtraInfo>() <= size_of::<NetifRxResponse>()),
    );

    // The shared-ring header: four unsigned 32-bit indices, 4 private bytes, entries at 64.
    for (name, off) in [
        ("req_prod", sring::REQ_PROD_OFFSET),
        ("req_event", sring::REQ_EVENT_OFFSET),
        ("rsp_prod", sring::RSP_PROD_OFFSET),
        ("rsp_event", sring::RSP_EVENT_OFFSET),
    ] {
        put(&format!("offset.netif_tx_sring.{name}"), off as i64);
        put(&format!("size.netif_tx_sring.{name}"), size_of::<u32>() as i64);
        put(&format!("signed.netif_tx_sring.{name}"), 0);
    }
    put("offset.netif_tx_sring.pvt", sring::PVT_OFFSET as i64);
    put("size.netif_tx_sring.pvt", 4);
    put("offset.netif_tx_sring.ring", sring::HEADER_LEN as i64);
    put("offset.netif_rx_sring.ring", sring::HEADER_LEN as i64);
    let tx_entry = sring::entry_size::<NetifTxRequest, NetifTxResponse>();
    let rx_entry = sring::entry_size::<NetifRxRequest, NetifRxResponse>();
    put("size.netif_tx_sring_entry", tx_entry as i64);
    put("size.netif_rx_sring_entry", rx_entry as i64);
    put("NET_TX_RING_SIZE.4096", i64::from(NET_TX_RING_SIZE));
    put("NET_RX_RING_SIZE.4096", i64::from(NET_RX_RING_SIZE));
    // Sizes of real rings over larger regions, as FrontRing computes them.
    for bytes in [8192usize, 65536] {
        let region = HeapRegion::new(bytes);
        let txr = FrontRing::<NetifTxRequest, NetifTxResponse>::new(region.mem()).unwrap();
        put(&format!("NET_TX_RING_SIZE.{bytes}"), i64::from(txr.size()));
        let rxr = FrontRing::<NetifRxRequest, NetifRxResponse>::new(region.mem()).unwrap();
        put(&format!("NET_RX_RING_SIZE.{bytes}"), i64::from(rxr.size()));
    }

    for (name, v) in [
        ("NETTXF_csum_blank", nettxf::CSUM_BLANK),
        ("NETTXF_data_validated", nettxf::DATA_VALIDATED),
        ("NETTXF_more_data", nettxf::MORE_DATA),
        ("NETTXF_extra_info", nettxf::EXTRA_INFO),
        ("NETRXF_data_validated", netrxf::DATA_VALIDATED),
        ("NETRXF_csum_blank", netrxf::CSUM_BLANK),
        ("NETRXF_more_data", netrxf::MORE_DATA),
        ("NETRXF_extra_info", netrxf::EXTRA_INFO),
        ("NETRXF_gso_prefix", netrxf::GSO_PREFIX),
    ] {
        put(name, i64::from(v));
    }
    for (name, v) in [
        ("NETIF_RSP_DROPPED", netif_rsp::DROPPED),
        ("NETIF_RSP_ERROR", netif_rsp::ERROR),
        ("NETIF_RSP_OKAY", netif_rsp::OKAY),
        ("NETIF_RSP_NULL", netif_rsp::NULL),
    ] {
        put(name, i64::from(v));
    }
    for (name, v) in [
        ("XEN_NETIF_EXTRA_TYPE_NONE", extra_type::NONE),
        ("XEN_NETIF_EXTRA_TYPE_GSO", extra_type::GSO),
        ("XEN_NETIF_EXTRA_TYPE_MCAST_ADD", extra_type::MCAST_ADD),
        ("XEN_NETIF_EXTRA_TYPE_MCAST_DEL", extra_type::MCAST_DEL),
        ("XEN_NETIF_EXTRA_TYPE_HASH", extra_type::HASH),
        ("XEN_NETIF_EXTRA_TYPE_MAX", extra_type::MAX),
        ("XEN_NETIF_EXTRA_FLAG_MORE", extra_flag::MORE),
        ("XEN_NETIF_GSO_TYPE_NONE", gso_type::NONE),
        ("XEN_NETIF_GSO_TYPE_TCPV4", gso_type::TCPV4),
        ("XEN_NETIF_GSO_TYPE_TCPV6", gso_type::TCPV6),
    ] {
        put(name, i64::from(v));
    }

    // Compare key by key, in both directions.
    let mut problems = Vec::new();
    let mut seen = BTreeMap::new();
    for (key, want) in &rust {
        assert!(seen.insert(key.clone(), *want).is_none(), "duplicate Rust key {key}");
        match c.get(key) {
            Some(got) if got == want => println!("  ok  {key:<48} C {got:>6}  Rust {want:>6}"),
            Some(got) => problems.push(format!("{key}: C {got}, Rust {want}")),
            None => problems.push(format!("{key}: not printed by the C side")),
        }
    }
    for key in c.keys().filter(|k| !seen.contains_key(*k)) {
        problems.push(format!("{key}: printed by the C side but not checked"));
    }
    // The "every defined flag" masks are the union of the C flags.
    let mask = |prefix: &str| c.iter().filter(|(k, _)| k.starts_with(prefix)).fold(0, |m, (_, v)| m | v);
    if mask("NETTXF_") != i64::from(nettxf::ALL) {
        problems.push(format!("nettxf::ALL {:#x} != union of NETTXF_* {:#x}", nettxf::ALL, mask("NETTXF_")));
    }
    if mask("NETRXF_") != i64::from(netrxf::ALL) {
        problems.push(format!("netrxf::ALL {:#x} != union of NETRXF_* {:#x}", netrxf::ALL, mask("NETRXF_")));
    }
    println!("layout: {} keys compared with Xen's C headers", rust.len());
    assert!(problems.is_empty(), "layout differs from Xen's headers:\n  {}", problems.join("\n  "));
}
