//! Pipeline tests: frames built with etherparse go through `Pipeline::process`; each test
//! asserts the bytes that come out (addresses, ports, MACs, TTL, checksums by full
//! recompute) and exactly which counters moved.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use crate::common::*;
use dataplane::tables::EndpointState;
use dataplane::tables::sharded::Change;
use dataplane::wire::ethernet::MacAddr;
use dataplane::{DropReason, Verdict};
use proptest::prelude::*;

/// Open a TCP flow from `client:port` and return the SNAT address and port it got.
fn open_tcp(
    w: &mut World,
    vpc: dataplane::Attachment,
    mac: MacAddr,
    port: u16,
) -> (std::net::Ipv4Addr, u16) {
    let mut syn = tcp(
        (CLIENT_MAC, mac),
        (CLIENT, port),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(vpc, &mut syn), Verdict::Forward(B));
    let out = seen(&syn);
    assert_eq!(out.dst, (BACKEND, 80));
    out.src
}

#[test]
fn tcp_through_one_endpoint_both_directions() {
    let mut w = World::new(tables());
    let before = w.stats();
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let out = seen(&syn);
    assert_eq!(out.src_mac, MAC_B);
    assert_eq!(out.dst_mac, BACKEND_MAC);
    assert_eq!(out.dst, (BACKEND, 80));
    assert!(
        w.tables.snat().contains(out.src.0),
        "SNAT source {:?}",
        out.src
    );
    assert_eq!(out.ttl, 63);
    let snat = out.src;

    let mut synack = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut synack), Verdict::Forward(A));
    let back = seen(&synack);
    assert_eq!(back.src, (ENDPOINT, 8080));
    assert_eq!(back.dst, (CLIENT, 40000));
    assert_eq!(back.src_mac, MAC_A);
    assert_eq!(back.dst_mac, CLIENT_MAC);

    let mut data = tcp(
        TO_EP,
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "A",
        b"GET / HTTP/1.1\r\n\r\n",
    );
    assert_eq!(w.send(A, &mut data), Verdict::Forward(B));
    let out = seen(&data);
    assert_eq!(out.src, snat, "the flow keeps its SNAT tuple");
    assert_eq!(out.payload, b"GET / HTTP/1.1\r\n\r\n");
    let mut resp = tcp(TO_NODE_B, (BACKEND, 80), snat, "A", b"HTTP/1.1 200 OK\r\n");
    assert_eq!(w.send(B, &mut resp), Verdict::Forward(A));
    assert_eq!(seen(&resp).payload, b"HTTP/1.1 200 OK\r\n");
    assert_moved!(before, w.stats(), [
        "rx_frames" => 4, "forwarded" => 4, "forwarded_reply" => 2, "flows_created" => 1,
    ]);
    assert_eq!(w.pipeline.shared().conntrack.len(), 1);
}

#[test]
fn udp_through_one_endpoint_keeps_zero_checksum_rule() {
    let mut w = World::new(tables());
    let before = w.stats();
    let mut q = udp(TO_EP, (CLIENT, 5000), (ENDPOINT, 5353), b"query");
    assert_eq!(w.send(A, &mut q), Verdict::Forward(B));
    let out = seen(&q);
    assert_eq!(out.dst, (BACKEND, 53));
    let mut r = udp(TO_NODE_B, (BACKEND, 53), out.src, b"answer");
    r[40..42].copy_from_slice(&[0, 0]); // the backend sent no checksum
    assert_eq!(w.send(B, &mut r), Verdict::Forward(A));
    assert_eq!(&r[40..42], &[0, 0], "a zero UDP checksum stays zero");
    let back = seen(&r);
    assert_eq!((back.src, back.dst), ((ENDPOINT, 5353), (CLIENT, 5000)));
    assert_eq!(back.payload, b"answer");
    assert_moved!(before, w.stats(), [
        "rx_frames" => 2, "forwarded" => 2, "forwarded_reply" => 1, "flows_created" => 1,
    ]);
}

#[test]
fn two_vpcs_with_the_same_cidr_use_one_service() {
    // Endpoint 10.0.0.200 exists in both A and C; the backend is 10.0.0.10 in B.
    let t = tables().with_endpoint(C, ENDPOINT, [(TCP, 8080, target(2, 80))]);
    let mut w = World::new(t);
    let snat_a = open_tcp(&mut w, A, MAC_A, 40000);
    let snat_c = open_tcp(&mut w, C, MAC_C, 40000); // same client address and port
    assert_ne!(
        snat_a, snat_c,
        "distinct SNAT tuples for identical clients in two VPCs"
    );
    assert_eq!(w.pipeline.shared().conntrack.len(), 2);
    for (snat, vpc, mac) in [(snat_a, A, MAC_A), (snat_c, C, MAC_C)] {
        let mut r = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
        assert_eq!(
            w.send(B, &mut r),
            Verdict::Forward(vpc),
            "reply goes back to its own VPC"
        );
        let back = seen(&r);
        assert_eq!((back.src, back.dst), ((ENDPOINT, 8080), (CLIENT, 40000)));
        assert_eq!(back.src_mac, mac);
    }
}

