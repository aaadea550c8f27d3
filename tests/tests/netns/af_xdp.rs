//! The AF_XDP backend (`io = "af_xdp"`) on a world whose veths run with offloads off, the
//! only setting it is correct for: curl, and a stream whose every byte the backend checks.
//! Run with `cargo test -p vpcep-tests -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use testkit::*;

const EP: &str = "10.0.0.200";

#[test]
#[ignore = "needs root + netns"]
fn curl_and_a_checked_stream_through_af_xdp_with_offloads_off() {
    let mut w = World::with_offloads(1, Offloads::Off).unwrap();
    let _server = w.http_server("10.0.0.10", 80, "via xdp\n").unwrap();
    let backend = w
        .provider
        .spawn(
            &[
                env!("CARGO_BIN_EXE_pp2_backend"),
                "--listen",
                "10.0.0.10:9000",
                "--no-proxy",
                "--mode",
                "report",
            ],
            &w.dir.join("backend.log"),
        )
        .unwrap();
    let (svc, _) = w
        .service("10.0.0.10", &["TCP:8080:80", "TCP:9000:9000"], false)
        .unwrap();
    w.endpoint(&svc, 0, EP, &[]).unwrap();
    w.stop_daemon();
    w.write_config("io = \"af_xdp\"").unwrap();
    w.start_daemon().unwrap();
    w.wait_live().unwrap();
    poll_until("the backend to listen", Duration::from_secs(10), || {
        backend.output().contains("ready")
    })
    .unwrap();
    assert_eq!(
        w.curl(0, &format!("http://{EP}:8080/"), 10).unwrap(),
        "via xdp\n"
    );
    let forwarded = w.metric("vpcep_dataplane_forwarded_total", None).unwrap();
    // 32 MiB through AF_XDP: the backend read every byte, unchanged (its count and
    // sha256, answered back over the same flow). How fast is not this test's business.
    let out = w.users[0]
        .exec(&[
            "timeout",
            "120",
            "python3",
            "-c",
            scripts::SEND,
            EP,
            "9000",
            &(32 << 20).to_string(),
        ])
        .unwrap();
    let c: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let r: serde_json::Value = serde_json::from_str(c["answer"].as_str().unwrap().trim())
        .unwrap_or_else(|e| panic!("backend answer {c}: {e}"));
    assert_eq!(r["bytes"], c["bytes"], "{r}");
    assert_eq!(r["sha256"], c["sha256"], "{r}");
    // Offloads off: at least one frame per 1,500 bytes went through the workers.
    assert!(
        w.metric("vpcep_dataplane_forwarded_total", None).unwrap() - forwarded
            > f64::from(32 << 20) / 1500.0
    );
}
