//! What apibench and clusterbench share: two tenants, and daemons started in-process with
//! no packet workers.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use control::auth::{Credential, Credentials};
use control::client::Client;
use control::config::DaemonConfig;
use control::daemon::{self, Dataplane, Running};
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
    Credentials::from_list(
        [PROVIDER, USER]
            .iter()
            .map(|(ak, sk, d, p)| Credential {
                ak: (*ak).into(),
                sk: (*sk).into(),
                domain_id: (*d).into(),
                project_id: (*p).into(),
            })
            .collect(),
    )
    .expect("valid credentials")
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
