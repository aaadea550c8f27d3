//! Isolation between tenants on one node (docs/design.md, section 2): conntrack shares per VPC
//! and node-wide eviction of embryonic flows, the expiry queue's bound, and a neighbour
//! table that tenants cannot fill or move. Each test plays the attack from the issue and
//! asserts the bytes the victims still get and exactly which counters moved.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::common::*;
use dataplane::wire::ethernet::MacAddr;
use dataplane::{Attachment, Config, DropReason, Pipeline, Shared, Tables, Verdict};

const EVIL_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xee]);
const NEW_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const NEW_BACKEND_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x11]);
const REQUEST: u16 = 1;
const REPLY: u16 = 2;

/// Endpoint 10.0.0.200:8080 in both user VPCs A and C, to backend 10.0.0.10:80 in B.
fn two_vpcs() -> Tables {
    tables().with_endpoint(C, ENDPOINT, [(TCP, 8080, target(2, 80))])
}

/// Two workers of one node: shared conntrack and neighbours, the backend resolved.
fn node(cfg: Config) -> (Pipeline, Pipeline, Instant) {
    let now = Instant::now();
    let shared = Shared::new(&cfg, now);
    shared.neighbours.learn(B, BACKEND.to_bits(), BACKEND_MAC);
    (
        Pipeline::new(cfg.clone(), shared.clone()),
        Pipeline::new(cfg, shared),
        now,
    )
}

fn mac_of(vpc: Attachment) -> MacAddr {
    [MAC_A, MAC_B, MAC_C][vpc.index()]
}

/// A SYN from `client` in `vpc` to the endpoint; returns its verdict and the frame.
fn syn(
    p: &mut Pipeline,
    now: Instant,
    t: &Tables,
    vpc: Attachment,
    client: (Ipv4Addr, u16),
) -> (Verdict, Vec<u8>) {
    let mut f = tcp(
        (CLIENT_MAC, mac_of(vpc)),
        client,
        (ENDPOINT, 8080),
        "S",
        b"",
    );
    (p.process(now, t, vpc, &mut f), f)
}

/// Open and establish a flow from `client` in `vpc` (SYN, SYN-ACK, ACK); returns the SNAT
/// address and port the backend sees.
fn establish(
    p: &mut Pipeline,
    now: Instant,
    t: &Tables,
    vpc: Attachment,
    client: (Ipv4Addr, u16),
) -> (Ipv4Addr, u16) {
    let (v, f) = syn(p, now, t, vpc, client);
    assert_eq!(v, Verdict::Forward(B));
    let snat = seen(&f).src;
    let mut synack = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
    assert_eq!(p.process(now, t, B, &mut synack), Verdict::Forward(vpc));
    let mut ack = tcp(
        (CLIENT_MAC, mac_of(vpc)),
        client,
        (ENDPOINT, 8080),
        "A",
        b"",
    );
    assert_eq!(p.process(now, t, vpc, &mut ack), Verdict::Forward(B));
    snat
}

/// One round trip on an established flow: data to the backend and a reply to the client.
fn round_trip(
    p: &mut Pipeline,
    now: Instant,
    t: &Tables,
    vpc: Attachment,
    client: (Ipv4Addr, u16),
    snat: (Ipv4Addr, u16),
) {
    let mut up = tcp(
        (CLIENT_MAC, mac_of(vpc)),
        client,
        (ENDPOINT, 8080),
        "A",
        b"GET /",
    );
    assert_eq!(p.process(now, t, vpc, &mut up), Verdict::Forward(B));
    let out = seen(&up);
    assert_eq!(
        (out.dst_mac, out.src, out.dst),
        (BACKEND_MAC, snat, (BACKEND, 80))
    );
    assert_eq!(out.payload, b"GET /");
    let mut down = tcp(TO_NODE_B, (BACKEND, 80), snat, "A", b"200 OK");
    assert_eq!(p.process(now, t, B, &mut down), Verdict::Forward(vpc));
    let back = seen(&down);
    assert_eq!(
        (back.dst_mac, back.src, back.dst),
        (CLIENT_MAC, (ENDPOINT, 8080), client)
    );
    assert_eq!(back.payload, b"200 OK");
}

