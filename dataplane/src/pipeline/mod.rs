//! The packet path: classify one frame and rewrite it in place.
//!
//! ```text
//!  frame ─► Ethernet ─┬─ ARP ──► request for an endpoint or SNAT address? ─► reply (Emit)
//!                     │          reply to our outstanding request? ─► resolve (Consumed)
//!                     │          anything else (gratuitous, unsolicited) ─► ArpNotForUs;
//!                     │            one contradicting a neighbour has it re-verified
//!                     └─ IPv4 ─► checks: IHL 5, checksum, not a fragment, TCP/UDP, TTL > 1
//!                                   │
//!                       port_security here? (source IP, source MAC) a known port? ─ no ─►
//!                                   │                                        PortSecurity
//!                       conntrack hit? ── yes ─► generation moved? ─► re-check against the
//!                                   │               accepted table (revoke or keep) and
//!                                   │               the backend's MAC (tables or a
//!                                   │               verified neighbour change)
//!                                   │            TCP/UDP state, last seen ─► rewrite ─► Forward
//!                                   no
//!                       endpoint on this attachment? ── no ─► SNAT address? ReplyWithoutFlow
//!                                   │                      else gateway prefix? (gateway.rs)
//!                       TCP SYN only? accepted? port mapped? source whitelisted?
//!                       backend MAC known? (no: ARP request in the frame's place)
//!                       room in the VPC's share and the node? (else evict embryonic,
//!                       node-wide) ─► SNAT port (reply key free)
//!                       ─► insert both directions ─► rewrite ─► Forward
//! ```
//!
//! A TCP flow whose service carries client identity (`tcp_proxy`) gets it after the rewrite,
//! in either direction ([`crate::rewrite::identity`]: the PROXY v2 header and the sequence shift, the
//! TOA option, the SYN-ACK's MSS); [`Pipeline::process_in`] gives the frame room to grow.
//! The miss path lives in `open.rs`.
//!
//! Backends are resolved ahead of traffic ([`Pipeline::solicit`], driven by the worker on
//! every new table generation and once a second), so the ARP request in a packet's place
//! is the exception: a backend that did not answer yet, or one just added.
//!
//! Only a TCP SYN or a UDP datagram sent to an endpoint can open a flow, and only from the
//! endpoint's side: nothing arriving at a SNAT address ever creates state (one-way access).
//!
//! Port security is checked on every packet of an attachment that has it, flows already
//! open included (why: [`crate::tables::ports`]).
//!
//! Isolation between tenants: a VPC's clients hold at most their share of conntrack, and
//! a full table evicts embryonic or unreplied flows of the heaviest VPC first, never an
//! established flow (see [`crate::conntrack`]). ARP from tenants creates no neighbour
//! entries; only the answers to our own requests do (see [`crate::neighbour`]).
//!
//! `process` never allocates on the established path, takes no lock there (conntrack
//! lookups are lock-free; opening a flow takes its two keys' bucket locks in turn), never
//! logs and never reads the clock. Workers call [`Pipeline::prefetch`] on a whole batch
//! first, so the batch's conntrack cache misses overlap.

mod expiry;
mod flow_identity;
mod gateway;
mod metering;
mod neighbour_arp;
mod open;
mod prefetch;
mod recheck;
pub mod service;

pub use prefetch::{PREFETCH_MAX, PREFETCH_MIN_FLOWS};

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use foldhash::fast::RandomState;

use self::flow_identity::{identity_segment, marker_of, reopen, synack_completes};
use self::metering::ip_bytes;
use self::recheck::FlowSides;
use crate::config::Config;
use crate::conntrack::flowlog::{self, EndReason, FlowLog, Refusals};
use crate::conntrack::replica::Replica;
use crate::conntrack::{ConnTrack, Direction, state, tcp_next};
use crate::flow::{Attachment, FlowKey};
use crate::meter::Meters;
use crate::neighbour::Neighbours;
use crate::rewrite::{identity, nat};
use crate::stats::WorkerStats;
use crate::tables::Tables;
use crate::verdict::{DropReason, Verdict};
use crate::wire::ParseError;
use crate::wire::ethernet::{self, EthernetFrame, MacAddr};
use crate::wire::ipv4::{self, Ipv4Packet, PROTO_TCP, PROTO_UDP};
use crate::wire::offload::{L4Checksum, VnetHdr};
use crate::wire::tcp::{self, TcpPacket};
use crate::wire::udp::{self, UdpPacket};

