//! The daemon's side of a cluster on etcd: this node's record in the member list (from its
//! registry, pusher, workers and attachments), and the admin endpoint `/cluster`, which
//! lists the live members (what `vpcepctl cluster status` shows).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::dataplane::DaemonError;
use super::reload::Node;
use crate::config::DaemonConfig;
use crate::push::{PushStatus, Pusher};
use crate::registry::Registry;
use crate::store::EtcdStore;
use crate::store::members::{self, Membership, NodeRecord};
use crate::store::owners::{Election, Options, OwnerEvent, Suspects};

/// Join the member list as `etcd.node_name`, the record rebuilt at each renewal.
pub fn join(
    etcd: &Arc<EtcdStore>,
    cfg: &DaemonConfig,
    api: SocketAddr,
    registry: Arc<Registry>,
    push: Arc<PushStatus>,
    node: Arc<Node>,
) -> Membership {
    let name = cfg.etcd.node_name();
    let ttl = std::time::Duration::from_secs(cfg.etcd.lease_ttl_secs);
    let me = name.clone();
    let replication = cfg.etcd.replication_listen.filter(|_| cfg.etcd.failover);
    tracing::info!(node = %name, ?ttl, "joining the cluster's member list");
    Membership::join(etcd, &name, ttl, move || {
        let published = push.published_generation.load(Ordering::Acquire);
        NodeRecord {
            name: me.clone(),
            api: api.to_string(),
            revision: registry.revision(),
            applied_revision: push.applied_revision.load(Ordering::Acquire),
            published_generation: published,
            all_workers_current: node
                .view()
                .counters
                .iter()
                .all(|w| w.generation.load(Ordering::Relaxed) == published),
            // What this node attaches now (a reload may have changed it).
            attachments: node.attached_vpcs(),
            owns: push.owned_vpcs().unwrap_or_else(|| node.attached_vpcs()),
            replication: replication.map(|a| a.to_string()),
            at: chrono::Utc::now().timestamp(),
        }
    })
}

/// With `etcd.failover` on: campaign for the VPCs this node attaches (see
/// [`crate::store::owners`]). Each change of what it owns is published to the dataplane by
/// a thread of its own (`vpcep-owners`), so the etcd runtime never waits for the pusher.
///
/// # Errors
/// The thread cannot be started.
pub fn elect(
    etcd: &Arc<EtcdStore>,
    cfg: &DaemonConfig,
    pusher: Arc<Mutex<Pusher>>,
    node: Arc<Node>,
    suspects: &Arc<Suspects>,
) -> std::io::Result<Option<Election>> {
    if !cfg.etcd.failover {
        return Ok(None);
    }
    let (tx, rx) = std::sync::mpsc::channel::<OwnerEvent>();
    std::thread::Builder::new()
        .name("vpcep-owners".into())
        .spawn(move || {
            // Ends when the election is dropped (its sender with it). Reports that queued
            // up become one publication: the latest owned set, and every VPC to announce
            // again.
            while let Ok(first) = rx.recv() {
                let mut owned = None;
                let mut again = BTreeSet::new();
                let mut published = Vec::new();
                for event in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok()))
                {
                    match event {
                        OwnerEvent::HandedOver(vpcs) => again.extend(vpcs),
                        OwnerEvent::Owned { vpcs, published: p } => {
                            owned = Some(vpcs);
                            published.push(p);
                        }
                    }
                }
                let mut pusher = pusher.lock().unwrap_or_else(PoisonError::into_inner);
                let generation = match owned {
                    Some(owned) => pusher.set_owned_announcing(Some(owned), &again),
                    None => pusher.announce_again(&again),
                };
                drop(pusher);
                for p in published {
                    let _ = p.send(());
                }
                tracing::debug!(generation, "ownership published");
            }
        })?;
    let ttl = std::time::Duration::from_secs(cfg.etcd.lease_ttl_secs);
    let on_owned = Box::new(move |event: OwnerEvent| {
        let _ = tx.send(event);
    });
    let options = Options {
        poke: Some(node.attachments_changed()),
        suspects: cfg.replicates().then(|| Arc::clone(suspects)),
        fail_static: cfg.etcd.fail_static,
    };
    Ok(Some(Election::start_with(
        etcd,
        &cfg.etcd.node_name(),
        ttl,
        Box::new(move || node.attached_vpcs()),
        on_owned,
        options,
    )))
}

/// Start conntrack replication ([`crate::replica`]): this node's flows of the VPCs it owns
/// go to its peers, and theirs come into its conntrack. Its threads end when `stopping`
/// turns true.
///
/// # Errors
/// The key cannot be read, the address does not bind, or a thread does not start.
pub fn replicate(
    etcd: &Arc<EtcdStore>,
    cfg: &DaemonConfig,
    push: &Arc<PushStatus>,
    node: &Arc<Node>,
    suspects: &Arc<Suspects>,
    stopping: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<()>>, DaemonError> {
    let (Some(listen), Some(key)) = (
        cfg.etcd.replication_listen,
        cfg.etcd
            .replication_key()
            .map_err(DaemonError::Replication)?,
    ) else {
        return Ok(Vec::new());
    };
    let settings = crate::replica::Settings {
        name: cfg.etcd.node_name(),
        listen,
        key,
        heartbeat: std::time::Duration::from_millis(cfg.etcd.heartbeat_ms),
        suspects: Arc::clone(suspects),
    };
    let attached = Arc::clone(node);
    crate::replica::start(
        settings,
        Arc::clone(etcd),
        node.replica_feeds(),
        Arc::clone(push),
        Box::new(move || attached.attached_vpcs()),
        Arc::clone(stopping),
    )
    .map_err(|e| DaemonError::Replication(format!("{listen}: {e}")))
}

/// `GET /cluster`: `{"nodes": [...]}`, the live members by name; 404 on a node whose store
/// is not etcd, 503 if etcd cannot be read.
pub fn router(etcd: Option<Arc<EtcdStore>>) -> Router {
    Router::new().route("/cluster", get(list)).with_state(etcd)
}

async fn list(State(etcd): State<Option<Arc<EtcdStore>>>) -> Response {
    let Some(etcd) = etcd else {
        let msg = "this node is not in a cluster (store = \"redb\")";
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "error": msg }))).into_response();
    };
    match tokio::task::spawn_blocking(move || members::members(&etcd)).await {
        Ok(Ok(nodes)) => axum::Json(json!({ "nodes": nodes })).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}
