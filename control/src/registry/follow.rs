//! The follower: keeps a registry on a shared store (etcd) in step with the other nodes'
//! commits, so every node's API reads the same model and every node's pusher compiles the
//! changes its own attachments need.
//!
//! It watches the store from the registry's revision and applies each commit under the
//! writer lock, skipping those the registry already applied (its own). If the watch can no
//! longer start where the registry is (compacted), it loads the whole store and replaces
//! the model (the pusher then recompiles everything). If the store is unreachable, nothing
//! changes here: the API answers writes with 503, reads come from the last applied
//! revision, and the dataplane keeps the tables it has (fail static); the follower tries
//! again with a growing pause (at most [`MAX_BACKOFF`]) and catches up from where it was.
//!
//! It never writes: a record that does not decode is dropped from the model (as a reload
//! would) and counted; quarantining it is the writing node's, or the next start's, work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{QUARANTINE, Registry};
use crate::model::index::Key;
use crate::model::{Mutation, Record};
use crate::store::{Event, Op, StoreError};

/// First pause after the store could not be watched.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a waiting follower looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

impl Registry {
    /// Apply one commit from the store's watch; returns whether it moved the model (a
    /// commit the registry already applied, its own, is skipped).
    pub fn apply_event(&self, event: &Event) -> bool {
        let _writer = self.lock_writer_between_batches();
        if event.revision <= self.revision() {
            return false;
        }
        let muts = event.ops.iter().filter_map(mutation_of).collect();
        self.apply_committed(muts, event.revision);
        true
    }

    /// Replace the model with a fresh load of the whole store (after a compacted watch);
    /// returns the revision loaded.
    ///
    /// # Errors
    /// The store's, if it cannot be read; then nothing changed.
    pub fn resync(&self) -> Result<u64, StoreError> {
        let _writer = self.lock_writer_between_batches();
        let snap = self.store.load()?;
        let revision = snap.revision;
        self.replace(snap);
        Ok(revision)
    }
}

/// The model's change for one store operation, if the key is a record's.
fn mutation_of(op: &Op) -> Option<Mutation> {
    match op {
        Op::Put(key, _) | Op::Delete(key) if key.starts_with(QUARANTINE) => None,
        Op::Put(key, value) => match serde_json::from_slice::<Record>(value) {
            Ok(record) => Some(Mutation::Put(record)),
            Err(error) => {
                // What a reload would do: the record is not in the model.
                tracing::error!(%key, %error, "a record from the store does not load");
                metrics::counter!("vpcep_store_undecodable_total").increment(1);
                Key::decode(key).map(Mutation::Delete)
            }
        },
        Op::Delete(key) => Key::decode(key).map(Mutation::Delete),
    }
}

/// Follow `registry`'s store on a thread (`vpcep-follower`) until `stop` is set. From now
/// on a write that loses a race to another node waits for the winner's commit and runs its
/// rule again.
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn(registry: Arc<Registry>, stop: Arc<AtomicBool>) -> std::io::Result<JoinHandle<()>> {
    registry.followed.store(true, Ordering::Release);
    metrics::gauge!("vpcep_store_up").set(if registry.store_up() { 1.0 } else { 0.0 });
    std::thread::Builder::new()
        .name("vpcep-follower".into())
        .spawn(move || follow(&registry, &stop))
}

fn follow(r: &Registry, stop: &AtomicBool) {
    let mut backoff = MIN_BACKOFF;
    while !stop.load(Ordering::Relaxed) {
        let from = r.revision();
        let failed = match r.store.watch(from) {
            Ok(events) => {
                r.set_store_up(true);
                backoff = MIN_BACKOFF;
                loop {
                    match events.recv_timeout(POLL) {
                        Ok(event) => {
                            r.apply_event(&event);
                        }
                        Err(RecvTimeoutError::Timeout) if stop.load(Ordering::Relaxed) => return,
                        Err(RecvTimeoutError::Timeout) => {}
                        // The watch ended (etcd away, or compacted): watch again from here.
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None
            }
            Err(StoreError::Compacted { .. }) => {
                metrics::counter!("vpcep_store_resyncs_total").increment(1);
                match r.resync() {
                    Ok(revision) => {
                        tracing::info!(from, revision, "the watch was compacted: resynced");
                        r.set_store_up(true);
                        None
                    }
                    Err(e) => Some(e),
                }
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            if e.is_unavailable() {
                r.set_store_up(false);
            }
            tracing::debug!(error = %e, ?backoff, "cannot follow the store; trying again");
            pause(backoff, stop);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Sleep `d`, or less if `stop` is set meanwhile.
fn pause(d: Duration, stop: &AtomicBool) {
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let step = left.min(POLL);
        std::thread::sleep(step);
        left -= step;
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::store::{MemStore, Store};

    #[test]
    fn keys_read_back_as_they_are_written() {
        for k in [
            Key::Vpc("a".into()),
            Key::Subnet("b".into()),
            Key::Port("c".into()),
            Key::Service("d".into()),
            Key::Permission("e".into()),
            Key::Endpoint("f/g".into()),
        ] {
            assert_eq!(Key::decode(&k.encode()), Some(k));
        }
        for bad in ["", "vpc", "vpc/", "nothing/x", "quarantine/vpc/x"] {
            assert_eq!(Key::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn another_writers_commits_reach_the_model_and_the_pusher() {
        // Two registries on one store: the second follows the first's commits.
        let store = Arc::new(MemStore::default());
        let one = Registry::open(store.clone(), "r", Default::default()).unwrap();
        let two = Registry::open(store.clone(), "r", Default::default()).unwrap();
        let notes = two.subscribe();
        let _ = notes.try_recv();
        let events = store.watch(two.revision()).unwrap();
        let p = tenant("p");
        let u = tenant("u");
        let svc = service(&one, &p, true, &[&u]);
        let (uvpc, usub) = network(&one, &u, "10.1.0.0/16");
        let ep = endpoint(&one, &u, endpoint_body(&svc.id, &uvpc, &usub)).unwrap();
        let mut applied = 0;
        while let Ok(e) = events.try_recv() {
            assert!(two.apply_event(&e));
            assert!(!two.apply_event(&e), "a commit is applied once");
            applied += 1;
        }
        assert!(applied >= 3);
        assert_eq!(two.revision(), one.revision());
        assert_eq!(
            two.read().endpoints.get(&ep.id),
            one.read().endpoints.get(&ep.id)
        );
        let last = std::iter::from_fn(|| notes.try_recv().ok()).last().unwrap();
        assert_eq!(
            last.touched,
            super::super::Touched::Endpoints(vec![ep.id.clone()])
        );
        // A record that does not load is dropped from the model, as a reload would.
        let key = Key::Endpoint(ep.id.clone()).encode();
        two.apply_event(&Event {
            revision: two.revision() + 1,
            ops: vec![Op::Put(key, b"{".to_vec())].into(),
        });
        assert!(!two.read().endpoints.contains_key(&ep.id));
        // A resync brings the store's whole truth back.
        assert_eq!(two.resync().unwrap(), one.revision());
        assert_eq!(
            two.read().endpoints.get(&ep.id),
            one.read().endpoints.get(&ep.id)
        );
    }
}
