//! Flow logs, the dataplane's half: which flows are logged, their per-flow counters, and
//! the events conntrack emits for them (a flow that ended, a flow still open at the end of
//! an interval, refused attempts summed per source and reason). The control plane's writer
//! turns the events into JSON lines off the packet path.
//!
//! - **Opt-in per attachment** ([`crate::Config::flow_log`]): a flow opened from a logged
//!   attachment carries [`LOGGED`] in its meter word ([`crate::meter`]), which every packet
//!   loads anyway; flows of other attachments pay one bit test.
//! - **Per-flow counters**: one zeroed allocation of [`WORDS`] words a flow of capacity,
//!   beside the conntrack table (its pages backed only as logged flows touch them). Each
//!   direction's words are written by the worker that handles that direction's 5-tuple
//!   (fanout hashes a tuple to one socket) with a relaxed load and store, as the meters are:
//!   no read-modify-write on the packet path. A fanout change (a reload's new sockets) may
//!   lose an increment while two workers share a direction; the counts are exact otherwise.
//! - **Events** go through a bounded channel ([`std::sync::mpsc::sync_channel`]) with
//!   `try_send`: a full channel counts the event as lost ([`FlowLog::lost`]) and the
//!   dataplane goes on. Nothing here blocks, and nothing allocates per packet.
//! - **Refusals** are summed per pipeline in a small table ([`Refusals`], [`SOURCES`]
//!   sources, the rest summed per attachment and reason) and sent once an interval, so a
//!   flood from random sources makes a bounded number of events whatever its rate.
//!
//! Times are whole seconds: an event's are the tracker's seconds plus the Unix time of its
//! epoch, given by the driver ([`flow_log`]), so the core still reads no clock.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use foldhash::fast::RandomState;
use zerocopy::FromZeros;

use super::{Direction, Rewrite, state};
use crate::flow::{Attachment, FlowKey};
use crate::verdict::DropReason;
use crate::wire::ipv4::PROTO_TCP;

/// The bit of a flow's meter word that says the flow is logged.
pub const LOGGED: u32 = 1 << 31;
/// The meter slot in a flow's meter word.
pub const SLOT: u32 = !LOGGED;

/// Words per flow: packets and bytes each way, then start and last report (seconds, one
/// word).
pub const WORDS: usize = 5;
const PACKETS: usize = 0;
const BYTES: usize = 2;
const TIMES: usize = 4;

/// Sources a pipeline sums refusals for, per interval, before it sums the rest per
/// attachment and reason.
pub const SOURCES: usize = 64;

/// Why a flow log line was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The flow is still open: a report at the end of an interval.
    Active,
    /// Closed by FINs in both directions (then idle past the closed timeout).
    Fin,
    /// Closed by a reset.
    Rst,
    /// Idle past its state's timeout.
    Idle,
    /// Evicted to make room (an embryonic or unreplied flow).
    Evicted,
    /// Removed because the tables no longer allow it: its endpoint, connection or
    /// whitelist entry was deleted or rejected.
    Deleted,
}

impl EndReason {
    /// The name used in the log.
    pub fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Fin => "fin",
            Self::Rst => "rst",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Deleted => "deleted",
        }
    }

    /// How a flow in state `s` (its original state byte) of protocol `proto` ended when it
    /// expired.
    pub fn of_expired(proto: u8, s: u8) -> Self {
        if proto != PROTO_TCP || s & state::MASK != state::CLOSED {
            return Self::Idle;
        }
        let both = state::FIN_ORIGINAL | state::FIN_REPLY;
        if s & both == both {
            Self::Fin
        } else {
            Self::Rst
        }
    }
}

/// One flow, as a log line tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// The client's side: its attachment (`vpc`), address and port, and where it sent (the
    /// endpoint's address and port, or a gateway destination's).
    pub key: FlowKey,
    /// The backend's side: the SNAT address and port (`src`, `sport`) and the backend
    /// (`dst`, `dport`).
    pub rewrite: Rewrite,
    /// The backend's attachment.
    pub out_vpc: Attachment,
    /// The connection's meter slot (0: none).
    pub meter: u32,
    /// Packets by direction (client to backend, then back), as the meters count them.
    pub packets: [u64; 2],
    /// IPv4 bytes by direction.
    pub bytes: [u64; 2],
    /// Unix seconds of the flow's first packet (of its first logged packet, for a flow
    /// that was logged from a re-check on: one carried over a restart).
    pub start: u64,
    /// Unix seconds of its last packet (of the report, for [`EndReason::Active`]).
    pub end: u64,
    /// Why this line.
    pub reason: EndReason,
}

