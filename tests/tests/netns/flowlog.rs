//! Flow logs end to end: a curl through an endpoint of a logged attachment is one line with
//! both sides of the NAT, as the client and the backend saw them, and the counts the
//! endpoint's meters show; a flood of refused SYNs from hundreds of sources makes a bounded
//! number of lines whose counts add up to the endpoint's drops; an attachment that is not
//! logged writes nothing.
//! Run with `cargo test -p vpcep-tests --test netns -- --ignored flowlog::`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use serde_json::Value;
use testkit::*;

const EP: &str = "10.0.0.200";

/// An HTTP server on 10.0.0.10:80 whose answer is the address and port it saw the request
/// come from.
const PEER_SERVER: &str = r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = ("%s:%d" % self.client_address).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("10.0.0.10", 80), H).serve_forever()
"#;

/// Send argv[2] TCP SYNs to argv[1]:9999 from sources 10.0.0.2 to 10.0.0.254 in turn (a
/// raw socket: the kernel does not check them), as fast as it can; print how many.
const SYN_FLOOD: &str = r#"
import socket, struct, sys
dst, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xffff) + (t >> 16)
    return ~t & 0xffff
d = socket.inet_aton(dst)
sent = 0
for i in range(n):
    src = socket.inet_aton("10.0.0.%d" % (2 + i % 253))
    sport = 10000 + i % 50000
    tcp = struct.pack("!HHIIBBHHH", sport, 9999, i, 0, 5 << 4, 0x02, 1024, 0, 0)
    pseudo = src + d + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xffff, 0, 64, 6, 0, src, d)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    s.sendto(ip + tcp, (dst, 0))
    sent += 1
print(sent)
"#;

