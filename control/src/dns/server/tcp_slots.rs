//! DNS over TCP: the connection slots (one smoltcp socket each, reused connection after
//! connection), the per-client share of them, and reading length-prefixed queries.

use std::net::Ipv4Addr;
use std::time::Instant;

use dataplane::Tables;
use dataplane::pipeline::service::Sender;
use dataplane::wire::ethernet::MacAddr;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::{Client, MAX_TCP_MESSAGE, State, TCP_IDLE};

/// One DNS-over-TCP connection slot.
pub(super) struct TcpSlot {
    pub(super) handle: SocketHandle,
    pub(super) generation: u64,
    pub(super) inbox: Vec<u8>,
    /// Queries of this connection waiting for an upstream: not closed before they are
    /// answered.
    pub(super) forwarded: usize,
    /// The connection's client (address, MAC), once it is open.
    pub(super) client: Option<Sender>,
    /// When the connection is closed unless it completes a query first.
    pub(super) deadline: Option<Instant>,
}

impl State {
    /// True if a SYN from `from` (port `sport`) may open a connection: it is a
    /// retransmission of one already open, or its client (by address or by MAC) holds
    /// fewer than `tcp_connections_per_client`.
    pub(super) fn tcp_admits(&mut self, from: Sender, sport: u16) -> bool {
        let same = |c: &Sender| c.ip == from.ip || c.mac == from.mac;
        let mut held = 0;
        for slot in &self.tcp {
            let socket = self.sockets.get::<tcp::Socket>(slot.handle);
            if socket.remote_endpoint() == Some(IpEndpoint::new(from.ip.into(), sport)) {
                return true;
            }
            held += usize::from(slot.client.as_ref().is_some_and(same));
        }
        held += self.syns.iter().filter(|(c, _)| same(c)).count();
        if held >= self.tcp_per_client {
            return false;
        }
        self.syns.push((from, sport));
        true
    }

    pub(super) fn serve_tcp(&mut self, tables: &Tables, now: Instant) {
        for i in 0..self.tcp.len() {
            let slot = &mut self.tcp[i];
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            if !socket.is_open() || socket.state() == tcp::State::Listen {
                if socket.state() != tcp::State::Listen {
                    // Closed or timed out: serve the next connection.
                    slot.inbox.clear();
                    slot.forwarded = 0;
                    slot.generation += 1;
                    let _ = socket.listen(53);
                }
                slot.client = None;
                slot.deadline = None;
                continue;
            }
            if slot.client.is_none()
                && let Some(IpEndpoint {
                    addr: IpAddress::Ipv4(ip),
                    ..
                }) = socket.remote_endpoint()
            {
                let mac = self.tcp_macs.get(&ip).copied().unwrap_or_default();
                slot.client = Some(Sender { ip, mac });
                slot.deadline = Some(now + TCP_IDLE);
            }
            if slot.deadline.is_some_and(|d| now >= d) {
                socket.abort();
                self.counters.tcp_idle.increment(1);
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
            let client = slot.client.unwrap_or(Sender {
                ip: Ipv4Addr::UNSPECIFIED,
                mac: MacAddr::default(),
            });
            let who = client.ip;
            for q in queries {
                if !self.rates.allow((client.ip, client.mac), now) {
                    self.counters.rate_limited.increment(1);
                    self.penalise(client.mac, now);
                    continue;
                }
                self.counters.tcp.increment(1);
                if self.handle(tables, &q, Client::Tcp(i, generation), who, now) {
                    self.tcp[i].deadline = Some(now + TCP_IDLE);
                }
            }
        }
    }
}
