//! The API in-process over real HTTP: what only HTTP can show. The wire shapes of every
//! operation, status codes and error bodies, paging and filters, authentication (bad
//! signatures, stale dates, foreign projects), tenancy as the wire shows it, the body limit,
//! malformed bodies, the expiry sweeper and a restart. The rules themselves are unit tests
//! of the registry against the in-memory store (`control/src/registry/`).

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

fn sid(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[test]
fn versions_and_quotas() {
    let env = Env::new("versions");
    let v = env.provider.call("GET", "/", &[], None).unwrap();
    assert_eq!(v["versions"][0]["id"], "v1");
    assert_eq!(
        env.provider.call("GET", "/v1", &[], None).unwrap()["version"]["status"],
        "CURRENT"
    );
    let q = ok(&env.provider, "GET", "/quotas", None);
    assert_eq!(q["quotas"]["resources"].as_array().unwrap().len(), 2);
    let q = env
        .provider
        .call(
            "GET",
            &env.provider.path("/quotas"),
            &[("type", "endpoint".into())],
            None,
        )
        .unwrap();
    assert_eq!(
        q["quotas"]["resources"],
        json!([{"type": "endpoint", "used": 0, "quota": 500}])
    );
}

#[test]
fn the_provider_and_user_story() {
    let env = Env::new("story");
    let (p, u) = (&env.provider, &env.user);
    let (svc, _port, _) = service(p, true);
    let shown = ok(p, "GET", &format!("/vpc-endpoint-services/{svc}"), None);
    let full = shown["service_name"].as_str().unwrap().to_string();
    assert_eq!(full, format!("region-1.web.{svc}"));
    assert_eq!(shown["status"], "available");
    assert_eq!(
        shown["ports"],
        json!([{"client_port": 8080, "server_port": 80, "protocol": "TCP"}])
    );

    // Invisible to the user until whitelisted.
    let (uvpc, usub) = network(u, "10.0.0.0/16"); // the same CIDR as the provider
    let q = [("endpoint_service_name", full.clone())];
    let (s, v) = u
        .raw("GET", &u.path("/vpc-endpoint-services/describe"), &q, None)
        .unwrap();
    assert_eq!(
        (s, v["error_code"].as_str().unwrap()),
        (404, "EndPoint.0005")
    );
    fails(
        u,
        "POST",
        "/vpc-endpoints",
        Some(json!({"endpoint_service_id": svc, "vpc_id": uvpc, "subnet_id": usub})),
        400,
        "EndPoint.2012",
    );
    whitelist(p, &svc, "duser");
    let d = u
        .call("GET", &u.path("/vpc-endpoint-services/describe"), &q, None)
        .unwrap();
    assert_eq!(d["id"], svc.as_str());
    assert_eq!(d["is_charge"], false);
    let public = ok(u, "GET", "/vpc-endpoint-services/public", None);
    assert_eq!(public["total_count"], 1);
    assert_eq!(public["endpoint_services"][0]["owner"], "dprovider");

    let ep = endpoint(u, &svc, &uvpc, &usub);
    let ep_id = sid(&ep);
    assert_eq!(ep["status"], "pendingAcceptance");
    assert_eq!(
        ep["ip"], "10.0.0.2",
        "the first free address: not the network or the gateway"
    );
    assert!(
        ep.get("dns_names").is_none(),
        "create answers without dns_names"
    );
    assert!(ep["marker_id"].as_u64().unwrap() > 0);
    let conns = ok(
        p,
        "GET",
        &format!("/vpc-endpoint-services/{svc}/connections"),
        None,
    );
    assert_eq!(conns["connections"][0]["status"], "pendingAcceptance");
    assert_eq!(conns["connections"][0]["domain_id"], "duser");
    assert_eq!(conns["connections"][0]["marker_id"], ep["marker_id"]);

    // The consumer cannot accept its own connection; the owner can.
    let action = |a: &str| Some(json!({"action": a, "endpoints": [ep_id]}));
    let path = format!("/vpc-endpoint-services/{svc}/connections/action");
    fails(
        u,
        "POST",
        &path.replace("puser", "x"),
        action("receive"),
        404,
        "EndPoint.0005",
    );
    for (a, want) in [
        ("receive", "accepted"),
        ("reject", "rejected"),
        ("receive", "accepted"),
    ] {
        let r = ok(p, "POST", &path, action(a));
        assert_eq!(r["connections"][0]["status"], want);
        assert_eq!(
            ok(u, "GET", &format!("/vpc-endpoints/{ep_id}"), None)["status"],
            want
        );
    }
    fails(
        p,
        "POST",
        &path,
        Some(json!({"action": "approve", "endpoints": [ep_id]})),
        400,
        "EndPoint.2027",
    );
    fails(
        p,
        "POST",
        &path,
        Some(json!({"action": "receive", "endpoints": [ep_id, ep_id]})),
        400,
        "EndPoint.2031",
    );
    fails(
        p,
        "POST",
        &path,
        Some(json!({"action": "receive", "endpoints": ["nope"]})),
        400,
        "EndPoint.2013",
    );
    let desc = ok(
        p,
        "PUT",
        &format!("/vpc-endpoint-services/{svc}/connections/description"),
        Some(json!({"connections": [{"id": ep_id, "description": "team a"}]})),
    );
    assert_eq!(desc["connections"][0]["description"], "team a");
    let shown = ok(p, "GET", &format!("/vpc-endpoint-services/{svc}"), None);
    assert_eq!(shown["connection_count"], 1);

    // Live connections block the service's deletion.
    fails(
        p,
        "DELETE",
        &format!("/vpc-endpoint-services/{svc}"),
        None,
        400,
        "EndPoint.3006",
    );
    let (s, v) = u
        .raw(
            "DELETE",
            &u.path(&format!("/vpc-endpoints/{ep_id}")),
            &[],
            None,
        )
        .unwrap();
    assert_eq!((s, v), (204, Value::Null));
    fails(
        u,
        "GET",
        &format!("/vpc-endpoints/{ep_id}"),
        None,
        404,
        "EndPoint.2006",
    );
    let (s, _) = p
        .raw(
            "DELETE",
            &p.path(&format!("/vpc-endpoint-services/{svc}")),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(s, 204);
    fails(
        p,
        "GET",
        &format!("/vpc-endpoint-services/{svc}"),
        None,
        404,
        "EndPoint.0005",
    );
}

#[test]
fn approval_disabled_connects_at_once_and_rename_changes_the_full_name() {
    let env = Env::new("noapproval");
    let (p, u) = (&env.provider, &env.user);
    let (svc, _, _) = service(p, false);
    whitelist(p, &svc, "*");
    let (uvpc, usub) = network(u, "10.1.0.0/16");
    assert_eq!(endpoint(u, &svc, &uvpc, &usub)["status"], "accepted");
    let r = ok(
        p,
        "PUT",
        &format!("/vpc-endpoint-services/{svc}/name"),
        Some(json!({"endpoint_service_name": "api2"})),
    );
    assert_eq!(r["endpoint_service_name"], format!("region-1.api2.{svc}"));
    fails(
        p,
        "PUT",
        &format!("/vpc-endpoint-services/{svc}/name"),
        Some(json!({"endpoint_service_name": "bad name!"})),
        400,
        "EndPoint.1003",
    );
    let listed = ok(u, "GET", "/vpc-endpoints", None);
    assert_eq!(
        listed["endpoints"][0]["endpoint_service_name"],
        format!("region-1.api2.{svc}")
    );
}

#[test]
fn backend_deletion_suspends_and_a_new_backend_resumes() {
    let env = Env::new("suspend");
    let (p, u) = (&env.provider, &env.user);
    let (svc, port_id, vpc) = service(p, false);
    whitelist(p, &svc, "duser");
    let sub = ok(p, "GET", "/subnets", None)["subnets"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = p
        .raw("DELETE", &p.path(&format!("/ports/{port_id}")), &[], None)
        .unwrap();
    assert_eq!(s, 204);
    assert_eq!(
        ok(p, "GET", &format!("/vpc-endpoint-services/{svc}"), None)["status"],
        "suspended"
    );
    let (uvpc, usub) = network(u, "10.9.0.0/16");
    fails(
        u,
        "POST",
        "/vpc-endpoints",
        Some(json!({"endpoint_service_id": svc, "vpc_id": uvpc, "subnet_id": usub})),
        400,
        "EndPoint.2004",
    );
    let lb = port(p, &sub, "LB", None);
    fails(
        p,
        "PUT",
        &format!("/vpc-endpoint-services/{svc}"),
        Some(json!({"port_id": lb})),
        400,
        "EndPoint.3021",
    );
    let vm = port(p, &sub, "VM", Some("10.0.0.20"));
    let r = ok(
        p,
        "PUT",
        &format!("/vpc-endpoint-services/{svc}"),
        Some(json!({"port_id": vm})),
    );
    assert_eq!(r["status"], "available");
    assert_eq!(r["ip"], "10.0.0.20");
    assert_eq!(endpoint(u, &svc, &uvpc, &usub)["status"], "accepted");
    let _ = vpc;
}

#[test]
fn endpoint_addresses_whitelists_and_policy() {
    let env = Env::new("addr");
    let (p, u) = (&env.provider, &env.user);
    let (svc, _, _) = service(p, true);
    whitelist(p, &svc, "duser");
    let (uvpc, usub) = network(u, "10.0.0.0/16");
    let create = |extra: Value| {
        let mut b = json!({"endpoint_service_id": svc, "vpc_id": uvpc, "subnet_id": usub});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        u.raw("POST", &u.path("/vpc-endpoints"), &[], Some(&b))
            .unwrap()
    };
    // The address rules are unit tests (registry::ipam); here: the wire shape of a
    // chosen and an automatic address, the whitelist, DNS names, policy and route tables.
    let (s, chosen) = create(
        json!({"port_ip": "10.0.0.2", "whitelist": ["192.0.2.0/24"], "enable_whitelist": true, "enable_dns": true}),
    );
    assert_eq!(s, 200, "{chosen}");
    let (s, taken) = create(json!({"port_ip": "10.0.0.2"}));
    assert_eq!(
        (s, taken["error_code"].clone()),
        (400, json!("EndPoint.2042"))
    );
    let (_, auto) = create(json!({}));
    assert_eq!(auto["ip"], "10.0.0.3");
    let id = sid(&chosen);
    let shown = ok(u, "GET", &format!("/vpc-endpoints/{id}"), None);
    assert_eq!(shown["status"], "pendingAcceptance");
    assert_eq!(shown["dns_names"], json!([]), "no name before acceptance");
    ok(
        p,
        "POST",
        &format!("/vpc-endpoint-services/{svc}/connections/action"),
        Some(json!({"action": "receive", "endpoints": [id]})),
    );
    let shown = ok(u, "GET", &format!("/vpc-endpoints/{id}"), None);
    assert_eq!(
        shown["dns_names"],
        json!(["10-0-0-2.vpcep.region-1.internal"])
    );
    assert_eq!(shown["whitelist"], json!(["192.0.2.0/24"]));
    let w = ok(
        u,
        "PUT",
        &format!("/vpc-endpoints/{id}"),
        Some(json!({"whitelist": ["198.51.100.7"], "enable_whitelist": true})),
    );
    assert_eq!(w["whitelist"], json!(["198.51.100.7"]));
    fails(
        u,
        "PUT",
        &format!("/vpc-endpoints/{id}"),
        Some(json!({"whitelist": ["x"]})),
        400,
        "EndPoint.2044",
    );
    let stmt = json!([{"Effect": "Allow", "Action": ["obs:*"], "Resource": ["*"]}]);
    let pol = ok(
        u,
        "PUT",
        &format!("/vpc-endpoints/{id}/policy"),
        Some(json!({"policy_statement": stmt})),
    );
    assert_eq!(pol["policy_statement"], stmt);
    let (s, cleared) = u
        .raw(
            "DELETE",
            &u.path(&format!("/vpc-endpoints/{id}/policy")),
            &[],
            None,
        )
        .unwrap();
    assert_eq!((s, cleared["policy_statement"].clone()), (200, json!([])));
    // Route tables belong to gateway endpoints (tests/gateway.rs).
    fails(
        u,
        "PUT",
        &format!("/vpc-endpoints/{id}/routetables"),
        Some(json!({"routetables": ["rt-1"]})),
        400,
        "EndPoint.0002",
    );
}

#[test]
fn permissions_operations() {
    let env = Env::new("perms");
    let p = &env.provider;
    let (svc, _, _) = service(p, true);
    let base = format!("/vpc-endpoint-services/{svc}/permissions");
    let r = ok(
        p,
        "POST",
        &format!("{base}/action"),
        Some(
            json!({"permissions": ["iam:domain::aaa", "*"], "permission_type": "domainId", "action": "add"}),
        ),
    );
    assert_eq!(r["permissions"], json!(["iam:domain::aaa", "*"]));
    let created = ok(
        p,
        "POST",
        &format!("{base}/batch-create"),
        Some(
            json!({"permissions": [{"permission": "iam:domain::bbb", "description": "team b"}], "permission_type": "domainId"}),
        ),
    );
    let pid = created["permissions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(created["permissions"][0]["description"], "team b");
    let list = ok(p, "GET", &base, None);
    assert_eq!(list["total_count"], 3);
    let upd = ok(
        p,
        "PUT",
        &format!("{base}/{pid}"),
        Some(json!({"permission": {"description": "renamed"}})),
    );
    assert_eq!(upd["permissions"][0]["description"], "renamed");
    let del = ok(
        p,
        "POST",
        &format!("{base}/batch-delete"),
        Some(json!({"permissions": [{"id": pid}]})),
    );
    assert_eq!(del["permissions"][0]["permission"], "iam:domain::bbb");
    ok(
        p,
        "POST",
        &format!("{base}/action"),
        Some(json!({"permissions": ["*"], "action": "remove"})),
    );
    let list = ok(p, "GET", &base, None);
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["permissions"][0]["permission"], "iam:domain::aaa");
}

#[test]
fn lists_page_sort_filter_and_refuse_bad_parameters() {
    let env = Env::new("lists");
    let p = &env.provider;
    let (vpc, sub) = network(p, "10.0.0.0/16");
    let mut ids = Vec::new();
    for i in 0..5u16 {
        let port_id = port(p, &sub, "VM", None);
        let s = ok(
            p,
            "POST",
            "/vpc-endpoint-services",
            Some(
                json!({"vpc_id": vpc, "port_id": port_id, "server_type": "VM",
            "service_name": format!("svc{i}"), "ports": [{"client_port": 80, "server_port": 80}]}),
            ),
        );
        ids.push(sid(&s));
    }
    let list = |q: &[(&str, String)]| {
        p.call("GET", &p.path("/vpc-endpoint-services"), q, None)
            .unwrap()
    };
    let all = list(&[
        ("limit", "2".into()),
        ("offset", "1".into()),
        ("sort_dir", "asc".into()),
    ]);
    assert_eq!(all["total_count"], 5);
    assert_eq!(all["endpoint_services"].as_array().unwrap().len(), 2);
    let by_name = list(&[("endpoint_service_name", "SVC3".into())]);
    assert_eq!(by_name["total_count"], 1, "case-insensitive substring");
    let by_id = list(&[("id", ids[2].clone())]);
    assert_eq!(by_id["endpoint_services"][0]["id"], ids[2].as_str());
    let by_update = list(&[("sort_key", "update_at".into()), ("limit", "1000".into())]);
    assert_eq!(by_update["total_count"], 5);
    let path = p.path("/vpc-endpoint-services");
    for (k, v, code) in [
        ("limit", "1001", "EndPoint.0006"),
        ("limit", "-1", "EndPoint.0006"),
        ("offset", "x", "EndPoint.0010"),
        ("sort_key", "created_at", "EndPoint.0017"),
        ("sort_dir", "up", "EndPoint.0018"),
        ("status", "on", "EndPoint.0019"),
    ] {
        let (s, e) = p.raw("GET", &path, &[(k, v.into())], None).unwrap();
        assert_eq!(
            (s, e["error_code"].as_str().unwrap()),
            (400, code),
            "{k}={v}"
        );
    }
    // A name with characters the SDK percent-encodes still matches.
    let q = [("endpoint_service_name", "a b+c/ü".to_string())];
    assert_eq!(p.call("GET", &path, &q, None).unwrap()["total_count"], 0);
}

#[test]
fn tenants_never_see_each_other() {
    let env = Env::new("tenancy");
    let (p, u, x) = (&env.provider, &env.user, &env.stranger);
    let (svc, port_id, vpc) = service(p, true);
    whitelist(p, &svc, "duser");
    let (uvpc, usub) = network(u, "10.0.0.0/16");
    let ep = sid(&endpoint(u, &svc, &uvpc, &usub));
    // The stranger sees nothing and changes nothing.
    fails(
        x,
        "GET",
        &format!("/vpc-endpoint-services/{svc}"),
        None,
        404,
        "EndPoint.0005",
    );
    fails(
        x,
        "PUT",
        &format!("/vpc-endpoint-services/{svc}"),
        Some(json!({"approval_enabled": false})),
        404,
        "EndPoint.0005",
    );
    fails(
        x,
        "DELETE",
        &format!("/vpc-endpoint-services/{svc}"),
        None,
        404,
        "EndPoint.0005",
    );
    fails(
        x,
        "GET",
        &format!("/vpc-endpoint-services/{svc}/connections"),
        None,
        404,
        "EndPoint.0005",
    );
    fails(
        x,
        "GET",
        &format!("/vpc-endpoint-services/{svc}/permissions"),
        None,
        404,
        "EndPoint.0005",
    );
    fails(
        x,
        "POST",
        &format!("/vpc-endpoint-services/{svc}/connections/action"),
        Some(json!({"action": "receive", "endpoints": [ep]})),
        404,
        "EndPoint.0005",
    );
    fails(
        x,
        "GET",
        &format!("/vpc-endpoints/{ep}"),
        None,
        404,
        "EndPoint.2006",
    );
    fails(
        x,
        "DELETE",
        &format!("/vpc-endpoints/{ep}"),
        None,
        404,
        "EndPoint.2006",
    );
    fails(
        x,
        "GET",
        &format!("/vpcs/{vpc}"),
        None,
        404,
        "EndPoint.0005",
    );
    fails(
        x,
        "DELETE",
        &format!("/ports/{port_id}"),
        None,
        404,
        "EndPoint.0005",
    );
    assert_eq!(
        ok(x, "GET", "/vpc-endpoint-services", None)["total_count"],
        0
    );
    assert_eq!(
        ok(x, "GET", "/vpc-endpoint-services/public", None)["total_count"],
        0
    );
    assert_eq!(ok(x, "GET", "/vpc-endpoints", None)["total_count"], 0);
    // The whitelisted user may describe and connect, but not manage.
    fails(
        u,
        "GET",
        &format!("/vpc-endpoint-services/{svc}"),
        None,
        404,
        "EndPoint.0005",
    );
    fails(
        u,
        "POST",
        &format!("/vpc-endpoint-services/{svc}/connections/action"),
        Some(json!({"action": "receive", "endpoints": [ep]})),
        404,
        "EndPoint.0005",
    );
    // A user's endpoint must be in its own VPC.
    fails(
        u,
        "POST",
        "/vpc-endpoints",
        Some(json!({"endpoint_service_id": svc, "vpc_id": vpc, "subnet_id": usub})),
        400,
        "EndPoint.0020",
    );
    // The provider does not see the user's endpoint as its own.
    fails(
        p,
        "GET",
        &format!("/vpc-endpoints/{ep}"),
        None,
        404,
        "EndPoint.2006",
    );
    // A project in the path that is not the credential's.
    let (s, v) = p.raw("GET", "/v1/puser/vpc-endpoints", &[], None).unwrap();
    assert_eq!(
        (s, v["error_code"].as_str().unwrap()),
        (400, "EndPoint.0014"),
        "X-Project-Id differs from the path"
    );
}

#[test]
fn malformed_requests_get_clear_errors_and_change_nothing() {
    let env = Env::new("malformed");
    let p = &env.provider;
    let (vpc, sub) = network(p, "10.0.0.0/16");
    let port_id = port(p, &sub, "VM", None);
    let url = format!("{}{}", env.url(), p.path("/vpc-endpoint-services"));
    let before = env.running().registry.revision();
    let send_raw = |body: &[u8]| -> (u16, Value) {
        // A signed request with an arbitrary body, through the client's signer.
        let text = String::from_utf8_lossy(body).to_string();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match v {
            Value::String(s) => raw_post(p, &url, s.as_bytes()),
            other => p
                .raw("POST", &p.path("/vpc-endpoint-services"), &[], Some(&other))
                .unwrap(),
        }
    };
    for (body, what) in [
        (&b"{not json"[..], "bad JSON"),
        (b"", "empty body"),
        (br#"{"vpc_id": 5, "port_id": "x", "server_type": "VM", "ports": []}"#, "wrong type"),
        (br#"{"vpc_id": "v", "port_id": "x", "server_type": "VM", "ports": [{"client_port": "80"}]}"#, "string port"),
        (br#"{"vpc_id": "v", "port_id": "x", "server_type": "VM", "ports": [], "surprise": 1}"#, "unknown field"),
        (br#"[1, 2]"#, "not an object"),
    ] {
        let (s, v) = send_raw(body);
        assert_eq!((s, v["error_code"].as_str().unwrap_or("")), (400, "EndPoint.0002"), "{what}: {v}");
    }
    // Just over the limit: the server answers 413 once it has read MAX_BODY bytes and closes;
    // the few bytes left fit in the socket buffer, so the client always finishes sending
    // and reads the answer (a 2 MiB body made the client's write fail now and then).
    let huge = format!(
        r#"{{"vpc_id": "{vpc}", "port_id": "{port_id}", "server_type": "VM", "ports": [], "description": "{}"}}"#,
        "a".repeat(control::api::MAX_BODY)
    );
    let (s, v) = raw_post(p, &url, huge.as_bytes());
    assert_eq!(
        (s, v["error_code"].as_str().unwrap_or("")),
        (413, "EndPoint.0024")
    );
    assert_eq!(
        env.running().registry.revision(),
        before,
        "nothing was written"
    );
    fails(p, "GET", "/no-such-thing", None, 404, "APIGW.0101");
    let (s, _) = p
        .raw("PUT", &p.path("/vpc-endpoints"), &[], Some(&json!({})))
        .unwrap();
    assert_eq!(s, 405);
}

/// POST `body` bytes as-is, signed like the SDK.
fn raw_post(c: &control::client::Client, url: &str, body: &[u8]) -> (u16, Value) {
    use control::auth;
    let path = url
        .split_once("//")
        .unwrap()
        .1
        .split_once('/')
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    let host = url
        .split_once("//")
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let date = auth::sdk_date(chrono::Utc::now());
    let hdrs = [
        ("content-type", "application/json;charset=utf-8".to_string()),
        ("host", host),
        ("x-project-id", c.project_id().to_string()),
        ("x-sdk-date", date.clone()),
    ];
    let lookup = |n: &str| hdrs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
    let req = auth::SignedRequest {
        method: "POST",
        path: &path,
        query: "",
        header: &lookup,
        body,
    };
    let authz = auth::authorization(
        &req,
        &["content-type", "host", "x-project-id", "x-sdk-date"],
        PROVIDER.0,
        PROVIDER.1,
    )
    .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .post(url)
        .header("Content-Type", "application/json;charset=utf-8")
        .header("X-Project-Id", c.project_id())
        .header("X-Sdk-Date", &date)
        .header("Authorization", &authz)
        .send(body);
    match resp {
        Ok(r) => {
            let s = r.status().as_u16();
            let t = r.into_body().read_to_string().unwrap_or_default();
            (s, serde_json::from_str(&t).unwrap_or(Value::Null))
        }
        // The server may answer 413 before reading the whole body and close the connection.
        Err(e) => panic!("transport: {e}"),
    }
}

#[test]
fn bad_signatures_and_stale_dates_are_401() {
    let env = Env::new("auth");
    let url = env.url();
    let wrong_sk = control::client::Client::new(&url, PROVIDER.0, "not-the-secret", PROVIDER.3);
    fails(
        &wrong_sk,
        "GET",
        "/vpc-endpoint-services",
        None,
        401,
        "APIGW.0301",
    );
    let unknown = control::client::Client::new(&url, "NOSUCHAK", "x", PROVIDER.3);
    fails(
        &unknown,
        "GET",
        "/vpc-endpoint-services",
        None,
        401,
        "APIGW.0301",
    );
    let other_project = control::client::Client::new(&url, USER.0, USER.1, PROVIDER.3);
    fails(
        &other_project,
        "GET",
        "/vpc-endpoint-services",
        None,
        403,
        "EndPoint.0004",
    );
    // Unsigned, stale, and tampered requests, by hand.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |headers: &[(&str, String)]| {
        let mut b = agent.get(format!("{url}/v1/pprovider/vpc-endpoint-services"));
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        let r = b.call().unwrap();
        let s = r.status().as_u16();
        let v: Value = serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
        assert!(v["request_id"].as_str().is_some_and(|id| !id.is_empty()));
        (
            s,
            v["error_code"].as_str().unwrap().to_string(),
            v["error_msg"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(get(&[]).0, 401);
    let sign_at = |when: chrono::DateTime<chrono::Utc>| {
        let date = control::auth::sdk_date(when);
        let host = url.trim_start_matches("http://").to_string();
        let hdrs = [
            ("content-type", "application/json".to_string()),
            ("host", host),
            ("x-project-id", "pprovider".to_string()),
            ("x-sdk-date", date.clone()),
        ];
        let lookup = |n: &str| hdrs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        let req = control::auth::SignedRequest {
            method: "GET",
            path: "/v1/pprovider/vpc-endpoint-services",
            query: "",
            header: &lookup,
            body: b"",
        };
        let a = control::auth::authorization(
            &req,
            &["content-type", "host", "x-project-id", "x-sdk-date"],
            PROVIDER.0,
            PROVIDER.1,
        )
        .unwrap();
        vec![
            ("Content-Type", "application/json".to_string()),
            ("X-Project-Id", "pprovider".to_string()),
            ("X-Sdk-Date", date),
            ("Authorization", a),
        ]
    };
    let fresh = sign_at(chrono::Utc::now());
    assert_eq!(get_ok(&agent, &url, &fresh), 200);
    let (s, code, msg) = get(&sign_at(
        chrono::Utc::now() - chrono::TimeDelta::minutes(16),
    ));
    assert_eq!((s, code.as_str()), (401, "APIGW.0301"));
    assert!(msg.contains("expired"), "{msg}");
    let (s, _, _) = get(&sign_at(
        chrono::Utc::now() + chrono::TimeDelta::minutes(16),
    ));
    assert_eq!(s, 401);
    let mut tampered = fresh.clone();
    tampered[1].1 = "pprovider2".into();
    assert_eq!(get(&tampered).0, 401, "a signed header changed");
    let mut sm3 = fresh;
    sm3[3].1 = sm3[3].1.replace("SDK-HMAC-SHA256", "SDK-HMAC-SM3");
    assert_eq!(get(&sm3).0, 401);
}

fn get_ok(agent: &ureq::Agent, url: &str, headers: &[(&str, String)]) -> u16 {
    let mut b = agent.get(format!("{url}/v1/pprovider/vpc-endpoint-services"));
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.call().unwrap().status().as_u16()
}

#[test]
fn quotas_are_enforced() {
    let env = Env::with_config("quota", |c| c.quotas.endpoint = 2);
    let (p, u) = (&env.provider, &env.user);
    let (svc, _, _) = service(p, true);
    whitelist(p, &svc, "duser");
    let (uvpc, usub) = network(u, "10.0.0.0/16");
    endpoint(u, &svc, &uvpc, &usub);
    endpoint(u, &svc, &uvpc, &usub);
    fails(
        u,
        "POST",
        "/vpc-endpoints",
        Some(json!({"endpoint_service_id": svc, "vpc_id": uvpc, "subnet_id": usub})),
        400,
        "Endpoint.1018",
    );
    let q = ok(u, "GET", "/quotas", None);
    assert_eq!(
        q["quotas"]["resources"][1],
        json!({"type": "endpoint", "used": 2, "quota": 2})
    );
}

/// Issue 17, item 11: a service's whitelist holds at most 500 entries (the documented
/// default of `[quotas] permission`, one page of the permissions list). A call that would
/// pass it is refused whole with EndPoint.3049 and adds nothing; each service counts its own.
#[test]
fn permissions_have_a_quota_per_service() {
    let env = Env::new("perm-quota");
    let p = &env.provider;
    let (svc, _, _) = service(p, true);
    let (other, _, _) = service(p, true);
    let base = format!("/vpc-endpoint-services/{svc}/permissions");
    let entries = |from: usize, n: usize| -> Vec<Value> {
        (from..from + n)
            .map(|i| json!({"permission": format!("iam:domain::d{i:05}"), "description": ""}))
            .collect()
    };
    let create = |from: usize, n: usize| json!({"permissions": entries(from, n), "permission_type": "domainId"});
    let count = |svc: &str| {
        ok(
            p,
            "GET",
            &format!("/vpc-endpoint-services/{svc}/permissions"),
            None,
        )["total_count"]
            .as_u64()
            .unwrap()
    };
    for batch in 0..9 {
        ok(
            p,
            "POST",
            &format!("{base}/batch-create"),
            Some(create(batch * 50, 50)),
        );
    }
    let names = |from: usize, n: usize| -> Vec<String> {
        (from..from + n)
            .map(|i| format!("iam:domain::d{i:05}"))
            .collect()
    };
    ok(
        p,
        "POST",
        &format!("{base}/action"),
        Some(
            json!({"permissions": names(450, 40), "permission_type": "domainId", "action": "add"}),
        ),
    );
    assert_eq!(count(&svc), 490);
    // Eleven more would make 501: refused whole, nothing added.
    fails(
        p,
        "POST",
        &format!("{base}/batch-create"),
        Some(create(490, 11)),
        400,
        "EndPoint.3049",
    );
    assert_eq!(count(&svc), 490);
    ok(
        p,
        "POST",
        &format!("{base}/batch-create"),
        Some(create(490, 10)),
    );
    assert_eq!(count(&svc), 500);
    fails(
        p,
        "POST",
        &format!("{base}/action"),
        Some(json!({"permissions": ["*"], "permission_type": "domainId", "action": "add"})),
        400,
        "EndPoint.3049",
    );
    assert_eq!(count(&svc), 500);
    // Entries that exist add nothing, so they pass; removing one makes room for one.
    ok(
        p,
        "POST",
        &format!("{base}/action"),
        Some(json!({"permissions": names(0, 3), "permission_type": "domainId", "action": "add"})),
    );
    ok(
        p,
        "POST",
        &format!("{base}/action"),
        Some(
            json!({"permissions": names(0, 1), "permission_type": "domainId", "action": "remove"}),
        ),
    );
    ok(
        p,
        "POST",
        &format!("{base}/action"),
        Some(json!({"permissions": ["*"], "permission_type": "domainId", "action": "add"})),
    );
    assert_eq!(count(&svc), 500);
    // The quota is per service: another service of the same project has its own.
    ok(
        p,
        "POST",
        &format!("/vpc-endpoint-services/{other}/permissions/batch-create"),
        Some(create(0, 50)),
    );
    assert_eq!(count(&other), 50);
}

#[test]
fn expired_endpoints_freeze_until_extended() {
    let env = Env::new("expiry");
    let (p, u) = (&env.provider, &env.user);
    let (svc, _, _) = service(p, false);
    whitelist(p, &svc, "duser");
    let (uvpc, usub) = network(u, "10.0.0.0/16");
    let ep = ok(
        u,
        "POST",
        "/vpc-endpoints",
        Some(json!({"endpoint_service_id": svc, "vpc_id": uvpc, "subnet_id": usub, "duration": 1})),
    );
    let id = sid(&ep);
    assert_eq!(ep["active_status"], json!(["active"]));
    poll_until(
        "the sweeper to freeze the endpoint",
        Duration::from_secs(10),
        || {
            ok(u, "GET", &format!("/vpc-endpoints/{id}"), None)["active_status"]
                == json!(["frozen"])
        },
    )
    .unwrap();
    fails(
        u,
        "PUT",
        &format!("/vpc-endpoints/{id}/expiry"),
        Some(json!({"duration": 0})),
        400,
        "EndPoint.0002",
    );
    let ext = ok(
        u,
        "PUT",
        &format!("/vpc-endpoints/{id}/expiry"),
        Some(json!({"duration": 3600})),
    );
    assert_eq!(ext["active_status"], json!(["active"]));
    assert!(ext["expires_at"].is_string());
    let never = ok(
        u,
        "PUT",
        &format!("/vpc-endpoints/{id}/expiry"),
        Some(json!({"duration": null})),
    );
    assert_eq!(never["expires_at"], Value::Null);
}

#[test]
fn a_restart_restores_everything() {
    let mut env = Env::new("restart");
    let (svc, _, _) = service(&env.provider, true);
    whitelist(&env.provider, &svc, "duser");
    let (uvpc, usub) = network(&env.user, "10.0.0.0/16");
    let ep = sid(&endpoint(&env.user, &svc, &uvpc, &usub));
    ok(
        &env.provider,
        "POST",
        &format!("/vpc-endpoint-services/{svc}/connections/action"),
        Some(json!({"action": "receive", "endpoints": [ep]})),
    );
    let before_eps = ok(&env.user, "GET", "/vpc-endpoints", None);
    let before_svcs = ok(&env.provider, "GET", "/vpc-endpoint-services", None);
    env.restart();
    assert_eq!(ok(&env.user, "GET", "/vpc-endpoints", None), before_eps);
    assert_eq!(
        ok(&env.provider, "GET", "/vpc-endpoint-services", None),
        before_svcs
    );
    assert_eq!(
        ok(
            &env.provider,
            "GET",
            &format!("/vpc-endpoint-services/{svc}/permissions"),
            None
        )["total_count"],
        1
    );
    // A new endpoint does not reuse the restored one's address.
    assert_eq!(endpoint(&env.user, &svc, &uvpc, &usub)["ip"], "10.0.0.3");
    env.wait_live();
}

#[test]
fn the_tables_are_published_before_any_worker_starts() {
    // Flows a planned restart restored are re-checked at their first packet against the
    // tables the workers see: those must already be the real ones, not an empty
    // placeholder that would revoke them.
    let mut env = Env::new("tables-first");
    let (svc, _, pvpc) = service(&env.provider, false);
    whitelist(&env.provider, &svc, "duser");
    let (uvpc, usub) = network(&env.user, "10.0.0.0/16");
    endpoint(&env.user, &svc, &uvpc, &usub);
    let r = env.running.take().unwrap();
    env.rt.block_on(r.shutdown());
    let mut cfg = env.cfg.clone();
    for (i, vpc) in [uvpc, pvpc].into_iter().enumerate() {
        cfg.attachments.push(control::config::AttachmentConfig::new(
            format!("none{i}")
                .to_string()
                .try_into()
                .expect("an interface name"),
            vpc,
        ));
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let seen_in = std::sync::Arc::clone(&seen);
    let running = env
        .rt
        .block_on(control::daemon::start_with(
            &cfg,
            credentials(),
            move |_, tables, _, ready| {
                // Once ready, before any worker runs, the tables are the real ones.
                ready();
                *seen_in.lock().unwrap() = Some(tables.clone().load().accepted().len());
                Ok(control::daemon::Dataplane::none())
            },
        ))
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        Some(1),
        "the accepted connection was in the tables when the workers started"
    );
    env.running = Some(running);
}
