//! Conntrack replication between two vpcepd on one etcd, on one L2 segment per VPC
//! (`Cluster::replicated`): the owner streams its flows to the standby, so a TCP stream
//! through the endpoint carries on, every byte, through `kill -9` of the owner; and the
//! standby takes no flow from a datagram that is not sealed with the cluster's key, nor
//! from one played again.
//!
//! As root: `cargo test -p vpcep-tests --test netns -- --ignored replication::`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::cluster::Cluster;
use testkit::{is_root, poll_until, s};

/// The cluster's key in these tests.
const KEY: &str = "a replication key for the tests";

/// The VPC ids `w` says it owns.
fn owned(c: &Cluster, n: usize) -> Option<Vec<String>> {
    c.owned(n)
}

/// A replicated two-node cluster with an endpoint at 10.0.0.200 (TCP 80 to the backend's
/// 8080); the owner's index, once one node owns both VPCs.
fn setup(heartbeat_ms: Option<u64>) -> (Cluster, usize) {
    let c = Cluster::replicated_with(2, 1, KEY, heartbeat_ms).unwrap();
    let (svc, _) = c.nodes[0]
        .service("10.0.0.10", &["TCP:80:8080"], false)
        .unwrap();
    c.nodes[0].endpoint(&svc, 0, "10.0.0.200", &[]).unwrap();
    c.wait_live_everywhere(0).unwrap();
    let owner = c.wait_one_owner(Duration::from_secs(10)).unwrap();
    (c, owner)
}

/// Flows the replication added to node `n`'s conntrack.
fn replicated_in(c: &Cluster, n: usize) -> f64 {
    c.nodes[n]
        .metric(
            "vpcep_replication_events_applied_total",
            Some("outcome=\"inserted\""),
        )
        .unwrap_or(0.0)
}

#[test]
#[ignore = "needs root + netns + etcd"]
fn a_stream_carries_on_with_every_byte_through_kill_9_of_its_owner() {
    assert!(is_root(), "run as root");
    let (mut c, owner) = setup(None);
    let standby = 1 - owner;
    // The provider VPC routes the SNAT range through one next hop, which the owner answers
    // for: a takeover announces that address, not the 32,766 of the range.
    c.route_snat_through("10.0.0.250").unwrap();
    let dir = c.nodes[0].dir.clone();
    let backend = c.nodes[0]
        .provider
        .spawn(
            &["python3", "-c", testkit::scripts::GAP_BACKEND],
            &dir.join("stream-backend.log"),
        )
        .unwrap();
    poll_until("the backend to listen", Duration::from_secs(5), || {
        backend.output().contains("listening")
    })
    .unwrap();
    // 24 MiB at 2 MiB a second: the owner dies about 2 s in, with most of it to go.
    let size = 24 << 20;
    let client = c.nodes[0].users[0]
        .spawn(
            &[
                "python3",
                "-c",
                testkit::scripts::PACED_CLIENT,
                &size.to_string(),
                &(2 << 20).to_string(),
            ],
            &dir.join("stream-client.log"),
        )
        .unwrap();
    poll_until("the stream to start", Duration::from_secs(5), || {
        client.output().contains("connected")
    })
    .unwrap();
    // The standby holds the flow before its owner dies.
    let t = Instant::now();
    poll_until(
        "the flow replicated to the standby",
        Duration::from_secs(5),
        || replicated_in(&c, standby) >= 1.0,
    )
    .unwrap();
    println!("replicated after {:?}", t.elapsed());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !client.output().contains("sha256"),
        "the stream ended before the kill"
    );
    c.nodes[owner].kill_daemon();
    let killed = Instant::now();
    let mut answer = Value::Null;
    poll_until("the stream to complete", Duration::from_secs(60), || {
        answer = client
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .next_back()
            .unwrap_or(Value::Null);
        answer.is_object()
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: client {:?}, backend {:?}",
            client.output(),
            backend.output()
        )
    });
    assert!(answer["error"].is_null(), "the stream broke: {answer}");
    let at_backend: Value = serde_json::from_str(s(&answer["answer"])).unwrap();
    println!(
        "kill -9 of the owner {:?} into a 24 MiB stream at 2 MiB/s: completed {:?} after the kill; at the backend {at_backend}",
        killed - started,
        killed.elapsed()
    );
    assert_eq!(answer["bytes"], size, "{answer}");
    assert_eq!(at_backend["bytes"], size, "every byte: {at_backend}");
    assert_eq!(at_backend["sha256"], answer["sha256"], "{at_backend}");
    // The new owner carried the old flow: it owns the VPCs and its dataplane forwarded
    // the stream's segments (none of them dropped for want of a flow).
    assert!(owned(&c, standby).is_some_and(|v| v.len() == 2));
    assert_eq!(c.nodes[standby].drops("tcp_no_flow").unwrap_or(0.0), 0.0);
    // Its announcement: the endpoint's address and the next hop, in two rounds.
    let announced = || {
        c.nodes[standby]
            .metric("vpcep_dataplane_arp_announced_total", None)
            .unwrap()
    };
    poll_until(
        "both rounds of the announcement",
        Duration::from_secs(5),
        || announced() >= 4.0,
    )
    .unwrap();
    assert_eq!(announced(), 4.0, "gratuitous ARP frames of the takeover");
}

