//! Per-endpoint meters: known frames through the pipeline move exactly their endpoint's
//! counters (packets and IPv4 bytes each way, resets, flows opened, drops by reason), and
//! nobody else's.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use dataplane::meter::Reading;
use dataplane::tables::EndpointState;
use dataplane::tables::sharded::Change;
use dataplane::{DropReason, Verdict};

use crate::common::*;

/// Endpoint 1 (10.0.0.200, slot 1) and endpoint 2 (10.0.0.201, slot 2), both in A.
fn two_endpoints() -> dataplane::Tables {
    tables().with_endpoint(A, ENDPOINT2, [(TCP, 8080, target(2, 80))])
}

fn reading(w: &World, slot: u32) -> Reading {
    w.pipeline.meters().read(slot)
}

#[test]
fn a_tcp_exchange_moves_exactly_its_endpoint_s_counters() {
    let mut w = World::new(two_endpoints());
    let mut sizes = [0u64; 2];
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    sizes[0] += ip_len(&syn);
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let snat = seen(&syn).src;
    let mut synack = tcp(TO_NODE_B, (BACKEND, 80), snat, "SA", b"");
    sizes[1] += ip_len(&synack);
    assert_eq!(w.send(B, &mut synack), Verdict::Forward(A));
    let mut get = tcp(
        TO_EP,
        (CLIENT, 40000),
        (ENDPOINT, 8080),
        "A",
        b"GET / HTTP/1.1\r\n\r\n",
    );
    sizes[0] += ip_len(&get);
    assert_eq!(w.send(A, &mut get), Verdict::Forward(B));
    let mut ok = tcp(TO_NODE_B, (BACKEND, 80), snat, "A", &[b'x'; 1000]);
    sizes[1] += ip_len(&ok);
    assert_eq!(w.send(B, &mut ok), Verdict::Forward(A));
    let mut rst = tcp(TO_NODE_B, (BACKEND, 80), snat, "R", b"");
    sizes[1] += ip_len(&rst);
    assert_eq!(w.send(B, &mut rst), Verdict::Forward(A));

    let r = reading(&w, 1);
    assert_eq!(r.packets, [2, 3]);
    assert_eq!(r.bytes, sizes);
    assert_eq!(r.resets, [0, 1]);
    assert_eq!(r.flows_opened, 1);
    assert_eq!(r.drops, Reading::default().drops);
    assert_eq!(
        reading(&w, 2),
        Reading::default(),
        "the other endpoint is untouched"
    );
    // The node-wide counters agree.
    assert_eq!(w.stats().forwarded, 5);
}

#[test]
fn refusals_that_belong_to_an_endpoint_are_its_drops() {
    let mut t = two_endpoints();
    // Endpoint 2 admits only 192.0.2.0/24; a third endpoint (slot 3) is not accepted.
    t = t.with_accepted([Change::Put(
        dataplane::tables::AcceptedKey::new(A, ENDPOINT2, TCP, 8080),
        dataplane::tables::Target {
            whitelist: whitelist(&["192.0.2.0/24"]),
            ..target(2, 80)
        },
    )]);
    let pending = std::net::Ipv4Addr::new(10, 0, 0, 202);
    t = t
        .with_endpoints([Change::Put((A, pending.to_bits()), EndpointState::Inactive)])
        .with_endpoint_meters([Change::Put((A, pending.to_bits()), 3)]);
    let mut w = World::new(t);
    let cases = [
        (ENDPOINT2, 8080, DropReason::SourceNotWhitelisted, 2),
        (ENDPOINT, 9999, DropReason::PortNotMapped, 1),
        (pending, 8080, DropReason::NotAccepted, 3),
    ];
    for (i, (dst, port, reason, slot)) in cases.into_iter().enumerate() {
        let mut syn = tcp(
            TO_EP,
            (CLIENT, 41000 + u16::try_from(i).unwrap()),
            (dst, port),
            "S",
            b"",
        );
        assert_eq!(w.send(A, &mut syn), Verdict::Drop(reason));
        let r = reading(&w, slot);
        assert_eq!(r.dropped(reason), 1, "{reason:?}");
        assert_eq!(
            r.drops.iter().sum::<u64>(),
            1,
            "{reason:?}: only that reason"
        );
        assert_eq!((r.packets, r.flows_opened), ([0, 0], 0));
    }
    // A frame to nobody's address is nobody's drop.
    let mut stray = tcp(
        TO_EP,
        (CLIENT, 42000),
        (std::net::Ipv4Addr::new(10, 0, 0, 250), 80),
        "S",
        b"",
    );
    assert!(matches!(w.send(A, &mut stray), Verdict::Drop(_)));
    let all: u64 = (0..8)
        .map(|s| reading(&w, s).drops.iter().sum::<u64>())
        .sum();
    assert_eq!(all, 3);
}

#[test]
fn a_flow_follows_its_connection_s_slot_after_a_recheck() {
    let mut w = World::new(tables());
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    // The same connection, now metered under slot 9 (a restored flow with no slot gets
    // its connection's the same way).
    let next = w.tables.with_accepted([Change::Put(
        dataplane::tables::AcceptedKey::new(A, ENDPOINT, TCP, 8080),
        dataplane::tables::Target {
            meter: 9,
            ..target(1, 80)
        },
    )]);
    w.publish(next);
    let mut data = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"after");
    assert_eq!(w.send(A, &mut data), Verdict::Forward(B));
    assert_eq!(reading(&w, 1).packets, [1, 0], "the SYN, before");
    assert_eq!(reading(&w, 9).packets, [1, 0], "the data, after");
    // A revoked flow's next packet is the endpoint's drop, not its traffic.
    let gone = w.remove_mapping(A, ENDPOINT, TCP, 8080);
    w.publish(gone);
    let mut late = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"late");
    assert_eq!(w.send(A, &mut late), Verdict::Drop(DropReason::Revoked));
    assert_eq!(reading(&w, 9).packets, [1, 0]);
    assert_eq!(reading(&w, 9).dropped(DropReason::Revoked), 1);
}
