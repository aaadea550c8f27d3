//! The etcd store's claims ([`Store::claim`]): each signature of a signed write, once.
//! See the parent module's doc for the keys; here, the lease they live under and the
//! transactions that create them, many claims to one.

use std::time::{Duration, Instant};

use etcd_client::{
    Compare as EtcdCompare, CompareOp, GetOptions, PutOptions, Txn as EtcdTxn, TxnOp, TxnOpResponse,
};

use super::EtcdStore;
#[cfg(doc)]
use crate::store::Store;
use crate::store::StoreError;

/// How long one lease serves new claims; a claim's key lives its `ttl` plus at most this.
pub(super) const CLAIM_LEASE_SHARE: Duration = Duration::from_secs(10);

/// Most claims in one transaction: etcd refuses a transaction of more than 128 operations
/// (`--max-txn-ops`), and a claim is one compare and one put.
pub(super) const MAX_CLAIMS_PER_TXN: usize = 100;

/// The lease claims are put under now: its id, when it was granted, and for how long.
#[derive(Clone, Copy, Debug)]
pub(super) struct ClaimLease {
    id: i64,
    granted: Instant,
    lasts: Duration,
}

impl EtcdStore {
    /// The lease for a claim of `ttl`: the current one if it outlives `ttl` from now by at
    /// most [`CLAIM_LEASE_SHARE`] and a second, else a new one of `ttl` plus the share
    /// (whole seconds, rounded up), so every claim's key lives at least its `ttl` and at
    /// most the share and a second longer. Claims' `ttl`s differ by the milliseconds between their requests, so one
    /// lease serves every claim of a span instead of one grant (an fsynced round trip) per
    /// claim.
    fn claim_lease(&self, ttl: Duration) -> Result<i64, StoreError> {
        let mut current = self
            .claim_lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(l) = *current {
            let left = l.lasts.saturating_sub(l.granted.elapsed());
            if left >= ttl && left - ttl <= CLAIM_LEASE_SHARE + Duration::from_secs(1) {
                return Ok(l.id);
            }
        }
        let span = ttl + CLAIM_LEASE_SHARE;
        let lasts = Duration::from_secs(span.as_secs() + u64::from(span.subsec_nanos() > 0));
        // Bounded by the auth window (at most days).
        let secs = i64::try_from(lasts.as_secs()).unwrap_or(i64::MAX);
        let mut client = self.client.clone();
        let granted = Instant::now();
        let g = self.call("claim", async move { client.lease_grant(secs, None).await })?;
        *current = Some(ClaimLease {
            id: g.id(),
            granted,
            lasts,
        });
        Ok(g.id())
    }

    /// Forget the lease claims are put under (etcd no longer knows it).
    fn drop_claim_lease(&self) {
        *self
            .claim_lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Claim `tokens` (each with its `ttl`) in as few transactions as etcd allows: one
    /// whose compares say every key is absent; if one is held, the transaction reads which,
    /// and the others go again without it. A token twice is claimed once (the second is
    /// refused).
    pub(super) fn claim_batch(
        &self,
        tokens: Vec<(String, Duration)>,
    ) -> Vec<Result<bool, StoreError>> {
        let mut out: Vec<Option<Result<bool, StoreError>>> = Vec::with_capacity(tokens.len());
        let mut left: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, (t, _)) in tokens.iter().enumerate() {
            if seen.insert(t.as_str()) {
                out.push(None);
                left.push(i);
            } else {
                out.push(Some(Ok(false)));
            }
        }
        let ttl = tokens.iter().map(|(_, t)| *t).max().unwrap_or_default();
        let mut lease_renewed = false;
        // Each round settles at least one claim, but for a key that expired between the
        // compare and the read, or a lost lease: a few rounds at most.
        for _ in 0..8 {
            if left.is_empty() {
                break;
            }
            match self
                .claim_lease(ttl)
                .and_then(|lease| self.claim_once(&tokens, &left, lease))
            {
                Ok(None) => {
                    for i in left.drain(..) {
                        out[i] = Some(Ok(true));
                    }
                }
                Ok(Some(held)) => {
                    for i in &held {
                        out[*i] = Some(Ok(false));
                    }
                    left.retain(|i| !held.contains(i));
                }
                // etcd lost the lease (expired early, or etcd restored from a backup): once
                // more under a new one.
                Err(StoreError::Etcd { .. }) if !lease_renewed => {
                    lease_renewed = true;
                    self.drop_claim_lease();
                }
                Err(e) => {
                    for i in left.drain(..) {
                        out[i] = Some(Err(copy_error(&e)));
                    }
                }
            }
        }
        for i in left {
            out[i] = Some(Err(StoreError::Timeout {
                op: "claim",
                after: self.timeout,
            }));
        }
        out.into_iter().map(|r| r.unwrap_or(Ok(false))).collect()
    }

    /// One transaction claiming `tokens[i]` for each `i` of `which` under `lease`: `None`
    /// if it did, else the `i`s whose key is held (it claimed none).
    fn claim_once(
        &self,
        tokens: &[(String, Duration)],
        which: &[usize],
        lease: i64,
    ) -> Result<Option<Vec<usize>>, StoreError> {
        let keys: Vec<String> = which
            .iter()
            .map(|i| format!("{}{}", self.keys.replay, tokens[*i].0))
            .collect();
        let txn = EtcdTxn::new()
            .when(
                keys.iter()
                    .map(|k| EtcdCompare::create_revision(k.clone(), CompareOp::Equal, 0))
                    .collect::<Vec<_>>(),
            )
            .and_then(
                keys.iter()
                    .map(|k| {
                        TxnOp::put(
                            k.clone(),
                            Vec::new(),
                            Some(PutOptions::new().with_lease(lease)),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
            .or_else(
                keys.iter()
                    .map(|k| TxnOp::get(k.clone(), Some(GetOptions::new().with_count_only())))
                    .collect::<Vec<_>>(),
            );
        let client = self.client.clone();
        let resp = self.call("claim", async move { client.kv_client().txn(txn).await })?;
        if resp.succeeded() {
            return Ok(None);
        }
        let held = resp
            .op_responses()
            .into_iter()
            .zip(which)
            .filter_map(|(r, i)| match r {
                TxnOpResponse::Get(g) if g.count() > 0 => Some(*i),
                _ => None,
            })
            .collect();
        Ok(Some(held))
    }
}

/// The same error again, for each claim of a batch that failed as one (etcd's errors are
/// not `Clone`): the kind, and so whether it counts as unavailable, and the text.
fn copy_error(e: &StoreError) -> StoreError {
    let again = |source: &etcd_client::Error| {
        Box::new(match source {
            etcd_client::Error::GRpcStatus(s) => etcd_client::Error::GRpcStatus(s.clone()),
            other => etcd_client::Error::EndpointError(other.to_string()),
        })
    };
    match e {
        StoreError::Timeout { op, after } => StoreError::Timeout { op, after: *after },
        StoreError::Unavailable { op, source } => StoreError::Unavailable {
            op,
            source: again(source),
        },
        StoreError::Etcd { op, source } => StoreError::Etcd {
            op,
            source: again(source),
        },
        other => StoreError::Etcd {
            op: "claim",
            source: Box::new(etcd_client::Error::EndpointError(other.to_string())),
        },
    }
}
