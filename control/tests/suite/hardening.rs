//! Issue 10 (hardening), the findings an attacker can reach over HTTP: each test sends what
//! the attack sends, byte for byte, over a raw TCP connection (so duplicate headers and
//! unsigned payload hashes go on the wire exactly as written), and fails on the code before
//! the fix.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::*;
use control::auth;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A request as it goes on the wire: every header written as given, in order.
struct Raw {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    /// A request signed by `who` over `signed_body`, with the SDK's header set (plus any
    /// `extra` headers, signed too), ready to send with [`Raw::body`] replaced if wanted.
    fn signed(
        env: &Env,
        who: (&str, &str, &str, &str),
        method: &'static str,
        rest: &str,
        signed_body: &[u8],
        extra: &[(&str, &str)],
    ) -> Self {
        let host = env.url().trim_start_matches("http://").to_string();
        let path = format!("/v1/{}{rest}", who.3);
        let date = auth::sdk_date(chrono::Utc::now());
        let mut hdrs: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            ("host".into(), host),
            ("x-project-id".into(), who.3.into()),
            ("x-sdk-date".into(), date),
        ];
        hdrs.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        hdrs.sort();
        let lookup = |n: &str| hdrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let signed: Vec<&str> = hdrs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != "x-sdk-content-sha256")
            .collect();
        let req = auth::SignedRequest {
            method,
            path: &path,
            query: "",
            header: &lookup,
            body: signed_body,
        };
        let authz = auth::authorization(&req, &signed, who.0, who.1).unwrap();
        let mut headers = hdrs.clone();
        headers.push(("authorization".into(), authz));
        Self {
            method,
            path,
            headers,
            body: signed_body.to_vec(),
        }
    }

    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// Send on a fresh connection; the status and the JSON body.
    fn send(&self, env: &Env) -> (u16, Value) {
        let mut s = TcpStream::connect(env.running().api_addr).unwrap();
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        ));
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&self.body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }
}

