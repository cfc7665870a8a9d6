//! Event notification: the "doorbell" that accompanies a ring.
//!
//! Rings decide *whether* the peer must be woken ([`Notify`], the result of every push);
//! a [`Notifier`] does the waking and a [`Waiter`] sleeps until woken. Xen uses event
//! channels, virtio uses doorbell registers and interrupts; pvio ships an eventfd
//! ([`EventFd`], with `std`, usable across processes) and an in-process event
//! ([`InProcessEvent`], with `std`).

/// Whether the peer asked to be woken for what was just published.
///
/// Returned by every push (`RING_PUSH_*_AND_CHECK_NOTIFY`); dropping it unread is a bug
/// because a peer that went to sleep would never learn of the new work.
#[must_use = "the peer may be asleep waiting for this: send an event when `is_needed()`"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notify(bool);

impl Notify {
    /// The peer must be notified.
    pub const NEEDED: Notify = Notify(true);
    /// The peer need not be notified (it is awake, or asked not to be).
    pub const NOT_NEEDED: Notify = Notify(false);

    /// A decision from a boolean.
    pub const fn from_needed(needed: bool) -> Self {
        Notify(needed)
    }

    /// Whether the peer must be notified.
    pub const fn is_needed(self) -> bool {
        self.0
    }

    /// Combines two decisions (for two pushes before one notification).
    pub const fn or(self, other: Notify) -> Notify {
        Notify(self.0 || other.0)
    }

    /// Sends an event through `notifier` if one is needed; returns whether one was sent.
    pub fn send<N: Notifier + ?Sized>(self, notifier: &N) -> Result<bool, N::Error> {
        if self.0 {
            notifier.notify()?;
        }
        Ok(self.0)
    }
}

/// Something that wakes the peer: an event channel, an eventfd, a doorbell register.
pub trait Notifier {
    /// Why a notification could not be sent.
    type Error;
    /// Sends one event. Events may coalesce: several sends may wake the waiter once.
    fn notify(&self) -> Result<(), Self::Error>;
}

/// Something that sleeps until the peer sends an event.
pub trait Waiter {
    /// Why waiting failed.
    type Error;
    /// Blocks until an event arrives (consuming it) or `timeout` passes; returns whether an
    /// event arrived. `None` waits without a time limit.
    fn wait(&self, timeout: Option<core::time::Duration>) -> Result<bool, Self::Error>;
}

impl<T: Notifier + ?Sized> Notifier for &T {
    type Error = T::Error;
    fn notify(&self) -> Result<(), Self::Error> {
        (**self).notify()
    }
}

#[cfg(any(feature = "std", loom))]
pub use in_process::InProcessEvent;

#[cfg(any(feature = "std", loom))]
mod in_process {
    use crate::sync::{Condvar, Mutex};

    /// An event between threads of one process: a pending bit, a mutex and a condition
    /// variable. Sending sets the bit; waiting consumes it.
    #[derive(Debug, Default)]
    pub struct InProcessEvent {
        pending: Mutex<bool>,
        cv: Condvar,
    }

    impl InProcessEvent {
        /// A new event with nothing pending.
        pub fn new() -> Self {
            Self::default()
        }
    }

    impl super::Notifier for InProcessEvent {
        type Error = core::convert::Infallible;
        fn notify(&self) -> Result<(), Self::Error> {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            *pending = true;
            self.cv.notify_one();
            Ok(())
        }
    }

    impl super::Waiter for InProcessEvent {
        type Error = core::convert::Infallible;
        fn wait(&self, timeout: Option<core::time::Duration>) -> Result<bool, Self::Error> {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            #[cfg(not(loom))]
            if let Some(t) = timeout {
                let deadline = std::time::Instant::now() + t;
                while !*pending {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        return Ok(false);
                    }
                    pending =
                        self.cv.wait_timeout(pending, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                }
                *pending = false;
                return Ok(true);
            }
            #[cfg(loom)]
            let _ = timeout;
            while !*pending {
                pending = self.cv.wait(pending).unwrap_or_else(|e| e.into_inner());
            }
            *pending = false;
            Ok(true)
        }
    }
}

#[cfg(all(feature = "std", not(loom)))]
pub use eventfd::EventFd;

#[cfg(all(feature = "std", not(loom)))]
mod eventfd {
    use std::io;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

    /// A Linux eventfd used as an event channel. It can be handed to another process (over a
    /// Unix socket with `SCM_RIGHTS`) and rebuilt there with [`EventFd::from_fd`].
    #[derive(Debug)]
    pub struct EventFd {
        fd: OwnedFd,
    }

