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

/// The CPU's model name from `/proc/cpuinfo`, or `"unknown CPU"`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.to_owned()))
        .and_then(|l| l.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// The smallest and largest of a set of samples, `(inf, 0)` for none.
pub fn min_max(samples: &[f64]) -> (f64, f64) {
    samples.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)))
}

/// The median of the per-run ratios `a[i] / b[i]` (runs paired by index): robust against a
/// machine whose speed drifts between runs, since both sides of a pair ran back to back.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    let mut r: Vec<f64> = a.iter().zip(b).filter(|(_, &y)| y > 0.0).map(|(x, y)| x / y).collect();
    median(&mut r)
}

/// Whether the SIMD features the binary was compiled for include AVX2 (i.e. it was built
/// with `-C target-cpu=native` on an AVX2 machine, or an explicit `target-feature`), for
/// labelling output: `"native (AVX2 at compile time)"` or `"generic x86-64"`.
pub fn build_flavour() -> &'static str {
    if cfg!(target_feature = "avx2") {
        "native (AVX2 enabled at compile time)"
    } else {
        "generic x86-64 (SSE2 baseline)"
    }
}