#[test]
fn a_second_service_on_the_same_backend() {
    let t = tables().with_endpoint(A, ENDPOINT2, [(TCP, 9090, target(3, 81))]);
    let mut w = World::new(t);
    open_tcp(&mut w, A, MAC_A, 40000);
    let mut syn = tcp(TO_EP, (CLIENT, 40001), (ENDPOINT2, 9090), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    assert_eq!(seen(&syn).dst, (BACKEND, 81));
    assert_eq!(w.pipeline.shared().conntrack.len(), 2);
}

#[test]
fn reject_mid_flow_drops_the_next_packet_of_an_established_flow() {
    let mut w = World::new(tables());
    let snat = open_tcp(&mut w, A, MAC_A, 40000);
    let mut synack = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut synack), Verdict::Forward(A));
    let mut ack = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"");
    assert_eq!(w.send(A, &mut ack), Verdict::Forward(B));

    // The provider rejects: the compiler drops the mappings and marks the endpoint inactive.
    let next = w
        .remove_mapping(A, ENDPOINT, TCP, 8080)
        .with_endpoints([Change::Put(
            (A, ENDPOINT.to_bits()),
            EndpointState::Inactive,
        )]);
    w.publish(next);
    let before = w.stats();
    let mut data = tcp(TO_NODE_B, (BACKEND, 80), snat, "A", b"late reply");
    assert_eq!(w.send(B, &mut data), Verdict::Drop(DropReason::Revoked));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 1, "flows_revoked" => 1, "drop:revoked" => 1,
    ]);
    assert_eq!(
        w.pipeline.shared().conntrack.len(),
        0,
        "both directions removed"
    );
    let mut data = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"more");
    assert_eq!(w.send(A, &mut data), Verdict::Drop(DropReason::TcpNoFlow));
    let mut syn = tcp(TO_EP, (CLIENT, 40001), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Drop(DropReason::NotAccepted));

    // Accepted again: new flows open.
    w.publish(tables());
    open_tcp(&mut w, A, MAC_A, 40002);
}

#[test]
fn a_moved_backend_revokes_flows_to_the_old_one() {
    let mut w = World::new(tables());
    let snat = open_tcp(&mut w, A, MAC_A, 40000);
    let mut moved_target = target(1, 80);
    moved_target.backend_ip = "10.0.0.11".parse().unwrap();
    w.pipeline
        .shared()
        .neighbours
        .learn(B, moved_target.backend_ip.to_bits(), BACKEND_MAC);
    w.publish(tables().with_endpoint(A, ENDPOINT, [(TCP, 8080, moved_target)]));
    let mut r = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut r), Verdict::Drop(DropReason::Revoked));
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    assert_eq!(
        seen(&syn).dst.0,
        "10.0.0.11".parse::<std::net::Ipv4Addr>().unwrap()
    );
}

#[test]
fn an_unrelated_publish_keeps_flows_and_counts_the_recheck() {
    let mut w = World::new(tables());
    open_tcp(&mut w, A, MAC_A, 40000);
    w.publish(
        w.tables
            .with_endpoint(A, ENDPOINT2, [(TCP, 1, target(9, 1))]),
    );
    let before = w.stats();
    let mut ack = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"");
    assert_eq!(w.send(A, &mut ack), Verdict::Forward(B));
    let mut ack = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"");
    assert_eq!(w.send(A, &mut ack), Verdict::Forward(B));
    assert_moved!(before, w.stats(), ["rx_frames" => 2, "forwarded" => 2, "flows_revalidated" => 1]);
}

#[test]
fn a_backend_mac_change_reaches_the_flow_through_whichever_direction_checks_it() {
    let mut w = World::new(tables());
    let snat = open_tcp(&mut w, A, MAC_A, 40000);
    // The backend's MAC changes (a verified change moves the neighbour epoch).
    let moved = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
    w.pipeline
        .shared()
        .neighbours
        .learn(B, BACKEND.to_bits(), moved);
    w.advance(Duration::from_secs(1));
    // A reply comes first: it runs the flow's check, for both directions.
    let before = w.stats();
    let mut r = tcp((moved, MAC_B), (BACKEND, 80), snat, "A", b"");
    assert_eq!(w.send(B, &mut r), Verdict::Forward(A));
    assert_eq!(seen(&r).dst_mac, CLIENT_MAC);
    let mut ack = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"");
    assert_eq!(w.send(A, &mut ack), Verdict::Forward(B));
    assert_eq!(
        seen(&ack).dst_mac,
        moved,
        "the client's segments follow the move"
    );
    assert_moved!(before, w.stats(), [
        "rx_frames" => 2, "forwarded" => 2, "forwarded_reply" => 1, "flows_revalidated" => 1,
    ]);
}