/// `hping3 --rand-source`: distinct pseudo-random client addresses and ports (xorshift, so
/// the flood is the same on every run).
fn random_sources(n: usize) -> Vec<(Ipv4Addr, u16)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let [a, b, c, d, p0, p1, ..] = x.to_le_bytes();
        let src = (
            Ipv4Addr::new(10, a, b, c.max(1) ^ d),
            u16::from_le_bytes([p0, p1]).max(1),
        );
        if seen.insert(src) {
            out.push(src);
        }
    }
    out
}

fn stats(p: &Pipeline) -> dataplane::WorkerStats {
    p.stats().clone()
}

#[test]
fn a_syn_flood_from_one_vpc_stays_in_its_share_while_another_vpc_opens_and_forwards() {
    // 64 flows; each VPC's clients may hold 32 (the default 50 %).
    let (mut p1, mut p2, now) = node(config(64));
    let t = two_vpcs();
    let victim = (CLIENT, 40000);
    let snat = establish(&mut p2, now, &t, C, victim);

    // The flood reaches worker 1: every SYN opens a flow, but past its share A only
    // replaces its own embryonic flows.
    let before = stats(&p1);
    for src in random_sources(1000) {
        assert_eq!(syn(&mut p1, now, &t, A, src).0, Verdict::Forward(B));
    }
    assert_moved!(before, stats(&p1), [
        "rx_frames" => 1000, "forwarded" => 1000, "flows_created" => 1000,
        "flows_evicted" => 968,
    ]);
    let ct = &p1.shared().conntrack;
    assert_eq!((ct.len(), ct.len_of(A), ct.len_of(C)), (33, 32, 1));
    assert!(p1.expiry_len() <= 64, "expiry queue {}", p1.expiry_len());

    // C, on worker 2, opens 20 new connections and its established flow keeps forwarding.
    let before = stats(&p2);
    for port in 0..20 {
        let (v, f) = syn(&mut p2, now, &t, C, (CLIENT, 41000 + port));
        assert_eq!(v, Verdict::Forward(B));
        assert_eq!(seen(&f).dst, (BACKEND, 80));
    }
    round_trip(&mut p2, now, &t, C, victim, snat);
    assert_moved!(before, stats(&p2), [
        "rx_frames" => 22, "forwarded" => 22, "forwarded_reply" => 1, "flows_created" => 20,
    ]);
    assert_eq!(p2.shared().conntrack.len_of(C), 21);
}

#[test]
fn a_vpc_whose_share_is_established_is_refused_and_the_others_are_not() {
    let mut cfg = config(8);
    cfg.conntrack_vpc_percent = 50;
    let (mut p, _, now) = node(cfg);
    let t = two_vpcs();
    for port in 0..4 {
        establish(&mut p, now, &t, A, (CLIENT, 40000 + port));
    }
    let before = stats(&p);
    assert_eq!(
        syn(&mut p, now, &t, A, (CLIENT, 40004)).0,
        Verdict::Drop(DropReason::ConntrackVpcLimit),
        "established flows are never evicted, not even A's own"
    );
    assert_eq!(
        syn(&mut p, now, &t, C, (CLIENT, 40004)).0,
        Verdict::Forward(B)
    );
    assert_moved!(before, stats(&p), [
        "rx_frames" => 2, "drop:conntrack_vpc_limit" => 1, "forwarded" => 1,
        "flows_created" => 1,
    ]);
    assert_eq!(p.shared().conntrack.len(), 5);
}

