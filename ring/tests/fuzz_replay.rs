//! Replays the `xen_back_ring` fuzz corpus and its crash reproducers on the stable toolchain,
//! through the fuzz target's own harness (`fuzz/common/xen_back_ring.rs`).

#[path = "../../fuzz/common/replay.rs"]
mod replay;
#[path = "../../fuzz/common/xen_back_ring.rs"]
mod xen_back_ring;

#[test]
fn replay_corpus_and_regressions() {
    replay::replay(env!("CARGO_MANIFEST_DIR"), "xen_back_ring", xen_back_ring::run);
}
