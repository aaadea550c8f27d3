//! The tag API (operations 26-28), `orgPath` whitelists, a service's `ip` and the duration
//! tag, in-process over real HTTP: wire shapes, error codes, tenancy, the audit log and a
//! restart. The rules themselves are unit tests of `control/src/registry/tags.rs`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use crate::common::*;
use control::auth::OrgMembership;
use control::client::Client;
use control::config::DaemonConfig;
use serde_json::{Value, json};

fn sid(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn tags_of(c: &Client, path: &str) -> Value {
    ok(c, "GET", path, None)["tags"].clone()
}

fn query(c: &Client, rt: &str, body: Value) -> Value {
    ok(
        c,
        "POST",
        &format!("/{rt}/resource_instances/action"),
        Some(body),
    )
}

#[test]
fn tags_change_after_create_and_resources_are_found_by_tag() {
    let mut env = Env::new("tags");
    let (p, x) = (env.provider.clone(), env.stranger.clone());
    let (svc, _, _) = service(&p, true);
    let svc_path = format!("/vpc-endpoint-services/{svc}");
    let action = format!("/endpoint_service/{svc}/tags/action");
    // Create, then replace a value and add a key: 204 with no body.
    let (s, v) = p
        .raw(
            "POST",
            &p.path(&action),
            &[],
            Some(&json!({"action": "create", "tags": [{"key": "env", "value": "test"}]})),
        )
        .unwrap();
    assert_eq!((s, v), (204, Value::Null));
    ok(
        &p,
        "POST",
        &action,
        Some(
            json!({"action": "create", "tags": [{"key": "env", "value": "prod"}, {"key": "team", "value": "a"}]}),
        ),
    );
    assert_eq!(
        tags_of(&p, &svc_path),
        json!([{"key": "env", "value": "prod"}, {"key": "team", "value": "a"}])
    );
    // Delete by key and value (no match: kept), by key, and a key that is not there.
    ok(
        &p,
        "POST",
        &action,
        Some(
            json!({"action": "delete", "tags": [{"key": "env", "value": "test"}, {"key": "nope"}]}),
        ),
    );
    assert_eq!(tags_of(&p, &svc_path).as_array().unwrap().len(), 2);
    ok(
        &p,
        "POST",
        &action,
        Some(json!({"action": "delete", "tags": [{"key": "team"}]})),
    );
    assert_eq!(
        tags_of(&p, &svc_path),
        json!([{"key": "env", "value": "prod"}])
    );

    // A second service, untagged; the tag list and the queries.
    let (vpc2, sub2) = network(&p, "10.7.0.0/16");
    let port2 = port(&p, &sub2, "VM", None);
    let svc2 = sid(&ok(
        &p,
        "POST",
        "/vpc-endpoint-services",
        Some(
            json!({"vpc_id": vpc2, "port_id": port2, "server_type": "VM",
                    "ports": [{"client_port": 1, "server_port": 2}],
                    "tags": [{"key": "env", "value": "dev"}]}),
        ),
    ));
    assert_eq!(
        ok(&p, "GET", "/endpoint_service/tags", None),
        json!({"tags": [{"key": "env", "values": ["dev", "prod"]}]})
    );
    let found = query(
        &p,
        "endpoint_service",
        json!({"action": "filter", "tags": [{"key": "env", "values": ["prod"]}]}),
    );
    assert_eq!(found["total_count"], 1);
    assert_eq!(found["resources"][0]["resource_id"], svc.as_str());
    assert_eq!(
        found["resources"][0]["tags"],
        json!([{"key": "env", "value": "prod"}])
    );
    assert_eq!(
        found["resources"][0]["resource_name"],
        format!("region-1.web.{svc}")
    );
    // Paging (the SDK's strings) cuts the list, not the total; count has the total only.
    let page = |offset: &str| {
        let v = query(
            &p,
            "endpoint_service",
            json!({"action": "filter", "limit": "1", "offset": offset}),
        );
        assert_eq!(v["total_count"], 2);
        assert_eq!(v["resources"].as_array().unwrap().len(), 1);
        v["resources"][0]["resource_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut pages = [page("0"), page("1")];
    pages.sort();
    let mut both = [svc.clone(), svc2];
    both.sort();
    assert_eq!(pages, both, "two pages of one: each service once");
    let count = query(
        &p,
        "endpoint_service",
        json!({"action": "count", "tags_any": [{"key": "env", "values": []}]}),
    );
    assert_eq!(count, json!({"total_count": 2}));
    let by_name = query(
        &p,
        "endpoint_service",
        json!({"action": "filter", "matches": [{"key": "resource_name", "value": "WEB"}]}),
    );
    assert_eq!(by_name["total_count"], 1);

    // Another tenant sees none of it and cannot tag it.
    assert_eq!(
        ok(&x, "GET", "/endpoint_service/tags", None),
        json!({"tags": []})
    );
    assert_eq!(
        query(&x, "endpoint_service", json!({"action": "count"})),
        json!({"total_count": 0})
    );
    fails(
        &x,
        "POST",
        &action,
        Some(json!({"action": "create", "tags": [{"key": "k", "value": "v"}]})),
        404,
        "EndPoint.0005",
    );

    // Errors, each changing nothing.
    let bad = |path: &str, body: Value, status: u16, code: &str| {
        fails(&p, "POST", path, Some(body), status, code);
    };
    let kv = |k: &str, v: &str| json!({"action": "create", "tags": [{"key": k, "value": v}]});
    bad(
        &format!("/vpn/{svc}/tags/action"),
        kv("a", "b"),
        400,
        "EndPoint.3070",
    );
    bad(
        &action,
        json!({"action": "upsert", "tags": [{"key": "a", "value": "b"}]}),
        400,
        "EndPoint.0007",
    );
    bad(&action, kv("", "b"), 400, "EndPoint.3066");
    bad(&action, kv(&"k".repeat(129), "b"), 400, "EndPoint.3068");
    bad(&action, kv("a<b", "b"), 400, "EndPoint.3068");
    bad(&action, kv("_sys_x", "b"), 400, "EndPoint.3068");
    bad(&action, kv("a", &"v".repeat(256)), 400, "EndPoint.3068");
    bad(
        &action,
        json!({"action": "create", "tags": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}),
        400,
        "EndPoint.3067",
    );
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"key": format!("k{i}"), "value": ""}))
        .collect();
    bad(
        &action,
        json!({"action": "create", "tags": eleven}),
        400,
        "EndPoint.3069",
    );
    bad(
        "/endpoint_service/resource_instances/action",
        json!({"action": "filter", "limit": "0"}),
        400,
        "EndPoint.0006",
    );
    bad(
        "/endpoint_service/resource_instances/action",
        json!({"action": "list"}),
        400,
        "EndPoint.0007",
    );
    fails(&p, "GET", "/vpns/tags", None, 400, "EndPoint.3070");
    assert_eq!(
        tags_of(&p, &svc_path),
        json!([{"key": "env", "value": "prod"}])
    );

    // Every tag action is one audit line, refused ones with their code; the query is a POST
    // that only reads: not recorded, and it may be sent twice within a second (the same
    // signature) like a GET.
    let audit = control::audit::read(&env.dir).unwrap();
    assert!(
        !audit
            .iter()
            .any(|e| e.operation.contains("resource_instances")),
        "a query is no write"
    );
    let again = || {
        p.raw(
            "POST",
            &p.path("/endpoint_service/resource_instances/action"),
            &[],
            Some(&json!({"action": "count"})),
        )
        .unwrap()
        .0
    };
    assert_eq!((again(), again()), (200, 200));
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.operation.ends_with("/tags/action"))
        .map(|e| (e.resource_id.as_deref().unwrap_or(""), e.result.as_str()))
        .collect();
    assert_eq!(actions.len(), 4 + 1 + 9, "{actions:?}");
    assert!(actions[..4].iter().all(|a| *a == (svc.as_str(), "OK")));
    assert_eq!(actions[4], (svc.as_str(), "EndPoint.0005"));
    assert!(actions.contains(&(svc.as_str(), "EndPoint.3069")));

    // Stored: a restart keeps the tags.
    env.restart();
    assert_eq!(
        tags_of(&env.provider, &svc_path),
        json!([{"key": "env", "value": "prod"}])
    );
}