/// How many SNAT addresses a new flow tries, each with `snat_probes` ports.
const SNAT_ADDRESS_TRIES: usize = 4;

/// Most resets one pipeline sends a second ([`crate::rewrite::reset`]): a flood of segments
/// of no flow is dropped past it, not reflected.
pub const RESETS_PER_SEC: u32 = 1000;

/// State shared by every pipeline of a node: the flow table and the neighbour table.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The connection tracker.
    pub conntrack: Arc<ConnTrack>,
    /// The neighbour (ARP) table.
    pub neighbours: Arc<Neighbours>,
}

impl Shared {
    /// Fresh tables sized by `config`, with the tracker's clock starting at `epoch`.
    pub fn new(config: &Config, epoch: Instant) -> Self {
        Self {
            conntrack: Arc::new(ConnTrack::new(config, epoch)),
            neighbours: Arc::new(Neighbours::new(config)),
        }
    }

    /// Shared state around `conntrack` (built with its logs).
    pub fn with_conntrack(config: &Config, conntrack: ConnTrack) -> Self {
        Self {
            conntrack: Arc::new(conntrack),
            neighbours: Arc::new(Neighbours::new(config)),
        }
    }

    /// [`Shared::new`] with a flow log ([`crate::conntrack::flowlog`]) for the attachments
    /// `config.flow_log` names.
    pub fn with_flow_log(config: &Config, epoch: Instant, log: FlowLog) -> Self {
        Self {
            conntrack: Arc::new(ConnTrack::new(config, epoch).with_flow_log(log)),
            neighbours: Arc::new(Neighbours::new(config)),
        }
    }
}

/// Where an admitted flow goes: the backend (or a gateway destination) on attachment
/// `vpc`, at `ip:port`, through the neighbour `hop` (the backend itself, or a router), and
/// what its TCP segments tell the backend about the client (`identity` bits).
#[derive(Clone, Copy)]
struct Destination {
    vpc: Attachment,
    ip: u32,
    port: u16,
    hop: u32,
    identity: u8,
    /// The connection's meter slot.
    meter: u32,
}

/// What the IPv4 checks found: enough to build the flow key and track TCP state.
#[derive(Clone, Copy)]
struct Parsed {
    key: FlowKey,
    flags: u8,
    l4: L4Checksum,
}

/// What [`Pipeline::classify`] decided for a frame: its verdict, or a forward on the
/// attachment whose rewritten segment still owes client identity its bytes
/// ([`identity::apply`], done by [`Pipeline::process_in`], which has the room to grow).
enum Classified {
    Verdict(Verdict),
    Identity(Attachment, identity::Segment),
}

impl From<Verdict> for Classified {
    #[inline(always)]
    fn from(v: Verdict) -> Self {
        Self::Verdict(v)
    }
}

