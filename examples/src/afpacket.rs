//! An `AF_PACKET` socket bound to one interface, with `PACKET_VNET_HDR`: every frame read or
//! written is preceded by a `virtio_net_hdr`, so super-frames and partial checksums cross in
//! both directions as metadata, as through a TAP device.
//!
//! The header is 12 bytes where the kernel allows choosing (`PACKET_VNET_HDR_SZ`, Linux 6.2)
//! and the original 10-byte `struct virtio_net_hdr` otherwise; either way it converts with
//! `pvio-offload`'s [`OffloadMeta`] conversions. The socket ignores frames the host itself
//! sends on the interface (`PACKET_IGNORE_OUTGOING`, and the `PACKET_OUTGOING` packet type
//! is dropped on kernels without it) and puts the interface in promiscuous mode, so frames
//! addressed to the guest's MAC are seen.

use std::io::{self, IoSlice};
use std::mem::{size_of, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use pvio_offload::virtio::VIRTIO_NET_HDR_LEN;
use pvio_offload::{OffloadMeta, VirtioNetHdr};
use zerocopy::{FromBytes, IntoBytes};

use crate::tap::{set_nonblocking, writev_raw};

/// An `AF_PACKET` raw socket with vnet headers, bound to one interface.
#[derive(Debug)]
pub struct AfPacket {
    fd: OwnedFd,
    ifname: String,
    ifindex: i32,
    /// 12 with `PACKET_VNET_HDR_SZ`, else 10.
    hdr_len: usize,
}

fn check(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(ret)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` points at a live `T` whose size is passed with it.
    let ret = unsafe {
        libc::setsockopt(fd, level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    check(ret, what).map(|_| ())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl AfPacket {
    /// Opens a packet socket on `ifname` (which must exist in the calling thread's network
    /// namespace) with vnet headers, promiscuous, ignoring the host's own outgoing frames.
    pub fn open(ifname: &str) -> io::Result<AfPacket> {
        let cname =
            std::ffi::CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("interface {ifname}: {e}")));
        }
        // Protocol 0 until bound, so nothing from other interfaces is queued meanwhile.
        // SAFETY: plain socket creation; the result is checked.
        let fd = check(
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
            "socket",
        )?;
        // SAFETY: `fd` was just returned by `socket` and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let one: libc::c_int = 1;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one, "PACKET_VNET_HDR")?;
        let twelve = VIRTIO_NET_HDR_LEN as libc::c_int;
        let hdr_len = match setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_VNET_HDR_SZ,
            &twelve,
            "PACKET_VNET_HDR_SZ",
        ) {
            Ok(()) => VIRTIO_NET_HDR_LEN,
            Err(_) => VIRTIO_NET_HDR_LEN - 2,
        };
        // Best effort: older kernels lack it, and recv filters PACKET_OUTGOING anyway.
        let _ =
            setsockopt(raw, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one, "PACKET_IGNORE_OUTGOING");
        let buf: libc::c_int = 16 << 20;
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &buf, "SO_RCVBUFFORCE");
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &buf, "SO_SNDBUFFORCE");
        // SAFETY: all-zero is a valid `sockaddr_ll`.
        let mut addr: libc::sockaddr_ll = unsafe { zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a `sockaddr_ll` of the size passed.
        let ret = unsafe {
            libc::bind(raw, (&raw const addr).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t)
        };
        check(ret, "bind")?;
        // SAFETY: all-zero is a valid `packet_mreq`.
        let mut mreq: libc::packet_mreq = unsafe { zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq, "PACKET_ADD_MEMBERSHIP")?;
        Ok(AfPacket { fd, ifname: ifname.to_owned(), ifindex: ifindex as i32, hdr_len })
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The length of the vnet header in use (12, or 10 on kernels before 6.2).
    pub fn vnet_hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// Switches non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        set_nonblocking(self.fd.as_raw_fd(), on)
    }

    /// Receives one frame into `buf`; returns its metadata and length. Frames the host sent
    /// out of the interface are skipped. `WouldBlock` when non-blocking and none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(OffloadMeta, usize)> {
        loop {
            let mut hdr = [0u8; VIRTIO_NET_HDR_LEN];
            let mut iov = [
                libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: self.hdr_len },
                libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
            ];
            // SAFETY: all-zero is a valid `sockaddr_ll` and `msghdr`.
            let mut from: libc::sockaddr_ll = unsafe { zeroed() };
            // SAFETY: as above.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_name = (&raw mut from).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = 2;
            // SAFETY: `msg` describes live, exclusively borrowed buffers of the stated sizes.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, libc::MSG_TRUNC) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if n < self.hdr_len {
                return Err(invalid(format!("short read of {n} bytes on {}", self.ifname)));
            }
            if n - self.hdr_len > buf.len() {
                return Err(invalid(format!(
                    "{}-byte frame on {} exceeds the buffer",
                    n - self.hdr_len,
                    self.ifname
                )));
            }
            let hdr =
                VirtioNetHdr::read_from_bytes(&hdr[..]).map_err(|_| invalid("vnet header size".into()))?;
            let meta = OffloadMeta::from_virtio(&hdr)
                .map_err(|e| invalid(format!("vnet header from kernel: {e}")))?;
            return Ok((meta, n - self.hdr_len));
        }
    }

    /// Sends one frame given as parts, with its metadata, in one `sendmsg`.
    pub fn send_vectored(&self, meta: &OffloadMeta, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        let iov: Vec<libc::iovec> = parts
            .iter()
            .map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() })
            .collect();
        // SAFETY: each iovec covers a live borrowed slice.
        unsafe { self.send_raw(meta, &iov) }
    }

    /// Sends one contiguous frame.
    pub fn send(&self, meta: &OffloadMeta, frame: &[u8]) -> io::Result<usize> {
        self.send_vectored(meta, &[IoSlice::new(frame)])
    }

    /// Sends one frame given as raw iovecs (bytes in shared memory, which no Rust reference
    /// may cover).
    ///
    /// # Safety
    /// Every `iov_base` must point at `iov_len` bytes that stay mapped and readable for the
    /// duration of the call.
    pub unsafe fn send_raw(&self, meta: &OffloadMeta, parts: &[libc::iovec]) -> io::Result<usize> {
        let hdr = meta.to_virtio(0);
        let mut iov = Vec::with_capacity(parts.len() + 1);
        iov.push(libc::iovec {
            iov_base: hdr.as_bytes().as_ptr() as *mut libc::c_void,
            iov_len: self.hdr_len,
        });
        iov.extend_from_slice(parts);
        // A bound packet socket sends on its interface with write/writev.
        // SAFETY: the first iovec covers `hdr` (alive until return); the caller guarantees
        // the rest.
        let n = unsafe { writev_raw(self.fd.as_raw_fd(), &iov) }?;
        Ok(n.saturating_sub(self.hdr_len))
    }

    /// The interface index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }
}

impl AsFd for AfPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for AfPacket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
