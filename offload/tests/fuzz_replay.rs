//! Replays the corpora and crash reproducers of the four offload fuzz targets on the stable
//! toolchain.
//!
//! The harnesses are the fuzz targets' own (`fuzz/common/offload_*.rs`); every file under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` is one input.

#[path = "../../fuzz/common/offload_frames.rs"]
mod offload_frames;
#[path = "../../fuzz/common/offload_gro.rs"]
mod offload_gro;
#[path = "../../fuzz/common/offload_gso.rs"]
mod offload_gso;
#[path = "../../fuzz/common/offload_meta.rs"]
mod offload_meta;
#[path = "../../fuzz/common/offload_parse.rs"]
mod offload_parse;

#[path = "../../fuzz/common/replay.rs"]
mod replay;

fn check(target: &str, run: fn(&[u8])) {
    replay::replay(env!("CARGO_MANIFEST_DIR"), target, run);
}

#[test]
fn replay_offload_parse() {
    check("offload_parse", offload_parse::run);
}

#[test]
fn replay_offload_meta() {
    check("offload_meta", offload_meta::run);
}

#[test]
fn replay_offload_gso() {
    check("offload_gso", offload_gso::run);
}

#[test]
fn replay_offload_gro() {
    check("offload_gro", offload_gro::run);
}
