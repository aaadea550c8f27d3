//! The durable store: a transactional key-value space with a revision and a watch.
//!
//! [`Store`] is the interface a distributed engine (etcd) can implement later; [`RedbStore`]
//! is the embedded one: a single redb file under the data directory. A commit is one redb
//! write transaction with immediate durability (fsync) that writes every operation and the
//! new revision together, so a crash at any point leaves either all of a change or none
//! of it, and `commit` returns only once the change is on disk.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::watch;

const RESOURCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("resources");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// One write of a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Store `value` under `key`.
    Put(String, Vec<u8>),
    /// Remove `key`.
    Delete(String),
}

/// Why the store failed. A failed commit changed nothing.
#[derive(Debug, thiserror::Error)]
#[error("store {op} failed: {source}")]
pub struct StoreError {
    /// What was being done: open, read, commit.
    pub op: &'static str,
    /// redb's error.
    #[source]
    pub source: Box<redb::Error>,
}

/// A mapper from any redb error to a [`StoreError`] for `op`.
fn fail<E: Into<redb::Error>>(op: &'static str) -> impl Fn(E) -> StoreError {
    move |e| StoreError {
        op,
        source: Box::new(e.into()),
    }
}

/// Everything in the store at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The revision of the last commit (0 for an empty store).
    pub revision: u64,
    /// Every key and value.
    pub entries: Vec<(String, Vec<u8>)>,
}

/// A transactional key-value space with revisions and a watch.
pub trait Store: Send + Sync + 'static {
    /// Read everything.
    ///
    /// # Errors
    /// [`StoreError`].
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Apply `ops` atomically and durably; returns the new revision.
    ///
    /// # Errors
    /// [`StoreError`]; then nothing was applied.
    fn commit(&self, ops: &[Op]) -> Result<u64, StoreError>;

    /// A receiver that sees every new revision.
    fn watch(&self) -> watch::Receiver<u64>;
}

/// The embedded store: one redb file.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    revision: watch::Sender<u64>,
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
            revision: watch::Sender::new(revision),
        })
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

    fn commit(&self, ops: &[Op]) -> Result<u64, StoreError> {
        let e = fail("commit");
        let tx = self.db.begin_write().map_err(&e)?;
        let revision;
        {
            let mut table = tx.open_table(RESOURCES).map_err(fail("commit"))?;
            for op in ops {
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
        self.revision.send_replace(revision);
        Ok(revision)
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_load_reopen_and_watch() {
        let dir = std::env::temp_dir().join(format!("vpcep-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let mut w = s.watch();
            assert_eq!(s.load().unwrap().revision, 0);
            let r = s
                .commit(&[
                    Op::Put("a".into(), b"1".to_vec()),
                    Op::Put("b".into(), b"2".to_vec()),
                ])
                .unwrap();
            assert_eq!(r, 1);
            assert!(w.has_changed().unwrap());
            assert_eq!(*w.borrow_and_update(), 1);
            assert_eq!(s.commit(&[Op::Delete("a".into())]).unwrap(), 2);
        }
        let s = RedbStore::open(&path).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.revision, 2);
        assert_eq!(snap.entries, vec![("b".to_string(), b"2".to_vec())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
