//! `netfront`: the guest's half of the pair, as a process.
//!
//! ```text
//! netfront --socket PATH --tap NAME [--domid N] [--mac MAC] [--stats SECS] [--no-gso] [--no-csum]
//! ```
//!
//! The guest's MAC address is configuration, as a Xen vif's `mac=` is: `--mac`, by default
//! `00:16:3e:00:HH:LL` (Xen's prefix and the domain id). netfront gives it to its TAP device
//! when it creates it and tells netback in the handshake, which delivers unicast frames for
//! that address (and broadcast/multicast) to this guest.
//!
//! Creates a TAP device with a vnet header (run it inside the "guest" network namespace:
//! `ip netns exec guest netfront ...`), so the guest kernel's TSO and checksum offloads reach
//! netfront as metadata. For each back end it connects to, it creates the guest's memory (a
//! memfd holding the Xen tx/rx rings, the grant table and the packet buffers, laid out as
//! `net::layout` says) and two eventfds, hands them to netback over the Unix socket in the
//! versioned handshake, sets the TAP's offloads (`TUNSETOFFLOAD`) to what was negotiated,
//! and then moves frames: TAP → granted transmit buffers → tx ring; rx ring → posted receive
//! buffers → TAP.
//!
//! If netback goes away (the socket hangs up) or answers with something impossible, netfront
//! drops that memory, its rings, grants and eventfds, and connects again when a back end
//! listens; the TAP device stays. Statistics every `--stats` seconds; SIGINT/SIGTERM stop it
//! cleanly.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pvio_examples::daemon::{Counters, Shutdown, StatsPrinter};
use pvio_examples::handshake::{self, front_handshake, Channel, Connect, Features};
use pvio_examples::net::layout;
use pvio_examples::net::{FrontError, GuestMemory, NetFront};
use pvio_examples::tap::{Tap, TapOffloads, MAX_FRAME};
use pvio_grant::{DomId, PAGE_SIZE};
use pvio_offload::OffloadMeta;
use pvio_ring::{EventFd, Notifier};

const USAGE: &str =
    "usage: netfront --socket PATH --tap NAME [--domid N] [--mac MAC] [--stats SECS] [--no-gso] [--no-csum]";

/// The back end's domain id (netback runs as domain 0).
const BACKEND_DOMID: DomId = DomId(0);
/// Frames moved per direction before looking at the other one.
const BATCH: usize = 64;
/// How long to sleep at most (the control socket and signals are polled too).
const IDLE: Duration = Duration::from_millis(500);