#[test]
fn endpoint_tags_and_the_duration_tag() {
    let env = Env::new("eptags");
    let (p, u) = (&env.provider, &env.user);
    let (svc, _, _) = service(p, false);
    whitelist(p, &svc, "duser");
    let (uvpc, usub) = network(u, "10.0.0.0/16");
    let ep = ok(
        u,
        "POST",
        "/vpc-endpoints",
        Some(
            json!({"endpoint_service_id": svc, "vpc_id": uvpc, "subnet_id": usub,
                    "tags": [{"key": "vpcep:duration", "value": "3600"}, {"key": "app", "value": "db"}]}),
        ),
    );
    let id = sid(&ep);
    let expires = ep["expires_at"].as_str().unwrap().to_string();
    let tags = ep["tags"].as_array().unwrap();
    assert!(tags.contains(&json!({"key": "vpcep:expires_at", "value": expires})));
    assert!(tags.contains(&json!({"key": "app", "value": "db"})));
    // Extend by an hour through a tag action: the expiry moves by exactly that.
    ok(
        u,
        "POST",
        &format!("/endpoint/{id}/tags/action"),
        Some(json!({"action": "create", "tags": [{"key": "vpcep:duration", "value": "3600"}]})),
    );
    let shown = ok(u, "GET", &format!("/vpc-endpoints/{id}"), None);
    let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
    assert_eq!(
        at(shown["expires_at"].as_str().unwrap()) - at(&expires),
        3600
    );
    // Both the field and the tag: refused.
    fails(
        u,
        "POST",
        "/vpc-endpoints",
        Some(
            json!({"endpoint_service_id": svc, "vpc_id": uvpc, "subnet_id": usub, "duration": 5,
                    "tags": [{"key": "vpcep:duration", "value": "5"}]}),
        ),
        400,
        "EndPoint.0002",
    );
    // The endpoint's tags are the user's: the provider does not see or change them.
    fails(
        p,
        "POST",
        &format!("/endpoint/{id}/tags/action"),
        Some(json!({"action": "delete", "tags": [{"key": "app"}]})),
        404,
        "EndPoint.2006",
    );
    let found = query(
        u,
        "endpoint",
        json!({"action": "filter", "tags": [{"key": "app", "values": ["db"]}]}),
    );
    assert_eq!(found["resources"][0]["resource_id"], id.as_str());
    assert_eq!(found["resources"][0]["resource_name"], id.as_str());
    assert_eq!(
        query(p, "endpoint", json!({"action": "count"})),
        json!({"total_count": 0})
    );
    // Deleting the duration tag ends the expiry.
    ok(
        u,
        "POST",
        &format!("/endpoint/{id}/tags/action"),
        Some(json!({"action": "delete", "tags": [{"key": "vpcep:duration"}]})),
    );
    let shown = ok(u, "GET", &format!("/vpc-endpoints/{id}"), None);
    assert_eq!(shown["expires_at"], Value::Null);
    assert_eq!(shown["tags"], json!([{"key": "app", "value": "db"}]));
}

