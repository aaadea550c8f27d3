//! [`RedbStore`]: the embedded engine, a single redb file under the data directory.
//!
//! A commit is one redb write transaction with immediate durability (fsync) that writes
//! every operation and the new revision together, so a crash at any point leaves either all
//! of a change or none of it, and `commit` returns only once the change is on disk. The
//! compare is checked and the watchers are told under one lock, so revisions reach them in
//! order. The watch history starts at open: older revisions are compacted.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::Receiver;

use redb::{Database, ReadableTable, TableDefinition};

use super::{Event, Feed, Op, Snapshot, Store, StoreError, Txn};

const RESOURCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("resources");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

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
}
