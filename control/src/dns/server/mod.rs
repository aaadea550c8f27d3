//! One private DNS resolver: a thread that owns `dns_ip` on one attachment.
//!
//! Frames for the address reach it through a [`PuntSocket`] (ARP for it, IPv4 to it; the
//! workers leave them alone). Every frame first passes the workers' own source checks
//! ([`check_service_frame`]: headers, a unicast source MAC, port security, the VPC's
//! subnets) against the live tables; what fails is counted by reason and dropped, so a
//! forged or unregistered source is never answered (no reflection) and teaches nothing.
//! What passes names a verified sender, (address, MAC), and every answer goes to the MAC
//! its question came from; the resolver never resolves a neighbour:
//! - ARP requests are answered here, to the verified sender;
//! - UDP queries are answered here too, outside any queue: each answer is built and sent
//!   at once to its asker's MAC, so no answer can wait for (or block behind) another;
//! - DNS over TCP runs on a userspace TCP/IP stack, smoltcp, so it is real TCP without the
//!   node's kernel owning an address in a tenant's VPC (several VPCs may use the same
//!   `dns_ip`). smoltcp never sees a tenant's ARP: its neighbour cache is filled only with
//!   the verified sender of each TCP segment handed to it (a synthetic ARP reply just
//!   before the segment), and the ARP requests it would send for anyone else are dropped.
//!
//! Queries are answered by [`super::answer`] from the live tables; names outside the zone
//! go to the first upstream resolver, each from a UDP socket of its own (a random source
//! port per query, connected to the upstream, so only it can answer), under a fresh
//! random id; an answer is taken only with that id and the question asked (else it is
//! counted and ignored); SERVFAIL after two seconds without one.
//!
//! Bounds, per resolver (a VPC): at most [`CLIENT_QUERIES_PER_SEC`] frames (and TCP
//! queries) a second from one client, the kernel dropping its frames for [`PENALTY`] past
//! it; at most `[dns] tcp_connections` DNS-over-TCP connections and
//! `tcp_connections_per_client` of them from one client (by address or by MAC), each closed
//! after [`TCP_IDLE`] without a whole query however many bytes trickle in; at most
//! [`MAX_PENDING`] forwarded queries in flight, [`PENDING_PER_CLIENT`] of them one
//! client's. Each refusal moves `vpcep_dns_dropped_total{reason}`.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dataplane::io::af_packet::Interface;
use dataplane::io::punt::{MAX_BLOCKED, PuntSocket};
use dataplane::pipeline::service::{Sender, ServiceFrame, arp_reply, check_service_frame};
use dataplane::tables::TableReader;
use dataplane::wire::checksum;
use dataplane::wire::ethernet::{self, MacAddr};
use dataplane::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use dataplane::{Attachment, DropReason, Tables};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use metrics::Counter;
use smoltcp::iface::{Config, Interface as Stack, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

mod device;
mod rates;
mod tcp_slots;

use self::device::PuntDevice;
pub use self::rates::CLIENT_QUERIES_PER_SEC;
use self::rates::Rates;
use self::tcp_slots::TcpSlot;
use super::{Reply, Zone, answer};
use crate::config::DnsConfig;

/// Longest wait between two looks at the stop flag and the upstream sockets.
const TICK: Duration = Duration::from_millis(10);
/// How long a forwarded query waits for an upstream answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest DNS message taken over TCP.
const MAX_TCP_MESSAGE: usize = 16 * 1024;
/// Frames taken from the socket per turn before the TCP stack runs (bounded work per
/// wakeup; the rest wait in the socket).
const FRAMES_PER_TURN: usize = 256;
/// A DNS-over-TCP connection is closed when it has completed no query for this long since
/// it opened or since its last query (`tcp_idle`): a byte now and then does not keep it.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Forwarded queries in flight per resolver, each holding a socket of its own.
pub const MAX_PENDING: usize = 256;
/// Forwarded queries in flight from one client address.
pub const PENDING_PER_CLIENT: usize = 32;
/// How long the kernel drops the frames of a client that went past its rate (by source
/// MAC, in the socket's filter), so a flood costs the resolver nothing and cannot fill the
/// queue the other clients' frames wait in.
pub const PENALTY: Duration = Duration::from_secs(1);
/// Verified (address, MAC) pairs of TCP clients remembered (for the per-client count).
const MAX_TCP_CLIENTS: usize = 4096;

/// Where one resolver runs.
#[derive(Debug)]
pub struct Resolver {
    /// The attachment's interface.
    pub iface: Interface,
    /// The attachment.
    pub vpc: Attachment,
    /// The resolver's address in the VPC.
    pub addr: Ipv4Addr,
}

/// Who asked a query.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// Over UDP: the verified sender and its port.
    Udp(Sender, u16),
    /// A TCP slot and its connection's generation (a slot serves many connections).
    Tcp(usize, u64),
}

