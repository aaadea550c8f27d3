//! The node daemon, in-process: open the store, load the model, start the pusher, the
//! dataplane workers (one set per attachment), the API and admin listeners, and the expiry
//! sweeper. `main.rs` wraps this; tests run it directly on ephemeral ports.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use dataplane::{TablePublisher, Tables, WorkerCounters};

use crate::node::{ConfigStatus, Node, ReloadError, Reloaded, StartWorkers};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, ApiState};
use crate::audit::AuditLog;
use crate::auth::{Credentials, PayloadPolicy, ReplayCache};
use crate::config::DaemonConfig;
use crate::push::{PushStatus, Pusher};
use crate::registry::Registry;
use crate::store::StoreEngine;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The credentials file is unusable.
    #[error(transparent)]
    Credentials(#[from] crate::auth::CredentialsError),
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The audit log could not be opened.
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The API's TLS certificate or key is unusable.
    #[error("API TLS: {0}")]
    Tls(#[from] api::http::TlsError),
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The store's records could not be loaded.
    #[error("cannot load the store: {0}")]
    Load(#[from] crate::registry::LoadError),
    /// A listener could not bind (port busy, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An attachment's interface is missing or cannot be opened.
    #[error("attachment {interface}: {source}")]
    Attachment {
        /// The interface.
        interface: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A thread could not be spawned.
    #[error("cannot spawn a thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// A running daemon.
pub struct Running {
    /// Where the API listens.
    pub api_addr: SocketAddr,
    /// Where the admin endpoints listen.
    pub admin_addr: SocketAddr,
    /// The registry.
    pub registry: Arc<Registry>,
    /// What the pusher published.
    pub push: Arc<PushStatus>,
    /// The reloadable part: the dataplane, the credentials, the config revision.
    pub node: Arc<Node>,
    stop: watch::Sender<bool>,
    stopping: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pusher: Option<std::thread::JoinHandle<()>>,
    /// Other threads the daemon runs (the etcd follower).
    threads: Vec<std::thread::JoinHandle<()>>,
    members: Option<crate::store::members::Membership>,
    election: Option<crate::store::owners::Election>,
}

impl core::fmt::Debug for Running {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Running")
            .field("api_addr", &self.api_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Read the config file again and apply it (see [`crate::node`]): what SIGHUP and
    /// `POST /reload` do.
    ///
    /// # Errors
    /// [`ReloadError`]: nothing changed.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        reload(Arc::clone(&self.node)).await
    }

    /// Stop listeners, the sweeper and the workers, and wait for them.
    pub async fn shutdown(mut self) {
        // The VPCs this node owns go to a standby now, not at the lease's expiry.
        if let Some(e) = self.election.take() {
            e.resign().await;
        }
        if let Some(m) = self.members.take() {
            m.leave().await;
        }
        let _ = self.stop.send(true);
        self.stopping.store(true, Ordering::Relaxed);
        self.registry.close_subscribers();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let pusher = self.pusher.take();
        let threads: Vec<_> = self.threads.drain(..).collect();
        let node = Arc::clone(&self.node);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(t) = pusher {
                let _ = t.join();
            }
            for t in threads {
                let _ = t.join();
            }
            node.stop();
        })
        .await;
    }
}

async fn reload(node: Arc<Node>) -> Result<Reloaded, ReloadError> {
    tokio::task::spawn_blocking(move || node.reload())
        .await
        .unwrap_or_else(|e| Err(ReloadError::Invalid(format!("the reload panicked: {e}"))))
}

/// Ends the process (exit code 70) when dropped, unless the daemon is stopping: held by a
/// thread the daemon cannot run without.
struct ExitUnlessStopping(Arc<AtomicBool>, &'static str);

impl Drop for ExitUnlessStopping {
    fn drop(&mut self) {
        if !self.0.load(Ordering::Relaxed) {
            tracing::error!(thread = self.1, "a thread the daemon needs ended; exiting");
            std::process::exit(70);
        }
    }
}

/// The process-wide Prometheus recorder (installed once).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then our handle renders nothing new.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    push: Arc<PushStatus>,
    node: Arc<Node>,
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
                })
                .collect(),
            owned_vpcs: s.push.owned_vpcs(),
        }
    }
}

fn admin_router(state: AdminState) -> Router {
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
                metrics::gauge!("vpcep_conntrack_flows")
                    .set(s.node.view().conntrack.as_ref().map_or(0, |c| c.len()) as f64);
                metrics::gauge!("vpcep_store_revision").set(s.registry.revision() as f64);
                metrics::gauge!("vpcep_published_generation")
                    .set(s.push.published_generation.load(Ordering::Relaxed) as f64);
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    prometheus().render(),
                )
                    .into_response()
            }),
        )
        .with_state(state)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })
}

/// See [`Dataplane::on_stop`].
pub type OnStop = Box<dyn FnOnce(&[String]) + Send>;

