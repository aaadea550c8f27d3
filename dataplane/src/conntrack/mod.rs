//! The connection tracker shared by every worker: both directions of every flow in one
//! pre-sized table ([`table`]: 64-byte records, an open-addressing index of both keys),
//! because the two directions of a NATed flow have different 5-tuples and may reach
//! different workers.
//!
//! - A flow is one record: its original key, the rewrite of original-direction packets,
//!   the backend's and the client's MACs, per direction a state byte and a last-seen time,
//!   the flow's generation stamp and its meter word ([`crate::meter`], and the flow log's
//!   bit). The reply key is the reply to the rewritten packet, and the reply's rewrite is
//!   the original key reversed, so neither is stored. A hit costs one index bucket and one
//!   record (two cache lines), no lock, and no neighbour lookup.
//! - The original direction's state byte holds the flow's state (TCP handshake and close,
//!   UDP replied or not); a flow is idle when both directions are.
//! - The flow records the generation it was last checked against (the tables' plus the
//!   neighbour table's epoch); the pipeline re-checks a flow when it moves (opte's epoch),
//!   at the first packet of either direction. The check is the flow's (is it still
//!   allowed, where does it go, under which meter slot), and it refreshes the backend's
//!   MAC whichever direction ran it.
//! - Capacity is hard: a flow is admitted only after reserving one unit, both node-wide
//!   and in the share of its VPC (the ingress attachment of the flow's opener, see
//!   [`ConnTrack::try_reserve`]). When either is full, an embryonic or unreplied flow is
//!   evicted to make room ([`ConnTrack::evict`]), never an established one. The table has
//!   exactly `capacity` records, so it never grows: memory is fixed at start (100 bytes a
//!   flow of capacity: 64 of record, 32 of index, and the 4-byte client ISN word that only
//!   flows with client identity write; zeroed pages the kernel backs as flows first touch
//!   them; the daemon asks for huge pages over [`ConnTrack::regions`], so the
//!   32-byte-a-flow index is resident after a few dozen flows).
//! - Eviction candidates are kept per VPC for the whole node (not per worker), so a worker
//!   that never saw the flood can still evict it. They sit in one short `Mutex`ed ring per
//!   VPC, touched only when a flow opens or is evicted, never on a hit; pushing is a few
//!   nanoseconds under the lock, and two workers contend only while both open flows for
//!   the same VPC.
//!
//! Nothing here reads the clock: times come in as `Instant`s and are stored as whole
//! seconds since the tracker's epoch. A lookup takes no lock; opening a flow takes its two
//! keys' home-bucket locks one after the other, never two at once.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use foldhash::fast::RandomState;

use self::flowlog::{EndReason, FlowEvent, FlowLog};
use self::replica::{Replica, ReplicaLog};

use crate::config::{Config, Timeouts};
use crate::flow::{Attachment, FlowKey};
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
    pub fn reply_key(&self, out: Attachment, proto: u8) -> FlowKey {
        FlowKey {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            vpc: out,
            proto,
        }
    }

    /// The rewrite that sends a reply back to `key`'s sender as if from `key`'s
    /// destination: `key` reversed.
    #[inline]
    pub fn back_to(key: &FlowKey) -> Self {
        Self {
            src: key.dst,
            dst: key.src,
            sport: key.dport,
            dport: key.sport,
        }
    }
}

mod entry;
pub mod flowlog;
pub mod handover;
pub mod record;
pub mod replica;
pub mod state;
pub mod table;
pub use entry::FlowEntry;
pub use record::{FlowInit, Record};
pub use state::tcp_next;
pub use table::{FlowTable, IndexError};

/// Generation stamps keep the low 32 bits: a flow idle for 2^32 publishes is long expired.
#[allow(clippy::cast_possible_truncation)]
pub fn stamp(generation: u64) -> u32 {
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

/// Why [`ConnTrack::insert_flow`] did not insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// The original key is already tracked (another worker opened the flow first).
    Exists,
    /// Every SNAT address and port offered is taken by a live flow.
    SnatExhausted,
    /// No record or index room (only if the caller reserved nothing).
    TableFull,
}