/// A forwarded query waiting for its upstream answer.
struct Pending {
    client: Client,
    /// The asker's address (its share of the table).
    who: Ipv4Addr,
    /// The client's id, restored in the answer.
    id: u16,
    /// The id the upstream saw.
    ours: u16,
    /// The question the answer must carry.
    queries: Vec<hickory_proto::op::Query>,
    /// This query's own socket (its own random port), connected to the upstream.
    socket: UdpSocket,
    asked: Instant,
}

/// The resolver's counters (`vpcep_dns_*`), registered once.
struct Counters {
    /// `vpcep_dns_queries_total{transport}`: queries taken (answered, or forwarded).
    udp: Counter,
    tcp: Counter,
    /// `vpcep_dns_dropped_total{reason}` for the source checks' reasons.
    checks: [Counter; DropReason::COUNT],
    rate_limited: Counter,
    tcp_client_limit: Counter,
    tcp_idle: Counter,
    pending_full: Counter,
    upstream_mismatch: Counter,
    not_dns: Counter,
    bad_checksum: Counter,
    too_large: Counter,
    queue_full: Counter,
    /// `vpcep_dns_penalties_total`: a client past its rate had its frames dropped by the
    /// kernel for [`PENALTY`].
    penalties: Counter,
}

fn dropped(reason: &'static str) -> Counter {
    metrics::counter!("vpcep_dns_dropped_total", "reason" => reason)
}

impl Counters {
    fn new() -> Self {
        Self {
            udp: metrics::counter!("vpcep_dns_queries_total", "transport" => "udp"),
            tcp: metrics::counter!("vpcep_dns_queries_total", "transport" => "tcp"),
            checks: DropReason::ALL.map(|r| dropped(r.name())),
            rate_limited: dropped("rate_limited"),
            tcp_client_limit: dropped("tcp_client_limit"),
            tcp_idle: dropped("tcp_idle"),
            pending_full: dropped("pending_full"),
            upstream_mismatch: dropped("upstream_mismatch"),
            not_dns: dropped("not_dns"),
            bad_checksum: dropped("bad_checksum"),
            too_large: dropped("too_large"),
            queue_full: dropped("queue_full"),
            penalties: metrics::counter!("vpcep_dns_penalties_total"),
        }
    }
}

/// Open the resolver's socket now (so a bad interface fails the start), and serve from a
/// thread until `stop`.
///
/// # Errors
/// The socket could not be opened, or the thread not spawned.
pub fn spawn(
    r: Resolver,
    tables: TableReader,
    zone: Zone,
    dns: &DnsConfig,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let sock = PuntSocket::open(&r.iface, r.addr)?;
    let upstream = dns.upstreams.first().copied();
    let (tcp_connections, tcp_per_client) = (dns.tcp_connections, dns.tcp_connections_per_client);
    tracing::info!(interface = %r.iface.name, addr = %r.addr, upstreams = dns.upstreams.len(), "private DNS resolver up");
    std::thread::Builder::new()
        .name(format!("vpcep-dns-{}", r.iface.name))
        .spawn(move || {
            let mut s = Server {
                tables,
                state: State::new(sock, &r, zone, upstream, tcp_connections, tcp_per_client),
            };
            while !stop.load(Ordering::Relaxed) {
                s.turn();
            }
        })
}

/// The tables apart from the rest, so one snapshot can be borrowed for a whole turn.
struct Server {
    tables: TableReader,
    state: State,
}

struct State {
    dev: PuntDevice,
    stack: Stack,
    sockets: SocketSet<'static>,
    tcp: Vec<TcpSlot>,
    tcp_per_client: usize,
    /// The last verified MAC of each TCP client address (for the per-client count).
    tcp_macs: HashMap<Ipv4Addr, MacAddr>,
    /// SYNs let through this turn, not yet in a slot: (client, port).
    syns: Vec<(Sender, u16)>,
    vpc: Attachment,
    addr: Ipv4Addr,
    mac: MacAddr,
    zone: Zone,
    upstream: Option<SocketAddr>,
    pending: Vec<Pending>,
    rates: Rates,
    /// Source MACs the kernel drops for now (clients past their rate), and until when.
    blocked: Vec<(MacAddr, Instant)>,
    counters: Counters,
    frame: Vec<u8>,
    scratch: Vec<u8>,
}