#[test]
fn a_full_node_evicts_embryonic_flows_another_worker_opened_never_established_ones() {
    // No per-VPC share: the node's capacity alone, as when many VPCs share a node.
    let mut cfg = config(16);
    cfg.conntrack_vpc_percent = 100;
    let (mut p1, mut p2, now) = node(cfg);
    let t = two_vpcs();
    let victim = (CLIENT, 40000);
    let snat = establish(&mut p2, now, &t, C, victim);
    let before = stats(&p1);
    for src in random_sources(100) {
        assert_eq!(syn(&mut p1, now, &t, A, src).0, Verdict::Forward(B));
    }
    assert_moved!(before, stats(&p1), [
        "rx_frames" => 100, "forwarded" => 100, "flows_created" => 100, "flows_evicted" => 85,
    ]);
    assert_eq!(p1.shared().conntrack.len(), 16, "full");

    // Worker 2 opened none of A's flows, yet its new flow evicts one of them.
    let before = stats(&p2);
    assert_eq!(
        syn(&mut p2, now, &t, C, (CLIENT, 40001)).0,
        Verdict::Forward(B)
    );
    round_trip(&mut p2, now, &t, C, victim, snat);
    assert_moved!(before, stats(&p2), [
        "rx_frames" => 3, "forwarded" => 3, "forwarded_reply" => 1, "flows_created" => 1,
        "flows_evicted" => 1,
    ]);
    let ct = &p2.shared().conntrack;
    assert_eq!((ct.len(), ct.len_of(A), ct.len_of(C)), (16, 14, 2));
}

#[test]
fn the_expiry_queue_never_outgrows_the_conntrack_capacity() {
    let mut cfg = config(8);
    cfg.conntrack_vpc_percent = 100;
    let (mut p, _, now) = node(cfg);
    let t = two_vpcs();
    let before = stats(&p);
    // Every flow past the eighth evicts one: its key dies in the queue, never swept here.
    for src in random_sources(200) {
        assert_eq!(syn(&mut p, now, &t, A, src).0, Verdict::Forward(B));
        assert!(p.expiry_len() <= 8, "expiry queue {}", p.expiry_len());
    }
    assert_moved!(before, stats(&p), [
        "rx_frames" => 200, "forwarded" => 200, "flows_created" => 200, "flows_evicted" => 192,
    ]);
    assert_eq!(p.expiry_len(), 8);
    // The flows it keeps still expire.
    assert_eq!(p.expire(now + Duration::from_secs(31), 64), 8);
    assert!(p.shared().conntrack.is_empty());
}

#[test]
fn arp_stuffing_from_one_vpc_leaves_room_for_a_new_backend() {
    let mut w = World::new(tables());
    let before = w.stats();
    // Who has 10.0.0.200? from 70,000 made-up senders in A: each is answered, none learned.
    for i in 1..=70_000u32 {
        let [_, b, c, d] = i.to_be_bytes();
        let sender = (
            MacAddr([0x02, 0xaa, 0, b, c, d]),
            Ipv4Addr::new(10, b, c, d),
        );
        let mut req = arp(
            REQUEST,
            MacAddr::BROADCAST,
            sender,
            (MacAddr::default(), ENDPOINT),
        );
        let v = w.send(A, &mut req);
        let Verdict::Emit { vpc: A, len } = v else {
            panic!("{v:?}")
        };
        if i % 10_000 == 0 {
            assert_eq!(seen_arp(&req[..len]), (REPLY, (MAC_A, ENDPOINT), sender));
        }
    }
    assert_moved!(before, w.stats(), ["rx_frames" => 70_000, "arp_replies" => 70_000]);
    let neighbours = &w.pipeline.shared().neighbours;
    assert_eq!(
        (neighbours.len(), neighbours.len_of(A)),
        (1, 0),
        "only the backend"
    );

    // The service moves to a second VM in the provider VPC: it resolves ahead of traffic.
    let mut moved_to = target(1, 80);
    moved_to.backend_ip = NEW_BACKEND;
    let next = tables()
        .with_endpoint(A, ENDPOINT2, [(TCP, 8080, moved_to)])
        .with_backends(vec![(B, BACKEND), (B, NEW_BACKEND)]);
    w.publish(next);
    let before = w.stats();
    let mut asked = Vec::new();
    let now = w.now;
    let sent = w
        .pipeline
        .solicit(now, &w.tables, 64, |vpc, f| asked.push((vpc, f.to_vec())));
    assert_eq!(sent, 1, "the first backend is still reachable");
    let (vpc, request) = &asked[0];
    assert_eq!(*vpc, B);
    assert_eq!(&request[0..6], &MacAddr::BROADCAST.0);
    let (op, (smac, sip), (_, tip)) = seen_arp(request);
    assert_eq!((op, smac, tip), (REQUEST, MAC_B, NEW_BACKEND));
    assert!(w.tables.snat().contains(sip));
    let mut answer = arp(REPLY, MAC_B, (NEW_BACKEND_MAC, NEW_BACKEND), (MAC_B, sip));
    assert_eq!(w.send(B, &mut answer), Verdict::Consumed);

    // Its flows forward, to its MAC, both ways.
    let mut f = tcp(
        (CLIENT_MAC, MAC_A),
        (CLIENT, 40000),
        (ENDPOINT2, 8080),
        "S",
        b"",
    );
    assert_eq!(w.send(A, &mut f), Verdict::Forward(B));
    let out = seen(&f);
    assert_eq!((out.dst_mac, out.dst), (NEW_BACKEND_MAC, (NEW_BACKEND, 80)));
    let mut r = tcp(
        (NEW_BACKEND_MAC, MAC_B),
        (NEW_BACKEND, 80),
        out.src,
        "SA",
        b"",
    );
    assert_eq!(w.send(B, &mut r), Verdict::Forward(A));
    assert_eq!(seen(&r).dst, (CLIENT, 40000));
    assert_moved!(before, w.stats(), [
        "arp_requests" => 1, "rx_frames" => 3, "arp_learned" => 1, "forwarded" => 2,
        "forwarded_reply" => 1, "flows_created" => 1,
    ]);
}

