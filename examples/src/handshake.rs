//! The netfront/netback control channel: a Unix `SOCK_SEQPACKET` socket that carries a small
//! versioned handshake, hands the shared memory and event descriptors across with
//! `SCM_RIGHTS`, and afterwards tells each side when the other is gone (hangup).
//!
//! It plays the part xenstore plays for Xen's netfront and netback. As there, the back end
//! speaks first and advertises what it can do, the front end answers with what it wants and
//! where its rings are, and the back end confirms:
//!
//! ```text
//! netback                                   netfront
//!   ── hello     (version, feature-*) ───────►
//!   ◄─ connect   (version, feature-*, tx-ring-frame, rx-ring-frame, ..., + 3 fds) ──
//!   ── connected (version, negotiated feature-*) ──► | error (reason) and close
//! ```
//!
//! Each message is text, one `key=value` per line after a `pvio-netif` magic line, at most
//! [`MAX_MESSAGE`] bytes, in one datagram (so a message is never split or merged). Keys are
//! the xenstore ones (`feature-sg`, `feature-gso-tcpv4`, `feature-gso-tcpv6`,
//! `feature-rx-copy`, `feature-no-csum-offload`, `feature-ipv6-csum-offload`, `mac`); where
//! Xen names the ring pages by grant reference (`tx-ring-ref`), pvio names them by frame of
//! the shared region (`tx-ring-frame`), since the back end maps the whole region the way the
//! hypervisor would map the ring grants for it. Every message names its `version`; a peer of another version is
//! refused with [`HandshakeError::VersionMismatch`] (and told why). A message from the peer is
//! untrusted input: anything that is not exactly the grammar — bad UTF-8, a line without `=`,
//! a key given twice, a number that does not parse, a missing key, too many descriptors — is a
//! [`HandshakeError`] naming the rule, never a panic. Unknown keys are ignored, as unknown
//! xenstore nodes are, so a later version may add keys without a version bump.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use bitflags::bitflags;
use thiserror::Error;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// The first line of every message.
pub const MAGIC: &str = "pvio-netif";
/// The largest message, in bytes.
pub const MAX_MESSAGE: usize = 4096;
/// The most descriptors one message may carry.
pub const MAX_FDS: usize = 8;

bitflags! {
    /// Feature keys, as in Xen's `io/netif.h` xenstore protocol. Each side advertises the
    /// ones it supports; [`negotiate`] computes what is in force.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Features: u32 {
        /// `feature-sg`: a packet may span several ring slots (`NETTXF_more_data`).
        const SG = 1 << 0;
        /// `feature-gso-tcpv4`: TCP/IPv4 super-frames with a GSO extra-info slot.
        const GSO_TCPV4 = 1 << 1;
        /// `feature-gso-tcpv6`: TCP/IPv6 super-frames.
        const GSO_TCPV6 = 1 << 2;
        /// `feature-rx-copy`: receive by copy into buffers the front end posts (the only
        /// receive mode pvio's netback offers; page flipping is `netpair`'s comparison only).
        const RX_COPY = 1 << 3;
        /// `feature-no-csum-offload`: this side cannot handle partial IPv4 checksums
        /// (`csum_blank`); a negative feature, as in Xen.
        const NO_CSUM_OFFLOAD = 1 << 4;
        /// `feature-ipv6-csum-offload`: partial checksums over IPv6 are fine.
        const IPV6_CSUM_OFFLOAD = 1 << 5;
    }
}

/// The xenstore key of each feature, in the order they are written.
pub const FEATURE_KEYS: [(&str, Features); 6] = [
    ("feature-sg", Features::SG),
    ("feature-gso-tcpv4", Features::GSO_TCPV4),
    ("feature-gso-tcpv6", Features::GSO_TCPV6),
    ("feature-rx-copy", Features::RX_COPY),
    ("feature-no-csum-offload", Features::NO_CSUM_OFFLOAD),
    ("feature-ipv6-csum-offload", Features::IPV6_CSUM_OFFLOAD),
];

/// What both sides agreed on: a feature is on only when both have it (the negative
/// `no-csum-offload` is on when either has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Multi-slot packets.
    pub sg: bool,
    /// TCP/IPv4 super-frames.
    pub gso_tcpv4: bool,
    /// TCP/IPv6 super-frames.
    pub gso_tcpv6: bool,
    /// Partial IPv4 checksums may cross the rings.
    pub csum_offload: bool,
    /// Partial IPv6 checksums may cross the rings.
    pub ipv6_csum_offload: bool,
}

impl Negotiated {
    /// As a feature set (what `connected` carries).
    pub fn features(&self) -> Features {
        let mut f = Features::RX_COPY;
        f.set(Features::SG, self.sg);
        f.set(Features::GSO_TCPV4, self.gso_tcpv4);
        f.set(Features::GSO_TCPV6, self.gso_tcpv6);
        f.set(Features::NO_CSUM_OFFLOAD, !self.csum_offload);
        f.set(Features::IPV6_CSUM_OFFLOAD, self.ipv6_csum_offload);
        f
    }
}

