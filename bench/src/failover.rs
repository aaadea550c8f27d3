//! The failover measures of `clusterbench` (as root): two vpcepd on one etcd with conntrack
//! replication, one L2 segment per VPC (`testkit::cluster::Cluster::replicated`), the
//! provider VPC routing the SNAT range through a next hop. Each run kills the owner with
//! `kill -9` 2 s into:
//! - a TCP stream of 24 MiB at 2 MiB/s through the endpoint (sha256 at the backend, and
//!   the backend's longest pause between two reads: the gap);
//! - a UDP stream of 1,000 datagrams a second (numbered; the backend counts those that
//!   arrive);
//! - a storm of new connections (`netprobe connect-count`, 2 threads), whose failures are
//!   counted.
//!
//! The killed node is started again (a standby) before the next run, which kills the other
//! one. A last measure is the cost of replication: new connections a second through the
//! endpoint on this cluster and on one without replication, in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use testkit::cluster::Cluster;
use testkit::{bin, poll_until};

use crate::{js, median, percentile};

/// The UDP sink: counts distinct numbered datagrams on 10.0.0.10:5000 for `argv[1]` s.
const UDP_SINK: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.0.0.10", 5000))
s.settimeout(0.2)
print("listening", flush=True)
seen, end = set(), time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        b, _ = s.recvfrom(64)
        seen.add(int(b))
    except socket.timeout:
        pass
print(len(seen), flush=True)
"#;

/// The UDP source: `argv[1]` numbered datagrams at 1,000 a second to the endpoint.
const UDP_SOURCE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, start = int(sys.argv[1]), time.monotonic()
for i in range(n):
    try:
        s.sendto(str(i).encode(), ("10.0.0.200", 5000))
    except OSError:
        pass
    ahead = (i + 1) / 1000 - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(n, flush=True)
"#;

/// The index of the node that owns both VPCs, once one does.
fn owner(c: &Cluster) -> Result<usize> {
    c.wait_one_owner(Duration::from_secs(15))
}

/// How many VPCs node `n` of `c` owns.
fn owned(c: &Cluster, n: usize) -> usize {
    c.owned(n).map_or(0, |v| v.len())
}

/// The last JSON line `p` printed.
fn last_json(out: &str) -> Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .next_back()
        .unwrap_or(Value::Null)
}

/// The endpoint (TCP 80 to 8080, UDP 5000, TCP 9000) on a cluster of two nodes, with or
/// without replication; the provider routes the SNAT range through 10.0.0.250.
fn cluster(replicated: bool, heartbeat_ms: Option<u64>) -> Result<Cluster> {
    let mut c = if replicated {
        Cluster::replicated_with(2, 1, "the benchmark's replication key", heartbeat_ms)?
    } else {
        Cluster::on_one_segment(2, 1)?
    };
    let (svc, _) = c.nodes[0].service(
        "10.0.0.10",
        &["TCP:80:8080", "UDP:5000:5000", "TCP:9000:9000"],
        false,
    )?;
    c.nodes[0].endpoint(&svc, 0, "10.0.0.200", &[])?;
    c.route_snat_through("10.0.0.250")?;
    Ok(c)
}

/// A JSON number, or `null` for one not measured (a run whose stream did not complete
/// has no gap).
fn number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.0}")
    } else {
        "null".into()
    }
}

/// What one failover run saw.
struct Run {
    complete: bool,
    bytes_lost: u64,
    gap_ms: f64,
    udp_lost: u64,
    storm_ok: u64,
    storm_failed: u64,
}

