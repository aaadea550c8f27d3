//! [`EtcdStore`]: the shared engine, an etcd cluster (v3 API) that every node of a vpcep
//! cluster reads and writes.
//!
//! Layout under the configured prefix `P`:
//! - `P data/<key>`: the records (the [`Store`]'s keys);
//! - `P revision`: the revision key, rewritten by every commit. Its `mod_revision` is the
//!   store's revision: the etcd revision of the last vpcep commit;
//! - `P replay/<token>`: claims ([`Store::claim`]: the signatures of signed writes), each
//!   created only if absent (`create_revision == 0`), so of several nodes that claim one
//!   token exactly one succeeds. Each is put under a lease that outlives the claim's `ttl`
//!   by at most [`claims::CLAIM_LEASE_SHARE`] and a second: one lease serves every claim of that
//!   span, so a busy node grants a lease every few seconds, not one per write, and etcd
//!   deletes the keys. Claims that arrive together go in one transaction
//!   ([`claims`]).
//!
//! A commit is one etcd transaction: `if mod_revision(P revision) == expected then (the
//! writes, and a put of P revision) else (read P revision)`. Every commit rewrites the same
//! key, so two nodes that read the same revision can never both commit: the rules (an
//! endpoint IP in use, a quota) see the whole model, and the compare makes the model they
//! saw the one they change. A per-key compare would not do: two endpoints with the same IP
//! are two different keys.
//!
//! A load is a range over `P data/` at one etcd revision (paged, every page at the revision
//! of the first). A watch follows `P data/` from a revision; the events of one etcd
//! revision come in one response (etcd never splits a revision), and become one [`Event`].
//!
//! The trait is synchronous (the registry writes from the blocking pool and the pusher's
//! thread); etcd's client is async. The store owns a small runtime of its own (one thread)
//! and every call is a task on it that a synchronous caller waits for with a deadline, so a
//! call works from any thread, inside tokio or not, and never blocks the daemon's runtime
//! on a second one. A call that misses its deadline is [`StoreError::Timeout`]: a commit
//! may still apply, and then the watch brings it like any other node's.

use std::future::Future;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions,
    Identity, TlsOptions, Txn as EtcdTxn, TxnOp, TxnOpResponse, WatchOptions, WatchStream,
};
use tokio::runtime::{Handle, Runtime};

mod claims;

use self::claims::{ClaimLease, MAX_CLAIMS_PER_TXN};
use super::combine::Combiner;
use super::config::EtcdConfig;
use super::{Compare, Event, Op, Snapshot, Store, StoreError, Txn};

/// One page of a load: its entries, whether more follow, the etcd revision it was read at,
/// and the store's revision (read with the first page only).
struct Page {
    entries: Vec<(String, Vec<u8>)>,
    /// Where the next page starts (the last etcd key read, then a zero byte), if there is one.
    next: Option<Vec<u8>>,
    at: i64,
    revision: u64,
}

/// Keys per page of a load. A page is one gRPC message: records are about 1 KiB, so a page
/// is a few MiB, under [`MAX_MESSAGE`] (etcd sends messages of any size).
const PAGE: i64 = 4096;
/// Largest message taken from etcd (tonic's default, 4 MiB, is too small for a page).
const MAX_MESSAGE: usize = 64 << 20;

/// The store on an etcd cluster.
pub struct EtcdStore {
    client: Client,
    keys: Keys,
    timeout: Duration,
    handle: Handle,
    runtime: Option<Runtime>,
    claim_lease: Mutex<Option<ClaimLease>>,
    /// Claims that arrive together go to etcd in one transaction.
    claims: Combiner<(String, Duration), Result<bool, StoreError>>,
}

