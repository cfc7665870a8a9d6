//! `netpair`: the paper's table, reproduced on one machine.
//!
//! A guest (netfront, one thread) and a driver domain (netback + the [`ModelNic`], another
//! thread) share guest memory in a memfd: transmit and receive rings, grant table and packet
//! buffers, with eventfd notifications. The guest runs real TCP flows; the NIC model validates
//! every frame that reaches its "wire" and generates the receive traffic, which the guest
//! validates in turn. Each configuration runs a transmit phase and a receive phase and reports
//! throughput, packets per second and CPU seconds per GB (getrusage, both threads), with the
//! ratio to the fully optimized configuration.
//!
//! Configurations (the paper's):
//! - `a`: no offload — 1500-byte frames cross the ring, checksums computed by the guest;
//!   receive without GRO or checksum offload.
//! - `b-sw`, `b-tso`: offload — 64 KiB super-frames + metadata cross the ring; the back end
//!   segments in software for a NIC without TSO, or passes the super-frame to a TSO NIC.
//!   `b-tso` is the fully optimized configuration (header copy + payload by reference,
//!   receive by copy with GRO, 4 KiB pages).
//! - `c-remap`: transmit payload by per-packet `mmap` + `munmap` of the guest's pages instead
//!   of by reference.
//! - `d-flip`, `d-copy`: receive by page flipping, or by copy without GRO (with GRO: `b-tso`).
//! - `e-huge`: guest memory on 2 MiB pages (hugetlbfs, else THP), skipped with a reason when
//!   neither can be had.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pvio_grant::DomId;
use pvio_offload::ChecksumState;
use pvio_ring::{EventFd, Waiter};

use crate::net::layout::REGION_LEN;
use crate::net::nic::ModelTime;
use crate::net::traffic::{RxCsum, HDR_LEN, MSS, SUPER_PAYLOAD};
use crate::net::{
    BackOptions, Backing, FlowId, GuestMemory, ModelNic, NetBack, NetFront, NicCaps, PageFlipper, RxDelivery,
    StreamChecker, TcpSender, TxChecksum, TxPayload, VifConfig, VifState,
};

const BACKEND: DomId = DomId(0);
const GUEST: DomId = DomId(1);
const GUEST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
const FLOWS: u16 = 4;
const WAIT: Duration = Duration::from_millis(5);

/// Guest memory page size of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    /// 4 KiB pages (memfd).
    Small,
    /// 2 MiB pages (hugetlbfs or THP).
    Huge,
}

/// One configuration of the table.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Short name (`a`, `b-tso`, ...).
    pub name: &'static str,
    /// What it measures.
    pub what: &'static str,
    /// 64 KiB super-frames with metadata (else 1500-byte frames with guest checksums).
    pub tx_offload: bool,
    /// The NIC's offloads.
    pub nic: NicCaps,
    /// Transmit payload path.
    pub tx_payload: TxPayload,
    /// Receive delivery.
    pub rx: RxDelivery,
    /// GRO on receive.
    pub gro: bool,
    /// Guest memory pages.
    pub pages: Pages,
}

const ALL_OFFLOADS: NicCaps = NicCaps::TSO.union(NicCaps::TX_CSUM).union(NicCaps::RX_CSUM);

/// The fully optimized configuration, which every ratio refers to.
pub const OPTIMIZED: &str = "b-tso";

