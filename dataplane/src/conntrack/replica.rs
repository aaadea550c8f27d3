//! Conntrack replication, the dataplane's part: the events a tracker gives its node's
//! replicator (a flow opened, became established or closed, UDP replied: each change of
//! whether an eviction may take it; ended), their encoding on
//! the wire, and how a standby applies them to its own tracker, the shadow table that
//! becomes live when it takes over.
//!
//! - Events leave through a bounded channel with `try_send`: a full channel counts the
//!   event lost and the worker goes on. A lost event is repaired by the owner's periodic
//!   resend of every flow ([`Replica::Open`] again; an open is an upsert), or, for a close,
//!   by the standby's own expiry.
//! - Every flow is reported, whichever VPC it belongs to; the node's replicator sends only
//!   those of VPCs the node owns, and a standby applies only those of VPCs it attaches and
//!   does not own. The standby's own removals (expiry, eviction) therefore go nowhere.
//! - A standby admits a replicated flow as the owner admitted it: one unit of the node's
//!   capacity and of its VPC's share, evicting an embryonic or unreplied flow of the same
//!   kind when full ([`ConnTrack::evict`]), and the same SNAT address and port. Its
//!   generation stamp is 0, so at its first packet on the new owner it is checked against
//!   the new owner's tables (a connection rejected meanwhile stops there), and its meter
//!   slot is found again.
//!
//! The encoding is the hand-over's record ([`super::handover`]) behind a tag byte, times as
//! idle seconds (the nodes' trackers have different epochs):
//!
//! ```text
//!  1 open    a hand-over record (55 bytes)
//!  2 state   key (15 bytes), the flow's state byte
//!  3 close   key (15 bytes)
//! ```
//!
//! Attachments in keys are the sender's indices; the datagram around the events maps them
//! to VPC ids, and the receiver to its own indices.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use super::flowlog::EndReason;
use super::handover::{self, read_key, read_u8};
use super::{ConnTrack, Direction, FlowInit, InsertError};
use crate::flow::{Attachment, FlowKey};

/// What a tracker tells the replicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replica {
    /// A flow opened (or, from a resend, is alive as it is now).
    Open(FlowInit),
    /// The flow of this original key changed state so that an eviction may now take it,
    /// or no longer may (TCP established, or closed; UDP replied): the standby's copy is
    /// then as evictable as the owner's. Other changes (SYN-ACK seen, one side's FIN)
    /// reach the standby with the owner's resend.
    State {
        /// The flow's original key.
        key: FlowKey,
        /// Its state byte.
        state: u8,
    },
    /// The flow of this original key ended.
    Close(FlowKey),
}

/// A replicated event as decoded: times as idle seconds, attachments the sender's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// See [`Replica::Open`].
    Open(WireFlow),
    /// See [`Replica::State`].
    State {
        /// The flow's original key.
        key: FlowKey,
        /// Its state byte.
        state: u8,
    },
    /// See [`Replica::Close`].
    Close(FlowKey),
}

/// An opened flow on the wire (the hand-over's record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireFlow(handover::Record);

impl WireFlow {
    /// The flow's original key (the sender's attachment).
    pub fn key(&self) -> FlowKey {
        self.0.key
    }

    /// The attachment the flow leaves on (the sender's).
    pub fn out_vpc(&self) -> Attachment {
        self.0.out_vpc
    }
}

impl Wire {
    /// The attachments this event names (the sender's): the flow's VPC, and for an open,
    /// the VPC it leaves on.
    pub fn attachments(&self) -> [Attachment; 2] {
        match self {
            Self::Open(f) => [f.key().vpc, f.out_vpc()],
            Self::State { key, .. } | Self::Close(key) => [key.vpc, key.vpc],
        }
    }
}

const OPEN: u8 = 1;
const STATE: u8 = 2;
const CLOSE: u8 = 3;
/// The most bytes one event takes on the wire.
pub const MAX_EVENT_BYTES: usize = 1 + 55;

/// A tracker's replication channel and its counters.
#[derive(Debug)]
pub struct ReplicaLog {
    tx: SyncSender<Replica>,
    sent: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
}

