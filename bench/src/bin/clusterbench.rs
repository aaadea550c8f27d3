//! Cluster benchmark: vpcepd nodes on one etcd, with 100 k endpoints in it. Measures writes
//! per second through etcd (one node, and spread over the nodes, which race), the time from
//! a change's API answer until every node has published tables with it (p50, p99), a
//! node's restart until its tables are published, and the failover of a VPC's ownership
//! when its owner dies (lease TTL 3 s, the default, and 2 s); the same writes on redb in the
//! same run, for comparison. As root it first measures a replicated pair's failover under
//! traffic in network namespaces (`bench::failover`: rows `failover_stream`,
//! `failover_udp`, `failover_storm`, `replication_cost`; `--failover-only` for those alone,
//! `--no-failover` to skip them; it builds vpcepd and netprobe first unless `--no-build`).
//!
//! `cargo run --release -p bench --bin clusterbench -- --json` prints one JSON object per
//! measure (`--quick`: 2 k endpoints, 1 s per rate). etcd (apt `etcd-server`) runs on host
//! loopback ports with a temporary data directory, started and stopped by the tests'
//! harness; the daemons run in-process on loopback, with their attachments configured (so
//! the pusher compiles for them) but no packet workers: "live" is "published", which a
//! worker loads at its next batch (apibench's definition).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bench::daemon::{PROVIDER, USER, call, pending_endpoint, start};
use bench::{js, json_line, median, percentile, rate};
use control::client::Client;
use control::config::{AttachmentConfig, DaemonConfig};
use control::daemon::Running;
use control::model::{Endpoint, EndpointId};
use control::store::owners::{Election, OwnerEvent};
use control::store::{Compare, EtcdConfig, EtcdStore, Op, Store, StoreEngine, Txn};
use serde_json::{Value, json};
use testkit::etcd::Etcd;

fn id(v: &Value) -> String {
    v.as_str().expect("an id").to_string()
}

/// The inventory the writes need: a provider service open to everyone, a user VPC.
struct Inventory {
    pvpc: String,
    svc: String,
    uvpc: String,
    usub: String,
}

fn inventory(url: &str) -> Inventory {
    let p = Client::new(url, PROVIDER.0, PROVIDER.1, PROVIDER.3);
    let u = Client::new(url, USER.0, USER.1, USER.3);
    let body = |k: &str, v: Value| Some(json!({ k: v }));
    let pvpc = id(&call(
        &p,
        "POST",
        "/vpcs",
        body("vpc", json!({"cidr": "10.0.0.0/16"})),
    )["vpc"]["id"]);
    let psub = id(&call(
        &p,
        "POST",
        "/subnets",
        body("subnet", json!({"vpc_id": pvpc, "cidr": "10.0.0.0/24"})),
    )["subnet"]["id"]);
    let port = id(&call(
        &p,
        "POST",
        "/ports",
        body(
            "port",
            json!({"subnet_id": psub, "server_type": "VM", "ip": "10.0.0.10"}),
        ),
    )["port"]["id"]);
    let svc = id(&call(
        &p,
        "POST",
        "/vpc-endpoint-services",
        Some(json!({"vpc_id": pvpc, "port_id": port, "server_type": "VM",
        "ports": [{"client_port": 8080, "server_port": 80}]})),
    )["id"]);
    call(
        &p,
        "POST",
        &format!("/vpc-endpoint-services/{svc}/permissions/action"),
        Some(json!({"permissions": ["*"], "action": "add"})),
    );
    let uvpc = id(&call(
        &u,
        "POST",
        "/vpcs",
        body("vpc", json!({"cidr": "10.0.0.0/8"})),
    )["vpc"]["id"]);
    let usub = id(&call(
        &u,
        "POST",
        "/subnets",
        body("subnet", json!({"vpc_id": uvpc, "cidr": "10.0.0.0/12"})),
    )["subnet"]["id"]);
    Inventory {
        pvpc,
        svc,
        uvpc,
        usub,
    }
}