/// Attempts refused for one reason from one source (or from every source a pipeline had no
/// room for, `src: None`) in one interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The client's attachment.
    pub vpc: Attachment,
    /// The client's address; `None` for the sum of the sources past [`SOURCES`].
    pub src: Option<u32>,
    /// Where the first of them went (address, port, protocol).
    pub dst: u32,
    /// Its destination port.
    pub dport: u16,
    /// Its protocol.
    pub proto: u8,
    /// The endpoint's meter slot (0: none known).
    pub meter: u32,
    /// The reason.
    pub reason: DropReason,
    /// How many.
    pub count: u64,
    /// Unix seconds of the first and the last.
    pub first: u64,
    /// See `first`.
    pub last: u64,
}

/// What conntrack and the pipelines tell the flow log's writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowEvent {
    /// A flow ended, or is reported at the end of an interval.
    Flow(FlowRecord),
    /// Refused attempts.
    Refused(Refused),
}

/// The settings of [`flow_log`].
#[derive(Clone, Copy, Debug)]
pub struct FlowLogConfig {
    /// Flows of the conntrack this log serves (the counters are allocated for them).
    pub capacity: usize,
    /// Events the channel holds before it counts them lost.
    pub queue: usize,
    /// Seconds between two reports of a live flow, and between two sums of refusals.
    pub interval_secs: u32,
    /// Unix seconds at the tracker's epoch.
    pub epoch_unix: u64,
}

/// A flow log and the receiving end of its events, for the writer.
pub fn flow_log(config: FlowLogConfig) -> (FlowLog, Receiver<FlowEvent>) {
    let (tx, rx) = sync_channel(config.queue.max(1));
    let n = config.capacity * WORDS;
    let counts = <[AtomicU64]>::new_box_zeroed_with_elems(n).unwrap_or_else(|_| {
        let layout = std::alloc::Layout::array::<AtomicU64>(n);
        std::alloc::handle_alloc_error(layout.unwrap_or(std::alloc::Layout::new::<u64>()))
    });
    let log = FlowLog {
        tx,
        counts,
        interval: config.interval_secs.max(1),
        epoch_unix: config.epoch_unix,
        sent: Arc::default(),
        lost: Arc::default(),
    };
    (log, rx)
}

/// The dataplane's end of a flow log: per-flow counters and the events' sender. Owned by
/// the conntrack ([`crate::conntrack::ConnTrack::with_flow_log`]).
pub struct FlowLog {
    tx: SyncSender<FlowEvent>,
    counts: Box<[AtomicU64]>,
    interval: u32,
    epoch_unix: u64,
    sent: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
}

