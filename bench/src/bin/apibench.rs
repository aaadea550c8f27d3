//! Control-plane benchmark: signed API throughput (reads, durable writes), the time for one
//! accept to be published with 100 k endpoints in the store, and restart time with them.
//!
//! `cargo run --release -p bench --bin apibench -- --json` prints one JSON object per
//! measure. The daemon runs in-process on loopback with a fresh data directory; clients are
//! the project's signing client on OS threads, one keep-alive connection each.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bench::daemon::{PROVIDER, USER, call, pending_endpoint, start};
use bench::{js, json_line, median, percentile, rate};
use control::client::Client;
use control::config::{AttachmentConfig, DaemonConfig};
use control::daemon::Running;
use control::model::EndpointId;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json_out = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let endpoints: usize = if quick { 2_000 } else { 100_000 };
    let secs = Duration::from_secs(if quick { 1 } else { 5 });
    let emit = |fields: &[(&str, String)]| {
        if json_out {
            println!("{}", json_line(fields));
        } else {
            println!(
                "{}",
                fields
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    };

    let dir =
        std::env::temp_dir().join(format!("vpcep-apibench-{}", uuid::Uuid::new_v4().simple()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut cfg = DaemonConfig {
        data_dir: dir.clone(),
        api_listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        ..DaemonConfig::default()
    };
    cfg.quotas.endpoint = endpoints + 10_000;
    // Throughput is the measure here: no per-project rate limit in the way.
    cfg.api.rate_per_sec = 1_000_000;
    cfg.api.rate_burst = 1_000_000;
    // Inventory first, then attach both VPCs so the compiler has real work to do.
    let running = start(&rt, &cfg);
    let url = format!("http://{}", running.api_addr);
    let p = Client::new(&url, PROVIDER.0, PROVIDER.1, PROVIDER.3);
    let u = Client::new(&url, USER.0, USER.1, USER.3);
    let pvpc = call(
        &p,
        "POST",
        "/vpcs",
        Some(json!({"vpc": {"cidr": "10.0.0.0/16"}})),
    )["vpc"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let psub = call(
        &p,
        "POST",
        "/subnets",
        Some(json!({"subnet": {"vpc_id": pvpc, "cidr": "10.0.0.0/24"}})),
    )["subnet"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let port = call(
        &p,
        "POST",
        "/ports",
        Some(json!({"port": {"subnet_id": psub, "server_type": "VM", "ip": "10.0.0.10"}})),
    )["port"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let svc = call(
        &p,
        "POST",
        "/vpc-endpoint-services",
        Some(json!({"vpc_id": pvpc, "port_id": port, "server_type": "VM",
        "ports": [{"client_port": 8080, "server_port": 80}]})),
    )["id"]
        .as_str()
        .expect("id")
        .to_string();
    call(
        &p,
        "POST",
        &format!("/vpc-endpoint-services/{svc}/permissions/action"),
        Some(json!({"permissions": ["*"], "action": "add"})),
    );
    let uvpc = call(
        &u,
        "POST",
        "/vpcs",
        Some(json!({"vpc": {"cidr": "10.0.0.0/8"}})),
    )["vpc"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let usub = call(
        &u,
        "POST",
        "/subnets",
        Some(json!({"subnet": {"vpc_id": uvpc, "cidr": "10.0.0.0/12"}})),
    )["subnet"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    rt.block_on(running.shutdown());
    cfg.attachments = vec![
        AttachmentConfig::new(
            "user0".to_string().try_into().expect("an interface name"),
            uvpc.clone(),
        ),
        AttachmentConfig::new(
            "prov0".to_string().try_into().expect("an interface name"),
            pvpc.clone(),
        ),
    ];
    let running = start(&rt, &cfg);
    let url = format!("http://{}", running.api_addr);
    let clients: Vec<(Client, Client)> = (0..4)
        .map(|_| {
            (
                Client::new(&url, PROVIDER.0, PROVIDER.1, PROVIDER.3),
                Client::new(&url, USER.0, USER.1, USER.3),
            )
        })
        .collect();

    // Reads: show the service (signed, verified, rendered).
    for threads in [1, 4] {
        let r = rate(threads, secs, |t, _| {
            call(
                &clients[t].0,
                "GET",
                &format!("/vpc-endpoint-services/{svc}"),
                None,
            );
        });
        emit(&[
            ("measure", js("api_reads")),
            ("threads", threads.to_string()),
            ("per_second", format!("{r:.0}")),
            ("unit", js("req/s")),
            ("target", "5000".into()),
        ]);
    }
    // Writes: create an endpoint (durable before the answer).
    for threads in [1, 4] {
        let r = rate(threads, secs, |t, _| {
            call(
                &clients[t].1,
                "POST",
                "/vpc-endpoints",
                Some(json!({"endpoint_service_id": svc, "vpc_id": uvpc, "subnet_id": usub})),
            );
        });
        emit(&[
            ("measure", js("api_writes_durable")),
            ("threads", threads.to_string()),
            ("per_second", format!("{r:.0}")),
            ("unit", js("req/s")),
            ("target", "1000".into()),
        ]);
    }

    // Fill to `endpoints` in bulk (one transaction per 10 k), all pending.
    let have = running.registry.read().endpoints.len();
    let now = chrono::Utc::now().timestamp();
    let mut next_ip = 0x0a08_0000u32; // 10.8.0.0 upwards: clear of the API-created ones
    let mut batch = Vec::new();
    for i in have..endpoints {
        next_ip += 1;
        batch.push(pending_endpoint(
            (svc.as_str(), uvpc.as_str(), usub.as_str()),
            next_ip,
            1_000_000 + i as u64,
            now,
        ));
        if batch.len() == 10_000 {
            running
                .registry
                .import_endpoints(std::mem::take(&mut batch))
                .expect("import");
        }
    }
    if !batch.is_empty() {
        running.registry.import_endpoints(batch).expect("import");
    }
    let wait_applied = |r: &Running, rev: u64, deadline: Duration| {
        let t = Instant::now();
        while r.push.applied_revision.load(Ordering::Acquire) < rev {
            assert!(t.elapsed() < deadline, "pusher did not catch up");
            std::hint::spin_loop();
        }
    };
    wait_applied(
        &running,
        running.registry.revision(),
        Duration::from_secs(120),
    );
    let total = running.registry.read().endpoints.len();

    // One accept (or reject) at a time, through the API: from sending the request to the
    // table generation that contains it being published.
    let ids: Vec<EndpointId> = running
        .registry
        .read()
        .endpoints
        .keys()
        .take(if quick { 50 } else { 400 })
        .cloned()
        .collect();
    let provider = &clients[0].0;
    let mut live_ms = Vec::new();
    let mut api_ms = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let action = if i % 2 == 0 { "receive" } else { "reject" };
        let t0 = Instant::now();
        call(
            provider,
            "POST",
            &format!("/vpc-endpoint-services/{svc}/connections/action"),
            Some(json!({"action": action, "endpoints": [id]})),
        );
        api_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        wait_applied(
            &running,
            running.registry.revision(),
            Duration::from_secs(5),
        );
        live_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    emit(&[
        ("measure", js("accept_live")),
        ("endpoints", total.to_string()),
        ("p50_ms", format!("{:.3}", percentile(live_ms.clone(), 0.5))),
        ("p99_ms", format!("{:.3}", percentile(live_ms, 0.99))),
        ("api_p50_ms", format!("{:.3}", median(api_ms))),
        ("unit", js("ms")),
        ("target_p99_ms", "5".into()),
    ]);

    // Restart: from start to API answering and tables published for every endpoint.
    rt.block_on(running.shutdown());
    let t0 = Instant::now();
    let running = start(&rt, &cfg);
    let url = format!("http://{}", running.api_addr);
    let c = Client::new(&url, PROVIDER.0, PROVIDER.1, PROVIDER.3);
    call(&c, "GET", "/quotas", None);
    let api_ms = t0.elapsed().as_secs_f64() * 1e3;
    wait_applied(
        &running,
        running.registry.revision(),
        Duration::from_secs(60),
    );
    let published_ms = t0.elapsed().as_secs_f64() * 1e3;
    let addrs = running.push.endpoint_addresses.load(Ordering::Relaxed);
    emit(&[
        ("measure", js("restart")),
        ("endpoints", total.to_string()),
        ("api_answering_ms", format!("{api_ms:.1}")),
        ("tables_published_ms", format!("{published_ms:.1}")),
        ("endpoint_addresses", addrs.to_string()),
        ("unit", js("ms")),
        ("target_ms", "2000".into()),
    ]);
    rt.block_on(running.shutdown());
    let _ = std::fs::remove_dir_all(&dir);
}