/// A datagram of one flow, sealed with `key`, as node-9 with `seq`.
fn datagram(c: &Cluster, key: &[u8], seq: u64, port: u16) -> Vec<u8> {
    use dataplane::conntrack::replica::{Replica, encode};
    use dataplane::conntrack::{FlowInit, Rewrite};
    use dataplane::{Attachment, FlowKey};
    let vpcs = vec![
        s(&c.nodes[0].ids["uvpcs"][0]).to_string(),
        s(&c.nodes[0].ids["pvpc"]).to_string(),
    ];
    let flow = FlowInit {
        key: FlowKey {
            src: u32::from(std::net::Ipv4Addr::new(10, 0, 0, 5)),
            dst: u32::from(std::net::Ipv4Addr::new(10, 0, 0, 200)),
            sport: port,
            dport: 80,
            vpc: Attachment(0),
            proto: 6,
        },
        rewrite: Rewrite {
            src: u32::from(std::net::Ipv4Addr::new(198, 19, 128, 9)),
            dst: u32::from(std::net::Ipv4Addr::new(10, 0, 0, 10)),
            sport: port,
            dport: 8080,
        },
        out_vpc: Attachment(1),
        backend_mac: dataplane::wire::ethernet::MacAddr([2, 0, 0, 0, 0, 1]),
        client_mac: dataplane::wire::ethernet::MacAddr([2, 0, 0, 0, 0, 2]),
        state: dataplane::conntrack::state::ESTABLISHED,
        reply_state: 0,
        generation: 0,
        last_seen: [100, 100],
        client_isn: 0,
        meter: 0,
    };
    let mut events = Vec::new();
    encode(&Replica::Open(flow), 100, &mut events);
    let header = control::replica::wire::header_bytes(&control::replica::wire::Header {
        name: "node-9".into(),
        boot: 1,
        seq,
        sent_ms: u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap(),
        vpcs,
    });
    control::replica::wire::seal(key, &header, 1, &events)
}

