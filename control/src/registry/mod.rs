//! The registry: the rules of the product, applied to the model, over a [`Store`].
//!
//! Every write goes through one helper, `Registry::write`: it takes the writer lock, lets a rule read
//! the committed model and decide the records to change, commits them to the store in one
//! transaction (compared on the revision the rule read), and only then applies them in
//! memory and sends the pusher a change note. So an answer is sent only for a change that is
//! stored, a failed commit changes nothing, writers are serialised, and readers keep reading
//! the last committed model. Lock order: `writer`, then `model` (read, then write), then
//! `notes`; no other lock is taken while one of these is held.
//!
//! The rules live by resource: [`inventory`] (VPCs, subnets, ports), [`ipam`] (addresses),
//! [`services`], [`connections`], [`permissions`], [`endpoints`], [`gateways`], [`tags`]. Tenancy is applied through
//! [`crate::model::TenantView`]. Nothing here knows about HTTP.

pub mod connections;
mod endpoint_rules;
pub mod endpoints;
pub mod follow;
pub mod gateways;
mod group;
pub mod inventory;
pub mod ipam;
pub mod permissions;
pub mod services;
pub mod tags;

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::model::index::Key;
use crate::model::{EndpointId, Model, Mutation, Record, Tenant, TenantView};
use crate::store::{Compare, Op, Snapshot, Store, StoreError, Txn};

/// Per-project quotas, and the whitelist entries of one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Endpoint services per project. Default 50.
    #[serde(default = "default_service_quota")]
    pub endpoint_service: usize,
    /// Endpoints per project. Default 500.
    #[serde(default = "default_endpoint_quota")]
    pub endpoint: usize,
    /// VPCs per project. Default 100.
    #[serde(default = "default_vpc_quota")]
    pub vpc: usize,
    /// Subnets per project. Default 500.
    #[serde(default = "default_subnet_quota")]
    pub subnet: usize,
    /// Ports per project. Default 5000.
    #[serde(default = "default_port_quota")]
    pub port: usize,
    /// Whitelist entries (permissions) per endpoint service. Default 500: one page of the
    /// permissions list holds them all. Every node holds every entry in memory, and an
    /// entry is up to about 1 KiB, so this bounds what one provider can store.
    #[serde(default = "default_permission_quota")]
    pub permission: usize,
}

fn default_permission_quota() -> usize {
    500
}

fn default_vpc_quota() -> usize {
    100
}

fn default_subnet_quota() -> usize {
    500
}

fn default_port_quota() -> usize {
    5000
}

fn default_service_quota() -> usize {
    50
}

fn default_endpoint_quota() -> usize {
    500
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            endpoint_service: default_service_quota(),
            endpoint: default_endpoint_quota(),
            vpc: default_vpc_quota(),
            subnet: default_subnet_quota(),
            port: default_port_quota(),
            permission: default_permission_quota(),
        }
    }
}

/// What a commit changed, for the pusher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Touched {
    /// Recompile everything (after a load).
    All,
    /// Recompile these endpoints (changed, deleted, or their service changed).
    Endpoints(Vec<EndpointId>),
}

/// A change to the pusher: what to recompile and the store revision it reflects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeNote {
    /// What changed.
    pub touched: Touched,
    /// The revision after the change.
    pub revision: u64,
}

/// Why loading the store failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a rule decided: the records to write (maybe none) and the answer.
pub(crate) type Plan<T> = (Vec<Mutation>, T);

