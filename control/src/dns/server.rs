//! One private DNS resolver: a thread that owns `dns_ip` on one attachment.
//!
//! Frames for the address reach it through a [`PuntSocket`] (ARP for it, IPv4 to it; the
//! workers leave them alone). A userspace TCP/IP stack, smoltcp, answers ARP and runs UDP
//! and TCP port 53 on them, so DNS over TCP is real TCP without the node's kernel owning
//! an address in a tenant's VPC (several VPCs may use the same `dns_ip`). Queries are
//! answered by [`super::answer`] from the live tables; names outside the zone go to the
//! first upstream resolver over a plain UDP socket of the node (with a fresh id each,
//! matched back; SERVFAIL after two seconds without an answer).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dataplane::VpcId;
use dataplane::io::af_packet::Interface;
use dataplane::io::punt::PuntSocket;
use dataplane::tables::TableReader;
use hickory_proto::op::{Message, OpCode, ResponseCode};
use smoltcp::iface::{Config, Interface as Stack, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

use super::{Reply, Zone, answer};

/// Longest wait between two looks at the stop flag and the upstream socket.
const TICK: Duration = Duration::from_millis(10);
/// How long a forwarded query waits for an upstream answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest DNS message taken over TCP.
const MAX_TCP_MESSAGE: usize = 16 * 1024;

/// Where one resolver runs.
#[derive(Debug)]
pub struct Resolver {
    /// The attachment's interface.
    pub iface: Interface,
    /// The attachment.
    pub vpc: VpcId,
    /// The resolver's address in the VPC.
    pub addr: Ipv4Addr,
}

/// smoltcp's view of a punt socket.
struct PuntDevice {
    sock: PuntSocket,
    buf: Vec<u8>,
}

struct Rx<'a>(&'a [u8]);
struct Tx<'a>(&'a PuntSocket);

impl smoltcp::phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; PuntSocket::HEADROOM + len];
        let r = f(&mut frame[PuntSocket::HEADROOM..]);
        if let Err(e) = self.0.send(&mut frame) {
            tracing::debug!(error = %e, "resolver frame not sent");
        }
        r
    }
}

impl Device for PuntDevice {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: SmolInstant) -> Option<(Rx<'_>, Tx<'_>)> {
        match self.sock.recv(&mut self.buf) {
            Ok(Some(n)) => Some((Rx(&self.buf[..n]), Tx(&self.sock))),
            _ => None,
        }
    }

    fn transmit(&mut self, _: SmolInstant) -> Option<Tx<'_>> {
        Some(Tx(&self.sock))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.sock.mtu() + 14;
        caps
    }
}

/// Who asked a forwarded query.
#[derive(Clone, Copy, Debug)]
enum Client {
    Udp(IpEndpoint),
    /// A TCP slot and its connection's generation (a slot serves many connections).
    Tcp(usize, u64),
}

struct Pending {
    client: Client,
    id: u16,
    asked: Instant,
}

struct TcpSlot {
    handle: SocketHandle,
    generation: u64,
    inbox: Vec<u8>,
    /// Queries of this connection waiting for an upstream: not closed before they are
    /// answered.
    forwarded: usize,
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
    upstreams: Vec<SocketAddr>,
    tcp_connections: usize,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let sock = PuntSocket::open(&r.iface, r.addr)?;
    let upstream = if upstreams.is_empty() {
        None
    } else {
        let u = UdpSocket::bind("0.0.0.0:0")?;
        u.set_nonblocking(true)?;
        Some(u)
    };
    tracing::info!(interface = %r.iface.name, addr = %r.addr, upstreams = upstreams.len(), "private DNS resolver up");
    std::thread::Builder::new()
        .name(format!("vpcep-dns-{}", r.iface.name))
        .spawn(move || {
            let mut s = Server::new(sock, &r, tables, zone, upstream, upstreams, tcp_connections);
            while !stop.load(Ordering::Relaxed) {
                s.turn();
            }
        })
}

struct Server {
    dev: PuntDevice,
    stack: Stack,
    sockets: SocketSet<'static>,
    udp: SocketHandle,
    tcp: Vec<TcpSlot>,
    vpc: VpcId,
    tables: TableReader,
    zone: Zone,
    upstream: Option<UdpSocket>,
    upstreams: Vec<SocketAddr>,
    pending: HashMap<u16, Pending>,
    scratch: Vec<u8>,
}

