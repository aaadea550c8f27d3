//! Group commit: writes that arrive together on one node go to the store in one
//! transaction, each with its own rule check and its own answer.
//!
//! Without it, each write holds the writer lock for its rule and its store round trip (an
//! fsynced etcd transaction, about a millisecond), so one node commits about a thousand
//! writes a second however many clients wait. With it:
//!
//! 1. A writer takes the writer lock and runs its rule on the draft, which holds the
//!    mutations of the writes already in the open batch (applied in place, each with its
//!    undo): rules see each other as if they had committed one after the other.
//! 2. It adds its mutations to the open batch, or opens one (then it leads it), and lets
//!    the writer lock go, so the writers queued behind it run their rules into the batch.
//! 3. The leader takes the writer lock again, closes the batch and commits all its
//!    mutations in one transaction, compared on the revision the batch started from.
//!    Committed: the revision moves and the pusher hears of every endpoint touched. Not
//!    committed: the mutations are undone, last first, and each member gets the failure:
//!    a lost race to another node runs each member's rule again once the follower brought
//!    the winner's commit, as before.
//! 4. Every member waits for its batch's outcome before it answers.
//!
//! The rules run on the writers' own copy of the model, the draft: the committed model and
//! the open batch's writes. Readers ([`super::Registry::read`]: the API's views, the
//! pusher) read the committed model, which a batch's writes reach only once committed, so
//! they never see a write that is not in the store, and never wait for one (the price: the
//! model is held twice). The follower does not apply another node's commit while a batch
//! is open. A batch holds at most [`MAX_BATCH`] writes; further writers wait for it to end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{ChangeNote, Lost, Registry, Touched, touched_by};
use crate::error::Rejection;
use crate::model::Mutation;
use crate::store::{Compare, Op, StoreError, Txn};

/// Most writes one batch holds.
pub(super) const MAX_BATCH: usize = 256;

/// One batch of writes.
#[derive(Debug, Default)]
pub(super) struct Batch {
    inner: Mutex<Inner>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    /// The members' mutations, in order.
    muts: Vec<Mutation>,
    /// What undoes them, in the same order (undone last first).
    undo: Vec<Mutation>,
    members: usize,
    /// The outcome, once committed or not.
    outcome: Option<Result<u64, Lost>>,
}