/// The shared flow table.
#[derive(Debug)]
pub struct ConnTrack {
    table: FlowTable,
    capacity: usize,
    flows: AtomicUsize,
    /// The most flows one VPC's clients may hold.
    vpc_limit: usize,
    /// Flows per VPC of the opener, indexed by [`Attachment::index`].
    vpc_flows: Box<[AtomicUsize]>,
    /// Per VPC, recently opened flows' original keys, oldest first: eviction candidates.
    /// Each ring holds at most `candidates_per_vpc` keys and never reallocates.
    candidates: Box<[Mutex<VecDeque<FlowKey>>]>,
    candidates_per_vpc: usize,
    epoch: Instant,
    timeouts: Timeouts,
    /// The flow log, if the node keeps one ([`crate::conntrack::flowlog`]).
    flow_log: Option<FlowLog>,
    /// The replication channel, if the node replicates its flows ([`replica`]).
    replica: Option<ReplicaLog>,
    /// Original keys of flows added by replication, for the pipelines' expiry sweeps
    /// ([`ConnTrack::take_adopted`]).
    adopted: Mutex<Vec<FlowKey>>,
    /// True while `adopted` holds keys (so pipelines lock it only then).
    has_adopted: core::sync::atomic::AtomicBool,
}

impl ConnTrack {
    /// A tracker sized by `config` (capacity, per-VPC share, attachments, eviction
    /// candidates, timeouts) whose clock starts at `epoch`.
    ///
    /// The table is allocated for the whole capacity here (zeroed pages, which the kernel
    /// backs as flows first touch them): nothing grows on the packet path.
    pub fn new(config: &Config, epoch: Instant) -> Self {
        let vpcs = config.attachments.len();
        let candidates_per_vpc = config.eviction_candidates;
        let capacity = config.conntrack_capacity.get();
        Self {
            table: FlowTable::new(capacity, RandomState::default()),
            capacity,
            flows: AtomicUsize::new(0),
            vpc_limit: config.conntrack_vpc_limit(),
            vpc_flows: (0..vpcs).map(|_| AtomicUsize::new(0)).collect(),
            candidates: (0..vpcs)
                .map(|_| Mutex::new(VecDeque::with_capacity(candidates_per_vpc)))
                .collect(),
            candidates_per_vpc,
            epoch,
            timeouts: config.timeouts,
            flow_log: None,
            replica: None,
            adopted: Mutex::new(Vec::new()),
            has_adopted: core::sync::atomic::AtomicBool::new(false),
        }
    }

    /// This tracker, telling `log` of every flow opened, established or replied, and
    /// ended ([`replica`]).
    #[must_use]
    pub fn with_replica(mut self, log: ReplicaLog) -> Self {
        self.replica = Some(log);
        self
    }

    /// The replication channel, if the node replicates.
    pub fn replica(&self) -> Option<&ReplicaLog> {
        self.replica.as_ref()
    }

    /// Tell the replicator of `event`, if the node replicates.
    #[inline]
    pub fn replicate(&self, event: impl FnOnce() -> Replica) {
        if let Some(r) = &self.replica {
            r.send(event());
        }
    }

    /// Hand flows added by replication to an expiry sweep (see [`ConnTrack::take_adopted`]).
    pub fn adopted(&self, keys: impl IntoIterator<Item = FlowKey>) {
        let mut q = self.adopted.lock().unwrap_or_else(PoisonError::into_inner);
        q.extend(keys);
        self.has_adopted.store(!q.is_empty(), Relaxed);
    }

    /// The keys of flows added by replication since the last call, for the calling
    /// pipeline's expiry sweep; empty (without waiting) if another pipeline holds them.
    pub fn take_adopted(&self) -> Vec<FlowKey> {
        if !self.has_adopted.load(Relaxed) {
            return Vec::new();
        }
        let Ok(mut q) = self.adopted.try_lock() else {
            return Vec::new();
        };
        self.has_adopted.store(false, Relaxed);
        std::mem::take(&mut *q)
    }

    /// This tracker, telling `log` of the flows that carry [`flowlog::LOGGED`].
    #[must_use]
    pub fn with_flow_log(mut self, log: FlowLog) -> Self {
        self.flow_log = Some(log);
        self
    }

    /// The flow log, if there is one.
    pub fn flow_log(&self) -> Option<&FlowLog> {
        self.flow_log.as_ref()
    }

    /// Count `segments` packets of `bytes` IPv4 bytes of the logged flow in record `slot`
    /// ([`FlowEntry::record_slot`]) travelling `dir`.
    #[inline]
    pub fn log_packet(&self, slot: u32, dir: Direction, segments: u64, bytes: u64) {
        if let Some(log) = &self.flow_log {
            log.count(slot, dir, segments, bytes);
        }
    }