#[test]
fn a_services_ip_is_stored_and_returned() {
    let env = Env::new("svcip");
    let p = &env.provider;
    let (vpc, sub) = network(p, "10.0.0.0/16");
    let port_id = port(p, &sub, "VM", Some("10.0.0.10"));
    let body = |ip: &str| {
        json!({"vpc_id": vpc, "port_id": port_id, "server_type": "VM", "ip": ip,
               "ports": [{"client_port": 80, "server_port": 80}]})
    };
    for bad in ["10.0.0.300", "a..b", "-a.example", "fd00::1", "x_y.example"] {
        fails(
            p,
            "POST",
            "/vpc-endpoint-services",
            Some(body(bad)),
            400,
            "EndPoint.0002",
        );
    }
    let svc = ok(p, "POST", "/vpc-endpoint-services", Some(body("192.0.2.7")));
    assert_eq!(svc["ip"], "192.0.2.7");
    let path = format!("/vpc-endpoint-services/{}", sid(&svc));
    assert_eq!(ok(p, "GET", &path, None)["ip"], "192.0.2.7");
    let up = ok(p, "PUT", &path, Some(json!({"ip": "backend.example.com"})));
    assert_eq!(up["ip"], "backend.example.com");
    // Cleared: the backend port's address again.
    assert_eq!(
        ok(p, "PUT", &path, Some(json!({"ip": ""})))["ip"],
        "10.0.0.10"
    );
}