/// The dataplane of this node: its workers and their shared tables.
pub struct Dataplane {
    /// Each worker's counters.
    pub counters: Vec<Arc<WorkerCounters>>,
    /// The shared conntrack.
    pub conntrack: Option<Arc<dataplane::conntrack::ConnTrack>>,
    /// Worker threads.
    pub threads: Vec<std::thread::JoinHandle<()>>,
    /// Runs after the workers stopped: saves conntrack, and undoes what the start did to
    /// the interfaces, except those the next dataplane (a reload's) keeps, given as the
    /// argument (none at the daemon's own stop).
    pub on_stop: Option<OnStop>,
    /// Each attachment's VPC id and link, in attachment order.
    pub links: Vec<(String, Arc<dyn LinkStatus>)>,
}

impl Dataplane {
    /// No dataplane: no workers, no conntrack, no links (an API-only node, or a starter
    /// for tests and benches that carry no packets).
    pub fn none() -> Self {
        Self {
            counters: Vec::new(),
            conntrack: None,
            threads: Vec::new(),
            on_stop: None,
            links: Vec::new(),
        }
    }
}

impl core::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Dataplane")
            .field("workers", &self.counters.len())
            .finish_non_exhaustive()
    }
}

/// Start the daemon with `credentials`, using `start_workers` to bring up the dataplane on
/// the attachments (the binary passes the AF_PACKET one; with no attachments it is not
/// called). A reload calls it again with the new config, after the old dataplane stopped.
///
/// # Errors
/// [`DaemonError`].
pub async fn start_with(
    cfg: &DaemonConfig,
    credentials: Credentials,
    start_workers: impl Fn(
        &DaemonConfig,
        &dataplane::TableReader,
        Arc<AtomicBool>,
        &mut dyn FnMut(),
    ) -> Result<Dataplane, DaemonError>
    + Send
    + Sync
    + 'static,
) -> Result<Running, DaemonError> {
    cfg.validate()?;
    // Before anything starts, so a bad certificate stops nothing half-started.
    let api_tls = match (&cfg.api.tls_cert, &cfg.api.tls_key) {
        (Some(cert), Some(key)) => Some(api::http::tls_acceptor(cert, key)?),
        _ => None,
    };
    let _ = prometheus();
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| DaemonError::DataDir {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    let opened = crate::store::config::open(cfg.store, &cfg.etcd, &cfg.data_dir)?;
    let snat = cfg.snat()?;
    let registry = Arc::new(
        Registry::open(opened.store, &cfg.region, cfg.quotas)?.with_reserved(
            ipnet::Ipv4Net::new(snat.addr(), snat.prefix())
                .expect("a parsed Ipv4Cidr has a prefix of at most 32"),
        ),
    );
    // Signed writes are claimed in the store too (through the registry, which notes whether
    // it answered): by one node of a cluster, once across restarts.
    let replay = ReplayCache::new(cfg.api.replay_cache_entries)
        .with_store(Arc::clone(&registry) as Arc<dyn crate::auth::Claims>);
    let stopping = Arc::new(AtomicBool::new(false));
    let push = Arc::new(PushStatus::default());
    let notes = registry.subscribe();
    let pusher = Arc::new(Mutex::new(Pusher::new(
        TablePublisher::new(Tables::new(snat)),
        crate::node::attachments(cfg),
        snat,
        Arc::clone(&push),
    )));
    if opened.etcd.is_some() && cfg.etcd.failover {
        // A standby of every attachment until the election says what it owns.
        lock_pusher(&pusher).set_owned(Some(std::collections::BTreeSet::new()));
    }
    let start: Arc<StartWorkers> = Arc::new(start_workers);
    let node = Arc::new(Node::start(
        cfg.clone(),
        credentials,
        start,
        Arc::clone(&pusher),
        Arc::clone(&registry),
    )?);
    let r = Arc::clone(&registry);
    let p = Arc::clone(&pusher);
    let pusher_thread = std::thread::Builder::new()
        .name("vpcep-pusher".into())
        .spawn({
            let stopping = Arc::clone(&stopping);
            move || {
                // The pusher ends only when the daemon stops. If it ends otherwise (a panic
                // unwinding in a debug build; release builds abort), nothing would enforce
                // what the API goes on acknowledging: exit loudly instead.
                let _guard = ExitUnlessStopping(stopping, "the pusher");
                Pusher::run(&p, &r, &notes);
            }
        })
        .map_err(DaemonError::Spawn)?;
    let mut threads = Vec::new();
    if cfg.store == StoreEngine::Etcd {
        // A shared store: other nodes' commits come through the follower.
        let follower = crate::registry::follow::spawn(Arc::clone(&registry), Arc::clone(&stopping));
        threads.push(follower.map_err(DaemonError::Spawn)?);
    }

    let api_listener = bind(cfg.api_listen).await?;
    let admin_listener = bind(cfg.admin_listen).await?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|source| DaemonError::Bind {
            addr: cfg.api_listen,
            source,
        })?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|source| DaemonError::Bind {
            addr: cfg.admin_listen,
            source,
        })?;
    let (stop, stop_rx) = watch::channel(false);
    let api_state = ApiState {
        registry: Arc::clone(&registry),
        credentials: node.credentials(),
        window: cfg.auth_window(),
        payload: if cfg.api.allow_unsigned_payload {
            PayloadPolicy::AllowUnsigned
        } else {
            PayloadPolicy::RequireHash
        },
        replay: Arc::new(replay),
        body_timeout: Duration::from_secs(cfg.api.body_timeout_secs),
        rate: Arc::new(cfg.rate_limit()),
        audit: Some(Arc::new(
            AuditLog::open(&cfg.data_dir, cfg.audit.max_bytes, cfg.audit.files).map_err(
                |source| DaemonError::Audit {
                    path: cfg.data_dir.join(crate::audit::FILE).display().to_string(),
                    source,
                },
            )?,
        )),
    };
    let admin_state = AdminState {
        registry: Arc::clone(&registry),
        push: Arc::clone(&push),
        node: Arc::clone(&node),
    };
    // With etcd: this node in the member list, and `/cluster` on the admin listener.
    let members = opened.etcd.as_ref().map(|etcd| {
        crate::cluster::join(
            etcd,
            cfg,
            api_addr,
            Arc::clone(&registry),
            Arc::clone(&push),
            Arc::clone(&node),
        )
    });
    let election = match &opened.etcd {
        Some(etcd) => crate::cluster::elect(etcd, cfg, Arc::clone(&pusher), Arc::clone(&node))
            .map_err(DaemonError::Spawn)?,
        None => None,
    };
    let admin = admin_router(admin_state).merge(crate::cluster::router(opened.etcd));
    let mut tasks = Vec::new();
    for (listener, router, tls) in [
        (api_listener, api::router(api_state), api_tls),
        (admin_listener, admin, None),
    ] {
        tasks.push(tokio::spawn(api::http::serve(
            listener,
            router,
            cfg.http_limits(),
            tls,
            stop_rx.clone(),
        )));
    }
    // The expiry sweeper: sleeps until the next endpoint's expiry second (at most a second,
    // so endpoints created or extended meanwhile are seen), then freezes what expired.
    let r = Arc::clone(&registry);
    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let wait_ms = r
                .next_expiry()
                .map_or(1000, |t| t.saturating_mul(1000).saturating_sub(now_ms))
                .clamp(10, 1000);
            let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1000));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = rx.wait_for(|s| *s) => break,
            }
            let r = Arc::clone(&r);
            let now = chrono::Utc::now().timestamp();
            match tokio::task::spawn_blocking(move || r.freeze_expired(now)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(frozen = n, "endpoints expired"),
                Ok(Err(e)) => tracing::warn!(error = %e, "expiry sweep failed; will retry"),
                _ => {}
            }
        }
    }));
    tracing::info!(%api_addr, %admin_addr, attachments = cfg.attachments.len(), "vpcepd started");
    Ok(Running {
        api_addr,
        admin_addr,
        registry,
        push,
        node,
        stop,
        stopping,
        tasks,
        pusher: Some(pusher_thread),
        threads,
        members,
        election,
    })
}

