//! Port security through `Pipeline::process`: on an attachment that has it, only a known
//! port's (source address, source MAC) gets anything, on the client side and the provider
//! side, for a flow's first packet and for every later one, and for ARP.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::Ipv4Addr;

use crate::common::*;
use dataplane::tables::PortSet;
use dataplane::wire::ethernet::MacAddr;
use dataplane::{DropReason, Tables, Verdict};

/// Another VM of VPC A, whitelisted like the client: the address a spoofer forges.
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 7);
const NEIGHBOUR_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x07]);
/// A MAC no port of any VPC has.
const FORGED_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xee]);
const REQUEST: u16 = 1;
const REPLY: u16 = 2;

/// The standard tables with port security on A (the client and its neighbour) and on B
/// (the backend); C has it off.
fn secured() -> Tables {
    tables().with_ports(vec![
        Some(PortSet::new([
            (CLIENT, CLIENT_MAC),
            (NEIGHBOUR, NEIGHBOUR_MAC),
        ])),
        Some(PortSet::new([(BACKEND, BACKEND_MAC)])),
        None,
    ])
}

#[test]
fn a_known_port_opens_and_uses_a_flow_both_ways() {
    let mut w = World::new(secured());
    let before = w.stats();
    let mut syn = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let snat = seen(&syn).src;
    let mut synack = tcp((BACKEND_MAC, MAC_B), (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut synack), Verdict::Forward(A));
    assert_eq!(seen(&synack).dst_mac, CLIENT_MAC);
    let mut data = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "A",
        b"GET /",
    );
    assert_eq!(w.send(A, &mut data), Verdict::Forward(B));
    assert_eq!(seen(&data).payload, b"GET /");
    assert_moved!(before, w.stats(), [
        "rx_frames" => 3, "forwarded" => 3, "forwarded_reply" => 1, "flows_created" => 1,
    ]);
}

#[test]
fn a_forged_address_with_the_senders_own_mac_opens_nothing() {
    let mut w = World::new(secured());
    let before = w.stats();
    // The client forges its neighbour's address (in the subnet, a known port's, maybe
    // whitelisted): the pair (neighbour's address, client's MAC) is no port.
    let mut syn = tcp(
        (CLIENT_MAC, MAC_A),
        (NEIGHBOUR, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Drop(DropReason::PortSecurity));
    let mut q = udp(
        (CLIENT_MAC, MAC_A),
        (NEIGHBOUR, 5000),
        (ENDPOINT, 5353),
        b"q",
    );
    assert_eq!(w.send(A, &mut q), Verdict::Drop(DropReason::PortSecurity));
    // An address no port has, too.
    let mut other = tcp(
        (CLIENT_MAC, MAC_A),
        (Ipv4Addr::new(10, 0, 0, 99), 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(
        w.send(A, &mut other),
        Verdict::Drop(DropReason::PortSecurity)
    );
    assert_moved!(before, w.stats(), ["rx_frames" => 3, "drop:port_security" => 3]);
    assert!(w.pipeline.shared().conntrack.is_empty());
    // Each was sent to the endpoint: its drops, by reason, and nothing else of its.
    let m = w.pipeline.meters().read(1);
    assert_eq!(m.dropped(DropReason::PortSecurity), 3);
    assert_eq!(m.drops.iter().sum::<u64>(), 3);
    assert_eq!((m.packets, m.flows_opened), ([0, 0], 0));
}

#[test]
fn the_right_address_from_another_mac_opens_nothing() {
    let mut w = World::new(secured());
    let before = w.stats();
    for mac in [FORGED_MAC, NEIGHBOUR_MAC] {
        let mut syn = tcp((mac, MAC_A), (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
        assert_eq!(w.send(A, &mut syn), Verdict::Drop(DropReason::PortSecurity));
    }
    assert_moved!(before, w.stats(), ["rx_frames" => 2, "drop:port_security" => 2]);
    assert!(w.pipeline.shared().conntrack.is_empty());
}

#[test]
fn a_frame_of_another_mac_does_not_pass_for_an_open_flow() {
    let mut w = World::new(secured());
    let mut syn = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let snat = seen(&syn).src;
    let mut synack = tcp((BACKEND_MAC, MAC_B), (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut synack), Verdict::Forward(A));
    let before = w.stats();
    // Mid-flow, a spoofer sends the client's exact 5-tuple (data, then a RST that would
    // close the flow), and one on the provider side sends the backend's.
    for flags in ["A", "R"] {
        let mut f = tcp(
            (FORGED_MAC, MAC_A),
            (CLIENT, 40000),
            (ENDPOINT, 8080),
            flags,
            b"x",
        );
        assert_eq!(w.send(A, &mut f), Verdict::Drop(DropReason::PortSecurity));
    }
    let mut r = tcp((FORGED_MAC, MAC_B), (BACKEND, 80), snat, "A", b"evil");
    assert_eq!(w.send(B, &mut r), Verdict::Drop(DropReason::PortSecurity));
    // The flow is untouched: the client's data and the backend's answer still pass.
    let mut data = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "A",
        b"ok",
    );
    assert_eq!(w.send(A, &mut data), Verdict::Forward(B));
    let mut back = tcp((BACKEND_MAC, MAC_B), (BACKEND, 80), snat, "A", b"fine");
    assert_eq!(w.send(B, &mut back), Verdict::Forward(A));
    assert_eq!(seen(&back).payload, b"fine");
    assert_moved!(before, w.stats(), [
        "rx_frames" => 5, "drop:port_security" => 3, "forwarded" => 2, "forwarded_reply" => 1,
    ]);
    assert_eq!(w.pipeline.shared().conntrack.len(), 1);
}

#[test]
fn a_backend_that_is_no_known_port_gets_no_reply_through() {
    // Port security on B only: the backend's port is known with another MAC (it moved,
    // or a VM on the provider side answers in its place).
    let t = tables().with_ports(vec![None, Some(PortSet::new([(BACKEND, NEIGHBOUR_MAC)]))]);
    let mut w = World::new(t);
    let mut syn = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B), "A has it off");
    let before = w.stats();
    let mut synack = tcp(
        (BACKEND_MAC, MAC_B),
        (BACKEND, 80),
        seen(&syn).src,
        "SA",
        b"",
    );
    assert_eq!(
        w.send(B, &mut synack),
        Verdict::Drop(DropReason::PortSecurity)
    );
    assert_moved!(before, w.stats(), ["rx_frames" => 1, "drop:port_security" => 1]);
}

#[test]
fn a_port_deleted_mid_flow_stops_its_flow_at_the_next_packet() {
    let mut w = World::new(secured());
    let mut syn = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let next = w.tables.with_ports(vec![
        Some(PortSet::new([(NEIGHBOUR, NEIGHBOUR_MAC)])),
        Some(PortSet::new([(BACKEND, BACKEND_MAC)])),
    ]);
    w.publish(next);
    let before = w.stats();
    let mut data = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "A",
        b"x",
    );
    assert_eq!(
        w.send(A, &mut data),
        Verdict::Drop(DropReason::PortSecurity)
    );
    assert_moved!(before, w.stats(), ["rx_frames" => 1, "drop:port_security" => 1]);
}

#[test]
fn an_attachment_without_port_security_checks_no_mac() {
    // C has no set (and past the end of the list is off too).
    let t = secured().with_endpoint(C, ENDPOINT, [(TCP, 8080, target(2, 80))]);
    let mut w = World::new(t);
    let mut syn = tcp(
        (FORGED_MAC, MAC_C),
        (NEIGHBOUR, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(C, &mut syn), Verdict::Forward(B));
    // An empty set admits nothing.
    let t = tables().with_ports(vec![Some(PortSet::default())]);
    let mut w = World::new(t);
    let mut syn = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut syn), Verdict::Drop(DropReason::PortSecurity));
}