/// Negotiates as Linux's xen-netback does: GSO needs SG and checksum offload (a super-frame
/// always carries a partial checksum); receive by copy is required.
pub fn negotiate(back: Features, front: Features) -> Result<Negotiated, HandshakeError> {
    if !(back & front).contains(Features::RX_COPY) {
        return Err(HandshakeError::MissingFeature("feature-rx-copy"));
    }
    let both = back & front;
    let csum_offload = !(back | front).contains(Features::NO_CSUM_OFFLOAD);
    let ipv6_csum_offload = both.contains(Features::IPV6_CSUM_OFFLOAD);
    let sg = both.contains(Features::SG);
    Ok(Negotiated {
        sg,
        gso_tcpv4: sg && csum_offload && both.contains(Features::GSO_TCPV4),
        gso_tcpv6: sg && ipv6_csum_offload && both.contains(Features::GSO_TCPV6),
        csum_offload,
        ipv6_csum_offload,
    })
}

/// Where the front end's shared state is, sent with `connect`. The descriptors travel
/// alongside, in the order [`ConnectFds`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    /// The features the front end supports.
    pub features: Features,
    /// Size of the guest memory memfd in 4 KiB frames (`mem-frames`).
    pub mem_frames: u32,
    /// Frame of the transmit ring's page (`tx-ring-frame`).
    pub tx_ring_frame: u32,
    /// Frame of the receive ring's page (`rx-ring-frame`).
    pub rx_ring_frame: u32,
    /// First frame of the grant table (`grant-table-frame`).
    pub grant_table_frame: u32,
    /// Number of grant-table entries (`grant-entries`).
    pub grant_entries: u32,
    /// The guest's domain id, as the broker knows it (`domid`).
    pub domid: u16,
    /// The front end's MAC address (`mac`, `aa:bb:cc:dd:ee:ff`).
    pub mac: [u8; 6],
}

/// The descriptors that travel with `connect`.
#[derive(Debug)]
pub struct ConnectFds {
    /// The guest memory memfd (rings, grant table and buffers).
    pub mem: OwnedFd,
    /// The eventfd the front end kicks to wake the back end (`event-channel`, front to back).
    pub to_back: OwnedFd,
    /// The eventfd the back end kicks to wake the front end.
    pub to_front: OwnedFd,
}

/// One handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Back to front: what the back end can do.
    Hello {
        /// The back end's features.
        features: Features,
    },
    /// Front to back: what the front end can do and where its rings are (plus 3 fds).
    Connect(Connect),
    /// Back to front: the back end attached; the features in force.
    Connected {
        /// The negotiated features ([`Negotiated::features`]).
        features: Features,
    },
    /// Either way: the handshake failed; the sender closes the socket.
    Error {
        /// Why.
        reason: String,
    },
}

/// Why a handshake failed or a message was refused. Every variant names the broken rule.
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// A socket call failed.
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the socket (or died).
    #[error("the peer closed the control socket")]
    PeerClosed,
    /// Nothing arrived in time.
    #[error("no message from the peer within {0:?}")]
    Timeout(Duration),
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer {theirs}")]
    VersionMismatch {
        /// [`VERSION`].
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The message was cut by the socket (longer than [`MAX_MESSAGE`] or more fds than
    /// [`MAX_FDS`]).
    #[error("message truncated (longer than {MAX_MESSAGE} bytes or more than {MAX_FDS} descriptors)")]
    Truncated,
    /// The message is not UTF-8.
    #[error("message is not UTF-8")]
    NotUtf8,
    /// The first line is not [`MAGIC`].
    #[error("message does not start with the `{MAGIC}` line")]
    BadMagic,
    /// A line is not `key=value`.
    #[error("line {line} is not key=value")]
    NotKeyValue {
        /// 1-based line number.
        line: usize,
    },
    /// A key appears twice.
    #[error("key `{0}` appears twice")]
    DuplicateKey(String),
    /// A required key is missing.
    #[error("key `{0}` is missing")]
    MissingKey(&'static str),
    /// A value does not parse for its key.
    #[error("key `{key}` has an invalid value {value:?}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as sent.
        value: String,
    },
    /// `type` names no message.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A message arrived that does not belong at this step.
    #[error("expected a `{expected}` message, got `{got}`")]
    Unexpected {
        /// The type expected.
        expected: &'static str,
        /// The type received.
        got: &'static str,
    },
    /// The wrong number of descriptors came with a message.
    #[error("`{msg}` must carry {expected} descriptors, got {got}")]
    WrongFdCount {
        /// The message type.
        msg: &'static str,
        /// How many it must carry.
        expected: usize,
        /// How many came.
        got: usize,
    },
    /// The two feature sets cannot work together.
    #[error("required feature `{0}` is not supported by both sides")]
    MissingFeature(&'static str),
    /// The peer refused the handshake.
    #[error("the peer refused: {0}")]
    Refused(String),
}

impl Message {
    fn type_name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Connect(_) => "connect",
            Message::Connected { .. } => "connected",
            Message::Error { .. } => "error",
        }
    }

    /// Encodes the message (with [`VERSION`]).
    pub fn encode(&self) -> String {
        self.encode_with_version(VERSION)
    }

    fn encode_with_version(&self, version: u32) -> String {
        let mut s = format!("{MAGIC}\nversion={version}\ntype={}\n", self.type_name());
        let features = |s: &mut String, f: Features| {
            for (key, bit) in FEATURE_KEYS {
                let _ = writeln!(s, "{key}={}", u8::from(f.contains(bit)));
            }
        };
        match self {
            Message::Hello { features: f } | Message::Connected { features: f } => features(&mut s, *f),
            Message::Connect(c) => {
                features(&mut s, c.features);
                let m = c.mac;
                let _ = write!(
                    s,
                    "mem-frames={}\ntx-ring-frame={}\nrx-ring-frame={}\ngrant-table-frame={}\n\
                     grant-entries={}\ndomid={}\nmac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\n",
                    c.mem_frames,
                    c.tx_ring_frame,
                    c.rx_ring_frame,
                    c.grant_table_frame,
                    c.grant_entries,
                    c.domid,
                    m[0],
                    m[1],
                    m[2],
                    m[3],
                    m[4],
                    m[5]
                );
            }
            Message::Error { reason } => {
                // One line: newlines in the reason would end the value.
                let _ = writeln!(s, "reason={}", reason.replace(['\n', '\r'], " "));
            }
        }
        s
    }

    /// Decodes a message received from the peer (untrusted bytes).
    pub fn decode(bytes: &[u8]) -> Result<Message, HandshakeError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(HandshakeError::Truncated);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| HandshakeError::NotUtf8)?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(HandshakeError::BadMagic);
        }
        let mut map: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or(HandshakeError::NotKeyValue { line: i + 2 })?;
            if k.is_empty() {
                return Err(HandshakeError::NotKeyValue { line: i + 2 });
            }
            if map.insert(k, v).is_some() {
                return Err(HandshakeError::DuplicateKey(k.to_owned()));
            }
        }
        let kv = Kv(map);
        let version: u32 = kv.num("version")?;
        if version != VERSION {
            return Err(HandshakeError::VersionMismatch { ours: VERSION, theirs: version });
        }
        let ty = kv.get("type")?;
        Ok(match ty {
            "hello" => Message::Hello { features: kv.features()? },
            "connected" => Message::Connected { features: kv.features()? },
            "connect" => Message::Connect(Connect {
                features: kv.features()?,
                mem_frames: kv.num("mem-frames")?,
                tx_ring_frame: kv.num("tx-ring-frame")?,
                rx_ring_frame: kv.num("rx-ring-frame")?,
                grant_table_frame: kv.num("grant-table-frame")?,
                grant_entries: kv.num("grant-entries")?,
                domid: kv.num("domid")?,
                mac: kv.mac("mac")?,
            }),
            "error" => Message::Error { reason: kv.get("reason")?.to_owned() },
            other => return Err(HandshakeError::UnknownType(other.to_owned())),
        })
    }
}

