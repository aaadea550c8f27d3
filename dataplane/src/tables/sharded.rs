//! A persistent hash map built from shards behind `Arc`s.
//!
//! A published table must never change, yet a single accept or reject must become live in
//! well under a millisecond even with 100 k entries. A full rebuild of a 100 k map costs
//! milliseconds; so the map is split into [`SHARDS`] independent hash tables, each behind an
//! `Arc`. [`ShardedMap::apply`] makes a new map that shares every untouched shard with the
//! old one and copies only the shards a change touches (about `len / SHARDS` entries each).
//!
//! One seeded hash per lookup: its top bits pick the shard, and the same hash probes the
//! shard (`hashbrown::HashTable` takes a precomputed hash).

use core::hash::{BuildHasher, Hash};
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

/// Number of shards. A power of two; one change copies about `len / SHARDS` entries.
pub const SHARDS: usize = 256;

type Shard<K, V> = Arc<HashTable<(K, V)>>;

/// An immutable map whose shards are shared between versions.
#[derive(Clone)]
pub struct ShardedMap<K, V> {
    hasher: RandomState,
    shards: Arc<[Shard<K, V>]>,
    len: usize,
}

impl<K, V> core::fmt::Debug for ShardedMap<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShardedMap")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

/// One change to a [`ShardedMap`].
#[derive(Clone, Debug)]
pub enum Change<K, V> {
    /// Insert or replace the value under the key.
    Put(K, V),
    /// Remove the key (no effect if absent).
    Remove(K),
}

impl<K: Hash + Eq + Clone, V: Clone> ShardedMap<K, V> {
    /// An empty map with a fresh random seed.
    pub fn new() -> Self {
        let shards: Vec<_> = (0..SHARDS).map(|_| Arc::new(HashTable::new())).collect();
        Self {
            hasher: RandomState::default(),
            shards: shards.into(),
            len: 0,
        }
    }

    /// Build a map from entries (later duplicates win).
    pub fn from_entries(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        let empty = Self::new();
        empty.apply(entries.into_iter().map(|(k, v)| Change::Put(k, v)))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn locate(&self, key: &K) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        // SHARDS is 256: the top 8 bits of the hash, which hashbrown's probe uses least.
        #[allow(clippy::cast_possible_truncation)]
        let shard = (hash >> 56) as usize % SHARDS;
        (hash, shard)
    }

    /// The value under `key`.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let (hash, shard) = self.locate(key);
        self.shards[shard]
            .find(hash, |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (k, v)))
    }

    /// A new map with `changes` applied. Shards no change touches are shared with `self`.
    pub fn apply(&self, changes: impl IntoIterator<Item = Change<K, V>>) -> Self {
        let mut shards: Vec<Shard<K, V>> = self.shards.to_vec();
        let mut len = self.len;
        let hasher = &self.hasher;
        for change in changes {
            let key = match &change {
                Change::Put(k, _) | Change::Remove(k) => k,
            };
            let (hash, idx) = self.locate(key);
            // Copy-on-write: the first touch of a shard clones it; later touches reuse it.
            let table = Arc::make_mut(&mut shards[idx]);
            match change {
                Change::Put(k, v) => {
                    match table.entry(hash, |(ek, _)| *ek == k, |(ek, _)| hasher.hash_one(ek)) {
                        hashbrown::hash_table::Entry::Occupied(mut o) => o.get_mut().1 = v,
                        hashbrown::hash_table::Entry::Vacant(vac) => {
                            vac.insert((k, v));
                            len += 1;
                        }
                    }
                }
                Change::Remove(k) => {
                    if let Ok(o) = table.find_entry(hash, |(ek, _)| *ek == k) {
                        o.remove();
                        len -= 1;
                    }
                }
            }
        }
        Self {
            hasher: self.hasher.clone(),
            shards: shards.into(),
            len,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn apply_shares_untouched_shards() {
        let base = ShardedMap::from_entries((0u32..10_000).map(|i| (i, i * 2)));
        assert_eq!(base.len(), 10_000);
        let next = base.apply([
            Change::Put(5, 99),
            Change::Remove(6),
            Change::Put(20_000, 1),
        ]);
        assert_eq!(next.get(&5), Some(&99));
        assert_eq!(next.get(&6), None);
        assert_eq!(next.get(&20_000), Some(&1));
        assert_eq!(next.len(), 10_000);
        // The old version is untouched.
        assert_eq!(base.get(&5), Some(&10));
        assert_eq!(base.get(&6), Some(&12));
        let shared = base
            .shards
            .iter()
            .zip(next.shards.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b));
        assert!(shared.count() >= SHARDS - 3);
    }

    proptest! {
        #[test]
        fn behaves_like_a_hashmap(ops in proptest::collection::vec((any::<bool>(), 0u16..64, any::<u8>()), 0..200)) {
            let mut model = HashMap::new();
            let mut map = ShardedMap::new();
            for chunk in ops.chunks(7) {
                let changes: Vec<_> = chunk.iter().map(|&(put, k, v)| {
                    if put { model.insert(k, v); Change::Put(k, v) } else { model.remove(&k); Change::Remove(k) }
                }).collect();
                map = map.apply(changes);
            }
            prop_assert_eq!(map.len(), model.len());
            for (k, v) in &model {
                prop_assert_eq!(map.get(k), Some(v));
            }
            prop_assert_eq!(map.iter().count(), model.len());
        }
    }
}