impl core::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.keys.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The keys of one prefix.
#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
    data: String,
    revision: String,
    replay: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            data: format!("{prefix}data/"),
            revision: format!("{prefix}revision"),
            replay: format!("{prefix}replay/"),
        }
    }

    /// The store's key of an etcd key under `data`, if it is one (and UTF-8).
    fn record(&self, etcd_key: &[u8]) -> Option<String> {
        let key = std::str::from_utf8(etcd_key.strip_prefix(self.data.as_bytes())?).ok();
        if key.is_none() {
            tracing::warn!("skipped a key under the etcd prefix that is not UTF-8");
        }
        key.map(str::to_string)
    }
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix;
/// prefixes here are ASCII and end with `/`, so the last byte can be incremented).
fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Whether etcd refused a read because its revision is compacted (or, after a restore from
/// an older backup, in the future): either way the caller must resync.
fn is_compacted(e: &StoreError) -> bool {
    matches!(e, StoreError::Etcd { source, .. }
        if matches!(&**source, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange))
}

/// Sort an etcd client error: unreachable (the API's 503) or a failure of the request.
fn classify(op: &'static str, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    let unreachable = match &e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        _ => false,
    };
    if unreachable {
        StoreError::Unavailable {
            op,
            source: Box::new(e),
        }
    } else {
        StoreError::Etcd {
            op,
            source: Box::new(e),
        }
    }
}

/// Read a file the engine's settings name.
fn read_setting(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::Setting {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// The connection options of `cfg`: keep-alives so a dead server is noticed within the
/// deadline, a leader required (a member cut off from its quorum refuses instead of
/// answering stale), TLS and user if set.
fn options(cfg: &EtcdConfig) -> Result<ConnectOptions, StoreError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(cfg.timeout())
        .with_keep_alive(Duration::from_secs(1), cfg.timeout())
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if cfg.ca_file.is_some() || cfg.cert_file.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &cfg.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read_setting("etcd.ca_file", ca)?));
        }
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            tls = tls.identity(Identity::from_pem(
                read_setting("etcd.cert_file", cert)?,
                read_setting("etcd.key_file", key)?,
            ));
        }
        opts = opts.with_tls(tls);
    }
    if let (Some(user), Some(file)) = (&cfg.user, &cfg.password_file) {
        let password = String::from_utf8_lossy(&read_setting("etcd.password_file", file)?)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        opts = opts
            .with_user(user.clone(), password)
            .with_auto_token_refresh(true);
    }
    Ok(opts)
}

