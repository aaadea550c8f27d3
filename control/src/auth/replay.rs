//! The replay cache: signatures seen recently, each kept until its date window closes, so
//! a signed write cannot be sent twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::Verified;

/// The signatures seen recently, each kept until its date window closes, so one cannot be
/// used twice. Bounded: when every slot holds a signature still inside its window, a new one
/// is refused ([`ReplayError::Full`]) rather than an old one forgotten, since forgetting
/// would reopen that signature to replay.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<ReplayInner>,
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
    /// The signature was seen before and is still valid.
    #[error("the signature was already used")]
    Replayed,
}

impl ReplayCache {
    /// A cache of at most `capacity` signatures.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Record `v`'s signature at `now`.
    ///
    /// # Errors
    /// [`ReplayError::Replayed`] if it is already recorded, [`ReplayError::Full`] if there
    /// is no room.
    pub fn admit(&self, v: &Verified, now: DateTime<Utc>) -> Result<(), ReplayError> {
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

    /// Forget `v`'s signature: its write was refused and changed nothing, so using it again
    /// (a client's retry within the same second signs identically) may not do more than the
    /// first use could have. A signature thus makes at most one successful write.
    pub fn release(&self, v: &Verified) {
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

    #[test]
    fn the_replay_cache_forgets_a_signature_only_after_its_window() {
        let t0 = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let v = |b: u8, until: i64| Verified {
            tenant: Tenant {
                domain_id: "d".into(),
                project_id: "p".into(),
                ak: "a".into(),
                org_path: None,
            },
            signature: [b; 32],
            valid_until: t0 + TimeDelta::seconds(until),
        };
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
}
