//! GSO of a 64 KiB super-frame at MSS 1448 (45 segments of 1448 payload bytes, 65160 in
//! all): pvio's `Segmenter` zero-copy (a header buffer plus a payload range per segment)
//! and contiguous (`write_frames`), each with full and with partial checksums, against
//! DPDK's `rte_gso_segment` on the same TCP/IPv4 frame and a plain `memcpy` of as many
//! bytes as the contiguous output holds.
//!
//! - Every pvio row validates the metadata (`OffloadMeta::validate`) and builds the
//!   `Segmenter` each time, as a driver must for each super-frame it receives.
//! - **DPDK** runs in a child process (`benches/c/dpdk_gso.c`, compiled here with `cc` and
//!   `pkg-config libdpdk` into the target dir; EAL with `--no-huge --no-pci`, one lcore).
//!   It reports the time inside `rte_gso_segment` alone and the loop including
//!   `rte_pktmbuf_free_bulk` of the segments. DPDK neither checks nor fills checksums, so its
//!   like-for-like pvio row is zero-copy with `ChecksumMode::Partial` (pvio still fills the
//!   IPv4 header checksum there). Without DPDK (no `cc`, no `pkg-config`, no `libdpdk`) its
//!   rows print `skipped: <reason>`.
//! - TCPv6 and UDP (UDP_L4, over IPv4 and IPv6) are measured for pvio only: DPDK's GSO has
//!   no IPv6 and its UDP GSO is IP fragmentation, not UDP_L4.
//!
//! Each run measures every row once, in an order rotated from run to run; the tables show
//! medians and the median of per-run ratios ("paired"). Before timing, pvio's segments are
//! checked (count, lengths, checksums verify, payloads concatenate to the input) and the
//! DPDK harness checks its own.
//!
//! `cargo bench -p pvio-benches --bench gso` runs the full measurement; without `--bench`
//! (e.g. under `cargo test --benches`) a short smoke run checks the code paths.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use pvio_benches::{cpu_model, median, min_max, paired_ratio, pin_to_cpu};
use pvio_offload::{parse, ChecksumMode, ChecksumState, GsoKind, OffloadMeta, Segmenter};

const MSS: u16 = 1448;
/// 45 full segments: the largest multiple of 1448 that fits IPv4's 16-bit total length.
const PAYLOAD: usize = 45 * MSS as usize;

// ---------------------------------------------------------------------------------------
// Super-frames
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    TcpV4,
    TcpV6,
    UdpV4,
    UdpV6,
}

impl Proto {
    fn title(self) -> &'static str {
        match self {
            Proto::TcpV4 => "TCP/IPv4",
            Proto::TcpV6 => "TCP/IPv6",
            Proto::UdpV4 => "UDP/IPv4 (UDP_L4)",
            Proto::UdpV6 => "UDP/IPv6 (UDP_L4)",
        }
    }

    fn v6(self) -> bool {
        matches!(self, Proto::TcpV6 | Proto::UdpV6)
    }

    fn udp(self) -> bool {
        matches!(self, Proto::UdpV4 | Proto::UdpV6)
    }
}