/// A replication channel holding at most `queue` events, and its receiving end.
pub fn replica_log(queue: usize) -> (ReplicaLog, Receiver<Replica>) {
    let (tx, rx) = sync_channel(queue.max(1));
    let log = ReplicaLog {
        tx,
        sent: Arc::default(),
        lost: Arc::default(),
    };
    (log, rx)
}

impl ReplicaLog {
    /// Events handed to the replicator.
    pub fn sent(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.sent)
    }

    /// Events lost to a full channel.
    pub fn lost(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lost)
    }

    /// Hand `event` over, or count it lost; never blocks.
    #[inline]
    pub fn send(&self, event: Replica) {
        match self.tx.try_send(event) {
            Ok(()) => self.sent.fetch_add(1, Relaxed),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.lost.fetch_add(1, Relaxed)
            }
        };
    }
}

/// Append `event` to `out`, its times as idle seconds at tracker second `now_secs`.
pub fn encode(event: &Replica, now_secs: u32, out: &mut Vec<u8>) {
    match event {
        Replica::Open(f) => {
            out.push(OPEN);
            // Writing to a Vec cannot fail.
            let _ = handover::write_record(out, &handover::Record::of(f, now_secs));
        }
        Replica::State { key, state } => {
            out.push(STATE);
            put_key(out, key);
            out.push(*state);
        }
        Replica::Close(key) => {
            out.push(CLOSE);
            put_key(out, key);
        }
    }
}

fn put_key(out: &mut Vec<u8>, k: &FlowKey) {
    out.extend_from_slice(&k.src.to_le_bytes());
    out.extend_from_slice(&k.dst.to_le_bytes());
    out.extend_from_slice(&k.sport.to_le_bytes());
    out.extend_from_slice(&k.dport.to_le_bytes());
    out.extend_from_slice(&k.vpc.0.to_le_bytes());
    out.push(k.proto);
}

/// Decode one event from the front of `input`.
///
/// # Errors
/// An unknown tag, or an event cut short.
pub fn decode(input: &mut &[u8]) -> io::Result<Wire> {
    Ok(match read_u8(input)? {
        OPEN => Wire::Open(WireFlow(handover::read_record(input, false)?)),
        STATE => Wire::State {
            key: read_key(input)?,
            state: read_u8(input)?,
        },
        CLOSE => Wire::Close(read_key(input)?),
        tag => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown replication event {tag}"),
            ));
        }
    })
}

/// What applying one event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A flow was added to the shadow table (its key is for an expiry sweep).
    Inserted(FlowKey),
    /// A tracked flow took the event's state and times.
    Updated,
    /// A tracked flow was removed.
    Closed,
    /// Nothing to do: the flow is not tracked, or timed out already.
    Ignored,
    /// No room, even after evicting, or its SNAT port is taken here: the flow is not
    /// replicated.
    Refused,
}

impl ConnTrack {
    /// Apply a replicated `event` whose attachments `remap` turns into this tracker's
    /// (already remapped by the caller; see [`Wire::attachments`]), at tracker second
    /// `now_secs`; `attempts` bounds an eviction's search, as for the owner's own flows.
    pub fn apply_replica(
        &self,
        event: &Wire,
        remap: &[Attachment; 2],
        now_secs: u32,
        attempts: usize,
    ) -> Applied {
        match event {
            Wire::Open(WireFlow(r)) => self.upsert(&r.flow(*remap, now_secs), now_secs, attempts),
            Wire::State { key, state } => {
                let key = FlowKey {
                    vpc: remap[0],
                    ..*key
                };
                match self.get(&key).filter(|e| e.dir == Direction::Original) {
                    Some(e) => {
                        e.update_state(|_| *state);
                        Applied::Updated
                    }
                    None => Applied::Ignored,
                }
            }
            Wire::Close(key) => {
                let key = FlowKey {
                    vpc: remap[0],
                    ..*key
                };
                if self.remove_flow(&key, EndReason::Deleted) {
                    Applied::Closed
                } else {
                    Applied::Ignored
                }
            }
        }
    }

