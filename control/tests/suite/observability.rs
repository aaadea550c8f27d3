//! Seeing into the service: the daemon's JSON log and its audit log name an API request by
//! the id its answer carries (`X-Request-Id`); `log_format` takes only `text` or `json`;
//! and every series the Grafana dashboard and the Prometheus alerts query is one the
//! daemon exports.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use control::client::Client;
use serde_json::{Value, json};

use crate::common::{PROVIDER, TempDir, daemon_files, free_port, poll_until, temp_dir};

/// The per-endpoint and per-service series (`control/src/meters`): declared on every scrape,
/// with values for the endpoints that exist (their values are checked end to end in
/// `tests/tests/netns/meters.rs`).
const PER_ENDPOINT_SERIES: &[&str] = &[
    "vpcep_endpoint_packets_total",
    "vpcep_endpoint_bytes_total",
    "vpcep_endpoint_flows_opened_total",
    "vpcep_endpoint_active_flows",
    "vpcep_endpoint_resets_total",
    "vpcep_endpoint_drops_total",
    "vpcep_service_packets_total",
    "vpcep_service_bytes_total",
    "vpcep_service_flows_opened_total",
    "vpcep_service_active_flows",
    "vpcep_service_drops_total",
];

/// Series the daemon registers only with an attachment (a real interface): the DNS
/// resolvers' counters. Each must still be named in the daemon's source, so a rename
/// fails here too.
const NEEDS_AN_ATTACHMENT: &[&str] = &[
    "vpcep_dns_queries_total",
    "vpcep_dns_dropped_total",
    "vpcep_dns_penalties_total",
    "vpcep_flowlog_events_lost_total",
    "vpcep_flowlog_write_failures_total",
    "vpcep_flowlog_lines_total",
];

/// `vpcepd` as a child process, killed (by its pid) when dropped, also when a test fails.
struct Daemon {
    child: Child,
    api: u16,
    admin: u16,
    dir: TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Start `vpcepd` with JSON logs at debug level for the API into `dir/stderr.log`.
    fn start(tag: &str) -> Self {
        let dir = temp_dir(tag);
        let (api, admin) = (free_port(), free_port());
        daemon_files(
            &dir,
            &format!("127.0.0.1:{api}"),
            &format!("127.0.0.1:{admin}"),
            "log_format = \"json\"\n",
        );
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vpcepd"))
            .arg("--config")
            .arg(dir.join("vpcepd.toml"))
            .env("RUST_LOG", "info,control::api=debug")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let daemon = Self {
            child,
            api,
            admin,
            dir,
        };
        poll_until("vpcepd to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
        })
        .unwrap();
        daemon
    }

    fn client(&self, sk: &str) -> Client {
        Client::new(
            &format!("http://127.0.0.1:{}", self.api),
            PROVIDER.0,
            sk,
            PROVIDER.3,
        )
    }

    fn admin(&self, method: &str, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.admin);
        let resp = match method {
            "POST" => ureq::post(&url).send_empty(),
            _ => ureq::get(&url).call(),
        };
        resp.unwrap().into_body().read_to_string().unwrap()
    }

    /// The log's JSON lines so far (a line being written may be cut: it is skipped).
    fn log_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("stderr.log"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Wait for the debug line that closes request `id`, and return it.
fn served_line(d: &Daemon, id: &str) -> Value {
    let mut found = None;
    poll_until("the request's log line", Duration::from_secs(10), || {
        found = d
            .log_lines()
            .into_iter()
            .find(|l| l["fields"]["message"] == "request served" && l["span"]["request_id"] == id);
        found.is_some()
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: no line for request {id} in\n{}",
            std::fs::read_to_string(d.dir.join("stderr.log")).unwrap()
        )
    });
    found.unwrap()
}

/// Wait for request `id`'s audit entry, and return it.
fn audit_entry(d: &Daemon, id: &str) -> control::audit::AuditEntry {
    let mut found = None;
    poll_until("the request's audit entry", Duration::from_secs(10), || {
        found = control::audit::read(&d.dir.join("data"))
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.request_id == id);
        found.is_some()
    })
    .unwrap();
    found.unwrap()
}