impl Server {
    fn new(
        sock: PuntSocket,
        r: &Resolver,
        tables: TableReader,
        zone: Zone,
        upstream: Option<UdpSocket>,
        upstreams: Vec<SocketAddr>,
        tcp_connections: usize,
    ) -> Self {
        let mac = EthernetAddress(sock.mac().0);
        let mut dev = PuntDevice {
            buf: vec![0u8; 64 * 1024 + PuntSocket::HEADROOM],
            sock,
        };
        let mut cfg = Config::new(mac.into());
        cfg.random_seed = rand::random();
        let mut stack = Stack::new(cfg, &mut dev, SmolInstant::now());
        // Every client of the VPC is on-link here: a /0 prefix, so answers go straight to
        // the asker's MAC (learned from its frames, or by ARP).
        stack.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(r.addr), 0));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let buffer =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 256], vec![0u8; 128 * 1024]);
        let mut u = udp::Socket::new(buffer(), buffer());
        let _ = u.bind(53);
        let udp = sockets.add(u);
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
                }
            })
            .collect();
        Self {
            dev,
            stack,
            sockets,
            udp,
            tcp,
            vpc: r.vpc,
            tables,
            zone,
            upstream,
            upstreams,
            pending: HashMap::new(),
            scratch: vec![0u8; 64 * 1024],
        }
    }

    /// Take what arrived, answer it, and wait a little for more.
    fn turn(&mut self) {
        self.stack
            .poll(SmolInstant::now(), &mut self.dev, &mut self.sockets);
        self.serve_udp();
        self.serve_tcp();
        self.serve_upstream();
        self.stack
            .poll(SmolInstant::now(), &mut self.dev, &mut self.sockets);
        let wait = self
            .stack
            .poll_delay(SmolInstant::now(), &self.sockets)
            .map_or(TICK, |d| Duration::from_micros(d.total_micros()).min(TICK));
        let _ = self.dev.sock.wait(wait);
    }

    fn serve_udp(&mut self) {
        loop {
            let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
            let Ok((n, meta)) = socket.recv_slice(&mut self.scratch) else {
                return;
            };
            let query = self.scratch[..n].to_vec();
            self.handle(&query, Client::Udp(meta.endpoint));
        }
    }

    fn serve_tcp(&mut self) {
        for i in 0..self.tcp.len() {
            let slot = &mut self.tcp[i];
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            if !socket.is_open() {
                // Closed or timed out: serve the next connection.
                slot.inbox.clear();
                slot.forwarded = 0;
                slot.generation += 1;
                let _ = socket.listen(53);
                continue;
            }
            while socket.can_recv() {
                match socket.recv_slice(&mut self.scratch) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => slot.inbox.extend_from_slice(&self.scratch[..n]),
                }
            }
            if slot.inbox.len() > MAX_TCP_MESSAGE + 2 {
                socket.abort();
                continue;
            }
            let mut queries = Vec::new();
            while slot.inbox.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([slot.inbox[0], slot.inbox[1]]));
                if slot.inbox.len() < 2 + len {
                    break;
                }
                queries.push(slot.inbox[2..2 + len].to_vec());
                slot.inbox.drain(..2 + len);
            }
            // The client sent its FIN and everything it asked is answered: close our side.
            if socket.state() == tcp::State::CloseWait
                && socket.send_queue() == 0
                && queries.is_empty()
                && slot.forwarded == 0
            {
                socket.close();
            }
            let generation = slot.generation;
            for q in queries {
                self.handle(&q, Client::Tcp(i, generation));
            }
        }
    }

    fn handle(&mut self, query: &[u8], client: Client) {
        let tables = self.tables.load();
        match answer(query, self.vpc, tables, &self.zone) {
            Reply::Answer(bytes) => self.deliver(client, &bytes),
            Reply::Ignore => {}
            Reply::Forward => self.forward(query.to_vec(), client),
        }
    }

    fn forward(&mut self, mut query: Vec<u8>, client: Client) {
        let (Some(up), Some(first)) = (&self.upstream, self.upstreams.first()) else {
            return;
        };
        if query.len() < 2 || self.pending.len() >= 4096 {
            return;
        }
        let id = u16::from_be_bytes([query[0], query[1]]);
        let mut ours: u16 = rand::random();
        while self.pending.contains_key(&ours) {
            ours = ours.wrapping_add(1);
        }
        query[..2].copy_from_slice(&ours.to_be_bytes());
        if up.send_to(&query, first).is_ok() {
            if let Client::Tcp(i, _) = client
                && let Some(slot) = self.tcp.get_mut(i)
            {
                slot.forwarded += 1;
            }
            self.pending.insert(
                ours,
                Pending {
                    client,
                    id,
                    asked: Instant::now(),
                },
            );
        }
    }

    fn serve_upstream(&mut self) {
        let mut answers = Vec::new();
        if let Some(up) = &self.upstream {
            while let Ok((n, from)) = up.recv_from(&mut self.scratch) {
                if n < 2 || !self.upstreams.contains(&from) {
                    continue;
                }
                let ours = u16::from_be_bytes([self.scratch[0], self.scratch[1]]);
                if let Some(p) = self.pending.remove(&ours) {
                    let mut bytes = self.scratch[..n].to_vec();
                    bytes[..2].copy_from_slice(&p.id.to_be_bytes());
                    answers.push((p.client, bytes));
                }
            }
        }
        // Unanswered in time: SERVFAIL.
        let now = Instant::now();
        let late: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.asked) >= UPSTREAM_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for k in late {
            if let Some(p) = self.pending.remove(&k) {
                let fail = Message::error_msg(p.id, OpCode::Query, ResponseCode::ServFail);
                if let Ok(bytes) = fail.to_vec() {
                    answers.push((p.client, bytes));
                }
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
            Client::Udp(endpoint) => {
                let socket = self.sockets.get_mut::<udp::Socket>(self.udp);
                let _ = socket.send_slice(bytes, endpoint);
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
}