struct Kv<'a>(BTreeMap<&'a str, &'a str>);

impl Kv<'_> {
    fn get(&self, key: &'static str) -> Result<&str, HandshakeError> {
        self.0.get(key).copied().ok_or(HandshakeError::MissingKey(key))
    }

    fn num<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, HandshakeError> {
        let v = self.get(key)?;
        // Plain decimal only: no sign, no leading `+`, no spaces.
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HandshakeError::BadValue { key, value: v.to_owned() });
        }
        v.parse().map_err(|_| HandshakeError::BadValue { key, value: v.to_owned() })
    }

    fn features(&self) -> Result<Features, HandshakeError> {
        let mut f = Features::empty();
        for (key, bit) in FEATURE_KEYS {
            // An absent feature key means "not supported", as in xenstore.
            match self.0.get(key).copied() {
                None | Some("0") => {}
                Some("1") => f |= bit,
                Some(v) => return Err(HandshakeError::BadValue { key, value: v.to_owned() }),
            }
        }
        Ok(f)
    }

    fn mac(&self, key: &'static str) -> Result<[u8; 6], HandshakeError> {
        let v = self.get(key)?;
        parse_mac(v).ok_or_else(|| HandshakeError::BadValue { key, value: v.to_owned() })
    }
}

/// Creates a memfd of `len` bytes for guest memory that the peer cannot shrink or grow: made
/// with `MFD_ALLOW_SEALING`, sized, then sealed `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`.
///
/// Whoever maps a shared file must know its pages stay: if the other side could truncate
/// it, the mapper's next access would be a SIGBUS (a one-line denial of service against a
/// back end serving many guests, and against the front end too, since the descriptor is
/// shared). The back end checks the seals with [`check_sealed`] before mapping.
pub fn sealed_memfd(name: &str, len: usize) -> io::Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    let fd = cvt(fd, "memfd_create")?;
    // SAFETY: `fd` was just created and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(len as u64)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl(F_ADD_SEALS) on a descriptor we own, with an integer argument.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) }, "F_ADD_SEALS")?;
    Ok(file.into())
}

/// Refuses guest memory the peer could shrink under us (see [`sealed_memfd`]): `Ok` only for
/// a memfd sealed with `F_SEAL_SHRINK`.
pub fn check_sealed(fd: BorrowedFd<'_>) -> Result<(), String> {
    // SAFETY: fcntl(F_GET_SEALS) on a descriptor the caller owns; no pointers are involved.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err(format!("guest memory is not a sealable memfd: {}", io::Error::last_os_error()));
    }
    if seals & libc::F_SEAL_SHRINK == 0 {
        return Err("guest memory memfd is not sealed against shrinking (F_SEAL_SHRINK)".into());
    }
    Ok(())
}

