//! The console's server side: its files with their security headers, and sign-in with a
//! user name and password (`/v3/auth/tokens`), whose token then stands for the user's
//! project on the API, is refused for other projects, is audited, and ends at sign-out.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use control::auth::session::{ConsoleUser, hash_password};
use serde_json::{Value, json};

use crate::common::{Env, USER, credentials};

const PASSWORD: &str = "correct horse battery staple";

fn env(tag: &str, f: impl FnOnce(&mut control::config::DaemonConfig)) -> Env {
    let hash = hash_password(PASSWORD).unwrap();
    let creds = credentials()
        .with_users(vec![ConsoleUser {
            name: "alice".into(),
            password_hash: hash,
            domain_id: USER.2.into(),
            project_id: USER.3.into(),
        }])
        .unwrap();
    Env::with_credentials(tag, creds, f)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Status, headers and JSON body (`Null` when empty) of `method url` with `headers`.
fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, ureq::http::HeaderMap, Value) {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(b.to_string())
            .unwrap(),
        None => req.body(String::new()).unwrap(),
    };
    let mut resp = agent().run(req).unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, json)
}

fn sign_in_body(name: &str, password: &str) -> Value {
    json!({"auth": {"identity": {"methods": ["password"],
        "password": {"user": {"name": name, "password": password, "domain": {"name": USER.2}}}}}})
}

fn sign_in(env: &Env, name: &str, password: &str) -> (u16, Option<String>, Value) {
    let (status, headers, body) = call(
        "POST",
        &format!("{}/v3/auth/tokens", env.url()),
        &[],
        Some(sign_in_body(name, password)),
    );
    let token = headers
        .get("x-subject-token")
        .map(|v| v.to_str().unwrap().to_string());
    (status, token, body)
}