/// One worker's packet processor. Owns its counters and its expiry queue; shares
/// conntrack (with its eviction candidates) and neighbours with the other pipelines.
#[derive(Debug)]
pub struct Pipeline {
    config: Config,
    shared: Shared,
    stats: WorkerStats,
    /// Original keys of flows this pipeline created, oldest first: the expiry sweep. At
    /// most the conntrack capacity long (see `make_expiry_room`).
    expiry: VecDeque<FlowKey>,
    /// Where the next [`Pipeline::solicit`] resumes in the tables' backend list.
    solicit_cursor: usize,
    hasher: RandomState,
    /// The last `now` seen, its value in tracker seconds, and the neighbour table's epoch
    /// then (one conversion and one load per batch).
    clock: (Instant, u32, u64),
    /// Conntrack hashes of the frames [`Pipeline::prefetch`] is warming.
    prefetched: [u64; PREFETCH_MAX],
    /// This pipeline's per-endpoint counters ([`crate::meter`]).
    meters: Arc<Meters>,
    /// The meter word, direction and conntrack record of the flow of the frame last
    /// forwarded, for [`Pipeline::process_in`]'s correction of a super-frame or a grown
    /// frame.
    metered: (u32, Direction, u32),
    /// Per attachment, [`flowlog::LOGGED`] if its clients' flows are logged, else 0.
    log_bits: Box<[u32]>,
    /// Refused attempts on logged attachments, summed for the flow log (`None`: no
    /// attachment is logged).
    refusals: Option<Refusals>,
    /// The second (tracker seconds) and the count of resets sent in it.
    resets: (u32, u32),
}

impl Pipeline {
    /// A pipeline over `shared` with `config`.
    pub fn new(config: Config, shared: Shared) -> Self {
        let clock = (Instant::now(), 0, 0);
        let mut p = Self {
            config,
            shared,
            stats: WorkerStats::default(),
            expiry: VecDeque::new(),
            solicit_cursor: 0,
            hasher: RandomState::default(),
            clock,
            prefetched: [0; PREFETCH_MAX],
            meters: Arc::new(Meters::default()),
            metered: (0, Direction::Original, 0),
            log_bits: Box::default(),
            refusals: None,
            resets: (0, 0),
        };
        if p.shared.conntrack.flow_log().is_some() {
            let logged = |i| p.config.flow_log.get(i).copied().unwrap_or(false);
            p.log_bits = (0..p.config.attachments.len())
                .map(|i| if logged(i) { flowlog::LOGGED } else { 0 })
                .collect();
            if p.log_bits.iter().any(|&b| b != 0) {
                p.refusals = Some(Refusals::new(0));
            }
        }
        p.clock.1 = p.shared.conntrack.secs(p.clock.0);
        p.clock.2 = p.shared.neighbours.epoch();
        p
    }

    /// The counters.
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// This pipeline's per-endpoint counters (its own: it is their only writer).
    pub fn meters(&self) -> Arc<Meters> {
        Arc::clone(&self.meters)
    }

    /// The shared tables.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Keys in this pipeline's expiry queue (live flows it opened, and keys of flows
    /// removed otherwise that the sweep has not reached yet). Never above the conntrack
    /// capacity.
    pub fn expiry_len(&self) -> usize {
        self.expiry.len()
    }

    #[inline]
    fn secs(&mut self, now: Instant) -> u32 {
        if self.clock.0 != now {
            let epoch = self.shared.neighbours.epoch();
            self.clock = (now, self.shared.conntrack.secs(now), epoch);
        }
        self.clock.1
    }

    /// The generation flows are stamped with and re-checked against: the tables' plus the
    /// neighbour table's epoch (both only grow), so a verified MAC change reaches every
    /// flow to that neighbour on its next packet from the next batch on, as a table change
    /// does. Valid after [`Pipeline::secs`] for this batch.
    #[inline]
    fn generation(&self, tables: &Tables) -> u64 {
        tables.generation().wrapping_add(self.clock.2)
    }

    /// Classify `frame`, received on attachment `ingress`, and rewrite it in place.
    ///
    /// Never allocates on the established path, takes no lock there, logs or reads the
    /// clock.
    pub fn process(
        &mut self,
        now: Instant,
        tables: &Tables,
        ingress: Attachment,
        frame: &mut [u8],
    ) -> Verdict {
        self.process_offloaded(now, tables, ingress, frame, VnetHdr::NONE)
    }

