//! Arbitrary map / unmap / protect / promote / translate sequences and raw table scribbles
//! against `pvio_paging::Mapper`, checked against a model of extents (invariants in
//! `fuzz/common/paging_mapper.rs`).
//!
//! Run: `cargo +nightly-2026-05-20 fuzz run paging_mapper -- -max_total_time=60`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/bytes.rs"]
mod bytes;
#[path = "../common/paging_mapper.rs"]
mod paging_mapper;

fuzz_target!(|data: &[u8]| paging_mapper::run(data));
