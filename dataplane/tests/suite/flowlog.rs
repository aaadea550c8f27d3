//! Flow logs: known frames through a logged attachment make exactly the events the flow
//! log's writer turns into lines (both sides of the NAT, packets and bytes each way, start,
//! end and the end reason), interval reports for live flows, and bounded sums of refused
//! attempts; an attachment that is not logged makes none.

#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::Ipv4Addr;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use dataplane::conntrack::flowlog::{EndReason, FlowEvent, FlowRecord, Refused};
use dataplane::{DropReason, Verdict};

use crate::common::*;

fn drain(events: &Receiver<FlowEvent>) -> Vec<FlowEvent> {
    events.try_iter().collect()
}

fn flows(events: &Receiver<FlowEvent>) -> Vec<FlowRecord> {
    drain(events)
        .into_iter()
        .filter_map(|e| match e {
            FlowEvent::Flow(f) => Some(f),
            FlowEvent::Refused(_) => None,
        })
        .collect()
}

/// Move the clock `secs` on and run the expiry sweep.
fn sweep_after(w: &mut World, secs: u64) {
    w.advance(Duration::from_secs(secs));
    w.pipeline.expire(w.now, 64);
}

/// [`sweep_after`], then the flow events it made.
fn after(w: &mut World, events: &Receiver<FlowEvent>, secs: u64) -> Vec<FlowRecord> {
    sweep_after(w, secs);
    flows(events)
}

/// A TCP exchange closed by FINs both ways; its frames' IPv4 sizes each way, and the
/// SNAT address and port.
fn fin_exchange(w: &mut World, port: u16) -> ([u64; 2], [u64; 2], (Ipv4Addr, u16)) {
    let (mut packets, mut bytes) = ([0u64; 2], [0u64; 2]);
    let mut count = |d: usize, f: &[u8]| {
        packets[d] += 1;
        bytes[d] += ip_len(f);
    };
    let mut syn = tcp(TO_EP, (CLIENT, port), (ENDPOINT, 8080), "S", b"");
    count(0, &syn);
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let snat = seen(&syn).src;
    let script: [(bool, &str, &[u8]); 6] = [
        (false, "SA", b""),
        (true, "A", b"GET / HTTP/1.1\r\n\r\n"),
        (false, "A", &[b'x'; 700]),
        (true, "FA", b""),
        (false, "FA", b""),
        (true, "A", b""),
    ];
    for (from_client, flags, payload) in script {
        let mut f = if from_client {
            tcp(TO_EP, (CLIENT, port), (ENDPOINT, 8080), flags, payload)
        } else {
            tcp(TO_NODE_B, (BACKEND, 80), snat, flags, payload)
        };
        count(usize::from(!from_client), &f);
        let (ingress, out) = if from_client { (A, B) } else { (B, A) };
        assert_eq!(w.send(ingress, &mut f), Verdict::Forward(out), "{flags}");
    }
    (packets, bytes, snat)
}

#[test]
fn a_closed_flow_is_one_line_with_both_sides_of_the_nat() {
    let (mut w, events) = World::with_flow_log(tables(), &[true, false, false], 60);
    w.advance(Duration::from_secs(3));
    let (packets, bytes, snat) = fin_exchange(&mut w, 40000);
    assert!(flows(&events).is_empty(), "nothing while the flow lives");
    // Closed: it expires after the closed timeout (10 s).
    let got = after(&mut w, &events, 11);
    assert_eq!(got.len(), 1, "{got:?}");
    let f = got[0];
    assert_eq!(f.reason, EndReason::Fin);
    assert_eq!((f.key.vpc, f.key.proto), (A, TCP));
    assert_eq!((f.key.src, f.key.sport), (CLIENT.to_bits(), 40000));
    assert_eq!((f.key.dst, f.key.dport), (ENDPOINT.to_bits(), 8080));
    assert_eq!((f.rewrite.src, f.rewrite.sport), (snat.0.to_bits(), snat.1));
    assert_eq!((f.rewrite.dst, f.rewrite.dport), (BACKEND.to_bits(), 80));
    assert_eq!(f.out_vpc, B);
    assert_eq!(f.meter, 1, "the connection's slot, without the log bit");
    assert_eq!((f.packets, f.bytes), (packets, bytes));
    assert_eq!((f.start, f.end), (EPOCH_UNIX + 3, EPOCH_UNIX + 3));
    // The meters saw the same.
    let m = w.pipeline.meters().read(1);
    assert_eq!((m.packets, m.bytes), (packets, bytes));
}