impl core::fmt::Debug for FlowLog {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlowLog")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// A times word: start (high half) and last report (low half).
#[allow(clippy::cast_possible_truncation)]
fn split(times: u64) -> (u32, u32) {
    ((times >> 32) as u32, times as u32)
}

/// Add `n` to a word only this thread writes (for its direction).
#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl FlowLog {
    /// Events sent to the writer (shared: the driver reads it).
    pub fn sent(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.sent)
    }

    /// Events lost to a full channel.
    pub fn lost(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.lost)
    }

    /// Seconds between two reports.
    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// Unix seconds of tracker second `secs`.
    pub fn unix(&self, secs: u32) -> u64 {
        self.epoch_unix + u64::from(secs)
    }

    #[inline(always)]
    fn words(&self, slot: u32) -> &[AtomicU64] {
        let at = slot as usize * WORDS;
        self.counts.get(at..at + WORDS).unwrap_or(&[])
    }

    /// Flow record `slot` starts being logged at tracker second `now`.
    pub fn begin(&self, slot: u32, now: u32) {
        if let [p0, p1, b0, b1, times] = self.words(slot) {
            for w in [p0, p1, b0, b1] {
                w.store(0, Relaxed);
            }
            times.store(u64::from(now) << 32 | u64::from(now), Relaxed);
        }
    }

    /// Count `segments` packets of `bytes` IPv4 bytes of flow record `slot` travelling `dir`.
    #[inline(always)]
    pub fn count(&self, slot: u32, dir: Direction, segments: u64, bytes: u64) {
        let w = self.words(slot);
        if w.len() == WORDS {
            let d = usize::from(dir == Direction::Reply);
            bump(&w[PACKETS + d], segments);
            bump(&w[BYTES + d], bytes);
        }
    }

    /// The counters of flow record `slot`: packets, bytes, start, last report.
    fn read(&self, slot: u32) -> ([u64; 2], [u64; 2], u32, u32) {
        let w = self.words(slot);
        if w.len() != WORDS {
            return ([0; 2], [0; 2], 0, 0);
        }
        let (start, reported) = split(w[TIMES].load(Relaxed));
        (
            [w[PACKETS].load(Relaxed), w[PACKETS + 1].load(Relaxed)],
            [w[BYTES].load(Relaxed), w[BYTES + 1].load(Relaxed)],
            start,
            reported,
        )
    }

    /// True if flow record `slot`, last reported before `now - interval`, is due a report;
    /// if so, its report time becomes `now`.
    pub fn due(&self, slot: u32, now: u32) -> bool {
        let w = self.words(slot);
        let Some(times) = w.get(TIMES) else {
            return false;
        };
        let (start, reported) = split(times.load(Relaxed));
        if now.saturating_sub(reported) < self.interval {
            return false;
        }
        times.store(u64::from(start) << 32 | u64::from(now), Relaxed);
        true
    }

    /// The record of flow record `slot` (`key`, `rewrite`, `out_vpc`, `meter` as it holds
    /// them), ending at tracker second `end` for `reason`.
    pub fn record(
        &self,
        slot: u32,
        flow: (FlowKey, Rewrite, Attachment, u32),
        end: u32,
        reason: EndReason,
    ) -> FlowRecord {
        let (packets, bytes, start, _) = self.read(slot);
        let (key, rewrite, out_vpc, meter) = flow;
        FlowRecord {
            key,
            rewrite,
            out_vpc,
            meter: meter & SLOT,
            packets,
            bytes,
            start: self.unix(start),
            end: self.unix(end.max(start)),
            reason,
        }
    }

    /// Send `event` to the writer, or count it lost if the channel is full (or the writer
    /// gone). Never blocks.
    pub fn send(&self, event: FlowEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {
                self.sent.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.lost.fetch_add(1, Relaxed);
            }
        }
    }
}

/// One pipeline's sums of refused attempts on logged attachments for the current interval:
/// [`SOURCES`] sources by a hash of (attachment, source, reason), each slot keeping the first
/// that took it, and one sum per attachment and reason for the sources that found their
/// slot taken. Fixed size: nothing grows under a flood.
#[derive(Debug)]
pub struct Refusals {
    sources: Box<[Option<Refused>]>,
    others: Vec<Refused>,
    hasher: RandomState,
    /// Tracker second the interval started.
    since: u32,
}

impl Refusals {
    /// Empty sums, for an interval starting at tracker second `now`.
    pub fn new(now: u32) -> Self {
        Self {
            sources: vec![None; SOURCES].into_boxed_slice(),
            others: Vec::new(),
            hasher: RandomState::default(),
            since: now,
        }
    }

    /// Count an attempt of `key` refused for `reason` (endpoint meter `meter`) at Unix
    /// second `at`.
    pub fn note(&mut self, key: &FlowKey, meter: u32, reason: DropReason, at: u64) {
        let h = self.hasher.hash_one((key.vpc, key.src, reason.index()));
        let i = usize::try_from(h).unwrap_or(0) % SOURCES;
        let fresh = |src| Refused {
            vpc: key.vpc,
            src,
            dst: key.dst,
            dport: key.dport,
            proto: key.proto,
            meter,
            reason,
            count: 1,
            first: at,
            last: at,
        };
        let slot = &mut self.sources[i];
        match slot {
            None => *slot = Some(fresh(Some(key.src))),
            Some(r) if r.vpc == key.vpc && r.src == Some(key.src) && r.reason == reason => {
                r.count += 1;
                r.last = at;
            }
            Some(_) => {
                // Attachments times endpoint drop reasons at most: bounded.
                match self
                    .others
                    .iter_mut()
                    .find(|r| r.vpc == key.vpc && r.reason == reason)
                {
                    Some(r) => {
                        r.count += 1;
                        r.last = at;
                    }
                    None => self.others.push(fresh(None)),
                }
            }
        }
    }