#[test]
fn a_non_syn_without_a_flow_is_dropped_and_its_client_reset() {
    let mut w = World::new(tables());
    let before = w.stats();
    // A connection that could exist (accepted, mapped): the client gets a reset, from the
    // endpoint's address and port, so it reconnects at once.
    for flags in ["A", "SA", "F", "SF"] {
        let mut f = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), flags, b"");
        assert_eq!(
            w.send(A, &mut f),
            Verdict::Emit {
                vpc: A,
                len: dataplane::rewrite::reset::LEN
            },
            "{flags}"
        );
        let rst = &f[..dataplane::rewrite::reset::LEN];
        let seen = seen(rst);
        assert_eq!(seen.dst_mac, CLIENT_MAC);
        assert_eq!(
            (seen.src, seen.dst),
            ((ENDPOINT, 8080), (CLIENT, 40000)),
            "{flags}"
        );
        assert_ne!(rst[14 + 20 + 13] & 0x04, 0, "{flags}: RST");
    }
    // A reset is never answered.
    let mut f = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "R", b"");
    assert_eq!(w.send(A, &mut f), Verdict::Drop(DropReason::TcpNoFlow));
    // Nor is a segment to a port the endpoint does not map.
    let mut f = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8081), "A", b"");
    assert_eq!(w.send(A, &mut f), Verdict::Drop(DropReason::TcpNoFlow));
    assert_moved!(before, w.stats(), ["rx_frames" => 6, "drop:tcp_no_flow" => 6, "tcp_resets" => 4]);
    assert!(w.pipeline.shared().conntrack.is_empty());
}

#[test]
fn resets_are_bounded_per_second() {
    let mut w = World::new(tables());
    w.advance(Duration::from_secs(1));
    let before = w.stats();
    let n = u64::from(dataplane::pipeline::RESETS_PER_SEC) + 50;
    for i in 0..n {
        let port = 1024 + u16::try_from(i).unwrap();
        let mut f = tcp(TO_EP, (CLIENT, port), (ENDPOINT, 8080), "A", b"");
        let _ = w.send(A, &mut f);
    }
    assert_moved!(before, w.stats(), [
        "rx_frames" => n, "drop:tcp_no_flow" => n,
        "tcp_resets" => u64::from(dataplane::pipeline::RESETS_PER_SEC),
    ]);
    // The next second, resets again.
    w.advance(Duration::from_secs(1));
    let mut f = tcp(TO_EP, (CLIENT, 999), (ENDPOINT, 8080), "A", b"");
    assert!(matches!(w.send(A, &mut f), Verdict::Emit { .. }));
}

#[test]
fn source_whitelist_is_enforced() {
    let mut t = target(1, 80);
    t.whitelist = whitelist(&["10.0.0.0/30", "10.0.0.5/32"]);
    let mut w = World::new(tables().with_endpoint(A, ENDPOINT, [(TCP, 8080, t)]));
    open_tcp(&mut w, A, MAC_A, 40000); // 10.0.0.5 is listed
    let before = w.stats();
    let mut f = tcp(
        TO_EP,
        ("10.0.0.9".parse().unwrap(), 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(
        w.send(A, &mut f),
        Verdict::Drop(DropReason::SourceNotWhitelisted)
    );
    assert_moved!(before, w.stats(), ["rx_frames" => 1, "drop:source_not_whitelisted" => 1]);
}

#[test]
fn pending_endpoints_and_unmapped_ports_carry_nothing() {
    let t = tables().with_endpoints([Change::Put(
        (A, ENDPOINT2.to_bits()),
        EndpointState::Inactive,
    )]);
    let mut w = World::new(t);
    let before = w.stats();
    let mut f = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT2, 8080), "S", b"");
    assert_eq!(w.send(A, &mut f), Verdict::Drop(DropReason::NotAccepted));
    let mut f = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8081), "S", b"");
    assert_eq!(w.send(A, &mut f), Verdict::Drop(DropReason::PortNotMapped));
    let mut f = udp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), b"");
    assert_eq!(
        w.send(A, &mut f),
        Verdict::Drop(DropReason::PortNotMapped),
        "TCP port, UDP packet"
    );
    let mut f = tcp(
        TO_EP,
        (CLIENT, 40000),
        ("10.0.0.77".parse().unwrap(), 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut f), Verdict::Drop(DropReason::NoEndpoint));
    // The endpoint of VPC A does not exist in VPC C.
    let mut f = tcp(
        (CLIENT_MAC, MAC_C),
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(C, &mut f), Verdict::Drop(DropReason::NoEndpoint));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 5, "drop:not_accepted" => 1, "drop:port_not_mapped" => 2, "drop:no_endpoint" => 2,
    ]);
}

