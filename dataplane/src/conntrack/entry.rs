//! One direction of a flow as a lookup hands it to the pipeline: the fields its packets
//! need, copied, and a handle on the record for the hot fields. Holds no lock.

use core::sync::atomic::Ordering::Relaxed;

use super::record::Found;
use super::table::FlowTable;
use super::{Direction, Record, Rewrite, stamp};
use crate::flow::{Attachment, FlowKey};
use crate::wire::ethernet::MacAddr;

/// One direction of a flow as a lookup found it: the fields a packet of this direction
/// needs (copied), and handles on the flow's hot fields. Holds no lock.
#[derive(Clone, Copy, Debug)]
pub struct FlowEntry<'a> {
    rec: Record<'a>,
    /// The table, for the word beside the record: the client ISN (read only by flows
    /// with client identity).
    table: &'a FlowTable,
    /// The record's slot and incarnation, to remove exactly this flow.
    pub(super) slot: u32,
    pub(super) incarnation: u8,
    /// Which direction this entry serves.
    pub dir: Direction,
    /// The rewrite for packets matching the looked-up key.
    pub rewrite: Rewrite,
    /// The attachment rewritten packets leave on.
    pub out_vpc: Attachment,
    /// The next hop's MAC on `out_vpc`.
    pub dst_mac: MacAddr,
    /// The flow's client identity bits ([`super::state::TOA`], [`super::state::PROXY`]),
    /// fixed when it opened.
    pub identity: u8,
}

impl<'a> FlowEntry<'a> {
    #[inline(always)]
    pub(super) fn new(table: &'a FlowTable, found: &Found) -> Self {
        let rec = table.at(found.slot);
        let w = &found.words;
        let (rewrite, out_vpc, dst_mac) = match found.dir {
            Direction::Original => (w.rewrite(), w.out_vpc(), w.backend_mac()),
            Direction::Reply => {
                let key = w.key();
                (Rewrite::back_to(&key), key.vpc, w.client_mac())
            }
        };
        Self {
            identity: w.reply_state() & super::state::IDENTITY,
            rec,
            table,
            slot: found.slot,
            incarnation: w.incarnation(),
            dir: found.dir,
            rewrite,
            out_vpc,
            dst_mac,
        }
    }

    /// The flow's last packet in either direction (seconds since the tracker's epoch).
    pub fn idle_since(&self) -> u32 {
        let original = self.rec.last_seen(Direction::Original).load(Relaxed);
        original.max(self.rec.last_seen(Direction::Reply).load(Relaxed))
    }

    /// The key of the other direction: the reply to a packet rewritten by this entry.
    #[inline]
    pub fn peer_key(&self, proto: u8) -> FlowKey {
        self.rewrite.reply_key(self.out_vpc, proto)
    }

    /// This direction's state byte (the flow's state on the original direction; `SEEN`
    /// on the reply direction).
    #[inline]
    pub fn state(&self) -> u8 {
        self.rec.state(self.dir)
    }

    /// The flow's state byte (the original direction's), whichever direction this is.
    #[inline]
    pub fn flow_state(&self) -> u8 {
        self.rec.state(Direction::Original)
    }

    /// Apply `f` to this direction's state byte atomically; returns the new value
    /// (unchanged if the flow went away meanwhile).
    pub fn update_state(&self, f: impl Fn(u8) -> u8) -> u8 {
        self.update(self.dir, f)
    }

    /// Apply `f` to the original direction's state byte (the flow's state) atomically.
    pub fn update_flow_state(&self, f: impl Fn(u8) -> u8) -> u8 {
        self.update(Direction::Original, f)
    }

    fn update(&self, dir: Direction, f: impl Fn(u8) -> u8) -> u8 {
        let inc = self.incarnation;
        self.rec
            .update_state(inc, dir, f)
            .unwrap_or_else(|| self.rec.state(dir))
    }

