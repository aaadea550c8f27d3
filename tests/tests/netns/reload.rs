//! Live reconfiguration, end to end: a running vpcepd takes a new config (`POST /reload`,
//! what SIGHUP does too) without a restart. Attachments are removed and added while another
//! VPC's TCP stream carries on (every byte, sha256); the removed VPC's flows end and its
//! endpoint shows `failed` until it is attached again; key pairs are added and revoked;
//! conntrack timeouts change; a bad file or a setting that needs a restart is refused and
//! the old config runs on.
//! Run with `cargo test -p vpcep-tests -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;
use testkit::*;

const EP: &str = "10.0.0.200";
const HTTP_EP: &str = "10.0.0.201";

/// One UDP datagram to `argv[1]:9001`; prints the answer or `timeout`.
const UDP: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"x", (sys.argv[1], 9001))
try:
    print(s.recvfrom(2048)[0].decode(), flush=True)
except socket.timeout:
    print("timeout", flush=True)
"#;

/// `PINGS <address> <count>`: one datagram every 2 ms to port 9001, each numbered; prints
/// how many numbers came back answered at once (`now:`), after a last 2 s wait.
const PINGS: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
n, seen = int(sys.argv[2]), set()
def take():
    while True:
        try: d = s.recv(2048)
        except BlockingIOError: return
        if d.startswith(b"now:"): seen.add(int(d[4:]))
for i in range(n):
    s.sendto(str(i).encode(), (sys.argv[1], 9001)); take(); time.sleep(0.002)
end = time.time() + 2
while time.time() < end: take(); time.sleep(0.01)
print(len(seen), n, flush=True)
"#;