/// The registry: the model, its store, and the rules.
pub struct Registry {
    store: Arc<dyn Store>,
    model: RwLock<Model>,
    writer: Mutex<()>,
    region: String,
    quotas: Quotas,
    notes: Mutex<Vec<Sender<ChangeNote>>>,
    revision: AtomicU64,
    /// Signalled whenever `revision` moves (a writer that lost a race waits on it).
    moved: (Mutex<()>, Condvar),
    /// A follower applies other writers' commits ([`follow`]): a lost race is retried.
    followed: AtomicBool,
    /// Whether the store answered last time it was asked (cleared by a write or a watch
    /// that found it unreachable, set again when one succeeds).
    store_up: AtomicBool,
    quarantined: usize,
    reserved: Option<ipnet::Ipv4Net>,
    /// The writes being committed together ([`group`]).
    group: group::Group,
    /// The writers' model: the committed model and the open batch's writes, which the
    /// rules read ([`group`]). Its records change only under the writer lock.
    draft: Mutex<Model>,
}

/// How long a write that keeps losing races to other nodes goes on trying (each time after
/// the follower brought the winner's commit): then it answers EndPoint.0001.
pub const CATCH_UP: Duration = Duration::from_secs(3);

/// The key prefix under which records that failed to load are kept aside.
pub const QUARANTINE: &str = "quarantine/";

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registry")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Now, in seconds since the epoch.
pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Registry {
    /// A registry over `store`, loading everything it holds.
    ///
    /// A record that does not decode is quarantined, not fatal: it is moved under
    /// [`QUARANTINE`] in the store (its bytes kept for an operator, in one transaction with
    /// its removal), logged, and counted (`vpcep_store_quarantined_total`), and the rest
    /// loads. One tenant's bad record must not keep the node from starting for every tenant.
    /// If the move cannot be committed, the record is still skipped (and found again at the
    /// next start).
    ///
    /// # Errors
    /// [`LoadError`] if the store cannot be read.
    pub fn open(store: Arc<dyn Store>, region: &str, quotas: Quotas) -> Result<Self, LoadError> {
        let mut snap = store.load()?;
        let (model, aside, quarantined) = model_of(std::mem::take(&mut snap.entries));
        metrics::counter!("vpcep_store_quarantined_total").increment((aside.len() / 2) as u64);
        if !aside.is_empty() {
            match store.commit(Txn {
                compare: Compare::Revision(snap.revision),
                ops: aside,
            }) {
                Ok(revision) => snap.revision = revision,
                Err(e) => tracing::error!(error = %e, "cannot move quarantined records aside"),
            }
        }
        Ok(Self {
            store,
            draft: Mutex::new(model.clone()),
            model: RwLock::new(model),
            writer: Mutex::new(()),
            region: region.to_string(),
            quotas,
            notes: Mutex::new(Vec::new()),
            revision: AtomicU64::new(snap.revision),
            moved: (Mutex::new(()), Condvar::new()),
            followed: AtomicBool::new(false),
            store_up: AtomicBool::new(true),
            quarantined,
            reserved: None,
            group: group::Group::default(),
        })
    }

    /// Reserve `range` (the node's SNAT range): no tenant VPC may overlap it, since a tenant
    /// address there would be taken for the node's own translated source.
    #[must_use]
    pub fn with_reserved(mut self, range: ipnet::Ipv4Net) -> Self {
        self.reserved = Some(range);
        self
    }

    /// The reserved range, if any.
    pub fn reserved(&self) -> Option<ipnet::Ipv4Net> {
        self.reserved
    }

    /// Records kept aside under [`QUARANTINE`] because they did not load (at open).
    pub fn quarantined(&self) -> usize {
        self.quarantined
    }

    /// Subscribe to change notes (the pusher does). The first note it sees is `All`.
    pub fn subscribe(&self) -> Receiver<ChangeNote> {
        let (tx, rx) = channel();
        let _ = tx.send(ChangeNote {
            touched: Touched::All,
            revision: self.revision(),
        });
        self.lock_notes().push(tx);
        rx
    }

    /// Drop every subscriber (the pusher then finishes its queue and stops).
    pub fn close_subscribers(&self) {
        self.lock_notes().clear();
    }

    /// The revision of the last commit.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The region, first part of service names.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The quotas.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// Record which VPCs the dataplanes attach (`None`: unknown, as on an API-only node);
    /// views derive the `failed` status from it (see [`crate::model::health`]).
    pub fn set_attached(&self, vpcs: Option<BTreeSet<crate::model::VpcId>>) {
        let vpcs = vpcs.map(Arc::new);
        self.model
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .attached
            .clone_from(&vpcs);
        self.draft().attached = vpcs;
    }

    /// A read view of the committed model (never the writes of a batch that has not
    /// committed yet: those are in the writers' draft, see `registry/group.rs`).
    pub fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.model
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_notes(&self) -> MutexGuard<'_, Vec<Sender<ChangeNote>>> {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The one write path: under the writer lock, `rule` reads the model (with the
    /// writes of the open batch in it) and decides; its mutations join the batch, which
    /// commits them (durably) with the others', applies and announces them ([`group`]);
    /// its answer is returned once the batch committed. A rule that changes nothing
    /// commits nothing.
    ///
    /// # Errors
    /// The rule's rejection, or [`crate::error::ErrorCode::System`] if the store failed
    /// (then nothing changed).
    pub(crate) fn write<T>(
        &self,
        mut rule: impl FnMut(&Model) -> Result<Plan<T>, Rejection>,
    ) -> Result<T, Rejection> {
        let started = Instant::now();
        loop {
            let writer = self.lock_writer();
            let decided = rule(&self.draft());
            let (joined, answer, own) = match decided {
                Ok((muts, out)) => {
                    let own = !muts.is_empty();
                    match self.join(muts) {
                        None => return Ok(out),
                        Some(j) => (j, Ok(out), own),
                    }
                }
                // A refusal may rest on the open batch's writes: it stands once they are
                // committed, and is decided again if they are not.
                Err(r) => match self.group_open() {
                    None => return Err(r),
                    Some(b) => (group::Joined::Member(b), Err(r), false),
                },
            };
            drop(writer);
            let batch = match joined {
                group::Joined::Full => {
                    self.wait_batch();
                    continue;
                }
                group::Joined::Leader(b) => {
                    self.commit_batch(&b);
                    b
                }
                group::Joined::Member(b) => b,
            };
            let outcome = batch.wait();
            if !own && outcome.is_err() {
                // The answer (a refusal, or nothing to change) rested on writes that did
                // not commit: decide again.
                continue;
            }
            let behind = match outcome {
                Ok(_) => return answer,
                Err(Lost::Race(actual)) if self.is_followed() && started.elapsed() < CATCH_UP => {
                    actual
                }
                Err(Lost::Race(_)) => {
                    return Err(Rejection::system(
                        "Another writer changed the store first; nothing was changed. \
                         Please retry.",
                    ));
                }
                Err(Lost::Refused(r)) => return Err(r),
            };
            // Another node committed first. Its commit reaches this node through the
            // follower: wait for it, then run the rule again on the model that includes
            // the winner's change (the loser of a race for one IP then gets "in use", not
            // a system error).
            metrics::counter!("vpcep_store_conflicts_total").increment(1);
            if !self.wait_for(behind, CATCH_UP.saturating_sub(started.elapsed())) {
                return Err(Rejection::store_unavailable());
            }
        }
    }

    /// [`Registry::write`] with the model seen as `t` sees it.
    ///
    /// # Errors
    /// As for [`Registry::write`].
    pub(crate) fn write_as<T>(
        &self,
        t: &Tenant,
        mut rule: impl FnMut(TenantView<'_>) -> Result<Plan<T>, Rejection>,
    ) -> Result<T, Rejection> {
        self.write(|m| rule(m.tenant(t)))
    }

    /// Apply a committed change to the model, move the revision, and notify the pusher of
    /// the endpoints it touched. Called with the writer lock held.
    fn apply_committed(&self, muts: Vec<Mutation>, revision: u64) {
        let touched;
        {
            let mut model = self
                .model
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut t = touched_by(&model, &muts);
            let mut draft = self.draft();
            for m in muts {
                draft.apply(m.clone());
                model.apply(m);
            }
            drop(draft);
            touched = std::mem::take(&mut t);
            self.set_revision(revision);
        }
        self.notify(ChangeNote {
            touched: Touched::Endpoints(touched.into_iter().collect()),
            revision,
        });
    }

    /// Replace the whole model with `snap` (a follower's resync). Called with the writer
    /// lock held. Records that do not decode are skipped and counted (the node that wrote
    /// them, or the next start, quarantines them).
    fn replace(&self, snap: Snapshot) {
        let (model, aside, _) = model_of(snap.entries);
        if !aside.is_empty() {
            tracing::error!(
                records = aside.len() / 2,
                "skipped records that do not load"
            );
        }
        *self.draft() = model.clone();
        *self
            .model
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = model;
        self.set_revision(snap.revision);
        self.notify(ChangeNote {
            touched: Touched::All,
            revision: snap.revision,
        });
    }

    fn notify(&self, note: ChangeNote) {
        self.lock_notes().retain(|tx| tx.send(note.clone()).is_ok());
    }

    /// The writers' model (see the field). Locked after the writer lock and the model's
    /// lock, never before them.
    fn draft(&self) -> MutexGuard<'_, Model> {
        self.draft
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_revision(&self, revision: u64) {
        let _moved = self
            .moved
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.revision.store(revision, Ordering::Release);
        self.moved.1.notify_all();
    }

    /// Wait until the model reflects `revision`, at most `limit`; whether it does.
    fn wait_for(&self, revision: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut guard = self
            .moved
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while self.revision() < revision {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = self
                .moved
                .1
                .wait_timeout(guard, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }

    fn is_followed(&self) -> bool {
        self.followed.load(Ordering::Acquire)
    }

    fn set_store_up(&self, up: bool) {
        if self.store_up.swap(up, Ordering::AcqRel) != up {
            metrics::gauge!("vpcep_store_up").set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!("the store answers again");
            } else {
                tracing::warn!("the store is unreachable: writes answer 503, tables stay");
            }
        }
    }

    /// Whether the store answered the last write or watch (a shared store can be away: the
    /// node then serves reads from its last applied revision and its tables stay).
    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Acquire)
    }

    /// Note whether the store answered a call other than a commit (a claim).
    fn note_store<T>(&self, r: &Result<T, StoreError>) {
        match r {
            Ok(_) => self.set_store_up(true),
            Err(e) if e.is_unavailable() => self.set_store_up(false),
            Err(_) => {}
        }
    }
}

