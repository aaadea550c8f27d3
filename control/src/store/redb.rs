//! [`RedbStore`]: the embedded engine, a single redb file under the data directory.
//!
//! A commit is one redb write transaction with immediate durability (fsync) that writes
//! every operation and the new revision together, so a crash at any point leaves either all
//! of a change or none of it, and `commit` returns only once the change is on disk. The
//! compare is checked and the watchers are told under one lock, so revisions reach them in
//! order. The watch history starts at open: older revisions are compacted.
//!
//! Claims ([`Store::claim`], the replay cache's signatures) live in two tables of their own,
//! by token and by expiry. A claim is checked against those tables and held in memory
//! (`pending`) until the next commit, which writes it in its own transaction: the signed
//! write a claim guards commits right after it, so an acknowledged write's claim reaches
//! the disk in the same fsync, with no write transaction of its own (a separate claim
//! transaction cost 31 % of durable writes in apibench with an fsync, 24 % without). A
//! claim whose write was refused may be lost to a crash (not to a planned stop: dropping
//! the store writes the pending ones with immediate durability); its write can then be
//! sent again within the window, and meets the rules again. Each commit that carries claims
//! removes at most [`PRUNE`] expired ones (oldest first): the tables hold the live claims
//! and a bounded remainder, with no sweeper.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::{Event, Feed, Op, Snapshot, Store, StoreError, Txn};

const RESOURCES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("resources");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
/// Claimed token -> end of the claim (Unix milliseconds).
const CLAIMS: TableDefinition<'_, &str, u64> = TableDefinition::new("claims");
/// (end of the claim, token): the claims in order of expiry, for pruning.
const CLAIMS_BY_END: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("claims_by_end");
/// Expired claims one commit removes at most.
const PRUNE: usize = 64;
/// Claims held in memory at most: past it, a claim writes them out in a transaction of
/// their own (only refused writes that were never released can leave claims there for
/// long; every write's commit takes them along).
const PENDING_MAX: usize = 4096;

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
    /// Claims taken since the last commit, token -> end (Unix milliseconds). An entry
    /// leaves only once a committed transaction holds it, so a claim is always seen here
    /// or in the tables.
    pending: Mutex<HashMap<String, u64>>,
}

