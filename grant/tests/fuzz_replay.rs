//! Replays the `grant_broker` fuzz corpus and its crash reproducers on the stable toolchain,
//! through the fuzz target's own harness (`fuzz/common/grant_broker.rs`).
#![cfg(all(feature = "std", not(loom)))]

#[path = "../../fuzz/common/bytes.rs"]
mod bytes;
#[path = "../../fuzz/common/grant_broker.rs"]
mod grant_broker;
#[path = "../../fuzz/common/replay.rs"]
mod replay;

#[test]
fn replay_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "grant_broker", grant_broker::run);
}