#[test]
fn a_spoofed_arp_cannot_move_a_resolved_backend() {
    let mut w = World::new(tables().with_backends(vec![(B, BACKEND)]));
    let snat_addr = Ipv4Addr::from(w.tables.snat().addr().to_bits() + 1);
    let client = (CLIENT, 40000);
    let snat = {
        let now = w.now;
        establish(&mut w.pipeline, now, &w.tables, A, client)
    };
    let before = w.stats();
    let spoof = (EVIL_MAC, BACKEND);
    let mut frames = [
        // Gratuitous ARP, as a request and as a reply.
        arp(
            REQUEST,
            MacAddr::BROADCAST,
            spoof,
            (MacAddr::default(), BACKEND),
        ),
        arp(
            REPLY,
            MacAddr::BROADCAST,
            spoof,
            (MacAddr::BROADCAST, BACKEND),
        ),
        // A reply to our own address that nobody asked for.
        arp(REPLY, MAC_B, spoof, (MAC_B, snat_addr)),
    ];
    for f in &mut frames {
        assert_eq!(w.send(B, f), Verdict::Drop(DropReason::ArpNotForUs));
    }
    assert_eq!(
        w.pipeline.shared().neighbours.lookup(B, BACKEND.to_bits()),
        Some(BACKEND_MAC)
    );
    // A new generation makes every flow re-read the neighbour table: it still has the
    // true MAC, and so do the flows, old and new.
    let next = w
        .tables
        .with_endpoint(A, ENDPOINT2, [(TCP, 1, target(9, 1))]);
    w.publish(next);
    let now = w.now;
    round_trip(&mut w.pipeline, now, &w.tables, A, client, snat);
    let (v, f) = syn(&mut w.pipeline, now, &w.tables, A, (CLIENT, 40001));
    assert_eq!(v, Verdict::Forward(B));
    assert_eq!(seen(&f).dst_mac, BACKEND_MAC);
    assert_moved!(before, w.stats(), [
        "rx_frames" => 6, "drop:arp_not_for_us" => 3, "arp_conflicts" => 3, "forwarded" => 3,
        "forwarded_reply" => 1, "flows_created" => 1, "flows_revalidated" => 1,
    ]);

    // The contradictions have it re-verified by the worker's next solicit, a second later
    // (reachable, it would wait 30 s). The real host answers first; the spoofer's answer
    // to the same question comes second and changes nothing, and its doubt is heard again
    // only after arp_retry.
    w.advance(Duration::from_secs(1));
    let before = w.stats();
    let now = w.now;
    let mut asked = Vec::new();
    w.pipeline
        .solicit(now, &w.tables, 64, |vpc, f| asked.push((vpc, f.to_vec())));
    assert_eq!(asked.len(), 1);
    let (_, (_, sip), (_, tip)) = seen_arp(&asked[0].1);
    assert_eq!(tip, BACKEND);
    let mut real = arp(REPLY, MAC_B, (BACKEND_MAC, BACKEND), (MAC_B, sip));
    assert_eq!(w.send(B, &mut real), Verdict::Consumed);
    let mut late = arp(REPLY, MAC_B, spoof, (MAC_B, sip));
    assert_eq!(w.send(B, &mut late), Verdict::Drop(DropReason::ArpNotForUs));
    assert_eq!(w.pipeline.solicit(now, &w.tables, 64, |_, _| {}), 0);
    let (v, f) = syn(&mut w.pipeline, now, &w.tables, A, (CLIENT, 40002));
    assert_eq!(v, Verdict::Forward(B));
    assert_eq!(seen(&f).dst_mac, BACKEND_MAC);
    assert_moved!(before, w.stats(), [
        "arp_requests" => 1, "rx_frames" => 3, "arp_learned" => 1, "drop:arp_not_for_us" => 1,
        "arp_conflicts" => 1, "forwarded" => 1, "flows_created" => 1,
    ]);

    // A verified move: the answer to our next request gives a new MAC; from the next batch
    // on, new flows and the established one use it.
    w.advance(Duration::from_secs(31));
    let now = w.now;
    let before = w.stats();
    let mut asked = Vec::new();
    w.pipeline
        .solicit(now, &w.tables, 64, |vpc, f| asked.push((vpc, f.to_vec())));
    assert_eq!(asked.len(), 1);
    let mut moved = arp(REPLY, MAC_B, (NEW_BACKEND_MAC, BACKEND), (MAC_B, sip));
    assert_eq!(w.send(B, &mut moved), Verdict::Consumed);
    w.advance(Duration::from_millis(1));
    let now = w.now;
    let (v, f) = syn(&mut w.pipeline, now, &w.tables, A, (CLIENT, 40003));
    assert_eq!(v, Verdict::Forward(B));
    assert_eq!(seen(&f).dst_mac, NEW_BACKEND_MAC);
    let mut up = tcp((CLIENT_MAC, MAC_A), client, (ENDPOINT, 8080), "A", b"more");
    assert_eq!(w.send(A, &mut up), Verdict::Forward(B));
    assert_eq!((seen(&up).dst_mac, seen(&up).src), (NEW_BACKEND_MAC, snat));
    assert_moved!(before, w.stats(), [
        "arp_requests" => 1, "rx_frames" => 3, "arp_learned" => 1, "neighbours_changed" => 1,
        "forwarded" => 2, "flows_created" => 1, "flows_revalidated" => 1,
    ]);
}

#[test]
fn one_provider_vpc_cannot_take_every_neighbour_entry() {
    let mut cfg = config(64);
    cfg.neighbour_per_vpc = 2;
    let others = [11, 12, 13].map(|d| (B, Ipv4Addr::new(10, 0, 0, d)));
    let c_backend = Ipv4Addr::new(10, 0, 0, 14);
    let mut backends = vec![(B, BACKEND), (C, c_backend)];
    backends.extend(others);
    let mut w = World::with_config(tables().with_backends(backends), cfg);
    let before = w.stats();
    let now = w.now;
    let mut asked = Vec::new();
    w.pipeline.solicit(now, &w.tables, 64, |vpc, f| {
        asked.push((vpc, seen_arp(f).2.1));
    });
    // B holds the resolved backend and one more; C still gets its entry.
    assert_eq!(asked, vec![(B, others[0].1), (C, c_backend)]);
    assert_moved!(before, w.stats(), ["arp_requests" => 2, "neighbours_refused" => 2]);
    let neighbours = &w.pipeline.shared().neighbours;
    assert_eq!((neighbours.len_of(B), neighbours.len_of(C)), (2, 1));
}
