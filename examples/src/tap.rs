//! A Linux TAP device that carries offload metadata: `/dev/net/tun` opened with
//! `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, a 12-byte `virtio_net_hdr` in front of every frame
//! (`TUNSETVNETHDRSZ`), and the offloads the kernel may use (`TUNSETOFFLOAD`) set to what the
//! two ends negotiated.
//!
//! With offloads on, a frame the kernel hands us may be a TCP super-frame of up to 64 KiB with
//! a partial checksum, and we may hand it the same; the header converts to and from
//! [`OffloadMeta`] through `pvio-offload`'s lossless conversions, so nothing here interprets
//! it. A header the kernel would refuse is refused here first (an `InvalidData` error), and a
//! header the kernel gave us that does not decode is an error, not a guess.
//!
//! The device is created in the calling thread's network namespace, or in a named one
//! (`ip netns add NAME`) with [`Tap::open_in_netns`].

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use bitflags::bitflags;
use pvio_offload::virtio::VIRTIO_NET_HDR_LEN;
use pvio_offload::{OffloadMeta, VirtioNetHdr};
use zerocopy::{FromBytes, IntoBytes};

/// The largest frame a TAP device hands over with TSO on: a 64 KiB IP packet behind an
/// Ethernet header and up to two VLAN tags.
pub const MAX_FRAME: usize = 65535 + 14 + 8;

bitflags! {
    /// The offloads a TAP device may use (`TUN_F_*` for `TUNSETOFFLOAD`): what the kernel may
    /// hand us unfinished, and what it accepts unfinished from us.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct TapOffloads: u32 {
        /// `TUN_F_CSUM`: partial checksums (`NEEDS_CSUM`); every other offload needs it.
        const CSUM = libc::TUN_F_CSUM;
        /// `TUN_F_TSO4`: TCP over IPv4 super-frames.
        const TSO4 = libc::TUN_F_TSO4;
        /// `TUN_F_TSO6`: TCP over IPv6 super-frames.
        const TSO6 = libc::TUN_F_TSO6;
        /// `TUN_F_TSO_ECN`: TCP super-frames with CWR (`GSO_ECN`).
        const TSO_ECN = libc::TUN_F_TSO_ECN;
        /// `TUN_F_USO4`: UDP segmentation over IPv4.
        const USO4 = libc::TUN_F_USO4;
        /// `TUN_F_USO6`: UDP segmentation over IPv6.
        const USO6 = libc::TUN_F_USO6;
    }
}

impl TapOffloads {
    /// Checksum offload and TCP segmentation both ways: what a guest with `feature-sg`,
    /// `feature-gso-tcpv4` and `feature-gso-tcpv6` can take.
    pub const TCP: TapOffloads =
        TapOffloads::CSUM.union(TapOffloads::TSO4).union(TapOffloads::TSO6).union(TapOffloads::TSO_ECN);

    /// What a TAP device may use once netfront and netback agreed on `n`: partial checksums
    /// if checksum offload is on, super-frames of the kinds the guest takes. Set on both ends'
    /// devices, it keeps the kernels from producing anything the other end did not ask for.
    pub fn from_negotiated(n: &crate::handshake::Negotiated) -> TapOffloads {
        let mut o = TapOffloads::empty();
        if n.csum_offload || n.ipv6_csum_offload {
            o |= TapOffloads::CSUM;
        }
        if n.gso_tcpv4 {
            o |= TapOffloads::TSO4;
        }
        if n.gso_tcpv6 {
            o |= TapOffloads::TSO6;
        }
        if n.gso_tcpv4 || n.gso_tcpv6 {
            o |= TapOffloads::TSO_ECN;
        }
        o
    }

    /// Whether the kernel would refuse this set (`TSO*`/`USO*` without `CSUM` is `EINVAL`).
    pub fn is_consistent(self) -> bool {
        self.contains(TapOffloads::CSUM) || self.is_empty()
    }
}

