//! Real TCP through the pair: the kernel's own TCP stacks at both ends, pvio in between.
//!
//! ```text
//!  netns "guest"                                          netns "host"
//!  ping / iperf3 / sender ─► TAP pvf0 ─► netfront ═rings═► netback ─► TAP pvb0 ─► stack
//!                          (vnet hdr)   (grants, memfd,     (header copy,  (vnet hdr)
//!                                        eventfds over a     payload by
//!                                        Unix socket)        reference)
//! ```
//!
//! Checked: ping both ways; iperf3 from the guest namespace in both directions (it must
//! complete and move data); 100 MB each way through a plain TCP connection whose SHA-256 is
//! computed independently at the sending and the receiving end and compared; the netback
//! counters show no errors. The `afpacket:` back end gets the same ping and a smaller
//! transfer. A second test kills netfront (SIGKILL, no goodbye) and checks that netback
//! notices, unmaps every page of the dead guest, closes its descriptors and serves a new
//! netfront; then kills netback and checks netfront notices and reconnects to a new one.
//!
//! Needs root, `/dev/net/tun`, `ip`, `ping` and `iperf3`; prints `skipped: <reason>` and
//! passes without them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvio_examples::tap::NetnsGuard;
use sha2::{Digest, Sha256};

const GUEST_IP: &str = "10.77.0.1";
const HOST_IP: &str = "10.77.0.2";
const TRANSFER: usize = 100 << 20;
/// The host-side TAP's address in the peer-death test (fixed across netback restarts).
const HOST_MAC: &str = "02:00:00:77:00:02";

fn find_in_path(prog: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|d| Path::new(d).join(prog).is_file());
    found
}

fn skip_reason() -> Option<String> {
    // SAFETY: `geteuid` has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces and TAP devices)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    for prog in ["ip", "ping", "iperf3"] {
        if !find_in_path(prog) {
            return Some(format!("`{prog}` is not installed"));
        }
    }
    None
}

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("pvio-{tag}-{}", std::process::id());
        let _ = run("ip", &["netns", "del", &name]);
        run("ip", &["netns", "add", &name]).unwrap();
        run("ip", &["-n", &name, "link", "set", "lo", "up"]).unwrap();
        Netns { name }
    }

    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    fn exec(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    fn spawn(&self, args: &[&str]) -> Daemon {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        Daemon::spawn("ip", &all)
    }

    /// Waits until interface `dev` exists, then gives it `addr` and brings it up.
    fn configure(&self, dev: &str, addr: &str) {
        self.configure_mac(dev, addr, None)
    }

    /// As `configure`, and sets the MAC first: a host-side device that a restarted netback
    /// creates anew keeps the address the guest's neighbour cache knows, as a real NIC would.
    fn configure_mac(&self, dev: &str, addr: &str, mac: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ip(&["link", "show", dev]).is_err() {
            assert!(Instant::now() < deadline, "{dev} never appeared in {}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(mac) = mac {
            self.ip(&["link", "set", dev, "address", mac]).unwrap();
        }
        self.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]).unwrap();
        self.ip(&["link", "set", dev, "up"]).unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A child process whose stderr is collected line by line.
struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    seen: usize,
}

impl Daemon {
    fn spawn(cmd: &str, args: &[&str]) -> Daemon {
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (err, l) = (child.stderr.take().unwrap(), Arc::clone(&log));
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("    | {line}");
                l.lock().unwrap().push(line);
            }
        });
        Daemon { child, log, seen: 0 }
    }

    /// Waits for a stderr line containing `pat` (after those matched before); returns it.
    fn wait_for(&mut self, pat: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let log = self.log.lock().unwrap();
                if let Some(i) = log[self.seen..].iter().position(|l| l.contains(pat)) {
                    self.seen += i + 1;
                    return log[self.seen - 1].clone();
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "exited ({st}) before printing {pat:?}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {pat:?} within {timeout:?}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The pid of the program `ip netns exec` became (it execs, keeping the pid).
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&mut self, sig: libc::c_int) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// The last statistics line (the one printed at exit).
    fn last_stats(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter().rev().find(|l| l.contains(" errors")).cloned().unwrap_or_default()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "did not stop on SIGTERM; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn socket_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pvio-{tag}-{}.sock", std::process::id()))
}

