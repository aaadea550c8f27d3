//! Gateway routes through the pipeline: a VPC with a gateway endpoint reaches every port of
//! its service's prefixes, TCP and UDP, with the source translated and the destination
//! unchanged; other destinations drop with a reason; the flows end with the route.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::Ipv4Addr;

use crate::common::*;
use dataplane::tables::{GatewayRoute, GatewayTable, Ipv4Cidr, default_snat_range};
use dataplane::wire::ethernet::MacAddr;
use dataplane::{DropReason, Tables, Verdict};

/// The object store's prefix, reached on attachment C.
const STORE: Ipv4Addr = Ipv4Addr::new(100, 125, 3, 4);
/// A router on C for the routed prefix.
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x91]);
const STORE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x92]);
const TO_NODE_A: (MacAddr, MacAddr) = (CLIENT_MAC, MAC_A);

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().unwrap()
}

/// Tables where A's gateway endpoints reach 100.125.0.0/16 through ROUTER on C, and
/// 100.64.0.0/24 on-link on C; C owns the SNAT range. B has no gateway endpoint.
fn gateway_tables() -> Tables {
    let routed = GatewayRoute {
        out_vpc: C,
        next_hop: Some(ROUTER.to_bits()),
        meter: 7,
    };
    let on_link = GatewayRoute {
        out_vpc: C,
        next_hop: None,
        meter: 8,
    };
    let a = GatewayTable::new([
        (cidr("100.125.0.0/16"), routed),
        (cidr("100.64.0.0/24"), on_link),
    ]);
    Tables::new(default_snat_range())
        .with_gateways(vec![a])
        .with_snat_vpcs(vec![C])
}

fn world() -> World {
    let w = World::new(gateway_tables());
    w.pipeline
        .shared()
        .neighbours
        .learn(C, ROUTER.to_bits(), ROUTER_MAC);
    w
}

#[test]
fn tcp_to_any_port_of_the_prefix_goes_out_with_snat_and_comes_back() {
    let mut w = world();
    for port in [443, 9000, 1] {
        let before = w.stats();
        let mut syn = tcp(TO_NODE_A, (CLIENT, 40000), (STORE, port), "S", b"");
        assert_eq!(w.send(A, &mut syn), Verdict::Forward(C));
        let out = seen(&syn);
        assert_eq!(
            (out.src_mac, out.dst_mac),
            (MAC_C, ROUTER_MAC),
            "to the next hop"
        );
        assert_eq!(out.dst, (STORE, port), "destination unchanged");
        assert!(default_snat_range().contains(out.src.0), "{:?}", out.src);
        assert_eq!(out.ttl, 63);
        assert!(checksums_ok(&syn));
        assert_moved!(before, w.stats(), [
            "rx_frames" => 1, "forwarded" => 1, "flows_created" => 1, "gateway_flows" => 1,
        ]);

        let before = w.stats();
        let mut synack = tcp((ROUTER_MAC, MAC_C), (STORE, port), out.src, "SA", b"");
        assert_eq!(w.send(C, &mut synack), Verdict::Forward(A));
        let back = seen(&synack);
        assert_eq!(back.src, (STORE, port));
        assert_eq!(back.dst, (CLIENT, 40000));
        assert_eq!((back.src_mac, back.dst_mac), (MAC_A, CLIENT_MAC));
        assert!(checksums_ok(&synack));

        let mut data = tcp(TO_NODE_A, (CLIENT, 40000), (STORE, port), "A", b"GET /");
        assert_eq!(w.send(A, &mut data), Verdict::Forward(C));
        assert_eq!(seen(&data).payload, b"GET /");
        assert_eq!(seen(&data).src, out.src, "the same translation");
        assert_moved!(before, w.stats(), [
            "rx_frames" => 2, "forwarded" => 2, "forwarded_reply" => 1,
        ]);
    }
}

#[test]
fn udp_to_an_on_link_prefix_resolves_the_destination_then_flows() {
    let mut w = world();
    let dst = Ipv4Addr::new(100, 64, 0, 9);
    let mut dgram = udp(TO_NODE_A, (CLIENT, 5000), (dst, 2049), b"nfs?");
    // The destination itself is the neighbour: an ARP request for it goes out on C.
    let Verdict::Emit { vpc, len } = w.send(A, &mut dgram) else {
        panic!("expected an ARP request");
    };
    assert_eq!(vpc, C);
    let (op, (sender_mac, sender_ip), (_, target_ip)) = seen_arp(&dgram[..len]);
    assert_eq!((op, sender_mac, target_ip), (1, MAC_C, dst));
    assert!(default_snat_range().contains(sender_ip));
    let mut answer = arp(2, MAC_C, (STORE_MAC, dst), (MAC_C, sender_ip));
    assert_eq!(w.send(C, &mut answer), Verdict::Consumed);

    let mut dgram = udp(TO_NODE_A, (CLIENT, 5000), (dst, 2049), b"nfs?");
    assert_eq!(w.send(A, &mut dgram), Verdict::Forward(C));
    let out = seen(&dgram);
    assert_eq!(
        (out.dst_mac, out.dst, out.payload.as_slice()),
        (STORE_MAC, (dst, 2049), &b"nfs?"[..])
    );
    let mut reply = udp((STORE_MAC, MAC_C), (dst, 2049), out.src, b"ok");
    assert_eq!(w.send(C, &mut reply), Verdict::Forward(A));
    assert_eq!(seen(&reply).src, (dst, 2049));
    assert_eq!(seen(&reply).dst, (CLIENT, 5000));
    assert!(checksums_ok(&reply));
    assert_eq!(w.stats().gateway_flows, 1);
}