    /// The flow in record `slot` is logged from tracker second `now` on (its counters
    /// start from zero).
    pub fn log_begin(&self, slot: u32, now: u32) {
        if let Some(log) = &self.flow_log {
            log.begin(slot, now);
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

    /// Bytes the table holds, fixed at creation whatever the flow count (the candidate
    /// rings and the pipelines' expiry queues are extra).
    pub fn footprint(&self) -> usize {
        self.table.footprint()
    }

    /// The table's allocations as (address, bytes), for memory advice by the driver
    /// (`io::memory::advise_huge_pages`); the core itself makes no system call.
    pub fn regions(&self) -> [(usize, usize); 2] {
        self.table.regions()
    }

    /// Index entries in use: two per flow (diagnostics and tests).
    pub fn index_entries(&self) -> usize {
        self.table.entries()
    }

    /// Number of flows opened by clients of `vpc`.
    pub fn len_of(&self, vpc: Attachment) -> usize {
        self.vpc_flows
            .get(vpc.index())
            .map_or(0, |n| n.load(Relaxed))
    }

    /// The most flows one VPC's clients may hold.
    pub fn vpc_limit(&self) -> usize {
        self.vpc_limit
    }

    /// The table's hash of `key` (seeded), for [`ConnTrack::get_hashed`] and the prefetch.
    #[inline(always)]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.table.hash(key)
    }

    /// First prefetch stage for a key of hash `h`: load its index bucket. Returns a value to
    /// feed `black_box`, so the load stays.
    #[inline]
    pub fn prefetch_bucket(&self, h: u64) -> u64 {
        self.table.touch_bucket(h)
    }

    /// Second prefetch stage, once the bucket is in cache: the record the bucket names for
    /// hash `h` (the first whose tag matches), without reading it.
    #[inline]
    pub fn record_of(&self, h: u64) -> Option<u32> {
        self.table.record_of(h)
    }

    /// Third prefetch stage: load record `slot` (any value; [`u64::MAX`] and other
    /// out-of-range values load nothing). Returns a value to feed `black_box`.
    #[inline]
    pub fn prefetch_record(&self, slot: u64) -> u32 {
        self.table.touch_record(slot)
    }

    /// Look up one direction.
    #[inline(always)]
    pub fn get(&self, key: &FlowKey) -> Option<FlowEntry<'_>> {
        self.get_hashed(key, self.table.hash(key))
    }