/// The configurations, in table order.
pub const CONFIGS: [Config; 7] = [
    Config {
        name: "a",
        what: "no offload: 1500-byte frames",
        tx_offload: false,
        nic: NicCaps::empty(),
        tx_payload: TxPayload::Reference,
        rx: RxDelivery::Copy,
        gro: false,
        pages: Pages::Small,
    },
    Config {
        name: "b-sw",
        what: "64K+meta, NIC without TSO (sw GSO)",
        tx_offload: true,
        nic: NicCaps::TX_CSUM.union(NicCaps::RX_CSUM),
        tx_payload: TxPayload::Reference,
        rx: RxDelivery::Copy,
        gro: true,
        pages: Pages::Small,
    },
    Config {
        name: "b-tso",
        what: "64K+meta, TSO NIC (optimized)",
        tx_offload: true,
        nic: ALL_OFFLOADS,
        tx_payload: TxPayload::Reference,
        rx: RxDelivery::Copy,
        gro: true,
        pages: Pages::Small,
    },
    Config {
        name: "c-remap",
        what: "tx payload by mmap+munmap per packet",
        tx_offload: true,
        nic: ALL_OFFLOADS,
        tx_payload: TxPayload::Remap,
        rx: RxDelivery::Copy,
        gro: true,
        pages: Pages::Small,
    },
    Config {
        name: "d-flip",
        what: "rx by page flipping",
        tx_offload: true,
        nic: ALL_OFFLOADS,
        tx_payload: TxPayload::Reference,
        rx: RxDelivery::Flip,
        gro: false,
        pages: Pages::Small,
    },
    Config {
        name: "d-copy",
        what: "rx by copy, without GRO",
        tx_offload: true,
        nic: ALL_OFFLOADS,
        tx_payload: TxPayload::Reference,
        rx: RxDelivery::Copy,
        gro: false,
        pages: Pages::Small,
    },
    Config {
        name: "e-huge",
        what: "optimized, guest memory on 2 MiB pages",
        tx_offload: true,
        nic: ALL_OFFLOADS,
        tx_payload: TxPayload::Reference,
        rx: RxDelivery::Copy,
        gro: true,
        pages: Pages::Huge,
    },
];

/// Which way the traffic flows in a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Guest → NIC.
    Tx,
    /// NIC → guest.
    Rx,
}

/// What one phase measured.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Payload bytes validated at the receiving end during the measured interval.
    pub bytes: u64,
    /// Wire packets (MTU segments) they made.
    pub packets: u64,
    /// Measured wall time.
    pub secs: f64,
    /// CPU time of the process (user + system, all threads) in the interval.
    pub cpu_secs: f64,
    /// Of that, the estimated time the NIC model spent in its own calls (DMA, validation of
    /// transmitted frames; generation of the far end's receive traffic and its checksums):
    /// work a real NIC, or the sender at the other end of its wire, would do; plus, on
    /// receive, the guest's validation of every received byte (on transmit the NIC model
    /// does that validation). Sampled ([`ModelTime`]).
    pub nic_secs: f64,
    /// Invalid frames seen at the receiving end (NIC model for tx, guest for rx), whole phase.
    pub invalid: u64,
    /// The first reason a frame was invalid.
    pub first_invalid: Option<String>,
    /// Receive frames the back end dropped (no posted buffers); sequence gaps the guest saw.
    pub drops: u64,
    /// Sequence gaps the guest saw (each must be explained by a drop).
    pub gaps: u64,
    /// Events the guest and the back end sent each other.
    pub events: u64,
    /// Waits (either side) that ended by their 5 ms timeout instead of an event: the peer
    /// produced nothing for 5 ms (it was slow or descheduled), or a wake-up was lost. A side
    /// only sleeps after re-arming its event and re-checking, so the timeout bounds the cost
    /// of a lost wake-up but never hides missing work.
    pub timeouts: u64,
}

impl Phase {
    /// Gbit/s of payload.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e9
    }

    /// Wire packets per second.
    pub fn pps(&self) -> f64 {
        self.packets as f64 / self.secs
    }

    /// CPU seconds per GB of payload.
    pub fn cpu_per_gb(&self) -> f64 {
        if self.bytes == 0 {
            f64::INFINITY
        } else {
            self.cpu_secs / (self.bytes as f64 / 1e9)
        }
    }

    /// CPU seconds per GB of payload, without the NIC model's estimated time: what the guest
    /// and netback cost.
    pub fn pair_cpu_per_gb(&self) -> f64 {
        if self.bytes == 0 {
            f64::INFINITY
        } else {
            (self.cpu_secs - self.nic_secs).max(0.0) / (self.bytes as f64 / 1e9)
        }
    }
}