#[test]
fn the_console_is_served_with_a_strict_policy() {
    let env = env("console-files", |_| {});
    let (status, headers, _) = call("GET", &format!("{}/console/", env.url()), &[], None);
    assert_eq!(status, 200);
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert!(h("content-type").unwrap().starts_with("text/html"));
    let csp = h("content-security-policy").unwrap();
    for part in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(h("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(h("x-frame-options").as_deref(), Some("DENY"));
    let (status, headers, _) = call("GET", &format!("{}/console/nope.js", env.url()), &[], None);
    assert_eq!(status, 404);
    assert!(headers.contains_key("content-security-policy"));
    // No route around the API: anything else still needs a signature or a token.
    let (status, _, body) = call("GET", &format!("{}/v1/puser/vpcs", env.url()), &[], None);
    assert_eq!(status, 401, "{body}");
}

#[test]
fn a_signed_in_user_works_in_its_project_only_and_signs_out_everywhere() {
    let env = env("console-token", |_| {});
    let (status, token, body) = sign_in(&env, "alice", PASSWORD);
    assert_eq!(status, 201, "{body}");
    let token = token.expect("X-Subject-Token");
    assert_eq!(body["token"]["project"]["id"], USER.3);
    assert_eq!(body["token"]["user"]["domain"]["id"], USER.2);
    let expires =
        chrono::DateTime::parse_from_rfc3339(body["token"]["expires_at"].as_str().unwrap())
            .unwrap();
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((3500..=3600).contains(&left), "an hour by default: {left}");

    let url = env.url();
    let auth = [("x-auth-token", token.as_str())];
    // Reads and writes in the user's project, as the user's key pair would.
    let (status, _, body) = call(
        "POST",
        &format!("{url}/v1/puser/vpcs"),
        &auth,
        Some(json!({"vpc": {"name": "web", "cidr": "10.9.0.0/16"}})),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    let vpc = body["vpc"]["id"].as_str().unwrap().to_string();
    let via_key = env
        .user
        .call("GET", &env.user.path(&format!("/vpcs/{vpc}")), &[], None)
        .unwrap();
    assert_eq!(
        via_key["vpc"]["name"], "web",
        "the same tenancy as the key pair"
    );
    let (status, _, body) = call("GET", &format!("{url}/v1/puser/vpc-endpoints"), &auth, None);
    assert_eq!(status, 200, "{body}");
    // Another project's path: refused, whatever X-Project-Id says.
    let (status, _, body) = call("GET", &format!("{url}/v1/pprov/vpcs"), &auth, None);
    assert_eq!(status, 403, "{body}");
    let (status, _, _) = call(
        "GET",
        &format!("{url}/v1/pprov/vpcs"),
        &[("x-auth-token", &token), ("x-project-id", "pprov")],
        None,
    );
    assert_eq!(status, 403);
    // The write is audited under the user's name.
    let audit = control::audit::read(&env.dir).unwrap();
    assert!(
        audit.iter().any(|e| e.ak == "user:alice"
            && e.operation == "POST /v1/puser/vpcs"
            && e.status < 300),
        "{audit:?}"
    );

    // A token whose payload was changed is no token.
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = base64_json(
        &json!({"user": "alice", "domain_id": "dprov", "project_id": "pprov", "issued_at": 0, "expires_at": 9_999_999_999i64}),
    );
    parts[1] = &other;
    let forged = parts.join(".");
    let (status, _, body) = call(
        "GET",
        &format!("{url}/v1/pprov/vpcs"),
        &[("x-auth-token", &forged)],
        None,
    );
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("APIGW.0301"))
    );

    // The token describes itself; sign-out ends it.
    let both = [
        ("x-auth-token", token.as_str()),
        ("x-subject-token", token.as_str()),
    ];
    let (status, _, body) = call("GET", &format!("{url}/v3/auth/tokens"), &both, None);
    assert_eq!(
        (status, body["token"]["user"]["name"].as_str()),
        (200, Some("alice"))
    );
    let (status, _, _) = call("DELETE", &format!("{url}/v3/auth/tokens"), &both, None);
    assert_eq!(status, 204);
    let (status, _, body) = call("GET", &format!("{url}/v1/puser/vpcs"), &auth, None);
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("APIGW.0301")),
        "{body}"
    );
}

fn base64_json(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn failed_sign_ins_are_refused_audited_and_limited() {
    let env = env("console-fail", |c| {
        c.api.sign_in_failures = 3;
        c.api.sign_in_window_secs = 600;
    });
    for (name, password) in [("alice", "wrong"), ("mallory", PASSWORD), ("alice", "")] {
        let (status, token, body) = sign_in(&env, name, password);
        assert_eq!((status, token), (401, None), "{body}");
        assert_eq!(body["error_code"], "APIGW.0301");
        assert!(
            body["error_msg"]
                .as_str()
                .unwrap()
                .contains("user name or password")
        );
    }
    // Three failures from this address: even the right password waits now.
    let (status, token, body) = sign_in(&env, "alice", PASSWORD);
    assert_eq!((status, token), (429, None), "{body}");
    assert_eq!(body["error_code"], "EndPoint.0022");
    let audit = control::audit::read(&env.dir).unwrap();
    let sign_ins: Vec<_> = audit
        .iter()
        .filter(|e| e.operation == "POST /v3/auth/tokens")
        .map(|e| (e.ak.split('@').next().unwrap().to_string(), e.status))
        .collect();
    assert_eq!(
        sign_ins,
        [
            ("user:alice".to_string(), 401),
            ("user:mallory".to_string(), 401),
            ("user:alice".to_string(), 401),
            ("user:alice".to_string(), 429),
        ]
    );
    // A malformed body is a parameter error, not a failure of anyone's password.
    let (status, _, body) = call(
        "POST",
        &format!("{}/v3/auth/tokens", env.url()),
        &[],
        Some(json!({"auth": {}})),
    );
    assert_eq!(status, 400, "{body}");
}