impl Drop for RedbStore {
    /// Claims made since the last write reach the disk at a planned stop.
    fn drop(&mut self) {
        if let Err(e) = self.write_pending(redb::Durability::Immediate) {
            tracing::warn!(error = %e, "could not write the store's last claims");
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
            pending: Mutex::new(HashMap::new()),
        })
    }

    fn feed(&self) -> MutexGuard<'_, Feed> {
        self.feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The pending claims, to write in a transaction; [`RedbStore::written`] once it
    /// has committed.
    fn take_pending(&self) -> Vec<(String, u64)> {
        self.pending()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Drop from `pending` the claims a committed transaction wrote (unless taken again
    /// since, with another end).
    fn written(&self, claims: &[(String, u64)]) {
        let mut pending = self.pending();
        for (token, end) in claims {
            if pending.get(token) == Some(end) {
                pending.remove(token);
            }
        }
    }

    /// Write the pending claims in a transaction of their own.
    fn write_pending(&self, durability: redb::Durability) -> Result<(), StoreError> {
        let claims = self.take_pending();
        if claims.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().map_err(fail("claim"))?;
        tx.set_durability(durability);
        put_claims(&tx, &claims, unix_ms())?;
        tx.commit().map_err(fail("claim"))?;
        self.written(&claims);
        Ok(())
    }
}

/// Write `claims` into the claim tables of `tx`, and prune up to [`PRUNE`] expired ones.
fn put_claims(tx: &WriteTransaction, claims: &[(String, u64)], now: u64) -> Result<(), StoreError> {
    let mut by_token = tx.open_table(CLAIMS).map_err(fail("claim"))?;
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
        let same = by_token
            .get(old.as_str())
            .map_err(fail("claim"))?
            .is_some_and(|v| v.value() == *until);
        if same {
            by_token.remove(old.as_str()).map_err(fail("claim"))?;
        }
    }
    for (token, end) in claims {
        let held = by_token
            .insert(token.as_str(), *end)
            .map_err(fail("claim"))?
            .map(|v| v.value());
        if let Some(until) = held {
            by_end
                .remove((until, token.as_str()))
                .map_err(fail("claim"))?;
        }
        by_end
            .insert((*end, token.as_str()), ())
            .map_err(fail("claim"))?;
    }
    Ok(())
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
        let claims = self.take_pending();
        let tx = self.db.begin_write().map_err(fail("commit"))?;
        let revision;
        {
            if !claims.is_empty() {
                put_claims(&tx, &claims, unix_ms())?;
            }
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
        self.written(&claims);
        feed.publish(revision, txn.ops);
        Ok(revision)
    }

    fn watch(&self, from: u64) -> Result<Receiver<Event>, StoreError> {
        self.feed().watch(from)
    }

    fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = unix_ms();
        let end = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut pending = self.pending();
        if pending.get(token).is_some_and(|until| *until >= now) {
            return Ok(false);
        }
        // A claim leaves `pending` only after its transaction committed: a reader sees it.
        let held = {
            let rx = self.db.begin_read().map_err(fail("claim"))?;
            let claims = rx.open_table(CLAIMS).map_err(fail("claim"))?;
            claims.get(token).map_err(fail("claim"))?.map(|v| v.value())
        };
        if held.is_some_and(|until| until >= now) {
            return Ok(false);
        }
        pending.insert(token.to_string(), end);
        let full = pending.len() > PENDING_MAX;
        drop(pending);
        if full {
            // Made durable by the next write, like the others.
            self.write_pending(redb::Durability::None)?;
        }
        Ok(true)
    }

    fn held(&self, token: &str) -> Result<bool, StoreError> {
        let now = unix_ms();
        if self.pending().get(token).is_some_and(|until| *until >= now) {
            return Ok(true);
        }
        let rx = self.db.begin_read().map_err(fail("claim"))?;
        let claims = rx.open_table(CLAIMS).map_err(fail("claim"))?;
        Ok(claims
            .get(token)
            .map_err(fail("claim"))?
            .is_some_and(|v| v.value() >= now))
    }

    fn unclaim(&self, token: &str) -> Result<(), StoreError> {
        self.pending().remove(token);
        let written = {
            let rx = self.db.begin_read().map_err(fail("claim"))?;
            let claims = rx.open_table(CLAIMS).map_err(fail("claim"))?;
            claims.get(token).map_err(fail("claim"))?.is_some()
        };
        if !written {
            // (A commit in flight that carries it still writes it; it is then held until
            // its end, and the retry is refused, as when the store fails here.)
            return Ok(());
        }
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
        let written = |s: &RedbStore| {
            let rx = s.db.begin_read().unwrap();
            let by_end = rx.open_table(CLAIMS_BY_END).unwrap().len().unwrap();
            let by_token = rx.open_table(CLAIMS).unwrap().len().unwrap();
            assert_eq!(by_end, by_token, "the two tables agree");
            usize::try_from(by_token).unwrap()
        };
        let write = |s: &RedbStore, key: &str| {
            s.commit(Txn {
                compare: Compare::Always,
                ops: vec![Op::Put(key.into(), b"v".to_vec())],
            })
            .unwrap()
        };
        {
            let s = RedbStore::open(&path).unwrap();
            assert!(s.claim("a", long).unwrap());
            assert!(!s.claim("a", long).unwrap(), "held while pending");
            assert_eq!(written(&s), 0, "a claim alone writes nothing");
            write(&s, "k1");
            assert_eq!(written(&s), 1, "the write took the claim along");
            assert!(!s.claim("a", long).unwrap(), "held once written");
            assert!(s.claim("b", long).unwrap());
            s.unclaim("b").unwrap();
            assert!(s.claim("b", long).unwrap(), "given back while pending");
            write(&s, "k2");
            s.unclaim("b").unwrap();
            assert_eq!(written(&s), 1, "given back once written");
            for i in 0..(PRUNE * 2) {
                assert!(s.claim(&format!("short{i}"), Duration::ZERO).unwrap());
            }
            // Dropped: the pending claims are written.
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(
            written(&s),
            1 + PRUNE * 2,
            "a planned stop wrote the pending claims"
        );
        assert!(!s.claim("a", long).unwrap(), "still held after a reopen");
        assert!(s.claim("b", long).unwrap(), "given back");
        // Expired claims can be taken again, and each commit prunes up to PRUNE of them.
        std::thread::sleep(Duration::from_millis(5)); // past the zero-length claims' end
        assert!(s.claim("short0", long).unwrap());
        assert!(s.claim("c", long).unwrap());
        write(&s, "k3");
        let left = written(&s);
        // short0's old claim is pruned or replaced: one of the 2 * PRUNE either way.
        assert!(
            (4 + PRUNE - 1..=4 + PRUNE).contains(&left),
            "a, b, short0, c and the expired ones not yet pruned: {left}"
        );
        assert!(s.claim("d", long).unwrap());
        write(&s, "k4");
        assert_eq!(
            written(&s),
            5,
            "a, b, short0, c, d; the expired ones pruned"
        );
        assert_eq!(s.load().unwrap().revision, 4, "claims make no revision");
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn claims_past_the_pending_bound_are_written_on_their_own() {
        let dir = std::env::temp_dir().join(format!("vpcep-claims-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = RedbStore::open(&dir.join("state.redb")).unwrap();
        for i in 0..=PENDING_MAX {
            assert!(s.claim(&format!("t{i}"), Duration::from_secs(60)).unwrap());
        }
        assert!(s.pending().is_empty(), "written out at the bound");
        assert!(!s.claim("t0", Duration::from_secs(60)).unwrap());
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
