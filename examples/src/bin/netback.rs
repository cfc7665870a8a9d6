//! `netback`: the driver domain's half of the pair, as a process.
//!
//! ```text
//! netback --socket PATH --backend tap:NAME|afpacket:IFACE [--stats SECS] [--no-gro]
//!         [--no-gso] [--no-csum]
//! ```
//!
//! Listens on a Unix socket. A netfront that connects hands over its memory (a memfd holding
//! rings, grant table and buffers) and two eventfds in a versioned handshake that negotiates
//! features (`pvio_examples::handshake`); netback maps the memory, serves the rings with
//! `net::NetBack` and moves the guest's frames to and from the back-end device:
//!
//! - `tap:NAME` — a TAP device (created if needed) with a vnet header; its offloads
//!   (`TUNSETOFFLOAD`) follow what was negotiated, so the host kernel hands over TCP
//!   super-frames only to a guest that takes them;
//! - `afpacket:IFACE` — an existing interface through an `AF_PACKET` socket with
//!   `PACKET_VNET_HDR`.
//!
//! Transmitted payload goes to the device by reference: the kernel reads it straight out of
//! the guest's pages (`writev` with iovecs into netback's mapping of guest memory, the grant
//! pinned meanwhile); only the headers were copied and validated.
//!
//! When the front end goes away (its end of the socket hangs up — it exited or was killed),
//! or breaks the protocol (the vif is disconnected with a logged reason), netback drops
//! everything of that guest — rings, grant state, the memory mapping, the eventfds — and
//! waits for the next front end. The device stays. Statistics every `--stats` seconds
//! (packets, bytes, drops, errors per direction); SIGINT/SIGTERM stop it cleanly.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pvio_examples::afpacket::AfPacket;
use pvio_examples::daemon::{Counters, Shutdown, StatsPrinter};
use pvio_examples::handshake::{self, back_confirm, back_handshake, Channel, Features, Listener, Negotiated};
use pvio_examples::net::back::PollError;
use pvio_examples::net::layout;
use pvio_examples::net::{
    BackOptions, GuestMemory, NetBack, Nic, NicCaps, RxInfo, TxFrame, VifConfig, VifState,
};
use pvio_examples::tap::{Tap, TapOffloads};
use pvio_grant::{DomId, PAGE_SIZE};
use pvio_offload::OffloadMeta;
use pvio_ring::{EventFd, Notifier};

const USAGE: &str = "usage: netback --socket PATH --backend tap:NAME|afpacket:IFACE [--stats SECS] \
                     [--no-gro] [--no-gso] [--no-csum]";

/// This back end's domain id.
const BACKEND_DOMID: DomId = DomId(0);

struct Args {
    socket: PathBuf,
    backend: String,
    stats: f64,
    gro: bool,
    features: Features,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        socket: PathBuf::new(),
        backend: String::new(),
        stats: 5.0,
        gro: true,
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
            "--backend" => args.backend = it.next().ok_or(USAGE)?,
            "--stats" => args.stats = it.next().ok_or(USAGE)?.parse().map_err(|_| USAGE)?,
            "--no-gro" => args.gro = false,
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
    if args.socket.as_os_str().is_empty() || args.backend.is_empty() {
        return Err(USAGE.into());
    }
    Ok(Some(args))
}

/// The device behind netback.
#[derive(Debug)]
enum Device {
    Tap(Tap),
    AfPacket(AfPacket),
}

impl Device {
    fn open(spec: &str) -> io::Result<Device> {
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad back end {spec:?}: {USAGE}"));
        let (kind, name) = spec.split_once(':').ok_or_else(bad)?;
        let dev = match kind {
            "tap" => Device::Tap(Tap::open(name, TapOffloads::empty())?),
            "afpacket" => Device::AfPacket(AfPacket::open(name)?),
            _ => return Err(bad()),
        };
        match &dev {
            Device::Tap(t) => t.set_nonblocking(true)?,
            Device::AfPacket(p) => p.set_nonblocking(true)?,
        }
        Ok(dev)
    }

    fn describe(&self) -> String {
        match self {
            Device::Tap(t) => format!("tap:{}", t.name()),
            Device::AfPacket(p) => {
                format!("afpacket:{} (vnet header {} bytes)", p.ifname(), p.vnet_hdr_len())
            }
        }
    }

