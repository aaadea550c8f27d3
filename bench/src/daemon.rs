//! What apibench and clusterbench share: two tenants, and daemons started in-process with
//! no packet workers.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use control::auth::Credentials;
use control::client::Client;
use control::config::DaemonConfig;
use control::daemon::{self, Dataplane, Running};
use control::model::{ConnectionStatus, Endpoint, EndpointId};
use serde_json::Value;

/// The provider tenant: (AK, SK, domain, project).
pub const PROVIDER: (&str, &str, &str, &str) = (
    "BENCHPROVIDER0000001",
    "provider-secret",
    "dprovider",
    "pprovider",
);
/// The user tenant.
pub const USER: (&str, &str, &str, &str) =
    ("BENCHUSER00000000001", "user-secret", "duser", "puser");

/// Both tenants' key pairs.
///
/// # Panics
/// Never: the pairs are valid.
pub fn credentials() -> Credentials {
    testkit::tenants::credentials_of(&[PROVIDER, USER])
}

/// A dataplane starter that carries no packets: the benchmarks measure the control plane.
///
/// # Errors
/// Never.
pub fn no_workers(
    _: &DaemonConfig,
    _: &dataplane::TableReader,
    _: Arc<AtomicBool>,
    _: &mut dyn FnMut(),
) -> Result<Dataplane, daemon::DaemonError> {
    Ok(Dataplane::none())
}

/// Start a daemon with `cfg` and no packet workers.
///
/// # Panics
/// If it does not start.
pub fn start(rt: &tokio::runtime::Runtime, cfg: &DaemonConfig) -> Running {
    rt.block_on(daemon::start_with(cfg, credentials(), no_workers))
        .expect("daemon starts")
}

/// Call the API and expect success.
///
/// # Panics
/// On an error answer.
pub fn call(c: &Client, method: &str, path: &str, body: Option<Value>) -> Value {
    c.call(method, &c.path(path), &[], body.as_ref())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A user endpoint record awaiting acceptance, for bulk imports: on service `svc`, in VPC
/// `vpc` and subnet `subnet`, at `ip`, with `marker`, created at `now` (Unix seconds).
pub fn pending_endpoint(
    (svc, vpc, subnet): (&str, &str, &str),
    ip: u32,
    marker: u64,
    now: i64,
) -> Endpoint {
    Endpoint {
        id: EndpointId::random(),
        project_id: USER.3.into(),
        domain_id: USER.2.into(),
        service_id: svc.into(),
        vpc_id: vpc.into(),
        subnet_id: subnet.into(),
        ip: std::net::Ipv4Addr::from(ip),
        marker_id: marker,
        status: ConnectionStatus::PendingAcceptance,
        enable_dns: false,
        whitelist: Vec::new(),
        enable_whitelist: false,
        description: String::new(),
        connection_description: String::new(),
        tags: Vec::new(),
        routetables: Vec::new(),
        policy_statement: Vec::new(),
        policy_document: None,
        expires_at: None,
        frozen: false,
        created_at: now,
        updated_at: now,
    }
}