    /// If the interval that started at `since` is over at tracker second `now`, hand every
    /// sum to `out` and start a new interval.
    pub fn flush_if_due(&mut self, now: u32, interval: u32, mut out: impl FnMut(Refused)) {
        if now.saturating_sub(self.since) < interval {
            return;
        }
        self.since = now;
        for r in self.sources.iter_mut().filter_map(Option::take) {
            out(r);
        }
        for r in self.others.drain(..) {
            out(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::PROTO_UDP;

    fn key(src: u32) -> FlowKey {
        FlowKey {
            src,
            dst: 0x0a00_00c8,
            sport: 1000,
            dport: 80,
            vpc: Attachment(0),
            proto: PROTO_TCP,
        }
    }

    #[test]
    fn end_reasons_follow_the_state() {
        use state::*;
        assert_eq!(
            EndReason::of_expired(PROTO_TCP, ESTABLISHED),
            EndReason::Idle
        );
        let fins = CLOSED | FIN_ORIGINAL | FIN_REPLY;
        assert_eq!(EndReason::of_expired(PROTO_TCP, fins), EndReason::Fin);
        assert_eq!(
            EndReason::of_expired(PROTO_TCP, CLOSED | FIN_ORIGINAL),
            EndReason::Rst
        );
        assert_eq!(EndReason::of_expired(PROTO_UDP, CLOSED), EndReason::Idle);
    }

    #[test]
    fn counters_reports_and_a_full_channel() {
        let (log, rx) = flow_log(FlowLogConfig {
            capacity: 4,
            queue: 1,
            interval_secs: 10,
            epoch_unix: 1_000_000,
        });
        log.begin(2, 5);
        log.count(2, Direction::Original, 1, 60);
        log.count(2, Direction::Reply, 3, 4000);
        log.count(9, Direction::Reply, 3, 4000); // past the capacity: nothing
        assert!(!log.due(2, 14));
        assert!(log.due(2, 15));
        assert!(!log.due(2, 16), "reported at 15");
        let flow = (key(1), Rewrite::back_to(&key(1)), Attachment(1), 7 | LOGGED);
        let r = log.record(2, flow, 20, EndReason::Fin);
        assert_eq!((r.packets, r.bytes), ([1, 3], [60, 4000]));
        assert_eq!((r.start, r.end, r.meter), (1_000_005, 1_000_020, 7));
        log.send(FlowEvent::Flow(r));
        log.send(FlowEvent::Flow(r));
        assert_eq!(log.sent().load(Relaxed), 1);
        assert_eq!(log.lost().load(Relaxed), 1, "the channel holds one");
        assert_eq!(rx.try_recv(), Ok(FlowEvent::Flow(r)));
    }

    #[test]
    fn a_flood_of_sources_makes_a_bounded_number_of_sums() {
        let mut sums = Refusals::new(0);
        for src in 0..100_000 {
            sums.note(&key(src), 3, DropReason::PortNotMapped, 7);
        }
        sums.note(&key(1), 3, DropReason::NotAccepted, 8);
        let mut out = Vec::new();
        sums.flush_if_due(0, 1, |r| out.push(r));
        assert!(out.is_empty(), "the interval is not over");
        sums.flush_if_due(1, 1, |r| out.push(r));
        assert!(out.len() <= SOURCES + 2, "{} sums", out.len());
        let total: u64 = out.iter().map(|r| r.count).sum();
        assert_eq!(total, 100_001, "every attempt is in one sum");
        assert!(out.iter().any(|r| r.src.is_none()));
        let mut again = Vec::new();
        sums.flush_if_due(2, 1, |r| again.push(r));
        assert!(again.is_empty(), "a flush empties the sums");
    }
}