    /// Sets the kernel's offloads to what the guest negotiated (TAP only: an AF_PACKET
    /// socket has no such switch; what arrives there is the interface's business).
    fn set_offloads(&mut self, n: &Negotiated) -> io::Result<()> {
        match self {
            Device::Tap(t) => t.set_offloads(TapOffloads::from_negotiated(n)),
            Device::AfPacket(_) => Ok(()),
        }
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<(OffloadMeta, usize)> {
        match self {
            Device::Tap(t) => t.recv(buf),
            Device::AfPacket(p) => p.recv(buf),
        }
    }

    /// # Safety
    /// As [`Tap::send_raw`].
    unsafe fn send_raw(&self, meta: &OffloadMeta, iov: &[libc::iovec]) -> io::Result<usize> {
        match self {
            // SAFETY: the caller's guarantee, passed on.
            Device::Tap(t) => unsafe { t.send_raw(meta, iov) },
            // SAFETY: as above.
            Device::AfPacket(p) => unsafe { p.send_raw(meta, iov) },
        }
    }

    fn as_raw_fd(&self) -> RawFd {
        match self {
            Device::Tap(t) => t.as_raw_fd(),
            Device::AfPacket(p) => p.as_raw_fd(),
        }
    }
}

/// Why a device call failed in a way that stops netback (not a frame the kernel refused).
#[derive(Debug, thiserror::Error)]
#[error("device: {0}")]
struct DeviceError(io::Error);

/// The device as `NetBack`'s NIC, for one guest session: payload by reference into the
/// guest memory mapping at `[base, base + len)`, where `PayloadRef::iova` is an address
/// (netback registers the guest with `iova_base` = its mapping's address).
struct HostNic<'d> {
    dev: &'d Device,
    base: u64,
    len: u64,
    to_host: &'d Counters,
    from_host: &'d Counters,
}

impl Nic for HostNic<'_> {
    type Error = DeviceError;

    fn caps(&self) -> NicCaps {
        // The kernel behind a TAP or packet socket segments and checksums what it is given
        // (in software if the real NIC cannot), so the super-frame goes through whole.
        NicCaps::TSO | NicCaps::TX_CSUM
    }

    fn transmit(&mut self, frame: &TxFrame<'_, '_>) -> Result<(), DeviceError> {
        let mut iov = Vec::with_capacity(frame.payload.len() + 1);
        iov.push(libc::iovec {
            iov_base: frame.header.as_ptr() as *mut libc::c_void,
            iov_len: frame.header.len(),
        });
        for p in frame.payload {
            // `iova` is the address of the page in our mapping (identity IOMMU); check that
            // the bytes lie inside the mapping before handing the address to the kernel.
            let start = p.iova.checked_add(p.offset as u64);
            let end = start.and_then(|s| s.checked_add(p.len as u64));
            match (start, end) {
                (Some(s), Some(e))
                    if s >= self.base && e <= self.base + self.len && p.offset + p.len <= p.page.len() =>
                {
                    iov.push(libc::iovec { iov_base: s as *mut libc::c_void, iov_len: p.len });
                }
                _ => {
                    // A back-end bug, not the guest's: refuse the frame, keep running.
                    self.to_host.error();
                    return Ok(());
                }
            }
        }
        // SAFETY: the header iovec covers `frame.header` (borrowed for this call); every
        // payload iovec was checked to lie inside our mapping of guest memory, which stays
        // mapped while this session's `NetBack` (which borrows it) exists, and its grant is
        // pinned by `NetBack` until `transmit` returns. The guest may change the bytes
        // meanwhile; that changes only the frame it sends.
        match unsafe { self.dev.send_raw(&frame.meta, &iov) } {
            Ok(_) => self.to_host.packet(frame.len()),
            // The interface is down, or the kernel is out of buffers: a drop.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EIO | libc::ENOBUFS | libc::EAGAIN | libc::ENETDOWN)
                ) =>
            {
                self.to_host.drop_one()
            }
            // The kernel refused the frame (metadata it does not accept): an error.
            Err(_) => self.to_host.error(),
        }
        Ok(())
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<Option<RxInfo>, DeviceError> {
        loop {
            match self.dev.recv(buf) {
                Ok((meta, len)) => {
                    self.from_host.packet(len);
                    return Ok(Some(RxInfo { len, meta }));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => self.from_host.error(),
                Err(e) => return Err(DeviceError(e)),
            }
        }
    }
}

