//! Replays every fuzz corpus and every saved crash through the fuzz targets' checks
//! (`dataplane/fuzz/fuzz_targets/{process,parse}_check.rs`), so `cargo test` keeps them
//! fixed without cargo-fuzz. Every file present is replayed, and counted: a corpus that
//! went missing fails here rather than passing empty.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

#[path = "../../fuzz/fuzz_targets/parse_check.rs"]
mod parse_check;
#[path = "../../fuzz/fuzz_targets/process_check.rs"]
mod process_check;

/// Run `check` on every input file of `dirs` (a README is no input); (inputs run, files
/// present), per directory, which must exist.
fn replay(dirs: &[&str], check: fn(&[u8])) -> Vec<(String, usize, usize)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    dirs.iter()
        .map(|dir| {
            let entries = std::fs::read_dir(root.join(dir))
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "md"))
                .collect::<Vec<_>>();
            let mut n = 0;
            for path in &entries {
                check(&std::fs::read(path).unwrap());
                n += 1;
            }
            (dir.to_string(), n, entries.len())
        })
        .collect()
}

#[test]
fn the_process_corpus_and_the_regressions_keep_the_invariant() {
    let runs = replay(
        &["fuzz/corpus/process", "tests/fuzz_regressions"],
        process_check::run,
    );
    for (dir, n, present) in &runs {
        assert_eq!(n, present, "{dir}");
    }
    assert!(runs[0].1 > 0, "the process corpus is empty");
}

#[test]
fn the_parse_corpus_keeps_every_view_safe() {
    let runs = replay(&["fuzz/corpus/parse"], parse_check::run);
    assert_eq!(runs[0].1, runs[0].2);
    assert!(runs[0].1 > 0, "the parse corpus is empty");
}