fn netback(ns: &Netns, sock: &Path, backend: &str) -> Daemon {
    let mut d = ns.spawn(&[
        env!("CARGO_BIN_EXE_netback"),
        "--socket",
        sock.to_str().unwrap(),
        "--backend",
        backend,
        "--stats",
        "2",
    ]);
    d.wait_for("listening", Duration::from_secs(10));
    d
}

fn netfront(ns: &Netns, sock: &Path, tap: &str) -> Daemon {
    netfront_with(ns, sock, tap, &[])
}

fn netfront_with(ns: &Netns, sock: &Path, tap: &str, extra: &[&str]) -> Daemon {
    let mut args = vec![
        env!("CARGO_BIN_EXE_netfront"),
        "--socket",
        sock.to_str().unwrap(),
        "--tap",
        tap,
        "--stats",
        "2",
    ];
    args.extend_from_slice(extra);
    ns.spawn(&args)
}

fn ping(ns: &Netns, to: &str) {
    // A few tries for the first, while neighbours are resolved.
    ns.exec(&["ping", "-c", "5", "-i", "0.2", "-W", "2", "-w", "15", to])
        .unwrap_or_else(|e| panic!("ping {to}: {e}"));
}

/// Runs iperf3 from `guest` to a server in `host`; returns Gbit/s at the receiver.
fn iperf(guest: &Netns, host: &Netns, reverse: bool, secs: u32) -> f64 {
    let port = if reverse { "5212" } else { "5211" };
    let mut server = host.spawn(&["iperf3", "-s", "-1", "-p", port, "-B", HOST_IP]);
    std::thread::sleep(Duration::from_millis(300));
    let t = secs.to_string();
    let mut args = vec!["iperf3", "-c", HOST_IP, "-p", port, "-t", &t, "-J"];
    if reverse {
        args.push("-R");
    }
    let out = guest.exec(&args).unwrap_or_else(|e| panic!("iperf3 {}: {e}", if reverse { "-R" } else { "" }));
    let _ = server.child.wait();
    // The receiver's total in the JSON summary: "sum_received": { ... "bits_per_second": N
    let at = out.find("\"sum_received\"").expect("iperf3 JSON has sum_received");
    let rest = &out[at..];
    let bps_at = rest.find("\"bits_per_second\":").expect("bits_per_second") + "\"bits_per_second\":".len();
    let num: String = rest[bps_at..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e')
        .collect();
    num.parse::<f64>().expect("a number") / 1e9
}

/// Deterministic bytes (xorshift), so nothing is cached or compressible.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// Sends `TRANSFER` bytes from a socket in `from` to a listener in `to` (on `to_ip`), each end
/// in its own thread in its own namespace; returns the SHA-256 each end computed.
fn transfer(from: &Netns, to: &Netns, to_ip: &str, port: u16, len: usize) -> ([u8; 32], [u8; 32]) {
    let (to_name, from_name) = (to.name.clone(), from.name.clone());
    let addr = SocketAddr::from((to_ip.parse::<Ipv4Addr>().unwrap(), port));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        let _ns = NetnsGuard::enter(&to_name).unwrap();
        let listener = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n;
        }
        assert_eq!(total, len, "bytes received");
        <[u8; 32]>::from(h.finalize())
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let sender = std::thread::spawn(move || {
        let _ns = NetnsGuard::enter(&from_name).unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(port);
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len());
            fill(&mut buf[..n], &mut state);
            s.write_all(&buf[..n]).unwrap();
            h.update(&buf[..n]);
            left -= n;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        <[u8; 32]>::from(h.finalize())
    });
    (sender.join().expect("sender"), receiver.join().expect("receiver"))
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The error counts in a statistics line (`... N errors ...` per direction).
fn errors_in(line: &str) -> Vec<u64> {
    line.split(" errors").filter_map(|s| s.rsplit(' ').next()?.parse().ok()).collect()
}