impl EtcdStore {
    /// Connect to the cluster `cfg` names. Without a user, nothing is sent yet (the first
    /// load finds out whether etcd is there); with one, the credentials are checked now.
    ///
    /// # Errors
    /// [`StoreError`]: an unreadable certificate or password file, a bad URL, refused
    /// credentials, or etcd unreachable while authenticating.
    pub fn connect(cfg: &EtcdConfig) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vpcep-etcd")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Setting {
                what: "etcd runtime",
                path: String::new(),
                source,
            })?;
        let handle = runtime.handle().clone();
        let opts = options(cfg)?;
        let endpoints = cfg.endpoints.clone();
        let timeout = cfg.timeout();
        let client = Self::run(&handle, timeout, "connect", async move {
            Client::connect(endpoints, Some(opts)).await
        })?;
        Ok(Self {
            client,
            keys: Keys::new(&cfg.prefix),
            timeout,
            handle,
            runtime: Some(runtime),
            claim_lease: Mutex::new(None),
            claims: Combiner::default(),
        })
    }

    /// Run `f` on the store's runtime and wait for it, at most `timeout`.
    fn run<T: Send + 'static>(
        handle: &Handle,
        timeout: Duration,
        op: &'static str,
        f: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = sync_channel(1);
        handle.spawn(async move {
            // The caller may have given up (it never does before the timeout fires).
            let _ = tx.send(tokio::time::timeout(timeout, f).await);
        });
        match rx.recv() {
            Ok(Ok(result)) => result.map_err(|e| classify(op, e)),
            // Timed out, or the runtime is shutting down and dropped the task.
            Ok(Err(_)) | Err(_) => Err(StoreError::Timeout { op, after: timeout }),
        }
    }

    /// [`EtcdStore::run`] with this store's runtime and deadline.
    pub(super) fn call<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        Self::run(&self.handle, self.timeout, op, f)
    }

    /// The etcd client (membership uses the same connection).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The configured prefix.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// A handle on the store's runtime, for tasks that live as long as the store.
    pub fn runtime(&self) -> &Handle {
        &self.handle
    }

    /// One page of the load: keys from `start` on, at etcd revision `at` (0: now, and then
    /// the revision key is read with it, in one transaction).
    fn page(&self, start: Vec<u8>, at: i64) -> Result<Page, StoreError> {
        let client = self.client.clone();
        let keys = self.keys.clone();
        let range = GetOptions::new()
            .with_range(range_end(&keys.data))
            .with_limit(PAGE);
        let (kvs, more, at, revision) = if at == 0 {
            let txn = EtcdTxn::new().and_then([
                TxnOp::get(keys.revision.clone(), None),
                TxnOp::get(start, Some(range)),
            ]);
            let resp = self.call("load", async move {
                let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
                kv.txn(txn).await
            })?;
            let at = resp.header().map_or(0, |h| h.revision());
            // The responses come in the order of the operations.
            let mut rs = resp.op_responses().into_iter();
            let revision = match rs.next() {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().map_or(0, |kv| kv.mod_revision()),
                _ => 0,
            };
            let (kvs, more) = match rs.next() {
                Some(TxnOpResponse::Get(mut g)) => (g.take_kvs(), g.more()),
                _ => (Vec::new(), false),
            };
            (kvs, more, at, revision)
        } else {
            let mut g = self.call("load", async move {
                let mut kv = client.kv_client().max_decoding_message_size(MAX_MESSAGE);
                kv.get(start, Some(range.with_revision(at))).await
            })?;
            let more = g.more();
            (g.take_kvs(), more, at, 0)
        };
        let entries = kvs
            .iter()
            .filter_map(|kv| Some((self.keys.record(kv.key())?, kv.value().to_vec())))
            .collect();
        let next = kvs.last().filter(|_| more).map(|kv| {
            let mut k = kv.key().to_vec();
            k.push(0);
            k
        });
        Ok(Page {
            entries,
            next,
            at,
            revision: u64::try_from(revision).unwrap_or(0),
        })
    }

    /// [`Store::load`], once.
    fn load_once(&self) -> Result<Snapshot, StoreError> {
        let first = self.page(self.keys.data.clone().into_bytes(), 0)?;
        let (mut entries, mut next) = (first.entries, first.next);
        while let Some(start) = next {
            let page = self.page(start, first.at)?;
            entries.extend(page.entries);
            next = page.next;
        }
        Ok(Snapshot {
            revision: first.revision,
            entries,
        })
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // A runtime must not be dropped (blocking) inside another's async context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Store for EtcdStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        // A compaction between two pages of a large load: start again (at the new revision).
        let mut tries = 0;
        loop {
            match self.load_once() {
                Err(e) if is_compacted(&e) && tries < 3 => tries += 1,
                r => return r,
            }
        }
    }

    fn commit(&self, txn: Txn) -> Result<u64, StoreError> {
        let keys = self.keys.clone();
        // etcd refuses a transaction that writes a key twice; the last write wins anyway.
        let mut seen = std::collections::HashSet::new();
        let mut ops: Vec<TxnOp> = Vec::with_capacity(txn.ops.len() + 1);
        for op in txn.ops.iter().rev() {
            let key = match op {
                Op::Put(k, _) | Op::Delete(k) => k,
            };
            if !seen.insert(key.as_str()) {
                continue;
            }
            let key = format!("{}{key}", keys.data);
            ops.push(match op {
                Op::Put(_, v) => TxnOp::put(key, v.clone(), None),
                Op::Delete(_) => TxnOp::delete(key, None),
            });
        }
        ops.reverse();
        ops.push(TxnOp::put(keys.revision.clone(), Vec::new(), None));
        let mut etxn = EtcdTxn::new();
        let expected = match txn.compare {
            Compare::Always => None,
            Compare::Revision(r) => {
                let r = i64::try_from(r).map_err(|_| StoreError::Conflict {
                    expected: r,
                    actual: 0,
                })?;
                etxn = etxn.when([EtcdCompare::mod_revision(
                    keys.revision.clone(),
                    CompareOp::Equal,
                    r,
                )]);
                Some(r)
            }
        };
        let etxn = etxn
            .and_then(ops)
            .or_else([TxnOp::get(keys.revision.clone(), None)]);
        let client = self.client.clone();
        let resp = self.call("commit", async move { client.kv_client().txn(etxn).await })?;
        if resp.succeeded() {
            let revision = resp.header().map_or(0, |h| h.revision());
            return Ok(u64::try_from(revision).unwrap_or(0));
        }
        let actual = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g.kvs().first().map_or(0, |kv| kv.mod_revision())),
                _ => None,
            })
            .unwrap_or(0);
        Err(StoreError::Conflict {
            expected: u64::try_from(expected.unwrap_or(0)).unwrap_or(0),
            actual: u64::try_from(actual).unwrap_or(0),
        })
    }

    fn claim(&self, token: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.claims.call(
            (token.to_string(), ttl),
            MAX_CLAIMS_PER_TXN,
            |batch| self.claim_batch(batch),
            || Ok(false),
        )
    }

    fn held(&self, token: &str) -> Result<bool, StoreError> {
        // The key lives as long as its lease: a little past the claim's `ttl` at most
        // (CLAIM_LEASE_SHARE); sessions carry their own end and check it too.
        let key = format!("{}{token}", self.keys.replay);
        let client = self.client.clone();
        let resp = self.call("claim", async move {
            client
                .kv_client()
                .get(key, Some(GetOptions::new().with_count_only()))
                .await
        })?;
        Ok(resp.count() > 0)
    }

    fn unclaim(&self, token: &str) -> Result<(), StoreError> {
        let key = format!("{}{token}", self.keys.replay);
        let client = self.client.clone();
        self.call("unclaim", async move {
            client.kv_client().delete(key, None).await
        })?;
        Ok(())
    }

    fn watch(&self, from: u64) -> Result<Receiver<Event>, StoreError> {
        // etcd reports a compacted start revision only later, on the stream; a read at
        // `from` fails the same way now (etcd's first revision is 1, the floor of a read).
        let at = i64::try_from(from.max(1)).unwrap_or(i64::MAX);
        let client = self.client.clone();
        let key = self.keys.revision.clone();
        self.call("watch", async move {
            let opts = GetOptions::new().with_revision(at).with_count_only();
            client.kv_client().get(key, Some(opts)).await
        })
        .map_err(|e| {
            if is_compacted(&e) {
                StoreError::Compacted { from, oldest: 0 }
            } else {
                e
            }
        })?;
        let client = self.client.clone();
        let data = self.keys.data.clone();
        let start = i64::try_from(from).unwrap_or(i64::MAX).saturating_add(1);
        let stream = self.call("watch", async move {
            let opts = WatchOptions::new().with_prefix().with_start_revision(start);
            let mut w = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
            w.watch(data, Some(opts)).await
        })?;
        let (tx, rx) = channel();
        self.handle.spawn(forward(stream, self.keys.clone(), tx));
        Ok(rx)
    }
}

