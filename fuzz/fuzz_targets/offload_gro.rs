//! A sequence of frames, checksum hints and flushes through a small `GroTable`: every frame
//! delivered exactly once, every super-frame valid (invariants in `fuzz/common/offload_gro.rs`).
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run offload_gro -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/offload_frames.rs"]
mod offload_frames;
#[path = "../common/offload_gro.rs"]
mod offload_gro;

fuzz_target!(|data: &[u8]| offload_gro::run(data));