/// How a session ended.
enum End {
    /// The front end hung up.
    PeerGone,
    /// We disconnected it for breaking the protocol.
    Disconnected(String),
    /// SIGINT/SIGTERM.
    Shutdown,
}

const OUT_OF_SESSION: Duration = Duration::from_millis(500);

/// Traffic through the device, over all sessions.
#[derive(Default)]
struct Totals {
    to_host: Counters,
    from_host: Counters,
}

struct Ctx<'a> {
    args: &'a Args,
    shutdown: &'a Shutdown,
    printer: std::cell::RefCell<StatsPrinter>,
    totals: Totals,
}

impl Ctx<'_> {
    fn tick(&self, force: bool) {
        let dirs = [("guest->host", &self.totals.to_host), ("host->guest", &self.totals.from_host)];
        let mut p = self.printer.borrow_mut();
        if force {
            p.print(&dirs);
        } else {
            p.tick(&dirs);
        }
    }
}

/// Checks that the front end laid out its memory as `net::layout` says.
fn check_layout(c: &handshake::Connect) -> Result<(), String> {
    let want = [
        ("mem-frames", c.mem_frames, (layout::REGION_LEN / PAGE_SIZE) as u32),
        ("tx-ring-frame", c.tx_ring_frame, layout::TX_RING_FRAME),
        ("rx-ring-frame", c.rx_ring_frame, layout::RX_RING_FRAME),
        ("grant-table-frame", c.grant_table_frame, layout::GNTTAB_FRAME),
        ("grant-entries", c.grant_entries, layout::GNTTAB_ENTRIES as u32),
    ];
    for (key, got, expected) in want {
        if got != expected {
            return Err(format!("{key}={got}, but this back end's layout has {expected}"));
        }
    }
    Ok(())
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

fn pfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// Whether the control socket says the front end is gone (hangup, error, or an unexpected
/// message — the only thing it may still send is an `error` before closing).
fn peer_left(chan: &Channel) -> Option<String> {
    match chan.peer_gone() {
        Ok(true) => return Some("hung up".into()),
        Ok(false) => {}
        Err(e) => return Some(format!("control socket: {e}")),
    }
    match handshake::poll_one(chan.as_raw_fd(), libc::POLLIN, Some(Duration::ZERO)) {
        Ok(0) => None,
        Ok(_) => Some(match chan.recv(Some(Duration::ZERO)) {
            Ok((handshake::Message::Error { reason }, _)) => format!("said: {reason}"),
            Ok((m, _)) => format!("sent an unexpected {m:?}"),
            Err(e) => e.to_string(),
        }),
        Err(e) => Some(format!("control socket: {e}")),
    }
}

/// Serves one front end from handshake to departure. Everything of the guest is dropped when
/// this returns.
fn session(chan: &Channel, dev: &mut Device, ctx: &Ctx<'_>) -> Result<End, String> {
    let (connect, fds, negotiated) = back_handshake(chan, ctx.args.features).map_err(|e| e.to_string())?;
    if let Err(e) = check_layout(&connect) {
        chan.send_error(&e);
        return Err(e);
    }
    let checked = handshake::check_sealed(fds.mem.as_fd())
        .and_then(|()| handshake::check_eventfd(fds.to_back.as_fd()))
        .and_then(|()| handshake::check_eventfd(fds.to_front.as_fd()));
    if let Err(e) = checked {
        chan.send_error(&e);
        return Err(e);
    }
    let guest =
        GuestMemory::from_fd(fds.mem, layout::REGION_LEN).map_err(|e| format!("map guest memory: {e}"))?;
    let to_back = EventFd::from_fd(fds.to_back).map_err(|e| e.to_string())?;
    let to_front = EventFd::from_fd(fds.to_front).map_err(|e| e.to_string())?;
    dev.set_offloads(&negotiated).map_err(|e| format!("device offloads: {e}"))?;
    let dev: &Device = dev;
    let nic = HostNic {
        dev,
        base: guest.addr(),
        len: guest.len() as u64,
        to_host: &ctx.totals.to_host,
        from_host: &ctx.totals.from_host,
    };
    let opts = BackOptions { gro: ctx.args.gro, ..BackOptions::default() };
    let mut back = NetBack::new(BACKEND_DOMID, nic, opts);
    let vif = back
        .connect(VifConfig {
            domid: DomId(connect.domid),
            mac: connect.mac,
            mem: guest.mem(),
            memfd: guest.fd(),
            notify: &to_front,
            flipper: None,
            iova_base: guest.addr(),
            rx_gso: negotiated.gso_tcpv4 || negotiated.gso_tcpv6,
        })
        .map_err(|e| {
            chan.send_error(&e.to_string());
            format!("attach: {e}")
        })?;
    back_confirm(chan, &negotiated).map_err(|e| e.to_string())?;
    let m = connect.mac;
    eprintln!(
        "netback: connected: domain {} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {:?}",
        connect.domid, m[0], m[1], m[2], m[3], m[4], m[5], negotiated
    );
    // Anything the front end queued before we attached.
    let _ = to_front.notify();

    let mut rounds = 0u32;
    let mut last_dropped = 0u64;
    let end = loop {
        let work = back.poll().map_err(|e| match e {
            PollError::Nic(e) => e.to_string(),
            PollError::Notify(e) => format!("notify: {e}"),
        })?;
        if let Some(s) = back.vif_stats(vif) {
            for _ in last_dropped..s.rx_dropped {
                ctx.totals.from_host.drop_one();
            }
            last_dropped = s.rx_dropped;
        }
        if let Some(VifState::Disconnected(e)) = back.vif_state(vif) {
            ctx.totals.to_host.error();
            chan.send_error(&e.to_string());
            break End::Disconnected(e.to_string());
        }
        rounds = rounds.wrapping_add(1);
        if work.any() && rounds % 64 != 0 {
            continue;
        }
        ctx.tick(false);
        if ctx.shutdown.requested() {
            break End::Shutdown;
        }
        if let Some(why) = peer_left(chan) {
            eprintln!("netback: front end {why}");
            break End::PeerGone;
        }
        if work.any() || back.prepare_to_wait() {
            continue;
        }
        let dev_events = if back.rx_ready() { libc::POLLIN } else { 0 };
        let mut fds = [
            pfd(to_back.as_fd().as_raw_fd(), libc::POLLIN),
            pfd(dev.as_raw_fd(), dev_events),
            pfd(chan.as_raw_fd(), libc::POLLIN | libc::POLLRDHUP),
            pfd(ctx.shutdown.as_raw_fd(), libc::POLLIN),
        ];
        poll_fds(&mut fds, OUT_OF_SESSION).map_err(|e| format!("poll: {e}"))?;
        let _ = to_back.drain();
    };
    drop(back);
    drop(guest);
    Ok(end)
}

fn run() -> Result<(), String> {
    let Some(args) = parse_args()? else { return Ok(()) };
    let shutdown = Shutdown::install().map_err(|e| format!("signals: {e}"))?;
    let mut dev = Device::open(&args.backend).map_err(|e| format!("open {}: {e}", args.backend))?;
    let listener =
        Listener::bind(&args.socket).map_err(|e| format!("listen on {}: {e}", args.socket.display()))?;
    eprintln!("netback: listening on {} with back end {}", args.socket.display(), dev.describe());
    let ctx = Ctx {
        args: &args,
        shutdown: &shutdown,
        printer: StatsPrinter::new("netback", Duration::from_secs_f64(args.stats.max(0.0))).into(),
        totals: Totals::default(),
    };
    while !shutdown.requested() {
        let mut fds = [pfd(listener.as_raw_fd(), libc::POLLIN), pfd(shutdown.as_raw_fd(), libc::POLLIN)];
        poll_fds(&mut fds, OUT_OF_SESSION).map_err(|e| format!("poll: {e}"))?;
        ctx.tick(false);
        let Some(chan) = listener.accept(Some(Duration::ZERO)).map_err(|e| format!("accept: {e}"))? else {
            continue;
        };
        match session(&chan, &mut dev, &ctx) {
            Ok(End::Shutdown) => break,
            Ok(End::PeerGone) => {
                eprintln!("netback: released the guest's memory, rings and event channels; waiting for a new front end")
            }
            Ok(End::Disconnected(why)) => eprintln!(
                "netback: disconnected the front end ({why}); released its memory, rings and event channels; \
                 waiting for a new front end"
            ),
            Err(e) => eprintln!("netback: session failed: {e}; waiting for a new front end"),
        }
        // Dropping the channel closes our end: a front end still alive sees the hangup.
        drop(chan);
    }
    ctx.tick(true);
    eprintln!("netback: stopped");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netback: {e}");
            ExitCode::FAILURE
        }
    }
}