    /// [`Pipeline::process`] for a frame with offload metadata `vnet` (from its vnet
    /// header). A partial checksum must start at the transport header and point at its
    /// checksum field, or the frame is `Malformed`; it is patched for the address change
    /// only and leaves partial. A GSO super-frame is one frame here: its headers are
    /// checked and rewritten once, its payload never read; the backend sends it on with the
    /// same metadata.
    ///
    /// The frame cannot grow here: a segment of a flow with client identity that must
    /// (see [`crate::rewrite::identity`]) is dropped as `identity_no_room`. Use
    /// [`Pipeline::process_in`] with a buffer that has room.
    pub fn process_offloaded(
        &mut self,
        now: Instant,
        tables: &Tables,
        ingress: Attachment,
        frame: &mut [u8],
        vnet: VnetHdr,
    ) -> Verdict {
        let len = frame.len();
        let mut vnet = vnet;
        self.process_in(now, tables, ingress, frame, len, &mut vnet)
            .0
    }

    /// [`Pipeline::process_offloaded`] for the frame in `buf[..len]`, where the rest of
    /// `buf` is room for it to grow (client identity, [`crate::rewrite::identity`]). Returns the
    /// verdict and the frame's length after processing (changed only for a forwarded
    /// frame), and updates `vnet` for the frame sent on.
    pub fn process_in(
        &mut self,
        now: Instant,
        tables: &Tables,
        ingress: Attachment,
        buf: &mut [u8],
        len: usize,
        vnet: &mut VnetHdr,
    ) -> (Verdict, usize) {
        self.stats.rx_frames += 1;
        let l4 = vnet.l4_checksum();
        let (verdict, out_len) = match self.classify(now, tables, ingress, &mut buf[..len], l4) {
            Classified::Verdict(v) => (v, len),
            // Only flows with client identity: the common path is one test.
            Classified::Identity(out, seg) => {
                match self.apply_identity(tables, buf, len, l4, vnet, &seg) {
                    Ok(n) => {
                        // Grown by the identity: metered as it was (a super-frame is
                        // metered again whole below).
                        if n != len && !vnet.is_gso() {
                            self.meter_again(&buf[..n], len, *vnet);
                        }
                        (Verdict::Forward(out), n)
                    }
                    Err(reason) => (Verdict::Drop(reason), len),
                }
            }
        };
        match verdict {
            Verdict::Drop(reason) => self.stats.drop(reason),
            Verdict::Forward(_) => {
                self.stats.forwarded += 1;
                if vnet.is_gso() {
                    self.stats.forwarded_super_frames += 1;
                    // Metered as one plain frame where it was classified.
                    self.meter_again(&buf[..out_len], len, *vnet);
                }
                if l4 != L4Checksum::Complete {
                    self.stats.forwarded_partial_csum += 1;
                }
            }
            Verdict::Emit { .. } | Verdict::Consumed => {}
        }
        (verdict, out_len)
    }

    /// Give the rewritten frame of `seg`'s flow its client identity; its new length.
    #[cold]
    #[inline(never)]
    fn apply_identity(
        &mut self,
        tables: &Tables,
        buf: &mut [u8],
        len: usize,
        l4: L4Checksum,
        vnet: &mut VnetHdr,
        seg: &identity::Segment,
    ) -> Result<usize, DropReason> {
        let marker_id = || marker_of(tables, seg);
        identity::apply(buf, len, l4, vnet, seg, marker_id, &mut self.stats)
    }

