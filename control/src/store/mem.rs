//! [`MemStore`]: the [`Store`] contract in memory, with no durability. For the registry's
//! rule tests (no disk, no HTTP); never used by the daemon.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::{Event, Feed, Op, Snapshot, Store, StoreError, Txn};

/// A store in memory.
#[derive(Debug)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    entries: BTreeMap<String, Vec<u8>>,
    feed: Feed,
    /// Claimed tokens and when each claim ends.
    claims: HashMap<String, Instant>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: BTreeMap::new(),
                feed: Feed::new(0),
                claims: HashMap::new(),
            }),
        }
    }
}

impl MemStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let inner = self.lock();
        Ok(Snapshot {
            revision: inner.feed.revision(),
            entries: inner
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    fn commit(&self, txn: Txn) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        inner.feed.check(txn.compare)?;
        for op in &txn.ops {
            match op {
                Op::Put(k, v) => {
                    inner.entries.insert(k.clone(), v.clone());
                }
                Op::Delete(k) => {
                    inner.entries.remove(k);
                }
            }
        }
        let revision = inner.feed.revision() + 1;
        inner.feed.publish(revision, txn.ops);
        Ok(revision)
    }

    fn watch(&self, from: u64) -> Result<Receiver<Event>, StoreError> {
        self.lock().feed.watch(from)
    }

    fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.claims.retain(|_, until| *until > now);
        if inner.claims.contains_key(token) {
            return Ok(false);
        }
        inner.claims.insert(token.to_string(), now + ttl);
        Ok(true)
    }

    fn held(&self, token: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .claims
            .get(token)
            .is_some_and(|until| *until > Instant::now()))
    }

    fn unclaim(&self, token: &str) -> Result<(), StoreError> {
        self.lock().claims.remove(token);
        Ok(())
    }
}