/// Endpoint creates per second through `urls` (one client per thread, thread `t` on
/// `urls[t % len]`).
fn writes(urls: &[String], inv: &Inventory, threads: usize, dur: Duration) -> f64 {
    let clients: Vec<Client> = (0..threads)
        .map(|t| Client::new(&urls[t % urls.len()], USER.0, USER.1, USER.3))
        .collect();
    rate(threads, dur, |t, _| {
        call(
            &clients[t],
            "POST",
            "/vpc-endpoints",
            Some(
                json!({"endpoint_service_id": inv.svc, "vpc_id": inv.uvpc, "subnet_id": inv.usub}),
            ),
        );
    })
}

fn base_config(dir: &std::path::Path, endpoints: usize) -> DaemonConfig {
    let mut cfg = DaemonConfig {
        data_dir: dir.to_path_buf(),
        api_listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        ..DaemonConfig::default()
    };
    cfg.quotas.endpoint = endpoints + 100_000;
    cfg.api.rate_per_sec = 1_000_000;
    cfg.api.rate_burst = 1_000_000;
    cfg
}

/// Wait until every node has published tables of at least `rev`.
fn wait_all(nodes: &[Running], rev: u64, deadline: Duration) {
    let t = Instant::now();
    for n in nodes {
        while n.push.applied_revision.load(Ordering::Acquire) < rev {
            assert!(t.elapsed() < deadline, "a node did not catch up");
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn pending(inv: &Inventory, ip: u32, marker: u64, now: i64) -> Endpoint {
    pending_endpoint((&inv.svc, &inv.uvpc, &inv.usub), ip, marker, now)
}

/// One side of an election: its own etcd connection and runtime (as a process has), its
/// election, and what it is told it owns.
struct Side {
    store: Arc<EtcdStore>,
    election: Election,
    owned: std::sync::mpsc::Receiver<BTreeSet<String>>,
}

impl Side {
    fn start(etcd: &Etcd, name: &str, ttl_secs: u64) -> Self {
        let cfg = EtcdConfig {
            endpoints: vec![etcd.url.clone()],
            prefix: "/failover-bench/".into(),
            timeout_ms: 1000,
            lease_ttl_secs: ttl_secs,
            ..EtcdConfig::default()
        };
        let store = Arc::new(EtcdStore::connect(&cfg).expect("etcd"));
        let (tx, owned) = std::sync::mpsc::channel();
        let election = Election::start(
            &store,
            name,
            Duration::from_secs(ttl_secs),
            Box::new(|| vec!["user".to_string(), "provider".to_string()]),
            Box::new(move |event| {
                // No dataplane here: published as soon as told; handovers are not counted.
                if let OwnerEvent::Owned { vpcs, published } = event {
                    let _ = tx.send(vpcs);
                    let _ = published.send(());
                }
            }),
        );
        Self {
            store,
            election,
            owned,
        }
    }

    /// Wait until told it owns `n` VPCs.
    fn wait_owns(&self, n: usize, within: Duration) {
        let t = Instant::now();
        loop {
            let left = within.saturating_sub(t.elapsed());
            match self.owned.recv_timeout(left) {
                Ok(o) if o.len() == n => return,
                Ok(_) => {}
                Err(_) => panic!("not owning {n} VPCs after {within:?}"),
            }
        }
    }
}

/// Failover of the election, `samples` times: the owner of two VPCs dies (its runtime and
/// connection dropped: its lease is never revoked, as under kill -9) at a random point of
/// its renewal period; milliseconds until the standby is told it owns them. (The netns
/// test `tests/tests/netns/failover.rs` adds the publication and the gratuitous ARP to a real
/// client: tens of milliseconds more.)
fn failover(rt: &tokio::runtime::Runtime, etcd: &Etcd, ttl_secs: u64, samples: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..samples {
        let a = Side::start(etcd, &format!("a{ttl_secs}-{i}"), ttl_secs);
        a.wait_owns(2, Duration::from_secs(5));
        let b = Side::start(etcd, &format!("b{ttl_secs}-{i}"), ttl_secs);
        b.wait_owns(0, Duration::from_secs(5));
        // Anywhere in the owner's renewal period (a third of the TTL).
        let phase = uuid::Uuid::new_v4().as_u128() % u128::from(ttl_secs * 1000 / 3);
        std::thread::sleep(Duration::from_millis(u64::try_from(phase).unwrap_or(0)));
        let Side {
            store, election, ..
        } = a;
        drop(store); // the runtime goes, the election's task with it
        drop(election);
        let killed = Instant::now();
        b.wait_owns(2, Duration::from_secs(ttl_secs + 3));
        out.push(killed.elapsed().as_secs_f64() * 1e3);
        rt.block_on(b.election.resign());
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json_out = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let endpoints: usize = if quick { 2_000 } else { 100_000 };
    let secs = Duration::from_secs(if quick { 1 } else { 5 });
    let n_nodes = 3;
    let emit = |fields: &[(&str, String)]| {
        if json_out {
            println!("{}", json_line(fields));
        } else {
            let line: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("{}", line.join("  "));
        }
    };
    // As root: the failover of a replicated pair under traffic (network namespaces), alone
    // with `--failover-only`.
    let failover_only = args.iter().any(|a| a == "--failover-only");
    if failover_only || (testkit::is_root() && !args.iter().any(|a| a == "--no-failover")) {
        if !args.iter().any(|a| a == "--no-build")
            && let Err(e) = bench::build_tools()
        {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
        let runs = if quick { 2 } else { 5 };
        // `--heartbeat-ms N`: the nodes' etcd.heartbeat_ms (default 50).
        let heartbeat = args
            .iter()
            .position(|a| a == "--heartbeat-ms")
            .and_then(|i| args.get(i + 1)?.parse().ok());
        if let Err(e) = bench::failover::run(runs, heartbeat, &emit) {
            eprintln!("failover measures: {e:#}");
            std::process::exit(1);
        }
        if failover_only {
            return;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let scratch = std::env::temp_dir().join(format!(
        "vpcep-clusterbench-{}",
        uuid::Uuid::new_v4().simple()
    ));

    // `--writes-only`: the etcd write rates alone (for profiles and A/B runs).
    let writes_only = args.iter().any(|a| a == "--writes-only");
    // redb first, for comparison: the same writes on one node.
    if !writes_only {
        let cfg = base_config(&scratch.join("redb"), endpoints);
        let node = start(&rt, &cfg);
        let url = format!("http://{}", node.api_addr);
        let inv = inventory(&url);
        for threads in [1, 4] {
            let r = writes(std::slice::from_ref(&url), &inv, threads, secs);
            emit(&[
                ("measure", js("writes")),
                ("store", js("redb")),
                ("nodes", "1".into()),
                ("threads", threads.to_string()),
                ("per_second", format!("{r:.0}")),
                ("unit", js("req/s")),
            ]);
        }
        rt.block_on(node.shutdown());
    }

    // The cluster.
    let etcd = Etcd::start().expect("etcd starts (apt-get install etcd-server)");
    let cfgs: Vec<DaemonConfig> = (0..n_nodes)
        .map(|i| {
            let mut c = base_config(&scratch.join(format!("node{i}")), endpoints);
            c.store = StoreEngine::Etcd;
            c.etcd.endpoints = vec![etcd.url.clone()];
            c.etcd.node_name = Some(format!("node-{i}"));
            c
        })
        .collect();
    // The store's own ceiling on this machine: transactions of one small put each, from 8
    // threads at once, straight to etcd (no daemon, no rules, no watchers).
    {
        let raw = EtcdStore::connect(&EtcdConfig {
            endpoints: vec![etcd.url.clone()],
            prefix: "/raw/".into(),
            ..EtcdConfig::default()
        })
        .expect("connect to etcd");
        for (what, threads) in [("commit", 1), ("commit", 8), ("claim", 8), ("claim", 32)] {
            let r = rate(threads, secs, |t, i| {
                let key = format!("t{t}-{i}");
                if what == "claim" {
                    raw.claim(&key, Duration::from_secs(60)).expect("claim");
                } else {
                    raw.commit(Txn {
                        compare: Compare::Always,
                        ops: vec![Op::Put(key, b"v".to_vec())],
                    })
                    .expect("commit");
                }
            });
            emit(&[
                ("measure", js("etcd_raw")),
                ("op", js(what)),
                ("threads", threads.to_string()),
                ("per_second", format!("{r:.0}")),
                ("unit", js("txn/s")),
            ]);
        }
    }
    let first = start(&rt, &cfgs[0]);
    let inv = inventory(&format!("http://{}", first.api_addr));
    rt.block_on(first.shutdown());
    let attach = |mut c: DaemonConfig| {
        c.attachments = vec![
            AttachmentConfig::new(
                "user0".to_string().try_into().expect("an interface name"),
                inv.uvpc.clone(),
            ),
            AttachmentConfig::new(
                "prov0".to_string().try_into().expect("an interface name"),
                inv.pvpc.clone(),
            ),
        ];
        c
    };
    let cfgs: Vec<DaemonConfig> = cfgs.into_iter().map(attach).collect();
    let mut nodes: Vec<Running> = cfgs.iter().map(|c| start(&rt, c)).collect();
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://{}", n.api_addr))
        .collect();
    for (threads, spread) in [(1, 1), (4, 1), (3, n_nodes)] {
        let r = writes(&urls[..spread], &inv, threads, secs);
        emit(&[
            ("measure", js("writes")),
            ("store", js("etcd")),
            ("nodes", n_nodes.to_string()),
            ("through_nodes", spread.to_string()),
            ("threads", threads.to_string()),
            ("per_second", format!("{r:.0}")),
            ("unit", js("req/s")),
            ("target", "1000".into()),
        ]);
    }

    // The row: creates through one node, 8 clients at once (the API's writes are
    // serialized per node: each is one fsynced etcd round trip).
    let r = writes(&urls[..1], &inv, 8, secs);
    emit(&[
        ("measure", js("writes_one_node")),
        ("store", js("etcd")),
        ("threads", "8".into()),
        ("per_second", format!("{r:.0}")),
        ("unit", js("req/s")),
        ("target", "3000".into()),
    ]);
    if writes_only {
        for n in nodes {
            rt.block_on(n.shutdown());
        }
        return;
    }

    // Fill to `endpoints`, 100 per transaction (etcd's default --max-txn-ops is 128).
    let t0 = Instant::now();
    let have = nodes[0].registry.read().endpoints.len();
    let now = chrono::Utc::now().timestamp();
    let mut batch = Vec::new();
    for i in have..endpoints {
        batch.push(pending(
            &inv,
            0x0a08_0000 + u32::try_from(i).expect("fewer than 2^32 endpoints"),
            1_000_000 + i as u64,
            now,
        ));
        if batch.len() == 100 {
            nodes[0]
                .registry
                .import_endpoints(std::mem::take(&mut batch))
                .expect("import");
        }
    }
    if !batch.is_empty() {
        nodes[0].registry.import_endpoints(batch).expect("import");
    }
    let filled = nodes[0].registry.revision();
    wait_all(&nodes, filled, Duration::from_secs(300));
    let total = nodes[n_nodes - 1].registry.read().endpoints.len();
    emit(&[
        ("measure", js("bulk_import")),
        ("store", js("etcd")),
        ("endpoints", total.to_string()),
        (
            "seconds_until_live_on_all",
            format!("{:.1}", t0.elapsed().as_secs_f64()),
        ),
        ("unit", js("s")),
    ]);

    // One accept or reject at a time, through node i % n: from the API's answer until every
    // node published tables with it (and from the request, for the API's share).
    let ids: Vec<EndpointId> = nodes[0]
        .registry
        .read()
        .endpoints
        .keys()
        .take(if quick { 60 } else { 300 })
        .cloned()
        .collect();
    let providers: Vec<Client> = urls
        .iter()
        .map(|u| Client::new(u, PROVIDER.0, PROVIDER.1, PROVIDER.3))
        .collect();
    let (mut from_answer, mut from_request, mut api) = (Vec::new(), Vec::new(), Vec::new());
    for (i, id) in ids.iter().enumerate() {
        let action = if i % 2 == 0 { "receive" } else { "reject" };
        let t0 = Instant::now();
        call(
            &providers[i % n_nodes],
            "POST",
            &format!("/vpc-endpoint-services/{}/connections/action", inv.svc),
            Some(json!({"action": action, "endpoints": [id]})),
        );
        let answered = Instant::now();
        let rev = nodes[i % n_nodes].registry.revision();
        wait_all(&nodes, rev, Duration::from_secs(5));
        from_answer.push(answered.elapsed().as_secs_f64() * 1e3);
        from_request.push(t0.elapsed().as_secs_f64() * 1e3);
        api.push((answered - t0).as_secs_f64() * 1e3);
    }
    emit(&[
        ("measure", js("change_live_on_all_nodes")),
        ("nodes", n_nodes.to_string()),
        ("endpoints", total.to_string()),
        (
            "p50_ms",
            format!("{:.3}", percentile(from_answer.clone(), 0.5)),
        ),
        ("p99_ms", format!("{:.3}", percentile(from_answer, 0.99))),
        (
            "from_request_p99_ms",
            format!("{:.3}", percentile(from_request, 0.99)),
        ),
        ("api_p50_ms", format!("{:.3}", median(api))),
        ("unit", js("ms")),
        ("target_p99_ms", "100".into()),
    ]);

    // A node restarts: from start until the API answers and its tables hold everything.
    let last = nodes.pop().expect("nodes");
    rt.block_on(last.shutdown());
    let t0 = Instant::now();
    let again = start(&rt, &cfgs[n_nodes - 1]);
    let api_ms = t0.elapsed().as_secs_f64() * 1e3;
    wait_all(
        std::slice::from_ref(&again),
        nodes[0].registry.revision(),
        Duration::from_secs(60),
    );
    let published_ms = t0.elapsed().as_secs_f64() * 1e3;
    emit(&[
        ("measure", js("node_restart")),
        ("store", js("etcd")),
        (
            "endpoints",
            again.registry.read().endpoints.len().to_string(),
        ),
        ("api_answering_ms", format!("{api_ms:.1}")),
        ("tables_published_ms", format!("{published_ms:.1}")),
        (
            "endpoint_addresses",
            again
                .push
                .endpoint_addresses
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        ("unit", js("ms")),
        ("target_ms", "2000".into()),
    ]);
    for ttl_secs in [3, 2] {
        let samples = if quick { 2 } else { 6 };
        let ms = failover(&rt, &etcd, ttl_secs, samples);
        emit(&[
            ("measure", js("failover")),
            (
                "what",
                js(
                    "the owner's etcd session dies (no revoke, as kill -9) until the standby owns its VPCs",
                ),
            ),
            ("lease_ttl_secs", ttl_secs.to_string()),
            ("samples", ms.len().to_string()),
            ("p50_ms", format!("{:.0}", percentile(ms.clone(), 0.5))),
            ("max_ms", format!("{:.0}", percentile(ms, 1.0))),
            ("unit", js("ms")),
            ("target_ms", "3000".into()),
        ]);
    }
    nodes.push(again);
    for n in nodes {
        rt.block_on(n.shutdown());
    }
    drop(etcd);
    let _ = std::fs::remove_dir_all(&scratch);
}
