//! Replays a fuzz target's committed inputs on the stable toolchain: every file under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` (dotfiles and `.md` notes aside)
//! goes through the target's own harness. Included with `#[path]` by the crates' replay tests.

use std::fs;
use std::path::{Path, PathBuf};

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

/// Runs `harness` on every corpus and regression input of `target`; `manifest_dir` is the
/// calling crate's `CARGO_MANIFEST_DIR` (a sibling of `fuzz/`). Fails if the corpus is empty
/// or missing, so a lost corpus cannot pass silently.
pub fn replay(manifest_dir: &str, target: &str, harness: fn(&[u8])) {
    let fuzz = Path::new(manifest_dir).join("../fuzz");
    let corpus_dir = fuzz.join("corpus").join(target);
    let corpus = inputs(&corpus_dir);
    assert!(!corpus.is_empty(), "no corpus found under {}", corpus_dir.display());
    let regressions = inputs(&fuzz.join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = fs::read(path).expect("readable input");
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(outcome.is_ok(), "input {} broke an invariant (see the panic above)", path.display());
    }
}
