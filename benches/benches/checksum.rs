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
//! with peers built with `-C target-cpu=native`. `benches/run-checksum-native.sh` builds
//! this bench both ways and runs the generic one with `PVIO_CHECKSUM_NATIVE_BIN` naming the
//! native executable: that one is started with `--serve` and asked for one run after each of
//! this build's runs (alternating which goes first), so the two builds' runs interleave and
//! the cross-build ratio is paired run by run. Both builds' tables and all goals are printed.
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
const TIME_BUDGET: Duration = Duration::from_secs(40);
/// Bytes checksummed per sample (about 1 to 6 ms).
const SAMPLE_BYTES: usize = 64 << 20;

/// GB/s per run: `[size][imp as usize]`.
type Samples = Vec<Vec<Vec<f64>>>;

fn empty_samples() -> Samples {
    SIZES.iter().map(|_| vec![Vec::new(); IMPS.len()]).collect()
}

/// One run: every available row once, in an order rotated by `run`.
fn one_run(imps: &[Imp], buf: &Buf, sample_bytes: usize, run: usize, samples: &mut Samples) {
    for (s, &len) in SIZES.iter().enumerate() {
        for k in 0..imps.len() {
            let imp = imps[(k + run) % imps.len()];
            let gbps = measure(imp, &buf.0[..len], iters_for(len, sample_bytes));
            samples[s][imp as usize].push(gbps);
        }
    }
}

/// `--serve`: the parent (a build for generic x86-64) drives this binary (built with
/// `-C target-cpu=native`) one run at a time, so both builds' runs interleave. Each line
/// `RUN SAMPLE_BYTES` on stdin is answered with `size key gbps` lines and `end`.
fn serve(imps: &[Imp], buf: &Buf) {
    use std::io::{BufRead, Write};
    println!("ready {}", build_flavour());
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut w = line.split_whitespace().map(|w| w.parse::<usize>().unwrap_or(0));
        let (run, bytes) = (w.next().unwrap_or(0), w.next().unwrap_or(SAMPLE_BYTES));
        let mut samples = empty_samples();
        one_run(imps, buf, bytes, run, &mut samples);
        let mut out = stdout.lock();
        for (s, &len) in SIZES.iter().enumerate() {
            for &imp in imps {
                let _ = writeln!(out, "{len} {} {}", imp.key(), samples[s][imp as usize][0]);
            }
        }
        let _ = writeln!(out, "end");
        let _ = out.flush();
    }
}

/// The other build of this bench, started with `--serve`.
struct Native {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Native {
    fn start(path: &str) -> Result<Native, String> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(path)
            .arg("--serve")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {path}: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        if !line.starts_with("ready native") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{path} is not a native build of this bench (said {:?})", line.trim()));
        }
        Ok(Native { child, stdin, stdout })
    }

    fn run(&mut self, run: usize, sample_bytes: usize, samples: &mut Samples) {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{run} {sample_bytes}").expect("writing to the native bench");
        self.stdin.flush().expect("flushing to the native bench");
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("reading the native bench") == 0
                || line.trim() == "end"
            {
                break;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(s), Some(imp), Some(g)) = (
                f.first().and_then(|l| SIZES.iter().position(|&x| x.to_string() == *l)),
                f.get(1).and_then(|k| IMPS.iter().find(|i| i.key() == *k)),
                f.get(2).and_then(|g| g.parse::<f64>().ok()),
            ) else {
                panic!("unexpected line from the native bench: {line:?}")
            };
            samples[s][*imp as usize].push(g);
        }
    }
}

