//! # pvio-benches: side-by-side benchmarks
//!
//! Each benchmark in `benches/` runs pvio and its named peers in the same process, on the
//! same machine, in the same run, and prints absolute rates plus the ratio to each peer —
//! these machines are noisy, so only same-run ratios are meaningful. Run them with
//! `cargo bench -p pvio-benches`.
//!
//! This library holds the small helpers the benchmarks share.
//!
//! ```
//! let r = pvio_benches::Rate::new(2_000_000, std::time::Duration::from_millis(500));
//! assert_eq!(r.per_sec(), 4_000_000.0);
//! ```
#![deny(missing_docs)]

use std::time::Duration;

/// A count of items moved in some time.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    items: u64,
    elapsed: Duration,
}

impl Rate {
    /// `items` moved in `elapsed`.
    pub fn new(items: u64, elapsed: Duration) -> Self {
        Rate { items, elapsed }
    }

    /// Items per second.
    pub fn per_sec(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    /// Millions of items per second.
    pub fn mitems(&self) -> f64 {
        self.per_sec() / 1e6
    }
}

/// The median of a set of samples (the set is sorted in place). Returns 0 for no samples.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Pins the calling thread to one CPU; returns whether it worked.
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: `cpu_set_t` is a plain bit array, valid when zeroed.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit of the set we own, after a bounds check of its own.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: sched_setaffinity only reads `size_of::<cpu_set_t>()` bytes of `set`.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0 }
}
