//! The daemon's start, in stages: each stage takes the part of the config it needs and
//! hands the next what it built (as firecracker's `builder.rs` builds a VM in steps).
//! [`super::start_with`] runs them in order.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::dataplane::tables::Ipv4Cidr;
use ::dataplane::{TablePublisher, Tables};
use arc_swap::ArcSwap;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::ExitUnlessStopping;
use super::dataplane::DaemonError;
use crate::api::ApiState;
use crate::api::http::HttpLimits;
use crate::api::tokens::SignInLimit;
use crate::audit::AuditLog;
use crate::auth::{Claims, Credentials, PayloadPolicy, ReplayCache};
use crate::compile::Attachments;
use crate::config::{ApiConfig, DaemonConfig};
use crate::push::{PushStatus, Pusher};
use crate::registry::Registry;
use crate::store::EtcdStore;

/// The API's TLS acceptor, if `api` names a certificate and a key.
///
/// # Errors
/// The certificate or the key does not load.
pub(super) fn tls(api: &ApiConfig) -> Result<Option<TlsAcceptor>, DaemonError> {
    Ok(match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => Some(crate::api::http::tls_acceptor(cert, key)?),
        _ => None,
    })
}

/// What the store stage opens.
pub(super) struct Stores {
    /// The registry over the store, the SNAT range reserved in it.
    pub(super) registry: Arc<Registry>,
    /// The etcd store, for membership and the election (none with redb).
    pub(super) etcd: Option<Arc<EtcdStore>>,
    /// The SNAT range.
    pub(super) snat: Ipv4Cidr,
}

/// The data directory, the store (`store`, `etcd`, `data_dir`), and the registry over it
/// (`region`, `quotas`, the SNAT range reserved).
///
/// # Errors
/// The data directory, the store, or the model it holds.
pub(super) fn stores(cfg: &DaemonConfig) -> Result<Stores, DaemonError> {
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
    Ok(Stores {
        registry,
        etcd: opened.etcd,
        snat,
    })
}

/// What the pusher stage starts.
pub(super) struct Pushing {
    /// The pusher (the node publishes through it too).
    pub(super) pusher: Arc<Mutex<Pusher>>,
    /// What it published.
    pub(super) status: Arc<PushStatus>,
    /// Its thread.
    pub(super) thread: std::thread::JoinHandle<()>,
}

/// The pusher over `registry`'s change notes, publishing tables for `attachments` with
/// `snat`; with `elects`, a standby of every attachment until the election says what it
/// owns.
///
/// # Errors
/// The thread did not start.
pub(super) fn pusher(
    registry: &Arc<Registry>,
    snat: Ipv4Cidr,
    attachments: Attachments,
    elects: bool,
    stopping: &Arc<AtomicBool>,
) -> Result<Pushing, DaemonError> {
    let status = Arc::new(PushStatus::default());
    let notes = registry.subscribe();
    let pusher = Arc::new(Mutex::new(Pusher::new(
        TablePublisher::new(Tables::new(snat)),
        attachments,
        snat,
        Arc::clone(&status),
    )));
    if elects {
        lock(&pusher).set_owned(Some(std::collections::BTreeSet::new()));
    }
    let (r, p) = (Arc::clone(registry), Arc::clone(&pusher));
    let stopping = Arc::clone(stopping);
    let thread = std::thread::Builder::new()
        .name("vpcep-pusher".into())
        .spawn(move || {
            // The pusher ends only when the daemon stops. If it ends otherwise (a panic
            // unwinding in a debug build; release builds abort), nothing would enforce what
            // the API goes on acknowledging: exit loudly instead.
            let _guard = ExitUnlessStopping(stopping, "the pusher");
            Pusher::run(&p, &r, &notes);
        })
        .map_err(DaemonError::Spawn)?;
    Ok(Pushing {
        pusher,
        status,
        thread,
    })
}

/// On a shared store: the follower, through which other nodes' commits reach the model.
///
/// # Errors
/// The thread did not start.
pub(super) fn follower(
    registry: &Arc<Registry>,
    stopping: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    crate::registry::follow::spawn(Arc::clone(registry), Arc::clone(stopping))
        .map_err(DaemonError::Spawn)
}

