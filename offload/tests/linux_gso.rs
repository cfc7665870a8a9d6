//! Linux is the oracle for segmentation: each super-frame is written, with its
//! `virtio_net_hdr`, into a TAP device; the kernel segments it in software on its way out of
//! a veth with every offload off; the segments are captured on the veth's peer with
//! AF_PACKET and compared byte for byte with what `pvio_offload::gso` makes of the same
//! super-frame.
//!
//! Topology (all inside a fresh network namespace, removed afterwards even on failure):
//!
//! ```text
//! test ──write()──> TAP (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) ── bridge ── vA ══ vB <── AF_PACKET
//! ```
//!
//! Needs root, `/dev/net/tun`, `ip` and `ethtool`; prints `skipped: <reason>` and passes
//! without them. Installs nothing.

mod common;

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    hex_diff, Spec, ACK, CWR, DEST_OPTS, ECE, FIN, FRAGMENT, HOP_BY_HOP, PSH, ROUTING, TCP_TIMESTAMPS, URG,
};
use pvio_offload::{parse, ChecksumMode, Segmenter, L4};
use zerocopy::IntoBytes;

const TAP: &str = "pvtap0";
const BRIDGE: &str = "pvbr0";
const VETH_A: &str = "pvA";
const VETH_B: &str = "pvB";
/// Source port of the warm-up probe (cases use their own).
const PROBE_PORT: u16 = 1;
const VNET_HDR_LEN: usize = 12;

