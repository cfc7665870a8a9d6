//! Replays the `paging_mapper` fuzz corpus and its reproducers on the stable toolchain,
//! through the fuzz target's own harness (`fuzz/common/paging_mapper.rs`).
#![cfg(feature = "std")]

#[path = "../../fuzz/common/bytes.rs"]
mod bytes;
#[path = "../../fuzz/common/paging_mapper.rs"]
mod paging_mapper;
#[path = "../../fuzz/common/replay.rs"]
mod replay;

#[test]
fn replay_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "paging_mapper", paging_mapper::run);
}
