//! Calls that arrive together, made as one: the etcd store's claims (every signed write
//! claims its signature, an fsynced transaction of its own) go to etcd in one transaction
//! per batch.
//!
//! Leader and followers, as the registry's group commit: a caller queues its item; if no
//! batch is in flight it takes every queued item, runs them as one batch and hands out the
//! results; else it waits, and the first waiter to find the batch over leads the next one
//! with everything queued meanwhile. A lone caller runs at once, alone: batching costs no
//! wait, it only gathers the callers that would have queued on etcd anyway.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// The combiner of items `T` with results `R`.
#[derive(Debug)]
pub(super) struct Combiner<T, R> {
    state: Mutex<State<T, R>>,
    done: Condvar,
}

#[derive(Debug)]
struct State<T, R> {
    queued: Vec<(u64, T)>,
    results: HashMap<u64, R>,
    running: bool,
    next: u64,
}

impl<T, R> Default for Combiner<T, R> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                queued: Vec::new(),
                results: HashMap::new(),
                running: false,
                next: 0,
            }),
            done: Condvar::new(),
        }
    }
}

impl<T, R> Combiner<T, R> {
    fn lock(&self) -> MutexGuard<'_, State<T, R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `item`'s result, from a batch of at most `max` items run by `run`, which returns one
    /// result per item, in order (a result missing at the end is `missing()`).
    pub(super) fn call(
        &self,
        item: T,
        max: usize,
        run: impl Fn(Vec<T>) -> Vec<R>,
        missing: impl Fn() -> R,
    ) -> R {
        let mut st = self.lock();
        let id = st.next;
        st.next += 1;
        st.queued.push((id, item));
        loop {
            if let Some(r) = st.results.remove(&id) {
                return r;
            }
            if st.running {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.running = true;
            let take = st.queued.len().min(max.max(1));
            let batch: Vec<(u64, T)> = st.queued.drain(..take).collect();
            drop(st);
            let (ids, items): (Vec<u64>, Vec<T>) = batch.into_iter().unzip();
            // A panic in `run` must not leave the batch's other callers waiting forever:
            // they get `missing()`, and the panic goes on in this caller.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(items)));
            let (mut out, panicked) = match ran {
                Ok(v) => (v.into_iter(), None),
                Err(p) => (Vec::new().into_iter(), Some(p)),
            };
            st = self.lock();
            for id in ids {
                let r = out.next().unwrap_or_else(&missing);
                st.results.insert(id, r);
            }
            st.running = false;
            self.done.notify_all();
            if let Some(p) = panicked {
                st.results.remove(&id);
                drop(st);
                std::panic::resume_unwind(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use super::*;

    #[test]
    fn callers_together_share_batches_and_each_gets_its_own_result() {
        let c = Arc::new(Combiner::<u32, u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let go = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16u32)
            .map(|i| {
                let (c, runs, go) = (Arc::clone(&c), Arc::clone(&runs), Arc::clone(&go));
                std::thread::spawn(move || {
                    go.wait();
                    c.call(
                        i,
                        4,
                        |items| {
                            assert!(items.len() <= 4, "at most max a batch");
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(5));
                            items.into_iter().map(|x| x * 10).collect()
                        },
                        || u32::MAX,
                    )
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            assert_eq!(t.join().unwrap(), u32::try_from(i).unwrap() * 10);
        }
        let runs = runs.load(Ordering::SeqCst);
        assert!((4..16).contains(&runs), "{runs} runs for 16 callers");
    }

    #[test]
    fn a_panicking_batch_leaves_no_caller_waiting() {
        let c = Arc::new(Combiner::<u32, u32>::default());
        let go = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4u32)
            .map(|i| {
                let (c, go) = (Arc::clone(&c), Arc::clone(&go));
                std::thread::spawn(move || {
                    go.wait();
                    c.call(
                        i,
                        8,
                        |items| {
                            std::thread::sleep(Duration::from_millis(5));
                            assert!(!items.contains(&0), "the batch with 0 fails");
                            items
                        },
                        || u32::MAX,
                    )
                })
            })
            .collect();
        let mut panicked = 0;
        for (i, t) in threads.into_iter().enumerate() {
            match t.join() {
                Ok(r) => assert!(r == u32::MAX || r == u32::try_from(i).unwrap()),
                Err(_) => panicked += 1,
            }
        }
        assert_eq!(panicked, 1, "only the leader of the failed batch panics");
        // And the combiner still works.
        assert_eq!(c.call(9, 8, |v| v, || 0), 9);
    }

    #[test]
    fn a_short_answer_gives_the_rest_the_missing_result() {
        let c = Combiner::<u32, u32>::default();
        assert_eq!(c.call(1, 8, |_| Vec::new(), || 7), 7);
    }
}