fn lock_pusher(p: &Mutex<Pusher>) -> std::sync::MutexGuard<'_, Pusher> {
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::ExitUnlessStopping;

    const CHILD: &str = "VPCEP_TEST_EXIT_GUARD";

    /// In a child process (this test binary run again), a thread holding the guard dies:
    /// a panic in the pusher, say, or the end of a worker's join thread.
    fn child(stopping: bool) -> Option<i32> {
        let out = Command::new(std::env::current_exe().ok()?)
            .args([
                "--exact",
                "daemon::tests::a_thread_the_daemon_needs_ends_the_process_loudly_unless_it_is_stopping",
                "--nocapture",
            ])
            .env(CHILD, if stopping { "stopping" } else { "running" })
            .output()
            .ok()?;
        out.status.code()
    }

    #[test]
    fn a_thread_the_daemon_needs_ends_the_process_loudly_unless_it_is_stopping() {
        if let Some(mode) = std::env::var_os(CHILD) {
            let stopping = Arc::new(AtomicBool::new(mode == "stopping"));
            let t = std::thread::spawn(move || {
                let _guard = ExitUnlessStopping(stopping, "a test thread");
                panic!("the thread dies");
            });
            let _ = t.join();
            // Reached only if the guard let the process live.
            std::process::exit(0);
        }
        assert_eq!(child(false), Some(70), "a running daemon exits with 70");
        assert_eq!(
            child(true),
            Some(0),
            "a stopping daemon's threads end quietly"
        );
    }
}