struct Args {
    socket: PathBuf,
    tap: String,
    domid: u16,
    mac: Option<[u8; 6]>,
    stats: f64,
    features: Features,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        socket: PathBuf::new(),
        tap: String::new(),
        domid: 1,
        mac: None,
        stats: 5.0,
        features: Features::SG
            | Features::GSO_TCPV4
            | Features::GSO_TCPV6
            | Features::RX_COPY
            | Features::IPV6_CSUM_OFFLOAD,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => args.socket = it.next().ok_or(USAGE)?.into(),
            "--tap" => args.tap = it.next().ok_or(USAGE)?,
            "--domid" => args.domid = it.next().ok_or(USAGE)?.parse().map_err(|_| USAGE)?,
            "--mac" => {
                let v = it.next().ok_or(USAGE)?;
                args.mac = Some(handshake::parse_mac(&v).ok_or(format!("bad --mac {v:?}"))?);
            }
            "--stats" => args.stats = it.next().ok_or(USAGE)?.parse().map_err(|_| USAGE)?,
            "--no-gso" => args.features -= Features::GSO_TCPV4 | Features::GSO_TCPV6,
            "--no-csum" => {
                args.features |= Features::NO_CSUM_OFFLOAD;
                args.features -= Features::IPV6_CSUM_OFFLOAD;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.socket.as_os_str().is_empty() || args.tap.is_empty() {
        return Err(USAGE.into());
    }
    if args.domid == BACKEND_DOMID.0 || args.domid >= DomId::SELF.0 {
        return Err(format!("--domid {} is reserved", args.domid));
    }
    Ok(Some(args))
}

/// Traffic through the TAP, over all sessions.
#[derive(Default)]
struct Totals {
    /// Guest kernel → rings.
    tx: Counters,
    /// Rings → guest kernel.
    rx: Counters,
}

fn pfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    // SAFETY: `fds` is a live slice of pollfd of the length passed.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout.as_millis() as i32) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// How a session ended.
enum End {
    /// The back end hung up (or said why it gave up).
    PeerGone(String),
    /// The back end broke the protocol.
    Broken(FrontError),
    /// SIGINT/SIGTERM.
    Shutdown,
}

/// Connects to the back end, retrying until one listens (or we are asked to stop).
fn connect(args: &Args, shutdown: &Shutdown) -> Option<Channel> {
    let mut said = false;
    while !shutdown.requested() {
        match Channel::connect(&args.socket) {
            Ok(c) => return Some(c),
            Err(e) => {
                if !said {
                    eprintln!("netfront: waiting for a back end at {} ({e})", args.socket.display());
                    said = true;
                }
                let _ =
                    handshake::poll_one(shutdown.as_raw_fd(), libc::POLLIN, Some(Duration::from_millis(200)));
            }
        }
    }
    None
}

fn session(
    chan: &Channel,
    tap: &mut Tap,
    args: &Args,
    shutdown: &Shutdown,
    totals: &Totals,
    printer: &mut StatsPrinter,
) -> Result<End, String> {
    // Sealed against shrinking and growing before anyone maps it: netback refuses anything
    // else, and the back end cannot truncate it under us either.
    let memfd =
        handshake::sealed_memfd("pvio-netfront", layout::REGION_LEN).map_err(|e| format!("memfd: {e}"))?;
    let guest = GuestMemory::from_fd(memfd, layout::REGION_LEN).map_err(|e| format!("guest memory: {e}"))?;
    let mut front = NetFront::new(guest.mem(), BACKEND_DOMID).map_err(|e| format!("rings: {e}"))?;
    let to_back = EventFd::new().map_err(|e| e.to_string())?;
    let to_front = EventFd::new().map_err(|e| e.to_string())?;
    front.post_rx().map_err(|e| format!("post rx: {e}"))?;
    let connect = Connect {
        features: args.features,
        mem_frames: (layout::REGION_LEN / PAGE_SIZE) as u32,
        tx_ring_frame: layout::TX_RING_FRAME,
        rx_ring_frame: layout::RX_RING_FRAME,
        grant_table_frame: layout::GNTTAB_FRAME,
        grant_entries: layout::GNTTAB_ENTRIES as u32,
        domid: args.domid,
        mac: tap.mac().map_err(|e| format!("MAC of {}: {e}", tap.name()))?,
    };
    let memfd = guest.fd().ok_or("guest memory has no memfd")?;
    let negotiated = front_handshake(chan, &connect, [memfd, to_back.as_fd(), to_front.as_fd()])
        .map_err(|e| format!("handshake: {e}"))?;
    tap.set_offloads(TapOffloads::from_negotiated(&negotiated)).map_err(|e| format!("TAP offloads: {e}"))?;
    eprintln!("netfront: connected as domain {} through {}: {:?}", args.domid, tap.name(), negotiated);

    let mut buf = vec![0u8; MAX_FRAME];
    // A frame read from the TAP that did not fit in the ring yet.
    let mut pending: Option<(OffloadMeta, usize)> = None;
    let mut rx = Vec::with_capacity(MAX_FRAME);
    let mut last_check = Instant::now();
    let end = loop {
        let step = (|| -> Result<bool, FrontError> {
            let mut did = front.reclaim()? > 0;
            // Transmit: TAP → rings.
            for _ in 0..BATCH {
                let (meta, len) = match pending.take() {
                    Some(p) => p,
                    None => match tap.recv(&mut buf) {
                        Ok(p) => p,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            totals.tx.error();
                            continue;
                        }
                    },
                };
                match front.send(&[&buf[..len]], &meta) {
                    Ok(true) => totals.tx.packet(len),
                    Ok(false) => {
                        pending = Some((meta, len));
                        break;
                    }
                    // A frame netif cannot carry (too large, metadata it cannot say).
                    Err(FrontError::FrameTooLarge { .. } | FrontError::Meta(_)) => totals.tx.error(),
                    Err(e) => return Err(e),
                }
                did = true;
            }
            // Receive: rings → TAP.
            for _ in 0..BATCH {
                let Some(pkt) = front.receive(&mut rx)? else { break };
                did = true;
                match tap.send(&pkt.meta, &rx[..pkt.len]) {
                    Ok(_) => totals.rx.packet(pkt.len),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::ENOBUFS | libc::EAGAIN)) => {
                        totals.rx.drop_one()
                    }
                    Err(_) => totals.rx.error(),
                }
            }
            front.post_rx()?;
            Ok(did)
        })();
        let did = match step {
            Ok(d) => d,
            Err(e) => break End::Broken(e),
        };
        if front.flush().is_needed() {
            to_back.notify().map_err(|e| format!("notify: {e}"))?;
            front.note_event();
        }
        if did && last_check.elapsed() < Duration::from_millis(50) {
            continue;
        }
        last_check = Instant::now();
        printer.tick(&[("guest->back", &totals.tx), ("back->guest", &totals.rx)]);
        if shutdown.requested() {
            break End::Shutdown;
        }
        match chan.peer_gone() {
            Ok(true) => break End::PeerGone("hung up".into()),
            Ok(false) => {}
            Err(e) => break End::PeerGone(e.to_string()),
        }
        if handshake::poll_one(chan.as_raw_fd(), libc::POLLIN, Some(Duration::ZERO)).unwrap_or(0) != 0 {
            let why = match chan.recv(Some(Duration::ZERO)) {
                Ok((handshake::Message::Error { reason }, _)) => format!("said: {reason}"),
                Ok((m, _)) => format!("sent an unexpected {m:?}"),
                Err(e) => e.to_string(),
            };
            break End::PeerGone(why);
        }
        if did {
            continue;
        }
        // Going idle: re-arm the response events and re-check, so nothing published after
        // the last look is slept through.
        match (front.final_check_tx(), front.final_check_rx()) {
            (Ok(false), Ok(false)) => {}
            (Ok(_), Ok(_)) => continue,
            (Err(e), _) | (_, Err(e)) => break End::Broken(e),
        }
        let tap_events = if pending.is_none() { libc::POLLIN } else { 0 };
        let mut fds = [
            pfd(tap.as_raw_fd(), tap_events),
            pfd(to_front.as_raw_fd(), libc::POLLIN),
            pfd(chan.as_raw_fd(), libc::POLLIN | libc::POLLRDHUP),
            pfd(shutdown.as_raw_fd(), libc::POLLIN),
        ];
        poll_fds(&mut fds, IDLE).map_err(|e| format!("poll: {e}"))?;
        let _ = to_front.drain();
    };
    // Everything of this connection goes now: the front end (its grants end with the
    // memory), the memory itself, the eventfds.
    drop(front);
    drop(guest);
    Ok(end)
}