fn flowlog(w: &World, args: &[&str]) -> Vec<Value> {
    let dir = w.dir.join("data");
    let mut all = vec!["flowlog", "--data-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let v = w.ctl(USER, &all).unwrap();
    v["flows"].as_array().unwrap().clone()
}

fn metrics(w: &World, ep: &str) -> Value {
    w.ctl(
        USER,
        &["raw", "GET", &format!("/vpc-endpoints/{ep}/metrics")],
    )
    .unwrap()
}

#[test]
#[ignore = "needs root + netns"]
fn a_curl_is_one_line_with_both_sides_of_the_nat() {
    let mut w = World::new(2).unwrap();
    // User VPC 0 logged, user VPC 1 not; short intervals and closed timeout for the test.
    w.log_flows(&[0]);
    w.write_config("[flow_log]\ninterval_secs = 1\n[conntrack]\ntcp_closed_secs = 1\n")
        .unwrap();
    assert_eq!(w.reload().unwrap()["dataplane_rebuilt"], true);
    let server = w
        .provider
        .spawn(&["python3", "-c", PEER_SERVER], &w.dir.join("http.log"))
        .unwrap();
    let (svc, _) = w.service("10.0.0.10", &["TCP:8080:80"], false).unwrap();
    let ep0 = s(&w.endpoint(&svc, 0, EP, &[]).unwrap()["id"]).to_string();
    let ep1 = s(&w.endpoint(&svc, 1, EP, &[]).unwrap()["id"]).to_string();
    w.wait_live().unwrap();
    w.provider
        .wait_listening("the HTTP server", &[80], Duration::from_secs(10))
        .unwrap();

    let curl = |i: usize| {
        let out = w.users[i]
            .command("curl")
            .args(["-s", "-m", "5", "-w", "\n%{local_port}"])
            .arg(format!("http://{EP}:8080/"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (seen, port) = text.rsplit_once('\n').unwrap();
        assert!(
            seen.starts_with("198.19."),
            "the backend saw a SNAT address: {text}"
        );
        (seen.to_string(), port.to_string())
    };
    let (backend_saw, client_port) = curl(0);
    let client = format!("10.0.0.5:{client_port}");
    // The flow ends (FINs both ways, then the closed timeout of 1 s) and its line is
    // written.
    let last_line = |client: &str| {
        let mut line = Value::Null;
        poll_until("the curl's last line", Duration::from_secs(20), || {
            let lines = flowlog(&w, &["--client", client, "--reason", "fin"]);
            line = lines.last().cloned().unwrap_or(Value::Null);
            !lines.is_empty()
        })
        .unwrap();
        line
    };
    let line = last_line(&client);
    assert_eq!(line["kind"], "flow", "{line}");
    assert_eq!(line["proto"], "tcp");
    assert_eq!(line["client"], client.as_str(), "what the client used");
    assert_eq!(
        line["endpoint"],
        format!("{EP}:8080"),
        "where the client sent"
    );
    assert_eq!(line["snat"], backend_saw.as_str(), "what the backend saw");
    assert_eq!(line["backend"], "10.0.0.10:80");
    assert_eq!(line["endpoint_id"], ep0.as_str());
    assert_eq!(line["service_id"], svc.as_str());
    assert!(line["start"].as_str().unwrap() <= line["end"].as_str().unwrap());
    // The only flow of its endpoint: its counts are the endpoint's (once the meters'
    // reader took them: it reads the workers' counters every interval, not at each flow).
    let mut totals = Value::Null;
    let _ = poll_until(
        "the endpoint's meters to count the flow",
        Duration::from_secs(5),
        || {
            totals = metrics(&w, &ep0)["totals"].clone();
            totals["flows_opened"] == 1 && totals["packets_to_client"] == line["packets_to_client"]
        },
    );
    assert_eq!(totals["flows_opened"], 1, "{totals}");
    for (mine, theirs) in [
        ("packets_to_backend", "packets_to_service"),
        ("bytes_to_backend", "bytes_to_service"),
        ("packets_to_client", "packets_to_client"),
        ("bytes_to_client", "bytes_to_client"),
    ] {
        assert_eq!(
            line[mine], totals[theirs],
            "{mine}: {line} against {totals}"
        );
    }
    assert!(line["packets_to_backend"].as_u64().unwrap() >= 4, "{line}");
    assert!(
        line["bytes_to_client"].as_u64().unwrap() > backend_saw.len() as u64,
        "{line}"
    );

    // The attachment that is not logged writes nothing: user 1's flow, closed before
    // user 0's next one, has expired by the time that one's line is written.
    curl(1);
    let (_, next_port) = curl(0);
    last_line(&format!("10.0.0.5:{next_port}"));
    assert_eq!(metrics(&w, &ep1)["totals"]["flows_opened"], 1);
    let all = flowlog(&w, &[]);
    assert!(
        all.iter().all(|l| l["endpoint_id"] == ep0.as_str()),
        "only user 0's flows: {all:?}"
    );
    assert_eq!(
        w.metric("vpcep_flowlog_events_lost_total", None)
            .unwrap_or(0.0),
        0.0
    );
    drop(server);
}

#[test]
#[ignore = "needs root + netns"]
fn a_flood_of_refused_attempts_makes_a_bounded_number_of_lines() {
    let mut w = World::new(1).unwrap();
    w.log_flows(&[0]);
    w.write_config("[flow_log]\ninterval_secs = 1\n").unwrap();
    w.reload().unwrap();
    let (svc, _) = w.service("10.0.0.10", &["TCP:8080:80"], false).unwrap();
    let ep = s(&w.endpoint(&svc, 0, EP, &[]).unwrap()["id"]).to_string();
    w.wait_live().unwrap();

    let sent: u64 = 20_000;
    let out = w.users[0]
        .command("timeout")
        .args(["60", "python3", "-c", SYN_FLOOD, EP, &sent.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        sent.to_string(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every SYN the dataplane saw is the endpoint's drop (port 9999 is not mapped)...
    let mut drops = 0;
    poll_until("the flood counted", Duration::from_secs(10), || {
        drops = metrics(&w, &ep)["totals"]["drops"]["port_not_mapped"]
            .as_u64()
            .unwrap_or(0);
        drops > sent / 2
    })
    .unwrap();
    // ...and is in one line's count, once the intervals are over.
    let mut lines = Vec::new();
    poll_until("the refusals written", Duration::from_secs(15), || {
        lines = flowlog(&w, &["--kind", "refused"]);
        lines
            .iter()
            .filter_map(|l| l["count"].as_u64())
            .sum::<u64>()
            == drops
    })
    .unwrap();
    eprintln!("{} lines for {drops} refused SYNs", lines.len());
    // 253 sources: at most the dataplane's table of sources (64) and one sum of the rest
    // per worker and interval, however many SYNs.
    assert!(
        lines.len() as u64 <= drops / 10,
        "{} lines for {drops} refused SYNs",
        lines.len()
    );
    for l in &lines {
        assert_eq!(l["reason"], "port_not_mapped", "{l}");
        assert_eq!(l["endpoint"], format!("{EP}:9999"));
        assert_eq!(l["endpoint_id"], ep.as_str());
    }
    assert!(
        lines.iter().any(|l| l["client"] == "*"),
        "sources past the table are summed"
    );
    assert!(
        flowlog(&w, &["--kind", "flow"]).is_empty(),
        "no flow opened"
    );
}
