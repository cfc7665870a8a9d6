//! A super-frame and its `virtio_net_hdr` through validation and `Segmenter`, zero-copy and
//! contiguous, full and partial checksums (invariants in `fuzz/common/offload_gso.rs`).
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run offload_gso -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/offload_frames.rs"]
mod offload_frames;
#[path = "../common/offload_gso.rs"]
mod offload_gso;

fuzz_target!(|data: &[u8]| offload_gso::run(data));
