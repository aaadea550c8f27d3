//! The replay cache: signatures seen recently, each kept until its date window closes, so
//! a signed write cannot be sent twice.
//!
//! Two levels. This process's memory is the fast path: a signature it holds is refused
//! without asking anyone. Behind it, the daemon's store ([`Store::claim`], through the
//! registry, which also notes whether the store answered): with etcd, every
//! node of the cluster claims the same key, so exactly one node accepts a signature (the
//! others refuse it as a replay); with redb, the claims are in the node's file, so a
//! restart does not reopen the window. A signature is held in memory before the store is
//! asked, so two copies sent to one node at once are settled there.
//!
//! The store's calls block (an etcd round trip, a redb fsync): [`ReplayCache::admit`] and
//! [`ReplayCache::release`] are called from the blocking pool.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Verified;
use crate::store::{Store, StoreError};

/// Where a [`ReplayCache`] claims signatures beyond its process: [`Store::claim`] and
/// [`Store::unclaim`] (the daemon passes its registry, which tracks the store's health).
pub trait Claims: Send + Sync {
    /// See [`Store::claim`].
    ///
    /// # Errors
    /// [`StoreError`]; then nothing was taken.
    fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError>;

    /// See [`Store::unclaim`].
    ///
    /// # Errors
    /// [`StoreError`].
    fn unclaim(&self, token: &str) -> Result<(), StoreError>;

    /// See [`Store::held`].
    ///
    /// # Errors
    /// [`StoreError`].
    fn held(&self, token: &str) -> Result<bool, StoreError>;
}

impl<S: Store> Claims for S {
    fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        Store::claim(self, token, ttl)
    }

    fn unclaim(&self, token: &str) -> Result<(), StoreError> {
        Store::unclaim(self, token)
    }

    fn held(&self, token: &str) -> Result<bool, StoreError> {
        Store::held(self, token)
    }
}

/// The signatures seen recently, each kept until its date window closes, so one cannot be
/// used twice. Bounded: when every slot holds a signature still inside its window, a new one
/// is refused ([`ReplayError::Full`]) rather than an old one forgotten, since forgetting
/// would reopen that signature to replay.
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
    /// Where signatures are claimed beyond this process (none: memory only).
    store: Option<Arc<dyn Claims>>,
}

impl core::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("capacity", &self.capacity)
            .field("shared", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashMap<[u8; 32], DateTime<Utc>>,
    /// Insertion order with each entry's end of validity; entries are evicted from the front
    /// once expired. Windows are one length for every entry, so this order is also (up to
    /// clock skew of the callers) the order of expiry.
    order: VecDeque<([u8; 32], DateTime<Utc>)>,
}

/// Why [`ReplayCache::admit`] refused a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Every slot holds a signature that is still valid; try again later.
    #[error("the replay cache is full")]
    Full,
    /// The signature was seen before and is still valid (here, or by another node).
    #[error("the signature was already used")]
    Replayed,
    /// The store failed otherwise (a disk error); the write is not admitted.
    #[error("the store of the replay cache failed")]
    StoreFailed,
    /// The store could not be asked (etcd unreachable); the write is not admitted.
    #[error("the store of the replay cache cannot be reached")]
    Unavailable,
}