fn vpc_body(name: &str) -> Vec<u8> {
    format!(r#"{{"vpc": {{"name": "{name}", "cidr": "10.9.0.0/16"}}}}"#).into_bytes()
}

fn code(v: &Value) -> &str {
    v["error_code"].as_str().unwrap_or("")
}

#[test]
fn a_signed_body_cannot_be_swapped_under_its_hash_header() {
    let env = Env::new("swap");
    let a = vpc_body("a");
    let b = vpc_body("swapped");
    let hash_a = hex::encode(Sha256::digest(&a));
    // The attack: signed for body A, sent with body B and X-Sdk-Content-Sha256 = sha256(A).
    let mut attack = Raw::signed(&env, PROVIDER, "POST", "/vpcs", &a, &[]);
    attack = attack.header("x-sdk-content-sha256", &hash_a);
    attack.body = b;
    let (s, v) = attack.send(&env);
    assert_eq!((s, code(&v)), (401, "APIGW.0301"), "{v}");
    assert!(
        env.running().registry.read().vpcs.is_empty(),
        "nothing was created"
    );
    // The same header with the body it hashes is fine.
    let honest = Raw::signed(&env, PROVIDER, "POST", "/vpcs", &a, &[])
        .header("x-sdk-content-sha256", &hash_a);
    assert_eq!(honest.send(&env).0, 200);
    let m = env.running().registry.read();
    assert_eq!(
        m.vpcs.values().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
}

#[test]
fn unsigned_payload_only_when_the_config_allows_it() {
    let body = vpc_body("u");
    let send = |env: &Env| {
        Raw::signed(
            env,
            PROVIDER,
            "POST",
            "/vpcs",
            &body,
            &[("x-sdk-content-sha256", "UNSIGNED-PAYLOAD")],
        )
        .send(env)
    };
    let strict = Env::new("unsigned-off");
    let (s, v) = send(&strict);
    assert_eq!((s, code(&v)), (401, "APIGW.0301"), "{v}");
    let lax = Env::with_config("unsigned-on", |c| c.api.allow_unsigned_payload = true);
    assert_eq!(send(&lax).0, 200);
}

#[test]
fn duplicate_security_headers_are_401() {
    let env = Env::new("dup");
    let host = env.url().trim_start_matches("http://").to_string();
    let base = || Raw::signed(&env, PROVIDER, "GET", "/vpcs", b"", &[]);
    assert_eq!(base().send(&env).0, 200);
    let first = |r: &Raw, k: &str| {
        r.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let r = base();
    let other = Raw::signed(&env, USER, "GET", "/vpcs", b"", &[]);
    let dup_auth = first(&other, "authorization");
    // A duplicate of the same value is refused as well: which one counts is not guessed.
    for (k, v) in [
        ("authorization", dup_auth),
        ("authorization", first(&r, "authorization")),
        ("x-sdk-date", "20200101T000000Z".to_string()),
        ("x-sdk-date", first(&r, "x-sdk-date")),
        ("x-project-id", "puser".to_string()),
        ("host", host.clone()),
        ("host", "evil.example".to_string()),
    ] {
        let (s, v2) = base().header(k, &v).send(&env);
        assert_eq!((s, code(&v2)), (401, "APIGW.0301"), "two {k} headers: {v2}");
    }
    // Also a repeated signed header that is not in the fixed list.
    let (s, _) = base().header("content-type", "text/plain").send(&env);
    assert_eq!(s, 401);
}

#[test]
fn a_write_signature_is_refused_the_second_time() {
    let env = Env::new("replay");
    let w = Raw::signed(&env, PROVIDER, "POST", "/vpcs", &vpc_body("r"), &[]);
    assert_eq!(w.send(&env).0, 200);
    let (s, v) = w.send(&env);
    assert_eq!((s, code(&v)), (401, "APIGW.0301"), "{v}");
    assert!(v["error_msg"].as_str().unwrap().contains("already used"));
    assert_eq!(
        env.running().registry.read().vpcs.len(),
        1,
        "one VPC, not two"
    );
    // A refused write changed nothing; the client's identical retry (same second, same
    // signature) gets the rule's answer again, not a 401.
    let gone = Raw::signed(&env, PROVIDER, "DELETE", "/vpcs/no-such-vpc", b"", &[]);
    assert_eq!(code(&gone.send(&env).1), "EndPoint.0005");
    assert_eq!(code(&gone.send(&env).1), "EndPoint.0005");
    // A read may repeat (the SDK sends identical GETs within one second).
    let r = Raw::signed(&env, PROVIDER, "GET", "/vpcs", b"", &[]);
    assert_eq!(r.send(&env).0, 200);
    assert_eq!(r.send(&env).0, 200);
}

/// Issue 17, item 10: a single node keeps its replay cache across a restart (in its redb
/// file), so a write signed before the restart is refused after it, within its window.
#[test]
fn a_write_signature_is_refused_after_a_restart() {
    let mut env = Env::new("replay-restart");
    let w = Raw::signed(&env, PROVIDER, "POST", "/vpcs", &vpc_body("r"), &[]);
    assert_eq!(w.send(&env).0, 200);
    env.restart();
    let (s, v) = w.send(&env);
    assert_eq!((s, code(&v)), (401, "APIGW.0301"), "{v}");
    assert_eq!(
        env.running().registry.read().vpcs.len(),
        1,
        "one VPC, not two"
    );
    // A refused write released its signature in the store too: the same retry after a
    // restart gets the rule's answer again.
    let gone = Raw::signed(&env, PROVIDER, "DELETE", "/vpcs/no-such-vpc", b"", &[]);
    assert_eq!(code(&gone.send(&env).1), "EndPoint.0005");
    env.restart();
    assert_eq!(code(&gone.send(&env).1), "EndPoint.0005");
}

#[test]
fn the_replay_cache_is_bounded_and_fails_closed() {
    let env = Env::with_config("replay-full", |c| c.api.replay_cache_entries = 1);
    let w = |n: &str| Raw::signed(&env, PROVIDER, "POST", "/vpcs", &vpc_body(n), &[]);
    assert_eq!(w("a").send(&env).0, 200);
    let (s, v) = w("b").send(&env);
    assert_eq!((s, code(&v)), (429, "EndPoint.0022"), "{v}");
}

#[test]
fn an_unknown_key_and_a_bad_signature_look_the_same() {
    let env = Env::new("unknown");
    let unknown = Raw::signed(
        &env,
        ("NOSUCHAK000000000001", "x", "dprovider", "pprovider"),
        "GET",
        "/vpcs",
        b"",
        &[],
    );
    let bad_sk = Raw::signed(
        &env,
        (PROVIDER.0, "wrong", PROVIDER.2, PROVIDER.3),
        "GET",
        "/vpcs",
        b"",
        &[],
    );
    let (s1, v1) = unknown.send(&env);
    let (s2, v2) = bad_sk.send(&env);
    assert_eq!(s1, 401);
    assert_eq!(
        (s1, code(&v1), &v1["error_msg"]),
        (s2, code(&v2), &v2["error_msg"])
    );
}

#[test]
fn a_record_that_does_not_load_is_quarantined_and_the_daemon_starts() {
    use control::store::{Compare, Op, RedbStore, Store, Txn};
    let mut env = Env::new("quarantine");
    let vpc = ok(
        &env.provider,
        "POST",
        "/vpcs",
        Some(serde_json::json!({"vpc": {"name": "kept", "cidr": "10.1.0.0/16"}})),
    );
    let r = env.running.take().unwrap();
    env.rt.block_on(r.shutdown());
    {
        // What the old code stored for a 126-deep policy_document sits deeper than serde's
        // recursion limit; plus plain garbage and a record of the wrong shape.
        let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
        let store = RedbStore::open(&env.dir.join("state.redb")).unwrap();
        store
            .commit(Txn {
                compare: Compare::Always,
                ops: vec![
                    Op::Put("endpoint/deep".into(), deep.into_bytes()),
                    Op::Put("endpoint/garbage".into(), b"{not json".to_vec()),
                    Op::Put("vpc/shape".into(), br#"{"kind":"vpc"}"#.to_vec()),
                ],
            })
            .unwrap();
    }
    env.restart_from_stopped();
    let reg = &env.running().registry;
    assert_eq!(reg.quarantined(), 3);
    assert_eq!(reg.read().vpcs.len(), 1, "the good record loaded");
    let id = vpc["vpc"]["id"].as_str().unwrap();
    ok(&env.provider, "GET", &format!("/vpcs/{id}"), None);
    // Kept aside in the store, and not loaded (nor counted twice) at the next start.
    let r = env.running.take().unwrap();
    env.rt.block_on(r.shutdown());
    {
        let store = RedbStore::open(&env.dir.join("state.redb")).unwrap();
        let keys: Vec<String> = store
            .load()
            .unwrap()
            .entries
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("quarantine/"))
            .collect();
        assert_eq!(
            keys,
            [
                "quarantine/endpoint/deep",
                "quarantine/endpoint/garbage",
                "quarantine/vpc/shape"
            ]
        );
    }
    env.restart_from_stopped();
    assert_eq!(env.running().registry.quarantined(), 3);
    assert_eq!(env.running().registry.read().vpcs.len(), 1);
}

#[test]
fn a_deep_policy_document_is_refused_at_the_edge() {
    let env = Env::new("deep");
    let (svc, _, _) = service(&env.provider, false);
    whitelist(&env.provider, &svc, USER.2);
    let (uvpc, usub) = network(&env.user, "10.1.0.0/16");
    let ep = endpoint(&env.user, &svc, &uvpc, &usub);
    let eid = ep["id"].as_str().unwrap();
    let deep: Value =
        serde_json::from_str(&format!("{}1{}", "[".repeat(125), "]".repeat(125))).unwrap();
    fails(
        &env.user,
        "PUT",
        &format!("/vpc-endpoints/{eid}/policy"),
        Some(serde_json::json!({ "policy_document": deep })),
        400,
        "EndPoint.0002",
    );
    let shallow = serde_json::json!({"Statement": [{"Effect": "Allow", "Action": ["*"]}]});
    ok(
        &env.user,
        "PUT",
        &format!("/vpc-endpoints/{eid}/policy"),
        Some(serde_json::json!({ "policy_document": shallow })),
    );
}

#[test]
fn inventory_is_bounded_by_quotas_names_and_the_snat_range() {
    let env = Env::with_config("bounded", |c| {
        c.quotas.vpc = 2;
        c.quotas.subnet = 1;
        c.quotas.port = 1;
    });
    let p = &env.provider;
    let vpc =
        |name: &str, cidr: &str| Some(serde_json::json!({"vpc": {"name": name, "cidr": cidr}}));
    // The default SNAT range is 198.19.128.0/17: inside it, around it, refused.
    for cidr in ["198.19.200.0/24", "198.16.0.0/12"] {
        fails(p, "POST", "/vpcs", vpc("v", cidr), 400, "EndPoint.0002");
    }
    fails(
        p,
        "POST",
        "/vpcs",
        vpc(&"n".repeat(65), "10.0.0.0/16"),
        400,
        "EndPoint.0002",
    );
    let (_, sub) = network(p, "10.0.0.0/16");
    ok(p, "POST", "/vpcs", vpc(&"n".repeat(64), "10.1.0.0/16"));
    fails(
        p,
        "POST",
        "/vpcs",
        vpc("third", "10.2.0.0/16"),
        400,
        "Endpoint.1018",
    );
    let vpcs = ok(p, "GET", "/vpcs", None);
    let second = vpcs["vpcs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["cidr"] == "10.1.0.0/16")
        .unwrap()["id"]
        .clone();
    fails(
        p,
        "POST",
        "/subnets",
        Some(serde_json::json!({"subnet": {"vpc_id": second, "cidr": "10.1.0.0/24"}})),
        400,
        "Endpoint.1018",
    );
    port(p, &sub, "VM", None);
    fails(
        p,
        "POST",
        "/ports",
        Some(serde_json::json!({"port": {"subnet_id": sub, "server_type": "VM"}})),
        400,
        "Endpoint.1018",
    );
    // Another tenant has its own quota.
    network(&env.user, "10.0.0.0/16");
}

#[test]
fn connection_descriptions_are_capped_and_ids_unique() {
    let env = Env::new("descs");
    let (svc, _, _) = service(&env.provider, true);
    whitelist(&env.provider, &svc, USER.2);
    let (uvpc, usub) = network(&env.user, "10.1.0.0/16");
    let eid = endpoint(&env.user, &svc, &uvpc, &usub)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/vpc-endpoint-services/{svc}/connections/description");
    let one = serde_json::json!({"id": eid, "description": "d"});
    fails(
        &env.provider,
        "PUT",
        &path,
        Some(serde_json::json!({"connections": [one, one]})),
        400,
        "EndPoint.0002",
    );
    let many: Vec<Value> = (0..51).map(|_| one.clone()).collect();
    fails(
        &env.provider,
        "PUT",
        &path,
        Some(serde_json::json!({ "connections": many })),
        400,
        "EndPoint.0016",
    );
    ok(
        &env.provider,
        "PUT",
        &path,
        Some(serde_json::json!({"connections": [one]})),
    );
}

/// Read what the server sends until it closes the connection or `patience` passes; `None`
/// if it was still open then.
fn read_until_closed(s: &mut TcpStream, patience: std::time::Duration) -> Option<String> {
    s.set_read_timeout(Some(patience)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&out).into_owned());
            }
            Err(_) => return None,
        }
    }
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let env = Env::with_config("slowloris", |c| c.api.header_read_timeout_secs = 1);
    for addr in [env.running().api_addr, env.running().admin_addr] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /v1/pprovider/vpcs HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let t = std::time::Instant::now();
        assert!(
            read_until_closed(&mut s, std::time::Duration::from_secs(5)).is_some(),
            "{addr}: still open after 5 s"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(4));
    }
}

