//! The console in real browsers, end to end: a World with a live dataplane (a provider
//! backend, a user client namespace), and `tests/console/run.sh` (headless chromium driven
//! by Playwright) walking every procedure of the user guide's chapters 4 and 5 as a provider
//! and a user, each result checked through the API, and `curl` through an endpoint whose
//! port mapping was edited in the browser; then a smoke run of the same console in Firefox.
//! Run with `cargo test -p vpcep-tests --test netns -- --ignored console::`.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use testkit::*;

const BODY: &str = "hello from the provider's backend\n";

/// `PROVIDER` or `USER` as the walk takes them: `AK:SK:PROJECT_ID:DOMAIN_ID`.
fn keys(t: (&str, &str, &str, &str)) -> String {
    format!("{}:{}:{}:{}", t.0, t.1, t.3, t.2)
}

/// The argon2id hash of `password`, as `vpcepctl hash-password` prints it.
fn hash(password: &str) -> String {
    let mut c = Command::new(bin("vpcepctl"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "vpcepctl hash-password failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Console users for the provider's and the user's projects, added to the world's
/// credentials file (read again at the next reload).
fn add_users(w: &World) {
    let mut creds = std::fs::read_to_string(w.dir.join("credentials.toml")).unwrap();
    for (name, pw, t) in [
        ("prov-admin", "provider pass 1", PROVIDER),
        ("user-admin", "user pass 1", USER),
    ] {
        creds.push_str(&format!(
            "\n[[users]]\nname = \"{name}\"\npassword_hash = \"{}\"\ndomain_id = \"{}\"\nproject_id = \"{}\"\n",
            hash(pw),
            t.2,
            t.3
        ));
    }
    std::fs::write(w.dir.join("credentials.toml"), creds).unwrap();
}

#[test]
#[ignore = "needs root + netns + chromium"]
fn the_console_walks_the_user_guide_in_a_browser() {
    let w = World::new(1).unwrap();
    let _backend = w.http_server("10.0.0.10", 80, BODY).unwrap();
    // The provider's two VMs (10.0.0.10 serves; 10.0.0.11 is the ECS the walk associates
    // after deleting the first) and a load balancer, with the provider interface's MAC.
    let mac = mac_of(&w.provider, "eth0").unwrap();
    let port = |ip: &str, name: &str, kind: &str| {
        let args = [
            "port",
            "create",
            "--subnet",
            s(&w.ids["psub"]),
            "--type",
            kind,
            "--ip",
            ip,
            "--mac",
            &mac,
            "--name",
            name,
        ];
        s(&w.ctl(PROVIDER, &args).unwrap()["port"]["id"]).to_string()
    };
    let backend = port("10.0.0.10", "backend-1", "VM");
    let spare = port("10.0.0.11", "backend-2", "VM");
    let lb = port("10.0.0.12", "elb-1", "LB");
    add_users(&w);
    // A gateway service for "Cloud services", on the provider's attachment.
    w.write_config(&format!(
        "[[gateway_services]]\nname = \"obs\"\nprefixes = [\"100.125.0.0/16\"]\nvpc_id = \"{}\"\n",
        s(&w.ids["pvpc"])
    ))
    .unwrap();
    w.reload().unwrap();

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = std::env::var("SCREENSHOTS")
        .unwrap_or_else(|_| w.dir.join("shots").to_string_lossy().into_owned());
    std::fs::create_dir_all(&shots).unwrap();
    // The browsers and the venv come from the host's network, before the walk enters the
    // node namespace (which has none).
    let install = Command::new("bash")
        .arg(root.join("tests/console/run.sh"))
        .arg("--install")
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "installing the browsers and the venv failed: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    let started = Instant::now();
    // The browser runs in the node namespace, where the API listens on loopback; curl
    // steps enter the user's namespace by name.
    let out = w
        .node
        .command("bash")
        .arg(root.join("tests/console/run.sh"))
        .env("VPCEP_URL", format!("http://127.0.0.1:{}", w.api_port))
        .env("PROVIDER_KEYS", keys(PROVIDER))
        .env("USER_KEYS", keys(USER))
        // Both sign in with a password (guide 6.2); the AK/SK sign-in and its signer are
        // walked by run.sh without these (see walk.py).
        .env("PROVIDER_LOGIN", "prov-admin:provider pass 1")
        .env("USER_LOGIN", "user-admin:user pass 1")
        .env("PROVIDER_VPC", s(&w.ids["pvpc"]))
        .env("PROVIDER_SUBNET", s(&w.ids["psub"]))
        .env("PROVIDER_PORT", &backend)
        .env("SPARE_PORT", &spare)
        .env("LB_PORT", &lb)
        .env("USER_VPC", s(&w.ids["uvpcs"][0]))
        .env("USER_SUBNET", s(&w.ids["usubs"][0]))
        .env("CLIENT_NS", &w.users[0].name)
        .env("EP_IP", "10.0.0.200")
        .env("BACKEND_BODY", BODY)
        .env("GATEWAY", "1")
        .env("SCREENSHOTS", &shots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    eprintln!("console walk: {:.1} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "the console walk failed");
    assert!(
        stdout.contains("walk: ") && stdout.contains(" steps passed in "),
        "the walk did not report its steps"
    );
    assert!(!stdout.contains("SKIPPED"), "no step may be skipped here");
    assert!(stdout.contains("ok  6.2 too many wrong passwords"));
    assert!(
        stdout.contains("firefox smoke: passed"),
        "the Firefox smoke run did not pass"
    );
    assert!(stdout.contains("ok  4.1 Create Endpoint Service on an Elastic Load Balance"));
    // The walk reached the backend through the endpoint after the edit in the browser.
    assert!(stdout.contains("ok  curl through the endpoint on the edited client port 9090"));
}
