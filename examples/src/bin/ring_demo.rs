//! The embedded-default demo: a million netif requests between two threads through a Xen ring.
//!
//! `cargo run --release -p pvio-examples --bin ring_demo [-- REQUESTS [BATCH]]`

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let total = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000u64);
    let batch = args.next().and_then(|a| a.parse().ok()).unwrap_or(32usize);
    println!("pvio ring demo: {total} netif tx requests, front end -> back end -> front end, batch {batch}");
    match pvio_examples::ring_demo::run(total, batch) {
        Ok(r) => {
            println!(
                "{} requests answered in {:.3} s: {:.2} M round trips/s ({} kicks, {} interrupts)",
                r.responses,
                r.elapsed.as_secs_f64(),
                r.rate() / 1e6,
                r.kicks,
                r.interrupts
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ring demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
