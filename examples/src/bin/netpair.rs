//! netpair: guest and driver domain in one process, the paper's configurations, one table.
//!
//! `cargo run --release -p pvio-examples --bin netpair [-- --seconds S] [--repeat N] [--quick]
//! [--only a,b-tso] [--plot FILE.svg]`
//!
//! Each phase runs `--repeat` times (default 3, interleaved across configurations) for
//! `--seconds` (default 0.3) and the median is reported; `--quick` is one 0.15 s run.

use std::process::ExitCode;

use pvio_examples::netpair::{self, Options};

fn usage() -> ExitCode {
    eprintln!("usage: netpair [--seconds S] [--repeat N] [--quick] [--only NAME,NAME] [--plot FILE.svg]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut opts = Options::default();
    let mut plot = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                opts.seconds = 0.15;
                opts.repeats = 1;
            }
            "--repeat" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => opts.repeats = n,
                _ => return usage(),
            },
            "--seconds" => match args.next().and_then(|v| v.parse().ok()) {
                Some(s) if s > 0.0 => opts.seconds = s,
                _ => return usage(),
            },
            "--only" => match args.next() {
                Some(v) => opts.only = v.split(',').map(str::to_owned).collect(),
                None => return usage(),
            },
            "--plot" => match args.next() {
                Some(v) => plot = Some(v),
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    println!(
        "pvio netpair: guest and driver domain on two threads, {} x {:.2} s per phase (median), {} configurations",
        opts.repeats,
        opts.seconds,
        netpair::CONFIGS
            .iter()
            .filter(|c| opts.only.is_empty() || opts.only.iter().any(|o| o == c.name))
            .count()
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "{cpus} CPUs, load average {} (other work on the machine competes with both threads)",
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
    }
    let rows = match netpair::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netpair failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", netpair::table(&rows));
    if let Some(path) = plot {
        if let Err(e) = std::fs::write(&path, netpair::svg(&rows)) {
            eprintln!("cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("bar chart written to {path}");
    }
    let invalid: u64 = rows.iter().map(|r| r.tx.invalid + r.rx.invalid).sum();
    if invalid > 0 {
        eprintln!("netpair: the NIC model or the guest saw {invalid} invalid frames");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