    #[inline(always)]
    fn classify(
        &mut self,
        now: Instant,
        tables: &Tables,
        ingress: Attachment,
        frame: &mut [u8],
        l4: L4Checksum,
    ) -> Classified {
        let Some(&my_mac) = self.config.attachments.get(ingress.index()) else {
            return Verdict::Drop(DropReason::NotForUs).into();
        };
        let Ok(eth) = EthernetFrame::new_checked(&*frame) else {
            return Verdict::Drop(DropReason::Malformed).into();
        };
        let dst_mac = eth.dst();
        if eth.src().is_multicast() {
            // Multicast and broadcast (all ones has the group bit) are never a source.
            return Verdict::Drop(DropReason::SourceMac).into();
        }
        match eth.ethertype() {
            ethernet::ETHERTYPE_IPV4 if dst_mac == my_mac => {
                match check_ipv4(ingress, frame, l4) {
                    // TTL of 1 or less: forwarding would expire it.
                    Ok((_, ttl)) if ttl <= 1 => Verdict::Drop(DropReason::TtlExceeded).into(),
                    Ok((parsed, _)) => self.ipv4(now, tables, ingress, frame, parsed),
                    Err(reason) => Verdict::Drop(reason).into(),
                }
            }
            ethernet::ETHERTYPE_IPV4 => Verdict::Drop(DropReason::NotForUs).into(),
            ethernet::ETHERTYPE_ARP if dst_mac == my_mac || dst_mac == MacAddr::BROADCAST => {
                let now_secs = self.secs(now);
                self.arp(tables, ingress, my_mac, frame, now_secs).into()
            }
            ethernet::ETHERTYPE_ARP => Verdict::Drop(DropReason::NotForUs).into(),
            _ => Verdict::Drop(DropReason::UnsupportedProtocol).into(),
        }
    }

    #[inline(always)]
    fn ipv4(
        &mut self,
        now: Instant,
        tables: &Tables,
        ingress: Attachment,
        frame: &mut [u8],
        parsed: Parsed,
    ) -> Classified {
        let now_secs = self.secs(now);
        if !admits_port(tables, &parsed.key, frame) {
            // An endpoint's, if sent to one (a spoofed client), else nobody's (slot 0).
            let meter = tables.endpoint_meter((parsed.key.vpc, parsed.key.dst));
            return self.refused(&parsed.key, meter, DropReason::PortSecurity);
        }
        if let Some(v) = self.established(tables, frame, parsed, now_secs) {
            return v;
        }
        match tables.endpoint(ingress, parsed.key.dst) {
            // A standby opens no flow: the owner serves the address (a client that still
            // sends here has a stale neighbour entry, which the owner's announcement fixes).
            Some(_) if !tables.owns(ingress) => Verdict::Drop(DropReason::NoEndpoint).into(),
            Some(endpoint) => self.open(tables, frame, parsed, endpoint, now_secs),
            None if tables.snat().contains_u32(parsed.key.dst) && tables.is_snat_vpc(ingress) => {
                Verdict::Drop(DropReason::ReplyWithoutFlow).into()
            }
            None if tables.is_service_address(ingress, parsed.key.dst) => {
                self.stats.service_frames += 1;
                Verdict::Consumed.into()
            }
            // Nor a gateway flow: the owner is the clients' next hop.
            None if !tables.owns(ingress) => Verdict::Drop(DropReason::NoEndpoint).into(),
            None => self.gateway(tables, frame, parsed, now_secs),
        }
    }