/// The API and admin listeners, bound.
pub(super) struct Listeners {
    api: TcpListener,
    admin: TcpListener,
    /// Where the API listens.
    pub(super) api_addr: SocketAddr,
    /// Where the admin endpoints listen.
    pub(super) admin_addr: SocketAddr,
}

impl Listeners {
    /// Bind both.
    ///
    /// # Errors
    /// `Bind`.
    pub(super) async fn bind(api: SocketAddr, admin: SocketAddr) -> Result<Self, DaemonError> {
        let bound = |addr: SocketAddr| async move {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::Bind { addr, source })?;
            let at = l
                .local_addr()
                .map_err(|source| DaemonError::Bind { addr, source })?;
            Ok::<_, DaemonError>((l, at))
        };
        let (api, api_addr) = bound(api).await?;
        let (admin, admin_addr) = bound(admin).await?;
        Ok(Self {
            api,
            admin,
            api_addr,
            admin_addr,
        })
    }

    /// Serve the API (`tls` if given) and the admin routers until `stop` turns true; their
    /// tasks.
    pub(super) fn serve(
        self,
        api: Router,
        tls: Option<TlsAcceptor>,
        admin: Router,
        limits: HttpLimits,
        stop: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        [(self.api, api, tls), (self.admin, admin, None)]
            .into_iter()
            .map(|(listener, router, tls)| {
                tokio::spawn(crate::api::http::serve(
                    listener,
                    router,
                    limits,
                    tls,
                    stop.clone(),
                ))
            })
            .collect()
    }
}

/// The API's state: the registry, the node's live credentials, and what `api`, the
/// signature window, the audit log (`audit`, in `data_dir`) and the rate ask for. Signed
/// writes are claimed in the store too (through the registry, which notes whether it
/// answered): by one node of a cluster, once across restarts.
///
/// # Errors
/// The audit log does not open.
pub(super) fn api_state(
    cfg: &DaemonConfig,
    registry: &Arc<Registry>,
    credentials: Arc<ArcSwap<Credentials>>,
) -> Result<ApiState, DaemonError> {
    let replay = ReplayCache::new(cfg.api.replay_cache_entries)
        .with_store(Arc::clone(registry) as Arc<dyn Claims>);
    let audit =
        AuditLog::open(&cfg.data_dir, cfg.audit.max_bytes, cfg.audit.files).map_err(|source| {
            DaemonError::Audit {
                path: cfg.data_dir.join(crate::audit::FILE).display().to_string(),
                source,
            }
        })?;
    Ok(ApiState {
        registry: Arc::clone(registry),
        credentials,
        window: cfg.auth_window(),
        payload: if cfg.api.allow_unsigned_payload {
            PayloadPolicy::AllowUnsigned
        } else {
            PayloadPolicy::RequireHash
        },
        replay: Arc::new(replay),
        body_timeout: Duration::from_secs(cfg.api.body_timeout_secs),
        rate: Arc::new(cfg.rate_limit()),
        audit: Some(Arc::new(audit)),
        session_ttl: Duration::from_secs(cfg.api.session_ttl_secs),
        meters: None,
        sign_in: Arc::new(SignInLimit::new(
            cfg.api.sign_in_failures,
            Duration::from_secs(cfg.api.sign_in_window_secs),
        )),
    })
}

/// The expiry sweeper: sleeps until the next endpoint's expiry second (at most a second, so
/// endpoints created or extended meanwhile are seen), then freezes what expired; ends when
/// `stop` turns true.
pub(super) fn expiry_sweeper(
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let wait_ms = registry
                .next_expiry()
                .map_or(1000, |t| t.saturating_mul(1000).saturating_sub(now_ms))
                .clamp(10, 1000);
            let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1000));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            let r = Arc::clone(&registry);
            let now = chrono::Utc::now().timestamp();
            match tokio::task::spawn_blocking(move || r.freeze_expired(now)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(frozen = n, "endpoints expired"),
                Ok(Err(e)) => tracing::warn!(error = %e, "expiry sweep failed; will retry"),
                _ => {}
            }
        }
    })
}

fn lock(p: &Mutex<Pusher>) -> MutexGuard<'_, Pusher> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}
