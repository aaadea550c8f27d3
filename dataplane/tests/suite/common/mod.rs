//! A small world for pipeline tests: a user VPC A, a provider VPC B with the same CIDR, and
//! a second user VPC C, again with the same CIDR. Frames are built with etherparse.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::tables::sharded::Change;
use dataplane::tables::{AcceptedKey, ClientIdentity, Ipv4Cidr, Target, default_snat_range};
use dataplane::wire::ethernet::MacAddr;
use dataplane::{Attachment, Config, DropReason, Pipeline, Shared, Tables, Verdict, WorkerStats};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

pub const A: Attachment = Attachment(0);
pub const B: Attachment = Attachment(1);
pub const C: Attachment = Attachment(2);
pub const MAC_A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xa0]);
pub const MAC_B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xb0]);
pub const MAC_C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xc0]);
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const BACKEND_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
pub const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 200);
pub const ENDPOINT2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 201);
pub const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
/// The Unix time of the flow log's epoch in [`World::with_flow_log`].
pub const EPOCH_UNIX: u64 = 1_800_000_000;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// Ethernet addresses of a frame from the client to the node on A, and from the backend to
/// the node on B.
pub const TO_EP: (MacAddr, MacAddr) = (CLIENT_MAC, MAC_A);
pub const TO_NODE_B: (MacAddr, MacAddr) = (BACKEND_MAC, MAC_B);

/// The IPv4 bytes of an Ethernet frame.
pub fn ip_len(frame: &[u8]) -> u64 {
    (frame.len() - 14) as u64
}

pub fn target(id: u64, port: u16) -> Target {
    Target {
        connection_id: id,
        marker_id: id,
        backend_vpc: B,
        backend_ip: BACKEND,
        service_port: port,
        whitelist: None,
        identity: ClientIdentity::NONE,
        // Metered under its connection id.
        meter: u32::try_from(id).unwrap_or(0),
    }
}

/// Tables with endpoint 10.0.0.200 in A (TCP 8080 -> 80, UDP 5353 -> 53).
pub fn tables() -> Tables {
    Tables::new(default_snat_range()).with_endpoint(
        A,
        ENDPOINT,
        [(TCP, 8080, target(1, 80)), (UDP, 5353, target(1, 53))],
    )
}

pub fn config(capacity: usize) -> Config {
    Config {
        attachments: vec![MAC_A, MAC_B, MAC_C],
        conntrack_capacity: capacity.try_into().unwrap(),
        ..Config::default()
    }
}

#[allow(missing_debug_implementations)]
pub struct World {
    pub pipeline: Pipeline,
    pub tables: Tables,
    pub now: Instant,
    publisher: dataplane::TablePublisher,
}

impl World {
    pub fn new(tables: Tables) -> Self {
        Self::with_config(tables, config(1024))
    }

    pub fn with_config(tables: Tables, config: Config) -> Self {
        let now = Instant::now();
        Self::with_shared(tables, config, |c| Shared::new(c, now), now)
    }

    /// A world whose attachments `logged` (by index) keep a flow log with reports every
    /// `interval` seconds, its epoch at Unix second [`EPOCH_UNIX`]; and the log's events.
    pub fn with_flow_log(
        tables: Tables,
        logged: &[bool],
        interval: u32,
    ) -> (
        Self,
        std::sync::mpsc::Receiver<dataplane::conntrack::flowlog::FlowEvent>,
    ) {
        let mut config = config(1024);
        config.flow_log = logged.to_vec();
        let (log, events) =
            dataplane::conntrack::flowlog::flow_log(dataplane::conntrack::flowlog::FlowLogConfig {
                capacity: config.conntrack_capacity.get(),
                queue: 4096,
                interval_secs: interval,
                epoch_unix: EPOCH_UNIX,
            });
        let now = Instant::now();
        let w = Self::with_shared(tables, config, |c| Shared::with_flow_log(c, now, log), now);
        (w, events)
    }

