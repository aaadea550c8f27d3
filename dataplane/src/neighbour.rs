//! The neighbour table: `(vpc, IPv4 address)` to MAC for the next hops the dataplane sends
//! to on its own initiative, shared by the workers.
//!
//! - **Only what the dataplane asked for.** An entry exists because the dataplane sent an
//!   ARP request for it (a backend named by the tables, see [`Neighbours::solicit`]), or was
//!   installed with [`Neighbours::learn`]. ARP requests from others, gratuitous ARP and
//!   unsolicited replies never create an entry: a tenant sending requests from 70,000
//!   made-up senders fills nothing. Clients need no entry at all: a flow stores its
//!   client's MAC, taken from the frame that opened it.
//! - **Verified changes only.** A MAC is set or changed only by a reply to a request we
//!   sent and have not had answered yet ([`Neighbours::answer`]); the first answer closes
//!   the question. One unsolicited frame can neither add nor move an entry; one that
//!   contradicts a resolved MAC only has it re-verified at once ([`Neighbours::doubt`]),
//!   so a backend that moved and announced it is followed within a second or two.
//! - **Aging, as the kernel does.** An answer makes an entry reachable for
//!   `neighbour_reachable`; then it is stale: still used, and re-verified by a fresh
//!   request when the worker next solicits. After [`PROBES`] unanswered requests the MAC is
//!   forgotten (the kernel's `FAILED`): new flows wait for an answer instead of going to a
//!   dead MAC. An entry nobody asked for nor confirmed in [`GC_STALE_FACTOR`] reachable
//!   times (a backend gone from the tables) is removed by [`Neighbours::sweep`].
//! - **Changes reach the flows.** Every MAC change bumps [`Neighbours::epoch`]; pipelines
//!   fold it into the generation flows are re-checked against, so flows to a backend that
//!   moved follow it on their next packet.
//! - **Bounded**: at most `neighbour_capacity` entries, and `neighbour_per_vpc` per
//!   attachment, so one provider VPC with many backends cannot take every entry.
//!
//! Times are whole seconds on the conntrack's clock, passed in; nothing here reads the clock.

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use dashmap::DashMap;
use foldhash::fast::RandomState;

use crate::config::Config;
use crate::flow::Attachment;
use crate::wire::ethernet::MacAddr;

/// Unanswered requests after which a stale neighbour's MAC is forgotten (the kernel's
/// `ucast_solicit` and `mcast_solicit` default to 3; every probe here is a broadcast, so a
/// backend that moved to a new MAC answers too).
pub const PROBES: u8 = 3;

/// An entry neither asked for nor confirmed for this many reachable times is removed.
pub const GC_STALE_FACTOR: u32 = 2;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// The MAC, once an answer to our request gave it.
    mac: Option<MacAddr>,
    /// When an answer last gave or confirmed `mac`.
    confirmed_at: u32,
    /// When we last sent a request for this address.
    asked_at: u32,
    /// Requests sent since the last answer; above zero, a question is outstanding.
    unanswered: u8,
    /// An unsolicited frame contradicted `mac` since the last answer: verify now.
    doubted: bool,
}

/// What [`Neighbours::solicit`] decided for one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solicit {
    /// The table (or the attachment's share) is full: the address gets no entry.
    Full,
    /// Send an ARP request now; it was recorded as asked.
    Send,
    /// Nothing to send: reachable, or asked less than `arp_retry` ago.
    Wait,
}

/// What an ARP reply did to the table ([`Neighbours::answer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It answered our question and gave a MAC different from the one we had.
    Changed,
    /// It answered our question and confirmed the MAC we had.
    Confirmed,
    /// It answered our question for an address we did not know yet.
    Resolved,
    /// Nobody asked: no entry, or no question outstanding. Ignored.
    Unsolicited,
}

/// The shared neighbour table.
#[derive(Debug)]
pub struct Neighbours {
    map: DashMap<(Attachment, u32), Entry, RandomState>,
    /// Entries, node-wide and per attachment (indexed by [`Attachment::index`]).
    len: AtomicUsize,
    per_vpc: Box<[AtomicUsize]>,
    capacity: usize,
    vpc_capacity: usize,
    reachable_secs: u32,
    retry_secs: u32,
    /// The second the last sweep ran (one sweep per reachable time, node-wide).
    swept_at: AtomicU32,
    /// Number of MAC changes so far.
    epoch: AtomicU64,
}

