//! Conntrack replication between the nodes of a cluster: the owner of a VPC streams its
//! flows to the standbys that attach the same VPC, so a standby that takes over carries on
//! the flows of the owner it replaces from their next packet (see docs/cluster.md).
//!
//! Three threads, on with `etcd.replication_listen` and `etcd.replication_key_file`:
//! - **the sender** (`vpcep-repl-tx`) takes the dataplane's events (a flow opened, became
//!   established or replied, ended; [`dataplane::conntrack::replica`]), keeps those of the
//!   VPCs this node owns, and sends them in batches (every [`FLUSH`] or a full datagram)
//!   to every peer, one UDP datagram per batch ([`wire`]). Every [`RESEND`] it sends every
//!   flow of those VPCs again, so a standby that joined late or lost a datagram converges,
//!   and its shadow flows' idle times follow the owner's.
//! - **the receiver** (`vpcep-repl-rx`) checks each datagram (MAC, replay), maps the
//!   sender's attachments to this node's by VPC id, and applies the events of VPCs this
//!   node attaches and does not own to its conntrack: the shadow table is the live table of
//!   a node that does not own the VPC (it gets no packets of it), bounded by the same
//!   capacity and per-VPC shares.
//! - **the peer list** (`vpcep-repl-peers`) reads the member list every second: the peers
//!   are the other live members with a replication address that attach a VPC this node
//!   attaches.
//!
//! What is lost: events in flight when the owner dies (at most [`FLUSH`] of them, plus a
//! datagram lost on the way, which the next resend repairs). A TCP flow opened in that gap
//! is unknown to the new owner: its next segment is answered with a reset, so the client
//! reconnects at once. A flow's close that is lost leaves the shadow flow to its idle
//! timeout.

pub mod wire;

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use dataplane::Attachment;
use dataplane::conntrack::ConnTrack;
use dataplane::conntrack::replica::{self, Applied, MAX_EVENT_BYTES, Replica};

use crate::push::PushStatus;
use crate::store::EtcdStore;
use crate::store::config::HEARTBEAT_MISSES;
use crate::store::owners::Suspects;

/// A batch is sent at most this long after its first event.
pub const FLUSH: Duration = Duration::from_millis(5);
/// Every flow of the owned VPCs is sent again this often.
pub const RESEND: Duration = Duration::from_secs(5);
/// A peer not heard from for this long is forgotten.
const FORGET: Duration = Duration::from_secs(60);
/// The peer list is read this often.
const PEERS_EVERY: Duration = Duration::from_millis(250);

/// What replication needs from the daemon's config.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node's name (the datagrams' sender).
    pub name: String,
    /// Where it receives.
    pub listen: SocketAddr,
    /// The cluster's key.
    pub key: Vec<u8>,
    /// Time between two heartbeats.
    pub heartbeat: Duration,
    /// Where peers that missed their heartbeats are reported (the election).
    pub suspects: Arc<Suspects>,
}

/// When each sender was last heard from, and from which address.
type Heard = Mutex<HashMap<String, (Instant, SocketAddr)>>;

/// The dataplane replication works on now: a reload replaces it
/// ([`Feeds::set`]).
#[derive(Debug)]
pub struct Target {
    /// The attachments' VPC ids, by index.
    pub vpc_ids: Vec<String>,
    /// Its conntrack (weak: a dataplane that stopped is not kept alive).
    pub conntrack: Weak<ConnTrack>,
    /// How many candidates an eviction examines.
    pub eviction_attempts: usize,
}

/// What the dataplane hands the replicator, replaced at each start.
#[derive(Debug, Default)]
pub struct Feeds {
    target: ArcSwapOption<Target>,
    events: Mutex<Option<(Receiver<Replica>, Arc<AtomicU64>)>>,
}

impl Feeds {
    /// A dataplane started: its conntrack, and the receiving end of its events.
    pub fn set(&self, target: Target, events: Receiver<Replica>, lost: Arc<AtomicU64>) {
        self.target.store(Some(Arc::new(target)));
        *self.events.lock().unwrap_or_else(PoisonError::into_inner) = Some((events, lost));
    }

