//! The admin listener (`[admin] listen`, loopback by default, unauthenticated): `/healthz`,
//! `/status` (what is live: store revision, published and loaded table generations,
//! attachments with their links and ingress drop, ownership), `POST /reload`, and
//! `/metrics` (Prometheus). The daemon's node answers through [`AdminNode`], so this module
//! knows nothing of how the daemon is built.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use dataplane::WorkerCounters;
use dataplane::stats::WorkerStats;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

use crate::push::PushStatus;
use crate::registry::Registry;

/// What the admin endpoints ask of the running node (the daemon's reloadable part).
pub trait AdminNode: Send + Sync {
    /// The live dataplane.
    fn view(&self) -> Arc<DataplaneView>;
    /// Every worker's counters, summed.
    fn totals(&self) -> WorkerStats;
    /// The `config` block of `/status`.
    fn config_status(&self) -> ConfigStatus;
    /// Read the config again and apply it (blocking: the endpoint runs it off the async
    /// threads).
    ///
    /// # Errors
    /// [`ReloadError`]: nothing changed.
    fn reload(&self) -> Result<Reloaded, ReloadError>;
}

/// What `/status` and `/metrics` read of the live dataplane.
#[derive(Default)]
pub struct DataplaneView {
    /// Each worker's counters.
    pub counters: Vec<Arc<WorkerCounters>>,
    /// The shared conntrack.
    pub conntrack: Option<Arc<dataplane::conntrack::ConnTrack>>,
    /// Each attachment's VPC id and link, in attachment order.
    pub links: Vec<(String, Arc<dyn LinkStatus>)>,
    /// How many times a forwarded frame is copied with the I/O settings running.
    pub copies: Option<dataplane::io::Copies>,
}

impl core::fmt::Debug for DataplaneView {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DataplaneView")
            .field("workers", &self.counters.len())
            .field("attachments", &self.links.len())
            .finish_non_exhaustive()
    }
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The daemon was started without a config source (tests, embedded use).
    #[error("this daemon has no config file to reload")]
    NoSource,
    /// The files do not read, parse or validate.
    #[error("{0}")]
    Invalid(String),
    /// Settings that need a restart changed.
    #[error("these settings change only with a restart: {}", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    /// The new dataplane did not start; the old one was started again.
    #[error("the new attachments did not start ({0}); the previous ones run on")]
    Dataplane(String),
}

/// What a successful reload did.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    /// The config revision now running.
    pub revision: u64,
    /// Whether the dataplane was rebuilt (attachments or conntrack changed).
    pub dataplane_rebuilt: bool,
    /// How long the workers were stopped, in milliseconds (0 if not rebuilt).
    pub dataplane_gap_ms: f64,
    /// Attachments now.
    pub attachments: usize,
    /// Key pairs now.
    pub credentials: usize,
}

/// The `config` block of `/status`.
#[derive(Debug, Serialize)]
pub struct ConfigStatus {
    /// 1 at start, one more at every successful reload.
    pub revision: u64,
    /// Reloads refused since the start.
    pub reloads_failed: u64,
    /// Why the last refused reload was refused (cleared by a successful one).
    pub last_error: Option<String>,
}

/// Bucket bounds of `vpcep_api_request_seconds`: a read takes well under a millisecond, a
/// durable write an fsync or an etcd round trip.
const API_SECONDS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The process-wide Prometheus recorder (installed once).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // The API's latency is a histogram with buckets (it can be summed across nodes
        // and read with `histogram_quantile`); other histograms stay summaries.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("vpcep_api_request_seconds".into()),
                &API_SECONDS_BUCKETS,
            )
            .expect("fails only for an empty list of buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then our handle renders nothing new.
        let _ = metrics::set_global_recorder(recorder);
        register_at_zero();
        handle
    })
}

