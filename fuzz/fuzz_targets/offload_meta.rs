//! A peer's `virtio_net_hdr` and frame through `OffloadMeta::from_virtio`, `validate` and the Xen
//! netif conversions (invariants in `fuzz/common/offload_meta.rs`).
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run offload_meta -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/offload_frames.rs"]
mod offload_frames;
#[path = "../common/offload_meta.rs"]
mod offload_meta;

fuzz_target!(|data: &[u8]| offload_meta::run(data));
