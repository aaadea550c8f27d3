//! The connection tracker shared by every worker: both directions of every flow in one
//! sharded map (`dashmap`), because the two directions of a NATed flow have different
//! 5-tuples and may reach different workers.
//!
//! - An entry is keyed by [`FlowKey`] (VPC included) and holds the rewrite for packets
//!   matching it, the attachment to send them on and the next hop's MAC, so a hit costs one
//!   lookup and no neighbour lookup. The peer entry's key is derived from the rewrite
//!   (the reply to the rewritten packet), so nothing stores it.
//! - The original-direction entry holds the flow's state (TCP handshake and close, UDP
//!   replied or not); each entry has its own last-seen time, and a flow is idle when both
//!   are. Hot fields are atomics updated under the shard's read lock.
//! - Each entry records the generation it was last checked against (the tables' plus the
//!   neighbour table's epoch); the pipeline re-checks a flow when it moves (opte's epoch).
//! - Capacity is hard: a flow is admitted only after reserving one unit, both node-wide
//!   and in the share of its VPC (the ingress attachment of the flow's opener, see
//!   [`ConnTrack::try_reserve`]). When either is full, an embryonic or unreplied flow is
//!   evicted to make room ([`ConnTrack::evict`]), never an established one.
//! - Eviction candidates are kept per VPC for the whole node (not per worker), so a worker
//!   that never saw the flood can still evict it. They sit in one short `Mutex`ed ring per
//!   VPC, touched only when a flow opens or is evicted, never on a hit; pushing is a few
//!   nanoseconds under the lock, and two workers contend only while both open flows for
//!   the same VPC.
//!
//! Nothing here reads the clock: times come in as `Instant`s and are stored as whole
//! seconds since the tracker's epoch. A lookup holds one shard lock for its duration, never
//! across another lookup.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use dashmap::DashMap;
use dashmap::mapref::one::Ref;
use foldhash::fast::RandomState;

use crate::config::{Config, Timeouts};
use crate::flow::{FlowKey, VpcId};
use crate::wire::ethernet::MacAddr;
use crate::wire::ipv4::PROTO_TCP;

/// Which way an entry's packets travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Direction {
    /// Client to backend (the flow's opener).
    Original,
    /// Backend to client.
    Reply,
}

/// The address and port rewrite applied to packets of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// New source address (host order).
    pub src: u32,
    /// New destination address (host order).
    pub dst: u32,
    /// New source port.
    pub sport: u16,
    /// New destination port.
    pub dport: u16,
}

impl Rewrite {
    /// The key of the reply to a packet rewritten this way and sent on `out`.
    #[inline]
    pub fn reply_key(&self, out: VpcId, proto: u8) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            vpc: out,
            proto,
        }
    }
}

pub mod state;
pub use state::tcp_next;

/// One direction of a flow. 32 bytes.
#[derive(Debug)]
pub struct FlowEntry {
    /// The rewrite for packets matching this entry's key.
    pub rewrite: Rewrite,
    /// The attachment rewritten packets leave on.
    pub out_vpc: VpcId,
    /// The next hop's MAC on `out_vpc`.
    pub dst_mac: MacAddr,
    /// Which direction this entry serves.
    pub dir: Direction,
    state: AtomicU8,
    generation: AtomicU32,
    last_seen: AtomicU32,
}

impl FlowEntry {
    /// A new entry seen at `now_secs` and checked against `generation`.
    pub fn new(
        rewrite: Rewrite,
        out_vpc: VpcId,
        dst_mac: MacAddr,
        dir: Direction,
        state: u8,
        generation: u64,
        now_secs: u32,
    ) -> Self {
        Self {
            rewrite,
            out_vpc,
            dst_mac,
            dir,
            state: AtomicU8::new(state),
            generation: AtomicU32::new(stamp(generation)),
            last_seen: AtomicU32::new(now_secs),
        }
    }

    /// The key of the other direction: the reply to a packet rewritten by this entry.
    #[inline]
    pub fn peer_key(&self, proto: u8) -> FlowKey {
        self.rewrite.reply_key(self.out_vpc, proto)
    }