#[test]
fn an_idle_connection_is_cut_off() {
    let env = Env::with_config("idle", |c| c.api.header_read_timeout_secs = 1);
    // Silent from the start, and silent after one request on a kept-alive connection.
    let mut silent = TcpStream::connect(env.running().api_addr).unwrap();
    let t = std::time::Instant::now();
    assert!(
        read_until_closed(&mut silent, std::time::Duration::from_secs(5)).is_some(),
        "a silent connection is still open after 5 s"
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(4));
    let mut kept = TcpStream::connect(env.running().api_addr).unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut kept, std::time::Duration::from_secs(5))
        .expect("closed after the keep-alive idle time");
    assert!(got.starts_with("HTTP/1.1 401"), "{got}");
}

#[test]
fn a_body_that_never_arrives_is_cut_off() {
    let env = Env::with_config("slowbody", |c| c.api.body_timeout_secs = 1);
    let mut s = TcpStream::connect(env.running().api_addr).unwrap();
    s.write_all(
        b"POST /v1/pprovider/vpcs HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n{\"vpc\"",
    )
    .unwrap();
    let got = read_until_closed(&mut s, std::time::Duration::from_secs(5))
        .expect("answered and closed within 5 s");
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("EndPoint.0002"), "{got}");
}

#[test]
fn connections_past_the_cap_wait_unserved() {
    let env = Env::with_config("conncap", |c| c.api.max_connections = 1);
    // The holder is served once (so the server has accepted it) and keeps its connection.
    let mut holder = TcpStream::connect(env.running().api_addr).unwrap();
    holder
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    holder
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut first = [0u8; 12];
    holder.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 "), "{first:?}");
    let mut s = TcpStream::connect(env.running().api_addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    // Half a second of silence shows the second one is not served (a wait on purpose: it
    // shows that something does not happen).
    assert!(
        read_until_closed(&mut s, std::time::Duration::from_millis(500)).is_none(),
        "served past the cap"
    );
    drop(holder);
    let got = read_until_closed(&mut s, std::time::Duration::from_secs(5)).unwrap();
    assert!(got.starts_with("HTTP/1.1 "), "{got}");
}

#[test]
fn each_project_has_its_own_request_rate() {
    let env = Env::with_config("rate", |c| {
        c.api.rate_per_sec = 1;
        c.api.rate_burst = 3;
    });
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            env.provider
                .raw("GET", &env.provider.path("/vpcs"), &[], None)
                .unwrap()
                .0
        })
        .collect();
    assert!(statuses[..3].iter().all(|s| *s == 200), "{statuses:?}");
    let (s, v) = env
        .provider
        .raw("GET", &env.provider.path("/vpcs"), &[], None)
        .unwrap();
    assert_eq!((s, code(&v)), (429, "EndPoint.0022"), "{v}");
    // Another project is not slowed down by the first.
    let (s, _) = env
        .user
        .raw("GET", &env.user.path("/vpcs"), &[], None)
        .unwrap();
    assert_eq!(s, 200);
    // A throttled request did not pass authentication's other steps: no 401 here.
    let w =
        Raw::signed(&env, PROVIDER, "POST", "/vpcs", &vpc_body("t"), &[]).header("x-ignored", "1");
    assert_eq!(w.send(&env).0, 429);
}