fn run() -> Result<(), String> {
    let Some(args) = parse_args()? else { return Ok(()) };
    let shutdown = Shutdown::install().map_err(|e| format!("signals: {e}"))?;
    // No offloads until a back end agreed to some.
    let mut tap = Tap::open(&args.tap, TapOffloads::empty()).map_err(|e| format!("TAP {}: {e}", args.tap))?;
    tap.set_nonblocking(true).map_err(|e| e.to_string())?;
    let [hi, lo] = args.domid.to_be_bytes();
    let mac = args.mac.unwrap_or([0x00, 0x16, 0x3e, 0x00, hi, lo]);
    if let Err(e) = tap.set_mac(mac) {
        // A persistent device that is already up keeps its address; netfront reports
        // whatever the device has.
        eprintln!("netfront: cannot set the MAC of {}: {e}", tap.name());
    }
    eprintln!("netfront: TAP {} ready", tap.name());
    let totals = Totals::default();
    let mut printer = StatsPrinter::new("netfront", Duration::from_secs_f64(args.stats.max(0.0)));
    while let Some(chan) = connect(&args, &shutdown) {
        match session(&chan, &mut tap, &args, &shutdown, &totals, &mut printer) {
            Ok(End::Shutdown) => break,
            Ok(End::PeerGone(why)) => {
                eprintln!(
                    "netfront: back end gone ({why}); released memory, rings, grants and event channels"
                )
            }
            Ok(End::Broken(e)) => {
                chan.send_error(&e.to_string());
                eprintln!("netfront: back end broke the protocol ({e}); released everything")
            }
            Err(e) => eprintln!("netfront: session failed: {e}"),
        }
        drop(chan);
        // Until a new back end negotiates, the guest kernel may not hand us super-frames.
        let _ = tap.set_offloads(TapOffloads::empty());
        if !shutdown.requested() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    printer.print(&[("guest->back", &totals.tx), ("back->guest", &totals.rx)]);
    eprintln!("netfront: stopped");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netfront: {e}");
            ExitCode::FAILURE
        }
    }
}
