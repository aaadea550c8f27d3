//! The check behind the `process` fuzz target, also replayed by `cargo test` from
//! `dataplane/tests/suite/fuzz_replay.rs`: the pipeline with a populated table, fed a sequence of
//! arbitrary frames (the input is cut into frames at each 0xff 0xfe 0xfd marker; the first
//! byte of each picks the attachment). Nothing may panic, and nothing may leave for a key
//! the accepted table does not allow: every forwarded frame either opens (or belongs to) a
//! flow to an accepted `(attachment, endpoint, protocol, port)` from inside the VPC, or
//! answers one that such a frame opened earlier in the same run; or, from attachment 0 to
//! 100.125.0.0/16 (a gateway endpoint's route, out of attachment 1), opens a gateway flow
//! from inside the VPC to an address of that prefix. Attachment 2 has port
//! security on: nothing from it leaves unless its (source address, source MAC) is a known
//! port's; its endpoint's service carries client identity (TOA and PROXY v2), and frames
//! are processed with room to grow, as the worker does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub,
    dead_code
)]

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use dataplane::tables::{
    AcceptedKey, ClientIdentity, GatewayRoute, GatewayTable, PortSet, Target, default_snat_range,
};
use dataplane::wire::ethernet::{EthernetFrame, MacAddr};
use dataplane::wire::ipv4::{Ipv4Packet, PROTO_TCP};
use dataplane::wire::offload::VnetHdr;
use dataplane::wire::tcp::TcpPacket;
use dataplane::wire::udp::UdpPacket;
use dataplane::{Attachment, Config, Pipeline, Shared, Tables, Verdict};

const A: Attachment = Attachment(0);
const B: Attachment = Attachment(1);
const C: Attachment = Attachment(2);
const MARK: &[u8] = &[0xff, 0xfe, 0xfd];

/// (vpc, src, dst, sport, dport, proto) of an IPv4 TCP/UDP frame, if it is one.
fn five_tuple(vpc: Attachment, f: &[u8]) -> Option<(Attachment, u32, u32, u16, u16, u8)> {
    let eth = EthernetFrame::new_checked(f).ok()?;
    if eth.ethertype() != 0x0800 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(&f[14..]).ok()?;
    let (sp, dp) = if ip.protocol() == PROTO_TCP {
        let t = TcpPacket::new_checked(ip.payload()).ok()?;
        (t.src_port(), t.dst_port())
    } else {
        let u = UdpPacket::new_checked(ip.payload()).ok()?;
        (u.src_port(), u.dst_port())
    };
    Some((vpc, ip.src_u32(), ip.dst_u32(), sp, dp, ip.protocol()))
}

/// Run one input; panics if an invariant breaks.
pub fn run(data: &[u8]) {
    let target = |port| Target {
        connection_id: 1,
        marker_id: 1,
        backend_vpc: B,
        backend_ip: Ipv4Addr::new(10, 0, 0, 10),
        service_port: port,
        whitelist: None,
        identity: ClientIdentity::NONE,
        meter: 1,
    };
    let open = Target {
        identity: ClientIdentity {
            toa: true,
            proxy_v2: true,
        },
        ..target(80)
    };
    let ep = Ipv4Addr::new(10, 0, 0, 200);
    let tables = Tables::new(default_snat_range())
        .with_endpoint(A, ep, [(6, 8080, target(80)), (17, 5353, target(53))])
        .with_endpoint(C, ep, [(6, 8080, open)])
        .with_sources(vec![
            Some(vec!["10.0.0.0/24".parse().expect("prefix")]),
            None,
        ])
        .with_ports(vec![
            None,
            None,
            Some(PortSet::new([(
                Ipv4Addr::new(10, 0, 0, 5),
                MacAddr([2, 0, 0, 0, 0, 1]),
            )])),
        ])
        .with_gateways(vec![GatewayTable::new([(
            "100.125.0.0/16".parse().expect("prefix"),
            GatewayRoute {
                out_vpc: B,
                next_hop: Some(u32::from(Ipv4Addr::new(10, 0, 0, 10))),
                meter: 2,
            },
        )])]);
    let config = Config {
        attachments: vec![
            MacAddr([2, 0, 0, 0, 0, 0xa0]),
            MacAddr([2, 0, 0, 0, 0, 0xb0]),
            MacAddr([2, 0, 0, 0, 0, 0xc0]),
        ],
        conntrack_capacity: 64.try_into().expect("non-zero"),
        ..Config::default()
    };
    let now = Instant::now();
    let shared = Shared::new(&config, now);
    shared.neighbours.learn(
        B,
        u32::from(Ipv4Addr::new(10, 0, 0, 10)),
        MacAddr([2, 0, 0, 0, 0, 0x10]),
    );
    let mut p = Pipeline::new(config, shared);
    let mut replies: HashSet<(Attachment, u32, u32, u16, u16, u8)> = HashSet::new();
    for chunk in frames(data) {
        let Some((&first, frame)) = chunk.split_first() else {
            continue;
        };
        let ingress = Attachment(u16::from(first % 3));
        let mut buf = frame.to_vec();
        let before = five_tuple(ingress, &buf);
        let src_mac = EthernetFrame::new_checked(&buf[..]).map(|e| e.src());
        let len = buf.len();
        buf.resize(len + 128, 0);
        let mut vnet = VnetHdr::NONE;
        let (verdict, len) = p.process_in(now, &tables, ingress, &mut buf, len, &mut vnet);
        buf.truncate(len);
        if let Verdict::Forward(out) = verdict {
            let (vpc, src, dst, sport, dport, proto) =
                before.expect("only a TCP/UDP frame is ever forwarded");
            assert!(
                tables.admits_port(vpc, src, src_mac.expect("an Ethernet frame")),
                "forwarded a frame of no known port from a port-secured attachment"
            );
            let to_endpoint = tables
                .accepted()
                .get(&AcceptedKey::new(vpc, Ipv4Addr::from(dst), proto, dport))
                .is_some();
            let to_gateway = tables.endpoint(vpc, dst).is_none()
                && tables
                    .gateways(vpc)
                    .and_then(|g| g.lookup(dst))
                    .is_some_and(|r| r.out_vpc == out);
            let accepted = (to_endpoint || to_gateway) && tables.admits_source(vpc, src);
            let key = (vpc, src, dst, sport, dport, proto);
            if accepted {
                // The reply to what left: backend -> SNAT address and port.
                let after = five_tuple(out, &buf).expect("a forwarded frame parses");
                replies.insert((out, after.2, after.1, after.4, after.3, after.5));
            } else {
                assert!(
                    replies.contains(&key),
                    "forwarded a frame of no accepted flow: {key:?}"
                );
            }
        }
    }
}

/// The input cut at each marker.
fn frames(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(MARK.len()).position(|w| w == MARK) {
        parts.push(&rest[..i]);
        rest = &rest[i + MARK.len()..];
    }
    parts.push(rest);
    parts
}
