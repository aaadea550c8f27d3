//! [`RedbStore`]: the embedded engine, a single redb file under the data directory.
//!
//! A commit is one redb write transaction with immediate durability (fsync) that writes
//! every operation and the new revision together, so a crash at any point leaves either all
//! of a change or none of it, and `commit` returns only once the change is on disk. The
//! compare is checked and the watchers are told under one lock, so revisions reach them in
//! order. The watch history starts at open: older revisions are compacted.
//!
//! Claims ([`Store::claim`], the replay cache's signatures) live in two tables of their own,
//! by token and by expiry. They are committed without an fsync of their own
//! (`Durability::None`): the signed write a claim guards commits right after it with
//! immediate durability, and redb makes every earlier commit durable with it, so an
//! acknowledged write's claim is on disk before the answer leaves (an fsync per signed
//! write cost 31 % of durable writes in apibench). A claim whose write was refused may be
//! lost to a crash (not to a planned stop: dropping the store commits once more with
//! immediate durability); its write can then be sent again within the window, and meets
//! the rules again. Each
//! claim removes at most [`PRUNE`] expired ones (oldest first): the tables hold the live
//! claims and a bounded remainder, with no sweeper.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, TableDefinition};

use super::{Event, Feed, Op, Snapshot, Store, StoreError, Txn};

const RESOURCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("resources");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
/// Claimed token -> end of the claim (Unix milliseconds).
const CLAIMS: TableDefinition<'_, &str, u64> = TableDefinition::new("claims");
/// (end of the claim, token): the claims in order of expiry, for pruning.
const CLAIMS_BY_END: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("claims_by_end");
/// Expired claims one claim removes at most.
const PRUNE: usize = 64;

/// Now, in Unix milliseconds (0 before 1970: a clock that wrong expires nothing early).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A mapper from any redb error to a [`StoreError`] for `op`.
fn fail<E: Into<redb::Error>>(op: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError::Engine {
        op,
        source: Box::new(e.into()),
    }
}

/// The embedded store: one redb file.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    feed: Mutex<Feed>,
}

impl Drop for RedbStore {
    /// One last commit with immediate durability: claims made since the last write reach
    /// the disk at a planned stop.
    fn drop(&mut self) {
        if let Ok(tx) = self.db.begin_write()
            && let Err(e) = tx.commit()
        {
            tracing::warn!(error = %e, "could not flush the store's last claims");
        }
    }
}