impl Batch {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for the outcome.
    pub(super) fn wait(&self) -> Result<u64, Lost> {
        let mut inner = self.lock();
        loop {
            if let Some(o) = &inner.outcome {
                return o.clone();
            }
            inner = self
                .done
                .wait(inner)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn finish(&self, outcome: Result<u64, Lost>) {
        self.lock().outcome = Some(outcome);
        self.done.notify_all();
    }
}

/// The registry's batching state.
#[derive(Debug, Default)]
pub(super) struct Group {
    /// The batch open to new members (taken under the writer lock).
    open: Mutex<Option<Arc<Batch>>>,
    /// True from a batch's first write into the draft until its outcome is in (committed
    /// to the model, or undone in the draft).
    pending: AtomicBool,
    /// Signalled when a batch ends (readers and the follower wait for it).
    ended: (Mutex<()>, Condvar),
}

impl Group {
    fn open(&self) -> MutexGuard<'_, Option<Arc<Batch>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while a batch's writes are in the model uncommitted.
    pub(super) fn busy(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Wait (at most `limit`) until no batch is open.
    pub(super) fn wait_idle(&self, limit: Duration) {
        let guard = self.ended.0.lock().unwrap_or_else(PoisonError::into_inner);
        if self.busy() {
            let _ = self
                .ended
                .1
                .wait_timeout_while(guard, limit, |()| self.busy())
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn signal_ended(&self) {
        let _g = self.ended.0.lock().unwrap_or_else(PoisonError::into_inner);
        self.pending.store(false, Ordering::SeqCst);
        self.ended.1.notify_all();
    }
}

/// How a member joined.
pub(super) enum Joined {
    /// It leads the batch: it commits it.
    Leader(Arc<Batch>),
    /// Another writer leads it.
    Member(Arc<Batch>),
    /// The batch was full: the writer waited for it and runs its rule again.
    Full,
}

impl Registry {
    /// Join the open batch with `muts` (under the writer lock): apply them to the model,
    /// remembering their undo. A writer with no mutations joins too if a batch is open
    /// (its answer rests on the batch's outcome), else it needs none (`None`).
    pub(super) fn join(&self, muts: Vec<Mutation>) -> Option<Joined> {
        let mut open = self.group.open();
        if muts.is_empty() {
            return open.as_ref().map(|b| Joined::Member(Arc::clone(b)));
        }
        if let Some(b) = open.as_ref()
            && b.lock().members >= MAX_BATCH
        {
            drop(open);
            return Some(Joined::Full);
        }
        let (batch, leads) = match open.as_ref() {
            Some(b) => (Arc::clone(b), false),
            None => {
                let b = Arc::new(Batch::default());
                *open = Some(Arc::clone(&b));
                // Until its outcome is in: the follower waits.
                self.group.pending.store(true, Ordering::SeqCst);
                (b, true)
            }
        };
        drop(open);
        let mut undo = Vec::with_capacity(muts.len());
        {
            let mut model = self.draft();
            for m in &muts {
                let key = match m {
                    Mutation::Put(r) => r.key(),
                    Mutation::Delete(k) => k.clone(),
                };
                undo.push(match model.get(&key) {
                    Some(old) => Mutation::Put(old),
                    None => Mutation::Delete(key),
                });
                model.apply(m.clone());
            }
        }
        let mut inner = batch.lock();
        inner.muts.extend(muts);
        inner.undo.extend(undo);
        inner.members += 1;
        drop(inner);
        Some(if leads {
            Joined::Leader(batch)
        } else {
            Joined::Member(batch)
        })
    }

    /// Commit `batch` (its leader, after letting the queued writers join): one store
    /// transaction, then the outcome to every member.
    pub(super) fn commit_batch(&self, batch: &Batch) {
        // The writers queued on the lock run their rules into the batch first.
        std::thread::yield_now();
        let _writer = self.lock_writer();
        *self.group.open() = None;
        let (muts, undo, members) = {
            let mut inner = batch.lock();
            (
                std::mem::take(&mut inner.muts),
                std::mem::take(&mut inner.undo),
                inner.members,
            )
        };
        metrics::histogram!("vpcep_store_batch_writes").record(members as f64);
        let outcome = match self.commit_store(&muts) {
            Ok(revision) => {
                self.committed(muts, revision);
                Ok(revision)
            }
            Err(lost) => {
                let mut draft = self.draft();
                for m in undo.into_iter().rev() {
                    draft.apply(m);
                }
                Err(lost)
            }
        };
        self.group.signal_ended();
        batch.finish(outcome);
    }

    /// Write `muts` durably in one transaction compared on the revision the model
    /// reflects (before the batch's writes). Called by a batch's leader, with the writer
    /// lock held. A lost race changes nothing and is [`Lost::Race`], which
    /// [`Registry::write`] retries once the follower caught up.
    fn commit_store(&self, muts: &[Mutation]) -> Result<u64, Lost> {
        let mut ops = Vec::with_capacity(muts.len());
        for m in muts {
            ops.push(match m {
                Mutation::Put(r) => Op::Put(
                    r.key().encode(),
                    serde_json::to_vec(r).map_err(|e| {
                        Lost::Refused(Rejection::system(format!("cannot encode record: {e}")))
                    })?,
                ),
                Mutation::Delete(k) => Op::Delete(k.encode()),
            });
        }
        let txn = Txn {
            compare: Compare::Revision(self.revision()),
            ops,
        };
        match self.store.commit(txn) {
            Ok(revision) => {
                self.set_store_up(true);
                Ok(revision)
            }
            Err(StoreError::Conflict { actual, .. }) => Err(Lost::Race(actual)),
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; the change was not applied");
                let unavailable = e.is_unavailable();
                self.set_store_up(!unavailable);
                Err(Lost::Refused(if unavailable {
                    Rejection::store_unavailable()
                } else {
                    Rejection::system("System error. Please retry.")
                }))
            }
        }
    }

    /// A batch's mutations, already in the draft, were committed at `revision`: apply them
    /// to the model, move the revision and notify the pusher of the endpoints they touched.
    /// With the writer lock held.
    fn committed(&self, muts: Vec<Mutation>, revision: u64) {
        let touched = {
            let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
            let touched = touched_by(&model, &muts);
            for m in muts {
                model.apply(m);
            }
            touched
        };
        self.set_revision(revision);
        self.notify(ChangeNote {
            touched: Touched::Endpoints(touched.into_iter().collect()),
            revision,
        });
    }

    /// The follower's writer lock: taken when no batch is open (another node's commit
    /// must not land among a batch's mutations).
    pub(super) fn lock_writer_between_batches(&self) -> MutexGuard<'_, ()> {
        loop {
            let w = self.lock_writer();
            if !self.group.busy() {
                return w;
            }
            drop(w);
            self.group.wait_idle(Duration::from_millis(100));
        }
    }

    /// Wait for the batch in progress to end (at most 100 ms at a time).
    pub(super) fn wait_batch(&self) {
        self.group.wait_idle(Duration::from_millis(100));
    }

    /// The batch open to new members, if any.
    pub(super) fn group_open(&self) -> Option<Arc<Batch>> {
        self.group.open().clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::super::testing::{network, tenant};
    use super::super::{Quotas, Registry};
    use crate::requests::CreatePort;
    use crate::store::{MemStore, Snapshot, Store, StoreError, Txn};

    /// The in-memory store, each commit taking 2 ms (an fsynced round trip), counted, and
    /// failing while `fail` is set.
    #[derive(Debug, Default)]
    struct Slow {
        inner: MemStore,
        commits: AtomicUsize,
        fail: AtomicBool,
    }

    impl Store for Slow {
        fn load(&self) -> Result<Snapshot, StoreError> {
            self.inner.load()
        }
        fn commit(&self, txn: Txn) -> Result<u64, StoreError> {
            std::thread::sleep(Duration::from_millis(2));
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Conflict {
                    expected: 0,
                    actual: 0,
                });
            }
            self.commits.fetch_add(1, Ordering::SeqCst);
            self.inner.commit(txn)
        }
        fn watch(
            &self,
            from: u64,
        ) -> Result<std::sync::mpsc::Receiver<crate::store::Event>, StoreError> {
            self.inner.watch(from)
        }
        fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError> {
            self.inner.claim(token, ttl)
        }
        fn unclaim(&self, token: &str) -> Result<(), StoreError> {
            self.inner.unclaim(token)
        }
        fn held(&self, token: &str) -> Result<bool, StoreError> {
            self.inner.held(token)
        }
    }

    fn registry() -> (Arc<Registry>, Arc<Slow>) {
        let store = Arc::new(Slow::default());
        let r =
            Registry::open(Arc::clone(&store) as Arc<dyn Store>, "r", Quotas::default()).unwrap();
        (Arc::new(r), store)
    }

    /// `n` threads at once each run `f(i)`; their results in order.
    fn at_once<T: Send + 'static>(
        n: usize,
        f: impl Fn(usize) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let f = Arc::new(f);
        let start = Arc::new(Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (f, start) = (Arc::clone(&f), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    f(i)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    }

    fn port_at(
        r: &Registry,
        sub: &crate::model::SubnetId,
        ip: &str,
    ) -> Result<crate::model::Port, crate::error::Rejection> {
        let body = CreatePort {
            subnet_id: Some(sub.to_string()),
            server_type: Some("VM".into()),
            ip: Some(ip.into()),
            ..CreatePort::default()
        };
        r.create_port(&tenant("a"), body.try_into().unwrap())
    }

    #[test]
    fn writes_that_arrive_together_commit_together_each_with_its_answer() {
        let (r, store) = registry();
        let (_, sub) = network(&r, &tenant("a"), "10.0.0.0/16");
        let before = store.commits.load(Ordering::SeqCst);
        let rr = Arc::clone(&r);
        let made = at_once(16, move |i| {
            port_at(&rr, &sub, &format!("10.0.0.{}", 10 + i))
        });
        assert!(made.iter().all(Result::is_ok), "{made:?}");
        assert_eq!(r.read().ports.len(), 16);
        let commits = store.commits.load(Ordering::SeqCst) - before;
        assert!(commits < 16, "16 writes in {commits} commits");
        // Every write is in the store: a registry loaded from it has them all.
        let again =
            Registry::open(Arc::clone(&store) as Arc<dyn Store>, "r", Quotas::default()).unwrap();
        assert_eq!(again.read().ports.len(), 16);
    }

    #[test]
    fn a_rule_sees_the_writes_of_its_batch() {
        let (r, _) = registry();
        let (_, sub) = network(&r, &tenant("a"), "10.0.0.0/16");
        let rr = Arc::clone(&r);
        // Eight ports on one address: one is made, seven are told it is in use.
        let made = at_once(8, move |_| port_at(&rr, &sub, "10.0.0.50"));
        assert_eq!(made.iter().filter(|m| m.is_ok()).count(), 1, "{made:?}");
        assert_eq!(r.read().ports.len(), 1);
    }

    #[test]
    fn a_batch_that_does_not_commit_changes_nothing() {
        let (r, store) = registry();
        let (_, sub) = network(&r, &tenant("a"), "10.0.0.0/16");
        let revision = r.revision();
        store.fail.store(true, Ordering::SeqCst);
        let rr = Arc::clone(&r);
        let s2 = sub.clone();
        let made = at_once(8, move |i| port_at(&rr, &s2, &format!("10.0.0.{}", 10 + i)));
        assert!(made.iter().all(Result::is_err), "{made:?}");
        assert!(r.read().ports.is_empty(), "undone");
        assert_eq!(r.revision(), revision);
        // The addresses were given back: the same writes succeed once the store does.
        store.fail.store(false, Ordering::SeqCst);
        let rr = Arc::clone(&r);
        let made = at_once(8, move |i| {
            port_at(&rr, &sub, &format!("10.0.0.{}", 10 + i))
        });
        assert!(made.iter().all(Result::is_ok), "{made:?}");
    }
}
