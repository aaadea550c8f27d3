//! Replays the control fuzz corpus (`control/fuzz/corpus/`) and every saved crash
//! (`control/tests/fuzz_regressions/`) through the fuzz targets' checks, so `cargo test`
//! keeps them fixed without cargo-fuzz.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub
)]

#[path = "../fuzz/fuzz_targets/auth_check.rs"]
mod auth_check;
#[path = "../fuzz/fuzz_targets/decode_check.rs"]
mod decode_check;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut n = 0;
    for dir in [
        format!("fuzz/corpus/{target}"),
        format!("tests/fuzz_regressions/{target}"),
    ] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            check(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn the_auth_corpus_replays() {
    assert!(replay("auth", auth_check::check) >= 3);
}

#[test]
fn the_decode_corpus_replays() {
    assert!(replay("decode", decode_check::check) >= 17);
}