/// One run: the streams and the storm, `kill -9` of the owner 2 s in.
fn one_run(c: &mut Cluster, dir: &std::path::Path, k: usize) -> Result<Run> {
    let o = owner(c)?;
    let size: u64 = 24 << 20;
    let w = &c.nodes[0];
    let backend = w.provider.spawn(
        &["python3", "-c", testkit::scripts::GAP_BACKEND],
        &dir.join(format!("backend-{k}.log")),
    )?;
    let sink = w.provider.spawn(
        &["python3", "-c", UDP_SINK, "16"],
        &dir.join(format!("udp-sink-{k}.log")),
    )?;
    poll_until("the backends to listen", Duration::from_secs(5), || {
        backend.output().contains("listening") && sink.output().contains("listening")
    })?;
    let client = w.users[0].spawn(
        &[
            "python3",
            "-c",
            testkit::scripts::PACED_CLIENT,
            &size.to_string(),
            &(2u64 << 20).to_string(),
        ],
        &dir.join(format!("client-{k}.log")),
    )?;
    let udp = w.users[0].spawn(
        &["python3", "-c", UDP_SOURCE, "12000"],
        &dir.join(format!("udp-source-{k}.log")),
    )?;
    let np = bin("netprobe");
    let storm = w.users[0].spawn(
        &[
            np.to_str().context("netprobe path")?,
            "connect-count",
            "10.0.0.200:9000",
            "8",
            "2",
        ],
        &dir.join(format!("storm-{k}.log")),
    )?;
    poll_until("the stream to start", Duration::from_secs(5), || {
        client.output().contains("connected")
    })?;
    std::thread::sleep(Duration::from_secs(2));
    if std::env::var_os("FAILOVER_DEBUG").is_some() {
        for (i, n) in c.nodes.iter().enumerate() {
            let m = |name: &str, label: Option<&str>| n.metric(name, label).unwrap_or(-1.0);
            eprintln!(
                "before the kill, node {i}: flows {} inserted {} updated {} ignored {} refused {} sent {} received {}",
                m("vpcep_conntrack_flows", None),
                m(
                    "vpcep_replication_events_applied_total",
                    Some("outcome=\"inserted\"")
                ),
                m(
                    "vpcep_replication_events_applied_total",
                    Some("outcome=\"updated\"")
                ),
                m(
                    "vpcep_replication_events_applied_total",
                    Some("outcome=\"ignored\"")
                ),
                m(
                    "vpcep_replication_events_applied_total",
                    Some("outcome=\"refused\"")
                ),
                m("vpcep_replication_events_sent_total", None),
                m("vpcep_replication_datagrams_received_total", None),
            );
        }
    }
    c.nodes[o].kill_daemon();
    let mut answer = Value::Null;
    let done = poll_until("the stream to end", Duration::from_secs(60), || {
        answer = last_json(&client.output());
        answer.get("sha256").is_some()
    });
    let at_backend = last_json(&backend.output());
    poll_until("the UDP sink to count", Duration::from_secs(20), || {
        sink.output().lines().count() >= 2 && udp.output().lines().count() >= 1
    })?;
    poll_until("the storm to end", Duration::from_secs(20), || {
        storm.output().lines().count() >= 1
    })?;
    let received: u64 = sink
        .output()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let mut st = storm.output();
    st = st.lines().last().unwrap_or_default().to_string();
    let mut words = st.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
    let (storm_ok, storm_failed) = (words.next().unwrap_or(0), words.next().unwrap_or(0));
    let complete = done.is_ok()
        && at_backend["sha256"] == answer["sha256"]
        && at_backend["bytes"].as_u64() == Some(size);
    let got = at_backend["bytes"].as_u64().unwrap_or(0);
    if !complete {
        let n = &c.nodes[1 - o];
        let m = |name: &str, label: Option<&str>| n.metric(name, label).unwrap_or(-1.0);
        eprintln!(
            "incomplete: the new owner applied {} inserted {} updated {} closed {} refused, revoked {}, resets {}, no_flow {}; client {:?}",
            m(
                "vpcep_replication_events_applied_total",
                Some("outcome=\"inserted\"")
            ),
            m(
                "vpcep_replication_events_applied_total",
                Some("outcome=\"updated\"")
            ),
            m(
                "vpcep_replication_events_applied_total",
                Some("outcome=\"closed\"")
            ),
            m(
                "vpcep_replication_events_applied_total",
                Some("outcome=\"refused\"")
            ),
            m("vpcep_dataplane_flows_revoked_total", None),
            m("vpcep_dataplane_tcp_resets_total", None),
            m(
                "vpcep_dataplane_drops_total",
                Some("reason=\"tcp_no_flow\"")
            ),
            client.output(),
        );
    }
    let run = Run {
        complete,
        bytes_lost: if complete {
            0
        } else {
            size.saturating_sub(got)
        },
        gap_ms: at_backend["gap_ms"].as_f64().unwrap_or(f64::NAN),
        udp_lost: 12_000u64.saturating_sub(received),
        storm_ok,
        storm_failed,
    };
    // The killed node comes back as a standby for the next run.
    c.nodes[o].start_daemon()?;
    c.nodes[o].wait_live()?;
    poll_until(
        "the restarted node to stand by",
        Duration::from_secs(15),
        || owned(c, o) == 0 && owned(c, 1 - o) == 2,
    )?;
    Ok(run)
}