    /// Track `flow` as the owner has it: update the flow of its key if it is the same one
    /// (same rewrite), else replace it.
    fn upsert(&self, flow: &FlowInit, now_secs: u32, attempts: usize) -> Applied {
        let key = flow.key;
        let idle = now_secs.saturating_sub(flow.last_seen[0].max(flow.last_seen[1]));
        if u64::from(idle) >= self.timeout_secs(key.proto, flow.state) {
            return Applied::Ignored;
        }
        if let Some(e) = self.get(&key).filter(|e| e.dir == Direction::Original) {
            if e.rewrite == flow.rewrite && e.out_vpc == flow.out_vpc {
                e.update_state(|_| flow.state);
                e.seen_at_least(Direction::Original, flow.last_seen[0]);
                e.seen_at_least(Direction::Reply, flow.last_seen[1]);
                return Applied::Updated;
            }
            // The owner closed it and opened it again on another SNAT port; the close
            // did not arrive.
            self.remove_flow(&key, EndReason::Deleted);
        }
        if let Err(full) = self.try_reserve(key.vpc)
            && (self.evict(key.vpc, full, attempts).is_none() || self.try_reserve(key.vpc).is_err())
        {
            return Applied::Refused;
        }
        let snat = [(flow.rewrite.src, flow.rewrite.sport)];
        let mut inserted = self.insert_flow(flow, snat);
        if let Err(InsertError::SnatExhausted) = inserted {
            // Another flow here holds the SNAT port: one this node kept from before (a
            // restart's snapshot) of a VPC another node owns now. The owner's view wins.
            if let Some(stale) = self.get(&flow.reply_key()) {
                self.remove_entry(&stale, EndReason::Deleted);
            }
            inserted = self.insert_flow(flow, snat);
        }
        if inserted.is_err() {
            self.release(key.vpc);
            return Applied::Refused;
        }
        if crate::conntrack::state::evictable(flow.state) {
            self.remember(key);
        }
        Applied::Inserted(key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::Config;
    use crate::conntrack::{Rewrite, state};
    use crate::wire::ethernet::MacAddr;

    fn flow(port: u16, state: u8) -> FlowInit {
        FlowInit {
            key: FlowKey {
                src: 0x0a00_0005,
                dst: 0x0a00_00c8,
                sport: port,
                dport: 80,
                vpc: Attachment(0),
                proto: crate::wire::ipv4::PROTO_TCP,
            },
            rewrite: Rewrite {
                src: 0xc613_8001,
                dst: 0x0a00_000a,
                sport: 1024 + port,
                dport: 8080,
            },
            out_vpc: Attachment(1),
            backend_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            client_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            state,
            reply_state: 0,
            generation: 7,
            last_seen: [10, 9],
            client_isn: 0,
            meter: 0,
        }
    }

    fn tracker(capacity: usize) -> ConnTrack {
        let config = Config {
            attachments: vec![Default::default(); 2],
            conntrack_capacity: capacity.try_into().unwrap(),
            // The node's capacity is the limit here, not a VPC's share.
            conntrack_vpc_percent: 100,
            ..Default::default()
        };
        ConnTrack::new(&config, Instant::now() - Duration::from_secs(100))
    }

    /// Encode `events` at tracker second `at` and decode them again.
    fn round_trip(events: &[Replica], at: u32) -> Vec<Wire> {
        let mut buf = Vec::new();
        for e in events {
            encode(e, at, &mut buf);
        }
        assert!(buf.len() <= events.len() * MAX_EVENT_BYTES);
        let mut input = buf.as_slice();
        let mut out = Vec::new();
        while !input.is_empty() {
            out.push(decode(&mut input).unwrap());
        }
        out
    }

    const SAME: [Attachment; 2] = [Attachment(0), Attachment(1)];

    #[test]
    fn a_standby_tracks_what_the_owner_opened_changed_and_closed() {
        let f = flow(1000, state::SYN_SENT);
        let events = [
            Replica::Open(f),
            Replica::State {
                key: f.key,
                state: state::ESTABLISHED,
            },
            Replica::Close(f.key),
        ];
        let wire = round_trip(&events, 12);
        let ct = tracker(16);
        // The standby's clock reads 50: the flow was idle 2 s at the owner.
        assert_eq!(
            ct.apply_replica(&wire[0], &SAME, 50, 4),
            Applied::Inserted(f.key)
        );
        let e = ct.get(&f.key).unwrap();
        assert_eq!(e.rewrite, f.rewrite);
        assert_eq!(e.idle_since(), 50 - 2);
        assert!(!e.checked_at(7), "checked again at its first packet here");
        // The reply direction is indexed too, with the owner's SNAT port.
        assert!(
            ct.get(&f.rewrite.reply_key(Attachment(1), f.key.proto))
                .is_some()
        );
        assert_eq!(ct.apply_replica(&wire[1], &SAME, 50, 4), Applied::Updated);
        assert_eq!(ct.get(&f.key).unwrap().state(), state::ESTABLISHED);
        // A resend is an update, not a second flow.
        assert_eq!(ct.apply_replica(&wire[0], &SAME, 51, 4), Applied::Updated);
        assert_eq!(ct.len(), 1);
        assert_eq!(ct.apply_replica(&wire[2], &SAME, 52, 4), Applied::Closed);
        assert!(ct.get(&f.key).is_none() && ct.is_empty());
        assert_eq!(ct.apply_replica(&wire[2], &SAME, 52, 4), Applied::Ignored);
    }

    #[test]
    fn a_full_shadow_table_evicts_as_the_owner_would() {
        let ct = tracker(2);
        let embryonic = round_trip(&[Replica::Open(flow(1, state::SYN_SENT))], 10);
        let established = round_trip(
            &[
                Replica::Open(flow(2, state::ESTABLISHED)),
                Replica::Open(flow(3, state::ESTABLISHED)),
                Replica::Open(flow(4, state::ESTABLISHED)),
            ],
            10,
        );
        assert!(matches!(
            ct.apply_replica(&embryonic[0], &SAME, 10, 4),
            Applied::Inserted(_)
        ));
        assert!(matches!(
            ct.apply_replica(&established[0], &SAME, 10, 4),
            Applied::Inserted(_)
        ));
        // Full: the embryonic flow makes way for an established one...
        assert!(matches!(
            ct.apply_replica(&established[1], &SAME, 10, 4),
            Applied::Inserted(_)
        ));
        assert!(ct.get(&flow(1, 0).key).is_none());
        assert_eq!(ct.len(), 2);
        // ...but no established flow does.
        assert_eq!(
            ct.apply_replica(&established[2], &SAME, 10, 4),
            Applied::Refused
        );
        assert_eq!(ct.len(), 2);
    }

    #[test]
    fn the_owners_flow_replaces_a_stale_one_on_its_snat_port() {
        let ct = tracker(16);
        // A flow this node kept from before, on the SNAT port the owner now gives another.
        let mut stale = flow(7, state::ESTABLISHED);
        stale.key.sport = 50000;
        let mut fresh = flow(8, state::SYN_SENT);
        fresh.rewrite.sport = stale.rewrite.sport;
        let wire = round_trip(&[Replica::Open(stale), Replica::Open(fresh)], 10);
        assert!(matches!(
            ct.apply_replica(&wire[0], &SAME, 10, 4),
            Applied::Inserted(_)
        ));
        assert_eq!(
            ct.apply_replica(&wire[1], &SAME, 10, 4),
            Applied::Inserted(fresh.key)
        );
        assert!(ct.get(&stale.key).is_none());
        assert_eq!(ct.len(), 1);
    }

    #[test]
    fn a_timed_out_flow_is_not_replicated_and_bad_input_is_an_error() {
        let ct = tracker(4);
        let mut old = flow(5, state::SYN_SENT);
        old.last_seen = [0, 0];
        let wire = round_trip(&[Replica::Open(old)], 10_000);
        assert_eq!(
            ct.apply_replica(&wire[0], &SAME, 10_000, 4),
            Applied::Ignored
        );
        assert!(decode(&mut &[9u8, 1, 2][..]).is_err());
        assert!(decode(&mut &[OPEN, 1, 2][..]).is_err());
        assert!(decode(&mut &[][..]).is_err());
    }
}