/// A super-frame of `proto` with `PAYLOAD` pseudo-random payload bytes, its transport
/// checksum field holding the pseudo-header sum (what a guest sends with `NEEDS_CSUM`), and
/// its metadata. Returns (frame, metadata, l2, l3, l4 header lengths).
fn super_frame(proto: Proto) -> (Vec<u8>, OffloadMeta, usize, usize, usize) {
    let (l3, l4) = (if proto.v6() { 40 } else { 20 }, if proto.udp() { 8 } else { 20 });
    let l2 = 14;
    let l4_total = l4 + PAYLOAD;
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(if proto.v6() { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let next = if proto.udp() { 17 } else { 6 };
    if proto.v6() {
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4_total as u16).to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    } else {
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&((l3 + l4_total) as u16).to_be_bytes());
        // ID 0x1234, DF, TTL 64; the header checksum is filled in below.
        f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, next, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        let csum = pvio_offload::checksum::checksum(&f[l2..l2 + l3]);
        f[l2 + 10..l2 + 12].copy_from_slice(&csum.to_be_bytes());
    }
    if proto.udp() {
        f.extend_from_slice(&[0x30, 0x39, 0x11, 0x51]);
        f.extend_from_slice(&(l4_total as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    } else {
        // Ports 12345 -> 80, seq, ack, data offset 5, ACK|PSH, window 0xffff.
        f.extend_from_slice(&[
            0x30, 0x39, 0, 80, 0x10, 0, 0, 0, 0x20, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
        ]);
    }
    let mut x = 0x2545_f491_4f6c_dd1du64;
    f.extend((0..PAYLOAD).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 32) as u8
    }));
    let pseudo = parse(&f).expect("bench frame parses").pseudo_header_sum(&f).expect("TCP or UDP");
    let field = l2 + l3 + if proto.udp() { 6 } else { 16 };
    f[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
    let meta = OffloadMeta {
        gso_kind: match proto {
            Proto::TcpV4 => GsoKind::TcpV4,
            Proto::TcpV6 => GsoKind::TcpV6,
            Proto::UdpV4 | Proto::UdpV6 => GsoKind::UdpL4,
        },
        ecn: false,
        gso_size: MSS,
        hdr_len: (l2 + l3 + l4) as u16,
        csum: ChecksumState::Partial { start: (l2 + l3) as u16, offset: if proto.udp() { 6 } else { 16 } },
        rsc: None,
    };
    (f, meta, l2, l3, l4)
}

/// Segments once and checks the result, so the timed loops measure correct work.
fn check_pvio(proto: Proto, frame: &[u8], meta: &OffloadMeta) -> usize {
    let valid = meta.validate(frame).expect("bench metadata validates");
    for mode in [ChecksumMode::Full, ChecksumMode::Partial] {
        let segs = Segmenter::new(frame, &valid, mode).expect("segmenter");
        let hl = segs.header_len();
        let mut out = vec![0; segs.frames_len()];
        let frames: Vec<&[u8]> = segs.write_frames(&mut out).expect("write_frames").collect();
        assert_eq!(frames.len(), PAYLOAD.div_ceil(MSS.into()), "{proto:?}: segment count");
        let mut payload = Vec::new();
        for f in &frames {
            let layout = parse(f).expect("segment parses");
            if mode == ChecksumMode::Full {
                assert_eq!(layout.verify_l4_checksum(f), Some(true), "{proto:?}: segment checksum");
            }
            payload.extend_from_slice(&f[hl..]);
        }
        assert_eq!(payload, frame[hl..], "{proto:?}: payloads concatenate to the input");
    }
    Segmenter::new(frame, &valid, ChecksumMode::Full).expect("segmenter").frames_len()
}

// ---------------------------------------------------------------------------------------
// pvio rows
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Row {
    ZeroCopy(ChecksumMode),
    Contiguous(ChecksumMode),
    Memcpy,
    DpdkSegment,
    DpdkSegmentFree,
}

impl Row {
    fn label(self) -> &'static str {
        match self {
            Row::ZeroCopy(ChecksumMode::Partial) => "pvio zero-copy, partial csum (NIC completes)",
            Row::ZeroCopy(ChecksumMode::Full) => "pvio zero-copy, full csum",
            Row::Contiguous(ChecksumMode::Partial) => "pvio contiguous write_frames, partial csum",
            Row::Contiguous(ChecksumMode::Full) => "pvio contiguous write_frames, full csum",
            Row::Memcpy => "memcpy of the contiguous output size",
            Row::DpdkSegment => "DPDK rte_gso_segment (no csums)",
            Row::DpdkSegmentFree => "DPDK rte_gso_segment + free segments",
        }
    }
}