#[test]
fn the_provider_side_can_never_open_a_flow() {
    let mut w = World::new(tables());
    let before = w.stats();
    let snat_addr = w.tables.snat().addr();
    let first = std::net::Ipv4Addr::from(snat_addr.to_bits() + 1);
    let mut f = tcp(TO_NODE_B, (BACKEND, 80), (first, 40000), "S", b"");
    assert_eq!(
        w.send(B, &mut f),
        Verdict::Drop(DropReason::ReplyWithoutFlow)
    );
    let mut f = udp(TO_NODE_B, (BACKEND, 53), (first, 40000), b"x");
    assert_eq!(
        w.send(B, &mut f),
        Verdict::Drop(DropReason::ReplyWithoutFlow)
    );
    // Toward the user VPC's addresses as seen from B: nothing is there.
    let mut f = tcp(TO_NODE_B, (BACKEND, 80), (CLIENT, 40000), "S", b"");
    assert_eq!(w.send(B, &mut f), Verdict::Drop(DropReason::NoEndpoint));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 3, "drop:reply_without_flow" => 2, "drop:no_endpoint" => 1,
    ]);
    assert!(w.pipeline.shared().conntrack.is_empty());
}

#[test]
fn conntrack_full_protects_established_flows_and_evicts_embryonic_ones() {
    let mut cfg = config(2);
    cfg.conntrack_vpc_percent = 100; // one VPC: the node's capacity is the only limit
    let mut w = World::with_config(tables(), cfg);
    // One established flow.
    let snat = open_tcp(&mut w, A, MAC_A, 40000);
    let mut r = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut r), Verdict::Forward(A));
    let mut a = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"");
    assert_eq!(w.send(A, &mut a), Verdict::Forward(B));
    // One embryonic flow fills the table.
    open_tcp(&mut w, A, MAC_A, 40001);
    // A SYN flood: each new SYN may evict an embryonic flow, never the established one.
    let before = w.stats();
    let mut syn = tcp(TO_EP, (CLIENT, 40002), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 1, "forwarded" => 1, "flows_created" => 1, "flows_evicted" => 1,
    ]);
    // The established flow still forwards.
    let mut a = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"still here");
    assert_eq!(w.send(A, &mut a), Verdict::Forward(B));
    // Complete the second flow's handshake: now nothing is evictable.
    let snat2 = seen(&syn).src;
    let mut r = tcp(TO_NODE_B, (BACKEND, 80), snat2, "SA", b"");
    assert_eq!(w.send(B, &mut r), Verdict::Forward(A));
    let mut a = tcp(TO_EP, (CLIENT, 40002), (ENDPOINT, 8080), "A", b"");
    assert_eq!(w.send(A, &mut a), Verdict::Forward(B));
    let before = w.stats();
    let mut syn = tcp(TO_EP, (CLIENT, 40003), (ENDPOINT, 8080), "S", b"");
    assert_eq!(
        w.send(A, &mut syn),
        Verdict::Drop(DropReason::ConntrackFull)
    );
    assert_moved!(before, w.stats(), ["rx_frames" => 1, "drop:conntrack_full" => 1]);
    assert_eq!(w.pipeline.shared().conntrack.len(), 2);
}

#[test]
fn snat_exhaustion_is_a_counted_drop_and_never_reuses_a_live_tuple() {
    let mut cfg = config(1024);
    cfg.snat_port_first = 40000;
    cfg.snat_port_last = 40002;
    let t = dataplane::Tables::new("198.19.128.7/32".parse().unwrap()).with_endpoint(
        A,
        ENDPOINT,
        [(TCP, 8080, target(1, 80))],
    );
    let mut w = World::with_config(t, cfg);
    let mut ports: Vec<u16> = (0..3)
        .map(|i| open_tcp(&mut w, A, MAC_A, 50000 + i).1)
        .collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![40000, 40001, 40002]);
    let before = w.stats();
    let mut syn = tcp(TO_EP, (CLIENT, 50003), (ENDPOINT, 8080), "S", b"");
    assert_eq!(
        w.send(A, &mut syn),
        Verdict::Drop(DropReason::SnatExhausted)
    );
    assert_moved!(before, w.stats(), ["rx_frames" => 1, "drop:snat_exhausted" => 1]);
    assert_eq!(
        w.pipeline.shared().conntrack.len(),
        3,
        "the reservation was given back"
    );
}