/// Two user VPCs: the backend's TCP/UDP service at 10.0.0.200 in both, an HTTP service at
/// 10.0.0.201 in both (served from 10.0.0.11).
fn world() -> (World, Proc, Proc) {
    let w = World::new(2).unwrap();
    let backend = w.python_backend_with_endpoint(SHA_BACKEND, &[]).unwrap();
    let http = w.http_server("10.0.0.11", 80, "still here\n").unwrap();
    let (svc, _) = w.service("10.0.0.11", &["TCP:8080:80"], false).unwrap();
    w.endpoint(&svc, 0, HTTP_EP, &[]).unwrap();
    w.endpoint(&svc, 1, HTTP_EP, &[]).unwrap();
    let tcp_udp = s(
        &w.ctl(PROVIDER, &["service", "list"]).unwrap()["endpoint_services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["ports"][0]["client_port"] == 9000)
            .unwrap()["id"],
    )
    .to_string();
    w.endpoint(&tcp_udp, 1, EP, &[]).unwrap();
    w.wait_live().unwrap();
    for i in 0..2 {
        assert_eq!(
            w.curl(i, &format!("http://{HTTP_EP}:8080/"), 10).unwrap(),
            "still here\n"
        );
    }
    (w, backend, http)
}

fn udp(w: &World, i: usize) -> String {
    let out = w.users[i]
        .exec(&["timeout", "10", "python3", "-c", UDP, EP])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The user's endpoints in VPC `i`: (status, first error code).
fn endpoint_states(w: &World, i: usize) -> Vec<(String, String)> {
    let list = w.ctl(USER, &["endpoint", "list"]).unwrap();
    list["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["vpc_id"] == w.ids["uvpcs"][i])
        .map(|e| {
            (
                s(&e["status"]).to_string(),
                s(&e["error"][0]["error_code"]).to_string(),
            )
        })
        .collect()
}

fn conntrack_flows(w: &World) -> u64 {
    w.status().unwrap()["conntrack_flows"].as_u64().unwrap()
}

#[test]
#[ignore = "needs root + netns"]
fn attachments_are_removed_and_added_while_another_vpcs_stream_carries_on() {
    let (mut w, _backend, _http) = world();
    let log = w.dir.join("stream.log");
    let mut client = w.users[0]
        .spawn(&["timeout", "60", "python3", "-c", STREAM, EP, "120"], &log)
        .unwrap();
    poll_until("the stream to flow", Duration::from_secs(10), || {
        w.metric("vpcep_dataplane_forwarded_total", None)
            .is_ok_and(|n| n > 20.0)
    })
    .unwrap();
    // A UDP flow of VPC 1, live in conntrack beside the stream.
    assert_eq!(udp(&w, 1), "now:x");
    let before = conntrack_flows(&w);
    assert!(before >= 2, "the stream and VPC 1's UDP flow: {before}");
    let revision = w.status().unwrap()["config"]["revision"].as_u64().unwrap();

    // Remove VPC 1's attachment, while VPC 0 also sends a datagram every 2 ms.
    let pings_log = w.dir.join("pings.log");
    let mut pings = w.users[0]
        .spawn(
            &["timeout", "30", "python3", "-c", PINGS, EP, "1500"],
            &pings_log,
        )
        .unwrap();
    // The reload comes once the pings flow (a hundred of them forwarded), so they run
    // before, through and after it.
    let flowing = w.metric("vpcep_dataplane_forwarded_total", None).unwrap();
    poll_until("the pings to flow", Duration::from_secs(10), || {
        w.metric("vpcep_dataplane_forwarded_total", None)
            .is_ok_and(|n| n >= flowing + 100.0)
    })
    .unwrap();
    let forwarded = w.metric("vpcep_dataplane_forwarded_total", None).unwrap();
    let all = w.attachments().to_vec();
    let vpc1 = all[1].clone();
    w.set_attachments(all.iter().filter(|a| **a != vpc1).cloned().collect());
    w.write_config("").unwrap();
    let r = w.reload().unwrap();
    assert_eq!(r["dataplane_rebuilt"], true);
    assert_eq!(r["attachments"], 2);
    eprintln!(
        "reload gap (workers stopped to started): {} ms",
        r["dataplane_gap_ms"]
    );
    let daemon_log = std::fs::read_to_string(w.dir.join("vpcepd.log")).unwrap_or_default();
    for line in daemon_log
        .lines()
        .filter(|l| l.contains("dataplane rebuilt"))
    {
        eprintln!("{line}");
    }
    // The counters of the replaced dataplane stay in the totals.
    assert!(w.metric("vpcep_dataplane_forwarded_total", None).unwrap() >= forwarded);
    let st = w.status().unwrap();
    assert_eq!(st["config"]["revision"].as_u64().unwrap(), revision + 1);
    assert_eq!(st["attachments"].as_array().unwrap().len(), 2);
    assert!(
        st["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["vpc_id"] != vpc1.1.as_str())
    );
    poll_until("the pings to end", Duration::from_secs(20), || {
        !pings.alive()
    })
    .unwrap();
    let got = std::fs::read_to_string(&pings_log).unwrap();
    eprintln!("datagrams answered through the reload (answered sent): {got}");
    let counts: Vec<u32> = got
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(counts.len(), 2, "{got}");
    // The new sockets joined the fanout groups before the old workers stopped: frames wait
    // in them rather than being lost (a stop-then-start rebuild lost the whole gap, 50 to
    // 70 datagrams here). At most 1 % may go in the instant the old sockets close.
    assert!(counts[0] * 100 >= counts[1] * 99, "answered / sent: {got}");
    // Its flows ended; its clients reach nothing; its endpoints show why.
    poll_until("VPC 1's flows to end", Duration::from_secs(5), || {
        conntrack_flows(&w) < before
    })
    .unwrap();
    assert!(w.curl(1, &format!("http://{HTTP_EP}:8080/"), 2).is_err());
    for (status, code) in endpoint_states(&w, 1) {
        assert_eq!(
            (status.as_str(), code.as_str()),
            ("failed", "VPC_NOT_ATTACHED")
        );
    }
    for (status, _) in endpoint_states(&w, 0) {
        assert_eq!(status, "accepted");
    }
    // VPC 0 is served all along.
    assert_eq!(
        w.curl(0, &format!("http://{HTTP_EP}:8080/"), 5).unwrap(),
        "still here\n"
    );

    // Attach it again.
    w.set_attachments(all);
    w.write_config("").unwrap();
    let r = w.reload().unwrap();
    assert_eq!(r["attachments"], 3);
    w.wait_live().unwrap();
    poll_until("VPC 1 to be served again", Duration::from_secs(10), || {
        w.curl(1, &format!("http://{HTTP_EP}:8080/"), 2)
            .is_ok_and(|b| b == "still here\n")
    })
    .unwrap();
    for (status, _) in endpoint_states(&w, 1) {
        assert_eq!(status, "accepted");
    }

    poll_until("the stream to end", Duration::from_secs(45), || {
        !client.alive()
    })
    .unwrap();
    stream_result(&log, 120);
    assert!(
        w.daemon.as_mut().unwrap().alive(),
        "the same process all along"
    );
}

#[test]
#[ignore = "needs root + netns"]
fn credentials_and_timeouts_change_and_bad_configs_are_refused() {
    let (mut w, _backend, _http) = world();
    // A new key pair is accepted after the reload, a revoked one refused.
    let new_user = ("NEWAK000000000000001", "new-secret", "duser", "puser");
    assert!(w.ctl(new_user, &["vpc", "list"]).is_err(), "unknown before");
    let mut creds = String::new();
    for (ak, sk, d, p) in [PROVIDER, new_user] {
        let _ = writeln!(
            creds,
            "[[credentials]]\nak = \"{ak}\"\nsk = \"{sk}\"\ndomain_id = \"{d}\"\nproject_id = \"{p}\"\n"
        );
    }
    std::fs::write(w.dir.join("credentials.toml"), creds).unwrap();
    let r = w.reload().unwrap();
    assert_eq!(r["credentials"], 2);
    assert_eq!(r["dataplane_rebuilt"], false);
    assert!(w.ctl(new_user, &["vpc", "list"]).is_ok(), "added");
    let refused = w.ctl(USER, &["vpc", "list"]).unwrap_err().to_string();
    assert!(
        refused.contains("401") || refused.contains("EndPoint.0003"),
        "{refused}"
    );

    // Conntrack timeouts: UDP flows (and closed TCP ones) now end after 2 s.
    assert_eq!(udp(&w, 0), "now:x");
    let short = "[conntrack]\nudp_secs = 2\ntcp_closed_secs = 2\ntcp_closing_secs = 2";
    w.write_config(short).unwrap();
    let r = w.reload().unwrap();
    assert_eq!(r["dataplane_rebuilt"], true);
    assert_eq!(udp(&w, 0), "now:x");
    assert!(conntrack_flows(&w) >= 1);
    poll_until(
        "UDP flows to expire after 2 s",
        Duration::from_secs(10),
        || conntrack_flows(&w) == 0,
    )
    .unwrap();

    // A file that does not parse, and a setting that needs a restart: refused, counted,
    // and the old config runs on.
    let good = std::fs::read_to_string(w.dir.join("vpcepd.toml")).unwrap();
    std::fs::write(
        w.dir.join("vpcepd.toml"),
        format!("workers = \"two\"\n{good}"),
    )
    .unwrap();
    let e = w.reload().unwrap_err().to_string();
    assert!(e.contains("422") && e.contains("workers"), "{e}");
    w.write_config(&format!("{short}\n[api]\nmax_connections = 7"))
        .unwrap();
    let e = w.reload().unwrap_err().to_string();
    assert!(
        e.contains("only with a restart") && e.contains("api"),
        "{e}"
    );
    let st: Value = w.status().unwrap();
    assert_eq!(st["config"]["reloads_failed"], 2);
    assert!(s(&st["config"]["last_error"]).contains("api"));
    assert_eq!(
        w.metric("vpcep_config_reloads_total", Some("result=\"failed\""))
            .unwrap(),
        2.0
    );
    assert_eq!(
        w.curl(0, &format!("http://{HTTP_EP}:8080/"), 5).unwrap(),
        "still here\n"
    );
    assert!(
        w.ctl(new_user, &["vpc", "list"]).is_ok(),
        "credentials kept"
    );

    // SIGHUP does the same as POST /reload: the original key pair comes back.
    let mut creds = String::new();
    for (ak, sk, d, p) in [PROVIDER, USER] {
        let _ = writeln!(
            creds,
            "[[credentials]]\nak = \"{ak}\"\nsk = \"{sk}\"\ndomain_id = \"{d}\"\nproject_id = \"{p}\"\n"
        );
    }
    std::fs::write(w.dir.join("credentials.toml"), creds).unwrap();
    w.write_config(short).unwrap();
    let pid = w.daemon.as_ref().unwrap().pid().to_string();
    run(std::process::Command::new("kill").args(["-HUP", &pid])).unwrap();
    poll_until(
        "SIGHUP to restore the key pair",
        Duration::from_secs(10),
        || w.ctl(USER, &["vpc", "list"]).is_ok(),
    )
    .unwrap();
    assert!(w.ctl(new_user, &["vpc", "list"]).is_err(), "revoked");
    assert!(w.daemon.as_mut().unwrap().alive());
}
