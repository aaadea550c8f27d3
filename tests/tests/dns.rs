//! Private DNS end to end: `dig` from two user VPCs with the same CIDR, each with a resolver
//! at 10.0.0.2 (the same address in both), over UDP and TCP. A name exists once its
//! connection is accepted, each VPC sees only its own, a reject takes it away, names
//! outside the zone are refused, or forwarded once an upstream is configured (by a live
//! reload). The workers leave the resolver's frames alone.
//! Run with `cargo test -p vpcep-tests -- --ignored`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use vpcep_tests::*;

const RESOLVER: &str = "10.0.0.2";

/// An upstream resolver on the node's loopback (port 5353): answers every A query with
/// 192.0.2.1, built on the query's bytes (header flags, one answer pointing at the name).
const UPSTREAM: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 5353))
print("ready", flush=True)
while True:
    q, a = s.recvfrom(4096)
    end = 12
    while q[end] != 0: end += 1 + q[end]
    question = q[12:end + 5]
    head = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
    answer = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([192, 0, 2, 1])
    s.sendto(head + question + answer, a)
"#;

/// `dig` from user VPC `i` (over TCP with `tcp`): the status and the A addresses.
fn dig(w: &World, i: usize, name: &str, tcp: bool) -> (String, Vec<String>) {
    let mut args = vec![
        "dig",
        "+time=2",
        "+tries=2",
        "+noall",
        "+comments",
        "+answer",
    ];
    if tcp {
        args.push("+tcp");
    }
    let at = format!("@{RESOLVER}");
    args.extend([at.as_str(), name, "A"]);
    let out = w.users[i].exec(&args).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let addrs = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter(|l| l.split_whitespace().nth(3) == Some("A"))
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    (status, addrs)
}

fn name(ip: &str) -> String {
    format!("{}.vpcep.region-1.internal", ip.replace('.', "-"))
}

#[test]
#[ignore = "needs root + netns"]
fn each_vpc_resolves_only_its_own_accepted_endpoints() {
    let mut w = World::new(2).unwrap();
    w.set_dns_ip(0, Some(RESOLVER));
    w.set_dns_ip(1, Some(RESOLVER));
    w.write_config("").unwrap();
    w.reload().unwrap();
    let (svc, _) = w.service("10.0.0.10", &["TCP:8080:80"], true).unwrap();
    let ep0 = w.endpoint(&svc, 0, "10.0.0.200", &["--dns"]).unwrap();
    let ep1 = w.endpoint(&svc, 1, "10.0.0.201", &["--dns"]).unwrap();
    let (n0, n1) = (name("10.0.0.200"), name("10.0.0.201"));
    w.wait_live().unwrap();

    // Pending acceptance: no name yet.
    assert_eq!(dig(&w, 0, &n0, false).0, "NXDOMAIN");
    for ep in [&ep0, &ep1] {
        w.ctl(PROVIDER, &["connection", "accept", &svc, s(&ep["id"])])
            .unwrap();
    }
    w.wait_live().unwrap();
    for tcp in [false, true] {
        assert_eq!(
            dig(&w, 0, &n0, tcp),
            ("NOERROR".into(), vec!["10.0.0.200".into()]),
            "tcp {tcp}"
        );
        assert_eq!(
            dig(&w, 1, &n1, tcp),
            ("NOERROR".into(), vec!["10.0.0.201".into()])
        );
        // The other VPC's name does not exist here (same resolver address, same CIDR).
        assert_eq!(dig(&w, 0, &n1, tcp).0, "NXDOMAIN");
        assert_eq!(dig(&w, 1, &n0, tcp).0, "NXDOMAIN");
    }
    // The API shows the name now too.
    let shown = w.ctl(USER, &["endpoint", "show", s(&ep0["id"])]).unwrap();
    assert_eq!(shown["dns_names"][0], n0.as_str());
    // Names outside the zone: no upstream, refused.
    assert_eq!(dig(&w, 0, "example.com", false).0, "REFUSED");

    // A reject takes the name away with the next generation.
    w.ctl(PROVIDER, &["connection", "reject", &svc, s(&ep0["id"])])
        .unwrap();
    w.wait_live().unwrap();
    assert_eq!(dig(&w, 0, &n0, false).0, "NXDOMAIN");
    assert_eq!(dig(&w, 1, &n1, false).1, vec!["10.0.0.201".to_string()]);

    // An upstream, added by a live reload: other names are forwarded.
    let upstream = w
        .node
        .spawn(&["python3", "-c", UPSTREAM], &w.dir.join("upstream.log"))
        .unwrap();
    poll_until("the upstream to listen", Duration::from_secs(5), || {
        upstream.output().contains("ready")
    })
    .unwrap();
    w.write_config("[dns]\nupstreams = [\"127.0.0.1:5353\"]")
        .unwrap();
    w.reload().unwrap();
    assert_eq!(
        dig(&w, 0, "objects.example.com", false),
        ("NOERROR".into(), vec!["192.0.2.1".into()])
    );
    assert_eq!(
        dig(&w, 1, "objects.example.com", true),
        ("NOERROR".into(), vec!["192.0.2.1".into()])
    );
    assert_eq!(dig(&w, 1, &n1, false).1, vec!["10.0.0.201".to_string()]);

    // The workers leave every resolver frame (ARP included) to the resolvers: counted, not
    // dropped. (A rebuild starts a fresh neighbour table, so an answer to the old one's
    // question may count as unsolicited ARP once, just after it: hence the base here.)
    let arp_before = w.drops("arp_not_for_us").unwrap();
    for i in 0..6 {
        w.users[i % 2]
            .exec(&["ip", "neigh", "flush", "all"])
            .unwrap();
        // (VPC 0's name was rejected above; VPC 1's is live.)
        let want = ["NXDOMAIN", "NOERROR"][i % 2];
        let ip = ["10.0.0.200", "10.0.0.201"][i % 2];
        assert_eq!(dig(&w, i % 2, &name(ip), i > 2).0, want);
    }
    assert!(
        w.metric("vpcep_dataplane_service_frames_total", None)
            .unwrap()
            > 0.0
    );
    assert_eq!(w.drops("no_endpoint").unwrap(), 0.0);
    assert_eq!(w.drops("arp_not_for_us").unwrap(), arp_before);
}
