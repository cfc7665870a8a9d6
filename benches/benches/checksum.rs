//! The Internet checksum (RFC 1071) of 64-byte, 1500-byte and 64 KiB buffers, hot in cache:
//! pvio's `checksum::checksum` (engine chosen at run time) and each of its engines, against
//! `internet-checksum` 0.2, `etherparse` 0.21 (`checksum::Sum16BitWords`) and smoltcp 0.14
//! (`wire::ip::checksum::data`), plus the rate at which the same buffer can merely be read
//! (a XOR over its 64-bit words) as a ceiling.
//!
//! Every implementation's result is checked against pvio's reference sum before timing, and
//! every timed call's result is folded into a `black_box`ed sink, so no call can be elided.
//! Each run measures every row once, in an order rotated from run to run; the table shows
//! medians and the median of per-run ratios ("paired").
//!
//! The goal compares a build for generic x86-64 (this binary, built the default way)
//! with peers built with `-C target-cpu=native`. `benches/run-checksum-native.sh` builds and
//! runs this bench both ways; when `PVIO_CHECKSUM_RESULTS` names a file, the medians are
//! written there, and when `PVIO_CHECKSUM_NATIVE_RESULTS` names the native run's file the
//! cross-build goal is printed too.
//!
//! `cargo bench -p pvio-benches --bench checksum` runs the full measurement; without
//! `--bench` (e.g. under `cargo test --benches`) a short smoke run checks the code paths.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pvio_benches::{build_flavour, cpu_model, median, min_max, paired_ratio, pin_to_cpu};
use pvio_offload::checksum::{self, reference, Engine};

const SIZES: [usize; 3] = [64, 1500, 64 * 1024];

/// One implementation under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Imp {
    /// `pvio_offload::checksum::checksum`: the engine chosen at run time.
    Pvio,
    PvioScalar,
    PvioSse2,
    PvioAvx2,
    InternetChecksum,
    Etherparse,
    Smoltcp,
    /// XOR of every 64-bit word, as the compiler vectorizes it for this build.
    ReadXor,
    /// XOR of every 256-bit vector with AVX2 loads (run-time detected).
    ReadAvx2,
}

const IMPS: [Imp; 9] = [
    Imp::Pvio,
    Imp::PvioScalar,
    Imp::PvioSse2,
    Imp::PvioAvx2,
    Imp::InternetChecksum,
    Imp::Etherparse,
    Imp::Smoltcp,
    Imp::ReadXor,
    Imp::ReadAvx2,
];

/// The peers the goal is about.
const PEERS: [Imp; 3] = [Imp::InternetChecksum, Imp::Etherparse, Imp::Smoltcp];

impl Imp {
    fn key(self) -> &'static str {
        match self {
            Imp::Pvio => "pvio",
            Imp::PvioScalar => "pvio-scalar",
            Imp::PvioSse2 => "pvio-sse2",
            Imp::PvioAvx2 => "pvio-avx2",
            Imp::InternetChecksum => "internet-checksum",
            Imp::Etherparse => "etherparse",
            Imp::Smoltcp => "smoltcp",
            Imp::ReadXor => "read-xor",
            Imp::ReadAvx2 => "read-avx2",
        }
    }

    fn label(self) -> String {
        match self {
            Imp::Pvio => format!("pvio checksum() (auto: {:?})", Engine::best()),
            Imp::PvioScalar => "pvio Engine::Scalar".to_owned(),
            Imp::PvioSse2 => "pvio Engine::Sse2".to_owned(),
            Imp::PvioAvx2 => "pvio Engine::Avx2".to_owned(),
            Imp::InternetChecksum => "internet-checksum 0.2 checksum()".to_owned(),
            Imp::Etherparse => "etherparse 0.21 Sum16BitWords".to_owned(),
            Imp::Smoltcp => "smoltcp 0.14 checksum::data".to_owned(),
            Imp::ReadXor => "memory read: u64 XOR (compiler-vectorized)".to_owned(),
            Imp::ReadAvx2 => "memory read: AVX2 256-bit XOR".to_owned(),
        }
    }

    fn is_available(self) -> bool {
        match self {
            Imp::PvioScalar => Engine::Scalar.is_available(),
            Imp::PvioSse2 => Engine::Sse2.is_available(),
            Imp::PvioAvx2 | Imp::ReadAvx2 => Engine::Avx2.is_available(),
            _ => true,
        }
    }

    /// The checksum (complemented) of `data`, or for the read rows a value that depends on
    /// every byte.
    #[inline(always)]
    fn run(self, data: &[u8]) -> u64 {
        match self {
            Imp::Pvio => u64::from(checksum::checksum(data)),
            Imp::PvioScalar => u64::from(!Engine::Scalar.sum(data).unwrap_or(0)),
            Imp::PvioSse2 => u64::from(!Engine::Sse2.sum(data).unwrap_or(0)),
            Imp::PvioAvx2 => u64::from(!Engine::Avx2.sum(data).unwrap_or(0)),
            Imp::InternetChecksum => u64::from(u16::from_be_bytes(internet_checksum::checksum(data))),
            // etherparse sums native-endian words: its result goes out with `to_ne_bytes`.
            Imp::Etherparse => u64::from(u16::from_be_bytes(
                etherparse::checksum::Sum16BitWords::new().add_slice(data).ones_complement().to_ne_bytes(),
            )),
            Imp::Smoltcp => u64::from(!smoltcp::wire::checksum::data(data)),
            Imp::ReadXor => read_xor(data),
            Imp::ReadAvx2 => read_avx2(data),
        }
    }
}