/// `struct ifreq` with the `ifr_flags` member of its union (40 bytes on Linux).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TAP device with a 12-byte `virtio_net_hdr` before every frame.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    offloads: TapOffloads,
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Tap {
    /// Creates (or attaches to a persistent) TAP device `name` in the calling thread's network
    /// namespace, with a 12-byte vnet header and `offloads`. An empty name lets the kernel
    /// pick one (`tapN`), see [`Tap::name`].
    pub fn open(name: &str, offloads: TapOffloads) -> io::Result<Tap> {
        if name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}")));
        }
        let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
        let mut req = IfReqFlags { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        req.flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is laid out as
        // (name, then the flags member of the union, padded to 40 bytes); the fd is open.
        check(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &raw mut req) }, "TUNSETIFF")?;
        let len = req.name.iter().position(|&b| b == 0).unwrap_or(libc::IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        let size: libc::c_int = VIRTIO_NET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, which points at `size`.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const size) };
        check(ret, "TUNSETVNETHDRSZ")?;
        let mut tap = Tap { file, name, offloads: TapOffloads::empty() };
        tap.set_offloads(offloads)?;
        Ok(tap)
    }

    /// Like [`Tap::open`], but creates the device in network namespace `netns` (a name under
    /// `/run/netns`, as `ip netns add` makes). Only the calling thread switches namespace, and
    /// it switches back before returning; the device stays in `netns`.
    pub fn open_in_netns(name: &str, netns: &str, offloads: TapOffloads) -> io::Result<Tap> {
        let _guard = NetnsGuard::enter(netns)?;
        Tap::open(name, offloads)
    }

    /// Sets the offloads the kernel may use (`TUNSETOFFLOAD`): with `TSO4` it may hand over
    /// 64 KiB TCP/IPv4 super-frames and accepts them from us, and so on. Set it to what the
    /// two ends negotiated, so that nothing reaches the peer that it did not ask for.
    pub fn set_offloads(&mut self, offloads: TapOffloads) -> io::Result<()> {
        if !offloads.is_consistent() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "TSO/USO offloads need CSUM"));
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        let ret = unsafe {
            libc::ioctl(self.file.as_raw_fd(), libc::TUNSETOFFLOAD, offloads.bits() as libc::c_ulong)
        };
        check(ret, "TUNSETOFFLOAD")?;
        self.offloads = offloads;
        Ok(())
    }

    /// The offloads in force.
    pub fn offloads(&self) -> TapOffloads {
        self.offloads
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's MAC address (`SIOCGIFHWADDR`), as the kernel on this side uses it.
    pub fn mac(&self) -> io::Result<[u8; 6]> {
        let mut req = self.ifreq();
        self.hwaddr_ioctl(libc::SIOCGIFHWADDR as libc::Ioctl, &mut req, "SIOCGIFHWADDR")?;
        // SAFETY: the ioctl succeeded, so the union holds `ifru_hwaddr`.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr }.sa_data;
        Ok(std::array::from_fn(|i| data[i] as u8))
    }

    /// Sets the device's MAC address (`SIOCSIFHWADDR`; the device must be down, as it is
    /// until someone brings it up).
    pub fn set_mac(&self, mac: [u8; 6]) -> io::Result<()> {
        let mut req = self.ifreq();
        // SAFETY: all-zero is a valid `sockaddr`.
        let mut addr: libc::sockaddr = unsafe { std::mem::zeroed() };
        addr.sa_family = libc::ARPHRD_ETHER;
        for (d, s) in addr.sa_data.iter_mut().zip(mac) {
            *d = s as libc::c_char;
        }
        req.ifr_ifru.ifru_hwaddr = addr;
        self.hwaddr_ioctl(libc::SIOCSIFHWADDR as libc::Ioctl, &mut req, "SIOCSIFHWADDR")
    }

    fn ifreq(&self) -> libc::ifreq {
        // SAFETY: all-zero is a valid `ifreq`.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(self.name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        req
    }

    fn hwaddr_ioctl(&self, op: libc::Ioctl, req: &mut libc::ifreq, what: &str) -> io::Result<()> {
        // Any socket of the device's namespace will do; the TAP's own fd is not a socket.
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").or_else(|_| std::net::UdpSocket::bind("[::]:0"))?;
        // SAFETY: SIOCGIFHWADDR/SIOCSIFHWADDR read the name and read or write `ifr_hwaddr`
        // of the `ifreq` we pass, which lives across the call.
        let ret = unsafe { libc::ioctl(sock.as_raw_fd(), op, req as *mut libc::ifreq) };
        check(ret, what).map(|_| ())
    }

    /// Switches non-blocking mode (for use with `poll`).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        set_nonblocking(self.file.as_raw_fd(), on)
    }

    /// Reads one frame into `buf` (make it [`MAX_FRAME`] bytes when offloads are on); returns
    /// its metadata and length. A header that does not decode is an `InvalidData` error (the
    /// frame is consumed). `WouldBlock` when non-blocking and nothing is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(OffloadMeta, usize)> {
        let mut hdr = [0u8; VIRTIO_NET_HDR_LEN];
        let n = readv2(self.file.as_raw_fd(), &mut hdr, buf)?;
        if n < VIRTIO_NET_HDR_LEN {
            return Err(invalid(format!("short read of {n} bytes from {}", self.name)));
        }
        let hdr = VirtioNetHdr::read_from_bytes(&hdr[..]).map_err(|_| invalid("vnet header size".into()))?;
        let meta =
            OffloadMeta::from_virtio(&hdr).map_err(|e| invalid(format!("vnet header from kernel: {e}")))?;
        Ok((meta, n - VIRTIO_NET_HDR_LEN))
    }

    /// Writes one frame with its metadata, in one `writev` whatever the number of parts.
    /// The metadata is checked against the offloads in force (a super-frame of a kind the
    /// device did not enable is refused here rather than by the kernel).
    pub fn send_vectored(&self, meta: &OffloadMeta, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        self.check_meta(meta)?;
        let hdr = meta.to_virtio(0);
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() + 1);
        iov.push(IoSlice::new(hdr.as_bytes()));
        iov.extend_from_slice(parts);
        let n = writev(self.file.as_raw_fd(), &iov)?;
        Ok(n.saturating_sub(VIRTIO_NET_HDR_LEN))
    }

    /// Writes one contiguous frame with its metadata.
    pub fn send(&self, meta: &OffloadMeta, frame: &[u8]) -> io::Result<usize> {
        self.send_vectored(meta, &[IoSlice::new(frame)])
    }

    /// Writes one frame given as raw iovecs (after the header this function adds), for frames
    /// whose bytes live in shared memory that no Rust reference may cover.
    ///
    /// # Safety
    /// Every `iov_base` must point at `iov_len` bytes that stay mapped and readable for the
    /// duration of the call (the kernel copies them; their contents may change concurrently,
    /// which only changes the frame sent).
    pub unsafe fn send_raw(&self, meta: &OffloadMeta, parts: &[libc::iovec]) -> io::Result<usize> {
        self.check_meta(meta)?;
        let hdr = meta.to_virtio(0);
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(parts.len() + 1);
        iov.push(libc::iovec {
            iov_base: hdr.as_bytes().as_ptr() as *mut libc::c_void,
            iov_len: VIRTIO_NET_HDR_LEN,
        });
        iov.extend_from_slice(parts);
        // SAFETY: the first iovec covers `hdr`, alive until the call returns; the caller
        // guarantees the rest.
        let n = unsafe { writev_raw(self.file.as_raw_fd(), &iov) }?;
        Ok(n.saturating_sub(VIRTIO_NET_HDR_LEN))
    }

    fn check_meta(&self, meta: &OffloadMeta) -> io::Result<()> {
        use pvio_offload::GsoKind;
        let need = match meta.gso_kind {
            GsoKind::None => TapOffloads::empty(),
            GsoKind::TcpV4 => TapOffloads::TSO4,
            GsoKind::TcpV6 => TapOffloads::TSO6,
            GsoKind::UdpL4 => TapOffloads::USO4 | TapOffloads::USO6,
            GsoKind::Ufo => return Err(invalid("UFO super-frames are not accepted".into())),
        };
        if !need.is_empty() && !self.offloads.intersects(need) {
            return Err(invalid(format!(
                "{:?} super-frame but {} has {:?}",
                meta.gso_kind, self.name, self.offloads
            )));
        }
        if meta.ecn && meta.gso_kind != GsoKind::None && !self.offloads.contains(TapOffloads::TSO_ECN) {
            return Err(invalid(format!("ECN super-frame but {} lacks TSO_ECN", self.name)));
        }
        Ok(())
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Sets or clears `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; no pointers involved.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) }, "F_GETFL")?;
    let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }, "F_SETFL")?;
    Ok(())
}

/// One `readv` into a header buffer and a frame buffer.
pub(crate) fn readv2(fd: RawFd, hdr: &mut [u8], buf: &mut [u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: hdr.len() },
        libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
    ];
    loop {
        // SAFETY: both iovecs cover live, exclusively borrowed buffers of the stated lengths.
        let n = unsafe { libc::readv(fd, iov.as_ptr(), 2) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn writev(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    let raw: Vec<libc::iovec> = iov
        .iter()
        .map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() })
        .collect();
    // SAFETY: each iovec covers a live borrowed slice.
    unsafe { writev_raw(fd, &raw) }
}

/// `writev`, retried on `EINTR`.
///
/// # Safety
/// Every iovec must cover readable memory that stays mapped during the call.
pub(crate) unsafe fn writev_raw(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    loop {
        // SAFETY: the caller guarantees every iovec; the count is the slice's length.
        let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// While alive, the calling thread is in another network namespace; dropping it switches
/// back.
#[derive(Debug)]
pub struct NetnsGuard {
    original: File,
}

impl NetnsGuard {
    /// Moves the calling thread into `/run/netns/NAME` (only its network namespace, which a
    /// thread of a multi-threaded process may change).
    pub fn enter(name: &str) -> io::Result<NetnsGuard> {
        if name.contains('/') || name.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad namespace name {name:?}")));
        }
        let original = File::open("/proc/thread-self/ns/net")?;
        let target = File::open(format!("/run/netns/{name}"))?;
        // SAFETY: `setns` takes an open namespace fd (kept open by `target`) and a flag; it
        // changes only this thread's network namespace.
        check(unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) }, "setns")?;
        Ok(NetnsGuard { original })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: as in `enter`, with the namespace the thread came from.
        if unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            // Staying in the wrong namespace would silently misplace later devices.
            panic!("cannot return to the original network namespace: {}", io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_sets_follow_the_kernel_rule() {
        assert!(TapOffloads::TCP.is_consistent());
        assert!(TapOffloads::empty().is_consistent());
        assert!(!TapOffloads::TSO4.is_consistent());
        assert_eq!(TapOffloads::CSUM.bits(), 1);
        assert_eq!(TapOffloads::TSO4.bits(), 2);
        assert_eq!(TapOffloads::TSO6.bits(), 4);
        assert_eq!(TapOffloads::TSO_ECN.bits(), 8);
    }

    #[test]
    fn ifreq_is_forty_bytes() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }

    #[test]
    fn bad_names_are_refused_before_any_syscall() {
        assert_eq!(
            Tap::open("x".repeat(16).as_str(), TapOffloads::empty()).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(NetnsGuard::enter("../x").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