#[test]
fn tcp_through_netfront_and_netback_over_tap() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let guest = Netns::new("guest");
    let host = Netns::new("host");
    let sock = socket_path("tap");
    let mut back = netback(&host, &sock, "tap:pvb0");
    let mut front = netfront(&guest, &sock, "pvf0");
    front.wait_for("connected", Duration::from_secs(10));
    back.wait_for("connected", Duration::from_secs(10));
    guest.configure("pvf0", GUEST_IP);
    host.configure("pvb0", HOST_IP);

    ping(&guest, HOST_IP);
    ping(&host, GUEST_IP);

    let tx = iperf(&guest, &host, false, 4);
    let rx = iperf(&guest, &host, true, 4);
    eprintln!("iperf3 through the pair: guest transmit {tx:.2} Gbit/s, guest receive {rx:.2} Gbit/s");
    assert!(tx > 0.0 && rx > 0.0, "iperf3 moved no data: {tx} / {rx}");

    let (sent, got) = transfer(&guest, &host, HOST_IP, 5301, TRANSFER);
    eprintln!("guest -> host 100 MB: sha256 sent {} received {}", hex(&sent), hex(&got));
    assert_eq!(sent, got, "guest -> host transfer corrupted");
    let (sent, got) = transfer(&host, &guest, GUEST_IP, 5302, TRANSFER);
    eprintln!("host -> guest 100 MB: sha256 sent {} received {}", hex(&sent), hex(&got));
    assert_eq!(sent, got, "host -> guest transfer corrupted");

    let fstat = front.stop();
    let bstat = back.stop();
    assert!(fstat.success() && bstat.success(), "clean exit on SIGTERM: {fstat} {bstat}");
    // The final statistics lines show traffic and no errors.
    for (name, d) in [("netfront", &front), ("netback", &back)] {
        let last = d.last_stats();
        let errors = errors_in(&last);
        assert!(!errors.is_empty() && errors.iter().all(|&e| e == 0), "{name} reported errors: {last}");
    }
}

#[test]
fn tcp_through_netfront_and_netback_over_af_packet() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    // guest: netfront's TAP; host: netback on one end of a veth pair (no address);
    // wire: the other end, with the address the guest talks to.
    let guest = Netns::new("pguest");
    let host = Netns::new("phost");
    let wire = Netns::new("pwire");
    host.ip(&["link", "add", "pva0", "type", "veth", "peer", "name", "pva1", "netns", &wire.name]).unwrap();
    host.ip(&["link", "set", "pva0", "up"]).unwrap();
    let sock = socket_path("afp");
    let mut back = netback(&host, &sock, "afpacket:pva0");
    let mut front = netfront(&guest, &sock, "pvf1");
    front.wait_for("connected", Duration::from_secs(10));
    back.wait_for("connected", Duration::from_secs(10));
    guest.configure("pvf1", GUEST_IP);
    wire.configure("pva1", HOST_IP);

    ping(&guest, HOST_IP);
    ping(&wire, GUEST_IP);
    for (from, to, ip, port) in [(&guest, &wire, HOST_IP, 5303), (&wire, &guest, GUEST_IP, 5304)] {
        let (sent, got) = transfer(from, to, ip, port, 20 << 20);
        eprintln!("af_packet {} -> {}: 20 MB sha256 {} / {}", from.name, to.name, hex(&sent), hex(&got));
        assert_eq!(sent, got, "transfer through the AF_PACKET back end corrupted");
    }
    assert!(front.stop().success() && back.stop().success());
    let last = back.last_stats();
    assert!(errors_in(&last).iter().all(|&e| e == 0), "netback reported errors: {last}");
}

/// `(packets, bytes)` of the first direction in a statistics line.
fn first_direction(line: &str) -> (u64, u64) {
    let num = |unit: &str| -> u64 {
        let at = line.find(unit).unwrap_or_else(|| panic!("no {unit:?} in {line:?}"));
        line[..at].trim_end().rsplit(' ').next().unwrap().parse().unwrap()
    };
    (num(" pkts"), num(" bytes"))
}