#[test]
fn ttl_one_is_not_forwarded() {
    let mut w = World::new(tables());
    let mut f = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    f[22] = 1; // TTL
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = dataplane::wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    let before = w.stats();
    assert_eq!(w.send(A, &mut f), Verdict::Drop(DropReason::TtlExceeded));
    assert_moved!(before, w.stats(), ["rx_frames" => 1, "drop:ttl_exceeded" => 1]);
}

#[test]
fn malformed_input_is_a_typed_counted_drop() {
    let mut w = World::new(tables());
    let good = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    let fix_ip_sum = |f: &mut Vec<u8>| {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        f[24..26].copy_from_slice(&[0, 0]);
        let end = (14 + ihl).min(f.len());
        let sum = dataplane::wire::checksum::checksum(&f[14..end]);
        f[24..26].copy_from_slice(&sum.to_be_bytes());
    };
    let mut cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("empty", vec![], DropReason::Malformed),
        ("half ethernet", good[..10].to_vec(), DropReason::Malformed),
        ("truncated ip", good[..30].to_vec(), DropReason::Malformed),
        ("truncated tcp", good[..40].to_vec(), DropReason::Malformed),
    ];
    let mut f = good.clone();
    f[14] = 0x44;
    fix_ip_sum(&mut f);
    cases.push(("ihl 4", f, DropReason::Malformed));
    let mut f = good.clone();
    f[16..18].copy_from_slice(&200u16.to_be_bytes());
    fix_ip_sum(&mut f);
    cases.push(("total length beyond frame", f, DropReason::Malformed));
    let mut f = good.clone();
    f[24] ^= 0xff;
    cases.push(("bad ip checksum", f, DropReason::Malformed));
    let mut f = good.clone();
    f[14] = 0x46;
    f.splice(34..34, [1, 1, 1, 0]); // NOP NOP NOP EOL
    let total = u16::try_from(f.len() - 14).unwrap();
    f[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip_sum(&mut f);
    cases.push(("ip options", f, DropReason::IpOptions));
    let mut f = good.clone();
    f[20] = 0x20; // more fragments
    fix_ip_sum(&mut f);
    cases.push(("first fragment", f, DropReason::Fragment));
    let mut f = good.clone();
    f[20..22].copy_from_slice(&185u16.to_be_bytes()); // offset 1480
    fix_ip_sum(&mut f);
    cases.push(("non-first fragment", f, DropReason::Fragment));
    let mut f = good.clone();
    f[23] = 1; // ICMP
    fix_ip_sum(&mut f);
    cases.push(("icmp", f, DropReason::UnsupportedProtocol));
    let mut f = good.clone();
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    cases.push(("ipv6 ethertype", f, DropReason::UnsupportedProtocol));
    let mut f = good.clone();
    f[46] = 0x40; // TCP data offset 4
    cases.push(("tcp offset 4", f, DropReason::Malformed));
    let mut f = udp(TO_EP, (CLIENT, 40000), (ENDPOINT, 5353), b"abc");
    f[38..40].copy_from_slice(&500u16.to_be_bytes());
    cases.push(("udp length beyond", f, DropReason::Malformed));
    let mut f = good.clone();
    f[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
    cases.push(("someone else's mac", f, DropReason::NotForUs));
    let n = u64::try_from(cases.len()).unwrap();
    let before = w.stats();
    for (name, mut frame, reason) in cases {
        assert_eq!(w.send(A, &mut frame), Verdict::Drop(reason), "{name}");
    }
    let after = w.stats();
    assert_eq!(after.rx_frames - before.rx_frames, n);
    assert_eq!(after.dropped_total() - before.dropped_total(), n);
    assert_eq!(after.forwarded, before.forwarded);
    assert!(w.pipeline.shared().conntrack.is_empty());
}

#[test]
fn arp_answers_for_endpoints_and_snat_and_resolves_only_what_it_asked() {
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType};
    let cfg = config(16);
    let now = std::time::Instant::now();
    let shared = dataplane::Shared::new(&cfg, now);
    let mut p = dataplane::Pipeline::new(cfg, shared);
    let t = tables();
    let arp = |op: ArpOperation, smac: MacAddr, sip: [u8; 4], tip: [u8; 4], dst: MacAddr| {
        let pkt = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            op,
            &smac.0,
            &sip,
            &[0; 6],
            &tip,
        )
        .unwrap();
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2(smac.0, dst.0)
            .arp(pkt)
            .write(&mut out)
            .unwrap();
        out
    };
    // Who has 10.0.0.200 (the endpoint) on A?
    let mut req = arp(
        ArpOperation::REQUEST,
        CLIENT_MAC,
        CLIENT.octets(),
        ENDPOINT.octets(),
        MacAddr::BROADCAST,
    );
    let v = p.process(now, &t, A, &mut req);
    let Verdict::Emit { vpc, len } = v else {
        panic!("{v:?}")
    };
    assert_eq!(vpc, A);
    let reply = etherparse::SlicedPacket::from_ethernet(&req[..len]).unwrap();
    let Some(etherparse::NetSlice::Arp(a)) = reply.net else {
        panic!("not arp")
    };
    assert_eq!(a.operation(), ArpOperation::REPLY);
    assert_eq!(a.sender_hw_addr(), &MAC_A.0);
    assert_eq!(a.sender_protocol_addr(), &ENDPOINT.octets());
    assert_eq!(a.target_hw_addr(), &CLIENT_MAC.0);
    assert_eq!(&req[0..6], &CLIENT_MAC.0);
    // The same address on B is not ours.
    let mut req = arp(
        ArpOperation::REQUEST,
        BACKEND_MAC,
        BACKEND.octets(),
        ENDPOINT.octets(),
        MacAddr::BROADCAST,
    );
    assert_eq!(
        p.process(now, &t, B, &mut req),
        Verdict::Drop(DropReason::ArpNotForUs)
    );
    // A SNAT address on B (the backend VPC) is ours.
    let snat1 = std::net::Ipv4Addr::new(198, 19, 128, 1);
    let mut req = arp(
        ArpOperation::REQUEST,
        BACKEND_MAC,
        BACKEND.octets(),
        snat1.octets(),
        MacAddr::BROADCAST,
    );
    assert!(matches!(
        p.process(now, &t, B, &mut req),
        Verdict::Emit { vpc: B, .. }
    ));
    assert_eq!(
        p.shared().neighbours.lookup(B, BACKEND.to_bits()),
        None,
        "a request teaches nothing: anyone can send one"
    );
    assert!(p.shared().neighbours.is_empty());

    // An unknown next hop: the SYN turns into an ARP request on B.
    let other = std::net::Ipv4Addr::new(10, 0, 0, 11);
    let mut tg = target(5, 80);
    tg.backend_ip = other;
    let t = t.with_endpoint(A, ENDPOINT2, [(TCP, 8080, tg)]);
    let before = p.stats().clone();
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT2, 8080), "S", b"");
    let v = p.process(now, &t, A, &mut syn);
    let Verdict::Emit { vpc: B, len } = v else {
        panic!("{v:?}")
    };
    let ask = etherparse::SlicedPacket::from_ethernet(&syn[..len]).unwrap();
    let Some(etherparse::NetSlice::Arp(a)) = ask.net else {
        panic!("not arp")
    };
    assert_eq!(a.operation(), ArpOperation::REQUEST);
    assert_eq!(a.target_protocol_addr(), &other.octets());
    assert!(t.snat().contains(std::net::Ipv4Addr::from(
        <[u8; 4]>::try_from(a.sender_protocol_addr()).unwrap()
    )));
    assert_eq!(&syn[0..6], &MacAddr::BROADCAST.0);
    // A retransmission within a second does not ask again.
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT2, 8080), "S", b"");
    assert_eq!(p.process(now, &t, A, &mut syn), Verdict::Consumed);
    let other_mac = MacAddr([2, 0, 0, 0, 0, 0x11]);
    let snat_sender: [u8; 4] = a.sender_protocol_addr().try_into().unwrap();
    let mut ans = arp(
        ArpOperation::REPLY,
        other_mac,
        other.octets(),
        snat_sender,
        MAC_B,
    );
    assert_eq!(p.process(now, &t, B, &mut ans), Verdict::Consumed);
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT2, 8080), "S", b"");
    assert_eq!(p.process(now, &t, A, &mut syn), Verdict::Forward(B));
    assert_eq!(seen(&syn).dst_mac, other_mac);
    assert_moved!(before, p.stats().clone(), [
        "rx_frames" => 4, "arp_requests" => 1, "drop:unknown_neighbour" => 2,
        "arp_learned" => 1, "forwarded" => 1, "flows_created" => 1,
    ]);
}