/// Send `d` from etcd's namespace (a host on the nodes' network) to node `n`'s replication
/// address.
fn send(c: &Cluster, n: usize, d: &[u8]) {
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    let to = format!("192.0.2.{}", 4 * n + 2);
    let script = "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 4790))";
    let out = c
        .etcd_ns
        .exec(&["python3", "-c", script, &hex, &to])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
#[ignore = "needs root + netns + etcd"]
fn a_forged_or_replayed_replication_datagram_adds_no_flow() {
    assert!(is_root(), "run as root");
    // Slow heartbeats: this test needs its owner to stay the owner, whatever the load.
    let (c, owner) = setup(Some(1000));
    let standby = 1 - owner;
    let flows = |c: &Cluster| {
        c.nodes[standby]
            .metric("vpcep_conntrack_flows", None)
            .unwrap()
    };
    let refused = |c: &Cluster, why: &str| {
        c.nodes[standby]
            .metric(
                "vpcep_replication_refused_total",
                Some(&format!("reason=\"{why}\"")),
            )
            .unwrap_or(0.0)
    };
    assert_eq!(flows(&c), 0.0);
    // The right datagram under another key: refused, no flow.
    send(
        &c,
        standby,
        &datagram(&c, b"not the cluster's key", 1, 40000),
    );
    poll_until("the forgery to be refused", Duration::from_secs(5), || {
        refused(&c, "forged") >= 1.0
    })
    .unwrap();
    assert_eq!(flows(&c), 0.0);
    // The same under the cluster's key is a flow (so the refusal above was the key's).
    let genuine = datagram(&c, KEY.as_bytes(), 2, 40001);
    send(&c, standby, &genuine);
    poll_until(
        "the sealed flow to be taken",
        Duration::from_secs(5),
        || flows(&c) == 1.0,
    )
    .unwrap();
    // Played again: refused.
    send(&c, standby, &genuine);
    poll_until("the replay to be refused", Duration::from_secs(5), || {
        refused(&c, "replayed") >= 1.0
    })
    .unwrap();
    assert_eq!(flows(&c), 1.0);
    // The owner takes nothing from anyone for the VPCs it owns.
    send(&c, owner, &datagram(&c, KEY.as_bytes(), 3, 40002));
    poll_until("the owner to read it", Duration::from_secs(5), || {
        c.nodes[owner]
            .metric("vpcep_replication_datagrams_received_total", None)
            .unwrap_or(0.0)
            >= 1.0
    })
    .unwrap();
    assert_eq!(
        c.nodes[owner]
            .metric("vpcep_conntrack_flows", None)
            .unwrap(),
        0.0
    );
}

/// A backend that echoes on every connection it accepts, holding them open.
const ECHO: &str = r#"
import socket, threading
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("10.0.0.10", 8080))
l.listen(64)
print("listening", flush=True)
def serve(c):
    while True:
        b = c.recv(4096)
        if not b:
            return
        c.sendall(b)
while True:
    c, _ = l.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// A client that makes `argv[1]` short connections (an echo, then closed both ways: their
/// flows are closed, evictable), waits for the file `argv[4]`, then holds `argv[2]`
/// connections open (established), and prints `held N`. Once the file `argv[3]` exists it
/// sends one more byte on each held connection and prints how many were echoed.
const HOLDER: &str = r#"
import os, socket, sys, time
for i in range(int(sys.argv[1])):
    s = socket.create_connection(("10.0.0.200", 80), timeout=5)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    s.close()
print("closed", flush=True)
while not os.path.exists(sys.argv[4]):
    time.sleep(0.05)
held = []
for i in range(int(sys.argv[2])):
    s = socket.create_connection(("10.0.0.200", 80), timeout=5)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    held.append(s)
    time.sleep(0.05)
