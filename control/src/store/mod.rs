//! The durable store: a transactional key-value space with revisions, compare-on-revision
//! transactions, and a watch from a revision.
//!
//! [`Store`] is shaped like etcd's API, which [`EtcdStore`] implements:
//! - every commit makes one new revision (etcd: the cluster revision);
//! - a [`Txn`] carries a [`Compare`] that must hold for its operations to apply (etcd:
//!   `Txn` with a `Compare` on `mod_revision`); a failed compare is
//!   [`StoreError::Conflict`] and changes nothing;
//! - [`Store::watch`] replays every commit after a given revision and then follows new
//!   ones; a revision the store no longer remembers is [`StoreError::Compacted`], and the
//!   caller resyncs from [`Store::load`] (etcd: a compacted watch).
//!
//! Three engines: [`RedbStore`] (embedded, durable: one redb file, fsync per commit),
//! [`EtcdStore`] (an etcd cluster that many nodes share; its watch also brings the other
//! nodes' commits), and [`MemStore`] (in memory, for rule tests). redb and memory keep their
//! recent history for watches in the same [`Feed`]; etcd keeps its own, until compaction.

mod combine;
pub mod config;
mod etcd;
mod mem;
pub mod members;
pub mod owners;
mod redb;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

pub use self::config::{EtcdConfig, StoreEngine};
pub use self::etcd::EtcdStore;
pub use self::mem::MemStore;
pub use self::redb::RedbStore;

/// Most commits remembered for watches that start in the past.
pub const HISTORY: usize = 1024;
/// Most operations remembered over those commits (the newest commit is always kept), so a
/// bulk import does not pin its records in memory.
pub const HISTORY_OPS: usize = 16_384;

/// One write of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Store `value` under `key`.
    Put(String, Vec<u8>),
    /// Remove `key`.
    Delete(String),
}

/// The condition a transaction needs to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Apply unconditionally.
    Always,
    /// Apply only if the store is still at this revision (nobody wrote in between).
    Revision(u64),
}

/// A transaction: its operations apply together, and only if `compare` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// The condition.
    pub compare: Compare,
    /// The writes.
    pub ops: Vec<Op>,
}

/// One commit, as a watch sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The revision the commit made.
    pub revision: u64,
    /// Its writes.
    pub ops: Arc<[Op]>,
}

/// Why the store failed. A failed commit changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine (redb) failed.
    #[error("store {op} failed: {source}")]
    Engine {
        /// What was being done: open, read, commit.
        op: &'static str,
        /// The engine's error.
        #[source]
        source: Box<::redb::Error>,
    },
    /// A transaction's compare failed: someone else committed first.
    #[error("conflict: expected revision {expected}, the store is at {actual}")]
    Conflict {
        /// The revision the transaction expected.
        expected: u64,
        /// The store's revision.
        actual: u64,
    },
    /// A watch asked for revisions the store no longer remembers; resync with a load.
    #[error("revision {from} is compacted; the oldest a watch can start from is {oldest}")]
    Compacted {
        /// The revision asked for.
        from: u64,
        /// The oldest revision a watch can start from (0: the engine does not say; etcd).
        oldest: u64,
    },
    /// etcd refused the request (refused credentials, too many operations in one
    /// transaction, a request too large); nothing was applied.
    #[error("etcd {op} failed: {source}")]
    Etcd {
        /// What was being done: connect, load, commit, watch.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<etcd_client::Error>,
    },
    /// A setting of the engine cannot be used (an unreadable certificate or password file).
    #[error("{what} {path}: {source}")]
    Setting {
        /// The setting.
        what: &'static str,
        /// The file it names.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// etcd did not answer within the deadline. A commit may still apply: a watch brings
    /// it then, like any other node's.
    #[error("etcd did not answer {op} within {after:?}")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// etcd cannot be reached (connection refused or lost, or no leader); nothing was
    /// applied.
    #[error("etcd is unreachable ({op}): {source}")]
    Unavailable {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        #[source]
        source: Box<etcd_client::Error>,
    },
}

impl StoreError {
    /// Whether the store could not be reached (or did not answer in time): the API's 503,
    /// worth retrying later, rather than a failure of the request itself.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Unavailable { .. })
    }
}

/// Everything in the store at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The revision of the last commit (0 for an empty store).
    pub revision: u64,
    /// Every key and value, ordered by key.
    pub entries: Vec<(String, Vec<u8>)>,
}

/// A transactional key-value space with revisions and watches.
pub trait Store: Send + Sync + 'static {
    /// Read everything, at one revision.
    ///
    /// # Errors
    /// [`StoreError`].
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Apply `txn` atomically and durably if its compare holds; returns the new revision.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the compare failed, or the engine's error; either way
    /// nothing was applied.
    fn commit(&self, txn: Txn) -> Result<u64, StoreError>;

    /// Every commit after revision `from`, then every new one, in order.
    ///
    /// # Errors
    /// [`StoreError::Compacted`] if commits after `from` are no longer remembered.
    fn watch(&self, from: u64) -> Result<Receiver<Event>, StoreError>;

    /// Take `token` for `ttl`, once: true if nobody held it (it is now held until `ttl`
    /// has passed), false if it is held. The API's replay cache takes each signed write's
    /// signature here, so every node that shares the store (etcd), and this node after a
    /// restart (redb), refuses it again within its window. Claims are outside the records:
    /// no revision, no watch event, not in [`Store::load`].
    ///
    /// # Errors
    /// [`StoreError`]; then nothing was taken.
    fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// Give `token` back (the write it admitted was refused, so it may be sent again).
    ///
    /// # Errors
    /// [`StoreError`]; the token is then held until its `ttl` passes.
    fn unclaim(&self, token: &str) -> Result<(), StoreError>;

    /// Whether `token` is held now (taken by [`Store::claim`], not given back, not past its
    /// `ttl`). The console's sessions are claims: every node sees one end at sign-out.
    ///
    /// # Errors
    /// [`StoreError`].
    fn held(&self, token: &str) -> Result<bool, StoreError>;
}