impl Neighbours {
    /// An empty table sized and timed by `config` (its attachments, neighbour capacities,
    /// `neighbour_reachable` and `arp_retry`).
    pub fn new(config: &Config) -> Self {
        let secs = |d: core::time::Duration| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX);
        Self {
            map: DashMap::with_hasher(RandomState::default()),
            len: AtomicUsize::new(0),
            per_vpc: (0..config.attachments.len())
                .map(|_| AtomicUsize::new(0))
                .collect(),
            capacity: config.neighbour_capacity,
            vpc_capacity: config.neighbour_per_vpc,
            reachable_secs: secs(config.neighbour_reachable),
            retry_secs: secs(config.arp_retry),
            swept_at: AtomicU32::new(0),
            epoch: AtomicU64::new(0),
        }
    }

    /// How many times a resolved MAC changed. Only grows; read once per batch.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    /// The MAC of `ip` on `vpc`, if resolved (reachable or stale: a stale MAC is used while
    /// it is being re-verified).
    #[inline]
    pub fn lookup(&self, vpc: Attachment, ip: u32) -> Option<MacAddr> {
        self.map.get(&(vpc, ip))?.mac
    }

    /// Install `ip` at `mac` on `vpc` as confirmed at second 0 (a static entry for tests and
    /// benches; it turns stale and is re-verified like any other). Replaces an existing
    /// MAC. Returns false if the table or the attachment's share is full.
    pub fn learn(&self, vpc: Attachment, ip: u32, mac: MacAddr) -> bool {
        let entry = Entry {
            mac: Some(mac),
            confirmed_at: 0,
            asked_at: 0,
            unanswered: 0,
            doubted: false,
        };
        match self.map.entry((vpc, ip)) {
            dashmap::Entry::Occupied(mut o) => {
                if o.get().mac.is_some_and(|old| old != mac) {
                    self.epoch.fetch_add(1, Relaxed);
                }
                o.insert(entry);
                true
            }
            dashmap::Entry::Vacant(v) => {
                if !self.reserve(vpc) {
                    return false;
                }
                v.insert(entry);
                true
            }
        }
    }

    /// Decide whether to send an ARP request for `ip` on `vpc` at `now_secs`, and record it
    /// as asked if so: an unknown address gets an entry (room permitting); an unresolved
    /// one is asked again after `arp_retry`; a stale or doubted one is re-verified
    /// (broadcast, so a backend that moved answers too), and after [`PROBES`] unanswered
    /// requests its MAC is forgotten. A reachable one needs nothing. Requests for one
    /// address are at least `arp_retry` apart, whatever doubts arrive.
    pub fn solicit(&self, vpc: Attachment, ip: u32, now_secs: u32) -> Solicit {
        let mut e = match self.map.entry((vpc, ip)) {
            dashmap::Entry::Occupied(o) => o.into_ref(),
            dashmap::Entry::Vacant(v) => {
                if !self.reserve(vpc) {
                    return Solicit::Full;
                }
                v.insert(Entry {
                    mac: None,
                    confirmed_at: now_secs,
                    asked_at: now_secs,
                    unanswered: 1,
                    doubted: false,
                });
                return Solicit::Send;
            }
        };
        let reachable = e.mac.is_some()
            && e.unanswered == 0
            && !e.doubted
            && now_secs.saturating_sub(e.confirmed_at) < self.reachable_secs;
        let asked_recently = (e.unanswered > 0 || e.doubted)
            && now_secs.saturating_sub(e.asked_at) < self.retry_secs;
        if reachable || asked_recently {
            return Solicit::Wait;
        }
        if e.mac.is_some() && e.unanswered >= PROBES {
            e.mac = None; // FAILED: no answer to PROBES requests
        }
        e.asked_at = now_secs;
        e.unanswered = e.unanswered.saturating_add(1);
        e.doubted = false;
        Solicit::Send
    }

    /// An unsolicited ARP frame (gratuitous, a request, a reply nobody asked for) says `ip`
    /// on `vpc` is at `mac`. It changes nothing; if it contradicts a resolved MAC, the
    /// entry is doubted: the next [`Neighbours::solicit`] re-verifies it at once instead of
    /// when it turns stale, so a backend that really moved (a floating address taken over,
    /// announced by gratuitous ARP) is followed within a second or two, and a spoofer gains
    /// nothing but one more request. Returns whether it contradicted.
    pub fn doubt(&self, vpc: Attachment, ip: u32, mac: MacAddr) -> bool {
        let Some(mut e) = self.map.get_mut(&(vpc, ip)) else {
            return false;
        };
        let contradicts = e.mac.is_some_and(|known| known != mac);
        if contradicts && e.unanswered == 0 {
            e.doubted = true;
        }
        contradicts
    }

    /// An ARP reply from `ip` at `mac` on `vpc`. Taken only if it answers a request of ours
    /// that is still outstanding; the first answer closes the question, so a second reply
    /// (a spoofer racing the real host) changes nothing until the next request.
    pub fn answer(&self, vpc: Attachment, ip: u32, mac: MacAddr, now_secs: u32) -> Answer {
        let Some(mut e) = self.map.get_mut(&(vpc, ip)) else {
            return Answer::Unsolicited;
        };
        if e.unanswered == 0 {
            return Answer::Unsolicited;
        }
        let outcome = match e.mac {
            None => Answer::Resolved,
            Some(old) if old == mac => Answer::Confirmed,
            Some(_) => {
                self.epoch.fetch_add(1, Relaxed);
                Answer::Changed
            }
        };
        *e = Entry {
            mac: Some(mac),
            confirmed_at: now_secs,
            asked_at: e.asked_at,
            unanswered: 0,
            doubted: false,
        };
        outcome
    }

    /// Remove entries neither asked for nor confirmed in the last [`GC_STALE_FACTOR`]
    /// reachable times. Runs at most once per reachable time node-wide (the first caller
    /// past the mark does it), walking the whole table: at most `neighbour_capacity`
    /// entries, each shard locked in turn. Returns how many were removed.
    pub fn sweep(&self, now_secs: u32) -> usize {
        let last = self.swept_at.load(Relaxed);
        if now_secs.saturating_sub(last) < self.reachable_secs
            || self
                .swept_at
                .compare_exchange(last, now_secs, Relaxed, Relaxed)
                .is_err()
        {
            return 0;
        }
        let horizon = self.reachable_secs.saturating_mul(GC_STALE_FACTOR);
        let mut removed = 0;
        self.map.retain(|&(vpc, _), e| {
            let active = e.confirmed_at.max(e.asked_at);
            let keep = now_secs.saturating_sub(active) < horizon;
            if !keep {
                self.unreserve(vpc);
                removed += 1;
            }
            keep
        });
        removed
    }

    /// Count one more entry for `vpc`, if both caps allow.
    fn reserve(&self, vpc: Attachment) -> bool {
        let Some(share) = self.per_vpc.get(vpc.index()) else {
            return false;
        };
        if share.fetch_add(1, Relaxed) >= self.vpc_capacity {
            share.fetch_sub(1, Relaxed);
            return false;
        }
        if self.len.fetch_add(1, Relaxed) >= self.capacity {
            self.len.fetch_sub(1, Relaxed);
            share.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    fn unreserve(&self, vpc: Attachment) {
        if let Some(share) = self.per_vpc.get(vpc.index()) {
            share.fetch_sub(1, Relaxed);
        }
        self.len.fetch_sub(1, Relaxed);
    }

    /// Number of entries (resolved and not).
    pub fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    /// Number of entries on attachment `vpc`.
    pub fn len_of(&self, vpc: Attachment) -> usize {
        self.per_vpc.get(vpc.index()).map_or(0, |n| n.load(Relaxed))
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V0: Attachment = Attachment(0);
    const V1: Attachment = Attachment(1);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);
    const OTHER: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x66]);

    fn table(capacity: usize, per_vpc: usize) -> Neighbours {
        Neighbours::new(&Config {
            attachments: vec![MacAddr::default(); 2],
            neighbour_capacity: capacity,
            neighbour_per_vpc: per_vpc,
            ..Config::default()
        })
    }

    #[test]
    fn only_answers_to_our_questions_resolve() {
        let n = table(8, 8);
        assert_eq!(n.answer(V0, 1, MAC, 10), Answer::Unsolicited, "no entry");
        assert!(n.is_empty(), "an unsolicited reply creates nothing");
        assert_eq!(n.solicit(V0, 1, 10), Solicit::Send);
        assert_eq!(n.solicit(V0, 1, 10), Solicit::Wait, "rate limited");
        assert_eq!(
            n.solicit(V0, 1, 11),
            Solicit::Send,
            "asked again after arp_retry"
        );
        assert_eq!(n.lookup(V0, 1), None);
        assert_eq!(n.answer(V0, 1, MAC, 11), Answer::Resolved);
        assert_eq!(n.lookup(V0, 1), Some(MAC));
        assert_eq!(
            n.answer(V0, 1, OTHER, 11),
            Answer::Unsolicited,
            "the first answer closed the question"
        );
        assert_eq!(n.lookup(V0, 1), Some(MAC));
        assert_eq!(n.solicit(V0, 1, 40), Solicit::Wait, "reachable for 30 s");
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn stale_entries_are_reverified_and_change_only_on_an_answer() {
        let n = table(8, 8);
        assert_eq!(n.solicit(V0, 1, 0), Solicit::Send);
        assert_eq!(n.answer(V0, 1, MAC, 0), Answer::Resolved);
        assert_eq!(n.solicit(V0, 1, 30), Solicit::Send, "stale: verify");
        assert_eq!(n.lookup(V0, 1), Some(MAC), "a stale MAC is still used");
        assert_eq!(n.answer(V0, 1, MAC, 30), Answer::Confirmed);
        assert_eq!(n.solicit(V0, 1, 59), Solicit::Wait);
        assert_eq!(n.solicit(V0, 1, 60), Solicit::Send);
        assert_eq!(n.epoch(), 0);
        assert_eq!(n.answer(V0, 1, OTHER, 60), Answer::Changed);
        assert_eq!(n.lookup(V0, 1), Some(OTHER));
        assert_eq!(n.epoch(), 1, "a change moves the epoch");
        // No answer to PROBES requests: the MAC is forgotten, the address still asked for.
        for t in 90..90 + u32::from(PROBES) {
            assert_eq!(n.solicit(V0, 1, t), Solicit::Send);
            assert_eq!(n.lookup(V0, 1), Some(OTHER));
        }
        assert_eq!(n.solicit(V0, 1, 93), Solicit::Send);
        assert_eq!(n.lookup(V0, 1), None, "failed");
        assert_eq!(n.answer(V0, 1, MAC, 93), Answer::Resolved);
    }

    #[test]
    fn a_contradiction_brings_verification_forward_and_changes_nothing() {
        let n = table(8, 8);
        assert!(n.learn(V0, 1, MAC));
        assert_eq!(n.solicit(V0, 1, 5), Solicit::Wait, "reachable");
        assert!(!n.doubt(V0, 1, MAC), "agreement is no doubt");
        assert!(!n.doubt(V0, 2, OTHER), "unknown addresses are not created");
        assert!(n.doubt(V0, 1, OTHER));
        assert_eq!(n.lookup(V0, 1), Some(MAC), "nothing changed");
        assert_eq!(n.solicit(V0, 1, 5), Solicit::Send, "verified at once");
        assert_eq!(n.answer(V0, 1, MAC, 5), Answer::Confirmed);
        // A spoofer repeating itself gets one request per arp_retry, no more.
        assert!(n.doubt(V0, 1, OTHER));
        assert_eq!(n.solicit(V0, 1, 5), Solicit::Wait);
        assert_eq!(n.solicit(V0, 1, 6), Solicit::Send);
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn caps_per_vpc_and_overall() {
        let n = table(3, 2);
        assert_eq!(n.solicit(V0, 1, 0), Solicit::Send);
        assert_eq!(n.solicit(V0, 2, 0), Solicit::Send);
        assert_eq!(n.solicit(V0, 3, 0), Solicit::Full, "V0's share");
        assert!(!n.learn(V0, 3, MAC), "V0's share");
        assert_eq!(n.solicit(V1, 1, 0), Solicit::Send);
        assert_eq!(n.solicit(V1, 2, 0), Solicit::Full, "node-wide");
        assert_eq!(
            n.solicit(Attachment(7), 1, 0),
            Solicit::Full,
            "no such attachment"
        );
        assert!(n.learn(V0, 1, MAC), "known entries still update");
        assert_eq!((n.len(), n.len_of(V0), n.len_of(V1)), (3, 2, 1));
    }

    #[test]
    fn the_sweep_removes_what_nobody_asks_for_once_per_reachable_time() {
        let n = table(8, 8);
        assert_eq!(n.solicit(V0, 1, 0), Solicit::Send);
        assert_eq!(n.answer(V0, 1, MAC, 0), Answer::Resolved);
        assert_eq!(n.solicit(V1, 2, 0), Solicit::Send);
        // V0/1 keeps being verified (a backend in the tables); V1/2 is never asked again.
        assert_eq!(n.solicit(V0, 1, 30), Solicit::Send);
        assert_eq!(n.answer(V0, 1, MAC, 30), Answer::Confirmed);
        assert_eq!(n.sweep(59), 0, "nothing idle for 60 s");
        assert_eq!(n.sweep(61), 0, "swept less than 30 s ago");
        assert_eq!(n.sweep(89), 1);
        assert_eq!(n.lookup(V0, 1), Some(MAC));
        assert_eq!((n.len(), n.len_of(V1)), (1, 0));
    }
}