#[test]
fn a_request_id_links_the_answer_its_audit_entry_and_its_log_lines() {
    let d = Daemon::start("obs-logs");
    let c = d.client(PROVIDER.1);
    let path = c.path("/vpcs");

    // A write the handler refuses (after authentication): its error carries the same id
    // as its audit entry and its log line, not an id of its own.
    let (status, body, id) = c
        .raw_with_id("POST", &path, &[], Some(&json!({"vpc": {"cidr": "nope"}})))
        .unwrap();
    assert_eq!(status, 400, "{body}");
    let failed = id.expect("an X-Request-Id");
    assert_eq!(body["request_id"], failed.as_str(), "{body}");
    let line = served_line(&d, &failed);
    assert_eq!(line["level"], "DEBUG");
    assert_eq!(line["fields"]["status"], 400);
    assert!(line["fields"]["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(line["span"]["method"], "POST");
    assert_eq!(line["span"]["path"], path.as_str());
    assert_eq!(line["span"]["project"], PROVIDER.3);
    let entry = audit_entry(&d, &failed);
    assert_eq!(
        (entry.status, entry.operation.as_str()),
        (400, &*format!("POST {path}"))
    );

    // A write that succeeds.
    let (status, body, id) = c
        .raw_with_id(
            "POST",
            &path,
            &[],
            Some(&json!({"vpc": {"cidr": "10.0.0.0/16"}})),
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let created = id.expect("an X-Request-Id");
    assert_ne!(created, failed);
    assert_eq!(served_line(&d, &created)["fields"]["status"], 200);
    let entry = audit_entry(&d, &created);
    assert_eq!(entry.result, "OK");
    assert_eq!(entry.resource_id.as_deref(), body["vpc"]["id"].as_str());

    // A request refused before the caller is known still has its line, without a project.
    let (status, _, id) = d
        .client("not-the-secret")
        .raw_with_id("GET", &path, &[], None)
        .unwrap();
    assert_eq!(status, 401);
    let line = served_line(&d, &id.unwrap());
    assert_eq!(line["fields"]["status"], 401);
    assert!(line["span"].get("project").is_none(), "{line}");
}

#[test]
fn log_format_is_text_or_json_and_nothing_else() {
    let dir = temp_dir("obs-fmt");
    daemon_files(&dir, "127.0.0.1:0", "127.0.0.1:0", "");
    let check = |format: &str| {
        let cfg = dir.join("vpcepd.toml");
        std::fs::write(
            &cfg,
            format!(
                "credentials = \"{}\"\nlog_format = \"{format}\"\n",
                dir.join("credentials.toml").display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vpcepd"))
            .arg("--check-config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(check("json").0, Some(0));
    assert_eq!(check("text").0, Some(0));
    let (code, err) = check("yaml");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("log_format") && err.contains("`json`") && err.contains("`text`"),
        "{err}"
    );
}

/// The `vpcep_*` names in `text` (a PromQL expression, a whole file).
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while let Some(at) = text[i..].find("vpcep_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if start == 0 || !word(bytes[start - 1]) {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Every query of the dashboard: its panels' targets and its template variables.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr" | "query", Value::String(q)) => out.push(q.clone()),
                    ("query", Value::Object(q)) => {
                        if let Some(Value::String(q)) = q.get("query") {
                            out.push(q.clone());
                        }
                    }
                    _ => dashboard_queries(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| dashboard_queries(x, out)),
        _ => {}
    }
}

/// The value of `series` (name and labels as the exporter writes them) in a scrape.
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

/// Every `.rs` file's text under `dir`.
fn sources(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
}

#[test]
fn every_series_of_the_dashboard_and_the_alerts_is_exported() {
    let d = Daemon::start("obs-series");
    // Traffic that makes the lazily registered series appear: writes (requests, a push),
    // a refused signature, a reload that works and one that is refused.
    let c = d.client(PROVIDER.1);
    let vpc = c
        .call(
            "POST",
            &c.path("/vpcs"),
            &[],
            Some(&json!({"vpc": {"cidr": "10.0.0.0/16"}})),
        )
        .unwrap();
    assert!(vpc["vpc"]["id"].is_string());
    assert!(
        d.client("wrong")
            .call("GET", &c.path("/vpcs"), &[], None)
            .is_err()
    );
    assert!(d.admin("POST", "/reload").contains("revision"));
    let cfg = d.dir.join("vpcepd.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}wrokers = 2\n")).unwrap();
    let refused = ureq::post(&format!("http://127.0.0.1:{}/reload", d.admin)).send_empty();
    assert!(refused.is_err(), "a bad file reloads");
    std::fs::write(&cfg, good).unwrap();

    let mut scrape = String::new();
    poll_until(
        "the tables to reflect the store",
        Duration::from_secs(10),
        || {
            scrape = d.admin("GET", "/metrics");
            let revision = value(&scrape, "vpcep_store_revision");
            revision.is_some_and(|r| r > 0.0)
                && revision == value(&scrape, "vpcep_applied_revision")
        },
    )
    .unwrap();
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect();
    // The values say what happened: two API requests (one refused), one reload of each
    // kind, no attachment, no worker.
    for (series, want) in [
        ("vpcep_api_request_seconds_count", 2.0),
        ("vpcep_api_requests_total", 1.0),
        ("vpcep_api_auth_failures_total", 1.0),
        ("vpcep_api_throttled_total", 0.0),
        ("vpcep_config_reloads_total{result=\"ok\"}", 1.0),
        ("vpcep_config_reloads_total{result=\"failed\"}", 1.0),
        ("vpcep_attachments{state=\"up\"}", 0.0),
        ("vpcep_workers", 0.0),
        ("vpcep_workers_behind", 0.0),
        ("vpcep_conntrack_capacity", 0.0),
        ("vpcep_store_up", 1.0),
    ] {
        assert_eq!(value(&scrape, series), Some(want), "{series} in\n{scrape}");
    }
    // The series this check leans on are there (an empty scrape would pass anything).
    for name in [
        "vpcep_api_request_seconds_bucket",
        "vpcep_push_seconds_count",
        "vpcep_api_requests_total",
        "vpcep_api_auth_failures_total",
        "vpcep_config_reloads_total",
        "vpcep_dataplane_forwarded_total",
        "vpcep_dataplane_drops_total",
        "vpcep_conntrack_capacity",
        "vpcep_store_up",
        "vpcep_applied_revision",
        "vpcep_workers_behind",
        "vpcep_attachments",
    ] {
        assert!(
            exported.contains(name),
            "{name} is not exported: {exported:?}"
        );
    }
    let mut src = String::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut src);
    for name in NEEDS_AN_ATTACHMENT {
        assert!(
            src.contains(&format!("\"{name}\"")),
            "{name} is named nowhere in control/src"
        );
    }
    // The per-endpoint and per-service series have values only once an endpoint carries
    // traffic (tests/tests/netns/meters.rs checks those); the daemon declares them always.
    let declared: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(String::from)
        .collect();
    for name in PER_ENDPOINT_SERIES {
        assert!(
            declared.contains(*name),
            "{name} is not declared on /metrics"
        );
    }
    let known =
        |n: &str| exported.contains(n) || declared.contains(n) || NEEDS_AN_ATTACHMENT.contains(&n);

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/vpcep.json")).unwrap())
            .unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    let alerts = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    for (what, text, least) in [
        ("the dashboard", queries.join("\n"), 20),
        ("the alert rules", alerts, 8),
    ] {
        let used = series_names(&text);
        assert!(used.len() >= least, "{what} queries only {used:?}");
        let unknown: Vec<_> = used.iter().filter(|n| !known(n)).collect();
        assert!(
            unknown.is_empty(),
            "{what} queries series the daemon does not export: {unknown:?}"
        );
    }
}

#[test]
fn series_names_are_found_whole() {
    let names = series_names(
        "sum(rate(vpcep_a_total[5m])) / on() vpcep_b{x=\"vpcep_c\"} + my_vpcep_d + vpcep_e:f",
    );
    let want: BTreeSet<String> = ["vpcep_a_total", "vpcep_b", "vpcep_c", "vpcep_e:f"]
        .map(String::from)
        .into();
    assert_eq!(names, want);
}