#[test]
fn arp_from_an_unknown_pair_is_answered_nothing_and_teaches_nothing() {
    let mut w = World::new(secured());
    let before = w.stats();
    let ask = |sender| {
        arp(
            REQUEST,
            MacAddr::BROADCAST,
            sender,
            (MacAddr::default(), ENDPOINT),
        )
    };
    let mut forged = ask((CLIENT_MAC, NEIGHBOUR));
    assert_eq!(
        w.send(A, &mut forged),
        Verdict::Drop(DropReason::PortSecurity)
    );
    let mut genuine = ask((CLIENT_MAC, CLIENT));
    let Verdict::Emit { vpc, len } = w.send(A, &mut genuine) else {
        panic!("no answer for a known port")
    };
    assert_eq!(vpc, A);
    assert_eq!(
        seen_arp(&genuine[..len]),
        (REPLY, (MAC_A, ENDPOINT), (CLIENT_MAC, CLIENT))
    );
    // Between two others: not ours, whoever sends it.
    let mut between = arp(
        REQUEST,
        MacAddr::BROADCAST,
        (FORGED_MAC, NEIGHBOUR),
        (MacAddr::default(), CLIENT),
    );
    assert_eq!(
        w.send(A, &mut between),
        Verdict::Drop(DropReason::ArpNotForUs)
    );
    assert_moved!(before, w.stats(), [
        "rx_frames" => 3, "arp_replies" => 1, "drop:port_security" => 1,
        "drop:arp_not_for_us" => 1,
    ]);

    // On the provider side: the dataplane asks for a new backend; a forged answer is not
    // learned, the known port's is.
    let new_backend = Ipv4Addr::new(10, 0, 0, 11);
    let new_mac = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
    let next = secured()
        .with_backends(vec![(B, new_backend)])
        .with_ports(vec![None, Some(PortSet::new([(new_backend, new_mac)]))]);
    w.publish(next);
    let mut asked = Vec::new();
    let now = w.now;
    let sent = w
        .pipeline
        .solicit(now, &w.tables, 8, |vpc, f| asked.push((vpc, f.to_vec())));
    assert_eq!(sent, 1);
    let (_, (_, sip), (_, tip)) = seen_arp(&asked[0].1);
    assert_eq!(tip, new_backend);
    let before = w.stats();
    let mut spoof = arp(REPLY, MAC_B, (FORGED_MAC, new_backend), (MAC_B, sip));
    assert_eq!(
        w.send(B, &mut spoof),
        Verdict::Drop(DropReason::PortSecurity)
    );
    let neighbours = &w.pipeline.shared().neighbours;
    assert_eq!(neighbours.lookup(B, new_backend.to_bits()), None);
    let mut real = arp(REPLY, MAC_B, (new_mac, new_backend), (MAC_B, sip));
    assert_eq!(w.send(B, &mut real), Verdict::Consumed);
    let neighbours = &w.pipeline.shared().neighbours;
    assert_eq!(neighbours.lookup(B, new_backend.to_bits()), Some(new_mac));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 2, "drop:port_security" => 1, "arp_learned" => 1,
    ]);
}
