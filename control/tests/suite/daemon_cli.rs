//! The daemon binary refuses what it cannot run: a bad config, a missing interface, a
//! busy port, each with a clear message and a non-zero exit.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::process::Command;

use crate::common::{daemon_files, temp_dir};

fn write_files(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    daemon_files(dir, "127.0.0.1:0", "127.0.0.1:0", extra)
}

fn vpcepd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vpcepd"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_config_accepts_a_good_file_and_refuses_a_bad_one() {
    let dir = temp_dir("cli");
    let good = write_files(&dir, "");
    let (code, out, _) = vpcepd(&["--check-config", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.starts_with("config ok"), "{out}");
    let bad = write_files(&dir, "wrokers = 2\n");
    let (code, _, err) = vpcepd(&["--check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown field") && err.contains("wrokers"),
        "{err}"
    );
    let (code, _, err) = vpcepd(&["--check-config", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read config file"), "{err}");
}

#[test]
fn a_missing_interface_or_a_busy_port_stops_the_start() {
    let dir = temp_dir("cli2");
    let cfg = write_files(
        &dir,
        "[[attachments]]\ninterface = \"nosuchif0\"\nvpc_id = \"v\"\n",
    );
    let (code, _, err) = vpcepd(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("attachment nosuchif0") && err.contains("no interface"),
        "{err}"
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let cfg = write_files(&dir, "");
    let (code, _, err) = vpcepd(&[
        "--config",
        cfg.to_str().unwrap(),
        "--api-listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    drop(busy);
}
