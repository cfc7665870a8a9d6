//! Replays the `xen_back_ring` fuzz corpus and its crash reproducers on the stable toolchain.
//!
//! The harness is the fuzz target's own (`fuzz/common/xen_back_ring.rs`); every file under
//! `fuzz/corpus/xen_back_ring/` and `fuzz/regressions/xen_back_ring/` is one input.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/common/xen_back_ring.rs"]
mod xen_back_ring;

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
        let outcome = std::panic::catch_unwind(|| xen_back_ring::run(&data));
        assert!(outcome.is_ok(), "input {} broke an invariant (see the panic above)", path.display());
    }
}

#[test]
fn replay_corpus_and_regressions() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = inputs(&fuzz.join("corpus/xen_back_ring"));
    assert!(!corpus.is_empty(), "no corpus found under {}", fuzz.join("corpus/xen_back_ring").display());
    replay(&corpus);
    replay(&inputs(&fuzz.join("regressions/xen_back_ring")));
}