/// The replay cache's claims and the console's sessions go to the store; whether it answered counts like a write's.
impl crate::auth::Claims for Registry {
    fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let r = self.store.claim(token, ttl);
        self.note_store(&r);
        r
    }

    fn unclaim(&self, token: &str) -> Result<(), StoreError> {
        let r = self.store.unclaim(token);
        self.note_store(&r);
        r
    }

    fn held(&self, token: &str) -> Result<bool, StoreError> {
        let r = self.store.held(token);
        self.note_store(&r);
        r
    }
}

/// The endpoints `muts` touch in `model`: endpoints put or deleted, and every endpoint of
/// a service put (the pusher compiles them again).
fn touched_by(model: &Model, muts: &[Mutation]) -> BTreeSet<EndpointId> {
    let mut touched = BTreeSet::new();
    for m in muts {
        match m {
            Mutation::Put(Record::Endpoint(e)) => {
                touched.insert(e.id.clone());
            }
            Mutation::Put(Record::Service(s)) => {
                touched.extend(model.endpoints_of(s.id.as_str()).map(|e| e.id.clone()));
            }
            Mutation::Delete(Key::Endpoint(id)) => {
                touched.insert(id.clone());
            }
            _ => {}
        }
    }
    touched
}

/// Why a commit did not happen.
#[derive(Clone, Debug)]
enum Lost {
    /// Another writer committed first; the store is at this revision.
    Race(u64),
    /// The store failed or refused (the rejection says how).
    Refused(Rejection),
}

