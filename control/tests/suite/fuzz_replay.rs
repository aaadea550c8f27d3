//! Replays the control fuzz corpus (`control/fuzz/corpus/`) and every saved crash
//! (`control/tests/fuzz_regressions/`) through the fuzz targets' checks, so `cargo test`
//! keeps them fixed without cargo-fuzz.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub
)]

#[path = "../../fuzz/fuzz_targets/auth_check.rs"]
mod auth_check;
#[path = "../../fuzz/fuzz_targets/decode_check.rs"]
mod decode_check;

/// Run `check` on every file of the target's corpus (which must exist) and of its saved
/// crashes (if any); returns (inputs run, files present).
fn replay(target: &str, check: fn(&[u8])) -> (usize, usize) {
    let (mut n, mut present) = (0, 0);
    for (dir, required) in [
        (format!("fuzz/corpus/{target}"), true),
        (format!("tests/fuzz_regressions/{target}"), false),
    ] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if required => panic!("{}: {e}", dir.display()),
            Err(_) => continue,
        };
        for e in entries {
            let path = e.unwrap().path();
            if !path.is_file() {
                continue;
            }
            present += 1;
            check(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    (n, present)
}

#[test]
fn the_auth_corpus_replays() {
    let (n, present) = replay("auth", auth_check::check);
    assert_eq!(n, present);
    assert!(n > 0, "the auth corpus is empty");
}

#[test]
fn the_decode_corpus_replays() {
    let (n, present) = replay("decode", decode_check::check);
    assert_eq!(n, present);
    assert!(n > 0, "the decode corpus is empty");
}