    /// A world whose conntrack replicates, and the replication events.
    pub fn with_replica(
        tables: Tables,
    ) -> (
        Self,
        std::sync::mpsc::Receiver<dataplane::conntrack::replica::Replica>,
    ) {
        let (log, events) = dataplane::conntrack::replica::replica_log(4096);
        let now = Instant::now();
        let w = Self::with_shared(
            tables,
            config(1024),
            |c| {
                Shared::with_conntrack(
                    c,
                    dataplane::conntrack::ConnTrack::new(c, now).with_replica(log),
                )
            },
            now,
        );
        (w, events)
    }

    fn with_shared(
        tables: Tables,
        config: Config,
        shared: impl FnOnce(&Config) -> Shared,
        now: Instant,
    ) -> Self {
        let shared = shared(&config);
        shared.neighbours.learn(B, BACKEND.to_bits(), BACKEND_MAC);
        let publisher = dataplane::TablePublisher::new(tables);
        let tables = (*publisher.current()).clone();
        Self {
            pipeline: Pipeline::new(config, shared),
            tables,
            now,
            publisher,
        }
    }

    /// Publish `next` as a new generation, as the control plane's pusher does.
    pub fn publish(&mut self, next: Tables) {
        self.publisher.publish(next);
        self.tables = (*self.publisher.current()).clone();
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    pub fn send(&mut self, ingress: Attachment, frame: &mut [u8]) -> Verdict {
        self.pipeline
            .process(self.now, &self.tables, ingress, frame)
    }

    /// [`World::send`] with room for the frame to grow (client identity), as the worker
    /// gives it: `frame` holds the frame sent on afterwards.
    pub fn send_in(&mut self, ingress: Attachment, frame: &mut Vec<u8>) -> Verdict {
        self.send_offloaded(ingress, frame, dataplane::wire::offload::VnetHdr::NONE)
            .0
    }

    /// [`World::send_in`] for a frame with offload metadata; returns the metadata sent on.
    pub fn send_offloaded(
        &mut self,
        ingress: Attachment,
        frame: &mut Vec<u8>,
        mut vnet: dataplane::wire::offload::VnetHdr,
    ) -> (Verdict, dataplane::wire::offload::VnetHdr) {
        let len = frame.len();
        frame.resize(len + 256, 0);
        let (v, n) =
            self.pipeline
                .process_in(self.now, &self.tables, ingress, frame, len, &mut vnet);
        frame.truncate(n);
        (v, vnet)
    }

    pub fn stats(&self) -> WorkerStats {
        self.pipeline.stats().clone()
    }

    pub fn remove_mapping(&self, vpc: Attachment, ip: Ipv4Addr, proto: u8, port: u16) -> Tables {
        self.tables
            .with_accepted([Change::Remove(AcceptedKey::new(vpc, ip, proto, port))])
    }
}

pub fn whitelist(cidrs: &[&str]) -> Option<Arc<[Ipv4Cidr]>> {
    Some(
        cidrs
            .iter()
            .map(|c| c.parse().unwrap())
            .collect::<Vec<_>>()
            .into(),
    )
}

/// Build an Ethernet/IPv4/TCP frame. `flags`: string of S, A, F, R.
pub fn tcp(
    macs: (MacAddr, MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'F' => b.fin(),
            'R' => b.rst(),
            other => panic!("flag {other}"),
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

pub fn udp(
    macs: (MacAddr, MacAddr),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(macs.0.0, macs.1.0)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// What a test reads off a forwarded frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: (Ipv4Addr, u16),
    pub dst: (Ipv4Addr, u16),
    pub ttl: u8,
    pub payload: Vec<u8>,
}

/// True if `frame` parses as Ethernet/IPv4/TCP-or-UDP with both checksums right.
pub fn checksums_ok(frame: &[u8]) -> bool {
    let Ok(p) = SlicedPacket::from_ethernet(frame) else {
        return false;
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        return false;
    };
    let h = ip.header().to_header();
    if h.calc_header_checksum() != h.header_checksum {
        return false;
    }
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            t.to_header().calc_checksum_ipv4(&h, t.payload()).ok() == Some(t.checksum())
        }
        Some(TransportSlice::Udp(u)) => {
            u.checksum() == 0
                || u.to_header().calc_checksum_ipv4(&h, u.payload()).ok() == Some(u.checksum())
        }
        _ => false,
    }
}

/// Parse a frame, verifying the IPv4 and transport checksums by full recompute.
pub fn seen(frame: &[u8]) -> Seen {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("not ethernet")
    };
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not ipv4")
    };
    let h = ip.header().to_header();
    assert_eq!(h.calc_header_checksum(), h.header_checksum, "IPv4 checksum");
    let (sp, dp, payload) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let sum = t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap();
            assert_eq!(sum, t.checksum(), "TCP checksum");
            (t.source_port(), t.destination_port(), t.payload().to_vec())
        }
        Some(TransportSlice::Udp(u)) => {
            if u.checksum() != 0 {
                let sum = u.to_header().calc_checksum_ipv4(&h, u.payload()).unwrap();
                assert_eq!(sum, u.checksum(), "UDP checksum");
            }
            (u.source_port(), u.destination_port(), u.payload().to_vec())
        }
        other => panic!("transport {other:?}"),
    };
    Seen {
        src_mac: MacAddr(eth.source()),
        dst_mac: MacAddr(eth.destination()),
        src: (h.source.into(), sp),
        dst: (h.destination.into(), dp),
        ttl: h.time_to_live,
        payload,
    }
}

