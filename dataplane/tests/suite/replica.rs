//! What the pipeline tells conntrack replication: a flow opened (with its SNAT port), the
//! moment it is established (TCP) or replied (UDP), and its end; and a standby's tracker
//! that applies them holds the same flow.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::time::Duration;

use dataplane::Verdict;
use dataplane::conntrack::replica::{Applied, Replica, decode, encode};
use dataplane::conntrack::state;

use crate::common::*;

#[test]
fn a_tcp_flow_is_replicated_opened_established_and_ended() {
    let (mut w, events) = World::with_replica(tables());
    let mut syn = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let snat = seen(&syn).src;
    let mut synack = tcp((BACKEND_MAC, MAC_B), (BACKEND, 80), snat, "SA", b"");
    assert_eq!(w.send(B, &mut synack), Verdict::Forward(A));
    let mut ack = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "A", b"");
    assert_eq!(w.send(A, &mut ack), Verdict::Forward(B));
    let got: Vec<Replica> = events.try_iter().collect();
    assert_eq!(got.len(), 2, "{got:?}");
    let Replica::Open(flow) = got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (flow.rewrite.src, flow.rewrite.sport),
        (snat.0.to_bits(), snat.1),
        "the SNAT address and port chosen"
    );
    // Established: no longer evictable (the SYN-ACK before it changed nothing there).
    assert_eq!(
        got[1],
        Replica::State {
            key: flow.key,
            state: state::ESTABLISHED
        }
    );
    // A standby's tracker, fed the same events, holds the flow established.
    let standby = dataplane::conntrack::ConnTrack::new(&config(1024), w.now);
    let mut bytes = Vec::new();
    for e in &got {
        encode(e, 0, &mut bytes);
    }
    let mut input = bytes.as_slice();
    let same = [A, B];
    while !input.is_empty() {
        let e = decode(&mut input).unwrap();
        assert!(!matches!(
            standby.apply_replica(&e, &same, 0, 4),
            Applied::Refused | Applied::Ignored
        ));
    }
    assert_eq!(
        standby.get(&flow.key).unwrap().state() & state::MASK,
        state::ESTABLISHED
    );
    // Closed both ways: evictable again, and the standby learns it (one side's FIN does
    // not make it evictable, and is not sent).
    let mut fin = tcp((BACKEND_MAC, MAC_B), (BACKEND, 80), snat, "FA", b"");
    assert_eq!(w.send(B, &mut fin), Verdict::Forward(A));
    assert_eq!(events.try_iter().count(), 0);
    let mut fin = tcp(TO_EP, (CLIENT, 40000), (ENDPOINT, 8080), "FA", b"");
    assert_eq!(w.send(A, &mut fin), Verdict::Forward(B));
    let got: Vec<Replica> = events.try_iter().collect();
    assert!(
        matches!(got[..], [Replica::State { key, state: s }] if key == flow.key && s & state::MASK == state::CLOSED),
        "{got:?}"
    );
    // The end: an idle expiry on the owner.
    w.advance(Duration::from_secs(8000));
    w.pipeline.expire(w.now, 16);
    let got: Vec<Replica> = events.try_iter().collect();
    assert_eq!(got, [Replica::Close(flow.key)]);
}
