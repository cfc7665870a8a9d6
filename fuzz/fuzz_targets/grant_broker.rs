//! Arbitrary grant tables and batches of copies, maps, unmaps, grants and ends against a
//! single-threaded `pvio_grant::Broker` and `GrantTable`, every status and byte checked against
//! a model (invariants in `fuzz/common/grant_broker.rs`).
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run grant_broker -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/bytes.rs"]
mod bytes;
#[path = "../common/grant_broker.rs"]
mod grant_broker;

fuzz_target!(|data: &[u8]| grant_broker::run(data));