/// Zero-copy: validate, build the segmenter, produce every segment (header buffer and
/// payload range); the segments are `black_box`ed where a driver would post them.
#[inline(never)]
fn zero_copy(frame: &[u8], meta: &OffloadMeta, mode: ChecksumMode, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let frame = black_box(frame);
        let valid = meta.validate(frame).expect("validates");
        for seg in Segmenter::new(frame, &valid, mode).expect("segmenter") {
            black_box(&seg);
        }
    }
    start.elapsed()
}

#[inline(never)]
fn contiguous(frame: &[u8], meta: &OffloadMeta, mode: ChecksumMode, out: &mut [u8], iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        let frame = black_box(frame);
        let valid = meta.validate(frame).expect("validates");
        let segs = Segmenter::new(frame, &valid, mode).expect("segmenter");
        black_box(segs.write_frames(out).expect("write_frames").as_bytes().len());
    }
    start.elapsed()
}

#[inline(never)]
fn memcpy(src: &[u8], dst: &mut [u8], iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(&mut *dst).copy_from_slice(black_box(src));
    }
    start.elapsed()
}

// ---------------------------------------------------------------------------------------
// DPDK in a child process
// ---------------------------------------------------------------------------------------

struct Dpdk {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    segments: usize,
    out_bytes: usize,
}

impl Dpdk {
    /// Builds and starts the harness, or says why not.
    fn start(frame: &[u8], l2: usize, l3: usize, l4: usize) -> Result<Dpdk, String> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dpdk_gso");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/c/dpdk_gso.c");
        let flags = Command::new("pkg-config")
            .args(["--cflags", "--libs", "libdpdk"])
            .output()
            .map_err(|e| format!("pkg-config not runnable ({e}); install pkg-config and libdpdk-dev"))?;
        if !flags.status.success() {
            return Err(format!(
                "pkg-config finds no libdpdk ({}); install libdpdk-dev",
                String::from_utf8_lossy(&flags.stderr).lines().next().unwrap_or("").trim()
            ));
        }
        let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
        let exe = dir.join("dpdk_gso");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let built = Command::new(&cc)
            .args(["-O2", "-Wall", "-o"])
            .arg(&exe)
            .arg(src)
            .args(flags.split_whitespace())
            .output()
            .map_err(|e| format!("{cc} not runnable: {e}"))?;
        if !built.status.success() {
            let err = String::from_utf8_lossy(&built.stderr);
            return Err(format!(
                "compiling {src} failed: {}",
                err.lines().next().unwrap_or("no message").trim()
            ));
        }
        let frame_file = dir.join("frame.bin");
        std::fs::write(&frame_file, frame).map_err(|e| format!("writing {}: {e}", frame_file.display()))?;
        let mut child = Command::new(&exe)
            .arg(&frame_file)
            .args([l2, l3, l4, MSS.into()].map(|n| n.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let mut words = line.split_whitespace();
        if words.next() != Some("ready") {
            let _ = child.kill();
            let out = child.wait_with_output().map(|o| o.stderr).unwrap_or_default();
            let err = String::from_utf8_lossy(&out);
            return Err(format!(
                "the DPDK harness did not start: {}",
                err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no message").trim()
            ));
        }
        let segments = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let out_bytes = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        Ok(Dpdk { child, stdin, stdout, segments, out_bytes })
    }

    /// (time inside rte_gso_segment, time of the whole loop with frees) for `iters` frames.
    fn run(&mut self, iters: u64) -> (Duration, Duration) {
        writeln!(self.stdin, "{iters}").expect("writing to the DPDK harness");
        self.stdin.flush().expect("flushing to the DPDK harness");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("reading from the DPDK harness");
        let ns: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        assert!(ns.len() == 3, "the DPDK harness failed (said {line:?})");
        (Duration::from_nanos(ns[0]), Duration::from_nanos(ns[1]))
    }
}

