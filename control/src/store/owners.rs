//! Who owns a shared VPC's addresses: an election on etcd, one per VPC. When several nodes
//! attach the same VPC (on the same L2 segment), exactly one of them answers ARP for the
//! VPC's endpoint addresses (and, on a provider VPC, for the SNAT range) and opens flows
//! there: the owner. The others are standbys.
//!
//! The owner of VPC `v` is the node whose lease holds `<prefix>owners/<v>` (the value is the
//! node's name). Each node keeps a lease of its own (TTL `etcd.lease_ttl_secs`) and, at
//! every campaign, takes in one transaction each owner key of its attachments that does not
//! exist (the etcd election idiom: `create_revision == 0`), and gives up the keys of VPCs it
//! no longer attaches. Nodes that attach the same set of VPCs therefore own all of them or
//! none: a user VPC and the provider VPC its flows lead to stay on one node, which must be
//! so (the backends' replies come back to the owner of the SNAT range). Nodes with
//! different but overlapping sets may split them; see docs/cluster.md.
//!
//! A campaign runs every third of the TTL (with the lease's renewal) and at once when an
//! owner key is deleted: a dead owner's lease expires after the TTL, etcd deletes its keys,
//! the watch tells the standbys, and the first campaign to commit wins. A node that stops
//! cleanly revokes its lease, which hands its VPCs over at once.
//!
//! Every etcd call of the loop has a deadline of a third of the TTL, so a stop or the next
//! campaign never waits on an etcd that does not answer.
//!
//! An owner that cannot renew its lease (etcd unreachable from it) steps down two thirds
//! of the TTL after its last renewal: etcd lets a lease expire a TTL after its last
//! renewal, so the owner is quiet before a standby can take over, and two owners never
//! answer at once. Established flows go on (a standby forwards them; only new flows and
//! ARP are the owner's). If it renews in time (a short stall), its next campaign reads the
//! VPCs as its own again. With `etcd.fail_static` it keeps what it owned instead (the
//! dataplane goes on as it was, which costs nothing when etcd is down for every node). If
//! only this node is cut off and its lease expires meanwhile, a standby takes over, and
//! both answer until this node is back and sees the keys held by another lease: it steps
//! down at its next campaign.
//!
//! A step-down is told: hosts whose last ARP answer came from the node that stepped down
//! still map the addresses to its MAC, and it answers no more. So once its dataplane runs
//! on its new (smaller) set, which the report's `published` confirms, it puts
//! `<prefix>handovers/<vpc>` (its name, under its lease) for each VPC it gave up. Every node
//! watches those keys, and the owner of such a VPC announces it again (gratuitous ARP), so
//! those hosts move at once instead of after their neighbour entries age out (30 to 50 s).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn,
    TxnOp, WatchOptions, WatchResponse, WatchStream,
};
use tokio::sync::{Notify, oneshot, watch};

use super::EtcdStore;

/// What the election reports.
#[derive(Debug)]
pub enum OwnerEvent {
    /// Another node gave up these VPCs, which this node owns: announce them again.
    HandedOver(BTreeSet<String>),
    /// The VPC ids this node owns now. `published` is to be sent once the dataplane runs on
    /// it: a node that gave VPCs up tells the others only then (waiting at most a third of
    /// the TTL), so their owner's announcement comes after it stopped answering.
    Owned {
        /// The VPC ids.
        vpcs: BTreeSet<String>,
        /// Sent (or dropped) once published.
        published: oneshot::Sender<()>,
    },
}

/// Nodes this node has stopped hearing from (see [`crate::replica`]'s heartbeats): the
/// election revokes the lease by which a suspect owns a VPC this node attaches, so the VPC
/// goes to a standby at once rather than when the lease expires.
#[derive(Debug, Default)]
pub struct Suspects {
    names: std::sync::Mutex<BTreeSet<String>>,
    notify: Notify,
}

impl Suspects {
    /// `name` missed its heartbeats: wake the election if it was not suspected yet.
    pub fn suspect(&self, name: &str) {
        if self.lock().insert(name.to_string()) {
            self.notify.notify_one();
        }
    }

    /// `name` was heard again.
    pub fn heard(&self, name: &str) {
        if self.lock().contains(name) {
            self.lock().remove(name);
        }
    }

