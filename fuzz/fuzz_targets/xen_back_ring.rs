//! A hostile front end against `BackRing`: honest front-end traffic, raw writes of arbitrary
//! bytes and index values into the shared region, and back-end operations, with the
//! invariants of `fuzz/common/xen_back_ring.rs` checked after every step.
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run xen_back_ring -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/bytes.rs"]
mod bytes;
#[path = "../common/xen_back_ring.rs"]
mod xen_back_ring;

fuzz_target!(|data: &[u8]| xen_back_ring::run(data));