    /// The conntrack-hit path; `None` on a miss.
    #[inline(always)]
    fn established(
        &mut self,
        tables: &Tables,
        frame: &mut [u8],
        Parsed { key, flags, l4 }: Parsed,
        now_secs: u32,
    ) -> Option<Classified> {
        let ct = &*self.shared.conntrack;
        let entry = ct.get(&key)?;
        let generation = self.generation(tables);
        let mut dst_mac = entry.dst_mac;
        if !entry.checked_at(generation) {
            match self.recheck(tables, &key, &entry) {
                Some((mac, meter)) => {
                    entry.set_checked(generation);
                    let was = entry.meter();
                    if was != meter {
                        if meter & !was & flowlog::LOGGED != 0 {
                            // Logged from now on (a flow carried over a restart).
                            ct.log_begin(entry.record_slot(), now_secs);
                        }
                        entry.set_meter(meter);
                    }
                    self.stats.flows_revalidated += 1;
                    match mac {
                        Some(mac) if entry.dir == Direction::Original && mac != entry.dst_mac => {
                            entry.set_dst_mac(mac);
                            dst_mac = mac;
                        }
                        Some(_) if entry.dir == Direction::Original => {}
                        // The flow's check, run by a reply: the other direction's next
                        // hop, which its packets will not check again.
                        Some(mac) => entry.set_backend_mac(mac),
                        None => {}
                    }
                }
                None => {
                    if ct.remove_flow(&key, EndReason::Deleted) {
                        self.stats.flows_revoked += 1;
                    }
                    let meter = entry.meter() & flowlog::SLOT;
                    self.meters.dropped(meter, DropReason::Revoked);
                    return Some(Verdict::Drop(DropReason::Revoked).into());
                }
            }
        }
        let dir = entry.dir;
        let mut identity = entry.identity;
        // Both directions live in one record: the flow's state (on the original direction)
        // is updated in place whichever direction the packet travels.
        if key.proto == PROTO_TCP {
            if dir == Direction::Original {
                let s = entry.state();
                if s != state::ESTABLISHED || flags & (tcp::SYN | tcp::FIN | tcp::RST) != 0 {
                    if s & state::MASK == state::CLOSED && flags & (tcp::SYN | tcp::ACK) == tcp::SYN
                    {
                        identity = reopen(tables, &key, &entry, frame);
                    }
                    let now = entry.update_state(|s| tcp_next(s, Direction::Original, flags));
                    if state::evictable(now) != state::evictable(s) {
                        ct.replicate(|| Replica::State { key, state: now });
                    }
                }
            } else if flags & (tcp::SYN | tcp::FIN | tcp::RST) != 0
                && (identity == 0 || synack_completes(&entry, flags, frame))
            {
                let s = entry.flow_state();
                let now = entry.update_flow_state(|s| tcp_next(s, Direction::Reply, flags));
                if state::evictable(now) != state::evictable(s) {
                    ct.replicate(|| Replica::State {
                        key: entry.peer_key(key.proto),
                        state: now,
                    });
                }
            }
        } else if dir == Direction::Reply && entry.state() & state::SEEN == 0 {
            entry.update_state(|s| s | state::SEEN);
            let now = entry.update_flow_state(|s| {
                if s & state::MASK == state::UDP_UNREPLIED {
                    state::UDP_REPLIED
                } else {
                    s
                }
            });
            ct.replicate(|| Replica::State {
                key: entry.peer_key(key.proto),
                state: now,
            });
        }
        entry.touch(now_secs);
        let rw = entry.rewrite;
        let out = entry.out_vpc;
        let src_mac = self.attachment_mac(out);
        nat::rewrite(frame, key.proto, l4, &rw, src_mac, dst_mac);
        if dir == Direction::Reply {
            self.stats.forwarded_reply += 1;
        }
        let word = entry.meter();
        let bytes = ip_bytes(frame);
        // The meters take the word modulo their slots: the log bit falls away.
        self.meters
            .packet(word, dir, 1, bytes, flags & tcp::RST != 0);
        if word & flowlog::LOGGED != 0 {
            ct.log_packet(entry.record_slot(), dir, 1, bytes);
        }
        self.metered = (word, dir, entry.record_slot());
        if identity != 0 && key.proto == PROTO_TCP {
            let seg = identity_segment(&key, &entry, identity, flags, frame);
            return Some(Classified::Identity(out, seg));
        }
        Some(Verdict::Forward(out).into())
    }

    /// The MAC of attachment `vpc` (the source of the frames the node sends there).
    #[inline]
    fn attachment_mac(&self, vpc: Attachment) -> MacAddr {
        self.config
            .attachments
            .get(vpc.index())
            .copied()
            .unwrap_or_default()
    }

    /// [`flowlog::LOGGED`] if the flows of `vpc`'s clients are logged, else 0.
    #[inline]
    fn log_bit(&self, vpc: Attachment) -> u32 {
        self.log_bits.get(vpc.index()).copied().unwrap_or(0)
    }

    /// Credit a refused attempt of `key` to endpoint meter `meter`, and to the flow log's
    /// sums if `key`'s attachment is logged. The refused verdict.
    #[cold]
    fn refused(&mut self, key: &FlowKey, meter: u32, reason: DropReason) -> Classified {
        self.meters.dropped(meter, reason);
        if self.log_bit(key.vpc) != 0
            && let (Some(sums), Some(log)) = (&mut self.refusals, self.shared.conntrack.flow_log())
        {
            sums.note(key, meter, reason, log.unix(self.clock.1));
        }
        Verdict::Drop(reason).into()
    }

