//! A daemon in-process on ephemeral ports with a fresh data directory, and signing clients
//! for three tenants: a provider, a user, and a stranger.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use control::client::Client;
use control::config::DaemonConfig;
use control::daemon::{self, Running};
use serde_json::{Value, json};

pub use testkit::poll_until;
pub use testkit::tenants::{PROVIDER, STRANGER, USER, credentials};

#[allow(missing_debug_implementations)]
pub struct Env {
    pub rt: tokio::runtime::Runtime,
    pub running: Option<Running>,
    pub dir: PathBuf,
    pub cfg: DaemonConfig,
    pub provider: Client,
    pub user: Client,
    pub stranger: Client,
}

/// A directory of its own under the system's temp dir, removed when dropped (tests that
/// fail mid-way leave nothing behind either, since the guard drops while unwinding).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Hand the directory to an owner that removes it itself (`Env` does, on drop).
    pub fn into_path(self) -> PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on loopback (for a child `vpcepd` that must be told its ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Write the provider's credentials and a `vpcepd.toml` into `dir` (data in `dir/data`,
/// listening on `api` and `admin`, then `extra`); the config's path.
pub fn daemon_files(dir: &std::path::Path, api: &str, admin: &str, extra: &str) -> PathBuf {
    std::fs::write(
        dir.join("credentials.toml"),
        testkit::tenants::credentials_toml(&[PROVIDER]),
    )
    .unwrap();
    let cfg = dir.join("vpcepd.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\ncredentials = \"{}\"\napi_listen = \"{api}\"\nadmin_listen = \"{admin}\"\n{extra}",
            dir.join("data").display(),
            dir.join("credentials.toml").display()
        ),
    )
    .unwrap();
    cfg
}

pub fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "vpcep-{tag}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

impl Env {
    pub fn new(tag: &str) -> Self {
        Self::with_config(tag, |_| {})
    }

    pub fn with_config(tag: &str, f: impl FnOnce(&mut DaemonConfig)) -> Self {
        Self::with_credentials(tag, credentials(), f)
    }