/// Counters that move only when something goes wrong (or on an operator's action) are
/// exported from the start, at zero: a series that appears only at its first increment
/// hides that increment from `rate()` and `increase()`, and from the alerts built on them.
fn register_at_zero() {
    for name in [
        "vpcep_api_requests_total",
        "vpcep_api_auth_failures_total",
        "vpcep_api_throttled_total",
        "vpcep_api_replays_refused_total",
        "vpcep_api_replay_cache_full_total",
        "vpcep_api_replay_store_failures_total",
        "vpcep_api_body_timeouts_total",
        "vpcep_audit_write_failures_total",
        "vpcep_push_generations_total",
        "vpcep_store_conflicts_total",
        "vpcep_store_resyncs_total",
        "vpcep_store_undecodable_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for result in ["ok", "failed"] {
        metrics::counter!("vpcep_config_reloads_total", "result" => result).increment(0);
    }
}

/// What the admin endpoints read.
#[allow(missing_debug_implementations)] // the node is a trait object
#[derive(Clone)]
pub struct AdminState {
    /// The registry (store revision and health).
    pub registry: Arc<Registry>,
    /// What the pusher published.
    pub push: Arc<PushStatus>,
    /// The node.
    pub node: Arc<dyn AdminNode>,
    /// The per-endpoint and per-service figures (their series follow the others).
    pub meters: Option<Arc<crate::meters::MeterBook>>,
}

/// What `/status` shows of one attachment's link (the AF_PACKET transmit socket, shared by
/// the workers, keeps it).
pub trait LinkStatus: Send + Sync {
    /// The interface name.
    fn interface(&self) -> String;
    /// `up`, `down` or `gone`.
    fn state(&self) -> &'static str;
    /// Times the link went away since the daemon started.
    fn flaps(&self) -> u64;
    /// Whether the kernel ingress drop is in place on the interface now (asked of the
    /// kernel, not remembered).
    fn ingress_drop(&self) -> bool;
    /// Frames not sent because the transmit ring was full (`tx = "ring"`).
    fn tx_ring_full(&self) -> u64 {
        0
    }
}

/// One attachment in `/status`.
#[derive(Debug, Serialize)]
struct AttachmentView {
    interface: String,
    vpc_id: String,
    /// Whether this node owns the VPC's addresses (false: a standby; see `etcd.failover`).
    owner: bool,
    state: &'static str,
    flaps: u64,
    /// The kernel holds the ingress drop on the interface (`ingress_drop` in the config):
    /// the node's own stack spends nothing on the attachment's frames.
    ingress_drop: bool,
    /// Frames not sent because the transmit ring was full (`tx = "ring"`).
    tx_ring_full: u64,
}

/// `/status` `copies_per_frame`: see [`dataplane::io::Copies`].
#[derive(Debug, Serialize)]
struct CopiesView {
    receive: u8,
    transmit: u8,
    by_daemon: u8,
    total: u8,
}

/// The `/status` document: the store revision, what the pusher published, and the
/// generation each worker has loaded, so a caller can wait for "my change is live".
#[derive(Debug, Serialize)]
struct Status {
    revision: u64,
    store_up: bool,
    applied_revision: u64,
    published_generation: u64,
    worker_generations: Vec<u64>,
    all_workers_current: bool,
    accepted_entries: u64,
    endpoint_addresses: u64,
    conntrack_flows: usize,
    config: ConfigStatus,
    attachments: Vec<AttachmentView>,
    /// How many times a forwarded frame's bytes are copied on its way through, with the I/O
    /// settings running (absent without a dataplane).
    #[serde(skip_serializing_if = "Option::is_none")]
    copies_per_frame: Option<CopiesView>,
    /// The VPC ids this node owns when the cluster elects owners (absent: it owns all).
    #[serde(skip_serializing_if = "Option::is_none")]
    owned_vpcs: Option<Vec<String>>,
}