    /// Count a frame dropped before processing (e.g. `Oversize`); returns its verdict.
    pub fn record_drop(&mut self, reason: DropReason) -> Verdict {
        self.stats.rx_frames += 1;
        self.stats.drop(reason);
        Verdict::Drop(reason)
    }

    /// Count gratuitous ARP frames sent for an announcement.
    pub fn record_announced(&mut self, n: usize) {
        self.stats.arp_announced += n as u64;
    }

    /// Count frames the backend failed to transmit.
    pub fn record_tx_errors(&mut self, n: usize) {
        self.stats.tx_errors += n as u64;
    }

    /// Count what the backend counted: frames the kernel dropped before the worker read
    /// them, and what its spins found and cost.
    pub fn record_io(&mut self, io: crate::io::IoStats) {
        self.stats.rx_queue_drops += io.queue_drops;
        self.stats.spin_hits += io.spin.hits;
        self.stats.spin_misses += io.spin.misses;
        self.stats.spin_wasted_us += u64::try_from(io.spin.wasted.as_micros()).unwrap_or(u64::MAX);
    }
}

/// Every check on the IPv4 and transport headers but the TTL (the rewrite relies on them;
/// the service frames of [`service`] too); the packet and its TTL.
#[inline(always)]
fn check_ipv4(
    ingress: Attachment,
    frame: &[u8],
    l4: L4Checksum,
) -> Result<(Parsed, u8), DropReason> {
    let ip = Ipv4Packet::new_checked(&frame[ethernet::HEADER_LEN..])
        .map_err(|_| DropReason::Malformed)?;
    if ip.header_len() != ipv4::MIN_HEADER_LEN {
        return Err(DropReason::IpOptions);
    }
    if !ip.verify_checksum() {
        return Err(DropReason::Malformed);
    }
    if ip.is_fragment() {
        return Err(DropReason::Fragment);
    }
    let proto = ip.protocol();
    let (sport, dport, flags) = match proto {
        PROTO_TCP => {
            let t = TcpPacket::new_checked(ip.payload()).map_err(malformed)?;
            (t.src_port(), t.dst_port(), t.flags())
        }
        PROTO_UDP => {
            let u = UdpPacket::new_checked(ip.payload()).map_err(malformed)?;
            (u.src_port(), u.dst_port(), 0)
        }
        _ => return Err(DropReason::UnsupportedProtocol),
    };
    if let L4Checksum::Partial { start, offset } = l4 {
        let field = if proto == PROTO_TCP {
            tcp::CHECKSUM_OFFSET
        } else {
            udp::CHECKSUM_OFFSET
        };
        if usize::from(start) != ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN
            || usize::from(offset) != field
        {
            return Err(DropReason::Malformed);
        }
    }
    let key = FlowKey {
        src: ip.src_u32(),
        dst: ip.dst_u32(),
        sport,
        dport,
        vpc: ingress,
        proto,
    };
    Ok((Parsed { key, flags, l4 }, ip.ttl()))
}

/// Port security: true if the attachment of `key` has it off, or the packet's source address
/// and source MAC (from `frame`, already checked as Ethernet) are one known port's.
#[inline(always)]
fn admits_port(tables: &Tables, key: &FlowKey, frame: &[u8]) -> bool {
    tables.port_security(key.vpc).is_none_or(|ports| {
        let mac = EthernetFrame::new_unchecked(frame).src();
        ports.admits(key.src, mac)
    })
}

/// The sequence number of a frame the checks found TCP (IPv4 without options).
pub(super) fn tcp_seq(frame: &[u8]) -> u32 {
    TcpPacket::new_unchecked(&frame[ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN..]).seq()
}

fn malformed(_: ParseError) -> DropReason {
    DropReason::Malformed
}