impl Server {
    /// Take what arrived, answer it, and wait a little for more.
    fn turn(&mut self) {
        let tables = self.tables.load();
        let s = &mut self.state;
        let now = Instant::now();
        s.take_frames(tables, now);
        s.stack.poll(SmolInstant::now(), &mut s.dev, &mut s.sockets);
        s.serve_tcp(tables, now);
        s.serve_upstream(now);
        s.stack.poll(SmolInstant::now(), &mut s.dev, &mut s.sockets);
        let wait = s
            .stack
            .poll_delay(SmolInstant::now(), &s.sockets)
            .map_or(TICK, |d| Duration::from_micros(d.total_micros()).min(TICK));
        let _ = s.dev.sock.wait(wait);
    }
}

impl State {
    fn new(
        sock: PuntSocket,
        r: &Resolver,
        zone: Zone,
        upstream: Option<SocketAddr>,
        tcp_connections: usize,
        tcp_per_client: usize,
    ) -> Self {
        let mac = sock.mac();
        let mut dev = PuntDevice {
            sock,
            rx: VecDeque::new(),
        };
        let mut cfg = Config::new(EthernetAddress(mac.0).into());
        cfg.random_seed = rand::random();
        let mut stack = Stack::new(cfg, &mut dev, SmolInstant::now());
        // Every client of the VPC is on-link here: a /0 prefix, so answers go straight to
        // the asker's MAC (the verified one the resolver handed smoltcp).
        stack.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(r.addr), 0));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let tcp = (0..tcp_connections)
            .map(|_| {
                let mut t = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0u8; MAX_TCP_MESSAGE + 2]),
                    tcp::SocketBuffer::new(vec![0u8; MAX_TCP_MESSAGE + 2]),
                );
                t.set_timeout(Some(smoltcp::time::Duration::from_secs(10)));
                let _ = t.listen(53);
                TcpSlot {
                    handle: sockets.add(t),
                    generation: 0,
                    inbox: Vec::new(),
                    forwarded: 0,
                    client: None,
                    deadline: None,
                }
            })
            .collect();
        Self {
            dev,
            stack,
            sockets,
            tcp,
            tcp_per_client,
            tcp_macs: HashMap::new(),
            syns: Vec::new(),
            vpc: r.vpc,
            addr: r.addr,
            mac,
            zone,
            upstream,
            pending: Vec::new(),
            rates: Rates::default(),
            blocked: Vec::new(),
            counters: Counters::new(),
            frame: vec![0u8; 64 * 1024 + PuntSocket::HEADROOM],
            scratch: vec![0u8; 64 * 1024],
        }
    }

    /// Read up to [`FRAMES_PER_TURN`] frames: check each, answer ARP and UDP at once, and
    /// queue TCP for smoltcp behind its sender's synthetic ARP reply.
    fn take_frames(&mut self, tables: &Tables, now: Instant) {
        self.syns.clear();
        if self.blocked.iter().any(|(_, until)| now >= *until) {
            self.blocked.retain(|(_, until)| now < *until);
            self.refilter();
        }
        self.counters
            .queue_full
            .increment(self.dev.sock.take_drops());
        for _ in 0..FRAMES_PER_TURN {
            let mut frame = std::mem::take(&mut self.frame);
            let Ok(Some(n)) = self.dev.sock.recv(&mut frame) else {
                self.frame = frame;
                return;
            };
            self.take_frame(tables, &frame[..n], now);
            self.frame = frame;
        }
    }

    fn take_frame(&mut self, tables: &Tables, frame: &[u8], now: Instant) {
        let checked = check_service_frame(tables, self.vpc, (self.mac, self.addr), frame);
        // Every frame a client sends counts against its rate: ARP, UDP queries, TCP segments
        // (and a TCP query once more when it is complete).
        let client = match checked {
            Err(reason) => {
                self.counters.checks[reason.index()].increment(1);
                return;
            }
            Ok(ServiceFrame::ArpRequest(from) | ServiceFrame::Ipv4 { from, .. }) => from,
        };
        if !self.rates.allow((client.ip, client.mac), now) {
            self.counters.rate_limited.increment(1);
            self.penalise(client.mac, now);
            return;
        }
        let from = match checked {
            Err(_) => return,
            Ok(ServiceFrame::ArpRequest(from)) => {
                let mut out = [0u8; PuntSocket::HEADROOM + 60];
                let n = arp_reply(&mut out[PuntSocket::HEADROOM..], self.mac, self.addr, from);
                self.send(&mut out[..PuntSocket::HEADROOM + n]);
                return;
            }
            Ok(ServiceFrame::Ipv4 {
                from,
                proto,
                sport,
                dport: 53,
                flags,
            }) => (from, proto, sport, flags),
            Ok(ServiceFrame::Ipv4 { .. }) => {
                self.counters.not_dns.increment(1);
                return;
            }
        };
        match from {
            (from, PROTO_UDP, sport, _) => {
                let Some(query) = udp_payload(frame) else {
                    self.counters.bad_checksum.increment(1);
                    return;
                };
                self.counters.udp.increment(1);
                let query = query.to_vec();
                self.handle(tables, &query, Client::Udp(from, sport), from.ip, now);
            }
            (from, PROTO_TCP, sport, flags) => {
                const SYN: u8 = 0x02;
                const ACK: u8 = 0x10;
                if flags & (SYN | ACK) == SYN && !self.tcp_admits(from, sport) {
                    self.counters.tcp_client_limit.increment(1);
                    return;
                }
                if self.tcp_macs.len() >= MAX_TCP_CLIENTS && !self.tcp_macs.contains_key(&from.ip) {
                    self.tcp_macs.clear();
                }
                self.tcp_macs.insert(from.ip, from.mac);
                // smoltcp's neighbour for this sender: exactly the verified pair, just before
                // its segment (an ARP reply to us: cached, never answered).
                let mut arp = vec![0u8; 60];
                let to_us = Sender {
                    ip: self.addr,
                    mac: self.mac,
                };
                let len = arp_reply(&mut arp, from.mac, from.ip, to_us);
                arp.truncate(len);
                self.dev.rx.push_back(arp);
                self.dev.rx.push_back(frame.to_vec());
            }
            _ => self.counters.checks[DropReason::UnsupportedProtocol.index()].increment(1),
        }
    }

    /// Answer or forward `query`; false if it was no query at all (ignored).
    fn handle(
        &mut self,
        tables: &Tables,
        query: &[u8],
        client: Client,
        who: Ipv4Addr,
        now: Instant,
    ) -> bool {
        match answer(query, self.vpc, tables, &self.zone) {
            Reply::Answer(bytes) => self.deliver(client, &bytes),
            Reply::Ignore => return false,
            Reply::Forward => self.forward(query, client, who, now),
        }
        true
    }

    fn forward(&mut self, query: &[u8], client: Client, who: Ipv4Addr, now: Instant) {
        let Some(upstream) = self.upstream else {
            return;
        };
        let Ok(mut parsed) = Message::from_vec(query) else {
            return;
        };
        let mine = self.pending.iter().filter(|p| p.who == who).count();
        if self.pending.len() >= MAX_PENDING || mine >= PENDING_PER_CLIENT {
            self.counters.pending_full.increment(1);
            return;
        }
        let id = parsed.metadata.id;
        let ours: u16 = rand::random();
        parsed.metadata.id = ours;
        let Ok(bytes) = parsed.to_vec() else {
            return;
        };
        // A socket of its own: the kernel picks a random ephemeral port for it, and the
        // connected socket takes datagrams from the upstream's address and port only.
        let local: SocketAddr = match upstream {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = match UdpSocket::bind(local)
            .and_then(|s| s.connect(upstream).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "no socket for a forwarded query");
                return;
            }
        };
        if socket.send(&bytes).is_err() {
            return;
        }
        if let Client::Tcp(i, _) = client
            && let Some(slot) = self.tcp.get_mut(i)
        {
            slot.forwarded += 1;
        }
        self.pending.push(Pending {
            client,
            who,
            id,
            ours,
            queries: parsed.queries,
            socket,
            asked: now,
        });
    }

    fn serve_upstream(&mut self, now: Instant) {
        let mut answers = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let mut answered = None;
            while let Ok(n) = p.socket.recv(&mut self.scratch) {
                let got = &self.scratch[..n];
                match Message::from_vec(got) {
                    Ok(m)
                        if m.metadata.id == p.ours
                            && m.metadata.message_type == MessageType::Response
                            && m.queries == p.queries =>
                    {
                        let mut bytes = got.to_vec();
                        bytes[..2].copy_from_slice(&p.id.to_be_bytes());
                        answered = Some(bytes);
                        break;
                    }
                    // Another id, another question, or not DNS: not this query's answer.
                    _ => self.counters.upstream_mismatch.increment(1),
                }
            }
            let late = now.duration_since(p.asked) >= UPSTREAM_TIMEOUT;
            if answered.is_none() && !late {
                i += 1;
                continue;
            }
            let p = self.pending.swap_remove(i);
            let bytes = answered.or_else(|| {
                // Unanswered in time: SERVFAIL.
                Message::error_msg(p.id, OpCode::Query, ResponseCode::ServFail)
                    .to_vec()
                    .ok()
            });
            if let Some(bytes) = bytes {
                answers.push((p.client, bytes));
            }
        }
        for (client, bytes) in answers {
            if let Client::Tcp(i, generation) = client
                && let Some(slot) = self.tcp.get_mut(i).filter(|s| s.generation == generation)
            {
                slot.forwarded = slot.forwarded.saturating_sub(1);
            }
            self.deliver(client, &bytes);
        }
    }

    fn deliver(&mut self, client: Client, bytes: &[u8]) {
        match client {
            Client::Udp(to, port) => {
                let room = self.dev.sock.mtu().saturating_sub(20 + 8);
                let truncated;
                let bytes = if bytes.len() > room {
                    // Too long for one datagram: the header and question, with TC set.
                    let Some(t) = truncate(bytes).filter(|t| t.len() <= room) else {
                        self.counters.too_large.increment(1);
                        return;
                    };
                    truncated = t;
                    &truncated
                } else {
                    bytes
                };
                let mut frame = vec![0u8; PuntSocket::HEADROOM];
                let built = etherparse::PacketBuilder::ethernet2(self.mac.0, to.mac.0)
                    .ipv4(self.addr.octets(), to.ip.octets(), 64)
                    .udp(53, port)
                    .write(&mut frame, bytes);
                if built.is_ok() {
                    self.send(&mut frame);
                }
            }
            Client::Tcp(i, generation) => {
                let Some(slot) = self.tcp.get(i).filter(|s| s.generation == generation) else {
                    return; // that connection is gone
                };
                let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
                let Ok(len) = u16::try_from(bytes.len()) else {
                    return;
                };
                let mut framed = Vec::with_capacity(bytes.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(bytes);
                let _ = socket.send_slice(&framed);
            }
        }
    }

    /// A client past its rate: have the kernel drop its frames for [`PENALTY`] (at most
    /// [`MAX_BLOCKED`] clients at once; past that, only the rate limit holds).
    fn penalise(&mut self, mac: MacAddr, now: Instant) {
        if mac == MacAddr::default()
            || self.blocked.len() >= MAX_BLOCKED
            || self.blocked.iter().any(|(m, _)| *m == mac)
        {
            return;
        }
        self.blocked.push((mac, now + PENALTY));
        self.counters.penalties.increment(1);
        self.refilter();
    }

    /// Give the socket's filter the current blocked MACs.
    fn refilter(&self) {
        let macs: Vec<MacAddr> = self.blocked.iter().map(|(m, _)| *m).collect();
        if let Err(e) = self.dev.sock.block(&macs) {
            tracing::warn!(error = %e, "resolver filter not updated");
        }
    }

    /// Send a frame that starts [`PuntSocket::HEADROOM`] bytes into `buf`.
    fn send(&self, buf: &mut [u8]) {
        if let Err(e) = self.dev.sock.send(buf) {
            tracing::debug!(error = %e, "resolver frame not sent");
        }
    }
}