    /// The state byte.
    #[inline]
    pub fn state(&self) -> u8 {
        self.state.load(Relaxed)
    }

    /// Apply `f` to the state byte atomically; returns the new value.
    pub fn update_state(&self, f: impl Fn(u8) -> u8) -> u8 {
        let mut cur = self.state.load(Relaxed);
        loop {
            let next = f(cur);
            if next == cur {
                return cur;
            }
            match self
                .state
                .compare_exchange_weak(cur, next, Relaxed, Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    /// True if this entry was last checked against `generation`.
    #[inline]
    pub fn checked_at(&self, generation: u64) -> bool {
        self.generation.load(Relaxed) == stamp(generation)
    }

    /// Record that this entry was checked against `generation`.
    pub fn set_checked(&self, generation: u64) {
        self.generation.store(stamp(generation), Relaxed);
    }

    /// Last time (seconds since the tracker's epoch) a packet matched.
    pub fn last_seen(&self) -> u32 {
        self.last_seen.load(Relaxed)
    }

    /// Record a packet at `now_secs`; writes only when the second changed, so a busy flow
    /// does not write its cache line on every packet.
    #[inline]
    pub fn touch(&self, now_secs: u32) {
        if self.last_seen.load(Relaxed) != now_secs {
            self.last_seen.store(now_secs, Relaxed);
        }
    }
}

/// Generation stamps keep the low 32 bits: a flow idle for 2^32 publishes is long expired.
#[allow(clippy::cast_possible_truncation)]
fn stamp(generation: u64) -> u32 {
    generation as u32
}

/// The outcome of checking one flow for idleness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aging {
    /// Still live.
    Alive,
    /// Idle past its state's timeout; removed.
    Expired,
    /// No such flow (already removed).
    Gone,
}

/// Why [`ConnTrack::try_reserve`] found no room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// The node's capacity is taken.
    Node,
    /// The VPC holds its whole share (`conntrack_vpc_percent`), or is not an attachment.
    Vpc,
}

/// The shared flow table.
#[derive(Debug)]
pub struct ConnTrack {
    map: DashMap<FlowKey, FlowEntry, RandomState>,
    capacity: usize,
    flows: AtomicUsize,
    /// The most flows one VPC's clients may hold.
    vpc_limit: usize,
    /// Flows per VPC of the opener, indexed by [`VpcId::index`].
    vpc_flows: Box<[AtomicUsize]>,
    /// Per VPC, recently opened flows' original keys, oldest first: eviction candidates.
    /// Each ring holds at most `candidates_per_vpc` keys and never reallocates.
    candidates: Box<[Mutex<VecDeque<FlowKey>>]>,
    candidates_per_vpc: usize,
    epoch: Instant,
    timeouts: Timeouts,
}

impl ConnTrack {
    /// A tracker sized by `config` (capacity, per-VPC share, attachments, eviction
    /// candidates, timeouts) whose clock starts at `epoch`.
    ///
    /// The map is not pre-sized: memory follows the live flow count.
    pub fn new(config: &Config, epoch: Instant) -> Self {
        // 128 shards: one lock covers about 1/128 of the flows, and with 2^20 flows a shard
        // is about 16 k entries.
        let map = DashMap::with_hasher_and_shard_amount(RandomState::default(), 128);
        let vpcs = config.attachments.len();
        let candidates_per_vpc = config.eviction_candidates;
        Self {
            map,
            capacity: config.conntrack_capacity.get(),
            flows: AtomicUsize::new(0),
            vpc_limit: config.conntrack_vpc_limit(),
            vpc_flows: (0..vpcs).map(|_| AtomicUsize::new(0)).collect(),
            candidates: (0..vpcs)
                .map(|_| Mutex::new(VecDeque::with_capacity(candidates_per_vpc)))
                .collect(),
            candidates_per_vpc,
            epoch,
            timeouts: config.timeouts,
        }
    }