#[test]
fn resets_idle_flows_reports_and_deletions_have_their_reason() {
    let (mut w, events) = World::with_flow_log(tables(), &[true, false, false], 5);
    // A reset.
    let mut syn = tcp(TO_EP, (CLIENT, 41000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let snat = seen(&syn).src;
    let mut rst = tcp(TO_NODE_B, (BACKEND, 80), snat, "R", b"");
    assert_eq!(w.send(B, &mut rst), Verdict::Forward(A));
    // A UDP flow: reported while it lives, then idle.
    let mut q = udp(TO_EP, (CLIENT, 5000), (ENDPOINT, 5353), b"query");
    assert_eq!(w.send(A, &mut q), Verdict::Forward(B));
    let q_len = ip_len(&q);
    let got = after(&mut w, &events, 6);
    assert_eq!(
        got.len(),
        2,
        "both flows live (the reset one until its timeout)"
    );
    assert!(got.iter().all(|f| f.reason == EndReason::Active));
    let active = got.iter().find(|f| f.key.proto == UDP).unwrap();
    assert_eq!((active.key.proto, active.packets), (UDP, [1, 0]));
    assert_eq!(active.bytes, [q_len, 0]);
    assert_eq!(active.end, EPOCH_UNIX + 6, "the report's time");
    let got = after(&mut w, &events, 5);
    assert_eq!(
        got.len(),
        2,
        "the reset flow ended; the UDP flow is due again"
    );
    let closed = got.iter().find(|f| f.key.proto == TCP).unwrap();
    assert_eq!(closed.reason, EndReason::Rst);
    assert_eq!(closed.packets, [1, 1]);
    let got = after(&mut w, &events, 121);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].reason, got[0].end), (EndReason::Idle, EPOCH_UNIX));
    // A flow whose connection goes: its next packet removes it, as deleted.
    let mut syn = tcp(TO_EP, (CLIENT, 42000), (ENDPOINT, 8080), "S", b"");
    assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
    let gone = w.remove_mapping(A, ENDPOINT, TCP, 8080);
    w.publish(gone);
    let mut late = tcp(TO_EP, (CLIENT, 42000), (ENDPOINT, 8080), "A", b"late");
    assert_eq!(w.send(A, &mut late), Verdict::Drop(DropReason::Revoked));
    let got = flows(&events);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].reason, got[0].packets),
        (EndReason::Deleted, [1, 0])
    );
}

#[test]
fn refusals_are_summed_per_source_and_reason_once_an_interval() {
    let (mut w, events) = World::with_flow_log(tables(), &[true, false, false], 10);
    let other = Ipv4Addr::new(10, 0, 0, 6);
    for (i, src) in [CLIENT, CLIENT, CLIENT, other].into_iter().enumerate() {
        let port = 43000 + u16::try_from(i).unwrap();
        let mut syn = tcp(TO_EP, (src, port), (ENDPOINT, 9999), "S", b"");
        let v = w.send(A, &mut syn);
        assert_eq!(v, Verdict::Drop(DropReason::PortNotMapped));
    }
    w.pipeline.expire(w.now, 64);
    assert!(drain(&events).is_empty(), "the interval is not over");
    sweep_after(&mut w, 10);
    let mut sums: Vec<Refused> = drain(&events)
        .into_iter()
        .filter_map(|e| match e {
            FlowEvent::Refused(r) => Some(r),
            FlowEvent::Flow(_) => None,
        })
        .collect();
    sums.sort_by_key(|r| r.count);
    assert_eq!(sums.len(), 2, "{sums:?}");
    assert_eq!((sums[0].src, sums[0].count), (Some(other.to_bits()), 1));
    assert_eq!((sums[1].src, sums[1].count), (Some(CLIENT.to_bits()), 3));
    for r in &sums {
        assert_eq!(r.reason, DropReason::PortNotMapped);
        assert_eq!(
            (r.vpc, r.dst, r.dport, r.meter),
            (A, ENDPOINT.to_bits(), 9999, 1)
        );
        assert_eq!((r.first, r.last), (EPOCH_UNIX, EPOCH_UNIX));
    }
}

#[test]
fn an_attachment_that_is_not_logged_makes_no_event() {
    let (mut w, events) = World::with_flow_log(tables(), &[false, false, true], 1);
    fin_exchange(&mut w, 40000);
    let mut syn = tcp(TO_EP, (CLIENT, 43000), (ENDPOINT, 9999), "S", b"");
    assert_eq!(
        w.send(A, &mut syn),
        Verdict::Drop(DropReason::PortNotMapped)
    );
    sweep_after(&mut w, 30);
    assert_eq!(drain(&events), Vec::new());
    // The meters still count.
    assert_eq!(w.pipeline.meters().read(1).packets, [4, 3]);
}