    /// True if the flow was last checked against `generation` (by a packet of either
    /// direction).
    #[inline]
    pub fn checked_at(&self, generation: u64) -> bool {
        self.rec.generation().load(Relaxed) == stamp(generation)
    }

    /// Record that the flow was checked against `generation`. Two workers may race to
    /// store their own: a stamp is always a generation some worker checked the flow
    /// against, and a stale one only costs another check.
    pub fn set_checked(&self, generation: u64) {
        self.rec.generation().store(stamp(generation), Relaxed);
    }

    /// Give the flow's original direction (toward the backend) the next hop `mac`, if it
    /// has another (a re-check by a packet of either direction).
    pub fn set_backend_mac(&self, mac: MacAddr) {
        if self.rec.backend_mac_now() != mac {
            self.rec.set_mac(self.incarnation, Direction::Original, mac);
        }
    }

    /// The flow's record, for its flow log counters ([`super::ConnTrack::log_packet`]).
    #[inline(always)]
    pub fn record_slot(&self) -> u32 {
        self.slot
    }

    /// The flow's meter word: its meter slot ([`crate::meter`]), with
    /// [`crate::conntrack::flowlog::LOGGED`] if the flow is logged.
    #[inline(always)]
    pub fn meter(&self) -> u32 {
        self.rec.meter().load(Relaxed)
    }

    /// Set the flow's meter word (its re-check found its connection's slot, or its logging
    /// changed).
    pub fn set_meter(&self, slot: u32) {
        self.rec.meter().store(slot, Relaxed);
    }

    /// Last time (seconds since the tracker's epoch) a packet of this direction matched.
    pub fn last_seen(&self) -> u32 {
        self.rec.last_seen(self.dir).load(Relaxed)
    }

    /// Record a packet at `now_secs`; writes only when the second changed, so a busy flow
    /// does not write its cache line on every packet.
    #[inline]
    pub fn touch(&self, now_secs: u32) {
        let last = self.rec.last_seen(self.dir);
        if last.load(Relaxed) != now_secs {
            last.store(now_secs, Relaxed);
        }
    }

    /// Move direction `dir`'s last-seen time up to `secs` if it is earlier (a replicated
    /// flow's times, which never go back).
    pub fn seen_at_least(&self, dir: Direction, secs: u32) {
        self.rec.last_seen(dir).fetch_max(secs, Relaxed);
    }

    /// The client's initial sequence number (flows with client identity).
    #[inline]
    pub fn client_isn(&self) -> u32 {
        self.table.isn(self.slot).load(Relaxed)
    }

    /// Record the client's initial sequence number: a new SYN from the client on a closed
    /// flow (opening again on the same ports) restarts the stream.
    pub fn set_client_isn(&self, isn: u32) {
        self.table.isn(self.slot).store(isn, Relaxed);
    }

    /// Give the flow the client identity bits `identity` (a flow opening again on the same
    /// ports takes its service's current mode), clearing [`super::state::PROXY_ACKED`].
    pub fn set_identity(&self, identity: u8) {
        let mask = super::state::IDENTITY | super::state::PROXY_ACKED;
        self.update(Direction::Reply, |s| {
            (s & !mask) | (identity & super::state::IDENTITY)
        });
    }

    /// True once the backend acknowledged the whole PROXY header
    /// ([`super::state::PROXY_ACKED`]).
    #[inline]
    pub fn proxy_acked(&self) -> bool {
        self.rec.state(Direction::Reply) & super::state::PROXY_ACKED != 0
    }

    /// Record that the backend acknowledged the whole PROXY header.
    pub fn set_proxy_acked(&self) {
        self.update(Direction::Reply, |s| s | super::state::PROXY_ACKED);
    }

    /// Replace this direction's next-hop MAC (after a neighbour changed).
    pub fn set_dst_mac(&self, mac: MacAddr) {
        self.rec.set_mac(self.incarnation, self.dir, mac);
    }
}