    /// Look up one direction whose hash ([`ConnTrack::hash`]) is `h`.
    #[inline(always)]
    pub fn get_hashed(&self, key: &FlowKey, h: u64) -> Option<FlowEntry<'_>> {
        let found = self.table.get(key, h)?;
        Some(FlowEntry::new(&self.table, &found))
    }

    /// Reserve room for one flow opened by a client of `vpc`: one unit of the VPC's share,
    /// then one of the node's capacity.
    ///
    /// # Errors
    /// [`Full`] says which limit refused; nothing stays reserved.
    pub fn try_reserve(&self, vpc: Attachment) -> Result<(), Full> {
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
    pub fn release(&self, vpc: Attachment) {
        if let Some(share) = self.vpc_flows.get(vpc.index()) {
            share.fetch_sub(1, Relaxed);
        }
        self.flows.fetch_sub(1, Relaxed);
    }

    fn ring(&self, vpc: Attachment) -> Option<MutexGuard<'_, VecDeque<FlowKey>>> {
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
    pub fn evict(&self, vpc: Attachment, why: Full, attempts: usize) -> Option<Attachment> {
        match why {
            Full::Vpc => self.evict_from(vpc, attempts).then_some(vpc),
            Full::Node => {
                let vpcs = self.vpc_flows.len();
                let heaviest = (0..vpcs).max_by_key(|&i| self.vpc_flows[i].load(Relaxed))?;
                (0..vpcs)
                    .map(|i| (heaviest + i) % vpcs)
                    .filter_map(|i| u16::try_from(i).ok().map(Attachment))
                    .find(|&victim| self.evict_from(victim, attempts))
            }
        }
    }

    /// Pop candidates of `vpc` until one is evicted or `budget` of them were examined.
    fn evict_from(&self, vpc: Attachment, mut budget: usize) -> bool {
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

    /// Insert a flow (both directions) whose capacity the caller reserved: `flow` with its
    /// SNAT address and port (`rewrite.src`, `rewrite.sport`) taken from the first of
    /// `snat` whose reply key is free. The reply key is indexed first, which reserves the
    /// SNAT port (no live tuple is reused), then the original key, which settles a race
    /// between two workers. Returns the SNAT address and port chosen.
    ///
    /// # Errors
    /// [`InsertError`]; nothing was inserted, and the reservation is the caller's to give
    /// back.
    pub fn insert_flow(
        &self,
        flow: &FlowInit,
        snat: impl IntoIterator<Item = (u32, u16)>,
    ) -> Result<(u32, u16), InsertError> {
        let t = &self.table;
        let slot = t.alloc().ok_or(InsertError::TableFull)?;
        let mut f = *flow;
        let mut chosen = None;
        for (ip, port) in snat {
            f.rewrite.src = ip;
            f.rewrite.sport = port;
            t.write(slot, &f);
            let reply = f.reply_key();
            let h = t.hash(&reply);
            match t.insert(&reply, h, slot, Direction::Reply) {
                Ok(()) => {
                    chosen = Some((ip, port, h));
                    break;
                }
                Err(IndexError::Occupied) => {}
                Err(IndexError::Full) => break,
            }
        }
        let Some((ip, port, reply_hash)) = chosen else {
            t.kill_and_release(slot);
            return Err(InsertError::SnatExhausted);
        };
        let h = t.hash(&f.key);
        if let Err(e) = t.insert(&f.key, h, slot, Direction::Original) {
            t.remove(reply_hash, slot, Direction::Reply);
            t.kill_and_release(slot);
            return Err(match e {
                IndexError::Occupied => InsertError::Exists,
                IndexError::Full => InsertError::TableFull,
            });
        }
        if f.meter & flowlog::LOGGED != 0 {
            self.log_begin(slot, f.last_seen[0]);
        }
        Ok((ip, port))
    }

    /// Remove the flow `key` belongs to (both directions) for `reason` and release its
    /// capacity, in the node's count and in its VPC's. Returns false if `key` was not
    /// present.
    pub fn remove_flow(&self, key: &FlowKey, reason: EndReason) -> bool {
        self.get(key).is_some_and(|e| self.remove_entry(&e, reason))
    }

    /// Remove the flow `e` was found in, unless another caller removed it first; a logged
    /// flow's last line goes to the flow log.
    fn remove_entry(&self, e: &FlowEntry<'_>, reason: EndReason) -> bool {
        let t = &self.table;
        let slot = e.slot;
        let end = e.idle_since();
        let Some(words) = t.kill(slot, e.incarnation) else {
            return false;
        };
        let init = words.flow();
        t.remove(t.hash(&init.key), slot, Direction::Original);
        t.remove(t.hash(&init.reply_key()), slot, Direction::Reply);
        let meter = t.meter(slot).load(Relaxed);
        if let Some(log) = &self.flow_log
            && meter & flowlog::LOGGED != 0
        {
            // Before the record is released: its counters are this flow's until then.
            let flow = (init.key, init.rewrite, init.out_vpc, meter);
            log.send(FlowEvent::Flow(log.record(slot, flow, end, reason)));
        }
        self.replicate(|| Replica::Close(init.key));
        t.release(slot);
        self.release(init.key.vpc);
        true
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
        let Some(e) = self.get(key).filter(|e| e.dir == Direction::Original) else {
            return Aging::Gone;
        };
        let s = e.state();
        let idle = u64::from(now_secs.saturating_sub(e.idle_since()));
        if idle >= self.timeout_secs(key.proto, s) {
            self.remove_entry(&e, EndReason::of_expired(key.proto, s));
            Aging::Expired
        } else {
            if state::evictable(s) {
                self.offer(*key);
            }
            self.report_if_due(key, &e, now_secs);
            Aging::Alive
        }
    }

    /// A logged live flow's interval report, if one is due.
    fn report_if_due(&self, key: &FlowKey, e: &FlowEntry<'_>, now_secs: u32) {
        let Some(log) = &self.flow_log else {
            return;
        };
        let meter = e.meter();
        if meter & flowlog::LOGGED != 0 && log.due(e.slot, now_secs) {
            let flow = (*key, e.rewrite, e.out_vpc, meter);
            let record = log.record(e.slot, flow, now_secs, EndReason::Active);
            log.send(FlowEvent::Flow(record));
        }
    }

    /// The meter slot of every live flow ([`crate::meter`]), for counting each endpoint's
    /// active flows. Off the fast path: it reads every record in use.
    pub fn live_meters(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.live_meters().map(|m| m & flowlog::SLOT)
    }

    /// Every flow, each as read consistently on its own. Off the fast path: hand-overs and
    /// diagnostics.
    pub fn flows(&self) -> Vec<FlowInit> {
        self.table.live().collect()
    }

    /// The SNAT addresses the live flows use, each once, in order. Off the fast path: it
    /// reads every record in use (a takeover's announcement puts these first).
    pub fn snat_addresses(&self) -> Vec<u32> {
        let set: std::collections::BTreeSet<u32> =
            self.table.live().map(|f| f.rewrite.src).collect();
        set.into_iter().collect()
    }

    /// The original-direction keys of every flow (a copy). Off the fast path.
    pub fn original_keys(&self) -> Vec<FlowKey> {
        self.table.live().map(|f| f.key).collect()
    }

    /// Evict the flow whose original key is `key` if it is embryonic or unreplied.
    pub fn evict_if_embryonic(&self, key: &FlowKey) -> bool {
        self.get(key).is_some_and(|e| {
            e.dir == Direction::Original
                && state::evictable(e.state())
                && self.remove_entry(&e, EndReason::Evicted)
        })
    }
}

#[cfg(test)]
mod tests;