    impl EventFd {
        /// Creates a new non-blocking, close-on-exec eventfd with a zero counter.
        pub fn new() -> io::Result<Self> {
            // SAFETY: eventfd has no memory-safety preconditions; we check the result.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
            Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
        }

        /// Wraps a received eventfd (made non-blocking here).
        pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
            let raw = fd.as_raw_fd();
            // SAFETY: fcntl on a descriptor we own; no pointers involved.
            let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
            // SAFETY: as above.
            if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(EventFd { fd })
        }

        /// Duplicates the descriptor (for handing to another process or thread).
        pub fn try_clone(&self) -> io::Result<Self> {
            Ok(EventFd { fd: self.fd.try_clone()? })
        }

        /// Consumes any pending events without blocking; returns how many had been sent.
        pub fn drain(&self) -> io::Result<u64> {
            let mut value = 0u64;
            // SAFETY: reads 8 bytes into a local u64, as eventfd(2) requires.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut value).cast(), 8) };
            if n == 8 {
                return Ok(value);
            }
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(err)
            }
        }
    }

    impl super::Notifier for EventFd {
        type Error = io::Error;
        fn notify(&self) -> io::Result<()> {
            let one = 1u64;
            // SAFETY: writes 8 bytes from a local u64, as eventfd(2) requires.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
            if n == 8 {
                Ok(())
            } else {
                let err = io::Error::last_os_error();
                // The counter is saturated: the waiter has events pending anyway.
                if err.kind() == io::ErrorKind::WouldBlock {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    impl super::Waiter for EventFd {
        type Error = io::Error;
        fn wait(&self, timeout: Option<core::time::Duration>) -> io::Result<bool> {
            loop {
                if self.drain()? > 0 {
                    return Ok(true);
                }
                let ms = match timeout {
                    None => -1,
                    Some(t) => t.as_millis().min(i32::MAX as u128) as i32,
                };
                let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd on the stack.
                let r = unsafe { libc::poll(&raw mut pfd, 1, ms) };
                if r < 0 {
                    let err = io::Error::last_os_error();
                    if err.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(err);
                }
                if r == 0 {
                    return Ok(false);
                }
            }
        }
    }

    impl AsFd for EventFd {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.fd.as_fd()
        }
    }

    impl AsRawFd for EventFd {
        fn as_raw_fd(&self) -> RawFd {
            self.fd.as_raw_fd()
        }
    }
}

#[cfg(all(test, feature = "std", not(loom), not(miri)))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wakes_across_threads<E: Notifier + Waiter + Sync>(ev: &E)
    where
        <E as Notifier>::Error: core::fmt::Debug,
        <E as Waiter>::Error: core::fmt::Debug,
    {
        // Nothing pending: a short wait times out.
        let t = Instant::now();
        assert!(!ev.wait(Some(Duration::from_millis(20))).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(15));
        // Two sends before a wait coalesce into one wake-up.
        ev.notify().unwrap();
        ev.notify().unwrap();
        assert!(ev.wait(Some(Duration::ZERO)).unwrap());
        assert!(!ev.wait(Some(Duration::ZERO)).unwrap());
        // A send from another thread wakes a blocked waiter.
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(10));
                ev.notify().unwrap();
            });
            assert!(ev.wait(Some(Duration::from_secs(10))).unwrap());
        });
    }

    #[test]
    fn eventfd_wakes_and_times_out() {
        wakes_across_threads(&EventFd::new().unwrap());
    }

    #[test]
    fn eventfd_clone_shares_the_counter() {
        let a = EventFd::new().unwrap();
        let b = a.try_clone().unwrap();
        a.notify().unwrap();
        a.notify().unwrap();
        a.notify().unwrap();
        assert_eq!(b.drain().unwrap(), 3);
        assert_eq!(b.drain().unwrap(), 0);
    }

    #[test]
    fn in_process_event_wakes_and_times_out() {
        wakes_across_threads(&InProcessEvent::new());
    }

    #[test]
    fn notify_decision_sends_only_when_needed() {
        let ev = EventFd::new().unwrap();
        assert!(!Notify::NOT_NEEDED.send(&ev).unwrap());
        assert_eq!(ev.drain().unwrap(), 0);
        assert!(Notify::NOT_NEEDED.or(Notify::NEEDED).send(&ev).unwrap());
        assert_eq!(ev.drain().unwrap(), 1);
    }
}
