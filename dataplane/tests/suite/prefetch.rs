//! `Pipeline::prefetch` on a tracker large enough for it to run: a warmed batch forwards
//! exactly as it would unwarmed, whatever else the batch holds, and warming changes no
//! frame and no counter.

// An integration-test crate: every item is test code.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::net::Ipv4Addr;

use crate::common::*;
use dataplane::Verdict;
use dataplane::pipeline::{PREFETCH_MAX, PREFETCH_MIN_FLOWS};
use dataplane::wire::ethernet::MacAddr;

/// Flow `i`'s client: addresses of 10.1.0.0/16, ports from 1024.
fn client(i: usize) -> (Ipv4Addr, u16) {
    let host = u32::try_from(i % 250).unwrap() + 1;
    let port = u16::try_from(1024 + i / 250).unwrap();
    (Ipv4Addr::from(0x0a01_0000 + host), port)
}

#[test]
fn a_warmed_batch_forwards_as_an_unwarmed_one_and_warming_changes_nothing() {
    let flows = PREFETCH_MIN_FLOWS + 100;
    let mut cfg = config(flows + 16);
    cfg.conntrack_vpc_percent = 100; // one VPC opens them all, none evicted
    let mut w = World::with_config(tables(), cfg);
    let mut snat = Vec::with_capacity(flows);
    for i in 0..flows {
        let mut syn = tcp((CLIENT_MAC, MAC_A), client(i), (ENDPOINT, 8080), "S", b"");
        assert_eq!(w.send(A, &mut syn), Verdict::Forward(B));
        let out = seen(&syn);
        let mut synack = tcp((BACKEND_MAC, MAC_B), (BACKEND, 80), out.src, "SA", b"");
        assert_eq!(w.send(B, &mut synack), Verdict::Forward(A));
        snat.push(out.src);
    }
    assert_eq!(w.pipeline.shared().conntrack.len(), flows);

    // A batch of ACKs of flows all over the table, both directions, and frames the
    // prefetch must skip: a runt, ARP, an IPv4 frame with options, a non-flow.
    let mut batch: Vec<(dataplane::Attachment, Vec<u8>)> = Vec::new();
    for k in 0..PREFETCH_MAX - 4 {
        let i = (k * 7919) % flows;
        if k % 2 == 0 {
            let ack = tcp((CLIENT_MAC, MAC_A), client(i), (ENDPOINT, 8080), "A", b"x");
            batch.push((A, ack));
        } else {
            let ack = tcp((BACKEND_MAC, MAC_B), (BACKEND, 80), snat[i], "A", b"y");
            batch.push((B, ack));
        }
    }
    batch.insert(3, (A, vec![0u8; 20]));
    let arp_frame = arp(
        1,
        MacAddr::BROADCAST,
        (CLIENT_MAC, client(0).0),
        (MacAddr::default(), ENDPOINT),
    );
    batch.insert(9, (A, arp_frame));
    let mut options = tcp((CLIENT_MAC, MAC_A), client(1), (ENDPOINT, 8080), "A", b"");
    options[14] = 0x46; // IHL 6: not a plain header
    batch.insert(17, (A, options));
    let stranger = tcp((CLIENT_MAC, MAC_A), (CLIENT, 9), (ENDPOINT, 8080), "A", b"");
    batch.insert(30, (A, stranger));

    let copy = batch.clone();
    let before = w.stats();
    w.pipeline
        .prefetch(batch.iter().map(|(vpc, f)| (*vpc, f.as_slice())));
    assert_eq!(batch, copy, "warming writes no frame");
    assert!(
        moved(&before, &w.stats()).is_empty(),
        "and moves no counter"
    );

    // Process the warmed batch, and the same frames again unwarmed: same verdicts, bytes.
    let mut warm = batch;
    let mut cold = copy;
    let verdicts: Vec<Verdict> = warm
        .iter_mut()
        .map(|(vpc, f)| w.pipeline.process(w.now, &w.tables, *vpc, f))
        .collect();
    for ((vpc, f), v) in cold.iter_mut().zip(&verdicts) {
        assert_eq!(w.pipeline.process(w.now, &w.tables, *vpc, f), *v);
    }
    assert_eq!(warm, cold);
    let forwarded = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Forward(_)))
        .count();
    assert_eq!(
        forwarded,
        PREFETCH_MAX - 4,
        "every flow's packet, nothing else"
    );
    for (k, (vpc, f)) in warm.iter().enumerate() {
        if !matches!(verdicts[k], Verdict::Forward(_)) {
            continue;
        }
        let out = seen(f);
        if *vpc == A {
            assert_eq!(out.dst, (BACKEND, 80));
            assert!(snat.contains(&out.src));
        } else {
            assert_eq!(out.src, (ENDPOINT, 8080));
        }
        assert!(checksums_ok(f));
    }
}