impl Drop for Native {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fastest peer at size index `s` by median: (peer, median GB/s).
fn fastest_peer(samples: &Samples, s: usize) -> (Imp, f64) {
    PEERS
        .into_iter()
        .map(|p| (p, median(&mut samples[s][p as usize].clone())))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("three peers")
}

/// Prints one build's tables.
fn print_tables(title: &str, imps: &[Imp], samples: &Samples) {
    println!();
    println!("=== {title} ===");
    for (s, &len) in SIZES.iter().enumerate() {
        let per = &samples[s];
        let med: Vec<f64> = per.iter().map(|v| median(&mut v.clone())).collect();
        let (best_peer, best) = fastest_peer(samples, s);
        let ceiling = [Imp::ReadXor, Imp::ReadAvx2]
            .into_iter()
            .filter(|i| imps.contains(i))
            .map(|i| med[i as usize])
            .fold(0.0, f64::max);
        println!();
        println!("{len} bytes");
        println!(
            "  {:<44} {:>8} {:^17} {:>10} {:>7} {:>9}",
            "implementation", "GB/s", "min .. max", "pvio/this", "paired", "% of read"
        );
        for &imp in imps {
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
                100.0 * med[i] / ceiling
            );
        }
        println!(
            "  fastest peer: {} at {best:.2} GB/s; pvio / fastest peer = {:.2}x (paired {:.2}x)",
            best_peer.key(),
            med[Imp::Pvio as usize] / best,
            paired_ratio(&per[Imp::Pvio as usize], &per[best_peer as usize])
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let sample_bytes = if full { SAMPLE_BYTES } else { 256 << 10 };
    let max_runs = if full { MAX_RUNS } else { 1 };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    // The native child inherits the pinning.
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
    if args.iter().any(|a| a == "--serve") {
        return serve(&imps, &buf);
    }

    println!("checksum: RFC 1071 checksum of a hot buffer, pvio vs internet-checksum, etherparse, smoltcp");
    println!(
        "  machine: {} ({cpus} CPUs online); this build: {}; pvio engine chosen at run time: {:?}",
        cpu_model(),
        build_flavour(),
        Engine::best()
    );
    println!(
        "  buffer: 64-byte aligned, pseudo-random bytes, the same for every row; ~{} MiB per sample; GB/s = 10^9 B/s",
        sample_bytes >> 20
    );
    let mut native = match std::env::var("PVIO_CHECKSUM_NATIVE_BIN") {
        Ok(path) if full => match Native::start(&path) {
            Ok(n) => {
                println!("  native build: {path}, driven one run at a time between this build's runs");
                Some(n)
            }
            Err(e) => {
                println!("  native build: skipped: {e}");
                None
            }
        },
        _ => None,
    };
    if !full {
        println!("  (smoke run: pass --bench, as `cargo bench` does, for the real measurement)");
    }

    let mut samples = empty_samples();
    let mut native_samples = empty_samples();
    // Warm-up run (page faults, frequency ramp, lazy engine detection), not recorded.
    one_run(&imps, &buf, sample_bytes / 4, 0, &mut empty_samples());
    if let Some(n) = &mut native {
        n.run(0, sample_bytes / 4, &mut empty_samples());
    }
    let t0 = Instant::now();
    let mut runs = 0;
    while runs < max_runs {
        let round = Instant::now();
        // Alternate which build goes first.
        if runs % 2 == 1 {
            if let Some(n) = &mut native {
                n.run(runs, sample_bytes, &mut native_samples);
            }
        }
        one_run(&imps, &buf, sample_bytes, runs, &mut samples);
        if runs % 2 == 0 {
            if let Some(n) = &mut native {
                n.run(runs, sample_bytes, &mut native_samples);
            }
        }
        runs += 1;
        if runs >= MIN_RUNS && t0.elapsed() + round.elapsed() > TIME_BUDGET {
            break;
        }
    }
    let total = t0.elapsed();
    println!("  median of {runs} runs per row; \"paired\" is the median of the per-run ratios");

    print_tables(&format!("this build: {}", build_flavour()), &imps, &samples);
    if native.is_some() {
        print_tables("native build (-C target-cpu=native)", &imps, &native_samples);
    }

    if full {
        let this = if cfg!(target_feature = "avx2") { "native" } else { "generic" };
        println!();
        println!("goals:");
        for (s, &len) in SIZES.iter().enumerate().filter(|(_, &len)| len >= 1500) {
            let (peer, _) = fastest_peer(&samples, s);
            let r = paired_ratio(&samples[s][Imp::Pvio as usize], &samples[s][peer as usize]);
            println!(
                "  pvio ({this}) >= 2x fastest peer ({this}) at {len} B: {r:.2}x vs {}: {}",
                peer.key(),
                if r >= 2.0 { "met" } else { "NOT met" }
            );
        }
        if native.is_some() {
            for (s, &len) in SIZES.iter().enumerate().filter(|(_, &len)| len >= 1500) {
                let (peer, best) = fastest_peer(&native_samples, s);
                let pvio = median(&mut samples[s][Imp::Pvio as usize].clone());
                let r = paired_ratio(&samples[s][Imp::Pvio as usize], &native_samples[s][peer as usize]);
                println!(
                    "  pvio ({this}) within 10% of fastest peer (native) at {len} B: {pvio:.2} vs {} {best:.2} GB/s, \
                     paired {r:.2}x: {}",
                    peer.key(),
                    if r >= 0.9 { "met" } else { "NOT met" }
                );
            }
        }
    }
    println!();
    if !pinned {
        println!("WARNING: pinning to CPU 0 failed; results are less reliable");
    }
    println!("total measurement time {:.1} s", total.as_secs_f64());
}