/// Turn a watch stream into [`Event`]s, one per etcd revision, until the stream ends, fails,
/// is cancelled (compacted), or nobody listens. The receiver then sees the channel close,
/// and watches again (which reports a compaction, or etcd still away).
async fn forward(mut stream: WatchStream, keys: Keys, tx: Sender<Event>) {
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                tracing::warn!("etcd closed the watch");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "the etcd watch failed");
                return;
            }
        };
        if resp.canceled() || resp.compact_revision() != 0 {
            tracing::warn!(
                compacted = resp.compact_revision(),
                reason = resp.cancel_reason(),
                "etcd cancelled the watch"
            );
            return;
        }
        let mut pending: Option<(i64, Vec<Op>)> = None;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some(key) = keys.record(kv.key()) else {
                continue;
            };
            let op = match ev.event_type() {
                EventType::Put => Op::Put(key, kv.value().to_vec()),
                EventType::Delete => Op::Delete(key),
            };
            let rev = kv.mod_revision();
            match &mut pending {
                Some((r, ops)) if *r == rev => ops.push(op),
                _ => {
                    if let Some(done) = pending.replace((rev, vec![op]))
                        && send(&tx, done).is_err()
                    {
                        return;
                    }
                }
            }
        }
        if let Some(done) = pending
            && send(&tx, done).is_err()
        {
            return;
        }
    }
}

fn send(tx: &Sender<Event>, (revision, ops): (i64, Vec<Op>)) -> Result<(), ()> {
    tx.send(Event {
        revision: u64::try_from(revision).unwrap_or(0),
        ops: ops.into(),
    })
    .map_err(|_| ())
}