    /// The same, with `creds` as the credentials file.
    pub fn with_credentials(
        tag: &str,
        creds: control::auth::Credentials,
        f: impl FnOnce(&mut DaemonConfig),
    ) -> Self {
        let dir = temp_dir(tag).into_path();
        let mut cfg = DaemonConfig {
            data_dir: dir.clone(),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            ..DaemonConfig::default()
        };
        f(&mut cfg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = rt
            .block_on(daemon::start_with(&cfg, creds, |_, _, _, _| {
                unreachable!("no attachments")
            }))
            .unwrap();
        let url = format!("http://{}", running.api_addr);
        let client = |t: (&str, &str, &str, &str)| Client::new(&url, t.0, t.1, t.3);
        Self {
            provider: client(PROVIDER),
            user: client(USER),
            stranger: client(STRANGER),
            rt,
            running: Some(running),
            dir,
            cfg,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.running().api_addr)
    }

    /// Stop the daemon and start a new one on the same data directory (same ports: 0).
    pub fn restart(&mut self) {
        self.restart_with(|_, _, _, _| unreachable!("no attachments"));
    }

    /// The same, with `start` as the dataplane starter (called for attachments, at the
    /// start and at every reload that changes them).
    pub fn restart_with(
        &mut self,
        start: impl Fn(
            &DaemonConfig,
            &dataplane::TableReader,
            std::sync::Arc<std::sync::atomic::AtomicBool>,
            &mut dyn FnMut(),
        ) -> Result<daemon::Dataplane, daemon::DaemonError>
        + Send
        + Sync
        + 'static,
    ) {
        let r = self.running.take().unwrap();
        self.rt.block_on(r.shutdown());
        let running = self
            .rt
            .block_on(daemon::start_with(&self.cfg, credentials(), start))
            .unwrap();
        let url = format!("http://{}", running.api_addr);
        self.provider = Client::new(&url, PROVIDER.0, PROVIDER.1, PROVIDER.3);
        self.user = Client::new(&url, USER.0, USER.1, USER.3);
        self.stranger = Client::new(&url, STRANGER.0, STRANGER.1, STRANGER.3);
        self.running = Some(running);
    }

    /// Start a daemon again on the same data directory after `running` was taken and shut
    /// down (to change the store in between).
    pub fn restart_from_stopped(&mut self) {
        assert!(self.running.is_none());
        let running = self
            .rt
            .block_on(daemon::start_with(
                &self.cfg,
                credentials(),
                |_, _, _, _| unreachable!(),
            ))
            .unwrap();
        let url = format!("http://{}", running.api_addr);
        self.provider = Client::new(&url, PROVIDER.0, PROVIDER.1, PROVIDER.3);
        self.user = Client::new(&url, USER.0, USER.1, USER.3);
        self.stranger = Client::new(&url, STRANGER.0, STRANGER.1, STRANGER.3);
        self.running = Some(running);
    }

    /// Wait until the pusher has published the registry's current revision.
    pub fn wait_live(&self) {
        let r = self.running();
        let want = r.registry.revision();
        poll_until("the pusher to catch up", Duration::from_secs(5), || {
            r.push
                .applied_revision
                .load(std::sync::atomic::Ordering::Acquire)
                >= want
        })
        .unwrap();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Call and expect success.
pub fn ok(c: &Client, method: &str, path: &str, body: Option<Value>) -> Value {
    c.call(method, &c.path(path), &[], body.as_ref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Call and expect an error with `code` and `status`.
pub fn fails(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
    code: &str,
) -> Value {
    let (s, v) = c.raw(method, &c.path(path), &[], body.as_ref()).unwrap();
    assert_eq!(
        (s, v["error_code"].as_str().unwrap_or("")),
        (status, code),
        "{method} {path}: {v}"
    );
    assert!(v["error_msg"].as_str().is_some_and(|m| !m.is_empty()));
    v
}

/// A VPC with one /24 subnet for `c`; returns (vpc, subnet).
pub fn network(c: &Client, cidr16: &str) -> (String, String) {
    let vpc = ok(
        c,
        "POST",
        "/vpcs",
        Some(json!({"vpc": {"name": "v", "cidr": cidr16}})),
    )["vpc"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = cidr16.split('/').next().unwrap();
    let sub = ok(
        c,
        "POST",
        "/subnets",
        Some(json!({"subnet": {"vpc_id": vpc, "cidr": format!("{base}/24")}})),
    )["subnet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    (vpc, sub)
}

pub fn port(c: &Client, subnet: &str, kind: &str, ip: Option<&str>) -> String {
    ok(
        c,
        "POST",
        "/ports",
        Some(json!({"port": {"subnet_id": subnet, "server_type": kind, "ip": ip}})),
    )["port"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A provider service on a new VM port, TCP 8080 -> 80; returns (service id, port id, vpc).
pub fn service(c: &Client, approval: bool) -> (String, String, String) {
    let (vpc, sub) = network(c, "10.0.0.0/16");
    let p = port(c, &sub, "VM", Some("10.0.0.10"));
    let s = ok(
        c,
        "POST",
        "/vpc-endpoint-services",
        Some(
            json!({"vpc_id": vpc, "port_id": p, "server_type": "VM", "approval_enabled": approval,
                    "ports": [{"client_port": 8080, "server_port": 80, "protocol": "TCP"}], "service_name": "web"}),
        ),
    );
    (s["id"].as_str().unwrap().to_string(), p, vpc)
}

pub fn whitelist(c: &Client, svc: &str, domain: &str) {
    ok(
        c,
        "POST",
        &format!("/vpc-endpoint-services/{svc}/permissions/action"),
        Some(
            json!({"permissions": [format!("iam:domain::{domain}")], "permission_type": "domainId", "action": "add"}),
        ),
    );
}

pub fn endpoint(c: &Client, svc: &str, vpc: &str, sub: &str) -> Value {
    ok(
        c,
        "POST",
        "/vpc-endpoints",
        Some(json!({"endpoint_service_id": svc, "vpc_id": vpc, "subnet_id": sub})),
    )
}
