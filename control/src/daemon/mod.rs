//! The node daemon, in-process: open the store, load the model, start the pusher, the
//! dataplane workers (one set per attachment), the API and admin listeners, and the expiry
//! sweeper. `main.rs` wraps this; tests run it directly on ephemeral ports.

pub mod af_packet;
pub mod cluster;
mod dataplane;
pub mod reload;
mod start;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

pub use self::dataplane::{DaemonError, Dataplane, OnStop, StartWorkers};
use self::reload::Node;
use crate::api;
use crate::api::admin::{self, AdminNode, AdminState, ReloadError, Reloaded};
use crate::auth::Credentials;
use crate::config::DaemonConfig;
use crate::meters::MeterBook;
use crate::push::PushStatus;
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
pub(crate) struct ExitUnlessStopping(Arc<AtomicBool>, &'static str);

impl Drop for ExitUnlessStopping {
    fn drop(&mut self) {
        if !self.0.load(Ordering::Relaxed) {
            tracing::error!(thread = self.1, "a thread the daemon needs ended; exiting");
            std::process::exit(70);
        }
    }
}

/// Start the daemon with `credentials`, using `start_workers` to bring up the dataplane on
/// the attachments (the binary passes the AF_PACKET one; with no attachments it is not
/// called). A reload calls it again with the new config, after the old dataplane stopped.
///
/// In stages (in `daemon/start.rs`), each given the part of the config it needs: the store and
/// the registry; the pusher (and, on etcd, the follower); the node and its dataplane; the
/// listeners; the API and admin routers; on etcd, membership and the election; the
/// expiry sweeper.
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
    let api_tls = start::tls(&cfg.api)?;
    let _ = admin::prometheus();
    let stores = start::stores(cfg)?;
    let registry = Arc::clone(&stores.registry);
    let stopping = Arc::new(AtomicBool::new(false));
    let elects = stores.etcd.is_some() && cfg.etcd.failover;
    let pushing = start::pusher(
        &registry,
        stores.snat,
        reload::attachments(cfg),
        elects,
        &stopping,
    )?;
    let mut threads = Vec::new();
    if cfg.store == StoreEngine::Etcd {
        threads.push(start::follower(&registry, &stopping)?);
    }
    let start: Arc<StartWorkers> = Arc::new(start_workers);
    let meters = Arc::new(MeterBook::new(
        pushing
            .pusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .slot_map(),
    ));
    threads.push(
        crate::meters::spawn(Arc::clone(&meters), Arc::clone(&stopping))
            .map_err(DaemonError::Spawn)?,
    );
    let node = Arc::new(Node::start(
        cfg.clone(),
        credentials,
        start,
        Arc::clone(&pushing.pusher),
        Arc::clone(&registry),
        Arc::clone(&meters),
    )?);
    let listeners = start::Listeners::bind(cfg.api_listen, cfg.admin_listen).await?;
    let (stop, stop_rx) = watch::channel(false);
    let mut api_state = start::api_state(cfg, &registry, node.credentials())?;
    api_state.meters = Some(Arc::clone(&meters));
    let admin_state = AdminState {
        registry: Arc::clone(&registry),
        push: Arc::clone(&pushing.status),
        node: Arc::clone(&node) as Arc<dyn AdminNode>,
        meters: Some(meters),
    };
    // With etcd: this node in the member list, the election, and `/cluster` on the admin
    // listener.
    let members = stores.etcd.as_ref().map(|etcd| {
        cluster::join(
            etcd,
            cfg,
            listeners.api_addr,
            Arc::clone(&registry),
            Arc::clone(&pushing.status),
            Arc::clone(&node),
        )
    });
    // Peers that miss their heartbeats, which the replication reports to the election.
    let suspects = Arc::default();
    let election = match &stores.etcd {
        Some(etcd) => cluster::elect(
            etcd,
            cfg,
            Arc::clone(&pushing.pusher),
            Arc::clone(&node),
            &suspects,
        )
        .map_err(DaemonError::Spawn)?,
        None => None,
    };
    if let Some(etcd) = stores.etcd.as_ref().filter(|_| cfg.replicates()) {
        threads.extend(cluster::replicate(
            etcd,
            cfg,
            &pushing.status,
            &node,
            &suspects,
            &stopping,
        )?);
    }
    let admin = admin::router(admin_state).merge(cluster::router(stores.etcd));
    let (api_addr, admin_addr) = (listeners.api_addr, listeners.admin_addr);
    let mut tasks = listeners.serve(
        api::router(api_state),
        api_tls,
        admin,
        cfg.http_limits(),
        &stop_rx,
    );
    tasks.push(start::expiry_sweeper(Arc::clone(&registry), stop_rx));
    tracing::info!(%api_addr, %admin_addr, attachments = cfg.attachments.len(), "vpcepd started");
    Ok(Running {
        api_addr,
        admin_addr,
        registry,
        push: pushing.status,
        node,
        stop,
        stopping,
        tasks,
        pusher: Some(pushing.thread),
        threads,
        members,
        election,
    })
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