/// XOR of all 64-bit words (the tail of fewer than 8 bytes is ignored).
#[inline(never)]
fn read_xor(data: &[u8]) -> u64 {
    data.chunks_exact(8)
        .fold(0, |a, c| a ^ u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
}

#[inline(never)]
fn read_avx2(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just detected, the only requirement of the kernel.
        return unsafe { read_avx2_kernel(data) };
    }
    read_xor(data)
}

/// XOR of all 32-byte vectors with four independent chains (the tail is ignored).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_avx2_kernel(data: &[u8]) -> u64 {
    use std::arch::x86_64::{
        __m256i, _mm256_castsi256_si128, _mm256_extracti128_si256, _mm256_loadu_si256, _mm256_setzero_si256,
        _mm256_xor_si256, _mm_cvtsi128_si64, _mm_unpackhi_epi64, _mm_xor_si128,
    };
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut chunks = data.chunks_exact(128);
    for ch in &mut chunks {
        for (a, v) in acc.iter_mut().zip(ch.chunks_exact(32)) {
            // SAFETY: `v` is 32 readable bytes; the load is unaligned.
            let v = unsafe { _mm256_loadu_si256(v.as_ptr().cast::<__m256i>()) };
            *a = _mm256_xor_si256(*a, v);
        }
    }
    let [a, b, c, d] = acc;
    let v = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    let v = _mm_xor_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let v = _mm_xor_si128(v, _mm_unpackhi_epi64(v, v));
    (_mm_cvtsi128_si64(v) as u64) ^ read_xor(chunks.remainder())
}

/// A 64-byte-aligned buffer of pseudo-random bytes.
#[repr(C, align(64))]
struct Buf([u8; 64 * 1024]);

fn buffer() -> Box<Buf> {
    let mut b = Box::new(Buf([0; 64 * 1024]));
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for byte in b.0.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = (x >> 24) as u8;
    }
    b
}

/// Times `iters` calls of `imp` on `data`; returns GB/s (10^9 bytes per second).
#[inline(never)]
fn measure(imp: Imp, data: &[u8], iters: u64) -> f64 {
    let mut sink = 0u64;
    let start = Instant::now();
    for _ in 0..iters {
        sink ^= imp.run(black_box(data));
    }
    let elapsed = start.elapsed();
    black_box(sink);
    (data.len() as u64 * iters) as f64 / elapsed.as_secs_f64() / 1e9
}

/// Calls per sample: about `bytes` bytes, at least one call.
fn iters_for(len: usize, bytes: usize) -> u64 {
    (bytes / len).max(1) as u64
}

