//! The AF_XDP backend (`io = "af_xdp"`) on a world whose veths run with offloads off, the
//! only setting it is correct for: a real client and server through it.
//! Run with `cargo test -p vpcep-tests -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use vpcep_tests::*;

const EP: &str = "10.0.0.200";

#[test]
#[ignore = "needs root + netns"]
fn curl_and_iperf3_through_af_xdp_with_offloads_off() {
    let mut w = World::with_offloads(1, Offloads::Off).unwrap();
    let _server = w.http_server("10.0.0.10", 80, "via xdp\n").unwrap();
    let _iperf = w
        .provider
        .spawn(
            &["iperf3", "-s", "-B", "10.0.0.10", "-p", "5201"],
            &w.dir.join("iperf-s.log"),
        )
        .unwrap();
    let (svc, _) = w
        .service("10.0.0.10", &["TCP:8080:80", "TCP:5201:5201"], false)
        .unwrap();
    w.endpoint(&svc, 0, EP, &[]).unwrap();
    w.stop_daemon();
    w.write_config("io = \"af_xdp\"").unwrap();
    w.start_daemon().unwrap();
    w.wait_live().unwrap();
    assert_eq!(
        w.curl(0, &format!("http://{EP}:8080/"), 10).unwrap(),
        "via xdp\n"
    );
    let out = w.users[0]
        .exec(&["iperf3", "-c", EP, "-p", "5201", "-t", "2", "-J"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = v["end"]["sum_sent"]["bytes"].as_f64().unwrap();
    let received = v["end"]["sum_received"]["bytes"].as_f64().unwrap();
    assert!(received > 1e6, "received {received}");
    assert!((sent - received).abs() / sent < 0.01);
    assert!(w.metric("vpcep_dataplane_forwarded_total", None).unwrap() > 100.0);
}
