//! `tap_forwarder`: the no-virtualization baseline. One process, two TAP devices with vnet
//! headers, every frame read from one written to the other with its offload metadata — no
//! rings, no grants, no copies beyond the kernel's. `benches/run-pair-iperf.sh` measures
//! netfront/netback against it.
//!
//! ```text
//! tap_forwarder A[@NETNS] B[@NETNS] [--offload tcp|csum|none] [--stats SECS]
//! ```
//!
//! Each device is created in the named network namespace (or the current one). One thread
//! per direction. Statistics every `--stats` seconds (default 5, 0 = only at exit); stops
//! cleanly on SIGINT/SIGTERM.

use std::io;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pvio_examples::daemon::{Counters, Shutdown, StatsPrinter};
use pvio_examples::tap::{Tap, TapOffloads, MAX_FRAME};

const USAGE: &str = "usage: tap_forwarder A[@NETNS] B[@NETNS] [--offload tcp|csum|none] [--stats SECS]";

fn parse_offload(v: &str) -> Result<TapOffloads, String> {
    match v {
        "tcp" => Ok(TapOffloads::TCP),
        "csum" => Ok(TapOffloads::CSUM),
        "none" => Ok(TapOffloads::empty()),
        _ => Err(format!("unknown --offload {v:?}")),
    }
}

fn open(spec: &str, offloads: TapOffloads) -> io::Result<Tap> {
    match spec.split_once('@') {
        Some((name, ns)) => Tap::open_in_netns(name, ns, offloads),
        None => Tap::open(spec, offloads),
    }
}

/// Moves frames from `src` to `dst` until `stop` is set.
fn forward(src: &Tap, dst: &Tap, counters: &Counters, stop: &AtomicBool) {
    let mut buf = vec![0u8; MAX_FRAME];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd { fd: src.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd on the stack.
        let r = unsafe { libc::poll(&raw mut pfd, 1, 200) };
        if r <= 0 {
            continue;
        }
        loop {
            match src.recv(&mut buf) {
                Ok((meta, len)) => match dst.send(&meta, &buf[..len]) {
                    Ok(_) => counters.packet(len),
                    // The other device is down or out of buffers: a drop.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::ENOBUFS | libc::EAGAIN)) => {
                        counters.drop_one()
                    }
                    // The kernel refused the frame (metadata it does not accept).
                    Err(_) => counters.error(),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => counters.error(),
                Err(e) => {
                    eprintln!("tap_forwarder: read from {}: {e}", src.name());
                    counters.error();
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut positional = Vec::new();
    let mut offloads = TapOffloads::TCP;
    let mut stats = 5.0f64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--offload" => offloads = parse_offload(it.next().ok_or(USAGE)?)?,
            "--stats" => stats = it.next().ok_or(USAGE)?.parse().map_err(|_| USAGE)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => positional.push(a.clone()),
        }
    }
    let [a, b] = <[String; 2]>::try_from(positional).map_err(|_| USAGE.to_string())?;
    let shutdown = Shutdown::install().map_err(|e| format!("signals: {e}"))?;
    let ta = Arc::new(open(&a, offloads).map_err(|e| format!("open {a}: {e}"))?);
    let tb = Arc::new(open(&b, offloads).map_err(|e| format!("open {b}: {e}"))?);
    for t in [&ta, &tb] {
        t.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    eprintln!("tap_forwarder: {} <-> {} with offloads {:?}", ta.name(), tb.name(), offloads);
    let (ab, ba) = (Arc::new(Counters::default()), Arc::new(Counters::default()));
    let stop = shutdown.flag();
    let threads: Vec<_> = [(ta.clone(), tb.clone(), ab.clone()), (tb.clone(), ta.clone(), ba.clone())]
        .into_iter()
        .map(|(src, dst, c)| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || forward(&src, &dst, &c, &stop))
        })
        .collect();
    let mut printer = StatsPrinter::new("tap_forwarder", Duration::from_secs_f64(stats.max(0.0)));
    let labels = (format!("{}->{}", ta.name(), tb.name()), format!("{}->{}", tb.name(), ta.name()));
    while !shutdown.requested() {
        let _ = pvio_examples::handshake::poll_one(
            shutdown.as_raw_fd(),
            libc::POLLIN,
            Some(Duration::from_millis(200)),
        );
        printer.tick(&[(&labels.0, &ab), (&labels.1, &ba)]);
    }
    for t in threads {
        let _ = t.join();
    }
    printer.print(&[(&labels.0, &ab), (&labels.1, &ba)]);
    eprintln!("tap_forwarder: stopped");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tap_forwarder: {e}");
            ExitCode::FAILURE
        }
    }
}