#[test]
fn idle_flows_expire_by_state_with_a_virtual_clock() {
    let mut w = World::new(tables());
    let mut q = udp(TO_EP, (CLIENT, 5000), (ENDPOINT, 5353), b"q");
    assert_eq!(w.send(A, &mut q), Verdict::Forward(B));
    let snat = open_tcp(&mut w, A, MAC_A, 40000);
    let mut r = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut r), Verdict::Forward(A));
    let mut a = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"");
    assert_eq!(w.send(A, &mut a), Verdict::Forward(B));
    assert_eq!(w.pipeline.shared().conntrack.len(), 2);
    w.advance(Duration::from_secs(121));
    let now = w.now;
    assert_eq!(
        w.pipeline.expire(now, 64),
        1,
        "the UDP flow (120 s) expired"
    );
    assert_eq!(w.pipeline.shared().conntrack.len(), 1);
    assert_eq!(w.pipeline.expire(now, 64), 0, "established TCP lives 350 s");
    w.advance(Duration::from_secs(230));
    let now = w.now;
    assert_eq!(w.pipeline.expire(now, 64), 1);
    assert!(w.pipeline.shared().conntrack.is_empty());
    assert_eq!(w.stats().flows_expired, 2);
    // A late reply of the expired flow cannot reopen it.
    let mut r = tcp(TO_NODE_B, (BACKEND, 80), snat, "A", b"");
    assert_eq!(
        w.send(B, &mut r),
        Verdict::Drop(DropReason::ReplyWithoutFlow)
    );
}

