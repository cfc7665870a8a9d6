//! Replays the `grant_broker` fuzz corpus and its crash reproducers on the stable toolchain.
//!
//! The harness is the fuzz target's own (`fuzz/common/grant_broker.rs`); every file under
//! `fuzz/corpus/grant_broker/` and `fuzz/regressions/grant_broker/` is one input.
#![cfg(all(feature = "std", not(loom)))]

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/common/grant_broker.rs"]
mod grant_broker;

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

fn replay(files: &[PathBuf]) {
    for path in files {
        let data = fs::read(path).expect("readable input");
        let outcome = std::panic::catch_unwind(|| grant_broker::run(&data));
        assert!(outcome.is_ok(), "input {} broke an invariant (see the panic above)", path.display());
    }
}

#[test]
fn replay_corpus_and_regressions() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = inputs(&fuzz.join("corpus/grant_broker"));
    assert!(!corpus.is_empty(), "no corpus found under {}", fuzz.join("corpus/grant_broker").display());
    replay(&corpus);
    replay(&inputs(&fuzz.join("regressions/grant_broker")));
}