/// Counter deltas between two reads, as (name, delta) for every counter that moved.
pub fn moved(before: &WorkerStats, after: &WorkerStats) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for ((name, a), (_, b)) in before.named().into_iter().zip(after.named()) {
        if a != b {
            out.push((name.to_string(), b - a));
        }
    }
    for reason in DropReason::ALL {
        let (a, b) = (before.dropped(reason), after.dropped(reason));
        if a != b {
            out.push((format!("drop:{}", reason.name()), b - a));
        }
    }
    out.sort();
    out
}

/// Assert exactly these counters moved by exactly these amounts.
#[macro_export]
macro_rules! assert_moved {
    ($before:expr, $after:expr, [$( $name:literal => $n:expr ),* $(,)?]) => {{
        let mut want: Vec<(String, u64)> = vec![$( ($name.to_string(), $n) ),*];
        want.sort();
        assert_eq!($crate::common::moved(&$before, &$after), want);
    }};
}

/// Build an Ethernet/ARP frame: `op` 1 (request) or 2 (reply), from `sender` to `target`
/// (hardware and protocol addresses), sent to `eth_dst`.
pub fn arp(
    op: u16,
    eth_dst: MacAddr,
    sender: (MacAddr, Ipv4Addr),
    target: (MacAddr, Ipv4Addr),
) -> Vec<u8> {
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType};
    let pkt = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::from(op),
        &sender.0.0,
        &sender.1.octets(),
        &target.0.0,
        &target.1.octets(),
    )
    .unwrap();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(sender.0.0, eth_dst.0)
        .arp(pkt)
        .write(&mut out)
        .unwrap();
    out
}

/// What a test reads off an ARP frame: (operation, sender, target).
pub fn seen_arp(frame: &[u8]) -> (u16, (MacAddr, Ipv4Addr), (MacAddr, Ipv4Addr)) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Arp(a)) = p.net else {
        panic!("not ARP: {frame:?}")
    };
    let mac = |b: &[u8]| MacAddr(b.try_into().unwrap());
    let ip = |b: &[u8]| Ipv4Addr::from(<[u8; 4]>::try_from(b).unwrap());
    (
        a.operation().0,
        (mac(a.sender_hw_addr()), ip(a.sender_protocol_addr())),
        (mac(a.target_hw_addr()), ip(a.target_protocol_addr())),
    )
}