const MAX_RUNS: usize = 31;
const MIN_RUNS: usize = 7;
const TIME_BUDGET: Duration = Duration::from_secs(25);
/// Bytes checksummed per sample (about 1 to 6 ms).
const SAMPLE_BYTES: usize = 64 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let sample_bytes = if full { SAMPLE_BYTES } else { 256 << 10 };
    let max_runs = if full { MAX_RUNS } else { 1 };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let pinned = pin_to_cpu(0);
    let buf = buffer();
    let imps: Vec<Imp> = IMPS.into_iter().filter(|i| i.is_available()).collect();

    // Every implementation computes the same checksum (the read rows aside).
    for len in SIZES {
        let data = &buf.0[..len];
        let want = u64::from(!reference::sum(data));
        for imp in imps.iter().copied().filter(|i| !matches!(i, Imp::ReadXor | Imp::ReadAvx2)) {
            assert_eq!(imp.run(data), want, "{} disagrees with the reference at {len} bytes", imp.key());
        }
    }

    println!("checksum: RFC 1071 checksum of a hot buffer, pvio vs internet-checksum, etherparse, smoltcp");
    println!(
        "  machine: {} ({} CPUs online); build: {}; pvio engine chosen at run time: {:?}",
        cpu_model(),
        cpus,
        build_flavour(),
        Engine::best()
    );
    println!(
        "  buffer: 64-byte aligned, pseudo-random bytes, the same for every row; ~{} MiB per sample; GB/s = 10^9 B/s",
        sample_bytes >> 20
    );
    if !full {
        println!("  (smoke run: pass --bench, as `cargo bench` does, for the real measurement)");
    }

    // samples[size][imp]
    let mut samples: Vec<Vec<Vec<f64>>> = SIZES.iter().map(|_| vec![Vec::new(); IMPS.len()]).collect();
    // Warm up (page faults, frequency ramp, lazy engine detection).
    for (s, &len) in SIZES.iter().enumerate() {
        for &imp in &imps {
            let _ = measure(imp, &buf.0[..len], iters_for(len, sample_bytes / 4));
            let _ = s;
        }
    }
    let t0 = Instant::now();
    let mut runs = 0;
    while runs < max_runs {
        let round = Instant::now();
        for (s, &len) in SIZES.iter().enumerate() {
            for k in 0..imps.len() {
                let imp = imps[(k + runs) % imps.len()];
                let gbps = measure(imp, &buf.0[..len], iters_for(len, sample_bytes));
                samples[s][imp as usize].push(gbps);
            }
        }
        runs += 1;
        if runs >= MIN_RUNS && t0.elapsed() + round.elapsed() > TIME_BUDGET {
            break;
        }
    }
    let total = t0.elapsed();
    println!("  median of {runs} runs per row; \"paired\" is the median of the per-run ratios");

    let mut results = String::new();
    let mut goal_lines = Vec::new();
    for (s, &len) in SIZES.iter().enumerate() {
        let per = &samples[s];
        let med: Vec<f64> = per.iter().map(|v| median(&mut v.clone())).collect();
        // The fastest peer by median.
        let best_peer = PEERS
            .into_iter()
            .max_by(|a, b| med[*a as usize].total_cmp(&med[*b as usize]))
            .expect("three peers");
        let ceiling = imps
            .iter()
            .copied()
            .filter(|i| matches!(i, Imp::ReadXor | Imp::ReadAvx2))
            .max_by(|a, b| med[*a as usize].total_cmp(&med[*b as usize]))
            .expect("a read row");
        println!();
        println!("{len} bytes");
        println!(
            "  {:<44} {:>8} {:^17} {:>10} {:>7} {:>9}",
            "implementation", "GB/s", "min .. max", "pvio/this", "paired", "% of read"
        );
        for &imp in &imps {
            let i = imp as usize;
            let (lo, hi) = min_max(&per[i]);
            let (ratio, paired) = if imp == Imp::Pvio {
                ("-".to_owned(), "-".to_owned())
            } else {
                (
                    format!("{:.2}x", med[Imp::Pvio as usize] / med[i]),
                    format!("{:.2}x", paired_ratio(&per[Imp::Pvio as usize], &per[i])),
                )
            };
            println!(
                "  {:<44} {:>8.2} {:>7.2} .. {:<7.2} {:>10} {:>7} {:>8.0}%",
                imp.label(),
                med[i],
                lo,
                hi,
                ratio,
                paired,
                100.0 * med[i] / med[ceiling as usize]
            );
            results.push_str(&format!("{}\t{len}\t{:.4}\n", imp.key(), med[i]));
        }
        let paired = paired_ratio(&per[Imp::Pvio as usize], &per[best_peer as usize]);
        println!(
            "  fastest peer: {} at {:.2} GB/s; pvio / fastest peer = {:.2}x (paired {:.2}x)",
            best_peer.key(),
            med[best_peer as usize],
            med[Imp::Pvio as usize] / med[best_peer as usize],
            paired
        );
        if len >= 1500 {
            goal_lines.push((len, paired, best_peer, med[Imp::Pvio as usize]));
        }
    }

    if full {
        println!();
        println!("goals ({}):", build_flavour());
        let native =
            std::env::var("PVIO_CHECKSUM_NATIVE_RESULTS").ok().and_then(|p| std::fs::read_to_string(p).ok());
        for (len, paired, peer, pvio) in goal_lines {
            let same_build = if cfg!(target_feature = "avx2") {
                "pvio (native) >= 2x fastest peer (native)"
            } else {
                "pvio (generic) >= 2x fastest peer (generic)"
            };
            println!(
                "  {same_build} at {len} B: {paired:.2}x vs {}: {}",
                peer.key(),
                if paired >= 2.0 { "met" } else { "NOT met" }
            );
            if let Some(native) = &native {
                let best = PEERS
                    .iter()
                    .filter_map(|p| {
                        native.lines().find_map(|l| {
                            let mut f = l.split('\t');
                            (f.next() == Some(p.key()) && f.next() == Some(&len.to_string()))
                                .then(|| f.next().and_then(|g| g.parse::<f64>().ok()))
                                .flatten()
                                .map(|g| (p.key(), g))
                        })
                    })
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                if let Some((name, gbps)) = best {
                    let r = pvio / gbps;
                    println!(
                        "  pvio (generic) within 10% of fastest peer (native) at {len} B: {pvio:.2} vs {name} \
                         {gbps:.2} GB/s = {r:.2}x: {}",
                        if r >= 0.9 { "met" } else { "NOT met" }
                    );
                }
            }
        }
    }
    if let Ok(path) = std::env::var("PVIO_CHECKSUM_RESULTS") {
        std::fs::write(&path, results).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
    println!();
    if !pinned {
        println!("WARNING: pinning to CPU 0 failed; results are less reliable");
    }
    println!("total measurement time {:.1} s", total.as_secs_f64());
}
