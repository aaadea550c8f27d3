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
    assert_eq!(got.len(), 3, "{got:?}");
    let Replica::Open(flow) = got[0] else {
        panic!("{got:?}")
    };
    // Every change of the flow's state: the backend's SYN-ACK, then the client's ACK.
    assert_eq!(
        got[1],
        Replica::State {
            key: flow.key,
            state: state::SYN_RECV
        }
    );
    assert_eq!(
        (flow.rewrite.src, flow.rewrite.sport),
        (snat.0.to_bits(), snat.1),
        "the SNAT address and port chosen"
    );
    assert_eq!(
        got[2],
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
    // The backend closes: the standby learns it (a closing flow is not established).
    let mut fin = tcp((BACKEND_MAC, MAC_B), (BACKEND, 80), snat, "FA", b"");
    assert_eq!(w.send(B, &mut fin), Verdict::Forward(A));
    let got: Vec<Replica> = events.try_iter().collect();
    assert!(
        matches!(got[..], [Replica::State { key, state: s }] if key == flow.key && s & state::MASK == state::CLOSING),
        "{got:?}"
    );
    // The end: an idle expiry on the owner.
    w.advance(Duration::from_secs(8000));
    w.pipeline.expire(w.now, 16);
    let got: Vec<Replica> = events.try_iter().collect();
    assert_eq!(got, [Replica::Close(flow.key)]);
}