impl RedbStore {
    /// Open (or create) the store at `path`.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(fail("open"))?;
        // Make sure both tables exist so readers never see a missing table.
        let tx = db.begin_write().map_err(fail("open"))?;
        {
            tx.open_table(RESOURCES).map_err(fail("open"))?;
            tx.open_table(META).map_err(fail("open"))?;
            tx.open_table(CLAIMS).map_err(fail("open"))?;
            tx.open_table(CLAIMS_BY_END).map_err(fail("open"))?;
        }
        tx.commit().map_err(fail("open"))?;
        let revision = {
            let rx = db.begin_read().map_err(fail("open"))?;
            let meta = rx.open_table(META).map_err(fail("open"))?;
            meta.get(REVISION)
                .map_err(fail("open"))?
                .map_or(0, |v| v.value())
        };
        Ok(Self {
            db,
            feed: Mutex::new(Feed::new(revision)),
        })
    }

    fn feed(&self) -> std::sync::MutexGuard<'_, Feed> {
        self.feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let rx = self.db.begin_read().map_err(fail("read"))?;
        let table = rx.open_table(RESOURCES).map_err(fail("read"))?;
        let meta = rx.open_table(META).map_err(fail("read"))?;
        let revision = meta
            .get(REVISION)
            .map_err(fail("read"))?
            .map_or(0, |v| v.value());
        let mut entries = Vec::new();
        for item in table.iter().map_err(fail("read"))? {
            let (k, v) = item.map_err(fail("read"))?;
            entries.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(Snapshot { revision, entries })
    }

    fn commit(&self, txn: Txn) -> Result<u64, StoreError> {
        // Held across the write so that compare, commit and publish are one step.
        let mut feed = self.feed();
        feed.check(txn.compare)?;
        let tx = self.db.begin_write().map_err(fail("commit"))?;
        let revision;
        {
            let mut table = tx.open_table(RESOURCES).map_err(fail("commit"))?;
            for op in &txn.ops {
                match op {
                    Op::Put(k, v) => {
                        table
                            .insert(k.as_str(), v.as_slice())
                            .map_err(fail("commit"))?;
                    }
                    Op::Delete(k) => {
                        table.remove(k.as_str()).map_err(fail("commit"))?;
                    }
                }
            }
            let mut meta = tx.open_table(META).map_err(fail("commit"))?;
            revision = meta
                .get(REVISION)
                .map_err(fail("commit"))?
                .map_or(0, |v| v.value())
                + 1;
            meta.insert(REVISION, revision).map_err(fail("commit"))?;
        }
        // Immediate durability is redb's default: commit returns after fsync.
        tx.commit().map_err(fail("commit"))?;
        feed.publish(revision, txn.ops);
        Ok(revision)
    }

    fn watch(&self, from: u64) -> Result<Receiver<Event>, StoreError> {
        self.feed().watch(from)
    }

    fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = unix_ms();
        let end = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        // redb serialises write transactions; the feed's lock is not needed (no revision).
        let mut tx = self.db.begin_write().map_err(fail("claim"))?;
        // Made durable by the write it guards (see the module docs).
        tx.set_durability(redb::Durability::None);
        let taken = {
            let mut claims = tx.open_table(CLAIMS).map_err(fail("claim"))?;
            let mut by_end = tx.open_table(CLAIMS_BY_END).map_err(fail("claim"))?;
            let expired: Vec<(u64, String)> = by_end
                .range(..(now, ""))
                .map_err(fail("claim"))?
                .take(PRUNE)
                .map(|item| item.map(|(k, _)| (k.value().0, k.value().1.to_string())))
                .collect::<Result<_, _>>()
                .map_err(fail("claim"))?;
            for (until, old) in &expired {
                by_end
                    .remove((*until, old.as_str()))
                    .map_err(fail("claim"))?;
                // A claim taken again since has a later end: keep it.
                let same = claims
                    .get(old.as_str())
                    .map_err(fail("claim"))?
                    .is_some_and(|v| v.value() == *until);
                if same {
                    claims.remove(old.as_str()).map_err(fail("claim"))?;
                }
            }
            let held = claims.get(token).map_err(fail("claim"))?.map(|v| v.value());
            match held {
                Some(until) if until >= now => false,
                _ => {
                    if let Some(until) = held {
                        by_end.remove((until, token)).map_err(fail("claim"))?;
                    }
                    claims.insert(token, end).map_err(fail("claim"))?;
                    by_end.insert((end, token), ()).map_err(fail("claim"))?;
                    true
                }
            }
        };
        tx.commit().map_err(fail("claim"))?;
        Ok(taken)
    }

    fn unclaim(&self, token: &str) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(fail("claim"))?;
        tx.set_durability(redb::Durability::None);
        {
            let mut claims = tx.open_table(CLAIMS).map_err(fail("claim"))?;
            let mut by_end = tx.open_table(CLAIMS_BY_END).map_err(fail("claim"))?;
            let held = claims
                .remove(token)
                .map_err(fail("claim"))?
                .map(|v| v.value());
            if let Some(until) = held {
                by_end.remove((until, token)).map_err(fail("claim"))?;
            }
        }
        tx.commit().map_err(fail("claim"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Compare, tests::contract};
    use super::*;

    #[test]
    fn keeps_the_contract_and_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("vpcep-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            assert_eq!(s.load().unwrap().revision, 0);
            contract(&s);
        }
        let s = RedbStore::open(&path).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.revision, 2);
        assert_eq!(snap.entries, vec![("b".to_string(), b"2".to_vec())]);
        // History starts at open: older revisions are compacted, the current one is not.
        assert!(matches!(s.watch(1), Err(StoreError::Compacted { .. })));
        let w = s.watch(2).unwrap();
        s.commit(Txn {
            compare: Compare::Revision(2),
            ops: vec![Op::Delete("b".into())],
        })
        .unwrap();
        assert_eq!(w.try_recv().unwrap().revision, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn claims_survive_a_reopen_expire_and_are_pruned() {
        use redb::ReadableTableMetadata;
        let dir = std::env::temp_dir().join(format!("vpcep-claims-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.redb");
        let long = Duration::from_secs(600);
        {
            let s = RedbStore::open(&path).unwrap();
            assert!(s.claim("a", long).unwrap());
            assert!(!s.claim("a", long).unwrap(), "held");
            assert!(s.claim("b", long).unwrap());
            s.unclaim("b").unwrap();
            for i in 0..(PRUNE * 2) {
                assert!(s.claim(&format!("short{i}"), Duration::ZERO).unwrap());
            }
        }
        let s = RedbStore::open(&path).unwrap();
        assert!(!s.claim("a", long).unwrap(), "still held after a reopen");
        assert!(s.claim("b", long).unwrap(), "given back");
        // Expired claims can be taken again, and each claim prunes up to PRUNE of them.
        std::thread::sleep(Duration::from_millis(5)); // past the zero-length claims' end
        assert!(s.claim("short0", long).unwrap());
        assert!(s.claim("c", long).unwrap());
        let rx = s.db.begin_read().unwrap();
        let left = rx.open_table(CLAIMS_BY_END).unwrap().len().unwrap();
        assert_eq!(left, 4, "a, b, short0 and c; the expired ones pruned");
        assert_eq!(rx.open_table(CLAIMS).unwrap().len().unwrap(), 4);
        // The records are untouched by claims.
        assert_eq!(s.load().unwrap().revision, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