/// A configuration's result: both phases, or why it was skipped.
#[derive(Debug, Clone)]
pub struct Row {
    /// The configuration.
    pub config: Config,
    /// What backed guest memory.
    pub backing: Option<Backing>,
    /// Transmit phase.
    pub tx: Phase,
    /// Receive phase.
    pub rx: Phase,
    /// Why the configuration was skipped.
    pub skipped: Option<String>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum NetpairError {
    /// Setting up memory, rings or events failed.
    #[error("setup: {0}")]
    Setup(String),
    /// The front end or the back end failed.
    #[error("{side} failed in {config}: {err}")]
    Side {
        /// `guest` or `netback`.
        side: &'static str,
        /// The configuration.
        config: &'static str,
        /// What happened.
        err: String,
    },
}

fn setup<E: std::fmt::Display>(e: E) -> NetpairError {
    NetpairError::Setup(e.to_string())
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Measured seconds per phase and repetition.
    pub seconds: f64,
    /// Repetitions of every phase, interleaved across configurations (so a burst of other
    /// load on the machine hits all of them alike); each row reports the median run.
    pub repeats: usize,
    /// Only these configurations (all if empty).
    pub only: Vec<String>,
    /// Print a progress line to stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { seconds: 0.3, repeats: 3, only: Vec::new(), progress: true }
    }
}

fn cpu_time() -> f64 {
    // SAFETY: getrusage writes one rusage struct into the zeroed local we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn tx_flow(i: u16) -> FlowId {
    FlowId {
        src_mac: GUEST_MAC,
        dst_mac: PEER_MAC,
        src_ip: [10, 0, 0, 1],
        dst_ip: [10, 0, 0, 2],
        src_port: 40000 + i,
        dst_port: 5201,
    }
}

fn rx_flow(i: u16) -> FlowId {
    FlowId {
        src_mac: PEER_MAC,
        dst_mac: GUEST_MAC,
        src_ip: [10, 0, 0, 2],
        dst_ip: [10, 0, 0, 1],
        src_port: 5201,
        dst_port: 40000 + i,
    }
}

/// Live counters shared by the two threads and the main thread.
#[derive(Debug, Default)]
struct Live {
    rx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    /// Waits that ended by timeout rather than by an event.
    timeouts: AtomicU64,
    stop: AtomicBool,
    /// The guest's checking of what it received (sampled like the NIC model's time): on
    /// transmit the same checking is the NIC model's, so both are left out of `-NIC` alike.
    check: ModelTime,
}