impl Status {
    fn of(s: &AdminState) -> Self {
        let published = s.push.published_generation.load(Ordering::Acquire);
        let dp = s.node.view();
        let workers: Vec<u64> = dp
            .counters
            .iter()
            .map(|w| w.generation.load(Ordering::Relaxed))
            .collect();
        Self {
            revision: s.registry.revision(),
            store_up: s.registry.store_up(),
            applied_revision: s.push.applied_revision.load(Ordering::Acquire),
            published_generation: published,
            all_workers_current: workers.iter().all(|g| *g == published),
            worker_generations: workers,
            accepted_entries: s.push.accepted_entries.load(Ordering::Relaxed),
            endpoint_addresses: s.push.endpoint_addresses.load(Ordering::Relaxed),
            conntrack_flows: dp.conntrack.as_ref().map_or(0, |c| c.len()),
            config: s.node.config_status(),
            attachments: dp
                .links
                .iter()
                .map(|(vpc_id, l)| AttachmentView {
                    interface: l.interface(),
                    vpc_id: vpc_id.clone(),
                    owner: s.push.owns(vpc_id),
                    state: l.state(),
                    flaps: l.flaps(),
                    ingress_drop: l.ingress_drop(),
                    tx_ring_full: l.tx_ring_full(),
                })
                .collect(),
            copies_per_frame: dp.copies.map(|c| CopiesView {
                receive: c.receive,
                transmit: c.transmit,
                by_daemon: c.by_daemon,
                total: c.total(),
            }),
            owned_vpcs: s.push.owned_vpcs(),
        }
    }
}

/// The admin router over `state`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/reload",
            post(|State(s): State<AdminState>| async move {
                match reload(s.node).await {
                    Ok(r) => (StatusCode::OK, axum::Json(serde_json::json!(r))),
                    Err(e) => (
                        match e {
                            ReloadError::NoSource => StatusCode::CONFLICT,
                            _ => StatusCode::UNPROCESSABLE_ENTITY,
                        },
                        axum::Json(serde_json::json!({ "error": e.to_string() })),
                    ),
                }
            }),
        )
        .route(
            "/status",
            get(|State(s): State<AdminState>| async move { axum::Json(Status::of(&s)) }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AdminState>| async move {
                dataplane::stats::export(&s.node.totals());
                export_gauges(&s);
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    {
                        let mut text = prometheus().render();
                        if let Some(m) = &s.meters {
                            text.push_str(&m.render());
                        }
                        text
                    },
                )
                    .into_response()
            }),
        )
        .with_state(state)
}

/// Set the gauges read at scrape time: conntrack use, the store and the pusher, the workers'
/// generations, the attachments' links.
fn export_gauges(s: &AdminState) {
    let dp = s.node.view();
    let (flows, capacity) = dp
        .conntrack
        .as_ref()
        .map_or((0, 0), |c| (c.len(), c.capacity()));
    metrics::gauge!("vpcep_conntrack_flows").set(flows as f64);
    metrics::gauge!("vpcep_conntrack_capacity").set(capacity as f64);
    metrics::gauge!("vpcep_store_revision").set(s.registry.revision() as f64);
    metrics::gauge!("vpcep_store_up").set(if s.registry.store_up() { 1.0 } else { 0.0 });
    metrics::gauge!("vpcep_applied_revision")
        .set(s.push.applied_revision.load(Ordering::Acquire) as f64);
    let published = s.push.published_generation.load(Ordering::Relaxed);
    metrics::gauge!("vpcep_published_generation").set(published as f64);
    let behind = dp
        .counters
        .iter()
        .filter(|w| w.generation.load(Ordering::Relaxed) != published)
        .count();
    metrics::gauge!("vpcep_workers").set(dp.counters.len() as f64);
    metrics::gauge!("vpcep_workers_behind").set(behind as f64);
    // Counted by state rather than one series per interface, so an attachment removed by
    // a reload leaves no series behind at its last value; `/status` names them.
    for state in ["up", "down", "gone"] {
        let n = dp.links.iter().filter(|(_, l)| l.state() == state).count();
        metrics::gauge!("vpcep_attachments", "state" => state).set(n as f64);
    }
}

/// [`AdminNode::reload`] off the async threads.
///
/// # Errors
/// [`ReloadError`]: nothing changed.
pub async fn reload(node: Arc<dyn AdminNode>) -> Result<Reloaded, ReloadError> {
    tokio::task::spawn_blocking(move || node.reload())
        .await
        .unwrap_or_else(|e| Err(ReloadError::Invalid(format!("the reload panicked: {e}"))))
}