    fn take_events(&self) -> Option<(Receiver<Replica>, Arc<AtomicU64>)> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Start the three threads; they end when `stopping` turns true.
///
/// # Errors
/// The socket does not bind, or a thread does not start.
pub fn start(
    settings: Settings,
    etcd: Arc<EtcdStore>,
    feeds: Arc<Feeds>,
    push: Arc<PushStatus>,
    attached: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    stopping: Arc<AtomicBool>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let socket = UdpSocket::bind(settings.listen)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let socket = Arc::new(socket);
    let peers: Arc<ArcSwap<Vec<SocketAddr>>> = Arc::default();
    let heard: Arc<Heard> = Arc::default();
    let settings = Arc::new(settings);
    let mut threads = Vec::new();
    {
        let (peers, settings, stopping) = (
            Arc::clone(&peers),
            Arc::clone(&settings),
            Arc::clone(&stopping),
        );
        threads.push(
            std::thread::Builder::new()
                .name("vpcep-repl-peers".into())
                .spawn(move || refresh_peers(&etcd, &settings, &peers, &*attached, &stopping))?,
        );
    }
    {
        let sender = Sender {
            settings: Arc::clone(&settings),
            socket: Arc::clone(&socket),
            peers,
            push: Arc::clone(&push),
            heard: Arc::clone(&heard),
            boot: rand::random(),
            seq: 0,
        };
        let (feeds, stopping) = (Arc::clone(&feeds), Arc::clone(&stopping));
        threads.push(
            std::thread::Builder::new()
                .name("vpcep-repl-tx".into())
                .spawn(move || sender.run(&feeds, &stopping))?,
        );
    }
    threads.push(
        std::thread::Builder::new()
            .name("vpcep-repl-rx".into())
            .spawn(move || receive(&settings, &socket, &feeds, &push, &heard, &stopping))?,
    );
    Ok(threads)
}

/// The peer list's thread.
fn refresh_peers(
    etcd: &EtcdStore,
    settings: &Settings,
    peers: &ArcSwap<Vec<SocketAddr>>,
    attached: &(dyn Fn() -> Vec<String> + Send + Sync),
    stopping: &AtomicBool,
) {
    while !stopping.load(Ordering::Relaxed) {
        match crate::store::members::members(etcd) {
            Ok(members) => {
                let mine: BTreeSet<String> = attached().into_iter().collect();
                let list: Vec<SocketAddr> = members
                    .iter()
                    .filter(|m| m.name != settings.name)
                    .filter(|m| m.attachments.iter().any(|v| mine.contains(v)))
                    .filter_map(|m| m.replication.as_deref()?.parse().ok())
                    .collect();
                if **peers.load() != list {
                    tracing::info!(peers = ?list, "replication peers");
                    peers.store(Arc::new(list));
                }
            }
            Err(error) => tracing::debug!(%error, "cannot read the member list; peers kept"),
        }
        sleep_unless(stopping, PEERS_EVERY);
    }
}

fn sleep_unless(stopping: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stopping.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Sender {
    settings: Arc<Settings>,
    socket: Arc<UdpSocket>,
    peers: Arc<ArcSwap<Vec<SocketAddr>>>,
    push: Arc<PushStatus>,
    heard: Arc<Heard>,
    boot: u64,
    seq: u64,
}

impl Sender {
    fn run(mut self, feeds: &Feeds, stopping: &AtomicBool) {
        let mut events: Option<(Receiver<Replica>, Arc<AtomicU64>)> = None;
        let mut reported_lost = 0;
        let mut last_resend = Instant::now();
        let mut batch: Vec<Replica> = Vec::new();
        let mut last_beat = Instant::now();
        while !stopping.load(Ordering::Relaxed) {
            if last_beat.elapsed() >= self.settings.heartbeat {
                last_beat = Instant::now();
                self.beat(feeds);
            }
            if let Some(e) = feeds.take_events() {
                events = Some(e);
                reported_lost = 0;
            }
            let Some((rx, lost)) = &events else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            // Idle until the next heartbeat is due, or the next event.
            let idle = self
                .settings
                .heartbeat
                .saturating_sub(last_beat.elapsed())
                .max(Duration::from_millis(1));
            let first = match rx.recv_timeout(idle) {
                Ok(e) => Some(e),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    events = None;
                    continue;
                }
            };
            if let Some(first) = first {
                batch.push(first);
                // What arrives within FLUSH of the first goes with it.
                let until = Instant::now() + FLUSH;
                while batch.len() < 4096 {
                    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
            }
            let now_lost = lost.load(Ordering::Relaxed);
            if now_lost > reported_lost {
                metrics::counter!("vpcep_replication_events_lost_total")
                    .increment(now_lost - reported_lost);
                reported_lost = now_lost;
            }
            let target = feeds.target.load_full();
            if last_resend.elapsed() >= RESEND {
                last_resend = Instant::now();
                // Only an owner resends (a standby's flows are its owner's to send).
                let owns = self.push.owned_vpcs().is_some_and(|v| !v.is_empty());
                if owns && let Some(ct) = target.as_ref().and_then(|t| t.conntrack.upgrade()) {
                    batch.extend(ct.flows().into_iter().map(Replica::Open));
                }
            }
            if !batch.is_empty() {
                if let Some(t) = &target {
                    self.send(t, &batch);
                }
                batch.clear();
            }
        }
    }

    /// Send the events of `batch` that belong to VPCs this node owns.
    fn send(&mut self, target: &Target, batch: &[Replica]) {
        let peers = self.peers.load();
        let Some(ct) = target.conntrack.upgrade() else {
            return;
        };
        let owned: BTreeSet<String> = self
            .push
            .owned_vpcs()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mine: Vec<bool> = target.vpc_ids.iter().map(|v| owned.contains(v)).collect();
        let owns = |a: Attachment| mine.get(a.index()).copied().unwrap_or(false);
        let now_secs = ct.secs(Instant::now());
        let mut events = Vec::with_capacity(wire::MAX_DATAGRAM);
        let mut count = 0u16;
        let mut header = self.header(target);
        for e in batch {
            let vpc = match e {
                Replica::Open(f) => f.key.vpc,
                Replica::State { key, .. } | Replica::Close(key) => key.vpc,
            };
            if !owns(vpc) {
                continue;
            }
            if header.len() + 2 + events.len() + MAX_EVENT_BYTES + 32 > wire::MAX_DATAGRAM {
                self.flush(&peers, &header, count, &events);
                header = self.header(target);
                events.clear();
                count = 0;
            }
            replica::encode(e, now_secs, &mut events);
            count += 1;
        }
        if count > 0 {
            self.flush(&peers, &header, count, &events);
        }
    }

    fn header(&mut self, target: &Target) -> Vec<u8> {
        self.header_of(target.vpc_ids.clone())
    }

    fn header_of(&mut self, vpcs: Vec<String>) -> Vec<u8> {
        self.seq += 1;
        wire::header_bytes(&wire::Header {
            name: self.settings.name.clone(),
            boot: self.boot,
            seq: self.seq,
            sent_ms: unix_ms(),
            vpcs,
        })
    }

    /// Send a heartbeat (a datagram of no events) to every peer, and report the peers not
    /// heard from for [`HEARTBEAT_MISSES`] heartbeats.
    fn beat(&mut self, _feeds: &Feeds) {
        let peers = self.peers.load();
        let header = self.header_of(Vec::new());
        self.flush(&peers, &header, 0, &[]);
        let dead = self.settings.heartbeat * HEARTBEAT_MISSES;
        let mut heard = self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        // A peer silent this long is gone (it left, or it is a name no longer used).
        heard.retain(|_, (at, _)| at.elapsed() < FORGET);
        for (name, (at, _)) in heard.iter() {
            if at.elapsed() > dead {
                self.settings.suspects.suspect(name);
            }
        }
    }

    fn flush(&self, peers: &[SocketAddr], header: &[u8], count: u16, events: &[u8]) {
        let d = wire::seal(&self.settings.key, header, count, events);
        // The member list's peers, and any node heard from lately (one that just started
        // or attached is heard before the member list says so).
        let mut to: Vec<SocketAddr> = peers.to_vec();
        for (_, from) in self
            .heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            if !to.contains(from) {
                to.push(*from);
            }
        }
        for p in &to {
            match self.socket.send_to(&d, p) {
                Ok(_) => {
                    metrics::counter!("vpcep_replication_datagrams_sent_total").increment(1);
                    metrics::counter!("vpcep_replication_events_sent_total")
                        .increment(u64::from(count));
                }
                Err(error) => {
                    metrics::counter!("vpcep_replication_send_failures_total").increment(1);
                    tracing::debug!(%error, peer = %p, "replication datagram not sent");
                }
            }
        }
    }
}

/// The receiver's thread.
fn receive(
    settings: &Settings,
    socket: &UdpSocket,
    feeds: &Feeds,
    push: &PushStatus,
    heard: &Heard,
    stopping: &AtomicBool,
) {
    let mut guard = wire::ReplayGuard::default();
    let mut buf = vec![0u8; 65536];
    while !stopping.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue; // the read timeout: look at `stopping` again
        };
        let opened = wire::open(&settings.key, &buf[..n])
            .and_then(|o| guard.admit(&o.header, unix_ms()).map(|()| o));
        let o = match opened {
            Ok(o) => o,
            Err(refusal) => {
                metrics::counter!("vpcep_replication_refused_total", "reason" => refusal.name())
                    .increment(1);
                tracing::debug!(%from, reason = refusal.name(), "replication datagram refused");
                continue;
            }
        };
        metrics::counter!("vpcep_replication_datagrams_received_total").increment(1);
        heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(o.header.name.clone(), (Instant::now(), from));
        settings.suspects.heard(&o.header.name);
        if o.count == 0 {
            continue; // a heartbeat
        }
        let Some(target) = feeds.target.load_full() else {
            continue;
        };
        let Some(ct) = target.conntrack.upgrade() else {
            continue;
        };
        apply(&o, &target, &ct, push);
    }
}