#[test]
fn org_path_permissions_admit_the_accounts_of_that_organisation() {
    let dir = temp_dir("orgs");
    let cfg = DaemonConfig {
        data_dir: dir.to_path_buf(),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        ..DaemonConfig::default()
    };
    let creds = credentials()
        .with_orgs(vec![
            OrgMembership {
                path: "o-acme/r-root/ou-sales/ou-east".into(),
                domains: vec![USER.2.into()],
            },
            OrgMembership {
                path: "o-other/r-root".into(),
                domains: vec![STRANGER.2.into()],
            },
        ])
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = rt
        .block_on(control::daemon::start_with(&cfg, creds, |_, _, _, _| {
            unreachable!("no attachments")
        }))
        .unwrap();
    let url = format!("http://{}", running.api_addr);
    let c = |t: (&str, &str, &str, &str)| Client::new(&url, t.0, t.1, t.3);
    let (p, u, x) = (c(PROVIDER), c(USER), c(STRANGER));
    let (svc, _, _) = service(&p, true);
    ok(
        &p,
        "POST",
        &format!("/vpc-endpoint-services/{svc}/permissions/action"),
        Some(
            json!({"permissions": ["organizations:orgPath::o-acme/r-root/ou-sales"],
                    "permission_type": "orgPath", "action": "add"}),
        ),
    );
    // The user's unit lies under ou-sales: it sees the service and connects.
    let q = [("id", svc.clone())];
    let (s, _) = u
        .raw("GET", &u.path("/vpc-endpoint-services/describe"), &q, None)
        .unwrap();
    assert_eq!(s, 200);
    let (uvpc, usub) = network(&u, "10.0.0.0/16");
    let ep = endpoint(&u, &svc, &uvpc, &usub);
    assert_eq!(ep["status"], "pendingAcceptance");
    // Another organisation's account does not.
    let (s, _) = x
        .raw("GET", &x.path("/vpc-endpoint-services/describe"), &q, None)
        .unwrap();
    assert_eq!(s, 404);
    let (xvpc, xsub) = network(&x, "10.0.0.0/16");
    fails(
        &x,
        "POST",
        "/vpc-endpoints",
        Some(json!({"endpoint_service_id": svc, "vpc_id": xvpc, "subnet_id": xsub})),
        400,
        "EndPoint.2012",
    );
    rt.block_on(running.shutdown());
}

#[test]
fn vpcepctl_tags_a_service_and_finds_it() {
    let env = Env::new("ctltags");
    let (svc, _, _) = service(&env.provider, true);
    let ctl = |args: &[&str]| -> Value {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpcepctl"))
            .args(["-o", "json"])
            .args(args)
            .env("VPCEP_ENDPOINT", env.url())
            .env("VPCEP_AK", PROVIDER.0)
            .env("VPCEP_SK", PROVIDER.1)
            .env("VPCEP_PROJECT_ID", PROVIDER.3)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    ctl(&["tag", "add", "endpoint_service", &svc, "env=prod", "team=a"]);
    ctl(&["tag", "remove", "endpoint_service", &svc, "team"]);
    assert_eq!(
        ctl(&["tag", "list", "endpoint_service"]),
        json!({"tags": [{"key": "env", "values": ["prod"]}]})
    );
    let found = ctl(&["tag", "find", "endpoint_service", "env=prod,dev"]);
    assert_eq!(found["resources"][0]["resource_id"], svc.as_str());
    assert_eq!(
        ctl(&["tag", "find", "endpoint_service", "team", "--count"]),
        json!({"total_count": 0})
    );
    // `raw` takes a query in its path, and signs it as the query.
    let page = ctl(&[
        "raw",
        "GET",
        "/vpc-endpoint-services?limit=1&sort_key=create_at",
    ]);
    assert_eq!(
        page["endpoint_services"].as_array().unwrap().len(),
        1,
        "{page}"
    );
    // The table form: one row per resource, tags as KEY=VALUE.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpcepctl"))
        .args(["tag", "find", "endpoint_service", "env"])
        .env("VPCEP_ENDPOINT", env.url())
        .env("VPCEP_AK", PROVIDER.0)
        .env("VPCEP_SK", PROVIDER.1)
        .env("VPCEP_PROJECT_ID", PROVIDER.3)
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("RESOURCE_ID"), "{table}");
    assert!(
        lines[1].starts_with(&svc) && lines[1].ends_with("env=prod"),
        "{table}"
    );
    // Whitelist entries: the type follows the strings.
    let r = ctl(&["permission", "add", &svc, "organizations:orgPath::o-1/r-1"]);
    assert_eq!(r["permission_type"], "orgPath");
    let r = ctl(&["permission", "add", &svc, "iam:domain::duser"]);
    assert_eq!(r["permission_type"], "domainId");
    ctl(&[
        "permission",
        "remove",
        &svc,
        "organizations:orgPath::o-1/r-1",
    ]);
    let list = ctl(&["permission", "list", &svc]);
    assert_eq!(list["permissions"].as_array().unwrap().len(), 1, "{list}");
}