/// Runs one phase of `cfg`.
fn run_phase(
    cfg: &Config,
    dir: Direction,
    seconds: f64,
    progress: &dyn Fn(&str),
) -> Result<(Phase, Backing), NetpairError> {
    let guest = match cfg.pages {
        Pages::Small => GuestMemory::new_4k("pvio-guest", REGION_LEN).map_err(setup)?,
        Pages::Huge => GuestMemory::new_huge("pvio-guest", REGION_LEN).map_err(NetpairError::Setup)?,
    };
    let backing = guest.backing();
    // The back end's own mapping of guest memory (THP memory has no descriptor: one view).
    let second = guest.fd().map(|_| guest.second_view()).transpose().map_err(setup)?;
    let back_mem = second.as_ref().unwrap_or(&guest);
    let flipper = match cfg.rx {
        RxDelivery::Flip => Some(PageFlipper::new(&guest, 256).map_err(setup)?),
        RxDelivery::Copy => None,
    };
    let to_back = EventFd::new().map_err(setup)?;
    let to_guest = EventFd::new().map_err(setup)?;
    let mut nic = ModelNic::new(cfg.nic);
    if dir == Direction::Rx {
        nic = nic.with_rx_flows(&(0..FLOWS).map(rx_flow).collect::<Vec<_>>());
    }
    let nic_stats = nic.stats();
    let live = Live::default();
    let mut front = NetFront::new(guest.mem(), BACKEND).map_err(setup)?;
    if let Some(f) = &flipper {
        front = front.with_flipper(f);
    }
    let opts = BackOptions { gro: cfg.gro, tx_payload: cfg.tx_payload, rx: cfg.rx, ..BackOptions::default() };
    let mut back = NetBack::new(BACKEND, nic, opts);
    back.connect(VifConfig {
        domid: GUEST,
        mac: GUEST_MAC,
        mem: back_mem.mem(),
        memfd: back_mem.fd(),
        notify: &to_guest,
        flipper: flipper.as_ref(),
        iova_base: 0,
        rx_gso: true,
    })
    .map_err(setup)?;
    let guest_result: Mutex<Option<(StreamChecker, u64)>> = Mutex::new(None);
    let name = cfg.name;
    let side = |side: &'static str| move |err: String| NetpairError::Side { side, config: name, err };

    let (phase, back_res) = std::thread::scope(|s| {
        let back_thread = s.spawn(|| -> Result<_, String> {
            while !live.stop.load(Ordering::Relaxed) {
                let w = back.poll().map_err(|e| e.to_string())?;
                if let Some(VifState::Disconnected(e)) = back.vif_state(0) {
                    return Err(e.to_string());
                }
                if !(w.any() || back.prepare_to_wait() || dir == Direction::Rx && back.rx_ready()) {
                    wait(&to_back, &live)?;
                }
            }
            Ok(back.vif_stats(0).unwrap_or_default())
        });
        let guest_thread = s.spawn(|| -> Result<(), String> {
            let r = match dir {
                Direction::Tx => guest_tx(&mut front, cfg, &live, &to_back, &to_guest),
                Direction::Rx => guest_rx(&mut front, &live, &to_back, &to_guest),
            };
            let r = r.map(|checker| {
                *guest_result.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((checker, front.stats().events));
            });
            // Either way the phase is over: let the back end go.
            live.stop.store(true, Ordering::Relaxed);
            r
        });

        // Measure: a short warm-up, then the interval.
        let sample = || match dir {
            Direction::Tx => {
                (nic_stats.tx_bytes.load(Ordering::Relaxed), nic_stats.tx_segments.load(Ordering::Relaxed))
            }
            Direction::Rx => (live.rx_bytes.load(Ordering::Relaxed), live.rx_packets.load(Ordering::Relaxed)),
        };
        let nic_time = || nic_stats.model_time.iter().map(|t| t.secs()).sum::<f64>() + live.check.secs();
        let warm = Duration::from_secs_f64((seconds * 0.1).min(0.1));
        std::thread::sleep(warm);
        let (b0, p0, c0, n0, t0) = {
            let (b, p) = sample();
            (b, p, cpu_time(), nic_time(), Instant::now())
        };
        let end = t0 + Duration::from_secs_f64(seconds);
        loop {
            let now = Instant::now();
            if now >= end || live.stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(100)));
            let (b, _) = sample();
            let gbps = (b - b0) as f64 * 8.0 / t0.elapsed().as_secs_f64() / 1e9;
            progress(&format!("{:>7} {:?}: {gbps:6.2} Gbit/s", name, dir));
        }
        let (b1, p1) = sample();
        let phase = Phase {
            bytes: b1 - b0,
            packets: p1 - p0,
            secs: t0.elapsed().as_secs_f64(),
            cpu_secs: cpu_time() - c0,
            nic_secs: nic_time() - n0,
            ..Phase::default()
        };
        live.stop.store(true, Ordering::Relaxed);
        let _ = pvio_ring::Notifier::notify(&to_back);
        let _ = pvio_ring::Notifier::notify(&to_guest);
        let g = guest_thread.join().map_err(|_| "guest thread panicked".to_string()).and_then(|r| r);
        let b = back_thread.join().map_err(|_| "netback thread panicked".to_string()).and_then(|r| r);
        (phase, g.map_err(side("guest")).and_then(|()| b.map_err(side("netback"))))
    });
    let vif = back_res?;
    let mut phase = phase;
    let (checker, guest_events) =
        guest_result.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_default();
    phase.events = vif.events + guest_events;
    phase.timeouts = live.timeouts.load(Ordering::Relaxed);
    match dir {
        Direction::Tx => {
            phase.invalid = nic_stats.tx_invalid.load(Ordering::Relaxed);
            phase.first_invalid =
                nic_stats.first_invalid.lock().unwrap_or_else(|p| p.into_inner()).map(|e| e.to_string());
        }
        Direction::Rx => {
            phase.invalid = checker.invalid;
            phase.first_invalid = checker.first_invalid.map(|e| e.to_string());
            phase.gaps = checker.gaps;
            phase.drops = vif.rx_dropped;
        }
    }
    Ok((phase, backing))
}

