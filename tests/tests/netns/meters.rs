//! Per-endpoint figures end to end: a known number of datagrams and bytes through two
//! endpoints of two tenants (one in each user VPC, the same address in both); each
//! endpoint's API view and Prometheus series are exact, the other's untouched, the
//! service's are their sum, neither tenant sees the other's, and the provider sees its
//! connections by endpoint id only.
//! Run with `cargo test -p vpcep-tests --test netns -- --ignored meters::`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use serde_json::Value;
use testkit::*;

const EP: &str = "10.0.0.200";

/// A UDP echo server on 10.0.0.10:9001.
const ECHO: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.0.10", 9001))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
"#;

/// Send argv[3] datagrams of argv[4] bytes to argv[1]:argv[2] from one socket, each
/// after the previous one's echo came back; print how many came back.
const CLIENT: &str = r#"
import socket, sys
dst = (sys.argv[1], int(sys.argv[2]))
n, size = int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
back = 0
for i in range(n):
    s.sendto(bytes([i % 256]) * size, dst)
    data, _ = s.recvfrom(65535)
    back += len(data) == size
print(back)
"#;

/// Send `n` datagrams of `size` bytes from user VPC `i` and wait for every echo.
fn send(w: &World, i: usize, n: u32, size: u32) {
    let out = w.users[i]
        .command("timeout")
        .args(["20", "python3", "-c", CLIENT, EP, "5353"])
        .args([n.to_string(), size.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        n.to_string(),
        "every echo came back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn metrics(w: &World, t: (&str, &str, &str, &str), path: &str) -> Value {
    w.ctl(t, &["raw", "GET", path]).unwrap()
}

#[test]
#[ignore = "needs root + netns"]
fn each_endpoint_counts_exactly_its_own_traffic() {
    let w = World::with_tenants(&[USER, USER2]).unwrap();
    let echo = w
        .provider
        .spawn(&["python3", "-c", ECHO], &w.dir.join("echo.log"))
        .unwrap();
    let (svc, _) = w.service("10.0.0.10", &["UDP:5353:9001"], false).unwrap();
    let ep0 = s(&w.endpoint(&svc, 0, EP, &[]).unwrap()["id"]).to_string();
    let ep1 = s(&w.endpoint(&svc, 1, EP, &[]).unwrap()["id"]).to_string();
    w.wait_live().unwrap();
    poll_until("the echo server", Duration::from_secs(10), || {
        echo.output().contains("ready")
    })
    .unwrap();

    send(&w, 0, 10, 100);
    send(&w, 1, 3, 50);
    // IPv4 bytes: 20 of IP header, 8 of UDP, the payload.
    let (b0, b1) = (10 * (28 + 100), 3 * (28 + 50));

    let path0 = format!("/vpc-endpoints/{ep0}/metrics");
    let path1 = format!("/vpc-endpoints/{ep1}/metrics");
    poll_until(
        "the figures of both endpoints",
        Duration::from_secs(10),
        || {
            metrics(&w, USER, &path0)["totals"]["packets_to_client"] == 10
                && metrics(&w, USER2, &path1)["totals"]["packets_to_client"] == 3
        },
    )
    .unwrap();
    let t0 = metrics(&w, USER, &path0)["totals"].clone();
    let t1 = metrics(&w, USER2, &path1)["totals"].clone();
    for (t, n, bytes) in [(&t0, 10, b0), (&t1, 3, b1)] {
        assert_eq!(t["packets_to_service"], n, "{t}");
        assert_eq!(t["packets_to_client"], n, "{t}");
        assert_eq!(t["bytes_to_service"], bytes, "{t}");
        assert_eq!(t["bytes_to_client"], bytes, "{t}");
        assert_eq!(t["flows_opened"], 1, "one socket, one flow: {t}");
        assert_eq!(t["drops"], serde_json::json!({}), "{t}");
    }
    poll_until("the active flows counted", Duration::from_secs(15), || {
        metrics(&w, USER, &path0)["totals"]["active_flows"] == 1
            && metrics(&w, USER2, &path1)["totals"]["active_flows"] == 1
    })
    .unwrap();

    // The same figures on /metrics, per endpoint and per service.
    let series = |name: &str, labels: &str| w.metric(name, Some(labels)).unwrap();
    let to_service = "direction=\"to_service\"";
    assert_eq!(
        series(
            "vpcep_endpoint_packets_total",
            &format!(
                "endpoint_id=\"{ep0}\",service_id=\"{svc}\",project_id=\"{}\",{to_service}",
                USER.3
            )
        ),
        10.0
    );
    assert_eq!(
        series(
            "vpcep_endpoint_bytes_total",
            &format!(
                "endpoint_id=\"{ep1}\",service_id=\"{svc}\",project_id=\"{}\",{to_service}",
                USER2.3
            )
        ),
        f64::from(b1)
    );
    assert_eq!(
        series(
            "vpcep_service_packets_total",
            &format!(
                "service_id=\"{svc}\",project_id=\"{}\",{to_service}",
                PROVIDER.3
            )
        ),
        13.0
    );

    // The provider: its service and each connection by endpoint id, no user addresses.
    let sm = metrics(
        &w,
        PROVIDER,
        &format!("/vpc-endpoint-services/{svc}/metrics"),
    );
    assert_eq!(sm["totals"]["packets_to_service"], 13, "{sm}");
    let mut conns: Vec<(String, Value)> = sm["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                s(&c["endpoint_id"]).to_string(),
                c["totals"]["packets_to_client"].clone(),
            )
        })
        .collect();
    conns.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (ep0.clone(), Value::from(10)),
        (ep1.clone(), Value::from(3)),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(conns, want);
    assert!(!sm.to_string().contains("10.0.0."), "no addresses: {sm}");
    // Nobody else's figures: the provider does not own the endpoint, the users not each
    // other's endpoints nor the service.
    assert!(w.ctl(PROVIDER, &["raw", "GET", &path0]).is_err());
    assert!(w.ctl(USER, &["raw", "GET", &path1]).is_err());
    assert!(w.ctl(USER2, &["raw", "GET", &path0]).is_err());
    assert!(
        w.ctl(
            USER,
            &[
                "raw",
                "GET",
                &format!("/vpc-endpoint-services/{svc}/metrics")
            ]
        )
        .is_err()
    );

    // More traffic on one endpoint moves only its figures.
    send(&w, 1, 2, 50);
    poll_until("the second batch", Duration::from_secs(10), || {
        metrics(&w, USER2, &path1)["totals"]["packets_to_client"] == 5
    })
    .unwrap();
    assert_eq!(
        metrics(&w, USER, &path0)["totals"]["packets_to_service"],
        10
    );
}