    /// The nodes suspected now.
    pub fn now(&self) -> BTreeSet<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// After a node deposed a silent owner, or lost VPCs it still attaches, it deposes no one
/// for this long: two nodes that do not hear each other (their network split, etcd
/// reachable by both) then trade the VPCs at most once per period, not at every missed
/// heartbeat. A dead owner is still taken over by its lease's expiry meanwhile.
pub const HOLD_DOWN: Duration = Duration::from_secs(10);

/// What else drives an election than its timer and etcd's watch.
#[derive(Debug, Default)]
pub struct Options {
    /// Notified when this node's attachments changed: it campaigns at once, so of nodes
    /// that attach a VPC one after the other, the first one owns it.
    pub poke: Option<Arc<Notify>>,
    /// Nodes suspected dead: see [`Suspects`].
    pub suspects: Option<Arc<Suspects>>,
    /// Keep what it owns while the lease cannot be renewed (`etcd.fail_static`); else step
    /// down (see the module's doc).
    pub fail_static: bool,
}

/// Where the election reports to.
pub type OnOwned = Box<dyn Fn(OwnerEvent) + Send + Sync>;

/// The VPC ids this node attaches now (read at every campaign, so a reload takes effect).
pub type Attached = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// A node's part in the elections: dropped or [`Election::resign`]: it stops campaigning.
#[derive(Debug)]
pub struct Election {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Election {
    /// Campaign as `name` for the VPCs `attached()` returns, under a lease of `ttl`;
    /// `on_owned` is called with the owned set at the first campaign and at every change,
    /// and with the VPCs this node owns that another node gave up.
    pub fn start(
        store: &Arc<EtcdStore>,
        name: &str,
        ttl: Duration,
        attached: Attached,
        on_owned: OnOwned,
    ) -> Self {
        Self::start_with(store, name, ttl, attached, on_owned, Options::default())
    }

    /// [`Election::start`], also woken by what `options` gives.
    pub fn start_with(
        store: &Arc<EtcdStore>,
        name: &str,
        ttl: Duration,
        attached: Attached,
        on_owned: OnOwned,
        options: Options,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let e = Elector {
            client: store.client().clone(),
            prefix: format!("{}owners/", store.prefix()),
            handovers: format!("{}handovers/", store.prefix()),
            name: name.to_string(),
            ttl,
            attached,
            on_owned,
            options,
        };
        let task = store.runtime().spawn(e.run(stopped));
        Self { stop, task }
    }

