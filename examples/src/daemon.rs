//! What the long-running programs (`netfront`, `netback`, `tap_forwarder`) share: clean
//! shutdown on SIGINT/SIGTERM that a `poll` loop can wait on, and traffic counters printed
//! periodically.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set when SIGINT or SIGTERM arrives; also readable as a descriptor for `poll`.
#[derive(Debug)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    read: UnixStream,
}

impl Shutdown {
    /// Installs handlers for SIGINT and SIGTERM (with `signal-hook`: the handler only stores
    /// a flag and writes one byte to a socket, both async-signal-safe).
    pub fn install() -> io::Result<Shutdown> {
        let flag = Arc::new(AtomicBool::new(false));
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(Shutdown { flag, read })
    }

    /// Whether a signal asked us to stop.
    pub fn requested(&self) -> bool {
        // Relaxed: the flag carries no data; whoever sees it only stops.
        self.flag.load(Ordering::Relaxed)
    }

    /// Asks every loop watching this to stop (as a signal would).
    pub fn request(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// The flag, for threads.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    /// A descriptor that becomes readable when a signal arrives (for `poll`).
    pub fn as_raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Consumes the wake-up bytes (the flag stays set).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.read).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Traffic counters of one direction, updated by one thread and read by the printer.
#[derive(Debug, Default)]
pub struct Counters {
    /// Frames passed on.
    pub packets: AtomicU64,
    /// Bytes passed on (frame bytes, without vnet headers).
    pub bytes: AtomicU64,
    /// Frames dropped for lack of room (ring full, no posted buffer, device busy).
    pub drops: AtomicU64,
    /// Frames refused as invalid, or failed system calls.
    pub errors: AtomicU64,
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Frames.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// Drops.
    pub drops: u64,
    /// Errors.
    pub errors: u64,
}

impl Counters {
    /// Counts one frame of `len` bytes.
    pub fn packet(&self, len: usize) {
        // Relaxed everywhere: these are statistics, ordered with nothing.
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Counts a drop.
    pub fn drop_one(&self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            drops: self.drops.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Prints one line per interval with per-direction totals and rates.
#[derive(Debug)]
pub struct StatsPrinter {
    prog: &'static str,
    interval: Duration,
    last: Instant,
    prev: Vec<Snapshot>,
}

impl StatsPrinter {
    /// A printer for `prog` every `interval` (zero: never).
    pub fn new(prog: &'static str, interval: Duration) -> Self {
        StatsPrinter { prog, interval, last: Instant::now(), prev: Vec::new() }
    }

    /// Prints if an interval has passed. `dirs` are (label, counters).
    pub fn tick(&mut self, dirs: &[(&str, &Counters)]) {
        if self.interval.is_zero() || self.last.elapsed() < self.interval {
            return;
        }
        self.print(dirs);
    }

    /// Prints now.
    pub fn print(&mut self, dirs: &[(&str, &Counters)]) {
        let secs = self.last.elapsed().as_secs_f64().max(1e-9);
        self.last = Instant::now();
        self.prev.resize(dirs.len(), Snapshot::default());
        let mut line = format!("{}:", self.prog);
        for ((label, c), prev) in dirs.iter().zip(self.prev.iter_mut()) {
            let s = c.snapshot();
            let gbps = (s.bytes - prev.bytes) as f64 * 8.0 / secs / 1e9;
            line.push_str(&format!(
                " {label}: {} pkts {} bytes {} drops {} errors ({gbps:.2} Gbit/s);",
                s.packets, s.bytes, s.drops, s.errors
            ));
            *prev = s;
        }
        eprintln!("{}", line.trim_end_matches(';'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up() {
        let c = Counters::default();
        c.packet(100);
        c.packet(60);
        c.drop_one();
        c.error();
        assert_eq!(c.snapshot(), Snapshot { packets: 2, bytes: 160, drops: 1, errors: 1 });
    }

    #[test]
    fn a_signal_sets_the_flag_and_wakes_poll() {
        let s = Shutdown::install().unwrap();
        assert!(!s.requested());
        // SAFETY: raising a signal in our own process; the handler was installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        assert!(s.requested());
        let ev =
            crate::handshake::poll_one(s.as_raw_fd(), libc::POLLIN, Some(Duration::from_secs(1))).unwrap();
        assert_ne!(ev & libc::POLLIN, 0);
        s.drain();
    }
}