#[test]
fn every_write_is_one_audit_line_and_vpcepctl_reads_them_back() {
    let env = Env::new("audit");
    let vpc = ok(
        &env.provider,
        "POST",
        "/vpcs",
        Some(serde_json::json!({"vpc": {"name": "a", "cidr": "10.0.0.0/16"}})),
    );
    let vpc_id = vpc["vpc"]["id"].as_str().unwrap().to_string();
    fails(
        &env.user,
        "DELETE",
        &format!("/vpcs/{vpc_id}"),
        None,
        404,
        "EndPoint.0005",
    );
    ok(&env.provider, "GET", "/vpcs", None); // a read: not recorded
    // Unauthenticated: not recorded either.
    let (s, _) = Raw::signed(
        &env,
        (PROVIDER.0, "wrong", PROVIDER.2, PROVIDER.3),
        "POST",
        "/vpcs",
        &vpc_body("x"),
        &[],
    )
    .send(&env);
    assert_eq!(s, 401);
    ok(&env.provider, "DELETE", &format!("/vpcs/{vpc_id}"), None);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpcepctl"))
        .args(["audit", "-o", "json", "--data-dir"])
        .arg(&env.dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["audit"].as_array().unwrap();
    let brief: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["project_id"].as_str().unwrap(),
                r["operation"].as_str().unwrap(),
                r["resource_id"].as_str().unwrap_or(""),
                r["result"].as_str().unwrap(),
            )
        })
        .collect();
    let del = format!("DELETE /v1/pprovider/vpcs/{vpc_id}");
    let udel = format!("DELETE /v1/puser/vpcs/{vpc_id}");
    assert_eq!(
        brief,
        [
            (
                "pprovider",
                "POST /v1/pprovider/vpcs",
                vpc_id.as_str(),
                "OK"
            ),
            ("puser", udel.as_str(), vpc_id.as_str(), "EndPoint.0005"),
            ("pprovider", del.as_str(), vpc_id.as_str(), "OK"),
        ]
    );
    let first = &rows[0];
    assert_eq!(
        (
            first["domain_id"].as_str(),
            first["ak"].as_str(),
            first["status"].as_u64()
        ),
        (Some(PROVIDER.2), Some(PROVIDER.0), Some(200))
    );
    assert_eq!(first["request_id"].as_str().unwrap().len(), 32);
    assert!(first["at"].as_str().unwrap().ends_with('Z'));
    // Filters.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpcepctl"))
        .args(["audit", "-o", "json", "--project", "puser", "--data-dir"])
        .arg(&env.dir)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["audit"].as_array().unwrap().len(), 1);
}