    /// Stop and revoke the lease: the VPCs this node owned go to a standby at once. Waits
    /// at most 2 s.
    pub async fn resign(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
    }
}

/// A lease and its keep-alive stream (opened again after an error).
struct Lease {
    id: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// When etcd last confirmed it alive.
    renewed: Instant,
}

struct Elector {
    client: Client,
    prefix: String,
    /// Where a node that steps down says so (see the module's doc).
    handovers: String,
    name: String,
    ttl: Duration,
    attached: Attached,
    on_owned: OnOwned,
    options: Options,
}

/// How a renewal went.
enum Renewal {
    Alive,
    /// etcd says the lease is gone (expired while this node was away).
    Expired,
    /// etcd did not answer; try again.
    Unreachable,
}

impl Elector {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let period = self.ttl / 3;
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(3).max(2);
        let mut lease: Option<Lease> = None;
        let mut events: Option<WatchStream> = None;
        let mut handovers: Option<WatchStream> = None;
        let mut owned: Option<BTreeSet<String>> = None;
        // Until when a silent owner is not deposed (see [`HOLD_DOWN`]).
        let mut hold_down: Option<Instant> = None;
        loop {
            // An owner (unless fail static) must be quiet before etcd can let its lease
            // expire: it steps down two thirds of the TTL after its last renewal, and no
            // etcd call of this turn outlasts that.
            let guarding =
                !self.options.fail_static && owned.as_ref().is_some_and(|o| !o.is_empty());
            let deadline = lease.as_ref().map(|l| l.renewed + period * 2);
            let within = |d: Duration| match deadline {
                Some(at) if guarding => d.min(at.saturating_duration_since(Instant::now())),
                _ => d,
            };
            if lease.is_none() {
                lease = self.grant(ttl_secs).await;
            }
            if events.is_none() {
                events = self.watch(&self.prefix, within(period)).await;
            }
            if handovers.is_none() {
                handovers = self.watch(&self.handovers, within(period)).await;
            }
            if let Some(l) = &mut lease
                && l.renewed.elapsed() >= period
            {
                match self.renew(l, within(period)).await {
                    Renewal::Alive => {}
                    Renewal::Expired => lease = None,
                    // Past the TTL without a renewal, the lease is gone for sure.
                    Renewal::Unreachable if l.renewed.elapsed() > self.ttl => lease = None,
                    Renewal::Unreachable => {}
                }
            }
            self.step_down_if_unrenewed(lease.as_ref(), &mut owned, period);
            if let Some(l) = lease
                .as_ref()
                .filter(|l| !guarding || l.renewed.elapsed() < period * 2)
            {
                let campaign = tokio::time::timeout(within(period), self.campaign(l.id));
                match campaign.await.unwrap_or(Err(etcd_client::Error::ElectError(
                    "the campaign took longer than a third of the TTL".into(),
                ))) {
                    Ok(now) if owned.as_ref() != Some(&now) => {
                        tracing::info!(owned = ?now, "VPC ownership changed");
                        let gave_up: BTreeSet<String> = owned
                            .as_ref()
                            .map(|was| was.difference(&now).cloned().collect())
                            .unwrap_or_default();
                        let attached: BTreeSet<String> = (self.attached)().into_iter().collect();
                        if gave_up.iter().any(|v| attached.contains(v)) {
                            // Lost while still attached (deposed, or cut off): no deposing
                            // the new owner at once, or two nodes that do not hear each
                            // other would take the VPCs from each other back and forth.
                            hold_down = Some(Instant::now() + HOLD_DOWN);
                        }
                        let (published, done) = oneshot::channel();
                        (self.on_owned)(OwnerEvent::Owned {
                            vpcs: now.clone(),
                            published,
                        });
                        owned = Some(now);
                        if !gave_up.is_empty() {
                            // Quiet first, then told: the owner's announcement must not
                            // come while this node still answers.
                            let _ = tokio::time::timeout(period, done).await;
                            let told = tokio::time::timeout(period, self.hand_over(l.id, &gave_up));
                            match told.await {
                                Ok(Ok(())) => {
                                    tracing::info!(vpcs = ?gave_up, "stepped down; the owner is told");
                                }
                                Ok(Err(error)) => {
                                    tracing::warn!(%error, "stepped down; could not tell the owner");
                                }
                                Err(_) => {
                                    tracing::warn!("stepped down; telling the owner took too long");
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::debug!(%error, "campaign failed; ownership kept as it was");
                    }
                }
            }
            // Wait for the next period, a change of an owner key (a deletion: a VPC may be
            // free; our own puts: one more campaign confirms them), or the stop.
            let changed = async {
                match &mut events {
                    Some(s) => {
                        if !matches!(s.message().await, Ok(Some(_))) {
                            // The watch ended: open it again at the next turn.
                            events = None;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            // Or another node saying it stepped down.
            let handed = async {
                match &mut handovers {
                    Some(s) => match s.message().await {
                        Ok(Some(resp)) => Some(resp),
                        _ => {
                            handovers = None;
                            None
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            // Or this node's attachments changed, or a node went silent.
            let poked = async {
                match &self.options.poke {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let suspected = async {
                match &self.options.suspects {
                    Some(s) => s.notify.notified().await,
                    None => std::future::pending().await,
                }
            };
            let (stop, handed, depose) = tokio::select! {
                () = tokio::time::sleep(within(period)) => (false, None, false),
                () = changed => (false, None, false),
                () = poked => (false, None, false),
                () = suspected => (false, None, true),
                h = handed => (false, h, false),
                // Set, or the [`Election`] dropped: stop either way.
                r = stopped.wait_for(|s| *s) => (r.map(|_| true).unwrap_or(true), None, false),
            };
            if depose && let Some(l) = &lease {
                if hold_down.is_some_and(|t| Instant::now() < t) {
                    tracing::info!(
                        "a silent owner is left to its lease: too soon after the last takeover"
                    );
                } else {
                    let id = l.id;
                    match tokio::time::timeout(period, self.depose(id)).await {
                        Ok(true) => hold_down = Some(Instant::now() + HOLD_DOWN),
                        Ok(false) => {} // the silent node owned nothing here
                        Err(_) => tracing::warn!("revoking a silent owner's lease took too long"),
                    }
                }
            }
            if let (Some(resp), Some(now)) = (handed, &owned) {
                let again = self.handed_over(&resp, now);
                if !again.is_empty() {
                    tracing::info!(vpcs = ?again, "another node stepped down: announcing again");
                    (self.on_owned)(OwnerEvent::HandedOver(again));
                }
            }
            if stop {
                if let Some(l) = lease {
                    let _ = self.client.lease_revoke(l.id).await;
                }
                return;
            }
        }
    }

    /// Revoke the leases by which suspected nodes own VPCs this node attaches (not its own
    /// `lease`): etcd deletes their owner keys, and the campaign that follows takes them.
    /// True if it revoked one.
    async fn depose(&mut self, lease: i64) -> bool {
        let Some(suspects) = &self.options.suspects else {
            return false;
        };
        let names = suspects.now();
        let attached: BTreeSet<String> = (self.attached)().into_iter().collect();
        let Ok(held) = self
            .client
            .get(self.prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await
        else {
            return false;
        };
        let silent: BTreeSet<(i64, String)> = held
            .kvs()
            .iter()
            .filter(|kv| kv.lease() != lease)
            .filter(|kv| self.vpc_of(kv.key()).is_some_and(|v| attached.contains(v)))
            .filter_map(|kv| {
                let owner = std::str::from_utf8(kv.value()).ok()?;
                names
                    .contains(owner)
                    .then(|| (kv.lease(), owner.to_string()))
            })
            .collect();
        let mut revoked = false;
        for (id, owner) in silent {
            tracing::warn!(%owner, lease = id, "the owner missed its heartbeats: revoking its lease");
            match self.client.lease_revoke(id).await {
                Ok(_) => revoked = true,
                Err(error) => {
                    tracing::debug!(%error, "could not revoke; its lease expires by itself");
                }
            }
        }
        revoked
    }

    /// A watch of the keys under `prefix`, if etcd opens one within `within`.
    async fn watch(&self, prefix: &str, within: Duration) -> Option<WatchStream> {
        let mut client = self.client.clone();
        let opts = WatchOptions::new().with_prefix();
        let watch = client.watch(prefix.to_string(), Some(opts));
        tokio::time::timeout(within, watch)
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Say that this node gave up `vpcs`: put each one's handover key (its name, under
    /// `lease`, so it goes when the node does).
    async fn hand_over(
        &mut self,
        lease: i64,
        vpcs: &BTreeSet<String>,
    ) -> Result<(), etcd_client::Error> {
        let ops: Vec<TxnOp> = vpcs
            .iter()
            .map(|vpc| {
                TxnOp::put(
                    format!("{}{vpc}", self.handovers),
                    self.name.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )
            })
            .collect();
        self.client.txn(Txn::new().and_then(ops)).await?;
        Ok(())
    }

    /// The VPCs of `owned` that another node says (in `resp`) it gave up.
    fn handed_over(&self, resp: &WatchResponse, owned: &BTreeSet<String>) -> BTreeSet<String> {
        resp.events()
            .iter()
            .filter(|ev| ev.event_type() == etcd_client::EventType::Put)
            .filter_map(|ev| ev.kv())
            .filter(|kv| kv.value() != self.name.as_bytes())
            .filter_map(|kv| {
                std::str::from_utf8(kv.key().strip_prefix(self.handovers.as_bytes())?).ok()
            })
            .filter(|vpc| owned.contains(*vpc))
            .map(str::to_string)
            .collect()
    }

    async fn grant(&mut self, ttl_secs: i64) -> Option<Lease> {
        let grant = self.client.lease_grant(ttl_secs, None);
        match tokio::time::timeout(self.ttl / 3, grant)
            .await
            .unwrap_or(Err(etcd_client::Error::LeaseKeepAliveError(
                "no answer within a third of the TTL".into(),
            ))) {
            Ok(g) => Some(Lease {
                id: g.id(),
                keeper: None,
                renewed: Instant::now(),
            }),
            Err(error) => {
                tracing::debug!(%error, "cannot take an election lease; trying again");
                None
            }
        }
    }

    /// Step down (report owning nothing) if this node owns VPCs and its lease went
    /// unrenewed for two thirds of the TTL (`period` is a third), unless fail static.
    fn step_down_if_unrenewed(
        &self,
        lease: Option<&Lease>,
        owned: &mut Option<BTreeSet<String>>,
        period: Duration,
    ) {
        let unrenewed = lease.is_none_or(|l| l.renewed.elapsed() >= period * 2);
        if !unrenewed || self.options.fail_static || owned.as_ref().is_none_or(BTreeSet::is_empty) {
            return;
        }
        tracing::warn!(vpcs = ?owned, "the election lease cannot be renewed: stepping down");
        let (published, _) = oneshot::channel();
        (self.on_owned)(OwnerEvent::Owned {
            vpcs: BTreeSet::new(),
            published,
        });
        *owned = Some(BTreeSet::new());
    }

    /// Renew `l`, waiting at most `within` for etcd's answer.
    async fn renew(&mut self, l: &mut Lease, within: Duration) -> Renewal {
        if l.keeper.is_none() {
            let open = self.client.lease_keep_alive(l.id);
            l.keeper = tokio::time::timeout(within, open)
                .await
                .ok()
                .and_then(Result::ok);
        }
        let Some((keeper, acks)) = &mut l.keeper else {
            return Renewal::Unreachable;
        };
        let ack = async {
            keeper.keep_alive().await?;
            acks.message().await
        };
        match tokio::time::timeout(within, ack).await {
            Ok(Ok(Some(a))) if a.ttl() > 0 => {
                tracing::debug!(lease = l.id, ttl = a.ttl(), "election lease renewed");
                l.renewed = Instant::now();
                Renewal::Alive
            }
            Ok(Ok(Some(_))) => Renewal::Expired,
            _ => {
                l.keeper = None;
                Renewal::Unreachable
            }
        }
    }

    /// One campaign: take the free owner keys of the attached VPCs and give up those of VPCs
    /// no longer attached, in one transaction; then read who owns what.
    async fn campaign(&mut self, lease: i64) -> Result<BTreeSet<String>, etcd_client::Error> {
        let attached: BTreeSet<String> = (self.attached)().into_iter().collect();
        let held = self
            .client
            .get(self.prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut ops = Vec::new();
        for kv in held.kvs() {
            let Some(vpc) = self.vpc_of(kv.key()) else {
                continue;
            };
            if kv.lease() == lease && !attached.contains(vpc) {
                let key = kv.key().to_vec();
                ops.push(TxnOp::txn(
                    Txn::new()
                        .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
                        .and_then([TxnOp::delete(key, None)]),
                ));
            }
        }
        let taken: BTreeSet<&str> = held
            .kvs()
            .iter()
            .filter_map(|kv| self.vpc_of(kv.key()))
            .collect();
        for vpc in &attached {
            if taken.contains(vpc.as_str()) {
                continue;
            }
            let key = format!("{}{vpc}", self.prefix);
            let put = TxnOp::put(
                key.clone(),
                self.name.clone(),
                Some(PutOptions::new().with_lease(lease)),
            );
            ops.push(TxnOp::txn(
                Txn::new()
                    .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                    .and_then([put]),
            ));
        }
        if !ops.is_empty() {
            // One transaction: a node takes every free VPC of its set or, if another node
            // committed first, none that the other took. If it fails, what this node owns
            // is read all the same: a lease revoked by a standby (which heard no heartbeat
            // from this node) fails it, and this node must stop answering at once.
            if let Err(error) = self.client.txn(Txn::new().and_then(ops)).await {
                tracing::debug!(%error, "campaign transaction failed");
            }
        }
        let now = self
            .client
            .get(self.prefix.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        Ok(now
            .kvs()
            .iter()
            .filter(|kv| kv.lease() == lease)
            .filter_map(|kv| self.vpc_of(kv.key()))
            .filter(|v| attached.contains(*v))
            .map(str::to_string)
            .collect())
    }

    /// The VPC id of an owner key.
    fn vpc_of<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(key.strip_prefix(self.prefix.as_bytes())?).ok()
    }
}

/// Who owns each VPC with an owner: `(vpc id, node name)`, by VPC id.
///
/// # Errors
/// etcd cannot be read.
pub fn owners(store: &EtcdStore) -> Result<Vec<(String, String)>, super::StoreError> {
    let mut client = store.client().clone();
    let prefix = format!("{}owners/", store.prefix());
    let p = prefix.clone();
    let got = store.call("owners", async move {
        client.get(p, Some(GetOptions::new().with_prefix())).await
    })?;
    Ok(got
        .kvs()
        .iter()
        .filter_map(|kv| {
            let vpc = std::str::from_utf8(kv.key().strip_prefix(prefix.as_bytes())?).ok()?;
            Some((
                vpc.to_string(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            ))
        })
        .collect())
}