print("held", len(held), flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
ok = 0
for s in held:
    try:
        s.settimeout(10)
        s.sendall(b"y")
        ok += s.recv(1) == b"y"
    except OSError:
        pass
print("echoed", ok, flush=True)
"#;

#[test]
#[ignore = "needs root + netns + etcd"]
fn a_full_shadow_table_evicts_as_the_owner_would() {
    assert!(is_root(), "run as root");
    let (mut c, owner) = setup(Some(1000));
    let standby = 1 - owner;
    // The standby's table holds 16 flows (the owner's, a million).
    c.nodes[standby]
        .write_config("[conntrack]\ncapacity = 16\nvpc_percent = 100")
        .unwrap();
    c.nodes[standby].reload().unwrap();
    c.wait_live_everywhere(0).unwrap();
    let dir = c.nodes[0].dir.clone();
    let echo = c.nodes[0]
        .provider
        .spawn(&["python3", "-c", ECHO], &dir.join("echo.log"))
        .unwrap();
    poll_until("the echo backend to listen", Duration::from_secs(5), || {
        echo.output().contains("listening")
    })
    .unwrap();
    // A client making `short` closed connections, then (once `gate` exists) holding `held`
    // (the holder's echo round waits for `go`).
    let hold =
        |short: usize, held: usize, gate: &std::path::Path, go: &std::path::Path, log: &str| {
            c.nodes[0].users[0]
                .spawn(
                    &[
                        "python3",
                        "-c",
                        HOLDER,
                        &short.to_string(),
                        &held.to_string(),
                        go.to_str().unwrap(),
                        gate.to_str().unwrap(),
                    ],
                    &dir.join(log),
                )
                .unwrap()
        };
    let holding = |p: &testkit::Proc, held: usize| {
        let want = format!("held {held}");
        poll_until(&want, Duration::from_secs(20), || {
            p.output().contains(&want)
        })
        .unwrap();
    };
    let flows = |n: usize| c.nodes[n].metric("vpcep_conntrack_flows", None).unwrap();
    let applied = |outcome: &str| {
        c.nodes[standby]
            .metric(
                "vpcep_replication_events_applied_total",
                Some(&format!("outcome=\"{outcome}\"")),
            )
            .unwrap_or(0.0)
    };
    // 8 closed connections (evictable), then 16 held ones (established): the standby makes
    // room for each established one by evicting a closed one.
    let go = dir.join("go");
    let gate = dir.join("gate");
    let holder = hold(8, 16, &gate, &go, "holder.log");
    // The short ones' flows are closed on the standby (an open, established and closed
    // each) before the held ones open: else a held one could find 16 established flows
    // and be refused.
    poll_until(
        "the standby to have the short flows closed",
        Duration::from_secs(10),
        || {
            holder.output().contains("closed")
                && applied("inserted") >= 8.0
                && applied("updated") >= 16.0
        },
    )
    .unwrap();
    std::fs::write(&gate, b"").unwrap();
    holding(&holder, 16);
    poll_until(
        "the standby to hold 16 flows",
        Duration::from_secs(5),
        || flows(standby) == 16.0 && applied("inserted") >= 24.0,
    )
    .unwrap_or_else(|e| panic!("{e}: standby {} flows", flows(standby)));
    // 24 flows into a table of 16: 8 were evicted, the closed ones (the echoes below show
    // which stayed). The owner's resends of closed flows it still holds are refused now.
    let refused = applied("refused");
    // 4 more established: nothing evictable is left, so they are refused, and the 16
    // established flows stay.
    let more = hold(0, 4, &gate, &go, "more.log");
    holding(&more, 4);
    poll_until("the standby to refuse them", Duration::from_secs(5), || {
        applied("refused") >= refused + 4.0
    })
    .unwrap();
    assert_eq!(flows(standby), 16.0);
    assert!(flows(owner) >= 20.0, "the owner holds all 20 established");
    // One resend of every flow (each 5 s) before the owner goes: an event lost or refused
    // in a moment when nothing was evictable yet (a short flow's close still on its way)
    // is repaired by it, as it would be in production.
    let updated = applied("updated");
    poll_until("the owner's resend", Duration::from_secs(12), || {
        applied("updated") >= updated + 15.0
    })
    .unwrap();
    assert_eq!(flows(standby), 16.0);
    // The flows the standby holds are the established ones: take the owner away, and the
    // first 16 connections carry on (an echo on each), through the new owner.
    c.nodes[owner].kill_daemon();
    poll_until(
        "the standby to own the VPCs",
        Duration::from_secs(10),
        || owned(&c, standby).is_some_and(|v| v.len() == 2),
    )
    .unwrap();
    std::fs::write(&go, b"").unwrap();
    poll_until(
        "the held connections' echoes",
        Duration::from_secs(30),
        || holder.output().contains("echoed") && more.output().contains("echoed"),
    )
    .unwrap();
    // Every flow the standby kept carries on, and no other: 16 echoes in all. (Which 16 it
    // kept depends on when each short flow's close reached it: a held connection that found
    // nothing evictable was refused, and a later one took the closed flow's place.)
    let echoed = |p: &testkit::Proc| -> u32 {
        p.output()
            .lines()
            .find_map(|l| l.strip_prefix("echoed ")?.trim().parse().ok())
            .unwrap_or(0)
    };
    let drops: Vec<(&str, f64)> = [
        "tcp_no_flow",
        "no_endpoint",
        "reply_without_flow",
        "capacity",
    ]
    .into_iter()
    .map(|r| (r, c.nodes[standby].drops(r).unwrap_or(-1.0)))
    .collect();
    assert_eq!(
        echoed(&holder) + echoed(&more),
        16,
        "{} / {}; the new owner's drops: {drops:?}",
        holder.output(),
        more.output()
    );
}