/// The recent history of a store and its watchers; both engines share it. Call
/// [`Feed::check`] before a commit and [`Feed::publish`] after it, under the engine's write
/// lock, so revisions are published in order.
#[derive(Debug)]
pub struct Feed {
    revision: u64,
    history: VecDeque<Event>,
    history_ops: usize,
    watchers: Vec<Sender<Event>>,
}

impl Feed {
    /// A feed for a store at `revision`, with no history.
    pub fn new(revision: u64) -> Self {
        Self {
            revision,
            history: VecDeque::new(),
            history_ops: 0,
            watchers: Vec::new(),
        }
    }

    /// The last revision.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Check `compare` against the current revision.
    ///
    /// # Errors
    /// [`StoreError::Conflict`].
    pub fn check(&self, compare: Compare) -> Result<(), StoreError> {
        match compare {
            Compare::Revision(expected) if expected != self.revision => Err(StoreError::Conflict {
                expected,
                actual: self.revision,
            }),
            _ => Ok(()),
        }
    }

    /// Record a commit that made `revision` and hand it to every watcher.
    pub fn publish(&mut self, revision: u64, ops: Vec<Op>) {
        self.revision = revision;
        let event = Event {
            revision,
            ops: ops.into(),
        };
        self.history_ops += event.ops.len();
        self.history.push_back(event.clone());
        while self.history.len() > HISTORY
            || (self.history.len() > 1 && self.history_ops > HISTORY_OPS)
        {
            if let Some(old) = self.history.pop_front() {
                self.history_ops -= old.ops.len();
            }
        }
        self.watchers.retain(|w| w.send(event.clone()).is_ok());
    }

    /// A watcher of every commit after `from`.
    ///
    /// # Errors
    /// [`StoreError::Compacted`].
    pub fn watch(&mut self, from: u64) -> Result<Receiver<Event>, StoreError> {
        let oldest = self
            .history
            .front()
            .map_or(self.revision, |e| e.revision - 1);
        if from < oldest {
            return Err(StoreError::Compacted { from, oldest });
        }
        let (tx, rx) = channel();
        for e in self.history.iter().filter(|e| e.revision > from) {
            // The receiver is still in our hands: this send cannot fail.
            let _ = tx.send(e.clone());
        }
        self.watchers.push(tx);
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Op {
        Op::Put(k.into(), v.as_bytes().to_vec())
    }

    /// The contract every engine keeps; run against both.
    pub(super) fn contract(s: &dyn Store) {
        let start = s.load().unwrap().revision;
        let mut w = s.watch(start).unwrap();
        let r1 = s
            .commit(Txn {
                compare: Compare::Revision(start),
                ops: vec![put("a", "1"), put("b", "2")],
            })
            .unwrap();
        assert_eq!(r1, start + 1);
        let r2 = s
            .commit(Txn {
                compare: Compare::Always,
                ops: vec![Op::Delete("a".into())],
            })
            .unwrap();
        assert_eq!(r2, r1 + 1);
        // A stale compare applies nothing.
        let err = s
            .commit(Txn {
                compare: Compare::Revision(r1),
                ops: vec![put("c", "3")],
            })
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { expected, actual } if expected == r1 && actual == r2)
        );
        let snap = s.load().unwrap();
        assert_eq!(snap.revision, r2);
        assert_eq!(snap.entries, vec![("b".to_string(), b"2".to_vec())]);
        // The watch saw both commits, in order; one started later replays from its revision.
        let seen: Vec<u64> = std::iter::from_fn(|| w.try_recv().ok())
            .map(|e| e.revision)
            .collect();
        assert_eq!(seen, vec![r1, r2]);
        w = s.watch(r1).unwrap();
        let e = w.try_recv().unwrap();
        assert_eq!((e.revision, &*e.ops), (r2, &[Op::Delete("a".into())][..]));
        assert!(w.try_recv().is_err());
    }

    #[test]
    fn the_memory_store_keeps_the_contract() {
        contract(&MemStore::default());
    }

    #[test]
    fn watches_before_the_history_are_compacted() {
        let s = MemStore::default();
        for i in 0..(HISTORY + 5) {
            s.commit(Txn {
                compare: Compare::Always,
                ops: vec![put("k", &i.to_string())],
            })
            .unwrap();
        }
        assert!(matches!(
            s.watch(0),
            Err(StoreError::Compacted { from: 0, oldest: 5 })
        ));
        let w = s.watch(5).unwrap();
        assert_eq!(w.try_recv().unwrap().revision, 6);
        assert_eq!(
            std::iter::from_fn(|| w.try_recv().ok()).count(),
            HISTORY - 1
        );
    }

    #[test]
    fn a_bulk_commit_does_not_pin_the_history() {
        let s = MemStore::default();
        let bulk: Vec<Op> = (0..HISTORY_OPS).map(|i| put(&i.to_string(), "v")).collect();
        for _ in 0..2 {
            s.commit(Txn {
                compare: Compare::Always,
                ops: bulk.clone(),
            })
            .unwrap();
        }
        // Only the newest bulk commit is remembered.
        assert!(matches!(
            s.watch(0),
            Err(StoreError::Compacted { from: 0, oldest: 1 })
        ));
        assert_eq!(s.watch(1).unwrap().try_recv().unwrap().revision, 2);
    }
}
