//! `pvio_offload::parse` on arbitrary bytes: ordered, in-bounds offsets that every header view
//! accepts, deterministic, padding-independent (invariants in `fuzz/common/offload_parse.rs`).
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run offload_parse -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/offload_parse.rs"]
mod offload_parse;

fuzz_target!(|data: &[u8]| offload_parse::run(data));