#[test]
fn the_api_speaks_tls_when_configured() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let env = Env::with_config("tls", |c| {
        c.api.tls_cert = Some(tls.join("cert.pem"));
        c.api.tls_key = Some(tls.join("key.pem"));
    });
    let req = Raw::signed(&env, PROVIDER, "GET", "/vpcs", b"", &[]);
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(tls.join("ca.pem"));
    for (k, v) in &req.headers {
        curl.arg("-H").arg(format!("{k}: {v}"));
    }
    let url = format!("https://{}{}", env.running().api_addr, req.path);
    let out = curl
        .arg("-w")
        .arg("\n%{http_code}")
        .arg(&url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("\n200"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\"vpcs\""), "{text}");
    // Plain HTTP on the TLS port gets no answer.
    let mut plain = TcpStream::connect(env.running().api_addr).unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut plain, std::time::Duration::from_secs(5)).unwrap_or_default();
    assert!(
        !got.starts_with("HTTP/1.1 "),
        "plain HTTP was answered on the TLS listener"
    );
    // The admin listener stays plain (loopback by default).
    let mut a = TcpStream::connect(env.running().admin_addr).unwrap();
    a.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let got = read_until_closed(&mut a, std::time::Duration::from_secs(5)).unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[test]
fn a_bad_certificate_stops_the_start() {
    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let dir = temp_dir("badtls");
    let cfg = control::config::DaemonConfig {
        data_dir: dir.to_path_buf(),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        api: control::config::ApiConfig {
            // The CA certificate with the server's key: they do not match.
            tls_cert: Some(tls.join("ca.pem")),
            tls_key: Some(tls.join("key.pem")),
            ..Default::default()
        },
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(control::daemon::start_with(
            &cfg,
            credentials(),
            |_, _, _, _| unreachable!(),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}