#[test]
fn other_destinations_and_other_vpcs_drop_with_a_reason() {
    let mut w = world();
    let before = w.stats();
    // Outside every prefix of A's gateway endpoints.
    let mut syn = tcp(
        TO_NODE_A,
        (CLIENT, 40000),
        (Ipv4Addr::new(100, 126, 0, 1), 443),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Drop(DropReason::NoRoute));
    // B has no gateway endpoint: the prefix is nothing there.
    let mut syn = tcp((CLIENT_MAC, MAC_B), (CLIENT, 40000), (STORE, 443), "S", b"");
    assert_eq!(w.send(B, &mut syn), Verdict::Drop(DropReason::NoEndpoint));
    // A segment that is no SYN opens nothing; neither does a packet from the store side.
    let mut ack = tcp(TO_NODE_A, (CLIENT, 40001), (STORE, 443), "A", b"");
    assert_eq!(w.send(A, &mut ack), Verdict::Drop(DropReason::TcpNoFlow));
    let mut inbound = tcp((ROUTER_MAC, MAC_C), (STORE, 443), (CLIENT, 40000), "S", b"");
    assert_eq!(
        w.send(C, &mut inbound),
        Verdict::Drop(DropReason::NoEndpoint)
    );
    assert_moved!(before, w.stats(), [
        "rx_frames" => 4, "drop:no_route" => 1, "drop:no_endpoint" => 2, "drop:tcp_no_flow" => 1,
    ]);
    // A source outside the VPC's subnets opens nothing either.
    let sourced = gateway_tables().with_sources(vec![Some(vec![cidr("10.0.0.0/24")])]);
    w.publish(sourced);
    let mut forged = tcp(
        TO_NODE_A,
        (Ipv4Addr::new(10, 1, 0, 5), 40000),
        (STORE, 443),
        "S",
        b"",
    );
    assert_eq!(
        w.send(A, &mut forged),
        Verdict::Drop(DropReason::SourceOutsideVpc)
    );
}

#[test]
fn a_removed_route_revokes_its_flows_and_an_unrelated_change_keeps_them() {
    let mut w = world();
    let mut syn = tcp(TO_NODE_A, (CLIENT, 40000), (STORE, 443), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(C));
    let snat = seen(&syn).src;
    let mut udp_out = udp(TO_NODE_A, (CLIENT, 6000), (STORE, 53), b"q");
    assert_eq!(w.send(A, &mut udp_out), Verdict::Forward(C));

    // A new generation that still routes the prefix: the flow is re-checked (once, by its
    // first packet in either direction) and kept.
    let before = w.stats();
    w.publish(gateway_tables().with_endpoint(B, ENDPOINT, [(TCP, 8080, target(1, 80))]));
    let mut synack = tcp((ROUTER_MAC, MAC_C), (STORE, 443), snat, "SA", b"");
    assert_eq!(w.send(C, &mut synack), Verdict::Forward(A));
    let mut data = tcp(TO_NODE_A, (CLIENT, 40000), (STORE, 443), "A", b"x");
    assert_eq!(w.send(A, &mut data), Verdict::Forward(C));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 2, "forwarded" => 2, "forwarded_reply" => 1, "flows_revalidated" => 1,
    ]);

    // The endpoint is deleted: its VPC no longer routes the prefix.
    let before = w.stats();
    w.publish(Tables::new(default_snat_range()).with_snat_vpcs(vec![C]));
    let mut data = tcp(TO_NODE_A, (CLIENT, 40000), (STORE, 443), "A", b"y");
    assert_eq!(w.send(A, &mut data), Verdict::Drop(DropReason::Revoked));
    let mut late = tcp((ROUTER_MAC, MAC_C), (STORE, 443), snat, "A", b"z");
    assert_eq!(
        w.send(C, &mut late),
        Verdict::Drop(DropReason::ReplyWithoutFlow)
    );
    let mut udp_out = udp(TO_NODE_A, (CLIENT, 6000), (STORE, 53), b"q");
    assert_eq!(w.send(A, &mut udp_out), Verdict::Drop(DropReason::Revoked));
    let mut syn = tcp(TO_NODE_A, (CLIENT, 40002), (STORE, 443), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Drop(DropReason::NoEndpoint));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 4, "flows_revoked" => 2, "drop:revoked" => 2,
        "drop:reply_without_flow" => 1, "drop:no_endpoint" => 1,
    ]);
    assert_eq!(
        w.pipeline.shared().conntrack.len(),
        0,
        "both flows gone, both directions"
    );
}

#[test]
fn a_route_moved_to_another_attachment_revokes_the_flow() {
    let mut w = world();
    let mut syn = tcp(TO_NODE_A, (CLIENT, 40000), (STORE, 443), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(C));
    let moved = GatewayTable::new([(
        cidr("100.125.0.0/16"),
        GatewayRoute {
            out_vpc: B,
            next_hop: None,
            meter: 9,
        },
    )]);
    w.publish(Tables::new(default_snat_range()).with_gateways(vec![moved]));
    let mut data = tcp(TO_NODE_A, (CLIENT, 40000), (STORE, 443), "A", b"y");
    assert_eq!(w.send(A, &mut data), Verdict::Drop(DropReason::Revoked));
}
