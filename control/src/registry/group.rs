//! Group commit: writes that arrive together on one node go to the store in one
//! transaction, each with its own rule check and its own answer.
//!
//! Without it, each write holds the writer lock for its rule and its store round trip (an
//! fsynced etcd transaction, about a millisecond), so one node commits about a thousand
//! writes a second however many clients wait. With it:
//!
//! 1. A writer takes the writer lock and runs its rule on the model, which holds the
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
//! What is in a batch that has not committed is never seen outside it: readers
//! ([`super::Registry::read`], the API's views and the pusher) wait while a batch is open,
//! and the follower does not apply another node's commit into one. A batch holds at most
//! [`MAX_BATCH`] writes; further writers wait for it to end.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLockReadGuard};
use std::time::Duration;

use super::{Lost, Registry};
use crate::model::{Model, Mutation};

/// Most writes one batch holds.
pub const MAX_BATCH: usize = 256;

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
    /// Signalled when a batch ends (readers and the follower wait for it).
    ended: (Mutex<()>, Condvar),
}

impl Group {
    fn open(&self) -> MutexGuard<'_, Option<Arc<Batch>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True while a batch is open or committing.
    pub(super) fn busy(&self) -> bool {
        self.open().is_some()
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
    /// The model as the rules see it: with the open batch's mutations. Only under the
    /// writer lock.
    pub(super) fn model_for_rules(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(PoisonError::into_inner)
    }

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
                (b, true)
            }
        };
        drop(open);
        let mut undo = Vec::with_capacity(muts.len());
        {
            let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
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
                self.committed(&muts, revision);
                Ok(revision)
            }
            Err(lost) => {
                let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
                for m in undo.into_iter().rev() {
                    model.apply(m);
                }
                Err(lost)
            }
        };
        self.group.signal_ended();
        batch.finish(outcome);
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

    /// A reader's wait: true once no batch is open, so what it reads is committed.
    pub(super) fn batch_open(&self) -> bool {
        self.group.busy()
    }

    pub(super) fn wait_batch(&self) {
        self.group.wait_idle(Duration::from_millis(100));
    }

    pub(super) fn revision_now(&self) -> u64 {
        self.revision.load(Ordering::Acquire)
    }
}