/// The payload of a UDP frame that passed [`check_service_frame`], if its checksum (when
/// it has one) is right.
fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    use dataplane::wire::ipv4::Ipv4Packet;
    use dataplane::wire::udp::{HEADER_LEN, UdpPacket};
    let ip = Ipv4Packet::new_checked(frame.get(ethernet::HEADER_LEN..)?).ok()?;
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    let len = udp.len();
    let start = ethernet::HEADER_LEN + ip.header_len();
    let segment = frame.get(start..start + usize::from(len))?;
    if udp.checksum() != 0 {
        let pseudo = checksum::pseudo_header_sum(ip.src_u32(), ip.dst_u32(), PROTO_UDP, len);
        if checksum::fold(checksum::sum(pseudo, segment)) != 0xffff {
            return None;
        }
    }
    segment.get(HEADER_LEN..)
}

/// `response` cut to its header and question with TC set (RFC 1035 4.2.1: the client asks
/// again over TCP).
fn truncate(response: &[u8]) -> Option<Vec<u8>> {
    let mut m = Message::from_vec(response).ok()?;
    m.answers.clear();
    m.authorities.clear();
    m.additionals.clear();
    m.signature = None;
    m.edns = None;
    m.metadata.truncation = true;
    m.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    #[test]
    fn a_long_answer_is_cut_to_its_question_with_tc() {
        let mut m = Message::response(7, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        let t = Message::from_vec(&truncate(&m.to_vec().unwrap()).unwrap()).unwrap();
        assert!(t.metadata.truncation);
        assert_eq!((t.metadata.id, t.queries.len()), (7, 1));
        assert!(truncate(&[1, 2, 3]).is_none());
    }
}
