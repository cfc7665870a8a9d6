//! Replays the corpora and crash reproducers of the four offload fuzz targets on the stable
//! toolchain.
//!
//! The harnesses are the fuzz targets' own (`fuzz/common/offload_*.rs`); every file under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` is one input.

use std::fs;
use std::path::{Path, PathBuf};

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

/// Reproducers of known, not yet fixed bugs, as `target/file`: replayed and expected to
/// fail, so that the suite stays green until the fix lands (then they move out of this list).
const KNOWN_FAILING: &[&str] = &[];

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus_dir = fuzz.join("corpus").join(target);
    let corpus = inputs(&corpus_dir);
    assert!(!corpus.is_empty(), "no corpus found under {}", corpus_dir.display());
    let regressions = inputs(&fuzz.join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = fs::read(path).expect("readable input");
        let name = format!("{target}/{}", path.file_name().unwrap().to_string_lossy());
        let outcome = std::panic::catch_unwind(|| run(&data));
        if KNOWN_FAILING.contains(&name.as_str()) {
            assert!(outcome.is_err(), "{name} is listed in KNOWN_FAILING but passes: remove it");
        } else {
            assert!(outcome.is_ok(), "input {} broke an invariant (see the panic above)", path.display());
        }
    }
}

#[test]
fn replay_offload_parse() {
    replay("offload_parse", offload_parse::run);
}

#[test]
fn replay_offload_meta() {
    replay("offload_meta", offload_meta::run);
}

#[test]
fn replay_offload_gso() {
    replay("offload_gso", offload_gso::run);
}

#[test]
fn replay_offload_gro() {
    replay("offload_gro", offload_gro::run);
}