    /// Whole seconds from the epoch to `now` (saturating).
    #[inline]
    pub fn secs(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.epoch).as_secs()).unwrap_or(u32::MAX)
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flows.load(Relaxed)
    }

    /// True if there are no flows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity in flows.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of flows opened by clients of `vpc`.
    pub fn len_of(&self, vpc: VpcId) -> usize {
        self.vpc_flows
            .get(vpc.index())
            .map_or(0, |n| n.load(Relaxed))
    }

    /// The most flows one VPC's clients may hold.
    pub fn vpc_limit(&self) -> usize {
        self.vpc_limit
    }

    /// Look up one direction. Hold the guard briefly: it holds the shard's read lock.
    #[inline]
    pub fn get(&self, key: &FlowKey) -> Option<Ref<'_, FlowKey, FlowEntry>> {
        self.map.get(key)
    }

    /// Reserve room for one flow opened by a client of `vpc`: one unit of the VPC's share,
    /// then one of the node's capacity.
    ///
    /// # Errors
    /// [`Full`] says which limit refused; nothing stays reserved.
    pub fn try_reserve(&self, vpc: VpcId) -> Result<(), Full> {
        let share = self.vpc_flows.get(vpc.index()).ok_or(Full::Vpc)?;
        // A share of 100 % is no limit: a VPC that holds everything meets the node's.
        if share.fetch_add(1, Relaxed) >= self.vpc_limit && self.vpc_limit < self.capacity {
            share.fetch_sub(1, Relaxed);
            return Err(Full::Vpc);
        }
        if self.flows.fetch_add(1, Relaxed) >= self.capacity {
            self.flows.fetch_sub(1, Relaxed);
            share.fetch_sub(1, Relaxed);
            return Err(Full::Node);
        }
        Ok(())
    }

    /// Give back a reservation of `vpc` that was not used.
    pub fn release(&self, vpc: VpcId) {
        if let Some(share) = self.vpc_flows.get(vpc.index()) {
            share.fetch_sub(1, Relaxed);
        }
        self.flows.fetch_sub(1, Relaxed);
    }

    fn ring(&self, vpc: VpcId) -> Option<MutexGuard<'_, VecDeque<FlowKey>>> {
        let ring = self.candidates.get(vpc.index())?;
        // A panic while holding the lock aborts the daemon (panic = "abort"); in tests, a
        // ring of keys is valid whatever happened.
        Some(ring.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Remember the original key of a flow just opened as an eviction candidate of its
    /// VPC; the oldest candidate makes way when the ring is full.
    pub fn remember(&self, key: FlowKey) {
        if self.candidates_per_vpc == 0 {
            return;
        }
        if let Some(mut ring) = self.ring(key.vpc) {
            if ring.len() >= self.candidates_per_vpc {
                ring.pop_front();
            }
            ring.push_back(key);
        }
    }

    /// Offer a live evictable flow found by an expiry sweep as a candidate again, if its
    /// VPC's ring has room: rings only remember recent flows, and this brings back the
    /// older embryonic ones once the recent ones are used up (a flood that stopped).
    fn offer(&self, key: FlowKey) {
        if let Some(mut ring) = self.ring(key.vpc)
            && ring.len() < self.candidates_per_vpc
        {
            ring.push_back(key);
        }
    }

    /// Evict one embryonic or unreplied flow to make room for a new flow of `vpc`,
    /// examining at most `attempts` candidates of each VPC it looks at (each examined
    /// candidate leaves its ring: one that established meanwhile is never a candidate
    /// again, so rings of established flows drain). For [`Full::Vpc`] the victim is one of
    /// `vpc`'s own flows; for [`Full::Node`] it is taken node-wide, from the VPC with the
    /// most flows first, then from the others in turn, so a heavy VPC of established flows
    /// does not hide a lighter one's flood (at most `attempts` times the attachments'
    /// count examined). Returns the VPC whose flow was evicted.
    pub fn evict(&self, vpc: VpcId, why: Full, attempts: usize) -> Option<VpcId> {
        match why {
            Full::Vpc => self.evict_from(vpc, attempts).then_some(vpc),
            Full::Node => {
                let vpcs = self.vpc_flows.len();
                let heaviest = (0..vpcs).max_by_key(|&i| self.vpc_flows[i].load(Relaxed))?;
                (0..vpcs)
                    .map(|i| (heaviest + i) % vpcs)
                    .filter_map(|i| u16::try_from(i).ok().map(VpcId))
                    .find(|&victim| self.evict_from(victim, attempts))
            }
        }
    }

    /// Pop candidates of `vpc` until one is evicted or `budget` of them were examined.
    fn evict_from(&self, vpc: VpcId, mut budget: usize) -> bool {
        while budget > 0 {
            // The ring's lock is released before the flow is looked up: never two locks.
            let Some(key) = self.ring(vpc).and_then(|mut r| r.pop_front()) else {
                return false;
            };
            budget -= 1;
            if self.evict_if_embryonic(&key) {
                return true;
            }
        }
        false
    }

    /// Insert `entry` under `key` if the key is free; returns whether it was inserted.
    /// Used first for the reply key, which reserves the SNAT port (no live tuple is reused),
    /// then for the original key, which settles a race between two workers.
    pub fn insert_if_vacant(&self, key: FlowKey, entry: FlowEntry) -> bool {
        match self.map.entry(key) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(entry);
                true
            }
        }
    }

    /// Remove a single entry without touching the flow count (undoing a half insert).
    pub fn remove_entry(&self, key: &FlowKey) {
        self.map.remove(key);
    }

    /// Remove the flow `key` belongs to (both directions) and release its capacity, in
    /// the node's count and in its VPC's. Returns false if `key` was not present.
    pub fn remove_flow(&self, key: &FlowKey) -> bool {
        let Some((_, entry)) = self.map.remove(key) else {
            return false;
        };
        self.map.remove(&entry.peer_key(key.proto));
        // The opener's VPC: the key's own on the original entry, the way back on a reply.
        let opener = match entry.dir {
            Direction::Original => key.vpc,
            Direction::Reply => entry.out_vpc,
        };
        self.release(opener);
        true
    }

    /// Replace the next-hop MAC of one entry (after a neighbour changed).
    pub fn set_dst_mac(&self, key: &FlowKey, mac: MacAddr) {
        if let Some(mut e) = self.map.get_mut(key) {
            e.dst_mac = mac;
        }
    }

    /// The idle timeout, in seconds, of a flow of protocol `proto` in state `s`.
    pub fn timeout_secs(&self, proto: u8, s: u8) -> u64 {
        let t = &self.timeouts;
        let d = if proto == PROTO_TCP {
            match s & state::MASK {
                state::ESTABLISHED => t.tcp_established,
                state::CLOSING => t.tcp_closing,
                state::CLOSED => t.tcp_closed,
                _ => t.tcp_embryonic,
            }
        } else {
            t.udp
        };
        d.as_secs()
    }

    /// Check the flow whose original key is `key`; remove it if idle past its timeout. A
    /// live embryonic or unreplied flow is offered as an eviction candidate again.
    pub fn age(&self, key: &FlowKey, now_secs: u32) -> Aging {
        let (last, s, peer) = match self.map.get(key) {
            Some(e) if e.dir == Direction::Original => {
                (e.last_seen(), e.state(), e.peer_key(key.proto))
            }
            _ => return Aging::Gone,
        };
        // The guard is dropped before the peer lookup: never two shard locks at once.
        let peer_last = self.map.get(&peer).map_or(0, |p| p.last_seen());
        let idle = u64::from(now_secs.saturating_sub(last.max(peer_last)));
        if idle >= self.timeout_secs(key.proto, s) {
            self.remove_flow(key);
            Aging::Expired
        } else {
            if state::evictable(s) {
                self.offer(*key);
            }
            Aging::Alive
        }
    }

    /// The original-direction keys of every flow (a copy: each shard's lock is held only
    /// while its keys are copied). Off the fast path: snapshots and diagnostics.
    pub fn original_keys(&self) -> Vec<FlowKey> {
        self.map
            .iter()
            .filter(|e| e.value().dir == Direction::Original)
            .map(|e| *e.key())
            .collect()
    }

    /// Evict the flow whose original key is `key` if it is embryonic or unreplied.
    pub fn evict_if_embryonic(&self, key: &FlowKey) -> bool {
        let evictable = self
            .map
            .get(key)
            .is_some_and(|e| e.dir == Direction::Original && state::evictable(e.state()));
        evictable && self.remove_flow(key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::state::*;
    use super::*;

    fn tracker(capacity: usize, vpc_percent: u8) -> ConnTrack {
        let config = Config {
            attachments: vec![MacAddr::default(); 3],
            conntrack_capacity: capacity.try_into().unwrap(),
            conntrack_vpc_percent: vpc_percent,
            ..Config::default()
        };
        ConnTrack::new(&config, Instant::now())
    }

    fn pair(ct: &ConnTrack, client_port: u16, st: u8, now: u32) -> FlowKey {
        pair_in(ct, VpcId(0), client_port, st, now)
    }

    /// A flow opened by a client of `vpc`, remembered as a candidate.
    fn pair_in(ct: &ConnTrack, vpc: VpcId, client_port: u16, st: u8, now: u32) -> FlowKey {
        let fwd = FlowKey {
            src: 0x0a00_000a,
            dst: 0x0a00_00c8,
            sport: client_port,
            dport: 80,
            vpc,
            proto: PROTO_TCP,
        };
        let rw = Rewrite {
            src: 0xc613_8001,
            dst: 0x0a00_000a,
            sport: client_port,
            dport: 80,
        };
        let e = FlowEntry::new(
            rw,
            VpcId(1),
            MacAddr::default(),
            Direction::Original,
            st,
            1,
            now,
        );
        let rev = e.peer_key(PROTO_TCP);
        let back = Rewrite {
            src: fwd.dst,
            dst: fwd.src,
            sport: fwd.dport,
            dport: fwd.sport,
        };
        let r = FlowEntry::new(back, vpc, MacAddr::default(), Direction::Reply, 0, 1, now);
        assert_eq!(ct.try_reserve(vpc), Ok(()));
        assert!(ct.insert_if_vacant(rev, r));
        assert!(ct.insert_if_vacant(fwd, e));
        ct.remember(fwd);
        fwd
    }

    #[test]
    fn capacity_eviction_and_aging() {
        let ct = tracker(2, 100);
        let a = pair(&ct, 1000, ESTABLISHED, 0);
        let b = pair(&ct, 1001, SYN_SENT, 0);
        assert_eq!(ct.len(), 2);
        assert_eq!(ct.try_reserve(VpcId(0)), Err(Full::Node), "hard capacity");
        assert_eq!(
            ct.len_of(VpcId(0)),
            2,
            "a refused reservation leaves nothing"
        );
        assert!(
            !ct.evict_if_embryonic(&a),
            "established flows are never evicted"
        );
        assert!(ct.evict_if_embryonic(&b));
        assert_eq!(ct.len(), 1);
        assert!(ct.get(&b).is_none());
        // Reverse entries go with the flow.
        assert_eq!(ct.map.len(), 2);
        assert_eq!(ct.age(&a, 349), Aging::Alive);
        // The reply direction alone keeps the flow alive.
        let peer = ct.get(&a).unwrap().peer_key(PROTO_TCP);
        ct.get(&peer).unwrap().touch(300);
        assert_eq!(ct.age(&a, 600), Aging::Alive);
        assert_eq!(ct.age(&a, 650), Aging::Expired);
        assert_eq!(ct.age(&a, 650), Aging::Gone);
        assert!(ct.is_empty());
        assert_eq!(ct.map.len(), 0);
    }

    #[test]
    fn vpc_shares_and_node_wide_eviction() {
        let (a, c) = (VpcId(0), VpcId(2));
        let ct = tracker(4, 50);
        assert_eq!(ct.vpc_limit(), 2);
        let est = pair_in(&ct, a, 1, ESTABLISHED, 0);
        let emb = pair_in(&ct, a, 2, SYN_SENT, 0);
        assert_eq!(ct.try_reserve(a), Err(Full::Vpc));
        assert_eq!(
            ct.try_reserve(VpcId(9)),
            Err(Full::Vpc),
            "not an attachment"
        );
        // At its share, A can only replace its own embryonic flow.
        assert_eq!(ct.evict(a, Full::Vpc, 8), Some(a));
        assert!(ct.get(&emb).is_none() && ct.get(&est).is_some());
        assert_eq!(ct.evict(a, Full::Vpc, 8), None, "established flows stay");
        pair_in(&ct, a, 3, SYN_SENT, 0);
        pair_in(&ct, c, 11, ESTABLISHED, 0);
        pair_in(&ct, c, 12, UDP_UNREPLIED, 0);
        assert_eq!((ct.len(), ct.len_of(a), ct.len_of(c)), (4, 2, 2));
        assert_eq!(ct.try_reserve(VpcId(1)), Err(Full::Node));
        // Node-wide: the heaviest VPC first (a tie goes to the last), then the others.
        assert_eq!(ct.evict(VpcId(1), Full::Node, 8), Some(c));
        assert_eq!(ct.evict(VpcId(1), Full::Node, 8), Some(a));
        assert_eq!(
            ct.evict(VpcId(1), Full::Node, 8),
            None,
            "only established flows"
        );
        assert_eq!((ct.len(), ct.len_of(a), ct.len_of(c)), (2, 1, 1));
        assert_eq!(ct.try_reserve(VpcId(1)), Ok(()));
        ct.release(VpcId(1));
        assert_eq!(ct.len(), 2);
    }

    #[test]
    fn a_heavy_vpc_of_established_flows_does_not_hide_a_lighter_flood() {
        let (a, c) = (VpcId(0), VpcId(2));
        let ct = tracker(16, 100);
        for port in 0..12 {
            pair_in(&ct, c, 100 + port, ESTABLISHED, 0);
        }
        let flood: Vec<_> = (0..4).map(|p| pair_in(&ct, a, p, SYN_SENT, 0)).collect();
        assert_eq!(ct.try_reserve(VpcId(1)), Err(Full::Node));
        // C's ring holds 12 established flows, more than one call examines there.
        assert_eq!(ct.evict(VpcId(1), Full::Node, 8), Some(a));
        assert_eq!((ct.len_of(a), ct.len_of(c)), (3, 12));
        assert!(ct.get(&flood[0]).is_none());
    }

    #[test]
    fn the_expiry_sweep_gives_evictions_back_their_older_candidates() {
        let config = Config {
            attachments: vec![MacAddr::default()],
            conntrack_capacity: 4.try_into().unwrap(),
            conntrack_vpc_percent: 100,
            eviction_candidates: 1,
            ..Config::default()
        };
        let ct = ConnTrack::new(&config, Instant::now());
        let old = pair(&ct, 1, SYN_SENT, 0);
        let est = pair(&ct, 2, ESTABLISHED, 0);
        let recent = pair(&ct, 3, SYN_SENT, 0); // the ring holds one: this one
        assert_eq!(ct.evict(VpcId(0), Full::Node, 8), Some(VpcId(0)));
        assert!(ct.get(&recent).is_none());
        assert_eq!(ct.evict(VpcId(0), Full::Node, 8), None, "ring used up");
        assert_eq!(ct.age(&est, 1), Aging::Alive);
        assert_eq!(
            ct.evict(VpcId(0), Full::Node, 8),
            None,
            "established: not offered"
        );
        assert_eq!(ct.age(&old, 1), Aging::Alive);
        assert_eq!(ct.evict(VpcId(0), Full::Node, 8), Some(VpcId(0)));
        assert!(ct.get(&old).is_none() && ct.get(&est).is_some());
    }

    #[test]
    fn secs_saturate() {
        let epoch = Instant::now();
        let ct = tracker(1, 50);
        assert_eq!(ct.secs(epoch + Duration::from_millis(2500)), 2);
        assert_eq!(
            ct.secs(epoch.checked_sub(Duration::from_secs(1)).unwrap_or(epoch)),
            0
        );
        assert_eq!(size_of::<FlowEntry>(), 32);
    }
}