#[test]
fn expiry_work_per_call_is_bounded() {
    let mut w = World::new(tables());
    for port in 0..10 {
        let mut q = udp(TO_EP, (CLIENT, 6000 + port), (ENDPOINT, 5353), b"q");
        assert_eq!(w.send(A, &mut q), Verdict::Forward(B));
    }
    w.advance(Duration::from_secs(200));
    let now = w.now;
    assert_eq!(w.pipeline.expire(now, 3), 3);
    assert_eq!(w.pipeline.shared().conntrack.len(), 7);
    assert_eq!(w.pipeline.expire(now, 100), 7);
}

#[test]
fn rst_closes_quickly_and_a_new_syn_reopens() {
    let mut w = World::new(tables());
    let snat = open_tcp(&mut w, A, MAC_A, 40000);
    let mut r = tcp(TO_NODE_B, (BACKEND, 80), snat, "R", b"");
    assert_eq!(w.send(B, &mut r), Verdict::Forward(A));
    w.advance(Duration::from_secs(11));
    let now = w.now;
    assert_eq!(w.pipeline.expire(now, 8), 1, "closed flows live 10 s");
    let snat2 = open_tcp(&mut w, A, MAC_A, 40000);
    assert_eq!(w.pipeline.shared().conntrack.len(), 1);
    let _ = snat2;
}