/// Build a model from a store's entries. Returns it, the operations that would quarantine
/// the records that do not decode, and how many records are (or would be) quarantined.
fn model_of(entries: Vec<(String, Vec<u8>)>) -> (Model, Vec<Op>, usize) {
    let mut model = Model::default();
    let mut aside = Vec::new();
    let mut quarantined = 0;
    for (key, value) in entries {
        if key.starts_with(QUARANTINE) {
            quarantined += 1;
            continue;
        }
        match serde_json::from_slice::<Record>(&value) {
            // Keys are unique in a store: no replace step on load.
            Ok(record) => model.insert(record),
            Err(error) => {
                // Counted by the caller: quarantined at open, skipped by a follower's resync.
                tracing::error!(%key, %error, "a stored record does not load");
                quarantined += 1;
                aside.push(Op::Put(format!("{QUARANTINE}{key}"), value));
                aside.push(Op::Delete(key));
            }
        }
    }
    (model, aside, quarantined)
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::error::ErrorCode;
    use crate::store::MemStore;

    #[test]
    fn a_write_commits_applies_and_notes_once() {
        let r = registry();
        let notes = r.subscribe();
        assert_eq!(notes.try_recv().unwrap().touched, Touched::All);
        let p = tenant("p");
        let u = tenant("u");
        let svc = service(&r, &p, true, &[&u]);
        let before = r.revision();
        let (uvpc, usub) = network(&r, &u, "10.1.0.0/16");
        let ep = endpoint(&r, &u, endpoint_body(&svc.id, &uvpc, &usub)).unwrap();
        assert_eq!(r.revision(), before + 3);
        let last = std::iter::from_fn(|| notes.try_recv().ok()).last().unwrap();
        assert_eq!(last.touched, Touched::Endpoints(vec![ep.id.clone()]));
        assert_eq!(last.revision, r.revision());
    }

    #[test]
    fn a_commit_that_loses_a_race_changes_nothing() {
        use crate::store::{Compare, Op, Txn};
        let store = Arc::new(MemStore::default());
        let r = Registry::open(store.clone(), "r", Quotas::default()).unwrap();
        let p = tenant("p");
        let vpc = || crate::command::NewVpc {
            name: String::new(),
            cidr: "10.0.0.0/16".parse().unwrap(),
        };
        r.create_vpc(&p, vpc()).unwrap();
        // Another writer (another node, once the store is shared) commits first.
        store
            .commit(Txn {
                compare: Compare::Always,
                ops: vec![Op::Delete("nothing/here".into())],
            })
            .unwrap();
        let before = r.revision();
        let err = r.create_vpc(&p, vpc()).unwrap_err();
        assert_eq!(err.code, ErrorCode::System);
        assert_eq!(r.revision(), before, "the registry did not move");
        assert_eq!(r.read().vpcs.len(), 1, "nor did the model");
        assert_eq!(store.load().unwrap().entries.len(), 1, "nor did the store");
    }

    #[test]
    fn a_rejected_write_changes_nothing_and_a_reload_restores_everything() {
        let store = Arc::new(MemStore::default());
        let r = Registry::open(store.clone(), "r", Quotas::default()).unwrap();
        let p = tenant("p");
        let svc = service(&r, &p, false, &[]);
        let rev = r.revision();
        let err = r
            .write(|_| Err::<Plan<()>, _>(Rejection::param("no")))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Parameter);
        assert_eq!(r.revision(), rev);
        let again = Registry::open(store, "r", Quotas::default()).unwrap();
        assert_eq!(again.revision(), rev);
        let m = again.read();
        assert_eq!(m.services.get(&svc.id), Some(&svc));
        assert_eq!((m.vpcs.len(), m.subnets.len(), m.ports.len()), (1, 1, 1));
    }
}