/// `Ok` only if `fd` is an eventfd (what `/proc/self/fd` calls `anon_inode:[eventfd]`): a
/// peer handing over a pipe, a socket or a file as its event channel is refused rather than
/// read from and written to.
pub fn check_eventfd(fd: BorrowedFd<'_>) -> Result<(), String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| format!("cannot inspect the event channel descriptor: {e}"))?;
    if link.as_os_str() == "anon_inode:[eventfd]" {
        Ok(())
    } else {
        Err(format!("event channel descriptor is {}, not an eventfd", link.display()))
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(v: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = v.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// One end of the control socket (`AF_UNIX`, `SOCK_SEQPACKET`).
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A listening control socket at a path (the back end's).
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    path: std::path::PathBuf,
}

fn cvt(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

fn seqpacket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation; the result is checked.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) }, "socket")?;
    // SAFETY: `fd` was just returned by `socket` and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: all-zero is a valid `sockaddr_un`.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad socket path {}", path.display()),
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let len = (size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    Ok((addr, len))
}

/// Waits for `events` on `fd`; returns the revents, or 0 on timeout.
pub fn poll_one(fd: RawFd, events: libc::c_short, timeout: Option<Duration>) -> io::Result<libc::c_short> {
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    loop {
        // SAFETY: one valid pollfd on the stack.
        let r = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if r >= 0 {
            return Ok(if r == 0 { 0 } else { pfd.revents });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Listener {
    /// Binds and listens at `path`, replacing a stale socket file left by a dead back end.
    pub fn bind(path: &Path) -> io::Result<Listener> {
        let fd = seqpacket()?;
        let (addr, len) = sockaddr(path)?;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        // SAFETY: `addr` is a `sockaddr_un` and `len` its used length.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) }, "bind")?;
        // SAFETY: listen on a bound socket we own.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), 4) }, "listen")?;
        Ok(Listener { fd, path: path.to_owned() })
    }

    /// Accepts one front end; `Ok(None)` if none came within `timeout`.
    pub fn accept(&self, timeout: Option<Duration>) -> io::Result<Option<Channel>> {
        if poll_one(self.fd.as_raw_fd(), libc::POLLIN, timeout)? == 0 {
            return Ok(None);
        }
        // SAFETY: accept without an address buffer on a listening socket we own.
        let fd = unsafe {
            libc::accept4(self.fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC)
        };
        let fd = cvt(fd, "accept")?;
        // SAFETY: `fd` was just returned by `accept4` and nothing else owns it.
        Ok(Some(Channel { fd: unsafe { OwnedFd::from_raw_fd(fd) } }))
    }

    /// The listening descriptor (for `poll`).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Channel {
    /// Connects to a back end listening at `path`.
    pub fn connect(path: &Path) -> io::Result<Channel> {
        let fd = seqpacket()?;
        let (addr, len) = sockaddr(path)?;
        // SAFETY: `addr` is a `sockaddr_un` and `len` its used length.
        cvt(unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) }, "connect")?;
        Ok(Channel { fd })
    }

    /// A connected pair (for tests and in-process use).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let mut fds = [0; 2];
        let ty = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
        // SAFETY: `fds` has room for the two descriptors socketpair writes.
        let ret = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) };
        cvt(ret, "socketpair")?;
        // SAFETY: both descriptors were just created and nothing else owns them.
        let [a, b] = fds.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Sends raw message bytes with descriptors (one datagram, one `SCM_RIGHTS` message).
    pub fn send_raw(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), HandshakeError> {
        if bytes.len() > MAX_MESSAGE || fds.len() > MAX_FDS {
            return Err(HandshakeError::Truncated);
        }
        let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
        let mut control = FdCmsg::new(fds);
        // SAFETY: all-zero is a valid `msghdr` (no name, no control).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = (&raw mut control).cast();
            msg.msg_controllen = control.space() as _; // usize on glibc, socklen_t on musl
        }
        loop {
            // SAFETY: `msg` describes live buffers (iov over `bytes`, control in `control`).
            let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EPIPE) | Some(libc::ECONNRESET) => return Err(HandshakeError::PeerClosed),
                _ => return Err(e.into()),
            }
        }
    }

    /// Sends a message with descriptors.
    pub fn send(&self, msg: &Message, fds: &[BorrowedFd<'_>]) -> Result<(), HandshakeError> {
        self.send_raw(msg.encode().as_bytes(), fds)
    }

    /// Receives one datagram and the descriptors that came with it (all of them are owned by
    /// the result, so none leaks whatever the caller decides).
    pub fn recv_raw(&self, timeout: Option<Duration>) -> Result<(Vec<u8>, Vec<OwnedFd>), HandshakeError> {
        let ev = poll_one(self.fd.as_raw_fd(), libc::POLLIN, timeout)?;
        if ev == 0 {
            return Err(HandshakeError::Timeout(timeout.unwrap_or_default()));
        }
        // One byte more than allowed, so an over-long message shows as truncated.
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut control = [0u64; CONTROL_WORDS];
        // SAFETY: all-zero is a valid `msghdr`.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _; // usize on glibc, socklen_t on musl
        let n = loop {
            // SAFETY: `msg` describes live, exclusively borrowed buffers; MSG_CMSG_CLOEXEC
            // makes received descriptors close-on-exec.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECONNRESET) => return Err(HandshakeError::PeerClosed),
                _ => return Err(e.into()),
            }
        };
        // Take ownership of every descriptor first, so that none leaks on any error below.
        let used = (msg.msg_controllen as usize).min(std::mem::size_of_val(&control));
        let bytes: Vec<u8> = control.iter().flat_map(|w| w.to_ne_bytes()).take(used).collect();
        let fds: Vec<OwnedFd> = received_fds(&bytes)
            .into_iter()
            // SAFETY: the kernel installed each of these descriptors in our table for this
            // message; nothing else owns them.
            .map(|raw| unsafe { OwnedFd::from_raw_fd(raw) })
            .collect();
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 || n > MAX_MESSAGE {
            return Err(HandshakeError::Truncated);
        }
        if n == 0 {
            return Err(HandshakeError::PeerClosed);
        }
        buf.truncate(n);
        Ok((buf, fds))
    }

    /// Receives and decodes one message.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<(Message, Vec<OwnedFd>), HandshakeError> {
        let (bytes, fds) = self.recv_raw(timeout)?;
        Ok((Message::decode(&bytes)?, fds))
    }

    /// Whether the peer has hung up (closed its end or died), without consuming anything.
    pub fn peer_gone(&self) -> io::Result<bool> {
        let ev = poll_one(self.fd.as_raw_fd(), libc::POLLRDHUP, Some(Duration::ZERO))?;
        Ok(ev & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0)
    }

    /// Tells the peer why we give up (best effort: it may be gone already).
    pub fn send_error(&self, reason: &str) {
        let _ = self.send(&Message::Error { reason: reason.to_owned() }, &[]);
    }

    /// The socket descriptor, for `poll` (readable or `POLLHUP` means the peer spoke or left).
    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One `SCM_RIGHTS` control message as Linux lays it out: a `cmsghdr` (16 bytes on 64-bit,
/// so `CMSG_DATA` follows it directly) and the descriptors.
#[repr(C)]
struct FdCmsg {
    hdr: libc::cmsghdr,
    fds: [RawFd; MAX_FDS],
}

/// `CMSG_LEN(0)`: the header, aligned (what `CMSG_DATA` is offset by).
const CMSG_HDR: usize = size_of::<libc::cmsghdr>();
/// Room for a received control buffer (a little more than one full [`FdCmsg`]), in words so
/// it is aligned for `cmsghdr`.
const CONTROL_WORDS: usize = size_of::<FdCmsg>().div_ceil(8) + 2;

impl FdCmsg {
    fn new(fds: &[BorrowedFd<'_>]) -> Self {
        const { assert!(CMSG_HDR % size_of::<usize>() == 0 && std::mem::align_of::<libc::cmsghdr>() <= 8) };
        let mut raw = [-1; MAX_FDS];
        for (r, f) in raw.iter_mut().zip(fds) {
            *r = f.as_raw_fd();
        }
        let n = fds.len().min(MAX_FDS);
        // SAFETY: all-zero is a valid `cmsghdr` (its padding fields, if any, included).
        let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
        hdr.cmsg_level = libc::SOL_SOCKET;
        hdr.cmsg_type = libc::SCM_RIGHTS;
        hdr.cmsg_len = (CMSG_HDR + n * size_of::<RawFd>()) as _;
        FdCmsg { hdr, fds: raw }
    }

    /// `CMSG_SPACE` of the descriptors: the length rounded up to the header's alignment.
    // `cmsg_len` is usize on glibc and socklen_t on musl (the VM's static probe).
    #[allow(clippy::unnecessary_cast)]
    fn space(&self) -> usize {
        (self.hdr.cmsg_len as usize).next_multiple_of(size_of::<usize>())
    }
}

/// The descriptors in every `SCM_RIGHTS` message of a received control buffer, walked the
/// way `CMSG_NXTHDR` walks it, by value (the kernel wrote it, but nothing is dereferenced).
fn received_fds(control: &[u8]) -> Vec<RawFd> {
    let mut out = Vec::new();
    let mut off = 0usize;
    let word = size_of::<usize>();
    while off + CMSG_HDR <= control.len() {
        let field = |at: usize, n: usize| &control[off + at..off + at + n];
        let len = usize::from_ne_bytes(field(0, word).try_into().unwrap_or([0; 8]));
        let level = i32::from_ne_bytes(field(word, 4).try_into().unwrap_or([0; 4]));
        let ty = i32::from_ne_bytes(field(word + 4, 4).try_into().unwrap_or([0; 4]));
        if len < CMSG_HDR || off + len > control.len() {
            break;
        }
        if level == libc::SOL_SOCKET && ty == libc::SCM_RIGHTS {
            for c in control[off + CMSG_HDR..off + len].chunks_exact(size_of::<RawFd>()) {
                out.push(RawFd::from_ne_bytes(c.try_into().unwrap_or([0xff; 4])));
            }
        }
        off += len.next_multiple_of(word);
    }
    out.retain(|&fd| fd >= 0);
    out
}

/// Timeout for each step of the handshake.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

fn expect_type(msg: Message, expected: &'static str) -> Result<Message, HandshakeError> {
    if let Message::Error { reason } = msg {
        return Err(HandshakeError::Refused(reason));
    }
    let got = msg.type_name();
    if got == expected {
        Ok(msg)
    } else {
        Err(HandshakeError::Unexpected { expected, got })
    }
}

/// The back end's half: advertise `ours`, receive `connect` and its three descriptors,
/// negotiate, confirm. On any failure the front end is told why (best effort) before the
/// error is returned.
pub fn back_handshake(
    chan: &Channel,
    ours: Features,
) -> Result<(Connect, ConnectFds, Negotiated), HandshakeError> {
    let run = || -> Result<(Connect, ConnectFds, Negotiated), HandshakeError> {
        chan.send(&Message::Hello { features: ours }, &[])?;
        let (msg, fds) = chan.recv(Some(STEP_TIMEOUT))?;
        let Message::Connect(connect) = expect_type(msg, "connect")? else {
            unreachable!("expect_type checked the type")
        };
        if fds.len() != 3 {
            return Err(HandshakeError::WrongFdCount { msg: "connect", expected: 3, got: fds.len() });
        }
        let mut it = fds.into_iter();
        let mut next =
            || it.next().ok_or(HandshakeError::WrongFdCount { msg: "connect", expected: 3, got: 0 });
        let fds = ConnectFds { mem: next()?, to_back: next()?, to_front: next()? };
        let negotiated = negotiate(ours, connect.features)?;
        Ok((connect, fds, negotiated))
    };
    match run() {
        Ok(r) => Ok(r),
        Err(e) => {
            if !matches!(e, HandshakeError::PeerClosed | HandshakeError::Refused(_)) {
                chan.send_error(&e.to_string());
            }
            Err(e)
        }
    }
}

/// The back end's last step, once it has attached to everything `connect` named:
/// `connected` with the negotiated features.
pub fn back_confirm(chan: &Channel, negotiated: &Negotiated) -> Result<(), HandshakeError> {
    chan.send(&Message::Connected { features: negotiated.features() }, &[])
}

/// The front end's half: read `hello`, send `connect` (with `connect.features` as ours) and
/// the descriptors, wait for `connected`. Returns the negotiated features, which the front
/// end checks equal its own computation.
pub fn front_handshake(
    chan: &Channel,
    connect: &Connect,
    fds: [BorrowedFd<'_>; 3],
) -> Result<Negotiated, HandshakeError> {
    let run = || -> Result<Negotiated, HandshakeError> {
        let (msg, extra) = chan.recv(Some(STEP_TIMEOUT))?;
        if !extra.is_empty() {
            return Err(HandshakeError::WrongFdCount { msg: "hello", expected: 0, got: extra.len() });
        }
        let Message::Hello { features: back } = expect_type(msg, "hello")? else {
            unreachable!("expect_type checked the type")
        };
        let negotiated = negotiate(back, connect.features)?;
        chan.send(&Message::Connect(*connect), &fds)?;
        let (msg, extra) = chan.recv(Some(STEP_TIMEOUT))?;
        if !extra.is_empty() {
            return Err(HandshakeError::WrongFdCount { msg: "connected", expected: 0, got: extra.len() });
        }
        let Message::Connected { features } = expect_type(msg, "connected")? else {
            unreachable!("expect_type checked the type")
        };
        if features != negotiated.features() {
            return Err(HandshakeError::BadValue { key: "feature-*", value: format!("{features:?}") });
        }
        Ok(negotiated)
    };
    match run() {
        Ok(r) => Ok(r),
        Err(e) => {
            if !matches!(e, HandshakeError::PeerClosed | HandshakeError::Refused(_)) {
                chan.send_error(&e.to_string());
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    const ALL: Features = Features::SG
        .union(Features::GSO_TCPV4)
        .union(Features::GSO_TCPV6)
        .union(Features::RX_COPY)
        .union(Features::IPV6_CSUM_OFFLOAD);

    fn connect(features: Features) -> Connect {
        Connect {
            features,
            mem_frames: 1024,
            tx_ring_frame: 0,
            rx_ring_frame: 1,
            grant_table_frame: 2,
            grant_entries: 1024,
            domid: 1,
            mac: [0x02, 0, 0, 0xab, 0xcd, 0xef],
        }
    }

    fn three_fds() -> Vec<OwnedFd> {
        (0..3).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect()
    }

    #[test]
    fn every_message_round_trips() {
        for msg in [
            Message::Hello { features: ALL },
            Message::Hello { features: Features::RX_COPY | Features::NO_CSUM_OFFLOAD },
            Message::Connect(connect(ALL)),
            Message::Connected { features: Features::empty() },
            Message::Error { reason: "no".into() },
        ] {
            assert_eq!(Message::decode(msg.encode().as_bytes()).unwrap(), msg);
        }
        let text = Message::Connect(connect(ALL)).encode();
        assert!(text.starts_with("pvio-netif\nversion=1\ntype=connect\nfeature-sg=1\n"), "{text}");
        assert!(
            text.contains("\ntx-ring-frame=0\nrx-ring-frame=1\ngrant-table-frame=2\n")
                && text.contains("mac=02:00:00:ab:cd:ef\n")
        );
    }

    #[test]
    fn version_mismatch_is_refused_by_name() {
        let two = Message::Hello { features: ALL }.encode_with_version(2);
        assert!(matches!(
            Message::decode(two.as_bytes()),
            Err(HandshakeError::VersionMismatch { ours: 1, theirs: 2 })
        ));

        // Across the socket: a version-2 back end; the front end refuses and says why.
        let (back, front) = Channel::pair().unwrap();
        back.send_raw(two.as_bytes(), &[]).unwrap();
        let fds = three_fds();
        let err = front_handshake(&front, &connect(ALL), [0, 1, 2].map(|i| fds[i].as_fd())).unwrap_err();
        assert!(matches!(err, HandshakeError::VersionMismatch { ours: 1, theirs: 2 }), "{err}");
        let (reply, _) = back.recv(Some(Duration::from_secs(1))).unwrap();
        match reply {
            Message::Error { reason } => assert!(reason.contains("version mismatch"), "{reason}"),
            other => panic!("expected an error message, got {other:?}"),
        }
    }

    #[test]
    fn malformed_messages_are_errors_naming_the_rule() {
        let d = |s: &[u8]| Message::decode(s).unwrap_err();
        assert!(matches!(d(b"\xff\xfe"), HandshakeError::NotUtf8));
        assert!(matches!(d(b"xen-netif\nversion=1\ntype=hello\n"), HandshakeError::BadMagic));
        assert!(matches!(d(b"pvio-netif\nversion=1\ntype\n"), HandshakeError::NotKeyValue { line: 3 }));
        assert!(matches!(d(b"pvio-netif\nversion=1\n=1\n"), HandshakeError::NotKeyValue { line: 3 }));
        assert!(
            matches!(d(b"pvio-netif\nversion=1\nversion=1\n"), HandshakeError::DuplicateKey(k) if k == "version")
        );
        assert!(matches!(d(b"pvio-netif\ntype=hello\n"), HandshakeError::MissingKey("version")));
        assert!(matches!(d(b"pvio-netif\nversion=+1\n"), HandshakeError::BadValue { key: "version", .. }));
        assert!(matches!(d(b"pvio-netif\nversion=1\n"), HandshakeError::MissingKey("type")));
        assert!(
            matches!(d(b"pvio-netif\nversion=1\ntype=flip\n"), HandshakeError::UnknownType(t) if t == "flip")
        );
        assert!(matches!(
            d(b"pvio-netif\nversion=1\ntype=hello\nfeature-sg=yes\n"),
            HandshakeError::BadValue { key: "feature-sg", .. }
        ));
        let c = Message::Connect(connect(ALL)).encode();
        let wild = c.replace("tx-ring-frame=0", "tx-ring-frame=99999999999");
        assert!(matches!(d(wild.as_bytes()), HandshakeError::BadValue { key: "tx-ring-frame", .. }));
        let no_mac = c.replace("mac=02:00:00:ab:cd:ef\n", "");
        assert!(matches!(d(no_mac.as_bytes()), HandshakeError::MissingKey("mac")));
        let bad_mac = c.replace("mac=02:00:00:ab:cd:ef", "mac=02:00:00:ab:cd");
        assert!(matches!(d(bad_mac.as_bytes()), HandshakeError::BadValue { key: "mac", .. }));
        let long = format!("{MAGIC}\nversion=1\ntype=hello\nx={}\n", "a".repeat(MAX_MESSAGE));
        assert!(matches!(d(long.as_bytes()), HandshakeError::Truncated));
        // Unknown keys are ignored, as unknown xenstore nodes are.
        let extra = format!("{}feature-split-event-channels=1\n", Message::Hello { features: ALL }.encode());
        assert_eq!(Message::decode(extra.as_bytes()).unwrap(), Message::Hello { features: ALL });
    }

    #[test]
    fn negotiation_follows_xen_netback() {
        let n = negotiate(ALL, ALL).unwrap();
        assert_eq!(
            n,
            Negotiated {
                sg: true,
                gso_tcpv4: true,
                gso_tcpv6: true,
                csum_offload: true,
                ipv6_csum_offload: true
            }
        );
        // GSO without SG is off; a front end without checksum offload turns IPv4 GSO off.
        let n = negotiate(ALL, ALL - Features::SG).unwrap();
        assert!(!n.gso_tcpv4 && !n.gso_tcpv6);
        let n = negotiate(ALL, ALL | Features::NO_CSUM_OFFLOAD).unwrap();
        assert!(!n.csum_offload && !n.gso_tcpv4 && n.gso_tcpv6);
        assert!(matches!(
            negotiate(ALL, ALL - Features::RX_COPY),
            Err(HandshakeError::MissingFeature("feature-rx-copy"))
        ));
    }

    #[test]
    fn full_handshake_passes_three_descriptors_that_work() {
        let (back, front) = Channel::pair().unwrap();
        let mem = pvio_ring::MemfdRegion::new("hs-test", 4096).unwrap();
        mem.mem().write_bytes(100, b"shared").unwrap();
        let ev_b = pvio_ring::EventFd::new().unwrap();
        let ev_f = pvio_ring::EventFd::new().unwrap();
        let c = connect(ALL - Features::GSO_TCPV6);
        let t = std::thread::spawn(move || {
            let (got, fds, n) = back_handshake(&back, ALL).unwrap();
            back_confirm(&back, &n).unwrap();
            (got, fds, n, back)
        });
        let n = front_handshake(&front, &c, [mem.as_fd(), ev_b.as_fd(), ev_f.as_fd()]).unwrap();
        let (got, fds, n_back, back) = t.join().unwrap();
        assert_eq!(got, c);
        assert_eq!(n, n_back);
        assert!(n.gso_tcpv4 && !n.gso_tcpv6);
        // The memfd that arrived maps the same bytes; the eventfd that arrived wakes ours.
        let theirs = pvio_ring::MemfdRegion::from_fd(fds.mem, 4096).unwrap();
        let mut buf = [0u8; 6];
        theirs.mem().read_bytes(100, &mut buf).unwrap();
        assert_eq!(&buf, b"shared");
        use pvio_ring::{Notifier, Waiter};
        pvio_ring::EventFd::from_fd(fds.to_back).unwrap().notify().unwrap();
        assert!(ev_b.wait(Some(Duration::from_secs(1))).unwrap());
        // Hangup is visible: drop the front end's socket.
        assert!(!back.peer_gone().unwrap());
        drop(front);
        assert!(back.peer_gone().unwrap());
    }

    #[test]
    fn back_end_refuses_connect_without_descriptors_and_says_why() {
        let (back, front) = Channel::pair().unwrap();
        let t = std::thread::spawn(move || back_handshake(&back, ALL).map(|_| ()));
        let (hello, _) = front.recv(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(hello, Message::Hello { features: ALL });
        front.send(&Message::Connect(connect(ALL)), &[]).unwrap();
        let err = t.join().unwrap().unwrap_err();
        assert!(matches!(err, HandshakeError::WrongFdCount { expected: 3, got: 0, .. }), "{err}");
        let (reply, _) = front.recv(Some(Duration::from_secs(1))).unwrap();
        assert!(matches!(reply, Message::Error { reason } if reason.contains("descriptors")));
    }

    #[test]
    fn back_end_refuses_a_garbage_connect() {
        let (back, front) = Channel::pair().unwrap();
        let t = std::thread::spawn(move || back_handshake(&back, ALL).map(|_| ()));
        front.recv(Some(Duration::from_secs(5))).unwrap();
        let fds = three_fds();
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        front.send_raw(b"pvio-netif\nversion=1\ntype=connect\nfeature-sg=1\n", &borrowed).unwrap();
        let err = t.join().unwrap().unwrap_err();
        assert!(matches!(err, HandshakeError::MissingKey("mem-frames")), "{err}");
    }

    #[test]
    fn control_layout_matches_the_cmsg_macros() {
        // SAFETY: CMSG_LEN is a pure size computation.
        let len0 = unsafe { libc::CMSG_LEN(0) } as usize;
        // SAFETY: as above.
        let space3 = unsafe { libc::CMSG_SPACE(12) } as usize;
        assert_eq!(len0, CMSG_HDR);
        let devnull: Vec<OwnedFd> = three_fds();
        let three: Vec<_> = devnull.iter().take(3).map(|f| f.as_fd()).collect();
        assert_eq!(FdCmsg::new(&three).space(), space3);
        assert_eq!(std::mem::offset_of!(FdCmsg, fds), CMSG_HDR);
        // A received buffer with two messages, the second truncated: only whole ones count.
        let one = FdCmsg::new(&three);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&one.hdr.cmsg_len.to_ne_bytes());
        bytes.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        bytes.extend_from_slice(&libc::SCM_RIGHTS.to_ne_bytes());
        for fd in [7, 8, 9, -1] {
            bytes.extend_from_slice(&(fd as RawFd).to_ne_bytes());
        }
        bytes.extend_from_slice(&1000usize.to_ne_bytes());
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(received_fds(&bytes), vec![7, 8, 9]);
        assert_eq!(received_fds(&bytes[..10]), Vec::<RawFd>::new());
    }

    #[test]
    fn sealed_memfds_cannot_be_truncated_and_unsealed_ones_are_refused() {
        let fd = sealed_memfd("pvio-seal-test", 8192).unwrap();
        assert_eq!(check_sealed(fd.as_fd()), Ok(()));
        let file = std::fs::File::from(fd);
        assert_eq!(file.metadata().unwrap().len(), 8192);
        assert!(file.set_len(0).is_err(), "shrinking a sealed memfd must fail");
        assert!(file.set_len(16384).is_err(), "growing a sealed memfd must fail");
        // A plain memfd (F_SEAL_SEAL only) and a non-memfd are refused.
        let plain = pvio_ring::MemfdRegion::new("pvio-seal-test", 4096).unwrap();
        assert!(check_sealed(plain.as_fd()).unwrap_err().contains("F_SEAL_SHRINK"));
        let devnull = std::fs::File::open("/dev/null").unwrap();
        assert!(check_sealed(devnull.as_fd()).unwrap_err().contains("not a sealable memfd"));
    }

    #[test]
    fn only_eventfds_pass_as_event_channels() {
        let ev = pvio_ring::EventFd::new().unwrap();
        assert_eq!(check_eventfd(ev.as_fd()), Ok(()));
        let devnull = std::fs::File::open("/dev/null").unwrap();
        assert!(check_eventfd(devnull.as_fd()).unwrap_err().contains("/dev/null"));
        let (a, _b) = Channel::pair().unwrap();
        // SAFETY: the descriptor stays open (owned by `a`) while the borrow is used.
        let sock = unsafe { BorrowedFd::borrow_raw(a.as_raw_fd()) };
        assert!(check_eventfd(sock).unwrap_err().contains("socket"));
    }

    #[test]
    fn a_dead_peer_is_peer_closed_not_a_hang() {
        let (back, front) = Channel::pair().unwrap();
        drop(front);
        assert!(matches!(back_handshake(&back, ALL), Err(HandshakeError::PeerClosed)));
    }
}
