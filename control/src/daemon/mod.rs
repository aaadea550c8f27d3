//! The node daemon, in-process: open the store, load the model, start the pusher, the
//! dataplane workers (one set per attachment), the API and admin listeners, and the expiry
//! sweeper. `main.rs` wraps this; tests run it directly on ephemeral ports.

pub mod af_packet;
pub mod cluster;
mod dataplane;
pub mod reload;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::dataplane::{TablePublisher, Tables};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use self::dataplane::{DaemonError, Dataplane, OnStop, StartWorkers};
use self::reload::Node;
use crate::api::admin::{self, AdminNode, AdminState, ReloadError, Reloaded};
use crate::api::{self, ApiState};
use crate::audit::AuditLog;
use crate::auth::{Credentials, PayloadPolicy, ReplayCache};
use crate::config::DaemonConfig;
use crate::push::{PushStatus, Pusher};
use crate::registry::Registry;
use crate::store::StoreEngine;

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
    /// Read the config file again and apply it (see [`reload`]): what SIGHUP and
    /// `POST /reload` do.
    ///
    /// # Errors
    /// [`ReloadError`]: nothing changed.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        admin::reload(Arc::clone(&self.node) as Arc<dyn AdminNode>).await
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

async fn bind(addr: SocketAddr) -> Result<TcpListener, DaemonError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind { addr, source })
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
        &::dataplane::TableReader,
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
    let _ = admin::prometheus();
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
        reload::attachments(cfg),
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
        node: Arc::clone(&node) as Arc<dyn AdminNode>,
    };
    // With etcd: this node in the member list, and `/cluster` on the admin listener.
    let members = opened.etcd.as_ref().map(|etcd| {
        cluster::join(
            etcd,
            cfg,
            api_addr,
            Arc::clone(&registry),
            Arc::clone(&push),
            Arc::clone(&node),
        )
    });
    let election = match &opened.etcd {
        Some(etcd) => cluster::elect(etcd, cfg, Arc::clone(&pusher), Arc::clone(&node))
            .map_err(DaemonError::Spawn)?,
        None => None,
    };
    let admin = admin::router(admin_state).merge(cluster::router(opened.etcd));
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