/// Apply a datagram's events to `ct`: those of VPCs this node attaches and does not own.
fn apply(o: &wire::Opened<'_>, target: &Target, ct: &ConnTrack, push: &PushStatus) {
    let owned: BTreeSet<String> = push.owned_vpcs().unwrap_or_default().into_iter().collect();
    // The sender's attachment index to this node's, if this node stands by for it.
    let map: Vec<Option<Attachment>> = o
        .header
        .vpcs
        .iter()
        .map(|v| {
            if owned.contains(v) {
                return None;
            }
            let i = target.vpc_ids.iter().position(|mine| mine == v)?;
            u16::try_from(i).ok().map(Attachment)
        })
        .collect();
    let now_secs = ct.secs(Instant::now());
    let mut input = o.events;
    let mut adopted = Vec::new();
    let mut counts = [0u64; 5];
    for _ in 0..o.count {
        let Ok(event) = replica::decode(&mut input) else {
            metrics::counter!("vpcep_replication_refused_total", "reason" => "malformed")
                .increment(1);
            break;
        };
        let [a, b] = event.attachments();
        let (Some(Some(a)), Some(Some(b))) = (map.get(a.index()), map.get(b.index())) else {
            continue;
        };
        let applied = ct.apply_replica(&event, &[*a, *b], now_secs, target.eviction_attempts);
        let i = match applied {
            Applied::Inserted(key) => {
                adopted.push(key);
                0
            }
            Applied::Updated => 1,
            Applied::Closed => 2,
            Applied::Ignored => 3,
            Applied::Refused => 4,
        };
        counts[i] += 1;
    }
    ct.adopted(adopted);
    for (i, outcome) in ["inserted", "updated", "closed", "ignored", "refused"]
        .into_iter()
        .enumerate()
    {
        if counts[i] > 0 {
            metrics::counter!("vpcep_replication_events_applied_total", "outcome" => outcome)
                .increment(counts[i]);
        }
    }
}
