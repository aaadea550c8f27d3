//! The pipeline's expiry sweep: each pipeline ages the flows it opened (and those it
//! adopted from a hand-over), oldest first, a bounded number per call.

use std::collections::VecDeque;
use std::time::Instant;

use super::Pipeline;
use crate::conntrack::{Aging, ConnTrack};
use crate::flow::FlowKey;
use crate::stats::WorkerStats;

impl Pipeline {
    /// Keep the expiry queue within the conntrack capacity. Live flows never exceed the
    /// capacity, so a full queue holds keys of flows removed otherwise (evicted, revoked);
    /// up to `expire_budget` keys from its front are examined to drop one. False if none
    /// was found: the new flow is refused rather than the queue grown.
    pub(super) fn make_expiry_room(&mut self, ct: &ConnTrack, now_secs: u32) -> bool {
        if self.expiry.len() < ct.capacity() {
            return true;
        }
        for _ in 0..self.config.expire_budget.min(self.expiry.len()) {
            if sweep_one(&mut self.expiry, &mut self.stats, ct, now_secs) != Some(Aging::Alive) {
                return true;
            }
        }
        false
    }

    /// Examine at most `budget` of this pipeline's flows for idleness, oldest first;
    /// returns how many were removed.
    pub fn expire(&mut self, now: Instant, budget: usize) -> usize {
        let now_secs = self.secs(now);
        let ct = &*self.shared.conntrack;
        if let (Some(sums), Some(log)) = (&mut self.refusals, ct.flow_log()) {
            sums.flush_if_due(now_secs, log.interval(), |r| {
                log.send(crate::conntrack::flowlog::FlowEvent::Refused(r));
            });
        }
        // Flows a standby took from its owner's replication age here like the rest.
        self.expiry.extend(ct.take_adopted());
        let mut removed = 0;
        for _ in 0..budget.min(self.expiry.len()) {
            if sweep_one(&mut self.expiry, &mut self.stats, ct, now_secs) == Some(Aging::Expired) {
                removed += 1;
            }
        }
        removed
    }

    /// Take flows this pipeline did not create (those of the previous process, loaded from
    /// a hand-over) into its expiry sweep, so they age out like its own.
    pub fn adopt(&mut self, keys: impl IntoIterator<Item = FlowKey>) {
        self.expiry.extend(keys);
    }
}

/// Examine the oldest key of an expiry queue: requeue it if its flow is alive, drop it if
/// the flow expired (counted) or is gone. `None` if the queue is empty.
fn sweep_one(
    expiry: &mut VecDeque<FlowKey>,
    stats: &mut WorkerStats,
    ct: &ConnTrack,
    now_secs: u32,
) -> Option<Aging> {
    let key = expiry.pop_front()?;
    let aging = ct.age(&key, now_secs);
    match aging {
        Aging::Alive => expiry.push_back(key),
        Aging::Expired => stats.flows_expired += 1,
        Aging::Gone => {}
    }
    Some(aging)
}