impl ReplayCache {
    /// A cache of at most `capacity` signatures, in this process only.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(ReplayInner::default()),
            store: None,
        }
    }

    /// The same, claiming every signature in `store` too (see the module's doc).
    pub fn with_store(mut self, store: Arc<dyn Claims>) -> Self {
        self.store = Some(store);
        self
    }

    /// Record `v`'s signature at `now`: in memory, then in the store.
    ///
    /// # Errors
    /// [`ReplayError::Replayed`] if it is already recorded (here or in the store),
    /// [`ReplayError::Full`] if there is no room, [`ReplayError::Unavailable`] or
    /// [`ReplayError::StoreFailed`] if the store failed. Refused, it is recorded nowhere.
    pub fn admit(&self, v: &Verified, now: DateTime<Utc>) -> Result<(), ReplayError> {
        self.admit_here(v, now)?;
        let Some(store) = &self.store else {
            return Ok(());
        };
        // One second more than the window: the store's clock and ours may not agree on the
        // second the window closes.
        let ttl = (v.valid_until - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .saturating_add(Duration::from_secs(1));
        match store.claim(&hex::encode(v.signature), ttl) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.forget(v);
                Err(ReplayError::Replayed)
            }
            Err(error) => {
                tracing::debug!(%error, "the replay cache's store failed");
                self.forget(v);
                Err(if error.is_unavailable() {
                    ReplayError::Unavailable
                } else {
                    ReplayError::StoreFailed
                })
            }
        }
    }

    /// [`ReplayCache::admit`] in memory only.
    fn admit_here(&self, v: &Verified, now: DateTime<Utc>) -> Result<(), ReplayError> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some((sig, until)) = inner.order.front().copied() {
            if until >= now {
                break;
            }
            inner.order.pop_front();
            inner.seen.remove(&sig);
        }
        if inner.seen.get(&v.signature).is_some_and(|u| *u >= now) {
            return Err(ReplayError::Replayed);
        }
        if inner.order.len() >= self.capacity {
            // Clock skew between callers can leave an expired entry behind a live one.
            let ReplayInner { seen, order } = &mut *inner;
            order.retain(|(_, u)| *u >= now);
            seen.retain(|_, u| *u >= now);
            if order.len() >= self.capacity {
                return Err(ReplayError::Full);
            }
        }
        inner.seen.insert(v.signature, v.valid_until);
        inner.order.push_back((v.signature, v.valid_until));
        Ok(())
    }

    /// Forget `v`'s signature, here and in the store: its write was refused and changed
    /// nothing, so using it again (a client's retry within the same second signs
    /// identically) may not do more than the first use could have. A signature thus makes
    /// at most one successful write. If the store fails, the signature stays claimed there
    /// until its window closes (the retry is refused; a new signature works).
    pub fn release(&self, v: &Verified) {
        self.forget(v);
        if let Some(store) = &self.store
            && let Err(error) = store.unclaim(&hex::encode(v.signature))
        {
            tracing::debug!(%error, "the replay cache's store could not release a signature");
        }
    }

    /// Forget `v`'s signature in memory.
    fn forget(&self, v: &Verified) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.seen.remove(&v.signature).is_some()
            && let Some(pos) = inner.order.iter().rposition(|(s, _)| *s == v.signature)
        {
            inner.order.remove(pos);
        }
    }

    /// Signatures held now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .order
            .len()
    }

    /// True if none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::model::Tenant;

    /// A verified request of one tenant with signature `[b; 32]`, valid until `until`.
    fn verified(b: u8, until: DateTime<Utc>) -> Verified {
        Verified {
            tenant: Tenant {
                domain_id: "d".into(),
                project_id: "p".into(),
                ak: "a".into(),
                org_path: None,
            },
            signature: [b; 32],
            valid_until: until,
        }
    }

    #[test]
    fn the_replay_cache_forgets_a_signature_only_after_its_window() {
        let t0 = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let v = |b: u8, until: i64| verified(b, t0 + TimeDelta::seconds(until));
        let c = ReplayCache::new(2);
        assert_eq!(c.admit(&v(1, 10), t0), Ok(()));
        assert_eq!(c.admit(&v(1, 10), t0), Err(ReplayError::Replayed));
        assert_eq!(c.admit(&v(2, 5), t0), Ok(()));
        assert_eq!(c.admit(&v(3, 10), t0), Err(ReplayError::Full));
        // Entry 2 expired (skew put it behind entry 1): the full scan finds it.
        let later = t0 + TimeDelta::seconds(6);
        assert_eq!(c.admit(&v(3, 10), later), Ok(()));
        assert_eq!(c.admit(&v(1, 10), later), Err(ReplayError::Replayed));
        assert_eq!(c.admit(&v(4, 20), t0 + TimeDelta::seconds(11)), Ok(()));
        assert_eq!(c.len(), 1, "expired entries went from the front");
        let t11 = t0 + TimeDelta::seconds(11);
        c.release(&v(4, 20));
        assert!(c.is_empty());
        assert_eq!(
            c.admit(&v(4, 20), t11),
            Ok(()),
            "a released signature is usable again"
        );
        assert_eq!(c.admit(&v(4, 20), t11), Err(ReplayError::Replayed));
    }

    #[test]
    fn caches_that_share_a_store_admit_a_signature_once() {
        let now = Utc::now();
        let v = |b: u8| verified(b, now + TimeDelta::seconds(60));
        let store: Arc<dyn Claims> = Arc::new(crate::store::MemStore::default());
        let one = ReplayCache::new(8).with_store(Arc::clone(&store));
        let two = ReplayCache::new(8).with_store(Arc::clone(&store));
        assert_eq!(one.admit(&v(1), now), Ok(()));
        assert_eq!(two.admit(&v(1), now), Err(ReplayError::Replayed));
        assert!(two.is_empty(), "a refused signature is held nowhere");
        // Released on one node (its write was refused): another may take it.
        one.release(&v(1));
        assert_eq!(two.admit(&v(1), now), Ok(()));
        assert_eq!(one.admit(&v(1), now), Err(ReplayError::Replayed));
    }
}