/// New connections a second through the endpoint of `c` (netprobe, 5 s, 2 threads; an
/// accept server must listen on the backend's port 9000).
fn connect_rate(c: &Cluster) -> Result<f64> {
    let np = bin("netprobe");
    let np = np.to_str().context("netprobe path")?;
    let out = c.nodes[0].users[0].exec(&[np, "connect-rate", "10.0.0.200:9000", "5", "2"])?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("connect-rate's output")
}

/// Start netprobe's accept server on the backend's port 9000 of `c`.
fn accept_server(c: &Cluster, dir: &std::path::Path, tag: &str) -> Result<testkit::Proc> {
    let np = bin("netprobe");
    let p = c.nodes[0].provider.spawn(
        &[
            np.to_str().context("netprobe path")?,
            "accept-server",
            "10.0.0.10:9000",
        ],
        &dir.join(format!("accept-{tag}.log")),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(p)
}

/// Where a row goes: its fields, in order.
pub type Emit<'a> = dyn Fn(&[(&str, String)]) + 'a;

/// Run the failover measures `runs` times and the replication cost once; each row goes to
/// `emit`.
///
/// # Errors
/// A cluster could not be set up, or a run's tools did not answer.
pub fn run(runs: usize, heartbeat_ms: Option<u64>, emit: &Emit<'_>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("vpcep-failoverbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut c = cluster(true, heartbeat_ms)?;
    // The accept server of the storm, for every run.
    let accept = accept_server(&c, &dir, "on")?;
    let mut all = Vec::new();
    for k in 0..runs {
        let started = Instant::now();
        let r = one_run(&mut c, &dir, k)?;
        eprintln!(
            "failover run {k}: complete {} gap {} ms, UDP lost {}, storm {} ok {} failed ({:?})",
            r.complete,
            r.gap_ms,
            r.udp_lost,
            r.storm_ok,
            r.storm_failed,
            started.elapsed()
        );
        all.push(r);
    }
    let gaps: Vec<f64> = all.iter().map(|r| r.gap_ms).collect();
    emit(&[
        ("measure", js("failover_stream")),
        ("runs", runs.to_string()),
        ("heartbeat_ms", heartbeat_ms.unwrap_or(50).to_string()),
        (
            "complete",
            all.iter().filter(|r| r.complete).count().to_string(),
        ),
        (
            "bytes_lost",
            all.iter().map(|r| r.bytes_lost).sum::<u64>().to_string(),
        ),
        ("gap_p50_ms", number(percentile(gaps.clone(), 0.5))),
        ("gap_p99_ms", number(percentile(gaps, 0.99))),
        ("target_gap_p50_ms", "500".into()),
        ("target_gap_p99_ms", "1000".into()),
    ]);
    let udp: Vec<f64> = all.iter().map(|r| r.udp_lost as f64).collect();
    emit(&[
        ("measure", js("failover_udp")),
        ("runs", runs.to_string()),
        ("heartbeat_ms", heartbeat_ms.unwrap_or(50).to_string()),
        ("datagrams_per_second", "1000".into()),
        ("lost_median", format!("{:.0}", median(udp.clone()))),
        (
            "lost_max",
            format!("{:.0}", udp.iter().copied().fold(0.0, f64::max)),
        ),
        ("target_lost", "500".into()),
    ]);
    emit(&[
        ("measure", js("failover_storm")),
        ("runs", runs.to_string()),
        (
            "connections_ok",
            all.iter().map(|r| r.storm_ok).sum::<u64>().to_string(),
        ),
        (
            "connections_failed",
            all.iter().map(|r| r.storm_failed).sum::<u64>().to_string(),
        ),
    ]);
    let on = connect_rate(&c)?;
    drop(accept);
    drop(c);
    let off_cluster = cluster(false, None)?;
    let accept = accept_server(&off_cluster, &dir, "off")?;
    let off = connect_rate(&off_cluster)?;
    drop(accept);
    drop(off_cluster);
    emit(&[
        ("measure", js("replication_cost")),
        ("connections_per_second_on", format!("{on:.0}")),
        ("connections_per_second_off", format!("{off:.0}")),
        ("ratio", format!("{:.2}", on / off)),
        ("target_ratio", "0.8".into()),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