#[test]
fn negotiated_features_are_obeyed() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    // netfront declines GSO: the guest kernel must not hand it super-frames (TUNSETOFFLOAD
    // without TSO), and netback must not deliver any (it segments what the host's TAP or
    // GRO would make). TCP still works, with MTU-sized frames both ways.
    let guest = Netns::new("nguest");
    let host = Netns::new("nhost");
    let sock = socket_path("nogso");
    let mut back = netback(&host, &sock, "tap:pvn0");
    let mut front = netfront_with(&guest, &sock, "pvn1", &["--no-gso"]);
    let line = front.wait_for("connected", Duration::from_secs(10));
    assert!(line.contains("gso_tcpv4: false") && line.contains("gso_tcpv6: false"), "{line}");
    back.wait_for("connected", Duration::from_secs(10));
    guest.configure("pvn1", GUEST_IP);
    host.configure("pvn0", HOST_IP);
    ping(&guest, HOST_IP);
    for (from, to, ip, port) in [(&guest, &host, HOST_IP, 5307), (&host, &guest, GUEST_IP, 5308)] {
        let (sent, got) = transfer(from, to, ip, port, 20 << 20);
        assert_eq!(sent, got, "transfer without GSO corrupted");
    }
    assert!(front.stop().success() && back.stop().success());
    let last = front.last_stats();
    let (tx_pkts, tx_bytes) = first_direction(&last);
    let rx = &last[last.find("back->guest").expect("two directions")..];
    let (rx_pkts, rx_bytes) = first_direction(rx);
    assert!(tx_pkts > 10_000 && rx_pkts > 10_000, "{last}");
    // Every frame at most 1514 bytes: the largest possible average is below that.
    assert!(tx_bytes <= tx_pkts * 1514, "super-frames crossed guest->back without GSO: {last}");
    assert!(rx_bytes <= rx_pkts * 1514, "super-frames crossed back->guest without GSO: {last}");
}

/// How many mappings of netfront's guest-memory memfd process `pid` holds.
fn guest_mappings(pid: u32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines().filter(|l| l.contains("memfd:pvio-netfront")).count()
}

/// How many descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Waits until `f()` holds (state in /proc settles right after the log line).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn either_side_dying_is_noticed_released_and_replaced() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let guest = Netns::new("dguest");
    let host = Netns::new("dhost");
    let sock = socket_path("death");
    let mut back = netback(&host, &sock, "tap:pvd0");
    let back_pid = back.pid();
    host.configure_mac("pvd0", HOST_IP, Some(HOST_MAC));
    let idle_fds = open_fds(back_pid);
    assert_eq!(guest_mappings(back_pid), 0);

    // 1. netfront dies without a word: netback notices, releases, serves the next one.
    let mut front = netfront(&guest, &sock, "pvd1");
    front.wait_for("connected", Duration::from_secs(10));
    back.wait_for("connected", Duration::from_secs(10));
    guest.configure("pvd1", GUEST_IP);
    ping(&guest, HOST_IP);
    assert!(guest_mappings(back_pid) > 0, "netback maps the guest's memory while connected");
    assert!(open_fds(back_pid) > idle_fds, "netback holds the guest's descriptors while connected");
    front.signal(libc::SIGKILL);
    back.wait_for("front end hung up", Duration::from_secs(10));
    back.wait_for("released", Duration::from_secs(10));
    eventually("netback still maps the dead guest's memory", || guest_mappings(back_pid) == 0);
    eventually("netback still holds the dead guest's descriptors", || open_fds(back_pid) == idle_fds);
    drop(front);

    let mut front = netfront(&guest, &sock, "pvd1");
    front.wait_for("connected", Duration::from_secs(10));
    back.wait_for("connected", Duration::from_secs(10));
    guest.configure("pvd1", GUEST_IP); // the killed netfront's TAP went with it
    ping(&guest, HOST_IP);
    let (sent, got) = transfer(&guest, &host, HOST_IP, 5305, 10 << 20);
    assert_eq!(sent, got, "transfer after reconnecting");

    // 2. netback dies: netfront notices, releases its guest memory, reconnects to a new one.
    let front_pid = front.pid();
    assert!(guest_mappings(front_pid) > 0);
    back.signal(libc::SIGKILL);
    front.wait_for("back end gone", Duration::from_secs(10));
    eventually("netfront still maps the old guest memory", || guest_mappings(front_pid) == 0);
    drop(back);
    let mut back = netback(&host, &sock, "tap:pvd0");
    back.wait_for("connected", Duration::from_secs(10));
    front.wait_for("connected", Duration::from_secs(10));
    host.configure_mac("pvd0", HOST_IP, Some(HOST_MAC)); // the killed netback's TAP went with it
    ping(&guest, HOST_IP);
    let (sent, got) = transfer(&host, &guest, GUEST_IP, 5306, 10 << 20);
    assert_eq!(sent, got, "transfer after the new back end connected");
    assert!(front.stop().success() && back.stop().success());
}

