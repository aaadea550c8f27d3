//! Node membership on etcd: each node keeps `<prefix>nodes/<name>` alive under a lease of
//! its own, and rewrites it about three times per TTL with what it has applied
//! ([`NodeRecord`]). A node that dies stops renewing, and etcd deletes its key when the
//! lease expires (the TTL, default 2 s); a node that stops cleanly revokes its lease at
//! once. [`members`] lists the live ones in one range read.
//!
//! A name is held by one lease: a write succeeds only if the key is absent or held by this
//! node's lease, so two nodes configured with the same name cannot overwrite each other
//! (the second logs an error and stays out of the list until the first is gone).
//!
//! The loop runs on the store's runtime; if etcd is away it grants a new lease when etcd
//! is back. Membership is information (for operators and benchmarks): no decision of the
//! API or the dataplane depends on it.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{EtcdStore, StoreError};

/// What a node says about itself in the member list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its name (`etcd.node_name`).
    pub name: String,
    /// Its API listener.
    pub api: String,
    /// The store revision its model reflects.
    pub revision: u64,
    /// The revision its pusher last published tables for.
    pub applied_revision: u64,
    /// The table generation it published.
    pub published_generation: u64,
    /// Whether every worker loaded that generation.
    pub all_workers_current: bool,
    /// The VPC ids it attaches.
    pub attachments: Vec<String>,
    /// The VPC ids whose addresses it owns (every attachment unless `etcd.failover`
    /// elects owners; see [`super::owners`]).
    #[serde(default)]
    pub owns: Vec<String>,
    /// Where it receives conntrack replication (`etcd.replication_listen`), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
    /// When it wrote this, seconds since the epoch.
    pub at: i64,
}

/// A node's membership: dropped or [`Membership::leave`]: the node leaves.
#[derive(Debug)]
pub struct Membership {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// Join: hold `<prefix>nodes/<name>` under a lease of `ttl`, written with `record()`.
    pub fn join(
        store: &Arc<EtcdStore>,
        name: &str,
        ttl: Duration,
        record: impl Fn() -> NodeRecord + Send + Sync + 'static,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let key = format!("{}nodes/{name}", store.prefix());
        let client = store.client().clone();
        let task = store
            .runtime()
            .spawn(hold(client, key, ttl, Box::new(record), stopped));
        Self { stop, task }
    }

    /// Leave now: revoke the lease (the key goes with it) and stop. Waits at most 2 s.
    pub async fn leave(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

type Recorder = Box<dyn Fn() -> NodeRecord + Send + Sync>;

/// Hold `key` until `stopped`: grant a lease, keep it alive, rewrite the record each third
/// of the TTL; on any failure start again after a pause.
async fn hold(
    mut client: etcd_client::Client,
    key: String,
    ttl: Duration,
    record: Recorder,
    mut stopped: watch::Receiver<bool>,
) {
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(3).max(2);
    let period = ttl / 3;
    let mut name_taken_logged = false;
    loop {
        let lease = match client.lease_grant(ttl_secs, None).await {
            Ok(g) => g.id(),
            Err(error) => {
                tracing::debug!(%error, "cannot take a membership lease; trying again");
                if pause(period, &mut stopped).await {
                    return;
                }
                continue;
            }
        };
        let Ok((mut keeper, mut acks)) = client.lease_keep_alive(lease).await else {
            if pause(period, &mut stopped).await {
                return;
            }
            continue;
        };
        loop {
            let value = serde_json::to_vec(&record()).unwrap_or_default();
            let put = TxnOp::put(
                key.clone(),
                value,
                Some(PutOptions::new().with_lease(lease)),
            );
            // Ours (same lease), or free; otherwise someone else holds the name.
            let txn = Txn::new()
                .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
                .and_then([put.clone()])
                .or_else([TxnOp::txn(
                    Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([put]),
                )]);
            let held = match client.txn(txn).await {
                Ok(r) if r.succeeded() => true,
                Ok(r) => r
                    .op_responses()
                    .into_iter()
                    .any(|o| matches!(o, TxnOpResponse::Txn(t) if t.succeeded())),
                Err(_) => {
                    if pause(period, &mut stopped).await {
                        return;
                    }
                    break;
                }
            };
            if !held && !name_taken_logged {
                tracing::error!(%key, "another node holds this node's name; set etcd.node_name");
            }
            name_taken_logged = !held;
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match acks.message().await {
                Ok(Some(ack)) if ack.ttl() > 0 => {}
                // Expired (etcd was away longer than the TTL) or the stream ended.
                _ => break,
            }
            if pause(period, &mut stopped).await {
                let _ = client.lease_revoke(lease).await;
                return;
            }
        }
    }
}

/// Sleep `d`; true if stopped meanwhile (or the [`Membership`] was dropped).
async fn pause(d: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    // `wait_for` ends when the flag is set (Ok) or the sender is gone (Err): stop either way.
    tokio::time::timeout(d, stopped.wait_for(|s| *s))
        .await
        .is_ok()
}

/// The live members, by name.
///
/// # Errors
/// etcd cannot be read.
pub fn members(store: &EtcdStore) -> Result<Vec<NodeRecord>, StoreError> {
    let mut client = store.client().clone();
    let prefix = format!("{}nodes/", store.prefix());
    let got = store.call("members", async move {
        client
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
    })?;
    Ok(got
        .kvs()
        .iter()
        .filter_map(|kv| serde_json::from_slice(kv.value()).ok())
        .collect())
}