/// A network namespace that is deleted when this is dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn create() -> Result<Netns, String> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("pvio-gso-{}-{nanos:08x}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        Ok(Netns { name })
    }

    /// `ip -n NS args...`
    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip netns exec NS args...`
    fn exec(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Moves the calling thread into the namespace (only network namespaces, which a thread
    /// of a multi-threaded process may switch).
    fn enter(&self) -> Result<(), String> {
        let f = File::open(format!("/run/netns/{}", self.name)).map_err(|e| format!("open netns: {e}"))?;
        // SAFETY: `setns` takes a valid fd (kept open by `f` for the call) and a flag; it
        // changes only this thread's network namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns: {}", io::Error::last_os_error()));
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("warning: could not delete namespace {}: {e}", self.name);
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

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
        return Some("needs root (creates a network namespace, a TAP device and a packet socket)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    for prog in ["ip", "ethtool"] {
        if !find_in_path(prog) {
            return Some(format!("`{prog}` is not installed"));
        }
    }
    None
}

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int, String> {
    if ret < 0 {
        Err(format!("{what}: {}", io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

/// `struct ifreq` with the flags member of its union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens a TAP device (in the calling thread's namespace) taking a 12-byte vnet header.
fn open_tap(name: &str) -> Result<File, String> {
    let tap =
        OpenOptions::new().read(true).write(true).open("/dev/net/tun").map_err(|e| format!("tun: {e}"))?;
    let mut req = IfReqFlags { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    req.flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is laid out as (40
    // bytes); the fd is open.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF, &mut req) }, "TUNSETIFF")?;
    let size: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer.
    check(unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) }, "TUNSETVNETHDRSZ")?;
    let offloads = libc::TUN_F_CSUM
        | libc::TUN_F_TSO4
        | libc::TUN_F_TSO6
        | libc::TUN_F_TSO_ECN
        | libc::TUN_F_USO4
        | libc::TUN_F_USO6;
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    let ret = unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETOFFLOAD, offloads as libc::c_ulong) };
    check(ret, "TUNSETOFFLOAD")?;
    Ok(tap)
}

/// An AF_PACKET socket bound to `ifname` with PACKET_AUXDATA.
fn open_capture(ifname: &str) -> Result<OwnedFd, String> {
    // Protocol 0: nothing is queued until the bind names the interface.
    // SAFETY: plain socket creation.
    let fd =
        check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) }, "socket")?;
    // SAFETY: `fd` was just returned by `socket` and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, one, "PACKET_AUXDATA")?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 64 << 20, "SO_RCVBUFFORCE")?;
    let cname = std::ffi::CString::new(ifname).map_err(|e| e.to_string())?;
    // SAFETY: `cname` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(format!("if_nametoindex({ifname}): {}", io::Error::last_os_error()));
    }
    // SAFETY: all-zero is a valid `sockaddr_ll`.
    let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = index as i32;
    // SAFETY: `addr` is a `sockaddr_ll` of the size passed.
    let ret = unsafe {
        libc::bind(fd, (&addr as *const libc::sockaddr_ll).cast(), size_of::<libc::sockaddr_ll>() as u32)
    };
    check(ret, "bind")?;
    Ok(sock)
}

fn setsockopt(fd: RawFd, level: i32, name: i32, value: libc::c_int, what: &str) -> Result<(), String> {
    // SAFETY: the option value is one `int`, passed with its size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    check(ret, what).map(|_| ())
}

/// Receives one incoming frame within `timeout`, with its outer VLAN tag (which the receive
/// path moved into the auxdata) put back. `Ok(None)` on timeout.
fn recv_frame(sock: &OwnedFd, timeout: Duration) -> Result<Option<Vec<u8>>, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid `pollfd`.
        let n = check(unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) }, "poll")?;
        if n == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; 70_000];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: all-zero is a valid `sockaddr_ll` and `msghdr`.
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        let mut control = [0u64; 16];
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of::<[u64; 16]>();
        // SAFETY: `msg` points at live buffers of the sizes it states.
        let len = check(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) } as i32, "recvmsg")? as usize;
        if msg.msg_flags & libc::MSG_TRUNC != 0 {
            return Err(format!("captured frame truncated ({len} bytes)"));
        }
        if from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        buf.truncate(len);
        // SAFETY: `msg` was filled in by `recvmsg`; the CMSG macros stay inside
        // `msg_control..msg_controllen`.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: `cmsg` is non-null and points at a complete header inside `control`.
            let hdr: libc::cmsghdr = unsafe { cmsg.read_unaligned() };
            let (level, ty) = (hdr.cmsg_level, hdr.cmsg_type);
            if level == libc::SOL_PACKET && ty == libc::PACKET_AUXDATA {
                // SAFETY: `cmsg` is a complete header inside `control` (as above).
                let data = unsafe { libc::CMSG_DATA(cmsg) };
                // SAFETY: a PACKET_AUXDATA message carries a whole `tpacket_auxdata` after
                // its header, inside `control`; it is read unaligned, by value.
                let aux: libc::tpacket_auxdata =
                    unsafe { data.cast::<libc::tpacket_auxdata>().read_unaligned() };
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    let mut tag = tpid.to_be_bytes().to_vec();
                    tag.extend_from_slice(&aux.tp_vlan_tci.to_be_bytes());
                    buf.splice(12..12, tag);
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        return Ok(Some(buf));
    }
}

/// The transport source port of a TCP/UDP frame.
fn flow_of(frame: &[u8]) -> Option<u16> {
    let l = parse(frame).ok()?;
    if !matches!(l.l4, L4::Tcp | L4::Udp) {
        return None;
    }
    let p = frame.get(l.l4_offset..l.l4_offset + 2)?;
    Some(u16::from_be_bytes([p[0], p[1]]))
}

/// Writes a super-frame (vnet header + frame) to the TAP.
fn write_tap(tap: &File, hdr: &[u8], frame: &[u8]) -> Result<(), String> {
    let iov = [
        libc::iovec { iov_base: hdr.as_ptr() as *mut _, iov_len: hdr.len() },
        libc::iovec { iov_base: frame.as_ptr() as *mut _, iov_len: frame.len() },
    ];
    // SAFETY: two iovecs over live buffers, only read by `writev`.
    let n = unsafe { libc::writev(tap.as_raw_fd(), iov.as_ptr(), 2) };
    if n < 0 {
        return Err(format!("TAP write: {}", io::Error::last_os_error()));
    }
    if n as usize != hdr.len() + frame.len() {
        return Err(format!("TAP write: short ({n} bytes)"));
    }
    Ok(())
}

/// Collects the frames of flow `sport` until `expected` arrived (then waits briefly for
/// extras: 30 ms, or 300 ms when none are expected) or nothing arrives for 2 s.
fn capture(sock: &OwnedFd, sport: u16, expected: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut got = Vec::new();
    loop {
        let wait = match (expected, got.len() >= expected) {
            (0, _) => Duration::from_millis(300),
            (_, true) => Duration::from_millis(30),
            (_, false) => Duration::from_secs(2),
        };
        match recv_frame(sock, wait)? {
            None => return Ok(got),
            Some(f) if flow_of(&f) == Some(sport) => got.push(f),
            Some(_) => {}
        }
    }
}

/// The topology, entered by the calling thread; everything is closed on drop, before the
/// namespace (declared first in `run_oracle`) is deleted.
struct Rig {
    tap: File,
    sock: OwnedFd,
}

fn set_up(ns: &Netns) -> Result<Rig, String> {
    ns.enter()?;
    let tap = open_tap(TAP)?;
    ns.ip(&["link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])?;
    ns.ip(&["link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B])?;
    ns.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ])?;
    for dev in [TAP, BRIDGE, VETH_A, VETH_B] {
        ns.exec(&["sysctl", "-q", "-w", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")])?;
    }
    // br_netfilter's knobs exist only where it is loaded (built in on the reference kernel).
    if Path::new("/proc/sys/net/bridge").exists() {
        ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.bridge.bridge-nf-call-arptables=0",
            "net.bridge.bridge-nf-call-iptables=0",
            "net.bridge.bridge-nf-call-ip6tables=0",
        ])?;
    }
    ns.ip(&["link", "set", TAP, "master", BRIDGE])?;
    ns.ip(&["link", "set", VETH_A, "master", BRIDGE])?;
    ns.exec(&[
        "ethtool",
        "-K",
        VETH_A,
        "tx",
        "off",
        "tso",
        "off",
        "gso",
        "off",
        "tx-udp-segmentation",
        "off",
        "tx-gso-list",
        "off",
        "sg",
        "off",
    ])?;
    ns.exec(&[
        "ethtool",
        "-K",
        VETH_B,
        "gro",
        "off",
        "lro",
        "off",
        "rx-gro-list",
        "off",
        "rx-udp-gro-forwarding",
        "off",
    ])?;
    for dev in [TAP, BRIDGE, VETH_A, VETH_B] {
        ns.ip(&["link", "set", dev, "mtu", "9000", "up"])?;
    }
    let sock = open_capture(VETH_B)?;
    let rig = Rig { tap, sock };
    warm_up(&rig)?;
    Ok(rig)
}

/// Sends a small plain UDP frame until it shows up on vB: the bridge port is forwarding.
fn warm_up(rig: &Rig) -> Result<(), String> {
    let (frame, _) = Spec::udp4(PROBE_PORT, 16, 8).build();
    let hdr = [0u8; VNET_HDR_LEN];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        write_tap(&rig.tap, &hdr, &frame)?;
        let until = Instant::now() + Duration::from_millis(200);
        while let Some(f) = recv_frame(&rig.sock, until.saturating_duration_since(Instant::now()))? {
            if flow_of(&f) == Some(PROBE_PORT) {
                while recv_frame(&rig.sock, Duration::from_millis(50))?.is_some() {}
                return Ok(());
            }
        }
    }
    Err("the bridge never forwarded the warm-up frame".into())
}

/// Adjusts two payload bytes of segment `index` so that its transport checksum computes to
/// zero (TCP keeps 0, UDP sends 0xffff).
fn force_zero_checksum(frame: &mut [u8], meta: &pvio_offload::OffloadMeta, index: usize) {
    let valid = meta.validate(frame).unwrap();
    let gso = *valid.gso().unwrap();
    let seg = Segmenter::new(frame, &valid, ChecksumMode::Partial).unwrap().nth(index).unwrap();
    let l4 = gso.layout().l4_offset;
    let range = seg.payload_range();
    let head = pvio_offload::checksum::sum(&seg.header()[l4..]);
    let total = pvio_offload::checksum::combine(head, pvio_offload::checksum::sum(&frame[range.clone()]));
    // Payload starts at an even offset from the transport header here.
    assert_eq!((range.start - l4) % 2, 0);
    let w = u16::from_be_bytes([frame[range.start], frame[range.start + 1]]);
    let w2 = pvio_offload::checksum::combine(w, !total);
    frame[range.start..range.start + 2].copy_from_slice(&w2.to_be_bytes());
}

struct Case {
    name: &'static str,
    spec: Spec,
    /// Craft the payload so that this segment's checksum computes to 0.
    zero_csum_segment: Option<usize>,
    /// Linux drops this super-frame, and pvio's validation must refuse it.
    refused: bool,
    /// Spoil the IPv4 header checksum and the partial checksum in the transport header:
    /// both are derived from the super-frame's fields, not rebuilt, on both sides.
    spoiled_checksums: bool,
}

fn case(name: &'static str, spec: Spec) -> Case {
    Case { name, spec, zero_csum_segment: None, refused: false, spoiled_checksums: false }
}

fn refused(name: &'static str, spec: Spec) -> Case {
    Case { refused: true, ..case(name, spec) }
}

fn cases() -> Vec<Case> {
    let vlan = |s: Spec| Spec { vlans: vec![(0x8100, 0x0064)], ..s };
    let qinq = |s: Spec| Spec { vlans: vec![(0x88a8, 0x2123), (0x8100, 0x0064)], ..s };
    let ts = |s: Spec| Spec { tcp_options: TCP_TIMESTAMPS.to_vec(), ..s };
    let flags = |s: Spec| Spec { tcp_flags: ACK | PSH | FIN | CWR, ecn: true, ..s };
    let mut port = 40_000u16;
    let mut p = || {
        port += 1;
        port
    };
    vec![
        case("tcp4 64 KiB, mss 1448, short last", Spec::tcp4(p(), 65_000, 1448)),
        case("tcp4 timestamps, FIN/PSH/CWR, exact multiple", flags(ts(Spec::tcp4(p(), 12_000, 1200)))),
        case("tcp4 timestamps, FIN/PSH/CWR, short last", flags(ts(Spec::tcp4(p(), 12_345, 1200)))),
        case(
            "tcp4 CWR without the virtio ECN bit",
            Spec { tcp_flags: ACK | CWR, ..Spec::tcp4(p(), 5000, 1000) },
        ),
        case(
            "tcp4 URG, ECE, AE and reserved bits kept",
            Spec { tcp_flags: ACK | URG | ECE, tcp_reserved: 0x0f, ..Spec::tcp4(p(), 3000, 1000) },
        ),
        case("tcp4 802.1Q", vlan(ts(Spec::tcp4(p(), 20_000, 1448)))),
        case("tcp4 QinQ, FIN/PSH/CWR", flags(qinq(ts(Spec::tcp4(p(), 20_000, 1448))))),
        case(
            "tcp4 IPv4 options, no DF, ID and seq wrap",
            Spec {
                ip_options: vec![0x94, 0x04, 0, 0, 1, 1, 1, 0],
                dont_frag: false,
                ident: 0xfffe,
                seq: 0xffff_f000,
                tos: 0x02,
                ..Spec::tcp4(p(), 9000, 1000)
            },
        ),
        case("tcp4 mss 100, 150 segments", Spec::tcp4(p(), 15_000, 100)),
        case("tcp4 odd mss 999", Spec::tcp4(p(), 9_000, 999)),
        case(
            "tcp4 40 bytes of IPv4 options and 40 of TCP options, QinQ",
            qinq(Spec { ip_options: vec![1; 40], tcp_options: vec![1; 40], ..Spec::tcp4(p(), 7_000, 1000) }),
        ),
        Case {
            zero_csum_segment: Some(1),
            ..case("tcp4 checksum computing to 0", Spec::tcp4(p(), 4000, 1000))
        },
        Case {
            spoiled_checksums: true,
            ..case("tcp4 spoiled IPv4 and partial checksums", Spec::tcp4(p(), 5000, 1000))
        },
        case("tcp6 64 KiB, mss 1428, short last", Spec::tcp6(p(), 65_000, 1428)),
        case("tcp6 timestamps, FIN/PSH/CWR", flags(ts(Spec::tcp6(p(), 12_345, 1200)))),
        case("tcp6 802.1Q", vlan(ts(Spec::tcp6(p(), 20_000, 1428)))),
        case("tcp6 QinQ, FIN/PSH/CWR", flags(qinq(ts(Spec::tcp6(p(), 20_000, 1428))))),
        case(
            "tcp6 destination options",
            Spec { ext_headers: vec![DEST_OPTS], ..Spec::tcp6(p(), 10_000, 1400) },
        ),
        case(
            "tcp6 routing + destination options",
            Spec { ext_headers: vec![ROUTING, DEST_OPTS], ..ts(Spec::tcp6(p(), 10_000, 1400)) },
        ),
        case("tcp6 hop-by-hop", Spec { ext_headers: vec![HOP_BY_HOP], ..Spec::tcp6(p(), 10_000, 1400) }),
        case(
            "tcp6 hop-by-hop + destination options, FIN/PSH/CWR",
            flags(Spec { ext_headers: vec![HOP_BY_HOP, DEST_OPTS], ..Spec::tcp6(p(), 10_000, 1400) }),
        ),
        refused(
            "tcp6 atomic-fragment header",
            Spec { ext_headers: vec![FRAGMENT], ..Spec::tcp6(p(), 10_000, 1400) },
        ),
        refused(
            "udp6 destination options + atomic-fragment header",
            Spec { ext_headers: vec![DEST_OPTS, FRAGMENT], ..Spec::udp6(p(), 10_000, 1400) },
        ),
        case(
            "tcp6 traffic class, seq wrap",
            Spec { tos: 0xb8, seq: 0xffff_ff00, ..Spec::tcp6(p(), 6000, 1000) },
        ),
        Case {
            zero_csum_segment: Some(0),
            ..case("tcp6 checksum computing to 0", Spec::tcp6(p(), 4000, 1000))
        },
        case("udp4 short last", Spec::udp4(p(), 10_000, 1400)),
        case("udp4 exact multiple, ID wrap", Spec { ident: 0xffff, ..Spec::udp4(p(), 8000, 1000) }),
        case("udp4 802.1Q", vlan(Spec::udp4(p(), 10_000, 1400))),
        case("udp4 QinQ", qinq(Spec::udp4(p(), 10_000, 1400))),
        case("udp4 128 segments", Spec::udp4(p(), 128 * 100 - 7, 100)),
        case("udp4 gso_size 1", Spec::udp4(p(), 100, 1)),
        case("udp6 odd gso_size 333", Spec::udp6(p(), 5_000, 333)),
        Case {
            zero_csum_segment: Some(2),
            ..case("udp4 checksum computing to 0", Spec::udp4(p(), 4000, 1000))
        },
        Case {
            spoiled_checksums: true,
            ..case("udp4 spoiled IPv4 and partial checksums", Spec::udp4(p(), 5000, 1000))
        },
        Case {
            spoiled_checksums: true,
            ..case("udp6 spoiled partial checksum", Spec::udp6(p(), 5000, 1000))
        },
        case("udp6 short last", Spec::udp6(p(), 10_000, 1400)),
        case("udp6 802.1Q", vlan(Spec::udp6(p(), 10_000, 1400))),
        case("udp6 hop-by-hop", Spec { ext_headers: vec![HOP_BY_HOP], ..Spec::udp6(p(), 10_000, 1400) }),
        case(
            "udp6 QinQ, destination options",
            Spec { ext_headers: vec![DEST_OPTS], ..qinq(Spec::udp6(p(), 10_000, 1400)) },
        ),
        Case {
            zero_csum_segment: Some(0),
            ..case("udp6 checksum computing to 0", Spec::udp6(p(), 4000, 1000))
        },
    ]
}

/// Runs one case; `Err` describes the first difference.
fn run_case(rig: &Rig, c: &Case) -> Result<usize, String> {
    let (mut frame, meta) = c.spec.build();
    if let Some(i) = c.zero_csum_segment {
        force_zero_checksum(&mut frame, &meta, i);
    }
    if c.spoiled_checksums {
        let l = parse(&frame).map_err(|e| e.to_string())?;
        if l.l3 == pvio_offload::L3::Ipv4 {
            frame[l.l3_offset + 10] ^= 0x5a;
        }
        frame[l.l4_offset + if c.spec.udp { 6 } else { 16 }] ^= 0xa5;
    }
    if c.refused {
        let refusal = match meta.validate(&frame) {
            Ok(_) => return Err("pvio accepts a super-frame Linux drops".into()),
            Err(e) => e,
        };
        write_tap(&rig.tap, meta.to_virtio(0).as_bytes(), &frame)?;
        let theirs = capture(&rig.sock, c.spec.sport, 0)?;
        if !theirs.is_empty() {
            return Err(format!("pvio refuses ({refusal}) but the kernel emitted {} frames", theirs.len()));
        }
        return Ok(0);
    }
    let valid = meta.validate(&frame).map_err(|e| format!("validate: {e}"))?;
    let ours: Vec<Vec<u8>> = Segmenter::new(&frame, &valid, ChecksumMode::Full)
        .map_err(|e| format!("segment: {e}"))?
        .map(|s| {
            let mut v = vec![0; s.len()];
            s.write_to(&frame, &mut v).unwrap();
            v
        })
        .collect();
    if let Some(i) = c.zero_csum_segment {
        let l = parse(&ours[i]).unwrap();
        let field = l.l4_offset + if c.spec.udp { 6 } else { 16 };
        let want: &[u8] = if c.spec.udp { &[0xff, 0xff] } else { &[0, 0] };
        if &ours[i][field..field + 2] != want {
            return Err(format!(
                "pvio wrote {:02x?} for the crafted checksum, not {want:02x?}",
                &ours[i][field..field + 2]
            ));
        }
    }
    let hdr = meta.to_virtio(0);
    write_tap(&rig.tap, hdr.as_bytes(), &frame)?;
    let theirs = capture(&rig.sock, c.spec.sport, ours.len())?;
    if theirs.is_empty() {
        return Err(format!("the kernel emitted no segment (pvio: {})", ours.len()));
    }
    for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
        if t != o {
            return Err(format!(
                "segment {i} of {} differs (linux {} bytes, pvio {} bytes):\n{}",
                ours.len(),
                t.len(),
                o.len(),
                hex_diff(t, o)
            ));
        }
    }
    if theirs.len() != ours.len() {
        return Err(format!("the kernel emitted {} segments, pvio {}", theirs.len(), ours.len()));
    }
    Ok(ours.len())
}

fn run_oracle() -> Result<(), String> {
    let ns = Netns::create()?;
    // Everything inside the namespace happens on a dedicated thread that entered it; the
    // TAP and socket close when it ends, and `ns` is deleted when this function returns.
    let name = ns.name.clone();
    let ns_ref = &ns;
    std::thread::scope(|s| {
        s.spawn(move || -> Result<(), String> {
            let rig = set_up(ns_ref).map_err(|e| format!("set-up in {name}: {e}"))?;
            let mut failures = Vec::new();
            for c in cases() {
                let start = Instant::now();
                match run_case(&rig, &c) {
                    Ok(0) => println!("ok: {} (refused by both, {:?})", c.name, start.elapsed()),
                    Ok(n) => println!("ok: {} ({n} segments, {:?})", c.name, start.elapsed()),
                    Err(e) => {
                        println!("MISMATCH: {}: {e}", c.name);
                        failures.push(c.name);
                    }
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(format!("{} case(s) differ from Linux: {failures:?}", failures.len()))
            }
        })
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())?
    })
}

#[test]
fn linux_segments_match_pvio() {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return;
    }
    if let Err(e) = run_oracle() {
        panic!("{e}");
    }
}