#[test]
fn a_hostile_front_end_is_disconnected_and_the_next_one_served() {
    use pvio_examples::handshake::{front_handshake, Channel, Connect, Features, Message};
    use pvio_examples::net::{layout, GuestMemory, NetFront};
    use pvio_ring::xen::sring::REQ_PROD_OFFSET;
    use pvio_ring::{EventFd, Notifier};
    use std::os::fd::AsFd;

    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let guest = Netns::new("hguest");
    let host = Netns::new("hhost");
    let sock = socket_path("hostile");
    let mut back = netback(&host, &sock, "tap:pvh0");
    let back_pid = back.pid();
    host.configure("pvh0", HOST_IP);
    let idle_fds = open_fds(back_pid);

    let connect = Connect {
        features: Features::SG | Features::GSO_TCPV4 | Features::RX_COPY,
        mem_frames: (layout::REGION_LEN / 4096) as u32,
        tx_ring_frame: layout::TX_RING_FRAME,
        rx_ring_frame: layout::RX_RING_FRAME,
        grant_table_frame: layout::GNTTAB_FRAME,
        grant_entries: layout::GNTTAB_ENTRIES as u32,
        domid: 7,
        mac: [0x00, 0x16, 0x3e, 0, 0, 7],
    };

    // A front end whose memory could be truncated under netback (an unsealed memfd): refused
    // before anything is mapped.
    {
        let chan = Channel::connect(&sock).unwrap();
        let mem = pvio_ring::MemfdRegion::new("pvio-netfront", layout::REGION_LEN).unwrap();
        let (to_back, to_front) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        let err =
            front_handshake(&chan, &connect, [mem.as_fd(), to_back.as_fd(), to_front.as_fd()]).unwrap_err();
        assert!(err.to_string().contains("F_SEAL_SHRINK"), "{err}");
        back.wait_for("session failed", Duration::from_secs(10));
        eventually("netback holds descriptors of the refused guest", || open_fds(back_pid) == idle_fds);
        assert_eq!(guest_mappings(back_pid), 0);
    }

    // A front end that connects properly, then publishes an impossible request index.
    {
        let chan = Channel::connect(&sock).unwrap();
        let memfd = pvio_examples::handshake::sealed_memfd("pvio-netfront", layout::REGION_LEN).unwrap();
        let mem = GuestMemory::from_fd(memfd, layout::REGION_LEN).unwrap();
        let _front = NetFront::new(mem.mem(), pvio_grant::DomId(0)).unwrap();
        let (to_back, to_front) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        let fds = [mem.fd().unwrap(), to_back.as_fd(), to_front.as_fd()];
        front_handshake(&chan, &connect, fds).unwrap();
        back.wait_for("connected", Duration::from_secs(10));
        // Truncating the memory under netback would be a SIGBUS there: the seals forbid it
        // (this fails if netback accepted an unsealed memfd, or the seals are missing).
        let file = std::fs::File::from(mem.fd().unwrap().try_clone_to_owned().unwrap());
        assert!(file.set_len(0).is_err(), "the guest memory handed to netback can be truncated");
        drop(file);
        let tx_ring = layout::TX_RING_FRAME as usize * 4096;
        mem.mem().write(tx_ring + REQ_PROD_OFFSET, &0x8000_0000u32).unwrap();
        to_back.notify().unwrap();
        let line = back.wait_for("disconnected the front end", Duration::from_secs(10));
        assert!(line.contains("ring"), "the reason names the ring rule: {line}");
        // netback told us why, then closed the socket.
        let (msg, _) = chan.recv(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(msg, Message::Error { ref reason } if reason.contains("ring")), "{msg:?}");
        assert!(chan.recv(Some(Duration::from_secs(5))).is_err(), "socket closed after the error");
        eventually("netback still maps the hostile guest's memory", || guest_mappings(back_pid) == 0);
        eventually("netback still holds the hostile guest's descriptors", || open_fds(back_pid) == idle_fds);
    }

    // The next, well-behaved front end is served.
    let mut front = netfront(&guest, &sock, "pvh1");
    front.wait_for("connected", Duration::from_secs(10));
    back.wait_for("connected", Duration::from_secs(10));
    guest.configure("pvh1", GUEST_IP);
    ping(&guest, HOST_IP);
    let (sent, got) = transfer(&guest, &host, HOST_IP, 5309, 10 << 20);
    assert_eq!(sent, got);
    assert!(front.stop().success() && back.stop().success());
}