#[test]
fn two_pipelines_share_the_flow_table() {
    let cfg = config(64);
    let now = std::time::Instant::now();
    let shared = dataplane::Shared::new(&cfg, now);
    shared.neighbours.learn(B, BACKEND.to_bits(), BACKEND_MAC);
    let mut p1 = dataplane::Pipeline::new(cfg.clone(), shared.clone());
    let mut p2 = dataplane::Pipeline::new(cfg, shared);
    let t = tables();
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(p1.process(now, &t, A, &mut syn), Verdict::Forward(B));
    let mut r = tcp(TO_NODE_B, (BACKEND, 80), seen(&syn).src, "SA", b"");
    assert_eq!(
        p2.process(now, &t, B, &mut r),
        Verdict::Forward(A),
        "the reply reaches another worker"
    );
    assert_eq!(seen(&r).dst, (CLIENT, 40000));
    // A retransmitted SYN on the other worker finds the same flow.
    let mut syn2 = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(p2.process(now, &t, A, &mut syn2), Verdict::Forward(B));
    assert_eq!(seen(&syn2).src, seen(&syn).src);
    assert_eq!(p1.stats().flows_created + p2.stats().flows_created, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A packet translated forward and its reply translated back give the client exactly
    /// the endpoint's address and port, with the payload intact.
    #[test]
    fn forward_then_reply_is_identity_for_the_client(
        client in any::<[u8; 4]>(), port in 1u16.., is_tcp in any::<bool>(),
        up in proptest::collection::vec(any::<u8>(), 0..100),
        down in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let client = std::net::Ipv4Addr::from(client);
        let mut w = World::new(tables());
        let (mut f, dport) = if is_tcp {
            (tcp(TO_EP, (client, port), (ENDPOINT, 8080), "S", &up), 80)
        } else {
            (udp(TO_EP, (client, port), (ENDPOINT, 5353), &up), 53)
        };
        prop_assert_eq!(w.send(A, &mut f), Verdict::Forward(B));
        let out = seen(&f);
        prop_assert_eq!(out.dst, (BACKEND, dport));
        prop_assert_eq!(&out.payload, &up);
        let mut r = if is_tcp {
            tcp(TO_NODE_B, (BACKEND, 80), out.src, "SA", &down)
        } else {
            udp(TO_NODE_B, (BACKEND, 53), out.src, &down)
        };
        prop_assert_eq!(w.send(B, &mut r), Verdict::Forward(A));
        let back = seen(&r);
        prop_assert_eq!(back.src, (ENDPOINT, if is_tcp { 8080 } else { 5353 }));
        prop_assert_eq!(back.dst, (client, port));
        prop_assert_eq!(back.payload, down);
    }

    /// Processing never panics on arbitrary bytes, and every frame gets exactly one verdict
    /// that is counted.
    #[test]
    fn arbitrary_bytes_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..20), vpc in 0u16..4) {
        let mut w = World::new(tables());
        for mut f in frames {
            // Half the time aim the frame at us, to get past the MAC check.
            if f.len() > 14 && f[0] & 1 == 0 { f[0..6].copy_from_slice(&MAC_A.0); f[12..14].copy_from_slice(&[8, 0]); }
            let before = w.stats();
            let v = w.send(dataplane::Attachment(vpc), &mut f);
            let after = w.stats();
            // Each frame is counted once, under exactly the verdict it got.
            prop_assert_eq!(after.rx_frames - before.rx_frames, 1);
            let forwarded = after.forwarded - before.forwarded;
            let dropped: Vec<DropReason> = DropReason::ALL
                .into_iter()
                .filter(|r| after.drops[r.index()] != before.drops[r.index()])
                .collect();
            let dropped_total = after.dropped_total() - before.dropped_total();
            match v {
                Verdict::Forward(_) => prop_assert_eq!((forwarded, dropped_total), (1, 0)),
                Verdict::Drop(r) => {
                    prop_assert_eq!((forwarded, dropped_total), (0, 1));
                    prop_assert_eq!(dropped, vec![r]);
                }
                Verdict::Emit { .. } | Verdict::Consumed => {
                    prop_assert_eq!((forwarded, dropped_total), (0, 0));
                }
            }
        }
    }

    /// Structured garbage: valid Ethernet and IPv4 framing around random headers.
    #[test]
    fn mutated_valid_frames_never_panic(at in 0usize..80, byte in any::<u8>(), len in 0usize..80) {
        let mut w = World::new(tables());
        let mut f = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"0123456789abcdef0123");
        let at = at % f.len();
        f[at] = byte;
        f.truncate(len.max(1).min(f.len()));
        // The NAT patches checksums incrementally: a wrong one stays wrong (the receiver
        // drops it), a right one stays right.
        let valid_before = checksums_ok(&f);
        let v = w.send(A, &mut f);
        if let Verdict::Forward(_) = v {
            prop_assert_eq!(checksums_ok(&f), valid_before);
        }
    }
}

#[test]
fn a_multicast_or_broadcast_source_mac_is_dropped_before_anything_is_learned() {
    let mut w = World::new(tables());
    let before = w.stats();
    for src in [MacAddr::BROADCAST, MacAddr([0x01, 0, 0x5e, 0, 0, 1])] {
        let mut syn = tcp((src, MAC_A), (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
        assert_eq!(w.send(A, &mut syn), Verdict::Drop(DropReason::SourceMac));
    }
    assert_moved!(before, w.stats(), ["rx_frames" => 2, "drop:source_mac" => 2]);
    assert!(w.pipeline.shared().conntrack.is_empty());
}

#[test]
fn a_source_outside_the_ingress_vpc_opens_nothing() {
    let subnets = |c: &[&str]| Some(c.iter().map(|s| s.parse().unwrap()).collect::<Vec<_>>());
    // VPC A holds 10.0.0.0/24; B and C say nothing (not enforced).
    let mut w = World::new(tables().with_sources(vec![subnets(&["10.0.0.0/24"])]));
    let before = w.stats();
    let forged = std::net::Ipv4Addr::new(192, 0, 2, 7);
    let mut syn = tcp(TO_EP, (forged, 40000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(
        w.send(A, &mut syn),
        Verdict::Drop(DropReason::SourceOutsideVpc)
    );
    let mut q = udp(TO_EP, (forged, 5000), (ENDPOINT, 5353), b"q");
    assert_eq!(
        w.send(A, &mut q),
        Verdict::Drop(DropReason::SourceOutsideVpc)
    );
    let mut ok = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut ok), Verdict::Forward(B));
    assert_moved!(before, w.stats(), [
        "rx_frames" => 3, "forwarded" => 1, "flows_created" => 1,
        "drop:source_outside_vpc" => 2,
    ]);
}
