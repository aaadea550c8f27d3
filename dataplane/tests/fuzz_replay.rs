//! Replays the fuzz corpus and every saved crash through the `process` fuzz target's check
//! (`dataplane/fuzz/fuzz_targets/process_check.rs`), so `cargo test` keeps them fixed.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

#[path = "../fuzz/fuzz_targets/process_check.rs"]
mod process_check;

#[test]
fn the_corpus_and_the_regressions_keep_the_invariant() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["fuzz/corpus/process", "tests/fuzz_regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() && path.extension().is_none_or(|x| x != "md") {
                process_check::run(&std::fs::read(&path).unwrap());
                n += 1;
            }
        }
    }
    assert!(n >= 4, "the seed corpus is there ({n} inputs)");
}