impl Drop for Dpdk {
    fn drop(&mut self) {
        // Closing stdin ends the harness's loop; it exits on EOF.
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------

const MAX_RUNS: usize = 21;
const MIN_RUNS: usize = 7;
const TIME_BUDGET: Duration = Duration::from_secs(40);
/// Super-frames per sample (about 2 to 6 ms each).
const ITERS: u64 = 2000;

struct Scenario {
    proto: Proto,
    frame: Vec<u8>,
    meta: OffloadMeta,
    out: Vec<u8>,
    src: Vec<u8>,
    rows: Vec<Row>,
    /// Seconds per super-frame, per row, per run.
    samples: Vec<Vec<f64>>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let (max_runs, iters) = if full { (MAX_RUNS, ITERS) } else { (1, 20) };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let pinned = pin_to_cpu(0);

    let mut dpdk = Err("not tried".to_owned());
    let mut scenarios: Vec<Scenario> = [Proto::TcpV4, Proto::TcpV6, Proto::UdpV4, Proto::UdpV6]
        .into_iter()
        .map(|proto| {
            let (frame, meta, l2, l3, l4) = super_frame(proto);
            let out_len = check_pvio(proto, &frame, &meta);
            let mut rows = vec![
                Row::ZeroCopy(ChecksumMode::Partial),
                Row::ZeroCopy(ChecksumMode::Full),
                Row::Contiguous(ChecksumMode::Partial),
                Row::Contiguous(ChecksumMode::Full),
                Row::Memcpy,
            ];
            if proto == Proto::TcpV4 {
                dpdk = Dpdk::start(&frame, l2, l3, l4);
                if let Ok(d) = &dpdk {
                    assert_eq!(d.segments, PAYLOAD.div_ceil(MSS.into()), "DPDK segment count");
                    assert_eq!(d.out_bytes, out_len, "DPDK output bytes");
                    rows.extend([Row::DpdkSegment, Row::DpdkSegmentFree]);
                }
            }
            let samples = vec![Vec::new(); rows.len()];
            Scenario { proto, frame, meta, out: vec![0; out_len], src: vec![0x5a; out_len], rows, samples }
        })
        .collect();

    println!(
        "gso: segmenting a {PAYLOAD}-byte-payload super-frame at MSS {MSS} ({} segments)",
        PAYLOAD / 1448
    );
    println!(
        "  machine: {} ({cpus} CPUs online); pvio checksum engine: {:?}",
        cpu_model(),
        pvio_offload::checksum::Engine::best()
    );
    println!("  every pvio row validates the metadata and builds the Segmenter per super-frame");
    match &dpdk {
        Ok(_) => println!(
            "  DPDK: rte_gso_segment from libdpdk {} in a child process (EAL --no-huge --no-pci, 1 lcore)",
            Command::new("pkg-config")
                .args(["--modversion", "libdpdk"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        ),
        Err(reason) => println!("  DPDK rte_gso_segment: skipped: {reason}"),
    }
    if !full {
        println!("  (smoke run: pass --bench, as `cargo bench` does, for the real measurement)");
    }

    // Warm-up, then runs.
    let t0 = Instant::now();
    let mut runs = 0;
    while runs < max_runs + 1 {
        let round = Instant::now();
        for sc in &mut scenarios {
            let n = sc.rows.len();
            for k in 0..n {
                let i = (k + runs) % n;
                let row = sc.rows[i];
                let secs = match row {
                    Row::ZeroCopy(mode) => zero_copy(&sc.frame, &sc.meta, mode, iters),
                    Row::Contiguous(mode) => contiguous(&sc.frame, &sc.meta, mode, &mut sc.out, iters),
                    Row::Memcpy => memcpy(&sc.src, &mut sc.out, iters),
                    // Both DPDK rows come from one loop of the harness, recorded at once.
                    Row::DpdkSegmentFree => continue,
                    Row::DpdkSegment => {
                        let d = dpdk.as_mut().expect("DPDK rows only when it started");
                        let (seg, total) = d.run(iters);
                        if runs > 0 {
                            sc.samples[i + 1].push(total.as_secs_f64() / iters as f64);
                        }
                        seg
                    }
                }
                .as_secs_f64()
                    / iters as f64;
                // Run 0 is the warm-up.
                if runs > 0 {
                    sc.samples[i].push(secs);
                }
            }
        }
        runs += 1;
        if runs > MIN_RUNS && t0.elapsed() + round.elapsed() > TIME_BUDGET {
            break;
        }
    }
    let total = t0.elapsed();
    println!(
        "  median of {} runs per row (after a warm-up run); \"paired\" is the median of per-run ratios",
        runs - 1
    );

    let segs = PAYLOAD.div_ceil(MSS.into()) as f64;
    let mut goals = Vec::new();
    for sc in &scenarios {
        println!();
        println!(
            "{} super-frame, {} bytes -> {} frames, {} bytes",
            sc.proto.title(),
            sc.frame.len(),
            segs,
            sc.out.len()
        );
        let has_dpdk = sc.rows.contains(&Row::DpdkSegment);
        println!(
            "  {:<46} {:>9} {:>15} {:>8} {:>9} {:>15}",
            "implementation",
            "Msegs/s",
            "min .. max",
            "GB/s",
            "time/cpy",
            if has_dpdk { "rate / DPDK seg" } else { "" }
        );
        let per_frame = |r: Row| sc.rows.iter().position(|x| *x == r).map(|i| &sc.samples[i]);
        let memcpy_t = per_frame(Row::Memcpy).expect("memcpy row");
        let dpdk_t = per_frame(Row::DpdkSegment);
        for (i, &row) in sc.rows.iter().enumerate() {
            let t = &sc.samples[i];
            let msegs: Vec<f64> = t.iter().map(|s| segs / s / 1e6).collect();
            let (lo, hi) = min_max(&msegs);
            let med_t = median(&mut t.clone());
            // Times per frame, paired: this / memcpy; DPDK time / this = this rate / DPDK rate.
            let vs_copy = paired_ratio(t, memcpy_t);
            let vs_dpdk = dpdk_t.map(|d| paired_ratio(d, t));
            println!(
                "  {:<46} {:>9.2} {:>6.2} .. {:<6.2} {:>8.2} {:>8.2}x {:>15}",
                row.label(),
                segs / med_t / 1e6,
                lo,
                hi,
                PAYLOAD as f64 / med_t / 1e9,
                vs_copy,
                vs_dpdk.map_or(String::new(), |r| format!("{r:.2}x"))
            );
            if sc.proto == Proto::TcpV4 {
                match row {
                    Row::ZeroCopy(mode) => goals.push(format!(
                        "zero-copy >= DPDK ({mode:?} checksums vs rte_gso_segment alone): {}",
                        match vs_dpdk {
                            Some(r) => format!("{r:.2}x: {}", if r >= 1.0 { "met" } else { "NOT met" }),
                            None => format!("skipped: {}", dpdk.as_ref().err().map_or("", |s| s.as_str())),
                        }
                    )),
                    Row::Contiguous(mode) => goals.push(format!(
                        "contiguous within 1.5x of memcpy ({mode:?} checksums): {vs_copy:.2}x the memcpy time: {}",
                        if vs_copy <= 1.5 { "met" } else { "NOT met" }
                    )),
                    _ => {}
                }
            }
        }
    }
    if full {
        println!();
        println!("goals (TCP/IPv4, paired ratios):");
        for g in goals {
            println!("  {g}");
        }
    }
    println!();
    if !pinned {
        println!("WARNING: pinning to CPU 0 failed; results are less reliable");
    }
    println!("total measurement time {:.1} s", total.as_secs_f64());
}