/// Sleeps until an event or the 5 ms timeout (counted in [`Phase::timeouts`]).
fn wait(ev: &EventFd, live: &Live) -> Result<(), String> {
    if !ev.wait(Some(WAIT)).map_err(|e| e.to_string())? {
        live.timeouts.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn kick(front: &mut NetFront<'_>, to_back: &EventFd) -> Result<(), String> {
    if front.flush().send(to_back).map_err(|e| e.to_string())? {
        front.note_event();
    }
    Ok(())
}

/// The guest's transmit loop: `FLOWS` TCP connections, round robin.
fn guest_tx(
    front: &mut NetFront<'_>,
    cfg: &Config,
    live: &Live,
    to_back: &EventFd,
    to_guest: &EventFd,
) -> Result<StreamChecker, String> {
    let mut flows: Vec<TcpSender> =
        (0..FLOWS).map(|i| TcpSender::new(tx_flow(i), u32::from(i) * 1_000_003)).collect();
    let (len, csum) =
        if cfg.tx_offload { (SUPER_PAYLOAD, TxChecksum::Partial) } else { (MSS, TxChecksum::Full) };
    let mut hdr = [0u8; HDR_LEN];
    let mut next = 0usize;
    while !live.stop.load(Ordering::Relaxed) {
        front.reclaim().map_err(|e| e.to_string())?;
        let mut sent = 0;
        while sent < 32 && front.can_send(HDR_LEN + len) {
            let f = &mut flows[next % FLOWS as usize];
            let (payload, meta) = f.next_frame(len, csum, &mut hdr);
            if !front.send(&[&hdr, payload], &meta).map_err(|e| e.to_string())? {
                return Err("send refused after can_send".into());
            }
            next += 1;
            sent += 1;
        }
        kick(front, to_back)?;
        if sent == 0 && !front.final_check_tx().map_err(|e| e.to_string())? {
            wait(to_guest, live)?;
        }
    }
    Ok(StreamChecker::new())
}

/// The guest's receive loop: keeps buffers posted, validates every packet.
fn guest_rx(
    front: &mut NetFront<'_>,
    live: &Live,
    to_back: &EventFd,
    to_guest: &EventFd,
) -> Result<StreamChecker, String> {
    let mut checker = StreamChecker::tolerating_gaps();
    let mut rng = 0x2545_f491u32;
    let mut buf = Vec::with_capacity(65536);
    while !live.stop.load(Ordering::Relaxed) {
        front.post_rx().map_err(|e| e.to_string())?;
        kick(front, to_back)?;
        let mut got = 0;
        while got < 64 {
            let Some(p) = front.receive(&mut buf).map_err(|e| e.to_string())? else { break };
            let csum = if p.meta.csum == ChecksumState::None { RxCsum::Unknown } else { RxCsum::Verified };
            let gso = (p.meta.gso_size > 0).then_some(p.meta.gso_size);
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            live.check.calls.fetch_add(1, Ordering::Relaxed);
            if rng & 7 == 0 {
                let t = Instant::now();
                let _ = checker.check(&buf[..p.len], csum, gso);
                let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                if ns <= ModelTime::OUTLIER_NS {
                    live.check.sampled.fetch_add(1, Ordering::Relaxed);
                    live.check.sampled_ns.fetch_add(ns, Ordering::Relaxed);
                }
            } else {
                let _ = checker.check(&buf[..p.len], csum, gso);
            }
            got += 1;
        }
        live.rx_bytes.store(checker.bytes, Ordering::Relaxed);
        live.rx_packets.store(checker.segments, Ordering::Relaxed);
        if got == 0 {
            front.post_rx().map_err(|e| e.to_string())?;
            kick(front, to_back)?;
            if !front.final_check_rx().map_err(|e| e.to_string())? {
                wait(to_guest, live)?;
            }
        }
    }
    Ok(checker)
}

/// The median of `runs` by throughput; invalid frames, gaps, drops and timeouts of all runs
/// are added to it, so none is hidden by the choice.
fn median(mut runs: Vec<Phase>) -> Phase {
    runs.sort_by(|a, b| a.gbps().total_cmp(&b.gbps()));
    let mut m = runs[runs.len() / 2].clone();
    m.invalid = runs.iter().map(|p| p.invalid).sum();
    m.gaps = runs.iter().map(|p| p.gaps).sum();
    m.drops = runs.iter().map(|p| p.drops).sum();
    m.timeouts = runs.iter().map(|p| p.timeouts).sum();
    m.first_invalid = runs.iter().find_map(|p| p.first_invalid.clone());
    m
}

/// Runs the selected configurations and returns their rows, in table order.
pub fn run(opts: &Options) -> Result<Vec<Row>, NetpairError> {
    let selected: Vec<&Config> =
        CONFIGS.iter().filter(|c| opts.only.is_empty() || opts.only.iter().any(|o| o == c.name)).collect();
    let total = selected.len();
    let repeats = opts.repeats.max(1);
    let mut runs: Vec<(Vec<Phase>, Vec<Phase>)> = vec![(Vec::new(), Vec::new()); total];
    let mut rows: Vec<Row> = selected
        .iter()
        .map(|c| Row {
            config: **c,
            backing: None,
            tx: Phase::default(),
            rx: Phase::default(),
            skipped: None,
        })
        .collect();
    for rep in 0..repeats {
        for (i, cfg) in selected.iter().enumerate() {
            if rows[i].skipped.is_some() {
                continue;
            }
            let progress = |msg: &str| {
                if opts.progress {
                    eprint!("\r[run {}/{repeats}, {}/{total}] {msg}   ", rep + 1, i + 1);
                }
            };
            match run_phase(cfg, Direction::Tx, opts.seconds, &progress) {
                Ok((p, backing)) => {
                    runs[i].0.push(p);
                    rows[i].backing = Some(backing);
                    runs[i].1.push(run_phase(cfg, Direction::Rx, opts.seconds, &progress)?.0);
                }
                Err(NetpairError::Setup(why)) if cfg.pages == Pages::Huge => rows[i].skipped = Some(why),
                Err(e) => return Err(e),
            }
        }
    }
    for (row, (tx, rx)) in rows.iter_mut().zip(runs) {
        if row.skipped.is_none() {
            row.tx = median(tx);
            row.rx = median(rx);
        }
    }
    if opts.progress {
        eprint!("\r{:70}\r", "");
    }
    Ok(rows)
}

/// The summary table.
pub fn table(rows: &[Row]) -> String {
    let opt = rows.iter().find(|r| r.config.name == OPTIMIZED && r.skipped.is_none());
    let ratio = |v: f64, base: Option<f64>| match base {
        Some(b) if b > 0.0 => format!("{:5.2}x", v / b),
        _ => "    -".into(),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:<40} | {:>9} {:>8} {:>8} {:>7} {:>6} | {:>9} {:>8} {:>8} {:>7} {:>6} | {:>7} {:>9}",
        "config",
        "",
        "tx Gbit/s",
        "tx Mpps",
        "CPU s/GB",
        "-NIC",
        "ratio",
        "rx Gbit/s",
        "rx Mpps",
        "CPU s/GB",
        "-NIC",
        "ratio",
        "invalid",
        "timeouts"
    );
    let _ = writeln!(s, "{}", "-".repeat(164));
    for r in rows {
        if let Some(why) = &r.skipped {
            let _ = writeln!(s, "{:<8} {:<40} | skipped: {why}", r.config.name, r.config.what);
            continue;
        }
        let _ = writeln!(
            s,
            "{:<8} {:<40} | {:>9.2} {:>8.3} {:>8.3} {:>7.3} {:>6} | {:>9.2} {:>8.3} {:>8.3} {:>7.3} {:>6} | {:>7} {:>9}",
            r.config.name,
            r.config.what,
            r.tx.gbps(),
            r.tx.pps() / 1e6,
            r.tx.cpu_per_gb(),
            r.tx.pair_cpu_per_gb(),
            ratio(r.tx.gbps(), opt.map(|o| o.tx.gbps())),
            r.rx.gbps(),
            r.rx.pps() / 1e6,
            r.rx.cpu_per_gb(),
            r.rx.pair_cpu_per_gb(),
            ratio(r.rx.gbps(), opt.map(|o| o.rx.gbps())),
            r.tx.invalid + r.rx.invalid,
            format!("{}/{}", r.tx.timeouts, r.rx.timeouts),
        );
    }
    for r in rows.iter().filter(|r| r.skipped.is_none()) {
        if let Some(e) = r.tx.first_invalid.as_ref().or(r.rx.first_invalid.as_ref()) {
            let _ = writeln!(s, "{}: first invalid frame: {e}", r.config.name);
        }
        if r.config.pages == Pages::Huge {
            if let Some(b) = r.backing {
                let _ = writeln!(s, "{}: guest memory: {b}", r.config.name);
            }
        }
    }
    let _ = writeln!(
        s,
        "Gbit/s: TCP payload validated at the receiving end (NIC model for tx, guest for rx); Mpps: \
         MTU-sized wire packets; CPU s/GB: process CPU time (guest, netback and NIC model) per GB; \
         -NIC: the same without the NIC model's own time and the traffic checks (sampled: its DMA \
         and the validation of every byte on tx; generating the far end's traffic on rx, and the \
         guest's validation of every byte); ratio: to {OPTIMIZED}; timeouts: tx/rx waits \
         that ended by their 5 ms timeout"
    );
    let get = |n: &str| rows.iter().find(|r| r.config.name == n && r.skipped.is_none());
    if let (Some(a), Some(b)) = (get("a"), opt) {
        let _ = writeln!(
            s,
            "offload (b-tso) / no offload (a), transmit: {:.2}x (paper: 4.4x)",
            b.tx.gbps() / a.tx.gbps()
        );
    }
    if let (Some(flip), Some(copy)) = (get("d-flip"), opt) {
        let _ = writeln!(
            s,
            "receive, copy + GRO (b-tso) / page flipping (d-flip): {:.2}x (goal: > 1)",
            copy.rx.gbps() / flip.rx.gbps()
        );
    }
    if let Some(o) = opt {
        let _ = writeln!(
            s,
            "guest receive / guest transmit (b-tso): {:.2}x in Gbit/s (goal: >= 0.9); {:.2}x in CPU s/GB, \
             {:.2}x without the NIC model (transmit's / receive's)",
            o.rx.gbps() / o.tx.gbps(),
            o.tx.cpu_per_gb() / o.rx.cpu_per_gb(),
            o.tx.pair_cpu_per_gb() / o.rx.pair_cpu_per_gb()
        );
    }
    s
}

/// A grouped bar chart of transmit and receive Gbit/s per configuration, as SVG.
pub fn svg(rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.skipped.is_none()).collect();
    let max = rows.iter().flat_map(|r| [r.tx.gbps(), r.rx.gbps()]).fold(1.0f64, f64::max);
    let (w, h, left, top, bottom) = (120.0 * rows.len() as f64 + 100.0, 420.0, 60.0, 40.0, 60.0);
    let plot_h = h - top - bottom;
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="20" font-size="14">pvio netpair: throughput per configuration (Gbit/s of TCP payload)</text>"#
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
            w - 20.0,
            left - 6.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let x0 = left + 20.0 + 120.0 * i as f64;
        for (j, (v, color)) in [(r.tx.gbps(), "#4477aa"), (r.rx.gbps(), "#ee6677")].into_iter().enumerate() {
            let x = x0 + 42.0 * j as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="40" height="{:.1}" fill="{color}"><title>{} {}: {v:.2} Gbit/s</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v:.1}</text>"#,
                y(v),
                top + plot_h - y(v),
                r.config.name,
                if j == 0 { "tx" } else { "rx" },
                x + 20.0,
                y(v) - 3.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + 41.0,
            h - bottom + 18.0,
            r.config.name
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{}" width="12" height="12" fill="#4477aa"/><text x="{}" y="{}">guest transmit</text><rect x="{}" y="{}" width="12" height="12" fill="#ee6677"/><text x="{}" y="{}">guest receive</text>"##,
        h - 22.0,
        left + 16.0,
        h - 12.0,
        left + 130.0,
        h - 22.0,
        left + 146.0,
        h - 12.0
    );
    s.push_str("</svg>\n");
    s
}
